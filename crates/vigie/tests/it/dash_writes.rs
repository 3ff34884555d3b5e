//! Writes from the dashboard besides acknowledging, each behind a login
//! and the form's CSRF token, in a real Chromium and as plain requests:
//! a public note on an incident (and the status pages that show it),
//! pausing and resuming a replication job (the row `vigie sync` reads),
//! and a maintenance started and ended on a check's page. The API does
//! the same through the engine's same calls.

use std::time::Duration;

use serde_json::Value;
use vigie_testkit::daemon::Daemon;
use vigie_testkit::webdriver::Browser;
use vigie_testkit::{Env, Need, require};

use crate::dash::with_alice_and;
use crate::util::{assert_secure_headers, wait_or_explain};

/// A status page over the failing check (`broken`, as "Database") and
/// the passing one, and a replication job `mirror` of a local tree.
fn tables(e: &Env) -> String {
    let dst = e.path().join("dst");
    format!(
        "[status_page.public]\ntitle = \"Status\"\nservices = [\n  \
         {{ name = \"Database\", checks = [\"broken\"] }},\n  {{ name = \"Website\", checks = [\"fine\"] }},\n]\n\n\
         [[sync]]\nname = \"mirror\"\nfrom = \"src\"\nto = \"{}\"\n",
        dst.display()
    )
}

fn daemon() -> (Env, Daemon, i64) {
    with_alice_and("", |e| {
        std::fs::create_dir_all(e.path().join("src")).unwrap();
        std::fs::write(e.path().join("src/a.txt"), "a").unwrap();
        std::fs::create_dir_all(e.path().join("dst")).unwrap();
        tables(e)
    })
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Log alice in; her session cookie (`vigie_session=…`).
fn login(b: &Browser, base: &str) -> String {
    b.goto(&format!("{base}/ui/login"));
    b.fill("#user", "alice");
    b.fill("#password", "correct horse battery");
    b.click("button[type=submit]");
    wait_or_explain(
        Duration::from_secs(5),
        || b.url() == format!("{base}/"),
        || b.source(),
    );
    let cookie = b.cookie("vigie_session").expect("a session cookie");
    format!("vigie_session={}", cookie["value"].as_str().unwrap())
}

/// The CSRF token in the page's forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect(page) + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_owned()
}

fn sync_paused(e: &Env) -> Value {
    let out = e.run(&["sync", "status", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v[0]["paused"].clone()
}

fn post(d: &Daemon, path: &str, cookie: Option<&str>, body: &str) -> (u16, String) {
    let mut headers = vec![FORM];
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    d.post(path, &headers, body.as_bytes())
}

#[test]
fn without_a_session_no_form_is_shown_and_every_write_is_refused() {
    let (e, d, id) = daemon();
    let note = format!("/incidents/{id}");
    for (path, says, form) in [
        (
            note.as_str(),
            "Log in</a> to write a public note",
            "form class=\"note\"",
        ),
        (
            "/sync/mirror",
            "Log in</a> to pause or resume it",
            "form class=\"sync-",
        ),
        (
            "/checks/broken",
            "Log in</a> to start a maintenance",
            "form class=\"maintenance",
        ),
    ] {
        let (status, page) = d.http("GET", path, &[]);
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.contains(says), "{path}: {page}");
        assert!(!page.contains(form), "{path}: no form: {page}");
        assert!(!page.contains("name=\"csrf\""), "{path}: {page}");
    }
    for path in [
        format!("/incidents/{id}/note"),
        "/sync/mirror/pause".to_owned(),
        "/sync/mirror/resume".to_owned(),
        "/checks/broken/maintenance".to_owned(),
        "/checks/broken/maintenance/end".to_owned(),
    ] {
        let (status, body) = post(&d, &path, None, "csrf=x&text=hello&reason=x&for=1h");
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("Log in first"), "{body}");
    }
    assert!(sync_paused(&e).is_null());
    let (_, page) = d.http("GET", "/checks/broken", &[]);
    assert!(page.contains("Not in maintenance"), "{page}");
    let (_, status) = d.http("GET", "/status/public.json", &[]);
    let v: Value = serde_json::from_str(&status).unwrap();
    assert!(
        v["incidents"][0]["notes"].as_array().unwrap().is_empty(),
        "{v}"
    );
}

