//! Secrets stay secret: out of children's environments, out of files
//! others may read, out of what `heartbeat-url` and the store keep.

use serde_json::Value;
use vigie_testkit::{Env, check};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_vigie"))
}

#[test]
fn children_do_not_inherit_the_variables_that_hold_secrets() {
    let e = env();
    e.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntoken = {{ env = \"VIGIE_TEST_API_TOKEN\" }}\n\n{}",
        check(
            "env",
            "command = { shell = \"echo api=${VIGIE_TEST_API_TOKEN:-unset} other=${VIGIE_TEST_OTHER:-unset}\" }",
            ""
        )
    ));
    let out = e
        .cmd(&["check", "--json"])
        .env("VIGIE_TEST_API_TOKEN", "s3cret")
        .env("VIGIE_TEST_OTHER", "kept")
        .output()
        .expect("run vigie");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"));
    assert_eq!(v[0]["message"], "api=unset other=kept", "{v}");
}
