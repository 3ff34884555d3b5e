//! The series feed: every check result's numbers and the host's metrics
//! go to the series store ([`vigie_store::series`]) through one thread.
//!
//! A check hands its numbers to a bounded channel and goes on: it never
//! waits on SQLite, and when the channel is full (the disk stalls) the
//! samples are dropped and counted. The thread appends them, samples the
//! host every `[series] interval`, flushes the open chunks every minute
//! and on [`Series::flush`] (the engine's shutdown), and enforces the
//! retention every five minutes. A failing store (a full disk) is
//! logged when it starts and when it ends, and counted; it never stops
//! the daemon.
//!
//! # Reading
//!
//! [`Series`] is the handle: the engine owns it ([`crate::Engine::series`])
//! and lends it. Its [`Series::query`] and [`Series::query_step`] read
//! the store under the writer's lock, so they see the samples appended
//! and not flushed yet. A caller holds the lock while it reads: keep
//! reads to what a page or a rule needs.
//!
//! # Names
//!
//! A check's numbers are the series `/metrics` shows for it, labelled
//! `check` only (a kind or a severity changed in the config does not
//! start a new series): `vigie_check_up` (1 ok, 0 failed),
//! `vigie_check_failing` (1 while the check is failing after its
//! `fail_after`), `vigie_check_duration_seconds` (to the microsecond)
//! and `vigie_check_value{name}` for each number the run measured. The
//! host's are node_exporter's, as `/metrics` serves them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vigie_config::SeriesConfig;
use vigie_core::{CheckResult, CheckState, Timestamp};
use vigie_metrics::HostCollector;
use vigie_store::series::{Aggregate, Retention, Sample, SeriesError, SeriesKey, SeriesStore};

/// Batches waiting for the thread; beyond it, samples are dropped.
const QUEUE: usize = 4096;
/// How often the open chunks are written.
pub const FLUSH_EVERY: Duration = Duration::from_mins(1);
/// How often old chunks are deleted.
const RETENTION_EVERY: Duration = Duration::from_mins(5);
/// How long samples wait for company: the thread wakes a few times a
/// second rather than for each result (a wake costs more than the
/// append). Reads see a sample this much later at most.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// The most batches applied at once.
const BATCH: usize = 1024;

enum Op {
    Samples(Vec<(SeriesKey, i64, f64)>),
    Flush(std::sync::mpsc::Sender<Result<(), String>>),
    Config(Duration, Retention),
}

/// Counters of the feed, for `/metrics`.
#[derive(Debug, Default)]
pub struct SeriesStats {
    /// Samples appended.
    pub appended: AtomicU64,
    /// Samples dropped: the queue was full, or older than the series' last.
    pub dropped: AtomicU64,
    /// Store operations that failed (append, flush, retention).
    pub errors: AtomicU64,
    /// Estimated bytes of the open series in memory.
    pub memory_bytes: AtomicU64,
    /// Series open in memory.
    pub open_series: AtomicU64,
}

/// The feed and the read path of the series store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Series {
    store: Arc<Mutex<SeriesStore>>,
    tx: SyncSender<Op>,
    stats: Arc<SeriesStats>,
    /// The thread, unparked by what must not wait for the batch window.
    thread: std::thread::Thread,
}

/// The store's retention from `[series]`.
pub fn retention(config: &SeriesConfig) -> Retention {
    Retention {
        raw: config.retention.raw.std(),
        minute: config.retention.minute.std(),
        hour: config.retention.hour.std(),
        max_bytes: config.max_size.0,
    }
}

