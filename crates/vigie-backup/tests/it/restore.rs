//! Restore: vigie restores what restic wrote and what vigie wrote,
//! identically (modes, mtimes, symlinks, hard links, owners as root);
//! a subtree; never into a directory that holds files unless asked;
//! never through a link out of the target; a full disk is an error.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use vigie_backup::{Error, Repo, Request, RestoreRequest, RestoreSummary, SnapshotFilter};
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place, read_tree};

fn restore_to(
    repo: &Repo,
    snapshot: Option<&str>,
    path: Option<&Path>,
    to: &Path,
) -> Result<RestoreSummary, Error> {
    repo.restore(
        &RestoreRequest {
            filter: &SnapshotFilter::default(),
            snapshot,
            path,
            to,
            overwrite: false,
        },
        &(),
    )
}

/// Keeps what a restore told.
#[derive(Default)]
struct Counted {
    total: std::cell::Cell<Option<u64>>,
    last: std::cell::Cell<(u64, u64)>,
}

impl vigie_backup::RestoreProgress for Counted {
    fn start(&self, total_bytes: Option<u64>) {
        self.total.set(total_bytes);
    }
    fn restored(&self, files: u64, bytes: u64) {
        let (before_files, before_bytes) = self.last.get();
        assert!(files > before_files && bytes >= before_bytes);
        self.last.set((files, bytes));
    }
}

/// `restored` holds the same tree as `src`, hard links included.
fn assert_same_tree(src: &Path, restored: &Path) {
    let (want, want_inodes) = read_tree(src);
    let (got, got_inodes) = read_tree(restored);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &want {
        assert_eq!(Some(entry), got.get(path), "{}", path.display());
    }
    let ino = |m: &std::collections::BTreeMap<std::path::PathBuf, u64>, p: &str| m[Path::new(p)];
    assert_eq!(
        ino(&got_inodes, "etc/app.conf"),
        ino(&got_inodes, "app.conf.hardlink"),
        "the hard link was restored as two files"
    );
    assert_eq!(
        ino(&want_inodes, "etc/app.conf"),
        ino(&want_inodes, "app.conf.hardlink")
    );
}

#[test]
fn vigie_restores_what_restic_backed_up_identically() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let owned = Need::Root.missing().is_none();
    if owned {
        std::os::unix::fs::chown(src.join("etc/secret"), Some(1234), Some(5678)).unwrap();
    }
    place.restic(&["init"]);
    place.restic(&["backup", src.to_str().unwrap()]);
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    let to = place.path("restored");
    let summary = restore_to(&repo, None, None, &to).unwrap();
    assert_eq!(
        summary.snapshot,
        place.restic_snapshots()[0]["id"].as_str().unwrap()
    );
    // Two names of one file: one written, one linked.
    assert_eq!(
        (summary.files, summary.hard_links, summary.symlinks),
        (6, 1, 2),
        "{summary:?}"
    );
    assert!(summary.bytes > 5 << 20, "{summary:?}");
    let restored = to.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);
    if owned {
        let meta = fs::metadata(restored.join("etc/secret")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }
}

