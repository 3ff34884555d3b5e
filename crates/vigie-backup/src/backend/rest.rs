//! A repository behind restic's REST protocol (rest-server, rustic_server,
//! a NAS's restic service), as restic's references document it:
//! `POST /?create=true` makes the repository, `HEAD|GET|POST /config`,
//! `GET /{type}/` lists (version 2, names with sizes, asked for with
//! `Accept: application/vnd.x.restic.rest.v2`; a version 1 answer, names
//! alone, is taken too, sizes then read with `HEAD`), and
//! `HEAD|GET|POST|DELETE /{type}/{name}`, a `Range: bytes=a-b` reading
//! part of a pack. Packs are `data/ID` in the URL: the server shards them.
//!
//! The URL is restic's (`rest:https://user:pass@host:8000/repo/`); the
//! user and password it holds, or the ones the config gives, go in a
//! basic `Authorization` header and nowhere else: not in
//! [`ReadBackend::location`], in messages or in `Debug`. Calls are
//! blocking, as rustic_core's backend traits are, over one reqwest
//! client with vigie's TLS roots; a failed request (a network error, a
//! 5xx, a 429) is tried again up to [`ATTEMPTS`] times, as for `s3:`.

use std::time::Duration;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::{LockBackend, id_of};

/// Tries of one request before its error is returned.
const ATTEMPTS: u32 = 3;
/// The most bytes of a listing: rest-server answers one page, about 90
/// bytes a file in version 2 (some 3 million packs).
const MAX_LISTING: usize = 256 << 20;
/// The most bytes of a small answer (an error, a lock).
const MAX_SMALL: usize = 1 << 20;
/// The most bytes of a whole file read (a key, a snapshot, an index).
const MAX_FILE: usize = 256 << 20;
/// The most bytes of a server's message quoted in an error.
const MAX_QUOTED: usize = 512;
/// The media type of version 2 of the protocol (listings with sizes).
const V2: &str = "application/vnd.x.restic.rest.v2";

/// Where a `rest:` repository lives.
#[derive(Clone, PartialEq, Eq)]
pub struct RestTarget {
    /// `http(s)://host[:port]/path/`, without credentials, ending in `/`.
    pub url: String,
    /// The user and password the URL gave, if any.
    pub credentials: Option<RestCredentials>,
}

impl std::fmt::Debug for RestTarget {
    // The URL is kept without its credentials; the password never shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestTarget")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl RestTarget {
    /// Parses what follows `rest:` as restic does:
    /// `http(s)://[USER[:PASSWORD]@]HOST[:PORT][/PATH/]`, the user and
    /// password percent-encoded. No query, no fragment.
    pub fn parse(rest: &str) -> Option<RestTarget> {
        // The URL parser resolves `.` and `..`: refused before it does.
        let raw_path = rest
            .split_once("://")
            .and_then(|(_, after)| after.find('/').map(|i| &after[i..]))
            .unwrap_or("");
        if raw_path.split('/').any(|s| s == "." || s == "..") {
            return None;
        }
        let url = reqwest::Url::parse(rest).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none_or(str::is_empty)
            || url.query().is_some()
            || url.fragment().is_some()
            || url.cannot_be_a_base()
        {
            return None;
        }
        // No `..`, no empty segment (`a//b`) in the repository's path.
        let path = url.path();
        let inner = path.trim_matches('/');
        if !inner.is_empty()
            && inner
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('%'))
        {
            return None;
        }
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(RestCredentials {
                user: percent_decode(url.username())?,
                password: percent_decode(url.password().unwrap_or(""))?,
            })
        };
        let mut clean = url.clone();
        clean.set_username("").ok()?;
        clean.set_password(None).ok()?;
        let mut text = clean.to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        Some(RestTarget {
            url: text,
            credentials,
        })
    }
}

/// `%XX` sequences decoded (a URL's user and password); `None` when
/// they do not decode to UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A repository string with the password of a `rest:` URL replaced by
/// `***`, fit for messages; any other string as it is.
pub fn scrub(repository: &str) -> String {
    let Some(rest) = repository.strip_prefix("rest:") else {
        return repository.to_owned();
    };
    let Some((scheme, after)) = rest.split_once("://") else {
        return repository.to_owned();
    };
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, path) = after.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("rest:{scheme}://{user}:***@{host}{path}")
            } else {
                repository.to_owned()
            }
        }
        None => repository.to_owned(),
    }
}

