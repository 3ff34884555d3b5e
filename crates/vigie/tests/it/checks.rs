//! `vigie check` against real local servers: every probe, up and down,
//! and the bad inputs that must become failing results, never crashes.

use serde_json::Value;
use vigie_testkit::servers::{self, Cert, Dns};
use vigie_testkit::{Env, Need, check};

use crate::util::{assert_has, bin, env, http_check};

/// Run `vigie check --json` on a config of checks; results by name.
fn results(e: &Env, checks: &str) -> std::collections::HashMap<String, Value> {
    e.config(checks);
    let r = e.run(&["check", "--json"]);
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"));
    let map: std::collections::HashMap<_, _> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    let any_failed = map.values().any(|c| c["ok"] == false);
    assert_eq!(
        r.code,
        i32::from(any_failed),
        "exit code follows the results"
    );
    map
}

fn ok(r: &Value) -> bool {
    r["ok"].as_bool().unwrap()
}

fn msg(r: &Value) -> &str {
    r["message"].as_str().unwrap()
}

/// The result `r`'s message contains `needle`.
fn says(r: &Value, needle: &str) {
    assert!(msg(r).contains(needle), "{}", msg(r));
}

fn metric(r: &Value, name: &str) -> Option<f64> {
    r["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?["value"]
        .as_f64()
}

#[test]
fn http_up_down_slow_wrong_status_wrong_body() {
    let s = servers::http();
    let a = s.addr;
    let e = env();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = [
        check("up", &format!("http = {{ url = \"http://{a}/ok\", body_contains = \"good\" }}"), ""),
        check("refused", &format!("http = {{ url = \"http://{closed}/\" }}"), ""),
        check("slow", &format!("http = {{ url = \"http://{a}/slow/3000\" }}"), "timeout = \"500ms\""),
        check("too-slow", &format!("http = {{ url = \"http://{a}/slow/300\", max_response_time = \"100ms\" }}"), ""),
        check("status", &format!("http = {{ url = \"http://{a}/status/503\" }}"), ""),
        check("expected-404", &format!("http = {{ url = \"http://{a}/status/404\", expect_status = [404] }}"), ""),
        check("body", &format!("http = {{ url = \"http://{a}/ok\", body_contains = \"welcome\" }}"), ""),
        check("regex", &format!("http = {{ url = \"http://{a}/ok\", body_regex = \"^all g..d$\" }}"), ""),
        check("redirect", &format!("http = {{ url = \"http://{a}/redirect\", expect_status = [200] }}"), ""),
        check("no-redirect", &format!("http = {{ url = \"http://{a}/redirect\", follow_redirects = false, expect_status = [302] }}"), ""),
        check("hang", &format!("http = {{ url = \"http://{a}/hang\" }}"), "timeout = \"300ms\""),
        check("one-gigabyte", &format!("http = {{ url = \"http://{a}/big\", body_contains = \"y\" }}"), "timeout = \"20s\""),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["up"]), "{}", r["up"]);
    assert_eq!(metric(&r["up"], "status_code"), Some(200.0));
    assert!(metric(&r["up"], "latency_seconds").is_some());
    assert!(!ok(&r["refused"]));
    says(&r["refused"], "Connection refused");
    assert!(!ok(&r["slow"]));
    says(&r["slow"], "timed out");
    assert!(!ok(&r["too-slow"]));
    says(&r["too-slow"], "slower than 100ms");
    assert_eq!(msg(&r["status"]), "status 503, expected below 400");
    assert!(ok(&r["expected-404"]));
    assert_eq!(
        msg(&r["body"]),
        "status 200 but the body does not contain \"welcome\""
    );
    assert!(ok(&r["regex"]), "{}", r["regex"]);
    assert!(ok(&r["redirect"]), "{}", r["redirect"]);
    assert!(ok(&r["no-redirect"]), "{}", r["no-redirect"]);
    says(&r["hang"], "timed out");
    assert!(!ok(&r["one-gigabyte"]));
    says(&r["one-gigabyte"], "larger than max_body (1MiB)");
}

