//! A push's bundle: a manifest and the files it reads, as one stream
//! that `vigie converge push` sends over ssh to `vigie converge
//! receive`, which unpacks it into a fresh private directory and runs
//! it there.
//!
//! The format is ours and small: `vigie-bundle 1\n`, a JSON [`Header`]
//! (its length first), then entries, each a type byte: `F` a regular
//! file (its path, its size, its bytes), `E` the end. Paths are
//! relative, `/`-separated, UTF-8, without `.`, `..` or empty parts.
//! Integers are big-endian.
//!
//! The receiving side trusts nothing: a path that is absolute or climbs
//! out, a symbolic link (`L`, which tar-like streams carry and this
//! format never sends), an unknown entry, a second file at the same
//! place, a bundle past its size or file limits (refused before its
//! bytes are read), or one that ends early is refused with what was
//! wrong. Files are created with `O_CREAT|O_EXCL`, 0600, in directories
//! made here (0700), so nothing outside the directory is touched.

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

const MAGIC: &[u8] = b"vigie-bundle 1\n";
const MAX_HEADER: u32 = 64 << 10;
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;

/// What a receiver accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// All files' bytes together.
    pub max_bytes: u64,
    /// Files, and the directories made for them (a path may hold
    /// thousands of levels).
    pub max_files: usize,
}

impl Default for Limits {
    /// 256 MiB and 10 000 files: far past a manifest with its
    /// templates and a few `.deb` files.
    fn default() -> Self {
        Limits {
            max_bytes: 256 << 20,
            max_files: 10_000,
        }
    }
}

/// How the receiver runs the manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The manifest's path in the bundle.
    pub manifest: String,
    /// The host's name for the manifest (`[hosts.NAME]`, host groups).
    pub host: String,
    pub audit: bool,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
}

/// A file to send: its path in the bundle, and where it is read here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub source: PathBuf,
}

/// `..` and `.` taken away without asking the file system (what the
/// receiver's tree, which has no links, will resolve them to).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn utf8(p: &Path) -> Result<String, String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: a bundle names files in UTF-8", p.display()))
}

