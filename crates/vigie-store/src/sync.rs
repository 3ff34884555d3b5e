//! Replication state: each job's queue of paths to send (so a crash loses
//! nothing and the lag survives a restart) and its pause (fencing).

use rusqlite::{OptionalExtension, params};
use vigie_core::Timestamp;

use crate::{Result, Store};

/// A paused job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Paused {
    pub since: Timestamp,
    pub reason: String,
}

impl Store {
    /// Add `paths` to `job`'s queue (a path already there keeps its age).
    pub fn sync_enqueue(&mut self, job: &str, paths: &[Vec<u8>], now: Timestamp) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO sync_queue (job, path, since_ms) VALUES (?1, ?2, ?3)",
            )?;
            for p in paths {
                st.execute(params![job, p, now.millis()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove `paths` from `job`'s queue: the receiver has them.
    pub fn sync_done(&mut self, job: &str, paths: &[Vec<u8>]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("DELETE FROM sync_queue WHERE job = ?1 AND path = ?2")?;
            for p in paths {
                st.execute(params![job, p])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Empty `job`'s queue (a full pass covered it).
    pub fn sync_clear(&mut self, job: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM sync_queue WHERE job = ?1", params![job])?;
        Ok(())
    }

    /// `job`'s queued paths and when the oldest was queued.
    pub fn sync_queue(&self, job: &str) -> Result<(Vec<Vec<u8>>, Option<Timestamp>)> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, since_ms FROM sync_queue WHERE job = ?1")?;
        let mut oldest: Option<i64> = None;
        let paths = st
            .query_map(params![job], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })?
            .map(|x| {
                x.map(|(p, t)| {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    p
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((paths, oldest.map(Timestamp)))
    }

    pub fn sync_pause(&mut self, job: &str, reason: &str, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sync_paused (job, since_ms, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET since_ms = excluded.since_ms, reason = excluded.reason",
            params![job, now.millis(), reason],
        )?;
        Ok(())
    }

    /// Resume `job`; whether it was paused.
    pub fn sync_resume(&mut self, job: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM sync_paused WHERE job = ?1", params![job])?
            > 0)
    }

    pub fn sync_paused(&self, job: &str) -> Result<Option<Paused>> {
        Ok(self
            .conn
            .query_row(
                "SELECT since_ms, reason FROM sync_paused WHERE job = ?1",
                params![job],
                |r| {
                    Ok(Paused {
                        since: Timestamp(r.get(0)?),
                        reason: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }
}
