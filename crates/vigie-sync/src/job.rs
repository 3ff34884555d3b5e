//! One `[[sync]]` job: connect, compare both trees, send what differs,
//! then follow the source's file events, batched over `delay`, until
//! stopped; reconnect with backoff when the link drops.
//!
//! The sender keeps a mirror of what the receiver holds (read from the
//! receiver at each connection, updated on each answer), so a change is
//! judged against the receiver's real state, at full nanosecond
//! precision: a same-size rewrite within the same second is still sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use vigie_config::Excludes;
use vigie_core::Board;

use crate::proto::{Entry, Kind};
use crate::receive::Inode;
use crate::session::{Destination, FileSent, Pending, Progress, Session, same};

/// A changed file at least this big goes as a delta against the
/// receiver's copy.
pub const DELTA_MIN: u64 = 1 << 20;

/// A job's settings.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub name: String,
    pub from: PathBuf,
    pub to: Destination,
    pub exclude: Excludes,
    pub delay: Duration,
    pub delete: bool,
    /// A batch that would delete more entries than this is held.
    pub max_delete: u64,
    /// How often the whole tree is compared again.
    pub verify_every: Duration,
    /// Full passes compare contents too where size and time agree.
    pub checksum: bool,
    /// The job's check fails past this lag or queue length.
    pub max_lag: Duration,
    pub max_queue: u64,
    /// Where the queue and the pause are kept (none: in memory only).
    pub state_dir: Option<PathBuf>,
    /// The receiver keeps set-user-ID and set-group-ID bits of files
    /// (stripped otherwise).
    pub preserve_setuid: bool,
}

impl JobSpec {
    /// A job with the defaults of a `[[sync]]` table (no state
    /// directory: the queue and the pause kept in memory).
    pub fn new(name: &str, from: &Path, to: Destination) -> Self {
        Self {
            name: name.to_owned(),
            from: from.to_owned(),
            to,
            exclude: Excludes::default(),
            delay: Duration::from_millis(250),
            delete: true,
            max_delete: 1000,
            verify_every: Duration::from_hours(1),
            checksum: false,
            max_lag: Duration::from_mins(5),
            max_queue: 100_000,
            state_dir: None,
            preserve_setuid: false,
        }
    }

    /// The job of a `[[sync]]` table; a local destination runs this very
    /// binary as its receiver.
    pub fn from_config(j: &vigie_config::SyncJob) -> Self {
        let (host, path) = j.destination();
        let to = match host {
            Some(host) => Destination::Ssh {
                ssh: j.ssh.clone(),
                host: host.to_owned(),
                path: path.to_owned(),
                remote_vigie: j.remote_vigie.clone(),
            },
            None => Destination::Local {
                path: path.to_owned(),
                vigie: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vigie")),
            },
        };
        Self {
            name: j.name.clone(),
            from: j.from.clone(),
            to,
            exclude: j.exclude.clone(),
            delay: j.delay.std(),
            delete: j.delete,
            max_delete: j.max_delete,
            verify_every: j.verify_every.std(),
            checksum: j.checksum,
            max_lag: j.max_lag.std(),
            max_queue: j.max_queue,
            state_dir: None,
            preserve_setuid: j.preserve_setuid,
        }
    }
}

/// What a job reports (for `vigie sync status`, its check and metrics).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub connected: bool,
    /// Changes seen and not yet acknowledged by the receiver.
    pub queued: usize,
    /// Since when the oldest of them waits (ms since the epoch).
    pub oldest_change: Option<i64>,
    pub bytes_sent: u64,
    pub files_sent: u64,
    pub last_error: Option<String>,
    /// Deletions held by `max_delete`, waiting for confirmation.
    pub held_deletes: u64,
    pub last_full_scan: Option<i64>,
    /// Paused by hand or by a failover (fencing): since, and why.
    pub paused: Option<String>,
}

impl Status {
    /// The job's own judgement, for its check.
    pub fn outcome(&self, spec: &JobSpec) -> vigie_core::Outcome {
        use vigie_core::Outcome;
        let now = now_ms();
        let lag = self
            .oldest_change
            .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        let waiting = format!("{} changes waiting, oldest {lag:.0}s", self.queued);
        let o = if let Some(why) = &self.paused {
            Outcome::ok(format!("paused ({why}); {waiting}"))
        } else if !self.connected {
            Outcome::fail(format!(
                "cannot reach {}: {} ({waiting})",
                spec.to.describe(),
                self.last_error.as_deref().unwrap_or("connecting")
            ))
        } else if self.held_deletes > 0 {
            Outcome::fail(format!(
                "{} deletions held (more than max_delete = {}): check the source, then run `vigie sync {} --once --allow-deletes`",
                self.held_deletes, spec.max_delete, spec.name
            ))
        } else if lag > spec.max_lag.as_secs_f64() {
            Outcome::fail(format!("lagging: {waiting}, more than max_lag"))
        } else if self.queued as u64 >= spec.max_queue - spec.max_queue / 10 {
            // Near the bound already: past it the queue is not kept on
            // disk (a full pass replaces it), so say so before.
            Outcome::fail(format!(
                "{waiting}: near max_queue = {} (past it, a full pass replaces the queue)",
                spec.max_queue
            ))
        } else {
            Outcome::ok(format!(
                "in step with {}: {waiting}; {} files, {} bytes sent",
                spec.to.describe(),
                self.files_sent,
                self.bytes_sent
            ))
        };
        o.with_metric("sync_queue", self.queued as f64)
            .with_metric("sync_lag_seconds", lag)
            .with_metric("sync_bytes_sent", self.bytes_sent as f64)
            .with_metric("sync_files_sent", self.files_sent as f64)
    }
}

/// The job's store, if it keeps one.
struct Persist {
    store: Option<vigie_store::Store>,
    job: String,
}

impl Persist {
    fn open(spec: &JobSpec) -> Self {
        let store = spec.state_dir.as_ref().and_then(|d| match vigie_store::Store::open(d) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(job = %spec.name, error = %e, "the replication queue is kept in memory only");
                None
            }
        });
        Self {
            store,
            job: spec.name.clone(),
        }
    }

    fn with(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut vigie_store::Store, &str) -> Result<(), vigie_store::StoreError>,
    ) {
        if let Some(s) = &mut self.store
            && let Err(e) = f(s, &self.job)
        {
            tracing::error!(job = %self.job, error = %e, "{what}");
        }
    }

    fn paused(&self) -> Option<String> {
        let p = self.store.as_ref()?.sync_paused(&self.job).ok()??;
        Some(p.reason)
    }

    fn queued(&self) -> (Vec<Vec<u8>>, Option<i64>) {
        self.store
            .as_ref()
            .and_then(|s| s.sync_queue(&self.job).ok())
            .map_or((Vec::new(), None), |(p, t)| {
                (p, t.map(vigie_core::Timestamp::millis))
            })
    }
}

