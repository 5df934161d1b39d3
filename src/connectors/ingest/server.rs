//! The HTTP side of the ingest endpoint: InfluxDB's write API on hyper (HTTP/1.1).
//!
//! A write request goes through, in order: authentication (401), the org/bucket or
//! database it names (404), its precision (400), its size (413, before and after gzip),
//! the memory budget for bodies (429 with `Retry-After`, before more of the body is read),
//! the body timeout (408), parsing (a point the job's sink could not take — a limit of the
//! target — is a bad line too), the pending-points bound (429 with `Retry-After`), the
//! queue to the engine (503 when the job is stopping), the dead-letter file for its bad
//! lines, and — in `durable` mode — the engine's acknowledgement. Nothing is dead-lettered
//! or queued for a request refused before that, so a client's retry never duplicates a
//! dead letter.
//!
//! Around requests, the connections: at most `max_connections` are served, each in a task
//! that closes it when its client stalls (headers not in within `header_timeout`: 408;
//! idle past `idle_timeout`) or when it is chosen to make room for a new one (see
//! `connections`). Each such event is counted (`tsmig_ingest_*` metrics) and
//! logged once, at `info`: a stalled client is the client's affair, not the job's.
//!
//! Errors answer with InfluxDB 2's JSON body, `{"code": "...", "message": "..."}`; the v1
//! endpoint adds `"error"` with the same text, which is what 1.x clients read. A partial
//! write is a 400 whose body also lists every rejected line: `"rejected": [{"line",
//! "reason"}]`.
//!
//! Gunzipping and parsing run on tokio's blocking pool: a 25 MB body takes tens of
//! milliseconds, which must not stall the runtime the sinks share.

use super::budget::{admitted, BodyBytes, Budget, POINTS_PER_TEXT_BYTE};
use super::config::{AckMode, Api, IngestSourceConfig};
use super::connections::{Connection, Connections, Phase, Timeouts, Watched};
use super::parse::{parse_body_counted, Parsed, Precision, RejectedLine};
use super::{Ack, IngestQueue, Ingested};
use crate::dead_letter::DeadLetters;
use crate::metrics::Counters;
use crate::source::push::Pending;
use crate::source::SourceError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};

/// What `X-Influxdb-Version` and `/health` report.
const VERSION: &str = concat!("tsmig-", env!("CARGO_PKG_VERSION"));

/// How long a new connection waits, at `max_connections`, for an evicted one to close
/// before another is chosen.
const EVICTION_WAIT: Duration = Duration::from_millis(250);

/// How long a connection being closed quietly (idle, or drained) may take to flush what
/// it has to write before it is dropped.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Warnings about a bound being reached are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Rejected lines listed in a 400's `message` (all are in `rejected` and the dead letters).
const LINES_IN_MESSAGE: usize = 20;

/// Whether the job's sink can take a point at all (its limits, e.g. Timestream's); a point
/// it refuses is a rejected line of its request.
pub type PointCheck = Arc<dyn Fn(&crate::model::Point) -> Result<(), String> + Send + Sync>;

/// The running endpoint. Dropping it does not stop it; call [`shutdown`](Self::shutdown).
pub struct IngestServer {
    local_addr: SocketAddr,
    trigger: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl IngestServer {
    /// Binds `config.listen` and serves until `stop` completes or
    /// [`shutdown`](Self::shutdown) is called; either drains (see the module docs). Call
    /// it inside a tokio runtime (multi-threaded: parsing uses the blocking pool).
    pub async fn start(
        config: &IngestSourceConfig,
        dead_letters: DeadLetters,
        counters: Arc<Counters>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(IngestServer, IngestQueue), SourceError> {
        Self::start_checked(config, Arc::new(|_| Ok(())), dead_letters, counters, stop).await
    }

    /// [`start`](Self::start), refusing the points `check` refuses as bad lines.
    pub async fn start_checked(
        config: &IngestSourceConfig,
        check: PointCheck,
        dead_letters: DeadLetters,
        counters: Arc<Counters>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(IngestServer, IngestQueue), SourceError> {
        config
            .check_values()
            .map_err(|(key, message)| SourceError::Server(format!("source.{key}: {message}")))?;
        let tls = match &config.tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
                tls.server_config().map_err(SourceError::Server)?,
            ))),
            None => None,
        };
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| SourceError::Server(format!("cannot listen on {}: {e}", config.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| SourceError::Server(format!("cannot listen on {}: {e}", config.listen)))?;
        let queue = IngestQueue::new();
        let endpoint = Arc::new(Endpoint {
            config: config.clone(),
            queue: queue.clone(),
            pending: Pending::new(config.max_pending_points),
            budget: Budget::new(config.max_body_bytes_in_flight),
            connections: Connections::new(config.connection_limit()),
            timeouts: Timeouts {
                header: config.header_timeout,
                body: config.body_timeout,
                idle: config.idle_timeout,
            },
            warned_full: Occasionally::default(),
            warned_budget: Occasionally::default(),
            check,
            dead_letters,
            counters,
        });
        let (trigger, triggered) = watch::channel(false);
        let stop_trigger = trigger.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop => { let _ = stop_trigger.send(true); }
                _ = stop_trigger.closed() => {}
            }
        });
        tracing::info!(
            address = %local_addr,
            tls = config.tls.is_some(),
            max_connections = endpoint.connections.max(),
            max_body_bytes_in_flight = config.max_body_bytes_in_flight,
            header_timeout = %humantime::format_duration(config.header_timeout),
            body_timeout = %humantime::format_duration(config.body_timeout),
            "ingest endpoint listening"
        );
        let task = tokio::spawn(serve(listener, endpoint, tls, triggered));
        Ok((
            IngestServer {
                local_addr,
                trigger,
                task,
            },
            queue,
        ))
    }

    /// The address the endpoint listens on (the real port when `listen` said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, finishes the requests in progress, closes the queue.
    pub async fn shutdown(self) {
        let _ = self.trigger.send(true);
        self.stopped().await;
    }

    /// Waits until the endpoint has stopped (its `stop` future completed) and drained.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the ingest endpoint's task failed");
        }
    }
}

