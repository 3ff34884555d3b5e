//! A repository in an S3 bucket (AWS, Ceph RGW, Scaleway, MinIO, Garage),
//! laid out as restic lays it out under the bucket's prefix: `config`,
//! `keys/`, `snapshots/`, `index/`, `locks/`, `data/xx/`.
//!
//! Requests are path-style (`https://HOST/BUCKET/KEY`, which every
//! S3-compatible server takes) and signed with AWS Signature Version 4
//! (the payload's SHA-256 in `x-amz-content-sha256`); the credentials
//! come from vigie's secrets, never from the environment. An object
//! appears whole when its PUT completes, so a write needs no temporary
//! name. Calls are blocking, as rustic_core's backend traits are, over
//! one reqwest client with vigie's TLS roots; a failed GET, HEAD, PUT or
//! DELETE (a network error, a 5xx, a 429) is tried again up to
//! [`ATTEMPTS`] times.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use vigie_core::hex;

use super::{LockBackend, id_of, layout};
use ring::{digest, hmac};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// Tries of one request before its error is returned.
const ATTEMPTS: u32 = 3;
/// The most bytes of a listing page read.
const MAX_LISTING: usize = 16 << 20;
/// The most bytes of a small answer (an error, a lock, a bucket's).
const MAX_SMALL: usize = 1 << 20;
/// The most bytes of a whole file read (a key, a snapshot, an index).
const MAX_FILE: usize = 256 << 20;
/// The most pages of one listing.
const MAX_PAGES: usize = 100_000;

/// Where an `s3:` repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    /// `https://host[:port]` (or `http://` for a server on the LAN).
    pub endpoint: String,
    pub bucket: String,
    /// The repository's prefix in the bucket (`""`, or `restic/blog`).
    pub prefix: String,
}

impl S3Target {
    /// Parses what follows `s3:` as restic does: `HOST/BUCKET[/PREFIX]`
    /// (https) or `http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub fn parse(rest: &str) -> Option<S3Target> {
        let (scheme, rest) = match rest.split_once("://") {
            Some((s @ ("http" | "https"), r)) => (s, r),
            Some(_) => return None,
            None => ("https", rest),
        };
        let (host, path) = rest.split_once('/')?;
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
        // S3's bucket names: 3 to 63 of lowercase letters, digits, `.`
        // and `-` (older regions allowed `_` and capitals: accepted).
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        let prefix_ok = prefix
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            || prefix.is_empty();
        (host_ok && bucket_ok && prefix_ok).then(|| S3Target {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    fn host(&self) -> &str {
        self.endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, h)| h)
    }
}

/// The keys a request is signed with, and the bucket's region.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `us-east-1` when the provider does not care (MinIO, most others).
    pub region: String,
}

impl std::fmt::Debug for S3Credentials {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// A repository in an S3 bucket.
pub struct S3Backend {
    target: S3Target,
    credentials: S3Credentials,
    client: reqwest::blocking::Client,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("target", &self.target)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// A request before it is signed.
struct Req<'a> {
    method: reqwest::Method,
    /// The object's key under the prefix (`keys/ID`), or `None` for the
    /// bucket itself.
    key: Option<&'a str>,
    /// Query parameters, unencoded.
    query: Vec<(&'a str, String)>,
    range: Option<(u64, u64)>,
    body: Bytes,
    /// The most bytes of the answer's body read; a longer one is refused.
    max_body: usize,
}

impl<'a> Req<'a> {
    /// `method` on `key` (or the bucket), no query, no range, no body,
    /// an answer of at most [`MAX_SMALL`] bytes.
    fn to(method: reqwest::Method, key: Option<&'a str>) -> Req<'a> {
        Req {
            method,
            key,
            query: Vec::new(),
            range: None,
            body: Bytes::new(),
            max_body: MAX_SMALL,
        }
    }
}

/// Why a request got no answer to read.
enum Fail {
    Http(reqwest::Error),
    Io(std::io::Error),
    TooLong(usize),
}

impl From<reqwest::Error> for Fail {
    fn from(e: reqwest::Error) -> Fail {
        Fail::Http(e)
    }
}

/// What came back: the status, the headers we read, the body.
struct Resp {
    status: u16,
    len: Option<u64>,
    body: Bytes,
}

impl S3Backend {
    /// The bucket at `target`, reached with `credentials` (nothing sent
    /// yet).
    /// `ca`: a PEM file of CA certificates trusted beside the system's.
    pub fn new(
        target: S3Target,
        credentials: S3Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<S3Backend, String> {
        let client = super::http_client(ca)?;
        Ok(S3Backend {
            target,
            credentials,
            client,
        })
    }

    /// The key of a file: `PREFIX/data/xx/ID`, `PREFIX/config`, …
    fn key(&self, tpe: FileType, id: &Id) -> String {
        self.under_prefix(&layout(tpe, id))
    }

    fn under_prefix(&self, rel: &str) -> String {
        if self.target.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.target.prefix)
        }
    }

