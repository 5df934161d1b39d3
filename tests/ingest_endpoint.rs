//! The ingest endpoint over real HTTP: each test starts the server on port 0 and a small
//! stand-in for the engine — it takes requests from the `IngestQueue` when the queue's
//! waker fires, exactly as a worker does, and the test decides when (and how) each
//! request's `done` fires. Clients are reqwest for HTTP and tokio-rustls for HTTPS.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tsmig::connectors::ingest::{IngestQueue, IngestServer, IngestSourceConfig, Ingested};
use tsmig::dead_letter::DeadLetters;
use tsmig::metrics::Counters;
use tsmig::model::series_hash;
use tsmig::model::{Point, Value};

/// A running endpoint, its engine stand-in and what it recorded.
struct Harness {
    server: IngestServer,
    queue: IngestQueue,
    base: String,
    /// Requests the engine stand-in took, in order.
    taken: mpsc::UnboundedReceiver<Ingested>,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
    http: reqwest::Client,
}

/// Starts an endpoint on 127.0.0.1:0 with the YAML `config` (a `source:` body).
async fn start(name: &str, config: &str) -> Harness {
    let dir = common::scratch(&common::unique(name));
    let mut config: IngestSourceConfig = serde_yaml::from_str(config).unwrap();
    config.listen = "127.0.0.1:0".into();
    let dead_letters = DeadLetters::new("ingest-test", &dir.join("dead-letter.jsonl"));
    let counters = Counters::new();
    let (server, queue) = IngestServer::start(
        &config,
        dead_letters.clone(),
        counters.clone(),
        std::future::pending(),
    )
    .await
    .unwrap();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{}", server.local_addr());
    Harness {
        server,
        taken: play_engine(queue.clone()),
        queue,
        base,
        dead_letters,
        counters,
        http: reqwest::Client::new(),
    }
}

/// The engine's side: woken by the queue, takes every request there is.
fn play_engine(queue: IngestQueue) -> mpsc::UnboundedReceiver<Ingested> {
    let (tx, rx) = mpsc::unbounded_channel();
    let arrived = Arc::new(Notify::new());
    let wake = arrived.clone();
    queue.on_arrival(Arc::new(move || wake.notify_one()));
    tokio::spawn(async move {
        loop {
            arrived.notified().await;
            while let Some(request) = queue.try_recv() {
                if tx.send(request).is_err() {
                    return;
                }
            }
            if queue.is_finished() {
                return;
            }
        }
    });
    rx
}

/// From now on acknowledges every request after `delay`, keeping its points.
fn ack_all(h: &mut Harness, delay: Duration) -> Arc<Mutex<Vec<Point>>> {
    let (_, none) = mpsc::unbounded_channel();
    let mut taken = std::mem::replace(&mut h.taken, none);
    let written = Arc::new(Mutex::new(Vec::new()));
    let keep = written.clone();
    tokio::spawn(async move {
        while let Some(request) = taken.recv().await {
            tokio::time::sleep(delay).await;
            keep.lock().unwrap().extend(request.points);
            if let Some(done) = request.done {
                let _ = done.send(Ok(vec![]));
            }
        }
    });
    written
}

async fn next(taken: &mut mpsc::UnboundedReceiver<Ingested>) -> Ingested {
    tokio::time::timeout(Duration::from_secs(10), taken.recv())
        .await
        .expect("the endpoint queued no request")
        .expect("the engine stand-in stopped")
}

/// Response status, a header and the JSON body (Null when empty).
struct Reply {
    status: u16,
    retry_after: Option<String>,
    version: Option<String>,
    body: serde_json::Value,
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the endpoint answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let retry_after = header("retry-after");
    let version = header("x-influxdb-version");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    Reply {
        status,
        retry_after,
        version,
        body,
    }
}

