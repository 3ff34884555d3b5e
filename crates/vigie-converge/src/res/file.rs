//! Files, directories, and edits of a file (a line, a marked block):
//! content compared byte for byte, owner, group and mode; written
//! atomically with the previous copy kept. A link where a file or a
//! directory is declared is refused, never followed.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use super::{Drift, Res, State, octal};
use crate::diff;
use crate::sys;
use crate::write::{KeepOld, Meta, Writer};

/// Owner, group and mode as declared (each optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Perms {
    /// How `m` differs from these, as phrases.
    pub(crate) fn drift(&self, m: &std::fs::Metadata, d: &mut Drift) {
        if let Some(mode) = self.mode {
            let now = m.permissions().mode() & 0o7777;
            if now != mode {
                d.add(format!("mode {}, declared {}", octal(now), octal(mode)));
            }
        }
        // An owner not made yet (its [[user]] comes first in enforce
        // mode) is drift in an audit, not an error.
        if let Some(owner) = &self.owner
            && sys::uid_of(owner).ok() != Some(m.uid())
        {
            d.add(format!(
                "owner {}, declared {owner}",
                sys::user_name(m.uid())
            ));
        }
        if let Some(group) = &self.group
            && sys::gid_of(group).ok() != Some(m.gid())
        {
            d.add(format!(
                "group {}, declared {group}",
                sys::group_name(m.gid())
            ));
        }
    }

    /// The metadata to write: what is declared, else what the file has
    /// now, else `default_mode` and the writer's own owner.
    pub(crate) fn resolve(&self, now: Option<&std::fs::Metadata>, default_mode: u32) -> Res<Meta> {
        let uid = match &self.owner {
            Some(o) => Some(sys::uid_of(o).map_err(|e| e.to_string())?),
            None => now.map(MetadataExt::uid),
        };
        let gid = match &self.group {
            Some(g) => Some(sys::gid_of(g).map_err(|e| e.to_string())?),
            None => now.map(MetadataExt::gid),
        };
        let mode = self
            .mode
            .or_else(|| now.map(|m| m.permissions().mode() & 0o7777))
            .unwrap_or(default_mode);
        Ok(Meta { mode, uid, gid })
    }
}

use std::os::unix::fs::MetadataExt;

pub(crate) fn refuse_link(path: &std::path::Path, m: &std::fs::Metadata) -> Res<()> {
    if m.file_type().is_symlink() {
        return Err(format!(
            "{} is a symbolic link: vigie follows no link where it manages a file; \
             remove it, or declare the file it points to",
            path.display()
        ));
    }
    Ok(())
}

/// A whole file.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub path: PathBuf,
    /// `None`: only owner, group and mode are managed (the file must
    /// exist).
    pub content: Option<Vec<u8>>,
    pub present: bool,
    pub perms: Perms,
    pub keep: KeepOld,
    pub sensitive: bool,
}

impl State for FileSpec {
    fn drift(&self) -> Res<Drift> {
        let meta = sys::meta_opt(&self.path).map_err(|e| e.to_string())?;
        let shown = self.path.display().to_string();
        let Some(meta) = meta else {
            if !self.present {
                return Ok(Drift::none());
            }
            let Some(content) = &self.content else {
                return Err(format!(
                    "{shown} does not exist and no content is declared: \
                     give `content`, `source` or `template`"
                ));
            };
            return Ok(Drift {
                changes: vec!["missing".into()],
                diff: Some(diff::unified(&shown, b"", content, self.sensitive)),
            });
        };
        refuse_link(&self.path, &meta)?;
        if !meta.is_file() {
            return Err(format!("{shown} exists and is not a regular file"));
        }
        if !self.present {
            let old = sys::read_opt(&self.path)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            return Ok(Drift {
                changes: vec!["present, declared absent".into()],
                diff: Some(diff::unified(&shown, &old, b"", self.sensitive)),
            });
        }
        let mut d = Drift::none();
        if let Some(content) = &self.content {
            let now = sys::read_opt(&self.path)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            if &now != content {
                d.add("content differs");
                d.diff = Some(diff::unified(&shown, &now, content, self.sensitive));
            }
        }
        self.perms.drift(&meta, &mut d);
        Ok(d)
    }

    fn fix(&self, w: &Writer, drift: &Drift) -> Res<()> {
        let now = sys::meta_opt(&self.path).map_err(|e| e.to_string())?;
        if !self.present {
            return w
                .remove_file(&self.path, &self.keep)
                .map_err(|e| e.to_string());
        }
        let meta = self.perms.resolve(now.as_ref(), 0o644)?;
        let rewrite = now.is_none() || drift.diff.is_some();
        match (&self.content, rewrite) {
            (Some(content), true) => w
                .write_file(&self.path, content, meta, &self.keep)
                .map_err(|e| e.to_string()),
            _ => w.set_meta(&self.path, meta).map_err(|e| e.to_string()),
        }
    }
}

