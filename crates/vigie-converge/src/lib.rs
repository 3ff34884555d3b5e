//! vigie's converge: a host's declared state (files, directories, lines
//! and blocks in files, guarded commands, kernel parameters, users and
//! groups with their SSH keys, cron entries, Debian packages, systemd
//! services) checked in **audit** mode or applied in **enforce** mode.
//!
//! - [`manifest`] reads a TOML manifest into a [`Plan`]: raw serde types
//!   with `deny_unknown_fields`, strings rendered by MiniJinja (strict,
//!   fuel-limited) over variables and [`facts`], loops (`for_each`),
//!   resources ordered by `requires`; every error at once.
//! - Every resource goes through one path, [`res::check_apply`]: read
//!   the host (`drift`), and only with a [`write::Writer`] repair it and
//!   read again. Only enforce mode makes a writer, and the crate's
//!   `clippy.toml` refuses writing calls outside `write.rs`: audit mode
//!   cannot write.
//! - [`run`] applies a plan: tags select resources, a resource whose
//!   requirement failed is skipped, notified handlers run once at the
//!   end; the [`Report`] says what each resource was.
//!
//! - [`bundle`] carries a manifest and the files it reads to another
//!   host (`vigie converge push`), and refuses on the receiving side
//!   any path that could land outside its directory.
//!
//! It depends on `vigie-core` only: the CLI drives it, and the engine
//! will drive it as a check.

pub mod bundle;
pub mod diff;
pub mod facts;
pub mod manifest;
pub mod res;
pub mod sys;
pub mod template;
pub mod write;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

pub use facts::Facts;
pub use manifest::{LoadOptions, ManifestError, ManifestErrors, Plan, Resource, load, load_str};
pub use res::Status;
pub use res::download::Fetch;
pub use write::Mode;

/// How a plan is run.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Only resources with one of these tags (all when empty).
    pub tags: Vec<String>,
    /// Never resources with one of these tags.
    pub skip_tags: Vec<String>,
    /// What fetches `[[download]]`s' URLs (without it, a download that
    /// must be fetched is an error).
    pub fetch: Option<std::sync::Arc<dyn res::download::Fetch>>,
}

/// One resource's (or handler's) result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Item {
    pub id: String,
    pub status: Status,
    /// What differed (non-compliant, repaired), or why it failed.
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The resource's own severity, if it declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<vigie_core::Severity>,
}

