//! CDC and schema changes: until tsmig can follow a changed table, a DDL statement on a
//! followed table stops the job at that statement — never a stall, never a value written
//! into the wrong field — with the statement and its binlog position in the error, and a
//! checkpoint that stays before it, so nothing after it is skipped by a later run.
//!
//! Each test runs a `-c cdc` job against the real MariaDB, applies changes, waits until
//! they are in InfluxDB, runs one DDL statement, then more changes; the job must exit 1
//! within a deadline naming the statement and position, and the target must hold exactly
//! the changes before the DDL.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Each reader needs its own replica id (another range than tests/cdc.rs uses).
static SERVER_ID: AtomicU32 = AtomicU32::new(0);

fn server_id() -> u32 {
    20000 + std::process::id() % 1000 * 10 + SERVER_ID.fetch_add(1, Ordering::SeqCst)
}

/// The followed table: two DOUBLE fields side by side (a swap keeps the table map's
/// shape), an INT field and a column the job does not map.
fn create_table(table: &str) {
    sql(&[
        &format!("DROP TABLE IF EXISTS {table}"),
        &format!(
            "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, device_id VARCHAR(32) NOT NULL, \
             ts DATETIME(3) NOT NULL, a DOUBLE, b DOUBLE, c INT, spare VARCHAR(8), \
             UNIQUE KEY point (device_id, ts))"
        ),
    ]);
}

