//! The small collectors: `loadavg`, `vmstat`, `filefd`, `time` and
//! `uname`.

use super::number;
use crate::{Kind, Sample};

/// `/proc/loadavg`: `node_load1`, `node_load5`, `node_load15`.
pub fn loadavg_samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    let mut fields = text.split_ascii_whitespace();
    for (name, help) in [
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
    ] {
        let v: f64 = number(fields.next(), name)?;
        out.push(Sample::new(name, Kind::Gauge, help, v));
    }
    Ok(())
}

/// The fields of `/proc/vmstat` node_exporter gives by default (its
/// `--collector.vmstat.fields`, `^(oom_kill|pgpg|pswp|pg.*fault).*`, on
/// today's kernels), untyped as it gives them.
macro_rules! vmstat {
    ($($key:literal),+) => {
        [$((
            $key,
            concat!("node_vmstat_", $key),
            concat!("/proc/vmstat information field ", $key, "."),
        )),+]
    };
}
const VMSTAT: [(&str, &str, &str); 7] = vmstat!(
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgfault",
    "pgmajfault",
    "oom_kill"
);

/// `/proc/vmstat`: pages paged in and out, swapped in and out, page
/// faults, OOM kills (`node_vmstat_*`).
pub fn vmstat_samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        let Some((_, name, help)) = VMSTAT.iter().find(|(k, _, _)| *k == key) else {
            continue;
        };
        let v: u64 = number(fields.next(), key)?;
        out.push(Sample::new(name, Kind::Untyped, help, v as f64));
    }
    Ok(())
}

/// `/proc/sys/fs/file-nr` (allocated, free — always 0 since 2.6 —, and
/// maximum): `node_filefd_allocated`, `node_filefd_maximum`.
pub fn filefd_samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    let mut fields = text.split_ascii_whitespace();
    let allocated: u64 = number(fields.next(), "allocated")?;
    let maximum: u64 = number(fields.nth(1), "maximum")?;
    out.push(Sample::new(
        "node_filefd_allocated",
        Kind::Gauge,
        "File descriptor statistics: allocated.",
        allocated as f64,
    ));
    out.push(Sample::new(
        "node_filefd_maximum",
        Kind::Gauge,
        "File descriptor statistics: maximum.",
        maximum as f64,
    ));
    Ok(())
}

/// `node_time_seconds`: with `node_boot_time_seconds`, the uptime
/// dashboards show.
pub fn time_samples(out: &mut Vec<Sample>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    out.push(Sample::new(
        "node_time_seconds",
        Kind::Gauge,
        "System time in seconds since epoch (1970).",
        now,
    ));
}

/// `node_uname_info`: dashboards list hosts by it ("Node Exporter Full"
/// fills its host menu from this family).
pub fn uname_samples(out: &mut Vec<Sample>) {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    out.push(Sample::labelled(
        "node_uname_info",
        Kind::Gauge,
        "Labeled system information as provided by the uname system call.",
        vec![
            ("sysname", s(u.sysname())),
            ("release", s(u.release())),
            ("version", s(u.version())),
            ("machine", s(u.machine())),
            ("nodename", s(u.nodename())),
            ("domainname", s(u.domainname())),
        ],
        1.0,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{read, value};

    #[test]
    fn loadavg_and_file_nr_of_this_machine() {
        let mut out = Vec::new();
        loadavg_samples(&read("proc/loadavg"), &mut out).unwrap();
        filefd_samples(&read("proc/sys/fs/file-nr"), &mut out).unwrap();
        let v = |n| value(&out, n, &[]).unwrap();
        assert_eq!(v("node_load1"), 2.89);
        assert_eq!(v("node_load5"), 2.5);
        assert_eq!(v("node_load15"), 1.31);
        assert_eq!(v("node_filefd_allocated"), 501.0);
        assert_eq!(v("node_filefd_maximum"), 2_466_177.0);
    }

    #[test]
    fn vmstat_of_this_machine() {
        let text = read("proc/vmstat");
        let mut out = Vec::new();
        vmstat_samples(&text, &mut out).unwrap();
        assert_eq!(out.len(), 7);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(
            value(&out, "node_vmstat_pgfault", &[]),
            Some(field("pgfault"))
        );
        assert_eq!(
            value(&out, "node_vmstat_oom_kill", &[]),
            Some(field("oom_kill"))
        );
        assert!(out.iter().all(|s| s.kind == Kind::Untyped));
        // The fields node_exporter's default filter keeps, and no others.
        let kept: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split(' ').next())
            .filter(|k| {
                ["oom_kill", "pgpg", "pswp"]
                    .iter()
                    .any(|p| k.starts_with(p))
                    || k.strip_prefix("pg").is_some_and(|r| r.contains("fault"))
            })
            .collect();
        assert_eq!(kept.len(), out.len(), "{kept:?}");
    }

    #[test]
    fn short_files_are_refused() {
        let e = loadavg_samples("0.1 0.2\n", &mut Vec::new()).unwrap_err();
        assert!(e.contains("no node_load15"), "{e}");
        let e = filefd_samples("10\t0\n", &mut Vec::new()).unwrap_err();
        assert!(e.contains("no maximum"), "{e}");
    }

    #[test]
    fn uname_names_this_host() {
        let mut out = Vec::new();
        uname_samples(&mut out);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(out[0].label("nodename"), Some(host.trim()));
        assert_eq!(out[0].label("sysname"), Some("Linux"));
        let labels: Vec<&str> = out[0].labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            labels,
            [
                "domainname",
                "machine",
                "nodename",
                "release",
                "sysname",
                "version"
            ]
        );
    }
}
