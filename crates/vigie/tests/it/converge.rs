//! `vigie converge`: the real binary on real files, users, groups, cron
//! entries, a kernel parameter and a Debian package built here, under
//! names the tests own (`vigietest…`, `vigie-test-…`) and remove.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vigie_testkit::{Env, Need, Run, require};

use crate::util::{assert_has, env};

/// Write `text` with `{DIR}` as the env's directory, return its path.
fn manifest(e: &Env, name: &str, text: &str) -> PathBuf {
    e.write(
        name,
        &text.replace("{DIR}", &e.path().display().to_string()),
    )
}

fn converge(e: &Env, m: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["converge", m.to_str().unwrap()];
    args.extend_from_slice(extra);
    e.run(&args)
}

fn json(e: &Env, m: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = converge(e, m, &args);
    serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"))
}

/// Each resource's status, by id.
fn statuses(v: &Value) -> Vec<(String, String)> {
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["handlers"].as_array().unwrap())
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

/// Runs its commands when dropped, failed test or not: what a test
/// made on the host goes away.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = sh(c);
        }
    }
}

/// A short name this test process owns.
fn owned(what: &str) -> String {
    format!("vigietest{}{what}", std::process::id())
}

#[test]
#[allow(clippy::too_many_lines)] // one story: audit, enforce, no-op, drift
fn files_lines_blocks_and_commands_are_audited_then_enforced() {
    let e = env();
    let root = e.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let app = root.join("etc/app.conf");
    let sshd = root.join("etc/sshd_config");
    std::fs::write(&app, "port = 80\npassword = hunter2\n").unwrap();
    std::fs::write(&sshd, "Port 22\nPermitRootLogin yes\n").unwrap();
    let m = manifest(
        &e,
        "site.toml",
        r#"
[settings]
keep_old = "beside"

[vars]
port = 8080

[[directory]]
path = "{DIR}/root/srv/data"
mode = "0750"

[[file]]
path = "{DIR}/root/etc/app.conf"
content = "port = {{ port }}\npassword = correct-horse\n"
mode = "0640"
notify = "handler:reload"

[[line]]
path = "{DIR}/root/etc/sshd_config"
line = "PermitRootLogin no"
regex = "^PermitRootLogin"
notify = "handler:reload"

[[block]]
name = "hosts"
path = "{DIR}/root/etc/hosts"
block = "10.0.0.1 a\n10.0.0.2 b"
create = true

[[command]]
name = "init-data"
command = ["touch", "{DIR}/root/srv/data/initialised"]
creates = "{DIR}/root/srv/data/initialised"
requires = "directory:{DIR}/root/srv/data"

[[handler]]
name = "reload"
command = "echo reloaded >> {DIR}/root/reloads"
shell = true
"#,
    );

    let audit = converge(&e, &m, &["--audit", "--diff"]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert_has(&audit.stdout, "non-compliant  file:[DIR]/root/etc/app.conf");
    assert_has(&audit.stdout, "-port = 80\n");
    assert_has(&audit.stdout, "+port = 8080\n");
    assert_has(&audit.stdout, "password = <redacted>");
    assert!(
        !audit.stdout.contains("hunter2") && !audit.stdout.contains("correct-horse"),
        "{audit:?}"
    );
    assert_has(&audit.stdout, "+PermitRootLogin no");
    assert_has(&audit.stdout, "would run `/bin/sh -c");
    assert_has(
        &audit.stdout,
        "audit: 5 resources and 1 handler: 0 compliant, 0 repaired, 6 non-compliant",
    );
    // Audit wrote nothing.
    assert_eq!(
        std::fs::read_to_string(&app).unwrap(),
        "port = 80\npassword = hunter2\n"
    );
    assert_eq!(
        std::fs::read_to_string(&sshd).unwrap(),
        "Port 22\nPermitRootLogin yes\n"
    );
    assert!(!root.join("srv").exists() && !root.join("etc/hosts").exists());
    assert!(!root.join("reloads").exists());

    let enforce = converge(&e, &m, &[]);
    assert_eq!(enforce.code, 0, "{enforce:?}");
    assert_has(
        &enforce.stdout,
        "repaired       file:[DIR]/root/etc/app.conf",
    );
    assert_eq!(
        std::fs::read_to_string(&app).unwrap(),
        "port = 8080\npassword = correct-horse\n"
    );
    assert_eq!(mode(&app), 0o640);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf.vigie-old")).unwrap(),
        "port = 80\npassword = hunter2\n"
    );
    assert_eq!(
        std::fs::read_to_string(&sshd).unwrap(),
        "Port 22\nPermitRootLogin no\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        "# BEGIN vigie hosts\n10.0.0.1 a\n10.0.0.2 b\n# END vigie hosts\n"
    );
    assert_eq!(mode(&root.join("srv/data")), 0o750);
    assert!(root.join("srv/data/initialised").exists());
    // Two resources notified the handler: it ran once.
    assert_eq!(
        std::fs::read_to_string(root.join("reloads")).unwrap(),
        "reloaded\n"
    );

    let again = json(&e, &m, &[]);
    assert_eq!(again["summary"]["compliant"], 5, "{again}");
    assert_eq!(again["summary"]["total"], 5, "{again}");
    assert_eq!(
        std::fs::read_to_string(root.join("reloads")).unwrap(),
        "reloaded\n"
    );
    let clean = converge(&e, &m, &["--audit"]);
    assert_eq!(clean.code, 0, "{clean:?}");

    // A hand edit is drift again, repaired again.
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o666)).unwrap();
    let drift = converge(&e, &m, &["--audit"]);
    assert_eq!(drift.code, 1, "{drift:?}");
    assert_has(&drift.stdout, "mode 0666, declared 0640");
    assert_eq!(converge(&e, &m, &[]).code, 0);
    assert_eq!(mode(&app), 0o640);
}

