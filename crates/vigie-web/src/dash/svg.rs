//! Graphs drawn on the server as inline SVG (styled by the page's CSS,
//! so the Content-Security-Policy needs nothing more): a check's last
//! runs as a sparkline, and its history over a range.

use std::fmt::Write as _;

use vigie_core::Timestamp;
use vigie_store::{Bucket, Mark};

use super::html::{esc, when};

const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 24.0;

/// The last runs as bars, written into `out`: a failed run full height
/// in the failing colour, a good one as high as its duration against the
/// slowest. A row of the overview carries one, a thousand rows a
/// thousand: so each is small — a path per colour, a bar a vertical
/// stroke of it (`M x 24 V y`), whole numbers, the size in the CSS. Its
/// label is said twice: as `aria-label`, the name Chromium gives a
/// screen reader even for a row not yet laid out (it reads no `<title>`
/// there), and as `<title>`, what a pointer shows.
pub(crate) fn sparkline(out: &mut String, marks: &[Mark], slots: usize) {
    let failed = marks.iter().filter(|m| !m.ok).count();
    let slot = SPARK_W / slots.max(1) as f64;
    let bar = (slot - 1.0).max(1.0);
    let label = Label {
        runs: marks.len(),
        failed,
    };
    // The view starts half a bar left of 0, so that the middle of the
    // first slot's bar, where its stroke runs, is at x = 0.
    let _ = write!(
        out,
        "<svg class=\"spark\" viewBox=\"{} 0 {SPARK_W} {SPARK_H}\" stroke-width=\"{}\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>",
        Num(-bar / 2.0),
        Num(bar),
    );
    let slowest = marks.iter().map(|m| m.duration_ms).fold(0.0_f64, f64::max);
    // Right-aligned: the newest run at the right edge.
    let first = slots.saturating_sub(marks.len());
    for (class, ok) in [("ok", true), ("fail", false)] {
        if !marks.iter().any(|m| m.ok == ok) {
            continue;
        }
        let _ = write!(out, "<path class=\"{class}\" d=\"");
        for (i, m) in marks.iter().enumerate().filter(|(_, m)| m.ok == ok) {
            let h = if !m.ok || slowest <= 0.0 {
                SPARK_H
            } else {
                (m.duration_ms / slowest * SPARK_H)
                    .round()
                    .clamp(3.0, SPARK_H)
            };
            let _ = write!(
                out,
                "M{} {SPARK_H}V{}",
                Num((first + i) as f64 * slot),
                Num(SPARK_H - h)
            );
        }
        out.push_str("\"/>");
    }
    out.push_str("</svg>");
}

/// What a sparkline shows, in words.
struct Label {
    runs: usize,
    failed: usize,
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.runs == 0 {
            return f.write_str("no runs recorded yet");
        }
        write!(
            f,
            "last {} runs: {} passed, {} failed",
            self.runs,
            self.runs - self.failed,
            self.failed
        )
    }
}

/// A coordinate with one decimal at most, none when it is whole: `4`,
/// `1.5`.
struct Num(f64);

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0 * 10.0).round();
        if tenths % 10.0 == 0.0 {
            write!(f, "{}", tenths / 10.0)
        } else {
            write!(f, "{:.1}", tenths / 10.0)
        }
    }
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;

