//! What a test needs from the machine (root, a program), and what it
//! does when that is missing: [`require!`](crate::require) skips it
//! *loudly* under `scripts/test` run by a user, and fails it everywhere
//! else, so that nothing untested is ever counted as passed.
//!
//! - `VIGIE_SKIPPED=FILE` (set by `scripts/test`): a test whose need is
//!   missing prints `SKIPPED: <test> — <reason>` to stderr, appends that
//!   line to FILE, and returns; the script prints FILE's lines at the end.
//! - `VIGIE_REQUIRE_ALL=1` (`.ci/run`), or no `VIGIE_SKIPPED` at all (a
//!   plain `cargo test`): the test fails, naming what is missing and how
//!   to get it.
//!
//! The harness installs nothing: `scripts/test`, run as root on Debian,
//! installs every package named here.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// One thing a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Running as root (mounts, owners, logging in through sshd).
    Root,
    /// Network namespaces with nftables: root, `ip` (iproute2), `nft`.
    Netns,
    /// Knot DNS's `knotd` (package knot).
    Knot,
    /// OpenSSH's `sshd`, `ssh` and `ssh-keygen`, and root, which the
    /// client logs in as (openssh-server, openssh-client).
    Sshd,
    /// A `python3` that runs (its HTTP server is the service tests kill).
    Python3,
    /// A `python3` (3.11+, for `tomllib`) with `jsonschema`: a validator
    /// of vigie's JSON Schema that is not vigie's code (Debian's
    /// python3-jsonschema, or PyPI's for another python3).
    JsonSchema,
    /// `script` (bsdutils): a pseudo-terminal.
    Script,
    /// `setpriv` (util-linux), and root to drop privileges with it.
    Setpriv,
    /// `restic` (package restic): it checks, lists and restores the
    /// repositories vigie writes.
    Restic,
    /// moto's S3 server (PyPI: `moto[server]`), the S3-compatible store
    /// of the backup tests.
    Moto,
    /// A throwaway PostgreSQL cluster: root (the server runs as user
    /// `postgres`, through `setpriv`), `initdb` and `pg_ctl` under
    /// `/usr/lib/postgresql/*/bin`, `psql`, `pg_dump`, `pg_restore`
    /// (package postgresql).
    Postgres,
    /// A throwaway MariaDB server: root (it runs as user `mysql`),
    /// `mariadbd`, `mariadb-install-db`, `mariadb`, `mariadb-dump`
    /// (package mariadb-server).
    Mariadb,
    /// ICMP echo: root, or this user's group inside
    /// `net.ipv4.ping_group_range` (unprivileged ping sockets).
    Icmp,
    /// `man` (man-db, with groff): it renders the generated pages.
    Man,
    /// `systemd-analyze` (package systemd, installed, never started): it
    /// checks the unit offline.
    SystemdAnalyze,
    /// `systemctl` (package systemd, never started here): what it says
    /// where systemd is PID 1, and where it is not.
    Systemctl,
    /// Prometheus's `promtool` (package prometheus, never started): it
    /// parses and lints `/metrics` as a Prometheus server would.
    Promtool,
    /// A Prometheus server (package prometheus), started by the test on
    /// loopback with its remote-write receiver: it takes what vigie sends
    /// and answers PromQL.
    Prometheus,
    /// Debian's Chromium, run headless: it renders the dashboard.
    Chromium,
    /// Debian's chromedriver (package chromium-driver): a test drives
    /// Chromium through it as a user would.
    Chromedriver,
    /// `git` (package git): the repositories converge pulls from and
    /// checks out.
    Git,
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether the kernel lets this process's group open ICMP datagram
/// sockets (`net.ipv4.ping_group_range`, "1 0" when nobody may).
fn unprivileged_ping() -> bool {
    let gid = rustix::process::getegid().as_raw();
    std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").is_ok_and(|r| {
        let mut it = r.split_whitespace().map(str::parse::<u32>);
        matches!((it.next(), it.next()), (Some(Ok(lo)), Some(Ok(hi))) if lo <= gid && gid <= hi)
    })
}

