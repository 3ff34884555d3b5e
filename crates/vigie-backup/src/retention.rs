//! Retention: which snapshots of a job a `keep` policy forgets
//! ([`Repo::forget`]), then the data no snapshot uses any more removed
//! ([`Repo::prune`]).
//!
//! The policy is restic's, decided here rather than by rustic_core's
//! `KeepOptions`, whose buckets differ from restic's at the edges (it
//! keeps the oldest snapshot of a group whatever its bucket, and splits
//! an ISO week across a new year): a repository restic also reads must
//! lose exactly the snapshots `restic forget` would remove. Snapshots
//! are grouped by host and paths, as restic's default `--group-by`; in
//! each group, newest first, a snapshot is kept when it opens a new
//! bucket (hour, day, ISO week, month, year, or simply "one of the last
//! N") of a rule that has buckets left, or when it is within `within`
//! of the group's newest snapshot.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rustic_core::{LimitOption, PruneOptions, PruneStats, repofile::SnapshotFile};

use crate::lock::LockKind;
use crate::{CheckReport, Error, Repo, Snapshot};

/// Which snapshots a job lists, forgets or drills: its own. Both fields
/// optional; a snapshot passes when it matches each one given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// The host that made it.
    pub hostname: Option<String>,
    /// A tag it carries (a job's snapshots carry `vigie-job:NAME`).
    pub tag: Option<String>,
}

impl SnapshotFilter {
    /// Whether `snapshot` is one of the filter's.
    pub(crate) fn matches(&self, snapshot: &SnapshotFile) -> bool {
        self.hostname
            .as_ref()
            .is_none_or(|host| *host == snapshot.hostname)
            && self
                .tag
                .as_ref()
                .is_none_or(|tag| snapshot.tags.iter().any(|t| t == tag))
    }
}

/// A retention policy: each rule keeps the newest snapshot of each of
/// its last N buckets; `within` keeps every snapshot that recent
/// (measured from the newest snapshot of the group, not from now, so
/// that a job that stopped does not lose its last backups).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Duration>,
}

impl Keep {
    fn is_empty(&self) -> bool {
        *self == Keep::default()
    }
}

/// One snapshot and what the policy decided for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub snapshot: Snapshot,
    /// Kept (a reason at least) or forgotten (none).
    pub keep: bool,
    /// restic's words: `last snapshot`, `daily snapshot`, `within 2d`…
    pub reasons: Vec<String>,
}

/// The snapshots of one host and set of paths, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetGroup {
    pub hostname: String,
    pub paths: Vec<String>,
    pub snapshots: Vec<Decision>,
}

/// What [`Repo::forget`] kept and forgot (or, on a dry run, would).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetPlan {
    pub groups: Vec<ForgetGroup>,
    /// Nothing was removed: the plan only says what would be.
    pub dry_run: bool,
}

impl ForgetPlan {
    /// The ids of the snapshots kept, in group order, newest first.
    pub fn kept(&self) -> Vec<&str> {
        self.ids(true)
    }

    /// The ids of the snapshots forgotten (or to be).
    pub fn removed(&self) -> Vec<&str> {
        self.ids(false)
    }

    fn ids(&self, keep: bool) -> Vec<&str> {
        self.groups
            .iter()
            .flat_map(|g| &g.snapshots)
            .filter(|d| d.keep == keep)
            .map(|d| d.snapshot.id.as_str())
            .collect()
    }
}

/// What [`Repo::prune`] did, and the structure check that followed it.
#[derive(Clone, Debug)]
pub struct PruneSummary {
    /// Packs no snapshot uses any more, marked for deletion (a later
    /// prune deletes them once they are 23 h old, so that a backup
    /// running now, which may still reference their blobs, is safe).
    pub packs_unused: u64,
    /// Partly used packs whose used blobs were written anew.
    pub packs_repacked: u64,
    /// Packs marked by an earlier prune, deleted now.
    pub packs_deleted: u64,
    /// Packs marked by an earlier prune (or repacked by this one), not
    /// 23 h old yet: a later prune deletes them. They count as unused.
    pub packs_pending: u64,
    /// Bytes of blobs no snapshot uses, before and after this prune.
    pub unused_bytes_before: u64,
    pub unused_bytes_after: u64,
    /// The structure check run after the prune.
    pub check: CheckReport,
}

