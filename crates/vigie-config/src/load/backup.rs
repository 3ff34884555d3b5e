//! Backups: `[[backup]]` jobs and their checks.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use vigie_core::{Cron, Duration};

use crate::diag::unknown;
use crate::model::{
    BackupDump, BackupJob, BackupKeep, BackupProbe, BackupRest, BackupS3, BackupWatch, Check,
    DailyAt, Probe,
};
use crate::schedule;
use crate::secret::Secret;

use super::{EnvLookup, Loader};

/// A scheduled backup of files, and of database dumps, into a restic-format
/// repository (`[[backup]]`): restic itself lists, checks and restores
/// it. Each snapshot is tagged `vigie-job:NAME` besides `tags`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Backup")]
pub(super) struct RawBackup {
    /// The job's name (letters, digits, `-`, `_`, `.`): `vigie backup run
    /// NAME`, and its checks `backup-NAME` and `backup-NAME-age`.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Where snapshots go, as restic writes it: a directory
    /// (`/srv/restic`), `sftp:[USER@]HOST:/PATH` (through the system
    /// `ssh`, its config and agent), `s3:HOST/BUCKET[/PREFIX]` /
    /// `s3:https://HOST:PORT/BUCKET` (with `s3`), or a server of
    /// restic's REST protocol, `rest:https://HOST:PORT/[PATH/]` (its
    /// user and password in `rest`, never in the URL).
    #[schemars(with = "String")]
    repository: Spanned<String>,
    /// The repository's password: `{ env = "RESTIC_PASSWORD" }` or
    /// `{ file = "/etc/vigie/restic.pass" }`.
    #[schemars(with = "Secret")]
    password: Spanned<Secret>,
    /// Files and directories to back up (relative to the config file);
    /// may be empty when `dump` gives something to store.
    #[schemars(with = "Option<Vec<PathBuf>>")]
    paths: Option<Spanned<Vec<PathBuf>>>,
    /// Left out: gitignore globs (`*.tmp` at any depth, `/var/cache`
    /// anchored, `**` across directories), checked at load.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    exclude: Vec<Spanned<String>>,
    /// Stay on each path's file system (mounts below are left out).
    #[serde(default)]
    one_file_system: bool,
    /// The snapshots' tags (none empty, none holding a `,`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    tags: Vec<Spanned<String>>,
    /// Daily at this time, `"02:30"` (or `schedule`). A time missed
    /// while vigie was not running (after the job's last run) is made
    /// up once, 15 s after the daemon starts; so are missed drills and
    /// integrity checks.
    #[schemars(with = "Option<String>")]
    at: Option<Spanned<String>>,
    /// When to run, as cron: `"0 3 * * 0"` (or `at`).
    #[schemars(with = "Option<Cron>")]
    schedule: Option<Spanned<Cron>>,
    /// The time zone of `at`/`schedule` (IANA name); the host's by default.
    #[schemars(with = "Option<String>")]
    timezone: Option<Spanned<String>>,
    /// The most a run starts after its time: each host keeps its own
    /// offset within it, so a fleet does not start at once. Default: a
    /// tenth of the schedule's period, at most 15m.
    #[schemars(with = "Option<Duration>")]
    jitter: Option<Spanned<Duration>>,
    /// A program and its arguments run before the backup (no shell); its
    /// failure aborts the run.
    #[schemars(with = "Option<Vec<String>>")]
    before: Option<Spanned<Vec<String>>>,
    /// Run after a good backup.
    #[schemars(with = "Option<Vec<String>>")]
    after: Option<Spanned<Vec<String>>>,
    /// Run after a failed one, with `VIGIE_BACKUP_ERROR` set.
    #[schemars(with = "Option<Vec<String>>")]
    on_failure: Option<Spanned<Vec<String>>>,
    /// How long each hook may run.
    #[schemars(with = "Option<Duration>", extend("default" = "1h"))]
    hook_timeout: Option<Spanned<Duration>>,
    /// The job's age check fails when the last good snapshot is older.
    /// Default: 1.5 × the schedule's period.
    #[schemars(with = "Option<Duration>")]
    max_age: Option<Spanned<Duration>>,
    /// Commands whose output is stored as a file of the snapshot, at its
    /// top (`/blog.sql`): `dump = [{ name = "blog.sql", run = ["pg_dump",
    /// "-Fc", "blog"] }]`. A command that exits non-zero fails the run
    /// and leaves no snapshot.
    #[serde(default)]
    #[schemars(with = "Vec<RawDump>")]
    dump: Vec<Spanned<RawDump>>,
    /// Snapshots of this job kept after each good run, as `restic forget`
    /// counts them (the others are forgotten, then the repository
    /// pruned): `keep = { daily = 7, weekly = 4, monthly = 12 }`.
    #[schemars(with = "Option<RawKeep>")]
    keep: Option<Spanned<RawKeep>>,
    /// The ssh program and its options for an `sftp:` repository
    /// (default `["ssh"]`, with your `~/.ssh/config`).
    #[schemars(with = "Option<Vec<String>>")]
    ssh: Option<Spanned<Vec<String>>>,
    /// The keys of an `s3:` repository.
    #[schemars(with = "Option<RawS3>")]
    s3: Option<Spanned<RawS3>>,
    /// The user and password of a `rest:` repository's server (basic
    /// authentication): `rest = { user = "blog", password = { env =
    /// "REST_PASSWORD" } }`.
    #[schemars(with = "Option<RawRest>")]
    rest: Option<Spanned<RawRest>>,
    /// A PEM file of CA certificates trusted beside the system's, for an
    /// `s3:` or `rest:` server whose certificate a private CA signed
    /// (restic's `--cacert`), relative to the config file.
    #[schemars(with = "Option<PathBuf>")]
    ca: Option<Spanned<PathBuf>>,
    /// Restore drills: `"daily"`, `"weekly"` (Sundays), `"monthly"` (the
    /// 1st), at 05:30 in the job's time zone plus this host's offset, or a
    /// cron expression. Each restores the latest snapshot (or a sample)
    /// into a scratch directory, verifies every byte, records the time
    /// the restore took, and removes the copy; a failed drill fails the
    /// check `backup-NAME-drill`, which opens an incident.
    #[schemars(with = "Option<String>")]
    drill: Option<Spanned<String>>,
    /// Drill a share of the files only: `"10%"` (deterministic per
    /// snapshot). Default: all of them.
    #[schemars(with = "Option<String>")]
    drill_sample: Option<Spanned<String>>,
    /// Integrity checks of the repository: `"daily"`, `"weekly"`
    /// (Sundays), `"monthly"` (the 1st), at 04:30 in the job's time zone
    /// plus this host's offset, or a cron expression. Each reads the
    /// repository's structure (indexes, snapshots, trees, every pack's
    /// presence and size) and the share of pack data `check_read_data`
    /// says, decrypted and hashed, as `restic check --read-data-subset`;
    /// damage fails the check `backup-NAME-check`, which opens an
    /// incident.
    #[schemars(with = "Option<String>")]
    check: Option<Spanned<String>>,
    /// How much pack data each scheduled check reads back: `"10%"` (a
    /// random tenth each time), `"1/12"` (the first of twelve groups: set
    /// the month's number in a cron per month to cover all), `"all"`, or
    /// `"none"` (the structure only).
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_CHECK_READ_DATA))]
    check_read_data: Option<Spanned<String>>,
}

