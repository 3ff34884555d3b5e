//! Delta transfer of a large changed file, as rsync does it: the receiver
//! sends a signature of each block of its copy (a rolling checksum and a
//! strong hash); the sender slides a window over its file, byte by byte,
//! and sends "copy block N" wherever a block matches and the bytes
//! themselves elsewhere. A 1 GiB file with one changed block moves one
//! block and the signatures.

use std::collections::HashMap;
use std::io::Read;

/// The block size for a file of `size` bytes: about √size, at least
/// 16 KiB, at most 1 MiB (a 1 GiB file gets 32 KiB blocks).
pub fn block_size(size: u64) -> u32 {
    let root = (size as f64).sqrt() as u64;
    u32::try_from(root.clamp(16 * 1024, 1024 * 1024).next_power_of_two()).unwrap_or(1 << 20)
}

/// rsync's rolling checksum of a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rolling {
    a: u32,
    b: u32,
    len: u32,
}

impl Rolling {
    pub fn new(window: &[u8]) -> Self {
        let len = u32::try_from(window.len()).unwrap_or(u32::MAX);
        // Plain wrapping arithmetic on locals: the compiler vectorises
        // it, and a delta computes one per block of a file.
        let (mut a, mut b) = (0u32, 0u32);
        for (i, x) in window.iter().enumerate() {
            let x = u32::from(*x);
            a = a.wrapping_add(x);
            b = b.wrapping_add(len.wrapping_sub(i as u32).wrapping_mul(x));
        }
        Rolling { a, b, len }
    }

    pub fn value(&self) -> u32 {
        (self.a & 0xffff) | (self.b << 16)
    }

    /// Slide by one byte: `out` leaves, `inn` enters.
    pub fn roll(&mut self, out: u8, inn: u8) {
        self.a = self
            .a
            .wrapping_sub(u32::from(out))
            .wrapping_add(u32::from(inn));
        self.b = self
            .b
            .wrapping_sub(self.len.wrapping_mul(u32::from(out)))
            .wrapping_add(self.a);
    }
}

/// The strong hash of a block: its XXH3-128 (not cryptographic: a
/// crafted collision only makes the rebuilt file fail its SHA-256 check,
/// and the file goes whole).
pub fn strong(block: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(block).to_be_bytes()
}

/// The SHA-256 of everything read from `r`.
pub fn sha256(r: &mut impl Read) -> std::io::Result<[u8; 32]> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf)? {
            0 => break,
            n => ctx.update(&buf[..n]),
        }
    }
    Ok(ctx.finish().as_ref().try_into().expect("32 bytes"))
}

/// The signatures of every block read from `r`.
pub fn signatures(r: &mut impl Read, block: u32) -> std::io::Result<Vec<(u32, [u8; 16])>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; block as usize];
    loop {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            return Ok(out);
        }
        out.push((Rolling::new(&buf[..n]).value(), strong(&buf[..n])));
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// One piece of a delta.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Copy { index: u32, count: u32 },
    Data(Vec<u8>),
}

