//! Reports that work running beside the engine (replication and backup jobs)
//! publishes about itself, for the checks that watch it: the job judges
//! its own state (it knows its lag, queue and errors), and its check
//! reads the latest word. The CLI makes one [`Board`] and hands a clone
//! to each job and to the probes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::{Outcome, Timestamp};

/// What a backup job reports, under [`backup_report`]`(job)`: its last
/// run's outcome, with these numbers among its metrics.
pub mod backup {
    /// When the last good snapshot was made (seconds since the epoch);
    /// absent before the first.
    pub const LAST_SUCCESS: &str = "last_success_timestamp_seconds";
    /// Since when the job is watched: the age check's reference while
    /// there is no good snapshot yet.
    pub const WATCHED_SINCE: &str = "watched_since_timestamp_seconds";
    /// How long the last run took.
    pub const DURATION: &str = "last_duration_seconds";
    /// What the last run added to the repository (bytes, as stored).
    pub const BYTES_ADDED: &str = "last_bytes_added";
    /// 1 when the last run was good, 0 when it failed; absent before
    /// the first run.
    pub const RESULT: &str = "last_result";
}

/// What a backup job's restore drills report, under
/// [`drill_report`]`(job)`: the last drill's outcome, with these numbers.
pub mod drill {
    /// When the last drill ended (seconds since the epoch).
    pub const LAST_TIMESTAMP: &str = "last_drill_timestamp_seconds";
    /// How long its restore took: the measured recovery time.
    pub const RESTORE_SECONDS: &str = "last_drill_restore_seconds";
    /// 1 when every restored byte matched, 0 when it failed.
    pub const RESULT: &str = "last_drill_result";
}

/// The board name under which backup job `job`'s drills report.
pub fn drill_report(job: &str) -> String {
    format!("backup-drill.{job}")
}

/// What a backup job's scheduled integrity checks report, under
/// [`integrity_report`]`(job)`: the last check's outcome, with these
/// numbers.
pub mod integrity {
    /// When the last check ended (seconds since the epoch).
    pub const LAST_TIMESTAMP: &str = "last_check_timestamp_seconds";
    /// How long it took (the structure, and the share of the data read).
    pub const SECONDS: &str = "last_check_seconds";
    /// 1 when it found no error, 0 when it found damage or could not run.
    pub const RESULT: &str = "last_check_result";
}

/// The board name under which backup job `job`'s scheduled integrity
/// checks report.
pub fn integrity_report(job: &str) -> String {
    format!("backup-check.{job}")
}

/// What a backup job's repository reachability reports, under
/// [`repository_report`]`(job)`: whether its storage answered and holds
/// a repository, with these numbers.
pub mod repository {
    /// 1 when the repository answered, 0 when it did not.
    pub const UP: &str = "repository_up";
    /// How long it took to answer (connection included).
    pub const SECONDS: &str = "repository_seconds";
}

/// The board name under which backup job `job`'s repository
/// reachability reports.
pub fn repository_report(job: &str) -> String {
    format!("backup-repository.{job}")
}

/// What a `[[converge]]` job reports, under [`converge_report`]`(job)`:
/// its last run's outcome, with these numbers.
pub mod converge {
    /// When the last run ended (seconds since the epoch).
    pub const LAST_RUN: &str = "last_run_timestamp_seconds";
    /// The last run's resources by outcome: this prefix and the outcome
    /// (`resources.compliant`, `resources.non_compliant`, …).
    pub const RESOURCES: &str = "resources.";
    /// The outcomes counted under [`RESOURCES`].
    pub const OUTCOMES: [&str; 5] = ["compliant", "non_compliant", "repaired", "skipped", "error"];
}

/// The board name under which converge job `job` reports.
pub fn converge_report(job: &str) -> String {
    format!("converge.{job}")
}

/// The board name under which backup job `job` reports.
pub fn backup_report(job: &str) -> String {
    format!("backup.{job}")
}

/// The latest report of each name. Cheap to clone: clones share one map.
#[derive(Debug, Clone, Default)]
pub struct Board {
    reports: Arc<RwLock<BTreeMap<String, (Outcome, Timestamp)>>>,
}

impl Board {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publish `outcome` as the latest report of `name`.
    pub fn publish(&self, name: &str, outcome: Outcome) {
        self.reports
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), (outcome, Timestamp::now()));
    }

    /// The latest report of `name`, and when it was published.
    pub fn report(&self, name: &str) -> Option<(Outcome, Timestamp)> {
        self.reports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Forget `name` (its job stopped).
    pub fn withdraw(&self, name: &str) {
        self.reports
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_map_and_boards_are_apart() {
        let a = Board::new();
        let b = a.clone();
        a.publish("sync.x", Outcome::ok("fine"));
        assert_eq!(b.report("sync.x").map(|(o, _)| o.ok), Some(true));
        assert!(Board::new().report("sync.x").is_none());
        b.withdraw("sync.x");
        assert!(a.report("sync.x").is_none());
    }
}