fn job_file(dir: &Path, table: &str, db: &str) -> PathBuf {
    let text = format!(
        r#"name: {table}
mode: cdc
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  server_id: {id}
  heartbeat: 100ms
  tables:
    - name: {table}
sink:
  type: influxdb
  url: {influx}
  database: {db}
  precision: ms
mappings:
  - table: {table}
    measurement: m
    device_field: device_id
    timestamp_field: ts
    fields: [a, b, c]
checkpoint:
  interval: 100ms
  store: file:./state
"#,
        id = server_id(),
        influx = influx_url(),
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn job(dir: &Path, file: &Path, entry: &str, args: &[&str]) -> Command {
    let mut c = tsmig();
    c.current_dir(dir)
        .args([
            "-c",
            entry,
            "--config",
            file.to_str().unwrap(),
            "--progress",
            "off",
            "--workers",
            "1",
        ])
        .args(args);
    c
}

/// A job running in the background; killed if the test fails before it exits.
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

    /// Waits (`within` at most) for the job to exit by itself; `None` if it is still
    /// running then (a stalled reader, or one that went on), and it is killed.
    fn exit_within(mut self, within: Duration) -> Result<std::process::Output, String> {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + within;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                return Err(format!(
                    "stdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child.wait_with_output().unwrap())
    }

    fn still_running(&mut self) -> bool {
        self.0.as_mut().unwrap().try_wait().unwrap().is_none()
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

/// The server's end of binlog: (file, offset).
fn server_end() -> (String, u64) {
    let row = sql(&["SHOW MASTER STATUS"]).remove(0);
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Where `statement` starts in the binlog, searching from `from`: (file, offset of its
/// query event, as `SHOW BINLOG EVENTS` shows it).
fn statement_position(from: &(String, u64), statement: &str) -> (String, u64) {
    let events = sql(&[&format!(
        "SHOW BINLOG EVENTS IN '{}' FROM {}",
        from.0, from.1
    )]);
    for event in events {
        let info: String = event.get(5).unwrap();
        if info.ends_with(statement) {
            return (from.0.clone(), event.get(1).unwrap());
        }
    }
    panic!("{statement} is not in {} after {}", from.0, from.1)
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

/// A point of the target as `influx_dump` shows it (InfluxDB returns 1.0 as 1).
fn point(device: &str, time_ms: i64, fields: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"time": time_ms, "tags": {"device_id": device}, "fields": fields})
}

fn sorted(mut points: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    points.sort_by_key(|p| p.to_string());
    points
}

/// 2026-01-01T00:00:0n UTC in ms.
fn second(n: i64) -> i64 {
    1_767_225_600_000 + n * 1000
}

/// The changes before the DDL, and the points they leave in the target.
fn changes_before(table: &str) -> Vec<serde_json::Value> {
    sql(&[
        &format!(
            "INSERT INTO {table} (device_id, ts, a, b, c, spare) VALUES \
             ('d1', '2026-01-01 00:00:01', 1.5, 2.5, 3, 'x'), \
             ('d2', '2026-01-01 00:00:02', 4.5, 5.5, 6, 'y'), \
             ('d3', '2026-01-01 00:00:03', 7.5, 8.5, 9, NULL)"
        ),
        &format!("UPDATE {table} SET a = 10.25 WHERE device_id = 'd2'"),
    ]);
    sorted(vec![
        point(
            "d1",
            second(1),
            serde_json::json!({"a": 1.5, "b": 2.5, "c": 3}),
        ),
        point(
            "d2",
            second(2),
            serde_json::json!({"a": 10.25, "b": 5.5, "c": 6}),
        ),
        point(
            "d3",
            second(3),
            serde_json::json!({"a": 7.5, "b": 8.5, "c": 9}),
        ),
    ])
}

/// Changes after the DDL: none of them may reach the target.
fn changes_after(table: &str) {
    sql(&[
        &format!(
            "INSERT INTO {table} (device_id, ts, a, b, c) VALUES \
             ('d4', '2026-01-01 00:00:04', 11.5, 12.5, 13), ('d5', '2026-01-01 00:00:05', 14.5, 15.5, 16)"
        ),
        &format!("UPDATE {table} SET a = 99, b = 98 WHERE device_id = 'd1'"),
    ]);
}

/// What a DDL test checks: the job follows `table`; `ddl` (with `{t}` for the table) runs
/// after the first changes are in the target; the job must then stop at it.
struct DdlCase<'a> {
    prefix: &'a str,
    /// Statements run before the job starts (a second table, say); `{t}` is the table.
    setup: &'a [&'a str],
    ddl: &'a str,
    /// Tables to drop at the end besides the followed one; `{t}` is the table.
    also_drop: &'a [&'a str],
}

/// A job stopped by a DDL statement, and what the test needs afterwards.
struct Stopped {
    db: String,
    dir: PathBuf,
    file: PathBuf,
    /// The last line of the job's stderr.
    error: String,
    /// The points the changes before the DDL left.
    expected: Vec<serde_json::Value>,
    _cleanup: Cleanup,
}

/// Runs a case: the job must stop at the DDL, exit 1 naming it and its position, leave
/// exactly the changes before it in the target and its recorded position before it.
fn stops_at_the_ddl(case: DdlCase) -> Stopped {
    let table = unique(case.prefix);
    let db = table.clone();
    let mut cleanup = Cleanup::default().table(&table).database(&db);
    for other in case.also_drop {
        cleanup = cleanup.table(&other.replace("{t}", &table));
    }
    fresh_influx_db(&db);
    create_table(&table);
    let setup: Vec<String> = case
        .setup
        .iter()
        .map(|s| s.replace("{t}", &table))
        .collect();
    sql(&setup.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = scratch(&table);
    let file = job_file(&dir, &table, &db);

    let mut running = Running::spawn(job(&dir, &file, "cdc", &[]));
    // The start position is recorded before the reader reads anything.
    wait_until("the job to record its start position", || {
        dir.join("state/cdc.json").exists()
    });
    let expected = changes_before(&table);
    wait_until("the changes before the DDL to reach InfluxDB", || {
        influx_dump(&db, "m", "ms") == expected
    });
    assert!(running.still_running());

    let before_ddl = server_end();
    let ddl = case.ddl.replace("{t}", &table);
    sql(&[&ddl]);
    let at = statement_position(&before_ddl, &ddl);
    changes_after(&table);

    let out = running
        .exit_within(Duration::from_secs(30))
        .unwrap_or_else(|output| {
            panic!(
                "the job was still running 30 s after {ddl} (CDC stalled or went on); the target holds {:#?}\n{output}",
                influx_dump(&db, "m", "ms")
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap_or_default().to_string();
    let expected_start = format!(
        "error: table factory.{table} changed at {}:{} ({ddl})",
        at.0, at.1
    );
    assert!(
        error.starts_with(&expected_start),
        "the error should start with {expected_start:?}: {error}"
    );
    assert!(
        error.contains("-c backfill+cdc --fresh"),
        "the error should say the remedy: {error}"
    );
    // Exactly the changes before the DDL, none after (no value in the wrong field).
    assert_eq!(influx_dump(&db, "m", "ms"), expected);
    // A restart must not skip what followed the DDL.
    let recorded = recorded_position(&dir);
    assert!(
        recorded <= at,
        "the recorded position {recorded:?} is past the DDL at {at:?}"
    );
    Stopped {
        db,
        dir,
        file,
        error,
        expected,
        _cleanup: cleanup,
    }
}

/// Every point the table holds now, as the target should after a fresh snapshot.
fn all_rows_now() -> Vec<serde_json::Value> {
    sorted(vec![
        point(
            "d1",
            second(1),
            serde_json::json!({"a": 99, "b": 98, "c": 3}),
        ),
        point(
            "d2",
            second(2),
            serde_json::json!({"a": 10.25, "b": 5.5, "c": 6}),
        ),
        point(
            "d3",
            second(3),
            serde_json::json!({"a": 7.5, "b": 8.5, "c": 9}),
        ),
        point(
            "d4",
            second(4),
            serde_json::json!({"a": 11.5, "b": 12.5, "c": 13}),
        ),
        point(
            "d5",
            second(5),
            serde_json::json!({"a": 14.5, "b": 15.5, "c": 16}),
        ),
    ])
}

/// The ALTER stops the job; a restart stops at it again (the position is before it, so
/// nothing after it is skipped); the remedy the message gives, a fresh snapshot, brings
/// the target level with the table.
#[test]
fn adding_a_nullable_column_stops_cdc_at_the_alter_until_a_fresh_snapshot() {
    let stopped = stops_at_the_ddl(DdlCase {
        prefix: "ddl_add",
        setup: &[],
        ddl: "ALTER TABLE {t} ADD COLUMN x INT NULL",
        also_drop: &[],
    });
    let Stopped { dir, file, db, .. } = &stopped;

    let out = job(dir, file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().last().unwrap_or_default(), stopped.error);
    assert_eq!(influx_dump(db, "m", "ms"), stopped.expected);

    let out = job(dir, file, "backfill+cdc", &["--fresh", "--until-caught-up"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(influx_dump(db, "m", "ms"), all_rows_now());
}

#[test]
fn widening_a_type_stops_cdc_at_the_alter() {
    stops_at_the_ddl(DdlCase {
        prefix: "ddl_widen",
        setup: &[],
        ddl: "ALTER TABLE `factory`.`{t}` MODIFY c BIGINT",
        also_drop: &[],
    });
}

#[test]
fn dropping_an_unmapped_column_stops_cdc_at_the_alter() {
    stops_at_the_ddl(DdlCase {
        prefix: "ddl_dropcol",
        setup: &[],
        ddl: "ALTER TABLE factory.{t} DROP COLUMN spare",
        also_drop: &[],
    });
}

/// Same column count and types: only the statement tells that `a` and `b` traded places.
#[test]
fn swapping_two_double_columns_stops_cdc_rather_than_writing_one_into_the_other() {
    stops_at_the_ddl(DdlCase {
        prefix: "ddl_swap",
        setup: &[],
        ddl: "ALTER TABLE `{t}` MODIFY a DOUBLE AFTER b",
        also_drop: &[],
    });
}

#[test]
fn double_to_decimal_stops_cdc_rather_than_dead_lettering_every_later_row() {
    stops_at_the_ddl(DdlCase {
        prefix: "ddl_decimal",
        setup: &[],
        ddl: "ALTER TABLE {t} MODIFY a DECIMAL(10,2)",
        also_drop: &[],
    });
}

/// TRUNCATE removes rows without any row event.
#[test]
fn truncate_stops_cdc() {
    stops_at_the_ddl(DdlCase {
        prefix: "ddl_truncate",
        setup: &[],
        ddl: "TRUNCATE TABLE {t}",
        also_drop: &[],
    });
}

/// Two tables trade names in one statement: the followed name now holds another table,
/// whose `a` and `b` are in the other order.
#[test]
fn renaming_another_table_into_the_followed_name_stops_cdc() {
    stops_at_the_ddl(DdlCase {
        prefix: "ddl_rename",
        setup: &["CREATE TABLE {t}_twin (id BIGINT AUTO_INCREMENT PRIMARY KEY, device_id VARCHAR(32) NOT NULL, \
             ts DATETIME(3) NOT NULL, b DOUBLE, a DOUBLE, c INT, spare VARCHAR(8))"],
        ddl: "RENAME TABLE {t} TO {t}_tmp, {t}_twin TO {t}, {t}_tmp TO {t}_twin",
        also_drop: &["{t}_twin", "{t}_tmp"],
    });
}

/// DDL on tables the job does not follow changes nothing, even where it names the
/// followed table as a column or as the model of a copy.
#[test]
fn ddl_on_other_tables_is_ignored() {
    let table = unique("ddl_other");
    let db = table.clone();
    let _cleanup = Cleanup::default()
        .table(&table)
        .table(&format!("{table}_other"))
        .table(&format!("{table}_renamed"))
        .table(&format!("{table}_copy"))
        .database(&db);
    fresh_influx_db(&db);
    create_table(&table);
    create_table(&format!("{table}_other"));
    let dir = scratch(&table);
    let file = job_file(&dir, &table, &db);
    let mut running = Running::spawn(job(&dir, &file, "cdc", &[]));
    wait_until("the job to record its start position", || {
        dir.join("state/cdc.json").exists()
    });
    let expected = changes_before(&table);
    wait_until("the changes to reach InfluxDB", || {
        influx_dump(&db, "m", "ms") == expected
    });

    let other = format!("{table}_other");
    sql(&[
        &format!("ALTER TABLE {other} ADD COLUMN {table} INT"),
        &format!("CREATE TABLE {table}_copy LIKE {table}"),
        &format!("RENAME TABLE {other} TO {table}_renamed"),
        &format!("TRUNCATE {table}_renamed"),
        &format!("CREATE INDEX by_c ON {table}_renamed (c)"),
        &format!("DROP TABLE {table}_copy"),
    ]);
    changes_after(&table);
    wait_until(
        "the changes after the other tables' DDL to reach InfluxDB",
        || influx_dump(&db, "m", "ms") == all_rows_now(),
    );
    assert!(running.still_running());
    let out = sigterm_and_wait(running.0.take().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A DDL made while the job was not running: the restart resumes from before it, but
/// reads the table's new definition. Two DOUBLE columns swapped leave the table maps as
/// they were, so the rows between the checkpoint and the ALTER would be decoded into each
/// other's fields: the restart must stop at the ALTER before applying any of them.
#[test]
fn a_ddl_made_while_the_job_was_down_stops_the_restart_before_any_row() {
    let table = unique("ddl_down");
    let db = table.clone();
    let _cleanup = Cleanup::default().table(&table).database(&db);
    fresh_influx_db(&db);
    create_table(&table);
    let dir = scratch(&table);
    let file = job_file(&dir, &table, &db);
    let mut running = Running::spawn(job(&dir, &file, "cdc", &[]));
    wait_until("the job to record its start position", || {
        dir.join("state/cdc.json").exists()
    });
    let expected = changes_before(&table);
    wait_until("the changes to reach InfluxDB", || {
        influx_dump(&db, "m", "ms") == expected
    });
    assert!(running.still_running());
    let out = sigterm_and_wait(running.0.take().unwrap());
    assert!(out.status.success());
    let stopped_at = recorded_position(&dir);

    // While the job is down: a row, the swap, a row.
    sql(&[&format!(
        "INSERT INTO {table} (device_id, ts, a, b, c) VALUES ('d6', '2026-01-01 00:00:06', 1, 2, 3)"
    )]);
    let before_ddl = server_end();
    let ddl = format!("ALTER TABLE {table} MODIFY a DOUBLE AFTER b");
    sql(&[&ddl]);
    let at = statement_position(&before_ddl, &ddl);
    sql(&[&format!(
        "INSERT INTO {table} (device_id, ts, a, b, c) VALUES ('d7', '2026-01-01 00:00:07', 1, 2, 3)"
    )]);

    let out = job(&dir, &file, "cdc", &["--until-caught-up"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    let wanted = format!(
        "error: table factory.{table} changed at {}:{} ({ddl}): ",
        at.0, at.1
    );
    assert!(error.starts_with(&wanted), "expected {wanted:?}: {error}");
    // Not even d6, which came before the ALTER: the job no longer knows its layout.
    assert_eq!(influx_dump(&db, "m", "ms"), expected);
    assert_eq!(recorded_position(&dir), stopped_at);
}
