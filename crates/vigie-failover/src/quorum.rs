//! The quorum of watchers: each vigie says what it sees of a failover's
//! primary (its vote), peers ask each other over HTTPS with a token, and
//! the record moves only when `quorum` watchers each see the primary
//! down. A watcher whose own link is down (every `reference` check
//! failing) abstains. One watcher acts: the lowest-named of those that
//! agree (the backup host itself first when the backup is its public
//! address); the others wait for the authoritative servers to show the
//! change, and act themselves only if it never comes (the DNS change is a
//! compare-and-swap, so two actors cannot fight).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigie_config::{Backup, Config, Failover, Peer};
use vigie_core::{CheckState, Timestamp};
use vigie_engine::{CheckStatus, Statuses};
use vigie_net::Alpn;

/// What one watcher sees of a failover's primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A trigger check is failing (past its `fail_after`).
    Down,
    /// Every trigger check is healthy.
    Up,
    /// This watcher's own link is down: it does not vote.
    Abstain,
    /// Not known yet (checks not run), or no answer.
    Unknown,
}

/// One watcher's vote, as a peer sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub node: String,
    pub failover: String,
    pub verdict: Verdict,
    /// Since when (ms since the epoch) the verdict holds.
    pub since: i64,
    /// Why, in words.
    pub detail: String,
    /// This watcher publishes its own address as the backup: it is the
    /// one to act when it agrees.
    #[serde(default)]
    pub backup_is_self: bool,
}

/// This node's vote on failover `f`, from its checks' states.
pub fn local_vote(node: &str, f: &Failover, view: &Statuses) -> Vote {
    let config = view.config();
    decide(
        node,
        f,
        &|c| view.get(c),
        &|c| config.check(c).map_or(Duration::ZERO, confirm_window),
        Timestamp::now(),
    )
}

/// How long a failing trigger check takes to tell, from fresh runs,
/// whether it still fails or has recovered: `fail_after` or
/// `recover_after` runs (the larger) at its cadence (a check already
/// failing runs at `every`), plus one run for the phase and a timeout.
fn confirm_window(c: &vigie_config::Check) -> Duration {
    let runs = c.fail_after.max(c.recover_after).saturating_add(1);
    c.every.0.saturating_mul(runs) + c.timeout.0
}

