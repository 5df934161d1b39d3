//! TDengine → InfluxDB backfills against the TDengine stand-in (tests/standins/tdengine/:
//! TDengine's REST interface, not TDengine) and the real InfluxDB 1.6: a super table's
//! sub-tables, tags and typed columns arrive exactly with 1 and 2 workers and in every
//! precision; plain tables too; transient failures are retried and definite ones fail
//! the job by name; a killed job resumes and writes every point once; verify agrees.

// Both HTTP stand-ins include tests/standins/http.rs as a module of their own.
#![allow(clippy::duplicate_mod)]

mod common;
#[path = "standins/influxdb2/mod.rs"]
mod influxdb2_standin;
#[path = "standins/tdengine/mod.rs"]
mod tdengine_standin;

use common::*;
use influxdb2_standin::{FieldValue, Seen, Store};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tdengine_standin::{
    Fault, Options, Precision, StoredRow, TdType as T, TdValue as V, TdengineStandIn,
};

const USER: &str = "root";
const PASSWORD: &str = "taos-secret";

/// 2026-01-01T00:00:00Z in seconds.
const BASE_SECONDS: i64 = 1_767_225_600;

/// The seed scenario's super table: columns after `ts`, then tags.
const SENSOR_COLUMNS: &[(&str, T)] = &[
    ("ts", T::Timestamp),
    ("temperature", T::Float),
    ("humidity", T::Double),
    ("pressure", T::Int),
    ("status", T::Varchar(32)),
    ("ok", T::Bool),
    ("counter", T::UBigInt),
];
const SENSOR_TAGS: &[(&str, T)] = &[("location", T::Nchar(32)), ("group_id", T::Int)];
const LOCATIONS: &[&str] = &["Zürich", "北京 east", "lab, room=2", "plain"];
const STATUSES: &[&str] = &[
    "ok",
    "warn",
    "überhitzt 🔥",
    "a \"quoted\" value, with comma=and space",
];

/// Creates database `db` with super table `sensors`: `subtables` sub-tables `d000`..,
/// `rows` rows each, one every `step` units of `precision` (plus a sub-unit offset per
/// sub-table, so every digit of the time matters), with NULLs and edge values.
fn seed_sensors(
    td: &TdengineStandIn,
    db: &str,
    precision: Precision,
    subtables: usize,
    rows: i64,
    step: i64,
) {
    td.create_database(db, precision);
    td.create_super_table(db, "sensors", SENSOR_COLUMNS, SENSOR_TAGS);
    let base = BASE_SECONDS * precision.per_second();
    for s in 0..subtables {
        let name = format!("d{s:03}");
        td.create_sub_table(
            db,
            "sensors",
            &name,
            vec![
                V::Text(LOCATIONS[s % LOCATIONS.len()].into()),
                V::Int(s as i64 % 3),
            ],
        );
        for i in 0..rows {
            let nullable = |null: bool, v: V| if null { V::Null } else { v };
            td.insert(
                db,
                &name,
                base + i * step + s as i64 * 7 + i % 3,
                vec![
                    nullable(
                        i % 11 == 3,
                        V::Float((200 + (i * 7 + s as i64) % 150) as f32 / 10.0),
                    ),
                    nullable(i % 13 == 5, V::Double(40.0 + (i % 600) as f64 / 7.0)),
                    V::Int(if i == 0 {
                        i32::MIN as i64
                    } else {
                        990 + i % 40
                    }),
                    nullable(
                        i % 17 == 9,
                        V::Text(STATUSES[(i as usize + s) % STATUSES.len()].into()),
                    ),
                    V::Bool(i % 2 == 0),
                    V::UInt(4_000_000_000 + (i * s as i64) as u64),
                ],
            );
        }
    }
}

/// A field or tag value as InfluxDB's JSON shows it (None: not written).
fn influx_json(v: &V) -> Option<Json> {
    Some(match v {
        V::Null => return None,
        V::Bool(b) => json!(b),
        V::Int(i) => json!(i),
        V::UInt(u) => json!(u),
        // A FLOAT is written as the decimal TDengine shows; InfluxDB keeps that as f64.
        V::Float(f) => json!(ryu::Buffer::new().format_finite(*f).parse::<f64>().unwrap()),
        V::Double(d) => json!(d),
        V::Text(s) | V::Json(s) => json!(s),
        V::Ts(_) => panic!("no timestamps as fields here"),
    })
}

fn tag_text(v: &V) -> Option<String> {
    match v {
        V::Null => None,
        V::Text(s) if s.is_empty() => None,
        V::Text(s) => Some(s.clone()),
        V::Int(i) => Some(i.to_string()),
        V::Json(text) => Some(serde_json::from_str::<Json>(text).unwrap().to_string()),
        other => panic!("no {other:?} tags here"),
    }
}

/// Every stored row as the point tsmig must write: device tag `tbname`, the tags and
/// every non-NULL column as a field, time in ns; sorted like `influx_dump`.
fn expected_points(
    rows: &[StoredRow],
    columns: &[(&str, T)],
    tags: &[(&str, T)],
    precision: Precision,
) -> Vec<Json> {
    let mut points: Vec<Json> = rows
        .iter()
        .map(|r| {
            let mut tag_map = serde_json::Map::new();
            tag_map.insert("tbname".into(), json!(r.tbname));
            for ((name, _), v) in tags.iter().zip(&r.tags) {
                if let Some(t) = tag_text(v) {
                    tag_map.insert(name.to_string(), json!(t));
                }
            }
            let mut fields = serde_json::Map::new();
            for ((name, _), v) in columns[1..].iter().zip(&r.values) {
                if let Some(j) = influx_json(v) {
                    fields.insert(name.to_string(), j);
                }
            }
            json!({"time": r.ts * precision.nanos(), "tags": tag_map, "fields": fields})
        })
        .collect();
    points.sort_by_key(|p| p.to_string());
    normalise(points)
}

