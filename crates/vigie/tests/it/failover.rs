//! `vigie failover` and `vigie drill failover` against a real Knot DNS.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigie_testkit::knot::{Knot, knot};
use vigie_testkit::servers::Captured;
use vigie_testkit::{Env, Need, Run, python_http_service, require, servers, wait_until};

use crate::util::{
    assert_has, bin, exits, free_port, stop, wait_or_explain, wait_state, webhook_hook,
};

/// The failover's primary and backup addresses in [`setup`].
pub(crate) const PRIMARY: &str = "203.0.113.10";
pub(crate) const BACKUP: &str = "198.51.100.7";

pub(crate) fn setup() -> (Env, Knot) {
    let k = knot(
        "example.org",
        "blog A 203.0.113.10\ndrill-blog A 203.0.113.10",
    );
    let e = Env::new(bin());
    e.write("tsig.key", &format!("{}\n", k.secret));
    e.config(&format!(
        r#"[dns.knot]
kind = "rfc2136"
server = "{addr}"
key_name = "{key}"
secret = {{ file = "tsig.key" }}

[failover.blog]
record = {{ zone = "example.org", name = "blog", type = "A", ttl = 60 }}
primary = ["203.0.113.10"]
backup = ["198.51.100.7"]
dns = "knot"
verify_timeout = "5s"
drill_record = "drill-blog"
"#,
        addr = k.addr,
        key = k.key_name
    ));
    (e, k)
}

pub(crate) fn served(k: &Knot, name: &str) -> Vec<IpAddr> {
    crate::util::query(k.addr, name).unwrap()
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `r`, a switch of `blog`, succeeded and said `says` first; Knot serves
/// `to` now.
fn assert_switched(k: &Knot, r: &Run, says: &str, to: &str) {
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with(says), "{}", r.stdout);
    assert_eq!(served(k, "blog"), [ip(to)]);
}

/// `vigie failover status --json`, of `blog` only or of all.
fn status_json(e: &Env, only_blog: bool) -> serde_json::Value {
    let r = if only_blog {
        e.run(&["failover", "status", "blog", "--json"])
    } else {
        e.run(&["failover", "status", "--json"])
    };
    serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"))
}

/// Add to `setup`'s configuration a server, `head` before the failover
/// (a notifier), a failback after a healthy second and the lines
/// `failover_extra` to the failover, and a check `blog-up` of
/// 127.0.0.1:`port` every 200ms whose incidents run `actions`.
pub(crate) fn watch_blog(env: &Env, port: u16, head: &str, failover_extra: &str, actions: &str) {
    let base = std::fs::read_to_string(env.config_path()).unwrap();
    env.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n{head}{base}failback = {{ after_healthy = \"1s\" }}\n{failover_extra}\n[[check]]\nname = \"blog-up\"\ntcp = {{ address = \"127.0.0.1:{port}\" }}\nevery = \"200ms\"\nfail_after = 2\nrecover_after = 2\nactions = [{actions}]\n"
    ));
}

