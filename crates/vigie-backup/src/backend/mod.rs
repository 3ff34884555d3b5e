//! Where repositories live: a repository string (`/srv/restic`,
//! `local:/srv/restic`, `sftp:user@host:/srv/restic`, `s3:…`, `rest:…`)
//! parsed into a [`Location`], and the storage behind it as one
//! implementation of rustic_core's [`WriteBackend`] trait.
//!
//! rustic_core needs little from storage: `list_with_size` of a file
//! type, `read_full`, `read_partial` (an offset and a length in a pack),
//! `write_bytes` (one whole file), `remove`, and `create` (the empty
//! layout). Files are content-addressed and never change once written
//! (only `config` is rewritten, and rarely), which is what makes a plain
//! `ReadBackend + WriteBackend` per scheme enough; `rustic_backend` is
//! not used because its default features bring two dozen OpenDAL
//! services into the build.
//!
//! Today: [`LocalBackend`], a directory with atomic writes. Next, each
//! another type implementing the same two traits, chosen by
//! [`Location::backend`] — nothing above this module changes:
//!
//! - `sftp:` — a long-lived `ssh -s sftp` child built as replication
//!   builds its ssh command (the user's config, agent and ProxyJump
//!   apply), speaking SFTP v3 on its pipes. A write is the same
//!   temporary file + `fsync@openssh.com` + `posix-rename@openssh.com`
//!   as here; calls are synchronous, as the trait's are, so a mutex over
//!   the session (or a small pool of sessions for parallel pack uploads)
//!   is all the concurrency needed.
//! - `rest:` — restic's REST protocol (`GET`/`HEAD`/`POST`/`DELETE`
//!   `/{type}/{name}`, listings as `application/vnd.x.restic.rest.v2`)
//!   over the workspace's reqwest, driven from these blocking calls by
//!   a runtime handle owned by the backend.
//! - `s3:` — SigV4 requests over the same client (path-style for MinIO
//!   and Ceph RGW), or `opendal` with only `services-s3` if its build
//!   cost stays small; credentials come from vigie's secrets, never the
//!   environment.
//!
//! Each new backend is tested like this one: against the real server
//! (sshd on loopback, rest-server or an S3 server started by the test),
//! with restic reading what vigie wrote.

mod local;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
pub use local::LocalBackend;
use rustic_core::{Id, RusticResult, WriteBackend};

/// The `locks/` directory of a repository: rustic_core 0.13 names no
/// lock file type (it writes no locks), so each storage reaches it
/// through this trait as well (see `crate::lock`). The same rules hold
/// as for its other files: named by the id of their bytes, written
/// whole or not at all, a missing one removed without error.
pub trait LockBackend: Send + Sync + 'static {
    /// The ids of the lock files.
    fn list_locks(&self) -> RusticResult<Vec<Id>>;
    /// A lock file's stored bytes.
    fn read_lock(&self, id: &Id) -> RusticResult<Bytes>;
    /// Writes a lock file.
    fn write_lock(&self, id: &Id, content: Bytes) -> RusticResult<()>;
    /// Removes a lock file; one already gone is removed.
    fn remove_lock(&self, id: &Id) -> RusticResult<()>;
}

/// Schemes restic (or rclone) gives repository strings; a string with
/// one of these before its first `:` is not a local path.
const REMOTE_SCHEMES: [&str; 10] = [
    "sftp", "s3", "rest", "b2", "azure", "gs", "swift", "rclone", "opendal", "webdav",
];

/// Where a repository lives, parsed from its string as restic parses it:
/// a known scheme before the first `:`, else a local path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory (`/srv/restic` or `local:/srv/restic`).
    Local(PathBuf),
    /// A kind of repository this version cannot reach yet.
    Unsupported {
        /// `sftp`, `s3`, …
        scheme: String,
    },
}

impl Location {
    /// Parses a repository string; an empty one is `None`.
    pub fn parse(repository: &str) -> Option<Location> {
        if repository.is_empty() {
            return None;
        }
        if let Some(path) = repository.strip_prefix("local:") {
            return (!path.is_empty()).then(|| Location::Local(PathBuf::from(path)));
        }
        match repository.split_once(':') {
            Some((scheme, _)) if REMOTE_SCHEMES.contains(&scheme) => Some(Location::Unsupported {
                scheme: scheme.to_owned(),
            }),
            _ => Some(Location::Local(PathBuf::from(repository))),
        }
    }

    /// The storage of this location, or `None` for an unsupported one.
    pub fn backend(&self) -> Option<Arc<dyn WriteBackend>> {
        match self {
            Location::Local(path) => Some(Arc::new(LocalBackend::new(path.clone()))),
            Location::Unsupported { .. } => None,
        }
    }

    /// The locks of this location, or `None` for an unsupported one.
    pub fn lock_backend(&self) -> Option<Arc<dyn LockBackend>> {
        match self {
            Location::Local(path) => Some(Arc::new(LocalBackend::new(path.clone()))),
            Location::Unsupported { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_restic() {
        let local = |p: &str| Some(Location::Local(PathBuf::from(p)));
        let remote = |s: &str| {
            Some(Location::Unsupported {
                scheme: s.to_owned(),
            })
        };
        assert_eq!(Location::parse("/srv/restic"), local("/srv/restic"));
        assert_eq!(Location::parse("local:/srv/restic"), local("/srv/restic"));
        assert_eq!(Location::parse("relative/dir"), local("relative/dir"));
        // A colon in a path is not a scheme.
        assert_eq!(Location::parse("/srv/a:b"), local("/srv/a:b"));
        assert_eq!(Location::parse("backups:2024"), local("backups:2024"));
        assert_eq!(Location::parse("sftp:nas:/srv/restic"), remote("sftp"));
        assert_eq!(Location::parse("s3:https://s3.example.org/b"), remote("s3"));
        assert_eq!(
            Location::parse("rest:http://localhost:8000/"),
            remote("rest")
        );
        assert_eq!(Location::parse(""), None);
        assert_eq!(Location::parse("local:"), None);
    }

    #[test]
    fn only_local_has_a_backend_yet() {
        let local = Location::parse("/srv/restic").unwrap().backend().unwrap();
        assert_eq!(local.location(), "local:/srv/restic");
        assert!(Location::parse("sftp:nas:/r").unwrap().backend().is_none());
    }
}