/// Accepts connections until told to stop, then drains.
async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header timeout is the connection task's: it starts at a request's first byte
    // (hyper's starts when the previous answer is sent, so it would also cut idle
    // kept-alive connections) and answers 408 (hyper's closes without a word).
    http.timer(TokioTimer::new()).header_read_timeout(None);
    loop {
        let free = endpoint.connections.try_slot();
        let (tcp, remote) = tokio::select! {
            _ = stop_requested(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "ingest endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match free {
            Some(slot) => slot,
            None => match endpoint.make_room(&mut stopping).await {
                Some(slot) => slot,
                None if *stopping.borrow() => break,
                None => {
                    endpoint.refuse(tcp, remote, tls.is_none());
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(
            endpoint.clone(),
            tcp,
            remote,
            slot,
            tls.clone(),
            http.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    tracing::info!("ingest endpoint: no new connections; finishing the requests in progress");
    endpoint.connections.all_closed().await;
    endpoint.queue.close();
    tracing::info!("ingest endpoint stopped");
}

/// Completes once the endpoint is told to stop.
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// One connection, from accept (and TLS handshake) to close; it holds `slot` throughout.
async fn serve_connection(
    endpoint: Arc<Endpoint>,
    tcp: TcpStream,
    remote: SocketAddr,
    slot: OwnedSemaphorePermit,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: hyper::server::conn::http1::Builder,
    mut stopping: watch::Receiver<bool>,
) {
    let registered = endpoint.connections.register(remote, slot);
    let connection = registered.connection.clone();
    let _ = tcp.set_nodelay(true);
    match tls {
        None => drive(endpoint, tcp, connection, http, stopping).await,
        Some(acceptor) => {
            let header = endpoint.timeouts.header;
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(header, acceptor.accept(tcp)) => handshake,
                _ = connection.evicted() => return endpoint.closed(&connection, Closed::Evicted),
                // Draining: a connection still shaking hands has asked nothing yet.
                _ = stop_requested(&mut stopping) => return,
            };
            match handshake {
                Ok(Ok(stream)) => drive(endpoint, stream, connection, http, stopping).await,
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => endpoint.closed(&connection, Closed::HeaderTimeout),
            }
        }
    }
    drop(registered);
}

/// Serves HTTP on one connection, closing it when its client stalls, when it is chosen to
/// make room, or (once idle) when the endpoint drains.
async fn drive<S>(
    endpoint: Arc<Endpoint>,
    stream: S,
    connection: Arc<Connection>,
    http: hyper::server::conn::http1::Builder,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnectionService {
        endpoint: endpoint.clone(),
        connection: connection.clone(),
    };
    let io = TokioIo::new(Watched::new(stream, connection.clone()));
    let mut conn = http.serve_connection(io, service);
    let evicted = connection.evicted();
    tokio::pin!(evicted);
    let (mut evicted_seen, mut draining) = (false, false);
    // Set when the connection is being closed quietly: dropped then, flushed or not.
    let mut closing_by: Option<tokio::time::Instant> = None;
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        // Closing: nothing but the end of the grace matters any more.
        let wake = closing_by
            .or_else(|| connection.deadline(&endpoint.timeouts))
            .unwrap_or_else(far);
        tokio::select! {
            served = &mut conn => {
                if let Err(e) = served {
                    tracing::debug!(remote = %connection.remote, error = %e, "ingest connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                if closing_by.is_some_and(|by| by <= tokio::time::Instant::now()) {
                    return;
                }
                if connection
                    .deadline(&endpoint.timeouts)
                    .is_none_or(|d| d > tokio::time::Instant::now())
                {
                    continue;
                }
                match connection.phase() {
                    Phase::Head => {
                        endpoint.closed(&connection, Closed::HeaderTimeout);
                        let answer = Answer::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "request timeout",
                            format!(
                                "the request's headers did not arrive within header_timeout ({})",
                                humantime::format_duration(endpoint.timeouts.header)
                            ),
                        );
                        return answer_and_close(conn, answer).await;
                    }
                    _ => {
                        endpoint.closed(&connection, Closed::Idle);
                        Pin::new(&mut conn).graceful_shutdown();
                        closing_by = Some(tokio::time::Instant::now() + CLOSING_GRACE);
                    }
                }
            }
            _ = connection.changed.notified() => {}
            _ = &mut evicted, if !evicted_seen && closing_by.is_none() => {
                evicted_seen = true;
                endpoint.closed(&connection, Closed::Evicted);
                match connection.phase() {
                    Phase::Head if connection.has_started_a_request() => {
                        return answer_and_close(conn, endpoint.no_room()).await;
                    }
                    Phase::Head => return,
                    Phase::Idle => {
                        Pin::new(&mut conn).graceful_shutdown();
                        closing_by = Some(tokio::time::Instant::now() + CLOSING_GRACE);
                    }
                    // The handler answers 503 (a body still coming) or finishes (a request
                    // whose body is in); then the connection closes.
                    Phase::Body | Phase::Answering => Pin::new(&mut conn).graceful_shutdown(),
                }
            }
            _ = stop_requested(&mut stopping), if !draining => {
                draining = true;
                Pin::new(&mut conn).graceful_shutdown();
                match connection.phase() {
                    // Nothing asked: nothing to finish.
                    Phase::Head if !connection.has_started_a_request() => return,
                    Phase::Idle => closing_by = Some(tokio::time::Instant::now() + CLOSING_GRACE),
                    // A request in progress is finished, then the connection closes; one
                    // whose headers are still coming is bounded by header_timeout.
                    _ => {}
                }
            }
        }
    }
}

/// Takes the connection back from hyper (which was reading a request's headers, so has
/// nothing to write), writes `answer` on it and closes it.
async fn answer_and_close<S>(
    conn: hyper::server::conn::http1::Connection<TokioIo<Watched<S>>, ConnectionService>,
    answer: Answer,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = conn.into_parts().io.into_inner();
    let bytes = answer.into_raw_response();
    // A client that does not read gets no more than a second of our time.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(&bytes).await?;
        io.shutdown().await
    })
    .await;
}

/// hyper's service for one connection: each request moves the connection through its
/// phases (headers read: `Body`; answered: `Idle`).
#[derive(Clone)]
struct ConnectionService {
    endpoint: Arc<Endpoint>,
    connection: Arc<Connection>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.connection.enter(Phase::Body);
        let endpoint = self.endpoint.clone();
        let connection = self.connection.clone();
        Box::pin(async move {
            let response = endpoint.handle(request, &connection).await;
            connection.enter(Phase::Idle);
            Ok(response)
        })
    }
}

