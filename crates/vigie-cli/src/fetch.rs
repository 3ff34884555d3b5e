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
                if let Err(e) = rt.block_on(stream(&url, &tx)) {
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
    let mut got = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                got += c.len() as u64;
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
