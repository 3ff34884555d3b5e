//! Failed systemd units (collector `systemd`), where systemd is PID 1.
//!
//! node_exporter asks systemd over D-Bus for every unit; vigie asks
//! `systemctl` (the program, [`FAILED_UNITS`]) for the failed ones only,
//! and gives them under node_exporter's names:
//! `node_systemd_unit_state{name, state="failed", type=""}` 1 per failed
//! unit (`type`, the service's `Type=`, would take a D-Bus call per unit:
//! it is left empty), and `node_systemd_units{state="failed"}`, their
//! count. Units in other states are not listed. This crate runs no
//! program: the caller runs [`FAILED_UNITS`] bounded in time (vigie-web
//! does, through vigie-net's command runner) and hands its output to
//! [`samples`].

use std::path::Path;

use crate::{Kind, Sample};

/// The command that lists failed units, one per line:
/// `UNIT LOAD ACTIVE SUB DESCRIPTION…`.
pub const FAILED_UNITS: [&str; 6] = [
    "systemctl",
    "list-units",
    "--state=failed",
    "--plain",
    "--no-legend",
    "--full",
];

/// Whether systemd manages this host (sd_booted(3)'s test).
pub fn running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The failed units named in `systemctl list-units`' output.
pub fn parse(output: &str) -> Result<Vec<&str>, String> {
    let mut units = Vec::new();
    for line in output.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(mut unit) = fields.next() else {
            continue;
        };
        // Some versions mark failed units with a bullet even when plain.
        if unit == "●" || unit == "*" {
            let Some(u) = fields.next() else { continue };
            unit = u;
        }
        let (Some(_load), Some(active)) = (fields.next(), fields.next()) else {
            return Err(format!(
                "line `{line}` is not `UNIT LOAD ACTIVE SUB DESCRIPTION`"
            ));
        };
        if !unit.contains('.') {
            return Err(format!("`{unit}` is not a unit name (NAME.TYPE)"));
        }
        if active == "failed" {
            units.push(unit);
        }
    }
    Ok(units)
}

/// The samples of `units`, the failed ones.
pub fn samples(units: &[&str], out: &mut Vec<Sample>) {
    for unit in units {
        out.push(Sample::labelled(
            "node_systemd_unit_state",
            Kind::Gauge,
            "Systemd unit",
            vec![
                ("name", (*unit).to_owned()),
                ("state", "failed".to_owned()),
                ("type", String::new()),
            ],
            1.0,
        ));
    }
    out.push(Sample::labelled(
        "node_systemd_units",
        Kind::Gauge,
        "Summary of systemd unit states",
        vec![("state", "failed".to_owned())],
        units.len() as f64,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::read;

    #[test]
    fn failed_units_of_systemctls_output() {
        let text = read("systemctl-failed");
        let units = parse(&text).unwrap();
        assert_eq!(
            units,
            [
                "backup-nightly.service",
                "mnt-nas.mount",
                "user@1000.service",
                "weird\\x2dname.socket"
            ]
        );
        let mut out = Vec::new();
        samples(&units, &mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].label("name"), Some("backup-nightly.service"));
        assert_eq!(out[0].label("state"), Some("failed"));
        assert_eq!(out[0].label("type"), Some(""));
        assert_eq!(out[4].name, "node_systemd_units");
        assert_eq!(out[4].value, 4.0);
    }

    #[test]
    fn none_failed_is_a_zero_not_a_gap() {
        let mut out = Vec::new();
        samples(&parse("").unwrap(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, 0.0);
    }

    #[test]
    fn other_output_is_refused() {
        let e = parse("Failed to connect to bus: No such file or directory\n").unwrap_err();
        assert!(e.contains("is not a unit name"), "{e}");
        let e = parse("x.service loaded\n").unwrap_err();
        assert!(e.contains("is not `UNIT LOAD ACTIVE"), "{e}");
    }
}
