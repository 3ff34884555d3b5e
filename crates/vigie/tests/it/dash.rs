//! The dashboard, as a browser reads it: the overview, a check's
//! history, the incidents and their timelines, the live stream; what a
//! check's output says is shown, never run; a server with a token keeps
//! its pages closed. `chromium` renders the overview of 1,000 checks.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde_json::Value;
use vigie_testkit::{Need, check, require};

use crate::util::{assert_secure_headers, env, start, wait_or_explain, wait_state};

/// Two checks: one passing, one failing with markup in its output.
fn two_checks() -> String {
    [
        check(
            "fine",
            "command = { argv = [\"true\"] }",
            "every = \"300ms\"\ndescription = \"always passes\"",
        ),
        check(
            "broken",
            "command = { argv = [\"sh\", \"-c\", \"echo '<script>alert(1)</script>'; exit 1\"] }",
            "every = \"300ms\"\nseverity = \"high\"",
        ),
    ]
    .concat()
}

#[test]
fn the_pages_show_checks_history_and_incidents_with_outside_text_escaped() {
    let e = env();
    let d = start(&e, &two_checks());
    wait_state(&d, "fine", "ok", Duration::from_secs(10));
    wait_state(&d, "broken", "failing", Duration::from_secs(10));

    // The sparklines read the series, which its thread appends in batches.
    let mut page = String::new();
    wait_or_explain(
        Duration::from_secs(10),
        || {
            let (status, p) = d.http("GET", "/", &[]);
            assert_eq!(status, 200, "{p}");
            page = p;
            // The failing check's sparkline: a bar (`M x 24 V 0`) per
            // failed run, in one path.
            page.split("<path class=\"fail\" d=\"")
                .nth(1)
                .and_then(|d| d.split('"').next())
                .is_some_and(|d| d.matches('M').count() >= 2)
        },
        || d.http("GET", "/", &[]).1,
    );
    assert!(page.starts_with("<!doctype html>"), "{page}");
    let broken = page.find("data-check=\"broken\"").expect(&page);
    let fine = page.find("data-check=\"fine\"").expect(&page);
    assert!(broken < fine, "failing checks come first: {page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>alert"),
        "a check's output is text, never markup: {page}"
    );
    assert!(page.contains("always passes"), "its description: {page}");
    assert!(
        page.matches("<svg class=\"spark\"").count() == 2 && page.contains("failed\"><title>"),
        "each row has its last runs: {page}"
    );
    assert!(page.contains("id=\"n-failing\">1<"), "{page}");

    let (status, check) = d.http("GET", "/checks/broken?range=1h", &[]);
    assert_eq!(status, 200, "{check}");
    assert!(check.contains("<svg class=\"history\""), "{check}");
    assert!(
        check.contains("class=\"band\""),
        "failures are drawn: {check}"
    );
    assert!(check.contains("0.000 % of"), "none passed: {check}");
    assert!(check.contains("aria-current=\"page\">1h<"), "{check}");
    assert_eq!(d.http("GET", "/checks/broken?range=2y", &[]).0, 400);
    let (status, missing) = d.http("GET", "/checks/nothing", &[]);
    assert_eq!(status, 404);
    assert!(missing.contains("No check named nothing"), "{missing}");

    // The incident the failure opened, its page and its timeline.
    let (_, api) = d.http("GET", "/api/v1/incidents", &[]);
    let v: Value = serde_json::from_str(&api).unwrap();
    let id = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["check"] == "broken")
        .unwrap_or_else(|| panic!("no incident for broken: {v}"))["id"]
        .as_i64()
        .unwrap();
    assert!(
        check.contains(&format!("href=\"/incidents/{id}\"")),
        "{check}"
    );
    let (status, list) = d.http("GET", "/incidents", &[]);
    assert_eq!(status, 200);
    assert!(
        list.contains(&format!("href=\"/incidents/{id}\"")),
        "{list}"
    );
    let (status, one) = d.http("GET", &format!("/incidents/{id}"), &[]);
    assert_eq!(status, 200, "{one}");
    assert!(
        one.contains("class=\"event opened\">opened<") && one.contains("&lt;script&gt;"),
        "{one}"
    );
    assert_eq!(d.http("GET", "/incidents/999999", &[]).0, 404);
    assert_eq!(d.http("GET", "/ui/style.css", &[]).0, 200);
    assert!(d.http("GET", "/ui/live.js", &[]).1.contains("EventSource"));
}

