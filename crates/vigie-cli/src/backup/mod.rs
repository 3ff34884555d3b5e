//! `vigie backup init|run|snapshots|list|restore|ls|dump|forget|check|drill`:
//! the `[[backup]]` jobs by hand,
//! with the running daemon's configuration and state directory when one
//! runs (as `vigie status`).

mod drill;
mod integrity;
pub(crate) mod job;
mod manual;
pub(crate) mod schedule;

use vigie_config::{BackupJob, Config};
use vigie_core::Timestamp;

use crate::output::ago;
pub(crate) use crate::output::when;
use crate::{BackupAction, Cli, Failure, Result, exit, load, out, out_json, out_table, state_dir};

pub(crate) fn action(cli: &Cli, action: &BackupAction) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    match action {
        BackupAction::Init { name } => init(find(config, name)?),
        BackupAction::Run { name } => run(cli, config, find(config, name)?),
        BackupAction::Snapshots { name, json } => snapshots(find(config, name)?, *json),
        BackupAction::List { json } => list(cli, config, *json),
        BackupAction::Restore {
            name,
            snapshot,
            path,
            to,
            overwrite,
        } => manual::restore(
            find(config, name)?,
            &manual::Target {
                snapshot: snapshot.as_deref(),
                path: path.as_deref(),
                to,
                overwrite: *overwrite,
            },
        ),
        BackupAction::Ls {
            name,
            snapshot,
            path,
            json,
        } => manual::ls(
            find(config, name)?,
            snapshot.as_deref(),
            path.as_deref(),
            *json,
        ),
        BackupAction::Dump {
            name,
            snapshot,
            path,
        } => manual::dump(find(config, name)?, snapshot.as_deref(), path),
        BackupAction::Forget { name, dry_run } => manual::forget(find(config, name)?, *dry_run),
        BackupAction::Check { name, read_data } => manual::check(
            find(config, name)?,
            &state_dir(cli, config),
            read_data.as_deref(),
        ),
        BackupAction::Drill { name, sample } => {
            manual::drill(find(config, name)?, &state_dir(cli, config), *sample)
        }
    }
}

/// `vigie sqlite-copy PATH`: the database copied (`VACUUM INTO`) into a
/// private temporary directory beside it (the same file system, which
/// has room for it; else the system's), streamed to stdout and removed.
pub(crate) fn sqlite_copy(path: &std::path::Path) -> Result<u8> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".vigie-sqlite-copy-");
    let beside = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = beside
        .and_then(|p| builder.tempdir_in(p).ok())
        .map_or_else(|| builder.tempdir(), Ok)
        .map_err(|e| Failure::runtime(format!("cannot make a temporary directory: {e}")))?;
    let copy = dir.path().join("copy.db");
    vigie_store::sqlite_copy(path, &copy)
        .map_err(|e| Failure::runtime(format!("cannot copy {}: {e}", path.display())))?;
    let mut file = std::fs::File::open(&copy)
        .map_err(|e| Failure::runtime(format!("cannot read the copy: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    std::io::copy(&mut file, &mut stdout)
        .and_then(|_| std::io::Write::flush(&mut stdout))
        .map_err(|e| Failure::runtime(format!("cannot write the copy: {e}")))?;
    Ok(exit::OK)
}

fn find<'c>(config: &'c Config, name: &str) -> Result<&'c BackupJob> {
    config
        .backups
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.backups.iter().map(|j| j.name.as_str()).collect();
            let f = Failure::config(format!("no backup job named `{name}`"));
            if known.is_empty() {
                f.hint("declare one under [[backup]] in the configuration")
            } else {
                f.hint(format!("known backup jobs: {}", known.join(", ")))
            }
        })
}

fn spec(job: &BackupJob) -> Result<vigie_backup::RepoSpec> {
    job::repo_spec(job).map_err(|e| Failure::config(e.to_string()))
}

fn init(job: &BackupJob) -> Result<u8> {
    vigie_backup::init(&spec(job)?, job.password.expose())
        .map_err(|e| Failure::runtime(e.to_string()))?;
    eprintln!(
        "created repository {} for backup {}",
        job.repository, job.name
    );
    Ok(exit::OK)
}

fn run(cli: &Cli, config: &Config, job: &BackupJob) -> Result<u8> {
    let dir = state_dir(cli, config);
    let bar = crate::progress::on_terminal(&format!("backup {}", job.name), "starting");
    if let Some(b) = &bar {
        b.enable_steady_tick(std::time::Duration::from_millis(100));
        b.set_style(spinner_style());
    }
    let stage = |s: &str| match &bar {
        Some(b) => {
            // Past the backup's bytes (pruning, hooks).
            if s != "backing up" {
                bytes_done(b, &job.name);
            }
            b.set_message(s.to_owned());
        }
        None => eprintln!("backup {}: {s}", job.name),
    };
    let watch = job::Watch {
        stage: &stage,
        bytes: bar.as_ref().map(|b| {
            std::sync::Arc::new(Bytes(b.clone()))
                as std::sync::Arc<dyn vigie_backup::BackupProgress>
        }),
    };
    let result = job::run(job, &dir, None, &watch);
    if let Some(b) = &bar {
        bytes_done(b, &job.name);
        b.finish_and_clear();
    }
    match result {
        Ok(r) => {
            let took = (r.ended.millis() - r.started.millis()).max(0) as f64 / 1000.0;
            out(format_args!(
                "{}\n",
                r.snapshot.as_deref().unwrap_or_default()
            ))?;
            eprintln!(
                "backup {}: snapshot {} saved, {} added in {took:.1}s",
                job.name,
                r.snapshot.as_deref().map_or("?", |s| &s[..s.len().min(8)]),
                vigie_core::HumanBytes(r.bytes_added.unwrap_or(0) as f64),
            );
            Ok(exit::OK)
        }
        Err(job::RunError::Busy(m)) => {
            Err(Failure::runtime(m).hint("wait for it to finish; runs of a job never overlap"))
        }
        Err(job::RunError::Failed(m)) => Err(Failure::runtime(m)),
    }
}

