//! `[[backup]]` jobs: a good one resolves with its defaults and checks;
//! each bad value is refused at its own place.

use std::path::Path;

use vigie_config::{ActionKind, Probe, load_str};
use vigie_core::Duration;

fn env(name: &str) -> Option<String> {
    (name == "RESTIC_PW").then(|| "s3cret".to_owned())
}

fn errors(src: &str) -> String {
    load_str(src, Path::new("vigie.toml"), &env)
        .expect_err("config should be refused")
        .to_string()
}

const JOB: &str = "[[backup]]\nname = \"nightly\"\nrepository = \"/srv/restic\"\npassword = { env = \"RESTIC_PW\" }\npaths = [\"/etc\"]\n";

#[test]
fn a_daily_job_gets_its_defaults_two_checks_and_hides_its_password() {
    let src = format!("{JOB}at = \"02:30\"\ntimezone = \"Asia/Tokyo\"\ntags = [\"etc\"]\n");
    let loaded = load_str(&src, Path::new("vigie.toml"), &env).unwrap();
    let c = &loaded.config;
    let j = &c.backups[0];
    assert_eq!(j.cron().to_string(), "30 2 * * *");
    assert_eq!(j.password.expose(), "s3cret");
    assert_eq!(
        j.max_age,
        Duration::from_secs(86_400 * 3 / 2),
        "1.5 × a day"
    );
    assert_eq!(
        j.jitter,
        Duration::from_secs(900),
        "a tenth of a day, at most 15m"
    );
    assert_eq!(j.snapshot_tags(), ["etc", "vigie-job:nightly"]);
    let checks: Vec<(&str, Option<Duration>)> = c
        .checks
        .iter()
        .filter_map(|k| match &k.probe {
            Probe::Backup(p) => Some((k.name.as_str(), p.max_age)),
            _ => None,
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("backup-nightly", None),
            ("backup-nightly-age", Some(j.max_age)),
            ("backup-nightly-repository", None),
        ]
    );
    let shown = vigie_config::to_toml(c).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("[backup.password]\nenv = \"RESTIC_PW\"\n"),
        "{shown}"
    );
    let again = load_str(&shown, Path::new("shown.toml"), &env).unwrap();
    let job = |c: &vigie_config::Config| toml::to_string(&c.backups[0]).unwrap();
    assert_eq!(job(&again.config), job(c), "show-config reads back");
}

#[test]
fn a_cron_job_and_an_action_that_runs_it() {
    let src = format!(
        "{JOB}schedule = \"0 3 * * 0\"\njitter = \"0s\"\nbefore = [\"/bin/true\"]\n\
         [action.save]\nbackup = \"nightly\"\n\
         [[check]]\nname = \"disk\"\ndisk = {{ path = \"/\", max_used_percent = 90 }}\nactions = [\"save\"]\n"
    );
    let loaded = load_str(&src, Path::new("vigie.toml"), &env).unwrap();
    let j = &loaded.config.backups[0];
    assert_eq!(j.max_age, Duration::from_secs(7 * 86_400 * 3 / 2));
    assert_eq!(j.jitter, Duration::from_secs(0));
    let a = &loaded.config.actions["save"];
    assert_eq!(a.kind, ActionKind::Backup("nightly".into()));
    assert_eq!(a.kind.plugin(), Some(("backup", "nightly")));
}

#[test]
fn each_bad_value_is_refused_at_its_place() {
    let src = "[[backup]]\nname = \"bad job\"\nrepository = \"\"\npassword = { env = \"RESTIC_PW\" }\n\
               paths = []\nexclude = [\"*.tmp\", \"cache/[abc\"]\ntags = [\"a,b\", \"\"]\n\
               at = \"25:00\"\ntimezone = \"Mars/Olympus\"\nbefore = []\nmax_age = \"0s\"\n";
    let e = errors(src);
    for (needle, place) in [
        ("a backup name uses letters", "vigie.toml:2:8"),
        ("`repository` is empty", "vigie.toml:3:14"),
        ("`paths` is empty", "vigie.toml:5:9"),
        (
            "\"cache/[abc\" is not a valid glob: error parsing glob 'cache/[abc'",
            "vigie.toml:6:21",
        ),
        ("tag \"a,b\" is empty or holds a `,`", "vigie.toml:7:9"),
        ("tag \"\" is empty", "vigie.toml:7:16"),
        ("`25:00` is not a time of day", "vigie.toml:8:6"),
        ("unknown time zone `Mars/Olympus`", "vigie.toml:9:12"),
        ("`before` is empty", "vigie.toml:10:10"),
        ("`max_age` must be more than 0s", "vigie.toml:11:11"),
    ] {
        let at = e.find(needle).unwrap_or_else(|| panic!("{needle} in\n{e}"));
        let place_at = e[at..].find("-->").unwrap();
        assert!(
            e[at + place_at..].starts_with(&format!("--> {place}")),
            "{needle} at {place} in\n{e}"
        );
    }
}

