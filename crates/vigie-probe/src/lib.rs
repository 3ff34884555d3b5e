//! Check implementations. A probe never panics and never returns an
//! error: whatever goes wrong becomes a failing [`Outcome`] whose message
//! says what happened. Timeouts are the engine's business: it drops a
//! probe's future when its time is up, and every probe is written so that
//! dropping it releases what it held (sockets, child processes).
//!
//! Expensive set-up (TLS roots, HTTP clients with their connection pools,
//! DNS resolvers) happens once in [`prepare`], not on every run.

use std::sync::Arc;
use std::time::Duration;

use vigie_config::{Check, Probe};
use vigie_core::{Board, Outcome};

mod backup;
mod cert;
pub mod command;
mod heartbeat;
mod host;
mod http;
mod net;
mod ping;
mod tls;

pub use cert::not_after_unix;
pub use heartbeat::{
    HeartbeatSignals, MAX_BODY as HEARTBEAT_MAX_BODY, evaluate as evaluate_heartbeat,
};
pub use ping::icmp_access;
// Every probe's error messages; `vigie_net` owns it.
pub use vigie_net::chain;

/// Resources shared by every prepared check: TLS roots and HTTP clients,
/// and the board where replication jobs report (read by `sync` checks).
pub struct Shared {
    http: http::Clients,
    tls: tls::Configs,
    board: Board,
}

impl Shared {
    /// What the checks prepared with it share; `sync` checks read `board`.
    pub fn new(board: Board) -> Arc<Self> {
        Arc::new(Self {
            http: http::Clients::default(),
            tls: tls::Configs::default(),
            board,
        })
    }
}

/// A check made ready to run: its clients and resolvers are built.
pub struct Prepared {
    kind: Kind,
}

enum Kind {
    Http(Box<http::Prepared>),
    Tcp(vigie_config::TcpProbe),
    Tls(Box<tls::Prepared>),
    Dns(Box<net::DnsPrepared>),
    Ping(vigie_config::PingProbe),
    Command(vigie_config::CommandProbe),
    Systemd(vigie_config::SystemdProbe),
    Process(vigie_config::ProcessProbe),
    Disk(vigie_config::DiskProbe),
    Memory(vigie_config::MemoryProbe),
    Load(vigie_config::LoadProbe),
    FileAge(vigie_config::FileAgeProbe),
    /// Judged by the engine from the pings it received.
    Heartbeat,
    /// Judged by the engine over its series store.
    Rule,
    /// A replication job, as it reports itself on the board.
    Sync(String, Board),
    /// A backup job's last run, or (with a maximum age) its last good
    /// snapshot's age, as its runs report on the board.
    Backup(vigie_config::BackupProbe, Board),
    /// A converge job's last run, as it reports on the board.
    Converge(String, Board),
}

/// Why a check could not be made ready (a CA file that went missing, …).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PrepareError(pub String);

impl From<vigie_net::TlsError> for PrepareError {
    fn from(e: vigie_net::TlsError) -> Self {
        PrepareError(e.0)
    }
}

/// Build what `check` needs to run. Only fails on local set-up problems.
pub fn prepare(check: &Check, shared: &Shared) -> Result<Prepared, PrepareError> {
    let kind = match &check.probe {
        Probe::Http(h) => Kind::Http(Box::new(http::prepare(h, check.timeout.std(), shared)?)),
        Probe::Tcp(t) => Kind::Tcp(t.clone()),
        Probe::Tls(t) => Kind::Tls(Box::new(tls::prepare(t, shared)?)),
        Probe::Dns(d) => Kind::Dns(Box::new(net::prepare_dns(d, check.timeout.std())?)),
        Probe::Ping(p) => Kind::Ping(p.clone()),
        Probe::Command(c) => Kind::Command(c.clone()),
        Probe::Systemd(s) => Kind::Systemd(s.clone()),
        Probe::Process(p) => Kind::Process(p.clone()),
        Probe::Disk(d) => Kind::Disk(d.clone()),
        Probe::Memory(m) => Kind::Memory(m.clone()),
        Probe::Load(l) => Kind::Load(l.clone()),
        Probe::FileAge(f) => Kind::FileAge(f.clone()),
        Probe::Heartbeat(_) => Kind::Heartbeat,
        Probe::Rule(_) => Kind::Rule,
        Probe::Sync(s) => Kind::Sync(s.job.clone(), shared.board.clone()),
        Probe::Backup(b) => Kind::Backup(b.clone(), shared.board.clone()),
        Probe::Converge(c) => Kind::Converge(c.job.clone(), shared.board.clone()),
    };
    Ok(Prepared { kind })
}

