//! Secrets stay secret: out of children's environments, out of files
//! others may read, out of what `heartbeat-url` and the store keep.

use serde_json::Value;
use vigie_testkit::check;

use crate::util::{env, heartbeat_daemon, heartbeat_job, heartbeat_token};

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

#[test]
fn the_state_directory_and_the_store_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    // Made before by hand, readable by all.
    let dir = e.state_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = heartbeat_daemon(&e);
    // A ping makes the writer commit, so the WAL files exist.
    assert_eq!(d.http("POST", "/ping/job?token=tok-123", &[]).0, 200);
    vigie_testkit::wait_until(std::time::Duration::from_secs(5), || {
        dir.join("vigie.db-wal").exists() && dir.join("vigie.db-shm").exists()
    });
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for f in ["vigie.db", "vigie.db-wal", "vigie.db-shm"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // Making the files private never costs the daemon its SQLite locks
    // (closing any descriptor of the database drops them): a `vigie
    // status` alongside must not checkpoint and delete the WAL under it.
    assert_eq!(e.run(&["status"]).code, 0);
    let pid = rustix::process::Pid::as_raw(Some(d.pid()));
    let deleted: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.contains("vigie.db") && l.ends_with("(deleted)"))
        .collect();
    assert!(
        deleted.is_empty(),
        "the daemon writes to deleted files: {deleted:?}"
    );
}

#[test]
fn heartbeat_url_says_https_when_the_server_has_tls() {
    let e = env();
    let (cert, key, _) = vigie_testkit::servers::self_signed_for([127, 0, 0, 1].into());
    let (crt, key) = (e.write("server.crt", &cert), e.write("server.key", &key));
    e.config(&format!(
        "[server]\nlisten = \"127.0.0.1:9470\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n{}",
        crt.display(),
        key.display(),
        heartbeat_job(&e)
    ));
    let r = e.run(&["heartbeat-url", "job"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "https://127.0.0.1:9470/ping/job?token=tok-123\n");
}

#[test]
fn a_generated_heartbeat_token_is_kept_hashed_in_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    e.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n{}",
        check("job", "heartbeat = { period = \"1h\" }", "")
    ));
    let mut d = e.daemon();
    d.wait_log(
        "generated a heartbeat token",
        std::time::Duration::from_secs(10),
    );
    let token = heartbeat_token(&e, "job");
    assert_eq!(
        d.http("POST", &format!("/ping/job?token={token}"), &[]).0,
        200
    );
    d.signal(rustix::process::Signal::TERM);
    d.wait(std::time::Duration::from_secs(10));
    // Nothing in the database's files holds the token.
    let dir = e.state_dir();
    for f in ["vigie.db", "vigie.db-wal"] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{f} holds the token"
        );
    }
    let file = dir.join("heartbeat-tokens");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // After a restart the same token still works.
    let d = e.daemon();
    assert_eq!(
        d.http("POST", &format!("/ping/job?token={token}"), &[]).0,
        200
    );
    assert_eq!(d.http("POST", "/ping/job?token=wrong", &[]).0, 401);
}

