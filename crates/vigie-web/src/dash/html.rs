//! HTML built by hand: every string from outside (check names, messages,
//! notes, a command's output) goes through [`esc`]; the page frame is
//! [`page`].

use std::fmt::Write as _;

/// `s` escaped for HTML text and for a double-quoted attribute.
pub(crate) fn esc(s: &str) -> String {
    Esc(s).to_string()
}

/// `s` escaped as [`esc`] does, written where it is formatted: a page
/// of a thousand rows allocates nothing per string.
pub(crate) struct Esc<'a>(pub &'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let entity = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&s[plain..i])?;
            f.write_str(entity)?;
            plain = i + 1;
        }
        f.write_str(&s[plain..])
    }
}

/// `s` for a path segment of a link (`/checks/NAME`).
pub(crate) fn url_segment(s: &str) -> String {
    UrlSegment(s).to_string()
}

/// `s` as [`url_segment`] writes it, without allocating.
pub(crate) struct UrlSegment<'a>(pub &'a str);

impl std::fmt::Display for UrlSegment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                continue;
            }
            // A run of unreserved bytes is ASCII: its ends are char
            // boundaries (a multibyte char's bytes are escaped one by one).
            if plain < i {
                f.write_str(&s[plain..i])?;
            }
            write!(f, "%{b:02X}")?;
            plain = i + 1;
        }
        f.write_str(&s[plain..])
    }
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
    let mut out = String::with_capacity(body.len() + 1024 + frame.account.len());
    page_head(&mut out, title, frame, nav);
    out.push_str(body);
    out.push_str(PAGE_END);
    out
}

/// What closes a page whose start [`page_head`] wrote.
pub(crate) const PAGE_END: &str = "</main></body></html>\n";

/// A page up to its `<main>`: a page that writes its body itself, into
/// the same buffer, then pushes [`PAGE_END`].
pub(crate) fn page_head(out: &mut String, title: &str, frame: &Frame, nav: Nav) {
    let current = |n: Nav| {
        if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    let _ = write!(
        out,
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
         <main>\n",
        title = Esc(title),
        node = Esc(&frame.node),
        account = frame.account,
        c = current(Nav::Checks),
        i = current(Nav::Incidents),
        h = current(Nav::Host),
        s = current(Nav::Sync),
        fo = current(Nav::Failover),
        b = current(Nav::Backups),
        f = current(Nav::Fleet),
    );
}

/// A timestamp as `2026-12-01 14:19:01 UTC`.
pub(crate) fn when(t: vigie_core::Timestamp) -> String {
    When(t).to_string()
}

/// A timestamp as [`when`] writes it, without allocating.
pub(crate) struct When(pub vigie_core::Timestamp);

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0.0) {
            Ok(t) => write!(f, "{}", t.strftime("%Y-%m-%d %H:%M:%S UTC")),
            Err(_) => f.write_str("?"),
        }
    }
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
    Ago(t, now).to_string()
}

/// How long ago as [`ago`] writes it, without allocating.
pub(crate) struct Ago(pub vigie_core::Timestamp, pub vigie_core::Timestamp);

impl std::fmt::Display for Ago {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.age(self.1).as_secs();
        match s {
            0..60 => write!(f, "{s}s"),
            60..3600 => write!(f, "{}m", s / 60),
            3600..86_400 => write!(f, "{}h", s / 3600),
            _ => write!(f, "{}d", s / 86_400),
        }
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