impl Prepared {
    /// Whether the engine judges this check itself (heartbeats, rules).
    pub fn is_passive(&self) -> bool {
        matches!(self.kind, Kind::Heartbeat | Kind::Rule)
    }

    /// Run the probe once. `timeout` is only used by probes that pace
    /// themselves (ping); the engine enforces it for all.
    pub async fn run(&self, timeout: Duration) -> Outcome {
        match &self.kind {
            Kind::Http(p) => p.run().await,
            Kind::Tcp(t) => net::tcp(t).await,
            Kind::Tls(p) => p.run().await,
            Kind::Dns(d) => d.run().await,
            Kind::Ping(p) => ping::run(p, timeout).await,
            Kind::Command(c) => command::run(c).await,
            Kind::Systemd(s) => command::systemd(s).await,
            Kind::Process(p) => blocking(host::process, p.clone()).await,
            Kind::Disk(d) => blocking(host::disk, d.clone()).await,
            Kind::Memory(m) => host::memory(m),
            Kind::Load(l) => host::load(l),
            Kind::FileAge(f) => blocking(host::file_age, f.clone()).await,
            Kind::Heartbeat => Outcome::fail(
                "heartbeats are judged by the running daemon from the pings it receives",
            ),
            Kind::Rule => Outcome::fail(
                "rules are judged by the engine over the series store, which this run was not given",
            ),
            Kind::Sync(job, board) => sync_report(board, job),
            Kind::Backup(b, board) => backup::judge(board, b, vigie_core::Timestamp::now()),
            Kind::Converge(job, board) => converge_report(board, job),
        }
    }
}

/// A converge job's last run, as the job judged it (failing while the
/// host differs from its manifest); none yet is no failure: the first
/// run comes at the daemon's start.
fn converge_report(board: &Board, job: &str) -> Outcome {
    board.report(&vigie_core::converge_report(job)).map_or_else(
        || {
            Outcome::ok(format!(
                "converge {job} has not run yet (it runs inside `vigie run`)"
            ))
        },
        |(o, _)| o,
    )
}

/// A replication job's latest word about itself; silence for a minute is
/// a failure too (the job is stuck or gone).
fn sync_report(board: &Board, job: &str) -> Outcome {
    match board.report(&format!("sync.{job}")) {
        None => Outcome::fail(format!(
            "replication {job} is not running here (it runs inside `vigie run` or `vigie sync {job}`)"
        )),
        Some((_, at)) if at.age(vigie_core::Timestamp::now()) > Duration::from_mins(1) => {
            Outcome::fail(format!(
                "replication {job} has said nothing for {}s: stuck",
                at.age(vigie_core::Timestamp::now()).as_secs()
            ))
        }
        Some((o, _)) => o,
    }
}

/// Run what may block (a walk of a big tree, statvfs on a hung NFS
/// mount) off the async threads.
async fn blocking<T: Send + 'static>(f: fn(&T) -> Outcome, arg: T) -> Outcome {
    tokio::task::spawn_blocking(move || f(&arg))
        .await
        .unwrap_or_else(|e| Outcome::fail(format!("probe crashed: {e}")))
}

/// "1.23s", "45ms": how long something took, for messages.
pub(crate) fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_check_reads_the_board_it_was_given() {
        let board = Board::new();
        assert!(!sync_report(&board, "web").ok, "no job reported yet");
        board.publish("sync.web", Outcome::ok("in step"));
        let o = sync_report(&board, "web");
        assert!(o.ok && o.message == "in step", "{o:?}");
        assert!(!sync_report(&Board::new(), "web").ok, "another board");
        board.withdraw("sync.web");
        assert!(!sync_report(&board, "web").ok, "the job stopped");
    }
}
