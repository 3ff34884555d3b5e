//! vigie's engine: runs every check on its own schedule, turns outcomes
//! into states with the `fail_after` / `recover_after` thresholds, and
//! records everything in the store.
//!
//! Data flows one way: a check task runs its probe, feeds the outcome to
//! the check's [`StateTracker`], publishes the new status and any
//! [`StateChange`], and hands the result to the store writer. Nothing
//! downstream reaches back into a running check.
//!
//! - Each check has its own task and interval, offset by a stable jitter
//!   derived from its name, so a thousand checks with the same `every`
//!   spread over the whole interval instead of firing together.
//! - A semaphore bounds how many probes run at once.
//! - A probe runs in a task of its own: a panic becomes a failing result,
//!   and its timeout aborts it (dropping sockets, killing processes)
//!   without delaying any other check.
//! - Each result's numbers (and the host's metrics, every `[series]
//!   interval`) also go to the series store through a bounded channel to
//!   one thread ([`series`]): a check never waits on it, a full queue
//!   drops samples and counts them.
//!
//! # Reading series
//!
//! [`Engine::series`] lends the [`series::Series`] handle: its `query`
//! and `query_step` read raw samples or roll-up buckets, the samples
//! appended since the last flush included (they read under the writer's
//! lock). `rule` checks (`rules`: a threshold, a growth, a prediction,
//! silence) read through it, as `/api/v1/series` and the dashboard do.

mod clock;
mod heartbeat;
mod incidents;
mod rules;
mod runner;
pub mod series;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use vigie_config::{Check, Config};
use vigie_core::{CheckState, Metric, Outcome, Severity, StateTracker, Timestamp};
use vigie_store::{Store, StoreError};

pub use heartbeat::PingError;
pub use runner::{OnceResult, run_once};
pub use vigie_store::HeartbeatPing;

/// What the API and `/metrics` show of one check.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckStatus {
    pub name: String,
    pub kind: &'static str,
    pub severity: Severity,
    pub state: CheckState,
    /// When the current state began (ms since the epoch).
    pub since: Timestamp,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub last_run: Option<Timestamp>,
    pub last_ok: Option<bool>,
    pub last_message: String,
    pub last_duration_seconds: f64,
    pub runs_total: u64,
    pub failures_total: u64,
    pub metrics: Vec<Metric>,
    pub every_seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A future an action plugin returns.
pub type PluginFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// An action kind provided by a crate above the engine (failover today;
/// fencing a replication or starting a backup next). The engine runs it
/// as a step of an incident like any other, and records what it said.
pub trait ActionPlugin: Send + Sync {
    /// The action kind this plugin runs (`vigie_config::ActionKind::name`),
    /// under which it registers in [`Plugins`].
    fn kind(&self) -> &'static str;

    /// Wait until the step may run (`undo`: the undo): e.g. until a
    /// quorum of watchers agrees. The engine drops this future when the
    /// incident's check recovers first (or, for an undo, fails again), so
    /// it must change nothing. `Ok` carries a line for the incident's
    /// record; `Err` means the step cannot run.
    fn ready<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        undo: bool,
        view: &'a Statuses,
    ) -> PluginFuture<'a, Result<String, String>>;

    /// Run the step on `target` (e.g. a failover's name) for `check`, in
    /// incident `incident`. `Ok` and `Err` both carry a line for the
    /// incident's record.
    fn run<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        check: &'a str,
        incident: i64,
    ) -> PluginFuture<'a, Result<String, String>>;

    /// How long the check must stay healthy after the incident before the
    /// step is undone (`None`: never by itself).
    fn undo_after(&self, config: &Config, target: &str) -> Option<Duration>;

    /// Undo the step (fail back).
    fn undo<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        check: &'a str,
    ) -> PluginFuture<'a, Result<String, String>>;
}

