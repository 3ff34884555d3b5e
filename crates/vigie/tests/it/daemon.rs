//! `vigie run` as a daemon: heartbeats, the API, /metrics, signals, and
//! state that survives SIGKILL.

use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::Value;
use vigie_testkit::daemon::Daemon;
use vigie_testkit::{Env, check, servers};

use crate::util::{
    SERVER, api_check, assert_has, assert_metrics, env, heartbeat_token, http_check_of, start,
    token_daemon, wait_state,
};

/// A daemon of `e` with heartbeat checks, each (name, its heartbeat's
/// settings but the token, its `every`), all with the token `tok-123`.
fn heartbeats<const N: usize>(
    e: &vigie_testkit::Env,
    checks: [(&str, &str, &str); N],
) -> vigie_testkit::daemon::Daemon {
    e.write("hb.token", "tok-123\n");
    let tables: Vec<String> = checks
        .iter()
        .map(|(name, settings, every)| {
            check(
                name,
                &format!("heartbeat = {{ {settings}, token = {{ file = \"hb.token\" }} }}"),
                &format!("every = \"{every}\""),
            )
        })
        .collect();
    start(e, &tables.concat())
}

#[test]
fn heartbeat_on_time_late_and_failed() {
    let e = env();
    let d = heartbeats(
        &e,
        [
            ("job", "period = \"1s\", grace = \"500ms\"", "100ms"),
            ("other", "period = \"1h\"", "1h"),
        ],
    );
    let bearer = [("authorization", "Bearer tok-123")];
    // Never pinged but within its first window: ok.
    wait_state(&d, "job", "ok", Duration::from_secs(5));
    assert_eq!(d.http("POST", "/ping/job", &bearer).0, 200);
    assert_eq!(d.http("GET", "/ping/job?token=tok-123", &[]).0, 200);
    // No ping for more than period + grace: failing.
    fails_saying(&d, "job", 5, "more than period 1s + grace 500ms");
    // A ping brings it back at once, without waiting for the next run.
    assert_eq!(d.http("POST", "/ping/job", &bearer).0, 200);
    wait_state(&d, "job", "ok", Duration::from_secs(2));
    // The job reports a failure.
    assert_eq!(d.http("POST", "/ping/job/fail", &bearer).0, 200);
    fails_saying(&d, "job", 2, "reported a failure");
}

#[test]
fn heartbeat_exit_statuses_like_healthchecks_io() {
    let e = env();
    let d = heartbeats(&e, [("job", "period = \"1h\"", "100ms")]);
    let bearer = [("authorization", "Bearer tok-123")];
    wait_state(&d, "job", "ok", Duration::from_secs(5));
    // A non-zero status is a failure that says which.
    assert_eq!(d.http("POST", "/ping/job/3", &bearer).0, 200);
    fails_saying(&d, "job", 2, "the job exited with status 3");
    // 0 is a success.
    assert_eq!(d.http("GET", "/ping/job/0?token=tok-123", &[]).0, 200);
    wait_state(&d, "job", "ok", Duration::from_secs(2));
    // Anything else after the name is no route, token or not.
    for word in ["256", "-1", "+3", "nope"] {
        assert_eq!(
            d.http("POST", &format!("/ping/job/{word}"), &bearer).0,
            404,
            "{word}"
        );
    }
    assert_eq!(d.http("POST", "/ping/job/7", &[]).0, 401);
    // The status is stored: a restarted daemon still says it.
    assert_eq!(d.http("POST", "/ping/job/255", &bearer).0, 200);
    fails_saying(&d, "job", 2, "exited with status 255");
    stop_daemon(d);
    let d = e.daemon();
    fails_saying(&d, "job", 5, "exited with status 255");
}

