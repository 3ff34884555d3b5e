//! Secrets are never written inline in a config: they name where to find
//! the value, `{ env = "NAME" }` or `{ file = "/path" }`. The value is read
//! once at load, never printed, never serialized.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The environment variables that hold a secret of any config this
/// process loaded. A child (a check, a repair, a DNS script, ssh) gets
/// vigie's environment minus these: it never needs them, and a program
/// that logs its environment would publish them. Process-wide because
/// the environment is; it only grows, so a reload that drops a secret
/// keeps its variable out of children all the same.
static SECRET_ENV: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

pub(crate) fn remember_env(name: &str) {
    SECRET_ENV
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_owned());
}

/// Variables meant for vigie's own process, never for its children:
/// systemd's notification socket (`Type=notify`), through which a child
/// (a check, a repair that speaks the protocol) would report for vigie.
const OWN_ENV: &[&str] = &["NOTIFY_SOCKET"];

/// Remove from `cmd`'s environment every variable a `{ env = … }` secret
/// names, except those the caller set on purpose (a check's own `env`),
/// and those meant for vigie alone (`NOTIFY_SOCKET`).
/// Every place that starts a child calls it.
pub fn scrub_secret_env(cmd: &mut std::process::Command) {
    for name in OWN_ENV {
        cmd.env_remove(name);
    }
    let set: BTreeSet<std::ffi::OsString> = cmd
        .get_envs()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.to_owned())
        .collect();
    let names = SECRET_ENV
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for name in names {
        if !set.contains(std::ffi::OsStr::new(&name)) {
            cmd.env_remove(name);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A secret as configured, plus its value once resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub source: SecretSource,
    value: String,
}

impl Secret {
    pub fn new(source: SecretSource) -> Self {
        Self {
            source,
            value: String::new(),
        }
    }

    pub(crate) fn set_value(&mut self, v: String) {
        self.value = v;
    }

    /// The secret's value. Call it only where the value is sent, never
    /// where it could be logged.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?}, <redacted>)", self.source)
    }
}

pub(crate) const INLINE_HINT: &str =
    "write { env = \"NAME\" } or { file = \"/path/to/file\" }: secrets are never written inline";

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match &self.source {
            SecretSource::Env(name) => m.serialize_entry("env", name)?,
            SecretSource::File(path) => m.serialize_entry("file", path)?,
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{ env = \"NAME\" } or { file = \"/path\" }")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Secret, E> {
                Err(E::custom(format!(
                    "a secret cannot be inline: {INLINE_HINT}"
                )))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Secret, A::Error> {
                use serde::de::Error;
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let src = match key.as_str() {
                        "env" => SecretSource::Env(map.next_value()?),
                        "file" => SecretSource::File(map.next_value()?),
                        other => return Err(A::Error::unknown_field(other, &["env", "file"])),
                    };
                    if found.replace(src).is_some() {
                        return Err(A::Error::custom(
                            "a secret has either `env` or `file`, not both",
                        ));
                    }
                }
                found
                    .map(Secret::new)
                    .ok_or_else(|| A::Error::custom(format!("empty secret: {INLINE_HINT}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value written inline, or a secret where it may hold one: a header's
/// value, a command's environment variable. `"text"` is plain;
/// `{ env = "NAME" }` or `{ file = "/path" }` is a secret, read at load
/// and never printed like any other.
#[derive(Clone, PartialEq, Eq)]
pub enum MaybeSecret {
    Plain(String),
    Secret(Secret),
}

impl MaybeSecret {
    /// The value to send. As with [`Secret::expose`], never where it
    /// could be logged.
    pub fn expose(&self) -> &str {
        match self {
            MaybeSecret::Plain(s) => s,
            MaybeSecret::Secret(s) => s.expose(),
        }
    }

    /// The secret, to be resolved at load.
    pub fn secret_mut(&mut self) -> Option<&mut Secret> {
        match self {
            MaybeSecret::Plain(_) => None,
            MaybeSecret::Secret(s) => Some(s),
        }
    }
}

impl From<&str> for MaybeSecret {
    fn from(s: &str) -> Self {
        MaybeSecret::Plain(s.to_owned())
    }
}

impl fmt::Debug for MaybeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaybeSecret::Plain(s) => s.fmt(f),
            MaybeSecret::Secret(s) => s.fmt(f),
        }
    }
}

impl serde::Serialize for MaybeSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaybeSecret::Plain(v) => s.serialize_str(v),
            MaybeSecret::Secret(secret) => secret.serialize(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for MaybeSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or a secret as { env = \"NAME\" } or { file = \"/path\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaybeSecret, E> {
                Ok(MaybeSecret::Plain(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MaybeSecret, A::Error> {
                <Secret as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )
                .map(MaybeSecret::Secret)
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret, never written inline: `{ env = \"NAME\" }` reads it from an environment variable, `{ file = \"/path\" }` from a file (relative to the config file; trailing newlines dropped). Read once at load, never printed.",
            "type": "object",
            // Each way whole: a string (an inline secret) is then "not an
            // object", and both keys at once match neither.
            "oneOf": [
                {
                    "type": "object",
                    "properties": {
                        "env": { "type": "string", "description": "The environment variable that holds the secret." },
                    },
                    "required": ["env"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "properties": {
                        "file": { "type": "string", "description": "The file that holds the secret." },
                    },
                    "required": ["file"],
                    "additionalProperties": false,
                },
            ],
            "examples": [{ "env": "NTFY_TOKEN" }, { "file": "/etc/vigie/ntfy.token" }],
        })
    }
}

impl schemars::JsonSchema for MaybeSecret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaybeSecret".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let secret = generator.subschema_for::<Secret>();
        schemars::json_schema!({
            "description": "A value written inline (`\"text\"`), or a secret (`{ env = \"NAME\" }` or `{ file = \"/path\" }`) read at load and never printed.",
            "anyOf": [{ "type": "string" }, secret],
        })
    }
}
