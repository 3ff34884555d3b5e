//! `[[backup]]` jobs end to end: `vigie backup init|run|snapshots|list`
//! against a real restic, the daemon's schedule, failures that open an
//! incident and leave no snapshot, the per-job lock and the `before`
//! hook.

use std::time::Duration;

use serde_json::Value;
use vigie_testkit::rest::{RestOptions, RestServer};
use vigie_testkit::{Env, Need, require};

use crate::util::{SERVER, env, exits, wait_or_explain, wait_state};

pub(crate) const PASSWORD: &str = "correct horse";

/// An env with `data/` to back up, the password in `pw`, and the config
/// of job `nightly` into `repo/` with the `extra` lines.
pub(crate) fn job(extra: &str) -> Env {
    let e = env();
    std::fs::create_dir_all(e.path().join("data/cache")).unwrap();
    e.write("data/a.txt", "hello\n");
    e.write("data/cache/skip.tmp", "not kept\n");
    e.write("pw", &format!("{PASSWORD}\n"));
    e.config(&format!(
        "{SERVER}[[backup]]\nname = \"nightly\"\nrepository = \"repo\"\npassword = {{ file = \"pw\" }}\n\
         paths = [\"data\"]\nexclude = [\"*.tmp\"]\ntags = [\"etc\"]\n{extra}"
    ));
    e
}

/// Waits (10 s at most) until `check` has an incident.
fn wait_incident(e: &Env, d: &vigie_testkit::daemon::Daemon, check: &str) {
    wait_or_explain(
        Duration::from_secs(10),
        || {
            let r = e.run(&["incidents", "--json"]);
            serde_json::from_str::<Value>(&r.stdout).is_ok_and(|v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|i| i["check"] == check))
            })
        },
        || e.run(&["incidents", "--json"]).stdout + &d.log(),
    );
}

