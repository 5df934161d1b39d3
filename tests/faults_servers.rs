//! The fault matrix, part two: a server stopped, down from the start, frozen or restarted
//! under a running job. These tests start their own InfluxDB or MariaDB
//! (tests/common/servers.rs) and stop, freeze and restart only those, by PID; the other
//! side of the job is the shared server. Each ends with the target equal to the source
//! (`verify` clean, and exactly one point per row) and the exit code the README promises,
//! and every wait has a deadline.
//!
//! A job is slowed down so that the fault lands mid-run: a backfill reads its source
//! through a delaying proxy, or in chunks larger than the reader may keep in flight.

mod common;

use common::jobs::{assert_verified, run_ok, wait_for, Background};
use common::proxy::{Mode, TcpProxy};
use common::servers::{PrivateInflux, PrivateMariadb};
use common::writer::{create_cdc_table, Writer, CDC_MAPPING};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Rows of the backfills whose sink fails: read through a proxy that delays each chunk of
/// MariaDB's answers, they take some seconds.
const ROWS: u64 = 4_000;
const SLOW_SOURCE: Duration = Duration::from_millis(150);
const MINUTE: Duration = Duration::from_secs(60);

/// A sensor table on the shared MariaDB, copied through a delaying proxy into `influx` (a
/// private InfluxDB), with a backfill job file and a second one reaching MariaDB directly
/// (for verify).
struct SinkCase {
    table: String,
    dir: PathBuf,
    job: PathBuf,
    direct: PathBuf,
    _source: TcpProxy,
    _cleanup: Cleanup,
}

impl SinkCase {
    fn new(prefix: &str, influx: &str) -> SinkCase {
        let table = unique(prefix);
        let cleanup = Cleanup::default().table(&table);
        load_sensor_table(&table, ROWS);
        let dir = scratch(&table);
        let source = TcpProxy::start("127.0.0.1:13306");
        source.set(Mode::Delay(SLOW_SOURCE));
        let flow = "flow:\n  epoch: 50ms";
        let servers = (source.addr(), influx);
        let job = sensor_job_at(&dir, &table, (&servers.0, servers.1), &table, 250, "", flow);
        let direct = dir.join("direct.yaml");
        std::fs::write(
            &direct,
            std::fs::read_to_string(&job)
                .unwrap()
                .replace(&source.addr(), "127.0.0.1:13306"),
        )
        .unwrap();
        SinkCase {
            table,
            dir,
            job,
            direct,
            _source: source,
            _cleanup: cleanup,
        }
    }

    fn spawn(&self) -> Background {
        Background::spawn(backfill_command(&self.job, "2"), &self.dir, "backfill")
    }

    /// verify clean, and one point per row in the private InfluxDB.
    fn assert_copied(&self, influx: &PrivateInflux) {
        assert_verified(&self.direct);
        assert_eq!(
            influx_count_at(&influx.url(), &self.table, "sensors", "temperature"),
            ROWS
        );
    }
}

/// The sink goes away for a minute in the middle of a backfill: the sink's retries run out,
/// and the restart strategy (its default: exponential, 1 s to 30 s, 10 attempts) starts the
/// job again from its checkpoint until the sink is back.
#[test]
fn a_backfill_rides_out_its_sink_stopped_for_a_minute() {
    let mut influx = PrivateInflux::start(&unique("sink_stopped"));
    let case = SinkCase::new("fault_sink_stopped", &influx.url());
    let mut job = case.spawn();
    job.wait_for_a_finished_split(&case.dir.join("state/backfill.json"));
    influx.stop();
    job.assert_runs_through(Duration::from_secs(60));
    influx.start_again();
    // The next restart comes at most 30 s later (restart.max).
    let code = job.exit_within(Duration::from_secs(90));
    assert_eq!(code, 0, "{}", job.stderr());
    assert!(job.summary_u64("restarts") >= 1, "{}", job.stdout());
    // The summary counts the plan once, however often a restart loaded it again.
    assert_eq!(
        job.summary_u64("splits_total"),
        ROWS / 250,
        "{}",
        job.stdout()
    );
    assert_eq!(
        job.summary_u64("splits_done"),
        ROWS / 250,
        "{}",
        job.stdout()
    );
    assert!(
        job.stderr().contains("restarting from the last checkpoint"),
        "{}",
        job.stderr()
    );
    case.assert_copied(&influx);
}

