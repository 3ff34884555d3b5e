//! A real OpenSSH server on a loopback port, started by a test: a
//! throwaway host key and user key, a known_hosts file and an ssh_config
//! the test hands to `ssh -F`, so nothing of the machine's own ssh setup
//! is read or changed. Tests `require!(Need::Sshd)`; `scripts/test`
//! installs openssh-server.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::KillOnDrop;

pub struct Sshd {
    pub port: u16,
    /// Ends the server when this is dropped, before `dir` goes.
    _child: KillOnDrop,
    pub dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path));
}

impl Sshd {
    /// Start sshd on a free loopback port, accepting `client_pub` keys.
    pub fn start(authorized_keys: &str) -> Sshd {
        let sshd = crate::need::installed(&["/usr/sbin/sshd", "/usr/bin/sshd"])
            .expect("sshd is not installed: a test says `require!(Need::Sshd)` first");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        std::fs::write(d.join("authorized_keys"), authorized_keys).expect("keys");
        // sshd refuses keys in group/world-writable places.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        std::fs::create_dir_all("/run/sshd").ok();
        // AcceptEnv: a client's `SetEnv` gives each "host" on this one
        // machine a cache and a temporary directory of its own
        // (`vigie converge push`'s tests).
        let conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nAllowTcpForwarding yes\nSubsystem sftp internal-sftp\nAcceptEnv XDG_CACHE_HOME TMPDIR\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), conf).expect("config");
        let child = KillOnDrop::spawn_logging(
            Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config")),
            &d.join("sshd.log"),
            "sshd",
        );
        let s = Sshd {
            port,
            _child: child,
            dir,
        };
        crate::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        s
    }

    /// This server's host key line for a known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("pub");
        format!("[127.0.0.1]:{} {}", self.port, key.trim())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// A client identity and an ssh_config naming hosts on local sshds.
pub struct Client {
    pub dir: tempfile::TempDir,
}

impl Client {
    pub fn new() -> Client {
        let dir = tempfile::tempdir().expect("temp dir");
        keygen(&dir.path().join("id"));
        Client { dir }
    }

    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub")).expect("pub")
    }

    /// Write `ssh_config` with `hosts` (alias, sshd, optional jump alias)
    /// and a known_hosts file for them; its path, for `ssh -F`.
    pub fn config(&self, hosts: &[(&str, &Sshd, Option<&str>)]) -> PathBuf {
        let d = self.dir.path();
        let known: Vec<String> = hosts.iter().map(|(_, s, _)| s.known_hosts_line()).collect();
        std::fs::write(d.join("known_hosts"), known.join("\n") + "\n").expect("known_hosts");
        let mut conf = String::new();
        for (alias, s, jump) in hosts {
            let _ = write!(
                conf,
                "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {}/known_hosts\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n",
                s.port,
                d.display(),
                d.display()
            );
            if let Some(j) = jump {
                let _ = writeln!(conf, "  ProxyJump {j}");
            }
        }
        let path = d.join("ssh_config");
        std::fs::write(&path, conf).expect("ssh_config");
        path
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}
