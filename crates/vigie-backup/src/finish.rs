//! The end of a backup with dumps: a snapshot only when every dump ended
//! well, and with each dump's real size.
//!
//! rustic_core's archiver writes the snapshot as its last step whatever
//! became of the files it read (a file that failed to read is left out
//! with a warning), and it keeps in the tree the size a node started with
//! — a stream's is unknown then (rustic's own stdin source writes 0,
//! which restic restores as an empty file). So the
//! archiver runs on [`HoldSnapshots`], a backend that writes everything
//! but snapshots; then [`verdict`] reads the dumps' outcomes, and
//! [`commit`] writes the root tree again with the real sizes (in a pack
//! of its own, with its index: rustic_core's packer is not public) and
//! the snapshot pointing at it. A failed dump, or a process killed
//! before the end, leaves packs that no snapshot references, as restic
//! leaves them after an interrupted backup: `prune` removes them.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use bytes::Bytes;
use rustic_core::{
    ErrorKind, FileType, Id, IndexedIdsStatus, ReadBackend, Repository, RusticError, RusticResult,
    WriteBackend, repofile::SnapshotFile,
};

use crate::dump::{Dump, Outcome};
use crate::lock::{Sealer, id_of};
use crate::{Error, RepoSpec};

/// See [`Gate::shut_on_drop`].
pub(crate) struct ShutOnDrop(Arc<Gate>);

impl Drop for ShutOnDrop {
    fn drop(&mut self) {
        self.0.settle(Err("its confirmation stopped".to_owned()));
    }
}

/// A repository's backend that does not write snapshots (see the
/// module's comment), and writes or removes nothing before its [`Gate`]
/// opens; reads go through at once.
#[derive(Clone, Debug)]
pub(crate) struct HoldSnapshots {
    inner: Arc<dyn WriteBackend>,
    gate: Arc<Gate>,
}

impl HoldSnapshots {
    pub(crate) fn new(inner: Arc<dyn WriteBackend>, gate: Arc<Gate>) -> HoldSnapshots {
        HoldSnapshots { inner, gate }
    }
}

/// Whether a backup may write yet: its lock is written at once but
/// holds only once confirmed, 200 ms later (restic's wait for a lock
/// written at the same time by another process to be listed). The
/// archiver reads the index, the parent's trees and the files meanwhile;
/// its first write waits here for the confirmation, and fails if the
/// lock was refused.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<Option<Result<(), String>>>,
    opened: Condvar,
}

impl Gate {
    pub(crate) fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Lets writes go (`Ok`) or fail with why (`Err`), for good.
    pub(crate) fn settle(&self, outcome: Result<(), String>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.is_none() {
            *state = Some(outcome);
        }
        self.opened.notify_all();
    }

    /// A guard that shuts the gate when dropped unless it was settled
    /// before (a panic on the way must not leave writers waiting).
    pub(crate) fn shut_on_drop(self: &Arc<Gate>) -> ShutOnDrop {
        ShutOnDrop(Arc::clone(self))
    }

