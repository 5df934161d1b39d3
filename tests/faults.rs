//! The fault matrix, against the shared MariaDB and InfluxDB: the operator stopping a job,
//! slow and cut connections, a process of a cluster killed, a state directory that fills.
//! Each test ends with the target equal to the source (`verify` clean, and exactly one
//! point per row) and the exit code it expects, or with the promised clear message — and
//! never a hang: every wait has a deadline.
//!
//! Connections are slowed, held and cut by a TCP proxy in front of each server (tests/
//! common/proxy.rs), so no test disturbs the servers other tests use; the faults that stop,
//! freeze or restart a server itself are in tests/faults_servers.rs, on private servers.

mod common;

use common::jobs::{assert_verified, finished_splits, last_line, run_ok, Background};
use common::proxy::{Mode, TcpProxy};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);

/// A sensor table of `rows` rows, an empty InfluxDB database, a scratch directory, a
/// proxy in front of each server and a backfill job file reaching both through them.
struct Case {
    table: String,
    rows: u64,
    dir: PathBuf,
    job: PathBuf,
    mysql: TcpProxy,
    influx: TcpProxy,
    _cleanup: Cleanup,
}

impl Case {
    fn new(prefix: &str, rows: u64, chunk_rows: u64, flow: &str) -> Case {
        let table = unique(prefix);
        let cleanup = Cleanup::default().table(&table).database(&table);
        load_sensor_table(&table, rows);
        fresh_influx_db(&table);
        let dir = scratch(&table);
        let mysql = TcpProxy::start("127.0.0.1:13306");
        let influx = TcpProxy::start(&influx_url());
        let servers = (mysql.addr(), format!("http://{}", influx.addr()));
        let job = sensor_job_at(
            &dir,
            &table,
            (&servers.0, &servers.1),
            &table,
            chunk_rows,
            "",
            flow,
        );
        Case {
            table,
            rows,
            dir,
            job,
            mysql,
            influx,
            _cleanup: cleanup,
        }
    }

    /// Points the job's checkpoint store (and so its dead-letter file) at `dir`.
    fn move_state_to(&self, dir: &Path) {
        let text = std::fs::read_to_string(&self.job).unwrap().replace(
            &format!("store: file:{}", self.dir.join("state").display()),
            &format!("store: file:{}", dir.display()),
        );
        std::fs::write(&self.job, text).unwrap();
    }

    /// Once `job` has recorded its plan (planning asks many small questions, slow over a
    /// slow link), slows the link to MariaDB down so that the reads take some seconds.
    fn slow_down_once_planned(&self, job: &mut Background) {
        let state = self.state_file();
        job.wait_until("the plan to be recorded", MINUTE, || state.exists());
        self.mysql.set(Mode::Delay(SLOW));
    }

    /// The backfill with 2 workers and `args`, in the background.
    fn spawn(&self, args: &[&str]) -> Background {
        let mut command = backfill_command(&self.job, "2");
        command.args(args);
        Background::spawn(command, &self.dir, "backfill")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state/backfill.json")
    }

    /// The job file, reaching both servers directly.
    fn direct_job(&self) -> PathBuf {
        let path = self.dir.join("direct.yaml");
        let text = std::fs::read_to_string(&self.job)
            .unwrap()
            .replace(&self.mysql.addr(), "127.0.0.1:13306")
            .replace(&format!("http://{}", self.influx.addr()), &influx_url());
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the backfill to the end, directly, then checks the copy.
    fn finish_and_verify(&self) {
        let command = backfill_command(&self.direct_job(), "2");
        run_ok(command, &self.dir, "finish", MINUTE);
        self.assert_copied();
    }

    /// verify clean, and one point per row.
    fn assert_copied(&self) {
        assert_verified(&self.direct_job());
        assert_eq!(
            influx_count(&self.table, "sensors", "temperature"),
            self.rows
        );
    }
}

/// SIGTERM drains; a drain that cannot finish (the target froze) ends at the second
/// SIGTERM, at once, with exit 1 and the reason; the next run completes exactly.
#[test]
fn a_second_sigterm_stops_a_drain_the_frozen_target_holds_up() {
    let case = Case::new("fault_sigterm2", 40_000, 2_000, "");
    let mut job = case.spawn(&[]);
    job.wait_for_a_finished_split(&case.state_file());
    case.influx.set(Mode::Hold);
    job.signal("TERM");
    job.wait_for_stderr("stop requested (SIGTERM)");
    assert!(job.running(), "the drain is held up");
    job.signal("TERM");
    let code = job.exit_within(Duration::from_secs(5));
    let stderr = job.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        last_line(&stderr).starts_with("error: stopped at once by a second SIGTERM;"),
        "{stderr}"
    );
    case.influx.set(Mode::Pass);
    case.finish_and_verify();
}

