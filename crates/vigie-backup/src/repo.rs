//! A backup job's repository: [`init`] a new one, [`open`] an existing
//! one (once per run: deriving the key from the password costs about
//! 0.25 s and 128 MiB of scrypt), then [`Repo::backup`] and
//! [`Repo::snapshots`] on the open handle.
//!
//! rustic_core does the work; this module turns a job's settings into
//! its options and its errors into [`Error`]s that say what to do.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, FileType, IndexedIdsStatus, KeyOptions, LocalSource,
    OpenStatus, PathList, Repository, RepositoryBackends, RepositoryOptions, RusticError,
    SnapshotOptions, WriteBackend,
    repofile::{KeyFile, KeyId, MasterKey, SnapshotFile},
};

use crate::backend::{Access, Backends};
use crate::dump::{self, Book, Dump};
use crate::finish::{self, Gate};
use crate::lock::{LockGuard, LockKind, Locks, Pending, Sealer};
use crate::source::Sources;
use crate::{Error, Location, RestCredentials, S3Credentials};

/// A job's repository as the config names it, before anything is read.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// The backup job's name, for messages (`backup `nightly``).
    pub job: String,
    /// The repository string as written (`/srv/restic`, `sftp:…`), but
    /// the password of a `rest:` URL, which reads `***`: this is what
    /// messages show.
    pub repository: String,
    location: Location,
    /// How a remote repository is reached (ssh command, S3 keys).
    access: Access,
    /// The storage, made on first use and shared by every handle of a
    /// run (one ssh session, one HTTP client).
    backends: Arc<OnceLock<Backends>>,
    /// Who hears a backup's progress, if anyone.
    progress: Option<Arc<dyn BackupProgress>>,
}

/// What a backup tells while it runs: how many bytes its paths hold
/// (once a walk beside the backup has counted them) and how many it has
/// read so far. Only asked for: without it no walk is made.
pub trait BackupProgress: Send + Sync + std::fmt::Debug + 'static {
    /// The bytes the backup will read, when known.
    fn total(&self, bytes: u64);
    /// `bytes` more read.
    fn advance(&self, bytes: u64);
}

/// The engine's progress bars, wired to a [`BackupProgress`]: the
/// backup's bytes only, every other bar hidden.
#[derive(Debug)]
struct Bars(Arc<dyn BackupProgress>);

impl rustic_core::ProgressBars for Bars {
    fn progress(&self, kind: rustic_core::ProgressType, prefix: &str) -> rustic_core::Progress {
        // rustic_core 0.13 names the backup's bar so (commands/backup.rs).
        if matches!(kind, rustic_core::ProgressType::Bytes) && prefix.starts_with("backing up") {
            rustic_core::Progress::new(Forward(Arc::clone(&self.0)))
        } else {
            rustic_core::Progress::hidden()
        }
    }
}

#[derive(Debug)]
struct Forward(Arc<dyn BackupProgress>);

impl rustic_core::RusticProgress for Forward {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.total(len);
    }
    fn set_title(&self, _title: &str) {}
    fn inc(&self, inc: u64) {
        self.0.advance(inc);
    }
    fn finish(&self) {}
}

impl RepoSpec {
    /// The repository `repository` of backup job `job`; an empty string
    /// is an error, and so is a remote one this version cannot reach.
    pub fn new(job: &str, repository: &str) -> Result<RepoSpec, Error> {
        let shown = crate::backend::scrub(repository);
        let location = Location::parse(repository).ok_or_else(|| {
            if repository.is_empty() {
                Error::NoLocation {
                    job: job.to_owned(),
                }
            } else {
                Error::Malformed {
                    job: job.to_owned(),
                    repository: shown.clone(),
                    forms: if repository.starts_with("s3:") {
                        "`s3:HOST/BUCKET[/PREFIX]` nor `s3:https://HOST[:PORT]/BUCKET[/PREFIX]`"
                    } else if repository.starts_with("rest:") {
                        "`rest:http(s)://[USER:PASSWORD@]HOST[:PORT]/[PATH/]`"
                    } else {
                        "`sftp:[USER@]HOST:PATH` nor `sftp://[USER@]HOST[:PORT]//PATH`"
                    },
                }
            }
        })?;
        if let Location::Unsupported { scheme } = &location {
            return Err(Error::Unsupported {
                job: job.to_owned(),
                repository: shown,
                scheme: scheme.clone(),
            });
        }
        Ok(RepoSpec {
            job: job.to_owned(),
            repository: shown,
            location,
            access: Access::default(),
            backends: Arc::default(),
            progress: None,
        })
    }

