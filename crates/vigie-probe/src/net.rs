//! The `tcp` and `dns` probes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::RecordType as HRecordType;
use hickory_resolver::{ResolveErrorKind, TokioResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigie_config::{DnsExpect, DnsProbe, RecordType, TcpProbe};
use vigie_core::Outcome;

use crate::{PrepareError, chain, human};

/// How much a `tcp` probe reads while waiting for its `expect` text.
const TCP_READ_LIMIT: usize = 64 * 1024;

pub(crate) async fn tcp(spec: &TcpProbe) -> Outcome {
    let Ok((host, port)) = vigie_config::split_host_port(&spec.address) else {
        return Outcome::fail(format!("`{}` is not host:port", spec.address));
    };
    let start = Instant::now();
    let mut stream = match tokio::net::TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(format!("connect to {}: {e}", spec.address)),
    };
    let connected = start.elapsed();
    if let Some(send) = &spec.send
        && let Err(e) = stream.write_all(send.as_bytes()).await
    {
        return Outcome::fail(format!("send to {}: {e}", spec.address));
    }
    if let Some(expect) = &spec.expect {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => {
                    let text = String::from_utf8_lossy(&got);
                    return Outcome::fail(format!(
                        "connection closed before {expect:?} came (got {:?})",
                        text.chars().take(80).collect::<String>()
                    ));
                }
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&got).contains(expect.as_str()) {
                        break;
                    }
                    if got.len() > TCP_READ_LIMIT {
                        return Outcome::fail(format!("{expect:?} not found in the first 64KiB"));
                    }
                }
                Err(e) => return Outcome::fail(format!("read from {}: {e}", spec.address)),
            }
        }
    }
    Outcome::ok(format!("connected in {}", human(connected)))
        .with_metric("latency_seconds", start.elapsed().as_secs_f64())
}

pub(crate) struct DnsPrepared {
    spec: DnsProbe,
    resolver: TokioResolver,
}

pub(crate) fn prepare_dns(spec: &DnsProbe, timeout: Duration) -> Result<DnsPrepared, PrepareError> {
    let mut builder = match &spec.server {
        Some(server) => {
            let addr: SocketAddr = server
                .parse()
                .or_else(|_| server.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| PrepareError(format!("`{server}` is not an IP address")))?;
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
        None => TokioResolver::builder_tokio()
            .map_err(|e| PrepareError(format!("system resolver: {e}")))?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // Every run asks afresh: a monitor must see changes, not its cache.
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = timeout;
    Ok(DnsPrepared {
        spec: spec.clone(),
        resolver: builder.build(),
    })
}

impl DnsPrepared {
    pub(crate) async fn run(&self) -> Outcome {
        let spec = &self.spec;
        let rtype = match spec.record {
            RecordType::A => HRecordType::A,
            RecordType::Aaaa => HRecordType::AAAA,
            RecordType::Cname => HRecordType::CNAME,
            RecordType::Mx => HRecordType::MX,
            RecordType::Txt => HRecordType::TXT,
            RecordType::Ns => HRecordType::NS,
        };
        let start = Instant::now();
        let lookup = match self.resolver.lookup(spec.name.as_str(), rtype).await {
            Ok(l) => l,
            Err(e) => {
                let msg = match e.kind() {
                    ResolveErrorKind::Proto(p) if p.is_no_records_found() => {
                        format!("no {rtype} record for {}", spec.name)
                    }
                    _ => format!("resolving {} {rtype}: {}", spec.name, chain(&e)),
                };
                return Outcome::fail(msg);
            }
        };
        let elapsed = start.elapsed();
        let mut got: Vec<String> = lookup
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| normalize(&r.to_string()))
            .collect();
        got.sort();
        got.dedup();
        let outcome = match &spec.expect {
            DnsExpect::Any if got.is_empty() => {
                Outcome::fail(format!("no {rtype} record for {}", spec.name))
            }
            DnsExpect::Any => Outcome::ok(format!("{} → {}", spec.name, got.join(", "))),
            DnsExpect::Values(want) => {
                let mut want: Vec<String> = want.iter().map(|w| normalize(w)).collect();
                want.sort();
                want.dedup();
                if want == got {
                    Outcome::ok(format!("{} → {}", spec.name, got.join(", ")))
                } else {
                    Outcome::fail(format!(
                        "{} → {}, expected {}",
                        spec.name,
                        show(&got),
                        show(&want)
                    ))
                }
            }
        };
        outcome
            .with_metric("latency_seconds", elapsed.as_secs_f64())
            .with_metric("answers", got.len() as f64)
    }
}

/// Compare names without their final dot and addresses in canonical form.
fn normalize(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    s.parse::<IpAddr>()
        .map_or_else(|_| s.to_ascii_lowercase(), |ip| ip.to_string())
}

fn show(v: &[String]) -> String {
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}
