//! Notifiers: turn a [`Message`] into the request each service documents,
//! and deliver it with retries. A notifier never blocks the engine: every
//! attempt has a timeout, and a failure is reported, not raised.

// The workspace still allows long functions (issue 11 §2); this crate has
// none left and keeps it so.

use std::time::Duration;

use serde::Serialize;
use vigie_config::Notifier;
use vigie_core::Severity;

mod apprise;
mod mail;
mod request;

pub use apprise::apprise_args;
pub use request::build;

/// What a notification says.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// The check it is about (empty for a test message).
    pub check: String,
    pub severity: Severity,
    /// `failing`, `flapping`, `action failed`, `failback held`, `test`,
    /// or one of [`RESOLUTIONS`].
    pub state: String,
    /// One line, for titles and subjects.
    pub title: String,
    /// The text: what failed, since when, what was silenced.
    pub body: String,
    /// The check's last error.
    pub error: String,
    /// RFC 3339 time the incident began, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Checks silenced under this one (a parent down).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silenced: Vec<String>,
    /// The vigie node that sends it.
    pub node: String,
    /// The incident it is about (`vigie ack ID`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<i64>,
}

/// The states of a message that says its incident is over: the engine's
/// resolutions (`recovered`, `repaired`) and a check removed from the
/// configuration. PagerDuty resolves its alert on these.
pub const RESOLUTIONS: &[&str] = &["recovered", "repaired", "check removed"];

impl Message {
    /// Whether this message closes its incident.
    pub fn resolves(&self) -> bool {
        RESOLUTIONS.contains(&self.state.as_str())
    }

    /// The message `vigie notify test` sends.
    pub fn test(node: &str, notifier: &str) -> Self {
        Self {
            check: String::new(),
            severity: Severity::Information,
            state: "test".into(),
            title: format!("vigie test message from {node}"),
            body: format!(
                "This is a test of the notifier `{notifier}` from vigie on {node}. If you read it, it works."
            ),
            error: String::new(),
            since: None,
            silenced: Vec::new(),
            node: node.to_owned(),
            incident: None,
        }
    }
}

/// How a delivery went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub attempts: u32,
    /// `None` when delivered; the last error otherwise.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("rendering the message: {0}")]
    Render(String),
    #[error("{0}")]
    Send(String),
}

/// Retries and timeouts of deliveries.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            attempts: 4,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends messages; one client (and connection pool) for every notifier.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Policy,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(policy: Policy) -> Result<Self, NotifyError> {
        let tls = vigie_net::tls_client_config(&vigie_net::TlsOptions::https())
            .map_err(|e| NotifyError::Send(e.0))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(vigie_net::same_origin_redirects())
            .user_agent(concat!("vigie/", env!("CARGO_PKG_VERSION")))
            .timeout(policy.timeout)
            .build()
            .map_err(|e| NotifyError::Send(e.to_string()))?;
        Ok(Self { client, policy })
    }

    /// Deliver `msg` through `notifier`, retrying with backoff on network
    /// errors, 429 and 5xx answers. Never panics, never hangs.
    pub async fn send(&self, notifier: &Notifier, msg: &Message) -> Delivery {
        let mut wait = self.policy.backoff;
        let mut last = String::new();
        for attempt in 1..=self.policy.attempts.max(1) {
            match self.try_once(notifier, msg).await {
                Ok(()) => {
                    return Delivery {
                        attempts: attempt,
                        error: None,
                    };
                }
                Err((e, retry)) => {
                    tracing::warn!(notifier = %notifier.name, attempt, error = %e, "notification failed");
                    last = e;
                    if !retry || attempt == self.policy.attempts {
                        return Delivery {
                            attempts: attempt,
                            error: Some(last),
                        };
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
        Delivery {
            attempts: self.policy.attempts,
            error: Some(last),
        }
    }

    /// One attempt: `Err((why, worth retrying))`.
    async fn try_once(&self, notifier: &Notifier, msg: &Message) -> Result<(), (String, bool)> {
        if matches!(notifier.kind, vigie_config::NotifierKind::Smtp { .. }) {
            return mail::send(&notifier.kind, msg, self.policy.timeout).await;
        }
        if let vigie_config::NotifierKind::Apprise { urls, program } = &notifier.kind {
            return tokio::time::timeout(self.policy.timeout, apprise::send(program, urls, msg))
                .await
                .unwrap_or_else(|_| {
                    Err((
                        format!("apprise: no answer within {:?}", self.policy.timeout),
                        true,
                    ))
                });
        }
        let req = build(&notifier.kind, msg).map_err(|e| (e.to_string(), false))?;
        let mut r = self.client.request(req.method.clone(), req.url.clone());
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        let resp = r
            .body(req.body)
            .send()
            .await
            .map_err(|e| (describe(e), true))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            return Err((
                format!(
                    "{} answered {status}: redirects to another host are not followed, since the request carries the notifier's keys; configure the final URL",
                    notifier.kind.kind()
                ),
                false,
            ));
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        let retry = status.is_server_error() || status.as_u16() == 429;
        Err((
            format!("{} answered {status}: {text}", notifier.kind.kind()),
            retry,
        ))
    }
}

/// The error and its causes, without the URL: for Slack, Discord and
/// Telegram the URL holds the secret, and errors end up in logs.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// ntfy's priorities (1..5) by severity.
pub fn ntfy_priority(s: Severity) -> u8 {
    match s {
        Severity::NotClassified | Severity::Information => 2,
        Severity::Warning | Severity::Average => 3,
        Severity::High => 4,
        Severity::Disaster => 5,
    }
}

/// Gotify's priorities (0..10) by severity.
pub fn gotify_priority(s: Severity) -> u8 {
    match s {
        Severity::NotClassified => 1,
        Severity::Information => 3,
        Severity::Warning => 5,
        Severity::Average => 6,
        Severity::High => 8,
        Severity::Disaster => 10,
    }
}

/// Pushover's priorities (-2..2) by severity: -1 (quiet) for information,
/// 0 for warning and average, 1 (high: through quiet hours) for high and
/// disaster. 2 (emergency, repeated until acknowledged) only for a
/// disaster when the notifier has `emergency`; a resolution is sent at 0
/// at most, since it needs no one woken.
pub fn pushover_priority(s: Severity, emergency: bool, resolution: bool) -> i8 {
    let p = match s {
        Severity::NotClassified | Severity::Information => -1,
        Severity::Warning | Severity::Average => 0,
        Severity::Disaster if emergency => 2,
        Severity::High | Severity::Disaster => 1,
    };
    if resolution { p.min(0) } else { p }
}

/// PagerDuty's severities by vigie's.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::NotClassified | Severity::Information => "info",
        Severity::Warning | Severity::Average => "warning",
        Severity::High => "error",
        Severity::Disaster => "critical",
    }
}
