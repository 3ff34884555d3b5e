//! Local servers for checks to probe: HTTP (plain and TLS, with
//! certificates made on the spot), a banner TCP server and DNS servers
//! that answer right or answer garbage. Each runs on its own thread with
//! its own runtime until dropped, so plain `#[test]` functions can use them.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server running on a background thread until dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn<F, Fut>(bind: F) -> Running
where
    F: FnOnce(tokio::sync::oneshot::Sender<SocketAddr>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            tokio::select! {
                () = bind(addr_tx) => {}
                _ = stop_rx => {}
            }
        });
    });
    let addr = addr_rx.blocking_recv().expect("server started");
    Running {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Answer one HTTP/1.1 request by its path:
/// `/ok`, `/status/N`, `/slow/MS`, `/big` (1 GiB), `/redirect`, `/hang`.
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let reply = |status: u16, body: &str| {
        format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let out = if path == "/ok" {
        reply(200, "all good")
    } else if let Some(code) = path.strip_prefix("/status/") {
        reply(code.parse().unwrap_or(500), "status page")
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
        reply(200, "slow but good")
    } else if path == "/redirect" {
        "HTTP/1.1 302 Found\r\nlocation: /ok\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_owned()
    } else if path == "/hang" {
        tokio::time::sleep(Duration::from_hours(1)).await;
        return;
    } else if path == "/big" {
        let gib: u64 = 1 << 30;
        if s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {gib}\r\n\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        while sent < gib {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len() as u64;
        }
        return;
    } else {
        reply(404, "no such page")
    };
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A server on 127.0.0.1 that serves each connection it accepts with
/// `serve`, on a task of its own.
fn serve_each<F, Fut>(serve: F) -> Running
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    spawn(move |addr_tx| async move {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _ = addr_tx.send(l.local_addr().expect("addr"));
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::task::spawn_local(serve(s));
        }
    })
}

/// A plain HTTP server on 127.0.0.1.
pub fn http() -> Running {
    serve_each(handle)
}

/// A TCP server that greets with `banner` and closes.
pub fn banner(banner: &'static str) -> Running {
    serve_each(move |mut s| async move {
        let _ = s.write_all(banner.as_bytes()).await;
    })
}

/// What a TLS test server presents.
#[derive(Clone, Copy, Debug)]
pub enum Cert {
    /// Signed by the test CA, valid for this many more days.
    ValidFor(i64),
    /// Signed by the test CA, expired yesterday.
    Expired,
    /// Self-signed, valid for a year.
    SelfSigned,
}

/// Make a CA and a certificate for `localhost` / 127.0.0.1; the CA's PEM
/// goes to `ca_pem`.
pub fn make_cert(
    kind: Cert,
    ca_pem: &Path,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vigie test CA");
    ca_params.not_before = now - time::Duration::days(30);
    ca_params.not_after = now + time::Duration::days(365);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    std::fs::write(ca_pem, ca.pem()).expect("write CA");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    p.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.not_before = now - time::Duration::days(10);
    p.not_after = match kind {
        Cert::ValidFor(days) => now + time::Duration::days(days),
        Cert::Expired => now - time::Duration::days(1),
        Cert::SelfSigned => now + time::Duration::days(365),
    };
    let cert = match kind {
        Cert::SelfSigned => p.self_signed(&key).expect("cert"),
        _ => p
            .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
            .expect("cert"),
    };
    (
        cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// A TLS acceptor presenting a certificate of `kind`.
fn acceptor(kind: Cert, ca_pem: &Path) -> tokio_rustls::TlsAcceptor {
    let (cert, key) = make_cert(kind, ca_pem);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS server presenting `kind`; the CA that signs it goes to `ca_pem`.
pub fn https(kind: Cert, ca_pem: &Path) -> Running {
    let acceptor = acceptor(kind, ca_pem);
    serve_each(move |s| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(tls) = acceptor.accept(s).await {
                handle(tls).await;
            }
        }
    })
}

/// A TCP server that accepts and then says nothing, ever: a TLS
/// handshake against it never ends.
pub fn silent() -> Running {
    spawn(|addr_tx| async move {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _ = addr_tx.send(l.local_addr().expect("addr"));
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        }
    })
}

/// How a test DNS server answers.
#[derive(Clone, Copy, Debug)]
pub enum Dns {
    /// Every A question gets this address.
    A([u8; 4]),
    /// Random-looking bytes that are no DNS message.
    Garbage,
    /// A header that claims answers it does not carry.
    Truncated,
}