/// Why the endpoint closed a connection (or refused it).
#[derive(Debug, Clone, Copy)]
enum Closed {
    /// Its headers (or TLS handshake) did not arrive within `header_timeout`.
    HeaderTimeout,
    /// Its body did not arrive within `body_timeout`.
    BodyTimeout,
    /// Idle past `idle_timeout`.
    Idle,
    /// Closed to make room at `max_connections`.
    Evicted,
    /// Waited `header_timeout` at `max_connections` without room being made.
    Refused,
}

impl Closed {
    fn name(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::BodyTimeout => "body_timeout",
            Closed::Idle => "idle_timeout",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        }
    }
}

/// Lets a warning through at most once per [`WARN_EVERY`].
#[derive(Default)]
struct Occasionally {
    /// Seconds since the process started at the last warning, plus one (0: never).
    last: AtomicU64,
}

impl Occasionally {
    fn now(&self) -> bool {
        let now = crate::metrics::process_start().elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        (last == 0 || now >= last + WARN_EVERY.as_secs())
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// What every connection's requests share.
struct Endpoint {
    config: IngestSourceConfig,
    queue: IngestQueue,
    pending: Arc<Pending>,
    budget: Arc<Budget>,
    connections: Arc<Connections>,
    timeouts: Timeouts,
    warned_full: Occasionally,
    warned_budget: Occasionally,
    check: PointCheck,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
}

impl Endpoint {
    /// At `max_connections`, with a new connection accepted: closes connections that
    /// serve nobody (see [`Connections::evict_one`]) until a slot is free. `None` if the
    /// endpoint is stopping, or no slot came free within `header_timeout` (every
    /// connection has a request in progress).
    async fn make_room(
        &self,
        stopping: &mut watch::Receiver<bool>,
    ) -> Option<OwnedSemaphorePermit> {
        if self.warned_full.now() {
            tracing::warn!(
                max_connections = self.connections.max(),
                "ingest endpoint: at max_connections; closing idle and stalled connections to admit new ones"
            );
        }
        let give_up = tokio::time::Instant::now() + self.timeouts.header;
        loop {
            if let Some(slot) = self.connections.try_slot() {
                return Some(slot);
            }
            self.connections.evict_one();
            tokio::select! {
                slot = self.connections.slot() => return Some(slot),
                _ = tokio::time::sleep(EVICTION_WAIT) => {}
                _ = stop_requested(stopping) => return None,
            }
            if tokio::time::Instant::now() >= give_up {
                return None;
            }
        }
    }

    /// Answers a connection no room could be made for 503 (plain HTTP; a TLS client gets
    /// the connection closed) without holding up the accept loop.
    fn refuse(&self, mut tcp: TcpStream, remote: SocketAddr, plain: bool) {
        self.count(Closed::Refused);
        tracing::info!(%remote, max_connections = self.connections.max(), "ingest: refused a connection: every connection has a request in progress");
        let answer = plain.then(|| self.no_room().into_raw_response());
        tokio::spawn(async move {
            if let Some(bytes) = answer {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    tcp.write_all(&bytes).await?;
                    tcp.shutdown().await
                })
                .await;
            }
        });
    }

