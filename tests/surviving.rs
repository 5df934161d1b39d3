//! `Sink::surviving`: of points a sink deleted, which the target still holds — exactly those
//! with a point of the same series (no more tags, no fewer) at the same time, with any of
//! their fields. Against the real InfluxDB 1.6, the InfluxDB 2 stand-in and the IoTDB
//! stand-in.

mod common;
#[path = "standins/influxdb2/mod.rs"]
mod influxdb2_standin;
#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tsmig::model::{Name, Point, Value};
use tsmig::sink::Sink;

/// 2026-01-01T00:00:00Z in ns.
const T0: i64 = 1_767_225_600_000_000_000;
const SECOND: i64 = 1_000_000_000;

fn point(measurement: &str, tags: &[(&str, &str)], fields: &[&str], time: i64) -> Point {
    let mut tags: Vec<(Name, tsmig::model::Text)> = tags
        .iter()
        .map(|(k, v)| (Name::from(*k), (*v).into()))
        .collect();
    tags.sort();
    Point {
        measurement: Name::from(measurement),
        tags,
        fields: fields
            .iter()
            .map(|f| (Name::from(*f), Value::Float(1.0)))
            .collect(),
        time,
        device_hash: 0,
    }
}

/// `job` parsed as tsmig-job would, with `env` for its `${VAR}`s.
fn parse_job(job: &Path, env: &[(&str, String)]) -> tsmig::job::Job {
    tsmig::job::Job::parse(job, &std::fs::read_to_string(job).unwrap(), |name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
}

/// The job's InfluxDB sink, told the tag keys of `sensors` and `other`.
fn influx_sink(job: &tsmig::job::Job) -> tsmig::connectors::influxdb::InfluxSink {
    let (config, batching) = tsmig::sink::parse_section::<
        tsmig::connectors::influxdb::sink_config::InfluxSinkConfig,
    >(job)
    .unwrap();
    tsmig::connectors::influxdb::InfluxSink::new(&config, &batching, vec![])
        .unwrap()
        .with_tag_keys(BTreeMap::from([
            (
                "sensors".to_string(),
                vec!["device_id".to_string(), "site".to_string()],
            ),
            ("other".to_string(), vec!["host".to_string()]),
        ]))
}

/// Sorted, for comparing sets of points.
fn sorted(mut points: Vec<Point>) -> Vec<Point> {
    points.sort();
    points
}

#[test]
fn influxdb_1_surviving_finds_exactly_the_points_a_delete_left() {
    let db = unique("surv");
    let _cleanup = Cleanup::default().database(&db);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    let job = parse_job(
        &sensor_job(&dir, "unused", &db, 1_000, "", ""),
        &[("MYSQL_PASSWORD", "tsmig".into())],
    );
    let sink = influx_sink(&job);
    let ns = |t: i64| t.to_string();
    influx_write(
        &db,
        &[
            format!(
                "sensors,device_id=a,site=s1 temperature=1,humidity=2 {}",
                ns(T0)
            ),
            format!(
                "sensors,device_id=a,site=s1 temperature=1 {}",
                ns(T0 + SECOND)
            ),
            format!(
                "sensors,device_id=a,site=s1 temperature=1 {}",
                ns(T0 + 2 * SECOND)
            ),
            // The same device without a site: another series.
            format!("sensors,device_id=a temperature=1 {}", ns(T0 + 3 * SECOND)),
            format!("other,host=h value=1 {}", ns(T0)),
            format!("other,host=h value=1 {}", ns(T0 + SECOND)),
        ]
        .join("\n"),
        "ns",
    );
    let s1 = [("device_id", "a"), ("site", "s1")];
    let deleted = vec![
        point("sensors", &s1, &["temperature"], T0 + SECOND),
        point("other", &[("host", "h")], &["value"], T0),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sink.delete(&deleted)).unwrap();

    let kept = vec![
        // One field asked, the point has two: it is there.
        point("sensors", &s1, &["temperature"], T0),
        point("sensors", &s1, &["temperature"], T0 + 2 * SECOND),
        point(
            "sensors",
            &[("device_id", "a")],
            &["temperature"],
            T0 + 3 * SECOND,
        ),
        point("other", &[("host", "h")], &["value"], T0 + SECOND),
    ];
    let absent = [
        // Another series of the same device at a time the other one has.
        point("sensors", &[("device_id", "a")], &["temperature"], T0),
        point("sensors", &s1, &["temperature"], T0 + 3 * SECOND),
        point("sensors", &s1, &["temperature"], T0 + 1),
        point("nothing", &[], &["f"], T0),
    ];
    let mut asked: Vec<Point> = deleted
        .iter()
        .chain(&kept)
        .chain(&absent)
        .cloned()
        .collect();
    asked.reverse();
    let surviving = rt.block_on(sink.surviving(&asked)).unwrap();
    assert_eq!(sorted(surviving), sorted(kept));
    assert_eq!(rt.block_on(sink.surviving(&[])).unwrap(), vec![]);
}

#[test]
fn influxdb_2_surviving_finds_exactly_the_points_a_delete_left_in_one_query() {
    use influxdb2_standin::{standin, Seen};
    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let mut s = seen.lock().unwrap();
        for line in [
            "sensors,device_id=a,site=s1 temperature=1,humidity=2 0",
            "sensors,device_id=a,site=s1 temperature=1 1000000000",
            "sensors,device_id=a,site=s1 temperature=1 2000000000",
            // A series with one tag more, and one with one fewer.
            "sensors,device_id=a,line=x,site=s1 temperature=1 3000000000",
            "sensors,device_id=a temperature=1 4000000000",
        ] {
            s.write_line(line, 1).unwrap();
        }
    }
    let port = standin(seen.clone());
    let dir = scratch(&unique("surv2"));
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: surv2\nsource:\n  type: mysql\n  url: mysql://tsmig:tsmig@127.0.0.1:13306/factory\n  tables: [{{name: unused, split_by: id}}]\nsink:\n  type: influxdb\n  version: 2\n  url: http://127.0.0.1:{port}\n  org: acme\n  bucket: plant\n  token: ${{INFLUX_TOKEN}}\nmappings:\n  - table: unused\n    measurement: sensors\n    device_field: device_id\n    timestamp_field: ts\n    tags: [site]\n    fields: [temperature]\ncheckpoint:\n  store: file:{}\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let job = parse_job(&job, &[("INFLUX_TOKEN", "secret-token".into())]);
    let sink = influx_sink(&job);
    let s1 = [("device_id", "a"), ("site", "s1")];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sink.delete(&[point("sensors", &s1, &["temperature"], SECOND)]))
        .unwrap();
    let queries_before = seen.lock().unwrap().requests.len();

    let kept = vec![
        point("sensors", &s1, &["temperature"], 0),
        point("sensors", &s1, &["temperature"], 2 * SECOND),
        point(
            "sensors",
            &[("device_id", "a")],
            &["temperature"],
            4 * SECOND,
        ),
    ];
    let absent = [
        // Deleted.
        point("sensors", &s1, &["temperature"], SECOND),
        // Only the series with one tag more has a point then.
        point("sensors", &s1, &["temperature"], 3 * SECOND),
        // Only the series with one tag fewer has a point then.
        point("sensors", &s1, &["temperature"], 4 * SECOND),
        point("sensors", &[("device_id", "a")], &["temperature"], 0),
    ];
    let asked: Vec<Point> = absent.iter().chain(&kept).cloned().collect();
    let surviving = rt.block_on(sink.surviving(&asked)).unwrap();
    assert_eq!(sorted(surviving), sorted(kept));
    let requests: Vec<String> = seen.lock().unwrap().requests[queries_before..].to_vec();
    assert_eq!(requests.len(), 1, "one query per measurement: {requests:?}");
    assert!(requests[0].starts_with("/api/v2/query?org=acme"));
}