/// InfluxDB's JSON writes the float 45.0 as 45: integral numbers compare as integers on
/// both sides (field types are checked apart, with SHOW FIELD KEYS).
fn normalise(points: Vec<Json>) -> Vec<Json> {
    fn walk(v: Json) -> Json {
        match v {
            Json::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15 => json!(f as i64),
                _ => Json::Number(n),
            },
            // Keys sorted: serde_json may keep insertion order.
            Json::Object(m) => {
                let sorted: std::collections::BTreeMap<String, Json> =
                    m.into_iter().map(|(k, v)| (k, walk(v))).collect();
                Json::Object(sorted.into_iter().collect())
            }
            Json::Array(a) => Json::Array(a.into_iter().map(walk).collect()),
            other => other,
        }
    }
    let mut out: Vec<Json> = points.into_iter().map(walk).collect();
    out.sort_by_key(|p| p.to_string());
    out
}

/// What InfluxDB holds in `measurement`, times in ns.
fn dump(db: &str, measurement: &str) -> Vec<Json> {
    normalise(influx_dump(db, measurement, "ns"))
}

/// Field name → InfluxDB type (`float`, `integer`, `string`, `boolean`).
fn field_types(db: &str, measurement: &str) -> Vec<(String, String)> {
    let json = influx_query(db, &format!("SHOW FIELD KEYS FROM \"{measurement}\""), "ns");
    let mut out: Vec<(String, String)> = json["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap().to_string(),
                v[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A job file copying `tables` of TDengine database `td_db` into InfluxDB `db`.
fn job(
    dir: &Path,
    td: &TdengineStandIn,
    td_db: &str,
    tables: &[&str],
    db: &str,
    source_extra: &str,
    mappings: &str,
) -> PathBuf {
    let tables: String = tables
        .iter()
        .map(|t| format!("    - name: {t}\n"))
        .collect();
    let text = format!(
        r#"name: tdengine-test
mode: backfill
source:
  type: tdengine
  url: {url}
  user: {USER}
  password: ${{TDENGINE_PASSWORD}}
  database: {td_db}
  initial_backoff: 10ms
  max_backoff: 50ms
{source_extra}
  tables:
{tables}sink:
  type: influxdb
  version: 1
  url: {influx}
  database: {db}
  precision: ns
  batch_size: 500
mappings:
{mappings}
checkpoint:
  interval: 100ms
  store: file:{state}
dead_letter: {dead}
"#,
        url = td.url(),
        influx = influx_url(),
        state = dir.join("state").display(),
        dead = dir.join("dead.jsonl").display(),
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const SENSOR_MAPPING: &str = "  - table: sensors
    measurement: sensors
    device_field: tbname
    timestamp_field: ts
    tags: [location, group_id]
    fields: [temperature, humidity, pressure, status, ok, counter]";

/// tsmig-job with the TDengine password in the environment, `args` and the job file.
fn td_command(job: &Path, args: &[&str]) -> Command {
    let mut command = tsmig();
    command.env("TDENGINE_PASSWORD", PASSWORD).args(args).args([
        "--config",
        job.to_str().unwrap(),
        "--progress",
        "off",
    ]);
    command
}

/// An empty InfluxDB database named after `prefix` (dropped when the guard goes) and a
/// scratch directory for the job.
fn fresh_target(prefix: &str) -> (Cleanup, String, PathBuf) {
    let db = unique(prefix);
    let cleanup = Cleanup::default().database(&db);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    (cleanup, db, dir)
}

fn backfill(job: &Path, workers: &str) -> Output {
    td_command(job, &["-c", "backfill", "--workers", workers])
        .output()
        .unwrap()
}

/// The sensors' field types in InfluxDB.
fn sensor_field_types() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("counter", "integer"),
        ("humidity", "float"),
        ("ok", "boolean"),
        ("pressure", "integer"),
        ("status", "string"),
        ("temperature", "float"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    v.sort();
    v
}

/// The report line verify prints when all of `rows` (one series per sub-table) match.
fn clean_report(rows: &[StoredRow], precision: Precision) -> String {
    let series: BTreeSet<&str> = rows.iter().map(|r| r.tbname.as_str()).collect();
    let hour = 3_600 * precision.per_second();
    let buckets: BTreeSet<(&str, i64)> = rows
        .iter()
        .map(|r| (r.tbname.as_str(), r.ts.div_euclid(hour)))
        .collect();
    format!(
        "verify: {} series, {} buckets compared: {} matching, 0 missing in target, 0 extra in target, 0 differing",
        series.len(),
        buckets.len(),
        buckets.len()
    )
}

#[test]
fn super_table_arrives_exactly_with_one_and_two_workers_and_verifies() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    let td_db = "power";
    // 6 sub-tables x 400 rows, one every 7 minutes: ~2 days each, 9 windows of 6h.
    seed_sensors(&td, td_db, Precision::Ms, 6, 400, 7 * 60_000);
    let rows = td.rows(td_db, "sensors");
    let expected = expected_points(&rows, SENSOR_COLUMNS, SENSOR_TAGS, Precision::Ms);
    assert_eq!(expected.len(), 2400);

    for workers in ["1", "2"] {
        let (_cleanup, db, dir) = fresh_target("td_workers");
        let job = job(
            &dir,
            &td,
            td_db,
            &["sensors"],
            &db,
            "  window: 6h\n  page_rows: 25",
            SENSOR_MAPPING,
        );
        let out = backfill(&job, workers);
        assert_ok(&out);
        assert_eq!(summary_u64(&out.stdout, "rows_read"), 2400);
        assert_eq!(summary_u64(&out.stdout, "points_written"), 2400);
        assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 0);
        assert_eq!(dump(&db, "sensors"), expected, "{workers} worker(s)");
        assert_eq!(field_types(&db, "sensors"), sensor_field_types());
        // Windows were paged (25 rows a page), each page after the last time read.
        let statements = td.statements();
        assert!(statements
            .iter()
            .any(|s| s.contains("`ts` > ") && s.contains("LIMIT 25")));

        let (code, report) = verify(&job, &[("TDENGINE_PASSWORD", PASSWORD.to_string())]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report_line(&report), clean_report(&rows, Precision::Ms));
    }
}

#[test]
fn microsecond_and_nanosecond_databases_keep_every_digit() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    for (td_db, precision, step) in [
        ("micro", Precision::Us, 1_234_567i64),
        ("nano", Precision::Ns, 987_654_321_123i64),
    ] {
        seed_sensors(&td, td_db, precision, 3, 120, step);
        let rows = td.rows(td_db, "sensors");
        let (_cleanup, db, dir) = fresh_target(td_db);
        let job = job(
            &dir,
            &td,
            td_db,
            &["sensors"],
            &db,
            "  window: 1m\n  page_rows: 50",
            SENSOR_MAPPING,
        );
        let out = backfill(&job, "2");
        assert_ok(&out);
        assert_eq!(summary_u64(&out.stdout, "points_written"), 360);
        let got = dump(&db, "sensors");
        assert_eq!(
            got,
            expected_points(&rows, SENSOR_COLUMNS, SENSOR_TAGS, precision),
            "{td_db}"
        );
        // Not one time is a whole millisecond by accident: the sub-unit digits arrived.
        assert!(got
            .iter()
            .any(|p| p["time"].as_i64().unwrap() % 1_000_000 != 0));
        // The splits' bounds are in the database's precision (the window of 1m).
        let window = 60 * precision.per_second();
        assert!(td.statements().iter().any(|s| s.contains(&format!(
            "`ts` < {}",
            (rows[0].ts.div_euclid(window) + 1) * window
        ))));
    }
}

#[test]
fn plain_table_with_unsigned_bool_nchar_json_and_nulls_arrives_exactly() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    let td_db = "plant";
    td.create_database(td_db, Precision::Ms);
    let columns: &[(&str, T)] = &[
        ("ts", T::Timestamp),
        ("level", T::UTinyInt),
        ("flow", T::UBigInt),
        ("delta", T::SmallInt),
        ("running", T::Bool),
        ("note", T::Nchar(20)),
        ("reading", T::Float),
    ];
    td.create_table(td_db, "boiler", columns);
    let base = BASE_SECONDS * 1000;
    let values: Vec<Vec<V>> = vec![
        vec![
            V::UInt(255),
            V::UInt(i64::MAX as u64),
            V::Int(-32768),
            V::Bool(true),
            V::Text("Grüße, 世界".into()),
            V::Float(21.5),
        ],
        vec![
            V::UInt(0),
            V::UInt(0),
            V::Int(32767),
            V::Bool(false),
            V::Text("=,\\ \"x\"".into()),
            V::Float(-0.1),
        ],
        vec![V::Null, V::Null, V::Null, V::Bool(false), V::Null, V::Null],
        vec![
            V::UInt(7),
            V::UInt(18_446_744_073_709_551_615),
            V::Int(1),
            V::Bool(true),
            V::Text("too big".into()),
            V::Float(3.4028235e38),
        ],
        vec![
            V::UInt(1),
            V::Null,
            V::Null,
            V::Null,
            V::Null,
            V::Float(1e-7),
        ],
    ];
    for (i, v) in values.iter().enumerate() {
        td.insert(td_db, "boiler", base + i as i64 * 1000 + 1, v.clone());
    }
    // A super table whose one tag is JSON (TDengine allows a JSON tag only alone).
    let meter_columns: &[(&str, T)] = &[("ts", T::Timestamp), ("v", T::Double)];
    let meter_tags: &[(&str, T)] = &[("info", T::Json)];
    td.create_super_table(td_db, "meters", meter_columns, meter_tags);
    for (m, info) in [r#"{"site":"a b","floor":2}"#, r#"{"k":[1,"x"]}"#]
        .iter()
        .enumerate()
    {
        let name = format!("m{m}");
        td.create_sub_table(td_db, "meters", &name, vec![V::Json(info.to_string())]);
        for i in 0..3 {
            td.insert(
                td_db,
                &name,
                base + i * 1000,
                vec![V::Double(i as f64 / 3.0)],
            );
        }
    }
    let (_cleanup, db, dir) = fresh_target("td_plain");
    let mapping = "  - table: boiler
    device_field: tbname
    timestamp_field: ts
    fields: [level, flow, delta, running, note, reading]
  - table: meters
    device_field: tbname
    timestamp_field: ts
    tags: [info]
    fields: [v]";
    let job = job(&dir, &td, td_db, &["boiler", "meters"], &db, "", mapping);
    let out = backfill(&job, "1");
    assert_ok(&out);
    // InfluxDB 1.x has no unsigned integers: a flow above 2^63-1 cannot be written and
    // its point is dead-lettered, not wrapped around.
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 5 + 6);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 1);
    // The JSON tag is its JSON text, compact.
    let meters = dump(&db, "meters");
    assert_eq!(
        meters,
        expected_points(
            &td.rows(td_db, "meters"),
            meter_columns,
            meter_tags,
            Precision::Ms
        )
    );
    let m0 = meters.iter().find(|p| p["tags"]["tbname"] == "m0").unwrap();
    let info = m0["tags"]["info"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Json>(info).unwrap(),
        json!({"site": "a b", "floor": 2})
    );
    let mut rows = td.rows(td_db, "boiler");
    rows.remove(3);
    assert_eq!(
        dump(&db, "boiler"),
        expected_points(&rows, columns, &[], Precision::Ms)
    );
    let dead = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    assert!(dead.contains("18446744073709551615"), "{dead}");
    let types = field_types(&db, "boiler");
    assert_eq!(
        types,
        [
            ("delta", "integer"),
            ("flow", "integer"),
            ("level", "integer"),
            ("note", "string"),
            ("reading", "float"),
            ("running", "boolean")
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect::<Vec<_>>()
    );
    // 21.5 and -0.1 as TDengine shows the FLOATs, not their f64 widenings.
    let points = influx_dump(&db, "boiler", "ns");
    assert!(
        points.iter().any(|p| p["fields"]["reading"] == json!(-0.1)),
        "{points:?}"
    );
    assert!(
        points.iter().any(|p| p["fields"]["reading"] == json!(1e-7)),
        "{points:?}"
    );
}

#[test]
fn transient_failures_are_retried_and_every_point_arrives() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    let td_db = "flaky";
    seed_sensors(&td, td_db, Precision::Ms, 3, 200, 60_000);
    td.fail_next(
        "DESCRIBE",
        vec![Fault::Code(0x0018, "Conn is broken".into())],
    );
    td.fail_next("PARTITION BY", vec![Fault::Http(502)]);
    td.fail_next(
        "LIMIT",
        vec![
            Fault::Http(500),
            Fault::Code(0x000B, "Unable to establish connection".into()),
            Fault::Http(503),
            Fault::Delay(Duration::from_secs(3)),
            Fault::HangUp,
            Fault::Code(0x090C, "Sync leader is unreachable".into()),
        ],
    );
    // And replies cut at 15 rows, as taosAdapter's restfulRowLimit does, below page_rows.
    td.set_row_limit(Some(15));
    let (_cleanup, db, dir) = fresh_target("td_flaky");
    let job = job(
        &dir,
        &td,
        td_db,
        &["sensors"],
        &db,
        "  window: 1h\n  page_rows: 40\n  timeout: 1s",
        SENSOR_MAPPING,
    );
    let out = backfill(&job, "2");
    assert_ok(&out);
    assert_eq!(td.faults_left(), 0);
    assert_eq!(td.faulted().len(), 8);
    // Each fault was retried once, by the source; the sink retried nothing.
    assert_eq!(summary_u64(&out.stdout, "source_retries"), 8);
    assert_eq!(summary_u64(&out.stdout, "retries"), 0);
    let rows = td.rows(td_db, "sensors");
    assert_eq!(
        dump(&db, "sensors"),
        expected_points(&rows, SENSOR_COLUMNS, SENSOR_TAGS, Precision::Ms)
    );
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 600);
}

