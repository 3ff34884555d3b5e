//! `/proc/net/dev` (collector `netdev`): counters of every interface,
//! `lo` included, as node_exporter names them from this file
//! (`node_network_receive_errs_total`, `…_drop_total`, `…_colls_total`).

use super::{device_sample, number};
use crate::{Kind, Sample};

/// The file's 16 columns after `IFACE:`, receive then transmit.
macro_rules! stat {
    ($s:literal) => {
        (
            concat!("node_network_", $s, "_total"),
            concat!("Network device statistic ", $s, "."),
        )
    };
}

const COLUMNS: [(&str, &str); 16] = [
    stat!("receive_bytes"),
    stat!("receive_packets"),
    stat!("receive_errs"),
    stat!("receive_drop"),
    stat!("receive_fifo"),
    stat!("receive_frame"),
    stat!("receive_compressed"),
    stat!("receive_multicast"),
    stat!("transmit_bytes"),
    stat!("transmit_packets"),
    stat!("transmit_errs"),
    stat!("transmit_drop"),
    stat!("transmit_fifo"),
    stat!("transmit_colls"),
    stat!("transmit_carrier"),
    stat!("transmit_compressed"),
];

pub fn samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    // Two lines of headers, then `IFACE: N N …` (a large first number
    // may touch the colon).
    for line in text.lines().skip(2) {
        let Some((device, numbers)) = line.rsplit_once(':') else {
            continue;
        };
        let device = device.trim();
        let columns = numbers.split_ascii_whitespace().count();
        if columns != COLUMNS.len() {
            return Err(format!(
                "{device} has {columns} columns, not {}",
                COLUMNS.len()
            ));
        }
        for ((name, help), field) in COLUMNS.iter().zip(numbers.split_ascii_whitespace()) {
            let v: u64 = number(Some(field), name)?;
            out.push(device_sample(name, Kind::Counter, help, device, v as f64));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{read, value};

    #[test]
    fn this_machines_interfaces() {
        let text = read("proc/net/dev");
        let mut out = Vec::new();
        samples(&text, &mut out).unwrap();
        let devices: std::collections::BTreeSet<&str> =
            out.iter().filter_map(|s| s.label("device")).collect();
        assert!(devices.contains("lo"), "{devices:?}");
        assert!(devices.contains("eth0"), "{devices:?}");
        assert_eq!(out.len(), devices.len() * 16);
        let eth0 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("eth0:"))
            .unwrap();
        let col = |i: usize| {
            eth0.split_whitespace()
                .nth(i)
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        let v = |n| value(&out, n, &[("device", "eth0")]).unwrap();
        assert_eq!(v("node_network_receive_bytes_total"), col(0));
        assert_eq!(v("node_network_transmit_packets_total"), col(9));
    }

    #[test]
    fn big_counters_touching_the_colon_and_every_column() {
        let mut out = Vec::new();
        samples(&read("proc/net/dev-edge"), &mut out).unwrap();
        let v = |d, n| value(&out, n, &[("device", d)]).unwrap();
        assert_eq!(
            v("lo", "node_network_receive_bytes_total"),
            12_345_678_901_234.0
        );
        assert_eq!(v("wg-home0", "node_network_receive_errs_total"), 1.0);
        assert_eq!(v("wg-home0", "node_network_receive_drop_total"), 3.0);
        assert_eq!(v("wg-home0", "node_network_receive_multicast_total"), 4.0);
        assert_eq!(v("wg-home0", "node_network_transmit_errs_total"), 6.0);
        assert_eq!(v("wg-home0", "node_network_transmit_drop_total"), 7.0);
        assert_eq!(v("wg-home0", "node_network_transmit_colls_total"), 8.0);
        assert_eq!(v("wg-home0", "node_network_transmit_carrier_total"), 9.0);
    }

    #[test]
    fn a_short_line_is_refused() {
        let e = samples("h\nh\n eth0: 1 2 3\n", &mut Vec::new()).unwrap_err();
        assert!(e.contains("eth0 has 3 columns, not 16"), "{e}");
    }
}
