//! The InfluxDB sink in version 2 mode against the stand-in for InfluxDB 2 in
//! tests/standins/influxdb2/ (it is not InfluxDB): its write API checks the token, org,
//! bucket, precision and gzip, keeps the points it accepts and answers with InfluxDB 2's
//! statuses and JSON errors (400 partial write, 401, 404, 413, 429 with Retry-After, 503);
//! its query API answers the few Flux queries tsmig's verify job sends with annotated CSV
//! as InfluxDB 2 writes it. What arrived is compared, point by point, with the MySQL rows.
//! (The line protocol itself is proven against the real InfluxDB 1.x in tests/backfill.rs.)

mod common;
#[path = "standins/influxdb2/mod.rs"]
mod influxdb2_standin;

use common::*;
use influxdb2_standin::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// One test's sensor table, what its stand-in keeps, the stand-in's port, a scratch
/// folder, and the table's cleanup (keep it to the end).
type Case = (String, Arc<Mutex<Seen>>, u16, std::path::PathBuf, Cleanup);

/// A [`Case`] with a sensor table of `rows` rows and a stand-in starting from `seen`.
fn case(prefix: &str, rows: u64, seen: Seen) -> Case {
    let table = unique(prefix);
    let cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, rows);
    let seen = Arc::new(Mutex::new(seen));
    let port = standin(seen.clone());
    let dir = scratch(&table);
    (table, seen, port, dir, cleanup)
}

fn job(dir: &std::path::Path, table: &str, port: u16, bucket: &str) -> std::path::PathBuf {
    job_with(dir, table, port, bucket, "")
}