/// How much data a scheduled integrity check reads when the job does
/// not say.
pub(crate) const DEFAULT_CHECK_READ_DATA: &str = "10%";

/// A command whose standard output is stored as one file of the snapshot,
/// or an SQLite database copied while in use.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dump")]
pub(super) struct RawDump {
    /// The file's name at the top of the snapshot (`blog.sql`): no `/`.
    name: String,
    /// The program and its arguments (no shell): `["pg_dump", "-Fc",
    /// "blog"]` (or `sqlite`).
    #[serde(default)]
    run: Vec<String>,
    /// An SQLite database (vigie's own store, an application's), copied
    /// consistently while it is in use (`VACUUM INTO`), never read as a
    /// live file (or `run`).
    sqlite: Option<PathBuf>,
    /// The longest the dump may run: past it, the command (its whole
    /// process group) is killed and the run fails, leaving no snapshot,
    /// so a dump stuck on a lock never holds the job forever.
    #[schemars(extend("default" = "6h"))]
    timeout: Option<Duration>,
}

/// A dump's time limit when it sets none.
const DUMP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// How many snapshots of each kind to keep (restic's `forget` policy).
#[derive(Deserialize, schemars::JsonSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Keep")]
pub(super) struct RawKeep {
    /// The latest N.
    last: Option<u32>,
    /// The latest of each of the last N hours that have one.
    hourly: Option<u32>,
    /// The latest of each of the last N days that have one.
    daily: Option<u32>,
    /// The latest of each of the last N weeks that have one.
    weekly: Option<u32>,
    /// The latest of each of the last N months that have one.
    monthly: Option<u32>,
    /// The latest of each of the last N years that have one.
    yearly: Option<u32>,
    /// Every snapshot younger than this, counted back from the latest.
    within: Option<Duration>,
}

