//! The systemd unit the Debian package ships
//! (`contrib/systemd/vigie.service`): systemd's own checker accepts it.
//! `systemd-analyze verify` parses offline; nothing here starts systemd.
//! `scripts/check-deb` verifies it again as installed, and
//! `scripts/check-deb-systemd` runs it under a real systemd in a
//! container. Here, the daemon's side of `Type=notify`: what it says on
//! the socket `$NOTIFY_SOCKET` names, a socket the test binds.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use vigie_testkit::{Need, check, require};

use crate::util::{SERVER, bin, env, wait_state};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../contrib/systemd/vigie.service"
);

/// The unit as shipped, but running the binary under test (the package's
/// /usr/bin/vigie is not installed here) and without the man pages of
/// Documentation= (nor are they).
fn unit_here() -> String {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/vigie run -c /etc/vigie/vigie.toml\n"),
        "{unit}"
    );
    unit.lines()
        .filter(|l| !l.starts_with("Documentation="))
        .map(|l| l.replace("/usr/bin/vigie", bin()) + "\n")
        .collect()
}

fn verify(unit: &str) -> (bool, String) {
    let e = env();
    let path = e.path().join("vigie.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    require!(Need::SystemdAnalyze);
    let (ok, text) = verify(&unit_here());
    assert!(ok, "{text}");
    // Warnings about the unit (an unknown key, a bad value) still exit 0.
    assert!(!text.contains("vigie"), "{text}");
}

/// The test above can fail: a misspelt hardening key is reported.
#[test]
fn systemd_analyze_verify_reports_a_bad_key_in_the_unit() {
    require!(Need::SystemdAnalyze);
    let unit = unit_here().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes");
    let (_, text) = verify(&unit);
    assert!(text.contains("NoNewPrivilege"), "{text}");
}

/// The next datagram on `socket`, as text.
fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a message from vigie run within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_daemon_tells_systemd_ready_reloading_and_stopping() {
    let e = env();
    let sock = e.path().join("notify");
    let systemd = UnixDatagram::bind(&sock).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The check passes only if vigie's children do not inherit the
    // socket: a child that speaks the protocol would talk for vigie.
    let inherits = check(
        "no-notify-socket",
        r#"command = { argv = ["/bin/sh", "-c", "test -z \"$NOTIFY_SOCKET\""] }"#,
        "every = \"100ms\"",
    );
    e.config(&format!("{SERVER}{inherits}"));
    let mut d = e.daemon_with(|c| {
        c.env("NOTIFY_SOCKET", &sock);
    });
    let ready = next_message(&systemd);
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=1 check, API on {}\n", d.addr),
        "{}",
        d.log()
    );
    wait_state(&d, "no-notify-socket", "ok", Duration::from_secs(5));

    // A reload: RELOADING=1, then READY=1 once the new checks run.
    let two = check("two", "load = { max_load1 = 10000.0 }", "every = \"100ms\"");
    e.config(&format!("{SERVER}{inherits}{two}"));
    d.signal(Signal::HUP);
    assert_eq!(
        next_message(&systemd),
        "RELOADING=1\nSTATUS=reloading the configuration\n"
    );
    assert_eq!(
        next_message(&systemd),
        format!("READY=1\nSTATUS=2 checks, API on {}\n", d.addr)
    );
    // A broken one: still READY=1 (the running configuration is kept),
    // and the status says so.
    e.config(&format!(
        "{SERVER}[[check]]\nname = \"bad\"\nmemroy = {{}}\n"
    ));
    d.signal(Signal::HUP);
    assert_eq!(
        next_message(&systemd),
        "RELOADING=1\nSTATUS=reloading the configuration\n"
    );
    assert_eq!(
        next_message(&systemd),
        format!(
            "READY=1\nSTATUS=2 checks, API on {}; the new configuration is invalid\n",
            d.addr
        )
    );

    d.signal(Signal::TERM);
    assert_eq!(next_message(&systemd), "STOPPING=1\nSTATUS=shutting down\n");
    let (code, _) = d.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", d.log());
}

/// A configuration with errors exits 2 before any READY=1: under
/// `Type=notify` the start fails at once, and `RestartPreventExitStatus=2`
/// keeps systemd from trying again.
#[test]
fn a_bad_configuration_exits_2_without_telling_systemd_ready() {
    let e = env();
    let sock = e.path().join("notify");
    let systemd = UnixDatagram::bind(&sock).unwrap();
    systemd.set_nonblocking(true).unwrap();
    e.config("[[check]]\nname = \"bad\"\nmemroy = {}\n");
    let run = e.run_cmd(e.cmd(&["run"]).env("NOTIFY_SOCKET", &sock));
    assert_eq!(run.code, 2, "{run:?}");
    let mut buf = [0u8; 64];
    match systemd.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        got => panic!(
            "{:?}",
            got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        ),
    }
}
