//! A repository on another host over SFTP, through the system `ssh`
//! (`ssh -s HOST sftp`), as restic reaches one: the user's ssh config,
//! keys, agent and ProxyJump apply, as they do to replication.
//!
//! The client speaks SFTP version 3 (what OpenSSH's server speaks) on
//! the child's pipes, one request at a time under a mutex, with reads and
//! writes of a file pipelined ([`WINDOW`] requests in flight) so that a
//! pack does not cost one round trip per 32 KiB. A write is the same as
//! the local backend's: a temporary name in the same directory,
//! `fsync@openssh.com`, then `posix-rename@openssh.com` over the final
//! name; a killed process leaves at most a `.tmp-…` file, which no
//! listing returns. A lost connection is opened again once per call.
//!
//! The remote side is storage, not trusted: what it returns is checked
//! by the repository's encryption, its replies are bounded
//! ([`MAX_PACKET`]), and a listing keeps only names that are ids.

use std::io::{BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::{DIRS, LockBackend, id_of, layout};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// The largest reply accepted: OpenSSH's server sends at most 256 KiB of
/// data per message; a directory listing of 100 names stays far below.
const MAX_PACKET: usize = 1 << 20;
/// The most entries a directory listing may hold (a repository's
/// `data/xx` holds thousands; a listing without end is an attack).
const MAX_ENTRIES: usize = 1_000_000;
/// Bytes asked or sent per READ or WRITE request.
const CHUNK: usize = 64 * 1024;
/// Requests of one read or write in flight at once.
const WINDOW: usize = 16;

// Packet types (draft-ietf-secsh-filexfer-02, version 3).
const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const FSTAT: u8 = 8;
const STAT: u8 = 17;
const RENAME: u8 = 18;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;
const EXTENDED: u8 = 200;

// Status codes.
const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;
const FX_NO_SUCH_FILE: u32 = 2;

// Open flags and attribute flags.
const READ_FLAG: u32 = 0x01;
const WRITE_FLAG: u32 = 0x02;
const CREAT: u32 = 0x08;
const TRUNC: u32 = 0x10;
const EXCL: u32 = 0x20;
const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

/// Where an `sftp:` repository lives: an ssh destination (a
/// `~/.ssh/config` alias, `host` or `user@host`), an optional port, and
/// the repository's path there (relative to the login's home unless it
/// starts with `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpTarget {
    /// `user@host`, `host` or an alias, as ssh takes it.
    pub host: String,
    /// A port other than ssh's (the URL form's `:PORT`).
    pub port: Option<u16>,
    /// The repository's directory on the host.
    pub path: String,
}

