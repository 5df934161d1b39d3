//! InfluxDB 1.x → InfluxDB backfills against the real InfluxDB 1.6 that scripts/test.sh
//! starts: a source database with several measurements, every field type, awkward names
//! and nanosecond times is copied into another database and compared point by point; a
//! logging proxy between tsmig and the source sees every query and proves none answered
//! more than the bound, nor ran beside another past `concurrency`; server errors, cut
//! answers and stalls are retried; a killed job resumes and ends with every point once.

mod common;
#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use common::*;
use iotdb_standin::{IotdbStandIn, StandInDataType as T, StandInValue as V};
use proxy::{Fault, QueryProxy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// 2026-01-01T00:00:00Z in ns.
const BASE: i64 = 1_767_225_600_000_000_000;
const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * SECOND;

/// Writes the source database: `weather` (every field type, awkward tags, missing tags,
/// a point in 1969), `air quality` (a name with a space, a key with a dot) and `counter`
/// (3,800 points: 20 series over 3 hours, a burst of 300 series at one instant and one
/// series with 500 points within a second). Returns the number of points written.
fn seed(db: &str) -> usize {
    fresh_influx_db(db);
    let mut lines: Vec<String> = vec![
        // Floats that look like integers (20, 1e21), an integer at each end of i64, a
        // string with quotes and a backslash, a field key with a space, tags with a comma,
        // a space, an equals sign and a non-ASCII letter.
        format!(
            r#"weather,location=Z\,ürich\ 1,station=s\=1 temp=20,reading=20i,ok=true,note="say \"hi\" \\ bye",wind\ speed=3.5 {}"#,
            BASE + 1
        ),
        format!(
            "weather,location=Z\\,ürich\\ 1 temp=0.1,reading=-9223372036854775808i {}",
            BASE + HOUR + 123
        ),
        format!(
            "weather,location=plain,station=s2 reading=9223372036854775807i,ok=false {}",
            BASE + 2
        ),
        format!(
            r#"weather,location=plain,station=s2 temp=1e21,note="" {}"#,
            BASE + 2 * HOUR + 999
        ),
        format!(
            "weather,station=s3 temp=-0.0000001,wind\\ speed=5e-324 {}",
            BASE + 5
        ),
        format!(
            "weather,location=plain,station=s2 temp=0.30000000000000004,reading=0i {}",
            BASE + 7
        ),
        "weather,location=old temp=1.5 -3600000000001".to_string(),
    ];
    for i in 0..50i64 {
        lines.push(format!(
            "air\\ quality,zone=n\\ {} pm2.5={}i,co2={} {}",
            i % 3,
            i * 7,
            400.0 + i as f64 / 8.0,
            BASE + i * 61 * SECOND + i
        ));
    }
    for host in 0..20i64 {
        let dc = if host % 2 == 0 {
            format!(",dc=dc{}", host % 4)
        } else {
            String::new()
        };
        for i in 0..150i64 {
            let ratio = if i % 3 == 0 {
                format!(",ratio={}", i as f64 / 3.0)
            } else {
                String::new()
            };
            lines.push(format!(
                "counter,host=h{host:02}{dc} value={}i{ratio} {}",
                host * 1_000 + i,
                BASE + i * 72 * SECOND + host * 1_001
            ));
        }
    }
    for b in 0..300i64 {
        lines.push(format!(
            "counter,host=b{b:03} value={b}i {}",
            BASE + 4 * HOUR
        ));
    }
    for i in 0..500i64 {
        lines.push(format!(
            "counter,host=fast value={i}i {}",
            BASE + 5 * HOUR + i * 1_000_000 + 17
        ));
    }
    for chunk in lines.chunks(1_000) {
        influx_write(db, &chunk.join("\n"), "ns");
    }
    lines.len()
}

const MEASUREMENTS: [&str; 3] = ["air quality", "counter", "weather"];

/// `SHOW FIELD KEYS` of a measurement: (key, type), sorted.
fn field_types(db: &str, measurement: &str) -> Vec<(String, String)> {
    let json = influx_query(db, &format!("SHOW FIELD KEYS FROM \"{measurement}\""), "ns");
    let mut out: Vec<(String, String)> = json["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
        .collect();
    out.sort();
    out
}

/// Asserts `target` holds exactly the points of `source`: the same points (time to the ns,
/// tags, every field value to the bit) and the same field types. Returns the point count.
fn assert_same_points(source: &str, target: &str) -> usize {
    let mut total = 0;
    for m in MEASUREMENTS {
        let want = influx_dump(source, m, "ns");
        let got = influx_dump(target, m, "ns");
        assert_eq!(got.len(), want.len(), "{m}: point count");
        assert!(got == want, "{m}: the copied points differ");
        assert_eq!(
            field_types(target, m),
            field_types(source, m),
            "{m}: field types"
        );
        total += got.len();
    }
    total
}

/// A job copying every measurement of `source` (read through `source_url`) into `target`.
fn job_file(dir: &Path, source_url: &str, source: &str, target: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"name: {target}
source:
  type: influxdb
  url: {source_url}
  database: {source}
{extra}
sink:
  type: influxdb
  url: {influx}
  database: {target}
  batch_size: 500
mappings: auto
checkpoint:
  interval: 100ms
  store: file:{state}
"#,
        influx = influx_url(),
        state = dir.join("state").display(),
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A seeded source database, the name of a target database and a scratch directory;
/// both databases are dropped when the test ends.
struct Copy {
    source: String,
    target: String,
    /// Points written to the source.
    written: usize,
    dir: PathBuf,
    _cleanup: Cleanup,
}

impl Copy {
    fn new(name: &str) -> Copy {
        let source = unique(name);
        let target = unique(&format!("{name}to"));
        let cleanup = Cleanup::default().database(&source).database(&target);
        let written = seed(&source);
        let dir = scratch(&target);
        Copy {
            source,
            target,
            written,
            dir,
            _cleanup: cleanup,
        }
    }

    /// The job copying source to target, reading through `source_url`, with `extra`
    /// source keys.
    fn job(&self, source_url: &str, extra: &str) -> PathBuf {
        job_file(&self.dir, source_url, &self.source, &self.target, extra)
    }

    /// Asserts the target holds exactly the source's points.
    fn assert_copied(&self) {
        assert_eq!(assert_same_points(&self.source, &self.target), self.written);
    }
}

fn backfill(job: &Path, workers: &str) -> std::process::Output {
    backfill_command(job, workers).output().unwrap()
}

#[test]
fn every_point_is_copied_exactly_and_no_query_answers_more_than_the_bound() {
    let source = unique("i1src");
    let one = unique("i1one");
    let two = unique("i1two");
    let _cleanup = Cleanup::default()
        .database(&source)
        .database(&one)
        .database(&two);
    let written = seed(&source);
    let proxy = QueryProxy::start(&influx_url());

    for (target, workers) in [(&one, "1"), (&two, "2")] {
        let dir = scratch(target);
        let job = job_file(
            &dir,
            &proxy.url(),
            &source,
            target,
            "  max_points_per_query: 200\n  chunk_size: 50\n  concurrency: 1",
        );
        let before = proxy.log().len();
        let out = backfill(&job, workers);
        assert_ok(&out);
        // Splits are disjoint and cover everything: their reads answer each point once.
        let read: u64 = proxy.log()[before..]
            .iter()
            .filter(|q| q.is_read())
            .map(|q| q.rows)
            .sum();
        assert_eq!(read, written as u64, "{workers} workers");
        assert_eq!(summary_u64(&out.stdout, "points_written"), written as u64);
        assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 0);
        assert_eq!(
            assert_same_points(&source, target),
            written,
            "{workers} workers"
        );

        let (code, report) = verify(&job, &[]);
        assert_eq!(code, 0, "{report}");
        assert!(
            report_line(&report).contains(" 0 missing in target, 0 extra in target, 0 differing"),
            "{report}"
        );
    }

    let log = proxy.log();
    let reads: Vec<_> = log.iter().filter(|q| q.is_read()).collect();
    assert!(
        reads.len() > 20,
        "the bound must have cut the data into many reads"
    );
    for q in &log {
        assert!(q.rows <= 200, "{} rows answered to `{}`", q.rows, q.query);
        assert_eq!(q.status, 200, "`{}`", q.query);
    }
    // Every read streamed in chunks of the configured size.
    assert!(reads.iter().all(|q| q.chunk_size == Some(50)));
    // Divided by series where a second held more than the bound: the burst and the fast series.
    assert!(reads.iter().any(|q| q.query.contains(r#""host" = 'b000'"#)));
    assert!(reads.iter().any(|q| q.query.contains(r#""host" = 'fast'"#)));
    // concurrency: 1 holds across the two workers of one process.
    assert_eq!(proxy.max_in_flight(), 1);
}

#[test]
fn two_processes_copy_the_same_points_each_reading_a_share() {
    let copy = Copy::new("i1proc");
    let job = copy.job(&influx_url(), "  max_points_per_query: 500");
    let logs = run_two_processes(
        &copy.dir,
        &[
            "-c",
            "backfill",
            "--config",
            job.to_str().unwrap(),
            "--workers",
            "1",
            "--progress",
            "off",
        ],
        &[],
    );
    let read: Vec<u64> = logs
        .iter()
        .map(|l| summary_u64(l.as_bytes(), "rows_read"))
        .collect();
    assert_eq!(read.iter().sum::<u64>(), copy.written as u64, "{logs:?}");
    assert!(read.iter().all(|&r| r > 0), "{logs:?}");
    copy.assert_copied();
}

#[test]
fn the_shipped_job_copies_a_database_as_it_is() {
    let copy = Copy::new("i1ship");
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/influxdb1-to-influxdb.yaml");
    let env = [
        ("INFLUX_SOURCE_DB", copy.source.clone()),
        ("INFLUX_TARGET_DB", copy.target.clone()),
        ("INFLUX_SOURCE_URL", influx_url()),
        ("INFLUX_TARGET_URL", influx_url()),
    ];
    let out = backfill_command(&job, "2")
        .current_dir(&copy.dir)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert_ok(&out);
    copy.assert_copied();
}

#[test]
fn server_errors_cut_answers_and_stalls_are_retried_and_counted() {
    let copy = Copy::new("i1flt");
    let written = copy.written;
    let proxy = QueryProxy::start(&influx_url());
    proxy.inject(&[
        Fault::Status(503),
        Fault::Cut,
        Fault::Stall(Duration::from_secs(3)),
        Fault::Status(500),
        Fault::Cut,
    ]);
    let job = copy.job(
        &proxy.url(),
        "  retention_policy: autogen\n  username: reader\n  password: ${INFLUX_SRC_PASSWORD}\n  max_points_per_query: 2000\n  chunk_size: 20\n  timeout: 1s\n  initial_backoff: 10ms\n  max_backoff: 50ms",
    );
    let out = backfill_command(&job, "2")
        .env("INFLUX_SRC_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_ok(&out);
    copy.assert_copied();
    let log = proxy.log_when_idle();
    // Every query carried the credentials (basic auth of reader:s3cret); no output shows them.
    assert!(log
        .iter()
        .all(|q| q.authorization.as_deref() == Some("Basic cmVhZGVyOnMzY3JldA==")));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!output.contains("s3cret"));
    assert_eq!(
        log.iter().filter(|q| q.fault.is_some()).count(),
        5,
        "every fault was met"
    );
    // Rows sent before an answer was cut are sent again: counted, not hidden.
    let cut_rows: u64 = log
        .iter()
        .filter(|q| q.fault == Some(Fault::Cut))
        .map(|q| q.rows_before_cut)
        .sum();
    assert!(cut_rows > 0);
    assert_eq!(
        summary_u64(&out.stdout, "rows_read"),
        written as u64 + cut_rows
    );
    assert_eq!(
        summary_u64(&out.stdout, "points_written"),
        written as u64 + cut_rows
    );
}

#[test]
fn killed_mid_run_then_restarted_every_point_once() {
    let copy = Copy::new("i1kill");
    // Slow: 10-minute buckets, 1,000 rows a second.
    let job = copy.job(
        &influx_url(),
        "  bucket: 10m\n  max_points_per_query: 300\n  chunk_size: 25\n  rate_limit: 1000",
    );
    let state_file = copy.dir.join("state/backfill.json");
    let (_plan, pending) = kill_mid_run(backfill_command(&job, "2"), &state_file);
    // The points of the unfinished splits, counted on the source by the split's own bounds.
    let tables = ["air quality", "counter", "weather"];
    let mut rows_pending = 0usize;
    for s in &pending {
        let m = tables[s["table"].as_u64().unwrap() as usize];
        let mut q = format!(
            "SELECT * FROM \"{m}\" WHERE time >= {} AND time < {}",
            s["start"].as_i64().unwrap(),
            s["end"].as_i64().unwrap()
        );
        let partition = s["partition"].as_str().unwrap();
        if !partition.is_empty() {
            q.push_str(&format!(" AND ({partition})"));
        }
        let json = influx_query(&copy.source, &format!("{q} GROUP BY *"), "ns");
        rows_pending += json["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum::<usize>();
    }

    let out = backfill(&job, "2");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), rows_pending as u64);
    assert!(rows_pending < copy.written);
    copy.assert_copied();
}

#[test]
fn the_shipped_iotdb_job_makes_tags_path_levels_and_fields_typed_series() {
    // Against the IoTDB stand-in (tests/standins/iotdb/), not IoTDB itself.
    let source = unique("i1iot");
    let _cleanup = Cleanup::default().database(&source);
    fresh_influx_db(&source);
    let mut lines = Vec::new();
    let mut want: BTreeMap<String, Vec<(i64, V)>> = BTreeMap::new();
    for (h, host) in ["web-1", "db2"].iter().enumerate() {
        for cpu in ["cpu0", "cpu-total"] {
            for i in 0..40i64 {
                let t = BASE + i * 90 * SECOND + h as i64 * 7 + 1;
                // 20 and 20.5 alike stay floats (DOUBLE).
                let user = (i % 3) as f64 * 10.0 + if i % 2 == 0 { 0.5 } else { 0.0 };
                // usage_system on every other point only: absent values are no points.
                let system = if i % 2 == 0 {
                    format!(",usage_system={}", i * 3)
                } else {
                    String::new()
                };
                lines.push(format!(
                    "cpu,host={host},cpu={cpu} usage_user={user},usage_idle={}{system} {t}",
                    100.0 - user
                ));
                let device = format!("root.telegraf.cpu.`{host}`.`{cpu}`")
                    .replace("`db2`", "db2")
                    .replace("`cpu0`", "cpu0");
                want.entry(format!("{device}.usage_user"))
                    .or_default()
                    .push((t, V::Double(user)));
                want.entry(format!("{device}.usage_idle"))
                    .or_default()
                    .push((t, V::Double(100.0 - user)));
                if i % 2 == 0 {
                    want.entry(format!("{device}.usage_system"))
                        .or_default()
                        .push((t, V::Double((i * 3) as f64)));
                }
            }
        }
        for i in 0..30i64 {
            let t = BASE + i * 60 * SECOND + h as i64;
            let used = 1i64 << (33 + i % 5);
            lines.push(format!(
                r#"mem,host={host} used={used}i,available_percent={}.25,low={},state="ok {i}" {t}"#,
                i,
                i % 4 == 0
            ));
            let device = format!("root.telegraf.mem.`{host}`").replace("`db2`", "db2");
            want.entry(format!("{device}.used"))
                .or_default()
                .push((t, V::Int64(used)));
            want.entry(format!("{device}.available_percent"))
                .or_default()
                .push((t, V::Double(i as f64 + 0.25)));
            want.entry(format!("{device}.low"))
                .or_default()
                .push((t, V::Boolean(i % 4 == 0)));
            want.entry(format!("{device}.state"))
                .or_default()
                .push((t, V::Text(format!("ok {i}"))));
        }
    }
    // No `cpu` tag: its path cannot be made.
    lines.push(format!("cpu,host=db2 usage_user=1 {}", BASE + 3));
    influx_write(&source, &lines.join("\n"), "ns");
    for points in want.values_mut() {
        points.sort_by_key(|p| p.0);
    }

    let iotdb = IotdbStandIn::start();
    let dir = scratch(&format!("{source}-iot"));
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/influxdb1-to-iotdb.yaml");
    let out = backfill_command(&job, "2")
        .current_dir(&dir)
        .env("INFLUX_SOURCE_DB", &source)
        .env("INFLUX_SOURCE_URL", influx_url())
        .env("IOTDB_PORT", iotdb.port().to_string())
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        summary_u64(&out.stdout, "points_written"),
        2 * 2 * 40 + 2 * 30
    );
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 1);
    let dead =
        std::fs::read_to_string(dir.join("state/influxdb1-to-iotdb/dead-letter.jsonl")).unwrap();
    assert!(dead.contains("path column `cpu` is NULL"), "{dead}");

    assert_eq!(iotdb.databases(), vec!["root.telegraf".to_string()]);
    assert!(
        iotdb.all_points() == want,
        "the stored points differ from the source"
    );
    let types: BTreeMap<String, T> = iotdb
        .series()
        .into_iter()
        .filter(|s| {
            s.path.starts_with("root.telegraf.mem.db2.")
                || s.path.starts_with("root.telegraf.cpu.db2.cpu0.")
        })
        .map(|s| (s.path, s.data_type))
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([
            (
                "root.telegraf.cpu.db2.cpu0.usage_idle".to_string(),
                T::Double
            ),
            (
                "root.telegraf.cpu.db2.cpu0.usage_system".to_string(),
                T::Double
            ),
            (
                "root.telegraf.cpu.db2.cpu0.usage_user".to_string(),
                T::Double
            ),
            (
                "root.telegraf.mem.db2.available_percent".to_string(),
                T::Double
            ),
            ("root.telegraf.mem.db2.low".to_string(), T::Boolean),
            ("root.telegraf.mem.db2.state".to_string(), T::Text),
            ("root.telegraf.mem.db2.used".to_string(), T::Int64),
        ])
    );
}

#[test]
fn job_file_mistakes_are_named() {
    let dir = scratch(&unique("i1bad"));
    let path = dir.join("job.yaml");
    let check = |text: &str, wanted: &str| {
        std::fs::write(&path, text).unwrap();
        let out = run(&["validate", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(wanted), "{stderr} lacks {wanted}");
    };
    let sink = "sink:\n  type: blackhole\n";
    check(
        &format!("name: x\nsource:\n  type: influxdb\n  url: http://127.0.0.1:1\n  database: d\n  chunk: 5\n{sink}"),
        "key `source.chunk`: unknown field",
    );
    check(
        &format!("name: x\nsource:\n  type: influxdb\n  url: http://127.0.0.1:1\n  database: d\n  max_points_per_query: 0\n{sink}"),
        "key `source.max_points_per_query`: must be at least 1",
    );
    check(
        &format!("name: x\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables: [{{name: t}}]\n{sink}mappings: auto\n"),
        "key `mappings`: a job needs at least one mapping",
    );
    // A database or measurement that is not there is named with its key, at once.
    std::fs::write(
        &path,
        format!(
            "name: x\nsource:\n  type: influxdb\n  url: {}\n  database: nosuchdb_i1\n{sink}",
            influx_url()
        ),
    )
    .unwrap();
    let out = run(&["plan", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("key `source.database`: database `nosuchdb_i1` does not exist"),
        "{stderr}"
    );
    let db = unique("i1none");
    let _cleanup = Cleanup::default().database(&db);
    fresh_influx_db(&db);
    std::fs::write(
        &path,
        format!("name: x\nsource:\n  type: influxdb\n  url: {}\n  database: {db}\n  measurements: [nothere]\n{sink}", influx_url()),
    )
    .unwrap();
    let out = run(&["plan", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("key `source.measurements[0]`: measurement `nothere` has no fields"),
        "{stderr}"
    );

    // A field that is an integer in one shard (2020) and a float in another (2026).
    influx_write(&db, "mixed f=1i 1577836800000000000", "ns");
    influx_write(&db, &format!("mixed f=1.5 {BASE}"), "ns");
    std::fs::write(
        &path,
        format!(
            "name: x\nsource:\n  type: influxdb\n  url: {}\n  database: {db}\n{sink}",
            influx_url()
        ),
    )
    .unwrap();
    let out = run(&["plan", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("measurement `mixed`: field `f` is stored as float in some shards and as integer in others"),
        "{stderr}"
    );
}

/// A logging HTTP proxy in front of InfluxDB: it sees every query tsmig sends, counts the
/// rows of every answer, tracks how many queries are in flight at once, and can inject
/// faults into the reads (`SELECT <fields> ... GROUP BY *`) one after another.
mod proxy {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Fault {
        /// Answer with this HTTP status without asking InfluxDB.
        Status(u16),
        /// Send the first JSON line of the answer, then hang up mid-answer.
        Cut,
        /// Say nothing for this long, then answer.
        Stall(Duration),
    }

    #[derive(Debug, Clone)]
    pub struct Logged {
        pub query: String,
        /// The request's Authorization header.
        pub authorization: Option<String>,
        pub chunk_size: Option<usize>,
        /// Rows in the answer (every `values` row of every series of every chunk).
        pub rows: u64,
        pub status: u16,
        pub fault: Option<Fault>,
        /// Rows sent before a cut.
        pub rows_before_cut: u64,
    }

    impl Logged {
        /// A read of a split (not a planning query).
        pub fn is_read(&self) -> bool {
            self.query.starts_with("SELECT ")
                && self.query.ends_with(" GROUP BY *")
                && !self.query.contains("COUNT(")
        }
    }

    #[derive(Default)]
    struct State {
        log: Mutex<Vec<Logged>>,
        faults: Mutex<Vec<Fault>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    pub struct QueryProxy {
        port: u16,
        state: Arc<State>,
    }

    impl QueryProxy {
        pub fn start(upstream: &str) -> QueryProxy {
            let upstream = upstream
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let state = Arc::new(State::default());
            let shared = state.clone();
            // The accept thread lives as long as the test process; its connections end
            // with each answer.
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (state, upstream) = (shared.clone(), upstream.clone());
                    std::thread::spawn(move || serve(conn, &upstream, &state));
                }
            });
            QueryProxy { port, state }
        }

        pub fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        pub fn log(&self) -> Vec<Logged> {
            self.state.log.lock().unwrap().clone()
        }

        /// Waits until no query is being answered (a stalled one outlives the client's
        /// timeout), then returns the log.
        pub fn log_when_idle(&self) -> Vec<Logged> {
            let started = std::time::Instant::now();
            while self.state.in_flight.load(Ordering::SeqCst) > 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the proxy never went idle"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            self.log()
        }

        pub fn max_in_flight(&self) -> usize {
            self.state.max_in_flight.load(Ordering::SeqCst)
        }

        /// Faults for the next reads, one each, in order.
        pub fn inject(&self, faults: &[Fault]) {
            self.state
                .faults
                .lock()
                .unwrap()
                .extend(faults.iter().cloned());
        }
    }

    /// Reads one request, forwards it (or a fault), answers, and closes.
    fn serve(conn: TcpStream, upstream: &str, state: &State) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let length: usize = head
            .iter()
            .find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();

        let target = head[0].split(' ').nth(1).unwrap_or("/").to_string();
        let mut params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x{target}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        params.extend(
            reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&body)))
                .unwrap()
                .query_pairs()
                .into_owned(),
        );
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let query = param("q").unwrap_or_default();
        let authorization = head.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        });
        let mut logged = Logged {
            query,
            authorization,
            chunk_size: param("chunk_size").and_then(|c| c.parse().ok()),
            rows: 0,
            status: 0,
            fault: None,
            rows_before_cut: 0,
        };
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if logged.is_read() {
            let mut faults = state.faults.lock().unwrap();
            if !faults.is_empty() {
                logged.fault = Some(faults.remove(0));
            }
        }

        let mut client = conn;
        if let Some(Fault::Status(code)) = logged.fault {
            logged.status = code;
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            state.log.lock().unwrap().push(logged);
            let _ = write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        if let Some(Fault::Stall(d)) = &logged.fault {
            std::thread::sleep(*d);
        }

        // Forward with the connection closed after the answer, so the answer ends at EOF.
        let mut up = TcpStream::connect(upstream).unwrap();
        let mut request = format!("{}\r\n", head[0]);
        for h in &head[1..] {
            if !h.to_ascii_lowercase().starts_with("connection:") {
                request.push_str(h);
                request.push_str("\r\n");
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        up.write_all(request.as_bytes()).unwrap();
        up.write_all(&body).unwrap();
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let answer_head = String::from_utf8_lossy(&answer[..split]).to_string();
        let raw = &answer[split + 4..];
        let status_line = answer_head.lines().next().unwrap().to_string();
        logged.status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let chunked = answer_head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let payload = if chunked { dechunk(raw) } else { raw.to_vec() };
        let lines: Vec<&[u8]> = payload
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        logged.rows = lines.iter().map(|l| rows_in(l)).sum();
        state.in_flight.fetch_sub(1, Ordering::SeqCst);

        if logged.fault == Some(Fault::Cut) {
            let first = lines.first().copied().unwrap_or_default();
            logged.rows_before_cut = rows_in(first);
            state.log.lock().unwrap().push(logged);
            let mut part = first.to_vec();
            part.push(b'\n');
            let _ = write!(
                client,
                "{status_line}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
                part.len()
            );
            let _ = client.write_all(&part);
            let _ = client.write_all(b"\r\n");
            let _ = client.flush();
            // Hang up without the closing chunk: the answer is cut.
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
        state.log.lock().unwrap().push(logged);
        let _ = write!(
            client,
            "{status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        );
        let _ = client.write_all(&payload);
    }

    /// The body of a chunked transfer encoding.
    fn dechunk(mut raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
                return out;
            };
            let size_text = String::from_utf8_lossy(&raw[..eol]);
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
            raw = &raw[eol + 2 + size + 2..];
        }
    }

    /// Rows in one JSON answer line.
    fn rows_in(line: &[u8]) -> u64 {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(line) else {
            return 0;
        };
        json["results"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["series"].as_array().cloned().unwrap_or_default())
            .map(|s| s["values"].as_array().map_or(0, |v| v.len() as u64))
            .sum()
    }
}

#[test]
fn follow_copies_points_written_after_the_backfill_and_survives_a_kill() {
    let copy = Copy::new("i1fol");
    let job = copy.job(
        &influx_url(),
        "  bucket: 10m\n  max_points_per_query: 300\n  chunk_size: 25",
    );
    add_follow_section(&job, "300ms", "10s");
    let state = copy.dir.join("state");
    let follow = |extra: &[&str]| {
        let mut c = tsmig();
        c.args(["-c", "backfill+follow", "--config", job.to_str().unwrap()])
            .args(["--workers", "2", "--progress", "off"])
            .args(extra);
        c
    };
    let target_points = || {
        MEASUREMENTS
            .iter()
            .map(|m| influx_dump(&copy.target, m, "ns").len())
            .sum::<usize>()
    };
    let mut child = follow(&[]).spawn().unwrap();
    wait_until("the first round", || {
        follow_state(&state).is_some_and(|s| s["rounds"].as_u64() >= Some(1))
    });
    // Points written after the backfill, and a late one: older than the watermark,
    // within the lateness.
    let now = now_in(1_000_000_000);
    let mut live: Vec<String> = (0..20)
        .map(|i| format!("counter,host=live value={i}i {}", now + i * 1_000_017))
        .collect();
    let watermark = follow_state(&state).unwrap()["watermark"].as_i64().unwrap();
    live.push(format!(
        "weather,location=late temp=7.25 {}",
        watermark - 2 * SECOND
    ));
    influx_write(&copy.source, &live.join("\n"), "ns");
    let mut written = copy.written + live.len();
    wait_until("the live points in the target", || {
        target_points() == written
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Written while the job was down.
    let now = now_in(1_000_000_000);
    let down: Vec<String> = (0..10)
        .map(|i| format!("counter,host=down value={i}i,ratio=0.5 {}", now + i))
        .collect();
    influx_write(&copy.source, &down.join("\n"), "ns");
    written += down.len();
    let out = follow(&["--until-caught-up"]).output().unwrap();
    assert_ok(&out);
    assert_eq!(assert_same_points(&copy.source, &copy.target), written);
    // The restart read the recent points again (the lateness window), not the backfill's:
    // the killed round's rest, a round that finds the new points and one that finds none,
    // each reading at most the recent points.
    let read = summary_u64(&out.stdout, "rows_read");
    assert!(read >= down.len() as u64, "{read}");
    assert!(read <= 3 * (live.len() + down.len()) as u64, "{read}");
    assert!(read < copy.written as u64, "{read}");
    let (code, report) = verify(&job, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report_line(&report).contains(" 0 missing in target, 0 extra in target, 0 differing"),
        "{report}"
    );
}
