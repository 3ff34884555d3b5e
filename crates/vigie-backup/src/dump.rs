//! Dumps: a command's output stored as a file of the snapshot
//! (`pg_dump -Fc blog` → `/blog.sql`), streamed, never whole in memory
//! nor on disk.
//!
//! Where it goes: each dump is a file at the top of the snapshot,
//! `/NAME`, as `restic backup --stdin --stdin-filename NAME` stores
//! stdin; its path is one of the snapshot's paths, beside the job's
//! directories, so `restic restore latest --include /NAME` and `restic
//! dump latest /NAME` give it back, and a job with paths and dumps makes
//! one snapshot.
//!
//! How: `source.rs`'s `Sources` yields the job's files with the dumps
//! slotted in among the top-level entries in name order. A dump's
//! command starts when the archiver opens its entry; a thread reads its
//! stdout in 1 MiB blocks into a bounded queue (the command never waits
//! on the chunker, at most 6 MiB are held), and its stderr's last lines
//! are kept for the error. The archiver only learns a file's size by
//! reading it, and rustic_core 0.13 leaves the size it started with in
//! the tree (its own stdin source starts at 0, which restic restores as
//! an empty file; ours at the largest size, see `Sources::meta`):
//! `finish.rs` writes the root tree again with the real sizes, and the
//! snapshot, only once every dump has ended well.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{self, BufRead as _, Read};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustic_core::{ErrorKind, RusticError, RusticResult};

use crate::Error;

/// One block read from a dump's stdout.
const BLOCK: usize = 1 << 20;

/// Blocks queued between the reading thread and the archiver.
const QUEUED: usize = 4;

/// What is kept of a dump's stderr for its error: its last lines.
const STDERR_LINES: usize = 10;
const STDERR_LINE_CHARS: usize = 300;

/// A command whose output is stored as file `/NAME` of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    /// The file's name at the top of the snapshot (`blog.sql`).
    pub name: String,
    /// The program and its arguments (never a shell). Its stdin is
    /// `/dev/null`, its environment vigie's without the variables
    /// secrets are read from.
    pub run: Vec<String>,
    /// The longest the command may run, from its start to the end of its
    /// output: past it, its process group is killed and the dump fails
    /// (no snapshot). None: no limit.
    pub timeout: Option<Duration>,
}

impl Dump {
    /// A dump of `run`'s output as `/name`, without a time limit.
    pub fn new<S: AsRef<str>>(name: &str, run: &[S]) -> Dump {
        Dump {
            name: name.to_owned(),
            run: run.iter().map(|s| s.as_ref().to_owned()).collect(),
            timeout: None,
        }
    }

    /// The same dump, killed and failed past `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Dump {
        self.timeout = Some(timeout);
        self
    }
}

/// A span as people write it: `6h`, `1h30m`, `90s` is `1m30s`.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, 'h'), (m, 'm'), (s, 's')] {
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(unit);
        }
    }
    if out.is_empty() {
        out = format!("{}ms", d.as_millis());
    }
    out
}