/// A drain that takes longer than `--stop-timeout` ends the job with exit 1 and says so.
#[test]
fn a_drain_longer_than_the_stop_timeout_ends_the_job() {
    let case = Case::new("fault_stoptimeout", 40_000, 2_000, "");
    let mut job = case.spawn(&["--stop-timeout", "2s"]);
    job.wait_for_a_finished_split(&case.state_file());
    case.influx.set(Mode::Hold);
    let sent = Instant::now();
    job.signal("TERM");
    let code = job.exit_within(Duration::from_secs(10));
    let stderr = job.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "not before the timeout"
    );
    assert!(
        last_line(&stderr).contains("did not finish writing what it read within 2 s of SIGTERM"),
        "{stderr}"
    );
    case.influx.set(Mode::Pass);
    case.finish_and_verify();
}

/// Rows of the tests below, read in small chunks through a delaying proxy: some seconds.
const ROWS: u64 = 4_000;
const CHUNK_ROWS: u64 = 100;
const SLOW: Duration = Duration::from_millis(150);

/// Both links slow (every chunk of bytes, both ways, 20 ms late) for a whole run.
#[test]
fn a_backfill_over_slow_links_to_both_servers_completes() {
    let case = Case::new("fault_slow", ROWS, CHUNK_ROWS, "");
    case.mysql.set(Mode::Delay(Duration::from_millis(20)));
    case.influx.set(Mode::Delay(Duration::from_millis(20)));
    let mut job = case.spawn(&[]);
    let code = job.exit_within(Duration::from_secs(120));
    assert_eq!(code, 0, "{}", job.stderr());
    assert_eq!(job.summary_u64("points_written"), ROWS);
    case.assert_copied();
}

/// Cuts `proxy`'s connections three times while the backfill `job` of `case` runs, each
/// time after one more split was finished: every open connection is closed and new ones
/// are refused for a second, then the link is `after` again.
fn cut_three_times(case: &Case, job: &mut Background, proxy: &TcpProxy, after: Mode) {
    for _ in 0..3 {
        let done = finished_splits(&case.state_file());
        job.wait_for_finished_splits(&case.state_file(), done + 1);
        proxy.set(Mode::Cut);
        job.assert_runs_through(Duration::from_secs(1));
        proxy.set(after);
    }
}

/// MariaDB's connections cut three times mid-backfill: the chunks being read are read
/// again (on a new connection), the job completes.
#[test]
fn a_backfill_rides_out_its_mariadb_connections_cut() {
    let case = Case::new("fault_cut_mysql", ROWS, CHUNK_ROWS, "");
    let mut job = case.spawn(&[]);
    case.slow_down_once_planned(&mut job);
    job.wait_for_a_finished_split(&case.state_file());
    cut_three_times(&case, &mut job, &case.mysql, Mode::Delay(SLOW));
    case.mysql.set(Mode::Pass);
    let code = job.exit_within(MINUTE);
    let stderr = job.stderr();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        (stderr.contains("reading chunk ") && stderr.contains("; retrying")),
        "{stderr}"
    );
    case.assert_copied();
}

/// InfluxDB's connections cut three times mid-backfill: the writes are retried, the job
/// completes.
#[test]
fn a_backfill_rides_out_its_influxdb_connections_cut() {
    let case = Case::new("fault_cut_influx", ROWS, CHUNK_ROWS, "");
    let mut job = case.spawn(&[]);
    case.slow_down_once_planned(&mut job);
    job.wait_for_a_finished_split(&case.state_file());
    cut_three_times(&case, &mut job, &case.influx, Mode::Pass);
    let code = job.exit_within(MINUTE);
    let stderr = job.stderr();
    assert_eq!(code, 0, "{stderr}");
    assert!(job.summary_u64("retries") >= 1, "{}", job.stdout());
    case.assert_copied();
}