#[test]
fn schedules_names_and_keys_are_checked() {
    let e = errors(JOB);
    assert!(e.contains("a backup needs `at` or `schedule`"), "{e}");
    let e = errors(&format!("{JOB}at = \"02:00\"\nschedule = \"0 2 * * *\"\n"));
    assert!(e.contains("set `at` or `schedule`, not both"), "{e}");
    let e = errors(&format!("{JOB}schedule = \"0 25 * * *\"\n"));
    assert!(e.contains("vigie.toml:6:12"), "{e}");
    let e = errors(&format!("{JOB}schedule = \"* * * * *\"\njitter = \"1m\"\n"));
    assert!(
        e.contains("is not shorter than the schedule's period"),
        "{e}"
    );
    let e = errors(&format!("{JOB}at = \"02:00\"\n{JOB}at = \"03:00\"\n"));
    assert!(e.contains("backup `nightly` is declared twice"), "{e}");
    let e = errors(&format!("{JOB}at = \"02:00\"\nkeep_forever = true\n"));
    assert!(
        e.contains("keep_forever") && e.contains("one_file_system"),
        "{e}"
    );
    let e = errors(&format!(
        "{JOB}at = \"02:00\"\n[action.save]\nbackup = \"nighty\"\n"
    ));
    assert!(
        e.contains("unknown backup job `nighty`") && e.contains("nightly"),
        "{e}"
    );
    let e = errors(&format!(
        "{JOB}at = \"02:00\"\n[[check]]\nname = \"b\"\nbackup = {{ job = \"other\" }}\n"
    ));
    assert!(e.contains("unknown backup job `other`"), "{e}");
    let e = errors(&format!(
        "{JOB}at = \"02:00\"\n[[check]]\nname = \"b\"\nbackup = {{ job = \"nightly\", max_age = \"0s\" }}\n"
    ));
    assert!(
        e.contains("check \"b\".backup.max_age: `max_age` must be more than 0s"),
        "{e}"
    );
}

#[test]
fn a_missing_password_variable_is_named_at_its_place() {
    let src = JOB.replace("RESTIC_PW", "NOT_SET") + "at = \"02:00\"\n";
    let e = errors(&src);
    assert!(
        e.contains("environment variable `NOT_SET` is not set") && e.contains("vigie.toml:4:12"),
        "{e}"
    );
}

#[test]
fn dumps_keep_remotes_and_drills_are_checked_at_their_place() {
    let src = "[[backup]]\nname = \"db\"\nrepository = \"s3:h.example/bkt\"\npassword = { env = \"RESTIC_PW\" }\n\
               dump = [{ name = \"a/b.sql\", run = [\"pg_dump\"] }, { name = \"x.sql\", run = [] }]\n\
               keep = { last = 0 }\nssh = [\"ssh\"]\nat = \"02:30\"\ndrill = \"fortnightly\"\ndrill_sample = \"150%\"\n";
    let e = errors(src);
    for (needle, place) in [
        ("an s3: repository needs its keys", "vigie.toml:3:14"),
        ("dump name \"a/b.sql\" holds a `/`", "vigie.toml:5:9"),
        ("dump `x.sql` has no command", "vigie.toml:5:50"),
        ("`keep` sets no rule", "vigie.toml:6:8"),
        ("`ssh` is for an sftp: repository", "vigie.toml:7:7"),
        (
            "\"fortnightly\" is neither daily, weekly, monthly nor a cron expression",
            "vigie.toml:9:9",
        ),
        (
            "\"150%\" is not a share of the files from 1% to 100%",
            "vigie.toml:10:16",
        ),
    ] {
        let at = e.find(needle).unwrap_or_else(|| panic!("{needle} in\n{e}"));
        let place_at = e[at..].find("-->").unwrap();
        assert!(
            e[at + place_at..].starts_with(&format!("--> {place}")),
            "{needle} at {place} in\n{e}"
        );
    }
}

