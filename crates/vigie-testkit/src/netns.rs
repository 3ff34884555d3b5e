//! A small network made of namespaces, for tests of what crosses a
//! network: one namespace per host, each with a veth into a bridge that
//! lives in a "switch" namespace of its own, and one veth from the test's
//! own namespace (the harness) into the bridge, so the test can reach
//! every host. Packet loss and isolation are nftables rules on the
//! bridge ports, in the switch namespace: the hosts' own kernels never
//! see them (no `tc netem` on this kernel; drops in the sender's own
//! namespace would fail with EPERM instead of silently).
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, for benchmarking), one
//! /24 per lab. Everything is deleted on drop. Needs root, iproute2 and
//! nftables: a test says `require!(Need::Netns)` first (`need.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Lab {
    prefix: String,
    subnet: u8,
    hosts: Vec<String>,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// Hosts named `hosts` (short names: they name bridge ports).
    pub fn new(hosts: &[&str]) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n % 10;
        let subnet = u8::try_from((std::process::id() + n * 37) % 200 + 20).expect("fits");
        let lab = Lab {
            prefix: format!("vg{id}"),
            subnet,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        };
        let sw = lab.switch();
        sh(&["ip", "netns", "add", &sw]);
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &sw, "link", "set", "dev", "br0", "up"]);
        for (i, h) in hosts.iter().enumerate() {
            let ns = lab.ns(h);
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "-n", &ns, "link", "set", "dev", "lo", "up"]);
            sh(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", h,
                "netns", &sw,
            ]);
            sh(&["ip", "-n", &sw, "link", "set", "dev", h, "master", "br0"]);
            sh(&["ip", "-n", &sw, "link", "set", "dev", h, "up"]);
            let addr = format!("{}/24", lab.host_ip(i));
            sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            sh(&["ip", "-n", &ns, "link", "set", "dev", "eth0", "up"]);
        }
        // The harness: this namespace's way in.
        let outside = format!("{}h", lab.prefix);
        sh(&[
            "ip", "link", "add", &outside, "type", "veth", "peer", "name", "harness", "netns", &sw,
        ]);
        sh(&[
            "ip", "-n", &sw, "link", "set", "dev", "harness", "master", "br0",
        ]);
        sh(&["ip", "-n", &sw, "link", "set", "dev", "harness", "up"]);
        let addr = format!("{}/24", lab.harness_ip());
        sh(&["ip", "addr", "add", &addr, "dev", &outside]);
        sh(&["ip", "link", "set", "dev", &outside, "up"]);
        sh(&[
            "ip", "netns", "exec", &sw, "nft", "add", "table", "bridge", "lab",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &sw,
            "nft",
            "add",
            "chain",
            "bridge",
            "lab",
            "ports",
            "{ type filter hook forward priority 0; policy accept; }",
        ]);
        lab
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The namespace of host `h`.
    pub fn ns(&self, h: &str) -> String {
        format!("{}{h}", self.prefix)
    }

    fn host_ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            198,
            18,
            self.subnet,
            10 + u8::try_from(i).expect("few hosts"),
        ))
    }

    /// The address of host `h`.
    pub fn ip(&self, h: &str) -> IpAddr {
        let i = self
            .hosts
            .iter()
            .position(|x| x == h)
            .unwrap_or_else(|| panic!("no host {h}"));
        self.host_ip(i)
    }

    /// The test's own address on the lab network.
    pub fn harness_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, self.subnet, 254))
    }

    /// A command run inside host `h`.
    pub fn cmd(&self, h: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(h), program]);
        c
    }

    fn nft(&self, rule: &str) {
        let sw = self.switch();
        let mut args = vec![
            "ip", "netns", "exec", &sw, "nft", "add", "rule", "bridge", "lab", "ports",
        ];
        args.extend(rule.split(' '));
        sh(&args);
    }

    /// Drop `percent` % of the packets to and from host `h`, at random.
    pub fn loss(&self, h: &str, percent: u8) {
        self.nft(&format!(
            "iifname {h} numgen random mod 100 < {percent} drop"
        ));
        self.nft(&format!(
            "oifname {h} numgen random mod 100 < {percent} drop"
        ));
    }

    /// Cut host `h` off from everything.
    pub fn isolate(&self, h: &str) {
        self.nft(&format!("iifname {h} drop"));
        self.nft(&format!("oifname {h} drop"));
    }

    /// Drop every TCP packet toward `port` of host `h`: a connection
    /// there hangs until its timeout, as to a host gone dark.
    pub fn blackhole(&self, h: &str, port: u16) {
        self.nft(&format!("oifname {h} tcp dport {port} drop"));
    }

    /// Remove every loss, isolation and blackhole rule.
    pub fn heal(&self) {
        let sw = self.switch();
        sh(&[
            "ip", "netns", "exec", &sw, "nft", "flush", "chain", "bridge", "lab", "ports",
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and so their peers.
        for h in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(h)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .output();
    }
}
