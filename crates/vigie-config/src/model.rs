//! The resolved, validated configuration: what every other crate reads.
//! Nothing here holds an unchecked string where a type can say more.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vigie_core::{ByteSize, Duration, Severity, Thresholds};

use crate::kinds::kinds;
use crate::{Excludes, MaybeSecret, Secret};

/// The whole resolved configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Where it was read from (`<embedded quickstart>` for the built-in one).
    #[serde(skip)]
    pub source: PathBuf,
    pub node: Node,
    pub server: Server,
    pub store: StoreConfig,
    pub engine: EngineConfig,
    pub series: SeriesConfig,
    #[serde(rename = "notify", skip_serializing_if = "BTreeMap::is_empty")]
    pub notifiers: BTreeMap<String, Notifier>,
    #[serde(rename = "action", skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, Action>,
    #[serde(rename = "maintenance", skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<Maintenance>,
    #[serde(rename = "dns", skip_serializing_if = "BTreeMap::is_empty")]
    pub dns: BTreeMap<String, DnsProvider>,
    #[serde(rename = "failover", skip_serializing_if = "BTreeMap::is_empty")]
    pub failovers: BTreeMap<String, Failover>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dyndns: BTreeMap<String, Dyndns>,
    #[serde(rename = "peer", skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
    #[serde(rename = "sync", skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<SyncJob>,
    #[serde(rename = "backup", skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupJob>,
    #[serde(rename = "status_page", skip_serializing_if = "BTreeMap::is_empty")]
    pub status_pages: BTreeMap<String, StatusPage>,
    #[serde(rename = "converge", skip_serializing_if = "Vec::is_empty")]
    pub converges: Vec<ConvergeJob>,
    #[serde(rename = "remote_write", skip_serializing_if = "Vec::is_empty")]
    pub remote_writes: Vec<RemoteWrite>,
    #[serde(rename = "check")]
    pub checks: Vec<Check>,
}

/// A public status page (`[status_page.NAME]`), served without a login
/// at `/status/NAME`: checks grouped as services, each with its state and
/// its uptime over 90 days. Only the title, the description and the
/// services' names are shown, never a check's name or message.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusPage {
    #[serde(skip)]
    pub name: String,
    /// The page's title, shown to the public.
    pub title: String,
    /// A sentence under the title, shown to the public.
    pub description: Option<String>,
    /// The services shown, in this order: `[{ name = "Website", checks =
    /// ["web", "web-dns"] }]`.
    pub services: Vec<StatusService>,
}

/// One service of a status page: a public name over some checks.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusService {
    /// The name the public sees (unique within the page).
    pub name: String,
    /// The checks it is made of: it is down when all of them fail,
    /// degraded when some do.
    pub checks: Vec<String>,
}

/// A live replication (`[[sync]]`): `from` a local directory `to` an ssh
/// destination `host:/path` (any `~/.ssh/config` alias) or a local path.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncJob {
    /// The job's name (its check is `sync-NAME`; `vigie sync NAME`).
    pub name: String,
    /// The local directory replicated.
    pub from: PathBuf,
    /// Where to: an ssh destination `host:/path` (any `~/.ssh/config` alias,
    /// ProxyJump and agents work) or a local path.
    pub to: String,
    /// Paths not replicated: rsync's patterns (`*`, `?`, `**`, `[...]`,
    /// `\` escapes), each checked as it is read.
    #[serde(default, skip_serializing_if = "Excludes::is_empty")]
    pub exclude: Excludes,
    /// The batching window: changes seen within it are sent together.
    #[serde(default = "quarter_second")]
    pub delay: Duration,
    /// Propagate deletions.
    #[serde(default = "yes")]
    pub delete: bool,
    /// A batch that would delete more entries is held until confirmed
    /// (`vigie sync NAME --once --allow-deletes`).
    #[serde(default = "thousand")]
    pub max_delete: u64,
    /// The ssh command and its options.
    #[serde(default = "ssh_argv")]
    pub ssh: Vec<String>,
    /// vigie's path on the far side.
    #[serde(default = "vigie_word")]
    pub remote_vigie: String,
    /// How often the whole tree is compared again.
    #[serde(default = "one_hour")]
    pub verify_every: Duration,
    /// Full passes also compare the contents (SHA-256) of files whose
    /// size and modification time agree.
    #[serde(default)]
    pub checksum: bool,
    /// The job's check fails when a change waits longer than this.
    #[serde(default = "five_minutes")]
    pub max_lag: Duration,
    /// The job's check fails when more changes than this wait.
    #[serde(default = "hundred_thousand")]
    pub max_queue: u64,
    /// The receiver keeps set-user-ID and set-group-ID bits of files
    /// (stripped by default: a replica is no place to plant them).
    #[serde(default)]
    pub preserve_setuid: bool,
}

fn hundred_thousand() -> u64 {
    100_000
}

fn quarter_second() -> Duration {
    Duration::from_millis(250)
}

fn thousand() -> u64 {
    1000
}

fn ssh_argv() -> Vec<String> {
    vec!["ssh".to_owned()]
}

fn vigie_word() -> String {
    "vigie".to_owned()
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

impl SyncJob {
    /// `(Some(host), path)` for an ssh destination, `(None, path)` for a
    /// local one.
    pub fn destination(&self) -> (Option<&str>, &str) {
        match self.to.split_once(':') {
            Some((host, path)) if !host.is_empty() && !host.contains('/') => (Some(host), path),
            _ => (None, self.to.as_str()),
        }
    }
}

/// A scheduled backup (`[[backup]]`) of `paths` into a restic-format
/// `repository`, each snapshot tagged `vigie-job:NAME` besides `tags`.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize)]
pub struct BackupJob {
    pub name: String,
    /// As written: a directory (`sftp:`, `s3:`, `rest:` next).
    pub repository: String,
    pub password: Secret,
    pub paths: Vec<PathBuf>,
    /// Left out: gitignore-style globs, each checked at load.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub one_file_system: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `at = "HH:MM"`, daily (or `schedule`).
    pub at: Option<DailyAt>,
    /// A cron expression (or `at`).
    pub schedule: Option<vigie_core::Cron>,
    /// The time zone of `at` or `schedule` (IANA name); the host's if absent.
    pub timezone: Option<String>,
    /// The most a run starts after its scheduled time: each host and job
    /// keeps its own offset within it (see [`crate::schedule::offset`]).
    pub jitter: Duration,
    /// Run before the backup; its failure aborts the run.
    pub before: Option<Vec<String>>,
    /// Run after a good backup.
    pub after: Option<Vec<String>>,
    /// Run after a failed one, with `VIGIE_BACKUP_ERROR` set.
    pub on_failure: Option<Vec<String>>,
    /// How long each hook may run.
    pub hook_timeout: Duration,
    /// The job's age check fails when the last good snapshot is older.
    pub max_age: Duration,
    /// Commands whose output is a file of the snapshot.
    #[serde(rename = "dump", skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<BackupDump>,
    /// Snapshots kept after each good run (then forget and prune).
    pub keep: Option<BackupKeep>,
    /// The ssh program and options of an `sftp:` repository.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<String>,
    /// The keys of an `s3:` repository.
    pub s3: Option<BackupS3>,
    /// The user and password of a `rest:` repository's server.
    pub rest: Option<BackupRest>,
    /// CA certificates trusted beside the system's (`s3:`, `rest:`).
    pub ca: Option<PathBuf>,
    /// When restore drills run (cron), if they do.
    pub drill: Option<vigie_core::Cron>,
    /// The share of the files a drill restores (percent), all when absent.
    pub drill_sample: Option<u8>,
    /// When the repository's integrity is checked (cron), if it is.
    pub check: Option<vigie_core::Cron>,
    /// How much pack data each scheduled check reads back: `10%`, `1/12`,
    /// `all`, or `none` (the structure only).
    #[serde(skip_serializing_if = "is_default_read_data")]
    pub check_read_data: String,
}

/// A command whose output is stored as the file `/NAME` of a snapshot,
/// or an SQLite database copied while in use.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackupDump {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<String>,
    pub sqlite: Option<PathBuf>,
    /// The longest it may run before it is killed and the run fails.
    pub timeout: Duration,
}

/// restic's `forget` policy: how many snapshots of each kind to keep.
#[serde_with::skip_serializing_none]
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BackupKeep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Duration>,
}

