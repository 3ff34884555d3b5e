//! Restore: a snapshot (or a subtree of it) written into a directory
//! with modes, owners (as root), mtimes, symlinks and hard links.
//!
//! The restorer is ours, not rustic_core's: rustic's plans every pack
//! of the snapshot at once and held about 1 GB for 2 GiB restored,
//! where this one writes file after file, blob after blob, and holds
//! one blob (at most 8 MiB) plus the engine's 32 MiB blob cache. It also
//! never follows a link: every directory is opened from its parent's
//! descriptor with `O_NOFOLLOW`, every file created with `O_EXCL |
//! O_NOFOLLOW`, every name checked to be one component (no `/`, no
//! `..`), so a snapshot crafted to hold a link where a directory goes
//! cannot make the restore write outside the target. Errors are
//! returned, never panics: the work runs on the caller's thread.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use rustic_core::{
    BlobId, IndexedFull, Repository,
    repofile::{BlobType, Metadata, Node, NodeType, SnapshotFile},
};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::retention::SnapshotFilter;
use crate::{Error, Repo, RepoSpec};

/// What to restore, and where.
#[derive(Clone, Debug)]
pub struct RestoreRequest<'a> {
    /// Which snapshots may be restored (a job's own).
    pub filter: &'a SnapshotFilter,
    /// A snapshot id or a prefix of it; `None`: the filter's latest.
    pub snapshot: Option<&'a str>,
    /// Only this file or directory of the snapshot (as backed up:
    /// `/var/lib/ghost/content`); its contents go into `to`.
    pub path: Option<&'a Path>,
    /// The target directory, made if missing.
    pub to: &'a Path,
    /// Restore into a directory that holds files, replacing files of
    /// the same names (never following a link there).
    pub overwrite: bool,
}

/// Told as a restore goes, from the restoring thread.
pub trait RestoreProgress {
    /// The bytes of file content to restore, when known.
    fn start(&self, _total_bytes: Option<u64>) {}
    /// Cumulative counts: files written and their bytes.
    fn restored(&self, _files: u64, _bytes: u64) {}
}

/// No progress to show.
impl RestoreProgress for () {}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The id of the snapshot restored (64 hex digits).
    pub snapshot: String,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Names made as hard links to a file restored before.
    pub hard_links: u64,
    /// Fifos and, as root, devices; sockets are not restored.
    pub others: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    pub duration: Duration,
}

/// Which files of a tree a restore writes (a drill's sample); the
/// directories leading to them are always made.
pub(crate) type Select<'a> = &'a dyn Fn(&Path) -> bool;

/// A blob that could not be read while restoring `path` (a damaged
/// pack): a drill reports it and goes on; a restore stops.
pub(crate) struct Unreadable {
    pub path: PathBuf,
    pub message: String,
}

/// Go's `os.FileMode` (restic's format) as Unix permission bits.
pub(crate) fn unix_mode(go: u32) -> u32 {
    let mut mode = go & 0o777;
    for (bit, unix) in [(1 << 23, 0o4000), (1 << 22, 0o2000), (1 << 20, 0o1000)] {
        if go & bit != 0 {
            mode |= unix;
        }
    }
    mode
}

/// Why a name of a snapshot may not be written, if it may not.
pub(crate) fn unsafe_name(name: &OsStr) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        Some("an empty name")
    } else if bytes == b"." || bytes == b".." {
        Some("a name that leaves its directory")
    } else if bytes.contains(&b'/') {
        Some("a name holding a `/`")
    } else if bytes.contains(&0) {
        Some("a name holding a NUL byte")
    } else {
        None
    }
}

/// A snapshot time as the kernel takes it; `None` before 1970 (the
/// placeholder restic gives the directories above a backed up path).
pub(crate) fn timespec(meta: &Metadata) -> Option<Timespec> {
    let t = meta.mtime?;
    let secs = t.as_second();
    (secs >= 0).then(|| Timespec {
        tv_sec: secs,
        tv_nsec: t.subsec_nanosecond().into(),
    })
}

