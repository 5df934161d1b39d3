//! The IoTDB stand-in (tests/standins/iotdb/) driven by the real `iotdb-client-rs`
//! client, so what it answers is what the client reads off the wire: sessions,
//! databases, time series, tablets and records landing with exact timestamps and
//! typed values, point and range deletes, IoTDB's status for a type conflict, and the
//! failures a test injects; back-quoted path nodes and IoTDB's 509 for a node that
//! needs quotes and has none; TTL per database; auto-created databases and the statuses
//! for existing databases and series. What the client cannot send (an aligned tablet,
//! nulls in a tablet's bitmap, a call without a session) or cannot read (the
//! sub-statuses of a 302) goes through a small hand-made Thrift caller that writes the
//! fields by their ids in IoTDB's client.thrift.

#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use iotdb::client::remote::{Config, RpcSession};
use iotdb::client::{DataSet, MeasurementSchema, Session, Tablet, Value};
use iotdb::protocal::{TSCompressionType, TSDataType, TSEncoding};
use iotdb_standin::{status, IotdbStandIn, Options, SeriesInfo, StandInDataType, StandInValue};
use std::time::{Duration, Instant};

fn config(standin: &IotdbStandIn) -> Config {
    Config {
        port: i32::from(standin.port()),
        ..Config::default()
    }
}

fn session(standin: &IotdbStandIn) -> RpcSession {
    let mut session = RpcSession::new(config(standin)).expect("connect to the stand-in");
    session.open().expect("open a session");
    session
}

/// The client's error text for a failed call.
fn error_of<T>(result: iotdb::client::Result<T>) -> String {
    match result {
        Ok(_) => panic!("the call should have failed"),
        Err(e) => e.to_string(),
    }
}

fn schema(name: &str, data_type: TSDataType) -> MeasurementSchema {
    MeasurementSchema::new(
        name.into(),
        data_type,
        TSEncoding::Plain,
        TSCompressionType::SNAPPY,
        None,
    )
}

fn series_info(
    path: &str,
    data_type: StandInDataType,
    encoding: &str,
    compressor: &str,
) -> SeriesInfo {
    SeriesInfo {
        path: path.into(),
        data_type,
        encoding: encoding.into(),
        compressor: compressor.into(),
    }
}

/// Rows of a query as (time, values without the time column).
fn rows(data_set: Box<dyn DataSet + '_>) -> Vec<(i64, Vec<Value>)> {
    let skip = usize::from(!data_set.is_ignore_timestamp());
    data_set
        .map(|r| (r.timestamp, r.values.into_iter().skip(skip).collect()))
        .collect()
}

#[test]
fn a_session_opens_with_the_right_password_only() {
    let standin = IotdbStandIn::start_with(Options {
        user: "migrator".into(),
        password: "s3cret".into(),
        ..Options::default()
    });
    let mut wrong = RpcSession::new(Config {
        username: "migrator".into(),
        password: "guess".into(),
        ..config(&standin)
    })
    .unwrap();
    let error = error_of(wrong.open());
    assert!(
        error.contains(&format!("code: {}", status::WRONG_LOGIN_PASSWORD)),
        "{error}"
    );

    let mut right = RpcSession::new(Config {
        username: "migrator".into(),
        password: "s3cret".into(),
        ..config(&standin)
    })
    .unwrap();
    right.open().unwrap();
    assert_eq!(right.get_time_zone().unwrap(), "Asia/Shanghai");
    right.set_time_zone("UTC").unwrap();
    assert_eq!(right.get_time_zone().unwrap(), "UTC");
    right.close().unwrap();
    assert_eq!(standin.calls("openSession"), 2);
    assert_eq!(standin.calls("closeSession"), 1);
}

#[test]
fn databases_are_created_listed_refused_twice_and_deleted() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session.set_storage_group("root.factory").unwrap();
    let error = error_of(session.set_storage_group("root.factory"));
    assert!(
        error.contains(&format!("code: {}", status::DATABASE_ALREADY_EXISTS)),
        "{error}"
    );
    let error = error_of(session.set_storage_group("root.factory.hall"));
    assert!(
        error.contains("root.factory has already been created as database"),
        "{error}"
    );

    assert!(session
        .execute_update_statement("CREATE DATABASE root.plant")
        .unwrap()
        .is_none());
    assert!(session
        .execute_update_statement("set storage group to root.yard;")
        .unwrap()
        .is_none());
    assert_eq!(
        standin.databases(),
        ["root.factory", "root.plant", "root.yard"]
    );

    let listed = rows(
        session
            .execute_query_statement("SHOW DATABASES", None)
            .unwrap(),
    );
    let names: Vec<Value> = listed.into_iter().flat_map(|(_, values)| values).collect();
    assert_eq!(
        names,
        ["root.factory", "root.plant", "root.yard"].map(|n| Value::Text(n.into()))
    );

    session
        .insert_record("root.plant.d1", vec!["s"], vec![Value::Int32(1)], 1, None)
        .unwrap();
    session
        .delete_storage_groups(vec!["root.plant", "root.yard"])
        .unwrap();
    assert_eq!(standin.databases(), ["root.factory"]);
    assert!(
        standin.all_points().is_empty(),
        "a deleted database takes its series"
    );
    let error = error_of(session.delete_storage_group("root.nowhere"));
    assert!(
        error.contains(&format!("code: {}", status::PATH_NOT_EXIST)),
        "{error}"
    );
}

#[test]
fn series_created_one_by_one_and_many_at_once_keep_their_schema() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session.set_storage_group("root.factory").unwrap();
    session
        .create_timeseries(
            "root.factory.d1.temperature",
            TSDataType::Double,
            TSEncoding::Gorilla,
            TSCompressionType::SNAPPY,
            None,
            None,
            None,
            None,
        )
        .unwrap();
    session
        .create_multi_timeseries(
            vec!["root.factory.d1.status", "root.factory.d2.label"],
            vec![TSDataType::Int32, TSDataType::Text],
            vec![TSEncoding::RLE, TSEncoding::Plain],
            vec![TSCompressionType::LZ4, TSCompressionType::UNCOMPRESSED],
            None,
            None,
            None,
            None,
        )
        .unwrap();
    assert_eq!(
        standin.series(),
        [
            series_info(
                "root.factory.d1.status",
                StandInDataType::Int32,
                "RLE",
                "LZ4"
            ),
            series_info(
                "root.factory.d1.temperature",
                StandInDataType::Double,
                "GORILLA",
                "SNAPPY"
            ),
            series_info(
                "root.factory.d2.label",
                StandInDataType::Text,
                "PLAIN",
                "UNCOMPRESSED"
            ),
        ]
    );
    assert_eq!(standin.is_aligned("root.factory.d1"), Some(false));

    let error = error_of(session.create_timeseries(
        "root.factory.d1.temperature",
        TSDataType::Float,
        TSEncoding::Plain,
        TSCompressionType::SNAPPY,
        None,
        None,
        None,
        None,
    ));
    assert!(
        error.contains(&format!("code: {}", status::TIMESERIES_ALREADY_EXIST)),
        "{error}"
    );
    // A batch with an existing path fails as a whole status but creates the others.
    let error = error_of(session.create_multi_timeseries(
        vec!["root.factory.d1.status", "root.factory.d3.speed"],
        vec![TSDataType::Int32, TSDataType::Float],
        vec![TSEncoding::RLE, TSEncoding::Gorilla],
        vec![TSCompressionType::LZ4, TSCompressionType::LZ4],
        None,
        None,
        None,
        None,
    ));
    assert!(
        error.contains(&format!("code: {}", status::MULTIPLE_ERROR)),
        "{error}"
    );
    assert!(standin
        .series()
        .iter()
        .any(|s| s.path == "root.factory.d3.speed"));

    let listed = rows(
        session
            .execute_query_statement("SHOW TIMESERIES root.factory.d1.*", None)
            .unwrap(),
    );
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[1].1[0],
        Value::Text("root.factory.d1.temperature".into())
    );
    assert_eq!(listed[1].1[3], Value::Text("DOUBLE".into()));
    let counted = rows(
        session
            .execute_query_statement("COUNT TIMESERIES", None)
            .unwrap(),
    );
    assert_eq!(counted, [(0, vec![Value::Int64(4)])]);

    session
        .delete_timeseries(vec!["root.factory.d3.**"])
        .unwrap();
    assert_eq!(standin.series().len(), 3);
}

