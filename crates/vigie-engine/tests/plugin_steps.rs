//! What flapping holds, for any plugin step (the engine knows no DNS):
//! a check that fails again and again has its plugin step run at every
//! failure, flapping or not, while its notifications are held once it
//! flaps; the undo after recovery waits while the check flaps, and says
//! so once; a plugin step that fails pages at disaster severity, flapping
//! or not. On the default flap rule (6 changes within 1h).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigie_config::Config;
use vigie_engine::{ActionPlugin, Engine, PluginFuture, Plugins, Statuses};

/// A plugin step that records its calls, and fails from the
/// `runs_fail_from`th run on, and from the `undos_fail_from`th undo on.
struct Recorder {
    calls: Mutex<Vec<&'static str>>,
    runs_fail_from: usize,
    undos_fail_from: usize,
}

impl Recorder {
    fn count(&self, what: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == what)
            .count()
    }

    /// Record a call to `what`: `Err(fails)` from its `fails_from`th on,
    /// `Ok(works)` before.
    fn call(
        &self,
        what: &'static str,
        fails_from: usize,
        works: &str,
        fails: &str,
    ) -> Result<String, String> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(what);
        if calls.iter().filter(|c| **c == what).count() >= fails_from {
            Err(fails.to_owned())
        } else {
            Ok(works.to_owned())
        }
    }
}

impl ActionPlugin for Recorder {
    fn kind(&self) -> &'static str {
        vigie_config::ActionKind::FAILOVER
    }

    fn ready<'a>(
        &'a self,
        _: &'a Config,
        _: &'a str,
        _: bool,
        _: &'a Statuses,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async { Ok(String::new()) })
    }

    fn run<'a>(
        &'a self,
        _: &'a Config,
        _: &'a str,
        _: &'a str,
        _: i64,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async move {
            self.call(
                "run",
                self.runs_fail_from,
                "moved",
                "the budget is spent: record left on the primary",
            )
        })
    }

    fn undo_after(&self, _: &Config, _: &str) -> Option<Duration> {
        Some(Duration::from_millis(300))
    }

    fn undo<'a>(
        &'a self,
        _: &'a Config,
        _: &'a str,
        _: &'a str,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async {
            self.call(
                "undo",
                self.undos_fail_from,
                "back",
                "the budget is spent: record left on the backup",
            )
        })
    }
}

/// A webhook receiver: each request's JSON body, answered 200.
async fn capture() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_str(body) {
                        seen.lock().unwrap().push(v);
                    }
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (port, out)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10s: {what}");
}