/// An S3 repository's keys and region.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "S3Keys")]
pub(super) struct RawS3 {
    /// The access key id: `{ env = "AWS_ACCESS_KEY_ID" }` or `{ file = … }`.
    access_key_id: Secret,
    /// The secret access key: `{ env = "AWS_SECRET_ACCESS_KEY" }` or
    /// `{ file = … }`.
    secret_access_key: Secret,
    /// The bucket's region (what the provider calls it).
    #[schemars(extend("default" = "us-east-1"))]
    region: Option<String>,
}

/// A REST server's user and password.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RestLogin")]
pub(super) struct RawRest {
    /// The user name (rest-server's `.htpasswd` entry).
    user: String,
    /// The password: `{ env = "REST_PASSWORD" }` or `{ file = … }`.
    password: Secret,
}

/// An S3 table's two secrets, unread yet, and its place.
type S3Secrets = Option<((Secret, Secret), Range<usize>)>;

/// A REST table's password, unread yet, and its place.
type RestSecret = Option<(Secret, Range<usize>)>;

/// A job as declared, with the secrets still to read: its password, its
/// S3 keys, its REST password.
type Declared = (BackupJob, (Range<usize>, Secret), S3Secrets, RestSecret);

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
            let Some((mut job, (span, secret), s3, rest)) = job.filter(|_| ok) else {
                continue;
            };
            match self.resolve_secret(src, span, &format!("{key}.password"), secret, env) {
                Some(s) => job.password = s,
                None => continue,
            }
            if let (Some(((id, secret), span)), Some(keys)) = (s3, job.s3.as_mut()) {
                let id = self.resolve_secret(
                    src,
                    span.clone(),
                    &format!("{key}.s3.access_key_id"),
                    id,
                    env,
                );
                let secret = self.resolve_secret(
                    src,
                    span,
                    &format!("{key}.s3.secret_access_key"),
                    secret,
                    env,
                );
                match (id, secret) {
                    (Some(i), Some(s)) => {
                        keys.access_key_id = i;
                        keys.secret_access_key = s;
                    }
                    _ => continue,
                }
            }
            if let (Some((secret, span)), Some(login)) = (rest, job.rest.as_mut()) {
                match self.resolve_secret(src, span, &format!("{key}.rest.password"), secret, env) {
                    Some(p) => login.password = p,
                    None => continue,
                }
            }
            out.push(job);
        }
        out
    }

    /// The job `raw` declares (its password still to read), and every
    /// problem of its values.
    /// `ca` names a file.
    fn ca_file(&self, raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) {
        if let Some(ca) = &raw.ca
            && !self.base.join(ca.get_ref()).is_file()
        {
            problems.push((
                ca.span(),
                format!("{key}.ca"),
                format!(
                    "CA file {} does not exist",
                    self.base.join(ca.get_ref()).display()
                ),
                Some("give a PEM file of trusted certificates".into()),
            ));
        }
    }

    fn backup_job(
        &self,
        raw: RawBackup,
        key: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Declared> {
        let paths: Vec<PathBuf> = raw
            .paths
            .as_ref()
            .map(|p| p.get_ref().iter().map(|p| self.base.join(p)).collect())
            .unwrap_or_default();
        values(&raw, key, problems);
        self.ca_file(&raw, key, problems);
        let (drill, drill_sample) = drills(&raw, key, problems);
        let (check, check_read_data) = integrity(&raw, key, problems);
        let (at, period) = timing(&raw, key, problems);
        let period = period?;
        let hook_timeout = raw
            .hook_timeout
            .as_ref()
            .map_or(Duration::from_secs(3600), |t| *t.get_ref());
        let password = (raw.password.span(), raw.password.get_ref().clone());
        let keys = raw.s3.as_ref().map(|s| {
            let s = s.get_ref();
            (s.access_key_id.clone(), s.secret_access_key.clone())
        });
        let s3_span = raw.s3.as_ref().map(Spanned::span);
        let rest = raw
            .rest
            .as_ref()
            .map(|r| (r.get_ref().password.clone(), r.span()));
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
            dumps: raw
                .dump
                .into_iter()
                .map(|d| {
                    let d = d.into_inner();
                    BackupDump {
                        name: d.name,
                        run: d.run,
                        sqlite: d.sqlite.map(|p| self.base.join(p)),
                        timeout: d.timeout.unwrap_or(DUMP_TIMEOUT),
                    }
                })
                .collect(),
            keep: raw.keep.map(|k| {
                let k = k.into_inner();
                BackupKeep {
                    last: k.last,
                    hourly: k.hourly,
                    daily: k.daily,
                    weekly: k.weekly,
                    monthly: k.monthly,
                    yearly: k.yearly,
                    within: k.within,
                }
            }),
            drill,
            drill_sample,
            check,
            check_read_data,
            ssh: raw.ssh.map(Spanned::into_inner).unwrap_or_default(),
            s3: raw.s3.map(|s| {
                let s = s.into_inner();
                BackupS3 {
                    access_key_id: s.access_key_id,
                    secret_access_key: s.secret_access_key,
                    region: s.region.unwrap_or_else(|| "us-east-1".to_owned()),
                }
            }),
            rest: raw.rest.map(|r| {
                let r = r.into_inner();
                BackupRest {
                    user: r.user,
                    password: r.password,
                }
            }),
            ca: raw.ca.map(|c| self.base.join(c.into_inner())),
        };
        Some((job, password, keys.zip(s3_span), rest))
    }

    /// Each job's checks: the declared ones must name a job; a job no
    /// check watches gets `backup-NAME` (its last run),
    /// `backup-NAME-age` (the age of its last good snapshot) and
    /// `backup-NAME-repository` (whether its repository answers), and
    /// `backup-NAME-drill` and `backup-NAME-check` when it schedules
    /// drills or integrity checks.
    pub(super) fn backup_checks(&mut self, backups: &[BackupJob], checks: &mut Vec<Check>) {
        let names: Vec<&str> = backups.iter().map(|j| j.name.as_str()).collect();
        for c in checks.iter_mut() {
            self.declared_backup_check(c, backups, &names);
        }
        for j in backups {
            for aspect in [
                BackupWatch::Run,
                BackupWatch::Age,
                BackupWatch::Repository,
                BackupWatch::Drill,
                BackupWatch::Check,
            ] {
                if (aspect == BackupWatch::Drill && j.drill.is_none())
                    || (aspect == BackupWatch::Check && j.check.is_none())
                {
                    continue;
                }
                let covered = checks.iter().any(
                    |c| matches!(&c.probe, Probe::Backup(p) if p.job == j.name && p.aspect() == aspect),
                );
                let (name, description) = generated(j, aspect);
                if covered || checks.iter().any(|c| c.name == name) {
                    continue;
                }
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
                        watch: Some(aspect),
                        max_age: (aspect == BackupWatch::Age).then_some(j.max_age),
                    }),
                });
            }
        }
    }

    /// A declared check of a job: the job exists, `max_age` goes with
    /// `watch = "age"` (the job's when unsaid), and what it watches is
    /// scheduled.
    fn declared_backup_check(&mut self, c: &mut Check, backups: &[BackupJob], names: &[&str]) {
        let Probe::Backup(p) = &mut c.probe else {
            return;
        };
        let Some(job) = backups.iter().find(|j| j.name == p.job) else {
            let (message, hint) = unknown(
                "backup job",
                &p.job,
                names.iter().copied(),
                "declare it under [[backup]]",
            );
            let at = format!("check \"{}\".backup", c.name);
            self.error(0, None, &at, message, hint);
            return;
        };
        if p.max_age.is_some_and(|m| m.std().is_zero()) {
            let at = format!("check \"{}\".backup.max_age", c.name);
            self.error(0, None, &at, "`max_age` must be more than 0s".into(), None);
        }
        match p.aspect() {
            BackupWatch::Age => {
                p.max_age.get_or_insert(job.max_age);
            }
            other if p.max_age.is_some() => {
                let at = format!("check \"{}\".backup.max_age", c.name);
                self.error(
                    0,
                    None,
                    &at,
                    format!(
                        "`max_age` is for watch = \"age\", not {:?}",
                        watch_name(other)
                    ),
                    Some("leave `max_age` out, or set watch = \"age\"".into()),
                );
            }
            _ => {}
        }
        let (what, when) = match p.aspect() {
            BackupWatch::Drill => ("restore drills", job.drill.is_none()),
            BackupWatch::Check => ("integrity checks", job.check.is_none()),
            _ => ("", false),
        };
        if when {
            let at = format!("check \"{}\".backup.watch", c.name);
            let key = if what == "restore drills" {
                "drill"
            } else {
                "check"
            };
            self.error(
                0,
                None,
                &at,
                format!(
                    "backup {} schedules no {what}: this check would never change",
                    job.name
                ),
                Some(format!("set {key} = \"weekly\" in [[backup]] {}", job.name)),
            );
        }
    }
}

