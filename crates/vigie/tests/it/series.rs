//! The series store fed by a running daemon: each check result's numbers
//! and the host's metrics, read through `/api/v1/series` (unflushed
//! samples included) and from the store file after a SIGTERM; a SIGKILL
//! leaves a store that reopens and goes on.

// The series keep values bit for bit: exact comparisons are the point.
#![allow(clippy::float_cmp)]

use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use vigie_store::series::{Retention, SeriesKey, SeriesStore};
use vigie_testkit::{check, daemon::Daemon, wait_until};

use crate::util::{api_check, env, start};

/// A check that exits 3 (a failure whose `exit_code` is 3), one that
/// passes, both every 100 ms.
fn checks() -> String {
    [
        check(
            "broken",
            "command = { argv = [\"sh\", \"-c\", \"exit 3\"] }",
            "every = \"100ms\"\nfail_after = 2",
        ),
        check(
            "fine",
            "command = { argv = [\"true\"] }",
            "every = \"100ms\"",
        ),
    ]
    .concat()
}

fn series(d: &Daemon, query: &str) -> Value {
    let (status, body) = d.http("GET", &format!("/api/v1/series?{query}"), &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn values(v: &Value) -> Vec<f64> {
    v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_f64().unwrap())
        .collect()
}

fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    SeriesKey::new(name, labels.iter().copied()).unwrap()
}

