//! The series store: what is appended comes back, raw and rolled up,
//! across closes, flushes and restarts; retention; bytes per sample.

use std::time::Duration;

use vigie_store::series::{Aggregate, Resolution, Retention, SeriesError, SeriesKey, SeriesStore};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2025-11-24 16:00 UTC, on a 10 s tick.
const T0: i64 = 1_764_000_000_000;

fn key(name: &str) -> SeriesKey {
    SeriesKey::new(name, [("instance", "web-1"), ("check", "blog")]).unwrap()
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// A latency-like series: every 10 s, a few ms late, 1 to 200 ms.
fn latencies(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = XorShift(seed);
    (0..n as i64)
        .map(|i| {
            let ts = T0 + i * 10_000 + rng.below(4);
            (ts, (1 + rng.below(200)) as f64 / 1000.0)
        })
        .collect()
}

/// Samples every `every_ms` from `T0 + offset`, a few ms late.
fn spaced(n: usize, every_ms: i64, offset: i64, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = XorShift(seed);
    (0..n as i64)
        .map(|i| {
            let ts = T0 + offset + i * every_ms + rng.below(4);
            (ts, (1 + rng.below(200)) as f64 / 1000.0)
        })
        .collect()
}

/// What `query_step` must give: the raw samples bucketed directly.
fn naive(samples: &[(i64, f64)], from: i64, to: i64, step: i64) -> Vec<Aggregate> {
    let mut out: Vec<Aggregate> = Vec::new();
    for &(ts, v) in samples.iter().filter(|(t, _)| (from..=to).contains(t)) {
        let b = ts.div_euclid(step) * step;
        match out.last_mut() {
            Some(a) if a.ts_ms == b => {
                a.min = a.min.min(v);
                a.max = a.max.max(v);
                a.sum += v;
                a.count += 1;
                a.last = v;
            }
            _ => out.push(Aggregate {
                ts_ms: b,
                min: v,
                max: v,
                sum: v,
                count: 1,
                last: v,
            }),
        }
    }
    out
}

fn assert_same(got: &[Aggregate], want: &[Aggregate], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: bucket count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.ts_ms, g.min, g.max, g.count, g.last),
            (w.ts_ms, w.min, w.max, w.count, w.last),
            "{what}"
        );
        assert!(
            (g.sum - w.sum).abs() <= 1e-9 * w.sum.abs().max(1.0),
            "{what}: sum {g:?} {w:?}"
        );
    }
}

#[test]
fn samples_come_back_across_chunk_closes_flushes_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = latencies(1000, 7);
    let k = key("check_latency_seconds");
    {
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for &(ts, v) in &data[..700] {
            s.append(&k, ts, v).unwrap();
        }
        let got = s.query(&k, i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), 700, "closed chunks and the open one");
        s.flush().unwrap();
    }
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    // The open chunk is continued, not duplicated, after the restart.
    for &(ts, v) in &data[700..] {
        s.append(&k, ts, v).unwrap();
    }
    let got = s.query(&k, i64::MIN, i64::MAX).unwrap();
    let got: Vec<(i64, f64)> = got.iter().map(|x| (x.ts_ms, x.value)).collect();
    assert_eq!(got, data);
    // A window.
    let (from, to) = (data[100].0, data[349].0);
    assert_eq!(s.query(&k, from, to).unwrap().len(), 250);
    // Label order does not make another series.
    let same = SeriesKey::new(
        "check_latency_seconds",
        [("check", "blog"), ("instance", "web-1")],
    )
    .unwrap();
    assert_eq!(s.query(&same, from, to).unwrap().len(), 250);
    assert_eq!(s.series().unwrap(), vec![k]);
}

#[test]
fn series_prepared_together_continue_where_they_were_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<SeriesKey> = (0..50).map(|i| key(&format!("s{i}"))).collect();
    let data = latencies(300, 11);
    {
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        // Known already, new, and a key twice: each numbered once.
        s.append(&keys[0], data[0].0, data[0].1).unwrap();
        s.prepare(keys.iter().chain([&keys[3]])).unwrap();
        assert_eq!(s.open_series(), 50);
        for (i, k) in keys.iter().enumerate() {
            let from = usize::from(i == 0);
            for &(ts, v) in &data[from..200] {
                s.append(k, ts, v).unwrap();
            }
        }
        s.flush().unwrap();
    }
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    s.prepare(&keys).unwrap();
    for k in &keys {
        for &(ts, v) in &data[200..] {
            s.append(k, ts, v).unwrap();
        }
    }
    let mut listed = s.series().unwrap();
    listed.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(listed, want, "one series per key");
    for k in &keys {
        let got: Vec<(i64, f64)> = s
            .query(k, i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|x| (x.ts_ms, x.value))
            .collect();
        assert_eq!(got, data, "{k}");
    }
}

