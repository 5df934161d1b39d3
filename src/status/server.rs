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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetters;
    use crate::metrics::Counters;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A job's endpoint on a free port of `ip`, with actions that count their calls; the
    /// cutover refuses with `cutover_refusal` when given one.
    struct Endpoint {
        url: String,
        board: StatusBoard,
        stops: Arc<AtomicUsize>,
        cutovers: Arc<AtomicUsize>,
    }

    fn endpoint(ip: &str, token: Option<&str>, cutover_refusal: Option<&str>) -> Endpoint {
        let dead_letters = DeadLetters::new("j", &std::env::temp_dir().join("tsmig-status-dl"));
        let board = StatusBoard::new("j", "backfill", (0, 1, 2), Counters::new(), dead_letters);
        let (stops, cutovers) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, c) = (stops.clone(), cutovers.clone());
        let refusal = cutover_refusal.map(str::to_string);
        let actions = Actions {
            stop: Arc::new(move || {
                s.fetch_add(1, Ordering::SeqCst);
            }),
            cutover: Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                refusal.clone().map_or(Ok(()), Err)
            }),
        };
        let addr = format!("{ip}:0").parse().unwrap();
        let bound = serve(addr, board.clone(), actions, token.map(str::to_string)).unwrap();
        Endpoint {
            // A wildcard bind is reached through loopback.
            url: format!("http://127.0.0.1:{}", bound.port()),
            board,
            stops,
            cutovers,
        }
    }

    /// (status, content type, body) of a request with an optional `Authorization`.
    async fn call(method: &str, url: &str, authorization: Option<&str>) -> (u16, String, String) {
        let client = reqwest::Client::new();
        let mut request = client.request(method.parse().unwrap(), url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, kind, response.text().await.unwrap())
    }

    async fn get(url: &str) -> (u16, String) {
        let (status, _, body) = call("GET", url, None).await;
        (status, body)
    }

    async fn post(url: &str, bearer: Option<&str>) -> (u16, String) {
        let authorization = bearer.map(|t| format!("Bearer {t}"));
        let (status, _, body) = call("POST", url, authorization.as_deref()).await;
        (status, body)
    }

    #[tokio::test]
    async fn get_api_job_answers_the_board_as_json() {
        let e = endpoint("127.0.0.1", None, None);
        e.board
            .plan(vec!["readings".into()], [(0, 0, 10), (1, 0, 20)], [0]);
        e.board.reading(1);
        e.board.phase(Phase::Backfill);
        e.board.checkpointed("1 of 2 splits finished".into());
        let (status, kind, body) = call("GET", &format!("{}/api/job", e.url), None).await;
        assert_eq!(status, 200);
        assert_eq!(kind, "application/json");
        let job: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(job["name"], "j");
        assert_eq!(job["mode"], "backfill");
        assert_eq!(job["phase"], "backfill");
        assert_eq!(job["process"]["workers"], 2);
        assert_eq!(job["progress"]["splits_done"], 1);
        assert_eq!(job["progress"]["splits_total"], 2);
        assert_eq!(job["tables"][0]["name"], "readings");
        assert_eq!(job["tables"][0]["splits_reading"], 1);
        assert_eq!(job["tables"][0]["rows_estimated"], 30);
        assert_eq!(job["tables"][0]["splits"][1]["state"], "reading");
        assert_eq!(job["checkpoint"]["position"], "1 of 2 splits finished");
        assert_eq!(job["dead_letters"]["count"], 0);
        assert!(job["history"].is_array());
    }

    #[tokio::test]
    async fn the_page_is_served_from_the_binary() {
        let e = endpoint("127.0.0.1", None, None);
        for path in ["/", "/index.html"] {
            let (status, kind, body) = call("GET", &format!("{}{path}", e.url), None).await;
            assert_eq!(status, 200);
            assert_eq!(kind, "text/html; charset=utf-8");
            assert!(body.contains("fetch('/api/job'"), "the page polls the API");
            assert!(body.contains(r#"data-testid="splits-total""#));
        }
        // One file: nothing for the browser to load from elsewhere.
        assert!(!PAGE.contains("src=\"http") && !PAGE.contains("href=\"http"));
        // The API's strings (a job or table name, a reason) are set as text, never as HTML.
        assert!(!PAGE.contains("innerHTML") && !PAGE.contains("insertAdjacentHTML"));
    }

    #[tokio::test]
    async fn health_is_ok_until_the_job_fails() {
        let e = endpoint("127.0.0.1", None, None);
        let health = format!("{}/health", e.url);
        assert_eq!(get(&health).await, (200, "ok\n".into()));
        e.board.phase(Phase::Backfill);
        assert_eq!(get(&health).await.0, 200);
        e.board.ended(Some("the target refused".into()));
        assert_eq!(get(&health).await, (503, "failed\n".into()));
    }

    #[tokio::test]
    async fn ready_only_while_the_dataflow_runs() {
        let e = endpoint("127.0.0.1", None, None);
        let ready = format!("{}/ready", e.url);
        assert_eq!(get(&ready).await, (503, "not ready: starting\n".into()));
        e.board.phase(Phase::Backfill);
        assert_eq!(get(&ready).await, (200, "ready\n".into()));
        e.board.restarting("connection reset");
        assert_eq!(get(&ready).await, (503, "not ready: restarting\n".into()));
        e.board.phase(Phase::Cdc);
        assert_eq!(get(&ready).await.0, 200);
        e.board.phase(Phase::Draining);
        assert_eq!(get(&ready).await, (503, "not ready: draining\n".into()));
        e.board.ended(None);
        assert_eq!(get(&ready).await, (503, "not ready: done\n".into()));
    }

    #[tokio::test]
    async fn post_stop_calls_the_stop_action() {
        let e = endpoint("127.0.0.1", None, None);
        let (status, kind, body) = call("POST", &format!("{}/api/job/stop", e.url), None).await;
        assert_eq!(
            (status, kind.as_str(), body.as_str()),
            (202, "application/json", r#"{"stopping":true}"#)
        );
        assert_eq!(e.stops.load(Ordering::SeqCst), 1);
        assert_eq!(e.cutovers.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn post_cutover_calls_the_cutover_action_or_answers_409_with_its_reason() {
        let e = endpoint("127.0.0.1", None, None);
        let cutover = format!("{}/api/job/cutover", e.url);
        assert_eq!(
            post(&cutover, None).await,
            (202, r#"{"cutover":true}"#.into())
        );
        assert_eq!(e.cutovers.load(Ordering::SeqCst), 1);

        let e = endpoint(
            "127.0.0.1",
            None,
            Some("a `backfill` job does not follow its source"),
        );
        let cutover = format!("{}/api/job/cutover", e.url);
        assert_eq!(
            post(&cutover, None).await,
            (409, "a `backfill` job does not follow its source\n".into())
        );
        assert_eq!(
            e.stops.load(Ordering::SeqCst),
            0,
            "a refused cutover stops nothing"
        );
    }

    #[tokio::test]
    async fn other_methods_and_paths_are_refused() {
        let e = endpoint("127.0.0.1", None, None);
        for path in ["/api/job/stop", "/api/job/cutover"] {
            for method in ["GET", "PUT", "DELETE"] {
                let (status, _, body) = call(method, &format!("{}{path}", e.url), None).await;
                assert_eq!((status, body.as_str()), (405, "POST\n"), "{method} {path}");
            }
        }
        assert_eq!(e.stops.load(Ordering::SeqCst), 0);
        assert_eq!(e.cutovers.load(Ordering::SeqCst), 0);
        for path in ["/nothing", "/api", "/api/job/pause"] {
            assert_eq!(get(&format!("{}{path}", e.url)).await.0, 404, "{path}");
        }
        assert_eq!(post(&format!("{}/api/job", e.url), None).await.0, 404);
    }

    #[tokio::test]
    async fn off_loopback_the_posts_need_a_configured_token_and_the_gets_stay_open() {
        // No token configured (an empty one counts as none): every POST refused.
        for token in [None, Some("")] {
            let e = endpoint("0.0.0.0", token, None);
            for action in ["stop", "cutover"] {
                let (status, body) = post(&format!("{}/api/job/{action}", e.url), Some("x")).await;
                assert_eq!(status, 403, "{token:?}");
                assert!(body.contains("TSMIG_STATUS_TOKEN"), "{body}");
            }
            assert_eq!(e.stops.load(Ordering::SeqCst), 0);
            assert_eq!(e.cutovers.load(Ordering::SeqCst), 0);
            assert_eq!(get(&format!("{}/api/job", e.url)).await.0, 200);
        }

        let e = endpoint("0.0.0.0", Some("s3cret"), None);
        let stop = format!("{}/api/job/stop", e.url);
        for wrong in [None, Some("s3cre"), Some("s3cret2"), Some("S3CRET")] {
            let (status, body) = post(&stop, wrong).await;
            assert_eq!(status, 401, "{wrong:?}");
            assert!(body.contains("Authorization: Bearer"), "{body}");
        }
        // The right token, but not as a bearer token.
        for header in ["Basic s3cret", "s3cret"] {
            assert_eq!(call("POST", &stop, Some(header)).await.0, 401, "{header}");
        }
        assert_eq!(e.stops.load(Ordering::SeqCst), 0);
        assert_eq!(post(&stop, Some("s3cret")).await.0, 202);
        assert_eq!(e.stops.load(Ordering::SeqCst), 1);
        assert_eq!(
            post(&format!("{}/api/job/cutover", e.url), Some("s3cret"))
                .await
                .0,
            202
        );
        assert_eq!(e.cutovers.load(Ordering::SeqCst), 1);
        for path in ["/", "/api/job", "/health"] {
            assert_eq!(get(&format!("{}{path}", e.url)).await.0, 200, "{path}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
        assert!(same(b"", b""));
    }
}