/// The action plugins an engine runs, keyed by the kind each runs. A
/// crate above the engine registers its plugin here before
/// [`Engine::start_with`]; an incident step of a kind nobody registered
/// fails (and pages) instead of running.
#[derive(Clone, Default)]
pub struct Plugins(BTreeMap<&'static str, Arc<dyn ActionPlugin>>);

impl Plugins {
    /// Add `plugin` under its kind (replacing any plugin of that kind).
    pub fn register(&mut self, plugin: Arc<dyn ActionPlugin>) -> &mut Self {
        self.0.insert(plugin.kind(), plugin);
        self
    }

    /// The plugin that runs `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn ActionPlugin>> {
        self.0.get(kind)
    }
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What the engine tells people to run by hand, in the syntax of whoever
/// drives it (the engine knows no CLI): templates where `{id}` (an
/// incident), `{target}` (a failover) and `{check}` are filled in. A
/// hint left out is not said.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// How to acknowledge incident `{id}`, ending its notifications.
    pub ack: Option<String>,
    /// How to undo failover `{target}` when its failback is manual.
    pub fail_back: Option<String>,
    /// Where the generated heartbeat token of `{check}` is shown.
    pub heartbeat_url: Option<String>,
}

impl Hints {
    /// `template` with `{id}`, `{target}` and `{check}` replaced.
    pub(crate) fn fill(template: Option<&String>, pairs: &[(&str, &str)]) -> Option<String> {
        template.map(|t| {
            pairs
                .iter()
                .fold(t.clone(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
        })
    }
}

/// A read-only view of the checks' current states (for plugins and the
/// HTTP server). Cheap to clone.
#[derive(Clone)]
pub struct Statuses(Arc<Inner>);

impl std::fmt::Debug for Statuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statuses").finish_non_exhaustive()
    }
}

impl Statuses {
    pub fn get(&self, check: &str) -> Option<CheckStatus> {
        self.0
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(check)
            .cloned()
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.0.config.borrow().clone()
    }
}

/// Upper bounds (seconds) of the schedule-lag histogram buckets.
pub const LAG_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Counters about the engine itself, for `/metrics`.
#[derive(Default, Debug)]
pub struct EngineStats {
    pub lag_buckets: [AtomicU64; LAG_BUCKETS.len()],
    pub lag_count: AtomicU64,
    /// Sum of lags in microseconds.
    pub lag_sum_us: AtomicU64,
    pub runs_total: AtomicU64,
    pub timeouts_total: AtomicU64,
    pub panics_total: AtomicU64,
    /// Deliveries by notifier: (delivered, failed).
    pub notifications: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl EngineStats {
    fn observe_lag(&self, lag: Duration) {
        let s = lag.as_secs_f64();
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            if s <= *bound {
                self.lag_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lag_count.fetch_add(1, Ordering::Relaxed);
        self.lag_sum_us
            .fetch_add(lag.as_micros() as u64, Ordering::Relaxed);
    }
}

pub(crate) struct Inner {
    status: RwLock<BTreeMap<String, CheckStatus>>,
    heartbeats: Mutex<heartbeat::Book>,
    writer: writer::Handle,
    /// The series store's feed and read path (`None`: it could not be
    /// opened, said at start).
    series: Option<series::Series>,
    stats: EngineStats,
    /// Where state changes go: the incident manager.
    incidents: std::sync::OnceLock<mpsc::UnboundedSender<incidents::Change>>,
    /// The running configuration, for the incident manager.
    config: watch::Sender<Arc<Config>>,
    /// The incident manager's store connection, for acknowledgements and
    /// listings.
    incident_store: std::sync::OnceLock<Arc<Mutex<Store>>>,
    /// A connection of its own for reading history (the dashboard), so
    /// that a long read never holds up the incident manager.
    reader: Mutex<Option<Store>>,
    state_dir: std::path::PathBuf,
    /// Action kinds provided by higher crates (`failover`), by kind.
    plugins: Plugins,
    hints: Hints,
    /// Where the jobs beside the engine report; every `Shared` reads it.
    board: vigie_core::Board,
    /// A check's wake-up: run now (a heartbeat ping, a repair's verify).
    wakes: RwLock<BTreeMap<String, Arc<Notify>>>,
    semaphore: RwLock<Arc<Semaphore>>,
    /// Where incidents read the time of day (tests: tokio's clock).
    clock: clock::Clock,
    /// Checks put in maintenance by hand, by name (the store keeps them
    /// too, for a restart).
    maintenance: RwLock<BTreeMap<String, vigie_store::ManualMaintenance>>,
}

/// The running engine. Cheap to clone; every clone drives the same checks.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("check {check}: {message}")]
    Prepare { check: String, message: String },
    #[error("the engine is not running")]
    Stopped,
    /// A request that cannot be done as asked; the message says why and
    /// what to do.
    #[error("{0}")]
    Refused(String),
    /// A request that conflicts with the state it would change (a pause
    /// over another, the resume of a fence); the message says what to do.
    #[error("{0}")]
    Conflict(String),
}

/// The longest public note, in characters.
pub const NOTE_MAX_CHARS: usize = 2000;
/// The most public notes an incident takes.
pub const NOTES_MAX: usize = 100;
/// The newest notes of an incident a status page shows.
pub const NOTES_SHOWN: usize = 20;
/// The longest maintenance started by hand.
pub const MAINTENANCE_MAX: Duration = Duration::from_hours(7 * 24);

impl Engine {
    /// Open the store in `state_dir`, restore what it remembers, and start
    /// every check of `config`. Must be called inside a tokio runtime.
    pub fn start(config: &Config, state_dir: &Path) -> Result<Self, EngineError> {
        Self::start_with(
            config,
            state_dir,
            Plugins::default(),
            Hints::default(),
            vigie_core::Board::new(),
        )
    }

