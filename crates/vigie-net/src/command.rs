//! The command runner: a program in its own process group (killed with
//! everything it spawned when the caller drops the future, or when it
//! exits if asked), its output captured and bounded, and without the
//! variables that hold vigie's secrets.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How much output is kept for judging and messages.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// Kills the whole process group when dropped, e.g. when the engine's
/// timeout drops the probe's future.
struct GroupGuard(Option<rustix::process::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// What a finished program said.
#[derive(Clone, Debug)]
pub struct Output {
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub text: String,
}

/// What happens to processes a command leaves behind when it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftovers {
    /// Killed: a probe leaves nothing running.
    Kill,
    /// Kept: a repair may start a daemon in the background.
    Keep,
}

/// Run `cmd`, capturing stdout and stderr (bounded), in a fresh group,
/// without the secrets' variables: every child vigie runs comes here or
/// through `vigie_config::scrub_secret_env` (sync's ssh).
pub async fn capture(mut cmd: Command, leftovers: Leftovers) -> std::io::Result<Output> {
    vigie_config::scrub_secret_env(cmd.as_std_mut());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let guard = GroupGuard(
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    );
    let mut out = tokio::spawn(read_bounded(child.stdout.take()));
    let mut err = tokio::spawn(read_bounded(child.stderr.take()));
    let status = child.wait().await?;
    let (out, err) = match leftovers {
        Leftovers::Kill => {
            // The leader is gone; end whatever it left in its group, which
            // also closes the pipes the readers wait on.
            drop(guard);
            (out.await.unwrap_or_default(), err.await.unwrap_or_default())
        }
        Leftovers::Keep => {
            // A daemon started in the background may hold the pipes open:
            // take what came and stop listening.
            let mut guard = guard;
            guard.0 = None;
            let grace = std::time::Duration::from_millis(200);
            let o = tokio::time::timeout(grace, &mut out)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let e = tokio::time::timeout(grace, &mut err)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            out.abort();
            err.abort();
            (o, e)
        }
    };
    let mut text = out;
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    Ok(Output {
        status: status.code(),
        signal: status.signal(),
        text,
    })
}

async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(mut r) = r else { return String::new() };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 8192];
    // Keep reading past the limit so the program never blocks on a full pipe.
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The first line of `text` that says something, cut at 200 characters.
pub fn first_line(text: &str) -> &str {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(200) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// Run `argv` (no shell) with extra environment, in its own process
/// group, capturing its output. Dropping the future kills the group, so a
/// caller's timeout ends everything the program started.
pub async fn run_argv(argv: &[String], env: &[(String, String)]) -> std::io::Result<Output> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    capture(cmd, Leftovers::Keep).await
}