#[test]
fn definite_errors_fail_the_job_naming_tdengines_code() {
    let td = TdengineStandIn::start(USER, "the-real-password");
    seed_sensors(&td, "power", Precision::Ms, 2, 10, 60_000);
    let (_cleanup, db, dir) = fresh_target("td_definite");
    let job = job(&dir, &td, "power", &["sensors"], &db, "", SENSOR_MAPPING);
    // A wrong password: TDengine's authentication failure, at once, not retried.
    let started = Instant::now();
    let out = backfill(&job, "1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(
        last.contains(&format!("refused the login of user `{USER}`"))
            && last.contains("TDengine error 0x0357 (855): Authentication failure")
            && last.ends_with("check source.user and source.password"),
        "{last}"
    );
    assert!(
        !stderr.contains(PASSWORD),
        "the password must not appear: {stderr}"
    );
    assert_eq!(td.statements().len(), 1, "a refused login is not retried");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(dump(&db, "sensors").is_empty());

    // The right password, but a split's query fails for good halfway through.
    let td = TdengineStandIn::start(USER, PASSWORD);
    seed_sensors(&td, "power", Precision::Ms, 2, 10, 60_000);
    let job = self::job(&dir, &td, "power", &["sensors"], &db, "", SENSOR_MAPPING);
    td.fail_next(
        "LIMIT",
        vec![Fault::Code(0x2603, "Table does not exist: d001".into())],
    );
    let out = backfill(&job, "1");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("TDengine error 0x2603 (9731): Table does not exist: d001"),
        "{last}"
    );
    assert!(last.contains("reading split"), "{last}");

    // A table that is not there is named before anything is read.
    let job = self::job(
        &dir,
        &td,
        "power",
        &["nosuch"],
        &db,
        "",
        &SENSOR_MAPPING.replace("table: sensors", "table: nosuch"),
    );
    let out = backfill(&job, "1");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading the schema of table nosuch")
            && stderr.contains("Table does not exist: nosuch"),
        "{stderr}"
    );
}

