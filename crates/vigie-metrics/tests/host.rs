//! The host collectors on this machine, against tools that read the same
//! facts their own way (`getconf`, `free`, `df`, `uptime`, `ps`,
//! `/sys/class/net`), and their exposition read back as Prometheus reads
//! it: by a parser of the text format here, and by `promtool`.

// Values compared are whole numbers, exact in f64.
#![allow(clippy::float_cmp)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use vigie_metrics::{Exposition, HostCollector, Kind, Sample};
use vigie_testkit::need::Need;
use vigie_testkit::require;

/// `program args`'s stdout; the test fails when it does not run.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}

/// `a` and `b` within `abs` or `rel` of each other.
fn close(a: f64, b: f64, abs: f64, rel: f64) -> bool {
    (a - b).abs() <= abs.max(rel * a.abs().max(b.abs()))
}

fn collect() -> Vec<Sample> {
    let mut c = HostCollector::new();
    let samples = c.collect();
    let failing: Vec<_> = c.failing().collect();
    assert!(failing.is_empty(), "collectors failed: {failing:?}");
    samples
}

#[test]
fn every_collector_succeeds_here() {
    let samples = collect();
    for s in samples
        .iter()
        .filter(|s| s.name == "node_scrape_collector_success")
    {
        assert_eq!(s.value, 1.0, "{s:?}");
    }
    let collectors: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "node_scrape_collector_success")
        .filter_map(|s| s.label("collector"))
        .collect();
    assert_eq!(collectors.len(), 12, "{collectors:?}");
}

#[test]
fn cpus_are_the_online_ones() {
    let samples = collect();
    let cpus: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "node_cpu_seconds_total" && s.label("mode") == Some("idle"))
        .filter_map(|s| s.label("cpu"))
        .collect();
    let online: usize = run("getconf", &["_NPROCESSORS_ONLN"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(cpus.len(), online);
    // nproc: the CPUs this process may use, at most those online.
    let usable: usize = run("nproc", &[]).trim().parse().unwrap();
    assert!(usable <= cpus.len());
    let boot = value(&samples, "node_boot_time_seconds", &[]).unwrap();
    let since = run("uptime", &["-s"]);
    let boot_by_uptime: f64 = run("date", &["-d", since.trim(), "+%s"])
        .trim()
        .parse()
        .unwrap();
    // uptime reads /proc/uptime, to the second; btime is rounded.
    assert!(
        close(boot, boot_by_uptime, 2.0, 0.0),
        "{boot} vs {boot_by_uptime}"
    );
}

#[test]
fn memory_is_what_free_says() {
    let samples = collect();
    let free = run("free", &["-b"]);
    let row = |name: &str| -> Vec<f64> {
        free.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect()
    };
    let mem = row("Mem:");
    let swap = row("Swap:");
    let v = |n| value(&samples, n, &[]).unwrap();
    assert_eq!(v("node_memory_MemTotal_bytes"), mem[0]);
    assert_eq!(v("node_memory_SwapTotal_bytes"), swap[0]);
    // Available memory moves between two reads: within 5 % or 64 MiB.
    assert!(
        close(
            v("node_memory_MemAvailable_bytes"),
            mem[5],
            64.0 * 1024.0 * 1024.0,
            0.05
        ),
        "{} vs {}",
        v("node_memory_MemAvailable_bytes"),
        mem[5]
    );
    assert!(close(
        v("node_memory_SwapFree_bytes"),
        swap[2],
        64.0 * 1024.0 * 1024.0,
        0.05
    ));
}

#[test]
fn filesystems_are_what_df_says() {
    let samples = collect();
    let mounts: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "node_filesystem_size_bytes")
        .filter_map(|s| s.label("mountpoint"))
        .collect();
    assert!(!mounts.is_empty());
    for mount in mounts {
        let df = run(
            "df",
            &["-B1", "--output=size,avail,itotal,iavail,fstype", mount],
        );
        let row: Vec<&str> = df.lines().nth(1).unwrap().split_whitespace().collect();
        let n = |i: usize| row[i].parse::<f64>().unwrap();
        let l = [("mountpoint", mount)];
        let v = |name| value(&samples, name, &l).unwrap();
        assert_eq!(v("node_filesystem_size_bytes"), n(0), "{mount}");
        assert_eq!(v("node_filesystem_files"), n(2), "{mount}");
        // Other work on this machine writes meanwhile: within 2 % or 256 MiB.
        assert!(
            close(
                v("node_filesystem_avail_bytes"),
                n(1),
                256.0 * 1024.0 * 1024.0,
                0.02
            ),
            "{mount}: {} vs {}",
            v("node_filesystem_avail_bytes"),
            n(1)
        );
        assert!(
            close(v("node_filesystem_files_free"), n(3), 10_000.0, 0.02),
            "{mount}"
        );
        let fstype = samples
            .iter()
            .find(|s| {
                s.name == "node_filesystem_size_bytes" && s.label("mountpoint") == Some(mount)
            })
            .and_then(|s| s.label("fstype"))
            .unwrap();
        assert_eq!(fstype, row[4], "{mount}");
    }
}