/// An engine with one check `svc` (up while `flag` exists, every 100ms,
/// `fail_after = recover_after = 1`) whose actions are the plugin step
/// and a webhook; `extra` goes into the check (empty: the defaults).
struct Bed {
    _dir: tempfile::TempDir,
    flag: std::path::PathBuf,
    engine: Engine,
    plugin: Arc<Recorder>,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Bed {
    async fn new(extra: &str, runs_fail_from: usize, undos_fail_from: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("up");
        std::fs::write(&flag, "").unwrap();
        std::fs::write(
            dir.path().join("tsig.key"),
            "dmlnaWUtdGVzdC1rZXktZm9yLWtub3QtdXBkYXRlcy0zMg==\n",
        )
        .unwrap();
        let (port, seen) = capture().await;
        let src = format!(
            r#"[node]
name = "t"

[notify.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/in"

{tables}
[[check]]
name = "svc"
command = {{ argv = ["test", "-e", "{}"] }}
every = "100ms"
fail_after = 1
recover_after = 1
actions = ["failover:f", "notify:hook"]
{extra}
"#,
            flag.display(),
            tables = vigie_testkit::rfc2136_failover(
                "f",
                "d",
                "127.0.0.1:9",
                "k",
                ("192.0.2.1", "192.0.2.2"),
                ""
            ),
        );
        let config = vigie_config::load_str(&src, &dir.path().join("vigie.toml"), &|_| None)
            .unwrap()
            .config;
        if extra.is_empty() {
            assert!(config.checks[0].flapping.is_some(), "the default flap rule");
        }
        let plugin = Arc::new(Recorder {
            calls: Mutex::new(Vec::new()),
            runs_fail_from,
            undos_fail_from,
        });
        let mut plugins = Plugins::default();
        plugins.register(plugin.clone());
        let engine = Engine::start_with(
            &config,
            &dir.path().join("state"),
            plugins,
            vigie_engine::Hints::default(),
            vigie_core::Board::new(),
        )
        .unwrap();
        let bed = Bed {
            _dir: dir,
            flag,
            engine,
            plugin,
            seen,
        };
        until("svc ok", || bed.ok()).await;
        bed
    }

    fn ok(&self) -> bool {
        self.engine
            .view()
            .get("svc")
            .is_some_and(|s| s.state.to_string() == "ok")
    }

    fn states(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["state"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn count(&self, state: &str) -> usize {
        self.states().iter().filter(|x| *x == state).count()
    }

    /// The one page about a failed action, once sent: at disaster
    /// severity, flapping or not.
    async fn failed_action_page(&self) -> serde_json::Value {
        until("the failed action paged", || {
            self.count("action failed") == 1
        })
        .await;
        let page = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["state"] == "action failed")
            .cloned()
            .unwrap();
        assert_eq!(page["severity"], "disaster", "{page}");
        page
    }

    fn down(&self) {
        std::fs::remove_file(&self.flag).unwrap();
    }

    fn up(&self) {
        std::fs::write(&self.flag, "").unwrap();
    }
}

#[tokio::test]
async fn flapping_holds_notifications_not_plugin_steps_and_holds_the_undo() {
    let bed = Bed::new("", 5, usize::MAX).await;
    let plugin = &bed.plugin;
    let engine = &bed.engine;
    let states = || bed.states();
    let count = |s: &str| bed.count(s);
    // Changes of state: ok (1), then two per outage: the third outage's
    // failure is the sixth, and the check flaps from there.
    for outage in 1..=4 {
        bed.down();
        until(&format!("outage {outage}: the step ran"), || {
            plugin.count("run") == outage
        })
        .await;
        bed.up();
        match outage {
            1 | 2 => {
                // Not flapping: notified, and undone after 300ms healthy.
                until(&format!("outage {outage}: undone"), || {
                    plugin.count("undo") == outage
                })
                .await;
                assert_eq!(count("failing"), outage, "{:?}", states());
            }
            _ => {
                until(&format!("outage {outage}: failback held said"), || {
                    count("failback held") == 1
                })
                .await;
                until("svc ok", || bed.ok()).await;
                // Well past the 300ms: still not undone.
                tokio::time::sleep(Duration::from_secs(1)).await;
                assert_eq!(plugin.count("undo"), 2, "undone while flapping");
            }
        }
    }
    // The fifth run fails: paged at disaster severity though it flaps.
    bed.down();
    let page = bed.failed_action_page().await;
    assert!(
        page["body"]
            .as_str()
            .unwrap()
            .contains("f: the budget is spent: record left on the primary"),
        "{page}"
    );
    // Flapping said once; no "failing" since (outages 3 to 5 held); the
    // failback held said once for the whole spell.
    assert_eq!(count("flapping"), 1, "{:?}", states());
    assert_eq!(count("failing"), 2, "{:?}", states());
    assert_eq!(count("failback held"), 1, "{:?}", states());
    engine.shutdown().await;
}

/// The twin that sees the spell end (a short flap window, since the
/// default's hour is no test's length): the held undo happens once the
/// check has been healthy and not flapping for its period; when it fails,
/// that pages at disaster severity.
#[tokio::test]
async fn a_held_undo_happens_once_the_check_stops_flapping() {
    let bed = Bed::new("flapping = { changes = 4, within = \"4s\" }", usize::MAX, 2).await;
    // ok (1); the first outage (2, 3) is undone as usual.
    bed.down();
    until("the first step ran", || bed.plugin.count("run") == 1).await;
    bed.up();
    until("the first undo", || bed.plugin.count("undo") == 1).await;
    // The second outage's failure is the fourth change: it flaps.
    bed.down();
    until("the second step ran", || bed.plugin.count("run") == 2).await;
    bed.up();
    until("failback held said", || bed.count("failback held") == 1).await;
    assert_eq!(bed.plugin.count("undo"), 1, "undone while flapping");
    // Fewer than four changes within the last 4 s: undone.
    until("the held undo", || bed.plugin.count("undo") == 2).await;
    assert_eq!(bed.count("failback held"), 1, "{:?}", bed.states());
    // That second undo failed: paged.
    let page = bed.failed_action_page().await;
    assert!(
        page["title"]
            .as_str()
            .unwrap()
            .contains("svc: failback of f failed"),
        "{page}"
    );
    bed.engine.shutdown().await;
}
