//! vigie's HTTP server: `/healthz`, heartbeat pings, the JSON API,
//! `/metrics`, and the dashboard's pages. It reads the engine's published
//! state and hands pings to the engine; it never runs checks itself.
//! `dash` renders the pages, `serve` holds the accept loop
//! (timeouts, the connection cap), `guard` what a browser may not do,
//! `host` the host's metrics (node_exporter's names) that `/metrics`
//! serves beside vigie's own.

// The workspace still allows long functions (issue 11 §2); this crate has
// none left and keeps it so.

mod dash;
mod guard;

pub use dash::hash_password;
mod host;
mod serve;

pub use guard::REQUEST_TIMEOUT;
pub use serve::{HEADER_TIMEOUT, MAX_CONNECTIONS, ServerStats};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vigie_engine::{Engine, HeartbeatPing, LAG_BUCKETS, PingError};
use vigie_failover::FailoverActions;
use vigie_failover::quorum::local_vote;
use vigie_metrics::{Exposition, Kind, Sample, Series};

#[derive(Clone)]
struct App {
    engine: Engine,
    /// Bearer token required for the API and `/metrics`, when configured.
    token: Option<Arc<str>>,
    failover: Option<Arc<FailoverActions>>,
    /// What `/metrics` shows (the server's own counters among it).
    metrics: Metrics,
    /// The dashboard's logged-in browsers.
    sessions: Arc<dash::Sessions>,
    /// Served over TLS: the session cookie is `Secure`.
    https: bool,
    /// The dashboard's reads of the store under way.
    reads: Arc<tokio::sync::Semaphore>,
    /// What the fleet view last pulled from the peers.
    fleet: Arc<dash::FleetCache>,
}

/// The largest request body read (an ack's note is the biggest).
const BODY_LIMIT: usize = 64 * 1024;

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stop accepting, finish requests in flight, and return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), &mut self.task).await;
        self.task.abort();
    }
}

/// Samples from beside the engine that `/metrics` shows too (the remote
/// writes' own counters).
pub type ExtraSamples = Arc<dyn Fn() -> Vec<Sample> + Send + Sync>;

/// What `/metrics` shows: vigie's families (checks, jobs, engine, server,
/// process), the host's, and any [`ExtraSamples`]. Read by the page and,
/// as [`Series`], by the remote writes, so that both always say the same.
/// Cheap to clone; the server's counters live here, so that they survive
/// a restart of the server on reload.
#[derive(Clone)]
pub struct Metrics {
    engine: Engine,
    server: Arc<ServerStats>,
    host: Arc<host::HostMetrics>,
    extra: Arc<std::sync::Mutex<Option<ExtraSamples>>>,
}

impl Metrics {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            server: Arc::new(ServerStats::default()),
            host: Arc::new(host::HostMetrics::new()),
            extra: Arc::default(),
        }
    }

    /// Show `extra`'s samples too (replacing the last ones given).
    pub fn set_extra(&self, extra: Option<ExtraSamples>) {
        *self
            .extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = extra;
    }

    /// Write every family into `e`.
    async fn write(&self, e: &mut Exposition) {
        let mut host = self.host.samples().await;
        let extra = self
            .extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(extra) = extra {
            host.extend(extra());
        }
        write_metrics(e, &self.engine, &self.server, &host);
    }

    /// The `/metrics` page.
    pub async fn page(&self) -> String {
        let mut e = Exposition::new();
        self.write(&mut e).await;
        e.finish()
    }

    /// The page's samples, each a series.
    pub async fn series(&self) -> Vec<Series> {
        let mut e = Exposition::collecting();
        self.write(&mut e).await;
        e.into_series()
    }
}

/// Bind `server.listen` and serve (over HTTPS when `server.tls` is set)
/// until [`Server::stop`]. `failover` answers peers' votes and
/// `/api/v1/failover`.
pub async fn serve(
    engine: Engine,
    server: &vigie_config::Server,
    failover: Option<Arc<FailoverActions>>,
) -> std::io::Result<Server> {
    serve_with(Metrics::new(engine), server, failover).await
}