/// `job` as a backfill on two processes of one worker each, started as
/// cluster/start-local.sh starts them but each watched on its own.
fn spawn_two_processes(case: &Case, job: &Path, name: &str) -> Vec<Background> {
    let ports = free_ports(2);
    let hostfile = case.dir.join("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap();
    (0..2)
        .map(|i| {
            let mut command = backfill_command(job, "1");
            command.args(["--processes", "2", "--process", &i.to_string()]);
            command.args(["--hostfile", hostfile.to_str().unwrap()]);
            Background::spawn(command, &case.dir, &format!("{name}-{i}"))
        })
        .collect()
}

/// SIGKILL one process of a 2-process backfill: the other ends within seconds, exit 1,
/// saying which process it lost (no panic, no backtrace); both started again complete.
fn kill_one_process_of_two(killed: usize) {
    let case = Case::new(&format!("fault_kill_p{killed}"), ROWS, CHUNK_ROWS, "");
    let mut processes = spawn_two_processes(&case, &case.job, "process");
    case.slow_down_once_planned(&mut processes[0]);
    processes[0].wait_for_a_finished_split(&case.state_file());
    assert!(processes[1].running(), "{}", processes[1].stderr());
    processes[killed].signal("KILL");
    let survivor = &mut processes[1 - killed];
    let code = survivor.exit_within(Duration::from_secs(15));
    let stderr = survivor.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        last_line(&stderr).starts_with(&format!(
            "error: lost the connection to process {killed} of the cluster"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    for mut process in spawn_two_processes(&case, &case.direct_job(), "again") {
        let code = process.exit_within(MINUTE);
        assert_eq!(code, 0, "{}", process.stderr());
    }
    case.assert_copied();
}

#[test]
fn killing_process_0_of_a_cluster_ends_process_1_with_the_reason() {
    kill_one_process_of_two(0);
}

#[test]
fn killing_process_1_of_a_cluster_ends_process_0_with_the_reason() {
    kill_one_process_of_two(1);
}

/// A small tmpfs mounted for a test, unmounted when dropped (pass or panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("this test mounts a tmpfs and cannot run `mount`: {e}"));
        assert!(
            out.status.success(),
            "this test mounts a tmpfs (as root) and could not: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The state directory fills mid-backfill: the checkpoint cannot be written, which is
/// fatal (a restart would meet the same full disk): exit 1 naming the path and the
/// cause, no temp file left behind; with room again, the next run completes.
#[test]
fn a_full_state_directory_stops_the_job_with_the_path_and_the_cause() {
    let case = Case::new("fault_full_state", ROWS, CHUNK_ROWS, "");
    // Not under the scratch directory: the test's MySQL password, `tsmig`, is masked in
    // every message, and would be in that path.
    let state = std::env::temp_dir().join(format!("{}-state", case.table));
    let tmpfs = Tmpfs::mount(&state, "256k");
    case.move_state_to(&state);
    let mut job = case.spawn(&[]);
    job.wait_until("the plan to be recorded", MINUTE, || {
        state.join("backfill.json").exists()
    });
    case.mysql.set(Mode::Delay(SLOW));
    job.wait_for_a_finished_split(&state.join("backfill.json"));
    let filler = tmpfs.fill();
    let code = job.exit_within(Duration::from_secs(30));
    let stderr = job.stderr();
    assert_eq!(code, 1, "{stderr}");
    let reason = last_line(&stderr);
    assert!(
        reason.starts_with(&format!(
            "error: cannot write checkpoint in {}: No space left on device",
            state.display()
        )),
        "{stderr}"
    );
    assert_eq!(job.summary_u64("restarts"), 0, "{}", job.stdout());
    // It failed; nobody stopped it.
    assert!(!job.stdout().contains("stopped=true"), "{}", job.stdout());
    let mut left: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["backfill.json", "filler", "state.lock"],
        "no temp file is left"
    );

    std::fs::remove_file(filler).unwrap();
    case.mysql.set(Mode::Pass);
    run_ok(backfill_command(&case.job, "2"), &case.dir, "rerun", MINUTE);
    case.assert_copied();
}
