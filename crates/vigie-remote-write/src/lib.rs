//! Prometheus remote write (1.0): every `interval`, the samples of
//! vigie's `/metrics` (read through a [`Source`] the caller gives, so
//! that the page and what is sent never differ) as one `WriteRequest`
//! (`proto`, encoded by hand), snappy-compressed (block format), queued
//! within a bound (`queue`) and sent in order to each `[[remote_write]]`
//! endpoint. Network errors, timeouts, 429 and 5xx are retried with
//! exponential backoff; another 4xx drops the batch (the endpoint will
//! never take it). Each endpoint's counters ([`Stats`]) are
//! `vigie_remote_write_*` on `/metrics`.

pub mod proto;
pub mod queue;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use vigie_config::{RemoteAuth, RemoteWrite};
use vigie_metrics::{Kind, Sample, Series};

use queue::Queue;

/// The version header the spec asks for.
pub const PROTOCOL_VERSION: &str = "0.1.0";
/// The first wait after a failed send; doubled after each, up to
/// [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest an endpoint's `Retry-After` is obeyed (a larger one is cut
/// to this, so a misconfigured endpoint cannot stop delivery for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_mins(5);

/// What the samples are read from: `/metrics`' own collection.
pub type Source = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<Series>> + Send>> + Send + Sync>;

/// One endpoint's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// The endpoint's name (`remote` label).
    pub name: String,
    /// Samples the endpoint accepted.
    pub samples: AtomicU64,
    /// Requests that failed and were retried (network, timeout, 429, 5xx).
    pub failed: AtomicU64,
    /// Samples of batches the endpoint refused (another 4xx).
    pub rejected: AtomicU64,
    /// Samples of the oldest batches dropped while the queue was full.
    pub overflowed: AtomicU64,
    /// When the endpoint last accepted a batch (milliseconds since the
    /// epoch), 0 before.
    pub last_success_ms: AtomicU64,
    /// What waits in the queue now, in bytes.
    pub queue_bytes: AtomicU64,
}

/// The `vigie_remote_write_*` samples of `stats` (none without endpoints).
pub fn samples(stats: &[Arc<Stats>]) -> Vec<Sample> {
    let mut out = Vec::new();
    for s in stats {
        let remote = || vec![("remote", s.name.clone())];
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64;
        out.push(Sample::labelled(
            "vigie_remote_write_samples_total",
            Kind::Counter,
            "Samples the remote-write endpoint accepted.",
            remote(),
            get(&s.samples),
        ));
        out.push(Sample::labelled(
            "vigie_remote_write_failed_total",
            Kind::Counter,
            "Remote-write requests that failed (network error, timeout, 429, 5xx) and were retried.",
            remote(),
            get(&s.failed),
        ));
        for (reason, n) in [("rejected", &s.rejected), ("queue_full", &s.overflowed)] {
            out.push(Sample::labelled(
                "vigie_remote_write_dropped_total",
                Kind::Counter,
                "Samples never delivered: refused by the endpoint (a 4xx other than 429), or pushed out of a full queue.",
                vec![("reason", reason.to_owned()), ("remote", s.name.clone())],
                get(n),
            ));
        }
        out.push(Sample::labelled(
            "vigie_remote_write_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the endpoint last accepted a batch (seconds since the epoch), 0 before.",
            remote(),
            get(&s.last_success_ms) / 1000.0,
        ));
        out.push(Sample::labelled(
            "vigie_remote_write_queue_bytes",
            Kind::Gauge,
            "Compressed batches waiting for the endpoint.",
            remote(),
            get(&s.queue_bytes),
        ));
    }
    out
}

/// The running remote writes; dropping it stops them.
#[derive(Debug, Default)]
pub struct RemoteWriters {
    stats: Vec<Arc<Stats>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RemoteWriters {
    /// Each endpoint's counters.
    pub fn stats(&self) -> Vec<Arc<Stats>> {
        self.stats.clone()
    }
}

impl Drop for RemoteWriters {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Start a collector and a sender for each of `targets`, within a tokio
/// runtime. An endpoint whose client cannot be built (an unreadable `ca`)
/// is logged and left out.
pub fn start(targets: &[RemoteWrite], source: &Source) -> RemoteWriters {
    let mut out = RemoteWriters::default();
    for target in targets {
        let client = match client(target) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(remote = %target.name, error = %e, "cannot set up the remote write; it is off");
                continue;
            }
        };
        let stats = Arc::new(Stats {
            name: target.name.clone(),
            ..Stats::default()
        });
        let queue = Arc::new(Mutex::new(Queue::new(target.queue.0 as usize)));
        let wake = Arc::new(tokio::sync::Notify::new());
        out.tasks.push(tokio::spawn(collect(
            target.clone(),
            source.clone(),
            queue.clone(),
            wake.clone(),
            stats.clone(),
        )));
        out.tasks.push(tokio::spawn(send_loop(
            Endpoint {
                target: target.clone(),
                client,
            },
            queue,
            wake,
            stats.clone(),
        )));
        out.stats.push(stats);
    }
    out
}