    /// [`Engine::start`], with the action kinds that higher crates
    /// registered in `plugins`, the commands its messages suggest, and
    /// the board where the jobs beside it report (read by `sync` checks).
    pub fn start_with(
        config: &Config,
        state_dir: &Path,
        plugins: Plugins,
        hints: Hints,
        board: vigie_core::Board,
    ) -> Result<Self, EngineError> {
        let (engine, snapshot) = Self::open(
            config,
            state_dir,
            plugins,
            hints,
            board,
            clock::Clock::System,
        )?;
        engine.install(config, &snapshot)?;
        Ok(engine)
    }

    /// The engine and its incident manager, with no check scheduled yet;
    /// what the store remembers comes back as the snapshot.
    fn open(
        config: &Config,
        state_dir: &Path,
        plugins: Plugins,
        hints: Hints,
        board: vigie_core::Board,
        clock: clock::Clock,
    ) -> Result<(Self, writer::Snapshot), EngineError> {
        let store = Store::open(state_dir)?;
        let (writer, store) = writer::spawn(
            store,
            config.store.retention.std(),
            hints.heartbeat_url.clone(),
        )?;
        let series = match series::Series::start(
            state_dir,
            &config.series,
            Some(vigie_metrics::HostCollector::new()),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the series store; no series are kept until a restart");
                None
            }
        };
        let shared_config = Arc::new(config.clone());
        let inner = Arc::new(Inner {
            status: RwLock::new(BTreeMap::new()),
            heartbeats: Mutex::new(heartbeat::Book::default()),
            writer,
            series,
            stats: EngineStats::default(),
            incidents: std::sync::OnceLock::new(),
            config: watch::Sender::new(shared_config.clone()),
            wakes: RwLock::new(BTreeMap::new()),
            incident_store: std::sync::OnceLock::new(),
            reader: Mutex::new(None),
            state_dir: state_dir.to_owned(),
            plugins,
            hints,
            board,
            semaphore: RwLock::new(Arc::new(Semaphore::new(config.engine.concurrency))),
            clock,
            maintenance: RwLock::new(BTreeMap::new()),
        });
        let changes = incidents::start(inner.clone(), state_dir, &shared_config)?;
        let _ = inner.incidents.set(changes);
        if let Some(store) = inner.incident_store.get() {
            let now = inner.clock.now();
            let running = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .maintenances(now)?;
            *inner
                .maintenance
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                running.into_iter().map(|m| (m.check.clone(), m)).collect();
        }
        let engine = Self {
            inner,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        };
        Ok((engine, store))
    }

    /// An engine whose incidents read the time from tokio's clock
    /// (starting at `at`) and whose checks never run by themselves: the
    /// test records their results (`Inner::record`).
    #[cfg(test)]
    pub(crate) fn start_unscheduled(
        config: &Config,
        state_dir: &Path,
        plugins: Plugins,
        at: Timestamp,
    ) -> Result<Self, EngineError> {
        let (engine, snapshot) = Self::open(
            config,
            state_dir,
            plugins,
            Hints::default(),
            vigie_core::Board::new(),
            clock::Clock::tokio(at),
        )?;
        engine.install_states(config, &snapshot);
        Ok(engine)
    }

