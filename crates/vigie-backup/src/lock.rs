//! Repository locks as restic writes and reads them, so that restic and
//! vigie never work against each other: a `prune` (exclusive) never runs
//! beside a backup (shared) that is writing packs it would find
//! unreferenced, whichever tool runs which.
//!
//! rustic_core 0.13 writes no locks; this is restic's protocol
//! (`internal/restic/lock.go`, the "Locks" section of its design
//! document):
//!
//! - A lock is a JSON document `{"time", "exclusive", "hostname",
//!   "username", "pid", "uid", "gid"}`, sealed with the repository's
//!   master key like every other file, stored in `locks/` under the
//!   SHA-256 of its stored bytes. restic compresses it in a version 2
//!   repository; vigie writes it plain (restic reads both) and reads both.
//! - To lock, read every lock first: a shared lock is refused by an
//!   exclusive one, an exclusive lock by any. Then write ours, wait
//!   200 ms, and look again (two processes may have looked at the same
//!   time): on a conflict, remove ours and give up.
//! - The holder writes a new lock with the current time every 5 minutes
//!   and then removes the old one; it removes its lock when done.
//! - A lock is stale when its time is more than 30 minutes old, or when
//!   it was written on this host by a process that no longer runs
//!   (restic before 0.16 asks by sending that process SIGHUP: a holder
//!   catches it, see `survive_sighup`).
//!   vigie ignores stale locks (restic refuses them too, until `restic
//!   unlock` removes them; its message says so).
//!
//! A lock that cannot be read: an empty file is ignored (restic 0.15.2
//! and later: some backends leave one after a failed upload). One that
//! does not decrypt or parse is ignored with a warning by a shared lock
//! — restic 0.14, Debian 12's, ignores it for any lock — and refuses an
//! exclusive one — restic 0.15 and later refuse any lock then: a prune
//! must not run beside a lock it cannot read (`restic unlock
//! --remove-all` clears it once nothing uses the repository).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::{Aead as _, generic_array::GenericArray};
use jiff::{SignedDuration, Timestamp};
use rustic_core::{Id, repofile::MasterKey};
use serde::{Deserialize, Serialize};

use crate::{Error, RepoSpec, backend::LockBackend};

/// A lock older than this, never refreshed, belongs to a process that
/// is gone or hung (restic's `StaleLockTimeout`).
const STALE_AFTER: SignedDuration = SignedDuration::from_mins(30);

/// How often a held lock is written anew (restic's refresh interval).
const REFRESH_EVERY: Duration = Duration::from_mins(5);

/// After a failed refresh, the next try comes sooner: the lock turns
/// stale 30 minutes after its last good write.
const REFRESH_RETRY: Duration = Duration::from_mins(1);

/// Between writing our lock and looking again for others (restic's
/// `waitBeforeLockCheck`): long enough for a lock written by another
/// process that looked at the same time to be listed.
const RACE_WAIT: Duration = Duration::from_millis(200);

/// A lock's JSON holds a few short strings: a larger document is no lock.
const MAX_LOCK_JSON: u64 = 64 << 10;

/// What a lock allows others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Writers that add (backups): many at once, but no exclusive lock.
    Shared,
    /// Writers that remove (prune, forget): alone.
    Exclusive,
}

/// The holder of a lock in the way, as its lock file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Whether the lock is exclusive (a prune) or shared (a backup).
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: i64,
    /// The lock's time as written (RFC 3339).
    pub since: String,
    /// The lock file's first 8 hex digits, as restic shows ids.
    pub id: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.exclusive { "exclusively " } else { "" };
        write!(
            f,
            "{how}by pid {} on {} (user {:?}) since {} (lock {})",
            self.pid, self.hostname, self.username, self.since, self.id
        )
    }
}

/// The lock file's document, as restic's `Lock` serialises it (`uid`
/// and `gid` omitted when 0). Unknown keys are kept out of the way, not
/// refused: a later restic may add some.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct LockFile {
    time: String,
    exclusive: bool,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    pid: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    gid: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Who takes a lock: this process, as restic names it.
#[derive(Clone, Debug)]
struct Holder {
    hostname: String,
    username: String,
    pid: i64,
    uid: u32,
    gid: u32,
}

