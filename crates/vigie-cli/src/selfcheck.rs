//! `vigie self check`: what this host allows vigie to do, before a
//! check or a replication finds out at 3 a.m. Each finding is `ok`,
//! `warn` (works, with a caveat) or `fail` (something the configuration
//! needs is missing), with the fix.

use std::path::{Path, PathBuf};

use serde_json::json;
use vigie_config::{Config, Probe};

use crate::{Cli, Result, exit, load, out_json, out_table, state_dir};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

struct Finding {
    what: &'static str,
    level: Level,
    detail: String,
    hint: Option<String>,
}

fn finding(what: &'static str, level: Level, detail: impl Into<String>) -> Finding {
    Finding {
        what,
        level,
        detail: detail.into(),
        hint: None,
    }
}

impl Finding {
    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

pub(crate) fn run(cli: &Cli, json: bool) -> Result<u8> {
    let config = load(cli)?.config;
    let dir = state_dir(cli, &config);
    let findings = [
        state_directory(&dir),
        icmp(&config),
        inotify(&config),
        program(
            "ssh",
            "ssh",
            config
                .syncs
                .iter()
                .find(|j| j.destination().0.is_some())
                .map(|j| format!("sync {}", j.name)),
            "apt install openssh-client",
        ),
        program(
            "systemd",
            "systemctl",
            config
                .checks
                .iter()
                .find(|c| matches!(c.probe, Probe::Systemd(_)))
                .map(|c| format!("check {}", c.name)),
            "systemd checks need systemd; use a process or command check elsewhere",
        ),
    ];
    let worst = findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok);
    if json {
        let items: Vec<_> = findings
            .iter()
            .map(|f| json!({"what": f.what, "level": f.level.as_str(), "detail": f.detail, "hint": f.hint}))
            .collect();
        out_json(&json!(items))?;
    } else {
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                let mut detail = f.detail.clone();
                if let Some(h) = &f.hint {
                    detail = format!("{detail} (fix: {h})");
                }
                vec![f.what.to_owned(), f.level.as_str().to_uppercase(), detail]
            })
            .collect();
        out_table(&["WHAT", "LEVEL", "DETAIL"], &rows)?;
    }
    Ok(if worst == Level::Fail {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

/// Whether a file can be made in `dir` (made and removed).
fn takes_a_file(dir: &Path) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(".vigie-self-check-{}-{nanos}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// The state directory exists and takes a file, or can be made.
fn state_directory(dir: &Path) -> Finding {
    const WHAT: &str = "state directory";
    let shown = dir.display();
    if dir.is_dir() {
        return match takes_a_file(dir) {
            Ok(()) => finding(WHAT, Level::Ok, format!("{shown} is writable")),
            Err(e) => finding(WHAT, Level::Fail, format!("{shown} is not writable: {e}"))
                .hint("run as the user that owns it, or pass --state-dir"),
        };
    }
    if dir.exists() {
        return finding(WHAT, Level::Fail, format!("{shown} is not a directory"))
            .hint("pass --state-dir, or set [store] dir");
    }
    // The daemon makes it: the nearest existing parent must let it.
    let parent = dir
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    match takes_a_file(&parent) {
        Ok(()) => finding(
            WHAT,
            Level::Ok,
            format!("{shown} does not exist yet; vigie run will make it"),
        ),
        Err(e) => finding(
            WHAT,
            Level::Fail,
            format!("{shown} cannot be made ({}: {e})", parent.display()),
        )
        .hint("make it for this user, or pass --state-dir"),
    }
}

/// ICMP sockets, for `ping` checks.
fn icmp(config: &Config) -> Finding {
    const WHAT: &str = "ping (ICMP)";
    let needed = config
        .checks
        .iter()
        .find(|c| matches!(c.probe, Probe::Ping(_)))
        .map(|c| c.name.clone());
    match (vigie_probe::icmp_access(false), needed) {
        (Ok(how), _) => finding(WHAT, Level::Ok, format!("allowed: {how}")),
        (Err(e), Some(check)) => finding(
            WHAT,
            Level::Fail,
            format!("needed by check {check}: {e}"),
        )
        .hint(
            "sysctl net.ipv4.ping_group_range=\"0 2147483647\", or AmbientCapabilities=CAP_NET_RAW",
        ),
        (Err(e), None) => finding(WHAT, Level::Warn, format!("no ping check needs it: {e}")),
    }
}

/// A kernel setting under /proc/sys, as a number.
fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Directories under `root`, counted up to `limit` (one inotify watch
/// each).
fn directories(root: &Path, limit: u64) -> u64 {
    let mut n = 0;
    let mut todo = vec![root.to_owned()];
    while let Some(d) = todo.pop() {
        n += 1;
        if n > limit {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    n
}

/// inotify's watch limit against the directories the replication jobs
/// watch.
fn inotify(config: &Config) -> Finding {
    const WHAT: &str = "inotify";
    let Some(watches) = sysctl("/proc/sys/fs/inotify/max_user_watches") else {
        return finding(WHAT, Level::Warn, "cannot read fs.inotify.max_user_watches");
    };
    let instances = sysctl("/proc/sys/fs/inotify/max_user_instances").unwrap_or(0);
    let needed: u64 = config
        .syncs
        .iter()
        .map(|j| directories(&j.from, watches))
        .sum();
    let detail = format!(
        "max_user_watches {watches}, max_user_instances {instances}; the sync jobs watch {needed} directories"
    );
    if needed > watches {
        let want = needed.saturating_mul(2).max(524_288);
        finding(WHAT, Level::Fail, detail)
            .hint(format!("sysctl fs.inotify.max_user_watches={want}"))
    } else if needed > watches / 2 {
        finding(WHAT, Level::Warn, detail).hint("raise fs.inotify.max_user_watches: the trees grow")
    } else {
        finding(WHAT, Level::Ok, detail)
    }
}

/// `program` on the PATH; `needed_by` names what needs it.
fn program(what: &'static str, program: &str, needed_by: Option<String>, fix: &str) -> Finding {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| {
                use std::os::unix::fs::PermissionsExt;
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    });
    match (found, needed_by) {
        (Some(p), _) => finding(what, Level::Ok, format!("{} found", p.display())),
        (None, Some(by)) => finding(
            what,
            Level::Fail,
            format!("{program} is not on the PATH, and {by} needs it"),
        )
        .hint(fix),
        (None, None) => finding(
            what,
            Level::Warn,
            format!("{program} is not on the PATH (nothing configured needs it)"),
        ),
    }
}