/// An S3 repository's keys (secrets) and region.
#[derive(Clone, Debug, Serialize)]
pub struct BackupS3 {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub region: String,
}

/// A REST server's user and password (a secret).
#[derive(Clone, Debug, Serialize)]
pub struct BackupRest {
    pub user: String,
    pub password: Secret,
}

/// The tag every snapshot of job `name` carries, by which retention and
/// drills find a job's snapshots.
pub fn backup_job_tag(name: &str) -> String {
    format!("vigie-job:{name}")
}

impl BackupJob {
    /// When the job runs, as cron: `at = "02:30"` is `30 2 * * *`.
    pub fn cron(&self) -> vigie_core::Cron {
        match (&self.schedule, self.at) {
            (Some(c), _) => c.clone(),
            (None, Some(at)) => format!("{} {} * * *", at.minute, at.hour)
                .parse()
                .expect("a daily time is a cron expression"),
            (None, None) => unreachable!("the loader sets `at` or `schedule`"),
        }
    }

    /// The tags of its snapshots: the user's and `vigie-job:NAME`.
    pub fn snapshot_tags(&self) -> Vec<String> {
        let mut tags = self.tags.clone();
        tags.push(backup_job_tag(&self.name));
        tags
    }
}

/// A time of day, `"HH:MM"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DailyAt {
    pub hour: u8,
    pub minute: u8,
}

impl std::str::FromStr for DailyAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a time of day HH:MM (00:00 to 23:59)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(DailyAt { hour, minute })
    }
}

impl fmt::Display for DailyAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl Serialize for DailyAt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DailyAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Another vigie watching the same failovers (`[[peer]]`): this node asks
/// it for its view over HTTPS, with a token both sides configure.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's `[node] name`.
    pub name: String,
    /// Its API, `https://host:port` (plain `http` only on loopback).
    pub url: HttpUrl,
    /// Sent to the peer, and accepted from it.
    pub token: Secret,
    /// The CA that signed the peer's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// Or the SHA-256 of its (self-signed) certificate, in hex
    /// (`openssl x509 -noout -fingerprint -sha256 -in cert.pem`).
    pub pin: Option<String>,
}

impl Config {
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The action a check names: a declared `[action.NAME]`, or the
    /// implicit `notify:NOTIFIER`.
    pub fn action(&self, name: &str) -> Option<Action> {
        if let Some(f) = name.strip_prefix("failover:") {
            return self
                .failovers
                .contains_key(f)
                .then(|| Action::failover_one(f));
        }
        match name.strip_prefix("notify:") {
            Some(n) if self.notifiers.contains_key(n) => Some(Action::notify_one(n)),
            Some(_) => None,
            None => self.actions.get(name).cloned(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub name: String,
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize)]
pub struct Server {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
    /// HTTPS: a PEM certificate chain and its key (needed to serve peers
    /// beyond loopback).
    pub tls: Option<ServerTls>,
    /// Dashboard logins: each user's argon2id hash.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, PasswordHash>,
}

/// A dashboard login's argon2id hash, as a PHC string
/// (`$argon2id$v=19$m=…,t=…,p=…$SALT$HASH`); `show-config` prints it as
/// `<argon2id hash>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The most memory a hash may ask per login (256 MiB).
    pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
    /// The most passes.
    pub const MAX_PASSES: u32 = 16;
    /// The most lanes.
    pub const MAX_LANES: u32 = 8;

    /// Check `phc` is an argon2id hash argon2 can verify against, at a
    /// cost vigie bounds.
    pub fn parse(phc: &str) -> Result<Self, String> {
        let h = argon2::PasswordHash::new(phc).map_err(|e| e.to_string())?;
        if h.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "its algorithm is {}, not argon2id",
                h.algorithm.as_str()
            ));
        }
        if h.hash.is_none() {
            return Err("it has no hash part".into());
        }
        let p = argon2::Params::try_from(&h).map_err(|e| format!("its parameters: {e}"))?;
        // Every login costs what the hash says: bounded, so that a hash
        // made elsewhere cannot make each login a denial of service.
        if p.m_cost() > Self::MAX_MEMORY_KIB
            || p.t_cost() > Self::MAX_PASSES
            || p.p_cost() > Self::MAX_LANES
        {
            return Err(format!(
                "its cost (m={} KiB, t={}, p={}) is above what vigie computes per login (m ≤ {}, t ≤ {}, p ≤ {})",
                p.m_cost(),
                p.t_cost(),
                p.p_cost(),
                Self::MAX_MEMORY_KIB,
                Self::MAX_PASSES,
                Self::MAX_LANES
            ));
        }
        Ok(Self(phc.to_owned()))
    }

    /// The PHC string.
    pub fn phc(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<argon2id hash>)")
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<argon2id hash>")
    }
}

/// HTTPS for vigie's server: a PEM certificate chain and its key.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The PEM certificate chain (relative to the config file).
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize)]
pub struct StoreConfig {
    pub dir: Option<PathBuf>,
    /// How long check results (failures and changes) are kept.
    pub retention: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct EngineConfig {
    /// At most this many probes run at once.
    pub concurrency: usize,
    /// Attempts to deliver one notification (network errors, 429, 5xx).
    pub notify_attempts: u32,
    /// Wait before the second attempt; doubled after each.
    pub notify_backoff: Duration,
}

/// The time series (`[series]`): every check's numbers and the host's
/// metrics, rolled up (raw, 1 min, 1 h) and kept by age and size.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesConfig {
    /// How often the host's metrics are sampled.
    pub interval: Duration,
    pub retention: SeriesRetention,
    /// Above this many bytes of chunks, the oldest go, raw first.
    pub max_size: ByteSize,
}

/// How long each resolution of the series is kept.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesRetention {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
}

/// One check: when and how to run it, how to judge it, and its probe.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub description: Option<String>,
    pub every: Duration,
    pub timeout: Duration,
    /// Once the check has failed, how soon it runs again until
    /// `fail_after` confirms the failure or it recovers (Uptime Kuma's
    /// retry interval); `None`: at `every`.
    pub retry_every: Option<Duration>,
    pub fail_after: u32,
    pub recover_after: u32,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Flap detection: `changes` state changes within `within` hold the
    /// check's notifications until it settles. On by default.
    pub flapping: Option<Flapping>,
    /// What an incident of this check runs, in order: action names, or
    /// `notify:NOTIFIER`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(flatten)]
    pub probe: Probe,
}

impl Check {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            fail_after: self.fail_after,
            recover_after: self.recover_after,
        }
    }
}

/// The check kinds: the one table that lists them, a variant of [`Probe`]
/// (its settings' type) and the key a `[[check]]` names it by. `Probe`,
/// [`ProbeKind`] and the loader's raw check are built from it
/// (`probe_kinds!(then)` hands the table to the macro `then`).
macro_rules! probe_kinds {
    ($then:ident) => {
        $then! {
            Http(HttpProbe) = "http",
            Tcp(TcpProbe) = "tcp",
            Tls(TlsProbe) = "tls",
            Dns(DnsProbe) = "dns",
            Ping(PingProbe) = "ping",
            Command(CommandProbe) = "command",
            Systemd(SystemdProbe) = "systemd",
            Process(ProcessProbe) = "process",
            Disk(DiskProbe) = "disk",
            Memory(MemoryProbe) = "memory",
            Load(LoadProbe) = "load",
            FileAge(FileAgeProbe) = "file_age",
            Heartbeat(HeartbeatProbe) = "heartbeat",
            Sync(SyncProbe) = "sync",
            Backup(BackupProbe) = "backup",
            Converge(ConvergeProbe) = "converge",
            Rule(RuleProbe) = "rule",
        }
    };
}
pub(crate) use probe_kinds;

macro_rules! probe_enum {
    ($( $Variant:ident $settings:tt = $name:literal, )+) => {
        kinds! {
            /// The probe of a check; in the file it is the key that names it
            /// (`http = { … }`).
            #[derive(Clone, Debug, Serialize)]
            pub enum Probe => ProbeKind {
                $( $Variant $settings = $name, )+
            }
        }
    };
}
probe_kinds!(probe_enum);

/// `sync`: the state of a `[[sync]]` job, as the job itself reports it
/// (lag, queue, errors, held deletions). Each job gets a `sync-NAME`
/// check of this kind unless a check names it already.
/// `sync = { job = "webroot" }`
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncProbe {
    /// The `[[sync]]` job's name.
    pub job: String,
}