#[test]
fn status_switch_and_back() {
    require!(Need::Knot);
    let (e, k) = setup();
    let r = e.run(&["failover", "status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_has(&r.stdout, "blog.example.org  primary    203.0.113.10");
    let r = e.run(&["failover", "switch", "blog", "--to", "backup"]);
    assert_switched(&k, &r, "blog: blog → backup (updated in", BACKUP);
    let v = status_json(&e, true);
    assert_eq!(v[0]["side"], "backup");
    assert_eq!(v[0]["last_switch"]["reason"], "switched by hand");
    let r = e.run(&["failover", "switch", "blog", "--to", "backup"]);
    assert_has(&r.stdout, "already pointed there");
    let r = e.run(&["failover", "switch", "blog", "--to", "primary"]);
    assert_switched(&k, &r, "blog: blog → primary (updated in", PRIMARY);
}

#[test]
fn a_drill_moves_the_drill_record_and_back() {
    require!(Need::Knot);
    let (e, k) = setup();
    let r = e.run(&["drill", "failover", "blog"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("drill of blog on drill-blog.example.org\nSTAGE"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("to backup") && r.stdout.contains("back to primary"),
        "{}",
        r.stdout
    );
    assert_has(&r.stdout, "switch and back in");
    assert_eq!(served(&k, "drill-blog"), [ip(PRIMARY)]);
    assert_eq!(
        served(&k, "blog"),
        [ip(PRIMARY)],
        "the real record was not touched"
    );
}

#[test]
fn errors_name_the_failover_and_the_server() {
    require!(Need::Knot);
    let (e, k) = setup();
    let r = e.run(&["failover", "switch", "blgo", "--to", "backup"]);
    assert_eq!(r.code, 2);
    assert_has(&r.stderr, "known failovers: blog");
    drop(k);
    let r = e.run(&["failover", "status"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_has(&r.stdout, "error: DNS server");
}

#[test]
fn bad_failover_config_is_refused() {
    let e = Env::new(bin());
    e.config(
        "[failover.blog]\nrecord = { zone = \"example.org\", name = \"blog\" }\nprimary = [\"2001:db8::1\"]\nbackup = []\ndns = \"ovhh\"\n\n[dns.ovh]\nkind = \"ovh\"\napplication_key = \"ak\"\napplication_secret = { env = \"NOPE_AS\" }\nconsumer_key = { env = \"NOPE_CK\" }\n",
    );
    exits(
        &e,
        &["validate"],
        2,
        &[
            "environment variable `NOPE_AS` is not set",
            "unknown DNS provider `ovhh`",
            "`primary` holds an address of the wrong family for an A record",
            "`backup` is empty",
        ],
    );
}

#[test]
fn a_failing_primary_moves_the_record_and_it_comes_back_after_a_healthy_period() {
    require!(Need::Knot, Need::Python3);
    let (env, knot) = setup();
    let port = free_port();
    // A short cooldown, for the record to come back in this test; the test
    // on the default (10m) is
    // a_primary_that_fails_again_is_left_again_and_failback_waits_for_it_to_be_stable.
    watch_blog(&env, port, "", "cooldown = \"1s\"\n", "\"failover:blog\"");
    let mut service = python_http_service(port);
    let daemon = env.daemon();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(served(&knot, "blog"), [ip(PRIMARY)]);
    stop(&mut service);
    wait_until(Duration::from_secs(10), || {
        served(&knot, "blog") == [ip(BACKUP)]
    });
    daemon.wait_log(
        "failover: blog: blog.example.org → backup",
        Duration::from_secs(5),
    );
    let v = status_json(&env, false);
    assert_eq!(v[0]["side"], "backup");
    assert!(
        v[0]["last_switch"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("blog-up failing (incident"),
        "{v}"
    );
    // The primary comes back: after a healthy second, so does the record.
    let mut service = python_http_service(port);
    wait_until(Duration::from_secs(10), || {
        served(&knot, "blog") == [ip(PRIMARY)]
    });
    daemon.wait_log(
        "failback: blog: blog.example.org → primary",
        Duration::from_secs(5),
    );
    stop(&mut service);
}

/// What a webhook notifier delivered: each message's state, title and
/// body, in order.
struct Notifications(Arc<Mutex<Vec<Captured>>>);

impl Notifications {
    fn states(&self) -> Vec<(String, String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|c| {
                let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (field("state"), field("title"), field("body"))
            })
            .collect()
    }

    /// How many messages said `state`.
    fn count(&self, state: &str) -> usize {
        self.states().iter().filter(|s| s.0 == state).count()
    }
}

/// Regression (issue 10 §1): on the default `flapping` and `cooldown`, a
/// primary that fails again and again is left each time, flapping or not;
/// its failback waits for the cooldown, and while it flaps for it to be
/// stable (said once); flapping holds the "failing" notifications; past
/// the daily budget a disaster page names the record left on the primary.
#[test]
fn a_primary_that_fails_again_is_left_again_and_failback_waits_for_it_to_be_stable() {
    require!(Need::Knot, Need::Python3);
    let (env, knot) = setup();
    let (hook, seen) = servers::capture(&[200]);
    let notes = Notifications(seen);
    let port = free_port();
    watch_blog(
        &env,
        port,
        &format!("{}\n", webhook_hook(hook.addr)),
        "max_changes_per_day = 7\n",
        "\"failover:blog\", \"notify:hook\"",
    );
    // The daemon's live view: the store's (`vigie status`) may not have
    // committed a change of a moment ago, and a stale "ok" let an outage
    // start before the check had recovered from the last one.
    let mut service = python_http_service(port);
    let daemon = env.daemon();
    let check_ok = || {
        wait_state(&daemon, "blog-up", "ok", Duration::from_secs(10));
    };
    check_ok();
    let by_hand = || {
        let r = env.run(&["failover", "switch", "blog", "--to", "primary"]);
        assert_eq!(r.code, 0, "{r:?}");
    };
    for outage in 1..=4 {
        assert_eq!(served(&knot, "blog"), [ip(PRIMARY)], "outage {outage}");
        stop(&mut service);
        // fail_after 2 × 200ms, then the change verified: well within 10 s.
        wait_or_explain(
            Duration::from_secs(10),
            || served(&knot, "blog") == [ip(BACKUP)],
            || {
                format!(
                    "outage {outage}: the record stayed on the primary\n{}\n{}",
                    daemon.log(),
                    env.run(&["status", "--json"]).stdout
                )
            },
        );
        service = python_http_service(port);
        match outage {
            1 => {
                // Healthy past after_healthy, but within the cooldown of
                // the switch: the record stays on the backup.
                daemon.wait_log(
                    "failback waits for the cooldown of 10m",
                    Duration::from_secs(10),
                );
                assert_eq!(served(&knot, "blog"), [ip(BACKUP)]);
            }
            3 => {
                // Six changes of state within the hour: it flaps; the
                // failback waits for it to be stable, and says so.
                daemon.wait_log("failback held: blog:", Duration::from_secs(10));
                wait_until(Duration::from_secs(10), || {
                    notes.count("failback held") == 1
                });
            }
            _ => {}
        }
        // Back up as the daemon sees it before the next outage.
        check_ok();
        by_hand();
    }
    // Seven changes in 24h (four automatic, three by hand): the fifth
    // outage leaves the record on the dead primary and pages.
    stop(&mut service);
    wait_or_explain(
        Duration::from_secs(10),
        || notes.count("action failed") == 1,
        || {
            format!(
                "no page past the budget\n{:?}\n{}",
                notes.states(),
                daemon.log()
            )
        },
    );
    assert_eq!(served(&knot, "blog"), [ip(PRIMARY)]);
    assert_paged_and_flapped(&notes);
    drop(daemon);
    stop(&mut service);
}

/// What the regression above was told: the disaster page names the
/// record left on the primary; flapping was said once and held the
/// "failing" notifications after it, and the failback held was said once
/// for the whole spell (outages 3 and 4).
fn assert_paged_and_flapped(notes: &Notifications) {
    let all = notes.states();
    let page = all.iter().find(|s| s.0 == "action failed").unwrap();
    assert!(
        page.1
            .starts_with("[DISASTER] blog-up: failover:blog failed")
            && page.2.contains("blog.example.org left on the primary")
            && page.2.contains("max_changes_per_day = 7"),
        "{page:?}"
    );
    assert_eq!(notes.count("flapping"), 1, "{all:?}");
    assert_eq!(notes.count("failback held"), 1, "{all:?}");
    let flapping_at = all.iter().position(|s| s.0 == "flapping").unwrap();
    assert!(
        !all[flapping_at..].iter().any(|s| s.0 == "failing"),
        "{all:?}"
    );
    assert!(notes.count("failing") >= 2, "{all:?}");
}

#[test]
fn dyndns_follows_the_public_address() {
    require!(Need::Knot);
    let k = knot("example.org", "home A 192.0.2.1");
    let address = std::sync::Arc::new(std::sync::Mutex::new("198.51.100.42".to_owned()));
    let current = address.clone();
    let (ip_server, _seen) = vigie_testkit::servers::scripted(std::sync::Arc::new(
        move |_req: &vigie_testkit::servers::Captured| {
            (200, format!("{}\n", current.lock().unwrap()))
        },
    ));
    let env = Env::new(bin());
    env.write("tsig.key", &format!("{}\n", k.secret));
    env.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[dns.knot]\nkind = \"rfc2136\"\nserver = \"{}\"\nkey_name = \"{}\"\nsecret = {{ file = \"tsig.key\" }}\n\n[dyndns.home]\nrecord = {{ zone = \"example.org\", name = \"home\" }}\ndns = \"knot\"\nip_url = \"http://{}/ip\"\nevery = \"1s\"\n",
        k.addr, k.key_name, ip_server.addr
    ));
    let daemon = env.daemon();
    wait_until(Duration::from_secs(10), || {
        served(&k, "home") == [ip("198.51.100.42")]
    });
    *address.lock().unwrap() = "198.51.100.43".to_owned();
    wait_until(Duration::from_secs(10), || {
        served(&k, "home") == [ip("198.51.100.43")]
    });
    daemon.wait_log(
        "public address changed; record updated",
        Duration::from_secs(2),
    );
    // A garbled answer changes nothing and is logged.
    *address.lock().unwrap() = "<html>rate limited</html>".to_owned();
    daemon.wait_log("not an address", Duration::from_secs(5));
    assert_eq!(served(&k, "home"), [ip("198.51.100.43")]);
}

#[test]
fn a_public_ip_backup_is_this_nodes_address_now() {
    require!(Need::Knot);
    let k = knot("example.org", "blog A 203.0.113.10");
    let (ip_server, _seen) = vigie_testkit::servers::scripted(std::sync::Arc::new(
        |_req: &vigie_testkit::servers::Captured| (200, "198.51.100.77\n".to_owned()),
    ));
    let env = Env::new(bin());
    env.write("tsig.key", &format!("{}\n", k.secret));
    env.config(&format!(
        "[dns.knot]\nkind = \"rfc2136\"\nserver = \"{}\"\nkey_name = \"{}\"\nsecret = {{ file = \"tsig.key\" }}\n\n[failover.blog]\nrecord = {{ zone = \"example.org\", name = \"blog\" }}\nprimary = [\"203.0.113.10\"]\nbackup = \"public-ip\"\nip_url = \"http://{}/ip\"\ndns = \"knot\"\nverify_timeout = \"5s\"\nreplication = \"webroot\"\n\n[[sync]]\nname = \"webroot\"\nfrom = \"src\"\nto = \"/nonexistent-replica\"\n",
        k.addr, k.key_name, ip_server.addr
    ));
    std::fs::create_dir(env.path().join("src")).unwrap();
    let r = env.run(&["failover", "switch", "blog", "--to", "backup"]);
    assert_switched(&k, &r, "blog: blog → backup", "198.51.100.77");
    let v = status_json(&env, true);
    assert_eq!(v[0]["side"], "backup", "{v}");
    // The replication toward the now active backup is fenced.
    let r = env.run(&["sync", "status"]);
    assert_has(
        &r.stdout,
        "paused (fenced: failover blog points at the backup)",
    );
    // Failing back warns about the writes made on the backup.
    let r = env.run(&["failover", "failback", "blog"]);
    assert_switched(
        &k,
        &r,
        "warning: replication `webroot` copies primary → backup: writes made on the backup while it was active must flow back to the primary first (`vigie sync webroot --reverse`), then `vigie sync resume webroot`\nblog: blog → primary",
        PRIMARY,
    );
}
