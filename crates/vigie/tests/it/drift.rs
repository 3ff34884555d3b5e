//! Drift as a check: `[[converge]]` jobs in the daemon. An audit job on
//! a manifest of files under the test's directory is ok while the files
//! are as declared; a file changed by hand fails its check, opens an
//! incident naming the file; an enforce job repairs it and stays ok; a
//! manifest with errors is refused at load.

use std::time::Duration;

use serde_json::Value;
use vigie_testkit::{Need, require};

use crate::util::{SERVER, assert_metrics, env, exits, wait_or_explain, wait_state};

/// The manifest: `motd` under `dir` holds "hello", its drift a disaster.
fn manifest(dir: &std::path::Path) -> String {
    format!(
        "[settings]\nkeep_old = \"none\"\n\n[[file]]\npath = \"{}\"\ncontent = \"hello\\n\"\nseverity = \"disaster\"\n",
        dir.join("motd").display()
    )
}

#[test]
fn an_audit_job_fails_on_drift_and_an_enforce_job_repairs_it() {
    let e = env();
    let motd = e.path().join("motd");
    e.write("motd", "hello\n");
    e.write("host.toml", &manifest(e.path()));
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"base\"\nmanifest = \"host.toml\"\nevery = \"1s\"\nseverity = \"high\"\n"
    ));
    let d = e.daemon();
    let c = wait_state(&d, "converge-base", "ok", Duration::from_secs(10));
    assert!(c.to_string().contains("1 resources as"), "compliant: {c}");
    // Changed by hand: drift, an incident naming the file.
    std::fs::write(&motd, "changed\n").unwrap();
    let c = wait_state(&d, "converge-base", "failing", Duration::from_secs(15));
    let shown = c.to_string();
    assert!(shown.contains(&motd.display().to_string()), "{c}");
    assert!(shown.contains("the host changed"), "{c}");
    wait_or_explain(
        Duration::from_secs(10),
        || {
            let r = e.run(&["incidents", "--json"]);
            serde_json::from_str::<Value>(&r.stdout).is_ok_and(|v| {
                // The resource's severity, above the job's `high`.
                v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|i| i["check"] == "converge-base" && i["severity"] == "disaster")
                })
            })
        },
        || e.run(&["incidents", "--json"]).stdout + &d.log(),
    );
    // Audit never writes.
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "changed\n");
    assert_metrics(
        &d,
        &[
            "vigie_converge_last_run_timestamp_seconds{job=\"base\"}",
            "vigie_converge_resources{job=\"base\",outcome=\"non_compliant\"} 1",
        ],
    );
    drop(d);

    // Enforce: repaired, the check ok and saying so.
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"base\"\nmanifest = \"host.toml\"\nmode = \"enforce\"\nevery = \"1s\"\n"
    ));
    let d = e.daemon();
    wait_or_explain(
        Duration::from_secs(10),
        || std::fs::read_to_string(&motd).unwrap() == "hello\n",
        || d.log(),
    );
    let repaired = || {
        let c = crate::util::api_check(&d, "converge-base");
        c["state"] == "ok" && c.to_string().contains("repaired 1 of 1")
    };
    wait_or_explain(Duration::from_secs(10), repaired, || d.log());
    std::fs::write(&motd, "changed again\n").unwrap();
    wait_or_explain(
        Duration::from_secs(10),
        || std::fs::read_to_string(&motd).unwrap() == "hello\n",
        || d.log(),
    );
    // Repaired at the next run; the check stays ok and says what it changed.
    wait_or_explain(Duration::from_secs(10), repaired, || d.log());
}

#[test]
fn a_bad_manifest_is_refused_at_load_naming_it() {
    let e = env();
    e.write("host.toml", "[[file]]\npath = \"/tmp/x\"\nnonsense = 1\n");
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"base\"\nmanifest = \"host.toml\"\n"
    ));
    exits(
        &e,
        &["validate"],
        2,
        &["converge \"base\".manifest", "host.toml", "nonsense"],
    );
}

#[test]
fn a_bad_schedule_is_refused_at_its_place() {
    let e = env();
    e.write("host.toml", "");
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"a\"\nmanifest = \"host.toml\"\nat = \"02:30\"\nschedule = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"\n\n[[converge]]\nname = \"b\"\nmanifest = \"host.toml\"\nat = \"25:00\"\n"
    ));
    exits(
        &e,
        &["validate"],
        2,
        &[
            "converge \"a\": set `at` or `schedule`, not both",
            "unknown time zone `Mars/Olympus`",
            "`25:00` is not a time of day",
            "vigie.toml:",
        ],
    );
}

