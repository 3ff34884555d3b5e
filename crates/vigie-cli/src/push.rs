//! `vigie converge push MANIFEST HOST…`: converge other hosts over the
//! system `ssh` (the user's config, agent and ProxyJump, as replication
//! reaches its far side), and `vigie converge receive`, its far side.
//!
//! Per host, bounded by `--forks`, one ssh session when vigie is there:
//! 1. is this very binary (its version and SHA-256 in its file name) in
//!    the host's `${XDG_CACHE_HOME:-~/.cache}/vigie/bin`, and does it
//!    run? If so the session becomes `converge receive`, whose first
//!    line is the host's facts;
//! 2. if not, a second session streams the binary to a temporary file
//!    there, checks its SHA-256, renames it into place (never a
//!    half-written binary) and removes the other `vigie-*` files there;
//!    then 1 again;
//! 3. the manifest is loaded here with the host's facts and name (its
//!    errors found before anything is sent, and the exact list of files
//!    it reads), and sent as a bundle (`vigie_converge::bundle`) to
//!    `converge receive`, which unpacks it in a fresh private temporary
//!    directory, runs it, streams each resource's result back as a JSON
//!    line, and removes the directory.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigie_converge::bundle::{self, Header, Limits};
use vigie_converge::{Facts, LoadOptions, Mode, Options, Progress};

use crate::args::ConvergeAction;
use crate::{Failure, Result, exit, out, out_json, out_table};

/// `vigie converge push|receive`, or `vigie converge` alone.
pub(crate) fn action(a: Option<&ConvergeAction>) -> Result<u8> {
    match a {
        None => Err(Failure::config(
            "name a manifest: vigie converge MANIFEST [--audit], or vigie converge push MANIFEST HOST…",
        )),
        Some(ConvergeAction::Push {
            manifest,
            hosts,
            audit,
            diff,
            tags,
            skip_tags,
            forks,
            ssh,
            json,
        }) => push(&Push {
            manifest,
            hosts,
            audit: *audit,
            diff: *diff,
            tags,
            skip_tags,
            forks: usize::from(*forks),
            ssh: ssh.split_whitespace().map(str::to_owned).collect(),
            json: *json,
        }),
        Some(ConvergeAction::Receive) => receive(),
    }
}

struct Push<'a> {
    manifest: &'a Path,
    hosts: &'a [String],
    audit: bool,
    diff: bool,
    tags: &'a [String],
    skip_tags: &'a [String],
    forks: usize,
    ssh: Vec<String>,
    json: bool,
}

/// A host to converge: its name in the manifest, and where ssh goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    name: String,
    dest: String,
}

/// `NAME=DESTINATION`, or a destination named after its host
/// (`root@web1` is `web1`, as is `ssh://root@web1:2222`).
fn target(s: &str) -> std::result::Result<Target, String> {
    let (name, dest) = if let Some((n, d)) = s.split_once('=') {
        (n.to_owned(), d.to_owned())
    } else {
        let bare = s.strip_prefix("ssh://").unwrap_or(s);
        let bare = bare.rsplit_once('@').map_or(bare, |(_, h)| h);
        let bare = match bare.rsplit_once(':') {
            Some((h, port)) if s.starts_with("ssh://") && port.parse::<u16>().is_ok() => h,
            _ => bare,
        };
        (bare.to_owned(), s.to_owned())
    };
    if dest.is_empty() || dest.starts_with('-') {
        return Err(format!(
            "`{s}`: not an ssh destination (give a host, an alias of your ssh config, or user@host)"
        ));
    }
    if name.is_empty() || name.starts_with('-') || name.chars().any(char::is_whitespace) {
        return Err(format!("`{s}`: give the host a name: NAME=DESTINATION"));
    }
    Ok(Target { name, dest })
}

/// This running binary: what a host must run.
struct Binary {
    path: PathBuf,
    sha256: String,
    /// `vigie-VERSION-SHA` (12 hex digits): a different build is a
    /// different file.
    file: String,
    /// What `--version` prints.
    version: String,
}

fn this_binary() -> Result<Binary> {
    let path = std::env::current_exe()
        .map_err(|e| Failure::runtime(format!("cannot find this vigie's binary: {e}")))?;
    binary_at(path)
}

