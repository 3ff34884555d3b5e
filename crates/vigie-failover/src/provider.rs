//! One interface over every provider, built from the configuration, and
//! the switch itself: change the record, then verify it on the
//! authoritative servers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vigie_config::{AddressType, Backup, DnsProvider, Failover, TsigAlgorithmName};

use crate::{Change, Cloudflare, DnsError, Ovh, PowerDns, RecordSpec, Rfc2136, TsigAlgorithm};

/// A configured DNS provider.
#[derive(Debug)]
pub enum Provider {
    Rfc2136(Rfc2136),
    Ovh(Ovh),
    Cloudflare(Cloudflare),
    PowerDns(PowerDns),
    Command(crate::command::CommandProvider),
}

impl Provider {
    pub fn from_config(p: &DnsProvider) -> Result<Self, DnsError> {
        Ok(match p {
            DnsProvider::Rfc2136 {
                server,
                key_name,
                algorithm,
                secret,
            } => {
                let algorithm = match algorithm {
                    TsigAlgorithmName::HmacSha256 => TsigAlgorithm::HmacSha256,
                    TsigAlgorithmName::HmacSha512 => TsigAlgorithm::HmacSha512,
                };
                Provider::Rfc2136(Rfc2136::new(*server, key_name, algorithm, secret.expose())?)
            }
            DnsProvider::Ovh {
                endpoint,
                application_key,
                application_secret,
                consumer_key,
            } => Provider::Ovh(Ovh::new(
                endpoint,
                application_key,
                application_secret.expose(),
                consumer_key.expose(),
            )?),
            DnsProvider::Cloudflare { token, api } => {
                Provider::Cloudflare(Cloudflare::new(api, token.expose())?)
            }
            DnsProvider::Powerdns {
                url,
                server_id,
                api_key,
            } => Provider::PowerDns(PowerDns::new(url.0.as_str(), server_id, api_key.expose())?),
            DnsProvider::Command { argv, timeout } => Provider::Command(
                crate::command::CommandProvider::new(argv.clone(), timeout.std())?,
            ),
        })
    }

    pub async fn current(&self, rec: &RecordSpec) -> Result<Vec<IpAddr>, DnsError> {
        match self {
            Provider::Rfc2136(p) => p.current(rec).await,
            Provider::Ovh(p) => p.current(rec).await,
            Provider::Cloudflare(p) => p.current(rec).await,
            Provider::PowerDns(p) => p.current(rec).await,
            Provider::Command(p) => p.current(rec).await,
        }
    }

    pub async fn set(&self, rec: &RecordSpec, values: &[IpAddr]) -> Result<Change, DnsError> {
        match self {
            Provider::Rfc2136(p) => p.set(rec, values).await,
            Provider::Ovh(p) => p.set(rec, values).await,
            Provider::Cloudflare(p) => p.set(rec, values).await,
            Provider::PowerDns(p) => p.set(rec, values).await,
            Provider::Command(p) => p.set(rec, values).await,
        }
    }
}

/// The record of a failover, or the drill record beside it.
pub fn record(f: &Failover, drill: bool) -> RecordSpec {
    let name = if drill {
        f.drill_record.clone().unwrap_or_default()
    } else {
        f.record.name.clone()
    };
    RecordSpec {
        zone: f.record.zone.clone(),
        name,
        ipv6: f.record.rtype == AddressType::Aaaa,
        ttl: f.record.ttl,
    }
}

/// Which side the record points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Primary,
    Backup,
    /// Neither: changed by hand, or half-way.
    Other,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
            Side::Other => "other",
        }
    }

    /// Which side `values` are. With `backup = "public-ip"`, any
    /// address but the primary's is the backup (its address changes).
    pub fn of(f: &Failover, values: &[IpAddr]) -> Self {
        let values = crate::sorted(values.to_vec());
        if values == crate::sorted(f.primary.clone()) {
            Side::Primary
        } else {
            match &f.backup {
                Backup::Fixed(b) if values == crate::sorted(b.clone()) => Side::Backup,
                Backup::PublicIp if !values.is_empty() => Side::Backup,
                _ => Side::Other,
            }
        }
    }

    /// The values of this side for `f` (the backup's current public
    /// address when it is `"public-ip"`).
    pub async fn values(
        self,
        f: &Failover,
        client: &reqwest::Client,
    ) -> Result<Vec<IpAddr>, DnsError> {
        match (self, &f.backup) {
            (Side::Primary, _) => Ok(f.primary.clone()),
            (Side::Backup, Backup::Fixed(v)) => Ok(v.clone()),
            (Side::Backup, Backup::PublicIp) => {
                let from = f.address_from().ok_or_else(|| {
                    DnsError::Config("backup = \"public-ip\" needs ip_url or interface".into())
                })?;
                Ok(vec![
                    crate::address::this_node(client, &from, f.record.rtype == AddressType::Aaaa)
                        .await?,
                ])
            }
            (Side::Other, _) => Err(DnsError::Config("no values for side `other`".into())),
        }
    }
}

/// What one switch did and how long each stage took.
#[derive(Clone, Debug)]
pub struct Switched {
    pub change: Change,
    pub update: Duration,
    pub verify: Duration,
}

/// Point `rec` at `values` and wait until the authoritative servers of
/// `f` serve them.
pub async fn switch(
    provider: &Provider,
    f: &Failover,
    rec: &RecordSpec,
    values: &[IpAddr],
) -> Result<Switched, DnsError> {
    let start = Instant::now();
    let change = provider.set(rec, values).await?;
    let update = start.elapsed();
    let verify = Rfc2136::verify(&f.verify, rec, values, f.verify_timeout.std()).await?;
    Ok(Switched {
        change,
        update,
        verify,
    })
}
