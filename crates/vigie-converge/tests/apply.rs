//! Running plans on files in a temp dir (no root needed): links
//! refused, audit leaving the tree as it was, handlers once.

// Tests make their fixtures with the standard library; the crate itself
// writes only through its Writer (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use vigie_converge::{Facts, LoadOptions, Mode, Options, Plan, Report, Status, load_str};

fn plan(dir: &Path, text: &str) -> Plan {
    let text = text.replace("{DIR}", &dir.display().to_string());
    load_str(
        &text,
        "t.toml",
        dir,
        &LoadOptions {
            facts: Facts::gather(),
            host: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn run(p: &Plan, mode: Mode) -> Report {
    vigie_converge::run(
        p,
        &Options {
            mode,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            fetch: None,
        },
    )
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
                out.push((format!("{} dir", p.display()), Vec::new()));
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_link_where_a_file_is_declared_is_refused_not_followed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("target"), "precious\n").unwrap();
    std::os::unix::fs::symlink(d.path().join("target"), d.path().join("link")).unwrap();
    std::os::unix::fs::symlink(d.path().join("target"), d.path().join("link2")).unwrap();
    let p = plan(
        d.path(),
        "[[file]]\npath = \"{DIR}/link\"\ncontent = \"x\"\n\n[[line]]\npath = \"{DIR}/link2\"\nline = \"y\"\n",
    );
    let r = run(&p, Mode::Enforce);
    for item in &r.resources {
        assert_eq!(item.status, Status::Error, "{item:?}");
        assert!(item.detail().contains("symbolic link"), "{item:?}");
    }
    assert_eq!(
        std::fs::read_to_string(d.path().join("target")).unwrap(),
        "precious\n"
    );
}

#[test]
fn an_audit_leaves_the_tree_as_it_was_and_enforce_then_finds_nothing() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("conf"), "a = 1\nsecret_key = x\n").unwrap();
    std::fs::write(d.path().join("old"), "to remove\n").unwrap();
    let p = plan(
        d.path(),
        r#"
[settings]
keep_old = "{DIR}/kept"

[[file]]
path = "{DIR}/conf"
content = "a = 2\n"
mode = "0600"

[[file]]
path = "{DIR}/old"
state = "absent"

[[directory]]
path = "{DIR}/a/b"

[[line]]
path = "{DIR}/lines"
name = "c"
line = "c = 3"
create = true

[[block]]
path = "{DIR}/a/b/blk"
block = "x"
create = true
requires = "directory:{DIR}/a/b"

[[command]]
name = "t"
command = ["touch", "{DIR}/touched"]
creates = "{DIR}/touched"
"#,
    );
    let before = tree(d.path());
    let audit = run(&p, Mode::Audit);
    assert_eq!(audit.summary.non_compliant, 6, "{audit:?}");
    assert!(audit.failed());
    assert_eq!(tree(d.path()), before);
    let conf = &audit.resources[0];
    assert!(
        conf.diff
            .as_deref()
            .unwrap()
            .contains("-secret_key = <redacted>"),
        "{conf:?}"
    );

    let enforce = run(&p, Mode::Enforce);
    assert_eq!(enforce.summary.repaired, 6, "{enforce:?}");
    assert!(!enforce.failed());
    assert!(!d.path().join("old").exists());
    let kept = d
        .path()
        .join("kept")
        .join(d.path().strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(kept.join("old")).unwrap(),
        "to remove\n"
    );
    assert_eq!(
        std::fs::read_to_string(kept.join("conf")).unwrap(),
        "a = 1\nsecret_key = x\n"
    );
    let again = run(&p, Mode::Enforce);
    assert_eq!(again.summary.compliant, 6, "{again:?}");
}

#[test]
fn a_handler_runs_once_after_repairs_and_never_without_one() {
    let d = tempfile::tempdir().unwrap();
    let p = plan(
        d.path(),
        r#"
[[file]]
path = "{DIR}/one"
content = "1"
notify = "handler:count"

[[file]]
path = "{DIR}/two"
content = "2"
notify = ["handler:count"]

[[handler]]
name = "count"
command = "echo ran >> {DIR}/count"
shell = true
"#,
    );
    let audit = run(&p, Mode::Audit);
    assert_eq!(audit.handlers.len(), 1);
    assert_eq!(audit.handlers[0].status, Status::NonCompliant);
    assert!(!d.path().join("count").exists());
    let r = run(&p, Mode::Enforce);
    assert_eq!(r.handlers[0].status, Status::Repaired, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("count")).unwrap(),
        "ran\n"
    );
    let r = run(&p, Mode::Enforce);
    assert!(r.handlers.is_empty(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("count")).unwrap(),
        "ran\n"
    );
}

