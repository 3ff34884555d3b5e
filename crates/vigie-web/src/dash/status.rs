//! Public status pages (`[status_page.NAME]`): `/status/NAME` (HTML, no
//! script), `/status/NAME.json` and `/status/NAME/badge/SERVICE.svg`.
//! Served without a login, even with `[server] token`: that is their
//! point. They show the page's title and description, the services'
//! names, states and uptime, and each open incident of their checks as
//! a "current incident" (the services it touches, when it began, its
//! public notes), and nothing else: never a check's name or message, a
//! note's author, a host or the node's name.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use vigie_config::{StatusPage, StatusService};
use vigie_core::{CheckState, Timestamp};

use super::html::{esc, url_segment, when};
use super::html_response;
use crate::App;

/// Days of uptime shown.
const DAYS: u32 = 90;
const DAY_MS: i64 = 86_400_000;

/// A service's state, as the public reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Health {
    Operational,
    Degraded,
    Down,
    Unknown,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }

    /// The badge's colour (white text on it passes WCAG AA).
    fn colour(self) -> &'static str {
        match self {
            Self::Operational => "#1a7f37",
            Self::Degraded => "#9a6700",
            Self::Down => "#cf222e",
            Self::Unknown => "#57606a",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Self::Down => 0,
            Self::Degraded => 1,
            Self::Unknown => 2,
            Self::Operational => 3,
        }
    }
}

/// One service now: its health and since when (for a problem, since the
/// first of its failing checks began to fail).
#[derive(serde::Serialize)]
struct Now {
    state: Health,
    since: Option<i64>,
}

fn now_of(service: &StatusService, statuses: &[vigie_engine::CheckStatus]) -> Now {
    let mine: Vec<_> = service
        .checks
        .iter()
        .filter_map(|c| statuses.iter().find(|s| &s.name == c))
        .collect();
    let failing: Vec<_> = mine
        .iter()
        .filter(|s| s.state == CheckState::Failing)
        .collect();
    let ok = mine.iter().filter(|s| s.state == CheckState::Ok).count();
    let n = service.checks.len();
    let state = if n > 0 && failing.len() == n {
        Health::Down
    } else if !failing.is_empty() {
        Health::Degraded
    } else if n > 0 && ok == n {
        Health::Operational
    } else {
        Health::Unknown
    };
    let since = match state {
        Health::Down | Health::Degraded => failing.iter().map(|s| s.since.0).min(),
        Health::Operational => mine.iter().map(|s| s.since.0).max(),
        Health::Unknown => None,
    };
    Now { state, since }
}

/// One day of a service: the share of its checks' runs that passed.
#[derive(Clone, Copy, serde::Serialize)]
struct Day {
    /// Its start (ms since the epoch, midnight UTC).
    start: i64,
    runs: u64,
    failures: u64,
}

impl Day {
    fn uptime(self) -> Option<f64> {
        (self.runs > 0).then(|| (self.runs - self.failures) as f64 * 100.0 / self.runs as f64)
    }
}

/// The [`DAYS`] days up to today (UTC), oldest first: each service's
/// runs per day, read from its checks' series (their hourly roll-ups
/// outlast the results: two years by default). Without the series
/// store, every day is "no data".
fn days_of(
    series: Option<&vigie_engine::series::Series>,
    page: &StatusPage,
    today: i64,
) -> Vec<Vec<Day>> {
    let from = today - i64::from(DAYS - 1) * DAY_MS;
    let to = today + DAY_MS;
    let mut out = Vec::with_capacity(page.services.len());
    for s in &page.services {
        let mut days: Vec<Day> = (0..i64::from(DAYS))
            .map(|i| Day {
                start: from + i * DAY_MS,
                runs: 0,
                failures: 0,
            })
            .collect();
        let checks = series.into_iter().flat_map(|series| {
            s.checks.iter().flat_map(move |c| {
                super::series_buckets(series, c, Timestamp(from), Timestamp(to), DAY_MS)
            })
        });
        for b in checks {
            let i = ((b.start.0 - from) / DAY_MS) as usize;
            if let Some(d) = days.get_mut(i) {
                d.runs += b.runs;
                d.failures += b.failures;
            }
        }
        out.push(days);
    }
    out
}

/// How long a page's day bars are reused: today's changes slowly, and
/// the page is public (each read takes the series store's lock).
const DAYS_KEPT: std::time::Duration = std::time::Duration::from_secs(10);

