//! Looking inside a job's snapshots without restoring them, as `restic ls`
//! and `restic dump` do: [`Repo::ls`] lists the entries of a snapshot (or
//! of one directory of it), tree after tree, streamed to a callback;
//! [`Repo::dump`] writes one file's content out, blob after blob.

use std::io::Write;
use std::path::{Path, PathBuf};

use rustic_core::repofile::{Node, NodeType};

use crate::restore::{snapshot_path, unix_mode, unreadable};
use crate::retention::SnapshotFilter;
use crate::{Error, Repo};

/// One entry of a snapshot, as `restic ls -l` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its path in the snapshot, from the snapshot's root (`/etc/hosts`).
    pub path: PathBuf,
    /// `d` directory, `f` file, `l` symlink, `p` fifo, `s` socket, `c`
    /// or `b` device.
    pub kind: char,
    /// Unix permission bits (with set-user-ID, set-group-ID, sticky).
    pub mode: u32,
    /// Bytes of a file's content (0 for the others).
    pub size: u64,
}

fn kind(node: &Node) -> char {
    match node.node_type {
        NodeType::Dir => 'd',
        NodeType::File => 'f',
        NodeType::Symlink { .. } => 'l',
        NodeType::Fifo => 'p',
        NodeType::Socket => 's',
        NodeType::Chardev { .. } => 'c',
        NodeType::Dev { .. } => 'b',
    }
}

impl Repo {
    /// Calls `each` with every entry of the snapshot `snapshot` (an id or
    /// a prefix; the filter's latest when `None`) under `path` (all of it
    /// when `None`), parents before their children; returns the
    /// snapshot's id. `each`'s error (a closed pipe) stops the listing.
    pub fn ls(
        &self,
        filter: &SnapshotFilter,
        snapshot: Option<&str>,
        path: Option<&Path>,
        each: &mut dyn FnMut(&Entry) -> std::io::Result<()>,
    ) -> Result<String, Error> {
        let spec = &self.spec;
        let snap = self.find_snapshot(filter, snapshot)?;
        let id = snap.id.to_hex().to_string();
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(spec.engine("read its index"))?;
        let mut base = path.map_or_else(|| PathBuf::from("/"), |p| Path::new("/").join(p));
        let nodes = self.nodes_at(&repo, &snap, path)?;
        // A path that is a file lists itself, in its directory.
        if let (Some(p), [node]) = (path, nodes.as_slice())
            && !node.is_dir()
            && p.file_name() == Some(std::ffi::OsStr::new(&node.name()))
        {
            base.pop();
        }
        let mut todo: Vec<(PathBuf, Vec<Node>)> = vec![(base, nodes)];
        while let Some((dir, nodes)) = todo.pop() {
            let mut subtrees = Vec::new();
            for node in nodes {
                let entry_path = dir.join(node.name());
                let entry = Entry {
                    path: entry_path.clone(),
                    kind: kind(&node),
                    mode: node.meta.mode.map_or(0, unix_mode),
                    size: if node.is_file() { node.meta.size } else { 0 },
                };
                each(&entry).map_err(|e| spec.failed("list the snapshot", e.to_string()))?;
                if let (true, Some(tree)) = (node.is_dir(), node.subtree) {
                    let inner = repo.get_tree(&tree).map_err(|e| {
                        spec.failed("read a tree", unreadable(&repo, "tree", &tree, &e))
                    })?;
                    subtrees.push((entry_path, inner.nodes));
                }
            }
            // Depth first, in name order: the last pushed comes first.
            todo.extend(subtrees.into_iter().rev());
        }
        Ok(id)
    }

    /// Writes the content of file `path` of the snapshot (an id or a
    /// prefix; the filter's latest when `None`) to `w`; returns its size.
    pub fn dump(
        &self,
        filter: &SnapshotFilter,
        snapshot: Option<&str>,
        path: &Path,
        w: &mut dyn Write,
    ) -> Result<u64, Error> {
        let spec = &self.spec;
        let snap = self.find_snapshot(filter, snapshot)?;
        let id = snap.id.to_hex().to_string();
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(spec.engine("read its index"))?;
        let inner = snapshot_path(&spec.job, &id, path)?;
        let not_a_file = || Error::NotInSnapshot {
            job: spec.job.clone(),
            snapshot: id.clone(),
            path: path.to_owned(),
        };
        let node = repo
            .node_from_snapshot_and_path(&snap, &inner)
            .map_err(|_| not_a_file())?;
        if !node.is_file() {
            return Err(not_a_file());
        }
        let mut counted = Counted { inner: w, bytes: 0 };
        repo.dump(&node, &mut counted)
            .map_err(spec.engine("read the file"))?;
        Ok(counted.bytes)
    }
}

/// A writer that counts what goes through it.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