/// The name and description of job `j`'s generated check of `aspect`.
fn generated(j: &BackupJob, aspect: BackupWatch) -> (String, String) {
    match aspect {
        BackupWatch::Run => (
            format!("backup-{}", j.name),
            format!("the last run of backup {} → {}", j.name, j.repository),
        ),
        BackupWatch::Age => (
            format!("backup-{}-age", j.name),
            format!(
                "the last good snapshot of backup {} is younger than {}",
                j.name, j.max_age
            ),
        ),
        BackupWatch::Drill => (
            format!("backup-{}-drill", j.name),
            format!("the last restore drill of backup {} passed", j.name),
        ),
        BackupWatch::Check => (
            format!("backup-{}-check", j.name),
            format!(
                "the last integrity check of backup {}'s repository found no damage",
                j.name
            ),
        ),
        BackupWatch::Repository => (
            format!("backup-{}-repository", j.name),
            format!(
                "the repository of backup {} answers: {}",
                j.name, j.repository
            ),
        ),
    }
}

/// `watch`'s value as written.
fn watch_name(w: BackupWatch) -> &'static str {
    match w {
        BackupWatch::Run => "run",
        BackupWatch::Age => "age",
        BackupWatch::Drill => "drill",
        BackupWatch::Check => "check",
        BackupWatch::Repository => "repository",
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
    if raw.paths.as_ref().is_none_or(|p| p.get_ref().is_empty()) && raw.dump.is_empty() {
        problems.push((
            raw.paths
                .as_ref()
                .map_or_else(|| raw.name.span(), Spanned::span),
            field("paths"),
            "`paths` is empty and there is no `dump`: nothing to back up".into(),
            Some("name what to back up, e.g. paths = [\"/etc\", \"/var/lib/app\"]".into()),
        ));
    }
    dumps(raw, key, problems);
    remote(raw, key, problems);
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

/// The problems of `dump`: names that are one file at the snapshot's
/// top, each once; a program to run.
fn dumps(raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) {
    let field = format!("{key}.dump");
    let mut seen: Vec<&str> = Vec::new();
    for d in &raw.dump {
        let dump = d.get_ref();
        let name = dump.name.as_str();
        let bad = if name.is_empty() || name == "." || name == ".." {
            Some("a dump's `name` is a file name".to_owned())
        } else if name.contains('/') || name.contains('\0') {
            Some(format!(
                "dump name {name:?} holds a `/`: it is one file at the top of the snapshot"
            ))
        } else if seen.contains(&name) {
            Some(format!("dump `{name}` is declared twice"))
        } else {
            None
        };
        if let Some(message) = bad {
            problems.push((
                d.span(),
                field.clone(),
                message,
                Some("dump = [{ name = \"blog.sql\", run = [\"pg_dump\", \"blog\"] }]".into()),
            ));
        }
        seen.push(name);
        match (&dump.sqlite, dump.run.is_empty()) {
            (Some(_), false) => problems.push((
                d.span(),
                field.clone(),
                format!("dump `{name}` sets both `run` and `sqlite`: choose one"),
                None,
            )),
            (None, _) if dump.run.first().is_none_or(String::is_empty) => problems.push((
                d.span(),
                field.clone(),
                format!("dump `{name}` has no command: its `run` starts with the program"),
                Some("run = [\"pg_dump\", \"-Fc\", \"blog\"] (no shell), or sqlite = \"/var/lib/app/app.db\"".into()),
            )),
            _ => {}
        }
        if dump.timeout.is_some_and(|t| t.std().is_zero()) {
            problems.push((
                d.span(),
                field.clone(),
                format!("dump `{name}`'s `timeout` must be more than 0s"),
                Some("timeout = \"6h\"".into()),
            ));
        }
    }
    if let Some(k) = &raw.keep {
        let keep = k.get_ref();
        let counts = [
            keep.last,
            keep.hourly,
            keep.daily,
            keep.weekly,
            keep.monthly,
            keep.yearly,
        ];
        if counts.iter().all(|c| c.is_none_or(|n| n == 0))
            && keep.within.is_none_or(|w| w.std().is_zero())
        {
            problems.push((
                k.span(),
                format!("{key}.keep"),
                "`keep` sets no rule: it would forget every snapshot".into(),
                Some("keep = { daily = 7, weekly = 4, monthly = 12 }".into()),
            ));
        }
    }
}

/// `"daily"`, `"weekly"`, `"monthly"` (at `hh:mm`) or a cron expression,
/// from key `name`; its problem when it is neither.
fn when(
    d: &Spanned<String>,
    key: &str,
    name: &str,
    (hh, mm): (u8, u8),
    problems: &mut Vec<Problem>,
) -> Option<Cron> {
    let text = d.get_ref().trim();
    let cron = match text {
        "daily" => format!("{mm} {hh} * * *"),
        "weekly" => format!("{mm} {hh} * * 0"),
        "monthly" => format!("{mm} {hh} 1 * *"),
        other => other.to_owned(),
    };
    match cron.parse::<Cron>() {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push((
                d.span(),
                format!("{key}.{name}"),
                format!("{text:?} is neither daily, weekly, monthly nor a cron expression: {e}"),
                Some(format!("{name} = \"weekly\", or {name} = \"0 6 * * 1\"")),
            ));
            None
        }
    }
}