/// The job, with `extra` sink keys (YAML lines indented by two).
fn job_with(
    dir: &std::path::Path,
    table: &str,
    port: u16,
    bucket: &str,
    extra: &str,
) -> std::path::PathBuf {
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
{extra}mappings:
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
    let (table, seen, port, dir, _cleanup) = case(
        "v2",
        5_000,
        Seen {
            script: vec![503, 503],
            ..Seen::default()
        },
    );
    let path = job(&dir, &table, port, "plant");
    let out = backfill(&path, "2");
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
    let (table, seen, port, dir, _cleanup) = case("v2bad", 100, Seen::default());
    for (token, bucket, expected) in [
        ("wrong", "plant", "HTTP 401: unauthorized access"),
        (
            "secret-token",
            "nope",
            "HTTP 404: bucket \"nope\" not found",
        ),
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
    let (table, seen, port, dir, _cleanup) = case("v2ver", 3_000, Seen::default());
    let path = job(&dir, &table, port, "plant");
    assert_ok(&backfill(&path, "2"));

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

#[test]
fn version_2_verify_repair_recopies_the_damaged_windows_and_the_bucket_equals_the_table() {
    let (table, seen, port, dir, _cleanup) = case("v2rep", 3_000, Seen::default());
    let path = job(&dir, &table, port, "plant");
    assert_ok(&backfill(&path, "2"));
    let expected = expected_store(&table, &[]);
    assert_store(&seen.lock().unwrap(), &expected);

    // Damage, as in the verify test: every device has three points, at seconds 0..2.
    {
        let mut s = seen.lock().unwrap();
        s.series_mut("sensors", &[("device_id", "dev-0003"), ("site", "site-3")])
            .remove(&1_767_225_600_000_000_000)
            .unwrap();
        s.write_line(
            "sensors,device_id=dev-0005,site=site-5 temperature=99.5 1767225601000",
            1_000_000,
        )
        .unwrap();
        s.write_line(
            "sensors,device_id=stray,site=nowhere temperature=1 1767225600123456789",
            1,
        )
        .unwrap();
        s.series_mut("sensors", &[("device_id", "dev-0007"), ("site", "site-0")])
            .clear();
        s.deletes.clear();
    }

    let out = tsmig()
        .env("INFLUX_TOKEN", "secret-token")
        .args([
            "-c",
            "verify",
            "--repair",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("verify: ") || l.starts_with("repair: ") || l.starts_with("  repaired: ")
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "verify: 1001 series, 1001 buckets compared: 997 matching, 1 missing in target, 1 extra in target, 2 differing",
            "repair: 4 series × buckets repaired: 6 points removed, 9 written",
            "  repaired: sensors,device_id=dev-0003,site=site-3 from 2026-01-01T00:00:00Z: 2 points removed, 3 written",
            "  repaired: sensors,device_id=dev-0005,site=site-5 from 2026-01-01T00:00:00Z: 3 points removed, 3 written",
            "  repaired: sensors,device_id=dev-0007,site=site-0 from 2026-01-01T00:00:00Z: 0 points removed, 3 written",
            "  repaired: sensors,device_id=stray,site=nowhere from 2026-01-01T00:00:00Z: 1 points removed, 0 written",
            "verify: 1000 series, 1000 buckets compared: 1000 matching, 0 missing in target, 0 extra in target, 0 differing",
        ],
        "{stdout}"
    );
    let seen = seen.lock().unwrap();
    // One call of the delete API per window, each naming the series' measurement and tags.
    assert_eq!(
        seen.deletes,
        vec![
            r#"_measurement="sensors" AND "device_id"="dev-0003" AND "site"="site-3""#,
            r#"_measurement="sensors" AND "device_id"="dev-0005" AND "site"="site-5""#,
            r#"_measurement="sensors" AND "device_id"="dev-0007" AND "site"="site-0""#,
            r#"_measurement="sensors" AND "device_id"="stray" AND "site"="nowhere""#,
        ]
    );
    assert_store(&seen, &expected);
    assert!(!stdout.contains("secret-token"));
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

/// Runs a backfill of `job` with the right token and `workers` workers.
fn backfill(job: &std::path::Path, workers: &str) -> std::process::Output {
    backfill_command(job, workers)
        .env("INFLUX_TOKEN", "secret-token")
        .output()
        .unwrap()
}

/// What the bucket must hold after migrating the sensor table `table`, read from MySQL:
/// one point per row (time in ns), NULL fields absent; series whose line holds a string of
/// `skip` left out.
fn expected_store(table: &str, skip: &[&str]) -> Store {
    let rows = sql(&[&format!(
        "SELECT device_id, site, TIMESTAMPDIFF(SECOND, '1970-01-01', ts), temperature, \
         CAST(humidity AS DOUBLE), CAST(pressure AS DOUBLE), status FROM {table}"
    )]);
    let mut store = Store::new();
    for row in rows {
        let device: String = row.get(0).unwrap();
        let site: String = row.get(1).unwrap();
        if skip
            .iter()
            .any(|s| format!("sensors,device_id={device},site={site} ").contains(s))
        {
            continue;
        }
        let seconds: i64 = row.get(2).unwrap();
        let mut fields = BTreeMap::new();
        for (i, name) in [(3, "temperature"), (4, "humidity"), (5, "pressure")] {
            if let Some(v) = row.get::<Option<f64>, _>(i).unwrap() {
                fields.insert(name.to_string(), FieldValue::Float(v));
            }
        }
        if let Some(v) = row.get::<Option<i64>, _>(6).unwrap() {
            fields.insert("status".to_string(), FieldValue::Int(v));
        }
        let series = (
            "sensors".to_string(),
            vec![
                ("device_id".to_string(), device),
                ("site".to_string(), site),
            ],
        );
        let old = store
            .entry(series)
            .or_default()
            .insert(seconds * 1_000_000_000, fields);
        assert!(old.is_none(), "(device, ts) is unique in the sensor table");
    }
    store
}

/// Compares the stand-in's bucket with `expected`, naming the first difference.
fn assert_store(seen: &Seen, expected: &Store) {
    let points = |s: &Store| s.values().map(|p| p.len()).sum::<usize>();
    assert_eq!(points(&seen.store), points(expected), "points stored");
    for (series, points) in expected {
        assert_eq!(
            seen.store.get(series),
            Some(points),
            "series {series:?} differs"
        );
    }
    assert_eq!(seen.store.len(), expected.len(), "series stored");
}

#[test]
fn version_2_a_line_influxdb_cannot_read_refuses_its_body_and_only_that_line_is_dead_lettered() {
    // Rows 1..1500: dev-0700 (site-0) reports once, at 00:00:00.
    let bad = "sensors,device_id=dev-0700,site=site-0 ";
    let (table, seen, port, dir, _cleanup) = case(
        "v2part",
        1_500,
        Seen {
            refuse: vec![bad.to_string()],
            ..Seen::default()
        },
    );
    let out = backfill(&job(&dir, &table, port, "plant"), "2");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 1_499);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 1);

    let dead = std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let line = dead[0]["record"].as_str().unwrap();
    assert!(
        line.starts_with(bad) && line.ends_with(" 1767225600000"),
        "{line}"
    );
    assert_eq!(dead[0]["stage"], "sink");
    assert_eq!(
        dead[0]["reason"].as_str().unwrap(),
        format!("HTTP 400: unable to parse '{line}': refused by the stand-in")
    );

    let seen = seen.lock().unwrap();
    assert_store(&seen, &expected_store(&table, &[bad]));
    // InfluxDB 2 writes nothing of a body with a line it cannot read: the batch holding
    // the bad line was bisected and its good lines arrived once each, with the halves.
    let refused: Vec<&WriteLog> = seen.writes.iter().filter(|w| w.status == 400).collect();
    assert!(!refused.is_empty() && refused.iter().all(|w| w.stored == 0));
    assert_eq!(seen.accepted_lines.len(), 1_499);
    assert!(seen.writes.iter().all(|w| w.gzip), "gzip is the default");
}

#[test]
fn version_2_a_field_type_conflict_is_422_and_only_the_conflicting_points_are_dead_lettered() {
    // Two weeks of readings; the bucket already holds `status` as a string in the second
    // week's shard group (Monday 2026-01-05 onwards), so there every point with a status
    // clashes, and in the first week none does.
    let table = unique("v2types");
    let _cleanup = Cleanup::default().table(&table);
    let mut rows = Vec::new();
    for i in 0..40 {
        let day = 1 + i / 4; // 2026-01-01 .. 2026-01-10
        let status = if i % 5 == 0 {
            "NULL".to_string()
        } else {
            i.to_string()
        };
        rows.push(format!(
            "({i}, 'dev-{}', 'site-0', '2026-01-{day:02} 00:00:{i:02}', {i}.5, NULL, NULL, {status})",
            i % 2
        ));
    }
    sql(&[
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, device_id VARCHAR(32), site VARCHAR(32), ts DATETIME, \
             temperature DOUBLE, humidity FLOAT, pressure DECIMAL(8,2), status TINYINT)"
        ),
        &format!("INSERT INTO {table} VALUES {}", rows.join(", ")),
    ]);
    let mut seen = Seen::default();
    seen.write_line(
        "sensors,device_id=dev-other,site=site-9 status=\"ok\" 1767657600000000000",
        1,
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(seen));
    let port = standin(seen.clone());
    let dir = scratch(&table);
    let out = backfill(&job(&dir, &table, port, "plant"), "1");
    assert_ok(&out);
    // Week two: days 5..10, rows 16..39; those with a status (not i % 5 == 0) clash.
    let clashing: Vec<i64> = (16..40).filter(|i| i % 5 != 0).collect();
    assert_eq!(
        summary_u64(&out.stdout, "dead_lettered"),
        clashing.len() as u64
    );
    assert_eq!(
        summary_u64(&out.stdout, "points_written"),
        40 - clashing.len() as u64
    );
    let dead = std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap();
    let mut dead_ids = Vec::new();
    for line in dead.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            record["reason"].as_str().unwrap(),
            "HTTP 422: failure writing points to database: partial write: field type conflict: \
             input field \"status\" on measurement \"sensors\" is type integer, already exists \
             as type string dropped=1"
        );
        let line = record["record"].as_str().unwrap();
        let temperature = line.split("temperature=").nth(1).unwrap();
        let id: f64 = temperature
            .split([',', ' '])
            .next()
            .unwrap()
            .parse()
            .unwrap();
        dead_ids.push(id as i64);
    }
    dead_ids.sort();
    assert_eq!(dead_ids, clashing);
    let seen = seen.lock().unwrap();
    assert!(seen.writes.iter().any(|w| w.status == 422 && w.stored > 0));
    let stored: usize = seen
        .store
        .iter()
        .filter(|((_, tags), _)| tags[0].1 != "dev-other")
        .map(|(_, points)| points.len())
        .sum();
    assert_eq!(stored, 40 - clashing.len());
}

