//! The chunk format: a run of timestamps and one or more columns of
//! values, compressed, versioned and checksummed. The layout is in the
//! module documentation of [`crate::series`].

use super::ChunkError;
use super::bits::{BitReader, BitWriter};

/// The format this build writes (and the only one it reads).
pub const VERSION: u8 = 1;

/// The most samples one chunk holds (its count is a `u16`).
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// The most columns one chunk holds (roll-ups have five).
pub const MAX_COLUMNS: usize = 8;

/// The largest decimal exponent tried: 10^15 is exact in an `f64`, and
/// so is every integer up to 2^53 it scales.
pub(crate) const MAX_EXPONENT: u8 = 15;
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
const MAX_EXACT: i64 = 1 << 53;

/// How a column's values are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueEncoding {
    /// Gorilla's: each value XOR the previous one, its meaningful bits
    /// only. Takes any `f64`, NaN payloads and -0.0 included.
    Xor,
    /// Values that are exactly integers over 10^e (a counter, a reading
    /// with two decimals): the integers' deltas.
    DecimalDelta,
    /// The same integers' delta-of-delta (a counter growing steadily).
    DecimalDeltaOfDelta,
}

impl ValueEncoding {
    fn code(self) -> u64 {
        match self {
            Self::Xor => 0,
            Self::DecimalDelta => 1,
            Self::DecimalDeltaOfDelta => 2,
        }
    }
}

/// A decoded chunk: its timestamps (milliseconds) and its columns, each
/// as long as the timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub ts: Vec<i64>,
    pub columns: Vec<Vec<f64>>,
}

/// Encode, choosing for each column the smallest of the encodings that
/// can hold it exactly.
pub fn encode(ts: &[i64], columns: &[&[f64]]) -> Result<Vec<u8>, ChunkError> {
    encode_with(ts, columns, None)
}

/// Encode with `only` for every column when given (a decimal encoding
/// that cannot hold a column falls back to XOR), the smallest otherwise.
/// For comparisons: [`encode`] is what the store writes.
pub fn encode_with(
    ts: &[i64],
    columns: &[&[f64]],
    only: Option<ValueEncoding>,
) -> Result<Vec<u8>, ChunkError> {
    if ts.is_empty() || ts.len() > MAX_SAMPLES {
        return Err(ChunkError::Size(ts.len()));
    }
    if columns.is_empty() || columns.len() > MAX_COLUMNS {
        return Err(ChunkError::Columns(columns.len()));
    }
    if let Some(c) = columns.iter().find(|c| c.len() != ts.len()) {
        return Err(ChunkError::Ragged {
            timestamps: ts.len(),
            values: c.len(),
        });
    }
    let mut out = vec![VERSION, columns.len() as u8];
    out.extend_from_slice(&(ts.len() as u16).to_le_bytes());
    let mut w = BitWriter::new();
    write_timestamps(&mut w, ts);
    for column in columns {
        write_column(&mut w, column, only);
    }
    out.extend_from_slice(&w.into_bytes());
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Decode a chunk; a wrong version, a bad checksum, a truncated or
/// corrupt body is an error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Chunk, ChunkError> {
    if bytes.len() < 8 {
        return Err(ChunkError::Truncated);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    let computed = checksum(body);
    if stored != computed {
        return Err(ChunkError::Checksum { stored, computed });
    }
    decode_body(body)
}

/// What follows the checksum test: also run on corrupt bodies with a
/// valid checksum by the tests, so that the decoder itself never panics.
fn decode_body(body: &[u8]) -> Result<Chunk, ChunkError> {
    if body.len() < 4 {
        return Err(ChunkError::Truncated);
    }
    if body[0] != VERSION {
        return Err(ChunkError::Version(body[0]));
    }
    let ncols = usize::from(body[1]);
    if ncols == 0 || ncols > MAX_COLUMNS {
        return Err(ChunkError::Columns(ncols));
    }
    let count = usize::from(u16::from_le_bytes([body[2], body[3]]));
    if count == 0 {
        return Err(ChunkError::Size(0));
    }
    let mut r = BitReader::new(&body[4..]);
    // Every sample takes at least one bit per stream: a count the body
    // cannot hold is refused before anything is allocated for it.
    if r.remaining() < count * (1 + ncols) {
        return Err(ChunkError::Truncated);
    }
    let ts = read_timestamps(&mut r, count)?;
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        columns.push(read_column(&mut r, count)?);
    }
    if r.remaining() >= 8 {
        return Err(ChunkError::Corrupt("data after the last value"));
    }
    Ok(Chunk { ts, columns })
}

