//! vigie's integration tests: the real binary, driven as a user drives
//! it, against real servers the harness starts (`vigie-testkit`). One
//! test binary with a module per subject (ripgrep's `tests/tests.rs`):
//! one link instead of one per file, and one set of helpers (`util`).
//!
//! A test that needs root or a program the machine may lack says so
//! first, with `vigie_testkit::require!`: under `scripts/test` run by a
//! user it is skipped and listed at the end; anywhere else it fails.
//!
//! `../sync_overflow.rs` stays a binary of its own: it floods the
//! kernel's inotify queue and wants no other test beside it.

mod backup;
mod checks;
mod cli;
mod config_docs;
mod converge;
mod daemon;
mod dash;
mod dash_pages;
mod dash_writes;
mod drift;
mod dyndns_interface;
mod failover;
mod fleet;
mod incidents;
mod located;
mod push;
mod quorum;
mod readme;
mod remote_write;
mod rules;
mod scripts;
mod secrets;
mod selfcheck;
mod series;
mod service;
mod status;
mod sync;
mod util;
mod web;
