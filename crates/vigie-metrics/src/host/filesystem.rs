//! Filesystems (collector `filesystem`): the mounts of
//! `/proc/self/mountinfo` (what this process sees, so what `statvfs`
//! reaches), each asked `statvfs` for `node_filesystem_*` with
//! node_exporter's labels `{device, device_error, fstype, mountpoint}`.
//!
//! Left out as node_exporter's defaults do: mount points under `/dev`,
//! `/proc`, `/sys`, `/run/credentials/…`, `/var/lib/docker/…` and
//! `/var/lib/containers/storage/…`, and pseudo filesystem types
//! ([`IGNORED_TYPES`]). Network and FUSE filesystems are *not* skipped:
//! `statvfs` runs on a worker thread and a mount that does not answer
//! within the timeout is reported with `node_filesystem_device_error` 1
//! and `device_error="mountpoint timeout"`, then skipped (not asked
//! again, so no thread piles up behind it) until its pending call
//! returns — a hung NFS server blocks one thread, never the collector.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{Kind, Sample};

/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
pub const IGNORED_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
];

/// node_exporter's default `--collector.filesystem.mount-points-exclude`:
/// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
pub fn ignored_mount_point(mount_point: &str) -> bool {
    let Some(rest) = mount_point.strip_prefix('/') else {
        return false;
    };
    let whole = ["dev", "proc", "sys"].iter().any(|p| {
        rest.strip_prefix(p)
            .is_some_and(|after| after.is_empty() || after.starts_with('/'))
    });
    let below = [
        "run/credentials/",
        "var/lib/docker/",
        "var/lib/containers/storage/",
    ]
    .iter()
    .any(|p| rest.strip_prefix(p).is_some_and(|after| !after.is_empty()));
    whole || below
}

fn ignored_type(fstype: &str) -> bool {
    IGNORED_TYPES.contains(&fstype)
}

/// One line of mountinfo, its strings kept between calls.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub major: String,
    pub minor: String,
    pub read_only: bool,
}

/// `\040`, `\011`, `\012` and `\134` (space, tab, newline, backslash)
/// are how the kernel writes them in mountinfo.
fn unescape_into(out: &mut String, field: &str) {
    out.clear();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) if byte.is_ascii() => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            _ => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
}

/// Parse one mountinfo line into `m`:
/// `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER`.
pub fn parse_mount(line: &str, m: &mut Mount) -> Result<(), String> {
    let mut fields = line.split_ascii_whitespace();
    let short = || format!("line `{line}` has too few fields");
    let majmin = fields.nth(2).ok_or_else(short)?;
    let (major, minor) = majmin
        .split_once(':')
        .filter(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
        .ok_or_else(|| format!("device number `{majmin}` is not MAJOR:MINOR"))?;
    let mount_point = fields.nth(1).ok_or_else(short)?;
    let options = fields.next().ok_or_else(short)?;
    // Optional fields until the separator.
    fields
        .by_ref()
        .find(|f| *f == "-")
        .ok_or_else(|| format!("line `{line}` has no ` - ` separator"))?;
    let fstype = fields.next().ok_or_else(short)?;
    let source = fields.next().ok_or_else(short)?;
    let super_options = fields.next().unwrap_or("");
    m.major.clear();
    m.major.push_str(major);
    m.minor.clear();
    m.minor.push_str(minor);
    unescape_into(&mut m.mountpoint, mount_point);
    unescape_into(&mut m.fstype, fstype);
    unescape_into(&mut m.device, source);
    m.read_only = options.split(',').any(|o| o == "ro")
        || super_options
            .split(',')
            .any(|o| o == "ro" || o == "emergency_ro");
    Ok(())
}

/// What `statvfs` says of a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Space {
    /// The unit of the block counts (`f_frsize`, as df uses).
    fragment: u64,
    blocks: u64,
    free: u64,
    avail: u64,
    files: u64,
    files_free: u64,
}

/// What `statvfs` of a mount point gave.
#[derive(Debug)]
enum Stat {
    Ok(Space),
    Failed(std::io::Error),
    /// No answer within the timeout, now or at an earlier call.
    Stuck,
}

