//! The HTTP server against a browser and against slow or numerous
//! clients: DNS rebinding, cross-site writes, slowloris, the connection
//! cap. The daemon runs on its defaults (header timeout, cap).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use vigie_testkit::daemon::Daemon;
use vigie_testkit::servers;

use crate::util::{assert_metrics, env, heartbeat_daemon, mem_check, start, token_daemon};

/// A raw HTTP/1.1 request whose every header is the caller's (`Host`
/// included): (status, body).
fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    let req = format!(
        "{head}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    servers::read_response(&mut s)
}

#[test]
fn a_web_page_can_neither_read_by_rebinding_nor_ack_cross_site() {
    let e = env();
    let d = heartbeat_daemon(&e);
    let a = d.addr;
    let port = a.port();
    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    let (status, body) = raw(
        a,
        "GET /api/v1/checks HTTP/1.1\r\nhost: evil.example:9470",
        "",
    );
    assert_eq!(status, 421, "{body}");
    assert!(!body.contains("job"), "{body}");
    // The names of this server are accepted, its host name included
    // (`curl http://$(hostname):9470/…` on Debian goes to 127.0.1.1).
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("{}:{port}", hostname.trim()),
    ] {
        let (status, body) = raw(
            a,
            &format!("GET /api/v1/checks HTTP/1.1\r\nhost: {host}"),
            "",
        );
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("\"job\""), "{body}");
    }
    let ack = |extra: &str, body: &str| {
        raw(
            a,
            &format!("POST /api/v1/incidents/1/ack HTTP/1.1\r\nhost: 127.0.0.1:{port}{extra}"),
            body,
        )
    };
    // A form posted from another site: foreign Origin.
    let (status, _) = ack(
        "\r\norigin: http://evil.example\r\ncontent-type: text/plain",
        "",
    );
    assert_eq!(status, 403);
    // `Origin: null` (a sandboxed frame) is foreign too.
    let (status, _) = ack("\r\norigin: null\r\ncontent-type: application/json", "{}");
    assert_eq!(status, 403);
    // No preflight-free write: an empty body or text/plain is refused.
    let (status, body) = ack("", "");
    assert_eq!(status, 415, "{body}");
    let (status, _) = ack("\r\ncontent-type: text/plain", "{\"note\":\"x\"}");
    assert_eq!(status, 415);
    // The same request in JSON, from the server's own page, gets through
    // the guards (there is no incident 1).
    let (status, body) = ack(
        &format!("\r\norigin: http://127.0.0.1:{port}\r\ncontent-type: application/json"),
        "{\"note\":\"x\"}",
    );
    assert_eq!(status, 404, "{body}");
    // Heartbeat pings as curl sends them: no Origin, no content type.
    for head in [
        format!(
            "GET /ping/job?token=tok-123 HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nuser-agent: curl/8.5.0\r\naccept: */*"
        ),
        format!(
            "POST /ping/job HTTP/1.1\r\nhost: localhost:{port}\r\nauthorization: Bearer tok-123\r\ncontent-type: application/x-www-form-urlencoded"
        ),
        format!("POST /ping/job/fail?token=tok-123 HTTP/1.1\r\nhost: [::1]:{port}"),
    ] {
        let (status, body) = raw(a, &head, "");
        assert_eq!(status, 200, "{head}: {body}");
    }
    // Said once in the log, counted in the metrics.
    assert_eq!(
        d.log().matches("refused a cross-site write").count(),
        1,
        "{}",
        d.log()
    );
    assert_metrics(
        &d,
        &[
            "vigie_http_refused_total{reason=\"host\"} 1",
            "vigie_http_refused_total{reason=\"origin\"} 2",
        ],
    );
}

