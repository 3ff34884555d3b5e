//! Heartbeats are pushed, not pulled: a job pings vigie when it runs, and
//! the check fails when no ping came within period + grace (or after the
//! last time of its cron `schedule`, + grace), when the job's last word
//! was a failure (an exit status, the last lines of its output), or when
//! a run it started outlasts `max_duration`.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use vigie_config::HeartbeatProbe;
use vigie_core::{Cron, Outcome, Timestamp};

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

/// Late or on time: the last success against period + grace, or against
/// the last scheduled time + grace (a start does not count: a job that
/// only ever starts is late).
fn late(spec: &HeartbeatProbe, s: &HeartbeatSignals, now: Timestamp, tail: &str) -> Outcome {
    let (reference, what) = match s.last_ping {
        Some(p) => (p, "last ping"),
        None => (s.watching_since, "no ping yet; watching"),
    };
    let age = reference.age(now);
    let outcome = match (&spec.schedule, spec.period) {
        (Some(cron), _) => on_schedule(
            spec,
            cron,
            reference,
            now,
            &format!("{what} {} ago", ago(age)),
        ),
        (None, Some(period)) if age > period.std() + spec.grace.std() => Outcome::fail(format!(
            "{what} {} ago, more than period {period} + grace {}",
            ago(age),
            spec.grace
        )),
        (None, _) => Outcome::ok(format!("{what} {} ago", ago(age))),
    };
    Outcome {
        message: format!("{}{tail}", outcome.message),
        ..outcome
    }
    .with_metric("age_seconds", age.as_secs_f64())
}

/// Late when the last scheduled time + grace passed with no ping (nor,
/// for a new check, the start of watching) after that time.
fn on_schedule(
    spec: &HeartbeatProbe,
    cron: &Cron,
    reference: Timestamp,
    now: Timestamp,
    heard: &str,
) -> Outcome {
    let tz = match spec.timezone.as_deref() {
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => return Outcome::fail(format!("time zone `{name}`: {e}")),
        },
        None => TimeZone::system(),
    };
    let Some(due) = last_scheduled(cron, &tz, now) else {
        return Outcome::ok(format!("{heard}; `{cron}` has not fired yet"));
    };
    let due_ms = due.as_millisecond();
    let when = due.to_zoned_datetime(tz).strftime("%Y-%m-%d %H:%M %Z");
    let overdue = Timestamp(due_ms).age(now) > spec.grace.std();
    if reference.millis() < due_ms && overdue {
        Outcome::fail(format!(
            "{heard}: none after the run scheduled at {when} (`{cron}`), grace {} passed",
            spec.grace
        ))
    } else {
        Outcome::ok(format!("{heard}; last scheduled at {when} (`{cron}`)"))
    }
}

/// The last time at or before `now` that `cron` fires in `tz`, looked for
/// over five years back (a day, an hour, a minute skipped at once when it
/// cannot match).
#[must_use]
pub fn last_scheduled(cron: &Cron, tz: &TimeZone, now: Timestamp) -> Option<jiff::Timestamp> {
    let now_j = jiff::Timestamp::from_millisecond(now.millis()).ok()?;
    let local = now_j.to_zoned_datetime(tz.clone()).datetime();
    let mut t = local.date().at(local.hour(), local.minute(), 0, 0);
    let oldest = local.date().checked_sub(jiff::Span::new().years(5)).ok()?;
    let num = |v: i8| u32::from(v.unsigned_abs());
    let day_before = |d: jiff::civil::Date| d.yesterday().ok().map(|y| y.at(23, 59, 0, 0));
    while t.date() >= oldest {
        let weekday = num(t.weekday().to_sunday_zero_offset());
        let previous = if !cron.day_matches(num(t.day()), num(t.month()), weekday) {
            day_before(t.date())?
        } else if !cron.hour_matches(num(t.hour())) {
            match t.hour() {
                0 => day_before(t.date())?,
                h => t.date().at(h - 1, 59, 0, 0),
            }
        } else if cron.minute_matches(num(t.minute()))
            && let Some(at) = t.to_zoned_datetime(tz.clone()).ok().map(|z| z.timestamp())
            && at <= now_j
        {
            return Some(at);
        } else {
            match (t.hour(), t.minute()) {
                (0, 0) => day_before(t.date())?,
                (h, 0) => t.date().at(h - 1, 59, 0, 0),
                (h, m) => t.date().at(h, m - 1, 0, 0),
            }
        };
        t = previous;
    }
    None
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
            period: Some(vigie_core::Duration::from_secs(60)),
            schedule: None,
            timezone: None,
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
            period: Some(vigie_core::Duration::from_secs(86_400)),
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

    #[test]
    fn a_schedule_is_late_after_its_last_time_plus_grace() {
        // 2026-12-01 01:30 UTC is 02:30 in Paris (CET, +01:00).
        let t = |s: &str| Timestamp(s.parse::<jiff::Timestamp>().unwrap().as_millisecond());
        let spec = HeartbeatProbe {
            period: None,
            schedule: Some("0 2 * * *".parse().unwrap()),
            timezone: Some("Europe/Paris".into()),
            grace: vigie_core::Duration::from_secs(1800),
            ..spec()
        };
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let cron: Cron = "0 2 * * *".parse().unwrap();
        let due = last_scheduled(&cron, &paris, t("2026-12-01T01:30:00Z")).unwrap();
        assert_eq!(due.to_string(), "2026-12-01T01:00:00Z");
        let before = last_scheduled(&cron, &paris, t("2026-12-01T00:59:00Z")).unwrap();
        assert_eq!(before.to_string(), "2026-11-30T01:00:00Z");
        // Pinged the night before, watched for days: within grace, ok.
        let s = HeartbeatSignals {
            last_ping: Some(t("2026-11-30T01:05:00Z")),
            watching_since: t("2026-11-20T00:00:00Z"),
            ..Default::default()
        };
        assert!(evaluate(&spec, &s, t("2026-12-01T01:29:00Z")).ok);
        // Grace passed without a ping after 02:00: late, saying when.
        let late = evaluate(&spec, &s, t("2026-12-01T01:31:00Z"));
        assert!(!late.ok);
        assert!(
            late.message
                .contains("none after the run scheduled at 2026-12-01 02:00 CET (`0 2 * * *`), grace 30m passed"),
            "{}",
            late.message
        );
        // A ping after 02:00 makes it on time until the next night.
        let pinged = HeartbeatSignals {
            last_ping: Some(t("2026-12-01T01:10:00Z")),
            ..s.clone()
        };
        assert!(evaluate(&spec, &pinged, t("2026-12-02T01:29:00Z")).ok);
        assert!(!evaluate(&spec, &pinged, t("2026-12-02T01:31:00Z")).ok);
        // A check new since after the last run is not late for it.
        let new = HeartbeatSignals {
            watching_since: t("2026-12-01T01:20:00Z"),
            ..Default::default()
        };
        assert!(evaluate(&spec, &new, t("2026-12-01T01:40:00Z")).ok);
        // Weekdays and hours skipped at once: Mondays 08:15.
        let monday: Cron = "15 8 * * 1".parse().unwrap();
        let at = last_scheduled(&monday, &TimeZone::UTC, t("2026-12-06T12:00:00Z")).unwrap();
        assert_eq!(at.to_string(), "2026-11-30T08:15:00Z");
    }
}
