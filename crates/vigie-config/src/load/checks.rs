//! Checks: `[[check]]` with defaults, dependencies and each probe's settings.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;
use vigie_core::Duration;

use crate::diag::{Level, Location, unknown};
use crate::model::{
    Check, Flapping, HeartbeatProbe, Probe, ProbeKind, RuleProbe, TcpProbe, TlsProbe,
};
use crate::rule::Rule;
use crate::secret::{Secret, SecretSource};

use super::{EnvLookup, FlappingSetting, Loader, RawCheck, RawDefaults, split_host_port};

impl Loader {
    pub(super) fn resolve_checks(&mut self, env: EnvLookup<'_>) -> Vec<Check> {
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
            let (every, timeout, retry_every) =
                self.check_timing(src, &key, &raw, &defaults, entry.table.clone());
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
                    None => d.unwrap_or(super::DEFAULT_THRESHOLD),
                }
            };
            let fail_after = threshold(&raw.fail_after, defaults.fail_after, "fail_after");
            let recover_after =
                threshold(&raw.recover_after, defaults.recover_after, "recover_after");
            for a in &raw.actions {
                self.raw.action_refs.push((src, name.clone(), a.clone()));
            }
            let flapping = self.check_flapping(src, &key, &raw);
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

    /// `every`, `timeout` and `retry_every`, defaults applied and checked
    /// against each other (`table`: the check's, where a problem with a
    /// value from `[defaults]` is reported).
    fn check_timing(
        &mut self,
        src: usize,
        key: &str,
        raw: &RawCheck,
        defaults: &RawDefaults,
        table: std::ops::Range<usize>,
    ) -> (Duration, Duration, Option<Duration>) {
        let every = raw
            .every
            .as_ref()
            .map_or(defaults.every.unwrap_or(super::DEFAULT_EVERY), |e| {
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
            .unwrap_or_else(|| every.min(super::DEFAULT_TIMEOUT_CAP));
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
            self.report(
            Level::Warning,
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
            // From [defaults], the problem is this check's: point at it.
            let (span, whence) = match &raw.retry_every {
                Some(r) => (r.span(), ""),
                None => (table, " (from [defaults])"),
            };
            let field = format!("{key}.retry_every");
            if retry.std() < std::time::Duration::from_millis(100) {
                self.error(
                    src,
                    Some(span),
                    &field,
                    format!("`retry_every`{whence} must be at least 100ms"),
                    None,
                );
            } else if retry > every {
                self.error(
                src,
                Some(span),
                &field,
                format!("retry_every{whence} ({retry}) is longer than every ({every})"),
                Some(
                    "retry_every re-runs a failed check sooner than every, until fail_after confirms it: make it shorter than every, or remove it".into(),
                ),
            );
            }
        }
        (every, timeout, retry_every)
    }

    /// `flapping`: on by default, off, or a valid rule.
    fn check_flapping(&mut self, src: usize, key: &str, raw: &RawCheck) -> Option<Flapping> {
        match raw.flapping.as_ref().map(Spanned::get_ref) {
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
        }
    }

    pub(super) fn validate_dependencies(
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
                    let (message, hint) = unknown(
                        "check",
                        dep,
                        names.iter().copied(),
                        "depends_on names other checks of this config",
                    );
                    let at = format!("check \"{owner}\".depends_on");
                    self.error(*src, Some(span.clone()), &at, message, hint);
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

    pub(super) fn resolve_probe(
        &mut self,
        src: usize,
        table: Range<usize>,
        key: &str,
        raw: &mut RawCheck,
        env: EnvLookup<'_>,
    ) -> Option<Probe> {
        let (mut probe, span) = self.one_probe(src, table, key, raw)?;
        let at = ProbeAt {
            src,
            span,
            key: key.to_owned(),
            kind: probe.kind(),
        };
        let secrets_ok = self.probe_secrets(&at, &mut probe, env);
        let mut problems: Problems = Vec::new();
        match probe {
            Probe::Rule(ref mut r) => {
                if !self.rule_settings(&at, r) {
                    return None;
                }
            }
            Probe::Http(_) | Probe::Tcp(_) | Probe::Tls(_) | Probe::Dns(_) | Probe::Ping(_) => {
                self.network_settings(&at, &mut probe, &mut problems);
            }
            _ => self.host_settings(&at, &mut probe, env, &mut problems),
        }
        let ok = problems.is_empty() && secrets_ok;
        for (k, message, hint) in problems {
            self.error(src, Some(at.span.clone()), &k, message, hint);
        }
        ok.then_some(probe)
    }

    /// The check's one probe and its span; none or several is an error.
    fn one_probe(
        &mut self,
        src: usize,
        table: Range<usize>,
        key: &str,
        raw: &mut RawCheck,
    ) -> Option<(Probe, Range<usize>)> {
        let mut found = raw.take_probes();
        if found.len() > 1 {
            let kinds: Vec<&str> = found.iter().map(|(p, _)| p.kind().name()).collect();
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
        let Some(found) = found.pop() else {
            self.error(
                src,
                Some(table),
                key,
                "no probe: say what to check".into(),
                Some(format!("add one of: {}", ProbeKind::NAMES.join(", "))),
            );
            return None;
        };
        Some(found)
    }

    /// Header values, query values and a command's environment may be
    /// secrets: read them; false when one cannot be read.
    fn probe_secrets(&mut self, at: &ProbeAt, probe: &mut Probe, env: EnvLookup<'_>) -> bool {
        let mut secrets_ok = true;
        let maybe_secrets = match probe {
            Probe::Http(h) => vec![("headers", &mut h.headers), ("query", &mut h.query)],
            Probe::Command(c) => vec![("env", &mut c.env)],
            _ => Vec::new(),
        };
        for (name, values) in maybe_secrets {
            for (k, v) in values.iter_mut() {
                if let Some(secret) = v.secret_mut() {
                    let taken =
                        std::mem::replace(secret, Secret::new(SecretSource::Env(String::new())));
                    let field = format!("{}.{k}", at.field(name));
                    match self.resolve_secret(at.src, at.span.clone(), &field, taken, env) {
                        Some(resolved) => *secret = resolved,
                        None => secrets_ok = false,
                    }
                }
            }
        }
        secrets_ok
    }

    /// The settings of a probe that reaches over the network.
    fn network_settings(&mut self, at: &ProbeAt, probe: &mut Probe, problems: &mut Problems) {
        match &mut *probe {
            Probe::Http(h) => {
                for s in &h.expect_status {
                    if !(100..=599).contains(s) {
                        problems.push((
                            at.field("expect_status"),
                            format!("{s} is not an HTTP status"),
                            Some("statuses run from 100 to 599".into()),
                        ));
                    }
                }
                if let Some(ca) = &mut h.ca {
                    *ca = self.base.join(&*ca);
                    if !ca.is_file() {
                        problems.push((
                            at.field("ca"),
                            format!("CA file {} does not exist", ca.display()),
                            Some("give a PEM file of trusted certificates".into()),
                        ));
                    }
                }
            }
            Probe::Tcp(TcpProbe { address, .. }) | Probe::Tls(TlsProbe { address, .. }) => {
                if let Err(e) = split_host_port(address) {
                    problems.push((
                        at.field("address"),
                        e,
                        Some(
                            "write \"host:port\", e.g. \"db.example.org:5432\" or \"[::1]:443\""
                                .into(),
                        ),
                    ));
                }
                if let Probe::Tls(t) = &mut *probe
                    && let Some(ca) = &mut t.ca
                {
                    *ca = self.base.join(&*ca);
                    if !ca.is_file() {
                        problems.push((
                            at.field("ca"),
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
                        at.field("server"),
                        format!("`{server}` is not an IP address"),
                        Some("write \"192.0.2.53\" or \"192.0.2.53:5353\"".into()),
                    ));
                }
                if d.name.is_empty() {
                    problems.push((at.field("name"), "empty name".into(), None));
                }
            }
            Probe::Ping(p) => {
                if !(1..=100).contains(&p.count) {
                    problems.push((
                        at.field("count"),
                        "count must be between 1 and 100".into(),
                        None,
                    ));
                }
                if p.interval.std() < std::time::Duration::from_millis(10) {
                    problems.push((
                        at.field("interval"),
                        "interval must be at least 10ms".into(),
                        None,
                    ));
                }
                percent(
                    Some(p.max_loss_percent),
                    at.field("max_loss_percent"),
                    problems,
                );
            }
            _ => {}
        }
    }

    /// The settings of a probe of this host (commands, units, processes,
    /// resources, files, heartbeats, replication).
    fn host_settings(
        &mut self,
        at: &ProbeAt,
        probe: &mut Probe,
        env: EnvLookup<'_>,
        problems: &mut Problems,
    ) {
        match probe {
            Probe::Command(c) => match (&c.argv, &c.shell) {
                (Some(_), Some(_)) => problems.push((
                    at.field("argv"),
                    "set `argv` or `shell`, not both".into(),
                    Some("argv runs a program directly; shell runs /bin/sh -c".into()),
                )),
                (None, None) => problems.push((
                    at.field("argv"),
                    "no command: set `argv` (a program and its arguments) or `shell`".into(),
                    None,
                )),
                (Some(argv), None) if argv.is_empty() || argv[0].is_empty() => problems.push((
                    at.field("argv"),
                    "`argv` is empty: its first item is the program".into(),
                    None,
                )),
                _ => {}
            },
            Probe::Systemd(s) if s.unit.is_empty() => {
                problems.push((at.field("unit"), "empty unit name".into(), None));
            }
            Probe::Process(p) => {
                if p.name.is_some() == p.pidfile.is_some() {
                    problems.push((
                        at.field("name"),
                        "set exactly one of `name` and `pidfile`".into(),
                        None,
                    ));
                }
                if p.max.is_some_and(|m| m < p.min) {
                    problems.push((at.field("max"), "`max` is less than `min`".into(), None));
                }
            }
            Probe::Disk(d) => {
                if d.max_used_percent.is_none()
                    && d.min_free.is_none()
                    && d.max_inodes_used_percent.is_none()
                {
                    d.max_used_percent = Some(90.0);
                }
                percent(d.max_used_percent, at.field("max_used_percent"), problems);
                percent(
                    d.max_inodes_used_percent,
                    at.field("max_inodes_used_percent"),
                    problems,
                );
            }
            Probe::Memory(m) => {
                percent(
                    Some(m.max_used_percent),
                    at.field("max_used_percent"),
                    problems,
                );
                percent(
                    m.max_swap_used_percent,
                    at.field("max_swap_used_percent"),
                    problems,
                );
            }
            Probe::Load(l)
                if l.max_load1.is_none() && l.max_load5.is_none() && l.max_load15.is_none() =>
            {
                l.max_load5 = Some(2.0);
            }
            Probe::FileAge(f) => f.path = self.base.join(&f.path),
            Probe::Heartbeat(h) => {
                heartbeat_timing(h, at, problems);
                if h.max_duration.is_some_and(|d| d.std().is_zero()) {
                    problems.push((
                        at.field("max_duration"),
                        "`max_duration` must be more than 0s".into(),
                        None,
                    ));
                }
                if let Some(token) = h.token.take() {
                    h.token = self.resolve_secret(
                        at.src,
                        at.span.clone(),
                        &at.field("token"),
                        token,
                        env,
                    );
                }
            }
            // Sync: checked once every job is known (`sync_checks`); the
            // network probes: `network_settings`.
            _ => {}
        }
    }
}

/// The series a check records (`vigie_engine::series`).
const CHECK_SERIES: [&str; 4] = [
    "vigie_check_up",
    "vigie_check_failing",
    "vigie_check_duration_seconds",
    "vigie_check_value",
];

impl Loader {
    /// A rule's expression, parsed: an error points at its character in
    /// the file. Its window must be one the series store keeps.
    fn rule_settings(&mut self, at: &ProbeAt, r: &mut RuleProbe) -> bool {
        let span = r.expr.span();
        let field = at.field("expr");
        let rule = match r.expr.get_ref().parse::<Rule>() {
            Ok(rule) => rule,
            Err(e) => {
                let raw = self.sources[at.src].text.get(span.clone()).unwrap_or("");
                let pos = span.start + offset_in_toml_string(raw, e.at);
                self.error(at.src, Some(pos..pos + 1), &field, e.message, e.hint);
                return false;
            }
        };
        // Another name under the prefix is a typo that would match
        // nothing for ever.
        let name = &rule.selector.name;
        if name.starts_with("vigie_check_") && !CHECK_SERIES.contains(&name.as_str()) {
            let hint = crate::diag::did_you_mean(name, CHECK_SERIES).map_or_else(
                || format!("a check's series are {}", CHECK_SERIES.join(", ")),
                |m| {
                    format!(
                        "did you mean `{m}`? a check's series are {}",
                        CHECK_SERIES.join(", ")
                    )
                },
            );
            self.error(
                at.src,
                Some(span),
                &field,
                format!("no check records a series named `{name}`"),
                Some(hint),
            );
            return false;
        }
        let window = rule.form.window();
        if window > self.series_keep {
            let keep = self.series_keep;
            self.error(
                at.src,
                Some(span),
                &field,
                format!("the window `{window}` is longer than the series are kept (`{keep}`)"),
                Some(format!(
                    "shorten the window to at most {keep}, or keep the series longer: [series] retention.hour"
                )),
            );
            return false;
        }
        if rule.selector.name.starts_with("vigie_check_")
            && let Some((_, check)) = rule.selector.labels.iter().find(|(k, _)| k == "check")
        {
            self.raw
                .rule_refs
                .push((at.src, span, field, check.clone()));
        }
        r.rule = Some(rule);
        true
    }

    /// A rule over a check's series names a check of this config.
    pub(super) fn check_rule_refs(&mut self, checks: &[Check]) {
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        for (src, span, key, name) in std::mem::take(&mut self.raw.rule_refs) {
            if names.contains(&name.as_str()) {
                continue;
            }
            let (message, hint) = unknown(
                "check",
                &name,
                names.iter().copied(),
                "a rule over vigie_check_* series reads the series of a check of this config",
            );
            self.error(src, Some(span), &key, message, hint);
        }
    }
}

/// Where the character at byte `at` of a TOML string's value is, from
/// the start of the string as written (`raw`, quotes included): past
/// the quotes, and past the escapes of a basic string.
fn offset_in_toml_string(raw: &str, at: usize) -> usize {
    let quotes = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|q| raw.starts_with(q))
        .unwrap_or("");
    let body = &raw[quotes.len()..];
    if !quotes.starts_with('"') {
        return quotes.len() + at.min(body.len());
    }
    // A basic string: count the decoded bytes as the escapes go by.
    let mut decoded = 0;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if decoded >= at {
            return quotes.len() + i;
        }
        if c == '\\' {
            let len = match chars.next() {
                Some((_, 'u')) => 4,
                Some((_, 'U')) => 8,
                _ => 0,
            };
            for _ in 0..len {
                chars.next();
            }
            decoded += 1;
        } else {
            decoded += c.len_utf8();
        }
    }
    quotes.len()
}

/// A heartbeat expects its pings either every `period` or on a cron
/// `schedule` (in `timezone`), never both.
fn heartbeat_timing(h: &HeartbeatProbe, at: &ProbeAt, problems: &mut Problems) {
    let example = "e.g. period = \"1d\", or schedule = \"0 2 * * *\" (02:00 every day)";
    match (h.period, &h.schedule) {
        (Some(_), Some(_)) => problems.push((
            at.field("schedule"),
            "set `period` or `schedule`, not both".into(),
            Some(example.into()),
        )),
        (None, None) => problems.push((
            at.field("period"),
            "a heartbeat needs `period` or `schedule`".into(),
            Some(example.into()),
        )),
        (Some(p), None) if p.std().is_zero() => problems.push((
            at.field("period"),
            "`period` must be more than 0s".into(),
            None,
        )),
        _ => {}
    }
    if let Some(tz) = &h.timezone {
        if h.schedule.is_none() {
            problems.push((
                at.field("timezone"),
                "`timezone` applies to `schedule`, which is not set".into(),
                None,
            ));
        } else if jiff::tz::TimeZone::get(tz).is_err() {
            problems.push((
                at.field("timezone"),
                format!("unknown time zone `{tz}`"),
                Some("use an IANA name such as \"Europe/Paris\"; is tzdata installed?".into()),
            ));
        }
    }
}

/// Where a check's probe is written, and the key its settings sit under.
struct ProbeAt {
    src: usize,
    span: Range<usize>,
    /// The check's key, `check "web"`.
    key: String,
    kind: ProbeKind,
}

impl ProbeAt {
    /// The key of one of the probe's settings, `check "web".http.url`.
    fn field(&self, setting: &str) -> String {
        format!("{}.{}.{setting}", self.key, self.kind)
    }
}

/// Problems with a probe's settings: the key, the message, the hint.
type Problems = Vec<(String, String, Option<String>)>;

/// A percentage setting out of 0..=100.
fn percent(v: Option<f64>, field: String, problems: &mut Problems) {
    if let Some(v) = v
        && !(0.0..=100.0).contains(&v)
    {
        problems.push((
            field,
            format!("{v} is not a percentage between 0 and 100"),
            None,
        ));
    }
}

type DependsOn = (String, usize, Vec<(String, Range<usize>)>);

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
