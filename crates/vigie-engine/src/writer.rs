//! The store writer: one thread owns the SQLite connection, takes results
//! and pings from a channel and commits them in batches. Check tasks never
//! wait on the disk; a full disk shows up as an error count, not a stall.
//!
//! Every run is a sample of the series ([`crate::series`]); a run gets a
//! row of `results` only when it says something new: it failed, or its
//! outcome or message differs from the check's previous run (the first
//! run after a start counts as new). A success's message that differs
//! only in its measures (`status 200 in 12ms`, then `in 14ms`: see
//! `same_words`) is not new: its numbers are the series' samples, and a
//! row per run for a latency is what this avoids. A check's remembered
//! state and counters (`check_state`) are kept here in memory and
//! written with every failure and when its state, outcome or message
//! changes, every [`STATES_EVERY`] otherwise (the rows that changed,
//! together), and on a flush (the engine's shutdown, a reload's
//! snapshot): a SIGKILL loses at most that window of a run of successes'
//! counters, never a failure's count nor a state change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use vigie_core::{CheckResult, StateTracker, Timestamp};
use vigie_store::{Heartbeat, Store, StoreError, StoredState};

use crate::heartbeat::Said;

/// What the engine needs from the store when it (re)starts.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub states: HashMap<String, StoredState>,
    pub heartbeats: HashMap<String, Heartbeat>,
}

