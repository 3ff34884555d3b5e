//! Generated heartbeat tokens. The database keeps only each token's
//! SHA-256, which is all the daemon needs to check a ping: a copy of
//! `vigie.db` (sent along with a bug report, backed up) lets no one ping.
//! The tokens themselves — what `vigie heartbeat-url` prints, as
//! healthchecks.io shows a check's ping URL at any time — are in
//! [`TOKENS_FILE`], 0600 like a secret file of the config, one
//! `NAME TOKEN` a line.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Result, StoreError};

/// The file of generated tokens, in the state directory.
pub const TOKENS_FILE: &str = "heartbeat-tokens";

/// The SHA-256 of `token`, in lower-case hex: what the store keeps. The
/// tokens are 128 random bits (or a configured secret), so a plain hash
/// is enough: nothing to guess by brute force.
pub fn token_sha256(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    vigie_core::hex(digest.as_ref())
}

/// The generated token of heartbeat `check`, if there is one.
pub fn generated_token(state_dir: &Path, check: &str) -> Result<Option<String>> {
    Ok(read(state_dir)?.remove(check))
}

fn read(state_dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = state_dir.join(TOKENS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(StoreError::PrivateFile { path, source }),
    }
}

/// Add (or replace) `tokens` in the file, written whole to a temporary
/// 0600 file and renamed over, so that a crash leaves the old or the new.
pub(crate) fn save(state_dir: &Path, tokens: &[(String, String)]) -> Result<()> {
    let mut all = read(state_dir)?;
    for (name, token) in tokens {
        all.insert(name.clone(), token.clone());
    }
    let path = state_dir.join(TOKENS_FILE);
    let text = all.iter().fold(String::new(), |mut s, (n, t)| {
        use std::fmt::Write as _;
        let _ = writeln!(s, "{n} {t}");
        s
    });
    crate::write_atomic(&path, text.as_bytes(), 0o600)
        .map_err(|source| StoreError::PrivateFile { path, source })
}