/// A directory (made with its parents; `absent` removes it only when
/// empty).
#[derive(Clone, Debug)]
pub struct DirSpec {
    pub path: PathBuf,
    pub present: bool,
    pub perms: Perms,
}

impl State for DirSpec {
    fn drift(&self) -> Res<Drift> {
        let meta = sys::meta_opt(&self.path).map_err(|e| e.to_string())?;
        match meta {
            None if self.present => Ok(Drift::one("missing")),
            None => Ok(Drift::none()),
            Some(m) => {
                refuse_link(&self.path, &m)?;
                if !m.is_dir() {
                    return Err(format!(
                        "{} exists and is not a directory",
                        self.path.display()
                    ));
                }
                if !self.present {
                    return Ok(Drift::one("present, declared absent"));
                }
                let mut d = Drift::none();
                self.perms.drift(&m, &mut d);
                Ok(d)
            }
        }
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        if !self.present {
            return w.remove_dir(&self.path).map_err(|e| {
                format!("{e} (vigie removes only an empty directory: empty it first)")
            });
        }
        let now = sys::meta_opt(&self.path).map_err(|e| e.to_string())?;
        let meta = self.perms.resolve(now.as_ref(), 0o755)?;
        w.make_dir(&self.path, meta).map_err(|e| e.to_string())
    }
}

/// A change to part of a file.
#[derive(Clone, Debug)]
pub enum Edit {
    /// A line present (replacing the last line `regex` matches, else
    /// appended) or absent (every line equal to it, or matching
    /// `regex`, removed).
    Line {
        line: String,
        regex: Option<regex::Regex>,
        present: bool,
    },
    /// Lines between two markers: replaced, appended, or removed with
    /// the markers.
    Block {
        begin: String,
        end: String,
        block: String,
        present: bool,
    },
}

impl Edit {
    /// The file as it should be, from what it is.
    pub fn apply(&self, now: &str) -> String {
        match self {
            Edit::Line {
                line,
                regex,
                present,
            } => edit_line(now, line, regex.as_ref(), *present),
            Edit::Block {
                begin,
                end,
                block,
                present,
            } => edit_block(now, begin, end, block, *present),
        }
    }
}

