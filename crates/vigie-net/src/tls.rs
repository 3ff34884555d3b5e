//! TLS client configurations: every TLS client of vigie is built here
//! (probes, notifiers, DNS APIs, peers), on ring, with the system's roots,
//! an extra CA, a private CA alone, a pinned certificate, or — explicitly
//! dangerous — no check at all.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS client could not be set up (a CA file missing or broken).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The protocols a client offers by ALPN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// None: a raw TLS handshake (the `tls` probe).
    #[default]
    None,
    /// HTTP's: `h2`, then `http/1.1`.
    Http,
}

impl Alpn {
    fn apply(self, config: &mut ClientConfig) {
        if self == Alpn::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
    }
}

/// What [`tls_client_config`] builds: named, so that no caller passes a
/// row of booleans.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsOptions<'a> {
    /// A PEM file of CA certificates trusted beside the system's roots.
    pub ca: Option<&'a Path>,
    /// No certificate check at all (a check's
    /// `dangerously_accept_invalid_certs`); `ca` is then ignored.
    pub dangerously_accept_invalid: bool,
    pub alpn: Alpn,
}

impl TlsOptions<'_> {
    /// The system's roots, HTTP's ALPN: what a client of a public API uses.
    pub fn https() -> Self {
        TlsOptions {
            alpn: Alpn::Http,
            ..TlsOptions::default()
        }
    }
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

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = fs_err::read(path).map_err(|e| TlsError(e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found in this PEM file",
            path.display()
        )));
    }
    Ok(certs)
}

/// A TLS client configuration: the system's roots plus `options.ca` if
/// given (or, with `dangerously_accept_invalid`, no certificate check at
/// all), offering `options.alpn`.
pub fn tls_client_config(options: &TlsOptions<'_>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?;
    let mut config = if options.dangerously_accept_invalid {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                provider: provider(),
                pin: None,
            }))
            .with_no_client_auth()
    } else {
        let mut roots = system_roots().clone();
        if let Some(ca) = options.ca {
            add_roots(&mut roots, ca)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    options.alpn.apply(&mut config);
    Ok(config)
}

fn add_roots(roots: &mut rustls::RootCertStore, ca: &Path) -> Result<(), TlsError> {
    for cert in read_pem_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
    }
    Ok(())
}

/// A TLS client configuration whose only roots are the certificates of
/// `ca`: a `[[peer]]` with its own CA is that CA's alone, and a
/// certificate that a public CA issued for the peer's name does not pass.
pub fn private_ca_client_config(ca: &Path, alpn: Alpn) -> Result<ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    add_roots(&mut roots, ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    alpn.apply(&mut config);
    Ok(config)
}

/// A TLS client configuration that trusts exactly one certificate: the
/// one whose SHA-256 is `pin` (a peer's self-signed certificate). Names
/// and dates are not checked; the handshake's signatures are.
pub fn pinned_client_config(pin: [u8; 32], alpn: Alpn) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            provider: provider(),
            pin: Some(pin),
        }))
        .with_no_client_auth();
    alpn.apply(&mut config);
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
