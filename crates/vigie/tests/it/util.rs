//! Helpers shared by every module of the integration tests.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_failover::{RecordSpec, query_addresses};
use vigie_testkit::daemon::Daemon;
use vigie_testkit::servers::Running;
use vigie_testkit::{Env, Run};

/// The vigie binary the tests run: the one cargo built, or
/// `VIGIE_TEST_BIN` when this test binary was copied where cargo's
/// `target/` is out of reach (`scripts.rs` runs it as `nobody`).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("VIGIE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vigie").to_owned())
    })
}

/// A temp dir to run vigie in.
pub fn env() -> Env {
    Env::new(bin())
}

/// The token in the URL `vigie heartbeat-url NAME` prints (32
/// characters).
pub fn heartbeat_token(e: &Env, name: &str) -> String {
    let url = e.run(&["heartbeat-url", name]);
    assert_eq!(url.code, 0, "{url:?}");
    let token = url.stdout.trim().rsplit_once("token=").unwrap().1;
    assert_eq!(token.len(), 32, "{url:?}");
    token.to_owned()
}

/// A `[server]` table on a port the kernel picks.
pub const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n";

/// A TCP port free now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The A records of `name`.example.org that the DNS server at `dns`
/// serves now.
pub fn query(dns: SocketAddr, name: &str) -> Result<Vec<IpAddr>, vigie_failover::DnsError> {
    let spec = RecordSpec {
        zone: "example.org".into(),
        name: name.into(),
        ipv6: false,
        ttl: 60,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(query_addresses(dns, &spec, Duration::from_secs(2)))
}

/// The same, none when the server does not answer (yet).
pub fn served(dns: SocketAddr, name: &str) -> Vec<IpAddr> {
    query(dns, name).unwrap_or_default()
}

/// The running daemon's own view of check `name` (live, not the store's
/// last commit), through its API.
pub fn api_check(d: &Daemon, name: &str) -> Value {
    let (status, body) = d.http("GET", "/api/v1/checks", &[]);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Poll the API until `name` is in `state`.
pub fn wait_state(d: &Daemon, name: &str, state: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let c = api_check(d, name);
        if c["state"] == state {
            return c;
        }
        assert!(
            start.elapsed() < limit,
            "{name} never became {state}: {c}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kill a service a test started, and reap it.
pub fn stop(service: &mut std::process::Child) {
    service.kill().unwrap();
    service.wait().unwrap();
}

/// Poll `f` until it holds; past `limit`, panic with what `why` says
/// then (the daemon's log, what was received).
pub fn wait_or_explain(limit: Duration, mut f: impl FnMut() -> bool, why: impl Fn() -> String) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A heartbeat check `job`, hourly, whose token `tok-123` is in the file
/// `hb.token` (written here): its `[[check]]` table.
pub fn heartbeat_job(e: &Env) -> String {
    e.write("hb.token", "tok-123\n");
    vigie_testkit::check(
        "job",
        "heartbeat = { period = \"1h\", token = { file = \"hb.token\" } }",
        "",
    )
}

/// The daemon of [`heartbeat_job`] alone, on a port the kernel picks.
pub fn heartbeat_daemon(e: &Env) -> Daemon {
    start(e, &heartbeat_job(e))
}

/// A check `mem` that always passes: its `[[check]]` table.
pub fn mem_check() -> String {
    vigie_testkit::check("mem", "memory = { max_used_percent = 100 }", "")
}

/// A daemon listening on `listen`, whose API and metrics need the token
/// `api-secret`, with [`mem_check`].
pub fn token_daemon(listen: &str) -> (Env, Daemon) {
    let e = env();
    e.write("api.token", "api-secret\n");
    e.config(&format!(
        "[server]\nlisten = \"{listen}\"\ntoken = {{ file = \"api.token\" }}\n\n{}",
        mem_check()
    ));
    let d = e.daemon();
    (e, d)
}

/// `/metrics` of `d` answers, with each of `needles` in it.
pub fn assert_metrics(d: &Daemon, needles: &[&str]) {
    let (status, metrics) = d.http("GET", "/metrics", &[]);
    assert_eq!(status, 200, "{metrics}");
    for needle in needles {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }
}

/// A `[notify.hook]` table: a webhook to `http://ADDR/in`.
pub fn webhook_hook(addr: SocketAddr) -> String {
    format!("[notify.hook]\nkind = \"webhook\"\nurl = \"http://{addr}/in\"\n")
}

/// The daemon of `checks` in `e`, its server on a port the kernel picks.
pub fn start(e: &Env, checks: &str) -> Daemon {
    e.config(&format!("{SERVER}{checks}"));
    e.daemon()
}

/// An HTTP check `name` of `url`, with the `extra` lines: its `[[check]]`
/// table.
pub fn http_check(name: &str, url: &str, extra: &str) -> String {
    vigie_testkit::check(name, &format!("http = {{ url = \"{url}\" }}"), extra)
}

/// An HTTP check `name` of `path` on the test server `s`, with the
/// `extra` lines.
pub fn http_check_of(s: &Running, name: &str, path: &str, extra: &str) -> String {
    http_check(name, &format!("http://{}{path}", s.addr), extra)
}

/// `vigie ARGS` exits with `code`, its stderr saying each of `says`: the
/// run, for more checks.
#[track_caller]
pub fn exits(e: &Env, args: &[&str], code: i32, says: &[&str]) -> Run {
    let r = e.run(args);
    assert_eq!(r.code, code, "{r:?}");
    for s in says {
        assert_has(&r.stderr, s);
    }
    r
}

/// `text` (a command's output, a log) holds `needle`; else the test
/// fails and shows `text`.
#[track_caller]
pub fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}

/// The status line and headers (lower-cased) of `GET path` on `addr`,
/// with the `headers` given.
pub fn head_of(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut extra = String::new();
    for (k, v) in headers {
        for part in [k, ": ", v, "\r\n"] {
            extra.push_str(part);
        }
    }
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase()
}

/// Every page of the dashboard and of the status pages answers with the
/// same policy: `GET path` (with `headers`) carries the strict
/// Content-Security-Policy, no sniffing and a same-origin referrer.
pub fn assert_secure_headers(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) {
    let head = head_of(addr, path, headers);
    for needle in [
        "content-security-policy: default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: same-origin",
    ] {
        assert!(head.contains(needle), "{path}: no `{needle}` in\n{head}");
    }
}