impl SftpTarget {
    /// Parses what follows `sftp:` in a repository string, in restic's two
    /// forms: `[user@]host:path` and `//[user@]host[:port]/path` (where
    /// `//host//srv/r` is the absolute `/srv/r`). `None` when it names no
    /// host or no path, or a host that ssh would read as an option.
    pub fn parse(rest: &str) -> Option<SftpTarget> {
        let (host, port, path) = if let Some(url) = rest.strip_prefix("//") {
            let (authority, path) = url.split_once('/')?;
            let (host, port) = split_port(authority)?;
            (host, port, path)
        } else {
            let (host, path) = split_host(rest)?;
            (host, None, path)
        };
        let bare = host.rsplit('@').next().unwrap_or(host);
        let valid = !host.is_empty()
            && !host.starts_with('-')
            && !bare.is_empty()
            && !path.is_empty()
            && !host.chars().any(|c| c.is_whitespace() || c.is_control())
            && !path.contains('\0');
        let path = match path.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        valid.then(|| SftpTarget {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// `[user@]host:path`, with `[v6]` brackets kept as ssh wants them.
fn split_host(s: &str) -> Option<(&str, &str)> {
    let start = s.find('@').map_or(0, |at| at + 1);
    let colon = if s[start..].starts_with('[') {
        start + s[start..].find("]:")? + 1
    } else {
        start + s[start..].find(':')?
    };
    Some((&s[..colon], &s[colon + 1..]))
}

/// `[user@]host[:port]`, the host without IPv6 brackets' port confusion.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let start = authority.find('@').map_or(0, |at| at + 1);
    let tail = &authority[start..];
    let port_at = if tail.starts_with('[') {
        tail.find(']')
            .map(|end| end + 1)
            .filter(|&i| tail[i..].starts_with(':'))
    } else {
        tail.rfind(':')
    };
    match port_at {
        Some(i) => {
            let port = tail[i + 1..].parse().ok().filter(|&p| p != 0)?;
            Some((&authority[..start + i], Some(port)))
        }
        None => Some((authority, None)),
    }
}

/// A repository over SFTP.
pub struct SftpBackend {
    target: SftpTarget,
    /// The ssh program and its options (`["ssh"]`, or a job's own).
    ssh: Vec<String>,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("target", &self.target)
            .field("ssh", &self.ssh)
            .finish_non_exhaustive()
    }
}

/// Why an SFTP call failed: the server's status, or the connection.
#[derive(Debug)]
enum Fail {
    Status(u32, String),
    Link(String),
}

impl Fail {
    fn is_missing(&self) -> bool {
        matches!(self, Fail::Status(FX_NO_SUCH_FILE, _))
    }
}

type Result<T> = std::result::Result<T, Fail>;

impl SftpBackend {
    /// The repository at `target`, reached with `ssh` (the program and
    /// its options; empty means `ssh`). Nothing is started yet.
    pub fn new(target: SftpTarget, ssh: Vec<String>) -> SftpBackend {
        let ssh = if ssh.is_empty() {
            vec!["ssh".to_owned()]
        } else {
            ssh
        };
        SftpBackend {
            target,
            ssh,
            session: Mutex::new(None),
        }
    }

    /// The ssh command that starts the server's SFTP subsystem.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.ssh[0]);
        cmd.args(&self.ssh[1..])
            .args(["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15"]);
        if let Some(port) = self.target.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.args(["-s", "--", &self.target.host, "sftp"]);
        // As every child of vigie: not the variables secrets are read from.
        vigie_config::scrub_secret_env(&mut cmd);
        cmd
    }

    fn path(&self, tpe: FileType, id: &Id) -> String {
        self.join(&layout(tpe, id))
    }

    fn join(&self, rel: &str) -> String {
        if self.target.path.ends_with('/') {
            format!("{}{rel}", self.target.path)
        } else {
            format!("{}/{rel}", self.target.path)
        }
    }

    /// Runs `op` on the session, starting one if there is none, and once
    /// more on a new session if the connection was lost.
    fn call<T>(&self, what: &str, op: impl Fn(&mut Session) -> Result<T>) -> RusticResult<T> {
        let mut guard = self.lock();
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(Session::start(self.command()).map_err(|f| self.error(what, &f))?);
            }
            let session = guard.as_mut().expect("a session was just started");
            match op(session) {
                Ok(v) => return Ok(v),
                Err(f @ Fail::Link(_)) => {
                    let f = match guard.take() {
                        Some(s) => s.end(f),
                        None => f,
                    };
                    if attempt == 1 {
                        return Err(self.error(what, &f));
                    }
                }
                Err(f) => return Err(self.error(what, &f)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn lock(&self) -> MutexGuard<'_, Option<Session>> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn error(&self, what: &str, f: &Fail) -> Box<RusticError> {
        let host = &self.target.host;
        match f {
            Fail::Status(code, msg) => RusticError::new(
                ErrorKind::Backend,
                format!("sftp {host}: cannot {what}: {msg} (status {code})"),
            ),
            Fail::Link(msg) => RusticError::new(
                ErrorKind::Backend,
                format!("sftp {host}: cannot {what}: {msg}"),
            ),
        }
    }

    /// Ids and sizes of the files in `dir` (none when it does not exist).
    fn list_dir(session: &mut Session, dir: &str) -> Result<Vec<(String, Attrs)>> {
        match session.read_dir(dir) {
            Err(f) if f.is_missing() => Ok(Vec::new()),
            other => other,
        }
    }
}

impl Drop for SftpBackend {
    fn drop(&mut self) {
        if let Some(s) = self.lock().take() {
            let _ = s.end(Fail::Link(String::new()));
        }
    }
}

/// What `ls` shows of an entry: its size and kind.
#[derive(Clone, Copy, Debug, Default)]
struct Attrs {
    size: Option<u64>,
    mode: Option<u32>,
}

impl Attrs {
    fn is(&self, kind: u32) -> bool {
        self.mode.is_some_and(|m| m & S_IFMT == kind)
    }
}

fn size32(f: &(String, Attrs)) -> Option<u32> {
    f.1.size.and_then(|s| u32::try_from(s).ok())
}

impl ReadBackend for SftpBackend {
    fn location(&self) -> String {
        match self.target.port {
            Some(port) => format!("sftp://{}:{port}/{}", self.target.host, self.target.path),
            None => format!("sftp:{}:{}", self.target.host, self.target.path),
        }
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let path = self.join("config");
            return self.call("read config", |s| match s.stat(&path) {
                Ok(a) if a.is(S_IFREG) => Ok(a
                    .size
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| vec![(Id::default(), n)])
                    .unwrap_or_default()),
                Ok(_) => Err(Fail::Status(4, format!("{path} is not a file: refused"))),
                Err(f) if f.is_missing() => Ok(Vec::new()),
                Err(f) => Err(f),
            });
        }
        let top = self.join(tpe.dirname());
        self.call(&format!("list {top}"), |s| {
            let mut dirs = vec![top.clone()];
            if tpe == FileType::Pack {
                dirs = Self::list_dir(s, &top)?
                    .into_iter()
                    .filter(|(n, a)| {
                        a.is(S_IFDIR)
                            && n.len() == 2
                            && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    })
                    .map(|(n, _)| format!("{top}/{n}"))
                    .collect();
            }
            let mut files = Vec::new();
            for dir in &dirs {
                for entry in Self::list_dir(s, dir)? {
                    if let (Some(id), Some(size), true) =
                        (id_of(&entry.0), size32(&entry), entry.1.is(S_IFREG))
                    {
                        files.push((id, size));
                    }
                }
            }
            Ok(files)
        })
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        self.call(&format!("read {path}"), |s| {
            let handle = s.open(&path, READ_FLAG, None)?;
            // Never more than the file holds (a repository file is
            // below 4 GiB), whatever the server sends.
            let read = s
                .fstat(&handle)
                .and_then(|a| match a.size.map(u32::try_from) {
                    Some(Ok(n)) => s.read_all(&handle, 0, Some(n as usize)),
                    _ => Err(Fail::Status(
                        4,
                        format!("{path} has no size below 4 GiB: refused"),
                    )),
                });
            let closed = s.close(&handle);
            let data = read?;
            closed?;
            Ok(Bytes::from(data))
        })
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        self.call(&format!("read {path}"), |s| {
            let handle = s.open(&path, READ_FLAG, None)?;
            let read = s.read_all(&handle, u64::from(offset), Some(length as usize));
            let closed = s.close(&handle);
            let data = read?;
            closed?;
            if data.len() != length as usize {
                return Err(Fail::Status(
                    FX_EOF,
                    format!(
                        "{path} ends before {length} bytes at {offset}: the index does not match the pack"
                    ),
                ));
            }
            Ok(Bytes::from(data))
        })
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id)
    }
}

