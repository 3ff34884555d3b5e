//! What an endpoint receives, and what the writer does when it fails:
//! local HTTP servers of the test kit answer as a remote-write receiver
//! would (a 5xx then a 2xx, a 4xx, nothing at all). The real Prometheus
//! is in the integration tests (`crates/vigie/tests/it/remote_write.rs`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigie_metrics::Series;
use vigie_remote_write::{RemoteWriters, Source, Stats};
use vigie_testkit::servers::{Captured, capture, silent};

/// The resolved `[[remote_write]]` of `toml`'s table body.
fn target(url: &str, extra: &str) -> vigie_config::RemoteWrite {
    let text = format!(
        "[node]\nname = \"node-a\"\n[[remote_write]]\nurl = \"{url}\"\ninterval = \"1s\"\n{extra}\n"
    );
    let env = |k: &str| (k == "PROM_TOKEN").then(|| "s3cret".to_owned());
    let loaded =
        vigie_config::load_str(&text, Path::new("t.toml"), &env).unwrap_or_else(|d| panic!("{d}"));
    loaded.config.remote_writes[0].clone()
}

fn series(n: usize) -> Vec<Series> {
    (0..n)
        .map(|i| Series {
            name: "vigie_check_up".into(),
            labels: vec![("check".into(), format!("c{i}"))],
            value: i as f64,
        })
        .collect()
}

fn source(series: Vec<Series>) -> Source {
    Arc::new(move || {
        let s = series.clone();
        Box::pin(async move { s })
    })
}

async fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn get(stats: &Stats) -> (u64, u64, u64, u64) {
    (
        stats.samples.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.overflowed.load(Ordering::Relaxed),
    )
}

