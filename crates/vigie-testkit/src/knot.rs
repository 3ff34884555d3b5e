//! A real Knot DNS server on a loopback port, with one zone open to
//! dynamic updates signed by a TSIG key. Tests `require!(Need::Knot)`;
//! `scripts/test` installs knot.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::KillOnDrop;

pub struct Knot {
    pub addr: SocketAddr,
    pub zone: String,
    pub key_name: String,
    /// The TSIG key, base64.
    pub secret: String,
    /// Ends the server when this is dropped, before `dir` goes.
    _child: KillOnDrop,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    // Knot listens on TCP and UDP: find a port free for both.
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Start knotd on a free loopback port serving `zone` with the given
/// records (zone-file lines, relative names); updates need the returned
/// key.
pub fn knot(zone: &str, records: &str) -> Knot {
    knot_at(None, ([127, 0, 0, 1], free_port()).into(), zone, records)
}

/// Start knotd on `addr`, inside network namespace `netns` if given.
pub fn knot_at(netns: Option<&str>, addr: SocketAddr, zone: &str, records: &str) -> Knot {
    let knotd = crate::need::installed(&["/usr/sbin/knotd", "/usr/bin/knotd"])
        .expect("knotd is not installed: a test says `require!(Need::Knot)` first");
    let dir = tempfile::tempdir().expect("temp dir");
    let key_name = "vigie-key".to_owned();
    let secret = "dmlnaWUtdGVzdC1rZXktZm9yLWtub3QtdXBkYXRlcy0zMg==".to_owned();
    let d = dir.path().display();
    let (ip, port) = (addr.ip(), addr.port());
    std::fs::create_dir(dir.path().join("db")).expect("db dir");
    std::fs::write(
        dir.path().join(format!("{zone}.zone")),
        format!(
            "$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 900 604800 60\n@ NS ns1.{zone}.\nns1 A 127.0.0.1\n{records}\n"
        ),
    )
    .expect("zone file");
    let conf = format!(
        r#"server:
    listen: {ip}@{port}
    rundir: "{d}"
log:
  - target: stderr
    any: info
database:
    storage: "{d}/db"
key:
  - id: {key_name}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: updates
    key: {key_name}
    action: update
zone:
  - domain: {zone}
    storage: "{d}"
    file: "{zone}.zone"
    acl: updates
    zonefile-sync: -1
"#
    );
    let conf_path = dir.path().join("knot.conf");
    std::fs::write(&conf_path, conf).expect("knot.conf");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, knotd]);
            c
        }
        None => Command::new(knotd),
    };
    let child = KillOnDrop::spawn_logging(
        cmd.arg("-c").arg(&conf_path),
        &dir.path().join("knot.log"),
        "knotd",
    );
    let knot = Knot {
        addr,
        zone: zone.to_owned(),
        key_name,
        secret,
        _child: child,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "knotd did not start: {}",
            std::fs::read_to_string(knot.dir.path().join("knot.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    knot
}
