//! Dumps against the real restic: a command's output stored as a file
//! of the snapshot, restored whole by restic; a failed command leaves no
//! snapshot.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigie_backup::{Dump, Error, Request};
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place, read_tree};

/// Whether two files hold the same bytes, read in blocks.
fn same_bytes(left: &Path, right: &Path) -> bool {
    let mut files = (File::open(left).unwrap(), File::open(right).unwrap());
    let mut blocks = (vec![0; 1 << 20], vec![0; 1 << 20]);
    loop {
        let got = (
            read_full(&mut files.0, &mut blocks.0),
            read_full(&mut files.1, &mut blocks.1),
        );
        if got.0 != got.1 || blocks.0[..got.0] != blocks.1[..got.1] {
            return false;
        }
        if got.0 == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]).unwrap() {
            0 => break,
            n => len += n,
        }
    }
    len
}

/// The node at `path` of the latest snapshot, as `restic ls --json`
/// lists it.
fn restic_node(place: &Place, path: &str) -> serde_json::Value {
    place
        .restic(&["ls", "--json", "latest"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|n| n["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in the snapshot"))
}

#[test]
fn restic_restores_a_200_mib_dump_whole_beside_the_paths() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let big = place.path("big.bin");
    let made = Command::new("head")
        .args(["-c", "209715200", "/dev/urandom"])
        .stdout(File::create(&big).unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let started = Instant::now();
    let summary = repo
        .backup(&Request {
            dumps: vec![Dump::new("big.dump", &["cat", big.to_str().unwrap()])],
            ..Request::paths(&[&src])
        })
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "vigie: 200 MiB dump in {took:.2?} ({:.0} MiB/s)",
        200.0 / took.as_secs_f64()
    );
    // The tree's 9 files and the dump.
    assert_eq!(summary.files, 10, "{summary:?}");
    assert!(summary.bytes_processed > 200 << 20, "{summary:?}");

    // One snapshot holds both.
    let listed = place.restic_snapshots();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], summary.id.as_str());
    let mut paths: Vec<&str> = listed[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/big.dump", src.to_str().unwrap()]);
    // Its real size is in the tree: restic restores the whole file.
    let node = restic_node(&place, "/big.dump");
    assert_eq!(node["size"], 209_715_200, "{node}");
    assert_eq!(node["mode"], 0o600, "{node}");
    place.restic_check();
    let target = place.path("restored");
    place.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join("big.dump");
    assert_eq!(std::fs::metadata(&restored).unwrap().len(), 209_715_200);
    assert!(same_bytes(&big, &restored), "the restored dump differs");
    let tree = target.join(src.strip_prefix("/").unwrap());
    assert!(
        read_tree(&src).0 == read_tree(&tree).0,
        "restored tree differs"
    );

    // Beside restic reading the same bytes on its stdin.
    let other = Place::new();
    other.restic(&["init"]);
    let started = Instant::now();
    let status = Command::new("restic")
        .arg("-r")
        .arg(other.repo())
        .arg("--password-file")
        .arg(other.path("password"))
        .args(["--no-cache", "--quiet", "backup", "--stdin"])
        .args(["--stdin-filename", "big.dump"])
        .stdin(File::open(&big).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let took = started.elapsed();
    eprintln!(
        "restic backup --stdin: 200 MiB in {took:.2?} ({:.0} MiB/s)",
        200.0 / took.as_secs_f64()
    );
}

#[test]
fn a_dump_that_fails_halfway_leaves_no_snapshot() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let first = repo.backup(&Request::paths(&[&src])).unwrap();
    let failing = |run: &str| Request {
        dumps: vec![
            Dump::new("fine.txt", &["echo", "fine"]),
            Dump::new("db.sql", &["sh", "-c", run]),
        ],
        ..Request::paths(&[&src])
    };
    let err = repo
        .backup(&failing(
            "head -c 5000000 /dev/urandom; echo 'pg_dump: error: connection lost' >&2; exit 2",
        ))
        .unwrap_err();
    let Error::Dump {
        name,
        status,
        stderr,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(name, "db.sql");
    assert_eq!(status, "exited with status 2");
    assert_eq!(stderr, "pg_dump: error: connection lost");
    let text = err.to_string();
    assert!(text.contains("no snapshot was written"), "{text}");
    assert!(text.contains("`sh` exited with status 2"), "{text}");

    // The message is stored with the run and shown on the dashboard: a
    // password among the arguments stays out of it.
    let err = repo
        .backup(&Request {
            dumps: vec![Dump::new(
                "db.sql",
                &["sh", "-c", "exit 3", "mysqldump", "-pS3cretPass"],
            )],
            ..Request::paths(&[&src])
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`sh` exited with status 3"), "{text}");
    assert!(!text.contains("S3cretPass"), "{text}");

    let err = repo
        .backup(&failing("head -c 3000000 /dev/zero; kill -9 $$"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Dump { status, .. } if status == "was killed (SIGKILL)"),
        "{err:?}"
    );
    let err = repo
        .backup(&Request {
            dumps: vec![Dump::new("x", &["/nonexistent/mysqldump"])],
            ..Request::default()
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot start \"/nonexistent/mysqldump\""),
        "{err}"
    );

    // Nothing was written that restic would list, nor a lock left; the
    // repository is clean.
    let ids: Vec<String> = place
        .restic_snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [first.id]);
    assert_eq!(
        std::fs::read_dir(place.repo().join("locks"))
            .unwrap()
            .count(),
        0
    );
    place.restic_check();
}

#[test]
fn a_dump_is_run_anew_at_each_backup() {
    require!(Need::Restic);
    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let dump = |text: &str| Request {
        dumps: vec![Dump::new("state.txt", &["echo", text])],
        ..Request::default()
    };
    let first = repo.backup(&dump("one")).unwrap();
    let second = repo.backup(&dump("two")).unwrap();
    // Same length, same metadata but the time: read again all the same.
    assert_eq!(second.files_changed, 1, "{second:?}");
    assert_eq!(place.restic(&["dump", &first.id, "/state.txt"]), "one\n");
    assert_eq!(place.restic(&["dump", &second.id, "/state.txt"]), "two\n");
    // No output is an empty file.
    repo.backup(&Request {
        dumps: vec![Dump::new("state.txt", &["true"])],
        ..Request::default()
    })
    .unwrap();
    assert_eq!(place.restic(&["dump", "latest", "/state.txt"]), "");
    assert_eq!(restic_node(&place, "/state.txt")["size"], 0);
    place.restic_check();
}

#[test]
fn dumps_take_their_place_among_the_top_level_names() {
    require!(Need::Restic);
    let (place, src) = Place::with_tree();
    let top = src.components().nth(1).unwrap();
    let top = top.as_os_str().to_str().unwrap().to_owned();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    // One name before the tree's top-level directory, one after.
    let (before, after) = (format!("0-{top}"), format!("{top}~"));
    let summary = repo
        .backup(&Request {
            dumps: vec![
                Dump::new(&after, &["echo", "after"]),
                Dump::new(&before, &["echo", "before"]),
            ],
            ..Request::paths(&[&src])
        })
        .unwrap();
    assert_eq!(place.restic_snapshots()[0]["id"], summary.id.as_str());
    // restic finds the trees sorted and whole.
    place.restic_check();
    assert_eq!(
        place.restic(&["dump", "latest", &format!("/{before}")]),
        "before\n"
    );
    assert_eq!(
        place.restic(&["dump", "latest", &format!("/{after}")]),
        "after\n"
    );
    let target = place.path("restored");
    place.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let tree = target.join(src.strip_prefix("/").unwrap());
    assert!(
        read_tree(&src).0 == read_tree(&tree).0,
        "restored tree differs"
    );
    // A second run has the first as parent: the files are not read
    // again, the dumps are.
    let second = repo
        .backup(&Request {
            dumps: vec![
                Dump::new(&before, &["echo", "again"]),
                Dump::new(&after, &["echo", "after"]),
            ],
            ..Request::paths(&[&src])
        })
        .unwrap();
    assert_eq!(
        place.restic(&["dump", "latest", &format!("/{before}")]),
        "again\n"
    );
    assert_eq!(
        (second.files_new, second.files_changed),
        (0, 2),
        "{second:?}"
    );
}

const CHILD: &str = "VIGIE_TEST_DUMP_CHILD";
const CHILD_NAME: &str = "dumps::a_backup_killed_during_a_dump_leaves_no_snapshot";

#[test]
fn a_backup_killed_during_a_dump_leaves_no_snapshot() {
    if let Ok(spec) = std::env::var(CHILD) {
        // The child: a backup whose dump writes 20 MB, says where it
        // is (its process group), and waits.
        let (repo, mark) = spec.split_once('\n').unwrap();
        let spec = vigie_backup::RepoSpec::new("killed", repo).unwrap();
        let repo = vigie_backup::open(&spec, PASSWORD).unwrap();
        let run = format!(
            "head -c 20000000 /dev/urandom; echo $$ > {mark}.tmp; mv {mark}.tmp {mark}; sleep 60"
        );
        let _ = repo.backup(&Request {
            dumps: vec![Dump::new("db.sql", &["sh", "-c", &run])],
            ..Request::default()
        });
        return;
    }
    require!(Need::Restic);
    let place = Place::new();
    vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let mark = place.path("dumping");
    let mut kid = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            CHILD,
            format!("{}\n{}", place.repo().display(), mark.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(2);
    while !mark.exists() {
        assert!(Instant::now() < deadline, "the dump did not get under way");
        assert!(kid.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    kid.kill().unwrap();
    assert_eq!(kid.wait().unwrap().signal(), Some(9));
    // The dump's own group, orphaned, is ours to end.
    let group: i32 = std::fs::read_to_string(&mark)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(group).unwrap(),
        rustix::process::Signal::KILL,
    );
    // Its data may be in packs; no snapshot names it, and the
    // repository is clean beside the stale lock, which the next run
    // ignores.
    assert!(place.restic_snapshots().is_empty());
    place.restic_check_with(&["--no-lock"]);
    let repo = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    repo.backup(&Request {
        dumps: vec![Dump::new("db.sql", &["echo", "whole"])],
        ..Request::default()
    })
    .unwrap();
    assert_eq!(place.restic(&["dump", "latest", "/db.sql"]), "whole\n");
}

#[test]
fn a_backup_whose_lock_is_removed_meanwhile_writes_no_snapshot() {
    require!(Need::Restic);
    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    // The dump itself removes every lock, as `restic unlock
    // --remove-all` run by someone else would.
    let run = format!(
        "restic -r {} --password-file {} --no-cache -q unlock --remove-all >&2 && echo done",
        place.repo().display(),
        place.path("password").display()
    );
    let err = repo
        .backup(&Request {
            dumps: vec![Dump::new("db.sql", &["sh", "-c", &run])],
            ..Request::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err:?}");
    assert!(err.to_string().contains("run the backup again"), "{err}");
    assert!(place.restic_snapshots().is_empty());
    place.restic_check();
}
