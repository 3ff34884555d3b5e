//! A file fetched from a URL, with a required SHA-256: compliant when
//! the file at `path` has that checksum (no network then), and in
//! enforce mode fetched into a temporary beside it, verified, and only
//! then renamed over it — a wrong, short or half-written file never
//! reaches `path`. The fetching itself is the caller's ([`Fetch`]):
//! this crate depends on no HTTP client.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::file::{Perms, refuse_link};
use super::{Drift, Res, State};
use crate::sys;
use crate::write::{KeepOld, Writer};

/// What fetches a URL's body into `out` (the CLI's is an HTTP client).
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// Write the body of `url` into `out`; an error (a refused
    /// connection, a status other than 2xx, a body cut short) says why.
    fn fetch(&self, url: &str, out: &mut dyn std::io::Write) -> Result<u64, String>;
}

/// A SHA-256, as declared (`sha256:` and 64 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parse `sha256:HEX`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(hex) = s.strip_prefix("sha256:") else {
            return Err(format!(
                "`{s}`: write the checksum as sha256:HEX (64 hex digits; `sha256sum FILE` prints them)"
            ));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{s}`: sha256: is followed by 64 hex digits (`sha256sum FILE` prints them)"
            ));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self(out))
    }

    pub fn of_digest(d: &ring::digest::Digest) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// The checksum of a file's content (read, never written).
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        let mut f = std::fs::File::open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(Self::of_digest(&ctx.finish()))
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Whether `url` is one a download takes: `http://` or `https://` and
/// a host, without spaces.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}`: a download's URL starts with https:// or http://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` is not a URL with a host"));
    }
    Ok(())
}

/// The URL as logs and reports show it: without a password.
pub use vigie_core::url_without_credentials as shown_url;

#[derive(Clone, Debug)]
pub struct DownloadSpec {
    pub url: String,
    pub path: PathBuf,
    pub sha256: Sha256,
    pub perms: Perms,
    pub keep: KeepOld,
}

impl State for DownloadSpec {
    fn drift(&self) -> Res<Drift> {
        let shown = self.path.display().to_string();
        let Some(meta) = sys::meta_opt(&self.path).map_err(|e| e.to_string())? else {
            return Ok(Drift::one(format!(
                "missing (from {})",
                shown_url(&self.url)
            )));
        };
        refuse_link(&self.path, &meta)?;
        if !meta.is_file() {
            return Err(format!("{shown} exists and is not a regular file"));
        }
        let mut d = Drift::none();
        let now = Sha256::of_file(&self.path).map_err(|e| e.to_string())?;
        if now != self.sha256 {
            d.add(format!("checksum {now}, declared {}", self.sha256));
        }
        self.perms.drift(&meta, &mut d);
        Ok(d)
    }

    fn fix(&self, w: &Writer, _drift: &Drift) -> Res<()> {
        let now = sys::meta_opt(&self.path).map_err(|e| e.to_string())?;
        let meta = self.perms.resolve(now.as_ref(), 0o644)?;
        let same =
            now.is_some() && Sha256::of_file(&self.path).map_err(|e| e.to_string())? == self.sha256;
        if same {
            w.set_meta(&self.path, meta).map_err(|e| e.to_string())
        } else {
            w.download(&self.url, &self.path, self.sha256, meta, &self.keep)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_parse_and_print_back() {
        let s = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Sha256::parse(&s).unwrap().to_string(), s);
        assert!(Sha256::parse("md5:00").unwrap_err().contains("sha256:HEX"));
        assert!(Sha256::parse("sha256:abc").unwrap_err().contains("64 hex"));
        let z = format!("sha256:{}", "zz".repeat(32));
        assert!(Sha256::parse(&z).is_err());
    }

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        assert!(check_url("https://example.org/a.tar.gz").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("ftp://example.org/x").is_err());
        assert!(check_url("https:///x").is_err());
        assert!(check_url("https://a b/x").is_err());
        assert_eq!(
            shown_url("https://u:secret@example.org/x@y"),
            "https://<redacted>@example.org/x@y"
        );
        assert_eq!(shown_url("https://example.org/x"), "https://example.org/x");
    }

    #[test]
    fn a_file_with_the_checksum_is_compliant_without_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let w = Writer::for_mode(crate::Mode::Enforce).unwrap();
        let meta = crate::write::Meta {
            mode: 0o644,
            uid: None,
            gid: None,
        };
        w.write_file(&p, b"hello\n", meta, &KeepOld::No).unwrap();
        let spec = DownloadSpec {
            // Nothing listens there: a fetch would fail.
            url: "http://127.0.0.1:1/f".into(),
            path: p.clone(),
            sha256: Sha256::parse(
                "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            )
            .unwrap(),
            perms: Perms::default(),
            keep: KeepOld::No,
        };
        assert!(spec.drift().unwrap().is_none());
        let checked = super::super::check_apply(&spec, Some(&w));
        assert_eq!(checked.status, super::super::Status::Compliant);
    }
}
