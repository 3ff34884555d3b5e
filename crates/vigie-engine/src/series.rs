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
//! host's are node_exporter's, as `/metrics` serves them. A check's keys
//! are made once, when it is installed ([`CheckKeys`]): a result costs
//! no string and no hashing of its labels.
//!
//! Every run is a sample, so a check's runs are read from here: its
//! last runs ([`Series::recent_marks`], the overview's sparkline) and its
//! runs over a range ([`Series::buckets`], its history).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vigie_config::SeriesConfig;
use vigie_core::{CheckResult, CheckState, Timestamp};
use vigie_metrics::HostCollector;
use vigie_store::series::{Aggregate, Retention, Sample, SeriesError, SeriesKey, SeriesStore};
use vigie_store::{Bucket, Mark};

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

/// A sample of a series whose key is shared (made once, sent often).
pub type Keyed = (Arc<SeriesKey>, i64, f64);

enum Op {
    Samples(Vec<Keyed>),
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

const UP: &str = "vigie_check_up";
const FAILING: &str = "vigie_check_failing";
const DURATION: &str = "vigie_check_duration_seconds";
const VALUE: &str = "vigie_check_value";

/// A check's series keys, made once when the check is installed and
/// shared by each of its results. A key that cannot be made (a name no
/// series accepts) is `None`: its samples are not kept.
#[derive(Debug)]
pub struct CheckKeys {
    check: String,
    up: Option<Arc<SeriesKey>>,
    failing: Option<Arc<SeriesKey>>,
    duration: Option<Arc<SeriesKey>>,
    /// `vigie_check_value{name}` by metric name, made at the first run
    /// that measures it (a probe measures the same few every run).
    values: Mutex<Vec<(String, Option<Arc<SeriesKey>>)>>,
}

impl CheckKeys {
    pub fn new(check: &str) -> Self {
        let key = |name: &str| SeriesKey::new(name, [("check", check)]).ok().map(Arc::new);
        Self {
            check: check.to_owned(),
            up: key(UP),
            failing: key(FAILING),
            duration: key(DURATION),
            values: Mutex::new(Vec::new()),
        }
    }

