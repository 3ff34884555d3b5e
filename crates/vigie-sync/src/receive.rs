//! `vigie sync-receive ROOT`: the far side. It applies the sender's
//! messages inside ROOT and nowhere else: every path is walked from ROOT
//! one component at a time with `O_NOFOLLOW`, so no `..`, no absolute
//! path and no symlink along the way can lead out; special files are
//! never created. A file is written to a temporary name in its
//! directory, synced, then renamed over the old one: a reader never sees
//! half a file, and a killed receiver leaves only a temporary file, which
//! the next listing removes.
//!
//! Metadata is changed through a descriptor of the entry itself, opened
//! with `O_PATH | O_NOFOLLOW`, or by calls that never follow a link: a
//! local user who swaps a symlink in between cannot have root change a
//! file outside. Set-user-ID and set-group-ID bits of files are stripped
//! unless the job keeps them (`preserve_setuid`). A reverse pass
//! (failback, into the primary) trusts its sender less still: no
//! deletion, no rename, no entry replaced by one of another kind, and
//! never a set-user-ID bit (`Policy`).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use rustix::fs::Timespec;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;
use vigie_config::Excludes;

use crate::proto::{self, Entry, Kind, Msg, ProtoError, SUMS_PER_FRAME, VERSION};

/// Temporary files start with this; listings skip (and remove) them.
pub const TMP_PREFIX: &[u8] = b".vigie-tmp.";

/// Why a message was not carried out.
enum Refusal {
    /// Hostile or impossible: the session ends.
    Fatal(String),
    /// This one failed (disk full, permission): the session goes on.
    Fail(String),
}

impl From<Errno> for Refusal {
    fn from(e: Errno) -> Self {
        Refusal::Fail(io::Error::from(e).to_string())
    }
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Fail(e.to_string())
    }
}

fn shown(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    }
}

fn times(ns: i64) -> Timestamps {
    Timestamps {
        last_access: timespec(ns),
        last_modification: timespec(ns),
    }
}

fn mode(m: u32) -> Mode {
    Mode::from_bits_truncate(m & 0o7777)
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

/// What a receiver accepts from its sender.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Keep set-user-ID and set-group-ID bits on files (`preserve_setuid
    /// = true`); stripped otherwise. Never on a reverse pass.
    pub setuid: bool,
    /// A reverse pass (failback) into the primary: the sender is the
    /// backup, which may have been compromised while it served. Refused:
    /// deletions, renames (they remove the name they replace), and
    /// replacing an entry by one of another kind (a directory by a file,
    /// a file by a symlink…).
    pub reverse: bool,
    /// The job's `exclude` patterns: excluded paths are neither listed
    /// nor touched, and a message about one ends the session (on a
    /// reverse pass, the primary's host-specific and secret files stay
    /// its own, and unseen by the backup).
    pub exclude: Excludes,
}

impl Policy {
    /// The mode bits a received entry of type `ft` gets: without
    /// set-user-ID and set-group-ID bits on a file unless kept (on a
    /// directory set-group-ID only passes the group on to new entries).
    fn mode(&self, ft: FileType, m: u32) -> Mode {
        let m = if ft == FileType::RegularFile && !self.keeps_setuid() {
            m & !0o6000
        } else {
            m
        };
        mode(m)
    }

    fn keeps_setuid(&self) -> bool {
        self.setuid && !self.reverse
    }
}

struct Receiver {
    root: Arc<OwnedFd>,
    policy: Policy,
    /// Where full batches of staged files go to be put in place.
    committer: Committer,
    /// Running as root: owners and groups are set as sent.
    owners: bool,
    /// Files written to their temporary names, waiting to be handed to
    /// the committer (see `hand_off`).
    staged: Vec<Staged>,
    staged_bytes: u64,
    stage_files: usize,
    /// The directory of the last path walked, and its path: files come
    /// by directory, so most walks stop here. Forgotten before anything
    /// that may move or remove a directory.
    last_dir: RefCell<Option<(Vec<u8>, Arc<OwnedFd>)>>,
}

/// The committer's side of the receiver: batches of staged files to put
/// in place, in order.
struct Committer {
    jobs: mpsc::SyncSender<Job>,
    /// The paths of the batch last handed over (maybe not yet in place).
    inflight: Vec<Vec<u8>>,
}

enum Job {
    Place(Vec<Staged>),
    /// Answer once everything before is done: the first error, if any.
    Wait(mpsc::Sender<Option<String>>),
}

/// Run the committer until the receiver drops its end: each batch's
/// contents are made durable (`durable`), then each file is renamed over
/// its name (a reader sees the old file or the whole new one), and
/// answered.
fn committer(root: &OwnedFd, policy: &Policy, jobs: &mpsc::Receiver<Job>, out: &Mutex<impl Write>) {
    let mut failed: Option<String> = None;
    for job in jobs {
        match job {
            Job::Wait(tx) => {
                let _ = tx.send(failed.clone());
            }
            Job::Place(batch) => {
                let synced = durable(root, &batch);
                let replies: Vec<Msg> = batch
                    .into_iter()
                    .map(|st| {
                        let placed = match synced {
                            Err(e) => Err(Refusal::from(e)),
                            Ok(()) => Receiver::clear_dir(&st.dir, &st.name, policy.reverse)
                                .and_then(|()| {
                                    Ok(rustix::fs::renameat(&st.dir, &st.tmp, &st.dir, &st.name)?)
                                }),
                        };
                        match placed {
                            Ok(()) => Msg::Ack { id: st.id },
                            Err(Refusal::Fail(message) | Refusal::Fatal(message)) => {
                                let _ = rustix::fs::unlinkat(&st.dir, &st.tmp, AtFlags::empty());
                                Msg::Fail { id: st.id, message }
                            }
                        }
                    })
                    .collect();
                if failed.is_none()
                    && let Err(e) = reply(out, &replies)
                {
                    failed = Some(e);
                }
            }
        }
    }
}

/// Up to this many files, a batch is synced file by file; past it, with
/// one `syncfs`.
const SYNC_EACH: usize = 8;

