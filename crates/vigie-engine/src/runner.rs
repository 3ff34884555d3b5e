//! Running checks: the per-check schedule loop of the daemon, and the
//! one-shot runs of `vigie check`. Both go through [`run_probe`], so a
//! check behaves the same whichever way it is started.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use vigie_config::{Check, Config, Probe};
use vigie_core::{CheckResult, CheckState, Outcome, StateTracker, Timestamp};
use vigie_probe::Prepared;

use crate::Inner;

/// Run one probe under its timeout, in a task of its own so that a panic
/// is caught and a hung probe is aborted.
pub(crate) async fn run_probe(probe: &Arc<Prepared>, timeout: Duration) -> Outcome {
    let p = probe.clone();
    guarded(async move { p.run(timeout).await }, timeout).await
}

/// Run `probe` in its own task: a panic becomes a failing outcome, and
/// past `timeout` the task is aborted, which drops what it held.
pub(crate) async fn guarded<F>(probe: F, timeout: Duration) -> Outcome
where
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    // Aborted when dropped: if the check itself is stopped (a reload, a
    // shutdown), its probe does not live on unattended.
    struct AbortOnDrop(tokio::task::JoinHandle<Outcome>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut guard = AbortOnDrop(tokio::spawn(probe));
    let handle = &mut guard.0;
    match tokio::time::timeout(timeout, handle).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Outcome::fail(format!("the probe crashed: {msg}"))
        }
        Ok(Err(e)) => Outcome::fail(format!("the probe was stopped: {e}")),
        Err(_) => Outcome::fail(format!(
            "timed out after {}",
            vigie_core::Duration::from(timeout)
        )),
    }
}

/// Where a rule reads the series: the engine's handle (under its lock,
/// so unflushed samples count), or a store opened for `vigie check`.
#[derive(Clone)]
pub(crate) enum Reader {
    Engine(crate::series::Series),
    Store(Arc<std::sync::Mutex<vigie_store::series::SeriesStore>>),
}

/// Judge a rule check off the async threads (it reads SQLite), under
/// the check's timeout.
pub(crate) async fn judge_rule(
    spec: &vigie_config::RuleProbe,
    reader: Option<Reader>,
    timeout: Duration,
) -> Outcome {
    let Some(rule) = spec.rule.clone() else {
        return Outcome::fail("the rule was not parsed by the loader");
    };
    let Some(reader) = reader else {
        return Outcome::fail(
            "the series store is not open (see the log at start): rules cannot be judged",
        );
    };
    guarded(
        async move {
            tokio::task::spawn_blocking(move || {
                let now = Timestamp::now().millis();
                match reader {
                    Reader::Engine(series) => crate::rules::judge(&rule, &series, now),
                    Reader::Store(store) => crate::rules::judge(
                        &rule,
                        &*store
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                        now,
                    ),
                }
            })
            .await
            .unwrap_or_else(|e| Outcome::fail(format!("the rule crashed: {e}")))
        },
        timeout,
    )
    .await
}

/// Where in its interval a check runs: a stable fraction of `every`
/// taken from a hash of its name, so schedules spread evenly and stay put
/// across restarts.
pub(crate) fn jitter(name: &str, every: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone leaves similar names (`web-1`, `web-2`) close together;
    // murmur3's finalizer spreads them over the whole range.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let frac = (h >> 11) as f64 / (1u64 << 53) as f64;
    // Checks land on 20ms slots so that one wake-up of the runtime starts
    // all the checks due together: with thousands of checks this divides
    // the wake-ups without making any check noticeably late.
    let slot = SLOT.as_nanos();
    let offset = (every.as_nanos() as f64 * frac) as u128 / slot * slot;
    Duration::from_nanos(u64::try_from(offset).unwrap_or(0))
}

/// The granularity of check start times.
const SLOT: Duration = Duration::from_millis(20);

/// How soon the first run of a check comes after the engine starts: the
/// jitter's fraction of this span (or of `every`, if shorter), so that
/// `vigie run` shows every check's first result within seconds instead of
/// after up to a whole interval, still spread rather than all at once.
const FIRST_RUN_SPREAD: Duration = Duration::from_secs(2);

/// What a finished run tells the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// Next run on the cadence.
    Settled,
    /// The check failed but `fail_after` has not confirmed it yet: run
    /// again after `retry_every`, if the check has one.
    Confirming,
}