    /// Replace the running checks with those of `config`. Checks that keep
    /// their name keep their state.
    pub fn reload(&self, config: &Config) -> Result<(), EngineError> {
        let store = self.inner.writer.read_snapshot()?;
        self.install(config, &store)?;
        if let Some(series) = &self.inner.series {
            series.reconfigure(&config.series);
        }
        self.inner.config.send_replace(Arc::new(config.clone()));
        Ok(())
    }

    fn install(&self, config: &Config, snapshot: &writer::Snapshot) -> Result<(), EngineError> {
        let shared = vigie_probe::Shared::new(self.inner.board.clone());
        let mut prepared = Vec::with_capacity(config.checks.len());
        for check in &config.checks {
            let p = vigie_probe::prepare(check, &shared).map_err(|e| EngineError::Prepare {
                check: check.name.clone(),
                message: e.0,
            })?;
            prepared.push((check.clone(), Arc::new(p)));
        }
        // Everything is ready: only now stop the old checks.
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.abort_all();
        *self
            .inner
            .semaphore
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(Semaphore::new(config.engine.concurrency));
        let wakes = self.install_states(config, snapshot);
        let started = tokio::time::Instant::now();
        for (check, probe) in prepared {
            let wake = wakes.get(&check.name).cloned().unwrap_or_default();
            let task = runner::CheckTask {
                inner: self.inner.clone(),
                keys: series::CheckKeys::new(&check.name),
                check,
                probe,
                wake,
            };
            tasks.spawn(task.run(started));
        }
        tracing::info!(checks = config.checks.len(), "checks scheduled");
        Ok(())
    }