/// What to send for `manifest` and the files it read (`Plan::files`):
/// the manifest's path in the bundle, and the entries. Files are laid
/// out as they sit around the manifest (their deepest common
/// directory is the bundle's root), so that `../common/motd.j2` still
/// reads the same file there.
pub fn contents(manifest: &Path, files: &[String]) -> Result<(String, Vec<Entry>), String> {
    let abs = std::path::absolute(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let abs = normalize(&abs);
    let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut wanted = vec![(abs.clone(), manifest.to_path_buf())];
    for f in files {
        if Path::new(f).is_absolute() {
            return Err(format!(
                "`{f}` is an absolute path: a pushed manifest reads its files from what is sent with it; put the file beside the manifest and name it relatively"
            ));
        }
        wanted.push((normalize(&dir.join(f)), dir.join(f)));
    }
    let mut root = dir.clone();
    for (p, _) in &wanted {
        while !p.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }
    let inside = |p: &Path| -> Result<String, String> { utf8(p.strip_prefix(&root).unwrap_or(p)) };
    let mut entries: Vec<Entry> = Vec::new();
    for (p, source) in &wanted {
        let path = inside(p)?;
        if path.is_empty() {
            return Err(format!("{}: not a file", source.display()));
        }
        if !entries.iter().any(|e| e.path == path) {
            entries.push(Entry {
                path,
                source: source.clone(),
            });
        }
    }
    Ok((inside(&abs)?, entries))
}

fn put_path(w: &mut impl Write, p: &str) -> io::Result<()> {
    let len =
        u16::try_from(p.len()).map_err(|_| io::Error::other(format!("{p}: path too long")))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(p.as_bytes())
}

/// Send `header` and `entries` (each file read as it is sent); the
/// bytes of files sent. A file past `limits` is refused here already,
/// with the same words the receiver would use.
pub fn write(
    w: &mut impl Write,
    header: &Header,
    entries: &[Entry],
    limits: &Limits,
) -> io::Result<u64> {
    let mut sizes = Vec::with_capacity(entries.len());
    for e in entries {
        let m = std::fs::metadata(&e.source)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", e.source.display())))?;
        if !m.is_file() {
            return Err(io::Error::other(format!(
                "{}: not a regular file",
                e.source.display()
            )));
        }
        sizes.push(m.len());
    }
    let total: u64 = sizes.iter().sum();
    if total > limits.max_bytes || entries.len() > limits.max_files {
        return Err(io::Error::other(format!(
            "the manifest and its files are {total} bytes in {} files, past the limit of {} bytes and {} files",
            entries.len(),
            limits.max_bytes,
            limits.max_files
        )));
    }
    let head = serde_json::to_vec(header).map_err(io::Error::other)?;
    w.write_all(MAGIC)?;
    w.write_all(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes())?;
    w.write_all(&head)?;
    for (e, size) in entries.iter().zip(sizes) {
        let f = std::fs::File::open(&e.source)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", e.source.display())))?;
        w.write_all(b"F")?;
        put_path(w, &e.path)?;
        w.write_all(&size.to_be_bytes())?;
        let sent = io::copy(&mut f.take(size), w)?;
        if sent != size {
            return Err(io::Error::other(format!(
                "{}: it shrank while being sent",
                e.source.display()
            )));
        }
    }
    w.write_all(b"E")?;
    w.flush()?;
    Ok(total)
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a vigie bundle (a different vigie version, or not vigie at the other end)")]
    Magic,
    #[error("the bundle ends early (the connection broke?)")]
    Truncated,
    #[error("bad header: {0}")]
    Header(String),
    #[error("`{path}`: {why}; refused")]
    Path { path: String, why: &'static str },
    #[error("`{path}` is a symbolic link to `{target}`: bundles carry regular files only; refused")]
    Link { path: String, target: String },
    #[error("unknown entry type {0:#04x}; refused")]
    Entry(u8),
    #[error("`{path}` would make the bundle {bytes} bytes, past its limit of {limit}; refused")]
    TooBig {
        path: String,
        bytes: u64,
        limit: u64,
    },
    #[error("more than {0} files and directories; refused")]
    TooMany(usize),
    #[error("the manifest `{0}` is not in the bundle")]
    NoManifest(String),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

fn eof(e: io::Error) -> BundleError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        BundleError::Truncated
    } else {
        BundleError::Io {
            path: PathBuf::from("<bundle>"),
            err: e,
        }
    }
}

fn get<const N: usize>(r: &mut impl Read) -> Result<[u8; N], BundleError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(eof)?;
    Ok(b)
}

fn get_path(r: &mut impl Read) -> Result<String, BundleError> {
    let len = usize::from(u16::from_be_bytes(get(r)?));
    let mut b = vec![0u8; len];
    r.read_exact(&mut b).map_err(eof)?;
    String::from_utf8(b).map_err(|e| BundleError::Path {
        path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        why: "not UTF-8",
    })
}

/// Why `p` may not be a path in a bundle, if it may not.
fn unsafe_path(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        return Some("an empty path");
    }
    if p.len() > MAX_PATH {
        return Some("a path too long");
    }
    if p.starts_with('/') {
        return Some("an absolute path");
    }
    if p.contains('\0') {
        return Some("a NUL in a path");
    }
    for part in p.split('/') {
        match part {
            "" => return Some("an empty path component"),
            "." | ".." => return Some("a `.` or `..` component (it could climb out)"),
            _ if part.len() > MAX_NAME => return Some("a name too long"),
            _ => {}
        }
    }
    None
}

fn checked(p: String) -> Result<String, BundleError> {
    match unsafe_path(&p) {
        Some(why) => Err(BundleError::Path { path: p, why }),
        None => Ok(p),
    }
}

/// Make `rel`'s parent directories under `dir` (0700), refusing
/// anything there that is not a directory made by a bundle; how many
/// it made.
// Writes only under the receiver's own fresh directory: never the
// host's state, and never reached by a run (audit or enforce).
#[allow(clippy::disallowed_methods)]
fn parents(dir: &Path, rel: &str) -> Result<usize, BundleError> {
    let mut made = 0;
    let mut at = dir.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BundleError::Path {
                    path: rel.to_owned(),
                    why: "a file stands where its directory would be",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&at)
                    .map_err(|err| BundleError::Io {
                        path: at.clone(),
                        err,
                    })?;
                made += 1;
            }
            Err(err) => return Err(BundleError::Io { path: at, err }),
        }
    }
    Ok(made)
}