/// A directory being filled: its descriptor, its entries, the next one.
struct Frame {
    fd: OwnedFd,
    rel: PathBuf,
    nodes: Vec<Node>,
    next: usize,
    /// Its own metadata, set once its entries are written (writing them
    /// changes its mtime); `None` for the target itself.
    meta: Option<Metadata>,
}

/// One restore's state.
pub(crate) struct Restorer<'a, S: IndexedFull> {
    pub repo: &'a Repository<S>,
    pub spec: &'a RepoSpec,
    pub snapshot: String,
    pub to: PathBuf,
    pub overwrite: bool,
    pub select: Option<Select<'a>>,
    /// Go on past an unreadable blob (drills), listing it here.
    pub tolerate: bool,
    pub unreadable: Vec<Unreadable>,
    pub summary: RestoreSummary,
    progress: &'a dyn RestoreProgress,
    /// Hard links: (device, inode) of the snapshot → the first name.
    links: HashMap<(u64, u64), PathBuf>,
    root: bool,
}

impl<'a, S: IndexedFull> Restorer<'a, S> {
    pub fn new(
        repo: &'a Repository<S>,
        spec: &'a RepoSpec,
        snapshot: &SnapshotFile,
        to: &Path,
        progress: &'a dyn RestoreProgress,
    ) -> Self {
        Restorer {
            repo,
            spec,
            snapshot: snapshot.id.to_hex().to_string(),
            to: to.to_owned(),
            overwrite: false,
            select: None,
            tolerate: false,
            unreadable: Vec::new(),
            summary: RestoreSummary {
                snapshot: snapshot.id.to_hex().to_string(),
                ..RestoreSummary::default()
            },
            progress,
            links: HashMap::new(),
            root: rustix::process::geteuid().is_root(),
        }
    }

    fn io(&self, rel: &Path, source: io::Error) -> Error {
        Error::Restore {
            job: self.spec.job.clone(),
            path: self.to.join(rel),
            source,
        }
    }