#[test]
fn a_crash_loses_at_most_what_was_appended_since_the_last_flush_or_close() {
    let dir = tempfile::tempdir().unwrap();
    let data = latencies(600, 8);
    let k = key("x");
    {
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for &(ts, v) in &data[..300] {
            s.append(&k, ts, v).unwrap();
        }
        s.flush().unwrap();
        for &(ts, v) in &data[300..] {
            s.append(&k, ts, v).unwrap();
        }
        // Killed: no flush. 480 samples closed two raw chunks.
    }
    let s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let got = s.query(&k, i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 480);
    assert_eq!(got.last().unwrap().ts_ms, data[479].0);
}

#[test]
fn samples_out_of_order_are_refused_and_the_series_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let k = key("x");
    s.append(&k, 2000, 1.0).unwrap();
    for ts in [2000, 1999] {
        let err = s.append(&k, ts, 2.0).unwrap_err();
        assert!(
            matches!(err, SeriesError::OutOfOrder { last_ms: 2000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("strictly increasing"), "{err}");
    }
    s.append(&k, 2001, 3.0).unwrap();
    s.flush().unwrap();
    drop(s);
    // The last time is remembered across a restart too.
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    assert!(matches!(
        s.append(&k, 2001, 0.0),
        Err(SeriesError::OutOfOrder { .. })
    ));
    let got: Vec<f64> = s
        .query(&k, 0, 5000)
        .unwrap()
        .iter()
        .map(|x| x.value)
        .collect();
    assert_eq!(got, [1.0, 3.0]);
}

#[test]
fn bad_names_are_refused_with_a_hint() {
    let err = SeriesKey::new("9lives", [("a", "b")]).unwrap_err();
    assert!(err.to_string().contains("hint"), "{err}");
    assert!(SeriesKey::new("", Vec::<(String, String)>::new()).is_err());
    assert!(SeriesKey::new("ok", [("bad-label", "v")]).is_err());
    let err = SeriesKey::new("ok", [("a", "1"), ("a", "2")]).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    assert!(SeriesKey::new("node_cpu_seconds_total", [("mode", "idle ✓")]).is_ok());
}

#[test]
fn query_step_matches_the_raw_samples_bucketed_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let k = key("check_latency_seconds");
    // Three days and a bit: hour chunks close, minute and raw ones are
    // open at the end (the tail not yet rolled up).
    let mut data = latencies(3 * 8640 + 777, 9);
    // A NaN counts in no aggregate.
    data[5000].1 = f64::NAN;
    for &(ts, v) in &data {
        s.append(&k, ts, v).unwrap();
    }
    let clean: Vec<(i64, f64)> = data.iter().copied().filter(|(_, v)| !v.is_nan()).collect();
    let end = data.last().unwrap().0;
    for (step, from, to) in [
        (10_000, T0 + 5 * HOUR, T0 + 7 * HOUR),
        (MIN, T0, end),
        (5 * MIN, T0 + 13 * MIN, end),
        (HOUR, T0, end),
        (6 * HOUR, T0, end),
        (DAY, T0, end),
    ] {
        let got = s
            .query_step(&k, from, to, Duration::from_millis(step as u64))
            .unwrap();
        assert_same(
            &got,
            &naive(&clean, from, to, step),
            &format!("step {step} ms"),
        );
    }
    // The same after a flush and a restart.
    s.flush().unwrap();
    drop(s);
    let s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let got = s.query_step(&k, T0, end, Duration::from_hours(1)).unwrap();
    assert_same(&got, &naive(&clean, T0, end, HOUR), "after a restart");
    let stats = s.stats().unwrap();
    assert!(stats.iter().all(|l| l.chunks > 0), "{stats:?}");
}

