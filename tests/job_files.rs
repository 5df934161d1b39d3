//! Bad job files fail before anything is read, with one line naming the file, the line
//! and the key, and never showing a secret.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const GOOD: &str = r#"name: bad-files
source:
  type: mysql
  url: mysql://tsmig:${MYSQL_PASSWORD}@127.0.0.1:13306/factory
  tables:
    - name: TABLE
      split_by: id
      chunk_rows: 1000
sink:
  type: influxdb
  url: http://127.0.0.1:18086
  database: never_written
mappings:
  - table: TABLE
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity]
"#;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = scratch(&unique(name));
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `args` with the job file; returns (exit code, the one stderr line starting `error:`).
fn fails(args: &[&str], path: &Path) -> (i32, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--config");
    all.push(path.to_str().unwrap());
    let out = run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected in {stderr:?}");
    (out.status.code().unwrap(), errors[0].to_string())
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let path = write(
        "unknown",
        &GOOD.replace("TABLE", "t").replace(
            "      chunk_rows: 1000\n",
            "      chunk_rows: 1000\n      chunk_size: 5\n",
        ),
    );
    let (code, line) = fails(&["validate"], &path);
    assert_eq!(code, 2);
    assert!(
        line.contains(&format!(
            "{}:9:7: key `source.tables[0].chunk_size`",
            path.display()
        )),
        "{line}"
    );
    assert!(line.contains("unknown field `chunk_size`"), "{line}");
}

#[test]
fn wrong_type_names_the_key_and_hides_secrets() {
    let text = GOOD
        .replace("TABLE", "t")
        .replace("chunk_rows: 1000", "chunk_rows: ${MYSQL_PASSWORD}");
    let path = write("type", &text);
    let (code, line) = fails(&["-c", "backfill"], &path);
    assert_eq!(code, 2);
    assert!(
        line.contains(":8:7: key `source.tables[0].chunk_rows`"),
        "{line}"
    );
    assert!(line.contains("invalid type: string \"***\""), "{line}");
    assert!(
        !line.contains("tsmig\""),
        "the password must not appear: {line}"
    );
}

#[test]
fn unset_variable_is_named() {
    let path = write(
        "unset",
        &GOOD
            .replace("TABLE", "t")
            .replace("${MYSQL_PASSWORD}", "${TSMIG_SURELY_UNSET_VAR}"),
    );
    let (code, line) = fails(&["validate"], &path);
    assert_eq!(code, 2);
    assert!(
        line.contains(":4:22: environment variable TSMIG_SURELY_UNSET_VAR is not set"),
        "{line}"
    );
}

#[test]
fn unknown_column_is_found_against_the_real_table() {
    let table = unique("cols");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let path = write(
        "column",
        &GOOD
            .replace("TABLE", &table)
            .replace("[temperature, humidity]", "[temperature, humdity]"),
    );
    // validate does not connect, so it cannot know the column ...
    assert_ok(&run(&["validate", "--config", path.to_str().unwrap()]));
    // ... plan and the run do, and refuse before writing anything.
    for args in [&["plan"][..], &["-c", "backfill"][..]] {
        let (code, line) = fails(args, &path);
        assert_eq!(code, 2, "{args:?}");
        assert!(
            line.contains(":18:27: key `mappings[0].fields[1]`"),
            "{line}"
        );
        assert!(
            line.contains(&format!("column `humdity` is not in table `{table}`")),
            "{line}"
        );
    }
    let json = influx_query("", "SHOW DATABASES", "ns");
    assert!(
        !json.to_string().contains("never_written"),
        "nothing may be written"
    );
}

#[test]
fn unknown_table_and_unindexed_split_key_are_refused() {
    let path = write("table", &GOOD.replace("TABLE", "no_such_table_here"));
    let (code, line) = fails(&["plan"], &path);
    assert_eq!(code, 2);
    assert!(line.contains(":6:7: key `source.tables[0].name`"), "{line}");
    assert!(
        line.contains("factory.no_such_table_here does not exist"),
        "{line}"
    );

    let table = unique("noidx");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let path = write(
        "split",
        &GOOD
            .replace("TABLE", &table)
            .replace("split_by: id", "split_by: status"),
    );
    let (code, line) = fails(&["plan"], &path);
    assert_eq!(code, 2);
    assert!(
        line.contains("key `source.tables[0].split_by`") && line.contains("leads no index"),
        "{line}"
    );
}

