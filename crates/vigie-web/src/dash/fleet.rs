//! The fleet view (`/ui/fleet`): this node's checks and open incidents,
//! then each `[[peer]]`'s, pulled from its `/api/v1/peer/fleet` with the
//! token both share (as votes are), all peers at once, each cut at
//! [`FLEET_TIMEOUT`], the whole kept [`FLEET_CACHE_FOR`]. A peer that
//! does not answer, or answers anything but a report of its own name
//! within [`FLEET_LIMIT`] bytes, shows as unreachable with the reason;
//! it never breaks the page. What a peer says is text, escaped.
//!
//! A report carries states, never a check's message or an incident's
//! error (probe output may say more than a peer should know): those stay
//! on each node, behind its own dashboard.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use vigie_core::{CheckState, Timestamp};

use super::html::{Nav, ago, esc, page, url_segment, when};
use super::{Viewer, badge, html_response, ordered};
use crate::App;

/// How long a peer has to answer the fleet view.
const FLEET_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the peers' answers are shown before being asked again.
const FLEET_CACHE_FOR: Duration = Duration::from_secs(5);
/// The largest report read from a peer (a thousand checks take ~200 KB).
pub(crate) const FLEET_LIMIT: usize = 2 * 1024 * 1024;
/// The most checks and incidents taken from one peer's report.
const MAX_ROWS: usize = 10_000;
/// The longest text kept of a peer's name or error.
const MAX_TEXT: usize = 300;

/// What a node tells its peers' fleet views.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    node: String,
    checks: Vec<Check>,
    incidents: Vec<Incident>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Check {
    name: String,
    /// Its probe's kind (`http`, `tcp`…); empty from a peer too old to say.
    #[serde(default)]
    kind: String,
    state: String,
    severity: String,
    /// When the state began (ms since the epoch).
    since: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Incident {
    id: i64,
    check: String,
    severity: String,
    state: String,
    opened: i64,
}

/// This node's report: every check, and `open` (the incidents not
/// resolved); no message nor error.
pub(crate) fn report(
    node: &str,
    statuses: &[vigie_engine::CheckStatus],
    open: &[vigie_store::Incident],
) -> Report {
    Report {
        node: node.to_owned(),
        checks: statuses
            .iter()
            .map(|s| Check {
                name: s.name.clone(),
                kind: s.kind.to_owned(),
                state: s.state.as_str().to_owned(),
                severity: s.severity.as_str().to_owned(),
                since: s.since.millis(),
            })
            .collect(),
        incidents: open
            .iter()
            .map(|i| Incident {
                id: i.id,
                check: i.check.clone(),
                severity: i.severity.clone(),
                state: i.state.clone(),
                opened: i.opened.millis(),
            })
            .collect(),
    }
}

/// A peer's report read from its answer, or why it is none.
fn parse(peer: &str, body: &[u8]) -> Result<Report, String> {
    let r: Report = serde_json::from_slice(body).map_err(|e| {
        format!(
            "answered something that is no fleet report ({e}): {:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        )
    })?;
    if r.node != peer {
        return Err(format!(
            "answered as node {:?}: not the peer configured as `{peer}`",
            r.node.chars().take(MAX_TEXT).collect::<String>()
        ));
    }
    if r.checks.len() > MAX_ROWS || r.incidents.len() > MAX_ROWS {
        return Err(format!("reported more than {MAX_ROWS} checks or incidents"));
    }
    if let Some(c) = r
        .checks
        .iter()
        .find(|c| CheckState::parse(&c.state).is_none())
    {
        return Err(format!(
            "reported a state that is none: {:?}",
            c.state.chars().take(40).collect::<String>()
        ));
    }
    let cut = |s: &str| s.chars().take(MAX_TEXT).collect::<String>();
    Ok(Report {
        node: r.node,
        checks: r
            .checks
            .into_iter()
            .map(|c| Check {
                name: cut(&c.name),
                kind: cut(&c.kind),
                state: c.state,
                severity: cut(&c.severity),
                since: c.since,
            })
            .collect(),
        incidents: r
            .incidents
            .into_iter()
            .map(|i| Incident {
                check: cut(&i.check),
                severity: cut(&i.severity),
                state: cut(&i.state),
                ..i
            })
            .collect(),
    })
}

/// One peer as the fleet view last saw it.
#[derive(Clone, Debug)]
struct Peer {
    name: String,
    /// Its dashboard (the `[[peer]] url`).
    url: String,
    report: Result<Report, String>,
}

/// What the fleet view last pulled, and when.
#[derive(Default)]
pub(crate) struct FleetCache(tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<Peer>>)>>);

/// Ask every peer at once; each answers within [`FLEET_TIMEOUT`] or is
/// unreachable.
async fn pull(config: &vigie_config::Config) -> Vec<Peer> {
    let asks = config.peers.iter().map(|p| async move {
        let url = p.url.0.as_str().trim_end_matches('/').to_owned();
        let report = match vigie_failover::quorum::PeerClient::new(p) {
            Err(e) => Err(e),
            Ok(client) => {
                match tokio::time::timeout(
                    FLEET_TIMEOUT,
                    client.get("/api/v1/peer/fleet", FLEET_LIMIT),
                )
                .await
                {
                    Err(_) => Err(format!("no answer within {} s", FLEET_TIMEOUT.as_secs())),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(body)) => parse(&p.name, &body),
                }
            }
        };
        if let Err(e) = &report {
            tracing::warn!(peer = %p.name, "the fleet view has no report from a peer: {e}");
        }
        Peer {
            name: p.name.clone(),
            url,
            report: report.map_err(|e| e.chars().take(MAX_TEXT).collect()),
        }
    });
    futures_util::future::join_all(asks).await
}

