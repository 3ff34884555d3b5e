//! Public status pages: services' states from their checks, the JSON and
//! the badges, open without a login even with a token, and nothing
//! internal in any of them (a check's name, its output, the node's name).
//! `chromium` renders the page on a phone.

use std::time::Duration;

use serde_json::Value;
use vigie_testkit::{Need, check, require};

use crate::dash::{artifacts, chromium};
use crate::util::{assert_secure_headers, env, wait_or_explain};

/// What must never reach the public: it is in the node's name, the
/// checks' names and the failing check's output.
const MARKER: &str = "zq7secret";

const TOKEN: &str = "a-long-enough-token-for-the-api-0123456789";

/// A server with a token, a node, checks and a status page whose four
/// services are operational, down, degraded and unknown.
fn config(e: &vigie_testkit::Env) -> String {
    std::fs::write(e.path().join("api.token"), format!("{TOKEN}\n")).unwrap();
    let checks = [
        check(
            &format!("web-{MARKER}"),
            "command = { argv = [\"true\"] }",
            "every = \"300ms\"",
        ),
        check(
            &format!("db-{MARKER}"),
            &format!(
                "command = {{ argv = [\"sh\", \"-c\", \"echo db1.{MARKER}.internal refused; exit 1\"] }}"
            ),
            "every = \"300ms\"",
        ),
        check(
            &format!("cron-{MARKER}"),
            // Still running for the whole test: no result yet, unknown.
            "command = { argv = [\"sleep\", \"60\"] }",
            "every = \"1h\"\ntimeout = \"60s\"",
        ),
    ]
    .concat();
    format!(
        "[node]\nname = \"node-{MARKER}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\ntoken = {{ file = \"api.token\" }}\n\n{checks}\n\
         [status_page.public]\ntitle = \"Example <Co> status\"\ndescription = \"Our services & more\"\n\
         services = [\n  {{ name = \"Website\", checks = [\"web-{MARKER}\"] }},\n  \
         {{ name = \"Database\", checks = [\"db-{MARKER}\"] }},\n  \
         {{ name = \"Shop & API\", checks = [\"web-{MARKER}\", \"db-{MARKER}\"] }},\n  \
         {{ name = \"Nightly jobs\", checks = [\"cron-{MARKER}\"] }},\n]\n"
    )
}

/// The JSON of the page [`config`] makes, once today's runs are stored.
fn json_says_services(json: &Value) {
    assert_eq!(json["title"], "Example <Co> status");
    assert_eq!(json["description"], "Our services & more");
    assert_eq!(json["state"], "down", "the worst service: {json}");
    // The hourly roll-ups' retention on the defaults: two years.
    assert_eq!(json["history_days"], 730);
    let services = json["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Website", "Database", "Shop & API", "Nightly jobs"]);
    let states: Vec<&str> = services
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["operational", "down", "degraded", "unknown"],
        "{json}"
    );
    assert!(
        services[1]["since"].is_i64(),
        "a problem has its start: {json}"
    );
    assert!(services[3]["since"].is_null(), "{json}");
    for s in services {
        let days = s["days"].as_array().unwrap();
        assert_eq!(days.len(), 90, "{s}");
        assert!(days[0]["uptime"].is_null(), "no data 89 days ago: {s}");
        assert!(days[0]["date"].as_str() < days[89]["date"].as_str(), "{s}");
    }
    assert_eq!(services[0]["days"][89]["uptime"], 100.0, "{json}");
    assert_eq!(services[1]["days"][89]["uptime"], 0.0, "{json}");
    let mixed = services[2]["uptime_90d"].as_f64().unwrap();
    assert!(mixed > 0.0 && mixed < 100.0, "half its runs pass: {json}");
    assert!(services[3]["uptime_90d"].is_null(), "{json}");
}

