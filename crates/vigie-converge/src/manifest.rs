//! The manifest: a TOML file → raw serde types (`deny_unknown_fields`)
//! → a [`Plan`] of validated resources in the order they run. Every
//! problem of every resource is collected in one pass, each naming the
//! resource and the key, with a hint. Strings are templates (MiniJinja,
//! strict) over the manifest's variables, the host's facts and, in a
//! `for_each` loop, `item`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::facts::Facts;
use crate::res::account::{GroupSpec, UserSpec};
use crate::res::command::CommandSpec;
use crate::res::download::{DownloadSpec, Sha256, check_url};
use crate::res::file::{DirSpec, Edit, EditSpec, FileSpec, Perms};
use crate::res::git::GitSpec;
use crate::res::package::PackageSpec;
use crate::res::service::ServiceSpec;
use crate::res::sysctl::SysctlSpec;
use crate::res::{Res, State};
use crate::sys::Cmd;
use crate::template::Templates;
use crate::write::{KeepOld, Writer};

/// One problem in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// `[[file]] #2 (file:/etc/motd)`, or the file for a syntax error.
    pub place: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Every problem of a manifest, found in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestErrors {
    pub file: String,
    pub errors: Vec<ManifestError>,
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {}: {}: {}", self.file, e.place, e.message)?;
            if let Some(h) = &e.hint {
                write!(f, "\n  hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

/// What a resource declares, by kind.
#[derive(Clone, Debug)]
pub enum Spec {
    File(FileSpec),
    Directory(DirSpec),
    Edit(EditSpec),
    Command(CommandSpec),
    Sysctl(SysctlSpec),
    User(UserSpec),
    Group(GroupSpec),
    Package(PackageSpec),
    Service(ServiceSpec),
    Git(GitSpec),
    Download(DownloadSpec),
}

impl Spec {
    pub fn state(&self) -> &dyn State {
        match self {
            Spec::File(s) => s,
            Spec::Directory(s) => s,
            Spec::Edit(s) => s,
            Spec::Command(s) => s,
            Spec::Sysctl(s) => s,
            Spec::User(s) => s,
            Spec::Group(s) => s,
            Spec::Package(s) => s,
            Spec::Service(s) => s,
            Spec::Git(s) => s,
            Spec::Download(s) => s,
        }
    }
}

/// A resource: its id (`kind:name`), what it declares, and its place in
/// the run.
#[derive(Clone, Debug)]
pub struct Resource {
    pub id: String,
    pub spec: Spec,
    pub requires: Vec<String>,
    /// `handler:NAME` or `service:NAME`, run once at the end when this
    /// resource was repaired.
    pub notify: Vec<String>,
    pub tags: Vec<String>,
    /// The severity of the incident this resource's drift opens under
    /// `[[converge]]` (the job's when `None`).
    pub severity: Option<vigie_core::Severity>,
    /// Where it is declared in the file (its order among resources).
    pub position: usize,
}

impl Resource {
    /// The one path of every resource: check, and with a writer repair.
    pub fn check_apply(&self, w: Option<&Writer>) -> crate::res::Checked {
        crate::res::check_apply(self.spec.state(), w)
    }
}

/// What a notification runs.
#[derive(Clone, Debug)]
pub struct Handler {
    /// `handler:NAME` or `service:NAME`.
    pub id: String,
    pub cmd: Cmd,
}

/// A validated manifest, resources in the order they run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub resources: Vec<Resource>,
    /// Every declared `[[handler]]`, in declaration order.
    pub handlers: Vec<Handler>,
    /// The files the manifest read (`source`, `template`, `deb`), as
    /// written, relative to its directory (or absolute): what
    /// `vigie converge push` sends beside it.
    pub files: Vec<String>,
}

/// What a manifest is read with.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub facts: Facts,
    /// The host whose `[hosts.NAME]` and `[host_groups.*]` apply
    /// (default: `facts.hostname`).
    pub host: Option<String>,
}

const KINDS: &[&str] = &[
    "file",
    "directory",
    "line",
    "block",
    "command",
    "sysctl",
    "user",
    "group",
    "cron",
    "package",
    "service",
    "git",
    "download",
];
const SECTIONS: &[&str] = &[
    "vars",
    "hosts",
    "host_groups",
    "settings",
    "handler",
    "roles",
];
const COMMON: &str = "name, requires, notify, tags, severity, for_each";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    /// Where replaced files are kept: `"beside"` (`NAME.vigie-old`),
    /// `"none"`, or a directory (at their absolute path under it).
    keep_old: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default)]
    vars: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostGroup {
    hosts: Vec<String>,
    #[serde(default)]
    vars: toml::Table,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum Presence {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Argv {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    content: Option<String>,
    source: Option<String>,
    template: Option<String>,
    mode: Option<toml::Value>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default)]
    state: Presence,
    keep_old: Option<bool>,
    #[serde(default)]
    sensitive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    path: String,
    mode: Option<toml::Value>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default)]
    state: Presence,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    path: String,
    line: String,
    regex: Option<String>,
    #[serde(default)]
    state: Presence,
    #[serde(default)]
    create: bool,
    mode: Option<toml::Value>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default)]
    sensitive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    path: String,
    #[serde(default)]
    block: String,
    marker: Option<String>,
    #[serde(default)]
    state: Presence,
    #[serde(default)]
    create: bool,
    mode: Option<toml::Value>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default)]
    sensitive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    command: Argv,
    #[serde(default)]
    shell: bool,
    creates: Option<String>,
    unless: Option<Argv>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<vigie_core::Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandler {
    name: String,
    command: Argv,
    #[serde(default)]
    shell: bool,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<vigie_core::Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSysctl {
    key: String,
    value: toml::Value,
    #[serde(default = "yes")]
    persist: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    uid: Option<u32>,
    group: Option<String>,
    groups: Option<Vec<String>>,
    shell: Option<String>,
    home: Option<String>,
    #[serde(default)]
    system: bool,
    #[serde(default = "yes")]
    create_home: bool,
    authorized_keys: Option<Vec<String>>,
    #[serde(default)]
    state: Presence,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    gid: Option<u32>,
    #[serde(default)]
    system: bool,
    #[serde(default)]
    state: Presence,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCron {
    schedule: String,
    #[serde(default = "root")]
    user: String,
    command: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    state: Presence,
}

fn root() -> String {
    "root".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    version: Option<String>,
    deb: Option<String>,
    #[serde(default)]
    state: Presence,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGit {
    repo: String,
    dest: String,
    rev: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownload {
    url: String,
    path: String,
    checksum: Option<String>,
    mode: Option<toml::Value>,
    owner: Option<String>,
    group: Option<String>,
    keep_old: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    enabled: Option<bool>,
    running: Option<bool>,
    root: Option<String>,
}

/// A resource's problem: the key (when known), the message, a hint.
type SpecError = (Option<String>, String, Option<String>);

/// Deserialize a table, errors naming the key where toml can tell.
fn deser<T: DeserializeOwned>(t: &toml::Table) -> Result<T, (Option<String>, String)> {
    let text = toml::to_string(t).map_err(|e| (None, e.to_string()))?;
    toml::from_str::<T>(&text).map_err(|e| {
        let key = e.span().and_then(|sp| {
            let start = text[..sp.start.min(text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line = text[start..].lines().next()?;
            line.split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        });
        (key, e.message().trim().to_owned())
    })
}

/// Collects the errors of one load.
struct Loader {
    /// The manifest's directory.
    dir: PathBuf,
    /// Where relative `source` and `deb` paths are (the manifest's
    /// directory, or a role's `files/`).
    files_dir: PathBuf,
    /// Where relative `template` paths are (the manifest's directory,
    /// or a role's `templates/`).
    templates_dir: PathBuf,
    /// `Plan::files`: every file read goes in here.
    files: Vec<String>,
    templates: Templates,
    errors: Vec<ManifestError>,
    keep: KeepOld,
}

impl Loader {
    /// Note a file read at `path` (written `as_written`) for
    /// `Plan::files`: relative to the manifest's directory when under
    /// it (a role's files), else as written.
    fn read(&mut self, path: &Path, as_written: &str) {
        // An absolute path stays as written (push refuses it).
        let shown = Some(path)
            .filter(|_| Path::new(as_written).is_relative())
            .and_then(|p| p.strip_prefix(&self.dir).ok())
            .and_then(Path::to_str)
            .map_or_else(|| as_written.to_owned(), str::to_owned);
        self.files.push(shown);
    }

    fn err(&mut self, place: &str, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(ManifestError {
            place: place.to_owned(),
            message: message.into(),
            hint,
        });
    }
}

/// Load the manifest at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan, ManifestErrors> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ManifestErrors {
        file: shown.clone(),
        errors: vec![ManifestError {
            place: "file".into(),
            message: format!("cannot read it: {e}"),
            hint: Some("give the path of a converge manifest (TOML)".into()),
        }],
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    load_str(&text, &shown, &dir, opts)
}

/// Load a manifest from text; relative `source`, `template` and `deb`
/// paths are under `dir`.
pub fn load_str(
    text: &str,
    file: &str,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<Plan, ManifestErrors> {
    let fail = |errors| ManifestErrors {
        file: file.to_owned(),
        errors,
    };
    let mut top: toml::Table = toml::from_str(text).map_err(|e| {
        fail(vec![ManifestError {
            place: "syntax".into(),
            message: e.to_string().trim().replace('\n', "\n  "),
            hint: None,
        }])
    })?;
    let mut errors = Vec::new();
    for key in top.keys() {
        if !KINDS.contains(&key.as_str()) && !SECTIONS.contains(&key.as_str()) {
            errors.push(ManifestError {
                place: format!("`{key}`"),
                message: "unknown section".into(),
                hint: Some(format!(
                    "resources are [[{}]]; other sections: [vars], [hosts.NAME], [host_groups.NAME], [settings], [[handler]], roles = [\"NAME\", …]",
                    KINDS.join("]], [[")
                )),
            });
        }
    }
    let host = opts
        .host
        .clone()
        .unwrap_or_else(|| opts.facts.hostname.clone());
    let roles = roles(&mut top, dir, &mut errors);
    let mut vars = variables(&mut top, &host, &mut errors);
    // A role's defaults are the weakest: every other variable wins.
    for r in &roles {
        for (k, v) in &r.defaults {
            if !vars.contains_key(k) {
                vars.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
            }
        }
    }
    let keep = settings(&mut top, &mut errors);
    let mut context = vars;
    let facts = serde_json::to_value(&opts.facts).unwrap_or_default();
    context.insert("facts".into(), facts);
    context.insert("host".into(), serde_json::Value::String(host));
    let mut l = Loader {
        dir: dir.to_owned(),
        files_dir: dir.to_owned(),
        templates_dir: dir.to_owned(),
        files: Vec::new(),
        templates: Templates::new(minijinja::Value::from_serialize(&context)),
        errors,
        keep,
    };
    // Roles' resources first, in the order the roles are listed, then
    // the manifest's own.
    let (from_roles, mut handlers) = l.roles(roles);
    dir.clone_into(&mut l.files_dir);
    dir.clone_into(&mut l.templates_dir);
    let resources = l.resources(&mut top, text, "");
    let resources: Vec<Resource> = from_roles.into_iter().chain(resources).collect();
    handlers.extend(l.handlers(top.remove("handler"), ""));
    let mut errors = std::mem::take(&mut l.errors);
    for (i, h) in handlers.iter().enumerate() {
        if handlers[..i].iter().any(|o| o.id == h.id) {
            errors.push(ManifestError {
                place: h.id.clone(),
                message: "declared twice (in a role and the manifest, or two roles)".into(),
                hint: Some("give each handler its own name".into()),
            });
        }
    }
    fights(&resources, &mut errors);
    let resources = order(resources, &handlers, &mut errors);
    if errors.is_empty() {
        let mut files = std::mem::take(&mut l.files);
        files.sort();
        files.dedup();
        Ok(Plan {
            resources,
            handlers,
            files,
        })
    } else {
        Err(fail(errors))
    }
}

impl Loader {
    /// The roles' resources (each role's in its file's order, the roles
    /// in the order listed) and handlers; the files they read noted.
    fn roles(&mut self, roles: Vec<Role>) -> (Vec<Resource>, Vec<Handler>) {
        let mut from_roles = Vec::new();
        let mut handlers = Vec::new();
        for mut r in roles {
            self.files_dir = r.dir.join("files");
            for f in ["main.toml", "defaults.toml"] {
                if r.dir.join(f).is_file() {
                    self.files.push(format!("roles/{}/{f}", r.name));
                }
            }
            self.templates_dir = r.dir.join("templates");
            let at = format!("role {}: ", r.name);
            let mut found = self.resources(&mut r.main, &r.text, &at);
            for (i, res) in found.iter_mut().enumerate() {
                res.position = i;
            }
            from_roles.extend(found);
            handlers.extend(self.handlers(r.main.remove("handler"), &at));
            for key in r.main.keys() {
                self.err(
                    &format!("{at}{}", r.file),
                    format!("`{key}` has no place in a role's main.toml"),
                    Some(format!(
                        "a role's main.toml holds resources ([[{}]]) and [[handler]]s; its variables go in defaults.toml",
                        KINDS.join("]], [[")
                    )),
                );
            }
        }
        (from_roles, handlers)
    }
}

impl Loader {
    /// The resources of `top` (a manifest, or a role's main.toml whose
    /// text is `text`), in the file's order; places start with `at`.
    fn resources(&mut self, top: &mut toml::Table, text: &str, at: &str) -> Vec<Resource> {
        let mut resources = Vec::new();
        let headers = headers(text);
        for kind in KINDS {
            let Some(list) = top.remove(*kind) else {
                continue;
            };
            let Some(list) = list.as_array() else {
                self.err(kind, format!("write each as [[{kind}]]"), None);
                continue;
            };
            // Where each `[[kind]]` starts in the file, when every one is
            // a header line (not `kind = [{ … }]`): resources run in the
            // file's order, not grouped by kind.
            let starts = headers.get(*kind).filter(|h| h.len() == list.len());
            for (i, v) in list.iter().enumerate() {
                let place = format!("{at}[[{kind}]] #{}", i + 1);
                let Some(t) = v.as_table() else {
                    self.err(
                        &place,
                        "not a table",
                        Some(format!("write it as [[{kind}]]")),
                    );
                    continue;
                };
                let first = resources.len();
                self.resource(kind, &place, t, &mut resources);
                if let Some(starts) = starts {
                    for r in &mut resources[first..] {
                        r.position = starts[i];
                    }
                }
            }
        }
        // Stable: a kind written inline keeps its place after the others,
        // a loop's resources stay in the loop's order.
        resources.sort_by_key(|r| r.position);
        resources
    }
}

/// A role: `roles/NAME/` beside the manifest, with `main.toml` (its
/// resources and handlers), `defaults.toml` (its variables, the
/// weakest), `files/` and `templates/`.
struct Role {
    name: String,
    dir: PathBuf,
    /// `roles/NAME/main.toml`, as places name it.
    file: String,
    text: String,
    main: toml::Table,
    defaults: toml::Table,
}

/// `roles = ["web", …]`: each role read, or an error at its place.
fn roles(top: &mut toml::Table, dir: &Path, errors: &mut Vec<ManifestError>) -> Vec<Role> {
    let Some(v) = top.remove("roles") else {
        return Vec::new();
    };
    let Some(names) = string_list(&v) else {
        errors.push(ManifestError {
            place: "roles".into(),
            message: "a list of role names".into(),
            hint: Some(
                "roles = [\"web\", \"base\"]: each a folder roles/NAME/ beside the manifest".into(),
            ),
        });
        return Vec::new();
    };
    let mut out: Vec<Role> = Vec::new();
    for name in names {
        let place = format!("roles: `{name}`");
        if !valid_name(&name, "_-.") || name.starts_with('.') {
            errors.push(ManifestError {
                place,
                message: "a role's name is a folder's: letters, digits, `_`, `-`, `.`".into(),
                hint: None,
            });
            continue;
        }
        if out.iter().any(|r| r.name == name) {
            errors.push(ManifestError {
                place,
                message: "listed twice".into(),
                hint: None,
            });
            continue;
        }
        let rdir = dir.join("roles").join(&name);
        let file = format!("roles/{name}/main.toml");
        let read = |f: &str| -> Result<Option<(String, toml::Table)>, String> {
            let p = rdir.join(f);
            match std::fs::read_to_string(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", p.display())),
                Ok(t) => toml::from_str::<toml::Table>(&t)
                    .map(|tab| Some((t, tab)))
                    .map_err(|e| {
                        format!(
                            "roles/{name}/{f}: {}",
                            e.to_string().trim().replace('\n', "\n  ")
                        )
                    }),
            }
        };
        if !rdir.is_dir() {
            errors.push(ManifestError {
                place,
                message: format!("{} is not a folder", rdir.display()),
                hint: Some(format!(
                    "a role is a folder roles/{name}/ beside the manifest, with main.toml (resources), defaults.toml (variables), files/ and templates/"
                )),
            });
            continue;
        }
        let (text, main) = match read("main.toml") {
            Ok(Some(m)) => m,
            Ok(None) => (String::new(), toml::Table::new()),
            Err(e) => {
                errors.push(ManifestError {
                    place,
                    message: e,
                    hint: None,
                });
                continue;
            }
        };
        let defaults = match read("defaults.toml") {
            Ok(d) => d.map(|(_, t)| t).unwrap_or_default(),
            Err(e) => {
                errors.push(ManifestError {
                    place,
                    message: e,
                    hint: None,
                });
                continue;
            }
        };
        out.push(Role {
            name,
            dir: rdir,
            file,
            text,
            main,
            defaults,
        });
    }
    out
}

/// The byte offset of each `[[kind]]` header line, by kind.
fn headers(text: &str) -> HashMap<&'static str, Vec<usize>> {
    let mut out: HashMap<&'static str, Vec<usize>> = HashMap::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("[[")
            && let Some((kind, _)) = rest.split_once("]]")
            && let Some(k) = KINDS.iter().find(|k| **k == kind.trim())
        {
            out.entry(*k).or_default().push(offset);
        }
        offset += line.len();
    }
    out
}

/// Where root keeps replaced files by default: never beside them, where
/// a program reading every file of a directory (`sites-enabled/`,
/// `logrotate.d/`) would load the old copy too.
pub const KEEP_OLD_ROOT: &str = "/var/backups/vigie";

/// `[settings]`: where replaced files are kept (as root, under
/// [`KEEP_OLD_ROOT`]; otherwise beside them).
fn settings(top: &mut toml::Table, errors: &mut Vec<ManifestError>) -> KeepOld {
    let mut keep = if rustix::process::geteuid().is_root() {
        KeepOld::Under(PathBuf::from(KEEP_OLD_ROOT))
    } else {
        KeepOld::Beside
    };
    if let Some(s) = top.remove("settings") {
        match s.as_table().map(deser::<RawSettings>) {
            Some(Ok(s)) => match s.keep_old.as_deref() {
                None => {}
                Some("beside") => keep = KeepOld::Beside,
                Some("none") => keep = KeepOld::No,
                Some(k) => match absolute(k) {
                    Ok(p) => keep = KeepOld::Under(p),
                    Err(e) => errors.push(ManifestError {
                        place: "[settings] keep_old".into(),
                        message: e,
                        hint: Some(
                            "\"beside\" (NAME.vigie-old), \"none\", or an absolute directory"
                                .into(),
                        ),
                    }),
                },
            },
            Some(Err((key, m))) => errors.push(ManifestError {
                place: format!(
                    "[settings]{}",
                    key.map(|k| format!(" {k}")).unwrap_or_default()
                ),
                message: m,
                hint: Some("[settings] takes keep_old".into()),
            }),
            None => errors.push(ManifestError {
                place: "settings".into(),
                message: "must be a table, [settings]".into(),
                hint: None,
            }),
        }
    }
    keep
}

/// `[vars]`, then each `[host_groups.NAME]` that lists the host (by
/// name), then `[hosts.HOST]`: later ones override earlier ones.
/// The hosts that `[host_groups.GROUP]` of the manifest at `path`
/// lists (`vigie converge push site.toml @GROUP`).
pub fn group_hosts(path: &Path, group: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let top: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let groups = top.get("host_groups").and_then(toml::Value::as_table);
    let hosts = groups
        .and_then(|g| g.get(group))
        .and_then(toml::Value::as_table)
        .and_then(|g| g.get("hosts"))
        .and_then(string_list);
    match hosts {
        Some(h) if !h.is_empty() => Ok(h),
        Some(_) => Err(format!("[host_groups.{group}] lists no host")),
        None => {
            let known: Vec<&str> = groups
                .map(|g| g.keys().map(String::as_str).collect())
                .unwrap_or_default();
            Err(format!(
                "{}: no [host_groups.{group}] with hosts = [\"name\", …] (groups: {})",
                path.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        }
    }
}

fn variables(
    top: &mut toml::Table,
    host: &str,
    errors: &mut Vec<ManifestError>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut vars = serde_json::Map::new();
    let mut merge = |t: &toml::Table| {
        for (k, v) in t {
            vars.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
        }
    };
    if let Some(v) = top.remove("vars") {
        match v.as_table() {
            Some(t) => merge(t),
            None => errors.push(ManifestError {
                place: "vars".into(),
                message: "must be a table, [vars]".into(),
                hint: None,
            }),
        }
    }
    if let Some(groups) = top.remove("host_groups") {
        for (name, g) in groups.as_table().into_iter().flatten() {
            match g.as_table().map(deser::<RawHostGroup>) {
                Some(Ok(g)) if g.hosts.iter().any(|h| h == host) => merge(&g.vars),
                Some(Err((key, m))) => errors.push(ManifestError {
                    place: format!(
                        "[host_groups.{name}]{}",
                        key.map(|k| format!(" {k}")).unwrap_or_default()
                    ),
                    message: m,
                    hint: Some("a host group takes hosts = [\"name\", …] and vars = { … }".into()),
                }),
                Some(Ok(_)) | None => {}
            }
        }
    }
    if let Some(hosts) = top.remove("hosts") {
        for (name, h) in hosts.as_table().into_iter().flatten() {
            match h.as_table().map(deser::<RawHost>) {
                Some(Ok(h)) if name == host => merge(&h.vars),
                Some(Err((key, m))) => errors.push(ManifestError {
                    place: format!(
                        "[hosts.{name}]{}",
                        key.map(|k| format!(" {k}")).unwrap_or_default()
                    ),
                    message: m,
                    hint: Some("a host takes vars = { … }".into()),
                }),
                Some(Ok(_)) | None => {}
            }
        }
    }
    vars
}

/// An absolute path without `..`, `.` or an empty component.
fn absolute(p: &str) -> Result<PathBuf, String> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(format!("`{p}` is not an absolute path"));
    }
    if p.contains('\0')
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "`{p}` has a `..` or `.` component: write the path plainly"
        ));
    }
    if path.parent().is_none() {
        return Err("`/` itself cannot be managed".into());
    }
    Ok(path.to_path_buf())
}

fn parse_mode(v: Option<&toml::Value>) -> Result<Option<u32>, String> {
    match v {
        None => Ok(None),
        Some(toml::Value::String(s)) => {
            let digits = s.trim_start_matches("0o");
            match u32::from_str_radix(digits, 8) {
                Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(Some(m)),
                _ => Err(format!(
                    "`{s}` is not a mode: write it in octal, e.g. \"0644\""
                )),
            }
        }
        Some(other) => Err(format!(
            "`{other}` is not a mode: write it as an octal string, e.g. \"0644\" (a bare number is ambiguous)"
        )),
    }
}

fn string_list(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

fn valid_name(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        && !s.starts_with('-')
}

impl Loader {
    /// Render every template string of `v` (keys named in errors).
    fn render(
        &mut self,
        v: &mut toml::Value,
        key: &str,
        item: Option<&minijinja::Value>,
    ) -> Result<(), String> {
        match v {
            toml::Value::String(s) if Templates::is_template(s) => {
                *s = self
                    .templates
                    .render(key, s, item)
                    .map_err(|e| format!("key `{key}`: {e}"))?;
            }
            toml::Value::Array(a) => {
                for x in a {
                    self.render(x, key, item)?;
                }
            }
            toml::Value::Table(t) => {
                for (k, x) in t.iter_mut() {
                    self.render(x, &format!("{key}.{k}"), item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn resource(&mut self, kind: &str, place: &str, t: &toml::Table, out: &mut Vec<Resource>) {
        let mut t = t.clone();
        let items = match t.remove("for_each") {
            None => vec![None],
            Some(toml::Value::String(expr)) => match self.templates.list(&expr) {
                Ok(items) => items.into_iter().map(Some).collect(),
                Err(e) => {
                    self.err(place, format!("key `for_each`: {e}"), Some("for_each is a list, or the name of a variable holding one (for_each = \"users\")".into()));
                    return;
                }
            },
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|x| Some(minijinja::Value::from_serialize(x)))
                .collect(),
            Some(_) => {
                self.err(
                    place,
                    "key `for_each`: not a list",
                    Some("for_each is a list, or the name of a variable holding one".into()),
                );
                return;
            }
        };
        for item in items {
            let mut v = toml::Value::Table(t.clone());
            if let Err(e) = self.render(&mut v, "", item.as_ref()) {
                let e = e.replace("key `.", "key `");
                self.err(
                    place,
                    e,
                    Some(
                        "templates are strict: define the variable in [vars], or check its name"
                            .into(),
                    ),
                );
                continue;
            }
            let toml::Value::Table(mut t) = v else {
                continue;
            };
            let place = match (t.get("name"), t.get("path"), t.get("key")) {
                (Some(toml::Value::String(n)), _, _)
                | (None, Some(toml::Value::String(n)), _)
                | (None, None, Some(toml::Value::String(n))) => format!("{place} ({n})"),
                _ => place.to_owned(),
            };
            if let Some(r) = self.common(kind, &place, &mut t, item.as_ref()) {
                out.push(r);
            }
        }
    }

    fn common(
        &mut self,
        kind: &str,
        place: &str,
        t: &mut toml::Table,
        item: Option<&minijinja::Value>,
    ) -> Option<Resource> {
        let mut list = |me: &mut Self, key: &str| -> Vec<String> {
            match t.remove(key) {
                None => Vec::new(),
                Some(v) => string_list(&v).unwrap_or_else(|| {
                    me.err(
                        place,
                        format!("key `{key}`: a string or a list of strings"),
                        None,
                    );
                    Vec::new()
                }),
            }
        };
        let requires = list(self, "requires");
        let notify = list(self, "notify");
        let tags = list(self, "tags");
        let severity = match t.remove("severity") {
            None => None,
            Some(v) => {
                let found = v.as_str().and_then(|s| {
                    vigie_core::Severity::ALL
                        .into_iter()
                        .find(|l| l.as_str() == s)
                });
                if found.is_none() {
                    let levels: Vec<&str> = vigie_core::Severity::ALL
                        .iter()
                        .map(|l| l.as_str())
                        .collect();
                    self.err(
                        &format!("{place}: key `severity`"),
                        format!("`{v}` is not a severity"),
                        Some(format!("one of {}", levels.join(", "))),
                    );
                    return None;
                }
                found
            }
        };
        let name = match t.remove("name") {
            None => None,
            Some(toml::Value::String(s)) => Some(s),
            Some(_) => {
                self.err(place, "key `name`: a string", None);
                return None;
            }
        };
        let built = self.spec(kind, name.as_deref(), t, item);
        match built {
            Ok((label, spec)) => Some(Resource {
                id: format!("{kind}:{}", name.unwrap_or(label)),
                spec,
                requires,
                notify,
                tags,
                severity,
                position: usize::MAX,
            }),
            Err((key, message, hint)) => {
                let place = match key {
                    Some(k) => format!("{place}: key `{k}`"),
                    None => place.to_owned(),
                };
                let hint = hint.or_else(|| {
                    Some(format!(
                        "the keys of [[{kind}]] are {}, and {COMMON}",
                        keys_of(kind)
                    ))
                });
                self.err(&place, message, hint);
                None
            }
        }
    }

    /// `(label for the id, spec)`, or `(key, message, hint)`.
    #[allow(clippy::too_many_lines, clippy::many_single_char_names)]
    fn spec(
        &mut self,
        kind: &str,
        name: Option<&str>,
        t: &toml::Table,
        item: Option<&minijinja::Value>,
    ) -> Result<(String, Spec), SpecError> {
        type E = SpecError;
        let bad = |k: &str, m: String| -> E { (Some(k.to_owned()), m, None) };
        let from = |e: (Option<String>, String)| -> E { (e.0, e.1, None) };
        let need_name = |what: &str| -> Result<String, E> {
            name.map(str::to_owned).ok_or_else(|| {
                (
                    Some("name".into()),
                    format!("missing: a {kind} is named by its {what}"),
                    None,
                )
            })
        };
        let perms = |mode: Option<&toml::Value>,
                     owner: Option<String>,
                     group: Option<String>|
         -> Result<Perms, E> {
            Ok(Perms {
                mode: parse_mode(mode).map_err(|m| bad("mode", m))?,
                owner,
                group,
            })
        };
        match kind {
            "file" => {
                let r: RawFile = deser(t).map_err(from)?;
                let path = absolute(&r.path).map_err(|m| bad("path", m))?;
                let given = [
                    r.content.is_some(),
                    r.source.is_some(),
                    r.template.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if given > 1 {
                    return Err((
                        None,
                        "give one of `content`, `source`, `template`, not several".into(),
                        None,
                    ));
                }
                if r.state == Presence::Absent && given > 0 {
                    return Err((
                        Some("state".into()),
                        "an absent file has no content".into(),
                        None,
                    ));
                }
                let content = if let Some(c) = r.content {
                    Some(c.into_bytes())
                } else if let Some(s) = &r.source {
                    let p = self.files_dir.join(s);
                    self.read(&p, s);
                    Some(
                        std::fs::read(&p)
                            .map_err(|e| bad("source", format!("{}: {e}", p.display())))?,
                    )
                } else if let Some(s) = &r.template {
                    let p = self.templates_dir.join(s);
                    self.read(&p, s);
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| bad("template", format!("{}: {e}", p.display())))?;
                    Some(
                        self.templates
                            .render(s, &text, item)
                            .map_err(|e| bad("template", format!("{}: {e}", p.display())))?
                            .into_bytes(),
                    )
                } else {
                    None
                };
                let keep = if r.keep_old == Some(false) {
                    KeepOld::No
                } else {
                    self.keep.clone()
                };
                Ok((
                    r.path,
                    Spec::File(FileSpec {
                        path,
                        content,
                        present: r.state == Presence::Present,
                        perms: perms(r.mode.as_ref(), r.owner, r.group)?,
                        keep,
                        sensitive: r.sensitive,
                    }),
                ))
            }
            "directory" => {
                let r: RawDirectory = deser(t).map_err(from)?;
                let path = absolute(&r.path).map_err(|m| bad("path", m))?;
                Ok((
                    r.path,
                    Spec::Directory(DirSpec {
                        path,
                        present: r.state == Presence::Present,
                        perms: perms(r.mode.as_ref(), r.owner, r.group)?,
                    }),
                ))
            }
            "line" => {
                let r: RawLine = deser(t).map_err(from)?;
                let path = absolute(&r.path).map_err(|m| bad("path", m))?;
                if r.line.contains('\n') {
                    return Err(bad(
                        "line",
                        "one line, without a newline (a [[block]] holds several)".into(),
                    ));
                }
                let regex = match &r.regex {
                    Some(re) => {
                        Some(regex::Regex::new(re).map_err(|e| bad("regex", e.to_string()))?)
                    }
                    None => None,
                };
                Ok((
                    r.path,
                    Spec::Edit(EditSpec {
                        path,
                        edit: Edit::Line {
                            line: r.line,
                            regex,
                            present: r.state == Presence::Present,
                        },
                        create: r.create,
                        perms: perms(r.mode.as_ref(), r.owner, r.group)?,
                        keep: self.keep.clone(),
                        sensitive: r.sensitive,
                    }),
                ))
            }
            "block" => {
                let r: RawBlock = deser(t).map_err(from)?;
                let path = absolute(&r.path).map_err(|m| bad("path", m))?;
                let label = name.unwrap_or(&r.path);
                let marker = r
                    .marker
                    .unwrap_or_else(|| format!("# {{mark}} vigie {label}"));
                if !marker.contains("{mark}") || marker.contains('\n') {
                    return Err(bad(
                        "marker",
                        "one line holding `{mark}` (BEGIN and END replace it)".into(),
                    ));
                }
                Ok((
                    r.path,
                    Spec::Edit(EditSpec {
                        path,
                        edit: Edit::Block {
                            begin: marker.replace("{mark}", "BEGIN"),
                            end: marker.replace("{mark}", "END"),
                            block: r.block,
                            present: r.state == Presence::Present,
                        },
                        create: r.create,
                        perms: perms(r.mode.as_ref(), r.owner, r.group)?,
                        keep: self.keep.clone(),
                        sensitive: r.sensitive,
                    }),
                ))
            }
            "command" => {
                let label = need_name("name (its id is command:NAME)")?;
                let r: RawCommand = deser(t).map_err(from)?;
                let mut cmd = argv(r.command, r.shell).map_err(|m| bad("command", m))?;
                let unless = match r.unless {
                    Some(u) => Some(argv(u, r.shell).map_err(|m| bad("unless", m))?),
                    None => None,
                };
                let creates = match &r.creates {
                    Some(c) => Some(absolute(c).map_err(|m| bad("creates", m))?),
                    None => None,
                };
                let cwd = match &r.cwd {
                    Some(c) => Some(absolute(c).map_err(|m| bad("cwd", m))?),
                    None => None,
                };
                cmd.env = r.env.into_iter().collect();
                cmd.cwd.clone_from(&cwd);
                if let Some(t) = r.timeout {
                    cmd.timeout = t.std();
                }
                let unless = unless.map(|mut u| {
                    u.env.clone_from(&cmd.env);
                    u.cwd.clone_from(&cwd);
                    u.timeout = cmd.timeout;
                    u
                });
                Ok((
                    label,
                    Spec::Command(CommandSpec {
                        cmd,
                        creates,
                        unless,
                    }),
                ))
            }
            "sysctl" => {
                let r: RawSysctl = deser(t).map_err(from)?;
                let ok = valid_name(&r.key, "._-/")
                    && !r.key.contains("..")
                    && !r.key.starts_with(['.', '/']);
                if !ok {
                    return Err(bad(
                        "key",
                        format!(
                            "`{}` is not a kernel parameter's name (e.g. vm.swappiness)",
                            r.key
                        ),
                    ));
                }
                let value = match &r.value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    other => {
                        return Err(bad("value", format!("`{other}`: a string or an integer")));
                    }
                };
                if value.contains('\n') || value.trim().is_empty() {
                    return Err(bad("value", "one line, not empty".into()));
                }
                let persist = r.persist.then(|| {
                    PathBuf::from(format!(
                        "/etc/sysctl.d/90-vigie-{}.conf",
                        r.key.replace('/', ".")
                    ))
                });
                Ok((
                    r.key.clone(),
                    Spec::Sysctl(SysctlSpec {
                        key: r.key,
                        value,
                        persist,
                    }),
                ))
            }
            "user" => {
                let n = need_name("login name")?;
                if !valid_name(&n, "_-.") || n.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(bad("name", format!("`{n}` is not a valid login name")));
                }
                let r: RawUser = deser(t).map_err(from)?;
                if let Some(h) = &r.home {
                    absolute(h).map_err(|m| bad("home", m))?;
                }
                for k in r.authorized_keys.iter().flatten() {
                    if k.contains('\n') || k.trim().is_empty() {
                        return Err(bad(
                            "authorized_keys",
                            "one key a string, each on one line".into(),
                        ));
                    }
                }
                let present = r.state == Presence::Present;
                Ok((
                    n.clone(),
                    Spec::User(UserSpec {
                        name: n,
                        present,
                        uid: r.uid,
                        group: r.group,
                        groups: r.groups,
                        shell: r.shell,
                        home: r.home,
                        system: r.system,
                        create_home: r.create_home,
                        authorized_keys: r.authorized_keys,
                    }),
                ))
            }
            "group" => {
                let n = need_name("group name")?;
                if !valid_name(&n, "_-.") {
                    return Err(bad("name", format!("`{n}` is not a valid group name")));
                }
                let r: RawGroup = deser(t).map_err(from)?;
                Ok((
                    n.clone(),
                    Spec::Group(GroupSpec {
                        name: n,
                        present: r.state == Presence::Present,
                        gid: r.gid,
                        system: r.system,
                    }),
                ))
            }
            "cron" => {
                let n = need_name("name (its file is /etc/cron.d/NAME)")?;
                // cron(8) reads only such names in /etc/cron.d.
                if !valid_name(&n, "_-") {
                    return Err(bad(
                        "name",
                        format!(
                            "`{n}`: letters, digits, `_` and `-` only (cron ignores other file names in /etc/cron.d)"
                        ),
                    ));
                }
                let r: RawCron = deser(t).map_err(from)?;
                let fields = r.schedule.split_whitespace().count();
                let special = [
                    "@reboot",
                    "@yearly",
                    "@annually",
                    "@monthly",
                    "@weekly",
                    "@daily",
                    "@midnight",
                    "@hourly",
                ];
                if !(fields == 5 || (fields == 1 && special.contains(&r.schedule.trim()))) {
                    return Err(bad(
                        "schedule",
                        format!(
                            "`{}`: five fields (\"*/5 * * * *\") or one of {}",
                            r.schedule,
                            special.join(", ")
                        ),
                    ));
                }
                if r.command.contains('\n') || r.user.contains(char::is_whitespace) {
                    return Err(bad("command", "one line".into()));
                }
                let mut content =
                    format!("# Managed by vigie converge (cron:{n}): edits are overwritten.\n");
                for (k, v) in &r.env {
                    if !valid_name(k, "_") || v.contains('\n') {
                        return Err(bad(
                            "env",
                            format!("`{k}`: a variable name and a one-line value"),
                        ));
                    }
                    let _ = writeln!(content, "{k}={v}");
                }
                let _ = writeln!(content, "{} {} {}", r.schedule.trim(), r.user, r.command);
                let present = r.state == Presence::Present;
                Ok((
                    n.clone(),
                    Spec::File(FileSpec {
                        path: PathBuf::from("/etc/cron.d").join(&n),
                        content: present.then(|| content.into_bytes()),
                        present,
                        perms: Perms {
                            mode: Some(0o644),
                            owner: Some("root".into()),
                            group: Some("root".into()),
                        },
                        keep: KeepOld::No,
                        sensitive: false,
                    }),
                ))
            }
            "package" => {
                let n = need_name("package name")?;
                let ok = valid_name(&n, "+.-")
                    && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
                if !ok {
                    return Err(bad("name", format!("`{n}` is not a Debian package name")));
                }
                let r: RawPackage = deser(t).map_err(from)?;
                let deb = match &r.deb {
                    Some(d) => {
                        let p = self.files_dir.join(d);
                        self.read(&p, d);
                        if !p.is_file() {
                            return Err(bad("deb", format!("{}: no such file", p.display())));
                        }
                        Some(std::path::absolute(&p).unwrap_or(p))
                    }
                    None => None,
                };
                Ok((
                    n.clone(),
                    Spec::Package(PackageSpec {
                        name: n,
                        present: r.state == Presence::Present,
                        version: r.version,
                        deb,
                    }),
                ))
            }
            "service" => {
                let n = need_name("unit name")?;
                if !valid_name(&n, "_-.@:\\") {
                    return Err(bad("name", format!("`{n}` is not a unit name")));
                }
                let r: RawService = deser(t).map_err(from)?;
                if r.enabled.is_none() && r.running.is_none() {
                    return Err((
                        None,
                        "declares nothing: give `enabled`, `running` or both".into(),
                        None,
                    ));
                }
                let root = match &r.root {
                    Some(p) => Some(absolute(p).map_err(|m| bad("root", m))?),
                    None => None,
                };
                Ok((
                    n.clone(),
                    Spec::Service(ServiceSpec {
                        name: n,
                        enabled: r.enabled,
                        running: r.running,
                        root,
                    }),
                ))
            }
            "git" => {
                let r: RawGit = deser(t).map_err(from)?;
                let dest = absolute(&r.dest).map_err(|m| bad("dest", m))?;
                if r.repo.starts_with('-') || r.repo.trim().is_empty() {
                    return Err(bad("repo", format!("`{}` is not a repository", r.repo)));
                }
                if r.rev.starts_with('-') || r.rev.trim().is_empty() {
                    return Err(bad(
                        "rev",
                        format!("`{}`: a branch, a tag or a commit", r.rev),
                    ));
                }
                Ok((
                    r.dest.clone(),
                    Spec::Git(GitSpec {
                        repo: r.repo,
                        dest,
                        rev: r.rev,
                        force: r.force,
                    }),
                ))
            }
            "download" => {
                let r: RawDownload = deser(t).map_err(from)?;
                let path = absolute(&r.path).map_err(|m| bad("path", m))?;
                check_url(&r.url).map_err(|m| bad("url", m))?;
                let Some(sum) = &r.checksum else {
                    return Err((
                        Some("checksum".into()),
                        "missing: a download declares the checksum of what it fetches".into(),
                        Some("checksum = \"sha256:…\" (`sha256sum FILE` prints it)".into()),
                    ));
                };
                let sha256 = Sha256::parse(sum).map_err(|m| bad("checksum", m))?;
                let keep = if r.keep_old == Some(false) {
                    KeepOld::No
                } else {
                    self.keep.clone()
                };
                Ok((
                    r.path,
                    Spec::Download(DownloadSpec {
                        url: r.url,
                        path,
                        sha256,
                        perms: perms(r.mode.as_ref(), r.owner, r.group)?,
                        keep,
                    }),
                ))
            }
            _ => Err((None, format!("unknown kind {kind}"), None)),
        }
    }

    fn handlers(&mut self, v: Option<toml::Value>, at: &str) -> Vec<Handler> {
        let mut out: Vec<Handler> = Vec::new();
        let Some(v) = v else { return out };
        let Some(list) = v.as_array() else {
            self.err("handler", "write each as [[handler]]", None);
            return out;
        };
        for (i, v) in list.iter().enumerate() {
            let place = format!("{at}[[handler]] #{}", i + 1);
            let mut v = v.clone();
            if let Err(e) = self.render(&mut v, "", None) {
                self.err(&place, e, None);
                continue;
            }
            let Some(t) = v.as_table() else {
                self.err(&place, "not a table", None);
                continue;
            };
            let r: RawHandler = match deser(t) {
                Ok(r) => r,
                Err((key, m)) => {
                    let place = key.map_or(place.clone(), |k| format!("{place}: key `{k}`"));
                    self.err(
                        &place,
                        m,
                        Some(
                            "the keys of [[handler]] are name, command, shell, cwd, env, timeout"
                                .into(),
                        ),
                    );
                    continue;
                }
            };
            let mut cmd = match argv(r.command, r.shell) {
                Ok(c) => c,
                Err(m) => {
                    self.err(&format!("{place}: key `command`"), m, None);
                    continue;
                }
            };
            cmd.env = r.env.into_iter().collect();
            if let Some(c) = &r.cwd {
                match absolute(c) {
                    Ok(p) => cmd.cwd = Some(p),
                    Err(m) => self.err(&format!("{place}: key `cwd`"), m, None),
                }
            }
            if let Some(t) = r.timeout {
                cmd.timeout = t.std();
            }
            let id = format!("handler:{}", r.name);
            if out.iter().any(|h| h.id == id) {
                self.err(
                    &place,
                    format!("a second `{id}`"),
                    Some("give each handler its own name".into()),
                );
                continue;
            }
            out.push(Handler { id, cmd });
        }
        out
    }
}

fn keys_of(kind: &str) -> &'static str {
    match kind {
        "file" => {
            "path, content | source | template, mode, owner, group, state, keep_old, sensitive"
        }
        "directory" => "path, mode, owner, group, state",
        "line" => "path, line, regex, state, create, mode, owner, group, sensitive",
        "block" => "path, block, marker, state, create, mode, owner, group, sensitive",
        "command" => "command, shell, creates, unless, cwd, env, timeout",
        "sysctl" => "key, value, persist",
        "user" => "uid, group, groups, shell, home, system, create_home, authorized_keys, state",
        "group" => "gid, system, state",
        "cron" => "schedule, user, command, env, state",
        "package" => "version, deb, state",
        "service" => "enabled, running, root",
        "git" => "repo, dest, rev, force",
        "download" => "url, path, checksum, mode, owner, group, keep_old",
        _ => "",
    }
}

/// A command as argv; a string only with `shell = true` (then `sh -c`).
fn argv(a: Argv, shell: bool) -> Result<Cmd, String> {
    match (a, shell) {
        (Argv::Argv(v), false) if !v.is_empty() && !v[0].is_empty() => Ok(Cmd::new(&v)),
        (Argv::Shell(s), true) if !s.trim().is_empty() => Ok(Cmd::new(&["/bin/sh", "-c", &s])),
        (Argv::Argv(_), false) | (Argv::Shell(_), true) => Err("an empty command".into()),
        (Argv::Shell(_), false) => Err(
            "a string runs through a shell only with `shell = true`; or write the program and its arguments as a list".into(),
        ),
        (Argv::Argv(_), true) => Err("with `shell = true`, write the command as one string".into()),
    }
}

/// Check requires and notify, then order resources so that each runs
/// after those it requires (declaration order otherwise).
fn order(
    resources: Vec<Resource>,
    handlers: &[Handler],
    errors: &mut Vec<ManifestError>,
) -> Vec<Resource> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, r) in resources.iter().enumerate() {
        if index.insert(&r.id, i).is_some() {
            errors.push(ManifestError {
                place: r.id.clone(),
                message: "declared twice".into(),
                hint: Some(
                    "give each a distinct `name` (a for_each loop can use \"{{ item }}\")".into(),
                ),
            });
        }
    }
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
    for (i, r) in resources.iter().enumerate() {
        for req in &r.requires {
            match index.get(req.as_str()) {
                Some(&j) if j == i => errors.push(ManifestError {
                    place: format!("{}: key `requires`", r.id),
                    message: "requires itself".into(),
                    hint: None,
                }),
                Some(&j) => deps[i].push(j),
                None => errors.push(ManifestError {
                    place: format!("{}: key `requires`", r.id),
                    message: format!("`{req}` is not declared"),
                    hint: Some(near(req, resources.iter().map(|r| r.id.as_str()))),
                }),
            }
        }
        for n in &r.notify {
            let ok = match n.split_once(':') {
                Some(("handler", _)) => handlers.iter().any(|h| &h.id == n),
                Some(("service", s)) => !s.is_empty(),
                _ => false,
            };
            if !ok {
                errors.push(ManifestError {
                    place: format!("{}: key `notify`", r.id),
                    message: format!("`{n}` is neither a declared handler nor a service"),
                    hint: Some(format!(
                        "notify \"service:UNIT\" (restarted once at the end) or \"handler:NAME\" of a [[handler]]{}",
                        if handlers.is_empty() { String::new() } else {
                            format!(" ({})", handlers.iter().map(|h| h.id.as_str()).collect::<Vec<_>>().join(", "))
                        }
                    )),
                });
            }
        }
    }
    // Kahn's algorithm, always taking the first ready resource in
    // declaration order.
    let n = resources.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && deps[i].iter().all(|&j| done[j])) else {
            let cycle: Vec<&str> = (0..n)
                .filter(|&i| !done[i])
                .map(|i| resources[i].id.as_str())
                .collect();
            errors.push(ManifestError {
                place: "requires".into(),
                message: format!("a cycle among {}", cycle.join(", ")),
                hint: Some("remove one of the `requires` that loop".into()),
            });
            break;
        };
        done[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<Resource>> = resources.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// A file whose whole content is declared and an edit of the same
/// file would undo each other on every run: refused.
fn fights(resources: &[Resource], errors: &mut Vec<ManifestError>) {
    let whole: HashMap<&Path, &str> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::File(f) if f.content.is_some() => Some((f.path.as_path(), r.id.as_str())),
            _ => None,
        })
        .collect();
    for r in resources {
        if let Spec::Edit(e) = &r.spec
            && let Some(file) = whole.get(e.path.as_path())
        {
            errors.push(ManifestError {
                place: r.id.clone(),
                message: format!("edits {}, whose whole content {file} declares: they would undo each other on every run", e.path.display()),
                hint: Some(format!("put the line or block in {file}'s content (or template), or drop its content and keep the edits")),
            });
        }
    }
}

/// "declared: …", the ids closest to a wrong one first.
fn near<'a>(wrong: &str, ids: impl Iterator<Item = &'a str>) -> String {
    let (kind, _) = wrong.split_once(':').unwrap_or(("", wrong));
    let mut same: Vec<&str> = ids
        .filter(|id| id.starts_with(&format!("{kind}:")))
        .collect();
    same.truncate(5);
    if same.is_empty() {
        "a requirement is `kind:name`, e.g. \"file:/etc/nginx/nginx.conf\" or \"user:deploy\""
            .into()
    } else {
        format!("declared: {}", same.join(", "))
    }
}

/// A handler's run, as a resource's check would report it.
pub fn run_handler(h: &Handler, w: Option<&Writer>) -> Res<()> {
    match w {
        None => Ok(()),
        Some(w) => w.run_ok(&h.cmd).map(|_| ()).map_err(|e| e.to_string()),
    }
}
