//! The store keeps what it committed, across reopen and across versions.

use std::sync::Arc;

use vigie_core::{CheckResult, CheckState, Outcome, Thresholds, Timestamp};
use vigie_store::{HeartbeatPing, SCHEMA_VERSION, Store, StoreError, StoredState};

fn result(name: &str, at: i64, ok: bool) -> CheckResult {
    CheckResult {
        check: Arc::from(name),
        started_at: Timestamp(at),
        lag: std::time::Duration::from_millis(3),
        duration: std::time::Duration::from_millis(12),
        outcome: if ok {
            Outcome::ok("fine")
        } else {
            Outcome::fail("down")
        }
        .with_metric("latency_seconds", 0.012),
    }
}

/// What the daemon's writer remembers of a check after `results`.
fn state_after(results: &[CheckResult], t: Thresholds) -> StoredState {
    let mut s = StoredState::default();
    for r in results {
        s.tracker.observe(r.outcome.ok, t, r.started_at);
        s.last_run = Some(r.started_at);
        s.last_ok = Some(r.outcome.ok);
        s.last_message.clone_from(&r.outcome.message);
        s.last_duration_ms = r.duration.as_secs_f64() * 1000.0;
        s.runs_total += 1;
        s.failures_total += u64::from(!r.outcome.ok);
    }
    s
}

#[test]
fn results_and_states_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t = Thresholds {
        fail_after: 2,
        recover_after: 1,
    };
    let runs: Vec<CheckResult> = [true, false, false]
        .into_iter()
        .enumerate()
        .map(|(i, ok)| result("web", 1000 + i as i64, ok))
        .collect();
    let web = state_after(&runs, t);
    {
        let mut store = Store::open(dir.path()).unwrap();
        // The first two runs' rows, and the state: then the third's, and
        // the state again (replaced, not added to).
        store.record(&runs[..2], [("web", &web)]).unwrap();
        store.record(&runs[2..], [("web", &web)]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let states = store.states().unwrap();
    assert_eq!(states["web"], web);
    let web = &states["web"];
    assert_eq!(web.tracker.state, CheckState::Failing);
    assert_eq!(web.tracker.consecutive_fail, 2);
    assert_eq!(web.runs_total, 3);
    assert_eq!(web.failures_total, 2);
    assert_eq!(web.last_message, "down");
    let recent = store.recent_results("web", 10).unwrap();
    assert_eq!(recent.len(), 3);
    assert!(!recent[0].ok);
    assert_eq!(
        recent[0].metrics,
        vec![("latency_seconds".to_owned(), 0.012)]
    );
}

#[test]
fn prune_keeps_recent_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let batch: Vec<_> = (0..12_000).map(|i| result("a", i, true)).collect();
    store.record(&batch, []).unwrap();
    assert_eq!(store.prune(Timestamp(10_000)).unwrap(), 10_000);
    assert_eq!(store.count_results().unwrap(), 2_000);
}

#[test]
fn heartbeats_and_tokens_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let hb = store.heartbeat("job", Timestamp(5)).unwrap();
        assert_eq!(
            (hb.token_sha256, hb.last_ping, hb.first_seen),
            (None, None, Timestamp(5))
        );
        store
            .set_heartbeat_token("job", "tok", Timestamp(6))
            .unwrap();
        store
            .heartbeat_ping("job", Timestamp(4), HeartbeatPing::Start, None, None)
            .unwrap();
        store
            .heartbeat_ping("job", Timestamp(7), HeartbeatPing::Success, Some(3), None)
            .unwrap();
        let exited = HeartbeatPing::Failure {
            exit_status: Some(3),
        };
        store
            .heartbeat_ping("job", Timestamp(9), exited, None, Some("disk full\n"))
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let hb = store.heartbeat("job", Timestamp(100)).unwrap();
    assert_eq!(
        hb.token_sha256.as_deref(),
        Some(vigie_store::token_sha256("tok").as_str())
    );
    assert_eq!(
        vigie_store::generated_token(dir.path(), "job").unwrap(),
        Some("tok".to_owned())
    );
    assert_eq!(hb.last_ping, Some(Timestamp(7)));
    assert_eq!(hb.last_fail, Some(Timestamp(9)));
    assert_eq!(hb.last_fail_status, Some(3));
    assert_eq!(
        (hb.last_start, hb.last_duration_ms),
        (Some(Timestamp(4)), None)
    );
    assert_eq!(hb.last_body.as_deref(), Some("disk full\n"));
    assert_eq!(hb.first_seen, Timestamp(5));
    // A plain failure report forgets the status of the one before.
    let plain = HeartbeatPing::Failure { exit_status: None };
    store
        .heartbeat_ping("job", Timestamp(11), plain, Some(2), None)
        .unwrap();
    let hb = store.heartbeat("job", Timestamp(100)).unwrap();
    assert_eq!(
        (hb.last_fail, hb.last_fail_status),
        (Some(Timestamp(11)), None)
    );
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(vigie_store::DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
        .unwrap();
    drop(conn);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }));
    assert!(err.to_string().contains("upgrade vigie"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(vigie_store::DB_FILE),
        b"this is not sqlite, just some text padding it out to a page..",
    )
    .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("vigie.db") || err.to_string().contains("not a database"),
        "{err}"
    );
}

