//! The subcommands that touch the engine or the store.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use vigie_config::{Config, Probe};
use vigie_core::{CheckState, Timestamp};
use vigie_engine::Engine;

use crate::output::{ago, millis, when};
use crate::{
    Cli, Failure, MaintenanceAction, Result, exit, load, out, out_json, out_table, state_dir,
};

/// One thread runs every check and the HTTP server: the work is waiting
/// on sockets, and a single thread spares the wake-ups between workers
/// that dominate the CPU cost of thousands of small probes. Anything that
/// may block (filesystem walks, statvfs, name look-ups) runs on tokio's
/// blocking pool.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("vigie")
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

/// Write `contents` to `path` through a temporary file and a rename, so a
/// reader never sees half of it.
pub(crate) fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    vigie_store::write_atomic(path, contents.as_bytes(), 0o644)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The commands the engine's messages suggest, in this CLI's syntax.
fn hints() -> vigie_engine::Hints {
    vigie_engine::Hints {
        ack: Some("vigie ack {id}".into()),
        fail_back: Some("vigie failover switch {target} --to primary".into()),
        heartbeat_url: Some("vigie heartbeat-url {check}".into()),
    }
}

/// The file in the state directory that tells where the server listens.
pub(crate) const ADDR_FILE: &str = "http.addr";

pub(crate) fn run(cli: &Cli) -> Result<u8> {
    let loaded = load(cli)?;
    let mut config = loaded.config;
    let dir = state_dir(cli, &config);
    // Held for the daemon's life: a second daemon on this state directory
    // would resume the same incidents and page twice, and `vigie status`
    // asks this lock whether the results it shows are still current.
    let _daemon = lock_state_dir(&dir)?;
    // Recorded beside the API's address, for the CLI to find this daemon.
    let source = crate::config_path(cli);
    let rt = runtime()?;
    rt.block_on(async move {
        let failover = std::sync::Arc::new(vigie_failover::FailoverActions::new(dir.clone()).map_err(Failure::runtime)?);
        let mut plugins = vigie_engine::Plugins::default();
        plugins.register(failover.clone());
        // Where the replication and backup jobs report, for their checks.
        let board = vigie_core::Board::new();
        plugins.register(crate::backup::schedule::plugin(dir.clone(), board.clone()));
        let engine = Engine::start_with(&config, &dir, plugins, hints(), board.clone()).map_err(|e| {
            Failure::runtime(e.to_string()).hint("check that the state directory is writable, or pass --state-dir")
        })?;
        // `/metrics`, which the server shows and the remote writes send.
        let metrics = vigie_web::Metrics::new(engine.clone());
        let mut server = start_server(&metrics, &config, &dir, &failover, source.as_deref()).await?;
        let mut remote = start_remote_writes(&config, &metrics);
        // dyndns lives beside the engine: it is no check, it keeps a record.
        let mut dyndns = tokio::spawn(vigie_failover::dyndns::run_all(std::sync::Arc::new(config.clone())));
        // Replication jobs, each on a thread of its own.
        let mut syncs = start_syncs(&config, &dir, &board);
        // Backup jobs, each at its time, on the blocking pool.
        let mut backups = crate::backup::schedule::start(&config, &dir, &board);
        // Converge jobs (drift as a check), each every `every`.
        let mut drifts = crate::drift::start(&config, &dir, &board);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        tracing::info!(node = %config.node.name, checks = config.checks.len(), state_dir = %dir.display(), "vigie running");
        // Under systemd (Type=notify): started only now, the configuration
        // loaded and the API listening.
        let systemd = crate::sd_notify::Notifier::from_env();
        systemd.ready(&running_status(&config, &server));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    systemd.reloading();
                    if let Some(new) = reload(cli) {
                        if let Err(e) = engine.reload(&new) {
                            tracing::error!(error = %e, "reload failed; keeping the running configuration");
                            systemd.ready(&format!("{}; the last reload failed", running_status(&config, &server)));
                            continue;
                        }
                        let server_changed = new.server.listen != config.server.listen
                            || new.server.tls.as_ref().map(|t| (&t.cert, &t.key)) != config.server.tls.as_ref().map(|t| (&t.cert, &t.key))
                            || new.server.token.as_ref().map(|t| t.expose().to_owned()) != config.server.token.as_ref().map(|t| t.expose().to_owned());
                        if server_changed {
                            server.stop().await;
                            server = start_server(&metrics, &new, &dir, &failover, source.as_deref()).await?;
                        }
                        if !same_remote_writes(&new.remote_writes, &config.remote_writes) {
                            drop(remote);
                            remote = start_remote_writes(&new, &metrics);
                        }
                        dyndns.abort();
                        dyndns = tokio::spawn(vigie_failover::dyndns::run_all(std::sync::Arc::new(new.clone())));
                        syncs.store(true, std::sync::atomic::Ordering::Relaxed);
                        syncs = start_syncs(&new, &dir, &board);
                        drop(backups);
                        backups = crate::backup::schedule::start(&new, &dir, &board);
                        drop(drifts);
                        drifts = crate::drift::start(&new, &dir, &board);
                        config = new;
                        tracing::info!(checks = config.checks.len(), "configuration reloaded");
                        systemd.ready(&running_status(&config, &server));
                    } else {
                        tracing::error!("the new configuration is invalid; keeping the running one");
                        systemd.ready(&format!("{}; the new configuration is invalid", running_status(&config, &server)));
                    }
                }
            }
        }
        systemd.stopping();
        tracing::info!("shutting down");
        drop(remote);
        drop(backups);
        drop(drifts);
        dyndns.abort();
        syncs.store(true, std::sync::atomic::Ordering::Relaxed);
        // Stop within 2 s whatever is in flight.
        let stop = async {
            server.stop().await;
            engine.shutdown().await;
        };
        if tokio::time::timeout(Duration::from_millis(1800), stop).await.is_err() {
            tracing::warn!("shutdown took too long; exiting anyway");
        }
        let _ = fs_err::remove_file(dir.join(ADDR_FILE));
        crate::located::withdraw();
        Ok(exit::OK)
    })
}