/// A `[[backup]]` job, as its runs, drills, integrity checks and
/// repository report on the board (`watch`). Each job gets `backup-NAME`,
/// `backup-NAME-age` and `backup-NAME-repository` checks (and
/// `backup-NAME-drill`, `backup-NAME-check` when it schedules drills or
/// checks) unless checks watch that already.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupProbe {
    /// The `[[backup]]` job watched.
    pub job: String,
    /// What of the job the check watches: `"run"` (its last run's
    /// result), `"age"` (its last good snapshot's age, against
    /// `max_age`), `"drill"` (its last restore drill), `"check"` (its
    /// last scheduled integrity check), `"repository"` (whether its
    /// repository answers, asked every 5 minutes). Default: `"age"` with
    /// `max_age`, else `"run"`.
    pub watch: Option<BackupWatch>,
    /// For `watch = "age"`: the check fails when the last good snapshot
    /// is older than this. Default: the job's `max_age`.
    pub max_age: Option<Duration>,
}

impl BackupProbe {
    /// What the check watches, its default filled in.
    pub fn aspect(&self) -> BackupWatch {
        self.watch.unwrap_or(if self.max_age.is_some() {
            BackupWatch::Age
        } else {
            BackupWatch::Run
        })
    }
}

/// A `[[converge]]` job's last run, as the job reports it on the board:
/// failing when the host is not as its manifest declares (audit) or
/// could not be repaired (enforce). Each job gets a `converge-NAME`
/// check of this kind unless a check names it already.
/// `converge = { job = "base" }`
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvergeProbe {
    /// The `[[converge]]` job's name.
    pub job: String,
}

/// Drift as a check (`[[converge]]`): the daemon runs a converge
/// manifest (as `vigie converge` does) every `every`, in audit mode
/// (report what differs) or enforce mode (repair it, report what it
/// changed); its check `converge-NAME` fails while the host differs
/// from the manifest.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvergeJob {
    /// The job's name (letters, digits, `-`, `_`, `.`); its check is
    /// `converge-NAME`.
    pub name: String,
    /// The converge manifest (docs/converge.md), relative to the config
    /// file; loaded and validated with the configuration (and again on
    /// reload). Or `git`.
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub manifest: PathBuf,
    /// Pull the manifest from a git repository at each run instead:
    /// `{ url = "https://git.example.org/site.git", ref = "main",
    /// manifest = "site.toml" }` (or `manifest`).
    pub git: Option<ConvergeGit>,
    /// `"audit"` reports drift and never writes; `"enforce"` repairs it.
    #[serde(default)]
    pub mode: ConvergeMode,
    /// How often the manifest is run (the first run at start). Default
    /// 1h, unless `at` or `schedule` is given; with one of them too,
    /// the job runs at whichever comes first.
    pub every: Option<Duration>,
    /// Daily at this time, `"02:30"` (or `schedule`); the first run is
    /// at start all the same.
    #[schemars(with = "Option<String>")]
    pub at: Option<DailyAt>,
    /// When to run, as cron: `"0 3 * * 0"` (or `at`).
    pub schedule: Option<vigie_core::Cron>,
    /// The time zone of `at`/`schedule` (IANA name); the host's by default.
    pub timezone: Option<String>,
    /// Only the manifest's resources with one of these tags (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Never the resources with one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_tags: Vec<String>,
    /// The severity of the incident drift opens, and of each resource
    /// that declares none; a resource's own `severity` raises it (the
    /// incident takes the highest among the resources that differ).
    #[serde(default)]
    pub severity: vigie_core::Severity,
}

/// The default period of a `[[converge]]` job without `at` or `schedule`.
pub const CONVERGE_EVERY: Duration = Duration::from_secs(3600);

/// Where a `[[converge]]` job pulls its manifest from: the system `git`
/// fetches `ref` of `url` into the state directory at each run.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvergeGit {
    /// The repository: `https://…`, `http://…`, `ssh://…`, `git://…`,
    /// `file://…`, `user@host:path` or an absolute path.
    pub url: String,
    /// The branch or tag to apply (default `main`).
    #[serde(rename = "ref", default = "main_ref")]
    pub reference: String,
    /// The manifest's path in the repository (default `site.toml`).
    #[serde(default = "site_toml")]
    pub manifest: PathBuf,
}

fn main_ref() -> String {
    "main".into()
}

fn site_toml() -> PathBuf {
    "site.toml".into()
}

fn is_empty_path(p: &std::path::Path) -> bool {
    p.as_os_str().is_empty()
}

/// A Prometheus remote-write endpoint (`[[remote_write]]`), resolved:
/// the daemon sends it the samples of `/metrics` every `interval`.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize)]
pub struct RemoteWrite {
    /// Its name in vigie's metrics and logs (default: host and port).
    pub name: String,
    pub url: HttpUrl,
    pub interval: Duration,
    pub timeout: Duration,
    /// The most (compressed) bytes waiting; the oldest batches are
    /// dropped beyond.
    pub queue: ByteSize,
    /// Added to every series (a series' own label wins); `instance`
    /// and `job` always among them.
    pub labels: BTreeMap<String, String>,
    /// `bearer_token` or `basic_auth`, as written.
    #[serde(flatten)]
    pub auth: Option<RemoteAuth>,
    /// CA certificates trusted beside the system's.
    pub ca: Option<PathBuf>,
}

/// How a remote-write endpoint is authenticated.
#[derive(Clone, Debug, Serialize)]
pub enum RemoteAuth {
    /// `Authorization: Bearer …`.
    #[serde(rename = "bearer_token")]
    Bearer(Secret),
    /// HTTP basic authentication.
    #[serde(rename = "basic_auth")]
    Basic { user: String, password: Secret },
}

/// How a `[[converge]]` job runs its manifest.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ConvergeMode {
    /// Check only: drift is reported, nothing is written.
    #[default]
    Audit,
    /// Repair what differs, and report what was changed.
    Enforce,
}

/// What of a `[[backup]]` job a check watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupWatch {
    /// The job's last run.
    Run,
    /// The age of its last good snapshot.
    Age,
    /// Its last restore drill.
    Drill,
    /// Its last scheduled integrity check.
    Check,
    /// Whether its repository answers.
    Repository,
}

fn yes() -> bool {
    true
}

/// Said by show-config only when it is not the default (which reads
/// back without `check` too).
fn is_default_read_data(s: &str) -> bool {
    s == crate::load::DEFAULT_CHECK_READ_DATA
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// A compiled regular expression that serializes back to its source.
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.0.as_str())
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::RegexBuilder::new(&s)
            .size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| {
                // regex's own message spans several lines; keep its verdict.
                let text = e.to_string();
                let why = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(&text)
                    .to_owned();
                serde::de::Error::custom(format!("invalid regular expression `{s}`: {why}"))
            })
    }
}

/// An `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(pub url::Url);

impl Serialize for HttpUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        let url = url::Url::parse(&s).map_err(|e| {
            D::Error::custom(format!(
                "`{s}` is not a URL ({e}): write it in full, e.g. \"https://example.org/health\""
            ))
        })?;
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(HttpUrl(url)),
            "http" | "https" => Err(D::Error::custom(format!("`{s}` has no host"))),
            other => Err(D::Error::custom(format!(
                "`{s}`: scheme `{other}` is not checked over HTTP; use http:// or https://"
            ))),
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}

/// `http`: one HTTP(S) request, judged on its status, body, response time
/// and certificate expiry.
/// `http = { url = "https://example.org/health", expect_status = [200] }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// The URL requested, e.g. `"https://example.org/health"`.
    pub url: HttpUrl,
    /// The request's method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Values may be secrets (`{ env }`, `{ file }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, MaybeSecret>,
    /// Added to the URL's query; values may be secrets (an API key that
    /// goes in the URL stays out of `url`, show-config and errors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, MaybeSecret>,
    /// A request body, sent as written.
    pub body: Option<String>,
    /// Accepted statuses; empty means any status below 400.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// Fail unless the response body contains this text.
    pub body_contains: Option<String>,
    /// Fail unless the response body matches this regular expression.
    pub body_regex: Option<Pattern>,
    /// Fail when the response takes longer (e.g. `"2s"`).
    pub max_response_time: Option<Duration>,
    /// Follow redirects (on the same host only, when the request carries
    /// secrets); `false` judges the redirect itself.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// A PEM file of extra trusted certificates (a private CA).
    pub ca: Option<PathBuf>,
    /// Accept any certificate (expired, self-signed, another name): the check
    /// then proves nothing about TLS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dangerously_accept_invalid_certs: bool,
    /// Fail when the server certificate expires in fewer days.
    pub cert_min_days: Option<u32>,
    /// The most of the body read for `body_contains` / `body_regex`.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
}

