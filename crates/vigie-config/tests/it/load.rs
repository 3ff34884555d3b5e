//! Loading configs: good ones resolve, bad ones report every problem with
//! its place and a hint.

use std::path::Path;

use vigie_config::{Config, Loaded, Probe, ProbeKind, load_str};

fn env(name: &str) -> Option<String> {
    (name == "VIGIE_TEST_TOKEN").then(|| "s3cret".to_owned())
}

fn errors(src: &str) -> String {
    let diags = load_str(src, Path::new("vigie.toml"), &env).expect_err("config should be refused");
    diags.to_string()
}

fn loads(src: &str) -> Loaded {
    load_str(src, Path::new("vigie.toml"), &env).expect("config should load")
}

/// What `show-config` prints reads back to the same text.
fn show_config_round_trips(config: &Config) -> String {
    let shown = vigie_config::to_toml(config).unwrap();
    let again = load_str(&shown, Path::new("shown.toml"), &env).unwrap();
    assert_eq!(vigie_config::to_toml(&again.config).unwrap(), shown);
    shown
}

/// A notifier for steps to name.
const PHONE: &str = "[notify.phone]\nkind = \"ntfy\"\nurl = \"https://ntfy.example.org/alerts\"\n";

/// One more watcher, `w2`, reached over HTTPS with a pinned certificate.
fn peer_w2() -> String {
    format!(
        "[[peer]]\nname = \"w2\"\nurl = \"https://198.51.100.2:9470\"\ntoken = {{ env = \"VIGIE_TEST_TOKEN\" }}\npin = \"{}\"\n",
        "ab".repeat(32)
    )
}

/// The check `web` whose incidents fail `blog` over.
const WEB_FAILS_OVER: &str = "[[check]]\nname = \"web\"\ntcp = { address = \"192.0.2.1:80\" }\nactions = [\"failover:blog\"]\n";

#[test]
fn quickstart_resolves() {
    let loaded = load_str(vigie_config::QUICKSTART, Path::new("q.toml"), &env).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.checks.len(), 5);
    assert!(matches!(
        loaded.config.check("nightly-job").unwrap().probe,
        Probe::Heartbeat(_)
    ));
}

#[test]
fn every_error_at_once_with_places_and_hints() {
    let src = r#"
[servr]
listen = "1.2.3.4:80"

[[check]]
name = "blog"
http = { url = "https://blog.example.org/" }
evry = "5s"
timeout = "2"
severity = "hihg"

[[check]]
name = "blog"
tcp = { address = "db:5432" }
depends_on = ["blgo", "api"]

[[check]]
name = "api"
tcp = { address = "api:443" }
depends_on = ["db"]

[[check]]
name = "db"
tcp = { address = "nope" }
depends_on = ["api"]
"#;
    insta::assert_snapshot!(errors(src));
}

#[test]
fn secrets_are_never_inline() {
    let src = r#"
[server]
listen = "0.0.0.0:9470"
token = "hunter2"
"#;
    insta::assert_snapshot!(errors(src));
}

#[test]
fn non_loopback_listen_needs_a_token() {
    let src = "[server]\nlisten = \"0.0.0.0:9470\"\n";
    insta::assert_snapshot!(errors(src));
    let ok = "[server]\nlisten = \"0.0.0.0:9470\"\ntoken = { env = \"VIGIE_TEST_TOKEN\" }\n";
    let loaded = loads(ok);
    assert_eq!(loaded.config.server.token.unwrap().expose(), "s3cret");
}

#[test]
fn missing_env_secret_is_named() {
    let src = "[[check]]\nname = \"job\"\nheartbeat = { period = \"1h\", token = { env = \"NOPE_NOT_SET\" } }\n";
    insta::assert_snapshot!(errors(src));
}

#[test]
fn syntax_errors_have_a_place() {
    insta::assert_snapshot!(errors("[[check]\nname = 1\n"));
}

#[test]
fn a_check_has_exactly_one_probe() {
    let src = "[[check]]\nname = \"a\"\n\n[[check]]\nname = \"b\"\ntcp = { address = \"x:1\" }\nping = { host = \"x\" }\n";
    // The hint lists the table of check kinds (the `kinds` tests check it
    // to the letter), so that a new kind changes no snapshot.
    let every_kind = ProbeKind::NAMES.join(", ");
    let e = errors(src).replace(&every_kind, "<every check kind>");
    insta::assert_snapshot!(e);
}

#[test]
fn bad_values_inside_probes() {
    let src = r#"
[[check]]
name = "u"
http = { url = "ftp://example.org/" }

[[check]]
name = "r"
http = { url = "http://x/", body_regex = "(" }

[[check]]
name = "c"
command = { argv = ["true"], shell = "true" }

[[check]]
name = "d"
disk = { max_used_percent = 140 }
"#;
    insta::assert_snapshot!(errors(src));
}

