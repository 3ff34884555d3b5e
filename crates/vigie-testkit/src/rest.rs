//! A strict server of restic's REST protocol on a loopback port, as
//! restic's references document it (the real rest-server is not in
//! Debian): what a client does wrong is refused, never guessed at.
//!
//! - One repository, at the path the test chooses (`/` or
//!   `/my_backup_repo/`); anything outside it is 404, and so is any
//!   request before `POST PATH?create=true` made it.
//! - `config` answers `HEAD`, `GET`, `POST`, `DELETE`; `TYPE/` (`data`,
//!   `keys`, `locks`, `snapshots`, `index`) answers `GET` (a listing);
//!   `TYPE/NAME` answers `HEAD`, `GET` (a `Range: bytes=a-b`, `a-` or
//!   `-n` gives a 206), `POST`, `DELETE`. Another method is 405 with
//!   `Allow`; a name that is not 64 lowercase hex digits is 400.
//! - Listings are version 2 (`[{"name":…,"size":…}]`, content type
//!   `application/vnd.x.restic.rest.v2`) only to a request whose
//!   `Accept` asks for exactly that, else version 1 (`["name",…]`).
//!   With `v2: false` the server is an old one that speaks version 1
//!   only.
//! - A `POST` never overwrites (403, as rest-server), and a file's
//!   SHA-256 must be its name (400, as rest-server checks uploads).
//!   Files are written to a temporary name, synced, and linked to
//!   their name (which fails if it exists), so a listing never sees
//!   half a file; on disk the repository is restic's local layout
//!   (`data/xx/ID`), which restic can also open as a directory.
//! - `DELETE` of a missing file is 404 (the documented "an HTTP error");
//!   with `append_only`, only locks may be deleted (403 otherwise).
//! - With `auth`, every request needs that user and password in a basic
//!   `Authorization` header (401 and `WWW-Authenticate` otherwise).
//!
//! Every request is logged (method, path, `Accept`, status) for tests
//! to look at. Blocking I/O, a thread per connection, HTTP/1.1 with
//! keep-alive, `Content-Length` or chunked request bodies.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The media type of version 2 of the protocol.
pub const V2: &str = "application/vnd.x.restic.rest.v2";
/// The media type of version 1.
pub const V1: &str = "application/vnd.x.restic.rest.v1";
/// The directories of a repository, besides `config`.
const TYPES: [&str; 5] = ["data", "keys", "locks", "snapshots", "index"];
/// The most bytes of a request's head.
const MAX_HEAD: usize = 64 * 1024;
/// The most bytes of a request's body.
const MAX_BODY: u64 = 1 << 30;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// The repository's path in URLs: `/` or `/NAME/…/` (ends in `/`).
    pub path: String,
    /// A user and password every request must carry.
    pub auth: Option<(String, String)>,
    /// Speak version 2 to clients that ask for it.
    pub v2: bool,
    /// Refuse deleting anything but locks.
    pub append_only: bool,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions {
            path: "/".to_owned(),
            auth: None,
            v2: true,
            append_only: false,
        }
    }
}

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The request's target, query included.
    pub target: String,
    pub accept: Option<String>,
    pub status: u16,
}

/// The server, running until dropped.
pub struct RestServer {
    pub addr: SocketAddr,
    options: RestOptions,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    options: RestOptions,
    /// The repository's directory (restic's local layout once created).
    root: PathBuf,
    log: Mutex<Vec<Logged>>,
    stop: AtomicBool,
    temp: AtomicU64,
}

