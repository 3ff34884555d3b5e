//! Drift as a check: `[[converge]]` jobs and their checks. The manifest
//! itself is read by `vigie-converge`, which the CLI runs over each job
//! once the configuration is loaded (config sits below converge).

use toml::Spanned;
use toml::de::DeValue;
use vigie_core::Duration;

use crate::diag::unknown;
use crate::model::{Check, ConvergeJob, ConvergeProbe, Probe};

use super::Loader;

impl Loader {
    /// `[[converge]]` tables, as they are read.
    pub(super) fn parse_converges(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for item in self.array_of_tables(src, value, "converge") {
            let table = item.span();
            if let Some(j) = self.de::<ConvergeJob>(src, item, "converge") {
                self.raw.converges.push((src, table, j));
            }
        }
    }

    pub(super) fn resolve_converges(&mut self) -> Vec<ConvergeJob> {
        let mut out: Vec<ConvergeJob> = Vec::new();
        for (src, table, mut j) in std::mem::take(&mut self.raw.converges) {
            let key = format!("converge \"{}\"", j.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(&j.name) {
                problems.push((
                    "a converge name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                ));
            }
            if out.iter().any(|o| o.name == j.name) {
                problems.push((format!("converge `{}` is declared twice", j.name), None));
            }
            match (&j.git, j.manifest.as_os_str().is_empty()) {
                (None, true) => problems.push((
                    "`manifest` is missing or empty".into(),
                    Some("name the manifest, e.g. manifest = \"host.toml\", or pull it with git = { url = \"…\" }".into()),
                )),
                (Some(_), false) => problems.push((
                    "set `manifest` or `git`, not both".into(),
                    Some("a pulled manifest's path in the repository is git.manifest".into()),
                )),
                (Some(g), true) => problems.extend(check_git(g)),
                (None, false) => j.manifest = self.base.join(&j.manifest),
            }
            if j.every
                .is_some_and(|e| e.std() < std::time::Duration::from_secs(1))
            {
                problems.push((
                    "`every` is at least 1s".into(),
                    Some("the default is 1h".into()),
                ));
            }
            if j.at.is_some() && j.schedule.is_some() {
                problems.push((
                    "set `at` or `schedule`, not both".into(),
                    Some("at = \"02:30\" (daily), or schedule = \"0 3 * * 0\" (cron)".into()),
                ));
            }
            if let Some(t) = &j.timezone {
                if crate::schedule::time_zone(Some(t)).is_err() {
                    problems.push((
                        format!("unknown time zone `{t}` (key `timezone`)"),
                        Some(
                            "use an IANA name such as \"Europe/Paris\"; is tzdata installed?"
                                .into(),
                        ),
                    ));
                } else if j.at.is_none() && j.schedule.is_none() {
                    problems.push((
                        "`timezone` without `at` or `schedule`: it would change nothing".into(),
                        Some(
                            "add at = \"02:30\" or schedule = \"0 3 * * 0\", or drop timezone"
                                .into(),
                        ),
                    ));
                }
            }
            if j.every.is_none() && j.at.is_none() && j.schedule.is_none() {
                j.every = Some(crate::model::CONVERGE_EVERY);
            }
            for t in j.tags.iter().chain(&j.skip_tags) {
                if t.trim().is_empty() {
                    problems.push(("a tag is empty".into(), None));
                }
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

    /// Each job's check: the declared ones must name a job; a job no
    /// check names gets `converge-NAME`.
    pub(super) fn converge_checks(&mut self, jobs: &[ConvergeJob], checks: &mut Vec<Check>) {
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        for c in checks.iter() {
            if let Probe::Converge(p) = &c.probe
                && !names.contains(&p.job.as_str())
            {
                let (message, hint) = unknown(
                    "converge job",
                    &p.job,
                    names.iter().copied(),
                    "declare it under [[converge]]",
                );
                let at = format!("check \"{}\".converge", c.name);
                self.error(0, None, &at, message, hint);
            }
        }
        for j in jobs {
            let covered = checks
                .iter()
                .any(|c| matches!(&c.probe, Probe::Converge(p) if p.job == j.name));
            let name = format!("converge-{}", j.name);
            if covered || checks.iter().any(|c| c.name == name) {
                continue;
            }
            let mode = match j.mode {
                crate::model::ConvergeMode::Audit => "audit",
                crate::model::ConvergeMode::Enforce => "enforce",
            };
            checks.push(Check {
                name,
                description: Some(format!(
                    "the host is as {} declares ({mode}, {})",
                    j.source(),
                    j.when()
                )),
                // Reading the board is cheap: soon after each run.
                every: Duration::from_secs(j.every.map_or(10, |e| e.std().as_secs()).clamp(1, 10)),
                timeout: Duration::from_secs(5),
                retry_every: None,
                fail_after: 1,
                recover_after: 1,
                severity: j.severity,
                depends_on: Vec::new(),
                tags: vec!["converge".into()],
                flapping: None,
                actions: Vec::new(),
                probe: Probe::Converge(ConvergeProbe {
                    job: j.name.clone(),
                }),
            });
        }
    }
}

/// What is wrong with a job's `git` table, each with its hint.
fn check_git(g: &crate::model::ConvergeGit) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    if let Err(e) = git_url(&g.url) {
        out.push((format!("git.url: {e}"), Some("https://host/repo.git, ssh://git@host/repo, git@host:repo, file:///srv/site.git or /srv/site.git".into())));
    }
    let r = &g.reference;
    let ref_ok = !r.is_empty()
        && !r.starts_with(['-', '/', '.'])
        && !r.ends_with(['/', '.'])
        && !r.contains("..")
        && !r.to_ascii_lowercase().ends_with(".lock")
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if !ref_ok {
        out.push((
            format!("git.ref: `{r}` is not a branch or tag name"),
            Some("e.g. ref = \"main\" or ref = \"v1.2\"".into()),
        ));
    }
    let m = &g.manifest;
    if m.as_os_str().is_empty()
        || m.is_absolute()
        || m.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        out.push((
            format!(
                "git.manifest: `{}` is not a path inside the repository",
                m.display()
            ),
            Some("a relative path without `..`, e.g. manifest = \"hosts/web.toml\"".into()),
        ));
    }
    out
}

/// A repository URL git may fetch from: an authenticated transport
/// (https, ssh, a local path: the manifest pulled runs as root, so
/// plain `http://` and `git://`, which anyone on the path could change,
/// are refused), never `ext::` (which runs a command) nor an option, and
/// no password in it (git's command line is readable by every local
/// user, and `show-config` prints the URL).
pub fn git_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.starts_with('-') {
        return Err(format!("`{url}` is not a repository"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a repository's URL has no spaces nor control characters".into());
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if ["http", "git"].contains(&scheme) {
            return Err(format!(
                "`{scheme}://` is not authenticated: anyone on the path could change the manifest, \
                 which runs as root; fetch over https or ssh"
            ));
        }
        if !["https", "ssh", "file"].contains(&scheme) {
            return Err(format!(
                "the transport `{scheme}://` is not one vigie fetches with (https, ssh, file)"
            ));
        }
        if rest.is_empty() {
            return Err(format!("`{url}` names no repository"));
        }
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && (scheme == "https" || userinfo.contains(':'))
        {
            return Err(
                "the URL holds credentials, which every local user could read on git's command \
                 line and `show-config` would print; use ssh with a deploy key, or a credential \
                 helper in root's git configuration"
                    .into(),
            );
        }
        return Ok(());
    }
    if url.contains("::") {
        return Err(format!(
            "`{url}`: git's remote helpers (`ext::`, …) are refused"
        ));
    }
    if url.starts_with('/') {
        return Ok(());
    }
    // scp-like: [user@]host:path
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') => Ok(()),
        _ => Err(format!(
            "`{url}` is neither a URL, an absolute path nor user@host:path"
        )),
    }
}