impl FleetCache {
    /// The peers' reports, pulled again when older than
    /// [`FLEET_CACHE_FOR`] (one pull at a time: a page asked meanwhile
    /// waits for it).
    async fn peers(&self, config: &vigie_config::Config) -> Arc<Vec<Peer>> {
        let mut cached = self.0.lock().await;
        if let Some((at, peers)) = cached.as_ref()
            && at.elapsed() < FLEET_CACHE_FOR
        {
            return peers.clone();
        }
        let peers = Arc::new(pull(config).await);
        *cached = Some((tokio::time::Instant::now(), peers.clone()));
        peers
    }
}

/// A node's section: its checks (failing first) and open incidents;
/// links go to `base` (empty: this node).
fn section(body: &mut String, report: &Report, base: &str, now: Timestamp) {
    let mut checks: Vec<&Check> = report.checks.iter().collect();
    let rank = |c: &Check| match CheckState::parse(&c.state) {
        Some(CheckState::Failing) => 0,
        Some(CheckState::Unknown) | None => 1,
        Some(CheckState::Ok) => 2,
    };
    checks.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.name.cmp(&b.name)));
    let count = |st: CheckState| {
        report
            .checks
            .iter()
            .filter(|c| CheckState::parse(&c.state) == Some(st))
            .count()
    };
    let _ = writeln!(
        body,
        "<p class=\"summary\">{} failing · {} unknown · {} ok · {} open incident{}</p>",
        count(CheckState::Failing),
        count(CheckState::Unknown),
        count(CheckState::Ok),
        report.incidents.len(),
        if report.incidents.len() == 1 { "" } else { "s" },
    );
    if !report.incidents.is_empty() {
        body.push_str("<ul class=\"fleet-incidents\">\n");
        for i in &report.incidents {
            let _ = writeln!(
                body,
                "<li><a href=\"{base}/incidents/{id}\">#{id}</a> {check} · {sev} · {state} · opened <time>{opened}</time></li>",
                base = esc(base),
                id = i.id,
                check = esc(&i.check),
                sev = esc(&i.severity),
                state = esc(&i.state),
                opened = esc(&when(Timestamp(i.opened))),
            );
        }
        body.push_str("</ul>\n");
    }
    if checks.is_empty() {
        body.push_str("<p>No checks.</p>\n");
        return;
    }
    body.push_str(
        "<table class=\"checks\"><thead><tr><th scope=\"col\">State</th><th scope=\"col\">Check</th>\
         <th scope=\"col\">Kind</th><th scope=\"col\">Severity</th><th scope=\"col\">Since</th></tr></thead><tbody>\n",
    );
    for c in checks {
        let state = CheckState::parse(&c.state).unwrap_or(CheckState::Unknown);
        let _ = writeln!(
            body,
            "<tr data-check=\"{n}\"><td>{badge}</td><td><a href=\"{base}/checks/{u}\">{n}</a></td><td>{kind}</td>\
             <td>{sev}</td><td title=\"{since}\">{ago}</td></tr>",
            n = esc(&c.name),
            u = url_segment(&c.name),
            base = esc(base),
            badge = badge(state),
            kind = esc(&c.kind),
            sev = esc(&c.severity),
            since = esc(&when(Timestamp(c.since))),
            ago = ago(Timestamp(c.since), now),
        );
    }
    body.push_str("</tbody></table>\n");
}

