//! Line protocol → InfluxDB 1.x end to end: the real `tsmig-job -c ingest` with
//! `ack: durable` in front of the private InfluxDB server. Durable means in the target: a
//! point InfluxDB refuses (a field-type conflict) is dead-lettered, and the request that
//! brought it is answered with the refusal — 400 `partial write ... dropped=N` on the 1.x
//! API, 422 on the 2.x API, as InfluxDB answers — never 204. The other points of the
//! request, and every other request, are written and answered as before.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// A running `tsmig-job -c ingest`, killed if the test ends without stopping it.
struct Ingest {
    child: Option<Child>,
    port: u16,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Posts `body` to `path` of the endpoint; returns the status and the body.
fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn start(dir: &Path, db: &str) -> Ingest {
    let port = free_ports(1)[0];
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: ingest-refusals
mode: ingest
source:
  type: ingest
  listen: 127.0.0.1:{port}
  api: [v1, v2]
  ack: durable
sink:
  type: influxdb
  version: 1
  url: {url}
  database: {db}
  precision: ns
  linger: 1ms
checkpoint:
  interval: 1s
  store: file:{state}
dead_letter: {letters}
",
            url = influx_url(),
            state = dir.join("state").display(),
            letters = dir.join("dead-letter.jsonl").display(),
        ),
    )
    .unwrap();
    let child = tsmig()
        .args(["-c", "ingest", "--config"])
        .arg(&job)
        .args(["--workers", "2", "--progress", "off"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ingest = Ingest {
        child: Some(child),
        port,
    };
    common::jobs::wait_for("the endpoint to open", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    ingest
}

fn values(db: &str) -> Vec<(String, serde_json::Value)> {
    let answer = influx_query(db, "SELECT device, v FROM sensors", "ns");
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|row| (row[1].as_str().unwrap().to_string(), row[2].clone()))
        .collect()
}

#[test]
fn a_point_influxdb_refuses_is_answered_as_a_partial_write_not_204() {
    let db = unique("ingest_refusals");
    let dir = scratch(&db);
    fresh_influx_db(&db);
    let _cleanup = Cleanup::default().database(&db);
    let ingest = start(&dir, &db);
    let write = format!("/write?db={db}");

    // `v` is an integer field from now on.
    let (status, body) = post(ingest.port, &write, "sensors,device=a v=1i 1000000000\n");
    assert_eq!(status, 204, "{body}");

    // A string `v` conflicts with it: InfluxDB refuses that point and takes the others.
    let (status, body) = post(
        ingest.port,
        &write,
        "sensors,device=b v=2i 2000000000\nsensors,device=x v=\"text\" 3000000000\nsensors,device=c v=3i 4000000000\n",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("partial write"), "{body}");
    assert!(body.contains("field type conflict"), "{body}");
    assert!(body.contains("dropped=1"), "{body}");
    assert!(body.contains("refused 1 of 3 points"), "{body}");

    // The same through the 2.x API: 422.
    let (status, body) = post(
        ingest.port,
        &format!("/api/v2/write?bucket={db}"),
        "sensors,device=y v=\"also text\" 5000000000\nsensors,device=d v=4i 6000000000\n",
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("dropped=1"), "{body}");

    // A clean request after them is durable: 204.
    let (status, body) = post(ingest.port, &write, "sensors,device=e v=5i 7000000000\n");
    assert_eq!(status, 204, "{body}");

    let mut stored = values(&db);
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, serde_json::Value)> = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]
        .iter()
        .map(|(d, v)| (d.to_string(), serde_json::json!(v)))
        .collect();
    assert_eq!(stored, want, "every point but the refused ones");
    // Dead letters reach the file within their flush interval.
    let letters_file = dir.join("dead-letter.jsonl");
    let letters = || std::fs::read_to_string(&letters_file).unwrap_or_default();
    wait_until("both refused points in the dead-letter file", || {
        letters().lines().count() >= 2
    });
    let letters = letters();
    let refused: Vec<&str> = letters.lines().collect();
    assert_eq!(refused.len(), 2, "{letters}");
    assert!(
        refused.iter().all(|l| l.contains("field type conflict")),
        "{letters}"
    );
    drop(ingest);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running job has transparent huge pages turned off (src/main.rs): with them, mimalloc's
/// 2 MiB-aligned arenas were backed by whole huge pages and a backfill's peak RSS was ~80 MB
/// instead of ~50 (BENCHMARKS.md, "Peak memory").
#[test]
fn a_running_job_has_transparent_huge_pages_off() {
    let db = unique("ingest_thp");
    let dir = scratch(&db);
    fresh_influx_db(&db);
    let _cleanup = Cleanup::default().database(&db);
    let ingest = start(&dir, &db);
    let pid = ingest.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // Kernels before 6.x do not show the flag; there is nothing to check on them.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}
