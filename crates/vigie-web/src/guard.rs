//! What a browser may not do to the server. Without `[server] token` the
//! server listens only on loopback (the config requires a token beyond
//! it), where any web page the user opens can reach it:
//!
//! - DNS rebinding: a page's own name made to resolve to 127.0.0.1 lets
//!   it read the answers. Without a token, the `Host` must name this
//!   server — `localhost`, the machine's host name (Debian maps it to
//!   127.0.1.1; a page cannot be served under it) or an IP address of
//!   it — or the request gets 421. With a token, a browser cannot send it on its own, so any name
//!   may reach the server (peers and reverse proxies use DNS names).
//! - Cross-site writes: a form or a `fetch` without preflight can POST.
//!   A write that carries an `Origin` other than the server it is sent
//!   to gets 403, and the API's writes require `Content-Type:
//!   application/json`, which no page can send cross-site without a CORS
//!   preflight that this server never grants (415 otherwise).
//!
//! Heartbeat pings stay simple: curl sends neither `Origin` nor a content
//! type, and its `Host` is what the user typed.
//!
//! Every request also has [`REQUEST_TIMEOUT`] to be read and answered,
//! which bounds a body sent a byte at a time.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A request (its body included) is read and answered within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the guard needs to know of the server.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub listen: SocketAddr,
    /// A `[server] token` is configured.
    pub token: bool,
    /// The machine's host name, lower case.
    pub hostname: Option<std::sync::Arc<str>>,
    pub stats: std::sync::Arc<crate::ServerStats>,
}

impl Policy {
    pub(crate) fn new(
        listen: SocketAddr,
        token: bool,
        stats: std::sync::Arc<crate::ServerStats>,
    ) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .map(std::sync::Arc::from);
        Self {
            listen,
            token,
            hostname,
            stats,
        }
    }
}

pub(crate) async fn guard(State(policy): State<Policy>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(host) = host
        && !policy.host_allowed(host)
    {
        // Said once, then counted: a hostile page may loop.
        if policy.stats.refused_host.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                host,
                "refused a request for a foreign Host (DNS rebinding?); further ones are counted in vigie_http_refused_total"
            );
        }
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "error: this server answers only for localhost or its own address\n\
             hint: use http://127.0.0.1:PORT/, or set [server] token to reach it by name\n",
        )
            .into_response();
    }
    if is_write(req.method())
        && let Some(origin) = headers.get(header::ORIGIN)
        && !same_origin(origin.as_bytes(), host)
    {
        if policy.stats.refused_origin.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                origin = ?origin,
                "refused a cross-site write; further ones are counted in vigie_http_refused_total"
            );
        }
        return (
            StatusCode::FORBIDDEN,
            "error: cross-site requests are refused\n",
        )
            .into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "error: the request took too long to arrive\n",
        )
            .into_response(),
    }
}

/// The API's writes take JSON only (see the module docs); checked after
/// authentication so that a client without the token learns nothing.
pub(crate) fn json_write_refused(method: &Method, headers: &HeaderMap) -> Option<Response> {
    if !is_write(method) {
        return None;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    (!json).then(|| {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "error: the API takes Content-Type: application/json\n",
        )
            .into_response()
    })
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Policy {
    fn host_allowed(&self, host: &str) -> bool {
        if self.token {
            return true;
        }
        let name = strip_port(host);
        if name.eq_ignore_ascii_case("localhost")
            || self
                .hostname
                .as_deref()
                .is_some_and(|h| name.eq_ignore_ascii_case(h))
        {
            return true;
        }
        let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return false;
        };
        ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified()
    }
}

/// `host` without its `:port` (`[::1]:80` → `[::1]`).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            // `::1` without brackets has colons but no port.
            if name.starts_with('[') || !name.contains(':') {
                name
            } else {
                host
            }
        }
        _ => host,
    }
}

/// The `Origin` (`scheme://host[:port]`) names the same server as `Host`.
/// `Origin: null` (sandboxed frames, files) is never the same.
fn same_origin(origin: &[u8], host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| {
        let default_port = |scheme_port: &str| {
            // `Origin` omits the scheme's default port, `Host` may not.
            strip_port(host).eq_ignore_ascii_case(a)
                && host.strip_prefix(strip_port(host)) == Some(scheme_port)
        };
        a.eq_ignore_ascii_case(host)
            || (origin.starts_with("http://") && default_port(":80"))
            || (origin.starts_with("https://") && default_port(":443"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, token: bool) -> Policy {
        Policy {
            listen: listen.parse().unwrap(),
            token,
            hostname: Some("backup-1".into()),
            stats: std::sync::Arc::default(),
        }
    }

    #[test]
    fn without_a_token_only_local_names_and_own_addresses_pass() {
        let p = policy("127.0.0.1:9470", false);
        for ok in [
            "localhost",
            "LOCALHOST:9470",
            "127.0.0.1:9470",
            "127.0.0.2",
            "[::1]:9470",
            "::1",
            "Backup-1:9470",
        ] {
            assert!(p.host_allowed(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9470",
            "localhost.evil.example",
            "backup-1.evil.example",
            "10.0.0.1",
            "",
        ] {
            assert!(!p.host_allowed(refused), "{refused}");
        }
        assert!(policy("10.0.0.5:9470", false).host_allowed("10.0.0.5:9470"));
        assert!(policy("0.0.0.0:9470", false).host_allowed("10.0.0.5"));
        assert!(policy("127.0.0.1:9470", true).host_allowed("monitor.example"));
    }

    #[test]
    fn origin_must_name_the_host() {
        let same = |o: &str, h: &str| same_origin(o.as_bytes(), Some(h));
        assert!(same("http://127.0.0.1:9470", "127.0.0.1:9470"));
        assert!(same("https://Monitor.example", "monitor.example"));
        assert!(same("http://monitor.example", "monitor.example:80"));
        assert!(!same("http://evil.example", "127.0.0.1:9470"));
        assert!(!same("http://127.0.0.1:9471", "127.0.0.1:9470"));
        assert!(!same("https://monitor.example", "monitor.example:80"));
        assert!(!same("null", "127.0.0.1:9470"));
        assert!(!same_origin(b"http://127.0.0.1:9470", None));
    }
}
