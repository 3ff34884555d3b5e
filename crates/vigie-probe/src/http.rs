//! The `http` probe: one request, judged on status, body, response time
//! and certificate expiry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vigie_config::HttpProbe;
use vigie_core::{Outcome, Timestamp};

use crate::tls::{TlsSettings, days_left, judge_expiry};
use crate::{PrepareError, Shared, chain, human};

/// HTTP clients keyed by what makes them differ, so that checks against
/// the same servers share connection pools.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    follow_redirects: bool,
    /// A check that sends secrets (a header or query value given as
    /// `{ env }`/`{ file }`) follows redirects only on the same origin:
    /// reqwest forwards every header but `Authorization` and `Cookie` to
    /// another host, and the query would go along in the URL.
    same_origin_only: bool,
    ca: Option<PathBuf>,
    accept_invalid: bool,
}

#[derive(Default)]
pub(crate) struct Clients {
    built: Mutex<HashMap<ClientKey, reqwest::Client>>,
}

pub(crate) struct Prepared {
    spec: HttpProbe,
    client: reqwest::Client,
    timeout: Duration,
}

pub(crate) fn prepare(
    spec: &HttpProbe,
    timeout: Duration,
    shared: &Shared,
) -> Result<Prepared, PrepareError> {
    let key = ClientKey {
        follow_redirects: spec.follow_redirects,
        same_origin_only: spec
            .headers
            .values()
            .chain(spec.query.values())
            .any(|v| matches!(v, vigie_config::MaybeSecret::Secret(_))),
        ca: spec.ca.clone(),
        accept_invalid: spec.dangerously_accept_invalid_certs,
    };
    let mut clients = shared
        .http
        .built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let client = if let Some(c) = clients.get(&key) {
        c.clone()
    } else {
        let tls = shared.tls.get(&TlsSettings {
            ca: spec.ca.clone(),
            accept_invalid: spec.dangerously_accept_invalid_certs,
            alpn_http: true,
        })?;
        let redirects = match (key.follow_redirects, key.same_origin_only) {
            (false, _) => reqwest::redirect::Policy::none(),
            (true, true) => vigie_net::same_origin_redirects(),
            (true, false) => reqwest::redirect::Policy::limited(10),
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .tls_info(true)
            .redirect(redirects)
            // A redirect must not carry the URL (and a key in its query)
            // to the next server.
            .referer(false)
            .user_agent(concat!("vigie/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| PrepareError(format!("HTTP client: {}", chain(&e))))?;
        clients.insert(key, client.clone());
        client
    };
    Ok(Prepared {
        spec: spec.clone(),
        client,
        timeout,
    })
}

impl Prepared {
    pub(crate) async fn run(&self) -> Outcome {
        let spec = &self.spec;
        let method = reqwest::Method::from_bytes(spec.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let mut url = spec.url.0.clone();
        if !spec.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(spec.query.iter().map(|(k, v)| (k, v.expose())));
        }
        let mut req = self.client.request(method, url).timeout(self.timeout);
        for (k, v) in &spec.headers {
            req = req.header(k, v.expose());
        }

        if let Some(body) = &spec.body {
            req = req.body(body.clone());
        }
        let start = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::fail(describe(e)),
        };
        let status = resp.status().as_u16();
        let days = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .and_then(|der| days_left(der, Timestamp::now()));
        let needs_body = spec.body_contains.is_some() || spec.body_regex.is_some();
        let body = if needs_body {
            match read_body(resp, spec.max_body.0).await {
                Ok(b) => Some(b),
                Err(msg) => {
                    return Outcome::fail(msg).with_metric("status_code", f64::from(status));
                }
            }
        } else {
            None
        };
        let latency = start.elapsed();
        let outcome = judge(spec, status, body.as_deref(), latency)
            .with_metric("status_code", f64::from(status))
            .with_metric("latency_seconds", latency.as_secs_f64());
        judge_expiry(outcome, days, spec.cert_min_days)
    }
}

async fn read_body(mut resp: reqwest::Response, max: u64) -> Result<String, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > max {
                    return Err(format!(
                        "response body is larger than max_body ({}); raise max_body or check a smaller page",
                        vigie_core::ByteSize(max)
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(String::from_utf8_lossy(&body).into_owned()),
            Err(e) => return Err(format!("reading the body: {}", describe(e))),
        }
    }
}

fn judge(spec: &HttpProbe, status: u16, body: Option<&str>, latency: Duration) -> Outcome {
    let status_ok = if spec.expect_status.is_empty() {
        status < 400
    } else {
        spec.expect_status.contains(&status)
    };
    if !status_ok {
        let expected = if spec.expect_status.is_empty() {
            "below 400".to_owned()
        } else {
            spec.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        };
        return Outcome::fail(format!("status {status}, expected {expected}"));
    }
    if let (Some(needle), Some(body)) = (&spec.body_contains, body)
        && !body.contains(needle.as_str())
    {
        return Outcome::fail(format!(
            "status {status} but the body does not contain {needle:?}"
        ));
    }
    if let (Some(re), Some(body)) = (&spec.body_regex, body)
        && !re.0.is_match(body)
    {
        return Outcome::fail(format!(
            "status {status} but the body does not match /{}/",
            re.0.as_str()
        ));
    }
    if let Some(max) = spec.max_response_time
        && latency > max.std()
    {
        return Outcome::fail(format!(
            "status {status} in {}, slower than {max}",
            human(latency)
        ));
    }
    Outcome::ok(format!("status {status} in {}", human(latency)))
}

/// What went wrong, with the URL but without its query or password: they
/// may hold a key, and the message goes to the store, the API and
/// notifications.
fn describe(mut e: reqwest::Error) -> String {
    if let Some(url) = e.url_mut() {
        url.set_query(None);
        let _ = url.set_password(None);
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    format!("{what}: {}", chain(&e))
}
