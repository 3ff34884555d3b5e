//! A repository in a local directory, laid out as restic lays it out:
//! `config`, `keys/`, `snapshots/`, `index/`, `locks/` and `data/xx/`
//! (packs under the first two hex digits of their id), directories 0700
//! and files 0400 as restic makes them.
//!
//! Every file is written whole or not at all: its bytes go to a temporary
//! file beside it (`.tmp-…`, a name that is no id, so neither this
//! backend nor restic lists it), which is synced, renamed to its final
//! name, and the directory is synced. A process killed at any point
//! leaves either no file or the whole file; at worst a stale `.tmp-…`
//! that nothing reads (prune is the place to remove those, next).

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::{DIRS, id_of, layout};
use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::LockBackend;

/// A restic repository in a local directory.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// The repository at `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    /// The repository's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file of this type and id lives.
    fn path(&self, tpe: FileType, id: &Id) -> PathBuf {
        self.root.join(layout(tpe, id))
    }

    /// Where the file of this type and id lives, once every directory
    /// between the repository's root and it is found to be a directory
    /// of its own, not a link: someone who may write in the repository
    /// cannot make this backend read, write or remove elsewhere through
    /// it (a missing directory is fine: a write makes it).
    fn checked_path(&self, tpe: FileType, id: &Id) -> RusticResult<PathBuf> {
        self.checked(self.path(tpe, id))
    }

    /// `path`, once the directories between the root and it are found to
    /// be directories (see [`Self::checked_path`]).
    fn checked(&self, path: PathBuf) -> RusticResult<PathBuf> {
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root.as_path()) {
            match fs::symlink_metadata(d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(RusticError::new(
                        ErrorKind::Backend,
                        format!(
                            "{} is not a directory of the repository (a link?): refused",
                            d.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("read", d, &e)),
            }
            dir = d.parent();
        }
        Ok(path)
    }

    /// The directories holding files of this type (`data/00` … `data/ff`
    /// for packs: the two-digit ones that exist).
    fn dirs(&self, tpe: FileType) -> RusticResult<Vec<PathBuf>> {
        let dir = self.root.join(tpe.dirname());
        if tpe != FileType::Pack {
            return Ok(vec![dir]);
        }
        let mut dirs = Vec::new();
        for entry in read_dir(&dir)? {
            let entry = entry.map_err(|e| io_error("list", &dir, &e))?;
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && name.to_str().is_some_and(is_prefix) {
                dirs.push(entry.path());
            }
        }
        Ok(dirs)
    }
}

/// Whether a name is one of `data/`'s subdirectories: two lowercase hex
/// digits.
fn is_prefix(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A directory's entries; a directory that does not exist has none (a
/// repository not created yet, or one missing an empty `locks/`).
fn read_dir(dir: &Path) -> RusticResult<Vec<io::Result<fs::DirEntry>>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error("list", dir, &e)),
    }
}

/// rustic_core's error for a failed file operation, on one line that
/// names the path once (the system's message only: `tempfile` appends
/// its own path to it).
fn io_error(op: &str, path: &Path, err: &io::Error) -> Box<RusticError> {
    let why = err.raw_os_error().map_or_else(
        || err.to_string(),
        |code| io::Error::from_raw_os_error(code).to_string(),
    );
    RusticError::new(
        ErrorKind::InputOutput,
        format!("cannot {op} {}: {why}", path.display()),
    )
}

fn mkdir(path: &Path) -> RusticResult<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| io_error("create directory", path, &e))
}

/// A repository file opened for reading: never through a link at its
/// name, and a regular file.
fn open_file(path: &Path) -> RusticResult<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| io_error("read", path, &e))?;
    let meta = file.metadata().map_err(|e| io_error("read", path, &e))?;
    if !meta.is_file() {
        return Err(RusticError::new(
            ErrorKind::Backend,
            format!(
                "{} is not a file of the repository: refused",
                path.display()
            ),
        ));
    }
    Ok((file, meta.len()))
}

