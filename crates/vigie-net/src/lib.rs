//! Networking helpers shared by probes, notifiers, DNS failover and the
//! CLI: TLS client configurations, the redirect policy of clients that
//! carry keys, the command runner, and errors on one line. Nothing here
//! knows about checks.

pub mod command;
mod tls;

pub use tls::{
    Alpn, TlsError, TlsOptions, pinned_client_config, private_ca_client_config, tls_client_config,
};

/// The redirect policy of clients that carry keys (notifiers, DNS APIs):
/// follow a redirect only on the same host — same scheme and port, or an
/// upgrade from `http` to `https` (an `ip_url` often does). reqwest
/// drops `Authorization` on a cross-host redirect but forwards every
/// other header (`X-Gotify-Key`, OVH's signature, a webhook's headers),
/// and a key in the URL would go along. A refused redirect is answered
/// as the 3xx it is.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first();
        let to = attempt.url();
        let same = first.is_some_and(|f| {
            f.host_str() == to.host_str()
                && ((f.scheme() == to.scheme()
                    && f.port_or_known_default() == to.port_or_known_default())
                    || (f.scheme() == "http" && to.scheme() == "https"))
        });
        if !same {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// An error and its causes on one line: `connect: Connection refused`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
