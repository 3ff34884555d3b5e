//! A `[[backup]]` job's checks, from what its runs, drills, integrity
//! checks and repository report on the board: the last run's result,
//! the age of the last good snapshot, the last drill's or check's word,
//! whether the repository answers.

use vigie_config::{BackupProbe, BackupWatch};
use vigie_core::{
    Board, Outcome, Timestamp, backup_metric, backup_report, drill_report, integrity_report,
    repository_report,
};

/// Judge `probe` at `now` from the job's latest report.
pub(crate) fn judge(board: &Board, probe: &BackupProbe, now: Timestamp) -> Outcome {
    let job = &probe.job;
    // The last drill's, check's or reach's word; none yet is no failure
    // (the first one comes at its time).
    let latest = |report: String, none: String| {
        board
            .report(&report)
            .map_or_else(|| Outcome::ok(none), |(o, _)| o)
    };
    match probe.aspect() {
        BackupWatch::Drill => {
            return latest(
                drill_report(job),
                format!("backup {job} has had no restore drill yet"),
            );
        }
        BackupWatch::Check => {
            return latest(
                integrity_report(job),
                format!("backup {job}'s repository has had no scheduled integrity check yet"),
            );
        }
        BackupWatch::Repository => {
            return latest(
                repository_report(job),
                format!("backup {job}'s repository has not been reached yet"),
            );
        }
        BackupWatch::Run | BackupWatch::Age => {}
    }
    let Some((report, _)) = board.report(&backup_report(job)) else {
        return Outcome::fail(format!(
            "backup {job} is not scheduled here (it runs inside `vigie run`)"
        ));
    };
    let number = |name: &str| {
        report
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    };
    let Some(max_age) = probe.max_age else {
        return report;
    };
    let age_of = |secs: f64| {
        let then = Timestamp((secs * 1000.0) as i64);
        vigie_core::Duration::from_secs(then.age(now).as_secs())
    };
    let mut o = if let Some(t) = number(backup_metric::LAST_SUCCESS) {
        {
            let age = age_of(t);
            if age.std() > max_age.std() {
                Outcome::fail(format!(
                    "the last good snapshot of backup {job} is {age} old, more than max_age {max_age}"
                ))
            } else {
                Outcome::ok(format!(
                    "the last good snapshot of backup {job} is {age} old"
                ))
            }
        }
    } else {
        {
            let watched = number(backup_metric::WATCHED_SINCE)
                .map_or(vigie_core::Duration::from_secs(0), age_of);
            if watched.std() > max_age.std() {
                Outcome::fail(format!(
                    "backup {job} has made no good snapshot in {watched}, more than max_age {max_age}"
                ))
            } else {
                Outcome::ok(format!("backup {job} has made no good snapshot yet"))
            }
        }
    };
    o.metrics = report.metrics;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool, last_success: Option<i64>, watched: i64) -> Outcome {
        let mut o = if ok {
            Outcome::ok("backed up")
        } else {
            Outcome::fail("wrong password")
        };
        let mut m = vec![vigie_core::Metric {
            name: backup_metric::WATCHED_SINCE.into(),
            value: watched as f64,
        }];
        if let Some(t) = last_success {
            m.push(vigie_core::Metric {
                name: backup_metric::LAST_SUCCESS.into(),
                value: t as f64,
            });
        }
        o.metrics = m;
        o
    }

    #[test]
    fn the_run_check_is_the_last_runs_result_and_the_age_check_the_last_goods_age() {
        let board = Board::new();
        let run = BackupProbe {
            job: "n".into(),
            max_age: None,
            watch: None,
        };
        let age = BackupProbe {
            job: "n".into(),
            max_age: Some(vigie_core::Duration::from_secs(3600)),
            watch: None,
        };
        let now = Timestamp(10_000_000_000);
        assert!(
            !judge(&board, &run, now).ok,
            "nothing reported: not scheduled here"
        );
        board.publish("backup.n", report(false, Some(10_000_000 - 600), 0));
        let o = judge(&board, &run, now);
        assert!(!o.ok && o.message == "wrong password", "{o:?}");
        let o = judge(&board, &age, now);
        assert!(o.ok && o.message.contains("10m old"), "{o:?}");
        board.publish("backup.n", report(true, Some(10_000_000 - 7200), 0));
        assert!(judge(&board, &run, now).ok);
        let o = judge(&board, &age, now);
        assert!(
            !o.ok && o.message.contains("2h old, more than max_age 1h"),
            "{o:?}"
        );
        board.publish("backup.n", report(false, None, 10_000_000 - 60));
        let o = judge(&board, &age, now);
        assert!(o.ok && o.message.contains("no good snapshot yet"), "{o:?}");
        board.publish("backup.n", report(false, None, 10_000_000 - 3601));
        assert!(
            !judge(&board, &age, now).ok,
            "none within max_age of watching"
        );
    }

    #[test]
    fn the_drill_check_is_the_last_drills_result() {
        let board = Board::new();
        let drill = BackupProbe {
            job: "n".into(),
            max_age: None,
            watch: Some(BackupWatch::Drill),
        };
        let now = Timestamp(10_000_000_000);
        let o = judge(&board, &drill, now);
        assert!(o.ok && o.message.contains("no restore drill yet"), "{o:?}");
        board.publish("backup-drill.n", Outcome::fail("a.txt: content differs"));
        let o = judge(&board, &drill, now);
        assert!(!o.ok && o.message == "a.txt: content differs", "{o:?}");
        // The run's report is not the drill's.
        board.publish("backup.n", report(true, Some(10_000_000), 0));
        assert!(!judge(&board, &drill, now).ok);
    }

    #[test]
    fn the_check_and_repository_checks_are_their_last_words() {
        let board = Board::new();
        let now = Timestamp(10_000_000_000);
        for (watch, name, none) in [
            (
                BackupWatch::Check,
                "backup-check.n",
                "no scheduled integrity check yet",
            ),
            (
                BackupWatch::Repository,
                "backup-repository.n",
                "not been reached yet",
            ),
        ] {
            let probe = BackupProbe {
                job: "n".into(),
                max_age: None,
                watch: Some(watch),
            };
            let o = judge(&board, &probe, now);
            assert!(o.ok && o.message.contains(none), "{o:?}");
            board.publish(name, Outcome::fail("connection refused"));
            let o = judge(&board, &probe, now);
            assert!(!o.ok && o.message == "connection refused", "{o:?}");
        }
        // Each reads its own report only.
        board.publish("backup-check.n", Outcome::ok("sound"));
        let repo = BackupProbe {
            job: "n".into(),
            max_age: None,
            watch: Some(BackupWatch::Repository),
        };
        assert!(!judge(&board, &repo, now).ok);
    }
}