#[test]
fn https_certificates_valid_expiring_expired_self_signed() {
    let e = env();
    let ca = e.path().join("ca.pem");
    let expiring_ca = e.path().join("expiring-ca.pem");
    let expired_ca = e.path().join("expired-ca.pem");
    let self_ca = e.path().join("self-ca.pem");
    let good = servers::https(Cert::ValidFor(90), &ca);
    let expiring = servers::https(Cert::ValidFor(5), &expiring_ca);
    let expired = servers::https(Cert::Expired, &expired_ca);
    let selfsigned = servers::https(Cert::SelfSigned, &self_ca);
    let url = |s: &servers::Running| format!("https://localhost:{}/ok", s.addr.port());
    let cfg = [
        check("good", &format!("http = {{ url = \"{}\", ca = \"ca.pem\", cert_min_days = 14 }}", url(&good)), ""),
        check("untrusted", &format!("http = {{ url = \"{}\" }}", url(&good)), ""),
        check("expiring", &format!("http = {{ url = \"{}\", ca = \"expiring-ca.pem\", cert_min_days = 14 }}", url(&expiring)), ""),
        check("expired", &format!("http = {{ url = \"{}\", ca = \"expired-ca.pem\" }}", url(&expired)), ""),
        check("self-signed", &format!("http = {{ url = \"{}\" }}", url(&selfsigned)), ""),
        check("self-signed-accepted", &format!("http = {{ url = \"{}\", dangerously_accept_invalid_certs = true }}", url(&selfsigned)), ""),
        check("tls-good", &format!("tls = {{ address = \"localhost:{}\", ca = \"ca.pem\", cert_min_days = 30 }}", good.addr.port()), ""),
        check("tls-expiring", &format!("tls = {{ address = \"localhost:{}\", ca = \"expiring-ca.pem\", cert_min_days = 30 }}", expiring.addr.port()), ""),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["good"]), "{}", r["good"]);
    let days = metric(&r["good"], "cert_days_left").unwrap();
    assert!((89.0..=90.1).contains(&days), "{days}");
    assert!(!ok(&r["untrusted"]));
    says(&r["untrusted"], "UnknownIssuer");
    assert!(!ok(&r["expiring"]));
    assert!(
        msg(&r["expiring"]).contains("certificate expires in 4.9 days (fewer than 14)")
            || msg(&r["expiring"]).contains("certificate expires in 5.0 days (fewer than 14)"),
        "{}",
        msg(&r["expiring"])
    );
    assert!(!ok(&r["expired"]));
    says(&r["expired"], "certificate expired");
    assert!(!ok(&r["self-signed"]));
    assert!(
        ok(&r["self-signed-accepted"]),
        "{}",
        r["self-signed-accepted"]
    );
    assert!(ok(&r["tls-good"]), "{}", r["tls-good"]);
    assert!(
        msg(&r["tls-good"]).starts_with("TLSv1.3"),
        "{}",
        msg(&r["tls-good"])
    );
    assert!(!ok(&r["tls-expiring"]));
}

#[test]
fn a_tls_handshake_that_never_ends_is_cut_at_the_timeout() {
    let silent = servers::silent();
    let e = env();
    let cfg = [
        check(
            "tls",
            &format!("tls = {{ address = \"{}\" }}", silent.addr),
            "timeout = \"400ms\"",
        ),
        http_check(
            "https",
            &format!("https://{}/", silent.addr),
            "timeout = \"400ms\"",
        ),
    ]
    .concat();
    let start = std::time::Instant::now();
    let r = results(&e, &cfg);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(msg(&r["tls"]), "timed out after 400ms");
    says(&r["https"], "timed out");
}

#[test]
fn tcp_connect_and_banner() {
    let b = servers::banner("+OK vigie test ready\r\n");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = env();
    let cfg = [
        check(
            "banner",
            &format!("tcp = {{ address = \"{}\", expect = \"+OK\" }}", b.addr),
            "",
        ),
        check(
            "wrong-banner",
            &format!(
                "tcp = {{ address = \"{}\", expect = \"220 smtp\" }}",
                b.addr
            ),
            "",
        ),
        check("closed", &format!("tcp = {{ address = \"{closed}\" }}"), ""),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["banner"]), "{}", r["banner"]);
    assert!(!ok(&r["wrong-banner"]));
    says(
        &r["wrong-banner"],
        "connection closed before \"220 smtp\" came",
    );
    assert!(!ok(&r["closed"]));
}

