//! MySQL/MariaDB → InfluxDB 1.x backfills against the real servers that scripts/test.sh
//! starts: the same rows arrive whatever the parallelism, values arrive exactly, a killed
//! job resumes where its checkpoint says, SIGTERM drains, and rejected lines are
//! dead-lettered one by one.

mod common;

use common::*;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::time::{Duration, Instant};

/// device_id, site, time (ms), temperature, humidity, pressure, status.
type SensorRow = (
    String,
    String,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
);

/// Every row of `table` as the point tsmig should write (time in ms), sorted like `influx_dump`.
fn expected_points(table: &str) -> Vec<Json> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!(
            "SELECT device_id, site, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, humidity, pressure, status FROM {table}"
        ),
    ]);
    let mut points: Vec<Json> = rows
        .into_iter()
        .map(|r| {
            let (device, site, time, temperature, humidity, pressure, status): SensorRow =
                mysql_async::from_row(r);
            let mut fields = serde_json::Map::new();
            for (k, v) in [
                ("temperature", temperature),
                ("humidity", humidity),
                ("pressure", pressure),
            ] {
                if let Some(v) = v {
                    fields.insert(k.into(), json!(v));
                }
            }
            if let Some(s) = status {
                fields.insert("status".into(), json!(s));
            }
            json!({"time": time, "tags": {"device_id": device, "site": site}, "fields": fields})
        })
        .collect();
    points.sort_by_key(|p| p.to_string());
    points
}

/// Numbers compared as f64 (InfluxDB's JSON writes 45.0 as 45).
fn normalise(points: Vec<Json>) -> Vec<Json> {
    fn walk(v: Json) -> Json {
        match v {
            Json::Number(n) => json!(n.as_f64().unwrap()),
            Json::Object(m) => Json::Object(m.into_iter().map(|(k, v)| (k, walk(v))).collect()),
            Json::Array(a) => Json::Array(a.into_iter().map(walk).collect()),
            other => other,
        }
    }
    let mut out: Vec<Json> = points.into_iter().map(walk).collect();
    out.sort_by_key(|p| p.to_string());
    out
}

#[test]
fn one_worker_two_workers_and_two_processes_write_the_same_exact_points() {
    let table = unique("par");
    let mut cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 30_000);
    let expected = normalise(expected_points(&table));
    assert_eq!(expected.len(), 30_000);

    let mut dumps = Vec::new();
    for setup in ["1 worker", "2 workers", "2 processes"] {
        let db = unique("par");
        cleanup = cleanup.database(&db);
        fresh_influx_db(&db);
        let dir = scratch(&db);
        let job = sensor_job(&dir, &table, &db, 4_000, "", "");
        let job = job.to_str().unwrap();
        match setup {
            "1 worker" => assert_ok(&run(&["-c", "backfill", "--config", job, "--workers", "1"])),
            "2 workers" => assert_ok(&run(&["-c", "backfill", "--config", job, "--workers", "2"])),
            _ => {
                let logs = run_two_processes(
                    &dir,
                    &[
                        "-c",
                        "backfill",
                        "--config",
                        job,
                        "--workers",
                        "1",
                        "--progress",
                        "off",
                    ],
                    &[],
                );
                // Both processes read and wrote a share of the rows.
                let read: u64 = logs
                    .iter()
                    .map(|l| summary_u64(l.as_bytes(), "rows_read"))
                    .sum();
                let written: u64 = logs
                    .iter()
                    .map(|l| summary_u64(l.as_bytes(), "points_written"))
                    .sum();
                assert_eq!(read, 30_000, "{logs:?}");
                assert_eq!(written, 30_000, "{logs:?}");
                assert!(
                    logs.iter()
                        .all(|l| summary_u64(l.as_bytes(), "rows_read") > 0),
                    "{logs:?}"
                );
            }
        }
        let dump = normalise(influx_dump(&db, "sensors", "ms"));
        assert_eq!(dump.len(), 30_000, "{setup}");
        assert!(
            dump == expected,
            "{setup}: the points differ from the source rows"
        );
        dumps.push(dump);
    }
    assert!(dumps.iter().all(|d| *d == dumps[0]));
}