#[test]
fn a_tablet_lands_with_exact_timestamps_and_typed_values() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let mut tablet = Tablet::new(
        "root.factory.d1",
        vec![
            schema("running", TSDataType::Boolean),
            schema("status", TSDataType::Int32),
            schema("counter", TSDataType::Int64),
            schema("humidity", TSDataType::Float),
            schema("temperature", TSDataType::Double),
            schema("label", TSDataType::Text),
        ],
    );
    let t0 = 1_700_000_000_000_i64;
    for (i, t) in [t0, t0 + 1000, t0 + 2000].into_iter().enumerate() {
        let i32v = i as i32;
        tablet
            .add_row(
                vec![
                    Value::Bool(i % 2 == 0),
                    Value::Int32(-7 + i32v),
                    Value::Int64(i64::MAX - i as i64),
                    Value::Float(0.1 + i as f32),
                    Value::Double(20.25 + i as f64),
                    Value::Text(format!("ünit-{i}")),
                ],
                t,
            )
            .unwrap();
    }
    session.insert_tablet(&tablet).unwrap();

    let times = [t0, t0 + 1000, t0 + 2000];
    let expect = |f: fn(usize) -> StandInValue| -> Vec<(i64, StandInValue)> {
        times.iter().enumerate().map(|(i, t)| (*t, f(i))).collect()
    };
    assert_eq!(
        standin.points("root.factory.d1.running"),
        expect(|i| StandInValue::Boolean(i % 2 == 0))
    );
    assert_eq!(
        standin.points("root.factory.d1.status"),
        expect(|i| StandInValue::Int32(-7 + i as i32))
    );
    assert_eq!(
        standin.points("root.factory.d1.counter"),
        expect(|i| StandInValue::Int64(i64::MAX - i as i64))
    );
    assert_eq!(
        standin.points("root.factory.d1.humidity"),
        expect(|i| StandInValue::Float(0.1 + i as f32))
    );
    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        expect(|i| StandInValue::Double(20.25 + i as f64))
    );
    assert_eq!(
        standin.points("root.factory.d1.label"),
        expect(|i| StandInValue::Text(format!("ünit-{i}")))
    );
    // Auto-created as IoTDB does: database at level 1, series typed by the tablet.
    assert_eq!(standin.databases(), ["root.factory"]);
    assert_eq!(standin.is_aligned("root.factory.d1"), Some(false));
    assert_eq!(standin.series().len(), 6);
    assert_eq!(standin.calls("insertTablet"), 1);
}

#[test]
fn tablets_of_several_devices_land_in_one_call() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let mut first = Tablet::new(
        "root.factory.d1",
        vec![schema("temperature", TSDataType::Double)],
    );
    first.add_row(vec![Value::Double(21.5)], 10).unwrap();
    first.add_row(vec![Value::Double(22.5)], 20).unwrap();
    let mut second = Tablet::new("root.plant.d2", vec![schema("status", TSDataType::Int64)]);
    second.add_row(vec![Value::Int64(3)], 15).unwrap();
    session.insert_tablets(vec![&first, &second]).unwrap();

    let all = standin.all_points();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all["root.factory.d1.temperature"],
        [
            (10, StandInValue::Double(21.5)),
            (20, StandInValue::Double(22.5))
        ]
    );
    assert_eq!(all["root.plant.d2.status"], [(15, StandInValue::Int64(3))]);
    assert_eq!(standin.databases(), ["root.factory", "root.plant"]);
    assert_eq!(standin.calls("insertTablets"), 1);
}

#[test]
fn records_land_typed_and_string_records_take_their_series_type() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session
        .insert_record(
            "root.factory.d1",
            vec!["temperature", "status", "label"],
            vec![
                Value::Double(19.5),
                Value::Int32(2),
                Value::Text("ok".into()),
            ],
            100,
            None,
        )
        .unwrap();
    session
        .insert_records(
            vec!["root.factory.d1", "root.factory.d2"],
            vec![vec!["temperature"], vec!["running"]],
            vec![vec![Value::Double(20.0)], vec![Value::Bool(true)]],
            vec![200, 200],
        )
        .unwrap();
    session
        .insert_records_of_one_device(
            "root.factory.d1",
            vec![400, 300],
            vec![vec!["temperature"], vec!["temperature"]],
            vec![vec![Value::Double(22.0)], vec![Value::Double(21.0)]],
            false,
        )
        .unwrap();
    // A string value is parsed into the type of its series...
    session
        .insert_string_record("root.factory.d1", vec!["status"], vec!["5"], 500, None)
        .unwrap();
    // ...and a new series gets IoTDB's inferred type (numbers → DOUBLE).
    session
        .insert_string_record(
            "root.factory.d3",
            vec!["speed", "on"],
            vec!["12", "true"],
            600,
            true,
        )
        .unwrap();

    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        [(100, 19.5), (200, 20.0), (300, 21.0), (400, 22.0)]
            .map(|(t, v)| (t, StandInValue::Double(v)))
    );
    assert_eq!(
        standin.points("root.factory.d1.status"),
        [(100, StandInValue::Int32(2)), (500, StandInValue::Int32(5))]
    );
    assert_eq!(
        standin.points("root.factory.d1.label"),
        [(100, StandInValue::Text("ok".into()))]
    );
    assert_eq!(
        standin.points("root.factory.d2.running"),
        [(200, StandInValue::Boolean(true))]
    );
    assert_eq!(
        standin.points("root.factory.d3.speed"),
        [(600, StandInValue::Double(12.0))]
    );
    assert_eq!(
        standin.points("root.factory.d3.on"),
        [(600, StandInValue::Boolean(true))]
    );
    assert_eq!(standin.is_aligned("root.factory.d3"), Some(true));
    assert_eq!(standin.is_aligned("root.factory.d1"), Some(false));
    let types: Vec<(String, StandInDataType)> = standin
        .series()
        .into_iter()
        .map(|s| (s.path, s.data_type))
        .collect();
    assert!(types.contains(&("root.factory.d1.label".into(), StandInDataType::Text)));
    assert!(types.contains(&("root.factory.d3.speed".into(), StandInDataType::Double)));
}

#[test]
fn deleting_one_timestamp_removes_exactly_that_point_and_a_range_everything_up_to_it() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let mut tablet = Tablet::new(
        "root.factory.d1",
        vec![
            schema("a", TSDataType::Int64),
            schema("b", TSDataType::Int64),
        ],
    );
    for t in 1..=5 {
        tablet
            .add_row(vec![Value::Int64(t), Value::Int64(10 * t)], t)
            .unwrap();
    }
    session.insert_tablet(&tablet).unwrap();

    session
        .delete_data(vec!["root.factory.d1.a"], 3, 3)
        .unwrap();
    let times =
        |path: &str| -> Vec<i64> { standin.points(path).into_iter().map(|(t, _)| t).collect() };
    assert_eq!(times("root.factory.d1.a"), [1, 2, 4, 5]);
    assert_eq!(
        times("root.factory.d1.b"),
        [1, 2, 3, 4, 5],
        "only the named series"
    );

    // Java's two-argument deleteData(paths, endTime) is (Long.MIN_VALUE, endTime).
    session
        .delete_data(vec!["root.factory.d1.*"], i64::MIN, 4)
        .unwrap();
    assert_eq!(
        standin.points("root.factory.d1.a"),
        [(5, StandInValue::Int64(5))]
    );
    assert_eq!(
        standin.points("root.factory.d1.b"),
        [(5, StandInValue::Int64(50))]
    );
    // Deleting under a path with no series is no error, as in IoTDB 1.x.
    session
        .delete_data(vec!["root.nowhere.d9.x"], 0, 10)
        .unwrap();
}

