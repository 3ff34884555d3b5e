//! `[[remote_write]]`: where the daemon sends, every `interval`, the
//! samples its `/metrics` page shows (Prometheus remote write 1.0), for
//! users who keep their metrics in a Prometheus, VictoriaMetrics or Mimir
//! of their own. Sent by `vigie-remote-write`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;
use vigie_core::{ByteSize, Duration};

use crate::model::{HttpUrl, RemoteAuth, RemoteWrite};
use crate::secret::Secret;

use super::{EnvLookup, Loader};

/// How often the samples are sent.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// How long one request may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// What may wait while the remote does not take it: beyond, the oldest
/// batches are dropped (and counted).
const DEFAULT_QUEUE: ByteSize = ByteSize(16 << 20);
/// The smallest queue: one batch of a busy node must fit.
const MIN_QUEUE: ByteSize = ByteSize(256 << 10);

/// A Prometheus remote-write endpoint (`[[remote_write]]`), sent the
/// samples of vigie's `/metrics` (its checks, jobs, engine and the
/// host's node_exporter families) every `interval`, each series with
/// the `labels` below. Retried with backoff on network errors, 429 and
/// 5xx; a batch the endpoint refuses (another 4xx) is dropped and
/// counted (`vigie_remote_write_dropped_total`).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RemoteWrite")]
pub(super) struct RawRemoteWrite {
    /// The endpoint: Prometheus's `http://HOST:9090/api/v1/write`
    /// (started with `--web.enable-remote-write-receiver`),
    /// VictoriaMetrics' `http://HOST:8428/api/v1/write`, Mimir's
    /// `https://HOST/api/v1/push`. No credentials in it: use
    /// `basic_auth` or `bearer_token`.
    #[schemars(with = "String")]
    url: Spanned<HttpUrl>,
    /// The name of this endpoint in vigie's metrics
    /// (`vigie_remote_write_*{remote="NAME"}`) and logs. Default: the
    /// URL's host and port.
    #[schemars(with = "Option<String>")]
    name: Option<Spanned<String>>,
    /// How often the samples are collected and sent.
    #[schemars(with = "Option<Duration>", extend("default" = DEFAULT_INTERVAL))]
    interval: Option<Spanned<Duration>>,
    /// How long one request may take before it is abandoned (and retried).
    #[schemars(with = "Option<Duration>", extend("default" = DEFAULT_TIMEOUT))]
    timeout: Option<Spanned<Duration>>,
    /// How much (compressed) may wait while the endpoint is down: beyond
    /// it the oldest batches are dropped and counted. At least 256KiB.
    #[schemars(with = "Option<ByteSize>", extend("default" = DEFAULT_QUEUE))]
    queue: Option<Spanned<ByteSize>>,
    /// Labels added to every series, e.g. `{ instance = "web1", env =
    /// "prod" }`. `instance` defaults to the node's name and `job` to
    /// `"vigie"`; a series' own label of the same name wins.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    labels: Option<Spanned<BTreeMap<String, String>>>,
    /// Sent as `Authorization: Bearer …`: `{ env = "PROM_TOKEN" }` or
    /// `{ file = … }`.
    #[schemars(with = "Option<Secret>")]
    bearer_token: Option<Spanned<Secret>>,
    /// HTTP basic authentication: `{ user = "vigie", password = { env =
    /// "PROM_PASSWORD" } }`.
    #[schemars(with = "Option<RawBasicAuth>")]
    basic_auth: Option<Spanned<RawBasicAuth>>,
    /// CA certificates (PEM) trusted beside the system's, for an endpoint
    /// whose certificate a private CA signed.
    ca: Option<PathBuf>,
}

