//! `verify --repair`: after a backfill the test damages the target in every way verify
//! tells apart — a point deleted, a value changed, a stray point in an existing series (in
//! a compared bucket and in a bucket of its own), a stray series (one of them lacking a tag
//! that another series of its device has), a whole series dropped —
//! then `verify --repair` re-copies exactly the damaged series × buckets, prints them, and
//! exits 0 once a second verify is clean; and the target then holds exactly the source's
//! points, value for value. Against the real InfluxDB 1.6 and the IoTDB stand-in (the
//! InfluxDB 2 stand-in's case is in tests/influxdb_v2.rs). `--repair` with another mode,
//! or of a target verify cannot read back, is refused with exit 2.

mod common;
#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use common::*;
use iotdb_standin::{IotdbStandIn, StandInValue as V};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

/// 2026-01-01T00:00:00Z in ms: the sensor table's first second (row n is device n mod
/// 1000 at second n div 1000).
const T0: i64 = 1_767_225_600_000;

/// Runs `verify --repair` with `workers` workers and `env`; returns the exit code, stdout
/// and stderr.
fn verify_repair(job: &Path, env: &[(&str, String)], workers: &str) -> (i32, String, String) {
    let mut cmd = tsmig();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args([
            "-c",
            "verify",
            "--repair",
            "--config",
            job.to_str().unwrap(),
            "--workers",
            workers,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `verify: ...` lines of a run's output: the first verify's, then the second's.
fn verify_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("verify: "))
        .collect()
}

/// The `  repaired: ...` lines, sorted.
fn repaired_lines(stdout: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  repaired: "))
        .collect();
    lines.sort();
    lines
}

/// The one `repair: ...` total line.
fn total_line(stdout: &str) -> &str {
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("repair: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    lines[0]
}

/// Every row of `table` as the point InfluxDB should hold (time in ms), numbers as f64
/// (InfluxDB's JSON writes 45.0 as 45), sorted like [`influx_dump`].
fn expected_influx_points(table: &str) -> Vec<Json> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!(
            "SELECT device_id, site, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, \
             humidity, pressure, status FROM {table}"
        ),
    ]);
    let points = rows
        .into_iter()
        .map(|r| {
            type Row = (
                String,
                String,
                i64,
                Option<f64>,
                Option<f64>,
                Option<f64>,
                Option<i64>,
            );
            let (device, site, time, temperature, humidity, pressure, status): Row =
                mysql_async::from_row(r);
            let mut fields = serde_json::Map::new();
            for (k, v) in [
                ("temperature", temperature),
                ("humidity", humidity),
                ("pressure", pressure),
                ("status", status.map(|s| s as f64)),
            ] {
                if let Some(v) = v {
                    fields.insert(k.into(), json!(v));
                }
            }
            json!({"time": time, "tags": {"device_id": device, "site": site}, "fields": fields})
        })
        .collect();
    as_floats(points)
}

/// Numbers as f64, sorted.
fn as_floats(points: Vec<Json>) -> Vec<Json> {
    fn walk(v: Json) -> Json {
        match v {
            Json::Number(n) => json!(n.as_f64().unwrap()),
            Json::Object(m) => Json::Object(m.into_iter().map(|(k, v)| (k, walk(v))).collect()),
            Json::Array(a) => Json::Array(a.into_iter().map(walk).collect()),
            other => other,
        }
    }
    let mut out: Vec<Json> = points.into_iter().map(walk).collect();
    out.sort_by_key(|p| p.to_string());
    out
}

