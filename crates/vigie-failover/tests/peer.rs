//! The client that asks a peer for its vote, against a local server that
//! answers what a broken or hostile peer would.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::rt;
use serde_json::json;
use vigie_failover::quorum::PeerClient;
use vigie_testkit::servers::{self, Captured};

/// A peer `w2` answering every request with `answer`.
fn peer_answering(answer: String) -> (servers::Running, PeerClient) {
    let (server, _) = servers::scripted(Arc::new(move |_: &Captured| (200, answer.clone())));
    let src = format!(
        "[node]\nname = \"w1\"\n\n[[peer]]\nname = \"w2\"\nurl = \"http://{}\"\ntoken = {{ env = \"T\" }}\n",
        server.addr
    );
    let env = |k: &str| (k == "T").then(|| "peer-token".to_owned());
    let loaded =
        vigie_config::load_str(&src, Path::new("p.toml"), &env).unwrap_or_else(|d| panic!("{d}"));
    let client = PeerClient::new(&loaded.config.peers[0]).unwrap();
    (server, client)
}

fn vote_since(since: i64) -> serde_json::Value {
    json!({"node": "w2", "failover": "blog", "verdict": "down", "since": since, "detail": "web: refused"})
}

fn now_ms() -> i64 {
    vigie_core::Timestamp::now().millis()
}

#[test]
fn a_vote_from_a_peer_is_read() {
    let (_server, client) = peer_answering(vote_since(now_ms() - 5_000).to_string());
    let vote = rt().block_on(client.vote("blog")).unwrap();
    assert_eq!(vote.node, "w2");
}

#[test]
fn a_vote_body_beyond_the_limit_is_not_read() {
    // A valid vote followed by a megabyte of spaces: JSON would accept it.
    let body = format!("{}{}", vote_since(now_ms() - 5_000), " ".repeat(1 << 20));
    let (_server, client) = peer_answering(body);
    let err = rt().block_on(client.vote("blog")).unwrap_err();
    assert!(err.contains("sent more than"), "{err}");
}

#[test]
fn a_vote_that_holds_since_the_future_is_refused() {
    let (_server, client) = peer_answering(vote_since(now_ms() + 86_400_000).to_string());
    let err = rt().block_on(client.vote("blog")).unwrap_err();
    assert!(err.contains("in the future"), "{err}");
}