#[test]
fn killed_mid_run_then_restarted_every_point_once() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    let td_db = "crash";
    // 8 sub-tables x 240 rows, one a minute: 4 windows of 1h each, 32 splits.
    seed_sensors(&td, td_db, Precision::Ms, 8, 240, 60_000);
    let rows = td.rows(td_db, "sensors");
    let (_cleanup, db, dir) = fresh_target("td_kill");
    let job = job(
        &dir,
        &td,
        td_db,
        &["sensors"],
        &db,
        "  window: 1h\n  page_rows: 20",
        SENSOR_MAPPING,
    )
    .to_str()
    .unwrap()
    .to_string();
    std::fs::write(
        &job,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("  batch_size: 500\n", "  batch_size: 100\n  in_flight: 1\n")
            + "flow:\n  epoch: 50ms\n  max_in_flight_rows: 200\n",
    )
    .unwrap();
    let job = Path::new(&job);
    td.set_delay(Duration::from_millis(40));
    let state_file = dir.join("state/backfill.json");

    let (plan, pending) = kill_mid_run(
        td_command(job, &["-c", "backfill", "--workers", "2"]),
        &state_file,
    );
    td.set_delay(Duration::ZERO);
    assert_eq!(plan.len(), 32);
    // Exactly the rows of the unfinished splits (sub-table x window) are read again.
    let rows_pending = rows
        .iter()
        .filter(|r| {
            pending.iter().any(|s| {
                s["partition"] == json!(r.tbname)
                    && s["start"].as_i64().is_none_or(|a| r.ts >= a)
                    && s["end"].as_i64().is_none_or(|b| r.ts < b)
            })
        })
        .count() as u64;

    let out = backfill(job, "2");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), rows_pending);
    assert!(rows_pending < rows.len() as u64);
    // Every point once per (series, time), exactly as stored.
    assert_eq!(
        dump(&db, "sensors"),
        expected_points(&rows, SENSOR_COLUMNS, SENSOR_TAGS, Precision::Ms)
    );
    assert!(unfinished_splits(&state_file).1.is_empty());

    let out = backfill(job, "1");
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 0);
    let (code, report) = verify(job, &[("TDENGINE_PASSWORD", PASSWORD.to_string())]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report_line(&report), clean_report(&rows, Precision::Ms));
}

