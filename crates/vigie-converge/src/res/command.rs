//! A command with guards: `creates` (a path that, once there, means it
//! ran) and `unless` (a program whose exit 0 means it need not run).
//! Guards are checks: they run in audit mode too, so they must only
//! read. A command without a guard runs on every enforce run (and is
//! reported non-compliant by every audit).

use std::path::PathBuf;

use super::{Drift, Res, State};
use crate::sys::{self, Cmd};
use crate::write::Writer;

#[derive(Clone, Debug)]
pub struct CommandSpec {
    pub cmd: Cmd,
    pub creates: Option<PathBuf>,
    pub unless: Option<Cmd>,
}

impl State for CommandSpec {
    fn drift(&self) -> Res<Drift> {
        if let Some(path) = &self.creates
            && sys::meta_opt(path).map_err(|e| e.to_string())?.is_some()
        {
            return Ok(Drift::none());
        }
        if let Some(guard) = &self.unless {
            let out = sys::probe(guard).map_err(|e| e.to_string())?;
            if out.success() {
                return Ok(Drift::none());
            }
        }
        let why = match (&self.creates, &self.unless) {
            (Some(p), _) => format!("{} missing: `{}` to run", p.display(), self.cmd.display()),
            (None, Some(_)) => format!("`unless` failed: `{}` to run", self.cmd.display()),
            (None, None) => format!("no guard: `{}` runs every time", self.cmd.display()),
        };
        Ok(Drift::one(why))
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        w.run_ok(&self.cmd).map(|_| ()).map_err(|e| e.to_string())
    }

    fn recheck(&self) -> bool {
        self.creates.is_some() || self.unless.is_some()
    }
}