/// A temporary name no listing returns (not an id).
fn temp_name(dir: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{dir}/.tmp-{}-{n}-{nanos:08x}", std::process::id())
}

impl WriteBackend for SftpBackend {
    fn create(&self) -> RusticResult<()> {
        let root = self.target.path.clone();
        self.call(&format!("create {root}"), |s| {
            s.mkdir_ok(&root)?;
            for dir in DIRS {
                s.mkdir_ok(&self.join(dir))?;
            }
            for prefix in 0..=255u8 {
                s.mkdir_ok(&self.join(&format!("data/{prefix:02x}")))?;
            }
            Ok(())
        })
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let parts: Vec<Bytes> = content.slice().to_vec();
        self.write_file(&self.path(tpe, id), &parts, tpe != FileType::Config)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.path(tpe, id);
        self.call(&format!("remove {path}"), |s| match s.remove(&path) {
            Err(f) if f.is_missing() => Ok(()),
            other => other,
        })
    }
}

impl SftpBackend {
    /// Writes a whole file at `path`: a temporary name beside it, synced,
    /// renamed over it; its directory made first if `make_dir` and it is
    /// missing (a repository made by another tool may lack `data/xx`).
    fn write_file(&self, path: &str, parts: &[Bytes], make_dir: bool) -> RusticResult<()> {
        let dir = path.rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
        self.call(&format!("write {path}"), |s| {
            let tmp = temp_name(&dir);
            let flags = WRITE_FLAG | CREAT | EXCL | TRUNC;
            let handle = match s.open(&tmp, flags, Some(0o400)) {
                Err(f) if f.is_missing() && make_dir => {
                    s.mkdir_ok(&dir)?;
                    s.open(&tmp, flags, Some(0o400))?
                }
                other => other?,
            };
            let written = s.write_all(&handle, parts).and_then(|()| s.fsync(&handle));
            let closed = s.close(&handle);
            let renamed = written.and(closed).and_then(|()| s.rename_over(&tmp, path));
            if renamed.is_err() {
                let _ = s.remove(&tmp);
            }
            renamed
        })
    }

