//! The systemd unit the Debian package ships
//! (`contrib/systemd/vigie.service`): systemd's own checker accepts it.
//! `systemd-analyze verify` parses offline; nothing here starts systemd.
//! `scripts/check-deb` verifies it again as installed.

use std::process::Command;

use vigie_testkit::{Need, require};

use crate::util::{bin, env};

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