/// A UDP DNS server on 127.0.0.1.
pub fn dns(mode: Dns) -> Running {
    spawn(move |addr_tx| async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let _ = addr_tx.send(sock.local_addr().expect("addr"));
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let q = &buf[..n];
            let reply = match mode {
                Dns::A(ip) => answer_a(q, ip),
                Dns::Garbage => {
                    let mut g: Vec<u8> = (0..40u8)
                        .map(|i| i.wrapping_mul(151).wrapping_add(7))
                        .collect();
                    if q.len() >= 2 {
                        g[..2].copy_from_slice(&q[..2]);
                    }
                    Some(g)
                }
                Dns::Truncated => q.get(..12).map(|h| {
                    let mut r = h.to_vec();
                    r[2] = 0x81;
                    r[3] = 0x80;
                    r[6..8].copy_from_slice(&5u16.to_be_bytes());
                    r
                }),
            };
            if let Some(r) = reply {
                let _ = sock.send_to(&r, from).await;
            }
        }
    })
}

/// A well-formed answer: the question echoed, one A record (TTL 60).
fn answer_a(q: &[u8], ip: [u8; 4]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // The question ends after the name's zero label and type + class.
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += usize::from(q[i]) + 1;
    }
    let question_end = i + 5;
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let mut r = q.get(..question_end)?.to_vec();
    r[2] = 0x85; // response, authoritative, recursion desired
    r[3] = 0x80; // recursion available, no error
    r[6..8].copy_from_slice(&u16::from(qtype == 1).to_be_bytes());
    r[8..12].fill(0);
    if qtype == 1 {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip);
    }
    Some(r)
}

/// A minimal blocking HTTP/1.1 client: (status, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    http_request_with_body(addr, method, path, headers, b"")
}

/// [`http_request`] sending `body`, as curl's `--data-binary` does.
pub fn http_request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    // A server may answer (413) before it has read all of a big body.
    let _ = s.write_all(body);
    read_response(&mut s)
}

/// Read an HTTP/1.1 response to its end: (status, body); status 0 when
/// the server closed without one.
pub fn read_response(s: &mut impl Read) -> (u16, String) {
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
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
    (status, body)
}

/// A UDP port on 127.0.0.1 where nothing listens (for tests that need a
/// server that never answers).
pub fn unused_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One request as a capturing server saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body's bytes as sent (`body` is their lossy UTF-8).
    pub raw: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP server that records every request and answers with the given
/// statuses in turn (the last one repeats).
pub fn capture(statuses: &[u16]) -> (Running, Arc<std::sync::Mutex<Vec<Captured>>>) {
    let statuses = if statuses.is_empty() {
        vec![200]
    } else {
        statuses.to_vec()
    };
    let served = std::sync::atomic::AtomicUsize::new(0);
    scripted(Arc::new(move |_req: &Captured| {
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let status = statuses[n.min(statuses.len() - 1)];
        let body = if status < 300 {
            "{\"ok\":true}"
        } else {
            "{\"error\":\"try later\"}"
        };
        (status, body.to_owned())
    }))
}

async fn read_request(mut s: tokio::net::TcpStream) -> Option<(tokio::net::TcpStream, Captured)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some((
        s,
        Captured {
            method,
            target,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            raw: body,
        },
    ))
}

/// One mail as a test SMTP server received it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mail {
    /// Whether STARTTLS was done before the mail.
    pub tls: bool,
    /// Credentials from AUTH PLAIN or AUTH LOGIN.
    pub auth: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after DATA (headers and body).
    pub data: String,
}

/// An SMTP server that offers STARTTLS (with a certificate for
/// `localhost` signed by a CA written to `ca_pem`) and AUTH, and keeps
/// every mail it accepts.
pub fn smtp(ca_pem: &Path) -> (Running, Arc<std::sync::Mutex<Vec<Mail>>>) {
    smtp_server(ca_pem, false)
}

/// The same server speaking TLS from the first byte (port 465 style).
pub fn smtps(ca_pem: &Path) -> (Running, Arc<std::sync::Mutex<Vec<Mail>>>) {
    smtp_server(ca_pem, true)
}

