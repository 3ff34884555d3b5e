//! A Debian package, asked of `dpkg-query` and changed with `apt-get`
//! (non-interactive, old conffiles kept, waiting for dpkg's lock rather
//! than failing on it). `deb = PATH` installs that file (apt still
//! resolves its dependencies).

use std::path::PathBuf;

use super::{Drift, Res, State};
use crate::sys::{self, Cmd};
use crate::write::Writer;

#[derive(Clone, Debug)]
pub struct PackageSpec {
    pub name: String,
    pub present: bool,
    pub version: Option<String>,
    pub deb: Option<PathBuf>,
}

/// What dpkg says: installed (and its version) or not.
fn installed(name: &str) -> Res<Option<String>> {
    let out = sys::probe(&Cmd::new(&[
        "dpkg-query",
        "-W",
        "-f=${db:Status-Abbrev}|${Version}",
        "--",
        name,
    ]))
    .map_err(|e| e.to_string())?;
    if !out.success() {
        // dpkg-query exits 1 for a package it has never seen.
        return Ok(None);
    }
    let (status, version) = out.stdout.split_once('|').unwrap_or((&out.stdout, ""));
    // `ii `: wanted and installed; the second letter is the state.
    Ok((status.as_bytes().get(1) == Some(&b'i')).then(|| version.trim().to_owned()))
}

fn apt(args: &[&str]) -> Cmd {
    let mut argv = vec![
        "apt-get",
        "-y",
        "-q",
        "-o",
        "DPkg::Lock::Timeout=300",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    argv.extend_from_slice(args);
    Cmd::new(&argv)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("APT_LISTCHANGES_FRONTEND", "none")
}

impl State for PackageSpec {
    fn drift(&self) -> Res<Drift> {
        let now = installed(&self.name)?;
        Ok(match (now, self.present) {
            (None, true) => Drift::one(format!("package {} not installed", self.name)),
            (None, false) => Drift::none(),
            (Some(v), false) => Drift::one(format!(
                "package {} {v} installed, declared absent",
                self.name
            )),
            (Some(v), true) => match &self.version {
                Some(want) if &v != want => Drift::one(format!(
                    "package {} {v} installed, declared {want}",
                    self.name
                )),
                _ => Drift::none(),
            },
        })
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        let target = match (&self.deb, &self.version) {
            (Some(deb), _) => deb.display().to_string(),
            (None, Some(v)) => format!("{}={v}", self.name),
            (None, None) => self.name.clone(),
        };
        let cmd = if self.present {
            apt(&[
                "install",
                "--no-install-recommends",
                "--allow-downgrades",
                "--",
                &target,
            ])
        } else {
            apt(&["remove", "--", &self.name])
        };
        w.run_ok(&cmd).map(|_| ()).map_err(|e| e.to_string())
    }
}
