//! Where repositories live: a repository string (`/srv/restic`,
//! `local:/srv/restic`, `sftp:user@host:/srv/restic`, `s3:…`, `rest:…`)
//! parsed into a [`Location`], and the storage behind it as one
//! implementation of rustic_core's [`WriteBackend`] trait.
//!
//! rustic_core needs little from storage: `list_with_size` of a file
//! type, `read_full`, `read_partial` (an offset and a length in a pack),
//! `write_bytes` (one whole file), `remove`, and `create` (the empty
//! layout). Files are content-addressed and never change once written
//! (only `config` is rewritten, and rarely), which is what makes a plain
//! `ReadBackend + WriteBackend` per scheme enough; `rustic_backend` is
//! not used because its default features bring two dozen OpenDAL
//! services into the build.
//!
//! One type per scheme, chosen by [`Location::backends`] — nothing above
//! this module knows which:
//!
//! - [`LocalBackend`], a directory with atomic writes;
//! - [`SftpBackend`], a long-lived `ssh -s HOST sftp` child (the user's
//!   ssh config, agent and ProxyJump apply, as to replication) speaking
//!   SFTP v3 on its pipes, with the same temporary file +
//!   `fsync@openssh.com` + `posix-rename@openssh.com` writes;
//! - [`S3Backend`], path-style S3 requests signed with SigV4 over the
//!   workspace's reqwest (blocking), credentials from vigie's secrets;
//! - [`RestBackend`], restic's REST protocol (`GET`/`HEAD`/`POST`/`DELETE`
//!   `/{type}/{name}`, listings as `application/vnd.x.restic.rest.v2`)
//!   over the same client, with basic authentication.
//!
//! Each is tested against a real server (sshd on loopback, moto's S3, a
//! strict REST server of `vigie-testkit` that restic itself is run
//! against), with restic reading what vigie wrote.

mod local;
mod rest;
mod s3;
mod sftp;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
pub use local::LocalBackend;
pub use rest::{RestBackend, RestCredentials, RestTarget, scrub};
use rustic_core::{Id, RusticResult, WriteBackend};
pub use s3::{S3Backend, S3Credentials, S3Target};
pub use sftp::{SftpBackend, SftpTarget};

/// The `locks/` directory of a repository: rustic_core 0.13 names no
/// lock file type (it writes no locks), so each storage reaches it
/// through this trait as well (see `crate::lock`). The same rules hold
/// as for its other files: named by the id of their bytes, written
/// whole or not at all, a missing one removed without error.
pub trait LockBackend: Send + Sync + 'static {
    /// The ids of the lock files.
    fn list_locks(&self) -> RusticResult<Vec<Id>>;
    /// A lock file's stored bytes.
    fn read_lock(&self, id: &Id) -> RusticResult<Bytes>;
    /// Writes a lock file.
    fn write_lock(&self, id: &Id, content: Bytes) -> RusticResult<()>;
    /// Removes a lock file; one already gone is removed.
    fn remove_lock(&self, id: &Id) -> RusticResult<()>;
}

/// The directories restic creates in a new repository, besides `data/xx`.
pub(crate) const DIRS: [&str; 5] = ["keys", "snapshots", "index", "locks", "data"];

/// Where a file lives inside a repository, as restic lays it out:
/// `config`, `data/xx/ID` for packs (under the first two hex digits of
/// their id), `TYPE/ID` for the others.
pub(crate) fn layout(tpe: rustic_core::FileType, id: &Id) -> String {
    let hex = id.to_hex();
    let hex = hex.as_str();
    match tpe {
        rustic_core::FileType::Config => "config".to_owned(),
        rustic_core::FileType::Pack => format!("data/{}/{hex}", &hex[..2]),
        _ => format!("{}/{hex}", tpe.dirname()),
    }
}

/// The id a file name stands for: only the canonical 64 lowercase hex
/// digits (temporary files and anything else are not listed).
pub(crate) fn id_of(name: &str) -> Option<Id> {
    let id: Id = name.parse().ok()?;
    (id.to_hex().as_str() == name).then_some(id)
}

