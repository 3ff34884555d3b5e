//! Load → resolve → validate. Every problem in every file is collected in
//! one pass; the daemon starts only from a config with none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use vigie_core::{ByteSize, Duration, Severity};

use crate::diag::{Diagnostic, Diagnostics, Level, Location, Source};
use crate::model::{
    ActionTable, Config, DEFAULT_LISTEN, DnsProvider, Dyndns, EngineConfig, Failover, Flapping,
    Maintenance, Node, NotifierKind, PasswordHash, Peer, Probe, SeriesConfig, SeriesRetention,
    Server, ServerTls, StatusPage, StoreConfig, SyncJob, probe_kinds,
};
use crate::secret::{Secret, SecretSource};

mod actions;
mod backup;
mod checks;
mod converge;
mod failover;
mod notify;
mod parse;
mod remote_write;
mod schema;
mod status;
mod sync;

pub(crate) use backup::DEFAULT_CHECK_READ_DATA;
pub use backup::read_data_subset;
#[cfg(test)]
pub(crate) use converge::git_url;
pub use schema::schema;

/// A configuration that loaded, with the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Where secrets named `{ env = … }` are looked up; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Whether loading reads the secrets' values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Secrets {
    /// Read every `{ env }` and `{ file }` secret (what a daemon needs).
    #[default]
    Resolve,
    /// Check every secret's shape but read none (`vigie validate
    /// --no-environment`: a config repository checked in CI without its
    /// secrets). The secrets' values are left empty: such a config is
    /// for checking, never for running.
    Skip,
}

/// Load the config file at `path`, its includes and its secrets.
pub fn load_file(path: &Path) -> Result<Loaded, Diagnostics> {
    load_file_with(path, Secrets::Resolve)
}

/// [`load_file`], reading the secrets or not.
pub fn load_file_with(path: &Path, secrets: Secrets) -> Result<Loaded, Diagnostics> {
    let text = fs_err::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "create it (see examples/quickstart.toml) or pass another file with -c FILE"
        } else {
            "check the file's permissions"
        };
        one_error(format!("cannot read the configuration: {e}"), hint)
    })?;
    load_str_with(text.as_str(), path, &|k| std::env::var(k).ok(), secrets)
}

/// Load a config from text; `path` names it in messages and anchors
/// relative paths (includes, secret files).
pub fn load_str(text: &str, path: &Path, env: EnvLookup<'_>) -> Result<Loaded, Diagnostics> {
    load_str_with(text, path, env, Secrets::Resolve)
}

/// [`load_str`], reading the secrets or not.
pub fn load_str_with(
    text: &str,
    path: &Path,
    env: EnvLookup<'_>,
    secrets: Secrets,
) -> Result<Loaded, Diagnostics> {
    let mut loader = Loader {
        sources: Vec::new(),
        diags: Diagnostics::default(),
        raw: Raw::default(),
        base: path.parent().map(Path::to_owned).unwrap_or_default(),
        secrets,
        series_keep: DEFAULT_SERIES_HOUR,
    };
    loader.parse(text.to_owned(), path, true);
    if let Some((dir, loc)) = loader.raw.include.take() {
        loader.include(&dir, &loc);
    }
    let config = loader.resolve(path, env);
    // Report in file order, whatever phase found each problem.
    let order = |d: &Diagnostic| d.location.as_ref().map(|l| (l.file.clone(), l.line, l.col));
    loader.diags.errors.sort_by_key(order);
    loader.diags.warnings.sort_by_key(order);
    if loader.diags.has_errors() {
        return Err(loader.diags);
    }
    Ok(Loaded {
        config: config.expect("no errors means a config"),
        warnings: loader.diags.warnings,
    })
}

fn one_error(message: String, hint: &str) -> Diagnostics {
    Diagnostics {
        errors: vec![Diagnostic {
            level: Level::Error,
            location: None,
            key: String::new(),
            message,
            hint: Some(hint.to_owned()),
        }],
        warnings: Vec::new(),
    }
}

const SECTIONS: [&str; 20] = [
    "include",
    "node",
    "server",
    "store",
    "engine",
    "series",
    "defaults",
    "notify",
    "action",
    "maintenance",
    "dns",
    "failover",
    "dyndns",
    "peer",
    "sync",
    "backup",
    "status_page",
    "converge",
    "remote_write",
    "check",
];
const MAIN_ONLY: [&str; 7] = [
    "include", "node", "server", "store", "engine", "series", "defaults",
];