    fn errno(&self, rel: &Path) -> impl Fn(Errno) -> Error + '_ {
        let rel = rel.to_owned();
        move |e| self.io(&rel, e.into())
    }

    fn unsafe_entry(&self, dir: &Path, name: &OsStr, why: &'static str) -> Error {
        Error::UnsafeEntry {
            job: self.spec.job.clone(),
            snapshot: self.snapshot.clone(),
            dir: self.to.join(dir),
            name: name.to_string_lossy().into_owned(),
            why,
        }
    }

    /// Opens (making it first if missing) the target directory, and
    /// refuses one that holds entries unless asked to overwrite.
    pub fn open_target(&self) -> Result<OwnedFd, Error> {
        let to = &self.to;
        fs::create_dir_all(to).map_err(|e| self.io(Path::new(""), e))?;
        let fd = rustix::fs::open(
            to,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.errno(Path::new("")))?;
        if !self.overwrite {
            let mut entries = fs::read_dir(to).map_err(|e| self.io(Path::new(""), e))?;
            if entries.next().is_some() {
                return Err(Error::TargetNotEmpty {
                    job: self.spec.job.clone(),
                    path: to.clone(),
                });
            }
        }
        Ok(fd)
    }

    /// Writes `nodes` (a tree's entries) into `target`, depth first,
    /// with one open descriptor per level.
    pub fn run(&mut self, target: OwnedFd, nodes: Vec<Node>) -> Result<(), Error> {
        let mut stack = vec![Frame {
            fd: target,
            rel: PathBuf::new(),
            nodes,
            next: 0,
            meta: None,
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(node) = frame.nodes.get(frame.next).cloned() else {
                let Some(done) = stack.pop() else { break };
                if let Some(meta) = &done.meta {
                    self.set_meta(&done.fd, &done.rel, meta)?;
                }
                continue;
            };
            frame.next += 1;
            let name = node.name().into_owned();
            if let Some(why) = unsafe_name(&name) {
                return Err(self.unsafe_entry(&frame.rel, &name, why));
            }
            let rel = frame.rel.join(&name);
            let dir = frame.fd.try_clone().map_err(|e| self.io(&frame.rel, e))?;
            if node.is_dir() {
                let fd = self.dir(&dir, &frame.rel, &name)?;
                let subtree = node
                    .subtree
                    .ok_or_else(|| self.unsafe_entry(&rel, &name, "a directory without a tree"))?;
                let tree = match self.repo.get_tree(&subtree) {
                    Ok(tree) => tree,
                    Err(e) => {
                        let message = unreadable(self.repo, "tree", &subtree, &e);
                        if !self.tolerate {
                            return Err(self.engine_error(&rel, &message));
                        }
                        self.unreadable.push(Unreadable { path: rel, message });
                        continue;
                    }
                };
                self.summary.dirs += 1;
                stack.push(Frame {
                    fd,
                    rel,
                    nodes: tree.nodes,
                    next: 0,
                    meta: Some(node.meta),
                });
            } else if self.select.is_none_or(|select| select(&rel)) {
                self.entry(&dir, &rel, &name, &node)?;
            }
        }
        Ok(())
    }

    fn engine_error(&self, rel: &Path, message: &str) -> Error {
        self.spec.failed(
            "restore",
            format!("snapshot {}, {}: {message}", self.snapshot, rel.display()),
        )
    }

    /// Makes (or, overwriting, reuses) directory `name` and opens it
    /// without following a link.
    fn dir(&self, parent: &OwnedFd, prel: &Path, name: &OsStr) -> Result<OwnedFd, Error> {
        let rel = prel.join(name);
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(self.io(&rel, e.into())),
        }
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => {
                self.unsafe_entry(prel, name, "its place is taken by a link or a file")
            }
            e => self.io(&rel, e.into()),
        })
    }

    /// Writes a file, a symlink, a hard link or a special file.
    fn entry(&mut self, dir: &OwnedFd, rel: &Path, name: &OsStr, node: &Node) -> Result<(), Error> {
        let meta = &node.meta;
        if node.is_file() && meta.links > 1 {
            let key = (meta.device_id, meta.inode);
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                self.replace(dir, rel, name, |dir| {
                    rustix::fs::linkat(&self.target_fd()?, &first, dir, name, AtFlags::empty())
                        .map_err(io::Error::from)
                })?;
                self.summary.hard_links += 1;
                return Ok(());
            }
            self.links.insert(key, rel.to_owned());
        }
        match &node.node_type {
            NodeType::File => self.file(dir, rel, name, node),
            NodeType::Symlink { .. } => {
                let target = node.node_type.to_link();
                self.replace(dir, rel, name, |dir| {
                    rustix::fs::symlinkat(target, dir, name).map_err(io::Error::from)
                })?;
                self.owner_and_times_at(dir, rel, name, meta, None)?;
                self.summary.symlinks += 1;
                Ok(())
            }
            NodeType::Fifo => self.special(dir, rel, name, node, rustix::fs::FileType::Fifo, 0),
            NodeType::Dev { device } if self.root => self.special(
                dir,
                rel,
                name,
                node,
                rustix::fs::FileType::BlockDevice,
                *device,
            ),
            NodeType::Chardev { device } if self.root => self.special(
                dir,
                rel,
                name,
                node,
                rustix::fs::FileType::CharacterDevice,
                *device,
            ),
            // Sockets mean nothing restored; devices need root.
            _ => Ok(()),
        }
    }

    fn target_fd(&self) -> io::Result<OwnedFd> {
        rustix::fs::open(
            &self.to,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    /// Runs `make` for `name`; overwriting, an entry already there (not
    /// a directory) is removed first and `make` runs again.
    fn replace(
        &self,
        dir: &OwnedFd,
        rel: &Path,
        name: &OsStr,
        make: impl Fn(&OwnedFd) -> io::Result<()>,
    ) -> Result<(), Error> {
        match make(dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.overwrite => {
                rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(self.errno(rel))?;
                make(dir).map_err(|e| self.io(rel, e))
            }
            other => other.map_err(|e| self.io(rel, e)),
        }
    }

    fn special(
        &mut self,
        dir: &OwnedFd,
        rel: &Path,
        name: &OsStr,
        node: &Node,
        kind: rustix::fs::FileType,
        device: u64,
    ) -> Result<(), Error> {
        self.replace(dir, rel, name, |dir| {
            rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), device)
                .map_err(io::Error::from)
        })?;
        self.owner_and_times_at(dir, rel, name, &node.meta, node.meta.mode)?;
        self.summary.others += 1;
        Ok(())
    }

    /// A regular file, blob after blob, written under a temporary name
    /// and renamed when whole: a restore killed or failing midway leaves
    /// no half-written file under a name of the snapshot (only a
    /// `.vigie-restore-*`, removed on an error).
    fn file(&mut self, dir: &OwnedFd, rel: &Path, name: &OsStr, node: &Node) -> Result<(), Error> {
        let (temporary, fd) = self.temporary(dir, rel)?;
        let written = self.write_file(fd, rel, node);
        let renamed = written.and_then(|()| {
            // Into a target that was empty, a name already there is a
            // name the snapshot gives twice: never replace it.
            let flags = if self.overwrite {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            };
            rustix::fs::renameat_with(dir, &temporary, dir, name, flags).map_err(|e| match e {
                Errno::EXIST => self.unsafe_entry(
                    rel.parent().unwrap_or(Path::new("")),
                    name,
                    "a name the snapshot holds twice",
                ),
                Errno::ISDIR | Errno::NOTEMPTY => self.unsafe_entry(
                    rel.parent().unwrap_or(Path::new("")),
                    name,
                    "a directory is in its place",
                ),
                e => self.io(rel, e.into()),
            })
        });
        if let Err(e) = renamed {
            let _ = rustix::fs::unlinkat(dir, &temporary, AtFlags::empty());
            return Err(e);
        }
        self.summary.files += 1;
        self.progress
            .restored(self.summary.files, self.summary.bytes);
        Ok(())
    }

    /// A new file of an unguessable name in `dir`, open for writing.
    fn temporary(&self, dir: &OwnedFd, rel: &Path) -> Result<(String, OwnedFd), Error> {
        loop {
            let mut random = [0u8; 8];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
                .map_err(self.errno(rel))?;
            let name = format!(".vigie-restore-{:016x}", u64::from_le_bytes(random));
            match rustix::fs::openat(
                dir,
                &name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((name, fd)),
                Err(Errno::EXIST) => {}
                Err(e) => return Err(self.io(rel, e.into())),
            }
        }
    }

    /// The file's contents and metadata into `fd`.
    fn write_file(&mut self, fd: OwnedFd, rel: &Path, node: &Node) -> Result<(), Error> {
        let mut out = fs::File::from(fd);
        for id in node.content.iter().flatten() {
            let blob = match self
                .repo
                .get_blob_cached(&BlobId::from(**id), BlobType::Data)
            {
                Ok(blob) => blob,
                Err(e) => {
                    let message = unreadable(self.repo, "blob", id, &e);
                    if !self.tolerate {
                        return Err(self.engine_error(rel, &message));
                    }
                    self.unreadable.push(Unreadable {
                        path: rel.to_owned(),
                        message,
                    });
                    break;
                }
            };
            out.write_all(&blob).map_err(|e| self.io(rel, e))?;
            self.summary.bytes += blob.len() as u64;
        }
        let fd = OwnedFd::from(out);
        self.set_meta(&fd, rel, &node.meta)
    }

    /// Owner (as root), mode, then times of an entry no descriptor can
    /// be opened on for writing (a symlink, a fifo, a device), never
    /// following a link.
    fn owner_and_times_at(
        &self,
        dir: &OwnedFd,
        rel: &Path,
        name: &OsStr,
        meta: &Metadata,
        mode: Option<u32>,
    ) -> Result<(), Error> {
        if self.root
            && let (Some(uid), Some(gid)) = (meta.uid, meta.gid)
            && uid != u32::MAX
            && gid != u32::MAX
        {
            rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(self.errno(rel))?;
        }
        if let Some(mode) = mode {
            // Through /proc: an O_PATH descriptor takes no fchmod, and
            // a path could be swapped for a link.
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(self.errno(rel))?;
            let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            fs::set_permissions(
                &proc,
                std::os::unix::fs::PermissionsExt::from_mode(unix_mode(mode)),
            )
            .map_err(|e| self.io(rel, e))?;
        }
        if let Some(t) = timespec(meta) {
            let times = Timestamps {
                last_access: t,
                last_modification: t,
            };
            rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(self.errno(rel))?;
        }
        Ok(())
    }

    /// Owner (as root), mode, then times, through the entry's
    /// descriptor (chown clears set-user-ID bits, so it goes first).
    fn set_meta(&self, fd: &OwnedFd, rel: &Path, meta: &Metadata) -> Result<(), Error> {
        if self.root
            && let (Some(uid), Some(gid)) = (meta.uid, meta.gid)
            && uid != u32::MAX
            && gid != u32::MAX
        {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(self.errno(rel))?;
        }
        if let Some(mode) = meta.mode {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(unix_mode(mode)))
                .map_err(self.errno(rel))?;
        }
        if let Some(t) = timespec(meta) {
            let times = Timestamps {
                last_access: t,
                last_modification: t,
            };
            rustix::fs::futimens(fd, &times).map_err(self.errno(rel))?;
        }
        Ok(())
    }
}

