//! Restore drills: the proof that a backup restores. [`Repo::drill`]
//! restores the latest snapshot of a job (or a sample of its files)
//! into a fresh scratch directory, times it (the measured recovery
//! time), then checks every restored byte against the snapshot: each
//! file is read back along its blobs' lengths and each piece's SHA-256
//! compared with the blob's id, sizes, types, modes, mtimes and link
//! targets compared with the snapshot's. The scratch copy is removed
//! whatever happened.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustic_core::{
    DataId, IndexedFull, Repository,
    repofile::{Node, NodeType},
};
use rustix::fs::{Mode, OFlags};
use vigie_core::hex;

use crate::restore::{Restorer, timespec, unix_mode};
use crate::retention::SnapshotFilter;
use crate::{Error, Repo};

/// One way the restored copy differs from the snapshot, or a file
/// that could not be restored (a damaged pack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The entry, as in the snapshot (relative to its root).
    pub path: PathBuf,
    pub problem: String,
}

/// What a drill found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillReport {
    /// The snapshot drilled (64 hex digits).
    pub snapshot: String,
    /// Files restored and verified, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// How long the restore took: the measured recovery time.
    pub duration: Duration,
    /// How long the verification took after it.
    pub verify_duration: Duration,
    /// Empty when the drill passed.
    pub mismatches: Vec<Mismatch>,
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The scratch directory, removed on drop (directories restored
/// without write permission are opened up first).
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    fn path(&self) -> &Path {
        self.0
            .as_ref()
            .map_or(Path::new(""), tempfile::TempDir::path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        open_up(dir.path());
        // Nothing to do with an error here: the caller's result stands.
        let _ = dir.close();
    }
}

/// The name every scratch directory starts with.
const SCRATCH_PREFIX: &str = ".vigie-drill-";

/// Makes every directory under `root` writable (a restore gives them
/// their snapshot's modes), so that it can be removed.
fn open_up(root: &Path) {
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

/// Removes the scratch copies a drill killed midway (SIGKILL, a power
/// cut) left in `parent`: a whole restore each, which would fill the
/// disk drill after drill. Only directories named as ours, and not
/// through a symbolic link.
/// An error names the path it is about.
fn sweep(parent: &Path) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    fn at(p: &Path) -> impl FnOnce(std::io::Error) -> (std::path::PathBuf, std::io::Error) + '_ {
        move |e| (p.to_owned(), e)
    }
    for e in fs::read_dir(parent).map_err(at(parent))? {
        let e = e.map_err(at(parent))?;
        let path = e.path();
        let ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(SCRATCH_PREFIX));
        if ours && e.file_type().map_err(at(&path))?.is_dir() {
            open_up(&path);
            fs::remove_dir_all(&path).map_err(at(&path))?;
        }
    }
    Ok(())
}

