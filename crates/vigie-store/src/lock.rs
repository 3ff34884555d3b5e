//! Locks in the state directory: one process at a time may be the daemon
//! of a state directory (`daemon.lock`), or send a replication job
//! (`sync-NAME.lock`).
//!
//! A lock is an `flock` on a file that holds the holder's pid. The kernel
//! drops it when the process dies, however it dies, so a stale file never
//! blocks anybody; and anyone who can read the file can ask whether it is
//! held — that is how `vigie status` tells a running daemon from a dead
//! one.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// The file the running daemon holds.
pub const DAEMON_LOCK: &str = "daemon.lock";

/// The file whoever sends replication job `job` holds.
pub fn sync_lock_name(job: &str) -> String {
    format!("sync-{job}.lock")
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Lock {
    // Held for its `flock`: closing the file releases the lock.
    _file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; its pid when it wrote one.
    #[error("{} is held by {}", path.display(), holder(*pid))]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| "another process".to_owned(), |p| format!("process {p}"))
}

/// Take the lock `name` in `state_dir` (created if missing), or say who
/// holds it. Never waits.
pub fn try_lock(state_dir: &Path, name: &str) -> Result<Lock, LockError> {
    crate::create_private_dir(state_dir).map_err(|e| LockError::Io {
        path: state_dir.to_owned(),
        source: match e {
            crate::StoreError::CreateDir { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        },
    })?;
    let path = state_dir.join(name);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    // Not truncated on open: the holder's pid must survive a failed try.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(LockError::Held {
                pid: read_pid(&file),
                path,
            });
        }
        Err(e) => return Err(io(e.into())),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(Lock { _file: file, path })
}

/// Whether someone holds the lock `name` in `state_dir`: `Some(pid)` (the
/// pid when it wrote one), `None` when it is free or was never taken.
/// Needs only read access, and takes nothing.
pub fn holder_of(state_dir: &Path, name: &str) -> Result<Option<Option<u32>>, LockError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(name);
    // Non-blocking: a FIFO planted in its place must not hang the reader.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LockError::Io { path, source }),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(LockError::Io {
            path,
            source: std::io::Error::other("not a regular file"),
        });
    }
    // A shared lock conflicts only with the holder's exclusive one, so two
    // `vigie status` at once never see each other.
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(&file, FlockOperation::Unlock);
            Ok(None)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(Some(read_pid(&file))),
        Err(e) => Err(LockError::Io {
            path,
            source: e.into(),
        }),
    }
}

fn read_pid(mut file: &std::fs::File) -> Option<u32> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path(), DAEMON_LOCK).unwrap();
        // flock locks belong to the open file, so a second open in the
        // same process conflicts just as another process would.
        match try_lock(dir.path(), DAEMON_LOCK) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(
            holder_of(dir.path(), DAEMON_LOCK).unwrap(),
            Some(Some(std::process::id()))
        );
        drop(first);
        assert_eq!(holder_of(dir.path(), DAEMON_LOCK).unwrap(), None);
        let _again = try_lock(dir.path(), DAEMON_LOCK).unwrap();
    }

    #[test]
    fn a_lock_never_taken_is_free() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder_of(dir.path(), &sync_lock_name("web")).unwrap(), None);
        assert_eq!(
            holder_of(&dir.path().join("missing"), DAEMON_LOCK).unwrap(),
            None
        );
    }
}
