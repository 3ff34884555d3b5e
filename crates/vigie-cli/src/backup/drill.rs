//! Restore drills of a `[[backup]]` job, whoever starts them (the
//! daemon's `drill` schedule, `vigie backup drill`): under the job's lock,
//! the latest snapshot (or a sample of its files) restored into a scratch
//! directory of the state directory, every byte verified, the restore
//! timed, the copy removed; the drill recorded in the store and reported
//! on the board, where the check `backup-NAME-drill` reads it.

use std::path::Path;

use vigie_config::BackupJob;
use vigie_core::{Board, Metric, Outcome, Timestamp, drill_metric, drill_report};
use vigie_store::BackupDrill;

use super::job::{self, RunError, filter, repo_spec};

/// The most differences named in a failed drill's message.
const NAMED: usize = 5;

/// Drill `job` now; `Err` when it could not run (its lock held) or
/// failed (recorded: what went wrong).
pub(crate) fn drill(
    job: &BackupJob,
    state_dir: &Path,
    sample: Option<u8>,
    board: Option<&Board>,
) -> Result<BackupDrill, RunError> {
    let _lock = job::hold(job, state_dir)?;
    let started = Timestamp::now();
    let result = attempt(job, state_dir, sample);
    let ended = Timestamp::now();
    let drill = match result {
        Ok(r) => {
            let error = (!r.mismatches.is_empty()).then(|| {
                let named: Vec<String> = r
                    .mismatches
                    .iter()
                    .take(NAMED)
                    .map(|m| format!("{}: {}", m.path.display(), m.problem))
                    .collect();
                let more = r.mismatches.len().saturating_sub(NAMED);
                let more = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                format!("{}{more}", named.join("; "))
            });
            BackupDrill {
                job: job.name.clone(),
                started,
                ended,
                ok: error.is_none(),
                snapshot: Some(r.snapshot),
                files: Some(r.files),
                bytes: Some(r.bytes),
                restore_ms: Some(u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX)),
                error,
            }
        }
        Err(e) => BackupDrill {
            job: job.name.clone(),
            started,
            ended,
            ok: false,
            snapshot: None,
            files: None,
            bytes: None,
            restore_ms: None,
            error: Some(e),
        },
    };
    match vigie_store::Store::open(state_dir).and_then(|mut s| {
        s.drill_record(&drill)?;
        Ok(s)
    }) {
        Ok(store) => {
            if let Some(board) = board {
                publish(board, &store, &job.name);
            }
        }
        Err(e) => tracing::error!(job = %job.name, "cannot record the drill: {e}"),
    }
    if drill.ok {
        Ok(drill)
    } else {
        Err(RunError::Failed(drill.error.clone().unwrap_or_default()))
    }
}

/// Open, drill into `STATE/drills/JOB` (the job's own: a killed drill's
/// copy found there is removed, under the job's lock); the error as one
/// line.
fn attempt(
    job: &BackupJob,
    state_dir: &Path,
    sample: Option<u8>,
) -> Result<vigie_backup::DrillReport, String> {
    let spec = repo_spec(job).map_err(|e| e.to_string())?;
    let repo = vigie_backup::open(&spec, job.password.expose()).map_err(|e| e.to_string())?;
    // A job's name is a plain name (`is_valid_name`): no `/`, no `..`.
    let scratch = state_dir.join("drills").join(&job.name);
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot make {}: {e}", scratch.display()))?;
    repo.drill(&filter(job), sample, &scratch)
        .map_err(|e| e.to_string())
}

/// The job's drill report on the board, from its last drill in the
/// store (none before the first).
pub(crate) fn publish(board: &Board, store: &vigie_store::Store, job: &str) {
    match store.drill_last(job) {
        Ok(Some(d)) => board.publish(&drill_report(job), report(&d)),
        Ok(None) => board.withdraw(&drill_report(job)),
        Err(e) => tracing::error!(job, "cannot read the drills of backup {job}: {e}"),
    }
}

fn report(d: &BackupDrill) -> Outcome {
    let secs = |ms: u64| ms as f64 / 1000.0;
    let when = super::when(d.ended);
    let mut o = if d.ok {
        Outcome::ok(format!(
            "restore drill of backup {} passed at {when}: snapshot {}, {} files ({}) restored in {:.1}s and verified",
            d.job,
            d.snapshot.as_deref().map_or("?", |s| &s[..s.len().min(8)]),
            d.files.unwrap_or(0),
            vigie_core::HumanBytes(d.bytes.unwrap_or(0) as f64),
            secs(d.restore_ms.unwrap_or(0)),
        ))
    } else {
        Outcome::fail(format!(
            "restore drill of backup {} failed at {when}: {}",
            d.job,
            d.error.as_deref().unwrap_or("?")
        ))
    };
    let metric = |name: &str, value: f64| Metric {
        name: name.to_owned(),
        value,
    };
    o.metrics
        .push(metric(drill_metric::LAST_TIMESTAMP, d.ended.as_secs_f64()));
    o.metrics
        .push(metric(drill_metric::RESULT, if d.ok { 1.0 } else { 0.0 }));
    if let Some(ms) = d.restore_ms {
        o.metrics
            .push(metric(drill_metric::RESTORE_SECONDS, secs(ms)));
    }
    o
}
