//! MySQL/MariaDB → Apache IoTDB backfills, against the real MariaDB and the IoTDB
//! stand-in (tests/standins/iotdb/: IoTDB's Thrift client service, not IoTDB itself).

mod common;
#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use common::*;
use iotdb_standin::{IotdbStandIn, StandInDataType as T, StandInValue as V};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shipped_job() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-iotdb-backfill.yaml")
}

/// Runs a job file from `dir` (its relative state path lands there) against `iotdb`.
fn run_in(
    dir: &Path,
    job: &Path,
    iotdb: &IotdbStandIn,
    table: &str,
    args: &[&str],
) -> std::process::Output {
    tsmig()
        .current_dir(dir)
        .env("TSMIG_TABLE", table)
        .env("IOTDB_PORT", iotdb.port().to_string())
        .env("IOTDB_PASSWORD", "root")
        .args([
            "-c",
            "backfill",
            "--config",
            job.to_str().unwrap(),
            "--progress",
            "off",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// The points the sensor table should become: series path → (time ms, value), sorted.
fn expected(table: &str) -> BTreeMap<String, Vec<(i64, V)>> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!("SELECT device_id, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, CAST(humidity AS CHAR), CAST(pressure AS CHAR), status FROM {table}"),
    ]);
    let mut out: BTreeMap<String, Vec<(i64, V)>> = BTreeMap::new();
    for r in rows {
        let (device, time, temperature, humidity, pressure, status): (
            String,
            i64,
            Option<f64>,
            Option<String>,
            Option<String>,
            Option<i32>,
        ) = mysql_async::from_row(r);
        let path = |m: &str| format!("root.factory.`{device}`.{m}");
        if let Some(v) = temperature {
            out.entry(path("temperature"))
                .or_default()
                .push((time, V::Double(v)));
        }
        if let Some(v) = humidity {
            out.entry(path("humidity"))
                .or_default()
                .push((time, V::Float(v.parse().unwrap())));
        }
        if let Some(v) = pressure {
            out.entry(path("pressure"))
                .or_default()
                .push((time, V::Double(v.parse().unwrap())));
        }
        if let Some(v) = status {
            out.entry(path("status"))
                .or_default()
                .push((time, V::Int32(v)));
        }
    }
    for points in out.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    out
}

#[test]
fn shipped_job_backfills_exact_points_with_column_types_on_1_and_2_workers() {
    let table = unique("iot");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 3_000);
    let want = expected(&table);
    assert_eq!(
        want.values().map(Vec::len).sum::<usize>(),
        3_000 * 3 + 3_000 - 3_000 / 97
    );

    for workers in ["1", "2"] {
        let iotdb = IotdbStandIn::start();
        let dir = scratch(&format!("{table}-{workers}"));
        let out = run_in(
            &dir,
            &shipped_job(),
            &iotdb,
            &table,
            &["--workers", workers],
        );
        assert_ok(&out);
        assert_eq!(
            summary_u64(&out.stdout, "points_written"),
            3_000,
            "{workers} workers"
        );
        assert_eq!(iotdb.databases(), vec!["root.factory".to_string()]);
        let got = iotdb.all_points();
        assert!(
            got == want,
            "{workers} workers: the stored points differ from the table"
        );
        let types: BTreeMap<String, T> = iotdb
            .series()
            .into_iter()
            .filter(|s| s.path.starts_with("root.factory.`dev-0001`."))
            .map(|s| (s.path, s.data_type))
            .collect();
        assert_eq!(
            types,
            BTreeMap::from([
                ("root.factory.`dev-0001`.humidity".to_string(), T::Float),
                ("root.factory.`dev-0001`.pressure".to_string(), T::Double),
                ("root.factory.`dev-0001`.status".to_string(), T::Int32),
                ("root.factory.`dev-0001`.temperature".to_string(), T::Double),
            ])
        );
        // A finished backfill restarts to nothing.
        let again = run_in(
            &dir,
            &shipped_job(),
            &iotdb,
            &table,
            &["--workers", workers],
        );
        assert_ok(&again);
        assert_eq!(summary_u64(&again.stdout, "rows_read"), 0);
    }
}