#[test]
fn includes_merge_checks_and_keep_their_places() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("vigie.toml");
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        &main,
        "include = \"conf.d\"\n[[check]]\nname = \"a\"\nmemory = {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/10-web.toml"),
        "[[check]]\nname = \"b\"\nload = {}\ndepends_on = [\"a\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/20-bad.toml"),
        "[server]\nlisten = \"127.0.0.1:1\"\n[[check]]\nname = \"a\"\nmemory = {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("conf.d/README"), "not toml").unwrap();
    let text = std::fs::read_to_string(&main).unwrap();
    let diags = load_str(&text, &main, &env).unwrap_err();
    let out = diags
        .to_string()
        .replace(&dir.path().display().to_string(), "[DIR]");
    insta::assert_snapshot!(out);
    std::fs::remove_file(dir.path().join("conf.d/20-bad.toml")).unwrap();
    let loaded = load_str(&text, &main, &env).unwrap();
    let names: Vec<_> = loaded
        .config
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn defaults_apply_and_show_config_round_trips() {
    let src = r#"
[defaults]
every = "1m"
fail_after = 3

[[check]]
name = "a"
tcp = { address = "localhost:22" }

[[check]]
name = "b"
tcp = { address = "localhost:22" }
every = "5s"
"#;
    let loaded = loads(src);
    let c = &loaded.config;
    assert_eq!(c.checks[0].every.to_string(), "1m");
    assert_eq!(c.checks[0].timeout.to_string(), "10s");
    assert_eq!(c.checks[0].fail_after, 3);
    assert_eq!(c.checks[1].timeout.to_string(), "5s");
    show_config_round_trips(c);
}

#[test]
fn actions_and_their_references() {
    let src = format!(
        "\n{PHONE}{}",
        r#"
[action.restart-web]
shell = "systemctl restart nginx"
max = { restarts = 3, within = "15m" }

[action.page-boss]
notify = ["phone", "boss"]
after = "15m"

[action.confused]
shell = "true"
notify = ["phone"]

[[check]]
name = "web"
tcp = { address = "localhost:80" }
actions = ["restart-web", "notify:phone", "notify:phnoe", "restrat-web"]
"#
    );
    insta::assert_snapshot!(errors(&src));
    let good = format!(
        "\n{PHONE}{}",
        r#"
[action.restart-web]
systemd_restart = "nginx.service"
max = { restarts = 3, within = "15m" }

[[check]]
name = "web"
tcp = { address = "localhost:80" }
actions = ["restart-web", "notify:phone"]
"#
    );
    let c = loads(&good).config;
    let repair = c.action("restart-web").unwrap();
    assert_eq!(
        repair.repair().unwrap().command.argv(),
        ["systemctl", "restart", "--", "nginx.service"]
    );
    assert_eq!(
        c.action("notify:phone").unwrap().notify().unwrap().to,
        ["phone"]
    );
    assert!(c.action("notify:nobody").is_none());
    let shown = vigie_config::to_toml(&c).unwrap();
    let again = load_str(&shown, Path::new("shown.toml"), &env).unwrap();
    assert_eq!(
        again.config.checks[0].actions,
        ["restart-web", "notify:phone"]
    );
}

#[test]
fn maintenance_windows_once_and_recurring() {
    let src = r#"
[[check]]
name = "web"
tcp = { address = "localhost:80" }
tags = ["prod"]

[[maintenance]]
name = "migration"
checks = ["web"]
from = "2026-12-01T22:00:00Z"
until = "2026-12-02T02:00:00Z"

[[maintenance]]
name = "sunday"
tags = ["prod"]
cron = "0 3 * * 0"
duration = "2h"
timezone = "Europe/Paris"
"#;
    let c = loads(src).config;
    let at =
        |s: &str| vigie_core::Timestamp(s.parse::<jiff::Timestamp>().unwrap().as_millisecond());
    let (once, weekly) = (&c.maintenance[0], &c.maintenance[1]);
    assert!(once.applies_to(&c.checks[0]) && weekly.applies_to(&c.checks[0]));
    assert!(once.active_at(at("2026-12-01T23:30:00Z")));
    assert!(!once.active_at(at("2026-12-02T02:00:00Z")));
    // Sunday 2026-11-29, 03:00 to 05:00 in Paris is 02:00 to 04:00 UTC.
    assert!(!weekly.active_at(at("2026-11-29T01:59:00Z")));
    assert!(weekly.active_at(at("2026-11-29T02:00:00Z")));
    assert!(weekly.active_at(at("2026-11-29T03:59:59Z")));
    assert!(!weekly.active_at(at("2026-11-29T04:00:00Z")));
    assert!(!weekly.active_at(at("2026-11-30T02:30:00Z")), "a Monday");
}