/// What `systemctl status vigie` shows beside the unit while it runs.
fn running_status(config: &Config, server: &vigie_web::Server) -> String {
    let n = config.checks.len();
    format!(
        "{n} check{}, API on {}",
        if n == 1 { "" } else { "s" },
        server.local_addr
    )
}

/// Take the daemon's lock on `dir`, or say which daemon holds it.
fn lock_state_dir(dir: &Path) -> Result<vigie_store::lock::Lock> {
    use vigie_store::lock::{DAEMON_LOCK, LockError, try_lock};
    try_lock(dir, DAEMON_LOCK).map_err(|e| match e {
        LockError::Held { pid, .. } => Failure::runtime(format!(
            "another vigie daemon{} is running on the state directory {}",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            dir.display()
        ))
        .hint("stop it first, or give this one a state directory of its own with --state-dir"),
        LockError::Io { .. } => Failure::runtime(e.to_string())
            .hint("check that the state directory is writable, or pass --state-dir"),
    })
}

/// Start every `[[sync]]` job of `config`, each reporting on `board`;
/// setting the flag stops them.
fn start_syncs(
    config: &Config,
    dir: &Path,
    board: &vigie_core::Board,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for j in &config.syncs {
        let mut spec = vigie_sync::JobSpec::from_config(j);
        spec.state_dir = Some(dir.to_owned());
        let status = std::sync::Arc::new(std::sync::Mutex::new(vigie_sync::Status::default()));
        let stop = stop.clone();
        let name = j.name.clone();
        let board = board.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sync-{name}"))
            .spawn(move || vigie_sync::run(spec, status, stop, board));
        if let Err(e) = spawned {
            tracing::error!(job = %name, error = %e, "cannot start the replication");
        }
    }
    stop
}

