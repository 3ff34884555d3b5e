//! Where the running daemon is. `vigie run` records its configuration
//! file, state directory and API address in `daemon.json`, in its state
//! directory (kept after it stops: the configuration that state belongs
//! to) and in a well-known runtime file (`/run/vigie/daemon.json` as
//! root, `$XDG_RUNTIME_DIR/vigie/daemon.json` otherwise;
//! `$VIGIE_RUNTIME_DIR` names another directory), removed when it stops.
//!
//! The commands that read the daemon's state (`status`, `incidents`,
//! `ack`, `failover`, `sync status|pause|resume`, `heartbeat-url`,
//! `self check`) use
//! that record when no `-c` (or `$VIGIE_CONFIG`) names a configuration:
//! with `--state-dir DIR`, the record in DIR; without, the runtime file,
//! if its daemon still holds its state directory. Several daemons as
//! root share `/run/vigie`: the last one started is the one found (give
//! each its own `VIGIE_RUNTIME_DIR`, or name `-c`). A record is followed
//! only when this user or root wrote it in a directory no one else may
//! write.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::args::{Cli, Command};

/// The record's file name, in the state directory and the runtime
/// directory alike.
pub(crate) const FILE: &str = "daemon.json";

/// What a daemon recorded of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its configuration file; `None`: the embedded quickstart.
    pub config: Option<PathBuf>,
    pub state_dir: PathBuf,
}

/// The runtime directory where a daemon says where it runs, if any.
fn runtime_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("VIGIE_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Some(d.into());
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/run/vigie"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("vigie"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Record where this daemon runs: its configuration file (`None`: the
/// embedded quickstart), its state directory and the address its API
/// answers on. A record that cannot be written is a warning: the daemon
/// runs without, and the CLI needs `-c` to find it.
pub(crate) fn publish(config: Option<&Path>, state_dir: &Path, api: &str) {
    let record = json!({
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "config": config.map(|c| absolute(c).display().to_string()),
        "state_dir": absolute(state_dir).display().to_string(),
        "api": api,
    });
    let text = format!("{record:#}\n");
    if let Err(e) = crate::run::write_atomic(&state_dir.join(FILE), &text) {
        tracing::warn!(error = %e, "cannot record where this daemon runs in its state directory");
    }
    let Some(dir) = runtime_dir() else { return };
    let written = own_dir(&dir).and_then(|()| crate::run::write_atomic(&dir.join(FILE), &text));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot record where this daemon runs (vigie status will need -c)");
    }
}

/// Make the runtime directory (0755), or take an existing one only if
/// it is this user's or root's and no one else may write in it.
fn own_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let st = rustix::fs::lstat(dir)?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    if is_dir && trusted(st.st_uid) && st.st_mode & 0o022 == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a directory of this user's or root's that only they may write",
            dir.display()
        )))
    }
}

/// Remove the runtime record if it is this daemon's (another daemon may
/// have written it since). The state directory's record stays.
pub(crate) fn withdraw() {
    let Some(path) = runtime_dir().map(|d| d.join(FILE)) else {
        return;
    };
    let ours = read_json(&path)
        .and_then(|v| v["pid"].as_u64())
        .is_some_and(|pid| pid == u64::from(std::process::id()));
    if ours {
        let _ = fs_err::remove_file(path);
    }
}

/// Whether `uid` is this user or root.
fn trusted(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// The record at `path`, if this user or root wrote it, in a directory
/// only this user or root can change: a record another user could write
/// would choose the configuration (and so the secret files, and the
/// commands of a DNS provider) this command reads. The file is opened
/// without following a link and judged by its descriptor, so it cannot
/// be swapped between the look and the read.
fn read_json(path: &Path) -> Option<Value> {
    use rustix::fs::{FileType, Mode, OFlags};
    let refuse = |why: &str| {
        tracing::warn!(path = %path.display(), "ignoring the daemon's record: {why}");
        None
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name()?;
    // The directory by its descriptor, the file opened beneath it: both
    // judged as they are, not as their paths say a moment later.
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let d = rustix::fs::fstat(&dir_fd).ok()?;
    if !trusted(d.st_uid) || d.st_mode & 0o022 != 0 {
        return refuse("its directory is not this user's nor root's, or others may write in it");
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(&dir_fd, name, flags, Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || !trusted(st.st_uid)
        || st.st_mode & 0o022 != 0
    {
        return refuse("it is not a file of this user's nor root's that only they may write");
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn read(path: &Path) -> Option<Record> {
    read_with_pid(path).map(|(r, _)| r)
}

/// The record and the pid of the daemon that wrote it.
fn read_with_pid(path: &Path) -> Option<(Record, Option<u32>)> {
    let v = read_json(path)?;
    let pid = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    let state_dir = PathBuf::from(v["state_dir"].as_str()?);
    let config = match &v["config"] {
        Value::Null => None,
        c => Some(PathBuf::from(c.as_str()?)),
    };
    Some((Record { config, state_dir }, pid))
}

/// The runtime record, if the daemon that wrote it still runs (holds its
/// state directory's lock): one killed leaves its record behind.
fn running() -> Option<Record> {
    let (record, pid) = read_with_pid(&runtime_dir()?.join(FILE))?;
    let holder = vigie_store::lock::holder_of(&record.state_dir, vigie_store::lock::DAEMON_LOCK)
        .ok()
        .flatten()
        .flatten();
    (pid.is_some() && holder == pid).then_some(record)
}

/// The running daemon's record, for a command that reads its state and
/// names no configuration; looked up once.
pub(crate) fn daemon(cli: &Cli) -> Option<&'static Record> {
    static FOUND: OnceLock<Option<Record>> = OnceLock::new();
    FOUND.get_or_init(|| find(cli)).as_ref()
}

fn find(cli: &Cli) -> Option<Record> {
    // Commands about what the daemon runs: its checks, notifiers,
    // failovers and jobs. Not `run` (it is the daemon), not the far
    // side of a sync, and not `validate`/`show-config`: they read the
    // file being edited (`/etc/vigie/vigie.toml`), which the daemon may
    // not have loaded yet.
    let reads_state = matches!(
        cli.command,
        Command::Status { .. }
            | Command::Incidents { .. }
            | Command::Ack { .. }
            | Command::Maintenance { .. }
            | Command::Failover { .. }
            | Command::HeartbeatUrl { .. }
            | Command::Host { .. }
            | Command::Sync { .. }
            | Command::Check { .. }
            | Command::Notify { .. }
            | Command::Drill { .. }
    );
    if !reads_state || cli.config.is_some() {
        return None;
    }
    let record = match &cli.state_dir {
        Some(dir) => read(&dir.join(FILE)),
        None => running(),
    }?;
    tracing::info!(
        config = %record.config.as_ref().map_or_else(|| vigie_config::QUICKSTART_NAME.to_owned(), |c| c.display().to_string()),
        state_dir = %record.state_dir.display(),
        "using the running daemon's configuration"
    );
    Some(record)
}
