//! Load → resolve → validate. Every problem in every file is collected in
//! one pass; the daemon starts only from a config with none.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use vigie_core::{Duration, Severity};

use crate::diag::{Diagnostic, Diagnostics, Level, Location, Source, did_you_mean};
use crate::model::{
    Action, ActionTable, AddressType, Backup, Check, CommandProbe, Config, DEFAULT_LISTEN,
    DiskProbe, DnsProbe, DnsProvider, Dyndns, EngineConfig, Failover, FileAgeProbe, Flapping,
    HeartbeatProbe, HttpProbe, LoadProbe, Maintenance, MemoryProbe, Node, Notifier, NotifierKind,
    Peer, PingProbe, Probe, ProcessProbe, Server, ServerTls, StoreConfig, SyncJob, SyncProbe,
    SystemdProbe, TcpProbe, TlsProbe,
};
use crate::secret::{Secret, SecretSource};

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

const SECTIONS: [&str; 15] = [
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
    http: Option<Spanned<HttpProbe>>,
    tcp: Option<Spanned<TcpProbe>>,
    tls: Option<Spanned<TlsProbe>>,
    dns: Option<Spanned<DnsProbe>>,
    ping: Option<Spanned<PingProbe>>,
    command: Option<Spanned<CommandProbe>>,
    systemd: Option<Spanned<SystemdProbe>>,
    process: Option<Spanned<ProcessProbe>>,
    disk: Option<Spanned<DiskProbe>>,
    memory: Option<Spanned<MemoryProbe>>,
    load: Option<Spanned<LoadProbe>>,
    file_age: Option<Spanned<FileAgeProbe>>,
    heartbeat: Option<Spanned<HeartbeatProbe>>,
    sync: Option<Spanned<SyncProbe>>,
}

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

    fn warning(
        &mut self,
        src: usize,
        span: Option<Range<usize>>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.report(Level::Warning, src, span, key, message, hint);
    }

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

    fn parse(&mut self, text: String, path: &Path, is_main: bool) {
        let src = self.sources.len();
        self.sources.push(Source::new(path, text));
        // The parsed table borrows the text; a clone keeps `self` free.
        let text = self.sources[src].text.clone();
        let (root, errors) = DeTable::parse_recoverable(&text);
        if !errors.is_empty() {
            for e in errors {
                self.error(
                    src,
                    e.span(),
                    "",
                    format!("invalid TOML: {}", e.message().trim()),
                    None,
                );
            }
            return;
        }
        for (key, value) in root.into_inner() {
            let name = key.get_ref().as_ref();
            let key_span = key.span();
            if !SECTIONS.contains(&name) {
                let hint = did_you_mean(name, SECTIONS).map_or_else(
                    || format!("known sections: {}", SECTIONS.join(", ")),
                    |s| format!("did you mean `{s}`?"),
                );
                self.error(
                    src,
                    Some(key_span),
                    name,
                    format!("unknown key `{name}`"),
                    Some(hint),
                );
                continue;
            }
            if !is_main && MAIN_ONLY.contains(&name) {
                self.error(
                    src,
                    Some(key_span),
                    name,
                    format!("`{name}` may only be set in the main configuration file"),
                    Some("move it to the file that has the `include`".into()),
                );
                continue;
            }
            match name {
                "include" => {
                    let span = value.span();
                    if let Some(dir) = self.de::<PathBuf>(src, value, "include") {
                        let loc = self.loc(src, Some(span));
                        self.raw.include = Some((dir, loc));
                    }
                }
                "node" => self.raw.node = self.de(src, value, "node"),
                "server" => self.raw.server = self.de(src, value, "server").map(|s| (src, s)),
                "store" => self.raw.store = self.de(src, value, "store"),
                "engine" => self.raw.engine = self.de(src, value, "engine").map(|e| (src, e)),
                "defaults" => self.raw.defaults = self.de(src, value, "defaults"),
                "check" => self.checks(src, value),
                "notify" => self.notifiers(src, value),
                "action" => self.actions(src, value),
                "maintenance" => self.maintenance(src, value),
                "dns" => {
                    for (name, table, p) in self.named::<DnsProvider>(src, value, "dns", "ovh") {
                        self.raw.dns.push((src, name, table, p));
                    }
                }
                "dyndns" => {
                    for (name, table, d) in self.named::<Dyndns>(src, value, "dyndns", "home") {
                        self.raw.dyndns.push((src, name, table, d));
                    }
                }
                "failover" => {
                    for (name, table, f) in self.named::<Failover>(src, value, "failover", "blog") {
                        self.raw.failovers.push((src, name, table, f));
                    }
                }
                "sync" => {
                    for item in self.array_of_tables(src, value, "sync") {
                        let table = item.span();
                        if let Some(j) = self.de::<SyncJob>(src, item, "sync") {
                            self.raw.syncs.push((src, table, j));
                        }
                    }
                }
                "peer" => {
                    for item in self.array_of_tables(src, value, "peer") {
                        let table = item.span();
                        if let Some(p) = self.de::<Peer>(src, item, "peer") {
                            self.raw.peers.push((src, table, p));
                        }
                    }
                }
                _ => unreachable!("every section is matched"),
            }
        }
    }

    /// A section of named tables (`[notify.NAME]`, `[action.NAME]`), each
    /// deserialized on its own so that one bad entry hides no other.
    fn named<T: DeserializeOwned>(
        &mut self,
        src: usize,
        value: Spanned<DeValue<'_>>,
        section: &str,
        example: &str,
    ) -> Vec<(Spanned<String>, Range<usize>, T)> {
        let span = value.span();
        let DeValue::Table(items) = value.into_inner() else {
            self.error(
                src,
                Some(span),
                section,
                format!("`{section}` must be a table of named entries"),
                Some(format!(
                    "write each one under its own header, e.g. [{section}.{example}]"
                )),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in items {
            let key = format!("{section}.{}", name.get_ref());
            let table = item.span();
            let name = Spanned::new(name.span(), name.get_ref().to_string());
            if let Some(v) = self.de::<T>(src, item, &key) {
                out.push((name, table, v));
            }
        }
        out
    }

    fn notifiers(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for (name, table, kind) in self.named::<NotifierKind>(src, value, "notify", "phone") {
            self.raw.notifiers.push(NotifierEntry {
                src,
                name,
                table,
                kind,
            });
        }
    }

    fn actions(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for (name, table, action) in self.named::<ActionTable>(src, value, "action", "restart-web")
        {
            self.raw.actions.push((src, name, table, action));
        }
    }

    /// A section of `[[tables]]`, each returned to be read on its own.
    fn array_of_tables<'i>(
        &mut self,
        src: usize,
        value: Spanned<DeValue<'i>>,
        section: &str,
    ) -> Vec<Spanned<DeValue<'i>>> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(
                src,
                Some(span),
                section,
                format!("`{section}` must be an array of tables"),
                Some(format!("write each one under its own [[{section}]] header")),
            );
            return Vec::new();
        };
        items.into_iter().collect()
    }

    fn maintenance(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for item in self.array_of_tables(src, value, "maintenance") {
            let table = item.span();
            if let Some(m) = self.de::<Maintenance>(src, item, "maintenance") {
                self.raw.maintenance.push((src, table, m));
            }
        }
    }

    fn checks(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for item in self.array_of_tables(src, value, "check") {
            let table = item.span();
            let name = match item.get_ref() {
                DeValue::Table(t) => t.get("name").and_then(|n| match n.get_ref() {
                    DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                }),
                _ => None,
            };
            let key = name
                .as_ref()
                .map_or_else(|| "check".to_owned(), |n| format!("check \"{n}\""));
            if let Some(raw) = self.de::<RawCheck>(src, item, &key) {
                self.raw.checks.push(CheckEntry { src, table, raw });
            } else {
                let loc = self.loc(src, Some(table));
                self.raw.broken_names.extend(name.map(|n| (n, loc)));
            }
        }
    }

    /// Deserialize one value. On an error inside a table, the offending
    /// entry is dropped (in the innermost table that holds it) and the rest
    /// tried again, so that one pass reports every bad key of a section,
    /// not just the first.
    fn de<T: DeserializeOwned>(
        &mut self,
        src: usize,
        mut value: Spanned<DeValue<'_>>,
        key: &str,
    ) -> Option<T> {
        let whole = value.span();
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..64 {
            match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return removed.is_empty().then_some(v),
                Err(e) => {
                    let (message, hint) = explain(e.message());
                    // A key we dropped ourselves is not missing from the file.
                    if removed
                        .iter()
                        .any(|r| message == format!("missing key `{r}`"))
                    {
                        return None;
                    }
                    let span = e.span().unwrap_or_else(|| whole.clone());
                    self.error(src, Some(span.clone()), key, message, hint);
                    match drop_entry(&mut value, &span) {
                        Some(k) => removed.push(k),
                        None => return None,
                    }
                }
            }
        }
        None
    }

    fn include(&mut self, dir: &Path, at: &Location) {
        let dir = self.base.join(dir);
        let entries = match fs_err::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                self.diags.push(Diagnostic {
                    level: Level::Error,
                    location: Some(at.clone()),
                    key: "include".into(),
                    message: format!("cannot read the include directory: {e}"),
                    hint: Some("create the directory or remove `include`".into()),
                });
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            match fs_err::read_to_string(&file) {
                Ok(text) => self.parse(text, &file, false),
                Err(e) => self.diags.push(Diagnostic {
                    level: Level::Error,
                    location: Some(at.clone()),
                    key: "include".into(),
                    message: format!("cannot read an included file: {e}"),
                    hint: None,
                }),
            }
        }
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
        let actions = self.resolve_actions(&notifiers, &failover_names);
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
            checks,
        })
    }

    /// A check whose notify steps all ask for more than its severity
    /// fails without anyone hearing of it: warn, naming the steps.
    fn unreachable_notifiers(&mut self, checks: &[Check], actions: &BTreeMap<String, Action>) {
        for c in checks {
            // (step, min_severity, severity it sends at)
            let steps: Vec<(&str, vigie_core::Severity, vigie_core::Severity)> = c
                .actions
                .iter()
                .filter_map(|name| match name.strip_prefix("notify:") {
                    Some(_) => Some((
                        name.as_str(),
                        vigie_core::Severity::NotClassified,
                        c.severity,
                    )),
                    None => actions.get(name).and_then(Action::notify).map(|n| {
                        (
                            name.as_str(),
                            n.min_severity,
                            n.severity.unwrap_or(c.severity),
                        )
                    }),
                })
                .collect();
            if steps.is_empty() || steps.iter().any(|(_, min, at)| at >= min) {
                continue;
            }
            let names: Vec<String> = steps
                .iter()
                .map(|(n, ..)| format!("[action.{n}]"))
                .collect();
            let lowest = steps
                .iter()
                .map(|(_, min, _)| *min)
                .min()
                .unwrap_or_default();
            // Point at the check's first notify step.
            let (src, span) = self
                .raw
                .action_refs
                .iter()
                .find(|(_, check, r)| *check == c.name && r.get_ref() == steps[0].0)
                .map_or((0, None), |(src, _, r)| (*src, Some(r.span())));
            self.warning(
                src,
                span,
                &format!("check \"{}\".actions", c.name),
                format!(
                    "severity \"{}\" never reaches a notifier: its notify steps need at least \"{lowest}\", so a failure of {} is sent to nobody",
                    c.severity, c.name
                ),
                Some(format!(
                    "lower min_severity of {}, or raise the check's severity",
                    names.join(", ")
                )),
            );
        }
    }

    /// Each job's check: the declared ones must name a job; a job no check
    /// names gets `sync-NAME`.
    fn sync_checks(&mut self, syncs: &[SyncJob], checks: &mut Vec<Check>) {
        let names: Vec<&str> = syncs.iter().map(|j| j.name.as_str()).collect();
        for c in checks.iter() {
            if let Probe::Sync(p) = &c.probe
                && !names.contains(&p.job.as_str())
            {
                let hint = did_you_mean(&p.job, names.iter().copied()).map_or_else(
                    || "declare it under [[sync]]".to_owned(),
                    |s| format!("did you mean `{s}`?"),
                );
                self.error(
                    0,
                    None,
                    &format!("check \"{}\".sync", c.name),
                    format!("unknown sync job `{}`", p.job),
                    Some(hint),
                );
            }
        }
        for j in syncs {
            let covered = checks
                .iter()
                .any(|c| matches!(&c.probe, Probe::Sync(p) if p.job == j.name));
            let name = format!("sync-{}", j.name);
            if covered || checks.iter().any(|c| c.name == name) {
                continue;
            }
            checks.push(Check {
                name,
                description: Some(format!("replication {} → {}", j.from.display(), j.to)),
                every: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                retry_every: None,
                fail_after: 3,
                recover_after: 1,
                severity: vigie_core::Severity::High,
                depends_on: Vec::new(),
                tags: vec!["sync".into()],
                flapping: None,
                actions: Vec::new(),
                probe: Probe::Sync(SyncProbe {
                    job: j.name.clone(),
                }),
            });
        }
    }

    fn resolve_syncs(&mut self) -> Vec<SyncJob> {
        let mut out: Vec<SyncJob> = Vec::new();
        for (src, table, mut j) in std::mem::take(&mut self.raw.syncs) {
            let key = format!("sync \"{}\"", j.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(&j.name) {
                problems.push((
                    "a sync name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                ));
            }
            if out.iter().any(|o| o.name == j.name) {
                problems.push((format!("sync `{}` is declared twice", j.name), None));
            }
            j.from = self.base.join(&j.from);
            if !j.from.is_dir() {
                problems.push((
                    format!("`from` {} is not a directory", j.from.display()),
                    Some("name the local directory to replicate".into()),
                ));
            }
            let (host, path) = j.destination();
            if path.is_empty() {
                problems.push((
                    format!("`to` = {:?} names no directory", j.to),
                    Some(
                        "write to = \"host:/var/www/blog\" (an ssh destination) or a local path"
                            .into(),
                    ),
                ));
            }
            if host.is_none() && !path.starts_with('/') {
                problems.push((
                    format!(
                        "`to` = {:?} is neither host:/path nor an absolute local path",
                        j.to
                    ),
                    Some("write to = \"backup-host:/var/www/blog\"".into()),
                ));
            }
            if host.is_none() && std::path::Path::new(path) == j.from {
                problems.push(("`to` is `from` itself".into(), None));
            }
            if j.delay.std().is_zero() || j.delay.std() > std::time::Duration::from_mins(1) {
                problems.push((
                    "`delay` is between 1ms and 1m".into(),
                    Some("the default is 250ms".into()),
                ));
            }
            if j.verify_every.std() < std::time::Duration::from_secs(1) {
                problems.push((
                    "`verify_every` is at least 1s".into(),
                    Some("the default is 1h".into()),
                ));
            }
            if j.max_lag.std().is_zero() {
                problems.push((
                    "`max_lag` is more than 0s".into(),
                    Some("the default is 5m".into()),
                ));
            }
            if j.ssh.is_empty() {
                problems.push((
                    "`ssh` is empty".into(),
                    Some("ssh = [\"ssh\", \"-i\", \"/root/.ssh/vigie\"]".into()),
                ));
            }
            let ok = problems.is_empty();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if ok {
                out.push(j);
            }
        }
        out
    }

    fn resolve_peers(&mut self, env: EnvLookup<'_>, node: &str) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        for (src, table, mut p) in std::mem::take(&mut self.raw.peers) {
            let key = format!("peer \"{}\"", p.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(&p.name) {
                problems.push((
                    "a peer name uses letters, digits, `-`, `_` and `.`".into(),
                    Some("write the peer's [node] name".into()),
                ));
            }
            if p.name == node {
                problems.push((
                    format!("`{node}` is this node's own name"),
                    Some("list the other watchers, not this one".into()),
                ));
            }
            if out.iter().any(|o| o.name == p.name) {
                problems.push((format!("peer `{}` is declared twice", p.name), None));
            }
            let loopback = match p.url.0.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if p.url.0.scheme() != "https" && !loopback {
                problems.push((
                    "a peer beyond loopback is reached over https".into(),
                    Some("write url = \"https://HOST:9470\" and give it [server] tls".into()),
                ));
            }
            if p.ca.is_some() && p.pin.is_some() {
                problems.push((
                    "set `ca` or `pin`, not both".into(),
                    Some("pin a self-signed certificate, or name the CA that signed it".into()),
                ));
            }
            if let Some(pin) = &mut p.pin {
                let hex: String = pin.chars().filter(|c| *c != ':').collect();
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    *pin = hex.to_ascii_lowercase();
                } else {
                    problems.push((
                        "`pin` is the certificate's SHA-256 in hex (64 digits, colons allowed)"
                            .into(),
                        Some("openssl x509 -noout -fingerprint -sha256 -in cert.pem".into()),
                    ));
                }
            }
            if let Some(ca) = &mut p.ca {
                *ca = self.base.join(&*ca);
            }
            let token =
                std::mem::replace(&mut p.token, Secret::new(SecretSource::Env(String::new())));
            let resolved =
                self.resolve_secret(src, table.clone(), &format!("{key}.token"), token, env);
            let ok = problems.is_empty() && resolved.is_some();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if let (true, Some(t)) = (ok, resolved) {
                p.token = t;
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Give each check a failover names in `checks` the `failover:NAME`
    /// action, then record in each failover every check that triggers it
    /// (both ways of writing the link end as one). Also checks `quorum`
    /// and `reference`.
    fn link_failover_checks(
        &mut self,
        failovers: &mut BTreeMap<String, Failover>,
        checks: &mut [Check],
        peers: usize,
    ) {
        let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
        let mut broken = Vec::new();
        for (fname, f) in failovers.iter_mut() {
            let key = format!("failover.{fname}");
            let action = format!("failover:{fname}");
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            for (field, list) in [("checks", &f.checks), ("reference", &f.reference)] {
                for c in list {
                    if !names.contains(c) {
                        let hint = did_you_mean(c, names.iter().map(String::as_str))
                            .map(|s| format!("did you mean `{s}`?"));
                        problems.push((format!("`{field}` names unknown check `{c}`"), hint));
                    }
                }
            }
            for check in checks.iter_mut() {
                if f.checks.contains(&check.name) && !check.actions.contains(&action) {
                    check.actions.push(action.clone());
                }
            }
            f.checks = checks
                .iter()
                .filter(|c| c.actions.contains(&action))
                .map(|c| c.name.clone())
                .collect();
            if let Some(c) = f.reference.iter().find(|r| f.checks.contains(r)) {
                problems.push((
                    format!("`{c}` is both a trigger and a reference of this failover"),
                    Some(
                        "a reference check watches this watcher's own link, not the primary".into(),
                    ),
                ));
            }
            let voters = peers + 1;
            if f.quorum == 0 || f.quorum as usize > voters {
                problems.push((
                    format!(
                        "quorum = {} but there are {voters} watcher(s) (this node and {peers} [[peer]])",
                        f.quorum
                    ),
                    Some("quorum is between 1 and the number of watchers".into()),
                ));
            }
            if !problems.is_empty() {
                broken.push(fname.clone());
            }
            let (src, table) = self
                .raw
                .failover_places
                .get(fname)
                .cloned()
                .unwrap_or_default();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            // The peers are asked but never needed: one watcher's view
            // (its own link down) moves the record.
            if f.quorum == 1 && peers > 0 {
                self.warning(
                    src,
                    Some(table.clone()),
                    &key,
                    format!("quorum = 1 with {peers} [[peer]]: this watcher alone moves the record"),
                    Some(format!(
                        "set quorum = {} so that a majority of the {voters} watchers must see the primary down",
                        voters / 2 + 1
                    )),
                );
            }
        }
        for b in broken {
            failovers.remove(&b);
        }
    }

    fn resolve_dyndns(&mut self, dns: &BTreeMap<String, DnsProvider>) -> BTreeMap<String, Dyndns> {
        let mut out = BTreeMap::new();
        for (src, name, table, mut d) in std::mem::take(&mut self.raw.dyndns) {
            let key = format!("dyndns.{}", name.get_ref());
            if !dns.contains_key(&d.dns) {
                let hint = did_you_mean(&d.dns, dns.keys().map(String::as_str)).map_or_else(
                    || "declare it under [dns.NAME]".to_owned(),
                    |s| format!("did you mean `{s}`?"),
                );
                self.error(
                    src,
                    Some(table),
                    &key,
                    format!("unknown DNS provider `{}`", d.dns),
                    Some(hint),
                );
                continue;
            }
            if let Some(problem) = address_problem(d.ip_url.is_some(), d.interface.as_deref(), true)
            {
                self.error(src, Some(table), &key, problem.0, Some(problem.1));
                continue;
            }
            if d.every.std() < std::time::Duration::from_secs(1) {
                self.error(
                    src,
                    Some(table),
                    &key,
                    "`every` must be at least 1s".into(),
                    None,
                );
                continue;
            }
            d.name.clone_from(name.get_ref());
            out.insert(name.into_inner(), d);
        }
        out
    }

    fn resolve_failover(
        &mut self,
        env: EnvLookup<'_>,
    ) -> (BTreeMap<String, DnsProvider>, BTreeMap<String, Failover>) {
        let mut dns = BTreeMap::new();
        for (src, name, table, mut p) in std::mem::take(&mut self.raw.dns) {
            let key = format!("dns.{}", name.get_ref());
            let ok = vigie_core::is_valid_name(name.get_ref());
            if !ok {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "a provider name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                );
            }
            for (field, secret) in p.secrets_mut() {
                let taken =
                    std::mem::replace(secret, Secret::new(SecretSource::Env(String::new())));
                // A secret that cannot be read is an error of its own; the
                // provider stays declared, so that what uses it is not also
                // told it does not exist (the config is refused anyway).
                if let Some(resolved) =
                    self.resolve_secret(src, table.clone(), &format!("{key}.{field}"), taken, env)
                {
                    *secret = resolved;
                }
            }
            if ok {
                dns.insert(name.into_inner(), p);
            }
        }
        let providers: Vec<String> = dns.keys().cloned().collect();
        let mut failovers = BTreeMap::new();
        for (src, name, table, mut f) in std::mem::take(&mut self.raw.failovers) {
            let key = format!("failover.{}", name.get_ref());
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(name.get_ref()) {
                problems.push((
                    "a failover name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                ));
            }
            match dns.get(&f.dns) {
                None => {
                    let hint = did_you_mean(&f.dns, providers.iter().map(String::as_str))
                        .map_or_else(
                            || "declare it under [dns.NAME]".to_owned(),
                            |s| format!("did you mean `{s}`?"),
                        );
                    problems.push((format!("unknown DNS provider `{}`", f.dns), Some(hint)));
                }
                Some(DnsProvider::Rfc2136 { server, .. }) if f.verify.is_empty() => {
                    f.verify = vec![*server];
                }
                Some(_) if f.verify.is_empty() => problems.push((
                    "`verify` is empty: name the zone's authoritative servers".into(),
                    Some(
                        "verify = [\"192.0.2.53:53\"]: vigie asks them until they serve the change"
                            .into(),
                    ),
                )),
                Some(_) => {}
            }
            let v6 = f.record.rtype == AddressType::Aaaa;
            let fixed = match &f.backup {
                Backup::Fixed(v) => v.clone(),
                Backup::PublicIp => Vec::new(),
            };
            let needs_source = f.backup == Backup::PublicIp;
            if let Some(p) =
                address_problem(f.ip_url.is_some(), f.interface.as_deref(), needs_source)
            {
                problems.push((p.0, Some(p.1)));
            }
            let sides: Vec<(&str, &Vec<std::net::IpAddr>)> = if needs_source {
                vec![("primary", &f.primary)]
            } else {
                vec![("primary", &f.primary), ("backup", &fixed)]
            };
            for (side, addrs) in sides {
                if addrs.is_empty() {
                    problems.push((format!("`{side}` is empty"), None));
                }
                if addrs.iter().any(|a| a.is_ipv6() != v6) {
                    problems.push((
                        format!(
                            "`{side}` holds an address of the wrong family for an {} record",
                            if v6 { "AAAA" } else { "A" }
                        ),
                        None,
                    ));
                }
            }
            let ok = problems.is_empty();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if ok {
                f.name.clone_from(name.get_ref());
                self.raw
                    .failover_places
                    .insert(f.name.clone(), (src, table.clone()));
                failovers.insert(name.into_inner(), f);
            }
        }
        (dns, failovers)
    }

    fn resolve_maintenance(&mut self, checks: &[Check]) -> Vec<Maintenance> {
        let mut out = Vec::new();
        for (src, table, m) in std::mem::take(&mut self.raw.maintenance) {
            let key = format!("maintenance \"{}\"", m.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            let time = |s: &Option<String>| s.as_ref().map(|t| t.parse::<jiff::Timestamp>());
            match (time(&m.from), time(&m.until), &m.cron, m.duration) {
                (Some(Ok(f)), Some(Ok(u)), None, None) if f < u => {}
                (Some(Ok(_)), Some(Ok(_)), None, None) => problems.push(("`until` is not after `from`".into(), None)),
                (Some(Err(e)), _, _, _) | (_, Some(Err(e)), _, _) => {
                    problems.push((format!("not an RFC 3339 time: {e}"), Some("write e.g. \"2026-12-01T22:00:00Z\" or \"2026-12-01T23:00:00+01:00\"".into())));
                }
                (None, None, Some(_), Some(d)) if !d.std().is_zero() => {}
                _ => problems.push((
                    "a window is either `from` + `until`, or `cron` + `duration`".into(),
                    Some("e.g. cron = \"0 3 * * 0\" and duration = \"2h\" for Sundays 03:00 to 05:00".into()),
                )),
            }
            if let Some(tz) = &m.timezone
                && jiff::tz::TimeZone::get(tz).is_err()
            {
                problems.push((
                    format!("unknown time zone `{tz}`"),
                    Some("use an IANA name such as \"Europe/Paris\"; is tzdata installed?".into()),
                ));
            }
            if m.checks.is_empty() && m.tags.is_empty() {
                problems.push(("no scope: name `checks` or `tags`".into(), None));
            }
            let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
            for c in &m.checks {
                if !names.contains(&c.as_str()) {
                    let hint = did_you_mean(c, names.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"));
                    problems.push((format!("unknown check `{c}`"), hint));
                }
            }
            let ok = problems.is_empty();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if ok {
                out.push(m);
            }
        }
        out
    }

    fn resolve_actions(
        &mut self,
        notifiers: &BTreeMap<String, Notifier>,
        failover_names: &[String],
    ) -> BTreeMap<String, Action> {
        let mut out: BTreeMap<String, Action> = BTreeMap::new();
        let notifier_names: Vec<&str> = notifiers.keys().map(String::as_str).collect();
        for (src, name, table, action) in std::mem::take(&mut self.raw.actions) {
            let key = format!("action.{}", name.get_ref());
            if !vigie_core::is_valid_name(name.get_ref()) {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "an action name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                );
                continue;
            }
            if out.contains_key(name.get_ref()) {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    format!("duplicate action `{}`", name.get_ref()),
                    None,
                );
                continue;
            }
            match action.kinds_set() {
                1 => {}
                0 => {
                    self.error(
                        src,
                        Some(table.clone()),
                        &key,
                        "the action does nothing".into(),
                        Some(
                            "set one of run, shell, systemd_restart, docker_restart, notify or failover"
                                .into(),
                        ),
                    );
                    continue;
                }
                _ => {
                    self.error(src, Some(table.clone()), &key, "an action does one thing".into(), Some("split it into several actions and list them in order in the check's `actions`".into()));
                    continue;
                }
            }
            if action
                .run
                .as_ref()
                .is_some_and(|a| a.first().is_none_or(String::is_empty))
            {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.run"),
                    "`run` is empty: its first item is the program".into(),
                    None,
                );
                continue;
            }
            if action.max.is_some_and(|m| m.restarts == 0) {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.max"),
                    "`restarts` must be at least 1".into(),
                    None,
                );
            }
            for n in action.notify.iter().flatten() {
                if !notifiers.contains_key(n) {
                    let hint = did_you_mean(n, notifier_names.iter().copied()).map_or_else(
                        || "declare it under [notify.NAME]".to_owned(),
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.error(
                        src,
                        Some(table.clone()),
                        &format!("{key}.notify"),
                        format!("unknown notifier `{n}`"),
                        Some(hint),
                    );
                }
            }
            if let Some(f) = &action.failover
                && !failover_names.contains(f)
            {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.failover"),
                    format!("unknown failover `{f}`"),
                    Some("declare it under [failover.NAME]".into()),
                );
            }
            if let Some(action) = action.resolve(name.get_ref()) {
                out.insert(name.into_inner(), action);
            }
        }
        // Kept: `unreachable_notifiers` points at these references too.
        for (src, check, reference) in self.raw.action_refs.clone() {
            let r = reference.get_ref();
            let known = if let Some(f) = r.strip_prefix("failover:") {
                failover_names.iter().any(|n| n == f)
            } else {
                match r.strip_prefix("notify:") {
                    Some(n) => notifiers.contains_key(n),
                    None => out.contains_key(r),
                }
            };
            if !known {
                let candidates: Vec<String> = out
                    .keys()
                    .cloned()
                    .chain(notifiers.keys().map(|n| format!("notify:{n}")))
                    .chain(failover_names.iter().map(|f| format!("failover:{f}")))
                    .collect();
                let hint = did_you_mean(r, candidates.iter().map(String::as_str)).map_or_else(
                    || "name an [action.NAME] or notify:NOTIFIER".to_owned(),
                    |s| format!("did you mean `{s}`?"),
                );
                self.error(
                    src,
                    Some(reference.span()),
                    &format!("check \"{check}\".actions"),
                    format!("unknown action `{r}`"),
                    Some(hint),
                );
            }
        }
        out
    }

    fn resolve_notifiers(&mut self, env: EnvLookup<'_>) -> BTreeMap<String, Notifier> {
        let mut out: BTreeMap<String, Notifier> = BTreeMap::new();
        let mut seen: HashMap<String, Location> = HashMap::new();
        for entry in std::mem::take(&mut self.raw.notifiers) {
            let NotifierEntry {
                src,
                name,
                table,
                mut kind,
            } = entry;
            let key = format!("notify.{}", name.get_ref());
            if !vigie_core::is_valid_name(name.get_ref()) {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "a notifier name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                );
            }
            if let Some(first) = seen.get(name.get_ref()) {
                let hint = format!("the first is at {first}");
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    format!("duplicate notifier `{}`", name.get_ref()),
                    Some(hint),
                );
                continue;
            }
            seen.insert(name.get_ref().clone(), self.loc(src, Some(name.span())));
            let mut ok = true;
            for (field, secret) in kind.secrets_mut() {
                let taken =
                    std::mem::replace(secret, Secret::new(SecretSource::Env(String::new())));
                // As for DNS providers: the notifier stays declared.
                if let Some(resolved) =
                    self.resolve_secret(src, table.clone(), &format!("{key}.{field}"), taken, env)
                {
                    *secret = resolved;
                }
            }
            if let NotifierKind::Smtp { to, ca, .. } = &mut kind {
                if to.is_empty() {
                    self.error(
                        src,
                        Some(table.clone()),
                        &format!("{key}.to"),
                        "no recipient".into(),
                        Some("to = [\"you@example.org\"]".into()),
                    );
                    ok = false;
                }
                if let Some(ca) = ca {
                    *ca = self.base.join(&*ca);
                }
            }
            if let NotifierKind::Webhook {
                template: Some(t), ..
            } = &kind
                && let Err(e) = minijinja::Environment::new().template_from_str(t)
            {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.template"),
                    format!("invalid template: {e}"),
                    None,
                );
                ok = false;
            }
            if ok {
                let name = name.into_inner();
                out.insert(name.clone(), Notifier { name, kind });
            }
        }
        out
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

    fn resolve_checks(&mut self, env: EnvLookup<'_>) -> Vec<Check> {
        let defaults = self.raw.defaults.take().unwrap_or_default();
        let entries = std::mem::take(&mut self.raw.checks);
        let mut seen: HashMap<String, Location> = HashMap::new();
        let broken = std::mem::take(&mut self.raw.broken_names);
        let broken_names: Vec<String> = broken.iter().map(|(n, _)| n.clone()).collect();
        for (name, loc) in broken {
            seen.entry(name).or_insert(loc);
        }
        let mut checks = Vec::with_capacity(entries.len());
        let mut places = Vec::with_capacity(entries.len());
        for entry in entries {
            let src = entry.src;
            let raw = entry.raw;
            let name = raw.name.get_ref().clone();
            let key = format!("check \"{name}\"");
            let name_loc = self.loc(src, Some(raw.name.span()));
            if !vigie_core::is_valid_name(&name) {
                self.error(
                    src,
                    Some(raw.name.span()),
                    &key,
                    "a check name uses letters, digits, `-`, `_` and `.` (at most 64, starting with a letter or digit)".into(),
                    Some("names appear in URLs and metric labels; rename it e.g. \"web-front\"".into()),
                );
            }
            if let Some(first) = seen.get(&name) {
                let hint = format!("the first is at {first}; give each check its own name");
                self.error(
                    src,
                    Some(raw.name.span()),
                    &key,
                    format!("duplicate check name `{name}`"),
                    Some(hint),
                );
            } else {
                seen.insert(name.clone(), name_loc);
            }
            let every = raw
                .every
                .as_ref()
                .map_or(defaults.every.unwrap_or(Duration::from_secs(30)), |e| {
                    *e.get_ref()
                });
            if every.std() < std::time::Duration::from_millis(100) {
                let span = raw.every.as_ref().map(Spanned::span);
                self.error(
                    src,
                    span,
                    &format!("{key}.every"),
                    "`every` must be at least 100ms".into(),
                    None,
                );
            }
            let timeout = raw
                .timeout
                .as_ref()
                .map(|t| *t.get_ref())
                .or(defaults.timeout)
                .unwrap_or_else(|| every.min(Duration::from_secs(10)));
            if timeout.std().is_zero() {
                let span = raw.timeout.as_ref().map(Spanned::span);
                self.error(
                    src,
                    span,
                    &format!("{key}.timeout"),
                    "`timeout` must be more than 0s".into(),
                    None,
                );
            } else if timeout > every {
                let span = raw.timeout.as_ref().map(Spanned::span);
                self.warning(
                    src,
                    span,
                    &format!("{key}.timeout"),
                    format!("timeout ({timeout}) is longer than every ({every}): a slow run delays the next one"),
                    Some("make timeout at most as long as every".into()),
                );
            }
            let retry_every = raw
                .retry_every
                .as_ref()
                .map(|r| *r.get_ref())
                .or(defaults.retry_every);
            if let Some(retry) = retry_every {
                let span = raw.retry_every.as_ref().map(Spanned::span);
                let field = format!("{key}.retry_every");
                if retry.std() < std::time::Duration::from_millis(100) {
                    self.error(
                        src,
                        span,
                        &field,
                        "`retry_every` must be at least 100ms".into(),
                        None,
                    );
                } else if retry > every {
                    self.error(
                        src,
                        span,
                        &field,
                        format!("retry_every ({retry}) is longer than every ({every})"),
                        Some(
                            "retry_every re-runs a failed check sooner than every, until fail_after confirms it: make it shorter than every, or remove it".into(),
                        ),
                    );
                }
            }
            let mut threshold = |v: &Option<Spanned<u32>>, d: Option<u32>, field: &str| -> u32 {
                match v {
                    Some(v) if *v.get_ref() == 0 => {
                        self.error(
                            src,
                            Some(v.span()),
                            &format!("{key}.{field}"),
                            format!("`{field}` must be at least 1"),
                            None,
                        );
                        1
                    }
                    Some(v) => *v.get_ref(),
                    None => d.unwrap_or(1),
                }
            };
            let fail_after = threshold(&raw.fail_after, defaults.fail_after, "fail_after");
            let recover_after =
                threshold(&raw.recover_after, defaults.recover_after, "recover_after");
            for a in &raw.actions {
                self.raw.action_refs.push((src, name.clone(), a.clone()));
            }
            let flapping = match raw.flapping.as_ref().map(Spanned::get_ref) {
                None | Some(FlappingSetting::Enabled(true)) => Some(Flapping::default()),
                Some(FlappingSetting::Enabled(false)) => None,
                Some(FlappingSetting::Rule(r)) if r.changes >= 2 && !r.within.std().is_zero() => {
                    Some(*r)
                }
                Some(FlappingSetting::Rule(_)) => {
                    let span = raw.flapping.as_ref().map(Spanned::span);
                    self.error(
                        src,
                        span,
                        &format!("{key}.flapping"),
                        "`changes` must be at least 2 and `within` more than 0s".into(),
                        None,
                    );
                    None
                }
            };
            let mut raw = raw;
            let probe = self.resolve_probe(src, entry.table.clone(), &key, &mut raw, env);
            places.push((
                name.clone(),
                src,
                raw.depends_on
                    .iter()
                    .map(|d| (d.get_ref().clone(), d.span()))
                    .collect::<Vec<_>>(),
            ));
            if let Some(probe) = probe {
                checks.push(Check {
                    name,
                    description: raw.description,
                    every,
                    timeout,
                    retry_every,
                    fail_after,
                    recover_after,
                    severity: raw.severity.or(defaults.severity).unwrap_or_default(),
                    depends_on: raw
                        .depends_on
                        .into_iter()
                        .map(Spanned::into_inner)
                        .collect(),
                    tags: raw.tags,
                    actions: raw.actions.into_iter().map(Spanned::into_inner).collect(),
                    flapping,
                    probe,
                });
            }
        }
        self.validate_dependencies(&seen, &places, &broken_names);
        checks
    }

    fn validate_dependencies(
        &mut self,
        known: &HashMap<String, Location>,
        places: &[DependsOn],
        broken: &[String],
    ) {
        let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut order = Vec::new();
        for (owner, src, deps) in places {
            let owner = owner.clone();
            for (dep, span) in deps {
                if broken.contains(dep) {
                    continue;
                }
                if !known.contains_key(dep) {
                    let hint = did_you_mean(dep, names.iter().copied()).map_or_else(
                        || "depends_on names other checks of this config".to_owned(),
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.error(
                        *src,
                        Some(span.clone()),
                        &format!("check \"{owner}\".depends_on"),
                        format!("unknown check `{dep}`"),
                        Some(hint),
                    );
                } else if *dep == owner {
                    self.error(
                        *src,
                        Some(span.clone()),
                        &format!("check \"{owner}\".depends_on"),
                        "a check cannot depend on itself".into(),
                        None,
                    );
                } else {
                    graph.entry(owner.clone()).or_default().push(dep.clone());
                }
            }
            order.push((owner, *src, deps.first().map(|d| d.1.clone())));
        }
        let mut reported: Vec<Vec<String>> = Vec::new();
        for (owner, src, span) in order {
            if let Some(cycle) = find_cycle(&graph, &owner) {
                let mut key = cycle.clone();
                key.sort();
                if reported.contains(&key) {
                    continue;
                }
                reported.push(key);
                let path = cycle
                    .iter()
                    .chain(std::iter::once(&cycle[0]))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" → ");
                self.error(
                    src,
                    span,
                    &format!("check \"{owner}\".depends_on"),
                    format!("dependency cycle: {path}"),
                    Some("a parent must not depend, even indirectly, on its children; remove one of these links".into()),
                );
            }
        }
    }

    fn resolve_probe(
        &mut self,
        src: usize,
        table: Range<usize>,
        key: &str,
        raw: &mut RawCheck,
        env: EnvLookup<'_>,
    ) -> Option<Probe> {
        fn take<T>(
            v: &mut Option<Spanned<T>>,
            f: fn(T) -> Probe,
            out: &mut Vec<(Probe, Range<usize>)>,
        ) {
            if let Some(s) = v.take() {
                let span = s.span();
                out.push((f(s.into_inner()), span));
            }
        }
        let mut found = Vec::new();
        take(&mut raw.http, Probe::Http, &mut found);
        take(&mut raw.tcp, Probe::Tcp, &mut found);
        take(&mut raw.tls, Probe::Tls, &mut found);
        take(&mut raw.dns, Probe::Dns, &mut found);
        take(&mut raw.ping, Probe::Ping, &mut found);
        take(&mut raw.command, Probe::Command, &mut found);
        take(&mut raw.systemd, Probe::Systemd, &mut found);
        take(&mut raw.process, Probe::Process, &mut found);
        take(&mut raw.disk, Probe::Disk, &mut found);
        take(&mut raw.memory, Probe::Memory, &mut found);
        take(&mut raw.load, Probe::Load, &mut found);
        take(&mut raw.file_age, Probe::FileAge, &mut found);
        take(&mut raw.heartbeat, Probe::Heartbeat, &mut found);
        take(&mut raw.sync, Probe::Sync, &mut found);
        if found.len() > 1 {
            let kinds: Vec<&str> = found.iter().map(|(p, _)| p.kind()).collect();
            self.error(
                src,
                Some(found[1].1.clone()),
                key,
                format!(
                    "a check has one probe, this one has {}",
                    kinds.join(" and ")
                ),
                Some("split it into one [[check]] per probe".into()),
            );
            return None;
        }
        let Some((mut probe, span)) = found.pop() else {
            self.error(
                src,
                Some(table),
                key,
                "no probe: say what to check".into(),
                Some(format!("add one of: {}", Probe::KINDS.join(", "))),
            );
            return None;
        };
        let kind = probe.kind();
        let field = |f: &str| format!("{key}.{kind}.{f}");
        let mut problems: Vec<(String, String, Option<String>)> = Vec::new();
        let percent =
            |v: Option<f64>, f: &str, problems: &mut Vec<(String, String, Option<String>)>| {
                if let Some(v) = v
                    && !(0.0..=100.0).contains(&v)
                {
                    problems.push((
                        field(f),
                        format!("{v} is not a percentage between 0 and 100"),
                        None,
                    ));
                }
            };
        // Header values, query values and a command's environment may be
        // secrets.
        let mut secrets_ok = true;
        let maybe_secrets = match &mut probe {
            Probe::Http(h) => vec![("headers", &mut h.headers), ("query", &mut h.query)],
            Probe::Command(c) => vec![("env", &mut c.env)],
            _ => Vec::new(),
        };
        for (name, values) in maybe_secrets {
            for (k, v) in values.iter_mut() {
                if let Some(secret) = v.secret_mut() {
                    let taken =
                        std::mem::replace(secret, Secret::new(SecretSource::Env(String::new())));
                    let at = format!("{}.{k}", field(name));
                    match self.resolve_secret(src, span.clone(), &at, taken, env) {
                        Some(resolved) => *secret = resolved,
                        None => secrets_ok = false,
                    }
                }
            }
        }
        match &mut probe {
            Probe::Http(h) => {
                for s in &h.expect_status {
                    if !(100..=599).contains(s) {
                        problems.push((
                            field("expect_status"),
                            format!("{s} is not an HTTP status"),
                            Some("statuses run from 100 to 599".into()),
                        ));
                    }
                }
                if let Some(ca) = &mut h.ca {
                    *ca = self.base.join(&*ca);
                    if !ca.is_file() {
                        problems.push((
                            field("ca"),
                            format!("CA file {} does not exist", ca.display()),
                            Some("give a PEM file of trusted certificates".into()),
                        ));
                    }
                }
            }
            Probe::Tcp(TcpProbe { address, .. }) | Probe::Tls(TlsProbe { address, .. }) => {
                if let Err(e) = split_host_port(address) {
                    problems.push((
                        field("address"),
                        e,
                        Some(
                            "write \"host:port\", e.g. \"db.example.org:5432\" or \"[::1]:443\""
                                .into(),
                        ),
                    ));
                }
                if let Probe::Tls(t) = &mut probe
                    && let Some(ca) = &mut t.ca
                {
                    *ca = self.base.join(&*ca);
                    if !ca.is_file() {
                        problems.push((
                            field("ca"),
                            format!("CA file {} does not exist", ca.display()),
                            None,
                        ));
                    }
                }
            }
            Probe::Dns(d) => {
                if let Some(server) = &d.server
                    && server.parse::<SocketAddr>().is_err()
                    && server.parse::<std::net::IpAddr>().is_err()
                {
                    problems.push((
                        field("server"),
                        format!("`{server}` is not an IP address"),
                        Some("write \"192.0.2.53\" or \"192.0.2.53:5353\"".into()),
                    ));
                }
                if d.name.is_empty() {
                    problems.push((field("name"), "empty name".into(), None));
                }
            }
            Probe::Ping(p) => {
                if !(1..=100).contains(&p.count) {
                    problems.push((
                        field("count"),
                        "count must be between 1 and 100".into(),
                        None,
                    ));
                }
                if p.interval.std() < std::time::Duration::from_millis(10) {
                    problems.push((
                        field("interval"),
                        "interval must be at least 10ms".into(),
                        None,
                    ));
                }
                percent(Some(p.max_loss_percent), "max_loss_percent", &mut problems);
            }
            Probe::Command(c) => match (&c.argv, &c.shell) {
                (Some(_), Some(_)) => problems.push((
                    field("argv"),
                    "set `argv` or `shell`, not both".into(),
                    Some("argv runs a program directly; shell runs /bin/sh -c".into()),
                )),
                (None, None) => problems.push((
                    field("argv"),
                    "no command: set `argv` (a program and its arguments) or `shell`".into(),
                    None,
                )),
                (Some(argv), None) if argv.is_empty() || argv[0].is_empty() => problems.push((
                    field("argv"),
                    "`argv` is empty: its first item is the program".into(),
                    None,
                )),
                _ => {}
            },
            Probe::Systemd(s) => {
                if s.unit.is_empty() {
                    problems.push((field("unit"), "empty unit name".into(), None));
                }
            }
            Probe::Process(p) => {
                if p.name.is_some() == p.pidfile.is_some() {
                    problems.push((
                        field("name"),
                        "set exactly one of `name` and `pidfile`".into(),
                        None,
                    ));
                }
                if p.max.is_some_and(|m| m < p.min) {
                    problems.push((field("max"), "`max` is less than `min`".into(), None));
                }
            }
            Probe::Disk(d) => {
                if d.max_used_percent.is_none()
                    && d.min_free.is_none()
                    && d.max_inodes_used_percent.is_none()
                {
                    d.max_used_percent = Some(90.0);
                }
                percent(d.max_used_percent, "max_used_percent", &mut problems);
                percent(
                    d.max_inodes_used_percent,
                    "max_inodes_used_percent",
                    &mut problems,
                );
            }
            Probe::Memory(m) => {
                percent(Some(m.max_used_percent), "max_used_percent", &mut problems);
                percent(
                    m.max_swap_used_percent,
                    "max_swap_used_percent",
                    &mut problems,
                );
            }
            Probe::Load(l) => {
                if l.max_load1.is_none() && l.max_load5.is_none() && l.max_load15.is_none() {
                    l.max_load5 = Some(2.0);
                }
            }
            Probe::FileAge(f) => f.path = self.base.join(&f.path),
            Probe::Heartbeat(h) => {
                if h.period.std().is_zero() {
                    problems.push((
                        field("period"),
                        "`period` must be more than 0s".into(),
                        None,
                    ));
                }
                if let Some(token) = h.token.take() {
                    h.token = self.resolve_secret(src, span.clone(), &field("token"), token, env);
                }
            }
            // Checked once every job is known (`sync_checks`).
            Probe::Sync(_) => {}
        }
        let ok = problems.is_empty() && secrets_ok;
        for (k, message, hint) in problems {
            self.error(src, Some(span.clone()), &k, message, hint);
        }
        ok.then_some(probe)
    }
}

type DependsOn = (String, usize, Vec<(String, Range<usize>)>);

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

/// Remove the entry whose key or value holds `span`, from the innermost
/// table that holds it; returns the removed key.
fn drop_entry(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<String> {
    let DeValue::Table(t) = value.get_mut() else {
        return None;
    };
    let (hit, nested) = t.iter().find_map(|(k, v)| {
        let in_key = contains(&k.span(), span);
        let in_value = contains(&v.span(), span);
        (in_key || in_value).then(|| {
            (
                k.get_ref().to_string(),
                in_value && matches!(v.get_ref(), DeValue::Table(_)) && v.span() != *span,
            )
        })
    })?;
    if nested
        && let Some(inner) = t.get_mut(hit.as_str())
        && let Some(k) = drop_entry(inner, span)
    {
        return Some(k);
    }
    let old = std::mem::take(t);
    *t = old
        .into_iter()
        .filter(|(k, _)| k.get_ref().as_ref() != hit)
        .collect();
    Some(hit)
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start
        && inner.end <= outer.end
        && inner.start < outer.end.max(outer.start + 1)
}

/// Depth-first search for a cycle through `start`.
fn find_cycle(graph: &BTreeMap<String, Vec<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, Vec<String>>,
        start: &str,
        node: &str,
        path: &mut Vec<String>,
        seen: &mut Vec<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.contains(next) {
                continue;
            }
            seen.push(next.clone());
            path.push(next.clone());
            if walk(graph, start, next, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = Vec::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

/// Turn serde's wording into ours, with a hint where one helps.
fn explain(message: &str) -> (String, Option<String>) {
    let message = message.trim();
    let quoted =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let words = quoted(rest);
        if let Some((field, expected)) = words.split_first() {
            let hint = did_you_mean(field, expected.iter().map(String::as_str)).map_or_else(
                || format!("valid keys here: {}", expected.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            return (format!("unknown key `{field}`"), Some(hint));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let words = quoted(rest);
        if let Some((value, expected)) = words.split_first() {
            let hint = did_you_mean(value, expected.iter().map(String::as_str)).map_or_else(
                || format!("valid values: {}", expected.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            return (format!("unknown value `{value}`"), Some(hint));
        }
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (format!("missing key {rest}"), None);
    }
    (message.to_owned(), None)
}

/// What is wrong with an `ip_url` / `interface` pair, if anything.
fn address_problem(url: bool, interface: Option<&str>, needed: bool) -> Option<(String, String)> {
    if !needed {
        return (url || interface.is_some()).then(|| {
            (
                "`ip_url`/`interface` only serve backup = \"public-ip\"".into(),
                "remove them, or set backup = \"public-ip\"".into(),
            )
        });
    }
    let hint = || "set ip_url = \"https://ifconfig.me/ip\" or interface = \"eth0\"".to_owned();
    match (url, interface) {
        (true, Some(_)) => Some(("set `ip_url` or `interface`, not both".into(), hint())),
        (false, None) => Some((
            "this node's public address is read from `ip_url` or `interface`; neither is set"
                .into(),
            hint(),
        )),
        (false, Some(i)) if i.is_empty() || i.len() > 15 || i.contains(['/', ' ']) => Some((
            format!("`{i}` is not an interface name"),
            "write the name `ip link` shows, e.g. \"eth0\"".into(),
        )),
        _ => None,
    }
}