fn smtp_server(ca_pem: &Path, implicit_tls: bool) -> (Running, Arc<std::sync::Mutex<Vec<Mail>>>) {
    let acceptor = acceptor(Cert::ValidFor(30), ca_pem);
    let mails = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = mails.clone();
    let running = serve_each(move |mut s| {
        let acceptor = acceptor.clone();
        let kept = kept.clone();
        async move {
            let mut mail = Mail::default();
            if implicit_tls {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                mail.tls = true;
                let _ = tls.write_all(b"220 localhost ESMTP vigie-test\r\n").await;
                let _ = converse(tls, &mut mail, &kept).await;
                return;
            }
            let _ = s.write_all(b"220 localhost ESMTP vigie-test\r\n").await;
            if let Some(plain) = converse(s, &mut mail, &kept).await
                && let Ok(tls) = acceptor.accept(plain).await
            {
                mail.tls = true;
                let _ = converse(tls, &mut mail, &kept).await;
            }
        }
    });
    (running, mails)
}

async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        line.push(b[0]);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > 64 * 1024 {
            return None;
        }
    }
}

/// `<a@b>` → `a@b`
fn address(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_owned()
}

fn b64decode(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = A.iter().position(|a| *a == c) else {
            continue;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One SMTP conversation; returns the stream when the client asks for
/// STARTTLS, so that the caller can wrap it.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    mail: &mut Mail,
    kept: &std::sync::Mutex<Vec<Mail>>,
) -> Option<S> {
    loop {
        let line = read_line(&mut s).await?;
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            if mail.tls {
                "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            } else {
                "250-localhost\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            }
        } else if upper == "STARTTLS" {
            s.write_all(b"220 ready to start TLS\r\n").await.ok()?;
            return Some(s);
        } else if let Some(rest) = upper.strip_prefix("AUTH PLAIN") {
            let b64 = if rest.trim().is_empty() {
                s.write_all(b"334 \r\n").await.ok()?;
                read_line(&mut s).await?
            } else {
                line[10..].trim().to_owned()
            };
            let decoded = b64decode(&b64);
            let mut parts = decoded.split('\0').skip(1);
            mail.auth = Some((parts.next()?.to_owned(), parts.next()?.to_owned()));
            "235 authenticated\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            s.write_all(b"334 VXNlcm5hbWU6\r\n").await.ok()?;
            let user = b64decode(&read_line(&mut s).await?);
            s.write_all(b"334 UGFzc3dvcmQ6\r\n").await.ok()?;
            let pass = b64decode(&read_line(&mut s).await?);
            mail.auth = Some((user, pass));
            "235 authenticated\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail.from.clone_from(&address(&line[10..]));
            "250 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(address(&line[8..]));
            "250 ok\r\n".into()
        } else if upper == "DATA" {
            s.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.ok()?;
            let mut data = String::new();
            loop {
                let l = read_line(&mut s).await?;
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push('\n');
            }
            mail.data = data;
            kept.lock().expect("mails").push(mail.clone());
            "250 queued\r\n".into()
        } else if upper == "QUIT" {
            let _ = s.write_all(b"221 bye\r\n").await;
            return None;
        } else {
            "250 ok\r\n".into()
        };
        s.write_all(reply.as_bytes()).await.ok()?;
    }
}

/// What a scripted server answers to one request: status and JSON body
/// (for a 3xx status, the body is the `Location`).
pub type Responder = Arc<dyn Fn(&Captured) -> (u16, String) + Send + Sync>;

/// An HTTP server whose answers come from `respond`, recording every
/// request: for testing clients of third-party APIs.
pub fn scripted(respond: Responder) -> (Running, Arc<std::sync::Mutex<Vec<Captured>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let running = serve_each(move |s| {
        let log = log.clone();
        let respond = respond.clone();
        async move {
            let Some((mut s, req)) = read_request(s).await else {
                return;
            };
            let (status, body) = respond(&req);
            log.lock().expect("log").push(req);
            let (location, body) = if (300..400).contains(&status) {
                (format!("location: {body}\r\n"), String::new())
            } else {
                (String::new(), body)
            };
            let out = format!(
                "HTTP/1.1 {status} X\r\n{location}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(out.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    (running, seen)
}

/// A self-signed certificate for `ip`, as a vigie peer would use:
/// `(cert PEM, key PEM, SHA-256 of the certificate in hex)`.
pub fn self_signed_for(ip: std::net::IpAddr) -> (String, String, String) {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.subject_alt_names.push(SanType::IpAddress(ip));
    let cert = p.self_signed(&key).expect("cert");
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
    let hex = digest.as_ref().iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    (cert.pem(), key.serialize_pem(), hex)
}
