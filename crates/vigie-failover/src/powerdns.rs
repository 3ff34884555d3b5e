//! PowerDNS's HTTP API: one PATCH of the rrset with `changetype: REPLACE`,
//! authenticated by `X-API-Key`.

use std::net::IpAddr;

use reqwest::Method;
use serde_json::json;

use crate::http::{call, client, with_json};
use crate::{Change, DnsError, RecordSpec};

/// The provider's `kind`, which names it in messages.
const NAME: &str = vigie_config::DnsKind::Powerdns.name();

pub struct PowerDns {
    base: String,
    server_id: String,
    api_key: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for PowerDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDns")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// PowerDNS names zones and records with their final dot.
fn canonical(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

fn fqdn(rec: &RecordSpec) -> String {
    canonical(&rec.full_name())
}

impl PowerDns {
    /// `base` is the API's address (`http://127.0.0.1:8081`); the server
    /// id is `localhost` on a stock PowerDNS.
    pub fn new(base: &str, server_id: &str, api_key: &str) -> Result<Self, DnsError> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            server_id: server_id.to_owned(),
            api_key: api_key.to_owned(),
            client: client()?,
        })
    }

    fn zone_path(&self, rec: &RecordSpec) -> String {
        format!(
            "/api/v1/servers/{}/zones/{}",
            self.server_id,
            canonical(&rec.zone)
        )
    }

    pub async fn current(&self, rec: &RecordSpec) -> Result<Vec<IpAddr>, DnsError> {
        let path = self.zone_path(rec);
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key);
        let zone = call(NAME, &Method::GET, &path, req).await?;
        let name = fqdn(rec);
        let rtype = if rec.ipv6 { "AAAA" } else { "A" };
        let mut out: Vec<IpAddr> = zone["rrsets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == name.as_str() && s["type"] == rtype)
            .flat_map(|s| s["records"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["disabled"] != true)
            .filter_map(|r| r["content"].as_str()?.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn set(&self, rec: &RecordSpec, values: &[IpAddr]) -> Result<Change, DnsError> {
        let current = self.current(rec).await?;
        let wanted = crate::sorted(values.to_vec());
        if current == wanted {
            return Ok(Change::Unchanged);
        }
        let body = json!({
            "rrsets": [{
                "name": fqdn(rec),
                "type": if rec.ipv6 { "AAAA" } else { "A" },
                "ttl": rec.ttl,
                "changetype": "REPLACE",
                "records": wanted.iter().map(|ip| json!({ "content": ip.to_string(), "disabled": false })).collect::<Vec<_>>(),
            }]
        });
        let path = self.zone_path(rec);
        let req = with_json(
            self.client
                .patch(format!("{}{path}", self.base))
                .header("X-API-Key", &self.api_key),
            &body,
        );
        call(NAME, &Method::PATCH, &path, req).await?;
        Ok(Change::Changed { from: current })
    }
}