/// The defaults of the settings the loader fills in (the raw types
/// hold `Option`s): the resolver applies them, the schema and the
/// reference show them.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_CONCURRENCY: usize = 128;
const DEFAULT_NOTIFY_ATTEMPTS: u32 = 4;
const DEFAULT_NOTIFY_BACKOFF: Duration = Duration::from_secs(2);
const DEFAULT_SERIES_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_SERIES_RAW: Duration = Duration::from_secs(2 * 86_400);
const DEFAULT_SERIES_MINUTE: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_SERIES_HOUR: Duration = Duration::from_secs(2 * 365 * 86_400);
const DEFAULT_SERIES_MAX_SIZE: ByteSize = ByteSize(512 << 20);
/// `[series] max_size` is at least this (a few days of a small host).
const MIN_SERIES_MAX_SIZE: ByteSize = ByteSize(1 << 20);
const DEFAULT_EVERY: Duration = Duration::from_secs(30);
/// A check's `timeout` is its `every`, at most this.
const DEFAULT_TIMEOUT_CAP: Duration = Duration::from_secs(10);
const DEFAULT_THRESHOLD: u32 = 1;

/// This host (`[node]`).
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Node")]
struct RawNode {
    /// This node's name, as its peers and notifications call it. Default:
    /// the host name.
    name: Option<String>,
}

/// vigie's own HTTP server (`[server]`): the API, heartbeat pings,
/// `/metrics`, the peers' votes.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Server")]
struct RawServer {
    /// The address and port it listens on, `"127.0.0.1:9470"` or
    /// `"[::1]:9470"`. Beyond loopback it needs `token`.
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_LISTEN))]
    listen: Option<Spanned<String>>,
    /// The API's bearer token (`Authorization: Bearer …`); required to
    /// listen beyond loopback.
    #[schemars(with = "Option<Secret>")]
    token: Option<Spanned<Secret>>,
    /// Serve HTTPS: `tls = { cert = "cert.pem", key = "key.pem" }`
    /// (needed to serve peers beyond loopback).
    #[schemars(with = "Option<ServerTls>")]
    tls: Option<Spanned<ServerTls>>,
    /// Who may log in to the dashboard, and then act from it
    /// (acknowledge an incident): `users = { alice = "$argon2id$v=19$…" }`,
    /// each an argon2id hash that `vigie password-hash` prints. With a
    /// `token`, the dashboard is closed to anyone not logged in.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    users: Option<Spanned<std::collections::BTreeMap<String, String>>>,
}

/// The embedded store (`[store]`): one SQLite file.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Store")]
struct RawStore {
    /// The state directory (relative to the config file). Default:
    /// `/var/lib/vigie` as root, `./.vigie` otherwise; `--state-dir`
    /// overrides it.
    dir: Option<PathBuf>,
    /// How long check results are kept. A result is kept when the run
    /// failed or its outcome or message changed (but for its numbers:
    /// every run is a sample of the check's series, kept by `[series]
    /// retention`).
    #[schemars(extend("default" = DEFAULT_RETENTION))]
    retention: Option<Duration>,
}

/// How the engine runs checks and delivers notifications (`[engine]`).
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Engine")]
struct RawEngine {
    /// At most this many probes run at once (at least 1).
    #[schemars(with = "Option<usize>", range(min = 1), extend("default" = DEFAULT_CONCURRENCY))]
    concurrency: Option<Spanned<usize>>,
    /// Attempts to deliver one notification (network errors, 429, 5xx),
    /// at least 1.
    #[schemars(with = "Option<u32>", range(min = 1), extend("default" = DEFAULT_NOTIFY_ATTEMPTS))]
    notify_attempts: Option<Spanned<u32>>,
    /// The wait before the second attempt; doubled after each.
    #[schemars(extend("default" = DEFAULT_NOTIFY_BACKOFF))]
    notify_backoff: Option<Duration>,
}

