//! Maintenance windows and `[action.NAME]`.

use std::collections::BTreeMap;

use crate::diag::{did_you_mean_hint, unknown};
use crate::model::{Action, Check, Maintenance, Notifier};

use super::Loader;

impl Loader {
    pub(super) fn resolve_maintenance(&mut self, checks: &[Check]) -> Vec<Maintenance> {
        let mut out = Vec::new();
        for (src, table, m) in std::mem::take(&mut self.raw.maintenance) {
            let key = format!("maintenance \"{}\"", m.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            let time = |s: &Option<String>| s.as_ref().map(|t| t.parse::<jiff::Timestamp>());
            match (time(&m.from), time(&m.until), &m.cron, m.duration) {
                (Some(Ok(f)), Some(Ok(u)), None, None) if f < u => {}
                (Some(Ok(_)), Some(Ok(_)), None, None) => problems.push(("`until` is not after `from`".into(), None)),
                (Some(Err(e)), _, _, _) | (_, Some(Err(e)), _, _) => {
                    problems.push((format!("not an RFC 3339 time: {e}"), Some("write e.g. \"2026-12-01T22:00:00Z\" or \"2026-12-01T23:00:00+01:00\"".into())));
                }
                (None, None, Some(_), Some(d)) if !d.std().is_zero() => {}
                _ => problems.push((
                    "a window is either `from` + `until`, or `cron` + `duration`".into(),
                    Some("e.g. cron = \"0 3 * * 0\" and duration = \"2h\" for Sundays 03:00 to 05:00".into()),
                )),
            }
            if let Some(tz) = &m.timezone
                && jiff::tz::TimeZone::get(tz).is_err()
            {
                problems.push((
                    format!("unknown time zone `{tz}`"),
                    Some("use an IANA name such as \"Europe/Paris\"; is tzdata installed?".into()),
                ));
            }
            if m.checks.is_empty() && m.tags.is_empty() {
                problems.push(("no scope: name `checks` or `tags`".into(), None));
            }
            let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
            for c in &m.checks {
                if !names.contains(&c.as_str()) {
                    let hint = did_you_mean_hint(c, names.iter().copied());
                    problems.push((format!("unknown check `{c}`"), hint));
                }
            }
            let ok = problems.is_empty();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if ok {
                out.push(m);
            }
        }
        out
    }

    pub(super) fn resolve_actions(
        &mut self,
        notifiers: &BTreeMap<String, Notifier>,
        failover_names: &[String],
        backup_names: &[String],
    ) -> BTreeMap<String, Action> {
        let mut out: BTreeMap<String, Action> = BTreeMap::new();
        let notifier_names: Vec<&str> = notifiers.keys().map(String::as_str).collect();
        for (src, name, table, action) in std::mem::take(&mut self.raw.actions) {
            let key = format!("action.{}", name.get_ref());
            if !vigie_core::is_valid_name(name.get_ref()) {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "an action name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                );
                continue;
            }
            if out.contains_key(name.get_ref()) {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    format!("duplicate action `{}`", name.get_ref()),
                    None,
                );
                continue;
            }
            match action.kinds_set() {
                1 => {}
                0 => {
                    self.error(
                        src,
                        Some(table.clone()),
                        &key,
                        "the action does nothing".into(),
                        Some(
                            "set one of run, shell, systemd_restart, docker_restart, notify, failover or backup"
                                .into(),
                        ),
                    );
                    continue;
                }
                _ => {
                    self.error(src, Some(table.clone()), &key, "an action does one thing".into(), Some("split it into several actions and list them in order in the check's `actions`".into()));
                    continue;
                }
            }
            if action
                .run
                .as_ref()
                .is_some_and(|a| a.first().is_none_or(String::is_empty))
            {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.run"),
                    "`run` is empty: its first item is the program".into(),
                    None,
                );
                continue;
            }
            if action.max.is_some_and(|m| m.restarts == 0) {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.max"),
                    "`restarts` must be at least 1".into(),
                    None,
                );
            }
            for n in action.notify.iter().flatten() {
                if !notifiers.contains_key(n) {
                    let (message, hint) = unknown(
                        "notifier",
                        n,
                        notifier_names.iter().copied(),
                        "declare it under [notify.NAME]",
                    );
                    let at = format!("{key}.notify");
                    self.error(src, Some(table.clone()), &at, message, hint);
                }
            }
            self.action_target(src, &table, &key, &action, failover_names, backup_names);
            if let Some(action) = action.resolve(name.get_ref()) {
                out.insert(name.into_inner(), action);
            }
        }
        self.check_action_refs(&out, notifiers, failover_names);
        out
    }

    /// The failover or backup job an action names exists.
    fn action_target(
        &mut self,
        src: usize,
        table: &std::ops::Range<usize>,
        key: &str,
        action: &crate::model::ActionTable,
        failover_names: &[String],
        backup_names: &[String],
    ) {
        if let Some(f) = &action.failover
            && !failover_names.contains(f)
        {
            self.error(
                src,
                Some(table.clone()),
                &format!("{key}.failover"),
                format!("unknown failover `{f}`"),
                Some("declare it under [failover.NAME]".into()),
            );
        }
        if let Some(b) = &action.backup
            && !backup_names.contains(b)
        {
            let (message, hint) = unknown(
                "backup job",
                b,
                backup_names.iter().map(String::as_str),
                "declare it under [[backup]]",
            );
            self.error(
                src,
                Some(table.clone()),
                &format!("{key}.backup"),
                message,
                hint,
            );
        }
    }

    /// Each check's `actions` names a known action, `notify:NOTIFIER` or
    /// `failover:NAME`.
    fn check_action_refs(
        &mut self,
        out: &BTreeMap<String, Action>,
        notifiers: &BTreeMap<String, Notifier>,
        failover_names: &[String],
    ) {
        // Kept: `unreachable_notifiers` points at these references too.
        for (src, check, reference) in self.raw.action_refs.clone() {
            let r = reference.get_ref();
            let known = if let Some(f) = r.strip_prefix("failover:") {
                failover_names.iter().any(|n| n == f)
            } else {
                match r.strip_prefix("notify:") {
                    Some(n) => notifiers.contains_key(n),
                    None => out.contains_key(r),
                }
            };
            if !known {
                let candidates: Vec<String> = out
                    .keys()
                    .cloned()
                    .chain(notifiers.keys().map(|n| format!("notify:{n}")))
                    .chain(failover_names.iter().map(|f| format!("failover:{f}")))
                    .collect();
                let (message, hint) = unknown(
                    "action",
                    r,
                    candidates.iter().map(String::as_str),
                    "name an [action.NAME] or notify:NOTIFIER",
                );
                let at = format!("check \"{check}\".actions");
                self.error(src, Some(reference.span()), &at, message, hint);
            }
        }
    }
}
