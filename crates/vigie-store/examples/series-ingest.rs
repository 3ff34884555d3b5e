//! Ingest samples in Prometheus's text format with timestamps
//! (`name{label="value",…} VALUE TIMESTAMP_SECONDS`, one a line, `#`
//! lines skipped) into a fresh series store, then time a few reads.
//! `bench/metrics` runs it beside Prometheus on the same file.
//!
//! ```sh
//! cargo run --release -p vigie-store --example series-ingest -- FILE STATE_DIR [SERIES_TO_DRAW]
//! ```
//!
//! Prints one JSON object: samples, ingest seconds (reading the text,
//! appends and the final flush), samples per second, chunk bytes per sample (raw and
//! roll-ups), the SQLite file's bytes per sample, and the median time
//! to draw `SERIES_TO_DRAW` (default: the first series) over the last
//! 7 days in hourly and in 10-minute steps.

use std::io::BufRead;
use std::time::{Duration, Instant};

use vigie_store::series::{Retention, SeriesKey, SeriesStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, dir, rest @ ..] = args.as_slice() else {
        return Err("usage: series-ingest FILE STATE_DIR [SERIES_TO_DRAW]".into());
    };
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| format!("cannot open {file}: {e}"))?,
    );
    // Everything kept: the bench measures storage, not expiry.
    let retention = Retention {
        raw: Duration::from_hours(24 * 365),
        max_bytes: u64::MAX,
        ..Retention::default()
    };
    let mut store = SeriesStore::open(std::path::Path::new(dir), retention)?;
    let mut keys: std::collections::HashMap<String, SeriesKey> = std::collections::HashMap::new();
    let mut first: Option<SeriesKey> = None;
    let (mut samples, mut last_ts) = (0u64, i64::MIN);
    let started = Instant::now();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value, ts) = split(&line)
            .ok_or_else(|| format!("{file}:{}: not `series value timestamp`", n + 1))?;
        let key = if let Some(k) = keys.get(series) {
            k.clone()
        } else {
            let k = parse_key(series)
                .ok_or_else(|| format!("{file}:{}: cannot read {series:?}", n + 1))??;
            keys.insert(series.to_owned(), k.clone());
            k
        };
        store.append(&key, ts, value)?;
        if first.is_none() {
            first = Some(key);
        }
        samples += 1;
        last_ts = last_ts.max(ts);
    }
    store.flush()?;
    let ingest = started.elapsed();
    let stats = store.stats()?;
    let raw = stats[0].bytes as f64 / samples as f64;
    let rollups = stats[1..].iter().map(|l| l.bytes).sum::<u64>() as f64 / samples as f64;
    let draw = match rest.first() {
        Some(s) => parse_key(s).ok_or("cannot read SERIES_TO_DRAW")??,
        None => first.ok_or("no samples")?,
    };
    let from = last_ts - 7 * 86_400_000;
    let time = |step: Duration| -> Result<(f64, usize), Box<dyn std::error::Error>> {
        let mut runs = Vec::new();
        let mut points = 0;
        for _ in 0..21 {
            let t = Instant::now();
            points = store.query_step(&draw, from, last_ts, step)?.len();
            runs.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        runs.sort_by(f64::total_cmp);
        Ok((runs[runs.len() / 2], points))
    };
    let (hourly_ms, hourly_points) = time(Duration::from_hours(1))?;
    let (ten_min_ms, ten_min_points) = time(Duration::from_mins(10))?;
    drop(store);
    let db = std::path::Path::new(dir).join(vigie_store::DB_FILE);
    let file_bytes = std::fs::metadata(&db)?.len();
    println!(
        "{{\"samples\": {samples}, \"series\": {}, \"ingest_s\": {:.3}, \"samples_per_s\": {:.0}, \
         \"raw_bytes_per_sample\": {raw:.3}, \"rollup_bytes_per_sample\": {rollups:.3}, \
         \"file_bytes_per_sample\": {:.3}, \"draw_7d_1h_ms\": {hourly_ms:.3}, \"draw_7d_1h_points\": {hourly_points}, \
         \"draw_7d_10m_ms\": {ten_min_ms:.3}, \"draw_7d_10m_points\": {ten_min_points}}}",
        keys.len(),
        ingest.as_secs_f64(),
        samples as f64 / ingest.as_secs_f64(),
        file_bytes as f64 / samples as f64,
    );
    Ok(())
}

/// `series value timestamp_seconds` → (series, value, milliseconds).
fn split(line: &str) -> Option<(&str, f64, i64)> {
    let (rest, ts) = line.rsplit_once(' ')?;
    let (series, value) = rest.rsplit_once(' ')?;
    let ts: f64 = ts.parse().ok()?;
    Some((series, value.parse().ok()?, (ts * 1000.0).round() as i64))
}

/// `name{a="b",c="d"}` (values without escapes, as the bench writes them).
fn parse_key(s: &str) -> Option<Result<SeriesKey, vigie_store::SeriesError>> {
    let Some((name, labels)) = s.split_once('{') else {
        return Some(SeriesKey::new(s, Vec::<(String, String)>::new()));
    };
    let labels = labels.strip_suffix('}')?;
    let mut pairs = Vec::new();
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        pairs.push((k, v.strip_prefix('"')?.strip_suffix('"')?));
    }
    Some(SeriesKey::new(name, pairs))
}