    /// 503 for a connection closed, or refused, at `max_connections`.
    fn no_room(&self) -> Answer {
        Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "the endpoint is at max_connections ({}); retry",
                self.connections.max()
            ),
        )
        .retry_after(self.config.retry_after)
        .closing()
    }

    fn count(&self, why: Closed) {
        metrics::counter!("tsmig_ingest_connections_closed_total", "reason" => why.name())
            .increment(1);
    }

    /// Counts and logs (once) a connection closed for `why`.
    fn closed(&self, connection: &Connection, why: Closed) {
        self.count(why);
        let remote = connection.remote;
        let waited = humantime::format_duration(Duration::from_millis(
            connection.in_phase_for().as_millis() as u64,
        ));
        match why {
            Closed::HeaderTimeout => tracing::info!(
                %remote, %waited,
                "ingest: closed a connection whose request headers did not arrive within header_timeout (408)"
            ),
            Closed::BodyTimeout => tracing::info!(
                %remote, %waited,
                "ingest: closed a connection whose request body did not arrive within body_timeout (408)"
            ),
            Closed::Evicted => tracing::info!(
                %remote, %waited, phase = ?connection.phase(),
                "ingest: closed a connection to make room at max_connections"
            ),
            Closed::Idle => tracing::debug!(%remote, "ingest: closed an idle connection"),
            Closed::Refused => {}
        }
    }
}