#[test]
fn influxdb_repair_recopies_exactly_the_damaged_windows_and_the_target_equals_the_source() {
    let table = unique("rep");
    let db = unique("rep");
    let _cleanup = Cleanup::default().table(&table).database(&db);
    load_sensor_table(&table, 5_000);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    let job = sensor_job(&dir, &table, &db, 1_000, "", "");
    assert_ok(&backfill_command(&job, "2").output().unwrap());
    let expected = expected_influx_points(&table);
    assert_eq!(expected.len(), 5_000);
    assert!(as_floats(influx_dump(&db, "sensors", "ms")) == expected);

    // Damage. Every device has five points, at seconds 0..4 (dev-0000: 1..5).
    // dev-0003's point at 00:00:00 deleted.
    influx_query(
        &db,
        &format!("DELETE FROM sensors WHERE device_id = 'dev-0003' AND time = {T0}ms"),
        "ns",
    );
    let later = T0 + 5 * 3_600_000;
    influx_write(
        &db,
        &[
            // dev-0005's temperature at 00:00:01 changed.
            format!(
                "sensors,device_id=dev-0005,site=site-5 temperature=99.5 {}",
                T0 + 1_000
            ),
            // A stray point in dev-0009's series, between two of its points.
            format!(
                "sensors,device_id=dev-0009,site=site-2 temperature=7 {}",
                T0 + 500
            ),
            // A stray point of dev-0011 five hours later: a bucket of its own.
            format!("sensors,device_id=dev-0011,site=site-4 temperature=8 {later}"),
            // A stray series.
            format!("sensors,device_id=stray,site=nowhere temperature=1 {T0}"),
            // A stray series without the site tag, beside dev-0013's own: its delete must
            // name `site` as '' to leave dev-0013's points alone.
            format!("sensors,device_id=dev-0013 temperature=3 {T0}"),
        ]
        .join("\n"),
        "ms",
    );
    // dev-0007 dropped whole.
    influx_query(
        &db,
        "DROP SERIES FROM sensors WHERE device_id = 'dev-0007'",
        "ns",
    );

    let (code, stdout, stderr) = verify_repair(&job, &[], "2");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        verify_lines(&stdout),
        vec![
            "verify: 1002 series, 1003 buckets compared: 996 matching, 1 missing in target, 3 extra in target, 3 differing",
            "verify: 1000 series, 1000 buckets compared: 1000 matching, 0 missing in target, 0 extra in target, 0 differing",
        ],
        "{stdout}"
    );
    assert_eq!(
        total_line(&stdout),
        "repair: 7 series × buckets repaired: 18 points removed, 20 written"
    );
    assert_eq!(
        repaired_lines(&stdout),
        vec![
            "  repaired: sensors,device_id=dev-0003,site=site-3 from 2026-01-01T00:00:00Z: 4 points removed, 5 written",
            "  repaired: sensors,device_id=dev-0005,site=site-5 from 2026-01-01T00:00:00Z: 5 points removed, 5 written",
            "  repaired: sensors,device_id=dev-0007,site=site-0 from 2026-01-01T00:00:00Z: 0 points removed, 5 written",
            "  repaired: sensors,device_id=dev-0009,site=site-2 from 2026-01-01T00:00:00Z: 6 points removed, 5 written",
            "  repaired: sensors,device_id=dev-0011,site=site-4 from 2026-01-01T05:00:00Z: 1 points removed, 0 written",
            "  repaired: sensors,device_id=dev-0013 from 2026-01-01T00:00:00Z: 1 points removed, 0 written",
            "  repaired: sensors,device_id=stray,site=nowhere from 2026-01-01T00:00:00Z: 1 points removed, 0 written",
        ],
        "{stdout}"
    );

    // Point by point, value by value, the target is the table again.
    let after = as_floats(influx_dump(&db, "sensors", "ms"));
    assert_eq!(after.len(), 5_000);
    assert!(after == expected, "the target differs from the table");
    let dev_0005 = influx_query(
        &db,
        &format!(
            "SELECT temperature FROM sensors WHERE device_id = 'dev-0005' AND time = {}ms",
            T0 + 1_000
        ),
        "ms",
    );
    let mysql: f64 = sql_value(&format!("SELECT temperature FROM {table} WHERE id = 1005"));
    assert_eq!(
        dev_0005["results"][0]["series"][0]["values"][0][1].as_f64(),
        Some(mysql)
    );

    // A plain verify, on 1 and 2 workers, agrees; and repairing a clean target does nothing.
    let (code, report) = verify(&job, &[]);
    assert_eq!(code, 0, "{report}");
    let (code, stdout, stderr) = verify_repair(&job, &[], "1");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        total_line(&stdout),
        "repair: 0 series × buckets repaired: 0 points removed, 0 written"
    );
    assert_eq!(verify_lines(&stdout).len(), 1, "no second verify: {stdout}");
}

/// The points the sensor table becomes in IoTDB: series path → (time ms, value), sorted.
fn expected_iotdb_points(table: &str) -> BTreeMap<String, Vec<(i64, V)>> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!(
            "SELECT device_id, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, \
             CAST(humidity AS CHAR), CAST(pressure AS CHAR), status FROM {table}"
        ),
    ]);
    let mut out: BTreeMap<String, Vec<(i64, V)>> = BTreeMap::new();
    for r in rows {
        type Row = (
            String,
            i64,
            Option<f64>,
            Option<String>,
            Option<String>,
            Option<i32>,
        );
        let (device, time, temperature, humidity, pressure, status): Row = mysql_async::from_row(r);
        let mut add = |m: &str, v: V| {
            out.entry(format!("root.factory.`{device}`.{m}"))
                .or_default()
                .push((time, v))
        };
        if let Some(v) = temperature {
            add("temperature", V::Double(v));
        }
        if let Some(v) = humidity {
            add("humidity", V::Float(v.parse().unwrap()));
        }
        if let Some(v) = pressure {
            add("pressure", V::Double(v.parse().unwrap()));
        }
        if let Some(v) = status {
            add("status", V::Int32(v));
        }
    }
    for points in out.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    out
}

