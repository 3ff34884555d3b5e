//! When scheduled jobs (`[[backup]]`) run: the next time a cron
//! expression fires in a time zone, the period it implies (for a
//! default `max_age`), and each host's fixed offset within a job's
//! `jitter`, so that a fleet sharing one config does not start at once
//! and a restart never moves a host's time.

use jiff::tz::TimeZone;
use vigie_core::{Cron, Duration};

use crate::{BackupJob, ConvergeJob};

/// The time zone named `name` (IANA), or the host's.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(n) => TimeZone::get(n).map_err(|e| format!("time zone `{n}`: {e}")),
        None => Ok(TimeZone::system()),
    }
}

/// The first time strictly after `after` at which `cron` fires in `tz`,
/// looked for over five years (a day, an hour skipped at once when it
/// cannot match). A local time that does not exist (a DST gap) fires
/// when the gap ends, as cron does; one that exists twice fires at its
/// first instant.
pub fn next_fire(cron: &Cron, tz: &TimeZone, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let local = after.to_zoned_datetime(tz.clone()).datetime();
    let start = local.date().at(local.hour(), local.minute(), 0, 0);
    let mut t = start.checked_add(jiff::Span::new().minutes(1)).ok()?;
    let newest = local.date().checked_add(jiff::Span::new().years(5)).ok()?;
    let num = |v: i8| u32::from(v.unsigned_abs());
    let next_day = |d: jiff::civil::Date| d.tomorrow().ok().map(|d| d.at(0, 0, 0, 0));
    while t.date() <= newest {
        let weekday = num(t.weekday().to_sunday_zero_offset());
        t = if !cron.day_matches(num(t.day()), num(t.month()), weekday) {
            next_day(t.date())?
        } else if !cron.hour_matches(num(t.hour())) {
            match t.hour() {
                23 => next_day(t.date())?,
                h => t.date().at(h + 1, 0, 0, 0),
            }
        } else {
            if cron.minute_matches(num(t.minute()))
                && let Ok(z) = tz.to_ambiguous_zoned_datetime(t).compatible()
                && z.timestamp() > after
            {
                return Some(z.timestamp());
            }
            t.checked_add(jiff::Span::new().minutes(1)).ok()?
        };
    }
    None
}

/// The longest wait between two runs of `cron` in `tz`, over the next
/// year (or its next 400 runs): a daily schedule's is 1d (25h across a
/// DST change), `0 3 * * 0`'s is 7d.
pub fn period(cron: &Cron, tz: &TimeZone, from: jiff::Timestamp) -> Option<Duration> {
    let end = from
        .checked_add(jiff::SignedDuration::from_hours(24 * 400))
        .ok()?;
    let mut previous = next_fire(cron, tz, from)?;
    let mut longest = std::time::Duration::ZERO;
    for _ in 0..400 {
        let Some(next) = next_fire(cron, tz, previous) else {
            break;
        };
        let gap = previous.duration_until(next).unsigned_abs();
        longest = longest.max(gap);
        previous = next;
        if next > end {
            break;
        }
    }
    // A schedule that fires once in five years waits that long.
    if longest.is_zero() {
        longest = std::time::Duration::from_hours(5 * 366 * 24);
    }
    Some(Duration::from_secs(longest.as_secs()))
}

/// The default `jitter` of a schedule of `period`: a tenth of it, at
/// most 15 minutes (a daily job of a fleet spreads over a quarter hour,
/// an every-minute one over 6 s).
pub fn default_jitter(period: Duration) -> Duration {
    let tenth = period.std() / 10;
    Duration::from_millis(tenth.min(std::time::Duration::from_mins(15)).as_millis() as u64)
}

/// This host's offset within `jitter` for job `job`: FNV-1a of the node
/// and job names, so that it is the same at every start and differs
/// between hosts.
pub fn offset(node: &str, job: &str, jitter: Duration) -> std::time::Duration {
    let millis = jitter.std().as_millis() as u64;
    if millis == 0 {
        return std::time::Duration::ZERO;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0]).chain(job.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    std::time::Duration::from_millis(hash % millis)
}