#[test]
fn bad_maintenance_windows() {
    let src = r#"
[[check]]
name = "web"
tcp = { address = "localhost:80" }

[[maintenance]]
name = "backwards"
checks = ["web"]
from = "2026-12-02T00:00:00Z"
until = "2026-12-01T00:00:00Z"

[[maintenance]]
name = "both"
checks = ["wbe"]
from = "2026-12-02T00:00:00Z"
cron = "0 3 * * 0"
timezone = "Mars/Olympus"

[[maintenance]]
name = "bad-cron"
tags = ["x"]
cron = "0 25 * * *"
duration = "1h"
"#;
    insta::assert_snapshot!(errors(src));
}

#[test]
fn a_single_bracket_section_is_explained() {
    let e = errors("[check]\nname = \"x\"\nmemory = {}\n");
    assert!(e.contains("`check` must be an array of tables"), "{e}");
    assert!(
        e.contains("write each one under its own [[check]] header"),
        "{e}"
    );
}

const DNS: &str = "[dns.d]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nkey_name = \"k\"\nsecret = { env = \"VIGIE_TEST_TOKEN\" }\n";

#[test]
fn peers_and_quorum_are_checked() {
    let src = format!(
        r#"[node]
name = "w1"

[[peer]]
name = "w1"
url = "http://198.51.100.2:9470"
token = {{ env = "VIGIE_TEST_TOKEN" }}
pin = "abc"
ca = "ca.pem"

{w2}
[failover.blog]
record = {{ zone = "example.org", name = "blog" }}
primary = ["192.0.2.1"]
backup = "public-ip"
ip_url = "https://ifconfig.me/ip"
dns = "d"
checks = ["webb"]
reference = ["web"]
quorum = 4

[failover.home]
record = {{ zone = "example.org", name = "home" }}
primary = ["192.0.2.1"]
backup = "public-ip"
dns = "d"

[failover.www]
record = {{ zone = "example.org", name = "www" }}
primary = ["192.0.2.1"]
backup = ["192.0.2.2"]
ip_url = "https://ifconfig.me/ip"
dns = "d"

[failover.api]
record = {{ zone = "example.org", name = "api" }}
primary = ["192.0.2.1"]
backup = "nope"
dns = "d"

{WEB_FAILS_OVER}{DNS}"#,
        w2 = peer_w2()
    );
    let e = errors(&src);
    for needle in [
        "`w1` is this node's own name",
        "a peer beyond loopback is reached over https",
        "`pin` is the certificate's SHA-256 in hex",
        "set `ca` or `pin`, not both",
        "this node's public address is read from `ip_url` or `interface`; neither is set",
        "`checks` names unknown check `webb`\n  --> vigie.toml:17:1",
        "did you mean `web`?",
        "`web` is both a trigger and a reference of this failover",
        "quorum = 4 but there are 2 watcher(s)",
        "`ip_url`/`interface` only serve backup = \"public-ip\"",
        "backup is a list of addresses or \"public-ip\", not `nope`",
    ] {
        assert_eq!(e.matches(needle).count(), 1, "{needle:?} once in:\n{e}");
    }
    assert!(!e.contains("unknown action"), "{e}");
    assert!(!e.contains("addresses ([\""), "{e}");
}

#[test]
fn a_failover_links_its_checks_both_ways() {
    let src = format!(
        r#"[[peer]]
name = "w2"
url = "https://198.51.100.2:9470"
token = {{ env = "VIGIE_TEST_TOKEN" }}
pin = "{pin}"

[failover.blog]
record = {{ zone = "example.org", name = "blog" }}
primary = ["192.0.2.1"]
backup = "public-ip"
interface = "eth0"
dns = "d"
checks = ["web"]
reference = ["link"]
quorum = 2

[[check]]
name = "web"
tcp = {{ address = "192.0.2.1:80" }}

[[check]]
name = "tls"
tls = {{ address = "192.0.2.1:443" }}
actions = ["failover:blog"]

[[check]]
name = "link"
tcp = {{ address = "192.0.2.53:53" }}
{DNS}"#,
        pin = "AB:".repeat(31) + "AB"
    );
    let loaded = loads(&src);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    let f = &c.failovers["blog"];
    assert_eq!(f.checks, ["web", "tls"]);
    assert_eq!(f.backup, vigie_config::Backup::PublicIp);
    assert_eq!(
        f.address_from(),
        Some(vigie_config::AddressFrom::Interface("eth0".into()))
    );
    assert_eq!(c.check("web").unwrap().actions, ["failover:blog"]);
    assert_eq!(c.peers[0].pin.as_deref(), Some("ab".repeat(32).as_str()));
}

#[test]
fn a_named_notify_step_sends_every_severity_like_the_shorthand() {
    let src = format!(
        "\n{PHONE}{}",
        r#"
[action.page]
notify = ["phone"]

[[check]]
name = "disk"
disk = { path = "/", max_used_percent = 90 }
severity = "warning"
actions = ["page"]
"#
    );
    let loaded = loads(&src);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(
        c.action("page").unwrap().notify().unwrap().min_severity,
        c.action("notify:phone")
            .unwrap()
            .notify()
            .unwrap()
            .min_severity,
        "one default for both forms"
    );
    assert_eq!(
        c.action("page").unwrap().notify().unwrap().min_severity,
        vigie_core::Severity::NotClassified
    );
}