    fn error(&self, what: &str, message: impl std::fmt::Display) -> Box<RusticError> {
        RusticError::new(
            ErrorKind::Backend,
            format!(
                "s3 {}/{}: cannot {what}: {message}",
                self.target.endpoint, self.target.bucket
            ),
        )
    }

    /// Sends `req`, signed, trying again on network errors, 5xx and 429.
    fn send(&self, what: &str, req: &Req<'_>) -> RusticResult<Resp> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            match self.send_once(req) {
                Ok(resp) if resp.status >= 500 || resp.status == 429 => {
                    last = describe(&resp);
                }
                Ok(resp) => return Ok(resp),
                Err(Fail::TooLong(max)) => {
                    return Err(self.error(what, format!("an answer over {max} bytes: refused")));
                }
                Err(Fail::Http(e)) => last = vigie_net::chain(&e),
                Err(Fail::Io(e)) => last = e.to_string(),
            }
        }
        Err(self.error(what, last))
    }

    fn send_once(&self, req: &Req<'_>) -> Result<Resp, Fail> {
        let path = match req.key {
            Some(key) => format!("/{}/{}", self.target.bucket, uri_encode(key, false)),
            None => format!("/{}/", self.target.bucket),
        };
        let mut query: Vec<(String, String)> = req
            .query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let now = jiff::Timestamp::now();
        let signed = sign(
            &Signing {
                method: req.method.as_str(),
                host: self.target.host(),
                path: &path,
                query: &query,
                range: req.range,
                payload: &req.body,
                time: now,
            },
            &self.credentials,
        );
        let url = if query.is_empty() {
            format!("{}{path}", self.target.endpoint)
        } else {
            format!("{}{path}?{query}", self.target.endpoint)
        };
        let mut builder = self.client.request(req.method.clone(), url);
        for (name, value) in &signed {
            builder = builder.header(*name, value);
        }
        let resp = builder.body(req.body.clone()).send()?;
        let status = resp.status().as_u16();
        let len = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        // Never more than the request allows, whatever the server sends
        // or announces: an error body, a lock, a page, a pack's range.
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(resp, req.max_body as u64 + 1),
            &mut body,
        )
        .map_err(Fail::Io)?;
        if body.len() > req.max_body {
            return Err(Fail::TooLong(req.max_body));
        }
        Ok(Resp {
            status,
            len,
            body: Bytes::from(body),
        })
    }

    /// Every key under `prefix` with its size (ListObjectsV2, page by page).
    fn list(&self, prefix: &str) -> RusticResult<Vec<(String, u64)>> {
        let what = format!("list {prefix}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = vec![("list-type", "2".to_owned()), ("prefix", prefix.to_owned())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let resp = self.send(
                &what,
                &Req {
                    query,
                    max_body: MAX_LISTING,
                    ..Req::to(reqwest::Method::GET, None)
                },
            )?;
            if resp.status != 200 {
                return Err(self.error(&what, describe(&resp)));
            }
            let text = String::from_utf8_lossy(&resp.body);
            for contents in elements(&text, "Contents") {
                let key = element(contents, "Key").map(unescape);
                let size = element(contents, "Size").and_then(|s| s.trim().parse().ok());
                if let (Some(key), Some(size)) = (key, size) {
                    out.push((key, size));
                }
            }
            let truncated = element(&text, "IsTruncated") == Some("true");
            let next = element(&text, "NextContinuationToken").map(unescape);
            if !truncated || next.is_none() {
                return Ok(out);
            }
            pages += 1;
            if next == token || pages > MAX_PAGES {
                return Err(self.error(&what, "the listing does not end: refused"));
            }
            token = next;
        }
    }

    fn object(&self, what: &str, key: &str, range: Option<(u64, u64)>) -> RusticResult<Resp> {
        self.send(
            what,
            &Req {
                range,
                // A range's own length (a server that ignores the range
                // answers the whole object: up to the end of the range).
                max_body: range.map_or(MAX_FILE, |(_, last)| {
                    usize::try_from(last + 1).unwrap_or(usize::MAX)
                }),
                ..Req::to(reqwest::Method::GET, Some(key))
            },
        )
    }
}