#[test]
fn query_step_holds_for_series_off_the_minute_and_denser_than_a_chunk() {
    for (what, data) in [
        ("every 7 s", spaced(6000, 7_000, 3_000, 21)),
        ("every 100 ms", spaced(60_000, 100, 50, 22)),
        ("every 25 min", spaced(300, 25 * MIN, 17_000, 23)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        let k = key("x");
        for &(ts, v) in &data {
            s.append(&k, ts, v).unwrap();
        }
        let (from, to) = (data[0].0, data.last().unwrap().0);
        for step in [MIN, 5 * MIN, HOUR, DAY] {
            let got = s
                .query_step(&k, from, to, Duration::from_millis(step as u64))
                .unwrap();
            assert_same(
                &got,
                &naive(&data, from, to, step),
                &format!("{what}, step {step}"),
            );
        }
    }
}

#[test]
fn a_quiet_series_is_rolled_up_before_its_raw_data_expires() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("x");
    let data = latencies(500, 24);
    let end = data.last().unwrap().0;
    {
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for &(ts, v) in &data {
            s.append(&k, ts, v).unwrap();
        }
        s.flush().unwrap();
    }
    // Another process, which never saw the series, enforces retention.
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    assert_eq!(s.enforce_retention(end + HOUR).unwrap().idle_closed, 0);
    assert_eq!(s.enforce_retention(end + 3 * HOUR).unwrap().idle_closed, 1);
    let report = s.enforce_retention(end + 3 * DAY).unwrap();
    assert_eq!(report.idle_closed, 0);
    assert!(
        s.query(&k, T0, end).unwrap().is_empty(),
        "the raw data expired"
    );
    let got = s.query_step(&k, T0, end, Duration::from_mins(1)).unwrap();
    assert_same(&got, &naive(&data, T0, end, MIN), "all of it in minutes");
}

#[test]
fn expired_raw_data_is_read_from_the_roll_ups() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let k = key("x");
    let data = latencies(5 * 8640, 10);
    for &(ts, v) in &data {
        s.append(&k, ts, v).unwrap();
    }
    s.flush().unwrap();
    let end = data.last().unwrap().0;
    let report = s.enforce_retention(end).unwrap();
    assert!(report.expired > 0, "{report:?}");
    assert_eq!(report.over_size, 0);
    // Raw samples older than two days are gone…
    let raw = s.query(&k, T0, end).unwrap();
    assert!(
        raw.first().unwrap().ts_ms >= end - 2 * DAY - RAW_SLACK,
        "{:?}",
        raw.first()
    );
    assert!(raw.len() < data.len());
    // …and a step of one minute reads them from the minute roll-ups.
    let got = s.query_step(&k, T0, end, Duration::from_mins(1)).unwrap();
    assert_same(&got, &naive(&data, T0, end, MIN), "1 min over 5 days");
}

/// A raw chunk is deleted once its *last* sample is past the retention.
const RAW_SLACK: i64 = 2 * HOUR;

#[test]
fn the_size_bound_deletes_the_oldest_raw_chunks_first() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("x");
    let data = latencies(2 * 8640, 11);
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    for &(ts, v) in &data {
        s.append(&k, ts, v).unwrap();
    }
    s.flush().unwrap();
    let before = s.stats().unwrap();
    let total: u64 = before.iter().map(|l| l.bytes).sum();
    let raw = before[0];
    assert_eq!(raw.resolution, Resolution::Raw);
    drop(s);
    // Room for everything but half the raw chunks.
    let bound = total - raw.bytes / 2;
    let mut s = SeriesStore::open(
        dir.path(),
        Retention {
            max_bytes: bound,
            ..Retention::default()
        },
    )
    .unwrap();
    let end = data.last().unwrap().0;
    let report = s.enforce_retention(end).unwrap();
    assert_eq!(report.expired, 0);
    assert!(
        report.over_size > 0 && report.bytes_left <= bound,
        "{report:?}"
    );
    let after = s.stats().unwrap();
    assert_eq!(after[1], before[1], "the minute roll-ups are untouched");
    assert_eq!(after[2], before[2], "the hour roll-ups are untouched");
    // What is left of the raw samples is the newest.
    let raw = s.query(&k, T0, end).unwrap();
    assert_eq!(raw.last().unwrap().ts_ms, end);
    assert!(raw.first().unwrap().ts_ms > T0 + DAY / 2);
    // A bound below the roll-ups themselves takes them too, oldest first.
    let mut s = SeriesStore::open(
        dir.path(),
        Retention {
            max_bytes: 100,
            ..Retention::default()
        },
    )
    .unwrap();
    let report = s.enforce_retention(end).unwrap();
    assert!(report.bytes_left <= 100, "{report:?}");
}

