//! A real Prometheus server on a loopback port, in a temp dir, with its
//! remote-write receiver on (`/api/v1/write`) and no scrape of its own:
//! what it holds is what was written to it. [`Prometheus::query`] asks
//! its HTTP API (`/api/v1/query`) for PromQL.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::KillOnDrop;

pub struct Prometheus {
    pub addr: SocketAddr,
    /// Ends the server when this is dropped, before `dir` goes.
    _child: KillOnDrop,
    pub dir: tempfile::TempDir,
}

/// Start `prometheus` on a free loopback port; returns once its API answers.
pub fn prometheus() -> Prometheus {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // No scrape jobs: only what is written to it.
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").expect("prometheus.yml");
    let child = KillOnDrop::spawn_logging(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .current_dir(dir.path()),
        &dir.path().join("prometheus.log"),
        "prometheus",
    );
    let p = Prometheus {
        addr,
        _child: child,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = p.get("/-/ready") {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not start: {}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Prometheus {
    /// Its log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The remote-write endpoint.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// A GET of `path` (HTTP/1.0, so that the body comes whole, not in
    /// chunks): (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// `/api/v1/query` of `promql` (an instant query, now): the whole
    /// answer, `{"status": "success", "data": {…}}` or an error's.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        let (_, body) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(promql)))
            .expect("query prometheus");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The result vector of `promql` (panics on an error answer).
    pub fn vector(&self, promql: &str) -> Vec<serde_json::Value> {
        let v = self.query(promql);
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// `s` as a URL's query value: every byte but the unreserved ones escaped.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
