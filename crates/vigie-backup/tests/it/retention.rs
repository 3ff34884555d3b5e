//! Retention: vigie's `forget` keeps exactly the snapshots restic's
//! keeps with the same policy, on the same repository; `prune` then
//! frees what the forgotten snapshots alone used, and restic still
//! finds the repository clean.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use vigie_backup::{Error, Keep, Request, SnapshotFilter};
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place, noise};

/// Backup times of host `web` over the first path: several an hour,
/// several a day, days around a week's end, an ISO week that spans a
/// new year (2024-12-30 to 2025-01-05 is week 1 of 2025), months and
/// years apart.
const TIMES: &[&str] = &[
    "2022-06-15 08:00:00",
    "2023-03-01 12:00:00",
    "2023-11-30 23:59:00",
    "2024-02-29 10:00:00",
    "2024-12-28 09:00:00",
    "2024-12-29 09:00:00",
    "2024-12-30 09:00:00",
    "2024-12-31 09:00:00",
    "2025-01-01 09:00:00",
    "2025-01-05 22:00:00",
    "2025-01-06 01:00:00",
    "2025-01-06 13:00:00",
    "2025-01-06 13:30:00",
    "2025-01-06 13:45:00",
    "2025-01-07 00:10:00",
    "2025-01-07 23:50:00",
    "2025-01-08 12:00:00",
    "2025-02-01 12:00:00",
    "2025-02-01 12:05:00",
];

/// A repository written by restic: host `web` with the times above
/// over `src` (tagged `vigie-job:nightly`), plus snapshots the filter
/// or the grouping sets apart: host `web` over another path, host `db`
/// over `src`, and one of `web` over `src` without the job's tag.
fn restic_history() -> Place {
    let (place, src) = Place::with_tree();
    let other = place.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("f"), b"other").unwrap();
    place.restic(&["init"]);
    let (src, other) = (src.to_str().unwrap(), other.to_str().unwrap());
    let tag = "vigie-job:nightly";
    for time in TIMES {
        place.restic(&["backup", "--host", "web", "--tag", tag, "--time", time, src]);
    }
    for (host, time, path) in [
        ("web", "2025-01-06 13:40:00", other),
        ("web", "2025-01-02 10:00:00", other),
        ("db", "2025-01-06 13:41:00", src),
        ("db", "2024-12-31 10:00:00", src),
    ] {
        place.restic(&["backup", "--host", host, "--tag", tag, "--time", time, path]);
    }
    place.restic(&[
        "backup",
        "--host",
        "web",
        "--time",
        "2025-01-06 13:42:00",
        src,
    ]);
    place
}

/// restic's kept and removed ids for `args`, on the job's snapshots.
fn restic_forget(place: &Place, args: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut all = vec![
        "forget",
        "--dry-run",
        "--json",
        "--tag",
        "vigie-job:nightly",
    ];
    all.extend_from_slice(args);
    let json: serde_json::Value = serde_json::from_str(&place.restic(&all)).unwrap();
    let ids = |key: &str| -> BTreeSet<String> {
        json.as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g[key].as_array().cloned().unwrap_or_default())
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    (ids("keep"), ids("remove"))
}

fn job() -> SnapshotFilter {
    SnapshotFilter {
        hostname: None,
        tag: Some("vigie-job:nightly".to_owned()),
    }
}

