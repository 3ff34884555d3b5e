//! vigie-config's integration tests, one test binary (ripgrep's
//! `tests/tests.rs`): loading real files, with their diagnostics as
//! snapshots, and a property test that no input makes the loader panic.

mod backup;
mod load;
mod never_panics;
