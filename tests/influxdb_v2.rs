//! The InfluxDB sink in version 2 mode (through the influxdb2 crate) against the stand-in
//! for InfluxDB 2 in tests/standins/influxdb2/ (it is not InfluxDB): its write API checks
//! the token, org, bucket and precision and keeps the points it accepts; its query API
//! answers the few Flux queries tsmig's verify job sends with annotated CSV as InfluxDB 2
//! writes it. (The line protocol itself is proven against the real InfluxDB 1.x in
//! tests/backfill.rs.)

mod common;
#[path = "standins/influxdb2/mod.rs"]
mod influxdb2_standin;

use common::*;
use influxdb2_standin::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

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

#[test]
fn version_2_verify_is_clean_after_backfill_and_finds_each_kind_of_damage() {
    let table = unique("v2ver");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 3_000);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = standin(seen.clone());
    let dir = scratch(&table);
    let path = job(&dir, &table, port, "plant");
    assert_ok(
        &tsmig()
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
            .unwrap(),
    );

    let (code, report) = verify(&path, &[("INFLUX_TOKEN", "secret-token".to_string())]);
    assert_eq!(code, 0, "{report}");
    // 1,000 devices, 3 seconds of data: one bucket each.
    assert_eq!(report_line(&report), "verify: 1000 series, 1000 buckets compared: 1000 matching, 0 missing in target, 0 extra in target, 0 differing");
    // First and last time, then one window (3 seconds): counted, then read.
    let queries = seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("/api/v2/query?org=acme"))
        .count();
    assert_eq!(
        queries,
        2 * 4,
        "four queries for each of the two verify runs"
    );

    // Damage: one point deleted, one value changed, one stray series, one series dropped.
    // Row 3 is dev-0003 at 00:00:00; row 1005 is dev-0005 at 00:00:01; dev-0007 is in site-0.
    {
        let mut s = seen.lock().unwrap();
        let removed = s
            .series_mut("sensors", &[("device_id", "dev-0003"), ("site", "site-3")])
            .remove(&1_767_225_600_000_000_000);
        assert!(removed.is_some());
        s.write_line(
            "sensors,device_id=dev-0005,site=site-5 temperature=99.5 1767225601000",
            1_000_000,
        )
        .unwrap();
        // At a time to the nanosecond, so that times are read back to the nanosecond.
        s.write_line(
            "sensors,device_id=stray,site=nowhere temperature=1 1767225600123456789",
            1,
        )
        .unwrap();
        s.series_mut("sensors", &[("device_id", "dev-0007"), ("site", "site-0")])
            .clear();
    }

    let (code, report) = verify(&path, &[("INFLUX_TOKEN", "secret-token".to_string())]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report_line(&report), "verify: 1001 series, 1001 buckets compared: 997 matching, 1 missing in target, 1 extra in target, 2 differing");
    assert!(
        report.contains("missing in target: sensors,device_id=dev-0007,site=site-0"),
        "{report}"
    );
    assert!(
        report.contains("extra in target:   sensors,device_id=stray,site=nowhere"),
        "{report}"
    );
    assert!(report.contains("differing:         sensors,device_id=dev-0003,site=site-3 from 2026-01-01T00:00:00Z: 3 points in the source, 2 in the target"), "{report}");
    assert!(report.contains("differing:         sensors,device_id=dev-0005,site=site-5 from 2026-01-01T00:00:00Z: the same points with other values"), "{report}");
    assert!(
        report.lines().last().unwrap().starts_with(
            "error: the target differs from the source: 1 missing, 1 extra, 2 differing"
        ),
        "{report}"
    );

    // A wrong token or bucket fails with the server's message, and no token is printed.
    let (code, report) = verify(&path, &[("INFLUX_TOKEN", "wrong-token".to_string())]);
    assert_eq!(code, 1, "{report}");
    let last = report.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("HTTP 401: unauthorized access"),
        "{report}"
    );
    assert!(!report.contains("wrong-token") && !report.contains("secret-token"));
    let path = job(&dir, &table, port, "nope");
    let (code, report) = verify(&path, &[("INFLUX_TOKEN", "secret-token".to_string())]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.lines().last().unwrap_or_default().contains(
            "HTTP 404: failed to initialize execute state: could not find bucket \"nope\""
        ),
        "{report}"
    );
}

/// The stand-in answers only the Flux it knows; anything else is InfluxDB's 400.
#[test]
fn the_standin_refuses_flux_it_does_not_know() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = standin(seen);
    let body = r#"{"query":"buckets()","dialect":{"annotations":["datatype","group","default"]}}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /api/v2/query?org=acme HTTP/1.1\r\nhost: x\r\nauthorization: Token secret-token\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        match header.trim_end().split_once(": ") {
            Some(("content-length", n)) => length = n.parse().unwrap(),
            None => break,
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "invalid");
    assert!(
        json["message"].as_str().unwrap().contains("buckets()"),
        "{json}"
    );
}
