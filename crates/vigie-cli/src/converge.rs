//! `vigie converge MANIFEST`: load the manifest (exit 2 on any error,
//! all of them printed), run it in audit or enforce mode, print a line
//! per resource and a summary (or `--json`).

use std::fmt::Write as _;
use std::path::Path;

use vigie_converge::{LoadOptions, Mode, Options, Report, Status};

use crate::{Failure, Result, exit, out, out_json};

pub(crate) struct Args<'a> {
    pub manifest: &'a Path,
    pub audit: bool,
    pub diff: bool,
    pub tags: &'a [String],
    pub skip_tags: &'a [String],
    pub host: Option<&'a str>,
    pub json: bool,
}

pub(crate) fn run(a: &Args<'_>) -> Result<u8> {
    let load = LoadOptions {
        facts: vigie_converge::Facts::gather(),
        host: a.host.map(str::to_owned),
    };
    let plan = vigie_converge::load(a.manifest, &load).map_err(|e| {
        eprintln!("{e}");
        let n = e.errors.len();
        Failure::config(format!(
            "{}: {n} error{} in the manifest; nothing was checked or changed",
            a.manifest.display(),
            if n == 1 { "" } else { "s" }
        ))
    })?;
    let opts = Options {
        mode: if a.audit { Mode::Audit } else { Mode::Enforce },
        tags: a.tags.to_vec(),
        skip_tags: a.skip_tags.to_vec(),
        fetch: Some(std::sync::Arc::new(crate::fetch::HttpFetch)),
    };
    let report = vigie_converge::run(&plan, &opts);
    if a.json {
        let v = serde_json::to_value(&report)
            .map_err(|e| Failure::runtime(format!("cannot render the report: {e}")))?;
        out_json(&v)?;
    } else {
        out(format_args!("{}", render(&report, a.diff)))?;
    }
    Ok(if report.failed() {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

/// A line per resource (`STATUS  ID  DETAIL`), its diff under it with
/// `--diff`, then the summary.
fn render(r: &Report, diffs: bool) -> String {
    let items: Vec<_> = r.resources.iter().chain(&r.handlers).collect();
    let width = items
        .iter()
        .map(|i| i.id.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for i in &items {
        let detail = i.detail();
        let _ = writeln!(s, "{:<13}  {:<width$}  {detail}", i.status.as_str(), i.id);
        if diffs
            && let Some(d) = &i.diff
            && matches!(i.status, Status::NonCompliant | Status::Repaired)
        {
            for l in d.lines() {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
    let m = &r.summary;
    let mode = match r.mode {
        Mode::Audit => "audit",
        Mode::Enforce => "enforce",
    };
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let checked = match r.handlers.len() {
        0 => plural(r.resources.len(), "resource"),
        h => format!(
            "{} and {}",
            plural(r.resources.len(), "resource"),
            plural(h, "handler")
        ),
    };
    let _ = writeln!(
        s,
        "{mode}: {checked}: {} compliant, {} repaired, {} non-compliant, {} skipped, {} error{} ({} ms)",
        m.compliant,
        m.repaired,
        m.non_compliant,
        m.skipped,
        m.errors,
        if m.errors == 1 { "" } else { "s" },
        r.duration_ms
    );
    s
}
