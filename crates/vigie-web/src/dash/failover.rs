//! The failover page (`/failover`): each `[failover.NAME]` with the
//! side its record points at (as vigie last switched it, read from the
//! store: the page asks no DNS server), since when and why, the checks
//! it watches, this node's vote and the peers' last tally, and its
//! recent switches. Read-only: switching is `vigie failover switch`.

use std::fmt::Write as _;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use vigie_config::{Backup, Failback, Failover};
use vigie_core::Timestamp;
use vigie_failover::quorum::{Verdict, Vote, local_vote};
use vigie_store::FailoverState;

use super::html::{Nav, ago, esc, page, url_segment, when};
use super::{Viewer, badge, html_response, read};
use crate::App;

/// Switches listed per failover, at most.
const SWITCHES: usize = 10;

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Down => "primary down",
        Verdict::Up => "primary up",
        Verdict::Abstain => "abstains",
        Verdict::Unknown => "unknown",
    }
}

/// A verdict as a badge: its words, and the class of a check's state
/// (down is failing, up is ok).
fn verdict_badge(v: Verdict) -> String {
    let class = match v {
        Verdict::Down => "failing",
        Verdict::Up => "ok",
        Verdict::Abstain | Verdict::Unknown => "unknown",
    };
    format!("<span class=\"state {class}\">{}</span>", verdict(v))
}