/// The user and password of a REST server's basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct RestCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for RestCredentials {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A repository on a REST server.
pub struct RestBackend {
    target: RestTarget,
    credentials: Option<RestCredentials>,
    client: reqwest::blocking::Client,
}

impl std::fmt::Debug for RestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestBackend")
            .field("url", &self.target.url)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// A request, its path relative to the repository's URL.
struct Req<'a> {
    method: reqwest::Method,
    /// `config`, `keys/ID`, `data/`, or `""` for the repository itself.
    path: &'a str,
    query: Option<&'static str>,
    /// Ask for version 2 (listings).
    v2: bool,
    range: Option<(u64, u64)>,
    body: Bytes,
    /// The most bytes of the answer's body read; a longer one is refused
    /// (but for a range a server answered whole: its start is kept).
    max_body: usize,
}

impl<'a> Req<'a> {
    fn to(method: reqwest::Method, path: &'a str) -> Req<'a> {
        Req {
            method,
            path,
            query: None,
            v2: false,
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
    v2: bool,
    body: Bytes,
}

/// A version 2 listing's entry.
#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    size: u64,
}

impl RestBackend {
    /// The repository at `target`, reached with `credentials` (the
    /// config's) or else the URL's; nothing sent yet.
    pub fn new(
        target: RestTarget,
        credentials: Option<RestCredentials>,
        ca: Option<&std::path::Path>,
    ) -> Result<RestBackend, String> {
        let client = super::http_client(ca)?;
        let credentials = credentials.or_else(|| target.credentials.clone());
        Ok(RestBackend {
            target,
            credentials,
            client,
        })
    }

    /// A file's path under the repository: `config`, `data/ID` (flat:
    /// the server shards packs itself), `TYPE/ID`.
    fn path(tpe: FileType, id: &Id) -> String {
        match tpe {
            FileType::Config => "config".to_owned(),
            _ => format!("{}/{}", tpe.dirname(), id.to_hex().as_str()),
        }
    }

    fn error(&self, what: &str, message: impl std::fmt::Display) -> Box<RusticError> {
        RusticError::new(
            ErrorKind::Backend,
            format!("rest {}: cannot {what}: {message}", self.target.url),
        )
    }

    /// Sends `req`, trying again on network errors, 5xx and 429.
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
        let mut url = format!("{}{}", self.target.url, req.path);
        if let Some(q) = req.query {
            url.push('?');
            url.push_str(q);
        }
        let mut builder = self.client.request(req.method.clone(), url);
        if let Some(c) = &self.credentials {
            builder = builder.basic_auth(&c.user, Some(&c.password));
        }
        if req.v2 {
            builder = builder.header(reqwest::header::ACCEPT, V2);
        }
        if let Some((first, last)) = req.range {
            builder = builder.header(reqwest::header::RANGE, format!("bytes={first}-{last}"));
        }
        if req.method == reqwest::Method::POST {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(req.body.clone());
        }
        let resp = builder.send()?;
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let len = header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let v2 = header(reqwest::header::CONTENT_TYPE)
            .is_some_and(|t| t.split(';').next().is_some_and(|t| t.trim() == V2));
        // Never more than the request allows, whatever the server sends
        // or announces.
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(resp, req.max_body as u64 + 1),
            &mut body,
        )
        .map_err(Fail::Io)?;
        if body.len() > req.max_body {
            // A range answered whole: only its start is needed.
            if req.range.is_some() && status == 200 {
                body.truncate(req.max_body);
            } else {
                return Err(Fail::TooLong(req.max_body));
            }
        }
        Ok(Resp {
            status,
            len,
            v2,
            body: Bytes::from(body),
        })
    }

    /// A file's whole content; a missing one is an error naming it.
    fn get(&self, path: &str) -> RusticResult<Bytes> {
        let what = format!("read {path}");
        let resp = self.send(
            &what,
            &Req {
                max_body: MAX_FILE,
                ..Req::to(reqwest::Method::GET, path)
            },
        )?;
        match resp.status {
            200 => Ok(resp.body),
            404 => Err(self.error(&what, format!("{path} is not on the server (HTTP 404)"))),
            _ => Err(self.error(&what, describe(&resp))),
        }
    }

