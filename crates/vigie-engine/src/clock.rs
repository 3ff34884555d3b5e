//! Where the incident manager reads the time of day: the system's clock
//! in the daemon; in tests, a time of day that moves with tokio's clock,
//! so that a paused runtime decides verify windows, escalation delays,
//! restart limits, flap windows and maintenance windows to the
//! millisecond. The waits themselves are always tokio's.

use vigie_core::Timestamp;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Clock {
    /// `Timestamp::now()`.
    #[default]
    System,
    /// `at` when tokio's clock read `start`, moving with tokio's clock
    /// since (paused in tests, where only `advance` moves it).
    #[cfg(test)]
    Tokio {
        at: Timestamp,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `at` now and follows tokio's clock from here.
    #[cfg(test)]
    pub(crate) fn tokio(at: Timestamp) -> Self {
        Clock::Tokio {
            at,
            start: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            #[cfg(test)]
            Clock::Tokio { at, start } => at.saturating_add(start.elapsed()),
        }
    }
}
