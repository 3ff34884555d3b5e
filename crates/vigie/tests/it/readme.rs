//! The README's walkthrough ("Five minutes with vigie"), run as written:
//! its shell blocks in order in one bash, its `toml NAME` blocks written
//! to NAME, in a network, PID and mount namespace of its own (its fixed
//! ports 8080, 5353 and 9470 are its own, and whatever it leaves running
//! dies with it). The one change: ntfy.sh is a local stand-in, which
//! records what the phone would receive.

use std::path::Path;
use std::process::Command;

use vigie_testkit::{Need, require};

use crate::util::bin;

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
const HEADING: &str = "## Five minutes with vigie";
const NTFY: &str = "https://ntfy.sh/";
const STAND_IN: &str = "http://127.0.0.1:8090/";

/// ntfy as the phone sees it: each POST's path (topic, title, tags) and
/// body, one line each, in `ntfy.log`.
const NTFY_STAND_IN: &str = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        with open('ntfy.log', 'ab') as f:
            f.write(self.path.encode() + b' ' + body.replace(b'\n', b' ') + b'\n')
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')
    def log_message(self, *a):
        pass
http.server.HTTPServer(('127.0.0.1', 8090), H).serve_forever()
"#;

/// A fenced block of the walkthrough: its info string and its text.
fn blocks(section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((info.trim().to_owned(), body));
    }
    out
}

/// The walkthrough as one bash script.
fn script(runtime_dir: &Path) -> String {
    let start = README
        .find(HEADING)
        .expect("the README has its walkthrough");
    let rest = &README[start + HEADING.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    assert_eq!(
        section.matches(NTFY).count(),
        1,
        "the walkthrough pages through ntfy.sh once; this test stands in for it"
    );
    let bin_dir = Path::new(bin()).parent().unwrap().to_owned();
    let mut s = format!(
        "set -euo pipefail\nip link set lo up\nexport PATH='{}':\"$PATH\"\nexport VIGIE_RUNTIME_DIR='{}'\n\
         (python3 stand-in.py >/dev/null 2>&1 &)\n\
         until python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8090), 1)\" 2>/dev/null; do sleep 0.1; done\n",
        bin_dir.display(),
        runtime_dir.display()
    );
    let mut files = 0;
    for (info, body) in blocks(section) {
        let body = body.replace(NTFY, STAND_IN);
        match info.split_whitespace().collect::<Vec<_>>()[..] {
            ["sh"] => s.push_str(&body),
            ["toml", name] => {
                files += 1;
                s.push_str(&format!(
                    "cat > '{name}' <<'VIGIE_README_EOF'\n{body}VIGIE_README_EOF\n"
                ));
            }
            _ => panic!("a block of the walkthrough neither runs nor is a file: ```{info}"),
        }
    }
    assert_eq!(files, 1, "the walkthrough writes its configuration");
    s
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    require!(Need::Root, Need::Knot, Need::Python3);
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let work = dir.path().join("walkthrough");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("stand-in.py"), NTFY_STAND_IN).unwrap();
    std::fs::write(work.join("walkthrough.sh"), script(&runtime)).unwrap();
    let out = Command::new("timeout")
        .args(["120", "unshare", "--net", "--pid", "--fork", "--mount"])
        .args(["--mount-proc", "--kill-child", "bash", "walkthrough.sh"])
        .current_dir(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let read = |name: &str| std::fs::read_to_string(work.join(name)).unwrap_or_default();
    let phone = read("ntfy.log");
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}\nvigie.log:\n{}\nphone:\n{phone}",
        String::from_utf8_lossy(&out.stderr),
        read("vigie.log")
    );
    assert!(out.status.success(), "the walkthrough failed\n{context}");

    // Each step did what the README says it does.
    assert!(stdout.contains("configuration ok"), "{context}");
    assert!(
        stdout.contains("switch and back in"),
        "the drill\n{context}"
    );
    assert!(stdout.contains("resolved (repaired)"), "{context}");
    assert!(stdout.contains("www → primary"), "the failback\n{context}");
    let pages: Vec<&str> = phone.lines().collect();
    assert!(
        pages
            .first()
            .is_some_and(|p| p.contains("vigie+test+message")),
        "the test message arrives first\n{context}"
    );
    let failing = pages
        .iter()
        .find(|p| p.contains("site+is+failing"))
        .unwrap_or_else(|| panic!("no page for the failing site\n{context}"));
    assert!(
        failing.contains("repair restart-site ran (exit 0) but site still failed"),
        "the page names the repair that did not work\n{context}"
    );
    assert!(
        !pages.iter().any(|p| p.contains("Connection refused")),
        "the repaired outage paged nobody\n{context}"
    );
    assert!(
        pages.iter().any(|p| p.contains("recovered")),
        "the recovery is announced\n{context}"
    );
}