fn describe(resp: &Resp) -> String {
    let text = String::from_utf8_lossy(&resp.body[..resp.body.len().min(4096)]);
    let code = element(&text, "Code");
    let message = element(&text, "Message");
    match (code, message) {
        (Some(c), Some(m)) => format!("HTTP {}: {c}: {}", resp.status, unescape(m)),
        (Some(c), None) => format!("HTTP {}: {c}", resp.status),
        // A HEAD's answer has no body to say why.
        _ => match resp.status {
            403 => "HTTP 403: access denied: check access_key_id, secret_access_key and region"
                .to_owned(),
            301 | 307 => format!(
                "HTTP {}: the bucket is elsewhere: check the endpoint and region",
                resp.status
            ),
            status => format!("HTTP {status}"),
        },
    }
}

/// The text inside the first `<tag>…</tag>` of `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    elements(xml, tag).next()
}

/// The texts inside each `<tag>…</tag>` of `xml`, in order. S3's
/// replies are flat and attribute-free where we read them.
fn elements<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let inner = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(inner)
    })
}

/// XML's five entities (keys are ids; messages may hold `&quot;`).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept,
/// `/` kept in paths (`slash = false`), everything else `%XX`.
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b'/' if !slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// What a request's signature covers.
struct Signing<'a> {
    method: &'a str,
    host: &'a str,
    /// Already encoded.
    path: &'a str,
    /// Already encoded and sorted.
    query: &'a str,
    range: Option<(u64, u64)>,
    payload: &'a [u8],
    time: jiff::Timestamp,
}

