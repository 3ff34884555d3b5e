//! The dashboard, served by the binary: every check with its state,
//! severity and last runs; a check's page with its history over 1 h,
//! 24 h, 7 d or 90 d and its incidents; the incidents with their
//! timelines; replication jobs, failovers and backup jobs (read-only
//! but for pausing a job). Pages are rendered on the server ([`html`], [`svg`]); the
//! one script, ours (`live.js`), keeps the overview current from
//! server-sent events (`/ui/events`) and the page works without it. The
//! Content-Security-Policy allows nothing from elsewhere.
//!
//! Reading is open where the API is: on loopback without `[server]
//! token`. With a token, only a logged-in user (`[server] users`,
//! [`session`]) sees the pages. Acting from a page (acknowledging an
//! incident) always needs a login, and the form's CSRF token.

mod account;
mod backups;
mod failover;
mod fleet;
mod host;
mod html;
mod session;
mod status;
mod svg;
mod writes;

pub(crate) use fleet::{FleetCache, report as fleet_report};

pub use session::hash_password;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vigie_core::{CheckState, Timestamp};
use vigie_engine::CheckStatus;

use crate::App;
use html::{Frame, Nav, esc, page, url_segment, when};
pub(crate) use session::Sessions;

/// Pages read from the store at once, at most.
pub(crate) const READS: usize = 4;

/// Runs drawn in each check's sparkline.
const SPARK_RUNS: usize = 30;
/// Buckets across a history graph.
const BUCKETS: u32 = 240;
/// How often the live stream looks for changes.
const LIVE_EVERY: Duration = Duration::from_secs(2);
/// A live stream ends after this (the browser reconnects at once), so a
/// forgotten tab holds no connection for ever.
const LIVE_FOR: Duration = Duration::from_mins(5);

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("live.js");

/// What a page may load: its own styles and script, nothing else.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) fn routes(app: &App) -> Router<App> {
    Router::new()
        .route("/", get(overview))
        .route("/checks/{name}", get(check_page))
        .route("/host", get(host_page))
        .route("/incidents", get(incidents_page))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/ack", post(account::ack))
        .route("/incidents/{id}/note", post(writes::note))
        .route(
            "/checks/{name}/maintenance",
            post(writes::maintenance_start),
        )
        .route(
            "/checks/{name}/maintenance/end",
            post(writes::maintenance_end),
        )
        .route("/sync", get(writes::sync_list))
        .route("/sync/{name}", get(writes::sync_page))
        .route("/sync/{name}/pause", post(writes::sync_pause))
        .route("/sync/{name}/resume", post(writes::sync_resume))
        .route("/failover", get(failover::page_))
        .route("/backups", get(backups::page_))
        .route("/ui/fleet", get(fleet::page_))
        .route("/ui/login", get(account::login_page).post(account::login))
        .route("/ui/logout", post(account::logout))
        .route("/ui/events", get(live))
        .route("/ui/style.css", get(style))
        .route("/status/{page}", get(status::page))
        .route("/status/{page}/badge/{service}", get(status::badge))
        .route("/ui/live.js", get(script))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate))
}

/// Who is looking: their session (if logged in) and the page frame
/// made for them.
#[derive(Clone)]
pub(crate) struct Viewer {
    frame: std::sync::Arc<Frame>,
    /// The session id and the session.
    session: Option<(String, session::Session)>,
    /// Whether `[server] users` has anyone (a login is possible).
    logins: bool,
}

/// Pages anyone may load: the login form, the styles, and the public
/// status pages.
fn public(path: &str) -> bool {
    matches!(path, "/ui/login" | "/ui/style.css") || path.starts_with("/status/")
}