/// Whether `rel` is in a sample of `percent` % of the files, the same
/// files for the same snapshot on every run.
fn sampled(snapshot: &str, rel: &Path, percent: u8) -> bool {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(snapshot.as_bytes());
    ctx.update(rel.as_os_str().as_encoded_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(first) % 100 < u64::from(percent)
}

impl Repo {
    /// Restores the latest snapshot `filter` selects (all its files, or
    /// the `sample` percent of them) into a new directory under
    /// `scratch_parent`, verifies it against the snapshot and removes
    /// it. A damaged repository gives a report with mismatches; an
    /// `Err` is a drill that could not run (no snapshot, no room).
    ///
    /// `scratch_parent` is this job's alone, and no other drill of the
    /// job runs meanwhile (the caller holds the job's lock): scratch
    /// copies found there are a killed drill's, and are removed first.
    pub fn drill(
        &self,
        filter: &SnapshotFilter,
        sample: Option<u8>,
        scratch_parent: &Path,
    ) -> Result<DrillReport, Error> {
        let spec = &self.spec;
        if let Some(p) = sample
            && !(1..=100).contains(&p)
        {
            return Err(Error::DrillSample {
                job: spec.job.clone(),
                percent: p,
            });
        }
        // First, whatever the repository says: a killed drill's copy
        // may be what fills the disk.
        fs::create_dir_all(scratch_parent).map_err(|source| Error::Restore {
            job: spec.job.clone(),
            path: scratch_parent.to_owned(),
            source,
        })?;
        sweep(scratch_parent).map_err(|(path, source)| Error::Restore {
            job: spec.job.clone(),
            path,
            source,
        })?;
        let snap = self.find_snapshot(filter, None)?;
        let id = snap.id.to_hex().to_string();
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(spec.engine("read its index"))?;
        let nodes = self.nodes_at(&repo, &snap, None)?;
        let io = |source| Error::Restore {
            job: spec.job.clone(),
            path: scratch_parent.to_owned(),
            source,
        };
        let scratch = Scratch(Some(
            tempfile::Builder::new()
                .prefix(SCRATCH_PREFIX)
                .tempdir_in(scratch_parent)
                .map_err(io)?,
        ));
        let select = |rel: &Path| sample.is_none_or(|p| sampled(&id, rel, p));
        let start = Instant::now();
        let mut restorer = Restorer::new(&repo, spec, &snap, scratch.path(), &());
        restorer.overwrite = true;
        restorer.select = Some(&select);
        restorer.tolerate = true;
        let target = restorer.open_target()?;
        restorer.run(target, nodes.clone())?;
        let duration = start.elapsed();
        let mut mismatches: Vec<Mismatch> = restorer
            .unreadable
            .iter()
            .map(|u| Mismatch {
                path: u.path.clone(),
                problem: format!("could not be restored: {}", u.message),
            })
            .collect();
        let (files, bytes) = (restorer.summary.files, restorer.summary.bytes);
        let start = Instant::now();
        let mut verify = Verify {
            repo: &repo,
            root: scratch.path(),
            select: &select,
            skip: restorer.unreadable.iter().map(|u| u.path.clone()).collect(),
            out: &mut mismatches,
        };
        verify.tree(nodes);
        let verify_duration = start.elapsed();
        drop(scratch);
        Ok(DrillReport {
            snapshot: id,
            files,
            bytes,
            duration,
            verify_duration,
            mismatches,
        })
    }
}

/// The comparison of a restored copy with its snapshot.
struct Verify<'a, S: IndexedFull> {
    repo: &'a Repository<S>,
    root: &'a Path,
    select: &'a dyn Fn(&Path) -> bool,
    /// Files that could not be restored (already reported).
    skip: Vec<PathBuf>,
    out: &'a mut Vec<Mismatch>,
}