/// The bars of one row's sparkline drawn in `class` ("ok", "fail").
fn bars(page: &str, check: &str, class: &str) -> usize {
    page.split(&format!("data-check=\"{check}\""))
        .nth(1)
        .and_then(|row| row.split("</tr>").next())
        .and_then(|row| row.split(&format!("<path class=\"{class}\" d=\"")).nth(1))
        .and_then(|d| d.split('"').next())
        .map_or(0, |d| d.matches('M').count())
}

#[test]
fn a_repeated_success_moves_the_series_and_the_sparkline_but_writes_no_result_row() {
    let e = env();
    let mut d = start(
        &e,
        &[
            check(
                "fine",
                "command = { argv = [\"true\"] }",
                "every = \"200ms\"",
            ),
            check(
                "broken",
                "command = { argv = [\"false\"] }",
                "every = \"200ms\"",
            ),
        ]
        .concat(),
    );
    // The sparklines read the series, which its thread appends in batches.
    let mut page = String::new();
    wait_or_explain(
        Duration::from_secs(15),
        || {
            page = d.http("GET", "/", &[]).1;
            bars(&page, "fine", "ok") >= 6 && bars(&page, "broken", "fail") >= 6
        },
        || d.http("GET", "/", &[]).1,
    );
    assert_eq!(bars(&page, "fine", "fail"), 0, "{page}");
    assert_eq!(bars(&page, "broken", "ok"), 0, "{page}");
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait(Duration::from_secs(10)).0, Some(0), "{}", d.log());

    let store = vigie_store::Store::open(&e.state_dir()).unwrap();
    let states = store.states().unwrap();
    // The counters were written at shutdown, though nothing changed.
    let runs = states["fine"].runs_total;
    assert!(runs >= 6, "{:?}", states["fine"]);
    let rows = store.recent_results("fine", 1000).unwrap();
    assert_eq!(
        rows.len(),
        1,
        "only the first run of {runs} said something new: {rows:?}"
    );
    // Each failure is a row.
    assert_eq!(
        store.recent_results("broken", 1000).unwrap().len() as u64,
        states["broken"].runs_total
    );
    drop(store);
    // Every run is a sample.
    let series =
        vigie_store::SeriesStore::open(&e.state_dir(), vigie_store::Retention::default()).unwrap();
    let up = vigie_store::SeriesKey::new("vigie_check_up", [("check", "fine")]).unwrap();
    let samples = series.last(&up, 10_000).unwrap();
    assert_eq!(samples.len() as u64, runs, "{samples:?}");
    assert!(samples.iter().all(|s| (s.value - 1.0).abs() < 1e-9));
}

/// The response's head and the first `checks` event of `/ui/events`.
fn first_event(addr: std::net::SocketAddr) -> (String, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /ui/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    let mut event = false;
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the stream ended: {head}"
        );
        if event && let Some(data) = line.strip_prefix("data: ") {
            return (head, serde_json::from_str(data).unwrap());
        }
        event |= line.trim_end() == "event: checks";
        head.push_str(&line);
    }
}

#[test]
fn the_live_stream_sends_every_check_then_pages_carry_a_strict_policy() {
    let e = env();
    let d = start(&e, &two_checks());
    wait_state(&d, "broken", "failing", Duration::from_secs(10));
    let (head, data) = first_event(d.addr);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let checks = data["checks"].as_array().unwrap();
    let broken = checks
        .iter()
        .find(|c| c["name"] == "broken")
        .expect("broken");
    assert_eq!(broken["state"], "failing", "{data}");
    assert!(
        broken["message"].as_str().unwrap().contains("<script>"),
        "raw in JSON: {data}"
    );
    assert!(data["now"].as_i64().unwrap() >= broken["since"].as_i64().unwrap());

    // Every page, old and new, and the login form, carry the policy.
    let (_, api) = d.http("GET", "/api/v1/incidents", &[]);
    let v: Value = serde_json::from_str(&api).unwrap();
    let id = v["incidents"][0]["id"].as_i64().expect("an incident");
    for path in [
        "/".to_owned(),
        "/checks/broken".to_owned(),
        "/checks/nothing".to_owned(),
        "/incidents".to_owned(),
        format!("/incidents/{id}"),
        "/ui/login".to_owned(),
        "/sync".to_owned(),
        "/sync/nothing".to_owned(),
        "/ui/fleet".to_owned(),
    ] {
        assert_secure_headers(d.addr, &path, &[]);
    }
}