/// Send `/metrics` to each `[[remote_write]]` endpoint, and show their
/// counters on `/metrics`. Dropping the handle stops them.
fn start_remote_writes(
    config: &Config,
    metrics: &vigie_web::Metrics,
) -> vigie_remote_write::RemoteWriters {
    let m = metrics.clone();
    let source: vigie_remote_write::Source = std::sync::Arc::new(move || {
        let m = m.clone();
        Box::pin(async move { m.series().await })
    });
    let writers = vigie_remote_write::start(&config.remote_writes, &source);
    let stats = writers.stats();
    metrics.set_extra((!stats.is_empty()).then(|| {
        let extra: vigie_web::ExtraSamples =
            std::sync::Arc::new(move || vigie_remote_write::samples(&stats));
        extra
    }));
    writers
}

/// Whether a reload leaves the remote writes as they are (their queues
/// then survive it): same endpoints, settings and secrets.
fn same_remote_writes(a: &[vigie_config::RemoteWrite], b: &[vigie_config::RemoteWrite]) -> bool {
    let secrets = |r: &vigie_config::RemoteWrite| match &r.auth {
        Some(vigie_config::RemoteAuth::Bearer(t)) => t.expose().to_owned(),
        Some(vigie_config::RemoteAuth::Basic { password, .. }) => password.expose().to_owned(),
        None => String::new(),
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            serde_json::to_value(x).ok() == serde_json::to_value(y).ok() && secrets(x) == secrets(y)
        })
}

async fn start_server(
    metrics: &vigie_web::Metrics,
    config: &Config,
    dir: &Path,
    failover: &std::sync::Arc<vigie_failover::FailoverActions>,
    source: Option<&Path>,
) -> Result<vigie_web::Server> {
    let server = vigie_web::serve_with(metrics.clone(), &config.server, Some(failover.clone()))
        .await
        .map_err(|e| {
            Failure::runtime(format!("cannot listen on {}: {e}", config.server.listen))
                .hint("is another vigie running? change [server] listen in the configuration")
        })?;
    write_atomic(&dir.join(ADDR_FILE), &format!("{}\n", server.local_addr))?;
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    crate::located::publish(source, dir, &format!("{scheme}://{}", server.local_addr));
    Ok(server)
}

/// Load the configuration again for SIGHUP; `None` if it is invalid (the
/// problems are logged).
fn reload(cli: &Cli) -> Option<Config> {
    let result = match crate::config_path(cli) {
        Some(path) => vigie_config::load_file(&path),
        None => vigie_config::load_str(
            vigie_config::QUICKSTART,
            Path::new(vigie_config::QUICKSTART_NAME),
            &|k| std::env::var(k).ok(),
        ),
    };
    match result {
        Ok(l) => {
            for w in &l.warnings {
                tracing::warn!("{w}");
            }
            // A manifest that no longer loads keeps the running configuration.
            let problems = crate::drift::problems(&l.config);
            for p in &problems {
                tracing::error!("{p}");
            }
            problems.is_empty().then_some(l.config)
        }
        Err(d) => {
            for e in &d.errors {
                tracing::error!("{e}");
            }
            None
        }
    }
}