/// A user and its password (a secret).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BasicAuth")]
pub(super) struct RawBasicAuth {
    /// The user name.
    user: String,
    /// The password: `{ env = "PROM_PASSWORD" }` or `{ file = … }`.
    password: Secret,
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, and not one of the
/// names Prometheus reserves (`__…`).
fn label_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// The URL's host and port, the default name.
fn default_name(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// A problem: its message, its hint, its place (the table's when `None`).
type Problem = (String, Option<String>, Option<Range<usize>>);

/// What `raw` sets out of bounds: its intervals, its queue, its URL and
/// its credentials. (Its name, labels and secrets are checked apart.)
fn settings_problems(
    raw: &RawRemoteWrite,
    url: &url::Url,
    url_span: &Range<usize>,
) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    if !url.username().is_empty() || url.password().is_some() {
        problems.push((
            "the URL holds credentials, which would show in logs and `show-config`".into(),
            Some("remove them from `url` and set basic_auth = { user = \"…\", password = { env = \"…\" } }".into()),
            Some(url_span.clone()),
        ));
    }
    let interval = raw
        .interval
        .as_ref()
        .map_or(DEFAULT_INTERVAL, |d| *d.get_ref());
    if interval.std() < std::time::Duration::from_secs(1) {
        problems.push((
            "`interval` is at least 1s".into(),
            Some(format!("the default is {DEFAULT_INTERVAL}")),
            raw.interval.as_ref().map(Spanned::span),
        ));
    }
    let timeout = raw
        .timeout
        .as_ref()
        .map_or(DEFAULT_TIMEOUT, |d| *d.get_ref());
    if timeout.std() < std::time::Duration::from_millis(100) {
        problems.push((
            "`timeout` is at least 100ms".into(),
            Some(format!("the default is {DEFAULT_TIMEOUT}")),
            raw.timeout.as_ref().map(Spanned::span),
        ));
    }
    let queue = raw.queue.as_ref().map_or(DEFAULT_QUEUE, |q| *q.get_ref());
    if queue < MIN_QUEUE {
        problems.push((
            format!("`queue` is at least {MIN_QUEUE}"),
            Some(format!("the default is {DEFAULT_QUEUE}")),
            raw.queue.as_ref().map(Spanned::span),
        ));
    }
    if raw.bearer_token.is_some() && raw.basic_auth.is_some() {
        problems.push((
            "set `bearer_token` or `basic_auth`, not both".into(),
            Some("the endpoint takes one Authorization header".into()),
            None,
        ));
    }
    if let Some(b) = &raw.basic_auth
        && (b.get_ref().user.is_empty() || b.get_ref().user.contains(':'))
    {
        problems.push((
            "`basic_auth.user` is empty or holds `:`".into(),
            None,
            Some(b.span()),
        ));
    }
    let credentials = raw.bearer_token.is_some() || raw.basic_auth.is_some();
    if credentials && url.scheme() != "https" && !is_loopback(url) {
        problems.push((
            "credentials are sent to an endpoint beyond loopback over plain http".into(),
            Some("use https:// (with `ca` for a private CA)".into()),
            Some(url_span.clone()),
        ));
    }
    problems
}

/// The labels every series gets: the written ones (each checked), and
/// `instance` (the node's name) and `job` unless written.
fn labels(
    raw: Option<Spanned<BTreeMap<String, String>>>,
    node: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let span = raw.as_ref().map(Spanned::span);
    let mut labels = raw.map(Spanned::into_inner).unwrap_or_default();
    for (k, v) in &labels {
        if !label_name_ok(k) {
            problems.push((
                format!("`{k}` is not a label name"),
                Some("a label name is letters, digits and `_`, not starting with a digit nor with `__`".into()),
                span.clone(),
            ));
        } else if v.is_empty() {
            problems.push((
                format!("label `{k}` is empty"),
                Some(
                    "Prometheus drops a label whose value is empty: remove it, or give it a value"
                        .into(),
                ),
                span.clone(),
            ));
        }
    }
    labels
        .entry("instance".into())
        .or_insert_with(|| node.to_owned());
    labels.entry("job".into()).or_insert_with(|| "vigie".into());
    labels
}

impl Loader {
    /// `[[remote_write]]` tables, as they are read.
    pub(super) fn parse_remote_writes(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for item in self.array_of_tables(src, value, "remote_write") {
            let table = item.span();
            if let Some(r) = self.de::<RawRemoteWrite>(src, item, "remote_write") {
                self.raw.remote_writes.push((src, table, r));
            }
        }
    }