/// The thread that calls `statvfs`; a path travels to it and back, so
/// that nothing is allocated per call.
#[derive(Debug)]
struct Worker {
    jobs: mpsc::SyncSender<String>,
    replies: mpsc::Receiver<(String, std::io::Result<Space>)>,
}

/// How the worker asks: `statvfs`, or in tests a call that first blocks
/// as a hung mount does.
type StatCall = fn(&str) -> std::io::Result<Space>;

fn statvfs(path: &str) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(path)?;
    Ok(Space {
        fragment: s.f_frsize,
        blocks: s.f_blocks,
        free: s.f_bfree,
        avail: s.f_bavail,
        files: s.f_files,
        files_free: s.f_ffree,
    })
}

/// `statvfs` with a timeout.
#[derive(Debug)]
struct Statter {
    call: StatCall,
    timeout: Duration,
    worker: Option<Worker>,
    /// Mount points whose `statvfs` has not returned; the abandoned
    /// worker removes its own when its call returns.
    stuck: Arc<Mutex<Vec<String>>>,
    spare: Option<String>,
}

impl Statter {
    fn new(timeout: Duration) -> Self {
        Self {
            call: statvfs,
            timeout,
            worker: None,
            stuck: Arc::default(),
            spare: Some(String::new()),
        }
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        // One job at a time, one reply: bounded channels are allocated
        // here, once, where an unbounded one allocates as it goes.
        let (jobs, job_rx) = mpsc::sync_channel::<String>(1);
        let (reply_tx, replies) = mpsc::sync_channel(1);
        let stuck = self.stuck.clone();
        let call = self.call;
        std::thread::Builder::new()
            .name("vigie-statvfs".into())
            .spawn(move || {
                while let Ok(path) = job_rx.recv() {
                    let result = call(&path);
                    // Under the lock: the collector either finds this reply
                    // when it gives up, or has marked the mount stuck and
                    // this unmarks it.
                    let mut stuck = stuck.lock().unwrap_or_else(PoisonError::into_inner);
                    stuck.retain(|p| *p != path);
                    if reply_tx.send((path, result)).is_err() {
                        return; // abandoned
                    }
                }
            })?;
        Ok(Worker { jobs, replies })
    }

    fn stat(&mut self, path: &str) -> Stat {
        {
            let stuck = self.stuck.lock().unwrap_or_else(PoisonError::into_inner);
            if stuck.iter().any(|p| p == path) {
                return Stat::Stuck;
            }
        }
        let worker = match self.worker.take() {
            Some(w) => w,
            None => match self.spawn() {
                Ok(w) => w,
                Err(e) => return Stat::Failed(e),
            },
        };
        let mut job = self.spare.take().unwrap_or_default();
        job.clear();
        job.push_str(path);
        if worker.jobs.send(job).is_err() {
            return Stat::Failed(std::io::Error::other("the statvfs thread is gone"));
        }
        let reply = match worker.replies.recv_timeout(self.timeout) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Disconnected) => {
                return Stat::Failed(std::io::Error::other("the statvfs thread is gone"));
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut stuck = self.stuck.lock().unwrap_or_else(PoisonError::into_inner);
                if let Ok(reply) = worker.replies.try_recv() {
                    reply
                } else {
                    // Abandon the worker to its call; the next mount gets
                    // a new one.
                    stuck.push(path.to_owned());
                    return Stat::Stuck;
                }
            }
        };
        self.worker = Some(worker);
        let (job, result) = reply;
        self.spare = Some(job);
        match result {
            Ok(s) => Stat::Ok(s),
            Err(e) => Stat::Failed(e),
        }
    }
}

/// The mounts read and the `statvfs` worker, kept between calls.
#[derive(Debug)]
pub struct FsState {
    mounts: Vec<Mount>,
    statter: Statter,
}

impl FsState {
    pub fn new(timeout: Duration) -> Self {
        Self {
            mounts: Vec::new(),
            statter: Statter::new(timeout),
        }
    }

