//! What a logged-in user does from the pages: log in and out, and
//! acknowledge an incident. Every form posts its session's CSRF token;
//! the session cookie is SameSite=Strict and the server's guard refuses
//! a write from another origin, so a foreign page can neither read the
//! token nor make the browser use the cookie.

use std::fmt::Write as _;

use axum::extract::{Extension, Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::html::{Nav, esc, page};
use super::session::{Refused, set_cookie};
use super::{Viewer, html_response};
use crate::App;

/// Where a form sends the browser once done.
pub(super) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = header::HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The acknowledgement form of incident `id`, or how to get one.
pub(super) fn ack_form(body: &mut String, v: &Viewer, id: i64) {
    body.push_str("<h2>Acknowledge</h2>\n");
    match &v.session {
        Some((_, s)) => {
            let _ = writeln!(
                body,
                "<form class=\"ack\" method=\"post\" action=\"/incidents/{id}/ack\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label for=\"note\">Note (optional)</label> \
                 <input id=\"note\" name=\"note\" maxlength=\"1000\" autocomplete=\"off\"> \
                 <button type=\"submit\">Acknowledge</button></form>\n\
                 <p class=\"muted\">Escalation stops; the incident stays open until its check recovers.</p>",
                csrf = s.csrf
            );
        }
        None if v.logins => {
            body.push_str("<p><a href=\"/ui/login\">Log in</a> to acknowledge it here.</p>\n");
        }
        None => {
            let _ = writeln!(
                body,
                "<p>Acknowledge it with <code>vigie ack {id}</code>, or give people a login \
                 (<code>[server] users</code>, see <code>vigie password-hash</code>) to do it here.</p>"
            );
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct AckForm {
    csrf: String,
    #[serde(default)]
    note: String,
}

/// The session's and the form's: a missing or forged token is refused.
pub(super) fn refused(v: &Viewer, csrf: &str) -> Option<Response> {
    let Some((_, s)) = &v.session else {
        return Some(html_response(
            StatusCode::UNAUTHORIZED,
            page(
                "Login needed",
                &v.frame,
                Nav::Incidents,
                "<h1>Log in first</h1><p><a href=\"/ui/login\">Log in</a>, then send the form again.</p>",
            ),
        ));
    };
    if !vigie_core::constant_time_eq(csrf, &s.csrf) {
        tracing::warn!(user = %s.user, "a dashboard form came with a wrong CSRF token");
        return Some(html_response(
            StatusCode::FORBIDDEN,
            page(
                "Form refused",
                &v.frame,
                Nav::Incidents,
                "<h1>This form is out of date</h1><p>Its token is not this session's: reload the page and send it again.</p>",
            ),
        ));
    }
    None
}

pub(super) async fn ack(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<i64>,
    Form(form): Form<AckForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    let user = v.session.as_ref().map_or("", |(_, s)| s.user.as_str());
    let note: String = form.note.trim().chars().take(1000).collect();
    let note = if note.is_empty() {
        format!("by {user} from the dashboard")
    } else {
        format!("{note} (by {user} from the dashboard)")
    };
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.ack(id, &note)).await {
        Ok(Ok(vigie_store::Ack::NotFound)) => html_response(
            StatusCode::NOT_FOUND,
            page(
                "No such incident",
                &v.frame,
                Nav::Incidents,
                &format!("<h1>No incident #{id}</h1>"),
            ),
        ),
        Ok(Ok(_)) => see_other(&format!("/incidents/{id}")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "acknowledging an incident failed");
            html_response(
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "Store unavailable",
                    &v.frame,
                    Nav::Incidents,
                    &format!("<h1>Not acknowledged</h1><p>{}</p>", esc(&e.to_string())),
                ),
            )
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn login_form(v: &Viewer, status: StatusCode, problem: &str) -> Response {
    let body = if v.logins {
        format!(
            "<h1>Log in</h1>{problem}<form class=\"login\" method=\"post\" action=\"/ui/login\">\
             <p><label for=\"user\">User</label><br><input id=\"user\" name=\"user\" autocomplete=\"username\" required autofocus></p>\
             <p><label for=\"password\">Password</label><br><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
             <p><button type=\"submit\">Log in</button></p></form>"
        )
    } else {
        "<h1>No one can log in</h1><p>This node has no <code>[server] users</code>. \
         <code>vigie password-hash</code> prints the hash of a password to put there: \
         <code>users = { alice = \"$argon2id$…\" }</code>.</p>"
            .to_owned()
    };
    html_response(status, page("Log in", &v.frame, Nav::Checks, &body))
}

pub(super) async fn login_page(Extension(v): Extension<Viewer>) -> Response {
    if v.session.is_some() {
        return see_other("/");
    }
    login_form(&v, StatusCode::OK, "")
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
}

pub(super) async fn login(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Form(form): Form<LoginForm>,
) -> Response {
    let config = app.engine.view().config();
    let users = &config.server.users;
    if users.is_empty() {
        // No one can log in: nothing to compute.
        return login_form(&v, StatusCode::UNAUTHORIZED, "");
    }
    // What the logs show of a name typed by anyone: its Debug form
    // (no line breaks), at most 64 characters.
    let shown: String = form.user.chars().take(64).collect();
    let names: Vec<&str> = users.keys().map(String::as_str).collect();
    app.sessions.know(&names);
    let hash = users.get(&form.user).map(|h| h.phc().to_owned());
    match app.sessions.login(&form.user, &form.password, hash).await {
        Ok((id, _)) => {
            tracing::info!(user = ?shown, "logged in to the dashboard");
            let mut r = see_other("/");
            if let Ok(c) = header::HeaderValue::from_str(&set_cookie(Some(&id), app.https)) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            r
        }
        Err(Refused::Wrong) => {
            tracing::warn!(user = ?shown, "a dashboard login failed");
            login_form(
                &v,
                StatusCode::UNAUTHORIZED,
                "<p class=\"problem\" role=\"alert\">Wrong user name or password.</p>",
            )
        }
        Err(Refused::Busy) => login_form(
            &v,
            StatusCode::TOO_MANY_REQUESTS,
            "<p class=\"problem\" role=\"alert\">Too many logins at once or failed lately: wait a few seconds and try again.</p>",
        ),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct LogoutForm {
    csrf: String,
}

pub(super) async fn logout(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Some(r) = refused(&v, &form.csrf) {
        return r;
    }
    if let Some((id, _)) = &v.session {
        app.sessions.end(id);
    }
    let mut r = see_other("/ui/login");
    if let Ok(c) = header::HeaderValue::from_str(&set_cookie(None, app.https)) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}
