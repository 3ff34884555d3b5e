//! Facts about this host that templates read as `facts.…`: its name,
//! its OS (from `/etc/os-release`), its addresses, memory and CPUs.
//! Gathered once per run, from files and one `getifaddrs`, in well
//! under a millisecond.

use std::collections::BTreeMap;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    pub hostname: String,
    /// `/etc/os-release`'s `ID`, `VERSION_ID`, `VERSION_CODENAME`,
    /// `PRETTY_NAME` (empty where absent).
    pub os: Os,
    /// Addresses of the host's interfaces, loopback excepted.
    pub addresses: Vec<String>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    /// Total memory, in MiB (`/proc/meminfo`).
    pub memory_mb: u64,
    pub cpus: usize,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Os {
    pub id: String,
    pub version_id: String,
    pub codename: String,
    pub pretty_name: String,
}

impl Facts {
    pub fn gather() -> Facts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .map(|t| parse_os_release(&t))
            .unwrap_or_default();
        let mut ipv4 = Vec::new();
        let mut ipv6 = Vec::new();
        for iface in if_addrs::get_if_addrs().unwrap_or_default() {
            if iface.is_loopback() {
                continue;
            }
            match iface.ip() {
                std::net::IpAddr::V4(a) => ipv4.push(a.to_string()),
                std::net::IpAddr::V6(a) => ipv6.push(a.to_string()),
            }
        }
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb / 1024);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Facts {
            hostname,
            os,
            addresses: ipv4.iter().chain(&ipv6).cloned().collect(),
            ipv4,
            ipv6,
            memory_mb,
            cpus,
        }
    }
}

fn parse_os_release(text: &str) -> Os {
    let kv: BTreeMap<&str, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim(),
                v.trim().trim_matches('"').trim_matches('\'').to_owned(),
            )
        })
        .collect();
    let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
    Os {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        codename: get("VERSION_CODENAME"),
        pretty_name: get("PRETTY_NAME"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_is_read_as_debian_writes_it() {
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.codename, "bookworm");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }
}
