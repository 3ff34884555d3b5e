//! RFC 2136 dynamic updates with TSIG (RFC 8945), over TCP.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sorted;

/// The record a failover moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSpec {
    /// The zone, e.g. `example.org`.
    pub zone: String,
    /// The name inside the zone (`blog`), or `@` for the apex.
    pub name: String,
    /// `A` (IPv4) or `AAAA` (IPv6).
    pub ipv6: bool,
    pub ttl: u32,
}

impl RecordSpec {
    fn zone_name(&self) -> Result<Name, DnsError> {
        let mut z = Name::from_ascii(&self.zone)
            .map_err(|e| DnsError::Config(format!("zone `{}`: {e}", self.zone)))?;
        z.set_fqdn(true);
        Ok(z)
    }

    /// The record's full name as text (`blog.example.org`; the zone
    /// itself for `@`), as the HTTP APIs want it.
    pub(crate) fn full_name(&self) -> String {
        if self.is_apex() {
            self.zone.clone()
        } else {
            format!("{}.{}", self.name, self.zone)
        }
    }

    pub(crate) fn is_apex(&self) -> bool {
        self.name == "@" || self.name.is_empty()
    }

    fn fqdn(&self) -> Result<Name, DnsError> {
        let zone = self.zone_name()?;
        if self.is_apex() {
            return Ok(zone);
        }
        let n = Name::from_ascii(&self.name)
            .map_err(|e| DnsError::Config(format!("name `{}`: {e}", self.name)))?;
        n.append_domain(&zone)
            .map_err(|e| DnsError::Config(e.to_string()))
    }

    fn rtype(&self) -> RecordType {
        if self.ipv6 {
            RecordType::AAAA
        } else {
            RecordType::A
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0}")]
    Config(String),
    #[error("DNS server {server}: {message}")]
    Network { server: SocketAddr, message: String },
    #[error("DNS server {server} refused the update: {code}{hint}")]
    Refused {
        server: SocketAddr,
        code: ResponseCode,
        hint: &'static str,
    },
    #[error("the answer of {server} failed TSIG verification: {message}")]
    Unauthenticated { server: SocketAddr, message: String },
    #[error("{provider} API: {message}")]
    Api {
        provider: &'static str,
        message: String,
    },
    #[error("the authoritative servers did not serve {expected} within {waited:?}: {last}")]
    NotPropagated {
        expected: String,
        waited: Duration,
        last: String,
    },
}

/// What `set` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The record already held these values.
    Unchanged,
    /// It was changed from these values.
    Changed { from: Vec<IpAddr> },
}

