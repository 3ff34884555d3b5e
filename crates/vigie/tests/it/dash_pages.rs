//! The dashboard's failover and backups pages: where a record points
//! after a real switch (Knot DNS), the last runs of backup jobs that
//! ran with a real restic and one that failed (its error shown as
//! text), the sentence a node without either shows, and both pages
//! reached by keyboard from the navigation in Chromium.

use std::time::Duration;

use vigie_testkit::{Need, require, wait_until};

use crate::backup::job;
use crate::dash::{artifacts, chromium};
use crate::failover::{BACKUP, ip, served, setup, watch_blog};
use crate::util::{assert_secure_headers, exits, free_port, wait_or_explain};

/// The page at `path`, which must answer 200.
fn get(d: &vigie_testkit::daemon::Daemon, path: &str) -> String {
    let (status, page) = d.http("GET", path, &[]);
    assert_eq!(status, 200, "{path}: {page}");
    page
}

#[test]
fn the_failover_page_shows_where_the_record_points_after_a_switch_and_why() {
    require!(Need::Knot);
    let (e, k) = setup();
    // Nothing listens on the port: `blog-up` fails, and the daemon moves
    // the record to the backup (quorum 1: this node alone).
    watch_blog(&e, free_port(), "", "", "\"failover:blog\"");
    let d = e.daemon();
    wait_until(Duration::from_secs(15), || {
        served(&k, "blog") == [ip(BACKUP)]
    });
    d.wait_log(
        "failover: blog: blog.example.org → backup",
        Duration::from_secs(5),
    );
    let page = get(&d, "/failover");
    assert!(
        page.contains("aria-current=\"page\">Failover<"),
        "the nav marks the page: {page}"
    );
    assert!(
        page.contains("<code>blog.example.org</code> (A)"),
        "the record: {page}"
    );
    assert!(
        page.contains(&format!(
            "<dt>Points at</dt><dd><span class=\"state failing\">backup</span> {BACKUP}</dd>"
        )),
        "where it points now, with the address: {page}"
    );
    assert!(
        page.contains("blog-up failing (incident"),
        "why it moved: {page}"
    );
    assert!(
        page.contains("<a href=\"/checks/blog-up\">blog-up</a> <span class=\"state failing\">"),
        "the check it watches, with its state: {page}"
    );
    assert!(
        page.contains("1 watcher must see the primary down"),
        "its quorum: {page}"
    );
    assert!(
        page.contains("(this node)</th><td><span class=\"state failing\">primary down</span>"),
        "this node's vote: {page}"
    );
    assert!(
        page.contains("<caption>Votes on blog</caption>")
            && page.contains("<th scope=\"col\">Watcher</th>"),
        "a table with headers: {page}"
    );
    let switches = page
        .split("<caption>Recent switches of blog")
        .nth(1)
        .unwrap_or_else(|| panic!("no switches table: {page}"));
    assert!(
        switches.contains("<td>backup</td><td class=\"msg\">blog-up failing (incident"),
        "the switch is listed: {page}"
    );
    assert!(
        !page.contains(&k.secret) && !page.contains("tsig.key"),
        "nothing of the DNS provider's key: {page}"
    );
    // The API agrees with the page.
    let (_, api) = d.http("GET", "/api/v1/failover", &[]);
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(v[0]["side"], "backup", "{v}");
    // No backup job here: a sentence that says how to declare one.
    let backups = get(&d, "/backups");
    assert!(
        backups.contains("No backup job is declared on this node")
            && backups.contains("docs/config/backup.md")
            && !backups.contains("<table"),
        "{backups}"
    );
    assert_secure_headers(d.addr, "/failover", &[]);
}

/// A job `nightly` that ran (a real snapshot), and a job `broken` whose
/// `before` hook fails with markup in its message.
fn two_jobs() -> (vigie_testkit::Env, String) {
    let e = job(
        "at = \"02:30\"\nmax_age = \"2d\"\n\n[[backup]]\nname = \"broken\"\nrepository = \"repo2\"\n\
         password = { file = \"pw\" }\npaths = [\"data\"]\nat = \"03:00\"\n\
         before = [\"sh\", \"-c\", \"echo '<b>database locked</b>'; exit 4\"]\n",
    );
    exits(&e, &["backup", "init", "nightly"], 0, &[]);
    let run = exits(&e, &["backup", "run", "nightly"], 0, &["saved"]);
    let id = run.stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "{run:?}");
    exits(
        &e,
        &["backup", "run", "broken"],
        3,
        &["`before` (sh) exited with 4"],
    );
    (e, id)
}