#[test]
fn a_severity_no_notify_step_accepts_is_a_warning() {
    let src = format!(
        "\n{PHONE}{}",
        r#"
[action.page]
notify = ["phone"]
min_severity = "high"

[action.page-boss]
notify = ["phone"]
min_severity = "disaster"
after = "1h"

[action.escalate]
notify = ["phone"]
min_severity = "high"
after = "1h"
severity = "high"

[[check]]
name = "disk"
disk = { path = "/", max_used_percent = 90 }
severity = "warning"
actions = ["page", "page-boss"]

[[check]]
name = "load"
load = { max_load5 = 2.0 }
severity = "warning"
actions = ["page", "escalate"]
"#
    );
    let loaded = loads(&src);
    let text: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "only disk: load escalates at high {text:?}");
    assert!(
        text[0].contains("check \"disk\".actions")
            && text[0].contains("vigie.toml:25:12")
            && text[0].contains(
                "severity \"warning\" never reaches a notifier: its notify steps need at least \"high\""
            )
            && text[0].contains("lower min_severity of [action.page], [action.page-boss]"),
        "{}",
        text[0]
    );
}

#[test]
fn retry_every_is_between_100ms_and_every() {
    let src = r#"
[defaults]
retry_every = "2s"

[[check]]
name = "a"
tcp = { address = "localhost:22" }
every = "30s"

[[check]]
name = "b"
tcp = { address = "localhost:22" }
every = "30s"
retry_every = "1s"

[[check]]
name = "c"
tcp = { address = "localhost:22" }
"#;
    let loaded = loads(src);
    let c = &loaded.config;
    assert_eq!(c.checks[0].retry_every.unwrap().to_string(), "2s");
    assert_eq!(c.checks[1].retry_every.unwrap().to_string(), "1s");
    // show-config prints it, and reads back the same.
    let shown = show_config_round_trips(c);
    assert!(shown.contains("retry_every = \"1s\""), "{shown}");
    // Without it, a check keeps its cadence.
    let plain = "[[check]]\nname = \"a\"\ntcp = { address = \"localhost:22\" }\n";
    let loaded = loads(plain);
    assert_eq!(loaded.config.checks[0].retry_every, None);

    let bad = r#"
[[check]]
name = "slow"
tcp = { address = "localhost:22" }
every = "10s"
retry_every = "1m"

[[check]]
name = "tiny"
tcp = { address = "localhost:22" }
retry_every = "10ms"
"#;
    let e = errors(bad);
    assert!(
        e.contains(
            "error: check \"slow\".retry_every: retry_every (1m) is longer than every (10s)"
        ),
        "{e}"
    );
    assert!(e.contains("vigie.toml:6:15"), "{e}");
    assert!(
        e.contains("hint: retry_every re-runs a failed check sooner"),
        "{e}"
    );
    assert!(
        e.contains("error: check \"tiny\".retry_every: `retry_every` must be at least 100ms"),
        "{e}"
    );
    assert!(e.contains("2 errors"), "{e}");

    // From [defaults], the error points at the check it does not fit.
    let from_defaults = r#"
[defaults]
retry_every = "10s"

[[check]]
name = "fast"
tcp = { address = "localhost:22" }
every = "5s"
"#;
    let e = errors(from_defaults);
    assert!(
        e.contains(
            "error: check \"fast\".retry_every: retry_every (from [defaults]) (10s) is longer than every (5s)"
        ),
        "{e}"
    );
    assert!(e.contains("vigie.toml:5:1"), "{e}");
}

#[test]
fn quorum_one_with_peers_is_a_warning() {
    let src = format!(
        r#"{w2}
[failover.blog]
record = {{ zone = "example.org", name = "blog" }}
primary = ["192.0.2.1"]
backup = ["192.0.2.2"]
dns = "d"

{WEB_FAILS_OVER}{DNS}"#,
        w2 = peer_w2()
    );
    let loaded = loads(&src);
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("quorum = 1 with 1 [[peer]]: this watcher alone moves the record")
            && w[0].contains("set quorum = 2"),
        "{w:?}"
    );
}

/// A bad `exclude` pattern of a replication is an error at its own
/// place, naming it and saying why; the good ones beside it are not.
#[test]
fn a_bad_exclude_pattern_is_refused_at_its_place() {
    let src = "[[sync]]\nname = \"web\"\nfrom = \".\"\nto = \"backup:/srv/www\"\nexclude = [\"*.tmp\", \"cache/[abc\", \"{a,b}\"]\n";
    assert_eq!(
        errors(src),
        "error: sync: invalid exclude pattern `cache/[abc`: unclosed character class `[` (write `[[]` or `\\[` for a literal `[`)\n  --> vigie.toml:5:21\n1 error in the configuration"
    );
}