/// The pages' day bars read in the last [`DAYS_KEPT`], by page, day and
/// the page's services (a reload that changes them reads anew).
type DaysCache = std::collections::HashMap<String, (std::time::Instant, Vec<Vec<Day>>)>;
static DAYS_CACHE: std::sync::Mutex<Option<DaysCache>> = std::sync::Mutex::new(None);

/// `read()` of `page` at `today`, or its copy of less than a minute.
fn cached_days(
    page: &StatusPage,
    today: i64,
    read: impl FnOnce() -> Vec<Vec<Day>>,
) -> Vec<Vec<Day>> {
    let key = format!("{}\0{today}\0{:?}", page.name, page.services);
    let fresh = |at: &std::time::Instant| at.elapsed() < DAYS_KEPT;
    if let Some((_, days)) = DAYS_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_default()
        .get(&key)
        .filter(|(at, _)| fresh(at))
    {
        return days.clone();
    }
    let days = read();
    let mut cache = DAYS_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = cache.get_or_insert_default();
    cache.retain(|_, (at, _)| fresh(at));
    cache.insert(key, (std::time::Instant::now(), days.clone()));
    days
}

/// An open incident as the public reads it: the services it touches
/// (by their public names), when it began, and its public notes.
struct Current {
    services: Vec<String>,
    opened: Timestamp,
    notes: Vec<vigie_store::Note>,
}

/// The open incidents of `page`'s checks, oldest first.
fn current_of(
    page: &StatusPage,
    open: Vec<(vigie_store::Incident, Vec<vigie_store::Note>)>,
) -> Vec<Current> {
    open.into_iter()
        .map(|(i, notes)| Current {
            services: page
                .services
                .iter()
                .filter(|s| s.checks.contains(&i.check))
                .map(|s| s.name.clone())
                .collect(),
            opened: i.opened,
            notes,
        })
        .collect()
}

/// Everything a page shows, gathered once.
struct View {
    page: StatusPage,
    now: Vec<Now>,
    days: Vec<Vec<Day>>,
    current: Vec<Current>,
    retention_days: u64,
    at: Timestamp,
}

impl View {
    fn overall(&self) -> Health {
        self.now
            .iter()
            .map(|n| n.state)
            .min_by_key(|h| h.rank())
            .unwrap_or(Health::Unknown)
    }
}

fn uptime_90(days: &[Day]) -> Option<f64> {
    let runs: u64 = days.iter().map(|d| d.runs).sum();
    let failures: u64 = days.iter().map(|d| d.failures).sum();
    Day {
        start: 0,
        runs,
        failures,
    }
    .uptime()
}

/// A plain answer that says nothing of the server.
fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// The page named `name` and what it shows now; a 404 or a 503 (that
/// says nothing of why) otherwise.
async fn gather(app: &App, name: &str) -> Result<View, Response> {
    let config = app.engine.view().config();
    let Some(page) = config.status_pages.get(name).cloned() else {
        return Err(plain(StatusCode::NOT_FOUND, "No such status page.\n"));
    };
    let statuses = app.engine.statuses();
    let now: Vec<Now> = page.services.iter().map(|s| now_of(s, &statuses)).collect();
    let at = Timestamp::now();
    let today = at.0 - at.0.rem_euclid(DAY_MS);
    let Ok(permit) = app.reads.clone().try_acquire_owned() else {
        return Err(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy: reload in a moment.\n",
        ));
    };
    let engine = app.engine.clone();
    let p = page.clone();
    let read = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let days = cached_days(&p, today, || days_of(engine.series(), &p, today));
        engine
            .history(|store| {
                let checks: Vec<&str> = p
                    .services
                    .iter()
                    .flat_map(|s| s.checks.iter().map(String::as_str))
                    .collect();
                store.open_incidents_of(&checks, vigie_engine::NOTES_SHOWN)
            })
            .map(|open| (days, open))
    })
    .await;
    let (days, open) = match read {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::error!(page = %page.name, "a status page cannot read the store: {e}");
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "The history cannot be read now: reload in a moment.\n",
            ));
        }
        Err(e) => {
            tracing::error!(page = %page.name, "a status page's read failed: {e}");
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "The history cannot be read now: reload in a moment.\n",
            ));
        }
    };
    Ok(View {
        current: current_of(&page, open),
        page,
        now,
        days,
        retention_days: config
            .series
            .retention
            .hour
            .std()
            .as_secs()
            .div_ceil(86_400),
        at,
    })
}

