//! Notifiers: `[notifier.NAME]` resolved, and the checks no notifier can reach.

use std::collections::{BTreeMap, HashMap};

use crate::diag::{Level, Location};
use crate::model::{Action, Check, Notifier, NotifierKind};
use crate::secret::{Secret, SecretSource};

use super::{EnvLookup, Loader, NotifierEntry};

impl Loader {
    /// A check whose notify steps all ask for more than its severity
    /// fails without anyone hearing of it: warn, naming the steps.
    pub(super) fn unreachable_notifiers(
        &mut self,
        checks: &[Check],
        actions: &BTreeMap<String, Action>,
    ) {
        for c in checks {
            // (step, min_severity, severity it sends at)
            let steps: Vec<(&str, vigie_core::Severity, vigie_core::Severity)> = c
                .actions
                .iter()
                .filter_map(|name| match name.strip_prefix("notify:") {
                    Some(_) => Some((
                        name.as_str(),
                        vigie_core::Severity::NotClassified,
                        c.severity,
                    )),
                    None => actions.get(name).and_then(Action::notify).map(|n| {
                        (
                            name.as_str(),
                            n.min_severity,
                            n.severity.unwrap_or(c.severity),
                        )
                    }),
                })
                .collect();
            if steps.is_empty() || steps.iter().any(|(_, min, at)| at >= min) {
                continue;
            }
            let names: Vec<String> = steps
                .iter()
                .map(|(n, ..)| format!("[action.{n}]"))
                .collect();
            let lowest = steps
                .iter()
                .map(|(_, min, _)| *min)
                .min()
                .unwrap_or_default();
            // Point at the check's first notify step.
            let (src, span) = self
                .raw
                .action_refs
                .iter()
                .find(|(_, check, r)| *check == c.name && r.get_ref() == steps[0].0)
                .map_or((0, None), |(src, _, r)| (*src, Some(r.span())));
            self.report(
                Level::Warning,
                src,
                span,
                &format!("check \"{}\".actions", c.name),
                format!(
                    "severity \"{}\" never reaches a notifier: its notify steps need at least \"{lowest}\", so a failure of {} is sent to nobody",
                    c.severity, c.name
                ),
                Some(format!(
                    "lower min_severity of {}, or raise the check's severity",
                    names.join(", ")
                )),
            );
        }
    }

    pub(super) fn resolve_notifiers(&mut self, env: EnvLookup<'_>) -> BTreeMap<String, Notifier> {
        let mut out: BTreeMap<String, Notifier> = BTreeMap::new();
        let mut seen: HashMap<String, Location> = HashMap::new();
        for entry in std::mem::take(&mut self.raw.notifiers) {
            let NotifierEntry {
                src,
                name,
                table,
                mut kind,
            } = entry;
            let key = format!("notify.{}", name.get_ref());
            if !vigie_core::is_valid_name(name.get_ref()) {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "a notifier name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                );
            }
            if let Some(first) = seen.get(name.get_ref()) {
                let hint = format!("the first is at {first}");
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    format!("duplicate notifier `{}`", name.get_ref()),
                    Some(hint),
                );
                continue;
            }
            seen.insert(name.get_ref().clone(), self.loc(src, Some(name.span())));
            let mut ok = true;
            for (field, secret) in kind.secrets_mut() {
                let taken =
                    std::mem::replace(secret, Secret::new(SecretSource::Env(String::new())));
                // As for DNS providers: the notifier stays declared.
                if let Some(resolved) =
                    self.resolve_secret(src, table.clone(), &format!("{key}.{field}"), taken, env)
                {
                    *secret = resolved;
                }
            }
            if let NotifierKind::Smtp { to, ca, .. } = &mut kind {
                if to.is_empty() {
                    self.error(
                        src,
                        Some(table.clone()),
                        &format!("{key}.to"),
                        "no recipient".into(),
                        Some("to = [\"you@example.org\"]".into()),
                    );
                    ok = false;
                }
                if let Some(ca) = ca {
                    *ca = self.base.join(&*ca);
                }
            }
            if let NotifierKind::Webhook {
                template: Some(t), ..
            } = &kind
                && let Err(e) = minijinja::Environment::new().template_from_str(t)
            {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.template"),
                    format!("invalid template: {e}"),
                    None,
                );
                ok = false;
            }
            if ok {
                let name = name.into_inner();
                out.insert(name.clone(), Notifier { name, kind });
            }
        }
        out
    }
}
