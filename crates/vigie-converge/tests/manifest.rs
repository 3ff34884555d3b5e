//! The manifest loader: every error at once, each naming the resource,
//! the key and a fix; templates, loops, variables per host; order.

// Tests make their fixtures with the standard library; the crate itself
// writes only through its Writer (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use vigie_converge::manifest::Spec;
use vigie_converge::{Facts, LoadOptions, ManifestErrors, Plan, load_str};

fn facts() -> Facts {
    let mut f = Facts::gather();
    f.hostname = "web1".into();
    f.os.id = "debian".into();
    f
}

fn load(text: &str) -> Result<Plan, ManifestErrors> {
    load_str(
        text,
        "site.toml",
        Path::new("/nonexistent"),
        &LoadOptions {
            facts: facts(),
            host: None,
        },
    )
}

fn errors(text: &str) -> String {
    load(text)
        .expect_err("the manifest should be refused")
        .to_string()
}

fn content(plan: &Plan, id: &str) -> String {
    let r = plan
        .resources
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| {
            panic!(
                "{id} in {:?}",
                plan.resources.iter().map(|r| &r.id).collect::<Vec<_>>()
            )
        });
    match &r.spec {
        Spec::File(f) => String::from_utf8(f.content.clone().unwrap()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_error_is_reported_at_once_with_resource_key_and_hint() {
    let e = errors(
        r#"
[[file]]
path = "/etc/motd"
mdoe = "0644"

[[file]]
path = "/etc/issue"
content = "x"
mode = 644

[[directory]]
path = "etc/relative"

[[nginx]]
x = 1
"#,
    );
    assert!(
        e.contains("site.toml: [[file]] #1 (/etc/motd): key `mdoe`"),
        "{e}"
    );
    assert!(e.contains("unknown field `mdoe`"), "{e}");
    assert!(e.contains("hint: the keys of [[file]] are path"), "{e}");
    assert!(e.contains("[[file]] #2 (/etc/issue): key `mode`"), "{e}");
    assert!(e.contains("octal string"), "{e}");
    assert!(
        e.contains("key `path`: `etc/relative` is not an absolute path"),
        "{e}"
    );
    assert!(e.contains("`nginx`: unknown section"), "{e}");
    assert_eq!(e.matches("error: ").count(), 4, "{e}");
}

#[test]
fn a_path_that_climbs_is_refused() {
    let e = errors("[[file]]\npath = \"/srv/www/../../etc/shadow\"\ncontent = \"x\"\n");
    assert!(e.contains("`..`"), "{e}");
    let e = errors("[[cron]]\nname = \"../x\"\nschedule = \"@daily\"\ncommand = \"true\"\n");
    assert!(e.contains("key `name`"), "{e}");
    let e = errors("[[sysctl]]\nkey = \"../../etc/x\"\nvalue = 1\n");
    assert!(e.contains("key `key`"), "{e}");
}

#[test]
fn a_command_string_needs_shell_true() {
    let e = errors("[[command]]\nname = \"x\"\ncommand = \"rm -rf /tmp/x\"\n");
    assert!(e.contains("only with `shell = true`"), "{e}");
    let p = load("[[command]]\nname = \"x\"\ncommand = \"echo hi | wc\"\nshell = true\n").unwrap();
    let Spec::Command(c) = &p.resources[0].spec else {
        panic!()
    };
    assert_eq!(c.cmd.argv, ["/bin/sh", "-c", "echo hi | wc"]);
}

#[test]
fn requires_and_notify_must_name_what_is_declared_and_not_loop() {
    let e = errors(
        r#"
[[file]]
path = "/etc/a"
content = "a"
requires = ["file:/etc/b", "user:nobody-declared"]
notify = "handler:missing"

[[file]]
path = "/etc/b"
content = "b"
requires = "file:/etc/a"
"#,
    );
    assert!(e.contains("`user:nobody-declared` is not declared"), "{e}");
    assert!(e.contains("`handler:missing` is neither"), "{e}");
    assert!(e.contains("a cycle among file:/etc/a, file:/etc/b"), "{e}");
}

#[test]
fn resources_run_after_what_they_require_else_in_order() {
    let p = load(
        r#"
[[file]]
path = "/home/deploy/.profile"
content = "x"
owner = "deploy"
requires = "user:deploy"

[[directory]]
path = "/srv"

[[user]]
name = "deploy"
requires = "group:deploy"

[[group]]
name = "deploy"
"#,
    )
    .unwrap();
    let ids: Vec<&str> = p.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "directory:/srv",
            "group:deploy",
            "user:deploy",
            "file:/home/deploy/.profile"
        ]
    );
}

#[test]
fn resources_run_in_the_order_of_the_file_whatever_their_kind() {
    let p = load(
        r#"
[[command]]
name = "first"
command = ["true"]

[[file]]
path = "/etc/second"
content = "x"

[[user]] # a comment after the header
name = "third"

[[file]]
path = "/etc/fourth"
content = "x"
"#,
    )
    .unwrap();
    let ids: Vec<&str> = p.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "command:first",
            "file:/etc/second",
            "user:third",
            "file:/etc/fourth"
        ]
    );
}