/// `tcp`: a TCP connection, optionally a text sent and an answer expected.
/// `tcp = { address = "db.example.org:5432" }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// `host:port`
    pub address: String,
    /// Text sent once connected (e.g. `"PING\r\n"`).
    pub send: Option<String>,
    /// Fail unless the server's answer contains this text (read up to
    /// 64 KiB).
    pub expect: Option<String>,
}

/// `tls`: a TLS handshake, judged on the certificate's validity and
/// expiry. `tls = { address = "mail.example.org:465", cert_min_days = 14 }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsProbe {
    /// `host:port`
    pub address: String,
    /// The name sent (SNI) and verified in the certificate. Default: the
    /// host of `address`.
    pub server_name: Option<String>,
    /// A PEM file of extra trusted certificates (a private CA).
    pub ca: Option<PathBuf>,
    /// Accept any certificate: only the connection and the expiry are
    /// judged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dangerously_accept_invalid_certs: bool,
    /// Fail when the server certificate expires in fewer days.
    pub cert_min_days: Option<u32>,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    #[default]
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
}

/// What a DNS answer must contain: anything, or exactly these values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DnsExpect {
    #[default]
    Any,
    Values(Vec<String>),
}

impl Serialize for DnsExpect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DnsExpect::Any => s.serialize_str("any"),
            DnsExpect::Values(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DnsExpect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::One(s) if s == "any" => Ok(DnsExpect::Any),
            Raw::One(s) => Err(serde::de::Error::custom(format!(
                "expect is \"any\" or a list of values; write expect = [\"{s}\"]"
            ))),
            Raw::Many(v) => Ok(DnsExpect::Values(v)),
        }
    }
}

/// `dns`: a DNS look-up, judged on its answer.
/// `dns = { name = "example.org", record = "A", expect = ["192.0.2.10"] }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsProbe {
    /// The name to resolve.
    pub name: String,
    /// The record type asked for.
    #[serde(default)]
    pub record: RecordType,
    /// `ip` or `ip:port` of the server to ask; the system resolver if absent.
    pub server: Option<String>,
    /// What the answer must hold.
    #[serde(default)]
    pub expect: DnsExpect,
}

fn default_ping_count() -> u32 {
    3
}
fn default_ping_interval() -> Duration {
    Duration::from_millis(200)
}
fn default_max_loss() -> f64 {
    50.0
}

/// `ping`: ICMP echo (root, or a group in `net.ipv4.ping_group_range`),
/// judged on loss and round trip. `ping = { host = "192.0.2.1" }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PingProbe {
    /// The host name or address pinged.
    pub host: String,
    /// Echo requests sent per run.
    #[serde(default = "default_ping_count")]
    pub count: u32,
    /// The wait between two echo requests.
    #[serde(default = "default_ping_interval")]
    pub interval: Duration,
    /// Fail when more than this share of echoes is lost.
    #[serde(default = "default_max_loss")]
    pub max_loss_percent: f64,
    /// Fail when the average round trip is longer.
    pub max_rtt: Option<Duration>,
}

fn default_exit() -> Vec<i32> {
    vec![0]
}

/// `command`: a program run (no shell unless `shell`), judged on its exit
/// status and output. `command = { argv = ["pg_isready", "-q"] }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProbe {
    /// Program and arguments, run without a shell.
    pub argv: Option<Vec<String>>,
    /// A command line for `/bin/sh -c`, when a shell is really wanted.
    pub shell: Option<String>,
    /// The exit statuses that pass.
    #[serde(default = "default_exit")]
    pub expect_exit: Vec<i32>,
    /// Fail unless the output (stdout and stderr) contains this text.
    pub output_contains: Option<String>,
    /// Fail unless the output matches this regular expression.
    pub output_regex: Option<Pattern>,
    /// Values may be secrets (`{ env }`, `{ file }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, MaybeSecret>,
    /// The working directory of the command.
    pub cwd: Option<PathBuf>,
}

/// `systemd`: a systemd unit must be active.
/// `systemd = { unit = "nginx.service" }`
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemdProbe {
    /// The unit, e.g. `"nginx.service"`: the check fails unless it is active.
    pub unit: String,
}

fn one() -> u32 {
    1
}

/// `process`: how many processes of a name run (or whether a pid file's
/// process does). `process = { name = "postgres", min = 1 }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessProbe {
    /// Process name as in `/proc/PID/comm`, or the program's file name.
    pub name: Option<String>,
    /// Or a pid file: the process it names must be running.
    pub pidfile: Option<PathBuf>,
    /// Fail when fewer processes run.
    #[serde(default = "one")]
    pub min: u32,
    /// Fail when more processes run.
    pub max: Option<u32>,
}

fn root() -> PathBuf {
    PathBuf::from("/")
}

/// `disk`: space and inodes of a file system.
/// `disk = { path = "/var", max_used_percent = 90 }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskProbe {
    /// A path on the file system judged.
    #[serde(default = "root")]
    pub path: PathBuf,
    /// Fail when more than this percentage of the space is used.
    pub max_used_percent: Option<f64>,
    /// Fail when less space than this is free (e.g. `"5GB"`).
    pub min_free: Option<ByteSize>,
    /// Fail when more than this percentage of the inodes is used.
    pub max_inodes_used_percent: Option<f64>,
}

fn ninety() -> f64 {
    90.0
}

/// `memory`: memory and swap in use. `memory = { max_used_percent = 90 }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryProbe {
    /// Fail when more than this percentage of the memory is used (not
    /// counting what the kernel can reclaim).
    #[serde(default = "ninety")]
    pub max_used_percent: f64,
    /// Fail when more than this percentage of the swap is used.
    pub max_swap_used_percent: Option<f64>,
}

/// `load`: the load averages. `load = { max_load5 = 2.0 }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadProbe {
    /// Fail when the 1-minute load average is higher.
    pub max_load1: Option<f64>,
    /// Fail when the 5-minute load average is higher.
    pub max_load5: Option<f64>,
    /// Fail when the 15-minute load average is higher.
    pub max_load15: Option<f64>,
    /// Thresholds are per CPU (a load of 2.0 on 4 CPUs is 0.5).
    #[serde(default = "yes")]
    pub per_cpu: bool,
}

/// `file_age`: a file (or a directory's newest file) must be recent: a
/// backup's output, a log. `file_age = { path = "/srv/backup", max_age = "26h" }`
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAgeProbe {
    /// A file, or a directory whose newest file is judged.
    pub path: PathBuf,
    /// Fail when the file was last modified longer ago (e.g. `"26h"`).
    pub max_age: Duration,
    /// For a directory, judge the newest file of the whole tree, not only
    /// of the directory itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recursive: bool,
}

fn default_grace() -> Duration {
    Duration::from_secs(300)
}

/// `heartbeat`: a job (a cron job, a backup script) pings vigie's server
/// at `/ping/NAME` (GET or POST, the token as `Authorization: Bearer` or
/// `?token=`); the check fails when a ping is late. `/ping/NAME/start`
/// marks a run's start, `/ping/NAME/fail` or `/ping/NAME/<exit status>`
/// its end; a POST's body (its last 10 KB) is kept and shown in the
/// incident. `vigie heartbeat-url NAME` prints the URL.
/// `heartbeat = { period = "1d", grace = "1h" }` or
/// `heartbeat = { schedule = "0 2 * * *", timezone = "Europe/Paris" }`
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatProbe {
    /// How often the job is expected to ping (or `schedule`).
    pub period: Option<Duration>,
    /// When the job runs, as cron writes it (or `period`): it is late when
    /// the last scheduled time + grace passed without a ping after it.
    pub schedule: Option<vigie_core::Cron>,
    /// The time zone of `schedule` (IANA name); the host's if absent.
    pub timezone: Option<String>,
    /// Extra time allowed before the check fails.
    #[serde(default = "default_grace")]
    pub grace: Duration,
    /// The token pings must carry; generated and kept in the store if absent.
    pub token: Option<Secret>,
    /// A run started (`/ping/NAME/start`) and not finished within this
    /// fails the check.
    pub max_duration: Option<Duration>,
}