/// [`serve`], with the `/metrics` of `metrics` (which the caller shares
/// with the remote writes).
pub async fn serve_with(
    metrics: Metrics,
    server: &vigie_config::Server,
    failover: Option<Arc<FailoverActions>>,
) -> std::io::Result<Server> {
    let tls = server.tls.as_ref().map(tls::acceptor).transpose()?;
    let stats = metrics.server.clone();
    let app = App {
        engine: metrics.engine.clone(),
        token: server.token.as_ref().map(|t| Arc::from(t.expose())),
        failover,
        metrics,
        sessions: Arc::new(dash::Sessions::default()),
        https: tls.is_some(),
        reads: Arc::new(tokio::sync::Semaphore::new(dash::READS)),
        fleet: Arc::new(dash::FleetCache::default()),
    };
    // The token-guarded routes: authenticated before any body is read.
    let api = Router::new()
        .route("/api/v1/checks", get(checks))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/incidents/{id}/notes", post(note))
        .route(
            "/api/v1/checks/{name}/maintenance",
            post(maintenance_start).delete(maintenance_end),
        )
        .route("/api/v1/sync/{name}/pause", post(sync_pause))
        .route("/api/v1/sync/{name}/resume", post(sync_resume))
        .route("/api/v1/failover", get(failovers))
        .route("/api/v1/series", get(series))
        .route("/metrics", get(metrics_page))
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate));
    let policy = guard::Policy::new(server.listen, server.token.is_some(), stats.clone());
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/ping/{name}", get(ping).post(ping))
        .route("/ping/{name}/{signal}", get(ping_signal).post(ping_signal))
        .route("/api/v1/peer/vote/{failover}", get(peer_vote))
        .route("/api/v1/peer/fleet", get(peer_fleet))
        .merge(api)
        .merge(dash::routes(&app))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(policy, guard::guard))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(server.listen).await?;
    let local_addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let https = tls.is_some();
    if !https && !local_addr.ip().is_loopback() {
        tracing::warn!(
            %local_addr,
            "the HTTP server listens beyond loopback without TLS: tokens and pings cross the network in clear; set [server] tls = {{ cert, key }}"
        );
    }
    let task = tokio::spawn(serve::accept_loop(listener, router, tls, stats, rx));
    tracing::info!(%local_addr, https, "HTTP server listening");
    Ok(Server {
        local_addr,
        shutdown: Some(tx),
        task,
    })
}

/// The `[[peer]]` whose token the request carries (both sides share
/// it); `None` turns the request away.
fn peer_of<'c>(
    config: &'c vigie_config::Config,
    headers: &HeaderMap,
) -> Option<&'c vigie_config::Peer> {
    let token = bearer(headers)?;
    let peer = config
        .peers
        .iter()
        .find(|p| vigie_core::constant_time_eq(token, p.token.expose()));
    if peer.is_none() {
        tracing::warn!("a peer request came with an unknown token");
    }
    peer
}

/// A peer asks for this node's vote on a failover, with the token of the
/// `[[peer]]` entry both sides share.
async fn peer_vote(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let view = app.engine.view();
    let config = view.config();
    let Some(peer) = peer_of(&config, &headers) else {
        return unauthorized();
    };
    let Some(f) = config.failovers.get(&name) else {
        return (StatusCode::NOT_FOUND, format!("no failover named {name}\n")).into_response();
    };
    tracing::debug!(peer = %peer.name, failover = %name, "vote asked");
    axum::Json(local_vote(&config.node.name, f, &view)).into_response()
}

/// A peer's fleet view asks what this node sees: its checks' states and
/// open incidents, never a message or error (read-only, the `[[peer]]`
/// token as for votes).
async fn peer_fleet(State(app): State<App>, headers: HeaderMap) -> Response {
    let config = app.engine.view().config();
    let Some(peer) = peer_of(&config, &headers) else {
        return unauthorized();
    };
    tracing::debug!(peer = %peer.name, "fleet view asked");
    let engine = app.engine.clone();
    let open = match tokio::task::spawn_blocking(move || engine.open_incidents()).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the fleet report could not read the open incidents");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable\n",
            )
                .into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    axum::Json(dash::fleet_report(
        &config.node.name,
        &app.engine.statuses(),
        &open,
    ))
    .into_response()
}

