//! What can go wrong with a backup job's repository, each case with what
//! to do about it. Messages name the job (`backup `NAME``) and the
//! repository as the config writes it, never the password.

use std::io;
use std::path::PathBuf;

use crate::LockHolder;

/// An error of a backup job, its repository or its sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `repository` is an empty string.
    #[error(
        "backup `{job}`: `repository` is empty: set it to a directory, `sftp:HOST:/PATH`, `s3:HOST/BUCKET` or `rest:https://HOST/`"
    )]
    NoLocation { job: String },

    /// A remote repository string that does not read as its scheme's.
    #[error("backup `{job}`: repository {repository:?} is not {forms}: correct `repository`")]
    Malformed {
        job: String,
        repository: String,
        /// The forms the scheme takes.
        forms: &'static str,
    },

    /// A kind of repository this version cannot reach yet.
    #[error(
        "backup `{job}`: {scheme}: repositories are not supported yet ({repository}): use a local directory, sftp:, s3: or rest: for now"
    )]
    Unsupported {
        job: String,
        repository: String,
        scheme: String,
    },

    /// Nothing at the location holds a repository `config`.
    #[error(
        "no repository at {repository}: create it with `vigie backup init {job}`, or check `repository` of backup `{job}`"
    )]
    NoRepository { job: String, repository: String },

    /// `init` where a repository already is.
    #[error(
        "a repository already exists at {repository}: backup `{job}` can use it as it is (with its password), or choose another `repository`"
    )]
    AlreadyExists { job: String, repository: String },

    /// No key of the repository opens with this password.
    #[error(
        "the password does not open repository {repository}: check `password` of backup `{job}`"
    )]
    WrongPassword { job: String, repository: String },

    /// `paths` is empty.
    #[error("backup `{job}`: `paths` is empty: name at least one file or directory to back up")]
    NoPaths { job: String },

    /// A path to back up cannot be read (missing, no permission).
    #[error("backup `{job}`: cannot back up {}: {source}: check `paths`", path.display())]
    Path {
        job: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A tag restic could not keep as given.
    #[error(
        "backup `{job}`: tag {tag:?} is not valid: a tag is not empty and holds no `,` (restic splits tags there)"
    )]
    Tag { job: String, tag: String },

    /// An exclude pattern that is no glob.
    #[error("backup `{job}`: exclude {glob:?} is not a valid glob: {message}: check `excludes`")]
    Exclude {
        job: String,
        glob: String,
        message: String,
    },

    /// A `keep` policy without a single rule: it would forget every
    /// snapshot.
    #[error(
        "backup `{job}`: `keep` sets no rule, which would forget every snapshot: set at least one of last, hourly, daily, weekly, monthly, yearly, within"
    )]
    NoKeep { job: String },

    /// A `read_data_subset` that is none of `all`, `n/m`, `x%`, a size.
    #[error(
        "backup `{job}`: read_data_subset {value:?} is not valid: write `all`, `n/m` (part n of m), `x%` or a size (`500MiB`)"
    )]
    ReadDataSubset { job: String, value: String },

    /// No snapshot matches what a restore or a drill asked for.
    #[error("backup `{job}`: no snapshot {wanted}: list them with `vigie backup snapshots {job}`")]
    NoSnapshot { job: String, wanted: String },

    /// A path asked for is not in the snapshot.
    #[error("backup `{job}`: snapshot {snapshot} holds no {}: list it with `vigie backup ls {job} {snapshot}`", path.display())]
    NotInSnapshot {
        job: String,
        snapshot: String,
        path: PathBuf,
    },

    /// The restore's target holds files already.
    #[error(
        "backup `{job}`: {} is not empty: restore into an empty or new directory, or ask to overwrite what is there",
        path.display()
    )]
    TargetNotEmpty { job: String, path: PathBuf },

    /// A snapshot holds a name that would leave the target (`..`, a
    /// `/`), or an entry whose place is taken by a link.
    #[error(
        "backup `{job}`: snapshot {snapshot} holds an unsafe entry {name:?} under {}: {why}; nothing was written there",
        dir.display()
    )]
    UnsafeEntry {
        job: String,
        snapshot: String,
        dir: PathBuf,
        name: String,
        why: &'static str,
    },

    /// A drill's sample outside 1–100 %.
    #[error("backup `{job}`: drill sample {percent}% is not valid: give 1 to 100 (%)")]
    DrillSample { job: String, percent: u8 },

    /// Writing the restored files failed (a full disk, no permission).
    #[error("backup `{job}`: cannot restore {}: {source}", path.display())]
    Restore {
        job: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Another process holds a lock that forbids this one: an exclusive
    /// lock (a prune), or, for an exclusive lock, any lock.
    #[error(
        "repository {repository} (backup `{job}`) is locked {by}: wait for it to finish, or, if that process is gone, remove its lock with `restic -r {repository} unlock`"
    )]
    Locked {
        job: String,
        repository: String,
        /// Who holds the lock in the way.
        by: Box<LockHolder>,
    },

    /// The lock a backup held was removed or went stale while it ran:
    /// a prune may have removed what it wrote, so it wrote no snapshot.
    #[error(
        "repository {repository} (backup `{job}`): the backup's lock was lost ({why}): a prune may have run meanwhile, so no snapshot was written: run the backup again"
    )]
    LockLost {
        job: String,
        repository: String,
        why: String,
    },

    /// A lock file that cannot be read stands in the way of an
    /// exclusive lock.
    #[error(
        "repository {repository} (backup `{job}`): lock {id} cannot be read ({why}): if no restic or vigie uses the repository, remove it with `restic -r {repository} unlock --remove-all`"
    )]
    LockUnreadable {
        job: String,
        repository: String,
        id: String,
        why: String,
    },

    /// A dump's name that cannot be a file at the top of the snapshot.
    #[error("backup `{job}`: dump name {name:?} cannot be used: {why}: check `dump`")]
    DumpName {
        job: String,
        name: String,
        why: String,
    },

    /// A dump without a program to run.
    #[error(
        "backup `{job}`: dump `{name}` has no command: set `run` to a program and its arguments"
    )]
    DumpCommand { job: String, name: String },

    /// A dump's command failed (could not start, exited non-zero, was
    /// killed): the backup wrote no snapshot.
    #[error(
        "backup `{job}`: dump `{name}` failed: `{program}` {status}; no snapshot was written: run its command by hand to see why{}",
        if .stderr.is_empty() { String::new() } else { format!("\nits stderr ended with:\n{}", .stderr) }
    )]
    Dump {
        job: String,
        name: String,
        /// The program, without its arguments (they may hold a password).
        program: String,
        /// How it ended (`exited with status 1`, `was killed (SIGKILL)`).
        status: String,
        /// The last lines of its stderr.
        stderr: String,
    },

    /// The engine failed while working on the repository (I/O, a
    /// damaged file, a full disk): `message` is its account on one line.
    #[error("repository {repository} (backup `{job}`): cannot {action}: {message}")]
    Repository {
        job: String,
        repository: String,
        action: &'static str,
        message: String,
    },
}
