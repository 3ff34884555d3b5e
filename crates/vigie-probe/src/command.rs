//! The `command` and `systemd` probes: run a program, judge its exit
//! status and output. The runner (a process group of its own, killed at
//! a timeout) is `vigie_net::command`.

use tokio::process::Command;
use vigie_config::{CommandProbe, SystemdProbe};
use vigie_core::Outcome;
pub use vigie_net::command::{Leftovers, Output, capture, first_line, run_argv};

pub(crate) async fn run(spec: &CommandProbe) -> Outcome {
    let mut cmd = match (&spec.argv, &spec.shell) {
        (Some(argv), _) if !argv.is_empty() => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
        (_, Some(line)) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        _ => return Outcome::fail("no command to run"),
    };
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v.expose())));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let program = spec
        .argv
        .as_ref()
        .and_then(|a| a.first())
        .map_or("/bin/sh", String::as_str);
    let out = match capture(cmd, Leftovers::Kill).await {
        Ok(o) => o,
        Err(e) => return Outcome::fail(format!("cannot run {program}: {e}")),
    };
    let said = first_line(&out.text);
    let Some(code) = out.status else {
        return Outcome::fail(format!("killed by signal {}", out.signal.unwrap_or(0)));
    };
    let mut outcome = if !spec.expect_exit.contains(&code) {
        let detail = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        Outcome::fail(format!("exit {code}{detail}"))
    } else if let Some(needle) = spec
        .output_contains
        .as_ref()
        .filter(|n| !out.text.contains(n.as_str()))
    {
        Outcome::fail(format!(
            "exit {code} but the output does not contain {needle:?}"
        ))
    } else if let Some(re) = spec
        .output_regex
        .as_ref()
        .filter(|re| !re.0.is_match(&out.text))
    {
        Outcome::fail(format!(
            "exit {code} but the output does not match /{}/",
            re.0.as_str()
        ))
    } else if said.is_empty() {
        Outcome::ok(format!("exit {code}"))
    } else {
        Outcome::ok(said.to_owned())
    };
    outcome = outcome.with_metric("exit_code", f64::from(code));
    outcome
}

pub(crate) async fn systemd(spec: &SystemdProbe) -> Outcome {
    let mut cmd = Command::new("systemctl");
    cmd.args([
        "show",
        "--property=LoadState,ActiveState,SubState",
        "--",
        &spec.unit,
    ]);
    let out = match capture(cmd, Leftovers::Kill).await {
        Ok(o) => o,
        Err(e) => return Outcome::fail(format!("cannot run systemctl: {e}")),
    };
    if out.status != Some(0) {
        return Outcome::fail(format!("systemctl: {}", first_line(&out.text)));
    }
    judge_unit(&spec.unit, &out.text)
}

fn judge_unit(unit: &str, text: &str) -> Outcome {
    let prop = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
    };
    let (load, active, sub) = (prop("LoadState"), prop("ActiveState"), prop("SubState"));
    if load == "not-found" {
        return Outcome::fail(format!("unit {unit} not found"));
    }
    if active == "active" {
        Outcome::ok(format!("{unit} is active ({sub})")).with_metric("active", 1.0)
    } else {
        Outcome::fail(format!("{unit} is {active} ({sub})")).with_metric("active", 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_states() {
        assert!(
            judge_unit(
                "a",
                "LoadState=loaded\nActiveState=active\nSubState=running\n"
            )
            .ok
        );
        let o = judge_unit(
            "a",
            "LoadState=loaded\nActiveState=failed\nSubState=failed\n",
        );
        assert_eq!(o.message, "a is failed (failed)");
        assert_eq!(
            judge_unit("a", "LoadState=not-found\nActiveState=inactive\n").message,
            "unit a not found"
        );
    }
}