#[test]
fn a_job_with_only_dumps_and_weekly_drills_gets_a_drill_check() {
    let src = "[[backup]]\nname = \"db\"\nrepository = \"/srv/restic\"\npassword = { env = \"RESTIC_PW\" }\n\
               dump = [{ name = \"db.sql\", run = [\"pg_dump\", \"-Fc\", \"db\"] }]\n\
               keep = { daily = 7, within = \"2d\" }\nat = \"02:30\"\ndrill = \"weekly\"\ndrill_sample = \"10%\"\n";
    let loaded = load_str(src, Path::new("vigie.toml"), &env).unwrap();
    let j = &loaded.config.backups[0];
    assert!(j.paths.is_empty());
    assert_eq!(j.dumps[0].run, ["pg_dump", "-Fc", "db"]);
    assert_eq!(
        j.dumps[0].timeout,
        Duration::from_secs(6 * 3600),
        "the default"
    );
    assert_eq!(j.keep.unwrap().daily, Some(7));
    assert_eq!(j.drill.as_ref().unwrap().to_string(), "30 5 * * 0");
    assert_eq!(j.drill_sample, Some(10));
    let drill = loaded
        .config
        .checks
        .iter()
        .find(|c| c.name == "backup-db-drill")
        .expect("a drill check");
    assert!(
        matches!(&drill.probe, Probe::Backup(p) if p.aspect() == vigie_config::BackupWatch::Drill && p.job == "db")
    );
}

#[test]
fn scheduled_integrity_checks_get_their_check_and_bad_ones_are_refused() {
    use vigie_config::BackupWatch as W;
    let src = format!("{JOB}at = \"02:30\"\ncheck = \"monthly\"\ncheck_read_data = \"1/12\"\n");
    let loaded = load_str(&src, Path::new("vigie.toml"), &env).unwrap();
    let j = &loaded.config.backups[0];
    assert_eq!(j.check.as_ref().unwrap().to_string(), "30 4 1 * *");
    assert_eq!(j.check_read_data, "1/12");
    let watched: Vec<(&str, vigie_config::BackupWatch)> = loaded
        .config
        .checks
        .iter()
        .filter_map(|k| match &k.probe {
            Probe::Backup(p) => Some((k.name.as_str(), p.aspect())),
            _ => None,
        })
        .collect();
    assert_eq!(
        watched,
        [
            ("backup-nightly", W::Run),
            ("backup-nightly-age", W::Age),
            ("backup-nightly-repository", W::Repository),
            ("backup-nightly-check", W::Check),
        ]
    );
    let shown = vigie_config::to_toml(&loaded.config).unwrap();
    let again = load_str(&shown, Path::new("shown.toml"), &env).unwrap();
    assert_eq!(again.config.backups[0].check_read_data, "1/12", "{shown}");
    // The default read-data share, unsaid, reads back.
    let src = format!("{JOB}at = \"02:30\"\ncheck = \"weekly\"\n");
    let loaded = load_str(&src, Path::new("vigie.toml"), &env).unwrap();
    assert_eq!(loaded.config.backups[0].check_read_data, "10%");
    let shown = vigie_config::to_toml(&loaded.config).unwrap();
    load_str(&shown, Path::new("shown.toml"), &env).unwrap();

    for (tail, needle) in [
        (
            "check = \"fortnightly\"\n",
            "backup \"nightly\".check: \"fortnightly\" is neither daily",
        ),
        (
            "check = \"weekly\"\ncheck_read_data = \"0%\"\n",
            "\"0%\" is not a share from more than 0% to 100%",
        ),
        (
            "check = \"weekly\"\ncheck_read_data = \"13/12\"\n",
            "\"13/12\" is not a group N/M with 1 ≤ N ≤ M",
        ),
        (
            "dump = [{ name = \"x.sql\", run = [\"true\"], timeout = \"0s\" }]\n",
            "dump `x.sql`'s `timeout` must be more than 0s",
        ),
        (
            "ca = \"no-such-ca.pem\"\n",
            "`ca` is for an s3: or rest: repository reached over HTTPS",
        ),
        ("ca = \"no-such-ca.pem\"\n", "no-such-ca.pem does not exist"),
        (
            "check_read_data = \"5%\"\n",
            "`check_read_data` without `check`: no integrity check is scheduled",
        ),
        (
            "[[check]]\nname = \"c\"\nbackup = { job = \"nightly\", watch = \"check\" }\n",
            "backup nightly schedules no integrity checks: this check would never change",
        ),
        (
            "[[check]]\nname = \"c\"\nbackup = { job = \"nightly\", watch = \"repository\", max_age = \"1h\" }\n",
            "`max_age` is for watch = \"age\", not \"repository\"",
        ),
    ] {
        let e = errors(&format!("{JOB}at = \"02:30\"\n{tail}"));
        assert!(e.contains(needle), "{needle} in\n{e}");
    }
}