/// The binary at `path`, as a host must have it.
fn binary_at(path: PathBuf) -> Result<Binary> {
    let mut f = fs_err::File::open(&path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let sha256 = vigie_core::hex(ctx.finish().as_ref());
    let v = env!("CARGO_PKG_VERSION");
    Ok(Binary {
        file: format!("vigie-{v}-{}", &sha256[..12]),
        version: format!("vigie {v}"),
        path,
        sha256,
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The far side's cache directory, for `sh`.
const CACHE: &str = r#""${XDG_CACHE_HOME:-$HOME/.cache}/vigie/bin""#;

/// The session: if this binary is in the host's cache and runs, it
/// becomes `converge receive` (which first says the host's facts);
/// else the host says so and the session ends. Lines `vigie-push: …`.
fn session_script(b: &Binary) -> String {
    let (file, version) = (&b.file, &b.version);
    format!(
        r#"C={CACHE}
B="$C/{file}"
echo "vigie-push: os $(uname -s) $(uname -m)"
if [ -x "$B" ] && [ "$("$B" --version 2>/dev/null)" = "{version}" ]; then
  echo "vigie-push: present"
  exec "$B" converge receive
fi
echo "vigie-push: absent"
"#
    )
}

/// The install, the binary on stdin: a temporary file in the cache,
/// its SHA-256 checked and `--version` run, renamed into place (never
/// a half-written binary), the other `vigie-*` files there removed.
fn install_script(b: &Binary) -> String {
    let (file, version, sha) = (&b.file, &b.version, &b.sha256);
    format!(
        r#"set -e
C={CACHE}
B="$C/{file}"
umask 077
mkdir -p "$C"
T=$(mktemp "$C/.vigie-XXXXXX")
trap 'rm -f "$T"' EXIT HUP INT TERM
cat >"$T"
if ! command -v sha256sum >/dev/null 2>&1; then
  echo "sha256sum is missing on this host: vigie checks the copy with it (coreutils or busybox)" >&2
  exit 1
fi
if ! echo "{sha}  $T" | sha256sum -c - >/dev/null 2>&1; then
  echo "the copy's SHA-256 is not the sent binary's" >&2
  exit 1
fi
chmod 700 "$T"
if [ "$("$T" --version 2>&1)" != "{version}" ]; then
  echo "the copied vigie does not run there: $("$T" --version 2>&1 | head -n 1)" >&2
  exit 1
fi
mv -f "$T" "$B"
trap - EXIT HUP INT TERM
for f in "$C"/vigie-*; do [ "$f" = "$B" ] || rm -f "$f"; done
echo "vigie-push: copied"
"#
    )
}

fn ssh_command(p: &Push<'_>, dest: &str, script: &str) -> Command {
    let mut c = Command::new(&p.ssh[0]);
    c.args(&p.ssh[1..])
        .args([
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=15",
        ])
        .arg(dest)
        .arg("--")
        .arg(format!("sh -c {}", shell_quote(script)));
    vigie_config::scrub_secret_env(&mut c);
    c
}

/// Why a host was not converged.
#[derive(Debug)]
enum HostError {
    /// The manifest has errors for this host (all printed).
    Manifest(String),
    Other(String),
}

/// What ssh's failure says, on one line.
fn ssh_failed(dest: &str, code: Option<i32>, stderr: &str) -> String {
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let said = said.join("; ");
    match code {
        Some(255) => format!("cannot reach {dest} through ssh: {said}"),
        Some(c) => format!("{dest}: exited with {c}: {said}"),
        None => format!("{dest}: killed by a signal: {said}"),
    }
}

/// Run a short remote command, feeding it `stdin`; its stdout.
fn remote(
    p: &Push<'_>,
    t: &Target,
    script: &str,
    stdin: Option<&Path>,
) -> std::result::Result<String, HostError> {
    let mut cmd = ssh_command(p, &t.dest, script);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| HostError::Other(format!("cannot run `{}`: {e}", p.ssh[0])))?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(path), Some(mut pipe)) => {
            let path = path.to_owned();
            Some(std::thread::spawn(move || -> std::io::Result<u64> {
                let mut f = fs_err::File::open(path)?;
                std::io::copy(&mut f, &mut pipe)
            }))
        }
        _ => None,
    };
    let output = child
        .wait_with_output()
        .map_err(|e| HostError::Other(format!("ssh: {e}")))?;
    let fed = feeder.map(|h| h.join().unwrap_or(Ok(0)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(HostError::Other(ssh_failed(
            &t.dest,
            output.status.code(),
            &stderr,
        )));
    }
    if let Some(Err(e)) = fed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(HostError::Other(format!("sending vigie: {e}")));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether a host's `uname -m` runs this binary.
fn same_arch(uname_m: &str) -> bool {
    match std::env::consts::ARCH {
        "x86_64" => matches!(uname_m, "x86_64" | "amd64"),
        "aarch64" => matches!(uname_m, "aarch64" | "arm64"),
        "x86" => matches!(uname_m, "i386" | "i486" | "i586" | "i686"),
        "arm" => uname_m.starts_with("arm"),
        other => uname_m == other,
    }
}

/// One host's run, as the summary shows it.
struct HostRun {
    target: Target,
    copied: bool,
    error: Option<HostError>,
    resources: Vec<Value>,
    handlers: Vec<Value>,
    /// The far side's summary (its last line): the run went to its end.
    done: Option<Value>,
    wall: Duration,
}

#[derive(Default)]
struct Counts {
    compliant: usize,
    repaired: usize,
    non_compliant: usize,
    skipped: usize,
    errors: usize,
}

impl HostRun {
    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for i in self.resources.iter().chain(&self.handlers) {
            match i["status"].as_str().unwrap_or_default() {
                "compliant" => c.compliant += 1,
                "repaired" => c.repaired += 1,
                "non-compliant" => c.non_compliant += 1,
                "skipped" => c.skipped += 1,
                _ => c.errors += 1,
            }
        }
        c
    }

    /// `error`, `failed` (a resource failed), `drift`, or `ok`.
    fn result(&self) -> &'static str {
        let c = self.counts();
        if self.error.is_some() || self.done.is_none() {
            "error"
        } else if c.errors > 0 {
            "failed"
        } else if c.non_compliant > 0 {
            "drift"
        } else {
            "ok"
        }
    }
}

/// Lines of every host, each whole, prefixed by its host.
#[derive(Clone, Copy)]
struct Printer {
    width: usize,
    json: bool,
    diff: bool,
}

impl Printer {
    fn item(&self, host: &str, v: &Value) {
        if self.json {
            return;
        }
        let status = v["status"].as_str().unwrap_or("?");
        let id = v["id"].as_str().unwrap_or("?");
        let detail = match (v["message"].as_str(), v["changes"].as_array()) {
            (Some(m), _) => m.to_owned(),
            (None, Some(c)) => c
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; "),
            (None, None) => String::new(),
        };
        let mut s = format!("{host:<w$}  {status:<13}  {id}  {detail}", w = self.width);
        s.truncate(s.trim_end().len());
        s.push('\n');
        if self.diff
            && matches!(status, "non-compliant" | "repaired")
            && let Some(d) = v["diff"].as_str()
        {
            for l in d.lines() {
                let _ = writeln!(s, "{host:<w$}      {l}", w = self.width);
            }
        }
        // What a host sends reaches the terminal without its control
        // characters (escape sequences). A closed stdout is the
        // summary's to report.
        let s = vigie_engine::without_controls(&s, true);
        let _ = std::io::stdout().lock().write_all(s.as_bytes());
    }

    fn note(&self, host: &str, text: &str) {
        let mut s = String::new();
        for l in text.lines() {
            let _ = writeln!(s, "{host:<w$}  {l}", w = self.width);
        }
        let s = vigie_engine::without_controls(&s, true);
        let _ = std::io::stderr().lock().write_all(s.as_bytes());
    }
}

fn push(p: &Push<'_>) -> Result<u8> {
    if p.ssh.is_empty() {
        return Err(Failure::config("--ssh is empty").hint("give the ssh command, e.g. --ssh ssh"));
    }
    if !p.manifest.is_file() {
        return Err(
            Failure::config(format!("{}: no such manifest", p.manifest.display()))
                .hint("give the path of a converge manifest (TOML)"),
        );
    }
    let mut targets: Vec<Target> = Vec::new();
    for h in p.hosts {
        let group = match h.strip_prefix('@') {
            Some(g) => {
                vigie_converge::manifest::group_hosts(p.manifest, g).map_err(Failure::config)?
            }
            None => vec![h.clone()],
        };
        for h in &group {
            let t = target(h).map_err(Failure::config)?;
            if targets.iter().any(|o| o.name == t.name) {
                return Err(
                    Failure::config(format!("the host `{}` is given twice", t.name))
                        .hint("name each once (NAME=DESTINATION names a host)"),
                );
            }
            targets.push(t);
        }
    }
    let binary = this_binary()?;
    let printer = Printer {
        width: targets
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(0),
        json: p.json,
        diff: p.diff,
    };
    let queue = Mutex::new(targets.iter().enumerate());
    let runs: Mutex<Vec<Option<HostRun>>> = Mutex::new((0..targets.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..p.forks.min(targets.len()) {
            s.spawn(|| {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next();
                    let Some((i, t)) = next else { break };
                    let run = one(p, &binary, printer, t);
                    runs.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(run);
                }
            });
        }
    });
    let runs: Vec<HostRun> = runs
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect();
    summary(p, &runs)?;
    let any = |r: &str| runs.iter().any(|h| h.result() == r);
    Ok(
        if runs
            .iter()
            .any(|h| matches!(h.error, Some(HostError::Manifest(_))))
        {
            exit::CONFIG
        } else if any("error") {
            exit::RUNTIME
        } else if any("failed") || any("drift") {
            exit::CHECK_FAILED
        } else {
            exit::OK
        },
    )
}

