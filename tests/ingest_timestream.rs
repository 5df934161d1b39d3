//! Line protocol → Amazon Timestream end to end: the real `tsmig-job -c ingest` running
//! the shipped job file (jobs/lineprotocol-to-timestream.yaml), clients posting line
//! protocol over HTTP as Telegraf does, and moto's server as Timestream (one per test, with
//! the loopback trap of `common::moto`). What arrives is read back from moto's store
//! (`/moto-api/data.json`): exactly the valid points, with their dimensions, typed measures
//! and times. Times are recent: Timestream refuses points older than the memory store's
//! retention or more than 15 minutes ahead.
//!
//! Where a test must hold Timestream back, it puts a gate between the job and moto: a TCP
//! relay in the test that stops forwarding the job's requests while closed.

mod common;

use common::moto::{self, Moto};
use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn shipped_job() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/lineprotocol-to-timestream.yaml")
}

/// The database the tests write to.
const DATABASE: &str = "telemetry_test";

/// A running `tsmig-job -c ingest`, killed if a test ends without stopping it.
struct IngestJob {
    child: Option<Child>,
    port: u16,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// An HTTP answer: status and body (JSON when there is one).
#[derive(Debug)]
struct Reply {
    status: u16,
    body: serde_json::Value,
}

impl IngestJob {
    /// Starts `job` from `dir` with `workers`, `ack` mode, writing to `endpoint`; returns
    /// once the endpoint answers `/ping`.
    fn start(dir: &Path, job: &Path, endpoint: &str, workers: usize, ack: &str) -> IngestJob {
        let port = free_ports(1)[0];
        let child = moto::local_aws(&mut tsmig(), dir, endpoint, DATABASE)
            .current_dir(dir)
            .env("INGEST_LISTEN", format!("127.0.0.1:{port}"))
            .env("INGEST_ACK", ack)
            .args(["-c", "ingest", "--config"])
            .arg(job)
            .args(["--workers", &workers.to_string(), "--progress", "off"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut job = IngestJob {
            child: Some(child),
            port,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = job.child.as_mut().unwrap().try_wait().unwrap() {
                let out = job.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "tsmig-job exited ({status}) before listening: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let ping = job.rt.block_on(async {
                job.http
                    .get(format!("{}/ping", job.base()))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
            });
            if ping.is_ok_and(|r| r.status() == 204) {
                return job;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the endpoint never answered /ping"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POSTs `body` to `path` (gzipped when asked), waiting for the answer.
    fn post(&self, path: &str, body: &str, gzip: bool) -> Reply {
        self.rt
            .block_on(post(&self.http, &self.base(), path, body, gzip))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(mut self) -> Output {
        let child = self.child.take().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait_with_output().unwrap()
    }

    /// Waits for the process to exit by itself.
    fn wait(mut self) -> Output {
        self.child.take().unwrap().wait_with_output().unwrap()
    }

    /// The dead-letter file (read once the job has exited: it is buffered).
    fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("state/lineprotocol-to-timestream/dead-letter.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for IngestJob {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &str,
    gzip: bool,
) -> Result<Reply, reqwest::Error> {
    let mut request = http
        .post(format!("{base}{path}"))
        .header("Content-Type", "text/plain; charset=utf-8")
        .timeout(Duration::from_secs(60));
    let bytes = if gzip {
        request = request.header("Content-Encoding", "gzip");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(body.as_bytes()).unwrap();
        encoder.finish().unwrap()
    } else {
        body.as_bytes().to_vec()
    };
    let response = request.body(bytes).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok(Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    })
}

/// Nanoseconds since the Unix epoch, now.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// One record as Timestream holds it, comparable: table, dimensions, measures (name, type,
/// value; DOUBLE values as numbers) and time in nanoseconds.
type Record = (
    String,
    Vec<(String, String)>,
    Vec<(String, String, String)>,
    i64,
);

/// Every record of every table of `DATABASE` in moto, checking the per-record settings.
fn stored(moto: &Moto) -> BTreeSet<Record> {
    let data = moto.data();
    let mut out = BTreeSet::new();
    for table in data["timestreamwrite"]["TimestreamTable"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert_eq!(table["db_name"], DATABASE);
        for r in table["records"].as_array().unwrap() {
            assert_eq!(r["MeasureName"], "metrics", "{r}");
            assert_eq!(r["MeasureValueType"], "MULTI", "{r}");
            assert_eq!(r["TimeUnit"], "NANOSECONDS", "{r}");
            let mut dimensions: Vec<(String, String)> = r["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (text(&d["Name"]), text(&d["Value"])))
                .collect();
            dimensions.sort();
            let mut measures: Vec<(String, String, String)> = r["MeasureValues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| measure(&text(&m["Name"]), &text(&m["Type"]), &text(&m["Value"])))
                .collect();
            measures.sort();
            let time = text(&r["Time"]).parse().unwrap();
            let record = (text(&table["name"]), dimensions, measures, time);
            assert!(out.insert(record.clone()), "written twice: {record:?}");
        }
    }
    out
}

fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is not text"))
        .to_string()
}

/// A measure, DOUBLEs compared as numbers.
fn measure(name: &str, kind: &str, value: &str) -> (String, String, String) {
    let value = if kind == "DOUBLE" {
        format!("{:?}", value.parse::<f64>().unwrap())
    } else {
        value.to_string()
    };
    (name.to_string(), kind.to_string(), value)
}

/// An expected record.
fn record(
    table: &str,
    dims: &[(&str, &str)],
    measures: &[(&str, &str, &str)],
    time: i64,
) -> Record {
    let mut dimensions: Vec<(String, String)> = dims
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    dimensions.sort();
    let mut measures: Vec<_> = measures.iter().map(|(n, k, v)| measure(n, k, v)).collect();
    measures.sort();
    (table.to_string(), dimensions, measures, time)
}

/// Posts Telegraf-style batches through both APIs, every precision, gzip, bad lines and
/// lines without a timestamp, checking after each answer that its points are already in
/// Timestream; at the end, Timestream holds exactly the valid points.
fn exact_points_arrive(workers: usize) {
    let moto = Moto::start();
    let dir = scratch(&unique(&format!("ingest_ts_exact_{workers}")));
    let job = IngestJob::start(&dir, &shipped_job(), &moto.url(), workers, "durable");
    let mut want: BTreeSet<Record> = BTreeSet::new();
    // Two minutes ago, in whole seconds, so every precision can say it exactly.
    let t = (now_ns() / 1_000_000_000 - 120) * 1_000_000_000;
    let s = t / 1_000_000_000;

    // A Telegraf batch (API v2, precision s) with two bad lines and two lines Timestream
    // would refuse (no tag: no dimension; an hour ahead).
    let ahead = s + 3600;
    let batch = format!(
        "\
cpu,host=web-1,cpu=cpu-total usage_idle=97.5,usage_user=1.25 {s}
cpu,host=web-1 this is not line protocol
mem,host=web-1 used=1024i,available_percent=61.5,swap_ok=true {s}
disk,host=web-1,path=/ free=123456789u,fstype=\"ext4\" {s}
cpu,host=web-2 usage_idle=88.5 notatime
uptime_total seconds=1i {s}
cpu,host=web-3 usage_idle=50.5 {ahead}
"
    );
    let reply = job.post(
        "/api/v2/write?org=acme&bucket=telegraf&precision=s",
        &batch,
        false,
    );
    assert_eq!(reply.status, 400, "{reply:?}");
    let rejected: Vec<u64> = reply.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![2, 5, 6, 7], "{reply:?}");
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("partial write: 4 lines rejected, 3 points written: line 2: "),
        "{message}"
    );
    assert!(
        message.contains("line 6: no dimension: Timestream needs at least one"),
        "{message}"
    );
    assert!(
        message.contains("line 7: time ") && message.contains("more than 15 minutes ahead"),
        "{message}"
    );
    want.insert(record(
        "cpu",
        &[("host", "web-1"), ("cpu", "cpu-total")],
        &[
            ("usage_idle", "DOUBLE", "97.5"),
            ("usage_user", "DOUBLE", "1.25"),
        ],
        t,
    ));
    want.insert(record(
        "mem",
        &[("host", "web-1")],
        &[
            ("used", "BIGINT", "1024"),
            ("available_percent", "DOUBLE", "61.5"),
            ("swap_ok", "BOOLEAN", "true"),
        ],
        t,
    ));
    want.insert(record(
        "disk",
        &[("host", "web-1"), ("path", "/")],
        &[
            ("free", "BIGINT", "123456789"),
            ("fstype", "VARCHAR", "ext4"),
        ],
        t,
    ));
    // Durable: the good lines were in Timestream when the answer came.
    assert_eq!(stored(&moto), want, "after the partial write");

    // Every precision of both APIs, the same instant written in its unit; gzip for some.
    let cases: [(&str, &str, i64, bool); 10] = [
        (
            "/api/v2/write?bucket=telegraf&precision=ns",
            "v2-ns",
            t,
            false,
        ),
        (
            "/api/v2/write?bucket=telegraf&precision=us",
            "v2-us",
            t / 1_000,
            true,
        ),
        (
            "/api/v2/write?bucket=telegraf&precision=ms",
            "v2-ms",
            t / 1_000_000,
            false,
        ),
        ("/api/v2/write?bucket=telegraf", "v2-default", t, true),
        ("/write?db=telegraf&precision=n", "v1-n", t, false),
        ("/write?db=telegraf&precision=u", "v1-u", t / 1_000, false),
        (
            "/write?db=telegraf&precision=ms",
            "v1-ms",
            t / 1_000_000,
            true,
        ),
        ("/write?db=telegraf&precision=s", "v1-s", s, false),
        ("/write?db=telegraf&precision=m", "v1-m", s / 60, false),
        ("/write?db=telegraf&precision=h", "v1-h", s / 3600, true),
    ];
    for (i, (path, host, stamp, gzip)) in cases.iter().enumerate() {
        let body = format!("temp,host={host},room=r{i} celsius={i}.5,seq={i}i {stamp}\n");
        let reply = job.post(path, &body, *gzip);
        assert_eq!(reply.status, 204, "{path}: {reply:?}");
        let time = match *host {
            "v1-m" => s / 60 * 60 * 1_000_000_000,
            "v1-h" => s / 3600 * 3600 * 1_000_000_000,
            _ => t,
        };
        want.insert(record(
            "temp",
            &[("host", host), ("room", &format!("r{i}"))],
            &[
                ("celsius", "DOUBLE", &format!("{i}.5")),
                ("seq", "BIGINT", &i.to_string()),
            ],
            time,
        ));
        assert_eq!(stored(&moto), want, "right after the 204 of {path}");
    }

    // Lines without a timestamp get the server's time, in the request's precision.
    let before = now_ns();
    let reply = job.post(
        "/write?db=telegraf&precision=ms",
        "uptime,host=web-1 seconds=86400i\nuptime,host=web-2 seconds=172800i\n",
        false,
    );
    assert_eq!(reply.status, 204, "{reply:?}");
    let after = now_ns();
    let got = stored(&moto);
    let untimed: Vec<&Record> = got.iter().filter(|r| r.0 == "uptime").collect();
    assert_eq!(untimed.len(), 2, "{untimed:?}");
    let time = untimed[0].3;
    assert_eq!(untimed[1].3, time, "one reading of the clock per request");
    assert_eq!(time % 1_000_000, 0, "truncated to ms");
    assert!(
        before / 1_000_000 * 1_000_000 <= time && time <= after,
        "{before} <= {time} <= {after}"
    );
    for (host, seconds) in [("web-1", "86400"), ("web-2", "172800")] {
        want.insert(record(
            "uptime",
            &[("host", host)],
            &[("seconds", "BIGINT", seconds)],
            time,
        ));
    }
    assert_eq!(got, want);

    // A request of bad lines only: 400, nothing written.
    let reply = job.post("/api/v2/write?bucket=telegraf", "x\ncpu usage=", false);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body["rejected"].as_array().unwrap().len(), 2);

    let out = job.terminate();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), want.len() as u64);
    assert_eq!(
        summary_u64(&out.stdout, "points_written"),
        want.len() as u64
    );
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 6);
    assert_eq!(summary(&out.stdout)["stopped"], "true");
    assert_eq!(stored(&moto), want, "exactly the valid points, once each");