/// Checks a request's dumps before anything runs: names that are file
/// names, given once, clear of the top-level names of `paths`; commands
/// that name a program.
pub(crate) fn check(job: &str, dumps: &[Dump], paths: &[PathBuf]) -> Result<(), Error> {
    let bad = |name: &str, why: String| Error::DumpName {
        job: job.to_owned(),
        name: name.to_owned(),
        why,
    };
    for (i, dump) in dumps.iter().enumerate() {
        let name = dump.name.as_str();
        if name.is_empty() || name == "." || name == ".." {
            return Err(bad(name, "it is no file name".to_owned()));
        }
        if name.contains('/') || name.contains('\0') {
            return Err(bad(
                name,
                "a dump is a file at the top of the snapshot: no `/` in its name".to_owned(),
            ));
        }
        if dumps[..i].iter().any(|d| d.name == name) {
            return Err(bad(name, "two dumps have this name".to_owned()));
        }
        // A path that is `/` holds every top-level name there is.
        if paths.iter().any(|p| top_name(p).is_none())
            && std::fs::symlink_metadata(Path::new("/").join(name)).is_ok()
        {
            return Err(bad(
                name,
                "`/` is backed up, and holds this name".to_owned(),
            ));
        }
        if let Some(path) = paths.iter().find(|p| top_name(p) == Some(OsStr::new(name))) {
            return Err(bad(
                name,
                format!(
                    "it is the name of {} at the top of the snapshot",
                    path.display()
                ),
            ));
        }
        if dump.run.first().is_none_or(String::is_empty) {
            return Err(Error::DumpCommand {
                job: job.to_owned(),
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// The first name of a path (`etc` of `/etc/nginx`).
pub(crate) fn top_name(path: &Path) -> Option<&OsStr> {
    path.components().find_map(|c| match c {
        Component::Normal(name) => Some(name),
        _ => None,
    })
}

/// How a dump ended, as its reader saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not read to its end (yet).
    Pending,
    /// Read whole, the command exited 0.
    Done { size: u64 },
    /// The command could not start, failed, or was cut short.
    Failed { status: String, stderr: String },
}

/// Each dump's outcome, shared by the readers and the backup that waits
/// for them all.
#[derive(Debug)]
pub(crate) struct Book {
    outcomes: Mutex<Vec<Outcome>>,
}

impl Book {
    pub(crate) fn new(n: usize) -> Arc<Book> {
        Arc::new(Book {
            outcomes: Mutex::new(vec![Outcome::Pending; n]),
        })
    }

    fn set(&self, i: usize, outcome: Outcome) {
        let mut all = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        // The first end is the one that counts (a drop after a failure
        // does not hide it).
        if all[i] == Outcome::Pending {
            all[i] = outcome;
        }
    }

    pub(crate) fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A dump not started yet.
pub(crate) struct DumpOpen {
    pub(crate) index: usize,
    pub(crate) dump: Dump,
    pub(crate) book: Arc<Book>,
}

impl DumpOpen {
    /// Starts the command in a process group of its own (killed whole if
    /// the backup stops reading it).
    pub(crate) fn start(self) -> RusticResult<DumpReader> {
        let (program, args) = self.dump.run.split_first().expect("checked: a program");
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        vigie_config::scrub_secret_env(&mut command);
        let started = command.spawn();
        let mut child = match started {
            Ok(child) => child,
            Err(e) => {
                let status = format!("cannot start {program:?}: {e}");
                self.book.set(
                    self.index,
                    Outcome::Failed {
                        status: status.clone(),
                        stderr: String::new(),
                    },
                );
                return Err(RusticError::new(ErrorKind::InputOutput, status));
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, blocks) = mpsc::sync_channel(QUEUED);
        let reader = thread::spawn(move || read_blocks(stdout, &tx));
        let tail = thread::spawn(move || stderr_tail(stderr));
        Ok(DumpReader {
            deadline: self.dump.timeout.map(|t| (Instant::now() + t, t)),
            index: self.index,
            book: self.book,
            child,
            blocks: Some(blocks),
            block: Vec::new(),
            at: 0,
            size: 0,
            reader: Some(reader),
            tail: Some(tail),
            ended: false,
        })
    }
}

/// Reads `stdout` in blocks of [`BLOCK`] bytes until its end or an
/// error, each sent whole; the end is an empty block.
fn read_blocks(mut stdout: ChildStdout, tx: &mpsc::SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut block = vec![0; BLOCK];
        let mut len = 0;
        let mut error = None;
        while len < BLOCK {
            match stdout.read(&mut block[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let at_end = len < BLOCK;
        block.truncate(len);
        // A send fails when the reader is gone (the backup stopped):
        // nothing to read for then.
        if len > 0 && tx.send(Ok(block)).is_err() {
            return;
        }
        if let Some(e) = error {
            let _ = tx.send(Err(e));
            return;
        }
        if at_end {
            let _ = tx.send(Ok(Vec::new()));
            return;
        }
    }
}

/// The last lines of a command's stderr, each cut to a length.
fn stderr_tail(stderr: std::process::ChildStderr) -> String {
    let mut lines = VecDeque::with_capacity(STDERR_LINES);
    let mut reader = io::BufReader::new(stderr);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            if lines.len() == STDERR_LINES {
                lines.pop_front();
            }
            let text = without_credentials(text);
            lines.push_back(text.chars().take(STDERR_LINE_CHARS).collect::<String>());
        }
        line.clear();
    }
    Vec::from(lines).join("\n")
}

/// `text` with the user and password of every URL in it redacted: a
/// client may echo its connection string (`postgresql://u:pw@db/blog`),
/// and the stderr tail is stored with the run.
fn without_credentials(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                vigie_core::url_without_credentials(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A running dump as the archiver reads it.
pub(crate) struct DumpReader {
    /// When the command must have ended, and its timeout.
    deadline: Option<(Instant, Duration)>,
    index: usize,
    book: Arc<Book>,
    child: Child,
    blocks: Option<mpsc::Receiver<io::Result<Vec<u8>>>>,
    block: Vec<u8>,
    at: usize,
    size: u64,
    reader: Option<JoinHandle<()>>,
    tail: Option<JoinHandle<String>>,
    ended: bool,
}

impl DumpReader {
    /// The command's stderr tail, once it has closed it.
    fn stderr(&mut self) -> String {
        self.tail
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }

    /// At the end of stdout (or a failed read): how the command ended.
    fn end(&mut self, read_error: Option<io::Error>) -> io::Result<usize> {
        self.ended = true;
        if read_error.is_some() {
            self.kill();
        }
        let status = self.child.wait();
        let stderr = self.stderr();
        let outcome = match (read_error, status) {
            (Some(e), _) => Outcome::Failed {
                status: format!("its output could not be read: {e}"),
                stderr,
            },
            (None, Err(e)) => Outcome::Failed {
                status: format!("cannot wait for it: {e}"),
                stderr,
            },
            (None, Ok(status)) if status.success() => Outcome::Done { size: self.size },
            (None, Ok(status)) => Outcome::Failed {
                status: describe(status),
                stderr,
            },
        };
        let failed = outcome != Outcome::Done { size: self.size };
        self.book.set(self.index, outcome);
        if failed {
            Err(io::Error::other("the dump's command failed"))
        } else {
            Ok(0)
        }
    }

    /// Past its timeout: the command's group killed, the dump failed.
    fn too_long(&mut self, timeout: Duration) -> io::Result<usize> {
        self.ended = true;
        // The reading thread's sends fail from now on: it ends.
        drop(self.blocks.take());
        self.kill();
        let _ = self.child.wait();
        let stderr = self.stderr();
        self.book.set(
            self.index,
            Outcome::Failed {
                status: format!("ran longer than its timeout of {}", span(timeout)),
                stderr,
            },
        );
        Err(io::Error::other("the dump's command ran past its timeout"))
    }

    fn kill(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// An exit status as people read it.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(9)) => "was killed (SIGKILL)".to_owned(),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        while self.at == self.block.len() {
            let next = match (self.blocks.as_ref(), self.deadline) {
                (None, _) => None,
                (Some(blocks), None) => Some(blocks.recv().map_err(|_| ())),
                (Some(blocks), Some((at, timeout))) => {
                    match blocks.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Err(mpsc::RecvTimeoutError::Timeout) => return self.too_long(timeout),
                        other => Some(other.map_err(|_| ())),
                    }
                }
            };
            match next {
                Some(Ok(Ok(block))) if block.is_empty() => return self.end(None),
                Some(Ok(Ok(block))) => {
                    self.block = block;
                    self.at = 0;
                }
                Some(Ok(Err(e))) => return self.end(Some(e)),
                // The reading thread is gone without an end: a panic.
                Some(Err(())) | None => {
                    return self.end(Some(io::Error::other("the reading thread stopped")));
                }
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        self.size += n as u64;
        Ok(n)
    }
}

impl Drop for DumpReader {
    /// Dropped before its end (the backup failed or stopped): the
    /// command's whole group is killed, and the dump is a failure.
    fn drop(&mut self) {
        drop(self.blocks.take());
        if !self.ended {
            self.kill();
            let _ = self.child.wait();
            let stderr = self.stderr();
            self.book.set(
                self.index,
                Outcome::Failed {
                    status: "was stopped before its end".to_owned(),
                    stderr,
                },
            );
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_string_in_stderr_loses_its_password() {
        assert_eq!(
            super::without_credentials(
                "pg_dump: error: connection to \"postgresql://blog:S3cret@db:5432/blog\" failed"
            ),
            "pg_dump: error: connection to \"postgresql://<redacted>@db:5432/blog\" failed"
        );
        assert_eq!(super::without_credentials("no url here"), "no url here");
    }

    use super::*;

    fn reader(run: &[&str]) -> (Arc<Book>, DumpReader) {
        let book = Book::new(1);
        let open = DumpOpen {
            index: 0,
            dump: Dump::new("d", run),
            book: Arc::clone(&book),
        };
        (book, open.start().unwrap())
    }

    #[test]
    fn a_dump_reads_whole_and_counts_its_size() {
        // More than a block, in odd pieces.
        let (book, mut r) = reader(&["sh", "-c", "head -c 3000000 /dev/zero; printf end"]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 3_000_003);
        assert!(all.ends_with(b"end"));
        drop(r);
        assert_eq!(book.outcomes(), vec![Outcome::Done { size: 3_000_003 }]);
    }

    #[test]
    fn a_failing_command_fails_the_read_with_its_status_and_stderr() {
        let (book, mut r) = reader(&[
            "sh",
            "-c",
            "printf partial; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i >&2; done; exit 3",
        ]);
        let mut all = Vec::new();
        assert!(r.read_to_end(&mut all).is_err());
        drop(r);
        let [Outcome::Failed { status, stderr }] = &book.outcomes()[..] else {
            panic!("{:?}", book.outcomes());
        };
        assert_eq!(status, "exited with status 3");
        // The last lines only.
        assert!(
            stderr.starts_with("line 3\n") && stderr.ends_with("line 12"),
            "{stderr}"
        );
    }

    #[test]
    fn a_dump_dropped_midway_is_killed_and_failed() {
        let (book, mut r) = reader(&["sh", "-c", "while :; do head -c 65536 /dev/zero; done"]);
        let mut some = vec![0; 10];
        r.read_exact(&mut some).unwrap();
        let pid = r.child.id();
        drop(r);
        let [Outcome::Failed { status, .. }] = &book.outcomes()[..] else {
            panic!("{:?}", book.outcomes());
        };
        assert_eq!(status, "was stopped before its end");
        // Nothing of its group runs: each process is gone, or a zombie
        // its new parent has not reaped yet. SIGKILL is sent to the whole
        // group at once, but a process can take a moment to die under
        // load: a second, at most, for the last of them.
        let running = || {
            let mut found = Vec::new();
            for entry in std::fs::read_dir("/proc").unwrap() {
                let Ok(stat) = std::fs::read_to_string(entry.unwrap().path().join("stat")) else {
                    continue;
                };
                // `pid (comm) state ppid pgrp …`; comm may hold spaces.
                let Some((_, rest)) = stat.rsplit_once(") ") else {
                    continue;
                };
                let fields: Vec<&str> = rest.split(' ').collect();
                if fields[2] == pid.to_string() && fields[0] != "Z" {
                    found.push(stat);
                }
            }
            found
        };
        let mut left = running();
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            left = running();
        }
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_dump_past_its_timeout_is_killed_and_failed() {
        let book = Book::new(1);
        let open = DumpOpen {
            index: 0,
            // Some output, then nothing: a dump stuck on a lock.
            dump: Dump::new("d", &["sh", "-c", "printf x; exec sleep 60"])
                .with_timeout(Duration::from_millis(300)),
            book: Arc::clone(&book),
        };
        let mut r = open.start().unwrap();
        let mut all = Vec::new();
        assert!(r.read_to_end(&mut all).is_err());
        let pid = r.child.id();
        drop(r);
        let [Outcome::Failed { status, .. }] = &book.outcomes()[..] else {
            panic!("{:?}", book.outcomes());
        };
        assert_eq!(status, "ran longer than its timeout of 300ms");
        // The stuck command is gone (reaped: no such process).
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert_eq!(span(Duration::from_mins(90)), "1h30m");
        assert_eq!(span(Duration::from_hours(6)), "6h");
    }

    #[test]
    fn a_missing_program_is_a_failure_that_names_it() {
        let book = Book::new(1);
        let open = DumpOpen {
            index: 0,
            dump: Dump::new("d", &["/nonexistent/pg_dump"]),
            book: Arc::clone(&book),
        };
        assert!(open.start().is_err());
        let [Outcome::Failed { status, .. }] = &book.outcomes()[..] else {
            panic!();
        };
        assert!(status.contains("/nonexistent/pg_dump"), "{status}");
    }

    #[test]
    fn names_must_be_top_level_file_names_clear_of_the_paths() {
        let ok = Dump::new("blog.sql", &["pg_dump"]);
        let paths = [PathBuf::from("/etc"), PathBuf::from("/var/lib")];
        assert!(check("j", std::slice::from_ref(&ok), &paths).is_ok());
        for name in ["", ".", "..", "a/b", "etc", "var"] {
            let err = check("j", &[Dump::new(name, &["x"])], &paths).unwrap_err();
            assert!(matches!(err, Error::DumpName { .. }), "{name}: {err}");
        }
        let root = [PathBuf::from("/")];
        assert!(check("j", std::slice::from_ref(&ok), &root).is_ok());
        let err = check("j", &[Dump::new("etc", &["x"])], &root).unwrap_err();
        assert!(err.to_string().contains("`/` is backed up"), "{err}");
        let twice = check("j", &[ok.clone(), ok.clone()], &paths).unwrap_err();
        assert!(twice.to_string().contains("two dumps"), "{twice}");
        let empty = check("j", &[Dump::new("x", &[] as &[&str])], &paths).unwrap_err();
        assert!(matches!(empty, Error::DumpCommand { .. }), "{empty}");
    }
}