fn with_newline(mut s: String) -> String {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn edit_line(now: &str, line: &str, regex: Option<&regex::Regex>, present: bool) -> String {
    let lines: Vec<&str> = now.lines().collect();
    let hit = |l: &str| regex.map_or(l == line, |r| r.is_match(l));
    if !present {
        if !lines.iter().any(|l| hit(l)) {
            return now.to_owned();
        }
        let kept: Vec<&str> = lines.into_iter().filter(|l| !hit(l)).collect();
        let mut out = kept.join("\n");
        if !kept.is_empty() {
            out.push('\n');
        }
        return out;
    }
    if let Some(r) = regex
        && let Some(i) = lines.iter().rposition(|l| r.is_match(l))
    {
        if lines[i] == line {
            return now.to_owned();
        }
        let mut out: Vec<&str> = lines.clone();
        out[i] = line;
        return out.join("\n") + "\n";
    }
    if lines.contains(&line) {
        return now.to_owned();
    }
    with_newline(now.to_owned()) + line + "\n"
}

fn edit_block(now: &str, begin: &str, end: &str, block: &str, present: bool) -> String {
    let lines: Vec<&str> = now.lines().collect();
    let b = lines.iter().position(|l| *l == begin);
    let e = b.and_then(|b| lines[b..].iter().position(|l| *l == end).map(|e| b + e));
    let mut wanted = vec![begin.to_owned()];
    wanted.extend(block.lines().map(str::to_owned));
    wanted.push(end.to_owned());
    match (b, e) {
        (Some(b), Some(e)) => {
            let mut out: Vec<String> = lines[..b].iter().map(|s| (*s).to_owned()).collect();
            if present {
                out.extend(wanted);
            }
            out.extend(lines[e + 1..].iter().map(|s| (*s).to_owned()));
            let joined = out.join("\n");
            if out.is_empty() {
                joined
            } else {
                joined + "\n"
            }
        }
        _ if !present => now.to_owned(),
        _ => with_newline(now.to_owned()) + &wanted.join("\n") + "\n",
    }
}

/// A line or a block in a file.
#[derive(Clone, Debug)]
pub struct EditSpec {
    pub path: PathBuf,
    pub edit: Edit,
    /// Make the file when missing (else a missing file is an error).
    pub create: bool,
    pub perms: Perms,
    pub keep: KeepOld,
    pub sensitive: bool,
}

impl EditSpec {
    /// The file now (`None`: missing) and as it should be.
    fn contents(&self) -> Res<(Option<String>, String)> {
        let shown = self.path.display();
        if let Some(m) = sys::meta_opt(&self.path).map_err(|e| e.to_string())? {
            refuse_link(&self.path, &m)?;
        }
        let now = sys::read_opt(&self.path).map_err(|e| e.to_string())?;
        let now = match now {
            Some(b) => Some(String::from_utf8(b).map_err(|_| {
                format!("{shown} is not UTF-8 text: vigie edits lines of text files only")
            })?),
            None => None,
        };
        let wanted = self.edit.apply(now.as_deref().unwrap_or(""));
        Ok((now, wanted))
    }
}

impl State for EditSpec {
    fn drift(&self) -> Res<Drift> {
        let shown = self.path.display().to_string();
        let (now, wanted) = self.contents()?;
        let Some(now) = now else {
            let removing = matches!(
                self.edit,
                Edit::Line { present: false, .. } | Edit::Block { present: false, .. }
            );
            if removing {
                return Ok(Drift::none());
            }
            if !self.create {
                return Err(format!(
                    "{shown} does not exist: set `create = true` to make it, \
                     or require the resource that makes it"
                ));
            }
            return Ok(Drift {
                changes: vec!["file missing".into()],
                diff: Some(diff::unified(
                    &shown,
                    b"",
                    wanted.as_bytes(),
                    self.sensitive,
                )),
            });
        };
        let mut d = Drift::none();
        if now != wanted {
            d.add(match &self.edit {
                Edit::Line { present: true, .. } => "line missing or different",
                Edit::Line { present: false, .. } => "line present, declared absent",
                Edit::Block { present: true, .. } => "block missing or different",
                Edit::Block { present: false, .. } => "block present, declared absent",
            });
            d.diff = Some(diff::unified(
                &shown,
                now.as_bytes(),
                wanted.as_bytes(),
                self.sensitive,
            ));
        }
        if let Some(m) = sys::meta_opt(&self.path).map_err(|e| e.to_string())? {
            self.perms.drift(&m, &mut d);
        }
        Ok(d)
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        // Read again: the edit applies to the file as it is now.
        let (now, wanted) = self.contents()?;
        let meta_now = sys::meta_opt(&self.path).map_err(|e| e.to_string())?;
        let meta = self.perms.resolve(meta_now.as_ref(), 0o644)?;
        if now.as_deref() == Some(wanted.as_str()) {
            return w.set_meta(&self.path, meta).map_err(|e| e.to_string());
        }
        w.write_file(&self.path, wanted.as_bytes(), meta, &self.keep)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_replaces_the_last_match_or_is_appended() {
        let r = regex::Regex::new("^PermitRootLogin").unwrap();
        let now = "Port 22\nPermitRootLogin yes\n";
        assert_eq!(
            edit_line(now, "PermitRootLogin no", Some(&r), true),
            "Port 22\nPermitRootLogin no\n"
        );
        assert_eq!(edit_line("Port 22", "X 1", None, true), "Port 22\nX 1\n");
        assert_eq!(edit_line("", "X 1", None, true), "X 1\n");
        let same = "a\nX 1\nb\n";
        assert_eq!(edit_line(same, "X 1", None, true), same);
    }

    #[test]
    fn an_absent_line_is_removed_everywhere() {
        assert_eq!(edit_line("a\nb\na\n", "a", None, false), "b\n");
        assert_eq!(edit_line("a\n", "a", None, false), "");
        assert_eq!(edit_line("b\n", "a", None, false), "b\n");
    }

    #[test]
    fn a_block_is_replaced_between_its_markers() {
        let (b, e) = ("# BEGIN vigie x", "# END vigie x");
        let first = edit_block("top\n", b, e, "one\ntwo", true);
        assert_eq!(first, "top\n# BEGIN vigie x\none\ntwo\n# END vigie x\n");
        let again = edit_block(&(first.clone() + "tail\n"), b, e, "three", true);
        assert_eq!(again, "top\n# BEGIN vigie x\nthree\n# END vigie x\ntail\n");
        assert_eq!(edit_block(&first, b, e, "one\ntwo", true), first);
        assert_eq!(edit_block(&first, b, e, "", false), "top\n");
    }
}