/// One REST request to the stand-in: (HTTP status, JSON body).
fn post(td: &TdengineStandIn, path: &str, auth: Option<(&str, &str)>, sql: &str) -> (u16, Json) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", td.url()))
            .body(sql.to_string());
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Json::String(text)),
        )
    })
}

#[test]
fn the_standin_answers_in_tdengines_rest_shapes() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    td.create_database("power", Precision::Us);
    td.create_super_table("power", "sensors", SENSOR_COLUMNS, SENSOR_TAGS);
    td.create_sub_table(
        "power",
        "sensors",
        "d1",
        vec![V::Text("Zürich".into()), V::Int(2)],
    );
    td.insert(
        "power",
        "d1",
        BASE_SECONDS * 1_000_000 + 1,
        vec![
            V::Float(21.3),
            V::Double(0.1),
            V::Int(-5),
            V::Null,
            V::Bool(true),
            V::UInt(u64::MAX),
        ],
    );
    let auth = Some((USER, PASSWORD));

    let (status, body) = post(&td, "/rest/sql", None, "SELECT ts FROM power.sensors");
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(
        &td,
        "/rest/sql",
        Some((USER, "wrong")),
        "SELECT ts FROM power.sensors",
    );
    assert_eq!(
        (status, body),
        (200, json!({"code": 855, "desc": "Authentication failure"}))
    );

    let (status, body) = post(&td, "/rest/sql/power?tz=UTC", auth, "SELECT ts, temperature, humidity, pressure, status, ok, counter, location, group_id, tbname FROM d1");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"code": 0, "column_meta": [
            ["ts", "TIMESTAMP", 8], ["temperature", "FLOAT", 4], ["humidity", "DOUBLE", 8],
            ["pressure", "INT", 4], ["status", "VARCHAR", 32], ["ok", "BOOL", 1],
            ["counter", "BIGINT UNSIGNED", 8], ["location", "NCHAR", 32], ["group_id", "INT", 4],
            ["tbname", "VARCHAR", 192]],
            "data": [["2026-01-01T00:00:00.000001Z", 21.3, 0.1, -5, null, true, u64::MAX, "Zürich", 2, "d1"]],
            "rows": 1})
    );
    // Without tz, timestamps come in the server's zone (the stand-in's is +08:00).
    let (_, body) = post(
        &td,
        "/rest/sql",
        auth,
        "select FIRST(ts), count(*), tbname from power.sensors partition by tbname",
    );
    assert_eq!(
        body["data"],
        json!([["2026-01-01T08:00:00.000001+08:00", 1, "d1"]])
    );

    let (_, body) = post(&td, "/rest/sql", auth, "DESCRIBE `power`.`sensors`");
    assert_eq!(
        body["column_meta"],
        json!([
            ["field", "VARCHAR", 64],
            ["type", "VARCHAR", 32],
            ["length", "INT", 4],
            ["note", "VARCHAR", 8]
        ])
    );
    assert_eq!(body["data"][7], json!(["location", "NCHAR", 32, "TAG"]));
    assert_eq!(body["data"][1], json!(["temperature", "FLOAT", 4, ""]));

    // Errors of the database: HTTP 200 and TDengine's code.
    for (sql, error) in [
        (
            "SELEC ts FROM power.sensors",
            json!({"code": 9728, "desc": "syntax error near \"SELEC ts FROM power.sensors\""}),
        ),
        (
            "INSERT INTO power.d1 VALUES (now, 1)",
            json!({"code": 9728, "desc": "syntax error near \"INSERT INTO power.d1 VALUES (now, 1)\""}),
        ),
        (
            "SELECT ts FROM power.nosuch",
            json!({"code": 9731, "desc": "Table does not exist: nosuch"}),
        ),
        (
            "SELECT nosuch FROM power.sensors",
            json!({"code": 9730, "desc": "Invalid column name: nosuch"}),
        ),
        (
            "SELECT ts FROM sensors",
            json!({"code": 9750, "desc": "Database not specified or available"}),
        ),
    ] {
        assert_eq!(post(&td, "/rest/sql", auth, sql), (200, error), "{sql}");
    }

    // Injected faults come first, for the statements they match.
    td.fail_next(
        "LIMIT",
        vec![
            Fault::Http(503),
            Fault::Code(11, "Unable to establish connection".into()),
        ],
    );
    let limited = "SELECT ts FROM power.d1 ORDER BY ts LIMIT 1 OFFSET 0";
    assert_eq!(post(&td, "/rest/sql", auth, limited).0, 503);
    assert_eq!(
        post(&td, "/rest/sql", auth, limited).1,
        json!({"code": 11, "desc": "Unable to establish connection"})
    );
    assert_eq!(post(&td, "/rest/sql", auth, limited).1["rows"], json!(1));
    assert_eq!(td.faults_left(), 0);
}