impl Holder {
    fn this_process() -> Holder {
        let uid = rustix::process::getuid().as_raw();
        Holder {
            hostname: hostname(),
            username: username(uid).unwrap_or_default(),
            pid: i64::from(std::process::id()),
            uid,
            gid: rustix::process::getgid().as_raw(),
        }
    }

    fn lock_file(&self, kind: LockKind) -> LockFile {
        LockFile {
            time: Timestamp::now().to_string(),
            exclusive: kind == LockKind::Exclusive,
            hostname: self.hostname.clone(),
            username: self.username.clone(),
            pid: self.pid,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// This host's name as restic's `os.Hostname` reads it (the kernel's
/// node name): the host of the snapshots it makes.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Fills `buf` from the kernel's random generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> rustix::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        filled +=
            rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(())
}

/// The name of user `uid` in `/etc/passwd` (restic's `user.Current`).
pub(crate) fn username(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(uid)).then(|| name.to_owned())
    })
}

/// Whether process `pid` of this host runs: only "no such process"
/// says no (a process of another user answers "not permitted").
fn process_runs(pid: i64) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .and_then(rustix::process::Pid::from_raw)
    else {
        // Not a pid a process can have: nothing to tell it is gone.
        return true;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

impl LockFile {
    fn time(&self) -> Option<Timestamp> {
        self.time.parse().ok()
    }

    /// restic's rule: too old, or of this host and its process gone.
    fn is_stale(&self, now: Timestamp, host: &str) -> bool {
        match self.time() {
            Some(time) if now.duration_since(time) > STALE_AFTER => return true,
            Some(_) => {}
            // `read` refuses a lock without a readable time.
            None => return false,
        }
        self.hostname == host && !process_runs(self.pid)
    }
}

/// Seals and opens repository files with the master key, as restic
/// does: a random 16-byte nonce, AES-256-CTR, Poly1305-AES over the
/// ciphertext, `nonce ‖ ciphertext ‖ tag`.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: Aes256CtrPoly1305Aes,
}

impl Sealer {
    /// The master key's 32 bytes of AES key and 16 + 16 of MAC key.
    pub(crate) fn new(key: &MasterKey) -> Option<Sealer> {
        if key.encrypt.len() != 32 || key.mac.k.len() != 16 || key.mac.r.len() != 16 {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&key.encrypt);
        bytes[32..48].copy_from_slice(&key.mac.k);
        bytes[48..].copy_from_slice(&key.mac.r);
        Some(Sealer {
            cipher: Aes256CtrPoly1305Aes::new(GenericArray::from_slice(&bytes)),
        })
    }

    /// A key of 64 bytes laid out as the master key's (a key file's
    /// derived key is).
    pub(crate) fn from_bytes(bytes: &[u8; 64]) -> Sealer {
        Sealer {
            cipher: Aes256CtrPoly1305Aes::new(GenericArray::from_slice(bytes)),
        }
    }

    pub(crate) fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 16];
        // The kernel's generator; it does not fail once booted.
        fill_random(&mut nonce).expect("getrandom failed");
        let sealed = self
            .cipher
            .encrypt(GenericArray::from_slice(&nonce), plain)
            .expect("AES-CTR with Poly1305 cannot fail to encrypt");
        let mut out = Vec::with_capacity(16 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plain bytes, or `None` when the MAC does not match (another
    /// key, or damaged bytes).
    pub(crate) fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 32 {
            return None;
        }
        self.cipher
            .decrypt(GenericArray::from_slice(&sealed[..16]), &sealed[16..])
            .ok()
    }
}

/// A repository file's plain bytes, uncompressed: restic's version 2
/// files start with byte 2 and hold zstd; JSON starts with `{` or `[`.
fn uncompressed(plain: &[u8]) -> Result<Vec<u8>, String> {
    match plain.first() {
        Some(b'{' | b'[') => Ok(plain.to_vec()),
        Some(2) => {
            let decoder = zstd::stream::read::Decoder::new(&plain[1..])
                .map_err(|e| format!("cannot decompress: {e}"))?;
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(decoder, MAX_LOCK_JSON + 1),
                &mut out,
            )
            .map_err(|e| format!("cannot decompress: {e}"))?;
            if out.len() as u64 > MAX_LOCK_JSON {
                return Err("more than a lock holds".to_owned());
            }
            Ok(out)
        }
        Some(b) => Err(format!("unknown format (first byte {b:#04x})")),
        None => Err("empty".to_owned()),
    }
}