impl Item {
    /// The detail a report line shows.
    pub fn detail(&self) -> String {
        match (&self.message, self.changes.is_empty()) {
            (Some(m), _) => m.clone(),
            (None, false) => self.changes.join("; "),
            (None, true) => String::new(),
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub total: usize,
    pub compliant: usize,
    pub non_compliant: usize,
    pub repaired: usize,
    pub skipped: usize,
    pub errors: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub resources: Vec<Item>,
    /// Handlers and service restarts notified by a repair (run), or in
    /// audit mode by a non-compliance (not run).
    pub handlers: Vec<Item>,
    pub summary: Summary,
    pub duration_ms: u64,
}

impl Report {
    /// Drift found in audit mode, or anything that failed.
    pub fn failed(&self) -> bool {
        self.summary.errors > 0 || self.summary.non_compliant > 0
    }
}

fn selected(r: &Resource, opts: &Options) -> bool {
    let has = |list: &[String]| r.tags.iter().any(|t| list.contains(t));
    (opts.tags.is_empty() || has(&opts.tags)) && !has(&opts.skip_tags)
}

/// Run a plan in order: each selected resource through `check_apply`,
/// then each notified handler once.
pub fn run(plan: &Plan, opts: &Options) -> Report {
    run_streaming(plan, opts, &mut |_| {})
}

/// An item of a run as soon as it is known: a resource's, or a
/// handler's (which run at the end).
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    Resource(&'a Item),
    Handler(&'a Item),
}

/// [`run`], telling `on` each item as it is done (what `vigie converge
/// push` streams back from a host).
pub fn run_streaming(plan: &Plan, opts: &Options, on: &mut dyn FnMut(Progress<'_>)) -> Report {
    let start = Instant::now();
    let writer = write::Writer::for_mode(opts.mode).map(|w| w.with_fetch(opts.fetch.clone()));
    let mut failed: HashSet<&str> = HashSet::new();
    let mut notified: Vec<(String, String)> = Vec::new();
    let mut items = Vec::new();
    for r in plan.resources.iter().filter(|r| selected(r, opts)) {
        if let Some(dep) = r.requires.iter().find(|d| failed.contains(d.as_str())) {
            failed.insert(&r.id);
            items.push(Item {
                id: r.id.clone(),
                status: Status::Skipped,
                changes: Vec::new(),
                message: Some(format!("requires {dep}, which failed")),
                diff: None,
                severity: r.severity,
            });
            on(Progress::Resource(&items[items.len() - 1]));
            continue;
        }
        let checked = r.check_apply(writer.as_ref());
        tracing::debug!(resource = %r.id, status = checked.status.as_str(), "converge");
        if matches!(checked.status, Status::Error) {
            failed.insert(&r.id);
        }
        if matches!(checked.status, Status::Repaired | Status::NonCompliant) {
            for n in &r.notify {
                if !notified.iter().any(|(id, _)| id == n) {
                    notified.push((n.clone(), r.id.clone()));
                }
            }
        }
        items.push(Item {
            id: r.id.clone(),
            status: checked.status,
            changes: checked.drift.changes,
            message: checked.message,
            diff: checked.drift.diff,
            severity: r.severity,
        });
        on(Progress::Resource(&items[items.len() - 1]));
    }
    let handlers = run_handlers(plan, &notified, writer.as_ref());
    for h in &handlers {
        on(Progress::Handler(h));
    }
    let mut summary = Summary::default();
    for i in items.iter().chain(&handlers) {
        summary.total += 1;
        match i.status {
            Status::Compliant => summary.compliant += 1,
            Status::NonCompliant => summary.non_compliant += 1,
            Status::Repaired => summary.repaired += 1,
            Status::Skipped => summary.skipped += 1,
            Status::Error => summary.errors += 1,
        }
    }
    Report {
        mode: opts.mode,
        resources: items,
        handlers,
        summary,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Handlers in declaration order, then service restarts in the order
/// they were first notified; each once.
fn run_handlers(
    plan: &Plan,
    notified: &[(String, String)],
    w: Option<&write::Writer>,
) -> Vec<Item> {
    let by: HashMap<&str, &str> = notified
        .iter()
        .map(|(n, by)| (n.as_str(), by.as_str()))
        .collect();
    let mut todo: Vec<manifest::Handler> = plan
        .handlers
        .iter()
        .filter(|h| by.contains_key(h.id.as_str()))
        .cloned()
        .collect();
    for (n, _) in notified {
        if let Some(unit) = n.strip_prefix("service:") {
            todo.push(manifest::Handler {
                id: n.clone(),
                cmd: res::service::ServiceSpec::restart(unit),
            });
        }
    }
    todo.into_iter()
        .map(|h| {
            let cause = by.get(h.id.as_str()).copied().unwrap_or_default();
            let (status, changes, message) = match (w, manifest::run_handler(&h, w)) {
                (None, _) => (
                    Status::NonCompliant,
                    vec![format!(
                        "would run `{}` (notified by {cause})",
                        h.cmd.display()
                    )],
                    None,
                ),
                (Some(_), Ok(())) => (
                    Status::Repaired,
                    vec![format!("ran `{}` (notified by {cause})", h.cmd.display())],
                    None,
                ),
                (Some(_), Err(e)) => (Status::Error, Vec::new(), Some(diff::redact(&e))),
            };
            Item {
                id: h.id,
                status,
                changes,
                message,
                diff: None,
                severity: None,
            }
        })
        .collect()
}
