//! The binary as a user runs it: validate, show-config, exit codes.

use vigie_testkit::check;

use crate::util::{assert_has, env, exits, webhook_hook};

#[test]
fn validate_accepts_a_good_config() {
    let e = env();
    e.config(&check("mem", "memory = {}", ""));
    let r = e.run(&["validate"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "[DIR]/vigie.toml: configuration ok, 1 check\n");
}

#[test]
fn validate_reports_every_error_and_exits_2() {
    let e = env();
    e.config(
        r#"
[server]
listen = "127.0.0.1:notaport"

[[check]]
name = "web"
http = { url = "htp://example.org", expect_stauts = [200] }
every = "5 parsecs"

[[check]]
name = "web"
tcp = { address = "example.org:80" }
depends_on = ["wbe"]
"#,
    );
    let r = e.run(&["validate"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    insta::assert_snapshot!(r.stderr);
}

#[test]
fn a_missing_config_file_says_what_to_do() {
    exits(
        &env(),
        &["validate"],
        2,
        &["cannot read the configuration", "hint: create it"],
    );
}

#[test]
fn a_bad_config_never_starts_the_daemon() {
    let e = env();
    e.config("[[check]]\nname = \"x\"\nmemory = { max_used_percent = \"lots\" }\n");
    exits(&e, &["run"], 2, &["vigie.toml:3:"]);
    assert!(!e.state_dir().exists(), "nothing was created");
}

#[test]
fn show_config_prints_the_resolved_config_without_secrets() {
    let e = env();
    e.write("token", "very-secret-token\n");
    e.config(
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = { file = \"token\" }\n\n[defaults]\nevery = \"1m\"\n\n[[check]]\nname = \"mem\"\nmemory = {}\n",
    );
    let r = e.run(&["show-config"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("very-secret-token"), "{}", r.stdout);
    insta::assert_snapshot!(
        r.stdout
            .replace(&format!("\"{}\"", vigie_name()), "\"[NODE]\"")
    );
}

fn vigie_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn check_with_an_unknown_name_is_a_usage_error() {
    let e = env();
    e.config(&check("mem", "memory = {}", ""));
    exits(
        &e,
        &["check", "nope"],
        2,
        &["no check named `nope`", "known checks: mem"],
    );
}

#[test]
fn generate_completions_for_bash_zsh_and_fish() {
    let e = env();
    for (shell, marker) in [
        ("bash", "_vigie()"),
        ("zsh", "#compdef vigie"),
        ("fish", "complete -c vigie"),
    ] {
        let r = e.run(&["generate", "completions", shell]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains(marker),
            "{shell}: {}",
            &r.stdout[..200.min(r.stdout.len())]
        );
        assert!(r.stdout.contains("heartbeat-url"), "{shell}");
    }
}

/// The `NAME(1)` references of a page's section (SEE ALSO, SUBCOMMANDS),
/// read from its roff source.
fn references(roff: &str, section: &str) -> Vec<String> {
    let Some(start) = roff.find(&format!(".SH {section}\n")) else {
        return Vec::new();
    };
    let body = &roff[start + 1..];
    let body = &body[..body.find("\n.SH ").map_or(body.len(), |i| i + 1)];
    let plain = body
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\-", "-");
    plain
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '(' || c == ')'))
        .filter_map(|w| w.strip_suffix("(1)"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn generate_man_writes_a_page_per_command_and_see_also_names_only_those() {
    let e = env();
    let dir = e.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    let r = e.run(&["generate", "man", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "vigie.1",
        "vigie-run.1",
        "vigie-status.1",
        "vigie-sync-pause.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} not in {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("sync-receive")),
        "{pages:?}"
    );
    let mut checked = 0;
    for page in &pages {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap();
        let see_also = references(&roff, "\"SEE ALSO\"");
        let subcommands = references(&roff, "SUBCOMMANDS");
        if page != "vigie.1" {
            assert!(
                see_also.iter().any(|r| r == "vigie"),
                "{page}: {see_also:?}"
            );
        }
        for name in see_also.iter().chain(&subcommands) {
            assert!(
                dir.join(format!("{name}.1")).exists(),
                "{page} names {name}(1), which was not generated"
            );
            checked += 1;
        }
    }
    // vigie.1 alone names every top-level command.
    assert!(checked > pages.len(), "{checked} references in {pages:?}");

    vigie_testkit::require!(vigie_testkit::need::Need::Man);
    let page = dir.join("vigie-failover-switch.1");
    let out = std::process::Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    // Bold and underline are overstrikes ("X\x08X") when not on a terminal.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
    for expected in [
        "NAME",
        "vigie-failover-switch",
        "--to",
        "SEE ALSO",
        "vigie-failover(1)",
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
}

#[test]
fn generate_man_into_a_missing_directory_says_what_to_do() {
    let e = env();
    let dir = e.path().join("nope");
    exits(
        &e,
        &["generate", "man", dir.to_str().unwrap()],
        2,
        &["is not a directory", "hint: create it first"],
    );
    assert!(!dir.exists());
}

#[test]
fn help_opens_with_what_vigie_is_and_ends_with_examples() {
    let r = env().run(&["--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().next().unwrap();
    assert!(first.starts_with("Supervise, repair, alert"), "{first}");
    assert!(!r.stdout.contains("clap"), "{}", r.stdout);
    let tail = &r.stdout[r.stdout.find("Examples:").expect(&r.stdout)..];
    assert!(tail.contains("Documentation:"), "{tail}");
}

#[test]
fn unknown_subcommand_exits_2() {
    let r = env().run(&["frobnicate"]);
    assert_eq!(r.code, 2);
}

#[test]
fn every_example_config_validates() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        let e = env();
        let r = e
            .cmd(&["validate", "-c", path.to_str().unwrap()])
            .env("VIGIE_TOKEN", "example-token")
            .env("NIGHTLY_PING_TOKEN", "example-token")
            .env("MATRIX_TOKEN", "example-token")
            .env("PAGERDUTY_ROUTING_KEY", "example-token")
            .env("SMTP_PASSWORD", "example-token")
            .env("OVH_AS", "example-token")
            .env("OVH_CK", "example-token")
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&r.stderr)
        );
    }
    assert!(
        n >= 2,
        "examples/ holds the quickstart and the fleet configs"
    );
}

/// The variables `examples/fleet.toml` reads its secrets from.
fn fleet_variables() -> (std::path::PathBuf, Vec<String>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let vars = text
        .split("{ env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect::<Vec<_>>();
    assert!(vars.len() >= 3, "the fleet example has secrets: {vars:?}");
    (path, vars)
}

#[test]
fn validate_no_environment_checks_a_config_without_its_secrets() {
    let (path, vars) = fleet_variables();
    let e = env();
    let mut cmd = e.cmd(&["validate", "--no-environment", "-c", path.to_str().unwrap()]);
    for v in &vars {
        cmd.env_remove(v);
    }
    let r = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "no error, no warning: {stderr}");
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        stdout.contains(": configuration ok, ") && stdout.ends_with(" (secrets not read)\n"),
        "{stdout}"
    );
    // The secrets' shape is still checked: an inline secret is refused.
    e.config("[server]\nlisten = \"0.0.0.0:9470\"\ntoken = \"hunter2\"\n");
    let r = e.run(&["validate", "--no-environment"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("a secret cannot be inline"), "{r:?}");
}

#[test]
fn an_unset_secret_is_reported_alone_not_as_an_unknown_declaration() {
    // examples/fleet.toml without its variables: each unset variable is
    // an error, and nothing else (its notifiers and DNS provider were
    // reported as unknown where they are used).
    let (path, vars) = fleet_variables();
    let e = env();
    let mut cmd = e.cmd(&["validate", "-c", path.to_str().unwrap()]);
    for v in &vars {
        cmd.env_remove(v);
    }
    let r = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.iter().all(|l| l.contains("is not set")),
        "only the unset variables: {stderr}"
    );
    for v in &vars {
        assert!(
            stderr.contains(&format!("environment variable `{v}` is not set")),
            "{v}: {stderr}"
        );
    }
    assert_eq!(errors.len(), vars.len(), "{stderr}");
}

#[test]
fn the_embedded_quickstart_is_the_shipped_example() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    ))
    .unwrap();
    assert_eq!(shipped, vigie_config::QUICKSTART);
}

#[test]
fn notify_test_delivers_and_reports() {
    let (server, seen) = vigie_testkit::servers::capture(&[200]);
    let e = env();
    e.config(&format!(
        "[node]\nname = \"home\"\n\n{}",
        webhook_hook(server.addr)
    ));
    let r = e.run(&["notify", "test", "hook"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "hook: delivered (1 attempt)\n");
    let seen = seen.lock().unwrap();
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["state"], "test");
    assert_eq!(body["node"], "home");
    drop(seen);
    let r = e.run(&["notify", "test", "nope"]);
    assert_eq!(r.code, 2);
    assert_has(&r.stderr, "known notifiers: hook");
}

#[test]
fn notify_test_to_a_refusing_server_exits_3() {
    let (server, _seen) = vigie_testkit::servers::capture(&[403]);
    let e = env();
    e.config(&webhook_hook(server.addr));
    let r = e.run(&["notify", "test", "hook"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_has(
        &r.stderr,
        "not delivered (1 attempt): webhook answered 403 Forbidden",
    );
}

/// Apprise is the program vigie calls, so a stand-in on `PATH` records
/// what it is given: `validate` warns while there is none, then `notify
/// test` runs it with the URLs in `APPRISE_URLS` (not on its command line,
/// which every user can read) and without the secret's own variable.
#[test]
fn apprise_is_found_on_path_and_gets_its_urls_in_its_environment() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    e.config(
        "[node]\nname = \"home\"\n\n[notify.more]\nkind = \"apprise\"\nurls = [{ env = \"APPRISE_TG\" }]\n",
    );
    let bin = e.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let run = |args: &[&str]| {
        let o = e
            .cmd(args)
            .env("PATH", &bin)
            .env("APPRISE_TG", "tgram://123:s3cret/456")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["validate"]);
    assert_eq!(code, Some(0), "{err}");
    assert_has(
        &err,
        "notify.more.program: `apprise` is not an executable on PATH",
    );
    let program = bin.join("apprise");
    std::fs::write(
        &program,
        "#!/bin/sh\nd=\"${0%/*}\"\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$d/argv\"\nprintf '%s' \"$APPRISE_URLS\" > \"$d/urls\"\nprintf '%s' \"${APPRISE_TG-unset}\" > \"$d/scrubbed\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = run(&["validate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("not an executable"), "{err}");
    let (code, out, err) = run(&["notify", "test", "more"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("more: delivered ("), "{out}");
    let argv = std::fs::read_to_string(bin.join("argv")).unwrap();
    assert_eq!(
        argv.split_terminator('\0').collect::<Vec<_>>(),
        [
            "--notification-type=info",
            "--title=vigie test message from home",
            "--body=This is a test of the notifier `more` from vigie on home. If you read it, it works.",
        ]
    );
    let read = |name: &str| std::fs::read_to_string(bin.join(name)).unwrap();
    assert_eq!(read("urls"), "tgram://123:s3cret/456");
    assert_eq!(read("scrubbed"), "unset");
}
