//! Dead letters are never dropped: each names the row it was (its key, though no mapping
//! reads it) and why; a dead-letter file that cannot be written stops the job (exit 1)
//! naming the file, and once it can be written the next run puts every letter in it.

mod common;

use common::*;
use serde_json::Value as Json;
use std::path::Path;

/// A sensor table of `rows` whose every 7th row has no device (the mapping rejects it),
/// and the ids of those rows, sorted.
fn table_with_rejects(table: &str, rows: u64) -> Vec<i64> {
    load_sensor_table(table, rows);
    sql(&[
        &format!("ALTER TABLE {table} MODIFY device_id VARCHAR(64) NULL"),
        &format!("UPDATE {table} SET device_id = NULL WHERE id % 7 = 0"),
    ]);
    let ids = sql(&[&format!(
        "SELECT id FROM {table} WHERE device_id IS NULL ORDER BY id"
    )]);
    ids.into_iter().map(mysql_async::from_row).collect()
}

/// The dead letters in `path`.
fn letters(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The ids the dead letters name, sorted; every letter is the mapping's, for the device.
fn rejected_ids(letters: &[Json]) -> Vec<i64> {
    let mut ids: Vec<i64> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["stage"], "mapping", "{l}");
            assert_eq!(l["reason"], "device column `device_id` is NULL", "{l}");
            // The row as read: its key and the mapped columns.
            assert!(l["record"]["ts"].is_string(), "{l}");
            l["record"]["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("the record lacks its key `id`: {l}"))
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_rejected_row_carries_its_key_and_its_reason() {
    let table = unique("dlkey");
    let db = unique("dlkey");
    let _cleanup = Cleanup::default().table(&table).database(&db);
    let expected = table_with_rejects(&table, 3_000);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    // The mapping reads device_id, ts, site and the fields: not `id`, the split key.
    let job = sensor_job(&dir, &table, &db, 1_000, "", "");
    let out = backfill_command(&job, "2").output().unwrap();
    assert_ok(&out);
    assert_eq!(summary_u64(&out.stdout, "rows_read"), 3_000);
    assert_eq!(
        summary_u64(&out.stdout, "dead_lettered"),
        expected.len() as u64
    );
    let letters = letters(&dir.join("state/dead-letter.jsonl"));
    assert_eq!(rejected_ids(&letters), expected);
    assert_eq!(
        influx_count(&db, "sensors", "temperature"),
        3_000 - expected.len() as u64
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_dead_letter_file_that_cannot_be_written_stops_the_job_and_nothing_is_lost() {
    let table = unique("dlfail");
    let db = unique("dlfail");
    let _cleanup = Cleanup::default().table(&table).database(&db);
    let expected = table_with_rejects(&table, 5_000);
    fresh_influx_db(&db);
    let dir = scratch(&db);
    // The tests run as root, whom no permission stops: the file's directory is a regular
    // file instead. (Its path avoids the word `tsmig`, the test password, which error
    // messages mask.)
    let blocker = std::env::temp_dir().join(format!("dead-letters-blocked-{db}"));
    let _ = std::fs::remove_dir_all(&blocker);
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let path = blocker.join("dead.jsonl");
    let job = sensor_job(&dir, &table, &db, 1_000, "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, format!("{text}dead_letter: {}\n", path.display())).unwrap();

    let out = backfill_command(&job, "2").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a dead letter that cannot be written must fail the job: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: cannot write the dead-letter file {}: ",
            path.display()
        )),
        "{stderr}"
    );
    // No checkpoint claims a rejected row whose letter was lost, and no temp file is left.
    let state = dir.join("state");
    if state.join("backfill.json").exists() {
        let (plan, pending) = unfinished_splits(&state.join("backfill.json"));
        for split in plan.iter().filter(|s| !pending.contains(s)) {
            let (start, end) = (split["start"].as_i64(), split["end"].as_i64());
            assert!(
                !expected
                    .iter()
                    .any(|id| start.is_none_or(|a| *id >= a) && end.is_none_or(|b| *id < b)),
                "split {split} was checkpointed without its dead letters"
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Once the file can be written, the next run writes every letter, each once.
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    let out = backfill_command(&job, "2").output().unwrap();
    assert_ok(&out);
    assert_eq!(rejected_ids(&letters(&path)), expected);
    assert_eq!(
        influx_count(&db, "sensors", "temperature"),
        5_000 - expected.len() as u64
    );
    std::fs::remove_dir_all(&blocker).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
