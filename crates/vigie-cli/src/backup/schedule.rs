//! The daemon's side of backups: each `[[backup]]` job runs at its time
//! (schedule, time zone, this host's jitter) on the blocking pool, never
//! on the thread that runs the checks; and `[action.X] backup = "NAME"`
//! runs one as an incident step (the engine's `ActionPlugin`). Both
//! report on the board, where the job's checks read the result.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vigie_config::{ActionKind, BackupJob, Config};
use vigie_core::{Board, Timestamp};
use vigie_engine::{ActionPlugin, PluginFuture, Statuses};

use super::job::{self, RunError};

/// The scheduled jobs of one configuration; dropping it stops them
/// (a run in progress finishes on its thread, under its lock).
pub(crate) struct Schedules(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Schedules {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// When each of a job's works last started: the later of the last
/// one recorded in the store (finished, by the daemon or by hand) and
/// the job's stamp, written when a time of its schedule fires (so a run
/// the daemon was killed in counts: it is not started again at each
/// restart). A time after that one, and already past, was missed.
#[derive(Clone, Copy, Default)]
struct LastStarts {
    run: Option<Timestamp>,
    drill: Option<Timestamp>,
    check: Option<Timestamp>,
}

/// The works a schedule starts, as their stamps name them.
#[derive(Clone, Copy)]
enum Work {
    Run,
    Drill,
    Check,
}

impl Work {
    fn what(self) -> &'static str {
        match self {
            Work::Run => "backup",
            Work::Drill => "restore drill",
            Work::Check => "integrity check",
        }
    }

    /// Its first time strictly after `after` (an error when the job
    /// does not schedule it).
    fn next(
        self,
        job: &BackupJob,
        node: &str,
        after: jiff::Timestamp,
    ) -> Result<jiff::Timestamp, String> {
        let next = match self {
            Work::Run => Some(job.next_run(node, after)),
            Work::Drill => job.next_drill(node, after),
            Work::Check => job.next_check(node, after),
        };
        next.unwrap_or_else(|| Err(format!("the job has no `{}`", self.key())))
    }

    /// Its key in the job's table.
    fn key(self) -> &'static str {
        match self {
            Work::Run => "at",
            Work::Drill => "drill",
            Work::Check => "check",
        }
    }

    /// `STATE/backup-JOB.WORK.fired`: when its time last fired, in Unix
    /// milliseconds. A job's name is a plain name (`is_valid_name`).
    fn stamp(self, dir: &std::path::Path, job: &str) -> PathBuf {
        let work = match self {
            Work::Run => "run",
            Work::Drill => "drill",
            Work::Check => "check",
        };
        dir.join(format!("backup-{job}.{work}.fired"))
    }

    fn fired(self, dir: &std::path::Path, job: &str) -> Option<Timestamp> {
        let text = std::fs::read_to_string(self.stamp(dir, job)).ok()?;
        text.trim().parse().ok().map(Timestamp)
    }

    /// Its time fired now: written before the work starts.
    fn fire(self, dir: &std::path::Path, job: &str) {
        let now = Timestamp::now().millis().to_string();
        if let Err(e) = vigie_store::write_atomic(&self.stamp(dir, job), now.as_bytes(), 0o600) {
            tracing::warn!(job, "cannot note that the {} started: {e}", self.what());
        }
    }
}

fn last_starts(
    store: &vigie_store::Store,
    dir: &std::path::Path,
    job: &str,
) -> vigie_store::Result<LastStarts> {
    let later = |a: Option<Timestamp>, w: Work| a.max(w.fired(dir, job));
    Ok(LastStarts {
        run: later(store.backup_last(job)?.0.map(|r| r.started), Work::Run),
        drill: later(store.drill_last(job)?.map(|d| d.started), Work::Drill),
        check: later(store.check_last(job)?.map(|c| c.started), Work::Check),
    })
}

/// How long after the daemon starts a time it missed is made up for.
pub(crate) const CATCH_UP_AFTER: Duration = Duration::from_secs(15);

/// While a drill or check made up for finds the job's lock held (the
/// run made up for at the same time), it tries again this often.
const BUSY_RETRY: Duration = Duration::from_mins(1);