/// A refusal or a failure, answered with InfluxDB's JSON error body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// InfluxDB's error code: `invalid`, `unauthorized`, `not found`, ...
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    rejected: Vec<RejectedLine>,
    /// Close the connection after answering: the request's body was not read to its end.
    close: bool,
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            rejected: Vec::new(),
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    fn into_response(self, api: Option<Api>) -> Response<Full<Bytes>> {
        let mut body = json!({"code": self.code, "message": self.message});
        if api == Some(Api::V1) {
            body["error"] = self.message.clone().into();
        }
        if !self.rejected.is_empty() {
            body["rejected"] = self
                .rejected
                .iter()
                .map(|r| json!({"line": r.line, "reason": r.reason}))
                .collect();
        }
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after_seconds() {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Whole seconds, rounded up: `Retry-After: 0` would invite a busy loop.
    fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after
            .map(|after| (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1))
    }

    /// The answer as HTTP/1.1 bytes, for a connection hyper no longer serves; it closes.
    fn into_raw_response(self) -> Vec<u8> {
        let body = json!({"code": self.code, "message": self.message}).to_string();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\nx-influxdb-version: {VERSION}\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        );
        if let Some(seconds) = self.retry_after_seconds() {
            head.push_str(&format!("retry-after: {seconds}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        head.into_bytes()
    }
}

/// 429 for a request whose body would pass `max_body_bytes_in_flight`.
fn over_budget(budget: &Budget, retry_after: Duration) -> Answer {
    Answer::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests",
        format!(
            "request bodies in memory are at max_body_bytes_in_flight ({} of {} bytes); retry later",
            budget.held(),
            budget.max()
        ),
    )
    .retry_after(retry_after)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn no_content() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

impl Endpoint {
    async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Response<Full<Bytes>> {
        let api = match request.uri().path() {
            "/api/v2/write" if self.config.api.contains(&Api::V2) => Some(Api::V2),
            "/write" if self.config.api.contains(&Api::V1) => Some(Api::V1),
            _ => None,
        };
        let mut response = match (request.method(), request.uri().path(), api) {
            (&Method::POST, _, Some(api)) => match self.write(api, request, connection).await {
                Ok(response) => response,
                Err(answer) => answer.into_response(Some(api)),
            },
            (_, _, Some(api)) => Answer::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "writes are POST requests",
            )
            .into_response(Some(api)),
            (&Method::GET | &Method::HEAD, "/ping", None) => no_content(),
            (&Method::GET | &Method::HEAD, "/health", None) => json_response(
                StatusCode::OK,
                &json!({
                    "name": "tsmig",
                    "message": "ready for queries and writes",
                    "status": "pass",
                    "checks": [],
                    "version": VERSION,
                    "commit": "",
                }),
            ),
            _ => Answer::new(StatusCode::NOT_FOUND, "not found", "path not found")
                .into_response(None),
        };
        let headers = response.headers_mut();
        headers.insert("x-influxdb-version", HeaderValue::from_static(VERSION));
        headers.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
        response
    }

    /// One write request, answered once its points are durable (or queued, `ack: async`).
    async fn write(
        &self,
        api: Api,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Full<Bytes>>, Answer> {
        let remote = connection.remote;
        let query = query_params(request.uri().query());
        self.authorize(&request, &query)?;
        let target = self.target(api, &query)?;
        let precision = self.precision(api, &query)?;
        let (body, gzip, hold) = self.read_body(request, connection).await?;
        // One reading of the clock per request: lines without a timestamp share it.
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let max = self.config.max_body_bytes;
        let check = self.check.clone();
        let (budget, retry_after) = (self.budget.clone(), self.config.retry_after);
        let parsed = tokio::task::spawn_blocking(move || {
            let mut hold = hold;
            let received = body.capacity() as u64;
            // The text, admitted with room for its points (gunzip asks for it).
            let text = if gzip {
                let text = gunzip(&body, max, &mut hold)
                    .map_err(|e| e.answer(max, &budget, retry_after))?;
                drop(body);
                hold.shrink(received);
                text
            } else {
                body
            };
            // The hold covers at least the text and the points made so far.
            let text_bytes = text.capacity() as u64;
            let mut made = 0;
            let parsed = parse_body_counted(&text, precision, now, &*check, &mut |n| {
                made += n as u64;
                if text_bytes + made > hold.held() {
                    hold.force_grow(text_bytes + made - hold.held());
                }
            });
            drop(text);
            hold.set(made);
            Ok::<_, Answer>((parsed, hold))
        })
        .await
        .map_err(|e| {
            Answer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                format!("parsing failed: {e}"),
            )
        })?
        .inspect_err(|answer| {
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                self.budget_reached();
            }
        })?;
        // `hold` keeps the points counted until they are queued.
        let (Parsed { points, rejected }, hold) = parsed;

        if points.is_empty() {
            if rejected.is_empty() {
                return Ok(no_content());
            }
            self.dead_letter(&rejected, api, &target, remote);
            return Err(self.partial(rejected, "0 points written"));
        }
        let n = points.len() as u64;
        let Some(pending) = self.pending.try_hold(n) else {
            return Err(Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
                format!(
                    "{} points are waiting to be written (max_pending_points {}); retry later",
                    self.pending.get(),
                    self.config.max_pending_points
                ),
            )
            .retry_after(self.config.retry_after));
        };
        let stopping = || {
            Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the job is stopping; write to its successor",
            )
            .retry_after(self.config.retry_after)
        };

        let acked = match self.config.ack {
            AckMode::Async => {
                let request = Ingested { points, done: None };
                self.queue
                    .push(request, Some(pending))
                    .map_err(|_| stopping())?;
                None
            }
            AckMode::Durable => {
                let (done, acked) = oneshot::channel::<Ack>();
                let request = Ingested {
                    points,
                    done: Some(done),
                };
                self.queue.push(request, None).map_err(|_| stopping())?;
                // The points stay pending until the engine answers, whatever happens to
                // this request (a client that hangs up, an answer that times out).
                let (relay, relayed) = oneshot::channel();
                tokio::spawn(async move {
                    let ack = acked.await;
                    drop(pending);
                    let _ = relay.send(ack);
                });
                Some(relayed)
            }
        };
        // Queued: the points are the engine's now, bounded by max_pending_points.
        drop(hold);
        self.counters.rows_read.add(n);
        self.dead_letter(&rejected, api, &target, remote);

        let mut refused_by_target = Vec::new();
        if let Some(relayed) = acked {
            // Layers: the timeout, the relay task, the engine's `done`, the engine's answer.
            match tokio::time::timeout(self.config.ack_timeout, relayed).await {
                Ok(Ok(Ok(Ok(refused)))) => refused_by_target = refused,
                Ok(Ok(Ok(Err(reason)))) => {
                    let mut answer = Answer::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error",
                        format!("the points were not written: {reason}"),
                    );
                    answer.rejected = rejected;
                    return Err(answer);
                }
                Ok(_) => {
                    return Err(Answer::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the job stopped before the points were durable; retry",
                    )
                    .retry_after(self.config.retry_after))
                }
                Err(_) => {
                    return Err(Answer::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        format!(
                            "the points were not durable after {}; retry (a point written twice is stored once)",
                            humantime::format_duration(self.config.ack_timeout)
                        ),
                    )
                    .retry_after(self.config.retry_after))
                }
            }
        }
        if !refused_by_target.is_empty() {
            return Err(self.refused_by_target(api, rejected, &refused_by_target, n));
        }
        if rejected.is_empty() {
            Ok(no_content())
        } else {
            let done = match self.config.ack {
                AckMode::Durable => format!("{n} points written"),
                AckMode::Async => format!("{n} points accepted"),
            };
            Err(self.partial(rejected, &done))
        }
    }

    /// A durable request some of whose points the target refused (they are in the
    /// dead-letter file), answered as InfluxDB answers a field-type conflict: 400
    /// `partial write: ... dropped=N` on the 1.x API (`coordinator/points_writer.go`,
    /// `PartialWriteError`), 422 Unprocessable Entity on the 2.x API (its write endpoint's
    /// documented answer to points the schema refuses). Bad lines of the body, if any, are
    /// listed too.
    fn refused_by_target(
        &self,
        api: Api,
        rejected: Vec<RejectedLine>,
        refused: &[String],
        n: u64,
    ) -> Answer {
        let dropped = refused.len();
        let mut reasons: Vec<&str> = Vec::new();
        for reason in refused {
            if !reasons.contains(&reason.as_str()) && reasons.len() < LINES_IN_MESSAGE {
                reasons.push(reason);
            }
        }
        let written = n.saturating_sub(dropped as u64);
        let mut message = format!(
            "partial write: the target refused {dropped} of {n} points ({written} written; the refused ones are in the dead-letter file): {} dropped={dropped}",
            reasons.join("; ")
        );
        if !rejected.is_empty() {
            message.push_str(&format!("; and {} lines rejected:", rejected.len()));
            for r in rejected.iter().take(LINES_IN_MESSAGE) {
                message.push_str(&format!(" line {}: {};", r.line, r.reason));
            }
            message.pop();
        }
        let mut answer = match api {
            Api::V1 => Answer::invalid(message),
            Api::V2 => Answer::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable entity",
                message,
            ),
        };
        answer.rejected = rejected;
        answer
    }

    /// 400 for a request with bad lines; `done` says what became of its good lines.
    fn partial(&self, rejected: Vec<RejectedLine>, done: &str) -> Answer {
        let mut message = format!("partial write: {} lines rejected, {done}:", rejected.len());
        for r in rejected.iter().take(LINES_IN_MESSAGE) {
            message.push_str(&format!(" line {}: {};", r.line, r.reason));
        }
        if rejected.len() > LINES_IN_MESSAGE {
            message.push_str(&format!(
                " and {} more (see `rejected`)",
                rejected.len() - LINES_IN_MESSAGE
            ));
        } else {
            message.pop();
        }
        let mut answer = Answer::invalid(message);
        answer.rejected = rejected;
        answer
    }

    fn dead_letter(&self, rejected: &[RejectedLine], api: Api, target: &str, remote: SocketAddr) {
        for r in rejected {
            self.dead_letters.record(
                "ingest",
                &format!("line {}: {}", r.line, r.reason),
                json!({
                    "line": r.line,
                    "text": r.text,
                    "api": match api { Api::V1 => "v1", Api::V2 => "v2" },
                    "target": target,
                    "client": remote.to_string(),
                }),
            );
        }
    }

    /// Passes when no credential is configured, or the request presents one that is.
    fn authorize(
        &self,
        request: &Request<Incoming>,
        query: &HashMap<String, String>,
    ) -> Result<(), Answer> {
        let c = &self.config;
        if c.token.is_none() && c.username.is_none() {
            return Ok(());
        }
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if let (Some(token), Some(given)) = (&c.token, header.strip_prefix("Token ")) {
            if same(given.trim(), token) {
                return Ok(());
            }
        }
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            let matches = |u: &str, p: &str| same(u, user) & same(p, password);
            if let (Some(u), Some(p)) = (query.get("u"), query.get("p")) {
                if matches(u, p) {
                    return Ok(());
                }
            }
            if let Some(encoded) = header.strip_prefix("Basic ") {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok());
                if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                    if matches(u, p) {
                        return Ok(());
                    }
                }
            }
        }
        Err(Answer::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized access",
        ))
    }

    /// The bucket (v2) or database (v1) the request names, if this endpoint accepts it.
    fn target(&self, api: Api, query: &HashMap<String, String>) -> Result<String, Answer> {
        let c = &self.config;
        let named = |key: &str| query.get(key).filter(|v| !v.is_empty());
        // An empty list admits any name.
        let admit = |admitted: &[String], name: &String, missing: String| {
            if admitted.is_empty() || admitted.contains(name) {
                Ok(name.clone())
            } else {
                Err(Answer::new(StatusCode::NOT_FOUND, "not found", missing))
            }
        };
        match api {
            Api::V2 => {
                if let (Some(want), Some(org)) = (&c.org, named("org")) {
                    if org != want {
                        return Err(Answer::new(
                            StatusCode::NOT_FOUND,
                            "not found",
                            format!("organization name \"{org}\" not found"),
                        ));
                    }
                }
                let bucket =
                    named("bucket").ok_or_else(|| Answer::invalid("bucket is required"))?;
                admit(&c.buckets, bucket, format!("bucket \"{bucket}\" not found"))
            }
            Api::V1 => {
                let db = named("db").ok_or_else(|| Answer::invalid("database is required"))?;
                admit(&c.databases, db, format!("database not found: \"{db}\""))
            }
        }
    }

    /// `precision=` by the API's names; absent: the configured default. Never guessed.
    fn precision(&self, api: Api, query: &HashMap<String, String>) -> Result<Precision, Answer> {
        let Some(name) = query.get("precision").filter(|p| !p.is_empty()) else {
            return Ok(self.config.precision);
        };
        let (parsed, names) = match api {
            Api::V1 => (Precision::from_v1(name), "n, u, ms, s, m, h"),
            Api::V2 => (Precision::from_v2(name), "ns, us, ms, s"),
        };
        parsed.ok_or_else(|| {
            Answer::invalid(format!("invalid precision \"{name}\": use one of {names}"))
        })
    }

    /// The body, at most `max_body_bytes`, whether it is gzipped, and its hold on the
    /// memory budget. Refused before it is read past `max_body_bytes` (413) or the budget
    /// (429); cut at `body_timeout` (408) or when the connection is closed to make room
    /// (503). Each refusal closes the connection: the rest of the body is not read.
    async fn read_body(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<(Vec<u8>, bool, BodyBytes), Answer> {
        let deadline = tokio::time::Instant::now() + self.timeouts.body;
        let max = self.config.max_body_bytes;
        let too_large = || {
            Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request too large",
                format!("the body is larger than max_body_bytes ({max} bytes)"),
            )
            .closing()
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let gzip = match request
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(Answer::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported media type",
                    format!("Content-Encoding {other} is not supported; send gzip or none"),
                )
                .closing())
            }
        };
        let over_budget = || {
            self.budget_reached();
            over_budget(&self.budget, self.config.retry_after).closing()
        };
        // A body is admitted with room for its points (see `budget`); a gzip body gets that
        // once its inflated size is known. With a Content-Length, the whole is asked for
        // before a byte of the body is read.
        let room = if gzip { 0 } else { POINTS_PER_TEXT_BYTE };
        let mut hold = self.budget.hold();
        let mut body = Vec::new();
        if let Some(n) = declared.filter(|n| *n > 0) {
            if !hold.try_grow(n + n * room) {
                return Err(over_budget());
            }
            body.reserve_exact(n as usize);
        }
        let mut incoming = request.into_body();
        let evicted = connection.evicted();
        tokio::pin!(evicted);
        loop {
            let frame = tokio::select! {
                frame = incoming.frame() => frame,
                _ = tokio::time::sleep_until(deadline) => {
                    self.closed(connection, Closed::BodyTimeout);
                    return Err(Answer::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request timeout",
                        format!(
                            "the body did not arrive within body_timeout ({}); nothing of it was kept",
                            humantime::format_duration(self.timeouts.body)
                        ),
                    )
                    .closing());
                }
                _ = &mut evicted => return Err(self.no_room()),
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    return Err(Answer::invalid(format!("cannot read the body: {e}")).closing())
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_trailers) => continue,
                },
            };
            if body.len() as u64 + data.len() as u64 > max {
                return Err(too_large());
            }
            let capacity = body.capacity();
            body.reserve(data.len());
            if declared.is_none() {
                let grown = (body.capacity() - capacity) as u64;
                if !hold.try_grow(grown + data.len() as u64 * room) {
                    return Err(over_budget());
                }
            }
            body.extend_from_slice(&data);
            connection.body_received(data.len());
        }
        connection.enter(Phase::Answering);
        Ok((body, gzip, hold))
    }

    /// Warns (occasionally) that the memory budget turns requests away.
    fn budget_reached(&self) {
        metrics::counter!("tsmig_ingest_over_budget_total").increment(1);
        if self.warned_budget.now() {
            tracing::warn!(
                max_body_bytes_in_flight = self.budget.max(),
                "ingest endpoint: request bodies in memory reached max_body_bytes_in_flight; answering 429"
            );
        }
    }
}