/// The time series (`[series]`): every check's numbers (each metric, the
/// run's duration, up and failing as 1 or 0) and the host's metrics
/// (those `/metrics` serves), kept in the store's file, rolled up to one
/// minute and one hour, bounded by age and size.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Series")]
struct RawSeries {
    /// How often the host's metrics are sampled (at least 1s).
    #[schemars(with = "Option<Duration>", extend("default" = DEFAULT_SERIES_INTERVAL))]
    interval: Option<Spanned<Duration>>,
    /// How long each resolution is kept: `retention = { raw = "2d",
    /// minute = "30d", hour = "104w" }` (each at least as long as the
    /// finer one).
    #[schemars(with = "Option<RawSeriesRetention>")]
    retention: Option<Spanned<RawSeriesRetention>>,
    /// Above this size of chunks, the oldest are deleted, raw first (at
    /// least 1MiB).
    #[schemars(with = "Option<ByteSize>", extend("default" = DEFAULT_SERIES_MAX_SIZE))]
    max_size: Option<Spanned<ByteSize>>,
}

/// How long each resolution of the series is kept.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SeriesRetention")]
struct RawSeriesRetention {
    /// Raw samples.
    #[schemars(extend("default" = DEFAULT_SERIES_RAW))]
    raw: Option<Duration>,
    /// One-minute roll-ups (min, max, mean, last).
    #[schemars(extend("default" = DEFAULT_SERIES_MINUTE))]
    minute: Option<Duration>,
    /// One-hour roll-ups.
    #[schemars(extend("default" = DEFAULT_SERIES_HOUR))]
    hour: Option<Duration>,
}

/// Defaults for every `[[check]]` that does not set the key itself
/// (`[defaults]`).
#[derive(Deserialize, Default, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
struct RawDefaults {
    /// How often checks run.
    #[schemars(extend("default" = DEFAULT_EVERY))]
    every: Option<Duration>,
    /// How long a run may take. Default: the check's `every`, at most 10s.
    timeout: Option<Duration>,
    /// How soon a failed check runs again until `fail_after` confirms it.
    /// Default: at `every`.
    retry_every: Option<Duration>,
    /// Consecutive failures before a check is failing.
    #[schemars(range(min = 1), extend("default" = DEFAULT_THRESHOLD))]
    fail_after: Option<u32>,
    /// Consecutive successes before a failing check has recovered.
    #[schemars(range(min = 1), extend("default" = DEFAULT_THRESHOLD))]
    recover_after: Option<u32>,
    /// The severity of checks' incidents.
    #[schemars(extend("default" = Severity::default()))]
    severity: Option<Severity>,
}

