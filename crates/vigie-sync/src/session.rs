//! One connection to a receiver: the system `ssh` (or, for a local
//! destination, `vigie sync-receive` itself) with the protocol on its
//! stdin/stdout. Messages go out in order; replies come back on a reader
//! thread, so the sender never waits on one file before sending the
//! next.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proto::{self, CHUNK, Entry, Kind, Msg, ProtoError, VERSION};

/// Where a job's receiver runs.
#[derive(Clone, Debug)]
pub enum Destination {
    /// `host:/path` through `ssh` (any `~/.ssh/config` alias).
    Ssh {
        ssh: Vec<String>,
        host: String,
        path: String,
        remote_vigie: String,
    },
    /// A local directory: `vigie sync-receive` as a child process.
    Local {
        path: String,
        vigie: std::path::PathBuf,
    },
    /// This process's stdin/stdout (`vigie sync-send`, run by the far
    /// side for a reverse pass).
    Stdio,
}

impl Destination {
    /// The command that runs `vigie SUB [FLAGS] PATH` on the far side:
    /// through ssh, or this binary for a local path (none:
    /// stdin/stdout).
    fn far_command(&self, sub: &str, flags: &[&str]) -> Option<Command> {
        let mut cmd = match self {
            Destination::Ssh {
                ssh,
                host,
                path,
                remote_vigie,
            } => Some(ssh_command(ssh, host, remote_vigie, sub, flags, path)),
            Destination::Local { path, vigie } => {
                let mut c = Command::new(vigie);
                c.arg(sub).args(flags).arg(path);
                Some(c)
            }
            Destination::Stdio => None,
        }?;
        vigie_config::scrub_secret_env(&mut cmd);
        Some(cmd)
    }

    /// The command that runs a sender of `path` on the far side, for a
    /// reverse pass (far side → here); it leaves out the job's excluded
    /// paths (`--exclude`, as `--preserve-setuid` travels to a receiver),
    /// which the receiver here refuses anyway.
    pub fn reverse_command(&self, exclude: &[String]) -> Option<Command> {
        let flags: Vec<String> = exclude.iter().map(|p| format!("--exclude={p}")).collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.far_command("sync-send", &flags)
    }

    /// This process's stdin/stdout: the sender of a reverse pass.
    pub fn is_reverse(&self) -> bool {
        matches!(self, Destination::Stdio)
    }

    pub fn describe(&self) -> String {
        match self {
            Destination::Ssh { host, path, .. } => format!("{host}:{path}"),
            Destination::Local { path, .. } => path.clone(),
            Destination::Stdio => "the other side".to_owned(),
        }
    }
}