#[test]
fn tokens_of_an_older_store_move_to_their_file_and_are_kept_hashed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    // The store as version 5 left it: generated tokens in plain, without
    // the columns later versions add.
    let conn = rusqlite::Connection::open(dir.path().join(vigie_store::DB_FILE)).unwrap();
    conn.execute_batch(
        "ALTER TABLE heartbeats DROP COLUMN last_fail_status;
         ALTER TABLE heartbeats DROP COLUMN last_start_ms;
         ALTER TABLE heartbeats DROP COLUMN last_duration_ms;
         ALTER TABLE heartbeats DROP COLUMN last_body;
         DROP TABLE backup_runs;
         DROP TABLE backup_drills;
         DROP TABLE backup_checks;
         DROP TABLE series_chunks;
         DROP TABLE series;
         DROP TABLE incident_notes;
         DROP TABLE maintenance_now;
         DROP TABLE converge_last;
         ALTER TABLE heartbeats RENAME COLUMN token_sha256 TO token;
         INSERT INTO heartbeats (check_name, token, first_seen_ms) VALUES ('job', 'old-token', 1);
         INSERT INTO heartbeats (check_name, first_seen_ms) VALUES ('quiet', 1);
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(conn);
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let hb = store.heartbeat("job", Timestamp(2)).unwrap();
    assert_eq!(
        hb.token_sha256.as_deref(),
        Some(vigie_store::token_sha256("old-token").as_str())
    );
    assert_eq!(
        store.heartbeat("quiet", Timestamp(2)).unwrap().token_sha256,
        None
    );
    // No plain token is left in the database file.
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join(vigie_store::DB_FILE)).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM heartbeats WHERE token_sha256 = 'old-token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        vigie_store::generated_token(dir.path(), "job").unwrap(),
        Some("old-token".to_owned())
    );
    let file = dir.path().join(vigie_store::TOKENS_FILE);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn public_notes_go_with_their_incident_and_into_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let sev = vigie_core::Severity::High;
    let db = store
        .open_incident("db", sev, "open", None, Timestamp(1000), "refused")
        .unwrap();
    let web = store
        .open_incident("web", sev, "open", None, Timestamp(1100), "500")
        .unwrap();
    assert_eq!(
        store
            .add_note(db, Timestamp(2000), "alice", "We are on it", 100)
            .unwrap(),
        vigie_store::Noted::Added
    );
    store
        .add_note(db, Timestamp(3000), "bob", "Restored <b>soon</b>", 100)
        .unwrap();
    assert_eq!(
        store
            .add_note(999, Timestamp(3000), "bob", "x", 100)
            .unwrap(),
        vigie_store::Noted::NotFound
    );
    let notes = store.notes(db).unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].author, "alice");
    assert_eq!(notes[1].text, "Restored <b>soon</b>");
    assert_eq!(notes[1].at, Timestamp(3000));
    let events = store.incident_events(db).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, vigie_store::EventKind::PublicNote);
    assert_eq!(last.detail, "bob: Restored <b>soon</b>");

    let open = store.open_incidents_of(&["db"], 20).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].0.id, db);
    assert_eq!(open[0].1, notes);
    store
        .resolve_incident(db, Timestamp(4000), "recovered")
        .unwrap();
    assert!(store.open_incidents_of(&["db"], 20).unwrap().is_empty());
    assert_eq!(
        store.open_incidents_of(&["db", "web"], 20).unwrap()[0].0.id,
        web
    );
    // Resolved: no more notes.
    assert_eq!(
        store
            .add_note(db, Timestamp(5000), "bob", "late", 100)
            .unwrap(),
        vigie_store::Noted::Resolved
    );
    // Reopened: kept.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.notes(db).unwrap(), notes);
}