#[test]
fn a_corrupt_chunk_on_disk_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("x");
    {
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for (ts, v) in latencies(500, 12) {
            s.append(&k, ts, v).unwrap();
        }
    }
    // The first raw chunk loses its last bytes.
    let conn = rusqlite::Connection::open(dir.path().join(vigie_store::DB_FILE)).unwrap();
    let (start, mut data): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT start_ms, data FROM series_chunks WHERE resolution_ms = 0 ORDER BY start_ms LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    data.truncate(data.len() - 9);
    conn.execute(
        "UPDATE series_chunks SET data = ?1 WHERE resolution_ms = 0 AND start_ms = ?2",
        rusqlite::params![data, start],
    )
    .unwrap();
    drop(conn);
    let s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let err = s.query(&k, i64::MIN, i64::MAX).unwrap_err();
    assert!(
        matches!(
            err,
            SeriesError::Chunk {
                resolution_ms: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("hint"), "{err}");
}

/// Node-exporter-like series at 10 s for a day, as a collector on a
/// scheduler's tick gives them (0 to 3 ms late).
fn node_day(seed: u64) -> Vec<(&'static str, Vec<(i64, f64)>)> {
    let mut rng = XorShift(seed);
    let n = 8640;
    let ts: Vec<i64> = (0..n).map(|i| T0 + i * 10_000 + rng.below(4)).collect();
    // node_cpu_seconds_total{mode="idle"}: USER_HZ hundredths, an idle
    // CPU's 9.6 to 10 s of every 10.
    let mut ticks = 123_456_789i64;
    let cpu = ts
        .iter()
        .map(|&t| {
            ticks += 960 + rng.below(41);
            (t, ticks as f64 / 100.0)
        })
        .collect();
    // node_memory_MemAvailable_bytes: kB from /proc/meminfo times 1024,
    // moving by a few pages.
    let mut kb = 1_843_212i64;
    let mem = ts
        .iter()
        .map(|&t| {
            kb += 4 * (rng.below(17) - 8);
            (t, (kb * 1024) as f64)
        })
        .collect();
    // node_load1: two decimals, drifting.
    let mut load = 52i64;
    let load1 = ts
        .iter()
        .map(|&t| {
            load = (load + rng.below(11) - 5).max(0);
            (t, load as f64 / 100.0)
        })
        .collect();
    vec![
        ("node_cpu_seconds_total", cpu),
        ("node_memory_MemAvailable_bytes", mem),
        ("node_load1", load1),
    ]
}

#[test]
fn bytes_per_sample_of_a_day_of_node_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(vigie_store::DB_FILE);
    drop(SeriesStore::open(dir.path(), Retention::default()).unwrap());
    let empty = std::fs::metadata(&db).unwrap().len();
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let series = node_day(13);
    let mut samples = 0;
    for (name, data) in &series {
        let k = SeriesKey::new(name, [("instance", "web-1")]).unwrap();
        let before = s.stats().unwrap()[0].bytes;
        for &(ts, v) in data {
            s.append(&k, ts, v).unwrap();
        }
        s.flush().unwrap();
        let bytes = s.stats().unwrap()[0].bytes - before;
        eprintln!(
            "{name}: {:.2} bytes per sample",
            bytes as f64 / data.len() as f64
        );
        samples += data.len();
    }
    s.flush().unwrap();
    let stats = s.stats().unwrap();
    let raw = stats[0];
    assert_eq!(raw.samples as usize, samples);
    let per_sample = raw.bytes as f64 / samples as f64;
    // For comparison, Gorilla's XOR alone on the same chunks.
    let mut xor_bytes = 0;
    for (_, data) in &series {
        for chunk in data.chunks(vigie_store::series::RAW_CHUNK_SAMPLES) {
            let ts: Vec<i64> = chunk.iter().map(|x| x.0).collect();
            let v: Vec<f64> = chunk.iter().map(|x| x.1).collect();
            xor_bytes += vigie_store::series::chunk::encode_with(
                &ts,
                &[&v],
                Some(vigie_store::series::ValueEncoding::Xor),
            )
            .unwrap()
            .len();
        }
    }
    let rollup_bytes: u64 = stats[1..].iter().map(|l| l.bytes).sum();
    drop(s);
    // Closed, the store is checkpointed into its one file.
    let file = std::fs::metadata(&db).unwrap().len() - empty;
    eprintln!(
        "{samples} samples: {per_sample:.2} bytes per sample in raw chunks \
         (Gorilla's XOR alone {:.2}); roll-ups {:.2} more; the SQLite file grew by {:.2}",
        xor_bytes as f64 / samples as f64,
        rollup_bytes as f64 / samples as f64,
        file as f64 / samples as f64,
    );
    assert!(per_sample <= 2.0, "{per_sample:.2} bytes per sample");
}

