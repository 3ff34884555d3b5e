//! Dashboard logins: `[server] users` (argon2id hashes) checked one at a
//! time on the blocking pool; a session is a random 256-bit id in an
//! HttpOnly, SameSite=Strict cookie (Secure under TLS), kept in memory
//! (a restart logs everyone out) for [`SESSION_FOR`], with its own CSRF
//! token that every form of the dashboard carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordVerifier};
use axum::http::{HeaderMap, header};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "vigie_session";
/// How long a session lasts from its login.
pub(crate) const SESSION_FOR: Duration = Duration::from_hours(12);
/// The most sessions kept: past it, the oldest goes.
const MAX_SESSIONS: usize = 256;

/// One logged-in browser.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub user: String,
    pub csrf: String,
    started: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Logins are checked one at a time: a guesser gets one try per
    /// argon2 hash (tens of milliseconds), whatever its connections.
    verifying: tokio::sync::Mutex<()>,
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
    /// same work done against a fixed hash so that timing does not tell
    /// names apart); a new session when it matches.
    pub(crate) async fn login(
        &self,
        user: &str,
        password: &str,
        hash: Option<String>,
    ) -> Option<(String, Session)> {
        let _one = self.verifying.lock().await;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let phc: &str = match &hash {
                Some(h) => h,
                None => decoy(),
            };
            let ok = argon2::PasswordHash::new(phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            });
            ok && hash.is_some()
        })
        .await
        .unwrap_or(false);
        if !ok {
            return None;
        }
        let id = random_hex();
        let session = Session {
            user: user.to_owned(),
            csrf: random_hex(),
            started: Instant::now(),
        };
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, s| s.started.elapsed() < SESSION_FOR);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The live session whose id the request's cookie carries, if any,
    /// for a user still configured.
    pub(crate) fn of(&self, headers: &HeaderMap, users: &[&str]) -> Option<(String, Session)> {
        let id = cookie(headers)?;
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = map.get(id)?;
        if s.started.elapsed() >= SESSION_FOR || !users.contains(&s.user.as_str()) {
            map.remove(id);
            return None;
        }
        Some((id.to_owned(), s.clone()))
    }

    pub(crate) fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// The session id in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that starts session `id` (`None`: ends it).
pub(crate) fn set_cookie(id: Option<&str>, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_FOR.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
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

    #[tokio::test]
    async fn a_login_needs_the_right_password_and_makes_a_session_the_cookie_finds() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(vigie_config::PasswordHash::parse(&hash).is_ok());
        let s = Sessions::default();
        assert!(
            s.login("alice", "wrong", Some(hash.clone()))
                .await
                .is_none()
        );
        assert!(
            s.login("bob", "correct horse", None).await.is_none(),
            "unknown name"
        );
        let (id, session) = s.login("alice", "correct horse", Some(hash)).await.unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(id, session.csrf);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("theme=dark; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(s.of(&h, &["alice"]).unwrap().1.user, "alice");
        assert!(
            s.of(&h, &["bob"]).is_none(),
            "a user removed from the config"
        );
        assert!(
            s.of(&h, &["alice"]).is_none(),
            "and the session went with them"
        );
        let mut forged = HeaderMap::new();
        forged.insert(
            header::COOKIE,
            format!("{COOKIE}={}", "0".repeat(64)).parse().unwrap(),
        );
        assert!(s.of(&forged, &["alice"]).is_none());
        assert!(set_cookie(Some(&id), true).ends_with("; Secure"));
        assert!(set_cookie(Some(&id), false).contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn the_decoy_is_a_hash_argon2_reads() {
        assert!(vigie_config::PasswordHash::parse(decoy()).is_ok());
    }
}