#[test]
fn iotdb_surviving_finds_exactly_the_points_a_delete_left() {
    use iotdb_standin::IotdbStandIn;
    let table = unique("surviot");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 3_000);
    let iotdb = IotdbStandIn::start();
    let dir = scratch(&table);
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-iotdb-backfill.yaml");
    let env = [
        ("MYSQL_PASSWORD", "tsmig".to_string()),
        ("TSMIG_TABLE", table.clone()),
        ("IOTDB_PORT", iotdb.port().to_string()),
    ];
    let mut backfill = backfill_command(&job_file, "1");
    backfill
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k, v)));
    assert_ok(&backfill.output().unwrap());

    let job = parse_job(&job_file, &env);
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
    let device = |d: &str| format!("root.factory.`{d}`");
    // dev-0003 at 00:00:01 loses two of its four measurements; dev-0005 at 00:00:02 all.
    let dev3 = device("dev-0003");
    let dev5 = device("dev-0005");
    rt.block_on(sink.delete(&[
        point(&dev3, &[], &["temperature", "humidity"], T0 + SECOND),
        point(
            &dev5,
            &[],
            &["temperature", "humidity", "pressure", "status"],
            T0 + 2 * SECOND,
        ),
    ]))
    .unwrap();
    assert_eq!(iotdb.points(&format!("{dev3}.temperature")).len(), 2);

    let all = ["temperature", "humidity", "pressure", "status"];
    let kept = vec![
        // pressure is still there.
        point(&dev3, &[], &["temperature", "pressure"], T0 + SECOND),
        point(&dev3, &[], &all, T0),
        point(&device("dev-0004"), &[], &all, T0),
    ];
    let absent = [
        point(&dev3, &[], &["temperature", "humidity"], T0 + SECOND),
        point(&dev5, &[], &all, T0 + 2 * SECOND),
        // Never written: between two readings, finer than the sink's ms, another device.
        point(&device("dev-0004"), &[], &all, T0 + SECOND / 2),
        point(&device("dev-0004"), &[], &all, T0 + 1),
        point(&device("no-such-device"), &[], &all, T0),
    ];
    let asked: Vec<Point> = absent.iter().chain(&kept).cloned().collect();
    let surviving = rt.block_on(sink.surviving(&asked)).unwrap();
    assert_eq!(sorted(surviving), sorted(kept));
    // One query per device.
    assert_eq!(iotdb.calls("executeQueryStatement"), 4);
}