#[test]
fn dns_answers_mismatch_and_garbage() {
    let good = servers::dns(Dns::A([192, 0, 2, 7]));
    let garbage = servers::dns(Dns::Garbage);
    let truncated = servers::dns(Dns::Truncated);
    let dead = servers::unused_udp_port();
    let e = env();
    let cfg = [
        check("any", &format!("dns = {{ name = \"blog.example.org\", server = \"{}\" }}", good.addr), ""),
        check("exact", &format!("dns = {{ name = \"blog.example.org\", server = \"{}\", expect = [\"192.0.2.7\"] }}", good.addr), ""),
        check("moved", &format!("dns = {{ name = \"blog.example.org\", server = \"{}\", expect = [\"203.0.113.10\"] }}", good.addr), ""),
        check("garbage", &format!("dns = {{ name = \"blog.example.org\", server = \"{}\" }}", garbage.addr), "timeout = \"1s\""),
        check("truncated", &format!("dns = {{ name = \"blog.example.org\", server = \"{}\" }}", truncated.addr), "timeout = \"1s\""),
        check("dead", &format!("dns = {{ name = \"blog.example.org\", server = \"127.0.0.1:{dead}\" }}"), "timeout = \"500ms\""),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["any"]), "{}", r["any"]);
    assert_eq!(msg(&r["any"]), "blog.example.org → 192.0.2.7");
    assert!(ok(&r["exact"]));
    assert_eq!(
        msg(&r["moved"]),
        "blog.example.org → 192.0.2.7, expected 203.0.113.10"
    );
    for bad in ["garbage", "truncated", "dead"] {
        assert!(!ok(&r[bad]), "{bad}: {}", r[bad]);
        assert!(!msg(&r[bad]).is_empty());
    }
}

#[test]
fn ping_loopback() {
    vigie_testkit::require!(Need::Icmp);
    let e = env();
    let cfg = [
        check(
            "lo",
            "ping = { host = \"127.0.0.1\", count = 3, interval = \"20ms\" }",
            "timeout = \"2s\"",
        ),
        // Traffic stays on loopback: a name that cannot resolve fails
        // before any echo is sent.
        check(
            "void",
            "ping = { host = \"no-such-host.invalid\", count = 2 }",
            "timeout = \"2s\"",
        ),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["lo"]), "{}", r["lo"]);
    assert_eq!(metric(&r["lo"], "loss_ratio"), Some(0.0));
    assert!(
        msg(&r["lo"]).starts_with("3/3 replies from 127.0.0.1"),
        "{}",
        msg(&r["lo"])
    );
    assert!(!ok(&r["void"]), "{}", r["void"]);
    says(&r["void"], "resolving no-such-host.invalid");
}

#[test]
fn command_exit_output_and_timeout_kills_the_whole_group() {
    let e = env();
    let pidfile = e.path().join("child.pid");
    let cfg = [
        check("true", "command = { argv = [\"true\"] }", ""),
        check(
            "false",
            "command = { argv = [\"sh\", \"-c\", \"echo broken >&2; exit 3\"] }",
            "",
        ),
        check(
            "allowed-exit",
            "command = { argv = [\"sh\", \"-c\", \"exit 3\"], expect_exit = [0, 3] }",
            "",
        ),
        check(
            "output",
            "command = { shell = \"echo version 1.2.3\", output_regex = \"version [0-9.]+\" }",
            "",
        ),
        check(
            "wrong-output",
            "command = { shell = \"echo hello\", output_contains = \"bye\" }",
            "",
        ),
        check(
            "missing",
            "command = { argv = [\"/nonexistent/program\"] }",
            "",
        ),
        check(
            "hung",
            &format!(
                "command = {{ shell = \"sleep 30 & echo $! > {}; wait\" }}",
                pidfile.display()
            ),
            "timeout = \"500ms\"",
        ),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["true"]));
    assert_eq!(msg(&r["false"]), "exit 3: broken");
    assert!(ok(&r["allowed-exit"]));
    assert!(ok(&r["output"]), "{}", r["output"]);
    assert!(!ok(&r["wrong-output"]));
    says(&r["missing"], "cannot run /nonexistent/program");
    assert_eq!(msg(&r["hung"]), "timed out after 500ms");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        if stat.contains(") Z") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the grandchild sleep {pid} survived the timeout"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn host_checks_and_file_age() {
    let e = env();
    let fresh = e.write("fresh.txt", "new");
    let old = e.write("old.txt", "old");
    let status = std::process::Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir(e.path().join("backups")).unwrap();
    let pidfile = e.write("me.pid", &format!("{}\n", std::process::id()));
    let cfg = [
        check(
            "disk",
            "disk = { path = \"/\", max_used_percent = 100 }",
            "",
        ),
        check(
            "disk-full",
            "disk = { path = \"/\", min_free = \"1000TiB\" }",
            "",
        ),
        check("memory", "memory = { max_used_percent = 100 }", ""),
        check("memory-tight", "memory = { max_used_percent = 0 }", ""),
        check("load", "load = { max_load1 = 10000.0 }", ""),
        check(
            "fresh",
            &format!(
                "file_age = {{ path = \"{}\", max_age = \"1h\" }}",
                fresh.display()
            ),
            "",
        ),
        check(
            "old",
            &format!(
                "file_age = {{ path = \"{}\", max_age = \"1d\" }}",
                old.display()
            ),
            "",
        ),
        check(
            "dir",
            &format!(
                "file_age = {{ path = \"{}\", max_age = \"1h\" }}",
                e.path().display()
            ),
            "",
        ),
        check(
            "empty-dir",
            "file_age = { path = \"backups\", max_age = \"1h\" }",
            "",
        ),
        check(
            "gone",
            "file_age = { path = \"nope.txt\", max_age = \"1h\" }",
            "",
        ),
        check(
            "pidfile",
            &format!("process = {{ pidfile = \"{}\" }}", pidfile.display()),
            "",
        ),
        check(
            "no-process",
            "process = { name = \"no-such-daemon-here\" }",
            "",
        ),
    ]
    .concat();
    let r = results(&e, &cfg);
    assert!(ok(&r["disk"]), "{}", r["disk"]);
    assert!(metric(&r["disk"], "free_bytes").unwrap() > 0.0);
    assert!(!ok(&r["disk-full"]));
    assert!(ok(&r["memory"]));
    assert!(!ok(&r["memory-tight"]));
    assert!(ok(&r["load"]));
    assert!(ok(&r["fresh"]), "{}", r["fresh"]);
    assert!(!ok(&r["old"]));
    says(&r["old"], "is 3d");
    assert!(ok(&r["dir"]), "{}", r["dir"]);
    says(&r["empty-dir"], "holds no file");
    assert!(!ok(&r["gone"]));
    assert!(ok(&r["pidfile"]), "{}", r["pidfile"]);
    assert!(!ok(&r["no-process"]));
}

