//! Helpers shared by the failover tests.

use std::net::IpAddr;

use vigie_failover::RecordSpec;

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