enum Op {
    Result(Box<CheckResult>, StateTracker),
    Ping {
        check: String,
        at: Timestamp,
        said: Said,
        ran: Option<Duration>,
    },
    Token {
        check: String,
        token: String,
        at: Timestamp,
    },
    Snapshot(Sender<Result<Snapshot, StoreError>>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct Handle {
    tx: Sender<Op>,
    thread: std::thread::Thread,
    errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How often old results are pruned.
const PRUNE_EVERY: Duration = Duration::from_hours(1);
/// The most results committed in one transaction.
const BATCH: usize = 4096;
/// How long results wait to be committed together. One transaction per
/// batch instead of per result keeps the write load flat with thousands
/// of checks; a SIGKILL loses at most this window of uncommitted results.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// How often the counters of checks whose state did not change are
/// written.
pub(crate) const STATES_EVERY: Duration = Duration::from_secs(30);

/// What the writer remembers of each check between commits.
#[derive(Default)]
struct Kept {
    stored: StoredState,
    /// A run was seen since the writer started.
    ran: bool,
    /// Counted since its row was last written.
    dirty: bool,
}

/// The checks' states and the results waiting for the next commit.
struct Book {
    checks: HashMap<Arc<str>, Kept>,
    /// Results worth a row.
    rows: Vec<CheckResult>,
    /// Checks whose state changed since the last commit: written at the
    /// next one.
    changed: Vec<Arc<str>>,
    /// When every counted row was last written.
    last_all: Instant,
}

impl Book {
    fn new(states: &HashMap<String, StoredState>) -> Self {
        Self {
            checks: states
                .iter()
                .map(|(name, s)| {
                    (
                        Arc::from(name.as_str()),
                        Kept {
                            stored: s.clone(),
                            ..Kept::default()
                        },
                    )
                })
                .collect(),
            rows: Vec::new(),
            changed: Vec::new(),
            last_all: Instant::now(),
        }
    }

    /// Count a run; keep it as a row if it says something new.
    fn observe(&mut self, r: CheckResult, tracker: StateTracker) {
        let kept = match self.checks.get_mut(&r.check) {
            Some(k) => k,
            None => self.checks.entry(r.check.clone()).or_default(),
        };
        let ok = r.outcome.ok;
        let s = &mut kept.stored;
        let said_new =
            !kept.ran || s.last_ok != Some(ok) || !same_words(&s.last_message, &r.outcome.message);
        // A failure is written with its counters (its row is written
        // anyway): after a SIGKILL, the consecutive failures toward
        // `fail_after` are not counted again. Only a run of successes
        // waits, and losing it delays a recovery, never an alert.
        let changed = said_new || !ok || s.tracker.state != tracker.state;
        s.tracker = tracker;
        s.last_run = Some(r.started_at);
        s.last_ok = Some(ok);
        if s.last_message != r.outcome.message {
            s.last_message.clone_from(&r.outcome.message);
        }
        s.last_duration_ms = r.duration.as_secs_f64() * 1000.0;
        s.runs_total += 1;
        s.failures_total += u64::from(!ok);
        kept.ran = true;
        if changed {
            // Listed once per change; `commit` writes each check once.
            self.changed.push(r.check.clone());
        }
        kept.dirty = true;
        if said_new || !ok {
            self.rows.push(r);
        }
    }

    /// Write the rows waiting and the states that changed; with `all`,
    /// every state counted since its last write.
    fn commit(&mut self, store: &mut Store, all: bool) -> Result<(), StoreError> {
        let names: Vec<Arc<str>> = if all {
            self.last_all = Instant::now();
            self.changed.clear();
            self.checks
                .iter()
                .filter(|(_, k)| k.dirty)
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            let mut names = std::mem::take(&mut self.changed);
            names.sort_unstable();
            names.dedup();
            names
        };
        if self.rows.is_empty() && names.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let states = names
            .iter()
            .filter_map(|n| self.checks.get(n).map(|k| (&**n, &k.stored)));
        let written = store.record(&rows, states);
        // Written, or not: a failed row is not tried again (counted as an
        // error), a failed state is (it stays dirty).
        if written.is_ok() {
            for n in &names {
                if let Some(k) = self.checks.get_mut(n) {
                    k.dirty = false;
                }
            }
        }
        written
    }

    fn due(&self) -> bool {
        self.last_all.elapsed() >= STATES_EVERY
    }

    fn any_dirty(&self) -> bool {
        self.checks.values().any(|k| k.dirty)
    }
}

/// `a` and `b` say the same but for their measures: a number with a
/// fraction or a unit glued to it (`12ms`, `12.3 GiB`, `45%`) counts as
/// one and the same word, as the series keep it. Anything else is
/// compared as written: a count or a status code (`status 204`), an
/// address (`93.184.216.34`, `[::1]:53`), a version (`TLSv1.2`).
fn same_words(a: &str, b: &str) -> bool {
    /// The end of the measure starting at `i`, if one does.
    fn measure_end(s: &[u8], i: usize) -> Option<usize> {
        if i > 0 && (s[i - 1].is_ascii_alphanumeric() || matches!(s[i - 1], b'.' | b':')) {
            return None;
        }
        let (mut end, mut dots) = (i, 0);
        while end < s.len() {
            let digit_next = s.get(end + 1).is_some_and(u8::is_ascii_digit);
            match s[end] {
                c if c.is_ascii_digit() => {}
                b',' if digit_next => {}
                b'.' if digit_next => dots += 1,
                _ => break,
            }
            end += 1;
        }
        let after = s.get(end).copied();
        let unit = after.is_some_and(|c| c.is_ascii_alphabetic() || c == b'%');
        let address = dots > 1 || matches!(after, Some(b':' | b'.'));
        (end > i && !address && (dots == 1 || unit)).then_some(end)
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if let (Some(ei), Some(ej)) = (measure_end(a, i), measure_end(b, j)) {
            i = ei;
            j = ej;
        } else if a[i] == b[j] {
            i += 1;
            j += 1;
        } else {
            return false;
        }
    }
    i == a.len() && j == b.len()
}

fn snapshot(store: &Store) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        states: store.states()?,
        heartbeats: store
            .heartbeats()?
            .into_iter()
            .map(|h| (h.check.clone(), h))
            .collect(),
    })
}

/// `token_hint`: where a generated heartbeat token is shown (`{check}`).
pub(crate) fn spawn(
    store: Store,
    retention: Duration,
    token_hint: Option<String>,
) -> Result<(Handle, Snapshot), StoreError> {
    let snap = snapshot(&store)?;
    let states = snap.states.clone();
    let (tx, rx) = channel();
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = errors.clone();
    let thread = std::thread::Builder::new()
        .name("vigie-store".into())
        .spawn(move || {
            run(
                store,
                &states,
                &rx,
                retention,
                &counter,
                token_hint.as_ref(),
            );
        })
        .map_err(|e| StoreError::CreateDir {
            path: "store writer thread".into(),
            source: e,
        })?
        .thread()
        .clone();
    Ok((Handle { tx, thread, errors }, snap))
}

