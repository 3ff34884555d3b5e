//! Where the running daemon is. `vigie run` records its configuration
//! file, state directory and API address in `daemon.json`, in its state
//! directory (kept after it stops: the configuration that state belongs
//! to) and in a well-known runtime file (`/run/vigie/daemon.json` as
//! root, `$XDG_RUNTIME_DIR/vigie/daemon.json` otherwise;
//! `$VIGIE_RUNTIME_DIR` names another directory), removed when it stops.
//!
//! The commands that read the daemon's state (`status`, `incidents`,
//! `ack`, `failover`, `sync status|pause|resume`, `heartbeat-url`) use
//! that record when no `-c` (or `$VIGIE_CONFIG`) names a configuration:
//! with `--state-dir DIR`, the record in DIR; without, the runtime file.

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
    let written = fs_err::create_dir_all(&dir)
        .and_then(|()| crate::run::write_atomic(&dir.join(FILE), &text));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot record where this daemon runs (vigie status will need -c)");
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

/// The record at `path`, if it is written by this user or root: a
/// record another user could write would choose the configuration (and
/// so the secret files) this command reads.
fn read_json(path: &Path) -> Option<Value> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() || (meta.uid() != me && meta.uid() != 0) {
        tracing::warn!(path = %path.display(), "ignoring a daemon record that is not this user's nor root's");
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn read(path: &Path) -> Option<Record> {
    let v = read_json(path)?;
    let state_dir = PathBuf::from(v["state_dir"].as_str()?);
    let config = match &v["config"] {
        Value::Null => None,
        c => Some(PathBuf::from(c.as_str()?)),
    };
    Some(Record { config, state_dir })
}

/// The running daemon's record, for a command that reads its state and
/// names no configuration; looked up once.
pub(crate) fn daemon(cli: &Cli) -> Option<&'static Record> {
    static FOUND: OnceLock<Option<Record>> = OnceLock::new();
    FOUND.get_or_init(|| find(cli)).as_ref()
}

fn find(cli: &Cli) -> Option<Record> {
    let reads_state = matches!(
        cli.command,
        Command::Status { .. }
            | Command::Incidents { .. }
            | Command::Ack { .. }
            | Command::Failover { .. }
            | Command::HeartbeatUrl { .. }
            | Command::Sync {
                action: Some(_),
                ..
            }
    );
    if !reads_state || cli.config.is_some() {
        return None;
    }
    let record = match &cli.state_dir {
        Some(dir) => read(&dir.join(FILE)),
        None => read(&runtime_dir()?.join(FILE)).filter(|r| r.state_dir.is_dir()),
    }?;
    tracing::info!(
        config = %record.config.as_ref().map_or_else(|| vigie_config::QUICKSTART_NAME.to_owned(), |c| c.display().to_string()),
        state_dir = %record.state_dir.display(),
        "using the running daemon's configuration"
    );
    Some(record)
}
