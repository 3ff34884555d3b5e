//! Every change converge makes to the host goes through a [`Writer`],
//! and only enforce mode can make one ([`Writer::for_mode`]): audit mode
//! holds `None`, so a resource in audit mode has nothing to write with.
//! The crate's `clippy.toml` refuses the standard library's writing
//! calls (and running programs) outside this file and `sys.rs`.
#![allow(clippy::disallowed_methods)]

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::res::download::{Fetch, Sha256, shown_url};
use crate::sys::{self, Cmd, Output};

/// Audit reports drift and changes nothing; enforce repairs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Audit,
    Enforce,
}

/// The capability to change the host. Its field is private to this
/// module, so [`Writer::for_mode`] is the only way to get one.
#[derive(Debug)]
pub struct Writer {
    /// What fetches a download's URL (none: downloads cannot be made).
    fetch: Option<std::sync::Arc<dyn Fetch>>,
}

/// Where the previous copy of a replaced file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepOld {
    /// Nowhere: the file is vigie's alone (a cron.d or sysctl.d entry).
    No,
    /// `NAME.vigie-old` beside it.
    Beside,
    /// Under this directory, at the file's absolute path
    /// (`DIR/etc/ssh/sshd_config`).
    Under(PathBuf),
}

/// A file's owner, group and permission bits, as they should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

fn with_path(path: &Path) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Where a replaced or removed file's previous copy is kept.
pub fn old_copy(path: &Path, keep: &KeepOld) -> Option<PathBuf> {
    match keep {
        KeepOld::No => None,
        KeepOld::Beside => {
            let mut name = path.file_name()?.to_os_string();
            name.push(".vigie-old");
            Some(path.with_file_name(name))
        }
        KeepOld::Under(dir) => Some(dir.join(path.strip_prefix("/").unwrap_or(path))),
    }
}

impl Writer {
    /// A writer in enforce mode, none in audit mode.
    pub(crate) fn for_mode(mode: Mode) -> Option<Writer> {
        match mode {
            Mode::Audit => None,
            Mode::Enforce => Some(Writer { fetch: None }),
        }
    }

    /// The same writer, fetching downloads with `fetch`.
    #[must_use]
    pub(crate) fn with_fetch(mut self, fetch: Option<std::sync::Arc<dyn Fetch>>) -> Self {
        self.fetch = fetch;
        self
    }

