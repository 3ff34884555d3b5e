//! Apprise: the `apprise` program sends to the services vigie does not
//! speak itself. Its URLs hold keys, so they go in `APPRISE_URLS`, which
//! Apprise reads when no URL is on its command line: a command line is
//! readable by every user of the machine, an environment only by its owner.

use std::path::Path;

use tokio::process::Command;
use vigie_config::Secret;
use vigie_core::Severity;
use vigie_net::command::{Leftovers, capture, first_line};

use crate::Message;

/// The arguments after the program: the type (Apprise's icons and
/// colours), the title and the body, each one argument so that a title
/// starting with `-` is never read as an option.
pub fn apprise_args(msg: &Message) -> Vec<String> {
    vec![
        format!("--notification-type={}", notification_type(msg)),
        format!("--title={}", msg.title),
        format!("--body={}", msg.body),
    ]
}

/// Apprise's types: `success` for a resolution, `failure` from high up,
/// `warning` for warning and average, `info` otherwise (a test).
fn notification_type(msg: &Message) -> &'static str {
    if msg.resolves() {
        return "success";
    }
    match msg.severity {
        Severity::High | Severity::Disaster if msg.state != "test" => "failure",
        Severity::Warning | Severity::Average if msg.state != "test" => "warning",
        _ => "info",
    }
}

/// Run Apprise once; `Err((why, worth retrying))`. The caller's timeout
/// drops this future, which kills the program's whole process group.
pub(crate) async fn send(
    program: &Path,
    urls: &[Secret],
    msg: &Message,
) -> Result<(), (String, bool)> {
    let joined: Vec<&str> = urls.iter().map(Secret::expose).collect();
    let mut cmd = Command::new(program);
    cmd.args(apprise_args(msg))
        .env("APPRISE_URLS", joined.join(" "));
    let out = capture(cmd, Leftovers::Kill).await.map_err(|e| {
        let retry = e.kind() != std::io::ErrorKind::NotFound;
        (
            format!("apprise: cannot run {}: {e}", program.display()),
            retry,
        )
    })?;
    if out.status == Some(0) {
        return Ok(());
    }
    // Apprise may name a URL it could not parse: never repeat one.
    let mut said = first_line(&out.text).to_owned();
    for url in urls.iter().map(Secret::expose).filter(|u| !u.is_empty()) {
        said = said.replace(url, "<an apprise URL>");
    }
    // 1: a service refused or could not be reached — not retried: Apprise
    // would send again to every URL, those that got it included; 2
    // (usage) and 3 (nothing to notify) will not change by trying again.
    let (what, retry) = match (out.status, out.signal) {
        (Some(1), _) => ("a service failed".to_owned(), false),
        (Some(code), _) => (format!("exit {code}"), false),
        (None, Some(sig)) => (format!("killed by signal {sig}"), true),
        (None, None) => ("ended without a status".to_owned(), true),
    };
    Err((format!("apprise: {what}: {said}"), retry))
}
