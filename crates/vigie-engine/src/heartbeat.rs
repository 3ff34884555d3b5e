//! The heartbeat book: tokens and the last signals of every heartbeat
//! check, kept in memory and mirrored to the store. Tokens are held as
//! their SHA-256, as the store keeps them: a ping's token is hashed and
//! compared, so the daemon needs no generated token in plain.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use tokio::sync::Notify;
use vigie_config::{Config, Probe};
use vigie_core::Timestamp;
use vigie_probe::HeartbeatSignals;
use vigie_store::HeartbeatPing;

use crate::writer::{Handle, Snapshot};

/// Why a ping was refused. The two answers are deliberately coarse: a
/// caller without a valid token learns nothing about which names exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("unauthorized: wrong or missing token")]
    Unauthorized,
    #[error("not found")]
    NotFound,
}

struct Entry {
    token_sha256: String,
    signals: HeartbeatSignals,
    notify: Arc<Notify>,
}

#[derive(Default)]
pub(crate) struct Book {
    entries: BTreeMap<String, Entry>,
}

/// 128 random bits, hex.
fn new_token() -> String {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the kernel's random source failed: {e}"),
        }
    }
    buf.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Book {
    pub(crate) fn install(
        &mut self,
        config: &Config,
        snap: &Snapshot,
        now: Timestamp,
        writer: &Handle,
        wakes: &BTreeMap<String, Arc<Notify>>,
    ) {
        let old = std::mem::take(&mut self.entries);
        for check in &config.checks {
            let Probe::Heartbeat(spec) = &check.probe else {
                continue;
            };
            let stored = snap.heartbeats.get(&check.name);
            let previous = old.get(&check.name);
            let stored_hash = stored.and_then(|s| s.token_sha256.clone());
            let token_sha256 = match (&spec.token, previous, stored_hash) {
                (Some(t), _, _) => vigie_store::token_sha256(t.expose()),
                (None, Some(p), _) => p.token_sha256.clone(),
                (None, None, Some(h)) => h,
                (None, None, None) => {
                    let t = new_token();
                    writer.token(&check.name, &t, now);
                    vigie_store::token_sha256(&t)
                }
            };
            let signals = previous.map_or_else(
                || HeartbeatSignals {
                    last_ping: stored.and_then(|s| s.last_ping),
                    last_fail: stored.and_then(|s| s.last_fail),
                    last_fail_status: stored.and_then(|s| s.last_fail_status),
                    watching_since: now,
                },
                |p| p.signals,
            );
            let notify = wakes.get(&check.name).cloned().unwrap_or_default();
            self.entries.insert(
                check.name.clone(),
                Entry {
                    token_sha256,
                    signals,
                    notify,
                },
            );
        }
    }

    pub(crate) fn ping(
        &mut self,
        name: &str,
        token: &str,
        what: HeartbeatPing,
        at: Timestamp,
        writer: &Handle,
    ) -> Result<Arc<Notify>, PingError> {
        // Compare against every token so the answer takes the same time
        // whichever name was asked.
        let presented = vigie_store::token_sha256(token);
        let mut valid_anywhere = false;
        let mut valid_here = false;
        for (n, e) in &self.entries {
            if vigie_core::constant_time_eq(&e.token_sha256, &presented) {
                valid_anywhere = true;
                valid_here |= n == name;
            }
        }
        if !valid_anywhere {
            return Err(PingError::Unauthorized);
        }
        let Some(entry) = self.entries.get_mut(name) else {
            return Err(PingError::NotFound);
        };
        if !valid_here {
            return Err(PingError::Unauthorized);
        }
        match what {
            HeartbeatPing::Success => entry.signals.last_ping = Some(at),
            HeartbeatPing::Failure { exit_status } => {
                entry.signals.last_fail = Some(at);
                entry.signals.last_fail_status = exit_status;
            }
        }
        writer.ping(name, at, what);
        Ok(entry.notify.clone())
    }

    pub(crate) fn signals(&self, name: &str) -> Option<HeartbeatSignals> {
        self.entries.get(name).map(|e| e.signals)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_random_hex() {
        let a = super::new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::new_token());
    }
}
