//! `exclude` patterns: `*` (any run of characters but `/`), `**` (any
//! run, `/` included), `?` (one character). A pattern without `/` is
//! matched against every component (`*.tmp` excludes such files at any
//! depth); one with `/` against the whole path from the job's root. An
//! excluded directory excludes all it holds.

/// Whether `path` (relative, `/`-separated) is excluded by `patterns`;
/// never the root (an empty path) itself.
pub fn excluded(patterns: &[String], path: &[u8]) -> bool {
    if patterns.is_empty() || path.is_empty() {
        return false;
    }
    let path = String::from_utf8_lossy(path);
    let parts: Vec<&str> = path.split('/').collect();
    patterns.iter().any(|p| {
        if p.contains('/') {
            let p = p.trim_start_matches('/');
            // The path itself or any of its ancestors.
            (1..=parts.len()).any(|n| matches(p.as_bytes(), parts[..n].join("/").as_bytes()))
        } else {
            parts.iter().any(|c| matches(p.as_bytes(), c.as_bytes()))
        }
    })
}

fn matches(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            (0..=s.len()).any(|i| matches(rest, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if matches(rest, &s[i..]) {
                    return true;
                }
                if s.get(i) == Some(&b'/') {
                    break;
                }
            }
            false
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && matches(&p[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && matches(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &[&str], path: &str) -> bool {
        let p: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
        excluded(&p, path.as_bytes())
    }

    #[test]
    fn patterns() {
        assert!(ex(&["*.tmp"], "a/b/c.tmp"));
        assert!(!ex(&["*.tmp"], "a/b/c.tmpx"));
        assert!(ex(&["cache"], "cache/x/y"));
        assert!(ex(&["cache"], "a/cache"));
        assert!(ex(&["/logs/*.log"], "logs/a.log"));
        assert!(!ex(&["logs/*.log"], "logs/sub/a.log"));
        assert!(ex(&["logs/**.log"], "logs/sub/a.log"));
        assert!(ex(&["a/?/c"], "a/b/c/d"));
        assert!(!ex(&["a/?/c"], "a/bb/c"));
        assert!(!ex(&[], "anything"));
    }
}
