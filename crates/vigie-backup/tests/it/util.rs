//! What the backup tests share: a temporary place with a password file,
//! the real `restic` run on a repository, and a source tree holding
//! every kind of entry a backup must carry, with a comparison of trees.

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes, Permissions};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

pub const PASSWORD: &str = "correct horse battery staple";

/// A temporary directory with `repo/` (not created), `password` (0600)
/// and room for sources and restores.
pub struct Place {
    pub dir: tempfile::TempDir,
}

impl Place {
    pub fn new() -> Place {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        fs::set_permissions(&password, Permissions::from_mode(0o600)).unwrap();
        Place { dir }
    }

    /// A place with the test tree made at `src`, and that path.
    pub fn with_tree() -> (Place, PathBuf) {
        let place = Place::new();
        let src = place.path("src");
        make_tree(&src);
        (place, src)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    pub fn spec(&self) -> vigie_backup::RepoSpec {
        vigie_backup::RepoSpec::new("nightly", self.repo().to_str().unwrap()).unwrap()
    }

    /// `restic -r REPO --password-file PASSWORD --no-cache ARGS`; panics
    /// with its output when it fails.
    pub fn restic(&self, args: &[&str]) -> String {
        let out = self.restic_output(args);
        assert!(
            out.status.success(),
            "restic {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn restic_output(&self, args: &[&str]) -> Output {
        Command::new("restic")
            .arg("-r")
            .arg(self.repo())
            .arg("--password-file")
            .arg(self.path("password"))
            .args(["--no-cache", "--quiet"])
            .args(args)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `restic check --read-data`: every pack read back and verified.
    pub fn restic_check(&self) {
        self.restic_check_with(&[]);
    }

    /// `restic check --read-data` with more arguments (`--no-lock`
    /// beside the stale lock of a killed process, which restic refuses
    /// until `restic unlock`).
    pub fn restic_check_with(&self, more: &[&str]) {
        let args: Vec<&str> = ["check", "--read-data"]
            .iter()
            .chain(more)
            .copied()
            .collect();
        let out = self.restic_output(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "restic check failed:\n{text}");
        // `--quiet` leaves only problems to say.
        assert!(
            !text.to_lowercase().contains("error"),
            "restic check:\n{text}"
        );
    }

    /// `restic snapshots --json`, parsed.
    pub fn restic_snapshots(&self) -> Vec<serde_json::Value> {
        let json = self.restic(&["snapshots", "--json"]);
        serde_json::from_str(&json).unwrap()
    }
}

/// Deterministic bytes that neither compress nor deduplicate.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn set_mtime(path: &Path, when: SystemTime) {
    File::open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(when).set_accessed(when))
        .unwrap();
}

/// A tree with a regular file, an empty file, a 5 MiB file, modes 0600
/// and 0755, a relative and a dangling symlink, a hard link, a nested
/// directory, and an mtime in 2001.
pub fn make_tree(root: &Path) {
    let past = SystemTime::UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    fs::create_dir_all(root.join("etc/nested/deeper")).unwrap();
    fs::write(root.join("etc/app.conf"), b"listen = 8080\n").unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    fs::write(root.join("big.bin"), noise(5 << 20, 7)).unwrap();
    fs::write(root.join("etc/secret"), b"s3cr3t\n").unwrap();
    fs::set_permissions(root.join("etc/secret"), Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/nested/deeper/leaf"), noise(3000, 3)).unwrap();
    std::os::unix::fs::symlink("../run.sh", root.join("etc/link-to-run")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::hard_link(root.join("etc/app.conf"), root.join("app.conf.hardlink")).unwrap();
    set_mtime(&root.join("etc/app.conf"), past);
    // Directories last: writing in one changes its mtime.
    set_mtime(&root.join("etc/nested/deeper"), past);
}

/// What a backup must keep of an entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    File {
        mode: u32,
        mtime: SystemTime,
        bytes: Vec<u8>,
    },
    Dir {
        mode: u32,
        mtime: SystemTime,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every entry under `root` by relative path, and the inode of each
/// regular file (to tell hard links).
pub fn read_tree(root: &Path) -> (BTreeMap<PathBuf, Entry>, BTreeMap<PathBuf, u64>) {
    let mut entries = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.is_symlink() {
                Entry::Symlink {
                    target: fs::read_link(&path).unwrap(),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Entry::Dir {
                    mode,
                    mtime: meta.modified().unwrap(),
                }
            } else {
                inodes.insert(rel.clone(), meta.ino());
                Entry::File {
                    mode,
                    mtime: meta.modified().unwrap(),
                    bytes: fs::read(&path).unwrap(),
                }
            };
            entries.insert(rel, entry);
        }
    }
    (entries, inodes)
}