    /// The same repository, its backups telling `progress` how far they
    /// are.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn BackupProgress>) -> RepoSpec {
        self.progress = Some(progress);
        self
    }

    /// The same repository reached with this ssh program and options
    /// (`["ssh", "-F", "/etc/vigie/ssh_config"]`), for `sftp:`.
    #[must_use]
    pub fn with_ssh(mut self, ssh: Vec<String>) -> RepoSpec {
        self.access.ssh = ssh;
        self.backends = Arc::default();
        self
    }

    /// The same repository reached with these keys, for `s3:`.
    #[must_use]
    pub fn with_s3(mut self, credentials: S3Credentials) -> RepoSpec {
        self.access.s3 = Some(credentials);
        self.backends = Arc::default();
        self
    }

    /// The same repository reached with this user and password, for
    /// `rest:` (instead of those of its URL).
    #[must_use]
    pub fn with_rest(mut self, credentials: RestCredentials) -> RepoSpec {
        self.access.rest = Some(credentials);
        self.backends = Arc::default();
        self
    }

    /// The same repository, its `s3:` or `rest:` server's certificate
    /// checked against the CA certificates of this PEM file too.
    #[must_use]
    pub fn with_ca(mut self, ca: PathBuf) -> RepoSpec {
        self.access.ca = Some(ca);
        self.backends = Arc::default();
        self
    }

    /// The repository's storage (made once, then shared).
    pub(crate) fn backends(&self) -> Result<Backends, Error> {
        if let Some(b) = self.backends.get() {
            return Ok(b.clone());
        }
        let made = self
            .location
            .backends(&self.access)
            .map_err(|message| self.failed("reach it", message))?;
        Ok(self.backends.get_or_init(|| made).clone())
    }

    /// The parsed location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The engine's error, while doing `action`, as ours.
    pub(crate) fn engine(&self, action: &'static str) -> impl Fn(Box<RusticError>) -> Error + '_ {
        move |e| {
            if e.is_incorrect_password() {
                Error::WrongPassword {
                    job: self.job.clone(),
                    repository: self.repository.clone(),
                }
            } else {
                self.failed(action, one_line(&e))
            }
        }
    }

    pub(crate) fn failed(&self, action: &'static str, message: String) -> Error {
        Error::Repository {
            job: self.job.clone(),
            repository: self.repository.clone(),
            action,
            message,
        }
    }

    /// The engine's handle on the repository, not opened yet, and
    /// whether it holds a repository (a `config` file).
    fn unopened(&self) -> Result<(Repository<()>, bool), Error> {
        self.unopened_on(self.backends()?.files)
    }

    /// The same, on `backend` (the location's, maybe wrapped).
    fn unopened_on(&self, backend: Arc<dyn WriteBackend>) -> Result<(Repository<()>, bool), Error> {
        let exists = !backend
            .list(FileType::Config)
            .map_err(self.engine("read it"))?
            .is_empty();
        // A local repository needs no cache (rustic's default is one in
        // the user's home). Remote ones will want one in the state
        // directory.
        let opts = RepositoryOptions::default().no_cache(true);
        let backends = RepositoryBackends::new(backend, None);
        let repo = match &self.progress {
            Some(p) => Repository::new_with_progress(&opts, &backends, Bars(Arc::clone(p))),
            None => Repository::new(&opts, &backends),
        }
        .map_err(self.engine("reach it"))?;
        Ok((repo, exists))
    }
}

/// The scrypt cost of the keys vigie writes: N = 2^15, r = 8, p = 4.
/// As many blocks as rustic_core's (2^17 × 8 × 1, one lane of 128 MiB)
/// in four lanes of 32 MiB (restic's keys hold at most 60 MiB a lane),
/// derived on all cores at once: on two cores, half the time and half
/// the memory of one lane of 128 MiB, for the same work per guess.
const KEY_LOG_N: u8 = 15;
const KEY_R: u32 = 8;
const KEY_P: u32 = 4;

/// Creates a repository (restic's format version 2, compressed) at the
/// spec's location with one key for `password`
/// (see [`KEY_LOG_N`]), and returns it open.
pub fn init(spec: &RepoSpec, password: &str) -> Result<Repo, Error> {
    let (repo, exists) = spec.unopened()?;
    if exists {
        return Err(Error::AlreadyExists {
            job: spec.job.clone(),
            repository: spec.repository.clone(),
        });
    }
    let inner = repo
        .init(
            &Credentials::password(password),
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )
        .map_err(spec.engine("create it"))?;
    replace_key(spec, &inner.key(), *inner.key_id(), password)?;
    Ok(Repo::new(spec, inner))
}