/// The first time to wait for, and whether it makes up for a missed
/// one: `next_after(now)`, or, when a time of the schedule came between
/// the `last` start and now (the daemon or the host was down then),
/// [`CATCH_UP_AFTER`] from now, once, as anacron and systemd's
/// `Persistent=` timers do. Work that never ran waits for its first
/// time.
fn first_time(
    job: &str,
    work: Work,
    last: Option<Timestamp>,
    next_after: impl Fn(jiff::Timestamp) -> Result<jiff::Timestamp, String>,
) -> Result<(jiff::Timestamp, bool), String> {
    let now = jiff::Timestamp::now();
    let missed = last
        .and_then(|l| jiff::Timestamp::from_millisecond(l.millis()).ok())
        .and_then(|l| next_after(l).ok())
        .filter(|&t| t <= now);
    match missed {
        Some(t) => {
            tracing::warn!(job, missed = %t, "a {} time passed without one: it runs in {}s", work.what(), CATCH_UP_AFTER.as_secs());
            Ok((
                now.checked_add(CATCH_UP_AFTER).map_err(|e| e.to_string())?,
                true,
            ))
        }
        None => Ok((next_after(now)?, false)),
    }
}

/// After a busy lock: when to try a made-up drill or check again.
fn retry_time() -> Result<(jiff::Timestamp, bool), String> {
    jiff::Timestamp::now()
        .checked_add(BUSY_RETRY)
        .map(|t| (t, true))
        .map_err(|e| e.to_string())
}

/// Start the schedule of every job of `config`, after publishing each
/// job's last runs (from the store) for its checks.
pub(crate) fn start(config: &Config, state_dir: &std::path::Path, board: &Board) -> Schedules {
    let watched = Timestamp::now();
    let mut last = std::collections::HashMap::new();
    if !config.backups.is_empty() {
        match vigie_store::Store::open(state_dir) {
            Ok(store) => {
                for j in &config.backups {
                    job::publish(board, &store, &j.name, watched);
                    match last_starts(&store, state_dir, &j.name) {
                        Ok(l) => {
                            last.insert(j.name.clone(), l);
                        }
                        Err(e) => tracing::error!(job = %j.name, "cannot read the last runs: {e}"),
                    }
                }
            }
            Err(e) => tracing::error!("cannot read the backup runs: {e}"),
        }
    }
    let last = |j: &BackupJob| last.get(&j.name).copied().unwrap_or_default();
    let mut tasks: Vec<_> = config
        .backups
        .iter()
        .map(|j| {
            let since = last(j).run;
            let j = j.clone();
            let node = config.node.name.clone();
            let dir = state_dir.to_owned();
            let board = board.clone();
            tokio::spawn(async move { scheduled(j, node, dir, board, since).await })
        })
        .collect();
    tasks.extend(
        config
            .backups
            .iter()
            .filter(|j| j.drill.is_some())
            .map(|j| {
                let since = last(j).drill;
                let j = j.clone();
                let node = config.node.name.clone();
                let dir = state_dir.to_owned();
                let board = board.clone();
                tokio::spawn(async move {
                    repeat(j, node, dir, board, since, Work::Drill, drill).await;
                })
            }),
    );
    tasks.extend(
        config
            .backups
            .iter()
            .filter(|j| j.check.is_some())
            .map(|j| {
                let since = last(j).check;
                let j = j.clone();
                let node = config.node.name.clone();
                let dir = state_dir.to_owned();
                let board = board.clone();
                tokio::spawn(async move {
                    repeat(j, node, dir, board, since, Work::Check, check).await;
                })
            }),
    );
    tasks.extend(config.backups.iter().map(|j| {
        let j = j.clone();
        let board = board.clone();
        tokio::spawn(async move { reaches(j, board).await })
    }));
    Schedules(tasks)
}

/// How often each job's repository is asked whether it answers.
pub(crate) const REACH_EVERY: Duration = Duration::from_mins(5);

