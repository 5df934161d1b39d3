//! MySQL/MariaDB → files (`sink: {type: file}`) against the private MariaDB that
//! scripts/test.sh starts: a backfill with 2 workers writes every row once, values exact,
//! in whole files under final names; a job killed mid-run has every checkpointed row in a
//! file, and restarted (after half a line is added to its open file, as a torn append
//! would leave it), leaves no partial file under a final name, loses no row, repeats only
//! points its restart wrote again, and leaves no temp file; a CDC job that could delete is
//! refused before it starts.

// The job reads MySQL and writes files: both connectors must be in the build.
#![cfg(all(feature = "file", feature = "mysql"))]

mod common;

use common::*;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// device_id, site, time (ms), temperature, humidity, pressure, status.
type SensorRow = (
    String,
    String,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
);

/// A point's identity in the files: device, site, time in ms.
type Key = (String, String, i64);

/// The rows of `table` matching `condition`, as the points the files should hold: key →
/// fields (floats as MariaDB shows them, read back to the same f64).
fn expected_points(table: &str, condition: &str) -> BTreeMap<Key, Json> {
    let rows = sql(&[
        "SET time_zone = '+00:00'",
        &format!(
            "SELECT device_id, site, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED), temperature, humidity, pressure, status FROM {table} WHERE {condition}"
        ),
    ]);
    rows.into_iter()
        .map(|r| {
            let (device, site, time, temperature, humidity, pressure, status): SensorRow =
                mysql_async::from_row(r);
            let mut fields = serde_json::Map::new();
            for (k, v) in [
                ("temperature", temperature),
                ("humidity", humidity),
                ("pressure", pressure),
            ] {
                if let Some(v) = v {
                    fields.insert(k.into(), json!(v));
                }
            }
            if let Some(s) = status {
                fields.insert("status".into(), json!(s));
            }
            ((device, site, time), Json::Object(fields))
        })
        .collect()
}

/// A job copying `table` into files under `dir/out`, with `extra` lines for the sink
/// section and `flow` appended.
fn file_job(dir: &Path, table: &str, chunk_rows: u64, extra: &str, flow: &str) -> PathBuf {
    let text = format!(
        r#"name: {table}
mode: backfill
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  time_zone: "+00:00"
  tables:
    - name: {table}
      split_by: id
      chunk_rows: {chunk_rows}
sink:
  type: file
  path: {out}
  prefix: sensors
  precision: ms
  batch_size: 1000
{extra}
mappings:
  - table: {table}
    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, pressure, status]
checkpoint:
  interval: 100ms
  store: file:{state}
{flow}
"#,
        out = dir.join("out").display(),
        state = dir.join("state").display(),
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The directory's final files and temp files (names), each sorted.
fn files(out: &Path) -> (Vec<String>, Vec<String>) {
    let mut finals = Vec::new();
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with('.') {
            assert!(name.ends_with(".lp.tmp"), "{name}");
            temps.push(name);
        } else {
            finals.push(name);
        }
    }
    finals.sort();
    temps.sort();
    (finals, temps)
}

/// Every point of a final file, which must parse whole: it ends with a newline and every
/// line is one point of the `sensors` measurement. Checks that the name carries the
/// earliest time in it.
fn read_final(out: &Path, name: &str) -> Vec<(Key, Json)> {
    let text = std::fs::read_to_string(out.join(name)).unwrap();
    assert!(text.ends_with('\n'), "{name} ends mid-line");
    let points = parse(&text, name);
    let first = points
        .iter()
        .map(|(k, _)| k.2)
        .min()
        .expect("a file holds points");
    let stamp = chrono::DateTime::from_timestamp(first.div_euclid(1000), 0)
        .unwrap()
        .format("%Y%m%dT%H%M%SZ")
        .to_string();
    assert!(
        name.starts_with(&format!("sensors-{stamp}-")) && name.ends_with(".lp"),
        "{name} is not named after its first time {stamp}"
    );
    points
}