#[test]
fn a_value_of_another_type_is_refused_with_iotdbs_status_and_the_rest_lands() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session
        .insert_record(
            "root.factory.d1",
            vec!["count"],
            vec![Value::Int64(1)],
            1,
            None,
        )
        .unwrap();
    let error = error_of(session.insert_record(
        "root.factory.d1",
        vec!["count", "temperature"],
        vec![Value::Double(2.5), Value::Double(20.0)],
        2,
        None,
    ));
    assert!(
        error.starts_with(&format!("code: {}", status::METADATA_ERROR)),
        "{error}"
    );
    assert!(
        error.contains(
            "Fail to insert measurements [count] caused by [data type of root.factory.d1.count \
             is not consistent, registered type INT64, inserting type DOUBLE, timestamp 2, value 2.5]"
        ),
        "{error}"
    );
    assert_eq!(
        standin.points("root.factory.d1.count"),
        [(1, StandInValue::Int64(1))]
    );
    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        [(2, StandInValue::Double(20.0))]
    );

    let mut tablet = Tablet::new("root.factory.d1", vec![schema("count", TSDataType::Text)]);
    tablet
        .add_row(vec![Value::Text("three".into())], 3)
        .unwrap();
    let error = error_of(session.insert_tablet(&tablet));
    assert!(
        error.contains("registered type INT64, inserting type TEXT"),
        "{error}"
    );
    let error = error_of(session.insert_string_record(
        "root.factory.d1",
        vec!["count"],
        vec!["many"],
        4,
        None,
    ));
    assert!(
        error.contains("Fail to insert measurements [count]"),
        "{error}"
    );
    assert_eq!(
        standin.points("root.factory.d1.count"),
        [(1, StandInValue::Int64(1))]
    );
}

#[test]
fn without_auto_create_schema_a_missing_database_is_refused() {
    let standin = IotdbStandIn::start_with(Options {
        auto_create_schema: false,
        ..Options::default()
    });
    let mut session = session(&standin);
    let error = error_of(session.insert_record(
        "root.factory.d1",
        vec!["x"],
        vec![Value::Int32(1)],
        1,
        None,
    ));
    assert!(
        error.contains(&format!("code: {}", status::DATABASE_NOT_EXIST)),
        "{error}"
    );
    session.set_storage_group("root.factory").unwrap();
    let error = error_of(session.insert_record(
        "root.factory.d1",
        vec!["x"],
        vec![Value::Int32(1)],
        1,
        None,
    ));
    assert!(
        error.contains("Path [root.factory.d1.x] does not exist"),
        "{error}"
    );
    assert!(standin.all_points().is_empty());
}

#[test]
fn injected_failures_reach_the_client_and_write_nothing() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let tablet = |t: i64| {
        let mut tablet = Tablet::new(
            "root.factory.d1",
            vec![schema("temperature", TSDataType::Double)],
        );
        tablet.add_row(vec![Value::Double(t as f64)], t).unwrap();
        tablet
    };
    standin.fail_next(2, status::WRITE_PROCESS_REJECT);
    for t in [1, 2] {
        let error = error_of(session.insert_tablet(&tablet(t)));
        assert!(
            error.starts_with(&format!("code: {}", status::WRITE_PROCESS_REJECT)),
            "{error}"
        );
    }
    session.insert_tablet(&tablet(3)).unwrap();
    assert_eq!(standin.calls("insertTablet"), 3);
    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        [(3, StandInValue::Double(3.0))]
    );

    // A hang-up mid-call: the client sees a broken call and nothing was written.
    standin.hang_up_next(1);
    assert!(session.insert_tablet(&tablet(4)).is_err());
    let mut again = self::session(&standin);
    again.insert_tablet(&tablet(5)).unwrap();
    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        [
            (3, StandInValue::Double(3.0)),
            (5, StandInValue::Double(5.0))
        ]
    );
}

#[test]
fn refused_connections_are_seen_by_the_client_then_it_gets_in() {
    let standin = IotdbStandIn::start();
    standin.refuse_connections(2);
    for _ in 0..2 {
        let refused = RpcSession::new(config(&standin)).and_then(|mut s| {
            s.open()?;
            Ok(s)
        });
        assert!(refused.is_err());
    }
    session(&standin).set_storage_group("root.factory").unwrap();
    assert_eq!(
        standin.calls("openSession"),
        1,
        "refused connections never reach a call"
    );
}

#[test]
fn a_delay_slows_every_call() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    standin.delay(Duration::from_millis(150));
    let started = Instant::now();
    session.set_storage_group("root.factory").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    standin.delay(Duration::ZERO);
}

#[test]
fn no_call_waits_for_a_delayed_ack() {
    // A request frame whose length and body leave in two writes, with Nagle's algorithm on
    // the client's socket, waits for the server's delayed ACK of the length (40 ms on
    // Linux) before its body leaves: 50 calls took 2 s. The client sends each frame in one
    // write with TCP_NODELAY (vendor/iotdb-client-rs/TSMIG-PATCH.md), as IoTDB's own Java
    // client does; the stand-in answers at once, so 50 calls take milliseconds.
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let started = Instant::now();
    for t in 0..50 {
        let mut tablet = Tablet::new("root.factory.d1", vec![schema("v", TSDataType::Int64)]);
        tablet.add_row(vec![Value::Int64(t)], t).unwrap();
        session.insert_tablet(&tablet).unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(standin.points("root.factory.d1.v").len(), 50);
    assert_eq!(standin.calls("insertTablet"), 50);
    // 50 × 40 ms is 2 s; a loaded machine answers 50 calls in far less than 1 s.
    assert!(
        elapsed < Duration::from_secs(1),
        "50 calls took {elapsed:?}: a call waits for a delayed ACK"
    );
}

#[test]
fn the_compact_protocol_is_answered_too() {
    let standin = IotdbStandIn::start();
    let mut session = RpcSession::new(Config {
        enable_compression: true,
        ..config(&standin)
    })
    .unwrap();
    session.open().unwrap();
    let mut tablet = Tablet::new(
        "root.factory.d1",
        vec![schema("running", TSDataType::Boolean)],
    );
    tablet.add_row(vec![Value::Bool(true)], 7).unwrap();
    session.insert_tablet(&tablet).unwrap();
    assert_eq!(
        standin.points("root.factory.d1.running"),
        [(7, StandInValue::Boolean(true))]
    );
}

#[test]
fn a_select_reads_back_what_was_written_across_fetches() {
    let standin = IotdbStandIn::start();
    let mut session = RpcSession::new(Config {
        fetch_size: 2,
        ..config(&standin)
    })
    .unwrap();
    session.open().unwrap();
    let mut tablet = Tablet::new(
        "root.factory.d1",
        vec![
            schema("status", TSDataType::Int32),
            schema("label", TSDataType::Text),
        ],
    );
    for t in 1..=5 {
        tablet
            .add_row(
                vec![Value::Int32(t as i32), Value::Text(format!("r{t}"))],
                t,
            )
            .unwrap();
    }
    session.insert_tablet(&tablet).unwrap();
    session
        .insert_record(
            "root.factory.d1",
            vec!["status"],
            vec![Value::Int32(6)],
            6,
            None,
        )
        .unwrap();

    let read = rows(
        session
            .execute_query_statement("SELECT status, label FROM root.factory.d1", None)
            .unwrap(),
    );
    let mut expected: Vec<(i64, Vec<Value>)> = (1..=5)
        .map(|t| {
            (
                t,
                vec![Value::Int32(t as i32), Value::Text(format!("r{t}"))],
            )
        })
        .collect();
    expected.push((6, vec![Value::Int32(6), Value::Null]));
    assert_eq!(read, expected);
    assert!(
        standin.calls("fetchResults") >= 3,
        "six rows, two per fetch"
    );
    assert_eq!(standin.calls("closeOperation"), 1);
}

#[test]
fn calls_the_stand_in_does_not_implement_say_so() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let error = error_of(session.execute_raw_data_query(vec!["root.factory.d1.s"], 0, 10));
    assert!(
        error.contains("not implemented by the stand-in: executeRawDataQuery"),
        "{error}"
    );
    let error = error_of(session.execute_update_statement("FLUSH"));
    assert!(
        error.contains("not implemented by the stand-in: statement `FLUSH`"),
        "{error}"
    );
    assert!(
        error.contains(&format!("code: {}", status::UNSUPPORTED_OPERATION)),
        "{error}"
    );
}

#[test]
fn the_stand_in_stops_when_dropped() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    drop(standin);
    assert!(session.set_storage_group("root.factory").is_err());
}

/// A Thrift caller that writes requests field by field, by the ids of IoTDB's
/// client.thrift, for what iotdb-client-rs cannot send.
mod raw {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use thrift::protocol::{
        TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol,
        TListIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier,
        TType,
    };

    pub struct Caller {
        stream: TcpStream,
        seq: i32,
    }

    /// A TSStatus as read off the wire.
    #[derive(Debug)]
    pub struct RawStatus {
        pub code: i32,
        pub message: Option<String>,
        pub sub_status: Vec<RawStatus>,
        /// `4: TEndPoint redirectNode` (ip, port).
        pub redirect_node: Option<(String, i32)>,
    }