/// Whether `program ARGS` runs and exits 0.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first of `paths` that exists, for daemons installed in sbin
/// (not on a user's `PATH`).
pub(crate) fn installed(paths: &[&'static str]) -> Option<&'static str> {
    paths.iter().copied().find(|p| Path::new(p).exists())
}

/// A program of the newest PostgreSQL under `/usr/lib/postgresql`
/// (`initdb`, `pg_ctl`: Debian keeps them off the `PATH`).
#[must_use]
pub fn postgres_bin(program: &str) -> Option<std::path::PathBuf> {
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin").join(program)))
        })
        .filter(|(_, p)| p.exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

impl Need {
    /// `None` when this machine has it; else why not, as a reason a
    /// user reads (`needs root (network namespaces)`).
    #[must_use]
    pub fn missing(self) -> Option<String> {
        let not_root = |why: &str| (!root()).then(|| format!("needs root ({why})"));
        let program = |ok: bool, what: &str, pkg: &str| {
            (!ok).then(|| format!("needs {what} (apt-get install {pkg})"))
        };
        match self {
            Need::Root => not_root("mounts, owners"),
            Need::Netns => not_root("network namespaces")
                .or_else(|| program(runs("ip", &["-V"]), "ip", "iproute2"))
                .or_else(|| program(runs("nft", &["--version"]), "nft", "nftables")),
            Need::Knot => program(
                installed(&["/usr/sbin/knotd", "/usr/bin/knotd"]).is_some(),
                "knotd",
                "knot",
            ),
            Need::Sshd => not_root("sshd logs the test in as root")
                .or_else(|| {
                    program(
                        installed(&["/usr/sbin/sshd", "/usr/bin/sshd"]).is_some(),
                        "sshd",
                        "openssh-server",
                    )
                })
                .or_else(|| program(runs("ssh", &["-V"]), "ssh", "openssh-client")),
            Need::Python3 => program(runs("python3", &["-c", ""]), "python3", "python3"),
            Need::JsonSchema => (!runs("python3", &["-c", "import jsonschema, tomllib"])).then(|| {
                "needs python3 (3.11+) with jsonschema (apt-get install python3-jsonschema, \
                 or python3 -m pip install jsonschema)"
                    .to_owned()
            }),
            Need::Script => program(runs("script", &["-V"]), "script", "bsdutils"),
            Need::Setpriv => not_root("runs vigie as another user")
                .or_else(|| program(runs("setpriv", &["--version"]), "setpriv", "util-linux")),
            Need::Restic => program(runs("restic", &["version"]), "restic", "restic"),
            Need::Moto => (!runs("python3", &["-c", "import moto.server, flask"]))
                .then(|| "needs moto's S3 server (python3 -m pip install 'moto[server]')".to_owned()),
            Need::Postgres => not_root("the server runs as user postgres")
                .or_else(|| program(postgres_bin("initdb").is_some(), "initdb", "postgresql"))
                .or_else(|| program(runs("setpriv", &["--version"]), "setpriv", "util-linux"))
                .or_else(|| program(runs("pg_dump", &["--version"]), "pg_dump", "postgresql")),
            Need::Mariadb => not_root("the server runs as user mysql")
                .or_else(|| {
                    program(
                        installed(&["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]).is_some(),
                        "mariadbd",
                        "mariadb-server",
                    )
                })
                .or_else(|| {
                    program(
                        runs("mariadb-dump", &["--version"]),
                        "mariadb-dump",
                        "mariadb-server",
                    )
                }),
            Need::Man => program(runs("man", &["--version"]), "man", "man-db"),
            Need::Systemctl => program(
                runs("systemctl", &["--version"]),
                "systemctl",
                "systemd",
            ),
            Need::Promtool => program(runs("promtool", &["--version"]), "promtool", "prometheus"),
            Need::Prometheus => {
                program(runs("prometheus", &["--version"]), "prometheus", "prometheus")
            }
            Need::Chromium => program(runs("chromium", &["--version"]), "chromium", "chromium"),
            Need::Git => program(runs("git", &["--version"]), "git", "git"),
            Need::Chromedriver => program(
                runs("chromedriver", &["--version"]),
                "chromedriver",
                "chromium-driver",
            ),
            Need::SystemdAnalyze => program(
                runs("systemd-analyze", &["--version"]),
                "systemd-analyze",
                "systemd",
            ),
            Need::Icmp => (!root() && !unprivileged_ping()).then(|| {
                "needs root or unprivileged ping (sysctl net.ipv4.ping_group_range=\"0 2147483647\")"
                    .to_owned()
            }),
        }
    }
}

/// Whether the running test may go on: `true` when every need is met.
/// Otherwise skips (returns `false`) or fails, as the module says. Use
/// [`require!`](crate::require), which names the test and returns.
#[must_use]
#[track_caller]
pub fn check(test: &str, needs: &[Need]) -> bool {
    let reasons: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    if reasons.is_empty() {
        return true;
    }
    let line = format!("{test} — {}", reasons.join(", "));
    let file = std::env::var_os("VIGIE_SKIPPED").filter(|f| !f.is_empty());
    let require_all = std::env::var_os("VIGIE_REQUIRE_ALL").is_some_and(|v| v == "1");
    match file {
        Some(file) if !require_all => {
            eprintln!("SKIPPED: {line}");
            // One write of one line to an O_APPEND file: lines of tests
            // running in parallel never mix.
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
            if let Err(e) = appended {
                panic!("{test}: cannot record the skip in {}: {e}", file.display());
            }
            false
        }
        Some(_) => panic!(
            "{line}\nVIGIE_REQUIRE_ALL=1: a test that cannot run fails (install what it needs)"
        ),
        None => panic!(
            "{line}\nrun `scripts/test` (as root on Debian it installs what tests need; as a user it skips this test and lists it at the end)"
        ),
    }
}

/// The running test's name as libtest gives it (`module::test`), with
/// the package it belongs to.
#[must_use]
pub fn test_name(package: &str) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed test>");
    format!("{package}: {name}")
}

/// `require!(Need::Netns, Need::Knot);` at the top of a test: returns
/// from the test, recorded as skipped, when this machine lacks one (see
/// [`need`](crate::need) for when it fails instead).
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if !$crate::need::check(
            &$crate::need::test_name(env!("CARGO_PKG_NAME")),
            &[$($need),+],
        ) {
            return;
        }
    };
}