/// `drill` as a cron expression, `drill_sample` as a percentage, and
/// their problems.
fn drills(raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) -> (Option<Cron>, Option<u8>) {
    let drill = raw
        .drill
        .as_ref()
        .and_then(|d| when(d, key, "drill", (5, 30), problems));
    let sample = raw.drill_sample.as_ref().and_then(|s| {
        let text = s.get_ref().trim();
        let n = text
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u8>().ok())
            .filter(|n| (1..=100).contains(n));
        if n.is_none() {
            problems.push((
                s.span(),
                format!("{key}.drill_sample"),
                format!("{text:?} is not a share of the files from 1% to 100%"),
                Some("drill_sample = \"10%\"".into()),
            ));
        }
        if raw.drill.is_none() {
            problems.push((
                s.span(),
                format!("{key}.drill_sample"),
                "`drill_sample` without `drill`: no drill is scheduled".into(),
                Some("drill = \"weekly\"".into()),
            ));
        }
        n
    });
    (drill, sample)
}

/// `check` as a cron expression, `check_read_data` as restic's subsets,
/// and their problems.
fn integrity(raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) -> (Option<Cron>, String) {
    let check = raw
        .check
        .as_ref()
        .and_then(|c| when(c, key, "check", (4, 30), problems));
    let Some(r) = &raw.check_read_data else {
        return (check, DEFAULT_CHECK_READ_DATA.to_owned());
    };
    let text = r.get_ref().trim();
    if let Err(why) = read_data_subset(text) {
        problems.push((
            r.span(),
            format!("{key}.check_read_data"),
            format!("{text:?} {why}"),
            Some("check_read_data = \"10%\", \"1/12\", \"all\" or \"none\"".into()),
        ));
    }
    if raw.check.is_none() {
        problems.push((
            r.span(),
            format!("{key}.check_read_data"),
            "`check_read_data` without `check`: no integrity check is scheduled".into(),
            Some("check = \"weekly\"".into()),
        ));
    }
    (check, text.to_owned())
}