/// Schemes restic (or rclone) gives repository strings; a string with
/// one of these before its first `:` is not a local path.
const REMOTE_SCHEMES: [&str; 10] = [
    "sftp", "s3", "rest", "b2", "azure", "gs", "swift", "rclone", "opendal", "webdav",
];

/// Where a repository lives, parsed from its string as restic parses it:
/// a known scheme before the first `:`, else a local path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory (`/srv/restic` or `local:/srv/restic`).
    Local(PathBuf),
    /// A directory on another host, over SFTP through the system `ssh`
    /// (`sftp:nas:/srv/restic`, `sftp://user@nas:2222//srv/restic`).
    Sftp(SftpTarget),
    /// A bucket of an S3-compatible service (`s3:host/bucket/prefix`,
    /// `s3:https://host:port/bucket`), path-style.
    S3(S3Target),
    /// A repository on a server speaking restic's REST protocol
    /// (`rest:http://host:8000/`, `rest:https://user:pass@host/repo/`).
    Rest(RestTarget),
    /// A kind of repository this version cannot reach yet.
    Unsupported {
        /// `sftp`, `s3`, …
        scheme: String,
    },
}

impl Location {
    /// Parses a repository string; an empty one is `None`.
    pub fn parse(repository: &str) -> Option<Location> {
        if repository.is_empty() {
            return None;
        }
        if let Some(path) = repository.strip_prefix("local:") {
            return (!path.is_empty()).then(|| Location::Local(PathBuf::from(path)));
        }
        match repository.split_once(':') {
            // A string that names no host and path is no repository.
            Some(("sftp", rest)) => SftpTarget::parse(rest).map(Location::Sftp),
            Some(("s3", rest)) => S3Target::parse(rest).map(Location::S3),
            Some(("rest", rest)) => RestTarget::parse(rest).map(Location::Rest),
            Some((scheme, _)) if REMOTE_SCHEMES.contains(&scheme) => Some(Location::Unsupported {
                scheme: scheme.to_owned(),
            }),
            _ => Some(Location::Local(PathBuf::from(repository))),
        }
    }

    /// The storage of this location, or `None` for an unsupported one
    /// or an `s3:` one (which needs credentials: [`Location::backends`]).
    pub fn backend(&self) -> Option<Arc<dyn WriteBackend>> {
        self.backends(&Access::default()).ok().map(|b| b.files)
    }

    /// The locks of this location, as [`Location::backend`].
    pub fn lock_backend(&self) -> Option<Arc<dyn LockBackend>> {
        self.backends(&Access::default()).ok().map(|b| b.locks)
    }

    /// The storage of this location, reached with `access` (the ssh
    /// command of `sftp:`, the keys of `s3:`, the user and password of
    /// `rest:`), its files and its locks
    /// through one connection; why not, when it cannot be.
    pub fn backends(&self, access: &Access) -> Result<Backends, String> {
        fn both<B: WriteBackend + LockBackend>(b: B) -> Backends {
            let b = Arc::new(b);
            Backends {
                files: Arc::clone(&b) as Arc<dyn WriteBackend>,
                locks: b,
            }
        }
        match self {
            Location::Local(path) => Ok(both(LocalBackend::new(path.clone()))),
            Location::Sftp(target) => {
                Ok(both(SftpBackend::new(target.clone(), access.ssh.clone())))
            }
            Location::S3(target) => {
                let credentials = access.s3.clone().ok_or_else(|| {
                    "an s3: repository needs an access key and a secret key".to_owned()
                })?;
                Ok(both(S3Backend::new(
                    target.clone(),
                    credentials,
                    access.ca.as_deref(),
                )?))
            }
            Location::Rest(target) => Ok(both(RestBackend::new(
                target.clone(),
                access.rest.clone(),
                access.ca.as_deref(),
            )?)),
            Location::Unsupported { scheme } => {
                Err(format!("{scheme}: repositories are not supported yet"))
            }
        }
    }
}