fn now_ms() -> i64 {
    vigie_core::Timestamp::now().millis()
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn parent_of(p: &[u8]) -> Option<&[u8]> {
    p.iter().rposition(|b| *b == b'/').map(|i| &p[..i])
}

fn under(p: &[u8], dir: &[u8]) -> bool {
    p.len() > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/'
}

/// `root` itself (an empty path: its mode, owner and times are
/// replicated like any entry's) and every entry under it (not following
/// symlinks), minus excludes.
pub fn local_tree(root: &Path, exclude: &Excludes) -> Result<BTreeMap<Vec<u8>, Entry>, String> {
    Ok(scan(root, exclude)?.0)
}

/// `local_tree`, and the names of each file that has more than one.
fn scan(root: &Path, exclude: &Excludes) -> Result<(BTreeMap<Vec<u8>, Entry>, Links), String> {
    let fd = rustix::fs::open(root, DIR_FLAGS, rustix::fs::Mode::empty())
        .map_err(|e| format!("{}: {}", root.display(), std::io::Error::from(e)))?;
    scan_fd(&fd, root, exclude)
}

const DIR_FLAGS: rustix::fs::OFlags = rustix::fs::OFlags::DIRECTORY
    .union(rustix::fs::OFlags::RDONLY)
    .union(rustix::fs::OFlags::CLOEXEC);

/// The directory holding `rel`'s last component, walked down from
/// `root` one component at a time without following a symlink, and that
/// component; `None` when `rel` is not beneath real directories of
/// `root` (an event seen through a symlink, or a directory swapped for
/// one since: what is there is not in the tree).
fn parent_beneath<'r>(root: &Path, rel: &'r [u8]) -> Option<(std::os::fd::OwnedFd, &'r [u8])> {
    let parts = crate::proto::components(rel).ok()?;
    let (last, dirs) = parts.split_last()?;
    let mut dir = rustix::fs::open(root, DIR_FLAGS, rustix::fs::Mode::empty()).ok()?;
    for c in dirs {
        dir = rustix::fs::openat(
            &dir,
            *c,
            DIR_FLAGS | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
    }
    Some((dir, last))
}

/// The status of the entry at `rel` under `root` itself (never through
/// a symlink); the root's own for an empty path.
fn lstat_beneath(root: &Path, rel: &[u8]) -> Option<rustix::fs::Stat> {
    if rel.is_empty() {
        return rustix::fs::stat(root).ok();
    }
    let (dir, name) = parent_beneath(root, rel)?;
    rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()
}

/// The tree under the real directory `rel` of `root` (reached without
/// following a symlink), paths relative to it.
fn subtree(root: &Path, rel: &[u8]) -> Result<BTreeMap<Vec<u8>, Entry>, String> {
    let shown = || join(root, rel).display().to_string();
    let (dir, name) = parent_beneath(root, rel).ok_or_else(|| format!("{}: gone", shown()))?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        DIR_FLAGS | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("{}: {}", shown(), std::io::Error::from(e)))?;
    Ok(scan_fd(&fd, &join(root, rel), &Excludes::default())?.0)
}

