//! MySQL/MariaDB → Amazon Timestream backfills against moto's server (a real
//! implementation of Timestream's write API from PyPI, `moto[server]`, started by each test
//! on a port of its own; scripts/test.sh installs it). moto 5.2 stores what it is sent and
//! checks almost nothing (no limits, no RejectedRecords, CommonAttributes dropped): the
//! limits are tested in the sink's unit tests, the error paths against a mock client
//! (src/sinks/timestream/tests.rs). Here: the exact records that arrive, table creation,
//! rewrites as upserts, points dead-lettered before sending, and that no request leaves
//! loopback.
//!
//! The loopback proof: every run has the loopback trap of `common::moto::local_aws`. The
//! control run without an endpoint (endpoint discovery on) shows the trap catching exactly
//! that: its DescribeEndpoints call is refused by the dead proxy.

mod common;

use common::moto::{self, Moto};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shipped_job() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-timestream.yaml")
}

/// Runs the shipped job from `dir` against `endpoint` (`""`: endpoint discovery), with
/// fake credentials and the loopback trap.
fn run_job(dir: &Path, table: &str, endpoint: &str, args: &[&str]) -> std::process::Output {
    moto::local_aws(&mut tsmig(), dir, endpoint, "factory_test")
        .current_dir(dir)
        .env("TSMIG_TABLE", table)
        .args(["-c", "backfill", "--config"])
        .arg(shipped_job())
        .args(["--progress", "off"])
        .args(args)
        .output()
        .unwrap()
}

/// One expected record: dimensions and measures as Timestream holds them.
#[derive(Debug, PartialEq)]
struct Expected {
    dimensions: Vec<(String, String)>,
    measures: Vec<(String, String, String)>,
}

/// device_id, site, time in ms, temperature, humidity, pressure, status.
type Row = (
    String,
    String,
    i64,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// What each row of `table` must become, by (device, time in ms).
fn expected(table: &str) -> BTreeMap<(String, i64), Expected> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!("SELECT device_id, site, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, CAST(humidity AS CHAR), CAST(pressure AS CHAR), status FROM {table}"),
    ]);
    rows.into_iter()
        .map(|r| {
            let (device, site, time, temperature, humidity, pressure, status): Row =
                mysql_async::from_row(r);
            let mut measures = Vec::new();
            let mut m = |name: &str, value: Option<String>, kind: &str| {
                if let Some(v) = value {
                    measures.push((name.to_string(), v, kind.to_string()));
                }
            };
            m("temperature", temperature.map(|t| t.to_string()), "DOUBLE");
            m("humidity", humidity, "DOUBLE");
            m("pressure", pressure, "DOUBLE");
            m("status", status.map(|s| s.to_string()), "BIGINT");
            (
                (device.clone(), time),
                Expected {
                    dimensions: vec![("device_id".into(), device), ("site".into(), site)],
                    measures,
                },
            )
        })
        .collect()
}

/// A stored record as (device, time ms) → what it holds, checking the per-record settings.
fn stored(record: &serde_json::Value) -> ((String, i64), Expected, i64) {
    assert_eq!(record["MeasureName"], "readings", "{record}");
    assert_eq!(record["MeasureValueType"], "MULTI", "{record}");
    assert_eq!(record["TimeUnit"], "MILLISECONDS", "{record}");
    let dimensions: Vec<(String, String)> = record["Dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Name"].as_str().unwrap().to_string(),
                d["Value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let measures = record["MeasureValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let (name, value, kind) = (
                m["Name"].as_str().unwrap(),
                m["Value"].as_str().unwrap(),
                m["Type"].as_str().unwrap(),
            );
            // A DOUBLE compares as the number it is (ryu's text and MySQL's may differ).
            let value = if name == "temperature" {
                value.parse::<f64>().unwrap().to_string()
            } else {
                value.to_string()
            };
            (name.to_string(), value, kind.to_string())
        })
        .collect();
    let device = dimensions[0].1.clone();
    let time = record["Time"].as_str().unwrap().parse().unwrap();
    (
        (device, time),
        Expected {
            dimensions,
            measures,
        },
        record["Version"].as_i64().unwrap(),
    )
}

