//! Prometheus text exposition (format 0.0.4), the standard `process_*`
//! metrics, read from `/proc/self`, and the host's metrics under
//! node_exporter's names ([`host`]), returned as [`Sample`]s.

// Tests compare values that are whole numbers (or their products by
// 1024 or 512), exact in f64: `assert_eq!` says what differs.
#![cfg_attr(test, allow(clippy::float_cmp))]

pub mod host;
mod sample;

pub use host::HostCollector;
pub use sample::{Sample, Series};

use std::fmt::Write as _;

/// A Prometheus text exposition being written, or (made by
/// [`Exposition::collecting`]) the same samples kept as [`Series`], for a
/// remote write: one writer of the page serves both, so they never differ.
#[derive(Default, Debug)]
pub struct Exposition {
    out: String,
    series: Option<Vec<Series>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
    /// A value of unknown kind (node_exporter's `/proc/vmstat` fields).
    Untyped,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// An exposition that keeps each sample as a [`Series`] (labels
    /// sorted, the name as the page writes it: `_bucket`, `_sum` and
    /// `_count` of a histogram are series of their own) and writes no text.
    pub fn collecting() -> Self {
        Self {
            out: String::new(),
            series: Some(Vec::new()),
        }
    }

    /// The series kept by a collecting exposition (none otherwise).
    pub fn into_series(self) -> Vec<Series> {
        self.series.unwrap_or_default()
    }

    /// Start a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        if self.series.is_some() {
            return;
        }
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        };
        let _ = writeln!(
            self.out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_iter(name, labels.iter().copied(), value);
    }

    /// One sample line, its labels from an iterator.
    pub fn sample_iter<'a>(
        &mut self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
    ) {
        if let Some(series) = &mut self.series {
            let mut labels: Vec<(String, String)> = labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            labels.sort();
            series.push(Series {
                name: name.to_owned(),
                labels,
                value,
            });
            return;
        }
        self.out.push_str(name);
        let mut any = false;
        for (k, v) in labels {
            self.out.push(if any { ',' } else { '{' });
            any = true;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v);
            self.out.push('"');
        }
        if any {
            self.out.push('}');
        }
        self.out.push(' ');
        if value.is_nan() {
            self.out.push_str("NaN");
        } else if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the text format wants it: backslash, double quote
/// and line feed escaped.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Facts about this process, from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
}

/// Read this process's statistics; `None` where `/proc` is unreadable.
pub fn process_stats() -> Option<ProcessStats> {
    let stat = fs_err::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    // Field numbers of proc(5) minus 3 (pid, comm and state come first).
    let (utime, stime, threads, start, vsize, rss) =
        (num(11)?, num(12)?, num(17)?, num(19)?, num(20)?, num(21)?);
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let btime = fs_err::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    })?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: rss * page,
        virtual_bytes: vsize,
        start_time_seconds: btime as f64 + start as f64 / ticks,
        threads,
        open_fds,
    })
}

/// Append the standard `process_*` families.
pub fn write_process_metrics(e: &mut Exposition) {
    let Some(p) = process_stats() else { return };
    e.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
    );
    e.sample("process_cpu_seconds_total", &[], p.cpu_seconds);
    e.family(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
    );
    e.sample(
        "process_resident_memory_bytes",
        &[],
        p.resident_bytes as f64,
    );
    e.family(
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes.",
    );
    e.sample("process_virtual_memory_bytes", &[], p.virtual_bytes as f64);
    e.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
    );
    e.sample("process_start_time_seconds", &[], p.start_time_seconds);
    e.family(
        "process_threads",
        Kind::Gauge,
        "Number of OS threads in the process.",
    );
    e.sample("process_threads", &[], p.threads as f64);
    e.family(
        "process_open_fds",
        Kind::Gauge,
        "Number of open file descriptors.",
    );
    e.sample("process_open_fds", &[], p.open_fds as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut e = Exposition::new();
        e.family("vigie_check_up", Kind::Gauge, "1 when ok");
        e.sample("vigie_check_up", &[("check", "a\"b\\c\nd")], 1.0);
        e.sample("x", &[], f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP vigie_check_up 1 when ok\n# TYPE vigie_check_up gauge\nvigie_check_up{check=\"a\\\"b\\\\c\\nd\"} 1\nx +Inf\n"
        );
    }

    #[test]
    fn collecting_keeps_what_the_page_writes() {
        let write = |e: &mut Exposition| {
            e.family("h", Kind::Histogram, "H.");
            e.sample("h_bucket", &[("le", "1"), ("a", "x")], 2.0);
            e.sample("h_count", &[], 2.0);
        };
        let mut text = Exposition::new();
        write(&mut text);
        assert_eq!(text.into_series(), Vec::new());
        let mut e = Exposition::collecting();
        write(&mut e);
        let series = e.into_series();
        assert_eq!(
            series,
            vec![
                Series {
                    name: "h_bucket".into(),
                    labels: vec![("a".into(), "x".into()), ("le".into(), "1".into())],
                    value: 2.0,
                },
                Series {
                    name: "h_count".into(),
                    labels: Vec::new(),
                    value: 2.0,
                },
            ]
        );
    }

    #[test]
    fn reads_this_process() {
        let p = process_stats().expect("/proc is readable");
        assert!(p.resident_bytes > 0);
        assert!(p.threads >= 1);
        assert!(p.open_fds >= 3);
        assert!(p.start_time_seconds > 1.0e9);
    }
}