    // The bad lines are in the dead-letter file, by line, with their text.
    let letters = IngestJob::dead_letters(&dir);
    let untagged = format!("uptime_total seconds=1i {s}");
    let future = format!("cpu,host=web-3 usage_idle=50.5 {ahead}");
    let lines: Vec<(u64, &str, &str)> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["stage"], "ingest", "{l}");
            (
                l["record"]["line"].as_u64().unwrap(),
                l["record"]["text"].as_str().unwrap(),
                l["record"]["api"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (2, "cpu,host=web-1 this is not line protocol", "v2"),
            (5, "cpu,host=web-2 usage_idle=88.5 notatime", "v2"),
            (6, untagged.as_str(), "v2"),
            (7, future.as_str(), "v2"),
            (1, "x", "v2"),
            (2, "cpu usage=", "v2"),
        ]
    );
}

#[test]
fn every_valid_point_arrives_exactly_once_and_bad_lines_are_reported_and_dead_lettered() {
    exact_points_arrive(1);
}

#[test]
fn two_workers_deliver_the_same_exact_points() {
    exact_points_arrive(2);
}

/// A TCP relay to `upstream` that forwards nothing from its clients while closed.
struct Gate {
    port: u16,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    fn start(upstream: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new((Mutex::new(true), Condvar::new()));
        let gate = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let gate = gate.clone();
                // Requests wait at the gate; answers pass freely.
                std::thread::spawn(move || relay(client_in, server_out, Some(gate)));
                std::thread::spawn(move || relay(server, client, None));
            }
        });
        Gate { port, open }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, open: bool) {
        *self.open.0.lock().unwrap() = open;
        self.open.1.notify_all();
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, gate: Option<Arc<(Mutex<bool>, Condvar)>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(gate) = &gate {
            let (open, changed) = &**gate;
            let mut is_open = open.lock().unwrap();
            while !*is_open {
                is_open = changed.wait(is_open).unwrap();
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Posts in the background; the answer comes through the returned channel.
fn post_in_background(base: String, path: &str, body: String) -> std::sync::mpsc::Receiver<Reply> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reply = rt
            .block_on(post(&reqwest::Client::new(), &base, &path, &body, false))
            .unwrap();
        let _ = tx.send(reply);
    });
    rx
}