impl<S: IndexedFull> Verify<'_, S> {
    fn mismatch(&mut self, rel: &Path, problem: impl Into<String>) {
        self.out.push(Mismatch {
            path: rel.to_owned(),
            problem: problem.into(),
        });
    }

    fn tree(&mut self, nodes: Vec<Node>) {
        let mut stack: Vec<(PathBuf, Node)> = nodes
            .into_iter()
            .map(|n| (PathBuf::from(&*n.name()), n))
            .collect();
        while let Some((rel, node)) = stack.pop() {
            if node.is_dir() {
                // A tree that could not be read is reported already.
                if self.skip.contains(&rel) {
                    continue;
                }
                if self.dir(&rel, &node)
                    && let Some(subtree) = node.subtree
                {
                    match self.repo.get_tree(&subtree) {
                        Ok(tree) => {
                            stack.extend(tree.nodes.into_iter().map(|n| (rel.join(&*n.name()), n)));
                        }
                        Err(e) => {
                            self.mismatch(&rel, crate::check::tidy(&crate::repo::one_line(&e)));
                        }
                    }
                }
            } else if (self.select)(&rel) && !self.skip.contains(&rel) {
                self.entry(&rel, &node);
            }
        }
    }

    /// Checks a directory; whether to go into it.
    fn dir(&mut self, rel: &Path, node: &Node) -> bool {
        match fs::symlink_metadata(self.root.join(rel)) {
            Ok(m) if m.is_dir() => {
                self.mode(rel, node, m.mode());
                true
            }
            Ok(_) => {
                self.mismatch(rel, "is not a directory");
                false
            }
            Err(e) => {
                self.mismatch(rel, format!("missing: {e}"));
                false
            }
        }
    }

    fn mode(&mut self, rel: &Path, node: &Node, got: u32) {
        if let Some(mode) = node.meta.mode
            && unix_mode(mode) != got & 0o7777
        {
            self.mismatch(
                rel,
                format!(
                    "mode {:o}, the snapshot says {:o}",
                    got & 0o7777,
                    unix_mode(mode)
                ),
            );
        }
    }

    fn entry(&mut self, rel: &Path, node: &Node) {
        let path = self.root.join(rel);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => return self.mismatch(rel, format!("missing: {e}")),
        };
        match &node.node_type {
            NodeType::Symlink { .. } => match fs::read_link(&path) {
                Ok(target) if meta.is_symlink() && target == node.node_type.to_link() => {}
                Ok(target) => self.mismatch(
                    rel,
                    format!(
                        "links to {}, the snapshot to {}",
                        target.display(),
                        node.node_type.to_link().display()
                    ),
                ),
                Err(_) => self.mismatch(rel, "is not a symlink"),
            },
            NodeType::File => {
                if !meta.is_file() {
                    return self.mismatch(rel, "is not a regular file");
                }
                self.mode(rel, node, meta.mode());
                if let Some(t) = timespec(&node.meta)
                    && (meta.mtime(), meta.mtime_nsec()) != (t.tv_sec, t.tv_nsec)
                {
                    self.mismatch(rel, "its mtime differs from the snapshot's");
                }
                if meta.len() != node.meta.size {
                    self.mismatch(
                        rel,
                        format!("{} bytes, the snapshot says {}", meta.len(), node.meta.size),
                    );
                }
                if let Err(problem) = self.content(&path, node) {
                    self.mismatch(rel, problem);
                }
            }
            _ => {}
        }
    }

    /// Reads the file along its blobs and hashes each piece.
    fn content(&self, path: &Path, node: &Node) -> Result<(), String> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot be read: {e}"))?;
        let mut file = io::BufReader::new(fs::File::from(fd));
        let mut offset = 0u64;
        let mut buf = Vec::new();
        for id in node.content.iter().flatten() {
            let id: DataId = *id;
            let entry = self
                .repo
                .get_index_entry(&id)
                .map_err(|e| crate::check::tidy(&crate::repo::one_line(&e)))?;
            let len = entry.data_length();
            buf.resize(len as usize, 0);
            file.read_exact(&mut buf)
                .map_err(|e| format!("ends before byte {}: {e}", offset + u64::from(len)))?;
            let digest = ring::digest::digest(&ring::digest::SHA256, &buf);
            if hex(digest.as_ref()) != id.to_hex().as_str() {
                return Err(format!(
                    "bytes {offset}..{} differ from blob {} (pack {})",
                    offset + u64::from(len),
                    id.to_hex().as_str(),
                    entry.pack.to_hex().as_str()
                ));
            }
            offset += u64::from(len);
        }
        let mut extra = [0u8; 1];
        match file.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!("holds more than the snapshot's {offset} bytes")),
            Err(e) => Err(format!("cannot be read after byte {offset}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_same_files_each_time_and_about_its_share() {
        let paths: Vec<PathBuf> = (0..2000)
            .map(|i| PathBuf::from(format!("d/f{i}")))
            .collect();
        let pick = |p: u8| paths.iter().filter(|r| sampled("abc", r, p)).count();
        let ten = pick(10);
        assert!((120..=280).contains(&ten), "{ten}");
        assert_eq!(ten, pick(10));
        assert_eq!(pick(100), 2000);
        // Another snapshot, another sample.
        let other = paths.iter().filter(|r| sampled("abd", r, 10)).count();
        assert!((120..=280).contains(&other), "{other}");
    }
}