/// Writes a key file for `password` with vigie's scrypt cost (see
/// [`KEY_LOG_N`]) in place of the one rustic_core wrote: the new one
/// first, so that a repository never lacks a key.
fn replace_key(
    spec: &RepoSpec,
    master: &MasterKey,
    old: Option<KeyId>,
    password: &str,
) -> Result<(), Error> {
    let files = spec.backends()?.files;
    let mut salt = [0u8; 64];
    crate::lock::fill_random(&mut salt).map_err(|e| spec.failed("make its key", e.to_string()))?;
    let params = scrypt::Params::new(KEY_LOG_N, KEY_R, KEY_P)
        .map_err(|e| spec.failed("make its key", e.to_string()))?;
    let mut derived = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived)
        .map_err(|e| spec.failed("make its key", e.to_string()))?;
    let plain = serde_json::to_vec(master).expect("a master key serialises");
    let file = KeyFile {
        hostname: Some(crate::lock::hostname()),
        username: crate::lock::username(rustix::process::getuid().as_raw()),
        created: Some(rustic_core::jiff::Zoned::now()),
        kdf: "scrypt".to_owned(),
        n: 1 << KEY_LOG_N,
        r: KEY_R,
        p: KEY_P,
        data: Sealer::from_bytes(&derived).seal(&plain),
        salt: salt.to_vec(),
    };
    let json = serde_json::to_vec(&file).expect("a key file serialises");
    let id = crate::lock::id_of(&json);
    files
        .write_bytes(FileType::Key, &id, false, json.into())
        .map_err(spec.engine("write its key"))?;
    for gone in old.iter().filter(|o| ***o != id) {
        files
            .remove(FileType::Key, gone, false)
            .map_err(spec.engine("remove the key it replaced"))?;
    }
    Ok(())
}

/// Whether the spec's storage answers and holds a repository (a
/// `config` file): one listing, no password, no key derived. The
/// storage is reached afresh (a new ssh session, a new connection), as
/// a run would reach it.
pub fn reach(spec: &RepoSpec) -> Result<(), Error> {
    let fresh = RepoSpec {
        backends: Arc::default(),
        ..spec.clone()
    };
    let files = fresh.backends()?.files;
    let found = files
        .list(FileType::Config)
        .map_err(fresh.engine("reach it"))?;
    if found.is_empty() {
        return Err(Error::NoRepository {
            job: spec.job.clone(),
            repository: spec.repository.clone(),
        });
    }
    Ok(())
}

/// Opens the repository with `password`. Do it once per run and keep
/// the [`Repo`]: this is where the key is derived.
pub fn open(spec: &RepoSpec, password: &str) -> Result<Repo, Error> {
    let (repo, exists) = spec.unopened()?;
    if !exists {
        return Err(Error::NoRepository {
            job: spec.job.clone(),
            repository: spec.repository.clone(),
        });
    }
    let inner = repo
        .open(&Credentials::password(password))
        .map_err(spec.engine("open it"))?;
    Ok(Repo::new(spec, inner))
}

/// An open repository: its key is derived, its config read.
pub struct Repo {
    pub(crate) spec: RepoSpec,
    /// The engine's handle: a backup consumes one (it becomes indexed),
    /// so each backup opens another with the master key, which costs
    /// one read of `config` and no key derivation.
    key: MasterKey,
    pub(crate) inner: Repository<OpenStatus>,
}

impl std::fmt::Debug for Repo {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// What one backup did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The new snapshot's id (64 hex digits; restic shows the first 8).
    pub id: String,
    /// Files read (new, changed and unchanged).
    pub files: u64,
    /// Of those, files new since the parent snapshot.
    pub files_new: u64,
    /// Of those, files changed since the parent snapshot.
    pub files_changed: u64,
    /// Bytes of all the files read.
    pub bytes_processed: u64,
    /// Bytes the repository grew by (new data and trees, compressed and
    /// encrypted, as stored).
    pub bytes_added: u64,
    /// Wall time of the whole backup, index loading included.
    pub duration: Duration,
}

