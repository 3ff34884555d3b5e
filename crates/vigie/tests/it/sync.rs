//! Live replication: `vigie sync` against `vigie sync-receive`, locally
//! and through a real OpenSSH server (and a bastion with ProxyJump).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigie_config::Excludes;
use vigie_sync::proto::{self, Entry, FileHead, Msg};
use vigie_sync::{Destination, JobSpec, Status};
use vigie_testkit::sshd::{Client, Sshd};
use vigie_testkit::{Env, Need, Reachable, require, wait_until};

use crate::util::{bin, exits};

/// A scratch directory, in memory where the machine has /dev/shm: the
/// receiver syncs its filesystem at each commit, and on the shared disk
/// that sync also waits for every other test's writes.
fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// Both trees, entry by entry (kind, size, mode, mtime to the
/// nanosecond, link target) and file by file (bytes).
fn tree(root: &Path) -> BTreeMap<Vec<u8>, (Entry, Vec<u8>)> {
    vigie_sync::job::local_tree(root, &Excludes::default())
        .unwrap()
        .into_iter()
        .map(|(k, e)| {
            let bytes = if e.kind == proto::Kind::File {
                use std::os::unix::ffi::OsStrExt;
                std::fs::read(root.join(std::ffi::OsStr::from_bytes(&k))).unwrap_or_default()
            } else {
                Vec::new()
            };
            (k, (e, bytes))
        })
        .collect()
}

fn same_trees(a: &Path, b: &Path) -> bool {
    tree(a) == tree(b)
}

fn assert_same(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    if ta != tb {
        let only_a: Vec<_> = ta
            .iter()
            .filter(|(k, v)| tb.get(*k) != Some(v))
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.0.clone()))
            .collect();
        let only_b: Vec<_> = tb
            .iter()
            .filter(|(k, v)| ta.get(*k) != Some(v))
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.0.clone()))
            .collect();
        panic!("trees differ:\nsource: {only_a:#?}\nreplica: {only_b:#?}");
    }
}

/// Wait until both trees are the same; show the difference if never.
fn wait_same(a: &Path, b: &Path) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        if same_trees(a, b) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_same(a, b);
}

fn local_spec(from: &Path, to: &Path) -> JobSpec {
    let to = Destination::Local {
        path: to.to_string_lossy().into_owned(),
        vigie: bin().into(),
    };
    JobSpec {
        delay: Duration::from_millis(50),
        max_delete: 100_000,
        ..JobSpec::new("t", from, to)
    }
}

/// The replica at `path` on `host` of the ssh configuration `cfg`,
/// through vigie's `remote_vigie` there.
fn ssh_dest(cfg: &Path, host: &str, path: &Path, remote_vigie: &str) -> Destination {
    Destination::Ssh {
        ssh: vec![
            "ssh".into(),
            "-F".into(),
            cfg.to_string_lossy().into_owned(),
        ],
        host: host.into(),
        path: path.to_string_lossy().into_owned(),
        remote_vigie: remote_vigie.into(),
    }
}