/// Each failover: the side in use, this node's vote, and the last tally.
async fn failovers(State(app): State<App>) -> Response {
    let view = app.engine.view();
    let config = view.config();
    let tallies = app
        .failover
        .as_ref()
        .map(|f| f.tallies())
        .unwrap_or_default();
    let list: Vec<serde_json::Value> = config
        .failovers
        .values()
        .map(|f| {
            let state = app.failover.as_ref().and_then(|a| a.state(&f.name));
            serde_json::json!({
                "name": f.name,
                "record": format!("{}.{}", f.record.name, f.record.zone),
                "quorum": f.quorum,
                "side": state.as_ref().map_or("primary", |s| s.side.as_str()),
                "since": state.as_ref().map(|s| s.since.millis()),
                "reason": state.as_ref().map(|s| s.reason.clone()),
                "vote": local_vote(&config.node.name, f, &view),
                "tally": tallies.get(&f.name),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "unauthorized: send Authorization: Bearer <token>\n",
    )
        .into_response()
}

/// The API and `/metrics`: the token first, then (for writes) JSON.
async fn authenticate(State(app): State<App>, req: Request, next: Next) -> Response {
    if !app.authorized(req.headers()) {
        return unauthorized();
    }
    if let Some(refused) = guard::json_write_refused(req.method(), req.headers()) {
        return refused;
    }
    next.run(req).await
}

impl App {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        match &self.token {
            None => true,
            Some(t) => bearer(headers).is_some_and(|b| vigie_core::constant_time_eq(b, t)),
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// A heartbeat's success ping, by the `Authorization` header or a
/// `token` query parameter.
async fn ping(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    record_ping(&app, &name, &q, &headers, HeartbeatPing::Success, body).await
}

/// `/ping/NAME/fail`, `/ping/NAME/start` and `/ping/NAME/STATUS`, a
/// job's exit status (0 is a success, 1–255 a failure), as
/// healthchecks.io reads them. Any other
/// word is not a route: 404, whatever the token.
async fn ping_signal(
    State(app): State<App>,
    Path((name, signal)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(what) = parse_signal(&signal) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    record_ping(&app, &name, &q, &headers, what, body).await
}

fn parse_signal(signal: &str) -> Option<HeartbeatPing> {
    match signal {
        "fail" => return Some(HeartbeatPing::Failure { exit_status: None }),
        "start" => return Some(HeartbeatPing::Start),
        _ => {}
    }
    // Digits only: `u8`'s parser would take "+3".
    if signal.is_empty() || !signal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match signal.parse::<u8>().ok()? {
        0 => Some(HeartbeatPing::Success),
        status => Some(HeartbeatPing::Failure {
            exit_status: Some(status),
        }),
    }
}

/// Authenticate, then read the body (the job's output: at most the
/// server's limit read, 10 KB of it kept), then record.
async fn record_ping(
    app: &App,
    name: &str,
    q: &TokenQuery,
    headers: &HeaderMap,
    what: HeartbeatPing,
    body: axum::body::Body,
) -> Response {
    let token = bearer(headers).or(q.token.as_deref()).unwrap_or("");
    let answer = match app.engine.heartbeat_authorize(name, token) {
        Ok(()) => match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(bytes) => app.engine.heartbeat_ping(name, token, what, &bytes),
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a ping's body is read up to {} KB\n", BODY_LIMIT / 1024),
                )
                    .into_response();
            }
        },
        Err(e) => Err(e),
    };
    match answer {
        Ok(()) => (StatusCode::OK, "OK\n").into_response(),
        Err(PingError::Unauthorized) => unauthorized(),
        Err(PingError::NotFound) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn checks(State(app): State<App>) -> Response {
    let checks = app.engine.statuses();
    axum::Json(serde_json::json!({ "checks": checks })).into_response()
}

async fn incidents(State(app): State<App>) -> Response {
    match app.engine.incidents(200) {
        Ok(list) => axum::Json(serde_json::json!({ "incidents": list })).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    /// The series' name.
    name: String,
    /// Its labels, `k=v,k2=v2` (none: the series without labels).
    #[serde(default)]
    labels: String,
    /// Milliseconds since the epoch; default: an hour before `to`.
    from: Option<i64>,
    /// Default: now.
    to: Option<i64>,
    /// Buckets of this many seconds from the roll-ups; none: raw samples.
    step: Option<u64>,
}

/// `GET /api/v1/series?name=…&labels=k=v,…&from=…&to=…&step=…`: one
/// series' samples (raw), or its buckets (min, max, sum, count, last)
/// with `step`, unflushed samples included.
async fn series(State(app): State<App>, Query(q): Query<SeriesQuery>) -> Response {
    let Some(series) = app.engine.series().cloned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the series store could not be opened: see the daemon's log\n",
        )
            .into_response();
    };
    let labels: Vec<(&str, &str)> = q
        .labels
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let key = match vigie_store::series::SeriesKey::new(&q.name, labels) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let to =
        q.to.unwrap_or_else(|| vigie_core::Timestamp::now().millis());
    let from = q.from.unwrap_or(to.saturating_sub(3_600_000));
    if from > to {
        return (
            StatusCode::BAD_REQUEST,
            "from is after to; hint: both are milliseconds since the epoch\n",
        )
            .into_response();
    }
    let step = q.step;
    let answer = tokio::task::spawn_blocking(move || match step {
        Some(0) => Err("step must be at least 1 (seconds)".to_owned()),
        Some(step) => series
            .query_step(&key, from, to, std::time::Duration::from_secs(step))
            .map(|b| {
                let buckets: Vec<_> = b
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "ts_ms": a.ts_ms, "min": a.min, "max": a.max,
                            "sum": a.sum, "count": a.count, "last": a.last,
                        })
                    })
                    .collect();
                serde_json::json!({ "series": key.to_string(), "buckets": buckets })
            })
            .map_err(|e| e.to_string()),
        None => series
            .query(&key, from, to)
            .map(|samples| {
                let samples: Vec<_> = samples
                    .iter()
                    .map(|s| serde_json::json!([s.ts_ms, number(s.value)]))
                    .collect();
                serde_json::json!({ "series": key.to_string(), "samples": samples })
            })
            .map_err(|e| e.to_string()),
    })
    .await;
    match answer {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) if e.starts_with("step") => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// JSON has no NaN nor infinities: they are written as Prometheus does,
/// as strings.
fn number(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else if v.is_nan() {
        serde_json::json!("NaN")
    } else if v > 0.0 {
        serde_json::json!("+Inf")
    } else {
        serde_json::json!("-Inf")
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    note: String,
}

async fn ack(State(app): State<App>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    let body: AckBody = if body.is_empty() {
        AckBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"note\": \"…\"}}: {e}\n"),
                )
                    .into_response();
            }
        }
    };
    let note: String = body.note.chars().take(1000).collect();
    let (status, text) = match app.engine.ack(id, &note) {
        Ok(vigie_store::Ack::Acknowledged) => (StatusCode::OK, "acknowledged"),
        Ok(vigie_store::Ack::AlreadyAcknowledged) => (StatusCode::OK, "already acknowledged"),
        Ok(vigie_store::Ack::AlreadyResolved) => (StatusCode::CONFLICT, "already resolved"),
        Ok(vigie_store::Ack::NotFound) => (StatusCode::NOT_FOUND, "no such incident"),
        Err(e) => {
            tracing::error!(error = %e, "acknowledging an incident failed");
            (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
        }
    };
    (
        status,
        axum::Json(serde_json::json!({ "incident": id, "result": text })),
    )
        .into_response()
}

