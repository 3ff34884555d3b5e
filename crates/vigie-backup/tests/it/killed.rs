//! A backup killed with SIGKILL at random points: restic still finds
//! the repository clean after each kill, and the next backup completes
//! and restores. The test runs itself as the child it kills (the child
//! is this same test with `VIGIE_TEST_BACKUP_CHILD` set).

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use vigie_backup::Request;
use vigie_testkit::need::Need;
use vigie_testkit::require;

use crate::util::{PASSWORD, Place, noise, read_tree};

const CHILD: &str = "VIGIE_TEST_BACKUP_CHILD";
const NAME: &str = "killed::a_backup_killed_at_random_points_leaves_restic_check_clean";

/// Enough data that a backup lasts a good fraction of a second: 48
/// files of 1 MiB and a few hundred small ones, none alike.
fn make_source(src: &Path, round: u64) {
    for d in 0..8u64 {
        let dir = src.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..6u64 {
            let seed = round * 1000 + d * 10 + f;
            fs::write(dir.join(format!("big{f}")), noise(1 << 20, seed)).unwrap();
        }
        for f in 0..40u64 {
            let seed = round * 100_000 + d * 100 + f + 500;
            fs::write(dir.join(format!("small{f}")), noise(700, seed)).unwrap();
        }
    }
}

/// The child's part: open, back up `src`, and get killed somewhere.
fn child(spec: &str) {
    let (repo, src) = spec.split_once('\n').unwrap();
    let spec = vigie_backup::RepoSpec::new("killed", repo).unwrap();
    let repo = vigie_backup::open(&spec, PASSWORD).unwrap();
    repo.backup(&Request::paths(&[src])).unwrap();
}

#[test]
fn a_backup_killed_at_random_points_leaves_restic_check_clean() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    require!(Need::Restic);
    let place = Place::new();
    let src = place.path("src");
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("kill points from seed {seed}");
    // Round 0 runs to its end and times a backup; each later round is
    // killed at a random point of that time (key derivation, reading,
    // pack, index and snapshot writes alike).
    let points = noise(5, u64::from(seed));
    let mut full = Duration::ZERO;
    let (mut killed, mut completed) = (0, 0);
    for (round, r) in points.iter().enumerate() {
        // New data each round, so that each backup has packs to write.
        make_source(&src.join(format!("round{round}")), round as u64);
        let log = place.path(&format!("child{round}.log"));
        let start = Instant::now();
        let mut kid = Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture"])
            .env(
                CHILD,
                format!("{}\n{}", place.repo().display(), src.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if round > 0 {
            // 10 % to 100 % of a whole backup, in 256 steps.
            let at = full.mul_f64(0.1 + 0.9 * f64::from(*r) / 255.0);
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            kid.kill().unwrap();
        }
        let status = kid.wait().unwrap();
        let took = start.elapsed();
        eprintln!("round {round}: {status} after {took:?}");
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            let log = fs::read_to_string(&log).unwrap();
            assert!(status.success(), "round {round}: {status}\n{log}");
            completed += 1;
            full = full.max(took);
        }
        // A killed backup may leave its shared lock, which restic would
        // refuse until `restic unlock`: keep it, for the next backup to
        // ignore.
        place.restic_check_with(&["--no-lock"]);
    }
    assert!(
        killed >= 2,
        "only {killed} of 4 backups were killed before their end"
    );
    // Whatever the kills left, the next backup completes (the locks
    // left are stale: this host, their processes gone; restic agrees
    // and `unlock` removes them), restic finds the repository clean, and
    // the snapshot restores identically.
    let summary = repo.backup(&Request::paths(&[&src])).unwrap();
    place.restic(&["unlock"]);
    assert_eq!(fs::read_dir(place.repo().join("locks")).unwrap().count(), 0);
    place.restic_check();
    assert_eq!(repo.snapshots().unwrap().len(), completed + 1);
    let target = place.path("restored");
    place.restic(&["restore", &summary.id, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert!(
        read_tree(&src).0 == read_tree(&restored).0,
        "restored tree differs"
    );
}

const PRUNE_CHILD: &str = "VIGIE_TEST_PRUNE_CHILD";
const PRUNE_NAME: &str = "killed::a_prune_killed_at_random_points_leaves_restic_check_clean";

/// The child's part: open the repository at `repo` and prune it.
fn prune_child(repo: &str) {
    let spec = vigie_backup::RepoSpec::new("killed", repo).unwrap();
    let repo = vigie_backup::open(&spec, PASSWORD).unwrap();
    repo.prune().unwrap();
}

/// Copies a repository (to time a prune on the copy).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn prune_kid(repo: &Path, log: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([PRUNE_NAME, "--exact", "--nocapture"])
        .env(PRUNE_CHILD, repo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn a_prune_killed_at_random_points_leaves_restic_check_clean() {
    if let Ok(repo) = std::env::var(PRUNE_CHILD) {
        prune_child(&repo);
        return;
    }
    require!(Need::Restic);
    let place = Place::new();
    let src = place.path("src");
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    // Four snapshots, each with data of its own and some shared, then
    // all but the last forgotten: the prune has packs to drop and to
    // repack.
    for round in 0..4u64 {
        let _ = fs::remove_dir_all(&src);
        make_source(&src.join("kept"), 99);
        make_source(&src.join(format!("gone{round}")), round);
        repo.backup(&Request::paths(&[&src])).unwrap();
    }
    let keep = vigie_backup::Keep {
        last: Some(1),
        ..vigie_backup::Keep::default()
    };
    let plan = repo
        .forget(&vigie_backup::SnapshotFilter::default(), &keep, false)
        .unwrap();
    assert_eq!(plan.removed().len(), 3);
    // A whole prune, timed on a copy.
    let copy = place.path("copy");
    copy_tree(&place.repo(), &copy);
    let start = Instant::now();
    let status = prune_kid(&copy, &place.path("full.log")).wait().unwrap();
    let full = start.elapsed();
    assert!(
        status.success(),
        "{}",
        fs::read_to_string(place.path("full.log")).unwrap()
    );
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("prune kill points from seed {seed}; a whole prune took {full:?}");
    for (round, r) in noise(4, u64::from(seed)).iter().enumerate() {
        let log = place.path(&format!("prune{round}.log"));
        let start = Instant::now();
        let mut kid = prune_kid(&place.repo(), &log);
        let at = full.mul_f64(0.1 + 0.9 * f64::from(*r) / 255.0);
        std::thread::sleep(at.saturating_sub(start.elapsed()));
        kid.kill().unwrap();
        let status = kid.wait().unwrap();
        eprintln!("prune round {round}: {status}");
        if status.signal() != Some(9) {
            let log = fs::read_to_string(&log).unwrap();
            assert!(status.success(), "prune round {round}: {status}\n{log}");
        }
        place.restic_check_with(&["--no-lock"]);
    }
    // Whatever the kills left, a prune completes (their locks are
    // stale) and the snapshot kept restores identically.
    let again = vigie_backup::open(&place.spec(), PASSWORD).unwrap();
    again.prune().unwrap();
    place.restic(&["unlock"]);
    place.restic_check();
    let kept = again.snapshots().unwrap();
    assert_eq!(kept.len(), 1);
    let target = place.path("restored");
    place.restic(&["restore", &kept[0].id, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert!(
        read_tree(&src).0 == read_tree(&restored).0,
        "restored tree differs"
    );
}
