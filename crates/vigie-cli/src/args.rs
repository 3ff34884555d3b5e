//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// vigie keeps a small self-hosted infrastructure up and recoverable.
#[derive(Debug, Parser)]
#[command(name = "vigie", version, about, long_about = None, after_help = "Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error, 3 runtime error.")]
pub struct Cli {
    /// The configuration file (default: /etc/vigie/vigie.toml if it
    /// exists, else the embedded quickstart).
    #[arg(short, long, global = true, env = "VIGIE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the store lives (default: /var/lib/vigie as root, ./.vigie
    /// otherwise, or [store] dir).
    #[arg(long, global = true, env = "VIGIE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// More log output (-v info, -vv debug); VIGIE_LOG sets filters.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: every check of the configuration, the HTTP server.
    /// SIGHUP reloads the configuration; SIGTERM or SIGINT stop it.
    Run,
    /// Run checks once now and print the results; exits 1 if any fails.
    Check {
        /// Checks to run (default: all).
        names: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and print every problem found.
    Validate {
        /// Check every secret's shape but read none of them (no
        /// environment variable, no secret file): for CI, where the
        /// secrets are not.
        #[arg(long)]
        no_environment: bool,
    },
    /// Print the effective configuration, defaults applied, secrets hidden.
    ShowConfig,
    /// The configuration's reference: `vigie config schema` prints its
    /// JSON Schema (for editors: taplo, Even Better TOML), `vigie config
    /// reference` every section and key in Markdown.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the state of every check as the store knows it; exits 1 if
    /// any is failing.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List open and recent incidents, newest first.
    Incidents {
        /// Print JSON (with each incident's events) instead of a table.
        #[arg(long)]
        json: bool,
        /// How many incidents at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Acknowledge an incident: its escalations stop (the running daemon
    /// is asked through its API).
    Ack {
        /// The incident's id (`vigie incidents`).
        id: i64,
        /// Who is on it, what is being done.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Print the URL a job pings for a heartbeat check, token included.
    HeartbeatUrl {
        /// The heartbeat check.
        name: String,
    },
    /// Notifiers: `vigie notify test NAME` sends a test message.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// DNS failover: where each record points, and switching by hand.
    Failover {
        #[command(subcommand)]
        action: FailoverAction,
    },
    /// Rehearse: `vigie drill failover NAME` moves the failover's drill
    /// record to the backup and back, verified, and times each stage.
    Drill {
        #[command(subcommand)]
        what: DrillWhat,
    },
    /// Replicate a `[[sync]]` job: live until interrupted, or one full
    /// pass with `--once`; `status`, `pause`, `resume`.
    #[command(args_conflicts_with_subcommands = true)]
    Sync {
        #[command(subcommand)]
        action: Option<SyncAction>,
        /// The job (`[[sync]] name`).
        name: Option<String>,
        /// One full pass, then exit.
        #[arg(long)]
        once: bool,
        /// Make the deletions `max_delete` held (after checking the source).
        #[arg(long, requires = "once")]
        allow_deletes: bool,
        /// Failback: bring the far side's tree back here (nothing is
        /// deleted here); the job must be paused.
        #[arg(long, conflicts_with_all = ["once", "allow_deletes"])]
        reverse: bool,
    },
    /// Backups (`[[backup]]` jobs): `init`, `run`, `snapshots`, `list`.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// The far side of a replication: speaks the sync protocol on
    /// stdin/stdout and writes inside ROOT only (run by `ssh`).
    #[command(hide = true)]
    SyncReceive {
        root: std::path::PathBuf,
        /// Keep set-user-ID and set-group-ID bits of files (the job's
        /// `preserve_setuid`); stripped otherwise.
        #[arg(long)]
        preserve_setuid: bool,
    },
    /// The far side of a reverse pass: sends ROOT on stdin/stdout (run by
    /// `ssh`).
    #[command(hide = true)]
    SyncSend {
        root: std::path::PathBuf,
        /// A path the job excludes: not sent (repeated).
        #[arg(long)]
        exclude: Vec<String>,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
    /// About vigie on this host.
    #[command(name = "self")]
    Host {
        #[command(subcommand)]
        action: HostAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the JSON Schema (draft-07) of vigie.toml.
    Schema,
    /// Print the configuration reference (Markdown), or write it as one
    /// page per area into DIR.
    Reference {
        /// Write `index.md` and a page per area here (created if
        /// missing; pages no longer generated are removed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostAction {
    /// What this host allows vigie to do: the state directory, ICMP
    /// sockets for ping, inotify's limits for replication, ssh and
    /// systemctl on the PATH; exits 1 if something the configuration
    /// needs is missing.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a test message through a notifier; exits 3 if it was not
    /// delivered.
    Test {
        /// The notifier (`[notify.NAME]`).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FailoverAction {
    /// Where each failover's record points now (asked of its provider).
    Status {
        /// One failover (default: all).
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Point the record at a side now, and wait until the authoritative
    /// servers serve it.
    Switch {
        name: String,
        #[arg(long, value_enum)]
        to: SwitchTo,
    },
    /// Point the record back at the primary (`switch --to primary`),
    /// after the warning about writes made on the backup.
    Failback { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SyncAction {
    /// Each job: its check, queue, lag and pause.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop sending (fencing a backup that became active); changes keep
    /// queueing.
    Pause {
        name: String,
        #[arg(long, default_value = "paused by hand")]
        reason: String,
    },
    /// Send again, starting with what queued meanwhile.
    Resume { name: String },
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Create the job's repository (restic's format, with its password).
    Init { name: String },
    /// Back up now (a progress line on a terminal); prints the new
    /// snapshot's id. Exits 3 if the run failed or another runs.
    Run { name: String },
    /// The repository's snapshots, oldest first.
    Snapshots {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Each job: its last run, last good snapshot and next run.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SwitchTo {
    Primary,
    Backup,
}

#[derive(Debug, Subcommand)]
pub enum DrillWhat {
    /// Switch the drill record to the backup and back, and time it.
    Failover { name: String },
}
