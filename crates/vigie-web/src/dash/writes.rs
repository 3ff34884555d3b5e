//! What a logged-in user changes from the pages besides acknowledging:
//! a public note on an incident, a replication job paused or resumed,
//! a check put in maintenance now or taken out. Each form carries the
//! session's CSRF token and goes through the engine's own calls, those
//! the API and the CLI use (`vigie sync pause` writes the same row).
//! Anonymous visitors are shown no form, and their posts are refused.

use std::fmt::Write as _;

use axum::extract::{Extension, Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vigie_engine::EngineError;

use super::account::{refused, see_other};
use super::html::{Nav, esc, page, url_segment, when};
use super::{Viewer, html_response};
use crate::App;

/// The durations offered for a maintenance started from a check's page.
pub(super) const DURATIONS: [(&str, &str); 7] = [
    ("15m", "15 minutes"),
    ("30m", "30 minutes"),
    ("1h", "1 hour"),
    ("2h", "2 hours"),
    ("4h", "4 hours"),
    ("8h", "8 hours"),
    ("24h", "1 day"),
];

/// Where a form's write needs a login: a line saying how to get one.
fn login_hint(body: &mut String, v: &Viewer, what: &str, cli: &str) {
    if v.logins {
        let _ = writeln!(
            body,
            "<p><a href=\"/ui/login\">Log in</a> to {what} here.</p>"
        );
    } else {
        let _ = writeln!(
            body,
            "<p>{cli}, or give people a login (<code>[server] users</code>, see \
             <code>vigie password-hash</code>) to {what} here.</p>"
        );
    }
}

/// The public note form of incident `id` (or how to get one), if it is
/// open: the notes of a resolved one are no longer shown.
pub(super) fn note_form(body: &mut String, v: &Viewer, id: i64, open: bool) {
    body.push_str("<h2>Public note</h2>\n");
    if !open {
        body.push_str(
            "<p class=\"muted\">Resolved: the status pages no longer show this incident, \
             so it takes no more notes.</p>\n",
        );
        return;
    }
    match &v.session {
        Some((_, s)) => {
            let _ = writeln!(
                body,
                "<form class=\"note\" method=\"post\" action=\"/incidents/{id}/note\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <p><label for=\"public-note\">Note shown on the status pages of this check's services</label><br>\
                 <textarea id=\"public-note\" name=\"text\" rows=\"3\" cols=\"60\" maxlength=\"{max}\" required></textarea></p>\
                 <p><button type=\"submit\">Publish the note</button></p></form>",
                csrf = s.csrf,
                max = vigie_engine::NOTE_MAX_CHARS,
            );
        }
        None => login_hint(
            body,
            v,
            "write a public note",
            "Notes are written with <code>POST /api/v1/incidents/ID/notes</code>",
        ),
    }
}

/// A page that says what went wrong with a form, and where to go back.
fn problem(v: &Viewer, status: StatusCode, nav: Nav, back: &str, text: &str) -> Response {
    html_response(
        status,
        page(
            "Not done",
            &v.frame,
            nav,
            &format!(
                "<h1>Not done</h1><p class=\"problem\" role=\"alert\">{}</p><p><a href=\"{back}\">Back</a></p>",
                esc(text)
            ),
        ),
    )
}

/// An engine's refusal as a 400 page, a conflict as a 409; any other
/// failure as a 503.
fn failed(v: &Viewer, nav: Nav, back: &str, e: &EngineError) -> Response {
    match e {
        EngineError::Refused(why) => problem(v, StatusCode::BAD_REQUEST, nav, back, why),
        EngineError::Conflict(why) => problem(v, StatusCode::CONFLICT, nav, back, why),
        e => {
            tracing::error!(error = %e, "a write from the dashboard failed");
            problem(
                v,
                StatusCode::SERVICE_UNAVAILABLE,
                nav,
                back,
                &format!("The store is unavailable: {e}"),
            )
        }
    }
}

fn user(v: &Viewer) -> String {
    v.session
        .as_ref()
        .map_or_else(String::new, |(_, s)| s.user.clone())
}

#[derive(serde::Deserialize)]
pub(super) struct NoteForm {
    csrf: String,
    #[serde(default)]
    text: String,
}

pub(super) async fn note(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<i64>,
    Form(form): Form<NoteForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    let back = format!("/incidents/{id}");
    let author = user(&v);
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.add_note(id, &author, &form.text)).await {
        Ok(Ok(vigie_store::Noted::NotFound)) => problem(
            &v,
            StatusCode::NOT_FOUND,
            Nav::Incidents,
            "/incidents",
            &format!("There is no incident #{id}."),
        ),
        // Added (the engine turns the other answers into refusals).
        Ok(Ok(_)) => see_other(&back),
        Ok(Err(e)) => failed(&v, Nav::Incidents, &back, &e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A check's maintenance: the one running now, and the forms to start
/// or end one (or how to get them).
pub(super) fn maintenance_section(body: &mut String, app: &App, v: &Viewer, check: &str) {
    body.push_str("<h2>Maintenance</h2>\n");
    let now = app.engine.maintenance(check);
    let u = url_segment(check);
    match &now {
        Some(m) => {
            let _ = writeln!(
                body,
                "<p class=\"maintenance\">In maintenance until <time>{until}</time> (started by {by}): \
                 it keeps running, its incidents wait.</p>",
                until = esc(&when(m.until)),
                by = esc(&m.by),
            );
        }
        None => body.push_str(
            "<p>Not in maintenance by hand. During a maintenance the check keeps running, \
             and its incidents wait: no repair, no notification.</p>\n",
        ),
    }
    let Some((_, s)) = &v.session else {
        login_hint(
            body,
            v,
            "start a maintenance",
            "Start one with <code>POST /api/v1/checks/NAME/maintenance {\"for\": \"1h\"}</code>",
        );
        return;
    };
    let mut options = String::new();
    for (value, label) in DURATIONS {
        let selected = if value == "1h" { " selected" } else { "" };
        let _ = write!(
            options,
            "<option value=\"{value}\"{selected}>{label}</option>"
        );
    }
    let _ = writeln!(
        body,
        "<form class=\"maintenance\" method=\"post\" action=\"/checks/{u}/maintenance\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"maintenance-for\">Maintenance for</label> \
         <select id=\"maintenance-for\" name=\"for\">{options}</select> \
         <button type=\"submit\">{verb}</button></form>",
        csrf = s.csrf,
        verb = if now.is_some() {
            "Start again from now"
        } else {
            "Start maintenance now"
        },
    );
    if now.is_some() {
        let _ = writeln!(
            body,
            "<form class=\"maintenance-end\" method=\"post\" action=\"/checks/{u}/maintenance/end\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">End maintenance</button></form>",
            csrf = s.csrf,
        );
    }
}

#[derive(serde::Deserialize)]
pub(super) struct MaintenanceForm {
    csrf: String,
    #[serde(default, rename = "for")]
    duration: String,
}

pub(super) async fn maintenance_start(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<MaintenanceForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    let back = format!("/checks/{}", url_segment(&name));
    let Ok(d) = form.duration.trim().parse::<vigie_core::Duration>() else {
        return problem(
            &v,
            StatusCode::BAD_REQUEST,
            Nav::Checks,
            &back,
            &format!(
                "`{}` is not a duration: choose one in the list (or write one like 90m)",
                form.duration.chars().take(40).collect::<String>()
            ),
        );
    };
    let by = format!("{} from the dashboard", user(&v));
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.start_maintenance(&name, d.std(), &by)).await {
        Ok(Ok(_)) => see_other(&back),
        Ok(Err(e)) => failed(&v, Nav::Checks, &back, &e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn maintenance_end(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    let back = format!("/checks/{}", url_segment(&name));
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.end_maintenance(&name)).await {
        Ok(Ok(_)) => see_other(&back),
        Ok(Err(e)) => failed(&v, Nav::Checks, &back, &e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// One replication job as its pages show it.
struct Job {
    name: String,
    to: String,
    state: Option<vigie_engine::CheckStatus>,
    paused: Option<vigie_store::Paused>,
    queued: usize,
}

/// Every `[[sync]]` job with its check's state, pause and queue.
async fn jobs(app: &App, v: &Viewer) -> Result<Vec<Job>, Response> {
    let config = app.engine.view().config();
    let names: Vec<String> = config.syncs.iter().map(|j| j.name.clone()).collect();
    let stored = super::read(app, v, move |store| {
        names
            .iter()
            .map(|n| Ok((store.sync_paused(n)?, store.sync_queue(n)?.0.len())))
            .collect::<vigie_store::Result<Vec<_>>>()
    })
    .await?;
    Ok(config
        .syncs
        .iter()
        .zip(stored)
        .map(|(j, (paused, queued))| {
            let check = config
                .checks
                .iter()
                .find(|c| matches!(&c.probe, vigie_config::Probe::Sync(p) if p.job == j.name));
            Job {
                name: j.name.clone(),
                to: j.to.clone(),
                state: check.and_then(|c| app.engine.view().get(&c.name)),
                paused,
                queued,
            }
        })
        .collect())
}

fn job_state(j: &Job) -> String {
    match (&j.paused, &j.state) {
        (Some(p), _) => format!(
            "<span class=\"state paused\">paused</span> since <time>{}</time>: {}",
            esc(&when(p.since)),
            esc(&p.reason)
        ),
        (None, Some(s)) => format!("{} {}", super::badge(s.state), esc(&s.last_message)),
        (None, None) => "<span class=\"muted\">no check reports on it</span>".to_owned(),
    }
}

pub(super) async fn sync_list(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    let jobs = match jobs(&app, &v).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let mut body = String::from("<h1>Replication</h1>\n");
    if jobs.is_empty() {
        body.push_str("<p>No replication job (<code>[[sync]]</code>) is configured.</p>\n");
    } else {
        body.push_str(
            "<table class=\"syncs\"><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">To</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Queued</th></tr></thead><tbody>\n",
        );
        for j in &jobs {
            let _ = writeln!(
                body,
                "<tr data-sync=\"{n}\"><td><a href=\"/sync/{u}\">{n}</a></td><td>{to}</td><td>{st}</td><td>{q}</td></tr>",
                n = esc(&j.name),
                u = url_segment(&j.name),
                to = esc(&j.to),
                st = job_state(j),
                q = j.queued,
            );
        }
        body.push_str("</tbody></table>\n");
    }
    html_response(
        StatusCode::OK,
        page("Replication", &v.frame, Nav::Sync, &body),
    )
}

pub(super) async fn sync_page(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
) -> Response {
    let jobs = match jobs(&app, &v).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let Some(j) = jobs.iter().find(|j| j.name == name) else {
        return problem(
            &v,
            StatusCode::NOT_FOUND,
            Nav::Sync,
            "/sync",
            &format!("There is no replication job named {name}."),
        );
    };
    let u = url_segment(&j.name);
    let mut body = format!(
        "<p><a href=\"/sync\">← All replication jobs</a></p>\n<h1>{n}</h1>\n\
         <dl class=\"facts\"><dt>To</dt><dd>{to}</dd><dt>State</dt><dd>{st}</dd><dt>Queued</dt><dd>{q} path{s}</dd></dl>\n",
        n = esc(&j.name),
        to = esc(&j.to),
        st = job_state(j),
        q = j.queued,
        s = if j.queued == 1 { "" } else { "s" },
    );
    match (&v.session, &j.paused) {
        (Some((_, s)), None) => {
            let _ = writeln!(
                body,
                "<form class=\"sync-pause\" method=\"post\" action=\"/sync/{u}/pause\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label for=\"pause-reason\">Why (shown with the pause)</label> \
                 <input id=\"pause-reason\" name=\"reason\" maxlength=\"200\" autocomplete=\"off\"> \
                 <button type=\"submit\">Pause</button></form>\n\
                 <p class=\"muted\">Paused, the job sends nothing; changes keep queueing until it resumes.</p>",
                csrf = s.csrf,
            );
        }
        (Some(_), Some(p)) if p.is_fence() => {
            let _ = writeln!(
                body,
                "<p class=\"fenced\">A failover fenced this job: resume it from the CLI once the \
                 backup's writes are back, with <code>vigie sync {n} --reverse</code> then \
                 <code>vigie sync resume {n}</code>.</p>",
                n = esc(&j.name),
            );
        }
        (Some((_, s)), Some(paused)) => {
            let _ = writeln!(
                body,
                "<form class=\"sync-resume\" method=\"post\" action=\"/sync/{u}/resume\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"since\" value=\"{since}\">\
                 <button type=\"submit\">Resume</button></form>\n\
                 <p class=\"muted\">Resumed, the job sends what queued meanwhile first.</p>",
                csrf = s.csrf,
                since = paused.since.millis(),
            );
        }
        (None, _) => login_hint(
            &mut body,
            &v,
            "pause or resume it",
            &format!(
                "Pause or resume it with <code>vigie sync pause {n}</code> and <code>vigie sync resume {n}</code>",
                n = esc(&j.name)
            ),
        ),
    }
    html_response(StatusCode::OK, page(&j.name, &v.frame, Nav::Sync, &body))
}

#[derive(serde::Deserialize)]
pub(super) struct PauseForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn sync_pause(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<PauseForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    let back = format!("/sync/{}", url_segment(&name));
    let reason: String = form.reason.trim().chars().take(200).collect();
    let reason = if reason.is_empty() {
        format!("paused by {} from the dashboard", user(&v))
    } else {
        format!("{reason} (by {} from the dashboard)", user(&v))
    };
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.sync_pause(&name, &reason)).await {
        Ok(Ok(())) => see_other(&back),
        Ok(Err(e)) => failed(&v, Nav::Sync, "/sync", &e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ResumeForm {
    csrf: String,
    /// When the pause the page showed started, in milliseconds.
    #[serde(default)]
    since: String,
}

pub(super) async fn sync_resume(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
    Form(form): Form<ResumeForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    let back = format!("/sync/{}", url_segment(&name));
    let Ok(since) = form.since.trim().parse::<i64>() else {
        return problem(
            &v,
            StatusCode::BAD_REQUEST,
            Nav::Sync,
            &back,
            "The form does not say which pause to lift: reload the page and resume again.",
        );
    };
    let since = vigie_core::Timestamp(since);
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.sync_resume(&name, Some(since))).await {
        Ok(Ok(_)) => see_other(&back),
        Ok(Err(e)) => failed(&v, Nav::Sync, "/sync", &e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