/// A primary server that takes signed dynamic updates.
pub struct Rfc2136 {
    server: SocketAddr,
    signer: TSigner,
    timeout: Duration,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn show(v: &[IpAddr]) -> String {
    if v.is_empty() {
        return "nothing".into();
    }
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One DNS exchange over TCP (two-byte length prefix, RFC 1035 4.2.2).
async fn exchange(server: SocketAddr, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, DnsError> {
    let net = |e: &dyn std::fmt::Display| DnsError::Network {
        server,
        message: e.to_string(),
    };
    let run = async {
        let mut s = TcpStream::connect(server).await.map_err(|e| net(&e))?;
        let len = u16::try_from(msg.len()).map_err(|_| net(&"message too large"))?;
        let mut out = Vec::with_capacity(msg.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(msg);
        s.write_all(&out).await.map_err(|e| net(&e))?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(|e| net(&e))?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.map_err(|e| net(&e))?;
        Ok(buf)
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| net(&format!("no answer within {timeout:?}")))?
}

/// The addresses `server` serves for the record (no recursion asked:
/// this is meant for authoritative servers).
pub async fn query_addresses(
    server: SocketAddr,
    rec: &RecordSpec,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsError> {
    let name = rec.fqdn()?;
    let mut q = Message::new();
    q.set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false);
    q.add_query(Query::query(name, rec.rtype()));
    let bytes = q.to_vec().map_err(|e| DnsError::Config(e.to_string()))?;
    let answer = exchange(server, &bytes, timeout).await?;
    let resp = Message::from_vec(&answer).map_err(|e| DnsError::Network {
        server,
        message: format!("garbled answer: {e}"),
    })?;
    if resp.id() != q.id() {
        return Err(DnsError::Network {
            server,
            message: "answer to another question".into(),
        });
    }
    match resp.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => {
            return Err(DnsError::Network {
                server,
                message: format!("answered {code}"),
            });
        }
    }
    Ok(sorted(
        resp.answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect(),
    ))
}

/// A random message id (a failed read leaves it 0, which only makes it
/// guessable, never wrong).
fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u16::from_be_bytes(b)
}

impl Rfc2136 {
    /// `secret` is the key in base64, as `keymgr`/`tsig-keygen` print it.
    pub fn new(
        server: SocketAddr,
        key_name: &str,
        algorithm: TsigAlgorithm,
        secret: &str,
    ) -> Result<Self, DnsError> {
        let key = data_encoding::BASE64
            .decode(secret.trim().as_bytes())
            .map_err(|e| DnsError::Config(format!("the TSIG secret is not base64: {e}")))?;
        let name = Name::from_ascii(key_name)
            .map_err(|e| DnsError::Config(format!("key name `{key_name}`: {e}")))?;
        let algorithm = match algorithm {
            TsigAlgorithm::HmacSha256 => HAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha512 => HAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(key, algorithm, name, 300)
            .map_err(|e| DnsError::Config(format!("TSIG: {e}")))?;
        Ok(Self {
            server,
            signer,
            timeout: Duration::from_secs(10),
        })
    }

    /// The values the primary serves now.
    pub async fn current(&self, rec: &RecordSpec) -> Result<Vec<IpAddr>, DnsError> {
        query_addresses(self.server, rec, self.timeout).await
    }

    /// Make the record set hold exactly `values`, with a prerequisite on
    /// what it held when read: if another watcher changed it meanwhile,
    /// the server refuses (YXRRSET/NXRRSET) and nothing is overwritten.
    pub async fn set(&self, rec: &RecordSpec, values: &[IpAddr]) -> Result<Change, DnsError> {
        let current = self.current(rec).await?;
        self.set_from(rec, &current, values).await
    }

    /// Replace `current` (what the caller believes the record holds) by
    /// `values`; the server refuses if `current` is no longer true.
    pub async fn set_from(
        &self,
        rec: &RecordSpec,
        current: &[IpAddr],
        values: &[IpAddr],
    ) -> Result<Change, DnsError> {
        let current = sorted(current.to_vec());
        let wanted = sorted(values.to_vec());
        if current == wanted {
            return Ok(Change::Unchanged);
        }
        let name = rec.fqdn()?;
        let zone = rec.zone_name()?;
        let rrset = |values: &[IpAddr], ttl: u32| {
            let mut set = RecordSet::with_ttl(name.clone(), rec.rtype(), ttl);
            for v in values {
                let data = match v {
                    IpAddr::V4(a) => RData::A(A(*a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
                };
                set.insert(Record::from_rdata(name.clone(), ttl, data), 0);
            }
            set.set_dns_class(DNSClass::IN);
            set
        };
        let mut msg = if current.is_empty() {
            update_message::create(rrset(&wanted, rec.ttl), zone, false)
        } else {
            update_message::compare_and_swap(
                rrset(&current, rec.ttl),
                rrset(&wanted, rec.ttl),
                zone,
                false,
            )
        };
        msg.set_id(rand_id());
        let now = u32::try_from(vigie_core::Timestamp::now().millis() / 1000).unwrap_or(u32::MAX);
        let verifier = msg
            .finalize(&self.signer, now)
            .map_err(|e| DnsError::Config(format!("signing the update: {e}")))?;
        let bytes = msg.to_vec().map_err(|e| DnsError::Config(e.to_string()))?;
        let answer = exchange(self.server, &bytes, self.timeout).await?;
        let resp = Message::from_vec(&answer).map_err(|e| DnsError::Network {
            server: self.server,
            message: format!("garbled answer: {e}"),
        })?;
        let code = resp.response_code();
        if code != ResponseCode::NoError {
            let hint = match code {
                ResponseCode::NotAuth => {
                    " (the key is not allowed to update this zone: check the server's ACL and the key name)"
                }
                ResponseCode::Refused => " (updates refused: check the server's ACL)",
                ResponseCode::YXRRSet | ResponseCode::NXRRSet => {
                    " (the record changed meanwhile: another watcher may have acted)"
                }
                _ => "",
            };
            return Err(DnsError::Refused {
                server: self.server,
                code,
                hint,
            });
        }
        // A signed request gets a signed answer; check it.
        if let Some(mut verify) = verifier {
            verify(&answer).map_err(|e| DnsError::Unauthenticated {
                server: self.server,
                message: e.to_string(),
            })?;
        }
        tracing::info!(server = %self.server, name = %name, from = %show(&current), to = %show(&wanted), "DNS record updated");
        Ok(Change::Changed { from: current })
    }

    /// Ask `servers` (the zone's authoritative servers) until all serve
    /// `values`; returns how long it took.
    pub async fn verify(
        servers: &[SocketAddr],
        rec: &RecordSpec,
        values: &[IpAddr],
        within: Duration,
    ) -> Result<Duration, DnsError> {
        let start = Instant::now();
        let wanted = sorted(values.to_vec());
        let mut last = String::from("not asked yet");
        loop {
            let mut all = true;
            for s in servers {
                match query_addresses(*s, rec, Duration::from_secs(2)).await {
                    Ok(v) if v == wanted => {}
                    Ok(v) => {
                        all = false;
                        last = format!("{s} serves {}", show(&v));
                    }
                    Err(e) => {
                        all = false;
                        last = e.to_string();
                    }
                }
            }
            if all {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= within {
                return Err(DnsError::NotPropagated {
                    expected: show(&wanted),
                    waited: within,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
