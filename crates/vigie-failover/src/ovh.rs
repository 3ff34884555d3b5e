//! The OVH API as a DNS provider: signed requests (`$1$` + SHA-1 over
//! secret, consumer key, method, full URL, body and timestamp), the clock
//! offset from `/auth/time`, records found by sub-domain and type, then
//! the zone `refresh` without which nothing is published.

use std::net::IpAddr;
use std::sync::Mutex;

use reqwest::{Method, Url};
use serde_json::{Value, json};

use crate::{Change, DnsError, RecordSpec};

/// The provider's `kind`, which names it in messages.
const NAME: &str = vigie_config::DnsKind::Ovh.name();

/// The OVH endpoints by name, as their API wrappers call them.
pub fn endpoint(name: &str) -> Option<&'static str> {
    match name {
        "ovh-eu" => Some("https://eu.api.ovh.com/1.0"),
        "ovh-ca" => Some("https://ca.api.ovh.com/1.0"),
        "ovh-us" => Some("https://api.us.ovhcloud.com/1.0"),
        _ => None,
    }
}

/// `$1$` + hex(SHA-1(AS+CK+METHOD+URL+BODY+TIMESTAMP joined by `+`)).
pub fn signature(
    application_secret: &str,
    consumer_key: &str,
    method: &str,
    url: &str,
    body: &str,
    timestamp: i64,
) -> String {
    let pre = format!("{application_secret}+{consumer_key}+{method}+{url}+{body}+{timestamp}");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, pre.as_bytes());
    format!("$1${}", data_encoding::HEXLOWER.encode(digest.as_ref()))
}

pub struct Ovh {
    base: String,
    application_key: String,
    application_secret: String,
    consumer_key: String,
    client: reqwest::Client,
    /// OVH's clock minus ours, in seconds, read once.
    offset: Mutex<Option<i64>>,
}

impl std::fmt::Debug for Ovh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ovh")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn api_err(message: impl Into<String>) -> DnsError {
    DnsError::Api {
        provider: NAME,
        message: message.into(),
    }
}

impl Ovh {
    /// `endpoint` is `ovh-eu`, `ovh-ca`, `ovh-us`, or a full base URL.
    pub fn new(
        endpoint_name: &str,
        application_key: &str,
        application_secret: &str,
        consumer_key: &str,
    ) -> Result<Self, DnsError> {
        let base = endpoint(endpoint_name).map_or_else(
            || endpoint_name.trim_end_matches('/').to_owned(),
            str::to_owned,
        );
        Url::parse(&base).map_err(|e| {
            DnsError::Config(format!(
                "OVH endpoint `{endpoint_name}`: {e}; use ovh-eu, ovh-ca, ovh-us or a URL"
            ))
        })?;
        let client = crate::http::client()?;
        Ok(Self {
            base,
            application_key: application_key.to_owned(),
            application_secret: application_secret.to_owned(),
            consumer_key: consumer_key.to_owned(),
            client,
            offset: Mutex::new(None),
        })
    }

    async fn now(&self) -> Result<i64, DnsError> {
        let local = vigie_core::Timestamp::now().millis() / 1000;
        let known = *self
            .offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(offset) = known {
            return Ok(local + offset);
        }
        let text = self
            .client
            .get(format!("{}/auth/time", self.base))
            .send()
            .await
            .map_err(|e| api_err(format!("/auth/time: {}", e.without_url())))?
            .text()
            .await
            .map_err(|e| api_err(e.without_url().to_string()))?;
        let server: i64 = text
            .trim()
            .parse()
            .map_err(|_| api_err(format!("/auth/time answered {text:?}")))?;
        *self
            .offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(server - local);
        Ok(server)
    }

