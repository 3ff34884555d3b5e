//! `rule` checks: a rule of the config ([`vigie_config::rule`]) judged
//! over the series store, read through the engine's one handle
//! ([`crate::series::Series`], under its lock: appended samples count,
//! flushed or not).
//!
//! A selector may match several series (`node_filesystem_avail_bytes`
//! without `mountpoint` matches every file system): each is judged, and
//! the rule fails when any of them fails; its value is the worst one.
//! `absent` is the exception, as Prometheus's: it fails when none of
//! them has a sample in its window. No series of that name and labels
//! at all is a failure (a typo, a mount gone), except for a check's
//! series before its first run (the loader checked that the check
//! exists): a rule and the check it reads start together, in either
//! order.
//!
//! A window within the raw retention reads the raw samples; a longer
//! one the 1-minute roll-ups, then the hourly ones.

use std::time::Duration;

use vigie_config::rule::{Cmp, Form, Reduce, Rule, Selector};
use vigie_core::{HumanBytes, Outcome};
use vigie_store::series::{Aggregate, Sample, SeriesError, SeriesKey, SeriesStore};

/// What a rule reads of the series store.
pub trait SeriesRead {
    fn keys(&self) -> Result<Vec<SeriesKey>, SeriesError>;
    fn raw(&self, key: &SeriesKey, from: i64, to: i64) -> Result<Vec<Sample>, SeriesError>;
    fn step(
        &self,
        key: &SeriesKey,
        from: i64,
        to: i64,
        step: Duration,
    ) -> Result<Vec<Aggregate>, SeriesError>;
    /// How long raw samples are kept.
    fn raw_kept(&self) -> Duration;
}

impl SeriesRead for SeriesStore {
    fn keys(&self) -> Result<Vec<SeriesKey>, SeriesError> {
        self.series()
    }

    fn raw(&self, key: &SeriesKey, from: i64, to: i64) -> Result<Vec<Sample>, SeriesError> {
        self.query(key, from, to)
    }

    fn step(
        &self,
        key: &SeriesKey,
        from: i64,
        to: i64,
        step: Duration,
    ) -> Result<Vec<Aggregate>, SeriesError> {
        self.query_step(key, from, to, step)
    }

    fn raw_kept(&self) -> Duration {
        self.retention().raw
    }
}

/// The engine's handle: the store is locked for each read, not for a
/// whole judgement, so the series thread appends between them.
impl SeriesRead for crate::series::Series {
    fn keys(&self) -> Result<Vec<SeriesKey>, SeriesError> {
        self.list()
    }

    fn raw(&self, key: &SeriesKey, from: i64, to: i64) -> Result<Vec<Sample>, SeriesError> {
        self.query(key, from, to)
    }

    fn step(
        &self,
        key: &SeriesKey,
        from: i64,
        to: i64,
        step: Duration,
    ) -> Result<Vec<Aggregate>, SeriesError> {
        self.query_step(key, from, to, step)
    }

    fn raw_kept(&self) -> Duration {
        self.lock().retention().raw
    }
}

/// The most series one rule judges: past it the rule fails and asks
/// for labels that narrow it (each series is a read of the store).
pub const MAX_MATCHED: usize = 200;

/// A sample, or a roll-up bucket's aggregates (NaN samples left out).
#[derive(Clone, Copy, Debug)]
struct Point {
    ts_ms: i64,
    last: f64,
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
}