impl Ran {
    /// What the state after a run asks of the schedule.
    pub(crate) fn after(tracker: &StateTracker) -> Ran {
        if tracker.consecutive_fail > 0 && tracker.state != CheckState::Failing {
            Ran::Confirming
        } else {
            Ran::Settled
        }
    }
}

/// The schedule of one check. Runs start on the check's own cadence —
/// `first`, then `phase + k × every` — whatever a run's duration: the
/// schedule never waits for a run. One run at a time: a run due while
/// the previous one is still going starts as soon as that one ends (it
/// alone is late; several due meanwhile make one run). After a
/// [`Ran::Confirming`] run, the next is due `retry_every` after that
/// run was due (at once if that is past: a run as long as `retry_every`
/// is followed by the next straight away), until the failure is
/// confirmed or the check recovers; the cadence is kept meanwhile. A wake-up runs the check at once (a
/// heartbeat ping, a repair's verification). Returns when `run` returns
/// `None` (the engine is stopping).
pub(crate) async fn cadence<F, Fut>(
    first: Instant,
    phase: Instant,
    every: Duration,
    retry_every: Option<Duration>,
    wake: &Notify,
    mut run: F,
) where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = Option<Ran>>,
{
    let every = every.max(Duration::from_millis(1));
    // The first tick of the cadence after `t`.
    let after = |t: Instant| {
        if t < phase {
            return phase;
        }
        let k = t.duration_since(phase).as_nanos() / every.as_nanos() + 1;
        phase + every * u32::try_from(k).unwrap_or(u32::MAX)
    };
    let mut tick = first;
    let mut retry_at: Option<Instant> = None;
    // The run going on, with the time it was due.
    let mut running: Option<(Instant, std::pin::Pin<Box<Fut>>)> = None;
    // The time a run came due while another was going.
    let mut queued: Option<Instant> = None;
    loop {
        let next = retry_at.map_or(tick, |r| r.min(tick));
        let due = tokio::select! {
            () = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                if tick <= now {
                    let due = tick;
                    // Ticks missed while the runtime was held up make one run.
                    tick = after(now.max(tick));
                    due
                } else {
                    retry_at.take().unwrap_or(now)
                }
            }
            () = wake.notified() => Instant::now(),
            ran = async {
                match running.as_mut() {
                    Some((_, r)) => r.await,
                    None => std::future::pending().await,
                }
            }, if running.is_some() =>
            {
                let Some(ran) = ran else { return };
                let started = running.take().map_or_else(Instant::now, |(due, _)| due);
                retry_at = match (ran, retry_every) {
                    (Ran::Confirming, Some(r)) => Some(started + r),
                    _ => None,
                };
                match queued.take() {
                    Some(due) => due,
                    None => continue,
                }
            }
        };
        if running.is_some() {
            queued.get_or_insert(due);
            continue;
        }
        // Whatever made it due, this run is also the retry.
        retry_at = None;
        running = Some((due, Box::pin(run(due))));
    }
}

pub(crate) struct CheckTask {
    pub inner: Arc<Inner>,
    pub check: Check,
    pub probe: Arc<Prepared>,
    /// Runs the check at once: a heartbeat ping, a repair's verification.
    pub wake: Arc<Notify>,
    /// Its series' keys, made once.
    pub keys: crate::series::CheckKeys,
}

impl CheckTask {
    pub(crate) async fn run(self, started: Instant) {
        let every = self.check.every.std();
        let phase = started + jitter(&self.check.name, every);
        let first = started + jitter(&self.check.name, every.min(FIRST_RUN_SPREAD));
        let name: Arc<str> = Arc::from(self.check.name.as_str());
        cadence(
            first,
            phase,
            every,
            self.check.retry_every.map(vigie_core::Duration::std),
            &self.wake,
            |due| self.run_once(due, name.clone()),
        )
        .await;
    }