#[test]
fn a_bad_manifest_exits_2_lists_every_error_and_changes_nothing() {
    let e = env();
    let m = manifest(
        &e,
        "bad.toml",
        r#"
[[file]]
path = "{DIR}/good"
content = "x"

[[file]]
path = "{DIR}/typo"
contnet = "x"

[[command]]
name = "rm"
command = "rm -rf {DIR}/good"
"#,
    );
    let r = converge(&e, &m, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_has(
        &r.stderr,
        "[[file]] #2 ([DIR]/typo): key `contnet`: unknown field `contnet`",
    );
    assert_has(&r.stderr, "hint: the keys of [[file]] are");
    assert_has(&r.stderr, "[[command]] #1 (rm): key `command`");
    assert_has(&r.stderr, "nothing was checked or changed");
    assert!(!e.path().join("good").exists());
    let missing = e.run(&["converge", "/nonexistent/site.toml"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert_has(&missing.stderr, "cannot read it");
}

#[test]
fn a_failed_requirement_skips_its_dependents_and_tags_choose_what_runs() {
    let e = env();
    let m = manifest(
        &e,
        "site.toml",
        r#"
[[command]]
name = "broken"
command = ["sh", "-c", "echo cannot >&2; exit 3"]
unless = ["test", "-e", "{DIR}/never"]
tags = ["app"]

[[file]]
path = "{DIR}/after-broken"
content = "x"
requires = "command:broken"
tags = ["app"]

[[file]]
path = "{DIR}/web"
content = "web"
tags = ["web"]

[[file]]
path = "{DIR}/slow"
content = "slow"
tags = ["web", "slow"]
"#,
    );
    let web = converge(&e, &m, &["--tags", "web", "--skip-tags", "slow"]);
    assert_eq!(web.code, 0, "{web:?}");
    assert!(e.path().join("web").exists() && !e.path().join("slow").exists());
    assert!(!web.stdout.contains("command:broken"), "{web:?}");

    let all = json(&e, &m, &[]);
    let s = statuses(&all);
    assert!(
        s.contains(&("command:broken".into(), "error".into())),
        "{s:?}"
    );
    assert!(
        s.contains(&("file:[DIR]/after-broken".into(), "skipped".into())),
        "{s:?}"
    );
    assert!(
        s.contains(&("file:[DIR]/slow".into(), "repaired".into())),
        "{s:?}"
    );
    assert!(!e.path().join("after-broken").exists());
    let broken = all["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "command:broken")
        .unwrap();
    assert_eq!(
        broken["message"], "`sh -c 'echo cannot >&2; exit 3'` failed: exit 3: cannot",
        "{all}"
    );
    let r = converge(&e, &m, &[]);
    assert_eq!(r.code, 1, "an error fails the run: {r:?}");
    assert_has(&r.stdout, "skipped        file:[DIR]/after-broken");
    assert_has(&r.stdout, "requires command:broken, which failed");
}

#[test]
fn users_groups_keys_and_cron_entries_for_real() {
    require!(Need::Root);
    let (user, group) = (owned("u"), owned("g"));
    let cron = format!("vigie-test-{}", std::process::id());
    let _cleanup = Cleanup(vec![
        format!("userdel -r {user} 2>/dev/null"),
        format!("groupdel {group} 2>/dev/null"),
        format!("rm -f /etc/cron.d/{cron}"),
    ]);
    let e = env();
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzvigietestkeyvigietestkeyvigietestke test@vigie";
    let text = format!(
        r#"
[[group]]
name = "{group}"

[[user]]
name = "{user}"
groups = ["{group}"]
shell = "/bin/sh"
home = "/home/{user}"
authorized_keys = ["{key}"]
requires = "group:{group}"

[[cron]]
name = "{cron}"
schedule = "*/5 * * * *"
user = "{user}"
command = "true"
env = {{ MAILTO = "" }}
requires = "user:{user}"
"#
    );
    let m = manifest(&e, "users.toml", &text);
    let audit = converge(&e, &m, &["--audit"]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert_has(&audit.stdout, &format!("user {user} missing"));
    assert!(
        !sh(&format!("id {user}")).status.success(),
        "audit made the user"
    );

    let enforce = converge(&e, &m, &[]);
    assert_eq!(enforce.code, 0, "{enforce:?}");
    let groups = String::from_utf8(sh(&format!("id -nG {user}")).stdout).unwrap();
    assert!(groups.split_whitespace().any(|g| g == group), "{groups}");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with(&format!("{user}:"))
            && l.ends_with(&format!(":/home/{user}:/bin/sh"))),
        "{passwd}"
    );
    let keys = PathBuf::from(format!("/home/{user}/.ssh/authorized_keys"));
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{key}\n"));
    assert_eq!(mode(&keys), 0o600);
    assert_eq!(mode(keys.parent().unwrap()), 0o700);
    let uid = std::fs::metadata(&keys).unwrap().uid();
    assert_eq!(
        std::fs::metadata(format!("/home/{user}")).unwrap().uid(),
        uid
    );
    let entry = PathBuf::from(format!("/etc/cron.d/{cron}"));
    let text_now = std::fs::read_to_string(&entry).unwrap();
    assert!(
        text_now.ends_with(&format!("MAILTO=\n*/5 * * * * {user} true\n")),
        "{text_now}"
    );
    assert_eq!(mode(&entry), 0o644);
    assert_eq!(converge(&e, &m, &["--audit"]).code, 0);

    // Drift made by hand: a shell changed, a key added.
    assert!(sh(&format!("usermod -s /bin/bash {user}")).status.success());
    std::fs::write(&keys, format!("{key}\nssh-ed25519 AAAAintruder x\n")).unwrap();
    let drift = converge(&e, &m, &["--audit"]);
    assert_eq!(drift.code, 1, "{drift:?}");
    assert_has(&drift.stdout, "shell /bin/bash, declared /bin/sh");
    let fixed = converge(&e, &m, &[]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{key}\n"));
    assert_eq!(converge(&e, &m, &["--audit"]).code, 0);

    // Declared absent: removed.
    let gone = manifest(
        &e,
        "gone.toml",
        &format!(
            "[[cron]]\nname = \"{cron}\"\nschedule = \"@daily\"\ncommand = \"true\"\nstate = \"absent\"\n\n\
             [[user]]\nname = \"{user}\"\nstate = \"absent\"\n\n\
             [[group]]\nname = \"{group}\"\nstate = \"absent\"\nrequires = \"user:{user}\"\n"
        ),
    );
    let r = converge(&e, &gone, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!entry.exists());
    assert!(!sh(&format!("id {user}")).status.success());
    assert!(!sh(&format!("getent group {group}")).status.success());
    assert_eq!(converge(&e, &gone, &["--audit"]).code, 0);
}

#[test]
fn a_kernel_parameter_is_set_now_and_persisted() {
    require!(Need::Root);
    let path = "/proc/sys/vm/swappiness";
    let before = std::fs::read_to_string(path).unwrap().trim().to_owned();
    let n: u32 = before.parse().unwrap();
    let target = if n == 0 { 1 } else { n - 1 };
    let persisted = "/etc/sysctl.d/90-vigie-vm.swappiness.conf";
    let _cleanup = Cleanup(vec![
        format!("echo {before} > {path}"),
        format!("rm -f {persisted}"),
    ]);
    let e = env();
    let m = manifest(
        &e,
        "sysctl.toml",
        &format!("[[sysctl]]\nkey = \"vm.swappiness\"\nvalue = {target}\n"),
    );
    let audit = converge(&e, &m, &["--audit"]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert_has(
        &audit.stdout,
        &format!("vm.swappiness is {before}, declared {target}"),
    );
    assert_eq!(std::fs::read_to_string(path).unwrap().trim(), before);
    let r = converge(&e, &m, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(path).unwrap().trim(),
        target.to_string()
    );
    assert_has(
        &std::fs::read_to_string(persisted).unwrap(),
        &format!("vm.swappiness = {target}\n"),
    );
    assert_eq!(converge(&e, &m, &["--audit"]).code, 0);
}

/// A package `name` 1.0 with one file, built with dpkg-deb into `dir`.
fn build_deb(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/doc/{name}"))).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: vigie tests <tests@example.org>\n\
             Description: a package vigie's tests install and remove\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("usr/share/doc/{name}/README")),
        "vigie test\n",
    )
    .unwrap();
    let deb = dir.join(format!("{name}_1.0_all.deb"));
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    deb
}

fn dpkg_status(name: &str) -> String {
    String::from_utf8(
        sh(&format!(
            "dpkg-query -W -f='${{db:Status-Abbrev}}${{Version}}' {name} 2>/dev/null"
        ))
        .stdout,
    )
    .unwrap()
}

#[test]
fn a_package_built_here_is_installed_and_removed_with_apt() {
    require!(Need::Root);
    let name = owned("pkg");
    let _cleanup = Cleanup(vec![format!("dpkg --purge {name} >/dev/null 2>&1")]);
    let e = env();
    build_deb(e.path(), &name);
    let m = manifest(
        &e,
        "pkg.toml",
        &format!(
            "[[package]]\nname = \"{name}\"\nversion = \"1.0\"\ndeb = \"{name}_1.0_all.deb\"\n"
        ),
    );
    let audit = converge(&e, &m, &["--audit"]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert_has(&audit.stdout, &format!("package {name} not installed"));
    let r = converge(&e, &m, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(dpkg_status(&name), "ii 1.0");
    assert_eq!(converge(&e, &m, &["--audit"]).code, 0);

    let gone = manifest(
        &e,
        "gone.toml",
        &format!("[[package]]\nname = \"{name}\"\nstate = \"absent\"\n"),
    );
    let audit = converge(&e, &gone, &["--audit"]);
    assert_has(
        &audit.stdout,
        &format!("package {name} 1.0 installed, declared absent"),
    );
    let r = converge(&e, &gone, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !dpkg_status(&name).starts_with("ii"),
        "{}",
        dpkg_status(&name)
    );
    assert_eq!(converge(&e, &gone, &["--audit"]).code, 0);
}

#[test]
fn a_service_is_enabled_in_an_image_with_systemctl_root() {
    require!(Need::Systemctl);
    let e = env();
    let image = e.path().join("image");
    let units = image.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("vigietest.service"),
        "[Unit]\nDescription=vigie test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let m = manifest(
        &e,
        "svc.toml",
        "[[service]]\nname = \"vigietest.service\"\nenabled = true\nroot = \"{DIR}/image\"\n",
    );
    let audit = converge(&e, &m, &["--audit"]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert_has(&audit.stdout, "disabled, declared enabled");
    let link = units.join("multi-user.target.wants/vigietest.service");
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "audit enabled it"
    );
    let r = converge(&e, &m, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(converge(&e, &m, &["--audit"]).code, 0);

    if !Path::new("/run/systemd/system").exists() {
        let running = manifest(
            &e,
            "run.toml",
            "[[service]]\nname = \"vigietest.service\"\nrunning = true\n",
        );
        let r = converge(&e, &running, &["--audit"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert_has(&r.stdout, "systemd is not running on this host");
    }
}

/// Everything a manifest can touch, as text, to compare before and
/// after an audit.
fn snapshot(dir: &Path, extra: &[&str]) -> String {
    let mut out = String::new();
    for f in [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/gshadow",
        "/proc/sys/vm/swappiness",
    ] {
        let _ = writeln!(out, "{f}: {:?}", std::fs::read(f).ok());
    }
    for f in extra {
        let _ = writeln!(
            out,
            "{f}: {:?}",
            std::fs::symlink_metadata(f).ok().map(|m| m.mode())
        );
    }
    let listing = sh(&format!(
        "find {} -printf '%p %m %s %U %G\\n' | sort; cat $(find {} -type f | sort) 2>/dev/null",
        dir.display(),
        dir.display()
    ));
    out += &String::from_utf8_lossy(&listing.stdout);
    out += &String::from_utf8_lossy(
        &sh("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n'").stdout,
    );
    out
}

#[test]
fn audit_never_writes_whatever_the_drift() {
    require!(Need::Root, Need::Systemctl);
    let e = env();
    let (user, group, pkg) = (owned("au"), owned("ag"), owned("apkg"));
    let cron = format!("vigie-test-audit-{}", std::process::id());
    let _cleanup = Cleanup(vec![
        format!("userdel -r {user} 2>/dev/null"),
        format!("groupdel {group} 2>/dev/null"),
        format!("rm -f /etc/cron.d/{cron} /etc/sysctl.d/90-vigie-vm.swappiness.conf"),
        format!("dpkg --purge {pkg} >/dev/null 2>&1"),
    ]);
    build_deb(e.path(), &pkg);
    let root = e.path().join("root");
    let units = root.join("image/etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("vigietest.service"),
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    std::fs::write(root.join("edit"), "PermitRootLogin yes\n").unwrap();
    std::fs::write(root.join("whole"), "old\n").unwrap();
    std::fs::write(root.join("gone"), "remove me\n").unwrap();
    let swappiness: u32 = std::fs::read_to_string("/proc/sys/vm/swappiness")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let text = format!(
        r#"
[[file]]
path = "{{DIR}}/root/whole"
content = "new\n"
mode = "0600"

[[file]]
path = "{{DIR}}/root/gone"
state = "absent"

[[file]]
path = "{{DIR}}/root/new"
content = "x"

[[directory]]
path = "{{DIR}}/root/dir/sub"

[[line]]
path = "{{DIR}}/root/edit"
line = "PermitRootLogin no"
regex = "^PermitRootLogin"

[[block]]
path = "{{DIR}}/root/edit"
block = "x"

[[command]]
name = "touch"
command = ["touch", "{{DIR}}/root/touched"]

[[sysctl]]
key = "vm.swappiness"
value = {}

[[group]]
name = "{group}"

[[user]]
name = "{user}"
authorized_keys = ["ssh-ed25519 AAAA x"]

[[cron]]
name = "{cron}"
schedule = "@daily"
command = "true"

[[package]]
name = "{pkg}"
deb = "{pkg}_1.0_all.deb"

[[service]]
name = "vigietest.service"
enabled = true
root = "{{DIR}}/root/image"
"#,
        if swappiness == 0 { 1 } else { swappiness - 1 }
    );
    let m = manifest(&e, "all.toml", &text);
    let extra = [
        format!("/etc/cron.d/{cron}"),
        "/etc/sysctl.d/90-vigie-vm.swappiness.conf".to_owned(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let before = snapshot(e.path(), &extra);
    let v = json(&e, &m, &["--audit"]);
    let s = statuses(&v);
    assert_eq!(s.len(), 13, "{s:?}");
    assert!(s.iter().all(|(_, st)| st == "non-compliant"), "{s:?}");
    assert_eq!(snapshot(e.path(), &extra), before);
}

/// A plain HTTP/1.1 server on loopback for downloads: `/whole` sends
/// `body`, `/other` a different body, `/cut` announces the whole length
/// and dies halfway. Counts the requests it answered.
struct Files {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn files(body: Vec<u8>) -> Files {
    use std::io::{BufRead as _, BufReader, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (status, sent, len): (&str, Vec<u8>, usize) = match path.as_str() {
                "/whole" => ("200 OK", body.clone(), body.len()),
                "/other" => {
                    let mut b = body.clone();
                    b[0] ^= 1;
                    ("200 OK", b, body.len())
                }
                "/cut" => ("200 OK", body[..body.len() / 2].to_vec(), body.len()),
                _ => ("404 Not Found", Vec::new(), 0),
            };
            let head =
                format!("HTTP/1.1 {status}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&sent);
            let _ = s.flush();
            // Dropped: a cut body ends here, short of its length.
        }
    });
    Files { addr, requests }
}

fn sha256sum(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
#[allow(clippy::too_many_lines)] // one story: missing, cut, wrong, fetched, no network
fn a_download_is_verified_before_it_reaches_its_path() {
    let e = env();
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let expected = e.path().join("expected.bin");
    std::fs::write(&expected, &body).unwrap();
    let sum = sha256sum(&expected);
    let server = files(body.clone());
    let dir = e.path().join("dl");
    std::fs::create_dir(&dir).unwrap();
    let dest = dir.join("tool.bin");
    let write = |route: &str| {
        manifest(
            &e,
            "dl.toml",
            &format!(
                "[settings]\nkeep_old = \"none\"\n\n[[download]]\nurl = \"http://{}/{route}\"\npath = \"{}\"\nchecksum = \"sha256:{sum}\"\nmode = \"0750\"\n",
                server.addr,
                dest.display()
            ),
        )
    };

    // Audit: missing, and nothing fetched nor written.
    let m = write("whole");
    let audit = converge(&e, &m, &["--audit"]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert_has(&audit.stdout, "non-compliant");
    assert_has(&audit.stdout, "missing (from http://");
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A server that dies halfway: an error, and no file, whole or half.
    let m = write("cut");
    let cut = converge(&e, &m, &[]);
    assert_eq!(cut.code, 1, "{cut:?}");
    assert_has(&cut.stdout, "error");
    assert_has(&cut.stdout, "cut after");
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));

    // A body that is not the declared one: both sums, and no file.
    let m = write("other");
    let wrong = converge(&e, &m, &[]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert_has(&wrong.stdout, &format!("declared sha256:{sum}"));
    assert_has(&wrong.stdout, "has checksum sha256:");
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));

    // An old file stays whole when the new one is refused.
    std::fs::write(&dest, b"old version\n").unwrap();
    let m = write("cut");
    let cut = converge(&e, &m, &[]);
    assert_eq!(cut.code, 1, "{cut:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"old version\n");
    assert_eq!(names(&dir), ["tool.bin"]);

    // The right body: fetched, verified, renamed, with its mode.
    let m = write("whole");
    let v = json(&e, &m, &[]);
    assert_eq!(
        statuses(&v),
        [("download:[DIR]/dl/tool.bin".to_owned(), "repaired".into())],
        "{v}"
    );
    assert_has(
        v["resources"][0]["changes"][0].as_str().unwrap(),
        "checksum sha256:",
    );
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(mode(&dest), 0o750);
    assert_eq!(names(&dir), ["tool.bin"]);

    // Compliant by its checksum: no request at all, even to a dead URL.
    let before = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    let m = manifest(
        &e,
        "dl.toml",
        &format!(
            "[[download]]\nurl = \"http://127.0.0.1:1/gone\"\npath = \"{}\"\nchecksum = \"sha256:{sum}\"\nmode = \"0750\"\n",
            dest.display()
        ),
    );
    let again = converge(&e, &m, &["--audit"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_has(&again.stdout, "compliant");
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[test]
fn a_download_without_a_checksum_or_with_a_bad_url_is_refused() {
    let e = env();
    let m = manifest(
        &e,
        "dl.toml",
        r#"
[[download]]
url = "http://127.0.0.1/x"
path = "{DIR}/x"

[[download]]
url = "ftp://example.org/y"
path = "{DIR}/y"
checksum = "sha256:00"
"#,
    );
    let r = converge(&e, &m, &["--audit"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_has(
        &r.stderr,
        "key `checksum`: missing: a download declares the checksum",
    );
    assert_has(
        &r.stderr,
        "key `url`: `ftp://example.org/y`: a download's URL starts with https:// or http://",
    );
    assert!(!e.path().join("x").exists());
}

#[test]
fn a_role_brings_its_resources_files_templates_and_defaults() {
    let e = env();
    let role = e.path().join("roles/web");
    for d in ["files", "templates"] {
        std::fs::create_dir_all(role.join(d)).unwrap();
    }
    std::fs::write(
        role.join("main.toml"),
        "[[file]]\npath = \"{{ root }}/index.html\"\ntemplate = \"index.j2\"\nnotify = \"handler:reload\"\n\n[[file]]\npath = \"{{ root }}/robots.txt\"\nsource = \"robots.txt\"\n\n[[handler]]\nname = \"reload\"\ncommand = \"echo reloaded >> {{ root }}/reloads\"\nshell = true\n",
    )
    .unwrap();
    std::fs::write(
        role.join("defaults.toml"),
        "greeting = \"hello\"\nport = 80\n",
    )
    .unwrap();
    std::fs::write(
        role.join("templates/index.j2"),
        "{{ greeting }} on {{ port }}\n",
    )
    .unwrap();
    std::fs::write(role.join("files/robots.txt"), "User-agent: *\n").unwrap();
    let www = e.path().join("www");
    std::fs::create_dir(&www).unwrap();
    // The manifest's own variables win over the role's defaults; its
    // resources run after the role's.
    let m = manifest(
        &e,
        "site.toml",
        "roles = [\"web\"]\n\n[settings]\nkeep_old = \"none\"\n\n[vars]\nroot = \"{DIR}/www\"\nport = 8080\n\n[[line]]\npath = \"{DIR}/www/site.conf\"\nline = \"listen {{ port }}\"\ncreate = true\nrequires = \"file:{{ root }}/index.html\"\n",
    );
    let v = json(&e, &m, &[]);
    assert_eq!(
        statuses(&v),
        [
            (
                "file:[DIR]/www/index.html".to_owned(),
                "repaired".to_owned()
            ),
            ("file:[DIR]/www/robots.txt".into(), "repaired".into()),
            ("line:[DIR]/www/site.conf".into(), "repaired".into()),
            ("handler:reload".into(), "repaired".into()),
        ],
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "hello on 8080\n"
    );
    assert_eq!(
        std::fs::read_to_string(www.join("robots.txt")).unwrap(),
        "User-agent: *\n"
    );
    assert_eq!(
        std::fs::read_to_string(www.join("site.conf")).unwrap(),
        "listen 8080\n"
    );
    assert_eq!(
        std::fs::read_to_string(www.join("reloads")).unwrap(),
        "reloaded\n"
    );
    let again = converge(&e, &m, &["--audit"]);
    assert_eq!(again.code, 0, "{again:?}");

    // A role that is not there, and one with a stray section: each
    // named, nothing done.
    std::fs::create_dir_all(e.path().join("roles/odd")).unwrap();
    std::fs::write(e.path().join("roles/odd/main.toml"), "[vars]\nx = 1\n").unwrap();
    let bad = manifest(
        &e,
        "bad.toml",
        "roles = [\"web\", \"db\", \"odd\", \"../x\"]\n",
    );
    let r = converge(&e, &bad, &["--audit"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_has(&r.stderr, "roles: `db`: [DIR]/roles/db is not a folder");
    assert_has(
        &r.stderr,
        "role odd: roles/odd/main.toml: `vars` has no place in a role's main.toml",
    );
    assert_has(&r.stderr, "roles: `../x`: a role's name is a folder's");
}