impl Harness {
    fn post(
        &self,
        path_and_query: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path_and_query}", self.base))
            .body(body)
    }

    fn dead_letter_lines(&self) -> Vec<serde_json::Value> {
        self.dead_letters.sync().unwrap();
        match std::fs::read_to_string(self.dead_letters.path()) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn point(measurement: &str, tags: &[(&str, &str)], fields: Vec<(&str, Value)>, time: i64) -> Point {
    let tags: Vec<(tsmig::model::Name, tsmig::model::Text)> = tags
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    Point {
        device_hash: series_hash(measurement, &tags),
        measurement: measurement.into(),
        tags,
        fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        time,
    }
}

const OPEN: &str = "{buckets: [metrics], databases: [telegraf], org: acme}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_precision_of_both_apis_gives_nanoseconds() {
    let mut h = start("ingest-precision", OPEN).await;
    let written = ack_all(&mut h, Duration::from_millis(5));
    let cases: &[(&str, &str, i64)] = &[
        ("/write?db=telegraf&precision=n", "n", 1_234),
        ("/write?db=telegraf&precision=ns", "ns", 1_234),
        ("/write?db=telegraf&precision=u", "u", 1_234_000),
        ("/write?db=telegraf&precision=us", "us", 1_234_000),
        ("/write?db=telegraf&precision=ms", "ms", 1_234_000_000),
        ("/write?db=telegraf&precision=s", "s", 1_234_000_000_000),
        ("/write?db=telegraf&precision=m", "m", 74_040_000_000_000),
        ("/write?db=telegraf&precision=h", "h", 4_442_400_000_000_000),
        ("/write?db=telegraf", "none", 1_234),
        (
            "/api/v2/write?org=acme&bucket=metrics&precision=ns",
            "ns",
            1_234,
        ),
        (
            "/api/v2/write?org=acme&bucket=metrics&precision=us",
            "us",
            1_234_000,
        ),
        (
            "/api/v2/write?org=acme&bucket=metrics&precision=ms",
            "ms",
            1_234_000_000,
        ),
        (
            "/api/v2/write?org=acme&bucket=metrics&precision=s",
            "s",
            1_234_000_000_000,
        ),
        ("/api/v2/write?org=acme&bucket=metrics", "none", 1_234),
    ];
    for (i, (path, name, _)) in cases.iter().enumerate() {
        let reply = send(h.post(path, format!("cpu,case={i},unit={name} v=1i 1234"))).await;
        assert_eq!(reply.status, 204, "{path}: {}", reply.body);
        assert_eq!(reply.body, serde_json::Value::Null);
    }
    let got = written.lock().unwrap().clone();
    let expected: Vec<Point> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, name, ns))| {
            point(
                "cpu",
                &[("case", &i.to_string()), ("unit", name)],
                vec![("v", Value::Int(1))],
                *ns,
            )
        })
        .collect();
    assert_eq!(got, expected);

    // Unknown or other-API precisions are refused, never read as nanoseconds.
    for (path, name) in [
        ("/write?db=telegraf&precision=sec", "sec"),
        ("/write?db=telegraf&precision=x", "x"),
        ("/api/v2/write?org=acme&bucket=metrics&precision=n", "n"),
        ("/api/v2/write?org=acme&bucket=metrics&precision=h", "h"),
        ("/api/v2/write?org=acme&bucket=metrics&precision=u", "u"),
    ] {
        let reply = send(h.post(path, "cpu v=1i 1234")).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.body["code"], "invalid");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("invalid precision \"{name}\"")),
            "{}",
            reply.body
        );
    }

    // No timestamp: the server's clock, read once per request, truncated to the precision.
    let before = chrono::Utc::now().timestamp() * 1_000_000_000;
    let reply = send(h.post(
        "/api/v2/write?org=acme&bucket=metrics&precision=s",
        "now a=1i\nnow b=2i",
    ))
    .await;
    let after = chrono::Utc::now().timestamp() * 1_000_000_000;
    assert_eq!(reply.status, 204);
    let got = written.lock().unwrap().clone();
    assert_eq!(got.len(), cases.len() + 2);
    let (a, b) = (&got[cases.len()], &got[cases.len() + 1]);
    assert_eq!(a.time, b.time, "one reading per request");
    assert!(
        before <= a.time && a.time <= after,
        "{} not in {before}..={after}",
        a.time
    );
    assert_eq!(a.time % 1_000_000_000, 0);
    assert_eq!(h.counters.rows_read.get(), cases.len() as u64 + 2);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_decompressed_and_bounded() {
    let mut h = start("ingest-gzip", "{max_body_bytes: 200}").await;
    let written = ack_all(&mut h, Duration::ZERO);
    let gzip = |text: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text).unwrap();
        enc.finish().unwrap()
    };
    let body = "mem,host=a used=1.5,free=2u 10\nmem,host=b used=-3i,ok=true,note=\"x y\" 20\n";
    let reply = send(
        h.post("/write?db=any&precision=s", gzip(body.as_bytes()))
            .header("Content-Encoding", "gzip"),
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        *written.lock().unwrap(),
        vec![
            point(
                "mem",
                &[("host", "a")],
                vec![("used", Value::Float(1.5)), ("free", Value::UInt(2))],
                10_000_000_000
            ),
            point(
                "mem",
                &[("host", "b")],
                vec![
                    ("used", Value::Int(-3)),
                    ("ok", Value::Bool(true)),
                    ("note", Value::String("x y".into()))
                ],
                20_000_000_000
            ),
        ]
    );

    // Small on the wire, too large once inflated: 413, like a plain body over the limit.
    let big = "m v=1i 1\n".repeat(30);
    let compressed = gzip(big.as_bytes());
    assert!(compressed.len() < 200 && big.len() > 200);
    let reply = send(
        h.post("/write?db=any", compressed)
            .header("Content-Encoding", "gzip"),
    )
    .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body["code"], "request too large");
    let reply = send(h.post("/write?db=any", big)).await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.body["error"], reply.body["message"],
        "v1 clients read `error`"
    );

    let reply = send(
        h.post("/write?db=any", "not gzip at all")
            .header("Content-Encoding", "gzip"),
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = send(
        h.post("/write?db=any", "m v=1")
            .header("Content-Encoding", "br"),
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(written.lock().unwrap().len(), 2, "nothing more was written");
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_v1_credentials_are_checked() {
    let mut h = start(
        "ingest-auth",
        "{token: tok-123, username: writer, password: 'p@ss:w0rd'}",
    )
    .await;
    let written = ack_all(&mut h, Duration::ZERO);
    let v2 = "/api/v2/write?org=o&bucket=b";
    let denied = [
        send(h.post(v2, "m v=1i 1")).await,
        send(
            h.post(v2, "m v=1i 1")
                .header("Authorization", "Token tok-124"),
        )
        .await,
        send(
            h.post(v2, "m v=1i 1")
                .header("Authorization", "Bearer tok-123"),
        )
        .await,
        send(h.post("/write?db=d&u=writer&p=wrong", "m v=1i 1")).await,
        send(
            h.post("/write?db=d", "m v=1i 1")
                .basic_auth("writer", Some("nope")),
        )
        .await,
        send(
            h.post("/write?db=d", "m v=1i 1")
                .basic_auth("other", Some("p@ss:w0rd")),
        )
        .await,
    ];
    for reply in &denied {
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body["code"], "unauthorized");
        assert_eq!(reply.body["message"], "unauthorized access");
    }
    let allowed = [
        send(
            h.post(v2, "m v=1i 1")
                .header("Authorization", "Token tok-123"),
        )
        .await,
        send(h.post("/write?db=d&u=writer&p=p%40ss%3Aw0rd", "m v=2i 2")).await,
        send(
            h.post("/write?db=d", "m v=3i 3")
                .basic_auth("writer", Some("p@ss:w0rd")),
        )
        .await,
        send(
            h.post("/write?db=d", "m v=4i 4")
                .header("Authorization", "Token tok-123"),
        )
        .await,
    ];
    for reply in &allowed {
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    let times: Vec<i64> = written.lock().unwrap().iter().map(|p| p.time).collect();
    assert_eq!(
        times,
        vec![1, 2, 3, 4],
        "exactly the authorized writes arrived"
    );
    assert_eq!(h.dead_letters.count(), 0);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_paths_ping_and_health() {
    let mut h = start("ingest-names", OPEN).await;
    let written = ack_all(&mut h, Duration::ZERO);
    let reply = send(h.post("/api/v2/write?org=acme&bucket=other", "m v=1i 1")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["message"], "bucket \"other\" not found");
    let reply = send(h.post("/api/v2/write?org=evil&bucket=metrics", "m v=1i 1")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.body["message"],
        "organization name \"evil\" not found"
    );
    let reply = send(h.post("/api/v2/write?org=acme", "m v=1i 1")).await;
    assert_eq!(reply.status, 400);
    let reply = send(h.post("/write?db=nope", "m v=1i 1")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["error"], "database not found: \"nope\"");
    let reply = send(h.post("/write", "m v=1i 1")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"], "database is required");
    let reply = send(h.http.get(format!("{}/write?db=telegraf", h.base))).await;
    assert_eq!(reply.status, 405);
    let reply = send(h.post("/api/v1/nothing", "")).await;
    assert_eq!(reply.status, 404);

    let reply = send(h.http.get(format!("{}/ping", h.base))).await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.version.as_deref(),
        Some(concat!("tsmig-", env!("CARGO_PKG_VERSION")))
    );
    let reply = send(h.http.get(format!("{}/health", h.base))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "pass");
    assert_eq!(reply.body["message"], "ready for queries and writes");
    assert!(written.lock().unwrap().is_empty());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pending_bound_answers_429_until_points_are_acknowledged() {
    let mut h = start("ingest-429", "{max_pending_points: 5, retry_after: 2s}").await;
    let first = tokio::spawn(send(h.post("/write?db=d", "m v=1i 1\nm v=2i 2\nm v=3i 3")));
    let held = next(&mut h.taken).await;
    assert_eq!(held.points.len(), 3);

    // 3 pending + 3 > 5: refused, and nothing of it kept.
    let reply = send(h.post("/write?db=d", "m v=4i 4\nm v=5i 5\nbad line\nm v=6i 6")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.retry_after.as_deref(), Some("2"));
    assert_eq!(reply.body["code"], "too many requests");
    assert_eq!(
        h.dead_letters.count(),
        0,
        "a refused request leaves no dead letters"
    );
    assert!(h.queue.is_empty());
    // 3 + 2 fits.
    let second = tokio::spawn(send(h.post("/write?db=d", "m v=4i 4\nm v=5i 5")));
    let fits = next(&mut h.taken).await;
    assert_eq!(fits.points.len(), 2);
    let reply = send(h.post("/write?db=d", "m v=6i 6")).await;
    assert_eq!(reply.status, 429, "5 pending: full");

    held.done.unwrap().send(Ok(vec![])).unwrap();
    assert_eq!(first.await.unwrap().status, 204);
    fits.done.unwrap().send(Ok(vec![])).unwrap();
    assert_eq!(second.await.unwrap().status, 204);

    // Acknowledged: room again.
    let third = tokio::spawn(send(h.post("/write?db=d", "m v=4i 4\nm v=5i 5\nm v=6i 6")));
    let accepted = next(&mut h.taken).await;
    let times: Vec<i64> = accepted.points.iter().map(|p| p.time).collect();
    assert_eq!(times, vec![4, 5, 6]);
    accepted.done.unwrap().send(Ok(vec![])).unwrap();
    assert_eq!(third.await.unwrap().status, 204);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegraf_batch_with_bad_lines_delivers_the_good_ones_and_names_the_bad() {
    let mut h = start("ingest-partial", OPEN).await;
    let written = ack_all(&mut h, Duration::from_millis(20));
    let batch = "\
cpu,cpu=cpu0,host=web1 usage_user=12.5,usage_system=3.25 1700000000000000000
cpu,cpu=cpu1,host=web1 usage_user=10,usage_system=2.5 1700000000000000000
cpu,cpu=cpu2,host=web1 usage_user=oops 1700000000000000000
mem,host=web1 used=1073741824i,available_percent=61.5 1700000000000000000

disk,host=web1,path=/ free=1234u,inodes_used=77i 1700000000000000000
disk,host=web1,path=/boot free=12u 17000000000000000000000
system,host=web1 uptime=86400i,load1=0.5,n_users=2i,status=\"ok\",healthy=true 1700000000000000000
net,host=web1,interface=eth0 bytes_recv= 1700000000000000000
";
    let reply = send(h.post("/api/v2/write?org=acme&bucket=metrics&precision=ns", batch)).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["code"], "invalid");
    let rejected: Vec<u64> = reply.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![3, 7, 9]);
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("partial write: 3 lines rejected, 5 points written: line 3: "),
        "{message}"
    );
    assert!(
        message.contains("; line 7: ") && message.contains("; line 9: "),
        "{message}"
    );

    let t = 1_700_000_000_000_000_000;
    let expected = vec![
        point(
            "cpu",
            &[("cpu", "cpu0"), ("host", "web1")],
            vec![
                ("usage_user", Value::Float(12.5)),
                ("usage_system", Value::Float(3.25)),
            ],
            t,
        ),
        point(
            "cpu",
            &[("cpu", "cpu1"), ("host", "web1")],
            vec![
                ("usage_user", Value::Float(10.0)),
                ("usage_system", Value::Float(2.5)),
            ],
            t,
        ),
        point(
            "mem",
            &[("host", "web1")],
            vec![
                ("used", Value::Int(1_073_741_824)),
                ("available_percent", Value::Float(61.5)),
            ],
            t,
        ),
        point(
            "disk",
            &[("host", "web1"), ("path", "/")],
            vec![("free", Value::UInt(1234)), ("inodes_used", Value::Int(77))],
            t,
        ),
        point(
            "system",
            &[("host", "web1")],
            vec![
                ("uptime", Value::Int(86_400)),
                ("load1", Value::Float(0.5)),
                ("n_users", Value::Int(2)),
                ("status", Value::String("ok".into())),
                ("healthy", Value::Bool(true)),
            ],
            t,
        ),
    ];
    assert_eq!(
        *written.lock().unwrap(),
        expected,
        "exactly the valid points, before the answer"
    );
    assert_ne!(
        expected[0].device_hash, expected[1].device_hash,
        "series route apart"
    );
    assert_eq!(h.counters.rows_read.get(), 5);

    assert_eq!(h.dead_letters.count(), 3);
    let letters = h.dead_letter_lines();
    let lines: Vec<(u64, &str)> = letters
        .iter()
        .map(|l| {
            (
                l["record"]["line"].as_u64().unwrap(),
                l["record"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                3,
                "cpu,cpu=cpu2,host=web1 usage_user=oops 1700000000000000000"
            ),
            (
                7,
                "disk,host=web1,path=/boot free=12u 17000000000000000000000"
            ),
            (
                9,
                "net,host=web1,interface=eth0 bytes_recv= 1700000000000000000"
            ),
        ]
    );
    for letter in &letters {
        assert_eq!(letter["stage"], "ingest");
        assert_eq!(letter["record"]["target"], "metrics");
        let line = letter["record"]["line"].as_u64().unwrap();
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("line {line}: ")),
            "{letter}"
        );
    }

    // A request of bad lines only: 400, nothing queued, both dead-lettered.
    let reply = send(h.post("/write?db=telegraf", "x\ny y")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(h.dead_letters.count(), 5);
    assert_eq!(written.lock().unwrap().len(), 5);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_are_answered_after_done_and_async_ones_at_once() {
    let mut h = start("ingest-durable", "{}").await;
    let pending = tokio::spawn(send(h.post("/write?db=d", "m v=1i 1")));
    let request = next(&mut h.taken).await;
    // The engine holds the points: no answer may come, however long it takes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "answered before the points were durable"
    );
    request
        .done
        .expect("durable mode carries done")
        .send(Ok(vec![]))
        .unwrap();
    assert_eq!(pending.await.unwrap().status, 204);

    // The job failed: 500 with the reason. The engine went away: 503, retry later.
    let failing = tokio::spawn(send(h.post("/write?db=d", "m v=2i 2\nbad")));
    let request = next(&mut h.taken).await;
    request
        .done
        .unwrap()
        .send(Err("IoTDB refused the batch".into()))
        .unwrap();
    let reply = failing.await.unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body["message"],
        "the points were not written: IoTDB refused the batch"
    );
    assert_eq!(reply.body["rejected"][0]["line"], 2);
    let dropped = tokio::spawn(send(h.post("/write?db=d", "m v=3i 3")));
    drop(next(&mut h.taken).await);
    let reply = dropped.await.unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.retry_after.is_some());
    h.server.shutdown().await;

    // ack: async answers as soon as the points are queued; the engine has not looked yet.
    let mut h = start("ingest-async", "{ack: async}").await;
    let reply = send(h.post("/write?db=d", "m v=1i 1\nm v=2i 2")).await;
    assert_eq!(reply.status, 204);
    let request = next(&mut h.taken).await;
    assert!(
        request.done.is_none(),
        "nothing to acknowledge: the client has its answer"
    );
    let reply = send(h.post("/write?db=d", "m v=3i 3\nbad")).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .starts_with("partial write: 1 lines rejected, 1 points accepted: line 2: "),
        "{}",
        reply.body
    );
    assert_eq!(next(&mut h.taken).await.points[0].time, 3);
    assert_eq!(
        request.points.iter().map(|p| p.time).collect::<Vec<_>>(),
        vec![1, 2]
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_finishes_requests_in_progress() {
    let mut h = start("ingest-drain", "{}").await;
    let address = h.server.local_addr();
    let in_flight = tokio::spawn(send(h.post("/write?db=d", "m v=1i 1")));
    let request = next(&mut h.taken).await;
    let queue = h.queue.clone();
    let shutdown = tokio::spawn(h.server.shutdown());

    // Shutting down: the listener closes while the request waits for its acknowledgement.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(address).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !shutdown.is_finished(),
        "the drain waits for the request in progress"
    );
    assert!(!queue.is_closed());

    request.done.unwrap().send(Ok(vec![])).unwrap();
    assert_eq!(in_flight.await.unwrap().status, 204);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("the drain ends once the requests are answered")
        .unwrap();
    assert!(
        queue.is_finished(),
        "closed and empty: the engine's source may finish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_with_a_self_signed_certificate() {
    use tokio_rustls::rustls;
    let dir = common::scratch(&common::unique("ingest-tls-cert"));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let config = format!(
        "{{tls: {{cert: {}, key: {}}}, token: t0k}}",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let mut h = start("ingest-tls", &config).await;
    assert!(h.base.starts_with("https://"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(h.server.local_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let body = "secure,site=s1 temp=21.5 1700000000";
    let request = format!(
        "POST /api/v2/write?org=o&bucket=b&precision=s HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Token t0k\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let request = next(&mut h.taken).await;
    assert_eq!(
        request.points,
        vec![point(
            "secure",
            &[("site", "s1")],
            vec![("temp", Value::Float(21.5))],
            1_700_000_000_000_000_000
        )]
    );
    request.done.unwrap().send(Ok(vec![])).unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 204 "), "{response}");

    // Plain HTTP to the TLS port is not served.
    let plain = h.http.post(format!(
        "http://{}/api/v2/write?org=o&bucket=b",
        h.server.local_addr()
    ));
    let result = plain
        .header("Authorization", "Token t0k")
        .body("m v=1i 1")
        .send()
        .await;
    assert!(
        result.is_err() || result.unwrap().status() != 204,
        "plain HTTP must not be accepted"
    );
    assert!(h.queue.is_empty());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_that_times_out_keeps_its_points_pending_until_done() {
    let mut h = start(
        "ingest-ack-timeout",
        "{ack_timeout: 200ms, max_pending_points: 2}",
    )
    .await;
    let reply = tokio::spawn(send(h.post("/write?db=d", "m v=1i 1\nm v=2i 2")));
    let slow = next(&mut h.taken).await;
    let reply = reply.await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.retry_after.as_deref(), Some("1"));
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .starts_with("the points were not durable after 200ms"),
        "{}",
        reply.body
    );
    // The client gave up on them, the engine did not: they still count against the bound.
    assert_eq!(send(h.post("/write?db=d", "m v=3i 3")).await.status, 429);
    slow.done.unwrap().send(Ok(vec![])).ok();
    // Released as soon as done fires: a retry is taken (429 only while that is racing).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut retry = tokio::spawn(send(h.post("/write?db=d", "m v=3i 3")));
        tokio::select! {
            request = h.taken.recv() => {
                let request = request.unwrap();
                assert_eq!(request.points[0].time, 3);
                request.done.unwrap().send(Ok(vec![])).ok();
                assert_eq!(retry.await.unwrap().status, 204);
                break;
            }
            reply = &mut retry => assert_eq!(reply.unwrap().status, 429),
        }
        assert!(Instant::now() < deadline, "the bound was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_and_bad_field_values_are_bad_lines_with_reasons_a_writer_can_act_on() {
    let mut h = start("ingest-nul", OPEN).await;
    let written = ack_all(&mut h, Duration::ZERO);
    let body = "cpu,host=web1 temp=21.5 1\n\
                cp\0u,host=web1 temp=1 2\n\
                cpu,ho\0st=web1 temp=1 3\n\
                cpu,host=we\0b1 temp=1 4\n\
                cpu,host=web1 te\0mp=1 5\n\
                cpu,host=web1 temp=abc 6\n\
                cpu,host=web1 temp=1,load=high 7\n\
                cpu,host=web1 note=\"a\0b\" 8\n";
    let reply = send(h.post("/api/v2/write?org=acme&bucket=metrics&precision=s", body)).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let nul = "NUL bytes are not allowed in measurements, tag keys, tag values or field keys";
    let forms =
        "floats: 1.5, integers: 1i, unsigned: 1u, strings in double quotes, booleans: t/true/f/false";
    let expected: Vec<(u64, String)> = vec![
        (2, format!(r#"measurement "cp\0u": {nul}"#)),
        (3, format!(r#"tag key "ho\0st": {nul}"#)),
        (4, format!(r#"tag "host" value "we\0b1": {nul}"#)),
        (5, format!(r#"field key "te\0mp": {nul}"#)),
        (
            6,
            format!(r#"field "temp": "abc" is not a number ({forms})"#),
        ),
        (
            7,
            format!(r#"field "load": "high" is not a number ({forms})"#),
        ),
    ];
    let rejected: Vec<(u64, String)> = reply.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rejected, expected);
    let listed: Vec<String> = expected
        .iter()
        .map(|(line, reason)| format!("line {line}: {reason}"))
        .collect();
    assert_eq!(
        reply.body["message"],
        format!(
            "partial write: 6 lines rejected, 2 points written: {}",
            listed.join("; ")
        )
    );
    let letters: Vec<String> = h
        .dead_letter_lines()
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        letters, listed,
        "each bad line dead-lettered with its reason"
    );
    assert_eq!(
        *written.lock().unwrap(),
        vec![
            point(
                "cpu",
                &[("host", "web1")],
                vec![("temp", Value::Float(21.5))],
                1_000_000_000
            ),
            point(
                "cpu",
                &[("host", "web1")],
                vec![("note", Value::String("a\0b".into()))],
                8_000_000_000
            ),
        ],
        "the good lines, a NUL inside a string value included"
    );
    h.server.shutdown().await;
}

/// Reads one answer without a body (up to the blank line) from a kept-alive connection.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte))
            .await
            .expect("an answer within 10s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed mid-answer: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_wait_idle_timeout_and_a_request_started_gets_header_timeout() {
    let h = start(
        "ingest-keep-alive",
        "{header_timeout: 500ms, idle_timeout: 2s}",
    )
    .await;
    let ping = b"GET /ping HTTP/1.1\r\nHost: tsmig\r\n\r\n";
    let mut tcp = tokio::net::TcpStream::connect(h.server.local_addr())
        .await
        .unwrap();
    tcp.write_all(ping).await.unwrap();
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 204"));
    // Idle for longer than header_timeout (the client has asked nothing): still served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tcp.write_all(ping).await.unwrap();
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 204"));
    // A request begun and not finished: 408 at header_timeout from its first byte.
    let started = Instant::now();
    tcp.write_all(b"GET /ping HTTP/1.1\r\nHost: ")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .expect("cut within 10s")
        .ok();
    let cut_after = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(
        cut_after >= Duration::from_millis(500) && cut_after < Duration::from_secs(3),
        "cut after {cut_after:?}"
    );

    // Idle: closed quietly at idle_timeout.
    let mut tcp = tokio::net::TcpStream::connect(h.server.local_addr())
        .await
        .unwrap();
    tcp.write_all(ping).await.unwrap();
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 204"));
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest))
        .await
        .expect("closed within 10s")
        .ok();
    let closed_after = idle_since.elapsed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        closed_after >= Duration::from_secs(2) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    h.server.shutdown().await;
}
