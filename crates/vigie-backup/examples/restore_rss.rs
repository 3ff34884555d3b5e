//! Peak memory of a restore: vigie's restorer against rustic_core's,
//! on the same repository, each run alone under `/usr/bin/time -v`
//! (its "Maximum resident set size"):
//!
//! ```text
//! cargo build -p vigie-backup --example restore_rss
//! /usr/bin/time -v target/debug/examples/restore_rss vigie  REPO PASSWORD_FILE TARGET
//! /usr/bin/time -v target/debug/examples/restore_rss rustic REPO PASSWORD_FILE TARGET
//! ```
//!
//! Both restore the latest snapshot into TARGET (which must not exist).
//! `drill` runs a restore drill with TARGET as the scratch parent.
//! A measurement, not a test: nothing here asserts a number.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rustic_core::{
    Credentials, LocalDestination, LsOptions, RepositoryBackends, RepositoryOptions,
    RestoreOptions, WriteBackend,
};
use vigie_backup::{Location, RestoreRequest, SnapshotFilter};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, repo, password_file, target] = &args[..] else {
        eprintln!("usage: restore_rss vigie|rustic|drill REPO PASSWORD_FILE TARGET");
        return ExitCode::from(2);
    };
    let password = match std::fs::read_to_string(password_file) {
        Ok(p) => p.trim_end_matches('\n').to_owned(),
        Err(e) => {
            eprintln!("error: {password_file}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match engine.as_str() {
        "vigie" => vigie(repo, &password, Path::new(target)),
        "rustic" => rustic(repo, &password, target),
        "drill" => drill(repo, &password, Path::new(target)),
        other => Err(format!("{other}: say vigie, rustic or drill")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn vigie(repo: &str, password: &str, target: &Path) -> Result<(), String> {
    let spec = vigie_backup::RepoSpec::new("rss", repo).map_err(|e| e.to_string())?;
    let repo = vigie_backup::open(&spec, password).map_err(|e| e.to_string())?;
    let summary = repo
        .restore(
            &RestoreRequest {
                filter: &SnapshotFilter::default(),
                snapshot: None,
                path: None,
                to: target,
                overwrite: false,
            },
            &(),
        )
        .map_err(|e| e.to_string())?;
    eprintln!("{summary:?}");
    Ok(())
}

fn drill(repo: &str, password: &str, scratch_parent: &Path) -> Result<(), String> {
    let spec = vigie_backup::RepoSpec::new("rss", repo).map_err(|e| e.to_string())?;
    let repo = vigie_backup::open(&spec, password).map_err(|e| e.to_string())?;
    let report = repo
        .drill(&SnapshotFilter::default(), None, scratch_parent)
        .map_err(|e| e.to_string())?;
    eprintln!("{report:?}");
    if report.passed() {
        Ok(())
    } else {
        Err("the drill failed".to_owned())
    }
}

fn rustic(repo: &str, password: &str, target: &str) -> Result<(), String> {
    let err = |e: Box<rustic_core::RusticError>| e.display_log();
    let backend: Arc<dyn WriteBackend> = Location::parse(repo)
        .and_then(|l| l.backend())
        .ok_or("not a local repository")?;
    let backends = RepositoryBackends::new(backend, None);
    let opts = RepositoryOptions::default().no_cache(true);
    let repo = rustic_core::Repository::new(&opts, &backends)
        .map_err(err)?
        .open(&Credentials::password(password))
        .map_err(err)?
        .to_indexed()
        .map_err(err)?;
    let snap = repo
        .get_snapshot_from_str("latest", |_| true)
        .map_err(err)?;
    let node = repo.node_from_snapshot_and_path(&snap, "").map_err(err)?;
    let dest = LocalDestination::new(target, true, !node.is_dir()).map_err(err)?;
    let restore = RestoreOptions::default();
    let ls_opts = LsOptions::default();
    let ls = || repo.ls(&node, &ls_opts);
    let plan = repo
        .prepare_restore(&restore, ls().map_err(err)?, &dest, false)
        .map_err(err)?;
    repo.restore(plan, &restore, ls().map_err(err)?, &dest)
        .map_err(err)?;
    eprintln!("restored into {}", PathBuf::from(target).display());
    Ok(())
}
