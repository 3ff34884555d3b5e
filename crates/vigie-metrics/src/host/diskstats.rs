//! `/proc/diskstats` (collector `diskstats`): I/O of each whole device,
//! `node_disk_*{device}`.
//!
//! The kernel gives 11 columns after the device's name until 4.18, 15
//! (discards) until 5.5, 17 (flushes) since: each line gives the families
//! its columns have. Sectors are the kernel's 512-byte units whatever the
//! device's (`Documentation/block/stat.rst`); times are milliseconds.
//! Partitions and virtual devices are skipped as node_exporter's default
//! `--collector.diskstats.device-exclude` does:
//! `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`.

use super::{device_sample, number};
use crate::{Kind, Sample};

const SECTOR_BYTES: f64 = 512.0;
const MS: f64 = 1e-3;

/// Each column's family, type, help, and the factor to its unit.
const COLUMNS: [(&str, Kind, &str, f64); 17] = [
    (
        "node_disk_reads_completed_total",
        Kind::Counter,
        "The total number of reads completed successfully.",
        1.0,
    ),
    (
        "node_disk_reads_merged_total",
        Kind::Counter,
        "The total number of reads merged.",
        1.0,
    ),
    (
        "node_disk_read_bytes_total",
        Kind::Counter,
        "The total number of bytes read successfully.",
        SECTOR_BYTES,
    ),
    (
        "node_disk_read_time_seconds_total",
        Kind::Counter,
        "The total number of seconds spent by all reads.",
        MS,
    ),
    (
        "node_disk_writes_completed_total",
        Kind::Counter,
        "The total number of writes completed successfully.",
        1.0,
    ),
    (
        "node_disk_writes_merged_total",
        Kind::Counter,
        "The number of writes merged.",
        1.0,
    ),
    (
        "node_disk_written_bytes_total",
        Kind::Counter,
        "The total number of bytes written successfully.",
        SECTOR_BYTES,
    ),
    (
        "node_disk_write_time_seconds_total",
        Kind::Counter,
        "This is the total number of seconds spent by all writes.",
        MS,
    ),
    (
        "node_disk_io_now",
        Kind::Gauge,
        "The number of I/Os currently in progress.",
        1.0,
    ),
    (
        "node_disk_io_time_seconds_total",
        Kind::Counter,
        "Total seconds spent doing I/Os.",
        MS,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        Kind::Counter,
        "The weighted # of seconds spent doing I/Os.",
        MS,
    ),
    (
        "node_disk_discards_completed_total",
        Kind::Counter,
        "The total number of discards completed successfully.",
        1.0,
    ),
    (
        "node_disk_discards_merged_total",
        Kind::Counter,
        "The total number of discards merged.",
        1.0,
    ),
    // Sectors, not bytes: node_exporter's name says so.
    (
        "node_disk_discarded_sectors_total",
        Kind::Counter,
        "The total number of sectors discarded successfully.",
        1.0,
    ),
    (
        "node_disk_discard_time_seconds_total",
        Kind::Counter,
        "This is the total number of seconds spent by all discards.",
        MS,
    ),
    (
        "node_disk_flush_requests_total",
        Kind::Counter,
        "The total number of flush requests completed successfully",
        1.0,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        Kind::Counter,
        "This is the total number of seconds spent by all flush requests.",
        MS,
    ),
];

/// The fewest columns a device's line has had since Linux 2.6.
const MIN_COLUMNS: usize = 11;

/// Whether node_exporter's default filter leaves `device` out.
pub fn ignored(device: &str) -> bool {
    fn digits(s: &str) -> Option<&str> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        (end > 0).then(|| &s[end..])
    }
    let rest = if let Some(r) = device
        .strip_prefix("zram")
        .or_else(|| device.strip_prefix("ram"))
        .or_else(|| device.strip_prefix("loop"))
        .or_else(|| device.strip_prefix("fd"))
    {
        r
    } else if let Some(r) = device.strip_prefix("nvme") {
        // nvme\d+n\d+p
        let Some(r) = digits(r).and_then(|r| r.strip_prefix('n')) else {
            return false;
        };
        let Some(r) = digits(r).and_then(|r| r.strip_prefix('p')) else {
            return false;
        };
        r
    } else {
        // (h|s|v|xv)d[a-z]
        let r = device.strip_prefix("xv").unwrap_or(device);
        let r = if r.len() == device.len() {
            match r.as_bytes().first() {
                Some(b'h' | b's' | b'v') => &r[1..],
                _ => return false,
            }
        } else {
            r
        };
        let Some(r) = r.strip_prefix('d') else {
            return false;
        };
        match r.as_bytes().first() {
            Some(b'a'..=b'z') => &r[1..],
            _ => return false,
        }
    };
    digits(rest) == Some("")
}