#[test]
fn version_2_413_splits_the_batch_until_everything_arrives() {
    // Batches of 700 lines are about 70 kB decoded; the stand-in takes 16 kB at most.
    let (table, seen, port, dir, _cleanup) = case(
        "v2big",
        2_000,
        Seen {
            max_body: Some(16_000),
            ..Seen::default()
        },
    );
    let out = backfill(&job(&dir, &table, port, "plant"), "2");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 2_000);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 0);
    assert!(
        !dir.join("state/dead-letter.jsonl").exists() || {
            std::fs::read_to_string(dir.join("state/dead-letter.jsonl"))
                .unwrap()
                .is_empty()
        }
    );
    let seen = seen.lock().unwrap();
    assert!(seen.writes.iter().any(|w| w.status == 413));
    assert!(seen
        .writes
        .iter()
        .all(|w| w.status == 413 || w.status == 204));
    assert_eq!(
        seen.accepted_lines.len(),
        2_000,
        "a 413 stores nothing, so each point was stored once"
    );
    assert_store(&seen, &expected_store(&table, &[]));
}

#[test]
fn version_2_429_waits_for_retry_after_and_503_is_retried() {
    let (table, seen, port, dir, _cleanup) = case(
        "v2slow",
        1_000,
        Seen {
            script: vec![429, 503, 503],
            retry_after: Some(1),
            ..Seen::default()
        },
    );
    // One request at a time, so the write after the 429 is its retry.
    let path = job_with(&dir, &table, port, "plant", "  in_flight: 1\n");
    let out = backfill(&path, "1");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 1_000);
    assert_eq!(summary_u64(&out.stdout, "retries"), 3);
    let seen = seen.lock().unwrap();
    let statuses: Vec<u16> = seen.writes.iter().map(|w| w.status).collect();
    assert_eq!(&statuses[..4], &[429, 503, 503, 204], "{statuses:?}");
    let waited = seen.writes[1].at - seen.writes[0].at;
    assert!(
        waited >= std::time::Duration::from_secs(1),
        "the retry after a 429 with Retry-After: 1 came after {waited:?}"
    );
    assert_eq!(seen.accepted_lines.len(), 1_000);
    assert_store(&seen, &expected_store(&table, &[]));
}