#[test]
fn vigie_restores_what_vigie_backed_up_and_a_subtree_of_it() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let first = repo.backup(&Request::paths(&[&src])).unwrap();
    fs::write(src.join("etc/app.conf"), b"changed").unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();

    // The latest, told as it goes.
    let to = place.path("latest");
    let progress = Counted::default();
    let summary = repo
        .restore(
            &RestoreRequest {
                filter: &SnapshotFilter::default(),
                snapshot: None,
                path: None,
                to: &to,
                overwrite: false,
            },
            &progress,
        )
        .unwrap();
    assert_same_tree(&src, &to.join(src.strip_prefix("/").unwrap()));
    // The whole snapshot's size is known at the start (the hard link's
    // bytes count twice there, once here).
    let total = progress.total.get().unwrap();
    assert!(total >= summary.bytes, "{total} < {summary:?}");
    assert_eq!(progress.last.get(), (summary.files, summary.bytes));

    // The first, by a prefix of its id, and only its etc/.
    let to = place.path("etc");
    let summary = restore_to(&repo, Some(&first.id[..8]), Some(&src.join("etc")), &to).unwrap();
    assert_eq!(summary.snapshot, first.id);
    assert_eq!(fs::read(to.join("app.conf")).unwrap(), b"listen = 8080\n");
    assert_eq!(fs::read(to.join("nested/deeper/leaf")).unwrap().len(), 3000);
    assert!(!to.join("big.bin").exists());
    // One file alone lands in the target under its name.
    let to = place.path("one");
    restore_to(&repo, None, Some(&src.join("run.sh")), &to).unwrap();
    assert_eq!(
        fs::read(to.join("run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );

    let err = restore_to(&repo, None, Some(&src.join("nope")), &place.path("x")).unwrap_err();
    assert!(matches!(err, Error::NotInSnapshot { .. }), "{err}");
    let err = restore_to(&repo, Some("ffffffffff"), None, &place.path("y")).unwrap_err();
    assert!(matches!(err, Error::NoSnapshot { .. }), "{err}");
    assert!(
        err.to_string().contains("vigie backup snapshots nightly"),
        "{err}"
    );
}

#[test]
fn a_target_that_holds_files_is_refused_unless_overwriting() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    let to = place.path("busy");
    fs::create_dir(&to).unwrap();
    fs::write(to.join("precious"), b"mine").unwrap();
    let err = restore_to(&repo, None, Some(&src), &to).unwrap_err();
    assert!(matches!(err, Error::TargetNotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(fs::read_dir(&to).unwrap().count(), 1);

    // Overwriting: a stale file of the same name is replaced, others stay.
    fs::write(to.join("run.sh"), b"stale").unwrap();
    repo.restore(
        &RestoreRequest {
            filter: &SnapshotFilter::default(),
            snapshot: None,
            path: Some(&src),
            to: &to,
            overwrite: true,
        },
        &(),
    )
    .unwrap();
    assert_eq!(
        fs::read(to.join("run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(fs::read(to.join("precious")).unwrap(), b"mine");
}

#[test]
fn a_snapshot_with_a_link_where_a_directory_goes_cannot_write_outside_the_target() {
    // Snapshot 1 holds `data` as a link to a directory outside; snapshot
    // 2 holds `data/` as a directory with a file. Restoring 1 then 2
    // over it must not follow the link: the file would land outside.
    require!(Need::Restic);
    let place = Place::new();
    let outside = place.path("outside");
    fs::create_dir(&outside).unwrap();
    let src = place.path("src");
    fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("data")).unwrap();
    place.restic(&["init"]);
    place.restic(&[
        "backup",
        "--time",
        "2025-01-01 10:00:00",
        src.to_str().unwrap(),
    ]);
    fs::remove_file(src.join("data")).unwrap();
    fs::create_dir(src.join("data")).unwrap();
    fs::write(src.join("data/planted"), b"gotcha").unwrap();
    place.restic(&[
        "backup",
        "--time",
        "2025-01-02 10:00:00",
        src.to_str().unwrap(),
    ]);
    let snaps = place.restic_snapshots();
    let id = |i: usize| snaps[i]["id"].as_str().unwrap().to_owned();
    let (with_link, with_dir) =
        if snaps[0]["time"].as_str().unwrap() < snaps[1]["time"].as_str().unwrap() {
            (id(0), id(1))
        } else {
            (id(1), id(0))
        };

    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    let to = place.path("to");
    let over = |snapshot: &str| {
        repo.restore(
            &RestoreRequest {
                filter: &SnapshotFilter::default(),
                snapshot: Some(snapshot),
                path: Some(&src),
                to: &to,
                overwrite: true,
            },
            &(),
        )
    };
    over(&with_link).unwrap();
    assert_eq!(fs::read_link(to.join("data")).unwrap(), outside);
    let err = over(&with_dir).unwrap_err();
    assert!(matches!(err, Error::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains("\"data\""), "{err}");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "written outside the target"
    );
    // The link is still there, untouched.
    assert_eq!(fs::read_link(to.join("data")).unwrap(), outside);
}

#[test]
fn a_full_disk_is_an_error_not_a_panic() {
    require!(Need::Root, Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    let small = place.path("small");
    fs::create_dir(&small).unwrap();
    let mount = |args: &[&str]| {
        let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
        assert!(status.success(), "{args:?}");
    };
    mount(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        small.to_str().unwrap(),
    ]);
    let result = restore_to(&repo, None, Some(&src), &small.join("to"));
    // The file that did not fit is neither under its name nor under a
    // temporary one: no half-written file is left.
    let left: Vec<String> = fs::read_dir(small.join("to"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    mount(&["umount", small.to_str().unwrap()]);
    assert!(
        !left
            .iter()
            .any(|n| n == "big.bin" || n.starts_with(".vigie-restore-")),
        "{left:?}"
    );
    let err = result.unwrap_err();
    let Error::Restore { source, path, .. } = &err else {
        panic!("not a restore error: {err:?}");
    };
    assert_eq!(source.raw_os_error(), Some(28), "{err}"); // ENOSPC
    assert!(path.starts_with(small.join("to")), "{err}");
}

#[test]
fn fifos_and_link_times_are_restored() {
    require!(Need::Restic);
    let place = Place::new();
    let src = place.path("src");
    fs::create_dir(&src).unwrap();
    let made = Command::new("mkfifo")
        .args(["-m", "0640"])
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("pipe", src.join("to-pipe")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let touched = Command::new("touch")
        .args(["-h", "-d", "@1000000000"])
        .arg(src.join("to-pipe"))
        .status()
        .unwrap();
    assert!(touched.success());
    place.restic(&["init"]);
    place.restic(&["backup", src.to_str().unwrap()]);
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    let to = place.path("to");
    let summary = restore_to(&repo, None, Some(&src), &to).unwrap();
    assert_eq!((summary.others, summary.symlinks), (1, 1), "{summary:?}");
    let pipe = fs::symlink_metadata(to.join("pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()));
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    let link = fs::symlink_metadata(to.join("to-pipe")).unwrap();
    assert_eq!(link.modified().unwrap(), old);
}