    /// Read the mounts of mountinfo's `text`, keep those node_exporter
    /// keeps, and give each one's samples.
    pub fn collect(&mut self, text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if n == self.mounts.len() {
                self.mounts.push(Mount::default());
            }
            parse_mount(line, &mut self.mounts[n])?;
            let m = &self.mounts[n];
            if ignored_mount_point(&m.mountpoint) || ignored_type(&m.fstype) {
                continue;
            }
            // The same mount seen twice (bind mounts of one filesystem
            // over one mount point) is given once.
            if self.mounts[..n].iter().any(|o| same_labels(o, m)) {
                continue;
            }
            n += 1;
        }
        for m in &self.mounts[..n] {
            let stat = self.statter.stat(&m.mountpoint);
            mount_samples(m, &stat, out);
        }
        Ok(())
    }
}

fn same_labels(a: &Mount, b: &Mount) -> bool {
    a.device == b.device
        && a.mountpoint == b.mountpoint
        && a.fstype == b.fstype
        && a.major == b.major
        && a.minor == b.minor
}

fn mount_samples(m: &Mount, stat: &Stat, out: &mut Vec<Sample>) {
    let error = match stat {
        Stat::Ok(_) => String::new(),
        Stat::Failed(e) => e.to_string(),
        Stat::Stuck => "mountpoint timeout".to_owned(),
    };
    let labels = || {
        vec![
            ("device", m.device.clone()),
            ("device_error", error.clone()),
            ("fstype", m.fstype.clone()),
            ("mountpoint", m.mountpoint.clone()),
        ]
    };
    let gauge = |name, help, value| Sample {
        name,
        help,
        kind: Kind::Gauge,
        labels: labels(),
        value,
    };
    out.push(gauge(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
        f64::from(u8::from(!error.is_empty())),
    ));
    out.push(gauge(
        "node_filesystem_readonly",
        "Filesystem read-only status.",
        f64::from(u8::from(m.read_only)),
    ));
    let Stat::Ok(s) = stat else { return };
    let bytes = |blocks: u64| blocks as f64 * s.fragment as f64;
    out.push(gauge(
        "node_filesystem_size_bytes",
        "Filesystem size in bytes.",
        bytes(s.blocks),
    ));
    out.push(gauge(
        "node_filesystem_free_bytes",
        "Filesystem free space in bytes.",
        bytes(s.free),
    ));
    out.push(gauge(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
        bytes(s.avail),
    ));
    out.push(gauge(
        "node_filesystem_files",
        "Filesystem total file nodes.",
        s.files as f64,
    ));
    out.push(gauge(
        "node_filesystem_files_free",
        "Filesystem total free file nodes.",
        s.files_free as f64,
    ));
    out.push(Sample {
        name: "node_filesystem_mount_info",
        help: "Filesystem mount information.",
        kind: Kind::Gauge,
        labels: vec![
            ("device", m.device.clone()),
            ("major", m.major.clone()),
            ("minor", m.minor.clone()),
            ("mountpoint", m.mountpoint.clone()),
        ],
        value: 1.0,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::read;

    #[test]
    fn the_default_filters_are_node_exporters() {
        for skipped in [
            "/dev",
            "/dev/shm",
            "/proc",
            "/proc/sys/fs/binfmt_misc",
            "/sys",
            "/sys/fs/cgroup",
            "/run/credentials/getty@tty1.service",
            "/var/lib/docker/overlay2/abc/merged",
            "/var/lib/containers/storage/overlay",
        ] {
            assert!(ignored_mount_point(skipped), "{skipped} is skipped");
        }
        for kept in [
            "/",
            "/devices",
            "/sysroot",
            "/run",
            "/run/credentials",
            "/var/lib/docker",
            "/home",
            "/boot/efi",
        ] {
            assert!(!ignored_mount_point(kept), "{kept} is kept");
        }
        assert!(ignored_type("tracefs") && ignored_type("overlay") && ignored_type("cgroup2"));
        assert!(!ignored_type("ext4") && !ignored_type("tmpfs") && !ignored_type("nfs4"));
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let mut m = Mount::default();
        parse_mount(
            "36 35 98:0 /mnt1 /mnt/my\\040disk\\134x rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue",
            &mut m,
        )
        .unwrap();
        assert_eq!(m.mountpoint, "/mnt/my disk\\x");
        assert_eq!((m.major.as_str(), m.minor.as_str()), ("98", "0"));
        assert_eq!(
            (m.fstype.as_str(), m.device.as_str()),
            ("ext3", "/dev/root")
        );
        assert!(!m.read_only);
        parse_mount("1 2 0:5 / /a ro - tmpfs x rw", &mut m).unwrap();
        assert!(m.read_only);
        parse_mount("1 2 0:5 / /a rw - ext4 x rw,emergency_ro", &mut m).unwrap();
        assert!(m.read_only);
        let e = parse_mount("1 2 0:5 / /a rw ext4 x rw", &mut m).unwrap_err();
        assert!(e.contains("no ` - ` separator"), "{e}");
        let e = parse_mount("1 2 zero / /a rw - ext4 x rw", &mut m).unwrap_err();
        assert!(e.contains("not MAJOR:MINOR"), "{e}");
    }

    #[test]
    fn this_machines_mounts_keep_the_real_filesystems() {
        let mut out = Vec::new();
        FsState::new(Duration::from_secs(5))
            .collect(&read("proc/self/mountinfo"), &mut out)
            .unwrap();
        let mounts: Vec<(&str, &str)> = out
            .iter()
            .filter(|s| s.name == "node_filesystem_readonly")
            .map(|s| (s.label("mountpoint").unwrap(), s.label("fstype").unwrap()))
            .collect();
        // /proc, /sys, /dev and cgroups are gone; / (ext4) stays.
        assert_eq!(mounts, [("/", "ext4")]);
        let root = |n| {
            out.iter()
                .find(|s| s.name == n && s.label("mountpoint") == Some("/"))
                .map(|s| s.value)
        };
        assert_eq!(root("node_filesystem_device_error"), Some(0.0));
        assert!(root("node_filesystem_size_bytes").unwrap() > 0.0);
        assert_eq!(
            out.iter()
                .find(|s| s.name == "node_filesystem_size_bytes")
                .unwrap()
                .labels
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>(),
            ["device", "device_error", "fstype", "mountpoint"]
        );
    }

    #[test]
    fn a_mount_point_that_cannot_be_asked_is_an_error_not_a_gap() {
        let mut out = Vec::new();
        FsState::new(Duration::from_secs(5))
            .collect(
                "1 2 0:99 / /nonexistent/vigie-test rw - ext4 /dev/gone rw\n",
                &mut out,
            )
            .unwrap();
        let names: Vec<&str> = out.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["node_filesystem_device_error", "node_filesystem_readonly"]
        );
        assert_eq!(out[0].value, 1.0);
        assert!(
            out[0]
                .label("device_error")
                .unwrap()
                .contains("No such file"),
            "{:?}",
            out[0]
        );
    }

    #[test]
    fn a_mount_that_does_not_answer_is_stuck_until_its_call_returns() {
        // A FIFO stands for a hung mount: the worker blocks opening it
        // before its statvfs, as statvfs blocks on a dead NFS server,
        // until a writer comes.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let blocked = fifo.to_str().unwrap().to_owned();
        let mut statter = Statter::new(Duration::from_millis(100));
        statter.call = |path| {
            if path.ends_with("fifo") {
                // Blocks until a writer opens it.
                std::fs::File::open(path)?;
            }
            statvfs(path)
        };
        assert!(matches!(statter.stat(&blocked), Stat::Stuck));
        // Asked again: still stuck, without a second call piling up.
        assert!(matches!(statter.stat(&blocked), Stat::Stuck));
        // Other mounts are answered by a new worker meanwhile.
        assert!(matches!(statter.stat("/"), Stat::Ok(_)));
        // The hung call returns (a writer opens the FIFO): the mount is
        // asked again.
        let _writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match statter.stat(&blocked) {
                Stat::Ok(_) => break,
                Stat::Stuck if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