#[test]
fn header_and_command_env_values_can_be_secrets_and_stay_out_of_show_config_and_errors() {
    let (server, seen) = vigie_testkit::servers::capture(&[200]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = env();
    e.write("pg.pass", "pg-s3cret\n");
    e.config(&format!(
        "[notify.hook]\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nheaders = {{ x-api-key = {{ env = \"VIGIE_TEST_HOOK_KEY\" }} }}\nquery = {{ key = {{ env = \"VIGIE_TEST_HOOK_KEY\" }}, v = \"2\" }}\n\n{}{}{}",
        check(
            "api",
            &format!("http = {{ url = \"http://{addr}/health\", headers = {{ authorization = {{ env = \"VIGIE_TEST_HDR\" }}, accept = \"text/plain\" }}, query = {{ api_key = {{ env = \"VIGIE_TEST_Q\" }} }} }}", addr = server.addr),
            ""
        ),
        check(
            "db",
            "command = { shell = 'echo \"${#PGPASSWORD} ${PGPASSWORD%s3cret}\"', env = { PGPASSWORD = { file = \"pg.pass\" } } }",
            ""
        ),
        check(
            "down",
            &format!("http = {{ url = \"http://127.0.0.1:{closed_port}/x?api_key=q5ecret\" }}"),
            ""
        ),
        addr = server.addr,
    ));
    let run = |args: &[&str]| {
        let out = e
            .cmd(args)
            .env("VIGIE_TEST_HDR", "Bearer h5ecret")
            .env("VIGIE_TEST_HOOK_KEY", "k5ecret")
            .env("VIGIE_TEST_Q", "q-k3y")
            .output()
            .expect("run vigie");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (shown, err) = run(&["show-config"]);
    for secret in ["h5ecret", "k5ecret", "pg-s3cret", "q-k3y"] {
        assert!(!shown.contains(secret), "{secret} in show-config:\n{shown}");
    }
    assert!(
        shown.contains("VIGIE_TEST_HDR") && shown.contains("pg.pass"),
        "{shown}{err}"
    );
    assert!(shown.contains("text/plain"), "{shown}");
    let (out, err) = run(&["check", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let by_name = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    // The value reached the command: 9 characters, starting with "pg-".
    assert_eq!(by_name("db")["message"], "9 pg-", "{v}");
    assert_eq!(by_name("api")["ok"], true, "{v}");
    let health = seen
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.target.starts_with("/health"))
        .cloned()
        .unwrap();
    assert_eq!(health.target, "/health?api_key=q-k3y");
    assert_eq!(health.header("authorization"), Some("Bearer h5ecret"));
    // The webhook gets its key in the header and the query.
    let (out, err) = run(&["notify", "test", "hook"]);
    let hook = seen
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.target.starts_with("/hook"))
        .cloned();
    let hook = hook.unwrap_or_else(|| panic!("no webhook call: {out}{err}"));
    assert_eq!(hook.target, "/hook?key=k5ecret&v=2");
    assert_eq!(hook.header("x-api-key"), Some("k5ecret"));
    // A probe's error names the URL without its query.
    let down = by_name("down");
    assert_eq!(down["ok"], false, "{v}");
    let message = down["message"].as_str().unwrap();
    assert!(!message.contains("q5ecret"), "{message}");
}

#[test]
fn an_http_check_carries_its_secrets_to_no_other_host_on_a_redirect() {
    use std::sync::Arc;
    use vigie_testkit::servers;
    // Another origin (another port), which records what reaches it.
    let (other, reached) = servers::capture(&[200]);
    let elsewhere = format!("http://{}/landing", other.addr);
    let (first, _) = servers::scripted(Arc::new(move |_req| (302, elsewhere.clone())));
    let e = env();
    e.config(&check(
        "api",
        &format!(
            "http = {{ url = \"http://{}/status\", headers = {{ X-Api-Key = {{ env = \"VIGIE_TEST_KEY\" }} }}, query = {{ key = {{ env = \"VIGIE_TEST_KEY\" }} }} }}",
            first.addr
        ),
        "",
    ));
    let out = e
        .cmd(&["check", "--json"])
        .env("VIGIE_TEST_KEY", "s3cr3t-value")
        .output()
        .expect("run vigie");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"));
    // The redirect is refused: the check sees the 302 for what it is.
    assert_eq!(v[0]["metrics"][0]["value"], 302.0, "{v}");
    for req in reached.lock().unwrap().iter() {
        let all = format!("{} {:?}", req.target, req.headers);
        assert!(
            !all.contains("s3cr3t-value"),
            "the key reached another host: {all}"
        );
    }

    // A check without secrets still follows a redirect to another host,
    // and says nowhere where it came from.
    let (other, reached) = servers::capture(&[200]);
    let elsewhere = format!("http://{}/landing", other.addr);
    let (first, _) = servers::scripted(Arc::new(move |_req| (302, elsewhere.clone())));
    e.config(&check(
        "site",
        &format!("http = {{ url = \"http://{}/?page=1\" }}", first.addr),
        "",
    ));
    let r = e.run(&["check", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|err| panic!("{err}: {r:?}"));
    assert_eq!(v[0]["ok"], true, "{v}");
    let seen = reached.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("referer"), None, "{:?}", seen[0]);
}
