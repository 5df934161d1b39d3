//! The verify job: after a clean backfill it finds nothing; after the test damages the
//! target (a point deleted, a value changed, a stray series added, a series dropped) it
//! reports exactly that damage and exits non-zero. Against the real InfluxDB 1.6 and the
//! IoTDB stand-in.

mod common;
#[path = "standins/iotdb/mod.rs"]
mod iotdb_standin;

use common::*;
use iotdb_standin::IotdbStandIn;
use std::path::Path;

#[test]
fn influxdb_verify_is_clean_after_backfill_and_finds_each_kind_of_damage() {
    let table = unique("ver");
    let db = unique("ver");
    let _cleanup = Cleanup::default().table(&table).database(&db);
    load_sensor_table(&table, 5_000);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    let job = sensor_job(&dir, &table, &db, 1_000, "", "");
    assert_ok(&run(&[
        "-c",
        "backfill",
        "--config",
        job.to_str().unwrap(),
        "--workers",
        "2",
        "--progress",
        "off",
    ]));

    let (code, report) = verify(&job, &[]);
    assert_eq!(code, 0, "{report}");
    // 1,000 devices, 5 seconds of data: one bucket each.
    assert_eq!(report_line(&report), "verify: 1000 series, 1000 buckets compared: 1000 matching, 0 missing in target, 0 extra in target, 0 differing");

    // Damage: one point deleted, one value changed, one series dropped, one stray series.
    // Row 3 is dev-0003 at 00:00:00; row 1005 is dev-0005 at 00:00:01 (ms 1767225601000).
    influx_query(
        &db,
        "DELETE FROM sensors WHERE device_id = 'dev-0003' AND time = 1767225600000ms",
        "ns",
    );
    influx_write(
        &db,
        "sensors,device_id=dev-0005,site=site-5 temperature=99.5 1767225601000",
        "ms",
    );
    influx_query(
        &db,
        "DROP SERIES FROM sensors WHERE device_id = 'dev-0007'",
        "ns",
    );
    influx_write(
        &db,
        "sensors,device_id=stray,site=nowhere temperature=1 1767225600000",
        "ms",
    );

    let (code, report) = verify(&job, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report_line(&report), "verify: 1001 series, 1001 buckets compared: 997 matching, 1 missing in target, 1 extra in target, 2 differing");
    assert!(
        report.contains("missing in target: sensors,device_id=dev-0007,site=site-0"),
        "{report}"
    );
    assert!(
        report.contains("extra in target:   sensors,device_id=stray,site=nowhere"),
        "{report}"
    );
    assert!(report.contains("differing:         sensors,device_id=dev-0003,site=site-3 from 2026-01-01T00:00:00Z: 5 points in the source, 4 in the target"), "{report}");
    assert!(report.contains("differing:         sensors,device_id=dev-0005,site=site-5 from 2026-01-01T00:00:00Z: the same points with other values"), "{report}");
    assert!(
        report.lines().last().unwrap().starts_with(
            "error: the target differs from the source: 1 missing, 1 extra, 2 differing"
        ),
        "{report}"
    );
}

#[test]
fn iotdb_verify_is_clean_after_backfill_and_finds_each_kind_of_damage() {
    use iotdb::client::Session;
    let table = unique("veriot");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 2_000);
    let standin = IotdbStandIn::start();
    let dir = scratch(&table);
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-iotdb-backfill.yaml");
    let env = [
        ("TSMIG_TABLE", table.clone()),
        ("IOTDB_PORT", standin.port().to_string()),
    ];
    let mut backfill = tsmig();
    backfill.current_dir(&dir);
    for (k, v) in &env {
        backfill.env(k, v);
    }
    assert_ok(
        &backfill
            .args([
                "-c",
                "backfill",
                "--config",
                job.to_str().unwrap(),
                "--workers",
                "2",
                "--progress",
                "off",
            ])
            .output()
            .unwrap(),
    );

    let (code, report) = verify(&job, &env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report_line(&report), "verify: 1000 series, 1000 buckets compared: 1000 matching, 0 missing in target, 0 extra in target, 0 differing");

    let mut session = iotdb::client::remote::RpcSession::new(iotdb::client::remote::Config {
        port: standin.port() as i32,
        ..Default::default()
    })
    .unwrap();
    session.open().unwrap();
    // Exactly one point goes: delete_data(paths, ts, ts).
    session
        .delete_data(
            vec!["root.factory.`dev-0003`.temperature"],
            1_767_225_600_000,
            1_767_225_600_000,
        )
        .unwrap();
    session
        .insert_record(
            "root.factory.`dev-0005`",
            vec!["temperature"],
            vec![iotdb::client::Value::Double(99.5)],
            1_767_225_601_000,
            false,
        )
        .unwrap();
    session
        .insert_record(
            "root.factory.stray",
            vec!["temperature"],
            vec![iotdb::client::Value::Double(1.0)],
            1_767_225_600_000,
            false,
        )
        .unwrap();

    let (code, report) = verify(&job, &env);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report_line(&report), "verify: 1001 series, 1001 buckets compared: 998 matching, 0 missing in target, 1 extra in target, 2 differing");
    assert!(
        report.contains("extra in target:   root.factory.stray from"),
        "{report}"
    );
    assert!(report.contains("differing:         root.factory.`dev-0003` from 2026-01-01T00:00:00Z: the same points with other values"), "{report}");
    assert!(report.contains("differing:         root.factory.`dev-0005` from 2026-01-01T00:00:00Z: the same points with other values"), "{report}");
}
