//! The status endpoint a running job serves at `status.addr` (`--status-addr`).
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the status page (built into the binary) |
//! | `GET /api/job` | the job as JSON ([`super::Snapshot`]) |
//! | `POST /api/job/stop` | 202: the job stops reading, writes what it read, checkpoints, exits 0 (as SIGTERM) |
//! | `POST /api/job/cutover` | 202: a job that follows a source stops once caught up (as `--until-caught-up`); 409 for a job that does not |
//! | `GET /health` | 200 while the job is alive and not failed, else 503 (a liveness probe) |
//! | `GET /ready` | 200 while the job runs its dataflow, 503 while it starts, restarts or has ended (a readiness probe) |
//!
//! It binds to loopback unless told otherwise. On any other address the POST endpoints
//! need `Authorization: Bearer <status.token>`, and are refused when no token is set: a
//! status page reachable from the network must not let anyone stop the job.

use super::{Phase, StatusBoard};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// The status page: one file of HTML, CSS and JavaScript, built into the binary.
const PAGE: &str = include_str!("page.html");

/// What the endpoint's POSTs do to the job, given by the runner.
#[derive(Clone)]
pub struct Actions {
    /// Stop reading, drain, checkpoint, exit (as SIGTERM).
    pub stop: Arc<dyn Fn() + Send + Sync>,
    /// Stop once caught up; `Err` says why this job cannot.
    pub cutover: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// Starts serving `board` at `addr` on the current tokio runtime; returns the address
/// bound (`addr` may ask for port 0).
pub fn serve(
    addr: SocketAddr,
    board: StatusBoard,
    actions: Actions,
    token: Option<String>,
) -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| format!("cannot listen on {addr} for the status page: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let guard = Guard {
        loopback: bound.ip().is_loopback(),
        token: token.filter(|t| !t.is_empty()),
    };
    let shared = Arc::new((board, actions, guard));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(request, &shared)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// Who may POST.
struct Guard {
    loopback: bool,
    token: Option<String>,
}

impl Guard {
    /// `Err` is the refusal to answer.
    fn allows(&self, request: &Request<Incoming>) -> Result<(), (StatusCode, &'static str)> {
        if self.loopback {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err((
                StatusCode::FORBIDDEN,
                "the status endpoint is not on loopback and has no token: set TSMIG_STATUS_TOKEN (status.token in config/tsmig.yaml) to allow stop and cutover",
            ));
        };
        let given = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
            _ => Err((
                StatusCode::UNAUTHORIZED,
                "stop and cutover need Authorization: Bearer <the status token>",
            )),
        }
    }
}

/// Compares in time independent of where the strings differ (a token must not be
/// guessable byte by byte from response times).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(
    request: Request<Incoming>,
    shared: &(StatusBoard, Actions, Guard),
) -> Response<Full<Bytes>> {
    let (board, actions, guard) = shared;
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/") | (&Method::GET, "/index.html") => Response::builder()
            .header(hyper::header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
            .unwrap_or_default(),
        (&Method::GET, "/api/job") => match serde_json::to_vec(&board.snapshot()) {
            Ok(body) => Response::builder()
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::CACHE_CONTROL, "no-store")
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default(),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        (&Method::POST, "/api/job/stop") => match guard.allows(&request) {
            Err((status, why)) => text(status, why),
            Ok(()) => {
                (actions.stop)();
                json(StatusCode::ACCEPTED, r#"{"stopping":true}"#)
            }
        },
        (&Method::POST, "/api/job/cutover") => match guard.allows(&request) {
            Err((status, why)) => text(status, why),
            Ok(()) => match (actions.cutover)() {
                Ok(()) => json(StatusCode::ACCEPTED, r#"{"cutover":true}"#),
                Err(why) => text(StatusCode::CONFLICT, &why),
            },
        },
        (&Method::GET, "/health") => match board.current_phase() {
            Phase::Failed => text(StatusCode::SERVICE_UNAVAILABLE, "failed"),
            _ => text(StatusCode::OK, "ok"),
        },
        (&Method::GET, "/ready") => match board.current_phase() {
            Phase::Backfill | Phase::Cdc | Phase::Following | Phase::Ingesting => {
                text(StatusCode::OK, "ready")
            }
            other => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {}", phase_name(other)),
            ),
        },
        (_, "/api/job/stop" | "/api/job/cutover") => text(StatusCode::METHOD_NOT_ALLOWED, "POST"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn phase_name(phase: Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(format!("{body}\n"))))
        .unwrap_or_default()
}

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_default()
}
