//! CDC against the real MariaDB binlog: changes reach InfluxDB 1.6 and the IoTDB stand-in
//! with the exact final state of the source table, across crashes, purges and idle time.
//!
//! Every test compares the whole target with the whole source table. The binlog is
//! shared by all tests of this file (one server), so each test uses its own table and
//! server_id; the purge test takes the lock exclusively, since purging binlogs could
//! remove what another test's reader still needs.

mod common;
#[path = "standins/influxdb2/mod.rs"]
mod influxdb2_standin;
#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Purging binlogs must not run while another test reads them.
static BINLOG: RwLock<()> = RwLock::new(());
/// Each reader needs its own replica id.
static SERVER_ID: AtomicU32 = AtomicU32::new(0);

fn server_id() -> u32 {
    5000 + std::process::id() % 1000 * 10 + SERVER_ID.fetch_add(1, Ordering::SeqCst)
}

/// A sensor table with a unique (device, time): one row is one point of the target.
fn create_table(table: &str) {
    sql(&[
        &format!("DROP TABLE IF EXISTS {table}"),
        &format!(
            "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, device_id VARCHAR(32) NOT NULL, \
             site VARCHAR(16), ts DATETIME(3) NOT NULL, temperature DOUBLE, humidity FLOAT, status INT, \
             UNIQUE KEY point (device_id, ts))"
        ),
    ]);
}

/// Inserts `n` rows: devices d0..d9, one second apart.
fn seed(table: &str, n: u64) {
    sql(&[&format!(
        "INSERT INTO {table} (device_id, site, ts, temperature, humidity, status) \
         SELECT CONCAT('d', seq % 10), IF(seq % 3 = 0, NULL, CONCAT('s', seq % 2)), \
         TIMESTAMP('2026-01-01') + INTERVAL seq SECOND, seq * 0.25, IF(seq % 4 = 0, NULL, (seq % 100) + 0.5), seq % 7 \
         FROM seq_1_to_{n}"
    )]);
}

/// A `backfill+cdc` job file; `target` is the mapping's `measurement:` or `path:` line.
fn job_file(dir: &Path, table: &str, sink: &str, target: &str) -> PathBuf {
    let text = format!(
        r#"name: {table}
mode: backfill+cdc
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  server_id: {id}
  heartbeat: 100ms
  tables:
    - name: {table}
      split_by: id
      chunk_rows: 2000
{sink}
mappings:
  - table: {table}
    {target}
    device_field: device_id
    timestamp_field: ts
    fields: [temperature, humidity, status]
checkpoint:
  interval: 100ms
  store: file:./state
"#,
        id = server_id()
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const MEASUREMENT: &str = "measurement: sensors\n    tags: [site]";

fn influx_sink(db: &str) -> String {
    format!(
        "sink:\n  type: influxdb\n  url: {}\n  database: {db}\n  precision: ms\n  batch_size: 500\n",
        influx_url()
    )
}

fn job(dir: &Path, job: &Path, entry: &str, args: &[&str]) -> Command {
    let mut c = tsmig();
    c.current_dir(dir)
        .args([
            "-c",
            entry,
            "--config",
            job.to_str().unwrap(),
            "--progress",
            "off",
        ])
        .args(args);
    c
}

/// One test's source table (seeded), InfluxDB database, scratch directory and job file;
/// the table and the database are dropped with the `Cleanup`.
type Case = (String, String, PathBuf, PathBuf, Cleanup);

fn influx_case(prefix: &str, rows: u64) -> Case {
    let table = unique(prefix);
    let db = table.clone();
    let cleanup = Cleanup::default().table(&table).database(&db);
    fresh_influx_db(&db);
    create_table(&table);
    seed(&table, rows);
    let dir = scratch(&table);
    let file = job_file(&dir, &table, &influx_sink(&db), MEASUREMENT);
    (table, db, dir, file, cleanup)
}

/// The source table as InfluxDB should hold it, in `influx_dump`'s shape, numbers as f64.
fn expected_influx(table: &str) -> Vec<serde_json::Value> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!("SELECT device_id, site, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, CAST(humidity AS CHAR), status FROM {table}"),
    ]);
    let mut out: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            let (device, site, time, temperature, humidity, status): (
                String,
                Option<String>,
                i64,
                Option<f64>,
                Option<String>,
                Option<i64>,
            ) = mysql_async::from_row(r);
            let mut fields = serde_json::Map::new();
            if let Some(t) = temperature {
                fields.insert("temperature".into(), t.into());
            }
            if let Some(h) = humidity {
                fields.insert("humidity".into(), h.parse::<f64>().unwrap().into());
            }
            if let Some(s) = status {
                fields.insert("status".into(), (s as f64).into());
            }
            serde_json::json!({
                "time": time,
                "tags": {"device_id": device, "site": site.unwrap_or_default()},
                "fields": fields,
            })
        })
        .collect();
    out.sort_by_key(|p| p.to_string());
    out
}