#[test]
fn edge_case_values_arrive_exactly() {
    let table = unique("edge");
    let db = unique("edge");
    let _cleanup = Cleanup::default().table(&table).database(&db);
    fresh_influx_db(&db);
    sql(&[
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, device VARCHAR(64) NULL, site VARCHAR(64) NULL, ts DATETIME(6) NOT NULL,
             i8 TINYINT, u8 TINYINT UNSIGNED, i32 INT, i64 BIGINT, u64 BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec12 DECIMAL(12,4),
             flag BOOL, bit1 BIT(1), txt TEXT, at TIMESTAMP(3) NULL) DEFAULT CHARSET=utf8mb4"
        ),
        &format!(
            "INSERT INTO {table} VALUES
             (1, 'a b,c=d\\\\e\"f', 'héllo wörld ✓', '2026-03-04 05:06:07.123456', -128, 255, -2147483648, -9223372036854775808, 9223372036854775807,
              12.3, 0.30000000000000004, 12345678.1234, TRUE, b'1', 'say \"hi\" \\\\ ok, = fine', '2026-01-01 00:00:00.5'),
             (2, 'dev-2', '', '2026-03-04 05:06:07.000001', 127, 0, 2147483647, 9223372036854775807, 0,
              -0.5, 1.7976931348623157e308, -0.0001, FALSE, b'0', '', NULL),
             (3, 'dev-3', NULL, '1999-12-31 23:59:59.999999', NULL, NULL, NULL, NULL, NULL,
              NULL, -2.2250738585072014e-308, NULL, NULL, NULL, NULL, NULL),
             (4, 'dev-4', 's', '2026-03-04 00:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             (5, NULL, 's', '2026-03-04 00:00:00', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             (6, 'dev-6', 's', '2026-03-04 00:00:00', 1, NULL, NULL, NULL, 18446744073709551615, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
    ]);
    let dir = scratch(&db);
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            r#"name: {table}
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  tables:
    - name: {table}
      split_by: id
      chunk_rows: 2
sink:
  type: influxdb
  url: {influx}
  database: {db}
  precision: us
mappings:
  - table: {table}
    measurement: edge cases
    device_field: device
    timestamp_field: ts
    tags: [site]
    fields: [i8, u8, i32, i64, u64, f, d, dec12, flag, bit1, txt, at]
checkpoint:
  store: file:{state}
dead_letter: {dl}
"#,
            influx = influx_url(),
            state = dir.join("state").display(),
            dl = dir.join("dead.jsonl").display(),
        ),
    )
    .unwrap();
    let out = run(&[
        "-c",
        "backfill",
        "--config",
        job.to_str().unwrap(),
        "--workers",
        "2",
    ]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 6);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 3);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 3);

    let points = influx_dump(&db, "edge cases", "u");
    let expected = vec![
        json!({"time": 946684799999999i64, "tags": {"device": "dev-3", "site": ""}, "fields": {"d": -2.2250738585072014e-308}}),
        json!({"time": 1772600767000001i64, "tags": {"device": "dev-2", "site": ""}, "fields": {
            "i8": 127, "u8": 0, "i32": 2147483647, "i64": 9223372036854775807i64, "u64": 0,
            "f": -0.5, "d": 1.7976931348623157e308, "dec12": -0.0001, "flag": false, "bit1": false, "txt": ""}}),
        json!({"time": 1772600767123456i64, "tags": {"device": "a b,c=d\\e\"f", "site": "héllo wörld ✓"}, "fields": {
            "i8": -128, "u8": 255, "i32": -2147483648i64, "i64": i64::MIN, "u64": 9223372036854775807i64,
            "f": 12.3, "d": 0.30000000000000004, "dec12": 12345678.1234, "flag": true, "bit1": true,
            "txt": "say \"hi\" \\ ok, = fine", "at": "2026-01-01T00:00:00.500Z"}}),
    ];
    let mut expected = expected;
    expected.sort_by_key(|p| p.to_string());
    assert_eq!(points, expected);

    // What could not be written is in the dead-letter file, each with its reason.
    let dead: Vec<Json> = std::fs::read_to_string(dir.join("dead.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|d| format!("{}: {}", d["stage"], d["reason"]))
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{dead:?}");
    assert!(
        reasons[0].contains("\"mapping\": \"device column `device` is NULL\""),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("\"mapping\": \"every field is NULL: nothing to write\""),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("\"sink\"") && reasons[2].contains("18446744073709551615"),
        "{reasons:?}"
    );

    // Verify sees what did not arrive: the unsigned value InfluxDB 1.x cannot hold is
    // missing in the target, the two rows that never became points are counted; and the
    // backfill's dead-letter file is left as it was.
    let (code, report) = verify(&job, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report_line(&report),
        "verify: 4 series, 4 buckets compared: 3 matching, 1 missing in target, 0 extra in target, 0 differing"
    );
    assert!(
        report.contains("missing in target: edge cases,device=dev-6,site=s"),
        "{report}"
    );
    assert!(
        report.contains("verify: 2 source rows cannot be written at all"),
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("dead.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn killed_mid_run_then_restarted_rereads_only_unfinished_chunks() {
    let rows = 100_000;
    let (_cleanup, table, db, dir, job) = slow_sensor_run("kill", rows);
    let job = job.to_str().unwrap();
    let state_file = dir.join("state/backfill.json");

    let (plan, pending) = kill_mid_run(backfill_command(Path::new(job), "2"), &state_file);
    // Exactly the rows of the unfinished chunks must be read again.
    let mut rows_pending = 0u64;
    for s in &pending {
        let mut conditions = vec!["1".to_string()];
        if let Some(a) = s["start"].as_i64() {
            conditions.push(format!("id >= {a}"));
        }
        if let Some(b) = s["end"].as_i64() {
            conditions.push(format!("id < {b}"));
        }
        rows_pending += sql_value::<u64>(&format!(
            "SELECT COUNT(*) FROM {table} WHERE {}",
            conditions.join(" AND ")
        ));
    }

    let out = run(&[
        "-c",
        "backfill",
        "--config",
        job,
        "--workers",
        "2",
        "--progress",
        "off",
    ]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), rows_pending);
    assert!(rows_pending < rows);
    // Every row exactly once per (series, time): the count equals the source's.
    assert_eq!(influx_count(&db, "sensors", "temperature"), rows);
    assert_eq!(influx_dump(&db, "sensors", "ms").len() as u64, rows);
    let done: Json = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert!(plan
        .iter()
        .all(|s| split_finished(&done, s["id"].as_u64().unwrap())));

    // A third run has nothing left to do.
    let out = run(&["-c", "backfill", "--config", job, "--progress", "off"]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 0);
}

#[test]
fn sigterm_stops_reading_writes_what_was_read_and_checkpoints() {
    let rows = 100_000;
    let (_cleanup, _table, db, dir, job) = slow_sensor_run("term", rows);
    let job = job.to_str().unwrap();
    let child = tsmig()
        .args([
            "-c",
            "backfill",
            "--config",
            job,
            "--workers",
            "2",
            "--progress",
            "off",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.join("state/backfill.json").exists()
        || started.elapsed() < Duration::from_millis(700)
    {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let s = summary(&out.stdout);
    assert_eq!(s.get("stopped").map(String::as_str), Some("true"), "{s:?}");
    let read: u64 = s["rows_read"].parse().unwrap();
    let written: u64 = s["points_written"].parse().unwrap();
    assert!(read > 0 && read < rows, "{s:?}");
    assert_eq!(read, written, "everything read before the stop is written");
    assert_eq!(influx_count(&db, "sensors", "temperature"), written);

    let out = run(&[
        "-c",
        "backfill",
        "--config",
        job,
        "--workers",
        "2",
        "--progress",
        "off",
    ]);
    assert_ok(&out);
    assert_eq!(influx_count(&db, "sensors", "temperature"), rows);
}

#[test]
fn lines_the_target_rejects_are_dead_lettered_exactly() {
    let table = unique("rej");
    let db = unique("rej");
    let _cleanup = Cleanup::default().table(&table).database(&db);
    fresh_influx_db(&db);
    // Rows in two different weeks; InfluxDB keeps field types per shard (a week here).
    sql(&[
        &format!("CREATE TABLE {table} (id INT PRIMARY KEY, device_id VARCHAR(16), site VARCHAR(8), ts DATETIME(3), temperature DOUBLE, humidity FLOAT, pressure DECIMAL(8,2), status TINYINT)"),
        &format!(
            "INSERT INTO {table} SELECT seq, CONCAT('d', seq MOD 5), 's', \
             IF(seq MOD 3 = 0, TIMESTAMPADD(SECOND, seq, '2026-01-06'), TIMESTAMPADD(SECOND, seq, '2026-02-03')), \
             seq / 10, NULL, NULL, NULL FROM seq_1_to_3000"
        ),
    ]);
    // Seed: in January's shard `temperature` is a string, so January's float points conflict.
    influx_write(
        &db,
        "sensors,device_id=seed temperature=\"text\" 1767657600000",
        "ms",
    );

    let dir = scratch(&db);
    let job = sensor_job(&dir, &table, &db, 1_000, "", "");
    let out = run(&[
        "-c",
        "backfill",
        "--config",
        job.to_str().unwrap(),
        "--workers",
        "2",
        "--progress",
        "off",
    ]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 3000);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 2000);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 1000);

    let dead = std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap();
    let mut dead_times: Vec<i64> = dead
        .lines()
        .map(|l| {
            let d: Json = serde_json::from_str(l).unwrap();
            assert_eq!(d["stage"], "sink");
            assert!(
                d["reason"]
                    .as_str()
                    .unwrap()
                    .contains("field type conflict"),
                "{d}"
            );
            let line = d["record"].as_str().unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    dead_times.sort();
    let jan_start = 1_767_657_600_000i64; // 2026-01-06T00:00:00Z in ms
    let expected: Vec<i64> = (1..=3000)
        .filter(|n| n % 3 == 0)
        .map(|n| jan_start + n * 1000)
        .collect();
    assert_eq!(dead_times, expected);
    // February's points all arrived, next to the seed.
    let stored = influx_dump(&db, "sensors", "ms");
    assert_eq!(stored.len(), 2000);
    assert!(
        stored
            .iter()
            .all(|p| p["time"].as_i64().unwrap() > 1_769_990_400_000),
        "only February's points"
    );
    let seed = influx_query(
        &db,
        "SELECT temperature::string FROM sensors WHERE device_id = 'seed'",
        "ms",
    );
    assert_eq!(
        seed["results"][0]["series"][0]["values"],
        json!([[1_767_657_600_000i64, "text"]])
    );
}
