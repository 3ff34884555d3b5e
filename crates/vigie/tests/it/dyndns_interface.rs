//! dyndns from a local interface, for real: vigie runs in a network
//! namespace whose `eth0` holds the address, and keeps Knot's record on
//! it (`vigie_testkit::netns`; needs root, iproute2, nftables).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use vigie_testkit::knot::knot_at;
use vigie_testkit::netns::Lab;
use vigie_testkit::{Env, Need, require, wait_until};

use crate::util::{bin, served};

#[test]
fn the_record_follows_the_interface_address() {
    require!(Need::Netns, Need::Knot);
    let lab = Lab::new(&["dns", "home"]);
    let dns: SocketAddr = (lab.ip("dns"), 53).into();
    let k = knot_at(Some(&lab.ns("dns")), dns, "example.org", "home A 192.0.2.1");
    let env = Env::in_netns(bin(), &lab.ns("home"));
    env.write("tsig.key", &format!("{}\n", k.secret));
    env.config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[dns.knot]\nkind = \"rfc2136\"\nserver = \"{dns}\"\nkey_name = \"{}\"\nsecret = {{ file = \"tsig.key\" }}\n\n[dyndns.home]\nrecord = {{ zone = \"example.org\", name = \"home\" }}\ndns = \"knot\"\ninterface = \"eth0\"\nevery = \"1s\"\n",
        k.key_name
    ));
    let served = || -> Vec<IpAddr> { served(dns, "home") };
    let daemon = env.daemon();
    wait_until(Duration::from_secs(15), || served() == [lab.ip("home")]);
    daemon.wait_log(
        "public address changed; record updated",
        Duration::from_secs(2),
    );
    // A missing interface is a clear error, and changes nothing.
    env.config(
        &std::fs::read_to_string(env.config_path())
            .unwrap()
            .replace("eth0", "wan9"),
    );
    daemon.signal(rustix::process::Signal::HUP);
    daemon.wait_log("no interface `wan9`", Duration::from_secs(10));
    assert_eq!(served(), [lab.ip("home")]);
}
