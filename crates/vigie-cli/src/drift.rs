//! Drift as a check: each `[[converge]]` job runs its manifest at start
//! and then every `every` or at its `at`/`schedule` (whichever first),
//! on the blocking pool (audit or enforce, as `vigie converge` does),
//! and publishes the run's outcome on the board, where its check
//! `converge-NAME` reads it; the incident's severity is the highest of
//! the resources that differ. Each run's manifest hash and what it saw
//! are kept in the store, so a restart still tells a changed host from
//! a changed manifest. A job with `git` pulls first (`pull.rs`). The
//! local manifests are loaded with the configuration ([`problems`]): a
//! bad one never starts the daemon nor replaces the running
//! configuration.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use vigie_config::{Config, ConvergeJob, ConvergeMode};
use vigie_converge::{Item, LoadOptions, Mode, Options, Report, Status};
use vigie_core::{Board, Metric, Outcome, converge_metric};

/// At most this many resources are named in a check's message.
const NAMED: usize = 5;
/// At most this many characters of one resource's detail.
const DETAIL: usize = 160;

/// Each job whose manifest does not load: `converge "NAME".manifest`
/// and the manifest's own errors (file and place of each).
pub(crate) fn problems(config: &Config) -> Vec<String> {
    if config.converges.is_empty() {
        return Vec::new();
    }
    let opts = load_options();
    config
        .converges
        .iter()
        // A pulled manifest is read at each run (a bad one fails its check).
        .filter(|j| j.git.is_none())
        .filter_map(|j| {
            vigie_converge::load(&j.manifest, &opts).err().map(|e| {
                format!(
                    "error: converge \"{}\".manifest: {} does not load:\n{e}\n  hint: fix the manifest (`vigie converge {} --audit` shows the same errors)",
                    j.name,
                    j.manifest.display(),
                    j.manifest.display()
                )
            })
        })
        .collect()
}

fn load_options() -> LoadOptions {
    LoadOptions {
        facts: vigie_converge::Facts::gather(),
        host: None,
    }
}

