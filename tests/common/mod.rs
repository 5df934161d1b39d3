//! Shared by the integration tests: the private MariaDB and InfluxDB that
//! `scripts/services.sh` starts (scripts/test.sh starts them before `cargo test`), job
//! files written to a temp dir, and running `tsmig-job`.
#![allow(dead_code)]

pub mod jobs;
pub mod moto;
pub mod proxy;
pub mod servers;
pub mod writer;

use mysql_async::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn mysql_url() -> String {
    std::env::var("TSMIG_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://tsmig:tsmig@127.0.0.1:13306/factory".into())
}

pub fn influx_url() -> String {
    std::env::var("TSMIG_INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:18086".into())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs SQL statements against the private MariaDB; returns the rows of the last one.
pub fn sql(statements: &[&str]) -> Vec<mysql_async::Row> {
    sql_at(&mysql_url(), statements)
}

/// Runs SQL statements against the MariaDB at `url`; returns the rows of the last one.
pub fn sql_at(url: &str, statements: &[&str]) -> Vec<mysql_async::Row> {
    block_on(async {
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .expect("the private MariaDB must run: use scripts/test.sh, which starts it");
        let mut rows = Vec::new();
        for s in statements {
            rows = conn.query(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.disconnect().await.unwrap();
        rows
    })
}

/// One value of a one-row query.
pub fn sql_value<T: FromValue>(statement: &str) -> T {
    let rows = sql(&[statement]);
    let row = rows
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{statement}: no row"));
    row.get(0).unwrap()
}

/// Loads the demo sensor table with `rows` rows under `table` (scripts/load-sample.sh).
pub fn load_sensor_table(table: &str, rows: u64) {
    load_sensor_table_in(None, table, rows)
}

/// Loads the demo sensor table into the MariaDB laid out under `services_dir` (a
/// `servers::PrivateMariadb`), or the shared one with `None`.
pub fn load_sensor_table_in(services_dir: Option<&Path>, table: &str, rows: u64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(root.join("scripts/load-sample.sh"));
    if let Some(dir) = services_dir {
        command.env("TSMIG_SERVICES_DIR", dir);
    }
    let status = command
        .arg(rows.to_string())
        .arg("--table")
        .arg(table)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "loading {table}");
}

/// An InfluxQL query against the private InfluxDB; times in `epoch` units.
pub fn influx_query(db: &str, q: &str, epoch: &str) -> serde_json::Value {
    influx_query_at(&influx_url(), db, q, epoch)
}

/// An InfluxQL query against the InfluxDB at `url`.
pub fn influx_query_at(url: &str, db: &str, q: &str, epoch: &str) -> serde_json::Value {
    block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}/query"))
            .form(&[("db", db), ("q", q), ("epoch", epoch)])
            .send()
            .await
            .expect("the private InfluxDB must run: use scripts/test.sh, which starts it");
        let json: serde_json::Value = response.json().await.unwrap();
        if let Some(e) = json["results"][0].get("error") {
            panic!("{q}: {e}");
        }
        json
    })
}

/// Writes line protocol to `db` directly (to seed a conflict, say).
pub fn influx_write(db: &str, lines: &str, precision: &str) {
    block_on(async {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/write?db={db}&precision={precision}",
                influx_url()
            ))
            .body(lines.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "seeding {db}: {}",
            r.text().await.unwrap()
        );
    })
}

/// Drops and creates an InfluxDB database.
pub fn fresh_influx_db(db: &str) {
    influx_query("", &format!("DROP DATABASE \"{db}\""), "ns");
    influx_query("", &format!("CREATE DATABASE \"{db}\""), "ns");
}

/// `SELECT count(field) FROM measurement`, 0 when there is none.
pub fn influx_count(db: &str, measurement: &str, field: &str) -> u64 {
    influx_count_at(&influx_url(), db, measurement, field)
}

