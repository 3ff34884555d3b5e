//! The heartbeat book: tokens and the last signals of every heartbeat
//! check, kept in memory and mirrored to the store. Tokens are held as
//! their SHA-256, as the store keeps them: a ping's token is hashed and
//! compared, so the daemon needs no generated token in plain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    vigie_core::hex(&buf)
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
            let signals =
                previous.map_or_else(|| stored_signals(stored, now), |p| p.signals.clone());
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

    /// Whether `token` may ping `name`, without recording anything.
    pub(crate) fn authorize(&self, name: &str, token: &str) -> Result<(), PingError> {
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
        if !self.entries.contains_key(name) {
            return Err(PingError::NotFound);
        }
        if !valid_here {
            return Err(PingError::Unauthorized);
        }
        Ok(())
    }

    pub(crate) fn ping(
        &mut self,
        name: &str,
        token: &str,
        said: Said,
        at: Timestamp,
        writer: &Handle,
    ) -> Result<Arc<Notify>, PingError> {
        self.authorize(name, token)?;
        let Some(entry) = self.entries.get_mut(name) else {
            return Err(PingError::NotFound);
        };
        let ran = record(&mut entry.signals, &said, at);
        writer.ping(name, at, said, ran);
        Ok(entry.notify.clone())
    }

    pub(crate) fn signals(&self, name: &str) -> Option<HeartbeatSignals> {
        self.entries.get(name).map(|e| e.signals.clone())
    }
}

/// The signals the store kept, `watching_since` the given time.
pub(crate) fn stored_signals(
    stored: Option<&vigie_store::Heartbeat>,
    watching_since: Timestamp,
) -> HeartbeatSignals {
    let Some(h) = stored else {
        return HeartbeatSignals {
            watching_since,
            ..HeartbeatSignals::default()
        };
    };
    HeartbeatSignals {
        last_ping: h.last_ping,
        last_fail: h.last_fail,
        last_fail_status: h.last_fail_status,
        last_start: h.last_start,
        last_duration: h
            .last_duration_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis),
        last_body: h.last_body.as_deref().map(Arc::from),
        watching_since,
    }
}

/// What a job said: its ping, and the body it sent with it (already
/// cut, and without its token).
#[derive(Clone, Debug)]
pub(crate) struct Said {
    pub(crate) what: HeartbeatPing,
    pub(crate) body: Option<Arc<str>>,
}

impl Said {
    /// `body` cut to [`vigie_probe::HEARTBEAT_MAX_BODY`] (the rest is
    /// dropped, not refused), read as UTF-8 (lossily), the token it may
    /// echo masked; `None` when nothing is left.
    pub(crate) fn new(what: HeartbeatPing, body: &[u8], token: &str) -> Self {
        let cut = &body[..body.len().min(vigie_probe::HEARTBEAT_MAX_BODY)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if cut.len() < body.len() {
            // The cut may split a character: drop its remains.
            while text.ends_with('\u{FFFD}') {
                text.pop();
            }
        }
        if !token.is_empty() {
            text = text.replace(token, "<token>");
        }
        let body = (!text.trim().is_empty()).then(|| Arc::from(text));
        Self { what, body }
    }
}

/// What `said` at `at` changes; returns how long the run it ends took
/// (from its start), for the store.
fn record(s: &mut HeartbeatSignals, said: &Said, at: Timestamp) -> Option<Duration> {
    let ran = s.running_since().map(|start| start.age(at));
    match said.what {
        HeartbeatPing::Start => {
            s.last_start = Some(at);
            return None;
        }
        HeartbeatPing::Success => s.last_ping = Some(at),
        HeartbeatPing::Failure { exit_status } => {
            s.last_fail = Some(at);
            s.last_fail_status = exit_status;
        }
    }
    s.last_duration = ran;
    s.last_body.clone_from(&said.body);
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(what: HeartbeatPing) -> Said {
        Said { what, body: None }
    }

    #[test]
    fn a_finished_run_is_timed_from_its_start_only() {
        let at = |s: i64| Timestamp(s * 1000);
        let mut s = HeartbeatSignals::default();
        assert_eq!(record(&mut s, &plain(HeartbeatPing::Success), at(10)), None);
        assert_eq!(record(&mut s, &plain(HeartbeatPing::Start), at(20)), None);
        let failed = HeartbeatPing::Failure {
            exit_status: Some(2),
        };
        assert_eq!(
            record(&mut s, &plain(failed), at(25)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(s.last_duration, Some(Duration::from_secs(5)));
        // A success with no start before it has no duration.
        assert_eq!(record(&mut s, &plain(HeartbeatPing::Success), at(30)), None);
        assert_eq!(s.last_duration, None);
        // A second start restarts the clock.
        record(&mut s, &plain(HeartbeatPing::Start), at(40));
        record(&mut s, &plain(HeartbeatPing::Start), at(41));
        assert_eq!(
            record(&mut s, &plain(HeartbeatPing::Success), at(44)),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn a_body_is_cut_to_10_kb_and_never_holds_the_token() {
        let long = format!(
            "{}é and more",
            "a".repeat(vigie_probe::HEARTBEAT_MAX_BODY - 1)
        );
        let said = Said::new(HeartbeatPing::Success, long.as_bytes(), "tok");
        let kept = said.body.unwrap();
        assert_eq!(
            kept.len(),
            vigie_probe::HEARTBEAT_MAX_BODY - 1,
            "the split é dropped"
        );
        let echoed = Said::new(
            HeartbeatPing::Success,
            b"curl https://x/ping/job?token=s3cr3t failed",
            "s3cr3t",
        );
        assert_eq!(
            echoed.body.as_deref(),
            Some("curl https://x/ping/job?token=<token> failed")
        );
        assert!(
            Said::new(HeartbeatPing::Success, b" \n", "t")
                .body
                .is_none()
        );
        let mut s = HeartbeatSignals::default();
        record(
            &mut s,
            &Said::new(HeartbeatPing::Success, b"fine", "t"),
            Timestamp(1),
        );
        assert_eq!(s.last_body.as_deref(), Some("fine"));
        // A start keeps the body of the run before; a bare ping clears it.
        record(
            &mut s,
            &Said::new(HeartbeatPing::Start, b"begin", "t"),
            Timestamp(2),
        );
        assert_eq!(s.last_body.as_deref(), Some("fine"));
        record(&mut s, &plain(HeartbeatPing::Success), Timestamp(3));
        assert_eq!(s.last_body, None);
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = super::new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::new_token());
    }
}
