//! Backups: `[[backup]]` jobs and their checks.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use vigie_core::{Cron, Duration};

use crate::diag::unknown;
use crate::model::{BackupJob, BackupProbe, Check, DailyAt, Probe};
use crate::schedule;
use crate::secret::Secret;

use super::{EnvLookup, Loader};

/// `[[backup]]` as written, each value with its place for errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    name: Spanned<String>,
    repository: Spanned<String>,
    password: Spanned<Secret>,
    paths: Spanned<Vec<PathBuf>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    one_file_system: bool,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    at: Option<Spanned<String>>,
    schedule: Option<Spanned<Cron>>,
    timezone: Option<Spanned<String>>,
    jitter: Option<Spanned<Duration>>,
    before: Option<Spanned<Vec<String>>>,
    after: Option<Spanned<Vec<String>>>,
    on_failure: Option<Spanned<Vec<String>>>,
    hook_timeout: Option<Spanned<Duration>>,
    max_age: Option<Spanned<Duration>>,
}

/// One problem: where, the key, the message, the hint.
type Problem = (Range<usize>, String, String, Option<String>);

impl Loader {
    pub(super) fn resolve_backups(&mut self, env: EnvLookup<'_>) -> Vec<BackupJob> {
        let mut out: Vec<BackupJob> = Vec::new();
        for (src, raw) in std::mem::take(&mut self.raw.backups) {
            let name = raw.name.get_ref().clone();
            let key = format!("backup \"{name}\"");
            let mut problems: Vec<Problem> = Vec::new();
            if !vigie_core::is_valid_name(&name) {
                problems.push((
                    raw.name.span(),
                    key.clone(),
                    "a backup name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                ));
            }
            if out.iter().any(|o| o.name == name) {
                problems.push((
                    raw.name.span(),
                    key.clone(),
                    format!("backup `{name}` is declared twice"),
                    None,
                ));
            }
            let job = self.backup_job(raw, &key, &mut problems);
            let ok = problems.is_empty();
            for (span, at, message, hint) in problems {
                self.error(src, Some(span), &at, message, hint);
            }
            let Some((mut job, (span, secret))) = job.filter(|_| ok) else {
                continue;
            };
            match self.resolve_secret(src, span, &format!("{key}.password"), secret, env) {
                Some(s) => job.password = s,
                None => continue,
            }
            out.push(job);
        }
        out
    }

    /// The job `raw` declares (its password still to read), and every
    /// problem of its values.
    fn backup_job(
        &self,
        raw: RawBackup,
        key: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<(BackupJob, (Range<usize>, Secret))> {
        let paths: Vec<PathBuf> = raw
            .paths
            .get_ref()
            .iter()
            .map(|p| self.base.join(p))
            .collect();
        values(&raw, key, problems);
        let (at, period) = timing(&raw, key, problems);
        let period = period?;
        let hook_timeout = raw
            .hook_timeout
            .as_ref()
            .map_or(Duration::from_secs(3600), |t| *t.get_ref());
        let password = (raw.password.span(), raw.password.get_ref().clone());
        let job = BackupJob {
            name: raw.name.into_inner(),
            repository: raw.repository.into_inner(),
            password: raw.password.into_inner(),
            paths,
            exclude: raw.exclude.into_iter().map(Spanned::into_inner).collect(),
            one_file_system: raw.one_file_system,
            tags: raw.tags.into_iter().map(Spanned::into_inner).collect(),
            at,
            schedule: raw.schedule.map(Spanned::into_inner),
            timezone: raw.timezone.map(Spanned::into_inner),
            jitter: raw
                .jitter
                .map_or_else(|| schedule::default_jitter(period), Spanned::into_inner),
            before: raw.before.map(Spanned::into_inner),
            after: raw.after.map(Spanned::into_inner),
            on_failure: raw.on_failure.map(Spanned::into_inner),
            hook_timeout,
            max_age: raw.max_age.map_or_else(
                || Duration::from_millis(period.std().as_millis() as u64 * 3 / 2),
                Spanned::into_inner,
            ),
        };
        Some((job, password))
    }

    /// Each job's checks: the declared ones must name a job; a job no
    /// check watches gets `backup-NAME` (its last run) and
    /// `backup-NAME-age` (the age of its last good snapshot).
    pub(super) fn backup_checks(&mut self, backups: &[BackupJob], checks: &mut Vec<Check>) {
        let names: Vec<&str> = backups.iter().map(|j| j.name.as_str()).collect();
        for c in checks.iter() {
            if let Probe::Backup(p) = &c.probe
                && !names.contains(&p.job.as_str())
            {
                let (message, hint) = unknown(
                    "backup job",
                    &p.job,
                    names.iter().copied(),
                    "declare it under [[backup]]",
                );
                let at = format!("check \"{}\".backup", c.name);
                self.error(0, None, &at, message, hint);
            }
            if let Probe::Backup(p) = &c.probe
                && p.max_age.is_some_and(|m| m.std().is_zero())
            {
                let at = format!("check \"{}\".backup.max_age", c.name);
                self.error(0, None, &at, "`max_age` must be more than 0s".into(), None);
            }
        }
        for j in backups {
            for age in [false, true] {
                let covered = checks.iter().any(|c| {
                    matches!(&c.probe, Probe::Backup(p) if p.job == j.name && p.max_age.is_some() == age)
                });
                let name = if age {
                    format!("backup-{}-age", j.name)
                } else {
                    format!("backup-{}", j.name)
                };
                if covered || checks.iter().any(|c| c.name == name) {
                    continue;
                }
                let description = if age {
                    format!(
                        "the last good snapshot of backup {} is younger than {}",
                        j.name, j.max_age
                    )
                } else {
                    format!("the last run of backup {} → {}", j.name, j.repository)
                };
                checks.push(Check {
                    name,
                    description: Some(description),
                    every: Duration::from_secs(10),
                    timeout: Duration::from_secs(5),
                    retry_every: None,
                    fail_after: 1,
                    recover_after: 1,
                    severity: vigie_core::Severity::High,
                    depends_on: Vec::new(),
                    tags: vec!["backup".into()],
                    flapping: None,
                    actions: Vec::new(),
                    probe: Probe::Backup(BackupProbe {
                        job: j.name.clone(),
                        max_age: age.then_some(j.max_age),
                    }),
                });
            }
        }
    }
}

/// The problems of what a job backs up and runs: repository, paths,
/// excludes, tags, hooks.
fn values(raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) {
    let field = |f: &str| format!("{key}.{f}");
    if raw.repository.get_ref().trim().is_empty() {
        problems.push((
            raw.repository.span(),
            field("repository"),
            "`repository` is empty".into(),
            Some("name the repository's directory, e.g. repository = \"/srv/restic\"".into()),
        ));
    }
    if raw.paths.get_ref().is_empty() {
        problems.push((
            raw.paths.span(),
            field("paths"),
            "`paths` is empty".into(),
            Some("name what to back up, e.g. paths = [\"/etc\", \"/var/lib/app\"]".into()),
        ));
    }
    for g in &raw.exclude {
        if let Err(e) = check_exclude(g.get_ref()) {
            problems.push((
                g.span(),
                field("exclude"),
                format!("{:?} is not a valid glob: {e}", g.get_ref()),
                Some("gitignore's syntax: `*.tmp` at any depth, `/var/cache` anchored, `**` across directories".into()),
            ));
        }
    }
    for t in &raw.tags {
        let tag = t.get_ref();
        if tag.trim().is_empty() || tag.contains(',') {
            problems.push((
                t.span(),
                field("tags"),
                format!("tag {tag:?} is empty or holds a `,`"),
                Some("restic splits tags at `,`: give each tag on its own".into()),
            ));
        }
    }
    let hooks = [
        ("before", &raw.before),
        ("after", &raw.after),
        ("on_failure", &raw.on_failure),
    ];
    for (name, hook) in hooks {
        if let Some(h) = hook
            && h.get_ref().first().is_none_or(String::is_empty)
        {
            problems.push((
                h.span(),
                field(name),
                format!("`{name}` is empty: its first item is the program"),
                Some(format!(
                    "{name} = [\"/usr/local/bin/prepare\", \"--flag\"] (no shell)"
                )),
            ));
        }
    }
    if let Some(t) = &raw.hook_timeout
        && t.get_ref().std().is_zero()
    {
        problems.push((
            t.span(),
            field("hook_timeout"),
            "`hook_timeout` must be more than 0s".into(),
            None,
        ));
    }
}

/// When a job runs: `at` parsed, and the period of its schedule (`None`
/// when the schedule or time zone is wrong); the problems of `at`,
/// `schedule`, `timezone`, `jitter` and `max_age`.
fn timing(
    raw: &RawBackup,
    key: &str,
    problems: &mut Vec<Problem>,
) -> (Option<DailyAt>, Option<Duration>) {
    let field = |f: &str| format!("{key}.{f}");
    let at = raw
        .at
        .as_ref()
        .and_then(|a| match a.get_ref().parse::<DailyAt>() {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push((a.span(), field("at"), e, Some("e.g. at = \"02:30\"".into())));
                None
            }
        });
    match (&raw.at, &raw.schedule) {
        (Some(_), Some(s)) => problems.push((
            s.span(),
            field("schedule"),
            "set `at` or `schedule`, not both".into(),
            None,
        )),
        (None, None) => problems.push((
            raw.name.span(),
            key.to_owned(),
            "a backup needs `at` or `schedule`".into(),
            Some("at = \"02:30\" (daily), or schedule = \"0 3 * * 0\" (cron)".into()),
        )),
        _ => {}
    }
    let tz = if let Some(t) = &raw.timezone {
        let tz = schedule::time_zone(Some(t.get_ref())).ok();
        if tz.is_none() {
            problems.push((
                t.span(),
                field("timezone"),
                format!("unknown time zone `{}`", t.get_ref()),
                Some("use an IANA name such as \"Europe/Paris\"; is tzdata installed?".into()),
            ));
        }
        tz
    } else {
        Some(jiff::tz::TimeZone::system())
    };
    let cron: Option<Cron> = match (at, &raw.schedule) {
        (_, Some(c)) => Some(c.get_ref().clone()),
        (Some(a), None) => format!("{} {} * * *", a.minute, a.hour).parse().ok(),
        (None, None) => None,
    };
    let period = cron
        .zip(tz)
        .and_then(|(c, tz)| schedule::period(&c, &tz, jiff::Timestamp::now()));
    if let (Some(j), Some(p)) = (&raw.jitter, period)
        && j.get_ref().std() >= p.std()
    {
        problems.push((
            j.span(),
            field("jitter"),
            format!("`jitter` {} is not shorter than the schedule's period {p}", j.get_ref()),
            Some("runs would overlap their next schedule; the default is a tenth of the period, at most 15m".into()),
        ));
    }
    if let Some(m) = &raw.max_age
        && m.get_ref().std().is_zero()
    {
        problems.push((
            m.span(),
            field("max_age"),
            "`max_age` must be more than 0s".into(),
            Some("the default is 1.5 × the schedule's period".into()),
        ));
    }
    (at, period)
}

/// Whether `glob` is one restic's engine accepts as an exclusion
/// (gitignore syntax, as rustic builds it: `!` + the glob, an override).
fn check_exclude(glob: &str) -> Result<(), String> {
    if glob.trim().is_empty() {
        return Err("it is empty".into());
    }
    let ours = format!("!{glob}");
    // Its message quotes the glob as built, `!` and all: show the user's.
    let say = |e: ignore::Error| {
        e.to_string()
            .replace(&format!("'{ours}'"), &format!("'{glob}'"))
    };
    let mut b = ignore::overrides::OverrideBuilder::new("/");
    b.add(&ours).map_err(say)?;
    b.build().map(|_| ()).map_err(say)
}
