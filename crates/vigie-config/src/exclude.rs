//! The `exclude` patterns of a replication job, with the meaning rsync
//! users know: `*` and `?` stop at `/`, `**` crosses it (anywhere, also
//! inside a name), `[...]` is a class (`[!...]` or `[^...]` its
//! complement, ASCII only: names are compared byte by byte, and `?`
//! is one byte), `\` escapes the character after it; `{` and `}` are
//! literal. A pattern without `/` is matched against each name in a path
//! (`*.tmp` at any depth); one with `/` against the path from the job's
//! root (a leading `/` or `./` is optional; `//`, `.` and `..` inside
//! are refused: they would match nothing). An excluded directory excludes all
//! it holds. The patterns are compiled once (globset), for the job's
//! sender and for the receiver of its reverse pass alike.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// At most this many `**` inside names in one pattern: each doubles the
/// globs it stands for.
const MAX_INNER_RECURSIVE: usize = 4;

/// A job's compiled `exclude` patterns, shown (and sent to the far side)
/// as written.
#[derive(Clone, Default)]
pub struct Excludes {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Excludes {
    /// Compile `patterns`; the error names the first bad one and why.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Excludes, String> {
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            for glob in globs(p.as_ref())? {
                set.add(glob);
            }
        }
        Ok(Excludes {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set: set.build().map_err(|e| e.to_string())?,
        })
    }

    /// Whether `path` (relative, `/`-separated) is excluded; never the
    /// root (the empty path) itself.
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        !path.is_empty()
            && self
                .set
                .is_match_candidate(&globset::Candidate::from_bytes(path))
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl fmt::Debug for Excludes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.patterns.fmt(f)
    }
}

impl PartialEq for Excludes {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Serialize for Excludes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Excludes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // One by one: a bad pattern is reported at its own place.
        let patterns = Vec::<Pattern>::deserialize(d)?;
        let patterns: Vec<String> = patterns.into_iter().map(|p| p.0).collect();
        Excludes::new(&patterns).map_err(serde::de::Error::custom)
    }
}

/// One pattern, checked as it is read.
struct Pattern(String);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked by the visitor: an error is then the string's own, at
        // its place in the file (not the list's).
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Pattern;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a glob pattern")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Pattern, E> {
                globs(s).map_err(E::custom)?;
                Ok(Pattern(s.to_owned()))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// The globs `pattern` stands for, each matched against a whole path: a
/// path is excluded when it or one of its directories matches.
fn globs(pattern: &str) -> Result<Vec<globset::Glob>, String> {
    let bad = |why: &str| format!("invalid exclude pattern `{pattern}`: {why}");
    // `/x` and `./x` both name `x` at the job's root.
    let mut anchored = pattern.trim_start_matches('/');
    while let Some(rest) = anchored.strip_prefix("./") {
        anchored = rest.trim_start_matches('/');
    }
    if anchored.is_empty() {
        return Err(bad("it names nothing"));
    }
    if anchored
        .trim_end_matches('/')
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad(
            "`//`, `.` and `..` inside a pattern match nothing: paths are compared as the job's root names them (write `a/b`)",
        ));
    }
    if non_ascii_in_class(anchored) {
        return Err(bad(
            "a character beyond ASCII inside `[...]` never matches (names are compared byte by byte): write one pattern per spelling instead",
        ));
    }
    if anchored.ends_with('/') {
        return Err(bad(
            "a trailing `/` matches nothing here; write it without (a directory is excluded with all it holds)",
        ));
    }
    let parts = split(anchored);
    if parts.len() > MAX_INNER_RECURSIVE + 1 {
        return Err(bad(&format!(
            "more than {MAX_INNER_RECURSIVE} `**` inside names"
        )));
    }
    let whole_path = pattern.contains('/');
    let mut out = Vec::new();
    for body in expand(&parts, whole_path) {
        let forms = if whole_path {
            [body.clone(), format!("{body}/**")]
        } else {
            [format!("**/{body}"), format!("**/{body}/**")]
        };
        for g in forms {
            let glob = GlobBuilder::new(&g)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(&reason(&e)))?;
            out.push(glob);
        }
    }
    Ok(out)
}

/// Whether a `[...]` class of `pattern` holds a character beyond ASCII.
fn non_ascii_in_class(pattern: &str) -> bool {
    let mut in_class = false;
    let mut escaped = false;
    for c in pattern.chars() {
        match (escaped, in_class, c) {
            (true, _, _) => escaped = false,
            (false, _, '\\') => escaped = true,
            (false, false, '[') => in_class = true,
            (false, true, ']') => in_class = false,
            (false, true, c) if !c.is_ascii() => return true,
            _ => {}
        }
    }
    false
}