#[test]
fn every_value_type_arrives_with_its_iotdb_type_and_declared_types_win() {
    let table = unique("iotty");
    let _cleanup = Cleanup::default().table(&table);
    sql(&[
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, dev VARCHAR(32), ts DATETIME(3), flag BOOL, i8 TINYINT, i16 SMALLINT, i32 INT,
             u32 INT UNSIGNED, i64 BIGINT, f FLOAT, d DOUBLE, dec10 DECIMAL(10,3), txt VARCHAR(64), at DATETIME(3), wide INT)"
        ),
        &format!(
            "INSERT INTO {table} VALUES
             (1, 'plain_dev', '2026-01-01 00:00:01', TRUE, -128, -32768, -2147483648, 4294967295, -9223372036854775808,
              12.3, 0.30000000000000004, -1234567.125, 'héllo `q`', '2026-01-02 03:04:05.678', 7),
             (2, 'odd dev.1', '2026-01-01 00:00:02', FALSE, 127, 32767, 2147483647, 0, 9223372036854775807,
              -0.5, 1e300, 0.001, '', NULL, 8)"
        ),
    ]);
    let dir = scratch(&table);
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            r#"name: {table}
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  tables: [{{name: {table}, split_by: id}}]
sink:
  type: iotdb
  port: ${{IOTDB_PORT}}
  database: root.plant
  ttl: 36500d                 # the rows are of 2026-01-01: older than a 90d TTL
  encodings: {{DOUBLE: RLE}}
  compressor: SNAPPY
mappings:
  - table: {table}
    device_field: dev
    timestamp_field: ts
    path: root.plant.line_1.{{dev}}
    measurements: [flag, i8, i16, i32, u32, i64, f, d, dec10, txt, at, wide]
    types: {{wide: INT64}}
checkpoint:
  store: file:state
"#
        ),
    )
    .unwrap();
    let iotdb = IotdbStandIn::start();
    let out = run_in(&dir, &job, &iotdb, &table, &["--workers", "2"]);
    assert_ok(&out);
    let series: BTreeMap<String, T> = iotdb
        .series()
        .into_iter()
        .map(|s| (s.path, s.data_type))
        .collect();
    let device = "root.plant.line_1.plain_dev";
    for (m, t) in [
        ("flag", T::Boolean),
        ("i8", T::Int32),
        ("i16", T::Int32),
        ("i32", T::Int32),
        ("u32", T::Int64),
        ("i64", T::Int64),
        ("f", T::Float),
        ("d", T::Double),
        ("dec10", T::Double),
        ("txt", T::Text),
        ("at", T::Text),
        ("wide", T::Int64),
    ] {
        assert_eq!(series.get(&format!("{device}.{m}")), Some(&t), "{m}");
    }
    let point = |path: &str| iotdb.points(path);
    assert_eq!(
        point(&format!("{device}.flag")),
        vec![(1_767_225_601_000, V::Boolean(true))]
    );
    assert_eq!(
        point(&format!("{device}.i32")),
        vec![(1_767_225_601_000, V::Int32(i32::MIN))]
    );
    assert_eq!(
        point(&format!("{device}.u32")),
        vec![(1_767_225_601_000, V::Int64(4_294_967_295))]
    );
    assert_eq!(
        point(&format!("{device}.i64")),
        vec![(1_767_225_601_000, V::Int64(i64::MIN))]
    );
    assert_eq!(
        point(&format!("{device}.f")),
        vec![(1_767_225_601_000, V::Float(12.3))]
    );
    assert_eq!(
        point(&format!("{device}.d")),
        vec![(1_767_225_601_000, V::Double(0.30000000000000004))]
    );
    assert_eq!(
        point(&format!("{device}.dec10")),
        vec![(1_767_225_601_000, V::Double(-1234567.125))]
    );
    assert_eq!(
        point(&format!("{device}.txt")),
        vec![(1_767_225_601_000, V::Text("héllo `q`".into()))]
    );
    assert_eq!(
        point(&format!("{device}.at")),
        vec![(
            1_767_225_601_000,
            V::Text("2026-01-02T03:04:05.678Z".into())
        )]
    );
    assert_eq!(
        point(&format!("{device}.wide")),
        vec![(1_767_225_601_000, V::Int64(7))]
    );
    // A device id that is no IoTDB identifier is quoted, never rewritten.
    let odd = "root.plant.line_1.`odd dev.1`";
    assert_eq!(
        iotdb.points(&format!("{odd}.i64")),
        vec![(1_767_225_602_000, V::Int64(i64::MAX))]
    );
    assert_eq!(
        iotdb.points(&format!("{odd}.d")),
        vec![(1_767_225_602_000, V::Double(1e300))]
    );
    assert_eq!(
        iotdb.points(&format!("{odd}.txt")),
        vec![(1_767_225_602_000, V::Text(String::new()))]
    );
    assert!(
        iotdb.points(&format!("{odd}.at")).is_empty(),
        "NULL is left out"
    );
}