fn client(target: &RemoteWrite) -> Result<reqwest::Client, String> {
    let tls = vigie_net::tls_client_config(&vigie_net::TlsOptions {
        ca: target.ca.as_deref(),
        ..vigie_net::TlsOptions::https()
    })
    .map_err(|e| e.0)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // A write is never redirected: a 3xx is an error to fix.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vigie/", env!("CARGO_PKG_VERSION")))
        .timeout(target.timeout.std())
        .build()
        .map_err(|e| e.to_string())
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Every `interval`: read the samples, encode, compress, queue.
async fn collect(
    target: RemoteWrite,
    source: Source,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<tokio::sync::Notify>,
    stats: Arc<Stats>,
) {
    let mut tick = tokio::time::interval(target.interval.std());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut overflowing = false;
    loop {
        tick.tick().await;
        let series = source().await;
        let at = now_ms();
        let raw = proto::write_request(&series, &target.labels, at);
        let body = match snap::raw::Encoder::new().compress_vec(&raw) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(remote = %target.name, error = %e, "cannot compress a batch");
                continue;
            }
        };
        let dropped = {
            let mut q = lock(&queue);
            let dropped = q.push(body, series.len());
            stats.queue_bytes.store(q.bytes() as u64, Ordering::Relaxed);
            dropped
        };
        if dropped > 0 {
            stats
                .overflowed
                .fetch_add(dropped as u64, Ordering::Relaxed);
            if !overflowing {
                tracing::warn!(remote = %target.name, queue = %target.queue, "the remote-write queue is full: the oldest samples are dropped until the endpoint takes them");
            }
        }
        overflowing = dropped > 0;
        wake.notify_one();
    }
}

struct Endpoint {
    target: RemoteWrite,
    client: reqwest::Client,
}

/// Why a send failed, and whether to try it again.
#[derive(Debug)]
enum Failure {
    /// Network, timeout, 429, 5xx: try again after the wait (or the
    /// endpoint's `Retry-After`).
    Retry(String, Option<Duration>),
    /// The endpoint will never take it.
    Drop(String),
}

impl Endpoint {
    async fn send(&self, body: Vec<u8>) -> Result<(), Failure> {
        let mut req = self
            .client
            .post(self.target.url.0.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", PROTOCOL_VERSION)
            .body(body);
        req = match &self.target.auth {
            Some(RemoteAuth::Bearer(t)) => req.bearer_auth(t.expose()),
            Some(RemoteAuth::Basic { user, password }) => {
                req.basic_auth(user, Some(password.expose()))
            }
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Retry(vigie_net::chain(&e), None))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        // What the endpoint says, first line, bounded: at most 4 KiB of
        // the body are read.
        let mut resp = resp;
        let mut body = Vec::new();
        while body.len() < 4096 {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(4096 - body.len())]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        let said: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let message = format!("HTTP {status}: {said}");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Retry(message, retry_after))
        } else {
            Err(Failure::Drop(message))
        }
    }
}

/// Send the queue's batches in order, one at a time.
async fn send_loop(
    endpoint: Endpoint,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<tokio::sync::Notify>,
    stats: Arc<Stats>,
) {
    let name = endpoint.target.name.clone();
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let Some(batch) = lock(&queue).front() else {
            wake.notified().await;
            continue;
        };
        match endpoint.send(batch.body).await {
            Ok(()) => {
                stats
                    .samples
                    .fetch_add(batch.samples as u64, Ordering::Relaxed);
                stats
                    .last_success_ms
                    .store(now_ms() as u64, Ordering::Relaxed);
                if failing {
                    tracing::info!(remote = %name, "the remote-write endpoint takes samples again");
                }
                failing = false;
                backoff = MIN_BACKOFF;
            }
            Err(Failure::Drop(error)) => {
                stats
                    .rejected
                    .fetch_add(batch.samples as u64, Ordering::Relaxed);
                tracing::error!(remote = %name, %error, samples = batch.samples, "the remote-write endpoint refused a batch; it is dropped");
            }
            Err(Failure::Retry(error, after)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(remote = %name, %error, "remote write failed; retrying with backoff");
                }
                failing = true;
                // The server's Retry-After, never sooner than our own backoff
                // (a `Retry-After: 0` would make a loop of requests).
                tokio::time::sleep(after.map_or(backoff, |a| a.max(backoff))).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        let mut q = lock(&queue);
        q.remove(batch.id);
        stats.queue_bytes.store(q.bytes() as u64, Ordering::Relaxed);
    }
}
