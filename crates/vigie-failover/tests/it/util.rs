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

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The provider moves `blog` from 203.0.113.10 (what its test server
/// starts with) to `to`, and reads the new addresses back in order.
pub async fn moves_blog(p: &Provider, to: &[&str]) {
    assert_eq!(p.current(&blog()).await.unwrap(), [ip("203.0.113.10")]);
    let mut to: Vec<IpAddr> = to.iter().map(|s| ip(s)).collect();
    assert_eq!(
        p.set(&blog(), &to).await.unwrap(),
        Change::Changed {
            from: vec![ip("203.0.113.10")]
        }
    );
    to.sort();
    assert_eq!(p.current(&blog()).await.unwrap(), to);
}
