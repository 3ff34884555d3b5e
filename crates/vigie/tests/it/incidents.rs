//! Incidents through the real binary: repair before alert, notification
//! and escalation, the restart limit, a parent that silences its
//! children, and a daemon killed mid-incident that sends nothing twice.

use std::fmt::Write as _;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use vigie_testkit::daemon::Daemon;
use vigie_testkit::{Env, Need, python_http_service, require, servers, wait_until};

use crate::util::{assert_has, env, exits, free_port, wait_state};

fn incidents(e: &Env) -> Vec<Value> {
    let r = e.run(&["incidents", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str::<Value>(&r.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn kill_port_owner(pidfile: &std::path::Path) {
    if let Ok(pid) = std::fs::read_to_string(pidfile)
        && let Some(pid) = pid
            .trim()
            .parse::<i32>()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}

const HEAD: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n";

/// `[notify.NAME]`: a webhook to the capture server at `addr`.
fn webhook(name: &str, addr: impl std::fmt::Display) -> String {
    format!("[notify.{name}]\nkind = \"webhook\"\nurl = \"http://{addr}/in\"\n\n")
}

/// The quoted list of `actions`.
fn list(actions: &[&str]) -> String {
    actions
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The check `svc` on 127.0.0.1:`port` (every 200ms, failing after two
/// runs) with `actions`; `extra` are more lines of it.
fn tcp_svc(port: u16, extra: &str, actions: &[&str]) -> String {
    format!(
        "[[check]]\nname = \"svc\"\ntcp = {{ address = \"127.0.0.1:{port}\" }}\nevery = \"200ms\"\nfail_after = 2\n{extra}actions = [{}]\n\n",
        list(actions)
    )
}

/// A check `name` that passes while `flag` exists, run `every`, with
/// `actions`; `extra` are more lines of it.
fn flag_check(
    name: &str,
    flag: &std::path::Path,
    every: &str,
    extra: &str,
    actions: &[&str],
) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\ncommand = {{ argv = [\"test\", \"-e\", \"{}\"] }}\nevery = \"{every}\"\n{extra}actions = [{}]\n\n",
        flag.display(),
        list(actions)
    )
}

/// The kinds of an incident's events (`incidents --json`), in order.
fn kinds(inc: &Value) -> Vec<&str> {
    inc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

/// The host/web pair: `host` (every 200ms, failing after two runs,
/// `host_actions`) and `web` that depends on it (every 300ms, failing at
/// once, paging `hook`), each up while its flag exists; both start up,
/// and are seen up before this returns with the daemon.
fn host_and_web(
    e: &Env,
    hook: impl std::fmt::Display,
    host_actions: &[&str],
    tables: &str,
) -> Daemon {
    let host = e.path().join("host-up");
    let web = e.path().join("web-up");
    e.config(&format!(
        "{HEAD}{}{tables}{}{}",
        webhook("hook", hook),
        flag_check("host", &host, "200ms", "fail_after = 2\n", host_actions),
        flag_check(
            "web",
            &web,
            "300ms",
            "fail_after = 1\ndepends_on = [\"host\"]\n",
            &["notify:hook"]
        ),
    ));
    std::fs::write(&host, "").unwrap();
    std::fs::write(&web, "").unwrap();
    let d = e.daemon();
    wait_state(&d, "host", "ok", Duration::from_secs(10));
    wait_state(&d, "web", "ok", Duration::from_secs(10));
    d
}

#[test]
fn a_killed_service_is_restarted_and_nobody_is_paged() {
    require!(Need::Python3);
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    let pidfile = e.path().join("service.pid");
    e.config(&format!(
        r#"{HEAD}{}[action.restart-svc]
shell = "python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & echo $! > {pid}"
verify = "10s"

{}"#,
        webhook("hook", hook.addr),
        tcp_svc(
            port,
            "severity = \"high\"\n",
            &["restart-svc", "notify:hook"]
        ),
        pid = pidfile.display()
    ));
    let mut service = python_http_service(port);
    let d = e.daemon();
    wait_state(&d, "svc", "ok", Duration::from_secs(10));
    service.kill().unwrap();
    service.wait().unwrap();
    wait_until(Duration::from_secs(15), || {
        incidents(&e)
            .first()
            .is_some_and(|i| i["state"] == "resolved")
    });
    let inc = &incidents(&e)[0];
    assert_eq!(inc["resolution"], "repaired", "{inc}");
    assert_eq!(
        inc["severity"], "information",
        "kept at the information level"
    );
    assert_eq!(inc["check"], "svc");
    let kinds = kinds(inc);
    assert_eq!(kinds.first(), Some(&"opened"));
    assert!(kinds.contains(&"repair"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"resolved"));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the service runs again"
    );
    // Its notify step would have paged before the incident ended.
    assert_eq!(
        seen.lock().unwrap().len(),
        0,
        "a repaired incident pages nobody"
    );
    drop(d);
    kill_port_owner(&pidfile);
}

#[test]
fn a_failed_repair_notifies_then_escalates_then_resolves() {
    require!(Need::Python3);
    let (phone, phone_seen) = servers::capture(&[200]);
    let (boss, boss_seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    e.config(&format!(
        r#"{HEAD}{}[notify.boss]
kind = "gotify"
url = "http://{boss}/"
token = {{ env = "PATH" }}

[action.useless-fix]
run = ["true"]
verify = "1s"

[action.page-boss]
notify = ["boss"]
after = "3s"
severity = "disaster"

{}"#,
        webhook("phone", phone.addr),
        tcp_svc(
            port,
            "severity = \"high\"\n",
            &["useless-fix", "notify:phone", "page-boss"]
        ),
        boss = boss.addr,
    ));
    let d = e.daemon();
    wait_seen(&phone_seen, 1, 10);
    let first: Value = serde_json::from_str(&phone_seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(first["severity"], "high");
    assert_eq!(first["state"], "failing");
    assert_eq!(first["title"], "[HIGH] svc is failing");
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{first}"
    );
    assert!(
        first["body"]
            .as_str()
            .unwrap()
            .contains("repair useless-fix ran (exit 0) but svc still failed 1s later"),
        "{first}"
    );
    assert_eq!(
        boss_seen.lock().unwrap().len(),
        0,
        "the escalation waits for its delay"
    );
    wait_seen(&boss_seen, 1, 10);
    let esc: Value = serde_json::from_str(&boss_seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(esc["priority"], 10, "escalated at disaster severity: {esc}");
    // The service comes back: both are told, once.
    let mut service = python_http_service(port);
    wait_until(Duration::from_secs(10), || {
        phone_seen.lock().unwrap().len() == 2 && boss_seen.lock().unwrap().len() == 2
    });
    let resolved: Value = serde_json::from_str(&phone_seen.lock().unwrap()[1].body).unwrap();
    assert_eq!(resolved["state"], "recovered");
    assert!(
        resolved["title"]
            .as_str()
            .unwrap()
            .starts_with("svc recovered after"),
        "{resolved}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(phone_seen.lock().unwrap().len(), 2);
    assert_eq!(incidents(&e)[0]["resolution"], "recovered");
    drop(d);
    service.kill().unwrap();
    let _ = service.wait();
}

#[test]
fn past_the_restart_limit_vigie_stops_repairing_and_says_so() {
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    e.config(&format!(
        r#"{HEAD}{}[action.fix]
run = ["true"]
verify = "500ms"
max = {{ restarts = 1, within = "1h" }}

{}"#,
        webhook("hook", hook.addr),
        tcp_svc(port, "", &["fix", "fix", "notify:hook"]),
    ));
    let _d = e.daemon();
    wait_seen(&seen, 1, 10);
    let msg: Value = serde_json::from_str(&seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(msg["title"], "[AVERAGE] svc is failing (repairs stopped)");
    let inc = &incidents(&e)[0];
    let events: Vec<(&str, &str)> = inc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events.iter().filter(|(k, _)| *k == "repair").count(),
        1,
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(k, d)| *k == "restart limit" && d.contains("1 repairs by fix within 1h")),
        "{events:?}"
    );
}

#[test]
fn a_parent_down_sends_one_notification_naming_its_children() {
    require!(Need::Python3);
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    let mut cfg = format!(
        "{HEAD}{}[[check]]\nname = \"host\"\ntcp = {{ address = \"127.0.0.1:{port}\" }}\nevery = \"300ms\"\nfail_after = 2\nactions = [\"notify:hook\"]\n\n",
        webhook("hook", hook.addr)
    );
    for i in 1..=5 {
        let _ = write!(
            cfg,
            "[[check]]\nname = \"app{i}\"\nhttp = {{ url = \"http://127.0.0.1:{port}/?app={i}\" }}\nevery = \"200ms\"\nfail_after = 1\ndepends_on = [\"host\"]\nactions = [\"notify:hook\"]\n\n"
        );
    }
    e.config(&cfg);
    let mut service = python_http_service(port);
    let d = e.daemon();
    for name in ["host", "app1", "app2", "app3", "app4", "app5"] {
        wait_state(&d, name, "ok", Duration::from_secs(10));
    }
    service.kill().unwrap();
    service.wait().unwrap();
    wait_until(Duration::from_secs(10), || !seen.lock().unwrap().is_empty());
    // Every child's incident is held by the host: none of them pages.
    wait_until(Duration::from_secs(10), || {
        incidents(&e)
            .iter()
            .filter(|i| i["suppressed_by"] == "host")
            .count()
            == 5
    });
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len(),
        1,
        "one notification: {:?}",
        seen.iter().map(|c| &c.body).collect::<Vec<_>>()
    );
    let msg: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(msg["check"], "host");
    assert_eq!(
        msg["silenced"],
        serde_json::json!(["app1", "app2", "app3", "app4", "app5"])
    );
    let list = incidents(&e);
    let silenced = list.iter().filter(|i| i["suppressed_by"] == "host").count();
    assert_eq!(silenced, 5, "{list:?}");
    drop(d);
}

#[test]
fn a_daemon_killed_mid_incident_does_not_notify_twice() {
    require!(Need::Python3);
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    e.config(&format!(
        "{HEAD}{}{}",
        webhook("hook", hook.addr),
        tcp_svc(port, "", &["notify:hook"])
    ));
    let mut d = e.daemon();
    wait_seen(&seen, 1, 10);
    d.signal(Signal::KILL);
    d.wait(Duration::from_secs(5));
    let d2 = e.daemon();
    d2.wait_log("resuming incident", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing sent twice");
    // Recovery after the restart is still announced, once.
    let mut service = python_http_service(port);
    wait_seen(&seen, 2, 10);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(incidents(&e).len(), 1, "the same incident, resumed");
    service.kill().unwrap();
    let _ = service.wait();
}

#[test]
fn an_acknowledged_incident_does_not_escalate() {
    let (phone, phone_seen) = servers::capture(&[200]);
    let (boss, boss_seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    e.write("api.token", "api-secret\n");
    e.config(&format!(
        r#"[server]
listen = "127.0.0.1:0"
token = {{ file = "api.token" }}

{}{}[action.page-boss]
notify = ["boss"]
after = "3s"

{}"#,
        webhook("phone", phone.addr),
        webhook("boss", boss.addr),
        tcp_svc(port, "", &["notify:phone", "page-boss"]),
    ));
    let d = e.daemon();
    wait_seen(&phone_seen, 1, 10);
    let id = incidents(&e)[0]["id"].as_i64().unwrap().to_string();
    // The API wants the token.
    let (status, _) = d.http("POST", &format!("/api/v1/incidents/{id}/ack"), &[]);
    assert_eq!(status, 401);
    let r = e.run(&["ack", &id, "--note", "on it"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, format!("incident {id}: acknowledged\n"));
    let r = e.run(&["ack", "999"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no such incident"), "{}", r.stderr);
    // The escalation's 3s pass: it is skipped, not sent.
    wait_until(Duration::from_secs(10), || {
        kinds(&incidents(&e)[0]).contains(&"escalation skipped")
    });
    assert_eq!(
        boss_seen.lock().unwrap().len(),
        0,
        "no escalation after the ack"
    );
    let inc = &incidents(&e)[0];
    assert_eq!(inc["state"], "acknowledged");
    assert_eq!(inc["ack_note"], "on it");
    let (status, body) = d.http(
        "GET",
        "/api/v1/incidents",
        &[("authorization", "Bearer api-secret")],
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"ack_note\":\"on it\""), "{body}");
}

#[test]
fn a_notifier_that_is_down_is_visible_and_blocks_nothing() {
    let closed = free_port();
    let port = free_port();
    let e = env();
    e.config(&format!(
        "{HEAD}[engine]\nnotify_attempts = 2\nnotify_backoff = \"100ms\"\n\n{}{}",
        webhook("hook", format!("127.0.0.1:{closed}")),
        tcp_svc(port, "", &["notify:hook"])
    ));
    let d = e.daemon();
    d.wait_log("notification not delivered", Duration::from_secs(10));
    let (_, metrics) = d.http("GET", "/metrics", &[]);
    assert!(
        metrics.contains("vigie_notifications_total{notifier=\"hook\",result=\"failed\"} 1"),
        "{metrics}"
    );
    // The check's state reaches the store within the writer's batch window.
    wait_until(Duration::from_secs(5), || e.run(&["status"]).code == 1);
    let r = e.run(&["status"]);
    assert!(
        r.stdout.contains("notifier hook FAILING since"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 open incident"), "{}", r.stdout);
    // Checks went on running all along.
    let before = api_runs(&d);
    wait_until(Duration::from_secs(5), || api_runs(&d) >= before + 2);
}

fn api_runs(d: &vigie_testkit::daemon::Daemon) -> u64 {
    let (_, body) = d.http("GET", "/api/v1/checks", &[]);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["checks"][0]["runs_total"].as_u64().unwrap()
}

#[test]
fn a_maintenance_window_holds_notifications_until_it_ends() {
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts = |s: u64| {
        jiff::Timestamp::from_second(i64::try_from(s).unwrap())
            .unwrap()
            .to_string()
    };
    e.config(&format!(
        "{HEAD}{}[[maintenance]]\nname = \"upgrade\"\nchecks = [\"svc\"]\nfrom = \"{}\"\nuntil = \"{}\"\n\n{}",
        webhook("hook", hook.addr),
        ts(now - 60),
        ts(now + 4),
        tcp_svc(port, "", &["notify:hook"]),
    ));
    let d = e.daemon();
    wait_until(Duration::from_secs(5), || {
        incidents(&e)
            .first()
            .is_some_and(|i| i["state"] == "maintenance")
    });
    assert_eq!(seen.lock().unwrap().len(), 0, "nothing during the window");
    // Still failing when the window ends: now it notifies.
    wait_seen(&seen, 1, 10);
    let kinds: Vec<String> = incidents(&e)[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["kind"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        kinds.contains(&"held: in maintenance window upgrade".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"released: no longer in maintenance window upgrade".to_owned()),
        "{kinds:?}"
    );
    drop(d);
}

#[test]
fn a_maintenance_from_the_command_line_holds_notifications_until_it_is_ended() {
    let (hook, seen) = servers::capture(&[200]);
    let e = env();
    let flag = e.path().join("up");
    e.config(&format!(
        "{HEAD}{}{}",
        webhook("hook", hook.addr),
        flag_check("svc", &flag, "100ms", "", &["notify:hook"]),
    ));
    std::fs::write(&flag, "").unwrap();
    // No daemon: said so, with what to do.
    exits(
        &e,
        &["maintenance", "start", "svc", "--for", "1h"],
        3,
        &["the daemon is not running", "vigie run"],
    );
    let d = e.daemon();
    wait_state(&d, "svc", "ok", Duration::from_secs(10));
    // What a command prints on stdout after it exits 0.
    let says = |args: &[&str], said: &str| assert_has(&exits(&e, args, 0, &[]).stdout, said);
    says(
        &["maintenance", "start", "svc", "--for", "1h"],
        "svc: in maintenance until 20",
    );
    says(&["status"], "check svc in maintenance until 20");
    says(&["status"], "vigie maintenance end svc");
    let json = exits(&e, &["status", "--json"], 0, &[]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["maintenance"][0]["check"], "svc", "{v}");
    // Failing in maintenance: the incident waits, nothing is sent.
    std::fs::remove_file(&flag).unwrap();
    wait_until(Duration::from_secs(10), || {
        incidents(&e)
            .first()
            .is_some_and(|i| i["state"] == "maintenance")
    });
    assert_eq!(seen.lock().unwrap().len(), 0, "nothing during maintenance");
    // Ended by hand while still failing: now it notifies.
    says(&["maintenance", "end", "svc"], "svc: ended");
    wait_seen(&seen, 1, 10);
    says(
        &["maintenance", "end", "svc"],
        "svc: was not in maintenance",
    );
    // Bad input: a check that does not exist, a duration out of bounds.
    exits(
        &e,
        &["maintenance", "start", "nope", "--for", "1h"],
        2,
        &["no check named `nope`", "vigie status"],
    );
    exits(
        &e,
        &["maintenance", "start", "svc", "--for", "30d"],
        2,
        &["svc: a maintenance lasts from 1 minute to 7 days"],
    );
    exits(
        &e,
        &["maintenance", "start", "svc", "--for", "soon"],
        2,
        &["--for"],
    );
    let status = e.run(&["status"]);
    assert!(
        !status.stdout.contains("in maintenance until"),
        "{status:?}"
    );
    drop(d);
}

#[test]
fn a_flapping_check_says_so_once_and_then_holds() {
    let (hook, seen) = servers::capture(&[200]);
    let e = env();
    let flag = e.path().join("up");
    e.config(&format!(
        "{HEAD}{}{}",
        webhook("hook", hook.addr),
        flag_check(
            "svc",
            &flag,
            "100ms",
            "flapping = { changes = 4, within = \"1h\" }\n",
            &["notify:hook"]
        ),
    ));
    std::fs::write(&flag, "").unwrap();
    let d = e.daemon();
    wait_state(&d, "svc", "ok", Duration::from_secs(10));
    let states = || -> Vec<String> {
        bodies(&seen)
            .iter()
            .map(|v| v["state"].as_str().unwrap().to_owned())
            .collect()
    };
    for _ in 0..6 {
        std::fs::remove_file(&flag).unwrap();
        wait_state(&d, "svc", "failing", Duration::from_secs(10));
        std::fs::write(&flag, "").unwrap();
        wait_state(&d, "svc", "ok", Duration::from_secs(10));
    }
    std::fs::remove_file(&flag).unwrap();
    wait_until(Duration::from_secs(10), || {
        states().contains(&"flapping".to_owned())
            && incidents(&e).iter().any(|i| i["state"] == "flapping")
    });
    let states = states();
    assert_eq!(
        states.iter().filter(|s| *s == "flapping").count(),
        1,
        "{states:?}"
    );
    assert!(
        states.len() <= 3,
        "one failure, its recovery, then the flapping notice: {states:?}"
    );
    drop(d);
}

#[test]
fn a_repair_that_hangs_is_killed_and_the_next_step_runs() {
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    let marker = e.path().join("still-running");
    e.config(&format!(
        "{HEAD}{}[action.stuck]\nshell = \"sleep 2; touch {}\"\ntimeout = \"500ms\"\n\n{}",
        webhook("hook", hook.addr),
        marker.display(),
        tcp_svc(port, "", &["stuck", "notify:hook"]),
    ));
    let _d = e.daemon();
    wait_seen(&seen, 1, 10);
    let inc = &incidents(&e)[0];
    let details: Vec<&str> = inc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(details.contains(&"stuck"), "{details:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !marker.exists(),
        "the hung repair was killed, not left running"
    );
}

/// Wait (at most `secs` seconds) until `seen` holds `n` requests.
fn wait_seen(seen: &std::sync::Mutex<Vec<servers::Captured>>, n: usize, secs: u64) {
    wait_until(Duration::from_secs(secs), || {
        seen.lock().unwrap().len() == n
    });
}

fn bodies(seen: &std::sync::Mutex<Vec<servers::Captured>>) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|c| serde_json::from_str(&c.body).unwrap())
        .collect()
}

#[test]
fn a_child_released_after_its_parents_repair_rechecks_before_paging() {
    // The parent's repair brings its child back a second later (a web
    // port after its host): the child, silenced meanwhile, must not page
    // "web is failing" on release and "recovered" right after.
    let (hook, seen) = servers::capture(&[200]);
    let e = env();
    let host = e.path().join("host-up");
    let web = e.path().join("web-up");
    let d = host_and_web(
        &e,
        hook.addr,
        &["restart-host", "notify:hook"],
        &format!(
            "[action.restart-host]\nshell = \"touch {}; (sleep 1; touch {}) &\"\nverify = \"10s\"\n\n",
            host.display(),
            web.display()
        ),
    );
    std::fs::remove_file(&web).unwrap();
    std::fs::remove_file(&host).unwrap();
    // Both incidents open, then both end: the host repaired, the web
    // recovered once re-checked.
    wait_until(Duration::from_secs(20), || {
        let list = incidents(&e);
        list.len() == 2 && list.iter().all(|i| i["state"] == "resolved")
    });
    let list = incidents(&e);
    let child = list.iter().find(|i| i["check"] == "web").unwrap();
    assert_eq!(child["resolution"], "recovered", "{child}");
    let kinds = kinds(child);
    assert!(kinds.contains(&"held"), "{kinds:?}");
    assert!(kinds.contains(&"released"), "{kinds:?}");
    let parent = list.iter().find(|i| i["check"] == "host").unwrap();
    assert_eq!(parent["resolution"], "repaired", "{parent}");
    // Their notify steps would have paged before the incidents ended.
    assert_eq!(bodies(&seen), Vec::<Value>::new(), "nobody paged");
    drop(d);
}

#[test]
fn a_failed_repair_is_named_in_the_page_with_the_incident_and_how_to_ack() {
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    e.config(&format!(
        r#"{HEAD}{}[action.restart-ghost]
shell = "echo ghost.service not found; exit 1"

{}"#,
        webhook("hook", hook.addr),
        tcp_svc(
            port,
            "severity = \"high\"\n",
            &["restart-ghost", "notify:hook"]
        ),
    ));
    let _d = e.daemon();
    wait_seen(&seen, 1, 10);
    let msg = &bodies(&seen)[0];
    let id = incidents(&e)[0]["id"].as_i64().unwrap();
    assert_eq!(msg["incident"], id);
    let body = msg["body"].as_str().unwrap();
    assert!(
        body.contains("repair restart-ghost ran and failed (exit 1: ghost.service not found)"),
        "{body}"
    );
    assert!(
        body.ends_with(&format!("incident {id} · ack: vigie ack {id}")),
        "{body}"
    );
}

#[test]
fn an_incident_of_a_check_removed_by_a_reload_is_closed() {
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    let keep = "[[check]]\nname = \"keep\"\ncommand = { argv = [\"true\"] }\n";
    let head = format!("{HEAD}{}{keep}\n", webhook("hook", hook.addr));
    e.config(&format!("{head}{}", tcp_svc(port, "", &["notify:hook"])));
    let d = e.daemon();
    wait_seen(&seen, 1, 10);
    e.config(&head);
    d.signal(Signal::HUP);
    d.wait_log("configuration reloaded", Duration::from_secs(5));
    wait_until(Duration::from_secs(5), || {
        incidents(&e)[0]["state"] == "resolved"
    });
    let inc = &incidents(&e)[0];
    assert_eq!(inc["resolution"], "check removed", "{inc}");
    // Whoever was paged hears that it is closed, once.
    wait_seen(&seen, 2, 5);
    let closed = &bodies(&seen)[1];
    assert_eq!(closed["state"], "check removed", "{closed}");
    assert_eq!(closed["incident"], inc["id"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(seen.lock().unwrap().len(), 2);
    let r = e.run(&["incidents"]);
    assert!(r.stdout.contains("check removed"), "{}", r.stdout);
}

#[test]
fn a_warning_reaches_a_named_notify_step_and_a_step_it_cannot_reach_is_recorded() {
    let (phone, phone_seen) = servers::capture(&[200]);
    let (boss, boss_seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    e.config(&format!(
        r#"{HEAD}{}{}[action.page]
notify = ["phone"]

[action.page-boss]
notify = ["boss"]
min_severity = "high"

{}"#,
        webhook("phone", phone.addr),
        webhook("boss", boss.addr),
        tcp_svc(port, "severity = \"warning\"\n", &["page", "page-boss"]),
    ));
    let _d = e.daemon();
    wait_seen(&phone_seen, 1, 10);
    assert_eq!(bodies(&phone_seen)[0]["severity"], "warning");
    wait_until(Duration::from_secs(5), || {
        incidents(&e)[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ev| ev["kind"] == "notify skipped")
    });
    let events = incidents(&e)[0]["events"].clone();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|ev| ev["detail"] == "page-boss: severity warning is below its min_severity high"),
        "{events}"
    );
    assert_eq!(boss_seen.lock().unwrap().len(), 0);
}

#[test]
fn an_incident_of_a_check_removed_while_the_daemon_was_stopped_is_closed_at_start() {
    let (hook, seen) = servers::capture(&[200]);
    let port = free_port();
    let e = env();
    let head = format!(
        "{HEAD}{}[[check]]\nname = \"keep\"\ncommand = {{ argv = [\"true\"] }}\n\n",
        webhook("hook", hook.addr)
    );
    e.config(&format!("{head}{}", tcp_svc(port, "", &["notify:hook"])));
    let mut d = e.daemon();
    wait_seen(&seen, 1, 10);
    d.signal(Signal::TERM);
    d.wait(Duration::from_secs(5));
    e.config(&head);
    let _d = e.daemon();
    wait_seen(&seen, 2, 5);
    let closed = &bodies(&seen)[1];
    assert_eq!(closed["state"], "check removed", "{closed}");
    let inc = &incidents(&e)[0];
    assert_eq!(inc["resolution"], "check removed", "{inc}");
}

#[test]
fn a_released_child_that_still_fails_on_its_own_pages() {
    let (hook, seen) = servers::capture(&[200]);
    let e = env();
    let host = e.path().join("host-up");
    let web = e.path().join("web-up");
    let _d = host_and_web(&e, hook.addr, &["notify:hook"], "");
    std::fs::remove_file(&web).unwrap();
    std::fs::remove_file(&host).unwrap();
    wait_until(Duration::from_secs(10), || {
        bodies(&seen).iter().any(|m| m["check"] == "host")
            && incidents(&e)
                .iter()
                .any(|i| i["check"] == "web" && i["state"] == "suppressed")
    });
    assert_eq!(bodies(&seen).len(), 1, "the host speaks for both");
    // The host comes back by itself; the web stays down.
    std::fs::write(&host, "").unwrap();
    wait_until(Duration::from_secs(10), || {
        bodies(&seen)
            .iter()
            .any(|m| m["check"] == "web" && m["state"] == "failing")
    });
    let list = incidents(&e);
    let child = list.iter().find(|i| i["check"] == "web").unwrap();
    assert_eq!(child["state"], "notified", "{child}");
    let kinds = kinds(child);
    assert!(kinds.contains(&"released"), "{kinds:?}");
}