/// `rule`: a rule over the time series (the host's metrics, every
/// check's numbers): a threshold, a growth over a window, a linear
/// prediction, or a series gone silent. The check fails while the rule
/// holds; its value is its number (`vigie_check_value{name="value"}`).
/// `rule = { expr = 'predict(node_filesystem_avail_bytes{mountpoint="/"}, 6h, 0) < 24h' }`
/// (see docs/rules.md).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleProbe {
    /// The rule: `SERIES > N`, `avg|min|max(SERIES, WINDOW) > N`,
    /// `increase(SERIES, WINDOW) > N` (or `N%`), `predict(SERIES,
    /// WINDOW, TARGET) < DURATION`, or `absent(SERIES, DURATION)`, where
    /// SERIES is `name{label="value",…}`. Write it in single quotes, so
    /// that the labels' double quotes need no escape.
    #[schemars(with = "String")]
    pub expr: toml::Spanned<String>,
    /// The rule parsed, by the loader.
    #[serde(skip)]
    #[schemars(skip)]
    pub rule: Option<crate::rule::Rule>,
}

/// A notifier: where messages about incidents go (`[notify.NAME]`).
#[derive(Clone, Debug, Serialize)]
pub struct Notifier {
    #[serde(skip)]
    pub name: String,
    #[serde(flatten)]
    pub kind: NotifierKind,
}

kinds! {
    /// The services vigie can notify, by their `kind`: the one table of
    /// notifiers.
    #[serde_with::skip_serializing_none]
    #[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(tag = "kind", deny_unknown_fields)]
    pub enum NotifierKind => NotifierService {
        /// ntfy: a POST of the text to the topic URL, title and priority as headers.
        Ntfy {
            /// The topic URL, e.g. `https://ntfy.sh/my-alerts`.
            url: HttpUrl,
            /// An access token (`Authorization: Bearer`), for protected topics.
            token: Option<Secret>,
        } = "ntfy",
        /// Gotify: `POST /message` with an application token.
        Gotify {
            /// The server's base URL.
            url: HttpUrl,
            /// The application's token.
            token: Secret,
        } = "gotify",
        /// Any HTTP endpoint: a JSON body, or one rendered from a template.
        Webhook {
            /// The endpoint, e.g. `"https://chat.example.org/hooks/abc"`.
            url: HttpUrl,
            /// The request's method.
            #[serde(default = "post")]
            method: HttpMethod,
            /// Values may be secrets (`{ env }`, `{ file }`).
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            headers: BTreeMap<String, MaybeSecret>,
            /// Added to the URL's query; values may be secrets.
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            query: BTreeMap<String, MaybeSecret>,
            /// Sent as `Authorization: Bearer …` when set.
            token: Option<Secret>,
            /// A MiniJinja template for the body; the message's fields are its
            /// variables (see "Webhook templates" in the notifiers'
            /// reference). Without one the body is the message as JSON.
            template: Option<String>,
        } = "webhook",
        /// IFTTT Maker webhooks: an event with value1..3.
        Ifttt {
            /// The Maker event's name.
            event: String,
            /// The Maker webhooks key.
            key: Secret,
            /// The API's base URL (a test server's, in tests).
            #[serde(default = "ifttt_endpoint")]
            endpoint: HttpUrl,
        } = "ifttt",
        /// A Slack incoming webhook.
        Slack {
            /// The webhook's URL: it is the secret.
            url: Secret,
        } = "slack",
        /// A Discord webhook.
        Discord {
            /// The webhook's URL: it is the secret.
            url: Secret,
        } = "discord",
        /// A Matrix room, through the client-server API.
        Matrix {
            /// The homeserver's base URL, e.g. `"https://matrix.example.org"`.
            homeserver: HttpUrl,
            /// The room's id, `!abc:example.org`.
            room_id: String,
            /// The sending user's access token.
            access_token: Secret,
        } = "matrix",
        /// Mail through an SMTP server (STARTTLS by default).
        Smtp {
            /// The SMTP server's host name.
            host: String,
            /// Default: 587 with STARTTLS, 465 with implicit TLS.
            port: Option<u16>,
            /// How the connection is secured.
            #[serde(default)]
            security: SmtpSecurity,
            /// The login, when the server asks for one.
            username: Option<String>,
            /// Its password.
            password: Option<Secret>,
            /// The sender, e.g. `"vigie <alerts@example.org>"`.
            from: String,
            /// The recipients' addresses.
            to: Vec<String>,
            /// Extra trusted certificates (a PEM file), for a private CA.
            ca: Option<PathBuf>,
        } = "smtp",
        /// A Telegram chat, through a bot.
        Telegram {
            /// The bot's token (from @BotFather).
            bot_token: Secret,
            /// The chat's id (a number, or `@channel`).
            chat_id: String,
            /// The Bot API's base URL (a test server's, in tests).
            #[serde(default = "telegram_endpoint")]
            endpoint: HttpUrl,
        } = "telegram",
        /// Pushover: `POST /1/messages.json` with the application's token
        /// and the user's (or group's) key.
        Pushover {
            /// The application's API token.
            token: Secret,
            /// The user's or the group's key.
            user: Secret,
            /// Only these devices (names, comma-separated); all by default.
            device: Option<String>,
            /// A link shown with every message, e.g. a dashboard.
            url: Option<HttpUrl>,
            /// Disasters at priority 2 (repeated until acknowledged); without
            /// it, the highest priority sent is 1.
            emergency: Option<PushoverEmergency>,
            /// The API's base URL (a test server's, in tests).
            #[serde(default = "pushover_endpoint")]
            endpoint: HttpUrl,
        } = "pushover",
        /// PagerDuty Events API v2: an alert triggered by a failure and
        /// resolved by the incident's resolution.
        Pagerduty {
            /// The integration key of an Events API v2 integration.
            routing_key: Secret,
            /// `https://events.eu.pagerduty.com` for an account in the EU.
            #[serde(default = "pagerduty_endpoint")]
            endpoint: HttpUrl,
        } = "pagerduty",
        /// Microsoft Teams, through a workflow's webhook ("Post to a channel
        /// when a webhook request is received").
        Teams {
            /// The workflow's URL: it is the secret.
            url: Secret,
        } = "teams",
        /// The Apprise CLI, for the services vigie does not speak itself.
        Apprise {
            /// Apprise URLs (`tgram://…`, `mailto://…`): they carry the
            /// services' keys, so each is a secret.
            urls: Vec<Secret>,
            /// The program: a name looked up on `PATH`, or a path.
            #[serde(default = "apprise_program")]
            program: PathBuf,
        } = "apprise",
    }
}

/// Pushover's emergency priority: the message is repeated every `retry`
/// until someone acknowledges it or `expire` has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushoverEmergency {
    /// At least 30s (Pushover's minimum).
    pub retry: Duration,
    /// At most 3h (Pushover's maximum).
    pub expire: Duration,
}

impl NotifierKind {
    /// Every secret of this notifier, to be resolved at load.
    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut Secret)> {
        match self {
            NotifierKind::Ntfy { token, .. } => token.iter_mut().map(|t| ("token", t)).collect(),
            NotifierKind::Webhook {
                token,
                headers,
                query,
                ..
            } => token
                .iter_mut()
                .map(|t| ("token", t))
                .chain(
                    headers
                        .values_mut()
                        .filter_map(MaybeSecret::secret_mut)
                        .map(|s| ("headers", s)),
                )
                .chain(
                    query
                        .values_mut()
                        .filter_map(MaybeSecret::secret_mut)
                        .map(|s| ("query", s)),
                )
                .collect(),
            NotifierKind::Gotify { token, .. } => vec![("token", token)],
            NotifierKind::Ifttt { key, .. } => vec![("key", key)],
            NotifierKind::Slack { url }
            | NotifierKind::Discord { url }
            | NotifierKind::Teams { url } => vec![("url", url)],
            NotifierKind::Matrix { access_token, .. } => vec![("access_token", access_token)],
            NotifierKind::Telegram { bot_token, .. } => vec![("bot_token", bot_token)],
            NotifierKind::Smtp { password, .. } => {
                password.iter_mut().map(|p| ("password", p)).collect()
            }
            NotifierKind::Pushover { token, user, .. } => vec![("token", token), ("user", user)],
            NotifierKind::Pagerduty { routing_key, .. } => vec![("routing_key", routing_key)],
            NotifierKind::Apprise { urls, .. } => urls.iter_mut().map(|u| ("urls", u)).collect(),
        }
    }
}