impl Series {
    /// Open the series store in `state_dir` and start its thread, which
    /// samples the host every `config.interval` when `host` is given.
    pub fn start(
        state_dir: &std::path::Path,
        config: &SeriesConfig,
        host: Option<HostCollector>,
    ) -> Result<Self, SeriesError> {
        let store = SeriesStore::open(state_dir, retention(config))?;
        let store = Arc::new(Mutex::new(store));
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(SeriesStats::default());
        let thread = Thread {
            store: store.clone(),
            stats: stats.clone(),
            host,
            interval: config.interval.std(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("vigie-series".into())
            .spawn(move || thread.run(&rx))
            .map_err(|e| {
                SeriesError::Store(vigie_store::StoreError::CreateDir {
                    path: "series writer thread".into(),
                    source: e,
                })
            })?
            .thread()
            .clone();
        Ok(Self {
            store,
            tx,
            stats,
            thread,
        })
    }

    pub fn stats(&self) -> &SeriesStats {
        &self.stats
    }

    /// Queue samples; never waits. Dropped (and counted) when the queue
    /// is full.
    pub fn send(&self, samples: Vec<(SeriesKey, i64, f64)>) {
        let n = samples.len() as u64;
        match self.tx.try_send(Op::Samples(samples)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Queue a check result's numbers (see the module's "Names").
    pub fn result(&self, check: &str, result: &CheckResult, state: CheckState) {
        let ts = result.started_at.millis();
        let key = |name: &str| SeriesKey::new(name, [("check", check)]);
        let mut out = Vec::with_capacity(3 + result.outcome.metrics.len());
        let up = f64::from(u8::from(result.outcome.ok));
        let failing = f64::from(u8::from(state == CheckState::Failing));
        // To the microsecond: a short decimal compresses to a few bytes
        // where the f64 of the nanoseconds takes seven.
        let duration = result.duration.as_micros() as f64 / 1e6;
        for (name, v) in [
            ("vigie_check_up", up),
            ("vigie_check_failing", failing),
            ("vigie_check_duration_seconds", duration),
        ] {
            if let Ok(k) = key(name) {
                out.push((k, ts, v));
            }
        }
        for m in &result.outcome.metrics {
            if let Ok(k) = SeriesKey::new(
                "vigie_check_value",
                [("check", check), ("name", m.name.as_str())],
            ) {
                out.push((k, ts, m.value));
            }
        }
        self.send(out);
    }

    /// Write the open chunks now; returns once written (or failed).
    pub fn flush(&self) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        // A flush waits for room: it is not on a check's path.
        if self.tx.send(Op::Flush(tx)).is_err() {
            return Err("the series thread has stopped".into());
        }
        self.thread.unpark();
        rx.recv()
            .unwrap_or_else(|_| Err("the series thread has stopped".into()))
    }

    /// Apply a reloaded `[series]`: its interval and retention.
    pub fn reconfigure(&self, config: &SeriesConfig) {
        let _ = self
            .tx
            .send(Op::Config(config.interval.std(), retention(config)));
        self.thread.unpark();
    }

    /// The store, locked: what the thread appended is there, flushed or
    /// not. The thread waits while it is held.
    pub fn lock(&self) -> MutexGuard<'_, SeriesStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raw samples of `key` within `[from, to]` (milliseconds).
    pub fn query(&self, key: &SeriesKey, from: i64, to: i64) -> Result<Vec<Sample>, SeriesError> {
        self.lock().query(key, from, to)
    }

    /// `key` in buckets of `step` within `[from, to]`, from the roll-ups
    /// (see [`SeriesStore::query_step`]).
    pub fn query_step(
        &self,
        key: &SeriesKey,
        from: i64,
        to: i64,
        step: Duration,
    ) -> Result<Vec<Aggregate>, SeriesError> {
        self.lock().query_step(key, from, to, step)
    }

    /// Every series the store knows.
    pub fn list(&self) -> Result<Vec<SeriesKey>, SeriesError> {
        self.lock().series()
    }
}

struct Thread {
    store: Arc<Mutex<SeriesStore>>,
    stats: Arc<SeriesStats>,
    host: Option<HostCollector>,
    interval: Duration,
    /// The store failed at its last operation (logged once, until it works).
    failing: bool,
}

impl Thread {
    fn run(mut self, rx: &Receiver<Op>) {
        let now = Instant::now();
        let mut next_host = now;
        let mut next_flush = now + FLUSH_EVERY;
        let mut next_retention = now + Duration::from_secs(30);
        loop {
            let deadline = [
                self.host.as_ref().map_or(next_flush, |_| next_host),
                next_flush,
                next_retention,
            ]
            .into_iter()
            .min()
            .unwrap_or(next_flush);
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(op) => {
                    let samples = matches!(op, Op::Samples(_));
                    let mut ops = vec![op];
                    // Samples wait for company (a backlog already
                    // waiting is enough); the thread is parked, so
                    // senders do not wake it. A flush or a new
                    // configuration unparks it at once.
                    match rx.try_recv() {
                        Ok(next) => ops.push(next),
                        Err(_) if samples => std::thread::park_timeout(BATCH_WINDOW),
                        Err(_) => {}
                    }
                    while ops.len() < BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    self.apply(ops);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.flush();
                    return;
                }
            }
            let now = Instant::now();
            if self.host.is_some() && now >= next_host {
                next_host = now + self.interval;
                self.sample_host();
            }
            if now >= next_flush {
                next_flush = now + FLUSH_EVERY;
                let _ = self.flush();
            }
            if now >= next_retention {
                next_retention = now + RETENTION_EVERY;
                self.retention();
            }
        }
    }

    fn store(&self) -> MutexGuard<'_, SeriesStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&mut self, ops: Vec<Op>) {
        let mut samples = Vec::new();
        for op in ops {
            match op {
                Op::Samples(s) => samples.extend(s),
                Op::Flush(done) => {
                    // What came before the flush is in it.
                    self.append(&std::mem::take(&mut samples));
                    let _ = done.send(self.flush());
                }
                Op::Config(interval, retention) => {
                    self.interval = interval;
                    self.store().set_retention(retention);
                }
            }
        }
        self.append(&samples);
    }