/// Makes a directory's entries (a rename, a new file) durable.
fn sync_dir(dir: &Path) -> RusticResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync directory", dir, &e))
}

/// Writes `content` to `path` atomically: a temporary file in the same
/// directory, synced, made read-only, renamed over `path`, then the
/// directory synced. On an error the temporary file is removed.
fn write_atomic(path: &Path, content: &BytesList) -> RusticResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| io_error("write", path, &e))?;
    // The file itself, not `NamedTempFile`'s writer, which adds the
    // temporary name to its errors.
    let file = tmp.as_file_mut();
    let written = content
        .slice()
        .iter()
        .try_for_each(|b| file.write_all(b))
        .and_then(|()| file.set_permissions(Permissions::from_mode(0o400)))
        .and_then(|()| file.sync_all());
    written.map_err(|e| io_error("write", path, &e))?;
    tmp.persist(path)
        .map_err(|e| io_error("rename a temporary file to", path, &e.error))?;
    sync_dir(dir)
}

/// `locks/`, which rustic_core's file types leave out: the same rules
/// as every other file (ids only, no links, atomic writes).
impl LockBackend for LocalBackend {
    fn list_locks(&self) -> RusticResult<Vec<Id>> {
        // `checked` vets the directories above a file: those of a name
        // inside `locks/`, so `locks/` itself.
        let inside = self.checked(self.root.join("locks").join("x"))?;
        let dir = inside.parent().unwrap_or(&self.root);
        let mut ids = Vec::new();
        for entry in read_dir(dir)? {
            let entry = entry.map_err(|e| io_error("list", dir, &e))?;
            let Some(id) = entry.file_name().to_str().and_then(id_of) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn read_lock(&self, id: &Id) -> RusticResult<Bytes> {
        let path = self.checked(self.lock_path(id))?;
        let (file, len) = open_file(&path)?;
        // A lock holds a few hundred bytes; never read a huge file whole.
        let mut buf = Vec::with_capacity(usize::try_from(len.min(1 << 20)).unwrap_or(0));
        io::Read::read_to_end(&mut io::Read::take(file, 1 << 20), &mut buf)
            .map_err(|e| io_error("read", &path, &e))?;
        Ok(Bytes::from(buf))
    }

    fn write_lock(&self, id: &Id, content: Bytes) -> RusticResult<()> {
        let path = self.checked(self.lock_path(id))?;
        // A repository made by another tool may lack `locks/`.
        if let Some(dir) = path.parent().filter(|d| !d.is_dir()) {
            mkdir(dir)?;
            sync_dir(&self.root)?;
        }
        write_atomic(&path, &content.into())
    }

    fn remove_lock(&self, id: &Id) -> RusticResult<()> {
        let path = self.checked(self.lock_path(id))?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("remove", &path, &e)),
        }
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

impl LocalBackend {
    fn lock_path(&self, id: &Id) -> PathBuf {
        self.root.join("locks").join(id.to_hex().as_str())
    }
}

impl ReadBackend for LocalBackend {
    fn location(&self) -> String {
        format!("local:{}", self.root.display())
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let path = self.root.join("config");
            return match fs::symlink_metadata(&path) {
                Ok(m) if !m.is_file() => Err(RusticError::new(
                    ErrorKind::Backend,
                    format!(
                        "{} is not a file of the repository: refused",
                        path.display()
                    ),
                )),
                Ok(m) => Ok(vec![(Id::default(), size(&path, m.len())?)]),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(io_error("read", &path, &e)),
            };
        }
        let mut files = Vec::new();
        for dir in self.dirs(tpe)? {
            for entry in read_dir(&dir)? {
                let entry = entry.map_err(|e| io_error("list", &dir, &e))?;
                let Some(id) = entry.file_name().to_str().and_then(id_of) else {
                    continue;
                };
                // The entry itself, never what a symlink points to.
                let meta = entry
                    .metadata()
                    .map_err(|e| io_error("read", &entry.path(), &e))?;
                if meta.is_file() {
                    files.push((id, size(&entry.path(), meta.len())?));
                }
            }
        }
        Ok(files)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.checked_path(tpe, id)?;
        let (mut file, len) = open_file(&path)?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        io::Read::read_to_end(&mut file, &mut buf).map_err(|e| io_error("read", &path, &e))?;
        Ok(Bytes::from(buf))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = self.checked_path(tpe, id)?;
        let (file, len) = open_file(&path)?;
        // An index may ask for more than the file holds: never allocate
        // beyond it.
        if u64::from(offset) + u64::from(length) > len {
            return Err(RusticError::new(
                ErrorKind::Backend,
                format!(
                    "{} holds {len} bytes; {length} at {offset} were asked: the index does not match the pack",
                    path.display()
                ),
            ));
        }
        let mut buf = vec![0; length as usize];
        file.read_exact_at(&mut buf, u64::from(offset))
            .map_err(|e| io_error("read", &path, &e))?;
        Ok(Bytes::from(buf))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id).display().to_string()
    }
}

