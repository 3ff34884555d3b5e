//! TLS client settings (system roots, an extra CA, or the explicitly
//! dangerous "accept anything") and the `tls` probe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use vigie_config::TlsProbe;
use vigie_core::{Outcome, Timestamp};

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

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted roots, read once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "could not read some system CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates loaded");
        roots
    })
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PrepareError> {
    let data = fs_err::read(path).map_err(|e| PrepareError(e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            PrepareError(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(PrepareError(format!(
            "{}: no certificate found in this PEM file",
            path.display()
        )));
    }
    Ok(certs)
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
        let config = Arc::new(client_config(
            s.ca.as_deref(),
            s.accept_invalid,
            s.alpn_http,
        )?);
        built.insert(s.clone(), config.clone());
        Ok(config)
    }
}

/// A TLS client configuration: the system's roots plus `ca` if given (or,
/// with `accept_invalid`, no certificate check at all), and the HTTP ALPN
/// protocols when `alpn_http`. Every TLS client of vigie is built here.
pub fn client_config(
    ca: Option<&Path>,
    accept_invalid: bool,
    alpn_http: bool,
) -> Result<ClientConfig, PrepareError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PrepareError(format!("TLS set-up: {e}")))?;
    let mut config = if accept_invalid {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                provider: provider(),
                pin: None,
            }))
            .with_no_client_auth()
    } else {
        let mut roots = system_roots().clone();
        if let Some(ca) = ca {
            add_roots(&mut roots, ca)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if alpn_http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(config)
}

fn add_roots(roots: &mut rustls::RootCertStore, ca: &Path) -> Result<(), PrepareError> {
    for cert in read_pem_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| PrepareError(format!("{}: {e}", ca.display())))?;
    }
    Ok(())
}

/// A TLS client configuration whose only roots are the certificates of
/// `ca`: a `[[peer]]` with its own CA is that CA's alone, and a
/// certificate that a public CA issued for the peer's name does not pass.
pub fn private_ca_client_config(ca: &Path, alpn_http: bool) -> Result<ClientConfig, PrepareError> {
    let mut roots = rustls::RootCertStore::empty();
    add_roots(&mut roots, ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PrepareError(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn_http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(config)
}

/// A TLS client configuration that trusts exactly one certificate: the
/// one whose SHA-256 is `pin` (a peer's self-signed certificate). Names
/// and dates are not checked; the handshake's signatures are.
pub fn pinned_client_config(pin: [u8; 32], alpn_http: bool) -> Result<ClientConfig, PrepareError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PrepareError(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            provider: provider(),
            pin: Some(pin),
        }))
        .with_no_client_auth();
    if alpn_http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(config)
}

/// A verifier for what the web PKI does not cover. Without a pin it is
/// `dangerously_accept_invalid_certs` (no certificate check); with one,
/// only the certificate of that SHA-256 passes. Either way the
/// handshake's signatures are checked.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    pin: Option<[u8; 32]>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) => {
                let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
                if got.as_ref() == pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(
                        "the certificate does not match the pinned SHA-256".into(),
                    ))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_certificates_are_read_and_a_file_without_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["example.org".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();

        let two = dir.path().join("chain.pem");
        fs_err::write(&two, format!("{}{}", cert.pem(), cert.pem())).unwrap();
        let certs = read_pem_certs(&two).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), cert.der().as_ref());

        // A key alone holds no certificate.
        let key_only = dir.path().join("key.pem");
        fs_err::write(&key_only, key.serialize_pem()).unwrap();
        let e = read_pem_certs(&key_only).unwrap_err().0;
        assert!(e.contains("no certificate found in this PEM file"), "{e}");

        // A certificate whose base64 is broken.
        let broken = dir.path().join("broken.pem");
        fs_err::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_pem_certs(&broken).unwrap_err().0;
        assert!(e.contains("not a PEM certificate file"), "{e}");

        assert!(read_pem_certs(&dir.path().join("missing.pem")).is_err());
    }
}