/// Find the viewer's session; with a token, turn away who is not logged
/// in; add the headers every answer carries.
async fn gate(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let config = app.engine.view().config();
    let users = &config.server.users;
    let session = app.sessions.of(req.headers(), users, app.https);
    let account = match &session {
        Some((_, s)) => format!(
            "<form method=\"post\" action=\"/ui/logout\"><span>{}</span> \
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
            esc(&s.user),
            s.csrf
        ),
        None if !users.is_empty() => "<a href=\"/ui/login\">Log in</a>".to_owned(),
        None => String::new(),
    };
    let viewer = Viewer {
        frame: std::sync::Arc::new(Frame {
            node: config.node.name.clone(),
            account,
        }),
        logins: !users.is_empty(),
        session,
    };
    if app.token.is_some() && viewer.session.is_none() && !public(req.uri().path()) {
        let mut r = if users.is_empty() {
            html_response(
                StatusCode::UNAUTHORIZED,
                page(
                    "Login needed",
                    &viewer.frame,
                    Nav::Checks,
                    "<h1>The dashboard needs a login</h1>\
                     <p>This server has a <code>[server] token</code>, which a browser cannot send. \
                     Give people a login: <code>vigie password-hash</code> prints the hash of a password \
                     to put in <code>[server] users = { alice = \"$argon2id$…\" }</code>; then reload vigie.</p>",
                ),
            )
        } else {
            // Where to log in; the events stream is not a page.
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_static("/ui/login"),
            );
            if req.uri().path() == "/ui/events" {
                *r.status_mut() = StatusCode::UNAUTHORIZED;
            }
            r
        };
        secure_headers(&mut r);
        return r;
    }
    req.extensions_mut().insert(viewer);
    let mut resp = next.run(req).await;
    secure_headers(&mut resp);
    resp
}

/// What every answer of the dashboard carries.
fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// Other pages are being read: come back (503).
fn busy(v: &Viewer) -> Response {
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Busy",
            &v.frame,
            Nav::Checks,
            "<h1>Busy</h1><p>Other pages are being read: reload in a moment.</p>",
        ),
    )
}

/// Read the store off the async threads; an error becomes a 503 page.
async fn read<T: Send + 'static>(
    app: &App,
    v: &Viewer,
    f: impl FnOnce(&vigie_store::Store) -> vigie_store::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let engine = app.engine.clone();
    // A few reads at once; more are told to come back (each holds a
    // thread of the blocking pool, which the probes share).
    let Ok(permit) = app.reads.clone().try_acquire_owned() else {
        return Err(busy(v));
    };
    let fail = |what: String| {
        tracing::error!("the dashboard cannot read the store: {what}");
        html_response(
            StatusCode::SERVICE_UNAVAILABLE,
            page(
                "Store unavailable",
                &v.frame,
                Nav::Checks,
                &format!("<h1>The store cannot be read</h1><p>{}</p>", esc(&what)),
            ),
        )
    };
    match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        engine.history(f)
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Failing first (the most severe first), then unknown, then ok; by
/// name within each.
fn ordered(mut statuses: Vec<CheckStatus>) -> Vec<CheckStatus> {
    let rank = |s: &CheckStatus| match s.state {
        CheckState::Failing => 0,
        CheckState::Unknown => 1,
        CheckState::Ok => 2,
    };
    statuses.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(b.severity.cmp(&a.severity))
            .then(a.name.cmp(&b.name))
    });
    statuses
}

/// A state as a badge: its word (never colour alone) and a class.
fn badge(state: CheckState) -> String {
    let s = state.as_str();
    format!("<span class=\"state {s}\">{s}</span>")
}