#[test]
fn a_declared_age_check_takes_the_jobs_max_age_and_replaces_the_generated_one() {
    let src = format!(
        "{JOB}at = \"02:30\"\nmax_age = \"2d\"\n[[check]]\nname = \"mine\"\nbackup = {{ job = \"nightly\", watch = \"age\" }}\n"
    );
    let loaded = load_str(&src, Path::new("vigie.toml"), &env).unwrap();
    let ages: Vec<(&str, Option<Duration>)> = loaded
        .config
        .checks
        .iter()
        .filter_map(|k| match &k.probe {
            Probe::Backup(p) if p.aspect() == vigie_config::BackupWatch::Age => {
                Some((k.name.as_str(), p.max_age))
            }
            _ => None,
        })
        .collect();
    assert_eq!(ages, [("mine", Some(Duration::from_secs(2 * 86_400)))]);
}

#[test]
fn a_rest_repository_takes_its_password_as_a_secret_never_in_its_url() {
    let src = "[[backup]]\nname = \"off\"\nrepository = \"rest:https://nas.example:8000/blog/\"\n\
               password = { env = \"RESTIC_PW\" }\npaths = [\"/etc\"]\nat = \"02:30\"\n\
               rest = { user = \"blog\", password = { env = \"RESTIC_PW\" } }\n";
    let loaded = load_str(src, Path::new("vigie.toml"), &env).unwrap();
    let rest = loaded.config.backups[0].rest.as_ref().unwrap();
    assert_eq!(
        (rest.user.as_str(), rest.password.expose()),
        ("blog", "s3cret")
    );
    let shown = vigie_config::to_toml(&loaded.config).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!format!("{:?}", loaded.config).contains("s3cret"));

    let inline = "[[backup]]\nname = \"off\"\nrepository = \"rest:https://blog:hunter2@nas.example/\"\n\
                  password = { env = \"RESTIC_PW\" }\npaths = [\"/etc\"]\nat = \"02:30\"\n";
    let e = errors(inline);
    assert!(
        e.contains("a password in the repository's URL would sit in the file in plain text")
            && e.contains("vigie.toml:3:14")
            && e.contains("rest = { user"),
        "{e}"
    );
    let misplaced = format!(
        "{JOB}at = \"02:30\"\nrest = {{ user = \"u\", password = {{ env = \"RESTIC_PW\" }} }}\n"
    );
    let e = errors(&misplaced);
    assert!(
        e.contains("`rest` is for a rest: repository") && e.contains("vigie.toml:7:8"),
        "{e}"
    );
    let bad = inline.replace("https://blog:hunter2@nas.example/", "nas.example:8000/");
    let e = errors(&bad);
    assert!(
        e.contains("a rest: repository is an http:// or https:// URL"),
        "{e}"
    );
    let unset = src.replace(
        "password = { env = \"RESTIC_PW\" } }",
        "password = { env = \"NOT_SET\" } }",
    );
    let e = errors(&unset);
    assert!(
        e.contains("rest.password") && e.contains("`NOT_SET` is not set"),
        "{e}"
    );
}
