//! vigie's command line: argument types, subcommands, output and exit
//! codes. Logic lives in the library crates; this is the glue.
//!
//! Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error,
//! 3 runtime error, 4 the daemon is not running (`status`: what it shows
//! is stale). A closed stdout (`vigie check | head`) exits 0.

// The workspace still allows long functions (issue 11 §2); this crate has
// none left and keeps it so.

mod args;
mod backup;
mod converge;
mod drift;
mod failover;
mod fetch;
mod generate;
mod located;
mod output;
mod password;
mod progress;
mod pull;
mod push;
mod run;
mod sd_notify;
mod selfcheck;
mod sync;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vigie_config::{Config, Diagnostics, Loaded};

pub use args::{
    BackupAction, Cli, Command, ConfigAction, DrillWhat, FailoverAction, GenerateWhat, HostAction,
    MaintenanceAction, NotifyAction, SwitchTo, SyncAction,
};

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const CHECK_FAILED: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const RUNTIME: u8 = 3;
    /// `status`: no daemon holds the state directory, so the results
    /// shown are those of its last run.
    pub const DAEMON_DOWN: u8 = 4;
}

/// An error that knows its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn config(message: impl Into<String>) -> Self {
        Self {
            code: exit::CONFIG,
            message: message.into(),
            hint: None,
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: exit::RUNTIME,
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::runtime(e.to_string())
    }
}

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

/// The entry point of the `vigie` binary.
pub fn main() -> ExitCode {
    // Every TLS client of vigie uses ring; say so once for the libraries
    // that ask for the process-wide default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(&cli);
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) if f.code == exit::OK => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            if let Some(h) = f.hint {
                eprintln!("  hint: {h}");
            }
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match (&cli.command, cli.verbose) {
        (_, v) if v >= 2 => "debug",
        // The daemon, and a live `vigie sync NAME` (a line per batch).
        (
            Command::Run
            | Command::Sync {
                name: Some(_),
                once: false,
                reverse: false,
                ..
            },
            _,
        )
        | (_, 1) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{default},hyper=warn,reqwest=warn,rustls=warn,hickory_proto=warn,hickory_resolver=warn"
        ))
    });
    let ansi = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

fn dispatch(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Run => run::run(cli),
        Command::Check { names, json } => run::check(cli, names, *json),
        Command::Validate { no_environment } => validate(cli, *no_environment),
        Command::ShowConfig => {
            let loaded = load(cli)?;
            let text = vigie_config::to_toml(&loaded.config)
                .map_err(|e| Failure::runtime(format!("cannot render the configuration: {e}")))?;
            out(format_args!("{text}"))?;
            Ok(exit::OK)
        }
        Command::Config { action } => config_reference(action),
        Command::Status { json } => run::status(cli, *json),
        Command::HeartbeatUrl { name } => run::heartbeat_url(cli, name),
        Command::PasswordHash => password::hash(),
        Command::Incidents { json, limit } => run::incidents(cli, *json, *limit),
        Command::Failover { action } => failover::run(cli, action),
        Command::Drill {
            what: DrillWhat::Failover { name },
        } => failover::drill(cli, name),
        Command::Ack { id, note } => run::ack(cli, *id, note),
        Command::Maintenance { action } => run::maintenance(cli, action),
        Command::Notify {
            action: NotifyAction::Test { name },
        } => run::notify_test(cli, name),
        Command::Generate { what } => generate::run(what),
        Command::Sync {
            action: Some(action),
            ..
        } => sync::action(cli, action),
        Command::Sync {
            name: Some(name),
            reverse: true,
            ..
        } => sync::reverse(cli, name),
        Command::Sync {
            name: Some(name),
            once,
            allow_deletes,
            ..
        } => sync::job(cli, name, *once, *allow_deletes),
        Command::SyncSend { root, exclude } => match vigie_sync::send_stdio(root, exclude) {
            Ok(s) if s.last_error.is_none() => Ok(exit::OK),
            Ok(s) => {
                tracing::error!("sync-send: {}", s.last_error.unwrap_or_default());
                Ok(exit::RUNTIME)
            }
            Err(e) => {
                tracing::error!("sync-send: {e}");
                Ok(exit::RUNTIME)
            }
        },
        Command::Sync { .. } => Err(Failure::config(
            "name a job: vigie sync NAME [--once], or vigie sync status|pause|resume",
        )),
        Command::SyncReceive {
            root,
            preserve_setuid,
        } => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::BufWriter::new(std::io::stdout());
            let policy = vigie_sync::receive::Policy {
                setuid: *preserve_setuid,
                ..vigie_sync::receive::Policy::default()
            };
            match vigie_sync::receive::serve(root, policy, stdin, stdout) {
                Ok(()) => Ok(exit::OK),
                Err(e) => {
                    tracing::error!("sync-receive: {e}");
                    Ok(exit::RUNTIME)
                }
            }
        }
        Command::Backup { action } => backup::action(cli, action),
        Command::Converge {
            manifest: Some(manifest),
            audit,
            diff,
            tags,
            skip_tags,
            host,
            json,
            ..
        } => converge::run(&converge::Args {
            manifest,
            audit: *audit,
            diff: *diff,
            tags,
            skip_tags,
            host: host.as_deref(),
            json: *json,
        }),
        Command::Converge { action, .. } => push::action(action.as_ref()),
        Command::SqliteCopy { path } => backup::sqlite_copy(path),
        Command::Host {
            action: HostAction::Check { json },
        } => selfcheck::run(cli, *json),
    }
}