#[test]
fn new_notifiers_load_with_their_defaults_and_hide_their_secrets() {
    let src = r#"
[notify.push]
kind = "pushover"
token = { env = "VIGIE_TEST_TOKEN" }
user = { file = "/run/secrets/pushover-user" }

[notify.oncall]
kind = "pagerduty"
routing_key = { env = "VIGIE_TEST_TOKEN" }

[notify.chan]
kind = "teams"
url = { env = "VIGIE_TEST_TOKEN" }
"#;
    let loaded = vigie_config::load_str_with(
        src,
        Path::new("vigie.toml"),
        &env,
        vigie_config::Secrets::Skip,
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let n = &loaded.config.notifiers;
    let vigie_config::NotifierKind::Pushover {
        endpoint,
        emergency,
        ..
    } = &n["push"].kind
    else {
        panic!("{:?}", n["push"]);
    };
    assert_eq!(
        (endpoint.0.as_str(), emergency),
        ("https://api.pushover.net/", &None)
    );
    let vigie_config::NotifierKind::Pagerduty { endpoint, .. } = &n["oncall"].kind else {
        panic!("{:?}", n["oncall"]);
    };
    assert_eq!(endpoint.0.as_str(), "https://events.pagerduty.com/");
    let shown = vigie_config::to_toml(&loaded.config).unwrap();
    assert!(
        shown.contains("[notify.oncall.routing_key]\nenv = \"VIGIE_TEST_TOKEN\"\n")
            && shown.contains("[notify.push.user]\nfile = \"/run/secrets/pushover-user\"\n"),
        "{shown}"
    );
    let loaded = loads("[notify.chan]\nkind = \"teams\"\nurl = { env = \"VIGIE_TEST_TOKEN\" }\n");
    let shown = show_config_round_trips(&loaded.config);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!format!("{:?}", loaded.config).contains("s3cret"));
}

#[test]
fn a_secret_of_a_new_notifier_cannot_be_inline() {
    let e = errors("[notify.oncall]\nkind = \"pagerduty\"\nrouting_key = \"R0UT1NG\"\n");
    assert!(
        e.contains("error: notify.oncall: a secret cannot be inline")
            && e.contains("vigie.toml:1:1"),
        "{e}"
    );
}

#[test]
fn a_pushover_emergency_outside_pushover_s_limits_is_refused_at_its_place() {
    let notifier = |emergency: &str| {
        format!(
            "[notify.push]\nkind = \"pushover\"\ntoken = {{ env = \"VIGIE_TEST_TOKEN\" }}\nuser = {{ env = \"VIGIE_TEST_TOKEN\" }}\nemergency = {emergency}\n"
        )
    };
    let e = errors(&notifier("{ retry = \"10s\", expire = \"1h\" }"));
    assert!(
        e.contains("error: notify.push.emergency: retry = \"10s\" is below Pushover's minimum of 30s\n  --> vigie.toml:1:1"),
        "{e}"
    );
    assert!(e.contains("hint: retry = \"1m\""), "{e}");
    let e = errors(&notifier("{ retry = \"1m\", expire = \"4h\" }"));
    assert!(e.contains("above Pushover's maximum of 3h"), "{e}");
    let e = errors(&notifier("{ retry = \"1m\" }"));
    assert!(e.contains("expire"), "{e}");
    let loaded = loads(&notifier("{ retry = \"1m\", expire = \"3h\" }"));
    show_config_round_trips(&loaded.config);
}

/// A directory holding an executable `apprise`, for `PATH`.
fn apprise_dir() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vigie-config-apprise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("apprise");
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn apprise_wants_urls_and_warns_when_the_program_is_not_on_path() {
    let src = "[notify.more]\nkind = \"apprise\"\nurls = [{ env = \"APPRISE_URL\" }]\n";
    let dir = apprise_dir();
    let with_path = |path: Option<String>| {
        move |name: &str| match name {
            "APPRISE_URL" => Some("tgram://123:s3cret/456".to_owned()),
            "PATH" => path.clone(),
            _ => None,
        }
    };
    let found = with_path(Some(format!("/nonexistent:{}", dir.display())));
    let loaded = load_str(src, Path::new("vigie.toml"), &found).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let missing = with_path(Some("/nonexistent".to_owned()));
    let loaded = load_str(src, Path::new("vigie.toml"), &missing).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("warning: notify.more.program: `apprise` is not an executable on PATH")
            && w[0].contains("--> vigie.toml:1:1")
            && w[0].contains("hint: install Apprise"),
        "{w:?}"
    );
    // A value that is no URL is refused, without being shown.
    let e = errors(
        "[notify.more]\nkind = \"apprise\"\nurls = [{ env = \"VIGIE_TEST_TOKEN\" }]\nprogram = \"/bin/sh\"\n",
    );
    assert!(
        e.contains("error: notify.more.urls[0]: not one Apprise URL") && !e.contains("s3cret"),
        "{e}"
    );
    let e = errors("[notify.more]\nkind = \"apprise\"\nurls = []\nprogram = \"/bin/sh\"\n");
    assert!(e.contains("error: notify.more.urls: no Apprise URL"), "{e}");
}