    pub enum Field<'a> {
        I32(i32),
        I64(i64),
        Bool(bool),
        Str(&'a str),
        Bytes(&'a [u8]),
        Strs(&'a [&'a str]),
        I32s(&'a [i32]),
        I64s(&'a [i64]),
        StrLists(&'a [&'a [&'a str]]),
    }

    impl Caller {
        pub fn connect(port: u16) -> Caller {
            Caller {
                stream: TcpStream::connect(("127.0.0.1", port)).unwrap(),
                seq: 0,
            }
        }

        /// Calls `method(1: <struct with fields>)` and returns the code of the TSStatus
        /// in its answer (the result itself, or field 1 of the result struct).
        pub fn call(&mut self, method: &str, fields: &[(i16, Field)]) -> i32 {
            self.call_status(method, fields).code
        }

        /// Opens a session as root/root with IoTDB 1.x's protocol version.
        pub fn open_session(&mut self) {
            let code = self.call(
                "openSession",
                &[
                    (1, Field::I32(2)),
                    (2, Field::Str("UTC")),
                    (3, Field::Str("root")),
                    (4, Field::Str("root")),
                ],
            );
            assert_eq!(code, 200, "openSession");
        }

        /// Like `call`, with the whole TSStatus: code, message and sub-statuses.
        pub fn call_status(&mut self, method: &str, fields: &[(i16, Field)]) -> RawStatus {
            self.seq += 1;
            let mut payload = Vec::new();
            {
                let mut o = TBinaryOutputProtocol::new(&mut payload, true);
                o.write_message_begin(&TMessageIdentifier::new(
                    method,
                    TMessageType::Call,
                    self.seq,
                ))
                .unwrap();
                o.write_struct_begin(&TStructIdentifier::new("args"))
                    .unwrap();
                o.write_field_begin(&TFieldIdentifier::new("req", TType::Struct, 1))
                    .unwrap();
                o.write_struct_begin(&TStructIdentifier::new("req"))
                    .unwrap();
                for (id, field) in fields {
                    write_field(&mut o, *id, field);
                }
                o.write_field_stop().unwrap();
                o.write_struct_end().unwrap();
                o.write_field_end().unwrap();
                o.write_field_stop().unwrap();
                o.write_struct_end().unwrap();
                o.write_message_end().unwrap();
                o.flush().unwrap();
            }
            self.stream
                .write_all(&(payload.len() as i32).to_be_bytes())
                .unwrap();
            self.stream.write_all(&payload).unwrap();

            let mut length = [0u8; 4];
            self.stream.read_exact(&mut length).unwrap();
            let mut frame = vec![0u8; i32::from_be_bytes(length) as usize];
            self.stream.read_exact(&mut frame).unwrap();
            let mut i = TBinaryInputProtocol::new(&frame[..], true);
            let header = i.read_message_begin().unwrap();
            assert_eq!(header.message_type, TMessageType::Reply, "{method}");
            assert_eq!(header.sequence_number, self.seq);
            i.read_struct_begin().unwrap();
            let success = i.read_field_begin().unwrap();
            assert_eq!((success.id, success.field_type), (Some(0), TType::Struct));
            read_status(&mut i)
        }
    }

    fn write_field(o: &mut dyn TOutputProtocol, id: i16, field: &Field) {
        let ty = match field {
            Field::I32(_) => TType::I32,
            Field::I64(_) => TType::I64,
            Field::Bool(_) => TType::Bool,
            Field::Str(_) | Field::Bytes(_) => TType::String,
            Field::Strs(_) | Field::I32s(_) | Field::I64s(_) | Field::StrLists(_) => TType::List,
        };
        o.write_field_begin(&TFieldIdentifier::new("f", ty, id))
            .unwrap();
        match field {
            Field::I32(v) => o.write_i32(*v).unwrap(),
            Field::I64(v) => o.write_i64(*v).unwrap(),
            Field::Bool(v) => o.write_bool(*v).unwrap(),
            Field::Str(v) => o.write_string(v).unwrap(),
            Field::Bytes(v) => o.write_bytes(v).unwrap(),
            Field::Strs(v) => {
                o.write_list_begin(&TListIdentifier::new(TType::String, v.len() as i32))
                    .unwrap();
                v.iter().for_each(|s| o.write_string(s).unwrap());
                o.write_list_end().unwrap();
            }
            Field::I32s(v) => {
                o.write_list_begin(&TListIdentifier::new(TType::I32, v.len() as i32))
                    .unwrap();
                v.iter().for_each(|n| o.write_i32(*n).unwrap());
                o.write_list_end().unwrap();
            }
            Field::I64s(v) => {
                o.write_list_begin(&TListIdentifier::new(TType::I64, v.len() as i32))
                    .unwrap();
                v.iter().for_each(|n| o.write_i64(*n).unwrap());
                o.write_list_end().unwrap();
            }
            Field::StrLists(v) => {
                o.write_list_begin(&TListIdentifier::new(TType::List, v.len() as i32))
                    .unwrap();
                for list in v.iter() {
                    o.write_list_begin(&TListIdentifier::new(TType::String, list.len() as i32))
                        .unwrap();
                    list.iter().for_each(|s| o.write_string(s).unwrap());
                    o.write_list_end().unwrap();
                }
                o.write_list_end().unwrap();
            }
        }
        o.write_field_end().unwrap();
    }

    /// Reads a struct that is a TSStatus (1: code, 2: message, 3: subStatus, 4:
    /// redirectNode) or holds one at field 1.
    fn read_status(i: &mut dyn TInputProtocol) -> RawStatus {
        i.read_struct_begin().unwrap();
        let mut status = None;
        let (mut code, mut message, mut sub_status) = (None, None, Vec::new());
        let mut redirect_node = None;
        loop {
            let field = i.read_field_begin().unwrap();
            match (field.id, field.field_type) {
                (_, TType::Stop) => break,
                (Some(1), TType::I32) => code = Some(i.read_i32().unwrap()),
                (Some(1), TType::Struct) => status = Some(read_status(i)),
                (Some(2), TType::String) => message = Some(i.read_string().unwrap()),
                (Some(3), TType::List) => {
                    let list = i.read_list_begin().unwrap();
                    for _ in 0..list.size {
                        sub_status.push(read_status(i));
                    }
                    i.read_list_end().unwrap();
                }
                (Some(4), TType::Struct) => redirect_node = Some(read_end_point(i)),
                (_, ty) => i.skip(ty).unwrap(),
            }
            i.read_field_end().unwrap();
        }
        i.read_struct_end().unwrap();
        status.unwrap_or_else(|| RawStatus {
            code: code.expect("a status code"),
            message,
            sub_status,
            redirect_node,
        })
    }

    /// common.thrift's TEndPoint: 1 ip, 2 port.
    fn read_end_point(i: &mut dyn TInputProtocol) -> (String, i32) {
        i.read_struct_begin().unwrap();
        let (mut ip, mut port) = (String::new(), 0);
        loop {
            let field = i.read_field_begin().unwrap();
            match (field.id, field.field_type) {
                (_, TType::Stop) => break,
                (Some(1), TType::String) => ip = i.read_string().unwrap(),
                (Some(2), TType::I32) => port = i.read_i32().unwrap(),
                (_, ty) => i.skip(ty).unwrap(),
            }
            i.read_field_end().unwrap();
        }
        i.read_struct_end().unwrap();
        (ip, port)
    }
}

#[test]
fn an_aligned_tablet_with_nulls_in_its_bitmaps_lands_without_them() {
    use raw::Field;
    let standin = IotdbStandIn::start();
    let mut caller = raw::Caller::connect(standin.port());
    let code = caller.call(
        "openSession",
        &[
            (1, Field::I32(2)),
            (2, Field::Str("UTC")),
            (3, Field::Str("root")),
            (4, Field::Str("root")),
        ],
    );
    assert_eq!(code, status::SUCCESS_STATUS);

    // Three rows of (a INT64, b TEXT); a is null at row 1, b at row 2. The layout is
    // IoTDB's: column-major big-endian values with placeholders under the nulls, then
    // per column a has-bitmap byte and size/8+1 bytes, bit (row % 8) set = null.
    let mut values = Vec::new();
    for a in [10_i64, 0, 30] {
        values.extend_from_slice(&a.to_be_bytes());
    }
    for b in ["x", "y", ""] {
        values.extend_from_slice(&(b.len() as i32).to_be_bytes());
        values.extend_from_slice(b.as_bytes());
    }
    values.extend_from_slice(&[1, 0b0000_0010, 1, 0b0000_0100]);
    let timestamps: Vec<u8> = [100_i64, 200, 300]
        .iter()
        .flat_map(|t| t.to_be_bytes())
        .collect();
    let tablet = |device: &'static str, aligned: bool| {
        vec![
            (1, Field::I64(1)),
            (2, Field::Str(device)),
            (3, Field::Strs(&["a", "b"])),
            (4, Field::Bytes(&values)),
            (5, Field::Bytes(&timestamps)),
            (6, Field::I32s(&[2, 5])),
            (7, Field::I32(3)),
            (8, Field::Bool(aligned)),
        ]
    };
    assert_eq!(
        caller.call("insertTablet", &tablet("root.factory.d1", true)),
        status::SUCCESS_STATUS
    );
    assert_eq!(
        standin.points("root.factory.d1.a"),
        [
            (100, StandInValue::Int64(10)),
            (300, StandInValue::Int64(30))
        ]
    );
    assert_eq!(
        standin.points("root.factory.d1.b"),
        [
            (100, StandInValue::Text("x".into())),
            (200, StandInValue::Text("y".into()))
        ]
    );
    assert_eq!(standin.is_aligned("root.factory.d1"), Some(true));

    // The same device written non-aligned is refused, as IoTDB refuses it.
    assert_eq!(
        caller.call("insertTablet", &tablet("root.factory.d1", false)),
        status::ALIGNED_TIMESERIES_ERROR
    );
    // testInsertTablet answers success and writes nothing.
    assert_eq!(
        caller.call("testInsertTablet", &tablet("root.factory.d9", true)),
        status::SUCCESS_STATUS
    );
    assert!(standin
        .series()
        .iter()
        .all(|s| !s.path.starts_with("root.factory.d9")));
}

#[test]
fn a_call_without_a_session_is_not_logged_in() {
    use raw::Field;
    let standin = IotdbStandIn::start();
    let mut caller = raw::Caller::connect(standin.port());
    let code = caller.call(
        "deleteData",
        &[
            (1, Field::I64(1)),
            (2, Field::Strs(&["root.x.d.s"])),
            (3, Field::I64(0)),
            (4, Field::I64(1)),
        ],
    );
    assert_eq!(code, status::NOT_LOGIN);
    let code = caller.call(
        "openSession",
        &[
            (1, Field::I32(1)),
            (2, Field::Str("UTC")),
            (3, Field::Str("root")),
            (4, Field::Str("root")),
        ],
    );
    assert_eq!(
        code,
        status::INCOMPATIBLE_VERSION,
        "only protocol V3 is accepted"
    );
}

/// Asserts IoTDB's answer to a path it cannot read: 509 naming the path (or, for a
/// measurement, the measurement).
fn assert_illegal_path(error: &str, what: &str) {
    assert!(
        error.contains(&format!("code: {}", status::ILLEGAL_PATH)),
        "{error}"
    );
    assert!(
        error.contains(&format!("{what} is not a legal path")),
        "{error}"
    );
}

#[test]
fn canonical_path_quotes_exactly_the_nodes_that_need_it() {
    use iotdb_standin::{canonical_path, display_node};
    for (spelled, canonical) in [
        ("root.sg.`d1`.`s`", "root.sg.d1.s"),
        ("root.sg.`dev-1`.`a``b`", "root.sg.`dev-1`.`a``b`"),
        ("root.sg.`x.y`.s", "root.sg.`x.y`.s"),
        ("root.sg.`123`.`1e5`.`d_1`", "root.sg.`123`.`1e5`.d_1"),
        ("root.sg.`time`", "root.sg.`time`"),
        ("root.sg.温度", "root.sg.温度"),
        ("root.sg.`ü`", "root.sg.`ü`"),
        ("root.sg.**.s", "root.sg.**.s"),
        ("root.sg.*.`*`", "root.sg.*.`*`"),
    ] {
        assert_eq!(
            canonical_path(spelled).as_deref(),
            Ok(canonical),
            "{spelled}"
        );
        assert_eq!(
            canonical_path(canonical).as_deref(),
            Ok(canonical),
            "the display form reads back as itself"
        );
    }
    for bad in [
        "root.sg.dev-1",
        "root.sg.123",
        "root.sg.1e5",
        "root.sg.time",
        "root.sg.ROOT",
        "root.sg.ü",
        "root.sg.a b",
        "root.sg.`a",
        "root.sg.`a`b`",
        "root.sg.`a`b",
        "root.sg.``",
        "root..s",
        "root.sg.",
        "sg.d1",
        "`root`.sg",
    ] {
        assert_eq!(
            canonical_path(bad),
            Err(format!("{bad} is not a legal path")),
            "{bad}"
        );
    }
    assert_eq!(display_node("dev-0001"), "`dev-0001`");
    assert_eq!(display_node("a`b"), "`a``b`");
    assert_eq!(display_node("0042"), "`0042`");
    assert_eq!(display_node("d_1"), "d_1");
}

#[test]
fn back_quoted_nodes_are_one_path_however_they_are_spelled() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let mut tablet = Tablet::new(
        "root.factory.`dev-0001`",
        vec![
            schema("`temp-c`", TSDataType::Double),
            schema("`humidity %`", TSDataType::Float),
            schema("`a``b`", TSDataType::Int32),
            schema("`running`", TSDataType::Boolean),
            schema("`0042`", TSDataType::Int64),
            schema("温度", TSDataType::Double),
        ],
    );
    tablet
        .add_row(
            vec![
                Value::Double(21.5),
                Value::Float(40.0),
                Value::Int32(7),
                Value::Bool(true),
                Value::Int64(42),
                Value::Double(1.5),
            ],
            1000,
        )
        .unwrap();
    session.insert_tablet(&tablet).unwrap();

    // Stored and shown in IoTDB's display form: quotes only where a node needs them.
    let paths: Vec<String> = standin.series().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "root.factory.`dev-0001`.`0042`",
            "root.factory.`dev-0001`.`a``b`",
            "root.factory.`dev-0001`.`humidity %`",
            "root.factory.`dev-0001`.`temp-c`",
            "root.factory.`dev-0001`.running",
            "root.factory.`dev-0001`.温度",
        ]
    );
    assert_eq!(standin.databases(), ["root.factory"]);
    let temp = [(1000, StandInValue::Double(21.5))];
    for spelling in [
        "root.factory.`dev-0001`.`temp-c`",
        "root.`factory`.`dev-0001`.`temp-c`",
        "root.factory.dev-0001.temp-c",
    ] {
        assert_eq!(standin.points(spelling), temp, "{spelling}");
    }
    assert_eq!(
        standin.points("root.factory.`dev-0001`.`a``b`"),
        [(1000, StandInValue::Int32(7))]
    );
    assert_eq!(standin.is_aligned("root.factory.`dev-0001`"), Some(false));
    assert_eq!(standin.is_aligned("root.factory.dev-0001"), Some(false));

