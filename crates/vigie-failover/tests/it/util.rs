//! Helpers shared by the failover tests.

use std::net::IpAddr;

use vigie_failover::{Change, Provider, RecordSpec};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `blog.example.org`, an A record with a TTL of 60 s.
pub fn blog() -> RecordSpec {
    RecordSpec {
        zone: "example.org".into(),
        name: "blog".into(),
        ipv6: false,
        ttl: 60,
    }
}

/// The provider finds `blog` at 203.0.113.10 (what its test server
/// starts with) and reports its change to `to` as a change from there.
pub async fn changes_blog(p: &Provider, to: &[IpAddr]) {
    assert_eq!(p.current(&blog()).await.unwrap(), [ip("203.0.113.10")]);
    assert_eq!(
        p.set(&blog(), to).await.unwrap(),
        Change::Changed {
            from: vec![ip("203.0.113.10")]
        }
    );
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The provider moves `blog` from 203.0.113.10 (what its test server
/// starts with) to `to`, and reads the new addresses back in order.
pub async fn moves_blog(p: &Provider, to: &[&str]) {
    let mut to: Vec<IpAddr> = to.iter().map(|s| ip(s)).collect();
    changes_blog(p, &to).await;
    to.sort();
    assert_eq!(p.current(&blog()).await.unwrap(), to);
}
