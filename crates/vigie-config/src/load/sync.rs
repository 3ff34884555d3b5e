//! Replication: `[sync.NAME]` jobs and their checks.

use vigie_core::Duration;

use crate::diag::did_you_mean_hint;
use crate::model::{Check, Probe, SyncJob, SyncProbe};

use super::Loader;

impl Loader {
    /// Each job's check: the declared ones must name a job; a job no check
    /// names gets `sync-NAME`.
    pub(super) fn sync_checks(&mut self, syncs: &[SyncJob], checks: &mut Vec<Check>) {
        let names: Vec<&str> = syncs.iter().map(|j| j.name.as_str()).collect();
        for c in checks.iter() {
            if let Probe::Sync(p) = &c.probe
                && !names.contains(&p.job.as_str())
            {
                let hint = did_you_mean_hint(&p.job, names.iter().copied())
                    .unwrap_or_else(|| "declare it under [[sync]]".to_owned());
                self.error(
                    0,
                    None,
                    &format!("check \"{}\".sync", c.name),
                    format!("unknown sync job `{}`", p.job),
                    Some(hint),
                );
            }
        }
        for j in syncs {
            let covered = checks
                .iter()
                .any(|c| matches!(&c.probe, Probe::Sync(p) if p.job == j.name));
            let name = format!("sync-{}", j.name);
            if covered || checks.iter().any(|c| c.name == name) {
                continue;
            }
            checks.push(Check {
                name,
                description: Some(format!("replication {} → {}", j.from.display(), j.to)),
                every: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                retry_every: None,
                fail_after: 3,
                recover_after: 1,
                severity: vigie_core::Severity::High,
                depends_on: Vec::new(),
                tags: vec!["sync".into()],
                flapping: None,
                actions: Vec::new(),
                probe: Probe::Sync(SyncProbe {
                    job: j.name.clone(),
                }),
            });
        }
    }

    pub(super) fn resolve_syncs(&mut self) -> Vec<SyncJob> {
        let mut out: Vec<SyncJob> = Vec::new();
        for (src, table, mut j) in std::mem::take(&mut self.raw.syncs) {
            let key = format!("sync \"{}\"", j.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(&j.name) {
                problems.push((
                    "a sync name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                ));
            }
            if out.iter().any(|o| o.name == j.name) {
                problems.push((format!("sync `{}` is declared twice", j.name), None));
            }
            j.from = self.base.join(&j.from);
            if !j.from.is_dir() {
                problems.push((
                    format!("`from` {} is not a directory", j.from.display()),
                    Some("name the local directory to replicate".into()),
                ));
            }
            let (host, path) = j.destination();
            if path.is_empty() {
                problems.push((
                    format!("`to` = {:?} names no directory", j.to),
                    Some(
                        "write to = \"host:/var/www/blog\" (an ssh destination) or a local path"
                            .into(),
                    ),
                ));
            }
            if host.is_none() && !path.starts_with('/') {
                problems.push((
                    format!(
                        "`to` = {:?} is neither host:/path nor an absolute local path",
                        j.to
                    ),
                    Some("write to = \"backup-host:/var/www/blog\"".into()),
                ));
            }
            if host.is_none() && std::path::Path::new(path) == j.from {
                problems.push(("`to` is `from` itself".into(), None));
            }
            if j.delay.std().is_zero() || j.delay.std() > std::time::Duration::from_mins(1) {
                problems.push((
                    "`delay` is between 1ms and 1m".into(),
                    Some("the default is 250ms".into()),
                ));
            }
            if j.verify_every.std() < std::time::Duration::from_secs(1) {
                problems.push((
                    "`verify_every` is at least 1s".into(),
                    Some("the default is 1h".into()),
                ));
            }
            if j.max_lag.std().is_zero() {
                problems.push((
                    "`max_lag` is more than 0s".into(),
                    Some("the default is 5m".into()),
                ));
            }
            if j.ssh.is_empty() {
                problems.push((
                    "`ssh` is empty".into(),
                    Some("ssh = [\"ssh\", \"-i\", \"/root/.ssh/vigie\"]".into()),
                ));
            }
            let ok = problems.is_empty();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if ok {
                out.push(j);
            }
        }
        out
    }
}
