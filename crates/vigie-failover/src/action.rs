//! Failover as an incident action: `failover:NAME` in a check's actions
//! points the record at the backup (verified) once a quorum of watchers
//! agrees, and the failback policy decides when it comes back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use vigie_config::{Config, Failback, Failover};
use vigie_core::Timestamp;
use vigie_engine::{ActionPlugin, PluginFuture, Statuses};

use crate::quorum::{self, Tally, Verdict};
use crate::{Change, Provider, Side, record, switch};

/// How often a watcher waiting for a quorum asks again.
const POLL: Duration = Duration::from_secs(1);
/// Attempts at one DNS change, and the first wait between them.
const ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_secs(2);

/// The failover action: registered under `ActionKind::FAILOVER` in the
/// engine's [`vigie_engine::Plugins`].
#[derive(Debug)]
pub struct FailoverActions {
    state_dir: PathBuf,
    client: reqwest::Client,
    /// The last tally of each failover, for `/api/v1/failover`.
    tallies: Mutex<BTreeMap<String, Tally>>,
    /// Who acts on each failover, as the last quorum decided.
    actors: Mutex<BTreeMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FailoverActions {
    pub fn new(state_dir: PathBuf) -> Result<Self, String> {
        Ok(Self {
            state_dir,
            client: crate::http::client().map_err(|e| e.to_string())?,
            tallies: Mutex::new(BTreeMap::new()),
            actors: Mutex::new(BTreeMap::new()),
        })
    }

    /// The side failover `name` was last put on, if it ever moved.
    pub fn state(&self, name: &str) -> Option<vigie_store::FailoverState> {
        vigie_store::Store::open(&self.state_dir)
            .ok()?
            .failover_state(name)
            .ok()
            .flatten()
    }

    /// The last tally of every failover this node has waited on.
    pub fn tallies(&self) -> BTreeMap<String, Tally> {
        lock(&self.tallies).clone()
    }

    async fn point(
        &self,
        config: &Config,
        f: &Failover,
        side: Side,
        reason: &str,
    ) -> Result<String, String> {
        let p = config
            .dns
            .get(&f.dns)
            .ok_or_else(|| format!("no DNS provider {}", f.dns))?;
        let provider = Provider::from_config(p).map_err(|e| e.to_string())?;
        let values = side
            .values(f, &self.client)
            .await
            .map_err(|e| e.to_string())?;
        let rec = record(f, false);
        let done = switch(&provider, f, &rec, &values)
            .await
            .map_err(|e| e.to_string())?;
        // Finding the record already there is no change: it must not
        // spend the daily budget, nor restart the cooldown.
        let known = self
            .state(&f.name)
            .is_some_and(|st| st.side == side.as_str());
        if matches!(done.change, Change::Changed { .. }) || !known {
            self.remember(&f.name, side, reason)?;
        }
        if side == Side::Backup {
            self.fence(f);
        }
        let how = match done.change {
            Change::Unchanged => "already pointed there".to_owned(),
            Change::Changed { .. } => format!("updated in {}ms", done.update.as_millis()),
        };
        Ok(format!(
            "{}.{} → {} ({how}, served after {}ms)",
            rec.name,
            rec.zone,
            side.as_str(),
            done.verify.as_millis()
        ))
    }

    fn remember(&self, target: &str, side: Side, reason: &str) -> Result<(), String> {
        let mut store = vigie_store::Store::open(&self.state_dir).map_err(|e| e.to_string())?;
        store
            .set_failover_state(target, side.as_str(), Timestamp::now(), reason)
            .map_err(|e| e.to_string())
    }

    fn fence(&self, f: &Failover) {
        fence(&self.state_dir, f);
    }

    /// Wait until the authoritative servers serve `side` (another
    /// watcher made the change); the time it took, or `None` after
    /// `within`.
    async fn served(f: &Failover, side: Side, within: Duration) -> Option<Duration> {
        let rec = record(f, false);
        let start = tokio::time::Instant::now();
        while start.elapsed() < within {
            let mut all = !f.verify.is_empty();
            for server in &f.verify {
                let got = crate::query_addresses(*server, &rec, Duration::from_secs(2)).await;
                all &= got.is_ok_and(|v| Side::of(f, &v) == side);
            }
            if all {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// Move `f` to `side`: this node if it is the actor, otherwise wait
    /// for the actor's change and take over only if it never shows.
    async fn act(
        &self,
        config: &Config,
        f: &Failover,
        side: Side,
        reason: &str,
    ) -> Result<String, String> {
        let me = &config.node.name;
        let actor = lock(&self.actors)
            .get(&f.name)
            .cloned()
            .unwrap_or_else(|| me.clone());
        if &actor != me {
            let grace = f.verify_timeout.std().min(Duration::from_secs(20));
            if let Some(took) = Self::served(f, side, grace).await {
                self.remember(&f.name, side, &format!("{reason}; switched by {actor}"))?;
                return Ok(format!(
                    "{actor} made the change to {}; served here after {}ms",
                    side.as_str(),
                    took.as_millis()
                ));
            }
            tracing::warn!(failover = %f.name, %actor, "the acting watcher did not make the change in {grace:?}; making it from here");
        }
        self.allowed(f, side)?;
        // A provider error or a change the servers never serve is retried
        // with backoff; "switched" is said only once they serve it.
        let mut wait = RETRY_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.point(config, f, side, reason).await {
                Ok(line) if attempt == 1 => return Ok(line),
                Ok(line) => return Ok(format!("{line} (attempt {attempt})")),
                Err(e) if attempt >= ATTEMPTS => {
                    return Err(format!("{e} (gave up after {attempt} attempts)"));
                }
                Err(e) => {
                    tracing::warn!(failover = %f.name, attempt, "DNS change failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// Refuse an automatic switch that breaks a limit. The way to the
    /// backup is never refused for being soon after another switch: a
    /// primary a quorum sees down is left at once, however often it failed
    /// before. The cooldown guards the way back (`ready` already waited it
    /// out; this re-reads it, as another node may have switched since).
    /// The daily budget holds both ways: past it the record stays where it
    /// is, and the line says where and what to do (the engine pages it).
    fn allowed(&self, f: &Failover, side: Side) -> Result<(), String> {
        let store = vigie_store::Store::open(&self.state_dir).map_err(|e| e.to_string())?;
        let now = Timestamp::now();
        let state = store.failover_state(&f.name).map_err(|e| e.to_string())?;
        if side == Side::Primary
            && let Some(st) = &state
            && st.since.age(now) < f.cooldown.std()
        {
            let ago = vigie_core::Duration::from(Duration::from_secs(st.since.age(now).as_secs()));
            return Err(format!(
                "not switching back: last switch {ago} ago, within the cooldown of {}",
                f.cooldown
            ));
        }
        if state.as_ref().is_some_and(|st| st.side == side.as_str()) {
            // Already there as far as this node knows (a primary failing
            // again while the record is on the backup): the switch finds
            // nothing to change, and must not page "budget reached".
            return Ok(());
        }
        let day = now.saturating_sub(Duration::from_hours(24));
        let n = store
            .failover_switches_since(&f.name, day)
            .map_err(|e| e.to_string())?;
        if n >= f.max_changes_per_day {
            let rec = record(f, false);
            // Where this node last put it; a record never moved is on
            // the primary.
            let at = state.map_or_else(|| "primary".to_owned(), |st| st.side);
            return Err(format!(
                "{}.{} left on the {at}, not switched to the {}: {n} DNS changes in 24h, the daily budget (max_changes_per_day = {}); `vigie failover switch {} --to {}` moves it by hand",
                rec.name,
                rec.zone,
                side.as_str(),
                f.max_changes_per_day,
                f.name,
                side.as_str()
            ));
        }
        Ok(())
    }

    /// Before a failback: wait until `cooldown` has passed since the last
    /// switch (this node's, automatic or by hand), so that a primary that
    /// comes and goes does not drag the record back and forth. The engine
    /// drops this wait when the primary fails again. A line for the
    /// incident's record when it waited.
    async fn wait_cooldown(&self, f: &Failover) -> Result<String, String> {
        let mut said = false;
        loop {
            let last = vigie_store::Store::open(&self.state_dir)
                .and_then(|s| s.failover_state(&f.name))
                .map_err(|e| e.to_string())?;
            let age = last.map_or(Duration::MAX, |st| st.since.age(Timestamp::now()));
            let Some(left) = f.cooldown.std().checked_sub(age).filter(|d| !d.is_zero()) else {
                return Ok(if said {
                    format!("after the cooldown of {}; ", f.cooldown)
                } else {
                    String::new()
                });
            };
            if !said {
                let left = vigie_core::Duration::from(Duration::from_secs(left.as_secs().max(1)));
                tracing::info!(failover = %f.name, "failback waits for the cooldown of {}: {left} left", f.cooldown);
                said = true;
            }
            // Re-read after the wait: a switch by hand restarts it.
            tokio::time::sleep(left).await;
        }
    }

    /// Ask every watcher until `quorum` of them agree (this node among
    /// them): the primary down, or (`undo`) healthy for `after_healthy`.
    async fn wait_for_quorum(
        &self,
        config: &Config,
        f: &Failover,
        undo: bool,
        view: &Statuses,
    ) -> Result<String, String> {
        let healthy_for = match (undo, f.failback) {
            (false, _) => None,
            (true, Failback::AfterHealthy(d)) => Some(d.std()),
            (true, Failback::Manual) => Some(Duration::ZERO),
        };
        let peers = quorum::clients(config);
        let me = &config.node.name;
        let mut said = String::new();
        loop {
            let tally = quorum::gather(config, f, view, &peers).await;
            let agree: Vec<String> = match healthy_for {
                None => tally.down(),
                Some(d) => tally.healthy_for(d),
            }
            .iter()
            .map(|v| v.node.clone())
            .collect();
            let summary = tally.summary();
            let mine = tally.votes[0].clone();
            lock(&self.tallies).insert(f.name.clone(), tally.clone());
            if agree.len() >= f.quorum as usize && agree.contains(me) {
                let actor = agree[0].clone();
                lock(&self.actors).insert(f.name.clone(), actor.clone());
                return Ok(format!(
                    "quorum {} of {} ({summary}); {actor} acts",
                    agree.len(),
                    f.quorum
                ));
            }
            if summary != said {
                for (peer, why) in &tally.silent {
                    tracing::warn!(failover = %f.name, %peer, "no vote from peer: {why}");
                }
                if mine.verdict == Verdict::Abstain {
                    tracing::warn!(failover = %f.name, "abstaining: {}", mine.detail);
                } else {
                    tracing::info!(failover = %f.name, "waiting for a quorum of {}: {summary}", f.quorum);
                }
                said = summary;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn find<'a>(config: &'a Config, target: &str) -> Result<&'a Failover, String> {
    config
        .failovers
        .get(target)
        .ok_or_else(|| format!("no failover named {target}"))
}

/// Fence the replication toward a backup that became active: the job
/// stops sending (it keeps queueing) until `vigie sync resume`, after the
/// backup's writes have flowed back.
pub fn fence(state_dir: &std::path::Path, f: &Failover) {
    let Some(job) = &f.replication else { return };
    let fenced = vigie_store::Store::open(state_dir).and_then(|mut s| {
        s.sync_pause(
            job,
            &format!("fenced: failover {} points at the backup", f.name),
            Timestamp::now(),
        )
    });
    match fenced {
        Ok(()) => tracing::warn!(failover = %f.name, %job, "replication toward the backup paused"),
        Err(e) => {
            tracing::error!(failover = %f.name, %job, error = %e, "could not pause the replication");
        }
    }
}

/// The failback warning when a replication runs from primary to backup.
fn replication_warning(f: &Failover) -> String {
    f.replication.as_ref().map_or_else(String::new, |r| {
        format!(
            "; replication `{r}` copies primary → backup: writes made on the backup while it was active must flow back to the primary first (`vigie sync {r} --reverse`), then `vigie sync resume {r}`"
        )
    })
}

impl ActionPlugin for FailoverActions {
    fn kind(&self) -> &'static str {
        vigie_config::ActionKind::FAILOVER
    }

    fn ready<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        undo: bool,
        view: &'a Statuses,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let f = find(config, target)?;
            let waited = if undo {
                self.wait_cooldown(f).await?
            } else {
                String::new()
            };
            let line = self.wait_for_quorum(config, f, undo, view).await?;
            Ok(format!("{waited}{line}"))
        })
    }

    fn run<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        check: &'a str,
        incident: i64,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let f = find(config, target)?;
            let reason = format!("{check} failing (incident {incident})");
            self.act(config, f, Side::Backup, &reason).await
        })
    }

    fn undo_after(&self, config: &Config, target: &str) -> Option<Duration> {
        match config.failovers.get(target)?.failback {
            Failback::Manual => None,
            Failback::AfterHealthy(d) => Some(d.std()),
        }
    }

    fn undo<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        check: &'a str,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let f = find(config, target)?;
            let reason = format!("{check} healthy again");
            let line = self.act(config, f, Side::Primary, &reason).await?;
            let warning = replication_warning(f);
            if !warning.is_empty() {
                tracing::warn!(failover = %f.name, "failed back{warning}");
            }
            Ok(format!("{line}{warning}"))
        })
    }
}

/// The failback warning for `vigie failover failback` and the incident
/// record.
pub fn failback_warning(f: &Failover) -> Option<String> {
    f.replication
        .as_ref()
        .map(|_| replication_warning(f).trim_start_matches("; ").to_owned())
}