#[test]
fn iotdb_repair_recopies_exactly_the_damaged_windows_and_the_target_equals_the_source() {
    use iotdb::client::{Session, Value};
    let table = unique("repiot");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 5_000);
    let standin = IotdbStandIn::start();
    let dir = scratch(&table);
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-iotdb-backfill.yaml");
    let env = [
        ("TSMIG_TABLE", table.clone()),
        ("IOTDB_PORT", standin.port().to_string()),
    ];
    let mut backfill = backfill_command(&job, "2");
    backfill
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k, v)));
    assert_ok(&backfill.output().unwrap());
    let expected = expected_iotdb_points(&table);
    assert!(standin.all_points() == expected);

    let mut session = iotdb::client::remote::RpcSession::new(iotdb::client::remote::Config {
        port: standin.port() as i32,
        ..Default::default()
    })
    .unwrap();
    session.open().unwrap();
    // dev-0003's point at 00:00:00 deleted, every measurement of it.
    session
        .delete_data(vec!["root.factory.`dev-0003`.*"], T0, T0)
        .unwrap();
    let later = T0 + 5 * 3_600_000;
    for (device, value, time) in [
        // dev-0005's temperature at 00:00:01 changed.
        ("root.factory.`dev-0005`", 99.5, T0 + 1_000),
        // A stray point in dev-0009, between two of its points.
        ("root.factory.`dev-0009`", 7.0, T0 + 500),
        // A stray point of dev-0011 five hours later: a bucket of its own.
        ("root.factory.`dev-0011`", 8.0, later),
        // A stray device.
        ("root.factory.stray", 1.0, T0),
    ] {
        session
            .insert_record(
                device,
                vec!["temperature"],
                vec![Value::Double(value)],
                time,
                false,
            )
            .unwrap();
    }
    // dev-0007's series dropped: the repair creates them again.
    session
        .delete_timeseries(vec!["root.factory.`dev-0007`.*"])
        .unwrap();
    assert!(standin
        .points("root.factory.`dev-0007`.temperature")
        .is_empty());

    let (code, stdout, stderr) = verify_repair(&job, &env, "2");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        verify_lines(&stdout),
        vec![
            "verify: 1001 series, 1002 buckets compared: 996 matching, 1 missing in target, 2 extra in target, 3 differing",
            "verify: 1000 series, 1000 buckets compared: 1000 matching, 0 missing in target, 0 extra in target, 0 differing",
        ],
        "{stdout}"
    );
    assert_eq!(
        total_line(&stdout),
        "repair: 6 series × buckets repaired: 17 points removed, 20 written"
    );
    assert_eq!(
        repaired_lines(&stdout),
        vec![
            "  repaired: root.factory.`dev-0003` from 2026-01-01T00:00:00Z: 4 points removed, 5 written",
            "  repaired: root.factory.`dev-0005` from 2026-01-01T00:00:00Z: 5 points removed, 5 written",
            "  repaired: root.factory.`dev-0007` from 2026-01-01T00:00:00Z: 0 points removed, 5 written",
            "  repaired: root.factory.`dev-0009` from 2026-01-01T00:00:00Z: 6 points removed, 5 written",
            "  repaired: root.factory.`dev-0011` from 2026-01-01T05:00:00Z: 1 points removed, 0 written",
            "  repaired: root.factory.stray from 2026-01-01T00:00:00Z: 1 points removed, 0 written",
        ],
        "{stdout}"
    );

    // Every series holds exactly the table's points; the stray ones hold none (their
    // series stay defined, as deleting data in IoTDB leaves them).
    let mut after = standin.all_points();
    assert_eq!(after.remove("root.factory.stray.temperature"), Some(vec![]));
    assert!(after == expected, "the target differs from the table");
    assert_eq!(
        standin.points("root.factory.`dev-0005`.temperature"),
        expected["root.factory.`dev-0005`.temperature"]
    );
    let (code, report) = verify(&job, &env);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn repair_of_a_target_verify_cannot_read_is_refused_with_exit_2() {
    let table = unique("repts");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-timestream.yaml");
    let (code, stdout, stderr) = verify_repair(&job, &[("TSMIG_TABLE", table.clone())], "1");
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "error: verify cannot read Timestream back yet (it needs the Timestream Query API), so it cannot --repair it either"
    );
    assert!(
        stdout.is_empty(),
        "nothing verified, nothing repaired: {stdout}"
    );
}

#[test]
fn repair_with_any_mode_but_verify_is_refused_with_exit_2() {
    let dir = scratch(&unique("repmode"));
    let job = sensor_job(&dir, "no_such_table", "no_such_db", 1_000, "", "");
    for mode in [
        "backfill",
        "cdc",
        "backfill+cdc",
        "backfill+follow",
        "ingest",
    ] {
        let out = run(&["-c", mode, "--repair", "--config", job.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{mode}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.lines().last().unwrap_or_default(),
            format!("error: --repair works only with -c verify (it re-copies what verify finds different), not with -c {mode}"),
            "{mode}"
        );
    }
}
