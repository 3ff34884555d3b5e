//! The one accept loop, for HTTP and HTTPS alike: it is where a slow or
//! numerous client is bounded. At most [`MAX_CONNECTIONS`] are open (at
//! the cap a new client takes the place of the oldest one that is not
//! inside a request, see [`accept_loop`]); each has [`HEADER_TIMEOUT`] to
//! finish its TLS handshake and then to send each request's headers —
//! the same timer closes a keep-alive connection left idle — and a
//! failing `accept` (EMFILE) backs off instead of spinning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

/// A client has this long to complete its TLS handshake, then to send
/// the headers of each request, including the first byte of the next one
/// on a kept-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections are open at once. Heartbeat pings and
/// API calls are short: a few hundred cron jobs pinging at the same
/// second fit.
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
    /// Connections closed at the cap to make room for a new client.
    pub evicted: AtomicU64,
}

/// What the accept loop knows of one open connection.
struct Conn {
    /// Inside a request (its headers read, its answer not yet given).
    busy: Arc<AtomicBool>,
    /// Closes the connection; taken once it is asked to close.
    evict: Option<oneshot::Sender<()>>,
}

/// Connections asked to close (evicted) may still be finishing; past this
/// many, the loop waits for them rather than accept more.
const CLOSING_SLACK: usize = 16;
/// How long an evicted connection may take to finish writing an answer.
const EVICTION_GRACE: Duration = Duration::from_millis(200);

