//! Failover: the DNS side. A provider makes a record set hold exactly
//! some values, reading the current ones first; vigie then asks the
//! zone's authoritative servers until they serve the change, instead of
//! trusting an API's 200.
//!
//! Today: RFC 2136 dynamic updates signed with TSIG, as compare-and-swap
//! (a prerequisite on the current values, so two watchers cannot fight).
//! The failover controller, quorum, the HTTP providers and dyndns build
//! on this (issue 4).

mod action;
pub mod cloudflare;
pub mod command;
pub mod dyndns;
mod http;
pub mod ovh;
pub mod powerdns;
pub mod provider;
pub mod rfc2136;

pub use action::FailoverActions;
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