fn summary(p: &Push<'_>, runs: &[HostRun]) -> Result<()> {
    let mode = if p.audit { "audit" } else { "enforce" };
    if p.json {
        let hosts: Vec<Value> = runs
            .iter()
            .map(|h| {
                let c = h.counts();
                json!({
                    "host": h.target.name,
                    "destination": h.target.dest,
                    "result": h.result(),
                    "copied": h.copied,
                    "error": h.error.as_ref().map(|e| match e {
                        HostError::Manifest(m) | HostError::Other(m) => m.clone(),
                    }),
                    "summary": {
                        "compliant": c.compliant,
                        "repaired": c.repaired,
                        "non_compliant": c.non_compliant,
                        "skipped": c.skipped,
                        "errors": c.errors,
                    },
                    "wall_ms": u64::try_from(h.wall.as_millis()).unwrap_or(u64::MAX),
                    "resources": h.resources,
                    "handlers": h.handlers,
                })
            })
            .collect();
        return out_json(&json!({ "mode": mode, "hosts": hosts }));
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|h| {
            let c = h.counts();
            let note = match &h.error {
                Some(HostError::Manifest(m) | HostError::Other(m)) => m.clone(),
                None if h.copied => "vigie copied".to_owned(),
                None => String::new(),
            };
            vec![
                h.target.name.clone(),
                h.result().to_owned(),
                c.compliant.to_string(),
                c.repaired.to_string(),
                c.non_compliant.to_string(),
                c.skipped.to_string(),
                c.errors.to_string(),
                format!("{:.1}s", h.wall.as_secs_f64()),
                note,
            ]
        })
        .collect();
    let n = runs.len();
    out(format_args!(
        "\n{mode} on {n} host{}:\n",
        if n == 1 { "" } else { "s" }
    ))?;
    out_table(
        &[
            "HOST",
            "RESULT",
            "COMPLIANT",
            "REPAIRED",
            "NON-COMPLIANT",
            "SKIPPED",
            "ERRORS",
            "TIME",
            "NOTE",
        ],
        &rows,
    )
}

