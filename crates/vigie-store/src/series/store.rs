//! The series store: open chunks in memory, closed ones in SQLite, the
//! roll-ups made as chunks close, retention.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Aggregate, RAW_CHUNK_SAMPLES, RAW_CHUNK_WINDOW_MS, Resolution, Retention, Sample, SeriesError,
    SeriesKey, chunk, open::OpenChunk,
};
use crate::Store;

type Result<T, E = SeriesError> = std::result::Result<T, E>;

/// Roll-up chunks' columns, in this order.
const AGG_COLUMNS: usize = 5;

/// Samples of every series, buffered per series and resolution.
#[derive(Debug)]
pub struct SeriesStore {
    store: Store,
    retention: Retention,
    // Boxed: the map keeps a slot per bucket, and grows by doubling.
    series: HashMap<SeriesKey, Box<State>, super::KeyHash>,
}

/// What a series has in memory: its raw open chunk. The roll-ups'
/// open chunks are on disk (written as each raw chunk closes), read
/// back at the next close: they change every few hours, and memory
/// holds thousands of series.
#[derive(Debug)]
struct State {
    id: i64,
    last_ts: Option<i64>,
    raw: Level,
}

/// An open chunk (one column for raw samples, five for aggregates),
/// kept compressed as it grows ([`OpenChunk`]).
#[derive(Clone, Debug)]
struct Level {
    res: Resolution,
    chunk: OpenChunk,
    /// Changed since it was last written.
    dirty: bool,
}

impl Level {
    fn new(res: Resolution) -> Self {
        let n = if res == Resolution::Raw {
            1
        } else {
            AGG_COLUMNS
        };
        Self {
            res,
            chunk: OpenChunk::new(n),
            dirty: false,
        }
    }

    /// A level holding `c` as read back from disk.
    fn load(&mut self, c: &chunk::Chunk) {
        self.chunk.clear();
        let mut vals = vec![0.0; c.columns.len()];
        for (i, &t) in c.ts.iter().enumerate() {
            for (v, col) in vals.iter_mut().zip(&c.columns) {
                *v = col[i];
            }
            self.chunk.push(t, &vals);
        }
    }

    fn is_empty(&self) -> bool {
        self.chunk.is_empty()
    }

    fn first_ts(&self) -> Option<i64> {
        self.chunk.first_ts()
    }

    fn last_ts(&self) -> Option<i64> {
        self.chunk.last_ts()
    }

    /// (samples, window) after which it closes.
    fn limits(&self) -> (usize, i64) {
        match self.res {
            Resolution::Raw => (RAW_CHUNK_SAMPLES, RAW_CHUNK_WINDOW_MS),
            Resolution::Minute => (60, 3_600_000),
            Resolution::Hour => (24, 86_400_000),
        }
    }

    /// Whether a sample at `ts` must go into a new chunk: this one is
    /// full (or spans its window), and `ts` starts a new bucket of the
    /// next resolution, so that a closed chunk rolls up into whole
    /// buckets. A series denser than that closes at four times the size
    /// whatever the bucket (its roll-up merges the split bucket).
    fn full_before(&self, ts: i64) -> bool {
        let (Some(first), Some(last)) = (self.first_ts(), self.last_ts()) else {
            return false;
        };
        let len = self.chunk.len();
        let (n, window) = self.limits();
        let full = len >= n || ts.saturating_sub(first) >= window;
        let next = match self.res {
            Resolution::Raw => Resolution::Minute.millis(),
            Resolution::Minute => Resolution::Hour.millis(),
            Resolution::Hour => return full,
        };
        len >= 4 * n || (full && ts.div_euclid(next) != last.div_euclid(next))
    }

    fn push_sample(&mut self, ts: i64, v: f64) {
        self.chunk.push(ts, &[v]);
        self.dirty = true;
    }

    fn push_agg(&mut self, a: &Aggregate) {
        self.chunk.push(a.ts_ms, &agg_values(a));
        self.dirty = true;
    }

    fn last_agg(&self) -> Option<Aggregate> {
        if self.res == Resolution::Raw {
            return None;
        }
        self.chunk.last().map(|p| Aggregate {
            ts_ms: p.ts,
            min: p.vals[0],
            max: p.vals[1],
            sum: p.vals[2],
            count: p.vals[3] as u64,
            last: p.vals[4],
        })
    }