/// `/status/NAME` (HTML) or `/status/NAME.json`.
pub(super) async fn page(State(app): State<App>, Path(name): Path<String>) -> Response {
    let (name, json) = match name.strip_suffix(".json") {
        Some(n) => (n.to_owned(), true),
        None => (name, false),
    };
    let view = match gather(&app, &name).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if json {
        (
            [(header::CACHE_CONTROL, "no-cache")],
            axum::Json(to_json(&view)),
        )
            .into_response()
    } else {
        html_response(StatusCode::OK, to_html(&view))
    }
}

fn date(ms: i64) -> String {
    when(Timestamp(ms)).chars().take(10).collect()
}

fn to_json(v: &View) -> serde_json::Value {
    let services: Vec<_> = v
        .page
        .services
        .iter()
        .zip(&v.now)
        .zip(&v.days)
        .map(|((s, now), days)| {
            serde_json::json!({
                "name": s.name,
                "state": now.state,
                "since": now.since,
                "uptime_90d": uptime_90(days),
                "days": days.iter().map(|d| serde_json::json!({
                    "date": date(d.start),
                    "uptime": d.uptime(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "title": v.page.title,
        "description": v.page.description,
        "state": v.overall(),
        "updated": v.at.0,
        "history_days": v.retention_days,
        "services": services,
        "incidents": v.current.iter().map(|c| serde_json::json!({
            "services": c.services,
            "since": c.opened.millis(),
            "notes": c.notes.iter().map(|n| serde_json::json!({
                "at": n.at.millis(),
                "text": n.text,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "no data".to_owned(), |p| format!("{p:.2} %"))
}

/// A day's bar class: no data, all passed, a few failed, many failed.
fn day_class(d: Day) -> &'static str {
    match d.uptime() {
        None => "none",
        Some(p) if p >= 100.0 => "up",
        Some(p) if p >= 95.0 => "some",
        Some(_) => "low",
    }
}

/// The days as bars, each with its date and uptime as a tooltip.
fn bars(days: &[Day], label: &str) -> String {
    let mut s = format!(
        "<svg class=\"days\" viewBox=\"0 0 {w} 34\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{l}\">",
        w = days.len() * 4,
        l = esc(label),
    );
    for (i, d) in days.iter().enumerate() {
        let _ = write!(
            s,
            "<rect class=\"{c}\" x=\"{x}\" y=\"0\" width=\"3\" height=\"34\"><title>{t}: {p}</title></rect>",
            c = day_class(*d),
            x = i * 4,
            t = date(d.start),
            p = percent(d.uptime()),
        );
    }
    s.push_str("</svg>");
    s
}

fn headline(h: Health) -> &'static str {
    match h {
        Health::Operational => "All services are operational",
        Health::Degraded | Health::Down => "Some services have problems",
        Health::Unknown => "Some services are not checked yet",
    }
}

fn to_html(v: &View) -> String {
    let name = url_segment(&v.page.name);
    let overall = v.overall();
    let mut body = format!("<h1>{t}</h1>\n", t = esc(&v.page.title));
    if let Some(d) = &v.page.description {
        let _ = writeln!(body, "<p class=\"lead\">{}</p>", esc(d));
    }
    let _ = writeln!(
        body,
        "<p class=\"overall {s}\">{h}</p>",
        s = overall.as_str(),
        h = headline(overall),
    );
    current_html(&mut body, &v.current);
    body.push_str("<ul class=\"services\">\n");
    for ((s, now), days) in v.page.services.iter().zip(&v.now).zip(&v.days) {
        let since = match (now.state, now.since) {
            (Health::Down | Health::Degraded, Some(t)) => format!(
                "<p class=\"since\">{} since <time>{}</time></p>",
                if now.state == Health::Down {
                    "Down"
                } else {
                    "Degraded"
                },
                esc(&when(Timestamp(t)))
            ),
            _ => String::new(),
        };
        let up = percent(uptime_90(days));
        let _ = writeln!(
            body,
            "<li><div class=\"svc\"><h2>{n}</h2> <span class=\"health {st}\">{st}</span></div>{since}\
             <p class=\"up\">{up} uptime over {DAYS} days</p>{bars}\
             <div class=\"axis\" aria-hidden=\"true\"><span>{DAYS} days ago</span><span>today</span></div></li>",
            n = esc(&s.name),
            st = now.state.as_str(),
            bars = bars(
                days,
                &format!("{}: {up} over {DAYS} days, one bar a day", s.name)
            ),
        );
    }
    // Said only when it cuts the bars short.
    let kept = if v.retention_days < u64::from(DAYS) {
        format!(
            " History is kept for {r} day{plural}; older days show as no data.",
            r = v.retention_days,
            plural = if v.retention_days == 1 { "" } else { "s" },
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        body,
        "</ul>\n<footer><p>Each bar is a day (UTC): the share of checks that passed.{kept}</p>\
         <p>Updated <time>{at}</time> · <a href=\"/status/{name}.json\">JSON</a></p></footer>",
        at = esc(&when(v.at)),
    );
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head>\n\
         <body class=\"status-page\"><main>\n{body}</main></body></html>\n",
        t = esc(&v.page.title),
    )
}

/// The current incidents, each with its notes, newest note first.
fn current_html(body: &mut String, current: &[Current]) {
    for c in current {
        let _ = writeln!(
            body,
            "<section class=\"current\" aria-label=\"current incident\"><h2>Current incident: {s}</h2>\
             <p class=\"since\">Since <time>{at}</time></p>",
            s = esc(&c.services.join(", ")),
            at = esc(&when(c.opened)),
        );
        if c.notes.is_empty() {
            body.push_str("<p class=\"muted\">We are looking into it.</p>");
        } else {
            body.push_str("<ol class=\"notes\" reversed>");
            for n in c.notes.iter().rev() {
                let _ = write!(
                    body,
                    "<li><time>{}</time> <span class=\"note-text\">{}</span></li>",
                    esc(&when(n.at)),
                    esc(&n.text)
                );
            }
            body.push_str("</ol>");
        }
        body.push_str("</section>\n");
    }
}

/// `/status/NAME/badge/SERVICE.svg`: "SERVICE | state", coloured.
pub(super) async fn badge(
    State(app): State<App>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    let config = app.engine.view().config();
    let service = file.strip_suffix(".svg").and_then(|s| {
        config
            .status_pages
            .get(&name)
            .and_then(|p| p.services.iter().find(|x| x.name == s))
    });
    let Some(service) = service else {
        return plain(StatusCode::NOT_FOUND, "No such status page or service.\n");
    };
    let now = now_of(service, &app.engine.statuses());
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        badge_svg(&service.name, now.state),
    )
        .into_response()
}

/// A text's width in the badge's font, near enough (Verdana 11px).
fn text_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | '\'' | '|' | '!' => 4,
            'm' | 'w' | 'M' | 'W' => 10,
            c if c.is_uppercase() => 8,
            ' ' => 4,
            _ => 7,
        })
        .sum()
}

fn badge_svg(service: &str, state: Health) -> String {
    let word = state.as_str();
    let lw = text_width(service) + 12;
    let rw = text_width(word) + 12;
    let w = lw + rw;
    let label = esc(service);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{label}: {word}\">\
         <title>{label}: {word}</title>\
         <rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{lw}\" width=\"{rw}\" height=\"20\" fill=\"{c}\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
         <text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{rx}\" y=\"14\">{word}</text></g></svg>\n",
        c = state.colour(),
        lx = lw / 2,
        rx = lw + rw / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_uptime_is_its_share_of_passed_runs() {
        let d = |runs, failures| Day {
            start: 0,
            runs,
            failures,
        };
        assert_eq!(d(0, 0).uptime(), None);
        assert_eq!(d(4, 1).uptime(), Some(75.0));
        assert_eq!(day_class(d(0, 0)), "none");
        assert_eq!(day_class(d(100, 0)), "up");
        assert_eq!(day_class(d(100, 3)), "some");
        assert_eq!(day_class(d(100, 30)), "low");
        assert_eq!(uptime_90(&[d(10, 0), d(0, 0), d(10, 10)]), Some(50.0));
    }

    #[test]
    fn a_badge_escapes_its_service_name() {
        let svg = badge_svg("<a&b>", Health::Down);
        assert!(svg.contains("&lt;a&amp;b&gt;"), "{svg}");
        assert!(!svg.contains("<a&b>"));
        assert!(svg.contains("#cf222e"));
    }
}