/// `scan` of the directory open as `fd` (`root`, for messages).
fn scan_fd(
    fd: &std::os::fd::OwnedFd,
    root: &Path,
    exclude: &Excludes,
) -> Result<(BTreeMap<Vec<u8>, Entry>, Links), String> {
    let mut out = BTreeMap::new();
    let mut links = Links::default();
    let top = crate::receive::root_entry(fd).map_err(|e| format!("{}: {e}", root.display()))?;
    out.insert(Vec::new(), top);
    crate::receive::walk(fd, &mut Vec::new(), &mut |e, inode| {
        if !exclude.is_excluded(&e.path) {
            if let Some(inode) = inode {
                links.add(&e.path, inode);
            }
            out.insert(e.path.clone(), e);
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok((out, links))
}

/// The inode of the file at `rel` under `root` if it has more than one
/// name.
fn linked(root: &Path, rel: &[u8]) -> Option<Inode> {
    let st = lstat_beneath(root, rel)?;
    (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
        && st.st_nlink > 1)
        .then_some((st.st_dev, st.st_ino))
}

/// Files of more than one name (hard links). A write through one name
/// changes them all, but inotify tells only the name written: each
/// name's inode is kept here (from the last full pass, and from each
/// changed file since) to bring the other names along, sent as links.
#[derive(Debug, Default)]
struct Links {
    names: HashMap<Inode, BTreeSet<Vec<u8>>>,
    inode: HashMap<Vec<u8>, Inode>,
}

impl Links {
    fn add(&mut self, path: &[u8], inode: Inode) {
        if let Some(old) = self.inode.insert(path.to_vec(), inode)
            && old != inode
            && let Some(n) = self.names.get_mut(&old)
        {
            n.remove(path);
        }
        self.names.entry(inode).or_default().insert(path.to_vec());
    }

    fn remove(&mut self, path: &[u8]) {
        if let Some(old) = self.inode.remove(path)
            && let Some(n) = self.names.get_mut(&old)
        {
            n.remove(path);
        }
    }

    /// The other names of `path`'s file.
    fn others(&self, path: &[u8]) -> Vec<Vec<u8>> {
        self.inode
            .get(path)
            .and_then(|i| self.names.get(i))
            .map(|n| n.iter().filter(|p| *p != path).cloned().collect())
            .unwrap_or_default()
    }
}

/// The entry at `rel` under `root` now, if any (special files: none;
/// nothing reached through a symlink).
fn local_entry(root: &Path, rel: &[u8]) -> Option<Entry> {
    use rustix::fs::FileType;
    let st = lstat_beneath(root, rel)?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => return None,
    };
    let target = if kind == Kind::Symlink {
        parent_beneath(root, rel)
            .and_then(|(dir, name)| rustix::fs::readlinkat(&dir, name, Vec::new()).ok())
            .map(std::ffi::CString::into_bytes)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Entry {
        path: rel.to_vec(),
        kind,
        size: if kind == Kind::File {
            st.st_size as u64
        } else {
            0
        },
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: crate::proto::nanos(st.st_mtime, st.st_mtime_nsec as i64),
        target,
    })
}

/// The running job's sender side.
pub struct Sender {
    spec: JobSpec,
    status: Arc<Mutex<Status>>,
    /// What the receiver holds.
    mirror: BTreeMap<Vec<u8>, Entry>,
    /// Directories whose content changed on the receiver since their
    /// times were last set (writing inside a directory changes them).
    touched: BTreeSet<Vec<u8>>,
    /// Files whose delta failed (the copy there changed meanwhile, or
    /// the rebuilt file did not match), or whose link did (a filesystem
    /// without hard links): sent whole next time.
    whole: BTreeSet<Vec<u8>>,
    /// The names of files with more than one.
    links: Links,
    progress: Arc<Progress>,
}

/// What one reconciliation left to do.
#[derive(Default)]
struct Left {
    /// Paths to look at again (failed, or changed while sent).
    again: BTreeSet<Vec<u8>>,
}

/// What one pass of `reconcile` keeps track of.
#[derive(Default)]
struct Pass {
    left: Left,
    /// Files sent as a delta or as a link: a failure sends them whole
    /// next time.
    deltas: BTreeSet<Vec<u8>>,
    /// Directories whose times are set last.
    dir_meta: Vec<Entry>,
    /// Files of several names sent in this pass: the next names go as
    /// links to the first.
    sent_names: BTreeSet<Vec<u8>>,
}

impl Sender {
    pub fn new(spec: JobSpec, status: Arc<Mutex<Status>>) -> Self {
        Self {
            spec,
            status,
            mirror: BTreeMap::new(),
            touched: BTreeSet::new(),
            whole: BTreeSet::new(),
            links: Links::default(),
            progress: Arc::default(),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connect and read the receiver's tree.
    pub fn connect(&mut self) -> Result<Session, String> {
        let mut s = Session::open(&self.spec.to, &self.spec.name, self.spec.preserve_setuid)?;
        s.progress = self.progress.clone();
        self.relist(&mut s)?;
        self.status().connected = true;
        Ok(s)
    }

    /// Read the receiver's tree again: what it holds now, whoever
    /// changed it.
    fn relist(&mut self, s: &mut Session) -> Result<(), String> {
        self.mirror = s
            .list()?
            .into_iter()
            .filter(|e| !self.spec.exclude.is_excluded(&e.path))
            .map(|e| (e.path.clone(), e))
            .collect();
        Ok(())
    }

    /// The periodic verification: both trees read again and compared
    /// whole; catches what no event told (a change made on the
    /// receiver, an event the kernel lost).
    pub fn verify(&mut self, s: &mut Session) -> Result<BTreeSet<Vec<u8>>, String> {
        self.relist(s)?;
        self.full_pass(s)
    }

    /// Compare everything and send what differs.
    pub fn full_pass(&mut self, s: &mut Session) -> Result<BTreeSet<Vec<u8>>, String> {
        let (want, links) = scan(&self.spec.from, &self.spec.exclude)?;
        self.links = links;
        let gone: Vec<Vec<u8>> = self
            .mirror
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        if self.spec.checksum {
            self.compare_contents(s, &want)?;
        }
        let left = self.reconcile(s, &want, gone)?;
        self.status().last_full_scan = Some(now_ms());
        Ok(left.again)
    }

    /// Where size and time agree, compare contents: a file whose SHA-256
    /// differs on the receiver is marked as not the same there (it is
    /// sent again, as a delta when big).
    fn compare_contents(
        &mut self,
        s: &mut Session,
        want: &BTreeMap<Vec<u8>, Entry>,
    ) -> Result<(), String> {
        let paths: Vec<Vec<u8>> = want
            .iter()
            .filter(|(p, e)| {
                e.kind == Kind::File && self.mirror.get(*p).is_some_and(|h| same(h, e, s.setuid))
            })
            .map(|(p, _)| p.clone())
            .collect();
        // Asked all at once; each side hashes its copies meanwhile.
        let theirs = s.hashes(&paths)?;
        for (p, theirs) in paths.iter().zip(theirs) {
            let ours = crate::session::open_beneath(&self.spec.from, p)
                .and_then(|mut f| crate::delta::sha256(&mut f))
                .ok();
            if ours.is_some() && ours != theirs {
                tracing::info!(job = %self.spec.name, path = %String::from_utf8_lossy(p), "contents differ though size and time agree");
                if let Some(h) = self.mirror.get_mut(p) {
                    h.mtime = i64::MIN;
                }
            }
        }
        Ok(())
    }

    /// Apply the renames seen, in order, where the receiver holds the
    /// source: moved there, not sent again.
    fn renames(&mut self, s: &mut Session, renames: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        // The renames sent: the mirror follows them only once answered,
        // and each next one is judged against the receiver as they
        // leave it.
        let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (from, to) in renames {
            let ex = |p: &[u8]| self.spec.exclude.is_excluded(p);
            // A watch's path can be stale (events read before a moved
            // directory's watch follows it): a rename onto itself, into
            // itself or onto one of its directories is no rename.
            let tangled = from == to || under(to, from) || under(from, to);
            if ex(from) || ex(to) || tangled || !self.held_after(&sent, from) {
                continue;
            }
            s.rename(from, to)?;
            self.touch_parent(from);
            self.touch_parent(to);
            sent.push((from.clone(), to.clone()));
        }
        if !sent.is_empty() {
            for d in s.settle()? {
                self.apply(d.op, d.error.as_deref());
            }
        }
        Ok(())
    }

    /// Whether the receiver holds `p` once the renames `moves` (sent,
    /// not yet answered) are made: `p` followed back through them to
    /// where it was, and looked for in the mirror. A rename made before
    /// in the same batch that took `d0` away leaves nothing at `d0` for
    /// a second rename from `d0` (a directory made again there since,
    /// not yet sent).
    fn held_after(&self, moves: &[(Vec<u8>, Vec<u8>)], p: &[u8]) -> bool {
        let mut p = p.to_vec();
        for (from, to) in moves.iter().rev() {
            if p == *to || under(&p, to) {
                let mut q = from.clone();
                q.extend_from_slice(&p[to.len()..]);
                p = q;
            } else if under(to, &p) {
                // A directory the rename went into (made for it if need be).
                return true;
            } else if p == *from || under(&p, from) {
                return false;
            }
        }
        self.mirror.contains_key(&p)
    }

    /// Look at `dirty` paths only (and new directories' contents).
    fn partial_pass(
        &mut self,
        s: &mut Session,
        dirty: &BTreeSet<Vec<u8>>,
    ) -> Result<BTreeSet<Vec<u8>>, String> {
        let mut want = BTreeMap::new();
        let mut gone = Vec::new();
        let mut dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
        for p in dirty {
            if self.spec.exclude.is_excluded(p) {
                continue;
            }
            if !p.is_empty() {
                dirs.insert(parent_of(p).unwrap_or_default().to_vec());
            }
            match local_entry(&self.spec.from, p) {
                None => {
                    // The root itself gone is no deletion to replicate.
                    if !p.is_empty() && self.mirror.contains_key(p) {
                        gone.push(p.clone());
                    }
                }
                Some(e) => {
                    // The root's own change (a chmod) is its alone: it
                    // is watched from the start, nothing in it is new.
                    if e.kind == Kind::Dir && !p.is_empty() {
                        self.dir_contents(p, &mut want, &mut gone);
                    }
                    want.insert(p.clone(), e);
                }
            }
        }
        self.other_names(&mut want);
        // The directories that held changes: their times changed too.
        for d in dirs {
            if let Some(e) = local_entry(&self.spec.from, &d) {
                want.entry(d).or_insert(e);
            }
        }
        Ok(self.reconcile(s, &want, gone)?.again)
    }

    /// A directory that appeared, moved or changed: all it holds
    /// (`want`), against all the receiver holds there (`gone`, what it
    /// holds no more). Files made in it before its watch began have no
    /// events of their own.
    fn dir_contents(
        &self,
        dir: &[u8],
        want: &mut BTreeMap<Vec<u8>, Entry>,
        gone: &mut Vec<Vec<u8>>,
    ) {
        let mut here = BTreeSet::new();
        if let Ok(sub) = subtree(&self.spec.from, dir) {
            for (k, mut v) in sub.into_iter().filter(|(k, _)| !k.is_empty()) {
                let mut full = dir.to_vec();
                full.push(b'/');
                full.extend_from_slice(&k);
                if !self.spec.exclude.is_excluded(&full) {
                    v.path.clone_from(&full);
                    here.insert(full.clone());
                    want.insert(full, v);
                }
            }
        }
        gone.extend(
            self.mirror
                .keys()
                .filter(|k| under(k, dir) && !here.contains(*k))
                .cloned(),
        );
    }

    /// A file of several names changed through one: every name goes in
    /// `want` (the book of links kept up to date on the way).
    fn other_names(&mut self, want: &mut BTreeMap<Vec<u8>, Entry>) {
        let files: Vec<Vec<u8>> = want
            .iter()
            .filter(|(_, e)| e.kind == Kind::File)
            .map(|(p, _)| p.clone())
            .collect();
        for p in files {
            let Some(inode) = linked(&self.spec.from, &p) else {
                self.links.remove(&p);
                continue;
            };
            self.links.add(&p, inode);
            for q in self.links.others(&p) {
                if want.contains_key(&q) {
                    continue;
                }
                match local_entry(&self.spec.from, &q) {
                    Some(e) if linked(&self.spec.from, &q) == Some(inode) => {
                        want.insert(q, e);
                    }
                    // No longer a name of that file.
                    _ => self.links.remove(&q),
                }
            }
        }
    }

    /// Make the receiver hold `want` (entries to create or update) and
    /// not `gone` (paths to delete).
    fn reconcile(
        &mut self,
        s: &mut Session,
        want: &BTreeMap<Vec<u8>, Entry>,
        gone: Vec<Vec<u8>>,
    ) -> Result<Left, String> {
        let mut pass = Pass::default();
        self.delete(s, gone)?;
        // What this pass will send, for a progress bar.
        for (path, e) in want {
            if e.kind == Kind::File && !self.mirror.get(path).is_some_and(|h| same(h, e, s.setuid))
            {
                self.progress.files.fetch_add(1, Ordering::Relaxed);
                self.progress.bytes.fetch_add(e.size, Ordering::Relaxed);
            }
        }
        // Creations and updates, parents first.
        for (path, e) in want {
            self.put(s, want, path, e, &mut pass)?;
        }
        self.dir_times(s, std::mem::take(&mut pass.dir_meta))?;
        self.settle(s, &mut pass)?;
        let mut left = pass.left;
        // A file of several names that failed: its other names may now
        // be links to what the receiver held before, whatever the mirror
        // says; they go again with it.
        let failed: Vec<Vec<u8>> = left.again.iter().cloned().collect();
        for p in failed {
            for q in self.links.others(&p) {
                if let Some(h) = self.mirror.get_mut(&q) {
                    h.mtime = i64::MIN;
                }
                left.again.insert(q);
            }
        }
        let sent = s.bytes_sent;
        self.status().bytes_sent = sent;
        Ok(left)
    }

    /// Delete what is `gone` (the topmost path of each subtree only),
    /// unless the job keeps deletions or there are more than
    /// `max_delete`: then they are held, and the job says so.
    fn delete(&mut self, s: &mut Session, mut gone: Vec<Vec<u8>>) -> Result<(), String> {
        gone.sort();
        let mut top: Vec<Vec<u8>> = Vec::new();
        for g in gone {
            if !top.iter().any(|t| under(&g, t)) {
                top.push(g);
            }
        }
        if !self.spec.delete || top.is_empty() {
            return Ok(());
        }
        let count: u64 = top
            .iter()
            .map(|t| {
                self.mirror
                    .keys()
                    .filter(|k| *k == t || under(k, t))
                    .count() as u64
            })
            .sum();
        if count > self.spec.max_delete {
            tracing::warn!(job = %self.spec.name, count, max = self.spec.max_delete, "deletions held: more than max_delete in one batch");
            self.status().held_deletes = count;
        } else {
            self.status().held_deletes = 0;
            for t in &top {
                s.delete(t)?;
                self.touch_parent(t);
            }
        }
        Ok(())
    }

    /// Create or update `path` (`e`, one of `want`) on the receiver
    /// where it differs; a directory's times wait in `pass`.
    fn put(
        &mut self,
        s: &mut Session,
        want: &BTreeMap<Vec<u8>, Entry>,
        path: &Vec<u8>,
        e: &Entry,
        pass: &mut Pass,
    ) -> Result<(), String> {
        let have = self.mirror.get(path).cloned();
        let have = have.as_ref();
        let owner_same = !s.owners || have.is_some_and(|h| h.uid == e.uid && h.gid == e.gid);
        if have.is_some_and(|h| same(h, e, s.setuid)) {
            if !owner_same {
                s.own(e)?;
            }
            return Ok(());
        }
        if e.kind != Kind::Dir || have.is_none_or(|h| h.kind != Kind::Dir) {
            self.touch_parent(path);
        }
        match e.kind {
            Kind::Dir => {
                // The root is always there (its path cannot be made).
                if have.is_none_or(|h| h.kind != Kind::Dir) && !path.is_empty() {
                    // Its times come last (see `dir_times`).
                    s.mkdir(&Entry {
                        mtime: i64::MIN,
                        ..e.clone()
                    })?;
                } else if !owner_same {
                    s.own(e)?;
                }
                pass.dir_meta.push(e.clone());
            }
            Kind::Symlink => s.symlink(e)?,
            Kind::File => self.put_file(s, want, (path, e), have, pass)?,
        }
        Ok(())
    }

    /// Send the file `path` (`e`; the receiver holds `have`): as a link
    /// to another of its names there, as a delta against its copy there
    /// when big, or whole.
    fn put_file(
        &mut self,
        s: &mut Session,
        want: &BTreeMap<Vec<u8>, Entry>,
        (path, e): (&Vec<u8>, &Entry),
        have: Option<&Entry>,
        pass: &mut Pass,
    ) -> Result<(), String> {
        // Another name of the same file, sent in this pass or unchanged
        // there: this one becomes a link to it.
        let to = self.links.others(path).into_iter().find(|q| {
            pass.sent_names.contains(q)
                || want.get(q).is_some_and(|w| {
                    self.mirror.get(q).is_some_and(|h| same(h, w, s.setuid)) && same(w, e, true)
                })
        });
        // Not on a reverse pass: its receiver takes no links.
        if let Some(to) = to.filter(|_| !self.whole.contains(path) && !self.spec.to.is_reverse()) {
            pass.deltas.insert(path.clone());
            s.link(e, &to)?;
            pass.sent_names.insert(path.clone());
            self.status().files_sent += 1;
            return Ok(());
        }
        let delta = have.is_some_and(|h| h.kind == Kind::File)
            && e.size >= DELTA_MIN
            && !self.whole.remove(path);
        match if delta {
            pass.deltas.insert(path.clone());
            s.delta_file(&self.spec.from, e, have.map_or(0, |h| h.size))?
        } else {
            s.file(&self.spec.from, e)?
        } {
            FileSent::Sent => {
                self.status().files_sent += 1;
                pass.sent_names.insert(path.clone());
            }
            FileSent::Changed => {
                self.status().files_sent += 1;
                pass.sent_names.insert(path.clone());
                pass.left.again.insert(path.clone());
            }
            FileSent::Unreadable(why) => {
                tracing::warn!(job = %self.spec.name, "not sent: {why}");
                self.status().last_error = Some(why);
            }
        }
        self.status().bytes_sent = s.bytes_sent;
        Ok(())
    }

    /// Directory times last (writing inside changes them), deepest
    /// first, read again now: those of `dir_meta` and of the
    /// directories touched.
    fn dir_times(&mut self, s: &mut Session, mut dir_meta: Vec<Entry>) -> Result<(), String> {
        for t in std::mem::take(&mut self.touched) {
            if !dir_meta.iter().any(|d| d.path == t) {
                dir_meta.push(Entry::bare(t, Kind::Dir));
            }
        }
        dir_meta.sort_by(|a, b| b.path.cmp(&a.path));
        // The primary's root is its own: a reverse pass leaves it be.
        if self.spec.to.is_reverse() {
            dir_meta.retain(|d| !d.path.is_empty());
        }
        for d in dir_meta {
            if let Some(now) = local_entry(&self.spec.from, &d.path)
                && now.kind == Kind::Dir
            {
                s.meta(&now)?;
            }
        }
        Ok(())
    }

    /// Wait for every answer of the pass: the mirror follows them, and
    /// a failed path is left to look at again.
    fn settle(&mut self, s: &mut Session, pass: &mut Pass) -> Result<(), String> {
        for d in s.settle()? {
            if let Some(e) = &d.error {
                let p = match &d.op {
                    Pending::Put(e) => e.path.clone(),
                    Pending::Delete(p) | Pending::Rename(_, p) | Pending::Own(p, ..) => p.clone(),
                };
                if pass.deltas.contains(&p) {
                    self.whole.insert(p.clone());
                }
                // The first failure of a path says why; what follows from
                // it (its owner cannot be set) adds nothing.
                if !pass.left.again.contains(&p) {
                    tracing::warn!(job = %self.spec.name, path = %String::from_utf8_lossy(&p), "receiver: {e}");
                    self.status().last_error = Some(e.clone());
                    pass.left.again.insert(p);
                }
            }
            self.apply(d.op, d.error.as_deref());
        }
        Ok(())
    }

    /// The directory holding `p` (the root for a top-level entry) will
    /// need its times set again.
    fn touch_parent(&mut self, p: &[u8]) {
        if !p.is_empty() {
            self.touched
                .insert(parent_of(p).unwrap_or_default().to_vec());
        }
    }

    /// Bring the mirror in line with one answered operation.
    fn apply(&mut self, op: Pending, error: Option<&str>) {
        if error.is_some() {
            return;
        }
        match op {
            Pending::Put(e) => {
                self.made_parents(&e.path);
                self.mirror.insert(e.path.clone(), e);
            }
            Pending::Delete(p) => {
                self.mirror.retain(|k, _| *k != p && !under(k, &p));
            }
            Pending::Own(p, uid, gid) => {
                if let Some(e) = self.mirror.get_mut(&p) {
                    e.uid = uid;
                    e.gid = gid;
                }
            }
            Pending::Rename(from, to) => {
                self.made_parents(&to);
                let moved: Vec<Vec<u8>> = self
                    .mirror
                    .keys()
                    .filter(|k| **k == from || under(k, &from))
                    .cloned()
                    .collect();
                self.mirror.retain(|k, _| *k != to && !under(k, &to));
                for k in moved {
                    if let Some(mut e) = self.mirror.remove(&k) {
                        let mut nk = to.clone();
                        nk.extend_from_slice(&k[from.len()..]);
                        e.path.clone_from(&nk);
                        self.mirror.insert(nk, e);
                    }
                }
            }
        }
    }

    /// The receiver makes the directories missing above an entry it
    /// puts or above a rename's target: the mirror holds them too, or a
    /// directory made for a rename and gone from the source by the time
    /// the batch is looked at (`mkdir d; mv f d/; rm -r d`) is never
    /// deleted there, nor moved by a later rename of it. What the
    /// receiver gave them (its mode, its owner, the time of now) is not
    /// known here: they match no source entry, so a pass that sees them
    /// sets their times, mode and owner.
    fn made_parents(&mut self, path: &[u8]) {
        let mut p = path;
        while let Some(d) = parent_of(p) {
            p = d;
            if self.mirror.get(d).is_some_and(|e| e.kind == Kind::Dir)
                || self.spec.exclude.is_excluded(d)
            {
                continue;
            }
            self.mirror.insert(
                d.to_vec(),
                Entry {
                    path: d.to_vec(),
                    kind: Kind::Dir,
                    size: 0,
                    mode: 0,
                    uid: u32::MAX,
                    gid: u32::MAX,
                    mtime: i64::MIN,
                    target: Vec::new(),
                },
            );
            // Its own directory's times changed there.
            self.touch_parent(d);
        }
    }
}

/// What the watcher saw since the last batch.
#[derive(Default)]
struct Batch {
    dirty: BTreeSet<Vec<u8>>,
    renames: Vec<(Vec<u8>, Vec<u8>)>,
    rescan: bool,
    first: Option<Instant>,
    last: Option<Instant>,
    oldest_ms: Option<i64>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.renames.is_empty() && !self.rescan
    }

    fn touch(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.oldest_ms.get_or_insert_with(now_ms);
    }

    /// The batch goes when the source has been quiet for a fifth of
    /// `delay` (a file being written is sent once it stops changing, and
    /// again if it changes again), or when its first change is `delay`
    /// old: a single change is visible in tens of milliseconds, a burst
    /// goes in batches of at most `delay`.
    fn due(&self, delay: Duration) -> bool {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return !self.is_empty();
        };
        let quiet = last.elapsed() >= (delay / 5).max(Duration::from_millis(10));
        // One file still being written waits to be quiet, up to a cap
        // (a log appended forever still goes out).
        let cap = if self.dirty.len() > 1 {
            delay
        } else {
            (delay * 8).max(Duration::from_secs(2))
        };
        quiet || first.elapsed() >= cap
    }

    fn add(&mut self, root: &Path, ev: &notify::Event) {
        // The root itself is an empty path (a chmod of it is a change).
        let rel = |p: &Path| -> Option<Vec<u8>> {
            let r = p.strip_prefix(root).ok()?;
            Some(r.as_os_str().as_bytes().to_vec())
        };
        if ev.need_rescan() {
            tracing::warn!(root = %root.display(), "file events overflowed; rescanning");
            self.rescan = true;
            self.touch();
            return;
        }
        match ev.kind {
            EventKind::Access(_) => return,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if ev.paths.len() == 2 => {
                if let (Some(a), Some(b)) = (rel(&ev.paths[0]), rel(&ev.paths[1])) {
                    self.renames.push((a, b));
                }
            }
            _ => {}
        }
        for p in &ev.paths {
            if let Some(r) = rel(p) {
                self.dirty.insert(r);
            }
        }
        self.touch();
    }
}

/// Run `spec` until `stop`: connect (with backoff), a full pass, then
/// live batches and a full pass every `verify_every`. Changes seen while
/// the target is away, or the job paused, wait in the store's queue.
/// The job reports how it goes on `board`, as `sync.NAME`.
#[allow(clippy::needless_pass_by_value)] // Owned: it runs on a thread of its own.
pub fn run(spec: JobSpec, status: Arc<Mutex<Status>>, stop: Arc<AtomicBool>, board: Board) {
    let Some((watcher, events)) = watch(&spec, &status) else {
        return;
    };
    let mut ctx = Ctx {
        persist: Persist::open(&spec),
        status,
        spec,
        published: None,
        board,
    };
    let mut sender = Sender::new(ctx.spec.clone(), ctx.status.clone());
    let mut batch = ctx.resume();
    let mut backoff = Duration::from_secs(1);
    let mut turn = Turn::default();
    while !stop.load(Ordering::Relaxed) {
        let paused = ctx.persist.paused();
        ctx.lock().paused.clone_from(&paused);
        if paused.is_some() {
            turn.sending = None;
        }
        let held_elsewhere = paused.is_none() && !turn.take(&ctx);
        if paused.is_none() && !held_elsewhere {
            match sender.connect() {
                Ok(mut session) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(job = %ctx.spec.name, to = %ctx.spec.to.describe(), "connected");
                    let result = live(
                        &mut sender,
                        &mut session,
                        &mut ctx,
                        &events,
                        &mut batch,
                        &stop,
                    );
                    ctx.lock().connected = false;
                    match result {
                        Ok(()) => continue,
                        Err(e) => {
                            tracing::warn!(job = %ctx.spec.name, "connection lost: {e}");
                            set_error(&ctx.status, e);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %ctx.spec.name, "cannot reach {}: {e}", ctx.spec.to.describe());
                    set_error(&ctx.status, e);
                    ctx.lock().connected = false;
                }
            }
        }
        let wait = if paused.is_some() || held_elsewhere {
            Duration::from_secs(1)
        } else {
            backoff
        };
        ctx.collect(&mut batch, &events, Instant::now() + wait, &stop);
        if paused.is_none() && !held_elsewhere {
            backoff = (backoff * 2).min(Duration::from_mins(1));
        }
        ctx.queue(&batch);
        ctx.publish(&batch, true);
    }
    ctx.board.withdraw(&format!("sync.{}", ctx.spec.name));
    drop(watcher);
}

type Events = mpsc::Receiver<notify::Result<notify::Event>>;

/// Watch the job's tree, recursively; `None` (the job's error said)
/// when no watch can be made at all.
fn watch(
    spec: &JobSpec,
    status: &Arc<Mutex<Status>>,
) -> Option<(notify::RecommendedWatcher, Events)> {
    let (tx, events) = mpsc::channel::<notify::Result<notify::Event>>();
    // Never through a symlink: `ln -s / src/x` would have the job watch
    // (and a root daemon walk) the whole filesystem.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = match notify::RecommendedWatcher::new(
        move |e| {
            let _ = tx.send(e);
        },
        config,
    ) {
        Ok(w) => w,
        Err(e) => {
            set_error(status, format!("cannot watch files: {e}"));
            return None;
        }
    };
    if let Err(e) = watcher.watch(&spec.from, RecursiveMode::Recursive) {
        set_error(status, format!("cannot watch {}: {e}", spec.from.display()));
    }
    Some((watcher, events))
}

/// Whoever sends the job holds its lock in the state directory (the
/// daemon, or `vigie sync NAME`), so that two senders never run side by
/// side; a paused job sends nothing and lets it go, so that a `vigie
/// sync NAME --once` may run meanwhile.
#[derive(Default)]
struct Turn {
    sending: Option<vigie_store::lock::Lock>,
    /// The lock held by another was said once (a warning), not at every
    /// try.
    said_held: bool,
}

impl Turn {
    /// Hold the job's lock (or hold it already): false when another
    /// process holds it (the job's error says which).
    fn take(&mut self, ctx: &Ctx) -> bool {
        let Some(dir) = &ctx.spec.state_dir else {
            return true;
        };
        if self.sending.is_some() {
            return true;
        }
        match vigie_store::lock::try_lock(dir, &vigie_store::lock::sync_lock_name(&ctx.spec.name)) {
            Ok(l) => {
                self.sending = Some(l);
                self.said_held = false;
                true
            }
            Err(e) => {
                let why = match &e {
                    vigie_store::lock::LockError::Held { pid: Some(p), .. } => {
                        format!("not sending: process {p} sends this job ({e})")
                    }
                    _ => format!("not sending: {e}"),
                };
                if !self.said_held {
                    tracing::warn!(job = %ctx.spec.name, "{why}");
                    self.said_held = true;
                }
                set_error(&ctx.status, why);
                false
            }
        }
    }
}

/// What the job loop carries.
struct Ctx {
    spec: JobSpec,
    status: Arc<Mutex<Status>>,
    persist: Persist,
    published: Option<Instant>,
    /// Where the job's check reads its report.
    board: Board,
}

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The batch left by the last run, from the store's queue.
    fn resume(&self) -> Batch {
        let mut batch = Batch::default();
        let (queued, oldest) = self.persist.queued();
        if !queued.is_empty() {
            tracing::info!(job = %self.spec.name, changes = queued.len(), "resuming with the queue left by the last run");
            batch.dirty.extend(queued);
            batch.oldest_ms = oldest;
        }
        batch
    }

    /// Keep collecting changes `until`, while the target is away or the
    /// job paused; what waits is on disk within a second.
    fn collect(&mut self, batch: &mut Batch, events: &Events, until: Instant, stop: &AtomicBool) {
        let mut saved = Instant::now();
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            if let Ok(ev) = events.recv_timeout(Duration::from_millis(100)) {
                on_event(batch, &self.spec.from, ev);
            }
            if saved.elapsed() >= Duration::from_secs(1) {
                self.queue(batch);
                self.publish(batch, true);
                saved = Instant::now();
            }
        }
    }

    /// Keep the batch's paths in the store (bounded: past `max_queue`,
    /// a full pass will cover them instead).
    fn queue(&mut self, batch: &Batch) {
        if batch.dirty.is_empty() || batch.dirty.len() as u64 > self.spec.max_queue {
            return;
        }
        let paths: Vec<Vec<u8>> = batch.dirty.iter().cloned().collect();
        let at = vigie_core::Timestamp(batch.oldest_ms.unwrap_or_else(now_ms));
        self.persist.with("keeping the queue", |s, job| {
            s.sync_enqueue(job, &paths, at)
        });
    }

    /// Tell the job's check how it goes (at most every second, or now).
    fn publish(&mut self, batch: &Batch, now: bool) {
        if !now
            && self
                .published
                .is_some_and(|p| p.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.published = Some(Instant::now());
        let outcome = {
            let mut s = self.lock();
            s.queued = batch.dirty.len() + batch.renames.len();
            s.oldest_change = batch.oldest_ms;
            s.outcome(&self.spec)
        };
        self.board
            .publish(&format!("sync.{}", self.spec.name), outcome);
    }
}