/// globset's own words for what is wrong, without the glob it repeats.
fn reason(e: &globset::Error) -> String {
    match e.kind() {
        globset::ErrorKind::UnclosedClass => {
            "unclosed character class `[` (write `[[]` or `\\[` for a literal `[`)".into()
        }
        globset::ErrorKind::InvalidRange(a, b) => format!("invalid range `{a}-{b}`"),
        other => other.to_string(),
    }
}

/// The pattern in globset's syntax, cut where a `**` stands inside a
/// name (rsync's `**` crosses `/` there too; globset's would be two
/// `*`). Braces are escaped: literal, as in rsync. Classes and escaped
/// characters are kept whole.
fn split(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut parts = vec![String::new()];
    let mut i = 0;
    while i < chars.len() {
        let part = parts.last_mut().expect("one part at least");
        match chars[i] {
            '\\' => {
                part.extend(&chars[i..chars.len().min(i + 2)]);
                i += 1;
            }
            '[' => {
                let end = class_end(&chars, i).unwrap_or(i);
                part.extend(&chars[i..=end]);
                i = end;
            }
            c @ ('{' | '}') => {
                part.push('\\');
                part.push(c);
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                let starts = i == 0 || chars[i - 1] == '/';
                let ends = chars.get(i + 2).is_none_or(|c| *c == '/');
                if starts && ends {
                    part.push_str("**");
                } else {
                    parts.push(String::new());
                }
                i += 1;
            }
            c => part.push(c),
        }
        i += 1;
    }
    parts
}

