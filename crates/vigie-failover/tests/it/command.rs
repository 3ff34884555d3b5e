//! The command provider: any program that can get and set a record.

use crate::util::{blog, moves_blog, rt};

use std::time::Duration;

use vigie_failover::Provider;
use vigie_failover::command::CommandProvider;

#[test]
fn gets_and_sets_through_a_program() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("log");
    std::fs::write(&state, "203.0.113.10\n").unwrap();
    let script = dir.path().join("dns.sh");
    std::fs::write(
        &script,
        format!(
            "echo \"$@\" >> {log}\ncase \"$1\" in\n get) cat {state} ;;\n set) shift 5; : > {state}; for v in \"$@\"; do echo \"$v\" >> {state}; done ;;\n *) echo 'unknown verb' >&2; exit 3 ;;\nesac\n",
            log = log.display(),
            state = state.display()
        ),
    )
    .unwrap();
    let p = Provider::Command(
        CommandProvider::new(
            vec!["/bin/sh".into(), script.display().to_string()],
            Duration::from_secs(5),
        )
        .unwrap(),
    );
    rt().block_on(moves_blog(&p, &["198.51.100.7", "198.51.100.8"]));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("set example.org blog A 60 198.51.100.7 198.51.100.8\n"),
        "{calls}"
    );
    std::fs::write(&state, "not an address\n").unwrap();
    let err = rt().block_on(p.current(&blog())).unwrap_err();
    assert!(err.to_string().contains("not an address"), "{err}");
    let bad = CommandProvider::new(
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo denied >&2; exit 4".into(),
        ],
        Duration::from_secs(5),
    )
    .unwrap();
    let err = rt().block_on(bad.current(&blog())).unwrap_err();
    assert!(err.to_string().contains("exited Some(4): denied"), "{err}");
}
