//! The command line, as clap types. Every doc comment here is help an
//! operator reads (`vigie --help`, the man pages, completions): say what
//! a command does for them, its defaults, an example; no notes for
//! developers.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The end of `vigie --help`: examples and where the docs are.
const AFTER_HELP: &str = "\
Examples:
  vigie validate                      check /etc/vigie/vigie.toml, print every problem
  vigie check                         run every check once now, print a table
  vigie run -c ./vigie.toml           run the daemon on a configuration of yours
  vigie status                        what the running daemon sees now
  vigie incidents                     open and recent incidents
  vigie converge host.toml --audit    report how this host drifts from a manifest
  systemctl reload vigie              re-read the configuration of the service

Files:
  /etc/vigie/vigie.toml               the configuration of the vigie service
  /var/lib/vigie                      the store, as root (./.vigie for a user)
  /run/vigie/daemon.json              where the running daemon is: the other
                                      commands read it to find it

Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error,
3 runtime error, 4 the daemon is not running (status).

Documentation: 'man vigie', 'vigie help COMMAND', and the README in
/usr/share/doc/vigie (the package) or at the top of the sources.";

/// Supervise, repair, alert, fail over DNS and replicate, from one binary
/// and one configuration file.
#[derive(Debug, Parser)]
#[command(
    name = "vigie",
    version,
    after_help = AFTER_HELP,
    long_about = "Supervise, repair, alert, fail over DNS and replicate, from one binary \
        and one configuration file.\n\n\
        vigie keeps a small self-hosted infrastructure up and recoverable: \
        it runs checks (HTTP, TCP, DNS, ping, commands, systemd units, disk, memory, \
        heartbeats from cron jobs…), repairs what fails before it alerts, notifies \
        (ntfy, mail, Slack, Matrix, webhooks…), repoints a DNS record to a backup \
        when a quorum of watchers sees the primary down, and replicates directories \
        live over ssh. One daemon ('vigie run', the vigie service) reads one TOML \
        file, /etc/vigie/vigie.toml; the other commands inspect and steer it."
)]
pub struct Cli {
    /// The configuration file [default: /etc/vigie/vigie.toml if it
    /// exists, else the built-in quickstart (this host's disk, memory and
    /// load); commands that read the daemon's state (status, incidents…)
    /// use the running daemon's]
    #[arg(short, long, global = true, env = "VIGIE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the store (results, incidents, queues) lives [default: the
    /// running daemon's, else `[store] dir` of the configuration, else
    /// /var/lib/vigie as root and ./.vigie for a user]
    #[arg(long, global = true, env = "VIGIE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// More log output on stderr: -v info, -vv debug (VIGIE_LOG=FILTER
    /// for finer control, e.g. VIGIE_LOG=vigie_sync=debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: every check, repair, notification, failover and
    /// replication job of the configuration, and its HTTP server
    ///
    /// It refuses to start on a configuration with errors. SIGHUP
    /// (`systemctl reload vigie`) re-reads the configuration and keeps
    /// the running one if the new one has errors; SIGTERM or SIGINT stop
    /// it. One daemon per state directory.
    Run,
    /// Run checks once now and print a table; exit 1 if any fails
    ///
    /// Example: `vigie check blog dns-primary`.
    Check {
        /// The checks to run (`[[check]] name`) [default: all]
        names: Vec<String>,
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and print every problem with its
    /// file:line:column; exit 2 if any
    Validate {
        /// Check each secret's shape but read none (no environment
        /// variable, no secret file): for CI, where the secrets are not
        #[arg(long)]
        no_environment: bool,
    },
    /// Print the configuration as the daemon reads it: defaults filled
    /// in, secrets shown as where they come from
    ShowConfig,
    /// The configuration's reference: `vigie config schema` prints its
    /// JSON Schema (for editors: taplo, Even Better TOML), `vigie config
    /// reference` every section and key in Markdown
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the state of every check; exit 1 if any is failing, 4 if no
    /// daemon is running (the states shown are then its last)
    Status {
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// List open and recent incidents, newest first
    Incidents {
        /// Print JSON, with each incident's events (repairs, messages
        /// sent, escalations), instead of a table
        #[arg(long)]
        json: bool,
        /// Show at most this many incidents
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
    /// Acknowledge an incident: someone is on it, its escalations stop
    ///
    /// Example: `vigie ack 12 --note "disk replaced, resyncing"`.
    Ack {
        /// The incident's number, as `vigie incidents` shows it
        id: i64,
        /// Who is on it and what is being done (shown with the incident)
        #[arg(long, default_value = "", value_name = "TEXT")]
        note: String,
    },
    /// Hold a check's incidents for a while, now (planned work): the
    /// check keeps running and showing its state; what it opens waits
    /// until the end
    ///
    /// Example: `vigie maintenance start blog --for 2h`, then `vigie
    /// maintenance end blog` when the work is done.
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// Print the URL a cron job pings for a heartbeat check, token
    /// included
    ///
    /// Example, at the end of a crontab line: `&& curl -fsS "$(vigie
    /// heartbeat-url nightly-job)"`.
    HeartbeatUrl {
        /// The heartbeat check (`[[check]] name`)
        name: String,
    },
    /// Print the argon2id hash of a password, for a dashboard login
    ///
    /// It asks for the password (twice, without echo) on a terminal, or
    /// reads the first line of its standard input. Put what it prints in
    /// the configuration: `[server] users = { alice = "$argon2id$…" }`.
    PasswordHash,
    /// Test notifiers: `vigie notify test NAME` sends a test message
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// DNS failover: where each record points, and switching by hand
    Failover {
        #[command(subcommand)]
        action: FailoverAction,
    },
    /// Rehearse an outage: `vigie drill failover NAME` moves the drill
    /// record to the backup and back, and times each stage
    Drill {
        #[command(subcommand)]
        what: DrillWhat,
    },
    /// Replicate a `[[sync]]` job by hand: live until Ctrl-C, or one full
    /// pass with --once; `vigie sync status|pause|resume`
    ///
    /// Examples: `vigie sync webroot --once` (one full pass, with a
    /// progress bar), `vigie sync pause webroot` (fence a backup that
    /// became active).
    #[command(args_conflicts_with_subcommands = true)]
    Sync {
        #[command(subcommand)]
        action: Option<SyncAction>,
        /// The job (`[[sync]] name`)
        name: Option<String>,
        /// One full pass, then exit
        #[arg(long)]
        once: bool,
        /// Make the deletions that `max_delete` held back (after you
        /// checked the source is whole)
        #[arg(long, requires = "once")]
        allow_deletes: bool,
        /// Failback: bring the far side's tree back here (nothing is
        /// deleted here); pause the job first
        #[arg(long, conflicts_with_all = ["once", "allow_deletes"])]
        reverse: bool,
    },
    /// Backups (`[[backup]]` jobs): create a repository, back up now,
    /// list snapshots, restore, forget, check, drill
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// Converge this host to a manifest: files, lines, blocks,
    /// directories, commands, users, groups, SSH keys, cron entries,
    /// sysctl, packages, services, git checkouts; repair drift (enforce,
    /// the default) or only report it (--audit)
    ///
    /// Prints a line per resource (compliant, non-compliant, repaired,
    /// skipped, error) and a summary. Exit 0 when the host is compliant
    /// or was repaired, 1 when --audit found drift or something failed,
    /// 2 when the manifest has errors (all are printed, nothing runs).
    /// Examples: `vigie converge /etc/vigie/host.toml --audit --diff`,
    /// `vigie converge site.toml --tags ssh,users --skip-tags slow`. The
    /// manifest's format: converge.md in the documentation. Other hosts,
    /// over ssh: `vigie converge push`.
    #[command(args_conflicts_with_subcommands = true)]
    Converge {
        #[command(subcommand)]
        action: Option<ConvergeAction>,
        /// The manifest (TOML): [[file]], [[line]], [[user]], [vars]…
        manifest: Option<PathBuf>,
        /// Report drift and change nothing
        #[arg(long)]
        audit: bool,
        /// Show a unified diff of each file that differs (secrets
        /// redacted)
        #[arg(long)]
        diff: bool,
        /// Only resources with one of these tags (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "TAGS")]
        tags: Vec<String>,
        /// Never resources with one of these tags (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "TAGS")]
        skip_tags: Vec<String>,
        /// Apply the variables of this host ([hosts.NAME], host groups
        /// listing it) [default: this host's name]
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// Print JSON (for scripts) instead of lines
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the SQLite database PATH to stdout, taken
    /// while it is in use (what a backup's `dump = [{ sqlite = … }]` runs)
    #[command(hide = true)]
    SqliteCopy {
        /// The database file
        path: PathBuf,
    },
    /// The far side of a replication, started by `ssh`: receives into
    /// ROOT and nowhere else
    #[command(hide = true)]
    SyncReceive {
        /// The directory received into; nothing outside it is touched
        root: std::path::PathBuf,
        /// Keep set-user-ID and set-group-ID bits of files (the job's
        /// `preserve_setuid`); stripped otherwise
        #[arg(long)]
        preserve_setuid: bool,
    },
    /// The far side of a failback (`vigie sync NAME --reverse`), started
    /// by `ssh`: sends ROOT
    #[command(hide = true)]
    SyncSend {
        /// The directory sent
        root: std::path::PathBuf,
        /// A path the job excludes: not sent (repeated)
        #[arg(long)]
        exclude: Vec<String>,
    },
    /// Write the manual pages or print shell completions (the Debian
    /// package ships both; this is for other installs)
    ///
    /// Examples: `vigie generate man /usr/local/share/man/man1`, `vigie
    /// generate completions bash > /etc/bash_completion.d/vigie`.
    Generate {
        #[command(subcommand)]
        what: GenerateWhat,
    },
    /// About vigie on this host: `vigie self check` says what the host
    /// allows
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
pub enum GenerateWhat {
    /// Write one manual page per command (vigie.1, vigie-run.1, …) into
    /// DIR
    Man {
        /// The directory, which must exist (e.g. /usr/local/share/man/man1)
        dir: PathBuf,
    },
    /// Print the completion script of a shell on stdout
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostAction {
    /// What this host allows vigie to do: the state directory writable,
    /// ICMP sockets for ping, inotify's limits for replication, ssh and
    /// systemctl on the PATH, each with its fix; exit 1 if something the
    /// configuration needs is missing
    Check {
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a test message through a notifier; exit 3 if it was not
    /// delivered
    ///
    /// Example: `vigie notify test phone`.
    Test {
        /// The notifier (`[notify.NAME]`)
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FailoverAction {
    /// Where each failover's record points now (asked of its DNS
    /// provider), its last switch, and the watchers' votes
    Status {
        /// One failover (`[failover.NAME]`) [default: all]
        name: Option<String>,
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Point the record at the primary or the backup now, and wait until
    /// the authoritative servers serve it
    ///
    /// Example: `vigie failover switch blog --to backup`.
    Switch {
        /// The failover (`[failover.NAME]`)
        name: String,
        /// The side the record should point at
        #[arg(long, value_enum)]
        to: SwitchTo,
    },
    /// Point the record back at the primary (`switch --to primary`),
    /// after warning about writes made on the backup meanwhile
    Failback {
        /// The failover (`[failover.NAME]`)
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConvergeAction {
    /// Converge other hosts over ssh: the manifest and the files it
    /// reads are sent to each host, run there by the same vigie (copied
    /// when missing or different), and its report comes back
    ///
    /// Each HOST is an ssh destination (`web1`, an alias of your
    /// ~/.ssh/config, `root@10.0.0.5`), or NAME=DESTINATION to give the
    /// host its name in the manifest ([hosts.NAME], host groups); the
    /// name is the destination without its user otherwise. @GROUP is
    /// every host that [host_groups.GROUP] lists. ssh runs as
    /// you run it (your config, agent, ProxyJump), never prompting.
    /// Hosts run in parallel (--forks); each line is prefixed by its
    /// host, and a summary per host ends the run. Exit 0 when every host
    /// is compliant or was repaired, 1 when --audit found drift or a
    /// resource failed, 2 when the manifest has errors, 3 when a host
    /// could not be reached or run (the others still are). Example:
    /// `vigie converge push site.toml @web db=root@db.lan --audit`.
    Push {
        /// The manifest (TOML), as for `vigie converge`
        manifest: PathBuf,
        /// The hosts: DESTINATION, NAME=DESTINATION, or @GROUP (the
        /// hosts of [host_groups.GROUP])
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<String>,
        /// Report drift and change nothing
        #[arg(long)]
        audit: bool,
        /// Show a unified diff of each file that differs (secrets
        /// redacted)
        #[arg(long)]
        diff: bool,
        /// Only resources with one of these tags (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "TAGS")]
        tags: Vec<String>,
        /// Never resources with one of these tags (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "TAGS")]
        skip_tags: Vec<String>,
        /// How many hosts at once
        #[arg(long, default_value_t = 5, value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..=256))]
        forks: u16,
        /// The ssh command and its options, split on spaces (e.g.
        /// "ssh -F ./ssh_config")
        #[arg(long, default_value = "ssh", value_name = "COMMAND")]
        ssh: String,
        /// Print one JSON document at the end (for scripts) instead of
        /// lines
        #[arg(long)]
        json: bool,
    },
    /// The far side of `push`: this host's facts, then a bundle read on
    /// stdin and run here, the report as JSON lines on stdout
    #[command(hide = true)]
    Receive,
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceAction {
    /// Start (or replace) a check's maintenance, from now
    Start {
        /// The check (`[[check]] name`)
        check: String,
        /// How long it lasts, 1m to 7d (`30m`, `2h`)
        #[arg(long = "for", value_name = "DURATION")]
        duration: vigie_core::Duration,
    },
    /// End a check's maintenance now
    End {
        /// The check (`[[check]] name`)
        check: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncAction {
    /// Each job: its check, queue, lag, pause, and who sends it now
    Status {
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Stop sending a job (fencing a backup that became active); changes
    /// keep queueing until `vigie sync resume`
    Pause {
        /// The job (`[[sync]] name`)
        name: String,
        /// Why, shown by `vigie sync status`
        #[arg(long, default_value = "paused by hand", value_name = "TEXT")]
        reason: String,
    },
    /// Send a paused job again, starting with what queued meanwhile
    Resume {
        /// The job (`[[sync]] name`)
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Create the job's repository (restic's format) with its password
    Init {
        /// The job (`[[backup]]` name)
        name: String,
    },
    /// Back up now (a progress line on a terminal) and apply the job's
    /// `keep`; print the new snapshot's id; exit 3 if the run failed or
    /// another run of the job holds its lock
    Run {
        /// The job (`[[backup]]` name)
        name: String,
    },
    /// The repository's snapshots, oldest first
    Snapshots {
        /// The job (`[[backup]]` name)
        name: String,
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Each job: its last run, last good snapshot and next run
    List {
        /// Print JSON (for scripts) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot of the job (its latest by default), or one path
    /// of it, into a directory: modes, owners (as root), times, links
    ///
    /// Example: vigie backup restore nightly --path /var/lib/ghost --to /srv/restore
    Restore {
        /// The job (`[[backup]]` name)
        name: String,
        /// A snapshot id or its first characters (default: the job's
        /// latest snapshot made on this host)
        snapshot: Option<String>,
        /// Only this file or directory, as it was backed up
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
        /// The directory to restore into (made if missing; it must be
        /// empty unless --overwrite)
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Restore into a directory that holds files, replacing those of
        /// the same names
        #[arg(long)]
        overwrite: bool,
    },
    /// List what a snapshot of the job holds (its latest by default), or
    /// one directory of it: type, mode, size, path
    Ls {
        /// The job (`[[backup]]` name)
        name: String,
        /// A snapshot id or its first characters (default: the job's
        /// latest snapshot made on this host)
        snapshot: Option<String>,
        /// Only this directory (or file), as it was backed up
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
        /// Print JSON lines (for scripts) instead of a listing
        #[arg(long)]
        json: bool,
    },
    /// Write one file of a snapshot of the job (its latest by default) to
    /// stdout, as it was backed up
    ///
    /// Example: vigie backup dump nightly --path /blog.sql > blog.sql
    Dump {
        /// The job (`[[backup]]` name)
        name: String,
        /// A snapshot id or its first characters (default: the job's
        /// latest snapshot made on this host)
        snapshot: Option<String>,
        /// The file, as it was backed up (a dump is `/NAME`)
        #[arg(long, value_name = "PATH")]
        path: PathBuf,
    },
    /// Forget the snapshots the job's `keep` does not keep (restic's
    /// policy), then prune the data only they used
    Forget {
        /// The job (`[[backup]]` name)
        name: String,
        /// Only show what would be kept and forgotten
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the repository's structure, and with --read-data its packs'
    /// contents; exit 1 if it is damaged
    Check {
        /// The job (`[[backup]]` name)
        name: String,
        /// Also read back pack data: all, a part (`1/7`), a share
        /// (`10%`) or a size (`500MiB`)
        #[arg(long, value_name = "SUBSET", num_args = 0..=1, default_missing_value = "all")]
        read_data: Option<String>,
    },
    /// Restore drill: restore the job's latest snapshot (or a sample of
    /// its files) into a scratch directory, verify every byte, report
    /// the time it took, remove the copy; exit 1 if a byte differs
    Drill {
        /// The job (`[[backup]]` name)
        name: String,
        /// Only this share of the files, in percent (1 to 100)
        #[arg(long, value_name = "PERCENT")]
        sample: Option<u8>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SwitchTo {
    /// The failover's `primary` address
    Primary,
    /// The failover's `backup` address
    Backup,
}

#[derive(Debug, Subcommand)]
pub enum DrillWhat {
    /// Switch the failover's drill record to the backup and back,
    /// verified on the authoritative servers, and time each stage
    Failover {
        /// The failover (`[failover.NAME]`)
        name: String,
    },
}