    // A plain node quoted or not is one node: these land in the series above.
    session
        .insert_record(
            "root.`factory`.`dev-0001`",
            vec!["running"],
            vec![Value::Bool(false)],
            2000,
            None,
        )
        .unwrap();
    session
        .insert_string_record(
            "root.factory.`dev-0001`",
            vec!["`temp-c`"],
            vec!["22.5"],
            2000,
            None,
        )
        .unwrap();
    assert_eq!(
        standin.points("root.factory.`dev-0001`.running"),
        [
            (1000, StandInValue::Boolean(true)),
            (2000, StandInValue::Boolean(false))
        ]
    );
    assert_eq!(standin.series().len(), 6);

    // The SQL subset reads the same paths, back-quoted nodes included.
    let data_set = session
        .execute_query_statement(
            "SELECT `temp-c`, `running` FROM root.factory.`dev-0001`",
            None,
        )
        .unwrap();
    assert_eq!(
        data_set.get_column_names(),
        [
            "Time",
            "root.factory.`dev-0001`.`temp-c`",
            "root.factory.`dev-0001`.running"
        ]
    );
    assert_eq!(
        rows(data_set),
        [
            (1000, vec![Value::Double(21.5), Value::Bool(true)]),
            (2000, vec![Value::Double(22.5), Value::Bool(false)]),
        ]
    );
    let listed = rows(
        session
            .execute_query_statement("SHOW TIMESERIES root.factory.`dev-0001`.`temp-c`", None)
            .unwrap(),
    );
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].1[0],
        Value::Text("root.factory.`dev-0001`.`temp-c`".into())
    );
    assert_eq!(listed[0].1[2], Value::Text("root.factory".into()));
    let counted = rows(
        session
            .execute_query_statement("count timeseries root.factory.`dev-0001`.**", None)
            .unwrap(),
    );
    assert_eq!(counted, [(0, vec![Value::Int64(6)])]);

    // A dot inside backquotes is part of the node.
    session
        .create_timeseries(
            "root.factory.`dev 2`.`x.y`",
            TSDataType::Int64,
            TSEncoding::Plain,
            TSCompressionType::SNAPPY,
            None,
            None,
            None,
            None,
        )
        .unwrap();
    let counted = rows(
        session
            .execute_query_statement("COUNT TIMESERIES root.factory.`dev 2`.*", None)
            .unwrap(),
    );
    assert_eq!(counted, [(0, vec![Value::Int64(1)])]);

    // Deletes take quoted paths too.
    session
        .delete_data(vec!["root.factory.`dev-0001`.`temp-c`"], 1000, 1000)
        .unwrap();
    assert_eq!(
        standin.points("root.factory.`dev-0001`.`temp-c`"),
        [(2000, StandInValue::Double(22.5))]
    );
    session
        .delete_timeseries(vec![
            "root.factory.`dev-0001`.`a``b`",
            "root.factory.`dev 2`.**",
        ])
        .unwrap();
    assert_eq!(standin.series().len(), 5);
    assert!(standin.points("root.factory.`dev-0001`.`a``b`").is_empty());
}