/// Converge one host; never fails: what went wrong is its run's error.
fn one(p: &Push<'_>, b: &Binary, printer: Printer, t: &Target) -> HostRun {
    let start = Instant::now();
    let mut run = HostRun {
        target: t.clone(),
        copied: false,
        error: None,
        resources: Vec::new(),
        handlers: Vec::new(),
        done: None,
        wall: Duration::ZERO,
    };
    if let Err(e) = converge_host(p, b, printer, &mut run) {
        let text = match &e {
            HostError::Manifest(m) | HostError::Other(m) => m,
        };
        printer.note(&t.name, &format!("error: {text}"));
        run.error = Some(e);
    }
    run.wall = start.elapsed();
    run
}

fn converge_host(
    p: &Push<'_>,
    b: &Binary,
    printer: Printer,
    run: &mut HostRun,
) -> std::result::Result<(), HostError> {
    let t = run.target.clone();
    let (mut session, facts) = match open(p, b, printer, &t)? {
        Opened::Ready(s, facts) => (*s, facts),
        Opened::Absent(os) => {
            let (kernel, arch) = os.split_once(' ').unwrap_or((os.as_str(), ""));
            if !kernel.eq_ignore_ascii_case(std::env::consts::OS) || !same_arch(arch) {
                return Err(HostError::Other(format!(
                    "{} runs `{os}`; this vigie is built for {} {}: install vigie {} there and converge it locally",
                    t.dest,
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    env!("CARGO_PKG_VERSION")
                )));
            }
            let said = remote(p, &t, &install_script(b), Some(&b.path))?;
            if !said.lines().any(|l| l == "vigie-push: copied") {
                return Err(HostError::Other(format!(
                    "{}: the copy of vigie did not finish",
                    t.dest
                )));
            }
            run.copied = true;
            printer.note(&t.name, &format!("vigie copied to the host ({})", b.file));
            match open(p, b, printer, &t)? {
                Opened::Ready(s, facts) => (*s, facts),
                Opened::Absent(_) => {
                    return Err(HostError::Other(format!(
                        "{}: vigie was copied, then not found in the cache (another push of another vigie at the same time?)",
                        t.dest
                    )));
                }
            }
        }
    };
    let plan = vigie_converge::load(
        p.manifest,
        &LoadOptions {
            facts,
            host: Some(t.name.clone()),
        },
    );
    let sent = plan
        .map_err(|e| {
            printer.note(&t.name, &e.to_string());
            let n = e.errors.len();
            HostError::Manifest(format!(
                "{n} error{} in the manifest for this host; nothing was sent",
                if n == 1 { "" } else { "s" }
            ))
        })
        .and_then(|plan| {
            let (manifest, entries) =
                bundle::contents(p.manifest, &plan.files).map_err(HostError::Manifest)?;
            Ok((manifest, entries))
        });
    let (manifest, entries) = match sent {
        Ok(x) => x,
        Err(e) => {
            // Nothing sent: the far side sees the connection go, and
            // its directory goes with it.
            session.abandon();
            return Err(e);
        }
    };
    let header = Header {
        manifest,
        host: t.name.clone(),
        audit: p.audit,
        tags: p.tags.to_vec(),
        skip_tags: p.skip_tags.to_vec(),
    };
    stream(printer, run, session, &header, &entries)
}