#[test]
fn with_a_token_the_pages_say_how_to_get_in_and_show_nothing() {
    let e = env();
    std::fs::write(
        e.path().join("api.token"),
        "a-long-enough-token-for-the-api-0123456789\n",
    )
    .unwrap();
    e.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = {{ file = \"api.token\" }}\n\n{}",
        two_checks()
    ));
    let d = e.daemon();
    for path in ["/", "/checks/broken", "/incidents", "/ui/events"] {
        let (status, body) = d.http("GET", path, &[]);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("needs a login"), "{body}");
        assert!(!body.contains("broken"), "nothing of the checks: {body}");
    }
}

#[test]
fn chromium_renders_the_overview_of_a_thousand_checks() {
    require!(Need::Chromium);
    let e = env();
    let mut checks = String::new();
    for i in 0..1000 {
        let argv = if i % 100 == 0 {
            "\"false\""
        } else {
            "\"true\""
        };
        checks.push_str(&check(
            &format!("c{i:04}"),
            &format!("command = {{ argv = [{argv}] }}"),
            "every = \"1h\"",
        ));
    }
    let d = start(&e, &checks);
    // Every check's first run done (a thousand commands, a few at once).
    wait_or_explain(
        Duration::from_mins(3),
        || {
            let (_, body) = d.http("GET", "/api/v1/checks", &[]);
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            v["checks"]
                .as_array()
                .is_some_and(|c| c.len() == 1000 && c.iter().all(|c| c["state"] != "unknown"))
        },
        || d.log(),
    );
    wait_state(&d, "c0900", "failing", Duration::from_mins(1));
    let url = format!("http://{}/", d.addr);
    let dom = chromium(&e, &["--dump-dom", &url]);
    assert_eq!(
        dom.matches("<tr data-check=").count(),
        1000,
        "{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(
        dom.contains("id=\"n-failing\">10<"),
        "{}",
        &dom[..dom.len().min(2000)]
    );
    // Screenshots as the test's artifacts: a desktop and a phone.
    let out = artifacts();
    for (name, size) in [
        ("overview-desktop.png", "1280,900"),
        ("overview-phone.png", "390,844"),
    ] {
        let path = out.join(name);
        let _ = std::fs::remove_file(&path);
        chromium(
            &e,
            &[
                &format!("--screenshot={}", path.display()),
                &format!("--window-size={size}"),
                &url,
            ],
        );
        let png = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            path.display()
        );
    }
    // Rows off screen are not laid out until seen (the first paint
    // waits for no more than a screenful), yet each is still a table's
    // row for a screen reader and reached by the keyboard.
    let b = vigie_testkit::webdriver::Browser::start_accessible(&e.path().join("a11y-profile"));
    b.goto(&url);
    let last = "table.checks tbody tr:last-child";
    assert_eq!(b.role(last).0, "row");
    assert_eq!(
        b.role(&format!("{last} td:nth-child(1)")),
        ("cell".to_owned(), "ok".to_owned())
    );
    assert_eq!(
        b.role("table.checks th:nth-child(2)"),
        ("columnheader".to_owned(), "Check".to_owned())
    );
    let (role, name) = b.role(&format!("{last} svg.spark"));
    assert_eq!(role, "image");
    assert!(name.starts_with("last 1 runs: 1 passed"), "{name}");
    b.focus("table.checks tbody tr:nth-last-child(2) a");
    let focused = b.tab_to(1);
    assert_eq!(focused["text"], "c0999", "{focused}");
    drop(b);
    let dom = chromium(&e, &["--dump-dom", &format!("{url}checks/c0900?range=1h")]);
    assert!(dom.contains("<svg class=\"history\""), "{dom}");
}