/// Parses line protocol with InfluxData's parser; every line must be a whole point.
fn parse(text: &str, name: &str) -> Vec<(Key, Json)> {
    influxdb_line_protocol::parse_lines(text)
        .map(|line| {
            let line = line.unwrap_or_else(|e| panic!("{name}: a line does not parse: {e}"));
            assert_eq!(line.series.measurement.as_str(), "sensors");
            let tags: BTreeMap<String, String> = line
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut fields = serde_json::Map::new();
            for (k, v) in &line.field_set {
                let v = match v {
                    influxdb_line_protocol::FieldValue::F64(f) => json!(f),
                    influxdb_line_protocol::FieldValue::I64(i) => json!(i),
                    other => panic!("{name}: unexpected field {k}={other}"),
                };
                fields.insert(k.to_string(), v);
            }
            assert_eq!(tags.len(), 2, "{name}: {tags:?}");
            let key = (
                tags["device_id"].clone(),
                tags["site"].clone(),
                line.timestamp.expect("every line has its time"),
            );
            (key, Json::Object(fields))
        })
        .collect()
}

/// Every point in the final files, in file order.
fn all_final_points(out: &Path) -> Vec<(Key, Json)> {
    let (finals, _) = files(out);
    finals.iter().flat_map(|n| read_final(out, n)).collect()
}

#[test]
fn two_workers_write_every_row_once_exactly_in_whole_rolled_files() {
    let table = unique("files");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 30_000);
    let expected = expected_points(&table, "1");
    assert_eq!(expected.len(), 30_000);

    let dir = scratch(&table);
    let roll_bytes = 256 << 10;
    let job = file_job(&dir, &table, 4_000, "  roll_bytes: 256KiB", "");
    let out = run(&[
        "-c",
        "backfill",
        "--config",
        job.to_str().unwrap(),
        "--workers",
        "2",
        "--progress",
        "off",
    ]);
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "points_written"), 30_000);

    let out_dir = dir.join("out");
    let (finals, temps) = files(&out_dir);
    assert!(
        temps.is_empty(),
        "a run that ended well leaves no temp file: {temps:?}"
    );
    assert!(finals.len() > 3, "the files rolled by size: {finals:?}");
    for (seq, name) in finals.iter().enumerate() {
        let size = std::fs::metadata(out_dir.join(name)).unwrap().len();
        assert!(size <= roll_bytes, "{name} holds {size} bytes");
        // Numbered 0, 1, 2, ... in the order they were closed (the names sort by first
        // time, then number).
        assert!(
            finals.iter().any(|n| n.ends_with(&format!("-{seq:06}.lp"))),
            "no file numbered {seq}: {finals:?}"
        );
    }

    let points = all_final_points(&out_dir);
    assert_eq!(points.len(), 30_000, "every row once, no more");
    let written: BTreeMap<Key, Json> = points.into_iter().collect();
    assert_eq!(written.len(), 30_000);
    assert!(
        written == expected,
        "the points differ from the source rows"
    );
}