    fn value(&self, name: &str) -> Option<Arc<SeriesKey>> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, k)) = values.iter().find(|(n, _)| n == name) {
            return k.clone();
        }
        let key = SeriesKey::new(VALUE, [("check", self.check.as_str()), ("name", name)])
            .ok()
            .map(Arc::new);
        values.push((name.to_owned(), key.clone()));
        key
    }
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
    pub fn send(&self, samples: Vec<Keyed>) {
        let n = samples.len() as u64;
        match self.tx.try_send(Op::Samples(samples)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Queue a check result's numbers (see the module's "Names") under
    /// the check's `keys`.
    pub fn result(&self, keys: &CheckKeys, result: &CheckResult, state: CheckState) {
        let ts = result.started_at.millis();
        let mut out = Vec::with_capacity(3 + result.outcome.metrics.len());
        let up = f64::from(u8::from(result.outcome.ok));
        let failing = f64::from(u8::from(state == CheckState::Failing));
        // To the microsecond: a short decimal compresses to a few bytes
        // where the f64 of the nanoseconds takes seven.
        let duration = result.duration.as_micros() as f64 / 1e6;
        for (key, v) in [
            (&keys.up, up),
            (&keys.failing, failing),
            (&keys.duration, duration),
        ] {
            if let Some(k) = key {
                out.push((k.clone(), ts, v));
            }
        }
        for m in &result.outcome.metrics {
            if let Some(k) = keys.value(&m.name) {
                out.push((k, ts, m.value));
            }
        }
        self.send(out);
    }

    /// The last `n` runs of `check`, oldest first: each run's duration
    /// (`vigie_check_duration_seconds`) with its outcome
    /// (`vigie_check_up` at the same time; a run whose outcome sample
    /// is missing is left out). The store is locked for this check only.
    pub fn recent_marks(&self, check: &str, n: usize) -> Result<Vec<Mark>, SeriesError> {
        let up = SeriesKey::new(UP, [("check", check)])?;
        let duration = SeriesKey::new(DURATION, [("check", check)])?;
        let (ups, durations) = {
            let store = self.lock();
            (store.last(&up, n)?, store.last(&duration, n)?)
        };
        // Both are in time order: walk them together.
        let mut ups = ups.iter().peekable();
        let mut marks = Vec::with_capacity(durations.len());
        for d in &durations {
            while ups.next_if(|u| u.ts_ms < d.ts_ms).is_some() {}
            if let Some(u) = ups.next_if(|u| u.ts_ms == d.ts_ms) {
                marks.push(Mark {
                    at: Timestamp(d.ts_ms),
                    ok: u.value >= 0.5,
                    duration_ms: d.value * 1000.0,
                });
            }
        }
        Ok(marks)
    }

    /// `check`'s runs in `[from, to]` in buckets of `width` ms (aligned
    /// on multiples of it; a bucket without runs is left out), whatever
    /// the range: from the raw samples and the roll-ups as
    /// [`SeriesStore::query_step`] picks them. The duration's give the
    /// runs, their mean and the slowest; `vigie_check_up`'s the failures
    /// (its sum counts the runs that passed).
    pub fn buckets(
        &self,
        check: &str,
        from: Timestamp,
        to: Timestamp,
        width: i64,
    ) -> Result<Vec<Bucket>, SeriesError> {
        let step = Duration::from_millis(width.max(1).unsigned_abs());
        let up = SeriesKey::new(UP, [("check", check)])?;
        let duration = SeriesKey::new(DURATION, [("check", check)])?;
        let durations = self.query_step(&duration, from.0, to.0, step)?;
        let ups = self.query_step(&up, from.0, to.0, step)?;
        let passed: std::collections::HashMap<i64, f64> =
            ups.iter().map(|a| (a.ts_ms, a.sum)).collect();
        Ok(durations
            .iter()
            .filter(|a| a.ts_ms >= from.0 - width && a.count > 0)
            .map(|a| Bucket {
                start: Timestamp(a.ts_ms),
                runs: a.count,
                failures: a
                    .count
                    .saturating_sub(passed.get(&a.ts_ms).copied().unwrap_or(0.0).round() as u64),
                mean_ms: a.mean() * 1000.0,
                max_ms: a.max * 1000.0,
            })
            .collect())
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

    fn append(&mut self, samples: &[Keyed]) {
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
            let _ = store.prepare(samples.iter().map(|(k, _, _)| &**k));
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
        let samples: Vec<Keyed> = host
            .collect()
            .into_iter()
            .filter_map(|s| {
                let key = SeriesKey::new(s.name, s.labels.iter().map(|(k, v)| (*k, v.as_str())));
                key.ok().map(|k| (Arc::new(k), ts, s.value))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use vigie_core::{CheckResult, CheckState, Outcome, Timestamp};

    use super::{CheckKeys, Series};

    fn result(at: i64, ok: bool, ms: u64) -> CheckResult {
        CheckResult {
            check: Arc::from("web"),
            started_at: Timestamp(at),
            lag: Duration::ZERO,
            duration: Duration::from_millis(ms),
            outcome: if ok {
                Outcome::ok("200 OK")
            } else {
                Outcome::fail("500")
            }
            .with_metric("status", if ok { 200.0 } else { 500.0 }),
        }
    }

    #[test]
    fn a_checks_runs_read_back_from_its_series_failures_included() {
        let dir = tempfile::tempdir().unwrap();
        let config = vigie_config::load_str("", &dir.path().join("vigie.toml"), &|_| None)
            .unwrap()
            .config;
        let series = Series::start(dir.path(), &config.series, None).unwrap();
        let keys = CheckKeys::new("web");
        let other = CheckKeys::new("db");
        let t0 = 1_764_000_000_000;
        // 40 runs 5 s apart; the 35th failed.
        for i in 0..40 {
            let ok = i != 34;
            let r = result(t0 + i * 5_000, ok, 10 + i.unsigned_abs());
            series.result(&keys, &r, CheckState::Ok);
            series.result(&other, &result(t0 + i * 5_000, true, 1), CheckState::Ok);
        }
        series.flush().unwrap();
        let marks = series.recent_marks("web", 30).unwrap();
        assert_eq!(marks.len(), 30, "the last 30 of 40");
        assert_eq!(marks[0].at, Timestamp(t0 + 10 * 5_000), "oldest first");
        assert_eq!(marks[29].at, Timestamp(t0 + 39 * 5_000));
        let failed: Vec<_> = marks.iter().filter(|m| !m.ok).map(|m| m.at).collect();
        assert_eq!(failed, [Timestamp(t0 + 34 * 5_000)]);
        assert!((marks[29].duration_ms - 49.0).abs() < 1e-6, "{marks:?}");
        assert!(series.recent_marks("nothing", 30).unwrap().is_empty());
        // The same runs in buckets of a minute: 12 runs each, the failure
        // in the one that holds it; db's runs are not counted.
        let buckets = series
            .buckets("web", Timestamp(t0), Timestamp(t0 + 200_000), 60_000)
            .unwrap();
        assert_eq!(buckets.iter().map(|b| b.runs).sum::<u64>(), 40);
        assert_eq!(buckets.iter().map(|b| b.failures).sum::<u64>(), 1);
        let with_failure = buckets.iter().find(|b| b.failures == 1).unwrap();
        let at = t0 + 34 * 5_000;
        assert!(with_failure.start.0 <= at && at < with_failure.start.0 + 60_000);
        // The value's key was made once, and named after the metric.
        let value = series
            .lock()
            .last(
                &vigie_store::SeriesKey::new(
                    "vigie_check_value",
                    [("check", "web"), ("name", "status")],
                )
                .unwrap(),
                1,
            )
            .unwrap();
        assert!((value[0].value - 200.0).abs() < 1e-9, "{value:?}");
    }
}
