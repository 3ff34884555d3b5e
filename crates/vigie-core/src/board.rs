//! Reports that work running beside the engine (a replication job today)
//! publishes about itself, for the checks that watch it: the job judges
//! its own state (it knows its lag, queue and errors), and its check
//! reads the latest word. One board per process.

use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

use crate::{Outcome, Timestamp};

fn board() -> &'static RwLock<BTreeMap<String, (Outcome, Timestamp)>> {
    static B: OnceLock<RwLock<BTreeMap<String, (Outcome, Timestamp)>>> = OnceLock::new();
    B.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Publish `outcome` as the latest report of `name`.
pub fn publish(name: &str, outcome: Outcome) {
    board()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_owned(), (outcome, Timestamp::now()));
}

/// The latest report of `name`, and when it was published.
pub fn report(name: &str) -> Option<(Outcome, Timestamp)> {
    board()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(name)
        .cloned()
}

/// Forget `name` (its job stopped).
pub fn withdraw(name: &str) {
    board()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(name);
}