/// The id of a file's stored bytes: their SHA-256.
pub(crate) fn id_of(stored: &[u8]) -> Id {
    let digest = ring::digest::digest(&ring::digest::SHA256, stored);
    vigie_core::hex(digest.as_ref())
        .parse()
        .expect("64 hex digits")
}

/// What reading one lock gave.
enum Read {
    /// Gone since the listing (a refresh replaced it), or empty.
    Nothing,
    Lock(LockFile),
    /// Not a lock this key opens and restic wrote: why.
    Unreadable(String),
}

/// The locks of one repository: where they are, the key, and names for
/// messages.
#[derive(Clone)]
pub(crate) struct Locks {
    backend: Arc<dyn LockBackend>,
    sealer: Sealer,
    spec: RepoSpec,
}

impl fmt::Debug for Locks {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locks")
            .field("repository", &self.spec.repository)
            .finish_non_exhaustive()
    }
}

impl Locks {
    pub(crate) fn new(backend: Arc<dyn LockBackend>, sealer: Sealer, spec: RepoSpec) -> Locks {
        Locks {
            backend,
            sealer,
            spec,
        }
    }

    fn failed(&self, action: &'static str, e: &rustic_core::RusticError) -> Error {
        Error::Repository {
            job: self.spec.job.clone(),
            repository: self.spec.repository.clone(),
            action,
            message: e.display_log(),
        }
    }

    fn list(&self) -> Result<Vec<Id>, Error> {
        self.backend
            .list_locks()
            .map_err(|e| self.failed("list its locks", &e))
    }

    fn write(&self, lock: &LockFile) -> Result<Id, Error> {
        let json = serde_json::to_vec(lock).expect("a lock serialises");
        let stored = self.sealer.seal(&json);
        let id = id_of(&stored);
        self.backend
            .write_lock(&id, stored.into())
            .map_err(|e| self.failed("write its lock", &e))?;
        Ok(id)
    }

    fn remove(&self, id: &Id) -> Result<(), Error> {
        self.backend
            .remove_lock(id)
            .map_err(|e| self.failed("remove its lock", &e))
    }

    fn read(&self, id: &Id) -> Result<Read, Error> {
        let stored = match self.backend.read_lock(id) {
            Ok(stored) => stored,
            // Removed since the listing: a refresh or an unlock.
            Err(_) if !self.list()?.contains(id) => return Ok(Read::Nothing),
            Err(e) => return Err(self.failed("read its locks", &e)),
        };
        if stored.is_empty() {
            return Ok(Read::Nothing);
        }
        let Some(plain) = self.sealer.open(&stored) else {
            return Ok(Read::Unreadable(
                "it does not decrypt with the repository's key".to_owned(),
            ));
        };
        let json = match uncompressed(&plain) {
            Ok(json) => json,
            Err(why) => return Ok(Read::Unreadable(why)),
        };
        match serde_json::from_slice::<LockFile>(&json) {
            Ok(lock) if lock.time().is_some() => Ok(Read::Lock(lock)),
            Ok(lock) => Ok(Read::Unreadable(format!(
                "its time {:?} is no time",
                lock.time
            ))),
            Err(e) => Ok(Read::Unreadable(format!("it is no lock: {e}"))),
        }
    }