/// How an SMTP connection is secured.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption at all: credentials and mail in clear.
    DangerouslyPlaintext,
}

fn post() -> HttpMethod {
    HttpMethod::Post
}

fn ifttt_endpoint() -> HttpUrl {
    HttpUrl(url::Url::parse("https://maker.ifttt.com").expect("a valid URL"))
}

fn telegram_endpoint() -> HttpUrl {
    HttpUrl(url::Url::parse("https://api.telegram.org").expect("a valid URL"))
}

fn pushover_endpoint() -> HttpUrl {
    HttpUrl(url::Url::parse("https://api.pushover.net").expect("a valid URL"))
}

fn pagerduty_endpoint() -> HttpUrl {
    HttpUrl(url::Url::parse("https://events.pagerduty.com").expect("a valid URL"))
}

fn apprise_program() -> PathBuf {
    PathBuf::from("apprise")
}

/// `max = { restarts = 3, within = "15m" }`: past this many repairs in the
/// window, vigie stops repairing and escalates (Monit's restart limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartLimit {
    /// The most repairs within the window.
    pub restarts: u32,
    /// The sliding window.
    pub within: Duration,
}

fn default_action_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_verify() -> Duration {
    Duration::from_secs(30)
}

/// A notify step sends every severity unless it says otherwise: the same
/// for `[action.NAME] notify = [...]` as for `notify:NAME`, so that naming
/// a step never silently drops a warning.
fn default_min_severity() -> Severity {
    Severity::NotClassified
}

/// A step of incidents (`[action.NAME]`): a repair (`run`, `shell`,
/// `systemd_restart`, `docker_restart`), a notification (`notify`) or a
/// failover (`failover`), exactly one of them.
// As written; the loader resolves it into an [`Action`].
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionTable {
    /// A repair: a program and its arguments, run without a shell
    /// (`["systemctl", "reload", "nginx"]`).
    pub run: Option<Vec<String>>,
    /// A repair: a command line for `/bin/sh -c`.
    pub shell: Option<String>,
    /// A repair: `systemctl restart UNIT`.
    pub systemd_restart: Option<String>,
    /// A repair: `docker restart CONTAINER`.
    pub docker_restart: Option<String>,
    /// A notification: the `[notify.NAME]` notifiers sent to, by name.
    pub notify: Option<Vec<String>>,
    /// Point this `[failover.NAME]` record at its backup.
    pub failover: Option<String>,
    /// Run this `[[backup]]` job now.
    pub backup: Option<String>,
    /// How long a repair command may run.
    #[serde(default = "default_action_timeout")]
    pub timeout: Duration,
    /// After a repair, how long the check has to recover before vigie
    /// notifies.
    #[serde(default = "default_verify")]
    pub verify: Duration,
    /// A repair's limit: `{ restarts = 3, within = "15m" }`; past it vigie
    /// stops repairing and goes on with the incident's next steps.
    pub max: Option<RestartLimit>,
    /// A notify step only sends for incidents at least this severe (by
    /// default it sends them all).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// A notify step with `after` is an escalation: sent only if the
    /// incident is still open and unacknowledged that long after it began.
    pub after: Option<Duration>,
    /// Send at this severity instead of the check's (escalate to disaster).
    pub severity: Option<Severity>,
}

impl ActionTable {
    /// How many of the step kinds are set (a valid action has one).
    pub(crate) fn kinds_set(&self) -> usize {
        [
            self.run.is_some(),
            self.shell.is_some(),
            self.systemd_restart.is_some(),
            self.docker_restart.is_some(),
            self.notify.is_some(),
            self.failover.is_some(),
            self.backup.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }

    /// The action this table declares, if it sets exactly one kind.
    pub(crate) fn resolve(self, name: &str) -> Option<Action> {
        if self.kinds_set() != 1 {
            return None;
        }
        let repair = |command| {
            ActionKind::Repair(RepairStep {
                command,
                timeout: self.timeout,
                verify: self.verify,
                max: self.max,
            })
        };
        let kind = if let Some(argv) = self.run.clone() {
            repair(RepairCommand::Run(argv))
        } else if let Some(line) = self.shell.clone() {
            repair(RepairCommand::Shell(line))
        } else if let Some(unit) = self.systemd_restart.clone() {
            repair(RepairCommand::SystemdRestart(unit))
        } else if let Some(c) = self.docker_restart.clone() {
            repair(RepairCommand::DockerRestart(c))
        } else if let Some(to) = self.notify {
            ActionKind::Notify(NotifyStep {
                to,
                min_severity: self.min_severity,
                after: self.after,
                severity: self.severity,
            })
        } else if let Some(job) = self.backup {
            ActionKind::Backup(job)
        } else {
            ActionKind::Failover(self.failover?)
        };
        Some(Action {
            name: name.to_owned(),
            kind,
        })
    }
}

/// One step an incident runs: a declared `[action.NAME]`, or the implicit
/// `notify:NOTIFIER` and `failover:NAME`. A check names its steps in
/// order: `actions = ["restart-web", "notify:phone"]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub name: String,
    pub kind: ActionKind,
}

/// What a step does. Repair and notify are the engine's own; the other
/// kinds are run by the plugin registered for [`ActionKind::plugin`].
#[derive(Clone, Debug, PartialEq)]
pub enum ActionKind {
    Repair(RepairStep),
    Notify(NotifyStep),
    /// Point this `[failover.NAME]` record at its backup.
    Failover(String),
    /// Run this `[[backup]]` job now.
    Backup(String),
}

/// A repair: a command, then a window for the check to recover.
#[derive(Clone, Debug, PartialEq)]
pub struct RepairStep {
    pub command: RepairCommand,
    /// How long the command may run.
    pub timeout: Duration,
    /// How long the check has to recover before the incident goes on.
    pub verify: Duration,
    pub max: Option<RestartLimit>,
}

/// A notification to some notifiers.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyStep {
    pub to: Vec<String>,
    /// Sent only for incidents at least this severe.
    pub min_severity: Severity,
    /// An escalation: sent only if the incident is still open and
    /// unacknowledged that long after it began.
    pub after: Option<Duration>,
    /// Sent at this severity instead of the check's.
    pub severity: Option<Severity>,
}

/// What a repair step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairCommand {
    Run(Vec<String>),
    Shell(String),
    SystemdRestart(String),
    DockerRestart(String),
}

impl RepairCommand {
    /// The program and its arguments.
    pub fn argv(&self) -> Vec<String> {
        match self {
            RepairCommand::Run(argv) => argv.clone(),
            RepairCommand::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
            RepairCommand::SystemdRestart(unit) => vec![
                "systemctl".into(),
                "restart".into(),
                "--".into(),
                unit.clone(),
            ],
            RepairCommand::DockerRestart(c) => {
                vec!["docker".into(), "restart".into(), "--".into(), c.clone()]
            }
        }
    }
}

impl ActionKind {
    /// The name of the failover kind, under which its plugin registers.
    pub const FAILOVER: &'static str = "failover";
    /// The name of the backup kind, under which its plugin registers.
    pub const BACKUP: &'static str = "backup";

    /// The kind's name, which keys the engine's registry of plugins.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Repair(_) => "repair",
            ActionKind::Notify(_) => "notify",
            ActionKind::Failover(_) => Self::FAILOVER,
            ActionKind::Backup(_) => Self::BACKUP,
        }
    }

    /// For a kind a plugin runs: its name and the target it acts on.
    pub fn plugin(&self) -> Option<(&'static str, &str)> {
        match self {
            ActionKind::Repair(_) | ActionKind::Notify(_) => None,
            ActionKind::Failover(target) | ActionKind::Backup(target) => {
                Some((self.name(), target))
            }
        }
    }
}

impl Action {
    /// The implicit step `failover:NAME`.
    pub fn failover_one(failover: &str) -> Self {
        Self {
            name: format!("failover:{failover}"),
            kind: ActionKind::Failover(failover.to_owned()),
        }
    }