/// One repository's storage: its files (rustic_core's trait) and its
/// locks (ours), the same object behind both.
#[derive(Clone)]
pub struct Backends {
    pub files: Arc<dyn WriteBackend>,
    pub locks: Arc<dyn LockBackend>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("files", &self.files.location())
            .finish_non_exhaustive()
    }
}

/// How to reach a remote repository, besides its location.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The ssh program and its options for `sftp:` (empty: `ssh`).
    pub ssh: Vec<String>,
    /// The keys and region for `s3:`.
    pub s3: Option<S3Credentials>,
    /// The user and password for `rest:`, instead of the URL's.
    pub rest: Option<RestCredentials>,
    /// A PEM file of CA certificates trusted beside the system's roots,
    /// for an `s3:` or `rest:` server with a private CA (restic's
    /// `--cacert`).
    pub ca: Option<PathBuf>,
}

/// The blocking HTTP client of `s3:` and `rest:`: the system's roots
/// (and `ca`'s), no redirects followed, bounded waits.
pub(crate) fn http_client(
    ca: Option<&std::path::Path>,
) -> Result<reqwest::blocking::Client, String> {
    let tls = vigie_net::tls_client_config(&vigie_net::TlsOptions {
        ca,
        ..vigie_net::TlsOptions::https()
    })
    .map_err(|e| e.to_string())?;
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_mins(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_restic() {
        let local = |p: &str| Some(Location::Local(PathBuf::from(p)));
        let remote = |s: &str| {
            Some(Location::Unsupported {
                scheme: s.to_owned(),
            })
        };
        assert_eq!(Location::parse("/srv/restic"), local("/srv/restic"));
        assert_eq!(Location::parse("local:/srv/restic"), local("/srv/restic"));
        assert_eq!(Location::parse("relative/dir"), local("relative/dir"));
        // A colon in a path is not a scheme.
        assert_eq!(Location::parse("/srv/a:b"), local("/srv/a:b"));
        assert_eq!(Location::parse("backups:2024"), local("backups:2024"));
        assert_eq!(
            Location::parse("sftp:nas:/srv/restic"),
            Some(Location::Sftp(SftpTarget {
                host: "nas".to_owned(),
                port: None,
                path: "/srv/restic".to_owned(),
            }))
        );
        assert_eq!(Location::parse("sftp:nas"), None);
        assert_eq!(
            Location::parse("s3:https://s3.example.org/bkt"),
            Some(Location::S3(S3Target {
                endpoint: "https://s3.example.org".to_owned(),
                bucket: "bkt".to_owned(),
                prefix: String::new(),
            }))
        );
        assert_eq!(Location::parse("s3:https://s3.example.org/b"), None);
        assert_eq!(Location::parse("b2:bucket:path"), remote("b2"));
        assert_eq!(
            Location::parse("rest:http://localhost:8000/"),
            Some(Location::Rest(RestTarget {
                url: "http://localhost:8000/".to_owned(),
                credentials: None,
            }))
        );
        assert_eq!(Location::parse("rest:localhost:8000/"), None);
        assert_eq!(Location::parse(""), None);
        assert_eq!(Location::parse("local:"), None);
    }

    #[test]
    fn local_sftp_and_rest_have_a_backend() {
        let local = Location::parse("/srv/restic").unwrap().backend().unwrap();
        assert_eq!(local.location(), "local:/srv/restic");
        let sftp = Location::parse("sftp:nas:/r").unwrap().backend().unwrap();
        assert_eq!(sftp.location(), "sftp:nas:/r");
        let rest = Location::parse("rest:https://u:secret@nas/r")
            .unwrap()
            .backend()
            .unwrap();
        assert_eq!(rest.location(), "rest:https://nas/r/");
        // An s3: bucket needs its keys; a scheme not reached yet has none.
        assert!(Location::parse("s3:h/bkt").unwrap().backend().is_none());
        assert!(Location::parse("b2:b:p").unwrap().backend().is_none());
    }
}
