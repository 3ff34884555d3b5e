//! The configuration reference and the JSON Schema: the committed copies
//! are what the code generates, and the schema, read by a validator that
//! is not vigie's (Python's `jsonschema`), accepts every shipped config
//! and refuses configs vigie refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigie_testkit::{Need, require};

use crate::util::{bin, env};

const REGENERATE: &str = "the committed reference is stale: run `scripts/gen-docs` \
     (vigie config reference --dir docs/config && vigie config schema > docs/vigie.schema.json) \
     and commit docs/";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(out.status.success(), "vigie {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_committed_reference_and_schema_are_current() {
    let schema = stdout_of(&["config", "schema"]);
    let committed = std::fs::read_to_string(repo().join("docs/vigie.schema.json"))
        .unwrap_or_else(|e| panic!("docs/vigie.schema.json: {e}; {REGENERATE}"));
    assert!(
        schema == committed,
        "docs/vigie.schema.json differs; {REGENERATE}"
    );

    let e = env();
    let dir = e.path().join("config");
    let out = Command::new(bin())
        .args(["config", "reference", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let committed_dir = repo().join("docs/config");
    assert_eq!(names(&dir), names(&committed_dir), "{REGENERATE}");
    for name in names(&dir) {
        let fresh = std::fs::read_to_string(dir.join(&name)).unwrap();
        let old = std::fs::read_to_string(committed_dir.join(&name)).unwrap();
        assert!(fresh == old, "docs/config/{name} differs; {REGENERATE}");
    }
}

/// `--dir` again removes the pages it no longer generates, and only
/// those: a file of the user's stays.
#[test]
fn reference_dir_replaces_its_own_pages_only() {
    let e = env();
    let dir = e.path().join("ref");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.md"), "my notes\n").unwrap();
    std::fs::write(
        dir.join("gone.md"),
        format!("{}\n\nold page\n", vigie_config::reference::GENERATED),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["config", "reference", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.join("index.md").exists());
    assert!(dir.join("checks.md").exists());
    assert!(!dir.join("gone.md").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.md")).unwrap(),
        "my notes\n"
    );
    // Without --dir, the same pages on stdout.
    let printed = stdout_of(&["config", "reference"]);
    let index = std::fs::read_to_string(dir.join("index.md")).unwrap();
    assert!(printed.starts_with(&index), "{printed}");
}

/// Reads TOML files, validates each against the schema (argv[1]) and
/// prints one line per file: its name, then its errors (none: valid).
const VALIDATE: &str = r#"
import json, sys, tomllib
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    errors = sorted(e.message.replace("\n", " ") for e in v.iter_errors(doc))
    print(json.dumps({"file": path, "errors": errors}))
"#;

/// Each file's errors by the validator, in the order given.
fn validate(schema: &Path, files: &[PathBuf]) -> Vec<Vec<String>> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema)
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn the_shipped_configs_validate_against_the_schema() {
    require!(Need::JsonSchema);
    let e = env();
    let schema = e.path().join("vigie.schema.json");
    std::fs::write(&schema, stdout_of(&["config", "schema"])).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "examples/ holds the quickstart and the fleet"
    );
    let quickstart = e.path().join("quickstart.toml");
    std::fs::write(&quickstart, vigie_config::QUICKSTART).unwrap();
    files.push(quickstart);
    let webhook = e.path().join("webhook.toml");
    std::fs::write(&webhook, vigie_config::reference::WEBHOOK_EXAMPLE).unwrap();
    files.push(webhook);
    for (file, errors) in files.iter().zip(validate(&schema, &files)) {
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

/// Configs vigie refuses, and the validator with them (each also
/// refused by `vigie validate`, so that none is refused by the schema
/// alone).
const BAD: &[(&str, &str, &str)] = &[
    (
        "an unknown section",
        "[chek]\nname = \"x\"\n",
        "'chek' was unexpected",
    ),
    (
        "a misspelt key",
        "[[check]]\nname = \"x\"\nevry = \"5s\"\nmemory = {}\n",
        "'evry' was unexpected",
    ),
    (
        "a duration without its unit",
        "[[check]]\nname = \"x\"\nevery = 30\nmemory = {}\n",
        "is not of type 'string'",
    ),
    (
        "a duration in an unknown unit",
        "[[check]]\nname = \"x\"\nevery = \"5 minutes\"\nmemory = {}\n",
        "does not match",
    ),
    (
        "an inline secret",
        "[server]\ntoken = \"s3cret\"\n",
        "is not of type 'object'",
    ),
    (
        "an unknown notifier kind",
        "[notify.phone]\nkind = \"pigeon\"\nurl = \"https://x.example/\"\n",
        "is not valid under any of the given schemas",
    ),
    (
        "a check without a name",
        "[[check]]\nmemory = {}\n",
        "'name' is a required property",
    ),
    (
        "a check of no kind",
        "[[check]]\nname = \"x\"\n",
        "is not valid under any of the given schemas",
    ),
    (
        "a check of two kinds",
        "[[check]]\nname = \"x\"\nmemory = {}\nload = {}\n",
        "is valid under each of",
    ),
    (
        "an unknown severity",
        "[[check]]\nname = \"x\"\nseverity = \"critical\"\nmemory = {}\n",
        "'critical' is not one of",
    ),
    (
        "a URL that is not HTTP",
        "[[check]]\nname = \"x\"\nhttp = { url = \"ftp://example.org/\" }\n",
        "does not match",
    ),
    (
        "a secret with both sources",
        "[server]\ntoken = { env = \"T\", file = \"/t\" }\n",
        "is not valid under any of the given schemas",
    ),
];

#[test]
fn configs_vigie_refuses_do_not_validate() {
    require!(Need::JsonSchema);
    let e = env();
    let schema = e.path().join("vigie.schema.json");
    std::fs::write(&schema, stdout_of(&["config", "schema"])).unwrap();
    let mut files = Vec::new();
    for (i, (what, toml, _)) in BAD.iter().enumerate() {
        let path = e.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let r = e.run(&["-c", path.to_str().unwrap(), "validate", "--no-environment"]);
        assert_eq!(r.code, 2, "vigie accepts {what}: {r:?}");
        files.push(path);
    }
    for ((what, _, says), errors) in BAD.iter().zip(validate(&schema, &files)) {
        assert!(
            errors.iter().any(|e| e.contains(says)),
            "{what}: expected an error containing {says:?}, got {errors:#?}"
        );
    }
}
