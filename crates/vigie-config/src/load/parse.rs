//! Reading: each file's sections and `[[check]]` entries deserialized on their own, bad entries dropped and retried, includes.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostic, Level, Location, Source, did_you_mean_hint, unknown};
use crate::model::{
    ActionTable, DnsProvider, Dyndns, Failover, Maintenance, NotifierKind, Peer, StatusPage,
    SyncJob,
};

use super::{CheckEntry, Loader, MAIN_ONLY, NotifierEntry, RawCheck, SECTIONS};

impl Loader {
    pub(super) fn parse(&mut self, text: String, path: &Path, is_main: bool) {
        let src = self.sources.len();
        self.sources.push(Source::new(path, text));
        // The parsed table borrows the text; a clone keeps `self` free.
        let text = self.sources[src].text.clone();
        let (root, errors) = DeTable::parse_recoverable(&text);
        if !errors.is_empty() {
            for e in errors {
                self.error(
                    src,
                    e.span(),
                    "",
                    format!("invalid TOML: {}", e.message().trim()),
                    None,
                );
            }
            return;
        }
        for (key, value) in root.into_inner() {
            let name = key.get_ref().as_ref();
            let key_span = key.span();
            if !SECTIONS.contains(&name) {
                let known = format!("known sections: {}", SECTIONS.join(", "));
                let (message, hint) = unknown("key", name, SECTIONS, &known);
                self.error(src, Some(key_span), name, message, hint);
                continue;
            }
            if !is_main && MAIN_ONLY.contains(&name) {
                self.error(
                    src,
                    Some(key_span),
                    name,
                    format!("`{name}` may only be set in the main configuration file"),
                    Some("move it to the file that has the `include`".into()),
                );
                continue;
            }
            match name {
                "include" => {
                    let span = value.span();
                    if let Some(dir) = self.de::<PathBuf>(src, value, "include") {
                        let loc = self.loc(src, Some(span));
                        self.raw.include = Some((dir, loc));
                    }
                }
                "node" => self.raw.node = self.de(src, value, "node"),
                "server" => self.raw.server = self.de(src, value, "server").map(|s| (src, s)),
                "store" => self.raw.store = self.de(src, value, "store"),
                "engine" => self.raw.engine = self.de(src, value, "engine").map(|e| (src, e)),
                "defaults" => self.raw.defaults = self.de(src, value, "defaults"),
                "check" => self.checks(src, value),
                "notify" => self.notifiers(src, value),
                "action" => self.actions(src, value),
                "maintenance" => self.maintenance(src, value),
                "dns" | "dyndns" | "status_page" | "failover" => {
                    self.named_section(src, name, value);
                }
                "sync" => {
                    for item in self.array_of_tables(src, value, "sync") {
                        let table = item.span();
                        if let Some(j) = self.de::<SyncJob>(src, item, "sync") {
                            self.raw.syncs.push((src, table, j));
                        }
                    }
                }
                "backup" => {
                    for item in self.array_of_tables(src, value, "backup") {
                        if let Some(j) = self.de::<super::backup::RawBackup>(src, item, "backup") {
                            self.raw.backups.push((src, j));
                        }
                    }
                }
                "converge" => self.parse_converges(src, value),
                "remote_write" => self.parse_remote_writes(src, value),
                "peer" => {
                    for item in self.array_of_tables(src, value, "peer") {
                        let table = item.span();
                        if let Some(p) = self.de::<Peer>(src, item, "peer") {
                            self.raw.peers.push((src, table, p));
                        }
                    }
                }
                _ => unreachable!("every section is matched"),
            }
        }
    }

    /// The sections of named tables that name things other parts use
    /// (`[dns.NAME]`, `[dyndns.NAME]`, `[status_page.NAME]`,
    /// `[failover.NAME]`).
    fn named_section(&mut self, src: usize, name: &str, value: Spanned<DeValue<'_>>) {
        match name {
            "dns" => {
                for (name, table, p) in self.named::<DnsProvider>(src, value, "dns", "ovh") {
                    self.raw.dns.push((src, name, table, p));
                }
            }
            "dyndns" => {
                for (name, table, d) in self.named::<Dyndns>(src, value, "dyndns", "home") {
                    self.raw.dyndns.push((src, name, table, d));
                }
            }
            "status_page" => {
                for (name, table, p) in
                    self.named::<StatusPage>(src, value, "status_page", "public")
                {
                    self.raw.status_pages.push((src, name, table, p));
                }
            }
            "failover" => {
                for (name, table, f) in self.named::<Failover>(src, value, "failover", "blog") {
                    self.raw.failovers.push((src, name, table, f));
                }
            }
            _ => unreachable!("a section of named tables"),
        }
    }