#[test]
fn a_node_that_needs_backquotes_and_has_none_is_iotdbs_illegal_path() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    let tablet = |device: &str, measurement: &str| {
        let mut tablet = Tablet::new(device, vec![schema(measurement, TSDataType::Double)]);
        tablet.add_row(vec![Value::Double(1.0)], 1).unwrap();
        tablet
    };
    for device in [
        "root.factory.dev-0001",
        "root.factory.0001",
        "root.factory.1e3",
        "root.factory.dev 1",
        "root.factory.düse",
        "root.factory.time",
        "root.factory.`dev",
        "root.factory.`a`b`",
        "factory.d1",
    ] {
        let error = error_of(session.insert_tablet(&tablet(device, "s")));
        assert_illegal_path(&error, device);
    }
    for measurement in [
        "temp-c",
        "42",
        "time",
        "TIMESTAMP",
        "root",
        "a.b",
        "`a",
        "ü",
    ] {
        let error = error_of(session.insert_tablet(&tablet("root.factory.d1", measurement)));
        assert_illegal_path(&error, measurement);
    }
    let error = error_of(session.insert_record(
        "root.factory.dev-0001",
        vec!["s"],
        vec![Value::Int32(1)],
        1,
        None,
    ));
    assert_illegal_path(&error, "root.factory.dev-0001");
    let error = error_of(session.insert_string_record(
        "root.factory.d1",
        vec!["ok", "temp-c"],
        vec!["1", "2"],
        1,
        None,
    ));
    assert_illegal_path(&error, "temp-c");
    // One bad device refuses the whole batch.
    let error = error_of(session.insert_records(
        vec!["root.factory.d1", "root.factory.dev-2"],
        vec![vec!["s"], vec!["s"]],
        vec![vec![Value::Int32(1)], vec![Value::Int32(2)]],
        vec![1, 1],
    ));
    assert_illegal_path(&error, "root.factory.dev-2");
    let error = error_of(session.create_timeseries(
        "root.factory.dev-0001.s",
        TSDataType::Double,
        TSEncoding::Gorilla,
        TSCompressionType::LZ4,
        None,
        None,
        None,
        None,
    ));
    assert_illegal_path(&error, "root.factory.dev-0001.s");
    // IoTDB reads every path of createMultiTimeseries first: none is created.
    let error = error_of(session.create_multi_timeseries(
        vec!["root.factory.d1.ok", "root.factory.d1.temp-c"],
        vec![TSDataType::Double, TSDataType::Double],
        vec![TSEncoding::Gorilla, TSEncoding::Gorilla],
        vec![TSCompressionType::LZ4, TSCompressionType::LZ4],
        None,
        None,
        None,
        None,
    ));
    assert_illegal_path(&error, "root.factory.d1.temp-c");
    let error = error_of(session.delete_data(vec!["root.factory.dev-0001.s"], 0, 10));
    assert_illegal_path(&error, "root.factory.dev-0001.s");
    let error = error_of(session.delete_timeseries(vec!["root.factory.dev-0001.**"]));
    assert_illegal_path(&error, "root.factory.dev-0001.**");
    let error = error_of(session.set_storage_group("root.my-plant"));
    assert_illegal_path(&error, "root.my-plant");
    assert!(standin.series().is_empty());
    assert!(standin.databases().is_empty(), "nothing was auto-created");

    // In SQL the same node is a parse error, as IoTDB's grammar cannot read it.
    let error = error_of(session.execute_update_statement("CREATE DATABASE root.my-plant"));
    assert!(
        error.contains(&format!("code: {}", status::SQL_PARSE_ERROR)),
        "{error}"
    );
    session
        .execute_update_statement("CREATE DATABASE root.`my-plant`")
        .unwrap();
    let error =
        error_of(session.execute_query_statement("SELECT temp-c FROM root.`my-plant`.d1", None));
    assert!(
        error.contains(&format!("code: {}", status::SQL_PARSE_ERROR)),
        "{error}"
    );
    assert_eq!(standin.databases(), ["root.`my-plant`"]);
}

#[test]
fn a_write_under_no_database_creates_one_at_level_one_quoted_or_not() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session
        .insert_record(
            "root.`my-plant`.`line 1`.`dev-7`",
            vec!["`temp-c`"],
            vec![Value::Double(20.0)],
            1,
            None,
        )
        .unwrap();
    session
        .insert_record("root.`yard`.d1", vec!["s"], vec![Value::Int32(1)], 1, None)
        .unwrap();
    assert_eq!(standin.databases(), ["root.`my-plant`", "root.yard"]);
    assert_eq!(
        standin.points("root.`my-plant`.`line 1`.`dev-7`.`temp-c`"),
        [(1, StandInValue::Double(20.0))]
    );

    // IoTDB takes only [a-zA-Z0-9`_.-] and CJK in a database name, quoted or not: a
    // write that would create `root.`my plant`` is refused and writes nothing.
    let error = error_of(session.insert_record(
        "root.`my plant`.d1",
        vec!["s"],
        vec![Value::Int32(1)],
        1,
        None,
    ));
    assert!(
        error.contains(&format!("code: {}", status::ILLEGAL_PATH)),
        "{error}"
    );
    assert!(
        error.contains(
            "The database name can only be characters, numbers and underscores. root.`my plant`"
        ),
        "{error}"
    );
    assert_eq!(standin.databases().len(), 2);
    assert_eq!(standin.series().len(), 2);

    // Creating one that exists is 501, in any spelling, by SQL or by RPC.
    for sql in [
        "CREATE DATABASE root.`my-plant`",
        "create database root.`yard`",
        "SET STORAGE GROUP TO root.yard",
    ] {
        let error = error_of(session.execute_update_statement(sql));
        assert!(
            error.contains(&format!("code: {}", status::DATABASE_ALREADY_EXISTS)),
            "{sql}: {error}"
        );
    }
    let error = error_of(session.set_storage_group("root.`my-plant`"));
    assert!(
        error.contains("root.`my-plant` has already been created as database"),
        "{error}"
    );
    // In a batch, each statement is answered: the existing one in a 302.
    let error = error_of(session.execute_batch_statement(vec![
        "CREATE DATABASE root.yard",
        "CREATE DATABASE root.new",
    ]));
    assert!(
        error.contains(&format!("code: {}", status::MULTIPLE_ERROR)),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "{}: root.yard has already",
            status::DATABASE_ALREADY_EXISTS
        )),
        "{error}"
    );
    assert_eq!(
        standin.databases(),
        ["root.`my-plant`", "root.new", "root.yard"]
    );
}