/// Make a batch's contents durable. A few files (the live case) are
/// synced each, which waits for their data only; many (a first copy, a
/// burst) with one `syncfs`, which is far cheaper than a sync per file
/// but also waits for whatever else the filesystem has to write.
fn durable(root: &OwnedFd, batch: &[Staged]) -> Result<(), Errno> {
    if batch.len() > SYNC_EACH {
        return rustix::fs::syncfs(root);
    }
    for st in batch {
        let f = rustix::fs::openat(
            &st.dir,
            &st.tmp,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::fdatasync(&f)?;
    }
    Ok(())
}

/// Send answers, whole, between the receiver's and the committer's.
fn reply(out: &Mutex<impl Write>, msgs: &[Msg]) -> Result<(), String> {
    let mut w = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for m in msgs {
        proto::write(&mut *w, m).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

/// A received file not yet in place.
struct Staged {
    id: u64,
    dir: Arc<OwnedFd>,
    tmp: Vec<u8>,
    /// Its name in `dir`, and its whole path.
    name: Vec<u8>,
    path: Vec<u8>,
}

/// What a new entry gets besides its contents.
#[derive(Clone, Copy)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl Attrs {
    fn new(mode: u32, uid: u32, gid: u32, mtime: i64) -> Attrs {
        Attrs {
            mode,
            uid,
            gid,
            mtime,
        }
    }
}

/// A file being received into its temporary file (in its directory):
/// the first error, if any (the rest of its frames are still read), how
/// much was written and, for a delta, the SHA-256 of it all.
struct Incoming {
    file: Result<(Arc<OwnedFd>, std::fs::File), Refusal>,
    written: u64,
    hasher: Option<ring::digest::Context>,
}

impl Incoming {
    fn write(&mut self, d: &[u8]) {
        use std::os::unix::fs::FileExt;
        if let Ok((_, f)) = &self.file {
            self.written += d.len() as u64;
            if let Some(h) = &mut self.hasher {
                h.update(d);
            }
            // Zeros are left as a hole (the file's length is set at
            // the end): a sparse disk image stays sparse here.
            if zeros(d) {
                return;
            }
            if let Err(e) = f.write_all_at(d, self.written - d.len() as u64) {
                self.file = Err(e.into());
            }
        }
    }

    /// Read the file's frames up to its end message: the SHA-256 a
    /// delta's end announces.
    fn body(
        &mut self,
        input: &mut impl Read,
        tmp: &[u8],
        basis: Option<u32>,
        old: Option<&std::fs::File>,
        path: &[u8],
    ) -> Result<Option<[u8; 32]>, Refusal> {
        loop {
            let msg = match proto::read(input) {
                Ok(m) => m,
                Err(e) => {
                    // The sender is gone mid-file: no trace of it here.
                    if let Ok((dir, _)) = &self.file {
                        let _ = rustix::fs::unlinkat(dir, tmp, AtFlags::empty());
                    }
                    return Err(Refusal::Fatal(e.to_string()));
                }
            };
            match (msg, basis) {
                (Msg::Data(d), _) => self.write(&d),
                (Msg::Copy { index, count }, Some(block)) => {
                    self.copy(old, (index, count), block, path);
                }
                (Msg::FileEnd { .. }, None) => return Ok(None),
                (Msg::DeltaEnd { sha256, .. }, Some(_)) => return Ok(Some(sha256)),
                (other, _) => {
                    return Err(Refusal::Fatal(format!(
                        "expected file data, got {}",
                        name_of(&other)
                    )));
                }
            }
        }
    }

    /// `count` blocks of the copy here (`old`) from block `index`.
    fn copy(
        &mut self,
        old: Option<&std::fs::File>,
        (index, count): (u32, u32),
        block: u32,
        path: &[u8],
    ) {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; block as usize];
        for k in 0..u64::from(count) {
            // Failed already: the rest would only be read for nothing
            // (up to 2^32 blocks).
            if self.file.is_err() {
                break;
            }
            let at = (u64::from(index) + k) * u64::from(block);
            let n = match old.map(|o| o.read_at(&mut buf, at)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    self.file = Err(e.into());
                    0
                }
                None => 0,
            };
            if n < buf.len() && self.file.is_ok() {
                // A short read mid-file: the copy here changed.
                if k + 1 < u64::from(count) || n == 0 {
                    self.file = Err(Refusal::Fail(format!(
                        "{}: the copy here changed during a delta",
                        shown(path)
                    )));
                }
            }
            self.write(&buf[..n]);
        }
    }

    /// Whether what arrived is what was announced: its size, and a
    /// delta's result its SHA-256.
    fn check(&mut self, path: &[u8], size: u64, expected: Option<[u8; 32]>) -> Result<(), Refusal> {
        let written = self.written;
        if written != size {
            return Err(Refusal::Fail(format!(
                "{}: {written} bytes arrived, {size} announced",
                shown(path)
            )));
        }
        let got = self.hasher.take().map(ring::digest::Context::finish);
        if let Some(h) = expected
            && got.is_none_or(|g| h[..] != *g.as_ref())
        {
            return Err(Refusal::Fail(format!(
                "{}: the rebuilt file does not match (the copy here changed?)",
                shown(path)
            )));
        }
        Ok(())
    }
}

/// A received file at least this big starts its writeback at once.
const EARLY_WRITEBACK: u64 = 1 << 20;

/// The block sizes a delta may use.
const BLOCKS: std::ops::RangeInclusive<u32> = 1024..=(16 << 20);

/// Past these, staged files are committed without waiting for `Commit`
/// (fewer, bigger batches: fewer syncs).
const STAGE_BYTES: u64 = 64 << 20;

/// How many files a batch may hold: each holds a descriptor of its
/// directory until put in place, and two batches are open at once, so a
/// quarter of the descriptors this process may open, up to 1,024.
fn stage_files() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(soft / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 1024)
}

