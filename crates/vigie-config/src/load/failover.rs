//! DNS providers, failovers, peers and dyndns.

use std::collections::BTreeMap;

use crate::diag::{Level, did_you_mean_hint};
use crate::model::{AddressType, Backup, Check, DnsProvider, Dyndns, Failover, Peer};
use crate::secret::{Secret, SecretSource};

use super::{EnvLookup, Loader};

impl Loader {
    pub(super) fn resolve_peers(&mut self, env: EnvLookup<'_>, node: &str) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        for (src, table, mut p) in std::mem::take(&mut self.raw.peers) {
            let key = format!("peer \"{}\"", p.name);
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(&p.name) {
                problems.push((
                    "a peer name uses letters, digits, `-`, `_` and `.`".into(),
                    Some("write the peer's [node] name".into()),
                ));
            }
            if p.name == node {
                problems.push((
                    format!("`{node}` is this node's own name"),
                    Some("list the other watchers, not this one".into()),
                ));
            }
            if out.iter().any(|o| o.name == p.name) {
                problems.push((format!("peer `{}` is declared twice", p.name), None));
            }
            let loopback = match p.url.0.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if p.url.0.scheme() != "https" && !loopback {
                problems.push((
                    "a peer beyond loopback is reached over https".into(),
                    Some("write url = \"https://HOST:9470\" and give it [server] tls".into()),
                ));
            }
            if p.ca.is_some() && p.pin.is_some() {
                problems.push((
                    "set `ca` or `pin`, not both".into(),
                    Some("pin a self-signed certificate, or name the CA that signed it".into()),
                ));
            }
            if let Some(pin) = &mut p.pin {
                let hex: String = pin.chars().filter(|c| *c != ':').collect();
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    *pin = hex.to_ascii_lowercase();
                } else {
                    problems.push((
                        "`pin` is the certificate's SHA-256 in hex (64 digits, colons allowed)"
                            .into(),
                        Some("openssl x509 -noout -fingerprint -sha256 -in cert.pem".into()),
                    ));
                }
            }
            if let Some(ca) = &mut p.ca {
                *ca = self.base.join(&*ca);
            }
            let token =
                std::mem::replace(&mut p.token, Secret::new(SecretSource::Env(String::new())));
            let resolved =
                self.resolve_secret(src, table.clone(), &format!("{key}.token"), token, env);
            let ok = problems.is_empty() && resolved.is_some();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if let (true, Some(t)) = (ok, resolved) {
                p.token = t;
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Give each check a failover names in `checks` the `failover:NAME`
    /// action, then record in each failover every check that triggers it
    /// (both ways of writing the link end as one). Also checks `quorum`
    /// and `reference`.
    pub(super) fn link_failover_checks(
        &mut self,
        failovers: &mut BTreeMap<String, Failover>,
        checks: &mut [Check],
        peers: usize,
    ) {
        let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
        let mut broken = Vec::new();
        for (fname, f) in failovers.iter_mut() {
            let key = format!("failover.{fname}");
            let action = format!("failover:{fname}");
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            for (field, list) in [("checks", &f.checks), ("reference", &f.reference)] {
                for c in list {
                    if !names.contains(c) {
                        let hint = did_you_mean_hint(c, names.iter().map(String::as_str));
                        problems.push((format!("`{field}` names unknown check `{c}`"), hint));
                    }
                }
            }
            for check in checks.iter_mut() {
                if f.checks.contains(&check.name) && !check.actions.contains(&action) {
                    check.actions.push(action.clone());
                }
            }
            f.checks = checks
                .iter()
                .filter(|c| c.actions.contains(&action))
                .map(|c| c.name.clone())
                .collect();
            if let Some(c) = f.reference.iter().find(|r| f.checks.contains(r)) {
                problems.push((
                    format!("`{c}` is both a trigger and a reference of this failover"),
                    Some(
                        "a reference check watches this watcher's own link, not the primary".into(),
                    ),
                ));
            }
            let voters = peers + 1;
            if f.quorum == 0 || f.quorum as usize > voters {
                problems.push((
                    format!(
                        "quorum = {} but there are {voters} watcher(s) (this node and {peers} [[peer]])",
                        f.quorum
                    ),
                    Some("quorum is between 1 and the number of watchers".into()),
                ));
            }
            if !problems.is_empty() {
                broken.push(fname.clone());
            }
            let (src, table) = self
                .raw
                .failover_places
                .get(fname)
                .cloned()
                .unwrap_or_default();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            // The peers are asked but never needed: one watcher's view
            // (its own link down) moves the record.
            if f.quorum == 1 && peers > 0 {
                self.report(
                    Level::Warning,
                    src,
                    Some(table.clone()),
                    &key,
                    format!("quorum = 1 with {peers} [[peer]]: this watcher alone moves the record"),
                    Some(format!(
                        "set quorum = {} so that a majority of the {voters} watchers must see the primary down",
                        voters / 2 + 1
                    )),
                );
            }
        }
        for b in broken {
            failovers.remove(&b);
        }
    }

    pub(super) fn resolve_dyndns(
        &mut self,
        dns: &BTreeMap<String, DnsProvider>,
    ) -> BTreeMap<String, Dyndns> {
        let mut out = BTreeMap::new();
        for (src, name, table, mut d) in std::mem::take(&mut self.raw.dyndns) {
            let key = format!("dyndns.{}", name.get_ref());
            if !dns.contains_key(&d.dns) {
                let hint = did_you_mean_hint(&d.dns, dns.keys().map(String::as_str))
                    .unwrap_or_else(|| "declare it under [dns.NAME]".to_owned());
                self.error(
                    src,
                    Some(table),
                    &key,
                    format!("unknown DNS provider `{}`", d.dns),
                    Some(hint),
                );
                continue;
            }
            if let Some(problem) = address_problem(d.ip_url.is_some(), d.interface.as_deref(), true)
            {
                self.error(src, Some(table), &key, problem.0, Some(problem.1));
                continue;
            }
            if d.every.std() < std::time::Duration::from_secs(1) {
                self.error(
                    src,
                    Some(table),
                    &key,
                    "`every` must be at least 1s".into(),
                    None,
                );
                continue;
            }
            d.name.clone_from(name.get_ref());
            out.insert(name.into_inner(), d);
        }
        out
    }

    /// `[dns.NAME]`: valid names, their secrets read.
    fn resolve_dns_providers(&mut self, env: EnvLookup<'_>) -> BTreeMap<String, DnsProvider> {
        let mut dns = BTreeMap::new();
        for (src, name, table, mut p) in std::mem::take(&mut self.raw.dns) {
            let key = format!("dns.{}", name.get_ref());
            let ok = vigie_core::is_valid_name(name.get_ref());
            if !ok {
                self.error(
                    src,
                    Some(name.span()),
                    &key,
                    "a provider name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                );
            }
            for (field, secret) in p.secrets_mut() {
                let taken =
                    std::mem::replace(secret, Secret::new(SecretSource::Env(String::new())));
                // A secret that cannot be read is an error of its own; the
                // provider stays declared, so that what uses it is not also
                // told it does not exist (the config is refused anyway).
                if let Some(resolved) =
                    self.resolve_secret(src, table.clone(), &format!("{key}.{field}"), taken, env)
                {
                    *secret = resolved;
                }
            }
            if ok {
                dns.insert(name.into_inner(), p);
            }
        }
        dns
    }

    pub(super) fn resolve_failover(
        &mut self,
        env: EnvLookup<'_>,
    ) -> (BTreeMap<String, DnsProvider>, BTreeMap<String, Failover>) {
        let dns = self.resolve_dns_providers(env);
        let providers: Vec<String> = dns.keys().cloned().collect();
        let mut failovers = BTreeMap::new();
        for (src, name, table, mut f) in std::mem::take(&mut self.raw.failovers) {
            let key = format!("failover.{}", name.get_ref());
            let mut problems: Vec<(String, Option<String>)> = Vec::new();
            if !vigie_core::is_valid_name(name.get_ref()) {
                problems.push((
                    "a failover name uses letters, digits, `-`, `_` and `.`".into(),
                    None,
                ));
            }
            match dns.get(&f.dns) {
                None => {
                    let hint = did_you_mean_hint(&f.dns, providers.iter().map(String::as_str))
                        .unwrap_or_else(|| "declare it under [dns.NAME]".to_owned());
                    problems.push((format!("unknown DNS provider `{}`", f.dns), Some(hint)));
                }
                Some(DnsProvider::Rfc2136 { server, .. }) if f.verify.is_empty() => {
                    f.verify = vec![*server];
                }
                Some(_) if f.verify.is_empty() => problems.push((
                    "`verify` is empty: name the zone's authoritative servers".into(),
                    Some(
                        "verify = [\"192.0.2.53:53\"]: vigie asks them until they serve the change"
                            .into(),
                    ),
                )),
                Some(_) => {}
            }
            let v6 = f.record.rtype == AddressType::Aaaa;
            let fixed = match &f.backup {
                Backup::Fixed(v) => v.clone(),
                Backup::PublicIp => Vec::new(),
            };
            let needs_source = f.backup == Backup::PublicIp;
            if let Some(p) =
                address_problem(f.ip_url.is_some(), f.interface.as_deref(), needs_source)
            {
                problems.push((p.0, Some(p.1)));
            }
            let sides: Vec<(&str, &Vec<std::net::IpAddr>)> = if needs_source {
                vec![("primary", &f.primary)]
            } else {
                vec![("primary", &f.primary), ("backup", &fixed)]
            };
            for (side, addrs) in sides {
                if addrs.is_empty() {
                    problems.push((format!("`{side}` is empty"), None));
                }
                if addrs.iter().any(|a| a.is_ipv6() != v6) {
                    problems.push((
                        format!(
                            "`{side}` holds an address of the wrong family for an {} record",
                            if v6 { "AAAA" } else { "A" }
                        ),
                        None,
                    ));
                }
            }
            let ok = problems.is_empty();
            for (message, hint) in problems {
                self.error(src, Some(table.clone()), &key, message, hint);
            }
            if ok {
                f.name.clone_from(name.get_ref());
                self.raw
                    .failover_places
                    .insert(f.name.clone(), (src, table.clone()));
                failovers.insert(name.into_inner(), f);
            }
        }
        (dns, failovers)
    }
}

/// What is wrong with an `ip_url` / `interface` pair, if anything.
fn address_problem(url: bool, interface: Option<&str>, needed: bool) -> Option<(String, String)> {
    if !needed {
        return (url || interface.is_some()).then(|| {
            (
                "`ip_url`/`interface` only serve backup = \"public-ip\"".into(),
                "remove them, or set backup = \"public-ip\"".into(),
            )
        });
    }
    let hint = || "set ip_url = \"https://ifconfig.me/ip\" or interface = \"eth0\"".to_owned();
    match (url, interface) {
        (true, Some(_)) => Some(("set `ip_url` or `interface`, not both".into(), hint())),
        (false, None) => Some((
            "this node's public address is read from `ip_url` or `interface`; neither is set"
                .into(),
            hint(),
        )),
        (false, Some(i)) if i.is_empty() || i.len() > 15 || i.contains(['/', ' ']) => Some((
            format!("`{i}` is not an interface name"),
            "write the name `ip link` shows, e.g. \"eth0\"".into(),
        )),
        _ => None,
    }
}
