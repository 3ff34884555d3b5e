//! restic initialises and backs up; vigie opens, lists, and backs up
//! into the same repository, which restic still finds clean.

use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place, make_tree};

#[test]
fn vigie_lists_what_restic_backed_up_and_adds_to_it() {
    require!(Need::Restic);
    let place = Place::new();
    let src = place.path("src");
    make_tree(&src);
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
    let summary = repo.backup(&[&src], &[], &[]).unwrap();
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