#[test]
fn heartbeat_start_times_the_run_and_max_duration_bounds_it() {
    let e = env();
    let d = heartbeats(
        &e,
        [
            ("job", "period = \"1h\", max_duration = \"1s\"", "100ms"),
            ("starter", "period = \"1s\", grace = \"500ms\"", "100ms"),
        ],
    );
    let bearer = [("authorization", "Bearer tok-123")];
    wait_state(&d, "job", "ok", Duration::from_secs(5));
    // A start is no failure, and says the job runs.
    assert_eq!(d.http("POST", "/ping/job/start", &bearer).0, 200);
    assert_eq!(
        d.http("GET", "/ping/starter/start?token=tok-123", &[]).0,
        200
    );
    std::thread::sleep(Duration::from_millis(300));
    let running = api_check(&d, "job");
    assert_eq!(running["state"], "ok", "{running}");
    assert_has(
        running["last_message"].as_str().unwrap(),
        "running, started",
    );
    // Not finished within max_duration: failing.
    fails_saying(&d, "job", 5, "not finished within max_duration 1s");
    // Its success ends the run, timed from the start.
    assert_eq!(d.http("POST", "/ping/job", &bearer).0, 200);
    let done = wait_state(&d, "job", "ok", Duration::from_secs(2));
    assert_has(done["last_message"].as_str().unwrap(), "after running 1s");
    let took = done["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "duration_seconds")
        .and_then(|m| m["value"].as_f64());
    assert!(took.is_some_and(|t| t >= 1.0), "{done}");
    // A job that only ever starts is late: a start is not a ping.
    assert_eq!(d.http("POST", "/ping/starter/start", &bearer).0, 200);
    fails_saying(&d, "starter", 5, "no ping yet");
    // The duration is stored: a restarted daemon still says it.
    stop_daemon(d);
    let d = e.daemon();
    let again = wait_state(&d, "job", "ok", Duration::from_secs(5));
    assert_has(again["last_message"].as_str().unwrap(), "after running 1s");
}

#[test]
fn heartbeat_body_shows_in_the_failure_and_survives_a_restart() {
    let e = env();
    let d = heartbeats(&e, [("job", "period = \"1h\"", "100ms")]);
    let bearer = [("authorization", "Bearer tok-123")];
    wait_state(&d, "job", "ok", Duration::from_secs(5));
    // The job's output, with its token echoed in it and a long tail of
    // blank lines (the first 10 KB are kept).
    let mut output = "open repository\ncurl …/ping/job?token=tok-123\nrestic: repository locked\n"
        .as_bytes()
        .to_vec();
    output.extend(std::iter::repeat_n(b'\n', 30 * 1024));
    let (status, _) = d.post("/ping/job/1", &bearer, &output);
    assert_eq!(status, 200, "a long body is cut, not refused");
    fails_saying(&d, "job", 2, "restic: repository locked");
    let failing = api_check(&d, "job");
    let message = failing["last_message"].as_str().unwrap();
    assert!(!message.contains("tok-123"), "{message}");
    assert_has(message, "token=<token>");
    // The server's own limit still holds.
    let (status, _) = d.post("/ping/job/1", &bearer, &vec![b'x'; 100 * 1024]);
    assert_eq!(status, 413);
    // Kept in the store, 10 KB of it, without the token.
    stop_daemon(d);
    let store = vigie_store::Store::open(&e.state_dir()).unwrap();
    let kept = store.heartbeats().unwrap()[0].last_body.clone().unwrap();
    assert_eq!(kept.len(), 10 * 1024);
    assert!(kept.starts_with("open repository") && !kept.contains("tok-123"));
    drop(store);
    let d = e.daemon();
    fails_saying(&d, "job", 5, "restic: repository locked");
    // A success's bare GET clears it.
    assert_eq!(d.http("GET", "/ping/job?token=tok-123", &[]).0, 200);
    let ok = wait_state(&d, "job", "ok", Duration::from_secs(2));
    assert!(
        !ok["last_message"].as_str().unwrap().contains("restic"),
        "{ok}"
    );
}

#[test]
fn heartbeat_on_a_cron_schedule_is_late_after_its_time_plus_grace() {
    let e = env();
    e.write("hb.token", "tok-123\n");
    // A daily run two hours ago (Paris time), a grace of one hour, and a
    // last ping stored from the day before: late as soon as it starts.
    let now = jiff::Timestamp::now().in_tz("Europe/Paris").unwrap();
    let due = now.checked_sub(jiff::Span::new().hours(2)).unwrap();
    let schedule = format!("0 {} * * *", due.hour());
    let mut store = vigie_store::Store::open(&e.state_dir()).unwrap();
    let day_ago = vigie_core::Timestamp(vigie_core::Timestamp::now().millis() - 86_400_000);
    let success = vigie_store::HeartbeatPing::Success;
    store
        .heartbeat_ping("job", day_ago, success, None, None)
        .unwrap();
    drop(store);
    let job = check(
        "job",
        &format!(
            "heartbeat = {{ schedule = \"{schedule}\", timezone = \"Europe/Paris\", grace = \"1h\", token = {{ file = \"hb.token\" }} }}"
        ),
        "every = \"100ms\"",
    );
    let d = start(&e, &job);
    fails_saying(
        &d,
        "job",
        5,
        &format!(
            "none after the run scheduled at {}",
            due.strftime("%Y-%m-%d")
        ),
    );
    fails_saying(&d, "job", 1, &format!("(`{schedule}`), grace 1h passed"));
    // A ping after the scheduled time: on time until the next one.
    assert_eq!(
        d.http("POST", "/ping/job", &[("authorization", "Bearer tok-123")])
            .0,
        200
    );
    let ok = wait_state(&d, "job", "ok", Duration::from_secs(2));
    assert_has(ok["last_message"].as_str().unwrap(), "last scheduled at");
}

/// Stop the daemon as a service manager does (SIGTERM), so that what it
/// acknowledged is in the store; a drop would kill it within its
/// writer's batch window.
fn stop_daemon(mut d: Daemon) {
    d.signal(Signal::TERM);
    d.wait(Duration::from_secs(10));
}

/// Check `name` turns failing within `secs` seconds, its last message
/// saying `says`.
#[track_caller]
fn fails_saying(d: &Daemon, name: &str, secs: u64, says: &str) {
    let c = wait_state(d, name, "failing", Duration::from_secs(secs));
    assert!(c["last_message"].as_str().unwrap().contains(says), "{c}");
}

#[test]
fn heartbeat_endpoints_refuse_without_revealing_names() {
    let (e, d) = started(&check("job", "heartbeat = { period = \"1h\" }", ""));
    // Without the token, an existing and an unknown name get the same answer.
    let (known, body_known) = d.http("POST", "/ping/job", &[("authorization", "Bearer wrong")]);
    let (unknown, body_unknown) =
        d.http("POST", "/ping/nobody", &[("authorization", "Bearer wrong")]);
    assert_eq!((known, unknown), (401, 401));
    assert_eq!(body_known, body_unknown);
    assert_eq!(d.http("POST", "/ping/job", &[]).0, 401);
    // The generated token works, and is what `vigie heartbeat-url` prints
    // once the daemon says it kept it (the server may answer before).
    d.wait_log("generated a heartbeat token", Duration::from_secs(5));
    let token = heartbeat_token(&e, "job");
    let auth = format!("Bearer {token}");
    assert_eq!(
        d.http("POST", "/ping/job", &[("authorization", &auth)]).0,
        200
    );
    // A valid token on a name that is not a heartbeat: not found.
    assert_eq!(
        d.http("POST", "/ping/nobody", &[("authorization", &auth)])
            .0,
        404
    );
}

#[test]
fn api_and_metrics() {
    let s = servers::http();
    let e = env();
    let d = start(
        &e,
        &[
            http_check_of(&s, "web", "/ok", "every = \"200ms\""),
            http_check_of(
                &s,
                "broken",
                "/status/500",
                "every = \"200ms\"\nfail_after = 2",
            ),
        ]
        .concat(),
    );
    assert_eq!(d.http("GET", "/healthz", &[]), (200, "ok\n".into()));
    let web = wait_state(&d, "web", "ok", Duration::from_secs(5));
    assert_eq!(web["kind"], "http");
    let broken = wait_state(&d, "broken", "failing", Duration::from_secs(5));
    assert!(broken["consecutive_fail"].as_u64().unwrap() >= 2);
    assert_eq!(broken["last_message"], "status 500, expected below 400");
    assert_metrics(
        &d,
        &[
            "vigie_check_up{check=\"web\",kind=\"http\"} 1",
            "vigie_check_up{check=\"broken\",kind=\"http\"} 0",
            "vigie_check_failing{check=\"broken\",severity=\"average\"} 1",
            "# TYPE vigie_check_duration_seconds gauge",
            "vigie_check_failures_total{check=\"broken\"}",
            "vigie_schedule_lag_seconds_bucket{le=\"+Inf\"}",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            // The host's, under node_exporter's names.
            "# TYPE node_cpu_seconds_total counter",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} ",
            "node_memory_MemAvailable_bytes ",
            "node_filesystem_avail_bytes{device=",
            "node_network_receive_bytes_total{device=\"lo\"} ",
            "node_load1 ",
            "node_uname_info{domainname=",
            "node_scrape_collector_success{collector=\"filesystem\"} 1",
        ],
    );
}

