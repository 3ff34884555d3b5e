//! The incident manager's timing on tokio's paused clock: the engine
//! reads its time of day from tokio's clock (`Clock::Tokio`), no check
//! runs by itself (the test records each result), and a blocking task
//! keeps the runtime from advancing time by itself, so time moves only
//! when a test calls `advance`, however long a repair's process or a
//! delivery takes for real. Each test walks to just before a deadline,
//! sees nothing happen, then past it, and waits for the event.

use std::time::Duration;

use tokio::time::advance;
use vigie_core::{CheckResult, Outcome, Timestamp};
use vigie_store::{EventKind, Incident, IncidentEvent as Event};

use super::rfc3339;
use crate::{Engine, Plugins};

#[test]
fn formats_utc_times() {
    assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(Timestamp(1_795_444_401_000)),
        "2026-11-23T14:33:21Z"
    );
    assert_eq!(rfc3339(Timestamp(951_782_400_000)), "2000-02-29T00:00:00Z");
    // Milliseconds are dropped, before the epoch too.
    assert_eq!(rfc3339(Timestamp(1_999)), "1970-01-01T00:00:01Z");
    assert_eq!(rfc3339(Timestamp(-1)), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(Timestamp(i64::MAX)), "9999-12-30T22:00:00Z");
}

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_mins(1);

/// A millisecond before `d`.
fn before(d: Duration) -> Duration {
    d.saturating_sub(MS)
}

/// Keeps tokio's paused clock still while it lives: the runtime does not
/// auto-advance while a blocking task runs.
struct Still {
    _release: std::sync::mpsc::Sender<()>,
}

fn still() -> Still {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    Still { _release: tx }
}

/// An engine with one check `svc` (every 1s, `fail_after = recover_after
/// = 1`, the default flap rule unless `check` sets one) whose lines
/// `check` adds (its `actions`), with the tables `tables`; its notifier
/// `hook` points at a closed port (a delivery fails at once, and is
/// still recorded as a notification step).
struct Bed {
    engine: Engine,
    /// The time of day when the test began (whole seconds).
    start: Timestamp,
    /// tokio's clock then.
    origin: tokio::time::Instant,
    _dir: tempfile::TempDir,
    _still: Still,
}

impl Bed {
    fn new(check: &str, tables: &str) -> Self {
        Self::with_start(check, tables, |_| String::new(), Plugins::default())
    }

