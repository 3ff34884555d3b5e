//! Heartbeats are pushed, not pulled: a job pings vigie when it runs, and
//! the check fails when no ping came within period + grace, or when the
//! job's last word was a failure.

use std::time::Duration;

use vigie_config::HeartbeatProbe;
use vigie_core::{Outcome, Timestamp};

/// What vigie has heard from a heartbeat's job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatSignals {
    pub last_ping: Option<Timestamp>,
    pub last_fail: Option<Timestamp>,
    /// The exit status that failure reported (`/ping/NAME/3`), if any.
    pub last_fail_status: Option<u8>,
    /// When vigie started watching: a job never heard from is given one
    /// period + grace from then, as healthchecks.io does for new checks.
    pub watching_since: Timestamp,
}

pub fn evaluate(spec: &HeartbeatProbe, s: HeartbeatSignals, now: Timestamp) -> Outcome {
    let allowed = spec.period.std() + spec.grace.std();
    if let Some(fail) = s.last_fail
        && s.last_ping.is_none_or(|p| fail >= p)
    {
        let when = ago(fail.age(now));
        return Outcome::fail(match s.last_fail_status {
            Some(status) => format!("the job exited with status {status} {when} ago"),
            None => format!("the job reported a failure {when} ago"),
        });
    }
    let (reference, what) = match s.last_ping {
        Some(p) => (p, "last ping"),
        None => (s.watching_since, "no ping yet; watching"),
    };
    let age = reference.age(now);
    let outcome = if age > allowed {
        Outcome::fail(format!(
            "{what} {} ago, more than period {} + grace {}",
            ago(age),
            spec.period,
            spec.grace
        ))
    } else {
        Outcome::ok(format!("{what} {} ago", ago(age)))
    };
    outcome.with_metric("age_seconds", age.as_secs_f64())
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
            evaluate(&spec(), base, at(80)).ok,
            "new check within its first window"
        );
        assert!(!evaluate(&spec(), base, at(91)).ok, "never pinged");
        let pinged = HeartbeatSignals {
            last_ping: Some(at(100)),
            ..base
        };
        assert!(evaluate(&spec(), pinged, at(189)).ok);
        let late = evaluate(&spec(), pinged, at(191));
        assert!(!late.ok);
        assert!(late.message.contains("1m31s ago"), "{}", late.message);
        let failed = HeartbeatSignals {
            last_fail: Some(at(110)),
            ..pinged
        };
        let said = evaluate(&spec(), failed, at(111));
        assert!(!said.ok);
        assert!(
            said.message.contains("reported a failure 1s ago"),
            "{}",
            said.message
        );
        let exited = HeartbeatSignals {
            last_fail_status: Some(3),
            ..failed
        };
        let said = evaluate(&spec(), exited, at(112));
        assert!(!said.ok);
        assert!(
            said.message.contains("exited with status 3 2s ago"),
            "{}",
            said.message
        );
        let recovered = HeartbeatSignals {
            last_ping: Some(at(120)),
            ..failed
        };
        assert!(evaluate(&spec(), recovered, at(121)).ok);
    }
}
