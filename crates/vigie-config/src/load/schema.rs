//! The JSON Schema of the file users write (`vigie config schema`), read
//! off the raw types the loader deserializes and their doc comments: one
//! source for the loader, the schema and the reference rendered from it.
//!
//! The loader reads each section on its own (so that one bad entry hides
//! no other); `File` gathers them for the schema only, and a test keeps
//! its keys equal to the loader's `SECTIONS`. A section whose type lacks
//! `schemars::JsonSchema` does not compile here: derive it on that type.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::model::{
    ActionTable, DnsProvider, Dyndns, Failover, Maintenance, NotifierKind, Peer, SyncJob,
};

use super::{RawCheck, RawDefaults, RawEngine, RawNode, RawServer, RawStore};

/// vigie's configuration: one TOML file (`/etc/vigie/vigie.toml` as
/// root), plus the files of its `include` directory. Secrets are never
/// written inline: `{ env = "NAME" }` or `{ file = "/path" }`. `vigie
/// validate` checks a file as the daemon would.
#[derive(schemars::JsonSchema)]
#[schemars(title = "vigie.toml", deny_unknown_fields)]
#[allow(dead_code)]
struct File {
    /// A directory (relative to this file) whose `*.toml` files are read
    /// too, in name order; they may hold every section but `include`,
    /// `node`, `server`, `store`, `engine` and `defaults`.
    include: Option<PathBuf>,
    node: Option<RawNode>,
    server: Option<RawServer>,
    store: Option<RawStore>,
    engine: Option<RawEngine>,
    defaults: Option<RawDefaults>,
    /// Notifiers, each under its own name: `[notify.phone]`, with its
    /// `kind`. A check's `actions` name them as `notify:phone`.
    notify: Option<BTreeMap<String, NotifierKind>>,
    /// Named steps of incidents (`[action.restart-web]`), named in a
    /// check's `actions`. Each sets exactly one of `run`, `shell`,
    /// `systemd_restart`, `docker_restart` (a repair), `notify` (a
    /// notification; with `after`, an escalation) or `failover`; the
    /// other keys qualify it.
    action: Option<BTreeMap<String, ActionTable>>,
    maintenance: Option<Vec<Maintenance>>,
    /// DNS providers, each under its own name (`[dns.ovh]`), with its
    /// `kind`: what failovers and dyndns change records through.
    dns: Option<BTreeMap<String, DnsProvider>>,
    /// Failovers, each under its own name (`[failover.blog]`); a check
    /// acts on one with the action `failover:blog`.
    failover: Option<BTreeMap<String, Failover>>,
    /// Records kept pointed at this node's public address, each under its
    /// own name (`[dyndns.home]`).
    dyndns: Option<BTreeMap<String, Dyndns>>,
    peer: Option<Vec<Peer>>,
    sync: Option<Vec<SyncJob>>,
    /// Scheduled backups into restic-format repositories, with dumps,
    /// retention and hooks: `[[backup]]`.
    backup: Option<Vec<super::backup::RawBackup>>,
    /// Public status pages, each under its own name
    /// (`[status_page.public]`, served at `/status/public`).
    status_page: Option<BTreeMap<String, crate::model::StatusPage>>,
    /// Drift as a check: converge manifests run on a schedule, in audit
    /// or enforce mode: `[[converge]]`.
    converge: Option<Vec<crate::model::ConvergeJob>>,
    /// Prometheus remote write: the samples of `/metrics` sent every
    /// `interval` to a Prometheus, VictoriaMetrics or Mimir:
    /// `[[remote_write]]`.
    remote_write: Option<Vec<super::remote_write::RawRemoteWrite>>,
    check: Option<Vec<RawCheck>>,
}

/// The JSON Schema (draft-07: what taplo, Even Better TOML and VS Code's
/// JSON support read in full) of a vigie config file.
pub fn schema() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<File>().to_value();
    drop_null(&mut schema);
    schema
}

/// TOML has no null: an `Option` is a key left out, so the schema does
/// not offer `null` as a value.
fn drop_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = map.get_mut(key) {
                    alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                    if alts.len() == 1 {
                        let only = alts.remove(0);
                        map.remove(key);
                        if let Value::Object(inner) = only {
                            for (k, x) in inner {
                                map.entry(k).or_insert(x);
                            }
                        }
                    }
                }
            }
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's sections are the loader's: a section added to the
    /// loader (`SECTIONS`) without its field in `File` fails here.
    #[test]
    fn the_schema_has_every_section_the_loader_reads() {
        let schema = schema();
        let props = schema["properties"].as_object().expect("properties");
        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut sections = super::super::SECTIONS.to_vec();
        sections.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(
            keys, sections,
            "add the section's field to `File` in vigie-config/src/load/schema.rs"
        );
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
    }

    /// Every key a user may write says what it is: a description on the
    /// key, or on the type it refers to.
    #[test]
    fn every_key_has_a_description() {
        let schema = schema();
        let defs = schema["definitions"].as_object().expect("definitions");
        let mut missing = Vec::new();
        let visit = |path: &str, node: &Value, missing: &mut Vec<String>| {
            let Some(props) = node.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (key, prop) in props {
                if !described(prop, defs) {
                    missing.push(format!("{path}.{key}"));
                }
            }
        };
        visit("(root)", &schema, &mut missing);
        for (name, def) in defs {
            visit(name, def, &mut missing);
            for alt in def
                .get("oneOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                visit(name, alt, &mut missing);
            }
        }
        assert!(
            missing.is_empty(),
            "keys without a doc comment (write one for operators, with units and an example):\n{}",
            missing.join("\n")
        );
    }

    /// A duration's and a size's patterns (what an editor flags) accept
    /// what the loader's parsers accept, no more, no less.
    #[test]
    fn the_patterns_agree_with_the_parsers() {
        let schema = schema();
        let pattern = |name: &str| {
            let p = schema["definitions"][name]["pattern"].as_str().expect(name);
            regex::Regex::new(p).expect(p)
        };
        let duration = pattern("Duration");
        for s in [
            "30s", "250ms", "1h30m", "1h 30m", " 5s ", "0s", "2w", "1d", "1.5s", "30", "s", "5 s",
            "5sec", "", "1d2", "5S", "-5s",
        ] {
            let parsed = s.parse::<vigie_core::Duration>().is_ok();
            assert_eq!(
                duration.is_match(s),
                parsed,
                "duration {s:?}: parser says {parsed}"
            );
        }
        let size = pattern("ByteSize");
        for s in [
            "500MB", "1GiB", "1.5 GB", "10 k", "0.5T", ".5G", "1.G", "5", "MB", "5 mb", "5XB",
            "1.2.3MB", " 1 GB ", "1 KiB", "-1MB", "1e3MB",
        ] {
            let parsed = s.parse::<vigie_core::ByteSize>().is_ok();
            assert_eq!(size.is_match(s), parsed, "size {s:?}: parser says {parsed}");
        }
    }

    fn described(prop: &Value, defs: &serde_json::Map<String, Value>) -> bool {
        // A tag (`kind = "ntfy"`) is described by its variant.
        if prop.get("description").is_some() || prop.get("const").is_some() {
            return true;
        }
        let target = prop
            .get("$ref")
            .or_else(|| prop.pointer("/allOf/0/$ref"))
            .or_else(|| prop.pointer("/items/$ref"))
            .or_else(|| prop.pointer("/additionalProperties/$ref"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"));
        target
            .and_then(|t| defs.get(t))
            .is_some_and(|d| d.get("description").is_some())
    }
}
