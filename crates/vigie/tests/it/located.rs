//! The CLI finds its daemon: `status`, `incidents` and the like use the
//! running daemon's configuration and state without `-c` again.

use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use vigie_testkit::{Env, check};

use crate::util::{env, start, wait_state};

/// A daemon of `e` with one check, `own-check`, failing; returns once
/// the store has its failing state.
fn failing_daemon(e: &Env) -> vigie_testkit::daemon::Daemon {
    let d = start(
        e,
        &check(
            "own-check",
            "command = { argv = [\"false\"] }",
            "every = \"200ms\"",
        ),
    );
    wait_state(&d, "own-check", "failing", Duration::from_secs(10));
    vigie_testkit::wait_until(Duration::from_secs(5), || e.run(&["status"]).code == 1);
    d
}

/// `vigie ARGS` from another directory, without the harness's
/// `VIGIE_CONFIG` (and `VIGIE_STATE_DIR` unless `keep_state_dir`); the
/// harness's runtime directory stays: it stands for /run/vigie.
fn run_bare(e: &Env, args: &[&str], keep_state_dir: bool) -> vigie_testkit::Run {
    let elsewhere = tempfile::tempdir().unwrap();
    let mut c = e.cmd(args);
    c.env_remove("VIGIE_CONFIG").current_dir(elsewhere.path());
    if !keep_state_dir {
        c.env_remove("VIGIE_STATE_DIR");
    }
    e.run_cmd(&mut c)
}

fn names(r: &vigie_testkit::Run) -> Vec<String> {
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn status_without_flags_shows_the_running_daemons_checks() {
    let e = env();
    let _d = failing_daemon(&e);
    // Before, this listed the quickstart's checks as "unknown" and said
    // all was well.
    let r = run_bare(&e, &["status", "--json"], false);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(names(&r), ["own-check"], "{r:?}");
    let r = run_bare(&e, &["incidents", "--json"], false);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("own-check"), "{r:?}");
}

#[test]
fn a_state_directory_alone_brings_the_configuration_it_belongs_to() {
    let e = env();
    let mut d = failing_daemon(&e);
    let r = run_bare(&e, &["status", "--json"], true);
    assert_eq!(names(&r), ["own-check"], "{r:?}");
    // Stopped: the runtime record goes, the state directory's stays, so
    // the last results are still read with their configuration.
    d.signal(Signal::TERM);
    d.wait(Duration::from_secs(5));
    assert!(!e.runtime_dir().join("daemon.json").exists());
    let r = run_bare(&e, &["status", "--json"], true);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(names(&r), ["own-check"], "{r:?}");
}

#[test]
fn a_configuration_named_on_the_command_line_wins() {
    let e = env();
    let _d = failing_daemon(&e);
    let other = e.write(
        "other.toml",
        &check("another", "command = { argv = [\"true\"] }", ""),
    );
    let r = run_bare(
        &e,
        &["status", "--json", "-c", other.to_str().unwrap()],
        true,
    );
    assert_eq!(names(&r), ["another"], "{r:?}");
}

#[test]
fn the_record_says_where_the_daemon_runs() {
    let e = env();
    let _d = failing_daemon(&e);
    for path in [
        e.runtime_dir().join("daemon.json"),
        e.state_dir().join("daemon.json"),
    ] {
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["config"], e.config_path().display().to_string(), "{v}");
        assert_eq!(v["state_dir"], e.state_dir().display().to_string(), "{v}");
        assert!(
            v["api"].as_str().unwrap().starts_with("http://127.0.0.1:"),
            "{v}"
        );
        assert!(v["pid"].as_u64().is_some(), "{v}");
    }
}

/// A record another user wrote is not followed: it would choose the
/// configuration, and so the secret files, that the command reads.
#[test]
fn a_record_written_by_another_user_is_ignored() {
    vigie_testkit::require!(vigie_testkit::Need::Root);
    let e = env();
    let _d = failing_daemon(&e);
    let record = e.state_dir().join("daemon.json");
    rustix::fs::chown(
        &record,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let r = run_bare(&e, &["status", "--json"], true);
    assert!(!names(&r).contains(&"own-check".to_owned()), "{r:?}");
    assert!(
        r.stderr
            .contains("ignoring the daemon's record: it is not a file of this user's nor root's that only they may write"),
        "{r:?}"
    );
    // Root's file, but in a directory others may write: a swap is
    // possible there, so it is not followed either.
    rustix::fs::chown(
        &record,
        Some(rustix::fs::Uid::ROOT),
        Some(rustix::fs::Gid::ROOT),
    )
    .unwrap();
    let r = run_bare(&e, &["status", "--json"], true);
    assert_eq!(names(&r), ["own-check"], "{r:?}");
    std::fs::set_permissions(
        e.state_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let r = run_bare(&e, &["status", "--json"], true);
    assert!(!names(&r).contains(&"own-check".to_owned()), "{r:?}");
    assert!(r.stderr.contains("others may write in it"), "{r:?}");
    // A link planted where the record is, even to root's own record, is
    // not followed.
    std::fs::set_permissions(
        e.state_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let elsewhere = e.path().join("record-elsewhere.json");
    std::fs::rename(&record, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &record).unwrap();
    let r = run_bare(&e, &["status", "--json"], true);
    assert!(!names(&r).contains(&"own-check".to_owned()), "{r:?}");
}
