//! The README's test command, `scripts/test`, run by a user without
//! root: it runs what it can, lists each test it skipped with the reason
//! in a summary at the end, and exits 0; with `VIGIE_REQUIRE_ALL=1`
//! (CI) the same run fails. Run for real as `nobody`, on two tests of
//! this binary: a plain one and one that needs network namespaces.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vigie_testkit::{Need, Reachable, require};

use crate::util::bin;

const PLAIN: &str = "cli::validate_accepts_a_good_config";
const NEEDS_ROOT: &str = "quorum::loss_on_one_watcher_link_moves_nothing";

/// `scripts/test` as `nobody`, with `cargo test` standing for this test
/// binary on [`PLAIN`] and [`NEEDS_ROOT`], once [`PLAIN`] is seen to pass:
/// (exit code, stdout, stderr, both for messages).
fn run_as_nobody(require_all: bool) -> (Option<i32>, String, String, String) {
    // Everything nobody runs is copied where nobody can reach it: the
    // checkout may be under /root (0700).
    let shared = Reachable::new();
    let it = shared.copy(std::env::current_exe().unwrap());
    let vigie = shared.copy(bin());
    let script = shared.copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test"));
    let cargo = shared.path().join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n# cargo test, as far as this test goes\nexec {} --exact {PLAIN} {NEEDS_ROOT}\n",
            it.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&script)
        .current_dir(shared.path())
        .env("CARGO", &cargo)
        .env("VIGIE_TEST_BIN", &vigie)
        .env("HOME", shared.path())
        .env("TMPDIR", shared.path())
        .env_remove("VIGIE_SKIPPED")
        .env_remove("VIGIE_REQUIRE_ALL");
    if require_all {
        cmd.env("VIGIE_REQUIRE_ALL", "1");
    }
    // The temp dirs of the plain test are created by nobody, in TMPDIR.
    std::fs::set_permissions(shared.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stdout}\n{stderr}");
    // The plain test runs and passes either way.
    assert!(stdout.contains(&format!("test {PLAIN} ... ok")), "{all}");
    (out.status.code(), stdout, stderr, all)
}

#[test]
fn scripts_test_run_by_a_user_lists_what_it_skipped_and_passes() {
    require!(Need::Setpriv);
    let (code, stdout, stderr, all) = run_as_nobody(false);
    assert_eq!(code, Some(0), "{all}");
    assert!(stdout.contains("test result: ok."), "{all}");
    // The summary, after cargo's own output, names the test and why.
    let summary = stderr
        .split_once("1 TEST SKIPPED: NOT RUN, NOT PASSED")
        .unwrap_or_else(|| panic!("no summary of skipped tests:\n{all}"))
        .1;
    assert!(
        summary.contains(&format!(
            "SKIPPED: vigie: {NEEDS_ROOT} — needs root (network namespaces)"
        )),
        "{all}"
    );
    assert!(summary.contains("sudo scripts/test"), "{all}");
    assert!(!summary.contains(PLAIN), "{all}");
}

#[test]
fn scripts_test_with_require_all_fails_a_test_it_would_skip() {
    require!(Need::Setpriv);
    let (code, stdout, stderr, all) = run_as_nobody(true);
    assert_ne!(code, Some(0), "{all}");
    assert!(
        stdout.contains(&format!("test {NEEDS_ROOT} ... FAILED")),
        "{all}"
    );
    assert!(
        all.contains("needs root (network namespaces)") && all.contains("VIGIE_REQUIRE_ALL=1"),
        "{all}"
    );
    assert!(!stderr.contains("SKIPPED: NOT RUN"), "{all}");
}
