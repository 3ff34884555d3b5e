//! Replication state: each job's queue of paths to send (so a crash loses
//! nothing and the lag survives a restart) and its pause (fencing).

use rusqlite::{OptionalExtension, params};
use vigie_core::Timestamp;

use crate::{Result, Store};

/// A paused job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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

    /// Pause `job`, replacing a pause it already has (`vigie sync pause`).
    pub fn sync_pause(&mut self, job: &str, reason: &str, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sync_paused (job, since_ms, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET since_ms = excluded.since_ms, reason = excluded.reason",
            params![job, now.millis(), reason],
        )?;
        Ok(())
    }

    /// Pause `job` unless it is paused already: then nothing changes and
    /// the pause it has is returned (a pause from the dashboard or the
    /// API never replaces one, a failover's fence above all).
    pub fn sync_pause_new(
        &mut self,
        job: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Paused>> {
        let tx = self.conn.transaction()?;
        let had = paused_in(&tx, job)?;
        if had.is_none() {
            tx.execute(
                "INSERT INTO sync_paused (job, since_ms, reason) VALUES (?1, ?2, ?3)",
                params![job, now.millis(), reason],
            )?;
        }
        tx.commit()?;
        Ok(had)
    }

    /// Resume `job` unless its pause is a failover's fence (its reason
    /// starts with `fenced:`) or, given `since`, not the pause that
    /// started then; in one transaction.
    pub fn sync_resume_checked(&mut self, job: &str, since: Option<Timestamp>) -> Result<Resume> {
        let tx = self.conn.transaction()?;
        let Some(p) = paused_in(&tx, job)? else {
            return Ok(Resume::NotPaused);
        };
        if p.is_fence() {
            return Ok(Resume::Fenced(p));
        }
        if since.is_some_and(|s| s != p.since) {
            return Ok(Resume::Changed(p));
        }
        tx.execute(
            "DELETE FROM sync_paused WHERE job = ?1 AND since_ms = ?2",
            params![job, p.since.millis()],
        )?;
        tx.commit()?;
        Ok(Resume::Resumed)
    }

    /// Resume `job`; whether it was paused.
    pub fn sync_resume(&mut self, job: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM sync_paused WHERE job = ?1", params![job])?
            > 0)
    }

    pub fn sync_paused(&self, job: &str) -> Result<Option<Paused>> {
        paused_in(&self.conn, job)
    }
}

/// The reason a failover's fence starts with.
pub const FENCE_PREFIX: &str = "fenced:";

impl Paused {
    /// Whether this pause is a failover's fence, which only the CLI lifts
    /// (after the reverse pass).
    pub fn is_fence(&self) -> bool {
        self.reason.starts_with(FENCE_PREFIX)
    }
}

/// What [`Store::sync_resume_checked`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    Resumed,
    NotPaused,
    /// Not resumed: the pause is a failover's fence.
    Fenced(Paused),
    /// Not resumed: the job is paused, but not since the time given.
    Changed(Paused),
}

fn paused_in(conn: &rusqlite::Connection, job: &str) -> Result<Option<Paused>> {
    Ok(conn
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_new_pause_never_replaces_one() {
        let (_dir, mut s) = store();
        let fence = "fenced: failover db points at the backup";
        assert_eq!(s.sync_pause_new("j", fence, Timestamp(10)).unwrap(), None);
        let had = s.sync_pause_new("j", "by alice", Timestamp(20)).unwrap();
        let first = Paused {
            since: Timestamp(10),
            reason: fence.to_owned(),
        };
        assert_eq!(had, Some(first.clone()));
        assert_eq!(s.sync_paused("j").unwrap(), Some(first));
        // The CLI's pause still replaces.
        s.sync_pause("j", "by hand", Timestamp(30)).unwrap();
        assert_eq!(s.sync_paused("j").unwrap().unwrap().reason, "by hand");
    }

    #[test]
    fn a_fence_is_not_resumed_but_by_the_cli() {
        let (_dir, mut s) = store();
        s.sync_pause(
            "j",
            "fenced: failover db points at the backup",
            Timestamp(10),
        )
        .unwrap();
        assert!(matches!(
            s.sync_resume_checked("j", None).unwrap(),
            Resume::Fenced(p) if p.since == Timestamp(10)
        ));
        assert!(matches!(
            s.sync_resume_checked("j", Some(Timestamp(10))).unwrap(),
            Resume::Fenced(_)
        ));
        assert!(s.sync_paused("j").unwrap().is_some());
        assert!(s.sync_resume("j").unwrap());
        assert_eq!(s.sync_paused("j").unwrap(), None);
    }

    #[test]
    fn a_resume_lifts_only_the_pause_it_was_given() {
        let (_dir, mut s) = store();
        assert_eq!(s.sync_resume_checked("j", None).unwrap(), Resume::NotPaused);
        s.sync_pause("j", "by alice", Timestamp(10)).unwrap();
        assert!(matches!(
            s.sync_resume_checked("j", Some(Timestamp(9))).unwrap(),
            Resume::Changed(p) if p.since == Timestamp(10)
        ));
        assert!(s.sync_paused("j").unwrap().is_some());
        assert_eq!(
            s.sync_resume_checked("j", Some(Timestamp(10))).unwrap(),
            Resume::Resumed
        );
        assert_eq!(s.sync_paused("j").unwrap(), None);
        s.sync_pause("j", "by bob", Timestamp(20)).unwrap();
        assert_eq!(s.sync_resume_checked("j", None).unwrap(), Resume::Resumed);
    }
}
