//! Every notifier against a local server that checks the request as the
//! service documents it; retries, refusals and timeouts.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use vigie_config::Notifier;
use vigie_core::Severity;
use vigie_notify::{Message, Policy, Sender};
use vigie_testkit::servers::{self, Captured};

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" | "MATTERMOST_TOKEN" => Some("s3cret-token".into()),
        "USER_KEY" => Some("u5er-key".into()),
        "APPRISE_A" => Some("tgram://123456:s3cret-bot/-100123".into()),
        "APPRISE_B" => Some("mailtos://alerts:s3cret-pass@example.org".into()),
        "HOOK" => Some(HOOK.with(|h| h.borrow().clone())),
        _ => None,
    }
}

thread_local! {
    static HOOK: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Parse `[notify.n]` from TOML text, as the daemon would.
fn notifier(toml: &str) -> Notifier {
    let loaded =
        vigie_config::load_str(toml, Path::new("n.toml"), &env).unwrap_or_else(|d| panic!("{d}"));
    loaded.config.notifiers.into_values().next().unwrap()
}

fn message() -> Message {
    Message {
        check: "blog".into(),
        severity: Severity::High,
        state: "failing".into(),
        title: "[HIGH] blog is failing — café".into(),
        body: "status 503, expected below 400\nsince 2026-11-23T10:00:00Z".into(),
        error: "status 503, expected below 400".into(),
        since: Some("2026-11-23T10:00:00Z".into()),
        silenced: vec!["blog-tls".into()],
        node: "home".into(),
        incident: None,
    }
}

fn quick() -> Sender {
    Sender::new(Policy {
        attempts: 3,
        backoff: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
    })
    .unwrap()
}

/// `c` was a `method` request of `target` (path and query).
#[track_caller]
fn assert_request(c: &Captured, method: &str, target: &str) {
    assert_eq!((c.method.as_str(), c.target.as_str()), (method, target));
}

/// Send one message through `toml`'s notifier to a fresh capture server.
fn deliver(toml: impl Fn(&str) -> String) -> Captured {
    deliver_msg(&message(), toml)
}

/// [`deliver`] of `msg`.
fn deliver_msg(msg: &Message, toml: impl Fn(&str) -> String) -> Captured {
    let (server, seen) = servers::capture(&[200]);
    let base = format!("http://{}", server.addr);
    HOOK.with(|h| *h.borrow_mut() = format!("{base}/hook/T000/B000/XXXX"));
    let n = notifier(&toml(&base));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt.block_on(quick().send(&n, msg));
    assert_eq!(d.error, None);
    assert_eq!(d.attempts, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    seen[0].clone()
}

fn body(c: &Captured) -> Value {
    serde_json::from_str(&c.body).unwrap_or_else(|e| panic!("{e}: {}", c.body))
}

/// `toml`'s notifier POSTs `json` to `target`: the request, for the
/// checks of its headers.
#[track_caller]
fn posts_json(toml: impl Fn(&str) -> String, target: &str, json: &Value) -> Captured {
    let c = deliver(toml);
    assert_request(&c, "POST", target);
    assert_eq!(body(&c), *json);
    c
}

#[test]
fn ntfy_posts_the_text_with_title_priority_and_tags() {
    let c = deliver(|b| {
        format!(
            "[notify.n]\nkind = \"ntfy\"\nurl = \"{b}/alerts\"\ntoken = {{ env = \"TOKEN\" }}\n"
        )
    });
    assert_request(
        &c,
        "POST",
        "/alerts?title=%5BHIGH%5D+blog+is+failing+%E2%80%94+caf%C3%A9&priority=4&tags=failing%2Chigh",
    );
    assert_eq!(c.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(c.body, message().body);
}

#[test]
fn gotify_posts_json_with_the_app_token() {
    let c = posts_json(
        |b| {
            format!(
                "[notify.n]\nkind = \"gotify\"\nurl = \"{b}/\"\ntoken = {{ env = \"TOKEN\" }}\n"
            )
        },
        "/message",
        &json!({"title": message().title, "message": message().body, "priority": 8}),
    );
    assert_eq!(c.header("x-gotify-key"), Some("s3cret-token"));
    assert_eq!(c.header("content-type"), Some("application/json"));
}

#[test]
fn webhook_sends_the_message_as_json_or_through_a_template() {
    let c = deliver(|b| {
        format!(
            "[notify.n]\nkind = \"webhook\"\nurl = \"{b}/in\"\nheaders = {{ x-source = \"vigie\" }}\n"
        )
    });
    assert_request(&c, "POST", "/in");
    assert_eq!(c.header("x-source"), Some("vigie"));
    let v = body(&c);
    assert_eq!(v["check"], "blog");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["silenced"], json!(["blog-tls"]));
    let c = deliver(|b| {
        format!(
            "[notify.n]\nkind = \"webhook\"\nurl = \"{b}/in\"\nmethod = \"PUT\"\ntoken = {{ env = \"TOKEN\" }}\ntemplate = '{{\"text\": {{{{ title|tojson }}}}, \"sev\": \"{{{{ severity }}}}\"}}'\n"
        )
    });
    assert_eq!(c.method, "PUT");
    assert_eq!(c.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(body(&c), json!({"text": message().title, "sev": "high"}));
}

/// The reference's webhook templates: the variables it lists are the
/// message's fields, and its example for a service vigie does not ship
/// (Mattermost) sends the body it shows.
#[test]
fn the_documented_webhook_template_sends_the_documented_body() {
    use vigie_config::reference::{WEBHOOK_EXAMPLE, WEBHOOK_EXAMPLE_BODY, WEBHOOK_VARIABLES};
    let documented: serde_json::Map<String, Value> = WEBHOOK_VARIABLES
        .iter()
        .map(|(name, _, example)| ((*name).to_owned(), serde_json::from_str(example).unwrap()))
        .collect();
    let field = |name: &str| documented[name].as_str().unwrap().to_owned();
    let msg = Message {
        check: field("check"),
        severity: serde_json::from_value(documented["severity"].clone()).unwrap(),
        state: field("state"),
        title: field("title"),
        body: field("body"),
        error: field("error"),
        since: Some(field("since")),
        silenced: serde_json::from_value(documented["silenced"].clone()).unwrap(),
        node: field("node"),
        incident: documented["incident"].as_i64(),
    };
    assert_eq!(
        serde_json::to_value(&msg).unwrap(),
        Value::Object(documented),
        "WEBHOOK_VARIABLES (vigie-config/src/reference.rs) must list the message's fields"
    );
    let c = deliver_msg(&msg, |b| {
        WEBHOOK_EXAMPLE.replace("https://chat.example.org", b)
    });
    assert_request(&c, "POST", "/api/v4/posts");
    assert_eq!(c.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(c.body, WEBHOOK_EXAMPLE_BODY);
    let without = Message {
        incident: None,
        ..msg
    };
    let c = deliver_msg(&without, |b| {
        WEBHOOK_EXAMPLE.replace("https://chat.example.org", b)
    });
    assert_eq!(
        body(&c)["props"],
        json!({"check": "blog", "incident": null})
    );
}

#[test]
fn ifttt_triggers_the_event_with_three_values() {
    posts_json(
        |b| {
            format!(
                "[notify.n]\nkind = \"ifttt\"\nevent = \"site_down\"\nkey = {{ env = \"TOKEN\" }}\nendpoint = \"{b}\"\n"
            )
        },
        "/trigger/site_down/with/key/s3cret-token",
        &json!({"value1": message().title, "value2": message().body, "value3": "high"}),
    );
}

#[test]
fn slack_and_discord_post_to_their_secret_webhook_url() {
    posts_json(
        |_| "[notify.n]\nkind = \"slack\"\nurl = { env = \"HOOK\" }\n".to_owned(),
        "/hook/T000/B000/XXXX",
        &json!({"text": format!("*{}*\n{}", message().title, message().body)}),
    );
    let c = deliver(|_| "[notify.n]\nkind = \"discord\"\nurl = { env = \"HOOK\" }\n".to_owned());
    assert_eq!(
        body(&c),
        json!({"content": format!("**{}**\n{}", message().title, message().body)})
    );
}

#[test]
fn matrix_puts_a_room_message_with_a_transaction_id() {
    let c = deliver(|b| {
        format!(
            "[notify.n]\nkind = \"matrix\"\nhomeserver = \"{b}\"\nroom_id = \"!abc:example.org\"\naccess_token = {{ env = \"TOKEN\" }}\n"
        )
    });
    assert_eq!(c.method, "PUT");
    let prefix = "/_matrix/client/v3/rooms/!abc:example.org/send/m.room.message/vigie-";
    assert!(c.target.starts_with(prefix), "{}", c.target);
    assert_eq!(c.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(
        body(&c),
        json!({"msgtype": "m.text", "body": format!("{}\n{}", message().title, message().body)})
    );
}

#[test]
fn telegram_sends_to_the_bot_api() {
    posts_json(
        |b| {
            format!(
                "[notify.n]\nkind = \"telegram\"\nbot_token = {{ env = \"TOKEN\" }}\nchat_id = \"-100123\"\nendpoint = \"{b}\"\n"
            )
        },
        "/bots3cret-token/sendMessage",
        &json!({"chat_id": "-100123", "text": format!("{}\n{}", message().title, message().body), "disable_web_page_preview": true}),
    );
}

#[test]
fn pushover_posts_the_message_with_its_priority() {
    let c = deliver(|b| {
        format!(
            "[notify.n]\nkind = \"pushover\"\ntoken = {{ env = \"TOKEN\" }}\nuser = {{ env = \"USER_KEY\" }}\nendpoint = \"{b}\"\n"
        )
    });
    assert_request(&c, "POST", "/1/messages.json");
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(
        c.body,
        r#"{"message":"status 503, expected below 400\nsince 2026-11-23T10:00:00Z","priority":1,"title":"[HIGH] blog is failing — café","token":"s3cret-token","user":"u5er-key"}"#
    );
}

#[test]
fn pushover_sends_a_disaster_as_an_emergency_only_when_configured() {
    let toml = |b: &str, extra: &str| {
        format!(
            "[notify.n]\nkind = \"pushover\"\ntoken = {{ env = \"TOKEN\" }}\nuser = {{ env = \"USER_KEY\" }}\ndevice = \"phone,tablet\"\nurl = \"https://status.example.org/\"\nendpoint = \"{b}\"\n{extra}"
        )
    };
    let disaster = Message {
        severity: Severity::Disaster,
        ..message()
    };
    let c = deliver_msg(&disaster, |b| toml(b, ""));
    let v = body(&c);
    assert_eq!(v["priority"], 1, "no emergency unless configured");
    assert_eq!(
        (&v["device"], &v["url"]),
        (
            &json!("phone,tablet"),
            &json!("https://status.example.org/")
        )
    );
    assert!(v.get("retry").is_none(), "{v}");
    let emergency = "emergency = { retry = \"1m\", expire = \"2h\" }\n";
    let v = body(&deliver_msg(&disaster, |b| toml(b, emergency)));
    assert_eq!(
        (&v["priority"], &v["retry"], &v["expire"]),
        (&json!(2), &json!(60), &json!(7200))
    );
    // Its recovery wakes no one.
    let recovered = Message {
        state: "recovered".into(),
        ..disaster
    };
    let v = body(&deliver_msg(&recovered, |b| toml(b, emergency)));
    assert_eq!(v["priority"], 0);
    assert!(v.get("retry").is_none(), "{v}");
}

/// Review: a message of no incident (a test, a flapping notice) is a
/// change event: an alert for it would page and never be resolved.
#[test]
fn pagerduty_gets_a_change_event_for_a_message_of_no_incident() {
    let toml = |b: &str| {
        format!(
            "[notify.n]\nkind = \"pagerduty\"\nrouting_key = {{ env = \"TOKEN\" }}\nendpoint = \"{b}\"\n"
        )
    };
    let test = vigie_notify::Message::test("home", "n");
    let c = deliver_msg(&test, toml);
    assert_request(&c, "POST", "/v2/change/enqueue");
    let v = body(&c);
    assert_eq!(v["routing_key"], "s3cret-token");
    assert_eq!(v["payload"]["source"], "home");
    assert_eq!(v["payload"]["summary"], test.title.as_str());
    assert!(
        v.get("event_action").is_none() && v.get("dedup_key").is_none(),
        "{v}"
    );
}

#[test]
fn pagerduty_triggers_then_resolves_the_same_alert() {
    let toml = |b: &str| {
        format!(
            "[notify.n]\nkind = \"pagerduty\"\nrouting_key = {{ env = \"TOKEN\" }}\nendpoint = \"{b}\"\n"
        )
    };
    let failing = Message {
        incident: Some(42),
        ..message()
    };
    let c = deliver_msg(&failing, toml);
    assert_request(&c, "POST", "/v2/enqueue");
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(
        body(&c),
        json!({
            "routing_key": "s3cret-token",
            "event_action": "trigger",
            "dedup_key": "vigie/home/blog/incident/42",
            "client": "vigie",
            "payload": {
                "summary": "[HIGH] blog is failing — café",
                "source": "home",
                "severity": "error",
                "component": "blog",
                "custom_details": {
                    "check": "blog",
                    "severity": "high",
                    "state": "failing",
                    "title": "[HIGH] blog is failing — café",
                    "body": "status 503, expected below 400\nsince 2026-11-23T10:00:00Z",
                    "error": "status 503, expected below 400",
                    "since": "2026-11-23T10:00:00Z",
                    "silenced": ["blog-tls"],
                    "node": "home",
                    "incident": 42,
                },
            },
        })
    );
    for state in vigie_notify::RESOLUTIONS {
        let resolved = Message {
            state: (*state).into(),
            title: "blog recovered after 5m".into(),
            ..failing.clone()
        };
        let c = deliver_msg(&resolved, toml);
        assert_eq!(
            c.body,
            r#"{"dedup_key":"vigie/home/blog/incident/42","event_action":"resolve","routing_key":"s3cret-token"}"#,
            "{state}"
        );
    }
}

#[test]
fn pagerduty_severities_follow_vigie_s() {
    use vigie_notify::pagerduty_severity as pd;
    assert_eq!(
        [
            Severity::NotClassified,
            Severity::Information,
            Severity::Warning,
            Severity::Average,
            Severity::High,
            Severity::Disaster
        ]
        .map(pd),
        ["info", "info", "warning", "warning", "error", "critical"]
    );
}

#[test]
fn pushover_priorities_follow_vigie_s_severities() {
    use vigie_notify::pushover_priority as p;
    let all = Severity::ALL;
    assert_eq!(all.map(|s| p(s, false, false)), [-1, -1, 0, 0, 1, 1]);
    assert_eq!(all.map(|s| p(s, true, false)), [-1, -1, 0, 0, 1, 2]);
    assert_eq!(all.map(|s| p(s, true, true)), [-1, -1, 0, 0, 0, 0]);
}

#[test]
fn teams_posts_an_adaptive_card_to_the_workflow_url() {
    let c = deliver(|_| "[notify.n]\nkind = \"teams\"\nurl = { env = \"HOOK\" }\n".to_owned());
    assert_request(&c, "POST", "/hook/T000/B000/XXXX");
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(
        c.body,
        concat!(
            r#"{"attachments":[{"content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","body":["#,
            r#"{"text":"[HIGH] blog is failing — café","type":"TextBlock","weight":"Bolder","wrap":true},"#,
            r#"{"text":"status 503, expected below 400\nsince 2026-11-23T10:00:00Z","type":"TextBlock","wrap":true}],"#,
            r#""type":"AdaptiveCard","version":"1.4"},"contentType":"application/vnd.microsoft.card.adaptive"}],"type":"message"}"#
        )
    );
}

/// A fake `apprise` in a directory of this test: `script` is its shell
/// body. Apprise is the program vigie calls, so a stand-in that records
/// what it was given is what there is to check.
fn fake_apprise(test: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vigie-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("apprise");
    std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

fn apprise_notifier(program: &Path) -> Notifier {
    notifier(&format!(
        "[notify.n]\nkind = \"apprise\"\nurls = [{{ env = \"APPRISE_A\" }}, {{ env = \"APPRISE_B\" }}]\nprogram = \"{}\"\n",
        program.display()
    ))
}

#[test]
fn apprise_runs_the_program_with_the_urls_in_its_environment() {
    let program = fake_apprise(
        "apprise-ok",
        r#"d=$(dirname "$0"); for a in "$@"; do printf '%s\0' "$a"; done > "$d/argv"; printf '%s' "$APPRISE_URLS" > "$d/urls""#,
    );
    let d = run(&quick(), &apprise_notifier(&program));
    assert_eq!(d.error, None);
    let dir = program.parent().unwrap();
    let argv = std::fs::read_to_string(dir.join("argv")).unwrap();
    assert_eq!(
        argv.split_terminator('\0').collect::<Vec<_>>(),
        [
            "--notification-type=failure",
            "--title=[HIGH] blog is failing — café",
            "--body=status 503, expected below 400\nsince 2026-11-23T10:00:00Z",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("urls")).unwrap(),
        "tgram://123456:s3cret-bot/-100123 mailtos://alerts:s3cret-pass@example.org"
    );
    let resolved = Message {
        state: "recovered".into(),
        ..message()
    };
    assert_eq!(
        vigie_notify::apprise_args(&resolved)[0],
        "--notification-type=success"
    );
}

#[test]
fn apprise_failures_are_retried_or_not_and_never_show_the_urls() {
    // 1: a service failed; not tried again: Apprise would send to every
    // URL again, those that got it included.
    let program = fake_apprise(
        "apprise-fails",
        r#"echo "ERROR - could not reach $APPRISE_URLS"; exit 1"#,
    );
    let d = run(&quick(), &apprise_notifier(&program));
    assert_eq!(d.attempts, 1);
    let err = d.error.unwrap();
    assert!(err.starts_with("apprise: a service failed: ERROR"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // 2: a usage error, the same next time.
    let program = fake_apprise("apprise-usage", "exit 2");
    let d = run(&quick(), &apprise_notifier(&program));
    assert_eq!(
        (d.attempts, d.error.as_deref()),
        (1, Some("apprise: exit 2: "))
    );
    // Not installed: said once.
    let d = run(
        &quick(),
        &apprise_notifier(Path::new("/nonexistent/apprise")),
    );
    assert_eq!(d.attempts, 1);
    assert!(d.error.unwrap().contains("cannot run /nonexistent/apprise"));
}

#[test]
fn apprise_that_hangs_is_killed_at_the_timeout() {
    let program = fake_apprise("apprise-hangs", "sleep 30");
    let start = std::time::Instant::now();
    let d = run(&quick(), &apprise_notifier(&program));
    assert!(d.error.unwrap().contains("no answer within"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

fn run(sender: &Sender, n: &Notifier) -> vigie_notify::Delivery {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sender.send(n, &message()))
}

#[test]
fn a_500_is_retried_with_backoff_and_then_succeeds() {
    let (server, seen) = servers::capture(&[500, 503, 200]);
    let n = notifier(&format!(
        "[notify.n]\nkind = \"webhook\"\nurl = \"http://{}/in\"\n",
        server.addr
    ));
    let d = run(&quick(), &n);
    assert_eq!(
        d,
        vigie_notify::Delivery {
            attempts: 3,
            error: None
        }
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn a_400_is_not_retried_and_says_why() {
    let (server, seen) = servers::capture(&[400]);
    let n = notifier(&format!(
        "[notify.n]\nkind = \"webhook\"\nurl = \"http://{}/in\"\n",
        server.addr
    ));
    let d = run(&quick(), &n);
    assert_eq!(d.attempts, 1);
    assert!(
        d.error
            .as_deref()
            .unwrap()
            .contains("webhook answered 400 Bad Request"),
        "{d:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_server_that_never_answers_gives_up_in_bounded_time() {
    let silent = servers::silent();
    let n = notifier(&format!(
        "[notify.n]\nkind = \"webhook\"\nurl = \"http://{}/in\"\n",
        silent.addr
    ));
    let start = std::time::Instant::now();
    let d = run(&quick(), &n);
    assert_eq!(d.attempts, 3);
    assert!(d.error.is_some());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn secrets_stay_out_of_show_config() {
    let loaded = vigie_config::load_str(
        "[notify.n]\nkind = \"telegram\"\nbot_token = { env = \"TOKEN\" }\nchat_id = \"1\"\n",
        Path::new("n.toml"),
        &env,
    )
    .unwrap();
    let shown = vigie_config::to_toml(&loaded.config).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("[notify.n]") && shown.contains("env = \"TOKEN\""),
        "{shown}"
    );
    assert!(!format!("{:?}", loaded.config.notifiers).contains("s3cret"));
}

#[test]
fn errors_never_show_a_secret_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    HOOK.with(|h| *h.borrow_mut() = format!("http://{closed}/hook/T000/B000/SECRETPART"));
    let n = notifier("[notify.n]\nkind = \"slack\"\nurl = { env = \"HOOK\" }\n");
    let d = run(&quick(), &n);
    let err = d.error.unwrap();
    assert!(!err.contains("SECRETPART"), "{err}");
    assert!(
        err.contains("Connection refused") || err.contains("connect"),
        "{err}"
    );
    let n = notifier(&format!(
        "[notify.n]\nkind = \"telegram\"\nbot_token = {{ env = \"TOKEN\" }}\nchat_id = \"1\"\nendpoint = \"http://{closed}\"\n"
    ));
    let err = run(&quick(), &n).error.unwrap();
    assert!(!err.contains("s3cret-token"), "{err}");
}

/// `ca.pem` in a directory of this process under the temp directory,
/// named after `test`: where a mail server's CA goes.
fn ca_pem(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ca.pem")
}

/// An smtp notifier to `server` on localhost; `rest` is the rest of its
/// table.
fn smtp_notifier(server: &servers::Running, rest: &str) -> Notifier {
    notifier(&format!(
        "[notify.n]\nkind = \"smtp\"\nhost = \"localhost\"\nport = {}\n{rest}",
        server.addr.port()
    ))
}

type Mails = std::sync::Arc<std::sync::Mutex<Vec<servers::Mail>>>;

/// A mail server that `start` runs with a CA of its own (named after
/// `test`), and an smtp notifier to it that trusts that CA; `rest` is the
/// rest of its table. The server runs as long as the first value lives.
fn trusted_smtp(
    test: &str,
    start: fn(&Path) -> (servers::Running, Mails),
    rest: &str,
) -> (servers::Running, Mails, Notifier) {
    let ca = ca_pem(test);
    let (server, mails) = start(&ca);
    let n = smtp_notifier(&server, &format!("{rest}ca = \"{}\"\n", ca.display()));
    (server, mails, n)
}

#[test]
fn smtp_sends_mail_over_starttls_with_auth() {
    let (_server, mails, n) = trusted_smtp(
        "vigie-smtp",
        servers::smtp,
        "username = \"alerts\"\npassword = { env = \"TOKEN\" }\nfrom = \"vigie <alerts@example.org>\"\nto = [\"me@example.org\", \"ops@example.org\"]\n",
    );
    let d = run(&quick(), &n);
    assert_eq!(d.error, None);
    let mails = mails.lock().unwrap();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(m.tls, "STARTTLS before anything else");
    assert_eq!(m.auth, Some(("alerts".into(), "s3cret-token".into())));
    assert_eq!(m.from, "alerts@example.org");
    assert_eq!(m.to, ["me@example.org", "ops@example.org"]);
    assert!(
        m.data.contains("Subject: =?utf-8?b?")
            || m.data.contains("Subject: [HIGH] blog is failing"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains("status 503, expected below 400"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains("From: vigie <alerts@example.org>"),
        "{}",
        m.data
    );
}

#[test]
fn smtp_refuses_an_untrusted_certificate() {
    let (server, mails) = servers::smtp(&ca_pem("vigie-smtp-untrusted"));
    let n = smtp_notifier(
        &server,
        "from = \"alerts@example.org\"\nto = [\"me@example.org\"]\n",
    );
    let d = run(&quick(), &n);
    let err = d.error.unwrap();
    assert!(err.contains("smtp:"), "{err}");
    assert!(mails.lock().unwrap().is_empty());
}

#[test]
fn smtp_with_implicit_tls() {
    let (_server, mails, n) = trusted_smtp(
        "vigie-smtps",
        servers::smtps,
        "security = \"tls\"\nfrom = \"alerts@example.org\"\nto = [\"me@example.org\"]\n",
    );
    assert_eq!(run(&quick(), &n).error, None);
    let mails = mails.lock().unwrap();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(mails[0].auth, None);
}

#[test]
fn a_redirect_to_another_host_does_not_carry_the_keys_there() {
    let (elsewhere, seen_elsewhere) = servers::capture(&[200]);
    let target = format!("http://{}/stolen", elsewhere.addr);
    let (hook, seen) = servers::scripted(std::sync::Arc::new(move |req: &Captured| {
        match req.target.as_str() {
            "/in" => (307, target.clone()),
            "/moved" => (308, "/final".to_owned()),
            _ => (200, "{}".to_owned()),
        }
    }));
    let webhook = |path: &str| {
        notifier(&format!(
            "[notify.n]\nkind = \"webhook\"\nurl = \"http://{}{path}\"\nheaders = {{ x-api-key = \"k3y\" }}\n",
            hook.addr
        ))
    };
    let d = run(&quick(), &webhook("/in"));
    assert!(
        d.error.as_deref().unwrap().contains("307")
            && d.error.as_deref().unwrap().contains("not followed"),
        "{d:?}"
    );
    assert_eq!(d.attempts, 1, "a refused redirect is not retried");
    assert!(
        seen_elsewhere.lock().unwrap().is_empty(),
        "the key went to another host"
    );
    // On the same host, a redirect is followed with its headers.
    let d = run(&quick(), &webhook("/moved"));
    assert_eq!(d.error, None);
    let seen = seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.target.as_str(), last.header("x-api-key")),
        ("/final", Some("k3y"))
    );
}
