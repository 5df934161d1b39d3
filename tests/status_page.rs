//! The status page in a real browser: a backfill runs with `--status-addr`, Debian's
//! chromium (headless, driven by tests/browser/status_page.mjs through playwright-core)
//! shows the API's numbers, and its Stop button drains the job: exit 0, `stopped=true`,
//! the finished splits checkpointed, and the next run copies the rest, every row once.
//!
//! Needs `/usr/bin/chromium` (or `TSMIG_CHROMIUM`), `node`, and `npm ci` done in
//! tests/browser (or `TSMIG_BROWSER_DIR`); scripts/test.sh installs all three.
//! `TSMIG_UPDATE_SCREENSHOT=1` copies the page's screenshot to docs/status-page.png.

mod common;

use common::jobs::{finished_splits, run_ok, Background};
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Rows enough that the job, held back as below, is still copying them long after the
/// browser has read the page and pressed Stop (about 12 s in on an idle machine).
const ROWS: u64 = 400_000;

/// 20 splits: a few finished by then, most not.
const CHUNK_ROWS: u64 = 20_000;

/// Chromium and the test's node project, or a panic that says how to get them: a browser
/// test that cannot run must not pass.
fn browser() -> (PathBuf, PathBuf) {
    let chromium = PathBuf::from(
        std::env::var("TSMIG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        chromium.exists(),
        "the status page test needs Chromium at {} (Debian's `chromium` package, which \
         scripts/test.sh installs; or set TSMIG_CHROMIUM)",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the status page test needs `node` on PATH (Debian's `nodejs`): {node:?}"
    );
    let dir = std::env::var("TSMIG_BROWSER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser"));
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the status page test needs playwright-core in {}: run `npm ci` there \
         (scripts/test.sh does)",
        dir.join("node_modules").display()
    );
    (chromium, dir)
}

/// `GET path` on loopback: the status code, or `None` while nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Runs the browser script against the page at `port`; its output, and whether it passed.
fn drive_browser(chromium: &Path, dir: &Path, port: u16, screenshot: &Path) -> (bool, String) {
    let mut node = Command::new("node")
        .arg(dir.join("status_page.mjs"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .arg("--screenshot")
        .arg(screenshot)
        .env("TSMIG_CHROMIUM", chromium)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    // The script bounds each of its waits; this bounds the whole, browser start included.
    let deadline = Instant::now() + Duration::from_secs(300);
    while node.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = node.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = node.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The rows of the splits a backfill's state does not record as finished (ids 1..=ROWS).
fn rows_left(state: &serde_json::Value) -> u64 {
    let finished = |id: u64| {
        state["finished"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| (r[0].as_u64().unwrap()..=r[1].as_u64().unwrap()).contains(&id))
    };
    state["plan"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|split| !finished(split["id"].as_u64().unwrap()))
        .map(|split| {
            let start = split["start"].as_u64().unwrap_or(1);
            let end = split["end"].as_u64().unwrap_or(ROWS + 1).min(ROWS + 1);
            end.saturating_sub(start)
        })
        .sum()
}

#[test]
fn the_page_shows_the_apis_numbers_and_its_stop_button_drains_the_job() {
    let (chromium, browser_dir) = browser();
    // Held back whatever the machine: a worker reads on only while it has fewer than 1,000
    // rows not yet durable, and rows become durable an epoch (250 ms) after they are read
    // at the earliest. The source sends 1,024 rows a batch; a split's last batches (the
    // read task's channel, 4 batches) are taken at once. About 5,000 rows/s a worker
    // at most (7,000-10,000 in all here): the job would take 40 s or more.
    let (_cleanup, table, db, dir, job) = sensor_run(
        "status_page",
        ROWS,
        CHUNK_ROWS,
        "",
        "flow:\n  epoch: 250ms\n  max_in_flight_rows: 1000",
    );
    let port = free_ports(1)[0];
    let mut command = backfill_command(&job, "2");
    command.args(["--status-addr", &format!("127.0.0.1:{port}")]);
    let mut running = Background::spawn(command, &dir, "job");
    running.wait_until("GET /ready to answer 200", Duration::from_secs(120), || {
        matches!(http_get(port, "/ready"), Some((200, _)))
    });

    let screenshot = dir.join("status-page.png");
    let (passed, output) = drive_browser(&chromium, &browser_dir, port, &screenshot);
    assert!(
        passed,
        "the browser test failed:\n{output}\njob stderr:\n{}",
        running.stderr()
    );
    let report: serde_json::Value = output
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .map(|json| serde_json::from_str(json).unwrap())
        .unwrap_or_else(|| panic!("no report from the browser:\n{output}"));
    assert!(
        report["stop_answer"]
            .as_str()
            .is_some_and(|a| a.starts_with("POST /api/job/stop: 202")),
        "{report}"
    );
    println!("the browser's report: {report}");
    let shown = &report["shown"];
    assert_eq!(shown["name"], table.as_str(), "{report}");
    assert_eq!(shown["phase"], "backfill", "{report}");
    assert_eq!(shown["tables"][0]["name"], table.as_str(), "{report}");
    if std::env::var("TSMIG_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&screenshot, docs.join("status-page.png")).unwrap();
    }

    // Stop drained the job: it exits 0, says it was stopped, and wrote what it read.
    let code = running.exit_within(Duration::from_secs(120));
    assert_eq!(code, 0, "{}{}", running.stdout(), running.stderr());
    let s = summary(running.stdout().as_bytes());
    println!("the stopped job's summary: {s:?}");
    assert_eq!(s.get("stopped").map(String::as_str), Some("true"), "{s:?}");
    let read: u64 = s["rows_read"].parse().unwrap();
    assert!(read > 0 && read < ROWS, "{s:?}");
    assert_eq!(s["points_written"], s["rows_read"], "{s:?}");
    assert_eq!(influx_count(&db, "sensors", "temperature"), read);

    // Its final checkpoint holds every split the page showed done, and not all of them.
    let state_file = dir.join("state/backfill.json");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let finished = finished_splits(&state_file);
    let planned = state["plan"].as_array().unwrap().len() as u64;
    assert_eq!(shown["splits_total"].as_u64(), Some(planned), "{report}");
    assert_eq!(
        shown["tables"][0]["cells"].as_u64(),
        Some(planned),
        "{report}"
    );
    assert!(
        shown["splits_done"].as_u64().unwrap() <= finished && finished < planned,
        "the page showed {} done; the state records {finished} of {planned}",
        shown["splits_done"]
    );
    assert_eq!(s["splits_done"].parse::<u64>().unwrap(), finished, "{s:?}");

    // The next run, without --fresh and no longer held back, copies the rest: every row once.
    let job = sensor_job(&dir, &table, &db, CHUNK_ROWS, "", "");
    let rest = run_ok(
        backfill_command(&job, "2"),
        &dir,
        "rest",
        Duration::from_secs(300),
    );
    assert_eq!(rest.summary_u64("rows_read"), rows_left(&state));
    assert_eq!(influx_count(&db, "sensors", "temperature"), ROWS);
}