#[test]
fn load_is_what_proc_loadavg_says() {
    let samples = collect();
    let loadavg = run("cat", &["/proc/loadavg"]);
    let loads: Vec<f64> = loadavg
        .split_whitespace()
        .take(3)
        .map(|f| f.parse().unwrap())
        .collect();
    // The kernel updates the averages every 5 s.
    for (name, theirs) in ["node_load1", "node_load5", "node_load15"]
        .iter()
        .zip(loads)
    {
        let ours = value(&samples, name, &[]).unwrap();
        assert!(close(ours, theirs, 0.5, 0.25), "{name}: {ours} vs {theirs}");
    }
}

#[test]
fn interfaces_are_the_kernels_and_counters_only_grow() {
    let samples = collect();
    let ours: BTreeSet<String> = samples
        .iter()
        .filter(|s| s.name == "node_network_receive_bytes_total")
        .filter_map(|s| s.label("device").map(str::to_owned))
        .collect();
    let theirs: BTreeSet<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains("lo"));
    // Read after ours: sysfs's counter is at least ours.
    let rx = value(
        &samples,
        "node_network_receive_bytes_total",
        &[("device", "lo")],
    )
    .unwrap();
    let later: f64 = run("cat", &["/sys/class/net/lo/statistics/rx_bytes"])
        .trim()
        .parse()
        .unwrap();
    assert!(rx <= later, "{rx} > {later}");
}

#[test]
fn disks_are_whole_devices_of_sys_block() {
    let samples = collect();
    let block: BTreeSet<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for s in samples.iter().filter(|s| s.name.starts_with("node_disk_")) {
        let device = s.label("device").unwrap();
        assert!(block.contains(device), "{device} is not in /sys/block");
        assert!(!device.starts_with("loop") && !device.starts_with("zram"));
    }
}

#[test]
fn processes_are_what_ps_counts() {
    let samples = collect();
    let pids = value(&samples, "node_processes_pids", &[]).unwrap();
    let threads = value(&samples, "node_processes_threads", &[]).unwrap();
    let ps = run("ps", &["-e", "--no-headers", "-o", "pid"])
        .lines()
        .count() as f64;
    let ps_threads = run("ps", &["-eL", "--no-headers", "-o", "lwp"])
        .lines()
        .count() as f64;
    // Builds come and go meanwhile: within 20 % or 30.
    assert!(close(pids, ps, 30.0, 0.2), "{pids} vs {ps}");
    assert!(
        close(threads, ps_threads, 30.0, 0.2),
        "{threads} vs {ps_threads}"
    );
    let states: f64 = samples
        .iter()
        .filter(|s| s.name == "node_processes_state")
        .map(|s| s.value)
        .sum();
    assert_eq!(states, pids);
}