fn checksum(bytes: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(bytes) as u32
}

/// Signed fields of a ladder of widths: `i` ones then a zero pick the
/// `i`-th width (the last one has no terminating zero). The first width
/// is the chunk's own, chosen by the encoder to fit most fields (0 when
/// most are zero, 3 for a scheduler's jitter of a few ms); the others
/// are fixed.
struct Ladder {
    widths: [u8; 5],
    len: usize,
}

/// The widths above the first, for the fields that do not fit it.
const WIDER: [u8; 4] = [14, 24, 40, 64];
/// The first width is 0 to this.
const MAX_FIRST: u8 = 40;

impl Ladder {
    fn new(first: u8) -> Self {
        let mut widths = [first; 5];
        let mut len = 1;
        for &w in &WIDER {
            if w > first {
                widths[len] = w;
                len += 1;
            }
        }
        Self { widths, len }
    }

    /// The ladder that writes `fields` in the fewest bits.
    fn best(fields: &(impl Iterator<Item = i64> + Clone)) -> Self {
        (0..=MAX_FIRST)
            .map(Self::new)
            .min_by_key(|l| fields.clone().map(|v| l.cost(v)).sum::<usize>())
            .unwrap_or_else(|| Self::new(0))
    }

    fn rung(&self, v: i64) -> usize {
        (0..self.len)
            .find(|&i| fits(v, self.widths[i]))
            .unwrap_or(self.len - 1)
    }

    fn cost(&self, v: i64) -> usize {
        let i = self.rung(v);
        i + usize::from(i + 1 < self.len) + usize::from(self.widths[i])
    }

    fn write_header(&self, w: &mut BitWriter) {
        w.bits(u64::from(self.widths[0]), 6);
    }

    fn read_header(r: &mut BitReader<'_>) -> Result<Self, ChunkError> {
        let first = r.bits(6)? as u8;
        if first > MAX_FIRST {
            return Err(ChunkError::Corrupt("a field width out of range"));
        }
        Ok(Self::new(first))
    }

    fn write(&self, w: &mut BitWriter, v: i64) {
        let i = self.rung(v);
        for _ in 0..i {
            w.bit(true);
        }
        if i + 1 < self.len {
            w.bit(false);
        }
        let width = self.widths[i];
        w.bits(v as u64 & mask(width), width);
    }

    fn read(&self, r: &mut BitReader<'_>) -> Result<i64, ChunkError> {
        let mut i = 0;
        while i + 1 < self.len && r.bit()? {
            i += 1;
        }
        let width = self.widths[i];
        Ok(sign_extend(r.bits(width)?, width))
    }
}

fn mask(width: u8) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// Whether `v` is a signed `width`-bit number.
fn fits(v: i64, width: u8) -> bool {
    match width {
        0 => v == 0,
        64.. => true,
        _ => {
            let half = 1i64 << (width - 1);
            (-half..half).contains(&v)
        }
    }
}

fn sign_extend(raw: u64, width: u8) -> i64 {
    if width == 0 {
        0
    } else if width >= 64 {
        raw as i64
    } else {
        let shift = 64 - u32::from(width);
        ((raw << shift) as i64) >> shift
    }
}

/// The fields of a run of integers: deltas, or delta-of-delta.
fn fields(ints: &[i64], dod: bool) -> impl Iterator<Item = i64> + Clone + '_ {
    ints.windows(2).scan(0i64, move |prev_delta, pair| {
        let delta = pair[1].wrapping_sub(pair[0]);
        let field = if dod {
            delta.wrapping_sub(*prev_delta)
        } else {
            delta
        };
        *prev_delta = delta;
        Some(field)
    })
}