#[test]
fn a_status_page_shows_services_to_anyone_and_nothing_internal() {
    let e = env();
    e.config(&config(&e));
    let d = e.daemon();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    // The checks, through the API (which the token guards).
    let state = |name: &str| {
        let (_, body) = d.http("GET", "/api/v1/checks", &auth);
        let v: Value = serde_json::from_str(&body).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["state"].as_str().unwrap().to_owned())
    };
    wait_or_explain(
        Duration::from_secs(15),
        || {
            state(&format!("web-{MARKER}")).as_deref() == Some("ok")
                && state(&format!("db-{MARKER}")).as_deref() == Some("failing")
        },
        || d.http("GET", "/api/v1/checks", &auth).1,
    );
    // The dashboard stays closed without a login; the status page is open.
    assert_eq!(d.http("GET", "/", &[]).0, 401);

    // Today's bars read the series, which the engine writes in batches,
    // and a page's bars are reused for 10 s.
    let mut json = Value::Null;
    wait_or_explain(
        Duration::from_secs(30),
        || {
            let (status, body) = d.http("GET", "/status/public.json", &[]);
            assert_eq!(status, 200, "{body}");
            json = serde_json::from_str(&body).unwrap();
            json["services"][2]["days"][89]["uptime"].is_number()
        },
        || d.http("GET", "/status/public.json", &[]).1,
    );
    json_says_services(&json);

    let (status, html) = d.http("GET", "/status/public", &[]);
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<h1>Example &lt;Co&gt; status</h1>"),
        "{html}"
    );
    assert!(html.contains("Our services &amp; more"), "{html}");
    assert!(html.contains("Shop &amp; API"), "{html}");
    assert!(
        html.contains("class=\"health down\">down<")
            && html.contains("class=\"health degraded\">degraded<")
            && html.contains("class=\"health operational\">operational<")
            && html.contains("class=\"health unknown\">unknown<"),
        "{html}"
    );
    assert!(html.contains("Down since <time>"), "{html}");
    assert!(
        !html.contains("History is kept for"),
        "two years of history need no warning: {html}"
    );
    assert!(
        html.contains(": no data</title>"),
        "days without data: {html}"
    );
    assert!(!html.contains("<script"), "no script at all: {html}");
    assert_eq!(html.matches("<rect ").count(), 4 * 90, "{html}");

    let (status, badge) = d.http("GET", "/status/public/badge/Database.svg", &[]);
    assert_eq!(status, 200, "{badge}");
    assert!(
        badge.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{badge}"
    );
    assert!(
        badge.contains(">Database</text>") && badge.contains(">down</text>"),
        "{badge}"
    );
    let (status, badge2) = d.http("GET", "/status/public/badge/Shop%20%26%20API.svg", &[]);
    assert_eq!(status, 200, "{badge2}");
    assert!(
        badge2.contains(">Shop &amp; API</text>") && badge2.contains(">degraded</text>"),
        "{badge2}"
    );
    let (_, ok) = d.http("GET", "/status/public/badge/Website.svg", &[]);
    assert!(
        ok.contains(">operational</text>") && ok.contains("#1a7f37"),
        "{ok}"
    );

    for answer in [json.to_string(), html, badge, badge2, ok] {
        assert!(
            !answer.contains(MARKER) && !answer.contains("refused") && !answer.contains("internal"),
            "nothing internal on a public answer: {answer}"
        );
    }

    for path in [
        "/status/other",
        "/status/other.json",
        "/status/public/badge/Nothing.svg",
        "/status/public/badge/Website",
        "/status/other/badge/Website.svg",
    ] {
        let (status, body) = d.http("GET", path, &[]);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains(MARKER), "{body}");
    }
}

#[test]
fn a_status_page_carries_the_dashboards_policy() {
    let e = env();
    e.config(&config(&e));
    let d = e.daemon();
    assert_secure_headers(d.addr, "/status/public", &[]);
    assert_secure_headers(d.addr, "/status/public.json", &[]);
    assert_secure_headers(d.addr, "/status/other", &[]);
}

#[test]
fn chromium_renders_the_status_page_on_a_phone() {
    require!(Need::Chromium);
    let e = env();
    e.config(&config(&e));
    let d = e.daemon();
    wait_or_explain(
        Duration::from_secs(30),
        || {
            let (_, body) = d.http("GET", "/status/public.json", &[]);
            let v: Value = serde_json::from_str(&body).unwrap();
            v["services"][1]["state"] == "down"
                && v["services"][2]["days"][89]["uptime"].is_number()
        },
        || d.http("GET", "/status/public.json", &[]).1,
    );
    let url = format!("http://{}/status/public", d.addr);
    let dom = chromium(&e, &["--dump-dom", &url]);
    assert_eq!(dom.matches("<li>").count(), 4, "{dom}");
    assert!(!dom.contains(MARKER), "{dom}");
    let path = artifacts().join("status-phone.png");
    let _ = std::fs::remove_file(&path);
    chromium(
        &e,
        &[
            &format!("--screenshot={}", path.display()),
            "--window-size=390,844",
            &url,
        ],
    );
    let png = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        path.display()
    );
}