/// Where the class opening at `open` closes (a `]` right after `[`,
/// `[!` or `[^` is a member, not the end).
fn class_end(chars: &[char], open: usize) -> Option<usize> {
    let mut j = open + 1;
    if matches!(chars.get(j), Some('!' | '^')) {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    chars[j.min(chars.len())..]
        .iter()
        .position(|c| *c == ']')
        .map(|k| j + k)
}

/// Every way to join `parts` at an inner `**`: any run within a name
/// (`*`) or, when the pattern is matched against whole paths, across
/// directories too (`*/**/*`: `**/` matches none or more).
fn expand(parts: &[String], whole_path: bool) -> Vec<String> {
    let joints: &[&str] = if whole_path { &["*", "*/**/*"] } else { &["*"] };
    let mut out = vec![parts[0].clone()];
    for part in &parts[1..] {
        out = out
            .iter()
            .flat_map(|head| joints.iter().map(move |j| format!("{head}{j}{part}")))
            .collect();
    }
    out
}

impl schemars::JsonSchema for Excludes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Excludes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Paths left out, as rsync's `--exclude` patterns: `*` and `?` within a name, `**` across directories, `[...]` classes, `\\` escapes. A pattern without `/` matches a name at any depth (`*.tmp`), one with `/` the path from the job's root (`cache/tmp`); an excluded directory excludes all it holds.",
            "type": "array",
            "items": { "type": "string" },
            "examples": [["*.tmp", "cache/tmp", "**/node_modules"]],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str], path: &str) -> bool {
        Excludes::new(patterns)
            .unwrap()
            .is_excluded(path.as_bytes())
    }

    /// The meaning before globset, kept.
    #[test]
    fn names_paths_stars_and_questions() {
        assert!(ex(&["*.tmp"], "a/b/c.tmp"));
        assert!(!ex(&["*.tmp"], "a/b/c.tmpx"));
        assert!(ex(&["cache"], "cache/x/y"));
        assert!(ex(&["cache"], "a/cache"));
        assert!(!ex(&["cache"], "a/cached"));
        assert!(ex(&["/logs/*.log"], "logs/a.log"));
        assert!(!ex(&["logs/*.log"], "logs/sub/a.log"));
        assert!(!ex(&["logs/*.log"], "x/logs/a.log"));
        assert!(ex(&["logs/**.log"], "logs/sub/a.log"));
        assert!(ex(&["logs/**.log"], "logs/a.log"));
        assert!(!ex(&["logs/**.log"], "logs/sub/a.txt"));
        assert!(ex(&["a/?/c"], "a/b/c/d"));
        assert!(!ex(&["a/?/c"], "a/bb/c"));
        assert!(!ex(&["a?c"], "a/c"));
        assert!(!ex(&[], "anything"));
        assert!(!ex(&["*"], ""), "never the root");
        // Within a name, `**` is any run of that name.
        assert!(ex(&["**.bak"], "a/b.bak"));
        assert!(!ex(&["x**y"], "x/y"));
    }

    #[test]
    fn double_stars_as_components() {
        assert!(ex(&["**/x"], "x"));
        assert!(ex(&["**/x"], "a/b/x"));
        assert!(ex(&["**/x"], "a/b/x/y"));
        assert!(!ex(&["**/x"], "a/xy"));
        assert!(ex(&["dir/**"], "dir/a/b"));
        assert!(!ex(&["dir/**"], "dir"), "what it holds, not itself");
        assert!(!ex(&["dir/**"], "a/dir/b"));
        assert!(ex(&["a/**/z"], "a/z"));
        assert!(ex(&["a/**/z"], "a/b/c/z"));
        assert!(ex(&["a/b**/z"], "a/b1/b2/z"));
        assert!(!ex(&["a/b**/z"], "a/c/z"));
    }

    /// Classes work (they were literal before); braces stay literal, as
    /// in rsync.
    #[test]
    fn classes_and_braces() {
        assert!(ex(&["[ab].txt"], "d/a.txt"));
        assert!(!ex(&["[ab].txt"], "d/c.txt"));
        assert!(!ex(&["[ab].txt"], "d/[ab].txt"));
        assert!(ex(&["[!ab].txt"], "c.txt"));
        assert!(ex(&["[^ab].txt"], "c.txt"));
        assert!(!ex(&["[!ab].txt"], "a.txt"));
        assert!(ex(&["log[0-9]"], "var/log7"));
        assert!(ex(&["[]]x"], "]x"));
        assert!(ex(&["{a,b}"], "d/{a,b}"));
        assert!(!ex(&["{a,b}"], "d/a"));
        assert!(ex(&["x}"], "x}"));
    }

    /// A name with a `*`, `?` or `[` of its own: escaped, or as a class.
    #[test]
    fn literal_wildcards() {
        assert!(ex(&["a\\*b"], "a*b"));
        assert!(!ex(&["a\\*b"], "axb"));
        assert!(ex(&["a[*]b"], "a*b"));
        assert!(!ex(&["a[*]b"], "axxb"));
        assert!(ex(&["what\\?"], "what?"));
        assert!(!ex(&["what\\?"], "whats"));
        assert!(ex(&["\\[draft]"], "[draft]"));
        assert!(ex(&["[[]draft]"], "[draft]"));
        assert!(ex(&["not\\**"], "not*ice"));
    }

    #[test]
    fn bad_patterns_say_why() {
        let err = |p: &str| Excludes::new(&[p]).unwrap_err();
        assert!(
            err("[abc").contains("unclosed character class"),
            "{}",
            err("[abc")
        );
        assert!(
            err("a/[z-a]").contains("invalid range `z-a`"),
            "{}",
            err("a/[z-a]")
        );
        assert!(err("").contains("names nothing"));
        assert!(err("/").contains("names nothing"));
        assert!(err("cache/").contains("trailing `/`"));
        assert!(err("a**b**c**d**e**f").contains("`**` inside names"));
        assert!(err("[abc").starts_with("invalid exclude pattern `[abc`"));
        // Patterns that could never match are refused, not kept silently
        // (review: `./.env` replicated `.env` to the backup).
        for p in ["a//b", "a/./b", "../x", "a/..", "x/../y"] {
            assert!(err(p).contains("match nothing"), "{p}: {}", err(p));
        }
        assert!(
            err("[éa].txt").contains("beyond ASCII"),
            "{}",
            err("[éa].txt")
        );
    }

    #[test]
    fn a_leading_dot_slash_names_the_root() {
        assert!(ex(&["./.env"], ".env"));
        assert!(ex(&["./secret.key"], "secret.key"));
        assert!(!ex(&["./.env"], "app/.env"));
        assert!(ex(&["/./.env"], ".env"));
        // Beyond ASCII outside a class is fine: bytes for bytes.
        assert!(ex(&["é*.txt"], "été.txt"));
        // An escaped `[` opens no class.
        assert!(ex(&["\\[é]"], "[é]"));
    }

    #[test]
    fn it_reads_and_writes_back_as_written() {
        #[derive(Deserialize, Serialize)]
        struct T {
            exclude: Excludes,
        }
        let t: T = toml::from_str("exclude = [\"*.tmp\", \"/logs/**\"]").unwrap();
        assert!(t.exclude.is_excluded(b"a.tmp"));
        assert_eq!(t.exclude.patterns(), ["*.tmp", "/logs/**"]);
        assert_eq!(
            toml::to_string(&t).unwrap().trim(),
            "exclude = [\"*.tmp\", \"/logs/**\"]"
        );
        let e = toml::from_str::<T>("exclude = [\"ok\", \"[x\"]")
            .err()
            .unwrap();
        assert!(e.message().contains("`[x`"), "{e}");
    }
}