impl SnapshotSummary {
    /// Snapshot `id`, from the engine's account of the backup that made
    /// it, which started at `start`.
    fn of(id: String, s: &rustic_core::repofile::SnapshotSummary, start: Instant) -> Self {
        SnapshotSummary {
            id,
            files: s.total_files_processed,
            files_new: s.files_new,
            files_changed: s.files_changed,
            bytes_processed: s.total_bytes_processed,
            bytes_added: s.data_added_packed,
            duration: start.elapsed(),
        }
    }
}

/// What one backup reads, and how its snapshot is labelled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Files and directories to back up; each must exist.
    pub paths: Vec<PathBuf>,
    /// Left out: gitignore-style globs (`*.tmp` at any depth,
    /// `/var/cache` anchored).
    pub excludes: Vec<String>,
    /// The snapshot's tags (none empty, none holding a `,`).
    pub tags: Vec<String>,
    /// Stay on the file system of each path (mount points below it are
    /// left out), as `restic backup --one-file-system`.
    pub one_file_system: bool,
    /// Commands whose output is stored as files `/NAME` of the same
    /// snapshot; one that fails fails the backup, and no snapshot is
    /// written.
    pub dumps: Vec<Dump>,
}

impl Request {
    /// A backup of `paths`, nothing left out, no tags.
    pub fn paths<P: AsRef<Path>>(paths: &[P]) -> Request {
        Request {
            paths: paths.iter().map(|p| p.as_ref().to_owned()).collect(),
            ..Request::default()
        }
    }
}

/// A snapshot as `restic snapshots` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Its id (64 hex digits).
    pub id: String,
    /// When its backup started.
    pub time: SystemTime,
    /// The host that made it.
    pub hostname: String,
    /// The paths it holds.
    pub paths: Vec<String>,
    /// Its tags, sorted.
    pub tags: Vec<String>,
}

impl Repo {
    fn new(spec: &RepoSpec, inner: Repository<OpenStatus>) -> Repo {
        Repo {
            spec: spec.clone(),
            key: inner.key(),
            inner,
        }
    }

    /// Another handle on the repository, opened with the master key.
    pub(crate) fn reopen(&self) -> Result<Repository<OpenStatus>, Error> {
        self.reopen_on(self.spec.backends()?.files)
    }

    /// The same, on `backend` (the location's, maybe wrapped).
    fn reopen_on(&self, backend: Arc<dyn WriteBackend>) -> Result<Repository<OpenStatus>, Error> {
        let (repo, exists) = self.spec.unopened_on(backend)?;
        if !exists {
            return Err(Error::NoRepository {
                job: self.spec.job.clone(),
                repository: self.spec.repository.clone(),
            });
        }
        repo.open(&Credentials::Masterkey(self.key.clone()))
            .map_err(self.spec.engine("open it"))
    }

    /// The spec this repository was opened from.
    pub fn spec(&self) -> &RepoSpec {
        &self.spec
    }

    /// Locks the repository as restic does (see [`LockKind`]): refused
    /// with [`Error::Locked`] while another process (restic or vigie)
    /// holds a lock that forbids it. The lock is held, and refreshed,
    /// until the guard is dropped.
    pub fn lock(&self, kind: LockKind) -> Result<LockGuard, Error> {
        self.begin_lock(kind)?.confirm()
    }

    /// Takes a shared lock and runs `work` on the index, read on a
    /// backend that writes no snapshot (see `finish.rs`) and nothing
    /// before the lock is confirmed: the confirmation, 200 ms after the
    /// lock is written, goes on a thread of its own while `work` reads
    /// the index, the parent's trees and the files (see `finish::Gate`).
    /// A refused lock is the error, before `work`'s.
    fn while_locking<T>(
        &self,
        work: impl FnOnce(Repository<IndexedIdsStatus>) -> Result<T, Error>,
    ) -> Result<(T, LockGuard), Error> {
        let spec = &self.spec;
        let gate = Gate::new();
        let held = Arc::new(finish::HoldSnapshots::new(
            spec.backends()?.files,
            Arc::clone(&gate),
        ));
        let pending = self.begin_lock(LockKind::Shared)?;
        let confirming = thread::Builder::new()
            .name("vigie-lock-confirm".to_owned())
            .spawn(move || {
                let _shut = gate.shut_on_drop();
                let confirmed = pending.confirm();
                gate.settle(confirmed.as_ref().map(|_| ()).map_err(ToString::to_string));
                confirmed
            })
            .map_err(|e| spec.failed("lock it", e.to_string()))?;
        let done = self
            .reopen_on(held)
            .and_then(|repo| repo.to_indexed_ids().map_err(spec.engine("read its index")))
            .and_then(work);
        let lock = confirming
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok((done?, lock))
    }