/// Unpack a bundle into `dir` (fresh, private: the caller makes it and
/// removes it); its header. Refused bundles may leave files in `dir`,
/// never outside it.
// As `parents`: the bundle's files, in the caller's fresh directory.
#[allow(clippy::disallowed_methods)]
pub fn unpack(r: &mut impl Read, dir: &Path, limits: &Limits) -> Result<Header, BundleError> {
    let magic: [u8; MAGIC.len()] = get(r)?;
    if magic != MAGIC {
        return Err(BundleError::Magic);
    }
    let len = u32::from_be_bytes(get(r)?);
    if len > MAX_HEADER {
        return Err(BundleError::Header(format!(
            "{len} bytes, past the limit of {MAX_HEADER}"
        )));
    }
    let mut head = vec![0u8; len as usize];
    r.read_exact(&mut head).map_err(eof)?;
    let header: Header =
        serde_json::from_slice(&head).map_err(|e| BundleError::Header(e.to_string()))?;
    let manifest = checked(header.manifest.clone())?;
    let (mut bytes, mut files) = (0u64, 0usize);
    loop {
        let [kind] = get(r)?;
        match kind {
            b'F' => {
                let path = checked(get_path(r)?)?;
                let size = u64::from_be_bytes(get(r)?);
                bytes = bytes.saturating_add(size);
                if bytes > limits.max_bytes {
                    return Err(BundleError::TooBig {
                        path,
                        bytes,
                        limit: limits.max_bytes,
                    });
                }
                files += 1 + parents(dir, &path)?;
                if files > limits.max_files {
                    return Err(BundleError::TooMany(limits.max_files));
                }
                let at = dir.join(&path);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&at)
                    .map_err(|err| match err.kind() {
                        io::ErrorKind::AlreadyExists => BundleError::Path {
                            path: path.clone(),
                            why: "sent twice",
                        },
                        _ => BundleError::Io {
                            path: at.clone(),
                            err,
                        },
                    })?;
                let got = io::copy(&mut r.take(size), &mut f).map_err(|err| BundleError::Io {
                    path: at.clone(),
                    err,
                })?;
                if got != size {
                    return Err(BundleError::Truncated);
                }
            }
            b'L' => {
                let path = get_path(r)?;
                let target = get_path(r)?;
                return Err(BundleError::Link { path, target });
            }
            b'E' => break,
            other => return Err(BundleError::Entry(other)),
        }
    }
    if !std::fs::symlink_metadata(dir.join(&manifest)).is_ok_and(|m| m.is_file()) {
        return Err(BundleError::NoManifest(manifest));
    }
    Ok(header)
}