pub(crate) fn check(cli: &Cli, names: &[String], json: bool) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let mut selected = Vec::new();
    for name in names {
        if let Some(c) = config.check(name) {
            selected.push(c);
        } else {
            let known: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
            let mut f = Failure::config(format!("no check named `{name}`"));
            f = f.hint(format!("known checks: {}", known.join(", ")));
            return Err(f);
        }
    }
    if names.is_empty() {
        selected = config.checks.iter().collect();
    }
    let dir = state_dir(cli, config);
    let store = if dir.join(vigie_store::DB_FILE).exists() {
        vigie_store::Store::open(&dir).ok()
    } else {
        None
    };
    let rt = runtime()?;
    let results = rt.block_on(async {
        let own = serve_own_server(config, &selected).await;
        // No job runs in this process: a `sync` check finds nothing
        // here; a `backup` check reads the runs the store recorded.
        let board = vigie_core::Board::new();
        if let Some(store) = &store {
            for j in &config.backups {
                crate::backup::job::publish(&board, store, &j.name, Timestamp::now());
            }
        }
        // Rules read the series the daemon flushed (at most a minute old).
        let series = store.as_ref().and_then(|_| {
            vigie_store::Store::open(&dir).ok().map(|s| {
                vigie_store::series::SeriesStore::new(
                    s,
                    vigie_engine::series::retention(&config.series),
                )
            })
        });
        let mut results =
            vigie_engine::run_once(config, &selected, store.as_ref(), series, &board).await;
        if let Some(own) = own {
            for r in &mut results {
                if aims_at(&r.check, config.server.listen) {
                    r.outcome.message = format!(
                        "{} (answered by this process: no daemon listens on {})",
                        r.outcome.message, config.server.listen
                    );
                }
            }
            own.stop().await;
        }
        results
    });
    let failed = results.iter().filter(|r| !r.outcome.ok).count();
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.check.name,
                    "kind": r.check.probe.kind().name(),
                    "ok": r.outcome.ok,
                    "message": r.outcome.message,
                    "duration_seconds": r.duration.as_secs_f64(),
                    "severity": r.check.severity,
                    "metrics": r.outcome.metrics,
                })
            })
            .collect();
        out_json(&serde_json::Value::from(v))?;
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    r.check.name.clone(),
                    r.check.probe.kind().name().to_owned(),
                    if r.outcome.ok {
                        "ok".into()
                    } else {
                        "FAIL".into()
                    },
                    millis(r.duration),
                    r.outcome.message.clone(),
                ]
            })
            .collect();
        out_table(&["CHECK", "KIND", "RESULT", "TIME", "MESSAGE"], &rows)?;
        if failed > 0 {
            eprintln!("{failed} of {} checks failed", results.len());
        }
    }
    Ok(if failed > 0 {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

/// Whether `check` is an HTTP check of vigie's own server at `listen`.
fn aims_at(check: &vigie_config::Check, listen: std::net::SocketAddr) -> bool {
    let Probe::Http(h) = &check.probe else {
        return false;
    };
    let url = &h.url.0;
    if url.port_or_known_default() != Some(listen.port()) {
        return false;
    }
    let host = url.host_str().unwrap_or_default();
    let ip = if host == "localhost" {
        if listen.is_ipv6() {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
    } else if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        ip
    } else {
        return false;
    };
    ip == listen.ip() || (listen.ip().is_unspecified() && ip.is_loopback())
}

/// vigie's own server, served by `vigie check` while it runs.
struct OwnServer {
    engine: Engine,
    server: vigie_web::Server,
    dir: std::path::PathBuf,
}

impl OwnServer {
    async fn stop(self) {
        self.server.stop().await;
        self.engine.shutdown().await;
        let _ = fs_err::remove_dir_all(&self.dir);
    }
}

/// `vigie check` is no daemon, so a check of vigie's own HTTP server (the
/// quickstart's `/healthz`) would fail only for that. When such a check
/// is selected and nothing listens on `[server] listen`, this process
/// serves there — the server `vigie run` starts, over an engine with no
/// checks and a store of its own — while the checks run: the check then
/// judges what it can, that vigie's server takes that address and
/// answers, and its message says who answered. When something listens
/// there (a running daemon, or another program), the check goes to it.
async fn serve_own_server(config: &Config, selected: &[&vigie_config::Check]) -> Option<OwnServer> {
    let listen = config.server.listen;
    if listen.port() == 0 || !selected.iter().any(|c| aims_at(c, listen)) {
        return None;
    }
    // Taken: someone answers there, the check asks them.
    drop(std::net::TcpListener::bind(listen).ok()?);
    let dir = std::env::temp_dir().join(format!("vigie-check-{}", std::process::id()));
    let mut bare = config.clone();
    bare.checks.clear();
    let started = async {
        // A new directory of our own (never one that exists, nor a
        // symlink someone left in the temp directory).
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let engine = match Engine::start(&bare, &dir) {
            Ok(engine) => engine,
            Err(e) => {
                let _ = fs_err::remove_dir_all(&dir);
                return Err(e.to_string());
            }
        };
        match vigie_web::serve(engine.clone(), &config.server, None).await {
            Ok(server) => Ok((engine, server)),
            Err(e) => {
                engine.shutdown().await;
                let _ = fs_err::remove_dir_all(&dir);
                Err(e.to_string())
            }
        }
    };
    match started.await {
        Ok((engine, server)) => Some(OwnServer {
            engine,
            server,
            dir,
        }),
        Err(e) => {
            // The check then runs as it is and says what it finds. (The
            // directory is left alone: it may not be ours.)
            tracing::warn!(error = %e, "cannot serve vigie's own server for the check");
            None
        }
    }
}

pub(crate) fn status(cli: &Cli, json: bool) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let dir = state_dir(cli, config);
    if !dir.join(vigie_store::DB_FILE).exists() {
        return Err(Failure::runtime(format!("no store in {}", dir.display()))
            .hint("start the daemon with `vigie run`, or pass the --state-dir it uses"));
    }
    let store = vigie_store::Store::open(&dir).map_err(|e| Failure::runtime(e.to_string()))?;
    let states = store
        .states()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let now = Timestamp::now().millis();
    let mut failing = 0;
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for check in &config.checks {
        let s = states.get(&check.name).cloned().unwrap_or_default();
        if s.tracker.state == CheckState::Failing {
            failing += 1;
        }
        items.push(check_status(check, &s));
        rows.push(status_row(check, s, now));
    }
    let open = store
        .open_incidents()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let notifiers = store
        .notifier_health()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let maintenances = store
        .maintenances_running(Timestamp(now))
        .map_err(|e| Failure::runtime(e.to_string()))?;
    // The running daemon holds its lock on the state directory; a free
    // lock means the states above are only what it last recorded.
    let daemon_pid = vigie_store::lock::holder_of(&dir, vigie_store::lock::DAEMON_LOCK)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let newest = states.values().filter_map(|s| s.last_run).max();
    let backups = crate::backup::views(config, &dir);
    if daemon_pid.is_none() {
        eprintln!(
            "error: the vigie daemon is not running on {}: these results are from its last run{}",
            dir.display(),
            newest.map_or_else(String::new, |t| format!(
                ", the newest {}",
                ago(t.millis(), now)
            ))
        );
        eprintln!("  hint: start it with `vigie run` (or see why it stopped in its logs)");
    }
    if json {
        let daemon = fs_err::read_to_string(dir.join(ADDR_FILE))
            .ok()
            .map(|s| s.trim().to_owned());
        out_json(&serde_json::json!({
            "node": config.node.name,
            "listen": daemon,
            "daemon": {
                "running": daemon_pid.is_some(),
                "pid": daemon_pid.flatten(),
                "newest_result": newest,
            },
            "checks": items,
            "open_incidents": open,
            "notifiers": notifiers,
            "maintenance": maintenances,
            "backups": crate::backup::json(&backups),
        }))?;
    } else {
        status_table(&rows, &open, &notifiers, now)?;
        for m in &maintenances {
            out(format_args!(
                "check {} in maintenance until {} (started by {}; vigie maintenance end {0})\n",
                m.check,
                when(m.until),
                m.by
            ))?;
        }
        if !backups.is_empty() {
            out(format_args!("\n"))?;
            out_table(
                &["BACKUP", "LAST RUN", "LAST GOOD SNAPSHOT", "NEXT RUN"],
                &crate::backup::rows(&backups),
            )?;
        }
    }
    Ok(if daemon_pid.is_none() {
        exit::DAEMON_DOWN
    } else if failing > 0 {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

/// The API's type: `status --json` and `/api/v1/checks` say the same
/// thing of a check, from the store here.
fn check_status(
    check: &vigie_config::Check,
    s: &vigie_store::StoredState,
) -> vigie_engine::CheckStatus {
    vigie_engine::CheckStatus {
        name: check.name.clone(),
        kind: check.probe.kind().name(),
        severity: check.severity,
        state: s.tracker.state,
        since: s.tracker.since,
        consecutive_ok: s.tracker.consecutive_ok,
        consecutive_fail: s.tracker.consecutive_fail,
        last_run: s.last_run,
        last_ok: s.last_ok,
        last_message: s.last_message.clone(),
        last_duration_seconds: s.last_duration_ms / 1000.0,
        runs_total: s.runs_total,
        failures_total: s.failures_total,
        // The store keeps no probe metrics: only a running daemon has them.
        metrics: Vec::new(),
        every_seconds: check.every.std().as_secs_f64(),
        depends_on: check.depends_on.clone(),
    }
}

/// A check's line in `vigie status`.
fn status_row(check: &vigie_config::Check, s: vigie_store::StoredState, now: i64) -> Vec<String> {
    vec![
        check.name.clone(),
        s.tracker.state.to_string().to_uppercase(),
        if s.tracker.state == CheckState::Unknown {
            "-".into()
        } else {
            ago(s.tracker.since.millis(), now)
        },
        s.last_run
            .map_or_else(|| "never".into(), |t| ago(t.millis(), now)),
        check.severity.to_string(),
        s.last_message,
    ]
}

/// `vigie status` for a human: the checks, how many incidents are open,
/// and the notifiers that fail.
fn status_table(
    rows: &[Vec<String>],
    open: &[vigie_store::Incident],
    notifiers: &[vigie_store::NotifierHealth],
    now: i64,
) -> Result<()> {
    out_table(
        &["CHECK", "STATE", "SINCE", "LAST RUN", "SEVERITY", "MESSAGE"],
        rows,
    )?;
    if !open.is_empty() {
        let n = open.len();
        out(format_args!(
            "\n{n} open incident{} (vigie incidents)\n",
            if n == 1 { "" } else { "s" }
        ))?;
    }
    for n in notifiers.iter().filter(|n| !n.ok) {
        out(format_args!(
            "notifier {} FAILING since {}: {}\n",
            n.notifier,
            ago(n.last.millis(), now),
            n.error.as_deref().unwrap_or("")
        ))?;
    }
    Ok(())
}

pub(crate) fn heartbeat_url(cli: &Cli, name: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let Some(check) = config.check(name) else {
        return Err(Failure::config(format!("no check named `{name}`")));
    };
    let Probe::Heartbeat(spec) = &check.probe else {
        return Err(Failure::config(format!(
            "`{name}` is a {} check, not a heartbeat",
            check.probe.kind().name()
        )));
    };
    let token = if let Some(t) = &spec.token {
        t.expose().to_owned()
    } else {
        let dir = state_dir(cli, config);
        let mut store =
            vigie_store::Store::open(&dir).map_err(|e| Failure::runtime(e.to_string()))?;
        // Opening runs the migrations: tokens of an older store move to
        // their file here.
        store
            .heartbeat(name, Timestamp::now())
            .map_err(|e| Failure::runtime(e.to_string()))?;
        vigie_store::generated_token(&dir, name)
            .map_err(|e| Failure::runtime(e.to_string()))?
            .ok_or_else(|| {
                Failure::runtime(format!("no token generated yet for `{name}`")).hint(format!(
                    "start the daemon once with `vigie run`: it generates the token and keeps it in {}",
                    dir.join(vigie_store::TOKENS_FILE).display()
                ))
            })?
    };
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    out(format_args!(
        "{scheme}://{}/ping/{name}?token={token}\n",
        config.server.listen
    ))?;
    Ok(exit::OK)
}

pub(crate) fn notify_test(cli: &Cli, name: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let Some(notifier) = config.notifiers.get(name) else {
        let known: Vec<&str> = config.notifiers.keys().map(String::as_str).collect();
        let hint = if known.is_empty() {
            "declare one under [notify.NAME] in the configuration".to_owned()
        } else {
            format!("known notifiers: {}", known.join(", "))
        };
        return Err(Failure::config(format!("no notifier named `{name}`")).hint(hint));
    };
    let sender = vigie_notify::Sender::new(vigie_notify::Policy::default())
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let msg = vigie_notify::Message::test(&config.node.name, name);
    let delivery = runtime()?.block_on(sender.send(notifier, &msg));
    match delivery.error {
        None => {
            out(format_args!(
                "{name}: delivered ({} attempt{})\n",
                delivery.attempts,
                if delivery.attempts == 1 { "" } else { "s" }
            ))?;
            Ok(exit::OK)
        }
        Some(e) => {
            let n = delivery.attempts;
            Err(Failure::runtime(format!(
                "{name}: not delivered ({n} attempt{}): {e}",
                if n == 1 { "" } else { "s" }
            )))
        }
    }
}

pub(crate) fn incidents(cli: &Cli, json: bool, limit: usize) -> Result<u8> {
    let loaded = load(cli)?;
    let dir = state_dir(cli, &loaded.config);
    if !dir.join(vigie_store::DB_FILE).exists() {
        return Err(Failure::runtime(format!("no store in {}", dir.display()))
            .hint("start the daemon with `vigie run`, or pass the --state-dir it uses"));
    }
    let store = vigie_store::Store::open(&dir).map_err(|e| Failure::runtime(e.to_string()))?;
    let list = store
        .recent_incidents(limit)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if json {
        let mut items = Vec::with_capacity(list.len());
        for inc in &list {
            let events = store
                .incident_events(inc.id)
                .map_err(|e| Failure::runtime(e.to_string()))?;
            let mut v = serde_json::to_value(inc).unwrap_or_default();
            v["events"] = serde_json::to_value(events).unwrap_or_default();
            items.push(v);
        }
        out_json(&serde_json::Value::from(items))?;
    } else {
        let now = Timestamp::now().millis();
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|i| {
                vec![
                    i.id.to_string(),
                    i.check.clone(),
                    i.severity.clone(),
                    i.resolution
                        .as_ref()
                        .map_or_else(|| i.state.to_uppercase(), |r| format!("resolved ({r})")),
                    ago(i.opened.millis(), now),
                    i.suppressed_by.as_ref().map_or_else(
                        || i.last_error.clone(),
                        |p| format!("silenced by {p}: {}", i.last_error),
                    ),
                ]
            })
            .collect();
        out_table(
            &["ID", "CHECK", "SEVERITY", "STATE", "OPENED", "ERROR"],
            &rows,
        )?;
    }
    Ok(exit::OK)
}

/// The address the running daemon of `dir` serves, or why not.
fn daemon_addr(dir: &Path) -> Result<String> {
    fs_err::read_to_string(dir.join(ADDR_FILE))
        .map(|a| a.trim().to_owned())
        .map_err(|_| {
            Failure::runtime("the daemon is not running").hint(format!(
                "start it with `vigie run` (state directory {})",
                dir.display()
            ))
        })
}

/// What the daemon's API answered: its `result`, or its `error`, or
/// the text itself.
fn api_said(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v["result"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.trim().to_owned())
}

pub(crate) fn ack(cli: &Cli, id: i64, note: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let dir = state_dir(cli, config);
    let addr = daemon_addr(&dir)?;
    let body = serde_json::json!({ "note": note }).to_string();
    let (status, text) = daemon_call(
        config,
        &addr,
        reqwest::Method::POST,
        &format!("/api/v1/incidents/{id}/ack"),
        Some(body),
    )
    .map_err(|e| Failure::runtime(format!("cannot reach the daemon: {e}")))?;
    let result = api_said(&text);
    if status.is_success() {
        out(format_args!("incident {id}: {result}\n"))?;
        Ok(exit::OK)
    } else if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::CONFLICT {
        Err(Failure::config(format!("incident {id}: {result}"))
            .hint("`vigie incidents` lists them"))
    } else {
        Err(Failure::runtime(format!(
            "incident {id}: the daemon answered {status}: {result}"
        )))
    }
}

/// `vigie maintenance start|end CHECK`: through the running daemon,
/// which holds the check's incidents from now (and keeps it in its
/// store across a restart).
pub(crate) fn maintenance(cli: &Cli, action: &MaintenanceAction) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let (check, method, body) = match action {
        MaintenanceAction::Start { check, duration } => (
            check,
            reqwest::Method::POST,
            Some(serde_json::json!({ "for": duration.to_string() }).to_string()),
        ),
        MaintenanceAction::End { check } => (check, reqwest::Method::DELETE, None),
    };
    if config.check(check).is_none() {
        return Err(
            Failure::config(format!("no check named `{check}`")).hint("`vigie status` lists them")
        );
    }
    let addr = daemon_addr(&state_dir(cli, config))?;
    let (status, text) = daemon_call(
        config,
        &addr,
        method,
        &format!("/api/v1/checks/{check}/maintenance"),
        body,
    )
    .map_err(|e| Failure::runtime(format!("cannot reach the daemon: {e}")))?;
    let said = api_said(&text);
    if !status.is_success() {
        let f = format!("{check}: {said}");
        return Err(if status == reqwest::StatusCode::BAD_REQUEST {
            Failure::config(f)
        } else {
            Failure::runtime(format!("{f} (the daemon answered {status})"))
        });
    }
    // The API says the end as milliseconds; people read a time.
    let said = match said.strip_prefix("in maintenance until ") {
        Some(ms) => ms.parse().map_or(said.clone(), |ms: i64| {
            format!("in maintenance until {}", when(Timestamp(ms)))
        }),
        None => said,
    };
    out(format_args!("{check}: {said}\n"))?;
    Ok(exit::OK)
}

/// One call to this node's daemon at `addr` (from the state directory),
/// over HTTPS when it serves HTTPS (trusting exactly its configured
/// certificate), with the API token.
pub(crate) fn daemon_call(
    config: &Config,
    addr: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> std::result::Result<(reqwest::StatusCode, String), String> {
    let mut addr: std::net::SocketAddr =
        addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        });
    }
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    let scheme = if let Some(tls) = &config.server.tls {
        use rustls::pki_types::pem::PemObject;
        let pem = fs_err::read(&tls.cert).map_err(|e| e.to_string())?;
        let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(std::result::Result::ok)
            .ok_or_else(|| format!("{}: no certificate", tls.cert.display()))?;
        let pin: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, der.as_ref())
            .as_ref()
            .try_into()
            .map_err(|_| "digest size".to_owned())?;
        let tls = vigie_net::pinned_client_config(pin, vigie_net::Alpn::Http).map_err(|e| e.0)?;
        builder = builder.tls_backend_preconfigured(tls);
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}{path}");
    let token = config.server.token.as_ref().map(|t| t.expose().to_owned());
    runtime()
        .map_err(|e| e.message)?
        .block_on(async move {
            let client = builder.build()?;
            // Every write says JSON, with a body or without: the API
            // refuses any other (a page cannot send it cross-site).
            let write = method != reqwest::Method::GET;
            let mut req = client.request(method, url);
            if write {
                req = req.header("content-type", "application/json");
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await.unwrap_or_default()))
        })
        .map_err(|e| e.without_url().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_writes(table: &str, token: &str) -> Vec<vigie_config::RemoteWrite> {
        let text =
            format!("[[remote_write]]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\n{table}\n");
        let env = |k: &str| (k == "RW_TOKEN").then(|| token.to_owned());
        vigie_config::load_str(&text, Path::new("t.toml"), &env)
            .unwrap_or_else(|d| panic!("{d}"))
            .config
            .remote_writes
    }

    /// A reload keeps the running remote writes (and their queues) only
    /// when nothing of theirs changed, a secret's value included.
    #[test]
    fn a_reload_restarts_remote_writes_only_when_they_change() {
        let token = "bearer_token = { env = \"RW_TOKEN\" }";
        let base = remote_writes(token, "a");
        assert!(same_remote_writes(&base, &remote_writes(token, "a")));
        assert!(!same_remote_writes(&base, &remote_writes(token, "b")));
        let labelled = format!("{token}\nlabels = {{ env = \"prod\" }}");
        assert!(!same_remote_writes(&base, &remote_writes(&labelled, "a")));
        assert!(!same_remote_writes(&base, &remote_writes("", "a")));
        assert!(!same_remote_writes(&base, &[]));
    }
}