/// The scheduled jobs of one configuration; dropping it stops them (a
/// run under way finishes on its thread).
pub(crate) struct Schedules(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Schedules {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Start every job of `config`: a first run now, then at its schedule.
/// Each run's memory (the manifest's hash, what it saw) is kept in the
/// store of `dir`.
pub(crate) fn start(config: &Config, dir: &Path, board: &Board) -> Schedules {
    Schedules(
        config
            .converges
            .iter()
            .map(|j| {
                let (j, board, dir) = (j.clone(), board.clone(), dir.to_owned());
                tokio::spawn(async move { scheduled(j, dir, board).await })
            })
            .collect(),
    )
}

async fn scheduled(job: ConvergeJob, dir: PathBuf, board: Board) {
    loop {
        let pulled = match &job.git {
            None => None,
            Some(g) => match crate::pull::pull(&job, g, &dir).await {
                Ok(p) => Some(p),
                Err(e) => {
                    pull_failed(&job, g, &dir, &board, &e);
                    None
                }
            },
        };
        let (j, b, d) = (job.clone(), board.clone(), dir.clone());
        let run = job.git.is_none() || pulled.is_some();
        let ran = tokio::task::spawn_blocking(move || {
            if run {
                one(&j, &b, &d, pulled.as_ref());
            }
        });
        if let Err(e) = ran.await {
            tracing::error!(job = %job.name, "converge run crashed: {e}");
        }
        let now = jiff::Timestamp::now();
        let wait = match job.next_run(now) {
            Ok(t) => now.duration_until(t).unsigned_abs(),
            Err(e) => {
                tracing::error!(job = %job.name, "converge schedule: {e}; running again in 1h");
                Duration::from_hours(1)
            }
        };
        tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
    }
}

/// A SHA-256 that bytes are copied into.
struct Digest(ring::digest::Context);

impl std::io::Write for Digest {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a run applies, as one SHA-256 (hex): the manifest's text and
/// every file it reads (`source`, `template`, `deb`, a role's
/// `main.toml` and `defaults.toml`), each with its name, so that an
/// edited template or role is an intentional change like an edited
/// manifest. A file that cannot be read counts as absent (the run says
/// why).
fn plan_sha256(manifest: &Path, text: &[u8], files: &[String]) -> String {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut framed = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(bytes);
    };
    framed(text);
    for f in files {
        framed(f.as_bytes());
        let Ok(mut file) = std::fs::File::open(dir.join(f)) else {
            framed(b"absent");
            continue;
        };
        // Streamed (a package may be large), then its length; a read
        // that fails counts as its own content.
        let mut inner = Digest(ring::digest::Context::new(&ring::digest::SHA256));
        match std::io::copy(&mut file, &mut inner) {
            Ok(len) => {
                framed(inner.0.finish().as_ref());
                framed(&len.to_le_bytes());
            }
            Err(_) => framed(b"unreadable"),
        }
    }
    vigie_core::hex(ctx.finish().as_ref())
}

/// The store of `dir`, or why not (logged: the run goes on without
/// its memory).
fn store(job: &ConvergeJob, dir: &Path) -> Option<vigie_store::Store> {
    vigie_store::Store::open(dir)
        .map_err(|e| tracing::error!(job = %job.name, "converge: cannot open the store: {e}"))
        .ok()
}

/// One run, published on the board, logged, and remembered in the
/// store (the manifest's hash and what differed), so that the next run
/// — after a restart too — tells a changed host from a changed manifest.
fn one(job: &ConvergeJob, board: &Board, dir: &Path, pulled: Option<&crate::pull::Pulled>) {
    let path = pulled.map_or(job.manifest.as_path(), |p| p.manifest.as_path());
    let commit = pulled.map(|p| p.commit.clone());
    let text = std::fs::read(path).unwrap_or_default();
    let mut store = store(job, dir);
    let before = store
        .as_ref()
        .and_then(|s| match s.converge_last(&job.name) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(job = %job.name, "converge: cannot read its last run: {e}");
                None
            }
        });
    let source = match &commit {
        Some(c) => format!("{} at commit {}", job.source(), crate::pull::short(c)),
        None => job.source(),
    };
    let mut outcome = match vigie_converge::load(path, &load_options()) {
        Err(e) => {
            tracing::error!(job = %job.name, "converge manifest does not load: {e}");
            Outcome::fail(format!(
                "the manifest {source} does not load: {}",
                bounded(&e.to_string().replace('\n', "; "))
            ))
        }
        Ok(plan) => {
            let hash = plan_sha256(path, &text, &plan.files);
            let cause = match &before {
                None => Cause::First,
                Some(b) if b.manifest_sha256 != hash => Cause::Manifest,
                Some(_) => Cause::Host,
            };
            let opts = Options {
                mode: match job.mode {
                    ConvergeMode::Audit => Mode::Audit,
                    ConvergeMode::Enforce => Mode::Enforce,
                },
                tags: job.tags.clone(),
                skip_tags: job.skip_tags.clone(),
                fetch: Some(std::sync::Arc::new(crate::fetch::HttpFetch)),
            };
            let report = vigie_converge::run(&plan, &opts);
            let last = vigie_store::ConvergeLast {
                at: vigie_core::Timestamp::now(),
                manifest_sha256: hash,
                commit,
                seen: report
                    .resources
                    .iter()
                    .chain(&report.handlers)
                    .filter(|i| matches!(i.status, Status::NonCompliant | Status::Error))
                    .map(|i| i.id.clone())
                    .collect(),
            };
            if let Some(s) = store.as_mut()
                && let Err(e) = s.converge_record(&job.name, &last)
            {
                tracing::error!(job = %job.name, "converge: cannot record the run: {e}");
            }
            let mut o = judge(job, &source, &report, cause);
            remember_repair(job, &mut o, &report);
            if o.ok {
                tracing::info!(job = %job.name, "converge: {}", o.message);
            } else {
                tracing::warn!(job = %job.name, "converge: {}", o.message);
            }
            o.metrics = numbers(&report);
            o
        }
    };
    outcome.metrics.push(Metric {
        name: converge_metric::LAST_RUN.into(),
        value: vigie_core::Timestamp::now().0 as f64 / 1000.0,
    });
    board.publish(&vigie_core::converge_report(&job.name), outcome);
}

/// A pull that failed: the check fails with the reason; the checkout
/// stays at the last good commit, which the message names.
fn pull_failed(
    job: &ConvergeJob,
    g: &vigie_config::ConvergeGit,
    dir: &Path,
    board: &Board,
    e: &str,
) {
    tracing::warn!(job = %job.name, url = %g.shown_url(), "converge: cannot pull: {e}");
    let last = store(job, dir)
        .and_then(|s| s.converge_last(&job.name).ok().flatten())
        .and_then(|l| l.commit);
    let kept = match last {
        Some(c) => format!(
            "; the checkout stays at commit {}, the last good one",
            crate::pull::short(&c)
        ),
        None => "; nothing was applied yet".into(),
    };
    let mut o = Outcome::fail(format!(
        "cannot pull {} ({}): {}{kept}",
        g.shown_url(),
        g.reference,
        bounded(e)
    ));
    o.severity = Some(job.severity);
    o.metrics.push(Metric {
        name: converge_metric::LAST_RUN.into(),
        value: vigie_core::Timestamp::now().0 as f64 / 1000.0,
    });
    board.publish(&vigie_core::converge_report(&job.name), o);
}