/// The API refuses what is not a query, and /metrics counts the samples.
fn bad_queries_and_metrics(d: &Daemon) {
    // Bad queries say what is wrong.
    let (status, body) = d.http("GET", "/api/v1/series?name=1bad", &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a series name"), "{body}");
    let (status, body) = d.http("GET", "/api/v1/series?name=x&from=10&to=5", &[]);
    assert_eq!(status, 400, "{body}");
    // /metrics counts what was kept.
    let (_, metrics) = d.http("GET", "/metrics", &[]);
    let appended = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigie_series_samples_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(appended > 0.0, "{metrics}");
    assert!(
        metrics.contains("vigie_series_errors_total 0\n"),
        "{metrics}"
    );
}

#[test]
fn check_results_and_the_host_become_series_flushed_at_sigterm() {
    let e = env();
    let mut d = start(&e, &checks());
    // Unflushed (the first flush is a minute away): the API sees them.
    wait_until(Duration::from_secs(10), || {
        api_check(&d, "broken")["runs_total"].as_u64() >= Some(4)
            && api_check(&d, "fine")["runs_total"].as_u64() >= Some(4)
    });
    let from = 0;
    let broken = |name: &str, extra: &str| {
        series(
            &d,
            &format!("name={name}&labels=check=broken{extra}&from={from}"),
        )
    };
    wait_until(Duration::from_secs(5), || {
        values(&broken("vigie_check_up", "")).len() >= 4
    });
    let up = values(&broken("vigie_check_up", ""));
    assert!(up.iter().all(|&v| v == 0.0), "{up:?}");
    let exit = values(&broken("vigie_check_value", ",name=exit_code"));
    assert!(
        exit.len() >= 4 && exit.iter().all(|&v| v == 3.0),
        "{exit:?}"
    );
    let failing = values(&broken("vigie_check_failing", ""));
    assert_eq!(
        failing[0], 0.0,
        "not failing before fail_after: {failing:?}"
    );
    assert_eq!(*failing.last().unwrap(), 1.0, "{failing:?}");
    let durations = values(&broken("vigie_check_duration_seconds", ""));
    assert!(
        durations.iter().all(|&d| d > 0.0 && d < 10.0),
        "{durations:?}"
    );
    let fine = values(&series(&d, "name=vigie_check_up&labels=check=fine&from=0"));
    assert!(
        fine.len() >= 4 && fine.iter().all(|&v| v == 1.0),
        "{fine:?}"
    );
    // The host: sampled at start, under node_exporter's names.
    let load = series(&d, "name=node_load1&from=0");
    assert!(!values(&load).is_empty(), "{load}");
    // Buckets from the roll-ups and the open chunks.
    let b = series(&d, "name=vigie_check_up&labels=check=fine&from=0&step=3600");
    let buckets = b["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty(), "{b}");
    assert_eq!(buckets.last().unwrap()["min"], 1.0, "{b}");
    bad_queries_and_metrics(&d);
    let runs = api_check(&d, "broken")["runs_total"].as_u64().unwrap();
    // SIGTERM: the open chunks are flushed before the exit.
    d.signal(Signal::TERM);
    let (code, _) = d.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.log());
    let s = SeriesStore::open(&e.state_dir(), Retention::default()).unwrap();
    let stored = s
        .query(&key("vigie_check_up", &[("check", "broken")]), 0, i64::MAX)
        .unwrap();
    assert!(
        stored.len() as u64 >= runs,
        "every run's sample was flushed: {} of {runs}",
        stored.len()
    );
    assert!(stored.iter().all(|s| s.value == 0.0));
    let exit = s
        .query(
            &key(
                "vigie_check_value",
                &[("check", "broken"), ("name", "exit_code")],
            ),
            0,
            i64::MAX,
        )
        .unwrap();
    assert!(exit.len() as u64 >= runs);
    assert!(exit.iter().all(|s| s.value == 3.0));
    let names: Vec<String> = s
        .series()
        .unwrap()
        .iter()
        .map(|k| k.name().to_owned())
        .collect();
    for host in [
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_network_receive_bytes_total",
    ] {
        assert!(names.iter().any(|n| n == host), "{host} in {names:?}");
    }
}

#[test]
fn a_killed_daemons_series_reopen_and_the_next_run_goes_on() {
    let e = env();
    let mut d = start(&e, &checks());
    let up = |d: &Daemon| values(&series(d, "name=vigie_check_up&labels=check=fine&from=0"));
    wait_until(Duration::from_secs(10), || up(&d).len() >= 3);
    d.signal(Signal::KILL);
    d.wait(Duration::from_secs(5));
    // Nothing was flushed (the first flush is a minute away) and nothing
    // is half-written: the store opens and reads.
    let s = SeriesStore::open(&e.state_dir(), Retention::default()).unwrap();
    let fine = key("vigie_check_up", &[("check", "fine")]);
    let kept = s.query(&fine, 0, i64::MAX).unwrap();
    drop(s);
    // A new daemon continues the same series.
    let d = e.daemon();
    wait_until(Duration::from_secs(10), || up(&d).len() >= kept.len() + 3);
    let after = series(&d, "name=vigie_check_up&labels=check=fine&from=0");
    let ts: Vec<i64> = after["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "in time order: {ts:?}");
    assert!(values(&after).iter().all(|&v| v == 1.0), "{after}");
}

#[test]
fn series_settings_are_validated_with_their_place() {
    let e = env();
    e.config(
        "[series]\ninterval = \"100ms\"\nretention = { raw = \"7d\", minute = \"1d\" }\nmax_size = \"1KiB\"\n",
    );
    let r = e.run(&["validate"]);
    assert_eq!(r.code, 2, "{r:?}");
    for says in [
        "series.interval",
        "is below a second",
        "series.retention.minute",
        "`1d` is shorter than `raw = \"1w\"`",
        "series.max_size",
        "is below 1MiB",
    ] {
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
    }
    e.config("[series]\ninterval = \"30s\"\nretention = { raw = \"1d\" }\nmax_size = \"64MiB\"\n");
    let r = e.run(&["validate"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// The 90 days of a check's page come from the series' roll-ups: 60 days
/// ago (older than the results the store keeps) written into the store
/// before the daemon starts, and the runs the daemon feeds; the host
/// page draws the host's series.
#[test]
fn chromium_draws_ninety_days_of_a_check_from_the_series() {
    vigie_testkit::require!(vigie_testkit::Need::Chromium);
    let e = env();
    e.config("");
    let day = 86_400_000;
    let now = vigie_core::Timestamp::now().millis();
    {
        std::fs::create_dir_all(e.state_dir()).unwrap();
        let mut s = SeriesStore::open(&e.state_dir(), Retention::default()).unwrap();
        let up = key("vigie_check_up", &[("check", "fine")]);
        let duration = key("vigie_check_duration_seconds", &[("check", "fine")]);
        // A run every 10 minutes for a day, 60 days ago; ten failed, all
        // in the first 17 hours.
        for i in 0..144 {
            let ts = now - 60 * day + i * 600_000;
            let ok = !(i % 10 == 0 && i < 100);
            s.append(&up, ts, f64::from(u8::from(ok))).unwrap();
            s.append(&duration, ts, 0.25).unwrap();
        }
        // Quiet since: closed and rolled up to hours, the raw and minute
        // chunks expired (the last hour's open minute chunk with them).
        let r = s.enforce_retention(now).unwrap();
        assert!(r.idle_closed == 2 && r.expired > 0, "{r:?}");
    }
    // A generous timeout: a run cut short on a busy machine would count
    // as one more failure.
    let d = start(
        &e,
        &check(
            "fine",
            "command = { argv = [\"true\"] }",
            "every = \"500ms\"\ntimeout = \"10s\"",
        ),
    );
    wait_until(Duration::from_secs(10), || {
        api_check(&d, "fine")["runs_total"].as_u64() >= Some(3)
    });
    let url = format!("http://{}/checks/fine?range=90d", d.addr);
    let dom = crate::dash::chromium(&e, &["--dump-dom", &url]);
    // The old runs (10 failed; at most two hours of them lost with the
    // open minute chunk), and the daemon's own (none failed).
    let label = dom
        .split("aria-label=\"")
        .find(|s| s.contains(" runs, 10 failed"))
        .unwrap_or_else(|| panic!("no 90-day history with the old runs: {dom}"));
    let runs: u64 = label.split(' ').next().unwrap().parse().unwrap();
    assert!(runs >= 132 + 3, "the old runs and the daemon's: {label}");
    assert!(label.contains("duration up to 250 ms"), "{label}");
    let host = crate::dash::chromium(&e, &["--dump-dom", &format!("http://{}/host", d.addr)]);
    for title in [
        "CPU busy",
        "Memory used (used), up to",
        "Disk used",
        "Network",
        "Load (load1, load5, load15), up to",
    ] {
        assert!(host.contains(title), "{title}: {host}");
    }
}