impl RestServer {
    /// Starts a server on 127.0.0.1, its repository in a new temporary
    /// directory (nothing created in it yet).
    pub fn start(options: RestOptions) -> RestServer {
        assert!(
            options.path.starts_with('/') && options.path.ends_with('/'),
            "a repository path begins and ends with /"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            options: options.clone(),
            root: dir.path().join("repo"),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            temp: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || serve(&shared, stream));
            }
        });
        RestServer {
            addr,
            options,
            shared,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT/PATH/`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.options.path)
    }

    /// The same with a user and password in it (as given: encode them).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!(
            "http://{user}:{password}@{}{}",
            self.addr, self.options.path
        )
    }

    /// The repository's directory on disk.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("log").clone()
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request.
struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// One answer.
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn text(status: u16, message: &str) -> Response {
        let mut r = Response::new(status, format!("{message}\n"));
        r.headers
            .push(("Content-Type", "text/plain; charset=utf-8".to_owned()));
        r
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Serves one connection, request after request, until it closes, says
/// `Connection: close`, goes quiet for a minute, or the server stops.
fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut idle = 0;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // Wait for a request's first byte, a second at a time.
        match reader.fill_buf() {
            Ok([]) => return,
            Ok(_) => idle = 0,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                idle += 1;
                if idle > 60 {
                    return;
                }
                continue;
            }
            Err(_) => return,
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)));
        let request = match read_request(&mut reader, &mut out) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(message) => {
                let _ = write_response(&mut out, "GET", &Response::text(400, &message), true);
                return;
            }
        };
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(1)));
        let response = answer(shared, &request);
        shared.log.lock().expect("log").push(Logged {
            method: request.method.clone(),
            target: request.target.clone(),
            accept: request.headers.get("accept").cloned(),
            status: response.status,
        });
        let close = request
            .headers
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if write_response(&mut out, &request.method, &response, close).is_err() || close {
            return;
        }
    }
}

/// Reads a request: its head, then its body (`Content-Length` or
/// chunked); `None` when the connection closed before one began.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
) -> Result<Option<Request>, String> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_HEAD as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the request: {e}"))?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err("the request ends in its head".to_owned())
            };
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return Err("request head too long".to_owned());
        }
    }
    let head = String::from_utf8(head).map_err(|_| "the request's head is not UTF-8")?;
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not an HTTP request line: {first:?}"));
    };
    if version != "HTTP/1.1" {
        return Err(format!("{version} is not HTTP/1.1"));
    }
    let mut headers = HashMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("not a header: {line:?}"));
        };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    if headers
        .get("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| e.to_string())?;
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(reader)?
    } else if let Some(len) = headers.get("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| format!("Content-Length {len:?} is not a number"))?;
        if len > MAX_BODY {
            return Err(format!("a body of {len} bytes: too long"));
        }
        let mut body = Vec::new();
        reader
            .by_ref()
            .take(len)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        if body.len() as u64 != len {
            return Err("the body is shorter than its Content-Length".to_owned());
        }
        body
    } else {
        Vec::new()
    };
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
    }))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader
            .by_ref()
            .take(1024)
            .read_line(&mut size)
            .map_err(|e| e.to_string())?;
        let size = size.trim().split(';').next().unwrap_or_default();
        let size =
            u64::from_str_radix(size, 16).map_err(|_| format!("not a chunk size: {size:?}"))?;
        if body.len() as u64 + size > MAX_BODY {
            return Err("a chunked body too long".to_owned());
        }
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut line = String::new();
                reader
                    .by_ref()
                    .take(MAX_HEAD as u64)
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                if line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        reader
            .by_ref()
            .take(size)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        if (body.len() - start) as u64 != size {
            return Err("a chunk ends early".to_owned());
        }
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|e| e.to_string())?;
        if &crlf != b"\r\n" {
            return Err("a chunk does not end in CRLF".to_owned());
        }
    }
}

fn write_response(
    out: &mut TcpStream,
    method: &str,
    r: &Response,
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    let has_len = r.headers.iter().any(|(n, _)| *n == "Content-Length");
    if !has_len {
        let _ = write!(head, "Content-Length: {}\r\n", r.body.len());
    }
    for (name, value) in &r.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&r.body)?;
    }
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Internal Server Error",
    }
}

/// What the server answers `r`.
fn answer(shared: &Shared, r: &Request) -> Response {
    let o = &shared.options;
    if let Some((user, password)) = &o.auth {
        let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        if r.headers.get("authorization") != Some(&expected) {
            return Response::text(401, "Unauthorized")
                .header("WWW-Authenticate", "Basic realm=\"restic\"");
        }
    }
    let (path, query) = match r.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (r.target.as_str(), None),
    };
    if path.contains('%') || path.contains("//") || path.split('/').any(|s| s == "..") {
        return Response::text(400, "an escaped, empty or `..` path segment");
    }
    let Some(rel) = path.strip_prefix(o.path.as_str()) else {
        return Response::text(404, &format!("no repository here: it is at {}", o.path));
    };
    if rel.is_empty() {
        return match (r.method.as_str(), query) {
            ("POST", Some("create=true")) => match create(&shared.root) {
                Ok(()) => Response::new(200, ""),
                Err(e) => Response::text(500, &e.to_string()),
            },
            ("POST", _) => Response::text(400, "create a repository with ?create=true"),
            _ => Response::text(405, "Method Not Allowed").header("Allow", "POST"),
        };
    }
    if query.is_some() {
        return Response::text(400, "no query is part of the protocol here");
    }
    if !TYPES.iter().all(|t| shared.root.join(t).is_dir()) {
        return Response::text(
            404,
            &format!("no repository: POST {}?create=true makes it", o.path),
        );
    }
    if rel == "config" {
        return file(shared, r, "config", &shared.root.join("config"), None);
    }
    let (tpe, name) = rel.split_once('/').unwrap_or((rel, ""));
    if !TYPES.contains(&tpe) || name.contains('/') {
        return Response::text(404, &format!("{rel}: not a file type of restic's"));
    }
    if name.is_empty() {
        return if r.method == "GET" {
            list(shared, r, tpe)
        } else {
            Response::text(405, "Method Not Allowed").header("Allow", "GET")
        };
    }
    if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Response::text(400, &format!("{name:?} is not 64 lowercase hex digits"));
    }
    let on_disk = if tpe == "data" {
        shared.root.join("data").join(&name[..2]).join(name)
    } else {
        shared.root.join(tpe).join(name)
    };
    file(shared, r, tpe, &on_disk, Some(name))
}

/// The repository's directories, as restic's local backend makes them.
fn create(root: &Path) -> std::io::Result<()> {
    for t in TYPES {
        std::fs::create_dir_all(root.join(t))?;
    }
    for i in 0..=255u8 {
        std::fs::create_dir_all(root.join("data").join(format!("{i:02x}")))?;
    }
    Ok(())
}

/// `HEAD`, `GET`, `POST`, `DELETE` of one file (`name` is the id it must
/// hash to; `None` for `config`).
fn file(shared: &Shared, r: &Request, tpe: &str, on_disk: &Path, name: Option<&str>) -> Response {
    match r.method.as_str() {
        "HEAD" => match std::fs::metadata(on_disk) {
            Ok(m) => Response::new(200, "").header("Content-Length", m.len().to_string()),
            Err(_) => Response::new(404, ""),
        },
        "GET" => match std::fs::read(on_disk) {
            Ok(content) => get(r, content),
            Err(_) => Response::text(404, "Not Found"),
        },
        "POST" => {
            if on_disk.exists() {
                return Response::text(403, "the file exists: files are never overwritten");
            }
            if name.is_some_and(|name| sha256_hex(&r.body) != name) {
                return Response::text(400, "the content's SHA-256 is not the file's name");
            }
            match write_atomically(shared, on_disk, &r.body) {
                Ok(true) => Response::new(200, ""),
                Ok(false) => Response::text(403, "the file exists: files are never overwritten"),
                Err(e) => Response::text(500, &e.to_string()),
            }
        }
        "DELETE" => {
            if shared.options.append_only && tpe != "locks" {
                return Response::text(403, "append-only: only locks are removed");
            }
            match std::fs::remove_file(on_disk) {
                Ok(()) => Response::new(200, ""),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Response::text(404, "Not Found")
                }
                Err(e) => Response::text(500, &e.to_string()),
            }
        }
        _ => Response::text(405, "Method Not Allowed").header("Allow", "HEAD, GET, POST, DELETE"),
    }
}

/// A file's content, or the part its `Range` asks for.
fn get(r: &Request, content: Vec<u8>) -> Response {
    let octets = |resp: Response| resp.header("Content-Type", "application/octet-stream");
    let Some(range) = r.headers.get("range") else {
        return octets(Response::new(200, content));
    };
    let size = content.len() as u64;
    let Some(spec) = range.strip_prefix("bytes=") else {
        return Response::text(400, &format!("range {range:?}: only bytes= is served"));
    };
    let parsed = match spec.split_once('-') {
        _ if spec.contains(',') => None,
        Some(("", n)) => n
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size)),
        Some((a, "")) => a.parse::<u64>().ok().map(|a| (a, size)),
        Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, (b + 1).min(size))),
            _ => None,
        },
        None => None,
    };
    let Some((start, end)) = parsed else {
        return Response::text(400, &format!("range {range:?}: one range a-b, a- or -n"));
    };
    if start >= size || start >= end {
        return Response::text(416, "the range starts past the end")
            .header("Content-Range", format!("bytes */{size}"));
    }
    let part = content[start as usize..end as usize].to_vec();
    octets(Response::new(206, part))
        .header("Content-Range", format!("bytes {start}-{}/{size}", end - 1))
}

/// Writes `content` under a temporary name, syncs it, then links it to
/// `path` (which fails when `path` exists: `Ok(false)`).
fn write_atomically(shared: &Shared, path: &Path, content: &[u8]) -> std::io::Result<bool> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir)?;
    let n = shared.temp.fetch_add(1, Ordering::SeqCst);
    let temp = dir.join(format!(".upload-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(content)?;
        f.sync_all()?;
        match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&temp);
    if result.as_ref().is_ok_and(|linked| *linked) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    result
}

/// `GET TYPE/`: version 2 to a client asking for exactly it (when the
/// server speaks it), else version 1. Only ids are listed.
fn list(shared: &Shared, r: &Request, tpe: &str) -> Response {
    let dir = shared.root.join(tpe);
    let mut files: Vec<(String, u64)> = Vec::new();
    let mut dirs = vec![dir.clone()];
    if tpe == "data" {
        dirs = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
            Err(e) => return Response::text(500, &e.to_string()),
        };
    }
    for d in dirs {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => return Response::text(500, &e.to_string()),
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_id =
                name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if let (true, Ok(m)) = (is_id, e.metadata()) {
                files.push((name, m.len()));
            }
        }
    }
    files.sort();
    let v2 = shared.options.v2 && r.headers.get("accept").is_some_and(|a| a == V2);
    let (body, kind) = if v2 {
        let entries: Vec<serde_json::Value> = files
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "size": s}))
            .collect();
        (serde_json::to_vec(&entries), V2)
    } else {
        let names: Vec<&String> = files.iter().map(|(n, _)| n).collect();
        (serde_json::to_vec(&names), V1)
    };
    Response::new(200, body.expect("JSON")).header("Content-Type", kind)
}

/// The SHA-256 of `content` in lowercase hex: a repository file's name.
pub fn sha256_hex(content: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Standard base64 with padding (RFC 4648), for the basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648_s() {
        // RFC 4648, section 10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }
}