/// A protobuf message's fields: (number, wire type, varint or bytes).
fn fields(mut b: &[u8]) -> Vec<(u64, u8, u64, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let wire = (key & 7) as u8;
        match wire {
            0 => out.push((key >> 3, wire, varint(&mut b), Vec::new())),
            1 => {
                out.push((key >> 3, wire, 0, b[..8].to_vec()));
                b = &b[8..];
            }
            2 => {
                let len = varint(&mut b) as usize;
                out.push((key >> 3, wire, 0, b[..len].to_vec()));
                b = &b[len..];
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

/// The series of a request's body: (labels, value, timestamp).
type Decoded = Vec<(Vec<(String, String)>, f64, i64)>;

fn decode(c: &Captured) -> Decoded {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&c.raw)
        .expect("a snappy block");
    fields(&raw)
        .into_iter()
        .map(|(n, _, _, ts)| {
            assert_eq!(n, 1, "WriteRequest.timeseries");
            let mut labels = Vec::new();
            let mut samples = Vec::new();
            for (n, _, _, body) in fields(&ts) {
                match n {
                    1 => {
                        let l = fields(&body);
                        let text = |i: usize| String::from_utf8(l[i].3.clone()).unwrap();
                        labels.push((text(0), text(1)));
                    }
                    2 => {
                        let s = fields(&body);
                        let value = f64::from_le_bytes(s[0].3[..8].try_into().unwrap());
                        samples.push((value, s[1].2 as i64));
                    }
                    n => panic!("TimeSeries field {n}"),
                }
            }
            assert_eq!(samples.len(), 1);
            (labels, samples[0].0, samples[0].1)
        })
        .collect()
}

fn start(target: &vigie_config::RemoteWrite, n: usize) -> (RemoteWriters, Arc<Stats>) {
    let w = vigie_remote_write::start(std::slice::from_ref(target), &source(series(n)));
    let stats = w.stats()[0].clone();
    (w, stats)
}

/// A 500 is retried (the same batch, whole), then the 200 delivers it;
/// every request is what the spec asks: the headers, snappy's block
/// format, a `WriteRequest` whose series have `__name__` and the extra
/// labels, sorted.
/// A runtime for the writer; the test kit's servers run on threads of
/// their own, started and stopped outside it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_5xx_is_retried_and_the_batch_delivered_as_the_spec_says() {
    let (server, seen) = capture(&[500, 200]);
    runtime().block_on(a_5xx_is_retried(server.addr, &seen));
}

async fn a_5xx_is_retried(addr: std::net::SocketAddr, seen: &std::sync::Mutex<Vec<Captured>>) {
    let t = target(
        &format!("http://{addr}/api/v1/write"),
        "bearer_token = { env = \"PROM_TOKEN\" }\nlabels = { env = \"test\" }",
    );
    let (_w, stats) = start(&t, 3);
    wait(Duration::from_secs(10), "a delivery", || get(&stats).0 == 3).await;
    let (samples, failed, rejected, overflowed) = get(&stats);
    assert_eq!((samples, failed, rejected, overflowed), (3, 1, 0, 0));
    assert!(stats.last_success_ms.load(Ordering::Relaxed) > 1_700_000_000_000);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(seen[0].raw, seen[1].raw, "the retry sends the same batch");
    for c in &seen[..2] {
        assert_eq!(
            (c.method.as_str(), c.target.as_str()),
            ("POST", "/api/v1/write")
        );
        assert_eq!(c.header("content-encoding"), Some("snappy"));
        assert_eq!(c.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(c.header("x-prometheus-remote-write-version"), Some("0.1.0"));
        assert_eq!(c.header("authorization"), Some("Bearer s3cret"));
        assert!(
            c.header("user-agent").unwrap().starts_with("vigie/"),
            "{c:?}"
        );
    }
    let got = decode(&seen[1]);
    assert_eq!(got.len(), 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (i, (labels, value, ts)) in got.iter().enumerate() {
        let want: Vec<(String, String)> = [
            ("__name__", "vigie_check_up".to_owned()),
            ("check", format!("c{i}")),
            ("env", "test".to_owned()),
            ("instance", "node-a".to_owned()),
            ("job", "vigie".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(labels, &want);
        assert_eq!(value.to_bits(), (i as f64).to_bits(), "{value}");
        assert!((now - ts).abs() < 60_000, "{ts} vs {now}");
    }
}

/// A 400 drops the batch and counts its samples; the next batch goes on.
#[test]
fn a_4xx_drops_the_batch_and_counts_it() {
    let (server, seen) = capture(&[400, 200]);
    runtime().block_on(a_4xx_drops(server.addr, &seen));
}

async fn a_4xx_drops(addr: std::net::SocketAddr, seen: &std::sync::Mutex<Vec<Captured>>) {
    let t = target(
        &format!("http://{addr}/api/v1/write"),
        "basic_auth = { user = \"u\", password = { env = \"PROM_TOKEN\" } }",
    );
    let (_w, stats) = start(&t, 5);
    wait(Duration::from_secs(10), "the next batch", || {
        get(&stats).0 >= 5
    })
    .await;
    let (_, failed, rejected, overflowed) = get(&stats);
    assert_eq!((failed, rejected, overflowed), (0, 5, 0));
    let seen = seen.lock().unwrap().clone();
    // Basic u:s3cret.
    assert_eq!(seen[0].header("authorization"), Some("Basic dTpzM2NyZXQ="));
    assert_ne!(
        decode(&seen[0])[0].2,
        decode(&seen[1])[0].2,
        "a new batch, not the refused one again"
    );
}

/// An endpoint that accepts and never answers: each request is cut at
/// `timeout` and counted, and retried, and while it lasts the queue keeps
/// its bound: the oldest batches go (counted), not the daemon's memory.
#[test]
fn a_hanging_endpoint_times_out_and_the_queue_keeps_its_bound() {
    let server = silent();
    runtime().block_on(a_hanging_endpoint(server.addr));
}

async fn a_hanging_endpoint(addr: std::net::SocketAddr) {
    let t = target(
        &format!("http://{addr}/api/v1/write"),
        "timeout = \"200ms\"\nqueue = \"256KiB\"",
    );
    // Series whose labels snappy cannot shrink much: a batch over 256KiB.
    let big: Vec<Series> = (0..20_000u64)
        .map(|i| Series {
            name: "x".into(),
            labels: vec![(
                "h".into(),
                format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            )],
            value: 0.0,
        })
        .collect();
    // One batch, compressed: what the queue holds when it alone is over
    // the bound.
    let one = snap::raw::Encoder::new()
        .compress_vec(&vigie_remote_write::proto::write_request(
            &big,
            &t.labels,
            1_700_000_000_000,
        ))
        .unwrap()
        .len() as u64;
    assert!(one > 256 << 10, "the batch is over the bound: {one}");
    let w = vigie_remote_write::start(std::slice::from_ref(&t), &source(big));
    let stats = w.stats()[0].clone();
    wait(Duration::from_secs(15), "timeouts and an overflow", || {
        let (_, failed, _, overflowed) = get(&stats);
        failed >= 2 && overflowed >= 20_000
    })
    .await;
    let (samples, _, rejected, _) = get(&stats);
    assert_eq!((samples, rejected), (0, 0));
    let queued = stats.queue_bytes.load(Ordering::Relaxed);
    assert!(queued > 0, "the newest batch waits");
    // Only the newest batch, which alone is over the bound (give or
    // take its timestamp's bytes).
    assert!(
        queued.abs_diff(one) < 64,
        "{queued} queued, a batch is {one}"
    );
    let page = vigie_remote_write::samples(&w.stats());
    let names: Vec<&str> = page.iter().map(|s| s.name).collect();
    for n in [
        "vigie_remote_write_samples_total",
        "vigie_remote_write_failed_total",
        "vigie_remote_write_dropped_total",
        "vigie_remote_write_last_success_timestamp_seconds",
        "vigie_remote_write_queue_bytes",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(
        page.iter()
            .all(|s| s.label("remote") == Some(t.name.as_str()))
    );
}