impl BackupJob {
    /// The first run of this job on node `node` strictly after `after`:
    /// its schedule's next time plus the node's offset within `jitter`.
    pub fn next_run(&self, node: &str, after: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
        self.next_of(&self.cron(), node, after)
    }

    /// The first restore drill strictly after `after`, as [`Self::next_run`]
    /// (`None`: the job has no drills).
    pub fn next_drill(
        &self,
        node: &str,
        after: jiff::Timestamp,
    ) -> Option<Result<jiff::Timestamp, String>> {
        self.drill.as_ref().map(|c| self.next_of(c, node, after))
    }

    /// The first scheduled integrity check strictly after `after`, as
    /// [`Self::next_run`] (`None`: the job schedules none).
    pub fn next_check(
        &self,
        node: &str,
        after: jiff::Timestamp,
    ) -> Option<Result<jiff::Timestamp, String>> {
        self.check.as_ref().map(|c| self.next_of(c, node, after))
    }

    fn next_of(
        &self,
        cron: &Cron,
        node: &str,
        after: jiff::Timestamp,
    ) -> Result<jiff::Timestamp, String> {
        let tz = time_zone(self.timezone.as_deref())?;
        let offset = jiff::SignedDuration::try_from(offset(node, &self.name, self.jitter))
            .map_err(|e| e.to_string())?;
        let shifted = after.checked_sub(offset).map_err(|e| e.to_string())?;
        next_fire(cron, &tz, shifted)
            .and_then(|t| t.checked_add(offset).ok())
            .ok_or_else(|| format!("`{cron}` never fires in the next five years"))
    }
}

impl crate::ConvergeGit {
    /// The URL as logs and messages show it: without a password or user.
    pub fn shown_url(&self) -> String {
        vigie_core::url_without_credentials(&self.url)
    }
}

impl ConvergeJob {
    /// Where its manifest comes from, as messages say it.
    pub fn source(&self) -> String {
        match &self.git {
            Some(g) => format!(
                "{} of {} ({})",
                g.manifest.display(),
                g.shown_url(),
                g.reference
            ),
            None => self.manifest.display().to_string(),
        }
    }

