//! This node's own public address: as a "what is my IP" service sees it,
//! or as a local interface holds it. Serves dyndns and a failover whose
//! backup is `"public-ip"`.

use std::net::IpAddr;

use vigie_config::AddressFrom;

use crate::DnsError;

fn err(message: String) -> DnsError {
    DnsError::Api {
        provider: "public address",
        message,
    }
}

/// This node's address of the wrong-or-right family, from `from`.
pub async fn this_node(
    client: &reqwest::Client,
    from: &AddressFrom,
    ipv6: bool,
) -> Result<IpAddr, DnsError> {
    let ip = match from {
        AddressFrom::Url(url) => from_url(client, url).await?,
        AddressFrom::Interface(name) => from_interface(name, ipv6)?,
    };
    if ip.is_ipv6() != ipv6 {
        return Err(DnsError::Config(format!(
            "this node's address is {ip}, of the wrong family for an {} record",
            if ipv6 { "AAAA" } else { "A" }
        )));
    }
    Ok(ip)
}

/// The address a "what is my IP" service answers, as plain text.
pub async fn from_url(client: &reqwest::Client, url: &str) -> Result<IpAddr, DnsError> {
    let resp = client.get(url).send().await.map_err(|e| {
        err(format!(
            "asking for the public address: {}",
            e.without_url()
        ))
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(err(format!("the address service answered {status}")));
    }
    let text = text.trim();
    text.parse().map_err(|_| {
        err(format!(
            "the address service answered {:?}, not an address",
            text.chars().take(60).collect::<String>()
        ))
    })
}

/// The first global address of the family on interface `name`: not
/// loopback, not link-local, and for IPv6 not a unique-local address.
pub fn from_interface(name: &str, ipv6: bool) -> Result<IpAddr, DnsError> {
    let all = if_addrs::get_if_addrs()
        .map_err(|e| err(format!("listing the interfaces' addresses: {e}")))?;
    let mine: Vec<IpAddr> = all
        .iter()
        .filter(|i| i.name == name)
        .map(if_addrs::Interface::ip)
        .collect();
    if mine.is_empty() {
        let mut names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        return Err(err(format!(
            "no interface `{name}` with an address (there are: {})",
            names.join(", ")
        )));
    }
    mine.iter()
        .copied()
        .find(|ip| ip.is_ipv6() == ipv6 && usable(*ip))
        .ok_or_else(|| {
            err(format!(
                "interface `{name}` has no usable {} address (it has {})",
                if ipv6 { "IPv6" } else { "IPv4" },
                mine.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local() && !a.is_unspecified(),
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            !a.is_loopback()
                && !a.is_unspecified()
                && (first & 0xffc0) != 0xfe80
                && (first & 0xfe00) != 0xfc00
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_usable_address() {
        let e = from_interface("lo", false).unwrap_err().to_string();
        assert!(e.contains("no usable IPv4 address"), "{e}");
        assert!(e.contains("127.0.0.1"), "{e}");
    }

    #[test]
    fn an_unknown_interface_is_named_with_the_real_ones() {
        let e = from_interface("nosuch0", false).unwrap_err().to_string();
        assert!(e.contains("no interface `nosuch0`"), "{e}");
        assert!(e.contains("lo"), "{e}");
    }

    #[test]
    fn link_local_and_unique_local_are_not_public() {
        assert!(!usable("fe80::1".parse().unwrap()));
        assert!(!usable("fd00::1".parse().unwrap()));
        assert!(!usable("169.254.1.1".parse().unwrap()));
        assert!(usable("2001:db8::1".parse().unwrap()));
        assert!(usable("192.0.2.7".parse().unwrap()));
    }
}