    /// A file's size, `None` when it is not there.
    fn head(&self, path: &str) -> RusticResult<Option<u64>> {
        let what = format!("look at {path}");
        let resp = self.send(&what, &Req::to(reqwest::Method::HEAD, path))?;
        match resp.status {
            200 => resp
                .len
                .map(Some)
                .ok_or_else(|| self.error(&what, "the server gave no Content-Length")),
            404 => Ok(None),
            _ => Err(self.error(&what, describe(&resp))),
        }
    }

    /// Stores a file. Files are named by the hash of their bytes, so a
    /// server that refuses the write because the file is there already
    /// (rest-server's 403, as when a first try was stored but its answer
    /// lost) holds the same bytes when the size agrees.
    fn post(&self, path: &str, body: Bytes) -> RusticResult<()> {
        let what = format!("write {path}");
        let len = body.len() as u64;
        let resp = self.send(
            &what,
            &Req {
                body,
                ..Req::to(reqwest::Method::POST, path)
            },
        )?;
        match resp.status {
            200..=299 => Ok(()),
            403 if path != "config" && self.head(path)? == Some(len) => Ok(()),
            _ => Err(self.error(&what, describe(&resp))),
        }
    }

    /// Removes a file; one already gone (404) is removed.
    fn delete(&self, path: &str) -> RusticResult<()> {
        let what = format!("remove {path}");
        let resp = self.send(&what, &Req::to(reqwest::Method::DELETE, path))?;
        match resp.status {
            200..=299 | 404 => Ok(()),
            _ => Err(self.error(&what, describe(&resp))),
        }
    }

    /// The files of directory `dir` (`keys`, `data`, …) with their sizes:
    /// version 2 when the server speaks it, else version 1 and a `HEAD`
    /// per file. Names that are no id are left out.
    fn list(&self, dir: &str) -> RusticResult<Vec<(Id, u64)>> {
        let what = format!("list {dir}/");
        let path = format!("{dir}/");
        let resp = self.send(
            &what,
            &Req {
                v2: true,
                max_body: MAX_LISTING,
                ..Req::to(reqwest::Method::GET, &path)
            },
        )?;
        if resp.status != 200 {
            return Err(self.error(&what, describe(&resp)));
        }
        let bad = |e: serde_json::Error| {
            self.error(&what, format!("the server's listing is not restic's: {e}"))
        };
        if resp.v2 {
            let entries: Vec<Entry> = serde_json::from_slice(&resp.body).map_err(bad)?;
            return Ok(entries
                .into_iter()
                .filter_map(|e| Some((id_of(&e.name)?, e.size)))
                .collect());
        }
        let names: Vec<String> = serde_json::from_slice(&resp.body).map_err(bad)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(id) = id_of(&name) else { continue };
            // Gone between the listing and its HEAD: not listed.
            if let Some(size) = self.head(&format!("{dir}/{name}"))? {
                out.push((id, size));
            }
        }
        Ok(out)
    }
}

/// An answer that is not what was asked for, as a message: its status
/// and what the server said (bounded, on one line), or what to check.
fn describe(resp: &Resp) -> String {
    let text = String::from_utf8_lossy(&resp.body[..resp.body.len().min(MAX_QUOTED)]);
    let said: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let hint = match resp.status {
        401 => Some(
            "the server refused the user and password: check the repository's user and password",
        ),
        403 => {
            Some("the server forbids it (an append-only server, or a file that is there already)")
        }
        404 => Some("nothing at this path: check the repository's URL, or create the repository"),
        _ => None,
    };
    match (said.is_empty(), hint) {
        (true, Some(h)) => format!("HTTP {}: {h}", resp.status),
        (true, None) => format!("HTTP {}", resp.status),
        (false, Some(h)) => format!("HTTP {}: {said}: {h}", resp.status),
        (false, None) => format!("HTTP {}: {said}", resp.status),
    }
}