    /// A new, empty temporary beside `path` (exclusive, unguessable,
    /// 0600), and its path.
    fn temporary(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| std::io::Error::other(format!("{}: no directory", path.display())))?;
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other(format!("{}: no file name", path.display())))?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let prefix = format!(".{}.vigie-", name.to_string_lossy());
        sweep(dir, &prefix);
        let tmp = dir.join(format!(
            "{prefix}{}-{}-{nonce:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(with_path(&tmp))?;
        Ok((tmp, f))
    }

    /// Give a written temporary its owner and mode, sync it, keep the
    /// previous copy, rename it over `path` and sync the directory; on
    /// any error the temporary is removed.
    fn install(
        path: &Path,
        tmp: &Path,
        f: &std::fs::File,
        meta: Meta,
        keep: &KeepOld,
    ) -> std::io::Result<()> {
        let finished = (|| {
            if meta.uid.is_some() || meta.gid.is_some() {
                std::os::unix::fs::fchown(f, meta.uid, meta.gid)?;
            }
            // After chown, which clears set-id bits.
            f.set_permissions(std::fs::Permissions::from_mode(meta.mode))?;
            f.sync_all()
        })();
        if let Err(e) = finished {
            let _ = std::fs::remove_file(tmp);
            return Err(with_path(path)(e));
        }
        if let Err(e) = Self::keep_copy(path, keep) {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(tmp, path) {
            let _ = std::fs::remove_file(tmp);
            return Err(with_path(path)(e));
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(with_path(dir))
    }

    /// Fetch `url` into a temporary beside `path`, hashing as it comes;
    /// only a whole body with the declared checksum is renamed over
    /// `path` (a mismatch names both sums).
    pub fn download(
        &self,
        url: &str,
        path: &Path,
        want: Sha256,
        meta: Meta,
        keep: &KeepOld,
    ) -> Result<(), String> {
        let Some(fetch) = &self.fetch else {
            return Err(format!(
                "{}: nothing here can fetch {}",
                path.display(),
                shown_url(url)
            ));
        };
        let (tmp, mut f) = Self::temporary(path).map_err(|e| e.to_string())?;
        let mut hashing = Hashing {
            file: &mut f,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
        };
        let fetched = fetch.fetch(url, &mut hashing);
        let got = Sha256::of_digest(&hashing.ctx.finish());
        let refused = match fetched {
            Err(e) => Some(format!("fetching {}: {e}", shown_url(url))),
            Ok(_) if got != want => Some(format!(
                "{} has checksum {got}, declared {want}: not installed (the file at {} is unchanged)",
                shown_url(url),
                path.display()
            )),
            Ok(_) => None,
        };
        if let Some(e) = refused {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Self::install(path, &tmp, &f, meta, keep).map_err(|e| e.to_string())
    }

    /// Replace `path` with `bytes` atomically: a new file in the same
    /// directory (exclusive, unguessable, 0600 until its owner and mode
    /// are set), synced, the previous copy linked to its keep place,
    /// then renamed over `path` and the directory synced. A process
    /// killed at any point leaves the old file or the new one, whole.
    pub fn write_file(
        &self,
        path: &Path,
        bytes: &[u8],
        meta: Meta,
        keep: &KeepOld,
    ) -> std::io::Result<()> {
        let (tmp, mut f) = Self::temporary(path)?;
        if let Err(e) = f.write_all(bytes) {
            let _ = std::fs::remove_file(&tmp);
            return Err(with_path(path)(e));
        }
        Self::install(path, &tmp, &f, meta, keep)
    }

    /// Link (or, across file systems, copy) the current `path` to its
    /// keep place, replacing an older copy there.
    fn keep_copy(path: &Path, keep: &KeepOld) -> std::io::Result<()> {
        let Some(old) = old_copy(path, keep) else {
            return Ok(());
        };
        match sys::meta_opt(path)? {
            Some(m) if m.is_file() => {}
            _ => return Ok(()),
        }
        if let Some(parent) = old.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(with_path(parent))?;
        }
        match std::fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(&old)(e)),
        }
        if std::fs::hard_link(path, &old).is_err() {
            std::fs::copy(path, &old).map_err(with_path(&old))?;
        }
        Ok(())
    }

    /// Set the owner, group and mode of an existing file or directory
    /// (no link followed: converge refuses links where it manages files).
    pub fn set_meta(&self, path: &Path, meta: Meta) -> std::io::Result<()> {
        if meta.uid.is_some() || meta.gid.is_some() {
            std::os::unix::fs::lchown(path, meta.uid, meta.gid).map_err(with_path(path))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
            .map_err(with_path(path))
    }

    /// Make a directory (its missing parents 0755), then its owner and
    /// mode.
    pub fn make_dir(&self, path: &Path, meta: Meta) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(with_path(path))?;
        self.set_meta(path, meta)
    }

    /// Remove a file, moving it to its keep place when there is one.
    pub fn remove_file(&self, path: &Path, keep: &KeepOld) -> std::io::Result<()> {
        Self::keep_copy(path, keep)?;
        std::fs::remove_file(path).map_err(with_path(path))
    }

    /// Remove an empty directory.
    pub fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path).map_err(with_path(path))
    }

    /// Write a value into an existing kernel file (`/proc/sys/…`).
    pub fn write_kernel(&self, path: &Path, value: &str) -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()))
            .map_err(with_path(path))
    }

    /// Run a program that changes the host.
    pub fn run(&self, cmd: &Cmd) -> std::io::Result<Output> {
        sys::exec_with(cmd, self)
    }

    /// Run it and turn anything but exit 0 into an error naming it.
    pub fn run_ok(&self, cmd: &Cmd) -> std::io::Result<Output> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(std::io::Error::other(format!(
                "`{}` failed: {}",
                cmd.display(),
                out.failure()
            )))
        }
    }
}

