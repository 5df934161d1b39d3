//! Target = source, whichever way a row is read: every MySQL/MariaDB column type, at its
//! edges, gives the same point through the backfill (a `SELECT` over the binary protocol)
//! and through CDC (the binlog's row images), or the same dead-letter reason.
//!
//! One table holds every type. The same rows are read twice, under a non-UTC `time_zone`
//! (+05:30 in the job file, and in the session that inserts them): by `-c backfill` into
//! one InfluxDB database, and by `-c cdc` (the rows inserted after the job recorded its
//! start, applied with `--until-caught-up`) into another; the two databases and the two
//! dead-letter files must be identical, and a few values are checked against what MySQL
//! shows. Types tsmig cannot map are refused when the job is planned, naming the column.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Each binlog reader needs its own replica id (a range no other test file uses).
static SERVER_ID: AtomicU32 = AtomicU32::new(0);

fn server_id() -> u32 {
    40000 + std::process::id() % 1000 * 10 + SERVER_ID.fetch_add(1, Ordering::SeqCst)
}

/// 64 SET members (an 8-byte bit mask) and 300 ENUM members (a 2-byte index).
fn members(prefix: &str, n: usize) -> String {
    (1..=n)
        .map(|i| format!("'{prefix}{i}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every column type. `dev` (the device tag) is latin1, so a tag goes through the
/// charset too. The last columns are present so that CDC must skip them in every row
/// image: six types tsmig cannot map, and text in a charset CDC cannot read (koi8r).
fn create_table(table: &str) {
    sql(&[&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, \
         dev VARCHAR(16) CHARACTER SET latin1 NOT NULL, ts DATETIME(6) NOT NULL, \
         ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, \
         mi MEDIUMINT, mu MEDIUMINT UNSIGNED, ii INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, \
         f FLOAT, d DOUBLE, dec65 DECIMAL(65,30), dec0 DECIMAL(10,0), dec2 DECIMAL(5,2), \
         b1 BIT(1), b7 BIT(7), b8 BIT(8), b9 BIT(9), b33 BIT(33), b64 BIT(64), flag TINYINT(1), \
         en ENUM('on','off','it''s','ü'), en300 ENUM({}), st SET('a','b','c'), st64 SET({}), \
         yr YEAR, dt DATE, dt0 DATETIME, dt1 DATETIME(1), dt2 DATETIME(2), dt3 DATETIME(3), \
         dt4 DATETIME(4), dt5 DATETIME(5), dt6 DATETIME(6), tsp TIMESTAMP NULL, tsp3 TIMESTAMP(3) NULL, \
         c_utf CHAR(10) CHARACTER SET utf8mb4, v_utf VARCHAR(300) CHARACTER SET utf8mb4, \
         t_utf TEXT CHARACTER SET utf8mb4, c_lat CHAR(10) CHARACTER SET latin1, \
         v_lat VARCHAR(300) CHARACTER SET latin1, t_lat TEXT CHARACTER SET latin1, js JSON, \
         tm TIME(3), bin BINARY(4), vbin VARBINARY(8), blb BLOB, u UUID, ip INET6, \
         koi VARCHAR(8) CHARACTER SET koi8r)",
        members("e", 300),
        members("m", 64),
    )]);
}

/// The mapped columns: every one but id, dev, ts and the unmappable ones.
const FIELDS: &str = "ti, tu, si, su, mi, mu, ii, iu, bi, bu, f, d, dec65, dec0, dec2, \
    b1, b7, b8, b9, b33, b64, flag, en, en300, st, st64, yr, dt, dt0, dt1, dt2, dt3, dt4, dt5, dt6, \
    tsp, tsp3, c_utf, v_utf, t_utf, c_lat, v_lat, t_lat, js";

const DEC65_MAX: &str = "99999999999999999999999999999999999.999999999999999999999999999999";

/// The rows, as `(id, dev, column = value, ...)`; every other column is NULL. Inserted in
/// a session at +05:30, so TIMESTAMP literals are read there.
fn rows() -> Vec<(u32, &'static str, String)> {
    let long_utf = "ü€😀".repeat(100);
    vec![
        // The minimum of every type.
        (1, "dév", format!(
            "ti = -128, tu = 0, si = -32768, su = 0, mi = -8388608, mu = 0, ii = -2147483648, iu = 0, \
             bi = -9223372036854775808, bu = 0, f = -3.40282e38, d = -1.7976931348623157e308, \
             dec65 = -{DEC65_MAX}, dec0 = -9999999999, dec2 = -999.99, b1 = 0, b7 = 0, b8 = 0, b9 = 0, \
             b33 = 0, b64 = 0, flag = 0, en = 'on', en300 = 'e1', st = '', st64 = '', yr = 1901, \
             dt = '1678-01-01', dt0 = '1678-01-01 00:00:00', dt1 = '1678-01-01 00:00:00.1', \
             dt2 = '1969-12-31 23:59:59.99', dt3 = '1969-12-31 23:59:59.999', dt4 = '1970-01-01 00:00:00.0001', \
             dt5 = '1970-01-01 00:00:00.00001', dt6 = '1969-12-31 23:59:59.999999', \
             tsp = FROM_UNIXTIME(1), tsp3 = FROM_UNIXTIME(1.001), c_utf = '', v_utf = '', t_utf = '', \
             c_lat = '', v_lat = '', t_lat = '', js = '[]'"
        )),
        // The maximum of every type (the unsigned 64-bit maxima have rows of their own: a
        // value above 2^63-1 is dead-lettered by InfluxDB 1.x).
        (2, "Ünïcödé", format!(
            "ti = 127, tu = 255, si = 32767, su = 65535, mi = 8388607, mu = 16777215, ii = 2147483647, \
             iu = 4294967295, bi = 9223372036854775807, bu = 9223372036854775807, f = 3.40282e38, \
             d = 1.7976931348623157e308, dec65 = {DEC65_MAX}, dec0 = 9999999999, dec2 = 999.99, b1 = 1, \
             b7 = b'1111111', b8 = 255, b9 = 511, b33 = 8589934591, b64 = 9223372036854775807, flag = 1, \
             en = 'ü', en300 = 'e300', st = 'a,b,c', st64 = 'm1,m2,m63,m64', yr = 2155, dt = '2262-04-10', \
             dt0 = '2261-12-31 23:59:59', dt1 = '2261-12-31 23:59:59.9', dt2 = '2261-12-31 23:59:59.99', \
             dt3 = '2261-12-31 23:59:59.999', dt4 = '2261-12-31 23:59:59.9999', \
             dt5 = '2261-12-31 23:59:59.99999', dt6 = '2261-12-31 23:59:59.999999', \
             tsp = FROM_UNIXTIME(2147483647), tsp3 = FROM_UNIXTIME(2147483647.999), \
             c_utf = 'ü€😀ü€😀ü€😀x', v_utf = '{long_utf}', t_utf = REPEAT('€', 20000), \
             c_lat = 'é€Œ‰ÿ', v_lat = 'ÀÉÎÕÜ ßàéîõüÿ ¡¿«»', t_lat = REPEAT('é', 3000), \
             js = '{{\"k\": [1, 2.5, \"ü\", null, true], \"e\": {{}}}}', \
             tm = '838:59:59.999', bin = 'abcd', vbin = x'00ff', blb = x'0102', u = UUID(), \
             ip = '::1', koi = 'Жж'"
        )),
        // Zeros, negative zeros, empty values, trailing spaces.
        (3, "zero", "ti = 0, tu = 0, si = 0, su = 0, mi = 0, mu = 0, ii = 0, iu = 0, bi = 0, bu = 0, \
             f = -0e0, d = -0e0, dec65 = 0, dec0 = 0, dec2 = -0.00, b1 = 0, b7 = 0, b8 = 0, b9 = 0, \
             b33 = 0, b64 = 0, flag = 0, en = 'off', en300 = 'e2', st = 'b', st64 = 'm33', yr = 2000, \
             dt = '1970-01-01', dt0 = '1970-01-01 00:00:00', dt1 = '2026-01-01 00:00:00.0', \
             dt2 = '2026-01-01 00:00:00.00', dt3 = '2026-01-01', dt4 = '2026-01-01', dt5 = '2026-01-01', \
             dt6 = '2026-01-01 00:00:00.000000', tsp = '1970-01-01 05:30:01', tsp3 = '2026-01-01 05:30:00', \
             c_utf = 'ab  ', v_utf = 'ab  ', t_utf = ' ', c_lat = ' x', v_lat = 'x ', t_lat = '  ', \
             js = 'null'".into()),
        // Small values, -1 of the narrow widths (sign extension), SET 'a,c'.
        (4, "small", format!("ti = -1, tu = 1, si = -1, su = 1, mi = -1, mu = 1, ii = -1, iu = 1, bi = -1, bu = 1, \
             f = 1.17549e-38, d = 4.9e-324, dec65 = 0.000000000000000000000000000001, dec0 = -1, \
             dec2 = 0.01, b1 = 1, b7 = 1, b8 = 128, b9 = 256, b33 = 4294967296, b64 = 1, flag = 1, \
             en = 'it''s', en300 = 'e256', st = 'a,c', st64 = 'm64', yr = 1970, dt = '2026-06-30', \
             dt0 = '2026-06-30 12:34:56', dt1 = '2026-06-30 12:34:56.7', dt2 = '2026-06-30 12:34:56.78', \
             dt3 = '2026-06-30 12:34:56.789', dt4 = '2026-06-30 12:34:56.7891', \
             dt5 = '2026-06-30 12:34:56.78912', dt6 = '2026-06-30 12:34:56.789123', \
             tsp = '2026-06-30 12:34:56', tsp3 = '2026-06-30 12:34:56.789', c_utf = 'Ǆ', v_utf = '日本語', \
             t_utf = 'a\\nb\\tc\"d''e\\\\f', c_lat = 'a', v_lat = 'Ü', \
             t_lat = CONVERT(UNHEX('{}') USING latin1), js = '{{\"a\":1}}'",
            (0x20..=0xffu8).map(|b| format!("{b:02X}")).collect::<String>()
        )),
        // NULL in every field but one.
        (5, "nulls", "ti = 7".into()),
        // NULL in every field: a row that cannot become a point.
        (6, "allnull", String::new()),
        // Values no point can hold, each in a row of its own: every reader must refuse them
        // with the same reason.
        (7, "bool2", "flag = 2".into()),
        (8, "zerodt", "dt0 = '0000-00-00 00:00:00'".into()),
        (9, "zerots", "tsp = '0000-00-00 00:00:00'".into()),
        (10, "zerodate", "dt = '0000-00-00'".into()),
        (11, "early", "dt = '1000-01-01'".into()),
        (12, "late", "dt6 = '9999-12-31 23:59:59.999999'".into()),
        (13, "bumax", "bu = 18446744073709551615".into()),
        (14, "bitmax", "b64 = b'1111111111111111111111111111111111111111111111111111111111111111'".into()),
        // YEAR 0000 (the binlog stores it as 0, like 1900 + 0).
        (15, "year0", "yr = 0, ti = 1".into()),
        // Changed after the insert (the binlog's before and after images), and removed.
        (16, "updated", "st = 'a', en = 'on', v_lat = 'x', ti = 1".into()),
        (17, "deleted", "st = 'c', ti = 1".into()),
    ]
}

/// After the inserts: an update of ENUM, SET and latin1 values, a delete.
const CHANGES: &[&str] = &[
    "UPDATE {t} SET st = 'b,c', en = 'off', v_lat = 'Éé', st64 = 'm2,m3' WHERE id = 16",
    "DELETE FROM {t} WHERE id = 17",
];

fn insert_rows(table: &str) {
    let mut statements = vec!["SET time_zone = '+05:30'".to_string()];
    for (id, dev, values) in rows() {
        // Row n is at 2026-01-01 00:00:0n.000123 (local time).
        let mut set = format!("id = {id}, dev = '{dev}', ts = '2026-01-01 00:00:00' + INTERVAL {id} SECOND + INTERVAL 123 MICROSECOND");
        if !values.is_empty() {
            set.push_str(", ");
            set.push_str(&values);
        }
        statements.push(format!("INSERT INTO {table} SET {set}"));
    }
    statements.extend(CHANGES.iter().map(|c| c.replace("{t}", table)));
    sql(&statements.iter().map(String::as_str).collect::<Vec<_>>());
}

fn job_file(dir: &Path, table: &str, db: &str, mode: &str, fields: &str) -> PathBuf {
    let text = format!(
        r#"name: {table}_{mode}
mode: {mode}
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  server_id: {id}
  heartbeat: 100ms
  time_zone: "+05:30"
  tables:
    - name: {table}
      split_by: id
      chunk_rows: 4
sink:
  type: influxdb
  url: {influx}
  database: {db}
  precision: us
  batch_size: 5
mappings:
  - table: {table}
    measurement: types
    device_field: dev
    timestamp_field: ts
    fields: [{fields}]
checkpoint:
  interval: 100ms
  store: file:./state
"#,
        id = server_id(),
        influx = influx_url(),
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    tsmig().current_dir(dir).args(args).output().unwrap()
}

/// Every point of the measurement, keyed by (device, time), for a field-by-field diff.
fn points(db: &str) -> BTreeMap<String, serde_json::Value> {
    influx_dump(db, "types", "ns")
        .into_iter()
        .map(|p| {
            (
                format!("{} @ {}", p["tags"]["dev"], p["time"]),
                p["fields"].clone(),
            )
        })
        .collect()
}

/// The dead letters of a run: (stage, reason, record), sorted. The record is left out
/// for the source's: the backfill shows the row's values, CDC its binlog position.
fn dead_letters(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap_or_default();
    let mut out: Vec<(String, String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let stage = v["stage"].as_str().unwrap().to_string();
            let record = if stage == "source" {
                String::new()
            } else {
                v["record"].to_string()
            };
            (stage, v["reason"].as_str().unwrap().to_string(), record)
        })
        .collect();
    out.sort();
    out
}

/// Field-by-field differences between two dumps.
fn differences(
    backfill: &BTreeMap<String, serde_json::Value>,
    cdc: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, fields) in backfill {
        let Some(other) = cdc.get(key) else {
            out.push(format!("{key}: only the backfill wrote it"));
            continue;
        };
        let empty = serde_json::Map::new();
        let a = fields.as_object().unwrap_or(&empty);
        let b = other.as_object().unwrap_or(&empty);
        for name in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
            if a.get(name) != b.get(name) {
                out.push(format!(
                    "{key} field {name}: backfill {:?}, cdc {:?}",
                    a.get(name),
                    b.get(name)
                ));
            }
        }
    }
    for key in cdc.keys().filter(|k| !backfill.contains_key(*k)) {
        out.push(format!("{key}: only CDC wrote it"));
    }
    out
}