fn addresses(list: &[std::net::IpAddr]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn backup_addresses(f: &Failover) -> String {
    match &f.backup {
        Backup::Fixed(list) => addresses(list),
        Backup::PublicIp => "this node's public address".to_owned(),
    }
}

pub(super) async fn page_(State(app): State<App>, Extension(v): Extension<Viewer>) -> Response {
    let view = app.engine.view();
    let config = view.config();
    let names: Vec<String> = config.failovers.keys().cloned().collect();
    let stored = match read(&app, &v, move |store| {
        names
            .iter()
            .map(|n| {
                Ok((
                    store.failover_state(n)?,
                    store.failover_switches(n, SWITCHES)?,
                ))
            })
            .collect::<vigie_store::Result<Vec<_>>>()
    })
    .await
    {
        Ok(s) => s,
        Err(page) => return page,
    };
    let tallies = app
        .failover
        .as_ref()
        .map(|f| f.tallies())
        .unwrap_or_default();
    let now = Timestamp::now();
    let mut body = String::from("<h1>Failover</h1>\n");
    if config.failovers.is_empty() {
        body.push_str(
            "<p>No failover is declared on this node. A <code>[failover.NAME]</code> table \
             names a DNS record, the primary's and the backup's addresses, a <code>[dns.NAME]</code> \
             provider and the checks that watch the primary: when they fail (and, with \
             <code>quorum</code>, enough peers agree), vigie points the record at the backup. \
             See <code>docs/config/failover.md</code> for its keys and \
             <code>docs/features.md</code> (DNS failover) for how it decides.</p>\n",
        );
        return html_response(
            StatusCode::OK,
            page("Failover", &v.frame, Nav::Failover, &body),
        );
    }
    body.push_str(
        "<p class=\"muted\">Where each record points is what vigie last switched it to \
         (<code>vigie failover status</code> asks the DNS servers).</p>\n",
    );
    for (f, (state, switches)) in config.failovers.values().zip(&stored) {
        let u = url_segment(&f.name);
        let _ = writeln!(
            body,
            "<section class=\"failover\" id=\"failover-{u}\" aria-labelledby=\"failover-{u}-h\">\
             <h2 id=\"failover-{u}-h\">{n}</h2>",
            n = esc(&f.name),
        );
        facts(&mut body, f, state.as_ref(), now, |c| view.get(c));
        let vote = local_vote(&config.node.name, f, &view);
        votes(&mut body, f, &vote, tallies.get(&f.name), now);
        history(&mut body, f, switches);
        body.push_str("</section>\n");
    }
    html_response(
        StatusCode::OK,
        page("Failover", &v.frame, Nav::Failover, &body),
    )
}

/// The record, where it points and why, the addresses, the watched
/// checks, the quorum and the failback.
fn facts(
    body: &mut String,
    f: &Failover,
    state: Option<&FailoverState>,
    now: Timestamp,
    status: impl Fn(&str) -> Option<vigie_engine::CheckStatus>,
) {
    let side = state.map_or("primary", |s| s.side.as_str());
    let class = if side == "primary" { "ok" } else { "failing" };
    let pointed = match side {
        "primary" => addresses(&f.primary),
        "backup" => backup_addresses(f),
        _ => String::new(),
    };
    let since = state.map_or_else(
        || "never switched by vigie: the primary, as configured".to_owned(),
        |s| {
            format!(
                "<time>{t}</time> ({ago} ago): {why}",
                t = esc(&when(s.since)),
                ago = ago(s.since, now),
                why = esc(&s.reason),
            )
        },
    );
    let mut checks = String::new();
    for c in &f.checks {
        let state = status(c).map_or_else(String::new, |s| format!(" {}", badge(s.state)));
        let _ = write!(
            checks,
            "<li><a href=\"/checks/{}\">{}</a>{state}</li>",
            url_segment(c),
            esc(c)
        );
    }
    let checks = if checks.is_empty() {
        "none: nothing moves it but <code>vigie failover switch</code>".to_owned()
    } else {
        format!("<ul class=\"plain\">{checks}</ul>")
    };
    let failback = match &f.failback {
        Failback::Manual => "by hand (<code>vigie failover failback</code>)".to_owned(),
        Failback::AfterHealthy(d) => format!(
            "after the primary is healthy for {}, at least {} after the last switch",
            esc(&d.to_string()),
            esc(&f.cooldown.to_string())
        ),
    };
    let _ = writeln!(
        body,
        "<dl class=\"facts\"><dt>Record</dt><dd><code>{rec}</code> ({kind})</dd>\
         <dt>Points at</dt><dd><span class=\"state {class}\">{side}</span> {pointed}</dd>\
         <dt>Since</dt><dd>{since}</dd>\
         <dt>Primary</dt><dd>{primary}</dd><dt>Backup</dt><dd>{backup}</dd>\
         <dt>Watched by</dt><dd>{checks}</dd>\
         <dt>Quorum</dt><dd>{quorum} watcher{s} must see the primary down</dd>\
         <dt>Failback</dt><dd>{failback}</dd></dl>",
        rec = esc(&format!("{}.{}", f.record.name, f.record.zone)),
        kind = match f.record.rtype {
            vigie_config::AddressType::A => "A",
            vigie_config::AddressType::Aaaa => "AAAA",
        },
        side = esc(side),
        pointed = esc(&pointed),
        primary = esc(&addresses(&f.primary)),
        backup = esc(&backup_addresses(f)),
        quorum = f.quorum,
        s = if f.quorum == 1 { "" } else { "s" },
    );
}

/// This node's vote now, then the other watchers' in the last tally
/// (and the peers that gave none).
fn votes(
    body: &mut String,
    f: &Failover,
    own: &Vote,
    tally: Option<&vigie_failover::quorum::Tally>,
    now: Timestamp,
) {
    let u = url_segment(&f.name);
    let _ = writeln!(
        body,
        "<table class=\"votes keep-cols\" aria-describedby=\"failover-{u}-tally\"><caption>Votes on {n}</caption>\
         <thead><tr><th scope=\"col\">Watcher</th><th scope=\"col\">Vote</th><th scope=\"col\">Since</th>\
         <th scope=\"col\">Why</th></tr></thead><tbody>",
        n = esc(&f.name),
    );
    let row = |body: &mut String, who: &str, v: &Vote| {
        let since = Timestamp(v.since);
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\">{who}</th><td>{badge}</td>\
             <td><time title=\"{t}\">{ago} ago</time></td><td class=\"msg\">{why}</td></tr>",
            badge = verdict_badge(v.verdict),
            t = esc(&when(since)),
            ago = ago(since, now),
            why = esc(&v.detail),
        );
    };
    row(body, &format!("{} (this node)", esc(&own.node)), own);
    if let Some(t) = tally {
        for v in t.votes.iter().filter(|v| v.node != own.node) {
            row(body, &esc(&v.node), v);
        }
        for (peer, why) in &t.silent {
            let _ = writeln!(
                body,
                "<tr><th scope=\"row\">{p}</th><td><span class=\"state unknown\">no vote</span></td>\
                 <td></td><td class=\"msg\">{w}</td></tr>",
                p = esc(peer),
                w = esc(why),
            );
        }
    }
    body.push_str("</tbody></table>\n");
    let tally_text = match tally {
        Some(t) => {
            let at = Timestamp(t.at);
            format!(
                "Last tally <time title=\"{w}\">{ago} ago</time>: {down} of {n} watcher{s} saw the primary down, \
                 {q} needed.",
                w = esc(&when(at)),
                ago = ago(at, now),
                down = t.down().len(),
                n = t.votes.len() + t.silent.len(),
                s = if t.votes.len() + t.silent.len() == 1 {
                    ""
                } else {
                    "s"
                },
                q = t.quorum,
            )
        }
        None => "No tally yet: the peers are asked when a watched check fails.".to_owned(),
    };
    let _ = writeln!(
        body,
        "<p class=\"muted\" id=\"failover-{u}-tally\">{tally_text}</p>"
    );
}

/// The last switches, the newest first.
fn history(body: &mut String, f: &Failover, switches: &[FailoverState]) {
    if switches.is_empty() {
        body.push_str("<p>No switch recorded yet.</p>\n");
        return;
    }
    let _ = writeln!(
        body,
        "<table class=\"switches keep-cols\"><caption>Recent switches of {n} (newest first)</caption>\
         <thead><tr><th scope=\"col\">When</th><th scope=\"col\">To</th><th scope=\"col\">Why</th></tr></thead><tbody>",
        n = esc(&f.name),
    );
    for s in switches {
        let _ = writeln!(
            body,
            "<tr><td><time>{t}</time></td><td>{side}</td><td class=\"msg\">{why}</td></tr>",
            t = esc(&when(s.since)),
            side = esc(&s.side),
            why = esc(&s.reason),
        );
    }
    body.push_str("</tbody></table>\n");
}