impl Receiver {
    /// The directory holding `path`'s last component, walked from ROOT
    /// without following any symlink (and created when `create`).
    fn parent<'p>(
        &self,
        path: &'p [u8],
        create: bool,
    ) -> Result<(Arc<OwnedFd>, &'p [u8]), Refusal> {
        let parts = proto::components(path).map_err(|e| Refusal::Fatal(format!("refused {e}")))?;
        let (last, dirs) = parts.split_last().expect("at least one component");
        if dirs.is_empty() {
            return Ok((self.root.clone(), last));
        }
        let dir_path = &path[..path.len() - last.len() - 1];
        if let Some((p, fd)) = &*self.last_dir.borrow()
            && p == dir_path
        {
            return Ok((fd.clone(), last));
        }
        let mut dir: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&*self.root, 0)?;
        for comp in dirs {
            dir = match rustix::fs::openat(&dir, *comp, DIR_FLAGS, Mode::empty()) {
                Ok(d) => d,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&dir, *comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(&dir, *comp, DIR_FLAGS, Mode::empty())?
                }
                Err(e) => {
                    let st = rustix::fs::statat(&dir, *comp, AtFlags::SYMLINK_NOFOLLOW);
                    if st.is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink) {
                        return Err(Refusal::Fatal(format!(
                            "refused a path through a symlink: {}",
                            shown(path)
                        )));
                    }
                    return Err(Refusal::Fail(format!(
                        "{}: {}",
                        shown(path),
                        io::Error::from(e)
                    )));
                }
            };
        }
        let dir = Arc::new(dir);
        *self.last_dir.borrow_mut() = Some((dir_path.to_vec(), dir.clone()));
        Ok((dir, last))
    }

    /// Forget the walked directory (a directory may move or go).
    fn forget_dirs(&self) {
        self.last_dir.borrow_mut().take();
    }

    /// Whether a new directory at `path` must wait for the staged files
    /// to be in place: one of them is at that path, or above it.
    fn conflicts(&self, path: &[u8]) -> bool {
        let in_way =
            |p: &[u8]| p == path || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'));
        self.staged.iter().any(|s| in_way(&s.path))
            || self.committer.inflight.iter().any(|p| in_way(p))
    }

    /// Set owner and group as sent, when running as root (before the
    /// mode: a change of owner clears set-user-ID bits).
    fn fchown(&self, fd: &impl std::os::fd::AsFd, uid: u32, gid: u32) -> Result<(), Refusal> {
        if self.owners {
            rustix::fs::fchown(
                fd,
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
            )?;
        }
        Ok(())
    }

    fn tmp_name() -> Vec<u8> {
        let mut r = [0u8; 8];
        rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty()).unwrap_or_default();
        let mut name = TMP_PREFIX.to_vec();
        for b in r {
            name.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        name
    }

    /// Make room for a new entry at `name`: a directory there is removed
    /// with all it holds (a file or link is simply replaced by rename);
    /// never on a reverse pass.
    fn clear_dir(dir: &OwnedFd, name: &[u8], reverse: bool) -> Result<(), Refusal> {
        if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            && FileType::from_raw_mode(st.st_mode) == FileType::Directory
        {
            if reverse {
                return refused_on_reverse(&format!("replace the directory {}", shown(name)), "");
            }
            remove_tree(dir, name)?;
        }
        Ok(())
    }

    /// Whether the policy lets `msg` through (a reverse pass refuses
    /// what would remove or reshape anything here).
    fn allowed(&self, msg: &Msg) -> Result<(), Refusal> {
        if let Some(p) = paths_of(msg)
            .into_iter()
            .find(|p| self.policy.exclude.is_excluded(p))
        {
            return Err(Refusal::Fatal(format!(
                "refused a {} message for {}: the job excludes it",
                name_of(msg),
                shown(p)
            )));
        }
        if !self.policy.reverse {
            return Ok(());
        }
        match msg {
            // A new name for a file here: one the backup never had (an
            // excluded secret) could get a public name. Files come back
            // whole instead.
            Msg::Link { path, to, .. } => refused_on_reverse(
                &format!("link {} to {}", shown(path), shown(to)),
                " (files come back whole)",
            ),
            Msg::Delete { path, .. } => refused_on_reverse(
                &format!("delete {}", shown(path)),
                " (nothing is deleted here)",
            ),
            Msg::Rename { from, to, .. } => refused_on_reverse(
                &format!("rename {} to {}", shown(from), shown(to)),
                " (nothing is deleted here)",
            ),
            // Owners and the root's mode are the primary's own: a
            // compromised backup could otherwise hand any file to any
            // user, or open the whole tree to everyone.
            Msg::Own { path, .. } => {
                refused_on_reverse(&format!("change the owner of {}", shown(path)), "")
            }
            Msg::Meta { path, .. } if path.is_empty() => {
                refused_on_reverse("change the mode of the root", "")
            }
            Msg::File { path, .. } | Msg::Delta { path, .. } => self.same_kind(path, Kind::File),
            Msg::MkDir { path, .. } => self.same_kind(path, Kind::Dir),
            Msg::Symlink { path, .. } => self.same_kind(path, Kind::Symlink),
            _ => Ok(()),
        }
    }

    /// On a reverse pass, refuse a new entry of `kind` at `path` where
    /// an entry of another kind is (the primary's tree is only added to
    /// or updated, never reshaped by the backup).
    fn same_kind(&self, path: &[u8], kind: Kind) -> Result<(), Refusal> {
        if !self.policy.reverse {
            return Ok(());
        }
        let (dir, name) = match self.parent(path, false) {
            Ok(x) => x,
            // Its directory is not there: a new entry.
            Err(Refusal::Fail(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let ft = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileType::from_raw_mode(st.st_mode),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let here = match ft {
            FileType::RegularFile => Some(Kind::File),
            FileType::Directory => Some(Kind::Dir),
            FileType::Symlink => Some(Kind::Symlink),
            _ => None,
        };
        if here == Some(kind) {
            return Ok(());
        }
        let what = |k: Option<Kind>| match k {
            Some(Kind::File) => "a file",
            Some(Kind::Dir) => "a directory",
            Some(Kind::Symlink) => "a symlink",
            None => "a special file",
        };
        refused_on_reverse(
            &format!("replace {} by {}", what(here), what(Some(kind))),
            &format!(": {}", shown(path)),
        )
    }

    /// On a reverse pass, mode `m` for an entry already here with mode
    /// `old`, without the group and other write bits it lacks: the
    /// backup may update the primary's files, not open them to others.
    fn no_new_writers(&self, old: Option<u32>, m: u32) -> u32 {
        match old {
            Some(old) if self.policy.reverse => m & !(0o022 & !old),
            _ => m,
        }
    }

    fn mkdir(&self, path: &[u8], m: u32, uid: u32, gid: u32) -> Result<(), Refusal> {
        let (dir, name) = self.parent(path, true)?;
        let mut m = m;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                m = self.no_new_writers(Some(st.st_mode), m);
            }
            Ok(_) => {
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
                rustix::fs::mkdirat(&dir, name, mode(m))?;
            }
            Err(_) => rustix::fs::mkdirat(&dir, name, mode(m))?,
        }
        let d = rustix::fs::openat(&dir, name, DIR_FLAGS, Mode::empty())?;
        self.fchown(&d, uid, gid)?;
        rustix::fs::fchmod(&d, mode(m))?;
        Ok(())
    }

    /// Open the regular file at `path` for reading, without following
    /// a symlink.
    fn open_existing(&self, path: &[u8]) -> Result<std::fs::File, Refusal> {
        let (dir, name) = self.parent(path, false)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let f = std::fs::File::from(fd);
        if !f.metadata()?.is_file() {
            return Err(Refusal::Fail(format!(
                "{}: not a regular file",
                shown(path)
            )));
        }
        Ok(f)
    }

    /// The SHA-256 of the regular file at `path`.
    fn hash(&self, path: &[u8]) -> Result<[u8; 32], Refusal> {
        let mut f = self.open_existing(path)?;
        Ok(crate::delta::sha256(&mut f)?)
    }

    /// The block signatures of the file at `path` (none if there is no
    /// such regular file).
    fn sums(&self, path: &[u8], block: u32) -> Result<Vec<(u32, [u8; 16])>, Refusal> {
        if !BLOCKS.contains(&block) {
            return Err(Refusal::Fatal(format!("refused a block size of {block}")));
        }
        match self.open_existing(path) {
            Ok(mut f) => Ok(crate::delta::signatures(&mut f, block)?),
            Err(Refusal::Fatal(e)) => Err(Refusal::Fatal(e)),
            Err(Refusal::Fail(_)) => Ok(Vec::new()),
        }
    }

    /// Receive a file until its end message: whole (`Data` frames, then
    /// `FileEnd`) or, with `basis`, as a delta against the copy here
    /// (`Copy` and `Data`, then `DeltaEnd` with the SHA-256 of the
    /// result). It goes to a temporary file renamed over `path` once
    /// complete and synced. On an error the remaining frames are still
    /// read (the stream stays in step) and the temporary file removed.
    fn file(
        &mut self,
        input: &mut impl Read,
        path: &[u8],
        size: u64,
        attrs: Attrs,
        basis: Option<u32>,
    ) -> Result<Staged, Refusal> {
        let tmp = Self::tmp_name();
        let mut inc = Incoming {
            file: self.create_tmp(path, &tmp),
            written: 0,
            hasher: basis.map(|_| ring::digest::Context::new(&ring::digest::SHA256)),
        };
        let old = match basis {
            Some(_) => match self.open_existing(path) {
                Ok(f) => Some(f),
                Err(Refusal::Fatal(e)) => return Err(Refusal::Fatal(e)),
                Err(e) => {
                    inc.file = Err(e);
                    None
                }
            },
            None => None,
        };
        let expected_hash = inc.body(input, &tmp, basis, old.as_ref(), path)?;
        let checked = inc.check(path, size, expected_hash);
        let (dir, f) = match inc.file {
            Ok(x) => x,
            Err(e) => {
                if let Ok((dir, _)) = self.parent(path, false) {
                    let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
                }
                return Err(e);
            }
        };
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        match checked.and_then(|()| self.seal(&dir, &f, name, attrs, inc.written)) {
            Ok(()) => {
                self.staged_bytes += inc.written;
                Ok(Staged {
                    id: 0,
                    dir,
                    tmp,
                    name: name.to_vec(),
                    path: path.to_vec(),
                })
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
                Err(e)
            }
        }
    }

    /// The temporary file `tmp` a file at `path` is received into, in
    /// the directory that will hold it.
    fn create_tmp(
        &self,
        path: &[u8],
        tmp: &[u8],
    ) -> Result<(Arc<OwnedFd>, std::fs::File), Refusal> {
        let (dir, _) = self.parent(path, true)?;
        let fd = rustix::fs::openat(
            &dir,
            tmp,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        Ok((dir, std::fs::File::from(fd)))
    }

    /// Give a received file (complete and checked) its length, owner,
    /// mode and time.
    fn seal(
        &self,
        dir: &OwnedFd,
        f: &std::fs::File,
        name: &[u8],
        attrs: Attrs,
        written: u64,
    ) -> Result<(), Refusal> {
        // Holes at the end are not written: the length makes them.
        f.set_len(written)?;
        self.fchown(f, attrs.uid, attrs.gid)?;
        let here = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| st.st_mode);
        let m = self.no_new_writers(here, attrs.mode);
        rustix::fs::fchmod(f, self.policy.mode(FileType::RegularFile, m))?;
        rustix::fs::futimens(f, &times(attrs.mtime))?;
        // A big file starts going to disk now, while the next data
        // arrives (on Linux this advice starts writeback of its dirty
        // pages): the commit's sync then finds little left to wait
        // for. Small files are left to that sync, which writes them
        // together (one submission each costs more than it saves).
        if written >= EARLY_WRITEBACK {
            let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
        }
        Ok(())
    }

    /// Hand the staged files to the committer (which puts them in
    /// place while the next ones arrive).
    fn hand_off(&mut self) {
        self.forget_dirs();
        if self.staged.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        self.committer.inflight = batch.iter().map(|s| s.path.clone()).collect();
        // The committer only stops when this side drops it.
        let _ = self.committer.jobs.send(Job::Place(batch));
    }

    /// Put every staged file in place and wait until it is done (and
    /// answered): what comes next sees them.
    fn commit(&mut self) -> Result<(), String> {
        self.hand_off();
        let (tx, rx) = mpsc::channel();
        let _ = self.committer.jobs.send(Job::Wait(tx));
        self.committer.inflight.clear();
        match rx.recv() {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err("the committer stopped".into()),
        }
    }

    fn symlink(&self, path: &[u8], target: &[u8], attrs: Attrs) -> Result<(), Refusal> {
        if target.is_empty() || target.contains(&0) {
            return Err(Refusal::Fatal(format!(
                "refused a bad link target for {}",
                shown(path)
            )));
        }
        let (dir, name) = self.parent(path, true)?;
        let tmp = Self::tmp_name();
        rustix::fs::symlinkat(target, &dir, &tmp)?;
        let r = (|| {
            if self.owners {
                rustix::fs::chownat(
                    &dir,
                    &tmp,
                    Some(rustix::process::Uid::from_raw(attrs.uid)),
                    Some(rustix::process::Gid::from_raw(attrs.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            let _ =
                rustix::fs::utimensat(&dir, &tmp, &times(attrs.mtime), AtFlags::SYMLINK_NOFOLLOW);
            Self::clear_dir(&dir, name, self.policy.reverse)?;
            Ok(rustix::fs::renameat(&dir, &tmp, &dir, name)?)
        })();
        if r.is_err() {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        }
        r
    }

    fn delete(&self, path: &[u8]) -> Result<(), Refusal> {
        let (dir, name) = match self.parent(path, false) {
            Ok(x) => x,
            // Its directory is gone already: so is it.
            Err(Refusal::Fail(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                remove_tree(&dir, name)
            }
            Ok(_) => Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?),
        }
    }

    /// Make `path` another name of the regular file at `to`: linked
    /// under a temporary name, then renamed over `path` (a reader sees
    /// the old entry or the link). Neither is followed if a symlink.
    fn link(&self, path: &[u8], to: &[u8]) -> Result<(), Refusal> {
        // Both walked first: a hostile path ends the session whatever
        // the other one is.
        let (tdir, tname) = self.parent(to, false)?;
        let (dir, name) = self.parent(path, true)?;
        let target = rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(target.st_mode) != FileType::RegularFile {
            return Err(Refusal::Fail(format!(
                "{}: not a regular file to link to",
                shown(to)
            )));
        }
        if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            && (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino)
        {
            // Linked already (and a rename between two names of one
            // file would do nothing, leaving the temporary name).
            return Ok(());
        }
        let tmp = Self::tmp_name();
        rustix::fs::linkat(&tdir, tname, &dir, &tmp, AtFlags::empty())?;
        let r = Self::clear_dir(&dir, name, self.policy.reverse)
            .and_then(|()| Ok(rustix::fs::renameat(&dir, &tmp, &dir, name)?));
        // Gone once renamed; left when anything failed.
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        r
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<(), Refusal> {
        // Refused before anything is touched: clearing the target would
        // remove the source with it (or the source would go into itself).
        let inside =
            |a: &[u8], b: &[u8]| a.starts_with(b) && a.get(b.len()).is_none_or(|c| *c == b'/');
        if inside(to, from) || inside(from, to) {
            return Err(Refusal::Fail(format!(
                "{}: cannot be renamed to {}",
                shown(from),
                shown(to)
            )));
        }
        let (fdir, fname) = self.parent(from, false)?;
        // Looked for before the target's directories are made: a rename
        // that fails leaves no directory behind that the sender does not
        // know of.
        if rustix::fs::statat(&fdir, fname, AtFlags::SYMLINK_NOFOLLOW).is_err() {
            return Err(Refusal::Fail(format!("{}: nothing to rename", shown(from))));
        }
        let (tdir, tname) = self.parent(to, true)?;
        Self::clear_dir(&tdir, tname, self.policy.reverse)?;
        rustix::fs::renameat(&fdir, fname, &tdir, tname)?;
        Ok(())
    }

    /// The entry at `path` itself (the root for an empty path), never
    /// what a symlink there points to: an `O_PATH | O_NOFOLLOW`
    /// descriptor and its type. Whatever is swapped in at that name
    /// afterwards, the descriptor still names the entry opened.
    fn entry(&self, path: &[u8]) -> Result<(OwnedFd, FileType), Refusal> {
        let fd = if path.is_empty() {
            rustix::fs::openat(
                &*self.root,
                ".",
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        } else {
            let (dir, name) = self.parent(path, false)?;
            rustix::fs::openat(
                &dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        };
        let st = rustix::fs::fstat(&fd)?;
        Ok((fd, FileType::from_raw_mode(st.st_mode)))
    }

    /// Set an owner and group: the entry's own (a symlink's, not its
    /// target's), then its mode again (a change of owner clears
    /// set-user-ID bits).
    fn own(&self, path: &[u8], uid: u32, gid: u32, m: u32) -> Result<(), Refusal> {
        let (fd, ft) = self.entry(path)?;
        rustix::fs::chownat(
            &fd,
            "",
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if ft != FileType::Symlink {
            chmod_entry(&fd, self.policy.mode(ft, m))?;
        }
        Ok(())
    }

    /// Set a mode (not on a symlink: Linux has no modes of links) and a
    /// modification time.
    fn meta(&self, path: &[u8], m: u32, mtime: i64) -> Result<(), Refusal> {
        let (fd, ft) = self.entry(path)?;
        if ft == FileType::Symlink {
            // The link itself, by a call that never follows it.
            let (dir, name) = self.parent(path, false)?;
            rustix::fs::utimensat(&dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
        } else {
            let here = rustix::fs::fstat(&fd)?.st_mode;
            let m = self.no_new_writers(Some(here), m);
            chmod_entry(&fd, self.policy.mode(ft, m))?;
            rustix::fs::utimensat(
                rustix::fs::CWD,
                proc_path(&fd),
                &times(mtime),
                AtFlags::empty(),
            )?;
        }
        Ok(())
    }

    /// ROOT itself (an empty path), then every entry under it, depth
    /// first; stale temporary files are removed on the way.
    fn list(&self, out: &mut impl Write) -> Result<(), ProtoError> {
        let root = rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())
            .map_err(io::Error::from)?;
        proto::write(out, &Msg::Entry(root_entry(&root)?))?;
        walk(&root, &mut Vec::new(), &mut |e, _| {
            if self.policy.exclude.is_excluded(&e.path) {
                return Ok(());
            }
            proto::write(out, &Msg::Entry(e))
        })?;
        proto::write(out, &Msg::ListEnd)
    }
}

/// `/proc/self/fd/N` for a descriptor: the path that names its very
/// inode, whatever its name now points to.
fn proc_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// chmod the entry an `O_PATH` descriptor holds. `fchmod` refuses such
/// descriptors and `fchmodat2(AT_EMPTY_PATH)` needs Linux 6.6, so through
/// `/proc/self/fd/N`, which names that very inode: a symlink swapped in
/// at its name since cannot redirect the change.
fn chmod_entry(fd: &OwnedFd, m: Mode) -> Result<(), Refusal> {
    match rustix::fs::chmod(proc_path(fd), m) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => Err(Refusal::Fail(
            "cannot change a mode: /proc is not mounted here (the receiver needs it)".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whether `d` holds only zeros (checked a page at a time: a whole
/// chunk is scanned only when it is a hole).
fn zeros(d: &[u8]) -> bool {
    d.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// The directory `dir` itself, as the root of a tree: an empty path.
/// Its mode, owner and times are replicated like any entry's.
pub(crate) fn root_entry(dir: &OwnedFd) -> io::Result<Entry> {
    let st = rustix::fs::fstat(dir)?;
    Ok(Entry {
        path: Vec::new(),
        kind: Kind::Dir,
        size: 0,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: proto::nanos(st.st_mtime, st.st_mtime_nsec as i64),
        target: Vec::new(),
    })
}

/// A file's identity: device and inode numbers.
pub(crate) type Inode = (u64, u64);

/// Directories down to this depth stay open during a walk; deeper ones
/// are closed when the walk goes down, and opened again (from the
/// deepest one open, never following a symlink) if it comes back up to
/// entries left in them: a deep chain would otherwise hold a descriptor
/// per level.
const OPEN_LEVELS: usize = 64;

/// One directory of a walk in progress.
struct Level {
    /// Open, or closed to save descriptors (see `OPEN_LEVELS`).
    fd: Option<OwnedFd>,
    /// Its name in its parent.
    name: Vec<u8>,
    /// Its entries still to visit, the next last.
    todo: Vec<Vec<u8>>,
}

/// The directories of a walk, the first at its start: an explicit stack
/// (a recursion overflowed the job thread's stack on a deep tree, and
/// aborted the whole daemon).
struct Levels(Vec<Level>);

impl Levels {
    fn new(fd: OwnedFd, name: &[u8]) -> io::Result<Self> {
        let todo = names(&fd)?;
        Ok(Levels(vec![Level {
            fd: Some(fd),
            name: name.to_vec(),
            todo,
        }]))
    }

    /// The deepest directory, opened again if it was closed.
    fn top(&mut self) -> Result<&OwnedFd, Errno> {
        let n = self.0.len() - 1;
        if self.0[n].fd.is_none() {
            let open = self
                .0
                .iter()
                .rposition(|l| l.fd.is_some())
                .expect("the first directory stays open");
            let mut fd: Option<OwnedFd> = None;
            for l in &self.0[open + 1..] {
                let from = fd
                    .as_ref()
                    .unwrap_or_else(|| self.0[open].fd.as_ref().expect("open"));
                fd = Some(rustix::fs::openat(from, &l.name, DIR_FLAGS, Mode::empty())?);
            }
            self.0[n].fd = fd;
        }
        Ok(self.0[n].fd.as_ref().expect("opened"))
    }

    /// Go down into `sub`, named `name` in the deepest directory; an
    /// error past `MAX_DEPTH` levels, naming `path`.
    fn push(&mut self, name: Vec<u8>, sub: OwnedFd, path: &[u8]) -> io::Result<()> {
        if self.0.len() >= proto::MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{}…: a tree more than {} directories deep (not replicated: exclude it, or make it shallower)",
                shown(&path[..path.len().min(64)]),
                proto::MAX_DEPTH
            )));
        }
        let todo = names(&sub)?;
        if self.0.len() >= OPEN_LEVELS
            && let Some(l) = self.0.last_mut()
        {
            l.fd = None;
        }
        self.0.push(Level {
            fd: Some(sub),
            name,
            todo,
        });
        Ok(())
    }
}

/// The names in `dir`, sorted, the first last.
fn names(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// Call `f` for every entry under `dir` (paths relative to the walk's
/// start), never following a symlink; with its inode when it is a file
/// of more than one name (hard links). An error past `MAX_DEPTH`.
pub(crate) fn walk(
    dir: &OwnedFd,
    prefix: &mut Vec<u8>,
    f: &mut dyn FnMut(Entry, Option<Inode>) -> Result<(), ProtoError>,
) -> Result<(), ProtoError> {
    let start = prefix.len();
    let dup = rustix::io::fcntl_dupfd_cloexec(dir, 0).map_err(io::Error::from)?;
    let mut levels = Levels::new(dup, b"")?;
    // The length of each level's own path in `prefix`.
    let mut lens = vec![start];
    while let Some(level) = levels.0.last_mut() {
        let Some(name) = level.todo.pop() else {
            levels.0.pop();
            lens.pop();
            continue;
        };
        prefix.truncate(*lens.last().expect("one per level"));
        let Ok(dir) = levels.top() else {
            // It went away meanwhile: so did what is left in it.
            levels.0.pop();
            lens.pop();
            continue;
        };
        if name.starts_with(TMP_PREFIX) {
            let _ = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
            continue;
        }
        let Ok(st) = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(&name);
        let mtime = proto::nanos(st.st_mtime, st.st_mtime_nsec as i64);
        let m = st.st_mode & 0o7777;
        let (uid, gid) = (st.st_uid, st.st_gid);
        let entry = |kind, size, target| Entry {
            path: prefix.clone(),
            kind,
            size,
            mode: m,
            uid,
            gid,
            mtime,
            target,
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => f(
                entry(Kind::File, st.st_size as u64, Vec::new()),
                (st.st_nlink > 1).then_some((st.st_dev, st.st_ino)),
            )?,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, &name, Vec::new())
                    .map(std::ffi::CString::into_bytes)
                    .unwrap_or_default();
                f(entry(Kind::Symlink, 0, target), None)?;
            }
            FileType::Directory => {
                let sub = rustix::fs::openat(dir, &name, DIR_FLAGS, Mode::empty());
                f(entry(Kind::Dir, 0, Vec::new()), None)?;
                if let Ok(sub) = sub {
                    levels.push(name, sub, prefix)?;
                    lens.push(prefix.len());
                }
            }
            // Sockets, fifos, devices: not replicated.
            _ => {}
        }
    }
    prefix.truncate(start);
    Ok(())
}

/// Remove `name` in `dir` and everything below it, never following a
/// symlink (children first, by an explicit stack: see `Levels`).
fn remove_tree(dir: &OwnedFd, name: &[u8]) -> Result<(), Refusal> {
    let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
    let mut levels = Levels::new(sub, name)?;
    while let Some(level) = levels.0.last_mut() {
        if let Some(n) = level.todo.pop() {
            let d = levels.top()?;
            match rustix::fs::statat(d, &n, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    let sub = rustix::fs::openat(d, &n, DIR_FLAGS, Mode::empty())?;
                    levels.push(n, sub, name)?;
                }
                Ok(_) => rustix::fs::unlinkat(d, &n, AtFlags::empty())?,
                Err(_) => {}
            }
            continue;
        }
        let done = levels.0.pop().expect("a level");
        drop(done.fd);
        if levels.0.is_empty() {
            rustix::fs::unlinkat(dir, &done.name, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(levels.top()?, &done.name, AtFlags::REMOVEDIR)?;
        }
    }
    Ok(())
}

/// The paths a message names in the tree.
fn paths_of(m: &Msg) -> Vec<&[u8]> {
    match m {
        Msg::MkDir { path, .. }
        | Msg::File { path, .. }
        | Msg::Delta { path, .. }
        | Msg::Symlink { path, .. }
        | Msg::Delete { path, .. }
        | Msg::Meta { path, .. }
        | Msg::Own { path, .. }
        | Msg::Hash { path, .. }
        | Msg::Sums { path, .. } => vec![path],
        Msg::Link { path, to, .. } => vec![path, to],
        Msg::Rename { from, to, .. } => vec![from, to],
        _ => Vec::new(),
    }
}

fn name_of(m: &Msg) -> &'static str {
    match m {
        Msg::Hello { .. } => "hello",
        Msg::Welcome { .. } => "welcome",
        Msg::List => "list",
        Msg::Entry(_) => "entry",
        Msg::ListEnd => "list end",
        Msg::MkDir { .. } => "mkdir",
        Msg::File { .. } => "file",
        Msg::Data(_) => "data",
        Msg::FileEnd { .. } => "file end",
        Msg::Symlink { .. } => "symlink",
        Msg::Delete { .. } => "delete",
        Msg::Rename { .. } => "rename",
        Msg::Meta { .. } => "meta",
        Msg::Ack { .. } => "ack",
        Msg::Fail { .. } => "fail",
        Msg::Fatal { .. } => "fatal",
        Msg::Sums { .. } => "sums",
        Msg::SumsReply { .. } => "sums reply",
        Msg::Delta { .. } => "delta",
        Msg::Copy { .. } => "copy",
        Msg::DeltaEnd { .. } => "delta end",
        Msg::Commit => "commit",
        Msg::Own { .. } => "own",
        Msg::Hash { .. } => "hash",
        Msg::HashReply { .. } => "hash reply",
        Msg::Link { .. } => "link",
    }
}

/// Serve one session on `input`/`output` inside `root` until the sender
/// closes it. `Err` says why the session was ended (also sent as
/// `Fatal`).
pub fn serve(
    root: &Path,
    policy: Policy,
    mut input: impl Read,
    mut output: impl Write + Send,
) -> Result<(), String> {
    let root_fd =
        match rustix::fs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                return fatal(
                    &Mutex::new(output),
                    format!("cannot open {}: {}", root.display(), io::Error::from(e)),
                );
            }
        };
    match proto::read(&mut input) {
        Ok(Msg::Hello { version, .. }) if version == VERSION => {}
        Ok(Msg::Hello { version, .. }) => {
            return fatal(
                &Mutex::new(output),
                format!(
                    "protocol version {version} is not spoken here (this vigie speaks {VERSION}): upgrade the older side"
                ),
            );
        }
        Ok(_) | Err(ProtoError::Malformed(_)) => {
            return fatal(
                &Mutex::new(output),
                "this is not a vigie sync sender".into(),
            );
        }
        Err(e) => return Err(e.to_string()),
    }
    let owners = rustix::process::geteuid().is_root();
    proto::write(
        &mut output,
        &Msg::Welcome {
            version: VERSION,
            // A reverse sender sends no owners (refused): new entries
            // still get theirs, as sent.
            owners: owners && !policy.reverse,
            setuid: policy.keeps_setuid(),
        },
    )
    .map_err(|e| e.to_string())?;
    output.flush().map_err(|e| e.to_string())?;
    let root = Arc::new(root_fd);
    let out = Mutex::new(output);
    std::thread::scope(|scope| {
        // One batch being put in place while the next one arrives.
        let (jobs, todo) = mpsc::sync_channel(0);
        let (root2, out2, policy2) = (root.clone(), &out, policy.clone());
        scope.spawn(move || committer(&root2, &policy2, &todo, out2));
        let mut rx = Receiver {
            root,
            policy,
            committer: Committer {
                jobs,
                inflight: Vec::new(),
            },
            owners,
            staged: Vec::new(),
            staged_bytes: 0,
            stage_files: stage_files(),
            last_dir: RefCell::new(None),
        };
        let r = session(&mut rx, &mut input, &out);
        if r.is_ok() {
            // What arrived whole is put in place.
            rx.commit()?;
        }
        r
    })
}

/// What a reverse pass refuses to do (`act`), and what follows
/// (`then`: why, or the path): the session ends.
fn refused_on_reverse(act: &str, then: &str) -> Result<(), Refusal> {
    Err(Refusal::Fatal(format!(
        "refused to {act} on a reverse pass{then}"
    )))
}

/// Tell the sender why the session ends, and end it.
fn fatal(out: &Mutex<impl Write>, message: String) -> Result<(), String> {
    let _ = reply(
        out,
        &[Msg::Fatal {
            message: message.clone(),
        }],
    );
    Err(message)
}

/// Carry out the sender's messages until it closes the session.
fn session(
    rx: &mut Receiver,
    input: &mut impl Read,
    out: &Mutex<impl Write>,
) -> Result<(), String> {
    loop {
        let msg = match proto::read(input) {
            Ok(m) => m,
            Err(ProtoError::Closed) => return Ok(()),
            Err(e) => return fatal(out, e.to_string()),
        };
        // Files are staged; anything else first puts them in place, so
        // that every message sees the ones before it done (a new
        // directory needs that only where a staged file is in its way).
        match &msg {
            Msg::File { .. } | Msg::Delta { .. } => {
                if rx.staged.len() >= rx.stage_files || rx.staged_bytes >= STAGE_BYTES {
                    rx.hand_off();
                }
            }
            Msg::MkDir { path, .. } if !rx.conflicts(path) => {}
            _ => rx.commit()?,
        }
        if let Err(Refusal::Fatal(message) | Refusal::Fail(message)) = rx.allowed(&msg) {
            return fatal(out, message);
        }
        let Some((id, result)) = rx.carry_out(msg, input, out)? else {
            continue;
        };
        let answer = match result {
            Ok(()) => Msg::Ack { id },
            Err(Refusal::Fail(message)) => Msg::Fail { id, message },
            Err(Refusal::Fatal(message)) => return fatal(out, message),
        };
        reply(out, &[answer])?;
    }
}

/// A request's id, and how it went.
type Outcome = (u64, Result<(), Refusal>);

impl Receiver {
    /// Do what one message asks: the request's id and how it went, to be
    /// answered by `Ack` or `Fail` (or end the session); `None` when
    /// answered already (a list, hashes, signatures) or not at all (a
    /// staged file, answered at its commit).
    fn carry_out(
        &mut self,
        msg: Msg,
        input: &mut impl Read,
        out: &Mutex<impl Write>,
    ) -> Result<Option<Outcome>, String> {
        let done = match msg {
            Msg::Commit => return Ok(None),
            Msg::List => {
                let mut w = out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.list(&mut *w).map_err(|e| e.to_string())?;
                w.flush().map_err(|e| e.to_string())?;
                return Ok(None);
            }
            Msg::File { .. } | Msg::Delta { .. } => return Ok(self.stage(input, msg)),
            Msg::Hash { id, path } => match self.hash(&path) {
                Ok(sha256) => return reply(out, &[Msg::HashReply { id, sha256 }]).map(|()| None),
                Err(e) => (id, Err(e)),
            },
            Msg::Sums { id, path, block } => match self.sums(&path, block) {
                Ok(sums) => return reply(out, &sums_replies(id, &sums)).map(|()| None),
                Err(e) => (id, Err(e)),
            },
            Msg::MkDir {
                id,
                path,
                mode,
                uid,
                gid,
            } => (id, self.mkdir(&path, mode, uid, gid)),
            Msg::Symlink {
                id,
                path,
                target,
                uid,
                gid,
                mtime,
            } => (
                id,
                self.symlink(&path, &target, Attrs::new(0, uid, gid, mtime)),
            ),
            Msg::Delete { id, path } => (id, self.delete(&path)),
            Msg::Link { id, path, to } => (id, self.link(&path, &to)),
            Msg::Rename { id, from, to } => (id, self.rename(&from, &to)),
            Msg::Own {
                id,
                path,
                uid,
                gid,
                mode,
            } => (id, self.own(&path, uid, gid, mode)),
            Msg::Meta {
                id,
                path,
                mode,
                mtime,
            } => (id, self.meta(&path, mode, mtime)),
            other => {
                return fatal(
                    out,
                    format!("refused an out-of-place message ({})", name_of(&other)),
                )
                .map(|()| None);
            }
        };
        Ok(Some(done))
    }

    /// Receive a `File` or a `Delta` and stage it: `None` once staged
    /// (answered at its commit), its id and why not otherwise.
    fn stage(&mut self, input: &mut impl Read, msg: Msg) -> Option<Outcome> {
        let (id, e, basis) = msg.announced().ok()?;
        let attrs = Attrs::new(e.mode, e.uid, e.gid, e.mtime);
        if let Some(block) = basis
            && !BLOCKS.contains(&block)
        {
            let refused = format!("refused a block size of {block}");
            return Some((id, Err(Refusal::Fatal(refused))));
        }
        match self.file(input, &e.path, e.size, attrs, basis) {
            Ok(st) => {
                self.staged.push(Staged { id, ..st });
                None
            }
            Err(e) => Some((id, Err(e))),
        }
    }
}

/// The signatures of a file in `SumsReply` frames: a big file's do not
/// fit one.
fn sums_replies(id: u64, sums: &[(u32, [u8; 16])]) -> Vec<Msg> {
    if sums.is_empty() {
        return vec![Msg::SumsReply {
            id,
            sums: Vec::new(),
            more: false,
        }];
    }
    let n = sums.len().div_ceil(SUMS_PER_FRAME);
    sums.chunks(SUMS_PER_FRAME)
        .enumerate()
        .map(|(i, part)| Msg::SumsReply {
            id,
            sums: part.to_vec(),
            more: i + 1 < n,
        })
        .collect()
}