/// A check's runs over `[from, to)`: the mean and the slowest duration
/// of each bucket as lines, a bucket with failures as a band whose
/// strength is the share that failed; axes in milliseconds and time.
pub(crate) fn history(buckets: &[Bucket], from: Timestamp, to: Timestamp, width_ms: i64) -> String {
    let runs: u64 = buckets.iter().map(|b| b.runs).sum();
    let failures: u64 = buckets.iter().map(|b| b.failures).sum();
    let top = buckets.iter().map(|b| b.max_ms).fold(0.0_f64, f64::max);
    let scale = nice_ceiling(top);
    let label = if runs == 0 {
        "no runs in this range".to_owned()
    } else {
        format!(
            "{runs} runs, {failures} failed; duration up to {} ms",
            fmt_ms(top)
        )
    };
    let span = (to.0 - from.0).max(1) as f64;
    let x_of = |t: i64| LEFT + (t - from.0) as f64 / span * (W - LEFT);
    let y_of = |ms: f64| TOP + (1.0 - ms / scale) * (H - TOP - BOTTOM);
    let mut s = format!(
        "<svg class=\"history\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>"
    );
    // Failure bands first, under the lines.
    for b in buckets.iter().filter(|b| b.failures > 0) {
        let share = b.failures as f64 / b.runs.max(1) as f64;
        let x = x_of(b.start.0);
        let w = (x_of(b.start.0 + width_ms) - x).max(1.0);
        let _ = write!(
            s,
            "<rect class=\"band\" x=\"{x:.1}\" y=\"{TOP}\" width=\"{w:.1}\" height=\"{:.1}\" fill-opacity=\"{:.2}\"><title>{} of {} runs failed from {}</title></rect>",
            H - TOP - BOTTOM,
            0.25 + 0.6 * share,
            b.failures,
            b.runs,
            esc(&when(b.start)),
        );
    }
    // Axes and their labels.
    for frac in [0.0, 0.5, 1.0] {
        let y = y_of(scale * frac);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} ms</text>",
            LEFT - 4.0,
            y + 4.0,
            fmt_ms(scale * frac)
        );
    }
    for (frac, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let t = Timestamp(from.0 + (span * frac) as i64);
        let _ = write!(
            s,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x_of(t.0),
            H - 6.0,
            esc(&when(t)),
        );
    }
    for (class, value) in [
        ("max", (|b: &Bucket| b.max_ms) as fn(&Bucket) -> f64),
        ("mean", |b: &Bucket| b.mean_ms),
    ] {
        if buckets.is_empty() {
            break;
        }
        let _ = write!(s, "<polyline class=\"{class}\" points=\"");
        for b in buckets {
            let x = x_of(b.start.0 + width_ms / 2);
            let _ = write!(s, "{x:.1},{:.1} ", y_of(value(b)));
        }
        s.push_str("\"/>");
    }
    s.push_str("</svg>");
    s
}

/// One line of a [`lines`] chart: its name (in the legend and the
/// title) and its points (milliseconds, value), in time order.
pub(crate) struct Line {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

/// Lines over `[from, to)` on one axis in `unit` (`%`, `B/s`, or empty):
/// a host's CPU, memory, disks, network or load. Gaps (no point for more
/// than three steps of `step_ms`) break a line.
pub(crate) fn lines(
    title: &str,
    unit: &str,
    lines: &[Line],
    from: Timestamp,
    to: Timestamp,
    step_ms: i64,
) -> String {
    let top = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if unit == "%" {
        100.0
    } else {
        nice_ceiling(top)
    };
    let label = if lines.iter().all(|l| l.points.is_empty()) {
        format!("{title}: no samples in this range")
    } else {
        let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        format!(
            "{title} ({}), up to {} {unit}",
            names.join(", "),
            fmt_value(top)
        )
    };
    let span = (to.0 - from.0).max(1) as f64;
    let x_of = |t: i64| LEFT + (t - from.0) as f64 / span * (W - LEFT);
    let y_of = |v: f64| TOP + (1.0 - (v / scale).clamp(0.0, 1.0)) * (H - TOP - BOTTOM);
    let mut s = format!(
        "<svg class=\"history series\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{l}\"><title>{l}</title>",
        l = esc(&label)
    );
    for frac in [0.0, 0.5, 1.0] {
        let y = y_of(scale * frac);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} {}</text>",
            LEFT - 4.0,
            y + 4.0,
            fmt_value(scale * frac),
            esc(unit),
        );
    }
    for (frac, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let t = Timestamp(from.0 + (span * frac) as i64);
        let _ = write!(
            s,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x_of(t.0),
            H - 6.0,
            esc(&when(t)),
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let close = format!("\"><title>{}</title></polyline>", esc(&line.name));
        let mut prev: Option<i64> = None;
        let mut open = false;
        for &(t, v) in &line.points {
            if !v.is_finite() {
                continue;
            }
            let gap = prev.is_some_and(|p| t - p > 3 * step_ms.max(1));
            if !open || gap {
                if open {
                    s.push_str(&close);
                }
                let _ = write!(s, "<polyline class=\"l{}\" points=\"", i % 4);
                open = true;
            }
            let _ = write!(s, "{:.1},{:.1} ", x_of(t), y_of(v));
            prev = Some(t);
        }
        if open {
            s.push_str(&close);
        }
    }
    s.push_str("</svg>");
    s
}

/// A value with a unit prefix: 1.5k, 12M, 3.2G.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    for (div, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if a >= div {
            return format!("{:.1}{suffix}", v / div);
        }
    }
    fmt_ms(v)
}