    /// Looks at every lock but `ours`: an error if one forbids `kind`.
    fn check(&self, kind: LockKind, host: &str, ours: Option<&Id>) -> Result<(), Error> {
        let now = Timestamp::now();
        for id in self.list()? {
            if Some(&id) == ours {
                continue;
            }
            match self.read(&id)? {
                Read::Nothing => {}
                Read::Lock(lock) if lock.is_stale(now, host) => {
                    tracing::debug!(
                        repository = %self.spec.repository,
                        lock = id.to_hex().as_str(),
                        "ignoring a stale lock of pid {} on {} from {}",
                        lock.pid, lock.hostname, lock.time
                    );
                }
                Read::Lock(lock) => {
                    if kind == LockKind::Exclusive || lock.exclusive {
                        return Err(self.locked(&id, &lock));
                    }
                }
                Read::Unreadable(why) => {
                    if kind == LockKind::Exclusive {
                        return Err(Error::LockUnreadable {
                            job: self.spec.job.clone(),
                            repository: self.spec.repository.clone(),
                            id: short(&id),
                            why,
                        });
                    }
                    tracing::warn!(
                        repository = %self.spec.repository,
                        lock = id.to_hex().as_str(),
                        "ignoring a lock that cannot be read ({why}); \
                         `restic unlock --remove-all` removes it once nothing uses the repository"
                    );
                }
            }
        }
        Ok(())
    }

    fn locked(&self, id: &Id, lock: &LockFile) -> Error {
        Error::Locked {
            job: self.spec.job.clone(),
            repository: self.spec.repository.clone(),
            by: Box::new(LockHolder {
                exclusive: lock.exclusive,
                hostname: lock.hostname.clone(),
                username: lock.username.clone(),
                pid: lock.pid,
                since: lock.time.clone(),
                id: short(id),
            }),
        }
    }

    /// Takes a lock of `kind`: looks, writes, waits, looks again.
    #[cfg(test)]
    pub(crate) fn acquire(self, kind: LockKind) -> Result<LockGuard, Error> {
        self.begin(kind)?.confirm()
    }

    /// Looks and writes a lock of `kind`: it is held only once
    /// [`Pending::confirm`] has looked again, [`RACE_WAIT`] after the
    /// write. Work that only reads the repository may go in between.
    pub(crate) fn begin(self, kind: LockKind) -> Result<Pending, Error> {
        let holder = Holder::this_process();
        self.check(kind, &holder.hostname, None)?;
        survive_sighup();
        let file = holder.lock_file(kind);
        let id = self.write(&file)?;
        Ok(Pending {
            written: Some((self, file)),
            kind,
            hostname: holder.hostname,
            id,
            at: Instant::now(),
        })
    }
}

/// A lock written and not yet confirmed (see [`Locks::begin`]): removed
/// if dropped unconfirmed.
pub(crate) struct Pending {
    written: Option<(Locks, LockFile)>,
    kind: LockKind,
    hostname: String,
    id: Id,
    at: Instant,
}