    /// The implicit step `notify:NAME`.
    pub fn notify_one(notifier: &str) -> Self {
        Self {
            name: format!("notify:{notifier}"),
            kind: ActionKind::Notify(NotifyStep {
                to: vec![notifier.to_owned()],
                min_severity: default_min_severity(),
                after: None,
                severity: None,
            }),
        }
    }

    pub fn repair(&self) -> Option<&RepairStep> {
        match &self.kind {
            ActionKind::Repair(r) => Some(r),
            _ => None,
        }
    }

    pub fn notify(&self) -> Option<&NotifyStep> {
        match &self.kind {
            ActionKind::Notify(n) => Some(n),
            _ => None,
        }
    }

    /// The table that declares this action (what `show-config` prints).
    pub fn table(&self) -> ActionTable {
        let mut t = ActionTable {
            run: None,
            shell: None,
            systemd_restart: None,
            docker_restart: None,
            notify: None,
            failover: None,
            backup: None,
            timeout: default_action_timeout(),
            verify: default_verify(),
            max: None,
            min_severity: default_min_severity(),
            after: None,
            severity: None,
        };
        match &self.kind {
            ActionKind::Repair(r) => {
                match &r.command {
                    RepairCommand::Run(argv) => t.run = Some(argv.clone()),
                    RepairCommand::Shell(line) => t.shell = Some(line.clone()),
                    RepairCommand::SystemdRestart(u) => t.systemd_restart = Some(u.clone()),
                    RepairCommand::DockerRestart(c) => t.docker_restart = Some(c.clone()),
                }
                t.timeout = r.timeout;
                t.verify = r.verify;
                t.max = r.max;
            }
            ActionKind::Notify(n) => {
                t.notify = Some(n.to.clone());
                t.min_severity = n.min_severity;
                t.after = n.after;
                t.severity = n.severity;
            }
            ActionKind::Failover(f) => t.failover = Some(f.clone()),
            ActionKind::Backup(b) => t.backup = Some(b.clone()),
        }
        t
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.table().serialize(s)
    }
}

/// A maintenance window (`[[maintenance]]`): checks in scope keep running
/// and recording, but their incidents wait, repairing and notifying
/// nothing, until the window ends.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// The window's name, for people and `vigie status`.
    pub name: String,
    /// Checks in scope, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Checks in scope, by tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A one-off window's start, RFC 3339 (`"2026-03-01T22:00:00Z"`).
    pub from: Option<String>,
    /// A one-off window's end, RFC 3339.
    pub until: Option<String>,
    /// A recurring window's start, as cron writes it (`"0 3 * * 0"`).
    pub cron: Option<vigie_core::Cron>,
    /// A recurring window's length (`"2h"`).
    pub duration: Option<Duration>,
    /// The time zone of `cron` (IANA name); UTC if absent.
    pub timezone: Option<String>,
}

impl Maintenance {
    pub fn applies_to(&self, check: &Check) -> bool {
        self.checks.contains(&check.name) || check.tags.iter().any(|t| self.tags.contains(t))
    }

    /// Whether the window is open at `now`. Invalid times were refused at
    /// load, so they read as "not in maintenance" here.
    pub fn active_at(&self, now: vigie_core::Timestamp) -> bool {
        let Ok(now) = jiff::Timestamp::from_millisecond(now.millis()) else {
            return false;
        };
        if let (Some(from), Some(until)) = (&self.from, &self.until) {
            return match (
                from.parse::<jiff::Timestamp>(),
                until.parse::<jiff::Timestamp>(),
            ) {
                (Ok(f), Ok(u)) => f <= now && now < u,
                _ => false,
            };
        }
        let (Some(cron), Some(duration)) = (&self.cron, self.duration) else {
            return false;
        };
        let tz = match &self.timezone {
            Some(name) => match jiff::tz::TimeZone::get(name) {
                Ok(tz) => tz,
                Err(_) => return false,
            },
            None => jiff::tz::TimeZone::UTC,
        };
        // Walk back minute by minute over one duration: did the window
        // start at one of them?
        let minutes = duration.std().as_secs().div_ceil(60);
        let start = now.as_second() - now.as_second().rem_euclid(60);
        for m in 0..=minutes {
            let Ok(t) =
                jiff::Timestamp::from_second(start - i64::try_from(m * 60).unwrap_or(i64::MAX))
            else {
                break;
            };
            let local = tz.to_datetime(t);
            let weekday = u32::from(local.weekday().to_sunday_zero_offset().unsigned_abs());
            let fires = cron.matches(
                u32::from(local.minute().unsigned_abs()),
                u32::from(local.hour().unsigned_abs()),
                u32::from(local.day().unsigned_abs()),
                u32::from(local.month().unsigned_abs()),
                weekday,
            );
            if fires {
                let end = t.as_millisecond() + duration.as_millis_i64();
                return now.as_millisecond() < end;
            }
        }
        false
    }
}

/// `flapping = { changes = 6, within = "1h" }`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flapping {
    /// State changes (failing ↔ ok) that make the check flapping.
    pub changes: u32,
    /// The sliding window they are counted in.
    pub within: Duration,
}

impl Default for Flapping {
    fn default() -> Self {
        Self {
            changes: 6,
            within: Duration::from_secs(3600),
        }
    }
}

kinds! {
    /// A DNS provider (`[dns.NAME]`) that failover uses to move records: the
    /// one table of providers.
    #[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(tag = "kind", deny_unknown_fields)]
    pub enum DnsProvider => DnsKind {
        /// RFC 2136 dynamic updates signed with TSIG, sent to the primary.
        Rfc2136 {
            /// `ip:port` of the primary server.
            server: SocketAddr,
            /// The TSIG key's name, as the server knows it.
            key_name: String,
            /// The TSIG algorithm.
            #[serde(default)]
            algorithm: TsigAlgorithmName,
            /// The TSIG key, base64.
            secret: Secret,
        } = "rfc2136",
        /// The OVH API.
        Ovh {
            /// `ovh-eu`, `ovh-ca`, `ovh-us`, or a URL.
            #[serde(default = "ovh_eu")]
            endpoint: String,
            /// The application key (not a secret: it names the application).
            application_key: String,
            /// The application secret.
            application_secret: Secret,
            /// The consumer key, which grants the rights on the zone.
            consumer_key: Secret,
        } = "ovh",
        /// Cloudflare's API v4 with an API token.
        Cloudflare {
            /// An API token with `Zone.DNS` edit rights on the zone.
            token: Secret,
            /// The API's base URL (a test server's, in tests).
            #[serde(default = "cloudflare_api")]
            api: String,
        } = "cloudflare",
        /// Any program: `ARGV get ZONE NAME TYPE` prints the values,
        /// `ARGV set ZONE NAME TYPE TTL VALUE…` changes them.
        Command {
            /// The program and its first arguments (no shell).
            argv: Vec<String>,
            /// How long one call may run.
            #[serde(default = "default_action_timeout")]
            timeout: Duration,
        } = "command",
        /// PowerDNS's HTTP API.
        Powerdns {
            /// The API's base URL, e.g. `"http://127.0.0.1:8081"`.
            url: HttpUrl,
            /// The server id in the API's paths.
            #[serde(default = "localhost")]
            server_id: String,
            /// The API key (`X-API-Key`).
            api_key: Secret,
        } = "powerdns",
    }
}

fn ovh_eu() -> String {
    "ovh-eu".into()
}

fn cloudflare_api() -> String {
    "https://api.cloudflare.com/client/v4".into()
}

fn localhost() -> String {
    "localhost".into()
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithmName {
    #[default]
    HmacSha256,
    HmacSha512,
}

impl DnsProvider {
    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut Secret)> {
        match self {
            DnsProvider::Rfc2136 { secret, .. } => vec![("secret", secret)],
            DnsProvider::Ovh {
                application_secret,
                consumer_key,
                ..
            } => {
                vec![
                    ("application_secret", application_secret),
                    ("consumer_key", consumer_key),
                ]
            }
            DnsProvider::Cloudflare { token, .. } => vec![("token", token)],
            DnsProvider::Powerdns { api_key, .. } => vec![("api_key", api_key)],
            DnsProvider::Command { .. } => Vec::new(),
        }
    }
}

/// A DNS record: the one a failover moves, or dyndns keeps.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// The zone, e.g. `"example.org"`.
    pub zone: String,
    /// The name in the zone (`blog`), `@` for the apex.
    pub name: String,
    /// `"A"` or `"AAAA"`.
    #[serde(rename = "type", default)]
    pub rtype: AddressType,
    /// The record's TTL in seconds: low, so that a switch is seen soon.
    #[serde(default = "sixty")]
    pub ttl: u32,
}