/// Empty, too long or on no incident: refused with what to do.
fn refused_notes(d: &Daemon, cookie: &str, csrf: &str, id: i64) {
    let (status, body) = post(
        d,
        &format!("/incidents/{id}/note"),
        Some(cookie),
        &format!("csrf={csrf}&text=+++"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a note needs some text"), "{body}");
    let (status, body) = post(
        d,
        &format!("/incidents/{id}/note"),
        Some(cookie),
        &format!("csrf={csrf}&text={}", "x".repeat(2001)),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 2000 characters"), "{body}");
    assert_eq!(
        post(
            d,
            "/incidents/999999/note",
            Some(cookie),
            &format!("csrf={csrf}&text=x")
        )
        .0,
        404
    );
}

/// The API writes notes the same way (no token here: open on loopback).
fn api_notes(d: &Daemon, id: i64) {
    let json_body = [("content-type", "application/json")];
    let (status, body) = d.post(
        &format!("/api/v1/incidents/{id}/notes"),
        &json_body,
        br#"{"text": ""}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a note needs some text"), "{body}");
    let (status, body) = d.post(
        &format!("/api/v1/incidents/{id}/notes"),
        &json_body,
        br#"{"text": "Fixed soon"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, json) = d.http("GET", "/status/public.json", &[]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["incidents"][0]["notes"][1]["text"], "Fixed soon", "{v}");
}

#[test]
fn a_public_note_from_the_page_reaches_the_status_page_as_text_and_names_no_check() {
    require!(Need::Chromium, Need::Chromedriver);
    let (e, d, id) = daemon();
    let base = format!("http://{}", d.addr);
    let b = Browser::start(&e.path().join("browser"));
    let cookie = login(&b, &base);

    // A forged token is refused, and nothing is written.
    let (status, body) = post(
        &d,
        &format!("/incidents/{id}/note"),
        Some(&cookie),
        &format!("csrf={}&text=forged", "0".repeat(64)),
    );
    assert_eq!(status, 403, "{body}");

    b.goto(&format!("{base}/incidents/{id}"));
    let page = b.source();
    assert!(
        page.contains("<label for=\"public-note\">"),
        "a labelled field: {page}"
    );
    b.fill("#public-note", "Slow answers <b>now</b>: we restart it");
    b.click("form.note button");
    wait_or_explain(
        Duration::from_secs(5),
        || b.source().contains("class=\"note-text\""),
        || b.source(),
    );
    let page = b.source();
    assert!(
        page.contains("Slow answers &lt;b&gt;now&lt;/b&gt;: we restart it"),
        "{page}"
    );
    assert!(
        page.contains("class=\"event public note\">public note<"),
        "in the timeline: {page}"
    );
    assert!(!page.contains("forged"), "{page}");

    refused_notes(&d, &cookie, &csrf_of(&page), id);

    // The status page shows it as the current incident of Database.
    let (status, html) = d.http("GET", "/status/public", &[]);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Current incident: Database<"), "{html}");
    assert!(
        html.contains("Slow answers &lt;b&gt;now&lt;/b&gt;: we restart it"),
        "{html}"
    );
    let (_, json) = d.http("GET", "/status/public.json", &[]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let incidents = v["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{v}");
    assert_eq!(incidents[0]["services"], serde_json::json!(["Database"]));
    assert!(incidents[0]["since"].is_i64(), "{v}");
    assert_eq!(
        incidents[0]["notes"][0]["text"],
        "Slow answers <b>now</b>: we restart it"
    );
    for public in [&html, &json] {
        for inner in ["broken", "alice", "alert(1)", "incidents/"] {
            assert!(
                !public.contains(inner),
                "`{inner}` on a public page: {public}"
            );
        }
    }
    let dom = crate::dash::chromium(&e, &["--dump-dom", &format!("{base}/status/public")]);
    assert!(dom.contains("Current incident: Database"), "{dom}");
    assert!(!dom.contains("<b>now</b>"), "text, not markup: {dom}");
    let shot = crate::dash::artifacts().join("status-incident-phone.png");
    let _ = std::fs::remove_file(&shot);
    crate::dash::chromium(
        &e,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=390,844",
            &format!("{base}/status/public"),
        ],
    );
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));

    api_notes(&d, id);
    assert_secure_headers(d.addr, &format!("/incidents/{id}"), &[("cookie", &cookie)]);
}

/// Pause through the page, by keyboard to its labelled field, resume,
/// and see a pause made by the CLI.
fn pause_and_resume(b: &Browser, e: &Env, d: &Daemon, base: &str, cookie: &str) {
    b.goto(&format!("{base}/sync/mirror"));
    assert!(
        b.source().contains("<label for=\"pause-reason\">"),
        "{}",
        b.source()
    );
    b.tab_to(1);
    // vigie, Checks, Incidents, Host, Replication, Failover, Backups,
    // Fleet, Log out, ← All jobs.
    let field = b.tab_to(10);
    assert_eq!(field["id"], "pause-reason", "{field}");
    b.fill("#pause-reason", "fencing <test>");
    b.click("form.sync-pause button");
    wait_or_explain(
        Duration::from_secs(5),
        || b.source().contains("form class=\"sync-resume\""),
        || b.source(),
    );
    assert!(
        b.source()
            .contains("fencing &lt;test&gt; (by alice from the dashboard)"),
        "{}",
        b.source()
    );
    // What `vigie sync status` reads: the same row.
    let paused = sync_paused(e);
    assert_eq!(
        paused["reason"], "fencing <test> (by alice from the dashboard)",
        "{paused}"
    );
    let (_, list) = d.http("GET", "/sync", &[]);
    assert!(list.contains("paused</span>"), "{list}");
    b.click("form.sync-resume button");
    wait_or_explain(
        Duration::from_secs(5),
        || b.source().contains("form class=\"sync-pause\""),
        || b.source(),
    );
    assert!(sync_paused(e).is_null());
    // Paused by the CLI: the page shows it.
    let out = e.run(&["sync", "pause", "mirror", "--reason", "by hand"]);
    assert_eq!(out.code, 0, "{out:?}");
    b.goto(&format!("{base}/sync/mirror"));
    assert!(b.source().contains("by hand"), "{}", b.source());
    assert_eq!(
        post(
            d,
            "/sync/nothing/pause",
            Some(cookie),
            &format!("csrf={}", csrf_of(&b.source()))
        )
        .0,
        400
    );
}

/// The API: the same calls.
fn api_writes(e: &Env, d: &Daemon) {
    let json_body = [("content-type", "application/json")];
    let (status, body) = d.post(
        "/api/v1/checks/broken/maintenance",
        &json_body,
        br#"{"for": "2h"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, page) = d.http("GET", "/checks/broken", &[]);
    assert!(page.contains("started by api"), "{page}");
    let (status, body) = d.http("DELETE", "/api/v1/checks/broken/maintenance", &json_body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ended"), "{body}");
    let (status, body) = d.post("/api/v1/sync/mirror/resume", &json_body, b"");
    assert_eq!(status, 200, "{body}");
    assert!(sync_paused(e).is_null());
    let (status, body) = d.post(
        "/api/v1/sync/mirror/pause",
        &json_body,
        br#"{"reason": "api says"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(sync_paused(e)["reason"], "api says");
}

#[test]
fn a_sync_paused_and_a_maintenance_started_from_their_pages() {
    require!(Need::Chromium, Need::Chromedriver);
    let (e, d, _) = daemon();
    let base = format!("http://{}", d.addr);
    let b = Browser::start(&e.path().join("browser"));
    let cookie = login(&b, &base);

    // Forged tokens: refused, nothing changed.
    for path in [
        "/sync/mirror/pause",
        "/sync/mirror/resume",
        "/checks/broken/maintenance",
    ] {
        let (status, body) = post(
            &d,
            path,
            Some(&cookie),
            &format!("csrf={}&reason=x&for=1h", "0".repeat(64)),
        );
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert!(sync_paused(&e).is_null());

    pause_and_resume(&b, &e, &d, &base, &cookie);

    // Maintenance now, from the check's page (1 hour, the default).
    b.goto(&format!("{base}/checks/broken"));
    let page = b.source();
    assert!(page.contains("<label for=\"maintenance-for\">"), "{page}");
    b.click("form.maintenance button");
    wait_or_explain(
        Duration::from_secs(5),
        || b.source().contains("In maintenance until"),
        || b.source(),
    );
    assert!(
        b.source().contains("started by alice from the dashboard"),
        "{}",
        b.source()
    );
    let csrf = csrf_of(&b.source());
    for (duration, says) in [
        ("soon", "is not a duration"),
        ("30d", "from 1 minute to 7 days"),
    ] {
        let (status, body) = post(
            &d,
            "/checks/broken/maintenance",
            Some(&cookie),
            &format!("csrf={csrf}&for={duration}"),
        );
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(says), "{body}");
    }
    let (status, body) = post(
        &d,
        "/checks/nothing/maintenance",
        Some(&cookie),
        &format!("csrf={csrf}&for=1h"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no check named nothing"), "{body}");
    b.click("form.maintenance-end button");
    wait_or_explain(
        Duration::from_secs(5),
        || b.source().contains("Not in maintenance"),
        || b.source(),
    );

    api_writes(&e, &d);
    for path in ["/sync", "/sync/mirror", "/checks/broken"] {
        assert_secure_headers(d.addr, path, &[("cookie", &cookie)]);
    }
}

/// Log alice in with a plain request; her session cookie.
fn login_plain(d: &Daemon) -> String {
    use std::io::{Read as _, Write as _};
    let body = "user=alice&password=correct+horse+battery";
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /ui/login HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        d.addr,
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let line = resp
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: vigie_session=")
        })
        .unwrap_or_else(|| panic!("no session cookie: {resp}"));
    line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_fence_is_never_lifted_nor_replaced_from_the_pages_or_the_api() {
    let (e, d, id) = daemon();
    let cookie = login_plain(&d);
    let (_, page) = d.http("GET", &format!("/incidents/{id}"), &[("cookie", &cookie)]);
    let csrf = csrf_of(&page);
    let json_body = [("content-type", "application/json")];
    let fence = "fenced: failover db points at the backup";
    let out = e.run(&["sync", "pause", "mirror", "--reason", fence]);
    assert_eq!(out.code, 0, "{out:?}");
    let since = sync_paused(&e)["since"].as_i64().unwrap();

    // Neither the API nor the page resumes it: the CLI does, after the
    // reverse pass.
    let (status, body) = d.post("/api/v1/sync/mirror/resume", &json_body, b"");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("vigie sync mirror --reverse") && body.contains("vigie sync resume mirror"),
        "{body}"
    );
    let (status, body) = post(
        &d,
        "/sync/mirror/resume",
        Some(&cookie),
        &format!("csrf={csrf}&since={since}"),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("vigie sync mirror --reverse"), "{body}");
    let (_, page) = d.http("GET", "/sync/mirror", &[("cookie", &cookie)]);
    assert!(!page.contains("form class=\"sync-resume\""), "{page}");
    assert!(page.contains("vigie sync mirror --reverse"), "{page}");

    // Nor does a pause replace it (then a resume would lift that one).
    let (status, body) = d.post(
        "/api/v1/sync/mirror/pause",
        &json_body,
        br#"{"reason": "api says"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("already paused since") && body.contains(fence),
        "{body}"
    );
    let (status, body) = post(
        &d,
        "/sync/mirror/pause",
        Some(&cookie),
        &format!("csrf={csrf}&reason=mine"),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already paused since"), "{body}");
    let paused = sync_paused(&e);
    assert_eq!(paused["reason"], fence, "{paused}");
    assert_eq!(paused["since"], since, "{paused}");

    // The CLI lifts it.
    let out = e.run(&["sync", "resume", "mirror"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(sync_paused(&e).is_null());

    // A pause from the page, then a second one: the first stays.
    let (status, body) = post(
        &d,
        "/sync/mirror/pause",
        Some(&cookie),
        &format!("csrf={csrf}&reason=first%07%1b[31m"),
    );
    assert_eq!(status, 303, "{body}");
    let first = sync_paused(&e);
    assert_eq!(
        first["reason"], "first[31m (by alice from the dashboard)",
        "control characters taken out: {first}"
    );
    let (status, body) = d.post(
        "/api/v1/sync/mirror/pause",
        &json_body,
        br#"{"reason": "second"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("first[31m (by alice"), "{body}");
    assert_eq!(sync_paused(&e), first);

    // The Resume form lifts only the pause its page showed.
    let first_since = first["since"].as_i64().unwrap();
    for (form, code, says) in [
        (String::new(), 400, "reload the page"),
        (format!("&since={}", first_since - 1), 409, "reload"),
    ] {
        let (status, body) = post(
            &d,
            "/sync/mirror/resume",
            Some(&cookie),
            &format!("csrf={csrf}{form}"),
        );
        assert_eq!(status, code, "{body}");
        assert!(body.contains(says), "{body}");
        assert_eq!(sync_paused(&e), first);
    }
    let (_, page) = d.http("GET", "/sync/mirror", &[("cookie", &cookie)]);
    assert!(
        page.contains(&format!("name=\"since\" value=\"{first_since}\"")),
        "{page}"
    );
    let (status, body) = post(
        &d,
        "/sync/mirror/resume",
        Some(&cookie),
        &format!("csrf={csrf}&since={first_since}"),
    );
    assert_eq!(status, 303, "{body}");
    assert!(sync_paused(&e).is_null());
}

#[test]
fn an_incident_takes_at_most_100_notes_and_status_pages_show_the_newest_20() {
    let (_e, d, id) = daemon();
    let json_body = [("content-type", "application/json")];
    let path = format!("/api/v1/incidents/{id}/notes");
    for n in 0..100 {
        let text = format!("{{\"text\": \"note {n}\\u0007\"}}");
        let (status, body) = d.post(&path, &json_body, text.as_bytes());
        assert_eq!(status, 200, "note {n}: {body}");
    }
    let (status, body) = d.post(&path, &json_body, br#"{"text": "one more"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("has 100 notes already"), "{body}");
    let (_, json) = d.http("GET", "/status/public.json", &[]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let notes = v["incidents"][0]["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 20, "{v}");
    assert_eq!(notes[0]["text"], "note 80", "oldest first, no control: {v}");
    assert_eq!(notes[19]["text"], "note 99", "{v}");
    let (_, html) = d.http("GET", "/status/public", &[]);
    assert!(
        html.contains("note 99") && html.contains("note 80"),
        "{html}"
    );
    assert!(!html.contains("note 79<"), "{html}");
}