/// Accept on `listener` until `stop`, serve each connection with
/// `router` (over TLS when `tls` is set), then give the requests in
/// flight a moment and drop the rest.
///
/// At the cap, a new client takes the place of the oldest connection
/// that is not inside a request — a client slow to send its headers, or
/// an idle keep-alive — so that slow clients cannot keep others out for
/// a whole header timeout. When every connection is inside a request,
/// new clients wait in the kernel's backlog.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    stats: Arc<ServerStats>,
    mut stop: oneshot::Receiver<()>,
) {
    let (stopping_tx, stopping) = watch::channel(false);
    let mut conns = Conns {
        tasks: tokio::task::JoinSet::new(),
        open: BTreeMap::new(),
        next_id: 0,
        router,
        tls,
        stats: stats.clone(),
        stopping,
    };
    let mut backoff = Duration::ZERO;
    let mut all_busy_said = false;
    loop {
        conns.reap();
        let live = conns.live();
        if live >= MAX_CONNECTIONS && conns.none_to_evict() {
            // Every connection is inside a request (or too many asked to
            // close are still closing): new clients wait in the backlog.
            if !all_busy_said {
                all_busy_said = true;
                tracing::warn!(
                    cap = MAX_CONNECTIONS,
                    "HTTP connection cap reached with every connection in a request: new connections wait until one closes"
                );
            }
            tokio::select! {
                _ = &mut stop => break,
                done = conns.tasks.join_next() => {
                    if let Some(Ok(id)) = done {
                        conns.open.remove(&id);
                    }
                    continue;
                }
            }
        }
        all_busy_said = false;
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
        if live >= MAX_CONNECTIONS {
            conns.evict_oldest_idle();
        }
        conns.spawn(tcp, from);
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    conns.drain().await;
}

/// The accept loop's connections: their tasks, what it knows of each, and
/// what a new one is served with.
struct Conns {
    tasks: tokio::task::JoinSet<u64>,
    open: BTreeMap<u64, Conn>,
    next_id: u64,
    router: Router,
    tls: Option<TlsAcceptor>,
    stats: Arc<ServerStats>,
    stopping: watch::Receiver<bool>,
}

impl Conns {
    /// Forget the connections that have ended.
    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            if let Ok(id) = done {
                self.open.remove(&id);
            }
        }
    }

    /// The open connections not asked to close.
    fn live(&self) -> usize {
        self.open.values().filter(|c| c.evict.is_some()).count()
    }

    /// A connection that may be asked to close: not asked yet, and not
    /// inside a request.
    fn evictable(c: &Conn) -> bool {
        c.evict.is_some() && !c.busy.load(Ordering::Relaxed)
    }

    /// At the cap, whether no place can be made: every connection is
    /// inside a request, or too many asked to close are still closing.
    fn none_to_evict(&self) -> bool {
        self.open.len() >= MAX_CONNECTIONS + CLOSING_SLACK
            || !self.open.values().any(Self::evictable)
    }

    /// At the cap, the new client takes the place of the oldest
    /// connection waiting for a request.
    fn evict_oldest_idle(&mut self) {
        if let Some(evict) = self
            .open
            .values_mut()
            .find(|c| Self::evictable(c))
            .and_then(|c| c.evict.take())
        {
            // A send to a connection already ending fails: it frees its
            // place all the same.
            let _ = evict.send(());
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Serve the accepted `tcp` on a task of its own.
    fn spawn(&mut self, tcp: TcpStream, from: SocketAddr) {
        let id = self.next_id;
        self.next_id += 1;
        let busy = Arc::new(AtomicBool::new(false));
        let (evict_tx, evict) = oneshot::channel();
        self.open.insert(
            id,
            Conn {
                busy: busy.clone(),
                evict: Some(evict_tx),
            },
        );
        let conn = Connection {
            router: self.router.clone(),
            stats: self.stats.clone(),
            busy,
            stopping: self.stopping.clone(),
            evict,
        };
        let tls = self.tls.clone();
        self.tasks.spawn(async move {
            conn.stats.open.fetch_add(1, Ordering::Relaxed);
            let stats = conn.stats.clone();
            match tls {
                None => conn.serve(tcp).await,
                Some(acceptor) => conn.serve_tls(tcp, &acceptor, from).await,
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            id
        });
    }

    /// Once the server stops: requests in flight get a moment; then they
    /// are dropped.
    async fn drain(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// One connection's task.
struct Connection {
    router: Router,
    stats: Arc<ServerStats>,
    busy: Arc<AtomicBool>,
    stopping: watch::Receiver<bool>,
    evict: oneshot::Receiver<()>,
}

impl Connection {
    /// The TLS handshake (within the header timeout, and evictable),
    /// then HTTP.
    async fn serve_tls(mut self, tcp: TcpStream, acceptor: &TlsAcceptor, from: SocketAddr) {
        let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp));
        let stream = tokio::select! {
            done = handshake => done,
            _ = &mut self.evict => return,
        };
        match stream {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(e)) => tracing::debug!(%from, error = %e, "TLS handshake failed"),
            Err(_) => {
                self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, "TLS handshake timed out");
            }
        }
    }

    /// Serve HTTP/1 until the client leaves, a timeout closes the
    /// connection, or it is asked to close (evicted, or the server stops:
    /// a request in flight finishes first).
    async fn serve<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        use hyper::service::Service as _;
        let inner = hyper_util::service::TowerToHyperService::new(self.router.clone());
        let busy = self.busy.clone();
        // Busy from the moment the headers are read until the answer is
        // made: the only time a connection may not be evicted.
        let service = hyper::service::service_fn(move |req| {
            busy.store(true, Ordering::Relaxed);
            let answer = inner.call(req);
            let busy = busy.clone();
            async move {
                let answer = answer.await;
                busy.store(false, Ordering::Relaxed);
                answer
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::pin!(conn);
        let served = tokio::select! {
            served = conn.as_mut() => served,
            _ = self.stopping.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            _ = &mut self.evict => {
                // Not inside a request: an answer being written gets a
                // moment to finish, a client that has not sent its
                // headers (hyper would wait for them) is dropped.
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(EVICTION_GRACE, conn).await {
                    Ok(served) => served,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = served {
            if e.is_timeout() {
                self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, "HTTP connection ended");
        }
    }
}