impl ReadBackend for RestBackend {
    fn location(&self) -> String {
        format!("rest:{}", self.target.url)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return Ok(self
                .head("config")?
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| vec![(Id::default(), n)])
                .unwrap_or_default());
        }
        self.list(tpe.dirname())?
            .into_iter()
            .map(|(id, size)| {
                u32::try_from(size).map(|s| (id, s)).map_err(|_| {
                    self.error(
                        &format!("list {}/", tpe.dirname()),
                        format!(
                            "{} is {size} bytes: more than a repository file",
                            id.to_hex().as_str()
                        ),
                    )
                })
            })
            .collect()
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.get(&Self::path(tpe, id))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let what = format!("read {path}");
        if length == 0 {
            return Ok(Bytes::new());
        }
        let (first, last) = (u64::from(offset), u64::from(offset) + u64::from(length) - 1);
        let resp = self.send(
            &what,
            &Req {
                range: Some((first, last)),
                max_body: usize::try_from(last + 1).unwrap_or(usize::MAX),
                ..Req::to(reqwest::Method::GET, &path)
            },
        )?;
        let body = match resp.status {
            206 => resp.body,
            // A server that ignored the range sent the file from its start.
            200 => {
                let end = offset as usize + length as usize;
                if resp.body.len() < end {
                    return Err(self.error(&what, "the file is shorter than the index says"));
                }
                resp.body.slice(offset as usize..end)
            }
            404 => {
                return Err(self.error(&what, format!("{path} is not on the server (HTTP 404)")));
            }
            _ => return Err(self.error(&what, describe(&resp))),
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
        Self::path(tpe, id)
    }
}

impl WriteBackend for RestBackend {
    /// `POST /?create=true`: the server makes the repository's
    /// directories (and answers 200 when they are there already).
    fn create(&self) -> RusticResult<()> {
        let what = "create the repository";
        let resp = self.send(
            what,
            &Req {
                query: Some("create=true"),
                ..Req::to(reqwest::Method::POST, "")
            },
        )?;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(self.error(what, describe(&resp)))
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
        self.post(&Self::path(tpe, id), body)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.delete(&Self::path(tpe, id))
    }
}

impl LockBackend for RestBackend {
    fn list_locks(&self) -> RusticResult<Vec<Id>> {
        Ok(self.list("locks")?.into_iter().map(|(id, _)| id).collect())
    }

    fn read_lock(&self, id: &Id) -> RusticResult<Bytes> {
        self.get(&format!("locks/{}", id.to_hex().as_str()))
    }

    fn write_lock(&self, id: &Id, content: Bytes) -> RusticResult<()> {
        self.post(&format!("locks/{}", id.to_hex().as_str()), content)
    }