#[test]
fn notes_are_capped_and_pages_get_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let sev = vigie_core::Severity::High;
    let db = store
        .open_incident("db", sev, "open", None, Timestamp(1000), "refused")
        .unwrap();
    for n in 0..5 {
        assert_eq!(
            store
                .add_note(db, Timestamp(2000 + n), "alice", &format!("note {n}"), 5)
                .unwrap(),
            vigie_store::Noted::Added
        );
    }
    assert_eq!(
        store
            .add_note(db, Timestamp(3000), "alice", "one too many", 5)
            .unwrap(),
        vigie_store::Noted::Full
    );
    assert_eq!(store.notes(db).unwrap().len(), 5);
    let newest: Vec<String> = store
        .newest_notes(db, 2)
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(newest, ["note 3", "note 4"]);
    let open = store.open_incidents_of(&["db"], 3).unwrap();
    let texts: Vec<&str> = open[0].1.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts, ["note 2", "note 3", "note 4"]);
}

#[test]
fn maintenance_by_hand_survives_reopen_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let m = |check: &str, until| vigie_store::ManualMaintenance {
        check: check.to_owned(),
        since: Timestamp(1000),
        until: Timestamp(until),
        by: "alice".to_owned(),
    };
    {
        let mut store = Store::open(dir.path()).unwrap();
        store.start_maintenance(&m("db", 10_000)).unwrap();
        store.start_maintenance(&m("web", 5_000)).unwrap();
        // Started again: the new end replaces the old one.
        store.start_maintenance(&m("web", 20_000)).unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.maintenances(Timestamp(2000)).unwrap(),
        vec![m("db", 10_000), m("web", 20_000)]
    );
    assert_eq!(
        store.maintenances(Timestamp(10_000)).unwrap(),
        vec![m("web", 20_000)],
        "over at its end, and removed"
    );
    assert!(store.end_maintenance("web").unwrap());
    assert!(!store.end_maintenance("web").unwrap());
    assert!(store.maintenances(Timestamp(2000)).unwrap().is_empty());
}

#[test]
fn a_converge_jobs_last_run_is_replaced_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.converge_last("base").unwrap(), None);
    let first = vigie_store::ConvergeLast {
        at: vigie_core::Timestamp(1_000),
        manifest_sha256: "aa".into(),
        commit: None,
        seen: vec!["file:/etc/motd".into(), "user:ann".into()],
    };
    store.converge_record("base", &first).unwrap();
    let second = vigie_store::ConvergeLast {
        at: vigie_core::Timestamp(2_000),
        manifest_sha256: "bb".into(),
        commit: Some("0123".into()),
        seen: Vec::new(),
    };
    store.converge_record("base", &second).unwrap();
    store.converge_record("other", &first).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.converge_last("base").unwrap(), Some(second));
    assert_eq!(store.converge_last("other").unwrap(), Some(first));
}

#[test]
fn a_failovers_switches_read_back_newest_first_and_per_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert!(store.failover_switches("blog", 10).unwrap().is_empty());
    store
        .set_failover_state("blog", "backup", Timestamp(1000), "web failing")
        .unwrap();
    store
        .set_failover_state("shop", "backup", Timestamp(1500), "other")
        .unwrap();
    store
        .set_failover_state("blog", "primary", Timestamp(2000), "failback")
        .unwrap();
    let all = store.failover_switches("blog", 10).unwrap();
    let seen: Vec<(&str, i64, &str)> = all
        .iter()
        .map(|s| (s.side.as_str(), s.since.0, s.reason.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("primary", 2000, "failback"),
            ("backup", 1000, "web failing")
        ]
    );
    assert_eq!(store.failover_switches("blog", 1).unwrap().len(), 1);
}
