//! Integrity: [`Repo::check`] reads the repository's structure (every
//! index, every snapshot's trees, every pack's presence and size) and,
//! when asked, a subset of the packs' data, decrypted and hashed. What
//! it finds is returned as values: a damaged repository is a report,
//! not an `Err`, which is kept for a check that could not run.

use std::str::FromStr as _;

use rustic_core::{CheckOptions, ReadSubsetOption};

use crate::{Error, Repo};

/// One thing [`Repo::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// An error damages what can be restored; a warning does not (a
    /// pack no index lists, left by a backup killed before its index).
    pub error: bool,
    /// The engine's account, naming the pack, blob, file or tree.
    pub message: String,
    /// The pack concerned, when there is one (64 hex digits).
    pub pack: Option<String>,
}

/// What [`Repo::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    /// Whether pack data was read (all of it or a subset).
    pub read_data: bool,
}

impl CheckReport {
    /// No error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(|p| p.error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.error)
    }
}

/// The pack a finding names: the engine's message shows 8 digits of
/// its id, its `Debug` all 64.
fn pack_in(message: &str, debug: &str) -> Option<String> {
    if !message.starts_with("pack ") && !message.contains(" pack ") {
        return None;
    }
    let bytes = debug.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if len == 64 {
            return Some(debug[start..start + 64].to_owned());
        }
        start += len.max(1);
    }
    None
}

/// The engine's finding on one line: its own words, then, for an
/// error of the engine inside it, that error's message (not its
/// context, backtrace and links).
pub(crate) fn tidy(display: &str) -> String {
    let first = display.lines().next().unwrap_or_default();
    let Some(at) = display.find("Message:\n") else {
        return first.to_owned();
    };
    let inner = display[at + "Message:\n".len()..]
        .lines()
        .next()
        .unwrap_or_default();
    let own = first
        .split("`rustic_core` experienced")
        .next()
        .unwrap_or(first)
        .trim_end_matches([' ', ':']);
    let own = own.strip_suffix("caused by").unwrap_or(own);
    format!("{}: {inner}", own.trim_end_matches([' ', ':']))
}

impl Repo {
    /// Checks the repository's structure, and with `read_data_subset`
    /// reads back and verifies pack data: `all`, `x%` (a random subset
    /// of that share of the bytes), `n/m` (part n of m, by pack id, so
    /// that m runs with n = 1..m read everything once) or a size
    /// (`500MiB`, random packs up to it).
    pub fn check(&self, read_data_subset: Option<&str>) -> Result<CheckReport, Error> {
        let spec = &self.spec;
        let mut opts = CheckOptions::default();
        if let Some(subset) = read_data_subset {
            let parsed = ReadSubsetOption::from_str(subset).map_err(|_| Error::ReadDataSubset {
                job: spec.job.clone(),
                value: subset.to_owned(),
            })?;
            opts = opts.read_data(true).read_data_subset(parsed);
        }
        // rustic_core 0.13 panics (a worker's channel, then the index
        // "still in use") on a repository whose trees cannot be read: that
        // is a finding of the check, never a crash of its caller.
        let checked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.check(opts)));
        let results = match checked {
            Ok(r) => r.map_err(spec.engine("check it"))?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no reason given");
                let why = why.lines().next().unwrap_or(why);
                let why: String = why.chars().take(120).collect();
                return Ok(CheckReport {
                    problems: vec![Problem {
                        error: true,
                        message: format!(
                            "the check stopped on damage it could not report ({why}): the repository's trees cannot all be read; `restic check --read-data` lists what is damaged"
                        ),
                        pack: None,
                    }],
                    read_data: read_data_subset.is_some(),
                });
            }
        };
        let problems = results
            .0
            .iter()
            .map(|(level, finding)| {
                let display = finding.to_string();
                let pack = pack_in(&display, &format!("{finding:?}"));
                let mut message = tidy(&display);
                if let Some(pack) = &pack {
                    message = message.replacen(&pack[..8], pack, 1);
                }
                Problem {
                    // The level's type is not exported; its Debug is
                    // its variant's name.
                    error: format!("{level:?}") == "Error",
                    pack,
                    message,
                }
            })
            .collect();
        Ok(CheckReport {
            problems,
            read_data: read_data_subset.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pack_a_finding_names_is_found_whole() {
        let id = "ab".repeat(32);
        let debug = format!("ErrorCheckingPack {{ id: PackId({id}), source: x }}");
        assert_eq!(
            pack_in("error checking pack abababab : x", &debug),
            Some(id.clone())
        );
        assert_eq!(pack_in("pack abababab: Hash mismatch", &debug), Some(id));
        assert_eq!(pack_in("dir \"/x\" subtree has null ID", &debug), None);
        assert_eq!(pack_in("pack abc: short", "Pack { id: abc }"), None);
    }

    #[test]
    fn findings_are_told_on_one_line() {
        let engine = "error checking pack 7f9f17de : `rustic_core` experienced an error related to `cryptographic operations`.\n\nMessage:\nData decryption failed, MAC check failed.\n\nFor more information, see: https://x\n\nBacktrace:\n 0: y";
        assert_eq!(
            tidy(engine),
            "error checking pack 7f9f17de: Data decryption failed, MAC check failed."
        );
        assert_eq!(tidy("pack 1: No time is set!"), "pack 1: No time is set!");
        let nested = "error processing Pack:6f4d7f59 at here: caused by: `rustic_core` experienced an error.\n\nMessage:\nMAC check failed.\n\nBacktrace: x";
        assert_eq!(
            tidy(nested),
            "error processing Pack:6f4d7f59 at here: MAC check failed."
        );
    }
}