#[test]
fn a_restart_still_tells_a_changed_host_from_a_changed_manifest() {
    let e = env();
    let motd = e.path().join("motd");
    e.write("motd", "hello\n");
    e.write("host.toml", &manifest(e.path()));
    // Once an hour: each daemon below runs the job once, at its start.
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"base\"\nmanifest = \"host.toml\"\nevery = \"1h\"\n"
    ));
    let d = e.daemon();
    wait_state(&d, "converge-base", "ok", Duration::from_secs(10));
    drop(d);
    // Changed by hand while the daemon was down: the host changed.
    std::fs::write(&motd, "changed\n").unwrap();
    let d = e.daemon();
    let c = wait_state(&d, "converge-base", "failing", Duration::from_secs(15));
    assert!(c.to_string().contains("the host changed"), "{c}");
    drop(d);
    // The manifest now says something else: an intentional change.
    e.write(
        "host.toml",
        &manifest(e.path()).replace("hello\\n", "welcome\\n"),
    );
    let d = e.daemon();
    let c = wait_state(&d, "converge-base", "failing", Duration::from_secs(15));
    assert!(c.to_string().contains("the manifest changed"), "{c}");
}

#[test]
fn an_edited_template_is_a_changed_manifest_not_a_changed_host() {
    let e = env();
    let motd = e.path().join("motd");
    e.write("motd", "hello\n");
    e.write("motd.j2", "hello\n");
    e.write(
        "host.toml",
        &format!(
            "[settings]\nkeep_old = \"none\"\n\n[[file]]\npath = \"{}\"\ntemplate = \"motd.j2\"\n",
            motd.display()
        ),
    );
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"base\"\nmanifest = \"host.toml\"\nevery = \"1h\"\n"
    ));
    let d = e.daemon();
    wait_state(&d, "converge-base", "ok", Duration::from_secs(10));
    drop(d);
    // Only the template changed, the manifest's text did not: still
    // an intentional change.
    e.write("motd.j2", "welcome\n");
    let d = e.daemon();
    let c = wait_state(&d, "converge-base", "failing", Duration::from_secs(15));
    assert!(c.to_string().contains("the manifest changed"), "{c}");
    drop(d);
    // Nothing changed since: the host is what differs.
    let d = e.daemon();
    let c = wait_state(&d, "converge-base", "failing", Duration::from_secs(15));
    assert!(c.to_string().contains("the host changed"), "{c}");
}

/// `git ARGS` in `dir`, which must succeed; its output.
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_manifest_pulled_from_git_is_applied_at_its_commit() {
    require!(Need::Git);
    let e = env();
    let motd = e.path().join("motd");
    e.write("motd", "hello\n");
    let repo = e.path().join("site");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.join("site.toml"), manifest(e.path())).unwrap();
    git(&repo, &["add", "site.toml"]);
    git(&repo, &["commit", "--quiet", "-m", "first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"base\"\ngit = {{ url = \"{}\", ref = \"main\", manifest = \"site.toml\" }}\nevery = \"1s\"\n",
        repo.display()
    ));
    exits(&e, &["validate"], 0, &[]);
    let d = e.daemon();
    let c = wait_state(&d, "converge-base", "ok", Duration::from_secs(15));
    assert!(
        c.to_string()
            .contains(&format!("at commit {}", &first[..12])),
        "{c}"
    );
    // A new commit: picked up by the next run, the host now differs.
    std::fs::write(
        repo.join("site.toml"),
        manifest(e.path()).replace("hello\\n", "welcome\\n"),
    )
    .unwrap();
    git(&repo, &["commit", "--quiet", "-am", "second"]);
    let second = git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let c = wait_state(&d, "converge-base", "failing", Duration::from_secs(15));
    let shown = c.to_string();
    assert!(
        shown.contains(&format!("at commit {}", &second[..12])),
        "{c}"
    );
    assert!(shown.contains("the manifest changed"), "{c}");
    // Audit: the file is reported, not changed.
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello\n");
    // The repository is gone: the check says why, the checkout stays.
    std::fs::rename(&repo, e.path().join("site.gone")).unwrap();
    wait_or_explain(
        Duration::from_secs(15),
        || {
            let c = crate::util::api_check(&d, "converge-base").to_string();
            c.contains("cannot pull") && c.contains(&format!("stays at commit {}", &second[..12]))
        },
        || crate::util::api_check(&d, "converge-base").to_string() + &d.log(),
    );
    let kept = e.state_dir().join("converge/base/site.toml");
    assert!(
        std::fs::read_to_string(&kept).unwrap().contains("welcome"),
        "{}",
        kept.display()
    );
}

#[test]
fn a_git_source_that_could_run_a_command_is_refused() {
    let e = env();
    e.config(&format!(
        "{SERVER}[[converge]]\nname = \"a\"\ngit = {{ url = \"ext::/tmp/evil\" }}\n\n[[converge]]\nname = \"b\"\ngit = {{ url = \"/srv/site.git\", ref = \"--upload-pack=x\", manifest = \"../etc/x\" }}\n\n[[converge]]\nname = \"c\"\nmanifest = \"m.toml\"\ngit = {{ url = \"/srv/site.git\" }}\n"
    ));
    exits(
        &e,
        &["validate"],
        2,
        &[
            "converge \"a\": git.url",
            "remote helpers",
            "git.ref: `--upload-pack=x` is not a branch or tag name",
            "git.manifest: `../etc/x` is not a path inside the repository",
            "converge \"c\": set `manifest` or `git`, not both",
        ],
    );
}
