//! `vigie self check`: what the host allows, and what the configuration
//! needs that it lacks.

use serde_json::Value;

use crate::util::env;

fn findings(r: &vigie_testkit::Run) -> Vec<Value> {
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    v.as_array().unwrap().clone()
}

fn level<'a>(items: &'a [Value], what: &str) -> &'a Value {
    items
        .iter()
        .find(|f| f["what"] == what)
        .unwrap_or_else(|| panic!("no finding {what}: {items:?}"))
}

/// Finding `what`'s level and detail.
fn said<'a>(items: &'a [Value], what: &str) -> (&'a str, &'a str) {
    let f = level(items, what);
    (f["level"].as_str().unwrap(), f["detail"].as_str().unwrap())
}

#[test]
fn self_check_says_what_the_host_allows() {
    let e = env();
    e.config("");
    let r = e.run(&["self", "check", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let items = findings(&r);
    let whats: Vec<&str> = items.iter().map(|f| f["what"].as_str().unwrap()).collect();
    assert_eq!(
        whats,
        [
            "state directory",
            "ping (ICMP)",
            "inotify",
            "ssh",
            "systemd"
        ]
    );
    assert_eq!(level(&items, "state directory")["level"], "ok", "{items:?}");
    assert!(
        said(&items, "inotify").1.contains("max_user_watches"),
        "{items:?}"
    );
    // The table says the same for people.
    let r = e.run(&["self", "check"]);
    assert!(r.stdout.starts_with("WHAT"), "{r:?}");
}

#[test]
fn self_check_fails_what_the_configuration_needs_and_says_how_to_fix_it() {
    let e = env();
    std::fs::create_dir_all(e.path().join("src/a/b")).unwrap();
    e.config("[[sync]]\nname = \"web\"\nfrom = \"src\"\nto = \"backup-host:/srv/web\"\n");
    // No ssh on this PATH; the state directory is a file.
    let empty = tempfile::tempdir().unwrap();
    let state = e.write("not-a-dir", "");
    let r = e.run_cmd(
        e.cmd(&["self", "check", "--json"])
            .env("PATH", empty.path())
            .env("VIGIE_STATE_DIR", &state),
    );
    assert_eq!(r.code, 1, "{r:?}");
    let items = findings(&r);
    let (ssh, why) = said(&items, "ssh");
    assert_eq!(ssh, "fail", "{items:?}");
    assert!(why.contains("sync web needs it"), "{why}");
    assert_eq!(level(&items, "ssh")["hint"], "apt install openssh-client");
    let (dir, why) = said(&items, "state directory");
    assert_eq!(dir, "fail", "{items:?}");
    assert!(why.ends_with("is not a directory"), "{why}");
    let (_, watched) = said(&items, "inotify");
    assert!(
        watched.ends_with("the sync jobs watch 3 directories"),
        "{watched}"
    );
    // Nothing configured needs systemctl: a warning at most.
    assert_ne!(level(&items, "systemd")["level"], "fail", "{items:?}");
}
