//! A kernel parameter: its value now (`/proc/sys`) and after a reboot
//! (a file of its own in `/etc/sysctl.d`, which `systemd-sysctl` and
//! `sysctl --system` read).

use std::path::PathBuf;

use super::{Drift, Res, State};
use crate::sys;
use crate::write::{KeepOld, Meta, Writer};

#[derive(Clone, Debug)]
pub struct SysctlSpec {
    /// `vm.swappiness`.
    pub key: String,
    pub value: String,
    /// The file that keeps it across reboots; `None`: the value now only.
    pub persist: Option<PathBuf>,
}

/// Values compare as the kernel prints them: fields separated by
/// single spaces (`net.ipv4.ip_local_port_range = "32768\t60999"`).
fn normal(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SysctlSpec {
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from("/proc/sys").join(self.key.replace('.', "/"))
    }

    fn persisted(&self) -> String {
        format!(
            "# Managed by vigie converge: edits are overwritten.\n{} = {}\n",
            self.key,
            normal(&self.value)
        )
    }
}

impl State for SysctlSpec {
    fn drift(&self) -> Res<Drift> {
        let path = self.proc_path();
        let now = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (is `{}` a kernel parameter here?)",
                path.display(),
                self.key
            )
        })?;
        let mut d = Drift::none();
        if normal(&now) != normal(&self.value) {
            d.add(format!(
                "{} is {}, declared {}",
                self.key,
                normal(&now),
                normal(&self.value)
            ));
        }
        if let Some(file) = &self.persist {
            let now = sys::read_opt(file).map_err(|e| e.to_string())?;
            if now.as_deref() != Some(self.persisted().as_bytes()) {
                d.add(format!("{} not persisted in {}", self.key, file.display()));
            }
        }
        Ok(d)
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        let path = self.proc_path();
        let now = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        if normal(&now) != normal(&self.value) {
            w.write_kernel(&path, &normal(&self.value))
                .map_err(|e| e.to_string())?;
        }
        if let Some(file) = &self.persist {
            let meta = Meta {
                mode: 0o644,
                uid: None,
                gid: None,
            };
            w.write_file(file, self.persisted().as_bytes(), meta, &KeepOld::No)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
