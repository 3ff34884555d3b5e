//! HTML built by hand: every string from outside (check names, messages,
//! notes, a command's output) goes through [`esc`]; the page frame is
//! [`page`].

use std::fmt::Write as _;

/// `s` escaped for HTML text and for a double-quoted attribute.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` for a path segment of a link (`/checks/NAME`).
pub(crate) fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Which part of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Checks,
    Incidents,
    Host,
    Sync,
    Failover,
    Backups,
    Fleet,
}

/// What every page's header shows besides the navigation: the node, and
/// who is logged in (HTML, with its logout form) or the way to log in.
pub(crate) struct Frame {
    pub node: String,
    pub account: String,
}

/// A whole page: `title` (escaped here), the frame, and `body` (already
/// HTML).
pub(crate) fn page(title: &str, frame: &Frame, nav: Nav, body: &str) -> String {
    let current = |n: Nav| {
        if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · vigie on {node}</title>\
         <link rel=\"stylesheet\" href=\"/ui/style.css\">\
         <script src=\"/ui/live.js\" defer></script></head>\n\
         <body><header><a class=\"brand\" href=\"/\">vigie</a> <span class=\"node\">{node}</span>\
         <nav aria-label=\"main\"><a href=\"/\"{c}>Checks</a> <a href=\"/incidents\"{i}>Incidents</a> \
         <a href=\"/host\"{h}>Host</a> <a href=\"/sync\"{s}>Replication</a> <a href=\"/failover\"{fo}>Failover</a> \
         <a href=\"/backups\"{b}>Backups</a> <a href=\"/ui/fleet\"{f}>Fleet</a></nav>\
         <div class=\"account\">{account}</div></header>\n\
         <main>\n{body}</main></body></html>\n",
        title = esc(title),
        node = esc(&frame.node),
        account = frame.account,
        c = current(Nav::Checks),
        i = current(Nav::Incidents),
        h = current(Nav::Host),
        s = current(Nav::Sync),
        fo = current(Nav::Failover),
        b = current(Nav::Backups),
        f = current(Nav::Fleet),
    )
}

/// A timestamp as `2026-12-01 14:19:01 UTC`.
pub(crate) fn when(t: vigie_core::Timestamp) -> String {
    jiff::Timestamp::from_millisecond(t.0).map_or_else(
        |_| "?".to_owned(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A size in bytes as people read it: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A duration in milliseconds as people read it: `850 ms`, `12.3 s`,
/// `4m 05s`, `2h 10m`.
pub(crate) fn span_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// How long ago `t` was, as of `now`: `3s`, `12m`, `5h`, `2d`.
pub(crate) fn ago(t: vigie_core::Timestamp, now: vigie_core::Timestamp) -> String {
    let s = t.age(now).as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url_segment("web a/b?é"), "web%20a%2Fb%3F%C3%A9");
    }

    #[test]
    fn times_read_as_people_write_them() {
        let t = vigie_core::Timestamp(1_764_597_541_000);
        assert_eq!(when(t), "2025-12-01 13:59:01 UTC");
        assert_eq!(ago(t, vigie_core::Timestamp(t.0 + 59_000)), "59s");
        assert_eq!(ago(t, vigie_core::Timestamp(t.0 + 7_200_000)), "2h");
        assert_eq!(ago(t, vigie_core::Timestamp(t.0 - 5)), "0s");
        assert_eq!(span_ms(850), "850 ms");
        assert_eq!(span_ms(12_340), "12.3 s");
        assert_eq!(span_ms(245_000), "4m 05s");
        assert_eq!(span_ms(7_800_000), "2h 10m");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