/// Why a gzip body was not decompressed.
#[derive(Debug)]
enum Gunzip {
    Invalid(std::io::Error),
    /// Past `max_body_bytes`.
    TooLarge,
    /// Past the memory budget.
    OverBudget,
}

impl Gunzip {
    fn answer(self, max: u64, budget: &Budget, retry_after: Duration) -> Answer {
        match self {
            Gunzip::Invalid(e) => Answer::invalid(format!("the body is not valid gzip: {e}")),
            Gunzip::TooLarge => Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request too large",
                format!("the body is larger than max_body_bytes ({max} bytes) once decompressed"),
            ),
            Gunzip::OverBudget => over_budget(budget, retry_after),
        }
    }
}

/// Decompresses a gzip body (several members are one stream, as Go reads them), at most
/// `max` bytes of it, asking `hold` for it and room for its points.
///
/// Twice: once to learn its size, keeping nothing, then into a buffer of exactly that
/// size. A bomb costs time, never memory, and the budget is asked once, before anything
/// is allocated; a buffer grown as the data comes would cost up to twice its size while
/// it grows (and more, until the allocator gives the old ones back).
fn gunzip(body: &[u8], max: u64, hold: &mut BodyBytes) -> Result<Vec<u8>, Gunzip> {
    let decoder = || flate2::read::MultiGzDecoder::new(body);
    let size = std::io::copy(
        &mut decoder().take(max.saturating_add(1)),
        &mut std::io::sink(),
    )
    .map_err(Gunzip::Invalid)?;
    if size > max {
        return Err(Gunzip::TooLarge);
    }
    if !hold.try_grow(admitted(size)) {
        return Err(Gunzip::OverBudget);
    }
    let mut out = Vec::with_capacity(size as usize);
    decoder()
        .take(size)
        .read_to_end(&mut out)
        .map_err(Gunzip::Invalid)?;
    Ok(out)
}

