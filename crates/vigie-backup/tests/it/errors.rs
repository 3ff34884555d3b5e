//! The errors a user meets, typed, with what to do in their message.

use std::fs;
use std::process::Command;

use vigie_backup::Request;
use vigie_backup::{Error, RepoSpec};
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place};

#[test]
fn a_wrong_password_says_which_setting_to_check() {
    require!(Need::Restic);
    let place = Place::new();
    // A repository restic made, and one vigie made.
    place.restic(&["init"]);
    let err = vigie_backup::open(&place.spec(), "not the password").unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
    let repo = place.repo();
    assert_eq!(
        err.to_string(),
        format!(
            "the password does not open repository {}: check `password` of backup `nightly`",
            repo.display()
        )
    );
    assert!(vigie_backup::open(&place.spec(), PASSWORD).is_ok());

    let other = Place::new();
    vigie_backup::init(&other.spec(), PASSWORD).unwrap();
    let err = vigie_backup::open(&other.spec(), "wrong").unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
}

#[test]
fn a_missing_repository_suggests_init() {
    let place = Place::new();
    for spec in [
        place.spec(),
        RepoSpec::new("nightly", "/nonexistent/vigie/repo").unwrap(),
    ] {
        let err = vigie_backup::open(&spec, PASSWORD).unwrap_err();
        assert!(matches!(err, Error::NoRepository { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("vigie backup init nightly"), "{text}");
        assert!(text.contains(&spec.repository), "{text}");
    }
    // Nothing was created by trying.
    assert!(!place.repo().exists());
}

#[test]
fn init_refuses_an_existing_repository() {
    let place = Place::new();
    vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let config = fs::read(place.repo().join("config")).unwrap();
    let err = vigie_backup::init(&place.spec(), "another").unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(place.repo().join("config")).unwrap(), config);
    assert_eq!(fs::read_dir(place.repo().join("keys")).unwrap().count(), 1);
}

#[test]
fn remote_repositories_are_refused_until_supported() {
    for (repository, scheme) in [("b2:bucket:path", "b2"), ("azure:c:/p", "azure")] {
        let err = RepoSpec::new("off-site", repository).unwrap_err();
        let Error::Unsupported { scheme: s, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(s, scheme);
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }
    let err = RepoSpec::new("off-site", "").unwrap_err();
    assert!(matches!(err, Error::NoLocation { .. }), "{err:?}");
}

#[test]
fn bad_sources_tags_and_excludes_fail_before_any_snapshot() {
    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let src = place.path("src");
    fs::create_dir(&src).unwrap();
    let missing = place.path("missing");

    let err = repo.backup(&Request::paths(&[&src, &missing])).unwrap_err();
    let Error::Path { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &missing);
    assert!(err.to_string().contains("check `paths`"), "{err}");

    let err = repo.backup(&Request::default()).unwrap_err();
    assert!(matches!(err, Error::NoPaths { .. }), "{err:?}");

    for tag in ["a,b", "", "  "] {
        let err = repo
            .backup(&Request {
                tags: vec![tag.to_owned()],
                ..Request::paths(&[&src])
            })
            .unwrap_err();
        assert!(matches!(err, Error::Tag { .. }), "{tag:?}: {err:?}");
    }

    let err = repo
        .backup(&Request {
            excludes: vec!["ok/*".to_owned(), "bad[".to_owned()],
            ..Request::paths(&[&src])
        })
        .unwrap_err();
    let Error::Exclude { glob, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(glob, "bad[");

    assert!(repo.snapshots().unwrap().is_empty());
    let snapshots = fs::read_dir(place.repo().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 0);
}

/// The `xx/ID` of the pack named in an error.
fn regex_lite(text: &str) -> String {
    let start = text.find("/data/").unwrap() + "/data/".len();
    text[start..start + 2 + 1 + 64].to_owned()
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_next_backup_completes() {
    require!(Need::Root, Need::Restic);
    let disk = SmallDisk(tempfile::tempdir().unwrap());
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(disk.0.path())
        .status()
        .unwrap()
        .success();
    assert!(mounted, "mount tmpfs failed");
    let place = Place::new();
    let repository = disk.0.path().join("repo");
    let spec = RepoSpec::new("nightly", repository.to_str().unwrap()).unwrap();
    let repo = vigie_backup::init(&spec, PASSWORD).unwrap();
    let src = place.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("small"), b"fits").unwrap();
    fs::write(src.join("huge"), crate::util::noise(6 << 20, 11)).unwrap();

    let err = repo.backup(&Request::paths(&[&src])).unwrap_err();
    let Error::Repository { action, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*action, "back up");
    let text = err.to_string();
    // One line: the repository, the job, the file, the system's reason.
    let pack = regex_lite(&text);
    assert_eq!(
        text,
        format!(
            "repository {repo} (backup `nightly`): cannot back up: cannot write {repo}/data/{pack}: No space left on device (os error 28)",
            repo = repository.display()
        )
    );
    assert!(repo.snapshots().unwrap().is_empty());
    // Whole files only: no temporary one was left behind.
    let mut stack = vec![repository.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "{}", e.path().display());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    // restic finds the repository sound.
    let check = std::process::Command::new("restic")
        .arg("-r")
        .arg(&repository)
        .arg("--password-file")
        .arg(place.path("password"))
        .args(["--no-cache", "--quiet", "check", "--read-data"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Room again: the next backup completes.
    fs::write(src.join("huge"), crate::util::noise(100 << 10, 11)).unwrap();
    let summary = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_eq!(summary.files, 2);
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}

#[test]
fn a_new_repository_has_one_key_of_four_scrypt_lanes_that_restic_opens() {
    require!(Need::Restic);
    let place = Place::new();
    vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let keys: Vec<_> = fs::read_dir(place.repo().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key: serde_json::Value = serde_json::from_slice(&fs::read(&keys[0]).unwrap()).unwrap();
    assert_eq!(key["kdf"], "scrypt");
    assert_eq!(
        (&key["N"], &key["r"], &key["p"]),
        (&32768.into(), &8.into(), &4.into())
    );
    assert!(
        key["created"].as_str().is_some_and(|c| !c.is_empty()),
        "{key}"
    );
    // The file's name is the hash of its bytes, as restic checks.
    let name = keys[0].file_name().unwrap().to_str().unwrap().to_owned();
    let listed = place.restic(&["list", "keys"]);
    assert_eq!(listed.trim(), name);
    // restic derives the same key from the password and reads the
    // config with it; a wrong password opens nothing.
    assert!(
        place
            .restic(&["cat", "config"])
            .contains("chunker_polynomial")
    );
    let wrong = Command::new("restic")
        .args([
            "-r",
            place.repo().to_str().unwrap(),
            "--no-cache",
            "cat",
            "config",
        ])
        .env("RESTIC_PASSWORD", "not the password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    // And vigie opens it again.
    vigie_backup::open(&place.spec(), PASSWORD).unwrap();
}

#[test]
fn a_backup_that_fails_before_its_lock_is_confirmed_leaves_no_lock() {
    let (place, src) = Place::with_tree();
    vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    // An index file that is not one: reading the index, which goes
    // while the lock settles, fails.
    let index = fs::read_dir(place.repo().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(&index, b"not an index").unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap_err();
    assert_eq!(fs::read_dir(place.repo().join("locks")).unwrap().count(), 0);
}