    /// The checks' wake-ups, heartbeats and statuses for `config`; those
    /// that keep their name keep their state. Returns the wake-ups.
    fn install_states(
        &self,
        config: &Config,
        snapshot: &writer::Snapshot,
    ) -> BTreeMap<String, Arc<Notify>> {
        let now = Timestamp::now();
        let wakes: BTreeMap<String, Arc<Notify>> = config
            .checks
            .iter()
            .map(|c| (c.name.clone(), Arc::new(Notify::new())))
            .collect();
        self.install_heartbeats(config, snapshot, now, &wakes);
        (*self
            .inner
            .wakes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
        .clone_from(&wakes);
        {
            let mut status = self
                .inner
                .status
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let old = std::mem::take(&mut *status);
            for check in &config.checks {
                let mut s = old.get(&check.name).cloned().unwrap_or_else(|| {
                    let stored = snapshot
                        .states
                        .get(&check.name)
                        .cloned()
                        .unwrap_or_default();
                    CheckStatus {
                        name: check.name.clone(),
                        kind: "",
                        severity: check.severity,
                        state: stored.tracker.state,
                        since: stored.tracker.since,
                        consecutive_ok: stored.tracker.consecutive_ok,
                        consecutive_fail: stored.tracker.consecutive_fail,
                        last_run: stored.last_run,
                        last_ok: stored.last_ok,
                        last_message: stored.last_message,
                        last_duration_seconds: stored.last_duration_ms / 1000.0,
                        runs_total: stored.runs_total,
                        failures_total: stored.failures_total,
                        metrics: Vec::new(),
                        every_seconds: 0.0,
                        depends_on: Vec::new(),
                    }
                });
                s.kind = check.probe.kind().name();
                s.severity = check.severity;
                s.every_seconds = check.every.std().as_secs_f64();
                s.depends_on.clone_from(&check.depends_on);
                status.insert(check.name.clone(), s);
            }
        }
        wakes
    }

    fn install_heartbeats(
        &self,
        config: &Config,
        snapshot: &writer::Snapshot,
        now: Timestamp,
        wakes: &BTreeMap<String, Arc<Notify>>,
    ) {
        let mut book = self
            .inner
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        book.install(config, snapshot, now, &self.inner.writer, wakes);
    }

    /// The current status of every check, by name.
    pub fn statuses(&self) -> Vec<CheckStatus> {
        self.inner
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// A read-only view of the checks' states and the running
    /// configuration.
    pub fn view(&self) -> Statuses {
        Statuses(self.inner.clone())
    }

    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// The board where the jobs beside the engine report (what their
    /// checks read; `/metrics` shows the backup jobs' numbers from it).
    pub fn board(&self) -> &vigie_core::Board {
        &self.inner.board
    }

    /// How many store writes failed (a full disk, a broken file).
    pub fn store_errors(&self) -> u64 {
        self.inner.writer.errors()
    }

    /// Whether `token` may ping heartbeat `name`: asked before a ping's
    /// body is read.
    pub fn heartbeat_authorize(&self, name: &str, token: &str) -> Result<(), PingError> {
        self.inner
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .authorize(name, token)
    }

    /// A heartbeat ping (a success, a failure, an exit status, a start)
    /// for `name`, authenticated by `token`, with the `body` the job sent
    /// (cut to 10 KB; the token masked in it).
    pub fn heartbeat_ping(
        &self,
        name: &str,
        token: &str,
        what: HeartbeatPing,
        body: &[u8],
    ) -> Result<(), PingError> {
        let said = heartbeat::Said::new(what, body, token);
        let notify = {
            let mut book = self
                .inner
                .heartbeats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            book.ping(name, token, said, Timestamp::now(), &self.inner.writer)?
        };
        notify.notify_one();
        Ok(())
    }

    fn incident_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> vigie_store::Result<T>,
    ) -> Result<T, EngineError> {
        let store = self
            .inner
            .incident_store
            .get()
            .ok_or(EngineError::Stopped)?;
        let mut store = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(f(&mut store)?)
    }

    /// Acknowledge an incident: its escalation steps are skipped; it stays
    /// open until its check recovers.
    pub fn ack(&self, id: i64, note: &str) -> Result<vigie_store::Ack, EngineError> {
        let r = self.incident_store(|s| s.ack_incident(id, self.inner.clock.now(), note))?;
        if r == vigie_store::Ack::Acknowledged {
            tracing::info!(incident = id, note, "incident acknowledged");
        }
        Ok(r)
    }

    /// Add a public note to incident `id`, by `author` (status pages
    /// show it while the incident is open). `text` loses its control
    /// characters but newlines and is trimmed; an empty one, one longer
    /// than [`NOTE_MAX_CHARS`], one on a resolved incident or beyond
    /// [`NOTES_MAX`] is refused. Blocking.
    pub fn add_note(
        &self,
        id: i64,
        author: &str,
        text: &str,
    ) -> Result<vigie_store::Noted, EngineError> {
        let text = without_controls(text, true);
        let text = text.trim();
        if text.is_empty() {
            return Err(EngineError::Refused(
                "a note needs some text: write what people should know".to_owned(),
            ));
        }
        let chars = text.chars().count();
        if chars > NOTE_MAX_CHARS {
            return Err(EngineError::Refused(format!(
                "a note is at most {NOTE_MAX_CHARS} characters (this one has {chars}): shorten it"
            )));
        }
        let r = self
            .incident_store(|s| s.add_note(id, self.inner.clock.now(), author, text, NOTES_MAX))?;
        match r {
            vigie_store::Noted::Added => {
                tracing::info!(incident = id, author, "public note added");
            }
            vigie_store::Noted::Resolved => {
                return Err(EngineError::Refused(format!(
                    "incident #{id} is resolved: status pages no longer show it, so it takes no more notes"
                )));
            }
            vigie_store::Noted::Full => {
                return Err(EngineError::Refused(format!(
                    "incident #{id} has {NOTES_MAX} notes already, the most it takes: \
                     status pages show the newest {NOTES_SHOWN}"
                )));
            }
            vigie_store::Noted::NotFound => {}
        }
        Ok(r)
    }

    /// Put `check` in maintenance for `duration` from now, `by` whom:
    /// it keeps running, its incidents wait (as in a `[[maintenance]]`
    /// window) until the end or [`Engine::end_maintenance`]. Started
    /// again, the new end replaces the old one.
    pub fn start_maintenance(
        &self,
        check: &str,
        duration: Duration,
        by: &str,
    ) -> Result<vigie_store::ManualMaintenance, EngineError> {
        if self.view().config().check(check).is_none() {
            return Err(EngineError::Refused(format!("no check named {check}")));
        }
        if duration.is_zero() || duration > MAINTENANCE_MAX {
            return Err(EngineError::Refused(format!(
                "a maintenance lasts from 1 minute to {} days; for longer, declare a [[maintenance]] window",
                MAINTENANCE_MAX.as_secs() / 86_400
            )));
        }
        let since = self.inner.clock.now();
        let m = vigie_store::ManualMaintenance {
            check: check.to_owned(),
            since,
            until: Timestamp(
                since
                    .millis()
                    .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
            ),
            by: by.to_owned(),
        };
        self.incident_store(|s| s.start_maintenance(&m))?;
        self.inner
            .maintenance
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(check.to_owned(), m.clone());
        tracing::info!(
            check,
            by,
            until = m.until.millis(),
            "maintenance started by hand"
        );
        Ok(m)
    }

    /// End `check`'s maintenance started by hand; whether it had one.
    pub fn end_maintenance(&self, check: &str) -> Result<bool, EngineError> {
        let was = self.incident_store(|s| s.end_maintenance(check))?;
        let had = self
            .inner
            .maintenance
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(check)
            .is_some();
        if was || had {
            tracing::info!(check, "maintenance ended by hand");
        }
        Ok(was || had)
    }

    /// `check`'s maintenance started by hand, if it runs now.
    pub fn maintenance(&self, check: &str) -> Option<vigie_store::ManualMaintenance> {
        self.inner.manual_maintenance(check, self.inner.clock.now())
    }

    /// Pause replication job `job` (`[[sync]]`), as `vigie sync pause`
    /// does: the job stops sending, changes keep queueing. Unlike the
    /// CLI, a pause never replaces one the job has (a failover's fence
    /// above all): that is a [`EngineError::Conflict`]. Control
    /// characters are taken out of `reason`. Blocking.
    pub fn sync_pause(&self, job: &str, reason: &str) -> Result<(), EngineError> {
        if !self.view().config().syncs.iter().any(|j| j.name == job) {
            return Err(EngineError::Refused(format!(
                "no replication job named {job}"
            )));
        }
        let reason = without_controls(reason, false);
        let had =
            self.incident_store(|s| s.sync_pause_new(job, &reason, self.inner.clock.now()))?;
        if let Some(p) = had {
            return Err(EngineError::Conflict(format!(
                "{job} is already paused since {}: {}",
                utc(p.since),
                p.reason
            )));
        }
        tracing::info!(job, reason, "replication paused");
        Ok(())
    }

    /// Resume replication job `job`, as `vigie sync resume` does, but
    /// never a failover's fence (its reason starts with `fenced:`: the
    /// reverse pass comes first, from the CLI) and, given `since`, only
    /// the pause that started then; both are a [`EngineError::Conflict`].
    /// Whether it was paused. Blocking.
    pub fn sync_resume(&self, job: &str, since: Option<Timestamp>) -> Result<bool, EngineError> {
        if !self.view().config().syncs.iter().any(|j| j.name == job) {
            return Err(EngineError::Refused(format!(
                "no replication job named {job}"
            )));
        }
        match self.incident_store(|s| s.sync_resume_checked(job, since))? {
            vigie_store::Resume::Resumed => {
                tracing::info!(job, "replication resumed");
                Ok(true)
            }
            vigie_store::Resume::NotPaused => Ok(false),
            vigie_store::Resume::Fenced(p) => Err(EngineError::Conflict(format!(
                "{job} is fenced since {} ({}): resume it from the CLI once the backup's writes \
                 are back: `vigie sync {job} --reverse`, then `vigie sync resume {job}`",
                utc(p.since),
                p.reason
            ))),
            vigie_store::Resume::Changed(p) => Err(EngineError::Conflict(format!(
                "{job}'s pause is not the one shown: it is paused since {}: {}; \
                 reload and resume again if you still mean to",
                utc(p.since),
                p.reason
            ))),
        }
    }

    /// Read the store's history (results, incidents and their events)
    /// on a connection of its own, opened on first use. Blocking: call
    /// it from the blocking pool.
    pub fn history<T>(
        &self,
        f: impl FnOnce(&Store) -> vigie_store::Result<T>,
    ) -> Result<T, EngineError> {
        let mut reader = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = match reader.take() {
            Some(s) => s,
            None => Store::open(&self.inner.state_dir)?,
        };
        let r = f(&store);
        *reader = Some(store);
        Ok(r?)
    }

    /// Open and recent incidents, newest first.
    pub fn incidents(&self, limit: usize) -> Result<Vec<vigie_store::Incident>, EngineError> {
        self.incident_store(|s| s.recent_incidents(limit))
    }

    /// The incidents not resolved, oldest first. Blocking.
    pub fn open_incidents(&self) -> Result<Vec<vigie_store::Incident>, EngineError> {
        self.incident_store(|s| s.open_incidents())
    }

    /// Stop every check and flush the store. Returns once the writer has
    /// committed everything it was handed.
    pub async fn shutdown(&self) {
        let mut tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        self.inner.writer.flush().await;
        if let Some(series) = self.inner.series.clone() {
            let flushed = tokio::task::spawn_blocking(move || series.flush()).await;
            if let Ok(Err(e)) = flushed {
                tracing::error!(error = %e, "series store: the last flush failed; the samples since the last one are lost");
            }
        }
    }

    /// The series store: what the checks and the host measured, flushed
    /// or not (see [`series`]).
    pub fn series(&self) -> Option<&series::Series> {
        self.inner.series.as_ref()
    }
}

impl Inner {
    /// `check`'s maintenance started by hand, if it runs at `now`.
    pub(crate) fn manual_maintenance(
        &self,
        check: &str,
        now: Timestamp,
    ) -> Option<vigie_store::ManualMaintenance> {
        self.maintenance
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(check)
            .filter(|m| m.since <= now && now < m.until)
            .cloned()
    }

