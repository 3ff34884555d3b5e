//! One run of a `[[backup]]` job, whoever starts it (the daemon's
//! schedule, `vigie backup run`, an incident step): the job's lock held
//! throughout, `before`, the backup into a repository opened once,
//! `after` or `on_failure`, the run recorded in the store and reported on
//! the board.

use std::path::Path;
use std::time::Duration;

use vigie_config::BackupJob;
use vigie_core::{Board, Metric, Outcome, Timestamp, backup_metric, backup_report};
use vigie_store::BackupRun;

/// The lock file of job `job` in the state directory.
pub(crate) fn lock_name(job: &str) -> String {
    format!("backup-{job}.lock")
}

/// Why a run did not happen or did not end well.
#[derive(Debug)]
pub(crate) enum RunError {
    /// Another run of the job holds its lock: nothing was done.
    Busy(String),
    /// The run failed (recorded): what went wrong.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Busy(m) | RunError::Failed(m) => f.write_str(m),
        }
    }
}

/// What a run tells as it goes: the stage it is at (a progress bar's
/// message, or a line), and, when someone watches, the backup's bytes.
pub(crate) struct Watch<'a> {
    pub stage: &'a dyn Fn(&str),
    pub bytes: Option<std::sync::Arc<dyn vigie_backup::BackupProgress>>,
}

/// Run `job` now: see the module's description.
pub(crate) fn run(
    job: &BackupJob,
    state_dir: &Path,
    board: Option<&Board>,
    watch: &Watch<'_>,
) -> Result<BackupRun, RunError> {
    let _lock = hold(job, state_dir)?;
    let stage = watch.stage;
    let started = Timestamp::now();
    let result = attempt(job, watch);
    let ended = Timestamp::now();
    let run = match &result {
        Ok(s) => BackupRun {
            job: job.name.clone(),
            started,
            ended,
            ok: true,
            snapshot: Some(s.id.clone()),
            bytes_added: Some(s.bytes_added),
            error: None,
        },
        Err(e) => BackupRun {
            job: job.name.clone(),
            started,
            ended,
            ok: false,
            snapshot: None,
            bytes_added: None,
            error: Some(e.clone()),
        },
    };
    if result.is_ok() {
        if let Some(after) = &job.after {
            stage("after");
            if let Err(e) = hook(job, "after", after, &[]) {
                tracing::warn!(job = %job.name, "{e} (the snapshot is made)");
            }
        }
    } else if let Some(on_failure) = &job.on_failure {
        stage("on_failure");
        let env = [(
            "VIGIE_BACKUP_ERROR".to_owned(),
            run.error.clone().unwrap_or_default(),
        )];
        if let Err(e) = hook(job, "on_failure", on_failure, &env) {
            tracing::warn!(job = %job.name, "{e}");
        }
    }
    match vigie_store::Store::open(state_dir).and_then(|mut s| {
        s.backup_record(&run)?;
        Ok(s)
    }) {
        Ok(store) => {
            if let Some(board) = board {
                publish(
                    board,
                    &store,
                    &job.name,
                    watched_since(board, &job.name, started),
                );
            }
        }
        Err(e) => tracing::error!(job = %job.name, "cannot record the run: {e}"),
    }
    match result {
        Ok(_) => Ok(run),
        Err(e) => Err(RunError::Failed(e)),
    }
}

/// The job's lock, held by whatever works on its repository (a run, a
/// drill): a second is refused at once, naming the first.
pub(crate) fn hold(job: &BackupJob, state_dir: &Path) -> Result<vigie_store::lock::Lock, RunError> {
    vigie_store::lock::try_lock(state_dir, &lock_name(&job.name)).map_err(|e| match e {
        vigie_store::lock::LockError::Held { path, pid } => {
            let since = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .map(|t| {
                    let ms = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() as i64;
                    format!(", since {}", super::when(Timestamp(ms)))
                })
                .unwrap_or_default();
            let pid = pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
            RunError::Busy(format!(
                "backup {} is already running ({pid}{since})",
                job.name
            ))
        }
        other @ vigie_store::lock::LockError::Io { .. } => {
            RunError::Failed(format!("backup {}: {other}", job.name))
        }
    })
}