    fn append(&mut self, samples: &[(SeriesKey, i64, f64)]) {
        if samples.is_empty() {
            return;
        }
        let mut appended = 0;
        let mut dropped = 0;
        let mut error = None;
        {
            let mut store = self.store();
            // New series numbered in one transaction (the first minute
            // names every series); should it fail, each append tries
            // again on its own and counts its own error.
            let _ = store.prepare(samples.iter().map(|(k, _, _)| k));
            for (key, ts, v) in samples {
                match store.append(key, *ts, *v) {
                    Ok(()) => appended += 1,
                    Err(SeriesError::OutOfOrder { .. }) => dropped += 1,
                    Err(e) => {
                        dropped += 1;
                        error.get_or_insert(e);
                    }
                }
            }
            self.stats
                .open_series
                .store(store.open_series() as u64, Ordering::Relaxed);
        }
        self.stats.appended.fetch_add(appended, Ordering::Relaxed);
        self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        // Appends mostly stay in memory: only a flush says the disk works.
        if let Some(e) = error {
            self.failed("appending samples", &e);
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        let result = {
            let mut store = self.store();
            let r = store.flush();
            self.stats
                .memory_bytes
                .store(store.memory_bytes() as u64, Ordering::Relaxed);
            r
        };
        match result {
            Ok(()) => {
                self.worked();
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                self.failed("flushing the open chunks", &e);
                Err(text)
            }
        }
    }

    fn retention(&mut self) {
        let result = self.store().enforce_retention(Timestamp::now().millis());
        match result {
            Ok(r) => {
                if r.expired + r.over_size > 0 {
                    tracing::info!(
                        expired = r.expired,
                        over_size = r.over_size,
                        bytes_left = r.bytes_left,
                        "old series chunks deleted"
                    );
                }
                self.worked();
            }
            Err(e) => self.failed("enforcing the retention", &e),
        }
    }

    fn sample_host(&mut self) {
        let Some(host) = &mut self.host else {
            return;
        };
        let ts = Timestamp::now().millis();
        let samples: Vec<(SeriesKey, i64, f64)> = host
            .collect()
            .into_iter()
            .filter_map(|s| {
                let key = SeriesKey::new(s.name, s.labels.iter().map(|(k, v)| (*k, v.as_str())));
                key.ok().map(|k| (k, ts, s.value))
            })
            .collect();
        self.append(&samples);
    }

    fn failed(&mut self, what: &str, e: &SeriesError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if !self.failing {
            self.failing = true;
            tracing::error!(error = %e, "series store: {what} failed; samples are dropped until it works (see vigie_series_errors_total)");
        }
    }

    fn worked(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!("series store: writing again");
        }
    }
}
