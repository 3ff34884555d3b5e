//! Each `[[converge]]` job's last run, one row a job, replaced at each
//! run: what a restarted daemon compares the next run with (the manifest
//! changed, or the host did).

use rusqlite::{OptionalExtension, params};
use vigie_core::Timestamp;

use crate::{Result, Store};

/// What a converge job's last run ran and saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvergeLast {
    pub at: Timestamp,
    /// The SHA-256 (hex) of what the run applied: the manifest's text
    /// and the files it reads (templates, sources, packages, roles).
    pub manifest_sha256: String,
    /// The commit of a manifest pulled from git.
    pub commit: Option<String>,
    /// The ids of the resources that differed (or failed), one a line.
    pub seen: Vec<String>,
}

impl Store {
    /// Replace `job`'s last run.
    pub fn converge_record(&mut self, job: &str, last: &ConvergeLast) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO converge_last (job, at_ms, manifest_sha256, git_commit, seen)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                job,
                last.at.millis(),
                last.manifest_sha256,
                last.commit,
                last.seen.join("\n")
            ],
        )?;
        Ok(())
    }

    /// `job`'s last run, if it ran with this store.
    pub fn converge_last(&self, job: &str) -> Result<Option<ConvergeLast>> {
        Ok(self
            .conn
            .query_row(
                "SELECT at_ms, manifest_sha256, git_commit, seen FROM converge_last WHERE job = ?1",
                params![job],
                |r| {
                    let seen: String = r.get(3)?;
                    Ok(ConvergeLast {
                        at: Timestamp(r.get(0)?),
                        manifest_sha256: r.get(1)?,
                        commit: r.get(2)?,
                        seen: seen.lines().map(str::to_owned).collect(),
                    })
                },
            )
            .optional()?)
    }
}