/// A rule's bucket: snapshots with the same value share it.
type Bucket = fn(&SnapshotFile, usize) -> i64;

fn last(_: &SnapshotFile, nr: usize) -> i64 {
    i64::try_from(nr).unwrap_or(i64::MAX)
}

fn hour(sn: &SnapshotFile, _: usize) -> i64 {
    day(sn, 0) * 100 + i64::from(sn.time.hour())
}

fn day(sn: &SnapshotFile, _: usize) -> i64 {
    month(sn, 0) * 100 + i64::from(sn.time.day())
}

/// ISO 8601 week and its own year (restic's `ISOWeek`): 31 December
/// may be in week 1 of the next year.
fn week(sn: &SnapshotFile, _: usize) -> i64 {
    let iso = sn.time.date().iso_week_date();
    i64::from(iso.year()) * 100 + i64::from(iso.week())
}

fn month(sn: &SnapshotFile, _: usize) -> i64 {
    year(sn, 0) * 100 + i64::from(sn.time.month())
}

fn year(sn: &SnapshotFile, _: usize) -> i64 {
    i64::from(sn.time.year())
}

/// restic's way of writing a duration: `1d12h`, `3h`, `90m`.
fn restic_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
        }
    }
    if out.is_empty() {
        out = format!("{secs}s");
    }
    out
}

/// Decides for one group's snapshots, sorted newest first.
fn apply(keep: &Keep, group: &[SnapshotFile]) -> Vec<(bool, Vec<String>)> {
    let rules: [(Option<u32>, Bucket, &str); 6] = [
        (keep.last, last, "last snapshot"),
        (keep.hourly, hour, "hourly snapshot"),
        (keep.daily, day, "daily snapshot"),
        (keep.weekly, week, "weekly snapshot"),
        (keep.monthly, month, "monthly snapshot"),
        (keep.yearly, year, "yearly snapshot"),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.0.unwrap_or(0)).collect();
    let mut seen: Vec<Option<i64>> = vec![None; rules.len()];
    let newest = group.first().map(|s| SystemTime::from(s.time.timestamp()));
    let since = newest
        .zip(keep.within)
        .and_then(|(newest, within)| newest.checked_sub(within));
    group
        .iter()
        .enumerate()
        .map(|(nr, sn)| {
            let mut reasons = Vec::new();
            if let (Some(since), Some(within)) = (since, keep.within)
                && SystemTime::from(sn.time.timestamp()) > since
            {
                reasons.push(format!("within {}", restic_duration(within)));
            }
            for (i, (_, bucket, reason)) in rules.iter().enumerate() {
                if left[i] == 0 {
                    continue;
                }
                let value = bucket(sn, nr);
                if seen[i] != Some(value) {
                    seen[i] = Some(value);
                    left[i] -= 1;
                    reasons.push((*reason).to_owned());
                }
            }
            (!reasons.is_empty(), reasons)
        })
        .collect()
}

pub(crate) fn snapshot_of(s: &SnapshotFile) -> Snapshot {
    Snapshot {
        id: s.id.to_hex().to_string(),
        time: SystemTime::from(s.time.timestamp()),
        hostname: s.hostname.clone(),
        paths: s.paths.iter().cloned().collect(),
        tags: s.tags.iter().cloned().collect(),
    }
}

