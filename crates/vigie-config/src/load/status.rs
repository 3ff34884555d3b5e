//! `[status_page.NAME]`: public pages over the checks, grouped as services.

use std::collections::BTreeMap;

use crate::diag::unknown;
use crate::model::{Check, StatusPage};

use super::Loader;

/// The longest title, description or service name shown to the public.
const MAX_TEXT: usize = 500;

impl Loader {
    pub(super) fn resolve_status_pages(
        &mut self,
        checks: &[Check],
    ) -> BTreeMap<String, StatusPage> {
        let mut out = BTreeMap::new();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        for (src, name, table, mut p) in std::mem::take(&mut self.raw.status_pages) {
            let key = format!("status_page.{}", name.get_ref());
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(name.get_ref())
                || name.get_ref().strip_suffix(".json").is_some()
            {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "a status page's name is part of its address (/status/NAME): letters, digits, `-`, `_` and `.`, not ending in `.json`".into(),
                    Some("e.g. [status_page.public]".into()),
                );
                continue;
            }
            for (what, text) in [
                ("title", Some(&p.title)),
                ("description", p.description.as_ref()),
            ] {
                if let Some(t) = text
                    && let Some(problem) = text_problem(t)
                {
                    problems.push((format!("`{what}` {problem}"), None));
                }
            }
            if p.services.is_empty() {
                problems.push((
                    "no services: the page would be empty".into(),
                    Some("add services = [{ name = \"Website\", checks = [\"web\"] }]".into()),
                ));
            }
            let mut seen: Vec<&str> = Vec::new();
            for s in &p.services {
                if let Some(problem) = text_problem(&s.name) {
                    problems.push((format!("a service's `name` {problem}"), None));
                } else if seen.contains(&s.name.as_str()) {
                    problems.push((
                        format!("two services are named `{}`", s.name),
                        Some("each service's name is its badge's address: make them unique".into()),
                    ));
                }
                seen.push(&s.name);
                if s.checks.is_empty() {
                    problems.push((
                        format!("service `{}` has no checks", s.name),
                        Some("name the checks it is made of: checks = [\"web\"]".into()),
                    ));
                }
                for c in &s.checks {
                    let broken = self.raw.broken_names.iter().any(|(n, _)| n == c);
                    if !names.contains(&c.as_str()) && !broken {
                        problems.push(unknown(
                            "check",
                            c,
                            names.iter().copied(),
                            "name a [[check]] of this configuration",
                        ));
                    }
                }
            }
            if problems.is_empty() {
                p.name.clone_from(name.get_ref());
                out.insert(name.into_inner(), p);
            } else {
                for (message, hint) in problems {
                    self.error(src, Some(table.clone()), &key, message, hint);
                }
            }
        }
        out
    }
}

/// What is wrong with a text shown to the public, if anything.
fn text_problem(t: &str) -> Option<&'static str> {
    if t.trim().is_empty() {
        Some("is empty")
    } else if t.len() > MAX_TEXT {
        Some("is longer than 500 bytes")
    } else if t.chars().any(char::is_control) {
        Some("has a control character (a line break?)")
    } else {
        None
    }
}