#[test]
fn templates_are_strict_and_name_the_key() {
    let e = errors("[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ greeting }}\"\n");
    assert!(e.contains("[[file]] #1"), "{e}");
    assert!(e.contains("key `content`"), "{e}");
    assert!(e.contains("undefined"), "{e}");
}

#[test]
fn variables_of_the_host_override_its_groups_which_override_vars() {
    let text = r#"
[vars]
port = 80
motd = "plain"
admins = ["ann", "bob"]

[host_groups.web]
hosts = ["web1", "web2"]
vars = { port = 8080, motd = "web" }

[hosts.web1]
vars = { port = 8443 }

[[file]]
path = "/etc/motd"
content = "{{ motd }} {{ port }} on {{ host }} ({{ facts.os.id }})\n"

[[file]]
for_each = "admins"
path = "/etc/sudoers.d/{{ item }}"
content = "{{ item }} ALL=(ALL) ALL\n"

[[line]]
for_each = [{ k = "a", v = 1 }, { k = "b", v = 2 }]
name = "conf-{{ item.k }}"
path = "/etc/app.conf"
line = "{{ item.k }} = {{ item.v }}"
"#;
    let p = load(text).unwrap();
    assert_eq!(content(&p, "file:/etc/motd"), "web 8443 on web1 (debian)\n");
    assert_eq!(
        content(&p, "file:/etc/sudoers.d/bob"),
        "bob ALL=(ALL) ALL\n"
    );
    assert!(p.resources.iter().any(|r| r.id == "line:conf-b"));
    let other = load_str(
        text,
        "site.toml",
        Path::new("/"),
        &LoadOptions {
            facts: facts(),
            host: Some("db1".into()),
        },
    )
    .unwrap();
    assert_eq!(
        content(&other, "file:/etc/motd"),
        "plain 80 on db1 (debian)\n"
    );
}

#[test]
fn a_loop_that_makes_twins_is_refused() {
    let e = errors("[[file]]\nfor_each = [1, 2]\npath = \"/etc/same\"\ncontent = \"{{ item }}\"\n");
    assert!(e.contains("file:/etc/same: declared twice"), "{e}");
}

#[test]
fn a_runaway_template_stops_on_its_fuel() {
    let e = errors(
        "[[file]]\npath = \"/etc/x\"\ncontent = \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\"\n",
    );
    assert!(e.contains("fuel"), "{e}");
}

#[test]
fn a_syntax_error_says_where() {
    let e = errors("[[file]\npath = 1\n");
    assert!(e.contains("site.toml: syntax"), "{e}");
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn the_manifest_in_the_docs_loads() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/converge.md"
    ))
    .unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("motd.j2"),
        "{{ motd }} ({{ facts.os.id }})\n",
    )
    .unwrap();
    let plan = load_str(
        text,
        "converge.md",
        dir.path(),
        &LoadOptions {
            facts: facts(),
            host: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(content(&plan, "file:/etc/motd"), "web1, front (debian)\n");
    let ids: Vec<&str> = plan.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "group:admins",
            "user:ann",
            "user:bob",
            "line:/etc/ssh/sshd_config",
            "file:/etc/motd",
            "package:nginx"
        ]
    );
    let Spec::Edit(line) = &plan.resources[3].spec else {
        panic!()
    };
    assert!(format!("{:?}", line.edit).contains("Port 2222"), "{line:?}");
}

#[test]
fn a_roles_files_are_among_what_the_plan_read() {
    let dir = tempfile::tempdir().unwrap();
    let role = dir.path().join("roles/web");
    std::fs::create_dir_all(role.join("files")).unwrap();
    std::fs::create_dir_all(role.join("templates")).unwrap();
    std::fs::write(
        role.join("main.toml"),
        "[[file]]\npath = \"/srv/a\"\nsource = \"a.txt\"\n[[file]]\npath = \"/srv/b\"\ntemplate = \"b.j2\"\n",
    )
    .unwrap();
    std::fs::write(role.join("defaults.toml"), "who = \"web\"\n").unwrap();
    std::fs::write(role.join("files/a.txt"), "a\n").unwrap();
    std::fs::write(role.join("templates/b.j2"), "{{ who }}\n").unwrap();
    std::fs::write(dir.path().join("c.txt"), "c\n").unwrap();
    let plan = load_str(
        "roles = [\"web\"]\n[[file]]\npath = \"/srv/c\"\nsource = \"c.txt\"\n",
        "site.toml",
        dir.path(),
        &LoadOptions {
            facts: facts(),
            host: None,
        },
    )
    .unwrap();
    assert_eq!(
        plan.files,
        [
            "c.txt",
            "roles/web/defaults.toml",
            "roles/web/files/a.txt",
            "roles/web/main.toml",
            "roles/web/templates/b.j2",
        ]
    );
    assert_eq!(content(&plan, "file:/srv/b"), "web\n");
    let ids: Vec<&str> = plan.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["file:/srv/a", "file:/srv/b", "file:/srv/c"]);
}