    fn set_last_agg(&mut self, a: &Aggregate) {
        self.chunk.set_last(&agg_values(a));
        self.dirty = true;
    }

    /// Timestamps and columns, decoded.
    fn decoded(&self, key: &SeriesKey) -> Result<(Vec<i64>, Vec<Vec<f64>>)> {
        self.chunk
            .decode()
            .map_err(|e| chunk_error(key, self.res, self.first_ts().unwrap_or_default(), e))
    }

    /// Every point as an aggregate (a raw sample is one of count 1).
    fn aggregates(&self, key: &SeriesKey) -> Result<Vec<Aggregate>> {
        let (ts, cols) = self.decoded(key)?;
        Ok(points(self.res, &ts, &cols))
    }

    fn clear(&mut self) {
        self.chunk.clear();
        self.dirty = false;
    }
}

fn agg_values(a: &Aggregate) -> [f64; AGG_COLUMNS] {
    [a.min, a.max, a.sum, a.count as f64, a.last]
}

fn agg_at(ts: i64, cols: &[Vec<f64>], i: usize) -> Aggregate {
    Aggregate {
        ts_ms: ts,
        min: cols[0][i],
        max: cols[1][i],
        sum: cols[2][i],
        count: cols[3][i] as u64,
        last: cols[4][i],
    }
}

fn points(res: Resolution, ts: &[i64], cols: &[Vec<f64>]) -> Vec<Aggregate> {
    if res == Resolution::Raw {
        ts.iter()
            .zip(&cols[0])
            .filter(|(_, v)| !v.is_nan())
            .map(|(&t, &v)| Aggregate::of(t, v))
            .collect()
    } else {
        (0..ts.len()).map(|i| agg_at(ts[i], cols, i)).collect()
    }
}

/// Fold points (in time order) into buckets of `width` ms.
fn bucket(points: impl IntoIterator<Item = Aggregate>, width: i64) -> Vec<Aggregate> {
    let mut out: Vec<Aggregate> = Vec::new();
    for mut p in points {
        p.ts_ms = p.ts_ms.div_euclid(width) * width;
        match out.last_mut() {
            Some(last) if last.ts_ms == p.ts_ms => last.merge(&p),
            _ => out.push(p),
        }
    }
    out
}

/// How much one resolution holds on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelStats {
    pub resolution: Resolution,
    pub chunks: u64,
    /// Samples (raw) or buckets (roll-ups).
    pub samples: u64,
    /// The chunks' bytes.
    pub bytes: u64,
}

/// What [`SeriesStore::enforce_retention`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Raw chunks of quiet series closed (and rolled up).
    pub idle_closed: u64,
    /// Chunks older than their resolution's age.
    pub expired: u64,
    /// Chunks deleted to come under the size bound.
    pub over_size: u64,
    /// The chunks' bytes left.
    pub bytes_left: u64,
}

impl SeriesStore {
    /// Open the store in `state_dir` (see [`Store::open`]).
    pub fn open(state_dir: &Path, retention: Retention) -> Result<Self> {
        Ok(Self::new(Store::open(state_dir)?, retention))
    }

    /// Keep series in `store` (a connection of its own: series writes
    /// are batched by chunk, not by result).
    pub fn new(store: Store, retention: Retention) -> Self {
        Self {
            store,
            retention,
            series: HashMap::default(),
        }
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Keep by `retention` from the next [`Self::enforce_retention`] on.
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// How many series have open chunks in memory.
    pub fn open_series(&self) -> usize {
        self.series.len()
    }

    /// An estimate of the bytes the open series take: their keys, their
    /// state and their chunks' streams (the map's own slots included).
    pub fn memory_bytes(&self) -> usize {
        let slot = std::mem::size_of::<SeriesKey>() + std::mem::size_of::<Box<State>>() + 1;
        self.series.capacity() * slot
            + self
                .series
                .iter()
                .map(|(k, s)| {
                    std::mem::size_of::<State>()
                        + k.name().len()
                        + k.labels()
                            .iter()
                            .map(|(a, b)| 48 + a.len() + b.len())
                            .sum::<usize>()
                        + s.raw.chunk.heap_bytes()
                })
                .sum::<usize>()
    }

    /// Make ready the series of `keys` not seen since this store was
    /// opened (numbered, their open chunks read back), all in one
    /// transaction: a daemon's first results name thousands of series,
    /// and one transaction each would cost a commit each. [`Self::append`]
    /// does the same for one series it has not seen.
    pub fn prepare<'a>(&mut self, keys: impl IntoIterator<Item = &'a SeriesKey>) -> Result<()> {
        let mut new: Vec<&SeriesKey> = keys
            .into_iter()
            .filter(|k| !self.series.contains_key(*k))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        new.sort();
        new.dedup();
        let tx = self.store.conn.transaction()?;
        let mut states = Vec::with_capacity(new.len());
        for key in new {
            states.push((key.clone(), load_state(&tx, key)?));
        }
        tx.commit()?;
        for (key, state) in states {
            self.series.insert(key, Box::new(state));
        }
        Ok(())
    }

