//! The client that asks a peer for its vote, against a local server that
//! answers what a broken or hostile peer would.

use std::path::Path;
use std::sync::Arc;

use crate::util::rt;
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

/// A `[[peer]]` at `addr` over HTTPS, trusting `ca` when given.
fn https_peer(addr: &str, ca: Option<&Path>) -> PeerClient {
    let ca = ca.map_or(String::new(), |p| format!("ca = \"{}\"\n", p.display()));
    let src = format!(
        "[node]\nname = \"w1\"\n\n[[peer]]\nname = \"w2\"\nurl = \"https://{addr}\"\ntoken = {{ env = \"T\" }}\n{ca}"
    );
    let env = |k: &str| (k == "T").then(|| "peer-token".to_owned());
    let loaded =
        vigie_config::load_str(&src, Path::new("p.toml"), &env).unwrap_or_else(|d| panic!("{d}"));
    PeerClient::new(&loaded.config.peers[0]).unwrap()
}

/// A peer's `ca` is its only root: a certificate for the peer's address
/// from a CA of the system's store does not pass. The system store is
/// what `SSL_CERT_FILE` names, so the test runs itself again in a child
/// process whose store is a "public" CA that signed the server.
#[test]
fn a_peer_ca_is_its_only_root() {
    if let Some(addr) = std::env::var_os("VIGIE_TEST_PEER_ADDR") {
        let addr = addr.to_string_lossy().into_owned();
        let dir = tempfile::tempdir().unwrap();
        let private_ca = dir.path().join("private-ca.pem");
        let _ = servers::make_cert(servers::Cert::ValidFor(30), &private_ca);
        // Through the system's store, the handshake passes (the answer is
        // no vote: this server is no vigie).
        let err = rt()
            .block_on(https_peer(&addr, None).vote("blog"))
            .unwrap_err();
        assert!(!err.contains("unreachable"), "{err}");
        // With its own CA, the peer's certificate from the public CA fails.
        let err = rt()
            .block_on(https_peer(&addr, Some(&private_ca)).vote("blog"))
            .unwrap_err();
        assert!(
            err.contains("unreachable") && err.contains("certificate"),
            "{err}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let public_ca = dir.path().join("public-ca.pem");
    let server = servers::https(servers::Cert::ValidFor(30), &public_ca);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["peer::a_peer_ca_is_its_only_root", "--exact", "--nocapture"])
        .env("VIGIE_TEST_PEER_ADDR", server.addr.to_string())
        .env("SSL_CERT_FILE", &public_ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}