    /// rustic_core's walker of `paths` with the job's excludes.
    fn walker(&self, opts: &BackupOptions, paths: &[PathBuf]) -> Result<LocalSource, Error> {
        LocalSource::new(
            opts.ignore_save_opts,
            &opts.excludes,
            &opts.ignore_filter_opts,
            paths,
        )
        .map_err(self.spec.engine("read the paths to back up"))
    }

    /// Writes a lock of `kind` to be confirmed (see `Locks::begin`):
    /// reading the index can go while it settles.
    fn begin_lock(&self, kind: LockKind) -> Result<Pending, Error> {
        let spec = &self.spec;
        let backend = spec.backends()?.locks;
        let Some(sealer) = Sealer::new(&self.key) else {
            return Err(spec.failed("lock it", "its master key is malformed".to_owned()));
        };
        Locks::new(backend, sealer, spec.clone()).begin(kind)
    }

    /// Backs up what `request` names into a new snapshot. The latest
    /// snapshot of the same host and paths is its parent: files whose
    /// size and times did not change are not read again. It holds a
    /// shared lock for its whole run, so no prune (restic's or vigie's)
    /// removes what it writes.
    pub fn backup(&self, request: &Request) -> Result<SnapshotSummary, Error> {
        let start = Instant::now();
        let spec = &self.spec;
        let snapshot = self.snapshot_file(&request.tags)?;
        let mut opts = self.backup_options(&request.excludes)?;
        opts.ignore_filter_opts.one_file_system = request.one_file_system;
        if !request.dumps.is_empty() {
            return self.backup_with_dumps(request, &opts, snapshot, start);
        }
        let paths = self.sources(&request.paths)?.paths();
        let source = Sources::new(Some(self.walker(&opts, &paths)?), &[], Book::new(0));
        let Some(sealer) = Sealer::new(&self.key) else {
            return Err(spec.failed("back up", "its master key is malformed".to_owned()));
        };
        // The engine's snapshot is held back until the lock is seen to
        // be still ours: had it been lost (not refreshed for 30 minutes),
        // a prune may have removed data the snapshot needs.
        let ((indexed, snap), lock) = self.while_locking(|indexed| {
            let snap = indexed
                .archive(&opts, &source, snapshot, &paths)
                .map_err(spec.engine("back up"))?;
            Ok((indexed, snap))
        })?;
        let summary = snap.summary.clone().unwrap_or_default();
        lock.still_held()?;
        let id = finish::commit(spec, &sealer, &indexed, snap, &[])?;
        Ok(SnapshotSummary::of(id, &summary, start))
    }

    /// A backup whose request has dumps (see `dump.rs` and
    /// `finish.rs`): the paths made absolute (the dumps are `/NAME`),
    /// files and dumps archived as one source, and the snapshot written
    /// only when every dump ended well.
    fn backup_with_dumps(
        &self,
        request: &Request,
        opts: &BackupOptions,
        snapshot: SnapshotFile,
        start: Instant,
    ) -> Result<SnapshotSummary, Error> {
        let spec = &self.spec;
        let mut paths = Vec::with_capacity(request.paths.len());
        for path in &request.paths {
            paths.push(fs::canonicalize(path).map_err(|e| Error::Path {
                job: spec.job.clone(),
                path: path.clone(),
                source: e,
            })?);
        }
        dump::check(&spec.job, &request.dumps, &paths)?;
        let (files, mut snapshot_paths) = if paths.is_empty() {
            (None, Vec::new())
        } else {
            let list = self.sources(&paths)?.paths();
            (Some(self.walker(opts, &list)?), list)
        };
        snapshot_paths.extend(request.dumps.iter().map(|d| Path::new("/").join(&d.name)));
        let Some(sealer) = Sealer::new(&self.key) else {
            return Err(spec.failed("back up", "its master key is malformed".to_owned()));
        };
        let book = Book::new(request.dumps.len());
        let source = Sources::new(files, &request.dumps, Arc::clone(&book));
        let (archived, lock) = self.while_locking(|indexed| {
            Ok(indexed.archive(opts, &source, snapshot, &snapshot_paths))
        })?;
        // A failed dump first: it explains an engine error too.
        let sizes = finish::verdict(&spec.job, &request.dumps, &book.outcomes())?;
        let snap = archived.map_err(spec.engine("back up"))?;
        let named: Vec<(&str, u64)> = request
            .dumps
            .iter()
            .map(|d| d.name.as_str())
            .zip(sizes)
            .collect();
        let indexed = self
            .reopen()?
            .to_indexed_ids()
            .map_err(spec.engine("read its index"))?;
        let summary = snap.summary.clone().unwrap_or_default();
        lock.still_held()?;
        let id = finish::commit(spec, &sealer, &indexed, snap, &named)?;
        Ok(SnapshotSummary::of(id, &summary, start))
    }