impl Pending {
    /// Waits what is left of [`RACE_WAIT`] since the write, looks again
    /// for locks that forbid this one, and holds it.
    pub(crate) fn confirm(mut self) -> Result<LockGuard, Error> {
        let (locks, file) = self.written.take().expect("confirmed once");
        let (kind, id, written) = (self.kind, self.id, self.at);
        thread::sleep(RACE_WAIT.saturating_sub(written.elapsed()));
        if let Err(e) = locks.check(kind, &self.hostname, Some(&id)) {
            if let Err(gone) = locks.remove(&id) {
                tracing::warn!("{gone}");
            }
            return Err(e);
        }
        let held = Arc::new(Held {
            locks,
            current: Mutex::new((id, file, written)),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let refresher = {
            let held = Arc::clone(&held);
            thread::Builder::new()
                .name("vigie-lock-refresh".to_owned())
                .spawn(move || held.keep_fresh(&stopped))
        };
        let refresher = match refresher {
            Ok(thread) => thread,
            Err(e) => {
                held.release();
                return Err(Error::Repository {
                    job: held.locks.spec.job.clone(),
                    repository: held.locks.spec.repository.clone(),
                    action: "start refreshing its lock",
                    message: e.to_string(),
                });
            }
        };
        Ok(LockGuard {
            held,
            kind,
            stop: Some(stop),
            refresher: Some(refresher),
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((locks, _)) = self.written.take()
            && let Err(gone) = locks.remove(&self.id)
        {
            tracing::warn!("{gone}");
        }
    }
}

/// restic before 0.16 (Debian 12 ships 0.14) tells whether the holder
/// of a lock of its host runs by sending it SIGHUP, whose default action
/// ends a process: `restic unlock`, or any restic command meeting our
/// lock, would kill a backup under way. A process that takes a lock
/// catches SIGHUP from then on (a daemon that reloads on it keeps doing
/// so: its own handler runs too).
fn survive_sighup() {
    static CAUGHT: std::sync::Once = std::sync::Once::new();
    CAUGHT.call_once(|| {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, flag) {
            tracing::warn!(
                "cannot catch SIGHUP ({e}): restic's check of a lock's holder would end this process"
            );
        }
    });
}

/// The first 8 hex digits of an id, as restic shows them.
fn short(id: &Id) -> String {
    id.to_hex().as_str()[..8].to_owned()
}

/// A lock in place, and its current file.
struct Held {
    locks: Locks,
    /// The lock's file, and when it was written.
    current: Mutex<(Id, LockFile, Instant)>,
}

impl Held {
    /// Writes the lock anew with the current time, then removes the
    /// previous file (a crash between the two leaves a lock that turns
    /// stale).
    fn refresh(&self) -> Result<(), Error> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = current.1.clone();
        file.time = Timestamp::now().to_string();
        let id = self.locks.write(&file)?;
        let old = std::mem::replace(&mut *current, (id, file, Instant::now())).0;
        drop(current);
        self.locks.remove(&old)
    }

    fn keep_fresh(&self, stop: &mpsc::Receiver<()>) {
        let mut wait = REFRESH_EVERY;
        // Anything but a timeout is the guard asking to stop.
        while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
            wait = match self.refresh() {
                Ok(()) => REFRESH_EVERY,
                Err(e) => {
                    tracing::warn!("cannot refresh the lock (trying again in a minute): {e}");
                    REFRESH_RETRY
                }
            };
        }
    }

    fn release(&self) {
        let id = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if let Err(e) = self.locks.remove(&id) {
            tracing::warn!("{e}; the lock turns stale in 30 minutes");
        }
    }
}

/// A lock held on a repository: refreshed every 5 minutes by a thread of
/// its own, removed when dropped (on an error or a panic too). A process
/// killed while holding one leaves a lock file that turns stale: at
/// once for the next run on the same host (its pid is gone), after 30
/// minutes for others.
pub struct LockGuard {
    held: Arc<Held>,
    kind: LockKind,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("kind", &self.kind)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// What this lock allows others.
    pub fn kind(&self) -> LockKind {
        self.kind
    }

    /// The id of the lock's current file (64 hex digits; it changes at
    /// each refresh).
    pub fn id(&self) -> String {
        let current = self
            .held
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.0.to_hex().to_string()
    }

    /// Writes the lock anew now, as the refresh thread does every 5
    /// minutes: a new file with the current time, the old one removed.
    pub fn refresh(&self) -> Result<(), Error> {
        self.held.refresh()
    }

