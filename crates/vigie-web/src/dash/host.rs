//! The host page's charts, read from the series the daemon keeps of
//! node_exporter's metrics: CPU busy (from the idle counters' rate),
//! memory used (`MemAvailable` against `MemTotal`), each filesystem's
//! use, the network's bytes per second, and the load averages.

use std::collections::BTreeMap;
use std::time::Duration;

use vigie_core::Timestamp;
use vigie_engine::series::Series;
use vigie_store::series::{Aggregate, SeriesKey};

use super::svg::{self, Line};

/// Filesystems and network devices drawn, at most.
const MAX_LINES: usize = 4;

/// Each chart (SVG) and its caption.
pub(crate) fn charts(
    series: &Series,
    from: Timestamp,
    to: Timestamp,
    step_ms: i64,
) -> Vec<(String, String)> {
    let keys = match series.list() {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "the host page cannot list the series");
            Vec::new()
        }
    };
    let step = Duration::from_millis(step_ms.unsigned_abs());
    let read = |key: &SeriesKey| -> Vec<Aggregate> {
        series
            .query_step(key, from.0, to.0, step)
            .map_err(|e| tracing::error!(series = %key, error = %e, "the host page cannot read a series"))
            .unwrap_or_default()
    };
    let named = |name: &'static str| keys.iter().filter(move |k| k.name() == name);
    let chart =
        |title: &str, unit: &str, lines: &[Line]| svg::lines(title, unit, lines, from, to, step_ms);
    let mut out = Vec::new();

    // CPU: 1 − the idle seconds per second, over the CPUs.
    let idle: Vec<Vec<(i64, f64)>> = named("node_cpu_seconds_total")
        .filter(|k| label(k, "mode") == Some("idle"))
        .map(|k| rate(&read(k)))
        .collect();
    let cpus = idle.len();
    let mut busy: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for points in &idle {
        for &(t, r) in points {
            let e = busy.entry(t).or_default();
            e.0 += r;
            e.1 += 1;
        }
    }
    let busy: Vec<(i64, f64)> = busy
        .into_iter()
        .filter(|(_, (_, n))| *n == cpus)
        .map(|(t, (idle, _))| (t, (100.0 * (1.0 - idle / cpus as f64)).clamp(0.0, 100.0)))
        .collect();
    out.push((
        chart("CPU busy", "%", &[line("busy", busy)]),
        format!("CPU: share of time not idle, over {cpus} CPUs."),
    ));

    // Memory: what is not available.
    let total = named("node_memory_MemTotal_bytes").next().map(&read);
    let avail = named("node_memory_MemAvailable_bytes").next().map(&read);
    let used = match (total, avail) {
        (Some(total), Some(avail)) => ratio_used(&total, &avail),
        _ => Vec::new(),
    };
    out.push((
        chart("Memory used", "%", &[line("used", used)]),
        "Memory: share not available (MemAvailable against MemTotal).".to_owned(),
    ));

    // Filesystems: used share of each, "/" first.
    let mut sizes: Vec<&SeriesKey> = named("node_filesystem_size_bytes").collect();
    sizes.sort_by_key(|k| {
        (
            label(k, "mountpoint") != Some("/"),
            label(k, "mountpoint").map(str::len),
        )
    });
    let mut disks = Vec::new();
    for size in sizes.into_iter().take(MAX_LINES) {
        let Ok(avail) = SeriesKey::new("node_filesystem_avail_bytes", size.labels().to_vec())
        else {
            continue;
        };
        let name = label(size, "mountpoint").unwrap_or("?").to_owned();
        disks.push(line(&name, ratio_used(&read(size), &read(&avail))));
    }
    out.push((
        chart("Disk used", "%", &disks),
        "Filesystems: share of each one's size not available to users.".to_owned(),
    ));

    // Network: bytes per second in and out of each device but loopback.
    let mut net = Vec::new();
    for rx in named("node_network_receive_bytes_total")
        .filter(|k| label(k, "device") != Some("lo"))
        .take(MAX_LINES / 2)
    {
        let dev = label(rx, "device").unwrap_or("?").to_owned();
        net.push(line(&format!("{dev} in"), rate(&read(rx))));
        if let Ok(tx) = SeriesKey::new("node_network_transmit_bytes_total", rx.labels().to_vec()) {
            net.push(line(&format!("{dev} out"), rate(&read(&tx))));
        }
    }
    out.push((
        chart("Network", "B/s", &net),
        "Network: bytes per second received and sent, by device.".to_owned(),
    ));

    // Load averages.
    let mut load = Vec::new();
    for name in ["node_load1", "node_load5", "node_load15"] {
        if let Some(k) = named(name).next() {
            let points = read(k).iter().map(|a| (a.ts_ms, a.mean())).collect();
            load.push(line(name.trim_start_matches("node_"), points));
        }
    }
    out.push((
        chart("Load", "", &load),
        "Load averages over 1, 5 and 15 minutes.".to_owned(),
    ));
    out
}

fn line(name: &str, points: Vec<(i64, f64)>) -> Line {
    Line {
        name: name.to_owned(),
        points,
    }
}

fn label<'a>(key: &'a SeriesKey, name: &str) -> Option<&'a str> {
    key.labels()
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A counter's rate per second between consecutive buckets (their last
/// values); a reset (a smaller value) starts over.
pub(crate) fn rate(points: &[Aggregate]) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let dt = (b.ts_ms - a.ts_ms) as f64 / 1000.0;
            let dv = b.last - a.last;
            (dt > 0.0 && dv >= 0.0).then(|| (b.ts_ms, dv / dt))
        })
        .collect()
}

/// 100 × (1 − available / total), bucket by bucket.
fn ratio_used(total: &[Aggregate], avail: &[Aggregate]) -> Vec<(i64, f64)> {
    let totals: BTreeMap<i64, f64> = total.iter().map(|a| (a.ts_ms, a.mean())).collect();
    avail
        .iter()
        .filter_map(|a| {
            let t = *totals.get(&a.ts_ms)?;
            (t > 0.0).then(|| (a.ts_ms, (100.0 * (1.0 - a.mean() / t)).clamp(0.0, 100.0)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(ts_ms: i64, last: f64) -> Aggregate {
        Aggregate {
            ts_ms,
            min: last,
            max: last,
            sum: last,
            count: 1,
            last,
        }
    }

    #[test]
    fn a_counters_rate_is_per_second_and_a_reset_is_skipped() {
        let r = rate(&[
            agg(0, 10.0),
            agg(2000, 30.0),
            agg(4000, 5.0),
            agg(6000, 9.0),
        ]);
        assert_eq!(r, vec![(2000, 10.0), (6000, 2.0)]);
        let used = ratio_used(
            &[agg(0, 200.0), agg(10, 0.0)],
            &[agg(0, 50.0), agg(10, 1.0)],
        );
        assert_eq!(used, vec![(0, 75.0)]);
    }
}
