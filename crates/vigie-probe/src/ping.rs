//! The `ping` probe: ICMP echo through an unprivileged datagram socket
//! where the kernel allows it (`net.ipv4.ping_group_range`), otherwise a
//! raw socket (root or CAP_NET_RAW).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use vigie_config::PingProbe;
use vigie_core::Outcome;

use crate::human;

struct Pinger {
    sock: UdpSocket,
    raw: bool,
    v6: bool,
    ident: u16,
}

/// An ICMP socket: an unprivileged datagram one, else a raw one (root
/// or CAP_NET_RAW); `true` when raw.
fn icmp_socket(v6: bool) -> io::Result<(Socket, bool)> {
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, false)),
        Err(dgram_err) => match Socket::new(domain, Type::RAW, Some(proto)) {
            Ok(s) => Ok((s, true)),
            Err(_) => Err(io::Error::new(
                dgram_err.kind(),
                format!(
                    "cannot open an ICMP socket ({dgram_err}); allow unprivileged ping with \
                     sysctl net.ipv4.ping_group_range=\"0 2147483647\" or give vigie CAP_NET_RAW"
                ),
            )),
        },
    }
}

/// Whether this process may send pings (IPv6 when `v6`), and how: what
/// `vigie self check` reports.
pub fn icmp_access(v6: bool) -> Result<&'static str, String> {
    match icmp_socket(v6) {
        Ok((_, false)) => Ok("unprivileged ICMP datagram sockets"),
        Ok((_, true)) => Ok("raw ICMP sockets (root or CAP_NET_RAW)"),
        Err(e) => Err(e.to_string()),
    }
}

fn open(v6: bool) -> io::Result<Pinger> {
    let (sock, raw) = icmp_socket(v6)?;
    sock.set_nonblocking(true)?;
    let std: std::net::UdpSocket = sock.into();
    Ok(Pinger {
        sock: UdpSocket::from_std(std)?,
        raw,
        v6,
        ident: rand_ident(),
    })
}

fn rand_ident() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (t ^ std::process::id()) as u16
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const PAYLOAD: &[u8; 8] = b"vigie-pg";

impl Pinger {
    fn packet(&self, seq: u16) -> Vec<u8> {
        let kind = if self.v6 { 128 } else { 8 };
        let mut p = vec![kind, 0, 0, 0];
        p.extend_from_slice(&self.ident.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(PAYLOAD);
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        p
    }

    /// The sequence number of an echo reply meant for us, if it is one.
    fn reply_seq(&self, buf: &[u8]) -> Option<u16> {
        let icmp = if self.raw && !self.v6 {
            let ihl = usize::from(buf.first()? & 0x0f) * 4;
            buf.get(ihl..)?
        } else {
            buf
        };
        let reply_type = if self.v6 { 129 } else { 0 };
        if icmp.len() < 8 + PAYLOAD.len() || icmp[0] != reply_type || &icmp[8..16] != PAYLOAD {
            return None;
        }
        // Datagram sockets get their identifier rewritten by the kernel,
        // which also filters replies for us; raw sockets see everything.
        if self.raw && u16::from_be_bytes([icmp[4], icmp[5]]) != self.ident {
            return None;
        }
        Some(u16::from_be_bytes([icmp[6], icmp[7]]))
    }
}

pub(crate) async fn run(spec: &PingProbe, timeout: Duration) -> Outcome {
    let ip: IpAddr = match spec.host.parse() {
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((spec.host.as_str(), 0)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => a.ip(),
                None => return Outcome::fail(format!("{} has no address", spec.host)),
            },
            Err(e) => return Outcome::fail(format!("resolving {}: {e}", spec.host)),
        },
    };
    let pinger = match open(ip.is_ipv6()) {
        Ok(p) => p,
        Err(e) => return Outcome::fail(e.to_string()),
    };
    let target = SocketAddr::new(ip, 0);
    let count = spec.count.max(1);
    let interval = spec.interval.std();
    // Leave time for the last reply within the check's own timeout.
    let deadline = Instant::now() + timeout.saturating_sub(Duration::from_millis(50));
    let mut sent_at: Vec<Option<Instant>> = vec![None; count as usize];
    let mut rtts: Vec<Duration> = Vec::new();
    let mut next_send = Instant::now();
    let mut seq = 0u16;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if u32::from(seq) < count && now >= next_send {
            let packet = pinger.packet(seq);
            if let Err(e) = pinger.sock.send_to(&packet, target).await {
                return Outcome::fail(format!("sending echo to {ip}: {e}"));
            }
            sent_at[usize::from(seq)] = Some(Instant::now());
            seq += 1;
            next_send = now + interval;
        }
        if rtts.len() == count as usize || now >= deadline {
            break;
        }
        let all_sent = u32::from(seq) >= count;
        let wait_until = if all_sent {
            deadline
        } else {
            next_send.min(deadline)
        };
        let wait = wait_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, pinger.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from.ip() == ip => {
                if let Some(s) = pinger.reply_seq(&buf[..n])
                    && let Some(Some(t)) = sent_at.get_mut(usize::from(s)).map(Option::take)
                {
                    rtts.push(t.elapsed());
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => return Outcome::fail(format!("receiving from {ip}: {e}")),
        }
        if all_sent && rtts.len() as u32 == u32::from(seq) {
            break;
        }
    }
    let sent = u32::from(seq);
    let received = rtts.len() as u32;
    let loss = if sent == 0 {
        100.0
    } else {
        f64::from(sent - received) * 100.0 / f64::from(sent)
    };
    let avg = if rtts.is_empty() {
        None
    } else {
        Some(rtts.iter().sum::<Duration>() / received)
    };
    let mut outcome = match avg {
        Some(avg) => Outcome::ok(format!(
            "{received}/{sent} replies from {ip}, {loss:.0}% loss, rtt {}",
            human(avg)
        ))
        .with_metric("rtt_seconds", avg.as_secs_f64()),
        None => Outcome::fail(format!("no reply from {ip} ({sent} echoes sent)")),
    };
    outcome = outcome.with_metric("loss_ratio", loss / 100.0);
    if outcome.ok && loss > spec.max_loss_percent {
        outcome.ok = false;
        outcome.message = format!(
            "{loss:.0}% packet loss to {ip}, more than {}%",
            spec.max_loss_percent
        );
    }
    if let (true, Some(max), Some(avg)) = (outcome.ok, spec.max_rtt, avg)
        && avg > max.std()
    {
        outcome.ok = false;
        outcome.message = format!("rtt {} to {ip}, more than {max}", human(avg));
    }
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_of_known_packet() {
        // An echo request with id 1, seq 1 and no payload.
        let p = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(super::checksum(&p), 0xf7fd);
    }
}
