//! Heartbeats are pushed, not pulled: a job pings vigie when it runs, and
//! the check fails when no ping came within period + grace, or when the
//! job's last word was a failure.

use std::sync::Arc;
use std::time::Duration;

use vigie_config::HeartbeatProbe;
use vigie_core::{Outcome, Timestamp};

/// What vigie has heard from a heartbeat's job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatSignals {
    pub last_ping: Option<Timestamp>,
    pub last_fail: Option<Timestamp>,
    /// The exit status that failure reported (`/ping/NAME/3`), if any.
    pub last_fail_status: Option<u8>,
    /// When the job last said it started (`/ping/NAME/start`).
    pub last_start: Option<Timestamp>,
    /// How long its last finished run took, from its start.
    pub last_duration: Option<Duration>,
    /// What the job sent with its last success or failure (its output,
    /// cut to [`MAX_BODY`]).
    pub last_body: Option<Arc<str>>,
    /// When vigie started watching: a job never heard from is given one
    /// period + grace from then, as healthchecks.io does for new checks.
    pub watching_since: Timestamp,
}

impl HeartbeatSignals {
    /// The start of a run not finished yet: a start after the last
    /// success and the last failure.
    #[must_use]
    pub fn running_since(&self) -> Option<Timestamp> {
        let finished = self.last_ping.max(self.last_fail);
        self.last_start.filter(|s| finished.is_none_or(|f| *s > f))
    }
}

/// The most of a ping's body kept, as healthchecks.io keeps.
pub const MAX_BODY: usize = 10 * 1024;

/// How many of the body's last lines a failure shows, and at most how
/// many characters of them.
const TAIL_LINES: usize = 5;
const TAIL_CHARS: usize = 400;

pub fn evaluate(spec: &HeartbeatProbe, s: &HeartbeatSignals, now: Timestamp) -> Outcome {
    let outcome = judge(spec, s, now);
    match s.last_duration {
        Some(d) => outcome.with_metric("duration_seconds", d.as_secs_f64()),
        None => outcome,
    }
}

fn judge(spec: &HeartbeatProbe, s: &HeartbeatSignals, now: Timestamp) -> Outcome {
    let running = s.running_since();
    if let (Some(started), Some(max)) = (running, spec.max_duration)
        && started.age(now) > max.std()
    {
        return Outcome::fail(format!(
            "started {} ago, not finished within max_duration {max}",
            ago(started.age(now))
        ));
    }
    let took = s
        .last_duration
        .map(|d| format!(" after running {}", ago(d)))
        .unwrap_or_default();
    let still = running
        .map(|r| format!("; running, started {} ago", ago(r.age(now))))
        .unwrap_or_default();
    if let Some(fail) = s.last_fail
        && s.last_ping.is_none_or(|p| fail >= p)
    {
        let when = ago(fail.age(now));
        let said = s
            .last_body
            .as_deref()
            .and_then(last_lines)
            .map(|t| format!(": {t}"))
            .unwrap_or_default();
        return Outcome::fail(match s.last_fail_status {
            Some(status) => {
                format!("the job exited with status {status} {when} ago{took}{still}{said}")
            }
            None => format!("the job reported a failure {when} ago{took}{still}{said}"),
        });
    }
    late(spec, s, now, &format!("{took}{still}"))
}

/// Late or on time: the last success against period + grace (a start
/// does not count: a job that only ever starts is late).
fn late(spec: &HeartbeatProbe, s: &HeartbeatSignals, now: Timestamp, tail: &str) -> Outcome {
    let allowed = spec.period.std() + spec.grace.std();
    let (reference, what) = match s.last_ping {
        Some(p) => (p, "last ping"),
        None => (s.watching_since, "no ping yet; watching"),
    };
    let age = reference.age(now);
    let outcome = if age > allowed {
        Outcome::fail(format!(
            "{what} {} ago, more than period {} + grace {}{tail}",
            ago(age),
            spec.period,
            spec.grace
        ))
    } else {
        Outcome::ok(format!("{what} {} ago{tail}", ago(age)))
    };
    outcome.with_metric("age_seconds", age.as_secs_f64())
}

/// The last non-blank lines of a job's output, on one line (" | "
/// between them), their end kept when they are long: what a failure
/// message shows of it.
#[must_use]
pub fn last_lines(body: &str) -> Option<String> {
    let lines: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let joined = lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ");
    let count = joined.chars().count();
    if count <= TAIL_CHARS {
        return Some(joined);
    }
    let tail: String = joined.chars().skip(count - TAIL_CHARS).collect();
    Some(format!("…{tail}"))
}