/// `before`, then the backup; the error as one line.
fn attempt(job: &BackupJob, watch: &Watch<'_>) -> Result<vigie_backup::SnapshotSummary, String> {
    let stage = watch.stage;
    if let Some(before) = &job.before {
        stage("before");
        hook(job, "before", before, &[])?;
    }
    stage("opening the repository");
    let mut spec = repo_spec(job).map_err(|e| e.to_string())?;
    if let Some(bytes) = &watch.bytes {
        spec = spec.with_progress(std::sync::Arc::clone(bytes));
    }
    let repo = vigie_backup::open(&spec, job.password.expose()).map_err(|e| e.to_string())?;
    stage("backing up");
    let request = vigie_backup::Request {
        paths: job.paths.clone(),
        excludes: job.exclude.clone(),
        tags: job.snapshot_tags(),
        one_file_system: job.one_file_system,
        dumps: job.dumps.iter().map(dump).collect::<Result<_, _>>()?,
    };
    let summary = repo.backup(&request).map_err(|e| e.to_string())?;
    if let Some(keep) = &job.keep {
        stage("forgetting and pruning");
        retain(job, &repo, keep)?;
    }
    Ok(summary)
}

/// A dump as vigie-backup runs it: its command, or for an SQLite
/// database this very program copying it (`vigie sqlite-copy PATH`).
fn dump(d: &vigie_config::BackupDump) -> Result<vigie_backup::Dump, String> {
    let run = match &d.sqlite {
        Some(db) => {
            let me = std::env::current_exe()
                .map_err(|e| format!("dump `{}`: cannot find vigie's own program: {e}", d.name))?;
            vec![
                me.to_string_lossy().into_owned(),
                "sqlite-copy".to_owned(),
                db.to_string_lossy().into_owned(),
            ]
        }
        None => d.run.clone(),
    };
    Ok(vigie_backup::Dump::new(&d.name, &run).with_timeout(d.timeout.std()))
}

/// The job's repository as vigie-backup takes it: its location, and the
/// ssh command, S3 keys or REST login that reach it.
pub(crate) fn repo_spec(job: &BackupJob) -> Result<vigie_backup::RepoSpec, vigie_backup::Error> {
    let mut spec = vigie_backup::RepoSpec::new(&job.name, &job.repository)?;
    if !job.ssh.is_empty() {
        spec = spec.with_ssh(job.ssh.clone());
    }
    if let Some(s3) = &job.s3 {
        spec = spec.with_s3(vigie_backup::S3Credentials {
            access_key_id: s3.access_key_id.expose().to_owned(),
            secret_access_key: s3.secret_access_key.expose().to_owned(),
            region: s3.region.clone(),
        });
    }
    if let Some(rest) = &job.rest {
        spec = spec.with_rest(vigie_backup::RestCredentials {
            user: rest.user.clone(),
            password: rest.password.expose().to_owned(),
        });
    }
    if let Some(ca) = &job.ca {
        spec = spec.with_ca(ca.clone());
    }
    Ok(spec)
}

/// The job's snapshots as retention and drills select them: this host's,
/// tagged with the job.
pub(crate) fn filter(job: &BackupJob) -> vigie_backup::SnapshotFilter {
    vigie_backup::SnapshotFilter {
        hostname: Some(vigie_backup::hostname()),
        tag: Some(vigie_config::backup_job_tag(&job.name)),
    }
}

pub(crate) fn keep(k: &vigie_config::BackupKeep) -> vigie_backup::Keep {
    vigie_backup::Keep {
        last: k.last,
        hourly: k.hourly,
        daily: k.daily,
        weekly: k.weekly,
        monthly: k.monthly,
        yearly: k.yearly,
        within: k.within.map(vigie_core::Duration::std),
    }
}