fn run(
    mut store: Store,
    states: &HashMap<String, StoredState>,
    rx: &Receiver<Op>,
    retention: Duration,
    errors: &std::sync::atomic::AtomicU64,
    token_hint: Option<&String>,
) {
    let mut last_prune = Instant::now()
        .checked_sub(PRUNE_EVERY)
        .unwrap_or_else(Instant::now);
    let mut book = Book::new(states);
    let fail = |what: &str, e: &StoreError| {
        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(error = %e, "store: {what} failed");
    };
    loop {
        // Counted states wait at most `STATES_EVERY` for a write.
        let wait = if book.any_dirty() {
            STATES_EVERY.saturating_sub(book.last_all.elapsed())
        } else {
            Duration::from_mins(1)
        };
        let first = match rx.recv_timeout(wait) {
            Ok(op) => Some(op),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = book.commit(&mut store, true) {
                    fail("recording results", &e);
                }
                return;
            }
        };
        let mut ops: Vec<Op> = first.into_iter().collect();
        // A result waits for company: the thread parks for the batch
        // window, during which senders do not wake it. Pings, tokens and
        // anyone waiting on an answer unpark it at once (see `urgent`).
        if ops.last().is_some_and(|op| matches!(op, Op::Result(..))) {
            std::thread::park_timeout(BATCH_WINDOW);
        }
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        for op in ops {
            match op {
                Op::Result(r, t) => book.observe(*r, t),
                other => {
                    // Keep order: results before a ping or a snapshot
                    // land first; a snapshot or a flush sees every count.
                    let all = matches!(other, Op::Snapshot(_) | Op::Flush(_));
                    if let Err(e) = book.commit(&mut store, all) {
                        fail("recording results", &e);
                    }
                    match other {
                        Op::Ping {
                            check,
                            at,
                            said,
                            ran,
                        } => {
                            let ran_ms = ran.and_then(|d| i64::try_from(d.as_millis()).ok());
                            let body = said.body.as_deref();
                            if let Err(e) =
                                store.heartbeat_ping(&check, at, said.what, ran_ms, body)
                            {
                                fail("recording a ping", &e);
                            }
                        }
                        Op::Token { check, token, at } => {
                            if let Err(e) = keep_token(&mut store, &check, &token, at, token_hint) {
                                fail("keeping a heartbeat token", &e);
                            }
                        }
                        Op::Snapshot(reply) => {
                            let _ = reply.send(snapshot(&store));
                        }
                        Op::Flush(done) => flushes.push(done),
                        Op::Result(..) => unreachable!("handled above"),
                    }
                }
            }
        }
        let all = book.due();
        if let Err(e) = book.commit(&mut store, all) {
            fail("recording results", &e);
        }
        for done in flushes {
            let _ = done.send(());
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let before = Timestamp::now()
                .millis()
                .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            match store.prune(Timestamp(before)) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "old check results pruned"),
                Err(e) => fail("pruning", &e),
            }
        }
    }
}

/// Keep a generated heartbeat token, and say where it is shown: said
/// once kept, so that the hint's command finds the token as soon as it
/// is announced.
fn keep_token(
    store: &mut Store,
    check: &str,
    token: &str,
    at: Timestamp,
    token_hint: Option<&String>,
) -> Result<(), StoreError> {
    store.set_heartbeat_token(check, token, at)?;
    if let Some(hint) = crate::Hints::fill(token_hint, &[("check", check)]) {
        tracing::info!(check = %check, "generated a heartbeat token; see `{hint}`");
    } else {
        tracing::info!(check = %check, "generated a heartbeat token");
    }
    Ok(())
}

impl Handle {
    pub(crate) fn result(&self, r: CheckResult, t: StateTracker) {
        let _ = self.tx.send(Op::Result(Box::new(r), t));
    }

    /// Send an op that must not wait for the batch window.
    fn urgent(&self, op: Op) -> bool {
        let sent = self.tx.send(op).is_ok();
        self.thread.unpark();
        sent
    }

    pub(crate) fn ping(&self, check: &str, at: Timestamp, said: Said, ran: Option<Duration>) {
        self.urgent(Op::Ping {
            check: check.to_owned(),
            at,
            said,
            ran,
        });
    }

    pub(crate) fn token(&self, check: &str, token: &str, at: Timestamp) {
        self.urgent(Op::Token {
            check: check.to_owned(),
            token: token.to_owned(),
            at,
        });
    }

