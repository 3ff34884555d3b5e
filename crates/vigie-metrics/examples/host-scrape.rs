//! `bench/host-metrics`' side of vigie: one `HostCollector` kept for the
//! process's life, as the daemon keeps one; each line read on stdin is a
//! scrape (collect, then render the text exposition), answered on stdout
//! by the page's size in bytes and its number of series.

use std::io::{BufRead, Write};

use vigie_metrics::{Exposition, HostCollector};

fn main() {
    let mut collector = HostCollector::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
        let samples = collector.collect();
        let mut e = Exposition::new();
        e.samples(&samples);
        let page = e.finish();
        if writeln!(stdout, "{} {}", page.len(), samples.len())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
