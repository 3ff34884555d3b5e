//! The unified diff a non-compliant file shows: bounded (a huge file
//! does not flood a report) and with secrets redacted (a report goes to
//! terminals, logs and incidents).

use std::fmt::Write as _;
use std::sync::OnceLock;

/// At most this many lines of diff per resource.
pub const MAX_LINES: usize = 200;

/// `--- path (now)` / `+++ path (declared)`, then hunks with three lines
/// of context; `sensitive` shows only that the content differs.
pub fn unified(path: &str, old: &[u8], new: &[u8], sensitive: bool) -> String {
    if sensitive {
        return format!("--- {path}\n+++ {path}\n(content hidden: the resource is sensitive)\n");
    }
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    if old.contains('\0') || new.contains('\0') {
        return format!("--- {path}\n+++ {path}\n(binary content differs)\n");
    }
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (now)"), &format!("{path} (declared)"))
        .to_string();
    bound(&redact(&text))
}

/// Cut `text` at [`MAX_LINES`] lines, saying how many were left out.
pub fn bound(text: &str) -> String {
    let total = text.lines().count();
    if total <= MAX_LINES {
        return text.to_owned();
    }
    let mut out = String::new();
    for l in text.lines().take(MAX_LINES) {
        out.push_str(l);
        out.push('\n');
    }
    let _ = writeln!(out, "… {} more lines of diff", total - MAX_LINES);
    out
}

const SECRET: &str =
    r"(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credentials?)";

/// Matched against a lowercased line: `password = x`, `api_key: x`,
/// `"token": "x"`, and a key at the start of a line followed by its
/// value (`requirepass x`, `PassPhrase x`).
fn patterns() -> &'static (regex::Regex, regex::Regex, regex::Regex) {
    static P: OnceLock<(regex::Regex, regex::Regex, regex::Regex)> = OnceLock::new();
    P.get_or_init(|| {
        (
            regex::Regex::new(&format!(
                r#"^(.*?[a-z_-]*{SECRET}[a-z_-]*["']?\s*[:=]\s*)\S"#
            ))
            .expect("a valid pattern"),
            regex::Regex::new(&format!(r"^([-+ ]?\s*[a-z_-]*{SECRET}[a-z_-]*\s+)\S"))
                .expect("a valid pattern"),
            regex::Regex::new(r"-----begin [a-z ]*private key-----").expect("a valid pattern"),
        )
    })
}

/// Replace what follows a secret-looking key with `<redacted>`, and
/// every line inside a PEM private key.
pub fn redact(text: &str) -> String {
    let (kv, word, pem) = patterns();
    let mut out = String::with_capacity(text.len());
    let mut in_key = false;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        // ASCII lowercasing keeps byte offsets.
        let lower = body.to_ascii_lowercase();
        if pem.is_match(&lower) {
            in_key = true;
            out.push_str(body);
        } else if in_key {
            if lower.contains("-----end") {
                in_key = false;
                out.push_str(body);
            } else {
                if let Some(c) = body.chars().next().filter(|c| matches!(c, '+' | '-' | ' ')) {
                    out.push(c);
                }
                out.push_str("<redacted>");
            }
        } else if let Some(c) = kv.captures(&lower).or_else(|| word.captures(&lower)) {
            let end = c.get(1).map_or(0, |m| m.end());
            out.push_str(&body[..end]);
            out.push_str("<redacted>");
        } else {
            out.push_str(body);
        }
        out.push_str(nl);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_shows_the_change_and_redacts_secrets() {
        let d = unified(
            "/etc/app.conf",
            b"port = 80\npassword = hunter2\n",
            b"port = 8080\npassword = correct-horse\n",
            false,
        );
        assert!(d.contains("-port = 80\n"), "{d}");
        assert!(d.contains("+port = 8080\n"), "{d}");
        assert!(d.contains("+password = <redacted>"), "{d}");
        assert!(
            !d.contains("hunter2") && !d.contains("correct-horse"),
            "{d}"
        );
    }

    #[test]
    fn a_private_key_never_shows() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAB3Nza\nQQQ\n-----END OPENSSH PRIVATE KEY-----\n";
        let d = unified("/k", b"", key.as_bytes(), false);
        assert!(!d.contains("AAAAB3Nza") && !d.contains("QQQ"), "{d}");
    }

    #[test]
    fn a_sensitive_resource_shows_no_content() {
        let d = unified("/etc/x", b"a\n", b"b\n", true);
        assert!(!d.contains('a') || d.contains("hidden"), "{d}");
        assert!(!d.lines().any(|l| l == "-a" || l == "+b"), "{d}");
    }

    #[test]
    fn a_long_diff_is_cut() {
        let new = (0..1000).fold(String::new(), |mut s, i| {
            let _ = writeln!(s, "{i}");
            s
        });
        let d = unified("/x", b"", new.as_bytes(), false);
        assert!(d.lines().count() <= MAX_LINES + 1, "{}", d.lines().count());
        assert!(d.ends_with("more lines of diff\n"), "{d}");
    }
}
