//! Notifiers: `[notifier.NAME]` resolved, and the checks no notifier can reach.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::diag::{Level, Location};
use crate::model::{Action, Check, Notifier, NotifierKind, PushoverEmergency};
use crate::secret::{Secret, SecretSource};

use super::{EnvLookup, Loader, NotifierEntry, Secrets};

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
            if !self.check_notifier(src, &table, &key, &mut kind, env) {
                ok = false;
            }
            if ok {
                let name = name.into_inner();
                out.insert(name.clone(), Notifier { name, kind });
            }
        }
        out
    }

    /// What serde cannot check in a notifier's settings; false when it
    /// cannot be used.
    fn check_notifier(
        &mut self,
        src: usize,
        table: &Range<usize>,
        key: &str,
        kind: &mut NotifierKind,
        env: EnvLookup<'_>,
    ) -> bool {
        let mut ok = true;
        match kind {
            NotifierKind::Smtp { to, ca, .. } => {
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
            NotifierKind::Webhook {
                template: Some(t), ..
            } => {
                if let Err(e) = minijinja::Environment::new().template_from_str(t) {
                    self.error(
                        src,
                        Some(table.clone()),
                        &format!("{key}.template"),
                        format!("invalid template: {e}"),
                        None,
                    );
                    ok = false;
                }
            }
            NotifierKind::Pushover {
                emergency: Some(e), ..
            } => {
                if let Some((message, hint)) = pushover_emergency_problem(*e) {
                    let place = format!("{key}.emergency");
                    self.error(src, Some(table.clone()), &place, message, Some(hint));
                    ok = false;
                }
            }
            NotifierKind::Apprise { urls, program } => {
                ok = self.check_apprise(src, table, key, urls, program, env);
            }
            _ => {}
        }
        ok
    }

    /// Apprise: at least one URL, each a URL (never printed: it holds
    /// keys), and a program that is there (a warning: it may be installed
    /// before the daemon starts).
    fn check_apprise(
        &mut self,
        src: usize,
        table: &Range<usize>,
        key: &str,
        urls: &[Secret],
        program: &mut PathBuf,
        env: EnvLookup<'_>,
    ) -> bool {
        let mut ok = true;
        if urls.is_empty() {
            self.error(
                src,
                Some(table.clone()),
                &format!("{key}.urls"),
                "no Apprise URL".into(),
                Some("urls = [{ env = \"APPRISE_TELEGRAM\" }], each SCHEMA://… as Apprise documents it".into()),
            );
            ok = false;
        }
        if self.secrets == Secrets::Skip {
            // Neither the URLs (secrets) nor PATH (the environment) are read.
            return ok;
        }
        for (i, url) in urls.iter().enumerate() {
            // One URL per entry: Apprise would split one holding a comma
            // or a space, and the pieces could then escape redaction.
            let u = url.expose();
            if !u.contains("://") || u.contains(',') || u.chars().any(char::is_whitespace) {
                self.error(
                    src,
                    Some(table.clone()),
                    &format!("{key}.urls[{i}]"),
                    "not one Apprise URL (its value is not shown: it is a secret)".into(),
                    Some("one URL per entry, SCHEMA://… without spaces or commas, e.g. tgram://BOT_TOKEN/CHAT_ID".into()),
                );
                ok = false;
            }
        }
        if program.components().count() > 1 {
            *program = self.base.join(&*program);
        }
        if find_program(program, env("PATH").as_deref()).is_none() {
            let shown = program.display().to_string();
            self.report(
                Level::Warning,
                src,
                Some(table.clone()),
                &format!("{key}.program"),
                format!("`{shown}` is not an executable on PATH: nothing can be sent through {key} until it is"),
                Some("install Apprise (pipx install apprise, or your distribution's apprise package), or set program = \"/path/to/apprise\"".into()),
            );
        }
        ok
    }
}

/// Pushover's limits on an emergency's `retry` and `expire`.
fn pushover_emergency_problem(e: PushoverEmergency) -> Option<(String, String)> {
    let (retry, expire) = (e.retry.std(), e.expire.std());
    if retry < std::time::Duration::from_secs(30) {
        return Some((
            format!("retry = \"{}\" is below Pushover's minimum of 30s", e.retry),
            "retry = \"1m\"".into(),
        ));
    }
    if expire > std::time::Duration::from_hours(3) {
        return Some((
            format!(
                "expire = \"{}\" is above Pushover's maximum of 3h",
                e.expire
            ),
            "expire = \"1h\"".into(),
        ));
    }
    if expire < retry {
        return Some((
            format!(
                "expire = \"{}\" is shorter than retry = \"{}\": the message would never be repeated",
                e.expire, e.retry
            ),
            "make expire longer than retry".into(),
        ));
    }
    None
}

/// Where `program` runs from: itself when it names a path, else the first
/// executable of that name in `path` (a `PATH` value).
fn find_program(program: &Path, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        fs_err::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_owned());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}