    pub(crate) fn read_snapshot(&self) -> Result<Snapshot, StoreError> {
        let (tx, rx) = channel();
        if !self.urgent(Op::Snapshot(tx)) {
            return Ok(Snapshot::default());
        }
        rx.recv().unwrap_or_else(|_| Ok(Snapshot::default()))
    }

    pub(crate) async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.urgent(Op::Flush(tx)) {
            let _ = rx.await;
        }
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use vigie_core::{CheckResult, CheckState, Outcome, StateTracker, Thresholds, Timestamp};
    use vigie_store::{HeartbeatPing, Store};

    use super::{Handle, spawn};
    use crate::heartbeat::Said;

    /// Runs of one check, judged by a real tracker, handed to a writer.
    struct Runs {
        handle: Handle,
        tracker: StateTracker,
        at: i64,
    }

    impl Runs {
        fn new(dir: &std::path::Path) -> (Self, super::Snapshot) {
            let (handle, snap) =
                spawn(Store::open(dir).unwrap(), Duration::from_hours(1), None).unwrap();
            let tracker = snap
                .states
                .get("web")
                .map(|s| s.tracker)
                .unwrap_or_default();
            let runs = Self {
                handle,
                tracker,
                at: Timestamp::now().millis(),
            };
            (runs, snap)
        }

        fn run(&mut self, outcome: Outcome) {
            self.at += 5_000;
            let t = Thresholds {
                fail_after: 2,
                recover_after: 1,
            };
            self.tracker.observe(outcome.ok, t, Timestamp(self.at));
            self.handle.result(
                CheckResult {
                    check: Arc::from("web"),
                    started_at: Timestamp(self.at),
                    lag: Duration::from_millis(1),
                    duration: Duration::from_millis(3),
                    outcome,
                },
                self.tracker,
            );
        }

        /// Wait until what was handed before is committed, without a
        /// flush: a ping lands after the results sent before it.
        fn settle(&self, dir: &std::path::Path) {
            let at = Timestamp(self.at);
            self.handle.ping(
                "marker",
                at,
                Said {
                    what: HeartbeatPing::Success,
                    body: None,
                },
                None,
            );
            let store = Store::open(dir).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !store
                .heartbeats()
                .unwrap()
                .iter()
                .any(|h| h.last_ping == Some(at))
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the writer never took the ping"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn messages(dir: &std::path::Path) -> Vec<(bool, String)> {
        let mut rows: Vec<(bool, String)> = Store::open(dir)
            .unwrap()
            .recent_results("web", 100)
            .unwrap()
            .into_iter()
            .map(|r| (r.ok, r.message))
            .collect();
        rows.reverse();
        rows
    }

    #[tokio::test]
    async fn a_repeated_success_writes_no_row_but_a_failure_or_a_new_message_does() {
        let dir = tempfile::tempdir().unwrap();
        let (mut runs, _) = Runs::new(dir.path());
        // Only the latency changes: its number is a sample, not news.
        for ms in [12, 9, 140] {
            runs.run(Outcome::ok(format!("status 200 in {ms}ms")));
        }
        for _ in 0..2 {
            runs.run(Outcome::fail("status 500 in 3ms"));
        }
        runs.run(Outcome::ok("status 200 in 12ms"));
        runs.run(Outcome::ok("status 200 in 1.05s"));
        runs.run(Outcome::ok("status 200 in 1.30s"));
        runs.run(Outcome::ok("status 200 in 1.30s"));
        runs.handle.flush().await;
        assert_eq!(
            messages(dir.path()),
            [
                (true, "status 200 in 12ms".to_owned()),
                (false, "status 500 in 3ms".to_owned()),
                (false, "status 500 in 3ms".to_owned()),
                (true, "status 200 in 12ms".to_owned()),
                (true, "status 200 in 1.05s".to_owned()),
            ],
            "the first run, each failure, each change of outcome or words"
        );
        let states = Store::open(dir.path()).unwrap().states().unwrap();
        let web = &states["web"];
        assert_eq!((web.runs_total, web.failures_total), (9, 2), "{web:?}");
        assert_eq!(web.tracker, runs.tracker);
        assert_eq!(web.last_message, "status 200 in 1.30s", "the last, exactly");
        assert_eq!(web.last_run, Some(Timestamp(runs.at)));
    }

