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
        let _ = write!(s, ", up to {} later on this node", esc(&j.jitter.to_string()));
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
    s: &Stored,
    next: Option<Timestamp>,
    now: Timestamp,
) {
    let u = url_segment(&j.name);
    let _ = writeln!(
        body,
        "<section class=\"backup\" id=\"backup-{u}\" aria-labelledby=\"backup-{u}-h\">\
         <h2 id=\"backup-{u}-h\">{n}</h2>\n<dl class=\"facts\">\
         <dt>Repository</dt><dd><code>{repo}</code></dd>\
         <dt>Schedule</dt><dd>{sched}</dd><dt>Next run</dt><dd>{next}</dd>",
        n = esc(&j.name),
        repo = esc(&vigie_core::url_without_credentials(&j.repository)),
        sched = schedule(j),
        next = next.map_or_else(|| "-".to_owned(), |t| esc(&when(t))),
    );
    let last = match &s.last {
        None => "never".to_owned(),
        Some(r) => {
            let mut t = format!(
                "{} <time>{}</time>, took {}",
                result(r.ok),
                esc(&when(r.started)),
                took(r.started, r.ended)
            );
            if let Some(b) = r.bytes_added {
                let _ = write!(t, ", added {}", bytes(b));
            }
            if let Some(e) = &r.error {
                let _ = write!(t, "<div class=\"msg problem\">{}</div>", esc(e));
            }
            t
        }
    };
    let _ = write!(body, "<dt>Last run</dt><dd>{last}</dd>");
    let good = match &s.good {
        None => "none yet".to_owned(),
        Some(g) => {
            let age = g.started.age(now);
            let state = if age > j.max_age.std() {
                format!(
                    "<span class=\"state failing\">older than max_age ({})</span>",
                    esc(&j.max_age.to_string())
                )
            } else {
                format!(
                    "<span class=\"state ok\">within max_age ({})</span>",
                    esc(&j.max_age.to_string())
                )
            };
            format!(
                "<code title=\"{id}\">{short}</code> of <time>{t}</time>, {ago} old: {state}",
                id = esc(g.snapshot.as_deref().unwrap_or("?")),
                short = esc(short(g.snapshot.as_deref().unwrap_or("?"))),
                t = esc(&when(g.started)),
                ago = ago(g.started, now),
            )
        }
    };
    let _ = write!(body, "<dt>Last good snapshot</dt><dd>{good}</dd>");
    let drill = match (&s.drill, &j.drill) {
        (None, None) => "no drills scheduled (<code>drill</code>)".to_owned(),
        (None, Some(_)) => "none yet".to_owned(),
        (Some(d), _) => {
            let mut t = format!("{} <time>{}</time>", result(d.ok), esc(&when(d.started)));
            if let Some(ms) = d.restore_ms {
                let _ = write!(t, ", restored in {} (the measured recovery time)", span_ms(ms));
            }
            if let (Some(files), Some(b)) = (d.files, d.bytes) {
                let _ = write!(t, ", {files} files, {} verified", bytes(b));
            }
            if let Some(e) = &d.error {
                let _ = write!(t, "<div class=\"msg problem\">{}</div>", esc(e));
            }
            t
        }
    };
    let _ = write!(body, "<dt>Last restore drill</dt><dd>{drill}</dd>");
    let check = match (&s.check, &j.check) {
        (None, None) => "no integrity checks scheduled (<code>check</code>)".to_owned(),
        (None, Some(_)) => "none yet".to_owned(),
        (Some(c), _) => {
            let mut t = format!(
                "{} <time>{}</time>, read {} of the data",
                result(c.ok),
                esc(&when(c.started)),
                esc(&c.read_data)
            );
            if let (Some(e), Some(w)) = (c.errors, c.warnings) {
                let _ = write!(t, ", {e} errors, {w} warnings");
            }
            if let Some(e) = &c.error {
                let _ = write!(t, "<div class=\"msg problem\">{}</div>", esc(e));
            }
            t
        }
    };
    let _ = write!(body, "<dt>Last integrity check</dt><dd>{check}</dd>");
    let view = app.engine.view();
    let mut checks = String::new();
    for c in view.config().checks.iter().filter(
        |c| matches!(&c.probe, vigie_config::Probe::Backup(p) if p.job == j.name),
    ) {
        let state = view
            .get(&c.name)
            .map_or_else(String::new, |s| format!(" {}", badge(s.state)));
        let _ = write!(
            checks,
            "<li><a href=\"/checks/{}\">{}</a>{state}</li>",
            url_segment(&c.name),
            esc(&c.name)
        );
    }
    if checks.is_empty() {
        checks.push_str("<li>none</li>");
    }
    let _ = writeln!(
        body,
        "<dt>Checks</dt><dd><ul class=\"plain\">{checks}</ul></dd></dl>\n</section>"
    );
}
