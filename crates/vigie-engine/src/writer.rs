//! The store writer: one thread owns the SQLite connection, takes results
//! and pings from a channel and commits them in batches. Check tasks never
//! wait on the disk; a full disk shows up as an error count, not a stall.

use std::collections::HashMap;
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
    let (tx, rx) = channel();
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = errors.clone();
    let thread = std::thread::Builder::new()
        .name("vigie-store".into())
        .spawn(move || run(store, &rx, retention, &counter, token_hint.as_ref()))
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
    rx: &Receiver<Op>,
    retention: Duration,
    errors: &std::sync::atomic::AtomicU64,
    token_hint: Option<&String>,
) {
    let mut last_prune = Instant::now()
        .checked_sub(PRUNE_EVERY)
        .unwrap_or_else(Instant::now);
    let mut batch: Vec<(CheckResult, StateTracker)> = Vec::new();
    let fail = |what: &str, e: &StoreError| {
        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(error = %e, "store: {what} failed");
    };
    loop {
        let first = match rx.recv_timeout(Duration::from_mins(1)) {
            Ok(op) => Some(op),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
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
                Op::Result(r, t) => batch.push((*r, t)),
                other => {
                    // Keep order: results before a ping or a snapshot land first.
                    if !batch.is_empty() {
                        if let Err(e) = store.record(&batch) {
                            fail("recording results", &e);
                        }
                        batch.clear();
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
                            match store.set_heartbeat_token(&check, &token, at) {
                                // Said once kept, so that the hint's command
                                // finds the token as soon as it is announced.
                                Ok(()) => {
                                    match crate::Hints::fill(token_hint, &[("check", &check)]) {
                                        Some(hint) => {
                                            tracing::info!(check = %check, "generated a heartbeat token; see `{hint}`");
                                        }
                                        None => {
                                            tracing::info!(check = %check, "generated a heartbeat token");
                                        }
                                    }
                                }
                                Err(e) => fail("keeping a heartbeat token", &e),
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
        if !batch.is_empty() {
            if let Err(e) = store.record(&batch) {
                fail("recording results", &e);
            }
            batch.clear();
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