/// Waits until `moto` holds `n` records (async acknowledgement: they come after the 204).
fn wait_for_records(moto: &Moto, n: usize) -> BTreeSet<Record> {
    let started = Instant::now();
    loop {
        let got = stored(moto);
        if got.len() >= n || started.elapsed() > Duration::from_secs(60) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Line protocol for `meters` (name, watts) of measurement `power` at `t`.
fn power(meters: &[(&str, i64)], t: i64) -> String {
    meters
        .iter()
        .map(|(meter, watts)| format!("power,meter={meter} watts={watts}i {t}\n"))
        .collect()
}

/// The records `power(meters, t)` becomes.
fn power_records(meters: &[(&str, i64)], t: i64) -> BTreeSet<Record> {
    meters
        .iter()
        .map(|(meter, watts)| {
            record(
                "power",
                &[("meter", meter)],
                &[("watts", "BIGINT", &watts.to_string())],
                t,
            )
        })
        .collect()
}

/// The shipped job on `workers` writing to moto through an open gate, a minute ago as the
/// time to write at.
fn gated(name: &str, workers: usize, ack: &str) -> (Moto, Gate, IngestJob, i64) {
    let moto = Moto::start();
    let gate = Gate::start(moto.port());
    let dir = scratch(&unique(name));
    let job = IngestJob::start(&dir, &shipped_job(), &gate.url(), workers, ack);
    (moto, gate, job, now_ns() - 60_000_000_000)
}

/// The path the tests write to (API v2).
const WRITE: &str = "/api/v2/write?bucket=telegraf";

#[test]
fn a_durable_write_is_answered_only_once_timestream_has_it() {
    let (moto, gate, job, t) = gated("ingest_ts_durable", 1, "durable");
    let reply = job.post(WRITE, &power(&[("m1", 10)], t), false);
    assert_eq!(reply.status, 204);
    assert_eq!(stored(&moto).len(), 1, "in Timestream when the 204 came");

    // Timestream held back: the write waits.
    gate.set(false);
    let answer = post_in_background(job.base(), WRITE, power(&[("m2", 20)], t));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        answer.try_recv().is_err(),
        "answered before Timestream had the point"
    );
    assert_eq!(stored(&moto).len(), 1);
    gate.set(true);
    let reply = answer.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(stored(&moto), power_records(&[("m1", 10), ("m2", 20)], t));
    assert_ok(&job.terminate());
}

#[test]
fn async_acknowledgement_answers_at_once_and_writes_afterwards() {
    let (moto, gate, job, t) = gated("ingest_ts_async", 1, "async");
    let meters = [("m1", 10), ("m2", 20)];
    gate.set(false);
    let answer = post_in_background(job.base(), WRITE, power(&meters, t));
    let reply = answer.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(reply.status, 204, "answered while Timestream is held back");
    assert!(stored(&moto).is_empty());
    gate.set(true);
    assert_eq!(wait_for_records(&moto, 2), power_records(&meters, t));
    let out = job.terminate();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 2);
}