/// What InfluxDB holds, numbers as f64 (InfluxDB shows 3.0 as 3).
fn actual_influx(db: &str) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = influx_dump(db, "sensors", "ms")
        .into_iter()
        .map(|mut p| {
            let fields = p["fields"].as_object_mut().unwrap();
            for v in fields.values_mut() {
                if let Some(f) = v.as_f64() {
                    *v = f.into();
                }
            }
            if p["tags"]["site"].is_null() {
                p["tags"]["site"] = "".into();
            }
            p
        })
        .collect();
    out.sort_by_key(|p| p.to_string());
    out
}

fn assert_same(table: &str, db: &str) {
    let expected = expected_influx(table);
    let actual = actual_influx(db);
    if expected != actual {
        let missing: Vec<_> = expected
            .iter()
            .filter(|p| !actual.contains(p))
            .take(5)
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|p| !expected.contains(p))
            .take(5)
            .collect();
        panic!(
            "target differs from {table}: {} points expected, {} present; missing e.g. {missing:#?}; extra e.g. {extra:#?}",
            expected.len(),
            actual.len()
        );
    }
}

/// Waits until the target equals the source (a running job catches up) or panics.
fn await_same(table: &str, db: &str, within: Duration) {
    let until = Instant::now() + within;
    loop {
        if expected_influx(table) == actual_influx(db) {
            return;
        }
        if Instant::now() > until {
            assert_same(table, db);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A job running in the background; killed if the test fails before it stops it.
struct Running(Option<Child>);

impl Running {
    fn spawn(mut command: Command) -> Running {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running(Some(child))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then the job's output once it has drained and exited.
fn stop(mut running: Running) -> std::process::Output {
    let mut child = running.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the job did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The changes every kind of row change makes, applied while the job follows the binlog.
const CHANGES: &[&str] = &[
    // An insert, a value update, a field set to NULL, a delete.
    "INSERT INTO {t} (device_id, site, ts, temperature, humidity, status) VALUES ('new', 's9', '2026-02-01 00:00:00.125', 1.5, 2.5, 3)",
    "UPDATE {t} SET temperature = 99.75 WHERE id = 2",
    "UPDATE {t} SET humidity = NULL WHERE id = 3",
    "DELETE FROM {t} WHERE id = 5",
    // The timestamp and the device move: the old point goes, the new one comes.
    "UPDATE {t} SET ts = ts + INTERVAL 1 HOUR WHERE id = 6",
    "UPDATE {t} SET device_id = 'moved' WHERE id = 7",
    // A tag changes: another series.
    "UPDATE {t} SET site = 'elsewhere' WHERE id = 8",
    // In one transaction: inserted and deleted (nothing), updated three times (the last).
    "BEGIN",
    "INSERT INTO {t} (device_id, ts, temperature) VALUES ('ghost', '2026-03-01', 1)",
    "DELETE FROM {t} WHERE device_id = 'ghost'",
    "UPDATE {t} SET temperature = 1 WHERE id = 9",
    "UPDATE {t} SET temperature = 2 WHERE id = 9",
    "UPDATE {t} SET temperature = 3.5 WHERE id = 9",
    "COMMIT",
    // A rolled-back transaction changes nothing.
    "BEGIN",
    "DELETE FROM {t} WHERE id = 10",
    "ROLLBACK",
    // Many rows in one statement.
    "UPDATE {t} SET status = status + 100 WHERE id BETWEEN 20 AND 60",
    "DELETE FROM {t} WHERE id BETWEEN 70 AND 80",
];

fn apply_changes(table: &str) {
    let statements: Vec<String> = CHANGES.iter().map(|s| s.replace("{t}", table)).collect();
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(&refs);
}

#[test]
fn every_kind_of_change_reaches_influxdb_while_the_job_runs() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_live", 200);
    let child = Running::spawn(job(
        &dir,
        &file,
        "backfill+cdc",
        &["--metrics-addr", &format!("127.0.0.1:{}", free_ports(1)[0])],
    ));
    await_same(&table, &db, Duration::from_secs(60));
    apply_changes(&table);
    await_same(&table, &db, Duration::from_secs(60));

    // The recorded position reaches the server's end once everything is applied.
    await_position(&dir, &server_end());

    let out = stop(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 0);
    // 1 insert, 5 single-row updates, 1 delete, 2 + 3 in the transaction, 41 + 11 rows.
    let changes = summary_u64(&out.stdout, "changes_read");
    assert_eq!(
        changes,
        1 + 5 + 1 + 5 + 41 + 11,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_same(&table, &db);
}

#[test]
fn cdc_resumes_from_its_checkpoint_and_stops_when_caught_up() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_resume", 100);

    let out = job(&dir, &file, "backfill+cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 100);
    assert_same(&table, &db);

    // Changes made while no job runs are applied by the next run, from the checkpoint.
    apply_changes(&table);
    let out = job(&dir, &file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_same(&table, &db);
    assert!(summary_u64(&out.stdout, "points_deleted") >= 12);

    // Nothing new: a third run reads no change at all.
    let out = job(&dir, &file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 0);
    assert_eq!(summary_u64(&out.stdout, "points_deleted"), 0);
}

#[test]
fn changes_reach_the_iotdb_stand_in() {
    use iotdb_standin::{IotdbStandIn, StandInValue as V};
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let table = unique("cdc_iotdb");
    let _cleanup = Cleanup::default().table(&table);
    create_table(&table);
    seed(&table, 100);
    let iotdb = IotdbStandIn::start();
    let dir = scratch(&table);
    let sink = format!(
        "sink:\n  type: iotdb\n  host: 127.0.0.1\n  port: {}\n  user: root\n  password: root\n  batch_size: 200\n",
        iotdb.port()
    );
    let file = job_file(&dir, &table, &sink, "path: root.cdc.{device_id}");
    let out = job(&dir, &file, "backfill+cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    apply_changes(&table);
    let out = job(&dir, &file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);

    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!("SELECT device_id, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, CAST(humidity AS CHAR), status FROM {table}"),
    ]);
    let mut expected: std::collections::BTreeMap<String, Vec<(i64, V)>> = Default::default();
    for r in rows {
        let (device, time, temperature, humidity, status): (
            String,
            i64,
            Option<f64>,
            Option<String>,
            Option<i32>,
        ) = mysql_async::from_row(r);
        let path = |m: &str| format!("root.cdc.{device}.{m}");
        if let Some(v) = temperature {
            expected
                .entry(path("temperature"))
                .or_default()
                .push((time, V::Double(v)));
        }
        if let Some(v) = humidity {
            expected
                .entry(path("humidity"))
                .or_default()
                .push((time, V::Float(v.parse().unwrap())));
        }
        if let Some(v) = status {
            expected
                .entry(path("status"))
                .or_default()
                .push((time, V::Int32(v)));
        }
    }
    for points in expected.values_mut() {
        points.sort_by_key(|(t, _)| *t);
    }
    let mut actual = iotdb.all_points();
    actual.retain(|_, points| !points.is_empty());
    assert_eq!(actual, expected);
}

/// A writer that keeps changing the table (inserts, updates of values, times and devices,
/// deletes, multi-statement transactions) until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(table: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let table = table.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use mysql_async::prelude::Queryable;
                let mut conn = mysql_async::Conn::from_url(mysql_url()).await.unwrap();
                let mut rng = fastrand::Rng::with_seed(table.len() as u64);
                let mut n = 0u64;
                let max_id: u64 = conn
                    .query_first(format!("SELECT MAX(id) FROM {table}"))
                    .await
                    .unwrap()
                    .unwrap_or(1);
                while !flag.load(Ordering::Relaxed) {
                    let id = rng.u64(1..max_id + n / 3 + 2);
                    let statement = match rng.u8(0..10) {
                        0..=2 => format!(
                            "INSERT IGNORE INTO {table} (device_id, site, ts, temperature, humidity, status) \
                             VALUES ('w{}', 's1', TIMESTAMP('2026-06-01') + INTERVAL {} SECOND, {}.25, NULL, {})",
                            rng.u8(0..5),
                            rng.u32(0..100_000),
                            rng.u32(0..1000),
                            rng.u8(0..10)
                        ),
                        3 | 4 => format!(
                            "UPDATE {table} SET temperature = {}.5, humidity = IF(humidity IS NULL, 1.5, NULL) WHERE id = {id}",
                            rng.u32(0..1000)
                        ),
                        5 => format!("UPDATE IGNORE {table} SET ts = ts + INTERVAL 1 MINUTE WHERE id = {id}"),
                        6 => format!("UPDATE IGNORE {table} SET device_id = 'm{}' WHERE id = {id}", rng.u8(0..5)),
                        7 => format!("DELETE FROM {table} WHERE id = {id}"),
                        _ => format!(
                            "BEGIN; UPDATE {table} SET status = {} WHERE id = {id}; DELETE FROM {table} WHERE id = {}; \
                             INSERT IGNORE INTO {table} (device_id, ts, temperature) VALUES ('t{}', TIMESTAMP('2026-07-01') + INTERVAL {} SECOND, 1.75); COMMIT",
                            rng.u8(0..100),
                            id + 1,
                            rng.u8(0..3),
                            rng.u32(0..100_000)
                        ),
                    };
                    conn.query_drop(statement).await.unwrap();
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                conn.disconnect().await.unwrap();
                n
            })
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops writing; returns the statements written.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn concurrent_writers_during_backfill_and_cdc_then_verify_finds_no_difference() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_busy", 20_000);
    let writer = Writer::start(&table);
    let child = Running::spawn(job(&dir, &file, "backfill+cdc", &["--workers", "2"]));
    std::thread::sleep(Duration::from_secs(6));
    let written = writer.stop();
    assert!(written > 100, "the writer wrote only {written} statements");
    await_same(&table, &db, Duration::from_secs(90));
    let out = stop(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report) = verify(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report_line(&report).ends_with("0 missing in target, 0 extra in target, 0 differing"),
        "{report}"
    );
}

#[test]
fn killed_at_ten_moments_across_snapshot_and_binlog_then_the_target_equals_the_source() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_crash", 60_000);
    let writer = Writer::start(&table);
    let mut phases = Vec::new();
    let delays_ms = [150, 300, 500, 700, 1000, 1300, 1700, 2200, 2800, 3500, 4500];
    for delay in delays_ms {
        let mut child = job(&dir, &file, "backfill+cdc", &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let backfill: serde_json::Value = std::fs::read_to_string(dir.join("state/backfill.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let planned = backfill["plan"].as_array().map(Vec::len).unwrap_or(0) as u64;
        let finished: u64 = backfill["finished"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|p| p[1].as_u64().unwrap() - p[0].as_u64().unwrap() + 1)
                    .sum()
            })
            .unwrap_or(0);
        phases.push(if planned > 0 && finished == planned {
            "binlog"
        } else {
            "snapshot"
        });
    }
    let written = writer.stop();
    assert!(written > 100, "the writer wrote only {written} statements");
    let out = job(&dir, &file, "backfill+cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_same(&table, &db);
    let snapshot = phases.iter().filter(|p| **p == "snapshot").count();
    let binlog = phases.len() - snapshot;
    assert!(
        snapshot >= 2 && binlog >= 2,
        "the kills should land in both phases: {phases:?}"
    );
}

#[test]
fn an_idle_table_still_advances_the_recorded_position() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let table = unique("cdc_idle");
    let other = unique("cdc_other");
    let db = table.clone();
    let _cleanup = Cleanup::default().table(&table).table(&other).database(&db);
    fresh_influx_db(&db);
    create_table(&table);
    create_table(&other);
    seed(&table, 10);
    let dir = scratch(&table);
    let file = job_file(&dir, &table, &influx_sink(&db), MEASUREMENT);
    let child = Running::spawn(job(&dir, &file, "backfill+cdc", &[]));
    await_same(&table, &db, Duration::from_secs(30));
    let before = recorded_position(&dir);
    // Another table changes and the server starts a new binlog file; the job's table
    // stays quiet for longer than the checkpoint interval (100ms).
    sql(&[&format!(
        "INSERT INTO {other} (device_id, ts) VALUES ('x', '2026-01-01')"
    )]);
    sql(&["FLUSH BINARY LOGS"]);
    let end = server_end();
    assert!(
        end.0 > before.0,
        "FLUSH BINARY LOGS should start a new file"
    );
    await_position(&dir, &end);
    let out = stop(child);
    assert!(out.status.success());
    assert_eq!(summary_u64(&out.stdout, "points_written"), 10);
}

#[test]
fn a_purged_position_is_a_definite_error_that_says_how_to_recover() {
    let _exclusive = BINLOG.write().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_purged", 10);
    let out = job(&dir, &file, "backfill+cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    // Changes the job has not seen, then the binlog holding them is purged.
    sql(&[&format!("DELETE FROM {table} WHERE id = 1")]);
    sql(&["FLUSH BINARY LOGS"]);
    let current = server_end().0;
    let recorded = recorded_position(&dir).0;
    assert!(
        recorded < current,
        "the change must lie in a file before {current}"
    );
    // The server keeps a file a replica still reads (the last job's dump thread may
    // linger a moment): purge until the recorded file is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sql(&[&format!("PURGE BINARY LOGS TO '{current}'")]);
        let files: Vec<String> = sql(&["SHOW BINARY LOGS"])
            .into_iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        if !files.contains(&recorded) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{recorded} could not be purged: {files:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = job(&dir, &file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has been purged"), "{stderr}");
    assert!(stderr.contains("backfill+cdc --fresh"), "{stderr}");
    // Nothing was skipped silently: the deleted row's point is still there.
    assert_eq!(actual_influx(&db).len(), 10);
    // The way out it names works.
    let out = job(
        &dir,
        &file,
        "backfill+cdc",
        &["--fresh", "--until-caught-up"],
    )
    .output()
    .unwrap();
    assert_ok(&out);
    fresh_influx_db(&db);
    let out = job(
        &dir,
        &file,
        "backfill+cdc",
        &["--fresh", "--until-caught-up"],
    )
    .output()
    .unwrap();
    assert_ok(&out);
    assert_same(&table, &db);
}

#[test]
fn the_metrics_endpoint_shows_changes_and_lag() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_metrics", 100);
    let port = free_ports(1)[0];
    let child = Running::spawn(job(
        &dir,
        &file,
        "backfill+cdc",
        &["--metrics-addr", &format!("127.0.0.1:{port}")],
    ));
    await_same(&table, &db, Duration::from_secs(30));
    apply_changes(&table);
    await_same(&table, &db, Duration::from_secs(30));
    let scrape = || -> std::collections::HashMap<String, f64> {
        let text = http_get(port, "/metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let m = scrape();
        if m.get("tsmig_source_changes_total") == Some(&64.0)
            && m.get("tsmig_cdc_lag_bytes") == Some(&0.0)
        {
            break m;
        }
        assert!(Instant::now() < deadline, "metrics never settled: {m:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(metrics["tsmig_source_rows_total"], 100.0);
    assert_eq!(metrics["tsmig_dead_letters_total"], 0.0);
    assert_eq!(metrics["tsmig_cdc_lag_seconds"], 0.0);
    assert!(metrics["tsmig_sink_points_deleted_total"] >= 12.0);
    assert!(metrics["tsmig_checkpoints_total"] >= 1.0);
    let out = stop(child);
    assert!(out.status.success());
}

/// The server's end of binlog: (file, offset).
fn server_end() -> (String, u64) {
    let row = sql(&["SHOW MASTER STATUS"]).remove(0);
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// The binlog position a job in `dir` has recorded.
fn recorded_position(dir: &Path) -> (String, u64) {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/cdc.json")).unwrap())
            .unwrap();
    (
        state["position"]["file"].as_str().unwrap().to_string(),
        state["position"]["offset"].as_u64().unwrap(),
    )
}

/// Waits (20 s at most) until the job in `dir` has recorded `end` or a later position.
fn await_position(dir: &Path, end: &(String, u64)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorded_position(dir) < *end {
        assert!(
            Instant::now() < deadline,
            "the recorded position stayed at {:?} (server at {end:?})",
            recorded_position(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET on loopback; the body, or "" if nothing answers.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn the_shipped_iotdb_cdc_job_replicates_changes() {
    use iotdb_standin::{IotdbStandIn, StandInValue as V};
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let table = unique("cdc_shipped");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 500);
    let iotdb = IotdbStandIn::start();
    let dir = scratch(&table);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-iotdb-cdc.yaml");
    let run_job = |entry: &str| {
        tsmig()
            .current_dir(&dir)
            .env("TSMIG_TABLE", &table)
            .env("IOTDB_PORT", iotdb.port().to_string())
            .env("TSMIG_SERVER_ID", server_id().to_string())
            .args(["-c", entry, "--config", shipped.to_str().unwrap()])
            .args(["--until-caught-up", "--progress", "off", "--workers", "2"])
            .output()
            .unwrap()
    };
    let out = run_job("backfill+cdc");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 500);
    let (device, time): (String, i64) = mysql_async::from_row(
        sql(&[
            "SET time_zone = '+00:00'",
            &format!("SELECT device_id, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED) FROM {table} WHERE id = 7"),
        ])
        .remove(0),
    );
    let path = |m: &str| format!("root.factory.`{device}`.{m}");
    assert!(iotdb
        .points(&path("temperature"))
        .iter()
        .any(|(t, _)| *t == time));

    sql(&[
        &format!("UPDATE {table} SET temperature = 12.5 WHERE id = 7"),
        &format!("DELETE FROM {table} WHERE id = 8"),
    ]);
    let out = run_job("cdc");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "changes_read"), 2);
    assert!(iotdb
        .points(&path("temperature"))
        .contains(&(time, V::Double(12.5))));
    let (gone_device, gone_time): (String, i64) = {
        // Row 8 is gone from MySQL; its values are a pure function of its id
        // (scripts/load-sample.sh), the same as row 8 of a fresh 8-row table.
        let probe = unique("cdc_probe");
        let _probe = Cleanup::default().table(&probe);
        load_sensor_table(&probe, 8);
        mysql_async::from_row(
            sql(&[
                "SET time_zone = '+00:00'",
                &format!("SELECT device_id, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED) FROM {probe} WHERE id = 8"),
            ])
            .remove(0),
        )
    };
    let all = iotdb.all_points();
    let left: usize = all
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("root.factory.`{gone_device}`.")))
        .map(|(_, points)| points.iter().filter(|(t, _)| *t == gone_time).count())
        .sum();
    assert_eq!(left, 0, "the deleted row's point is still in IoTDB");
}

#[test]
fn a_cdc_job_without_its_own_server_id_is_refused() {
    let dir = scratch(&unique("cdc_noid"));
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-iotdb-cdc.yaml"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.trim_start().starts_with("server_id:"))
    .collect::<Vec<_>>()
    .join("\n");
    let file = dir.join("job.yaml");
    std::fs::write(&file, text).unwrap();
    let out = tsmig()
        .args(["validate", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("source.server_id"), "{stderr}");
    assert!(stderr.contains("disconnect each other"), "{stderr}");
}

#[test]
fn append_only_and_ignore_policies() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    // append_only: no consolidation, changes applied in order (a later delete still wins).
    let (table, db, dir, _, _cleanup) = influx_case("cdc_append", 10);
    let file = job_file(
        &dir,
        &table,
        &influx_sink(&db),
        &format!("{MEASUREMENT}\n    append_only: true"),
    );
    let run_until_caught_up = |entry: &str, file: &Path| {
        let out = job(&dir, file, entry, &["--until-caught-up"])
            .output()
            .unwrap();
        assert_ok(&out);
        out
    };
    run_until_caught_up("backfill+cdc", &file);
    sql(&[
        &format!("INSERT INTO {table} (device_id, ts, temperature) VALUES ('a1', '2026-05-01', 1.5), ('a2', '2026-05-01', 2.5)"),
        &format!("DELETE FROM {table} WHERE device_id = 'a2'"),
        &format!("UPDATE {table} SET temperature = 7.25 WHERE id = 1"),
    ]);
    run_until_caught_up("cdc", &file);
    assert_same(&table, &db);

    // on_delete: ignore keeps deleted points; on_update: ignore keeps the old values.
    let (table, db, dir, _, _cleanup) = influx_case("cdc_ignore", 10);
    let file = job_file(
        &dir,
        &table,
        &influx_sink(&db),
        &format!("{MEASUREMENT}\n    on_update: ignore\n    on_delete: ignore"),
    );
    let run_until_caught_up = |entry: &str| {
        let out = job(&dir, &file, entry, &["--until-caught-up"])
            .output()
            .unwrap();
        assert_ok(&out);
        out
    };
    run_until_caught_up("backfill+cdc");
    let before = actual_influx(&db);
    sql(&[
        &format!("DELETE FROM {table} WHERE id = 3"),
        &format!("UPDATE {table} SET temperature = 99.5 WHERE id = 4"),
        &format!(
            "INSERT INTO {table} (device_id, ts, temperature) VALUES ('n1', '2026-05-02', 3.5)"
        ),
    ]);
    let out = run_until_caught_up("cdc");
    assert_eq!(summary_u64(&out.stdout, "changes_read"), 3);
    assert_eq!(summary_u64(&out.stdout, "points_deleted"), 0);
    let mut expected = before;
    expected.push(serde_json::json!({
        "time": 1777680000000i64,
        "tags": {"device_id": "n1", "site": ""},
        "fields": {"temperature": 3.5},
    }));
    expected.sort_by_key(|p| p.to_string());
    assert_eq!(actual_influx(&db), expected);
}

#[test]
fn a_transaction_that_meets_the_in_flight_bound_does_not_stall_the_reader() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_bound", 10);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("flow:\n  max_in_flight_rows: 1000\n");
    std::fs::write(&file, text).unwrap();
    let out = job(&dir, &file, "backfill+cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    // A backlog: 900 rows in one transaction, then 200 in the next. With 1000 rows allowed
    // in flight the second fills the bound before its commit is read.
    sql(&[
        &format!(
            "INSERT INTO {table} (device_id, ts, temperature) SELECT 'b1', TIMESTAMP('2026-08-01') + INTERVAL seq SECOND, seq FROM seq_1_to_900"
        ),
        &format!(
            "INSERT INTO {table} (device_id, ts, temperature) SELECT 'b2', TIMESTAMP('2026-08-01') + INTERVAL seq SECOND, seq FROM seq_1_to_200"
        ),
    ]);
    let mut child = Running::spawn(job(&dir, &file, "cdc", &["--until-caught-up"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the job stalled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "changes_read"), 1100);
    assert_same(&table, &db);
}

#[test]
fn changes_reach_influxdb_2_through_its_delete_api() {
    use influxdb2_standin::{standin, FieldValue, Seen};
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let table = unique("cdc_v2");
    let _cleanup = Cleanup::default().table(&table);
    create_table(&table);
    seed(&table, 100);
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let port = standin(seen.clone());
    let dir = scratch(&table);
    let sink = format!(
        "sink:\n  type: influxdb\n  version: 2\n  url: http://127.0.0.1:{port}\n  org: acme\n  bucket: plant\n  token: secret-token\n  precision: ms\n"
    );
    let file = job_file(&dir, &table, &sink, MEASUREMENT);
    let out = job(&dir, &file, "backfill+cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    apply_changes(&table);
    let out = job(&dir, &file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(summary_u64(&out.stdout, "points_deleted") >= 12);

    // The stand-in's bucket, in `expected_influx`'s shape.
    let mut actual: Vec<serde_json::Value> = Vec::new();
    for ((measurement, tags), points) in &seen.lock().unwrap().store {
        assert_eq!(measurement, "sensors");
        let tag = |k: &str| {
            tags.iter()
                .find(|(t, _)| t == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        for (time, fields) in points {
            let fields: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::Float(f) => *f,
                        FieldValue::Int(i) => *i as f64,
                        other => panic!("unexpected field {k}: {other:?}"),
                    };
                    (k.clone(), v.into())
                })
                .collect();
            actual.push(serde_json::json!({
                "time": time / 1_000_000,
                "tags": {"device_id": tag("device_id"), "site": tag("site")},
                "fields": fields,
            }));
        }
    }
    actual.sort_by_key(|p| p.to_string());
    assert_eq!(actual, expected_influx(&table));
    assert!(!seen.lock().unwrap().deletes.is_empty());
}

/// Sets a job file's checkpoint interval and epoch length.
fn pace(file: &Path, checkpoint: &str, epoch: &str) {
    let text = std::fs::read_to_string(file)
        .unwrap()
        .replace("interval: 100ms", &format!("interval: {checkpoint}"));
    std::fs::write(file, format!("{text}flow:\n  epoch: {epoch}\n")).unwrap();
}

/// The issue's replay bug on the real servers: a row is inserted and its point written, the
/// job is killed before its position is checkpointed, the row is deleted, the job restarts.
/// The replay reads the insert and the delete in one epoch (5 s epochs make sure of it);
/// they cancel out, yet the target holds the point, which must go.
#[test]
fn a_row_deleted_after_a_kill_is_gone_from_influxdb_after_the_restart() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_kill_delete", 50);
    pace(&file, "30s", "5s");
    let mut running = Running::spawn(job(&dir, &file, "backfill+cdc", &["--workers", "2"]));
    await_same(&table, &db, Duration::from_secs(60));
    sql(&[&format!(
        "INSERT INTO {table} (device_id, site, ts, temperature) VALUES ('late', 's1', '2026-05-01 00:00:00', 7.5)"
    )]);
    wait_until("the new row's point in InfluxDB", || {
        actual_influx(&db)
            .iter()
            .any(|p| p["tags"]["device_id"] == "late")
    });
    let mut child = running.0.take().unwrap();
    child.kill().unwrap(); // SIGKILL: the position was not checkpointed (30 s interval)
    child.wait().unwrap();
    sql(&[&format!("DELETE FROM {table} WHERE device_id = 'late'")]);

    let out = job(
        &dir,
        &file,
        "backfill+cdc",
        &["--until-caught-up", "--workers", "2"],
    )
    .output()
    .unwrap();
    assert_ok(&out);
    assert_same(&table, &db);
    let (code, report) = verify(&file, &[]);
    assert_eq!(code, 0, "{report}");
}

/// The issue's snapshot bug on the real servers: while `backfill+cdc` reads its chunks, a
/// row is inserted after the snapshot position, read by the last chunk (open above, where
/// new ids land), then deleted. CDC replays its insert and its delete from the snapshot
/// position in one epoch, and the point the backfill wrote must go. 3 s epochs and 2,000
/// rows in flight pace the backfill at about 2,000 rows an epoch, so the last chunk is read
/// seconds after the row is inserted, and CDC reads its short backlog within one epoch.
#[test]
fn a_row_inserted_and_deleted_while_the_backfill_reads_leaves_nothing_behind() {
    let _shared = BINLOG.read().unwrap_or_else(|p| p.into_inner());
    let (table, db, dir, file, _cleanup) = influx_case("cdc_snapshot_delete", 6_000);
    pace(&file, "100ms", "3s\n  max_in_flight_rows: 2000");
    let child = Running::spawn(job(&dir, &file, "backfill+cdc", &["--workers", "1"]));
    // The snapshot position is recorded before the first chunk is read.
    wait_until("the snapshot position", || {
        dir.join("state/cdc.json").exists()
    });
    sql(&[&format!(
        "INSERT INTO {table} (device_id, site, ts, temperature) VALUES ('brief', 's1', '2026-07-01 00:00:00', 7.5)"
    )]);
    let brief = "SELECT temperature FROM sensors WHERE device_id = 'brief'";
    wait_until("the backfill to copy the new row", || {
        influx_query(&db, brief, "ms")["results"][0]["series"].is_array()
    });
    sql(&[&format!("DELETE FROM {table} WHERE device_id = 'brief'")]);
    await_same(&table, &db, Duration::from_secs(60));
    let out = stop(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The row came from the backfill and its delete from CDC.
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 6_001);
    assert_eq!(summary_u64(&out.stdout, "changes_read"), 2);
    let (code, report) = verify(&file, &[]);
    assert_eq!(code, 0, "{report}");
}