/// The headers that sign a request with AWS Signature Version 4 (host,
/// `x-amz-date`, `x-amz-content-sha256`, `range` when there is one, and
/// `authorization`).
fn sign(s: &Signing<'_>, c: &S3Credentials) -> Vec<(&'static str, String)> {
    let time = s.time.strftime("%Y%m%dT%H%M%SZ").to_string();
    let date = &time[..8];
    let payload_hash = hex(digest::digest(&digest::SHA256, s.payload).as_ref());
    let mut headers: Vec<(&'static str, String)> = vec![
        ("host", s.host.to_owned()),
        ("x-amz-content-sha256", payload_hash.clone()),
        ("x-amz-date", time.clone()),
    ];
    if let Some((first, last)) = s.range {
        headers.push(("range", format!("bytes={first}-{last}")));
    }
    headers.sort_by_key(|(name, _)| *name);
    let canonical_headers: String = headers.iter().fold(String::new(), |mut acc, (n, v)| {
        let _ = writeln!(acc, "{n}:{}", v.trim());
        acc
    });
    let signed_headers = headers
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        s.method, s.path, s.query
    );
    let scope = format!("{date}/{}/s3/aws4_request", c.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{time}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let k_date = hmac(format!("AWS4{}", c.secret_access_key).as_bytes(), date);
    let k_region = hmac(k_date.as_ref(), &c.region);
    let k_service = hmac(k_region.as_ref(), "s3");
    let k_signing = hmac(k_service.as_ref(), "aws4_request");
    let signature = hex(hmac(k_signing.as_ref(), &string_to_sign).as_ref());
    headers.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            c.access_key_id
        ),
    ));
    // reqwest sets Host itself, from the URL.
    headers.retain(|(n, _)| *n != "host");
    headers
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        let t = &self.target;
        if t.prefix.is_empty() {
            format!("s3:{}/{}", t.endpoint, t.bucket)
        } else {
            format!("s3:{}/{}/{}", t.endpoint, t.bucket, t.prefix)
        }
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let key = self.under_prefix("config");
            let resp = self.send("read config", &Req::to(reqwest::Method::HEAD, Some(&key)))?;
            return match resp.status {
                200 => Ok(resp
                    .len
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| vec![(Id::default(), n)])
                    .unwrap_or_default()),
                404 => Ok(Vec::new()),
                _ => Err(self.error("read config", describe(&resp))),
            };
        }
        let dir = self.under_prefix(&format!("{}/", tpe.dirname()));
        let mut files = Vec::new();
        for (key, size) in self.list(&dir)? {
            let Some(rest) = key.strip_prefix(&dir) else {
                continue;
            };
            // Packs sit one level down (`data/xx/ID`); other files at
            // the top of their directory.
            let name = match (tpe, rest.split_once('/')) {
                (FileType::Pack, Some((prefix, name))) if prefix.len() == 2 => name,
                (FileType::Pack, _) | (_, Some(_)) => continue,
                (_, None) => rest,
            };
            if let (Some(id), Ok(size)) = (id_of(name), u32::try_from(size)) {
                files.push((id, size));
            }
        }
        Ok(files)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        let what = format!("read {key}");
        let resp = self.object(&what, &key, None)?;
        if resp.status != 200 {
            return Err(self.error(&what, describe(&resp)));
        }
        Ok(resp.body)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        let what = format!("read {key}");
        if length == 0 {
            return Ok(Bytes::new());
        }
        let range = (u64::from(offset), u64::from(offset) + u64::from(length) - 1);
        let resp = self.object(&what, &key, Some(range))?;
        if resp.status != 206 && resp.status != 200 {
            return Err(self.error(&what, describe(&resp)));
        }
        let body = if resp.status == 200 {
            // A server that ignored the range sent the whole object.
            let end = offset as usize + length as usize;
            if resp.body.len() < end {
                return Err(self.error(&what, "the object is shorter than the index says"));
            }
            resp.body.slice(offset as usize..end)
        } else {
            resp.body
        };
        if body.len() != length as usize {
            return Err(self.error(
                &what,
                format!("{} bytes came where {length} were asked", body.len()),
            ));
        }
        Ok(body)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    /// Makes the bucket when it does not exist (objects need no
    /// directories).
    fn create(&self) -> RusticResult<()> {
        let bucket = |method| Req::to(method, None);
        let head = self.send("reach the bucket", &bucket(reqwest::Method::HEAD))?;
        match head.status {
            200 => Ok(()),
            404 => {
                let mut create = bucket(reqwest::Method::PUT);
                if self.credentials.region != "us-east-1" {
                    create.body = Bytes::from(format!(
                        "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                        self.credentials.region
                    ));
                }
                let resp = self.send("create the bucket", &create)?;
                if resp.status == 200 {
                    Ok(())
                } else {
                    Err(self.error("create the bucket", describe(&resp)))
                }
            }
            _ => Err(self.error("reach the bucket", describe(&head))),
        }
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let parts = content.slice();
        let body = if parts.len() == 1 {
            parts[0].clone()
        } else {
            let mut all = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in parts {
                all.extend_from_slice(p);
            }
            Bytes::from(all)
        };
        self.put(&self.key(tpe, id), body)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.delete(&self.key(tpe, id))
    }
}

impl S3Backend {
    fn put(&self, key: &str, body: Bytes) -> RusticResult<()> {
        let what = format!("write {key}");
        let resp = self.send(
            &what,
            &Req {
                body,
                ..Req::to(reqwest::Method::PUT, Some(key))
            },
        )?;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(self.error(&what, describe(&resp)))
        }
    }

    fn delete(&self, key: &str) -> RusticResult<()> {
        let what = format!("remove {key}");
        let resp = self.send(&what, &Req::to(reqwest::Method::DELETE, Some(key)))?;
        match resp.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.error(&what, describe(&resp))),
        }
    }

    fn lock_key(&self, id: &Id) -> String {
        self.under_prefix(&format!("locks/{}", id.to_hex().as_str()))
    }
}

impl LockBackend for S3Backend {
    fn list_locks(&self) -> RusticResult<Vec<Id>> {
        let dir = self.under_prefix("locks/");
        Ok(self
            .list(&dir)?
            .into_iter()
            .filter_map(|(key, _)| id_of(key.strip_prefix(&dir)?))
            .collect())
    }

