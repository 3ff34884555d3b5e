//! The runs of backup jobs: one row each, written when it ends.

use rusqlite::{OptionalExtension, params};
use vigie_core::Timestamp;

use crate::{Result, Store};

/// One finished run of a backup job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupRun {
    pub job: String,
    pub started: Timestamp,
    pub ended: Timestamp,
    pub ok: bool,
    /// The snapshot it made (a good run).
    pub snapshot: Option<String>,
    /// What it added to the repository, in bytes as stored (a good run).
    pub bytes_added: Option<u64>,
    /// Why it failed (a failed run).
    pub error: Option<String>,
}

const COLUMNS: &str = "job, started_ms, ended_ms, ok, snapshot, bytes_added, error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupRun> {
    Ok(BackupRun {
        job: r.get(0)?,
        started: Timestamp(r.get(1)?),
        ended: Timestamp(r.get(2)?),
        ok: r.get(3)?,
        snapshot: r.get(4)?,
        bytes_added: r.get::<_, Option<i64>>(5)?.map(|b| b.max(0) as u64),
        error: r.get(6)?,
    })
}

impl Store {
    /// Record a finished run.
    pub fn backup_record(&mut self, run: &BackupRun) -> Result<()> {
        self.conn.execute(
            &format!("INSERT INTO backup_runs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                run.job,
                run.started.millis(),
                run.ended.millis(),
                run.ok,
                run.snapshot,
                run.bytes_added.map(|b| b as i64),
                run.error,
            ],
        )?;
        Ok(())
    }

    /// `job`'s last run, and its last good one.
    pub fn backup_last(&self, job: &str) -> Result<(Option<BackupRun>, Option<BackupRun>)> {
        let one = |only_ok: &str| {
            self.conn
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM backup_runs WHERE job = ?1 {only_ok}
                         ORDER BY started_ms DESC, id DESC LIMIT 1"
                    ),
                    params![job],
                    row,
                )
                .optional()
        };
        Ok((one("")?, one("AND ok = 1")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_run_and_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.backup_last("n").unwrap(), (None, None));
        let good = BackupRun {
            job: "n".into(),
            started: Timestamp(1000),
            ended: Timestamp(2000),
            ok: true,
            snapshot: Some("ab".repeat(32)),
            bytes_added: Some(42),
            error: None,
        };
        store.backup_record(&good).unwrap();
        let bad = BackupRun {
            started: Timestamp(3000),
            ended: Timestamp(3500),
            ok: false,
            snapshot: None,
            bytes_added: None,
            error: Some("wrong password".into()),
            ..good.clone()
        };
        store.backup_record(&bad).unwrap();
        store
            .backup_record(&BackupRun {
                job: "other".into(),
                started: Timestamp(9000),
                ..good.clone()
            })
            .unwrap();
        assert_eq!(store.backup_last("n").unwrap(), (Some(bad), Some(good)));
    }
}
