//! A systemd service: enabled at boot, running now. `root = DIR` acts
//! on the unit files of an image (`systemctl --root`), which works
//! where systemd does not run; `running` needs systemd as PID 1, and
//! says so where it is not.

use std::path::PathBuf;

use super::{Drift, Res, State};
use crate::sys::{self, Cmd};
use crate::write::Writer;

#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub name: String,
    pub enabled: Option<bool>,
    pub running: Option<bool>,
    pub root: Option<PathBuf>,
}

impl ServiceSpec {
    fn systemctl(&self, args: &[&str]) -> Cmd {
        let mut argv: Vec<String> = vec!["systemctl".into()];
        if let Some(root) = &self.root {
            argv.push(format!("--root={}", root.display()));
        }
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        argv.push("--".into());
        argv.push(self.name.clone());
        Cmd::new(&argv)
    }

    fn enabled_now(&self) -> Res<bool> {
        let out = sys::probe(&self.systemctl(&["is-enabled"])).map_err(|e| e.to_string())?;
        let state = out.stdout.trim();
        match state {
            "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated" => {
                Ok(true)
            }
            "disabled" | "masked" | "masked-runtime" | "linked" | "linked-runtime" => Ok(false),
            _ => Err(format!(
                "systemctl is-enabled {}: {}",
                self.name,
                if state.is_empty() {
                    out.failure()
                } else {
                    state.to_owned()
                }
            )),
        }
    }

    fn running_now(&self) -> Res<bool> {
        if self.root.is_some() {
            return Err("`running` cannot be checked under `root` (an image runs nothing)".into());
        }
        if !std::path::Path::new("/run/systemd/system").exists() {
            return Err(
                "systemd is not running on this host (no /run/systemd/system): \
                 `running` cannot be checked; declare only `enabled`"
                    .into(),
            );
        }
        let out = sys::probe(&self.systemctl(&["is-active"])).map_err(|e| e.to_string())?;
        Ok(out.stdout.trim() == "active")
    }

    /// The command that restarts it (a notification at the end of a run).
    pub fn restart(name: &str) -> Cmd {
        Cmd::new(&["systemctl", "restart", "--", name])
    }
}

impl State for ServiceSpec {
    fn drift(&self) -> Res<Drift> {
        let mut d = Drift::none();
        if let Some(want) = self.enabled {
            let now = self.enabled_now()?;
            if now != want {
                d.add(if want {
                    "disabled, declared enabled"
                } else {
                    "enabled, declared disabled"
                });
            }
        }
        if let Some(want) = self.running {
            let now = self.running_now()?;
            if now != want {
                d.add(if want {
                    "stopped, declared running"
                } else {
                    "running, declared stopped"
                });
            }
        }
        Ok(d)
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        if let Some(want) = self.enabled
            && self.enabled_now()? != want
        {
            let verb = if want { "enable" } else { "disable" };
            w.run_ok(&self.systemctl(&[verb]))
                .map_err(|e| e.to_string())?;
        }
        if let Some(want) = self.running
            && self.running_now()? != want
        {
            let verb = if want { "start" } else { "stop" };
            w.run_ok(&self.systemctl(&[verb]))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
