//! Mail through SMTP with lettre: STARTTLS (required) by default, implicit
//! TLS, or — named as such — plaintext.

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use vigie_config::{NotifierKind, SmtpSecurity};

use crate::Message;

/// Send `msg` by mail; `Err((why, worth retrying))`.
pub(crate) async fn send(
    kind: &NotifierKind,
    msg: &Message,
    timeout: std::time::Duration,
) -> Result<(), (String, bool)> {
    let NotifierKind::Smtp {
        host,
        port,
        security,
        username,
        password,
        from,
        to,
        ca,
    } = kind
    else {
        return Err(("not an SMTP notifier".into(), false));
    };
    let permanent = |e: String| (e, false);
    let mut builder = lettre::Message::builder()
        .from(
            from.parse()
                .map_err(|e| permanent(format!("`from` is not a mailbox: {e}")))?,
        )
        .subject(&msg.title)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        builder = builder.to(t
            .parse()
            .map_err(|e| permanent(format!("`{t}` is not a mailbox: {e}")))?);
    }
    let mail = builder
        .body(format!("{}\n", msg.body))
        .map_err(|e| permanent(e.to_string()))?;
    let tls = if *security == SmtpSecurity::DangerouslyPlaintext {
        None
    } else {
        let mut params = TlsParameters::builder(host.clone());
        if let Some(ca) = ca {
            let pem = fs_err::read(ca).map_err(|e| permanent(e.to_string()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| permanent(format!("{}: {e}", ca.display())))?;
            params = params.add_root_certificate(cert);
        }
        Some(
            params
                .build_rustls()
                .map_err(|e| permanent(format!("TLS set-up: {e}")))?,
        )
    };
    let (tls, default_port) = match (security, tls) {
        (SmtpSecurity::Starttls, Some(p)) => (Tls::Required(p), 587),
        (SmtpSecurity::Tls, Some(p)) => (Tls::Wrapper(p), 465),
        _ => (Tls::None, 25),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(pass)) = (username, password) {
        transport = transport.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
    }
    match transport.build().send(mail).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let retry = !e.is_permanent();
            let mut text = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cur = c.source();
            }
            Err((format!("smtp: {text}"), retry))
        }
    }
}
