//! What the HTTP providers share: one way to build the client, one way to
//! make a JSON call and read errors without leaking URLs.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::DnsError;

pub(crate) fn client() -> Result<reqwest::Client, DnsError> {
    let tls = vigie_net::tls_client_config(&vigie_net::TlsOptions::https())
        .map_err(|e| DnsError::Config(e.0))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(vigie_net::same_origin_redirects())
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("vigie/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DnsError::Config(e.to_string()))
}

/// Attach `body` as JSON.
pub(crate) fn with_json(req: RequestBuilder, body: &Value) -> RequestBuilder {
    req.header("content-type", "application/json")
        .body(body.to_string())
}

/// Send `req`; the JSON answer, or an error naming the call and what the
/// API said (`message` fields, Cloudflare's `errors`).
pub(crate) async fn call(
    provider: &'static str,
    method: &Method,
    what: &str,
    req: RequestBuilder,
) -> Result<Value, DnsError> {
    let err = |message: String| DnsError::Api { provider, message };
    let resp = req
        .send()
        .await
        .map_err(|e| err(format!("{method} {what}: {}", e.without_url())))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(err(format!(
            "{method} {what} answered {status}: redirects to another host are not followed, since the request carries the API's keys; configure the API's final URL"
        )));
    }
    let text = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let said = json["message"]
            .as_str()
            .or_else(|| json["error"].as_str())
            .or_else(|| json["errors"][0]["message"].as_str())
            .map_or(text.clone(), str::to_owned);
        return Err(err(format!("{method} {what} answered {status}: {said}")));
    }
    Ok(json)
}
