//! Time series: every check's numbers and the host's metrics, kept
//! compressed, rolled up and bounded, in the same SQLite file.
//!
//! # Model
//!
//! A series is a name and sorted labels ([`SeriesKey`], Prometheus's
//! rules for both), numbered once in the table `series`. Samples are
//! `(milliseconds, f64)` appended in strictly increasing time per series
//! ([`SeriesStore::append`]); an older or equal timestamp is refused
//! ([`SeriesError::OutOfOrder`]) and nothing is stored for it.
//!
//! Each series has one *open chunk* per resolution in memory. The raw
//! one closes once it has [`RAW_CHUNK_SAMPLES`] samples or spans
//! [`RAW_CHUNK_WINDOW_MS`], at the next sample that starts a new minute
//! (so it holds whole minutes; a series denser than 4 samples a second
//! closes at four times the size anyway); closing writes it to
//! `series_chunks` and folds its samples into one-minute aggregates
//! (min, max, sum, count, last; a NaN sample counts in none of them),
//! whose chunk closes likewise at 60 of them into one-hour aggregates
//! (chunks of 24), in the same transaction, so that the roll-ups on disk
//! always match the raw chunks on disk. [`SeriesStore::flush`] writes
//! the open chunks as they are (rewritten in place as they grow,
//! reloaded and continued after a restart). **A crash loses the samples
//! appended since the last flush or chunk close, nothing older**; the
//! caller flushes on shutdown and, say, every minute.
//!
//! [`SeriesStore::query`] returns raw samples; [`SeriesStore::query_step`]
//! reads the coarsest resolution no wider than the step (raw, 1 min,
//! 1 h) plus the finer resolutions' open chunks (what is not rolled up
//! yet), and coarser data where the finer has expired, so 90 days are
//! ~2,200 hourly points read from ~90 small chunks.
//! [`SeriesStore::enforce_retention`] closes the raw chunks of series
//! quiet for a chunk's window (so they roll up), deletes chunks by age
//! per resolution ([`Retention`]; defaults raw 2 days, 1 min 30 days,
//! 1 h 2 years) and then, above the size bound, the oldest chunks, raw
//! first. The bound counts the chunks' bytes: SQLite reuses the freed
//! pages, the file does not shrink.
//!
//! # Chunk format (version 1)
//!
//! ```text
//! u8 version (1) | u8 columns (1 raw, 5 roll-up) | u16 LE count
//! | bit stream, most significant bit first, zero-padded to a byte
//! | u32 LE: the low 32 bits of XXH3-64 of everything before
//! ```
//!
//! Integers in the stream are written on a *ladder*: 6 bits give the
//! chunk's first width `w` (0 to 40), then each field is `0` + a signed
//! `w`-bit number, or `10` + 14 bits, `110` + 24, `1110` + 40, `1111` +
//! 64 (widths not above `w` are skipped; the last has no closing `0`).
//! The encoder picks the `w` that writes the chunk's fields in the fewest
//! bits: `w = 0` is Gorilla's one bit for a regular interval, `w = 3`
//! takes a scheduler's jitter of a few milliseconds in 4 bits.
//!
//! The bit stream holds the timestamps, then each column:
//!
//! - timestamps: the first as 64 bits, then each delta-of-delta on a
//!   ladder (Gorilla's scheme, with the first width chosen per chunk);
//! - a column: 2 bits of encoding, then
//!   - `0`, XOR (Gorilla): the first value's 64 bits, then `0` for the
//!     same value, `10` + the XOR's meaningful bits inside the previous
//!     window, or `11` + 6 bits of leading zeros + 6 bits of length − 1
//!     and the bits. Any `f64` (NaN payloads, ±inf, -0.0) comes back
//!     bit for bit;
//!   - `1` or `2`, decimal: when every value is exactly an integer `m`
//!     over 10^e (e ≤ 15, |m| ≤ 2^53, checked bit for bit), 4 bits of
//!     `e`, the first `m` as 64 bits, 6 bits `s`, then each delta (`1`)
//!     or delta-of-delta (`2`) shifted right by `s` (the fields' common
//!     power of two: sizes move by pages) on a ladder.
//!
//! The encoder writes, per column, the smallest encoding the column
//! admits. A kernel's counter in hundredths (`node_cpu_seconds_total`)
//! or a reading with two decimals (`node_load1`) XORs into 30 to 50
//! meaningful bits per value, where its decimal deltas take 5 to 9.
//! A roll-up's sum is added on the decimal forms when the values have
//! one, so that it keeps one. A wrong version, a bad checksum, a
//! truncated or inconsistent stream is a [`ChunkError`], never a panic.
//!
//! # Bytes per sample
//!
//! The test `bytes_per_sample_of_a_day_of_node_metrics` (in
//! `tests/series.rs`, run with `--nocapture` to see the figures) writes
//! a day at 10 s, 0 to 3 ms late, of `node_cpu_seconds_total` (hundredths,
//! an idle CPU), `node_memory_MemAvailable_bytes` (moving by pages) and
//! `node_load1` (two decimals): **1.50 bytes per sample** in raw chunks
//! (1.67, 1.45 and 1.37; Gorilla's XOR alone gives 5.17), where
//! Prometheus documents 1 to 2. The roll-ups add 0.89 bytes per raw
//! sample while the raw data is kept; SQLite's pages bring the file's
//! growth to 3.0 bytes per sample for the three resolutions together.
//!
//! # Memory
//!
//! Only the raw open chunk of a series is in memory, and it is kept
//! compressed as it grows (`open.rs`: the encoder's state and the bits
//! written so far, one sample appended at a time, Gorilla's way; decoded
//! and written in the format above when flushed or closed). The roll-ups'
//! open chunks are on disk, written as each raw chunk closes and read
//! back at the next close. The test
//! `an_open_series_costs_hundreds_of_bytes_not_kilobytes` (in
//! `tests/series.rs`, `--nocapture`) feeds 300 checks' `up`, `failing`
//! and duration (to the microsecond) every 30 s and three host series
//! every 15 s for six hours: **about 950 bytes per open series with a
//! full raw chunk** (about 400 of them fixed: the key, the state, the
//! map's slot; the rest the bits, 10 per sample for a 0/1 series, 37
//! for a duration), half that on average over a chunk's life, against
//! about 8 KiB decoded before. A check's four series cost about 3 KiB
//! at most: 1,000 checks, 3 MiB.