#[test]
fn backfill_writes_every_row_as_one_record_creates_the_table_and_rewrites_as_upserts() {
    let moto = Moto::start();
    let table = unique("ts_timestream");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 1500);
    // Recent times (Timestream refuses what is older than the memory store's retention),
    // and two rows an hour ahead, which Timestream would refuse too.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    sql(&[
        "SET time_zone = '+00:00'",
        &format!("UPDATE {table} SET ts = FROM_UNIXTIME({base} + id DIV 1000)"),
        &format!("UPDATE {table} SET ts = FROM_UNIXTIME({base} + 10800) WHERE id IN (5, 6)"),
    ]);
    let dir = scratch(&table);

    let out = run_job(&dir, &table, &moto.url(), &["--workers", "2"]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 1500);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 1498);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 2);

    // The two future rows: dead-lettered with the reason, never sent.
    let letters: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.join("state/factory-to-timestream/dead-letter.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(letters.len(), 2);
    let mut dead_devices: Vec<&str> = letters
        .iter()
        .map(|l| {
            assert!(
                l["reason"]
                    .as_str()
                    .unwrap()
                    .contains("more than 15 minutes ahead"),
                "{l}"
            );
            l["record"]["tags"]["device_id"].as_str().unwrap()
        })
        .collect();
    dead_devices.sort();
    assert_eq!(dead_devices, vec!["dev-0005", "dev-0006"]);

    // The database and the table were created, with the job file's retention.
    let data = moto.data();
    let databases: Vec<&str> = data["timestreamwrite"]["TimestreamDatabase"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(databases, vec!["factory_test"]);
    let tables = data["timestreamwrite"]["TimestreamTable"]
        .as_array()
        .unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0]["name"], "sensors");
    assert_eq!(tables[0]["db_name"], "factory_test");
    assert_eq!(
        tables[0]["retention_properties"],
        serde_json::json!({"MemoryStoreRetentionPeriodInHours": 8766, "MagneticStoreRetentionPeriodInDays": 3650})
    );

    // Every other row arrived once, exactly.
    let mut want = expected(&table);
    let future_ms = (base as i64 + 10800) * 1000;
    want.retain(|(_, time), _| *time != future_ms);
    assert_eq!(want.len(), 1498);
    let records = moto.records("sensors");
    assert_eq!(records.len(), 1498);
    let mut first_versions = BTreeMap::new();
    for r in &records {
        let (key, got, version) = stored(r);
        assert_eq!(Some(&got), want.get(&key), "record {key:?}");
        assert!(
            first_versions.insert(key, version).is_none(),
            "written twice"
        );
    }
    assert_eq!(first_versions.len(), want.len());

    // Again from the start: the table is found (not re-created: moto would empty it) and
    // every point is rewritten with a higher version, an upsert in Timestream.
    let again = run_job(&dir, &table, &moto.url(), &["--fresh"]);
    assert_ok(&again);
    assert_eq!(summary_u64(&again.stdout, "points_written"), 1498);
    let records = moto.records("sensors");
    assert_eq!(records.len(), 2 * 1498);
    for r in &records[1498..] {
        let (key, got, version) = stored(r);
        assert_eq!(Some(&got), want.get(&key));
        assert!(version > first_versions[&key], "{key:?}: {version}");
    }
}

#[test]
fn without_an_endpoint_discovery_is_used_and_the_loopback_trap_catches_it() {
    let table = unique("ts_discovery");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let dir = scratch(&table);
    let out = run_job(&dir, &table, "", &["--restart", "none"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // DescribeEndpoints went for the real AWS host, so through the dead proxy on 127.0.0.1:9.
    assert!(stderr.contains("endpoint discovery failed"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
    assert!(!stderr.contains("dns error"), "{stderr}");
}

#[test]
fn a_bad_timestream_section_is_refused_naming_the_key() {
    let dir = scratch("ts_bad_job");
    let text = std::fs::read_to_string(shipped_job()).unwrap();
    let cases = [
        (
            text.replace("memory_retention: 8766h", "memory_retention: 90m"),
            "key `sink.memory_retention`: must be whole hours from 1h to 8766h",
        ),
        (
            text.replace("measure_name: readings", "measure_name: time"),
            "key `sink.measure_name`: measure_name `time` is reserved by Timestream",
        ),
        (
            text.replace("  create: true", "  create: true\n  creat: false"),
            "key `sink.creat`: unknown field `creat`",
        ),
    ];
    for (i, (job, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&path, job).unwrap();
        let out = run(&["validate", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }
}
