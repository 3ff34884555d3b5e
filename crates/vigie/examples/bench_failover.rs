//! `bench/failover`: over N trials, the time from an outage of the
//! primary's web server to the authoritative Knot serving the backup
//! address, with two watchers (quorum 2, `fail_after = 3`) in network
//! namespaces, beside the seed script's design (cron every 10 minutes,
//! then ten tries 5 s apart). Two outages: the web server killed (a
//! connection is refused at once) and the primary blackholed (packets
//! to its port dropped: a connection hangs until the check's timeout),
//! each with and without `retry_every`. Not a test: it prints a table.
//!
//! Run it through `bench/failover` (root, knot, iproute2, nftables).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use vigie_failover::{RecordSpec, query_addresses};
use vigie_testkit::cluster::{Cluster, Settings, cluster};
use vigie_testkit::wait_until;

fn served(rt: &tokio::runtime::Runtime, dns: SocketAddr) -> Vec<IpAddr> {
    let spec = RecordSpec {
        zone: "example.org".into(),
        name: "blog".into(),
        ipv6: false,
        ttl: 60,
    };
    rt.block_on(query_addresses(dns, &spec, Duration::from_secs(1)))
        .unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// The web server killed: connections refused.
    Kill,
    /// Packets to the web port dropped: connections hang.
    Blackhole,
}

/// One row of the table: an outage and how the watchers check.
struct Scenario {
    outage: Outage,
    every: &'static str,
    timeout: &'static str,
    retry_every: Option<&'static str>,
}

impl Scenario {
    fn describe(&self) -> String {
        let outage = match self.outage {
            Outage::Kill => "web server killed",
            Outage::Blackhole => "primary blackholed",
        };
        let retry = self
            .retry_every
            .map(|r| format!(", retry_every {r}"))
            .unwrap_or_default();
        format!(
            "| {outage} | every {}, timeout {}, fail_after 3{retry}",
            self.every, self.timeout
        )
    }
}

/// `trials` outages on `c`, each undone before the next; the seconds
/// until Knot served the backup.
fn trials(rt: &tokio::runtime::Runtime, c: &mut Cluster, s: &Scenario, trials: usize) -> Vec<f64> {
    let dns = c.dns();
    let (prim, back) = (c.lab.ip("prim"), c.lab.ip("back"));
    let mut times = Vec::new();
    for trial in 1..=trials {
        assert_eq!(
            served(rt, dns),
            [prim],
            "trial {trial} starts on the primary"
        );
        let t0 = Instant::now();
        match s.outage {
            Outage::Kill => c.kill_web(),
            Outage::Blackhole => c.blackhole_web(),
        }
        while served(rt, dns) != [back] {
            assert!(
                t0.elapsed() < Duration::from_mins(2),
                "no failover in 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = t0.elapsed();
        eprintln!(
            "{}: trial {trial}: {:.2} s",
            s.describe(),
            took.as_secs_f64()
        );
        times.push(took.as_secs_f64());
        // Back to the start: the primary up, seen up by both, the record
        // switched back by hand.
        match s.outage {
            Outage::Kill => c.start_web(),
            Outage::Blackhole => c.lab.heal(),
        }
        for i in 0..2 {
            wait_until(Duration::from_mins(1), || c.verdict(i) == "up");
        }
        let r = c.watchers[0]
            .env
            .run(&["failover", "switch", "blog", "--to", "primary"]);
        assert_eq!(r.code, 0, "{r:?}");
        // Let the incidents close before the next outage.
        std::thread::sleep(Duration::from_secs(3));
    }
    times.sort_by(f64::total_cmp);
    times
}

fn main() {
    let bin = std::env::args()
        .nth(1)
        .expect("usage: bench_failover PATH/TO/vigie [TRIALS]");
    let trials_n: usize = std::env::args()
        .nth(2)
        .map_or(10, |n| n.parse().expect("TRIALS is a number"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scenarios = [
        Scenario {
            outage: Outage::Kill,
            every: "2s",
            timeout: "1s",
            retry_every: None,
        },
        Scenario {
            outage: Outage::Kill,
            every: "2s",
            timeout: "1s",
            retry_every: Some("1s"),
        },
        Scenario {
            outage: Outage::Blackhole,
            every: "2s",
            timeout: "2s",
            retry_every: None,
        },
        Scenario {
            outage: Outage::Blackhole,
            every: "2s",
            timeout: "2s",
            retry_every: Some("1s"),
        },
        Scenario {
            outage: Outage::Blackhole,
            every: "2s",
            timeout: "1s",
            retry_every: Some("1s"),
        },
    ];
    let start = |s: &Scenario| {
        cluster(
            &bin,
            &Settings {
                quorum: 2,
                every: s.every,
                fail_after: 3,
                timeout: s.timeout,
                retry_every: s.retry_every,
                failback: "\"manual\"",
                cooldown: None,
                // Each trial moves the record twice (there and back by
                // hand): past the default daily budget of 12 by the seventh.
                max_changes_per_day: Some(1000),
            },
        )
    };
    let mut rows = Vec::new();
    for s in &scenarios[1..] {
        let mut c = start(s);
        rows.push((s, trials(&rt, &mut c, s, trials_n)));
    }
    // The first scenario's cluster also counts false failovers.
    let mut c = start(&scenarios[0]);
    rows.insert(
        0,
        (&scenarios[0], trials(&rt, &mut c, &scenarios[0], trials_n)),
    );
    let dns = c.dns();
    let prim = c.lab.ip("prim");
    // False failovers: the record must stay on the primary while one
    // watcher's link loses 30 % of its packets, then while it is cut off.
    let phase = |secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut moved = 0;
        let mut was_primary = true;
        while Instant::now() < end {
            let primary = served(&rt, dns) == [prim];
            if was_primary && !primary {
                moved += 1;
            }
            was_primary = primary;
            std::thread::sleep(Duration::from_millis(250));
        }
        moved
    };
    let loss_secs = 60;
    c.lab.loss("w1", 30);
    let loss_false = phase(loss_secs);
    c.lab.heal();
    let isolation_secs = 30;
    c.lab.isolate("w1");
    let isolation_false = phase(isolation_secs);
    let abstained = c.verdict(0) == "abstain";
    c.lab.heal();
    // The seed script: cron every 10 min (the outage starts anywhere in
    // the interval: 5 min on average, 10 at worst), then ten HTTP tries
    // 5 s apart before it decides.
    let script_p50 = 300.0 + 50.0;
    let script_max = 600.0 + 50.0;
    println!(
        "\noutage of the primary → authoritative Knot serves the backup (2 watchers, quorum 2, votes over HTTPS; {trials_n} trials each)\n"
    );
    println!("| outage | how the watchers check | p50 s | max s |");
    println!("|---|---|---:|---:|");
    for (s, times) in &rows {
        let p50 = times[times.len() / 2];
        let max = times[times.len() - 1];
        println!("{} | {p50:.1} | {max:.1} |", s.describe());
    }
    println!(
        "| web server killed | seed script (design, not run): cron 10 min + 10 × 5 s | {script_p50:.0} | {script_max:.0} |"
    );
    println!("\nfalse failovers (record moved off the primary while it was up)\n");
    println!("| scenario | duration s | false failovers |");
    println!("|---|---:|---:|");
    println!("| 30 % packet loss on w1's link | {loss_secs} | {loss_false} |");
    println!(
        "| w1 cut off ({}) | {isolation_secs} | {isolation_false} |",
        if abstained {
            "it abstained"
        } else {
            "it did NOT abstain"
        }
    );
}