#[test]
fn the_table_output_and_a_single_check() {
    let s = servers::http();
    let e = env();
    e.config(
        &[
            http_check("web", &format!("http://{}/ok", s.addr), ""),
            http_check("down", &format!("http://{}/status/500", s.addr), ""),
        ]
        .concat(),
    );
    let r = e.run(&["check", "web"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("CHECK  KIND  RESULT  TIME"),
        "{}",
        r.stdout
    );
    assert_has(&r.stdout, "web    http  ok");
    assert!(!r.stdout.contains("down"));
    let r = e.run(&["check"]);
    assert_eq!(r.code, 1);
    assert_has(&r.stdout, "FAIL");
    assert_has(&r.stderr, "1 of 2 checks failed");
}

/// The quickstart, with `vigie check`, in a network namespace of its own
/// (its port 9470 is fixed; other vigies on this machine must not answer).
#[test]
fn the_quickstart_passes_vigie_check_on_a_fresh_machine() {
    use std::process::Stdio;
    use std::time::Duration;
    vigie_testkit::require!(Need::Netns, Need::Python3);
    let lab = vigie_testkit::netns::Lab::new(&["q"]);
    let e = Env::in_netns(bin(), &lab.ns("q"));
    e.config(vigie_config::QUICKSTART);
    let by_name = |r: &vigie_testkit::Run| -> std::collections::HashMap<String, Value> {
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"));
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
            .collect()
    };
    // No daemon: vigie's own server is answered by `vigie check` itself.
    let r = e.run(&["check", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let own = &by_name(&r)["vigie-http"];
    assert!(ok(own), "{own}");
    assert!(
        msg(own).contains("answered by this process: no daemon listens on 127.0.0.1:9470"),
        "{own}"
    );
    // A daemon runs: the check asks it.
    let d = e.daemon();
    let r = e.run(&["check", "--json", "vigie-http"]);
    assert_eq!(r.code, 0, "{r:?}");
    let own = &by_name(&r)["vigie-http"];
    assert!(ok(own) && !msg(own).contains("this process"), "{own}");
    drop(d);
    // Another program holds the port: the check judges it, and it fails.
    let mut other = lab
        .cmd("q", "python3")
        .args(["-m", "http.server", "9470", "--bind", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    vigie_testkit::wait_until(Duration::from_secs(10), || {
        lab.cmd("q", "python3")
            .args([
                "-c",
                "import socket; socket.create_connection(('127.0.0.1', 9470), 1)",
            ])
            .status()
            .is_ok_and(|s| s.success())
    });
    let r = e.run(&["check", "--json", "vigie-http"]);
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    let own = &by_name(&r)["vigie-http"];
    assert!(!ok(own) && !msg(own).contains("this process"), "{own}");
}