#[test]
fn a_token_guards_the_api_and_metrics() {
    let (_e, d) = token_daemon("0.0.0.0:0");
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], d.addr.port()));
    let get = |path: &str, h: &[(&str, &str)]| servers::http_request(local, "GET", path, h).0;
    assert_eq!(get("/api/v1/checks", &[]), 401);
    assert_eq!(get("/metrics", &[("authorization", "Bearer nope")]), 401);
    assert_eq!(
        get("/api/v1/checks", &[("authorization", "Bearer api-secret")]),
        200
    );
    assert_eq!(
        get("/metrics", &[("authorization", "Bearer api-secret")]),
        200
    );
    assert_eq!(get("/healthz", &[]), 200);
}

/// A temp dir, and a daemon running `checks` in it.
fn started(checks: &str) -> (Env, Daemon) {
    let e = env();
    let d = start(&e, checks);
    (e, d)
}

/// A test HTTP server, and a daemon with one check `name` of its `path`.
fn start_on_http(name: &str, path: &str, extra: &str) -> (servers::Running, Env, Daemon) {
    let s = servers::http();
    let (e, d) = started(&http_check_of(&s, name, path, extra));
    (s, e, d)
}

#[test]
fn sigterm_stops_cleanly_within_two_seconds() {
    // A check stuck in a slow request must not hold the shutdown.
    let (_s, e, mut d) = start_on_http("hang", "/hang", "every = \"100ms\"\ntimeout = \"30s\"");
    std::thread::sleep(Duration::from_millis(300));
    d.signal(Signal::TERM);
    let (code, took) = d.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(!e.state_dir().join("http.addr").exists());
}