/// The overview of 1,000 checks as the daemon serves it: every check a
/// row with its sparkline, in a page that stays light. Before issue 14
/// it weighed 514 KiB (a row searched the list of checks for its
/// description, and its sparkline repeated its label and drew a `<rect>`
/// a run); fat rows back would fail here.
#[test]
fn the_overview_of_a_thousand_checks_stays_light() {
    let e = env();
    let mut checks = String::new();
    for i in 0..1000 {
        let argv = if i % 100 == 0 {
            "\"false\""
        } else {
            "\"true\""
        };
        checks.push_str(&check(
            &format!("c{i:04}"),
            &format!("command = {{ argv = [{argv}] }}"),
            "every = \"1h\"\ndescription = \"a service\"",
        ));
    }
    let d = start(&e, &checks);
    // Every check's first run stored (a thousand commands, a few at
    // once; the store is written in batches).
    let mut page = String::new();
    wait_or_explain(
        Duration::from_mins(3),
        || {
            let (status, body) = d.http("GET", "/", &[]);
            assert_eq!(status, 200, "{body}");
            page = body;
            page.matches("<title>last ").count() == 1000
        },
        || d.log(),
    );
    assert_eq!(page.matches("<tr data-check=").count(), 1000);
    assert!(page.contains("id=\"n-failing\">10<"), "{}", &page[..2000]);
    assert_eq!(page.matches("a service").count(), 1000);
    let row = page
        .lines()
        .find(|l| l.starts_with("<tr data-check=\"c0001\""))
        .unwrap_or_default();
    assert!(
        page.len() < OVERVIEW_BOUND,
        "{} bytes for 1,000 checks (at most {OVERVIEW_BOUND}); a row:\n{row}",
        page.len()
    );
}

/// What the overview of 1,000 checks, a run each and a description,
/// may weigh: ≈ 445 KiB after issue 14, 526 KiB before.
const OVERVIEW_BOUND: usize = 480 * 1024;