fn write_timestamps(w: &mut BitWriter, ts: &[i64]) {
    w.bits(ts[0] as u64, 64);
    let ladder = Ladder::best(&fields(ts, true));
    ladder.write_header(w);
    for field in fields(ts, true) {
        ladder.write(w, field);
    }
}

fn read_timestamps(r: &mut BitReader<'_>, count: usize) -> Result<Vec<i64>, ChunkError> {
    let mut ts = Vec::with_capacity(count);
    let mut prev = r.bits(64)? as i64;
    ts.push(prev);
    let ladder = Ladder::read_header(r)?;
    let mut prev_delta = 0i64;
    for _ in 1..count {
        let delta = prev_delta.wrapping_add(ladder.read(r)?);
        prev = prev.wrapping_add(delta);
        ts.push(prev);
        prev_delta = delta;
    }
    Ok(ts)
}

fn write_column(w: &mut BitWriter, values: &[f64], only: Option<ValueEncoding>) {
    let decimal = decimal_form(values);
    let candidates: &[ValueEncoding] = match only {
        Some(one) => &[one][..],
        None => &[
            ValueEncoding::Xor,
            ValueEncoding::DecimalDelta,
            ValueEncoding::DecimalDeltaOfDelta,
        ],
    };
    let mut best: Option<BitWriter> = None;
    for &enc in candidates {
        let mut trial = BitWriter::new();
        match (enc, &decimal) {
            (ValueEncoding::Xor, _) | (_, None) => write_xor(&mut trial, values),
            (enc, Some((e, ints))) => write_decimal(&mut trial, enc, *e, ints),
        }
        if best.as_ref().is_none_or(|b| trial.len() < b.len()) {
            best = Some(trial);
        }
    }
    if let Some(best) = best {
        w.append(&best);
    }
}

fn read_column(r: &mut BitReader<'_>, count: usize) -> Result<Vec<f64>, ChunkError> {
    match r.bits(2)? {
        0 => read_xor(r, count),
        code @ (1 | 2) => {
            let e = r.bits(4)? as u8;
            let mut values = Vec::with_capacity(count);
            let mut prev = r.bits(64)? as i64;
            values.push(from_decimal(prev, e));
            let shift = r.bits(6)? as u32;
            let ladder = Ladder::read_header(r)?;
            let mut prev_delta = 0i64;
            for _ in 1..count {
                let field = ladder.read(r)?.wrapping_shl(shift);
                let delta = if code == 2 {
                    prev_delta.wrapping_add(field)
                } else {
                    field
                };
                prev = prev.wrapping_add(delta);
                values.push(from_decimal(prev, e));
                prev_delta = delta;
            }
            Ok(values)
        }
        _ => Err(ChunkError::Corrupt("an unknown value encoding")),
    }
}

/// The common exponent `e` and the integers `m` with `m / 10^e == v`
/// bit for bit, if every value has them (finite, not -0.0, |m| ≤ 2^53).
pub(crate) fn decimal_form(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    let mut e = 0u8;
    for &v in values {
        while exact_at(v, e).is_none() {
            e += 1;
            if e > MAX_EXPONENT {
                return None;
            }
        }
    }
    values
        .iter()
        .map(|&v| exact_at(v, e))
        .collect::<Option<Vec<_>>>()
        .map(|m| (e, m))
}

pub(crate) fn exact_at(v: f64, e: u8) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let scaled = (v * POW10[usize::from(e)]).round();
    if scaled.abs() > MAX_EXACT as f64 {
        return None;
    }
    let m = scaled as i64;
    (from_decimal(m, e).to_bits() == v.to_bits()).then_some(m)
}

