//! What the dashboard reads of the check results: each check's last few
//! runs (its sparkline) and a check's runs over a range gathered in equal
//! buckets of time (its history graph). Both walk the index
//! `results_by_check` (check, time): one seek per check, never a scan of
//! the whole table.

use rusqlite::params;
use vigie_core::Timestamp;

use crate::{Result, Store};

/// One run, as a sparkline draws it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    pub at: Timestamp,
    pub ok: bool,
    pub duration_ms: f64,
}

/// A check's runs within one bucket of time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The bucket's start (its width is the query's).
    pub start: Timestamp,
    pub runs: u64,
    pub failures: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Store {
    /// The last `limit` runs of `check`, oldest first.
    pub fn recent_marks(&self, check: &str, limit: usize) -> Result<Vec<Mark>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT started_ms, ok, duration_ms FROM results
             WHERE check_name = ?1 ORDER BY started_ms DESC, id DESC LIMIT ?2",
        )?;
        let mut marks = stmt
            .query_map(params![check, limit as i64], |r| {
                Ok(Mark {
                    at: Timestamp(r.get(0)?),
                    ok: r.get(1)?,
                    duration_ms: r.get(2)?,
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        marks.reverse();
        Ok(marks)
    }

    /// `check`'s runs in `[from, to)` gathered in `buckets` buckets of
    /// equal width, oldest first; a bucket without runs is left out.
    pub fn result_buckets(
        &self,
        check: &str,
        from: Timestamp,
        to: Timestamp,
        buckets: u32,
    ) -> Result<Vec<Bucket>> {
        let width = ((to.0 - from.0) / i64::from(buckets.max(1))).max(1);
        let mut stmt = self.conn.prepare_cached(
            "SELECT (started_ms - ?2) / ?4 AS b, count(*), sum(ok = 0),
                    avg(duration_ms), max(duration_ms)
             FROM results
             WHERE check_name = ?1 AND started_ms >= ?2 AND started_ms < ?3
             GROUP BY b ORDER BY b",
        )?;
        let rows = stmt.query_map(params![check, from.0, to.0, width], |r| {
            Ok(Bucket {
                start: Timestamp(from.0 + r.get::<_, i64>(0)? * width),
                runs: r.get::<_, i64>(1)? as u64,
                failures: r.get::<_, i64>(2)? as u64,
                mean_ms: r.get(3)?,
                max_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