fn set_error(status: &Arc<Mutex<Status>>, e: String) {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .last_error = Some(e);
}

fn on_event(batch: &mut Batch, root: &Path, ev: notify::Result<notify::Event>) {
    match ev {
        Ok(ev) => batch.add(root, &ev),
        Err(e) => {
            // A lost watch or an overflowing queue: look at everything.
            tracing::warn!(error = %e, "file events lost; rescanning");
            batch.rescan = true;
            batch.touch();
        }
    }
}

/// Connected: a full pass, then batches until stopped, paused or cut.
fn live(
    sender: &mut Sender,
    session: &mut Session,
    ctx: &mut Ctx,
    events: &mpsc::Receiver<notify::Result<notify::Event>>,
    batch: &mut Batch,
    stop: &AtomicBool,
) -> Result<(), String> {
    // The full pass covers whatever was queued.
    ctx.queue(batch);
    *batch = Batch::default();
    let again = sender.full_pass(session)?;
    ctx.persist
        .with("clearing the queue", vigie_store::Store::sync_clear);
    let mut last_full = Instant::now();
    let mut last_pause_check = Instant::now();
    if !again.is_empty() {
        batch.dirty.extend(again);
        batch.touch();
    }
    ctx.lock().last_error = None;
    ctx.publish(batch, true);
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(ev) => {
                on_event(batch, &ctx.spec.from, ev);
                // Take what is already there before deciding.
                while let Ok(ev) = events.try_recv() {
                    on_event(batch, &ctx.spec.from, ev);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        ctx.publish(batch, false);
        if last_pause_check.elapsed() >= Duration::from_secs(1) {
            last_pause_check = Instant::now();
            if let Some(why) = ctx.persist.paused() {
                tracing::warn!(job = %ctx.spec.name, "paused: {why}");
                ctx.queue(batch);
                return Ok(());
            }
        }
        if last_full.elapsed() >= ctx.spec.verify_every {
            tracing::info!(job = %ctx.spec.name, "verifying both trees");
            *batch = Batch::default();
            let again = sender.verify(session)?;
            ctx.persist
                .with("clearing the queue", vigie_store::Store::sync_clear);
            batch.dirty.extend(again);
            last_full = Instant::now();
            continue;
        }
        if batch.is_empty() || !batch.due(ctx.spec.delay) {
            continue;
        }
        let b = std::mem::take(batch);
        ctx.queue(&b);
        let again = if b.rescan || b.dirty.len() as u64 > ctx.spec.max_queue {
            sender.full_pass(session)?
        } else {
            sender.renames(session, &b.renames)?;
            sender.partial_pass(session, &b.dirty)?
        };
        let done: Vec<Vec<u8>> = b
            .dirty
            .iter()
            .filter(|p| !again.contains(*p))
            .cloned()
            .collect();
        ctx.persist
            .with("updating the queue", |s, job| s.sync_done(job, &done));
        if !again.is_empty() {
            batch.dirty.extend(again);
            batch.touch();
        }
        ctx.publish(batch, true);
    }
    Ok(())
}

/// One full pass then return (`vigie sync NAME --once`).
pub fn once(spec: &JobSpec) -> Result<Status, String> {
    once_with(spec, Arc::default())
}

/// The same, telling `progress` how far it has gone.
pub fn once_with(spec: &JobSpec, progress: Arc<Progress>) -> Result<Status, String> {
    let status = Arc::new(Mutex::new(Status::default()));
    let mut sender = Sender::new(spec.clone(), status.clone());
    sender.progress = progress;
    let mut session = sender.connect()?;
    let mut again = sender.full_pass(&mut session)?;
    // Files that changed while sent: a few more tries.
    for _ in 0..3 {
        if again.is_empty() {
            break;
        }
        again = sender.partial_pass(&mut session, &again)?;
    }
    let s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(s)
}

/// A reverse pass, for failback: the far side's tree comes back here,
/// into `spec.from`, through `vigie sync-send` run over the same ssh.
/// Nothing is deleted here: what the backup wrote while it was active
/// comes back; what only the primary has stays.
pub fn reverse(spec: &JobSpec) -> Result<(), String> {
    use std::io::Read as _;
    let mut cmd = spec
        .to
        .reverse_command(spec.exclude.patterns())
        .ok_or_else(|| "this job has no far side to bring back".to_owned())?;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().display()))?;
    let input = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let output = std::io::BufWriter::new(child.stdin.take().expect("piped"));
    let mut stderr = child.stderr.take().expect("piped");
    let said = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The far side is the backup, which may have been compromised while
    // it served: nothing here is deleted, moved or reshaped, no
    // set-user-ID bit comes back, and what the job excludes is neither
    // shown to it nor touched.
    let policy = crate::receive::Policy {
        setuid: false,
        reverse: true,
        exclude: spec.exclude.clone(),
    };
    let served = crate::receive::serve(&spec.from, policy, input, output);
    let status = child.wait().map_err(|e| e.to_string())?;
    let said = said.join().unwrap_or_default();
    match (served, status.success()) {
        (Ok(()), true) => Ok(()),
        (Err(e), _) => Err(e),
        (Ok(()), false) => Err(format!("the far side failed ({status}): {}", said.trim())),
    }
}

