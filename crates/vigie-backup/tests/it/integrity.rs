//! Integrity checks and restore drills, on a healthy repository and on
//! one whose pack lost a byte: vigie's verdict agrees with restic's,
//! the damaged pack and file are named, and a drill's scratch copy is
//! gone afterwards either way.

use std::fs;
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
    assert!(is_empty(&scratch), "the scratch copy is left");
}
