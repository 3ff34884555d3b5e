//! vigie's embedded store: one SQLite file in WAL mode under the state
//! directory, with versioned migrations.
//!
//! A check result is recorded with its timing and numbers when it says
//! something new (a failure, or an outcome or message that differs from
//! the check's previous run; every run is a sample of the series); each
//! check's threshold state and counters are kept so that a restart
//! remembers a failing check; heartbeat pings and the hashes of generated tokens live here
//! too (the tokens in a file of their own, `tokens`); time series,
//! compressed and rolled up, in [`series`]. A daemon
//! killed with SIGKILL loses nothing that was committed: WAL with
//! `synchronous = NORMAL` survives a process crash (only a power cut may
//! take the last transactions).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use vigie_core::{CheckResult, CheckState, StateTracker, Timestamp};

mod atomic;
mod backup;
mod converge;
mod history;
mod incidents;
pub mod lock;
mod maintenance;
mod migrations;
pub mod series;
mod sqlite_copy;
mod sync;
mod tokens;

pub use atomic::write_atomic;
pub use tokens::{TOKENS_FILE, generated_token, token_sha256};

pub use backup::{BackupCheck, BackupDrill, BackupRun};
pub use converge::ConvergeLast;
pub use history::{Bucket, Mark};
pub use maintenance::ManualMaintenance;
pub use sqlite_copy::sqlite_copy;
pub use sync::{FENCE_PREFIX, Paused, Resume};

pub use incidents::{
    Ack, DeliveryRecord, Event as IncidentEvent, EventKind, Incident, Note, Noted, NotifierHealth,
};

pub use migrations::SCHEMA_VERSION;

pub use series::{
    Aggregate, ChunkError, Resolution, Retention, Sample, SeriesError, SeriesKey, SeriesStore,
};

/// The store's file name inside the state directory.
pub const DB_FILE: &str = "vigie.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path} or make it private (0700): {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {path} private (0600): {source}")]
    PrivateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the store {path} has schema version {found}, newer than this vigie knows ({known}); upgrade vigie or point --state-dir elsewhere"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `/var/lib/vigie` as root, `./.vigie` otherwise.
pub fn default_state_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        PathBuf::from("/var/lib/vigie")
    } else {
        PathBuf::from(".vigie")
    }
}

/// What the store remembers of a check between runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredState {
    pub tracker: StateTracker,
    pub last_run: Option<Timestamp>,
    pub last_ok: Option<bool>,
    pub last_message: String,
    pub last_duration_ms: f64,
    pub runs_total: u64,
    pub failures_total: u64,
}

/// The heartbeat record of one check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub check: String,
    /// The SHA-256 (hex) of the generated token; the token itself is in
    /// [`TOKENS_FILE`].
    pub token_sha256: Option<String>,
    pub last_ping: Option<Timestamp>,
    pub last_fail: Option<Timestamp>,
    /// The exit status the last failure reported, if it gave one.
    pub last_fail_status: Option<u8>,
    /// When the job last said it started.
    pub last_start: Option<Timestamp>,
    /// How long its last run took, when it said when it started.
    pub last_duration_ms: Option<i64>,
    /// What the job sent with its last success or failure.
    pub last_body: Option<String>,
    pub first_seen: Timestamp,
}

/// What a job says when it pings its heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatPing {
    /// It ran and succeeded (`/ping/NAME`, `/ping/NAME/0`).
    Success,
    /// It failed (`/ping/NAME/fail`), or exited with a non-zero status
    /// (`/ping/NAME/STATUS`).
    Failure { exit_status: Option<u8> },
    /// It started (`/ping/NAME/start`): neither a success nor a failure.
    Start,
}