/// `vigie config schema|reference`: generated from the config's types,
/// read no config.
fn config_reference(action: &ConfigAction) -> Result<u8> {
    match action {
        ConfigAction::Schema => {
            out(format_args!("{}", vigie_config::reference::schema_json()))?;
        }
        ConfigAction::Reference { dir: None } => {
            for page in vigie_config::reference::pages() {
                out(format_args!("{}\n", page.text))?;
            }
        }
        ConfigAction::Reference { dir: Some(dir) } => {
            let written = vigie_config::reference::write_pages(dir, |path, text| {
                vigie_store::write_atomic(path, text.as_bytes(), 0o644)
            })
            .map_err(|e| Failure::runtime(format!("cannot write the reference: {e}")))?;
            eprintln!("wrote {written} pages into {}", dir.display());
        }
    }
    Ok(exit::OK)
}

fn validate(cli: &Cli, no_environment: bool) -> Result<u8> {
    let secrets = if no_environment {
        vigie_config::Secrets::Skip
    } else {
        vigie_config::Secrets::Resolve
    };
    let (loaded, source) = load_with_source(cli, secrets)?;
    let n = loaded.config.checks.len();
    out(format_args!(
        "{source}: configuration ok, {n} check{}{}\n",
        if n == 1 { "" } else { "s" },
        if no_environment {
            " (secrets not read)"
        } else {
            ""
        }
    ))?;
    Ok(exit::OK)
}

/// Where the configuration comes from: `-c`, `$VIGIE_CONFIG`, for a
/// command that reads the daemon's state the running daemon's own
/// (`located`), `/etc/vigie/vigie.toml` when it exists, else the
/// embedded quickstart.
pub(crate) fn config_path(cli: &Cli) -> Option<PathBuf> {
    if let Some(p) = &cli.config {
        return Some(p.clone());
    }
    if let Some(daemon) = located::daemon(cli) {
        return daemon.config.clone();
    }
    let etc = Path::new("/etc/vigie/vigie.toml");
    etc.exists().then(|| etc.to_owned())
}

pub(crate) fn load(cli: &Cli) -> Result<Loaded> {
    load_with_source(cli, vigie_config::Secrets::Resolve).map(|(l, _)| l)
}

fn load_with_source(cli: &Cli, secrets: vigie_config::Secrets) -> Result<(Loaded, String)> {
    let (result, source) = if let Some(path) = config_path(cli) {
        (
            vigie_config::load_file_with(&path, secrets),
            path.display().to_string(),
        )
    } else {
        tracing::info!(
            "no configuration file: using the embedded quickstart (examples/quickstart.toml)"
        );
        (
            vigie_config::load_str_with(
                vigie_config::QUICKSTART,
                Path::new(vigie_config::QUICKSTART_NAME),
                &|k| std::env::var(k).ok(),
                secrets,
            ),
            vigie_config::QUICKSTART_NAME.to_owned(),
        )
    };
    match result {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let problems = drift::problems(&loaded.config);
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                return Err(Failure {
                    code: exit::CONFIG,
                    message: String::new(),
                    hint: None,
                });
            }
            Ok((loaded, source))
        }
        Err(diags) => Err(config_failure(&diags)),
    }
}

pub(crate) fn config_failure(diags: &Diagnostics) -> Failure {
    eprintln!("{diags}");
    Failure {
        code: exit::CONFIG,
        message: String::new(),
        hint: None,
    }
}

/// The state directory: `--state-dir`, `$VIGIE_STATE_DIR`, the running
/// daemon's (`located`), `[store] dir`, else the default.
pub(crate) fn state_dir(cli: &Cli, config: &Config) -> PathBuf {
    cli.state_dir
        .clone()
        .or_else(|| located::daemon(cli).map(|d| d.state_dir.clone()))
        .or_else(|| config.store.dir.clone())
        .unwrap_or_else(vigie_store::default_state_dir)
}

/// Write to stdout; a closed pipe ends the program quietly with 0.
pub(crate) fn out(args: std::fmt::Arguments<'_>) -> Result<()> {
    out_bytes(args.to_string().as_bytes())
}

/// Write `v` to stdout as pretty JSON and a newline (`--json`).
pub(crate) fn out_json(v: &serde_json::Value) -> Result<()> {
    out(format_args!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

/// Write a table of `rows` under `header` to stdout.
pub(crate) fn out_table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    out(format_args!("{}", output::table(header, rows)))
}

pub(crate) fn out_bytes(b: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(b).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure {
            code: exit::OK,
            message: String::new(),
            hint: None,
        }),
        Err(e) => Err(e.into()),
    }
}