    pub(super) fn resolve_remote_writes(
        &mut self,
        env: EnvLookup<'_>,
        node: &str,
    ) -> Vec<RemoteWrite> {
        let mut out: Vec<RemoteWrite> = Vec::new();
        for (src, table, mut raw) in std::mem::take(&mut self.raw.remote_writes) {
            let url_span = raw.url.span();
            let url = raw.url.get_ref().clone();
            let name = raw
                .name
                .as_ref()
                .map_or_else(|| default_name(&url.0), |n| n.get_ref().clone());
            let key = format!("remote_write \"{name}\"");
            let mut problems = settings_problems(&raw, &url.0, &url_span);
            let name_span = raw.name.as_ref().map(Spanned::span);
            // The default, `host:port`, reads back as a name.
            if !vigie_core::is_valid_name(&name.replace([':', '[', ']'], "-")) {
                problems.push((
                    "a remote_write name uses letters, digits, `-`, `_`, `.` and `:`".into(),
                    None,
                    name_span.clone(),
                ));
            }
            if out.iter().any(|o| o.name == name) {
                problems.push((
                    format!("remote_write `{name}` is declared twice"),
                    Some("give each endpoint its own `name`".into()),
                    name_span.or_else(|| Some(url_span.clone())),
                ));
            }
            let labels = labels(raw.labels.take(), node, &mut problems);
            let auth = self.remote_auth(src, &key, &mut raw, env);
            let ok = problems.is_empty();
            for (message, hint, span) in problems {
                self.error(
                    src,
                    Some(span.unwrap_or_else(|| table.clone())),
                    &key,
                    message,
                    hint,
                );
            }
            if let (true, Ok(auth)) = (ok, auth) {
                out.push(RemoteWrite {
                    name,
                    url,
                    interval: raw.interval.map_or(DEFAULT_INTERVAL, Spanned::into_inner),
                    timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, Spanned::into_inner),
                    queue: raw.queue.map_or(DEFAULT_QUEUE, Spanned::into_inner),
                    labels,
                    auth,
                    ca: raw.ca.map(|c| self.base.join(c)),
                });
            }
        }
        out
    }

    /// The endpoint's credentials (if any), their secrets read; `Err`
    /// when a secret cannot be (the error is reported).
    fn remote_auth(
        &mut self,
        src: usize,
        key: &str,
        raw: &mut RawRemoteWrite,
        env: EnvLookup<'_>,
    ) -> Result<Option<RemoteAuth>, ()> {
        match (raw.bearer_token.take(), raw.basic_auth.take()) {
            (Some(t), _) => {
                let span = t.span();
                let key = format!("{key}.bearer_token");
                let token = self
                    .resolve_secret(src, span, &key, t.into_inner(), env)
                    .ok_or(())?;
                Ok(Some(RemoteAuth::Bearer(token)))
            }
            (None, Some(b)) => {
                let span = b.span();
                let b = b.into_inner();
                let key = format!("{key}.basic_auth.password");
                let password = self
                    .resolve_secret(src, span, &key, b.password, env)
                    .ok_or(())?;
                Ok(Some(RemoteAuth::Basic {
                    user: b.user,
                    password,
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        for ok in ["instance", "_x", "env_2", "A"] {
            assert!(label_name_ok(ok), "{ok}");
        }
        for bad in ["", "2x", "a-b", "__name__", "__x", "é"] {
            assert!(!label_name_ok(bad), "{bad}");
        }
    }
}
