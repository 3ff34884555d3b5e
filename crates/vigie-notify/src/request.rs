//! The request each service documents, built from a message. Pure: no
//! I/O here, so the formats are tested exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Method, Url};
use serde_json::json;
use vigie_config::{HttpUrl, NotifierKind};

use crate::{Message, NotifyError, gotify_priority, ntfy_priority};

/// A request ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn json_header() -> (String, String) {
    ("content-type".into(), "application/json".into())
}

/// Discord refuses `content` longer than this.
const DISCORD_MAX: usize = 2000;

fn with_segments(base: &HttpUrl, segments: &[&str]) -> Result<Url, NotifyError> {
    let mut url = base.0.clone();
    url.path_segments_mut()
        .map_err(|()| NotifyError::Render(format!("{} cannot take a path", base.0)))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn secret_url(s: &str) -> Result<Url, NotifyError> {
    // The URL is a secret: say which part is wrong without printing it.
    Url::parse(s).map_err(|e| NotifyError::Render(format!("the configured URL is not valid ({e})")))
}

fn text(msg: &Message) -> String {
    format!("{}\n{}", msg.title, msg.body)
}

fn json_body(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// A Matrix transaction id: unique per message from this process.
fn txn_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "vigie-{}-{}-{n}",
        std::process::id(),
        vigie_core::Timestamp::now().millis()
    )
}

/// Build the request that delivers `msg` through `kind`.
pub fn build(kind: &NotifierKind, msg: &Message) -> Result<Request, NotifyError> {
    let req = match kind {
        NotifierKind::Ntfy { url, token } => {
            let mut url = url.0.clone();
            url.query_pairs_mut()
                .append_pair("title", &msg.title)
                .append_pair("priority", &ntfy_priority(msg.severity).to_string())
                .append_pair("tags", &format!("{},{}", msg.state, msg.severity));
            let mut headers = vec![(
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )];
            if let Some(t) = token {
                headers.push(("authorization".into(), format!("Bearer {}", t.expose())));
            }
            Request {
                method: Method::POST,
                url,
                headers,
                body: msg.body.clone().into_bytes(),
            }
        }
        NotifierKind::Gotify { url, token } => Request {
            method: Method::POST,
            url: with_segments(url, &["message"])?,
            headers: vec![
                json_header(),
                ("x-gotify-key".into(), token.expose().to_owned()),
            ],
            body: json_body(&json!({
                "title": msg.title,
                "message": msg.body,
                "priority": gotify_priority(msg.severity),
            })),
        },
        NotifierKind::Webhook {
            url,
            method,
            headers,
            query,
            token,
            template,
        } => {
            let body = match template {
                Some(t) => {
                    let env = minijinja::Environment::new();
                    let tmpl = env
                        .template_from_str(t)
                        .map_err(|e| NotifyError::Render(e.to_string()))?;
                    tmpl.render(msg)
                        .map_err(|e| NotifyError::Render(e.to_string()))?
                        .into_bytes()
                }
                None => serde_json::to_vec(msg).unwrap_or_default(),
            };
            let mut h: Vec<(String, String)> = Vec::new();
            if !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                h.push(json_header());
            }
            h.extend(
                headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned())),
            );
            if let Some(t) = token {
                h.push(("authorization".into(), format!("Bearer {}", t.expose())));
            }
            let mut url = url.0.clone();
            if !query.is_empty() {
                url.query_pairs_mut()
                    .extend_pairs(query.iter().map(|(k, v)| (k, v.expose())));
            }
            Request {
                method: Method::from_bytes(method.as_str().as_bytes()).unwrap_or(Method::POST),
                url,
                headers: h,
                body,
            }
        }
        NotifierKind::Ifttt {
            event,
            key,
            endpoint,
        } => Request {
            method: Method::POST,
            url: with_segments(endpoint, &["trigger", event, "with", "key", key.expose()])?,
            headers: vec![json_header()],
            body: json_body(&json!({
                "value1": msg.title,
                "value2": msg.body,
                "value3": msg.severity.as_str(),
            })),
        },
        NotifierKind::Slack { url } => Request {
            method: Method::POST,
            url: secret_url(url.expose())?,
            headers: vec![json_header()],
            body: json_body(&json!({ "text": format!("*{}*\n{}", msg.title, msg.body) })),
        },
        NotifierKind::Discord { url } => {
            let content: String = format!("**{}**\n{}", msg.title, msg.body)
                .chars()
                .take(DISCORD_MAX)
                .collect();
            Request {
                method: Method::POST,
                url: secret_url(url.expose())?,
                headers: vec![json_header()],
                body: json_body(&json!({ "content": content })),
            }
        }
        NotifierKind::Matrix {
            homeserver,
            room_id,
            access_token,
        } => Request {
            method: Method::PUT,
            url: with_segments(
                homeserver,
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "rooms",
                    room_id,
                    "send",
                    "m.room.message",
                    &txn_id(),
                ],
            )?,
            headers: vec![
                json_header(),
                (
                    "authorization".into(),
                    format!("Bearer {}", access_token.expose()),
                ),
            ],
            body: json_body(&json!({ "msgtype": "m.text", "body": text(msg) })),
        },
        NotifierKind::Smtp { .. } => {
            return Err(NotifyError::Render(
                "mail is sent over SMTP, not HTTP".into(),
            ));
        }
        NotifierKind::Telegram {
            bot_token,
            chat_id,
            endpoint,
        } => Request {
            method: Method::POST,
            url: with_segments(
                endpoint,
                &[&format!("bot{}", bot_token.expose()), "sendMessage"],
            )?,
            headers: vec![json_header()],
            body: json_body(&json!({
                "chat_id": chat_id,
                "text": text(msg),
                "disable_web_page_preview": true,
            })),
        },
    };
    Ok(req)
}