    /// Its cron schedule (`at` as a daily one), if it has one.
    pub fn cron(&self) -> Option<Cron> {
        match (&self.schedule, self.at) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(at)) => format!("{} {} * * *", at.minute, at.hour).parse().ok(),
            (None, None) => None,
        }
    }

    /// When it runs, as people read it: `every 1h`, `at 02:30`,
    /// `every 1h and at 02:30 Europe/Paris`.
    pub fn when(&self) -> String {
        let tz = self
            .timezone
            .as_ref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        let cron = match (&self.schedule, self.at) {
            (Some(c), _) => Some(format!("on `{c}`{tz}")),
            (None, Some(a)) => Some(format!("at {a}{tz}")),
            (None, None) => None,
        };
        match (self.every, cron) {
            (Some(e), Some(c)) => format!("every {e} and {c}"),
            (Some(e), None) => format!("every {e}"),
            (None, Some(c)) => c,
            (None, None) => format!("every {}", crate::model::CONVERGE_EVERY),
        }
    }

    /// The next run after one that ended at `after`: `every` later, or
    /// the schedule's next time, whichever comes first.
    pub fn next_run(&self, after: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
        let by_period = self
            .every
            .map(|e| {
                let e =
                    jiff::SignedDuration::try_from(e.std().max(std::time::Duration::from_secs(1)))
                        .map_err(|e| e.to_string())?;
                after.checked_add(e).map_err(|e| e.to_string())
            })
            .transpose()?;
        let by_cron = match self.cron() {
            Some(c) => {
                let tz = time_zone(self.timezone.as_deref())?;
                Some(
                    next_fire(&c, &tz, after)
                        .ok_or_else(|| format!("`{c}` never fires in the next five years"))?,
                )
            }
            None => None,
        };
        match (by_period, by_cron) {
            (Some(a), Some(b)) => Ok(a.min(b)),
            (Some(t), None) | (None, Some(t)) => Ok(t),
            (None, None) => after
                .checked_add(
                    jiff::SignedDuration::try_from(crate::model::CONVERGE_EVERY.std())
                        .map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_next_fire_is_strictly_after_and_in_its_time_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let daily: Cron = "30 2 * * *".parse().unwrap();
        // 01:00Z is 02:00 in Paris (winter): 02:30 the same day.
        let next = next_fire(&daily, &paris, t("2026-01-10T01:00:00Z")).unwrap();
        assert_eq!(next, t("2026-01-10T01:30:00Z"));
        // Exactly at the fire time: the next day's.
        let next = next_fire(&daily, &paris, next).unwrap();
        assert_eq!(next, t("2026-01-11T01:30:00Z"));
        let sunday: Cron = "0 3 * * 0".parse().unwrap();
        let next = next_fire(&sunday, &TimeZone::UTC, t("2026-12-01T05:00:00Z")).unwrap();
        assert_eq!(next, t("2026-12-06T03:00:00Z"));
    }

    #[test]
    fn a_time_missing_in_a_dst_gap_fires_when_the_gap_ends() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let c: Cron = "30 2 * * *".parse().unwrap();
        // 2026-03-29: 02:00 → 03:00 in Paris; no 02:30 that day.
        let next = next_fire(&c, &paris, t("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next, t("2026-03-29T01:30:00Z"), "03:30 CEST");
        let next = next_fire(&c, &paris, next).unwrap();
        assert_eq!(next, t("2026-03-30T00:30:00Z"));
        let every: Cron = "* * * * *".parse().unwrap();
        let next = next_fire(&every, &paris, t("2026-03-29T00:59:30Z")).unwrap();
        assert_eq!(next, t("2026-03-29T01:00:00Z"), "03:00 CEST, once");
        let next = next_fire(&every, &paris, next).unwrap();
        assert_eq!(next, t("2026-03-29T01:01:00Z"));
    }

    #[test]
    fn periods_follow_the_schedule() {
        let from = t("2026-06-01T00:00:00Z");
        let p = |c: &str| period(&c.parse().unwrap(), &TimeZone::UTC, from).unwrap();
        assert_eq!(p("* * * * *"), Duration::from_secs(60));
        assert_eq!(p("30 2 * * *"), Duration::from_secs(86_400));
        assert_eq!(p("0 3 * * 0"), Duration::from_secs(7 * 86_400));
        assert_eq!(p("0 */6 * * *"), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn offsets_stay_within_the_jitter_and_depend_on_host_and_job() {
        let j = Duration::from_secs(900);
        let a = offset("web-1", "nightly", j);
        assert_eq!(a, offset("web-1", "nightly", j), "the same at every start");
        assert!(a < j.std());
        let others: Vec<_> = (2..10)
            .map(|i| offset(&format!("web-{i}"), "nightly", j))
            .collect();
        assert!(others.iter().any(|o| *o != a), "hosts spread: {others:?}");
        assert_eq!(
            offset("web-1", "nightly", Duration::from_secs(0)),
            std::time::Duration::ZERO
        );
        assert_eq!(
            default_jitter(Duration::from_secs(86_400)),
            Duration::from_secs(900)
        );
        assert_eq!(
            default_jitter(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
    }

    #[test]
    fn a_converge_job_runs_at_its_period_or_its_time_whichever_first() {
        let cfg = crate::load_str(
            "[[converge]]\nname = \"a\"\nmanifest = \"m.toml\"\nat = \"02:30\"\ntimezone = \"Europe/Paris\"\n\n[[converge]]\nname = \"b\"\nmanifest = \"m.toml\"\nevery = \"1h\"\nschedule = \"*/20 * * * *\"\n\n[[converge]]\nname = \"c\"\nmanifest = \"m.toml\"\n",
            std::path::Path::new("/etc/vigie/vigie.toml"),
            &|_| None,
        )
        .unwrap()
        .config;
        let [a, b, c] = &cfg.converges[..] else {
            panic!("{:?}", cfg.converges)
        };
        assert_eq!(a.every, None);
        assert_eq!(a.when(), "at 02:30 Europe/Paris");
        // 02:30 in Paris in winter is 01:30Z.
        assert_eq!(
            a.next_run(t("2026-01-10T05:00:00Z")).unwrap(),
            t("2026-01-11T01:30:00Z")
        );
        assert_eq!(b.when(), "every 1h and on `*/20 * * * *`");
        assert_eq!(
            b.next_run(t("2026-01-10T05:01:00Z")).unwrap(),
            t("2026-01-10T05:20:00Z")
        );
        assert_eq!(c.every, Some(Duration::from_secs(3600)));
        assert_eq!(
            c.next_run(t("2026-01-10T05:01:00Z")).unwrap(),
            t("2026-01-10T06:01:00Z")
        );
    }

    #[test]
    fn a_pulled_manifests_url_is_shown_without_credentials() {
        let g = |url: &str| crate::ConvergeGit {
            url: url.into(),
            reference: "main".into(),
            manifest: "site.toml".into(),
        };
        assert_eq!(
            g("https://deploy:s3cret@git.example.org/site.git").shown_url(),
            "https://<redacted>@git.example.org/site.git"
        );
        assert_eq!(g("/srv/site.git").shown_url(), "/srv/site.git");
        assert_eq!(
            crate::load::git_url("ext::sh -c x").unwrap_err(),
            "a repository's URL has no spaces nor control characters"
        );
        assert!(
            crate::load::git_url("ext::/x")
                .unwrap_err()
                .contains("remote helpers")
        );
        assert!(crate::load::git_url("fd::3").is_err());
        assert!(crate::load::git_url("git@example.org:site.git").is_ok());
        assert!(crate::load::git_url("file:///srv/site.git").is_ok());
        assert!(crate::load::git_url("ssh://git@example.org/site.git").is_ok());
        assert!(crate::load::git_url("https://example.org/site.git").is_ok());
        for unauthenticated in ["http://example.org/site.git", "git://example.org/site.git"] {
            assert!(
                crate::load::git_url(unauthenticated)
                    .unwrap_err()
                    .contains("not authenticated"),
                "{unauthenticated}"
            );
        }
        for credentials in [
            "https://deploy:s3cret@git.example.org/site.git",
            "https://token@git.example.org/site.git",
            "ssh://git:pw@example.org/site.git",
        ] {
            assert!(
                crate::load::git_url(credentials)
                    .unwrap_err()
                    .contains("credentials"),
                "{credentials}"
            );
        }
    }

    #[test]
    fn a_jobs_next_run_is_its_time_plus_the_hosts_offset() {
        let job = BackupJob {
            name: "nightly".into(),
            repository: "/srv/restic".into(),
            password: crate::Secret::new(crate::SecretSource::Env("PW".into())),
            paths: vec!["/etc".into()],
            exclude: Vec::new(),
            one_file_system: false,
            tags: Vec::new(),
            at: Some("02:30".parse().unwrap()),
            schedule: None,
            timezone: Some("UTC".into()),
            jitter: Duration::from_secs(900),
            before: None,
            after: None,
            on_failure: None,
            hook_timeout: Duration::from_secs(3600),
            max_age: Duration::from_secs(129_600),
            dumps: Vec::new(),
            keep: None,
            ssh: Vec::new(),
            s3: None,
            rest: None,
            ca: None,
            drill: None,
            drill_sample: None,
            check: None,
            check_read_data: "10%".into(),
        };
        let off = jiff::SignedDuration::try_from(offset("web-1", "nightly", job.jitter)).unwrap();
        let first = t("2026-12-01T02:30:00Z").checked_add(off).unwrap();
        assert_eq!(
            job.next_run("web-1", t("2026-12-01T01:00:00Z")).unwrap(),
            first
        );
        // Between the time and the offset: still today's run.
        let between = t("2026-12-01T02:30:00Z").checked_add(off / 2).unwrap();
        assert_eq!(job.next_run("web-1", between).unwrap(), first);
        let tomorrow = first
            .checked_add(jiff::SignedDuration::from_hours(24))
            .unwrap();
        assert_eq!(job.next_run("web-1", first).unwrap(), tomorrow);
    }
}