    /// The same, with `more(start)` added to the configuration, and the
    /// action kinds of `plugins`.
    fn with_start(
        check: &str,
        tables: &str,
        more: impl Fn(Timestamp) -> String,
        plugins: Plugins,
    ) -> Self {
        let still = still();
        let now = Timestamp::now().millis();
        let start = Timestamp(now - now.rem_euclid(1000));
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tsig.key"),
            "dmlnaWUtdGVzdC1rZXktZm9yLWtub3QtdXBkYXRlcy0zMg==\n",
        )
        .unwrap();
        let src = format!(
            r#"[node]
name = "t"

[engine]
notify_attempts = 1

[notify.hook]
kind = "webhook"
url = "http://127.0.0.1:{closed}/in"

{tables}
{more}
[[check]]
name = "svc"
command = {{ argv = ["false"] }}
every = "1s"
fail_after = 1
recover_after = 1
{check}
"#,
            more = more(start),
        );
        let config = vigie_config::load_str(&src, &dir.path().join("vigie.toml"), &|_| None)
            .unwrap()
            .config;
        let engine =
            Engine::start_unscheduled(&config, &dir.path().join("state"), plugins, start).unwrap();
        Bed {
            engine,
            start,
            origin: tokio::time::Instant::now(),
            _dir: dir,
            _still: still,
        }
    }

    /// `svc` ran now and passed (`ok`) or failed; the engine takes the
    /// change in before the clock moves.
    async fn record(&self, ok: bool) {
        let check = self.engine.inner.config.borrow().checks[0].clone();
        let outcome = if ok {
            Outcome::ok("up")
        } else {
            Outcome::fail("down")
        };
        self.engine.inner.record(
            &check,
            &crate::series::CheckKeys::new(&check.name),
            CheckResult {
                check: check.name.as_str().into(),
                started_at: self.engine.inner.clock.now(),
                lag: Duration::ZERO,
                duration: Duration::ZERO,
                outcome,
            },
        );
        settle().await;
    }

    /// `svc` passes, then fails: its incident opens.
    async fn open(&self) {
        self.record(true).await;
        self.record(false).await;
    }

    /// Let `d` pass as it would for real: in steps that stop on every
    /// tenth of a second since the test began (the engine's paces are
    /// multiples of it), each followed by what became due then, so that
    /// a loop that sleeps its pace wakes on time at each of them.
    async fn step(&self, d: Duration) {
        const GRID: Duration = Duration::from_millis(100);
        let end = tokio::time::Instant::now() + d;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                break;
            }
            let into = now.duration_since(self.origin).as_nanos() % GRID.as_nanos();
            let to_grid = GRID.saturating_sub(Duration::from_nanos(u64::try_from(into).unwrap()));
            advance(to_grid.min(end.saturating_duration_since(now))).await;
            for _ in 0..30 {
                tokio::task::yield_now().await;
            }
        }
        settle().await;
    }

    /// The incidents, oldest first.
    fn incidents(&self) -> Vec<Incident> {
        let mut all = self.engine.incidents(100).unwrap();
        all.reverse();
        all
    }

    /// The `n`th incident (from 1).
    fn incident(&self, n: usize) -> Option<Incident> {
        self.incidents().into_iter().nth(n - 1)
    }

    /// The events of the `n`th incident.
    fn events(&self, n: usize) -> Vec<Event> {
        let Some(inc) = self.incident(n) else {
            return Vec::new();
        };
        self.engine
            .incident_store(|s| s.incident_events(inc.id))
            .unwrap()
    }

    fn has(&self, n: usize, kind: &EventKind) -> bool {
        self.events(n).iter().any(|e| e.kind == *kind)
    }

    /// The details of the `n`th incident's events of `kind`.
    fn details(&self, n: usize, kind: &EventKind) -> Vec<String> {
        self.events(n)
            .into_iter()
            .filter(|e| e.kind == *kind)
            .map(|e| e.detail)
            .collect()
    }

    /// How many times the repair `fix` ran on `svc`.
    fn repairs(&self) -> u32 {
        self.engine
            .incident_store(|s| s.repairs_since("fix", "svc", Timestamp(0)))
            .unwrap()
    }

    /// Wait, without moving the clock, until `cond` holds: what the
    /// engine does at this instant (a process, a connection) finishes in
    /// real time.
    async fn until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let began = std::time::Instant::now();
        while !cond(self) {
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "not within 10s: {what}: {:#?}",
                self.events_of_all()
            );
            tokio::task::yield_now().await;
        }
    }

    fn events_of_all(&self) -> Vec<(i64, EventKind, String)> {
        (1..=self.incidents().len())
            .flat_map(|n| {
                let id = self.incident(n).map_or(0, |i| i.id);
                self.events(n)
                    .into_iter()
                    .map(move |e| (id, e.kind, e.detail))
            })
            .collect()
    }

    /// The time since the test began, on the engine's clock.
    fn elapsed(&self) -> Duration {
        self.start.age(self.engine.inner.clock.now())
    }
}

/// Let every task run what is due now (timers the last `advance`
/// passed included).
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

const REPAIR_THEN_PAGE: &str = r#"actions = ["fix", "notify:hook"]"#;
const FIX: &str = "[action.fix]\nrun = [\"true\"]\nverify = \"10s\"\n";

