//! The errors a user meets, typed, with what to do in their message.

use std::fs;
use std::path::Path;

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
    for (repository, scheme) in [
        ("sftp:nas:/srv/restic", "sftp"),
        ("s3:https://s3.example.org/bucket", "s3"),
        ("rest:http://127.0.0.1:8000/", "rest"),
    ] {
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

    let err = repo.backup(&[&src, &missing], &[], &[]).unwrap_err();
    let Error::Path { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &missing);
    assert!(err.to_string().contains("check `paths`"), "{err}");

    let err = repo.backup::<&Path>(&[], &[], &[]).unwrap_err();
    assert!(matches!(err, Error::NoPaths { .. }), "{err:?}");

    for tag in ["a,b", "", "  "] {
        let err = repo.backup(&[&src], &[], &[tag.to_owned()]).unwrap_err();
        assert!(matches!(err, Error::Tag { .. }), "{tag:?}: {err:?}");
    }

    let err = repo
        .backup(&[&src], &["ok/*".to_owned(), "bad[".to_owned()], &[])
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