/// One stored result, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResult {
    pub started_at: Timestamp,
    pub lag_ms: f64,
    pub duration_ms: f64,
    pub ok: bool,
    pub message: String,
    pub metrics: Vec<(String, f64)>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating if needed) the store in `state_dir` and bring its
    /// schema up to date.
    pub fn open(state_dir: &Path) -> Result<Self> {
        create_private_dir(state_dir)?;
        let path = state_dir.join(DB_FILE);
        make_private_files(&path)?;
        let conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Self { conn, path };
        migrations::migrate(&mut store.conn, &store.path)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Record in one transaction the `results` worth a row (the daemon
    /// keeps failures and changes; see `[store] retention`) and the
    /// remembered `states` of the checks named, each replaced whole.
    pub fn record<'a>(
        &mut self,
        results: &[CheckResult],
        states: impl IntoIterator<Item = (&'a str, &'a StoredState)>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO results (check_name, started_ms, lag_ms, duration_ms, ok, message, metrics)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in results {
                let metrics = (!r.outcome.metrics.is_empty()).then(|| {
                    let map: serde_json::Map<String, serde_json::Value> = r
                        .outcome
                        .metrics
                        .iter()
                        .map(|m| (m.name.clone(), serde_json::Value::from(m.value)))
                        .collect();
                    serde_json::Value::Object(map).to_string()
                });
                insert.execute(params![
                    &*r.check,
                    r.started_at.millis(),
                    r.lag.as_secs_f64() * 1000.0,
                    r.duration.as_secs_f64() * 1000.0,
                    r.outcome.ok,
                    r.outcome.message,
                    metrics,
                ])?;
            }
            let mut state = tx.prepare_cached(
                "INSERT INTO check_state (check_name, state, consecutive_ok, consecutive_fail, since_ms,
                                          last_ms, last_ok, last_message, last_duration_ms, runs_total, failures_total)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (check_name) DO UPDATE SET
                   state = excluded.state, consecutive_ok = excluded.consecutive_ok,
                   consecutive_fail = excluded.consecutive_fail, since_ms = excluded.since_ms,
                   last_ms = excluded.last_ms, last_ok = excluded.last_ok,
                   last_message = excluded.last_message, last_duration_ms = excluded.last_duration_ms,
                   runs_total = excluded.runs_total, failures_total = excluded.failures_total",
            )?;
            for (check, s) in states {
                state.execute(params![
                    check,
                    s.tracker.state.as_str(),
                    s.tracker.consecutive_ok,
                    s.tracker.consecutive_fail,
                    s.tracker.since.millis(),
                    s.last_run.map(Timestamp::millis),
                    s.last_ok,
                    s.last_message,
                    s.last_duration_ms,
                    i64::try_from(s.runs_total).unwrap_or(i64::MAX),
                    i64::try_from(s.failures_total).unwrap_or(i64::MAX),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every check's remembered state.
    pub fn states(&self) -> Result<HashMap<String, StoredState>> {
        let mut stmt = self.conn.prepare(
            "SELECT check_name, state, consecutive_ok, consecutive_fail, since_ms, last_ms, last_ok,
                    last_message, last_duration_ms, runs_total, failures_total FROM check_state",
        )?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                StoredState {
                    tracker: StateTracker {
                        state: CheckState::parse(&state).unwrap_or_default(),
                        consecutive_ok: r.get(2)?,
                        consecutive_fail: r.get(3)?,
                        since: Timestamp(r.get(4)?),
                    },
                    last_run: r.get::<_, Option<i64>>(5)?.map(Timestamp),
                    last_ok: r.get(6)?,
                    last_message: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                    last_duration_ms: r.get::<_, Option<f64>>(8)?.unwrap_or_default(),
                    runs_total: r.get::<_, i64>(9)? as u64,
                    failures_total: r.get::<_, i64>(10)? as u64,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recent results of a check, newest first.
    pub fn recent_results(&self, check: &str, limit: usize) -> Result<Vec<StoredResult>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT started_ms, lag_ms, duration_ms, ok, message, metrics FROM results
             WHERE check_name = ?1 ORDER BY started_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![check, limit as i64], |r| {
            let metrics: Option<String> = r.get(5)?;
            Ok(StoredResult {
                started_at: Timestamp(r.get(0)?),
                lag_ms: r.get(1)?,
                duration_ms: r.get(2)?,
                ok: r.get(3)?,
                message: r.get(4)?,
                metrics: metrics.map(|m| parse_metrics(&m)).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn count_results(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM results", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Delete raw results older than `before`, a slice at a time so that
    /// writers are never held up for long. Returns how many went.
    ///
    /// Rows are appended in time order, so the oldest are the lowest ids:
    /// walking from the start needs no index on time.
    pub fn prune(&mut self, before: Timestamp) -> Result<usize> {
        // The first row young enough to keep; everything below it goes.
        let keep_from: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM results WHERE started_ms >= ?1 ORDER BY id LIMIT 1",
                params![before.millis()],
                |r| r.get(0),
            )
            .optional()?;
        let end = match keep_from {
            Some(id) => id,
            None => {
                self.conn
                    .query_row("SELECT coalesce(max(id), 0) + 1 FROM results", [], |r| {
                        r.get(0)
                    })?
            }
        };
        let mut total = 0;
        loop {
            let n = self.conn.execute(
                "DELETE FROM results WHERE id IN (SELECT id FROM results WHERE id < ?1 ORDER BY id LIMIT 5000)",
                params![end],
            )?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    /// Make sure a heartbeat row exists; returns it.
    pub fn heartbeat(&mut self, check: &str, now: Timestamp) -> Result<Heartbeat> {
        self.conn.execute(
            "INSERT INTO heartbeats (check_name, first_seen_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![check, now.millis()],
        )?;
        Ok(self.conn.query_row(
            &format!("SELECT {HEARTBEAT_COLUMNS} FROM heartbeats WHERE check_name = ?1"),
            [check],
            heartbeat_row,
        )?)
    }

    /// Every heartbeat record.
    pub fn heartbeats(&self) -> Result<Vec<Heartbeat>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {HEARTBEAT_COLUMNS} FROM heartbeats"))?;
        let rows = stmt.query_map([], heartbeat_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keep `token` as the heartbeat's generated token: in plain in
    /// [`TOKENS_FILE`] first (for `vigie heartbeat-url`), then its hash
    /// here.
    pub fn set_heartbeat_token(&mut self, check: &str, token: &str, now: Timestamp) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        tokens::save(dir, &[(check.to_owned(), token.to_owned())])?;
        self.conn.execute(
            "INSERT INTO heartbeats (check_name, first_seen_ms, token_sha256) VALUES (?1, ?2, ?3)
             ON CONFLICT (check_name) DO UPDATE SET token_sha256 = excluded.token_sha256",
            params![check, now.millis(), token_sha256(token)],
        )?;
        Ok(())
    }

    /// Record what a job said at `at`; `ran_ms` is how long the run that
    /// a success or a failure ends took, when the job said it started,
    /// and `body` what it sent with it.
    pub fn heartbeat_ping(
        &mut self,
        check: &str,
        at: Timestamp,
        ping: HeartbeatPing,
        ran_ms: Option<i64>,
        body: Option<&str>,
    ) -> Result<()> {
        match ping {
            HeartbeatPing::Success => self.conn.execute(
                "INSERT INTO heartbeats
                     (check_name, first_seen_ms, last_ping_ms, last_duration_ms, last_body)
                 VALUES (?1, ?2, ?2, ?3, ?4)
                 ON CONFLICT (check_name) DO UPDATE SET last_ping_ms = excluded.last_ping_ms,
                     last_duration_ms = excluded.last_duration_ms,
                     last_body = excluded.last_body",
                params![check, at.millis(), ran_ms, body],
            )?,
            HeartbeatPing::Failure { exit_status } => self.conn.execute(
                "INSERT INTO heartbeats (check_name, first_seen_ms, last_fail_ms,
                     last_fail_status, last_duration_ms, last_body)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5)
                 ON CONFLICT (check_name) DO UPDATE SET last_fail_ms = excluded.last_fail_ms,
                     last_fail_status = excluded.last_fail_status,
                     last_duration_ms = excluded.last_duration_ms,
                     last_body = excluded.last_body",
                params![check, at.millis(), exit_status, ran_ms, body],
            )?,
            HeartbeatPing::Start => self.conn.execute(
                "INSERT INTO heartbeats (check_name, first_seen_ms, last_start_ms) VALUES (?1, ?2, ?2)
                 ON CONFLICT (check_name) DO UPDATE SET last_start_ms = excluded.last_start_ms",
                params![check, at.millis()],
            )?,
        };
        Ok(())
    }
}

/// Which side a failover points at, as last switched by vigie.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailoverState {
    pub side: String,
    pub since: Timestamp,
    pub reason: String,
}

impl Store {
    /// How many times failover `name` switched since `since`.
    pub fn failover_switches_since(&self, name: &str, since: Timestamp) -> Result<u32> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM failover_log WHERE name = ?1 AND at_ms >= ?2",
            params![name, since.millis()],
            |r| r.get(0),
        )?)
    }

    /// Failover `name`'s last `limit` switches, the newest first: each
    /// the side it moved to, when, and why.
    pub fn failover_switches(&self, name: &str, limit: usize) -> Result<Vec<FailoverState>> {
        let mut stmt = self.conn.prepare(
            "SELECT side, at_ms, reason FROM failover_log WHERE name = ?1
             ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![name, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(FailoverState {
                    side: r.get(0)?,
                    since: Timestamp(r.get(1)?),
                    reason: r.get(2)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn failover_state(&self, name: &str) -> Result<Option<FailoverState>> {
        Ok(self
            .conn
            .query_row(
                "SELECT side, since_ms, reason FROM failover_state WHERE name = ?1",
                [name],
                |r| {
                    Ok(FailoverState {
                        side: r.get(0)?,
                        since: Timestamp(r.get(1)?),
                        reason: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_failover_state(
        &mut self,
        name: &str,
        side: &str,
        at: Timestamp,
        reason: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO failover_log (name, at_ms, side, reason) VALUES (?1, ?2, ?3, ?4)",
            params![name, at.millis(), side, reason],
        )?;
        self.conn.execute(
            "INSERT INTO failover_state (name, side, since_ms, reason) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET side = excluded.side, since_ms = excluded.since_ms, reason = excluded.reason",
            params![name, side, at.millis(), reason],
        )?;
        Ok(())
    }
}

const HEARTBEAT_COLUMNS: &str = "check_name, token_sha256, last_ping_ms, last_fail_ms, first_seen_ms, last_fail_status, \
     last_start_ms, last_duration_ms, last_body";

fn heartbeat_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Heartbeat> {
    Ok(Heartbeat {
        check: r.get(0)?,
        token_sha256: r.get(1)?,
        last_ping: r.get::<_, Option<i64>>(2)?.map(Timestamp),
        last_fail: r.get::<_, Option<i64>>(3)?.map(Timestamp),
        first_seen: Timestamp(r.get(4)?),
        last_fail_status: r.get(5)?,
        last_start: r.get::<_, Option<i64>>(6)?.map(Timestamp),
        last_duration_ms: r.get(7)?,
        last_body: r.get(8)?,
    })
}

fn parse_metrics(json: &str) -> Vec<(String, f64)> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(map) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The state directory holds tokens, incident notes and the daemon's
/// address: only its owner may enter it (0700), even if it was made
/// before with a looser mode.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// The database and its WAL files are 0600 whatever the umask: SQLite
/// gives `-wal` and `-shm` the mode of the database file, so the file is
/// made (or narrowed) before SQLite opens it.
///
/// An existing database is never opened here, only changed by path:
/// closing any descriptor of a file drops every POSIX lock this process
/// holds on it, and a daemon opens the store more than once — a second
/// open would silently unlock the first connection, and another process
/// would then checkpoint and delete the WAL under it.
fn make_private_files(db: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::PrivateFile { path, source }
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(db)(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(err(&path))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&path)(e)),
        }
    }
    Ok(())
}
