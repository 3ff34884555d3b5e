//! The floor of a checker's CPU on this machine, for `bench/supervise`:
//! N kept-alive HTTP/1.1 GETs every 5 s over loopback with nothing else
//! (no TLS, no scheduler, no state, no storage), on blocking sockets in
//! one thread. Requests are sent in bursts of what falls due within one
//! tick: a tick of 0 sends each at its own slot (as a checker that
//! spreads its checks does), a longer tick sends fewer, larger bursts.
//!
//! Usage: bench-floor ADDR N SECONDS TICK_MS
//! Prints: `REQUESTS CPU_SECONDS WALL_SECONDS` (user + system time of
//! this process over the run, from /proc/self/schedstat).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_secs(5);

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, n, secs, tick] = args.as_slice() else {
        eprintln!("usage: bench-floor ADDR N SECONDS TICK_MS");
        std::process::exit(2);
    };
    let parse = |s: &str, what: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("bench-floor: {what} must be a whole number, not {s:?}");
            std::process::exit(2)
        })
    };
    let n = parse(n, "N").max(1) as usize;
    let secs = Duration::from_secs(parse(secs, "SECONDS"));
    let tick = Duration::from_millis(parse(tick, "TICK_MS"));
    let mut conns = (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr.as_str())?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!("GET /e/{i} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: bench-floor\r\n\r\n")
                .into_bytes()
        })
        .collect();
    let start = Instant::now();
    let cpu0 = cpu()?;
    let mut buf = vec![0u8; 4096];
    let mut done = 0u64;
    let mut next = 0usize; // the next connection due, in slot order
    let mut round = 0u32;
    while PERIOD * round < secs {
        // Connection i's slot in this round; every request due before the
        // end of the current tick goes in one burst.
        let slot = |i: usize| PERIOD * round + PERIOD * i as u32 / n as u32;
        if let Some(wait) = slot(next).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let until = slot(next) + tick;
        let first = next;
        while next < n && slot(next) <= until {
            conns[next].write_all(&requests[next])?;
            next += 1;
        }
        for c in &mut conns[first..next] {
            read_response(c, &mut buf)?;
            done += 1;
        }
        if next == n {
            next = 0;
            round += 1;
        }
    }
    let cpu = cpu()? - cpu0;
    println!("{done} {cpu:.4} {:.3}", start.elapsed().as_secs_f64());
    Ok(())
}

/// Reads one response (head and `content-length` body); it must be 200.
fn read_response(c: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    loop {
        let k = c.read(&mut buf[got..])?;
        if k == 0 {
            return Err(std::io::Error::other("the server closed the connection"));
        }
        got += k;
        let Some(end) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(std::io::Error::other(format!("not a 200: {head}")));
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got >= end + 4 + len {
            return Ok(());
        }
    }
}

/// This (one-threaded) process's time on a CPU, in seconds, to the
/// nanosecond (`/proc/self/schedstat`; `/proc/self/stat` counts 10 ms
/// ticks, too coarse for a few hundred milliseconds).
fn cpu() -> std::io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat")?;
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other("cannot read /proc/self/schedstat"))?;
    Ok(ns as f64 / 1e9)
}