/// The sink is down when the job starts: the target cannot be prepared, which is
/// transient, so the job restarts until the sink comes up.
#[test]
fn a_backfill_waits_for_a_sink_that_is_down_when_it_starts() {
    let mut influx = PrivateInflux::start(&unique("sink_down"));
    let case = SinkCase::new("fault_sink_down", &influx.url());
    influx.stop();
    let mut job = case.spawn();
    job.assert_runs_through(Duration::from_secs(17));
    influx.start_again();
    let code = job.exit_within(Duration::from_secs(60));
    assert_eq!(code, 0, "{}", job.stderr());
    assert!(job.summary_u64("restarts") >= 1, "{}", job.stdout());
    assert!(
        job.stderr().contains("the target is not ready"),
        "{}",
        job.stderr()
    );
    case.assert_copied(&influx);
}

/// The sink freezes (SIGSTOP) for 30 s: connections stay open, nothing is answered, the
/// writes time out or wait; after SIGCONT the backfill completes.
#[test]
fn a_backfill_rides_out_its_sink_frozen_for_30_seconds() {
    let influx = PrivateInflux::start(&unique("sink_frozen"));
    let case = SinkCase::new("fault_sink_frozen", &influx.url());
    let mut job = case.spawn();
    job.wait_for_a_finished_split(&case.dir.join("state/backfill.json"));
    influx.freeze();
    job.assert_runs_through(Duration::from_secs(30));
    influx.thaw();
    let code = job.exit_within(Duration::from_secs(90));
    assert_eq!(code, 0, "{}", job.stderr());
    case.assert_copied(&influx);
}

/// A private MariaDB with a table, and the shared InfluxDB's database for it.
struct SourceCase {
    mariadb: PrivateMariadb,
    table: String,
    dir: PathBuf,
    _cleanup: Cleanup,
}

impl SourceCase {
    fn new(prefix: &str) -> SourceCase {
        let table = unique(prefix);
        let cleanup = Cleanup::default().database(&table);
        fresh_influx_db(&table);
        let mariadb = PrivateMariadb::start(&table);
        let dir = scratch(&table);
        SourceCase {
            mariadb,
            table,
            dir,
            _cleanup: cleanup,
        }
    }

    /// Restarts MariaDB: SIGTERM, `down` without it, started again on the same port and
    /// data. `job` must run throughout.
    fn restart_mariadb(&mut self, job: &mut Background, down: Duration) {
        self.mariadb.stop();
        job.assert_runs_through(down);
        self.mariadb.start_again();
    }

    /// One point per row of the table in the shared InfluxDB.
    fn assert_counts(&self, rows: u64) {
        let in_table: u64 = sql_value_at(
            &self.mariadb.url(),
            &format!("SELECT COUNT(*) FROM {}", self.table),
        );
        assert_eq!(in_table, rows);
        assert_eq!(influx_count(&self.table, "sensors", "temperature"), rows);
    }
}

fn sql_value_at(url: &str, statement: &str) -> u64 {
    sql_at(url, &[statement])
        .remove(0)
        .get(0)
        .expect("a number")
}

/// MariaDB restarts while a backfill with 2 workers reads it: the reads that meet the
/// closed connections or the server down are read again, the job completes.
#[test]
fn a_backfill_rides_out_mariadb_restarting() {
    // Chunks larger than what a worker may keep in flight, so each chunk takes a while to
    // read and the restart finds chunks still to start.
    let rows = 36_000;
    let mut case = SourceCase::new("fault_mdb_backfill");
    load_sensor_table_in(Some(case.mariadb.services_dir()), &case.table, rows);
    let servers = (case.mariadb.addr(), influx_url());
    let job = sensor_job_at(
        &case.dir,
        &case.table,
        (&servers.0, &servers.1),
        &case.table,
        6_000,
        "",
        "flow:\n  epoch: 250ms\n  max_in_flight_rows: 500",
    );
    let mut running = Background::spawn(backfill_command(&job, "2"), &case.dir, "backfill");
    running.wait_for_a_finished_split(&case.dir.join("state/backfill.json"));
    case.restart_mariadb(&mut running, Duration::from_secs(4));
    let code = running.exit_within(Duration::from_secs(120));
    let stderr = running.stderr();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        (stderr.contains("reading chunk ") && stderr.contains("; retrying"))
            || running.summary_u64("restarts") >= 1,
        "the restart went unnoticed; make the job slower:\n{stderr}"
    );
    assert_verified(&job);
    case.assert_counts(rows);
}