/// `restic snapshots --json` of the env's repository.
fn restic_snapshots(e: &Env) -> Vec<Value> {
    let out = std::process::Command::new("restic")
        .args(["-r", "repo", "snapshots", "--json", "--no-lock"])
        .current_dir(e.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn tags(snapshot: &Value) -> Vec<&str> {
    snapshot["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect()
}

#[test]
fn init_and_run_make_a_snapshot_restic_lists_with_its_tags() {
    require!(Need::Restic);
    let e = job("at = \"02:30\"\n");
    exits(
        &e,
        &["backup", "init", "nightly"],
        0,
        &["created repository repo"],
    );
    exits(&e, &["backup", "init", "nightly"], 3, &["already exists"]);
    let run = exits(&e, &["backup", "run", "nightly"], 0, &["snapshot", "saved"]);
    let id = run.stdout.trim();
    assert_eq!(id.len(), 64, "{run:?}");
    let snaps = restic_snapshots(&e);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["id"], id);
    assert_eq!(tags(&snaps[0]), ["etc", "vigie-job:nightly"]);
    // The exclude left the .tmp file out; restic lists what it holds.
    let ls = std::process::Command::new("restic")
        .args(["-r", "repo", "ls", "latest", "--no-lock"])
        .current_dir(e.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("a.txt") && !ls.contains("skip.tmp"), "{ls}");
    let ours = exits(&e, &["backup", "snapshots", "nightly", "--json"], 0, &[]);
    let ours: Value = serde_json::from_str(&ours.stdout).unwrap();
    assert_eq!(ours[0]["id"], id, "{ours}");
    let list = exits(&e, &["backup", "list"], 0, &[]);
    assert!(
        list.stdout.contains("nightly")
            && list.stdout.contains("ok ")
            && list.stdout.contains(&id[..8]),
        "{list:?}"
    );
    exits(
        &e,
        &["backup", "run", "weekly"],
        2,
        &["no backup job named `weekly`", "nightly"],
    );
}

#[test]
fn a_scheduled_run_happens_and_shows_in_status_and_metrics() {
    require!(Need::Restic);
    // Every minute, no jitter: the first run within 60 s.
    let e = job("schedule = \"* * * * *\"\njitter = \"0s\"\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    let d = e.daemon();
    d.wait_log("backup done", Duration::from_secs(75));
    assert_eq!(restic_snapshots(&e).len(), 1);
    wait_or_explain(
        Duration::from_secs(5),
        || {
            let (_, m) = d.http("GET", "/metrics", &[]);
            m.contains("vigie_backup_last_result{job=\"nightly\"} 1")
                && m.contains("vigie_backup_last_success_timestamp_seconds{job=\"nightly\"}")
                && m.contains("vigie_backup_last_bytes_added{job=\"nightly\"}")
                && m.contains("vigie_backup_last_duration_seconds{job=\"nightly\"}")
        },
        || d.http("GET", "/metrics", &[]).1,
    );
    wait_state(&d, "backup-nightly-age", "ok", Duration::from_secs(15));
    let status = e.run(&["status", "--json"]);
    let v: Value = serde_json::from_str(&status.stdout).unwrap();
    let b = &v["backups"][0];
    assert_eq!(b["name"], "nightly", "{v}");
    assert_eq!(b["last_run"]["ok"], true, "{v}");
    assert!(b["next_run"].is_number(), "{v}");
}

#[test]
fn a_backup_time_missed_while_the_daemon_was_down_is_made_up_once_at_start() {
    require!(Need::Restic);
    // `nightly` last ran three days ago: its 02:30 of the days since
    // were missed. `fresh` never ran: it waits for its first time.
    let e = job(
        "at = \"02:30\"\n\n[[backup]]\nname = \"fresh\"\nrepository = \"repo2\"\n\
         password = { file = \"pw\" }\npaths = [\"data\"]\nat = \"02:30\"\n",
    );
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    exits(&e, &["backup", "init", "fresh"], 0, &[]);
    ran_three_days_ago(&e, "nightly");
    let d = e.daemon();
    d.wait_log("a backup time passed without one", Duration::from_secs(10));
    d.wait_log("backup done", Duration::from_mins(1));
    assert_eq!(restic_snapshots(&e).len(), 1);
    // Made up once: the next time is the schedule's again.
    std::thread::sleep(Duration::from_secs(3));
    let log = d.log();
    assert_eq!(log.matches("backup done").count(), 1, "{log}");
    assert_eq!(log.matches("time passed without one").count(), 1, "{log}");
    let fresh = e.run(&["backup", "snapshots", "fresh", "--json"]);
    assert_eq!(fresh.stdout.trim(), "[]", "{fresh:?}");
}

/// Records a good run of `job` that started three days ago.
fn ran_three_days_ago(e: &Env, job: &str) {
    let at = vigie_core::Timestamp(vigie_core::Timestamp::now().millis() - 3 * 24 * 3_600_000);
    vigie_store::Store::open(&e.state_dir())
        .unwrap()
        .backup_record(&vigie_store::BackupRun {
            job: job.into(),
            started: at,
            ended: at,
            ok: true,
            snapshot: Some("0".repeat(64)),
            bytes_added: Some(1),
            error: None,
        })
        .unwrap();
}

#[test]
fn a_made_up_run_the_daemon_was_killed_in_is_not_started_again_at_each_restart() {
    require!(Need::Restic);
    let e = job("at = \"02:30\"\nbefore = [\"sleep\", \"30\"]\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    ran_three_days_ago(&e, "nightly");
    let d = e.daemon();
    d.wait_log("backup starting", Duration::from_secs(30));
    d.signal(rustix::process::Signal::KILL);
    drop(d);
    // Its time fired (the stamp says so): the next start waits for the
    // schedule's next time instead of starting the run over.
    let again = e.daemon();
    std::thread::sleep(Duration::from_secs(18));
    let log = again.log();
    assert!(!log.contains("time passed without one"), "{log}");
    assert!(!log.contains("backup starting"), "{log}");
}

#[test]
fn a_wrong_password_is_a_clear_error_an_incident_and_no_snapshot() {
    require!(Need::Restic);
    let e = job("at = \"02:30\"\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    e.write("pw", "not the password\n");
    let d = e.daemon();
    wait_state(&d, "backup-nightly", "ok", Duration::from_secs(15));
    // A run by hand while the daemon runs: its checks see it.
    exits(
        &e,
        &["backup", "run", "nightly"],
        3,
        &["the password does not open repository repo: check `password` of backup `nightly`"],
    );
    let c = wait_state(&d, "backup-nightly", "failing", Duration::from_secs(30));
    assert!(
        c["last_message"]
            .as_str()
            .unwrap()
            .contains("password does not open"),
        "{c}"
    );
    wait_incident(&e, &d, "backup-nightly");
    assert!(restic_snapshots(&e).is_empty());
}

#[test]
fn two_runs_of_a_job_never_overlap_and_a_failing_before_aborts() {
    require!(Need::Restic);
    let e = job("at = \"02:30\"\nbefore = [\"sleep\", \"3\"]\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    let first = e
        .cmd(&["backup", "run", "nightly"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = e.state_dir().join("backup-nightly.lock");
    wait_or_explain(
        Duration::from_secs(5),
        || std::fs::read_to_string(&lock).is_ok_and(|p| p.trim() == first.id().to_string()),
        || format!("{lock:?} never held by {}", first.id()),
    );
    let second = exits(
        &e,
        &["backup", "run", "nightly"],
        3,
        &[&format!(
            "backup nightly is already running (pid {}, since ",
            first.id()
        )],
    );
    assert!(second.stdout.is_empty(), "{second:?}");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{first:?}");
    assert_eq!(restic_snapshots(&e).len(), 1, "the refused run made none");

    let e = job(
        "at = \"02:30\"\nbefore = [\"sh\", \"-c\", \"echo database locked; exit 4\"]\n\
         on_failure = [\"sh\", \"-c\", \"echo \\\"$VIGIE_BACKUP_ERROR\\\" > failure.txt\"]\n",
    );
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    exits(
        &e,
        &["backup", "run", "nightly"],
        3,
        &["backup nightly: `before` (sh) exited with 4: database locked"],
    );
    assert!(restic_snapshots(&e).is_empty());
    let said = std::fs::read_to_string(e.path().join("failure.txt")).unwrap();
    assert!(said.contains("`before` (sh) exited with 4"), "{said}");
    let list = exits(&e, &["backup", "list", "--json"], 0, &[]);
    let v: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v[0]["last_run"]["ok"], false, "{v}");
    assert!(v[0]["last_good"].is_null(), "{v}");
}

#[test]
fn an_incident_step_runs_a_backup() {
    require!(Need::Restic);
    // `marker` missing: the check fails at once, its incident's step
    // `save` backs the job up.
    let e = job("at = \"02:30\"\n\n[action.save]\nbackup = \"nightly\"\n\n\
         [[check]]\nname = \"marker\"\ncommand = { argv = [\"test\", \"-e\", \"marker\"] }\n\
         every = \"1s\"\nfail_after = 1\nactions = [\"save\"]\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    let d = e.daemon();
    d.wait_log("backup done", Duration::from_secs(30));
    let snaps = restic_snapshots(&e);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(tags(&snaps[0]), ["etc", "vigie-job:nightly"]);
    wait_or_explain(
        Duration::from_secs(10),
        || e.run(&["incidents", "--json"]).stdout.contains("snapshot"),
        || e.run(&["incidents", "--json"]).stdout,
    );
}

#[test]
fn hooks_run_without_a_shell_and_without_the_password_variable() {
    require!(Need::Restic);
    let e = job(
        "at = \"02:30\"\nbefore = [\"sh\", \"-c\", \"test -z \\\"$VIGIE_TEST_RESTIC_PW\\\" || exit 9\"]\n",
    );
    let text = std::fs::read_to_string(e.config_path()).unwrap();
    e.config(&text.replace("{ file = \"pw\" }", "{ env = \"VIGIE_TEST_RESTIC_PW\" }"));
    let run = |args: &[&str]| e.run_cmd(e.cmd(args).env("VIGIE_TEST_RESTIC_PW", PASSWORD));
    let init = run(&["backup", "init", "nightly"]);
    assert_eq!(init.code, 0, "{init:?}");
    let r = run(&["backup", "run", "nightly"]);
    assert_eq!(r.code, 0, "the hook saw the password's variable: {r:?}");
    assert_eq!(restic_snapshots(&e).len(), 1);
    let shown = run(&["show-config"]);
    assert!(
        !shown.stdout.contains(PASSWORD) && shown.stdout.contains("env = \"VIGIE_TEST_RESTIC_PW\""),
        "{shown:?}"
    );
}

/// `restic ARGS` on the env's repository: its stdout.
fn restic(e: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new("restic")
        .args(["-r", "repo", "--no-lock"])
        .args(args)
        .current_dir(e.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "restic {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_job_with_a_dump_and_keep_is_restored_checked_and_drilled_from_the_cli() {
    require!(Need::Restic);
    let e = job("at = \"02:30\"\nkeep = { last = 2 }\n\
         dump = [{ name = \"db.sql\", run = [\"sh\", \"-c\", \"echo 'INSERT 1;'; echo 'INSERT 2;'\"] }]\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    for i in 0..3 {
        e.write("data/a.txt", &format!("version {i}\n"));
        exits(&e, &["backup", "run", "nightly"], 0, &["saved"]);
    }
    // keep = { last = 2 } was applied after each run: two are left.
    assert_eq!(restic_snapshots(&e).len(), 2);
    restic(&e, &["check", "--read-data"]);
    // The dump is a file of the snapshot, whole, for restic too.
    assert_eq!(
        restic(&e, &["dump", "latest", "/db.sql"]),
        "INSERT 1;\nINSERT 2;\n"
    );
    let dry = exits(&e, &["backup", "forget", "nightly", "--dry-run"], 0, &[]);
    assert!(dry.stdout.contains("last snapshot"), "{dry:?}");
    assert!(
        dry.stdout.contains("0 snapshots would be forgotten"),
        "{dry:?}"
    );

    // Restore the latest into a new directory.
    let to = e.path().join("restored");
    exits(
        &e,
        &["backup", "restore", "nightly", "--to", to.to_str().unwrap()],
        0,
        &["restored snapshot"],
    );
    let data = e.path().join("data");
    let restored = to.join(data.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(restored.join("a.txt")).unwrap(),
        "version 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(to.join("db.sql")).unwrap(),
        "INSERT 1;\nINSERT 2;\n"
    );
    // A second restore there is refused: the directory is not empty.
    exits(
        &e,
        &["backup", "restore", "nightly", "--to", to.to_str().unwrap()],
        3,
        &["not empty"],
    );

    // Looking inside without restoring: ls and dump.
    let ls = exits(&e, &["backup", "ls", "nightly"], 0, &[]);
    assert!(ls.stdout.contains("f 0600           20 /db.sql"), "{ls:?}");
    let a_txt = format!("{}/a.txt", data.display());
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with("f 0644           10 ") && l.ends_with("/data/a.txt")),
        "{ls:?}"
    );
    assert!(!ls.stdout.contains("skip.tmp"), "excluded: {ls:?}");
    let one = exits(&e, &["backup", "ls", "nightly", "--path", &a_txt], 0, &[]);
    assert_eq!(one.stdout.lines().count(), 1, "{one:?}");
    let dump = exits(
        &e,
        &["backup", "dump", "nightly", "--path", "/db.sql"],
        0,
        &[],
    );
    assert_eq!(dump.stdout, "INSERT 1;\nINSERT 2;\n");
    exits(
        &e,
        &[
            "backup",
            "dump",
            "nightly",
            "--path",
            data.to_str().unwrap(),
        ],
        3,
        &["holds no"],
    );

    let check = exits(&e, &["backup", "check", "nightly", "--read-data"], 0, &[]);
    assert!(
        check.stdout.contains("is sound (data read back)"),
        "{check:?}"
    );
    let drill = exits(&e, &["backup", "drill", "nightly"], 0, &[]);
    assert!(drill.stdout.contains("passed"), "{drill:?}");
    assert!(
        std::fs::read_dir(e.state_dir().join("drills/nightly"))
            .unwrap()
            .next()
            .is_none(),
        "the drill's scratch copy is removed"
    );

    // Damaged packs (a byte of each): check and drill say so, exit 1.
    damage_packs(&e);
    let check = e.run(&["backup", "check", "nightly", "--read-data"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stdout.contains("error:"), "{check:?}");
    let drill = e.run(&["backup", "drill", "nightly"]);
    assert_eq!(drill.code, 1, "{drill:?}");
    assert!(drill.stdout.contains("FAILED"), "{drill:?}");
}

/// Flips every 16th byte of each pack of the env's repository: every
/// blob in it is damaged (a byte in the middle alone may fall in a
/// pack's header, which a restore never reads).
/// Sleep until at least `margin` is left before the next wall-clock
/// minute (when a `* * * * *` schedule fires).
fn clear_of_the_minute(margin: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let left = Duration::from_millis(60_000 - (now.as_millis() % 60_000) as u64);
    if left < margin {
        std::thread::sleep(left + Duration::from_secs(1));
    }
}

fn damage_packs(e: &Env) {
    for pack in walk_files(&e.path().join("repo/data")) {
        let mut bytes = std::fs::read(&pack).unwrap();
        for b in bytes.iter_mut().step_by(16) {
            *b ^= 0xff;
        }
        let mut perms = std::fs::metadata(&pack).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&pack, perms).unwrap();
        std::fs::write(&pack, bytes).unwrap();
    }
}

#[test]
fn a_scheduled_drill_of_a_damaged_repository_opens_an_incident() {
    require!(Need::Restic);
    // Drills every minute, no jitter: the first within 60 s.
    let e = job("at = \"02:30\"\njitter = \"0s\"\ndrill = \"* * * * *\"\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    exits(&e, &["backup", "run", "nightly"], 0, &["saved"]);
    // By hand first: it passes, and is recorded for the check.
    let ok = exits(&e, &["backup", "drill", "nightly"], 0, &[]);
    assert!(ok.stdout.contains("passed"), "{ok:?}");
    damage_packs(&e);
    // The scheduled drill comes at the next minute: start well before it.
    clear_of_the_minute(Duration::from_secs(20));
    let d = e.daemon();
    let c = wait_state(&d, "backup-nightly-drill", "ok", Duration::from_secs(15));
    assert!(
        c["last_message"].as_str().unwrap().contains("passed"),
        "the check reads the drill made by hand: {c}"
    );
    d.wait_log("restore drill failed", Duration::from_secs(75));
    let c = wait_state(
        &d,
        "backup-nightly-drill",
        "failing",
        Duration::from_secs(30),
    );
    assert!(
        c["last_message"]
            .as_str()
            .unwrap()
            .contains("restore drill of backup nightly failed"),
        "{c}"
    );
    wait_incident(&e, &d, "backup-nightly-drill");
    let (_, m) = d.http("GET", "/metrics", &[]);
    assert!(
        m.contains("vigie_backup_last_drill_result{job=\"nightly\"} 0"),
        "{m}"
    );
    assert!(
        std::fs::read_dir(e.state_dir().join("drills/nightly"))
            .unwrap()
            .next()
            .is_none(),
        "the failed drill's scratch copy is removed"
    );
}

#[test]
fn a_scheduled_integrity_check_of_a_damaged_repository_opens_an_incident() {
    require!(Need::Restic);
    // Checks every minute reading all the data, no jitter: the first
    // within 60 s.
    let e =
        job("at = \"02:30\"\njitter = \"0s\"\ncheck = \"* * * * *\"\ncheck_read_data = \"all\"\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    exits(&e, &["backup", "run", "nightly"], 0, &["saved"]);
    // By hand first: it passes, and is recorded for the check.
    let sound = exits(&e, &["backup", "check", "nightly"], 0, &[]);
    assert!(sound.stdout.contains("is sound"), "{sound:?}");
    damage_packs(&e);
    // The scheduled check comes at the next minute: start the daemon at
    // least 20 s before it, so that its checks first read the one made
    // by hand (a start just before the minute would see the scheduled
    // check's failure first).
    clear_of_the_minute(Duration::from_secs(20));
    let d = e.daemon();
    let c = wait_state(&d, "backup-nightly-check", "ok", Duration::from_secs(15));
    assert!(
        c["last_message"]
            .as_str()
            .unwrap()
            .contains("integrity check of backup nightly's repository passed"),
        "the check reads the one made by hand: {c}"
    );
    // The repository answers: its own check, asked at the start.
    let reach = wait_state(
        &d,
        "backup-nightly-repository",
        "ok",
        Duration::from_secs(15),
    );
    assert!(
        reach["last_message"].as_str().unwrap().contains("answered"),
        "{reach}"
    );
    d.wait_log("integrity check failed", Duration::from_secs(75));
    let c = wait_state(
        &d,
        "backup-nightly-check",
        "failing",
        Duration::from_secs(30),
    );
    let message = c["last_message"].as_str().unwrap();
    assert!(
        message.contains("integrity check of backup nightly's repository failed")
            && message.to_lowercase().contains("pack"),
        "the damage is named: {c}"
    );
    wait_incident(&e, &d, "backup-nightly-check");
    let (_, m) = d.http("GET", "/metrics", &[]);
    assert!(
        m.contains("vigie_backup_last_check_result{job=\"nightly\"} 0")
            && m.contains("vigie_backup_repository_up{job=\"nightly\"} 1"),
        "{m}"
    );
    // By hand, the same damage, exit 1; recorded as the daemon's are.
    let check = e.run(&["backup", "check", "nightly", "--read-data"]);
    assert_eq!(check.code, 1, "{check:?}");
}

#[test]
fn a_repository_that_does_not_answer_opens_an_incident_at_once() {
    require!(Need::Restic);
    // Never initialized: the daemon's first reach finds no repository.
    let e = job("at = \"02:30\"\n");
    let d = e.daemon();
    let r = wait_state(
        &d,
        "backup-nightly-repository",
        "failing",
        Duration::from_secs(15),
    );
    assert!(
        r["last_message"]
            .as_str()
            .unwrap()
            .contains("no repository"),
        "{r}"
    );
    wait_incident(&e, &d, "backup-nightly-repository");
    let (_, m) = d.http("GET", "/metrics", &[]);
    assert!(
        m.contains("vigie_backup_repository_up{job=\"nightly\"} 0"),
        "{m}"
    );
}

#[test]
fn a_run_on_a_terminal_shows_its_bytes_and_percentage() {
    require!(Need::Restic);
    require!(Need::Script);
    let e = job("at = \"02:30\"\n");
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    // Incompressible bytes, enough for the bar to be drawn (10 Hz).
    let mut noise = vec![0u8; 48 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in noise.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(e.path().join("data/noise"), &noise).unwrap();
    // On a terminal (a pseudo-terminal from `script`).
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} backup run nightly", crate::util::bin()),
            "/dev/null",
        ])
        .current_dir(e.path())
        .env("VIGIE_CONFIG", e.config_path())
        .env("VIGIE_STATE_DIR", e.state_dir())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("backup nightly: opening the repository"),
        "{tty}"
    );
    assert!(
        tty.contains("%  ") && tty.contains("MiB/48.00 MiB  "),
        "the bar knows the total and shows the share done: {tty}"
    );
    assert!(
        tty.contains("backup nightly: 48.00 MiB/48.00 MiB read (100%)"),
        "the count stays on the terminal once the bytes are read: {tty}"
    );
    assert!(tty.contains("snapshot") && tty.contains("saved"), "{tty}");
    // Off a terminal: lines, no bar.
    let r = exits(
        &e,
        &["backup", "run", "nightly"],
        0,
        &["backup nightly: backing up"],
    );
    assert!(!r.stderr.contains('%'), "{r:?}");
}

fn walk_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                todo.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn an_sqlite_database_in_use_is_dumped_as_a_consistent_copy() {
    require!(Need::Restic);
    // vigie's own store is such a database: back it up while a daemon
    // writes it (`vigie status` needs it open too).
    let e = job("at = \"02:30\"\ndump = [{ name = \"vigie.db\", sqlite = \"state/vigie.db\" }]\n");
    let d = e.daemon();
    wait_state(&d, "backup-nightly", "ok", Duration::from_secs(15));
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    exits(&e, &["backup", "run", "nightly"], 0, &["saved"]);
    let copy = e.path().join("restored.db");
    let out = std::process::Command::new("restic")
        .args(["-r", "repo", "--no-lock", "dump", "latest", "/vigie.db"])
        .current_dir(e.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&copy, &out.stdout).unwrap();
    // A whole database: SQLite opens it and finds it sound, with the
    // daemon's results in it.
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute('PRAGMA integrity_check').fetchone()[0], \
             c.execute('SELECT count(*) FROM results').fetchone()[0])",
            copy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.starts_with("ok "), "{check:?}");
    let results: u64 = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(results > 0, "{said}");
}

#[test]
fn a_rest_repository_is_reached_with_its_login_from_a_secret() {
    require!(Need::Restic);
    let server = RestServer::start(RestOptions {
        auth: Some(("alice".to_owned(), "rest-s3cret".to_owned())),
        ..RestOptions::default()
    });
    let e = job(&format!(
        "repository = \"rest:{}\"\nrest = {{ user = \"alice\", password = {{ file = \"rest.pw\" }} }}\nat = \"02:30\"\n",
        server.url()
    ));
    // `job` names a directory: this config names the server instead.
    let text = std::fs::read_to_string(e.config_path()).unwrap();
    e.config(&text.replace("repository = \"repo\"\n", ""));
    e.write("rest.pw", "not-the-password\n");
    let refused = exits(&e, &["backup", "init", "nightly"], 3, &["HTTP 401"]);
    assert!(
        !format!("{refused:?}").contains("not-the-password"),
        "{refused:?}"
    );

    e.write("rest.pw", "rest-s3cret\n");
    exits(
        &e,
        &["backup", "init", "nightly"],
        0,
        &["created repository"],
    );
    let run = exits(&e, &["backup", "run", "nightly"], 0, &["snapshot", "saved"]);
    let id = run.stdout.trim();
    let out = std::process::Command::new("restic")
        .args([
            "-r",
            &format!("rest:{}", server.url_with("alice", "rest-s3cret")),
        ])
        .args(["snapshots", "--json", "--no-lock", "--no-cache"])
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps[0]["id"], id, "{snaps}");
    let shown = exits(&e, &["show-config"], 0, &[]);
    assert!(!shown.stdout.contains("rest-s3cret"), "{shown:?}");
}