#[tokio::test(start_paused = true)]
async fn a_check_back_within_the_verify_window_is_repaired_and_pages_nobody() {
    let bed = Bed::new(REPAIR_THEN_PAGE, FIX);
    bed.open().await;
    bed.until("the repair ran", |b| b.repairs() == 1).await;
    bed.step(Duration::from_secs(9)).await;
    assert!(!bed.has(1, &EventKind::NotRepaired), "{:?}", bed.events(1));
    bed.record(true).await;
    bed.until("resolved", |b| {
        b.incident(1).is_some_and(|i| i.resolution.is_some())
    })
    .await;
    assert_eq!(
        bed.incident(1).unwrap().resolution.as_deref(),
        Some("repaired")
    );
    assert!(!bed.has(1, &EventKind::NotRepaired), "{:?}", bed.events(1));
    assert!(!bed.has(1, &EventKind::Notified), "{:?}", bed.events(1));
}

#[tokio::test(start_paused = true)]
async fn a_check_still_failing_when_the_verify_window_ends_goes_on_to_the_page() {
    let bed = Bed::new(REPAIR_THEN_PAGE, FIX);
    bed.open().await;
    bed.until("the repair ran", |b| b.repairs() == 1).await;
    bed.step(before(Duration::from_secs(10))).await;
    assert!(!bed.has(1, &EventKind::NotRepaired), "{:?}", bed.events(1));
    assert!(!bed.has(1, &EventKind::Notified), "{:?}", bed.events(1));
    bed.step(MS).await;
    bed.until("paged", |b| b.has(1, &EventKind::Notified)).await;
    assert_eq!(
        bed.details(1, &EventKind::NotRepaired),
        ["still failing 10s after fix"]
    );
    assert_eq!(bed.elapsed(), Duration::from_secs(10));
}

const PAGE_THEN_ESCALATE: &str = r#"actions = ["notify:hook", "page-boss"]"#;
const BOSS: &str = "[action.page-boss]\nnotify = [\"hook\"]\nafter = \"5m\"\n";

#[tokio::test(start_paused = true)]
async fn an_escalation_comes_its_delay_after_the_incident_opened() {
    let bed = Bed::new(PAGE_THEN_ESCALATE, BOSS);
    bed.open().await;
    bed.until("paged", |b| b.has(1, &EventKind::Notified)).await;
    bed.step(before(5 * MINUTE)).await;
    assert!(!bed.has(1, &EventKind::Escalated), "{:?}", bed.events(1));
    bed.step(MS).await;
    bed.until("escalated", |b| b.has(1, &EventKind::Escalated))
        .await;
    assert_eq!(bed.incident(1).unwrap().state, "escalated");
    assert!(!bed.has(1, &EventKind::EscalationSkipped));
}

#[tokio::test(start_paused = true)]
async fn an_incident_acknowledged_before_its_escalation_is_due_skips_it() {
    let bed = Bed::new(PAGE_THEN_ESCALATE, BOSS);
    bed.open().await;
    bed.until("paged", |b| b.has(1, &EventKind::Notified)).await;
    bed.step(MINUTE).await;
    let id = bed.incident(1).unwrap().id;
    bed.engine.ack(id, "on it").unwrap();
    bed.step(before(4 * MINUTE)).await;
    assert!(
        !bed.has(1, &EventKind::EscalationSkipped),
        "{:?}",
        bed.events(1)
    );
    bed.step(MS).await;
    bed.until("skipped", |b| b.has(1, &EventKind::EscalationSkipped))
        .await;
    assert!(!bed.has(1, &EventKind::Escalated), "{:?}", bed.events(1));
}

