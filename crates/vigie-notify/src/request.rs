//! The request each service documents, built from a message. Pure: no
//! I/O here, so the formats are tested exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Method, Url};
use serde_json::json;
use vigie_config::{HttpUrl, MaybeSecret, NotifierKind, Secret};

use crate::{
    Message, NotifyError, gotify_priority, ntfy_priority, pagerduty_severity, pushover_priority,
};

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
        NotifierKind::Webhook { .. } => webhook(kind, msg)?,
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
        NotifierKind::Pushover { endpoint, .. } => post_json(
            with_segments(endpoint, &["1", "messages.json"])?,
            &pushover_body(kind, msg),
        ),
        NotifierKind::Pagerduty {
            routing_key,
            endpoint,
        } if msg.incident.is_none() && !msg.resolves() => post_json(
            with_segments(endpoint, &["v2", "change", "enqueue"])?,
            &pagerduty_change(routing_key, msg),
        ),
        NotifierKind::Pagerduty {
            routing_key,
            endpoint,
        } => post_json(
            with_segments(endpoint, &["v2", "enqueue"])?,
            &pagerduty_body(routing_key, msg),
        ),
        NotifierKind::Teams { url } => post_json(secret_url(url.expose())?, &teams_body(msg)),
        NotifierKind::Apprise { .. } => {
            return Err(NotifyError::Render(
                "Apprise is a program to run, not an HTTP request".into(),
            ));
        }
    };
    Ok(req)
}

/// Pushover's limits: longer titles and messages are refused.
const PUSHOVER_TITLE_MAX: usize = 250;
const PUSHOVER_MESSAGE_MAX: usize = 1024;

/// Pushover: the message with its priority; an emergency (2) carries how
/// often it is repeated and until when.
fn pushover_body(kind: &NotifierKind, msg: &Message) -> serde_json::Value {
    let NotifierKind::Pushover {
        token,
        user,
        device,
        url,
        emergency,
        ..
    } = kind
    else {
        return serde_json::Value::Null;
    };
    let priority = pushover_priority(msg.severity, emergency.is_some(), msg.resolves());
    let mut body = json!({
        "token": token.expose(),
        "user": user.expose(),
        "title": cut(&msg.title, PUSHOVER_TITLE_MAX),
        "message": cut(&msg.body, PUSHOVER_MESSAGE_MAX),
        "priority": priority,
    });
    if let Some(device) = device {
        body["device"] = json!(device);
    }
    if let Some(url) = url {
        body["url"] = json!(url.0.as_str());
    }
    if let (2, Some(e)) = (priority, emergency) {
        body["retry"] = json!(e.retry.std().as_secs());
        body["expire"] = json!(e.expire.std().as_secs());
    }
    body
}

/// The first `max` characters of `s`.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// PagerDuty refuses longer keys and summaries.
const PAGERDUTY_KEY_MAX: usize = 255;
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// PagerDuty: a failure triggers an alert, its resolution resolves it; the
/// two share a `dedup_key` made of the node, the check and the incident.
fn pagerduty_body(routing_key: &Secret, msg: &Message) -> serde_json::Value {
    let dedup_key = cut(&pagerduty_dedup_key(msg), PAGERDUTY_KEY_MAX);
    if msg.resolves() {
        return json!({
            "routing_key": routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let mut payload = json!({
        "summary": cut(&msg.title, PAGERDUTY_SUMMARY_MAX),
        "source": msg.node,
        "severity": pagerduty_severity(msg.severity),
        "custom_details": msg,
    });
    if !msg.check.is_empty() {
        payload["component"] = json!(msg.check);
    }
    json!({
        "routing_key": routing_key.expose(),
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "vigie",
        "payload": payload,
    })
}

/// PagerDuty's change event (Events API v2, `/v2/change/enqueue`) for a
/// message of no incident (a test, a flapping notice): recorded beside
/// the service's alerts, paging no one, as nothing would ever resolve it.
fn pagerduty_change(routing_key: &Secret, msg: &Message) -> serde_json::Value {
    json!({
        "routing_key": routing_key.expose(),
        "payload": {
            "summary": cut(&msg.title, PAGERDUTY_SUMMARY_MAX),
            "source": msg.node,
            "custom_details": msg,
        },
    })
}

/// `vigie/NODE/CHECK/incident/ID`: what a trigger and the resolve of the
/// same incident have in common. A message without an incident (a test, a
/// flapping notice) gets one of its own kind.
fn pagerduty_dedup_key(msg: &Message) -> String {
    match (msg.incident, msg.check.as_str()) {
        (Some(id), check) => format!("vigie/{}/{check}/incident/{id}", msg.node),
        (None, "") => format!("vigie/{}/{}", msg.node, msg.state),
        (None, check) => format!("vigie/{}/{check}/{}", msg.node, msg.state),
    }
}

/// Teams through a workflow: a message holding one Adaptive Card, the
/// title in bold over the text.
fn teams_body(msg: &Message) -> serde_json::Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": msg.title, "weight": "Bolder", "wrap": true},
                    {"type": "TextBlock", "text": msg.body, "wrap": true},
                ],
            },
        }],
    })
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

/// A webhook: the configured method, query and headers.
fn webhook(kind: &NotifierKind, msg: &Message) -> Result<Request, NotifyError> {
    let NotifierKind::Webhook {
        url,
        method,
        headers,
        query,
        token,
        template,
    } = kind
    else {
        return Err(NotifyError::Render("not a webhook".into()));
    };
    let body = webhook_body(template.as_deref(), msg)?;
    let mut url = url.0.clone();
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k, v.expose())));
    }
    Ok(Request {
        method: Method::from_bytes(method.as_str().as_bytes()).unwrap_or(Method::POST),
        url,
        headers: webhook_headers(headers, token.as_ref()),
        body,
    })
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