fn sixty() -> u32 {
    60
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum AddressType {
    #[default]
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

fn default_verify_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A record that points at a primary, and at a backup when the primary is
/// down (`[failover.NAME]`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    #[serde(skip)]
    pub name: String,
    /// The record moved: `{ zone = "example.org", name = "blog", type = "A", ttl = 60 }`.
    pub record: RecordConfig,
    /// The primary's addresses, which the record holds while it is up.
    pub primary: Vec<std::net::IpAddr>,
    /// Fixed addresses, or `"public-ip"`: this node's current public
    /// address (read from `ip_url` or `interface`).
    pub backup: Backup,
    /// Where `backup = "public-ip"` reads this node's address: a "what
    /// is my IP" URL answering it as plain text (or `interface`).
    pub ip_url: Option<HttpUrl>,
    /// Or a local interface, where `backup = "public-ip"` reads this
    /// node's address (instead of `ip_url`).
    pub interface: Option<String>,
    /// The `[dns.NAME]` provider that makes the change.
    pub dns: String,
    /// The checks whose failure means "primary down". Each gets the
    /// `failover:NAME` action; checks that name it in their `actions`
    /// count too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// How many watchers (this node and its `[[peer]]`s) must each see
    /// the primary down before the record moves.
    #[serde(default = "one")]
    pub quorum: u32,
    /// Checks of this watcher's own link (a resolver, the gateway, a
    /// well-known site). When every one fails, this watcher abstains
    /// instead of voting "primary down".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<String>,
    /// A replication from primary to backup (`[[sync]]` job name): at
    /// failback the operator is warned that writes made on the backup
    /// must flow back first.
    pub replication: Option<String>,
    /// The zone's authoritative servers (`ip:port`), asked until they
    /// serve the change. Default: the RFC 2136 server, if that is the
    /// provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<SocketAddr>,
    /// How long `verify` may wait for the servers to serve the change.
    #[serde(default = "default_verify_timeout")]
    pub verify_timeout: Duration,
    /// A name in the same zone that `vigie drill failover` moves instead
    /// of the real record.
    pub drill_record: Option<String>,
    /// When vigie points the record back at the primary after a failover.
    #[serde(default)]
    pub failback: Failback,
    /// The least time between the last switch and an automatic failback
    /// (the move to the backup never waits).
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    /// The most DNS changes in 24 hours (providers rate-limit): past it an
    /// automatic switch is refused and paged at disaster severity.
    #[serde(default = "default_budget")]
    pub max_changes_per_day: u32,
}

/// A failover's backup side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backup {
    Fixed(Vec<std::net::IpAddr>),
    /// This node's current public address.
    PublicIp,
}

impl Serialize for Backup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Backup::Fixed(v) => v.serialize(s),
            Backup::PublicIp => s.serialize_str("public-ip"),
        }
    }
}

impl<'de> Deserialize<'de> for Backup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<std::net::IpAddr>),
        }
        let raw = Raw::deserialize(d).map_err(|e: D::Error| {
            if e.to_string().contains("missing") {
                e
            } else {
                serde::de::Error::custom(
                    "backup is a list of addresses ([\"192.0.2.20\"]) or \"public-ip\"",
                )
            }
        })?;
        match raw {
            Raw::Word(w) if w == "public-ip" => Ok(Backup::PublicIp),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "backup is a list of addresses or \"public-ip\", not `{w}`"
            ))),
            Raw::List(v) => Ok(Backup::Fixed(v)),
        }
    }
}

/// Where this node reads its public address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressFrom {
    /// A "what is my IP" URL that answers it as plain text.
    Url(String),
    /// A local interface.
    Interface(String),
}

/// The address source of `ip_url` / `interface` (the loader makes sure
/// exactly one is set where one is needed).
pub fn address_from(ip_url: Option<&HttpUrl>, interface: Option<&String>) -> Option<AddressFrom> {
    match (ip_url, interface) {
        (Some(u), _) => Some(AddressFrom::Url(u.0.to_string())),
        (None, Some(i)) => Some(AddressFrom::Interface(i.clone())),
        (None, None) => None,
    }
}

impl Failover {
    pub fn address_from(&self) -> Option<AddressFrom> {
        address_from(self.ip_url.as_ref(), self.interface.as_ref())
    }
}

impl Dyndns {
    pub fn address_from(&self) -> Option<AddressFrom> {
        address_from(self.ip_url.as_ref(), self.interface.as_ref())
    }
}

fn default_cooldown() -> Duration {
    Duration::from_secs(600)
}

fn default_budget() -> u32 {
    12
}

/// `failback = "manual"` (the default: `vigie failover switch NAME --to
/// primary`) or `failback = { after_healthy = "30m" }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Failback {
    #[default]
    Manual,
    AfterHealthy(Duration),
}

impl Serialize for Failback {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Failback::Manual => s.serialize_str("manual"),
            Failback::AfterHealthy(d) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("after_healthy", d)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Failback {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct After {
            after_healthy: Duration,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            After(After),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "manual" => Ok(Failback::Manual),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "failback is \"manual\" or {{ after_healthy = \"30m\" }}, not `{w}`"
            ))),
            Raw::After(a) => Ok(Failback::AfterHealthy(a.after_healthy)),
        }
    }
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

/// Keep a record pointed at this node's public address (`[dyndns.NAME]`),
/// as NoIP's client does, through the same DNS providers as failover.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dyndns {
    #[serde(skip)]
    pub name: String,
    /// The record kept: `{ zone = "example.org", name = "home", type = "A" }`.
    pub record: RecordConfig,
    /// The `[dns.NAME]` provider.
    pub dns: String,
    /// A "what is my IP" URL that answers the address as plain text (or
    /// `interface`).
    pub ip_url: Option<HttpUrl>,
    /// Or a local interface (its first global address of the record's
    /// family), instead of `ip_url`.
    pub interface: Option<String>,
    /// How often the address is read and the record compared.
    #[serde(default = "five_minutes")]
    pub every: Duration,
}

/// The schemas of the types above that deserialize by hand: what the file
/// accepts, said as the loader's errors say it.
mod schemas {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    use super::{Backup, DnsExpect, Failback, HttpUrl, Pattern};

    impl JsonSchema for Pattern {
        fn schema_name() -> Cow<'static, str> {
            "Regex".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "format": "regex",
                "description": "A regular expression (Rust's `regex` syntax: no look-around or back-references), e.g. \"version: [0-9]+\".",
            })
        }
    }

    impl JsonSchema for HttpUrl {
        fn schema_name() -> Cow<'static, str> {
            "HttpUrl".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "format": "uri",
                "pattern": "^[hH][tT][tT][pP][sS]?://",
                "description": "An `http://` or `https://` URL, written in full (\"https://example.org/health\").",
            })
        }
    }

    impl JsonSchema for DnsExpect {
        fn schema_name() -> Cow<'static, str> {
            "DnsExpect".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "`\"any\"` (an answer is enough) or the exact list of values the answer must hold ([\"192.0.2.10\"]).",
                "anyOf": [
                    { "const": "any" },
                    { "type": "array", "items": { "type": "string" } },
                ],
                "default": "any",
            })
        }
    }

    impl JsonSchema for Backup {
        fn schema_name() -> Cow<'static, str> {
            "FailoverBackup".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "The backup's addresses ([\"192.0.2.20\"]), or `\"public-ip\"`: this node's current public address (read from `ip_url` or `interface`).",
                "anyOf": [
                    { "const": "public-ip" },
                    { "type": "array", "items": { "type": "string", "format": "ip" } },
                ],
            })
        }
    }

    impl JsonSchema for Failback {
        fn schema_name() -> Cow<'static, str> {
            "Failback".into()
        }

        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            let duration = generator.subschema_for::<vigie_core::Duration>();
            json_schema!({
                "description": "`\"manual\"` (`vigie failover switch NAME --to primary`), or `{ after_healthy = \"30m\" }`: back to the primary once its checks have passed that long.",
                "anyOf": [
                    { "const": "manual" },
                    {
                        "type": "object",
                        "properties": { "after_healthy": duration },
                        "required": ["after_healthy"],
                        "additionalProperties": false,
                    },
                ],
            })
        }
    }
}