    fn lock_path(&self, id: &Id) -> String {
        self.join(&format!("locks/{}", id.to_hex().as_str()))
    }
}

/// The most bytes of a lock file read (one holds a few hundred).
const MAX_LOCK: usize = 1 << 20;

impl LockBackend for SftpBackend {
    fn list_locks(&self) -> RusticResult<Vec<Id>> {
        let dir = self.join("locks");
        self.call(&format!("list {dir}"), |s| {
            Ok(Self::list_dir(s, &dir)?
                .into_iter()
                .filter(|(_, a)| a.is(S_IFREG))
                .filter_map(|(n, _)| id_of(&n))
                .collect())
        })
    }

    fn read_lock(&self, id: &Id) -> RusticResult<Bytes> {
        let path = self.lock_path(id);
        self.call(&format!("read {path}"), |s| {
            let handle = s.open(&path, READ_FLAG, None)?;
            let read = s.read_all(&handle, 0, Some(MAX_LOCK));
            let closed = s.close(&handle);
            let data = read?;
            closed?;
            Ok(Bytes::from(data))
        })
    }

    fn write_lock(&self, id: &Id, content: Bytes) -> RusticResult<()> {
        self.write_file(&self.lock_path(id), &[content], true)
    }

    fn remove_lock(&self, id: &Id) -> RusticResult<()> {
        let path = self.lock_path(id);
        self.call(&format!("remove {path}"), |s| match s.remove(&path) {
            Err(f) if f.is_missing() => Ok(()),
            other => other,
        })
    }
}

/// One `ssh -s HOST sftp` child and the protocol on its pipes.
struct Session {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    /// The last of ssh's own messages (`Permission denied (publickey)`).
    stderr: Arc<Mutex<String>>,
    /// The thread that reads them, done once ssh (and what it started)
    /// closed its stderr.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    next: u32,
    posix_rename: bool,
    fsync: bool,
}

/// A request's body, built field by field as SFTP encodes them.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn u32(mut self, v: u32) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(self, s: &[u8]) -> Msg {
        let mut m = self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        m.0.extend_from_slice(s);
        m
    }
}

/// A reply's body, read field by field; a short one is a protocol error.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(Fail::Link("the server sent a truncated reply".to_owned()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }
    fn attrs(&mut self) -> Result<Attrs> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.mode = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.take(8)?;
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
}

/// A server's error while other requests are still in flight: their
/// replies would answer the next calls, so the session is dropped (a link
/// failure) rather than kept out of step.
fn desync(f: Fail, pending: usize) -> Fail {
    match f {
        Fail::Status(code, msg) if pending > 0 => Fail::Link(format!("{msg} (status {code})")),
        other => other,
    }
}

fn link(e: &std::io::Error) -> Fail {
    Fail::Link(format!("the connection failed: {e}"))
}