    fn remove_lock(&self, id: &Id) -> RusticResult<()> {
        self.delete(&format!("locks/{}", id.to_hex().as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> RestCredentials {
        RestCredentials {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    #[test]
    fn parses_restic_s_forms() {
        let t = |url: &str, credentials| {
            Some(RestTarget {
                url: url.to_owned(),
                credentials,
            })
        };
        assert_eq!(
            RestTarget::parse("http://host:8000/"),
            t("http://host:8000/", None)
        );
        assert_eq!(
            RestTarget::parse("http://host:8000"),
            t("http://host:8000/", None)
        );
        assert_eq!(
            RestTarget::parse("https://user:pass@host:8000/my_backup_repo/"),
            t(
                "https://host:8000/my_backup_repo/",
                Some(creds("user", "pass"))
            )
        );
        assert_eq!(
            RestTarget::parse("https://u%40x:p%3Aa%2Fss@host/a/b"),
            t("https://host/a/b/", Some(creds("u@x", "p:a/ss")))
        );
        assert_eq!(
            RestTarget::parse("http://[::1]:8000/r/"),
            t("http://[::1]:8000/r/", None)
        );
        for bad in [
            "",
            "host:8000/",
            "ftp://host/",
            "http://",
            "http://host/?x=1",
            "http://host/#x",
            "http://host/a//b/",
            "http://host/a/../b/",
            "http://host/./b/",
            "http://host/a/..",
            "http://u:%ff@host/",
        ] {
            assert_eq!(RestTarget::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let target = RestTarget::parse("https://user:hunter2@host/").unwrap();
        assert!(!format!("{target:?}").contains("hunter2"));
        let backend = RestBackend::new(target, None, None).unwrap();
        assert!(!format!("{backend:?}").contains("hunter2"));
        assert_eq!(backend.location(), "rest:https://host/");
        assert_eq!(
            scrub("rest:https://user:hunter2@host:8000/r/"),
            "rest:https://user:***@host:8000/r/"
        );
        assert_eq!(
            scrub("rest:https://u:p@ss@host/"),
            "rest:https://u:***@host/"
        );
        assert_eq!(scrub("rest:http://host/"), "rest:http://host/");
        assert_eq!(scrub("rest:http://user@host/"), "rest:http://user@host/");
        assert_eq!(scrub("/srv/a:b@c"), "/srv/a:b@c");
    }

    /// A backend on a fresh repository of the strict test server.
    fn on_server(
        options: vigie_testkit::rest::RestOptions,
    ) -> (vigie_testkit::rest::RestServer, RestBackend) {
        let server = vigie_testkit::rest::RestServer::start(options);
        let target = RestTarget::parse(&server.url()).unwrap();
        let backend = RestBackend::new(target, None, None).unwrap();
        backend.create().unwrap();
        (server, backend)
    }

    fn id_of_bytes(content: &[u8]) -> Id {
        vigie_testkit::rest::sha256_hex(content).parse().unwrap()
    }

    #[test]
    fn files_round_trip_and_missing_ones_are_named_or_already_removed() {
        let (server, backend) = on_server(vigie_testkit::rest::RestOptions::default());
        let pack = Bytes::from(b"0123456789".repeat(100));
        let id = id_of_bytes(&pack);
        backend
            .write_bytes(FileType::Pack, &id, false, pack.clone().into())
            .unwrap();
        // Written again, as a retry whose first answer was lost: the
        // server refuses the overwrite (403), the same size is there.
        backend
            .write_bytes(FileType::Pack, &id, false, pack.clone().into())
            .unwrap();
        assert_eq!(backend.read_full(FileType::Pack, &id).unwrap(), pack);
        assert_eq!(
            backend
                .read_partial(FileType::Pack, &id, false, 995, 5)
                .unwrap(),
            &pack[995..]
        );
        assert_eq!(
            backend.list_with_size(FileType::Pack).unwrap(),
            vec![(id, 1000)]
        );
        assert!(backend.list_with_size(FileType::Config).unwrap().is_empty());

        backend.remove(FileType::Pack, &id, false).unwrap();
        // Gone already: the server's 404 is a removal done.
        backend.remove(FileType::Pack, &id, false).unwrap();
        let err = backend
            .read_full(FileType::Pack, &id)
            .unwrap_err()
            .to_string();
        let name = format!("data/{}", id.to_hex().as_str());
        assert!(
            err.contains(&format!("{name} is not on the server")),
            "{err}"
        );
        let err = backend
            .read_partial(FileType::Pack, &id, false, 0, 5)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&name), "{err}");
        let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
        assert!(
            statuses.contains(&403) && statuses.contains(&404),
            "{statuses:?}"
        );
    }

    #[test]
    fn an_append_only_server_s_refusal_is_an_error_but_for_locks() {
        let (_server, backend) = on_server(vigie_testkit::rest::RestOptions {
            append_only: true,
            ..vigie_testkit::rest::RestOptions::default()
        });
        let content = Bytes::from_static(b"snapshot");
        let id = id_of_bytes(&content);
        backend
            .write_bytes(FileType::Snapshot, &id, false, content.clone().into())
            .unwrap();
        let err = backend
            .remove(FileType::Snapshot, &id, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HTTP 403") && err.contains("append-only"),
            "{err}"
        );
        backend.write_lock(&id, content.clone()).unwrap();
        assert_eq!(backend.list_locks().unwrap(), vec![id]);
        assert_eq!(backend.read_lock(&id).unwrap(), content);
        backend.remove_lock(&id).unwrap();
        assert!(backend.list_locks().unwrap().is_empty());
    }

    #[test]
    fn errors_quote_the_server_briefly_and_say_what_to_check() {
        let resp = |status, body: &'static [u8]| Resp {
            status,
            len: None,
            v2: false,
            body: Bytes::from_static(body),
        };
        assert_eq!(
            describe(&resp(401, b"Unauthorized\n")),
            "HTTP 401: Unauthorized: the server refused the user and password: check the repository's user and password"
        );
        assert_eq!(describe(&resp(500, b"")), "HTTP 500");
        let long = describe(&Resp {
            body: Bytes::from(vec![b'x'; 10_000]),
            ..resp(502, b"")
        });
        assert!(long.len() < MAX_QUOTED + 20, "{long}");
    }
}