/// The filter's snapshots grouped by host and paths, each group newest
/// first.
fn groups(all: Vec<SnapshotFile>, filter: &SnapshotFilter) -> Vec<Vec<SnapshotFile>> {
    let mut by_key: BTreeMap<(String, Vec<String>), Vec<SnapshotFile>> = BTreeMap::new();
    for sn in all.into_iter().filter(|s| filter.matches(s)) {
        let mut paths: Vec<String> = sn.paths.iter().cloned().collect();
        paths.sort();
        by_key
            .entry((sn.hostname.clone(), paths))
            .or_default()
            .push(sn);
    }
    by_key
        .into_values()
        .map(|mut group| {
            group.sort_by(|a, b| {
                b.time
                    .timestamp()
                    .cmp(&a.time.timestamp())
                    .then_with(|| b.id.cmp(&a.id))
            });
            group
        })
        .collect()
}

impl Repo {
    /// Applies `keep` to the snapshots `filter` selects, grouped by host
    /// and paths; unless `dry_run`, removes those it does not keep. The
    /// data they alone used stays until [`Repo::prune`].
    pub fn forget(
        &self,
        filter: &SnapshotFilter,
        keep: &Keep,
        dry_run: bool,
    ) -> Result<ForgetPlan, Error> {
        let spec = &self.spec;
        if keep.is_empty() {
            return Err(Error::NoKeep {
                job: spec.job.clone(),
            });
        }
        let all = self
            .inner
            .get_all_snapshots()
            .map_err(spec.engine("list its snapshots"))?;
        let mut plan = ForgetPlan {
            groups: Vec::new(),
            dry_run,
        };
        let mut forget = Vec::new();
        for group in groups(all, filter) {
            let decisions = apply(keep, &group);
            let first = &group[0];
            let mut paths: Vec<String> = first.paths.iter().cloned().collect();
            paths.sort();
            let mut out = ForgetGroup {
                hostname: first.hostname.clone(),
                paths,
                snapshots: Vec::new(),
            };
            for (sn, (keep, reasons)) in group.iter().zip(decisions) {
                if !keep {
                    forget.push(sn.id);
                }
                out.snapshots.push(Decision {
                    snapshot: snapshot_of(sn),
                    keep,
                    reasons,
                });
            }
            plan.groups.push(out);
        }
        if !dry_run && !forget.is_empty() {
            // As restic: no other process (a restic prune, a backup
            // choosing its parent) works on the repository meanwhile.
            let _lock = self.lock(LockKind::Exclusive)?;
            self.inner
                .delete_snapshots(&forget)
                .map_err(spec.engine("forget snapshots"))?;
        }
        Ok(plan)
    }

