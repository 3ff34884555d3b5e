//! vigie initialises and backs up; restic checks, lists and restores.

use std::fs;

use vigie_backup::Request;
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place, read_tree};

#[test]
fn restic_restores_what_vigie_backed_up_identically() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let tags = vec!["nightly".to_owned(), "host-a".to_owned()];
    let summary = repo
        .backup(&Request {
            tags: tags.clone(),
            ..Request::paths(&[&src])
        })
        .unwrap();
    // app.conf and its hard link are two files.
    assert_eq!(summary.files, 9, "{summary:?}");
    assert_eq!(summary.files_new, 9, "{summary:?}");
    assert!(summary.bytes_processed > 5 << 20, "{summary:?}");
    // Noise does not compress: the 5 MiB are stored.
    assert!(summary.bytes_added > 5 << 20, "{summary:?}");

    place.restic_check();

    let listed = place.restic_snapshots();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], summary.id.as_str());
    assert_eq!(
        listed[0]["paths"],
        serde_json::json!([src.to_str().unwrap()])
    );
    let mut restic_tags: Vec<&str> = listed[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    restic_tags.sort_unstable();
    assert_eq!(restic_tags, ["host-a", "nightly"]);

    let target = place.path("restored");
    place.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    // restic restores the absolute path under the target.
    let restored = target.join(src.strip_prefix("/").unwrap());
    let (want, want_inodes) = read_tree(&src);
    let (got, got_inodes) = read_tree(&restored);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &want {
        assert_eq!(Some(entry), got.get(path), "{}", path.display());
    }
    // The hard link is one file under two names again.
    assert_eq!(
        want_inodes["etc/app.conf".as_ref() as &std::path::Path],
        want_inodes["app.conf.hardlink".as_ref() as &std::path::Path]
    );
    assert_eq!(
        got_inodes["etc/app.conf".as_ref() as &std::path::Path],
        got_inodes["app.conf.hardlink".as_ref() as &std::path::Path],
        "restic restored the hard link as two files"
    );
}

#[test]
fn a_second_backup_of_an_unchanged_tree_adds_almost_nothing() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let first = repo.backup(&Request::paths(&[&src])).unwrap();
    let second = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(second.files, first.files);
    assert_eq!(
        (second.files_new, second.files_changed),
        (0, 0),
        "{second:?}"
    );
    // No data, at most a changed tree (the root's atime is not kept).
    assert!(second.bytes_added < 4096, "{second:?}");
    // A changed file is read again, and only it.
    fs::write(src.join("etc/app.conf"), b"listen = 9090\n").unwrap();
    let third = repo.backup(&Request::paths(&[&src])).unwrap();
    // Its hard link changed with it.
    assert_eq!((third.files_new, third.files_changed), (0, 2), "{third:?}");
    assert!(third.bytes_added < 8192, "{third:?}");
    place.restic_check();
    let ids: Vec<String> = place
        .restic_snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let ours: Vec<String> = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ours, [first.id, second.id, third.id]);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort_unstable();
    assert_eq!(sorted, ours_sorted);
}

#[test]
fn excluded_files_are_not_in_the_snapshot() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    fs::write(src.join("etc/nested/scratch.tmp"), b"x").unwrap();
    fs::write(src.join("top.tmp"), b"y").unwrap();
    fs::create_dir(src.join("cache")).unwrap();
    fs::write(src.join("cache/blob"), b"z").unwrap();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let excludes = vec!["*.tmp".to_owned(), "cache".to_owned()];
    repo.backup(&Request {
        excludes: excludes.clone(),
        ..Request::paths(&[&src])
    })
    .unwrap();
    let listing = place.restic(&["ls", "latest"]);
    let base = src.to_str().unwrap();
    assert!(
        listing.contains(&format!("{base}/etc/nested/deeper/leaf")),
        "{listing}"
    );
    assert!(listing.contains(&format!("{base}/run.sh")), "{listing}");
    for gone in ["scratch.tmp", "top.tmp", "/cache"] {
        assert!(!listing.contains(gone), "{gone} in:\n{listing}");
    }
}

#[test]
fn a_killed_write_leaves_the_repository_clean() {
    // What a SIGKILL during a write leaves: a temporary file beside the
    // final names. Neither restic nor vigie takes it for a file.
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    for dir in ["data/00", "index", "snapshots", "keys"] {
        fs::write(place.repo().join(dir).join(".tmp-killed"), b"half a fi").unwrap();
    }
    place.restic_check();
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    repo.backup(&Request::paths(&[&src])).unwrap();
    place.restic_check();
    let reopened = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    assert_eq!(reopened.snapshots().unwrap().len(), 2);
}
