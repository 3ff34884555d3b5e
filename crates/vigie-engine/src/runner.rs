//! Running checks: the per-check schedule loop of the daemon, and the
//! one-shot runs of `vigie check`. Both go through [`run_probe`], so a
//! check behaves the same whichever way it is started.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use vigie_config::{Check, Config, Probe};
use vigie_core::{CheckResult, Outcome, Timestamp};
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

pub(crate) struct CheckTask {
    pub inner: Arc<Inner>,
    pub check: Check,
    pub probe: Arc<Prepared>,
    /// Runs the check at once: a heartbeat ping, a repair's verification.
    pub wake: Arc<Notify>,
}

impl CheckTask {
    pub(crate) async fn run(self, started: tokio::time::Instant) {
        let every = self.check.every.std();
        let timeout = self.check.timeout.std();
        let name: Arc<str> = Arc::from(self.check.name.as_str());
        let mut due = started + jitter(&self.check.name, every);
        loop {
            let woken = tokio::select! {
                () = tokio::time::sleep_until(due) => false,
                () = self.wake.notified() => true,
            };
            let scheduled = if woken {
                tokio::time::Instant::now()
            } else {
                due
            };
            let outcome_and_timing = if let Probe::Heartbeat(spec) = &self.check.probe {
                let signals = self
                    .inner
                    .heartbeats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .signals(&self.check.name)
                    .unwrap_or_default();
                let start = Instant::now();
                let lag = tokio::time::Instant::now().saturating_duration_since(scheduled);
                (
                    vigie_probe::evaluate_heartbeat(spec, signals, Timestamp::now()),
                    lag,
                    start.elapsed(),
                )
            } else {
                let semaphore = self
                    .inner
                    .semaphore
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let Ok(_permit) = semaphore.acquire_owned().await else {
                    return;
                };
                let lag = tokio::time::Instant::now().saturating_duration_since(scheduled);
                let start = Instant::now();
                // Boxed: the probe's future is large and only lives during a
                // run, so a sleeping check stays small.
                let outcome = Box::pin(run_probe(&self.probe, timeout)).await;
                (outcome, lag, start.elapsed())
            };
            let (outcome, lag, duration) = outcome_and_timing;
            let stats = &self.inner.stats;
            stats.observe_lag(lag);
            stats.runs_total.fetch_add(1, Ordering::Relaxed);
            if crate::is_timeout(&outcome) {
                stats.timeouts_total.fetch_add(1, Ordering::Relaxed);
            } else if outcome.message.starts_with("the probe crashed") {
                stats.panics_total.fetch_add(1, Ordering::Relaxed);
            }
            let started_at = Timestamp::now().saturating_sub(duration);
            self.inner.record(
                &self.check,
                CheckResult {
                    check: name.clone(),
                    started_at,
                    lag,
                    duration,
                    outcome,
                },
            );
            if !woken {
                due += every;
            }
            // A run longer than the interval skips the slots it overran
            // instead of firing them back to back.
            let now = tokio::time::Instant::now();
            if due <= now {
                let behind = now.duration_since(due);
                let skip = behind.as_nanos() / every.as_nanos().max(1) + 1;
                due += every * u32::try_from(skip).unwrap_or(u32::MAX);
            }
        }
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
/// `vigie check`. Heartbeats are judged from what the store remembers.
pub async fn run_once(
    config: &Config,
    checks: &[&Check],
    store: Option<&vigie_store::Store>,
) -> Vec<OnceResult> {
    let shared = vigie_probe::Shared::new();
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
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let start = Instant::now();
            let outcome = match (&check.probe, prepared) {
                (Probe::Heartbeat(spec), _) => {
                    let now = Timestamp::now();
                    let signals = vigie_probe::HeartbeatSignals {
                        last_ping: hb.as_ref().and_then(|h| h.last_ping),
                        last_fail: hb.as_ref().and_then(|h| h.last_fail),
                        watching_since: hb.as_ref().map_or(now, |h| h.first_seen),
                    };
                    vigie_probe::evaluate_heartbeat(spec, signals, now)
                }
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
    use super::{guarded, jitter};
    use std::time::Duration;
    use vigie_core::Outcome;

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