    /// Append a sample; `ts_ms` must be later than the series' last one.
    /// It is in memory until its chunk closes or [`Self::flush`].
    pub fn append(&mut self, key: &SeriesKey, ts_ms: i64, value: f64) -> Result<()> {
        // One lookup for a known series (the steady state).
        let state = if let Some(state) = self.series.get_mut(key) {
            state
        } else {
            let state = load_state(&self.store.conn, key)?;
            self.series.entry(key.clone()).or_insert(Box::new(state))
        };
        if let Some(last_ms) = state.last_ts
            && ts_ms <= last_ms
        {
            return Err(SeriesError::OutOfOrder {
                series: key.to_string(),
                ts_ms,
                last_ms,
            });
        }
        if state.raw.full_before(ts_ms) {
            close_raw(&mut self.store.conn, state, key)?;
        }
        state.raw.push_sample(ts_ms, value);
        state.last_ts = Some(ts_ms);
        Ok(())
    }

    /// Write every open chunk that changed, in one transaction; they stay
    /// open (rewritten in place as they grow).
    pub fn flush(&mut self) -> Result<()> {
        let tx = self.store.conn.transaction()?;
        for (key, state) in &self.series {
            if state.raw.dirty && !state.raw.is_empty() {
                write_chunk(&tx, state.id, key, &state.raw, true)?;
            }
        }
        tx.commit()?;
        // Only once committed: a failed flush is tried again in full.
        for state in self.series.values_mut() {
            state.raw.dirty = false;
        }
        Ok(())
    }

