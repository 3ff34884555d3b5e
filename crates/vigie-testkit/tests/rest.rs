//! The strict REST server refuses what restic's protocol does not allow,
//! and serves what it does, as a client sees it on the wire (raw
//! HTTP/1.1 over a socket, so that nothing between smooths it). That
//! restic itself backs up, checks and restores through it is shown in
//! vigie-backup's `tests/it/rest.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use vigie_testkit::rest::{RestOptions, RestServer, V1, V2, sha256_hex};

/// One answer: status, headers (names lowercase), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads
/// the answer to the end.
fn send(server: &RestServer, method: &str, target: &str, headers: &[&str], body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.addr,
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw, method == "HEAD")
}

fn parse(raw: &[u8], head_only: bool) -> Answer {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    if !head_only {
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert_eq!(body.len(), len, "the body is its Content-Length");
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn created(options: RestOptions) -> RestServer {
    let path = options.path.clone();
    let server = RestServer::start(options);
    assert_eq!(
        send(&server, "POST", &format!("{path}?create=true"), &[], b"").status,
        200
    );
    server
}

#[test]
fn nothing_before_the_repository_is_created_and_create_makes_restic_s_layout() {
    let server = RestServer::start(RestOptions::default());
    assert_eq!(send(&server, "HEAD", "/config", &[], b"").status, 404);
    let early = send(&server, "GET", "/keys/", &[], b"");
    assert_eq!(early.status, 404);
    assert!(String::from_utf8_lossy(&early.body).contains("create=true"));
    assert_eq!(send(&server, "POST", "/", &[], b"").status, 400);
    assert_eq!(send(&server, "GET", "/", &[], b"").status, 405);
    assert_eq!(send(&server, "POST", "/?create=true", &[], b"").status, 200);
    // Again: it is there already, which is fine.
    assert_eq!(send(&server, "POST", "/?create=true", &[], b"").status, 200);
    for d in ["keys", "locks", "snapshots", "index", "data/00", "data/ff"] {
        assert!(server.root().join(d).is_dir(), "{d}");
    }
}

#[test]
fn files_are_named_by_their_hash_never_overwritten_and_read_in_ranges() {
    let server = created(RestOptions::default());
    let content = b"0123456789abcdef".repeat(10);
    let id = sha256_hex(&content);
    let target = format!("/data/{id}");

    assert_eq!(send(&server, "HEAD", &target, &[], b"").status, 404);
    let wrong = send(&server, "POST", &target, &[], b"not these bytes");
    assert_eq!(wrong.status, 400);
    assert_eq!(send(&server, "POST", &target, &[], &content).status, 200);
    // On disk as restic's local layout has it, and nothing else there.
    let dir = server.root().join("data").join(&id[..2]);
    assert_eq!(std::fs::read(dir.join(&id)).unwrap(), content);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(send(&server, "POST", &target, &[], &content).status, 403);

    let head = send(&server, "HEAD", &target, &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("160"));
    assert_eq!(send(&server, "GET", &target, &[], b"").body, content);
    let part = send(&server, "GET", &target, &["Range: bytes=16-31"], b"");
    assert_eq!((part.status, part.body.as_slice()), (206, &content[16..32]));
    assert_eq!(part.header("content-range"), Some("bytes 16-31/160"));
    let tail = send(&server, "GET", &target, &["Range: bytes=150-"], b"");
    assert_eq!((tail.status, tail.body.as_slice()), (206, &content[150..]));
    let last = send(&server, "GET", &target, &["Range: bytes=-4"], b"");
    assert_eq!(last.body, &content[156..]);
    // Past the end: clipped; starting past it: not satisfiable.
    let over = send(&server, "GET", &target, &["Range: bytes=158-999"], b"");
    assert_eq!(over.body, &content[158..]);
    let beyond = send(&server, "GET", &target, &["Range: bytes=160-170"], b"");
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */160"));
    for bad in ["bytes=1-2,4-5", "bytes=5-1", "lines=1-2", "bytes=x-"] {
        let answer = send(&server, "GET", &target, &[&format!("Range: {bad}")], b"");
        assert_eq!(answer.status, 400, "{bad}");
    }

    assert_eq!(send(&server, "DELETE", &target, &[], b"").status, 200);
    assert_eq!(send(&server, "DELETE", &target, &[], b"").status, 404);
    assert_eq!(send(&server, "GET", &target, &[], b"").status, 404);
}

#[test]
fn unknown_paths_types_names_and_methods_are_refused() {
    let server = created(RestOptions::default());
    let id = sha256_hex(b"x");
    for (method, target, status) in [
        ("GET", "/packs/", 404),
        ("GET", format!("/data/{id}/x").as_str(), 404),
        ("GET", "/keys/abc", 400),
        ("GET", format!("/keys/{}", id.to_uppercase()).as_str(), 400),
        ("GET", format!("/keys/{id}?x=1").as_str(), 400),
        ("GET", "/keys/../config", 400),
        ("GET", "/keys%2F", 400),
        ("PUT", format!("/keys/{id}").as_str(), 405),
        ("DELETE", "/keys/", 405),
        ("PATCH", "/config", 405),
        ("GET", "/config", 404),
    ] {
        let answer = send(&server, method, target, &[], b"");
        assert_eq!(answer.status, status, "{method} {target}");
    }
    let refused = send(&server, "PUT", &format!("/keys/{id}"), &[], b"");
    assert_eq!(refused.header("allow"), Some("HEAD, GET, POST, DELETE"));

    // The config is no content-addressed file, but is never overwritten.
    assert_eq!(send(&server, "POST", "/config", &[], b"cfg").status, 200);
    assert_eq!(send(&server, "POST", "/config", &[], b"other").status, 403);
    assert_eq!(send(&server, "GET", "/config", &[], b"").body, b"cfg");
}

#[test]
fn listings_are_version_2_only_to_who_asks_for_it() {
    let server = created(RestOptions::default());
    let content = b"a key".to_vec();
    let id = sha256_hex(&content);
    assert_eq!(
        send(&server, "POST", &format!("/keys/{id}"), &[], &content).status,
        200
    );

    let v1 = send(&server, "GET", "/keys/", &[], b"");
    assert_eq!(v1.header("content-type"), Some(V1));
    assert_eq!(v1.body, format!("[\"{id}\"]").into_bytes());
    let v2 = send(&server, "GET", "/keys/", &[&format!("Accept: {V2}")], b"");
    assert_eq!(v2.header("content-type"), Some(V2));
    assert_eq!(
        v2.body,
        format!("[{{\"name\":\"{id}\",\"size\":5}}]").into_bytes()
    );
    let other = send(&server, "GET", "/keys/", &["Accept: application/json"], b"");
    assert_eq!(other.header("content-type"), Some(V1));

    // An old server answers version 1 whatever is asked.
    let old = created(RestOptions {
        v2: false,
        ..RestOptions::default()
    });
    let answer = send(&old, "GET", "/snapshots/", &[&format!("Accept: {V2}")], b"");
    assert_eq!(
        (answer.header("content-type"), answer.body.as_slice()),
        (Some(V1), &b"[]"[..])
    );
}

#[test]
fn credentials_append_only_and_a_repository_under_a_path() {
    let server = RestServer::start(RestOptions {
        path: "/my_backup_repo/".to_owned(),
        auth: Some(("alice".to_owned(), "s3cret".to_owned())),
        append_only: true,
        ..RestOptions::default()
    });
    // alice:s3cret and alice:wrong, in base64.
    let good = "Authorization: Basic YWxpY2U6czNjcmV0";
    let bad = "Authorization: Basic YWxpY2U6d3Jvbmc=";
    let none = send(&server, "POST", "/my_backup_repo/?create=true", &[], b"");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"restic\"")
    );
    assert_eq!(
        send(&server, "POST", "/my_backup_repo/?create=true", &[bad], b"").status,
        401
    );
    assert_eq!(
        send(
            &server,
            "POST",
            "/my_backup_repo/?create=true",
            &[good],
            b""
        )
        .status,
        200
    );
    assert_eq!(send(&server, "GET", "/keys/", &[good], b"").status, 404);
    assert_eq!(
        send(&server, "GET", "/my_backup_repo/keys/", &[good], b"").status,
        200
    );

    let content = b"lock".to_vec();
    let id = sha256_hex(&content);
    for tpe in ["locks", "snapshots"] {
        let target = format!("/my_backup_repo/{tpe}/{id}");
        assert_eq!(
            send(&server, "POST", &target, &[good], &content).status,
            200
        );
    }
    let lock = format!("/my_backup_repo/locks/{id}");
    let snapshot = format!("/my_backup_repo/snapshots/{id}");
    assert_eq!(send(&server, "DELETE", &snapshot, &[good], b"").status, 403);
    assert_eq!(send(&server, "DELETE", &lock, &[good], b"").status, 200);
    let log = server.requests();
    assert_eq!(log[0].status, 401);
    assert_eq!(log.last().unwrap().target, lock);
}

#[test]
fn chunked_bodies_and_kept_alive_connections_are_served() {
    let server = created(RestOptions::default());
    let content = b"chunked content".to_vec();
    let id = sha256_hex(&content);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "POST /index/{id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         7\r\nchunked\r\n8\r\n content\r\n0\r\n\r\n\
         GET /index/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.ends_with("chunked content"), "{text}");
}