#[test]
fn transient_failures_are_retried_and_a_type_conflict_names_the_series() {
    let table = unique("iotfail");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 500);
    let iotdb = IotdbStandIn::start();
    iotdb.fail_next(2, 606); // write process rejected: try again
    iotdb.hang_up_next(1); // the connection drops without an answer
    let dir = scratch(&table);
    let out = run_in(&dir, &shipped_job(), &iotdb, &table, &["--workers", "1"]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "retries"), 3);
    assert_eq!(iotdb.all_points(), expected(&table));

    // A series that exists with another type is a definite error naming its path.
    let other = IotdbStandIn::start();
    let mut session = iotdb::client::remote::RpcSession::new(iotdb::client::remote::Config {
        port: other.port() as i32,
        ..Default::default()
    })
    .unwrap();
    use iotdb::client::Session;
    session.open().unwrap();
    session.set_storage_group("root.factory").unwrap();
    session
        .create_timeseries(
            "root.factory.`dev-0001`.temperature",
            iotdb::protocal::TSDataType::Text,
            iotdb::protocal::TSEncoding::Plain,
            iotdb::protocal::TSCompressionType::SNAPPY,
            None,
            None,
            None,
            None,
        )
        .unwrap();
    let dir = scratch(&format!("{table}-conflict"));
    let out = run_in(&dir, &shipped_job(), &other, &table, &["--workers", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("dev-0001") && last.contains("temperature"),
        "{stderr}"
    );
}

#[test]
fn a_point_delete_removes_exactly_that_point() {
    use tsmig::sink::Sink;
    let table = unique("iotdel");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 3_000);
    let iotdb = IotdbStandIn::start();
    let dir = scratch(&table);
    assert_ok(&run_in(
        &dir,
        &shipped_job(),
        &iotdb,
        &table,
        &["--workers", "1"],
    ));
    let before = iotdb.all_points();

    // The sink as the job builds it, from the same job file.
    let job = tsmig::job::Job::parse(
        &shipped_job(),
        &std::fs::read_to_string(shipped_job()).unwrap(),
        |name| match name {
            "MYSQL_PASSWORD" => Some("tsmig".into()),
            "TSMIG_TABLE" => Some(table.clone()),
            "IOTDB_PORT" => Some(iotdb.port().to_string()),
            _ => None,
        },
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = tsmig::connectors::source(&job).unwrap();
    let source = rt.block_on(spec.open(&job)).unwrap();
    let mappings = tsmig::mapping::Mappings::compile_for(
        &job,
        source.schema(),
        Some(std::sync::Arc::new(
            tsmig::connectors::iotdb::path::IotdbPaths,
        )),
    )
    .unwrap();
    let (config, batching) =
        tsmig::sink::parse_section::<tsmig::connectors::iotdb::config::IotdbSinkConfig>(&job)
            .unwrap();
    let sink = tsmig::connectors::iotdb::IotdbSink::new(&config, &batching, &mappings).unwrap();
    rt.block_on(sink.prepare()).unwrap();
    // dev-0003's reading at 00:00:01 (row 1003), both measurements named.
    rt.block_on(sink.delete_point(
        "root.factory.`dev-0003`",
        &["temperature", "humidity"],
        1_767_225_601_000_000_000,
    ))
    .unwrap();

    let after = iotdb.all_points();
    for (series, points) in &before {
        let kept = &after[series];
        if series == "root.factory.`dev-0003`.temperature"
            || series == "root.factory.`dev-0003`.humidity"
        {
            let expected: Vec<_> = points
                .iter()
                .filter(|(t, _)| *t != 1_767_225_601_000)
                .cloned()
                .collect();
            assert_eq!(
                kept, &expected,
                "{series}: only the point at that time goes"
            );
            assert_eq!(kept.len(), points.len() - 1);
        } else {
            assert_eq!(kept, points, "{series} is untouched");
        }
    }
}