/// `src` and `dst` in the test's directory, made.
fn src_and_dst(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let (src, dst) = (env.path().join("src"), env.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    (src, dst)
}

/// A server on a free port of loopback, for a configuration.
const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n";

/// The configuration of a job `web` from `src` to `dst`, with `keys`
/// (lines of TOML) after.
fn web_job(dst: &Path, keys: &str) -> String {
    format!(
        "[[sync]]\nname = \"web\"\nfrom = \"src\"\nto = \"{}\"\n{keys}",
        dst.display()
    )
}

/// `vigie ARGS` started, its output dropped.
fn quietly(env: &Env, args: &[&str]) -> std::process::Child {
    env.cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A live job on a thread; stopped on drop.
struct Live {
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn start(spec: JobSpec) -> Live {
        let status = Arc::new(Mutex::new(Status::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (status.clone(), stop.clone());
        let board = vigie_core::Board::new();
        let thread = std::thread::spawn(move || vigie_sync::run(spec, s, st, board));
        let live = Live {
            status,
            stop,
            thread: Some(thread),
        };
        wait_until(Duration::from_secs(20), || {
            live.status().last_full_scan.is_some()
        });
        live
    }

    fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn populate(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/one.txt"), "one").unwrap();
    std::fs::write(root.join("top.bin"), vec![7u8; 700_000]).unwrap();
    std::fs::write(root.join("secret"), "s").unwrap();
    chmod(root.join("secret"), 0o600);
    symlink("a/b/one.txt", root.join("link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::fs::write(root.join("a/\u{e9}t\u{e9}.txt"), "accent").unwrap();
}

/// Set `path`'s permission bits to `mode`.
fn chmod(path: impl AsRef<Path>, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn once_copies_everything_and_deletes_extras_within_the_limit() {
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    std::fs::write(dst.path().join("extra"), "x").unwrap();
    let spec = local_spec(src.path(), dst.path());
    let s = vigie_sync::once(&spec).unwrap();
    assert_same(src.path(), dst.path());
    assert!(s.bytes_sent >= 700_000, "{s:?}");
    // Nothing changed: nothing sent.
    let s = vigie_sync::once(&spec).unwrap();
    assert_eq!((s.files_sent, s.bytes_sent), (0, 0), "{s:?}");
    // Too many deletions at once are held, not made.
    for i in 0..5 {
        std::fs::write(dst.path().join(format!("x{i}")), "x").unwrap();
    }
    let s = vigie_sync::once(&JobSpec {
        max_delete: 3,
        ..spec.clone()
    })
    .unwrap();
    assert_eq!(s.held_deletes, 5);
    assert!(dst.path().join("x0").exists());
    vigie_sync::once(&spec).unwrap();
    assert_same(src.path(), dst.path());
}

#[test]
fn the_cli_runs_a_configured_job_once() {
    require!(Need::Script);
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    populate(&src);
    std::fs::write(src.join("skip.tmp"), "excluded").unwrap();
    env.config(&web_job(&dst, "exclude = [\"*.tmp\"]\n"));
    let r = env.run(&["sync", "web", "--once"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("web: 4 files, 700010 bytes sent to "),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("comparing"), "no bar off a terminal");
    assert!(!dst.join("skip.tmp").exists());
    // Gone from the source as it is from the replica (the root's time
    // kept: it is compared too).
    let root_mtime = src.metadata().unwrap().modified().unwrap();
    std::fs::remove_file(src.join("skip.tmp")).unwrap();
    std::fs::File::open(&src)
        .unwrap()
        .set_modified(root_mtime)
        .unwrap();
    assert_same(&src, &dst);
    // On a terminal (a pseudo-terminal from `script`): a progress bar.
    std::fs::write(src.join("more"), vec![1u8; 3_000_000]).unwrap();
    let out = Command::new("script")
        .args(["-qec", &format!("{} sync web --once", bin()), "/dev/null"])
        .current_dir(env.path())
        .env("VIGIE_CONFIG", env.config_path())
        .env("VIGIE_STATE_DIR", env.state_dir())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("web: comparing both trees"), "{tty}");
    assert!(
        tty.contains("100%  1/1 files  3.0 MB/3.0 MB"),
        "the last drawing is complete: {tty}"
    );
    assert!(tty.contains("web: 1 files, 3000000 bytes sent"), "{tty}");
    assert_same(&src, &dst);
    let r = env.run(&["sync", "nope", "--once"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("known jobs: web"), "{}", r.stderr);
}

#[test]
fn bad_sync_config_is_refused() {
    let env = Env::new(bin());
    env.config("[[sync]]\nname = \"w\"\nfrom = \"/nonexistent-dir\"\nto = \"relative/path\"\ndelay = \"0s\"\nverify_every = \"0s\"\n");
    exits(
        &env,
        &["validate"],
        2,
        &[
            "`from` /nonexistent-dir is not a directory",
            "is neither host:/path nor an absolute local path",
            "`delay` is between 1ms and 1m",
            "`verify_every` is at least 1s",
        ],
    );
}

/// rsync's patterns, end to end: a class, `**` across directories, a
/// name with a literal `*`, braces taken literally; what matches stays
/// on the source only. A pattern that cannot be read is a configuration
/// error at its place.
#[test]
fn exclude_globs_mean_what_they_mean_to_rsync() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    for f in [
        "log1",
        "logx",
        "cache/a/b/x.tmp",
        "cache/y.txt",
        "a*b",
        "axb",
        "{a,b}",
        "a",
    ] {
        let p = src.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f).unwrap();
    }
    // A TOML literal string: the backslash reaches the pattern.
    let keys = r#"exclude = ["log[0-9]", "cache/**.tmp", 'a\*b', "{a,b}"]
"#;
    env.config(&web_job(&dst, keys));
    let r = env.run(&["sync", "web", "--once"]);
    assert_eq!(r.code, 0, "{r:?}");
    for (f, sent) in [
        ("log1", false),
        ("logx", true),
        ("cache/a/b/x.tmp", false),
        ("cache/y.txt", true),
        ("a*b", false),
        ("axb", true),
        ("{a,b}", false),
        ("a", true),
    ] {
        assert_eq!(dst.join(f).exists(), sent, "{f}");
    }
    env.config(&web_job(&dst, "exclude = [\"*.tmp\", \"[oops\"]\n"));
    exits(
        &env,
        &["validate"],
        2,
        &[
            "invalid exclude pattern `[oops`: unclosed character class",
            "vigie.toml:5:21",
        ],
    );
}

#[test]
fn live_changes_arrive_and_a_renamed_directory_is_moved_not_resent() {
    // (1 MB of files in the directory; the rename must send almost none.)
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    let big = src.path().join("many");
    std::fs::create_dir(&big).unwrap();
    for i in 0..10_000 {
        std::fs::write(
            big.join(format!("f{i}")),
            format!("file {i} {}", "x".repeat(100)),
        )
        .unwrap();
    }
    let live = Live::start(local_spec(src.path(), dst.path()));
    wait_same(src.path(), dst.path());
    // Create, modify, chmod, delete, symlink.
    std::fs::write(src.path().join("new.txt"), "new").unwrap();
    std::fs::write(src.path().join("a/b/one.txt"), "ONE!").unwrap();
    chmod(src.path().join("top.bin"), 0o640);
    std::fs::remove_file(src.path().join("secret")).unwrap();
    symlink("new.txt", src.path().join("link2")).unwrap();
    wait_same(src.path(), dst.path());
    // Rename a 10,000-file directory: moved on the receiver.
    let before = live.status().bytes_sent;
    std::fs::rename(&big, src.path().join("moved")).unwrap();
    wait_same(src.path(), dst.path());
    let after = live.status().bytes_sent;
    assert!(
        after - before < 10_000,
        "a rename re-sent {} bytes",
        after - before
    );
    assert_same(src.path(), dst.path());
}

#[test]
fn the_periodic_verification_repairs_what_no_event_told() {
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    let live = Live::start(JobSpec {
        verify_every: Duration::from_secs(1),
        ..local_spec(src.path(), dst.path())
    });
    wait_same(src.path(), dst.path());
    // The last scan before the tampering: a scan under way as it happens
    // may be the one that repairs it, and finish before a later look.
    let scans = live.status().last_full_scan;
    // Someone changes the replica: the source sees no event of it.
    std::fs::write(dst.path().join("a/b/one.txt"), "tampered, longer").unwrap();
    std::fs::remove_file(dst.path().join("secret")).unwrap();
    std::fs::write(dst.path().join("stray"), "x").unwrap();
    wait_same(src.path(), dst.path());
    assert_ne!(live.status().last_full_scan, scans);
}

#[test]
fn checksum_finds_a_difference_that_size_and_time_hide() {
    let (src, dst) = (tmp(), tmp());
    std::fs::write(src.path().join("f"), "right").unwrap();
    let spec = local_spec(src.path(), dst.path());
    vigie_sync::once(&spec).unwrap();
    // Same size, same time to the nanosecond, other bytes.
    let mtime = std::fs::metadata(dst.path().join("f"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::write(dst.path().join("f"), "wrong").unwrap();
    std::fs::File::options()
        .write(true)
        .open(dst.path().join("f"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let s = vigie_sync::once(&spec).unwrap();
    assert_eq!(s.files_sent, 0, "size and time agree: not looked at");
    assert_eq!(std::fs::read(dst.path().join("f")).unwrap(), b"wrong");
    let s = vigie_sync::once(&JobSpec {
        checksum: true,
        ..spec
    })
    .unwrap();
    assert_eq!(s.files_sent, 1, "{s:?}");
    assert_same(src.path(), dst.path());
}

#[test]
fn same_size_rewrites_within_one_second_all_arrive() {
    let (src, dst) = (tmp(), tmp());
    std::fs::write(src.path().join("f"), "version-0").unwrap();
    let _live = Live::start(local_spec(src.path(), dst.path()));
    for i in 1..=9 {
        std::fs::write(src.path().join("f"), format!("version-{i}")).unwrap();
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(dst.path().join("f")).ok() == Some(format!("version-{i}"))
        });
    }
    assert_same(src.path(), dst.path());
}

/// Talk to `vigie sync-receive ROOT` directly, as a hostile sender.
fn hostile(root: &Path, msgs: &[Msg]) -> Vec<Msg> {
    let mut child = Command::new(bin())
        .args(["sync-receive"])
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // It may end the session before reading all.
    let _ = stdin.write_all(&framed(msgs));
    let _ = stdin.flush();
    drop(stdin);
    let replies = replies(child.stdout.take().unwrap());
    child.wait().unwrap();
    replies
}

/// A sender's session: a hello, then `msgs`, in frames.
fn framed(msgs: &[Msg]) -> Vec<u8> {
    let mut input = Vec::new();
    let hello = Msg::Hello {
        version: proto::VERSION,
        job: "evil".into(),
    };
    for m in std::iter::once(&hello).chain(msgs) {
        proto::write(&mut input, m).unwrap();
    }
    input
}

/// Every message a receiver answered, up to its end.
fn replies(mut out: impl std::io::Read) -> Vec<Msg> {
    let mut replies = Vec::new();
    while let Ok(m) = proto::read(&mut out) {
        replies.push(m);
    }
    replies
}

/// Requests as a sender makes them: owned by root where they say an
/// owner, from the epoch where they say a time.
mod req {
    use vigie_sync::proto::Msg;

    pub fn mkdir(id: u64, path: &[u8], mode: u32) -> Msg {
        Msg::MkDir {
            id,
            path: path.to_vec(),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    pub fn symlink(id: u64, path: &[u8], target: &[u8]) -> Msg {
        Msg::Symlink {
            id,
            path: path.to_vec(),
            target: target.to_vec(),
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    pub fn meta(id: u64, path: &[u8], mode: u32) -> Msg {
        Msg::Meta {
            id,
            path: path.to_vec(),
            mode,
            mtime: 0,
        }
    }

    pub fn own(id: u64, path: &[u8], (uid, gid): (u32, u32), mode: u32) -> Msg {
        Msg::Own {
            id,
            path: path.to_vec(),
            uid,
            gid,
            mode,
        }
    }

    pub fn delete(id: u64, path: &[u8]) -> Msg {
        Msg::Delete {
            id,
            path: path.to_vec(),
        }
    }

    pub fn rename(id: u64, from: &[u8], to: &[u8]) -> Msg {
        Msg::Rename {
            id,
            from: from.to_vec(),
            to: to.to_vec(),
        }
    }

    pub fn link(id: u64, path: &[u8], to: &[u8]) -> Msg {
        Msg::Link {
            id,
            path: path.to_vec(),
            to: to.to_vec(),
        }
    }
}

/// A whole file, `File` (id 1, mode 0o644), `Data`, `FileEnd`.
fn file_msgs(path: &[u8], data: &[u8]) -> Vec<Msg> {
    file_as(1, 0o644, path, data)
}

/// A whole file of request `id` and `mode`, owned by root, from the
/// epoch.
fn file_as(id: u64, mode: u32, path: &[u8], data: &[u8]) -> Vec<Msg> {
    vec![
        Msg::File(FileHead {
            id,
            path: path.to_vec(),
            size: data.len() as u64,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }),
        Msg::Data(data.to_vec()),
        Msg::FileEnd { id },
    ]
}

#[test]
fn hostile_messages_are_refused_and_end_the_session() {
    let outside = tmp();
    let root = outside.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for path in [&b"../escaped"[..], b"/tmp/absolute", b"a/../../escaped"] {
        let r = hostile(&root, &file_msgs(path, b"pwned"));
        assert!(
            matches!(r.last(), Some(Msg::Fatal { message }) if message.starts_with("refused")),
            "{r:?}"
        );
    }
    assert!(!outside.path().join("escaped").exists());
    // A symlink pointing outside, then a write through it.
    let mut msgs = vec![req::symlink(
        1,
        b"door",
        outside.path().to_string_lossy().as_bytes(),
    )];
    msgs.extend(file_msgs(b"door/through", b"pwned"));
    let r = hostile(&root, &msgs);
    assert!(matches!(r.get(1), Some(Msg::Ack { id: 1 })), "{r:?}");
    assert!(
        matches!(r.last(), Some(Msg::Fatal { message }) if message.contains("through a symlink")),
        "{r:?}"
    );
    assert!(!outside.path().join("through").exists());
    // Deleting or renaming through the link is refused too.
    let r = hostile(&root, &[req::delete(2, b"door/x")]);
    assert!(matches!(r.last(), Some(Msg::Fatal { .. })), "{r:?}");
    // So are hard links to or through anything outside.
    std::fs::write(outside.path().join("target"), "outside").unwrap();
    for (path, to) in [
        (&b"in"[..], &b"../target"[..]),
        (b"in", b"door/target"),
        (b"door/in", b"in"),
    ] {
        let r = hostile(&root, &[req::link(3, path, to)]);
        assert!(
            matches!(r.last(), Some(Msg::Fatal { message }) if message.starts_with("refused")),
            "{r:?}"
        );
    }
    assert!(!root.join("in").exists());
    assert!(!outside.path().join("in").exists());
    // Garbage instead of a hello.
    let mut child = Command::new(bin())
        .args(["sync-receive"])
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\x00\x00\x00\x05hello")
        .unwrap();
    let reply = proto::read(&mut child.stdout.take().unwrap()).unwrap();
    assert!(
        matches!(&reply, Msg::Fatal { message } if message.contains("not a vigie sync sender")),
        "{reply:?}"
    );
    child.wait().unwrap();
}

#[test]
fn a_short_file_leaves_no_partial_file() {
    let root = tmp();
    std::fs::write(root.path().join("f"), "old").unwrap();
    let msgs = vec![
        Msg::File(FileHead {
            id: 1,
            path: b"f".to_vec(),
            size: 100,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        }),
        Msg::Data(b"only part".to_vec()),
        Msg::FileEnd { id: 1 },
    ];
    let r = hostile(root.path(), &msgs);
    assert!(matches!(r.get(1), Some(Msg::Fail { id: 1, .. })), "{r:?}");
    assert_eq!(read(&root.path().join("f")), "old");
    let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
}

#[test]
fn through_a_real_sshd_and_a_bastion() {
    require!(Need::Sshd);
    let client = Client::new();
    let key = client.public_key();
    let target = Sshd::start(&key);
    let bastion = Sshd::start(&key);
    let cfg = client.config(&[
        ("backup", &target, None),
        ("bastion", &bastion, None),
        ("behind", &target, Some("bastion")),
    ]);
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    for host in ["backup", "behind"] {
        let spec = JobSpec {
            to: ssh_dest(&cfg, host, dst.path(), bin()),
            ..local_spec(src.path(), dst.path())
        };
        let s = vigie_sync::once(&spec).unwrap_or_else(|e| panic!("{host}: {e}\n{}", target.log()));
        assert_same(src.path(), dst.path());
        std::fs::write(src.path().join(format!("via-{host}")), host).unwrap();
        assert!(s.last_error.is_none(), "{s:?}");
    }
    // The job's `preserve_setuid` reaches the receiver through ssh (the
    // passes above ran on the default, which strips the bits).
    chmod(src.path().join("top.bin"), 0o4755);
    let keep = JobSpec {
        to: ssh_dest(&cfg, "backup", dst.path(), bin()),
        preserve_setuid: true,
        ..local_spec(src.path(), dst.path())
    };
    vigie_sync::once(&keep).unwrap();
    assert_eq!(mode_of(&dst.path().join("top.bin")), 0o4755);
    // Live over ssh.
    let spec = JobSpec {
        to: ssh_dest(&cfg, "behind", dst.path(), bin()),
        ..local_spec(src.path(), dst.path())
    };
    let _live = Live::start(spec.clone());
    std::fs::write(src.path().join("live.txt"), "over ssh").unwrap();
    wait_same(src.path(), dst.path());
    // Failback: what the backup wrote comes back, through the same ssh;
    // nothing is deleted here, nor what the job excludes touched (the
    // excludes go to the far side's sender through ssh, quoted).
    let host_file = "it's local.conf";
    std::fs::write(src.path().join(host_file), "primary").unwrap();
    wait_same(src.path(), dst.path());
    std::fs::write(dst.path().join(host_file), "backup").unwrap();
    std::fs::write(dst.path().join("written-on-backup"), "new").unwrap();
    std::fs::write(src.path().join("only-here"), "kept").unwrap();
    vigie_sync::reverse(&JobSpec {
        exclude: Excludes::new(&[host_file]).unwrap(),
        ..spec.clone()
    })
    .unwrap();
    assert_eq!(read(&src.path().join("written-on-backup")), "new");
    assert!(src.path().join("only-here").exists());
    assert_eq!(read(&src.path().join(host_file)), "primary");
    // A far side without vigie: a clear error.
    let err = vigie_sync::once(&JobSpec {
        to: ssh_dest(&cfg, "backup", Path::new("/tmp"), "/nonexistent/vigie"),
        ..spec
    })
    .err()
    .unwrap();
    assert!(err.contains("the far side has no vigie"), "{err}");
}

/// A populated source with a file at `file` (in a directory of its
/// own), replicated by a live job that sends what follows in one batch:
/// a batch goes once the source is quiet for a fifth of `delay`, and a
/// long one keeps all together, even on a loaded machine.
fn one_batch_job(file: &str) -> (tempfile::TempDir, tempfile::TempDir, Live) {
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    let file = src.path().join(file);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "f").unwrap();
    let live = Live::start(JobSpec {
        delay: Duration::from_secs(2),
        ..local_spec(src.path(), dst.path())
    });
    wait_same(src.path(), dst.path());
    (src, dst, live)
}

/// `mkdir d1; mv d0/f d1/; rm -r d1`, seen in one batch: the receiver
/// made `d1` to rename the file into it, and the sender, which did not
/// know, deleted the file but kept the directory on the replica (until
/// the next verification, an hour later). What `random_changes` found.
#[test]
fn a_directory_made_for_a_rename_then_removed_goes_from_the_replica_too() {
    let (src, dst, _live) = one_batch_job("d0/f");
    let s = |p: &str| src.path().join(p);
    std::fs::create_dir(s("d1")).unwrap();
    // The new directory watched by then: the move is seen as a rename.
    std::thread::sleep(Duration::from_millis(100));
    std::fs::rename(s("d0/f"), s("d1/f")).unwrap();
    std::fs::remove_dir_all(s("d1")).unwrap();
    wait_same(src.path(), dst.path());
    assert!(!dst.path().join("d1").exists());
}

/// `mv d0 d1; mkdir d0 d5; mv d0 d5/; rm -r d5`, seen in one batch:
/// the second rename from `d0` was sent though the first had taken
/// `d0` away (each was judged against the mirror as it was before the
/// batch), and the receiver made `d5` on its way to finding nothing to
/// rename, unknown to the sender, which never deleted it. (What
/// `random_changes` found was `mv d0 d1/d2` for the last move, with the
/// moved directory's watch still under its old path: `d0` into itself,
/// `d0` made again there.)
#[test]
fn a_directory_moved_away_then_made_again_and_moved_leaves_no_copy_behind() {
    let (src, dst, _live) = one_batch_job("d0/f3");
    let s = |p: &str| src.path().join(p);
    std::fs::rename(s("d0"), s("d1")).unwrap();
    std::fs::create_dir(s("d0")).unwrap();
    std::fs::create_dir(s("d5")).unwrap();
    // Watched by then: the move is seen as a rename.
    std::thread::sleep(Duration::from_millis(100));
    std::fs::rename(s("d0"), s("d5/d2")).unwrap();
    std::fs::remove_dir_all(s("d5")).unwrap();
    wait_same(src.path(), dst.path());
    assert!(!dst.path().join("d5").exists());
}

mod random_changes {
    use super::*;
    use proptest::prelude::*;

    const FILES: [&str; 6] = ["f0", "f1", "d0/f2", "d0/f3", "d1/d2/f4", "d1/f5"];
    const DIRS: [&str; 4] = ["d0", "d1", "d1/d2", "d3"];

    #[derive(Clone, Debug)]
    enum Op {
        Write(usize, usize),
        Append(usize, usize),
        Truncate(usize, usize),
        Rename(usize, usize),
        Delete(usize),
        Chmod(usize, u32),
        Symlink(usize, usize),
        RenameDir(usize, usize),
        DeleteDir(usize),
        Pause,
    }

    fn op() -> impl Strategy<Value = Op> {
        let f = 0..FILES.len();
        let d = 0..DIRS.len();
        prop_oneof![
            (f.clone(), 0..3000usize).prop_map(|(a, n)| Op::Write(a, n)),
            (f.clone(), 1..500usize).prop_map(|(a, n)| Op::Append(a, n)),
            (f.clone(), 0..100usize).prop_map(|(a, n)| Op::Truncate(a, n)),
            (f.clone(), f.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
            f.clone().prop_map(Op::Delete),
            (
                f.clone(),
                prop_oneof![Just(0o600u32), Just(0o644), Just(0o755), Just(0o400)]
            )
                .prop_map(|(a, m)| Op::Chmod(a, m)),
            (f.clone(), f.clone()).prop_map(|(a, b)| Op::Symlink(a, b)),
            (d.clone(), d.clone()).prop_map(|(a, b)| Op::RenameDir(a, b)),
            d.prop_map(Op::DeleteDir),
            Just(Op::Pause),
        ]
    }

    fn apply(root: &Path, op: &Op) {
        let p = |s: &str| root.join(s);
        let parent = |s: &str| {
            if let Some(d) = p(s).parent() {
                let _ = std::fs::create_dir_all(d);
            }
        };
        let _ = match op {
            Op::Write(a, n) => {
                parent(FILES[*a]);
                let _ = std::fs::remove_file(p(FILES[*a]));
                std::fs::write(p(FILES[*a]), vec![b'w'; *n])
            }
            Op::Append(a, n) => std::fs::OpenOptions::new()
                .append(true)
                .open(p(FILES[*a]))
                .and_then(|mut f| f.write_all(&vec![b'a'; *n])),
            Op::Truncate(a, n) => std::fs::OpenOptions::new()
                .write(true)
                .open(p(FILES[*a]))
                .and_then(|f| f.set_len(*n as u64)),
            Op::Rename(a, b) => {
                parent(FILES[*b]);
                std::fs::rename(p(FILES[*a]), p(FILES[*b]))
            }
            Op::Delete(a) => std::fs::remove_file(p(FILES[*a])),
            Op::Chmod(a, m) => {
                std::fs::set_permissions(p(FILES[*a]), std::fs::Permissions::from_mode(*m))
            }
            Op::Symlink(a, b) => {
                parent(FILES[*a]);
                let _ = std::fs::remove_file(p(FILES[*a]));
                symlink(FILES[*b], p(FILES[*a]))
            }
            Op::RenameDir(a, b) => {
                if DIRS[*b].starts_with(DIRS[*a]) {
                    return;
                }
                parent(DIRS[*b]);
                let _ = std::fs::remove_dir_all(p(DIRS[*b]));
                std::fs::rename(p(DIRS[*a]), p(DIRS[*b]))
            }
            Op::DeleteDir(a) => std::fs::remove_dir_all(p(DIRS[*a])),
            Op::Pause => {
                std::thread::sleep(Duration::from_millis(60));
                Ok(())
            }
        };
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 32, ..ProptestConfig::default() })]

        #[test]
        fn trees_end_identical(ops in proptest::collection::vec(op(), 1..40)) {
            let (src, dst) = (tmp(), tmp());
            populate(src.path());
            let _live = Live::start(local_spec(src.path(), dst.path()));
            for o in &ops {
                apply(src.path(), o);
            }
            wait_same(src.path(), dst.path());
        }
    }
}

/// A child process killed when the test ends, passed or not.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A missing target directory is made, as rsync does, when its parent
/// exists; a live `vigie sync NAME` logs a line per batch and shows in
/// `vigie sync status` as the job's sender.
#[test]
fn a_live_cli_sender_makes_its_target_logs_its_batches_and_shows_in_status() {
    let env = Env::new(bin());
    let src = env.path().join("src");
    let dst = env.path().join("made-by-vigie");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("first"), "1").unwrap();
    env.config(&web_job(&dst, "delay = \"50ms\"\n"));
    let log = env.path().join("sync.log");
    let child = env
        .cmd(&["sync", "web"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let child = Kill(child);
    crate::util::wait_or_explain(
        Duration::from_secs(15),
        || dst.is_dir() && same_trees(&src, &dst),
        || std::fs::read_to_string(&log).unwrap_or_default(),
    );
    std::fs::write(src.join("second"), "2").unwrap();
    wait_until(Duration::from_secs(15), || same_trees(&src, &dst));
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("batch sent") && l.contains("files=1"))
    });
    let r = env.run(&["sync", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["sender"]["pid"], child.0.id(), "{v}");
    assert_eq!(v[0]["sender"]["daemon"], false, "{v}");
    let r = env.run(&["sync", "status"]);
    assert!(
        r.stdout
            .contains(&format!("vigie sync (pid {})", child.0.id())),
        "{}",
        r.stdout
    );
    drop(child);
    // A target whose parent is missing too stays an error.
    env.config(&web_job(&env.path().join("no/such"), ""));
    let r = env.run(&["sync", "web", "--once"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("its parent must exist"), "{r:?}");
}

fn check_json(env: &Env, name: &str) -> serde_json::Value {
    let r = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
    v["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_default()
}

#[test]
fn the_daemon_queues_while_the_target_is_away_survives_a_kill_and_catches_up() {
    let env = Env::new(bin());
    let src = env.path().join("src");
    // A missing target is made when its parent exists: here the parent
    // is missing too.
    let dst = env.path().join("away/dst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("first"), "1").unwrap();
    let keys = "delay = \"50ms\"\n\n[[check]]\nname = \"sync-web\"\nsync = { job = \"web\" }\nevery = \"1s\"\nfail_after = 1\n";
    env.config(&format!("{SERVER}{}", web_job(&dst, keys)));
    let mut d = env.daemon();
    // The target is away: the check says so, changes queue on disk.
    wait_until(Duration::from_secs(15), || {
        let c = check_json(&env, "sync-web");
        c["state"] == "failing"
            && c["last_message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot reach") && m.contains("changes waiting"))
    });
    std::fs::write(src.join("second"), "2").unwrap();
    wait_until(Duration::from_secs(10), || {
        let r = env.run(&["sync", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        v[0]["queued_on_disk"].as_u64().unwrap_or(0) >= 1
    });
    // Killed hard, started again: the queue is still there.
    d.signal(rustix::process::Signal::KILL);
    d.wait(Duration::from_secs(5));
    drop(d);
    let d = env.daemon();
    d.wait_log(
        "resuming with the queue left by the last run",
        Duration::from_secs(10),
    );
    // The target appears: everything arrives, the check recovers.
    std::fs::create_dir_all(&dst).unwrap();
    wait_until(Duration::from_secs(30), || same_trees(&src, &dst));
    wait_until(Duration::from_secs(10), || {
        let c = check_json(&env, "sync-web");
        c["state"] == "ok"
            && c["last_message"]
                .as_str()
                .is_some_and(|m| m.starts_with("in step"))
    });
    // Paused (fencing): nothing is sent; resumed: it flows again.
    let r = env.run(&["sync", "pause", "web", "--reason", "fenced by a test"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(src.join("while-paused"), "p").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!dst.join("while-paused").exists());
    let r = env.run(&["sync", "status"]);
    assert!(
        r.stdout.contains("paused (fenced by a test)"),
        "{}",
        r.stdout
    );
    let r = env.run(&["sync", "resume", "web"]);
    assert_eq!(r.stdout, "web: resumed\n");
    wait_until(Duration::from_secs(15), || same_trees(&src, &dst));
    drop(d);
}

/// Every file of `dst` is whole: absent, or byte for byte its source.
fn no_partial_file(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(dst).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().starts_with(".vigie-tmp.") {
            continue; // a temporary name no reader looks for
        }
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(src.join(&name)).unwrap(),
            "{} is not whole",
            name.display()
        );
    }
}

#[test]
fn a_killed_sender_or_receiver_leaves_no_partial_file_and_the_next_run_resumes() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    for i in 0..150u32 {
        let block: Vec<u8> = (0..512 * 1024u32)
            .map(|j| (i * 31 + j % 251) as u8)
            .collect();
        std::fs::write(src.join(format!("f{i:03}")), block).unwrap();
    }
    env.config(&format!(
        "[[sync]]\nname = \"big\"\nfrom = \"src\"\nto = \"{}\"\n",
        dst.display()
    ));
    let count = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    };
    for victim in ["sender", "receiver"] {
        for f in std::fs::read_dir(&dst).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        let mut sender = env
            .cmd(&["sync", "big", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(20), || count(&dst) >= 3);
        if victim == "sender" {
            sender.kill().unwrap();
        } else {
            let pids = Command::new("pgrep")
                .args(["-f", &format!("sync-receive {}", dst.display())])
                .output()
                .unwrap();
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = sender.wait();
        no_partial_file(&src, &dst);
        let before = count(&dst);
        let r = env.run(&["sync", "big", "--once"]);
        assert_eq!(r.code, 0, "{victim}: {r:?}");
        let sent: u64 = r
            .stdout
            .split(" files, ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            sent <= (150 - before as u64) * 512 * 1024,
            "{victim}: {sent} bytes re-sent for {} missing files",
            150 - before
        );
        assert_same(&src, &dst);
    }
}

#[test]
fn non_utf8_names_and_unreadable_files() {
    use std::os::unix::ffi::OsStrExt;
    let (src, dst) = (tmp(), tmp());
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.txt");
    std::fs::write(src.path().join(odd), "bytes").unwrap();
    std::fs::write(src.path().join("ok.txt"), "fine").unwrap();
    let s = vigie_sync::once(&local_spec(src.path(), dst.path())).unwrap();
    assert_eq!(std::fs::read(dst.path().join(odd)).unwrap(), b"bytes");
    assert_same(src.path(), dst.path());
    assert!(s.last_error.is_none());
}

#[test]
fn an_unreadable_file_is_reported_and_the_rest_goes_on() {
    require!(Need::Setpriv);
    // Run as nobody, so that a mode 000 file cannot be read; a copy of
    // the binary, since nobody may not enter the checkout (under /root).
    let reachable = Reachable::new();
    let vigie = reachable.copy(bin());
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    for d in [env.path(), &dst] {
        chmod(d, 0o777);
    }
    std::fs::write(src.join("locked"), "no").unwrap();
    chmod(src.join("locked"), 0o000);
    std::fs::write(src.join("later.txt"), "still sent").unwrap();
    env.config(&web_job(&dst, ""));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&vigie)
        .args(["sync", "web", "--once"])
        .current_dir(env.path())
        .env("VIGIE_CONFIG", env.config_path())
        .env("VIGIE_STATE_DIR", env.path().join("state"));
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("locked: Permission denied"), "{stderr}");
    assert_eq!(read(&dst.join("later.txt")), "still sent");
    assert!(!dst.join("locked").exists());
}

#[test]
fn a_one_block_change_in_a_big_file_moves_kilobytes() {
    let (src, dst) = (tmp(), tmp());
    let big = src.path().join("disk.img");
    let mut x = 1u32;
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&big, &data).unwrap();
    let spec = local_spec(src.path(), dst.path());
    let s = vigie_sync::once(&spec).unwrap();
    assert!(s.bytes_sent >= 64 << 20);
    // One byte in the middle, and 10 appended.
    let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.write_at(b"X", 33_000_000).unwrap();
    f.write_at(b"0123456789", 64 << 20).unwrap();
    drop(f);
    let s = vigie_sync::once(&spec).unwrap();
    assert!(
        s.bytes_sent < 40_000,
        "{} bytes sent for a one-block change",
        s.bytes_sent
    );
    assert_same(src.path(), dst.path());
}

/// Whether two files hold the same bytes, read in pieces (big files do
/// not fit memory).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// A changed file whose block signatures do not fit one frame (from
/// about 3.2 to 4 GiB, 6.4 to 8 GiB, …: VM images, databases) once broke
/// the session as "malformed", and the job retried forever. Sparse, so
/// neither side holds GiBs (the receiver keeps holes as holes).
///
/// Slow by nature: each side reads and hashes 12 GiB (block signatures,
/// the delta, SHA-256 of the result): some 25 s of CPU, about a minute
/// on a loaded machine.
#[test]
fn a_changed_4_or_8_gib_file_goes_as_a_delta() {
    let (src, dst) = (tmp(), tmp());
    let files = [("4g.img", 4u64 << 30), ("8g.img", 8u64 << 30)];
    for (name, size) in files {
        for root in [src.path(), dst.path()] {
            let f = std::fs::File::create(root.join(name)).unwrap();
            f.set_len(size).unwrap();
            f.write_at(b"boot sector", 0).unwrap();
            // An hour ago: file times are coarser than these writes.
            f.set_modified(std::time::SystemTime::now() - Duration::from_hours(1))
                .unwrap();
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(src.path().join(name))
            .unwrap();
        f.write_at(b"one changed block", size / 2 + 12_345).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }
    let s = vigie_sync::once(&local_spec(src.path(), dst.path())).unwrap();
    assert!(s.last_error.is_none(), "{s:?}");
    assert!(
        s.bytes_sent < 1 << 20,
        "{} bytes sent for two one-block changes",
        s.bytes_sent
    );
    for (name, size) in files {
        let (a, b) = (src.path().join(name), dst.path().join(name));
        let (ma, mb) = (a.metadata().unwrap(), b.metadata().unwrap());
        assert_eq!(mb.len(), size);
        assert_eq!(ma.modified().unwrap(), mb.modified().unwrap());
        assert!(same_bytes(&a, &b), "{name}: the replica differs");
        // Still sparse: the holes were not written out.
        assert!(
            mb.blocks() * 512 < 64 << 20,
            "{name}: {} bytes allocated",
            mb.blocks() * 512
        );
    }
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_on_the_receiver_is_a_clear_error_and_leaves_nothing_partial() {
    require!(Need::Root);
    let disk = SmallDisk(tmp());
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(disk.0.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs failed");
    let src = tmp();
    std::fs::write(src.path().join("small"), "fits").unwrap();
    std::fs::write(src.path().join("huge"), vec![1u8; 3 << 20]).unwrap();
    let s = vigie_sync::once(&local_spec(src.path(), disk.0.path())).unwrap();
    let err = s.last_error.unwrap_or_default();
    assert!(err.contains("No space left on device"), "{err}");
    let names: Vec<String> = std::fs::read_dir(disk.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["small"], "only whole files, no temporary one");
    // Room again: the next pass completes.
    std::fs::write(src.path().join("huge"), vec![1u8; 100 << 10]).unwrap();
    let s = vigie_sync::once(&local_spec(src.path(), disk.0.path())).unwrap();
    assert!(s.last_error.is_none(), "{s:?}");
    assert_same(src.path(), disk.0.path());
}

#[test]
fn owners_and_groups_are_kept_when_the_receiver_is_root() {
    require!(Need::Root);
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    let own = |p: &str, uid: u32, gid: u32| {
        rustix::fs::chownat(
            rustix::fs::CWD,
            src.path().join(p),
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    own("a/b/one.txt", 1234, 5678);
    own("a", 42, 43);
    own("link", 7, 8);
    chmod(src.path().join("top.bin"), 0o4755);
    own("top.bin", 33, 33);
    chmod(src.path().join("top.bin"), 0o4755);
    // Set-user-ID bits kept, as the job asks (the defaults' twin is
    // `setuid_bits_are_stripped_on_the_receiver_by_default`).
    let spec = JobSpec {
        preserve_setuid: true,
        ..local_spec(src.path(), dst.path())
    };
    vigie_sync::once(&spec).unwrap();
    assert_same(src.path(), dst.path());
    // Only the owner changes: only the owner is sent.
    own("a/b/one.txt", 99, 99);
    let s = vigie_sync::once(&spec).unwrap();
    assert_eq!(s.bytes_sent, 0);
    assert_same(src.path(), dst.path());
}

#[test]
fn a_reverse_pass_needs_the_job_paused_and_deletes_nothing() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    std::fs::write(src.join("only-on-primary"), "p").unwrap();
    std::fs::write(dst.join("made-on-backup"), "b").unwrap();
    env.config(&web_job(&dst, ""));
    let r = env.run(&["sync", "web", "--reverse"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("web is not paused"), "{}", r.stderr);
    assert_eq!(env.run(&["sync", "pause", "web"]).code, 0);
    let r = env.run(&["sync", "web", "--reverse"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("(nothing deleted here)"), "{}", r.stdout);
    assert_eq!(read(&src.join("made-on-backup")), "b");
    assert!(src.join("only-on-primary").exists());
}

/// A failback brings back what the backup holds, never over what the
/// job excludes: the primary's host-specific files stay its own (they
/// were overwritten by the backup's own files of that name).
#[test]
fn a_reverse_pass_leaves_the_primarys_excluded_files_alone() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    std::fs::create_dir(src.join("conf")).unwrap();
    std::fs::write(src.join("local.conf"), "role=primary").unwrap();
    std::fs::write(src.join("conf/local.conf"), "role=primary").unwrap();
    std::fs::write(src.join("index.html"), "page").unwrap();
    env.config(&web_job(&dst, "exclude = [\"local.conf\"]\n"));
    assert_eq!(env.run(&["sync", "web", "--once"]).code, 0);
    assert!(!dst.join("local.conf").exists());
    // The backup has files of its own by those names, and new pages.
    std::fs::write(dst.join("local.conf"), "role=backup").unwrap();
    std::fs::write(dst.join("conf/local.conf"), "role=backup").unwrap();
    std::fs::write(dst.join("index.html"), "page edited on the backup").unwrap();
    assert_eq!(env.run(&["sync", "pause", "web"]).code, 0);
    let r = env.run(&["sync", "web", "--reverse"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(&src.join("index.html")), "page edited on the backup");
    for f in ["local.conf", "conf/local.conf"] {
        assert_eq!(read(&src.join(f)), "role=primary", "{f}");
    }
}

/// A compromised backup, on failback, talks to the primary's receiver:
/// it may not read, touch nor name anything the job excludes (a secret
/// that never left the primary), nor link one file to another (a public
/// name for an excluded secret, shipped to it by the next forward pass).
#[test]
fn a_hostile_reverse_sender_cannot_reach_excluded_paths_nor_link() {
    let policy = vigie_sync::receive::Policy {
        reverse: true,
        exclude: Excludes::new(&["private", "*.env"]).unwrap(),
        ..vigie_sync::receive::Policy::default()
    };
    let fresh = || {
        let root = tmp();
        std::fs::create_dir_all(root.path().join("private")).unwrap();
        std::fs::create_dir_all(root.path().join("public")).unwrap();
        std::fs::write(root.path().join("private/key"), "secret").unwrap();
        std::fs::write(root.path().join("public/.env"), "DB_PASSWORD=x").unwrap();
        std::fs::write(root.path().join("public/page"), "page").unwrap();
        root
    };
    let p = |s: &str| s.as_bytes().to_vec();
    let refusals: Vec<(&str, Vec<Msg>)> = vec![
        (
            "hash",
            vec![Msg::Hash {
                id: 1,
                path: p("public/.env"),
            }],
        ),
        (
            "sums",
            vec![Msg::Sums {
                id: 1,
                path: p("private/key"),
                block: 1024,
            }],
        ),
        ("file", file_msgs(b"public/.env", b"pwned")),
        ("file below", file_msgs(b"private/new", b"pwned")),
        ("meta", vec![req::meta(1, b"private/key", 0o644)]),
        ("own", vec![req::own(1, b"private", (0, 0), 0o777)]),
        ("symlink", vec![req::symlink(1, b"private/l", b"x")]),
        ("mkdir", vec![req::mkdir(1, b"private/d", 0o755)]),
        (
            "link to an excluded file",
            vec![req::link(1, b"public/leak.txt", b"private/key")],
        ),
        (
            "link at all",
            vec![req::link(1, b"public/copy", b"public/page")],
        ),
    ];
    assert_each_refused(&policy, fresh, refusals, |what, root, r| {
        assert!(
            !r.iter().any(|m| matches!(
                m,
                Msg::HashReply { .. } | Msg::SumsReply { .. } | Msg::Ack { .. }
            )),
            "{what}: {r:?}"
        );
        assert_eq!(read(&root.join("private/key")), "secret", "{what}");
        assert_eq!(read(&root.join("public/.env")), "DB_PASSWORD=x", "{what}");
        assert!(!root.join("public/leak.txt").exists(), "{what}");
        assert!(!root.join("public/copy").exists(), "{what}");
        assert!(!root.join("private/new").exists(), "{what}");
    });
    // Its listing of the primary leaves the excluded paths out.
    let root = fresh();
    let r = serve_in_process(root.path(), policy, &[Msg::List]);
    let listed: Vec<String> = r
        .iter()
        .filter_map(|m| match m {
            Msg::Entry(e) => Some(String::from_utf8_lossy(&e.path).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(listed, ["", "public", "public/page"], "{r:?}");
}

/// Make a chain of `depth` directories `a/a/…` under `root` with a file
/// at its bottom (created step by step: the whole path is longer than
/// PATH_MAX).
fn deep_chain(root: &Path, depth: usize) {
    let script = r#"cd -P "$1" || exit 1; n=$2
        while [ "$n" -gt 0 ]; do
            k=$n; [ "$k" -gt 100 ] && k=100
            p=$(printf 'a/%.0s' $(seq "$k"))
            mkdir -p "$p" && cd -P "$p" || exit 1
            n=$((n - k))
        done
        echo bottom > f"#;
    let ok = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(root)
        .arg(depth.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot make a chain of {depth} directories");
}

/// Remove a tree too deep for `remove_dir_all`'s descriptors.
fn rm_rf(p: &Path) {
    let _ = Command::new("rm").arg("-rf").arg(p).status();
}

/// A deep directory chain: walked without recursion (a 5,000-deep chain
/// overflowed the job thread's stack and aborted the whole daemon).
/// Deep but within `MAX_DEPTH` it goes, and goes away, like any tree;
/// past it the pass fails with a clear error and nothing crashes.
#[test]
fn a_deep_directory_chain_replicates_or_fails_clearly_never_overflows() {
    let (src, dst) = (tmp(), tmp());
    deep_chain(src.path(), 1500);
    let spec = local_spec(src.path(), dst.path());
    vigie_sync::once(&spec).unwrap();
    assert_same(src.path(), dst.path());
    // Deleted here: removed there (the receiver's removal walks it too).
    rm_rf(&src.path().join("a"));
    vigie_sync::once(&spec).unwrap();
    assert!(!dst.path().join("a").exists());
    deep_chain(src.path(), 5000);
    let e = vigie_sync::once(&spec).unwrap_err();
    assert!(e.contains("more than 4096 directories deep"), "{e}");
    rm_rf(&src.path().join("a"));
    rm_rf(&dst.path().join("a"));
    // A receiver refuses a path of more components than that.
    let root = tmp();
    let deep = vec!["a"; 5000].join("/");
    let r = hostile(root.path(), &file_msgs(deep.as_bytes(), b"x"));
    assert!(
        matches!(r.last(), Some(Msg::Fatal { message }) if message.contains("components")),
        "{r:?}"
    );
    assert!(!root.path().join("a").exists());
}

/// The inotify watches process `pid` holds.
fn inotify_watches(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

/// A symlink in the source is replicated as a symlink, never followed:
/// `ln -s / src/x` had the live job watch (and a root daemon walk) the
/// whole filesystem through it (notify follows symlinks by default).
#[test]
fn the_live_job_never_watches_through_a_symlink() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    let outside = env.path().join("outside");
    std::fs::create_dir(src.join("d")).unwrap();
    for i in 0..40 {
        std::fs::create_dir_all(outside.join(format!("o{i}"))).unwrap();
    }
    symlink(&outside, src.join("x")).unwrap();
    std::fs::write(src.join("d/first"), "1").unwrap();
    env.config(&web_job(&dst, "delay = \"50ms\"\n"));
    let mut child = quietly(&env, &["sync", "web"]);
    wait_until(Duration::from_secs(20), || dst.join("d/first").exists());
    // Made outside after the start: nothing of it comes in.
    std::fs::create_dir_all(outside.join("o0/new")).unwrap();
    std::fs::write(outside.join("o0/new/f"), "outside").unwrap();
    std::fs::write(src.join("d/second"), "2").unwrap();
    wait_until(Duration::from_secs(20), || dst.join("d/second").exists());
    let watches = inotify_watches(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        watches <= 3,
        "{watches} directories watched for 2 in the tree"
    );
    assert!(dst.join("x").is_symlink());
    assert_same(&src, &dst);
}

/// A receiver that answers `replies` to whatever it is told (a hostile
/// one), as a job's destination: a script run as its `vigie`.
fn fake_receiver(dir: &Path, replies: &[Msg]) -> Destination {
    let mut bytes = Vec::new();
    for m in replies {
        proto::write(&mut bytes, m).unwrap();
    }
    let stream = dir.join("replies.bin");
    std::fs::write(&stream, bytes).unwrap();
    let script = dir.join("fake-vigie");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat '{}'\nexec sleep 10\n", stream.display()),
    )
    .unwrap();
    chmod(&script, 0o755);
    Destination::Local {
        path: dir.to_string_lossy().into_owned(),
        vigie: script,
    }
}

/// A hostile receiver could stream block signatures, or answers to
/// operations never sent, until the sender ran out of memory.
#[test]
fn a_hostile_receiver_cannot_exhaust_the_senders_memory() {
    let (src, fake) = (tmp(), tmp());
    std::fs::write(src.path().join("big"), vec![1u8; 2_000_000]).unwrap();
    let root =
        vigie_sync::job::local_tree(src.path(), &Excludes::default()).unwrap()[&Vec::new()].clone();
    let head = vec![
        Msg::Welcome {
            version: proto::VERSION,
            owners: false,
            setuid: false,
        },
        Msg::Entry(root),
        // Its copy differs in time only: a delta, which asks for sums.
        Msg::Entry(Entry {
            path: b"big".to_vec(),
            kind: proto::Kind::File,
            size: 2_000_000,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
            target: Vec::new(),
        }),
        Msg::ListEnd,
    ];
    let mut sums = head.clone();
    sums.extend((0..20).map(|_| Msg::SumsReply {
        id: 1,
        sums: vec![(0, [0; 16]); proto::SUMS_PER_FRAME],
        more: true,
    }));
    let spec = JobSpec {
        to: fake_receiver(fake.path(), &sums),
        ..local_spec(src.path(), fake.path())
    };
    let e = vigie_sync::once(&spec).unwrap_err();
    assert!(e.contains("more block signatures"), "{e}");
    let mut answers = head;
    answers.extend((0..1000).map(|_| Msg::Ack { id: 99 }));
    let spec = JobSpec {
        to: fake_receiver(fake.path(), &answers),
        ..local_spec(src.path(), fake.path())
    };
    let e = vigie_sync::once(&spec).unwrap_err();
    assert!(e.contains("awaits none"), "{e}");
}

/// A reverse pass holds the job's lock like any other pass: it ran
/// beside whoever held it (a daemon slow to let go, a `--once`).
#[test]
fn a_reverse_pass_takes_the_jobs_lock() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    std::fs::write(dst.join("made-on-backup"), "b").unwrap();
    env.config(&web_job(&dst, ""));
    assert_eq!(env.run(&["sync", "pause", "web"]).code, 0);
    let held =
        vigie_store::lock::try_lock(&env.state_dir(), &vigie_store::lock::sync_lock_name("web"))
            .unwrap();
    let r = env.run(&["sync", "web", "--reverse"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("is sending this job already"),
        "{}",
        r.stderr
    );
    assert!(!src.join("made-on-backup").exists());
    drop(held);
    let r = env.run(&["sync", "web", "--reverse"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(src.join("made-on-backup").exists());
}

/// A file dated past 2262 (its time in nanoseconds overflows an i64)
/// goes like any other, once (it panicked the pass in debug builds).
#[test]
fn a_file_dated_in_2300_replicates() {
    let (src, dst) = (tmp(), tmp());
    let f = src.path().join("future");
    std::fs::write(&f, "from the future").unwrap();
    // 2300-01-01.
    let y2300 = std::time::UNIX_EPOCH + Duration::from_hours(2_892_720);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(y2300)
        .unwrap();
    let spec = local_spec(src.path(), dst.path());
    vigie_sync::once(&spec).unwrap();
    assert_eq!(read(&dst.path().join("future")), "from the future");
    // Stable: not sent again.
    assert_eq!(vigie_sync::once(&spec).unwrap().files_sent, 0);
}

/// A delta's `Copy` of blocks the copy here lacks fails the file at the
/// first of them (the receiver went on reading up to 2^32 blocks).
#[test]
fn a_copy_of_blocks_that_are_not_there_fails_at_once() {
    let root = tmp();
    std::fs::write(root.path().join("f"), vec![1u8; 4096]).unwrap();
    let msgs = vec![
        Msg::Delta {
            head: FileHead {
                id: 1,
                path: b"f".to_vec(),
                size: 4096,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
            block: 1024,
        },
        Msg::Copy {
            index: 1_000_000,
            count: u32::MAX,
        },
        Msg::DeltaEnd {
            id: 1,
            sha256: [0; 32],
        },
    ];
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = root.path().to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(serve_in_process(
            &dir,
            vigie_sync::receive::Policy::default(),
            &msgs,
        ));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the receiver still reads blocks that are not there");
    assert!(
        r.iter().any(|m| matches!(m, Msg::Fail { id: 1, .. })),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read(root.path().join("f")).unwrap(),
        vec![1u8; 4096]
    );
}

/// `vigie ARGS`, killed if still running after `limit` (a second sender
/// used to run until interrupted).
fn run_for(env: &Env, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = env
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_job_the_daemon_sends_is_refused_to_a_second_sender_until_paused() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    std::fs::write(src.join("first"), "1").unwrap();
    env.config(&format!("{SERVER}{}", web_job(&dst, "delay = \"50ms\"\n")));
    let d = env.daemon();
    wait_until(Duration::from_secs(15), || same_trees(&src, &dst));
    let pid = d.pid().as_raw_nonzero();
    for args in [&["sync", "web", "--once"][..], &["sync", "web"][..]] {
        let (code, stderr) = run_for(&env, args, Duration::from_secs(10));
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "error: sync web: the vigie daemon (pid {pid}) is sending this job already"
            )) && stderr.contains("hint: pause the daemon's sender first: vigie sync pause web"),
            "{args:?}: {stderr}"
        );
    }
    // Paused, the daemon lets go: the pass runs.
    let r = env.run(&["sync", "pause", "web"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::write(src.join("second"), "2").unwrap();
    let r = env.run(&["sync", "web", "--once"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(dst.join("second").exists());
    // Resumed, the daemon sends again.
    let r = env.run(&["sync", "resume", "web"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::write(src.join("third"), "3").unwrap();
    wait_until(Duration::from_secs(15), || same_trees(&src, &dst));
    drop(d);
}

#[test]
fn the_daemons_sender_waits_while_a_cli_sends_the_job_then_takes_over() {
    let env = Env::new(bin());
    let (src, dst) = src_and_dst(&env);
    std::fs::write(src.join("first"), "1").unwrap();
    let keys = "delay = \"50ms\"\n\n[[check]]\nname = \"sync-web\"\nsync = { job = \"web\" }\nevery = \"200ms\"\n";
    env.config(&format!("{SERVER}{}", web_job(&dst, keys)));
    let mut cli = quietly(&env, &["sync", "web"]);
    wait_until(Duration::from_secs(15), || same_trees(&src, &dst));
    let d = env.daemon();
    let msg = format!(
        "not sending: process {0} sends this job ([DIR]/state/sync-web.lock is held by process {0})",
        cli.id()
    );
    let dir = env.path().display().to_string();
    wait_until(Duration::from_secs(15), || {
        check_json(&env, "sync-web")["last_message"]
            .as_str()
            .is_some_and(|m| m.replace(&dir, "[DIR]").contains(&msg))
    });
    cli.kill().unwrap();
    cli.wait().unwrap();
    // The CLI gone, the daemon's sender takes the job over.
    std::fs::write(src.join("second"), "2").unwrap();
    wait_until(Duration::from_secs(15), || same_trees(&src, &dst));
    drop(d);
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A file's contents, as text.
fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// `msgs` served to `root` under `policy`: every one of them done.
fn assert_all_done(root: &Path, policy: vigie_sync::receive::Policy, msgs: &[Msg]) {
    let r = serve_in_process(root, policy, msgs);
    assert!(
        r.iter()
            .all(|m| matches!(m, Msg::Welcome { .. } | Msg::Ack { .. })),
        "{r:?}"
    );
}

#[test]
fn setuid_bits_are_stripped_on_the_receiver_by_default() {
    let (src, dst) = (tmp(), tmp());
    std::fs::write(src.path().join("tool"), "#!/bin/sh\n").unwrap();
    chmod(src.path().join("tool"), 0o6755);
    std::fs::create_dir(src.path().join("shared")).unwrap();
    chmod(src.path().join("shared"), 0o2775);
    let spec = local_spec(src.path(), dst.path());
    let s = vigie_sync::once(&spec).unwrap();
    assert!(s.last_error.is_none(), "{s:?}");
    assert_eq!(mode_of(&dst.path().join("tool")), 0o755);
    // A directory's set-group-ID bit only passes its group on: kept.
    assert_eq!(mode_of(&dst.path().join("shared")), 0o2775);
    // Not sent again and again for a difference the receiver makes.
    let s = vigie_sync::once(&spec).unwrap();
    assert_eq!((s.files_sent, s.bytes_sent), (0, 0), "{s:?}");
    // Kept when the job says so.
    let keep = JobSpec {
        preserve_setuid: true,
        ..spec
    };
    vigie_sync::once(&keep).unwrap();
    assert_eq!(mode_of(&dst.path().join("tool")), 0o6755);
    assert_same(src.path(), dst.path());
}

/// Run a receiver in this process with `policy`, as a hostile sender
/// would talk to it; its answers.
fn serve_in_process(root: &Path, policy: vigie_sync::receive::Policy, msgs: &[Msg]) -> Vec<Msg> {
    let mut output = Vec::new();
    let _ = vigie_sync::receive::serve(root, policy, framed(msgs).as_slice(), &mut output);
    replies(output.as_slice())
}

/// Each refusal's messages, served to a `fresh` tree under `policy`:
/// the session ends on a refusal; `check` then looks at the tree and
/// the replies.
fn assert_each_refused(
    policy: &vigie_sync::receive::Policy,
    fresh: impl Fn() -> tempfile::TempDir,
    refusals: Vec<(&str, Vec<Msg>)>,
    check: impl Fn(&str, &Path, &[Msg]),
) {
    for (what, msgs) in refusals {
        let root = fresh();
        let r = serve_in_process(root.path(), policy.clone(), &msgs);
        assert!(
            matches!(r.last(), Some(Msg::Fatal { message }) if message.starts_with("refused")),
            "{what}: {r:?}"
        );
        check(what, root.path(), &r);
    }
}

/// The session ended on a refusal of a reverse pass.
fn assert_refused_on_a_reverse_pass(what: &str, r: &[Msg]) {
    assert!(
        matches!(r.last(), Some(Msg::Fatal { message }) if message.contains("reverse pass")),
        "{what}: {r:?}"
    );
}

/// A rename the receiver cannot make leaves nothing behind: it used to
/// make the target's directories first, then find nothing to rename (or
/// a directory to move into itself: a stale path from the sender's
/// watch), and the sender, told it failed, never knew of them.
#[test]
fn a_rename_that_fails_makes_no_directory_on_the_replica() {
    let root = tmp();
    std::fs::create_dir(root.path().join("d1")).unwrap();
    let r = serve_in_process(
        root.path(),
        vigie_sync::receive::Policy::default(),
        &[
            req::rename(1, b"gone", b"new/f"),
            req::rename(2, b"d0", b"d0/d2"),
            req::rename(3, b"d1", b"d1/d2/d3"),
            req::rename(4, b"d1/d2", b"d1"),
        ],
    );
    let failed: Vec<u64> = r
        .iter()
        .filter_map(|m| match m {
            Msg::Fail { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [1, 2, 3, 4], "{r:?}");
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["d1"]);
    assert_eq!(
        std::fs::read_dir(root.path().join("d1")).unwrap().count(),
        0
    );
}

/// The failback's receiver runs on the primary and its sender is the
/// backup, which may have been compromised while it served: it may add
/// and update, never delete, move or reshape, nor plant set-user-ID bits.
#[test]
fn the_reverse_receiver_refuses_deletions_reshaping_and_setuid_bits() {
    let reverse = vigie_sync::receive::Policy {
        setuid: true,
        reverse: true,
        ..vigie_sync::receive::Policy::default()
    };
    let fresh = || {
        let root = tmp();
        std::fs::create_dir(root.path().join("dir")).unwrap();
        std::fs::write(root.path().join("dir/index.html"), "primary").unwrap();
        std::fs::write(root.path().join("file"), "primary").unwrap();
        root
    };
    let refusals: Vec<(&str, Vec<Msg>)> = vec![
        ("delete", vec![req::delete(1, b"dir")]),
        ("rename", vec![req::rename(1, b"file", b"dir/index.html")]),
        ("replace a directory", file_msgs(b"dir", b"pwned")),
        (
            "replace a file",
            vec![req::symlink(1, b"file", b"/etc/shadow")],
        ),
        ("replace a file", vec![req::mkdir(1, b"file", 0o755)]),
    ];
    assert_each_refused(&reverse, fresh, refusals, |what, root, r| {
        assert_refused_on_a_reverse_pass(what, r);
        for f in ["dir/index.html", "file"] {
            assert_eq!(read(&root.join(f)), "primary", "{what}");
        }
    });
    // What it may do: update a file, add one; never with set-user-ID bits
    // (not by its mode, not by a later chmod).
    let root = fresh();
    let mut msgs = file_msgs(b"file", b"from the backup");
    msgs.extend(file_as(1, 0o4755, b"dir/new", b"new"));
    msgs.push(req::meta(2, b"file", 0o6755));
    assert_all_done(root.path(), reverse, &msgs);
    assert_eq!(read(&root.path().join("file")), "from the backup");
    assert_eq!(mode_of(&root.path().join("dir/new")), 0o755);
    assert_eq!(mode_of(&root.path().join("file")), 0o755);
    // The same messages, forward and on the defaults: the receiver
    // strips set-user-ID bits there too.
    let root = fresh();
    let r = serve_in_process(root.path(), vigie_sync::receive::Policy::default(), &msgs);
    assert!(!r.iter().any(|m| matches!(m, Msg::Fatal { .. })), "{r:?}");
    assert_eq!(mode_of(&root.path().join("dir/new")), 0o755);
}

/// A compromised backup, on failback, may update the primary's files,
/// not hand them to another owner nor open them to others: `Meta` of
/// the root made the primary's root world-writable, `Own` chowned
/// anything.
#[test]
fn a_hostile_reverse_sender_cannot_chown_nor_open_up_modes() {
    let reverse = vigie_sync::receive::Policy {
        reverse: true,
        ..vigie_sync::receive::Policy::default()
    };
    let fresh = || {
        let root = tmp();
        chmod(root.path(), 0o755);
        std::fs::create_dir(root.path().join("dir")).unwrap();
        chmod(root.path().join("dir"), 0o755);
        std::fs::write(root.path().join("file"), "primary").unwrap();
        chmod(root.path().join("file"), 0o640);
        root
    };
    let refusals: Vec<(&str, Vec<Msg>)> = vec![
        ("meta of the root", vec![req::meta(1, b"", 0o777)]),
        (
            "own of the root",
            vec![req::own(1, b"", (65534, 65534), 0o777)],
        ),
        (
            "own of a file",
            vec![req::own(1, b"file", (65534, 65534), 0o666)],
        ),
    ];
    assert_each_refused(&reverse, fresh, refusals, |what, root, r| {
        assert_refused_on_a_reverse_pass(what, r);
        assert_eq!(mode_of(root), 0o755, "{what}");
        assert_eq!(mode_of(&root.join("file")), 0o640, "{what}");
    });
    // Updates go through, without group or other write bits that the
    // entry here lacks; a new entry gets the mode sent.
    let root = fresh();
    let mut msgs = vec![
        req::meta(1, b"file", 0o666),
        req::mkdir(2, b"dir", 0o777),
        req::meta(3, b"dir", 0o777),
    ];
    msgs.extend(file_as(4, 0o662, b"file", b"from the backup"));
    msgs.extend(file_as(5, 0o664, b"dir/new", b"new"));
    assert_all_done(root.path(), reverse, &msgs);
    assert_eq!(read(&root.path().join("file")), "from the backup");
    assert_eq!(mode_of(&root.path().join("file")), 0o640);
    assert_eq!(mode_of(&root.path().join("dir")), 0o755);
    assert_eq!(mode_of(&root.path().join("dir/new")), 0o664);
    assert_eq!(mode_of(root.path()), 0o755);
}

/// A local user of the backup swaps a symlink to a file outside in and
/// out at a name the sender changes the mode of: root must never change
/// the file outside (the mode was once set by a call that followed
/// links, after a check that did not).
#[test]
fn a_symlink_swapped_in_never_redirects_a_change_of_mode() {
    let outside = tmp();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "not yours").unwrap();
    chmod(&victim, 0o644);
    let root = outside.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), "f").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (root, victim, stop) = (root.clone(), victim.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(root.join("link"));
                symlink(&victim, root.join("link")).unwrap();
                std::fs::rename(root.join("link"), root.join("f")).unwrap();
                std::fs::write(root.join("plain"), "f").unwrap();
                std::fs::rename(root.join("plain"), root.join("f")).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let msgs: Vec<Msg> = (0..20_000)
        .map(|id| Msg::Meta {
            id,
            path: b"f".to_vec(),
            mode: 0o600,
            mtime: 1_000_000_000,
        })
        .collect();
    let r = serve_in_process(&root, vigie_sync::receive::Policy::default(), &msgs);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "only {swaps} swaps");
    let acks = r.iter().filter(|m| matches!(m, Msg::Ack { .. })).count();
    assert!(acks > 1000, "{acks} of 20000 changes done: {:?}", r.last());
    assert_eq!(mode_of(&victim), 0o644, "root changed a file outside");
    let mtime = std::fs::metadata(&victim).unwrap().modified().unwrap();
    assert_ne!(mtime, std::time::UNIX_EPOCH + Duration::from_secs(1));
}

/// The sender opens source files beneath its root: a directory swapped
/// for a symlink after the listing does not lead it outside, and a FIFO
/// swapped in for a file does not hang it.
#[test]
fn the_sender_never_reads_outside_its_root_nor_hangs_on_a_fifo() {
    let (outside, dst) = (tmp(), tmp());
    let src = outside.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), "public").unwrap();
    std::fs::write(src.join("pipe"), "a file for now").unwrap();
    std::fs::create_dir(outside.path().join("private")).unwrap();
    std::fs::write(outside.path().join("private/f"), "secret").unwrap();
    let spec = local_spec(&src, dst.path());
    let mut s = vigie_sync::session::Session::open(&spec.to, "t", false).unwrap();
    let listed = vigie_sync::job::local_tree(&src, &Excludes::default()).unwrap();
    // Swapped between the listing and the reading.
    std::fs::remove_dir_all(src.join("d")).unwrap();
    symlink(outside.path().join("private"), src.join("d")).unwrap();
    std::fs::remove_file(src.join("pipe")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        for p in [&b"d/f"[..], b"pipe"] {
            match s.file(&src, &listed[p]).unwrap() {
                vigie_sync::session::FileSent::Unreadable(why) => said.push(why),
                _ => said.push("sent".into()),
            }
        }
        s.settle().unwrap();
        tx.send(said).unwrap();
    });
    let said = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the sender hung");
    assert!(said.iter().all(|w| w != "sent"), "{said:?}");
    assert!(said[1].contains("not a regular file"), "{said:?}");
    assert!(!dst.path().join("d/f").exists());
}

/// The replicated root is an entry like any other: its mode and times
/// follow the source's, at the first copy, live, and after a restart.
#[test]
fn the_root_s_own_mode_and_times_follow_the_source() {
    let (src, dst) = (tmp(), tmp());
    populate(src.path());
    chmod(src.path(), 0o775);
    chmod(dst.path(), 0o700);
    let spec = local_spec(src.path(), dst.path());
    vigie_sync::once(&spec).unwrap();
    // `tree` holds the root too: its mode and mtime to the nanosecond.
    assert_eq!(mode_of(dst.path()), 0o775);
    assert_same(src.path(), dst.path());
    let live = Live::start(spec.clone());
    chmod(src.path(), 0o750);
    wait_until(Duration::from_secs(10), || mode_of(dst.path()) == 0o750);
    std::fs::write(src.path().join("new-at-the-top"), "x").unwrap();
    wait_same(src.path(), dst.path());
    drop(live);
    // Changed while no sender ran: the next one brings it.
    chmod(src.path(), 0o755);
    std::fs::remove_file(src.path().join("new-at-the-top")).unwrap();
    let _live = Live::start(spec);
    wait_same(src.path(), dst.path());
}

fn inode(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

/// A write through one name of a hard-linked file changes every name,
/// but inotify tells only the name written: the replica's other names
/// kept the old contents. Every name comes along, as a hard link.
#[test]
fn a_write_through_one_name_of_a_hard_link_reaches_every_name() {
    let (src, dst) = (tmp(), tmp());
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("a"), "version 0").unwrap();
    std::fs::hard_link(src.path().join("a"), src.path().join("b")).unwrap();
    std::fs::hard_link(src.path().join("a"), src.path().join("sub/c")).unwrap();
    std::fs::write(src.path().join("alone"), "one name").unwrap();
    let spec = local_spec(src.path(), dst.path());
    vigie_sync::once(&spec).unwrap();
    assert_same(src.path(), dst.path());
    let linked = |d: &Path| {
        let i = inode(&d.join("a"));
        i == inode(&d.join("b")) && i == inode(&d.join("sub/c")) && i != inode(&d.join("alone"))
    };
    assert!(linked(dst.path()), "hard links were not kept");
    let _live = Live::start(spec);
    for (i, name) in ["b", "sub/c", "a"].into_iter().enumerate() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(src.path().join(name))
            .unwrap();
        f.write_all_at(format!("version {} through {name}", i + 1).as_bytes(), 0)
            .unwrap();
        drop(f);
        wait_same(src.path(), dst.path());
        assert!(
            linked(dst.path()),
            "hard links were broken by a write through {name}"
        );
    }
}
