//! Shared vocabulary of vigie: what every other crate speaks.
//!
//! Nothing here does I/O. Checks produce an [`Outcome`]; the engine feeds
//! outcomes to a [`StateTracker`] that applies `fail_after` / `recover_after`
//! and reports [`Transition`]s; later crates turn transitions into incidents.

/// Serde through the type's text: written with `Display`, read with
/// `FromStr` (whose error says what is wrong with the value).
macro_rules! serde_as_text {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod board;
mod cron;
mod duration;
mod outcome;
mod schema;
mod size;
mod state;
mod time;

pub use board::{
    Board, backup as backup_metric, backup_report, converge as converge_metric, converge_report,
    drill as drill_metric, drill_report, integrity as integrity_metric, integrity_report,
    repository as repository_metric, repository_report,
};
pub use cron::{Cron, CronError};
pub use duration::{Duration, DurationError};
pub use outcome::{CheckResult, Metric, Outcome, Severity};
pub use size::{ByteSize, ByteSizeError, HumanBytes};
pub use state::{CheckState, StateTracker, Thresholds, Transition};
pub use time::Timestamp;

/// Rules for a check, heartbeat or any other name that appears in URLs and
/// metric labels: ASCII letters, digits, `-`, `_` and `.`, 1 to 64 bytes,
/// starting with a letter or a digit.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `bytes` in lower-case hexadecimal, two digits a byte (hashes, ids
/// and tokens as they are stored and shown).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// A series as Prometheus writes it: `name{k="v",…}` (no braces without
/// labels), each value quoted and escaped.
pub fn write_series(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    labels: &[(String, String)],
) -> std::fmt::Result {
    f.write_str(name)?;
    if !labels.is_empty() {
        f.write_str("{")?;
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")?;
    }
    Ok(())
}

/// `url` as logs and messages show it: what stands before an `@` in its
/// authority (a user, a password, a token) is replaced by `<redacted>`.
pub fn url_without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://<redacted>@{host}{}", &rest[end..]),
        // A password with an unencoded `/`, `?` or `#` (an S3 secret
        // key) ends the authority early: redact through the first `@`
        // rather than show it (a path with an `@` loses its start).
        None => match rest.split_once('@') {
            Some((_, after)) => format!("{scheme}://<redacted>@{after}"),
            None => url.to_owned(),
        },
    }
}

/// Compare two secrets without an early exit, so that the time taken
/// does not tell how much of a guess was right (only whether the lengths
/// differ). `subtle` keeps the optimiser from turning the loop back into
/// one that exits early.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, hex, is_valid_name, url_without_credentials};

    #[test]
    fn credentials_never_show_in_a_url() {
        let shown = url_without_credentials;
        assert_eq!(
            shown("https://u:secret@example.org/x@y"),
            "https://<redacted>@example.org/x@y"
        );
        assert_eq!(
            shown("ssh://git@host:22/site.git?a=b@c"),
            "ssh://<redacted>@host:22/site.git?a=b@c"
        );
        assert_eq!(
            shown("s3:https://KEY:ab/cd+ef@s3.example.org/bucket"),
            "s3:https://<redacted>@s3.example.org/bucket"
        );
        assert_eq!(shown("https://example.org/x"), "https://example.org/x");
        assert_eq!(shown("/srv/site.git"), "/srv/site.git");
    }

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("", "a"));
    }

    #[test]
    fn names() {
        assert!(is_valid_name("blog"));
        assert!(is_valid_name("disk-root_1.a"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(&"a".repeat(65)));
    }
}