#[test]
fn without_auto_create_schema_a_quoted_database_and_its_series_must_exist_first() {
    let standin = IotdbStandIn::start_with(Options {
        auto_create_schema: false,
        ..Options::default()
    });
    let mut session = session(&standin);
    let mut tablet = Tablet::new(
        "root.`my-plant`.d1",
        vec![schema("`temp-c`", TSDataType::Double)],
    );
    tablet.add_row(vec![Value::Double(20.5)], 5).unwrap();
    let error = error_of(session.insert_tablet(&tablet));
    assert!(
        error.contains(&format!("code: {}", status::DATABASE_NOT_EXIST)),
        "{error}"
    );
    assert!(standin.databases().is_empty());

    session.set_storage_group("root.`my-plant`").unwrap();
    let error = error_of(session.insert_tablet(&tablet));
    assert!(
        error.contains("Path [root.`my-plant`.d1.`temp-c`] does not exist"),
        "{error}"
    );
    let error = error_of(session.create_timeseries(
        "root.other.d1.s",
        TSDataType::Double,
        TSEncoding::Gorilla,
        TSCompressionType::LZ4,
        None,
        None,
        None,
        None,
    ));
    assert!(
        error.contains(&format!("code: {}", status::DATABASE_NOT_EXIST)),
        "{error}"
    );

    session
        .create_timeseries(
            "root.`my-plant`.d1.`temp-c`",
            TSDataType::Double,
            TSEncoding::Gorilla,
            TSCompressionType::LZ4,
            None,
            None,
            None,
            None,
        )
        .unwrap();
    session.insert_tablet(&tablet).unwrap();
    assert_eq!(
        standin.points("root.`my-plant`.d1.`temp-c`"),
        [(5, StandInValue::Double(20.5))]
    );
    assert_eq!(standin.databases(), ["root.`my-plant`"]);
}

#[test]
fn creating_series_that_exist_answers_302_with_a_503_for_each_and_creates_the_rest() {
    use raw::Field;
    let standin = IotdbStandIn::start();
    let mut caller = raw::Caller::connect(standin.port());
    caller.open_session();
    // TSCreateMultiTimeseriesReq: 1 sessionId, 2 paths, 3 dataTypes, 4 encodings,
    // 5 compressors (DOUBLE = 4, GORILLA = 8, LZ4 = 7).
    let mut create = |paths: &[&str]| {
        let n = paths.len();
        caller.call_status(
            "createMultiTimeseries",
            &[
                (1, Field::I64(1)),
                (2, Field::Strs(paths)),
                (3, Field::I32s(&vec![4; n])),
                (4, Field::I32s(&vec![8; n])),
                (5, Field::I32s(&vec![7; n])),
            ],
        )
    };
    let created = create(&["root.sg.d1.s1", "root.sg.`d-2`.s2"]);
    assert_eq!(created.code, status::SUCCESS_STATUS);

    let some_exist = create(&["root.sg.d1.`s1`", "root.sg.d1.s3", "root.sg.`d-2`.s2"]);
    assert_eq!(some_exist.code, status::MULTIPLE_ERROR);
    let subs: Vec<(i32, Option<&str>)> = some_exist
        .sub_status
        .iter()
        .map(|s| (s.code, s.message.as_deref()))
        .collect();
    assert_eq!(
        subs,
        [
            (
                status::TIMESERIES_ALREADY_EXIST,
                Some("Path [root.sg.d1.s1] already exist")
            ),
            (
                status::TIMESERIES_ALREADY_EXIST,
                Some("Path [root.sg.`d-2`.s2] already exist")
            ),
        ]
    );
    let paths: Vec<String> = standin.series().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["root.sg.`d-2`.s2", "root.sg.d1.s1", "root.sg.d1.s3"],
        "the series that did not exist were created"
    );

    let all_exist = create(&["root.sg.d1.s1", "root.sg.d1.s3"]);
    assert_eq!(all_exist.code, status::MULTIPLE_ERROR);
    assert!(all_exist
        .sub_status
        .iter()
        .all(|s| s.code == status::TIMESERIES_ALREADY_EXIST));
    assert_eq!(all_exist.sub_status.len(), 2);

    let illegal = create(&["root.sg.d1.s9", "root.sg.d-3.s"]);
    assert_eq!(illegal.code, status::ILLEGAL_PATH);
    assert_eq!(
        illegal.message.as_deref(),
        Some("root.sg.d-3.s is not a legal path")
    );
    assert_eq!(standin.series().len(), 3, "nothing created");

    // What the real client makes of the 302.
    let mut session = session(&standin);
    let error = error_of(session.create_multi_timeseries(
        vec!["root.sg.d1.s1"],
        vec![TSDataType::Double],
        vec![TSEncoding::Gorilla],
        vec![TSCompressionType::LZ4],
        None,
        None,
        None,
        None,
    ));
    assert!(
        error.starts_with(&format!("code: {}", status::MULTIPLE_ERROR)),
        "{error}"
    );
    assert!(
        error.contains("Path [root.sg.d1.s1] already exist"),
        "{error}"
    );
}

#[test]
fn ttl_is_kept_per_database_set_and_unset_by_sql() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session.set_storage_group("root.factory").unwrap();
    session.set_storage_group("root.`my-plant`").unwrap();
    assert_eq!(standin.ttl("root.factory"), None);

    assert!(session
        .execute_update_statement("SET TTL TO root.factory 3600000")
        .unwrap()
        .is_none());
    assert_eq!(standin.ttl("root.factory"), Some(3_600_000));
    assert_eq!(standin.ttl("root.`my-plant`"), None);

    // executeStatement runs it as well; iotdb-client-rs then reports that an answer
    // without columns has no "resources" — its reading, not the server's status.
    let error = error_of(session.execute_statement("set ttl to root.`my-plant` 60000;", None));
    assert!(error.contains("Can't get resources"), "{error}");
    assert_eq!(standin.ttl("root.`my-plant`"), Some(60_000));
    assert_eq!(standin.ttl("root.my-plant"), Some(60_000), "any spelling");

    // A path below a database sets that database's TTL; root.** every database's.
    session
        .execute_update_statement("SET TTL TO root.factory.d1 7200000")
        .unwrap();
    assert_eq!(standin.ttl("root.factory"), Some(7_200_000));
    session
        .execute_batch_statement(vec!["SET TTL TO root.** 1000", "UNSET TTL TO root.factory"])
        .unwrap();
    assert_eq!(standin.ttl("root.factory"), None);
    assert_eq!(standin.ttl("root.`my-plant`"), Some(1000));

    // No database there: IoTDB's 500.
    for sql in ["SET TTL TO root.nowhere 1000", "UNSET TTL TO root.nowhere"] {
        let error = error_of(session.execute_update_statement(sql));
        assert!(
            error.contains(&format!("code: {}", status::DATABASE_NOT_EXIST)),
            "{sql}: {error}"
        );
    }
    let error = error_of(session.execute_update_statement("SET TTL TO root.factory -1"));
    assert!(
        error.contains(&format!("code: {}", status::SQL_PARSE_ERROR)),
        "{error}"
    );
    let error = error_of(session.execute_update_statement("SET TTL TO root.my-plant 5"));
    assert!(
        error.contains(&format!("code: {}", status::SQL_PARSE_ERROR)),
        "{error}"
    );

    // A deleted database takes its TTL with it.
    session.delete_storage_group("root.`my-plant`").unwrap();
    assert_eq!(standin.ttl("root.`my-plant`"), None);
    assert_eq!(standin.ttl("root.nowhere"), None);
}

