//! A failover test bed: two vigie watchers in their own network
//! namespaces, peering over HTTPS with pinned self-signed certificates, a
//! primary web server in a third namespace, and Knot DNS in a fourth, all
//! on one bridge ([`crate::netns`]). Used by the quorum tests and by
//! `bench/failover`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::daemon::Daemon;
use crate::knot::{Knot, knot_at};
use crate::netns::Lab;
use crate::servers::self_signed_for;
use crate::{Env, Need, wait_until};

pub const API_TOKEN: &str = "api-token-for-tests";
pub const PEER_TOKEN: &str = "peer-token-shared-by-w1-and-w2";

pub struct Watcher {
    pub env: Env,
    pub daemon: Option<Daemon>,
}

pub struct Cluster {
    pub watchers: Vec<Watcher>,
    web: Option<Child>,
    pub knot: Knot,
    pub lab: Lab,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut w) = self.web.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        for w in &mut self.watchers {
            w.daemon.take();
        }
    }
}

impl Cluster {
    pub fn dns(&self) -> SocketAddr {
        (self.lab.ip("dns"), 53).into()
    }

    pub fn start_web(&mut self) {
        let ip = self.lab.ip("prim").to_string();
        let child = self
            .lab
            .cmd("prim", "python3")
            .args(["-m", "http.server", "8080", "--bind", &ip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        self.web = Some(child);
        let addr: SocketAddr = (self.lab.ip("prim"), 8080).into();
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    /// Drop every packet toward the primary's web port: connections hang
    /// until the watchers' timeout, as to a host gone dark (not a refused
    /// connection). [`Lab::heal`] ends it.
    pub fn blackhole_web(&self) {
        self.lab.blackhole("prim", 8080);
    }

    pub fn kill_web(&mut self) {
        if let Some(mut w) = self.web.take() {
            w.kill().unwrap();
            w.wait().unwrap();
        }
    }

    /// `vigie failover status blog --json` on watcher `i`, as the CLI
    /// shows it (with the daemon's own view).
    pub fn status(&self, i: usize) -> serde_json::Value {
        let r = self.watchers[i]
            .env
            .run(&["failover", "status", "blog", "--json"]);
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .map_or_else(|e| panic!("{e}: {r:?}"), |v| v[0].clone())
    }

    pub fn verdict(&self, i: usize) -> String {
        self.status(i)["daemon"]["vote"]["verdict"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    }

    pub fn log(&self, i: usize) -> String {
        self.watchers[i]
            .daemon
            .as_ref()
            .map(Daemon::log)
            .unwrap_or_default()
    }
}

/// How the watchers of a [`cluster`] are set up. Everything else is the
/// user's default (`flapping`, `cooldown`, `max_changes_per_day`): a test
/// that changes one of those below keeps a twin on the defaults.
pub struct Settings<'a> {
    pub quorum: u32,
    /// The web check's `every` and `fail_after`.
    pub every: &'a str,
    pub fail_after: u32,
    /// The web check's `timeout`, and its `retry_every` if any.
    pub timeout: &'a str,
    pub retry_every: Option<&'a str>,
    /// The failover's `failback`, as TOML.
    pub failback: &'a str,
    /// The failover's `cooldown` (`None`: the default, 10m), for a test
    /// that watches the record come back within minutes.
    pub cooldown: Option<&'a str>,
    /// The failover's `max_changes_per_day` (`None`: the default, 12),
    /// for a benchmark that moves the record more often than that.
    pub max_changes_per_day: Option<u32>,
}

/// Two watchers w1, w2 peering over HTTPS, a primary web server, Knot
/// serving `blog.example.org` at the primary; returns once both watchers
/// see the primary up. `bin` is the vigie binary.
pub fn cluster(bin: &str, s: &Settings<'_>) -> Cluster {
    // Tests say `require!(Need::Netns, Need::Knot, Need::Python3)` first,
    // and so skip rather than fail here; the benchmark needs it all too.
    for need in [Need::Netns, Need::Knot, Need::Python3] {
        if let Some(why) = need.missing() {
            panic!("the failover test bed {why}");
        }
    }
    let lab = Lab::new(&["dns", "prim", "back", "w1", "w2"]);
    let dns: SocketAddr = (lab.ip("dns"), 53).into();
    let knot = knot_at(
        Some(&lab.ns("dns")),
        dns,
        "example.org",
        &format!("blog A {}", lab.ip("prim")),
    );
    let certs: Vec<_> = WATCHERS
        .iter()
        .map(|w| self_signed_for(lab.ip(w)))
        .collect();
    let mut watchers = Vec::new();
    for (i, w) in WATCHERS.iter().enumerate() {
        let env = Env::in_netns(bin, &lab.ns(w));
        env.write("cert.pem", &certs[i].0);
        env.write("key.pem", &certs[i].1);
        env.write("tsig.key", &format!("{}\n", knot.secret));
        env.write("api.token", API_TOKEN);
        env.write("peer.token", PEER_TOKEN);
        env.config(&watcher_config(&lab, &knot, s, i, &certs[1 - i].2));
        let r = env.run(&["validate"]);
        assert_eq!(r.code, 0, "{r:?}");
        watchers.push(Watcher { env, daemon: None });
    }
    let mut c = Cluster {
        watchers,
        web: None,
        knot,
        lab,
    };
    c.start_web();
    for w in &mut c.watchers {
        w.daemon = Some(w.env.daemon());
    }
    // Both see the primary up before anything happens.
    for i in 0..2 {
        wait_until(Duration::from_secs(30), || c.verdict(i) == "up");
    }
    c
}

/// The watchers' names, each the other's peer.
const WATCHERS: [&str; 2] = ["w1", "w2"];

/// The configuration of watcher `i` of [`WATCHERS`], whose peer's
/// certificate has the SHA-256 `peer_pin`.
fn watcher_config(lab: &Lab, knot: &Knot, s: &Settings<'_>, i: usize, peer_pin: &str) -> String {
    let mut overrides = String::new();
    if let Some(c) = s.cooldown {
        let _ = writeln!(overrides, "cooldown = \"{c}\"");
    }
    if let Some(n) = s.max_changes_per_day {
        let _ = writeln!(overrides, "max_changes_per_day = {n}");
    }
    let (w, peer) = (WATCHERS[i], WATCHERS[1 - i]);
    format!(
        r#"[node]
name = "{w}"

[server]
listen = "{me}:9470"
token = {{ file = "api.token" }}
tls = {{ cert = "cert.pem", key = "key.pem" }}

[[peer]]
name = "{peer}"
url = "https://{peer_ip}:9470"
token = {{ file = "peer.token" }}
pin = "{peer_pin}"

{tables}{overrides}
[[check]]
name = "web"
http = {{ url = "http://{prim}:8080/" }}
every = "{every}"
timeout = "{timeout}"
{retry_every}fail_after = {fail_after}
recover_after = 2

[[check]]
name = "link"
tcp = {{ address = "{dns}" }}
every = "1s"
timeout = "1s"
fail_after = 2
"#,
        me = lab.ip(w),
        peer_ip = lab.ip(peer),
        dns = SocketAddr::from((lab.ip("dns"), 53)),
        tables = crate::rfc2136_failover(
            "blog",
            "knot",
            &SocketAddr::from((lab.ip("dns"), 53)).to_string(),
            &knot.key_name,
            (&lab.ip("prim").to_string(), &lab.ip("back").to_string()),
            &format!(
                "checks = [\"web\"]\nreference = [\"link\"]\nquorum = {}\nfailback = {}\nverify_timeout = \"10s\"\n",
                s.quorum, s.failback
            ),
        ),
        prim = lab.ip("prim"),
        every = s.every,
        fail_after = s.fail_after,
        timeout = s.timeout,
        retry_every = s
            .retry_every
            .map(|r| format!("retry_every = \"{r}\"\n"))
            .unwrap_or_default(),
    )
}