/// Where tests leave what a person may look at (screenshots):
/// `target/test-artifacts`.
pub(crate) fn artifacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run headless Chromium with `args`; its stdout.
pub(crate) fn chromium(e: &vigie_testkit::Env, args: &[&str]) -> String {
    let profile = e.path().join("chromium-profile");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .env("HOME", e.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vigie password-hash` fed `password` on its standard input.
fn password_hash(e: &vigie_testkit::Env, password: &str) -> vigie_testkit::Run {
    let mut c = e.cmd(&["password-hash"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    vigie_testkit::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A daemon with the failing check and user alice (`correct horse
/// battery`), `extra` lines in `[server]`; the incident's id.
fn with_alice(extra: &str) -> (vigie_testkit::Env, vigie_testkit::daemon::Daemon, i64) {
    with_alice_and(extra, |_| String::new())
}

/// [`with_alice`], with the tables `tables` prepares in the directory
/// (before the daemon starts) after the checks.
pub(crate) fn with_alice_and(
    extra: &str,
    tables: impl FnOnce(&vigie_testkit::Env) -> String,
) -> (vigie_testkit::Env, vigie_testkit::daemon::Daemon, i64) {
    let e = env();
    let tables = tables(&e);
    std::fs::write(
        e.path().join("api.token"),
        "a-long-enough-token-for-the-api-0123456789\n",
    )
    .unwrap();
    let short = password_hash(&e, "short");
    assert_eq!(short.code, 2, "{short:?}");
    assert!(short.stderr.contains("shorter than 8"), "{short:?}");
    let h = password_hash(&e, "correct horse battery");
    assert_eq!(h.code, 0, "{h:?}");
    let hash = h.stdout.trim();
    assert!(hash.starts_with("$argon2id$v=19$"), "{h:?}");
    e.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}users = {{ alice = \"{hash}\" }}\n\n{}\n{tables}",
        two_checks()
    ));
    let shown = e.run(&["show-config"]);
    assert!(
        shown.stdout.contains("alice = \"<argon2id hash>\"") && !shown.stdout.contains(hash),
        "{shown:?}"
    );
    let d = e.daemon();
    let mut id = 0;
    wait_or_explain(
        Duration::from_secs(10),
        || {
            let (_, api) = d.http(
                "GET",
                "/api/v1/incidents",
                &[(
                    "authorization",
                    "Bearer a-long-enough-token-for-the-api-0123456789",
                )],
            );
            let v: Value = serde_json::from_str(&api).unwrap_or(Value::Null);
            id = v["incidents"]
                .as_array()
                .and_then(|l| l.iter().find(|i| i["check"] == "broken"))
                .and_then(|i| i["id"].as_i64())
                .unwrap_or(0);
            id > 0
        },
        || d.log(),
    );
    (e, d, id)
}

#[test]
fn acknowledging_from_the_page_needs_a_login_and_the_forms_token() {
    require!(Need::Chromium, Need::Chromedriver);
    let (e, d, id) = with_alice("");
    // Without a session: the page reads, the form is not there, and a
    // post is refused.
    let (_, page) = d.http("GET", &format!("/incidents/{id}"), &[]);
    assert!(page.contains("Log in</a> to acknowledge"), "{page}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _) = d.post(&format!("/incidents/{id}/ack"), &form, b"csrf=x&note=mine");
    assert_eq!(status, 401);

    let base = format!("http://{}", d.addr);
    let b = vigie_testkit::webdriver::Browser::start(&e.path().join("browser"));
    // A wrong password, then the right one.
    b.goto(&format!("{base}/ui/login"));
    b.fill("#user", "alice");
    b.fill("#password", "wrong password");
    b.click("button[type=submit]");
    wait_or_explain(
        Duration::from_secs(5),
        || b.source().contains("Wrong user name or password"),
        || b.source(),
    );
    assert!(b.cookie("vigie_session").is_none());
    b.fill("#user", "alice");
    b.fill("#password", "correct horse battery");
    b.click("button[type=submit]");
    wait_or_explain(
        Duration::from_secs(5),
        || b.url() == format!("{base}/"),
        || b.url(),
    );
    let cookie = b.cookie("vigie_session").expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert!(b.source().contains("Log out"), "{}", b.source());

    // The session with a forged token: refused, nothing acknowledged.
    let session = format!("vigie_session={}", cookie["value"].as_str().unwrap());
    let (status, body) = d.post(
        &format!("/incidents/{id}/ack"),
        &[form[0], ("cookie", &session)],
        format!("csrf={}&note=forged", "0".repeat(64)).as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    // From another site, even with the cookie: refused by the guard.
    let (status, _) = d.post(
        &format!("/incidents/{id}/ack"),
        &[
            form[0],
            ("cookie", &session),
            ("origin", "http://evil.example"),
        ],
        b"csrf=x",
    );
    assert_eq!(status, 403);

    // Through the page, as alice: acknowledged, with her note and name.
    b.goto(&format!("{base}/incidents/{id}"));
    b.fill("#note", "on it <b>now</b>");
    b.click("form.ack button");
    wait_or_explain(
        Duration::from_secs(5),
        || !b.source().contains("form class=\"ack\""),
        || b.source(),
    );
    let after = b.source();
    assert!(
        after.contains("on it &lt;b&gt;now&lt;/b&gt; (by alice from the dashboard)"),
        "{after}"
    );
    assert!(
        !after.contains("form class=\"ack\""),
        "no second acknowledgement: {after}"
    );
    let (_, api) = d.http("GET", "/api/v1/incidents", &[]);
    assert!(
        api.contains("on it <b>now</b> (by alice from the dashboard)"),
        "{api}"
    );

    // The header's links are reached by the keyboard, in order.
    b.goto(&format!("{base}/"));
    let first = b.tab_to(1);
    assert_eq!(first["text"], "vigie", "{first}");
    // vigie, then Checks, Incidents, Host, Replication, Failover,
    // Backups, Fleet, then logout.
    let logout = b.tab_to(8);
    assert_eq!(logout["tag"], "BUTTON", "the logout button: {logout}");
    // Logging out ends the session on the server too.
    b.click(".account button");
    wait_or_explain(
        Duration::from_secs(5),
        || b.url().ends_with("/ui/login"),
        || b.url(),
    );
    let (_, page) = d.http("GET", &format!("/incidents/{id}"), &[("cookie", &session)]);
    assert!(
        page.contains("Log in</a>"),
        "the old cookie is worth nothing: {page}"
    );
}

#[test]
fn with_a_token_and_users_the_pages_send_to_the_login_and_a_bad_hash_is_refused() {
    let (_e, d, _) = with_alice("token = { file = \"api.token\" }\n");
    let (status, body) = d.http("GET", "/", &[]);
    assert_eq!(status, 303, "{body}");
    let (status, login) = d.http("GET", "/ui/login", &[]);
    assert_eq!(status, 200);
    assert!(
        login.contains("autocomplete=\"current-password\""),
        "{login}"
    );

    let e = env();
    e.config(&format!(
        "{SERVER_NO_BLANK}users = {{ bob = \"$2y$10$notargon\", \"a b\" = \"x\", carol = \"$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0${}\" }}\n",
        "A".repeat(43)
    ));
    let v = e.run(&["validate"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(
        v.stderr.contains("server.users.bob") && v.stderr.contains("not an argon2id password hash"),
        "{v:?}"
    );
    assert!(v.stderr.contains("`a b` is not a user name"), "{v:?}");
    assert!(
        v.stderr.contains("server.users.carol")
            && v.stderr.contains("above what vigie computes per login"),
        "a hash whose cost would make each login a denial of service: {v:?}"
    );
}

const SERVER_NO_BLANK: &str = "[server]\nlisten = \"127.0.0.1:0\"\n";