#[test]
fn the_backups_page_shows_the_last_runs_and_a_failed_runs_error_as_text() {
    require!(Need::Restic);
    let (e, id) = two_jobs();
    // A restore drill and an integrity check by hand: the store keeps
    // them as it keeps scheduled ones.
    exits(&e, &["backup", "drill", "nightly"], 0, &[]);
    exits(&e, &["backup", "check", "nightly", "--read-data"], 0, &[]);
    let d = e.daemon();
    let page = get(&d, "/backups");
    assert!(
        page.contains("aria-current=\"page\">Backups<")
            && page.contains("<caption>Backup jobs</caption>"),
        "{page}"
    );
    let row = |name: &str| {
        let start = page
            .find(&format!("<tr data-backup=\"{name}\">"))
            .unwrap_or_else(|| panic!("no row for {name}: {page}"));
        let end = start + page[start..].find("</tr>").unwrap();
        page[start..end].to_owned()
    };
    let nightly = row("nightly");
    assert!(
        nightly.contains("<span class=\"state ok\">ok</span>")
            && nightly.contains(&format!("<code>{}</code>", &id[..8])),
        "the good run and its snapshot: {nightly}"
    );
    let broken = row("broken");
    assert!(
        broken.contains("<span class=\"state failing\">failed</span>") && broken.contains("none"),
        "the failed run, and no good snapshot: {broken}"
    );
    // Each job's section.
    let section = |name: &str| {
        let start = page
            .find(&format!("<section class=\"backup\" id=\"backup-{name}\""))
            .unwrap_or_else(|| panic!("no section for {name}: {page}"));
        let end = start + page[start..].find("</section>").unwrap();
        page[start..end].to_owned()
    };
    let nightly = section("nightly");
    assert!(
        nightly.contains("<dd><code>repo</code></dd>") && nightly.contains("daily at 02:30"),
        "its repository and schedule: {nightly}"
    );
    assert!(
        nightly.contains("took ") && nightly.contains(", added "),
        "the run's duration and bytes: {nightly}"
    );
    assert!(
        nightly.contains(&format!("title=\"{id}\"")) && nightly.contains("within max_age (2d)"),
        "the last good snapshot against max_age: {nightly}"
    );
    assert!(
        nightly.contains("<a href=\"/checks/backup-nightly\">backup-nightly</a>")
            && nightly.contains("<a href=\"/checks/backup-nightly-age\">"),
        "its checks: {nightly}"
    );
    assert!(
        nightly.contains("(the measured recovery time)") && nightly.contains(" verified"),
        "the drill by hand, with its restore time: {nightly}"
    );
    assert!(
        nightly.contains("of the data, 0 errors"),
        "the integrity check by hand: {nightly}"
    );
    let broken = section("broken");
    assert!(
        broken.contains("&lt;b&gt;database locked&lt;/b&gt;"),
        "the failed run's error, escaped: {broken}"
    );
    assert!(
        !page.contains("<b>database locked"),
        "never as markup: {page}"
    );
    assert!(
        !page.contains("correct horse"),
        "never the password: {page}"
    );
    // No failover here: a sentence that says how to declare one.
    let failover = get(&d, "/failover");
    assert!(
        failover.contains("No failover is declared on this node")
            && failover.contains("docs/config/failover.md")
            && !failover.contains("<table"),
        "{failover}"
    );
    assert_secure_headers(d.addr, "/backups", &[]);
}

#[test]
fn chromium_reaches_the_failover_and_backups_pages_by_keyboard() {
    require!(Need::Chromium, Need::Chromedriver, Need::Restic);
    let (e, _) = two_jobs();
    let d = e.daemon();
    let base = format!("http://{}", d.addr);
    let b = vigie_testkit::webdriver::Browser::start(&e.path().join("browser"));
    b.goto(&format!("{base}/"));
    // vigie, Checks, Incidents, Host, Replication, Failover.
    let first = b.tab_to(1);
    assert_eq!(first["text"], "vigie", "{first}");
    let failover = b.tab_to(5);
    assert_eq!(failover["text"], "Failover", "{failover}");
    b.enter();
    wait_or_explain(
        Duration::from_secs(5),
        || b.url() == format!("{base}/failover"),
        || b.url(),
    );
    assert!(
        b.source().contains("No failover is declared"),
        "{}",
        b.source()
    );
    // From there: vigie, Checks, …, Failover, Backups.
    let backups = b.tab_to(7);
    assert_eq!(backups["text"], "Backups", "{backups}");
    b.enter();
    wait_or_explain(
        Duration::from_secs(5),
        || b.url() == format!("{base}/backups"),
        || b.url(),
    );
    let source = b.source();
    assert!(
        source.contains("data-backup=\"nightly\"") && source.contains("data-backup=\"broken\""),
        "{source}"
    );
    // The new page starts over: the eight links of the header, then the
    // first job's in the table.
    let job = b.tab_to(9);
    assert_eq!(job["text"], "nightly", "{job}");
    // Rendered on a phone: a screenshot as the test's artifact.
    let path = artifacts().join("backups-phone.png");
    let _ = std::fs::remove_file(&path);
    chromium(
        &e,
        &[
            &format!("--screenshot={}", path.display()),
            "--window-size=390,844",
            &format!("{base}/backups"),
        ],
    );
    let png = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(png.starts_with(b"\x89PNG"), "{}", path.display());
}
