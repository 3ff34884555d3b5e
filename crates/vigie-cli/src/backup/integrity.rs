//! Integrity checks of a `[[backup]]` job's repository, whoever starts
//! them (the daemon's `check` schedule, `vigie backup check`): under the
//! job's lock and a shared repository lock (as `restic check` takes), the
//! structure read and the share of pack data asked for read back; the
//! check recorded in the store and reported on the board, where the
//! check `backup-NAME-check` reads it. And the repository's
//! reachability, asked every few minutes by the daemon for the check
//! `backup-NAME-repository`.

use std::path::Path;
use std::time::Instant;

use vigie_backup::{CheckReport, LockKind};
use vigie_config::BackupJob;
use vigie_core::{
    Board, Metric, Outcome, Timestamp, integrity_metric, integrity_report, repository_metric,
    repository_report,
};
use vigie_store::BackupCheck;

use super::job::{self, RunError, repo_spec};

/// The most errors named in a failed check's message.
const NAMED: usize = 3;

/// What one integrity check found: its record, and the engine's full
/// report when it ran.
pub(crate) struct Checked {
    pub record: BackupCheck,
    pub report: Option<CheckReport>,
}

/// Check `job`'s repository now, reading back `read_data` of its packs
/// (`none`: the structure only); `Err` only when the job's lock is held
/// (another run, drill or check of it is under way). A check that could
/// not run is recorded as failed, as one that found damage.
pub(crate) fn check(
    job: &BackupJob,
    state_dir: &Path,
    read_data: &str,
    board: Option<&Board>,
) -> Result<Checked, RunError> {
    let _lock = job::hold(job, state_dir)?;
    let started = Timestamp::now();
    let result = attempt(job, read_data);
    let ended = Timestamp::now();
    let (record, report) = match result {
        Ok(report) => {
            let errors: Vec<&str> = report.errors().map(|p| p.message.as_str()).collect();
            let error = (!errors.is_empty()).then(|| {
                let more = errors.len().saturating_sub(NAMED);
                let more = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                format!(
                    "{}{more}",
                    errors
                        .iter()
                        .take(NAMED)
                        .copied()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            });
            let record = BackupCheck {
                job: job.name.clone(),
                started,
                ended,
                ok: report.is_ok(),
                read_data: read_data.to_owned(),
                errors: Some(errors.len() as u64),
                warnings: Some((report.problems.len() - errors.len()) as u64),
                error,
            };
            (record, Some(report))
        }
        Err(e) => (
            BackupCheck {
                job: job.name.clone(),
                started,
                ended,
                ok: false,
                read_data: read_data.to_owned(),
                errors: None,
                warnings: None,
                error: Some(e),
            },
            None,
        ),
    };
    match vigie_store::Store::open(state_dir).and_then(|mut s| {
        s.check_record(&record)?;
        Ok(s)
    }) {
        Ok(store) => {
            if let Some(board) = board {
                publish(board, &store, &job.name);
            }
        }
        Err(e) => tracing::error!(job = %job.name, "cannot record the integrity check: {e}"),
    }
    Ok(Checked { record, report })
}

/// Open, lock (shared), check; the error as one line.
fn attempt(job: &BackupJob, read_data: &str) -> Result<CheckReport, String> {
    let spec = repo_spec(job).map_err(|e| e.to_string())?;
    let repo = vigie_backup::open(&spec, job.password.expose()).map_err(|e| e.to_string())?;
    let _shared = repo.lock(LockKind::Shared).map_err(|e| e.to_string())?;
    let subset = (read_data != "none").then_some(read_data);
    repo.check(subset).map_err(|e| e.to_string())
}

/// The job's integrity report on the board, from its last check in the
/// store (none before the first).
pub(crate) fn publish(board: &Board, store: &vigie_store::Store, job: &str) {
    match store.check_last(job) {
        Ok(Some(c)) => board.publish(&integrity_report(job), report(&c)),
        Ok(None) => board.withdraw(&integrity_report(job)),
        Err(e) => tracing::error!(job, "cannot read the integrity checks of backup {job}: {e}"),
    }
}

fn report(c: &BackupCheck) -> Outcome {
    let when = super::when(c.ended);
    let read = match c.read_data.as_str() {
        "none" => "structure".to_owned(),
        "all" => "structure and all data".to_owned(),
        share => format!("structure and {share} of the data"),
    };
    let mut o = if c.ok {
        let warnings = match c.warnings.unwrap_or(0) {
            0 => String::new(),
            n => format!(" ({n} warnings: `vigie backup check {}` lists them)", c.job),
        };
        Outcome::ok(format!(
            "integrity check of backup {}'s repository passed at {when}: {read} sound{warnings}",
            c.job
        ))
    } else {
        Outcome::fail(format!(
            "integrity check of backup {}'s repository failed at {when}: {}",
            c.job,
            c.error.as_deref().unwrap_or("?")
        ))
    };
    let metric = |name: &str, value: f64| Metric {
        name: name.to_owned(),
        value,
    };
    o.metrics.push(metric(
        integrity_metric::LAST_TIMESTAMP,
        c.ended.as_secs_f64(),
    ));
    o.metrics.push(metric(
        integrity_metric::RESULT,
        if c.ok { 1.0 } else { 0.0 },
    ));
    o.metrics.push(metric(
        integrity_metric::SECONDS,
        (c.ended.millis() - c.started.millis()).max(0) as f64 / 1000.0,
    ));
    o
}

/// Whether `job`'s repository answers now, published on the board for
/// its check `backup-NAME-repository`.
pub(crate) fn reach(job: &BackupJob, board: &Board) {
    let started = Instant::now();
    let result = repo_spec(job).and_then(|spec| vigie_backup::reach(&spec));
    let took = started.elapsed().as_secs_f64();
    let mut o = match &result {
        Ok(()) => Outcome::ok(format!(
            "the repository of backup {} answered in {}ms",
            job.name,
            (took * 1000.0).round()
        )),
        Err(e) => Outcome::fail(e.to_string()),
    };
    o.metrics.push(Metric {
        name: repository_metric::UP.to_owned(),
        value: if result.is_ok() { 1.0 } else { 0.0 },
    });
    o.metrics.push(Metric {
        name: repository_metric::SECONDS.to_owned(),
        value: took,
    });
    board.publish(&repository_report(&job.name), o);
}