/// A `backfill+cdc` or `cdc` job file for the table of `case`, state in its directory.
fn cdc_job(case: &SourceCase) -> PathBuf {
    let text = format!(
        r#"name: {table}
mode: backfill+cdc
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@{mysql}/factory
  server_id: 4242
  heartbeat: 100ms
  tables:
    - name: {table}
      split_by: id
      chunk_rows: 200
sink:
  type: influxdb
  url: {influx}
  database: {table}
  precision: ms
  batch_size: 500
mappings:
  - table: {table}
{CDC_MAPPING}
checkpoint:
  interval: 100ms
  store: file:{state}
"#,
        table = case.table,
        mysql = case.mariadb.addr(),
        influx = influx_url(),
        state = case.dir.join("state").display(),
    );
    let path = case.dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cdc_command(job: &Path, entry: &str, workers: &str, extra: &[&str]) -> Command {
    let mut c = tsmig();
    c.args(["-c", entry, "--config", job.to_str().unwrap()])
        .args(["--workers", workers, "--progress", "off"])
        .args(extra);
    c
}

/// The position a CDC job has recorded and the server's end of binlog, as comparable
/// (file, offset) pairs.
fn recorded_position(dir: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(dir.join("state/cdc.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        state["position"]["file"].as_str()?.to_string(),
        state["position"]["offset"].as_u64()?,
    ))
}

fn server_end(url: &str) -> (String, u64) {
    let row = sql_at(url, &["SHOW MASTER STATUS"]).remove(0);
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// MariaDB restarts while a CDC job follows its binlog and a writer changes the table:
/// the binlog stream ends, the reader fails transiently, the job restarts from its
/// checkpoint and follows on; once the writer stops, the target converges to the table.
fn cdc_rides_out_mariadb_restarting(prefix: &str, entry: &str, workers: &str) {
    let mut case = SourceCase::new(prefix);
    create_cdc_table(&case.mariadb.url(), &case.table);
    let job = cdc_job(&case);
    if entry == "cdc" {
        // The snapshot first; the job under test then follows from its position.
        let snapshot = cdc_command(&job, "backfill+cdc", workers, &["--until-caught-up"]);
        run_ok(snapshot, &case.dir, "snapshot", MINUTE);
    }
    let mut running = Background::spawn(cdc_command(&job, entry, workers, &[]), &case.dir, entry);
    running.wait_until("the snapshot in the target", MINUTE, || {
        influx_count(&case.table, "sensors", "temperature") == 500
    });
    let writer = Writer::start(&case.mariadb.url(), &case.table);
    wait_for("the writer's first changes", MINUTE, || {
        writer.written() >= 200
    });
    case.restart_mariadb(&mut running, Duration::from_secs(2));
    let before = writer.written();
    wait_for("the writer to write after the restart", MINUTE, || {
        writer.written() >= before + 200
    });
    writer.stop();

    let end = server_end(&case.mariadb.url());
    running.wait_until("the job to follow to the end of the binlog", MINUTE, || {
        recorded_position(&case.dir).is_some_and(|p| p >= end)
    });
    running.signal("TERM");
    let code = running.exit_within(MINUTE);
    assert_eq!(code, 0, "{}", running.stderr());
    assert!(
        running.summary_u64("restarts") >= 1,
        "{}\n{}",
        running.stdout(),
        running.stderr()
    );
    assert_verified(&job);
    let rows = sql_value_at(
        &case.mariadb.url(),
        &format!("SELECT COUNT(*) FROM {}", case.table),
    );
    case.assert_counts(rows);
}

#[test]
fn cdc_on_one_worker_rides_out_mariadb_restarting() {
    cdc_rides_out_mariadb_restarting("fault_mdb_cdc1", "cdc", "1");
}

#[test]
fn backfill_and_cdc_on_two_workers_ride_out_mariadb_restarting() {
    cdc_rides_out_mariadb_restarting("fault_mdb_cdc2", "backfill+cdc", "2");
}
