//! `vigie sync NAME [--once]`, `vigie sync status|pause|resume`.

use vigie_config::Config;

use crate::{Cli, Failure, Result, SyncAction, exit, load, out, state_dir};

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a vigie_config::SyncJob> {
    config.syncs.iter().find(|j| j.name == name).ok_or_else(|| {
        let known: Vec<&str> = config.syncs.iter().map(|j| j.name.as_str()).collect();
        Failure::config(format!("no sync job named `{name}`")).hint(if known.is_empty() {
            "declare one under [[sync]]".to_owned()
        } else {
            format!("known jobs: {}", known.join(", "))
        })
    })
}

/// Run job `name`: one full pass with `once`, else live until killed.
pub(crate) fn job(cli: &Cli, name: &str, once: bool, allow_deletes: bool) -> Result<u8> {
    let loaded = load(cli)?;
    let job = find(&loaded.config, name)?;
    let mut spec = vigie_sync::JobSpec::from_config(job);
    if allow_deletes {
        spec.max_delete = u64::MAX;
    }
    let dir = state_dir(cli, &loaded.config);
    // The live sender takes the job's lock itself (as the daemon's does);
    // a pass is ours to lock. A state directory that does not exist has
    // no daemon, and a pass need not create one.
    let _lock = if once {
        if dir.exists() {
            Some(lock_job(&dir, name)?)
        } else {
            None
        }
    } else {
        check_job_free(&dir, name)?;
        None
    };
    if once {
        let start = std::time::Instant::now();
        let s = once_with_bar(name, &spec)
            .map_err(|e| Failure::runtime(format!("sync {name}: {e}")))?;
        out(format_args!(
            "{name}: {} files, {} bytes sent to {} in {:.1}s{}\n",
            s.files_sent,
            s.bytes_sent,
            spec.to.describe(),
            start.elapsed().as_secs_f64(),
            if s.held_deletes > 0 {
                format!(
                    "; {} deletions held (more than max_delete): check the source, then add --allow-deletes",
                    s.held_deletes
                )
            } else {
                String::new()
            }
        ))?;
        return Ok(if s.last_error.is_some() || s.held_deletes > 0 {
            exit::RUNTIME
        } else {
            exit::OK
        });
    }
    spec.state_dir = Some(dir);
    let status = std::sync::Arc::new(std::sync::Mutex::new(vigie_sync::Status::default()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // No check runs in this process: nothing reads the job's reports.
    vigie_sync::run(spec, status, stop, vigie_core::Board::new());
    Ok(exit::OK)
}

/// Take the lock of job `name` for a pass. A daemon's sender lets go of it
/// within a second or so of `vigie sync pause NAME`: when the job is
/// paused, wait that long before refusing.
fn lock_job(dir: &std::path::Path, name: &str) -> Result<vigie_store::lock::Lock> {
    use vigie_store::lock::{LockError, sync_lock_name, try_lock};
    let paused = vigie_store::Store::open(dir)
        .ok()
        .and_then(|s| s.sync_paused(name).ok().flatten())
        .is_some();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match try_lock(dir, &sync_lock_name(name)) {
            Ok(l) => return Ok(l),
            Err(LockError::Held { pid, .. })
                if !paused || std::time::Instant::now() >= deadline =>
            {
                return Err(held(dir, name, pid));
            }
            Err(LockError::Held { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(Failure::runtime(format!("sync {name}: {e}"))),
        }
    }
}

/// Refuse to start a second live sender of job `name`.
fn check_job_free(dir: &std::path::Path, name: &str) -> Result<()> {
    use vigie_store::lock::{holder_of, sync_lock_name};
    match holder_of(dir, &sync_lock_name(name)) {
        Ok(None) => Ok(()),
        Ok(Some(pid)) => Err(held(dir, name, pid)),
        Err(e) => Err(Failure::runtime(format!("sync {name}: {e}"))),
    }
}

/// Who sends job `name` already, and what to do about it.
fn held(dir: &std::path::Path, name: &str, pid: Option<u32>) -> Failure {
    let daemon = vigie_store::lock::holder_of(dir, vigie_store::lock::DAEMON_LOCK)
        .ok()
        .flatten();
    let by_daemon = pid.is_some() && daemon == Some(pid);
    let who = match pid {
        Some(p) if by_daemon => format!("the vigie daemon (pid {p})"),
        Some(p) => format!("process {p}"),
        None => "another process".to_owned(),
    };
    let f = Failure::runtime(format!("sync {name}: {who} is sending this job already"));
    if by_daemon {
        f.hint(format!(
            "pause the daemon's sender first: vigie sync pause {name}; then vigie sync resume {name}"
        ))
    } else {
        f.hint(format!(
            "two senders of one job would undo each other: wait for the other `vigie sync {name}` to end, or stop it"
        ))
    }
}

/// One full pass; on a terminal, with a progress bar on stderr (updated
/// ten times a second, drawn complete once more at the end, then erased).
fn once_with_bar(
    name: &str,
    spec: &vigie_sync::JobSpec,
) -> std::result::Result<vigie_sync::Status, String> {
    let Some(bar) = crate::progress::on_terminal(name, COMPARING) else {
        return vigie_sync::once(spec);
    };
    let progress = std::sync::Arc::new(vigie_sync::Progress::default());
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        let pass = scope.spawn(|| vigie_sync::once_with(spec, progress.clone()));
        let mut counting = false;
        loop {
            show(&bar, &mut counting, &progress, start.elapsed());
            if pass.is_finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // The rate limiter may have skipped the last update.
        bar.force_draw();
        bar.finish_and_clear();
        pass.join()
            .unwrap_or_else(|_| Err("the pass panicked".to_owned()))
    })
}

const COMPARING: &str = "comparing both trees…";

/// Bring `bar` up to date with `p`: "comparing both trees…" until the
/// totals are known, then
/// `[#####·····]  45%  4,500/10,000 files  45.0 MB/100.0 MB  12.3 MB/s`.
/// The bar follows bytes, or files when there are no bytes to speak of.
fn show(
    bar: &indicatif::ProgressBar,
    counting: &mut bool,
    p: &vigie_sync::Progress,
    elapsed: std::time::Duration,
) {
    use indicatif::HumanCount;
    use std::sync::atomic::Ordering::Relaxed;
    use vigie_core::HumanBytes;
    let (files, bytes) = (p.files.load(Relaxed), p.bytes.load(Relaxed));
    let (files_done, bytes_done) = (p.files_done.load(Relaxed), p.bytes_done.load(Relaxed));
    if files == 0 {
        return;
    }
    let (len, done) = if bytes > 0 {
        (bytes, bytes_done)
    } else {
        (files, files_done)
    };
    // Each setter may draw; the style changes without drawing, so the
    // switch shows when the counts are there.
    bar.set_length(len);
    bar.set_position(done.min(len));
    if !*counting {
        bar.set_style(crate::progress::bar_style());
        *counting = true;
    }
    let rate = bytes_done as f64 / elapsed.as_secs_f64().max(0.001);
    bar.set_message(format!(
        "{}/{} files  {}/{}  {}/s",
        HumanCount(files_done),
        HumanCount(files),
        HumanBytes(bytes_done as f64),
        HumanBytes(bytes as f64),
        HumanBytes(rate)
    ));
}

/// Failback: bring the far side's tree back into `from`.
pub(crate) fn reverse(cli: &Cli, name: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let job = find(&loaded.config, name)?;
    let dir = state_dir(cli, &loaded.config);
    let store = vigie_store::Store::open(&dir).map_err(|e| Failure::runtime(e.to_string()))?;
    if store
        .sync_paused(name)
        .map_err(|e| Failure::runtime(e.to_string()))?
        .is_none()
    {
        return Err(Failure::config(format!(
            "{name} is not paused: the live replication would undo the reverse pass"
        ))
        .hint(format!(
            "vigie sync pause {name}, then again; vigie sync resume {name} after"
        )));
    }
    // Held like a forward pass's: a daemon slow to let go of the paused
    // job, or a `vigie sync NAME --once` or a second reverse pass
    // meanwhile, would write the same tree from two sides.
    let _lock = lock_job(&dir, name)?;
    let spec = vigie_sync::JobSpec::from_config(job);
    let start = std::time::Instant::now();
    vigie_sync::reverse(&spec)
        .map_err(|e| Failure::runtime(format!("sync {name} --reverse: {e}")))?;
    out(format_args!(
        "{name}: {} brought back into {} in {:.1}s (nothing deleted here); then `vigie sync resume {name}`\n",
        spec.to.describe(),
        job.from.display(),
        start.elapsed().as_secs_f64()
    ))?;
    Ok(exit::OK)
}

pub(crate) fn action(cli: &Cli, action: &SyncAction) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let dir = state_dir(cli, config);
    let rt = |e: vigie_store::StoreError| Failure::runtime(e.to_string());
    let mut store = vigie_store::Store::open(&dir).map_err(rt)?;
    let now = vigie_core::Timestamp::now();
    match action {
        SyncAction::Pause { name, reason } => {
            find(config, name)?;
            store.sync_pause(name, reason, now).map_err(rt)?;
            out(format_args!(
                "{name}: paused ({reason}); changes keep queueing\n"
            ))?;
            Ok(exit::OK)
        }
        SyncAction::Resume { name } => {
            find(config, name)?;
            let was = store.sync_resume(name).map_err(rt)?;
            out(format_args!(
                "{name}: {}\n",
                if was { "resumed" } else { "was not paused" }
            ))?;
            Ok(exit::OK)
        }
        SyncAction::Status { json } => {
            let states = store.states().map_err(rt)?;
            let mut rows = Vec::new();
            let mut items = Vec::new();
            let mut failing = false;
            for j in &config.syncs {
                let check = config
                    .checks
                    .iter()
                    .find(|c| matches!(&c.probe, vigie_config::Probe::Sync(p) if p.job == j.name));
                let state = check
                    .and_then(|c| states.get(&c.name))
                    .cloned()
                    .unwrap_or_default();
                failing |= state.tracker.state == vigie_core::CheckState::Failing;
                let (queued, oldest) = store.sync_queue(&j.name).map_err(rt)?;
                let paused = store.sync_paused(&j.name).map_err(rt)?;
                rows.push(vec![
                    j.name.clone(),
                    j.to.clone(),
                    paused.as_ref().map_or_else(
                        || format!("{:?}", state.tracker.state).to_lowercase(),
                        |p| format!("paused ({})", p.reason),
                    ),
                    queued.len().to_string(),
                    state.last_message.clone(),
                ]);
                items.push(serde_json::json!({
                    "name": j.name,
                    "from": j.from,
                    "to": j.to,
                    "check": check.map(|c| c.name.clone()),
                    "state": state.tracker.state,
                    "message": state.last_message,
                    "queued_on_disk": queued.len(),
                    "oldest_queued": oldest.map(vigie_core::Timestamp::millis),
                    "paused": paused,
                }));
            }
            if *json {
                crate::out_json(&serde_json::Value::from(items))?;
            } else {
                crate::out_table(&["SYNC", "TO", "STATE", "QUEUED", "LAST REPORT"], &rows)?;
            }
            Ok(if failing {
                exit::CHECK_FAILED
            } else {
                exit::OK
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn the_progress_line_reads_at_a_glance() {
        let bar = indicatif::ProgressBar::hidden().with_message(COMPARING);
        let mut counting = false;
        let p = vigie_sync::Progress::default();
        let t = std::time::Duration::from_secs(2);
        show(&bar, &mut counting, &p, t);
        assert_eq!(bar.message(), "comparing both trees…");
        assert!(!counting);
        p.files.store(10_000, Relaxed);
        p.bytes.store(100_000_000, Relaxed);
        p.files_done.store(4_500, Relaxed);
        p.bytes_done.store(45_000_000, Relaxed);
        show(&bar, &mut counting, &p, t);
        assert_eq!(
            bar.message(),
            "4,500/10,000 files  45.0 MB/100.0 MB  22.5 MB/s"
        );
        assert_eq!(
            (bar.position(), bar.length()),
            (45_000_000, Some(100_000_000))
        );
        // Empty files only: counted by files.
        let p = vigie_sync::Progress::default();
        p.files.store(4, Relaxed);
        p.files_done.store(4, Relaxed);
        show(&bar, &mut counting, &p, t);
        assert!(bar.message().starts_with("4/4 files  0 B/0 B"));
        assert_eq!((bar.position(), bar.length()), (4, Some(4)));
    }
}