pub fn samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_major), Some(_minor), Some(device)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if ignored(device) {
            continue;
        }
        // Count first: a line of a format vigie does not know (a partition
        // of a 2.6.24 kernel has 4 columns, meaning other things) gives
        // nothing rather than wrong numbers.
        let columns = fields.clone().count();
        if columns < MIN_COLUMNS {
            continue;
        }
        for ((name, kind, help, factor), field) in COLUMNS.iter().zip(fields) {
            let raw: u64 = number(Some(field), name)?;
            out.push(device_sample(
                name,
                *kind,
                help,
                device,
                raw as f64 * factor,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{read, value};

    #[test]
    fn the_default_filter_is_node_exporters() {
        for kept in [
            "vda",
            "sda",
            "sdaa1",
            "nvme0n1",
            "dm-0",
            "md0",
            "mmcblk0",
            "mmcblk0p1",
            "xvda",
            "nbd0",
            "sr0",
            "vd",
            "loop",
            "nvme0n1p",
            "ram",
        ] {
            assert!(!ignored(kept), "{kept} is kept");
        }
        for skipped in [
            "sda1",
            "vda15",
            "hdb2",
            "xvda1",
            "nvme0n1p1",
            "nvme12n3p45",
            "loop0",
            "loop12",
            "ram0",
            "zram0",
            "fd0",
        ] {
            assert!(ignored(skipped), "{skipped} is skipped");
        }
    }

    #[test]
    fn this_machines_diskstats() {
        // Linux 6.x: 17 columns; vda kept, loopN and zram0 skipped.
        let mut out = Vec::new();
        samples(&read("proc/diskstats"), &mut out).unwrap();
        assert_eq!(out.len(), 17);
        assert!(out.iter().all(|s| s.label("device") == Some("vda")));
        let line = read("proc/diskstats");
        let vda: Vec<f64> = line
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some("vda"))
            .unwrap()
            .split_whitespace()
            .skip(3)
            .map(|f| f.parse().unwrap())
            .collect();
        let v = |n| value(&out, n, &[("device", "vda")]).unwrap();
        assert_eq!(v("node_disk_read_bytes_total"), vda[2] * 512.0);
        assert_eq!(v("node_disk_written_bytes_total"), vda[6] * 512.0);
        assert!((v("node_disk_io_time_seconds_total") - vda[9] / 1000.0).abs() < 1e-9);
        assert_eq!(v("node_disk_flush_requests_total"), vda[15]);
        assert_eq!(v("node_disk_discarded_sectors_total"), vda[13]);
    }

    #[test]
    fn older_kernels_give_fewer_families() {
        let text = read("proc/diskstats-kernels");
        let mut out = Vec::new();
        samples(&text, &mut out).unwrap();
        let count = |d| out.iter().filter(|s| s.label("device") == Some(d)).count();
        // 4.17: 11 columns; 4.18: 15; 5.5+: 17; the old partition line
        // (4 columns) and sda1 are skipped.
        assert_eq!(count("sda"), 11);
        assert_eq!(count("sdb"), 15);
        assert_eq!(count("nvme0n1"), 17);
        assert_eq!(count("sdc"), 0);
        assert_eq!(count("sda1"), 0);
        assert_eq!(
            value(
                &out,
                "node_disk_reads_completed_total",
                &[("device", "sda")]
            ),
            Some(446_216.0)
        );
        assert_eq!(
            value(
                &out,
                "node_disk_discard_time_seconds_total",
                &[("device", "sdb")]
            ),
            Some(0.5)
        );
        assert_eq!(
            value(&out, "node_disk_io_now", &[("device", "nvme0n1")]).map(|_| ()),
            Some(())
        );
        assert!(
            out.iter()
                .filter(|s| s.name == "node_disk_io_now")
                .all(|s| s.kind == Kind::Gauge)
        );
    }

    #[test]
    fn a_bad_number_is_refused() {
        let e = samples("8 0 sda 1 2 x 4 5 6 7 8 9 10 11\n", &mut Vec::new()).unwrap_err();
        assert!(
            e.contains("node_disk_read_bytes_total `x` is not a number"),
            "{e}"
        );
    }
}