    /// One run, due at `due`: probe, record. `None` when the engine is
    /// stopping.
    async fn run_once(&self, due: Instant, name: Arc<str>) -> Option<Ran> {
        let timeout = self.check.timeout.std();
        let (outcome, lag, duration) = if let Probe::Heartbeat(spec) = &self.check.probe {
            let signals = self
                .inner
                .heartbeats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .signals(&self.check.name)
                .unwrap_or_default();
            let start = std::time::Instant::now();
            let lag = Instant::now().saturating_duration_since(due);
            (
                vigie_probe::evaluate_heartbeat(spec, &signals, Timestamp::now()),
                lag,
                start.elapsed(),
            )
        } else if let Probe::Rule(spec) = &self.check.probe {
            let lag = Instant::now().saturating_duration_since(due);
            let start = std::time::Instant::now();
            let series = self.inner.series.clone();
            let outcome = judge_rule(spec, series.map(Reader::Engine), timeout).await;
            (outcome, lag, start.elapsed())
        } else {
            let semaphore = self
                .inner
                .semaphore
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let Ok(_permit) = semaphore.acquire_owned().await else {
                return None;
            };
            let lag = Instant::now().saturating_duration_since(due);
            let start = std::time::Instant::now();
            // Boxed: the probe's future is large and only lives during a
            // run, so a sleeping check stays small.
            let outcome = Box::pin(run_probe(&self.probe, timeout)).await;
            (outcome, lag, start.elapsed())
        };
        let stats = &self.inner.stats;
        stats.observe_lag(lag);
        stats.runs_total.fetch_add(1, Ordering::Relaxed);
        if crate::is_timeout(&outcome) {
            stats.timeouts_total.fetch_add(1, Ordering::Relaxed);
        } else if outcome.message.starts_with("the probe crashed") {
            stats.panics_total.fetch_add(1, Ordering::Relaxed);
        }
        let started_at = Timestamp::now().saturating_sub(duration);
        let tracker = self.inner.record(
            &self.check,
            &self.keys,
            CheckResult {
                check: name,
                started_at,
                lag,
                duration,
                outcome,
            },
        );
        Some(tracker.as_ref().map_or(Ran::Settled, Ran::after))
    }
}