/// An ssh session to a host's `converge receive`.
struct Session {
    dest: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::io::Lines<BufReader<ChildStdout>>,
    /// The far side's last lines on stderr (also shown as they come).
    said: Arc<Mutex<Vec<String>>>,
    stderr: Option<std::thread::JoinHandle<()>>,
}

enum Opened {
    /// `converge receive` runs there: the host's facts.
    Ready(Box<Session>, Facts),
    /// No vigie of this build there: the host's `uname -sm`.
    Absent(String),
}

impl Session {
    /// The far side's last words, once it ended.
    fn said(&mut self) -> String {
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        self.said
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// Wait for the end; why it failed, if it did.
    fn finish(&mut self) -> std::result::Result<std::process::ExitStatus, HostError> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| HostError::Other(format!("ssh: {e}")))?;
        Ok(status)
    }

    /// Stop here: ssh killed before anything more is sent.
    fn abandon(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Open the session: either `converge receive` answered with the
/// host's facts, or no vigie of this build is there.
fn open(
    p: &Push<'_>,
    b: &Binary,
    printer: Printer,
    t: &Target,
) -> std::result::Result<Opened, HostError> {
    let mut cmd = ssh_command(p, &t.dest, &session_script(b));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| HostError::Other(format!("cannot run `{}`: {e}", p.ssh[0])))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(HostError::Other("ssh: no pipes".into()));
    };
    let said: Arc<Mutex<Vec<String>>> = Arc::default();
    let name = t.name.clone();
    let keep = Arc::clone(&said);
    let stderr = std::thread::spawn(move || {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            printer.note(&name, &line);
            let mut said = keep
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            said.push(line);
            if said.len() > 20 {
                said.remove(0);
            }
        }
    });
    let mut s = Session {
        dest: t.dest.clone(),
        child,
        stdin: Some(stdin),
        stdout: BufReader::new(stdout).lines(),
        said,
        stderr: Some(stderr),
    };
    let mut os = String::new();
    while let Some(Ok(line)) = s.stdout.next() {
        if let Some(rest) = line.strip_prefix("vigie-push: os ") {
            rest.clone_into(&mut os);
        } else if line == "vigie-push: absent" {
            let status = s.finish()?;
            let said = s.said();
            if !status.success() {
                return Err(HostError::Other(ssh_failed(&s.dest, status.code(), &said)));
            }
            return Ok(Opened::Absent(os));
        } else if let Ok(Value::Object(mut o)) = serde_json::from_str::<Value>(&line)
            && let Some(f) = o.remove("facts")
        {
            let facts = serde_json::from_value(f).map_err(|e| {
                HostError::Other(format!(
                    "{}: vigie there gave facts this one cannot read: {e}",
                    s.dest
                ))
            })?;
            return Ok(Opened::Ready(Box::new(s), facts));
        } else if line != "vigie-push: present" {
            printer.note(&t.name, &line);
        }
    }
    let status = s.finish()?;
    let said = s.said();
    Err(HostError::Other(ssh_failed(&s.dest, status.code(), &said)))
}