/// A blob (`what`: `blob`, `tree`) the engine could not read, where
/// the index says it is, and why, on one line.
pub(crate) fn unreadable<
    S: IndexedFull,
    T: rustic_core::PackedId + std::ops::Deref<Target = rustic_core::Id>,
>(
    repo: &Repository<S>,
    what: &str,
    id: &T,
    e: &rustic_core::RusticError,
) -> String {
    let pack = repo
        .get_index_entry(id)
        .map(|entry| format!(" (pack {})", entry.pack.to_hex().as_str()))
        .unwrap_or_default();
    format!(
        "{what} {}{pack}: {}",
        id.to_hex().as_str(),
        crate::check::tidy(&crate::repo::one_line(e))
    )
}

/// `path` of a snapshot as the engine walks it: relative, plain
/// components only.
pub(crate) fn snapshot_path(job: &str, snapshot: &str, path: &Path) -> Result<String, Error> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::NotInSnapshot {
                    job: job.to_owned(),
                    snapshot: snapshot.to_owned(),
                    path: path.to_owned(),
                });
            }
        }
    }
    Ok(out.to_string_lossy().into_owned())
}

impl Repo {
    /// The snapshot `wanted` names (an id or a prefix of one; `None`:
    /// the latest) among those `filter` selects.
    pub(crate) fn find_snapshot(
        &self,
        filter: &SnapshotFilter,
        wanted: Option<&str>,
    ) -> Result<SnapshotFile, Error> {
        let spec = &self.spec;
        let mut matching: Vec<SnapshotFile> = self
            .inner
            .get_all_snapshots()
            .map_err(spec.engine("list its snapshots"))?
            .into_iter()
            .filter(|s| filter.matches(s))
            .filter(|s| wanted.is_none_or(|w| s.id.to_hex().starts_with(w)))
            .collect();
        let describe = || match wanted {
            Some(w) => format!("{w:?} of this job"),
            None => "of this job".to_owned(),
        };
        if wanted.is_some() && matching.len() > 1 {
            return Err(Error::NoSnapshot {
                job: spec.job.clone(),
                wanted: format!(
                    "{} alone ({} match: give more digits)",
                    describe(),
                    matching.len()
                ),
            });
        }
        matching.sort_by_key(|s| s.time.timestamp());
        matching.pop().ok_or_else(|| Error::NoSnapshot {
            job: spec.job.clone(),
            wanted: describe(),
        })
    }