#[test]
fn every_type_gives_the_same_point_through_the_backfill_and_the_binlog() {
    let table = unique("types");
    let (backfill_db, cdc_db) = (format!("{table}_backfill"), format!("{table}_cdc"));
    let _cleanup = Cleanup::default()
        .table(&table)
        .database(&backfill_db)
        .database(&cdc_db);
    fresh_influx_db(&backfill_db);
    fresh_influx_db(&cdc_db);
    create_table(&table);
    let cdc_dir = scratch(&format!("{table}_cdc"));
    let backfill_dir = scratch(&format!("{table}_backfill"));
    let cdc_job = job_file(&cdc_dir, &table, &cdc_db, "cdc", FIELDS);
    let backfill_job = job_file(&backfill_dir, &table, &backfill_db, "backfill", FIELDS);
    let cdc = [
        "-c",
        "cdc",
        "--config",
        cdc_job.to_str().unwrap(),
        "--until-caught-up",
        "--progress",
        "off",
    ];

    // CDC's first run records the end of the binlog: the rows come after it.
    assert_ok(&run_in(&cdc_dir, &cdc));
    insert_rows(&table);
    let out = run_in(&cdc_dir, &cdc);
    assert_ok(&out);
    let cdc_summary = out.stdout;
    let out = run_in(
        &backfill_dir,
        &[
            "-c",
            "backfill",
            "--config",
            backfill_job.to_str().unwrap(),
            "--progress",
            "off",
        ],
    );
    assert_ok(&out);

    let (from_backfill, from_cdc) = (points(&backfill_db), points(&cdc_db));
    let differences = differences(&from_backfill, &from_cdc);
    assert!(
        differences.is_empty(),
        "the backfill and CDC wrote different points:\n{}",
        differences.join("\n")
    );
    assert_eq!(
        dead_letters(&backfill_dir),
        dead_letters(&cdc_dir),
        "the backfill and CDC dead-lettered differently"
    );
    // 17 inserts, an update and a delete; the source refuses 6 of the rows.
    assert_eq!(summary_u64(&cdc_summary, "changes_read") + 6, 17 + 2);

    // The rows that became points, and what was refused: a mapping refuses the all-NULL
    // row, the source the values no point holds, InfluxDB 1.x the unsigned maxima.
    let devices: Vec<&str> = from_backfill
        .keys()
        .map(|k| k.split(" @ ").next().unwrap().trim_matches('"'))
        .collect();
    assert_eq!(
        devices,
        [
            "dév",
            "nulls",
            "small",
            "updated",
            "year0",
            "zero",
            "Ünïcödé"
        ]
    );
    let refused = dead_letters(&backfill_dir);
    let stages: Vec<&str> = refused.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        stages,
        ["mapping", "sink", "sink", "source", "source", "source", "source", "source", "source"],
        "{refused:#?}"
    );
    for (column, why) in [
        ("flag", "neither 0 nor 1"),
        ("dt0", "zero date"),
        ("tsp", "zero date"),
        ("dt", "zero date"),
        ("dt", "outside the years 1678-2261"),
        ("dt6", "outside the years 1678-2261"),
    ] {
        let wanted = format!("table {table}: column `{column}`: ");
        assert!(
            refused
                .iter()
                .any(|(_, r, _)| r.starts_with(&wanted) && r.contains(why)),
            "no dead letter {wanted}...{why}: {refused:#?}"
        );
    }

    // A few values against what MySQL shows.
    let get = |device: &str, field: &str| {
        let (_, fields) = from_cdc
            .iter()
            .find(|(k, _)| k.starts_with(&format!("\"{device}\" @")))
            .unwrap_or_else(|| panic!("no point of {device}"));
        fields[field].clone()
    };
    assert_eq!(get("small", "st"), "a,c");
    assert_eq!(get("Ünïcödé", "st64"), "m1,m2,m63,m64");
    assert_eq!(get("small", "en"), "it's");
    assert_eq!(get("Ünïcödé", "en300"), "e300");
    assert_eq!(get("updated", "st"), "b,c");
    assert_eq!(get("updated", "v_lat"), "Éé");
    assert_eq!(get("Ünïcödé", "c_lat"), "é€Œ‰ÿ");
    assert_eq!(get("year0", "yr"), 0);
    assert_eq!(get("small", "mi"), -1);
    assert_eq!(get("Ünïcödé", "mu"), 16777215);
    assert_eq!(get("small", "b33"), 4294967296u64);
    assert_eq!(get("Ünïcödé", "dec65").as_f64(), Some(1e35));
    assert_eq!(get("dév", "dec65").as_f64(), Some(-1e35));
    // CHAR drops trailing spaces, VARCHAR keeps them.
    assert_eq!(get("zero", "c_utf"), "ab");
    assert_eq!(get("zero", "v_utf"), "ab  ");
    assert_eq!(get("zero", "d").as_f64(), Some(0.0));
    // Every latin1 byte from 0x20, as the server converts it (Windows-1252).
    let latin1 = get("small", "t_lat");
    assert_eq!(latin1.as_str().unwrap().chars().count(), 0xe0);
    assert!(
        latin1
            .as_str()
            .unwrap()
            .contains("~\u{7f}€\u{81}‚ƒ„…†‡ˆ‰Š‹Œ\u{8d}Ž\u{8f}\u{90}‘’“”•–—˜™š›œ\u{9d}žŸ\u{a0}¡"),
        "{latin1}"
    );
    assert_eq!(get("dév", "bi"), i64::MIN);
    // 2026-06-30 12:34:56.789123 at +05:30.
    assert_eq!(get("small", "dt6"), "2026-06-30T07:04:56.789123Z");
    // TIMESTAMP is an instant: the inserting session's +05:30 does not shift it.
    assert_eq!(get("small", "tsp"), "2026-06-30T07:04:56Z");
}