/// Send the bundle to `converge receive`, and show its lines as they
/// come.
fn stream(
    printer: Printer,
    run: &mut HostRun,
    mut s: Session,
    header: &Header,
    entries: &[bundle::Entry],
) -> std::result::Result<(), HostError> {
    let name = run.target.name.clone();
    let stdin = s.stdin.take();
    let sent = std::thread::scope(|scope| {
        let sender = scope.spawn(|| match stdin {
            Some(stdin) => {
                let mut w = BufWriter::new(stdin);
                bundle::write(&mut w, header, entries, &Limits::default())
            }
            None => Err(std::io::Error::other("no stdin")),
        });
        for line in s.stdout.by_ref().map_while(std::result::Result::ok) {
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(mut o)) => {
                    if let Some(i) = o.remove("resource") {
                        printer.item(&name, &i);
                        run.resources.push(i);
                    } else if let Some(i) = o.remove("handler") {
                        printer.item(&name, &i);
                        run.handlers.push(i);
                    } else if let Some(d) = o.remove("done") {
                        run.done = Some(d);
                    }
                }
                _ => printer.note(&name, &line),
            }
        }
        sender
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the sender panicked")))
    });
    let status = s.finish()?;
    let said = s.said();
    if run.done.is_some() {
        return Ok(());
    }
    if let Err(e) = sent
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(HostError::Other(format!("sending the manifest: {e}")));
    }
    if status.code() == Some(i32::from(exit::CONFIG)) {
        return Err(HostError::Manifest(format!(
            "{}: the manifest has errors there: {said}",
            s.dest
        )));
    }
    Err(HostError::Other(ssh_failed(&s.dest, status.code(), &said)))
}