/// `ssh … HOST -- VIGIE SUBCOMMAND [FLAGS] PATH`, never prompting.
fn ssh_command(
    ssh: &[String],
    host: &str,
    vigie: &str,
    sub: &str,
    flags: &[&str],
    path: &str,
) -> Command {
    let mut c = Command::new(&ssh[0]);
    let mut remote = format!("{} {sub}", shell_quote(vigie));
    for f in flags {
        remote.push(' ');
        remote.push_str(&shell_quote(f));
    }
    remote.push(' ');
    remote.push_str(&shell_quote(path));
    c.args(&ssh[1..])
        .args(["-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15"])
        .arg(host)
        .arg("--")
        .arg(remote);
    c
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How far the passes have gone: the files they mean to send (and those
/// files' bytes), and what is done. Shared with whoever draws a bar.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub files_done: AtomicU64,
    /// Bytes of those files read and sent (whole, or as a delta).
    pub bytes_done: AtomicU64,
}

impl Progress {
    fn did(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A reader that counts what it reads into a `Progress`.
struct Counted<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.did(0, n as u64);
        Ok(n)
    }
}

/// A reply from the receiver, or the end of the connection.
type Reply = Result<Msg, ProtoError>;

pub struct Session {
    child: Option<Child>,
    out: BufWriter<Box<dyn Write + Send>>,
    replies: mpsc::Receiver<Reply>,
    stderr: Arc<Mutex<Vec<u8>>>,
    next_id: u64,
    /// Sent, not yet answered: what the receiver will hold once done.
    pending: BTreeMap<u64, Pending>,
    /// Answers that came while waiting for something else.
    early: Vec<(u64, Option<String>)>,
    pub bytes_sent: u64,
    /// The receiver keeps owners and groups (it runs as root).
    pub owners: bool,
    /// The receiver keeps set-user-ID and set-group-ID bits of files.
    pub setuid: bool,
    pub progress: Arc<Progress>,
}

/// An operation awaiting its answer.
#[derive(Clone, Debug)]
pub enum Pending {
    /// The receiver will hold this entry.
    Put(Entry),
    Delete(Vec<u8>),
    Rename(Vec<u8>, Vec<u8>),
    /// The receiver's entry gets this owner and group.
    Own(Vec<u8>, u32, u32),
}

/// What came back for one operation.
pub struct Done {
    pub op: Pending,
    pub error: Option<String>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The most entries, and bytes of names and link targets, a receiver's
/// listing may hold.
const MAX_LIST_ENTRIES: usize = 20_000_000;
const MAX_LIST_BYTES: usize = 4 << 30;

/// How long the receiver may stay silent while answers are due.
const REPLY_TIMEOUT: Duration = Duration::from_mins(2);

impl Session {
    /// Start the receiver and shake hands; it keeps set-user-ID bits
    /// when `preserve_setuid`.
    pub fn open(dest: &Destination, job: &str, preserve_setuid: bool) -> Result<Self, String> {
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let flags: &[&str] = if preserve_setuid {
            &["--preserve-setuid"]
        } else {
            &[]
        };
        let (child, input, out): (Option<Child>, Box<dyn Read + Send>, Box<dyn Write + Send>) =
            if let Some(mut cmd) = dest.far_command("sync-receive", flags) {
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().display()))?;
                let stdout = child.stdout.take().expect("piped");
                let mut stderr_pipe = child.stderr.take().expect("piped");
                let sink = stderr.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr_pipe.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut s = sink
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        s.extend_from_slice(&buf[..n]);
                        let excess = s.len().saturating_sub(8192);
                        s.drain(..excess);
                    }
                });
                let stdin: ChildStdin = child.stdin.take().expect("piped");
                (Some(child), Box::new(stdout), Box::new(stdin))
            } else {
                (
                    None,
                    Box::new(std::io::stdin()),
                    Box::new(std::io::stdout()),
                )
            };
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::with_capacity(64 * 1024, input);
            loop {
                let m = proto::read(&mut r);
                let end = m.is_err();
                if tx.send(m).is_err() || end {
                    break;
                }
            }
        });
        let out = BufWriter::with_capacity(256 * 1024, out);
        let mut s = Session {
            child,
            out,
            replies,
            stderr,
            next_id: 1,
            pending: BTreeMap::new(),
            early: Vec::new(),
            bytes_sent: 0,
            owners: false,
            setuid: false,
            progress: Arc::default(),
        };
        s.send(&Msg::Hello {
            version: VERSION,
            job: job.to_owned(),
        })?;
        s.flush()?;
        match s.reply(Duration::from_secs(30))? {
            Msg::Welcome {
                version,
                owners,
                setuid,
            } if version == VERSION => {
                s.owners = owners;
                s.setuid = setuid;
                Ok(s)
            }
            Msg::Fatal { message } => Err(format!("{}: {message}", dest.describe())),
            other => Err(format!(
                "{}: unexpected answer to hello: {other:?}",
                dest.describe()
            )),
        }
    }

    /// What the far side printed, to explain a failure.
    fn stderr_text(&self) -> String {
        // Give the stderr reader a moment to catch the last words.
        std::thread::sleep(Duration::from_millis(50));
        let s = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&s).trim().to_owned()
    }

    fn broken(&mut self, what: &str) -> String {
        let mut status = None;
        if let Some(child) = &mut self.child {
            for _ in 0..50 {
                status = child.try_wait().ok().flatten();
                if status.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let err = self.stderr_text();
        let code = status.and_then(|s| s.code());
        if code == Some(127) || err.contains("not found") {
            return format!(
                "the far side has no vigie to run (`{err}`): install vigie there, or set remote_vigie to its path"
            );
        }
        if code == Some(255) {
            return format!("ssh failed: {err}");
        }
        match (err.is_empty(), code) {
            (true, Some(c)) => format!("{what} (the receiver exited with {c})"),
            (true, None) => what.to_owned(),
            (false, _) => format!("{what}: {err}"),
        }
    }

    fn send(&mut self, m: &Msg) -> Result<(), String> {
        let r = proto::write(&mut self.out, m);
        r.map_err(|e| self.broken(&format!("sending: {e}")))
    }

    pub fn flush(&mut self) -> Result<(), String> {
        let r = self.out.flush();
        r.map_err(|e| self.broken(&format!("sending: {e}")))
    }

    fn reply(&mut self, timeout: Duration) -> Result<Msg, String> {
        match self.replies.recv_timeout(timeout) {
            Ok(Ok(Msg::Fatal { message })) => Err(format!("the receiver refused: {message}")),
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(self.broken(&format!("receiving: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("the receiver did not answer in {timeout:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.broken("the receiver went away")),
        }
    }

    /// The receiver's whole tree (at most `MAX_LIST_ENTRIES` entries and
    /// `MAX_LIST_BYTES` of names: a hostile receiver could otherwise
    /// list until the sender runs out of memory).
    pub fn list(&mut self) -> Result<Vec<Entry>, String> {
        self.list_within(MAX_LIST_ENTRIES, MAX_LIST_BYTES)
    }

    fn list_within(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Entry>, String> {
        self.send(&Msg::List)?;
        self.flush()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            match self.reply(REPLY_TIMEOUT)? {
                Msg::Entry(e) => {
                    bytes = bytes.saturating_add(e.path.len() + e.target.len());
                    if out.len() >= max_entries || bytes > max_bytes {
                        return Err(format!(
                            "the receiver's listing goes past {max_entries} entries or {max_bytes} bytes of names: is the destination the right directory?"
                        ));
                    }
                    out.push(e);
                }
                Msg::ListEnd => return Ok(out),
                other => return Err(format!("unexpected message in a listing: {other:?}")),
            }
        }
    }

    /// Keep an answer that came while waiting for another: one per
    /// operation awaiting its answer, no more (a hostile receiver could
    /// otherwise send answers until the sender runs out of memory).
    fn early(&mut self, id: u64, error: Option<String>) -> Result<(), String> {
        if !self.pending.contains_key(&id) || self.early.len() >= self.pending.len() {
            return Err(format!("an answer to operation {id}, which awaits none"));
        }
        self.early.push((id, error));
        Ok(())
    }

    fn id(&mut self, op: Pending) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, op);
        id
    }

    pub fn mkdir(&mut self, e: &Entry) -> Result<(), String> {
        let id = self.id(Pending::Put(e.clone()));
        self.send(&Msg::MkDir {
            id,
            path: e.path.clone(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
        })
    }

    pub fn meta(&mut self, e: &Entry) -> Result<(), String> {
        let id = self.id(Pending::Put(e.clone()));
        self.send(&Msg::Meta {
            id,
            path: e.path.clone(),
            mode: e.mode,
            mtime: e.mtime,
        })
    }

    pub fn own(&mut self, e: &Entry) -> Result<(), String> {
        let id = self.id(Pending::Own(e.path.clone(), e.uid, e.gid));
        self.send(&Msg::Own {
            id,
            path: e.path.clone(),
            uid: e.uid,
            gid: e.gid,
            mode: e.mode,
        })
    }

    pub fn symlink(&mut self, e: &Entry) -> Result<(), String> {
        let id = self.id(Pending::Put(e.clone()));
        self.send(&Msg::Symlink {
            id,
            path: e.path.clone(),
            target: e.target.clone(),
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        })
    }

    pub fn delete(&mut self, path: &[u8]) -> Result<(), String> {
        let id = self.id(Pending::Delete(path.to_vec()));
        self.send(&Msg::Delete {
            id,
            path: path.to_vec(),
        })
    }

    /// Make `e.path` another name of the receiver's `to` (hard links).
    pub fn link(&mut self, e: &Entry, to: &[u8]) -> Result<(), String> {
        let id = self.id(Pending::Put(e.clone()));
        self.send(&Msg::Link {
            id,
            path: e.path.clone(),
            to: to.to_vec(),
        })
    }

    pub fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), String> {
        let id = self.id(Pending::Rename(from.to_vec(), to.to_vec()));
        self.send(&Msg::Rename {
            id,
            from: from.to_vec(),
            to: to.to_vec(),
        })
    }

    /// Send the file `e.path` under `root`, whole; what became of it
    /// (`Err`: the session is broken).
    pub fn file(&mut self, root: &std::path::Path, e: &Entry) -> Result<FileSent, String> {
        let local = &join(root, &e.path);
        let (id, mut f, md, entry) = match self.announce(root, e, None)? {
            Ok(x) => x,
            Err(unreadable) => return Ok(unreadable),
        };
        let mut left = entry.size;
        let mut buf = vec![0u8; usize::try_from(left).unwrap_or(CHUNK).min(CHUNK)];
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let n = match f.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) => {
                    // The receiver drops what it got when the size is short.
                    tracing::warn!(path = %local.display(), error = %err, "read failed mid-file");
                    break;
                }
            };
            self.send(&Msg::Data(buf[..n].to_vec()))?;
            self.bytes_sent += n as u64;
            self.progress.did(0, n as u64);
            left -= n as u64;
        }
        self.send(&Msg::FileEnd { id })?;
        self.progress.did(1, left);
        let changed = changed_since(local, &md);
        Ok(if changed || left > 0 {
            FileSent::Changed
        } else {
            FileSent::Sent
        })
    }

    /// Send the file `e.path` under `root` as a delta against the
    /// receiver's copy (`theirs` bytes long, as listed); a whole file
    /// when the receiver has none.
    pub fn delta_file(
        &mut self,
        root: &std::path::Path,
        e: &Entry,
        theirs: u64,
    ) -> Result<FileSent, String> {
        let local = &join(root, &e.path);
        let block = crate::delta::block_size(e.size);
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Msg::Sums {
            id,
            path: e.path.clone(),
            block,
        })?;
        self.flush()?;
        // A big file's signatures come over several frames.
        let mut sums = Vec::new();
        loop {
            match self.reply(REPLY_TIMEOUT)? {
                Msg::SumsReply {
                    id: got,
                    sums: part,
                    more,
                } if got == id => {
                    sums.extend(part);
                    // No more than the copy there has blocks (or the
                    // file here, if that one grew since it was listed).
                    if sums.len() as u64 > theirs.max(e.size).div_ceil(u64::from(block)) {
                        return Err(format!(
                            "the receiver sent more block signatures of {} than its copy has blocks",
                            local.display()
                        ));
                    }
                    if !more {
                        break;
                    }
                }
                Msg::Fail { id: got, .. } if got == id => break,
                Msg::Ack { id } => self.early(id, None)?,
                Msg::Fail { id, message } => self.early(id, Some(message))?,
                other => return Err(format!("unexpected reply: {other:?}")),
            }
        }
        if sums.is_empty() {
            return self.file(root, e);
        }
        let (id, f, md, entry) = match self.announce(root, e, Some(block))? {
            Ok(x) => x,
            Err(unreadable) => return Ok(unreadable),
        };
        let progress = self.progress.clone();
        let mut limited = Counted {
            inner: f.take(entry.size),
            progress: &progress,
        };
        let mut sent = 0u64;
        let sha256 = crate::delta::delta(&mut limited, &sums, block, CHUNK, &mut |p| {
            let m = match p {
                crate::delta::Piece::Copy { index, count } => Msg::Copy { index, count },
                crate::delta::Piece::Data(d) => {
                    sent += d.len() as u64;
                    Msg::Data(d)
                }
            };
            self.send(&m)
        })?;
        self.bytes_sent += sent;
        self.send(&Msg::DeltaEnd { id, sha256 })?;
        // What was not read (the file shrank) counts as done too.
        self.progress.did(1, limited.inner.limit());
        let changed = changed_since(local, &md);
        Ok(if changed {
            FileSent::Changed
        } else {
            FileSent::Sent
        })
    }

    /// The SHA-256 of the receiver's copy of each of `paths` (`None`:
    /// it has none, or cannot read it). Asked all at once, answered in
    /// any order.
    pub fn hashes(&mut self, paths: &[Vec<u8>]) -> Result<Vec<Option<[u8; 32]>>, String> {
        let first = self.next_id;
        for p in paths {
            let id = self.next_id;
            self.next_id += 1;
            self.send(&Msg::Hash {
                id,
                path: p.clone(),
            })?;
        }
        self.flush()?;
        let mut out = vec![None; paths.len()];
        let mut left = paths.len();
        let index = |id: u64| {
            id.checked_sub(first)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < paths.len())
        };
        while left > 0 {
            match self.reply(REPLY_TIMEOUT)? {
                Msg::HashReply { id, sha256 } if index(id).is_some() => {
                    out[index(id).expect("checked")] = Some(sha256);
                    left -= 1;
                }
                Msg::Fail { id, .. } if index(id).is_some() => left -= 1,
                Msg::Ack { id } => self.early(id, None)?,
                Msg::Fail { id, message } => self.early(id, Some(message))?,
                other => return Err(format!("unexpected reply: {other:?}")),
            }
        }
        Ok(out)
    }

    /// Open a source file (`open_source`) and announce it: a `File`, or
    /// with `block` a `Delta`; its id first.
    #[allow(clippy::type_complexity)] // What `open_source` gives, and the id.
    fn announce(
        &mut self,
        root: &std::path::Path,
        e: &Entry,
        block: Option<u32>,
    ) -> Result<Result<(u64, std::fs::File, std::fs::Metadata, Entry), FileSent>, String> {
        let (f, md, entry) = match self.open_source(root, e)? {
            Ok(x) => x,
            Err(unreadable) => return Ok(Err(unreadable)),
        };
        let id = self.id(Pending::Put(entry.clone()));
        self.send(&Msg::announce(id, &entry, block))?;
        Ok(Ok((id, f, md, entry)))
    }

    /// Open a source file beneath `root` (`open_beneath`) and read what
    /// it is now; `Ok(Err(_))` when it cannot be read (reported, the
    /// session goes on).
    fn open_source(
        &self,
        root: &std::path::Path,
        e: &Entry,
    ) -> Result<Result<(std::fs::File, std::fs::Metadata, Entry), FileSent>, String> {
        let local = &join(root, &e.path);
        let f = match open_beneath(root, &e.path) {
            Ok(f) => f,
            Err(err) => {
                // Nothing more will come of it: done, for the progress.
                self.progress.did(1, e.size);
                return Ok(Err(FileSent::Unreadable(format!(
                    "{}: {err}",
                    local.display()
                ))));
            }
        };
        let md = f
            .metadata()
            .map_err(|err| format!("{}: {err}", local.display()))?;
        let entry = Entry {
            size: md.len(),
            mtime: proto::nanos(md.mtime(), md.mtime_nsec()),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            ..e.clone()
        };
        Ok(Ok((f, md, entry)))
    }

    /// Wait for every pending answer.
    pub fn settle(&mut self) -> Result<Vec<Done>, String> {
        self.send(&Msg::Commit)?;
        self.flush()?;
        let mut done = Vec::new();
        let mut early = std::mem::take(&mut self.early).into_iter();
        while !self.pending.is_empty() {
            let (id, error) = if let Some(e) = early.next() {
                e
            } else {
                match self.reply(REPLY_TIMEOUT)? {
                    Msg::Ack { id } => (id, None),
                    Msg::Fail { id, message } => (id, Some(message)),
                    other => return Err(format!("unexpected reply: {other:?}")),
                }
            };
            let Some(op) = self.pending.remove(&id) else {
                return Err(format!("an answer to unknown operation {id}"));
            };
            done.push(Done { op, error });
        }
        Ok(done)
    }
}

