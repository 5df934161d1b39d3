//! The IoTDB stand-in of the tests (tests/standins/iotdb/) as a process of its own, for
//! bench/harness.py's IoTDB sink benchmark: a release tsmig-job writes into it over TCP as
//! it would into IoTDB, and the harness reads the calls it answered. It is no IoTDB, and
//! no speed reference for one (BENCHMARKS.md says so beside the figures).
//!
//! `iotdb_standin --serve` starts it on 127.0.0.1 and a free port, prints `port=N`, then
//! answers one line on stdout for each line on stdin: `calls` → the Thrift calls answered
//! so far by method, as JSON; `points` → how many points it holds. It stops at the end of
//! stdin. Run any other way (`cargo bench`, `cargo test --all-targets`) it does nothing.

#[path = "../tests/standins/iotdb/mod.rs"]
mod iotdb_standin;

use std::io::{BufRead, Write};

fn main() {
    if !std::env::args().any(|a| a == "--serve") {
        println!(
            "iotdb_standin: the IoTDB stand-in for bench/harness.py --iotdb (run with --serve)"
        );
        return;
    }
    let standin = iotdb_standin::IotdbStandIn::start();
    let mut out = std::io::stdout().lock();
    writeln!(out, "port={}", standin.port()).expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let answer = match line.expect("stdin").trim() {
            "calls" => {
                let calls: Vec<String> = standin
                    .all_calls()
                    .iter()
                    .map(|(method, n)| format!("\"{method}\": {n}"))
                    .collect();
                format!("{{{}}}", calls.join(", "))
            }
            "points" => standin
                .all_points()
                .values()
                .map(Vec::len)
                .sum::<usize>()
                .to_string(),
            other => format!("unknown command `{other}` (calls, points)"),
        };
        writeln!(out, "{answer}").expect("stdout");
        out.flush().expect("stdout");
    }
}