/// The vote, from each check's status (`status`), how long each trigger
/// takes to confirm a failure (`confirm`), and the time.
///
/// A trigger that became failing before this watcher's own link (its
/// `reference` checks) last came back was judged, at least in part,
/// while the watcher could see nothing: it counts as down only once it
/// has kept failing for a whole confirmation window after the link came
/// back (until then the vote is unknown). Without this, a watcher whose
/// link returns votes down in the moment between its reference check's
/// first success and the trigger's, and with `quorum = 1` moves the
/// record off a healthy primary.
fn decide(
    node: &str,
    f: &Failover,
    status: &dyn Fn(&str) -> Option<CheckStatus>,
    confirm: &dyn Fn(&str) -> Duration,
    now: Timestamp,
) -> Vote {
    let vote = |verdict, since: Timestamp, detail: String| Vote {
        node: node.to_owned(),
        failover: f.name.clone(),
        verdict,
        since: since.millis(),
        detail,
        backup_is_self: f.backup == Backup::PublicIp,
    };
    let refs: Vec<_> = f.reference.iter().map(|c| (c, status(c))).collect();
    if !refs.is_empty()
        && refs
            .iter()
            .all(|(_, s)| s.as_ref().is_some_and(|s| s.state == CheckState::Failing))
    {
        let since = refs
            .iter()
            .filter_map(|(_, s)| s.as_ref().map(|s| s.since))
            .max()
            .unwrap_or(now);
        let names = listed(refs.iter().map(|(c, _)| *c));
        return vote(
            Verdict::Abstain,
            since,
            format!("own link down: {names} failing"),
        );
    }
    // Since when this watcher's link has been up: one reference passing
    // is enough, so the earliest of their recoveries (a healthy one's,
    // or a failing one's first good run, not yet confirmed: now).
    let link_back = refs
        .iter()
        .filter_map(|(_, s)| {
            let s = s.as_ref()?;
            match s.state {
                CheckState::Ok => Some(s.since),
                _ if s.last_ok == Some(true) => Some(now),
                _ => None,
            }
        })
        .min();
    let triggers: Vec<_> = f.checks.iter().map(|c| (c, status(c))).collect();
    let failing: Vec<_> = triggers
        .iter()
        .filter_map(|(c, s)| {
            s.as_ref()
                .filter(|s| s.state == CheckState::Failing)
                .map(|s| (c, s))
        })
        .collect();
    let (confirmed, unconfirmed): (Vec<_>, Vec<_>) = failing.iter().partition(|(c, s)| {
        link_back.is_none_or(|back| s.since > back || back.age(now) >= confirm(c))
    });
    // The link in doubt: no reference check's latest run succeeded (it
    // fails before it is confirmed failing, and a trigger may be
    // confirmed first).
    let doubt = !refs.is_empty()
        && !refs
            .iter()
            .any(|(_, s)| s.as_ref().is_some_and(|s| s.last_ok == Some(true)));
    if doubt && !confirmed.is_empty() {
        let names = listed(refs.iter().map(|(c, _)| *c));
        let why = format!("own link in doubt: the last run of {names} failed");
        return vote(Verdict::Unknown, now, why);
    }
    if let Some(since) = confirmed.iter().map(|(_, s)| s.since).min() {
        let what: Vec<String> = confirmed
            .iter()
            .map(|(c, s)| format!("{c}: {}", s.last_message))
            .collect();
        return vote(Verdict::Down, since, what.join("; "));
    }
    if !unconfirmed.is_empty() {
        let names = listed(unconfirmed.iter().map(|(c, _)| **c));
        let why = format!("own link back: re-confirming {names} from fresh runs");
        return vote(Verdict::Unknown, now, why);
    }
    let ok = !triggers.is_empty()
        && triggers
            .iter()
            .all(|(_, s)| s.as_ref().is_some_and(|s| s.state == CheckState::Ok));
    if ok {
        // Healthy since the last of them became healthy.
        let since = triggers
            .iter()
            .filter_map(|(_, s)| s.as_ref().map(|s| s.since))
            .max()
            .unwrap_or(now);
        return vote(Verdict::Up, since, "primary healthy".into());
    }
    vote(
        Verdict::Unknown,
        now,
        "the checks have not decided yet".into(),
    )
}

/// Check names, as a vote's detail lists them.
fn listed<'a>(checks: impl Iterator<Item = &'a String>) -> String {
    checks.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// A client for one peer.
#[derive(Clone, Debug)]
pub struct PeerClient {
    pub name: String,
    base: String,
    token: String,
    client: reqwest::Client,
}

/// How long a peer has to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// A vote is a few hundred bytes; a peer that sends more is not read on.
const VOTE_LIMIT: usize = 16 * 1024;
/// How far ahead of this node's clock a vote's `since` may be (clocks of
/// watchers differ a little); beyond, the vote is refused: a verdict that
/// holds from the future is a broken clock or a lie.
const CLOCK_SKEW: Duration = Duration::from_mins(1);

impl PeerClient {
    pub fn new(p: &Peer) -> Result<Self, String> {
        let tls = match (&p.pin, &p.ca) {
            (Some(pin), _) => {
                let bytes = data_encoding::HEXLOWER_PERMISSIVE
                    .decode(pin.as_bytes())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| format!("peer {}: the pin is not a SHA-256 in hex", p.name))?;
                vigie_net::pinned_client_config(bytes, Alpn::Http)
            }
            (None, Some(ca)) => vigie_net::private_ca_client_config(ca, Alpn::Http),
            (None, None) => vigie_net::tls_client_config(&vigie_net::TlsOptions::https()),
        }
        .map_err(|e| format!("peer {}: {}", p.name, e.0))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(PEER_TIMEOUT)
            .connect_timeout(PEER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigie/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("peer {}: {e}", p.name))?;
        Ok(Self {
            name: p.name.clone(),
            base: p.url.0.as_str().trim_end_matches('/').to_owned(),
            token: p.token.expose().to_owned(),
            client,
        })
    }

    /// The peer's vote on `failover`. A peer that answers garbage, or a
    /// vote in another name, gets an error (logged by the caller), never
    /// a vote.
    pub async fn vote(&self, failover: &str) -> Result<Vote, String> {
        let body = self
            .get(&format!("/api/v1/peer/vote/{failover}"), VOTE_LIMIT)
            .await
            .map_err(|e| {
                if e.starts_with("sent more than") {
                    format!("{e}: that is no vote")
                } else {
                    e
                }
            })?;
        let vote: Vote = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "sent something that is no vote ({e}): {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            )
        })?;
        if vote.node != self.name || vote.failover != failover {
            return Err(format!(
                "answered as node `{}` for `{}`: not the peer configured as `{}`",
                vote.node, vote.failover, self.name
            ));
        }
        let now = Timestamp::now().millis();
        let skew = i64::try_from(CLOCK_SKEW.as_millis()).unwrap_or(i64::MAX);
        if vote.since > now.saturating_add(skew) {
            return Err(format!(
                "sent a vote that holds since {} s in the future: check its clock (NTP)",
                (vote.since - now) / 1000
            ));
        }
        Ok(vote)
    }
}

