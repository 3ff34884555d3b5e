//! Test harness for vigie: run the real binary in a temp dir, and start
//! the local servers that checks are pointed at. Everything listens on
//! 127.0.0.1 with a port the kernel picks; nothing is installed here.

// The workspace still allows long functions (issue 11 §2); this crate has
// none left and keeps it so.

pub mod cluster;
pub mod daemon;
pub mod knot;
pub mod need;
pub mod netns;
pub mod prometheus;
pub mod rest;
pub mod s3;
pub mod servers;
pub mod sshd;
pub mod webdriver;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use need::Need;

/// A temp directory with a config and a state directory, and the binary
/// to run in it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    /// Run vigie inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Env {
    /// `bin` is the vigie binary (`env!("CARGO_BIN_EXE_vigie")`).
    pub fn new(bin: &str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            bin: PathBuf::from(bin),
            netns: None,
        }
    }

    /// The same, with every command run inside network namespace `ns`.
    pub fn in_netns(bin: &str, ns: &str) -> Self {
        Self {
            netns: Some(ns.to_owned()),
            ..Self::new(bin)
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("vigie.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// The runtime directory of this env's daemons (`daemon.json`).
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    /// Write the config file.
    pub fn config(&self, text: &str) -> &Self {
        std::fs::write(self.config_path(), text).expect("write config");
        self
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// A `vigie` command with this env's config and state directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        c.args(args)
            .current_dir(self.path())
            .env("VIGIE_CONFIG", self.config_path())
            .env("VIGIE_STATE_DIR", self.state_dir())
            // Where a daemon says where it runs: this env's, never the
            // machine's /run/vigie.
            .env("VIGIE_RUNTIME_DIR", self.runtime_dir())
            .env("NO_COLOR", "1")
            .env_remove("VIGIE_LOG");
        c
    }

    /// Run `vigie ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(&mut self.cmd(args))
    }

    /// Run a command made by [`Env::cmd`] and changed, to completion.
    pub fn run_cmd(&self, c: &mut Command) -> Run {
        let output = c.output().expect("run vigie");
        Run::from(&output, self.path())
    }
}

/// The result of one run of the binary, temp paths replaced by `[DIR]`.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: &Output, dir: &Path) -> Self {
        let clean =
            |b: &[u8]| String::from_utf8_lossy(b).replace(&dir.display().to_string(), "[DIR]");
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: clean(&o.stdout),
            stderr: clean(&o.stderr),
        }
    }
}

/// Poll `f` until it holds; panic after `limit`.
pub fn wait_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A small real service for checks to watch and tests to kill: Python's
/// HTTP server on 127.0.0.1:`port`, returned once it accepts connections.
pub fn python_http_service(port: u16) -> std::process::Child {
    python_http_server(port, &mut Command::new("python3"))
}

/// The same, serving the files under `dir`.
pub fn python_http_files(port: u16, dir: &Path) -> std::process::Child {
    python_http_server(port, Command::new("python3").current_dir(dir))
}

fn python_http_server(port: u16, python: &mut Command) -> std::process::Child {
    let child = python
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    wait_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

/// A child process killed and waited for when dropped: a server a test
/// started ends with it.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Start `cmd`, a server, its stdout discarded and its stderr written
    /// to the file `log`; `what` names it if it cannot start.
    pub fn spawn_logging(cmd: &mut Command, log: &Path, what: &str) -> Self {
        let log = std::fs::File::create(log).expect("log");
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Self(child)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `[[check]]` table's text, for building configs in tests.
pub fn check(name: &str, probe: &str, extra: &str) -> String {
    format!("[[check]]\nname = \"{name}\"\n{probe}\n{extra}\n")
}

/// A DNS failover's tables, for configs in tests: `[dns.DNS]`, RFC 2136
/// updates to `server` signed with the TSIG key `key` (its secret in
/// `tsig.key`), and `[failover.NAME]`, moving blog.example.org from
/// `primary` to `backup` through it; `more` are further lines of the
/// failover table.
pub fn rfc2136_failover(
    name: &str,
    dns: &str,
    server: &str,
    key: &str,
    (primary, backup): (&str, &str),
    more: &str,
) -> String {
    format!(
        r#"[dns.{dns}]
kind = "rfc2136"
server = "{server}"
key_name = "{key}"
secret = {{ file = "tsig.key" }}

[failover.{name}]
record = {{ zone = "example.org", name = "blog" }}
primary = ["{primary}"]
backup = ["{backup}"]
dns = "{dns}"
{more}"#
    )
}

/// A directory every user can reach (it and each of its parents let
/// others in), for what a test runs as another user: the checkout may
/// sit where that user cannot enter (under `/root`, mode 0700), and so
/// may `target/`. Removed on drop.
pub struct Reachable {
    pub dir: tempfile::TempDir,
}

impl Reachable {
    pub fn new() -> Self {
        let open_to_all = |d: &Path| {
            d.ancestors()
                .all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        };
        let base = [std::env::temp_dir(), "/tmp".into(), "/var/tmp".into()]
            .into_iter()
            .find(|d| open_to_all(d))
            .expect("a temp directory others can enter (TMPDIR, /tmp or /var/tmp)");
        let dir = tempfile::tempdir_in(base).expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755");
        Self { dir }
    }

    /// Copy `file` here (mode 0755); the copy's path.
    pub fn copy(&self, file: impl AsRef<Path>) -> PathBuf {
        let file = file.as_ref();
        let to = self.dir.path().join(file.file_name().expect("a file name"));
        std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
        to
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Reachable {
    fn default() -> Self {
        Self::new()
    }
}