#[test]
fn heartbeat_settings_are_checked_at_their_place() {
    let src = "[[check]]\nname = \"job\"\nheartbeat = { period = \"1h\", max_duration = \"0s\" }\n";
    assert_eq!(
        errors(src),
        "error: check \"job\".heartbeat.max_duration: `max_duration` must be more than 0s\n  --> vigie.toml:3:13\n1 error in the configuration"
    );
    let ok = "[[check]]\nname = \"job\"\nheartbeat = { period = \"1h\", max_duration = \"2h\" }\n";
    let Probe::Heartbeat(h) = &loads(ok).config.checks[0].probe else {
        panic!("not a heartbeat");
    };
    assert_eq!(h.max_duration.map(|d| d.std().as_secs()), Some(7200));
}

#[test]
fn a_heartbeat_has_a_period_or_a_schedule() {
    let src = r#"[[check]]
name = "both"
heartbeat = { period = "1d", schedule = "0 2 * * *" }

[[check]]
name = "neither"
heartbeat = { grace = "1h" }

[[check]]
name = "zone"
heartbeat = { schedule = "0 2 * * *", timezone = "Mars/Olympus" }

[[check]]
name = "stray"
heartbeat = { period = "1d", timezone = "Europe/Paris" }

[[check]]
name = "cron"
heartbeat = { schedule = "0 25 * * *" }
"#;
    let said = errors(src);
    for needle in [
        "error: check \"both\".heartbeat.schedule: set `period` or `schedule`, not both\n  --> vigie.toml:3:13",
        "error: check \"neither\".heartbeat.period: a heartbeat needs `period` or `schedule`\n  --> vigie.toml:7:13",
        "error: check \"zone\".heartbeat.timezone: unknown time zone `Mars/Olympus`\n  --> vigie.toml:11:13",
        "error: check \"stray\".heartbeat.timezone: `timezone` applies to `schedule`, which is not set\n  --> vigie.toml:15:13",
        "`0 25 * * *` is not a cron expression",
        "5 errors in the configuration",
    ] {
        assert!(said.contains(needle), "no {needle:?} in\n{said}");
    }
    let ok = "[[check]]\nname = \"job\"\nheartbeat = { schedule = \"0 2 * * *\", timezone = \"Europe/Paris\", grace = \"1h\" }\n";
    let Probe::Heartbeat(h) = &loads(ok).config.checks[0].probe else {
        panic!("not a heartbeat");
    };
    assert_eq!(
        h.schedule.as_ref().map(ToString::to_string).as_deref(),
        Some("0 2 * * *")
    );
    assert_eq!(h.period, None);
}

#[test]
fn status_pages_name_their_checks_and_unique_services() {
    let checks = "[[check]]\nname = \"web\"\ncommand = { argv = [\"true\"] }\n\n[[check]]\nname = \"web-dns\"\ncommand = { argv = [\"true\"] }\n\n";
    let good = format!(
        "{checks}[status_page.public]\ntitle = \"Example status\"\ndescription = \"Our services\"\n\
         services = [{{ name = \"Website\", checks = [\"web\", \"web-dns\"] }}]\n"
    );
    let loaded = loads(&good);
    let page = &loaded.config.status_pages["public"];
    assert_eq!(page.name, "public");
    assert_eq!(page.services[0].checks, ["web", "web-dns"]);
    assert!(show_config_round_trips(&loaded.config).contains("[status_page.public]"));

    let bad = format!(
        "{checks}[status_page.public]\ntitle = \"\"\n\
         services = [{{ name = \"Website\", checks = [\"wbe\"] }}, {{ name = \"Website\", checks = [] }}]\n\n\
         [status_page.\"x.json\"]\ntitle = \"t\"\nservices = [{{ name = \"A\", checks = [\"web\"] }}]\n"
    );
    let e = errors(&bad);
    for says in [
        "`title` is empty",
        "unknown check `wbe`",
        "did you mean `web`",
        "two services are named `Website`",
        "service `Website` has no checks",
        "not ending in `.json`",
        "vigie.toml:9:1",
    ] {
        assert!(e.contains(says), "{says}: {e}");
    }
    let e = errors(&format!(
        "{checks}[status_page.p]\ntitle = \"t\"\nservices = []\n"
    ));
    assert!(e.contains("no services"), "{e}");
}