/// Writes to a file and hashes what it writes.
struct Hashing<'a> {
    file: &'a mut std::fs::File,
    ctx: ring::digest::Context,
}

impl std::io::Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Remove the temporaries `dir` holds under `prefix` (`.NAME.vigie-PID-…`)
/// whose process no longer runs: what a run killed mid-write (an hour's
/// download) left is not kept for ever. A live process's are left alone.
fn sweep(dir: &Path, prefix: &str) {
    // Without /proc, no process can be told gone.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(temporary_pid)
        else {
            continue;
        };
        let gone = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
        if gone && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The pid of a temporary's name past its prefix, `PID-COUNTER-HEX`
/// exactly (digits, digits, hex): nothing else is one of ours.
fn temporary_pid(rest: &str) -> Option<u32> {
    let mut parts = rest.split('-');
    let (pid, counter, nonce) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    (parts.next().is_none() && digits(pid) && digits(counter) && hex)
        .then(|| pid.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_mode_has_no_writer() {
        assert!(Writer::for_mode(Mode::Audit).is_none());
        assert!(Writer::for_mode(Mode::Enforce).is_some());
    }

    #[test]
    fn a_write_keeps_the_old_copy_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.conf");
        let w = Writer::for_mode(Mode::Enforce).unwrap();
        let meta = Meta {
            mode: 0o640,
            uid: None,
            gid: None,
        };
        w.write_file(&p, b"one\n", meta, &KeepOld::Beside).unwrap();
        w.write_file(&p, b"two\n", meta, &KeepOld::Beside).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert_eq!(
            std::fs::read(dir.path().join("f.conf.vigie-old")).unwrap(),
            b"one\n"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_write_removes_what_a_killed_run_left_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.tar");
        // A pid above the kernel's largest (2^22) never runs.
        let dead = dir.path().join(".f.tar.vigie-999999999-0-1f");
        let alive = dir
            .path()
            .join(format!(".f.tar.vigie-{}-7-2e", std::process::id()));
        let other = dir.path().join(".g.tar.vigie-999999999-0-1f");
        let users = dir.path().join(".f.tar.vigie-999999999-old");
        for f in [&dead, &alive, &other, &users] {
            std::fs::write(f, "part").unwrap();
        }
        let w = Writer::for_mode(Mode::Enforce).unwrap();
        let meta = Meta {
            mode: 0o644,
            uid: None,
            gid: None,
        };
        w.write_file(&p, b"whole", meta, &KeepOld::No).unwrap();
        assert!(!dead.exists(), "a dead run's temporary of this path goes");
        assert!(alive.exists(), "a running process's stays");
        assert!(other.exists(), "another path's stays");
        assert!(users.exists(), "a name not of our shape stays");
    }

    #[test]
    fn a_keep_directory_mirrors_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("keep");
        let p = dir.path().join("etc/x");
        let w = Writer::for_mode(Mode::Enforce).unwrap();
        let meta = Meta {
            mode: 0o644,
            uid: None,
            gid: None,
        };
        w.make_dir(
            p.parent().unwrap(),
            Meta {
                mode: 0o755,
                ..meta
            },
        )
        .unwrap();
        w.write_file(&p, b"a", meta, &KeepOld::Under(keep.clone()))
            .unwrap();
        w.write_file(&p, b"b", meta, &KeepOld::Under(keep.clone()))
            .unwrap();
        let old = old_copy(&p, &KeepOld::Under(keep)).unwrap();
        assert_eq!(std::fs::read(old).unwrap(), b"a");
    }
}