/// The last repair of each job, with its time: an enforce job's check
/// keeps saying what it last changed while the host stays compliant.
static REPAIRED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

fn remember_repair(job: &ConvergeJob, o: &mut Outcome, r: &Report) {
    let Ok(mut m) = REPAIRED.lock() else {
        return;
    };
    let m = m.get_or_insert_default();
    if r.summary.repaired > 0 {
        m.insert(
            job.name.clone(),
            format!("{} at {}", o.message, jiff::Timestamp::now()),
        );
    } else if o.ok
        && let Some(last) = m.get(&job.name)
    {
        let _ = write!(o.message, "; last {last}");
    }
}

/// Why the host differs, as far as the manifest's hash tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// No run before this one (in this state directory).
    First,
    /// The manifest changed since the last run: an intentional change.
    Manifest,
    /// Same manifest as the last run: the host changed (drift).
    Host,
}

impl Cause {
    fn said(self) -> &'static str {
        match self {
            Cause::First => "",
            Cause::Manifest => " (the manifest changed since the last run)",
            Cause::Host => " (the host changed: the manifest is as at the last run)",
        }
    }
}

/// The check's word on a run: failing when something differs (audit),
/// could not be repaired (enforce) or failed.
fn judge(job: &ConvergeJob, manifest: &str, r: &Report, cause: Cause) -> Outcome {
    let m = &r.summary;
    let failed: Vec<&Item> = r
        .resources
        .iter()
        .chain(&r.handlers)
        .filter(|i| matches!(i.status, Status::NonCompliant | Status::Error))
        .collect();
    if !failed.is_empty() {
        let what = match r.mode {
            Mode::Audit => "differ from",
            Mode::Enforce => "could not be brought to",
        };
        let severity = failed
            .iter()
            .map(|i| i.severity.unwrap_or(job.severity))
            .max()
            .unwrap_or(job.severity);
        let mut o = Outcome::fail(format!(
            "{} of {} resources {what} {manifest}{}: {}",
            failed.len(),
            r.resources.len(),
            cause.said(),
            named(&failed)
        ));
        o.severity = Some(severity);
        return o;
    }
    let repaired: Vec<&Item> = r
        .resources
        .iter()
        .chain(&r.handlers)
        .filter(|i| i.status == Status::Repaired)
        .collect();
    if !repaired.is_empty() {
        return Outcome::ok(format!(
            "repaired {} of {} resources to {manifest}{}: {}",
            repaired.len(),
            r.resources.len(),
            cause.said(),
            named(&repaired)
        ));
    }
    Outcome::ok(format!(
        "{} resources as {manifest} declares ({} skipped)",
        m.compliant, m.skipped
    ))
}

/// The first [`NAMED`] items with their detail, and how many more.
fn named(items: &[&Item]) -> String {
    let mut s = String::new();
    for (n, i) in items.iter().take(NAMED).enumerate() {
        if n > 0 {
            s.push_str("; ");
        }
        let detail = i.detail();
        if detail.is_empty() {
            s.push_str(&i.id);
        } else {
            let _ = write!(s, "{} ({})", i.id, bounded(&detail));
        }
    }
    if items.len() > NAMED {
        let _ = write!(s, "; and {} more", items.len() - NAMED);
    }
    s
}

fn bounded(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= DETAIL {
        return s;
    }
    let mut t: String = s.chars().take(DETAIL).collect();
    t.push('…');
    t
}

/// The run's resources by outcome.
fn numbers(r: &Report) -> Vec<Metric> {
    let m = &r.summary;
    let counts = [
        m.compliant,
        m.non_compliant,
        m.repaired,
        m.skipped,
        m.errors,
    ];
    converge_metric::OUTCOMES
        .iter()
        .zip(counts)
        .map(|(o, n)| Metric {
            name: format!("{}{o}", converge_metric::RESOURCES),
            value: n as f64,
        })
        .collect()
}