#[test]
fn remote_write_resolves_with_its_defaults_and_round_trips() {
    let loaded = loads(
        r#"
[node]
name = "web1"

[[remote_write]]
url = "https://prom.example.org/api/v1/write"
bearer_token = { env = "VIGIE_TEST_TOKEN" }

[[remote_write]]
name = "local"
url = "http://127.0.0.1:8428/api/v1/write"
interval = "30s"
timeout = "5s"
queue = "1MiB"
labels = { instance = "edge-1", env = "prod" }
basic_auth = { user = "vigie", password = { env = "VIGIE_TEST_TOKEN" } }
"#,
    );
    let rw = &loaded.config.remote_writes;
    assert_eq!(rw.len(), 2);
    assert_eq!(rw[0].name, "prom.example.org:443");
    assert_eq!(rw[0].interval.to_string(), "15s");
    assert_eq!(rw[0].timeout.to_string(), "10s");
    assert_eq!(rw[0].queue.to_string(), "16MiB");
    let labels = |i: usize| {
        rw[i]
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(labels(0), "instance=web1,job=vigie");
    assert_eq!(labels(1), "env=prod,instance=edge-1,job=vigie");
    match &rw[0].auth {
        Some(vigie_config::RemoteAuth::Bearer(t)) => assert_eq!(t.expose(), "s3cret"),
        other => panic!("{other:?}"),
    }
    match &rw[1].auth {
        Some(vigie_config::RemoteAuth::Basic { user, password }) => {
            assert_eq!((user.as_str(), password.expose()), ("vigie", "s3cret"));
        }
        other => panic!("{other:?}"),
    }
    let shown = show_config_round_trips(&loaded.config);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("[remote_write.bearer_token]\nenv = \"VIGIE_TEST_TOKEN\""),
        "{shown}"
    );
}

#[test]
fn bad_remote_writes_are_refused_at_their_place() {
    let e = errors(
        r#"
[[remote_write]]
url = "http://user:pw@192.0.2.1:9090/api/v1/write"
interval = "100ms"
timeout = "0s"
queue = "1kB"
labels = { "bad-name" = "x", __name__ = "y", env = "" }

[[remote_write]]
name = "twice"
url = "http://192.0.2.2:9090/api/v1/write"
bearer_token = { env = "VIGIE_TEST_TOKEN" }
basic_auth = { user = "u", password = { env = "VIGIE_TEST_TOKEN" } }

[[remote_write]]
name = "twice"
url = "ftp://192.0.2.3/"

[[remote_write]]
url = "https://192.0.2.4/api/v1/write"
bearer_token = { env = "NOT_SET_ANYWHERE" }
wat = 1
"#,
    );
    for needle in [
        // Each at its line.
        "vigie.toml:3:7",
        "the URL holds credentials",
        "vigie.toml:4:12",
        "`interval` is at least 1s",
        "vigie.toml:5:11",
        "`timeout` is at least 100ms",
        "vigie.toml:6:9",
        "`queue` is at least 256KiB",
        "`bad-name` is not a label name",
        "`__name__` is not a label name",
        "label `env` is empty",
        "set `bearer_token` or `basic_auth`, not both",
        "credentials are sent to an endpoint beyond loopback over plain http",
        "scheme `ftp` is not checked over HTTP",
        "unknown key `wat`",
    ] {
        assert!(e.contains(needle), "no {needle:?} in\n{e}");
    }
}

#[test]
fn a_remote_write_secret_must_be_found() {
    let e = errors(
        "[[remote_write]]\nurl = \"https://192.0.2.4/api/v1/write\"\nbearer_token = { env = \"NOT_SET_ANYWHERE\" }\n",
    );
    assert!(
        e.contains("environment variable `NOT_SET_ANYWHERE` is not set"),
        "{e}"
    );
    assert!(e.contains("vigie.toml:3:16"), "{e}");
    let e = errors(
        "[[remote_write]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/w\"\n[[remote_write]]\nname = \"a\"\nurl = \"http://127.0.0.1:2/w\"\n",
    );
    assert!(e.contains("remote_write `a` is declared twice"), "{e}");
    assert!(e.contains("vigie.toml:5:8"), "{e}");
}

#[test]
fn rules_load_and_show_config_round_trips() {
    let src = r#"
[[check]]
name = "disk-growth"
rule = { expr = 'increase(node_filesystem_used_bytes{mountpoint="/"}, 4h) > 70%' }

[[check]]
name = "disk-full"
every = "5m"
rule = { expr = "predict(node_filesystem_avail_bytes{mountpoint=\"/\"}, 6h, 0) < 24h" }
"#;
    let loaded = loads(src);
    let Probe::Rule(r) = &loaded.config.checks[1].probe else {
        panic!("not a rule");
    };
    let rule = r.rule.as_ref().expect("parsed by the loader");
    assert_eq!(rule.selector.name, "node_filesystem_avail_bytes");
    let shown = show_config_round_trips(&loaded.config);
    assert!(
        shown.contains(
            r#"expr = 'predict(node_filesystem_avail_bytes{mountpoint="/"}, 6h, 0) < 24h'"#
        ),
        "{shown}"
    );
}