fn ago(d: Duration) -> String {
    vigie_core::Duration::from(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HeartbeatProbe {
        HeartbeatProbe {
            period: vigie_core::Duration::from_secs(60),
            grace: vigie_core::Duration::from_secs(30),
            token: None,
            max_duration: None,
        }
    }

    #[test]
    fn on_time_late_and_failed() {
        let at = |s: i64| Timestamp(s * 1000);
        let base = HeartbeatSignals {
            watching_since: at(0),
            ..Default::default()
        };
        assert!(
            evaluate(&spec(), &base, at(80)).ok,
            "new check within its first window"
        );
        assert!(!evaluate(&spec(), &base, at(91)).ok, "never pinged");
        let pinged = HeartbeatSignals {
            last_ping: Some(at(100)),
            ..base.clone()
        };
        assert!(evaluate(&spec(), &pinged, at(189)).ok);
        let late = evaluate(&spec(), &pinged, at(191));
        assert!(!late.ok);
        assert!(late.message.contains("1m31s ago"), "{}", late.message);
        let failed = HeartbeatSignals {
            last_fail: Some(at(110)),
            ..pinged.clone()
        };
        let said = evaluate(&spec(), &failed, at(111));
        assert!(!said.ok);
        assert!(
            said.message.contains("reported a failure 1s ago"),
            "{}",
            said.message
        );
        let exited = HeartbeatSignals {
            last_fail_status: Some(3),
            ..failed.clone()
        };
        let said = evaluate(&spec(), &exited, at(112));
        assert!(!said.ok);
        assert!(
            said.message.contains("exited with status 3 2s ago"),
            "{}",
            said.message
        );
        let recovered = HeartbeatSignals {
            last_ping: Some(at(120)),
            ..failed.clone()
        };
        assert!(evaluate(&spec(), &recovered, at(121)).ok);
    }

    #[test]
    fn starts_durations_and_max_duration() {
        let at = |s: i64| Timestamp(s * 1000);
        let spec = HeartbeatProbe {
            max_duration: Some(vigie_core::Duration::from_secs(3600)),
            ..spec()
        };
        let pinged = HeartbeatSignals {
            last_ping: Some(at(100)),
            last_duration: Some(Duration::from_secs(42)),
            watching_since: at(0),
            ..Default::default()
        };
        let done = evaluate(&spec, &pinged, at(110));
        assert!(done.ok, "{}", done.message);
        assert!(
            done.message.contains("after running 42s"),
            "{}",
            done.message
        );
        assert!(
            done.metrics
                .iter()
                .any(|m| m.name == "duration_seconds" && (m.value - 42.0).abs() < 1e-9),
            "{:?}",
            done.metrics
        );
        // A start is no success: a job that only ever starts is late.
        let started = HeartbeatSignals {
            last_start: Some(at(150)),
            ..pinged.clone()
        };
        assert_eq!(started.running_since(), Some(at(150)));
        let late = evaluate(&spec, &started, at(191));
        assert!(!late.ok, "{}", late.message);
        assert!(
            late.message.contains("running, started 41s ago"),
            "{}",
            late.message
        );
        // Running for longer than max_duration fails, whatever the period.
        let long = HeartbeatProbe {
            period: vigie_core::Duration::from_secs(86_400),
            ..spec.clone()
        };
        assert!(evaluate(&long, &started, at(150 + 3600)).ok);
        let over = evaluate(&long, &started, at(150 + 7200));
        assert!(!over.ok);
        assert_eq!(
            over.message,
            "started 2h ago, not finished within max_duration 1h"
        );
        // Without max_duration, a long run is only late.
        assert!(
            evaluate(
                &HeartbeatProbe {
                    max_duration: None,
                    ..long.clone()
                },
                &started,
                at(7350)
            )
            .ok
        );
        // A success after the start ends the run.
        let finished = HeartbeatSignals {
            last_ping: Some(at(160)),
            ..started.clone()
        };
        assert_eq!(finished.running_since(), None);
        assert!(evaluate(&spec, &finished, at(161)).ok);
    }

    #[test]
    fn a_failure_shows_the_last_lines_of_what_the_job_sent() {
        let at = |s: i64| Timestamp(s * 1000);
        let output = "backup of /srv\n\nopening repository\nFatal: unable to create lock\nrestic: repository locked\n\n";
        let failed = HeartbeatSignals {
            last_fail: Some(at(10)),
            last_fail_status: Some(1),
            last_body: Some(Arc::from(output)),
            ..Default::default()
        };
        let said = evaluate(&spec(), &failed, at(11));
        assert!(!said.ok);
        assert_eq!(
            said.message,
            "the job exited with status 1 1s ago: backup of /srv | opening repository | Fatal: unable to create lock | restic: repository locked"
        );
        // Only the last lines, and only the end of long ones.
        let many = "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\n";
        assert_eq!(
            last_lines(many).as_deref(),
            Some("line 5 | line 6 | line 7 | line 8 | line 9")
        );
        let long = format!("start\n{}end", "x".repeat(1000));
        let cut = last_lines(&long).unwrap();
        assert!(cut.starts_with('…') && cut.ends_with("xend"), "{cut}");
        assert_eq!(cut.chars().count(), TAIL_CHARS + 1);
        assert_eq!(last_lines(" \n\n"), None);
        // A success's output is no failure's message.
        let ok = HeartbeatSignals {
            last_ping: Some(at(12)),
            ..failed
        };
        assert!(evaluate(&spec(), &ok, at(13)).ok);
    }
}