/// After a good run: forget what `keep` does not keep, then prune.
fn retain(
    job: &BackupJob,
    repo: &vigie_backup::Repo,
    k: &vigie_config::BackupKeep,
) -> Result<(), String> {
    let plan = repo
        .forget(&filter(job), &keep(k), false)
        .map_err(|e| e.to_string())?;
    if !plan.removed().is_empty() {
        repo.prune().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Run a hook (no shell) under the job's `hook_timeout`.
fn hook(
    job: &BackupJob,
    which: &str,
    argv: &[String],
    env: &[(String, String)],
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("backup {}: `{which}`: {e}", job.name))?;
    let limit: Duration = job.hook_timeout.std();
    let out = rt.block_on(async {
        tokio::time::timeout(limit, vigie_net::command::run_argv(argv, env)).await
    });
    let name = &job.name;
    match out {
        Err(_) => Err(format!(
            "backup {name}: `{which}` ({}) did not finish within {}",
            argv[0], job.hook_timeout
        )),
        Ok(Err(e)) => Err(format!(
            "backup {name}: `{which}`: cannot run {}: {e}",
            argv[0]
        )),
        Ok(Ok(o)) if o.status == Some(0) => Ok(()),
        Ok(Ok(o)) => {
            let how = match (o.status, o.signal) {
                (Some(c), _) => format!("exited with {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                (None, None) => "failed".to_owned(),
            };
            let said = vigie_net::command::first_line(&o.text);
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            };
            Err(format!(
                "backup {name}: `{which}` ({}) {how}{said}",
                argv[0]
            ))
        }
    }
}

/// Since when the daemon watches `job` (its report says), or `otherwise`.
fn watched_since(board: &Board, job: &str, otherwise: Timestamp) -> Timestamp {
    board
        .report(&backup_report(job))
        .and_then(|(o, _)| {
            o.metrics
                .iter()
                .find(|m| m.name == backup_metric::WATCHED_SINCE)
                .map(|m| Timestamp((m.value * 1000.0) as i64))
        })
        .unwrap_or(otherwise)
}

/// Publish `job`'s report again from the store (a run by hand, or by
/// another process, is seen so), opened unless `store` is given; the
/// store, to keep for the next time.
pub(crate) fn refresh(
    board: &Board,
    state_dir: &Path,
    job: &str,
    store: Option<vigie_store::Store>,
) -> Option<vigie_store::Store> {
    let store = match store {
        Some(s) => s,
        None => match vigie_store::Store::open(state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(job, "cannot read the runs of backup {job}: {e}");
                return None;
            }
        },
    };
    publish(
        board,
        &store,
        job,
        watched_since(board, job, Timestamp::now()),
    );
    Some(store)
}

/// The job's report on the board, from its runs in the store: the last
/// run's outcome with the numbers its checks and `/metrics` read.
pub(crate) fn publish(
    board: &Board,
    store: &vigie_store::Store,
    job: &str,
    watched_since: Timestamp,
) {
    let (last, good) = match store.backup_last(job) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(job, "cannot read the runs of backup {job}: {e}");
            return;
        }
    };
    let mut o = report(job, last.as_ref(), good.as_ref());
    o.metrics.push(metric(
        backup_metric::WATCHED_SINCE,
        watched_since.as_secs_f64(),
    ));
    board.publish(&backup_report(job), o);
    super::drill::publish(board, store, job);
    super::integrity::publish(board, store, job);
}

fn metric(name: &str, value: f64) -> Metric {
    Metric {
        name: name.to_owned(),
        value,
    }
}

/// The outcome of the last run, `None` before any.
fn report(job: &str, last: Option<&BackupRun>, good: Option<&BackupRun>) -> Outcome {
    let mut o = match last {
        None => Outcome::ok(format!("backup {job} has not run yet")),
        Some(r) if r.ok => Outcome::ok(format!(
            "backup {job}: snapshot {} at {}, {} added",
            r.snapshot.as_deref().map_or("?", |s| &s[..s.len().min(8)]),
            super::when(r.started),
            vigie_core::HumanBytes(r.bytes_added.unwrap_or(0) as f64),
        )),
        Some(r) => Outcome::fail(
            r.error
                .clone()
                .unwrap_or_else(|| format!("backup {job} failed")),
        ),
    };
    if let Some(r) = last {
        let took = (r.ended.millis() - r.started.millis()).max(0) as f64 / 1000.0;
        o.metrics
            .push(metric(backup_metric::RESULT, f64::from(u8::from(r.ok))));
        o.metrics.push(metric(backup_metric::DURATION, took));
        o.metrics.push(metric(
            backup_metric::BYTES_ADDED,
            r.bytes_added.unwrap_or(0) as f64,
        ));
    }
    if let Some(g) = good {
        o.metrics
            .push(metric(backup_metric::LAST_SUCCESS, g.ended.as_secs_f64()));
    }
    o
}
