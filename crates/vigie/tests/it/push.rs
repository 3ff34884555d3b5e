//! `vigie converge push`: two "hosts" on two real sshds on loopback
//! (each with its own cache and temporary directory through ssh's
//! `SetEnv`), and a third that nothing answers; and `vigie converge
//! receive` fed forged bundles.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use vigie_testkit::sshd::{Client, Sshd};
use vigie_testkit::{Env, Need, Run, require};

use crate::util::{assert_has, env, free_port};

/// An ssh_config with a host alias per `(alias, port, dir)`: `dir`'s
/// `cache` and `tmp` are that host's `XDG_CACHE_HOME` and `TMPDIR`.
fn ssh_config(client: &Client, hosts: &[(&str, u16, &Path)], known: &[&Sshd]) -> PathBuf {
    let d = client.dir.path();
    let known: Vec<String> = known.iter().map(|s| s.known_hosts_line()).collect();
    std::fs::write(d.join("known_hosts"), known.join("\n") + "\n").unwrap();
    let mut conf = String::new();
    for (alias, port, dir) in hosts {
        std::fs::create_dir_all(dir.join("cache")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let _ = write!(
            conf,
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n  SetEnv XDG_CACHE_HOME={c} TMPDIR={t}\n",
            d = d.display(),
            c = dir.join("cache").display(),
            t = dir.join("tmp").display(),
        );
    }
    let path = d.join("ssh_config");
    std::fs::write(&path, conf).unwrap();
    path
}

/// A manifest in `site/`, reading a template from `../common` and a
/// file beside it; each host's files go under `{DIR}/host-NAME`.
fn site(e: &Env) -> PathBuf {
    let d = e.path();
    std::fs::create_dir_all(d.join("site/files")).unwrap();
    std::fs::create_dir_all(d.join("common")).unwrap();
    std::fs::write(
        d.join("common/motd.j2"),
        "Welcome to {{ host }}, port {{ port }}\n",
    )
    .unwrap();
    std::fs::write(d.join("site/files/issue"), "Authorised use only\n").unwrap();
    let m = r#"[vars]
port = 22

[hosts.a]
vars = { root = "{DIR}/host-a" }

[hosts.b]
vars = { root = "{DIR}/host-b", port = 2222 }

[hosts.c]
vars = { root = "{DIR}/host-c" }

# `@pair`: its hosts by their ssh alias; ha is a, by another name.
[host_groups.pair]
hosts = ["ha"]

[hosts.ha]
vars = { root = "{DIR}/host-a" }

[[directory]]
path = "{{ root }}"

[[file]]
path = "{{ root }}/motd"
template = "../common/motd.j2"

[[file]]
path = "{{ root }}/issue"
source = "files/issue"
mode = "0640"
"#
    .replace("{DIR}", &d.display().to_string());
    let path = d.join("site/site.toml");
    std::fs::write(&path, m).unwrap();
    path
}

fn push(e: &Env, cfg: &Path, manifest: &Path, hosts: &[&str], extra: &[&str]) -> Run {
    let ssh = format!("ssh -F {}", cfg.display());
    let mut args = vec![
        "converge",
        "push",
        manifest.to_str().unwrap(),
        "--ssh",
        &ssh,
    ];
    args.extend_from_slice(hosts);
    args.extend_from_slice(extra);
    e.run(&args)
}

fn push_json(e: &Env, cfg: &Path, manifest: &Path, hosts: &[&str], extra: &[&str]) -> (i32, Value) {
    let mut extra = extra.to_vec();
    extra.push("--json");
    let r = push(e, cfg, manifest, hosts, &extra);
    let v = serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"));
    (r.code, v)
}

/// Each host's `(result, copied)`, by name.
fn results(v: &Value) -> Vec<(String, String, bool)> {
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_owned(),
                h["result"].as_str().unwrap().to_owned(),
                h["copied"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn host<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap()
}

/// The `vigie-*` files of a host's cache (the binaries vigie put there).
fn cached(dir: &Path) -> Vec<PathBuf> {
    let bin = dir.join("cache/vigie/bin");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&bin)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
#[allow(clippy::too_many_lines)] // one story on the same two sshds: audit, enforce, drift, a host down
fn push_audits_then_repairs_two_hosts_over_ssh_and_copies_vigie_once() {
    require!(Need::Sshd);
    let e = env();
    let client = Client::new();
    let (sa, sb) = (
        Sshd::start(&client.public_key()),
        Sshd::start(&client.public_key()),
    );
    let (da, db, dc) = (e.path().join("a"), e.path().join("b"), e.path().join("c"));
    let cfg = ssh_config(
        &client,
        &[
            ("ha", sa.port, &da),
            ("hb", sb.port, &db),
            ("down", free_port(), &dc),
        ],
        &[&sa, &sb],
    );
    let m = site(&e);
    // An older vigie in a's cache: replaced, and removed.
    std::fs::create_dir_all(da.join("cache/vigie/bin")).unwrap();
    std::fs::write(da.join("cache/vigie/bin/vigie-0.0.1-000000000000"), "old").unwrap();
    let hosts = ["a=ha", "b=hb"];

    // Audit: vigie is copied to both, drift is reported, nothing written.
    let (code, v) = push_json(&e, &cfg, &m, &hosts, &["--audit"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        results(&v),
        [
            ("a".into(), "drift".into(), true),
            ("b".into(), "drift".into(), true)
        ]
    );
    let statuses: Vec<&str> = host(&v, "a")["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["non-compliant"; 3], "{v:#}");
    assert_eq!(host(&v, "a")["summary"]["non_compliant"], 3);
    assert!(!e.path().join("host-a").exists() && !e.path().join("host-b").exists());
    for d in [&da, &db] {
        let bins = cached(d);
        assert_eq!(bins.len(), 1, "{bins:?}");
        let name = bins[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("vigie-") && name != "vigie-0.0.1-000000000000",
            "{name}"
        );
        assert_eq!(
            std::fs::metadata(&bins[0]).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // The bundle's directory is gone.
        assert!(
            empty(&d.join("tmp")),
            "{:?}",
            std::fs::read_dir(d.join("tmp"))
                .unwrap()
                .collect::<Vec<_>>()
        );
    }
    let inode = std::fs::metadata(&cached(&da)[0]).unwrap().ino();

    // Enforce: repaired, with each host's own values; vigie not copied
    // again. Lines are prefixed by their host, a summary ends the run.
    let r = push(&e, &cfg, &m, &hosts, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_has(&r.stdout, "a  repaired");
    assert_has(&r.stdout, "b  repaired");
    assert_has(&r.stdout, "enforce on 2 hosts:");
    assert!(
        !r.stdout.contains("vigie copied") && !r.stderr.contains("vigie copied"),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(e.path().join("host-a/motd")).unwrap(),
        "Welcome to a, port 22\n"
    );
    assert_eq!(
        std::fs::read_to_string(e.path().join("host-b/motd")).unwrap(),
        "Welcome to b, port 2222\n"
    );
    let issue = e.path().join("host-b/issue");
    assert_eq!(
        std::fs::read_to_string(&issue).unwrap(),
        "Authorised use only\n"
    );
    assert_eq!(
        std::fs::metadata(&issue).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(std::fs::metadata(&cached(&da)[0]).unwrap().ino(), inode);

    // The host changes: an audit reports it on that host alone, and
    // leaves it. b's vigie is broken: copied again. c answers nobody:
    // an error for c alone.
    std::fs::write(e.path().join("host-a/motd"), "hacked\n").unwrap();
    std::fs::write(&cached(&db)[0], "#!/bin/sh\necho broken\n").unwrap();
    let (code, v) = push_json(
        &e,
        &cfg,
        &m,
        &["a=ha", "b=hb", "c=down"],
        &["--audit", "--diff", "--forks", "1"],
    );
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(
        results(&v),
        [
            ("a".into(), "drift".into(), false),
            ("b".into(), "ok".into(), true),
            ("c".into(), "error".into(), false)
        ]
    );
    assert_has(
        host(&v, "c")["error"].as_str().unwrap(),
        "cannot reach down through ssh",
    );
    let motd = &host(&v, "a")["resources"][1];
    assert_eq!(motd["status"], "non-compliant");
    assert_has(motd["diff"].as_str().unwrap(), "+Welcome to a, port 22");
    assert_eq!(
        std::fs::read_to_string(e.path().join("host-a/motd")).unwrap(),
        "hacked\n"
    );
    assert_eq!(host(&v, "b")["summary"]["compliant"], 3);

    // Without c: exit 1 for a's drift alone; an enforce run repairs it.
    let (code, _) = push_json(&e, &cfg, &m, &hosts, &["--audit"]);
    assert_eq!(code, 1);
    let (code, v) = push_json(&e, &cfg, &m, &hosts, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(host(&v, "a")["summary"]["repaired"], 1);
    assert_eq!(host(&v, "b")["summary"]["compliant"], 3);
    assert_eq!(
        std::fs::read_to_string(e.path().join("host-a/motd")).unwrap(),
        "Welcome to a, port 22\n"
    );

    // A host group's hosts, named by their destination: ha is a's
    // place under another name, which its motd would say.
    let (code, v) = push_json(&e, &cfg, &m, &["@pair"], &["--audit"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(results(&v), [("ha".into(), "drift".into(), false)]);
    assert_eq!(host(&v, "ha")["summary"]["non_compliant"], 1);
    assert_has(
        host(&v, "ha")["resources"][1]["diff"].as_str().unwrap(),
        "+Welcome to ha, port 22",
    );
    let r = push(&e, &cfg, &m, &["@nope"], &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_has(&r.stderr, "no [host_groups.nope]");
    assert_has(&r.stderr, "(groups: pair)");

    // A manifest that reads a file by its absolute path cannot be sent:
    // refused before anything runs there.
    let abs = e.write(
        "site/abs.toml",
        &format!(
            "[[file]]\npath = \"{}/host-a/x\"\nsource = \"{}\"\n",
            e.path().display(),
            m.display()
        ),
    );
    let r = push(&e, &cfg, &abs, &["a=ha"], &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_has(&r.stdout, "absolute path");
    assert!(!e.path().join("host-a/x").exists());
}

/// A bundle written by hand (the format of `vigie_converge::bundle`),
/// its manifest `m.toml`, with `extra` bytes of entries before its end.
fn forged(extra: &[u8]) -> Vec<u8> {
    let mut b = b"vigie-bundle 1\n".to_vec();
    let head = br#"{"manifest":"m.toml","host":"x","audit":false,"tags":[],"skip_tags":[]}"#;
    b.extend_from_slice(&u32::try_from(head.len()).unwrap().to_be_bytes());
    b.extend_from_slice(head);
    b.extend_from_slice(b"F\x00\x06m.toml");
    b.extend_from_slice(&0u64.to_be_bytes());
    b.extend_from_slice(extra);
    b.push(b'E');
    b
}

fn entry(kind: u8, path: &str, size: u64, data: &[u8]) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(&u16::try_from(path.len()).unwrap().to_be_bytes());
    b.extend_from_slice(path.as_bytes());
    if kind == b'L' {
        b.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    } else {
        b.extend_from_slice(&size.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn the_receiving_side_refuses_a_forged_bundle() {
    let e = env();
    let tmp = e.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let receive = |bytes: &[u8]| -> Run {
        let mut c = e.cmd(&["converge", "receive"]);
        c.env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The receiver may stop reading once it refuses.
        let _ = stdin.write_all(bytes);
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let escape = e.path().join("escaped");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (entry(b'F', "../escaped", 5, b"pwned"), "climb out"),
        (entry(b'F', "a/../../../escaped", 5, b"pwned"), "climb out"),
        (
            entry(b'F', &escape.display().to_string(), 5, b"pwned"),
            "an absolute path",
        ),
        (
            entry(b'L', "link", 0, escape.to_str().unwrap().as_bytes()),
            "symbolic link",
        ),
        (entry(b'F', "big", 1 << 40, b""), "past its limit"),
    ];
    for (extra, says) in cases {
        let r = receive(&forged(&extra));
        assert_eq!(r.code, 3, "{says}: {r:?}");
        assert_has(&r.stderr, "the bundle is refused");
        assert_has(&r.stderr, says);
        // The facts, and no resource.
        assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
        assert_has(&r.stdout, r#"{"facts":{"#);
        assert!(!escape.exists(), "{says}");
        // Its private directory is removed, refused or not.
        assert!(empty(&tmp), "{says}");
    }
    // A truncated bundle (a broken connection) runs nothing.
    let whole = forged(&[]);
    let r = receive(&whole[..whole.len() - 3]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_has(&r.stderr, "ends early");
    // A well-formed one runs, and says each resource as a line.
    let m = format!(
        "[[file]]\npath = \"{}/ok\"\ncontent = \"x\"\n",
        e.path().display()
    );
    let mut b = b"vigie-bundle 1\n".to_vec();
    let head = br#"{"manifest":"m.toml","host":"x","audit":false,"tags":[],"skip_tags":[]}"#;
    b.extend_from_slice(&u32::try_from(head.len()).unwrap().to_be_bytes());
    b.extend_from_slice(head);
    b.extend_from_slice(&entry(b'F', "m.toml", m.len() as u64, m.as_bytes()));
    b.push(b'E');
    let r = receive(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(lines[0]["facts"]["hostname"].is_string(), "{r:?}");
    assert_eq!(lines[1]["resource"]["status"], "repaired");
    assert_eq!(lines[2]["done"]["summary"]["repaired"], 1);
    assert!(e.path().join("ok").exists());
    assert!(empty(&tmp));
}