#[test]
fn version_2_gzip_bodies_arrive_decoded_and_gzip_false_sends_them_plain() {
    let table = unique("v2gz");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 1_000);
    let expected = expected_store(&table, &[]);
    for (extra, gzip) in [("", true), ("  gzip: false\n", false)] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let port = standin(seen.clone());
        let dir = scratch(&format!("{table}-{gzip}"));
        let out = backfill(&job_with(&dir, &table, port, "plant", extra), "2");
        assert_ok(&out);
        let seen = seen.lock().unwrap();
        assert!(!seen.writes.is_empty());
        assert!(
            seen.writes
                .iter()
                .all(|w| w.gzip == gzip && w.status == 204),
            "gzip {gzip}: {:?}",
            seen.writes
        );
        assert_store(&seen, &expected);
    }
}

/// The stand-in's write checks, asked directly: they exist, so the tests above prove the
/// sink passes them.
#[test]
fn the_standin_checks_what_influxdb_2_checks_on_write() {
    let mut s = Seen::default();
    let write = |s: &mut Seen, query: &str, auth: &str, gzip: bool, body: &[u8]| {
        let body = if gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        } else {
            body.to_vec()
        };
        let r = answer(
            s,
            "POST",
            &format!("/api/v2/write?{query}"),
            auth,
            gzip.then_some("gzip"),
            body,
        );
        (r.status, r.body)
    };
    let token = "Token secret-token";
    let json = |code: &str, message: &str| {
        serde_json::json!({ "code": code, "message": message }).to_string()
    };
    let ok = "org=acme&bucket=plant&precision=s";
    assert_eq!(
        write(&mut s, ok, "Token nope", false, b"m f=1 1"),
        (401, json("unauthorized", "unauthorized access"))
    );
    assert_eq!(
        write(&mut s, ok, "Bearer secret-token", false, b"m f=1 1").0,
        401
    );
    assert_eq!(
        write(&mut s, "org=other&bucket=plant", token, false, b"m f=1 1"),
        (
            404,
            json("not found", "organization name \"other\" not found")
        )
    );
    assert_eq!(
        write(&mut s, "org=acme&bucket=x", token, false, b"m f=1 1"),
        (404, json("not found", "bucket \"x\" not found"))
    );
    assert_eq!(
        write(
            &mut s,
            "org=acme&bucket=plant&precision=m",
            token,
            false,
            b"m f=1 1"
        ),
        (
            400,
            json(
                "invalid",
                "invalid precision \"m\": must be one of ns, us, ms, s"
            )
        )
    );
    assert!(s.store.is_empty(), "nothing refused was stored");
    // A gzipped body is decoded; precision s is seconds.
    assert_eq!(write(&mut s, ok, token, true, b"m f=1 7\nm f=2 8\n").0, 204);
    // Not gzip at all, though it says so.
    let r = answer(
        &mut s,
        "POST",
        &format!("/api/v2/write?{ok}"),
        token,
        Some("gzip"),
        b"m f=3 9".to_vec(),
    );
    assert_eq!(r.status, 400);
    // A line InfluxDB cannot read refuses the whole body: nothing of it is written, and
    // every bad line is named.
    assert_eq!(
        write(&mut s, ok, token, false, b"m f=4 10\nm 11\nm f=5 12\nm,t= f=1 13\n"),
        (
            400,
            json(
                "invalid",
                "unable to parse 'm 11': invalid field format\nunable to parse 'm,t= f=1 13': missing tag value"
            )
        )
    );
    let times: Vec<(i64, FieldValue)> = s.store[&("m".to_string(), vec![])]
        .iter()
        .map(|(t, f)| (*t, f["f"].clone()))
        .collect();
    assert_eq!(
        times,
        vec![
            (7_000_000_000, FieldValue::Float(1.0)),
            (8_000_000_000, FieldValue::Float(2.0)),
        ]
    );
    // What InfluxDB 2's parser refuses (models/points.go), each alone in a body.
    for (line, reason) in [
        ("m f=NaN 1", "invalid number"),
        ("m f=nan 1", "invalid number"),
        ("m f=-Inf 1", "invalid number"),
        ("m f=Inf 1", "invalid boolean"),
        ("m f=+1 1", "invalid boolean"),
        ("m f=1e400 1", "invalid float"),
        ("m f=1.5i 1", "invalid number"),
        ("m f=-1u 1", "invalid number"),
        (
            "m f=9223372036854775808i 1",
            "unable to parse integer 9223372036854775808: strconv.ParseInt: parsing \"9223372036854775808\": value out of range",
        ),
        ("m,t=a,t=b f=1 1", "duplicate tags"),
        ("m,=a f=1 1", "missing tag key"),
        ("m,t f=1 1", "missing tag value"),
        ("m,t=a=b f=1 1", "invalid tag format"),
        ("m f= 1", "missing field value"),
        ("m =1 1", "missing field key"),
        ("m f=\"x 1", "unbalanced quotes"),
        ("m f=1 1x", "bad timestamp"),
        (",t=a f=1 1", "missing measurement"),
        ("m", "missing fields"),
    ] {
        assert_eq!(
            write(&mut s, ok, token, false, line.as_bytes()),
            (400, json("invalid", &format!("unable to parse '{line}': {reason}"))),
            "{line}"
        );
    }
    // Comments and blank lines are skipped; a line without a time takes the server's.
    assert_eq!(
        write(&mut s, ok, token, false, b"# comment\n\n  m,t=x f=1i\n").0,
        204
    );
    assert_eq!(
        s.store[&("m".to_string(), vec![("t".into(), "x".into())])].len(),
        1
    );

    // A field's type is fixed per shard group (a week from Monday): another type there is
    // dropped (422) while the rest of the body is written; another week takes it.
    let monday = 1_767_571_200; // 2026-01-05T00:00:00Z, seconds
    let body = format!(
        "c v=1 {}\nc v=\"text\" {}\nc w=2 {}\nc v=\"text\" {}\n",
        monday + 60,
        monday + 120,
        monday + 180,
        monday - 60
    );
    assert_eq!(
        write(&mut s, ok, token, false, body.as_bytes()),
        (
            422,
            json(
                "unprocessable entity",
                "failure writing points to database: partial write: field type conflict: \
                 input field \"v\" on measurement \"c\" is type string, already exists as \
                 type float dropped=1"
            )
        )
    );
    let c: Vec<i64> = s.store[&("c".to_string(), vec![])]
        .keys()
        .copied()
        .collect();
    let second = 1_000_000_000;
    assert_eq!(
        c,
        [
            (monday - 60) * second,
            (monday + 60) * second,
            (monday + 180) * second
        ]
    );
    assert_eq!(
        s.write_line(&format!("c v=true {}", monday + 7 * 86_400), 1_000_000_000),
        Ok(())
    );
    assert!(s
        .write_line(
            &format!("c v=2i {}", monday + 7 * 86_400 + 1),
            1_000_000_000
        )
        .unwrap_err()
        .contains("is type integer, already exists as type boolean"));
}