/// A file's size as the trait wants it (restic's packs stay far below
/// 4 GiB; a larger file is no file of a repository).
fn size(path: &Path, len: u64) -> RusticResult<u32> {
    u32::try_from(len).map_err(|_| {
        RusticError::new(
            ErrorKind::Backend,
            format!(
                "{} is {len} bytes, more than any repository file can be",
                path.display()
            ),
        )
    })
}

impl WriteBackend for LocalBackend {
    /// Creates the repository's directories, as `restic init` does
    /// (`data/00` … `data/ff` included), and makes them durable.
    fn create(&self) -> RusticResult<()> {
        for dir in DIRS {
            mkdir(&self.root.join(dir))?;
        }
        let data = self.root.join("data");
        for prefix in 0..=255u8 {
            mkdir(&data.join(format!("{prefix:02x}")))?;
        }
        sync_dir(&data)?;
        sync_dir(&self.root)?;
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = self.checked_path(tpe, id)?;
        // A repository made by another tool may lack `data/xx` (or
        // `keys/`, …): make it, as restic does.
        if let Some(dir) = path.parent()
            && tpe != FileType::Config
            && !dir.is_dir()
        {
            mkdir(dir)?;
            // The new `data/xx` itself, durable before a pack in it is.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        write_atomic(&path, &content)
    }

    /// Removes a file; one already gone is removed (a prune interrupted
    /// after removing it runs again).
    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.checked_path(tpe, id)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("remove", &path, &e)),
        }
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        format!("{n:02x}{}", "ab".repeat(31)).parse().unwrap()
    }

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("repo"));
        be.create().unwrap();
        (dir, be)
    }

    #[test]
    fn create_makes_restic_layout_with_private_modes() {
        let (_dir, be) = backend();
        for d in DIRS {
            let m = fs::metadata(be.root().join(d)).unwrap();
            assert!(m.is_dir(), "{d}");
            assert_eq!(m.permissions().mode() & 0o777, 0o700, "{d}");
        }
        let prefixes = fs::read_dir(be.root().join("data")).unwrap().count();
        assert_eq!(prefixes, 256);
        assert!(be.root().join("data/00").is_dir() && be.root().join("data/ff").is_dir());
    }

    #[test]
    fn files_go_where_restic_looks_for_them() {
        let (_dir, be) = backend();
        let pack = id(0x3f);
        be.write_bytes(FileType::Pack, &pack, false, b"pack".to_vec().into())
            .unwrap();
        be.write_bytes(FileType::Snapshot, &id(1), true, b"snap".to_vec().into())
            .unwrap();
        be.write_bytes(
            FileType::Config,
            &Id::default(),
            false,
            b"cfg".to_vec().into(),
        )
        .unwrap();
        let hex = pack.to_hex();
        assert_eq!(
            fs::read(be.root().join("data/3f").join(hex.as_str())).unwrap(),
            b"pack"
        );
        assert_eq!(
            fs::read(be.root().join("snapshots").join(id(1).to_hex().as_str())).unwrap(),
            b"snap"
        );
        assert_eq!(fs::read(be.root().join("config")).unwrap(), b"cfg");
        let mode = fs::metadata(be.root().join("config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
    }

    #[test]
    fn list_sizes_and_reads_back_what_was_written_in_pieces() {
        let (_dir, be) = backend();
        let mut content = BytesList::default();
        content.add(Bytes::from_static(b"hello, "));
        content.add(Bytes::from_static(b"world"));
        be.write_bytes(FileType::Pack, &id(7), false, content)
            .unwrap();
        be.write_bytes(FileType::Pack, &id(0xe0), false, b"x".to_vec().into())
            .unwrap();
        let mut listed = be.list_with_size(FileType::Pack).unwrap();
        listed.sort_unstable();
        assert_eq!(listed, vec![(id(7), 12), (id(0xe0), 1)]);
        assert_eq!(
            &be.read_full(FileType::Pack, &id(7)).unwrap()[..],
            b"hello, world"
        );
        let part = be
            .read_partial(FileType::Pack, &id(7), false, 7, 5)
            .unwrap();
        assert_eq!(&part[..], b"world");
        assert!(
            be.read_partial(FileType::Pack, &id(7), false, 10, 5)
                .is_err()
        );
    }

    #[test]
    fn listing_skips_temporary_and_foreign_names() {
        let (_dir, be) = backend();
        be.write_bytes(FileType::Index, &id(2), true, b"i".to_vec().into())
            .unwrap();
        let index = be.root().join("index");
        // What a process killed mid-write leaves, and other debris.
        fs::write(index.join(".tmp-abc123"), b"half").unwrap();
        fs::write(index.join(id(3).to_hex().as_str().to_uppercase()), b"upper").unwrap();
        fs::create_dir(index.join(id(4).to_hex().as_str())).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", index.join(id(5).to_hex().as_str())).unwrap();
        assert_eq!(be.list(FileType::Index).unwrap(), vec![id(2)]);
    }

    #[test]
    fn config_is_listed_only_once_written() {
        let (_dir, be) = backend();
        assert!(be.list(FileType::Config).unwrap().is_empty());
        be.write_bytes(
            FileType::Config,
            &Id::default(),
            false,
            b"c".to_vec().into(),
        )
        .unwrap();
        assert_eq!(
            be.list_with_size(FileType::Config).unwrap(),
            vec![(Id::default(), 1)]
        );
    }

    #[test]
    fn a_missing_repository_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("absent"));
        assert!(be.list(FileType::Config).unwrap().is_empty());
        assert!(be.list(FileType::Pack).unwrap().is_empty());
        assert!(be.read_full(FileType::Key, &id(1)).is_err());
    }

    #[test]
    fn overwrite_replaces_whole_file_and_leaves_no_temporary() {
        let (_dir, be) = backend();
        be.write_bytes(FileType::Key, &id(9), false, vec![b'a'; 4096].into())
            .unwrap();
        be.write_bytes(FileType::Key, &id(9), false, b"b".to_vec().into())
            .unwrap();
        assert_eq!(&be.read_full(FileType::Key, &id(9)).unwrap()[..], b"b");
        let names: Vec<_> = fs::read_dir(be.root().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(id(9).to_hex().as_str())]
        );
    }

    #[test]
    fn write_makes_a_missing_pack_directory() {
        let (_dir, be) = backend();
        fs::remove_dir(be.root().join("data/5a")).unwrap();
        be.write_bytes(FileType::Pack, &id(0x5a), false, b"p".to_vec().into())
            .unwrap();
        assert_eq!(be.list(FileType::Pack).unwrap(), vec![id(0x5a)]);
    }

    #[test]
    fn remove_is_idempotent() {
        let (_dir, be) = backend();
        be.write_bytes(FileType::Snapshot, &id(1), true, b"s".to_vec().into())
            .unwrap();
        be.remove(FileType::Snapshot, &id(1), true).unwrap();
        assert!(be.list(FileType::Snapshot).unwrap().is_empty());
        be.remove(FileType::Snapshot, &id(1), true).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let (_dir, be) = backend();
        // A directory where the pack should go: the rename fails.
        let target = be.root().join("data/77").join(id(0x77).to_hex().as_str());
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        let err = be
            .write_bytes(FileType::Pack, &id(0x77), false, b"p".to_vec().into())
            .unwrap_err();
        assert!(
            err.display_log().contains("data/77"),
            "{}",
            err.display_log()
        );
        let names: Vec<_> = fs::read_dir(be.root().join("data/77"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(names, vec![target]);
    }

    /// Review: someone who may write in the repository cannot make this
    /// backend read, write or remove outside it through a link.
    #[test]
    fn links_inside_the_repository_are_never_followed() {
        let (dir, be) = backend();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"root's").unwrap();
        // `keys/` made a link to a directory outside.
        fs::remove_dir(be.root().join("keys")).unwrap();
        std::os::unix::fs::symlink(&outside, be.root().join("keys")).unwrap();
        let err = be
            .write_bytes(FileType::Key, &id(1), false, b"k".to_vec().into())
            .unwrap_err();
        assert!(
            err.display_log().contains("refused"),
            "{}",
            err.display_log()
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert!(be.remove(FileType::Key, &id(1), false).is_err());
        // A snapshot that is a link to a file outside is not read.
        let snap = be.root().join("snapshots").join(id(2).to_hex().as_str());
        std::os::unix::fs::symlink(outside.join("secret"), &snap).unwrap();
        assert!(be.read_full(FileType::Snapshot, &id(2)).is_err());
        assert!(
            be.read_partial(FileType::Snapshot, &id(2), false, 0, 1)
                .is_err()
        );
        // A `config` that is a link is refused too.
        std::os::unix::fs::symlink(outside.join("secret"), be.root().join("config")).unwrap();
        assert!(be.list_with_size(FileType::Config).is_err());
    }

    #[test]
    fn locks_live_in_locks_and_never_through_a_link() {
        let (dir, be) = backend();
        be.write_lock(&id(1), Bytes::from_static(b"lock")).unwrap();
        assert_eq!(be.list_locks().unwrap(), vec![id(1)]);
        assert_eq!(&be.read_lock(&id(1)).unwrap()[..], b"lock");
        assert!(
            be.root()
                .join("locks")
                .join(id(1).to_hex().as_str())
                .is_file()
        );
        be.remove_lock(&id(1)).unwrap();
        be.remove_lock(&id(1)).unwrap();
        assert!(be.list_locks().unwrap().is_empty());
        // `locks/` made a link to a directory outside: refused.
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::remove_dir(be.root().join("locks")).unwrap();
        std::os::unix::fs::symlink(&outside, be.root().join("locks")).unwrap();
        assert!(be.list_locks().is_err());
        assert!(be.write_lock(&id(2), Bytes::from_static(b"x")).is_err());
        assert!(be.read_lock(&id(2)).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    /// Review: an index asking for more than a pack holds allocates
    /// nothing of that size.
    #[test]
    fn a_partial_read_beyond_the_file_is_an_error() {
        let (_dir, be) = backend();
        be.write_bytes(FileType::Pack, &id(3), false, b"0123456789".to_vec().into())
            .unwrap();
        assert_eq!(
            be.read_partial(FileType::Pack, &id(3), false, 2, 3)
                .unwrap()
                .as_ref(),
            b"234"
        );
        let err = be
            .read_partial(FileType::Pack, &id(3), false, 8, u32::MAX - 8)
            .unwrap_err();
        assert!(
            err.display_log().contains("does not match"),
            "{}",
            err.display_log()
        );
    }
}