/// A job copying `table` (id, device_id, ts DATETIME(3), temperature DOUBLE) into IoTDB's
/// `root.factory`, with `sink_extra` YAML lines (indented by two) in the sink section.
fn small_job(dir: &Path, table: &str, sink_extra: &str) -> PathBuf {
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            r#"name: {table}
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  time_zone: "+00:00"
  tables: [{{name: {table}, split_by: id}}]
sink:
  type: iotdb
  port: ${{IOTDB_PORT}}
  database: root.factory
  initial_backoff: 10ms
{sink_extra}mappings:
  - table: {table}
    device_field: device_id
    timestamp_field: ts
    path: root.factory.{{device_id}}
    measurements: [temperature]
checkpoint:
  store: file:state
"#
        ),
    )
    .unwrap();
    job
}

#[test]
fn rows_older_than_the_ttl_are_dead_lettered_with_iotdbs_message_and_the_rest_written() {
    let table = unique("iotttl");
    let _cleanup = Cleanup::default().table(&table);
    // 20 readings ten days old and 30 of the last hour, over three devices; the TTL is a day.
    let mut rows = Vec::new();
    for i in 0..50 {
        let age = if i < 20 { "10 DAY" } else { "1 HOUR" };
        rows.push(format!(
            "({i}, 'dev-{}', UTC_TIMESTAMP(3) - INTERVAL {age} + INTERVAL {i} SECOND, {i}.5)",
            i % 3
        ));
    }
    sql(&[
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, device_id VARCHAR(32), ts DATETIME(3), temperature DOUBLE)"
        ),
        &format!("INSERT INTO {table} VALUES {}", rows.join(", ")),
    ]);
    let dir = scratch(&table);
    // Few retries: a job that took IoTDB's 607 for "try again" fails quickly.
    let job = small_job(&dir, &table, "  ttl: 1d\n  max_retries: 2\n");
    let iotdb = IotdbStandIn::start();
    let out = run_in(&dir, &job, &iotdb, &table, &["--workers", "2"]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 30);
    assert_eq!(summary_u64(&out.stdout, "dead_lettered"), 20);
    assert_eq!(iotdb.ttl("root.factory"), Some(86_400_000));

    // Exactly the old readings are dead-lettered, each with IoTDB's message.
    let dead = std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap();
    let mut dead_values: Vec<String> = Vec::new();
    for line in dead.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = record["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("IoTDB: code: 607, Insertion time [")
                && reason.contains("] is less than ttl time bound ["),
            "{reason}"
        );
        dead_values.push(
            record["record"]["fields"]["temperature"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    dead_values.sort_by_key(|v| v.trim_end_matches(".5").parse::<i64>().unwrap());
    let old: Vec<String> = (0..20).map(|i| format!("{i}.5")).collect();
    assert_eq!(dead_values, old);

    // And exactly the new ones are in IoTDB.
    let mut stored: Vec<f64> = iotdb
        .all_points()
        .values()
        .flatten()
        .map(|(_, v)| match v {
            V::Double(d) => *d,
            other => panic!("{other:?}"),
        })
        .collect();
    stored.sort_by(f64::total_cmp);
    let fresh: Vec<f64> = (20..50).map(|i| i as f64 + 0.5).collect();
    assert_eq!(stored, fresh);
}

#[test]
fn a_cluster_node_that_redirects_multi_device_writes_has_written_them() {
    let table = unique("iotredir");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 2_000);
    // A DataNode that leads none of the devices' regions: every batch of several devices
    // is answered 400 REDIRECTION_RECOMMEND, as a cluster does when the write succeeded.
    let iotdb = IotdbStandIn::start_with(iotdb_standin::Options {
        redirect_to: Some(("127.0.0.9".into(), 6667)),
        ..Default::default()
    });
    let dir = scratch(&table);
    let out = run_in(&dir, &shipped_job(), &iotdb, &table, &["--workers", "2"]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 2_000);
    assert_eq!(summary_u64(&out.stdout, "retries"), 0);
    assert_eq!(iotdb.all_points(), expected(&table));
}

#[test]
fn an_encoding_iotdb_refuses_for_its_type_is_refused_before_anything_is_written() {
    let table = unique("iotenc");
    let _cleanup = Cleanup::default().table(&table);
    sql(&[&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, device_id VARCHAR(32), ts DATETIME(3), temperature DOUBLE)"
    )]);
    let dir = scratch(&table);
    let iotdb = IotdbStandIn::start();
    for (encodings, key, message) in [
        (
            "{TEXT: GORILLA}",
            "sink.encodings.TEXT",
            "IoTDB cannot encode TEXT with GORILLA: a TEXT series takes PLAIN, DICTIONARY",
        ),
        (
            "{DOUBLE: PLAIN, boolean: ts_2diff}",
            "sink.encodings.boolean",
            "IoTDB cannot encode BOOLEAN with TS_2DIFF: a BOOLEAN series takes PLAIN, RLE",
        ),
    ] {
        let job = small_job(&dir, &table, &format!("  encodings: {encodings}\n"));
        for command in [&["validate"][..], &["plan"], &["-c", "backfill"]] {
            let out = tsmig()
                .current_dir(&dir)
                .env("IOTDB_PORT", iotdb.port().to_string())
                .args(command)
                .args(["--config", job.to_str().unwrap()])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
            assert!(
                stderr.contains(&format!("key `{key}`: {message}")),
                "{command:?}: {stderr}"
            );
        }
    }
    assert!(iotdb.all_calls().is_empty(), "{:?}", iotdb.all_calls());
}