async fn overview(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    let statuses = ordered(app.engine.statuses());
    let names: Vec<String> = statuses.iter().map(|s| s.name.clone()).collect();
    let count = names.len();
    // Every run is a sample of its check's series: the sparklines read
    // the last ones there (the results table keeps only changes).
    let marks = match app.engine.series().cloned() {
        None => vec![Vec::new(); count],
        Some(series) => {
            let Ok(permit) = app.reads.clone().try_acquire_owned() else {
                return busy(&v);
            };
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                names
                    .iter()
                    .map(|n| {
                        series.recent_marks(n, SPARK_RUNS).unwrap_or_else(|e| {
                            tracing::error!(check = %n, error = %e, "the dashboard cannot read a check's last runs");
                            Vec::new()
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await
            // A crashed read shows every check without its sparkline,
            // never an empty page.
            .unwrap_or_else(|_| vec![Vec::new(); count])
        }
    };
    let config = app.engine.view().config();
    let descriptions = descriptions(&config.checks);
    let (page, _) = overview_page(
        &v.frame,
        &statuses,
        &marks,
        |name| descriptions.get(name).copied().unwrap_or(""),
        Timestamp::now(),
    );
    html_response(StatusCode::OK, page)
}

/// Each check's description by its name: looked up once per row, in a
/// map built once (a search of the list per row is quadratic: fifty
/// million name comparisons for ten thousand checks).
fn descriptions(checks: &[vigie_config::Check]) -> std::collections::HashMap<&str, &str> {
    checks
        .iter()
        .filter_map(|c| Some((c.name.as_str(), c.description.as_deref()?)))
        .collect()
}

/// Bytes a row of the overview takes besides its check's name (thrice),
/// message and description; a sparkline of thirty runs is most of it.
const ROW_BYTES: usize = 900;

/// The overview, written into one buffer sized for it up front (and
/// that size, which the tests hold it to). Its rows are small (the
/// sparkline's look is in the style sheet): 1,000 checks weigh ≈ 440 KiB
/// with a run each, ≈ 750 KiB with thirty. `describe` gives a check's
/// description (empty without).
fn overview_page<'d>(
    frame: &Frame,
    statuses: &[CheckStatus],
    marks: &[Vec<vigie_store::Mark>],
    describe: impl Fn(&str) -> &'d str,
    now: Timestamp,
) -> (String, usize) {
    let size = 2048
        + statuses
            .iter()
            .map(|s| ROW_BYTES + 3 * s.name.len() + s.last_message.len() + describe(&s.name).len())
            .sum::<usize>();
    let mut out = String::with_capacity(size);
    html::page_head(&mut out, "Checks", frame, Nav::Checks);
    let count = |st: CheckState| statuses.iter().filter(|s| s.state == st).count();
    let _ = write!(
        out,
        "<h1>Checks</h1>\n<p class=\"summary\" id=\"summary\"><span class=\"state failing\" id=\"n-failing\">{}</span> failing · \
         <span class=\"state unknown\" id=\"n-unknown\">{}</span> unknown · <span class=\"state ok\" id=\"n-ok\">{}</span> ok</p>\n",
        count(CheckState::Failing),
        count(CheckState::Unknown),
        count(CheckState::Ok),
    );
    out.push_str(
        "<table class=\"checks overview\"><thead><tr><th scope=\"col\">State</th><th scope=\"col\">Check</th>\
         <th scope=\"col\">Severity</th><th scope=\"col\">Last result</th><th scope=\"col\">Since</th>\
         <th scope=\"col\">Last runs</th></tr></thead><tbody>\n",
    );
    for (s, marks) in statuses.iter().zip(marks) {
        let description = describe(&s.name);
        let state = s.state.as_str();
        let _ = write!(
            out,
            "<tr data-check=\"{n}\"><td><span class=\"state {state}\">{state}</span></td>\
             <td><a href=\"/checks/{u}\">{n}</a><small>{kind}{sep}{d}</small></td><td>{sev}</td>\
             <td class=\"msg\">{m}</td><td class=\"since\" title=\"{since}\">{ago}</td><td>",
            n = html::Esc(&s.name),
            u = html::UrlSegment(&s.name),
            kind = s.kind,
            sep = if description.is_empty() { "" } else { " · " },
            d = html::Esc(description),
            sev = s.severity.as_str(),
            m = html::Esc(&s.last_message),
            since = html::When(s.since),
            ago = html::Ago(s.since, now),
        );
        svg::sparkline(&mut out, marks, SPARK_RUNS);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if statuses.is_empty() {
        out.push_str("<p>No checks are configured.</p>\n");
    }
    out.push_str(html::PAGE_END);
    (out, size)
}

#[derive(serde::Deserialize)]
struct RangeQuery {
    range: Option<String>,
}

/// The ranges a history can show: (as written, span).
const RANGES: [(&str, Duration); 4] = [
    ("1h", Duration::from_hours(1)),
    ("24h", Duration::from_hours(24)),
    ("7d", Duration::from_hours(7 * 24)),
    ("90d", Duration::from_hours(90 * 24)),
];

async fn check_page(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let config = app.engine.view().config();
    let Some(status) = app.engine.view().get(&name) else {
        return html_response(
            StatusCode::NOT_FOUND,
            page(
                "No such check",
                &v.frame,
                Nav::Checks,
                &format!(
                    "<h1>No check named {}</h1><p><a href=\"/\">All checks</a></p>",
                    esc(&name)
                ),
            ),
        );
    };
    let range = q.range.as_deref().unwrap_or("24h");
    let Some(&(range, span)) = RANGES.iter().find(|(r, _)| *r == range) else {
        let known: Vec<&str> = RANGES.iter().map(|(r, _)| *r).collect();
        return (
            StatusCode::BAD_REQUEST,
            format!("range must be one of {}\n", known.join(", ")),
        )
            .into_response();
    };
    let to = Timestamp::now();
    let from = to.saturating_sub(span);
    let width = (span.as_millis() as i64 / i64::from(BUCKETS)).max(1);
    let check = name.clone();
    // Every range from the check's series: each run is a raw sample
    // (kept `[series] retention.raw`), then the roll-ups.
    let series = app.engine.series().cloned();
    let (buckets, incidents) = match read(&app, &v, move |store| {
        let b = match &series {
            Some(series) => series_buckets(series, &check, from, to, width),
            None => Vec::new(),
        };
        let i: Vec<_> = store
            .recent_incidents(500)?
            .into_iter()
            .filter(|i| i.check == check)
            .take(20)
            .collect();
        Ok((b, i))
    })
    .await
    {
        Ok(v) => v,
        Err(page) => return page,
    };
    let declared = config.checks.iter().find(|c| c.name == name);
    let runs: u64 = buckets.iter().map(|b| b.runs).sum();
    let failures: u64 = buckets.iter().map(|b| b.failures).sum();
    let uptime = if runs == 0 {
        "no runs".to_owned()
    } else {
        format!(
            "{:.3} % of {runs} runs passed",
            (runs - failures) as f64 * 100.0 / runs as f64
        )
    };
    let mut body = check_head(&status, declared.and_then(|c| c.description.as_deref()));
    writes::maintenance_section(&mut body, &app, &v, &name);
    body.push_str("<h2>History</h2>\n<nav class=\"ranges\" aria-label=\"range\">");
    for (r, _) in RANGES {
        let current = if r == range {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<a href=\"/checks/{}?range={r}\"{current}>{r}</a> ",
            url_segment(&name)
        );
    }
    let _ = writeln!(
        body,
        "</nav>\n<p class=\"uptime\">Last {range}: {uptime}</p>\n<figure>{}<figcaption>Duration of each run (mean and slowest per interval); red bands: failed runs.</figcaption></figure>",
        svg::history(&buckets, from, to, width)
    );
    body.push_str("<h2>Incidents</h2>\n");
    incident_table(&mut body, &incidents, false);
    html_response(
        StatusCode::OK,
        page(&status.name, &v.frame, Nav::Checks, &body),
    )
}

/// The host's CPU, memory, disks, network and load over a range, read
/// from the series the daemon keeps of node_exporter's metrics.
async fn host_page(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let range = q.range.as_deref().unwrap_or("24h");
    let Some(&(range, span)) = RANGES.iter().find(|(r, _)| *r == range) else {
        let known: Vec<&str> = RANGES.iter().map(|(r, _)| *r).collect();
        return (
            StatusCode::BAD_REQUEST,
            format!("range must be one of {}\n", known.join(", ")),
        )
            .into_response();
    };
    let mut body = String::from("<h1>Host</h1>\n<nav class=\"ranges\" aria-label=\"range\">");
    for (r, _) in RANGES {
        let current = if r == range {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(body, "<a href=\"/host?range={r}\"{current}>{r}</a> ");
    }
    body.push_str("</nav>\n");
    let Some(series) = app.engine.series().cloned() else {
        body.push_str("<p>The series store could not be opened: see the daemon's log.</p>");
        return html_response(StatusCode::OK, page("Host", &v.frame, Nav::Host, &body));
    };
    let to = Timestamp::now();
    let from = to.saturating_sub(span);
    let step = (span.as_millis() as i64 / 240).max(1);
    let Ok(permit) = app.reads.clone().try_acquire_owned() else {
        body.push_str("<p>Other pages are being read: reload in a moment.</p>");
        return html_response(
            StatusCode::SERVICE_UNAVAILABLE,
            page("Host", &v.frame, Nav::Host, &body),
        );
    };
    let charts = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        host::charts(&series, from, to, step)
    })
    .await
    .unwrap_or_default();
    for (chart, caption) in charts {
        let _ = writeln!(
            body,
            "<figure>{chart}<figcaption>{}</figcaption></figure>",
            esc(&caption)
        );
    }
    html_response(StatusCode::OK, page("Host", &v.frame, Nav::Host, &body))
}

/// A check's runs in buckets of `width` ms, read from its series
/// ([`vigie_engine::series::Series::buckets`]). A series that cannot be
/// read draws as no runs, and is logged.
fn series_buckets(
    series: &vigie_engine::series::Series,
    check: &str,
    from: Timestamp,
    to: Timestamp,
    width: i64,
) -> Vec<vigie_store::Bucket> {
    series
        .buckets(check, from, to, width)
        .map_err(
            |e| tracing::error!(check, error = %e, "the dashboard cannot read a check's series"),
        )
        .unwrap_or_default()
}

/// A check's title, description and facts.
fn check_head(status: &CheckStatus, description: Option<&str>) -> String {
    let mut body = format!(
        "<p><a href=\"/\">← All checks</a></p>\n<h1>{n} {badge}</h1>\n",
        n = esc(&status.name),
        badge = badge(status.state),
    );
    if let Some(d) = description {
        let _ = writeln!(body, "<p>{}</p>", esc(d));
    }
    let _ = writeln!(
        body,
        "<dl class=\"facts\"><dt>Last result</dt><dd>{m}</dd><dt>State since</dt><dd>{since}</dd>\
         <dt>Kind</dt><dd>{kind}, every {every}s</dd><dt>Severity</dt><dd>{sev}</dd>\
         <dt>Runs</dt><dd>{total} ({fails} failed)</dd></dl>",
        m = esc(&status.last_message),
        since = esc(&when(status.since)),
        kind = status.kind,
        every = status.every_seconds,
        sev = status.severity.as_str(),
        total = status.runs_total,
        fails = status.failures_total,
    );
    body
}

fn incident_table(body: &mut String, incidents: &[vigie_store::Incident], with_check: bool) {
    if incidents.is_empty() {
        body.push_str("<p>None.</p>\n");
        return;
    }
    body.push_str("<table class=\"incidents\"><thead><tr><th scope=\"col\">#</th>");
    if with_check {
        body.push_str("<th scope=\"col\">Check</th>");
    }
    body.push_str(
        "<th scope=\"col\">State</th><th scope=\"col\">Severity</th><th scope=\"col\">Opened</th>\
         <th scope=\"col\">Resolved</th><th scope=\"col\">Last error</th></tr></thead><tbody>\n",
    );
    for i in incidents {
        let _ = write!(
            body,
            "<tr><td><a href=\"/incidents/{id}\">{id}</a></td>",
            id = i.id
        );
        if with_check {
            let _ = write!(
                body,
                "<td><a href=\"/checks/{}\">{}</a></td>",
                url_segment(&i.check),
                esc(&i.check)
            );
        }
        let state = if i.resolved.is_some() {
            "resolved"
        } else if i.acked.is_some() {
            "acknowledged"
        } else {
            "open"
        };
        let _ = writeln!(
            body,
            "<td><span class=\"incident {state}\">{state}</span></td><td>{sev}</td><td>{opened}</td><td>{resolved}</td><td class=\"msg\">{err}</td></tr>",
            sev = esc(&i.severity),
            opened = esc(&when(i.opened)),
            resolved = i.resolved.map(when).map_or_else(String::new, |w| esc(&w)),
            err = esc(&i.last_error),
        );
    }
    body.push_str("</tbody></table>\n");
}

async fn incidents_page(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    let incidents = match read(&app, &v, |store| store.recent_incidents(200)).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let mut body = String::from("<h1>Incidents</h1>\n");
    incident_table(&mut body, &incidents, true);
    html_response(
        StatusCode::OK,
        page("Incidents", &v.frame, Nav::Incidents, &body),
    )
}

async fn incident_page(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<i64>,
) -> Response {
    let (incident, events, notes) = match read(&app, &v, move |store| {
        Ok((
            store.incident(id)?,
            store.incident_events(id)?,
            store.notes(id)?,
        ))
    })
    .await
    {
        Ok(v) => v,
        Err(page) => return page,
    };
    let Some(i) = incident else {
        return html_response(
            StatusCode::NOT_FOUND,
            page(
                "No such incident",
                &v.frame,
                Nav::Incidents,
                &format!(
                    "<h1>No incident #{id}</h1><p><a href=\"/incidents\">All incidents</a></p>"
                ),
            ),
        );
    };
    let mut body = format!(
        "<p><a href=\"/incidents\">← All incidents</a></p>\n<h1>Incident #{id}: <a href=\"/checks/{u}\">{c}</a></h1>\n",
        u = url_segment(&i.check),
        c = esc(&i.check),
    );
    let _ = writeln!(
        body,
        "<dl class=\"facts\"><dt>Severity</dt><dd>{sev}</dd><dt>Opened</dt><dd>{opened}</dd>\
         <dt>Resolved</dt><dd>{resolved}</dd><dt>Acknowledged</dt><dd>{acked}</dd><dt>Last error</dt><dd>{err}</dd></dl>",
        sev = esc(&i.severity),
        opened = esc(&when(i.opened)),
        resolved = match (&i.resolved, &i.resolution) {
            (Some(t), Some(r)) => format!("{} ({})", esc(&when(*t)), esc(r)),
            (Some(t), None) => esc(&when(*t)),
            _ => "not yet".to_owned(),
        },
        acked = match (&i.acked, &i.ack_note) {
            (Some(t), Some(n)) if !n.is_empty() => format!("{}: {}", esc(&when(*t)), esc(n)),
            (Some(t), _) => esc(&when(*t)),
            _ => "no".to_owned(),
        },
        err = esc(&i.last_error),
    );
    body.push_str("<h2>Timeline</h2>\n<ol class=\"timeline\">\n");
    for e in &events {
        let _ = writeln!(
            body,
            "<li><time>{}</time> <span class=\"event {k}\">{k}</span> {}</li>",
            esc(&when(e.at)),
            esc(&e.detail),
            k = esc(e.kind.as_str()),
        );
    }
    body.push_str("</ol>\n");
    body.push_str("<h2>Public notes</h2>\n");
    if notes.is_empty() {
        body.push_str("<p>None yet: the status pages show only the services' states.</p>\n");
    } else {
        body.push_str("<ol class=\"notes\">\n");
        for n in &notes {
            let _ = writeln!(
                body,
                "<li><time>{}</time> <span class=\"muted\">{}</span> <span class=\"note-text\">{}</span></li>",
                esc(&when(n.at)),
                esc(&n.author),
                esc(&n.text),
            );
        }
        body.push_str("</ol>\n");
    }
    if i.resolved.is_none() && i.acked.is_none() {
        account::ack_form(&mut body, &v, id);
    }
    writes::note_form(&mut body, &v, id, i.resolved.is_none());
    html_response(
        StatusCode::OK,
        page(&format!("Incident #{id}"), &v.frame, Nav::Incidents, &body),
    )
}

/// What the live script needs of a check to redraw its row.
#[derive(serde::Serialize, PartialEq)]
struct Live {
    name: String,
    state: &'static str,
    message: String,
    /// When the state began (ms since the epoch): the script writes the
    /// age itself, against the event's `now`.
    since: i64,
    since_title: String,
}

fn live_view(s: &CheckStatus) -> Live {
    Live {
        name: s.name.clone(),
        state: s.state.as_str(),
        message: s.last_message.clone(),
        since: s.since.0,
        since_title: when(s.since),
    }
}

/// Server-sent events: every [`LIVE_EVERY`], `{"now": ms, "checks":
/// [...]}` with the checks whose row changed since the last event (all
/// of them first).
async fn live(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    // A stream opened in a session ends with it (logout, expiry, a user
    // removed or given a new password).
    let session = v.session.map(|(id, _)| id);
    let start = (app, Sent::new(), tokio::time::Instant::now(), true);
    let stream = futures_util::stream::unfold(start, move |state| tick(state, session.clone()));
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// What the live stream last sent of each check.
type Sent = std::collections::HashMap<String, Live>;

/// One event of the live stream, or its end.
async fn tick(
    (app, mut sent, started, first): (App, Sent, tokio::time::Instant, bool),
    session: Option<String>,
) -> Option<(
    Result<Event, Infallible>,
    (App, Sent, tokio::time::Instant, bool),
)> {
    if !first {
        tokio::time::sleep(LIVE_EVERY).await;
    }
    if started.elapsed() > LIVE_FOR {
        return None;
    }
    if let Some(id) = &session
        && app
            .sessions
            .alive(id, &app.engine.view().config().server.users)
            .is_none()
    {
        return None;
    }
    let changed: Vec<Live> = app
        .engine
        .statuses()
        .iter()
        .map(live_view)
        .filter(|l| sent.get(&l.name) != Some(l))
        .collect();
    let data = serde_json::json!({ "now": Timestamp::now().0, "checks": &changed });
    for l in changed {
        sent.insert(l.name.clone(), l);
    }
    let event = Event::default().event("checks").data(data.to_string());
    Some((Ok(event), (app, sent, started, false)))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashMap;

    use vigie_core::Severity;
    use vigie_store::Mark;

    use super::*;

    fn status(i: usize) -> CheckStatus {
        CheckStatus {
            name: format!("c{i:04}"),
            kind: "command",
            severity: Severity::Average,
            state: if i.is_multiple_of(100) {
                CheckState::Failing
            } else {
                CheckState::Ok
            },
            since: Timestamp(1_764_597_541_000),
            consecutive_ok: 1,
            consecutive_fail: 0,
            last_run: Some(Timestamp(1_764_597_541_000)),
            last_ok: Some(true),
            last_message: "exit status 0".to_owned(),
            last_duration_seconds: 0.002,
            runs_total: 30,
            failures_total: 0,
            metrics: Vec::new(),
            every_seconds: 60.0,
            depends_on: Vec::new(),
        }
    }

    /// The overview of 1,000 checks with thirty runs each: what it
    /// weighs, and how much it looks up. Before, a row was 2.3 KB (a
    /// `<rect>` a run, its label twice) and each row searched the list
    /// of checks.
    #[test]
    fn the_overview_of_a_thousand_checks_is_light_and_linear() {
        let statuses: Vec<CheckStatus> = ordered((0..1000).map(status).collect());
        let marks: Vec<Vec<Mark>> = (0..1000)
            .map(|i| {
                (0..30)
                    .map(|r| Mark {
                        at: Timestamp(r),
                        ok: (i + r) % 10 != 0,
                        duration_ms: 1.0 + (r % 7) as f64,
                    })
                    .collect()
            })
            .collect();
        let described: HashMap<String, String> = (0..1000)
            .step_by(2)
            .map(|i| (format!("c{i:04}"), format!("the service number {i}")))
            .collect();
        let lookups = Cell::new(0_usize);
        let describe = |name: &str| {
            lookups.set(lookups.get() + 1);
            described.get(name).map_or("", String::as_str)
        };
        let frame = Frame {
            node: "alpha".into(),
            account: String::new(),
        };
        let (page, capacity) = overview_page(
            &frame,
            &statuses,
            &marks,
            describe,
            Timestamp(1_764_597_600_000),
        );

        assert_eq!(page.matches("<tr data-check=").count(), 1000);
        assert_eq!(page.matches("<svg class=\"spark\"").count(), 1000);
        assert_eq!(page.matches("<title>last 30 runs: ").count(), 1000);
        assert!(
            page.contains("the service number 998"),
            "descriptions shown"
        );
        assert!(page.contains("id=\"n-failing\">10<"));
        // A row with thirty runs, under 850 bytes (2,300 before).
        assert!(
            page.len() < 850 * 1000,
            "{} bytes for 1,000 rows; a row:\n{}",
            page.len(),
            page.lines()
                .find(|l| l.starts_with("<tr data-check="))
                .unwrap_or("")
        );
        // One buffer, sized once: it never had to grow.
        assert_eq!(page.capacity(), capacity, "{} bytes written", page.len());
        // Each row looks its description up twice (sizing, writing): a
        // search of the whole list per row would have been 1,000 each.
        assert_eq!(lookups.get(), 2 * 1000);
    }
}
