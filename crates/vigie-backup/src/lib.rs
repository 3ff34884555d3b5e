//! Backups into restic-format repositories, so that `restic` itself can
//! list, check and restore what vigie writes (and vigie what restic
//! writes). rustic_core is the engine; the storage behind it is ours
//! (`backend`): a local directory, `sftp:` through the system ssh, `s3:`,
//! `rest:`.
//!
//! The library the CLI's `[[backup]]` jobs and `vigie backup …` call
//! (`vigie-cli/src/backup/`): one run, drills, checks, restores.

pub mod backend;
mod browse;
mod check;
mod drill;
mod dump;
mod error;
mod finish;
mod lock;
mod repo;
mod restore;
mod retention;
mod source;

pub use backend::{
    Access, Backends, LocalBackend, Location, LockBackend, RestCredentials, RestTarget,
    S3Credentials, S3Target, SftpTarget,
};

pub use browse::Entry;
pub use check::{CheckReport, Problem};
pub use drill::{DrillReport, Mismatch};
pub use dump::Dump;
pub use error::Error;
pub use lock::hostname;
pub use lock::{LockGuard, LockHolder, LockKind};
pub use repo::{
    BackupProgress, Repo, RepoSpec, Request, Snapshot, SnapshotSummary, init, open, reach,
};
pub use restore::{RestoreProgress, RestoreRequest, RestoreSummary};
pub use retention::{Decision, ForgetGroup, ForgetPlan, Keep, PruneSummary, SnapshotFilter};