/// Ask the job's repository whether it answers, now and every
/// [`REACH_EVERY`] (one at a time: a slow answer delays the next).
async fn reaches(job: BackupJob, board: Board) {
    loop {
        let (j, b) = (job.clone(), board.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || super::integrity::reach(&j, &b)).await {
            tracing::error!(job = %job.name, "repository reach crashed: {e}");
        }
        tokio::time::sleep(REACH_EVERY).await;
    }
}

/// How often the job's report is read again from the store while it
/// waits: a run by hand (`vigie backup run`) reaches its checks so.
const REFRESH: Duration = Duration::from_secs(5);

/// Wait for each of the job's times and run it then; a time missed
/// since the `last` run first.
async fn scheduled(
    job: BackupJob,
    node: String,
    dir: PathBuf,
    board: Board,
    last: Option<Timestamp>,
) {
    // Opened once for the refreshes (a run opens its own).
    let mut store: Option<vigie_store::Store> = None;
    let mut last = Some(last);
    loop {
        let next_after = |t| job.next_run(&node, t);
        let next = match last.take() {
            Some(last) => first_time(&job.name, Work::Run, last, next_after),
            None => next_after(jiff::Timestamp::now()).map(|t| (t, false)),
        };
        let next = match next {
            Ok((t, _)) => t,
            Err(e) => {
                tracing::error!(job = %job.name, "backup {} is not scheduled: {e}", job.name);
                return;
            }
        };
        tracing::info!(job = %job.name, next = %next, "backup scheduled");
        loop {
            let left = jiff::Timestamp::now().duration_until(next);
            if left.is_negative() || left.is_zero() {
                break;
            }
            tokio::time::sleep(left.unsigned_abs().min(REFRESH)).await;
            let (name, d, b, kept) = (job.name.clone(), dir.clone(), board.clone(), store.take());
            store = tokio::task::spawn_blocking(move || job::refresh(&b, &d, &name, kept))
                .await
                .ok()
                .flatten();
        }
        Work::Run.fire(&dir, &job.name);
        let (j, d, b) = (job.clone(), dir.clone(), board.clone());
        let ran = tokio::task::spawn_blocking(move || one(&j, &d, &b)).await;
        if let Err(e) = ran {
            tracing::error!(job = %job.name, "backup run crashed: {e}");
        }
        // A run shorter than a clock tick must not fire twice for one time.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait for each time of `work` (a restore drill, an integrity check)
/// and do it then (`act`, on the blocking pool), a time missed since
/// the `last` one first. One that finds the job's lock held (a run under
/// way) waits for the next time; one made up for tries again each
/// minute, as the run made up for at the same time holds the lock.
async fn repeat(
    job: BackupJob,
    node: String,
    dir: PathBuf,
    board: Board,
    last: Option<Timestamp>,
    work: Work,
    act: fn(&BackupJob, &std::path::Path, &Board) -> Result<(), RunError>,
) {
    let mut last = Some(last);
    let mut retry = false;
    loop {
        let next_after = |t| work.next(&job, &node, t);
        let next = match last.take() {
            Some(last) => first_time(&job.name, work, last, next_after),
            None if retry => retry_time(),
            None => next_after(jiff::Timestamp::now()).map(|t| (t, false)),
        };
        let (next, made_up) = match next {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(job = %job.name, "the {}s of backup {} are not scheduled: {e}", work.what(), job.name);
                return;
            }
        };
        tracing::info!(job = %job.name, next = %next, "{} scheduled", work.what());
        let left = jiff::Timestamp::now().duration_until(next);
        if left.is_positive() {
            tokio::time::sleep(left.unsigned_abs()).await;
        }
        work.fire(&dir, &job.name);
        retry = false;
        let (j, d, b) = (job.clone(), dir.clone(), board.clone());
        match tokio::task::spawn_blocking(move || act(&j, &d, &b)).await {
            Ok(Ok(())) => {}
            Ok(Err(RunError::Busy(m))) if made_up => {
                tracing::info!(job = %job.name, "{m}: the {} made up for waits", work.what());
                retry = true;
            }
            Ok(Err(RunError::Busy(m))) => {
                tracing::warn!(job = %job.name, "{m}: this {} is skipped", work.what());
            }
            Ok(Err(RunError::Failed(m))) => {
                tracing::error!(job = %job.name, "{} failed: {m}", work.what());
            }
            Err(e) => tracing::error!(job = %job.name, "{} crashed: {e}", work.what()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One integrity check of the repository, logged (a failed one too).
fn check(job: &BackupJob, dir: &std::path::Path, board: &Board) -> Result<(), RunError> {
    let c = super::integrity::check(job, dir, &job.check_read_data, Some(board))?;
    if c.record.ok {
        tracing::info!(
            job = %job.name,
            read_data = %c.record.read_data,
            warnings = c.record.warnings.unwrap_or(0),
            "integrity check passed"
        );
        Ok(())
    } else {
        Err(RunError::Failed(
            c.record.error.unwrap_or_else(|| "?".to_owned()),
        ))
    }
}

/// One restore drill, logged.
fn drill(job: &BackupJob, dir: &std::path::Path, board: &Board) -> Result<(), RunError> {
    let d = super::drill::drill(job, dir, job.drill_sample, Some(board))?;
    tracing::info!(
        job = %job.name,
        snapshot = d.snapshot.as_deref().unwrap_or(""),
        restore_ms = d.restore_ms.unwrap_or(0),
        "restore drill passed"
    );
    Ok(())
}

/// One run, logged; `Ok` also when another run of the job is under way.
fn one(job: &BackupJob, dir: &std::path::Path, board: &Board) -> Result<String, String> {
    tracing::info!(job = %job.name, "backup starting");
    let stage = |stage: &str| tracing::debug!(job = %job.name, stage, "backup");
    let watch = job::Watch {
        stage: &stage,
        bytes: None,
    };
    match job::run(job, dir, Some(board), &watch) {
        Ok(r) => {
            let line = format!(
                "backup {}: snapshot {} ({} added)",
                job.name,
                r.snapshot.as_deref().unwrap_or("?"),
                vigie_core::HumanBytes(r.bytes_added.unwrap_or(0) as f64)
            );
            tracing::info!(job = %job.name, snapshot = r.snapshot.as_deref().unwrap_or(""), bytes_added = r.bytes_added.unwrap_or(0), "backup done");
            Ok(line)
        }
        // The run asked for is under way: a step that asked for one is
        // done (it must not page as a step that cannot be done).
        Err(RunError::Busy(m)) => {
            tracing::warn!(job = %job.name, "{m}: this run is skipped");
            Ok(format!("{m}: no second run"))
        }
        Err(RunError::Failed(m)) => {
            tracing::error!(job = %job.name, "backup failed: {m}");
            Err(m)
        }
    }
}

/// `[action.X] backup = "NAME"`: an incident step that runs the job now.
pub(crate) struct BackupActions {
    pub dir: PathBuf,
    pub board: Board,
}

impl ActionPlugin for BackupActions {
    fn kind(&self) -> &'static str {
        ActionKind::BACKUP
    }

    fn ready<'a>(
        &'a self,
        _config: &'a Config,
        _target: &'a str,
        _undo: bool,
        _view: &'a Statuses,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async { Ok(String::new()) })
    }

    fn run<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        _check: &'a str,
        _incident: i64,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let job = config
                .backups
                .iter()
                .find(|j| j.name == target)
                .cloned()
                .ok_or_else(|| format!("no backup job `{target}` in the running configuration"))?;
            let (dir, board) = (self.dir.clone(), self.board.clone());
            tokio::task::spawn_blocking(move || one(&job, &dir, &board))
                .await
                .map_err(|e| format!("backup run crashed: {e}"))?
        })
    }

    fn undo_after(&self, _config: &Config, _target: &str) -> Option<Duration> {
        None
    }

    fn undo<'a>(
        &'a self,
        _config: &'a Config,
        _target: &'a str,
        _check: &'a str,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async { Ok("a backup is not undone".to_owned()) })
    }
}

/// The plugin `vigie run` registers.
pub(crate) fn plugin(dir: PathBuf, board: Board) -> Arc<BackupActions> {
    Arc::new(BackupActions { dir, board })
}