#[cfg(test)]
// The tests make the files a bundle is made of.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn header(manifest: &str) -> Header {
        Header {
            manifest: manifest.into(),
            host: "web1".into(),
            audit: true,
            tags: vec!["ssh".into()],
            skip_tags: Vec::new(),
        }
    }

    /// A bundle written by hand: what a hostile sender could send.
    fn forged(manifest: &str, entries: &[(u8, &str, &[u8])]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        let head = serde_json::to_vec(&header(manifest)).unwrap();
        b.extend_from_slice(&u32::try_from(head.len()).unwrap().to_be_bytes());
        b.extend_from_slice(&head);
        for (kind, path, data) in entries {
            b.push(*kind);
            b.extend_from_slice(&u16::try_from(path.len()).unwrap().to_be_bytes());
            b.extend_from_slice(path.as_bytes());
            if *kind == b'L' {
                b.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
                b.extend_from_slice(data);
            } else {
                b.extend_from_slice(&(data.len() as u64).to_be_bytes());
                b.extend_from_slice(data);
            }
        }
        b.push(b'E');
        b
    }

    /// Unpack into `outer/in`; `outer` shows whatever escaped.
    fn unpack_forged(
        bytes: &[u8],
        limits: &Limits,
    ) -> (tempfile::TempDir, Result<Header, BundleError>) {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        let r = unpack(&mut &bytes[..], &dir, limits);
        (outer, r)
    }

    fn outside(outer: &Path) -> Vec<String> {
        std::fs::read_dir(outer)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "in")
            .collect()
    }

    #[test]
    fn a_manifest_and_the_files_it_reads_arrive_where_they_were() {
        let src = tempfile::tempdir().unwrap();
        let d = src.path();
        std::fs::create_dir_all(d.join("site/files")).unwrap();
        std::fs::create_dir_all(d.join("common")).unwrap();
        std::fs::write(d.join("site/site.toml"), "[vars]\n").unwrap();
        std::fs::write(d.join("site/files/issue"), "hello\n").unwrap();
        std::fs::write(d.join("common/motd.j2"), "{{ host }}\n").unwrap();
        let files = vec!["files/issue".to_owned(), "../common/motd.j2".to_owned()];
        let (manifest, entries) = contents(&d.join("site/site.toml"), &files).unwrap();
        assert_eq!(manifest, "site/site.toml");
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["site/site.toml", "site/files/issue", "common/motd.j2"]
        );

        let mut wire = Vec::new();
        let h = header(&manifest);
        let sent = write(&mut wire, &h, &entries, &Limits::default()).unwrap();
        assert_eq!(sent, 7 + 6 + 11);
        let out = tempfile::tempdir().unwrap();
        let got = unpack(&mut &wire[..], out.path(), &Limits::default()).unwrap();
        assert_eq!(got, h);
        let site = out.path().join("site");
        assert_eq!(
            std::fs::read_to_string(site.join("files/issue")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            std::fs::read_to_string(site.join("../common/motd.j2")).unwrap(),
            "{{ host }}\n"
        );
    }

    #[test]
    fn an_absolute_file_is_refused_by_the_sender() {
        let e = contents(Path::new("/srv/site.toml"), &["/etc/motd".into()]).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn the_sender_refuses_what_the_receiver_would() {
        let src = tempfile::tempdir().unwrap();
        let m = src.path().join("m.toml");
        std::fs::write(&m, "x".repeat(100)).unwrap();
        let (_, entries) = contents(&m, &[]).unwrap();
        let tiny = Limits {
            max_bytes: 10,
            max_files: 10,
        };
        let e = write(&mut Vec::new(), &header("m.toml"), &entries, &tiny).unwrap_err();
        assert!(e.to_string().contains("past the limit"), "{e}");
    }

    #[test]
    fn paths_that_climb_out_are_refused_and_nothing_escapes() {
        for bad in [
            "../escaped",
            "a/../../escaped",
            "/tmp/escaped",
            "a//b",
            "./a",
            "",
        ] {
            let b = forged("m.toml", &[(b'F', "m.toml", b""), (b'F', bad, b"pwned")]);
            let (outer, r) = unpack_forged(&b, &Limits::default());
            assert!(matches!(r, Err(BundleError::Path { .. })), "{bad}: {r:?}");
            assert!(outside(outer.path()).is_empty(), "{bad}");
        }
        // The manifest's own path is checked the same way.
        let b = forged("../m.toml", &[(b'F', "m.toml", b"")]);
        let (_, r) = unpack_forged(&b, &Limits::default());
        assert!(matches!(r, Err(BundleError::Path { .. })), "{r:?}");
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let b = forged(
            "m.toml",
            &[(b'L', "m.toml", b"/etc/shadow"), (b'F', "m.toml/x", b"y")],
        );
        let (outer, r) = unpack_forged(&b, &Limits::default());
        let e = r.unwrap_err();
        assert!(matches!(e, BundleError::Link { .. }), "{e:?}");
        assert!(e.to_string().contains("/etc/shadow"), "{e}");
        assert!(!outer.path().join("in/m.toml").exists());
    }

    #[test]
    fn an_oversized_bundle_is_refused_before_its_bytes() {
        // Declares 1 TiB and sends nothing: refused on the size alone,
        // not by reading (or writing) any of it.
        let mut b = forged("m.toml", &[(b'F', "m.toml", b"")]);
        b.pop();
        b.push(b'F');
        b.extend_from_slice(&3u16.to_be_bytes());
        b.extend_from_slice(b"big");
        b.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let (outer, r) = unpack_forged(&b, &Limits::default());
        assert!(matches!(r, Err(BundleError::TooBig { .. })), "{r:?}");
        assert!(!outer.path().join("in/big").exists());

        let many: Vec<(u8, String)> = (0..4).map(|i| (b'F', format!("f{i}"))).collect();
        let entries: Vec<(u8, &str, &[u8])> = many
            .iter()
            .map(|(k, p)| (*k, p.as_str(), &b""[..]))
            .collect();
        let b = forged("f0", &entries);
        let (_, r) = unpack_forged(
            &b,
            &Limits {
                max_bytes: 100,
                max_files: 3,
            },
        );
        assert!(matches!(r, Err(BundleError::TooMany(3))), "{r:?}");

        // One file two thousand levels deep: its directories count.
        let deep = format!("{}f", "d/".repeat(2000));
        let b = forged("m.toml", &[(b'F', "m.toml", b""), (b'F', &deep, b"")]);
        let (outer, r) = unpack_forged(
            &b,
            &Limits {
                max_bytes: 100,
                max_files: 100,
            },
        );
        assert!(matches!(r, Err(BundleError::TooMany(100))), "{r:?}");
        let made = entries_under(&outer.path().join("in"));
        assert!(made <= 100 + 2048, "{made} entries made");
    }

    /// Entries under `dir`, at any depth.
    fn entries_under(dir: &Path) -> usize {
        let mut n = 0;
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                n += 1;
                if e.file_type().unwrap().is_dir() {
                    todo.push(e.path());
                }
            }
        }
        n
    }

    #[test]
    fn twice_the_same_file_or_a_file_under_a_file_is_refused() {
        let b = forged("m.toml", &[(b'F', "m.toml", b"a"), (b'F', "m.toml", b"b")]);
        let (outer, r) = unpack_forged(&b, &Limits::default());
        assert!(
            matches!(
                r,
                Err(BundleError::Path {
                    why: "sent twice",
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(std::fs::read(outer.path().join("in/m.toml")).unwrap(), b"a");
        let b = forged(
            "m.toml",
            &[(b'F', "m.toml", b"a"), (b'F', "m.toml/x", b"b")],
        );
        let (_, r) = unpack_forged(&b, &Limits::default());
        assert!(matches!(r, Err(BundleError::Path { .. })), "{r:?}");
    }

    #[test]
    fn no_byte_changed_anywhere_makes_it_panic_or_write_outside() {
        // Every byte of a valid bundle changed to a few values, and every
        // cut: a refusal or a bundle, never a panic, never a file beside
        // the directory.
        let good = forged(
            "d/m.toml",
            &[(b'F', "d/m.toml", b"[vars]\n"), (b'F', "d/e/f", b"xyz")],
        );
        let outer = tempfile::tempdir().unwrap();
        let mut n = 0;
        let mut try_one = |b: &[u8]| {
            n += 1;
            let dir = outer.path().join(format!("in-{n}"));
            std::fs::create_dir(&dir).unwrap();
            unpack(&mut &b[..], &dir, &Limits::default())
        };
        for i in 0..good.len() {
            for v in [0u8, b'.', b'/', 0xff, good[i].wrapping_add(1)] {
                let mut b = good.clone();
                b[i] = v;
                let _ = try_one(&b);
            }
            assert!(try_one(&good[..i]).is_err(), "cut at {i}");
        }
        assert!(try_one(&good).is_ok());
        let stray: Vec<String> = std::fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("in-"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn a_short_a_foreign_or_a_manifestless_bundle_is_refused() {
        let b = forged("m.toml", &[(b'F', "m.toml", b"hello")]);
        for cut in [3, MAGIC.len() + 2, b.len() - 4, b.len() - 1] {
            let (_, r) = unpack_forged(&b[..cut], &Limits::default());
            assert!(matches!(r, Err(BundleError::Truncated)), "{cut}: {r:?}");
        }
        let (_, r) = unpack_forged(b"GET / HTTP/1.1\r\n\r\n", &Limits::default());
        assert!(matches!(r, Err(BundleError::Magic)), "{r:?}");
        let b = forged("other.toml", &[(b'F', "m.toml", b"")]);
        let (_, r) = unpack_forged(&b, &Limits::default());
        assert!(matches!(r, Err(BundleError::NoManifest(_))), "{r:?}");
        let mut b = forged("m.toml", &[(b'F', "m.toml", b"")]);
        b.pop();
        b.push(b'X');
        let (_, r) = unpack_forged(&b, &Limits::default());
        assert!(matches!(r, Err(BundleError::Entry(b'X'))), "{r:?}");
    }
}