    /// Apply one outcome to the check's state, publish it, and queue it
    /// for the store. Returns the check's new state (`None`: the check is
    /// no longer installed).
    pub(crate) fn record(
        &self,
        check: &Check,
        keys: &series::CheckKeys,
        result: vigie_core::CheckResult,
    ) -> Option<StateTracker> {
        let thresholds = check.thresholds();
        let mut change = None;
        let tracker = {
            let mut status = self
                .status
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let s = status.get_mut(&check.name)?;
            let mut tracker = StateTracker {
                state: s.state,
                consecutive_ok: s.consecutive_ok,
                consecutive_fail: s.consecutive_fail,
                since: s.since,
            };
            if let Some(t) = tracker.observe(result.outcome.ok, thresholds, result.started_at) {
                change = Some(t);
            }
            s.state = tracker.state;
            s.since = tracker.since;
            s.consecutive_ok = tracker.consecutive_ok;
            s.consecutive_fail = tracker.consecutive_fail;
            s.last_run = Some(result.started_at);
            s.last_ok = Some(result.outcome.ok);
            s.last_message.clone_from(&result.outcome.message);
            s.last_duration_seconds = result.duration.as_secs_f64();
            s.runs_total += 1;
            s.failures_total += u64::from(!result.outcome.ok);
            s.metrics.clone_from(&result.outcome.metrics);
            tracker
        };
        if let Some(t) = change {
            tracing::info!(check = %check.name, from = %t.from, to = %t.to, message = %result.outcome.message, "check state changed");
            if let Some(tx) = self.incidents.get() {
                let _ = tx.send(incidents::Change {
                    check: check.name.clone(),
                    to: t.to,
                    message: result.outcome.message.clone(),
                    severity: result.outcome.severity,
                });
            }
        }
        if let Some(series) = &self.series {
            series.result(keys, &result, tracker.state);
        }
        self.writer.result(result, tracker);
        Some(tracker)
    }
}

/// Whether an outcome came from a probe that did not finish.
pub fn is_timeout(o: &Outcome) -> bool {
    o.message.starts_with("timed out after")
}

/// `text` without control characters (but newlines, if `newlines`).
pub fn without_controls(text: &str, newlines: bool) -> String {
    text.chars()
        .filter(|&c| !c.is_control() || (newlines && c == '\n'))
        .collect()
}

/// A timestamp as `2026-12-01 14:19:01 UTC`.
fn utc(t: Timestamp) -> String {
    jiff::Timestamp::from_millisecond(t.millis()).map_or_else(
        |_| "?".to_owned(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_taken_out_but_a_notes_newlines() {
        let s = "a\u{7}\u{1b}[31mb\r\nc\td\u{85}e";
        assert_eq!(without_controls(s, false), "a[31mbcde");
        assert_eq!(without_controls(s, true), "a[31mb\ncde");
        assert_eq!(utc(Timestamp(0)), "1970-01-01 00:00:00 UTC");
    }
}