/// `influx_count` on the InfluxDB at `url`.
pub fn influx_count_at(url: &str, db: &str, measurement: &str, field: &str) -> u64 {
    let json = influx_query_at(
        url,
        db,
        &format!("SELECT count(\"{field}\") FROM \"{measurement}\""),
        "ns",
    );
    json["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

/// Every point of a measurement as (time, tags, fields) JSON, sorted, for comparisons.
pub fn influx_dump(db: &str, measurement: &str, epoch: &str) -> Vec<serde_json::Value> {
    let json = influx_query(
        db,
        &format!("SELECT * FROM \"{measurement}\" GROUP BY *"),
        epoch,
    );
    let mut points = Vec::new();
    for series in json["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let columns: Vec<String> = series["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        for values in series["values"].as_array().unwrap() {
            let mut fields = serde_json::Map::new();
            for (c, v) in columns.iter().zip(values.as_array().unwrap()) {
                if c != "time" && !v.is_null() {
                    fields.insert(c.clone(), v.clone());
                }
            }
            points.push(serde_json::json!({
                "time": values[0],
                "tags": series["tags"],
                "fields": fields,
            }));
        }
    }
    points.sort_by_key(|p| p.to_string());
    points
}

/// A unique name for this test run, so tests can run side by side and again.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("tsmig-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The job file for copying `table` into InfluxDB database `db`, with `extra` YAML
/// appended to the sink section, and state under `dir`.
pub fn sensor_job(
    dir: &Path,
    table: &str,
    db: &str,
    chunk_rows: u64,
    sink_extra: &str,
    flow: &str,
) -> PathBuf {
    let servers = ("127.0.0.1:13306", influx_url());
    sensor_job_at(
        dir,
        table,
        (servers.0, &servers.1),
        db,
        chunk_rows,
        sink_extra,
        flow,
    )
}

/// A sensor table of `rows`, a fresh InfluxDB database and a scratch dir, all named after
/// `name`, and a [`sensor_job`] copying one into the other (its `chunk_rows`, `sink_extra`
/// and `flow`): (cleanup, table, database, scratch dir, job file).
pub fn sensor_run(
    name: &str,
    rows: u64,
    chunk_rows: u64,
    sink_extra: &str,
    flow: &str,
) -> (Cleanup, String, String, PathBuf, PathBuf) {
    let table = unique(name);
    let db = unique(name);
    let cleanup = Cleanup::default().table(&table).database(&db);
    load_sensor_table(&table, rows);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    let job = sensor_job(&dir, &table, &db, chunk_rows, sink_extra, flow);
    (cleanup, table, db, dir, job)
}

/// [`sensor_run`] of a job that copies slowly (small chunks, one request in flight, few
/// rows in flight), long enough to be interrupted while some chunks are finished and
/// others are not.
pub fn slow_sensor_run(name: &str, rows: u64) -> (Cleanup, String, String, PathBuf, PathBuf) {
    sensor_run(
        name,
        rows,
        5_000,
        "  in_flight: 1",
        "flow:\n  epoch: 50ms\n  max_in_flight_rows: 2000",
    )
}

/// `sensor_job` with the MariaDB at `servers.0` (`host:port`) and the InfluxDB at
/// `servers.1` (a URL).
pub fn sensor_job_at(
    dir: &Path,
    table: &str,
    servers: (&str, &str),
    db: &str,
    chunk_rows: u64,
    sink_extra: &str,
    flow: &str,
) -> PathBuf {
    let (mysql, influx) = servers;
    let text = format!(
        r#"name: {table}
mode: backfill
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@{mysql}/factory
  time_zone: "+00:00"
  tables:
    - name: {table}
      split_by: id
      chunk_rows: {chunk_rows}
sink:
  type: influxdb
  version: 1
  url: {influx}
  database: {db}
  precision: ms
  batch_size: 1000
{sink_extra}
mappings:
  - table: {table}
    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, pressure, status]
checkpoint:
  interval: 100ms
  store: file:{state}
{flow}
"#,
        state = dir.join("state").display(),
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `tsmig-job` under test: this build's, or `TSMIG_JOB_BIN` (to show that a new test
/// fails on an older build).
pub fn tsmig_bin() -> String {
    std::env::var("TSMIG_JOB_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tsmig-job").to_string())
}

/// `tsmig_bin()` as a command, with the test servers' password and warnings logged.
pub fn tsmig() -> Command {
    let mut c = Command::new(tsmig_bin());
    c.env("MYSQL_PASSWORD", "tsmig").env("RUST_LOG", "warn");
    c
}

/// Runs `tsmig-job` to completion.
pub fn run(args: &[&str]) -> Output {
    tsmig().args(args).output().unwrap()
}

/// The `summary:` line's `key=value`s of a run's stdout.
pub fn summary(stdout: &[u8]) -> std::collections::HashMap<String, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line in {text:?}"));
    line["summary: ".len()..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn summary_u64(stdout: &[u8], key: &str) -> u64 {
    summary(stdout)[key].parse().unwrap()
}

/// Asserts a run succeeded, showing its output if not.
pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "tsmig-job failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Free TCP ports on loopback (for a local cluster's hostfile).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Drops the tables and InfluxDB databases a test made, when the test ends (pass or fail),
/// so repeated runs do not pile data up on the private servers.
#[derive(Default)]
pub struct Cleanup {
    tables: Vec<String>,
    databases: Vec<String>,
}

impl Cleanup {
    pub fn table(mut self, name: &str) -> Self {
        self.tables.push(name.to_string());
        self
    }

    pub fn database(mut self, name: &str) -> Self {
        self.databases.push(name.to_string());
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for t in &self.tables {
            let statement = format!("DROP TABLE IF EXISTS {t}");
            let _ = std::panic::catch_unwind(|| sql(&[statement.as_str()]));
        }
        for d in &self.databases {
            let statement = format!("DROP DATABASE \"{d}\"");
            let _ = std::panic::catch_unwind(|| influx_query("", &statement, "ns"));
        }
    }
}

/// Runs `tsmig-job -c verify` with 1 and with 2 workers (both must answer the same) and
/// `env`; returns the exit code and stdout followed by stderr.
pub fn verify(job: &Path, env: &[(&str, String)]) -> (i32, String) {
    let mut answers = Vec::new();
    for workers in ["1", "2"] {
        let mut cmd = tsmig();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .args([
                "-c",
                "verify",
                "--config",
                job.to_str().unwrap(),
                "--workers",
                workers,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        answers.push((
            out.status.code().unwrap_or(-1),
            stdout + &String::from_utf8_lossy(&out.stderr),
        ));
    }
    assert_eq!(answers[0], answers[1], "1 and 2 workers disagree");
    answers.remove(0)
}

/// The `verify: ...` line of a verify report.
pub fn report_line(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("verify: "))
        .unwrap_or_else(|| panic!("no report in {report}"))
}

/// `tsmig-job -c backfill --config JOB --workers N --progress off`, to run or spawn.
pub fn backfill_command(job: &Path, workers: &str) -> Command {
    let mut c = tsmig();
    c.args([
        "-c",
        "backfill",
        "--config",
        job.to_str().unwrap(),
        "--workers",
        workers,
        "--progress",
        "off",
    ]);
    c
}

/// Waits (a minute at most) until a backfill's state file records a finished split.
pub fn wait_for_a_finished_split(state_file: &Path) {
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no split was checkpointed within a minute"
        );
        if let Ok(text) = std::fs::read_to_string(state_file) {
            let state: serde_json::Value = serde_json::from_str(&text).unwrap();
            if state["finished"].as_array().is_some_and(|f| !f.is_empty()) {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether split `id` is among the finished ranges of a backfill state.
pub fn split_finished(state: &serde_json::Value, id: u64) -> bool {
    state["finished"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r[0].as_u64().unwrap() <= id && id <= r[1].as_u64().unwrap())
}

/// The plan recorded in a backfill's state file, and its splits not yet finished.
pub fn unfinished_splits(state_file: &Path) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_file).unwrap()).unwrap();
    let plan = state["plan"].as_array().unwrap().clone();
    let pending = plan
        .iter()
        .filter(|s| !split_finished(&state, s["id"].as_u64().unwrap()))
        .cloned()
        .collect();
    (plan, pending)
}

/// Spawns a backfill, SIGKILLs it once its state records a finished split, and returns
/// the recorded plan and its unfinished splits (some, not all: the kill came mid-run).
pub fn kill_mid_run(
    mut backfill: Command,
    state_file: &Path,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut child = backfill.spawn().unwrap();
    wait_for_a_finished_split(state_file);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The state on disk now is what the restart will use (the job may have saved once more).
    let (plan, pending) = unfinished_splits(state_file);
    assert!(
        !pending.is_empty(),
        "the job finished before it could be killed; make it slower"
    );
    assert!(pending.len() < plan.len());
    (plan, pending)
}

/// Runs `args` on two local processes of one worker each (cluster/start-local.sh) from
/// `dir`; asserts the cluster succeeded and returns each process's output.
pub fn run_two_processes(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let ports = free_ports(2);
    let hostfile = dir.join("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/start-local.sh");
    let out = Command::new(script)
        .env("MYSQL_PASSWORD", "tsmig")
        .env("TSMIG_CLUSTER_LOGS", dir.join("logs"))
        .envs(env.iter().copied())
        .args(["--processes", "2", "--hostfile", hostfile.to_str().unwrap()])
        .args(["--bin", &tsmig_bin(), "--"])
        .args(args)
        .output()
        .unwrap();
    assert_ok(&out);
    (0..2)
        .map(|i| std::fs::read_to_string(dir.join(format!("logs/process-{i}.log"))).unwrap())
        .collect()
}

/// Sends a running job SIGTERM and waits (30 s at most) for it to drain and exit.
pub fn sigterm_and_wait(mut child: std::process::Child) -> Output {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not stop after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Waits (a minute at most) until `ready` holds, polling; `what` names it on timeout.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "waited a minute for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The `backfill+follow` state (`follow.json`) in a state directory, once written.
pub fn follow_state(state_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(state_dir.join("follow.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// Appends a `follow:` section to a job file.
pub fn add_follow_section(job: &Path, interval: &str, lateness: &str) {
    let text = std::fs::read_to_string(job).unwrap();
    std::fs::write(
        job,
        format!("{text}follow:\n  interval: {interval}\n  lateness: {lateness}\n"),
    )
    .unwrap();
}

/// Unix time now in `unit`s per second (1000: ms, 1_000_000_000: ns).
pub fn now_in(per_second: i64) -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (d.as_nanos() / (1_000_000_000 / per_second as u128)) as i64
}