/// Compute the delta of `new` against blocks with `sums`, calling `emit`
/// for each piece in order (literal data in runs of at most `chunk`).
/// Returns the SHA-256 of `new`.
pub fn delta(
    new: &mut impl Read,
    sums: &[(u32, [u8; 16])],
    block: u32,
    chunk: usize,
    emit: &mut dyn FnMut(Piece) -> Result<(), String>,
) -> Result<[u8; 32], String> {
    let bs = block as usize;
    let mut index: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, (weak, _)) in sums.iter().enumerate() {
        index
            .entry(*weak)
            .or_default()
            .push(u32::try_from(i).unwrap_or(u32::MAX));
    }
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    // The window is buf[start..start + bs]; buf holds what was read.
    let mut buf: Vec<u8> = Vec::with_capacity(bs * 4);
    let mut start = 0usize;
    let mut eof = false;
    let mut literal: Vec<u8> = Vec::new();
    let mut pending_copy: Option<(u32, u32)> = None;
    let mut fill = |buf: &mut Vec<u8>, start: &mut usize, eof: &mut bool| -> Result<(), String> {
        if *start > bs * 2 {
            buf.drain(..*start);
            *start = 0;
        }
        while !*eof && buf.len() - *start < bs * 2 {
            let old = buf.len();
            buf.resize(old + bs.max(64 * 1024), 0);
            let n = new.read(&mut buf[old..]).map_err(|e| e.to_string())?;
            buf.truncate(old + n);
            if n == 0 {
                *eof = true;
            }
        }
        Ok(())
    };
    let flush_copy = |pc: &mut Option<(u32, u32)>,
                      emit: &mut dyn FnMut(Piece) -> Result<(), String>| {
        if let Some((index, count)) = pc.take() {
            emit(Piece::Copy { index, count })?;
        }
        Ok::<(), String>(())
    };
    fill(&mut buf, &mut start, &mut eof)?;
    let mut roll = if buf.len() - start >= bs {
        Some(Rolling::new(&buf[start..start + bs]))
    } else {
        None
    };
    while let Some(r) = roll {
        let mut matched = None;
        if let Some(cands) = index.get(&r.value()) {
            let s = strong(&buf[start..start + bs]);
            // The block after the last one copied first: runs of equal
            // blocks (the zeros of a sparse image) then go as one copy,
            // not one per block.
            let next = pending_copy.map(|(first, count)| first + count);
            matched = next
                .filter(|n| sums.get(*n as usize) == Some(&(r.value(), s)))
                .or_else(|| cands.iter().copied().find(|i| sums[*i as usize].1 == s));
        }
        if let Some(i) = matched {
            if !literal.is_empty() {
                flush_copy(&mut pending_copy, emit)?;
                emit(Piece::Data(std::mem::take(&mut literal)))?;
            }
            pending_copy = match pending_copy {
                Some((first, count)) if first + count == i => Some((first, count + 1)),
                other => {
                    let mut o = other;
                    flush_copy(&mut o, emit)?;
                    Some((i, 1))
                }
            };
            hasher.update(&buf[start..start + bs]);
            start += bs;
            fill(&mut buf, &mut start, &mut eof)?;
            roll = (buf.len() - start >= bs).then(|| Rolling::new(&buf[start..start + bs]));
        } else {
            flush_copy(&mut pending_copy, emit)?;
            let out = buf[start];
            literal.push(out);
            hasher.update(&[out]);
            if literal.len() >= chunk {
                emit(Piece::Data(std::mem::take(&mut literal)))?;
            }
            start += 1;
            fill(&mut buf, &mut start, &mut eof)?;
            if buf.len() - start >= bs {
                let mut r = r;
                r.roll(out, buf[start + bs - 1]);
                roll = Some(r);
            } else {
                roll = None;
            }
        }
    }
    flush_copy(&mut pending_copy, emit)?;
    // The tail, shorter than a block.
    literal.extend_from_slice(&buf[start..]);
    hasher.update(&buf[start..]);
    for piece in literal.chunks(chunk) {
        emit(Piece::Data(piece.to_vec()))?;
    }
    Ok(hasher.finish().as_ref().try_into().expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuild(old: &[u8], pieces: &[Piece], block: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Copy { index, count } => {
                    let from = *index as usize * block;
                    let to = (from + *count as usize * block).min(old.len());
                    out.extend_from_slice(&old[from..to]);
                }
                Piece::Data(d) => out.extend_from_slice(d),
            }
        }
        out
    }

    fn run(old: &[u8], new: &[u8], block: u32) -> (Vec<Piece>, usize) {
        let sums = signatures(&mut &old[..], block).unwrap();
        let mut pieces = Vec::new();
        let hash = delta(&mut &new[..], &sums, block, 1000, &mut |p| {
            pieces.push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            &hash[..],
            ring::digest::digest(&ring::digest::SHA256, new).as_ref()
        );
        assert_eq!(rebuild(old, &pieces, block as usize), new);
        let literal = pieces
            .iter()
            .map(|p| match p {
                Piece::Data(d) => d.len(),
                Piece::Copy { .. } => 0,
            })
            .sum();
        (pieces, literal)
    }

    fn data(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn rolling_equals_fresh() {
        let d = data(5000, 1);
        let mut r = Rolling::new(&d[0..64]);
        for i in 1..1000 {
            r.roll(d[i - 1], d[i + 63]);
            assert_eq!(r.value(), Rolling::new(&d[i..i + 64]).value());
        }
    }

    #[test]
    fn one_changed_block_moves_one_block() {
        let old = data(1 << 20, 7);
        let mut new = old.clone();
        new[500_000] ^= 0xff;
        let (_, literal) = run(&old, &new, 16 * 1024);
        assert!(literal <= 16 * 1024, "{literal}");
    }

    #[test]
    fn a_run_of_equal_blocks_goes_as_one_copy() {
        let old = vec![0u8; 64 * 1024];
        let (pieces, literal) = run(&old, &old, 1024);
        assert_eq!(literal, 0);
        assert_eq!(
            pieces,
            [Piece::Copy {
                index: 0,
                count: 64
            }]
        );
    }

    #[test]
    fn insertions_deletions_and_tails() {
        let old = data(100_000, 3);
        let mut new = old[..30_000].to_vec();
        new.extend_from_slice(b"inserted bytes");
        new.extend_from_slice(&old[40_000..]);
        new.extend_from_slice(b"tail");
        let (_, literal) = run(&old, &new, 4096);
        assert!(literal < 20_000, "{literal}");
        run(&old, &[], 4096);
        run(&[], &new, 4096);
        run(&old[..100], &new, 4096);
    }

    proptest::proptest! {
        #[test]
        fn any_change_rebuilds_exactly(
            old in proptest::collection::vec(0u8..4, 0..3000),
            new in proptest::collection::vec(0u8..4, 0..3000),
            block in 1u32..64,
        ) {
            run(&old, &new, block);
        }
    }
}