/// Past the backup's bytes: their count stays on the terminal as a line
/// of its own, `backup NAME: 48.00 MiB/48.00 MiB read (100%)` (a bar's
/// last frame is drawn only if the 10 Hz refresh falls on it), and the
/// bar is a spinner again. Nothing while the total is not known.
fn bytes_done(b: &indicatif::ProgressBar, name: &str) {
    let Some(total) = b.length() else {
        return;
    };
    let read = b.position();
    let share = (read.min(total) * 100).checked_div(total).unwrap_or(100);
    b.println(format!(
        "backup {name}: {}/{} read ({share}%)",
        indicatif::BinaryBytes(read),
        indicatif::BinaryBytes(total)
    ));
    b.set_style(spinner_style());
    b.unset_length();
}

/// `⠋ backup NAME: STAGE (ELAPSED)`: a stage of unknown length.
fn spinner_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
        .expect("a valid template")
}

/// A backup's bytes on the terminal's bar: a spinner counting them
/// until the walk beside the backup knows their total, then a bar with
/// its percentage, rate and time left.
#[derive(Debug)]
struct Bytes(indicatif::ProgressBar);

impl vigie_backup::BackupProgress for Bytes {
    fn total(&self, bytes: u64) {
        self.0.set_length(bytes);
        self.0.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:24.cyan}] {percent:>3}%  {binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec}  {eta} left",
            )
            .expect("a valid template")
            .progress_chars("#·"),
        );
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
        if self.0.length().is_none() {
            self.0.set_message(format!(
                "backing up, {} read",
                vigie_core::HumanBytes(self.0.position() as f64)
            ));
        }
    }
}

fn snapshots(job: &BackupJob, json: bool) -> Result<u8> {
    let repo = vigie_backup::open(&spec(job)?, job.password.expose())
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let all = repo
        .snapshots()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64
    };
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id,
                    "time": when(Timestamp(secs(s.time))),
                    "hostname": s.hostname,
                    "paths": s.paths,
                    "tags": s.tags,
                })
            })
            .collect();
        out_json(&serde_json::Value::from(v))?;
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|s| {
                vec![
                    s.id[..s.id.len().min(8)].to_owned(),
                    when(Timestamp(secs(s.time))),
                    s.hostname.clone(),
                    s.tags.join(","),
                    s.paths.join(" "),
                ]
            })
            .collect();
        out_table(&["ID", "TIME", "HOST", "TAGS", "PATHS"], &rows)?;
    }
    Ok(exit::OK)
}

/// One job as `list` and `status` show it.
pub(crate) struct JobView {
    pub name: String,
    pub last: Option<vigie_store::BackupRun>,
    pub good: Option<vigie_store::BackupRun>,
    pub next: Option<Timestamp>,
}

/// Each job's last run, last good run and next time, from the store.
pub(crate) fn views(config: &Config, dir: &std::path::Path) -> Vec<JobView> {
    let store = dir
        .join(vigie_store::DB_FILE)
        .exists()
        .then(|| vigie_store::Store::open(dir).ok())
        .flatten();
    config
        .backups
        .iter()
        .map(|j| {
            let (last, good) = store
                .as_ref()
                .and_then(|s| s.backup_last(&j.name).ok())
                .unwrap_or_default();
            let next = j
                .next_run(&config.node.name, jiff::Timestamp::now())
                .ok()
                .map(|t| Timestamp(t.as_millisecond()));
            JobView {
                name: j.name.clone(),
                last,
                good,
                next,
            }
        })
        .collect()
}

/// The table rows of `views`: job, last run, last good snapshot, next run.
pub(crate) fn rows(views: &[JobView]) -> Vec<Vec<String>> {
    let now = Timestamp::now().millis();
    views
        .iter()
        .map(|v| {
            let last = match &v.last {
                None => "never".to_owned(),
                Some(r) if r.ok => format!("ok {}", ago(r.started.millis(), now)),
                Some(r) => format!(
                    "FAILED {}: {}",
                    ago(r.started.millis(), now),
                    r.error.as_deref().unwrap_or("")
                ),
            };
            let good = v.good.as_ref().map_or_else(
                || "none".to_owned(),
                |g| {
                    format!(
                        "{} {}",
                        g.snapshot.as_deref().map_or("?", |s| &s[..s.len().min(8)]),
                        ago(g.started.millis(), now)
                    )
                },
            );
            let next = v.next.map_or_else(|| "-".to_owned(), when);
            vec![v.name.clone(), last, good, next]
        })
        .collect()
}

/// JSON of `views`.
pub(crate) fn json(views: &[JobView]) -> serde_json::Value {
    views
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "last_run": v.last,
                "last_good": v.good,
                "next_run": v.next,
            })
        })
        .collect()
}

fn list(cli: &Cli, config: &Config, as_json: bool) -> Result<u8> {
    let views = views(config, &state_dir(cli, config));
    if as_json {
        out_json(&json(&views))?;
    } else {
        out_table(
            &["BACKUP", "LAST RUN", "LAST GOOD SNAPSHOT", "NEXT RUN"],
            &rows(&views),
        )?;
    }
    Ok(exit::OK)
}