pub(crate) async fn page_(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    let config = app.engine.view().config();
    let engine = app.engine.clone();
    let open = match tokio::task::spawn_blocking(move || engine.open_incidents()).await {
        Ok(Ok(open)) => Ok(open),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (open, store_error) = match open {
        Ok(open) => (open, None),
        Err(e) => {
            tracing::error!(error = %e, "the fleet view could not read the open incidents");
            (Vec::new(), Some(e))
        }
    };
    let mine = report(&config.node.name, &ordered(app.engine.statuses()), &open);
    let peers = app.fleet.peers(&config).await;
    let now = Timestamp::now();
    let mut body = String::from("<h1>Fleet</h1>\n");
    if config.peers.is_empty() {
        body.push_str(
            "<p>This node has no <code>[[peer]]</code>: add one (its <code>url</code> and the \
             <code>token</code> both share) to see its checks here.</p>\n",
        );
    }
    let _ = writeln!(
        body,
        "<section class=\"node\" data-node=\"{n}\"><h2>{n} <span class=\"muted\">(this node)</span></h2>",
        n = esc(&mine.node)
    );
    if let Some(e) = &store_error {
        let _ = writeln!(
            body,
            "<p class=\"problem\" role=\"alert\">The store is unavailable: the open incidents \
             are not shown ({}).</p>",
            esc(e)
        );
    }
    section(&mut body, &mine, "", now);
    body.push_str("</section>\n");
    for p in peers.iter() {
        let _ = writeln!(
            body,
            "<section class=\"node\" data-node=\"{n}\"><h2>{n} <a href=\"{u}/\">its dashboard</a></h2>",
            n = esc(&p.name),
            u = esc(&p.url),
        );
        match &p.report {
            Ok(r) => section(&mut body, r, &p.url, now),
            Err(why) => {
                let _ = writeln!(
                    body,
                    "<p class=\"problem unreachable\"><span class=\"state failing\">unreachable</span> {}</p>",
                    esc(why.strip_prefix("unreachable: ").unwrap_or(why))
                );
            }
        }
        body.push_str("</section>\n");
    }
    let _ = writeln!(
        body,
        "<p class=\"muted\">Peers are asked at most every {} s.</p>",
        FLEET_CACHE_FOR.as_secs()
    );
    html_response(StatusCode::OK, page("Fleet", &v.frame, Nav::Fleet, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_report_must_be_its_own_and_well_formed() {
        // From a peer of before: its message is dropped, its kind empty.
        let ok = br#"{"node":"b","checks":[{"name":"web","state":"failing","severity":"high","since":1,"message":"<x>"}],"incidents":[]}"#;
        let r = parse("b", ok).unwrap();
        assert_eq!(r.checks[0].name, "web");
        assert_eq!(r.checks[0].kind, "");
        assert!(!serde_json::to_string(&r).unwrap().contains("<x>"));
        let e = parse("c", ok).unwrap_err();
        assert!(e.contains("not the peer configured as `c`"), "{e}");
        let odd = br#"{"node":"b\u001b[31m\nx","checks":[],"incidents":[]}"#;
        let e = parse("b", odd).unwrap_err();
        assert!(e.contains(r#"node "b\u{1b}[31m\nx""#), "{e}");
        assert!(!e.chars().any(char::is_control), "{e}");
        let e = parse("b", b"<html>oops</html>").unwrap_err();
        assert!(e.contains("no fleet report"), "{e}");
        let bad = br#"{"node":"b","checks":[{"name":"web","kind":"http","state":"on fire","severity":"high","since":1}],"incidents":[]}"#;
        let e = parse("b", bad).unwrap_err();
        assert!(e.contains("a state that is none"), "{e}");
        let long = format!(
            r#"{{"node":"b","checks":[{{"name":"{}","kind":"http","state":"ok","severity":"low","since":1}}],"incidents":[]}}"#,
            "m".repeat(5000)
        );
        assert_eq!(
            parse("b", long.as_bytes()).unwrap().checks[0]
                .name
                .chars()
                .count(),
            MAX_TEXT
        );
    }

    #[test]
    fn a_report_carries_no_message_nor_error() {
        let status = vigie_engine::CheckStatus {
            name: "db".into(),
            kind: "tcp",
            severity: vigie_core::Severity::High,
            state: CheckState::Failing,
            since: Timestamp(5),
            consecutive_ok: 0,
            consecutive_fail: 3,
            last_run: Some(Timestamp(6)),
            last_ok: Some(false),
            last_message: "password=hunter2 refused".into(),
            last_duration_seconds: 0.1,
            runs_total: 3,
            failures_total: 3,
            metrics: Vec::new(),
            every_seconds: 30.0,
            depends_on: Vec::new(),
        };
        let incident = vigie_store::Incident {
            id: 7,
            check: "db".into(),
            severity: "high".into(),
            state: "notified".into(),
            suppressed_by: None,
            opened: Timestamp(5),
            resolved: None,
            resolution: None,
            acked: None,
            ack_note: None,
            last_error: "password=hunter2 refused".into(),
        };
        let json = serde_json::to_value(report("a", &[status], &[incident])).unwrap();
        let text = json.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(json["checks"][0]["kind"], "tcp");
        assert_eq!(json["checks"][0]["state"], "failing");
        assert_eq!(json["incidents"][0]["check"], "db");
        assert_eq!(json["incidents"][0]["opened"], 5);
    }
}