/// The smallest of 1, 2, 5 × 10^n at or above `v` (at least 1 ms).
fn nice_ceiling(v: f64) -> f64 {
    // NaN too.
    if v.partial_cmp(&1.0) != Some(std::cmp::Ordering::Greater) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_ms(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(ok: bool, ms: f64) -> Mark {
        Mark {
            at: Timestamp(0),
            ok,
            duration_ms: ms,
        }
    }

    #[test]
    fn a_sparkline_has_a_bar_per_run_failures_full_height() {
        let spark = |marks: &[Mark]| {
            let mut s = String::new();
            sparkline(&mut s, marks, 30);
            s
        };
        let s = spark(&[mark(true, 10.0), mark(false, 1.0), mark(true, 5.0)]);
        // A path per colour, a bar each run: 27, 28 and 29 of 30 slots
        // 4 wide.
        assert_eq!(s.matches("<path").count(), 2, "{s}");
        assert_eq!(s.matches('M').count(), 3, "{s}");
        assert!(
            s.contains("<path class=\"ok\" d=\"M108 24V0M116 24V12\"/>"),
            "the slowest full height, the other half: {s}"
        );
        assert!(s.contains("<path class=\"fail\" d=\"M112 24V0\"/>"), "{s}");
        assert!(
            s.contains(
                "role=\"img\" aria-label=\"last 3 runs: 2 passed, 1 failed\"><title>last 3 runs: 2 passed, 1 failed</title>"
            ),
            "{s}"
        );
        assert!(
            s.starts_with("<svg class=\"spark\" viewBox=\"-1.5 0 120 24\" stroke-width=\"3\""),
            "{s}"
        );
        assert!(spark(&[]).ends_with("<title>no runs recorded yet</title></svg>"));
        // Thirty runs in little more than the text that says so.
        let thirty: Vec<Mark> = (0..30).map(|i| mark(i % 7 != 0, f64::from(i))).collect();
        let s = spark(&thirty);
        assert_eq!(s.matches('M').count(), 30, "{s}");
        assert!(s.len() < 520, "{} bytes: {s}", s.len());
        assert_eq!(Num(-1.5).to_string(), "-1.5");
        assert_eq!(Num(4.0).to_string(), "4");
        assert_eq!(Num(0.04).to_string(), "0");
    }

    #[test]
    fn lines_break_at_gaps_and_say_what_they_show() {
        let l = Line {
            name: "eth0 in".into(),
            points: vec![(0, 1.0), (10, 2000.0), (20, f64::NAN), (100, 3.0)],
        };
        let s = lines("Network", "B/s", &[l], Timestamp(0), Timestamp(100), 10);
        assert!(s.contains("Network (eth0 in), up to 2.0k B/s"), "{s}");
        // Two runs of points: before and after the gap of 90 ms.
        assert_eq!(s.matches(" points=").count(), 2, "{s}");
        assert!(s.contains(">2.0k B/s<"), "the axis tops at 2000: {s}");
        let empty = lines("Load", "", &[], Timestamp(0), Timestamp(10), 1);
        assert!(empty.contains("Load: no samples in this range"), "{empty}");
    }

    #[test]
    fn a_history_draws_lines_bands_and_scales_to_a_round_number() {
        let b = |start: i64, failures: u64, mean: f64, max: f64| Bucket {
            start: Timestamp(start),
            runs: 10,
            failures,
            mean_ms: mean,
            max_ms: max,
        };
        let s = history(
            &[b(0, 0, 10.0, 20.0), b(1000, 5, 30.0, 130.0)],
            Timestamp(0),
            Timestamp(2000),
            1000,
        );
        assert!(
            s.contains("20 runs, 5 failed; duration up to 130 ms"),
            "{s}"
        );
        assert!(s.contains(">200 ms<"), "the axis tops at 200: {s}");
        assert_eq!(s.matches("class=\"band\"").count(), 1);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(history(&[], Timestamp(0), Timestamp(10), 1).contains("no runs in this range"));
        let ceiling = |v: f64| nice_ceiling(v).to_string();
        assert_eq!(ceiling(0.0), "1");
        assert_eq!(ceiling(f64::NAN), "1");
        assert_eq!(ceiling(3.2), "5");
        assert_eq!(ceiling(1000.0), "1000");
    }
}
