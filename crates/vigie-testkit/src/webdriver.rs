//! Headless Chromium driven through Debian's chromedriver, over the
//! W3C WebDriver protocol (JSON over HTTP on loopback): what the
//! dashboard tests do as a user does — open a page, type into a field,
//! click, read the page and the browser's cookies. Tests
//! `require!(Need::Chromedriver)` first.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One request to chromedriver: (status, body). Its answer is read to
/// its `Content-Length` (chromedriver keeps the connection open).
fn exchange(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_mins(1)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body).expect("send");
    let mut r = BufReader::new(s);
    let mut status = 0;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read chromedriver's answer") == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status == 0 {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
        } else if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).expect("read chromedriver's answer");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The key of an element reference in WebDriver's answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session, ended (and its driver killed) on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Start chromedriver on a free loopback port and a headless
    /// Chromium session whose profile lives in `profile`.
    pub fn start(profile: &Path) -> Browser {
        Browser::start_with(profile, &[])
    }

    /// [`Browser::start`], with the accessibility tree built as when a
    /// screen reader runs (what [`Browser::role`] reads, whole).
    pub fn start_accessible(profile: &Path) -> Browser {
        Browser::start_with(profile, &["--force-renderer-accessibility"])
    }

    fn start_with(profile: &Path, extra: &[&str]) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
            },
        }}});
        let v = b.call("POST", "/session", &caps);
        v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .clone_into(&mut b.session);
        b
    }

    /// A WebDriver command; its `value`, or a panic with the error.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, text) = exchange(self.addr, method, path, &body);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {status} {e}: {text}"));
        assert_eq!(status, 200, "chromedriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Open `url` and wait for it to load.
    pub fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), &json!({ "url": url }));
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.at("/element"),
            &json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// Type `text` into the field `css` selects.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/value")),
            &json!({ "text": text }),
        );
    }

    /// Click what `css` selects (a navigation it starts is waited for).
    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &self.at(&format!("/element/{e}/click")), &json!({}));
    }

    /// The current page's DOM as HTML.
    pub fn source(&self) -> String {
        self.call("GET", &self.at("/source"), &Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The current page's URL.
    pub fn url(&self) -> String {
        self.call("GET", &self.at("/url"), &Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The browser's cookie `name` for the current page, as WebDriver
    /// describes it (`value`, `httpOnly`, `sameSite`, …).
    pub fn cookie(&self, name: &str) -> Option<Value> {
        let all = self.call("GET", &self.at("/cookie"), &Value::Null);
        all.as_array()?.iter().find(|c| c["name"] == name).cloned()
    }

    /// Press Enter on the focused element (a link is followed).
    pub fn enter(&self) {
        self.call(
            "POST",
            &self.at("/actions"),
            &json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": "\u{E007}"},
                {"type": "keyUp", "value": "\u{E007}"},
            ]}]}),
        );
    }

    /// The role and the accessible name of what `css` selects, as
    /// assistive technologies get them.
    pub fn role(&self, css: &str) -> (String, String) {
        let e = self.element(css);
        let get = |what: &str| {
            self.call(
                "GET",
                &self.at(&format!("/element/{e}/{what}")),
                &Value::Null,
            )
            .as_str()
            .unwrap_or_default()
            .to_owned()
        };
        (get("computedrole"), get("computedlabel"))
    }

    /// Give the focus to what `css` selects, as a click would.
    pub fn focus(&self, css: &str) {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            &json!({"script": "document.querySelector(arguments[0]).focus();", "args": [css]}),
        );
    }

    /// Press Tab `n` times (keyboard navigation), then say which element
    /// has the focus: its tag, id and text.
    pub fn tab_to(&self, n: usize) -> Value {
        let keys: Vec<Value> = (0..n)
            .flat_map(|_| {
                [
                    json!({"type": "keyDown", "value": "\u{E004}"}),
                    json!({"type": "keyUp", "value": "\u{E004}"}),
                ]
            })
            .collect();
        self.call(
            "POST",
            &self.at("/actions"),
            &json!({"actions": [{"type": "key", "id": "keyboard", "actions": keys}]}),
        );
        self.call(
            "POST",
            &self.at("/execute/sync"),
            &json!({"script": "var e = document.activeElement; return {tag: e.tagName, id: e.id, text: e.textContent};", "args": []}),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = exchange(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                b"",
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
