//! One run owns a job's state. A second copy of a running backfill is refused at once,
//! naming the holder, and the first finishes exactly as if alone; a run killed with
//! SIGKILL leaves the lock to the next run, which takes over and resumes.

mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The holder recorded in a state directory's lock file (`None` when it is empty).
fn holder(state: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(state.join("state.lock")).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// The one `error: ...` line of a run's stderr.
fn error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected in {text:?}");
    errors[0].to_string()
}

#[test]
fn a_second_copy_is_refused_at_once_and_a_killed_holders_lock_is_taken_over() {
    let rows = 100_000;
    // Slow enough (small chunks, one request in flight) to be running for a while.
    let (_cleanup, _table, db, dir, job) = slow_sensor_run("lock", rows);
    let state = dir.join("state");

    let first = backfill_command(&job, "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first run to record its plan", || {
        state.join("backfill.json").exists()
    });
    let asked = Instant::now();
    let second = backfill_command(&job, "2").output().unwrap();
    let took = asked.elapsed();
    let mut first = first;
    let first_still_running = first.try_wait().unwrap().is_none();

    assert_eq!(
        second.status.code(),
        Some(1),
        "the second copy must be refused; it ran: {}",
        String::from_utf8_lossy(&second.stdout)
    );
    let line = error_line(&second.stderr);
    assert!(
        line.contains(&format!(
            "is in use by another run: pid {} on host ",
            first.id()
        )),
        "{line}\nthe second copy's stdout: {}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert!(
        line.contains(", started 20") && line.contains("backfill)"),
        "{line}"
    );
    assert!(took < Duration::from_secs(10), "refused after {took:?}");
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("summary:"),
        "the refused run read nothing"
    );
    assert!(
        first_still_running,
        "the first run had ended: the two did not overlap"
    );
    assert_eq!(
        holder(&state).unwrap()["pid"].as_u64(),
        Some(first.id() as u64)
    );

    // The first run finishes exactly as if it had been alone.
    let out = first.wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), rows);
    assert_eq!(summary_u64(&out.stdout, "points_written"), rows);
    assert_eq!(influx_count(&db, "sensors", "temperature"), rows);
    let (_, pending) = unfinished_splits(&state.join("backfill.json"));
    assert!(pending.is_empty());
    assert_eq!(holder(&state), None, "a clean exit releases the lock");

    // A holder killed outright leaves its name in the file; the next run takes over.
    std::fs::remove_file(state.join("backfill.json")).unwrap();
    let (_, pending) = kill_mid_run(backfill_command(&job, "2"), &state.join("backfill.json"));
    let killed = holder(&state).expect("a killed run leaves its name behind");
    let killed_pid = killed["pid"].as_u64().unwrap();
    let out = backfill_command(&job, "2").output().unwrap();
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "its last holder, pid {killed_pid} on host {}",
            killed["host"].as_str().unwrap()
        )) && stderr.contains("(that process is gone), ended without releasing it"),
        "{stderr}"
    );
    let read = summary_u64(&out.stdout, "rows_read");
    assert!(read > 0 && read < rows, "resumed, not restarted: {read}");
    assert!(!pending.is_empty());
    assert_eq!(influx_count(&db, "sensors", "temperature"), rows);
    assert_eq!(holder(&state), None);
    std::fs::remove_dir_all(&dir).unwrap();
}
