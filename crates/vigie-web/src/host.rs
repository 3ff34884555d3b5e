//! The host's metrics on `/metrics`: `vigie_metrics`' collectors (on the
//! blocking pool: they read `/proc` and wait on `statvfs`), and, where
//! systemd is PID 1, its failed units, asked of `systemctl` through
//! vigie-net's command runner and bounded in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use vigie_metrics::host::systemd;
use vigie_metrics::{HostCollector, Kind, Sample};

/// How long `systemctl list-units` may take before the scrape goes on
/// without it (`node_scrape_collector_success{collector="systemd"}` 0).
pub(crate) const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(3);

/// The collectors, shared by every scrape (one collects at a time: they
/// keep counters and buffers between calls).
#[derive(Debug)]
pub(crate) struct HostMetrics {
    collector: Mutex<HostCollector>,
    /// systemd manages this host: ask it for failed units.
    systemd: bool,
    /// The last `systemctl` call failed (logged once, until it works).
    systemd_failing: AtomicBool,
}

impl HostMetrics {
    pub(crate) fn new() -> Self {
        Self {
            collector: Mutex::new(HostCollector::new()),
            systemd: systemd::running(),
            systemd_failing: AtomicBool::new(false),
        }
    }

    /// Every host sample, failed systemd units included where systemd runs.
    pub(crate) async fn samples(self: &Arc<Self>) -> Vec<Sample> {
        let units = if self.systemd {
            let started = Instant::now();
            Some((failed_units().await, started.elapsed()))
        } else {
            None
        };
        let me = self.clone();
        let mut samples = tokio::task::spawn_blocking(move || {
            me.collector
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the host metrics collectors panicked; this page has none");
            Vec::new()
        });
        if let Some((output, took)) = units {
            let ok = match output.and_then(|text| {
                let units = systemd::parse(&text).map_err(|e| {
                    format!(
                        "`{}` said something else: {e}",
                        systemd::FAILED_UNITS.join(" ")
                    )
                })?;
                systemd::samples(&units, &mut samples);
                Ok(())
            }) {
                Ok(()) => {
                    if self.systemd_failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("failed systemd units are listed again");
                    }
                    true
                }
                Err(error) => {
                    if !self.systemd_failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "cannot list failed systemd units; node_systemd_* is left out of /metrics until it works");
                    }
                    false
                }
            };
            samples.push(scrape(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                took.as_secs_f64(),
            ));
            samples.push(scrape(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                f64::from(u8::from(ok)),
            ));
        }
        samples
    }
}

fn scrape(name: &'static str, help: &'static str, value: f64) -> Sample {
    Sample::labelled(
        name,
        Kind::Gauge,
        help,
        vec![("collector", "systemd".to_owned())],
        value,
    )
}

/// `systemctl list-units --state=failed …`'s output, or why not.
async fn failed_units() -> Result<String, String> {
    let [program, args @ ..] = systemd::FAILED_UNITS;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let run = vigie_net::command::capture(cmd, vigie_net::command::Leftovers::Kill);
    match tokio::time::timeout(SYSTEMCTL_TIMEOUT, run).await {
        Err(_) => Err(format!(
            "systemctl did not answer within {}s",
            SYSTEMCTL_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("cannot run systemctl: {e}")),
        Ok(Ok(out)) if out.status == Some(0) => Ok(out.text),
        Ok(Ok(out)) => Err(format!(
            "systemctl failed ({}): {}",
            out.status
                .map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
            vigie_net::command::first_line(&out.text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real systemctl, through the command runner: where systemd is
    /// PID 1 its list parses; elsewhere its refusal is an error that says
    /// what systemctl said, and the page has no systemd families.
    #[tokio::test]
    async fn systemctl_is_asked_and_understood() {
        vigie_testkit::require!(vigie_testkit::Need::Systemctl);
        let result = failed_units().await;
        let host = Arc::new(HostMetrics::new());
        let samples = host.samples().await;
        let systemd_samples = samples
            .iter()
            .filter(|s| {
                s.name.starts_with("node_systemd_") || s.label("collector") == Some("systemd")
            })
            .count();
        if systemd::running() {
            let text = result.expect("systemctl lists failed units");
            let units = systemd::parse(&text).expect("its output parses");
            // node_systemd_units, the units, and the two scrape samples.
            assert_eq!(systemd_samples, units.len() + 3);
        } else {
            let e = result.unwrap_err();
            assert!(e.starts_with("systemctl failed (exit "), "{e}");
            assert!(e.contains("systemd"), "{e}");
            assert_eq!(systemd_samples, 0);
        }
        assert!(samples.iter().any(|s| s.name == "node_load1"));
    }
}