#[test]
fn killed_mid_run_then_restarted_leaves_whole_files_and_every_row() {
    let rows = 100_000;
    let table = unique("fkill");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, rows);
    let dir = scratch(&table);
    let job = file_job(
        &dir,
        &table,
        5_000,
        "  roll_bytes: 64KiB\n  in_flight: 1",
        "flow:\n  epoch: 50ms\n  max_in_flight_rows: 2000",
    );
    let state_file = dir.join("state/backfill.json");
    let out_dir = dir.join("out");

    let (plan, pending) = kill_mid_run(backfill_command(&job, "2"), &state_file);

    // Whatever the kill cut short, a final name holds a whole file.
    let (finals, temps) = files(&out_dir);
    let (finals_after_kill, temps_after_kill) = (finals.len(), temps.len());
    let mut on_disk: Vec<Key> = all_final_points(&out_dir)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(!finals.is_empty(), "files were closed before the kill");
    // The temp files' whole lines: what recovery will keep (at most one append cut short,
    // at the end of a file).
    let mut whole_temp_lines = 0;
    for name in &temps {
        let text = std::fs::read_to_string(out_dir.join(name)).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let points = parse(whole, name);
        whole_temp_lines += points.len();
        on_disk.extend(points.into_iter().map(|(k, _)| k));
    }
    // Every row of a checkpointed split was acknowledged, so it is in a file already.
    let finished: Vec<&Json> = plan
        .iter()
        .filter(|s| !pending.iter().any(|p| p["id"] == s["id"]))
        .collect();
    assert!(!finished.is_empty());
    let on_disk: std::collections::HashSet<Key> = on_disk.into_iter().collect();
    for split in finished {
        let mut conditions = vec!["1".to_string()];
        if let Some(a) = split["start"].as_i64() {
            conditions.push(format!("id >= {a}"));
        }
        if let Some(b) = split["end"].as_i64() {
            conditions.push(format!("id < {b}"));
        }
        for key in expected_points(&table, &conditions.join(" AND ")).keys() {
            assert!(
                on_disk.contains(key),
                "{key:?} of checkpointed split {} is in no file",
                split["id"]
            );
        }
    }

    // As if the kill had also cut an append short: half a line at the end of the dead
    // run's open file, and a file that got nothing whole before its writer died.
    let torn = "sensors,device_id=dev-0001,site=site-1 temperature=21.5,humi";
    for name in &temps {
        let mut text = std::fs::read_to_string(out_dir.join(name)).unwrap();
        text.push_str(torn);
        std::fs::write(out_dir.join(name), text).unwrap();
    }
    std::fs::write(out_dir.join(".sensors-1-999.lp.tmp"), torn).unwrap();

    // The restart recovers the dead run's temp files and writes the unfinished splits.
    let out = backfill_command(&job, "2").output().unwrap();
    assert_ok(&out);
    let reread = summary_u64(&out.stdout, "rows_read");
    assert!(reread < rows);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if whole_temp_lines > 0 {
        assert!(
            stderr.contains("recovered the files a crashed run left open"),
            "{stderr}"
        );
    }

    let (finals, temps) = files(&out_dir);
    assert!(temps.is_empty(), "no temp file remains: {temps:?}");
    assert!(finals.len() > finals_after_kill);
    let points = all_final_points(&out_dir);
    let expected = expected_points(&table, "1");
    let mut union: BTreeMap<Key, Json> = BTreeMap::new();
    for (key, fields) in &points {
        if let Some(earlier) = union.insert(key.clone(), fields.clone()) {
            assert_eq!(&earlier, fields, "{key:?} appears twice with other values");
        }
    }
    assert!(union == expected, "every row, values exact");
    // Points appear twice only where the restart wrote again what the dead run had written
    // after its last checkpoint.
    let duplicates = points.len() as u64 - rows;
    assert!(
        duplicates <= reread,
        "{duplicates} points twice, but the restart wrote only {reread}"
    );
    eprintln!(
        "after the kill: {finals_after_kill} final files, {temps_after_kill} temp files ({whole_temp_lines} whole lines); after the restart: {} final files, {reread} rows read again, {duplicates} points twice",
        finals.len()
    );
}

#[test]
fn a_cdc_job_into_files_that_could_delete_is_refused_before_it_starts() {
    let table = unique("fcdc");
    let dir = scratch(&table);
    let job = file_job(&dir, &table, 1_000, "", "");
    // The source of a CDC job needs its replica id; then the sink is what refuses.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("  time_zone:", "  server_id: 4242\n  time_zone:");
    std::fs::write(&job, text).unwrap();
    // `mode: backfill` in the file, `-c cdc` on the command line: the entry point is what
    // the connectors check.
    for mode in ["cdc", "backfill+cdc"] {
        let out = run(&["-c", mode, "--config", job.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("key `mappings[0].on_delete`")
                && stderr.contains("a `file` sink cannot delete points"),
            "{stderr}"
        );
    }
    assert!(
        !dir.join("out").exists(),
        "refused before the directory is touched"
    );
}

#[test]
fn the_shipped_job_file_validates() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/mysql-to-files.yaml");
    let out = run(&["validate", "--config", shipped.to_str().unwrap()]);
    assert_ok(&out);
}
