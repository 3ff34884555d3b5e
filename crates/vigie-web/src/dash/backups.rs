//! The backups page (`/backups`): each `[[backup]]` job with its
//! repository (never its credentials), schedule and next run, last run,
//! last good snapshot and its age against `max_age`, last restore drill
//! (its restore time is the measured recovery time) and last integrity
//! check, and its checks. Everything comes from the store and the
//! configuration, as `vigie backup list` reads it: the page opens no
//! repository and touches no network. Read-only: runs are
//! `vigie backup run`.

use std::fmt::Write as _;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use vigie_config::BackupJob;
use vigie_core::Timestamp;
use vigie_store::{BackupCheck, BackupDrill, BackupRun};

use super::html::{Nav, ago, bytes, esc, page, span_ms, url_segment, when};
use super::{Viewer, badge, html_response, read};
use crate::App;

/// What the store holds of one job.
struct Stored {
    last: Option<BackupRun>,
    good: Option<BackupRun>,
    drill: Option<BackupDrill>,
    check: Option<BackupCheck>,
}

fn result(ok: bool) -> &'static str {
    if ok {
        "<span class=\"state ok\">ok</span>"
    } else {
        "<span class=\"state failing\">failed</span>"
    }
}

fn took(started: Timestamp, ended: Timestamp) -> String {
    span_ms(u64::try_from(ended.0.saturating_sub(started.0)).unwrap_or(0))
}

/// A snapshot id as restic shortens it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// When the job runs, as written: `daily at 02:30`, `cron 0 * * * *`,
/// with its time zone and jitter.
fn schedule(j: &BackupJob) -> String {
    let mut s = match (&j.at, &j.schedule) {
        (_, Some(c)) => format!("cron <code>{}</code>", esc(&c.to_string())),
        (Some(at), None) => format!("daily at {}", esc(&at.to_string())),
        (None, None) => "not scheduled".to_owned(),
    };
    if let Some(tz) = &j.timezone {
        let _ = write!(s, " ({})", esc(tz));
    }
    if !j.jitter.std().is_zero() {
        let _ = write!(
            s,
            ", up to {} later on this node",
            esc(&j.jitter.to_string())
        );
    }
    s
}

pub(super) async fn page_(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    let view = app.engine.view();
    let config = view.config();
    let names: Vec<String> = config.backups.iter().map(|j| j.name.clone()).collect();
    let stored = match read(&app, &v, move |store| {
        names
            .iter()
            .map(|n| {
                let (last, good) = store.backup_last(n)?;
                Ok(Stored {
                    last,
                    good,
                    drill: store.drill_last(n)?,
                    check: store.check_last(n)?,
                })
            })
            .collect::<vigie_store::Result<Vec<_>>>()
    })
    .await
    {
        Ok(s) => s,
        Err(page) => return page,
    };
    let mut body = String::from("<h1>Backups</h1>\n");
    if config.backups.is_empty() {
        body.push_str(
            "<p>No backup job is declared on this node. A <code>[[backup]]</code> table names \
             a restic repository, its password, the paths to save and a schedule; vigie runs it, \
             checks the age of its last good snapshot and, if asked, drills a restore. \
             See <code>docs/config/backup.md</code> for its keys and \
             <code>docs/features.md</code> (Backups).</p>\n",
        );
        return html_response(
            StatusCode::OK,
            page("Backups", &v.frame, Nav::Backups, &body),
        );
    }
    let now = Timestamp::now();
    let next = |j: &BackupJob| {
        j.next_run(&config.node.name, jiff::Timestamp::now())
            .ok()
            .map(|t| Timestamp(t.as_millisecond()))
    };
    body.push_str(
        "<div class=\"scroll\"><table class=\"backups keep-cols\"><caption>Backup jobs</caption>\
         <thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Last run</th>\
         <th scope=\"col\">Last good snapshot</th><th scope=\"col\">Next run</th></tr></thead><tbody>\n",
    );
    for (j, s) in config.backups.iter().zip(&stored) {
        let last = s.last.as_ref().map_or_else(
            || "never".to_owned(),
            |r| format!("{} {} ago", result(r.ok), ago(r.started, now)),
        );
        let good = s.good.as_ref().map_or_else(
            || "none".to_owned(),
            |g| {
                format!(
                    "<code>{}</code> {} ago",
                    esc(short(g.snapshot.as_deref().unwrap_or("?"))),
                    ago(g.started, now)
                )
            },
        );
        let _ = writeln!(
            body,
            "<tr data-backup=\"{n}\"><th scope=\"row\"><a href=\"#backup-{u}\">{n}</a></th>\
             <td>{last}</td><td>{good}</td><td>{next}</td></tr>",
            n = esc(&j.name),
            u = url_segment(&j.name),
            next = next(j).map_or_else(|| "-".to_owned(), |t| esc(&when(t))),
        );
    }
    body.push_str("</tbody></table></div>\n");
    for (j, s) in config.backups.iter().zip(&stored) {
        job(&mut body, &app, j, s, next(j), now);
    }
    html_response(
        StatusCode::OK,
        page("Backups", &v.frame, Nav::Backups, &body),
    )
}

