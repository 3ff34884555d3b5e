//! The fleet view: a node shows its own checks and those of each
//! `[[peer]]`, pulled over the peers' authenticated API; a peer down,
//! one answering garbage and one sending a huge body each show as
//! unreachable with why, and the page still answers. A report carries
//! states, never a check's message: that stays on its node.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_testkit::daemon::Daemon;
use vigie_testkit::{Env, check};

use crate::util::{assert_secure_headers, env, free_port, wait_or_explain, wait_state};

const PEER_TOKEN: &str = "a-shared-peer-token-long-enough-0123456789";

/// A server that answers every request on its port with `answer`
/// (headers and body), on a thread, until the test ends.
fn answering(answer: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).is_ok_and(|n| n == 1) {
                    head.push(b[0]);
                }
                let _ = s.write_all(&answer);
            });
        }
    });
    port
}

fn peer(name: &str, port: u16) -> String {
    format!(
        "[[peer]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}\"\ntoken = {{ file = \"peer.token\" }}\n\n"
    )
}

/// beta: a real daemon with a failing check, alpha among its peers; its
/// peer endpoint answers the shared token only.
fn beta() -> (Env, Daemon) {
    let b = env();
    std::fs::write(b.path().join("peer.token"), format!("{PEER_TOKEN}\n")).unwrap();
    b.config(&format!(
        "[node]\nname = \"beta\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n{}{}{}",
        peer("alpha", 9),
        check(
            "beta-db",
            "command = { argv = [\"sh\", \"-c\", \"echo '<i>refused</i>'; exit 1\"] }",
            "every = \"300ms\"\nseverity = \"high\"",
        ),
        check(
            "beta-web",
            "command = { argv = [\"true\"] }",
            "every = \"300ms\""
        ),
    ));
    let beta = b.daemon();
    wait_state(&beta, "beta-db", "failing", Duration::from_secs(10));

    // Its peer endpoint: the shared token only.
    let fleet = |token: &str| {
        beta.http(
            "GET",
            "/api/v1/peer/fleet",
            &[("authorization", &format!("Bearer {token}"))],
        )
    };
    assert_eq!(fleet("wrong-token-wrong-token-wrong-token").0, 401);
    assert_eq!(beta.http("GET", "/api/v1/peer/fleet", &[]).0, 401);
    let (status, body) = fleet(PEER_TOKEN);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"], "beta");
    assert_eq!(v["checks"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        !body.contains("refused"),
        "no probe output to a peer: {body}"
    );
    assert!(v["checks"][0].get("message").is_none(), "{v}");
    assert_eq!(v["checks"][0]["kind"], "command", "{v}");
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["incidents"][0].get("last_error").is_none(), "{v}");

    (b, beta)
}

/// gamma is down; delta answers an HTML page; epsilon sends 3 MB
/// with no length; zeta says it is someone else: their ports.
fn odd_peers() -> (u16, u16, u16, u16) {
    let down = free_port();
    let garbage = answering(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 22\r\nConnection: close\r\n\r\n<html>not json</html>\n"
            .to_vec(),
    );
    let mut huge =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b' ', 3 * 1024 * 1024));
    let huge = answering(huge);
    let other = r#"{"node":"mallory","checks":[],"incidents":[]}"#;
    let impostor = answering(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{other}",
            other.len()
        )
        .into_bytes(),
    );

    (down, garbage, huge, impostor)
}

/// The page as a person sees it, a test artifact (when Chromium is here).
fn screenshot(a: &Env, alpha: &Daemon) {
    if vigie_testkit::Need::Chromium.missing().is_none() {
        let shot = crate::dash::artifacts().join("fleet-desktop.png");
        let _ = std::fs::remove_file(&shot);
        crate::dash::chromium(
            a,
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1280,900",
                &format!("http://{}/ui/fleet", alpha.addr),
            ],
        );
    }
}

#[test]
fn the_fleet_view_shows_each_peer_and_says_why_one_is_unreachable() {
    let (_b, beta) = beta();
    let (down, garbage, huge, impostor) = odd_peers();
    let a = env();
    std::fs::write(a.path().join("peer.token"), format!("{PEER_TOKEN}\n")).unwrap();
    a.config(&format!(
        "[node]\nname = \"alpha\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n{}{}{}{}{}{}",
        peer("beta", beta.addr.port()),
        peer("gamma", down),
        peer("delta", garbage),
        peer("epsilon", huge),
        peer("zeta", impostor),
        check(
            "alpha-web",
            "command = { argv = [\"true\"] }",
            "every = \"300ms\""
        ),
    ));
    let alpha = a.daemon();
    wait_state(&alpha, "alpha-web", "ok", Duration::from_secs(10));

    let started = Instant::now();
    let (status, page) = alpha.http("GET", "/ui/fleet", &[]);
    let took = started.elapsed();
    assert_eq!(status, 200, "{page}");
    assert!(
        took < Duration::from_secs(10),
        "the peers are asked at once, each bounded: {took:?}"
    );
    let section = |node: &str| -> String {
        let at = page
            .find(&format!("data-node=\"{node}\""))
            .unwrap_or_else(|| panic!("no {node}: {page}"));
        let end = page[at..].find("</section>").unwrap() + at;
        page[at..end].to_owned()
    };
    let mine = section("alpha");
    assert!(mine.contains("alpha-web"), "{mine}");
    let beta_s = section("beta");
    let base = format!("http://127.0.0.1:{}", beta.addr.port());
    assert!(
        beta_s.contains(&format!("href=\"{base}/\">its dashboard")),
        "{beta_s}"
    );
    assert!(
        beta_s.contains(&format!("href=\"{base}/checks/beta-db\"")),
        "{beta_s}"
    );
    assert!(
        beta_s.contains("class=\"state failing\">failing<"),
        "{beta_s}"
    );
    assert!(
        !beta_s.contains("refused"),
        "a peer's messages stay on it: {beta_s}"
    );
    assert!(beta_s.contains("<td>command</td>"), "{beta_s}");
    assert!(beta_s.contains("1 open incident<"), "{beta_s}");
    assert!(
        beta_s.contains(&format!("href=\"{base}/incidents/")),
        "{beta_s}"
    );
    let gamma = section("gamma");
    assert!(
        gamma.contains(">unreachable</span> error sending request"),
        "{gamma}"
    );
    let delta = section("delta");
    assert!(delta.contains("no fleet report"), "{delta}");
    let epsilon = section("epsilon");
    assert!(
        epsilon.contains(&format!("sent more than {} bytes", 2 * 1024 * 1024)),
        "{epsilon}"
    );
    let zeta = section("zeta");
    assert!(
        zeta.contains("answered as node &quot;mallory&quot;: not the peer configured as `zeta`"),
        "{zeta}"
    );
    assert_secure_headers(alpha.addr, "/ui/fleet", &[]);
    screenshot(&a, &alpha);

    // beta stops: after the cache, alpha says so; the page still answers.
    drop(beta);
    wait_or_explain(
        Duration::from_secs(20),
        || {
            let (status, page) = alpha.http("GET", "/ui/fleet", &[]);
            assert_eq!(status, 200, "{page}");
            let at = page.find("data-node=\"beta\"").unwrap();
            page[at..]
                .split("</section>")
                .next()
                .unwrap()
                .contains(">unreachable</span>")
        },
        || alpha.http("GET", "/ui/fleet", &[]).1,
    );
}