/// One check's result from a one-shot run.
#[derive(Debug, Clone)]
pub struct OnceResult {
    pub check: Check,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// Run `checks` of `config` once, at most `concurrency` at a time, for
/// `vigie check`. Heartbeats are judged from what the store remembers;
/// `sync` checks read `board`; `rule` checks read `series` (without
/// what a running daemon has not flushed yet).
pub async fn run_once(
    config: &Config,
    checks: &[&Check],
    store: Option<&vigie_store::Store>,
    series: Option<vigie_store::series::SeriesStore>,
    board: &vigie_core::Board,
) -> Vec<OnceResult> {
    let series = series.map(|s| Reader::Store(Arc::new(std::sync::Mutex::new(s))));
    let shared = vigie_probe::Shared::new(board.clone());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(config.engine.concurrency));
    let heartbeats = store
        .and_then(|s| s.heartbeats().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|h| (h.check.clone(), h))
        .collect::<std::collections::HashMap<_, _>>();
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in checks.iter().enumerate() {
        let check = (*check).clone();
        let semaphore = semaphore.clone();
        let prepared = vigie_probe::prepare(&check, &shared);
        let hb = heartbeats.get(&check.name).cloned();
        let series = series.clone();
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let start = std::time::Instant::now();
            let outcome = match (&check.probe, prepared) {
                (Probe::Heartbeat(spec), _) => {
                    let now = Timestamp::now();
                    let since = hb.as_ref().map_or(now, |h| h.first_seen);
                    let signals = crate::heartbeat::stored_signals(hb.as_ref(), since);
                    vigie_probe::evaluate_heartbeat(spec, &signals, now)
                }
                (Probe::Rule(spec), _) => judge_rule(spec, series, check.timeout.std()).await,
                (_, Ok(p)) => run_probe(&Arc::new(p), check.timeout.std()).await,
                (_, Err(e)) => Outcome::fail(e.0),
            };
            (
                i,
                OnceResult {
                    check,
                    outcome,
                    duration: start.elapsed(),
                },
            )
        });
    }
    let mut results: Vec<(usize, OnceResult)> = Vec::with_capacity(checks.len());
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::{Ran, cadence, guarded, jitter};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::Notify;
    use tokio::time::Instant;
    use vigie_core::{Outcome, StateTracker, Thresholds, Timestamp};

    /// Runs `cadence` with a probe that takes `took(i)` and succeeds as
    /// `ok(i)` says (judged by a real state tracker with `fail_after =
    /// 3`), until `runs` runs; returns when each run started, in seconds
    /// after `t0`.
    async fn starts(
        first: f64,
        phase: f64,
        every: f64,
        retry_every: Option<f64>,
        runs: usize,
        took: impl Fn(usize) -> f64,
        ok: impl Fn(usize) -> bool,
    ) -> Vec<f64> {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tracker = Arc::new(Mutex::new(StateTracker::default()));
        let thresholds = Thresholds {
            fail_after: 3,
            recover_after: 1,
        };
        let wake = Notify::new();
        cadence(
            at(first),
            at(phase),
            Duration::from_secs_f64(every),
            retry_every.map(Duration::from_secs_f64),
            &wake,
            |_due| {
                let seen = seen.clone();
                let tracker = tracker.clone();
                let i = seen.lock().unwrap().len();
                let (took, ok) = (took(i), ok(i));
                async move {
                    if i == runs {
                        return None;
                    }
                    seen.lock().unwrap().push(t0.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_secs_f64(took)).await;
                    let mut t = tracker.lock().unwrap();
                    t.observe(ok, thresholds, Timestamp::now());
                    Some(Ran::after(&t))
                }
            },
        )
        .await;
        let v = seen.lock().unwrap().clone();
        // Rounded to the millisecond: the paused clock is exact, floats are not.
        v.into_iter()
            .map(|s| (s * 1000.0).round() / 1000.0)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_takes_its_whole_timeout_does_not_move_the_next_runs() {
        // every 2s, each run cut at its 2s timeout: runs still start every
        // 2s (the old loop counted the next run from the end of the last
        // and found it past, so it ran every 4s).
        let s = starts(0.0, 0.0, 2.0, None, 5, |_| 2.0, |_| false).await;
        assert_eq!(s, [0.0, 2.0, 4.0, 6.0, 8.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_run_delays_only_the_run_due_during_it() {
        // The second run takes 5s: the runs due at 4s and 6s wait for it
        // and make one run at 7s; the schedule stays on its ticks.
        let s = starts(
            0.0,
            0.0,
            2.0,
            None,
            5,
            |i| if i == 1 { 5.0 } else { 0.1 },
            |_| true,
        )
        .await;
        assert_eq!(s, [0.0, 2.0, 7.0, 8.0, 10.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_every_reruns_a_failure_until_fail_after_then_returns_to_every() {
        // every 30s, retry_every 1s, fail_after 3. Run 1 fails and run 2
        // recovers (back to the cadence); runs 3 to 5 fail (confirmed at
        // the third); a confirmed failure runs at `every`.
        let s = starts(0.0, 0.0, 30.0, Some(1.0), 8, |_| 0.2, |i| i == 0 || i == 2).await;
        assert_eq!(s, [0.0, 30.0, 31.0, 60.0, 61.0, 62.0, 90.0, 120.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_of_a_probe_that_takes_its_timeout_follow_each_other() {
        // retry_every shorter than the run: the retry starts as soon as the
        // failed run ends, never two runs at once.
        let s = starts(0.0, 0.0, 30.0, Some(1.0), 4, |_| 2.0, |_| false).await;
        assert_eq!(s, [0.0, 2.0, 4.0, 30.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_run_comes_early_then_the_check_keeps_its_phase() {
        let s = starts(0.5, 10.0, 30.0, None, 4, |_| 0.1, |_| true).await;
        assert_eq!(s, [0.5, 10.0, 40.0, 70.0]);
    }

    #[tokio::test]
    async fn a_panicking_probe_is_a_failing_result() {
        let o = guarded(async { panic!("boom in a probe") }, Duration::from_secs(1)).await;
        assert!(!o.ok);
        assert_eq!(o.message, "the probe crashed: boom in a probe");
    }

    #[tokio::test]
    async fn a_hung_probe_is_cut_and_dropped() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let o = guarded(
            async move {
                let _held = flag;
                tokio::time::sleep(Duration::from_hours(1)).await;
                Outcome::ok("never")
            },
            Duration::from_millis(50),
        )
        .await;
        assert_eq!(o.message, "timed out after 50ms");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "the aborted probe released what it held"
        );
    }

    #[test]
    fn jitter_spreads_names_over_the_interval() {
        let every = Duration::from_secs(5);
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let j = jitter(&format!("check-{i}"), every);
            assert!(j < every);
            assert_eq!(j.as_millis() % 20, 0, "on a 20ms slot");
            buckets[(j.as_secs_f64() / 0.5) as usize] += 1;
        }
        // Each tenth of the interval gets close to a tenth of the checks.
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
        assert_eq!(jitter("a", every), jitter("a", every));
    }
}
