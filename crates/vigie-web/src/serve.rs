//! The one accept loop, for HTTP and HTTPS alike: it is where a slow or
//! numerous client is bounded. Each connection holds a slot of a fixed
//! cap (at the cap, new clients wait in the kernel's backlog instead of
//! costing a descriptor and a task each), has [`HEADER_TIMEOUT`] to finish
//! its TLS handshake and then to send each request's headers — the same
//! timer closes a keep-alive connection left idle — and a failing
//! `accept` (EMFILE) backs off instead of spinning.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// A client has this long to complete its TLS handshake, then to send
/// the headers of each request, including the first byte of the next one
/// on a kept-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections are open at once; more wait to be
/// accepted. Heartbeat pings and API calls are short: a few hundred cron
/// jobs pinging at the same second fit.
pub const MAX_CONNECTIONS: usize = 256;
/// The longest wait between two `accept` attempts after failures (out of
/// descriptors: other connections must close first).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What the server observed, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub open: AtomicU64,
    pub accept_errors: AtomicU64,
    pub header_timeouts: AtomicU64,
    /// Requests refused for a foreign `Host` (DNS rebinding).
    pub refused_host: AtomicU64,
    /// Writes refused for a foreign `Origin`.
    pub refused_origin: AtomicU64,
}

/// Accept on `listener` until `stop`, serve each connection with
/// `router` (over TLS when `tls` is set), then give the requests in
/// flight a moment and drop the rest.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    stats: Arc<ServerStats>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = Duration::ZERO;
    let mut at_cap = false;
    loop {
        while conns.try_join_next().is_some() {}
        // A slot first: at the cap the next client stays in the backlog.
        if slots.available_permits() == 0 && !at_cap {
            at_cap = true;
            tracing::warn!(
                cap = MAX_CONNECTIONS,
                "HTTP connection cap reached: new connections wait until one closes"
            );
        }
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        if slots.available_permits() > 0 {
            at_cap = false;
        }
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, from) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS: retrying at once would spin
                // while nothing changes; wait for connections to close.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if backoff.is_zero() {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed; retrying with back-off");
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(20), MAX_ACCEPT_BACKOFF);
                tokio::select! {
                    _ = &mut stop => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let (router, tls, stats, stopping) =
            (router.clone(), tls.clone(), stats.clone(), stopping.clone());
        conns.spawn(async move {
            let _slot = slot;
            stats.open.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => serve_connection(tcp, router, &stats, stopping).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, router, &stats, stopping).await,
                        Ok(Err(e)) => tracing::debug!(%from, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%from, "TLS handshake timed out");
                        }
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    // Requests in flight get a moment; then they are dropped.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Serve HTTP/1 on one connection until the client leaves, a timeout
/// closes it, or the server stops (then the request in flight finishes).
async fn serve_connection<S>(
    stream: S,
    router: Router,
    stats: &ServerStats,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        _ = stopping.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        if e.is_timeout() {
            stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}
