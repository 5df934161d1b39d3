//! The HTTP side of the ingest endpoint: InfluxDB's write API on hyper (HTTP/1.1).
//!
//! A write request goes through, in order: authentication (401), the org/bucket or
//! database it names (404), its precision (400), its size (413, before and after gzip),
//! parsing (a point the job's sink could not take — a limit of the target — is a bad line
//! too), the pending-points bound (429 with `Retry-After`), the queue to the engine
//! (503 when the job is stopping), the dead-letter file for its bad lines, and — in
//! `durable` mode — the engine's acknowledgement. Nothing is dead-lettered or queued for a
//! request refused before that, so a client's retry never duplicates a dead letter.
//!
//! Errors answer with InfluxDB 2's JSON body, `{"code": "...", "message": "..."}`; the v1
//! endpoint adds `"error"` with the same text, which is what 1.x clients read. A partial
//! write is a 400 whose body also lists every rejected line: `"rejected": [{"line",
//! "reason"}]`.
//!
//! Parsing and gunzipping run on tokio's blocking pool: a 25 MB body takes tens of
//! milliseconds, which must not stall the runtime the sinks share.

use super::config::{AckMode, Api, IngestSourceConfig};
use super::parse::{parse_body_checked, Parsed, Precision, RejectedLine};
use super::{Ack, IngestQueue, Ingested, Pending};
use crate::dead_letter::DeadLetters;
use crate::metrics::Counters;
use crate::sources::SourceError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// What `X-Influxdb-Version` and `/health` report.
const VERSION: &str = concat!("tsmig-", env!("CARGO_PKG_VERSION"));

/// A slow or stalled client gets this long to send a request's headers, or a TLS
/// handshake; without it one idle socket could hold a drain open.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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
            check,
            dead_letters,
            counters,
        });
        let (trigger, triggered) = watch::channel(false);
        let task = tokio::spawn(serve(listener, endpoint, tls, triggered, stop));
        tracing::info!(
            address = %local_addr,
            tls = config.tls.is_some(),
            "ingest endpoint listening"
        );
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
    mut triggered: watch::Receiver<bool>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    tokio::pin!(stop);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = &mut stop => break,
            _ = triggered.changed() => break,
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
        let _ = tcp.set_nodelay(true);
        let service_endpoint = endpoint.clone();
        let service = hyper::service::service_fn(move |request| {
            let endpoint = service_endpoint.clone();
            async move { Ok::<_, Infallible>(endpoint.handle(request, remote).await) }
        });
        // Taken before the TLS handshake: the drain waits for this connection too.
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tcp), service))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "ingest connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("ingest endpoint: no new connections; finishing the requests in progress");
    graceful.shutdown().await;
    endpoint.queue.close();
    tracing::info!("ingest endpoint stopped");
}

/// What every connection's requests share.
struct Endpoint {
    config: IngestSourceConfig,
    queue: IngestQueue,
    pending: Arc<Pending>,
    check: PointCheck,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
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
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            rejected: Vec::new(),
        }
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
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: `Retry-After: 0` would invite a busy loop.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds.max(1)));
        }
        response
    }
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
        remote: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let api = match request.uri().path() {
            "/api/v2/write" if self.config.api.contains(&Api::V2) => Some(Api::V2),
            "/write" if self.config.api.contains(&Api::V1) => Some(Api::V1),
            _ => None,
        };
        let mut response = match (request.method(), request.uri().path(), api) {
            (&Method::POST, _, Some(api)) => match self.write(api, request, remote).await {
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
        remote: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Answer> {
        let query = query_params(request.uri().query());
        self.authorize(&request, &query)?;
        let target = self.target(api, &query)?;
        let precision = self.precision(api, &query)?;
        let (body, gzip) = self.read_body(request).await?;
        // One reading of the clock per request: lines without a timestamp share it.
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let max = self.config.max_body_bytes;
        let check = self.check.clone();
        let Parsed { points, rejected } = tokio::task::spawn_blocking(move || {
            let body = if gzip {
                gunzip(&body, max)?
            } else {
                body.to_vec()
            };
            Ok::<_, Answer>(parse_body_checked(&body, precision, now, &*check))
        })
        .await
        .map_err(|e| {
            Answer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                format!("parsing failed: {e}"),
            )
        })??;

        if points.is_empty() {
            if rejected.is_empty() {
                return Ok(no_content());
            }
            self.dead_letter(&rejected, api, &target, remote);
            return Err(self.partial(rejected, "0 points written"));
        }
        let n = points.len() as u64;
        let Some(hold) = self.pending.try_hold(n) else {
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
                    .push(request, Some(hold))
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
                    drop(hold);
                    let _ = relay.send(ack);
                });
                Some(relayed)
            }
        };
        Counters::add(&self.counters.rows_read, n);
        self.dead_letter(&rejected, api, &target, remote);

        if let Some(relayed) = acked {
            // Layers: the timeout, the relay task, the engine's `done`, the engine's answer.
            match tokio::time::timeout(self.config.ack_timeout, relayed).await {
                Ok(Ok(Ok(Ok(())))) => {}
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

    /// The body, at most `max_body_bytes`, and whether it is gzipped.
    async fn read_body(&self, request: Request<Incoming>) -> Result<(Bytes, bool), Answer> {
        let max = self.config.max_body_bytes;
        let too_large = || {
            Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request too large",
                format!("the body is larger than max_body_bytes ({max} bytes)"),
            )
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
                ))
            }
        };
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let body = Limited::new(request.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    too_large()
                } else {
                    Answer::invalid(format!("cannot read the body: {e}"))
                }
            })?
            .to_bytes();
        Ok((body, gzip))
    }
}

/// Decompresses a gzip body (several members are one stream, as Go reads them), at most
/// `max` bytes of it.
fn gunzip(body: &[u8], max: u64) -> Result<Vec<u8>, Answer> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(1 << 24));
    flate2::read::MultiGzDecoder::new(body)
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Answer::invalid(format!("the body is not valid gzip: {e}")))?;
    if out.len() as u64 > max {
        return Err(Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request too large",
            format!("the body is larger than max_body_bytes ({max} bytes) once decompressed"),
        ));
    }
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
    fn gzip_is_bounded_after_decompression() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'a'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 1000).unwrap().len(), 1000);
        assert_eq!(
            gunzip(&gz, 999).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            gunzip(b"nope", 10).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn repeated_query_parameters_take_the_first() {
        let q = query_params(Some("db=a&db=b&u=x%20y"));
        assert_eq!(q["db"], "a");
        assert_eq!(q["u"], "x y");
    }
}