/// A column of a type tsmig cannot map is refused at `plan`, with the column and the key
/// of the job file that names it; so is a CDC job, before it reads anything.
#[test]
fn unmappable_columns_are_refused_at_plan_naming_the_column() {
    let table = unique("types_refused");
    let _cleanup = Cleanup::default().table(&table);
    create_table(&table);
    for (column, kind) in [
        ("tm", "time(3)"),
        ("bin", "binary(4)"),
        ("vbin", "varbinary(8)"),
        ("blb", "blob"),
        ("u", "uuid"),
        ("ip", "inet6"),
    ] {
        let dir = scratch(&format!("{table}_{column}"));
        let file = job_file(&dir, &table, "unused", "cdc", &format!("ti, {column}"));
        // (The test's password, "tsmig", is redacted from messages: not the word itself.)
        let wanted = format!("`mappings[0].fields[1]`: column `{column}` has type {kind}, which");
        for args in [
            vec!["plan", "--config", file.to_str().unwrap()],
            vec![
                "-c",
                "cdc",
                "--config",
                file.to_str().unwrap(),
                "--progress",
                "off",
            ],
        ] {
            let out = run_in(&dir, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(&wanted), "{args:?}: {stderr}");
        }
        assert!(
            !dir.join("state/cdc.json").exists(),
            "a refused CDC job must not record a position"
        );
    }
}

/// The binlog holds text in the column's own charset; CDC reads UTF-8 and latin1 only, so
/// a job mapping a koi8r column is refused before it reads anything, naming the column.
#[test]
fn cdc_refuses_text_in_a_charset_it_cannot_read() {
    let table = unique("types_charset");
    let _cleanup = Cleanup::default().table(&table);
    create_table(&table);
    let dir = scratch(&table);
    let file = job_file(&dir, &table, "unused", "cdc", "ti, koi");
    let out = run_in(
        &dir,
        &[
            "-c",
            "cdc",
            "--config",
            file.to_str().unwrap(),
            "--progress",
            "off",
            "--until-caught-up",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "error: column `koi` of table factory.{table} is koi8r text"
        )),
        "{error}"
    );
    assert!(
        error.contains("CONVERT TO CHARACTER SET utf8mb4"),
        "{error}"
    );
    assert!(!dir.join("state/cdc.json").exists());
}