    /// One signed call; the JSON answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DnsError> {
        let url = format!("{}{path}", self.base);
        let body = body.map(Value::to_string).unwrap_or_default();
        let ts = self.now().await?;
        let sig = signature(
            &self.application_secret,
            &self.consumer_key,
            method.as_str(),
            &url,
            &body,
            ts,
        );
        let req = self
            .client
            .request(method.clone(), &url)
            .header("X-Ovh-Application", &self.application_key)
            .header("X-Ovh-Consumer", &self.consumer_key)
            .header("X-Ovh-Timestamp", ts.to_string())
            .header("X-Ovh-Signature", sig)
            .header("Content-Type", "application/json")
            .body(body);
        crate::http::call(NAME, &method, path, req).await
    }

    fn sub_domain(rec: &RecordSpec) -> &str {
        if rec.is_apex() { "" } else { &rec.name }
    }

    /// The record ids and values of the record set.
    async fn records(&self, rec: &RecordSpec) -> Result<Vec<(u64, IpAddr)>, DnsError> {
        let field = if rec.ipv6 { "AAAA" } else { "A" };
        let mut list = Url::parse(&format!("{}/domain/zone/{}/record", self.base, rec.zone))
            .map_err(|e| DnsError::Config(e.to_string()))?;
        list.query_pairs_mut()
            .append_pair("fieldType", field)
            .append_pair("subDomain", Self::sub_domain(rec));
        let path = &list.as_str()[self.base.len()..];
        let ids = self.call(Method::GET, path, None).await?;
        let ids: Vec<u64> = ids
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for id in ids {
            let r = self
                .call(
                    Method::GET,
                    &format!("/domain/zone/{}/record/{id}", rec.zone),
                    None,
                )
                .await?;
            let target = r["target"].as_str().unwrap_or_default();
            let ip: IpAddr = target
                .parse()
                .map_err(|_| api_err(format!("record {id} holds {target:?}, not an address")))?;
            out.push((id, ip));
        }
        out.sort_by_key(|(_, ip)| *ip);
        Ok(out)
    }

    pub async fn current(&self, rec: &RecordSpec) -> Result<Vec<IpAddr>, DnsError> {
        Ok(self
            .records(rec)
            .await?
            .into_iter()
            .map(|(_, ip)| ip)
            .collect())
    }

    /// Make the record set hold exactly `values`: update records in place,
    /// create or delete the difference, then refresh the zone.
    pub async fn set(&self, rec: &RecordSpec, values: &[IpAddr]) -> Result<Change, DnsError> {
        let have = self.records(rec).await?;
        let wanted = crate::sorted(values.to_vec());
        let current: Vec<IpAddr> = have.iter().map(|(_, ip)| *ip).collect();
        if current == wanted {
            return Ok(Change::Unchanged);
        }
        let zone = &rec.zone;
        for i in 0..have.len().max(wanted.len()) {
            match (have.get(i), wanted.get(i)) {
                (Some((id, _)), Some(ip)) => {
                    let body = json!({ "target": ip.to_string(), "ttl": rec.ttl });
                    self.call(
                        Method::PUT,
                        &format!("/domain/zone/{zone}/record/{id}"),
                        Some(&body),
                    )
                    .await?;
                }
                (None, Some(ip)) => {
                    let body = json!({
                        "fieldType": if rec.ipv6 { "AAAA" } else { "A" },
                        "subDomain": Self::sub_domain(rec),
                        "target": ip.to_string(),
                        "ttl": rec.ttl,
                    });
                    self.call(
                        Method::POST,
                        &format!("/domain/zone/{zone}/record"),
                        Some(&body),
                    )
                    .await?;
                }
                (Some((id, _)), None) => {
                    self.call(
                        Method::DELETE,
                        &format!("/domain/zone/{zone}/record/{id}"),
                        None,
                    )
                    .await?;
                }
                (None, None) => {}
            }
        }
        self.call(Method::POST, &format!("/domain/zone/{zone}/refresh"), None)
            .await?;
        tracing::info!(zone = %zone, name = %rec.name, "OVH record updated and zone refreshed");
        Ok(Change::Changed { from: current })
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    /// The worked example of OVH's "First steps with the API" guide.
    #[test]
    fn the_guide_example_signs_as_documented() {
        assert_eq!(
            signature(
                "EXEgWIz07P0HYwtQDs7cNIqCiQaWSuHF",
                "MtSwSrPpNjqfVSmJhLbPyr2i45lSwPU1",
                "GET",
                "https://eu.api.ovh.com/1.0/domain/",
                "",
                1_366_560_945
            ),
            "$1$6a77f43f2871db97a029f1d1d81c4dcd3c6f7265"
        );
    }
}