/// `vigie converge receive`: say this host's facts (a JSON line), unpack
/// the bundle on stdin in a fresh private directory, run it, a JSON
/// line per resource on stdout, the directory removed at the end.
fn receive() -> Result<u8> {
    let dir = tempfile::Builder::new()
        .prefix("vigie-push-")
        .tempdir()
        .map_err(|e| Failure::runtime(format!("cannot make a temporary directory: {e}")))?;
    let facts = Facts::gather();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", json!({ "facts": facts })).and_then(|()| stdout.flush())?;
    let mut stdin = BufReader::new(std::io::stdin().lock());
    let header = bundle::unpack(&mut stdin, dir.path(), &Limits::default())
        .map_err(|e| Failure::runtime(format!("the bundle is refused: {e}")))?;
    drop(stdin);
    let load = LoadOptions {
        facts,
        host: Some(header.host.clone()),
    };
    let plan = vigie_converge::load(&dir.path().join(&header.manifest), &load).map_err(|e| {
        eprintln!("{e}");
        Failure::config(format!(
            "{} error{} in the manifest; nothing was checked or changed",
            e.errors.len(),
            if e.errors.len() == 1 { "" } else { "s" }
        ))
    })?;
    let opts = Options {
        mode: if header.audit {
            Mode::Audit
        } else {
            Mode::Enforce
        },
        tags: header.tags,
        skip_tags: header.skip_tags,
        fetch: Some(std::sync::Arc::new(crate::fetch::HttpFetch)),
    };
    let report = vigie_converge::run_streaming(&plan, &opts, &mut |p| {
        let line = match p {
            Progress::Resource(i) => json!({ "resource": i }),
            Progress::Handler(i) => json!({ "handler": i }),
        };
        // The sender gone, the run goes on to its end (a repair is not
        // stopped halfway); its result is lost with the connection.
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    });
    let done = json!({ "done": {
        "mode": report.mode,
        "summary": report.summary,
        "duration_ms": report.duration_ms,
    }});
    let _ = writeln!(stdout, "{done}").and_then(|()| stdout.flush());
    drop(plan);
    dir.close()
        .map_err(|e| Failure::runtime(format!("cannot remove the bundle's directory: {e}")))?;
    Ok(if report.failed() {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the install script here, as a host's `sh` would, `bin` on
    /// its stdin and `cache` as its `XDG_CACHE_HOME`.
    fn install(b: &Binary, cache: &Path) -> std::process::Output {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(install_script(b))
            .env("XDG_CACHE_HOME", cache)
            .stdin(fs_err::File::open(&b.path).unwrap().into_parts().0)
            .output()
            .unwrap()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A stand-in for vigie that answers `--version` as this one does.
    fn fake_vigie(dir: &Path, says: &str) -> Binary {
        let path = dir.join("vigie");
        std::fs::write(&path, format!("#!/bin/sh\necho '{says}'\n")).unwrap();
        binary_at(path).unwrap()
    }

    #[test]
    fn the_install_checks_the_copy_then_renames_it_into_place() {
        let src = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let bin = cache.path().join("vigie/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("vigie-0.0.1-000000000000"), "old").unwrap();
        let b = fake_vigie(src.path(), &format!("vigie {}", env!("CARGO_PKG_VERSION")));
        let o = install(&b, cache.path());
        assert!(o.status.success(), "{o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "vigie-push: copied\n");
        // Only it, under its name, private; the old one and the
        // temporary file gone.
        assert_eq!(files(&bin), std::slice::from_ref(&b.file));
        let mode = std::fs::metadata(bin.join(&b.file)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
    }

    #[test]
    fn a_copy_that_differs_or_does_not_run_never_takes_the_binarys_place() {
        let src = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let bin = cache.path().join("vigie/bin");
        // What arrived is not what was sent (a transfer cut short).
        let mut b = fake_vigie(src.path(), &format!("vigie {}", env!("CARGO_PKG_VERSION")));
        b.sha256 = "0".repeat(64);
        let o = install(&b, cache.path());
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("SHA-256 is not the sent binary's"),
            "{o:?}"
        );
        assert_eq!(files(&bin), Vec::<String>::new());
        // Whole, but it does not run here (another architecture, a
        // missing library): refused too.
        let b = fake_vigie(src.path(), "Exec format error");
        let o = install(&b, cache.path());
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("does not run there"),
            "{o:?}"
        );
        assert_eq!(files(&bin), Vec::<String>::new());
    }

    #[test]
    fn a_host_is_named_after_its_destination_or_by_name() {
        let t = |s: &str| target(s).map(|t| (t.name, t.dest));
        assert_eq!(t("web1"), Ok(("web1".into(), "web1".into())));
        assert_eq!(t("root@web1"), Ok(("web1".into(), "root@web1".into())));
        assert_eq!(
            t("ssh://root@web1:2222"),
            Ok(("web1".into(), "ssh://root@web1:2222".into()))
        );
        assert_eq!(
            t("db=root@10.0.0.5"),
            Ok(("db".into(), "root@10.0.0.5".into()))
        );
        // An ssh option where a host goes is refused, not passed on.
        assert!(t("-oProxyCommand=sh").is_err());
        assert!(t("-oProxyCommand").is_err());
        assert!(t("x=-oProxyCommand=sh").is_err());
        assert!(t("=web1").is_err());
    }
}