impl Point {
    fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// The points of `key` within `window` before `now` (milliseconds).
fn points(
    read: &dyn SeriesRead,
    key: &SeriesKey,
    now: i64,
    window: Duration,
) -> Result<Vec<Point>, SeriesError> {
    let from = now.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    if window <= read.raw_kept() {
        return Ok(read
            .raw(key, from, now)?
            .into_iter()
            .filter(|s| !s.value.is_nan())
            .map(|s| Point {
                ts_ms: s.ts_ms,
                last: s.value,
                min: s.value,
                max: s.value,
                sum: s.value,
                count: 1,
            })
            .collect());
    }
    let step = if window <= Duration::from_hours(30 * 24) {
        Duration::from_mins(1)
    } else {
        Duration::from_hours(1)
    };
    Ok(read
        .step(key, from, now, step)?
        .into_iter()
        .filter(|a| a.count > 0)
        .map(|a| Point {
            ts_ms: a.ts_ms,
            last: a.last,
            min: a.min,
            max: a.max,
            sum: a.sum,
            count: a.count,
        })
        .collect())
}

/// One series judged: whether the rule holds on it (a failure), its
/// value and what to say.
struct Judged {
    failed: bool,
    value: Option<f64>,
    text: String,
}

/// Judge `rule` over what `read` holds at `now` (milliseconds).
pub fn judge(rule: &Rule, read: &dyn SeriesRead, now: i64) -> Outcome {
    match judge_inner(rule, read, now) {
        Ok(o) => o,
        Err(e) => Outcome::fail(format!("cannot read the series store: {e}")),
    }
}

fn judge_inner(rule: &Rule, read: &dyn SeriesRead, now: i64) -> Result<Outcome, SeriesError> {
    let sel = &rule.selector;
    let all = read.keys()?;
    let keys: Vec<&SeriesKey> = all
        .iter()
        .filter(|k| sel.matches(k.name(), k.labels()))
        .collect();
    if keys.len() > MAX_MATCHED {
        return Ok(Outcome::fail(format!(
            "{sel} matches {} series, more than the {MAX_MATCHED} a rule judges: add labels that narrow it",
            keys.len()
        )));
    }
    // A check's series before the check's first run match nothing and
    // are no error; once the check has run, matching nothing is a typo.
    let not_run_yet = sel.name.starts_with("vigie_check_") && !has_run(sel, &all);
    let window = rule.form.window().std();
    if let Form::Absent { for_ } = rule.form {
        let mut latest: Option<i64> = None;
        for key in &keys {
            if let Some(p) = points(read, key, now, window)?.last() {
                latest = latest.max(Some(p.ts_ms));
            }
        }
        return Ok(match latest {
            Some(ts) => Outcome::ok(format!(
                "{sel}: last sample {} ago",
                human_secs((now - ts).max(0) as f64 / 1000.0)
            ))
            .with_metric("value", (now - ts).max(0) as f64 / 1000.0),
            // A check's series before the check's first run (the loader
            // made sure the check exists).
            None if keys.is_empty() && not_run_yet => {
                Outcome::ok(format!("{sel}: no sample yet (has the check run?)"))
            }
            None if keys.is_empty() => Outcome::fail(format!("{sel}: never recorded (absent)")),
            None => Outcome::fail(format!("{sel}: no sample in the last {for_} (absent)")),
        });
    }
    if keys.is_empty() && not_run_yet {
        return Ok(Outcome::ok(format!(
            "{sel}: no sample yet (has the check run?)"
        )));
    }
    if keys.is_empty() {
        return Ok(no_series(sel, &all));
    }
    let mut judged = Vec::new();
    let mut silent = 0;
    for key in &keys {
        let pts = points(read, key, now, window)?;
        match judge_one(rule, key, &pts, now) {
            Some(j) => judged.push(j),
            None => silent += 1,
        }
    }
    Ok(combine(rule, &judged, silent, keys.len()))
}

/// Whether the check(s) `sel` names have recorded a run: every run
/// writes `vigie_check_up{check}`.
fn has_run(sel: &Selector, all: &[SeriesKey]) -> bool {
    let checks: Vec<&(String, String)> = sel.labels.iter().filter(|(k, _)| k == "check").collect();
    all.iter().any(|k| {
        k.name() == "vigie_check_up" && checks.iter().all(|want| k.labels().contains(want))
    })
}

/// No series matches: a typo (a name or a label value the store does
/// not have).
fn no_series(sel: &Selector, all: &[SeriesKey]) -> Outcome {
    let named: Vec<&SeriesKey> = all.iter().filter(|k| k.name() == sel.name).collect();
    let hint = if named.is_empty() {
        let mut names: Vec<&str> = all.iter().map(SeriesKey::name).collect();
        names.dedup();
        vigie_config::did_you_mean(&sel.name, names)
            .map_or_else(String::new, |m| format!("; did you mean `{m}`?"))
    } else {
        let shown: Vec<String> = named.iter().take(3).map(ToString::to_string).collect();
        format!(
            "; the store has {} series of that name, e.g. {}",
            named.len(),
            shown.join(", ")
        )
    };
    Outcome::fail(format!(
        "no series matches {sel}{hint} (`/api/v1/series` lists them)"
    ))
}

fn combine(rule: &Rule, judged: &[Judged], silent: usize, matched: usize) -> Outcome {
    let sel = &rule.selector;
    let upward = match rule.form {
        Form::Threshold { cmp, .. } | Form::Increase { cmp, .. } => cmp.upward(),
        // The shortest time left is the worst.
        Form::Predict { .. } | Form::Absent { .. } => false,
    };
    let worst = judged
        .iter()
        .filter_map(|j| j.value.filter(|v| v.is_finite()))
        .reduce(|a, b| if upward == (b > a) { b } else { a });
    if judged.is_empty() {
        let window = rule.form.window();
        return Outcome::ok(format!(
            "{sel}: not enough samples in the last {window} to judge (absent(…) alerts on silence)"
        ));
    }
    let failing: Vec<&Judged> = judged.iter().filter(|j| j.failed).collect();
    let quiet = if silent > 0 {
        format!(" ({silent} without samples)")
    } else {
        String::new()
    };
    let message = if matched == 1 {
        judged[0].text.clone()
    } else if failing.is_empty() {
        let w = judged
            .iter()
            .find(|j| j.value == worst)
            .unwrap_or(&judged[0]);
        format!(
            "{} series, all pass{quiet}; worst: {}",
            judged.len(),
            w.text
        )
    } else {
        let shown: Vec<&str> = failing.iter().take(3).map(|j| j.text.as_str()).collect();
        let more = failing.len().saturating_sub(3);
        format!(
            "{} of {} series fail{quiet}: {}{}",
            failing.len(),
            judged.len(),
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        )
    };
    let outcome = if failing.is_empty() {
        Outcome::ok(message)
    } else {
        Outcome::fail(message)
    };
    match worst {
        Some(v) => outcome.with_metric("value", v),
        None => outcome,
    }
}

/// Judge one series; `None` when it has too few samples.
fn judge_one(rule: &Rule, key: &SeriesKey, pts: &[Point], now: i64) -> Option<Judged> {
    let name = key.to_string();
    let unit = Unit::of(key.name());
    match rule.form {
        Form::Threshold { reduce, cmp, bound } => {
            let (value, what) = reduced(reduce, pts)?;
            let text = format!("{name}: {what}{}", unit.show(value));
            let failed = cmp.holds(value, bound);
            Some(Judged::new(
                failed,
                Some(value),
                text,
                cmp,
                &unit.show(bound),
            ))
        }
        Form::Increase {
            window,
            cmp,
            bound,
            percent,
        } => growth(&name, unit, pts, window, (cmp, bound, percent)),
        Form::Predict {
            target,
            cmp,
            within,
            ..
        } => {
            let (now_value, slope) = fit(pts, now)?;
            let gap = target - now_value;
            // The fitted line crossed the target within the window:
            // reached already.
            let start = pts.first().map_or(now_value, |p| {
                now_value + slope * (p.ts_ms - now) as f64 / 1000.0
            });
            let crossed = (start - target) * (now_value - target) < 0.0;
            let left = if gap == 0.0 || crossed {
                Some(0.0)
            } else if slope != 0.0 && gap / slope >= 0.0 {
                Some(gap / slope)
            } else {
                None
            };
            let rate = format!("{}/h", unit.show(slope * 3600.0));
            let target_shown = unit.show(target);
            Some(match left {
                Some(secs) => {
                    let failed = cmp.holds(secs, within.std().as_secs_f64());
                    let text = format!(
                        "{name} reaches {target_shown} in {} at the current rate ({rate})",
                        human_secs(secs)
                    );
                    Judged::new(failed, Some(secs), text, cmp, &within.to_string())
                }
                None => Judged {
                    failed: false,
                    value: None,
                    text: format!(
                        "{name} is not heading for {target_shown} ({}, {rate})",
                        unit.show(now_value)
                    ),
                },
            })
        }
        Form::Absent { .. } => None,
    }
}

impl Judged {
    /// `text`, and when it failed the bound it crossed.
    fn new(failed: bool, value: Option<f64>, text: String, cmp: Cmp, bound: &str) -> Self {
        let text = if failed {
            format!("{text}, {} {bound}", cmp.words())
        } else {
            text
        };
        Self {
            failed,
            value,
            text,
        }
    }
}

/// The latest value, or a window's mean, minimum or maximum, and how
/// the message calls it.
fn reduced(reduce: Reduce, pts: &[Point]) -> Option<(f64, String)> {
    Some(match reduce {
        Reduce::Last => (pts.last()?.last, String::new()),
        Reduce::Avg(w) => {
            let (sum, count) = pts
                .iter()
                .fold((0.0, 0), |(s, c), p| (s + p.sum, c + p.count));
            if count == 0 {
                return None;
            }
            (sum / count as f64, format!("average over {w} "))
        }
        Reduce::Min(w) => (
            pts.iter().map(|p| p.min).reduce(f64::min)?,
            format!("minimum over {w} "),
        ),
        Reduce::Max(w) => (
            pts.iter().map(|p| p.max).reduce(f64::max)?,
            format!("maximum over {w} "),
        ),
    })
}

/// `increase`: how much the series grew over the window, by an amount
/// or (`percent`) relative to its first value there.
fn growth(
    name: &str,
    unit: Unit,
    pts: &[Point],
    window: vigie_core::Duration,
    (cmp, bound, percent): (Cmp, f64, bool),
) -> Option<Judged> {
    let counter = name
        .split('{')
        .next()
        .is_some_and(|n| n.ends_with("_total"));
    let inc = increase(pts, counter)?;
    let first = pts.first()?;
    let last = pts.last()?;
    let span = (last.ts_ms - first.ts_ms) as f64 / 1000.0;
    let over = if span < 0.9 * window.std().as_secs_f64() {
        format!("{} (the samples since)", human_secs(span))
    } else {
        window.to_string()
    };
    let base = first.last;
    let (value, shown, bound_shown) = if percent {
        let pct = if base == 0.0 {
            if inc > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            inc / base.abs() * 100.0
        };
        (pct, format!("{}%", num(pct)), format!("{}%", num(bound)))
    } else {
        (inc, unit.show(inc), unit.show(bound))
    };
    let verb = if inc < 0.0 { "shrank" } else { "grew" };
    let shown = shown.trim_start_matches('-');
    let text = if counter {
        format!("{name} grew {shown} in {over} (+{})", unit.show(inc))
    } else {
        format!(
            "{name} {verb} {shown} in {over} ({} → {})",
            unit.show(base),
            unit.show(last.last)
        )
    };
    let failed = cmp.holds(value, bound);
    Some(Judged::new(failed, Some(value), text, cmp, &bound_shown))
}

/// How much the values grew from the first point to the last: the
/// difference for a gauge; for a counter, the sum of its rises, a drop
/// being a reset to zero (the new value is what it counted since).
fn increase(pts: &[Point], counter: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    if !counter {
        return Some(pts[pts.len() - 1].last - pts[0].last);
    }
    Some(
        pts.windows(2)
            .map(|w| {
                let (a, b) = (w[0].last, w[1].last);
                if b >= a { b - a } else { b }
            })
            .sum(),
    )
}

/// The least-squares line through the points' means: its value at
/// `now` and its slope per second. `None` under two distinct times.
fn fit(pts: &[Point], now: i64) -> Option<(f64, f64)> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    // Seconds from now: small numbers keep the sums exact enough.
    let xs: Vec<f64> = pts
        .iter()
        .map(|p| (p.ts_ms - now) as f64 / 1000.0)
        .collect();
    let ys: Vec<f64> = pts.iter().map(Point::mean).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

/// How a series' values read, from its name's unit suffix.
#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Seconds,
    Plain,
}

