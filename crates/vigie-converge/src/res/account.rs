//! Users and groups, read from `/etc/passwd` and `/etc/group` and
//! changed with Debian's own `useradd`, `usermod`, `userdel`,
//! `groupadd`, `groupmod` and `groupdel` (which lock the files, keep
//! the shadow files in step and run the distribution's hooks). A user's
//! `authorized_keys` is a file of its own, owned by the user, 0600 in a
//! 0700 `~/.ssh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::file::{FileSpec, Perms};
use super::{Drift, Res, State};
use crate::sys::{self, Cmd};
use crate::write::{KeepOld, Meta, Writer};

#[derive(Clone, Debug)]
pub struct UserSpec {
    pub name: String,
    pub present: bool,
    pub uid: Option<u32>,
    /// The primary group.
    pub group: Option<String>,
    /// Supplementary groups, exactly (others are left).
    pub groups: Option<Vec<String>>,
    pub shell: Option<String>,
    pub home: Option<String>,
    pub system: bool,
    pub create_home: bool,
    /// The whole `~/.ssh/authorized_keys`, one key a line.
    pub authorized_keys: Option<Vec<String>>,
}

impl UserSpec {
    fn keys_file(&self, home: &str) -> Option<FileSpec> {
        let keys = self.authorized_keys.as_ref()?;
        let mut content = keys.join("\n");
        if !content.is_empty() {
            content.push('\n');
        }
        Some(FileSpec {
            path: Path::new(home).join(".ssh/authorized_keys"),
            content: Some(content.into_bytes()),
            present: true,
            perms: Perms {
                mode: Some(0o600),
                owner: Some(self.name.clone()),
                group: None,
            },
            keep: KeepOld::Beside,
            sensitive: false,
        })
    }

    fn supplementary(&self) -> Res<BTreeSet<String>> {
        Ok(sys::groups()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|g| g.members.iter().any(|m| m == &self.name))
            .map(|g| g.name)
            .collect())
    }

    fn account_drift(&self, u: &sys::Passwd) -> Res<Vec<(String, Vec<String>)>> {
        // Each difference with the usermod arguments that repair it.
        let mut out = Vec::new();
        if let Some(uid) = self.uid
            && u.uid != uid
        {
            out.push((
                format!("uid {}, declared {uid}", u.uid),
                vec!["-u".into(), uid.to_string()],
            ));
        }
        if let Some(group) = &self.group {
            // A group not made yet is drift (usermod then says why).
            if sys::gid_of(group).ok() != Some(u.gid) {
                out.push((
                    format!("primary group {}, declared {group}", sys::group_name(u.gid)),
                    vec!["-g".into(), group.clone()],
                ));
            }
        }
        if let Some(groups) = &self.groups {
            let want: BTreeSet<String> = groups.iter().cloned().collect();
            let now = self.supplementary()?;
            if now != want {
                let show = |s: &BTreeSet<String>| {
                    if s.is_empty() {
                        "none".to_owned()
                    } else {
                        s.iter().cloned().collect::<Vec<_>>().join(",")
                    }
                };
                out.push((
                    format!("groups {}, declared {}", show(&now), show(&want)),
                    vec!["-G".into(), groups.join(",")],
                ));
            }
        }
        if let Some(shell) = &self.shell
            && &u.shell != shell
        {
            out.push((
                format!("shell {}, declared {shell}", u.shell),
                vec!["-s".into(), shell.clone()],
            ));
        }
        if let Some(home) = &self.home
            && &u.home != home
        {
            out.push((
                format!("home {}, declared {home}", u.home),
                vec!["-d".into(), home.clone()],
            ));
        }
        Ok(out)
    }

    fn useradd(&self) -> Cmd {
        let mut argv: Vec<String> = vec!["useradd".into()];
        if let Some(uid) = self.uid {
            argv.extend(["-u".into(), uid.to_string()]);
        }
        if let Some(g) = &self.group {
            argv.extend(["-g".into(), g.clone()]);
        }
        if let Some(gs) = self.groups.as_ref().filter(|g| !g.is_empty()) {
            argv.extend(["-G".into(), gs.join(",")]);
        }
        if let Some(s) = &self.shell {
            argv.extend(["-s".into(), s.clone()]);
        }
        if let Some(h) = &self.home {
            argv.extend(["-d".into(), h.clone()]);
        }
        argv.push(if self.create_home { "-m" } else { "-M" }.into());
        if self.system {
            argv.push("-r".into());
        }
        argv.extend(["--".into(), self.name.clone()]);
        Cmd::new(&argv)
    }
}

