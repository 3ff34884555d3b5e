//! Dashboard logins: `[server] users` (argon2id hashes) checked one at a
//! time on the blocking pool; a session is a random 256-bit id in an
//! HttpOnly, SameSite=Strict cookie (Secure under TLS), kept in memory
//! (a restart logs everyone out) for [`SESSION_FOR`], with its own CSRF
//! token that every form of the dashboard carries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordVerifier};
use axum::http::{HeaderMap, header};

/// The session cookie's name over HTTP.
pub(crate) const COOKIE: &str = "vigie_session";
/// Its name under TLS: a `__Host-` cookie cannot be set by a sibling
/// domain (no `Domain`, `Path=/`, `Secure`).
pub(crate) const HOST_COOKIE: &str = "__Host-vigie_session";
/// The most sessions of one user: past it, that user's oldest goes (one
/// user logging in again and again pushes out no one else).
const PER_USER: usize = 16;
/// How long a session lasts from its login.
pub(crate) const SESSION_FOR: Duration = Duration::from_hours(12);
/// The most sessions kept: past it, the oldest goes.
const MAX_SESSIONS: usize = 256;

/// Failed logins of a user before each further one waits.
const FREE_FAILURES: u32 = 5;
/// The longest wait between two tries of a user past [`FREE_FAILURES`].
const MAX_BACKOFF: Duration = Duration::from_mins(15);

/// One logged-in browser.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub user: String,
    pub csrf: String,
    started: Instant,
    /// The hash the user logged in with: a new password ends the session.
    hash: String,
}

/// Why a login was not let in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Wrong user name or password.
    Wrong,
    /// Another login is being checked, or this user failed too often
    /// lately: try again in a while.
    Busy,
}

#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Logins are checked one at a time and never queued: a guesser gets
    /// one try per argon2 hash, and one more login while a hash is being
    /// computed is answered "busy" at once, so that logins never hold the
    /// server's connections. Set until the computation ends, even when
    /// the request that started it was dropped.
    verifying: Arc<AtomicBool>,
    /// Each configured user's recent failures: (count, last).
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Clears the `verifying` flag when the hash computation ends.
struct Verifying(Arc<AtomicBool>);

impl Drop for Verifying {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// 32 random bytes from the kernel, in hex.
fn random_hex() -> String {
    let mut b = [0u8; 32];
    let mut filled = 0;
    while filled < b.len() {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the kernel's random source failed: {e}"),
        }
    }
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    })
}

impl Sessions {
    /// Check `password` against `user`'s hash (`None`: no such user, the
    /// same work done against a hash of no one's so that timing does not
    /// tell names apart); a new session when it matches.
    pub(crate) async fn login(
        &self,
        user: &str,
        password: &str,
        hash: Option<String>,
    ) -> Result<(String, Session), Refused> {
        if hash.is_some() && self.backing_off(user) {
            return Err(Refused::Busy);
        }
        if self
            .verifying
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Refused::Busy);
        }
        let busy = Verifying(self.verifying.clone());
        let password = password.to_owned();
        let phc = hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _busy = busy;
            let phc: &str = match &phc {
                Some(h) => h,
                None => decoy(),
            };
            argon2::PasswordHash::new(phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        let Some(hash) = hash.filter(|_| ok) else {
            self.failed(user);
            return Err(Refused::Wrong);
        };
        self.lock_failures().remove(user);
        let id = random_hex();
        let session = Session {
            user: user.to_owned(),
            csrf: random_hex(),
            started: Instant::now(),
            hash,
        };
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, s| s.started.elapsed() < SESSION_FOR);
        let mine = map.values().filter(|s| s.user == user).count();
        if (mine >= PER_USER || map.len() >= MAX_SESSIONS)
            && let Some(oldest) = map
                .iter()
                .filter(|(_, s)| mine < PER_USER || s.user == user)
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `user` failed [`FREE_FAILURES`] times or more and must
    /// still wait: 1 s after the fifth failure, doubling after each,
    /// up to [`MAX_BACKOFF`].
    fn backing_off(&self, user: &str) -> bool {
        let failures = self.lock_failures();
        let Some(&(n, last)) = failures.get(user) else {
            return false;
        };
        n >= FREE_FAILURES && last.elapsed() < backoff(n)
    }

    /// Count a failure of `user` (only configured users are kept: an
    /// unknown name costs no memory).
    fn failed(&self, user: &str) {
        let mut failures = self.lock_failures();
        if let Some((n, last)) = failures.get_mut(user) {
            *n = n.saturating_add(1);
            *last = Instant::now();
        }
    }

    /// Start counting failures of the configured `users`.
    pub(crate) fn know(&self, users: &[&str]) {
        let mut failures = self.lock_failures();
        failures.retain(|u, _| users.contains(&u.as_str()));
        for u in users {
            failures
                .entry((*u).to_owned())
                .or_insert((0, Instant::now()));
        }
    }

    /// The live session whose id the request's cookie carries, if any,
    /// for a user still configured with the same password.
    /// Every cookie of the session's name is tried (one planted beside
    /// it cannot hide it).
    pub(crate) fn of(
        &self,
        headers: &HeaderMap,
        users: &BTreeMap<String, vigie_config::PasswordHash>,
        https: bool,
    ) -> Option<(String, Session)> {
        cookies(headers, https).find_map(|id| self.alive(id, users).map(|s| (id.to_owned(), s)))
    }

    /// Session `id`, if it is still good for `users`.
    pub(crate) fn alive(
        &self,
        id: &str,
        users: &BTreeMap<String, vigie_config::PasswordHash>,
    ) -> Option<Session> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = map.get(id)?;
        let same = users.get(&s.user).is_some_and(|h| h.phc() == s.hash);
        if s.started.elapsed() >= SESSION_FOR || !same {
            map.remove(id);
            return None;
        }
        Some(s.clone())
    }

    pub(crate) fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// How long a user who failed `n` times waits before the next try.
fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(FREE_FAILURES).min(10);
    Duration::from_secs(1u64 << doublings).min(MAX_BACKOFF)
}

/// The session ids in the request's `Cookie` headers, under the name
/// this server gives its cookie.
fn cookies(headers: &HeaderMap, https: bool) -> impl Iterator<Item = &str> {
    let name = if https { HOST_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that starts session `id` (`None`: ends it).
pub(crate) fn set_cookie(id: Option<&str>, https: bool) -> String {
    let (name, secure) = if https {
        (HOST_COOKIE, "; Secure")
    } else {
        (COOKIE, "")
    };
    match id {
        Some(id) => format!(
            "{name}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_FOR.as_secs()
        ),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// A hash of no one's password (made once, of random bytes), verified
/// when the name is unknown.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_hex()).unwrap_or_default())
}

/// An argon2id hash of `password` (argon2's default parameters: 19 MiB,
/// 2 passes) with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let mut salt = [0u8; 16];
    rustix::rand::getrandom(&mut salt, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| format!("the kernel's random source: {e}"))?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(hash: &str) -> BTreeMap<String, vigie_config::PasswordHash> {
        BTreeMap::from([(
            "alice".to_owned(),
            vigie_config::PasswordHash::parse(hash).unwrap(),
        )])
    }

    #[tokio::test]
    async fn a_login_needs_the_right_password_and_makes_a_session_the_cookie_finds() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let s = Sessions::default();
        s.know(&["alice"]);
        assert_eq!(
            s.login("alice", "wrong", Some(hash.clone()))
                .await
                .unwrap_err(),
            Refused::Wrong
        );
        assert_eq!(
            s.login("bob", "correct horse", None).await.unwrap_err(),
            Refused::Wrong,
            "unknown name"
        );
        let (id, session) = s
            .login("alice", "correct horse", Some(hash.clone()))
            .await
            .unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(id, session.csrf);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("theme=dark; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(s.of(&h, &users(&hash), false).unwrap().1.user, "alice");
        assert!(
            s.of(&h, &users(&hash), true).is_none(),
            "under TLS only the __Host- cookie counts"
        );
        // A cookie planted before it (another site of the domain) does
        // not hide it.
        let mut planted = HeaderMap::new();
        planted.insert(
            header::COOKIE,
            format!("{COOKIE}={}; {COOKIE}={id}", "a".repeat(64))
                .parse()
                .unwrap(),
        );
        assert_eq!(s.of(&planted, &users(&hash), false).unwrap().0, id);
        let other = hash_password("a new password").unwrap();
        assert!(s.of(&h, &users(&other), false).is_none(), "a new password");
        assert!(
            s.of(&h, &users(&hash), false).is_none(),
            "and the session went with the old one"
        );
        let mut forged = HeaderMap::new();
        forged.insert(
            header::COOKIE,
            format!("{COOKIE}={}", "0".repeat(64)).parse().unwrap(),
        );
        assert!(s.of(&forged, &users(&hash), false).is_none());
        assert!(set_cookie(Some(&id), true).starts_with("__Host-vigie_session="));
        assert!(set_cookie(Some(&id), true).ends_with("; Secure"));
        assert!(set_cookie(Some(&id), false).contains("HttpOnly; SameSite=Strict"));
    }

    #[tokio::test]
    async fn a_user_who_keeps_failing_waits_longer_each_time_and_a_second_login_is_not_queued() {
        let hash = hash_password("correct horse").unwrap();
        let s = Sessions::default();
        s.know(&["alice"]);
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                s.login("alice", "guess", Some(hash.clone()))
                    .await
                    .unwrap_err(),
                Refused::Wrong
            );
        }
        assert_eq!(
            s.login("alice", "correct horse", Some(hash.clone()))
                .await
                .unwrap_err(),
            Refused::Busy,
            "even the right password waits its turn"
        );
        assert_eq!(backoff(FREE_FAILURES), Duration::from_secs(1));
        assert_eq!(backoff(FREE_FAILURES + 3), Duration::from_secs(8));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        // While a hash is computed, another login is answered at once.
        s.verifying.store(true, Ordering::Release);
        assert_eq!(s.login("bob", "x", None).await.unwrap_err(), Refused::Busy);
    }

    #[tokio::test]
    async fn one_user_logging_in_again_and_again_pushes_out_only_their_own_sessions() {
        let hash = hash_password("correct horse").unwrap();
        let s = Sessions::default();
        let (first, _) = s
            .login("bob", "correct horse", Some(hash.clone()))
            .await
            .unwrap();
        let mut alice = Vec::new();
        for _ in 0..=PER_USER {
            alice.push(
                s.login("alice", "correct horse", Some(hash.clone()))
                    .await
                    .unwrap()
                    .0,
            );
        }
        let both = BTreeMap::from([
            (
                "alice".to_owned(),
                vigie_config::PasswordHash::parse(&hash).unwrap(),
            ),
            (
                "bob".to_owned(),
                vigie_config::PasswordHash::parse(&hash).unwrap(),
            ),
        ]);
        assert!(s.alive(&first, &both).is_some(), "bob's session stays");
        assert!(s.alive(&alice[0], &both).is_none(), "alice's oldest went");
        assert!(s.alive(&alice[PER_USER], &both).is_some());
    }

    #[test]
    fn the_decoy_is_a_hash_argon2_reads() {
        assert!(vigie_config::PasswordHash::parse(decoy()).is_ok());
    }
}
