//! Maintenance started by hand on a check (the dashboard, the API): the
//! check keeps running, its incidents wait until `until`. Kept here so
//! that a restart keeps it; the engine reads it back at start.

use rusqlite::params;
use vigie_core::Timestamp;

use crate::{Result, Store};

/// A check in maintenance by hand.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ManualMaintenance {
    pub check: String,
    pub since: Timestamp,
    pub until: Timestamp,
    /// Who started it (a user, or `api`).
    pub by: String,
}

impl Store {
    /// Put `m.check` in maintenance until `m.until` (replacing one
    /// already there).
    pub fn start_maintenance(&mut self, m: &ManualMaintenance) -> Result<()> {
        self.conn.execute(
            "INSERT INTO maintenance_now (check_name, since_ms, until_ms, by) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (check_name) DO UPDATE SET since_ms = excluded.since_ms,
             until_ms = excluded.until_ms, by = excluded.by",
            params![m.check, m.since.millis(), m.until.millis(), m.by],
        )?;
        Ok(())
    }

    /// End `check`'s maintenance; whether there was one.
    pub fn end_maintenance(&mut self, check: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM maintenance_now WHERE check_name = ?1",
            params![check],
        )? > 0)
    }

    /// Every maintenance by hand still running at `now`; those over are
    /// removed.
    pub fn maintenances(&mut self, now: Timestamp) -> Result<Vec<ManualMaintenance>> {
        self.conn.execute(
            "DELETE FROM maintenance_now WHERE until_ms <= ?1",
            params![now.millis()],
        )?;
        self.maintenances_running(now)
    }

    /// Every maintenance by hand still running at `now`, without a write
    /// (`vigie status`).
    pub fn maintenances_running(&self, now: Timestamp) -> Result<Vec<ManualMaintenance>> {
        let mut st = self.conn.prepare_cached(
            "SELECT check_name, since_ms, until_ms, by FROM maintenance_now
             WHERE until_ms > ?1 ORDER BY check_name",
        )?;
        let rows = st.query_map(params![now.millis()], |r| {
            Ok(ManualMaintenance {
                check: r.get(0)?,
                since: Timestamp(r.get(1)?),
                until: Timestamp(r.get(2)?),
                by: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
