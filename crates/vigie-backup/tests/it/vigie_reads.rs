//! restic initialises and backs up; vigie opens, lists, and backs up
//! into the same repository, which restic still finds clean.

use vigie_backup::Request;
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place};

#[test]
fn vigie_lists_what_restic_backed_up_and_adds_to_it() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    place.restic(&["init"]);
    place.restic(&["backup", "--tag", "from-restic", src.to_str().unwrap()]);
    let theirs = place.restic_snapshots();
    assert_eq!(theirs.len(), 1);

    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    let listed = repo.snapshots().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let snap = &listed[0];
    assert_eq!(snap.id, theirs[0]["id"].as_str().unwrap());
    assert_eq!(snap.paths, [src.to_str().unwrap()]);
    assert_eq!(snap.tags, ["from-restic"]);
    assert_eq!(snap.hostname, theirs[0]["hostname"].as_str().unwrap());

    // vigie's backup takes restic's snapshot as its parent: no file is
    // new, no data is stored again. Only the two symlinks count as
    // changed: restic 0.14 records a symlink's metadata differently from
    // rustic_core (a symlink alone shows it), which costs a tree, no data.
    let summary = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_eq!(
        (summary.files_new, summary.files_changed),
        (0, 2),
        "{summary:?}"
    );
    assert!(summary.bytes_added < 8192, "{summary:?}");
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    place.restic_check();
    assert_eq!(place.restic_snapshots().len(), 2);
}

#[test]
fn vigie_backs_up_into_a_version_1_repository_of_an_older_restic() {
    // Repositories made before restic 0.14 are version 1: uncompressed.
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    place.restic(&["init", "--repository-version", "1"]);
    place.restic(&["backup", src.to_str().unwrap()]);
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    std::fs::write(src.join("etc/new"), b"added by vigie").unwrap();
    let summary = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_eq!(summary.files_new, 1, "{summary:?}");
    place.restic_check();
    let config = place.restic(&["cat", "config"]);
    assert!(config.contains("\"version\": 1"), "{config}");
    let target = place.path("restored");
    place.restic(&["restore", &summary.id, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("etc/new")).unwrap(),
        b"added by vigie"
    );
    assert!(crate::util::read_tree(&src).0 == crate::util::read_tree(&restored).0);
}
