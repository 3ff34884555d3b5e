//! `rule` checks in a running daemon, over the series its checks feed:
//! a command whose exit status grows by one at each run (a number that
//! grows, as a disk fills) trips an `increase` rule and a `predict`
//! rule, each opening an incident; rules that should hold hold; `vigie
//! check` judges a rule over the store the daemon flushed.

use std::time::Duration;

use serde_json::Value;
use vigie_testkit::check;

use crate::util::{api_check, assert_has, env, exits, start, wait_or_explain, wait_state};

/// `grows`: every 100 ms, exits with one more than its last run (its
/// `exit_code` counts 1, 2, 3…), every status accepted.
fn grows() -> String {
    let statuses: Vec<String> = (0..=255).map(|i| i.to_string()).collect();
    let shell = "n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo $n > count; exit $n";
    check(
        "grows",
        &format!(
            "command = {{ shell = '{shell}', expect_exit = [{}] }}",
            statuses.join(", ")
        ),
        "every = \"100ms\"",
    )
}

fn rule(name: &str, expr: &str) -> String {
    check(
        name,
        &format!("rule = {{ expr = '{expr}' }}"),
        "every = \"200ms\"",
    )
}

const EXIT: &str = r#"vigie_check_value{check="grows",name="exit_code"}"#;

#[test]
fn a_growing_series_trips_its_rules_and_opens_incidents() {
    let e = env();
    let config = [
        grows(),
        rule("growth", &format!("increase({EXIT}, 1h) > 10")),
        rule("trend", &format!("predict({EXIT}, 10m, 250) < 1h")),
        rule("calm", &format!("max({EXIT}, 1h) > 1000")),
        rule("fed", &format!("absent({EXIT}, 1m)")),
        rule("never", r#"absent(app_queue_length{queue="mail"}, 1m)"#),
    ]
    .concat();
    let mut d = start(&e, &config);
    let limit = Duration::from_secs(30);
    let growth = wait_state(&d, "growth", "failing", limit);
    let msg = growth["last_message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("{EXIT} grew ")) && msg.ends_with(", above 10"),
        "{growth}"
    );
    let value = growth["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "value")
        .unwrap_or_else(|| panic!("no value: {growth}"))["value"]
        .as_f64()
        .unwrap();
    assert!(value > 10.0, "{growth}");
    let trend = wait_state(&d, "trend", "failing", limit);
    let msg = trend["last_message"].as_str().unwrap();
    assert!(
        msg.contains(" reaches 250 in ") && msg.contains("at the current rate"),
        "{trend}"
    );
    let never = wait_state(&d, "never", "failing", limit);
    assert!(
        never["last_message"]
            .as_str()
            .unwrap()
            .contains("never recorded"),
        "{never}"
    );
    // The rules that hold, once they have judged the series: no failure,
    // ever (their state stays ok from the first run on).
    for (name, says) in [("calm", ": maximum over 1h "), ("fed", ": last sample ")] {
        wait_or_explain(
            limit,
            || {
                api_check(&d, name)["last_message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says))
            },
            || format!("{name}: {}", api_check(&d, name)),
        );
        let c = api_check(&d, name);
        assert_eq!(c["state"], "ok", "{c}");
        assert_eq!(c["failures_total"], 0, "{c}");
    }
    // Each failing rule opened an incident.
    let (_, api) = d.http("GET", "/api/v1/incidents", &[]);
    let incidents: Value = serde_json::from_str(&api).unwrap();
    for name in ["growth", "trend", "never"] {
        assert!(
            incidents["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["check"] == name),
            "no incident for {name}: {incidents}"
        );
    }
    // The rule's value is itself a series.
    let (status, body) = d.http(
        "GET",
        "/api/v1/series?name=vigie_check_value&labels=check=growth,name=value&from=0",
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let values: Value = serde_json::from_str(&body).unwrap();
    assert!(
        !values["samples"].as_array().unwrap().is_empty(),
        "{values}"
    );
    // `vigie check` judges a rule over what the daemon flushed at its stop.
    d.signal(rustix::process::Signal::TERM);
    d.wait(limit);
    let r = exits(&e, &["check", "growth"], 1, &[]);
    for needle in ["growth", "grew", "above 10"] {
        assert_has(&r.stdout, needle);
    }
}