    /// Restores what `request` names into `request.to`; see
    /// [`RestoreRequest`].
    pub fn restore(
        &self,
        request: &RestoreRequest<'_>,
        progress: &dyn RestoreProgress,
    ) -> Result<RestoreSummary, Error> {
        let start = Instant::now();
        let spec = &self.spec;
        let snap = self.find_snapshot(request.filter, request.snapshot)?;
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(spec.engine("read its index"))?;
        let nodes = self.nodes_at(&repo, &snap, request.path)?;
        progress.start(match request.path {
            None => snap.summary.as_ref().map(|s| s.total_bytes_processed),
            Some(_) => None,
        });
        let mut restorer = Restorer::new(&repo, spec, &snap, request.to, progress);
        restorer.overwrite = request.overwrite;
        let target = restorer.open_target()?;
        restorer.run(target, nodes)?;
        let mut summary = restorer.summary;
        summary.duration = start.elapsed();
        Ok(summary)
    }

    /// The entries to write for `path` of the snapshot: a directory's
    /// own entries, or the one file, link or special file.
    pub(crate) fn nodes_at<S: IndexedFull>(
        &self,
        repo: &Repository<S>,
        snap: &SnapshotFile,
        path: Option<&Path>,
    ) -> Result<Vec<Node>, Error> {
        let spec = &self.spec;
        let id = snap.id.to_hex().to_string();
        let node = match path {
            None => None,
            Some(path) => {
                let inner = snapshot_path(&spec.job, &id, path)?;
                Some(
                    repo.node_from_snapshot_and_path(snap, &inner)
                        .map_err(|_| Error::NotInSnapshot {
                            job: spec.job.clone(),
                            snapshot: id.clone(),
                            path: path.to_owned(),
                        })?,
                )
            }
        };
        let tree = match &node {
            None => Some(snap.tree),
            Some(node) if node.is_dir() => node.subtree,
            Some(_) => None,
        };
        match (tree, node) {
            (Some(tree), _) => Ok(repo
                .get_tree(&tree)
                .map_err(|e| spec.failed("read a tree", unreadable(repo, "tree", &tree, &e)))?
                .nodes),
            (None, Some(node)) => Ok(vec![node]),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_their_directory_are_refused() {
        for bad in ["", ".", "..", "../etc", "a/b", "/etc", "a\0b"] {
            assert!(unsafe_name(OsStr::new(bad)).is_some(), "{bad:?}");
        }
        for good in ["a", "..a", "...", ".hidden", "a b", "é"] {
            assert_eq!(unsafe_name(OsStr::new(good)), None, "{good:?}");
        }
    }

    #[test]
    fn go_modes_become_unix_modes() {
        assert_eq!(unix_mode(0o644), 0o644);
        assert_eq!(unix_mode((1 << 31) | 0o755), 0o755);
        assert_eq!(unix_mode((1 << 23) | 0o755), 0o4755);
        assert_eq!(unix_mode((1 << 22) | (1 << 20) | 0o770), 0o3770);
    }

    #[test]
    fn paths_of_a_snapshot_stay_inside_it() {
        assert_eq!(
            snapshot_path("j", "s", Path::new("/var/lib/x")).unwrap(),
            "var/lib/x"
        );
        assert!(snapshot_path("j", "s", Path::new("/var/../etc")).is_err());
    }
}
