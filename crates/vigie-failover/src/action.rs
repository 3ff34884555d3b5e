//! Failover as an incident action: `failover:NAME` in a check's actions
//! points the record at the backup (verified), and the failback policy
//! decides when it comes back.

use std::path::PathBuf;
use std::time::Duration;

use vigie_config::{Config, Failback};
use vigie_core::Timestamp;
use vigie_engine::{ActionPlugin, PluginFuture};

use crate::{Change, Provider, Side, record, switch};

/// The failover action, for [`vigie_engine::Engine::start_with`].
#[derive(Debug)]
pub struct FailoverActions {
    state_dir: PathBuf,
}

impl FailoverActions {
    pub fn new(state_dir: PathBuf) -> Self {
        Self { state_dir }
    }

    async fn point(
        &self,
        config: &Config,
        target: &str,
        side: Side,
        reason: &str,
    ) -> Result<String, String> {
        let f = config
            .failovers
            .get(target)
            .ok_or_else(|| format!("no failover named {target}"))?;
        let p = config
            .dns
            .get(&f.dns)
            .ok_or_else(|| format!("no DNS provider {}", f.dns))?;
        let provider = Provider::from_config(p).map_err(|e| e.to_string())?;
        let values = if side == Side::Backup {
            &f.backup
        } else {
            &f.primary
        };
        let rec = record(f, false);
        let done = switch(&provider, f, &rec, values)
            .await
            .map_err(|e| e.to_string())?;
        let mut store = vigie_store::Store::open(&self.state_dir).map_err(|e| e.to_string())?;
        store
            .set_failover_state(target, side.as_str(), Timestamp::now(), reason)
            .map_err(|e| e.to_string())?;
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
}

impl FailoverActions {
    /// Refuse an automatic switch inside the cooldown or past the daily
    /// budget: a flapping primary must not burn the provider's rate limit.
    fn allowed(&self, config: &Config, target: &str, cooldown: bool) -> Result<(), String> {
        let f = config
            .failovers
            .get(target)
            .ok_or_else(|| format!("no failover named {target}"))?;
        let store = vigie_store::Store::open(&self.state_dir).map_err(|e| e.to_string())?;
        let now = Timestamp::now();
        if cooldown
            && let Some(st) = store.failover_state(target).map_err(|e| e.to_string())?
            && st.since.age(now) < f.cooldown.std()
        {
            let ago = vigie_core::Duration::from(Duration::from_secs(st.since.age(now).as_secs()));
            return Err(format!(
                "not switching: last switch {ago} ago, within the cooldown of {}",
                f.cooldown
            ));
        }
        let day = now.saturating_sub(Duration::from_hours(24));
        let n = store
            .failover_switches_since(target, day)
            .map_err(|e| e.to_string())?;
        if n >= f.max_changes_per_day {
            return Err(format!(
                "not switching: {n} DNS changes in 24h, the daily budget (max_changes_per_day)"
            ));
        }
        Ok(())
    }
}

impl ActionPlugin for FailoverActions {
    fn run<'a>(
        &'a self,
        config: &'a Config,
        target: &'a str,
        check: &'a str,
        incident: i64,
    ) -> PluginFuture<'a, Result<String, String>> {
        Box::pin(async move {
            self.allowed(config, target, true)?;
            let reason = format!("{check} failing (incident {incident})");
            self.point(config, target, Side::Backup, &reason).await
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
            self.allowed(config, target, false)?;
            let reason = format!("{check} healthy again");
            self.point(config, target, Side::Primary, &reason).await
        })
    }
}