#[test]
fn plan_validate_and_a_failing_run_never_show_a_password() {
    let table = unique("secrets");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let literal = "Lit3ralPassw0rd";
    let from_env = "Env1ronPassw0rd";
    // Port 1: nothing listens, so the run fails when it first reaches the target.
    for (name, url, shown) in [
        (
            "literal",
            format!("http://admin:{literal}@127.0.0.1:1/?u=reader&p={literal}"),
            "http://admin:***@127.0.0.1:1/?u=***&p=***",
        ),
        (
            "env",
            "http://admin:${TSMIG_TEST_SINK_PASSWORD}@127.0.0.1:1".to_string(),
            "http://admin:***@127.0.0.1:1",
        ),
    ] {
        let path = write(
            name,
            &GOOD.replace("TABLE", &table).replace(
                "  url: http://127.0.0.1:18086\n",
                &format!("  url: {url}\n  max_retries: 1\n  initial_backoff: 10ms\n"),
            ),
        );
        // A state of its own: the run holds its lock while it fails.
        let state = path.parent().unwrap().join("state");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}checkpoint:\n  store: file:{}\n", state.display()),
        )
        .unwrap();
        let config = path.to_str().unwrap();
        for args in [
            &["validate", "--config", config][..],
            &["plan", "--config", config][..],
            // Without restarts: a target that is down is otherwise waited for.
            &[
                "-c",
                "backfill",
                "--config",
                config,
                "--progress",
                "off",
                "--restart",
                "none",
            ][..],
        ] {
            let out = tsmig()
                .env("TSMIG_TEST_SINK_PASSWORD", from_env)
                .env("RUST_LOG", "debug")
                .args(args)
                .output()
                .unwrap();
            let shows = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !shows.contains(literal) && !shows.contains(from_env),
                "{name}: {args:?} shows the password:\n{shows}"
            );
            match args[0] {
                "validate" => assert_ok(&out),
                "plan" => {
                    assert_ok(&out);
                    assert!(
                        shows.contains(&format!("target InfluxDB 1.x at {shown}, database")),
                        "{shows}"
                    );
                }
                _ => {
                    assert_eq!(out.status.code(), Some(1), "{shows}");
                    assert!(shows.contains("error: the target is not ready"), "{shows}");
                }
            }
        }
    }
}

#[test]
fn a_duplicated_mapping_is_refused_naming_both() {
    let table = unique("dup");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    // mappings[1] writes elsewhere; mappings[2] writes mappings[0]'s points again (its tags
    // in another order, a field it already writes).
    let text = format!(
        "{}  - table: TABLE\n    measurement: elsewhere\n    device_field: device_id\n    timestamp_field: ts\n    fields: [temperature]\n  - table: TABLE\n    device_field: device_id\n    timestamp_field: ts\n    tags: [site, device_id]\n    fields: [humidity]\n",
        GOOD
    )
    .replace("TABLE", &table);
    let path = write("duplicate", &text);
    let line = text
        .lines()
        .position(|l| l == "    tags: [site, device_id]")
        .unwrap()
        - 2;
    // validate refuses it without connecting; plan and a run refuse it before reading.
    for args in [&["validate"][..], &["plan"][..], &["-c", "backfill"][..]] {
        let (code, error) = fails(args, &path);
        assert_eq!(code, 2, "{args:?}: {error}");
        assert!(
            error.contains(&format!(
                ":{line}:5: key `mappings[2]`: `mappings[2]` duplicates `mappings[0]`: both write the rows of table `{table}` to the same points (measurement `{table}`, tags [device_id, site], time `ts`) and both write [humidity]"
            )),
            "{args:?}: {error}"
        );
    }
    let json = influx_query("", "SHOW DATABASES", "ns");
    assert!(
        !json.to_string().contains("never_written"),
        "nothing may be written"
    );
}

#[test]
fn help_documents_every_flag() {
    let out = run(&["--help"]);
    assert_ok(&out);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "-c, --class",
        "--config",
        "--workers",
        "--processes",
        "--process",
        "--hostfile",
        "--fresh",
        "--progress",
        "validate",
        "plan",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
