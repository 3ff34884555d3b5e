//! A git checkout at a ref: `dest` holds `repo` checked out (detached)
//! at the commit `rev` names now — a branch or a tag, asked of the
//! repository with `git ls-remote`, or a commit. Local changes in the
//! checkout are drift, and are discarded only with `force = true`.

use std::path::PathBuf;

use super::{Drift, Res, State};
use crate::sys::{self, Cmd};
use crate::write::Writer;

#[derive(Clone, Debug)]
pub struct GitSpec {
    pub repo: String,
    pub dest: PathBuf,
    pub rev: String,
    pub force: bool,
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git ARGS` that only asks.
fn ask(args: &[&str]) -> Res<sys::Output> {
    let mut argv = vec!["git"];
    argv.extend_from_slice(args);
    sys::probe(&Cmd::new(&argv).env("GIT_TERMINAL_PROMPT", "0")).map_err(|e| e.to_string())
}

impl GitSpec {
    fn dest(&self) -> String {
        self.dest.display().to_string()
    }

    /// The commit `rev` names in `repo` now.
    fn wanted(&self) -> Res<String> {
        if is_commit(&self.rev) {
            return Ok(self.rev.to_ascii_lowercase());
        }
        let peeled = format!("{}^{{}}", self.rev);
        let out = ask(&["ls-remote", "--", &self.repo, &self.rev, &peeled])?;
        if !out.success() {
            return Err(format!("git ls-remote {}: {}", self.repo, out.failure()));
        }
        let mut found = None;
        for line in out.stdout.lines() {
            let Some((hash, name)) = line.split_once('\t') else {
                continue;
            };
            let exact = [
                format!("refs/heads/{}", self.rev),
                format!("refs/tags/{}", self.rev),
                self.rev.clone(),
            ];
            // An annotated tag's commit is on its `^{}` line.
            if name == format!("refs/tags/{}^{{}}", self.rev) {
                return Ok(hash.to_owned());
            }
            if found.is_none() && exact.iter().any(|e| e == name) {
                found = Some(hash.to_owned());
            }
        }
        found.ok_or_else(|| {
            format!(
                "`{}` is neither a branch nor a tag of {} (or write a 40-digit commit)",
                self.rev, self.repo
            )
        })
    }

    /// The checkout's commit and whether it has local changes; `None`
    /// when there is no checkout yet.
    fn now(&self) -> Res<Option<(String, bool)>> {
        let Some(m) = sys::meta_opt(&self.dest).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        if !m.is_dir()
            || sys::meta_opt(&self.dest.join(".git"))
                .map_err(|e| e.to_string())?
                .is_none()
        {
            return Err(format!(
                "{} exists and is not a git checkout: move it away, or choose another `dest`",
                self.dest()
            ));
        }
        let head = ask(&["-C", &self.dest(), "rev-parse", "HEAD"])?;
        let status = ask(&["-C", &self.dest(), "status", "--porcelain"])?;
        if !status.success() {
            return Err(format!(
                "git status in {}: {}",
                self.dest(),
                status.failure()
            ));
        }
        Ok(Some((
            head.stdout.trim().to_owned(),
            !status.stdout.trim().is_empty(),
        )))
    }
}

impl State for GitSpec {
    fn drift(&self) -> Res<Drift> {
        let wanted = self.wanted()?;
        let mut d = Drift::none();
        match self.now()? {
            None => d.add(format!(
                "not cloned; declared {} at {}",
                self.rev,
                short(&wanted)
            )),
            Some((head, dirty)) => {
                if head != wanted {
                    d.add(format!(
                        "at {}, declared {} ({})",
                        short(&head),
                        self.rev,
                        short(&wanted)
                    ));
                }
                if dirty {
                    d.add("local changes in the checkout");
                }
            }
        }
        Ok(d)
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        let wanted = self.wanted()?;
        let git = |args: &[&str]| -> Res<()> {
            let mut argv = vec!["git"];
            argv.extend_from_slice(args);
            w.run_ok(&Cmd::new(&argv).env("GIT_TERMINAL_PROMPT", "0"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let dest = self.dest();
        match self.now()? {
            None => git(&["clone", "--quiet", "--no-checkout", "--", &self.repo, &dest])?,
            Some((_, true)) if !self.force => {
                return Err(format!(
                    "local changes in {dest}: commit or discard them, or set `force = true` to discard them"
                ));
            }
            Some(_) => {
                let have = ask(&[
                    "-C",
                    &dest,
                    "cat-file",
                    "-e",
                    &format!("{wanted}^{{commit}}"),
                ])?;
                if !have.success() {
                    git(&[
                        "-C", &dest, "fetch", "--quiet", "--tags", "--", &self.repo, &self.rev,
                    ])?;
                }
            }
        }
        let mut args = vec!["-C", dest.as_str(), "checkout", "--quiet", "--detach"];
        if self.force {
            args.push("--force");
        }
        args.push(&wanted);
        git(&args)?;
        if self.force {
            git(&["-C", &dest, "clean", "--quiet", "-d", "--force"])?;
        }
        Ok(())
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
