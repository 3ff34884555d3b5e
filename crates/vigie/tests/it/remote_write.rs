//! `[[remote_write]]` into a real Prometheus (its remote-write receiver,
//! on loopback, started by the test): the series of `/metrics` arrive
//! with their labels and values, and every query of the Grafana
//! dashboard in `contrib/grafana/` names families vigie exposes and is
//! accepted by Prometheus.

// The values compared are whole numbers (a check's 1, bytes of memory),
// exact in f64 and on the wire: `assert_eq!` says what differs.
#![allow(clippy::float_cmp)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use vigie_testkit::daemon::Daemon;
use vigie_testkit::prometheus::{Prometheus, prometheus};

use crate::util::{env, mem_check, start, wait_or_explain};

/// A daemon named `node-rw` sending to `p` every second, with `mem` and
/// `closed` (a TCP check of a port nothing listens on: failing).
fn daemon_writing_to(e: &vigie_testkit::Env, p: &Prometheus) -> Daemon {
    start(
        e,
        &format!(
            "{}{}\n[node]\nname = \"node-rw\"\n\n[[remote_write]]\nurl = \"{}\"\ninterval = \"1s\"\nlabels = {{ env = \"test\" }}\n",
            mem_check(),
            vigie_testkit::check(
                "closed",
                "tcp = { address = \"127.0.0.1:1\" }",
                "severity = \"disaster\"",
            ),
            p.write_url()
        ),
    )
}

/// The first result of `promql` once it has one (60 s at most).
fn first(p: &Prometheus, promql: &str) -> Value {
    let mut got = Value::Null;
    wait_or_explain(
        Duration::from_mins(1),
        || {
            let r = p.vector(promql);
            r.first().is_some_and(|v| {
                got = v.clone();
                true
            })
        },
        || format!("no {promql} in Prometheus; its log:\n{}", p.log()),
    );
    got
}

fn value(v: &Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

/// The names of the families and series `/metrics` shows: (every name,
/// the names that have a sample now).
fn scraped(d: &Daemon) -> (BTreeSet<String>, BTreeSet<String>) {
    let (status, text) = d.http("GET", "/metrics", &[]);
    assert_eq!(status, 200, "{text}");
    let mut all = BTreeSet::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            all.insert(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap().to_owned();
            all.insert(name.clone());
            sampled.insert(name);
        }
    }
    (all, sampled)
}

#[test]
fn prometheus_receives_what_metrics_shows() {
    vigie_testkit::require!(vigie_testkit::Need::Prometheus);
    let p = prometheus();
    let e = env();
    let d = daemon_writing_to(&e, &p);
    // A check's state, with its own labels and the added ones.
    let up = first(&p, "vigie_check_up{check=\"mem\"}");
    let labels = &up["metric"];
    assert_eq!(labels["__name__"], "vigie_check_up");
    assert_eq!(labels["kind"], "memory");
    assert_eq!(labels["instance"], "node-rw");
    assert_eq!(labels["job"], "vigie");
    assert_eq!(labels["env"], "test");
    assert_eq!(value(&up), 1.0);
    let failing = first(&p, "vigie_check_failing{check=\"closed\"} == 1");
    assert_eq!(failing["metric"]["severity"], "disaster");
    // A value that does not move: the host's memory, as /metrics says it.
    let (_, page) = d.http("GET", "/metrics", &[]);
    let total: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("node_memory_MemTotal_bytes "))
        .expect("node_memory_MemTotal_bytes on /metrics")
        .parse()
        .unwrap();
    assert_eq!(value(&first(&p, "node_memory_MemTotal_bytes")), total);
    // A histogram's series, and the remote write's own counters, which
    // are on /metrics too.
    first(&p, "vigie_schedule_lag_seconds_bucket{le=\"+Inf\"}");
    let sent = first(&p, "vigie_remote_write_samples_total");
    assert_eq!(sent["metric"]["remote"], p.addr.to_string());
    assert!(value(&sent) > 0.0, "{sent}");
    let page = d.http("GET", "/metrics", &[]).1;
    assert!(
        page.contains("vigie_remote_write_dropped_total{reason=\"rejected\""),
        "{page}"
    );
    // A counter keeps counting: the runs of `mem` grow from sample to sample.
    let runs = value(&first(&p, "vigie_check_runs_total{check=\"mem\"}"));
    wait_or_explain(
        Duration::from_mins(1),
        || value(&first(&p, "vigie_check_runs_total{check=\"mem\"}")) > runs,
        || "the runs of mem do not grow in Prometheus".into(),
    );
}