    /// Every known series.
    pub fn series(&self) -> Result<Vec<SeriesKey>> {
        let mut stmt = self
            .store
            .conn
            .prepare("SELECT name, labels FROM series ORDER BY name, labels")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, labels) = row?;
            let labels: Vec<(String, String)> = serde_json::from_str(&labels).unwrap_or_default();
            out.push(SeriesKey::new(&name, labels)?);
        }
        Ok(out)
    }

    /// The raw samples of `key` with `from <= ts <= to` (milliseconds), in
    /// time order. Raw samples older than the raw retention are gone: ask
    /// [`Self::query_step`] for those.
    pub fn query(&self, key: &SeriesKey, from: i64, to: i64) -> Result<Vec<Sample>> {
        let (ts, cols) = self.read(key, Resolution::Raw, from, to)?;
        Ok(ts
            .into_iter()
            .zip(cols.into_iter().next().unwrap_or_default())
            .map(|(ts_ms, value)| Sample { ts_ms, value })
            .collect())
    }

    /// The last `n` raw samples of `key`, in time order: the open chunk
    /// in memory, then the closed chunks newest first until there are
    /// enough (what a sparkline draws, whatever the series' interval).
    pub fn last(&self, key: &SeriesKey, n: usize) -> Result<Vec<Sample>> {
        let mut newest_first: Vec<Sample> = Vec::with_capacity(n);
        if n == 0 {
            return Ok(newest_first);
        }
        let memory = self.series.get(key);
        let id = match memory {
            Some(s) => Some(s.id),
            None => series_id(&self.store.conn, key)?,
        };
        let Some(id) = id else {
            return Ok(newest_first);
        };
        let take = |out: &mut Vec<Sample>, ts: &[i64], values: &[f64]| {
            for (&ts_ms, &value) in ts.iter().zip(values).rev() {
                if out.len() == n {
                    break;
                }
                out.push(Sample { ts_ms, value });
            }
        };
        let open = memory.map(|s| &s.raw);
        let open_start = open.and_then(Level::first_ts);
        if let Some(open) = open {
            let (ts, cols) = open.decoded(key)?;
            take(
                &mut newest_first,
                &ts,
                cols.first().map_or(&[][..], Vec::as_slice),
            );
        }
        if newest_first.len() < n {
            let mut stmt = self.store.conn.prepare_cached(
                "SELECT start_ms, data FROM series_chunks
                 WHERE series_id = ?1 AND resolution_ms = ?2 ORDER BY start_ms DESC",
            )?;
            let mut rows = stmt.query(params![id, Resolution::Raw.millis()])?;
            while newest_first.len() < n
                && let Some(row) = rows.next()?
            {
                let start: i64 = row.get(0)?;
                if Some(start) == open_start {
                    continue;
                }
                let data: Vec<u8> = row.get(1)?;
                let c = decode(&data, key, Resolution::Raw, start)?;
                let values = c.columns.first().map_or(&[][..], Vec::as_slice);
                // Older than what was taken: the open chunk in memory may
                // have been written before its last samples.
                let before = newest_first.last().map_or(i64::MAX, |s| s.ts_ms);
                let keep = c.ts.iter().take_while(|&&t| t < before).count();
                take(
                    &mut newest_first,
                    &c.ts[..keep],
                    &values[..keep.min(values.len())],
                );
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// `key` between `from` and `to` in buckets of `step` (aligned on
    /// multiples of it), read from the coarsest resolution no wider than
    /// `step` and the finer open chunks (not rolled up yet); where that
    /// resolution has expired, from coarser ones. A roll-up bucket that
    /// holds `from` counts whole. Empty buckets are left out.
    pub fn query_step(
        &self,
        key: &SeriesKey,
        from: i64,
        to: i64,
        step: Duration,
    ) -> Result<Vec<Aggregate>> {
        let step_ms = (step.as_millis() as i64).max(1);
        // Finest first.
        let levels = Resolution::ALL;
        let chosen = levels
            .iter()
            .rposition(|r| r.millis() <= step_ms)
            .unwrap_or(0);
        let width = |i: usize| levels[i].millis().max(1);
        let mut all = self.points(key, levels[chosen], from, to)?;
        // What is not rolled up yet: the finer resolutions' open chunks
        // (a roll-up is made of closed chunks only, so none of their
        // samples is counted twice).
        for &finer in levels[..chosen].iter().rev() {
            all.extend(self.open_points(key, finer, from, to)?);
        }
        // The head: coarser data before the first point of the finer.
        let mut start = all.first().map_or(to.saturating_add(1), |p| p.ts_ms);
        for (i, &level) in levels.iter().enumerate().skip(chosen + 1) {
            let head: Vec<Aggregate> = self
                .points(key, level, from, start.saturating_sub(1))?
                .into_iter()
                .filter(|p| p.ts_ms + width(i) <= start)
                .collect();
            if let Some(first) = head.first() {
                start = first.ts_ms;
            }
            all.splice(0..0, head);
        }
        all.sort_by_key(|p| p.ts_ms);
        Ok(bucket(all, step_ms))
    }

    /// `key`'s points at `res` whose bucket starts in `[from, to]`
    /// (widened to the bucket that holds `from`).
    fn points(
        &self,
        key: &SeriesKey,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<Aggregate>> {
        let from = match res.millis() {
            0 => from,
            w => from.div_euclid(w) * w,
        };
        let (ts, cols) = self.read(key, res, from, to)?;
        Ok(points(res, &ts, &cols))
    }

    /// The points of `key`'s open chunk at `res` within `[from, to]`:
    /// in memory (raw), or as last written (`open = 1`).
    fn open_points(
        &self,
        key: &SeriesKey,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<Aggregate>> {
        let ncols = if res == Resolution::Raw {
            1
        } else {
            AGG_COLUMNS
        };
        let mut ts = Vec::new();
        let mut cols = vec![Vec::new(); ncols];
        if let Some(state) = self.series.get(key).filter(|_| res == Resolution::Raw) {
            let (lts, lcols) = state.raw.decoded(key)?;
            keep(&mut ts, &mut cols, &lts, &lcols, from, to);
        } else if let Some(id) = series_id(&self.store.conn, key)?
            && let Some(c) = read_open(&self.store.conn, id, key, res, ncols)?
        {
            keep(&mut ts, &mut cols, &c.ts, &c.columns, from, to);
        }
        Ok(points(res, &ts, &cols))
    }

    /// Timestamps and columns of `key` at `res` within `[from, to]`: the
    /// chunks on disk, the open one in memory in place of its last write.
    fn read(
        &self,
        key: &SeriesKey,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<(Vec<i64>, Vec<Vec<f64>>)> {
        let ncols = if res == Resolution::Raw {
            1
        } else {
            AGG_COLUMNS
        };
        let mut ts = Vec::new();
        let mut cols = vec![Vec::new(); ncols];
        let memory = self.series.get(key);
        let id = match memory {
            Some(s) => Some(s.id),
            None => series_id(&self.store.conn, key)?,
        };
        let Some(id) = id else {
            return Ok((ts, cols));
        };
        let open = memory.filter(|_| res == Resolution::Raw).map(|s| &s.raw);
        let open_start = open.and_then(Level::first_ts);
        let mut stmt = self.store.conn.prepare_cached(
            "SELECT start_ms, data FROM series_chunks
             WHERE series_id = ?1 AND resolution_ms = ?2 AND start_ms <= ?4 AND end_ms >= ?3
             ORDER BY start_ms",
        )?;
        let mut rows = stmt.query(params![id, res.millis(), from, to])?;
        while let Some(row) = rows.next()? {
            let start: i64 = row.get(0)?;
            if Some(start) == open_start {
                continue;
            }
            let data: Vec<u8> = row.get(1)?;
            let c = decode(&data, key, res, start)?;
            if c.columns.len() != ncols {
                return Err(chunk_error(
                    key,
                    res,
                    start,
                    super::ChunkError::Columns(c.columns.len()),
                ));
            }
            keep(&mut ts, &mut cols, &c.ts, &c.columns, from, to);
        }
        if let Some(open) = open {
            let (ots, ocols) = open.decoded(key)?;
            keep(&mut ts, &mut cols, &ots, &ocols, from, to);
        }
        Ok((ts, cols))
    }

    /// What each resolution holds on disk.
    pub fn stats(&self) -> Result<Vec<LevelStats>> {
        let mut out = Vec::new();
        for res in Resolution::ALL {
            let (chunks, samples, bytes) = self.store.conn.query_row(
                "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(length(data)), 0)
                 FROM series_chunks WHERE resolution_ms = ?1",
                [res.millis()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )?;
            out.push(LevelStats {
                resolution: res,
                chunks: chunks as u64,
                samples: samples as u64,
                bytes: bytes as u64,
            });
        }
        Ok(out)
    }

    /// Delete the chunks older than their resolution's retention at
    /// `now_ms`, then, while the chunks' bytes exceed the bound, the
    /// oldest ones, raw first, then 1 min, then 1 h. SQLite reuses the
    /// freed pages; the file itself does not shrink.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport> {
        let mut report = RetentionReport {
            idle_closed: self.close_idle(now_ms)?,
            ..RetentionReport::default()
        };
        let tx = self.store.conn.transaction()?;
        for res in Resolution::ALL {
            let keep = self.retention.of(res).as_millis() as i64;
            let n = tx.execute(
                "DELETE FROM series_chunks WHERE resolution_ms = ?1 AND end_ms < ?2",
                params![res.millis(), now_ms.saturating_sub(keep)],
            )?;
            report.expired += n as u64;
        }
        let mut total: i64 = tx.query_row(
            "SELECT coalesce(sum(length(data)), 0) FROM series_chunks",
            [],
            |r| r.get(0),
        )?;
        let max = i64::try_from(self.retention.max_bytes).unwrap_or(i64::MAX);
        'levels: for res in Resolution::ALL {
            while total > max {
                let oldest: Vec<(i64, i64, i64)> = tx
                    .prepare_cached(
                        "SELECT series_id, start_ms, length(data) FROM series_chunks
                         WHERE resolution_ms = ?1 ORDER BY end_ms LIMIT 256",
                    )?
                    .query_map([res.millis()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                if oldest.is_empty() {
                    continue 'levels;
                }
                for (id, start, len) in oldest {
                    tx.execute(
                        "DELETE FROM series_chunks
                         WHERE series_id = ?1 AND resolution_ms = ?2 AND start_ms = ?3",
                        params![id, res.millis(), start],
                    )?;
                    report.over_size += 1;
                    total -= len;
                    if total <= max {
                        break 'levels;
                    }
                }
            }
        }
        tx.commit()?;
        report.bytes_left = total.max(0) as u64;
        Ok(report)
    }
}

impl SeriesStore {
    /// Close the raw chunks of series that went quiet (nothing for a
    /// chunk's window), in memory or left open on disk, so that they
    /// roll up before they expire. Returns how many.
    fn close_idle(&mut self, now_ms: i64) -> Result<u64> {
        let cutoff = now_ms.saturating_sub(RAW_CHUNK_WINDOW_MS);
        let mut idle: Vec<SeriesKey> = self
            .series
            .iter()
            .filter(|(_, s)| s.raw.last_ts().is_some_and(|t| t < cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        let on_disk: Vec<(String, String)> = self
            .store
            .conn
            .prepare(
                "SELECT s.name, s.labels FROM series_chunks c JOIN series s ON s.id = c.series_id
                 WHERE c.resolution_ms = 0 AND c.open = 1 AND c.end_ms < ?1",
            )?
            .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (name, labels) in on_disk {
            let labels: Vec<(String, String)> = serde_json::from_str(&labels).unwrap_or_default();
            let key = SeriesKey::new(&name, labels)?;
            if !idle.contains(&key) && !self.series.contains_key(&key) {
                idle.push(key);
            }
        }
        let mut closed = 0;
        for key in idle {
            if !self.series.contains_key(&key) {
                let state = load_state(&self.store.conn, &key)?;
                self.series.insert(key.clone(), Box::new(state));
            }
            let state = self.series.get_mut(&key).expect("inserted above");
            if state.raw.last_ts().is_some_and(|t| t < cutoff) {
                close_raw(&mut self.store.conn, state, &key)?;
                closed += 1;
            }
        }
        Ok(closed)
    }
}

/// Keep the points of a decoded chunk within `[from, to]`.
fn keep(
    ts: &mut Vec<i64>,
    cols: &mut [Vec<f64>],
    cts: &[i64],
    ccols: &[Vec<f64>],
    from: i64,
    to: i64,
) {
    for (i, &t) in cts.iter().enumerate() {
        if (from..=to).contains(&t) {
            ts.push(t);
            for (col, ccol) in cols.iter_mut().zip(ccols) {
                col.push(ccol[i]);
            }
        }
    }
}

fn chunk_error(
    key: &SeriesKey,
    res: Resolution,
    start_ms: i64,
    source: super::ChunkError,
) -> SeriesError {
    SeriesError::Chunk {
        series: key.to_string(),
        resolution_ms: res.millis(),
        start_ms,
        source,
    }
}

fn decode(data: &[u8], key: &SeriesKey, res: Resolution, start: i64) -> Result<chunk::Chunk> {
    chunk::decode(data).map_err(|e| chunk_error(key, res, start, e))
}

fn series_id(conn: &Connection, key: &SeriesKey) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM series WHERE name = ?1 AND labels = ?2")?
        .query_row(params![key.name(), key.labels_json()], |r| r.get(0))
        .optional()?)
}

/// The series' id (made on first use), and its open chunks as a flush or
/// a close last wrote them, so that a restart continues them.
fn load_state(conn: &Connection, key: &SeriesKey) -> Result<State> {
    let id = if let Some(id) = series_id(conn, key)? {
        id
    } else {
        conn.execute(
            "INSERT INTO series (name, labels) VALUES (?1, ?2)",
            params![key.name(), key.labels_json()],
        )?;
        conn.last_insert_rowid()
    };
    let mut state = State {
        id,
        last_ts: None,
        raw: Level::new(Resolution::Raw),
    };
    if let Some(c) = read_open(conn, id, key, Resolution::Raw, 1)? {
        state.raw.load(&c);
    }
    state.last_ts = conn
        .prepare_cached(
            "SELECT max(end_ms) FROM series_chunks WHERE series_id = ?1 AND resolution_ms = 0",
        )?
        .query_row([id], |r| r.get(0))?;
    Ok(state)
}

/// The open chunk of series `id` at `res` as last written.
fn read_open(
    conn: &Connection,
    id: i64,
    key: &SeriesKey,
    res: Resolution,
    ncols: usize,
) -> Result<Option<chunk::Chunk>> {
    let open: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT start_ms, data FROM series_chunks
             WHERE series_id = ?1 AND resolution_ms = ?2 AND open = 1
             ORDER BY start_ms DESC LIMIT 1",
        )?
        .query_row(params![id, res.millis()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((start, data)) = open else {
        return Ok(None);
    };
    let c = decode(&data, key, res, start)?;
    if c.columns.len() != ncols {
        return Err(chunk_error(
            key,
            res,
            start,
            super::ChunkError::Columns(c.columns.len()),
        ));
    }
    Ok(Some(c))
}

/// Write `level` as its chunk (replacing an earlier write of it).
fn write_chunk(
    conn: &Connection,
    id: i64,
    key: &SeriesKey,
    level: &Level,
    open: bool,
) -> Result<()> {
    let (ts, cols) = level.decoded(key)?;
    let cols: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let start = ts[0];
    let data = chunk::encode(&ts, &cols).map_err(|e| chunk_error(key, level.res, start, e))?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO series_chunks
             (series_id, resolution_ms, start_ms, end_ms, samples, open, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        level.res.millis(),
        start,
        ts[ts.len() - 1],
        ts.len() as i64,
        open,
        data
    ])?;
    Ok(())
}

/// Close the raw chunk: write it, fold it into the minute chunk (closing
/// that one into the hour chunk when it fills), and write the open
/// roll-up chunks, all in one transaction.
fn close_raw(conn: &mut Connection, state: &mut State, key: &SeriesKey) -> Result<()> {
    // A failed write leaves memory as it was: nothing appended is lost
    // to an error, and the next close tries again.
    let before = state.raw.clone();
    let result = close_raw_in(conn, state, key);
    if result.is_err() {
        state.raw = before;
    }
    result
}

fn close_raw_in(conn: &mut Connection, state: &mut State, key: &SeriesKey) -> Result<()> {
    let tx = conn.transaction()?;
    write_chunk(&tx, state.id, key, &state.raw, false)?;
    let minutes = bucket(state.raw.aggregates(key)?, Resolution::Minute.millis());
    let mut minute = Level::new(Resolution::Minute);
    let mut hour = Level::new(Resolution::Hour);
    for level in [&mut minute, &mut hour] {
        if let Some(c) = read_open(&tx, state.id, key, level.res, AGG_COLUMNS)? {
            level.load(&c);
        }
    }
    for m in minutes {
        push_rollup(&tx, state.id, key, &mut minute, Some(&mut hour), &m)?;
    }
    for level in [&mut minute, &mut hour] {
        if level.dirty && !level.is_empty() {
            write_chunk(&tx, state.id, key, level, true)?;
        }
    }
    tx.commit()?;
    state.raw.clear();
    Ok(())
}

/// Add a bucket to a roll-up chunk: merged with its last one when they
/// are the same bucket (a raw chunk that closed mid-minute), else after
/// it, closing the chunk first when it is full.
fn push_rollup(
    conn: &Connection,
    id: i64,
    key: &SeriesKey,
    level: &mut Level,
    next: Option<&mut Level>,
    a: &Aggregate,
) -> Result<()> {
    if let Some(mut last) = level.last_agg() {
        if last.ts_ms == a.ts_ms {
            last.merge(a);
            level.set_last_agg(&last);
            return Ok(());
        }
        if a.ts_ms < last.ts_ms {
            tracing::warn!(series = %key, bucket = a.ts_ms, last = last.ts_ms, "a roll-up bucket older than the last one is dropped");
            return Ok(());
        }
    }
    if level.full_before(a.ts_ms) {
        write_chunk(conn, id, key, level, false)?;
        if let Some(next) = next {
            for h in bucket(level.aggregates(key)?, next.res.millis()) {
                push_rollup(conn, id, key, next, None, &h)?;
            }
        }
        level.clear();
    }
    level.push_agg(a);
    Ok(())
}
