//! A repository behind restic's REST protocol, on the strict server of
//! `vigie-testkit` (which refuses what the protocol does not allow):
//! restic itself backs up, checks and restores through it, which shows
//! the server right; then vigie backs up over it and restic checks and
//! restores that, vigie reads what restic wrote (from an old server
//! that lists in version 1 only), a wrong password is refused without
//! being printed, a closed port is a clear error, and restic's `prune`
//! waits for the lock vigie holds over `rest:`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use vigie_backup::{Error, LockKind, RepoSpec, Request, RestCredentials};
use vigie_testkit::need::Need;
use vigie_testkit::require;
use vigie_testkit::rest::{RestOptions, RestServer, V2};

use crate::util::{PASSWORD, Place, make_tree, read_tree};

/// restic on `rest:URL`.
fn restic_output(place: &Place, url: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(format!("rest:{url}"))
        .arg("--password-file")
        .arg(place.path("password"))
        .args(["--no-cache", "--quiet"])
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The same, which must succeed: its standard output.
fn restic(place: &Place, url: &str, args: &[&str]) -> String {
    let out = restic_output(place, url, args);
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `restic check --read-data`: every pack read back through the server.
fn restic_check(place: &Place, url: &str) {
    let out = restic_output(place, url, &["check", "--read-data"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.to_lowercase().contains("error"),
        "restic check:\n{text}"
    );
}

/// restic restores snapshot `id` and finds `src` in it as it is.
fn restic_restores(place: &Place, url: &str, id: &str, src: &Path) {
    let target = place.path(&format!("restored-{id}"));
    restic(
        place,
        url,
        &["restore", id, "--target", target.to_str().unwrap()],
    );
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
}

fn assert_same_tree(want: &Path, got: &Path) {
    let (want, _) = read_tree(want);
    let (got, _) = read_tree(got);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &want {
        // Not assert_eq!: a big file's bytes are no message.
        assert!(Some(entry) == got.get(path), "{} differs", path.display());
    }
}

fn spec(repository: &str) -> RepoSpec {
    RepoSpec::new("offsite", repository).unwrap()
}

#[test]
fn restic_backs_up_checks_and_restores_through_the_strict_server() {
    require!(Need::Restic);
    let server = RestServer::start(RestOptions::default());
    let (place, src) = Place::with_tree();
    std::fs::write(src.join("big"), crate::util::noise(5 * 1024 * 1024 + 1, 3)).unwrap();
    let url = server.url();

    restic(&place, &url, &["init"]);
    restic(&place, &url, &["backup", src.to_str().unwrap()]);
    restic_check(&place, &url);
    let snapshots: Vec<serde_json::Value> =
        serde_json::from_str(&restic(&place, &url, &["snapshots", "--json"])).unwrap();
    let id = snapshots[0]["short_id"].as_str().unwrap();
    restic_restores(&place, &url, id, &src);

    // The server saw no request it refused, restic asked for version 2
    // listings and read ranges; on disk, restic's own local layout,
    // which restic opens as a directory as well.
    let log = server.requests();
    let refused: Vec<_> = log.iter().filter(|r| r.status >= 400).collect();
    assert!(
        refused
            .iter()
            .all(|r| r.status == 404 && r.method == "HEAD" && r.target == "/config"),
        "{refused:?}"
    );
    assert!(
        log.iter()
            .any(|r| r.target.ends_with('/') && r.accept.as_deref() == Some(V2))
    );
    assert!(log.iter().any(|r| r.status == 206));
    let out = Command::new("restic")
        .arg("-r")
        .arg(server.root())
        .arg("--password-file")
        .arg(place.path("password"))
        .args(["--no-cache", "--quiet", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn vigie_backs_up_over_rest_and_restic_restores_it() {
    require!(Need::Restic);
    let server = RestServer::start(RestOptions {
        path: "/my_backup_repo/".to_owned(),
        auth: Some(("alice".to_owned(), "s3cret".to_owned())),
        ..RestOptions::default()
    });
    let url = server.url_with("alice", "s3cret");
    let (place, src) = Place::with_tree();
    // A file of several packs, so reads span ranges of many packs.
    std::fs::write(src.join("big"), crate::util::noise(9 * 1024 * 1024 + 17, 7)).unwrap();

    let repo = vigie_backup::init(&spec(&format!("rest:{url}")), PASSWORD).unwrap();
    let first = repo.backup(&Request::paths(&[&src])).unwrap();
    assert!(first.bytes_added > 9 * 1024 * 1024, "{first:?}");
    let second = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_eq!(second.files_new + second.files_changed, 0, "{second:?}");

    restic_check(&place, &url);
    restic_restores(&place, &url, &second.id, &src);

    // Opened again, with the user and password given apart (as the
    // config does) rather than in the URL: vigie lists both snapshots,
    // verifies every pack and restores through ranges.
    let apart = spec(&format!("rest:{}", server.url())).with_rest(RestCredentials {
        user: "alice".to_owned(),
        password: "s3cret".to_owned(),
    });
    let again = vigie_backup::open(&apart, PASSWORD).unwrap();
    let ids: Vec<String> = again
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.id) && ids.contains(&second.id));
    let report = again.check(Some("all")).unwrap();
    assert!(report.is_ok() && report.read_data, "{report:?}");
    let to = place.path("vigie-restored");
    again
        .restore(
            &vigie_backup::RestoreRequest {
                filter: &vigie_backup::SnapshotFilter::default(),
                snapshot: Some(&first.id),
                path: None,
                to: &to,
                overwrite: false,
            },
            &(),
        )
        .unwrap();
    assert_same_tree(&src, &to.join(src.strip_prefix("/").unwrap()));

    // Every listing asked for version 2; packs were read in ranges; and
    // the strict server refused nothing but the first look for a config.
    let log = server.requests();
    assert!(
        log.iter()
            .filter(|r| r.method == "GET" && r.target.ends_with('/'))
            .all(|r| r.accept.as_deref() == Some(V2))
    );
    assert!(
        log.iter()
            .any(|r| r.status == 206 && r.target.contains("/data/"))
    );
    let refused: Vec<_> = log
        .iter()
        .filter(|r| r.status >= 400 && r.target != "/my_backup_repo/config")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn vigie_reads_what_restic_wrote_from_a_server_that_lists_in_version_1() {
    require!(Need::Restic);
    let server = RestServer::start(RestOptions {
        v2: false,
        ..RestOptions::default()
    });
    let url = server.url();
    let (place, src) = Place::with_tree();
    restic(&place, &url, &["init"]);
    restic(&place, &url, &["backup", src.to_str().unwrap()]);

    let repo = vigie_backup::open(&spec(&format!("rest:{url}")), PASSWORD).unwrap();
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    let more = place.path("more");
    make_tree(&more);
    let ours = repo.backup(&Request::paths(&[&more])).unwrap();
    restic_check(&place, &url);
    restic_restores(&place, &url, &ours.id, &more);
    // Sizes came from a HEAD per file, as version 1 needs.
    let log = server.requests();
    assert!(
        log.iter()
            .any(|r| r.method == "HEAD" && r.target.starts_with("/keys/") && r.status == 200),
        "{log:?}"
    );
}

#[test]
fn a_wrong_password_is_refused_clearly_and_never_shown() {
    let server = RestServer::start(RestOptions {
        auth: Some(("alice".to_owned(), "s3cret".to_owned())),
        ..RestOptions::default()
    });
    let wrong = format!("rest:{}", server.url_with("alice", "wrong-horse"));
    let spec = spec(&wrong);
    assert!(!format!("{spec:?}").contains("wrong-horse"), "{spec:?}");
    let err = vigie_backup::init(&spec, PASSWORD).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("check the repository's user and password"),
        "{text}"
    );
    assert!(text.contains("alice:***@"), "{text}");
    for shown in [text, format!("{err:?}")] {
        assert!(!shown.contains("wrong-horse"), "{shown}");
    }
    assert!(matches!(err, Error::Repository { .. }), "{err:?}");
    // None at all: the same refusal.
    let err = vigie_backup::open(
        &RepoSpec::new("offsite", &format!("rest:{}", server.url())).unwrap(),
        PASSWORD,
    )
    .unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");
}

#[test]
fn an_unreachable_server_or_a_malformed_url_is_a_clear_error() {
    // A port nobody listens on (bound, then freed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = spec(&format!("rest:http://bob:hunter2@127.0.0.1:{port}/"));
    let err = vigie_backup::open(&closed, PASSWORD).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.to_lowercase().contains("connect"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let err = RepoSpec::new("offsite", "rest:nas:8000/").unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("rest:http(s)://"), "{err}");
    let err = RepoSpec::new("offsite", "rest:ftp://u:hunter2@nas/").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn restic_prune_waits_for_vigie_s_lock_over_rest() {
    require!(Need::Restic);
    let server = RestServer::start(RestOptions::default());
    let url = server.url();
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&spec(&format!("rest:{url}")), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();

    let guard = repo.lock(LockKind::Shared).unwrap();
    let locks = restic(&place, &url, &["list", "locks"]);
    assert_eq!(locks.lines().collect::<Vec<_>>(), vec![guard.id()]);
    let out = restic_output(&place, &url, &["prune"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "prune ran beside vigie's lock");
    assert!(
        said.contains(&format!("PID {}", std::process::id())),
        "{said}"
    );

    drop(guard);
    assert!(restic(&place, &url, &["list", "locks"]).trim().is_empty());
    restic(&place, &url, &["prune"]);
    restic_check(&place, &url);
}

/// An HTTPS server whose certificate a private CA signed: refused on the
/// system's roots alone, reached with `ca` (restic's `--cacert`). The
/// server is no REST server: reached, it has no repository to show.
#[test]
fn a_private_ca_is_trusted_only_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let server = vigie_testkit::servers::https(vigie_testkit::servers::Cert::ValidFor(30), &ca);
    let url = format!("rest:https://127.0.0.1:{}/", server.addr.port());
    let refused = vigie_backup::reach(&RepoSpec::new("off", &url).unwrap()).unwrap_err();
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );
    let reached =
        vigie_backup::reach(&RepoSpec::new("off", &url).unwrap().with_ca(ca.clone())).unwrap_err();
    assert!(
        matches!(reached, Error::NoRepository { .. }),
        "past TLS, the server holds no repository: {reached}"
    );
}