/// Milliseconds since the epoch now: the stand-in's TTL is against this machine's clock,
/// as IoTDB's is against its own.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn rows_older_than_the_ttl_are_refused_with_607_and_the_rest_lands() {
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session.set_storage_group("root.factory").unwrap();
    session.set_storage_group("root.archive").unwrap();
    session
        .execute_update_statement("SET TTL TO root.factory 3600000")
        .unwrap();
    let now = now_ms();
    let (old, fresh) = (now - 2 * 3_600_000, now - 600_000);
    let assert_out_of_ttl = |error: &str| {
        assert!(
            error.starts_with(&format!("code: {}, Insertion time [", status::OUT_OF_TTL))
                && error.contains("] is less than ttl time bound ["),
            "{error}"
        );
    };

    // One tablet with an expired row and an alive one: the alive one lands.
    let mut tablet = Tablet::new(
        "root.factory.d1",
        vec![schema("temperature", TSDataType::Double)],
    );
    tablet.add_row(vec![Value::Double(1.0)], old).unwrap();
    tablet.add_row(vec![Value::Double(2.0)], fresh).unwrap();
    assert_out_of_ttl(&error_of(session.insert_tablet(&tablet)));
    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        [(fresh, StandInValue::Double(2.0))]
    );

    // Several devices: one all expired, one alive, one in a database without a TTL.
    let mut expired = Tablet::new("root.factory.d2", vec![schema("status", TSDataType::Int32)]);
    expired.add_row(vec![Value::Int32(7)], old).unwrap();
    let mut alive = Tablet::new("root.factory.d3", vec![schema("status", TSDataType::Int32)]);
    alive.add_row(vec![Value::Int32(8)], fresh).unwrap();
    let mut kept = Tablet::new("root.archive.d4", vec![schema("status", TSDataType::Int32)]);
    kept.add_row(vec![Value::Int32(9)], 1_000).unwrap();
    assert_out_of_ttl(&error_of(
        session.insert_tablets(vec![&expired, &alive, &kept]),
    ));
    assert!(standin.points("root.factory.d2.status").is_empty());
    assert_eq!(
        standin.points("root.factory.d3.status"),
        [(fresh, StandInValue::Int32(8))]
    );
    assert_eq!(
        standin.points("root.archive.d4.status"),
        [(1_000, StandInValue::Int32(9))]
    );

    // Records too; a record that is all expired writes nothing.
    assert_out_of_ttl(&error_of(session.insert_record(
        "root.factory.d1",
        vec!["temperature"],
        vec![Value::Double(3.0)],
        old + 1,
        None,
    )));
    assert_out_of_ttl(&error_of(session.insert_string_record(
        "root.factory.d1",
        vec!["temperature"],
        vec!["4.0"],
        old + 2,
        None,
    )));
    assert_eq!(standin.points("root.factory.d1.temperature").len(), 1);

    // Without the TTL the same rows land.
    session
        .execute_update_statement("UNSET TTL TO root.factory")
        .unwrap();
    session.insert_tablet(&tablet).unwrap();
    assert_eq!(
        standin.points("root.factory.d1.temperature"),
        [
            (old, StandInValue::Double(1.0)),
            (fresh, StandInValue::Double(2.0))
        ]
    );
}

#[test]
fn a_node_of_a_cluster_answers_multi_device_writes_with_400_and_a_redirect_for_each() {
    use raw::Field;
    let leader = ("127.0.0.9".to_string(), 6667);
    let standin = IotdbStandIn::start_with(Options {
        redirect_to: Some(leader.clone()),
        ..Options::default()
    });
    let mut caller = raw::Caller::connect(standin.port());
    caller.open_session();
    // TSInsertStringRecordsReq: 1 sessionId, 2 prefixPaths, 3 measurementsList,
    // 4 valuesList, 5 timestamps.
    let answer = caller.call_status(
        "insertStringRecords",
        &[
            (1, Field::I64(1)),
            (2, Field::Strs(&["root.sg.d1", "root.sg.d2"])),
            (3, Field::StrLists(&[&["s"], &["s"]])),
            (4, Field::StrLists(&[&["1.5"], &["2.5"]])),
            (5, Field::I64s(&[10, 20])),
        ],
    );
    assert_eq!(answer.code, status::REDIRECTION_RECOMMEND);
    assert_eq!(answer.message, None);
    let subs: Vec<(i32, Option<(String, i32)>)> = answer
        .sub_status
        .iter()
        .map(|s| (s.code, s.redirect_node.clone()))
        .collect();
    assert_eq!(
        subs,
        [
            (status::SUCCESS_STATUS, Some(leader.clone())),
            (status::SUCCESS_STATUS, Some(leader.clone()))
        ]
    );
    assert_eq!(
        standin.points("root.sg.d2.s"),
        [(20, StandInValue::Double(2.5))],
        "written"
    );

    // iotdb-client-rs 0.3.12 reports the 400 as a failure, though everything landed.
    let mut session = session(&standin);
    let mut first = Tablet::new("root.sg.d3", vec![schema("s", TSDataType::Double)]);
    first.add_row(vec![Value::Double(3.5)], 30).unwrap();
    let mut second = Tablet::new("root.sg.d4", vec![schema("s", TSDataType::Double)]);
    second.add_row(vec![Value::Double(4.5)], 40).unwrap();
    let error = error_of(session.insert_tablets(vec![&first, &second]));
    assert_eq!(error, format!("code: {}", status::REDIRECTION_RECOMMEND));
    assert_eq!(
        standin.points("root.sg.d4.s"),
        [(40, StandInValue::Double(4.5))]
    );

    // One device: a 200 carrying the redirect, which the client takes as success.
    let single = caller.call_status(
        "insertStringRecordsOfOneDevice",
        &[
            (1, Field::I64(1)),
            (2, Field::Str("root.sg.d5")),
            (3, Field::StrLists(&[&["s"]])),
            (4, Field::StrLists(&[&["5.5"]])),
            (5, Field::I64s(&[50])),
        ],
    );
    assert_eq!(
        (single.code, single.redirect_node),
        (status::SUCCESS_STATUS, Some(leader))
    );
    session.insert_tablet(&first).unwrap();

    // A write that fails keeps its own status: only success is redirected.
    let mut wrong = Tablet::new("root.sg.d3", vec![schema("s", TSDataType::Text)]);
    wrong.add_row(vec![Value::Text("x".into())], 31).unwrap();
    let error = error_of(session.insert_tablets(vec![&wrong, &second]));
    assert!(
        error.starts_with(&format!("code: {}", status::METADATA_ERROR)),
        "{error}"
    );
}

#[test]
fn an_encoding_its_type_cannot_take_is_refused_with_507() {
    use raw::Field;
    let standin = IotdbStandIn::start();
    let mut session = session(&standin);
    session.set_storage_group("root.sg").unwrap();
    let create = |session: &mut RpcSession, path: &str, t: TSDataType, e: TSEncoding| {
        session.create_timeseries(path, t, e, TSCompressionType::LZ4, None, None, None, None)
    };
    let error = error_of(create(
        &mut session,
        "root.sg.d1.label",
        TSDataType::Text,
        TSEncoding::Gorilla,
    ));
    assert_eq!(
        error,
        format!(
            "code: {}, encoding GORILLA does not support TEXT",
            status::METADATA_ERROR
        )
    );
    for (t, e, ok) in [
        (TSDataType::Boolean, TSEncoding::RLE, true),
        (TSDataType::Boolean, TSEncoding::Ts2diff, false),
        (TSDataType::Int32, TSEncoding::Gorilla, true),
        (TSDataType::Int64, TSEncoding::GorillaV1, false),
        (TSDataType::Float, TSEncoding::GorillaV1, true),
        (TSDataType::Double, TSEncoding::Diff, false),
        (TSDataType::Text, TSEncoding::PlainDictionary, true),
        (TSDataType::Text, TSEncoding::RLE, false),
    ] {
        let path = format!(
            "root.sg.d2.s{}",
            standin.series().len() + usize::from(!ok) * 100
        );
        let result = create(&mut session, &path, t.clone(), e.clone());
        assert_eq!(result.is_ok(), ok, "{t:?} {e:?}: {result:?}");
    }
    assert!(standin
        .series()
        .iter()
        .all(|s| !s.path.starts_with("root.sg.d1")));

    // Many at once: the refused one is a 507 sub-status of a 302, the others are created.
    let mut caller = raw::Caller::connect(standin.port());
    caller.open_session();
    // TEXT = 5, DOUBLE = 4; GORILLA = 8; LZ4 = 7.
    let answer = caller.call_status(
        "createMultiTimeseries",
        &[
            (1, Field::I64(1)),
            (2, Field::Strs(&["root.sg.d3.label", "root.sg.d3.value"])),
            (3, Field::I32s(&[5, 4])),
            (4, Field::I32s(&[8, 8])),
            (5, Field::I32s(&[7, 7])),
        ],
    );
    assert_eq!(answer.code, status::MULTIPLE_ERROR);
    let subs: Vec<(i32, Option<&str>)> = answer
        .sub_status
        .iter()
        .map(|s| (s.code, s.message.as_deref()))
        .collect();
    assert_eq!(
        subs,
        [(
            status::METADATA_ERROR,
            Some("encoding GORILLA does not support TEXT")
        )]
    );
    assert!(standin.points("root.sg.d3.value").is_empty());
    assert!(standin
        .series()
        .iter()
        .any(|s| s.path == "root.sg.d3.value"));

    // And in SQL.
    let error = error_of(session.execute_update_statement(
        "CREATE TIMESERIES root.sg.d4.flag WITH DATATYPE=BOOLEAN, ENCODING=TS_2DIFF",
    ));
    assert_eq!(
        error,
        format!(
            "code: {}, encoding TS_2DIFF does not support BOOLEAN",
            status::METADATA_ERROR
        )
    );
}