impl PeerClient {
    /// GET `path` of the peer's API with the shared token; its body, at
    /// most `limit` bytes (a peer sending more is not read on). Any
    /// answer but a success is an error that says what came back.
    pub async fn get(&self, path: &str, limit: usize) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", vigie_net::chain(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(format!("sent more than {limit} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the answer: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > limit {
                return Err(format!("sent more than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The peer's base URL (its dashboard's too).
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Clients for every `[[peer]]` of `config`.
pub fn clients(config: &Config) -> Vec<Result<PeerClient, String>> {
    config.peers.iter().map(PeerClient::new).collect()
}

/// Every watcher's vote on one failover at one moment; the peers that
/// gave none, with why.
#[derive(Clone, Debug, Serialize)]
pub struct Tally {
    pub failover: String,
    pub quorum: u32,
    pub at: i64,
    pub votes: Vec<Vote>,
    /// Peers that gave no vote, and why.
    pub silent: BTreeMap<String, String>,
}

impl Tally {
    /// The watchers that see the primary down, actor first.
    pub fn down(&self) -> Vec<&Vote> {
        let mut v: Vec<&Vote> = self
            .votes
            .iter()
            .filter(|v| v.verdict == Verdict::Down)
            .collect();
        v.sort_by(|a, b| (!a.backup_is_self, &a.node).cmp(&(!b.backup_is_self, &b.node)));
        v
    }

    /// The watchers that have seen the primary healthy for at least
    /// `d`, actor first.
    pub fn healthy_for(&self, d: Duration) -> Vec<&Vote> {
        let cutoff = self.at - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut v: Vec<&Vote> = self
            .votes
            .iter()
            .filter(|v| v.verdict == Verdict::Up && v.since <= cutoff)
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    /// One line: who votes what.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .votes
            .iter()
            .map(|v| {
                format!(
                    "{} {}",
                    v.node,
                    match v.verdict {
                        Verdict::Down => "down",
                        Verdict::Up => "up",
                        Verdict::Abstain => "abstains",
                        Verdict::Unknown => "unsure",
                    }
                )
            })
            .collect();
        parts.extend(self.silent.keys().map(|n| format!("{n} silent")));
        parts.join(", ")
    }
}

/// Ask every peer (at once) and this node.
pub async fn gather(
    config: &Config,
    f: &Failover,
    view: &Statuses,
    peers: &[Result<PeerClient, String>],
) -> Tally {
    let mine = local_vote(&config.node.name, f, view);
    let mut votes = vec![mine];
    let mut silent = BTreeMap::new();
    let mut asks = tokio::task::JoinSet::new();
    for (p, cfg) in peers.iter().zip(&config.peers) {
        match p {
            Ok(c) => {
                let (c, name) = (c.clone(), f.name.clone());
                asks.spawn(async move { (c.name.clone(), c.vote(&name).await) });
            }
            Err(e) => {
                silent.insert(cfg.name.clone(), e.clone());
            }
        }
    }
    while let Some(joined) = asks.join_next().await {
        let Ok((name, a)) = joined else { continue };
        match a {
            Ok(v) => votes.push(v),
            Err(e) => {
                silent.insert(name, e);
            }
        }
    }
    Tally {
        failover: f.name.clone(),
        quorum: f.quorum,
        at: Timestamp::now().millis(),
        votes,
        silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(node: &str, verdict: Verdict, since: i64, backup_is_self: bool) -> Vote {
        Vote {
            node: node.into(),
            failover: "blog".into(),
            verdict,
            since,
            detail: String::new(),
            backup_is_self,
        }
    }

    fn tally(votes: Vec<Vote>) -> Tally {
        Tally {
            failover: "blog".into(),
            quorum: 2,
            at: 100_000,
            votes,
            silent: BTreeMap::new(),
        }
    }

    #[test]
    fn the_lowest_named_watcher_that_agrees_acts() {
        let t = tally(vec![
            vote("w3", Verdict::Down, 0, false),
            vote("w1", Verdict::Abstain, 0, false),
            vote("w2", Verdict::Down, 0, false),
        ]);
        let down: Vec<&str> = t.down().iter().map(|v| v.node.as_str()).collect();
        assert_eq!(down, ["w2", "w3"]);
    }

    #[test]
    fn a_backup_publishing_its_own_address_acts_first() {
        let t = tally(vec![
            vote("a", Verdict::Down, 0, false),
            vote("home", Verdict::Down, 0, true),
        ]);
        assert_eq!(t.down()[0].node, "home");
    }

    #[test]
    fn healthy_counts_only_those_healthy_long_enough() {
        let t = tally(vec![
            vote("w1", Verdict::Up, 10_000, false),
            vote("w2", Verdict::Up, 95_000, false),
            vote("w3", Verdict::Down, 0, false),
        ]);
        let ok: Vec<&str> = t
            .healthy_for(Duration::from_secs(30))
            .iter()
            .map(|v| v.node.as_str())
            .collect();
        assert_eq!(ok, ["w1"]);
        assert_eq!(t.healthy_for(Duration::from_secs(1)).len(), 2);
    }

    /// `[failover.blog]` triggered by `web`, with `uplink` as this
    /// watcher's reference (`verdict` gives `web` a 9 s window).
    fn blog() -> Failover {
        let src = "[dns.x]\nkind = \"command\"\nargv = [\"true\"]\n\n\
            [[check]]\nname = \"web\"\ntcp = { address = \"192.0.2.1:80\" }\nevery = \"2s\"\ntimeout = \"1s\"\nfail_after = 3\n\n\
            [[check]]\nname = \"uplink\"\ntcp = { address = \"192.0.2.2:53\" }\n\n\
            [failover.blog]\nrecord = { zone = \"example.org\", name = \"blog\" }\n\
            primary = [\"192.0.2.1\"]\nbackup = [\"198.51.100.7\"]\ndns = \"x\"\n\
            checks = [\"web\"]\nreference = [\"uplink\"]\nverify = [\"192.0.2.53:53\"]\n";
        let loaded = vigie_config::load_str(src, std::path::Path::new("q.toml"), &|_| None)
            .unwrap_or_else(|d| panic!("{d}"));
        loaded.config.failovers.get("blog").unwrap().clone()
    }

    fn status(name: &str, state: CheckState, since: i64) -> CheckStatus {
        CheckStatus {
            name: name.into(),
            kind: "tcp",
            severity: vigie_core::Severity::High,
            state,
            since: Timestamp(since),
            consecutive_ok: 0,
            consecutive_fail: 0,
            last_run: None,
            last_ok: None,
            last_message: "refused".into(),
            last_duration_seconds: 0.0,
            runs_total: 0,
            failures_total: 0,
            metrics: Vec::new(),
            every_seconds: 2.0,
            depends_on: Vec::new(),
        }
    }

    /// The verdict with `web` and `uplink` in these states (since, in ms;
    /// the last run's result is the state's) at `now` (ms).
    fn verdict(web: (CheckState, i64), uplink: (CheckState, i64), now: i64) -> Verdict {
        verdict_with(web, uplink, uplink.0 == CheckState::Ok, now)
    }

    fn verdict_with(
        web: (CheckState, i64),
        uplink: (CheckState, i64),
        uplink_last_ok: bool,
        now: i64,
    ) -> Verdict {
        let f = blog();
        let get = |c: &str| {
            let mut s = match c {
                "web" => status("web", web.0, web.1),
                "uplink" => status("uplink", uplink.0, uplink.1),
                _ => return None,
            };
            s.last_ok = Some(s.state == CheckState::Ok);
            if c == "uplink" {
                s.last_ok = Some(uplink_last_ok);
            }
            Some(s)
        };
        decide("w1", &f, &get, &|_| Duration::from_secs(9), Timestamp(now)).verdict
    }

    #[test]
    fn the_confirmation_window_covers_fail_after_and_recover_after_runs() {
        let f = blog();
        let loaded = vigie_config::load_str(
            "[[check]]\nname = \"web\"\ntcp = { address = \"192.0.2.1:80\" }\nevery = \"2s\"\nretry_every = \"1s\"\ntimeout = \"1s\"\nfail_after = 3\nrecover_after = 5\n",
            std::path::Path::new("q.toml"),
            &|_| None,
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let web = loaded.config.check("web").unwrap();
        assert_eq!(confirm_window(web), Duration::from_secs(13));
        assert_eq!(f.checks, ["web"]);
    }

    /// Regression (seen in CI): a watcher whose link came back voted
    /// "down" in the moment between its reference check's first success
    /// and the trigger's, and with `quorum = 1` moved the record off a
    /// healthy primary.
    #[test]
    fn a_failure_seen_while_the_link_was_down_is_confirmed_afresh() {
        use CheckState::{Failing, Ok};
        // (web, link, now): the verdict.
        let cases = [
            // Link down: abstain.
            ((Failing, 1_000), (Failing, 900), 5_000, Verdict::Abstain),
            // Link back at 10 s; web failing since 1 s: not yet a vote.
            ((Failing, 1_000), (Ok, 10_000), 10_500, Verdict::Unknown),
            ((Failing, 1_000), (Ok, 10_000), 18_900, Verdict::Unknown),
            // Still failing a whole window after the link came back: down.
            ((Failing, 1_000), (Ok, 10_000), 19_000, Verdict::Down),
            // A failure that began after the link came back is down at once.
            ((Failing, 12_000), (Ok, 10_000), 12_001, Verdict::Down),
            // The link healthy for long: a fresh failure is down at once.
            ((Failing, 50_000), (Ok, 0), 50_001, Verdict::Down),
            // Recovered: up.
            ((Ok, 11_000), (Ok, 10_000), 11_001, Verdict::Up),
        ];
        for (web, link, now, want) in cases {
            assert_eq!(verdict(web, link, now), want, "{web:?} {link:?} at {now}");
        }
        // The link's last run failed but it is not confirmed failing yet
        // (a trigger confirmed first, as the link goes): no vote.
        assert_eq!(
            verdict_with((Failing, 50_000), (Ok, 0), false, 50_001),
            Verdict::Unknown
        );
        // The only reference recovering (failing, its last run good): not
        // confirmed back yet, still abstains.
        assert_eq!(
            verdict_with((Failing, 1_000), (Failing, 900), true, 10_000),
            Verdict::Abstain
        );
    }

    /// The verdict at 101 s with `web` failing since 50 s and two
    /// references, each (state, since, its last run good).
    fn two_references(uplink: (CheckState, i64, bool), uplink2: (CheckState, i64, bool)) -> Vote {
        let mut f = blog();
        f.reference = vec!["uplink".into(), "uplink2".into()];
        let get = |c: &str| {
            let (state, since, ok) = match c {
                "web" => (CheckState::Failing, 50_000, false),
                "uplink" => uplink,
                "uplink2" => uplink2,
                _ => return None,
            };
            let mut s = status(c, state, since);
            s.last_ok = Some(ok);
            Some(s)
        };
        decide(
            "w1",
            &f,
            &get,
            &|_| Duration::from_secs(9),
            Timestamp(101_000),
        )
    }

    /// Review: with two references, one flapping must not hold the vote
    /// while the other has been up all along; and a reference recovering
    /// (failing, its last run good) beside one not run yet means the link
    /// just came back: the failure seen before is re-confirmed.
    #[test]
    fn one_reference_up_all_along_is_enough() {
        use CheckState::{Failing, Ok, Unknown};
        let v = two_references((Ok, 0, true), (Ok, 100_000, true));
        assert_eq!(v.verdict, Verdict::Down, "{}", v.detail);
        let v = two_references((Failing, 40_000, true), (Unknown, 0, false));
        assert_eq!(v.verdict, Verdict::Unknown, "{}", v.detail);
    }

    #[test]
    fn a_vote_round_trips_and_garbage_is_refused() {
        let v = vote("w1", Verdict::Down, 5, false);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Vote>(&json).unwrap(), v);
        assert!(serde_json::from_str::<Vote>("{\"node\":\"w1\"}").is_err());
        assert!(serde_json::from_str::<Vote>("<html>").is_err());
    }
}