#[test]
fn when_timestream_goes_away_the_waiting_write_fails_and_the_job_exits_1() {
    let mut moto = Moto::start();
    let dir = scratch(&unique("ingest_ts_gone"));
    let text = std::fs::read_to_string(shipped_job())
        .unwrap()
        .replace("max_retries: 10", "max_retries: 1\n  initial_backoff: 50ms");
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, text).unwrap();
    let job = IngestJob::start(&dir, &job_file, &moto.url(), 1, "durable");
    let t = now_ns() - 60_000_000_000;

    assert_eq!(job.post(WRITE, &power(&[("m1", 10)], t), false).status, 204);
    moto.stop();
    let reply = job.post(WRITE, &power(&[("m2", 20)], t), false);
    assert_eq!(reply.status, 500, "{reply:?}");
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("the points were not written: writing to the sink failed:"),
        "{message}"
    );
    let out = job.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: writing to the sink failed"),
        "{stderr}"
    );
}

#[test]
fn sigterm_while_clients_post_answers_what_it_took_and_exits_0() {
    let moto = Moto::start();
    let dir = scratch(&unique("ingest_ts_sigterm"));
    let job = IngestJob::start(&dir, &shipped_job(), &moto.url(), 2, "durable");
    let t = now_ns() - 60_000_000_000;
    let base = job.base();

    // Three clients post one point per request, each with its own series, until refused.
    let answered = Arc::new(Mutex::new(Vec::<(String, u64, u16)>::new()));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (base, answered) = (base.clone(), answered.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let http = reqwest::Client::new();
                let client = format!("c{c}");
                let mut failures = 0;
                for i in 0u64.. {
                    let body = format!("load,client={client} n={i}i {}", t + i as i64);
                    match rt.block_on(post(
                        &http,
                        &base,
                        "/api/v2/write?bucket=telegraf",
                        &body,
                        false,
                    )) {
                        Ok(reply) => {
                            answered
                                .lock()
                                .unwrap()
                                .push((client.clone(), i, reply.status))
                        }
                        Err(_) => {
                            failures += 1;
                            if failures == 3 {
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    while answered.lock().unwrap().len() < 30 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = job.terminate();
    for client in clients {
        client.join().unwrap();
    }
    assert_ok(&out);
    assert_eq!(summary(&out.stdout)["stopped"], "true");

    // Later connections are refused.
    assert!(TcpStream::connect(("127.0.0.1", job_port(&base))).is_err());

    // Every request answered 204 is in Timestream; nothing else is, and nothing twice.
    let answered = answered.lock().unwrap();
    assert!(answered.len() >= 30);
    for (client, i, status) in answered.iter() {
        assert_eq!(*status, 204, "{client} request {i}");
    }
    let got = stored(&moto);
    for (client, i, _) in answered.iter() {
        let want = record(
            "load",
            &[("client", client)],
            &[("n", "BIGINT", &i.to_string())],
            t + *i as i64,
        );
        assert!(
            got.contains(&want),
            "{want:?} was answered 204 but is not in Timestream"
        );
    }
    // A request whose answer the client never read may be written too; never more.
    assert!(got.len() <= answered.len() + 3, "{} records", got.len());
    assert_eq!(summary_u64(&out.stdout, "points_written"), got.len() as u64);
}

fn job_port(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_shipped_job_validates_plans_and_refuses_mappings() {
    let out = run(&["validate", "--config", shipped_job().to_str().unwrap()]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(mode ingest, 0 tables, 0 mappings)"),
        "{out:?}"
    );
    let out = tsmig()
        .env("INGEST_LISTEN", "127.0.0.1:18123")
        .env("TIMESTREAM_ENDPOINT", "http://127.0.0.1:5")
        .args(["plan", "--config", shipped_job().to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&out);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("source ingest: listening on 127.0.0.1:18123 (v1 POST /write, v2 POST /api/v2/write), ack durable"),
        "{plan}"
    );
    assert!(
        plan.contains("target Amazon Timestream database telemetry"),
        "{plan}"
    );

    // `-c ingest` serves only an ingest source.
    let mysql_job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-timestream.yaml");
    let out = tsmig()
        .env("TSMIG_TABLE", "t")
        .args(["-c", "ingest", "--config", mysql_job.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: the `ingest` entry point serves `source: {type: ingest}`; this job's source is `mysql`"),
        "{stderr}"
    );

    // A mapping in an ingest job is an error naming the key; other sources still need one.
    let dir = scratch("ingest_ts_bad_job");
    let text = std::fs::read_to_string(shipped_job()).unwrap();
    let with_mapping = text.replace(
        "checkpoint:",
        "mappings:\n  - table: cpu\n    device_field: host\n    timestamp_field: time\n    fields: [usage]\ncheckpoint:",
    );
    let line = with_mapping.lines().position(|l| l == "mappings:").unwrap() + 1;
    let path = dir.join("mapped.yaml");
    std::fs::write(&path, with_mapping).unwrap();
    let out = run(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "mapped.yaml:{line}:1: key `mappings`: an ingest job has no source tables to map"
        )),
        "{stderr}"
    );
    let mysql = std::fs::read_to_string(&mysql_job).unwrap();
    let unmapped = &mysql[..mysql.find("mappings:").unwrap()];
    let path = dir.join("unmapped.yaml");
    std::fs::write(&path, unmapped).unwrap();
    let out = tsmig()
        .env("TSMIG_TABLE", "t")
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `mappings`: a job needs at least one mapping"),
        "{stderr}"
    );
}

#[test]
fn sigterm_refuses_new_connections_at_once_and_finishes_the_write_in_progress() {
    let (moto, gate, job, t) = gated("ingest_ts_drain", 2, "durable");
    let port = job_port(&job.base());
    assert_eq!(job.post(WRITE, &power(&[("m1", 10)], t), false).status, 204);

    // A write in progress (Timestream held back), then SIGTERM.
    gate.set(false);
    let answer = post_in_background(job.base(), WRITE, power(&[("m2", 20), ("m3", 30)], t));
    std::thread::sleep(Duration::from_millis(500));
    let pid = job.child.as_ref().unwrap().id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());

    // While the job drains, a new connection is refused.
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        answer.try_recv().is_err(),
        "answered before Timestream had it"
    );

    // Timestream comes back: the write in progress is answered 204, in Timestream, and the
    // job exits 0.
    gate.set(true);
    let reply = answer.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    let out = job.wait();
    assert_ok(&out);
    assert_eq!(summary(&out.stdout)["stopped"], "true");
    assert_eq!(summary_u64(&out.stdout, "points_written"), 3);
    assert_eq!(
        stored(&moto),
        power_records(&[("m1", 10), ("m2", 20), ("m3", 30)], t)
    );
}

#[test]
fn rewrites_of_a_point_reach_timestream_in_the_order_they_were_posted_on_two_workers() {
    let moto = Moto::start();
    let dir = scratch(&unique("ingest_ts_rewrites"));
    // Async: the client does not wait for Timestream, so requests rewriting the same points
    // are in the dataflow together and both workers take them.
    let job = IngestJob::start(&dir, &shipped_job(), &moto.url(), 2, "async");
    let t = now_ns() - 60_000_000_000;
    let (requests, devices) = (40u64, 16u64);
    for r in 0..requests {
        let body: String = (0..devices)
            .map(|d| format!("gauge,device=d{d} value={r}i {t}\n"))
            .collect();
        let reply = job.post(WRITE, &body, false);
        assert_eq!(reply.status, 204, "{reply:?}");
    }
    let out = job.terminate();
    assert_ok(&out);
    assert_eq!(
        summary_u64(&out.stdout, "points_written"),
        requests * devices
    );

    // Every write is a record; per point, the highest version (the last write, an upsert in
    // Timestream) holds the value of the last request, and versions follow the requests.
    let records = moto.records("gauge");
    assert_eq!(records.len() as u64, requests * devices);
    let mut by_device: std::collections::BTreeMap<String, Vec<(i64, u64)>> = Default::default();
    for r in &records {
        assert_eq!(text(&r["Time"]), t.to_string());
        let device = text(&r["Dimensions"][0]["Value"]);
        let value: u64 = text(&r["MeasureValues"][0]["Value"]).parse().unwrap();
        by_device
            .entry(device)
            .or_default()
            .push((r["Version"].as_i64().unwrap(), value));
    }
    assert_eq!(by_device.len() as u64, devices);
    for (device, mut writes) in by_device {
        writes.sort();
        let values: Vec<u64> = writes.iter().map(|(_, v)| *v).collect();
        assert_eq!(
            values,
            (0..requests).collect::<Vec<_>>(),
            "{device}: writes out of order"
        );
    }
}