/// The twin on the defaults (15 s, whose first batch goes at start; no
/// labels written): the series carry the node's name as `instance`,
/// `job="vigie"`, and nothing more.
#[test]
fn on_the_defaults_series_carry_instance_and_job() {
    vigie_testkit::require!(vigie_testkit::Need::Prometheus);
    let p = prometheus();
    let e = env();
    let _d = start(
        &e,
        &format!(
            "{}\n[node]\nname = \"node-default\"\n\n[[remote_write]]\nurl = \"{}\"\n",
            mem_check(),
            p.write_url()
        ),
    );
    let load = first(&p, "node_load1");
    assert_eq!(load["metric"]["instance"], "node-default");
    assert_eq!(load["metric"]["job"], "vigie");
    assert_eq!(load["metric"].as_object().unwrap().len(), 3, "{load}");
}

/// Every identifier of `expr` that names one of vigie's families
/// (vigie_*, node_*, process_*).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in expr.chars().chain([' ']) {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if ["vigie_", "node_", "process_"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            out.push(word.clone());
        }
        word.clear();
    }
    out
}

/// The values of `name="…"` matchers in `expr` (vigie_check_value's
/// measured numbers).
fn value_names(expr: &str) -> Vec<String> {
    expr.split("name=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect()
}

/// Every `.rs` file's text under `dir`.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// `expr` as Grafana sends it for node `instance`.
fn expand(expr: &str, instance: &str) -> String {
    expr.replace("$instance", instance)
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
}

#[test]
fn the_grafana_dashboard_queries_what_vigie_sends() {
    vigie_testkit::require!(vigie_testkit::Need::Prometheus);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("contrib/grafana/vigie.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    // Importable anywhere: the data source is an input, `instance` a variable.
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["name"] == "instance"), "{vars:?}");
    let mut exprs: Vec<(String, String)> = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap().to_owned();
            assert!(expr.contains("instance=\"$instance\""), "{title}: {expr}");
            exprs.push((title.clone(), expr));
        }
    }
    for v in vars {
        exprs.push((
            "variable".into(),
            v["definition"].as_str().unwrap().to_owned(),
        ));
    }
    let p = prometheus();
    let e = env();
    let d = daemon_writing_to(&e, &p);
    first(&p, "vigie_remote_write_samples_total");
    // The names: each one a family /metrics shows (the backup and
    // replication families are shown without samples when no job runs),
    // and each measured number one a probe or a job reports.
    let (all, sampled) = scraped(&d);
    let mut code = String::new();
    sources(&root.join("crates"), &mut code);
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no metric in {expr}");
        for n in &names {
            assert!(all.contains(n), "{title}: vigie exposes no {n} ({expr})");
        }
        for n in value_names(expr) {
            assert!(
                code.contains(&format!("with_metric(\"{n}\"")),
                "{title}: no check reports {n} ({expr})"
            );
        }
    }
    // The queries: each accepted by Prometheus, and, when every family
    // it reads has samples here and no matcher may leave it empty
    // (replication's numbers, `!=`), each with an answer.
    for (title, expr) in &exprs {
        if title == "variable" {
            let (status, body) = p
                .get("/api/v1/label/instance/values")
                .expect("label values");
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("\"node-rw\""), "{body}");
            continue;
        }
        let q = expand(expr, "node-rw");
        let answer = p.query(&q);
        assert_eq!(answer["status"], "success", "{title}: {q}: {answer}");
        let expect_data = metric_names(expr).iter().all(|n| sampled.contains(n))
            && value_names(expr).is_empty()
            && !expr.contains("!=")
            && !expr.contains("!~");
        if expect_data {
            first(&p, &q);
        }
    }
}

#[test]
fn metric_names_are_read_off_promql() {
    assert_eq!(
        metric_names(
            "sum by (mode) (rate(node_cpu_seconds_total{instance=\"node_x\", mode!=\"idle\"}[1m])) / vigie_check_up"
        ),
        ["node_cpu_seconds_total", "vigie_check_up"]
    );
    assert_eq!(
        value_names("vigie_check_value{instance=\"$instance\", name=\"sync_lag_seconds\"}"),
        ["sync_lag_seconds"]
    );
}