#[test]
fn iotdbs_own_refusal_of_an_encoding_fails_the_write_naming_the_key_to_change() {
    use tsmig::sink::{Batch, Sink};
    let table = unique("iotenc2");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let iotdb = IotdbStandIn::start();
    let job = tsmig::job::Job::parse(
        &shipped_job(),
        &std::fs::read_to_string(shipped_job()).unwrap(),
        |name| match name {
            "MYSQL_PASSWORD" => Some("tsmig".into()),
            "TSMIG_TABLE" => Some(table.clone()),
            "IOTDB_PORT" => Some(iotdb.port().to_string()),
            _ => None,
        },
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = tsmig::connectors::source(&job).unwrap();
    let source = rt.block_on(spec.open(&job)).unwrap();
    let mappings = tsmig::mapping::Mappings::compile_for(
        &job,
        source.schema(),
        Some(std::sync::Arc::new(
            tsmig::connectors::iotdb::path::IotdbPaths,
        )),
    )
    .unwrap();
    let (mut config, batching) =
        tsmig::sink::parse_section::<tsmig::connectors::iotdb::config::IotdbSinkConfig>(&job)
            .unwrap();
    // What `validate` refuses, as a server whose table of encodings differed from tsmig's
    // would: DIFF encodes no type in IoTDB 1.x.
    config.encodings.insert("DOUBLE".into(), "DIFF".into());
    let sink = tsmig::connectors::iotdb::IotdbSink::new(&config, &batching, &mappings).unwrap();
    rt.block_on(sink.prepare()).unwrap();
    let mut batch = sink.new_batch();
    batch
        .push(&tsmig::model::Point {
            measurement: "root.factory.d1".into(),
            tags: vec![],
            fields: vec![("temperature".into(), tsmig::model::Value::Float(21.5))],
            time: 1_767_225_600_000_000_000,
            device_hash: 0,
        })
        .unwrap();
    let error = rt.block_on(sink.write(&batch)).unwrap_err();
    let tsmig::sink::WriteError::Fatal { message } = error else {
        panic!("a definite error: {error:?}")
    };
    assert!(
        message.starts_with("IoTDB refused to create series as DOUBLE DIFF: ")
            && message.contains("encoding DIFF does not support DOUBLE")
            && message.ends_with("choose another encoding for that type in sink.encodings"),
        "{message}"
    );
    assert!(iotdb.all_points().is_empty());
}

/// The job's IoTDB sink for a table `readings` (device_id, ts, temperature, humidity)
/// into `root.factory.{device_id}` on `iotdb`, built as a job builds it, without a
/// database: the table's columns are given, not read.
fn readings_sink(iotdb: &IotdbStandIn) -> tsmig::connectors::iotdb::IotdbSink {
    use tsmig::source::{ColumnKind, TableSchema};
    let text = format!(
        r#"name: readings
source:
  type: mysql
  url: mysql://tsmig:tsmig@127.0.0.1:13306/factory
  tables: [{{name: readings, split_by: id}}]
sink:
  type: iotdb
  port: {port}
  database: root.factory
mappings:
  - table: readings
    device_field: device_id
    timestamp_field: ts
    path: root.factory.{{device_id}}
    measurements: [temperature, humidity]
"#,
        port = iotdb.port()
    );
    let job = tsmig::job::Job::parse(Path::new("readings.yaml"), &text, |_| None).unwrap();
    let schema = TableSchema::of(
        "readings",
        [
            ("id", ColumnKind::Int),
            ("device_id", ColumnKind::Text),
            ("ts", ColumnKind::Time),
            ("temperature", ColumnKind::Float),
            ("humidity", ColumnKind::Float),
        ],
    );
    let mappings = tsmig::mapping::Mappings::compile_for(
        &job,
        &[schema],
        Some(std::sync::Arc::new(
            tsmig::connectors::iotdb::path::IotdbPaths,
        )),
    )
    .unwrap();
    let (config, batching) =
        tsmig::sink::parse_section::<tsmig::connectors::iotdb::config::IotdbSinkConfig>(&job)
            .unwrap();
    tsmig::connectors::iotdb::IotdbSink::new(&config, &batching, &mappings).unwrap()
}

/// A reading of `device` at `ms` milliseconds, with the fields named.
fn reading(device: &str, ms: i64, fields: &[&str]) -> tsmig::model::Point {
    tsmig::model::Point {
        measurement: format!("root.factory.{device}").into(),
        tags: Vec::new(),
        fields: fields
            .iter()
            .map(|f| ((*f).into(), tsmig::model::Value::Float(ms as f64)))
            .collect(),
        time: ms * 1_000_000,
        device_hash: 0,
    }
}

#[test]
fn deletes_of_a_batch_go_in_one_call_per_time_and_run_and_remove_exactly_those_points() {
    use tsmig::sink::{Batch, Sink};
    let iotdb = IotdbStandIn::start();
    let sink = readings_sink(&iotdb);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sink.prepare()).unwrap();
    // 20 devices, a reading every millisecond from 1,000 to 1,049, both fields.
    let devices: Vec<String> = (0..20).map(|d| format!("d{d:02}")).collect();
    let both = ["temperature", "humidity"];
    let mut batch = sink.new_batch();
    for device in &devices {
        for ms in 1_000..1_050 {
            batch.push(&reading(device, ms, &both)).unwrap();
        }
    }
    rt.block_on(sink.write(&batch)).unwrap();
    let written = iotdb.all_points();
    assert_eq!(written.values().map(Vec::len).sum::<usize>(), 2_000);

    let mut deletes = Vec::new();
    // Every device at 1,010..1,019 ms: 200 points, consecutive milliseconds.
    for device in &devices {
        for ms in 1_010..1_020 {
            deletes.push(reading(device, ms, &both));
        }
    }
    // Every device at 1,030, 1,035 and 1,040 ms: 60 points, three times.
    for ms in [1_030, 1_035, 1_040] {
        for device in &devices {
            deletes.push(reading(device, ms, &both));
        }
    }
    // d01 at 1,025 and 1,027 but not 1,026; d02's temperature alone at 1,045.
    deletes.push(reading("d01", 1_027, &both));
    deletes.push(reading("d01", 1_025, &both));
    deletes.push(reading("d02", 1_045, &["temperature"]));
    let before = iotdb.calls("deleteData");
    rt.block_on(sink.delete(&deletes)).unwrap();

    // One call for the run 1,010..=1,019 (40 series), one for each of 1,030, 1,035 and
    // 1,040 (40 series each), one for each of d01's two times, one for d02's temperature:
    // 7 calls for 263 points, where one call per point made 263.
    assert_eq!(iotdb.calls("deleteData") - before, 7);
    let deleted: std::collections::HashSet<(String, i64)> = deletes
        .iter()
        .flat_map(|p| {
            p.fields
                .iter()
                .map(move |(f, _)| (format!("{}.{f}", p.measurement), p.time / 1_000_000))
        })
        .collect();
    let expected: BTreeMap<String, Vec<(i64, V)>> = written
        .iter()
        .map(|(series, points)| {
            let kept = points
                .iter()
                .filter(|(t, _)| !deleted.contains(&(series.clone(), *t)))
                .cloned()
                .collect();
            (series.clone(), kept)
        })
        .collect();
    assert_eq!(iotdb.all_points(), expected);
    // d01's reading between its two deleted times is there.
    assert!(iotdb
        .points("root.factory.d01.humidity")
        .iter()
        .any(|(t, _)| *t == 1_026));
    assert_eq!(
        iotdb.all_points().values().map(Vec::len).sum::<usize>(),
        2_000 - 2 * 263 + 1
    );
}
