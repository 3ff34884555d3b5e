//! Failover: the DNS side. A provider makes a record set hold exactly
//! some values, reading the current ones first; vigie then asks the
//! zone's authoritative servers until they serve the change, instead of
//! trusting an API's 200.
//!
//! Providers: RFC 2136 dynamic updates signed with TSIG, as
//! compare-and-swap (a prerequisite on the current values, so two
//! watchers cannot fight), OVH, Cloudflare, PowerDNS and any command.
//! Above them: the failover action of the incidents engine, decided by a
//! quorum of watchers (`quorum`), and dyndns.

mod action;
pub mod address;
pub mod cloudflare;
pub mod command;
pub mod dyndns;
mod http;
pub mod ovh;
pub mod powerdns;
pub mod provider;
pub mod quorum;
pub mod rfc2136;

pub use action::{FailoverActions, failback_warning, fence};

/// The HTTP client the providers and the public-address look-up use.
pub fn http_client() -> Result<reqwest::Client, DnsError> {
    http::client()
}
pub use cloudflare::Cloudflare;
pub use ovh::Ovh;
pub use powerdns::PowerDns;
pub use provider::{Provider, Side, Switched, record, switch};
pub use rfc2136::{Change, DnsError, RecordSpec, Rfc2136, TsigAlgorithm, query_addresses};

/// A record set's values in one canonical order, without repeats: how
/// every provider compares what is with what should be.
pub(crate) fn sorted(mut v: Vec<std::net::IpAddr>) -> Vec<std::net::IpAddr> {
    v.sort();
    v.dedup();
    v
}