mod bits;
pub mod chunk;
mod open;
mod store;

pub use chunk::{Chunk, ValueEncoding};
pub use store::{LevelStats, RetentionReport, SeriesStore};

use std::time::Duration;

use crate::StoreError;

/// A raw chunk closes at this many samples…
pub const RAW_CHUNK_SAMPLES: usize = 240;
/// …or when a sample comes this long after its first.
pub const RAW_CHUNK_WINDOW_MS: i64 = 2 * 3_600_000;

/// A series' identity: a name and its labels, sorted by label name.
///
/// Its hash is computed once, when it is made: the series thread looks
/// up thousands of keys a second, and a key is made once per check (see
/// [`KeyHasher`]), so a lookup hashes no string.
#[derive(Clone, Debug)]
pub struct SeriesKey {
    name: String,
    labels: Vec<(String, String)>,
    hash: u64,
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.name == other.name && self.labels == other.labels
    }
}

impl Eq for SeriesKey {}

impl std::hash::Hash for SeriesKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.name, &self.labels).cmp(&(&other.name, &other.labels))
    }
}

/// A hasher for maps keyed by [`SeriesKey`]: the key's hash is already
/// mixed (SipHash of its name and labels), so it is taken as it is.
#[derive(Default, Clone, Copy, Debug)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached through `SeriesKey`; mix anything else in FNV-1a.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Build [`KeyHasher`]s.
pub type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

