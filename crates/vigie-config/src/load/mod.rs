//! Load → resolve → validate. Every problem in every file is collected in
//! one pass; the daemon starts only from a config with none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use vigie_core::{Duration, Severity};

use crate::diag::{Diagnostic, Diagnostics, Level, Location, Source};
use crate::model::{
    ActionTable, Config, DEFAULT_LISTEN, DnsProvider, Dyndns, EngineConfig, Failover, Flapping,
    Maintenance, Node, NotifierKind, Peer, Probe, Server, ServerTls, StoreConfig, SyncJob,
    probe_kinds,
};
use crate::secret::{Secret, SecretSource};

mod actions;
mod backup;
mod checks;
mod failover;
mod notify;
mod parse;
mod sync;

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

const SECTIONS: [&str; 16] = [
    "include",
    "node",
    "server",
    "store",
    "engine",
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
    "check",
];
const MAIN_ONLY: [&str; 6] = ["include", "node", "server", "store", "engine", "defaults"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<Secret>>,
    tls: Option<Spanned<ServerTls>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    dir: Option<PathBuf>,
    retention: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    concurrency: Option<Spanned<usize>>,
    notify_attempts: Option<Spanned<u32>>,
    notify_backoff: Option<Duration>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    every: Option<Duration>,
    timeout: Option<Duration>,
    retry_every: Option<Duration>,
    fail_after: Option<u32>,
    recover_after: Option<u32>,
    severity: Option<Severity>,
}

/// `[[check]]` as written: its settings, then one optional key per check
/// kind (built from the table `probe_kinds!`).
macro_rules! raw_check {
    ($( $Variant:ident($Settings:ident) = $name:literal, )+) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(non_snake_case)]
        struct RawCheck {
            name: Spanned<String>,
            description: Option<String>,
            every: Option<Spanned<Duration>>,
            timeout: Option<Spanned<Duration>>,
            retry_every: Option<Spanned<Duration>>,
            fail_after: Option<Spanned<u32>>,
            recover_after: Option<Spanned<u32>>,
            severity: Option<Severity>,
            #[serde(default)]
            depends_on: Vec<Spanned<String>>,
            #[serde(default)]
            tags: Vec<String>,
            #[serde(default)]
            actions: Vec<Spanned<String>>,
            /// `false` turns flap detection off; a table sets its rule.
            flapping: Option<Spanned<FlappingSetting>>,
            $(
                #[serde(rename = $name)]
                $Variant: Option<Spanned<crate::model::$Settings>>,
            )+
        }

        impl RawCheck {
            /// Every probe the check sets, with its span, in table order.
            fn take_probes(&mut self) -> Vec<(Probe, Range<usize>)> {
                let mut found = Vec::new();
                $(
                    if let Some(s) = self.$Variant.take() {
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

#[derive(Deserialize)]
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
    backups: Vec<(usize, backup::RawBackup)>,
    /// Where each failover was declared, for errors found after parsing.
    failover_places: BTreeMap<String, (usize, Range<usize>)>,
    /// Every `actions = [...]` reference of a check, to check once all
    /// actions and notifiers are known.
    action_refs: Vec<(usize, String, Spanned<String>)>,
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
            retention: store_raw
                .retention
                .unwrap_or(Duration::from_secs(7 * 86_400)),
        };
        let engine = {
            let (src, raw) = self.raw.engine.take().unwrap_or_default();
            let mut concurrency = raw.concurrency.as_ref().map_or(128, |c| *c.get_ref());
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
            let mut notify_attempts = raw.notify_attempts.as_ref().map_or(4, |c| *c.get_ref());
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
                notify_backoff: raw.notify_backoff.unwrap_or(Duration::from_secs(2)),
            }
        };
        let mut checks = self.resolve_checks(env);
        let notifiers = self.resolve_notifiers(env);
        let peers = self.resolve_peers(env, &node.name);
        let syncs = self.resolve_syncs();
        self.sync_checks(&syncs, &mut checks);
        let backups = self.resolve_backups(env);
        self.backup_checks(&backups, &mut checks);
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
        if self.diags.has_errors() {
            return None;
        }
        Some(Config {
            source: path.to_owned(),
            node,
            server: server?,
            store,
            engine,
            notifiers,
            actions,
            maintenance,
            dns,
            failovers,
            dyndns,
            peers,
            syncs,
            backups,
            checks,
        })
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
        Some(Server { listen, token, tls })
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
