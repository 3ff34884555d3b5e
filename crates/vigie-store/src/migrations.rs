//! Versioned schema migrations, tracked with SQLite's `user_version`.
//! Append to `MIGRATIONS`; never edit one that has shipped.

use std::path::Path;

use rusqlite::Connection;

use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: check results, per-check state, heartbeats.
    "CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        check_name TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        lag_ms REAL NOT NULL,
        duration_ms REAL NOT NULL,
        ok INTEGER NOT NULL,
        message TEXT NOT NULL,
        metrics TEXT
    );
    CREATE INDEX results_by_check ON results (check_name, started_ms);
    CREATE TABLE check_state (
        check_name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        consecutive_ok INTEGER NOT NULL,
        consecutive_fail INTEGER NOT NULL,
        since_ms INTEGER NOT NULL,
        last_ms INTEGER,
        last_ok INTEGER,
        last_message TEXT,
        last_duration_ms REAL,
        runs_total INTEGER NOT NULL DEFAULT 0,
        failures_total INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE heartbeats (
        check_name TEXT PRIMARY KEY,
        token TEXT,
        last_ping_ms INTEGER,
        last_fail_ms INTEGER,
        first_seen_ms INTEGER NOT NULL
    );",
    // 2: incidents, what happened in them, notifications sent, repairs run.
    "CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        check_name TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        suppressed_by TEXT,
        opened_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        resolution TEXT,
        acked_ms INTEGER,
        ack_note TEXT,
        last_error TEXT NOT NULL
    );
    CREATE INDEX incidents_by_check ON incidents (check_name, opened_ms);
    CREATE TABLE incident_events (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX incident_events_by_incident ON incident_events (incident_id);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        step TEXT NOT NULL,
        notifier TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT
    );
    CREATE INDEX deliveries_by_incident ON deliveries (incident_id);
    CREATE TABLE repairs (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        action TEXT NOT NULL,
        check_name TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX repairs_by_action ON repairs (action, check_name, at_ms);",
    // 3: which side each failover points at, since when, and why.
    "CREATE TABLE failover_state (
        name TEXT PRIMARY KEY,
        side TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        reason TEXT NOT NULL
    );",
    // 4: every switch, for the daily budget of DNS changes.
    "CREATE TABLE failover_log (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        side TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX failover_log_by_name ON failover_log (name, at_ms);",
    // 5: replication: the paths each job has yet to send (kept across a
    // crash), and jobs paused by hand or by a failover (fencing).
    "CREATE TABLE sync_queue (
        job TEXT NOT NULL,
        path BLOB NOT NULL,
        since_ms INTEGER NOT NULL,
        PRIMARY KEY (job, path)
    ) WITHOUT ROWID;
    CREATE TABLE sync_paused (
        job TEXT PRIMARY KEY,
        since_ms INTEGER NOT NULL,
        reason TEXT NOT NULL
    );",
    // 6: heartbeat tokens kept hashed (the tokens move to their file in
    // the Rust step of this version, `hash_heartbeat_tokens`).
    "ALTER TABLE heartbeats RENAME COLUMN token TO token_sha256;",
    // 7: the exit status a job reported with its failure (NULL for a
    // plain `/fail`).
    "ALTER TABLE heartbeats ADD COLUMN last_fail_status INTEGER;",
    // 8: when the job last said it started (`/ping/NAME/start`), and how
    // long its last run took, from that start to its success or failure.
    "ALTER TABLE heartbeats ADD COLUMN last_start_ms INTEGER;
     ALTER TABLE heartbeats ADD COLUMN last_duration_ms INTEGER;",
    // 9: what the job sent with its last success or failure (its output,
    // cut to 10 KB).
    "ALTER TABLE heartbeats ADD COLUMN last_body TEXT;",
    // 10: the runs of `[[backup]]` jobs (daemon, CLI and incident steps
    // alike): a good one has its snapshot, a failed one its error.
    "CREATE TABLE backup_runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        snapshot TEXT,
        bytes_added INTEGER,
        error TEXT
    );
    CREATE INDEX backup_runs_job ON backup_runs (job, started_ms);",
    // 11: the restore drills of `[[backup]]` jobs: the snapshot drilled,
    // what was restored and verified, how long the restore took (the
    // measured recovery time), or why it failed.
    "CREATE TABLE backup_drills (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        snapshot TEXT,
        files INTEGER,
        bytes INTEGER,
        restore_ms INTEGER,
        error TEXT
    );
    CREATE INDEX backup_drills_job ON backup_drills (job, started_ms);",
    // 12: the scheduled integrity checks of `[[backup]]` jobs'
    // repositories: how much data was read back, what was found, or why
    // the check could not run.
    "CREATE TABLE backup_checks (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        read_data TEXT NOT NULL,
        errors INTEGER,
        warnings INTEGER,
        error TEXT
    );
    CREATE INDEX backup_checks_job ON backup_checks (job, started_ms);",
    // 13: time series (`series/`): each series' name and labels (a JSON
    // array of sorted [name, value] pairs), and its compressed chunks per
    // resolution (0 raw, 60000 one minute, 3600000 one hour); an open
    // chunk is rewritten in place until it closes.
    "CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        UNIQUE (name, labels)
    );
    CREATE TABLE series_chunks (
        series_id INTEGER NOT NULL REFERENCES series (id),
        resolution_ms INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        open INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (series_id, resolution_ms, start_ms)
    ) WITHOUT ROWID;
    CREATE INDEX series_chunks_by_age ON series_chunks (resolution_ms, end_ms);",
    // 14: public notes on incidents (what status pages show), and
    // maintenance started by hand on a check (the dashboard, the API),
    // which outlives a restart until it ends.
    "CREATE TABLE incident_notes (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        at_ms INTEGER NOT NULL,
        author TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX incident_notes_by_incident ON incident_notes (incident_id, id);
    CREATE TABLE maintenance_now (
        check_name TEXT PRIMARY KEY,
        since_ms INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        by TEXT NOT NULL
    );",
    // 15: each `[[converge]]` job's last run: the SHA-256 of the
    // manifest it ran, the commit of a git-pulled one, and what it saw
    // (the ids of the resources that differed), so that a restart still
    // tells a changed host from a changed manifest.
    "CREATE TABLE converge_last (
        job TEXT PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        git_commit TEXT,
        seen TEXT NOT NULL
    );",
];

/// The version whose SQL is followed by [`hash_heartbeat_tokens`].
const HASHED_TOKENS: i64 = 6;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if version == HASHED_TOKENS {
            hash_heartbeat_tokens(&tx, path)?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}

/// Move the generated tokens, stored in plain before, to their file, and
/// keep their hashes. The file is written before the transaction commits:
/// a crash in between leaves both, and the next open does it again.
fn hash_heartbeat_tokens(tx: &rusqlite::Transaction<'_>, db: &Path) -> Result<()> {
    let plain: Vec<(String, String)> = tx
        .prepare("SELECT check_name, token_sha256 FROM heartbeats WHERE token_sha256 IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if plain.is_empty() {
        return Ok(());
    }
    crate::tokens::save(db.parent().unwrap_or(Path::new(".")), &plain)?;
    for (check, token) in &plain {
        tx.execute(
            "UPDATE heartbeats SET token_sha256 = ?2 WHERE check_name = ?1",
            rusqlite::params![check, crate::token_sha256(token)],
        )?;
    }
    tracing::info!(
        tokens = plain.len(),
        "heartbeat tokens now kept hashed in the store, in plain in {}",
        crate::TOKENS_FILE
    );
    Ok(())
}