#[test]
fn with_a_token_any_host_name_reaches_the_api() {
    let (_e, d) = token_daemon("127.0.0.1:0");
    // A reverse proxy or a peer names the server by DNS; the token is
    // what a page cannot send.
    let (status, body) = raw(
        d.addr,
        "GET /api/v1/checks HTTP/1.1\r\nhost: monitor.example\r\nauthorization: Bearer api-secret",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = raw(
        d.addr,
        "GET /api/v1/checks HTTP/1.1\r\nhost: monitor.example",
        "",
    );
    assert_eq!(status, 401);
    // Authentication comes before the content type: no token, no hint.
    let (status, _) = raw(
        d.addr,
        "POST /api/v1/incidents/1/ack HTTP/1.1\r\nhost: monitor.example",
        "",
    );
    assert_eq!(status, 401);
    // ... and before the body: a client without the token that announces
    // a body and never sends it is answered at once, not waited for.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"POST /api/v1/incidents/1/ack HTTP/1.1\r\nhost: monitor.example\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    // With the token, a body beyond the limit is refused unread.
    let big = format!("{{\"note\": \"{}\"}}", "x".repeat(100 * 1024));
    let (status, _) = raw(
        d.addr,
        "POST /api/v1/incidents/1/ack HTTP/1.1\r\nhost: monitor.example\r\nauthorization: Bearer api-secret\r\ncontent-type: application/json",
        &big,
    );
    assert_eq!(status, 413);
}

/// Whether the server closed `s` (a read sees the end, or a reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// A counter or gauge of the daemon's `/metrics`, without labels.
fn metric(d: &Daemon, name: &str) -> u64 {
    let (_, metrics) = d.http("GET", "/metrics", &[]);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// The connection cap (`vigie_web::MAX_CONNECTIONS`).
const CAP: usize = 256;

#[test]
fn slowloris_connections_are_closed_and_others_are_still_served() {
    const SLOW: usize = CAP + 44;
    let e = env();
    let d = heartbeat_daemon(&e);
    // More clients than the cap, that send their headers a byte at a
    // time, forever.
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
                .expect("send");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let trickle = |slow: &mut Vec<TcpStream>, done: &mut Vec<bool>| {
        for (s, done) in slow.iter_mut().zip(done.iter_mut()) {
            if !*done {
                *done = s.write_all(b"x").is_err() || closed_by_server(s);
            }
        }
    };
    // And one that made a request on a kept-alive connection, then
    // stays idle: the same timer closes it.
    let mut idle = TcpStream::connect(d.addr).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .expect("send");
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).expect("answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    idle.set_nonblocking(true).expect("nonblocking");
    let mut done = vec![false; slow.len()];
    trickle(&mut slow, &mut done);
    // A normal client is answered at once, in the place of the oldest
    // slow one: nobody waited for a header timeout.
    assert_eq!(
        d.http("GET", "/ping/job?token=tok-123", &[]),
        (200, "OK\n".to_owned())
    );
    assert_eq!(metric(&d, "vigie_http_header_timeouts_total"), 0);
    // Still sending a byte every 200 ms, each is closed (made room for,
    // or cut by the header timeout: the timer bounds the whole header,
    // not a silence).
    let start = Instant::now();
    while done.iter().any(|d| !*d) {
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "{} slow connections still open after 60 s",
            done.iter().filter(|d| !**d).count()
        );
        std::thread::sleep(Duration::from_millis(200));
        trickle(&mut slow, &mut done);
    }
    vigie_testkit::wait_until(Duration::from_secs(30), || closed_by_server(&mut idle));
    let evicted = metric(&d, "vigie_http_evictions_total");
    let timed_out = metric(&d, "vigie_http_header_timeouts_total");
    assert!(evicted >= (SLOW - CAP) as u64, "{evicted} evicted");
    assert_eq!(evicted + timed_out, SLOW as u64 + 1);
}

/// The daemon's open sockets, from `/proc`.
fn sockets_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .filter(|f| {
                std::fs::read_link(f.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

#[test]
fn beyond_the_cap_new_clients_take_the_place_of_idle_ones() {
    let e = env();
    let d = heartbeat_daemon(&e);
    let pid = rustix::process::Pid::as_raw(Some(d.pid()));
    let before = sockets_of(pid);
    // Clients that connect and say nothing, more than the cap.
    let idle: Vec<TcpStream> = (0..CAP + 64)
        .map(|_| TcpStream::connect(d.addr).expect("connect"))
        .collect();
    vigie_testkit::wait_until(Duration::from_secs(10), || sockets_of(pid) >= before + CAP);
    // The server holds no more than the cap (and the few it asked to
    // close that are still closing), however long they wait.
    for _ in 0..10 {
        let open = sockets_of(pid);
        assert!(
            open <= before + CAP + 16,
            "{open} sockets open, {before} before"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A normal client is served at once, in the place of an idle one.
    assert_eq!(
        d.http("GET", "/ping/job?token=tok-123", &[]),
        (200, "OK\n".to_owned())
    );
    assert_eq!(metric(&d, "vigie_http_header_timeouts_total"), 0);
    assert!(metric(&d, "vigie_http_evictions_total") >= 64);
    drop(idle);
}

#[test]
fn listening_beyond_loopback_without_tls_is_a_warning() {
    let warning = "listens beyond loopback without TLS";
    let (_e, d) = token_daemon("0.0.0.0:0");
    d.wait_log(warning, Duration::from_secs(10));
    // On loopback, nothing to say.
    let e = env();
    let d = start(&e, &mem_check());
    d.wait_log("HTTP server listening", Duration::from_secs(10));
    assert!(!d.log().contains(warning), "{}", d.log());
}

#[test]
fn out_of_descriptors_the_server_backs_off_and_recovers() {
    let e = env();
    let d = heartbeat_daemon(&e);
    let pid = rustix::process::Pid::as_raw(Some(d.pid()));
    assert_eq!(metric(&d, "vigie_http_accept_errors_total"), 0);
    // A few descriptors to spare, then clients that take them all.
    let limit = sockets_and_files(pid) + 8;
    let set_limit = |n: usize| {
        let s = std::process::Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={n}:")])
            .status()
            .expect("prlimit");
        assert!(s.success());
    };
    set_limit(limit);
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(d.addr).expect("connect"))
        .collect();
    d.wait_log(
        "accepting an HTTP connection failed",
        Duration::from_secs(10),
    );
    // Let a spinning loop show itself: it would fail millions of times.
    std::thread::sleep(Duration::from_secs(2));
    drop(clients);
    set_limit(1024);
    let errors = metric(&d, "vigie_http_accept_errors_total");
    assert!(
        (1..=50).contains(&errors),
        "{errors} failed accepts: no back-off"
    );
    assert_eq!(
        d.http("GET", "/ping/job?token=tok-123", &[]),
        (200, "OK\n".to_owned())
    );
}

/// Every descriptor the daemon holds.
fn sockets_and_files(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The daemon's whole `/metrics` (vigie's families and the host's), as a
/// Prometheus server parses it: promtool finds no error, and lints
/// nothing but node_exporter's own camelCase memory names.
#[test]
fn promtool_reads_the_whole_metrics_page() {
    vigie_testkit::require!(vigie_testkit::Need::Promtool);
    let e = env();
    let d = start(&e, &mem_check());
    let (status, metrics) = d.http("GET", "/metrics", &[]);
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("node_cpu_seconds_total{"), "{metrics}");
    let file = e.write("metrics.txt", &metrics);
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("promtool runs");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{said}");
    for finding in said.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            finding.starts_with("node_memory_") && finding.contains("camelCase"),
            "promtool: {finding}\n{said}"
        );
    }
}