/// The far side of a reverse pass: send `root` over stdin/stdout
/// (`vigie sync-send ROOT`), deleting nothing, leaving out what the job
/// excludes.
pub fn send_stdio(root: &Path, exclude: &[String]) -> Result<Status, String> {
    once(&JobSpec {
        exclude: Excludes::new(exclude)?,
        delete: false,
        max_delete: 0,
        ..JobSpec::new("reverse", root, Destination::Stdio)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            max_queue: 1000,
            ..JobSpec::new("web", Path::new("/src"), Destination::Stdio)
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            size: 0,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
            target: Vec::new(),
        }
    }

    fn file(path: &str) -> Entry {
        Entry {
            kind: Kind::File,
            mode: 0o644,
            ..dir(path)
        }
    }

    #[test]
    fn the_mirror_holds_the_directories_the_receiver_makes_for_a_rename_or_a_file() {
        let mut s = Sender::new(spec(), Arc::default());
        for e in [dir(""), dir("d0"), file("d0/f2")] {
            s.mirror.insert(e.path.clone(), e);
        }
        // `mkdir d1; mv d0/f2 d1/f5`: the receiver makes `d1` to rename
        // into it; once `d1` is gone from the source, only a mirror that
        // holds it deletes it there.
        s.apply(Pending::Rename(b"d0/f2".to_vec(), b"d1/f5".to_vec()), None);
        let keys: Vec<&[u8]> = s.mirror.keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [&b""[..], b"d0", b"d1", b"d1/f5"]);
        let d1 = &s.mirror[&b"d1".to_vec()];
        assert_eq!(d1.kind, Kind::Dir);
        // What the receiver gave it is not known: no source entry is the same.
        assert!(!same(d1, &dir("d1"), false));
        assert!(s.touched.contains(&b""[..]));
        // A file put deeper: every directory made on the way.
        s.apply(Pending::Put(file("d3/d4/f")), None);
        assert!(
            s.mirror.contains_key(b"d3".as_slice()) && s.mirror.contains_key(b"d3/d4".as_slice())
        );
        // Known directories are left as they are; a failed operation
        // made nothing.
        s.apply(Pending::Put(file("d0/f9")), None);
        assert_eq!(s.mirror[&b"d0".to_vec()], dir("d0"));
        s.apply(Pending::Put(file("d7/f")), Some("refused"));
        assert!(!s.mirror.contains_key(b"d7".as_slice()));
    }

    #[test]
    fn a_rename_is_judged_against_the_receiver_as_the_renames_before_it_leave_it() {
        let mut s = Sender::new(spec(), Arc::default());
        for e in [dir(""), dir("d0"), file("d0/f3"), file("f")] {
            s.mirror.insert(e.path.clone(), e);
        }
        let mv = |a: &str, b: &str| (a.as_bytes().to_vec(), b.as_bytes().to_vec());
        assert!(s.held_after(&[], b"d0"));
        // `mv d0 d1; mkdir d0; mv d0 d1/d2`: nothing to move at `d0`
        // (the new `d0` is not there yet), what was in it is in `d1`.
        let moves = [mv("d0", "d1")];
        assert!(!s.held_after(&moves, b"d0"));
        assert!(!s.held_after(&moves, b"d0/f3"));
        assert!(s.held_after(&moves, b"d1"));
        assert!(s.held_after(&moves, b"d1/f3"));
        // `mkdir t; mv f t/; mv t final`: `t` was made for the first.
        let moves = [mv("f", "t/f")];
        assert!(s.held_after(&moves, b"t"));
        assert!(s.held_after(&moves, b"t/f"));
        assert!(!s.held_after(&moves, b"f"));
        let moves = [mv("f", "t/f"), mv("t", "final")];
        assert!(!s.held_after(&moves, b"t"));
        assert!(s.held_after(&moves, b"final/f"));
        // A rename onto what a rename before it cleared.
        let moves = [mv("f", "d0")];
        assert!(!s.held_after(&moves, b"d0/f3"));
        assert!(s.held_after(&moves, b"d0"));
    }

    #[test]
    fn the_check_fails_as_the_queue_nears_its_bound() {
        let mut st = Status {
            connected: true,
            queued: 899,
            oldest_change: Some(now_ms()),
            ..Status::default()
        };
        assert!(st.outcome(&spec()).ok, "{:?}", st.outcome(&spec()));
        st.queued = 900;
        let o = st.outcome(&spec());
        assert!(!o.ok);
        assert!(o.message.contains("near max_queue = 1000"), "{}", o.message);
        assert!((o.metrics[0].value - 900.0).abs() < f64::EPSILON);
    }
}