/// `a + b`, computed on their decimal forms when they have one, so that
/// the sum of a roll-up keeps a short decimal form too (summed as
/// floats, 0.1 + 0.2 has none).
pub(crate) fn exact_sum(a: f64, b: f64) -> f64 {
    for e in 0..=MAX_EXPONENT {
        if let (Some(ma), Some(mb)) = (exact_at(a, e), exact_at(b, e)) {
            return match ma.checked_add(mb) {
                Some(m) if m.abs() <= MAX_EXACT => from_decimal(m, e),
                _ => a + b,
            };
        }
    }
    a + b
}

pub(crate) fn from_decimal(m: i64, e: u8) -> f64 {
    m as f64 / POW10[usize::from(e.min(MAX_EXPONENT))]
}

fn write_decimal(w: &mut BitWriter, enc: ValueEncoding, e: u8, ints: &[i64]) {
    w.bits(enc.code(), 2);
    w.bits(u64::from(e), 4);
    w.bits(ints[0] as u64, 64);
    let dod = enc == ValueEncoding::DecimalDeltaOfDelta;
    // Sizes in pages or KiB times 1024 move by multiples of a power of
    // two: the fields are written without its trailing zeros.
    let shift = fields(ints, dod)
        .filter(|&f| f != 0)
        .map(i64::trailing_zeros)
        .min()
        .unwrap_or(0)
        .min(63);
    w.bits(u64::from(shift), 6);
    let shifted = fields(ints, dod).map(move |f| f >> shift);
    let ladder = Ladder::best(&shifted);
    ladder.write_header(w);
    for field in shifted {
        ladder.write(w, field);
    }
}

fn write_xor(w: &mut BitWriter, values: &[f64]) {
    w.bits(ValueEncoding::Xor.code(), 2);
    let mut prev = values[0].to_bits();
    w.bits(prev, 64);
    // The meaningful bits' window of the last value written with one:
    // (leading zeros, length).
    let mut window: Option<(u32, u32)> = None;
    for v in &values[1..] {
        let bits = v.to_bits();
        let xor = bits ^ prev;
        prev = bits;
        if xor == 0 {
            w.bit(false);
            continue;
        }
        w.bit(true);
        let lz = xor.leading_zeros();
        let tz = xor.trailing_zeros();
        if let Some((wlz, wlen)) = window
            && lz >= wlz
            && tz >= 64 - wlz - wlen
        {
            w.bit(false);
            w.bits(xor >> (64 - wlz - wlen), wlen as u8);
            continue;
        }
        let len = 64 - lz - tz;
        w.bit(true);
        w.bits(u64::from(lz), 6);
        w.bits(u64::from(len - 1), 6);
        w.bits(xor >> tz, len as u8);
        window = Some((lz, len));
    }
}

fn read_xor(r: &mut BitReader<'_>, count: usize) -> Result<Vec<f64>, ChunkError> {
    let mut values = Vec::with_capacity(count);
    let mut prev = r.bits(64)?;
    values.push(f64::from_bits(prev));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..count {
        if r.bit()? {
            let (lz, len) = if r.bit()? {
                let lz = r.bits(6)? as u32;
                let len = r.bits(6)? as u32 + 1;
                if lz + len > 64 {
                    return Err(ChunkError::Corrupt("a value's bits overflow 64"));
                }
                window = Some((lz, len));
                (lz, len)
            } else {
                window.ok_or(ChunkError::Corrupt("a value reuses a window never set"))?
            };
            prev ^= r.bits(len as u8)? << (64 - lz - len);
        }
        values.push(f64::from_bits(prev));
    }
    Ok(values)
}

#[cfg(test)]
pub(crate) fn decode_unchecked(body: &[u8]) -> Result<Chunk, ChunkError> {
    decode_body(body)
}