impl Session {
    fn start(mut cmd: Command) -> Result<Session> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Fail::Link(format!("cannot run ssh: {e}")))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_reader = None;
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            stderr_reader = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 4096 {
                        let cut = s.len() - 2048;
                        let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                        s.drain(..cut);
                    }
                }
            }));
        }
        let to = child.stdin.take().expect("piped stdin");
        let from = BufReader::with_capacity(CHUNK * 2, child.stdout.take().expect("piped stdout"));
        let mut s = Session {
            child,
            to,
            from,
            stderr,
            stderr_reader,
            next: 0,
            posix_rename: false,
            fsync: false,
        };
        let hello = s.send(INIT, &Msg::default().u32(3)).and_then(|()| s.recv());
        let (kind, body) = match hello {
            Ok(reply) => reply,
            Err(f) => return Err(s.end(f)),
        };
        if kind != VERSION {
            return Err(s.end(Fail::Link(format!(
                "the server did not start SFTP (packet {kind})"
            ))));
        }
        let mut r = Reader(&body);
        let _version = r.u32()?;
        while !r.0.is_empty() {
            let name = r.string()?;
            let _data = r.bytes()?;
            match name.as_str() {
                "posix-rename@openssh.com" => s.posix_rename = true,
                "fsync@openssh.com" => s.fsync = true,
                _ => {}
            }
        }
        Ok(s)
    }

    /// Ends the child; a link failure gains ssh's own last words.
    fn end(mut self, f: Fail) -> Fail {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // What ssh said before it ended, read to its end (a second at
        // most: a ProxyJump's ssh may hold the pipe a little longer).
        if let Some(reader) = self.stderr_reader.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !reader.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let said = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_owned();
        match f {
            Fail::Link(msg) if !said.is_empty() => Fail::Link(format!("{msg} (ssh: {said})")),
            other => other,
        }
    }

    fn send(&mut self, kind: u8, body: &Msg) -> Result<()> {
        let len =
            u32::try_from(body.0.len() + 1).map_err(|_| Fail::Link("request too large".into()))?;
        let mut packet = Vec::with_capacity(body.0.len() + 5);
        packet.extend_from_slice(&len.to_be_bytes());
        packet.push(kind);
        packet.extend_from_slice(&body.0);
        self.to.write_all(&packet).map_err(|e| link(&e))?;
        self.to.flush().map_err(|e| link(&e))
    }

    fn recv(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.from.read_exact(&mut len).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Fail::Link("the connection closed".to_owned())
            } else {
                link(&e)
            }
        })?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(Fail::Link(format!(
                "the server sent a message of {len} bytes: refused"
            )));
        }
        let mut buf = vec![0u8; len];
        self.from.read_exact(&mut buf).map_err(|e| link(&e))?;
        let kind = buf[0];
        buf.remove(0);
        Ok((kind, buf))
    }

    /// Sends a request with a fresh id; returns the id.
    fn request(&mut self, kind: u8, body: impl FnOnce(Msg) -> Msg) -> Result<u32> {
        self.next = self.next.wrapping_add(1);
        let id = self.next;
        self.send(kind, &body(Msg::default().u32(id)))?;
        Ok(id)
    }

    /// The reply to request `id`: its type and the rest of its body.
    fn reply(&mut self, id: u32) -> Result<(u8, Vec<u8>)> {
        let (kind, body) = self.recv()?;
        let mut r = Reader(&body);
        let got = r.u32()?;
        if got != id {
            return Err(Fail::Link(format!(
                "the server answered request {got} where {id} was due"
            )));
        }
        Ok((kind, r.0.to_vec()))
    }

    fn call(&mut self, kind: u8, body: impl FnOnce(Msg) -> Msg) -> Result<(u8, Vec<u8>)> {
        let id = self.request(kind, body)?;
        self.reply(id)
    }

    /// A STATUS reply as a result; any other reply is unexpected.
    fn status(kind: u8, body: &[u8]) -> Result<()> {
        if kind != STATUS {
            return Err(Fail::Link(format!("unexpected reply {kind}")));
        }
        let mut r = Reader(body);
        match r.u32()? {
            FX_OK => Ok(()),
            code => Err(Fail::Status(code, r.string().unwrap_or_default())),
        }
    }

    fn expect(kind: u8, want: u8, body: Vec<u8>) -> Result<Vec<u8>> {
        if kind == want {
            Ok(body)
        } else {
            Self::status(kind, &body)?;
            Err(Fail::Link(format!("unexpected reply {kind}")))
        }
    }

    fn open(&mut self, path: &str, flags: u32, mode: Option<u32>) -> Result<Vec<u8>> {
        let (kind, body) = self.call(OPEN, |m| {
            let m = m.str(path.as_bytes()).u32(flags);
            match mode {
                Some(mode) => m.u32(ATTR_PERMISSIONS).u32(mode),
                None => m.u32(0),
            }
        })?;
        Reader(&Self::expect(kind, HANDLE, body)?).bytes()
    }

    fn close(&mut self, handle: &[u8]) -> Result<()> {
        let (kind, body) = self.call(CLOSE, |m| m.str(handle))?;
        Self::status(kind, &body)
    }

    /// Reads from `offset` to the end, or `len` bytes, with up to
    /// [`WINDOW`] requests in flight.
    fn read_all(&mut self, handle: &[u8], offset: u64, len: Option<usize>) -> Result<Vec<u8>> {
        let mut data = Vec::with_capacity(len.unwrap_or(0));
        let mut next = offset;
        let end = len.map(|n| offset + n as u64);
        let mut inflight = std::collections::VecDeque::new();
        let mut eof = false;
        loop {
            while !eof && inflight.len() < WINDOW && end.is_none_or(|e| next < e) {
                let want = end.map_or(CHUNK as u64, |e| (e - next).min(CHUNK as u64));
                let id = self.request(READ, |m| {
                    m.str(handle)
                        .u64(next)
                        .u32(u32::try_from(want).unwrap_or(0))
                })?;
                inflight.push_back((id, next, want));
                next += want;
            }
            let Some((id, at, want)) = inflight.pop_front() else {
                return Ok(data);
            };
            let (kind, body) = self.reply(id)?;
            if kind == STATUS {
                match Self::status(kind, &body) {
                    Err(Fail::Status(FX_EOF, _)) => {
                        eof = true;
                        continue;
                    }
                    Err(f) => return Err(desync(f, inflight.len())),
                    Ok(()) => return Err(Fail::Link("a read answered OK without data".into())),
                }
            }
            let chunk = Reader(&Self::expect(kind, DATA, body)?).bytes()?;
            if chunk.is_empty() {
                return Err(Fail::Link("the server answered a read with no data".into()));
            }
            if eof || at != offset + data.len() as u64 || chunk.len() as u64 > want {
                return Err(Fail::Link("the server's reads arrived out of order".into()));
            }
            let short = (chunk.len() as u64) < want;
            data.extend_from_slice(&chunk);
            if short {
                // A short read: ask again from where it stopped, after
                // what is in flight (which no longer lines up) drains.
                for (id, _, _) in inflight.drain(..) {
                    let _ = self.reply(id)?;
                }
                next = offset + data.len() as u64;
            }
        }
    }

    fn write_all(&mut self, handle: &[u8], parts: &[Bytes]) -> Result<()> {
        let mut inflight = std::collections::VecDeque::new();
        let mut offset = 0u64;
        for part in parts {
            for chunk in part.chunks(CHUNK) {
                if inflight.len() == WINDOW {
                    let id = inflight.pop_front().expect("a full window");
                    let (kind, body) = self.reply(id)?;
                    Self::status(kind, &body).map_err(|f| desync(f, inflight.len()))?;
                }
                inflight.push_back(self.request(WRITE, |m| m.str(handle).u64(offset).str(chunk))?);
                offset += chunk.len() as u64;
            }
        }
        while let Some(id) = inflight.pop_front() {
            let (kind, body) = self.reply(id)?;
            Self::status(kind, &body).map_err(|f| desync(f, inflight.len()))?;
        }
        Ok(())
    }

    fn fsync(&mut self, handle: &[u8]) -> Result<()> {
        if !self.fsync {
            return Ok(());
        }
        let (kind, body) = self.call(EXTENDED, |m| m.str(b"fsync@openssh.com").str(handle))?;
        Self::status(kind, &body)
    }

    /// Renames `from` over `to`, replacing it (only `config` ever is).
    fn rename_over(&mut self, from: &str, to: &str) -> Result<()> {
        let (kind, body) = if self.posix_rename {
            self.call(EXTENDED, |m| {
                m.str(b"posix-rename@openssh.com")
                    .str(from.as_bytes())
                    .str(to.as_bytes())
            })?
        } else {
            match self.remove(to) {
                Err(f) if !f.is_missing() => return Err(f),
                _ => {}
            }
            self.call(RENAME, |m| m.str(from.as_bytes()).str(to.as_bytes()))?
        };
        Self::status(kind, &body)
    }

    fn remove(&mut self, path: &str) -> Result<()> {
        let (kind, body) = self.call(REMOVE, |m| m.str(path.as_bytes()))?;
        Self::status(kind, &body)
    }

    fn fstat(&mut self, handle: &[u8]) -> Result<Attrs> {
        let (kind, body) = self.call(FSTAT, |m| m.str(handle))?;
        Reader(&Self::expect(kind, ATTRS, body)?).attrs()
    }

    fn stat(&mut self, path: &str) -> Result<Attrs> {
        let (kind, body) = self.call(STAT, |m| m.str(path.as_bytes()))?;
        Reader(&Self::expect(kind, ATTRS, body)?).attrs()
    }

    /// Makes a directory (0700); one already there is fine.
    fn mkdir_ok(&mut self, path: &str) -> Result<()> {
        let (kind, body) = self.call(MKDIR, |m| {
            m.str(path.as_bytes()).u32(ATTR_PERMISSIONS).u32(0o700)
        })?;
        match Self::status(kind, &body) {
            Err(Fail::Status(..)) if self.stat(path).is_ok_and(|a| a.is(S_IFDIR)) => Ok(()),
            other => other,
        }
    }

    /// A directory's entries (names and attributes, `.` and `..` left out).
    fn read_dir(&mut self, dir: &str) -> Result<Vec<(String, Attrs)>> {
        let (kind, body) = self.call(OPENDIR, |m| m.str(dir.as_bytes()))?;
        let handle = Reader(&Self::expect(kind, HANDLE, body)?).bytes()?;
        let mut entries = Vec::new();
        let listed = loop {
            let (kind, body) = match self.call(READDIR, |m| m.str(&handle)) {
                Ok(reply) => reply,
                Err(f) => break Err(f),
            };
            if kind == STATUS {
                match Self::status(kind, &body) {
                    Err(Fail::Status(FX_EOF, _)) => break Ok(()),
                    Err(f) => break Err(f),
                    Ok(()) => break Err(Fail::Link("a listing answered OK without names".into())),
                }
            }
            let body = Self::expect(kind, NAME, body)?;
            let mut r = Reader(&body);
            for _ in 0..r.u32()? {
                let name = r.string()?;
                let _long = r.bytes()?;
                let attrs = r.attrs()?;
                if name != "." && name != ".." {
                    entries.push((name, attrs));
                }
                if entries.len() > MAX_ENTRIES {
                    return Err(Fail::Link(format!(
                        "{dir} lists more than {MAX_ENTRIES} entries: refused"
                    )));
                }
            }
        };
        let closed = self.close(&handle);
        listed?;
        closed?;
        Ok(entries)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: Option<u16>, path: &str) -> SftpTarget {
        SftpTarget {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }

    #[test]
    fn parses_restic_s_two_forms() {
        let cases = [
            ("nas:/srv/restic", t("nas", None, "/srv/restic")),
            (
                "backup@nas:/srv/restic/",
                t("backup@nas", None, "/srv/restic"),
            ),
            ("nas:restic", t("nas", None, "restic")),
            ("[::1]:/srv/r", t("[::1]", None, "/srv/r")),
            (
                "//backup@nas:2222//srv/restic",
                t("backup@nas", Some(2222), "/srv/restic"),
            ),
            ("//nas/restic", t("nas", None, "restic")),
            ("//u@[::1]:22//r", t("u@[::1]", Some(22), "/r")),
            ("nas:/", t("nas", None, "/")),
        ];
        for (text, want) in cases {
            assert_eq!(SftpTarget::parse(text), Some(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_names_no_host_or_path_or_reads_as_an_option() {
        for bad in [
            "",
            "nas",
            "nas:",
            ":/srv",
            "user@:/srv",
            "-oProxyCommand=x:/srv",
            "//-oProxyCommand=x//srv",
            "//nas:0//srv",
            "//nas:99999//srv",
            "na s:/srv",
            "//nas",
        ] {
            assert_eq!(SftpTarget::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn replies_are_read_field_by_field_and_short_ones_refused() {
        let body = Msg::default().u32(7).str(b"abc").u64(1 << 40).0;
        let mut r = Reader(&body);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.u64().unwrap(), 1 << 40);
        assert!(matches!(r.u32(), Err(Fail::Link(_))));
        // A length beyond what was sent.
        let lying = Msg::default().u32(1000).0;
        assert!(matches!(Reader(&lying).bytes(), Err(Fail::Link(_))));
    }
}