fn join(root: &std::path::Path, rel: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Open the regular file at `rel` under `root` for reading. Walked from
/// `root` one component at a time, never following a symlink: a
/// directory swapped for a link cannot lead a sender running as root
/// outside `root`. Non-blocking, so a FIFO swapped in cannot hang it;
/// anything but a regular file is refused.
pub(crate) fn open_beneath(root: &std::path::Path, rel: &[u8]) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let parts = crate::proto::components(rel).map_err(std::io::Error::other)?;
    let (last, dirs) = parts.split_last().expect("at least one component");
    let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, dir_flags, Mode::empty())?;
    for c in dirs {
        dir = rustix::fs::openat(&dir, *c, dir_flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    let fd = rustix::fs::openat(
        &dir,
        *last,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Whether the file at `local` changed since `md` was read.
fn changed_since(local: &std::path::Path, md: &std::fs::Metadata) -> bool {
    std::fs::symlink_metadata(local).ok().is_none_or(|a| {
        a.len() != md.len() || a.mtime() != md.mtime() || a.mtime_nsec() != md.mtime_nsec()
    })
}

/// What became of one file.
pub enum FileSent {
    Sent,
    /// It changed while being read: send it again.
    Changed,
    /// It could not be opened here (permission): reported, skipped.
    Unreadable(String),
}

/// Whether two entries need no transfer between them (owners and groups
/// are compared apart: a change of owner alone sends no data). Files'
/// modes are compared without set-user-ID and set-group-ID bits unless
/// the receiver keeps them (`setuid`): it strips them, and comparing
/// them would send the file again at every pass.
pub fn same(a: &Entry, b: &Entry, setuid: bool) -> bool {
    let file_mode = |e: &Entry| if setuid { e.mode } else { e.mode & !0o6000 };
    a.kind == b.kind
        && match a.kind {
            Kind::File => a.size == b.size && a.mtime == b.mtime && file_mode(a) == file_mode(b),
            Kind::Symlink => a.target == b.target && a.mtime == b.mtime,
            Kind::Dir => a.mode == b.mode && a.mtime == b.mtime,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver's listing past the bounds is an error, not memory.
    #[test]
    fn a_listing_past_its_bounds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        proto::write(
            &mut bytes,
            &Msg::Welcome {
                version: VERSION,
                owners: false,
                setuid: false,
            },
        )
        .unwrap();
        for i in 0..5u8 {
            let e = Entry {
                path: vec![b'a' + i],
                kind: Kind::File,
                size: 0,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                target: Vec::new(),
            };
            proto::write(&mut bytes, &Msg::Entry(e)).unwrap();
        }
        proto::write(&mut bytes, &Msg::ListEnd).unwrap();
        let stream = dir.path().join("replies.bin");
        std::fs::write(&stream, bytes).unwrap();
        let script = dir.path().join("fake-vigie");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ncat '{}'\nexec sleep 10\n", stream.display()),
        )
        .unwrap();
        std::fs::set_permissions(
            &script,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
        let dest = Destination::Local {
            path: dir.path().to_string_lossy().into_owned(),
            vigie: script,
        };
        let mut s = Session::open(&dest, "t", false).unwrap();
        let e = s.list_within(4, 1 << 20).unwrap_err();
        assert!(e.contains("past 4 entries"), "{e}");
        let mut s = Session::open(&dest, "t", false).unwrap();
        let e = s.list_within(100, 3).unwrap_err();
        assert!(e.contains("or 3 bytes"), "{e}");
        let mut s = Session::open(&dest, "t", false).unwrap();
        assert_eq!(s.list_within(5, 5).unwrap().len(), 5);
    }
}
