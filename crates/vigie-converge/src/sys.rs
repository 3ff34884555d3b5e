//! What the host is, read without changing it: accounts (`/etc/passwd`,
//! `/etc/group`), files, and programs run to *ask* (dpkg-query,
//! systemctl is-enabled, a command's `unless` guard). A program that
//! changes the host runs through `write::Writer::run`, which reaches
//! [`exec`] with the writer as proof.
#![allow(clippy::disallowed_methods)]

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A program and its arguments (never a shell unless `argv` is
/// `["/bin/sh", "-c", …]`, which the manifest writes only when asked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
}

impl Cmd {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        Self {
            argv: argv.iter().map(|s| s.as_ref().to_owned()).collect(),
            env: Vec::new(),
            cwd: None,
            timeout: Duration::from_mins(10),
        }
    }

    #[must_use]
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// The command as a person would type it, for messages.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
                {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a program ended, and the start of what it printed.
#[derive(Clone, Debug)]
pub struct Output {
    /// The exit code; `None` when a signal ended it (or the timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit 3: <last line of stderr>", for messages.
    pub fn failure(&self) -> String {
        let why = if self.timed_out {
            "timed out (its process group was killed)".to_owned()
        } else {
            match self.code {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".to_owned(),
            }
        };
        let tail = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .or_else(|| self.stdout.lines().rev().find(|l| !l.trim().is_empty()));
        match tail {
            Some(t) => format!("{why}: {}", t.trim()),
            None => why,
        }
    }
}

/// What each stream keeps: enough for a message, bounded for a program
/// that prints without end.
const KEEP: usize = 64 * 1024;

/// How long output may keep coming after the program exited (from
/// what it left running).
const LINGER: Duration = Duration::from_secs(1);

/// Run a program that only *reads* the host (a query, a guard).
pub fn probe(cmd: &Cmd) -> std::io::Result<Output> {
    exec(cmd)
}

/// Run `cmd` in a process group of its own, stdin closed, output kept
/// (bounded), the group killed at its timeout. Reached by [`probe`] and
/// by the writer (which proves enforce mode by existing).
pub(crate) fn exec_with(cmd: &Cmd, _proof: &crate::write::Writer) -> std::io::Result<Output> {
    exec(cmd)
}

fn exec(cmd: &Cmd) -> std::io::Result<Output> {
    let Some((program, args)) = cmd.argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let mut c = Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .process_group(0);
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    let mut child = c
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    // Each stream is read on a thread that hands its text over a
    // channel: a daemon the command started may keep the pipe open
    // after the command exits, and must not hold the run.
    let read = |s: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut s) = s {
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
        });
        rx
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as _));
    let err = read(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= cmd.timeout {
            timed_out = true;
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            break child.wait()?;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    Ok(Output {
        code: status.code(),
        stdout: out.recv_timeout(LINGER).unwrap_or_default(),
        stderr: err.recv_timeout(LINGER).unwrap_or_default(),
        timed_out,
    })
}

/// An entry of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// An entry of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

fn read_db(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

pub fn users() -> std::io::Result<Vec<Passwd>> {
    Ok(read_db(Path::new("/etc/passwd"))?
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 7).then_some(())?;
            Some(Passwd {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
            })
        })
        .collect())
}

pub fn groups() -> std::io::Result<Vec<Group>> {
    Ok(read_db(Path::new("/etc/group"))?
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 4).then_some(())?;
            Some(Group {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect())
}

pub fn user(name: &str) -> std::io::Result<Option<Passwd>> {
    Ok(users()?.into_iter().find(|u| u.name == name))
}

pub fn group(name: &str) -> std::io::Result<Option<Group>> {
    Ok(groups()?.into_iter().find(|g| g.name == name))
}

/// A user's uid by name (or a number).
pub fn uid_of(name: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    user(name)?.map(|u| u.uid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no user `{name}` on this host (declare it with [[user]] and require it)"),
        )
    })
}

/// A group's gid by name (or a number).
pub fn gid_of(name: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    group(name)?.map(|g| g.gid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no group `{name}` on this host (declare it with [[group]] and require it)"),
        )
    })
}

/// The name of a uid, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    users()
        .ok()
        .and_then(|us| us.into_iter().find(|u| u.uid == uid).map(|u| u.name))
        .unwrap_or_else(|| uid.to_string())
}

pub fn group_name(gid: u32) -> String {
    groups()
        .ok()
        .and_then(|gs| gs.into_iter().find(|g| g.gid == gid).map(|g| g.name))
        .unwrap_or_else(|| gid.to_string())
}

/// A file's bytes, `None` when it does not exist.
pub fn read_opt(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        )),
    }
}

/// A path's metadata without following a last link, `None` when absent.
pub fn meta_opt(path: &Path) -> std::io::Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_left_holding_the_pipe_does_not_hold_the_run() {
        let start = Instant::now();
        let out = probe(&Cmd::new(&["sh", "-c", "echo started; sleep 30 & exit 0"])).unwrap();
        assert!(out.success(), "{out:?}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let mut cmd = Cmd::new(&["sh", "-c", "sleep 30; echo never"]);
        cmd.timeout = Duration::from_millis(200);
        let out = probe(&cmd).unwrap();
        assert!(out.timed_out && !out.success(), "{out:?}");
        assert!(out.failure().starts_with("timed out"), "{}", out.failure());
    }
}
