//! vigie-failover's integration tests, one test binary with a module per
//! provider (ripgrep's `tests/tests.rs`): RFC 2136 against a real Knot,
//! the command provider, the HTTP providers and OVH against local
//! servers that check each documented request, and the peer client.
//! `util.rs` holds what they share.

mod command;
mod http_providers;
mod knot;
mod ovh;
mod peer;
mod util;