/// The families of a text exposition, checked line by line as the text
/// format (0.0.4) says: HELP and TYPE once each, before the family's
/// samples; names and label names valid; label values escaped; no series
/// twice. Returns each family's type and samples.
fn parse_exposition(text: &str) -> BTreeMap<String, (String, Vec<(String, f64)>)> {
    fn valid_name(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    let mut families: BTreeMap<String, (String, Vec<(String, f64)>)> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut series = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "{at}");
            assert!(helped.insert(name.to_owned()), "HELP twice, {at}");
            assert!(
                !families.contains_key(name),
                "HELP after TYPE or samples, {at}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE without HELP first, {at}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{at}"
            );
            let old = families.insert(name.to_owned(), (kind.to_owned(), Vec::new()));
            assert!(old.is_none(), "TYPE twice, {at}");
            continue;
        }
        assert!(!line.starts_with('#'), "{at}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(valid_name(name), "{at}");
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                let eq = r.find('=').unwrap();
                let label = &r[..eq];
                assert!(valid_name(label) && !label.contains(':'), "{at}");
                r = r[eq + 1..].strip_prefix('"').expect("a quoted value");
                let mut value = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    let (j, c) = chars.next().expect("a closing quote");
                    match c {
                        '"' => break j,
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            other => panic!("escape \\{other}, {at}"),
                        },
                        '\n' => panic!("raw newline, {at}"),
                        c => value.push(c),
                    }
                };
                labels.push((label.to_owned(), value));
                r = &r[end + 1..];
                if let Some(more) = r.strip_prefix(',') {
                    r = more;
                } else {
                    rest = r.strip_prefix('}').expect("a closing brace");
                    break;
                }
            }
        }
        let value_text = rest.strip_prefix(' ').expect("a space before the value");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value, {at}")),
        };
        let names: Vec<&String> = labels.iter().map(|(k, _)| k).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "labels sorted, each once, {at}");
        assert!(
            series.insert(format!("{name}{labels:?}")),
            "series twice, {at}"
        );
        let family = families
            .get_mut(name)
            .unwrap_or_else(|| panic!("sample before its TYPE, {at}"));
        family.1.push((format!("{labels:?}"), value));
    }
    families
}

#[test]
fn the_exposition_reads_back() {
    let samples = collect();
    let mut e = Exposition::new();
    e.samples(&samples);
    // A label value with every character that needs escaping.
    e.samples(&[Sample::labelled(
        "node_filesystem_readonly",
        Kind::Gauge,
        "Filesystem read-only status.",
        vec![
            ("mountpoint", "/mnt/a \"b\"\\c\nd".to_owned()),
            ("device", "x".to_owned()),
        ],
        0.0,
    )]);
    let text = e.finish();
    // The second call wrote the family again: split it off to check the
    // first exposition, then the escaping on its own.
    let (host, extra) = text.rsplit_once("# HELP node_filesystem_readonly").unwrap();
    let families = parse_exposition(host);
    for (name, kind) in [
        ("node_cpu_seconds_total", "counter"),
        ("node_memory_MemAvailable_bytes", "gauge"),
        ("node_filesystem_avail_bytes", "gauge"),
        ("node_network_receive_bytes_total", "counter"),
        ("node_load1", "gauge"),
        ("node_uname_info", "gauge"),
        ("node_scrape_collector_success", "gauge"),
    ] {
        assert_eq!(families[name].0, kind, "{name}");
        assert!(!families[name].1.is_empty(), "{name}");
    }
    assert_eq!(families["node_vmstat_pgfault"].0, "untyped");
    // Counters end in _total, as node_exporter's do.
    for (name, (kind, _)) in &families {
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
    }
    let extra = format!("# HELP node_filesystem_readonly{extra}");
    let escaped = parse_exposition(&extra);
    assert_eq!(
        escaped["node_filesystem_readonly"].1[0].0,
        format!(
            "{:?}",
            [("device", "x"), ("mountpoint", "/mnt/a \"b\"\\c\nd")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        )
    );
}

#[test]
fn promtool_reads_the_exposition() {
    require!(Need::Promtool);
    let samples = collect();
    let mut e = Exposition::new();
    e.samples(&samples);
    let text = e.finish();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("promtool check metrics < \"$1\"")
        .arg("sh")
        .arg(&file)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Parse errors fail (exit 1); the linter's findings (exit 3) may only
    // be node_exporter's own camelCase names (node_memory_MemTotal_bytes…),
    // kept for the dashboards that query them.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{said}");
    assert!(!said.contains("error"), "{said}");
    for finding in said.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            finding.starts_with("node_memory_") && finding.contains("camelCase"),
            "promtool: {finding}\n{said}"
        );
    }
}