impl State for UserSpec {
    fn drift(&self) -> Res<Drift> {
        let u = sys::user(&self.name).map_err(|e| e.to_string())?;
        let Some(u) = u else {
            return Ok(if self.present {
                Drift::one(format!("user {} missing", self.name))
            } else {
                Drift::none()
            });
        };
        if !self.present {
            return Ok(Drift::one(format!(
                "user {} exists, declared absent",
                self.name
            )));
        }
        let mut d = Drift::none();
        for (change, _) in self.account_drift(&u)? {
            d.add(change);
        }
        let home = self.home.clone().unwrap_or_else(|| u.home.clone());
        if let Some(keys) = self.keys_file(&home) {
            // Before the account is right (its group, its home), the keys'
            // owner may not resolve yet: the account's drift says enough.
            if d.is_none() {
                let kd = keys.drift()?;
                for c in kd.changes {
                    d.add(format!("authorized_keys: {c}"));
                }
                d.diff = kd.diff;
            }
        }
        Ok(d)
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        let u = sys::user(&self.name).map_err(|e| e.to_string())?;
        if !self.present {
            return w
                .run_ok(&Cmd::new(&["userdel", "--", &self.name]))
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        let u = match u {
            None => {
                w.run_ok(&self.useradd()).map_err(|e| e.to_string())?;
                sys::user(&self.name)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!("useradd succeeded but {} is not in /etc/passwd", self.name)
                    })?
            }
            Some(u) => {
                let mut args: Vec<String> = vec!["usermod".into()];
                for (_, a) in self.account_drift(&u)? {
                    args.extend(a);
                }
                if args.len() > 1 {
                    args.extend(["--".into(), self.name.clone()]);
                    w.run_ok(&Cmd::new(&args)).map_err(|e| e.to_string())?;
                }
                sys::user(&self.name)
                    .map_err(|e| e.to_string())?
                    .unwrap_or(u)
            }
        };
        if let Some(keys) = self.keys_file(&u.home) {
            let ssh = PathBuf::from(&u.home).join(".ssh");
            let meta = Meta {
                mode: 0o700,
                uid: Some(u.uid),
                gid: Some(u.gid),
            };
            match sys::meta_opt(&ssh).map_err(|e| e.to_string())? {
                Some(m) if m.file_type().is_symlink() => {
                    return Err(format!("{} is a symbolic link: refused", ssh.display()));
                }
                Some(_) => w.set_meta(&ssh, meta).map_err(|e| e.to_string())?,
                None => w.make_dir(&ssh, meta).map_err(|e| e.to_string())?,
            }
            let kd = keys.drift()?;
            if !kd.is_none() {
                keys.fix(w, &kd)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub name: String,
    pub present: bool,
    pub gid: Option<u32>,
    pub system: bool,
}

impl State for GroupSpec {
    fn drift(&self) -> Res<Drift> {
        let g = sys::group(&self.name).map_err(|e| e.to_string())?;
        Ok(match (g, self.present) {
            (None, true) => Drift::one(format!("group {} missing", self.name)),
            (None, false) => Drift::none(),
            (Some(_), false) => Drift::one(format!("group {} exists, declared absent", self.name)),
            (Some(g), true) => match self.gid {
                Some(gid) if g.gid != gid => Drift::one(format!("gid {}, declared {gid}", g.gid)),
                _ => Drift::none(),
            },
        })
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        let g = sys::group(&self.name).map_err(|e| e.to_string())?;
        let mut argv: Vec<String> = Vec::new();
        match (g, self.present) {
            (_, false) => argv.push("groupdel".into()),
            (None, true) => {
                argv.push("groupadd".into());
                if self.system {
                    argv.push("-r".into());
                }
                if let Some(gid) = self.gid {
                    argv.extend(["-g".into(), gid.to_string()]);
                }
            }
            (Some(_), true) => {
                argv.push("groupmod".into());
                if let Some(gid) = self.gid {
                    argv.extend(["-g".into(), gid.to_string()]);
                }
            }
        }
        argv.extend(["--".into(), self.name.clone()]);
        w.run_ok(&Cmd::new(&argv))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