/// A JSON body of type `T` (an empty body reads as its default), or
/// what was expected.
fn json_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    expected: &str,
) -> Result<T, String> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("expected {expected}: {e}\n"))
}

/// An engine's answer to a write of the API as JSON: `{"result": …}`,
/// or `{"error": …}` with its status.
fn engine_answer(r: Result<String, vigie_engine::EngineError>) -> Response {
    match r {
        Ok(result) => axum::Json(serde_json::json!({ "result": result })).into_response(),
        Err(vigie_engine::EngineError::Refused(why)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response(),
        Err(vigie_engine::EngineError::Conflict(why)) => (
            StatusCode::CONFLICT,
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a write of the API failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": "the store is unavailable" })),
            )
                .into_response()
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    #[serde(default)]
    text: String,
}

/// `POST /api/v1/incidents/ID/notes {"text": "…"}`: a public note, by
/// `api`.
async fn note(State(app): State<App>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    let body: NoteBody = match json_body(&body, "{\"text\": \"…\"}") {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || engine.add_note(id, "api", &body.text)).await {
        Ok(Ok(vigie_store::Noted::NotFound)) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no such incident" })),
        )
            .into_response(),
        Ok(r) => engine_answer(r.map(|_| "noted".to_owned())),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    #[serde(default, rename = "for")]
    duration: Option<vigie_core::Duration>,
}

/// `POST /api/v1/checks/NAME/maintenance {"for": "1h"}`.
async fn maintenance_start(
    State(app): State<App>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: MaintenanceBody = match json_body(&body, "{\"for\": \"1h\"}") {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let Some(d) = body.duration else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"for\": \"1h\"}: how long the maintenance lasts\n",
        )
            .into_response();
    };
    blocking_answer(&app, move |e| {
        e.start_maintenance(&name, d.std(), "api")
            .map(|m| format!("in maintenance until {}", m.until.millis()))
    })
    .await
}

/// `DELETE /api/v1/checks/NAME/maintenance`.
async fn maintenance_end(State(app): State<App>, Path(name): Path<String>) -> Response {
    blocking_answer(&app, move |e| {
        e.end_maintenance(&name).map(|was| {
            if was {
                "ended"
            } else {
                "was not in maintenance"
            }
            .to_owned()
        })
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A blocking engine call (one that writes the store) on the blocking
/// pool, answered as [`engine_answer`] does.
async fn blocking_answer(
    app: &App,
    f: impl FnOnce(&Engine) -> Result<String, vigie_engine::EngineError> + Send + 'static,
) -> Response {
    let engine = app.engine.clone();
    match tokio::task::spawn_blocking(move || f(&engine)).await {
        Ok(r) => engine_answer(r),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `POST /api/v1/sync/NAME/pause {"reason": "…"}`, as `vigie sync pause`,
/// but never over a pause the job has (409).
async fn sync_pause(
    State(app): State<App>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: PauseBody = match json_body(&body, "{\"reason\": \"…\"}") {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let reason = body
        .reason
        .unwrap_or_else(|| "paused through the API".to_owned());
    let reason: String = reason.chars().take(200).collect();
    blocking_answer(&app, move |e| {
        e.sync_pause(&name, &reason).map(|()| "paused".to_owned())
    })
    .await
}

/// `POST /api/v1/sync/NAME/resume`, as `vigie sync resume`, but never
/// of a failover's fence (409).
async fn sync_resume(State(app): State<App>, Path(name): Path<String>) -> Response {
    blocking_answer(&app, move |e| {
        e.sync_resume(&name, None)
            .map(|was| if was { "resumed" } else { "was not paused" }.to_owned())
    })
    .await
}

async fn metrics_page(State(app): State<App>) -> Response {
    let body = app.metrics.page().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The whole `/metrics` page: vigie's own families, then the host's
/// (`host`, from `host::HostMetrics::samples`, and the extra samples).
fn write_metrics(e: &mut Exposition, engine: &Engine, server: &ServerStats, host: &[Sample]) {
    let statuses = engine.statuses();
    check_metrics(e, &statuses);
    backup_metrics(e, &engine.view().config(), engine.board());
    converge_metrics(e, &engine.view().config(), engine.board());
    engine_metrics(e, engine);
    server_metrics(e, server);
    vigie_metrics::write_process_metrics(e);
    e.samples(host);
}

/// A family of one sample without labels.
fn single(e: &mut Exposition, name: &str, kind: Kind, help: &str, value: f64) {
    e.family(name, kind, help);
    e.sample(name, &[], value);
}

/// A family of one sample per check in `statuses`, labelled with its name.
fn per_check<'a>(
    e: &mut Exposition,
    name: &str,
    kind: Kind,
    help: &str,
    statuses: impl Iterator<Item = &'a vigie_engine::CheckStatus>,
    value: impl Fn(&vigie_engine::CheckStatus) -> f64,
) {
    e.family(name, kind, help);
    for s in statuses {
        e.sample(name, &[("check", &s.name)], value(s));
    }
}

/// What each check's last run found, and its counters.
fn check_metrics(e: &mut Exposition, statuses: &[vigie_engine::CheckStatus]) {
    e.family(
        "vigie_check_up",
        Kind::Gauge,
        "1 when the check's last result was ok, 0 when it failed.",
    );
    for s in statuses {
        if let Some(ok) = s.last_ok {
            e.sample(
                "vigie_check_up",
                &[("check", &s.name), ("kind", s.kind)],
                f64::from(u8::from(ok)),
            );
        }
    }
    e.family(
        "vigie_check_failing",
        Kind::Gauge,
        "1 when the check is failing after its fail_after threshold.",
    );
    for s in statuses {
        let failing = s.state == vigie_core::CheckState::Failing;
        e.sample(
            "vigie_check_failing",
            &[("check", &s.name), ("severity", s.severity.as_str())],
            f64::from(u8::from(failing)),
        );
    }
    per_check(
        e,
        "vigie_check_duration_seconds",
        Kind::Gauge,
        "How long the check's last run took.",
        statuses.iter().filter(|s| s.last_run.is_some()),
        |s| s.last_duration_seconds,
    );
    per_check(
        e,
        "vigie_check_runs_total",
        Kind::Counter,
        "Runs of the check.",
        statuses.iter(),
        |s| s.runs_total as f64,
    );
    per_check(
        e,
        "vigie_check_failures_total",
        Kind::Counter,
        "Failed runs of the check.",
        statuses.iter(),
        |s| s.failures_total as f64,
    );
    e.family(
        "vigie_check_value",
        Kind::Gauge,
        "Numbers measured by the check's last run, by name.",
    );
    for s in statuses {
        for m in &s.metrics {
            e.sample(
                "vigie_check_value",
                &[("check", &s.name), ("name", &m.name)],
                m.value,
            );
        }
    }
}

/// A report of a backup job on the board, and the families read off its
/// numbers: (metric, the report's number, help).
struct Reported {
    report: fn(&str) -> String,
    families: &'static [(&'static str, &'static str, &'static str)],
}

/// Each report of a backup job and its families on `/metrics`.
const BACKUP_REPORTS: [Reported; 4] = [
    Reported {
        report: vigie_core::backup_report,
        families: &[
            (
                "vigie_backup_last_success_timestamp_seconds",
                vigie_core::backup_metric::LAST_SUCCESS,
                "When the job's last good snapshot was saved (seconds since the epoch).",
            ),
            (
                "vigie_backup_last_duration_seconds",
                vigie_core::backup_metric::DURATION,
                "How long the job's last run took.",
            ),
            (
                "vigie_backup_last_bytes_added",
                vigie_core::backup_metric::BYTES_ADDED,
                "What the job's last run added to its repository, as stored.",
            ),
            (
                "vigie_backup_last_result",
                vigie_core::backup_metric::RESULT,
                "1 when the job's last run made its snapshot, 0 when it failed.",
            ),
        ],
    },
    Reported {
        report: vigie_core::drill_report,
        families: &[
            (
                "vigie_backup_last_drill_timestamp_seconds",
                vigie_core::drill_metric::LAST_TIMESTAMP,
                "When the job's last restore drill ended (seconds since the epoch).",
            ),
            (
                "vigie_backup_last_drill_restore_seconds",
                vigie_core::drill_metric::RESTORE_SECONDS,
                "How long the last drill's restore took: the measured recovery time.",
            ),
            (
                "vigie_backup_last_drill_result",
                vigie_core::drill_metric::RESULT,
                "1 when every byte the last drill restored matched, 0 when it failed.",
            ),
        ],
    },
    Reported {
        report: vigie_core::integrity_report,
        families: &[
            (
                "vigie_backup_last_check_timestamp_seconds",
                vigie_core::integrity_metric::LAST_TIMESTAMP,
                "When the last integrity check of the job's repository ended (seconds since the epoch).",
            ),
            (
                "vigie_backup_last_check_seconds",
                vigie_core::integrity_metric::SECONDS,
                "How long the last integrity check took.",
            ),
            (
                "vigie_backup_last_check_result",
                vigie_core::integrity_metric::RESULT,
                "1 when the last integrity check found no error, 0 when it found damage or could not run.",
            ),
        ],
    },
    Reported {
        report: vigie_core::repository_report,
        families: &[
            (
                "vigie_backup_repository_up",
                vigie_core::repository_metric::UP,
                "1 when the job's repository answered when last asked, 0 when it did not.",
            ),
            (
                "vigie_backup_repository_seconds",
                vigie_core::repository_metric::SECONDS,
                "How long the job's repository took to answer (connection included).",
            ),
        ],
    },
];

/// Each `[[backup]]` job's last run, drill, integrity check and
/// repository reach, as the job reports them on the engine's board: one
/// sample per job of each family, when known.
fn backup_metrics(e: &mut Exposition, config: &vigie_config::Config, board: &vigie_core::Board) {
    for Reported { report, families } in &BACKUP_REPORTS {
        let numbers: Vec<(&str, Vec<vigie_core::Metric>)> = config
            .backups
            .iter()
            .filter_map(|j| {
                let (outcome, _) = board.report(&report(&j.name))?;
                Some((j.name.as_str(), outcome.metrics))
            })
            .collect();
        for &(name, metric, help) in *families {
            e.family(name, Kind::Gauge, help);
            for (job, values) in &numbers {
                if let Some(v) = values.iter().find(|v| v.name == metric) {
                    e.sample(name, &[("job", job)], v.value);
                }
            }
        }
    }
}

/// Each `[[converge]]` job's last run, as it reports on the board: when
/// it ended, and its resources by outcome.
fn converge_metrics(e: &mut Exposition, config: &vigie_config::Config, board: &vigie_core::Board) {
    use vigie_core::converge_metric as cm;
    let numbers: Vec<(&str, Vec<vigie_core::Metric>)> = config
        .converges
        .iter()
        .filter_map(|j| {
            let (outcome, _) = board.report(&vigie_core::converge_report(&j.name))?;
            Some((j.name.as_str(), outcome.metrics))
        })
        .collect();
    let name = "vigie_converge_last_run_timestamp_seconds";
    e.family(
        name,
        Kind::Gauge,
        "When the job's last converge run ended (seconds since the epoch).",
    );
    for (job, values) in &numbers {
        if let Some(v) = values.iter().find(|v| v.name == cm::LAST_RUN) {
            e.sample(name, &[("job", job)], v.value);
        }
    }
    let name = "vigie_converge_resources";
    e.family(
        name,
        Kind::Gauge,
        "The job's last converge run's resources by outcome (compliant, non_compliant, repaired, skipped, error).",
    );
    for (job, values) in &numbers {
        for outcome in cm::OUTCOMES {
            let key = format!("{}{outcome}", cm::RESOURCES);
            if let Some(v) = values.iter().find(|v| v.name == key) {
                e.sample(name, &[("job", job), ("outcome", outcome)], v.value);
            }
        }
    }
}

/// The scheduler's lag, the probes' timeouts and panics, notifications and
/// the store's errors.
/// The series feed's counters.
fn series_metrics(e: &mut Exposition, engine: &Engine) {
    let Some(series) = engine.series() else {
        return;
    };
    let s = series.stats();
    for (name, kind, help, n) in [
        (
            "vigie_series_samples_total",
            Kind::Counter,
            "Samples appended to the series store.",
            &s.appended,
        ),
        (
            "vigie_series_dropped_samples_total",
            Kind::Counter,
            "Samples not kept: the queue was full, the store failed, or a sample came before the series' last.",
            &s.dropped,
        ),
        (
            "vigie_series_errors_total",
            Kind::Counter,
            "Series store operations that failed (append, flush, retention).",
            &s.errors,
        ),
        (
            "vigie_series_open",
            Kind::Gauge,
            "Series with open chunks in memory.",
            &s.open_series,
        ),
        (
            "vigie_series_memory_bytes",
            Kind::Gauge,
            "Estimated bytes of the open series in memory (at the last flush).",
            &s.memory_bytes,
        ),
    ] {
        single(e, name, kind, help, n.load(Ordering::Relaxed) as f64);
    }
}

fn engine_metrics(e: &mut Exposition, engine: &Engine) {
    series_metrics(e, engine);
    let stats = engine.stats();
    e.family(
        "vigie_schedule_lag_seconds",
        Kind::Histogram,
        "How late checks started against their schedule.",
    );
    for (i, bound) in LAG_BUCKETS.iter().enumerate() {
        let le = bound.to_string();
        e.sample(
            "vigie_schedule_lag_seconds_bucket",
            &[("le", &le)],
            stats.lag_buckets[i].load(Ordering::Relaxed) as f64,
        );
    }
    let count = stats.lag_count.load(Ordering::Relaxed) as f64;
    e.sample(
        "vigie_schedule_lag_seconds_bucket",
        &[("le", "+Inf")],
        count,
    );
    e.sample(
        "vigie_schedule_lag_seconds_sum",
        &[],
        stats.lag_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
    e.sample("vigie_schedule_lag_seconds_count", &[], count);
    for (name, help, n) in [
        (
            "vigie_probe_timeouts_total",
            "Probe runs cut at their timeout.",
            &stats.timeouts_total,
        ),
        (
            "vigie_probe_panics_total",
            "Probe runs that crashed.",
            &stats.panics_total,
        ),
    ] {
        single(
            e,
            name,
            Kind::Counter,
            help,
            n.load(Ordering::Relaxed) as f64,
        );
    }
    e.family(
        "vigie_notifications_total",
        Kind::Counter,
        "Notifications by notifier and result.",
    );
    for (notifier, (ok, failed)) in stats
        .notifications
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        e.sample(
            "vigie_notifications_total",
            &[("notifier", notifier), ("result", "delivered")],
            *ok as f64,
        );
        e.sample(
            "vigie_notifications_total",
            &[("notifier", notifier), ("result", "failed")],
            *failed as f64,
        );
    }
    single(
        e,
        "vigie_store_errors_total",
        Kind::Counter,
        "Store writes that failed.",
        engine.store_errors() as f64,
    );
}

/// The HTTP server's connections and refusals.
fn server_metrics(e: &mut Exposition, server: &ServerStats) {
    for (name, kind, help, n) in [
        (
            "vigie_http_connections",
            Kind::Gauge,
            "HTTP connections open now.",
            &server.open,
        ),
        (
            "vigie_http_accept_errors_total",
            Kind::Counter,
            "Failed accepts of HTTP connections (out of descriptors), each followed by a back-off.",
            &server.accept_errors,
        ),
        (
            "vigie_http_header_timeouts_total",
            Kind::Counter,
            "HTTP connections closed for not sending a TLS handshake or headers in time.",
            &server.header_timeouts,
        ),
        (
            "vigie_http_evictions_total",
            Kind::Counter,
            "HTTP connections closed at the cap, while waiting for a request, to make room for a new client.",
            &server.evicted,
        ),
    ] {
        single(e, name, kind, help, n.load(Ordering::Relaxed) as f64);
    }
    e.family(
        "vigie_http_refused_total",
        Kind::Counter,
        "Requests refused as a browser's: a foreign Host (DNS rebinding), a cross-site write.",
    );
    for (reason, n) in [
        ("host", &server.refused_host),
        ("origin", &server.refused_origin),
    ] {
        e.sample(
            "vigie_http_refused_total",
            &[("reason", reason)],
            n.load(Ordering::Relaxed) as f64,
        );
    }
}

mod tls {
    //! HTTPS: the acceptor for `[server] tls`; `serve` runs it on each
    //! connection.

    use std::sync::Arc;

    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::TlsAcceptor;

    fn invalid(msg: String) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
    }

    /// A TLS acceptor for the PEM certificate chain and key of `tls`.
    pub(crate) fn acceptor(tls: &vigie_config::ServerTls) -> std::io::Result<TlsAcceptor> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| invalid(format!("{}: {e}", p.display())))
        };
        let cert_pem = read(&tls.cert)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("{}: {e}", tls.cert.display())))?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "{}: no PEM certificate",
                tls.cert.display()
            )));
        }
        let key_pem = read(&tls.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                invalid(format!("{}: no PEM private key", tls.key.display()))
            }
            e => invalid(format!("{}: {e}", tls.key.display())),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                invalid(format!(
                    "{} and {}: {e}",
                    tls.cert.display(),
                    tls.key.display()
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_acceptor_needs_a_pem_certificate_and_a_pem_key() {
            let dir = tempfile::tempdir().unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            let cert = params.self_signed(&key).unwrap();
            let path = |name: &str, body: &str| {
                let p = dir.path().join(name);
                std::fs::write(&p, body).unwrap();
                p
            };
            let tls = |cert, key| vigie_config::ServerTls { cert, key };
            let cert_pem = path("cert.pem", &cert.pem());
            let key_pem = path("key.pem", &key.serialize_pem());
            let empty = path("empty.pem", "");

            assert!(acceptor(&tls(cert_pem.clone(), key_pem.clone())).is_ok());
            let e = acceptor(&tls(empty.clone(), key_pem)).err().unwrap();
            assert!(
                e.to_string().ends_with("empty.pem: no PEM certificate"),
                "{e}"
            );
            let e = acceptor(&tls(cert_pem.clone(), empty)).err().unwrap();
            assert!(
                e.to_string().ends_with("empty.pem: no PEM private key"),
                "{e}"
            );
            // The certificate given as the key: a PEM file, but no key in it.
            let e = acceptor(&tls(cert_pem.clone(), cert_pem)).err().unwrap();
            assert!(
                e.to_string().ends_with("cert.pem: no PEM private key"),
                "{e}"
            );
        }
    }
}

#[cfg(test)]
mod signal_tests {
    use super::*;

    #[test]
    fn exit_statuses_and_fail_are_signals_and_nothing_else() {
        assert_eq!(parse_signal("0"), Some(HeartbeatPing::Success));
        assert_eq!(parse_signal("start"), Some(HeartbeatPing::Start));
        assert_eq!(
            parse_signal("fail"),
            Some(HeartbeatPing::Failure { exit_status: None })
        );
        assert_eq!(
            parse_signal("255"),
            Some(HeartbeatPing::Failure {
                exit_status: Some(255)
            })
        );
        for word in ["256", "+3", "-1", "", "start2", "FAIL", "3x"] {
            assert_eq!(parse_signal(word), None, "{word}");
        }
    }
}
