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
    if once {
        let start = std::time::Instant::now();
        let s =
            vigie_sync::once(&spec).map_err(|e| Failure::runtime(format!("sync {name}: {e}")))?;
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
    spec.state_dir = Some(state_dir(cli, &loaded.config));
    let status = std::sync::Arc::new(std::sync::Mutex::new(vigie_sync::Status::default()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    vigie_sync::run(spec, status, stop);
    Ok(exit::OK)
}

/// Failback: bring the far side's tree back into `from`.
pub(crate) fn reverse(cli: &Cli, name: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let job = find(&loaded.config, name)?;
    let store = vigie_store::Store::open(&state_dir(cli, &loaded.config))
        .map_err(|e| Failure::runtime(e.to_string()))?;
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
                out(format_args!(
                    "{}\n",
                    serde_json::to_string_pretty(&items).unwrap_or_default()
                ))?;
            } else {
                out(format_args!(
                    "{}",
                    crate::output::table(&["SYNC", "TO", "STATE", "QUEUED", "LAST REPORT"], &rows)
                ))?;
            }
            Ok(if failing {
                exit::CHECK_FAILED
            } else {
                exit::OK
            })
        }
    }
}
