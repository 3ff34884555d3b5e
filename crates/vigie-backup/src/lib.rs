//! Backups into restic-format repositories, so that `restic` itself can
//! list, check and restore what vigie writes (and vigie what restic
//! writes). rustic_core is the engine; the storage behind it is ours
//! (`backend`): a local directory today, sftp:, s3: and rest: next.
//!
//! Not yet in the CLI: this crate is the library the `[[backup]]` jobs
//! and `vigie backup …` will call.

pub mod backend;
mod dump;
mod error;
mod finish;
mod lock;
mod repo;

pub use backend::{LocalBackend, Location, LockBackend};
pub use dump::Dump;
pub use error::Error;
pub use lock::{LockGuard, LockHolder, LockKind};
pub use repo::{Repo, RepoSpec, Request, Snapshot, SnapshotSummary, init, open};