/// Whether `path` is one of the configuration's manifests (for tests).
#[cfg(test)]
fn is_manifest(config: &Config, path: &std::path::Path) -> bool {
    config.converges.iter().any(|j| j.manifest == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_plan_hash_covers_each_file_its_name_and_its_absence() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.toml");
        let files = vec!["motd.j2".to_owned()];
        let h = |text: &[u8], files: &[String]| plan_sha256(&m, text, files);
        let absent = h(b"x", &files);
        std::fs::write(dir.path().join("motd.j2"), "hello").unwrap();
        let hello = h(b"x", &files);
        assert_ne!(absent, hello, "a file that appears changes the hash");
        std::fs::write(dir.path().join("motd.j2"), "hellp").unwrap();
        assert_ne!(hello, h(b"x", &files), "a byte of a file changes it");
        assert_eq!(h(b"x", &files), h(b"x", &files), "and nothing else does");
        assert_ne!(
            h(b"x", &files),
            h(b"y", &files),
            "the manifest's text counts"
        );
        std::fs::write(dir.path().join("other.j2"), "hellp").unwrap();
        assert_ne!(
            h(b"x", &files),
            h(b"x", &["other.j2".to_owned()]),
            "the file's name counts"
        );
        assert_eq!(h(b"x", &[]).len(), 64);
    }

    fn job(dir: &Path, mode: ConvergeMode) -> ConvergeJob {
        ConvergeJob {
            name: "base".into(),
            manifest: dir.join("m.toml"),
            mode,
            git: None,
            every: Some(vigie_core::Duration::from_secs(1)),
            at: None,
            schedule: None,
            timezone: None,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            severity: vigie_core::Severity::Average,
        }
    }

    #[test]
    fn a_run_names_what_differs_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("motd");
        std::fs::write(
            dir.path().join("m.toml"),
            format!(
                "[settings]\nkeep_old = \"none\"\n[[file]]\npath = \"{}\"\ncontent = \"hello\\n\"\n",
                f.display()
            ),
        )
        .unwrap();
        std::fs::write(&f, "hello\n").unwrap();
        let board = Board::new();
        let audit = job(dir.path(), ConvergeMode::Audit);
        let read = || board.report("converge.base").unwrap().0;
        one(&audit, &board, dir.path(), None);
        let o = read();
        assert!(o.ok, "{o:?}");
        std::fs::write(&f, "changed\n").unwrap();
        one(&audit, &board, dir.path(), None);
        let o = read();
        assert!(!o.ok, "{o:?}");
        assert!(o.message.contains(&f.display().to_string()), "{o:?}");
        assert!(o.message.contains("the host changed"), "{o:?}");
        let nc = o
            .metrics
            .iter()
            .find(|m| m.name == "resources.non_compliant")
            .unwrap();
        assert!((nc.value - 1.0).abs() < f64::EPSILON, "{nc:?}");
        // The manifest now says what the host has: an intentional change.
        std::fs::write(
            dir.path().join("m.toml"),
            format!(
                "[settings]\nkeep_old = \"none\"\n[[file]]\npath = \"{}\"\ncontent = \"other\\n\"\n",
                f.display()
            ),
        )
        .unwrap();
        one(&audit, &board, dir.path(), None);
        let o = read();
        assert!(!o.ok && o.message.contains("the manifest changed"), "{o:?}");
        let enforce = job(dir.path(), ConvergeMode::Enforce);
        one(&enforce, &board, dir.path(), None);
        let o = read();
        assert!(o.ok && o.message.starts_with("repaired 1 of 1"), "{o:?}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "other\n");
        assert!(is_manifest(
            &vigie_config::load_str(
                "[[converge]]\nname = \"base\"\nmanifest = \"m.toml\"\n",
                &dir.path().join("vigie.toml"),
                &|_| None
            )
            .unwrap()
            .config,
            &dir.path().join("m.toml")
        ));
    }

    #[test]
    fn the_incident_takes_the_highest_severity_among_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(
            dir.path().join("m.toml"),
            format!(
                "[settings]\nkeep_old = \"none\"\n[[file]]\npath = \"{}\"\ncontent = \"a\\n\"\n[[file]]\npath = \"{}\"\ncontent = \"b\\n\"\nseverity = \"disaster\"\n",
                a.display(),
                b.display()
            ),
        )
        .unwrap();
        std::fs::write(&a, "a\n").unwrap();
        std::fs::write(&b, "b\n").unwrap();
        let board = Board::new();
        let mut audit = job(dir.path(), ConvergeMode::Audit);
        audit.severity = vigie_core::Severity::Warning;
        let read = || board.report("converge.base").unwrap().0;
        one(&audit, &board, dir.path(), None);
        assert!(read().ok);
        // Only the resource without its own: the job's severity.
        std::fs::write(&a, "changed\n").unwrap();
        one(&audit, &board, dir.path(), None);
        let o = read();
        assert_eq!(o.severity, Some(vigie_core::Severity::Warning), "{o:?}");
        // The disaster one too: the highest.
        std::fs::write(&b, "changed\n").unwrap();
        one(&audit, &board, dir.path(), None);
        let o = read();
        assert_eq!(o.severity, Some(vigie_core::Severity::Disaster), "{o:?}");
        // Only it.
        std::fs::write(&a, "a\n").unwrap();
        one(&audit, &board, dir.path(), None);
        assert_eq!(read().severity, Some(vigie_core::Severity::Disaster));
    }
}