#[test]
fn forget_keeps_exactly_what_restic_keeps() {
    require!(Need::Restic);
    let place = restic_history();
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    let none = Keep::default();
    let policies: Vec<(Keep, Vec<&str>)> = vec![
        (
            Keep {
                last: Some(3),
                ..none.clone()
            },
            vec!["--keep-last", "3"],
        ),
        (
            Keep {
                hourly: Some(4),
                ..none.clone()
            },
            vec!["--keep-hourly", "4"],
        ),
        (
            Keep {
                daily: Some(5),
                ..none.clone()
            },
            vec!["--keep-daily", "5"],
        ),
        (
            Keep {
                weekly: Some(3),
                ..none.clone()
            },
            vec!["--keep-weekly", "3"],
        ),
        (
            Keep {
                monthly: Some(4),
                yearly: Some(10),
                ..none.clone()
            },
            vec!["--keep-monthly", "4", "--keep-yearly", "10"],
        ),
        (
            Keep {
                within: Some(Duration::from_hours(40)),
                ..none.clone()
            },
            vec!["--keep-within", "1d16h"],
        ),
        (
            Keep {
                last: Some(2),
                daily: Some(3),
                weekly: Some(2),
                monthly: Some(2),
                yearly: Some(3),
                ..none.clone()
            },
            vec![
                "--keep-last",
                "2",
                "--keep-daily",
                "3",
                "--keep-weekly",
                "2",
                "--keep-monthly",
                "2",
                "--keep-yearly",
                "3",
            ],
        ),
    ];
    for (keep, args) in &policies {
        let plan = repo.forget(&job(), keep, true).unwrap();
        assert!(plan.dry_run);
        let (kept, removed) = restic_forget(&place, args);
        let ours_kept: BTreeSet<String> = plan.kept().into_iter().map(str::to_owned).collect();
        let ours_removed: BTreeSet<String> =
            plan.removed().into_iter().map(str::to_owned).collect();
        assert_eq!(ours_kept, kept, "kept with {args:?}: {plan:#?}");
        assert_eq!(ours_removed, removed, "removed with {args:?}");
        // The untagged snapshot is never the job's.
        assert_eq!(kept.len() + removed.len(), TIMES.len() + 4);
    }
    // Three groups: web over src, web over other, db over src.
    let plan = repo.forget(&job(), &policies[0].0, true).unwrap();
    assert_eq!(plan.groups.len(), 3, "{plan:#?}");
    let reasons: Vec<&str> = plan.groups[0].snapshots[0]
        .reasons
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(reasons, ["last snapshot"]);
    // A dry run removed nothing.
    assert_eq!(place.restic_snapshots().len(), TIMES.len() + 5);

    // The host narrows the job's snapshots further.
    let db = SnapshotFilter {
        hostname: Some("db".to_owned()),
        ..job()
    };
    let plan = repo.forget(&db, &policies[0].0, true).unwrap();
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].hostname, "db");
    assert_eq!(plan.kept().len(), 2);
}

#[test]
fn forget_removes_what_restic_would_and_nothing_else() {
    require!(Need::Restic);
    let place = restic_history();
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    let keep = Keep {
        daily: Some(2),
        weekly: Some(2),
        ..Keep::default()
    };
    let (kept, removed) = restic_forget(&place, &["--keep-daily", "2", "--keep-weekly", "2"]);
    let plan = repo.forget(&job(), &keep, false).unwrap();
    assert!(!plan.dry_run);
    let left: BTreeSet<String> = place
        .restic_snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(kept.is_subset(&left));
    assert!(removed.is_disjoint(&left));
    // Kept: the job's, and the untagged snapshot that is not the job's.
    assert_eq!(left.len(), kept.len() + 1);
    place.restic_check();
}

#[test]
fn a_policy_without_a_rule_is_refused() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    let err = repo
        .forget(&SnapshotFilter::default(), &Keep::default(), true)
        .unwrap_err();
    assert!(matches!(err, Error::NoKeep { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("would forget every snapshot"), "{text}");
    assert!(text.contains("daily"), "{text}");
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}

#[test]
fn prune_frees_what_forgotten_snapshots_alone_used() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    // The 5 MiB file changes entirely: the first snapshot alone holds
    // the old contents.
    fs::write(src.join("big.bin"), noise(5 << 20, 99)).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    let plan = repo
        .forget(
            &SnapshotFilter::default(),
            &Keep {
                last: Some(1),
                ..Keep::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(plan.removed().len(), 1);
    let summary = repo.prune().unwrap();
    assert!(summary.unused_bytes_before >= 5 << 20, "{summary:?}");
    assert!(summary.unused_bytes_after < 1 << 20, "{summary:?}");
    assert!(
        summary.packs_unused + summary.packs_repacked >= 1,
        "{summary:?}"
    );
    assert!(summary.check.is_ok(), "{:?}", summary.check);
    place.restic_check();
    // What is left restores whole.
    let target = place.path("restored");
    place.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(restored.join("big.bin")).unwrap(),
        noise(5 << 20, 99)
    );
    // A second prune finds nothing new to free; the packs the first
    // one repacked wait for their 23 hours, in case a backup running
    // meanwhile still relies on them.
    let again = repo.prune().unwrap();
    assert_eq!(
        (again.packs_unused, again.packs_repacked),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(again.packs_deleted, 0, "{again:?}");
    assert_eq!(
        again.packs_pending,
        summary.packs_repacked + summary.packs_unused,
        "{again:?}"
    );
    assert!(again.check.is_ok(), "{:?}", again.check);
    place.restic_check();
}