#[test]
fn a_bad_rule_is_refused_at_its_character_with_what_to_write() {
    // Line 4, the rule in single quotes from column 17: `rate` at 17.
    let e = errors(
        "[[check]]\nname = \"a\"\nevery = \"1m\"\nrule = { expr = 'rate(node_network_receive_bytes_total, 5m) > 1e6' }\n",
    );
    assert!(
        e.starts_with(
            "error: check \"a\".rule.expr: unknown function `rate`\n  --> vigie.toml:4:18\n"
        ),
        "{e}"
    );
    assert!(e.contains("hint: use increase(SERIES, WINDOW)"), "{e}");
    // In a basic string, past the escaped quotes: `4hours` at column 48.
    let e = errors(
        "[[check]]\nname = \"b\"\nrule = { expr = \"increase(x{mountpoint=\\\"/\\\"}, 4hours) > 70%\" }\n",
    );
    assert!(e.contains("--> vigie.toml:3:48"), "{e}");
    assert!(
        e.contains("bad duration for the window of increase(…)"),
        "{e}"
    );
    for (expr, needle) in [
        ("x > 90%", "a percentage is only for increase(…)"),
        ("predict(x, 6h, 0) > 24h", "compare with `<` or `<=`"),
        ("avg(x, 1h) = 3", "expected a comparison (>, >=, <, <=)"),
        ("absent(x, 10m) > 1", "absent(…) takes no comparison"),
        ("x{a!=\"b\"} > 1", "only `=` is supported"),
        ("increse(x, 1h) > 1", "did you mean `increase`?"),
    ] {
        let e = errors(&format!(
            "[[check]]\nname = \"c\"\nrule = {{ expr = '{expr}' }}\n"
        ));
        assert!(e.contains(needle), "{expr}: no {needle:?} in\n{e}");
        assert!(e.contains("vigie.toml:3:"), "{e}");
    }
}

#[test]
fn a_rule_window_longer_than_the_series_are_kept_is_refused() {
    let e = errors(
        "[series]\nretention = { raw = \"1d\", minute = \"7d\", hour = \"30d\" }\n\n[[check]]\nname = \"slow\"\nrule = { expr = 'increase(x, 60d) > 1' }\n",
    );
    assert!(
        e.contains("error: check \"slow\".rule.expr: the window `8w4d` is longer than the series are kept (`4w2d`)\n  --> vigie.toml:6:17"),
        "{e}"
    );
    assert!(e.contains("[series] retention.hour"), "{e}");
    // Within it: fine.
    loads("[[check]]\nname = \"ok\"\nrule = { expr = 'increase(x, 60d) > 1' }\n");
}

#[test]
fn a_rule_over_a_check_s_series_names_a_check_of_the_config() {
    let e = errors(
        "[[check]]\nname = \"web\"\ntcp = { address = \"127.0.0.1:80\" }\n\n[[check]]\nname = \"slow\"\nrule = { expr = 'avg(vigie_check_duration_seconds{check=\"wbe\"}, 10m) > 1' }\n",
    );
    assert!(
        e.starts_with("error: check \"slow\".rule.expr: unknown check `wbe`\n  --> vigie.toml:7:17\n  hint: did you mean `web`?"),
        "{e}"
    );
    loads(
        "[[check]]\nname = \"web\"\ntcp = { address = \"127.0.0.1:80\" }\n\n[[check]]\nname = \"slow\"\nrule = { expr = 'avg(vigie_check_duration_seconds{check=\"web\"}, 10m) > 1' }\n",
    );
}

#[test]
fn a_rule_over_a_series_no_check_records_is_refused() {
    let e = errors(
        "[[check]]\nname = \"web\"\ntcp = { address = \"127.0.0.1:80\" }\n\n[[check]]\nname = \"slow\"\nrule = { expr = 'vigie_check_valeu{check=\"web\"} > 1' }\n",
    );
    assert!(
        e.starts_with(
            "error: check \"slow\".rule.expr: no check records a series named `vigie_check_valeu`"
        ),
        "{e}"
    );
    assert!(e.contains("did you mean `vigie_check_value`?"), "{e}");
}

#[test]
fn the_rules_page_examples_load() {
    let page = include_str!("../../../../docs/rules.md");
    let blocks: Vec<&str> = page
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 2, "{page}");
    for block in blocks {
        let loaded = load_str(block, Path::new("rules.md"), &env)
            .unwrap_or_else(|e| panic!("{e}\nin\n{block}"));
        assert!(
            loaded
                .config
                .checks
                .iter()
                .any(|c| matches!(c.probe, Probe::Rule(_))),
            "{block}"
        );
    }
}