/// Whether `text` is a share of pack data a check can read: `N%` (more
/// than 0, at most 100), `N/M` (1 ≤ N ≤ M), `all` or `none`.
pub fn read_data_subset(text: &str) -> Result<(), &'static str> {
    if text == "all" || text == "none" {
        return Ok(());
    }
    if let Some(p) = text.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(()),
            _ => Err("is not a share from more than 0% to 100%"),
        };
    }
    if let Some((n, m)) = text.split_once('/') {
        return match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
            (Ok(n), Ok(m)) if n >= 1 && n <= m => Ok(()),
            _ => Err("is not a group N/M with 1 ≤ N ≤ M"),
        };
    }
    Err("is not a share of the data (`10%`), a group (`1/12`), `all` nor `none`")
}

/// The problems of `ssh`, `s3` and `rest` against the repository's kind.
fn remote(raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) {
    let repo = raw.repository.get_ref();
    rest(raw, key, problems);
    if let Some(ca) = &raw.ca
        && !(repo.starts_with("s3:") || repo.starts_with("rest:"))
    {
        problems.push((
            ca.span(),
            format!("{key}.ca"),
            "`ca` is for an s3: or rest: repository reached over HTTPS".into(),
            None,
        ));
    }
    let is_s3 = repo.starts_with("s3:");
    match (&raw.s3, is_s3) {
        (None, true) => problems.push((
            raw.repository.span(),
            format!("{key}.s3"),
            "an s3: repository needs its keys".into(),
            Some("s3 = { access_key_id = { env = \"AWS_ACCESS_KEY_ID\" }, secret_access_key = { env = \"AWS_SECRET_ACCESS_KEY\" } }".into()),
        )),
        (Some(s), false) => problems.push((
            s.span(),
            format!("{key}.s3"),
            "`s3` is for an s3: repository".into(),
            None,
        )),
        _ => {}
    }
    if let Some(ssh) = &raw.ssh {
        if !repo.starts_with("sftp:") {
            problems.push((
                ssh.span(),
                format!("{key}.ssh"),
                "`ssh` is for an sftp: repository".into(),
                None,
            ));
        } else if ssh.get_ref().first().is_none_or(String::is_empty) {
            problems.push((
                ssh.span(),
                format!("{key}.ssh"),
                "`ssh` is empty: its first item is the program".into(),
                Some("ssh = [\"ssh\", \"-F\", \"/etc/vigie/ssh_config\"]".into()),
            ));
        }
    }
}

