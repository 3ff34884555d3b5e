//! `vigie backup restore|forget|check|drill`: what an operator does by
//! hand with a job's repository, opened once, each with its exit code
//! (1 when the repository or a drill finds damage, 3 when it cannot be
//! done).

use std::path::Path;

use vigie_config::BackupJob;

use super::job::{filter, keep, repo_spec};
use crate::{Failure, Result, exit, out, out_table};

fn open(job: &BackupJob) -> Result<vigie_backup::Repo> {
    let spec = repo_spec(job).map_err(|e| Failure::config(e.to_string()))?;
    vigie_backup::open(&spec, job.password.expose()).map_err(|e| Failure::runtime(e.to_string()))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// What to restore, and where.
pub(crate) struct Target<'a> {
    pub snapshot: Option<&'a str>,
    pub path: Option<&'a Path>,
    pub to: &'a Path,
    pub overwrite: bool,
}

/// A restore's progress as a bar of bytes on a terminal.
struct Bar(Option<indicatif::ProgressBar>);

impl vigie_backup::RestoreProgress for Bar {
    fn start(&self, total_bytes: Option<u64>) {
        if let (Some(b), Some(total)) = (&self.0, total_bytes) {
            b.set_length(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix}: [{bar:30}] {binary_bytes}/{binary_total_bytes} {msg} ({eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
        }
    }
    fn restored(&self, files: u64, bytes: u64) {
        if let Some(b) = &self.0 {
            b.set_position(bytes);
            b.set_message(format!("{files} files"));
        }
    }
}

pub(crate) fn restore(job: &BackupJob, target: &Target<'_>) -> Result<u8> {
    let repo = open(job)?;
    let filter = filter(job);
    let bar = Bar(crate::progress::on_terminal(
        &format!("restore {}", job.name),
        "",
    ));
    let done = repo.restore(
        &vigie_backup::RestoreRequest {
            filter: &filter,
            snapshot: target.snapshot,
            path: target.path,
            to: target.to,
            overwrite: target.overwrite,
        },
        &bar,
    );
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    let s = done.map_err(|e| Failure::runtime(e.to_string()))?;
    eprintln!(
        "restored snapshot {} into {}: {} files ({}), {} directories, {} links, {} hard links in {:.1}s",
        short(&s.snapshot),
        target.to.display(),
        s.files,
        vigie_core::HumanBytes(s.bytes as f64),
        s.dirs,
        s.symlinks,
        s.hard_links,
        s.duration.as_secs_f64()
    );
    Ok(exit::OK)
}

pub(crate) fn ls(
    job: &BackupJob,
    snapshot: Option<&str>,
    path: Option<&Path>,
    json: bool,
) -> Result<u8> {
    let repo = open(job)?;
    let mut each = |e: &vigie_backup::Entry| -> std::io::Result<()> {
        let line = if json {
            serde_json::json!({
                "path": e.path.to_string_lossy(),
                "type": e.kind.to_string(),
                "mode": format!("{:04o}", e.mode),
                "size": e.size,
            })
            .to_string()
        } else {
            format!(
                "{} {:04o} {:>12} {}",
                e.kind,
                e.mode,
                e.size,
                e.path.display()
            )
        };
        out(format_args!("{line}\n")).map_err(|f| std::io::Error::other(f.message))
    };
    repo.ls(&filter(job), snapshot, path, &mut each)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    Ok(exit::OK)
}

pub(crate) fn dump(job: &BackupJob, snapshot: Option<&str>, path: &Path) -> Result<u8> {
    let repo = open(job)?;
    let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    repo.dump(&filter(job), snapshot, path, &mut stdout)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    std::io::Write::flush(&mut stdout)
        .map_err(|e| Failure::runtime(format!("cannot write to stdout: {e}")))?;
    Ok(exit::OK)
}

pub(crate) fn forget(job: &BackupJob, dry_run: bool) -> Result<u8> {
    let Some(k) = &job.keep else {
        return Err(Failure::config(format!(
            "backup {} has no `keep`: nothing says which snapshots to keep",
            job.name
        ))
        .hint("add keep = { daily = 7, weekly = 4, monthly = 12 } to the job"));
    };
    let repo = open(job)?;
    let plan = repo
        .forget(&filter(job), &keep(k), dry_run)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let rows: Vec<Vec<String>> = plan
        .groups
        .iter()
        .flat_map(|g| &g.snapshots)
        .map(|d| {
            vec![
                short(&d.snapshot.id).to_owned(),
                super::when(vigie_core::Timestamp(
                    d.snapshot
                        .time
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() as i64,
                )),
                if d.keep { "keep" } else { "forget" }.to_owned(),
                d.reasons.join(", "),
            ]
        })
        .collect();
    out_table(&["ID", "TIME", "", "WHY"], &rows)?;
    let removed = plan.removed().len();
    if dry_run {
        out(format_args!(
            "{removed} snapshots would be forgotten (dry run: nothing changed)\n"
        ))?;
    } else if removed > 0 {
        let p = repo.prune().map_err(|e| Failure::runtime(e.to_string()))?;
        out(format_args!(
            "{removed} snapshots forgotten; prune: {} packs marked unused, {} repacked, {} deleted; unused {} → {}\n",
            p.packs_unused,
            p.packs_repacked,
            p.packs_deleted,
            vigie_core::HumanBytes(p.unused_bytes_before as f64),
            vigie_core::HumanBytes(p.unused_bytes_after as f64),
        ))?;
    } else {
        out(format_args!("nothing to forget\n"))?;
    }
    Ok(exit::OK)
}

pub(crate) fn check(job: &BackupJob, state_dir: &Path, read_data: Option<&str>) -> Result<u8> {
    // Recorded in the store as the daemon's are: the job's check
    // `backup-NAME-check` reads the latest, whoever ran it.
    let checked = super::integrity::check(job, state_dir, read_data.unwrap_or("none"), None)
        .map_err(|e| match e {
            super::job::RunError::Busy(m) | super::job::RunError::Failed(m) => Failure::runtime(m),
        })?;
    let Some(report) = checked.report else {
        return Err(Failure::runtime(
            checked
                .record
                .error
                .unwrap_or_else(|| "the check could not run".into()),
        ));
    };
    for p in &report.problems {
        let level = if p.error { "error" } else { "warning" };
        out(format_args!("{level}: {}\n", p.message))?;
    }
    if report.is_ok() {
        out(format_args!(
            "repository {} is sound{}\n",
            job.repository,
            if report.read_data {
                " (data read back)"
            } else {
                ""
            }
        ))?;
        Ok(exit::OK)
    } else {
        Ok(exit::CHECK_FAILED)
    }
}

pub(crate) fn drill(job: &BackupJob, state_dir: &Path, sample: Option<u8>) -> Result<u8> {
    // Recorded in the store as the daemon's are: the job's drill check
    // reads the latest, whoever ran it.
    match super::drill::drill(job, state_dir, sample.or(job.drill_sample), None) {
        Ok(d) => {
            out(format_args!(
                "drill of {} (snapshot {}): {} files, {} restored in {:.1}s and verified: passed\n",
                job.name,
                d.snapshot.as_deref().map_or("?", short),
                d.files.unwrap_or(0),
                vigie_core::HumanBytes(d.bytes.unwrap_or(0) as f64),
                d.restore_ms.unwrap_or(0) as f64 / 1000.0,
            ))?;
            Ok(exit::OK)
        }
        Err(super::job::RunError::Busy(m)) => Err(Failure::runtime(m)),
        Err(super::job::RunError::Failed(m)) => {
            out(format_args!("drill of {} FAILED: {m}\n", job.name))?;
            Ok(exit::CHECK_FAILED)
        }
    }
}
