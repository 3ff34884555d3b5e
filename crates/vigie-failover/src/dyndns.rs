//! dyndns: keep a record pointed at this node's public address, as read
//! from a "what is my IP" URL or a local interface, updating only when it
//! changes.

use std::net::IpAddr;
use std::time::Duration;

use vigie_config::{AddressType, Config, Dyndns};

use crate::{Change, DnsError, Provider, RecordSpec};

fn spec(d: &Dyndns) -> RecordSpec {
    RecordSpec {
        zone: d.record.zone.clone(),
        name: d.record.name.clone(),
        ipv6: d.record.rtype == AddressType::Aaaa,
        ttl: d.record.ttl,
    }
}

/// One pass: read the address, and change the record if it differs.
pub async fn update(
    config: &Config,
    d: &Dyndns,
    client: &reqwest::Client,
) -> Result<Option<IpAddr>, DnsError> {
    let from = d
        .address_from()
        .ok_or_else(|| DnsError::Config("set ip_url or interface".into()))?;
    let ip = crate::address::this_node(client, &from, d.record.rtype == AddressType::Aaaa).await?;
    let p = config
        .dns
        .get(&d.dns)
        .ok_or_else(|| DnsError::Config(format!("no DNS provider {}", d.dns)))?;
    let provider = Provider::from_config(p)?;
    match provider.set(&spec(d), &[ip]).await? {
        Change::Unchanged => Ok(None),
        Change::Changed { .. } => Ok(Some(ip)),
    }
}

/// Run every `[dyndns.NAME]` of `config` until the task is aborted.
pub async fn run_all(config: std::sync::Arc<Config>) {
    let client = match crate::http::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "dyndns cannot start");
            return;
        }
    };
    let mut set = tokio::task::JoinSet::new();
    for d in config.dyndns.values() {
        let (config, client, d) = (config.clone(), client.clone(), d.clone());
        set.spawn(async move {
            loop {
                match update(&config, &d, &client).await {
                    Ok(Some(ip)) => tracing::info!(dyndns = %d.name, %ip, "public address changed; record updated"),
                    Ok(None) => tracing::debug!(dyndns = %d.name, "record already up to date"),
                    Err(e) => tracing::warn!(dyndns = %d.name, error = %e, "dyndns update failed"),
                }
                tokio::time::sleep(d.every.std().max(Duration::from_secs(1))).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}