#[test]
fn shipped_job_file_validates_plans_and_runs_into_influxdb_2() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    seed_sensors(&td, "power", Precision::Ms, 4, 300, 10 * 60_000);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let influx_port = influxdb2_standin::standin(seen.clone());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/tdengine-to-influxdb-v2.yaml");
    let dir = scratch(&unique("td_shipped"));
    let run_shipped = |args: &[&str]| {
        tsmig()
            .current_dir(&dir)
            .env("TDENGINE_URL", td.url())
            .env("TDENGINE_PASSWORD", PASSWORD)
            .env("INFLUX_URL", format!("http://127.0.0.1:{influx_port}"))
            .env("INFLUX_TOKEN", "secret-token")
            .args(args)
            .args(["--config", shipped.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_ok(&run_shipped(&["validate"]));
    let out = run_shipped(&["plan"]);
    assert_ok(&out);
    let plan = String::from_utf8_lossy(&out.stdout);
    // 4 sub-tables of 300 rows every 10 minutes: 50 hours, 3 days each.
    assert!(
        plan.contains("source table sensors: 10 columns, 12 splits, ~1200 rows"),
        "{plan}"
    );
    assert!(
        plan.contains("column location NCHAR(32) TAG (Text)"),
        "{plan}"
    );
    assert!(plan.contains("column tbname"), "{plan}");
    assert!(plan.contains("split 0: ..1767312000000 (d000)"), "{plan}");

    let out = run_shipped(&["-c", "backfill", "--workers", "2", "--progress", "off"]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 1200);
    // The bucket holds every point: tags from the super table and the sub-table name,
    // typed fields, times in ms as TDengine keeps them.
    let mut expected: Store = Store::new();
    for r in td.rows("power", "sensors") {
        let [V::Text(location), V::Int(group)] = &r.tags[..] else {
            panic!()
        };
        let series = (
            "sensors".to_string(),
            vec![
                ("group_id".to_string(), group.to_string()),
                ("location".to_string(), location.clone()),
                ("tbname".to_string(), r.tbname.clone()),
            ],
        );
        let mut fields = std::collections::BTreeMap::new();
        for (name, v) in ["temperature", "humidity", "pressure", "status"]
            .iter()
            .zip(&r.values)
        {
            let value = match v {
                V::Null => continue,
                V::Float(f) => {
                    FieldValue::Float(ryu::Buffer::new().format_finite(*f).parse().unwrap())
                }
                V::Double(d) => FieldValue::Float(*d),
                V::Int(i) => FieldValue::Int(*i),
                V::Text(t) => FieldValue::Text(t.clone()),
                other => panic!("{other:?}"),
            };
            fields.insert(name.to_string(), value);
        }
        expected
            .entry(series)
            .or_default()
            .insert(r.ts * 1_000_000, fields);
    }
    assert_eq!(seen.lock().unwrap().store, expected);
    assert!(dir
        .join("state/tdengine-to-influxdb-v2/backfill.json")
        .exists());
}

#[test]
fn https_and_bad_keys_are_refused_before_anything_is_read() {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/tdengine-to-influxdb-v2.yaml"),
    )
    .unwrap();
    for (change, key, message) in [
        (
            (
                "${TDENGINE_URL:-http://127.0.0.1:6041}",
                "https://td.example:6041",
            ),
            "source.url",
            "https is not built into this tsmig yet",
        ),
        (
            ("page_rows: 10000", "page_rows: 0"),
            "source.page_rows",
            "must be at least 1",
        ),
        (
            ("window: 1d ", "window: soon "),
            "source.window",
            "`soon` is not a duration",
        ),
        (
            ("window: 1d ", "windows: 1d "),
            "source.windows",
            "unknown field `windows`",
        ),
    ] {
        let dir = scratch(&unique("td_bad"));
        let job = dir.join("job.yaml");
        assert!(shipped.contains(change.0));
        std::fs::write(&job, shipped.replace(change.0, change.1)).unwrap();
        let out = tsmig()
            .env("TDENGINE_PASSWORD", PASSWORD)
            .env("INFLUX_TOKEN", "t")
            .args(["validate", "--config", job.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("key `{key}`")), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    // TDengine has no change log to follow.
    let job = scratch(&unique("td_cdc")).join("job.yaml");
    std::fs::write(&job, &shipped).unwrap();
    let out = tsmig()
        .env("TDENGINE_PASSWORD", PASSWORD)
        .env("INFLUX_TOKEN", "t")
        .args(["-c", "cdc", "--config", job.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `source.type`: a `tdengine` source has no change log to follow"),
        "{stderr}"
    );
}

#[test]
fn a_sub_table_list_cut_short_by_a_row_limit_fails_the_plan() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    seed_sensors(&td, "power", Precision::Ms, 12, 10, 60_000);
    // DESCRIBE's 9 rows fit; the 12 sub-tables do not.
    td.set_row_limit(Some(10));
    let (_cleanup, db, dir) = fresh_target("td_cut");
    let job = job(&dir, &td, "power", &["sensors"], &db, "", SENSOR_MAPPING);
    let out = backfill(&job, "1");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the sub-tables listed hold 100 of the table's 120 rows"),
        "{stderr}"
    );
    assert!(dump(&db, "sensors").is_empty());
}

/// Asserts InfluxDB database `db` holds exactly the points of `rows` (ms precision), and
/// that verify agrees.
fn assert_copied_and_verified(db: &str, job: &Path, rows: &[StoredRow]) {
    assert_eq!(
        dump(db, "sensors"),
        expected_points(rows, SENSOR_COLUMNS, SENSOR_TAGS, Precision::Ms)
    );
    let (code, report) = verify(job, &[("TDENGINE_PASSWORD", PASSWORD.to_string())]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report_line(&report), clean_report(rows, Precision::Ms));
}

/// The three sub-tables `seed_sensors` makes.
const SUB_TABLES: [&str; 3] = ["d000", "d001", "d002"];

/// A live row's values (every column of `sensors` after `ts`), distinct per `i`.
fn live_values(i: i64) -> Vec<V> {
    vec![
        V::Float(20.5 + i as f32),
        V::Double(50.0 + i as f64 / 4.0),
        V::Int(1_000 + i),
        V::Text(format!("live {i}")),
        V::Bool(i % 2 == 0),
        V::UInt(i as u64),
    ]
}

#[test]
fn follow_copies_points_written_during_and_after_the_backfill_and_late_ones() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    let td_db = "live";
    seed_sensors(&td, td_db, Precision::Ms, 3, 200, 60_000);
    let (_cleanup, db, dir) = fresh_target("td_follow");
    let job = job(
        &dir,
        &td,
        td_db,
        &["sensors"],
        &db,
        "  window: 1h\n  page_rows: 20",
        SENSOR_MAPPING,
    );
    add_follow_section(&job, "300ms", "10s");
    // Slow enough that points are written while the backfill runs.
    td.set_delay(Duration::from_millis(50));
    let child = td_command(&job, &["-c", "backfill+follow", "--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state = dir.join("state");
    let backfill_file = state.join("backfill.json");
    wait_until("the backfill's plan", || backfill_file.exists());
    let t = now_in(1_000);
    for (i, sub) in SUB_TABLES.iter().enumerate() {
        td.insert(td_db, sub, t + i as i64, live_values(i as i64));
    }
    assert!(
        !unfinished_splits(&backfill_file).1.is_empty(),
        "the points must be written during the backfill"
    );

    wait_until("the first round", || {
        follow_state(&state).is_some_and(|s| s["rounds"].as_u64() >= Some(1))
    });
    td.set_delay(Duration::ZERO);
    // After the backfill: more points, and a sub-table created since.
    let t = now_in(1_000);
    td.insert(td_db, "d000", t, live_values(10));
    td.insert(td_db, "d002", t + 1, live_values(11));
    td.create_sub_table(
        td_db,
        "sensors",
        "d_new",
        vec![V::Text("new".into()), V::Int(7)],
    );
    td.insert(td_db, "d_new", t + 2, live_values(12));
    // A late point: older than the watermark, within the lateness.
    let watermark = follow_state(&state).unwrap()["watermark"].as_i64().unwrap();
    td.insert(
        td_db,
        "d001",
        watermark / 1_000_000 - 2_000,
        live_values(13),
    );

    let total = td.rows(td_db, "sensors").len();
    assert_eq!(total, 600 + 3 + 3 + 1);
    wait_until("every point in the target", || {
        influx_count(&db, "sensors", "ok") == total as u64
    });
    let out = sigterm_and_wait(child);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("follow: watermark "), "{stdout}");
    // Rounds asked for their time range only.
    assert!(td
        .statements()
        .iter()
        .any(|s| s.contains("WHERE `ts` >= ") && s.contains("PARTITION BY tbname")));
    assert_copied_and_verified(&db, &job, &td.rows(td_db, "sensors"));
}

#[test]
fn follow_killed_mid_round_finishes_that_round_and_rereads_only_the_lateness() {
    let td = TdengineStandIn::start(USER, PASSWORD);
    let td_db = "relive";
    td.create_database(td_db, Precision::Ms);
    td.create_super_table(td_db, "sensors", SENSOR_COLUMNS, SENSOR_TAGS);
    // Per sub-table: 100 points within a second a minute ago (older than any round's
    // lateness window), and a point every 500 ms over the last 15 s.
    let t = now_in(1_000);
    for (s, sub) in SUB_TABLES.iter().enumerate() {
        let tags = vec![V::Text(LOCATIONS[s].into()), V::Int(s as i64)];
        td.create_sub_table(td_db, "sensors", sub, tags);
        for i in 0..100 {
            td.insert(td_db, sub, t - 60_000 + i * 10 + s as i64, live_values(i));
        }
        for i in 0..30 {
            td.insert(td_db, sub, t - 15_000 + i * 500 + s as i64, live_values(i));
        }
    }
    let (_cleanup, db, dir) = fresh_target("td_follow_kill");
    let job = job(
        &dir,
        &td,
        td_db,
        &["sensors"],
        &db,
        "  window: 5s\n  page_rows: 5",
        SENSOR_MAPPING,
    );
    add_follow_section(&job, "200ms", "20s");
    let state = dir.join("state");
    // Every query slow: the kill lands in a round, after some of its splits are durable.
    td.set_delay(Duration::from_millis(60));
    let (_plan, pending) = kill_mid_run(
        td_command(&job, &["-c", "backfill+follow", "--workers", "1"]),
        &state.join("follow-round/backfill.json"),
    );
    td.set_delay(Duration::ZERO);
    let round = follow_state(&state).unwrap()["round"].clone();
    let round_start = round["from"].as_i64().unwrap() / 1_000_000;
    let round_end = round["to"].as_i64().unwrap() / 1_000_000;
    let rows_pending = td
        .rows(td_db, "sensors")
        .iter()
        .filter(|r| {
            pending.iter().any(|s| {
                s["partition"] == json!(r.tbname)
                    && s["start"].as_i64().is_none_or(|a| r.ts >= a)
                    && s["end"].as_i64().is_none_or(|b| r.ts < b)
            })
        })
        .count() as u64;
    // Written while the job was down.
    let t = now_in(1_000);
    for (s, sub) in SUB_TABLES.iter().enumerate() {
        td.insert(td_db, sub, t + s as i64, live_values(100 + s as i64));
    }

    let before = td.statements().len();
    let out = td_command(
        &job,
        &[
            "-c",
            "backfill+follow",
            "--workers",
            "1",
            "--until-caught-up",
        ],
    )
    .output()
    .unwrap();
    assert_ok(&out);
    // Every read of the restart starts within the killed round or later: nothing before it.
    let reads: Vec<String> = td.statements()[before..]
        .iter()
        .filter(|s| s.contains("ORDER BY"))
        .cloned()
        .collect();
    assert!(!reads.is_empty());
    for read in &reads {
        let lower = read
            .split("`ts` >")
            .nth(1)
            .and_then(|rest| rest.trim_start_matches('=').split_whitespace().next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("a read without a lower time bound: {read}"));
        assert!(lower >= round_start, "{read} reads before {round_start}");
    }
    let rows = td.rows(td_db, "sensors");
    assert_eq!(rows.len(), 300 + 90 + 3);
    // The killed round's unfinished splits, then one or two rounds reading from its end
    // less the lateness (the second finds nothing new and ends the run): nothing older.
    let recent = rows.iter().filter(|r| r.ts >= round_end - 20_000).count() as u64;
    let read = summary_u64(&out.stdout, "rows_read");
    assert!(
        rows_pending + recent <= read && read <= rows_pending + 2 * recent,
        "read {read}: {rows_pending} pending, {recent} within the lateness"
    );
    assert!(read < rows.len() as u64);
    let after = follow_state(&state).unwrap();
    assert!(after["round"].is_null(), "{after}");
    assert!(!state.join("follow-round/backfill.json").exists());
    assert_copied_and_verified(&db, &job, &rows);
}

#[test]
fn follow_refuses_a_source_with_a_change_log_and_a_bad_interval() {
    let table = unique("follow_mysql");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let dir = scratch(&table);
    let job = sensor_job(&dir, &table, "unused", 100, "", "");
    let out = run(&[
        "-c",
        "backfill+follow",
        "--config",
        job.to_str().unwrap(),
        "--progress",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `source.type`: a `mysql` source cannot be polled by time; a MySQL source has a binlog: follow it with `backfill+cdc`"),
        "{stderr}"
    );
    add_follow_section(&job, "1ms", "1m");
    let out = run(&["validate", "--config", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `follow.interval`: must be at least 10ms"),
        "{stderr}"
    );
}

/// A stand-in set up as taosAdapter with `httpCodeServerError = true`.
fn http_code_server_error(password: &str) -> TdengineStandIn {
    TdengineStandIn::start_with(Options {
        user: USER.into(),
        password: password.into(),
        http_code_server_error: true,
    })
}

#[test]
fn the_standin_answers_errors_with_taosadapters_http_statuses() {
    // Default settings: taosAdapter refuses missing or malformed credentials itself with
    // 401; TDengine's errors, a wrong password among them, come with 200.
    let td = TdengineStandIn::start(USER, PASSWORD);
    td.create_database("power", Precision::Ms);
    let sql = "SELECT ts FROM power.nosuch";
    assert_eq!(
        post(&td, "/rest/sql", None, sql),
        (401, json!({"code": 0x1105, "desc": "no auth info input"}))
    );
    assert_eq!(
        post(&td, "/rest/sql", Some((USER, "")), sql),
        (
            401,
            json!({"code": 0x1124, "desc": "invalid basic Authorization"})
        )
    );
    assert_eq!(
        post(&td, "/rest/sql", Some((USER, "wrong")), sql),
        (
            200,
            json!({"code": 0x0357, "desc": "Authentication failure"})
        )
    );
    assert_eq!(
        post(&td, "/rest/sql", Some((USER, PASSWORD)), sql),
        (
            200,
            json!({"code": 0x2603, "desc": "Table does not exist: nosuch"})
        )
    );

    // httpCodeServerError: the status follows the code, the body stays.
    let td = http_code_server_error(PASSWORD);
    td.create_database("power", Precision::Ms);
    let auth = Some((USER, PASSWORD));
    assert_eq!(
        post(&td, "/rest/sql", Some((USER, "wrong")), sql),
        (
            401,
            json!({"code": 0x0357, "desc": "Authentication failure"})
        )
    );
    assert_eq!(
        post(&td, "/rest/sql", auth, sql),
        (
            500,
            json!({"code": 0x2603, "desc": "Table does not exist: nosuch"})
        )
    );
    assert_eq!(post(&td, "/rest/sql", auth, "SELEC ts FROM power.x").0, 400);
    td.fail_next(
        "LIMIT",
        vec![
            Fault::Code(0x000B, "Unable to establish connection".into()),
            Fault::Code(0x090C, "Sync leader is unreachable".into()),
        ],
    );
    let limited = "SELECT ts FROM power.d1 ORDER BY ts LIMIT 1";
    assert_eq!(
        post(&td, "/rest/sql", auth, limited),
        (
            502,
            json!({"code": 11, "desc": "Unable to establish connection"})
        )
    );
    assert_eq!(
        post(&td, "/rest/sql", auth, limited),
        (
            500,
            json!({"code": 0x090C, "desc": "Sync leader is unreachable"})
        )
    );
}

#[test]
fn with_http_code_server_error_a_definite_error_in_a_500_fails_at_once_and_a_transient_one_is_retried(
) {
    let td = http_code_server_error(PASSWORD);
    seed_sensors(&td, "power", Precision::Ms, 2, 10, 60_000);
    // TDengine's "try again" codes arrive as 500 and 502: retried, every point arrives.
    td.fail_next(
        "LIMIT",
        vec![
            Fault::Code(0x090C, "Sync leader is unreachable".into()),
            Fault::Code(0x000B, "Unable to establish connection".into()),
        ],
    );
    let (_cleanup, db, dir) = fresh_target("td_http500");
    let extra = "  max_retries: 3";
    let job = job(&dir, &td, "power", &["sensors"], &db, extra, SENSOR_MAPPING);
    let out = backfill(&job, "1");
    assert_ok(&out);
    assert_eq!(td.faults_left(), 0);
    let rows = td.rows("power", "sensors");
    assert_eq!(
        dump(&db, "sensors"),
        expected_points(&rows, SENSOR_COLUMNS, SENSOR_TAGS, Precision::Ms)
    );

    // A missing table, as a 500: definite, the job fails at once naming TDengine's code.
    let (_cleanup, db, dir) = fresh_target("td_http500b");
    let job = self::job(&dir, &td, "power", &["sensors"], &db, extra, SENSOR_MAPPING);
    td.fail_next(
        "LIMIT",
        vec![Fault::Code(0x2603, "Table does not exist: d001".into())],
    );
    let before = td.statements().len();
    let started = Instant::now();
    let out = backfill(&job, "1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("HTTP 500: TDengine error 0x2603 (9731): Table does not exist: d001")
            && !last.contains("giving up"),
        "{last}"
    );
    let (faulted, _) = td.faulted().last().cloned().unwrap();
    let statements = td.statements();
    let sent = statements[before..]
        .iter()
        .filter(|s| **s == faulted)
        .count();
    assert_eq!(sent, 1, "the statement TDengine refused was sent again");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn with_http_code_server_error_a_wrong_password_is_a_401_and_the_login_is_refused_at_once() {
    let td = http_code_server_error("the-real-password");
    seed_sensors(&td, "power", Precision::Ms, 2, 10, 60_000);
    let (_cleanup, db, dir) = fresh_target("td_http401");
    let job = job(&dir, &td, "power", &["sensors"], &db, "", SENSOR_MAPPING);
    let out = backfill(&job, "1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "error: TDengine at 127.0.0.1:{} refused the login of user `{USER}` (reading the \
             database's precision): HTTP 401: TDengine error 0x0357 (855): Authentication \
             failure; check source.user and source.password",
            td.port()
        )
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_eq!(td.statements().len(), 1, "a refused login is not retried");
}
