//! The TLS client configurations of probes, built once per distinct
//! setting (by `vigie_net`), and the `tls` probe.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use vigie_config::TlsProbe;
use vigie_core::{Outcome, Timestamp};
use vigie_net::{Alpn, TlsOptions};

use crate::{PrepareError, Shared, chain};

/// What decides a TLS client configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TlsSettings {
    pub ca: Option<PathBuf>,
    pub accept_invalid: bool,
    pub alpn_http: bool,
}

/// TLS configurations, built once per distinct setting.
#[derive(Default)]
pub(crate) struct Configs {
    built: Mutex<HashMap<TlsSettings, Arc<ClientConfig>>>,
}

impl Configs {
    pub(crate) fn get(&self, s: &TlsSettings) -> Result<Arc<ClientConfig>, PrepareError> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = built.get(s) {
            return Ok(c.clone());
        }
        let config = Arc::new(vigie_net::tls_client_config(&TlsOptions {
            ca: s.ca.as_deref(),
            dangerously_accept_invalid: s.accept_invalid,
            alpn: if s.alpn_http { Alpn::Http } else { Alpn::None },
        })?);
        built.insert(s.clone(), config.clone());
        Ok(config)
    }
}

/// Days left before the leaf certificate expires (negative once expired).
pub(crate) fn days_left(der: &[u8], now: Timestamp) -> Option<f64> {
    let not_after = crate::cert::not_after_unix(der)?;
    Some((not_after as f64 - now.as_secs_f64()) / 86_400.0)
}

/// Judge a certificate's remaining days against `cert_min_days`.
pub(crate) fn judge_expiry(outcome: Outcome, days: Option<f64>, min_days: Option<u32>) -> Outcome {
    let Some(days) = days else { return outcome };
    let outcome = outcome.with_metric("cert_days_left", days);
    match min_days {
        Some(min) if outcome.ok && days < f64::from(min) => Outcome {
            ok: false,
            message: format!("certificate expires in {days:.1} days (fewer than {min})"),
            metrics: outcome.metrics,
            severity: None,
        },
        _ => outcome,
    }
}

pub(crate) struct Prepared {
    spec: TlsProbe,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

pub(crate) fn prepare(spec: &TlsProbe, shared: &Shared) -> Result<Prepared, PrepareError> {
    let (host, port) = vigie_config::split_host_port(&spec.address).map_err(PrepareError)?;
    let name = spec.server_name.clone().unwrap_or_else(|| host.to_owned());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| PrepareError(format!("server name `{name}`: {e}")))?;
    let config = shared.tls.get(&TlsSettings {
        ca: spec.ca.clone(),
        accept_invalid: spec.dangerously_accept_invalid_certs,
        alpn_http: false,
    })?;
    Ok(Prepared {
        spec: spec.clone(),
        host: host.to_owned(),
        port,
        server_name,
        config,
    })
}

impl Prepared {
    pub(crate) async fn run(&self) -> Outcome {
        let start = std::time::Instant::now();
        let stream = match tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await {
            Ok(s) => s,
            Err(e) => return Outcome::fail(format!("connect to {}: {e}", self.spec.address)),
        };
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = match connector.connect(self.server_name.clone(), stream).await {
            Ok(t) => t,
            Err(e) => {
                return Outcome::fail(format!(
                    "TLS handshake with {}: {}",
                    self.spec.address,
                    chain(&e)
                ));
            }
        };
        let (_, conn) = tls.get_ref();
        let version = conn.protocol_version().map_or_else(
            || "unknown".to_owned(),
            |v| format!("{v:?}").replace('_', "."),
        );
        let days = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| days_left(c, Timestamp::now()));
        let elapsed = start.elapsed();
        let msg = match days {
            Some(d) => format!("{version}, certificate valid {d:.0} more days"),
            None => format!("{version}, no certificate expiry read"),
        };
        let outcome = Outcome::ok(msg).with_metric("latency_seconds", elapsed.as_secs_f64());
        judge_expiry(outcome, days, self.spec.cert_min_days)
    }
}