    #[test]
    fn messages_are_the_same_but_for_their_numbers() {
        use super::same_words;
        assert!(same_words("status 200 in 12ms", "status 200 in 140ms"));
        assert!(same_words(
            "12.3 GiB free of 40 GiB",
            "9.87 GiB free of 40 GiB"
        ));
        assert!(same_words("1,024.5 MiB", "998.0 MiB"));
        assert!(same_words("load 45%", "load 7%"));
        assert!(same_words("", ""));
        // A count, a status code, an address or a version is a change.
        assert!(!same_words("1,024 files", "998 files"));
        assert!(!same_words("status 200 in 12ms", "status 204 in 12ms"));
        assert!(!same_words(
            "example.org → 93.184.216.34",
            "example.org → 203.0.113.9"
        ));
        assert!(!same_words("TLSv1.3 until 2027", "TLSv1.2 until 2027"));
        assert!(!same_words(
            "answered from 10.0.0.1:53",
            "answered from 10.0.0.2:53"
        ));
        assert!(!same_words("status 200 in 1.2s", "status 200 in 45ms"));
        assert!(!same_words("connected in 3ms", "refused in 3ms"));
        assert!(!same_words("disk / ok", "disk /home ok"));
        assert!(!same_words("up 3", "up 3 of 4"));
        assert!(!same_words("version 1.2.", "version 1.2"));
    }

    #[tokio::test]
    async fn counters_wait_for_a_change_or_a_flush_and_a_restart_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut runs, _) = Runs::new(dir.path());
            runs.run(Outcome::ok("200 OK"));
            runs.settle(dir.path());
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(stored["web"].runs_total, 1, "{stored:?}");
            // Its repeats are only counted.
            for _ in 0..3 {
                runs.run(Outcome::ok("200 OK"));
            }
            runs.settle(dir.path());
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(stored["web"].runs_total, 1, "{stored:?}");
            // A failure is a change of outcome: written at once.
            runs.run(Outcome::fail("500"));
            runs.settle(dir.path());
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(
                (stored["web"].runs_total, stored["web"].failures_total),
                (5, 1)
            );
            // The second turns it failing: a change of state.
            runs.run(Outcome::fail("500"));
            runs.settle(dir.path());
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(stored["web"].runs_total, 6);
            assert_eq!(stored["web"].tracker.state, CheckState::Failing);
            // Failures are written with their counters (a SIGKILL must
            // not forget how many failed in a row).
            runs.run(Outcome::fail("500"));
            runs.run(Outcome::fail("500"));
            runs.settle(dir.path());
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(stored["web"].runs_total, 8);
            assert_eq!(stored["web"].tracker.consecutive_fail, 4);
            // Recovered, successes are only counted, until the flush.
            for _ in 0..3 {
                runs.run(Outcome::ok("200 OK"));
            }
            runs.settle(dir.path());
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(stored["web"].tracker.state, CheckState::Ok);
            runs.run(Outcome::ok("200 OK"));
            runs.run(Outcome::ok("200 OK"));
            runs.settle(dir.path());
            let again = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(again["web"].runs_total, stored["web"].runs_total);
            runs.handle.flush().await;
            let stored = Store::open(dir.path()).unwrap().states().unwrap();
            assert_eq!(stored["web"].runs_total, 13);
            // Back to failing for the restart below.
            for _ in 0..4 {
                runs.run(Outcome::fail("500"));
            }
            runs.handle.flush().await;
        }
        // A restart: the counters and the state come back and go on.
        let (mut runs, snap) = Runs::new(dir.path());
        let web = &snap.states["web"];
        assert_eq!((web.runs_total, web.failures_total), (17, 8));
        assert_eq!(web.tracker.state, CheckState::Failing);
        assert_eq!(web.tracker.consecutive_fail, 4);
        let rows = messages(dir.path()).len();
        runs.run(Outcome::fail("500"));
        runs.run(Outcome::ok("200 OK"));
        runs.run(Outcome::ok("200 OK"));
        runs.handle.flush().await;
        assert_eq!(messages(dir.path()).len(), rows + 2);
        let web = &Store::open(dir.path()).unwrap().states().unwrap()["web"];
        assert_eq!((web.runs_total, web.failures_total), (20, 9));
    }
}
