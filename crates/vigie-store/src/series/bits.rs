//! A bit writer and reader, most significant bit first: the chunk
//! format packs timestamps and values in fields of 1 to 64 bits.

use super::ChunkError;

/// Appends fields of up to 64 bits to a byte vector.
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Bits already used in the last byte (0 when a new byte is needed).
    used: u8,
}

impl BitWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn bit(&mut self, bit: bool) {
        self.bits(u64::from(bit), 1);
    }

    /// The `n` low bits of `value`, high bit first. `n` is 0 to 64.
    pub(crate) fn bits(&mut self, value: u64, n: u8) {
        debug_assert!(n <= 64);
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                // Grown by a quarter, not doubled: an open chunk keeps
                // its writer for hours, and thousands of them are open.
                if self.bytes.len() == self.bytes.capacity() {
                    self.bytes.reserve_exact(self.bytes.len() / 4 + 8);
                }
                self.bytes.push(0);
            }
            let room = 8 - self.used;
            let take = room.min(left);
            // The `take` bits of `value` just below the `left - take` still to come.
            let chunk = (value >> (left - take)) & ((1u64 << take) - 1);
            let last = self.bytes.len() - 1;
            self.bytes[last] |= (chunk as u8) << (room - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    /// How many bits were written.
    pub(crate) fn len(&self) -> usize {
        match self.used {
            0 => self.bytes.len() * 8,
            used => (self.bytes.len() - 1) * 8 + usize::from(used),
        }
    }

    /// Everything `other` wrote, bit for bit.
    pub(crate) fn append(&mut self, other: &BitWriter) {
        let whole = if other.used == 0 {
            other.bytes.len()
        } else {
            other.bytes.len() - 1
        };
        for &b in &other.bytes[..whole] {
            self.bits(u64::from(b), 8);
        }
        if other.used != 0 {
            let last = other.bytes[whole];
            self.bits(u64::from(last >> (8 - other.used)), other.used);
        }
    }

    /// The bytes written so far (the last one zero-padded).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes held on the heap.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads what a [`BitWriter`] wrote; reading past the end is an error.
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next bit to read, counted from the start.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, ChunkError> {
        Ok(self.bits(1)? == 1)
    }

    /// The next `n` bits (0 to 64) as the low bits of a `u64`.
    pub(crate) fn bits(&mut self, n: u8) -> Result<u64, ChunkError> {
        if n > 64 {
            return Err(ChunkError::Corrupt("a field wider than 64 bits"));
        }
        if self.pos + usize::from(n) > self.bytes.len() * 8 {
            return Err(ChunkError::Truncated);
        }
        let mut value = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u8;
            let room = 8 - offset;
            let take = room.min(left);
            let chunk = (byte >> (room - take)) & (((1u16 << take) - 1) as u8);
            value = (value << take) | u64::from(chunk);
            self.pos += usize::from(take);
            left -= take;
        }
        Ok(value)
    }

    /// Bits left unread after the last whole field (padding is below 8).
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_every_width_read_back() {
        let mut w = BitWriter::new();
        let fields: Vec<(u64, u8)> = (0..=64u8)
            .map(|n| {
                let v = if n == 64 {
                    0xdead_beef_f00d_cafe
                } else {
                    0xdead_beef_f00d_cafe & ((1u64 << n) - 1)
                };
                (v, n)
            })
            .collect();
        for &(v, n) in &fields {
            w.bits(v, n);
            w.bit(true);
        }
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &fields {
            assert_eq!(r.bits(n).unwrap(), v, "width {n}");
            assert!(r.bit().unwrap());
        }
        assert!(r.remaining() < 8);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.bits(5).unwrap(), 0b11111);
        assert!(matches!(r.bits(4), Err(ChunkError::Truncated)));
        assert!(matches!(r.bits(65), Err(ChunkError::Corrupt(_))));
    }
}