/// One job's section: its facts, then its checks.
fn job(
    body: &mut String,
    app: &App,
    j: &BackupJob,
    stored: &Stored,
    next: Option<Timestamp>,
    now: Timestamp,
) {
    let u = url_segment(&j.name);
    let _ = writeln!(
        body,
        "<section class=\"backup\" id=\"backup-{u}\" aria-labelledby=\"backup-{u}-h\">\
         <h2 id=\"backup-{u}-h\">{n}</h2>\n<dl class=\"facts\">\
         <dt>Repository</dt><dd><code>{repo}</code></dd>\
         <dt>Schedule</dt><dd>{sched}</dd><dt>Next run</dt><dd>{next}</dd>\
         <dt>Last run</dt><dd>{last}</dd><dt>Last good snapshot</dt><dd>{good}</dd>\
         <dt>Last restore drill</dt><dd>{drill}</dd><dt>Last integrity check</dt><dd>{check}</dd>\
         <dt>Checks</dt><dd><ul class=\"plain\">{checks}</ul></dd></dl>\n</section>",
        n = esc(&j.name),
        repo = esc(&vigie_core::url_without_credentials(&j.repository)),
        sched = schedule(j),
        next = next.map_or_else(|| "-".to_owned(), |t| esc(&when(t))),
        last = last_run(stored.last.as_ref()),
        good = last_good(j, stored.good.as_ref(), now),
        drill = last_drill(j, stored.drill.as_ref()),
        check = last_check(j, stored.check.as_ref()),
        checks = checks(app, j),
    );
}

/// An error from outside (restic, a hook), as text.
fn problem(error: Option<&String>) -> String {
    error.map_or_else(String::new, |e| {
        format!("<div class=\"msg problem\">{}</div>", esc(e))
    })
}

fn last_run(run: Option<&BackupRun>) -> String {
    let Some(run) = run else {
        return "never".to_owned();
    };
    let mut text = format!(
        "{} <time>{}</time>, took {}",
        result(run.ok),
        esc(&when(run.started)),
        took(run.started, run.ended)
    );
    if let Some(b) = run.bytes_added {
        let _ = write!(text, ", added {}", bytes(b));
    }
    text + &problem(run.error.as_ref())
}

fn last_good(j: &BackupJob, good: Option<&BackupRun>, now: Timestamp) -> String {
    let Some(good) = good else {
        return "none yet".to_owned();
    };
    let (class, words) = if good.started.age(now) > j.max_age.std() {
        ("failing", "older than")
    } else {
        ("ok", "within")
    };
    let id = good.snapshot.as_deref().unwrap_or("?");
    format!(
        "<code title=\"{id}\">{short}</code> of <time>{t}</time>, {ago} old: \
         <span class=\"state {class}\">{words} max_age ({max})</span>",
        id = esc(id),
        short = esc(short(id)),
        t = esc(&when(good.started)),
        ago = ago(good.started, now),
        max = esc(&j.max_age.to_string()),
    )
}

fn last_drill(j: &BackupJob, drill: Option<&BackupDrill>) -> String {
    let Some(drill) = drill else {
        return if j.drill.is_some() {
            "none yet".to_owned()
        } else {
            "no drills scheduled (<code>drill</code>)".to_owned()
        };
    };
    let mut text = format!(
        "{} <time>{}</time>",
        result(drill.ok),
        esc(&when(drill.started))
    );
    if let Some(ms) = drill.restore_ms {
        let _ = write!(
            text,
            ", restored in {} (the measured recovery time)",
            span_ms(ms)
        );
    }
    if let (Some(files), Some(b)) = (drill.files, drill.bytes) {
        let _ = write!(text, ", {files} files, {} verified", bytes(b));
    }
    text + &problem(drill.error.as_ref())
}

fn last_check(j: &BackupJob, check: Option<&BackupCheck>) -> String {
    let Some(check) = check else {
        return if j.check.is_some() {
            "none yet".to_owned()
        } else {
            "no integrity checks scheduled (<code>check</code>)".to_owned()
        };
    };
    let mut text = format!(
        "{} <time>{}</time>, read {} of the data",
        result(check.ok),
        esc(&when(check.started)),
        esc(&check.read_data)
    );
    if let (Some(errors), Some(warnings)) = (check.errors, check.warnings) {
        let _ = write!(text, ", {errors} errors, {warnings} warnings");
    }
    text + &problem(check.error.as_ref())
}

/// The job's checks, each a link with its state.
fn checks(app: &App, j: &BackupJob) -> String {
    let view = app.engine.view();
    let mut out = String::new();
    for c in view
        .config()
        .checks
        .iter()
        .filter(|c| matches!(&c.probe, vigie_config::Probe::Backup(p) if p.job == j.name))
    {
        let state = view
            .get(&c.name)
            .map_or_else(String::new, |s| format!(" {}", badge(s.state)));
        let _ = write!(
            out,
            "<li><a href=\"/checks/{}\">{}</a>{state}</li>",
            url_segment(&c.name),
            esc(&c.name)
        );
    }
    if out.is_empty() {
        out.push_str("<li>none</li>");
    }
    out
}
