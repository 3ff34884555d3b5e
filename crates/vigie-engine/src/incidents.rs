//! Incidents: a check that goes failing opens one, and the incident runs
//! the check's actions in order — repair and verify, notify, escalate —
//! recording every step, until the check recovers.
//!
//! One task per open incident. Each step is recorded when done, so a
//! restarted daemon resumes an incident where it stopped: nothing already
//! delivered is sent twice, nothing due is forgotten.
//!
//! What holds what: a parent down or a maintenance window holds every
//! step; a flapping check holds only its notifications — its repairs and
//! plugin steps (a failover) still run at each failure, since the service
//! is down each time, and each has its own limit (`max` restarts, the
//! failover's daily budget). Flapping guards the way back instead: an
//! undo (failback) waits until the check has been healthy, and not
//! flapping, for its whole period. A plugin step that cannot be done pages
//! at disaster severity, flapping or not.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use vigie_config::{Action, ActionKind, Check, Config, RepairStep};
use vigie_core::{CheckState, Severity, Timestamp};
use vigie_notify::{Message, Sender};
use vigie_store::{EventKind, Store};

use crate::Inner;

/// A check's state changed (from the engine's record path).
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub check: String,
    pub to: CheckState,
    pub message: String,
    /// The outcome's own severity (a converge run's), else the check's.
    pub severity: Option<vigie_core::Severity>,
}

struct Open {
    id: i64,
    resolved: watch::Sender<bool>,
    /// The incident's task, stopped when its check leaves the config.
    task: tokio::task::AbortHandle,
}

/// Everything incident tasks share.
struct Ctx {
    /// Recent state changes of each check, for flap detection.
    changes: Mutex<HashMap<String, std::collections::VecDeque<Timestamp>>>,
    /// Undo targets whose failback was said to be held by flapping, so
    /// that a check flapping on says it once, not at every recovery;
    /// cleared when the check stops flapping.
    undo_held: Mutex<std::collections::HashSet<String>>,
    inner: Arc<Inner>,
    store: Arc<Mutex<Store>>,
    sender: Sender,
    node: String,
}

impl Ctx {
    /// The time of day decisions are made at (tests: tokio's clock).
    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Record an event of incident `id`, now.
    fn event(&self, id: i64, kind: &EventKind, detail: &str) {
        self.store("recording an event", |s| {
            s.incident_event(id, self.now(), kind, detail)
        });
    }

    /// The details of incident `id`'s events of `kind`, oldest first.
    fn event_details(&self, id: i64, kind: &EventKind) -> Vec<String> {
        self.store("reading incident events", |s| s.incident_events(id))
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == *kind)
            .map(|e| e.detail)
            .collect()
    }

    fn store<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Store) -> vigie_store::Result<T>,
    ) -> Option<T> {
        let mut store = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match f(&mut store) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "store: {what} failed");
                None
            }
        }
    }

    fn status(&self, check: &str) -> Option<crate::CheckStatus> {
        self.inner
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(check)
            .cloned()
    }

    /// Record a state change; true when it makes the check start flapping.
    fn note_change(&self, check: &Check, at: Timestamp) -> bool {
        let Some(rule) = check.flapping else {
            return false;
        };
        let mut all = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = all.entry(check.name.clone()).or_default();
        let was = flapping_in(list, rule, at);
        list.push_back(at);
        let cutoff = at.saturating_sub(rule.within.std());
        while list.front().is_some_and(|t| *t < cutoff) {
            list.pop_front();
        }
        !was && flapping_in(list, rule, at)
    }

    fn flapping(&self, check: &Check, now: Timestamp) -> bool {
        let Some(rule) = check.flapping else {
            return false;
        };
        let all = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.get(&check.name)
            .is_some_and(|l| flapping_in(l, rule, now))
    }

    /// Ask a check to run now.
    fn poke(&self, check: &str) {
        if let Some(n) = self
            .inner
            .wakes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(check)
        {
            n.notify_one();
        }
    }
}