    fn wait(&self) -> RusticResult<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*state {
                Some(Ok(())) => return Ok(()),
                Some(Err(why)) => {
                    return Err(RusticError::new(
                        ErrorKind::Backend,
                        "the repository's lock was refused: {why}",
                    )
                    .attach_context("why", why.clone()));
                }
                None => {
                    state = self
                        .opened
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl ReadBackend for HoldSnapshots {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for HoldSnapshots {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: rustic_core::BytesList,
    ) -> RusticResult<()> {
        self.gate.wait()?;
        if tpe == FileType::Snapshot {
            return Ok(());
        }
        self.inner.write_bytes(tpe, id, cacheable, content)
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.gate.wait()?;
        self.inner.remove(tpe, id, cacheable)
    }
}

/// Each dump's size, or the error of the first that did not end well.
pub(crate) fn verdict(job: &str, dumps: &[Dump], outcomes: &[Outcome]) -> Result<Vec<u64>, Error> {
    let failed = |dump: &Dump, status: String, stderr: String| Error::Dump {
        job: job.to_owned(),
        name: dump.name.clone(),
        // The program alone: its arguments may hold a password
        // (`mysqldump -pSECRET`, a connection URL), and this message is
        // stored with the run and shown on the dashboard.
        program: dump.run.first().cloned().unwrap_or_default(),
        status,
        stderr,
    };
    dumps
        .iter()
        .zip(outcomes)
        .map(|(dump, outcome)| match outcome {
            Outcome::Done { size } => Ok(*size),
            Outcome::Failed { status, stderr } => Err(failed(dump, status.clone(), stderr.clone())),
            Outcome::Pending => Err(failed(
                dump,
                "was not read to its end (the backup stopped first)".to_owned(),
                String::new(),
            )),
        })
        .collect()
}

/// Writes the snapshot the archiver made (held back until now), its root
/// tree holding the dumps' real sizes when there are dumps; returns its
/// id. `repo` is opened after the
/// archiver ran (its index knows the new root tree).
pub(crate) fn commit(
    spec: &RepoSpec,
    sealer: &Sealer,
    repo: &Repository<IndexedIdsStatus>,
    mut snap: SnapshotFile,
    sizes: &[(&str, u64)],
) -> Result<String, Error> {
    let backend = spec.backends()?.files;
    if !sizes.is_empty() {
        complete_tree(spec, sealer, repo, &mut snap, sizes, &*backend)?;
    }
    snap.id = rustic_core::repofile::SnapshotId::default();
    let stored = sealer.seal(&serde_json::to_vec(&snap).expect("a snapshot serialises"));
    let id = id_of(&stored);
    backend
        .write_bytes(FileType::Snapshot, &id, true, stored.into())
        .map_err(spec.engine("write the snapshot"))?;
    Ok(id.to_hex().to_string())
}

/// The snapshot's root tree written again with the dumps' real sizes.
fn complete_tree(
    spec: &RepoSpec,
    sealer: &Sealer,
    repo: &Repository<IndexedIdsStatus>,
    snap: &mut SnapshotFile,
    sizes: &[(&str, u64)],
    backend: &dyn WriteBackend,
) -> Result<(), Error> {
    let mut tree = repo
        .get_tree(&snap.tree)
        .map_err(spec.engine("read the snapshot's tree"))?;
    for (name, size) in sizes {
        let node = tree
            .nodes
            .iter_mut()
            .find(|n| n.is_file() && n.name() == std::ffi::OsStr::new(name))
            .ok_or_else(|| {
                spec.failed(
                    "complete the snapshot",
                    format!("dump `{name}` is missing from its tree"),
                )
            })?;
        node.meta.size = *size;
    }
    let (json, tree_id) = tree
        .serialize()
        .map_err(|e| spec.failed("complete the snapshot", e.to_string()))?;
    if tree_id != snap.tree {
        write_tree(backend, sealer, &json, tree_id.to_hex().as_str())
            .map_err(spec.engine("write the snapshot's tree"))?;
        snap.tree = tree_id;
    }
    Ok(())
}

/// Stores one tree blob as restic's format has it: a pack holding the
/// sealed blob, the sealed header (type 1, an uncompressed tree; its
/// sealed length; its id) and the header's length, then an index file
/// naming the pack's blob. Pack, then index: a crash between the two
/// leaves a pack no index names, which prune removes.
fn write_tree(
    backend: &dyn WriteBackend,
    sealer: &Sealer,
    json: &[u8],
    tree_hex: &str,
) -> RusticResult<()> {
    let blob = sealer.seal(json);
    let blob_id = ring::digest::digest(&ring::digest::SHA256, json);
    let length = u32::try_from(blob.len()).expect("a tree of a few nodes");
    let mut header = Vec::with_capacity(37);
    header.push(1u8);
    header.extend_from_slice(&length.to_le_bytes());
    header.extend_from_slice(blob_id.as_ref());
    let header = sealer.seal(&header);
    let mut pack = blob;
    pack.extend_from_slice(&header);
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    let pack_id = id_of(&pack);
    backend.write_bytes(FileType::Pack, &pack_id, false, pack.into())?;
    let index = serde_json::json!({
        "packs": [{
            "id": pack_id.to_hex().as_str(),
            "blobs": [{
                "id": tree_hex,
                "type": "tree",
                "offset": 0,
                "length": length,
            }],
        }],
    });
    let stored = sealer.seal(&serde_json::to_vec(&index).expect("JSON"));
    backend.write_bytes(FileType::Index, &id_of(&stored), true, stored.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// A writer waiting on `gate`, and what it got.
    fn waiter(gate: &Arc<Gate>) -> mpsc::Receiver<RusticResult<()>> {
        let (tx, rx) = mpsc::channel();
        let gate = Arc::clone(gate);
        thread::spawn(move || tx.send(gate.wait()).unwrap());
        rx
    }

    #[test]
    fn writes_wait_for_the_lock_and_go_once_it_is_confirmed() {
        let gate = Gate::new();
        let waiting = waiter(&gate);
        assert!(waiting.recv_timeout(Duration::from_millis(100)).is_err());
        gate.settle(Ok(()));
        assert!(
            waiting
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .is_ok()
        );
        // Settled for good: a later shut changes nothing.
        drop(gate.shut_on_drop());
        assert!(gate.wait().is_ok());
    }

    #[test]
    fn writes_fail_with_why_once_the_lock_is_refused() {
        let gate = Gate::new();
        let waiting = waiter(&gate);
        gate.settle(Err("restic prune holds it".to_owned()));
        let err = waiting
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("restic prune holds it"), "{err}");
        gate.settle(Ok(()));
        assert!(gate.wait().is_err());
    }

    #[test]
    fn a_confirmation_that_stops_midway_shuts_the_gate() {
        let gate = Gate::new();
        let waiting = waiter(&gate);
        let confirming = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                let _shut = gate.shut_on_drop();
                panic!("the confirmation panicked");
            })
        };
        assert!(confirming.join().is_err());
        assert!(
            waiting
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .is_err()
        );
    }
}