impl SeriesKey {
    /// A series named `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`) with `labels`
    /// (names `[a-zA-Z_][a-zA-Z0-9_]*`, each once; any value).
    pub fn new<K, V>(
        name: &str,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, SeriesError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        if !valid_name(name, true) {
            return Err(SeriesError::Name(name.to_owned()));
        }
        let mut labels: Vec<(String, String)> = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        labels.sort();
        for (i, (k, _)) in labels.iter().enumerate() {
            if !valid_name(k, false) {
                return Err(SeriesError::Label {
                    series: name.to_owned(),
                    label: k.clone(),
                    why: "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                });
            }
            if i > 0 && labels[i - 1].0 == *k {
                return Err(SeriesError::Label {
                    series: name.to_owned(),
                    label: k.clone(),
                    why: "is given twice",
                });
            }
        }
        let hash = {
            use std::hash::{Hash, Hasher};
            // One random key for the process: the same series hashes
            // the same in every map, and label values (mount points,
            // interfaces) cannot be chosen to collide.
            static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
            let mut h =
                std::hash::BuildHasher::build_hasher(KEYS.get_or_init(std::hash::RandomState::new));
            name.hash(&mut h);
            labels.hash(&mut h);
            h.finish()
        };
        Ok(Self {
            name: name.to_owned(),
            labels,
            hash,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// The labels as stored: a JSON array of `[name, value]`, sorted.
    fn labels_json(&self) -> String {
        serde_json::to_string(&self.labels).unwrap_or_default()
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        vigie_core::write_series(f, &self.name, &self.labels)
    }
}

fn valid_name(s: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false)) && s.len() <= 200
}

/// One raw sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub ts_ms: i64,
    pub value: f64,
}

/// The samples of one time bucket: NaN samples count in none of these.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    /// The bucket's start (milliseconds, a multiple of its width).
    pub ts_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    /// The last sample's value.
    pub last: f64,
}

impl Aggregate {
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    fn of(ts_ms: i64, v: f64) -> Self {
        Self {
            ts_ms,
            min: v,
            max: v,
            sum: v,
            count: 1,
            last: v,
        }
    }

    fn merge(&mut self, o: &Self) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum = chunk::exact_sum(self.sum, o.sum);
        self.count += o.count;
        self.last = o.last;
    }
}

/// The resolutions a series is kept at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
}

impl Resolution {
    pub const ALL: [Self; 3] = [Self::Raw, Self::Minute, Self::Hour];

    /// The bucket width in milliseconds (0 for raw), as stored.
    pub fn millis(self) -> i64 {
        match self {
            Self::Raw => 0,
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
        }
    }
}

/// How long each resolution is kept, and a bound on the chunks' bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
    /// Above this many bytes of chunks, the oldest go, raw first.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: Duration::from_hours(48),
            minute: Duration::from_hours(30 * 24),
            hour: Duration::from_hours(2 * 365 * 24),
            max_bytes: 512 << 20,
        }
    }
}

impl Retention {
    fn of(&self, r: Resolution) -> Duration {
        match r {
            Resolution::Raw => self.raw,
            Resolution::Minute => self.minute,
            Resolution::Hour => self.hour,
        }
    }
}

/// A chunk that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("the chunk is truncated")]
    Truncated,
    #[error("the chunk's checksum is {stored:08x}, its bytes give {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("the chunk has format version {0}; this vigie reads version {v}, upgrade it", v = chunk::VERSION)]
    Version(u8),
    #[error("a chunk holds 1 to {max} columns, not {0}", max = chunk::MAX_COLUMNS)]
    Columns(usize),
    #[error("a chunk holds 1 to {max} samples, not {0}", max = chunk::MAX_SAMPLES)]
    Size(usize),
    #[error("{values} values for {timestamps} timestamps")]
    Ragged { timestamps: usize, values: usize },
    #[error("the chunk is corrupt: {0}")]
    Corrupt(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error(
        "{0:?} is not a series name; hint: use letters, digits, '_' and ':', not starting with a digit"
    )]
    Name(String),
    #[error("series {series}: label {label:?} {why}")]
    Label {
        series: String,
        label: String,
        why: &'static str,
    },
    #[error(
        "series {series}: a sample at {ts_ms} ms comes after one at {last_ms} ms; hint: samples of a series must be appended in strictly increasing time (it was not stored)"
    )]
    OutOfOrder {
        series: String,
        ts_ms: i64,
        last_ms: i64,
    },
    #[error(
        "series {series}: the chunk at resolution {resolution_ms} ms from {start_ms} ms is unreadable: {source}; hint: the store file is damaged, restore it from a backup or delete that row of series_chunks"
    )]
    Chunk {
        series: String,
        resolution_ms: i64,
        start_ms: i64,
        source: ChunkError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for SeriesError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}