    /// Removes the data no snapshot uses, with rustic's two phases:
    /// unused packs are marked for deletion now and deleted by a later
    /// prune once the mark is 23 h old, partly used packs are repacked
    /// (until at most 5 % of the repository is unused, as restic). It
    /// holds an exclusive lock, as restic's prune does: a restic backup
    /// beside it would write packs the prune cannot see yet. Then checks
    /// the repository's structure.
    pub fn prune(&self) -> Result<PruneSummary, Error> {
        let spec = &self.spec;
        let lock = self.lock(LockKind::Exclusive)?;
        let repo = &self.inner;
        // restic's defaults: any amount repacked, 5 % left unused (the
        // engine's own default repacks at most 10 % of the repository,
        // which leaves a small repository's dead packs there for ever).
        let opts = PruneOptions::default().max_repack(LimitOption::Unlimited);
        let plan = repo
            .prune_plan(&opts)
            .map_err(spec.engine("plan the prune"))?;
        let stats: &PruneStats = &plan.stats;
        let unused_before: u64 = stats.size.values().map(|s| s.unused).sum();
        let unused_after: u64 = stats
            .size
            .values()
            .fold(0, |sum, s| sum + s.unused_after_prune());
        let (packs_unused, packs_repacked, packs_deleted, packs_pending) = (
            stats.packs.unused,
            stats.packs.repack,
            stats.packs_to_delete.remove,
            stats.packs_to_delete.keep,
        );
        repo.prune(&opts, plan).map_err(spec.engine("prune"))?;
        drop(lock);
        let check = self.check(None)?;
        Ok(PruneSummary {
            packs_unused,
            packs_repacked,
            packs_deleted,
            packs_pending,
            unused_bytes_before: unused_before,
            unused_bytes_after: unused_after,
            check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_restic_writes_them() {
        assert_eq!(restic_duration(Duration::from_hours(36)), "1d12h");
        assert_eq!(restic_duration(Duration::from_hours(3)), "3h");
        assert_eq!(restic_duration(Duration::from_mins(90)), "1h30m");
        assert_eq!(restic_duration(Duration::from_secs(20)), "20s");
    }

    #[test]
    fn an_empty_policy_is_empty_and_any_rule_is_not() {
        assert!(Keep::default().is_empty());
        assert!(
            !Keep {
                within: Some(Duration::from_secs(1)),
                ..Keep::default()
            }
            .is_empty()
        );
    }
}

#[cfg(test)]
mod policy {
    use super::*;

    /// Snapshots at these UTC times, newest first as `apply` takes them.
    fn at(times: &[&str]) -> Vec<SnapshotFile> {
        let mut all: Vec<SnapshotFile> = times
            .iter()
            .map(|t| SnapshotFile {
                time: format!("{t}+00:00[UTC]").parse().unwrap(),
                ..SnapshotFile::default()
            })
            .collect();
        all.sort_by(|a, b| b.time.cmp(&a.time));
        all
    }

    fn kept(keep: &Keep, group: &[SnapshotFile]) -> Vec<String> {
        apply(keep, group)
            .into_iter()
            .zip(group)
            .filter(|((keep, _), _)| *keep)
            .map(|(_, sn)| sn.time.datetime().to_string())
            .collect()
    }

    #[test]
    fn a_week_that_spans_a_new_year_is_one_bucket() {
        // 2024-12-30 (a Monday) to 2025-01-05 is ISO week 1 of 2025.
        let group = at(&[
            "2024-12-29T12:00:00",
            "2024-12-31T12:00:00",
            "2025-01-02T12:00:00",
        ]);
        let keep = Keep {
            weekly: Some(5),
            ..Keep::default()
        };
        assert_eq!(
            kept(&keep, &group),
            ["2025-01-02T12:00:00", "2024-12-29T12:00:00"]
        );
        let rustic = rustic_core::KeepOptions::default()
            .keep_weekly(5)
            .apply(group, &"2025-02-01T00:00:00+00:00[UTC]".parse().unwrap())
            .unwrap();
        // Why the policy is decided here: rustic_core 0.13 splits that
        // week at the new year and keeps all three.
        assert_eq!(rustic.iter().filter(|f| f.keep).count(), 3);
    }

    #[test]
    fn the_oldest_snapshot_of_a_bucket_is_not_kept_for_being_the_oldest() {
        let group = at(&["2025-01-01T10:00:00", "2025-01-01T11:00:00"]);
        let keep = Keep {
            daily: Some(3),
            ..Keep::default()
        };
        assert_eq!(kept(&keep, &group), ["2025-01-01T11:00:00"]);
        let rustic = rustic_core::KeepOptions::default()
            .keep_daily(3)
            .apply(group, &"2025-02-01T00:00:00+00:00[UTC]".parse().unwrap())
            .unwrap();
        // rustic_core 0.13 keeps a group's oldest snapshot whatever
        // its bucket; restic does not.
        assert_eq!(rustic.iter().filter(|f| f.keep).count(), 2);
    }

    #[test]
    fn within_counts_from_the_newest_snapshot_not_from_now() {
        let group = at(&[
            "2020-01-01T00:00:00",
            "2020-01-02T01:00:00",
            "2020-01-03T12:00:00",
        ]);
        let keep = Keep {
            within: Some(Duration::from_hours(36)),
            ..Keep::default()
        };
        assert_eq!(
            kept(&keep, &group),
            ["2020-01-03T12:00:00", "2020-01-02T01:00:00"]
        );
        let reasons = &apply(&keep, &group)[0].1;
        assert_eq!(reasons, &["within 1d12h"]);
    }
}
