//! What the dashboard draws of a check's runs: its last few (its
//! sparkline) and its runs over a range gathered in equal buckets of
//! time (its history graph). Both are read from the check's series
//! (`vigie_check_up`, `vigie_check_duration_seconds`): every run is a
//! sample there, where the `results` table keeps only failures and
//! changes.

use vigie_core::Timestamp;

/// One run, as a sparkline draws it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    pub at: Timestamp,
    pub ok: bool,
    pub duration_ms: f64,
}

/// A check's runs within one bucket of time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The bucket's start (its width is the query's).
    pub start: Timestamp,
    pub runs: u64,
    pub failures: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}