#[test]
fn the_standin_reads_delete_predicates_as_influxdb_2_does() {
    let mut s = Seen::default();
    for line in [
        "m,name=a,site-id=s1,site\\ id=x,t=b\\c v=1 10",
        "m,name=b,site-id=s2,site\\ id=y,t=q v=1 10",
        "other,name=a v=1 10",
    ] {
        s.write_line(line, 1).unwrap();
    }
    let delete = |s: &mut Seen, predicate: &str| {
        let body = serde_json::json!({
            "start": "1970-01-01T00:00:00Z",
            "stop": "1970-01-01T00:00:01Z",
            "predicate": predicate,
        });
        let r = answer(
            s,
            "POST",
            "/api/v2/delete?org=acme&bucket=plant",
            "Token secret-token",
            None,
            body.to_string().into_bytes(),
        );
        (r.status, r.body)
    };
    let refused = |status: u16, message: &str| {
        let code = if status == 501 {
            "not implemented"
        } else {
            "invalid"
        };
        (
            status,
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
    };
    for (predicate, answer) in [
        (
            r#"_measurement="m" AND name="a""#,
            refused(400, "invalid request; error parsing predicate: found NAME, expected identifier, string, number, bool at line 1, char 22"),
        ),
        (
            r#"_measurement="m" AND site-id="s1""#,
            refused(400, r#"error decoding json body: invalid operator "-" at position: 25"#),
        ),
        (
            r#"_measurement="m" AND site id="x""#,
            refused(400, r#"error decoding json body: invalid operator "IDENT" at position: 26"#),
        ),
        (
            r#"_measurement="m" AND tag="x""#,
            refused(400, "error decoding json body: bad logical expression, at position 21"),
        ),
        (
            r#"tag="x""#,
            refused(400, "error decoding json body: bad logical expression, at position 0"),
        ),
        (
            r#"_measurement="m" AND "t"="q" AND from="x""#,
            refused(400, "error decoding json body: bad tag key, at position 33"),
        ),
        (
            r#"_measurement='m'"#,
            refused(400, r#"error decoding json body: bad tag value: "m", at position 13"#),
        ),
        (
            r#"_measurement="m" OR t="q""#,
            refused(400, "error decoding json body: the logical operator OR is not supported yet at position 17"),
        ),
        (
            r#"t="b\c""#,
            refused(400, r#"error decoding json body: bad tag value: "", at position 2"#),
        ),
        (
            r#"_measurement="m" AND _field="v""#,
            refused(501, "delete by field is not supported"),
        ),
    ] {
        assert_eq!(delete(&mut s, predicate), answer, "{predicate}");
    }
    assert_eq!(
        s.store.values().map(|p| p.len()).sum::<usize>(),
        3,
        "nothing deleted"
    );

    // Quoted, each key reads as itself; a backslash in a value is written `\\`.
    let series = |s: &Seen| {
        s.store
            .keys()
            .map(|(m, t)| format!("{m}{t:?}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        delete(
            &mut s,
            r#"_measurement="m" AND "name"="a" AND "site-id"="s1" AND "site id"="x" AND "t"="b\\c""#
        ),
        (204, String::new())
    );
    assert_eq!(series(&s).len(), 2);
    assert!(s
        .store
        .keys()
        .all(|(m, tags)| m == "other" || tags[0].1 == "b"));
    assert_eq!(delete(&mut s, r#"("_measurement"="m") AND (t="q")"#).0, 204);
    assert_eq!(series(&s), [r#"other[("name", "a")]"#]);
}

/// The InfluxDB sink in version 2 mode against the stand-in at `port`, for measurement `m`
/// whose tags are `tag_keys`.
fn v2_sink(port: u16, tag_keys: &[&str]) -> tsmig::connectors::influxdb::InfluxSink {
    let config: tsmig::connectors::influxdb::sink_config::InfluxSinkConfig =
        serde_json::from_value(serde_json::json!({
            "version": 2,
            "url": format!("http://127.0.0.1:{port}"),
            "org": "acme",
            "bucket": "plant",
            "token": "secret-token",
            "precision": "ns",
        }))
        .unwrap();
    let batching = tsmig::sink::BatchConfig {
        retry: tsmig::retry::RetryPolicy::default().without_retries(),
        ..Default::default()
    };
    tsmig::connectors::influxdb::InfluxSink::new(&config, &batching, vec!["m".into()])
        .unwrap()
        .with_tag_keys(BTreeMap::from([(
            "m".to_string(),
            tag_keys.iter().map(|k| k.to_string()).collect(),
        )]))
}

#[test]
fn version_2_deletes_quote_tag_keys_influxdb_reads_otherwise_name_and_site_id() {
    use tsmig::sink::{SeriesWindow, Sink};
    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let mut s = seen.lock().unwrap();
        for line in [
            "m,name=pump\\ 1,site-id=a\\b,site\\ id=x v=1 10",
            "m,name=pump\\ 1,site-id=a\\b,site\\ id=x v=2 20",
            "m,name=pump\\ 1,site-id=a\\b,site\\ id=x v=3 30",
            "m,name=pump\\ 2,site-id=a\\b,site\\ id=x v=4 10",
        ] {
            s.write_line(line, 1).unwrap();
        }
    }
    let port = standin(seen.clone());
    let sink = v2_sink(port, &["name", "site id", "site-id"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tags = |name: &str| {
        vec![
            ("name".into(), name.to_string()),
            ("site id".into(), "x".to_string()),
            ("site-id".into(), "a\\b".to_string()),
        ]
    };
    // A CDC delete: exactly one point of one series.
    let point = tsmig::model::Point {
        measurement: "m".into(),
        tags: tags("pump 1")
            .into_iter()
            .map(|(k, v): (String, String)| (k.as_str().into(), v.into()))
            .collect(),
        fields: vec![("v".into(), tsmig::model::Value::Float(1.0))],
        time: 10,
        device_hash: 0,
    };
    rt.block_on(sink.delete(std::slice::from_ref(&point)))
        .expect("the delete is accepted");
    // verify --repair's range delete: that series' [15, 25).
    let window = SeriesWindow {
        measurement: "m".into(),
        tags: tags("pump 1"),
        start: 15,
        end: 25,
    };
    rt.block_on(sink.delete_range(&[window]))
        .expect("the range delete is accepted");

    let s = seen.lock().unwrap();
    let remaining: Vec<(String, i64)> = s
        .store
        .iter()
        .flat_map(|((_, tags), points)| {
            let name = tags.iter().find(|(k, _)| k == "name").unwrap().1.clone();
            points.keys().map(move |t| (name.clone(), *t))
        })
        .collect();
    assert_eq!(
        remaining,
        [("pump 1".to_string(), 30), ("pump 2".to_string(), 10)],
        "exactly the deleted point and window are gone: {:?}",
        s.deletes
    );
    assert_eq!(
        s.deletes[0],
        r#"_measurement="m" AND "name"="pump 1" AND "site id"="x" AND "site-id"="a\\b""#
    );
}