impl Unit {
    fn of(name: &str) -> Self {
        let base = name.trim_end_matches("_total");
        if base.ends_with("_bytes") {
            Self::Bytes
        } else if base.ends_with("_seconds") {
            Self::Seconds
        } else {
            Self::Plain
        }
    }

    fn show(self, v: f64) -> String {
        let sign = if v < 0.0 { "-" } else { "" };
        match self {
            Self::Bytes => format!("{sign}{}", HumanBytes(v.abs())),
            Self::Seconds if v.abs() < 1.0 => format!("{sign}{}ms", num(v.abs() * 1000.0)),
            Self::Seconds => format!("{sign}{}", human_secs(v.abs())),
            Self::Plain => num(v),
        }
    }
}

/// A number for people: three decimals at most, no trailing zeros.
fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "∞".into() } else { "-∞".into() };
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// "9h12m", "3d4h", "45s": a span for people, its two largest units.
fn human_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s > 0 => format!("{m}m{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_store::series::Retention;

    const H: i64 = 3_600_000;
    const NOW: i64 = 1_800_000_000_000;

    /// A series to feed: its name, labels and samples.
    type Fed<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<(i64, f64)>);

    /// A real store in a temporary directory, fed `series`.
    fn store(series: &[Fed<'_>]) -> (tempfile::TempDir, SeriesStore) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for (name, labels, samples) in series {
            let key = SeriesKey::new(name, labels.iter().copied()).unwrap();
            for &(ts, v) in samples {
                s.append(&key, ts, v).unwrap();
            }
        }
        (dir, s)
    }

    fn rule(s: &str) -> Rule {
        s.parse().unwrap()
    }

    /// Every 10 minutes over the last `hours`, `f(hours before now)`.
    fn every_10m(hours: i64, f: impl Fn(f64) -> f64) -> Vec<(i64, f64)> {
        (0..=hours * 6)
            .rev()
            .map(|i| (NOW - i * H / 6, f(i as f64 / 6.0)))
            .collect()
    }

    #[test]
    fn linear_fit_on_known_data() {
        // y = 100 - 2x per second, plus a wobble (1, -2, 0, 2, -1) of
        // zero mean and uncorrelated with x: the fit finds the line.
        let pts: Vec<Point> = [
            (-40.0, 181.0),
            (-30.0, 158.0),
            (-20.0, 140.0),
            (-10.0, 122.0),
            (0.0, 99.0),
        ]
        .iter()
        .map(|&(x, y): &(f64, f64)| Point {
            ts_ms: NOW + (x * 1000.0) as i64,
            last: y,
            min: y,
            max: y,
            sum: y,
            count: 1,
        })
        .collect();
        let (a, b) = fit(&pts, NOW).unwrap();
        assert!((b - -2.0).abs() < 1e-9, "slope {b}");
        assert!((a - 100.0).abs() < 1e-9, "intercept {a}");
        assert!(fit(&pts[..1], NOW).is_none(), "one point has no slope");
    }

    #[test]
    fn predict_fails_once_the_target_is_crossed_within_the_window() {
        // Used 0.80 six hours ago, 0.95 now: 0.9 is behind it.
        let used = every_10m(6, |h| 0.95 - h * 0.025);
        let (_d, s) = store(&[("used_ratio", &[], used)]);
        let o = judge(&rule("predict(used_ratio, 6h, 0.9) < 24h"), &s, NOW);
        assert!(!o.ok, "{o:?}");
        assert!(o.message.contains("reaches 0.9 in 0s"), "{o:?}");
        // Below it and rising: not yet.
        let used = every_10m(6, |h| 0.85 - h * 0.01);
        let (_d, s) = store(&[("used_ratio", &[], used)]);
        let o = judge(&rule("predict(used_ratio, 6h, 0.9) < 1h"), &s, NOW);
        assert!(o.ok, "{o:?}");
    }

    #[test]
    fn a_checks_series_that_matches_nothing_is_ok_before_its_first_run_only() {
        let rule_ = rule(r#"vigie_check_value{check="disk",name="used_ratoi"} > 0.9"#);
        let (_d, s) = store(&[]);
        assert!(judge(&rule_, &s, NOW).ok, "before the check's first run");
        let (_d, s) = store(&[
            (
                "vigie_check_up",
                &[("check", "disk")],
                vec![(NOW - 1000, 1.0)],
            ),
            (
                "vigie_check_value",
                &[("check", "disk"), ("name", "used_ratio")],
                vec![(NOW - 1000, 0.5)],
            ),
        ]);
        let o = judge(&rule_, &s, NOW);
        assert!(!o.ok && o.message.starts_with("no series matches"), "{o:?}");
        let o = judge(
            &rule(r#"absent(vigie_check_value{check="disk",name="used_ratoi"}, 10m)"#),
            &s,
            NOW,
        );
        assert!(!o.ok, "a typo is absent once the check ran: {o:?}");
    }

    #[test]
    fn a_selector_matching_too_many_series_is_refused() {
        let fed: Vec<(String, Vec<(i64, f64)>)> = (0..=MAX_MATCHED)
            .map(|i| (i.to_string(), vec![(NOW - 1000, 1.0)]))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for (i, samples) in &fed {
            let key = SeriesKey::new("node_x", [("i", i.as_str())]).unwrap();
            for &(ts, v) in samples {
                s.append(&key, ts, v).unwrap();
            }
        }
        let o = judge(&rule("node_x > 2"), &s, NOW);
        assert!(
            !o.ok && o.message.contains("add labels that narrow it"),
            "{o:?}"
        );
        assert!(judge(&rule(r#"node_x{i="7"} > 2"#), &s, NOW).ok);
    }

    #[test]
    fn predict_says_when_the_disk_fills() {
        // 10 GB free, losing 1 GB an hour: empty in 10 h.
        let free = every_10m(6, |h| (10.0 + h) * 1e9);
        let (_d, s) = store(&[("node_filesystem_avail_bytes", &[("mountpoint", "/")], free)]);
        let o = judge(
            &rule(r#"predict(node_filesystem_avail_bytes{mountpoint="/"}, 6h, 0) < 24h"#),
            &s,
            NOW,
        );
        assert!(!o.ok, "{o:?}");
        assert_eq!(
            o.message,
            "node_filesystem_avail_bytes{mountpoint=\"/\"} reaches 0 B in 10h at the current rate (-1.0 GB/h), below 1d"
        );
        assert!((o.metric("value").unwrap() - 36_000.0).abs() < 1.0);
        let o = judge(
            &rule(r#"predict(node_filesystem_avail_bytes{mountpoint="/"}, 6h, 0) < 8h"#),
            &s,
            NOW,
        );
        assert!(o.ok, "{o:?}");
        // Filling up instead: never empty.
        let (_d, s) = store(&[(
            "node_filesystem_avail_bytes",
            &[],
            every_10m(6, |h| (10.0 - h) * 1e9),
        )]);
        let o = judge(
            &rule("predict(node_filesystem_avail_bytes, 6h, 0) < 24h"),
            &s,
            NOW,
        );
        assert!(o.ok && o.message.contains("not heading for 0 B"), "{o:?}");
        assert_eq!(o.metric("value"), None);
    }

    #[test]
    fn increase_of_a_gauge_relative_and_absolute() {
        // 3 GB → 5.7 GB over 4 hours: +90 %.
        let used = every_10m(5, |h| {
            if h > 4.0 {
                3e9
            } else {
                3e9 + (4.0 - h) * 0.675e9
            }
        });
        let (_d, s) = store(&[("node_filesystem_used_bytes", &[("mountpoint", "/")], used)]);
        let r = rule(r#"increase(node_filesystem_used_bytes{mountpoint="/"}, 4h) > 70%"#);
        let o = judge(&r, &s, NOW);
        assert!(!o.ok, "{o:?}");
        assert_eq!(
            o.message,
            "node_filesystem_used_bytes{mountpoint=\"/\"} grew 90% in 4h (3.0 GB → 5.7 GB), above 70%"
        );
        assert!((o.metric("value").unwrap() - 90.0).abs() < 1e-6);
        let o = judge(
            &rule("increase(node_filesystem_used_bytes, 4h) > 3GB"),
            &s,
            NOW,
        );
        assert!(o.ok, "2.7 GB is not above 3 GB: {o:?}");
        assert!(o.message.contains("grew 2.7 GB in 4h"), "{o:?}");
        // A gauge that goes down shrank: not an increase.
        let (_d, s) = store(&[("g", &[], every_10m(4, |h| h))]);
        let o = judge(&rule("increase(g, 4h) > 0"), &s, NOW);
        assert!(
            o.ok && o.message.contains("shrank 4 in 4h (4 → 0)"),
            "{o:?}"
        );
        assert_eq!(o.metric("value"), Some(-4.0));
    }

    #[test]
    fn increase_of_a_counter_counts_across_a_reset() {
        // 100 → 160, reset to 0, → 50: it counted 60 + 50 = 110.
        let samples = vec![
            (NOW - 3 * H, 100.0),
            (NOW - 2 * H, 160.0),
            (NOW - H, 0.0),
            (NOW, 50.0),
        ];
        let (_d, s) = store(&[
            ("requests_total", &[], samples.clone()),
            ("requests", &[], samples),
        ]);
        let o = judge(&rule("increase(requests_total, 4h) > 100"), &s, NOW);
        assert!(!o.ok, "{o:?}");
        assert_eq!(o.metric("value"), Some(110.0));
        // The same values as a gauge went down by 50.
        let o = judge(&rule("increase(requests, 4h) > 100"), &s, NOW);
        assert!(o.ok, "{o:?}");
        assert_eq!(o.metric("value"), Some(-50.0));
    }

    #[test]
    fn absent_fails_on_silence_and_on_a_series_never_seen() {
        let (_d, s) = store(&[("backup_bytes", &[("job", "db")], vec![(NOW - 2 * H, 1.0)])]);
        let o = judge(&rule(r#"absent(backup_bytes{job="db"}, 1h)"#), &s, NOW);
        assert!(!o.ok);
        assert_eq!(
            o.message,
            "backup_bytes{job=\"db\"}: no sample in the last 1h (absent)"
        );
        let o = judge(&rule(r#"absent(backup_bytes{job="db"}, 3h)"#), &s, NOW);
        assert!(o.ok, "{o:?}");
        assert_eq!(o.message, "backup_bytes{job=\"db\"}: last sample 2h ago");
        let o = judge(&rule(r#"absent(backup_bytes{job="www"}, 3h)"#), &s, NOW);
        assert!(!o.ok && o.message.contains("never recorded"), "{o:?}");
        // A check's series before its first run.
        let o = judge(&rule(r#"absent(vigie_check_up{check="new"}, 1m)"#), &s, NOW);
        assert!(o.ok && o.message.contains("no sample yet"), "{o:?}");
    }

    #[test]
    fn a_selector_over_several_series_fails_when_one_does() {
        let (_d, s) = store(&[
            ("node_load1", &[("cpu", "a")], vec![(NOW - 1000, 1.0)]),
            ("node_load1", &[("cpu", "b")], vec![(NOW - 1000, 5.0)]),
            ("node_load1", &[("cpu", "c")], vec![(NOW - 1000, 0.5)]),
        ]);
        let o = judge(&rule("node_load1 > 2"), &s, NOW);
        assert!(!o.ok);
        assert_eq!(
            o.message,
            "1 of 3 series fail: node_load1{cpu=\"b\"}: 5, above 2"
        );
        assert_eq!(o.metric("value"), Some(5.0), "the worst");
        let o = judge(&rule("node_load1 > 10"), &s, NOW);
        assert!(o.ok);
        assert_eq!(
            o.message,
            "3 series, all pass; worst: node_load1{cpu=\"b\"}: 5"
        );
        let o = judge(&rule("node_load1 < 0.8"), &s, NOW);
        assert_eq!(o.metric("value"), Some(0.5), "the worst is the lowest");
        // A label that names one judges that one only.
        let o = judge(&rule(r#"node_load1{cpu="a"} > 2"#), &s, NOW);
        assert!(o.ok);
        assert_eq!(o.message, "node_load1{cpu=\"a\"}: 1");
    }

    #[test]
    fn windows_reduce_and_stale_or_missing_series_are_said() {
        let (_d, s) = store(&[("x", &[], every_10m(2, |h| h * 10.0))]);
        let o = judge(&rule("avg(x, 1h) > 1"), &s, NOW);
        assert_eq!(o.metric("value"), Some(5.0), "{o:?}");
        assert_eq!(
            judge(&rule("max(x, 1h) > 1"), &s, NOW).metric("value"),
            Some(10.0)
        );
        assert_eq!(
            judge(&rule("min(x, 2h) > 1"), &s, NOW).metric("value"),
            Some(0.0)
        );
        // Nothing within the hour the latest value looks back.
        let o = judge(&rule("x > 1"), &s, NOW + 2 * H);
        assert!(o.ok && o.message.contains("not enough samples"), "{o:?}");
        // A typo in the name fails, with the name it probably meant.
        let o = judge(&rule("xx > 1"), &s, NOW);
        assert!(!o.ok);
        assert!(o.message.contains("did you mean `x`"), "{o:?}");
        let o = judge(&rule(r#"x{a="b"} > 1"#), &s, NOW);
        assert!(
            !o.ok
                && o.message
                    .contains("the store has 1 series of that name, e.g. x"),
            "{o:?}"
        );
        // A check's series before the check's first run.
        assert!(judge(&rule(r#"vigie_check_value{check="web"} > 1"#), &s, NOW).ok);
    }

    #[test]
    fn long_windows_read_the_roll_ups() {
        // Three days, past the raw retention of a short-lived store.
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            raw: Duration::from_hours(1),
            ..Retention::default()
        };
        let mut s = SeriesStore::open(dir.path(), retention).unwrap();
        let key = SeriesKey::new("x", [("a", "b")]).unwrap();
        for (ts, v) in every_10m(72, |h| 1000.0 - h) {
            s.append(&key, ts, v).unwrap();
        }
        s.flush().unwrap();
        let o = judge(&rule("increase(x, 3d) > 50"), &s, NOW);
        assert!(!o.ok, "{o:?}");
        let v = o.metric("value").unwrap();
        assert!((v - 72.0).abs() < 1.0, "{v}");
    }
}
