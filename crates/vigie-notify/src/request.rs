//! The request each service documents, built from a message. Pure: no
//! I/O here, so the formats are tested exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Method, Url};
use serde_json::json;
use vigie_config::{HttpUrl, MaybeSecret, NotifierKind, Secret};

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

/// `Authorization: Bearer …` with `token`.
fn bearer(token: &Secret) -> (String, String) {
    ("authorization".into(), format!("Bearer {}", token.expose()))
}

/// A POST of `body` as JSON to `url`.
fn post_json(url: Url, body: &serde_json::Value) -> Request {
    Request {
        method: Method::POST,
        url,
        headers: vec![json_header()],
        body: json_body(body),
    }
}

/// Build the request that delivers `msg` through `kind`.
pub fn build(kind: &NotifierKind, msg: &Message) -> Result<Request, NotifyError> {
    let req = match kind {
        NotifierKind::Ntfy { url, token } => ntfy(url, token.as_ref(), msg),
        NotifierKind::Gotify { url, token } => {
            let mut req = post_json(
                with_segments(url, &["message"])?,
                &json!({
                    "title": msg.title,
                    "message": msg.body,
                    "priority": gotify_priority(msg.severity),
                }),
            );
            req.headers
                .push(("x-gotify-key".into(), token.expose().to_owned()));
            req
        }
        NotifierKind::Webhook {
            url,
            method,
            headers,
            query,
            token,
            template,
        } => {
            let body = webhook_body(template.as_deref(), msg)?;
            let mut url = url.0.clone();
            if !query.is_empty() {
                url.query_pairs_mut()
                    .extend_pairs(query.iter().map(|(k, v)| (k, v.expose())));
            }
            Request {
                method: Method::from_bytes(method.as_str().as_bytes()).unwrap_or(Method::POST),
                url,
                headers: webhook_headers(headers, token.as_ref()),
                body,
            }
        }
        NotifierKind::Ifttt {
            event,
            key,
            endpoint,
        } => post_json(
            with_segments(endpoint, &["trigger", event, "with", "key", key.expose()])?,
            &json!({
                "value1": msg.title,
                "value2": msg.body,
                "value3": msg.severity.as_str(),
            }),
        ),
        NotifierKind::Slack { url } => post_json(
            secret_url(url.expose())?,
            &json!({ "text": format!("*{}*\n{}", msg.title, msg.body) }),
        ),
        NotifierKind::Discord { url } => {
            let content: String = format!("**{}**\n{}", msg.title, msg.body)
                .chars()
                .take(DISCORD_MAX)
                .collect();
            post_json(secret_url(url.expose())?, &json!({ "content": content }))
        }
        NotifierKind::Matrix {
            homeserver,
            room_id,
            access_token,
        } => matrix(homeserver, room_id, access_token, msg)?,
        NotifierKind::Smtp { .. } => {
            return Err(NotifyError::Render(
                "mail is sent over SMTP, not HTTP".into(),
            ));
        }
        NotifierKind::Telegram {
            bot_token,
            chat_id,
            endpoint,
        } => post_json(
            with_segments(
                endpoint,
                &[&format!("bot{}", bot_token.expose()), "sendMessage"],
            )?,
            &json!({
                "chat_id": chat_id,
                "text": text(msg),
                "disable_web_page_preview": true,
            }),
        ),
    };
    Ok(req)
}

/// ntfy: the text as the body, title, priority and tags in the query.
fn ntfy(url: &HttpUrl, token: Option<&Secret>, msg: &Message) -> Request {
    let mut url = url.0.clone();
    url.query_pairs_mut()
        .append_pair("title", &msg.title)
        .append_pair("priority", &ntfy_priority(msg.severity).to_string())
        .append_pair("tags", &format!("{},{}", msg.state, msg.severity));
    let mut headers = vec![(
        "content-type".to_owned(),
        "text/plain; charset=utf-8".to_owned(),
    )];
    headers.extend(token.map(bearer));
    Request {
        method: Method::POST,
        url,
        headers,
        body: msg.body.clone().into_bytes(),
    }
}

/// A webhook's body: the message as JSON, or rendered from `template`.
fn webhook_body(template: Option<&str>, msg: &Message) -> Result<Vec<u8>, NotifyError> {
    Ok(match template {
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
    })
}

/// A webhook's headers: JSON's content type unless the configured ones
/// name one, those, then the token.
fn webhook_headers(
    headers: &BTreeMap<String, MaybeSecret>,
    token: Option<&Secret>,
) -> Vec<(String, String)> {
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
    h.extend(token.map(bearer));
    h
}

/// Matrix: a PUT of an `m.text` event under a fresh transaction id.
fn matrix(
    homeserver: &HttpUrl,
    room_id: &str,
    access_token: &Secret,
    msg: &Message,
) -> Result<Request, NotifyError> {
    let url = with_segments(
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
    )?;
    Ok(Request {
        method: Method::PUT,
        url,
        headers: vec![json_header(), bearer(access_token)],
        body: json_body(&json!({ "msgtype": "m.text", "body": text(msg) })),
    })
}
