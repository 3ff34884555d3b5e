//! Whatever the file holds, loading it returns a config or diagnostics,
//! never a panic.

use std::path::Path;

use proptest::prelude::*;

fn load(src: &str) {
    let _ = vigie_config::load_str(src, Path::new("fuzz.toml"), &|_| None);
}

/// Lines that look like a vigie config, to be shuffled and cut.
const PIECES: &[&str] = &[
    "[[check]]",
    "name = \"a\"",
    "name = \"b\"",
    "name = 7",
    "every = \"5s\"",
    "every = \"5\"",
    "timeout = \"0s\"",
    "fail_after = 0",
    "depends_on = [\"a\", \"b\", \"c\"]",
    "http = { url = \"http://x/\", expect_status = [200, 700] }",
    "http = { url = \"ftp://x\" }",
    "tcp = { address = \":0\" }",
    "dns = { name = \"\", server = \"::1:99999\" }",
    "command = { argv = [] }",
    "heartbeat = { period = \"0s\", token = { env = \"\" } }",
    "heartbeat = { period = \"1h\", token = \"inline\" }",
    "[server]",
    "listen = \"0.0.0.0:1\"",
    "token = { file = \"/nonexistent\" }",
    "[defaults]",
    "include = \"/nonexistent\"",
    "[check]",
    "x = { y = { z = 1 } }",
    "severity = \"hihg\"",
    "= broken",
];

proptest! {
    #[test]
    fn arbitrary_text(s in "\\PC{0,200}") {
        load(&s);
    }

    #[test]
    fn config_shaped_text(picks in proptest::collection::vec(0..PIECES.len(), 0..30)) {
        let src: Vec<&str> = picks.iter().map(|&i| PIECES[i]).collect();
        load(&src.join("\n"));
    }
}