    /// Every snapshot of the repository, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, Error> {
        let mut all: Vec<Snapshot> = self
            .inner
            .get_all_snapshots()
            .map_err(self.spec.engine("list its snapshots"))?
            .into_iter()
            .map(|s| Snapshot {
                id: s.id.to_hex().to_string(),
                time: SystemTime::from(s.time.timestamp()),
                hostname: s.hostname,
                paths: s.paths.iter().cloned().collect(),
                tags: s.tags.iter().cloned().collect(),
            })
            .collect();
        all.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The snapshot to fill, with its tags, each checked first.
    fn snapshot_file(&self, tags: &[String]) -> Result<SnapshotFile, Error> {
        let spec = &self.spec;
        let mut opts = SnapshotOptions::default();
        for tag in tags {
            if tag.trim().is_empty() || tag.contains(',') {
                return Err(Error::Tag {
                    job: spec.job.clone(),
                    tag: tag.clone(),
                });
            }
            opts = opts
                .add_tags(tag)
                .map_err(spec.engine("tag the snapshot"))?;
        }
        opts.to_snapshot().map_err(spec.engine("start a snapshot"))
    }

    /// The engine's options: our excludes as its globs (a `!` makes a
    /// glob of its an exclusion), each checked on its own so that the
    /// error names the bad one.
    fn backup_options(&self, excludes: &[String]) -> Result<BackupOptions, Error> {
        let mut opts = BackupOptions::default();
        for glob in excludes {
            let mut one = opts.excludes.clone();
            one.globs = vec![format!("!{glob}")];
            if let Err(e) = one.as_override() {
                return Err(Error::Exclude {
                    job: self.spec.job.clone(),
                    glob: glob.clone(),
                    message: one_line(&e),
                });
            }
        }
        opts.excludes.globs = excludes.iter().map(|g| format!("!{g}")).collect();
        Ok(opts)
    }

    /// The paths to back up, each checked to exist, made absolute.
    fn sources<P: AsRef<Path>>(&self, paths: &[P]) -> Result<PathList, Error> {
        let spec = &self.spec;
        if paths.is_empty() {
            return Err(Error::NoPaths {
                job: spec.job.clone(),
            });
        }
        let bad = |path: &Path, source| Error::Path {
            job: spec.job.clone(),
            path: path.to_owned(),
            source,
        };
        for path in paths {
            let path = path.as_ref();
            fs::symlink_metadata(path).map_err(|e| bad(path, e))?;
        }
        paths
            .iter()
            .map(|p| p.as_ref().to_owned())
            .collect::<PathList>()
            .sanitize()
            .map_err(|e| spec.failed("read the paths to back up", e.to_string()))
    }
}

/// The engine's error on one line, without its `Error: ` and its kind
/// (`(kind: related to …)`), which say nothing to a user.
pub(crate) fn one_line(e: &RusticError) -> String {
    let log = e.display_log();
    let log = log.strip_prefix("Error: ").unwrap_or(&log);
    match log.find(" (kind: ") {
        Some(start) => match log[start..].find(')') {
            Some(len) => format!("{}{}", &log[..start], &log[start + len + 1..]),
            None => log.to_owned(),
        },
        None => log.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job runs on the daemon's blocking pool and reports from
    /// another thread: an open repository must cross threads.
    #[test]
    fn an_open_repository_can_move_between_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Repo>();
        send_sync::<Error>();
    }

    #[test]
    fn engine_errors_lose_only_their_prefix_and_kind() {
        let e = RusticError::new(rustic_core::ErrorKind::InputOutput, "cannot read /r/keys/x");
        assert_eq!(one_line(&e), "cannot read /r/keys/x");
        let e = RusticError::with_source(
            rustic_core::ErrorKind::Backend,
            "listing failed",
            std::io::Error::other("gone"),
        );
        assert_eq!(one_line(&e), "listing failed: caused by: gone");
    }
}