    /// Whether the lock still protects what was done under it: its file
    /// is in the repository and was written less than 30 minutes ago.
    /// Otherwise ([`Error::LockLost`]) another process may have taken
    /// an exclusive lock (a prune) meanwhile: check before writing what
    /// refers to data written under the lock (a snapshot).
    pub fn still_held(&self) -> Result<(), Error> {
        let (id, written) = {
            let current = self
                .held
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (current.0, current.2)
        };
        let locks = &self.held.locks;
        let lost = |why: &str| Error::LockLost {
            job: locks.spec.job.clone(),
            repository: locks.spec.repository.clone(),
            why: why.to_owned(),
        };
        if written.elapsed() > STALE_AFTER.unsigned_abs() {
            return Err(lost("it could not be refreshed for 30 minutes"));
        }
        if !locks.list()?.contains(&id) {
            return Err(lost(
                "its file was removed (by `restic unlock --remove-all`?)",
            ));
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.refresher.take() {
            // A refresh under way finishes first, so that its new file is
            // the one removed.
            let _ = thread.join();
        }
        self.held.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::new()
    }

    #[test]
    fn sealed_files_open_with_the_same_key_only() {
        let sealer = Sealer::new(&key()).unwrap();
        let sealed = sealer.seal(b"{\"a\":1}");
        assert_eq!(sealed.len(), 7 + 32);
        assert_eq!(sealer.open(&sealed).unwrap(), b"{\"a\":1}");
        // Two seals of the same bytes differ (the nonce).
        assert_ne!(sealer.seal(b"x"), sealer.seal(b"x"));
        let other = Sealer::new(&key()).unwrap();
        assert!(other.open(&sealed).is_none());
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert!(sealer.open(&damaged).is_none());
        assert!(sealer.open(&sealed[..31]).is_none());
    }

    /// restic's version 2 files: byte 2, then zstd.
    #[test]
    fn compressed_and_plain_json_read_alike() {
        let json = br#"{"time":"2024-01-01T00:00:00Z","exclusive":true}"#;
        let mut packed = vec![2u8];
        packed.extend(zstd::stream::encode_all(&json[..], 3).unwrap());
        assert_eq!(uncompressed(&packed).unwrap(), json);
        assert_eq!(uncompressed(json).unwrap(), json);
        assert!(uncompressed(b"\x07junk").is_err());
        // A bomb stops at the bound.
        let big = vec![b' '; 1 << 20];
        let mut bomb = vec![2u8];
        bomb.extend(zstd::stream::encode_all(&big[..], 3).unwrap());
        assert!(uncompressed(&bomb).is_err());
    }

    fn lock_at(time: Timestamp, host: &str, pid: i64) -> LockFile {
        LockFile {
            time: time.to_string(),
            exclusive: true,
            hostname: host.to_owned(),
            username: "someone".to_owned(),
            pid,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn staleness_follows_restics_rules() {
        let now = Timestamp::now();
        let me = hostname();
        let alive = i64::from(std::process::id());
        let recent = now - SignedDuration::from_mins(29);
        let old = now - SignedDuration::from_mins(31);
        // Another host: only the time tells.
        assert!(!lock_at(recent, "elsewhere", 1).is_stale(now, &me));
        assert!(lock_at(old, "elsewhere", 1).is_stale(now, &me));
        // This host: a running pid holds it, a gone one does not.
        assert!(!lock_at(recent, &me, alive).is_stale(now, &me));
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = i64::from(child.id());
            child.wait().unwrap();
            pid
        };
        assert!(lock_at(recent, &me, gone).is_stale(now, &me));
        // A time in the future is no older than now.
        assert!(!lock_at(now + SignedDuration::from_mins(60), "elsewhere", 1).is_stale(now, &me));
    }

    #[test]
    fn a_lock_serialises_as_restic_writes_it() {
        let lock = LockFile {
            time: "2024-05-06T07:08:09.123456789Z".to_owned(),
            exclusive: false,
            hostname: "h".to_owned(),
            username: "root".to_owned(),
            pid: 42,
            uid: 0,
            gid: 0,
        };
        assert_eq!(
            serde_json::to_string(&lock).unwrap(),
            r#"{"time":"2024-05-06T07:08:09.123456789Z","exclusive":false,"hostname":"h","username":"root","pid":42}"#
        );
        // restic's own, with an offset and ids, and a key it may add.
        let theirs: LockFile = serde_json::from_str(
            r#"{"time":"2024-05-06T09:08:09.5+02:00","exclusive":true,"hostname":"b","username":"u","pid":7,"uid":1000,"gid":100,"extra":1}"#,
        )
        .unwrap();
        assert_eq!((theirs.uid, theirs.gid, theirs.pid), (1000, 100, 7));
        assert_eq!(
            theirs.time().unwrap(),
            "2024-05-06T07:08:09.5Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn ids_are_the_sha256_of_the_stored_bytes() {
        assert_eq!(
            id_of(b"abc").to_hex().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A repository's locks with a fresh key, in a temporary directory.
    fn new_locks() -> (tempfile::TempDir, Locks) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let spec = RepoSpec::new("job", path.to_str().unwrap()).unwrap();
        spec.location().backend().unwrap().create().unwrap();
        let backend = spec.location().lock_backend().unwrap();
        (dir, Locks::new(backend, Sealer::new(&key()).unwrap(), spec))
    }

    #[test]
    fn an_old_exclusive_lock_is_ignored_a_recent_one_refuses() {
        let (_dir, locks) = new_locks();
        let now = Timestamp::now();
        let old = locks
            .write(&lock_at(
                now - SignedDuration::from_mins(45),
                "elsewhere",
                9,
            ))
            .unwrap();
        let guard = locks.clone().acquire(LockKind::Exclusive).unwrap();
        drop(guard);
        // Ours is gone, the stale one is left where it was.
        assert_eq!(locks.list().unwrap(), vec![old]);
        locks
            .write(&lock_at(now - SignedDuration::from_mins(5), "elsewhere", 9))
            .unwrap();
        let err = locks.clone().acquire(LockKind::Shared).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, Error::Locked { by, .. } if by.exclusive && by.pid == 9),
            "{text}"
        );
        assert!(
            text.contains("exclusively") && text.contains("elsewhere"),
            "{text}"
        );
        assert!(text.contains("restic") && text.contains("unlock"), "{text}");
        // Refused, it left nothing of its own.
        assert_eq!(locks.list().unwrap().len(), 2);
    }

    #[test]
    fn unreadable_locks_refuse_only_exclusive_and_empty_ones_nothing() {
        let (_dir, locks) = new_locks();
        let empty = id_of(b"");
        locks.backend.write_lock(&empty, Vec::new().into()).unwrap();
        drop(locks.clone().acquire(LockKind::Exclusive).unwrap());
        let junk = b"not sealed with this key, nor with any key at all".to_vec();
        locks
            .backend
            .write_lock(&id_of(&junk), junk.clone().into())
            .unwrap();
        drop(locks.clone().acquire(LockKind::Shared).unwrap());
        let err = locks.clone().acquire(LockKind::Exclusive).unwrap_err();
        assert!(matches!(err, Error::LockUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("unlock --remove-all"), "{err}");
        // Sealed, but no lock inside.
        let (_dir2, other) = new_locks();
        let sealed = other.sealer.clone();
        let not_json = sealed.seal(b"[1, 2]");
        other
            .backend
            .write_lock(&id_of(&not_json), not_json.into())
            .unwrap();
        let err = other.clone().acquire(LockKind::Exclusive).unwrap_err();
        assert!(err.to_string().contains("no lock"), "{err}");
    }

    #[test]
    fn a_refresh_replaces_the_file_with_a_later_time() {
        let (_dir, locks) = new_locks();
        let guard = locks.clone().acquire(LockKind::Shared).unwrap();
        let first = guard.id();
        let Read::Lock(before) = locks.read(&first.parse().unwrap()).unwrap() else {
            panic!("our lock does not read back");
        };
        guard.refresh().unwrap();
        let second = guard.id();
        assert_ne!(first, second);
        let listed: Vec<String> = locks
            .list()
            .unwrap()
            .iter()
            .map(|id| id.to_hex().to_string())
            .collect();
        assert_eq!(listed, vec![second.clone()]);
        let Read::Lock(after) = locks.read(&second.parse().unwrap()).unwrap() else {
            panic!("the refreshed lock does not read back");
        };
        assert!(after.time().unwrap() > before.time().unwrap());
        assert_eq!((after.pid, after.exclusive), (before.pid, false));
        drop(guard);
        assert!(locks.list().unwrap().is_empty());
    }

    #[test]
    fn a_lock_removed_behind_its_back_is_no_longer_held() {
        let (_dir, locks) = new_locks();
        let guard = locks.clone().acquire(LockKind::Shared).unwrap();
        guard.still_held().unwrap();
        locks.remove(&guard.id().parse().unwrap()).unwrap();
        let err = guard.still_held().unwrap_err();
        assert!(matches!(err, Error::LockLost { .. }), "{err}");
        assert!(err.to_string().contains("removed"), "{err}");
    }

    #[test]
    fn a_panic_while_holding_removes_the_lock() {
        let (_dir, locks) = new_locks();
        let held = locks.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = held.acquire(LockKind::Exclusive).unwrap();
            panic!("the job failed");
        }));
        assert!(result.is_err());
        assert!(locks.list().unwrap().is_empty());
    }
}