    /// A section of named tables (`[notify.NAME]`, `[action.NAME]`), each
    /// deserialized on its own so that one bad entry hides no other.
    pub(super) fn named<T: DeserializeOwned>(
        &mut self,
        src: usize,
        value: Spanned<DeValue<'_>>,
        section: &str,
        example: &str,
    ) -> Vec<(Spanned<String>, Range<usize>, T)> {
        let span = value.span();
        let DeValue::Table(items) = value.into_inner() else {
            self.error(
                src,
                Some(span),
                section,
                format!("`{section}` must be a table of named entries"),
                Some(format!(
                    "write each one under its own header, e.g. [{section}.{example}]"
                )),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in items {
            let key = format!("{section}.{}", name.get_ref());
            let table = item.span();
            let name = Spanned::new(name.span(), name.get_ref().to_string());
            if let Some(v) = self.de::<T>(src, item, &key) {
                out.push((name, table, v));
            }
        }
        out
    }

    pub(super) fn notifiers(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for (name, table, kind) in self.named::<NotifierKind>(src, value, "notify", "phone") {
            self.raw.notifiers.push(NotifierEntry {
                src,
                name,
                table,
                kind,
            });
        }
    }

    pub(super) fn actions(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for (name, table, action) in self.named::<ActionTable>(src, value, "action", "restart-web")
        {
            self.raw.actions.push((src, name, table, action));
        }
    }

    /// A section of `[[tables]]`, each returned to be read on its own.
    pub(super) fn array_of_tables<'i>(
        &mut self,
        src: usize,
        value: Spanned<DeValue<'i>>,
        section: &str,
    ) -> Vec<Spanned<DeValue<'i>>> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(
                src,
                Some(span),
                section,
                format!("`{section}` must be an array of tables"),
                Some(format!("write each one under its own [[{section}]] header")),
            );
            return Vec::new();
        };
        items.into_iter().collect()
    }

    pub(super) fn maintenance(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for item in self.array_of_tables(src, value, "maintenance") {
            let table = item.span();
            if let Some(m) = self.de::<Maintenance>(src, item, "maintenance") {
                self.raw.maintenance.push((src, table, m));
            }
        }
    }

    pub(super) fn checks(&mut self, src: usize, value: Spanned<DeValue<'_>>) {
        for item in self.array_of_tables(src, value, "check") {
            let table = item.span();
            let name = match item.get_ref() {
                DeValue::Table(t) => t.get("name").and_then(|n| match n.get_ref() {
                    DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                }),
                _ => None,
            };
            let key = name
                .as_ref()
                .map_or_else(|| "check".to_owned(), |n| format!("check \"{n}\""));
            if let Some(raw) = self.de::<RawCheck>(src, item, &key) {
                self.raw.checks.push(CheckEntry { src, table, raw });
            } else {
                let loc = self.loc(src, Some(table));
                self.raw.broken_names.extend(name.map(|n| (n, loc)));
            }
        }
    }

    /// Deserialize one value. On an error inside a table, the offending
    /// entry is dropped (in the innermost table that holds it) and the rest
    /// tried again, so that one pass reports every bad key of a section,
    /// not just the first.
    pub(super) fn de<T: DeserializeOwned>(
        &mut self,
        src: usize,
        mut value: Spanned<DeValue<'_>>,
        key: &str,
    ) -> Option<T> {
        let whole = value.span();
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..64 {
            match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return removed.is_empty().then_some(v),
                Err(e) => {
                    let (message, hint) = explain(e.message());
                    // A key we dropped ourselves is not missing from the file.
                    if removed
                        .iter()
                        .any(|r| message == format!("missing key `{r}`"))
                    {
                        return None;
                    }
                    let span = e.span().unwrap_or_else(|| whole.clone());
                    self.error(src, Some(span.clone()), key, message, hint);
                    match drop_entry(&mut value, &span) {
                        Some(k) => removed.push(k),
                        None => return None,
                    }
                }
            }
        }
        None
    }

    pub(super) fn include(&mut self, dir: &Path, at: &Location) {
        let dir = self.base.join(dir);
        let entries = match fs_err::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                self.diags.push(Diagnostic {
                    level: Level::Error,
                    location: Some(at.clone()),
                    key: "include".into(),
                    message: format!("cannot read the include directory: {e}"),
                    hint: Some("create the directory or remove `include`".into()),
                });
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            match fs_err::read_to_string(&file) {
                Ok(text) => self.parse(text, &file, false),
                Err(e) => self.diags.push(Diagnostic {
                    level: Level::Error,
                    location: Some(at.clone()),
                    key: "include".into(),
                    message: format!("cannot read an included file: {e}"),
                    hint: None,
                }),
            }
        }
    }
}

/// Remove the entry whose key or value holds `span`, from the innermost
/// table that holds it; returns the removed key.
fn drop_entry(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<String> {
    let DeValue::Table(t) = value.get_mut() else {
        return None;
    };
    let (hit, nested) = t.iter().find_map(|(k, v)| {
        let in_key = contains(&k.span(), span);
        let in_value = contains(&v.span(), span);
        (in_key || in_value).then(|| {
            (
                k.get_ref().to_string(),
                in_value && matches!(v.get_ref(), DeValue::Table(_)) && v.span() != *span,
            )
        })
    })?;
    if nested
        && let Some(inner) = t.get_mut(hit.as_str())
        && let Some(k) = drop_entry(inner, span)
    {
        return Some(k);
    }
    let old = std::mem::take(t);
    *t = old
        .into_iter()
        .filter(|(k, _)| k.get_ref().as_ref() != hit)
        .collect();
    Some(hit)
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start
        && inner.end <= outer.end
        && inner.start < outer.end.max(outer.start + 1)
}

/// Turn serde's wording into ours, with a hint where one helps.
fn explain(message: &str) -> (String, Option<String>) {
    let message = message.trim();
    // "unknown field `x`, expected one of `a`, `b`" and the same of a
    // variant: the unknown word, and a hint of the nearest valid one.
    let unknown = |prefix: &str, what: &str, valid: &str| {
        let rest = message.strip_prefix(prefix)?;
        let words: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let (word, expected) = words.split_first()?;
        let hint = did_you_mean_hint(word, expected.iter().copied())
            .unwrap_or_else(|| format!("{valid}: {}", expected.join(", ")));
        Some((format!("unknown {what} `{word}`"), Some(hint)))
    };
    if let Some(explained) = unknown("unknown field ", "key", "valid keys here")
        .or_else(|| unknown("unknown variant ", "value", "valid values"))
    {
        return explained;
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (format!("missing key {rest}"), None);
    }
    (message.to_owned(), None)
}