/// Start the incident manager; returns where state changes go.
pub(crate) fn start(
    inner: Arc<Inner>,
    state_dir: &std::path::Path,
    config: &Arc<Config>,
) -> Result<mpsc::UnboundedSender<Change>, crate::EngineError> {
    let store = Store::open(state_dir)?;
    let sender = Sender::new(vigie_notify::Policy {
        attempts: config.engine.notify_attempts,
        backoff: config.engine.notify_backoff.std(),
        ..vigie_notify::Policy::default()
    })
    .map_err(|e| crate::EngineError::Prepare {
        check: "notifications".into(),
        message: e.to_string(),
    })?;
    let store = Arc::new(Mutex::new(store));
    let _ = inner.incident_store.set(store.clone());
    let ctx = Arc::new(Ctx {
        changes: Mutex::new(HashMap::new()),
        undo_held: Mutex::new(std::collections::HashSet::new()),
        inner,
        store,
        sender,
        node: config.node.name.clone(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let config_rx = ctx.inner.config.subscribe();
    tokio::spawn(manage(ctx, rx, config_rx));
    Ok(tx)
}

async fn manage(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<Change>,
    mut config: watch::Receiver<Arc<Config>>,
) {
    let now = config.borrow().clone();
    let mut open = resume(&ctx, &now).await;
    loop {
        let change = tokio::select! {
            change = rx.recv() => match change {
                Some(change) => change,
                None => return,
            },
            Ok(()) = config.changed() => {
                let now = config.borrow_and_update().clone();
                close_gone(&ctx, &now, &mut open).await;
                continue;
            }
        };
        open.retain(|_, o| !o.resolved.is_closed());
        let config = config.borrow().clone();
        on_change(&ctx, &config, &mut open, change);
    }
}

/// Resume what a previous run left open; close the incidents of checks
/// no longer configured.
async fn resume(ctx: &Arc<Ctx>, config: &Arc<Config>) -> HashMap<String, Open> {
    let mut open = HashMap::new();
    for inc in ctx
        .store("reading open incidents", |s| s.open_incidents())
        .unwrap_or_default()
    {
        match config.check(&inc.check) {
            Some(check) => {
                tracing::info!(incident = inc.id, check = %inc.check, "resuming incident");
                let o = spawn_incident(ctx, config, check.clone(), inc.id, inc.opened);
                open.insert(inc.check.clone(), o);
            }
            None => close_removed(ctx, config, inc.id, &inc.check, inc.opened).await,
        }
    }
    open
}

/// Start the task of incident `id`.
fn spawn_incident(
    ctx: &Arc<Ctx>,
    config: &Arc<Config>,
    check: Check,
    id: i64,
    opened: Timestamp,
) -> Open {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(ctx.clone(), config.clone(), check, id, opened, rx)).abort_handle();
    Open {
        id,
        resolved: tx,
        task,
    }
}

/// After a reload: the incidents of checks it removed would wait forever
/// for a recovery that cannot come, so they are closed.
async fn close_gone(ctx: &Ctx, config: &Config, open: &mut HashMap<String, Open>) {
    let gone: Vec<String> = open
        .keys()
        .filter(|c| config.check(c).is_none())
        .cloned()
        .collect();
    for c in gone {
        if let Some(o) = open.remove(&c) {
            o.task.abort();
            let opened = ctx
                .store("reading an incident", |s| s.incident(o.id))
                .flatten()
                .map_or_else(|| ctx.now(), |i| i.opened);
            close_removed(ctx, config, o.id, &c, opened).await;
        }
    }
}

/// A check changed state: note it for flap detection, open an incident
/// on a failure, end it on a recovery.
fn on_change(
    ctx: &Arc<Ctx>,
    config: &Arc<Config>,
    open: &mut HashMap<String, Open>,
    change: Change,
) {
    let check = config.check(&change.check);
    if let Some(check) = check
        && ctx.note_change(check, ctx.now())
    {
        tokio::spawn(announce_flapping(
            ctx.clone(),
            config.clone(),
            check.clone(),
            open.get(&check.name).map(|o| o.id),
        ));
    }
    match change.to {
        CheckState::Failing => {
            if open.contains_key(&change.check) {
                return;
            }
            let Some(check) = check else {
                return;
            };
            let mut check = check.clone();
            if let Some(s) = change.severity {
                check.severity = s;
            }
            let check = &check;
            let now = ctx.now();
            let Some(id) = ctx.store("opening an incident", |s| {
                s.open_incident(
                    &check.name,
                    check.severity,
                    "open",
                    None,
                    now,
                    &change.message,
                )
            }) else {
                return;
            };
            tracing::warn!(incident = id, check = %check.name, severity = %check.severity, error = %change.message, "incident opened");
            let o = spawn_incident(ctx, config, check.clone(), id, now);
            open.insert(change.check, o);
        }
        CheckState::Ok => {
            if let Some(o) = open.remove(&change.check) {
                tracing::info!(incident = o.id, check = %change.check, "check recovered");
                let _ = o.resolved.send(true);
            }
        }
        CheckState::Unknown => {}
    }
}

/// A check flaps while it changed state `changes` times within `within`,
/// and until `within` has passed since its last change.
fn flapping_in(
    list: &std::collections::VecDeque<Timestamp>,
    rule: vigie_config::Flapping,
    now: Timestamp,
) -> bool {
    let cutoff = now.saturating_sub(rule.within.std());
    let recent = list.iter().filter(|t| **t >= cutoff).count();
    recent >= rule.changes as usize
}

/// Say once that a check flaps, to the notifiers of its immediate notify
/// steps.
async fn announce_flapping(
    ctx: Arc<Ctx>,
    config: Arc<Config>,
    check: Check,
    incident: Option<i64>,
) {
    tracing::warn!(check = %check.name, "check is flapping: notifications held until it settles");
    let notifiers = first_notifiers(&config, &check, check.severity);
    let rule = check.flapping.unwrap_or_default();
    let title = format!(
        "[{}] {} is flapping",
        check.severity.as_str().to_uppercase(),
        check.name
    );
    let mut body = format!(
        "{} changed state {} times within {}; no more notifications until it settles",
        check.name, rule.changes, rule.within
    );
    if let Some(id) = incident {
        let _ = write!(body, "\n{}", incident_line(&ctx, id, true));
    }
    let msg = Message {
        check: check.name.clone(),
        severity: check.severity,
        state: "flapping".into(),
        title,
        body,
        error: ctx
            .status(&check.name)
            .map(|s| s.last_message)
            .unwrap_or_default(),
        since: Some(rfc3339(ctx.now())),
        silenced: Vec::new(),
        node: ctx.node.clone(),
        incident,
    };
    for n in notifiers {
        if let Some(notifier) = config.notifiers.get(&n) {
            let d = ctx.sender.send(notifier, &msg).await;
            if let Some(e) = d.error {
                tracing::error!(notifier = %n, error = %e, "flapping notice not delivered");
            }
        }
    }
}

/// The notifiers of a check's immediate (not escalation) notify steps
/// that take a message of `severity`: who hears of the incident first.
fn first_notifiers(config: &Config, check: &Check, severity: Severity) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in check
        .actions
        .iter()
        .filter_map(|a| config.action(a))
        .filter_map(|a| match a.kind {
            ActionKind::Notify(n) if n.after.is_none() && severity >= n.min_severity => Some(n.to),
            _ => None,
        })
        .flatten()
    {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Send a message outside the check's notify steps (an action that
/// failed, a failback held) to its first notifiers, recorded under `step`
/// so that a restarted daemon does not send it twice. Flapping does not
/// hold these: they are about what vigie did or did not do, not one more
/// change of state.
#[allow(clippy::too_many_arguments)]
async fn notify_now(
    ctx: &Ctx,
    config: &Config,
    check: &Check,
    id: i64,
    step: &str,
    severity: Severity,
    state: &str,
    title: &str,
    detail: &str,
    opened: Timestamp,
) {
    let msg = message(
        ctx,
        check,
        severity,
        state,
        &format!("[{}] {title}", severity.as_str().to_uppercase()),
        detail,
        opened,
        Vec::new(),
        id,
        None,
    );
    for n in first_notifiers(config, check, severity) {
        deliver(ctx, config, id, step, &n, &msg).await;
    }
}

/// How a finished incident ended.
enum End {
    Recovered,
    Repaired,
}

/// The life of one incident.
async fn run(
    ctx: Arc<Ctx>,
    config: Arc<Config>,
    check: Check,
    id: i64,
    opened: Timestamp,
    mut resolved: watch::Receiver<bool>,
) {
    let done_steps = ctx.event_details(id, &EventKind::Step);
    let end = steps(
        &ctx,
        &config,
        &check,
        id,
        opened,
        &done_steps,
        &mut resolved,
    )
    .await;
    let end = if let Some(end) = end {
        end
    } else {
        // Every step ran; wait for the check to recover.
        while !*resolved.borrow() {
            if resolved.changed().await.is_err() {
                return;
            }
        }
        End::Recovered
    };
    let now = ctx.now();
    let resolution = match end {
        End::Recovered => "recovered",
        End::Repaired => "repaired",
    };
    ctx.store("resolving an incident", |s| {
        s.resolve_incident(id, now, resolution)
    });
    tracing::info!(incident = id, check = %check.name, resolution, "incident resolved");
    fail_back(&ctx, &config, &check, id, opened);
    // Whoever was told it failed is told it is over.
    let told = ctx
        .store("reading deliveries", |s| s.notified(id))
        .unwrap_or_default();
    if !told.is_empty() {
        let lasted = vigie_core::Duration::from(Duration::from_secs(opened.age(now).as_secs()));
        let msg = message(
            &ctx,
            &check,
            check.severity,
            resolution,
            &format!("{} {resolution} after {lasted}", check.name),
            "",
            opened,
            Vec::new(),
            id,
            None,
        );
        for n in told {
            deliver(&ctx, &config, id, "resolved", &n, &msg).await;
        }
    }
}

/// Close the incident of a check that is no longer configured (removed by
/// a reload, or while the daemon was stopped): it can never recover, and
/// whoever was told it failed is told it is closed.
async fn close_removed(ctx: &Ctx, config: &Config, id: i64, check: &str, opened: Timestamp) {
    tracing::info!(
        incident = id,
        check,
        "check removed from the configuration: incident closed"
    );
    ctx.store("resolving an incident", |s| {
        s.resolve_incident(id, ctx.now(), "check removed")
    });
    let told = ctx
        .store("reading deliveries", |s| s.notified(id))
        .unwrap_or_default();
    if told.is_empty() {
        return;
    }
    let severity = ctx
        .store("reading an incident", |s| s.incident(id))
        .flatten()
        .and_then(|i| Severity::ALL.into_iter().find(|s| s.as_str() == i.severity))
        .unwrap_or_default();
    let since = rfc3339(opened);
    let msg = Message {
        check: check.to_owned(),
        severity,
        state: "check removed".into(),
        title: format!("{check}: incident closed, the check was removed"),
        body: format!(
            "the check {check} is no longer in the configuration of {}; its incident is closed\n{}",
            ctx.node,
            incident_line(ctx, id, false)
        ),
        error: String::new(),
        since: Some(since),
        silenced: Vec::new(),
        node: ctx.node.clone(),
        incident: Some(id),
    };
    for n in told {
        deliver(ctx, config, id, "resolved", &n, &msg).await;
    }
}

/// After recovery, undo the failovers of this incident whose policy says
/// so, once the check has stayed healthy, and not flapping, long enough
/// (a flapping check restarts the period, and says so once); then the
/// plugin's `ready` may wait more (a failover's cooldown and quorum). A
/// new failure calls it off (the next incident decides).
fn fail_back(ctx: &Arc<Ctx>, config: &Arc<Config>, check: &Check, id: i64, opened: Timestamp) {
    // Only a failover records what it switched ("failed over TARGET"),
    // so only it is undone.
    let Some(plugin) = ctx.inner.plugins.get(ActionKind::FAILOVER).cloned() else {
        return;
    };
    for target in ctx.event_details(id, &EventKind::FailedOver) {
        let Some(after) = plugin.undo_after(config, &target) else {
            let line =
                crate::Hints::fill(ctx.inner.hints.fail_back.as_ref(), &[("target", &target)])
                    .map_or_else(
                        || format!("{target}: manual"),
                        |hint| format!("{target}: manual ({hint})"),
                    );
            ctx.event(id, &EventKind::Failback, &line);
            continue;
        };
        let undo = Undo {
            ctx: ctx.clone(),
            config: config.clone(),
            check: check.clone(),
            plugin: plugin.clone(),
            id,
            target,
            opened,
        };
        tokio::spawn(undo.run(after));
    }
}

/// The failback of one target of an incident, after recovery.
struct Undo {
    ctx: Arc<Ctx>,
    config: Arc<Config>,
    check: Check,
    plugin: Arc<dyn crate::ActionPlugin>,
    id: i64,
    target: String,
    opened: Timestamp,
}

impl Undo {
    async fn run(self, after: Duration) {
        if !self.settled(after).await {
            self.called_off();
            return;
        }
        let view = crate::Statuses(self.ctx.inner.clone());
        let failed_again = async {
            while self.still_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let ready = tokio::select! {
            r = self.plugin.ready(&self.config, &self.target, true, &view) => r,
            () = failed_again => {
                self.called_off();
                return;
            }
        };
        if !record_ready(
            &self.ctx,
            self.id,
            &self.target,
            &ready,
            &EventKind::FailbackFailed,
        ) {
            return;
        }
        self.undo().await;
    }

    /// Wait until the check has been healthy, and not flapping, for
    /// `after` (flapping restarts the period, and is said once); false if
    /// it failed again first.
    async fn settled(&self, after: Duration) -> bool {
        let (ctx, check) = (&self.ctx, &self.check);
        let mut start = tokio::time::Instant::now();
        while start.elapsed() < after {
            if !self.still_ok() {
                return false;
            }
            if ctx.flapping(check, ctx.now()) {
                start = tokio::time::Instant::now();
                hold_undo(
                    ctx,
                    &self.config,
                    check,
                    self.id,
                    &self.target,
                    after,
                    self.opened,
                )
                .await;
            } else {
                lock(&ctx.undo_held).remove(&self.target);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    }

    fn still_ok(&self) -> bool {
        self.ctx
            .status(&self.check.name)
            .is_some_and(|s| s.state == CheckState::Ok)
    }

    fn called_off(&self) {
        self.ctx.event(
            self.id,
            &EventKind::Failback,
            &format!(
                "{}: called off, {} failed again",
                self.target, self.check.name
            ),
        );
    }

    /// Undo, record it, and page at disaster severity if it failed.
    async fn undo(&self) {
        let (ctx, id, target) = (&self.ctx, self.id, &self.target);
        let result = self
            .plugin
            .undo(&self.config, target, &self.check.name)
            .await;
        let detail = match &result {
            Ok(line) | Err(line) => format!("{target}: {line}"),
        };
        tracing::info!(incident = id, "failback: {detail}");
        if result.is_err() {
            notify_now(
                ctx,
                &self.config,
                &self.check,
                id,
                &format!("failback {target} failed"),
                Severity::Disaster,
                "action failed",
                &format!("{}: failback of {target} failed", self.check.name),
                &detail,
                self.opened,
            )
            .await;
        }
        let kind = if result.is_ok() {
            EventKind::FailedBack
        } else {
            EventKind::FailbackFailed
        };
        ctx.event(id, &kind, &detail);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The failback of `target` waits because the check flaps: record it and
/// say it once per flapping spell.
async fn hold_undo(
    ctx: &Ctx,
    config: &Config,
    check: &Check,
    id: i64,
    target: &str,
    after: Duration,
    opened: Timestamp,
) {
    if !lock(&ctx.undo_held).insert(target.to_owned()) {
        return;
    }
    let after = vigie_core::Duration::from(after);
    let rule = check.flapping.unwrap_or_default();
    let detail = format!(
        "{target}: not undone while {} flaps ({} changes within {}); it waits until {} has been healthy and not flapping for {after}",
        check.name, rule.changes, rule.within, check.name
    );
    tracing::warn!(incident = id, "failback held: {detail}");
    ctx.event(id, &EventKind::FailbackHeld, &detail);
    notify_now(
        ctx,
        config,
        check,
        id,
        &format!("failback {target} held"),
        check.severity,
        "failback held",
        &format!("{} flaps: failback of {target} held", check.name),
        &detail,
        opened,
    )
    .await;
}

/// Record what a plugin's `ready` said (the quorum, or why the step
/// cannot run, as `fail_kind`); whether the step may go on.
fn record_ready(
    ctx: &Ctx,
    id: i64,
    target: &str,
    ready: &Result<String, String>,
    fail_kind: &EventKind,
) -> bool {
    let (kind, line) = match ready {
        Ok(line) if line.is_empty() => return true,
        Ok(line) => (&EventKind::Quorum, line),
        Err(line) => (fail_kind, line),
    };
    tracing::warn!(incident = id, "{kind}: {target}: {line}");
    ctx.event(id, kind, &format!("{target}: {line}"));
    ready.is_ok()
}

/// What one incident's steps share.
struct Inc<'a> {
    ctx: &'a Arc<Ctx>,
    config: &'a Config,
    check: &'a Check,
    id: i64,
    opened: Timestamp,
}

/// What a step leaves to the loop over the steps.
enum Next {
    /// Done: record it, so that a restart skips it.
    Record,
    /// Not recorded (cannot run here, or recorded by the step itself).
    Skip,
    /// The incident ended during the step.
    End(End),
}

/// What the repairs before a notify step did, for its page.
#[derive(Default)]
struct Repairs {
    /// Why repairs stopped (the restart limit).
    limit_hit: Option<String>,
    /// What the last repair did.
    note: Option<String>,
}

/// Run the steps not yet done. `Some(end)` if the incident ended during
/// them, `None` when all ran and the check still fails.
async fn steps(
    ctx: &Arc<Ctx>,
    config: &Config,
    check: &Check,
    id: i64,
    opened: Timestamp,
    done: &[String],
    resolved: &mut watch::Receiver<bool>,
) -> Option<End> {
    if wait_while_held(ctx, config, check, id, resolved, false).await {
        return Some(End::Recovered);
    }
    let inc = Inc {
        ctx,
        config,
        check,
        id,
        opened,
    };
    let mut repairs = Repairs::default();
    for (i, name) in check.actions.iter().enumerate() {
        let key = format!("{i}:{name}");
        if done.contains(&key) {
            continue;
        }
        if *resolved.borrow() {
            return Some(End::Recovered);
        }
        let Some(action) = config.action(name) else {
            continue;
        };
        let next = match &action.kind {
            ActionKind::Repair(step) => {
                match repair(ctx, check, id, &action, step, resolved).await {
                    Repair::Recovered => {
                        ctx.event(id, &EventKind::Step, &key);
                        Next::End(End::Repaired)
                    }
                    Repair::LimitReached(why) => {
                        repairs.limit_hit = Some(why);
                        Next::Record
                    }
                    Repair::NotRepaired(note) => {
                        repairs.note = Some(note);
                        Next::Record
                    }
                }
            }
            // A kind a plugin runs (add new ones to this pattern): the
            // plugin registered for it runs it.
            other @ (ActionKind::Failover(_) | ActionKind::Backup(_)) => {
                plugin_step(&inc, other, &key, name, resolved).await
            }
            ActionKind::Notify(step) => {
                notify_step(&inc, step, &key, name, &repairs, resolved).await
            }
        };
        match next {
            Next::Record => ctx.event(id, &EventKind::Step, &key),
            Next::Skip => {}
            Next::End(end) => return Some(end),
        }
    }
    None
}

/// A step of a kind a plugin runs: wait until the plugin is ready (the
/// incident ends if the check recovers first), run it, record what it
/// said; a step that cannot be done pages at disaster severity.
async fn plugin_step(
    inc: &Inc<'_>,
    kind: &ActionKind,
    key: &str,
    name: &str,
    resolved: &mut watch::Receiver<bool>,
) -> Next {
    let (ctx, config, check, id, opened) = (inc.ctx, inc.config, inc.check, inc.id, inc.opened);
    let Some((kind, target)) = kind.plugin() else {
        return Next::Skip;
    };
    let Some(plugin) = ctx.inner.plugins.get(kind) else {
        ctx.event(
            id,
            &EventKind::FailoverFailed,
            &format!("this vigie has no {kind} support"),
        );
        return Next::Skip;
    };
    let view = crate::Statuses(ctx.inner.clone());
    let ready = tokio::select! {
        r = plugin.ready(config, target, false, &view) => r,
        _ = resolved.wait_for(|r| *r) => {
            ctx.event(
                id,
                &EventKind::FailoverCalledOff,
                &format!("{target}: {} recovered first", check.name),
            );
            return Next::End(End::Recovered);
        }
    };
    // A refusal by `ready` is recorded by `record_ready`; either failure
    // pages below.
    let result = if record_ready(ctx, id, target, &ready, &EventKind::FailoverFailed) {
        let result = plugin.run(config, target, &check.name, id).await;
        let (kind, line) = match &result {
            Ok(line) => (EventKind::Failover, line),
            Err(line) => (EventKind::FailoverFailed, line),
        };
        let detail = format!("{target}: {line}");
        tracing::warn!(incident = id, check = %check.name, "{kind}: {detail}");
        ctx.event(id, &kind, &detail);
        result
    } else {
        ready
    };
    match &result {
        Err(line) => {
            notify_now(
                ctx,
                config,
                check,
                id,
                &format!("{key} failed"),
                Severity::Disaster,
                "action failed",
                &format!("{}: {name} failed", check.name),
                &format!("{target}: {line}"),
                opened,
            )
            .await;
        }
        Ok(_) => ctx.event(id, &EventKind::FailedOver, target),
    }
    Next::Record
}

/// How long until an escalation `after` the incident opened is due at
/// `now` (none if it is past).
fn until_due(opened: Timestamp, after: Duration, now: Timestamp) -> Duration {
    let due = opened.saturating_add(after);
    Duration::from_millis(u64::try_from(due.millis() - now.millis()).unwrap_or(0))
}

/// A notify step: an escalation first waits for its delay (and is
/// skipped if the incident was acknowledged meanwhile); flapping holds
/// it; then it pages, or says why its severity does not reach it.
async fn notify_step(
    inc: &Inc<'_>,
    step: &vigie_config::NotifyStep,
    key: &str,
    name: &str,
    repairs: &Repairs,
    resolved: &mut watch::Receiver<bool>,
) -> Next {
    let (ctx, config, check, id) = (inc.ctx, inc.config, inc.check, inc.id);
    if let Some(after) = step.after {
        let wait = until_due(inc.opened, after.std(), ctx.now());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = resolved.wait_for(|r| *r) => return Next::End(End::Recovered),
        }
        let acked = ctx
            .store("reading an incident", |s| s.incident(id))
            .flatten()
            .is_some_and(|i| i.acked.is_some());
        if acked {
            ctx.store("recording a step", |s| {
                s.incident_event(id, ctx.now(), &EventKind::Step, key)?;
                s.incident_event(id, ctx.now(), &EventKind::EscalationSkipped, "acknowledged")
            });
            return Next::Skip;
        }
    }
    // Flapping holds notifications only, here, after the steps before (a
    // failover) ran.
    if ctx.flapping(check, ctx.now())
        && wait_while_held(ctx, config, check, id, resolved, true).await
    {
        return Next::End(End::Recovered);
    }
    let severity = step.severity.unwrap_or(check.severity);
    if severity >= step.min_severity {
        page(inc, step, key, severity, repairs).await;
    } else {
        // Said, so that an incident nobody heard of is explained.
        let why = format!(
            "{name}: severity {severity} is below its min_severity {}",
            step.min_severity
        );
        tracing::info!(incident = id, check = %check.name, "notify step skipped: {why}");
        ctx.event(id, &EventKind::NotifySkipped, &why);
    }
    Next::Record
}

/// Send a notify step's page (naming the children the check silences and
/// what its repairs did) and record it as notified or escalated.
async fn page(
    inc: &Inc<'_>,
    step: &vigie_config::NotifyStep,
    key: &str,
    severity: Severity,
    repairs: &Repairs,
) {
    let (ctx, config, check, id, opened) = (inc.ctx, inc.config, inc.check, inc.id, inc.opened);
    refresh_dependents(ctx, config, &check.name).await;
    let (state, kind) = if step.after.is_some() {
        ("escalated", EventKind::Escalated)
    } else {
        ("notified", EventKind::Notified)
    };
    let last = ctx
        .status(&check.name)
        .map(|s| s.last_message)
        .unwrap_or_default();
    let mut title = format!(
        "[{}] {} is failing",
        severity.as_str().to_uppercase(),
        check.name
    );
    if let Some(why) = &repairs.limit_hit {
        title.push_str(" (repairs stopped)");
        tracing::warn!(check = %check.name, "{why}");
    }
    let msg = message(
        ctx,
        check,
        severity,
        "failing",
        &title,
        &last,
        opened,
        silenced(ctx, config, &check.name),
        id,
        repairs.note.as_deref(),
    );
    for n in &step.to {
        deliver(ctx, config, id, key, n, &msg).await;
    }
    ctx.store("updating an incident", |s| {
        s.set_incident_state(id, state, None, ctx.now(), &kind, &step.to.join(", "))
    });
}

enum Repair {
    Recovered,
    /// What happened, for the notification: `repair fix ran and failed (exit 1: …)`.
    NotRepaired(String),
    LimitReached(String),
}

/// Run one repair, then give the check its verify window to recover.
async fn repair(
    ctx: &Arc<Ctx>,
    check: &Check,
    id: i64,
    action: &Action,
    step: &RepairStep,
    resolved: &mut watch::Receiver<bool>,
) -> Repair {
    let argv = &step.command.argv();
    let now = ctx.now();
    if let Some(max) = step.max {
        let since = now.saturating_sub(max.within.std());
        let n = ctx
            .store("counting repairs", |s| {
                s.repairs_since(&action.name, &check.name, since)
            })
            .unwrap_or(0);
        if n >= max.restarts {
            let why = format!(
                "restart limit reached: {n} repairs by {} within {}; not repairing",
                action.name, max.within
            );
            ctx.store("updating an incident", |s| {
                s.set_incident_state(id, "open", None, now, &EventKind::RestartLimit, &why)
            });
            return Repair::LimitReached(why);
        }
    }
    ctx.store("updating an incident", |s| {
        s.set_incident_state(id, "repairing", None, now, &EventKind::Repair, &action.name)
    });
    let env = vec![
        ("VIGIE_CHECK".to_owned(), check.name.clone()),
        ("VIGIE_SEVERITY".to_owned(), check.severity.to_string()),
        ("VIGIE_INCIDENT".to_owned(), id.to_string()),
        (
            "VIGIE_MESSAGE".to_owned(),
            ctx.status(&check.name)
                .map(|s| s.last_message)
                .unwrap_or_default(),
        ),
    ];
    let result = tokio::time::timeout(
        step.timeout.std(),
        vigie_probe::command::run_argv(argv, &env),
    )
    .await;
    let (ok, detail) = match result {
        Ok(Ok(out)) if out.status == Some(0) => (
            true,
            format!("exit 0 {}", vigie_probe::command::first_line(&out.text))
                .trim()
                .to_owned(),
        ),
        Ok(Ok(out)) => (
            false,
            format!(
                "{}: {}",
                out.status
                    .map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}")),
                vigie_probe::command::first_line(&out.text)
            )
            .trim_end_matches([':', ' '])
            .to_owned(),
        ),
        Ok(Err(e)) => (false, format!("cannot run {}: {e}", argv[0])),
        Err(_) => (false, format!("timed out after {}", step.timeout)),
    };
    tracing::info!(incident = id, check = %check.name, action = %action.name, ok, %detail, "repair ran");
    ctx.store("recording a repair", |s| {
        s.record_repair(id, &action.name, &check.name, ctx.now(), ok, &detail)
    });
    if !ok {
        return Repair::NotRepaired(format!("repair {} ran and failed ({detail})", action.name));
    }
    if verify(ctx, check, step.verify.std(), resolved).await {
        return Repair::Recovered;
    }
    ctx.store("updating an incident", |s| {
        s.incident_event(
            id,
            ctx.now(),
            &EventKind::NotRepaired,
            &format!("still failing {} after {}", step.verify, action.name),
        )
    });
    Repair::NotRepaired(format!(
        "repair {} ran ({detail}) but {} still failed {} later",
        action.name, check.name, step.verify
    ))
}

/// A repair's verify window: run the check again, at its pace (at most a
/// second), until it recovers (true) or `window` ends (false).
async fn verify(
    ctx: &Ctx,
    check: &Check,
    window: Duration,
    resolved: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = tokio::time::Instant::now() + window;
    let pace = check.every.std().min(Duration::from_secs(1));
    while tokio::time::Instant::now() < deadline {
        ctx.poke(&check.name);
        tokio::select! {
            () = tokio::time::sleep(pace) => {}
            _ = resolved.wait_for(|r| *r) => return true,
        }
    }
    false
}

/// Why an incident waits instead of repairing and notifying.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hold {
    /// A parent (`depends_on`) is down: the parent speaks for both.
    Parent(String),
    /// A maintenance window covers the check.
    Maintenance(String),
    /// The check changes state too often; one notification said so.
    /// Holds notifications only.
    Flapping,
}

impl Hold {
    /// The incident state, the `suppressed_by` column and the event detail.
    fn describe(&self) -> (&'static str, Option<&str>, String) {
        match self {
            Hold::Parent(p) => ("suppressed", Some(p.as_str()), format!("silenced by {p}")),
            Hold::Maintenance(m) => ("maintenance", None, format!("in maintenance window {m}")),
            Hold::Flapping => ("flapping", None, "flapping".to_owned()),
        }
    }
}

/// Why the incident waits now; flapping counts only before a notification
/// (`notifications`).
fn hold_reason(ctx: &Ctx, config: &Config, check: &Check, notifications: bool) -> Option<Hold> {
    if let Some(p) = check.depends_on.iter().find(|p| {
        ctx.status(p)
            .is_some_and(|s| s.state == CheckState::Failing || s.last_ok == Some(false))
    }) {
        return Some(Hold::Parent(p.clone()));
    }
    let now = ctx.now();
    if let Some(m) = config
        .maintenance
        .iter()
        .find(|m| m.applies_to(check) && m.active_at(now))
    {
        return Some(Hold::Maintenance(m.name.clone()));
    }
    if let Some(m) = ctx.inner.manual_maintenance(&check.name, now) {
        return Some(Hold::Maintenance(format!("started by {}", m.by)));
    }
    if notifications && ctx.flapping(check, now) {
        return Some(Hold::Flapping);
    }
    None
}

/// Wait while the incident is held (parent down, maintenance, and before
/// a notification (`notifications`) flapping). Parents are re-run first
/// so that a child noticed before its parent does not page anybody.
/// Returns true if the check recovered meanwhile.
async fn wait_while_held(
    ctx: &Arc<Ctx>,
    config: &Config,
    check: &Check,
    id: i64,
    resolved: &mut watch::Receiver<bool>,
    notifications: bool,
) -> bool {
    let asked = ctx.now();
    for p in &check.depends_on {
        ctx.poke(p);
    }
    let fresh_by = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut held: Option<Hold> = None;
    loop {
        let fresh = tokio::time::Instant::now() >= fresh_by
            || check.depends_on.iter().all(|p| {
                ctx.status(p)
                    .is_none_or(|s| s.last_run.is_some_and(|t| t >= asked))
            });
        let reason = hold_reason(ctx, config, check, notifications);
        match (reason, &held) {
            (Some(r), _) if held.as_ref() != Some(&r) => {
                let (state, by, detail) = r.describe();
                tracing::info!(incident = id, check = %check.name, "incident held: {detail}");
                ctx.store("updating an incident", |s| {
                    s.set_incident_state(id, state, by, ctx.now(), &EventKind::Held, &detail)
                });
                held = Some(r);
            }
            (None, Some(was)) if fresh => {
                let (_, _, detail) = was.describe();
                ctx.store("updating an incident", |s| {
                    s.set_incident_state(
                        id,
                        "open",
                        None,
                        ctx.now(),
                        &EventKind::Released,
                        &format!("no longer {detail}"),
                    )
                });
                if let Hold::Parent(parent) = was {
                    return recheck_after_parent(ctx, config, check, parent, resolved).await;
                }
                return false;
            }
            (None, None) if fresh => return false,
            _ => {}
        }
        let pace = if held.is_some() { 500 } else { 100 };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(pace)) => {}
            _ = resolved.wait_for(|r| *r) => return true,
        }
    }
}

/// A child released by its parent last failed while the parent was down,
/// so that failure may be the parent's: before anything is sent, run the
/// child again through its wake-up and wait for fresh results. A parent
/// brought back by a repair gives its children that repair's `verify`
/// window to come back too (services start after their host); otherwise
/// one fresh failing result is the child's own. True if it recovered.
async fn recheck_after_parent(
    ctx: &Ctx,
    config: &Config,
    check: &Check,
    parent: &str,
    resolved: &mut watch::Receiver<bool>,
) -> bool {
    let window = config
        .check(parent)
        .into_iter()
        .flat_map(|p| p.actions.iter())
        .filter_map(|a| config.action(a))
        .filter_map(|a| a.repair().map(|r| r.verify.std()))
        .max()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + window;
    let pace = check.every.std().min(Duration::from_secs(1));
    let mut runs = 0;
    loop {
        // Recovered: the manager is about to say so through `resolved`
        // (or, for an incident resumed after a restart, never will).
        if ctx
            .status(&check.name)
            .is_some_and(|s| s.state == CheckState::Ok)
        {
            return true;
        }
        let asked = ctx.now();
        ctx.poke(&check.name);
        // A fresh result comes within the probe's timeout; the margin
        // covers the concurrency bound and the state's way to this task.
        let result_by = tokio::time::Instant::now() + check.timeout.std() + Duration::from_secs(1);
        let fresh = loop {
            let last = ctx.status(&check.name);
            if let Some(s) = last.filter(|s| s.last_run.is_some_and(|t| t >= asked)) {
                break s.last_ok;
            }
            if tokio::time::Instant::now() >= result_by {
                break None;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = resolved.wait_for(|r| *r) => return true,
            }
        };
        runs += 1;
        // A passing run counts towards `recover_after`: run again at once
        // until the state recovers. A failing one (or none) is retried
        // at the check's pace until the window ends.
        let passing = fresh == Some(true);
        if tokio::time::Instant::now() >= deadline && (!passing || runs > check.recover_after) {
            return *resolved.borrow();
        }
        tokio::select! {
            () = tokio::time::sleep(if passing { Duration::ZERO } else { pace }) => {}
            _ = resolved.wait_for(|r| *r) => return true,
        }
    }
}

/// Re-run the checks that depend on `parent` and wait for their results
/// (bounded by their timeouts), so that a parent's notification names
/// every child it silences, not only those checked since it failed.
async fn refresh_dependents(ctx: &Ctx, config: &Config, parent: &str) {
    let children: Vec<&Check> = config
        .checks
        .iter()
        .filter(|c| c.depends_on.iter().any(|p| p == parent))
        .collect();
    if children.is_empty() {
        return;
    }
    let asked = ctx.now();
    for c in &children {
        ctx.poke(&c.name);
    }
    let longest = children
        .iter()
        .map(|c| c.timeout.std())
        .max()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + longest + Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline {
        let fresh = children.iter().all(|c| {
            ctx.status(&c.name)
                .is_none_or(|s| s.last_run.is_some_and(|t| t >= asked))
        });
        if fresh {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that depend on `parent` (directly or not) and fail now.
fn silenced(ctx: &Ctx, config: &Config, parent: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![parent.to_owned()];
    while let Some(p) = frontier.pop() {
        for c in config.checks.iter().filter(|c| c.depends_on.contains(&p)) {
            if out.contains(&c.name) {
                continue;
            }
            if ctx
                .status(&c.name)
                .is_some_and(|s| s.last_ok == Some(false))
            {
                out.push(c.name.clone());
            }
            frontier.push(c.name.clone());
        }
    }
    out.sort();
    out
}

#[allow(clippy::too_many_arguments)]
fn message(
    ctx: &Ctx,
    check: &Check,
    severity: Severity,
    state: &str,
    title: &str,
    error: &str,
    opened: Timestamp,
    silenced: Vec<String>,
    id: i64,
    repair: Option<&str>,
) -> Message {
    let since = rfc3339(opened);
    let mut body = String::new();
    if !error.is_empty() {
        body.push_str(error);
        body.push('\n');
    }
    if let Some(r) = repair {
        body.push_str(r);
        body.push('\n');
    }
    let _ = write!(body, "since {since} on {}", ctx.node);
    if !silenced.is_empty() {
        let _ = write!(body, "\nsilenced: {}", silenced.join(", "));
    }
    let _ = write!(body, "\n{}", incident_line(ctx, id, state == "failing"));
    Message {
        check: check.name.clone(),
        severity,
        state: state.to_owned(),
        title: title.to_owned(),
        body,
        error: error.to_owned(),
        since: Some(since),
        silenced,
        node: ctx.node.clone(),
        incident: Some(id),
    }
}

/// The last line of every incident notification: which incident, and how
/// to stop its escalations while it is open.
fn incident_line(ctx: &Ctx, id: i64, open: bool) -> String {
    let hint = open
        .then(|| crate::Hints::fill(ctx.inner.hints.ack.as_ref(), &[("id", &id.to_string())]))
        .flatten();
    match hint {
        Some(hint) => format!("incident {id} · ack: {hint}"),
        None => format!("incident {id}"),
    }
}

async fn deliver(ctx: &Ctx, config: &Config, id: i64, step: &str, notifier: &str, msg: &Message) {
    if ctx
        .store("reading deliveries", |s| s.delivered(id, step, notifier))
        .unwrap_or(false)
    {
        return;
    }
    let Some(n) = config.notifiers.get(notifier) else {
        tracing::error!(notifier, "notifier no longer configured");
        return;
    };
    let Some(row) = ctx.store("recording a delivery", |s| {
        s.begin_delivery(id, step, notifier, ctx.now())
    }) else {
        return;
    };
    let d = ctx.sender.send(n, msg).await;
    {
        let mut counts = ctx
            .inner
            .stats
            .notifications
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = counts.entry(notifier.to_owned()).or_default();
        if d.error.is_none() {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    if let Some(e) = &d.error {
        tracing::error!(incident = id, notifier, error = %e, "notification not delivered");
    } else {
        tracing::info!(incident = id, notifier, step, "notification delivered");
    }
    let record = vigie_store::DeliveryRecord {
        step,
        notifier,
        at: ctx.now(),
        attempts: d.attempts,
        error: d.error.as_deref(),
    };
    ctx.store("recording a delivery", |s| s.finish_delivery(row, &record));
}

/// `2026-11-23T10:00:00Z`: whole seconds, UTC. A time beyond jiff's
/// range (years ±9999, never a real clock) shows as that range's end.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    let secs = t.millis().div_euclid(1000);
    let ts = jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    // MIN and MAX carry nanoseconds; the format stays whole seconds.
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests;