    fn read_lock(&self, id: &Id) -> RusticResult<Bytes> {
        let key = self.lock_key(id);
        let what = format!("read {key}");
        let resp = self.object(&what, &key, None)?;
        if resp.status != 200 {
            return Err(self.error(&what, describe(&resp)));
        }
        Ok(resp.body)
    }

    fn write_lock(&self, id: &Id, content: Bytes) -> RusticResult<()> {
        self.put(&self.lock_key(id), content)
    }

    fn remove_lock(&self, id: &Id) -> RusticResult<()> {
        self.delete(&self.lock_key(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_restic_s_forms() {
        let t = |e: &str, b: &str, p: &str| {
            Some(S3Target {
                endpoint: e.to_owned(),
                bucket: b.to_owned(),
                prefix: p.to_owned(),
            })
        };
        assert_eq!(
            S3Target::parse("s3.amazonaws.com/backups"),
            t("https://s3.amazonaws.com", "backups", "")
        );
        assert_eq!(
            S3Target::parse("https://s3.fr-par.scw.cloud/vigie/blog/"),
            t("https://s3.fr-par.scw.cloud", "vigie", "blog")
        );
        assert_eq!(
            S3Target::parse("http://127.0.0.1:9000/bkt/a/b"),
            t("http://127.0.0.1:9000", "bkt", "a/b")
        );
        for bad in [
            "",
            "host",
            "host/",
            "host/ab",
            "ftp://host/bucket",
            "host/bucket/../x",
            "host/bucket/a//b",
            "ho st/bucket",
            "host@evil/bucket",
        ] {
            assert_eq!(S3Target::parse(bad), None, "{bad}");
        }
    }

    /// The example of AWS's documentation ("Signature Calculations for
    /// the Authorization Header: Transferring Payload in a Single Chunk",
    /// Amazon S3 API Reference): GET Object with a range, its signature
    /// as published.
    #[test]
    fn signs_as_aws_s_documented_example() {
        let creds = S3Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            region: "us-east-1".to_owned(),
        };
        let time: jiff::Timestamp = "2013-05-24T00:00:00Z".parse().unwrap();
        let headers = sign(
            &Signing {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: "",
                range: Some((0, 9)),
                payload: b"",
                time,
            },
            &creds,
        );
        let auth = &headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The same page's "GET Bucket (List Objects)" example: a query.
    #[test]
    fn signs_a_listing_as_aws_s_documented_example() {
        let creds = S3Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            region: "us-east-1".to_owned(),
        };
        let headers = sign(
            &Signing {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query: "max-keys=2&prefix=J",
                range: None,
                payload: b"",
                time: "2013-05-24T00:00:00Z".parse().unwrap(),
            },
            &creds,
        );
        let auth = &headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.ends_with(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
                 Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    /// The same page's PUT Object example: a payload, and a header
    /// (`x-amz-storage-class`) we never send, so only its hash is
    /// checked here.
    #[test]
    fn hashes_payloads_and_encodes_as_sigv4_wants() {
        assert_eq!(
            hex(digest::digest(&digest::SHA256, b"").as_ref()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(uri_encode("data/ab/x y~", false), "data/ab/x%20y~");
        assert_eq!(uri_encode("a/b=c", true), "a%2Fb%3Dc");
    }

    #[test]
    fn listings_and_errors_are_read_from_s3_s_xml() {
        let page = "<ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>keys/ab</Key><Size>12</Size></Contents>\
            <Contents><Key>a&amp;b</Key><Size>3</Size></Contents>\
            <NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>";
        let keys: Vec<_> = elements(page, "Contents")
            .map(|c| unescape(element(c, "Key").unwrap()))
            .collect();
        assert_eq!(keys, ["keys/ab", "a&b"]);
        assert_eq!(element(page, "IsTruncated"), Some("true"));
        let resp = Resp {
            status: 403,
            len: None,
            body: Bytes::from_static(
                b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>",
            ),
        };
        assert_eq!(
            describe(&resp),
            "HTTP 403: SignatureDoesNotMatch: The request signature we calculated does not match"
        );
    }
}
