//! RFC 2136 + TSIG against a real Knot DNS: compare-and-swap updates,
//! refused keys, lost races, and verification on the authoritative server.

use crate::util::{blog, changes_blog, ip, rt};

use std::time::Duration;

use vigie_failover::{
    Change, DnsError, Provider, RecordSpec, Rfc2136, TsigAlgorithm, query_addresses,
};
use vigie_testkit::knot::knot;
use vigie_testkit::{Need, require};

/// Whether the server at `addr` serves `blog` at 198.51.100.7 within
/// `within`: how long it took.
async fn serves_the_move(
    addr: std::net::SocketAddr,
    within: Duration,
) -> Result<Duration, DnsError> {
    Rfc2136::verify(&[addr], &blog(), &[ip("198.51.100.7")], within).await
}

#[test]
fn a_signed_update_moves_the_record_and_is_verified() {
    require!(Need::Knot);
    let k = knot("example.org", "blog A 203.0.113.10");
    let dns = Rfc2136::new(k.addr, &k.key_name, TsigAlgorithm::HmacSha256, &k.secret).unwrap();
    let dns = Provider::Rfc2136(dns);
    rt().block_on(async {
        changes_blog(&dns, &[ip("198.51.100.7")]).await;
        let took = serves_the_move(k.addr, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(took < Duration::from_secs(5));
        assert_eq!(
            query_addresses(k.addr, &blog(), Duration::from_secs(2))
                .await
                .unwrap(),
            [ip("198.51.100.7")]
        );
        // Asking again changes nothing.
        assert_eq!(
            dns.set(&blog(), &[ip("198.51.100.7")]).await.unwrap(),
            Change::Unchanged
        );
        // A record that did not exist is created.
        let www = RecordSpec {
            name: "www".into(),
            ..blog()
        };
        assert_eq!(
            dns.set(&www, &[ip("192.0.2.1"), ip("192.0.2.2")])
                .await
                .unwrap(),
            Change::Changed { from: vec![] }
        );
        assert_eq!(
            dns.current(&www).await.unwrap(),
            [ip("192.0.2.1"), ip("192.0.2.2")]
        );
    });
}

#[test]
fn a_wrong_key_is_refused_and_changes_nothing() {
    require!(Need::Knot);
    let k = knot("example.org", "blog A 203.0.113.10");
    let wrong = Rfc2136::new(
        k.addr,
        &k.key_name,
        TsigAlgorithm::HmacSha256,
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktIQ==",
    )
    .unwrap();
    rt().block_on(async {
        let err = wrong.set(&blog(), &[ip("198.51.100.7")]).await.unwrap_err();
        assert!(
            matches!(
                err,
                DnsError::Refused { .. } | DnsError::Unauthenticated { .. }
            ),
            "{err}"
        );
        assert_eq!(wrong.current(&blog()).await.unwrap(), [ip("203.0.113.10")]);
    });
}

#[test]
fn a_lost_race_is_refused_not_overwritten() {
    require!(Need::Knot);
    let k = knot("example.org", "blog A 203.0.113.10");
    let dns = Rfc2136::new(k.addr, &k.key_name, TsigAlgorithm::HmacSha256, &k.secret).unwrap();
    rt().block_on(async {
        // Another watcher moved it first; we still believe the old value.
        dns.set(&blog(), &[ip("198.51.100.9")]).await.unwrap();
        let err = dns
            .set_from(&blog(), &[ip("203.0.113.10")], &[ip("198.51.100.7")])
            .await
            .unwrap_err();
        assert!(matches!(err, DnsError::Refused { .. }), "{err}");
        assert!(err.to_string().contains("another watcher"), "{err}");
        assert_eq!(dns.current(&blog()).await.unwrap(), [ip("198.51.100.9")]);
    });
}

#[test]
fn verification_fails_when_the_server_does_not_serve_the_value() {
    require!(Need::Knot);
    let k = knot("example.org", "blog A 203.0.113.10");
    rt().block_on(async {
        let err = serves_the_move(k.addr, Duration::from_millis(600))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("serves 203.0.113.10"), "{err}");
    });
}

#[test]
fn bad_settings_are_clear_errors() {
    let err = Rfc2136::new(
        "127.0.0.1:53".parse().unwrap(),
        "k",
        TsigAlgorithm::HmacSha256,
        "not base64!",
    )
    .unwrap_err();
    assert!(err.to_string().contains("not base64"), "{err}");
}

/// What `vigie failover switch` does: the record moved, the switch kept.
async fn by_hand(k: &vigie_testkit::knot::Knot, dir: &tempfile::TempDir, to: &str, side: &str) {
    let dns = Rfc2136::new(k.addr, &k.key_name, TsigAlgorithm::HmacSha256, &k.secret).unwrap();
    dns.set(&blog(), &[ip(to)]).await.unwrap();
    vigie_store::Store::open(&dir.path().join("state"))
        .unwrap()
        .set_failover_state(
            "blog",
            side,
            vigie_core::Timestamp::now(),
            "switched by hand",
        )
        .unwrap();
}

/// Regression: the cooldown used to refuse a failover that came soon
/// after a switch, leaving the record on a dead primary. It guards the
/// way back only; the daily budget guards both, and its refusal names the
/// record and where it stays.
#[test]
fn the_cooldown_holds_only_the_failback_and_the_budget_names_the_record_left() {
    use vigie_engine::ActionPlugin;
    let k = knot("example.org", "blog A 203.0.113.10");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tsig.key"), &k.secret).unwrap();
    let src = format!(
        "[dns.knot]\nkind = \"rfc2136\"\nserver = \"{}\"\nkey_name = \"{}\"\nsecret = {{ file = \"tsig.key\" }}\n\n[failover.blog]\nrecord = {{ zone = \"example.org\", name = \"blog\" }}\nprimary = [\"203.0.113.10\"]\nbackup = [\"198.51.100.7\"]\ndns = \"knot\"\nverify_timeout = \"5s\"\ncooldown = \"1h\"\nmax_changes_per_day = 4\n",
        k.addr, k.key_name
    );
    let config = vigie_config::load_str(&src, &dir.path().join("vigie.toml"), &|_| None)
        .unwrap()
        .config;
    let actions = vigie_failover::FailoverActions::new(dir.path().join("state")).unwrap();
    rt().block_on(async {
        let first = actions.run(&config, "blog", "web", 1).await.unwrap();
        assert!(first.contains("→ backup"), "{first}");
        // Back by hand (as `vigie failover switch blog --to primary`),
        // then a new outage within the hour: not refused by the cooldown.
        by_hand(&k, &dir, "203.0.113.10", "primary").await;
        let second = actions.run(&config, "blog", "web", 2).await.unwrap();
        assert!(second.contains("→ backup"), "{second}");
        // Found already there: no change, so nothing spent.
        let again = actions.run(&config, "blog", "web", 3).await.unwrap();
        assert!(again.contains("already pointed there"), "{again}");
        // The way back waits for the cooldown.
        let back = actions.undo(&config, "blog", "web").await.unwrap_err();
        assert!(back.contains("within the cooldown of 1h"), "{back}");
        // Four changes spent (two automatic, two by hand): the record
        // stays on the dead primary, named, with what to do.
        by_hand(&k, &dir, "203.0.113.10", "primary").await;
        let fourth = actions.run(&config, "blog", "web", 4).await.unwrap_err();
        assert!(
            fourth.contains("blog.example.org left on the primary, not switched to the backup")
                && fourth.contains("4 DNS changes in 24h")
                && fourth.contains("vigie failover switch blog --to backup"),
            "{fourth}"
        );
    });
}
