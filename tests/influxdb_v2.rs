//! The InfluxDB sink in version 2 mode (through the influxdb2 crate) against a small HTTP
//! stand-in for InfluxDB 2's write API, defined here: it checks the token, org, bucket and
//! precision and answers as InfluxDB 2 does. (The line protocol itself is proven against
//! the real InfluxDB 1.x in tests/backfill.rs.)

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// What the stand-in saw: the request lines and the lines of accepted bodies.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    accepted_lines: Vec<String>,
    /// Answer the next write requests with these statuses first.
    script: Vec<u16>,
}

/// A stand-in for InfluxDB 2's `/api/v2/write` (not InfluxDB): accepts writes for org
/// `acme`, bucket `plant`, token `secret-token`, answering 204, 401 or 404 like InfluxDB 2.
fn standin(seen: Arc<Mutex<Seen>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    let mut auth = String::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "authorization" => auth = value.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let target = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let (status, json) = {
                        let mut s = seen.lock().unwrap();
                        s.requests.push(target.clone());
                        if !s.script.is_empty() {
                            (
                                s.script.remove(0),
                                r#"{"code":"unavailable","message":"try later"}"#,
                            )
                        } else if auth != "Token secret-token" {
                            (
                                401,
                                r#"{"code":"unauthorized","message":"unauthorized access"}"#,
                            )
                        } else if !target.starts_with("/api/v2/write?")
                            || !target.contains("org=acme")
                            || !target.contains("precision=ms")
                        {
                            (400, r#"{"code":"invalid","message":"bad request"}"#)
                        } else if !target.contains("bucket=plant") {
                            (404, r#"{"code":"not found","message":"bucket not found"}"#)
                        } else {
                            let text = String::from_utf8(body).unwrap();
                            s.accepted_lines.extend(text.lines().map(str::to_string));
                            (204, "")
                        }
                    };
                    let reason = match status {
                        204 => "No Content",
                        401 => "Unauthorized",
                        404 => "Not Found",
                        503 => "Service Unavailable",
                        _ => "Bad Request",
                    };
                    let response = if json.is_empty() {
                        format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n")
                    } else {
                        format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}", json.len())
                    };
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn job(dir: &std::path::Path, table: &str, port: u16, bucket: &str) -> std::path::PathBuf {
    let text = format!(
        r#"name: {table}
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  tables:
    - name: {table}
      split_by: id
      chunk_rows: 1000
sink:
  type: influxdb
  version: 2
  url: http://127.0.0.1:{port}
  org: acme
  bucket: {bucket}
  token: ${{INFLUX_TOKEN}}
  precision: ms
  batch_size: 700
  initial_backoff: 10ms
mappings:
  - table: {table}
    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, pressure, status]
checkpoint:
  store: file:{state}
"#,
        state = dir.join("state").display()
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn version_2_writes_with_token_org_bucket_and_precision_and_retries_503() {
    let table = unique("v2");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 5_000);
    let seen = Arc::new(Mutex::new(Seen {
        script: vec![503, 503],
        ..Seen::default()
    }));
    let port = standin(seen.clone());
    let dir = scratch(&table);
    let path = job(&dir, &table, port, "plant");
    let out = tsmig()
        .env("INFLUX_TOKEN", "secret-token")
        .args([
            "-c",
            "backfill",
            "--config",
            path.to_str().unwrap(),
            "--workers",
            "2",
            "--progress",
            "off",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 5_000);
    let seen = seen.lock().unwrap();
    let mut lines = seen.accepted_lines.clone();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 5_000, "every point once");
    // Row 1: dev-0001 at 2026-01-01T00:00:00Z; humidity 41, status 1.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sensors,device_id=dev-0001,site=site-1 ")
                && l.ends_with(" 1767225600000")),
        "{:?}",
        &lines[..3]
    );
    assert!(seen
        .requests
        .iter()
        .all(|r| r.starts_with("/api/v2/write?") && r.contains("bucket=plant")));
    assert_eq!(
        summary_u64(&out.stdout, "retries"),
        2,
        "the two 503s were retried"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("secret-token"),
        "the token must never be printed"
    );
}

#[test]
fn version_2_wrong_token_or_bucket_fails_the_job_with_the_servers_message() {
    let table = unique("v2bad");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 100);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = standin(seen.clone());
    let dir = scratch(&table);
    for (token, bucket, expected) in [
        ("wrong", "plant", "HTTP 401: unauthorized access"),
        ("secret-token", "nope", "HTTP 404: bucket not found"),
    ] {
        let path = job(&dir, &table, port, bucket);
        let out = tsmig()
            .env("INFLUX_TOKEN", token)
            .args([
                "-c",
                "backfill",
                "--config",
                path.to_str().unwrap(),
                "--fresh",
                "--progress",
                "off",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(expected),
            "{stderr}"
        );
        // Nothing was recorded as done: a fixed job file starts over.
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("state/backfill.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["finished"], serde_json::json!([]));
    }
    assert!(seen.lock().unwrap().accepted_lines.is_empty());
}