/// The `n`th outage of `svc`: it fails, its incident repairs (`fix` has
/// run `repairs` times in all then) or hits the restart limit, and it
/// recovers once the repair's verify window is over.
async fn outage(bed: &Bed, n: usize, repairs: u32) {
    bed.record(false).await;
    bed.until("repaired or limited", |b| {
        b.has(n, &EventKind::RestartLimit)
            || (b.has(n, &EventKind::Repair) && b.repairs() == repairs)
    })
    .await;
    bed.step(Duration::from_secs(2)).await;
    bed.record(true).await;
    bed.until("resolved", |b| {
        b.incident(n).is_some_and(|i| i.resolution.is_some())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_restart_limit_counts_the_repairs_within_its_window() {
    let bed = Bed::new(
        r#"actions = ["fix"]"#,
        "[action.fix]\nrun = [\"true\"]\nverify = \"2s\"\nmax = { restarts = 1, within = \"1h\" }\n",
    );
    bed.record(true).await;
    outage(&bed, 1, 1).await;
    assert_eq!(bed.repairs(), 1);
    // Within the hour of that repair: none.
    // Nothing runs meanwhile: one jump.
    advance(Duration::from_secs(3600 - 3)).await;
    settle().await;
    outage(&bed, 2, 1).await;
    assert_eq!(bed.repairs(), 1);
    assert_eq!(
        bed.details(2, &EventKind::RestartLimit),
        ["restart limit reached: 1 repairs by fix within 1h; not repairing"]
    );
    assert!(!bed.has(2, &EventKind::Repair), "{:?}", bed.events(2));
    // Past it: repaired again.
    bed.step(Duration::from_secs(2)).await;
    outage(&bed, 3, 2).await;
    assert_eq!(bed.repairs(), 2, "{:?}", bed.events(3));
    assert!(!bed.has(3, &EventKind::RestartLimit), "{:?}", bed.events(3));
}

/// A flap rule for `svc`: four changes within ten minutes.
const FLAPS: &str = "flapping = { changes = 4, within = \"10m\" }\n";

/// Make `svc` (on `FLAPS`) flap: ok and failing at 0 (the first
/// incident, paged), ok at 1m, failing at 2m (the fourth change: the
/// second incident is held as flapping).
async fn flap(bed: &Bed) {
    bed.open().await;
    bed.until("first paged", |b| b.has(1, &EventKind::Notified))
        .await;
    bed.step(MINUTE).await;
    bed.record(true).await;
    bed.until("first resolved", |b| {
        b.incident(1).is_some_and(|i| i.resolution.is_some())
    })
    .await;
    bed.step(MINUTE).await;
    bed.record(false).await;
    bed.until("second held", |b| b.has(2, &EventKind::Held))
        .await;
    assert_eq!(bed.details(2, &EventKind::Held), ["flapping"]);
    assert_eq!(bed.incident(2).unwrap().state, "flapping");
}

#[tokio::test(start_paused = true)]
async fn a_flapping_check_holds_its_page_until_its_changes_leave_the_window() {
    let bed = Bed::new(&format!("{FLAPS}actions = [\"notify:hook\"]"), "");
    flap(&bed).await;
    // At 10m the first change is still within the window.
    bed.step(8 * MINUTE).await;
    assert!(!bed.has(2, &EventKind::Released), "{:?}", bed.events(2));
    assert!(!bed.has(2, &EventKind::Notified), "{:?}", bed.events(2));
    // Past it (the hold looks every 500ms): released, and paged.
    bed.step(Duration::from_millis(500)).await;
    bed.until("second paged", |b| b.has(2, &EventKind::Notified))
        .await;
    assert_eq!(bed.details(2, &EventKind::Released), ["no longer flapping"]);
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_window_holds_every_step_until_it_ends() {
    let bed = Bed::with_start(
        REPAIR_THEN_PAGE,
        FIX,
        |start| {
            format!(
                "[[maintenance]]\nname = \"upgrade\"\nchecks = [\"svc\"]\nfrom = \"{}\"\nuntil = \"{}\"\n",
                rfc3339(start.saturating_sub(60 * MINUTE)),
                rfc3339(start.saturating_add(10 * MINUTE)),
            )
        },
        Plugins::default(),
    );
    bed.open().await;
    bed.until("held", |b| b.has(1, &EventKind::Held)).await;
    assert_eq!(
        bed.details(1, &EventKind::Held),
        ["in maintenance window upgrade"]
    );
    bed.step(before(10 * MINUTE)).await;
    assert!(!bed.has(1, &EventKind::Released), "{:?}", bed.events(1));
    assert_eq!(bed.repairs(), 0, "no repair during the window");
    // The window ends (the hold looks every 500ms, on time here).
    bed.step(MS).await;
    bed.until("repaired", |b| b.repairs() == 1).await;
    assert_eq!(
        bed.details(1, &EventKind::Released),
        ["no longer in maintenance window upgrade"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_started_by_hand_holds_every_step_until_it_ends() {
    let bed = Bed::new(REPAIR_THEN_PAGE, FIX);
    let refused = bed
        .engine
        .start_maintenance("nothing", 10 * MINUTE, "alice")
        .unwrap_err();
    assert_eq!(refused.to_string(), "no check named nothing");
    assert!(
        bed.engine
            .start_maintenance("svc", Duration::ZERO, "alice")
            .is_err()
    );
    let m = bed
        .engine
        .start_maintenance("svc", 10 * MINUTE, "alice")
        .unwrap();
    assert_eq!(bed.engine.maintenance("svc"), Some(m));
    bed.open().await;
    bed.until("held", |b| b.has(1, &EventKind::Held)).await;
    assert_eq!(
        bed.details(1, &EventKind::Held),
        ["in maintenance window started by alice"]
    );
    bed.step(before(10 * MINUTE)).await;
    assert_eq!(bed.repairs(), 0, "no repair during the maintenance");
    bed.step(MS).await;
    bed.until("repaired", |b| b.repairs() == 1).await;
    assert_eq!(bed.engine.maintenance("svc"), None, "over");
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_ended_by_hand_releases_its_incident() {
    let bed = Bed::new(REPAIR_THEN_PAGE, FIX);
    bed.engine
        .start_maintenance("svc", 60 * MINUTE, "alice")
        .unwrap();
    bed.open().await;
    bed.until("held", |b| b.has(1, &EventKind::Held)).await;
    bed.step(MINUTE).await;
    assert!(bed.engine.end_maintenance("svc").unwrap());
    assert!(!bed.engine.end_maintenance("svc").unwrap(), "once");
    // The hold looks every 500ms.
    bed.step(Duration::from_millis(500)).await;
    bed.until("repaired", |b| b.repairs() == 1).await;
}

/// A failover step that only counts its moves (the engine knows no DNS).
#[derive(Default)]
struct Moves(std::sync::atomic::AtomicUsize);

impl Moves {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl crate::ActionPlugin for Moves {
    fn kind(&self) -> &'static str {
        vigie_config::ActionKind::FAILOVER
    }

    fn ready<'a>(
        &'a self,
        _: &'a vigie_config::Config,
        _: &'a str,
        _: bool,
        _: &'a crate::Statuses,
    ) -> crate::PluginFuture<'a, Result<String, String>> {
        Box::pin(async { Ok(String::new()) })
    }

    fn run<'a>(
        &'a self,
        _: &'a vigie_config::Config,
        _: &'a str,
        _: &'a str,
        _: i64,
    ) -> crate::PluginFuture<'a, Result<String, String>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async { Ok("moved".to_owned()) })
    }

    fn undo_after(&self, _: &vigie_config::Config, _: &str) -> Option<Duration> {
        None
    }

    fn undo<'a>(
        &'a self,
        _: &'a vigie_config::Config,
        _: &'a str,
        _: &'a str,
    ) -> crate::PluginFuture<'a, Result<String, String>> {
        Box::pin(async { Ok("back".to_owned()) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_flapping_check_still_fails_over_and_holds_only_its_page() {
    let moves = std::sync::Arc::new(Moves::default());
    let mut plugins = Plugins::default();
    plugins.register(moves.clone());
    let bed = Bed::with_start(
        &format!("{FLAPS}actions = [\"failover:f\", \"notify:hook\"]"),
        &vigie_testkit::rfc2136_failover(
            "f",
            "d",
            "127.0.0.1:9",
            "k",
            ("192.0.2.1", "192.0.2.2"),
            "",
        ),
        |_| String::new(),
        plugins,
    );
    flap(&bed).await;
    assert_eq!(moves.count(), 2, "the move is never held");
    assert_eq!(bed.details(2, &EventKind::FailedOver), ["f"]);
    bed.step(MINUTE).await;
    assert!(!bed.has(2, &EventKind::Notified), "{:?}", bed.events(2));
}