/// Query parameters, decoded; the first of a repeated name wins.
fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// Compares a credential without stopping at the first difference.
fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_compare_exactly() {
        assert!(same("secret", "secret"));
        assert!(!same("secreT", "secret"));
        assert!(!same("secret2", "secret"));
        assert!(!same("", "secret"));
    }

    #[test]
    fn gzip_is_bounded_after_decompression_and_by_the_budget() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'a'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        let budget = Budget::new(1 << 20);
        let mut hold = budget.hold();
        assert_eq!(gunzip(&gz, 1000, &mut hold).unwrap().len(), 1000);
        assert!(budget.held() >= 1000, "what was inflated is counted");
        drop(hold);
        assert!(matches!(
            gunzip(&gz, 999, &mut budget.hold()),
            Err(Gunzip::TooLarge)
        ));
        assert!(matches!(
            gunzip(b"nope", 10, &mut budget.hold()),
            Err(Gunzip::Invalid(_))
        ));

        // A bomb: 64 MiB of zeros in about 64 KiB stops at the budget, not at its size.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            enc.write_all(&[0u8; 1 << 20]).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 100_000);
        let budget = Budget::new(4 << 20);
        let _other = {
            let mut other = budget.hold();
            assert!(other.try_grow(1));
            other
        };
        let mut hold = budget.hold();
        assert!(matches!(
            gunzip(&bomb, u64::MAX, &mut hold),
            Err(Gunzip::OverBudget)
        ));
        assert!(budget.held() <= 4 << 20);
    }

    #[test]
    fn repeated_query_parameters_take_the_first() {
        let q = query_params(Some("db=a&db=b&u=x%20y"));
        assert_eq!(q["db"], "a");
        assert_eq!(q["u"], "x y");
    }
}