/// The figures of the module doc's "Memory": 300 checks' series (up,
/// failing, duration to the microsecond, every 30 s) and a host's
/// counters and gauges (every 15 s), over six hours, so that raw and
/// one-minute chunks have closed and the hour chunks are open. Run with
/// `--nocapture` to see the figures.
#[test]
fn an_open_series_costs_hundreds_of_bytes_not_kilobytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let checks = 300;
    let keys: Vec<[SeriesKey; 3]> = (0..checks)
        .map(|i| {
            let check = format!("check-{i}");
            [
                "vigie_check_up",
                "vigie_check_failing",
                "vigie_check_duration_seconds",
            ]
            .map(|n| SeriesKey::new(n, [("check", check.as_str())]).unwrap())
        })
        .collect();
    let mut rng = XorShift(7);
    let mut peak = 0usize;
    for step in 0..(6 * 120) {
        for (i, [up, failing, duration]) in keys.iter().enumerate() {
            let ts = T0 + step * 30_000 + i as i64 * 37 + rng.below(3);
            s.append(up, ts, 1.0).unwrap();
            s.append(failing, ts, 0.0).unwrap();
            // 1 to 300 ms, to the microsecond.
            let us = 1_000 + rng.below(299_000);
            s.append(duration, ts, us as f64 / 1e6).unwrap();
        }
        peak = peak.max(s.memory_bytes());
    }
    let host = [
        ("node_cpu_seconds_total", 100.0),
        ("node_memory_MemAvailable_bytes", 4096.0 * 1024.0),
        ("node_load1", 0.01),
    ];
    let host_keys: Vec<(SeriesKey, f64)> = host
        .iter()
        .map(|(n, v)| (SeriesKey::new(n, [("instance", "x")]).unwrap(), *v))
        .collect();
    let mut total = [0.0f64; 3];
    let before = s.memory_bytes();
    for step in 0..(6 * 240) {
        for (j, (k, scale)) in host_keys.iter().enumerate() {
            total[j] += (1 + rng.below(50)) as f64;
            s.append(k, T0 + step * 15_000, (total[j] * scale).round() / 100.0)
                .unwrap();
        }
    }
    let host_each = (s.memory_bytes() - before) / host_keys.len();
    let series = s.open_series();
    let per_series = s.memory_bytes() / series;
    let peak_per_series = peak / (checks * 3);
    println!(
        "{series} open series: {per_series} bytes each now, {peak_per_series} at the peak of the checks' (a raw chunk about to close); a host counter or gauge {host_each} bytes"
    );
    assert!(peak_per_series < 1024, "{peak_per_series} bytes per series");
    assert!(host_each < 1024, "{host_each} bytes per host series");
    // And everything reads back after a flush and a restart.
    s.flush().unwrap();
    drop(s);
    let s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    let got = s.query(&keys[3][2], T0, T0 + 7 * HOUR).unwrap();
    assert_eq!(got.len(), 6 * 120);
}

#[test]
fn the_last_samples_come_from_the_open_chunk_then_the_closed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = latencies(600, 11);
    let k = key("vigie_check_up");
    let want = |n: usize| -> Vec<(i64, f64)> { data[data.len() - n..].to_vec() };
    let got = |s: &SeriesStore, n: usize| -> Vec<(i64, f64)> {
        s.last(&k, n)
            .unwrap()
            .iter()
            .map(|x| (x.ts_ms, x.value))
            .collect()
    };
    {
        let mut s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
        for &(ts, v) in &data {
            s.append(&k, ts, v).unwrap();
        }
        // 600 samples: two closed chunks of 240 and 120 open in memory.
        assert_eq!(got(&s, 30), want(30), "within the open chunk");
        assert_eq!(got(&s, 300), want(300), "across the last close");
        assert_eq!(got(&s, 10_000), data, "all there is");
        assert!(got(&s, 0).is_empty());
        s.flush().unwrap();
        // The open chunk as flushed is not read twice beside memory.
        assert_eq!(got(&s, 500), want(500));
    }
    // After a restart, before any append: from disk alone.
    let s = SeriesStore::open(dir.path(), Retention::default()).unwrap();
    assert_eq!(got(&s, 30), want(30));
    assert_eq!(got(&s, 400), want(400));
    assert!(s.last(&key("nothing"), 5).unwrap().is_empty());
}
