//! A repository in an S3 bucket, on moto's S3 server on loopback: with
//! signatures checked, vigie creates the bucket and the repository
//! (HEAD, PUT) and a wrong secret is refused with S3's own words; and,
//! signatures not checked, vigie backs up twice and opens again, restic
//! reads and checks what vigie wrote there, and vigie what restic wrote.
//!
//! moto checks no listing with a `/` in its query correctly (restic's
//! fail there too, while AWS's documented examples pass our signer: the
//! unit tests of `backend/s3.rs`), so listings are left to the second
//! server.

use std::process::{Command, Stdio};

use vigie_backup::{Error, RepoSpec, Request, S3Credentials};
use vigie_testkit::need::Need;
use vigie_testkit::require;
use vigie_testkit::s3::S3Server;

use crate::util::{PASSWORD, Place, make_tree};

fn spec(server: &S3Server, bucket: &str, secret: &str) -> RepoSpec {
    RepoSpec::new("offsite", &format!("s3:{}/{bucket}/vigie", server.endpoint))
        .unwrap()
        .with_s3(S3Credentials {
            access_key_id: server.access_key_id.clone(),
            secret_access_key: secret.to_owned(),
            region: "us-east-1".to_owned(),
        })
}

/// restic on the same bucket and prefix.
fn restic(server: &S3Server, place: &Place, bucket: &str, args: &[&str]) -> String {
    let out = Command::new("restic")
        .arg("-r")
        .arg(format!("s3:{}/{bucket}/vigie", server.endpoint))
        .arg("--password-file")
        .arg(place.path("password"))
        .args(["--no-cache", "--quiet"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &server.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_access_key)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn vigie_makes_a_bucket_and_a_repository_with_signed_requests() {
    require!(Need::Moto);
    let server = S3Server::start(true);
    // The bucket does not exist yet: init makes it, then the repository's
    // key and config, every request signed.
    vigie_backup::init(
        &spec(&server, "backups", &server.secret_access_key),
        PASSWORD,
    )
    .unwrap();

    // A wrong secret: S3 says the signature does not match, and so do we.
    let err =
        vigie_backup::open(&spec(&server, "backups", "not-the-secret"), PASSWORD).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP 403") && text.contains("secret_access_key"),
        "{text}"
    );
    assert!(matches!(err, Error::Repository { .. }), "{err:?}");
}

#[test]
fn restic_reads_what_vigie_put_in_a_bucket_and_vigie_what_restic_did() {
    require!(Need::Moto, Need::Restic);
    let server = S3Server::start(false);
    let (place, src) = Place::with_tree();
    std::fs::write(src.join("big"), crate::util::noise(6 * 1024 * 1024 + 3, 9)).unwrap();
    let repo = vigie_backup::init(
        &spec(&server, "shared", &server.secret_access_key),
        PASSWORD,
    )
    .unwrap();
    let ours = repo.backup(&Request::paths(&[&src])).unwrap();
    assert!(ours.bytes_added > 6 * 1024 * 1024, "{ours:?}");
    let again = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_eq!(again.files_new + again.files_changed, 0, "{again:?}");
    restic(&server, &place, "shared", &["check", "--read-data"]);
    let listed = restic(&server, &place, "shared", &["snapshots", "--json"]);
    assert!(listed.contains(&ours.id), "{listed}");

    let more = place.path("more");
    make_tree(&more);
    restic(
        &server,
        &place,
        "shared",
        &["backup", more.to_str().unwrap()],
    );
    let reopened = vigie_backup::open(
        &spec(&server, "shared", &server.secret_access_key),
        PASSWORD,
    )
    .unwrap();
    let theirs = restic(&server, &place, "shared", &["snapshots", "--json"]);
    assert_eq!(reopened.snapshots().unwrap().len(), 3, "{theirs}");
}
