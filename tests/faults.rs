//! The fault matrix, against the real MariaDB and InfluxDB: what happens when a server
//! stops, freezes or is slow, when the operator stops a job, when a job meets a failure on
//! one of its workers. Each test ends with the target equal to the source (`verify`
//! clean) and the exit code it expects, or with the promised clear message — and never a
//! hang: every wait has a deadline.
//!
//! Servers are stopped or frozen through a TCP proxy in front of them (tests/common/
//! proxy.rs), so no test stops the servers other tests use.

mod common;

use common::proxy::{Mode, TcpProxy};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A sensor table of `rows` rows, an empty InfluxDB database, a scratch directory and a
/// backfill job file whose sink goes through `influx` (a proxy's `host:port`).
struct Case {
    table: String,
    dir: PathBuf,
    job: PathBuf,
    _cleanup: Cleanup,
}

impl Case {
    fn new(prefix: &str, rows: u64, influx: &str, flow: &str) -> Case {
        let table = unique(prefix);
        let cleanup = Cleanup::default().table(&table).database(&table);
        load_sensor_table(&table, rows);
        fresh_influx_db(&table);
        let dir = scratch(&table);
        let job = sensor_job(&dir, &table, &table, 2_000, "", flow);
        let text = std::fs::read_to_string(&job)
            .unwrap()
            .replace(&influx_url(), &format!("http://{influx}"));
        std::fs::write(&job, text).unwrap();
        Case {
            table,
            dir,
            job,
            _cleanup: cleanup,
        }
    }

    /// The backfill, its stderr in a file of the scratch directory.
    fn spawn(&self, args: &[&str]) -> Child {
        let stderr = std::fs::File::create(self.dir.join("stderr.log")).unwrap();
        backfill_command(&self.job, "2")
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The job file, reaching InfluxDB directly.
    fn direct_job(&self) -> PathBuf {
        let path = self.dir.join("direct.yaml");
        let text = std::fs::read_to_string(&self.job).unwrap();
        let start = text.find("url: http://127.0.0.1:").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        let text = format!("{}url: {}{}", &text[..start], influx_url(), &text[end..]);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the backfill to the end, directly, then verifies it.
    fn finish_and_verify(&self) {
        let job = self.direct_job();
        let out = backfill_command(&job, "2").output().unwrap();
        assert_ok(&out);
        let (code, report) = verify(&job, &[]);
        assert_eq!(code, 0, "{report}");
        assert!(
            report_line(&report).ends_with("0 missing in target, 0 extra in target, 0 differing"),
            "{report}"
        );
        let rows: u64 = sql_value(&format!("SELECT COUNT(*) FROM {}", self.table));
        let points = influx_count(&self.table, "sensors", "status");
        assert!(
            points > 0 && points <= rows,
            "{points} points of {rows} rows"
        );
    }
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits `within` at most for the job to exit; its exit code.
fn exit_within(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "the job did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn last_line(text: &str) -> &str {
    text.trim_end().lines().last().unwrap_or("")
}

fn wait_for_state(dir: &Path) {
    wait_for_a_finished_split(&dir.join("state/backfill.json"));
}

/// SIGTERM drains; a drain that cannot finish (the target froze) ends at the second
/// SIGTERM, at once, with exit 1 and the reason; the next run completes exactly.
#[test]
fn a_second_sigterm_stops_a_drain_the_frozen_target_holds_up() {
    let influx = TcpProxy::start(&influx_url());
    let case = Case::new("fault_sigterm2", 40_000, &influx.addr(), "");
    let mut job = case.spawn(&[]);
    wait_for_state(&case.dir);
    influx.set(Mode::Hold);
    signal(&job, "TERM");
    wait_until("the job to start draining", || {
        case.stderr().contains("stop requested (SIGTERM)")
    });
    assert!(job.try_wait().unwrap().is_none(), "the drain is held up");
    signal(&job, "TERM");
    let code = exit_within(&mut job, Duration::from_secs(5));
    let stderr = case.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        last_line(&stderr).starts_with("error: stopped at once by a second SIGTERM;"),
        "{stderr}"
    );
    influx.set(Mode::Pass);
    case.finish_and_verify();
}

/// A drain that takes longer than `--stop-timeout` ends the job with exit 1 and says so.
#[test]
fn a_drain_longer_than_the_stop_timeout_ends_the_job() {
    let influx = TcpProxy::start(&influx_url());
    let case = Case::new("fault_stoptimeout", 40_000, &influx.addr(), "");
    let mut job = case.spawn(&["--stop-timeout", "2s"]);
    wait_for_state(&case.dir);
    influx.set(Mode::Hold);
    let sent = Instant::now();
    signal(&job, "TERM");
    let code = exit_within(&mut job, Duration::from_secs(10));
    let stderr = case.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "not before the timeout"
    );
    assert!(
        last_line(&stderr).contains("did not finish writing what it read within 2 s of SIGTERM"),
        "{stderr}"
    );
    influx.set(Mode::Pass);
    case.finish_and_verify();
}
