//! A `tsmig-job` running in the background while a test breaks something around it: its
//! stdout and stderr in files (read while it runs), signals by PID, and every wait with a
//! deadline. Dropped before it exits (a failing test), it is killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Background {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    /// Spawns `command` with its output in `dir/<name>.stdout` and `dir/<name>.stderr`.
    pub fn spawn(mut command: Command, dir: &Path, name: &str) -> Background {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = command
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Background {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -NAME PID`.
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Waits `within` at most for it to exit; its exit code (-1: killed by a signal).
    /// Past the deadline the test fails, showing its stderr.
    pub fn exit_within(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the job did not exit within {within:?}; its stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits `within` at most until `ready` holds while the job runs; fails at once, with
    /// its stderr, if it exits first.
    pub fn wait_until(&mut self, what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !ready() {
            assert!(
                self.running(),
                "the job exited while waiting for {what}:\n{}",
                self.stderr()
            );
            assert!(Instant::now() < deadline, "waited {within:?} for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits a minute at most until its stderr holds `text`.
    pub fn wait_for_stderr(&mut self, text: &str) {
        let path = self.stderr.clone();
        self.wait_until(
            &format!("{text:?} on stderr"),
            Duration::from_secs(60),
            || std::fs::read_to_string(&path).is_ok_and(|s| s.contains(text)),
        );
    }

    /// Waits a minute at most until the backfill's checkpoint records a finished split.
    pub fn wait_for_a_finished_split(&mut self, state_file: &Path) {
        self.wait_for_finished_splits(state_file, 1);
    }

    /// Waits a minute at most until the backfill's checkpoint records `n` finished splits.
    pub fn wait_for_finished_splits(&mut self, state_file: &Path, n: u64) {
        self.wait_until(
            &format!("{n} finished splits in the checkpoint"),
            Duration::from_secs(60),
            || finished_splits(state_file) >= n,
        );
    }

    /// Asserts that it keeps running for `how_long` (a fault it must ride out).
    pub fn assert_runs_through(&mut self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            assert!(
                self.running(),
                "the job ended during the fault:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// A `key=value` of the summary line, once it has exited.
    pub fn summary_u64(&self, key: &str) -> u64 {
        super::summary_u64(self.stdout().as_bytes(), key)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `command` to its end (`within` at most) with its output in `dir/<name>.*`, and
/// asserts that it succeeded.
pub fn run_ok(command: Command, dir: &Path, name: &str, within: Duration) -> Background {
    let mut job = Background::spawn(command, dir, name);
    let code = job.exit_within(within);
    assert_eq!(code, 0, "{name}:\n{}{}", job.stdout(), job.stderr());
    job
}

/// `kill -NAME PID`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The last line of a text (a job's stderr: its reason).
pub fn last_line(text: &str) -> &str {
    text.trim_end().lines().last().unwrap_or("")
}

/// Waits `within` at most until `ready` holds, polling; `what` names it on timeout.
pub fn wait_for(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many splits a backfill's checkpoint records as finished (0 before the first).
pub fn finished_splits(state_file: &Path) -> u64 {
    let Some(state) = std::fs::read_to_string(state_file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return 0;
    };
    state["finished"]
        .as_array()
        .map(|ranges| {
            ranges
                .iter()
                .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
                .sum()
        })
        .unwrap_or(0)
}

/// Asserts that `verify` of `job` (1 and 2 workers) finds the target equal to the source.
pub fn assert_verified(job: &Path) {
    let (code, report) = super::verify(job, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(
        super::report_line(&report)
            .ends_with("0 missing in target, 0 extra in target, 0 differing"),
        "{report}"
    );
}