#[cfg(test)]
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&checksum(body).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(ts: &[i64], values: &[f64], only: Option<ValueEncoding>) {
        let bytes = encode_with(ts, &[values], only).unwrap();
        let c = decode(&bytes).unwrap();
        assert_eq!(c.ts, ts);
        assert_eq!(c.columns.len(), 1);
        let got: Vec<u64> = c.columns[0].iter().map(|v| v.to_bits()).collect();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{only:?}");
    }

    const ALL: [Option<ValueEncoding>; 4] = [
        None,
        Some(ValueEncoding::Xor),
        Some(ValueEncoding::DecimalDelta),
        Some(ValueEncoding::DecimalDeltaOfDelta),
    ];

    #[test]
    fn special_floats_come_back_bit_for_bit() {
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0002), // Prometheus's stale marker
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(1), // the smallest subnormal
            f64::MAX,
            f64::MIN,
            1.5,
            1.5,
            -0.0,
        ];
        let ts: Vec<i64> = (0..values.len() as i64).map(|i| i * 10_000).collect();
        for only in ALL {
            roundtrip(&ts, &values, only);
        }
    }

    #[test]
    fn irregular_and_extreme_timestamps_come_back() {
        let ts = [
            i64::MIN,
            -5,
            0,
            1,
            2,
            10_002,
            10_003,
            3_600_000_000,
            3_600_000_001,
            i64::MAX - 1,
            i64::MAX,
        ];
        let values: Vec<f64> = (0..ts.len()).map(|i| i as f64 * 0.25).collect();
        for only in ALL {
            roundtrip(&ts, &values, only);
        }
        // Out of order is not the chunk's business: it keeps what it is given.
        roundtrip(&[30, 10, 20, 20], &[1.0, 2.0, 3.0, 4.0], None);
    }

    #[test]
    fn decimals_are_chosen_when_they_are_smaller_and_exact() {
        let ts: Vec<i64> = (0..240).map(|i| i * 10_000).collect();
        // A counter in hundredths, like /proc/stat's CPU times.
        let counter: Vec<f64> = (0..240)
            .map(|i| f64::from(12_345_678 + i * 997) / 100.0)
            .collect();
        let best = encode(&ts, &[&counter]).unwrap();
        let xor = encode_with(&ts, &[&counter], Some(ValueEncoding::Xor)).unwrap();
        assert!(
            best.len() * 2 < xor.len(),
            "{} vs {}",
            best.len(),
            xor.len()
        );
        roundtrip(&ts, &counter, None);
        // Sizes in KiB times 1024, moving by pages: the deltas' common
        // power of two is not written.
        let mut kb = 1_843_212i64;
        let pages: Vec<f64> = (0..240i64)
            .map(|i| {
                kb += 4 * ((i * 7919) % 17 - 8);
                (kb * 1024) as f64
            })
            .collect();
        let best = encode(&ts, &[&pages]).unwrap();
        let xor = encode_with(&ts, &[&pages], Some(ValueEncoding::Xor)).unwrap();
        assert!(
            best.len() * 3 < xor.len() * 2,
            "{} vs {}",
            best.len(),
            xor.len()
        );
        roundtrip(&ts, &pages, None);
        let negative: Vec<f64> = pages.iter().map(|v| -v).collect();
        roundtrip(&ts, &negative, None);
        // 0.1 + 0.2 has no short decimal form: XOR it is, exactly.
        let awkward = vec![0.1 + 0.2; 240];
        roundtrip(&ts, &awkward, Some(ValueEncoding::DecimalDelta));
        // Beyond 2^53 integers are not exact: XOR.
        let big: Vec<f64> = (0..240)
            .map(|i| 2f64.powi(60) + f64::from(i) * 4096.0)
            .collect();
        roundtrip(&ts, &big, None);
    }

    #[test]
    fn several_columns_share_the_timestamps() {
        let ts = [1000, 2000, 3000];
        let cols: [&[f64]; 5] = [
            &[1.0, 2.0, 3.0],
            &[4.0, 5.0, 6.5],
            &[f64::NAN; 3],
            &[1.0; 3],
            &[-0.0, 0.0, 1e300],
        ];
        let c = decode(&encode(&ts, &cols).unwrap()).unwrap();
        for (got, want) in c.columns.iter().zip(cols) {
            let g: Vec<u64> = got.iter().map(|v| v.to_bits()).collect();
            let w: Vec<u64> = want.iter().map(|v| v.to_bits()).collect();
            assert_eq!(g, w);
        }
    }

    #[test]
    fn what_cannot_be_a_chunk_is_refused() {
        assert_eq!(encode(&[], &[&[]]), Err(ChunkError::Size(0)));
        assert_eq!(encode(&[1], &[]), Err(ChunkError::Columns(0)));
        assert!(matches!(
            encode(&[1, 2], &[&[1.0]]),
            Err(ChunkError::Ragged { .. })
        ));
    }

    /// A deterministic generator for the fuzz-like tests.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn sample_chunk(rng: &mut XorShift) -> Vec<u8> {
        let n = (rng.next() % 300 + 1) as usize;
        let mut t = rng.next() as i64 >> 20;
        let ts: Vec<i64> = (0..n)
            .map(|_| {
                t += (rng.next() % 20_000) as i64;
                t
            })
            .collect();
        let a: Vec<f64> = (0..n).map(|i| (i as f64 * 3.0).floor() / 100.0).collect();
        let b: Vec<f64> = (0..n).map(|_| f64::from_bits(rng.next())).collect();
        encode(&ts, &[&a, &b]).unwrap()
    }

    #[test]
    fn random_bytes_are_an_error_never_a_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 600).map(|_| rng.next() as u8).collect();
            assert!(decode(&bytes).is_err());
            // Past the checksum too: the decoder itself must hold.
            let _ = decode_unchecked(&bytes);
            let sealed = seal(&bytes);
            let _ = decode(&sealed);
        }
    }

    #[test]
    fn corrupt_and_truncated_chunks_are_errors_never_panics() {
        let mut rng = XorShift(42);
        for _ in 0..200 {
            let good = sample_chunk(&mut rng);
            assert!(decode(&good).is_ok());
            // Every truncation fails its checksum (or its length).
            for cut in 0..good.len() {
                assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
            }
            // A flipped bit fails the checksum; re-sealed, the decoder
            // either reads something or says what is wrong.
            let body = &good[..good.len() - 4];
            for _ in 0..50 {
                let mut bad = good.clone();
                let bit = (rng.next() % (bad.len() as u64 * 8)) as usize;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&bad).is_err());
                let mut flipped = body.to_vec();
                let bit = (rng.next() % (flipped.len() as u64 * 8)) as usize;
                flipped[bit / 8] ^= 1 << (bit % 8);
                let _ = decode(&seal(&flipped));
                let cut = (rng.next() % flipped.len() as u64) as usize;
                let _ = decode(&seal(&flipped[..cut]));
                // A good body cut short, even re-sealed, misses bits.
                assert!(decode(&seal(&body[..cut])).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn another_version_is_refused_with_advice() {
        let mut body = encode(&[1], &[&[1.0]]).unwrap();
        body.truncate(body.len() - 4);
        body[0] = 2;
        let err = decode(&seal(&body)).unwrap_err();
        assert_eq!(err, ChunkError::Version(2));
        assert!(err.to_string().contains("upgrade"), "{err}");
    }

    proptest! {
        #[test]
        fn any_samples_round_trip(
            start in any::<i64>(),
            steps in proptest::collection::vec(any::<i64>(), 0..300),
            bits in proptest::collection::vec(any::<u64>(), 301),
            decimals in proptest::collection::vec(-1_000_000i64..1_000_000, 301),
            e in 0u32..6,
        ) {
            let mut ts = vec![start];
            for s in &steps {
                ts.push(ts[ts.len() - 1].wrapping_add(s >> (s & 63)));
            }
            let n = ts.len();
            let raw: Vec<f64> = bits[..n].iter().map(|&b| f64::from_bits(b)).collect();
            let dec: Vec<f64> = decimals[..n].iter().map(|&m| m as f64 / 10f64.powi(e as i32)).collect();
            for only in ALL {
                roundtrip(&ts, &raw, only);
                roundtrip(&ts, &dec, only);
            }
        }
    }
}