#[test]
fn sigkill_then_restart_keeps_failing_state_and_results() {
    let s = servers::http();
    let e = env();
    let cfg = format!(
        "{SERVER}{}",
        http_check_of(
            &s,
            "broken",
            "/status/500",
            "every = \"100ms\"\nfail_after = 2\nrecover_after = 3"
        )
    );
    e.config(&cfg);
    let mut d = e.daemon();
    let before = wait_state(&d, "broken", "failing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    d.signal(Signal::KILL);
    d.wait(Duration::from_secs(5));
    // The store is readable after the kill, and remembers the failure.
    let status = e.run(&["status", "--json"]);
    assert_eq!(
        status.code, 4,
        "a dead daemon makes status exit 4, whatever the states: {status:?}"
    );
    let v: Value = serde_json::from_str(&status.stdout).unwrap();
    let stored = &v["checks"][0];
    assert_eq!(stored["state"], "failing");
    assert!(stored["runs_total"].as_u64().unwrap() >= 2);
    assert_eq!(stored["since"], before["since"]);
    // One type behind both: `status --json` has the API's fields.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(stored), keys(&before), "{stored} vs {before}");
    let store = vigie_store::Store::open(&e.state_dir()).unwrap();
    let recorded = store.recent_results("broken", 1000).unwrap().len() as u64;
    assert!(
        recorded >= stored["runs_total"].as_u64().unwrap(),
        "every counted run failed, and every failure has its result row"
    );
    drop(store);
    // A restart resumes as failing: no new unknown → failing transition.
    let d2 = e.daemon();
    let after = api_check(&d2, "broken");
    assert_eq!(after["state"], "failing");
    assert_eq!(after["since"], before["since"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d2.log().contains("from=unknown"), "{}", d2.log());
}

#[test]
fn sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_broken() {
    let (e, d) = started(&check(
        "one",
        "memory = { max_used_percent = 100 }",
        "every = \"100ms\"",
    ));
    wait_state(&d, "one", "ok", Duration::from_secs(5));
    e.config(&format!(
        "{SERVER}[[check]]\nname = \"two\"\nmemroy = {{}}\n"
    ));
    d.signal(Signal::HUP);
    d.wait_log("keeping the running one", Duration::from_secs(5));
    assert_has(&d.log(), "unknown key `memroy`");
    let (_, body) = d.http("GET", "/api/v1/checks", &[]);
    assert!(
        body.contains("\"one\"") && !body.contains("\"two\""),
        "{body}"
    );
    wait_state(&d, "one", "ok", Duration::from_secs(2));
    // A good config replaces the checks, on the same address.
    e.config(&format!(
        "{SERVER}{}{}",
        check(
            "one",
            "memory = { max_used_percent = 100 }",
            "every = \"100ms\""
        ),
        check("two", "load = { max_load1 = 10000.0 }", "every = \"100ms\"")
    ));
    d.signal(Signal::HUP);
    d.wait_log("configuration reloaded", Duration::from_secs(5));
    wait_state(&d, "two", "ok", Duration::from_secs(5));
}

#[test]
fn a_probe_that_hangs_never_delays_the_others() {
    let s = servers::http();
    let e = env();
    e.config(&format!(
        "{SERVER}[engine]\nconcurrency = 4\n\n{}{}",
        http_check_of(&s, "hang", "/hang", "every = \"100ms\"\ntimeout = \"10s\""),
        check(
            "quick",
            "memory = { max_used_percent = 100 }",
            "every = \"100ms\""
        ),
    ));
    let d = e.daemon();
    std::thread::sleep(Duration::from_millis(1500));
    let quick = api_check(&d, "quick");
    assert!(quick["runs_total"].as_u64().unwrap() >= 10, "{quick}");
}

#[test]
fn status_says_when_the_daemon_is_dead_and_how_old_its_results_are() {
    let (_site, e, mut d) = start_on_http("site", "/ok", "every = \"100ms\"");
    wait_state(&d, "site", "ok", Duration::from_secs(5));
    // The store writer commits within its batch window.
    vigie_testkit::wait_until(Duration::from_secs(5), || e.run(&["status"]).code == 0);
    let r = e.run(&["status", "--json"]);
    let live: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(live["daemon"]["running"], true, "{live}");
    assert_eq!(live["daemon"]["pid"], d.pid().as_raw_nonzero().get());
    d.signal(Signal::TERM);
    d.wait(Duration::from_secs(5));
    let r = e.run(&["status"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert_has(
        &r.stderr,
        "error: the vigie daemon is not running on [DIR]/state: these results are from its last run, the newest",
    );
    assert!(
        r.stdout.contains("site"),
        "the last results are still shown"
    );
    let dead: Value = serde_json::from_str(&e.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(dead["daemon"]["running"], false, "{dead}");
    assert!(dead["daemon"]["newest_result"].as_i64().is_some(), "{dead}");
}

#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused() {
    let (e, d) = started(&check("up", "command = { argv = [\"true\"] }", ""));
    // Before the lock, the second one simply ran: give it 10 s to refuse.
    let mut second = e
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while second.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            panic!("a second daemon started on the same state directory");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&e.path().display().to_string(), "[DIR]");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: another vigie daemon (pid {}) is running on the state directory [DIR]/state",
            d.pid().as_raw_nonzero()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: stop it first"), "{stderr}");
    // The first one is untouched.
    let (status, _) = d.http("GET", "/healthz", &[]);
    assert_eq!(status, 200);
}

#[test]
fn every_check_shows_its_first_result_within_seconds_of_start() {
    // Checks every hour: their first runs come within seconds (spread),
    // not anywhere in the hour.
    let e = env();
    let mut config = SERVER.to_owned();
    for i in 0..20 {
        config.push_str(&check(
            &format!("mem-{i}"),
            "memory = { max_used_percent = 100 }",
            "every = \"1h\"",
        ));
    }
    e.config(&config);
    let d = e.daemon();
    for i in 0..20 {
        wait_state(&d, &format!("mem-{i}"), "ok", Duration::from_secs(10));
    }
}

#[test]
fn retry_every_confirms_a_failure_long_before_the_next_interval() {
    // every 1h, fail_after 3: the first run fails within seconds of
    // start, and retry_every brings the two more failures that confirm
    // it; without it the check would be failing two hours later.
    let (_e, d) = started(&check(
        "down",
        "command = { argv = [\"false\"] }",
        "every = \"1h\"\nretry_every = \"200ms\"\nfail_after = 3",
    ));
    let c = wait_state(&d, "down", "failing", Duration::from_secs(10));
    assert_eq!(c["runs_total"], 3, "{c}");
    assert_eq!(c["consecutive_fail"], 3, "{c}");
    // Confirmed, it is back on its hourly cadence: no fourth run.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api_check(&d, "down")["runs_total"], 3);
}