/// `[[check]]` as written: its settings, then one optional key per check
/// kind (built from the table `probe_kinds!`).
macro_rules! raw_check {
    ($( $Variant:ident($Settings:ident) = $name:literal, )+) => {
        /// A check (`[[check]]`): its name, when it runs, how it is
        /// judged, what its incidents do, and its probe: exactly one of
        /// the check kinds' keys (`http = { url = "https://example.org/" }`).
        #[derive(Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "Check", transform = one_kind)]
        #[allow(non_snake_case)]
        struct RawCheck {
            /// The check's name: letters, digits, `-`, `_` and `.`, at most
            /// 64, starting with a letter or digit (it appears in URLs and
            /// metric labels).
            #[schemars(with = "String")]
            name: Spanned<String>,
            /// What the check watches, for people.
            description: Option<String>,
            /// How often it runs (at least 100ms). Default: `[defaults]
            /// every`, else 30s.
            #[schemars(with = "Option<Duration>", extend("default" = DEFAULT_EVERY))]
            every: Option<Spanned<Duration>>,
            /// How long one run may take (at most `every`). Default:
            /// `[defaults] timeout`, else `every`, at most 10s.
            #[schemars(with = "Option<Duration>")]
            timeout: Option<Spanned<Duration>>,
            /// Once the check has failed, how soon it runs again until
            /// `fail_after` confirms the failure or it recovers (Uptime
            /// Kuma's retry interval; at most `every`). Default: at `every`.
            #[schemars(with = "Option<Duration>")]
            retry_every: Option<Spanned<Duration>>,
            /// Consecutive failures before the check is failing (and an
            /// incident opens).
            #[schemars(with = "Option<u32>", range(min = 1), extend("default" = DEFAULT_THRESHOLD))]
            fail_after: Option<Spanned<u32>>,
            /// Consecutive successes before a failing check has recovered.
            #[schemars(with = "Option<u32>", range(min = 1), extend("default" = DEFAULT_THRESHOLD))]
            recover_after: Option<Spanned<u32>>,
            /// The severity of its incidents.
            #[schemars(extend("default" = Severity::default()))]
            severity: Option<Severity>,
            /// Checks this one depends on, by name: while one of them is
            /// failing, this check's incidents wait (a parent down silences
            /// its children).
            #[serde(default)]
            #[schemars(with = "Vec<String>")]
            depends_on: Vec<Spanned<String>>,
            /// Labels, for `[[maintenance]] tags` and for people.
            #[serde(default)]
            tags: Vec<String>,
            /// What an incident of this check runs, in order: `[action.NAME]`
            /// names, `notify:NOTIFIER` or `failover:NAME`, e.g.
            /// `["restart-web", "notify:phone"]`.
            #[serde(default)]
            #[schemars(with = "Vec<String>")]
            actions: Vec<Spanned<String>>,
            /// Flap detection, on by default (6 changes within 1h hold the
            /// check's notifications until it settles): `false` turns it
            /// off, `{ changes = 6, within = "1h" }` sets its rule.
            #[schemars(with = "Option<FlappingSetting>")]
            flapping: Option<Spanned<FlappingSetting>>,
            $(
                #[serde(rename = $name, default)]
                $Variant: KindKey<crate::model::$Settings>,
            )+
        }
        /// The schema says what the loader does: a check sets exactly one
        /// kind's key.
        fn one_kind(schema: &mut schemars::Schema) {
            let alts: Vec<serde_json::Value> = [$( $name, )+]
                .iter()
                .map(|name| serde_json::json!({ "required": [name] }))
                .collect();
            schema.insert("oneOf".into(), alts.into());
        }

        impl RawCheck {
            /// Every probe the check sets, with its span, in table order.
            fn take_probes(&mut self) -> Vec<(Probe, Range<usize>)> {
                let mut found = Vec::new();
                $(
                    if let Some(s) = self.$Variant.0.take() {
                        let span = s.span();
                        found.push((Probe::$Variant(s.into_inner()), span));
                    }
                )+
                found
            }
        }
    };
}
probe_kinds!(raw_check);

/// A check kind's key in `[[check]]`, with its place in the file. Its
/// schema is its settings' (`Spanned` has none, and a macro cannot write
/// the `with = "…"` string of each kind).
#[derive(Deserialize)]
#[serde(transparent)]
struct KindKey<T>(Option<Spanned<T>>);

impl<T> Default for KindKey<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for KindKey<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// `false`, or the rule `{ changes = 6, within = "1h" }`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum FlappingSetting {
    Enabled(bool),
    Rule(Flapping),
}

/// One `[[check]]` as read, with where it came from.
struct CheckEntry {
    src: usize,
    table: Range<usize>,
    raw: RawCheck,
}

/// One `[notify.NAME]` as read.
struct NotifierEntry {
    src: usize,
    name: Spanned<String>,
    table: Range<usize>,
    kind: NotifierKind,
}

#[derive(Default)]
struct Raw {
    include: Option<(PathBuf, Location)>,
    node: Option<RawNode>,
    server: Option<(usize, RawServer)>,
    store: Option<RawStore>,
    engine: Option<(usize, RawEngine)>,
    series: Option<(usize, RawSeries)>,
    defaults: Option<RawDefaults>,
    checks: Vec<CheckEntry>,
    notifiers: Vec<NotifierEntry>,
    actions: Vec<(usize, Spanned<String>, Range<usize>, ActionTable)>,
    maintenance: Vec<(usize, Range<usize>, Maintenance)>,
    dns: Vec<(usize, Spanned<String>, Range<usize>, DnsProvider)>,
    failovers: Vec<(usize, Spanned<String>, Range<usize>, Failover)>,
    dyndns: Vec<(usize, Spanned<String>, Range<usize>, Dyndns)>,
    peers: Vec<(usize, Range<usize>, Peer)>,
    syncs: Vec<(usize, Range<usize>, SyncJob)>,
    converges: Vec<(usize, Range<usize>, crate::model::ConvergeJob)>,
    remote_writes: Vec<(usize, Range<usize>, remote_write::RawRemoteWrite)>,
    backups: Vec<(usize, backup::RawBackup)>,
    status_pages: Vec<(usize, Spanned<String>, Range<usize>, StatusPage)>,
    /// Where each failover was declared, for errors found after parsing.
    failover_places: BTreeMap<String, (usize, Range<usize>)>,
    /// Every `actions = [...]` reference of a check, to check once all
    /// actions and notifiers are known.
    action_refs: Vec<(usize, String, Spanned<String>)>,
    /// The checks that rules read (`vigie_check_*{check="NAME"}`): the
    /// source, the rule's span and key, the name; checked once every
    /// check is known.
    rule_refs: Vec<(usize, Range<usize>, String, String)>,
    /// Names of checks that failed to parse, so that checks depending on
    /// them do not get a second, misleading error.
    broken_names: Vec<(String, Location)>,
}