/// The problems of `rest` and of a `rest:` repository's URL: a password
/// belongs in `rest` as a secret, never in the file's text.
fn rest(raw: &RawBackup, key: &str, problems: &mut Vec<Problem>) {
    let repo = raw.repository.get_ref();
    let Some(url) = repo.strip_prefix("rest:") else {
        if let Some(r) = &raw.rest {
            problems.push((
                r.span(),
                format!("{key}.rest"),
                "`rest` is for a rest: repository".into(),
                None,
            ));
        }
        return;
    };
    let hint = "repository = \"rest:https://HOST:8000/PATH/\" and rest = { user = \"NAME\", password = { env = \"REST_PASSWORD\" } }";
    match url::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            if u.password().is_some() {
                problems.push((
                    raw.repository.span(),
                    format!("{key}.repository"),
                    "a password in the repository's URL would sit in the file in plain text: give it in `rest` as a secret".into(),
                    Some(hint.into()),
                ));
            }
            if !u.username().is_empty() && raw.rest.is_some() {
                problems.push((
                    raw.repository.span(),
                    format!("{key}.repository"),
                    "the user is given twice: in the URL and in `rest`".into(),
                    Some(hint.into()),
                ));
            }
        }
        _ => problems.push((
            raw.repository.span(),
            format!("{key}.repository"),
            "a rest: repository is an http:// or https:// URL".into(),
            Some(hint.into()),
        )),
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
