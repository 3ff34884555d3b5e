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

/// The first pack id a message names (`pack 0123…`).
fn pack_in(message: &str) -> Option<String> {
    let at = message.find("pack ")? + "pack ".len();
    let id: String = message[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (id.len() == 64).then_some(id)
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
        let results = self.inner.check(opts).map_err(spec.engine("check it"))?;
        let problems = results
            .0
            .iter()
            .map(|(level, finding)| {
                let message = finding.to_string();
                Problem {
                    // The level's type is not exported; its Debug is
                    // its variant's name.
                    error: format!("{level:?}") == "Error",
                    pack: pack_in(&message),
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
    fn the_pack_a_message_names_is_found() {
        let id = "ab".repeat(32);
        assert_eq!(
            pack_in(&format!("pack {id}: Hash mismatch. Computed hash: 00")),
            Some(id.clone())
        );
        assert_eq!(
            pack_in(&format!("error reading pack {id} : gone")),
            Some(id)
        );
        assert_eq!(pack_in("pack abc: short"), None);
        assert_eq!(pack_in("dir \"/x\" subtree has null ID"), None);
    }
}