struct Loader {
    sources: Vec<Source>,
    diags: Diagnostics,
    raw: Raw,
    base: PathBuf,
    secrets: Secrets,
    /// How far back the series store keeps anything (`[series]
    /// retention.hour`): a rule's window may not be longer.
    series_keep: Duration,
}

impl Loader {
    fn loc(&self, src: usize, span: Option<Range<usize>>) -> Location {
        self.sources[src].locate(span)
    }

    fn error(
        &mut self,
        src: usize,
        span: Option<Range<usize>>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.report(Level::Error, src, span, key, message, hint);
    }

    /// A diagnostic at `span` of source `src` (warnings are few: they
    /// call this directly).
    fn report(
        &mut self,
        level: Level,
        src: usize,
        span: Option<Range<usize>>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        let location = Some(self.loc(src, span));
        self.diags.push(Diagnostic {
            level,
            location,
            key: key.to_owned(),
            message,
            hint,
        });
    }

    fn resolve_secret(
        &mut self,
        src: usize,
        span: Range<usize>,
        key: &str,
        mut secret: Secret,
        env: EnvLookup<'_>,
    ) -> Option<Secret> {
        if self.secrets == Secrets::Skip {
            return Some(secret);
        }
        let value = match &secret.source {
            SecretSource::Env(name) => {
                crate::secret::remember_env(name);
                match env(name) {
                    Some(v) if !v.is_empty() => v,
                    _ => {
                        self.error(
                        src,
                        Some(span),
                        key,
                        format!("environment variable `{name}` is not set"),
                        Some(format!("export {name}=… before starting vigie, or use {{ file = \"/path\" }}")),
                    );
                        return None;
                    }
                }
            }
            SecretSource::File(path) => {
                let path = self.base.join(path);
                match fs_err::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => v.trim_end_matches(['\n', '\r']).to_owned(),
                    Ok(_) => {
                        self.error(
                            src,
                            Some(span),
                            key,
                            format!("secret file {} is empty", path.display()),
                            None,
                        );
                        return None;
                    }
                    Err(e) => {
                        self.error(
                            src,
                            Some(span),
                            key,
                            format!("cannot read the secret: {e}"),
                            Some("check that the file exists and that vigie may read it".into()),
                        );
                        return None;
                    }
                }
            }
        };
        secret.set_value(value);
        Some(secret)
    }

    fn resolve(&mut self, path: &Path, env: EnvLookup<'_>) -> Option<Config> {
        let node = Node {
            name: self
                .raw
                .node
                .take()
                .and_then(|n| n.name)
                .unwrap_or_else(|| {
                    rustix::system::uname()
                        .nodename()
                        .to_string_lossy()
                        .into_owned()
                }),
        };
        let server = self.resolve_server(env);
        let store_raw = self.raw.store.take().unwrap_or_default();
        let store = StoreConfig {
            dir: store_raw.dir.map(|d| self.base.join(d)),
            retention: store_raw.retention.unwrap_or(DEFAULT_RETENTION),
        };
        let engine = self.resolve_engine();
        let series = self.resolve_series();
        self.series_keep = series.retention.hour.max(series.retention.minute);
        let mut checks = self.resolve_checks(env);
        let notifiers = self.resolve_notifiers(env);
        let peers = self.resolve_peers(env, &node.name);
        let syncs = self.resolve_syncs();
        self.sync_checks(&syncs, &mut checks);
        let backups = self.resolve_backups(env);
        self.backup_checks(&backups, &mut checks);
        let converges = self.resolve_converges();
        self.converge_checks(&converges, &mut checks);
        self.check_rule_refs(&checks);
        // Every declared failover name, broken ones too: a check naming
        // one gets no second, misleading error.
        let failover_names: Vec<String> = self
            .raw
            .failovers
            .iter()
            .map(|(_, n, _, _)| n.get_ref().clone())
            .collect();
        let (dns, mut failovers) = self.resolve_failover(env);
        self.link_failover_checks(&mut failovers, &mut checks, peers.len());
        let dyndns = self.resolve_dyndns(&dns);
        let backup_names: Vec<String> = backups.iter().map(|b| b.name.clone()).collect();
        let actions = self.resolve_actions(&notifiers, &failover_names, &backup_names);
        self.unreachable_notifiers(&checks, &actions);
        let maintenance = self.resolve_maintenance(&checks);
        let status_pages = self.resolve_status_pages(&checks);
        let remote_writes = self.resolve_remote_writes(env, &node.name);
        if self.diags.has_errors() {
            return None;
        }
        Some(Config {
            source: path.to_owned(),
            node,
            server: server?,
            store,
            engine,
            series,
            notifiers,
            actions,
            maintenance,
            dns,
            failovers,
            dyndns,
            peers,
            syncs,
            backups,
            status_pages,
            converges,
            remote_writes,
            checks,
        })
    }

    /// `[engine]`, each number at least 1.
    fn resolve_engine(&mut self) -> EngineConfig {
        let (src, raw) = self.raw.engine.take().unwrap_or_default();
        let mut concurrency = raw
            .concurrency
            .as_ref()
            .map_or(DEFAULT_CONCURRENCY, |c| *c.get_ref());
        if concurrency == 0 {
            let span = raw.concurrency.as_ref().map(Spanned::span);
            self.error(
                src,
                span,
                "engine.concurrency",
                "must be at least 1".into(),
                None,
            );
            concurrency = 1;
        }
        let mut notify_attempts = raw
            .notify_attempts
            .as_ref()
            .map_or(DEFAULT_NOTIFY_ATTEMPTS, |c| *c.get_ref());
        if notify_attempts == 0 {
            let span = raw.notify_attempts.as_ref().map(Spanned::span);
            self.error(
                src,
                span,
                "engine.notify_attempts",
                "must be at least 1".into(),
                None,
            );
            notify_attempts = 1;
        }
        EngineConfig {
            concurrency,
            notify_attempts,
            notify_backoff: raw.notify_backoff.unwrap_or(DEFAULT_NOTIFY_BACKOFF),
        }
    }

    /// `[series]`: an interval of at least a second, retentions that do
    /// not shrink from raw to hour, a size bound of at least 1MiB.
    fn resolve_series(&mut self) -> SeriesConfig {
        let (src, raw) = self.raw.series.take().unwrap_or_default();
        let mut interval = raw
            .interval
            .as_ref()
            .map_or(DEFAULT_SERIES_INTERVAL, |i| *i.get_ref());
        if interval.std() < std::time::Duration::from_secs(1) {
            let span = raw.interval.as_ref().map(Spanned::span);
            self.error(
                src,
                span,
                "series.interval",
                format!("`{interval}` is below a second"),
                Some("write e.g. \"15s\" (node_exporter's usual scrape interval)".into()),
            );
            interval = DEFAULT_SERIES_INTERVAL;
        }
        let span = raw.retention.as_ref().map(Spanned::span);
        let r = raw.retention.map(Spanned::into_inner).unwrap_or_default();
        let retention = SeriesRetention {
            raw: r.raw.unwrap_or(DEFAULT_SERIES_RAW),
            minute: r.minute.unwrap_or(DEFAULT_SERIES_MINUTE),
            hour: r.hour.unwrap_or(DEFAULT_SERIES_HOUR),
        };
        let levels = [
            ("raw", retention.raw),
            ("minute", retention.minute),
            ("hour", retention.hour),
        ];
        for (name, d) in levels {
            if d.std().is_zero() {
                self.error(
                    src,
                    span.clone(),
                    &format!("series.retention.{name}"),
                    "must be longer than 0s".into(),
                    Some(format!("keep it, e.g. {name} = \"7d\"")),
                );
            }
        }
        for pair in levels.windows(2) {
            let ((fine, f), (coarse, c)) = (pair[0], pair[1]);
            if c.std() < f.std() {
                self.error(
                    src,
                    span.clone(),
                    &format!("series.retention.{coarse}"),
                    format!("`{c}` is shorter than `{fine} = \"{f}\"`"),
                    Some(format!(
                        "a coarser resolution is what is left once the finer expires: keep {coarse} at least {f}"
                    )),
                );
            }
        }
        let mut max_size = raw
            .max_size
            .as_ref()
            .map_or(DEFAULT_SERIES_MAX_SIZE, |m| *m.get_ref());
        if max_size.0 < MIN_SERIES_MAX_SIZE.0 {
            let span = raw.max_size.as_ref().map(Spanned::span);
            self.error(
                src,
                span,
                "series.max_size",
                format!("`{max_size}` is below 1MiB"),
                Some("write e.g. \"512MiB\"".into()),
            );
            max_size = DEFAULT_SERIES_MAX_SIZE;
        }
        SeriesConfig {
            interval,
            retention,
            max_size,
        }
    }

    fn resolve_server(&mut self, env: EnvLookup<'_>) -> Option<Server> {
        let (src, raw) = self.raw.server.take().unwrap_or_default();
        let listen: SocketAddr = match &raw.listen {
            None => DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            Some(l) => {
                if let Ok(a) = l.get_ref().parse() {
                    a
                } else {
                    {
                        self.error(
                            src,
                            Some(l.span()),
                            "server.listen",
                            format!("`{}` is not an address and port", l.get_ref()),
                            Some(format!("write e.g. \"{DEFAULT_LISTEN}\" or \"[::1]:9470\"")),
                        );
                        return None;
                    }
                }
            }
        };
        let token = match raw.token {
            Some(t) => {
                let span = t.span();
                Some(self.resolve_secret(src, span, "server.token", t.into_inner(), env)?)
            }
            None => None,
        };
        if !listen.ip().is_loopback() && token.is_none() {
            let span = raw.listen.as_ref().map(Spanned::span);
            self.error(
                src,
                span,
                "server.listen",
                format!("listening on {listen}, beyond loopback, needs an API token"),
                Some(
                    "add token = { env = \"VIGIE_TOKEN\" } under [server], or listen on 127.0.0.1"
                        .into(),
                ),
            );
        }
        let tls = raw.tls.map(|t| {
            let span = t.span();
            let t = t.into_inner();
            let t = ServerTls {
                cert: self.base.join(t.cert),
                key: self.base.join(t.key),
            };
            for f in [&t.cert, &t.key] {
                if let Err(e) = std::fs::metadata(f) {
                    self.error(
                        src,
                        Some(span.clone()),
                        "server.tls",
                        format!("cannot read {}: {e}", f.display()),
                        Some("tls = { cert = \"cert.pem\", key = \"key.pem\" }, PEM files".into()),
                    );
                }
            }
            t
        });
        let users = self.resolve_users(src, raw.users);
        Some(Server {
            listen,
            token,
            tls,
            users,
        })
    }

    /// `[server] users`: each name plain, each hash an argon2id PHC
    /// string with parameters argon2 accepts.
    fn resolve_users(
        &mut self,
        src: usize,
        users: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    ) -> std::collections::BTreeMap<String, PasswordHash> {
        let Some(users) = users else {
            return std::collections::BTreeMap::new();
        };
        let span = users.span();
        let mut out = std::collections::BTreeMap::new();
        for (name, hash) in users.into_inner() {
            let at = format!("server.users.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                self.error(
                    src,
                    Some(span.clone()),
                    &at,
                    format!("`{name}` is not a user name vigie takes"),
                    Some("use letters, digits and - _ . @ (at most 64)".into()),
                );
                continue;
            }
            match PasswordHash::parse(&hash) {
                Ok(h) => {
                    out.insert(name, h);
                }
                Err(e) => self.error(
                    src,
                    Some(span.clone()),
                    &at,
                    format!("not an argon2id password hash: {e}"),
                    Some(
                        "paste what `vigie password-hash` prints (it starts with $argon2id$)"
                            .into(),
                    ),
                ),
            }
        }
        out
    }
}

/// Split `host:port` (or `[v6]:port`), checking the port.
pub fn split_host_port(address: &str) -> Result<(&str, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}` has no port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{port}` is not a port number (1 to 65535)"))?;
    Ok((host, port))
}
