//! Integrity checks and restore drills, on a healthy repository and on
//! one whose pack lost a byte: vigie's verdict agrees with restic's,
//! the damaged pack and file are named, and a drill's scratch copy is
//! gone afterwards either way.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vigie_backup::{Request, SnapshotFilter};
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place};

/// The largest pack of the repository (it holds big.bin's data).
fn largest_pack(repo: &Path) -> PathBuf {
    let mut packs: Vec<(u64, PathBuf)> = Vec::new();
    for dir in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).unwrap() {
            let f = f.unwrap();
            packs.push((f.metadata().unwrap().len(), f.path()));
        }
    }
    packs.sort();
    packs.pop().unwrap().1
}

/// Flips one byte in the middle of `pack` (its mode is 0400).
fn corrupt(pack: &Path) {
    let mut bytes = fs::read(pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let mode = fs::metadata(pack).unwrap().permissions();
    fs::remove_file(pack).unwrap();
    fs::write(pack, bytes).unwrap();
    fs::set_permissions(pack, mode).unwrap();
}

fn pack_id(pack: &Path) -> String {
    pack.file_name().unwrap().to_str().unwrap().to_owned()
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn a_healthy_repository_passes_check_and_drill_as_restic_agrees() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let tagged = Request {
        tags: vec!["vigie-job:nightly".to_owned()],
        ..Request::paths(&[&src])
    };
    let snap = repo.backup(&tagged).unwrap();
    // Another job's later snapshot: the drill must not take it.
    fs::write(src.join("etc/other"), b"x").unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();

    let report = repo.check(None).unwrap();
    assert!(report.is_ok() && report.problems.is_empty(), "{report:?}");
    let report = repo.check(Some("all")).unwrap();
    assert!(report.read_data && report.is_ok(), "{report:?}");
    assert!(repo.check(Some("1/3")).unwrap().is_ok());
    assert!(repo.check(Some("50%")).unwrap().is_ok());
    let err = repo.check(Some("half")).unwrap_err();
    assert!(err.to_string().contains("n/m"), "{err}");
    place.restic_check();

    let scratch = place.path("scratch");
    let job = SnapshotFilter {
        hostname: None,
        tag: Some("vigie-job:nightly".to_owned()),
    };
    let drill = repo.drill(&job, None, &scratch).unwrap();
    assert!(drill.passed(), "{drill:?}");
    assert_eq!(drill.snapshot, snap.id);
    assert_eq!(drill.files, 6, "{drill:?}");
    assert!(drill.bytes > 5 << 20, "{drill:?}");
    assert!(is_empty(&scratch), "the scratch copy is left");

    // A sample restores fewer files, each verified.
    let sample = repo.drill(&job, Some(50), &scratch).unwrap();
    assert!(sample.passed(), "{sample:?}");
    assert!(sample.files < drill.files, "{sample:?}");
    assert_eq!(
        repo.drill(&job, Some(50), &scratch).unwrap().files,
        sample.files
    );
    assert!(is_empty(&scratch));
    assert!(repo.drill(&job, Some(0), &scratch).is_err());

    // A drill killed midway left its copy (with a directory restored
    // read-only): the next drill removes it, and only what is named as
    // a drill's copy.
    let left = scratch.join(".vigie-drill-killed");
    fs::create_dir_all(left.join("etc/locked")).unwrap();
    fs::write(left.join("etc/locked/big"), vec![0u8; 1 << 20]).unwrap();
    fs::set_permissions(left.join("etc/locked"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::write(scratch.join("notes.txt"), b"mine").unwrap();
    assert!(repo.drill(&job, None, &scratch).unwrap().passed());
    assert!(!left.exists(), "the killed drill's copy is left");
    assert_eq!(fs::read(scratch.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn a_corrupted_pack_is_named_by_check_and_fails_the_drill_as_restic_agrees() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    let pack = largest_pack(&place.repo());
    corrupt(&pack);
    let id = pack_id(&pack);

    let report = repo.check(Some("all")).unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(
        report
            .errors()
            .any(|p| p.pack.as_deref() == Some(id.as_str())),
        "{id} not named: {report:?}"
    );
    // The structure alone does not read the data: it looks fine.
    assert!(repo.check(None).unwrap().is_ok());
    let out = place.restic_output(&["check", "--read-data"]);
    assert!(
        !out.status.success(),
        "restic check passed a corrupted pack"
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&id[..8]), "{text}");

    let scratch = place.path("scratch");
    let drill = repo
        .drill(&SnapshotFilter::default(), None, &scratch)
        .unwrap();
    assert!(!drill.passed(), "{drill:?}");
    let big = drill
        .mismatches
        .iter()
        .find(|m| m.path.ends_with("big.bin"))
        .unwrap_or_else(|| panic!("big.bin not named: {drill:?}"));
    assert!(big.problem.contains(&id), "{big:?}");
    assert!(!big.problem.contains('\n'), "{big:?}");
    assert!(is_empty(&scratch), "the scratch copy is left");

    // A restore stops there, with an error that names the pack, and
    // leaves no half-written big.bin.
    let to = place.path("restored");
    let err = repo
        .restore(
            &vigie_backup::RestoreRequest {
                filter: &SnapshotFilter::default(),
                snapshot: None,
                path: Some(&src),
                to: &to,
                overwrite: false,
            },
            &(),
        )
        .unwrap_err();
    assert!(
        matches!(err, vigie_backup::Error::Repository { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&id) && err.to_string().contains("big.bin"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n == "big.bin" || n.to_string_lossy().starts_with(".vigie-restore-")),
        "{left:?}"
    );
}

/// A pack that holds only trees, by restic's account of the index.
fn a_tree_pack(place: &Place) -> String {
    for index in place.restic(&["list", "index"]).lines() {
        let json: serde_json::Value =
            serde_json::from_str(&place.restic(&["cat", "index", index])).unwrap();
        for pack in json["packs"].as_array().unwrap() {
            let blobs = pack["blobs"].as_array().unwrap();
            if blobs.iter().all(|b| b["type"] == "tree") {
                return pack["id"].as_str().unwrap().to_owned();
            }
        }
    }
    panic!("no tree pack");
}

#[test]
fn a_drill_that_cannot_read_a_tree_fails_naming_the_pack() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    let id = a_tree_pack(&place);
    corrupt(&place.repo().join("data").join(&id[..2]).join(&id));
    let scratch = place.path("scratch");
    // The root tree unreadable, the drill cannot run; a tree below it,
    // the drill reports the directory it could not restore.
    match repo.drill(&SnapshotFilter::default(), None, &scratch) {
        Err(err) => assert!(err.to_string().contains(&id), "{err}"),
        Ok(report) => {
            assert!(!report.passed(), "{report:?}");
            let named = report.mismatches.iter().find(|m| m.problem.contains(&id));
            let named = named.unwrap_or_else(|| panic!("{id} not named: {report:?}"));
            assert!(!named.problem.contains('\n'), "{named:?}");
        }
    }
    assert!(!scratch.exists() || is_empty(&scratch));
    let report = repo.check(None).unwrap();
    assert!(!report.is_ok(), "{report:?}");
}
