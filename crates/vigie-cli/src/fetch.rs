//! The HTTP client converge's `[[download]]`s fetch with: reqwest over
//! vigie-net's TLS (the system's roots), on a thread of its own with its
//! own runtime, so that the blocking converge run (from `vigie
//! converge` or the daemon's blocking pool) can call it from anywhere.
//! The body streams to converge's writer chunk by chunk; a connection
//! that stalls, a status other than 2xx or a body cut short is an error.

use std::sync::mpsc;
use std::time::Duration;

/// No byte for this long: the transfer has stalled.
const STALL: Duration = Duration::from_secs(30);
const CONNECT: Duration = Duration::from_secs(10);
/// The longest a whole download may take, however steadily it trickles
/// (a run must end: the daemon's next one waits for it).
const TOTAL: Duration = Duration::from_hours(1);
/// The most bytes a download may have: past it, a server sending
/// without end is cut before it fills the disk.
const MAX_BYTES: u64 = 8 << 30;

#[derive(Debug, Default)]
pub(crate) struct HttpFetch;

enum Piece {
    Bytes(Vec<u8>),
    Failed(String),
}

impl vigie_converge::Fetch for HttpFetch {
    fn fetch(&self, url: &str, out: &mut dyn std::io::Write) -> Result<u64, String> {
        let (tx, rx) = mpsc::sync_channel::<Piece>(8);
        let url = url.to_owned();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Piece::Failed(format!("no runtime: {e}")));
                        return;
                    }
                };
                let whole =
                    rt.block_on(async { tokio::time::timeout(TOTAL, stream(&url, &tx)).await });
                if let Err(e) = whole.unwrap_or_else(|_| {
                    Err(format!(
                        "the download took longer than {} s",
                        TOTAL.as_secs()
                    ))
                }) {
                    let _ = tx.send(Piece::Failed(e));
                }
            });
            let mut total = 0u64;
            // The sender is dropped when the body is done (or failed).
            for piece in rx {
                match piece {
                    Piece::Bytes(b) => {
                        out.write_all(&b).map_err(|e| e.to_string())?;
                        total += b.len() as u64;
                    }
                    Piece::Failed(e) => return Err(e),
                }
            }
            Ok(total)
        })
    }
}

async fn stream(url: &str, tx: &mpsc::SyncSender<Piece>) -> Result<(), String> {
    let tls = vigie_net::tls_client_config(&vigie_net::TlsOptions::https()).map_err(|e| e.0)?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("vigie/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT)
        .read_timeout(STALL)
        .build()
        .map_err(|e| vigie_net::chain(&e))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| vigie_net::chain(&e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    // Read before the body: it is what is left to come.
    let announced = resp.content_length();
    if let Some(len) = announced
        && len > MAX_BYTES
    {
        return Err(format!(
            "the server announces {len} bytes, more than a download may have ({MAX_BYTES})"
        ));
    }
    let mut got = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                got += c.len() as u64;
                if got > MAX_BYTES {
                    return Err(format!(
                        "the body goes on past {MAX_BYTES} bytes, more than a download may have"
                    ));
                }
                if tx.send(Piece::Bytes(c.to_vec())).is_err() {
                    return Ok(());
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "the body was cut after {got} bytes: {}",
                    vigie_net::chain(&e.without_url())
                ));
            }
        }
    }
    if let Some(len) = announced
        && got != len
    {
        return Err(format!("the body was cut after {got} of {len} bytes"));
    }
    Ok(())
}
