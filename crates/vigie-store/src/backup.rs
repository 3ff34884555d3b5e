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

/// One finished restore drill of a backup job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupDrill {
    pub job: String,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// Every restored byte matched the snapshot.
    pub ok: bool,
    /// The snapshot drilled (when one was found).
    pub snapshot: Option<String>,
    /// Files restored and verified, and their bytes.
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// How long the restore itself took: the measured recovery time.
    pub restore_ms: Option<u64>,
    /// Why it failed: the first differences, or the error.
    pub error: Option<String>,
}

const DRILL_COLUMNS: &str =
    "job, started_ms, ended_ms, ok, snapshot, files, bytes, restore_ms, error";

fn drill_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupDrill> {
    let count = |i| {
        r.get::<_, Option<i64>>(i)
            .map(|v| v.map(|v| v.max(0) as u64))
    };
    Ok(BackupDrill {
        job: r.get(0)?,
        started: Timestamp(r.get(1)?),
        ended: Timestamp(r.get(2)?),
        ok: r.get(3)?,
        snapshot: r.get(4)?,
        files: count(5)?,
        bytes: count(6)?,
        restore_ms: count(7)?,
        error: r.get(8)?,
    })
}

impl Store {
    /// Record a finished drill.
    pub fn drill_record(&mut self, d: &BackupDrill) -> Result<()> {
        let n = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        self.conn.execute(
            &format!(
                "INSERT INTO backup_drills ({DRILL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                d.job,
                d.started.millis(),
                d.ended.millis(),
                d.ok,
                d.snapshot,
                n(d.files),
                n(d.bytes),
                n(d.restore_ms),
                d.error,
            ],
        )?;
        Ok(())
    }

    /// `job`'s last drill.
    pub fn drill_last(&self, job: &str) -> Result<Option<BackupDrill>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {DRILL_COLUMNS} FROM backup_drills WHERE job = ?1
                     ORDER BY started_ms DESC, id DESC LIMIT 1"
                ),
                params![job],
                drill_row,
            )
            .optional()?)
    }
}

/// One finished integrity check of a backup job's repository.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupCheck {
    pub job: String,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// It ran and found no error (warnings allowed).
    pub ok: bool,
    /// The share of pack data read back (`10%`, `1/12`, `all`, `none`).
    pub read_data: String,
    /// What it found, when it ran.
    pub errors: Option<u64>,
    pub warnings: Option<u64>,
    /// The first errors found, or why it could not run.
    pub error: Option<String>,
}

const CHECK_COLUMNS: &str = "job, started_ms, ended_ms, ok, read_data, errors, warnings, error";

fn check_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupCheck> {
    let count = |i| {
        r.get::<_, Option<i64>>(i)
            .map(|v| v.map(|v| v.max(0) as u64))
    };
    Ok(BackupCheck {
        job: r.get(0)?,
        started: Timestamp(r.get(1)?),
        ended: Timestamp(r.get(2)?),
        ok: r.get(3)?,
        read_data: r.get(4)?,
        errors: count(5)?,
        warnings: count(6)?,
        error: r.get(7)?,
    })
}

impl Store {
    /// Record a finished integrity check.
    pub fn check_record(&mut self, c: &BackupCheck) -> Result<()> {
        let n = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        self.conn.execute(
            &format!("INSERT INTO backup_checks ({CHECK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                c.job,
                c.started.millis(),
                c.ended.millis(),
                c.ok,
                c.read_data,
                n(c.errors),
                n(c.warnings),
                c.error,
            ],
        )?;
        Ok(())
    }

    /// `job`'s last integrity check.
    pub fn check_last(&self, job: &str) -> Result<Option<BackupCheck>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {CHECK_COLUMNS} FROM backup_checks WHERE job = ?1
                     ORDER BY started_ms DESC, id DESC LIMIT 1"
                ),
                params![job],
                check_row,
            )
            .optional()?)
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

    #[test]
    fn the_last_drill() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.drill_last("n").unwrap(), None);
        let good = BackupDrill {
            job: "n".into(),
            started: Timestamp(1000),
            ended: Timestamp(5000),
            ok: true,
            snapshot: Some("cd".repeat(32)),
            files: Some(12),
            bytes: Some(4096),
            restore_ms: Some(3000),
            error: None,
        };
        store.drill_record(&good).unwrap();
        let bad = BackupDrill {
            started: Timestamp(6000),
            ok: false,
            error: Some("a.txt: content differs".into()),
            ..good.clone()
        };
        store.drill_record(&bad).unwrap();
        assert_eq!(store.drill_last("n").unwrap(), Some(bad));
        assert_eq!(store.drill_last("other").unwrap(), None);
    }

    #[test]
    fn the_last_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check_last("n").unwrap(), None);
        let good = BackupCheck {
            job: "n".into(),
            started: Timestamp(1_000),
            ended: Timestamp(2_000),
            ok: true,
            read_data: "10%".into(),
            errors: Some(0),
            warnings: Some(1),
            error: None,
        };
        store.check_record(&good).unwrap();
        let bad = BackupCheck {
            started: Timestamp(3_000),
            ended: Timestamp(4_000),
            ok: false,
            errors: None,
            warnings: None,
            error: Some("connection refused".into()),
            ..good.clone()
        };
        store.check_record(&bad).unwrap();
        assert_eq!(store.check_last("n").unwrap(), Some(bad));
        assert_eq!(store.check_last("other").unwrap(), None);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.check_last("n").unwrap().map(|c| c.ok),
            Some(false),
            "kept"
        );
    }
}
