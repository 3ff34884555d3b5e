//! Locks against the real restic: restic reads vigie's locks and stops
//! for them, vigie reads restic's and stops for them, and a lock left by
//! a killed process is stale for the next run on this host.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigie_backup::{Error, LockKind, Request};
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place};

const CHILD: &str = "VIGIE_TEST_LOCK_CHILD";
const CHILD_NAME: &str = "locks::a_lock_left_by_a_killed_process_is_stale_on_this_host";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// The ids in `locks/`, as restic lists them.
fn restic_locks(place: &Place) -> Vec<String> {
    place
        .restic(&["list", "locks"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn files_in_locks(place: &Place) -> usize {
    std::fs::read_dir(place.repo().join("locks")).map_or(0, Iterator::count)
}

/// Waits (at most 30 s) until `locks/` holds `n` files.
fn wait_for_locks(place: &Place, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_in_locks(place) != n {
        assert!(Instant::now() < deadline, "no {n} lock files after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restic_reads_vigies_lock_and_prune_stops_for_it() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request::paths(&[&src])).unwrap();
    // The backup's lock is gone with it.
    assert!(restic_locks(&place).is_empty());

    let guard = repo.lock(LockKind::Shared).unwrap();
    assert_eq!(restic_locks(&place), vec![guard.id()]);
    let json: serde_json::Value =
        serde_json::from_str(&place.restic(&["cat", "lock", &guard.id()])).unwrap();
    assert_eq!(json["pid"], std::process::id());
    assert_eq!(json["hostname"], hostname().as_str());
    assert_eq!(json["exclusive"], false);
    let time = json["time"].as_str().unwrap();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{json}");

    // Prune wants the repository alone: restic refuses, naming us.
    let out = place.restic_output(&["prune"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "prune ran beside vigie's lock");
    assert!(
        said.contains(&format!("PID {} on {}", std::process::id(), hostname())),
        "{said}"
    );
    // This host, a live pid: `restic unlock` leaves it. (restic 0.14
    // asks whether the pid runs by sending it SIGHUP: this test process
    // survives it, which is the regression this line guards.)
    place.restic(&["unlock"]);
    assert_eq!(restic_locks(&place), vec![guard.id()]);

    // A refresh is a new file that restic reads the same.
    let before = guard.id();
    guard.refresh().unwrap();
    assert_ne!(guard.id(), before);
    assert_eq!(restic_locks(&place), vec![guard.id()]);
    place.restic(&["cat", "lock", &guard.id()]);

    drop(guard);
    assert!(restic_locks(&place).is_empty());
    place.restic(&["prune"]);
    place.restic_check();
}

#[test]
fn vigie_backs_up_beside_a_restic_backup_but_waits_to_prune() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    // restic backs up a slow stdin: its shared lock stays until the end.
    let mut restic = Command::new("restic")
        .arg("-r")
        .arg(place.repo())
        .arg("--password-file")
        .arg(place.path("password"))
        .args(["--no-cache", "--quiet", "backup", "--stdin"])
        .args(["--stdin-filename", "slow.txt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut feed = restic.stdin.take().unwrap();
    feed.write_all(b"first part\n").unwrap();
    wait_for_locks(&place, 1);

    // Shared beside shared: the backup runs.
    let summary = repo.backup(&Request::paths(&[&src])).unwrap();
    // Exclusive: refused, with restic's pid and what to do.
    let err = repo.lock(LockKind::Exclusive).unwrap_err();
    let Error::Locked { by, .. } = &err else {
        panic!("not refused for restic's lock: {err:?}");
    };
    assert_eq!(by.pid, i64::from(restic.id()));
    assert!(!by.exclusive);
    assert_eq!(by.hostname, hostname());
    let text = err.to_string();
    assert!(text.contains("wait for it to finish"), "{text}");
    assert!(text.contains("unlock"), "{text}");
    // Only restic's lock is left: the refused one removed nothing else
    // and left nothing of its own.
    assert_eq!(files_in_locks(&place), 1);

    feed.write_all(b"second part\n").unwrap();
    drop(feed);
    let out = restic.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in_locks(&place), 0);
    let ids: Vec<String> = place
        .restic_snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&summary.id));
    drop(repo.lock(LockKind::Exclusive).unwrap());
    place.restic_check();
}

#[test]
fn restics_lock_of_a_killed_backup_does_not_stop_vigie() {
    require!(Need::Restic);
    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let mut restic = spawn_restic_stdin_backup(&place);
    wait_for_locks(&place, 1);
    restic.kill().unwrap();
    restic.wait().unwrap();
    // Its lock is left behind, written by restic (compressed: a version
    // 2 repository), and stale: this host, its pid gone.
    assert_eq!(files_in_locks(&place), 1);
    drop(repo.lock(LockKind::Exclusive).unwrap());
    assert_eq!(files_in_locks(&place), 1);
}

fn spawn_restic_stdin_backup(place: &Place) -> Child {
    Command::new("restic")
        .arg("-r")
        .arg(place.repo())
        .arg("--password-file")
        .arg(place.path("password"))
        .args(["--no-cache", "--quiet", "backup", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The child's part: lock the repository exclusively, say so, and wait
/// to be killed.
fn child(repo: &str) {
    let spec = vigie_backup::RepoSpec::new("locked", repo).unwrap();
    let repo = vigie_backup::open(&spec, PASSWORD).unwrap();
    let _guard = repo.lock(LockKind::Exclusive).unwrap();
    println!("locked");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_mins(2));
}

#[test]
fn a_lock_left_by_a_killed_process_is_stale_on_this_host() {
    if let Ok(repo) = std::env::var(CHILD) {
        child(&repo);
        return;
    }
    require!(Need::Restic);
    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let mut kid = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, place.repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut lines = BufReader::new(kid.stdout.take().unwrap());
    while !said.contains("locked") {
        said.clear();
        assert!(
            lines.read_line(&mut said).unwrap() > 0,
            "the child ended before locking"
        );
    }
    // Alive, its exclusive lock stops a backup.
    let err = repo.backup(&Request::paths(&[place.dir.path()]));
    assert!(
        matches!(&err, Err(Error::Locked { by, .. }) if by.exclusive && by.pid == i64::from(kid.id())),
        "{err:?}"
    );
    kid.kill().unwrap();
    assert_eq!(kid.wait().unwrap().signal(), Some(9));
    // Killed, it left its lock, which this host's next run ignores.
    assert_eq!(files_in_locks(&place), 1);
    let guard = repo.lock(LockKind::Exclusive).unwrap();
    assert_eq!(files_in_locks(&place), 2);
    drop(guard);
    // restic agrees it is stale: `unlock` removes it.
    place.restic(&["unlock"]);
    assert_eq!(files_in_locks(&place), 0);
}
