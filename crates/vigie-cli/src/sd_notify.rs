//! systemd's readiness protocol (`sd_notify(3)`), with std alone: one
//! datagram of `KEY=VALUE` lines to the unix socket `$NOTIFY_SOCKET`
//! names (a path, or an abstract name written `@name`). The unit is
//! `Type=notify`: `vigie run` says `READY=1` once its configuration is
//! loaded and its API listens, `RELOADING=1` then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` on SIGTERM. Without `$NOTIFY_SOCKET` (not
//! under systemd) every call does nothing.
//!
//! The variable is for vigie alone: `vigie_config::scrub_secret_env`
//! removes it from every child's environment, so a check or a repair
//! that speaks the protocol itself cannot talk for vigie.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
pub(crate) const VAR: &str = "NOTIFY_SOCKET";

/// Where this process reports to systemd, if anywhere.
#[derive(Debug)]
pub(crate) struct Notifier {
    to: Option<(UnixDatagram, SocketAddr, String)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`. A value that names no socket vigie can
    /// reach is logged (systemd would wait for a `READY=1` that never
    /// comes and fail the start at its timeout: the log says why).
    pub(crate) fn from_env() -> Self {
        let Some(value) = std::env::var_os(VAR).filter(|v| !v.is_empty()) else {
            return Self { to: None };
        };
        let value = value.to_string_lossy().into_owned();
        match Self::to(&value) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%value, error = %e, "cannot report readiness to systemd through NOTIFY_SOCKET");
                Self { to: None }
            }
        }
    }

    /// To the socket `value` names: `/path` or `@abstract`.
    pub(crate) fn to(value: &str) -> io::Result<Self> {
        let addr = if let Some(name) = value.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if value.starts_with('/') {
            SocketAddr::from_pathname(value)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@name)",
            ));
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Self {
            to: Some((socket, addr, value.to_owned())),
        })
    }

    /// Started, or done reloading: `status` is what `systemctl status`
    /// shows beside the unit.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&message(&["READY=1"], status));
    }

    /// A reload began (SIGHUP); `ready` ends it.
    pub(crate) fn reloading(&self) {
        self.send(&message(&["RELOADING=1"], "reloading the configuration"));
    }

    /// Shutting down (SIGTERM, SIGINT).
    pub(crate) fn stopping(&self) {
        self.send(&message(&["STOPPING=1"], "shutting down"));
    }

    fn send(&self, msg: &str) {
        let Some((socket, addr, value)) = &self.to else {
            return;
        };
        if let Err(e) = socket.send_to_addr(msg.as_bytes(), addr) {
            tracing::warn!(socket = %value, error = %e, "cannot report to systemd");
        }
    }
}

/// The datagram: each assignment on its line, then `STATUS=` (a line of
/// its own: a newline in it would start another assignment).
fn message(assignments: &[&str], status: &str) -> String {
    let mut msg = String::new();
    for a in assignments {
        msg.push_str(a);
        msg.push('\n');
    }
    msg.push_str("STATUS=");
    msg.extend(status.chars().map(|c| if c.is_control() { ' ' } else { c }));
    msg.push('\n');
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::time::Duration;

    fn received(server: &UnixDatagram) -> String {
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn each_message_reaches_a_socket_at_a_path_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        n.ready("3 checks, API on 127.0.0.1:9470");
        n.reloading();
        n.ready("4 checks");
        n.stopping();
        assert_eq!(
            received(&server),
            "READY=1\nSTATUS=3 checks, API on 127.0.0.1:9470\n"
        );
        assert_eq!(
            received(&server),
            "RELOADING=1\nSTATUS=reloading the configuration\n"
        );
        assert_eq!(received(&server), "READY=1\nSTATUS=4 checks\n");
        assert_eq!(received(&server), "STOPPING=1\nSTATUS=shutting down\n");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        let name = format!("vigie-test-notify-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::to(&format!("@{name}")).unwrap();
        n.ready("up");
        assert_eq!(received(&server), "READY=1\nSTATUS=up\n");
    }

    #[test]
    fn a_newline_in_the_status_cannot_add_an_assignment() {
        assert_eq!(
            message(&["READY=1"], "bad\nSTOPPING=1"),
            "READY=1\nSTATUS=bad STOPPING=1\n"
        );
    }

    #[test]
    fn a_relative_path_or_another_family_is_refused() {
        for v in ["notify.sock", "vsock:2:1234", ""] {
            let e = Notifier::to(v).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{v}: {e}");
        }
    }
}