#[test]
fn a_whole_file_and_an_edit_of_it_are_refused_together() {
    let text = "[[file]]\npath = \"/etc/x\"\ncontent = \"a\"\n\n[[line]]\npath = \"/etc/x\"\nline = \"b\"\n";
    let e = load_str(
        text,
        "t.toml",
        Path::new("/"),
        &LoadOptions {
            facts: Facts::gather(),
            host: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line:/etc/x: edits /etc/x, whose whole content file:/etc/x declares"),
        "{e}"
    );
}

#[test]
fn an_owner_not_made_yet_is_drift_in_an_audit_and_an_error_to_enforce() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f"), "x").unwrap();
    let p = plan(
        d.path(),
        "[[file]]\npath = \"{DIR}/f\"\ncontent = \"x\"\nowner = \"vigienosuchuser\"\n",
    );
    let audit = run(&p, Mode::Audit);
    assert_eq!(audit.resources[0].status, Status::NonCompliant, "{audit:?}");
    assert!(
        audit.resources[0]
            .detail()
            .contains("declared vigienosuchuser"),
        "{audit:?}"
    );
    let enforce = run(&p, Mode::Enforce);
    assert_eq!(enforce.resources[0].status, Status::Error, "{enforce:?}");
    assert!(
        enforce.resources[0]
            .detail()
            .contains("no user `vigienosuchuser` on this host"),
        "{enforce:?}"
    );
}

#[test]
fn facts_are_this_hosts() {
    let f = Facts::gather();
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(f.hostname, name.trim());
    assert!(f.cpus >= 1 && f.memory_mb > 0, "{f:?}");
    assert!(!f.os.id.is_empty(), "{f:?}");
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "init.defaultBranch=main",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_git_checkout_follows_its_ref_and_keeps_local_changes_unless_forced() {
    vigie_testkit::require!(vigie_testkit::Need::Git);
    let d = tempfile::tempdir().unwrap();
    let origin = d.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "--quiet"]);
    std::fs::write(origin.join("app.txt"), "one\n").unwrap();
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "--quiet", "-m", "one"]);
    git(&origin, &["tag", "-a", "v1", "-m", "v1"]);
    let v1 = git(&origin, &["rev-parse", "HEAD"]);
    std::fs::write(origin.join("app.txt"), "two\n").unwrap();
    git(&origin, &["commit", "--quiet", "-am", "two"]);
    let two = git(&origin, &["rev-parse", "HEAD"]);
    let manifest = |rev: &str, force: bool| {
        plan(
            d.path(),
            &format!(
                "[[git]]\nrepo = \"{{DIR}}/origin\"\ndest = \"{{DIR}}/app\"\nrev = \"{rev}\"\nforce = {force}\n"
            ),
        )
    };
    let app = d.path().join("app");

    let audit = run(&manifest("v1", false), Mode::Audit);
    assert!(
        audit.resources[0]
            .detail()
            .starts_with("not cloned; declared v1"),
        "{audit:?}"
    );
    assert!(!app.exists());
    let r = run(&manifest("v1", false), Mode::Enforce);
    assert_eq!(r.resources[0].status, Status::Repaired, "{r:?}");
    assert_eq!(git(&app, &["rev-parse", "HEAD"]), v1);
    assert_eq!(
        std::fs::read_to_string(app.join("app.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        run(&manifest("v1", false), Mode::Audit).summary.compliant,
        1
    );

    let r = run(&manifest("main", false), Mode::Enforce);
    assert_eq!(r.resources[0].status, Status::Repaired, "{r:?}");
    assert_eq!(git(&app, &["rev-parse", "HEAD"]), two);

    std::fs::write(app.join("app.txt"), "edited here\n").unwrap();
    let audit = run(&manifest("main", false), Mode::Audit);
    assert_eq!(
        audit.resources[0].detail(),
        "local changes in the checkout",
        "{audit:?}"
    );
    let refused = run(&manifest(&v1, false), Mode::Enforce);
    assert_eq!(refused.resources[0].status, Status::Error, "{refused:?}");
    assert!(
        refused.resources[0].detail().contains("set `force = true`"),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("app.txt")).unwrap(),
        "edited here\n"
    );
    let forced = run(&manifest(&v1, true), Mode::Enforce);
    assert_eq!(forced.resources[0].status, Status::Repaired, "{forced:?}");
    assert_eq!(git(&app, &["rev-parse", "HEAD"]), v1);
    assert_eq!(
        std::fs::read_to_string(app.join("app.txt")).unwrap(),
        "one\n"
    );

    let missing = run(&manifest("nope", false), Mode::Audit);
    assert!(
        missing.resources[0]
            .detail()
            .contains("neither a branch nor a tag"),
        "{missing:?}"
    );
}
