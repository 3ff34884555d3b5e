//! Cloudflare's API v4 with a bearer token: the zone by name, the record
//! set by type and name, then PATCH (create and delete for the rest).

use std::net::IpAddr;

use reqwest::Method;
use serde_json::{Value, json};

use crate::http::{call, client, with_json};
use crate::{Change, DnsError, RecordSpec};

/// The provider's `kind`, which names it in messages.
const NAME: &str = vigie_config::DnsKind::Cloudflare.name();

pub const API: &str = "https://api.cloudflare.com/client/v4";

pub struct Cloudflare {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Cloudflare {
    /// `base` is [`API`] in production, a local server in tests.
    pub fn new(base: &str, token: &str) -> Result<Self, DnsError> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client: client()?,
        })
    }

    async fn api(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, DnsError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| DnsError::Config(format!("Cloudflare API address: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self
            .client
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = with_json(req, b);
        }
        let v = call(NAME, &method, path, req).await?;
        if v["success"] == false {
            return Err(DnsError::Api {
                provider: NAME,
                message: format!(
                    "{method} {path}: {}",
                    v["errors"][0]["message"].as_str().unwrap_or("failed")
                ),
            });
        }
        Ok(v["result"].clone())
    }

    async fn zone_id(&self, zone: &str) -> Result<String, DnsError> {
        let zones = self
            .api(Method::GET, "/zones", &[("name", zone)], None)
            .await?;
        zones[0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DnsError::Api {
                provider: NAME,
                message: format!("no zone {zone} for this token"),
            })
    }

    async fn records(
        &self,
        zone_id: &str,
        rec: &RecordSpec,
    ) -> Result<Vec<(String, IpAddr)>, DnsError> {
        let rtype = if rec.ipv6 { "AAAA" } else { "A" };
        let name = rec.full_name();
        let list = self
            .api(
                Method::GET,
                &format!("/zones/{zone_id}/dns_records"),
                &[("type", rtype), ("name", &name)],
                None,
            )
            .await?;
        let mut out: Vec<(String, IpAddr)> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["id"].as_str()?.to_owned(),
                    r["content"].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        out.sort_by_key(|(_, ip)| *ip);
        Ok(out)
    }

    pub async fn current(&self, rec: &RecordSpec) -> Result<Vec<IpAddr>, DnsError> {
        let zone_id = self.zone_id(&rec.zone).await?;
        Ok(self
            .records(&zone_id, rec)
            .await?
            .into_iter()
            .map(|(_, ip)| ip)
            .collect())
    }

    pub async fn set(&self, rec: &RecordSpec, values: &[IpAddr]) -> Result<Change, DnsError> {
        let zone_id = self.zone_id(&rec.zone).await?;
        let have = self.records(&zone_id, rec).await?;
        let wanted = crate::sorted(values.to_vec());
        let current: Vec<IpAddr> = have.iter().map(|(_, ip)| *ip).collect();
        if current == wanted {
            return Ok(Change::Unchanged);
        }
        let path = format!("/zones/{zone_id}/dns_records");
        for i in 0..have.len().max(wanted.len()) {
            match (have.get(i), wanted.get(i)) {
                (Some((id, _)), Some(ip)) => {
                    let body = json!({ "content": ip.to_string(), "ttl": rec.ttl });
                    self.api(Method::PATCH, &format!("{path}/{id}"), &[], Some(&body))
                        .await?;
                }
                (None, Some(ip)) => {
                    let body = json!({
                        "type": if rec.ipv6 { "AAAA" } else { "A" },
                        "name": rec.full_name(),
                        "content": ip.to_string(),
                        "ttl": rec.ttl,
                    });
                    self.api(Method::POST, &path, &[], Some(&body)).await?;
                }
                (Some((id, _)), None) => {
                    self.api(Method::DELETE, &format!("{path}/{id}"), &[], None)
                        .await?;
                }
                (None, None) => {}
            }
        }
        Ok(Change::Changed { from: current })
    }
}
