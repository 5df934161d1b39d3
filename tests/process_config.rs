//! The process configuration, config/tsmig.yaml: found by --conf-dir, TSMIG_CONF_DIR or
//! ./config; bad files refused with the file, line and key; flags beating the job file
//! beating the configuration, in `tsmig-job config` and in a real run; JSON log lines.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tsmig-job` run from `dir`, with no configuration from this environment.
fn tsmig_in(dir: &Path) -> Command {
    let mut c = tsmig();
    c.current_dir(dir)
        .env_remove("TSMIG_CONF_DIR")
        .env_remove("TSMIG_PROCESS")
        .env_remove("TSMIG_STATUS_TOKEN")
        .env("HOSTNAME", "laptop");
    c
}

/// A directory holding `tsmig.yaml` with `text`.
fn conf_dir(name: &str, text: &str) -> PathBuf {
    let dir = scratch(&unique(name)).join("conf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tsmig.yaml"), text).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one `error: ` line of a failed run.
fn error_line(out: &Output) -> String {
    let text = stderr(out);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected in {text:?}");
    errors[0].to_string()
}

/// `tsmig-job config`'s lines: key → (value, origin); and its header lines.
fn shown(out: &Output) -> (BTreeMap<String, (String, String)>, Vec<String>) {
    assert_ok(out);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = BTreeMap::new();
    let mut header = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            header.push(line.to_string());
            continue;
        }
        let (pair, from) = line.split_once("  # ").unwrap_or_else(|| panic!("{line}"));
        let (key, value) = pair.split_once(": ").unwrap_or_else(|| panic!("{line}"));
        rows.insert(
            key.to_string(),
            (value.trim_end().to_string(), from.to_string()),
        );
    }
    (rows, header)
}

/// A job file whose target is down (port 1): a run fails at its first write attempt,
/// transiently, so the restart strategy decides what happens next.
fn job_with_target_down(dir: &Path, table: &str, sink_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "name: {table}\nsource:\n  type: mysql\n  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory\n  tables:\n    - name: {table}\n      split_by: id\nsink:\n  type: influxdb\n  url: {sink_url}\n  database: never_written\n  max_retries: 1\n  initial_backoff: 10ms\nmappings:\n  - table: {table}\n    device_field: device_id\n    timestamp_field: ts\n    fields: [temperature]\n{extra}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn bad_configuration_files_name_the_file_line_and_key() {
    let job = scratch(&unique("badconf-job")).join("job.yaml");
    std::fs::write(
        &job,
        "name: j\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: t\nsink:\n  type: blackhole\n",
    )
    .unwrap();
    for (text, says) in [
        (
            "workers: 2\ncluster:\n  processes: 3\n  dns: tsmig.tsmig:2101\n",
            "tsmig.yaml:4:3: key `cluster.dns`: `tsmig.tsmig:2101` has no `{i}`",
        ),
        (
            "cluster:\n  processes: 2\n  hosts: [a:1, b:2]\n  dns: t-{i}:1\n",
            "tsmig.yaml:4:3: key `cluster.dns`: `cluster.hosts` and `cluster.dns` are both set",
        ),
        (
            "cluster:\n  processes: 2\n  dns: t-{i}:1\n  process: 5\n",
            "tsmig.yaml:4:3: key `cluster.process`: 5 is not below `cluster.processes` 2",
        ),
        (
            "workers: 2\nmetrics:\n  adress: 0.0.0.0:9464\n",
            "tsmig.yaml:3:3: key `metrics.adress`: unknown field `adress`, expected `addr`",
        ),
        (
            "workers: 0\n",
            "tsmig.yaml:1:1: key `workers`: must be at least 1",
        ),
        (
            "status:\n  addr: everywhere\n",
            "tsmig.yaml:2:3: key `status.addr`: `everywhere` is not an address",
        ),
        (
            "log:\n  format: xml\n",
            "tsmig.yaml:2:3: key `log.format`: `xml` is not one of text, json",
        ),
    ] {
        let dir = conf_dir("badconf", text);
        let conf = dir.to_str().unwrap();
        for args in [
            &["config", "--conf-dir", conf][..],
            &[
                "-c",
                "backfill",
                "--config",
                job.to_str().unwrap(),
                "--conf-dir",
                conf,
            ][..],
        ] {
            let out = tsmig_in(&std::env::temp_dir()).args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            let line = error_line(&out);
            assert!(
                line.starts_with(&format!("error: {conf}/")) && line.contains(says),
                "{text:?} {args:?}:\n{line}\nlacks {says}"
            );
        }
    }
}

#[test]
fn the_directory_comes_from_the_flag_the_variable_or_the_working_directory() {
    let from_flag = conf_dir("lookup-flag", "workers: 3\n");
    let from_env = conf_dir("lookup-env", "workers: 4\n");
    let cwd = scratch(&unique("lookup-cwd"));
    let run_config = |args: &[&str], env: Option<&Path>| {
        let mut c = tsmig_in(&cwd);
        if let Some(dir) = env {
            c.env("TSMIG_CONF_DIR", dir);
        }
        c.arg("config").args(args).output().unwrap()
    };
    let workers = |out: &Output| shown(out).0["workers"].clone();

    // Nothing anywhere: the defaults.
    let out = run_config(&[], None);
    assert_eq!(workers(&out), ("1".into(), "default".into()));
    assert!(
        shown(&out).1[0].contains("none found"),
        "{:?}",
        shown(&out).1
    );

    // ./config/tsmig.yaml of the working directory.
    std::fs::create_dir_all(cwd.join("config")).unwrap();
    std::fs::write(cwd.join("config/tsmig.yaml"), "\nworkers: 5\n").unwrap();
    let out = run_config(&[], None);
    assert_eq!(workers(&out), ("5".into(), "config/tsmig.yaml:2".into()));
    assert!(shown(&out).1[0].contains("found by ./config"));

    // TSMIG_CONF_DIR beats ./config; --conf-dir beats both.
    let out = run_config(&[], Some(&from_env));
    assert_eq!(workers(&out).0, "4");
    assert!(shown(&out).1[0].contains("found by TSMIG_CONF_DIR"));
    let flag = from_flag.to_str().unwrap();
    let out = run_config(&["--conf-dir", flag], Some(&from_env));
    assert_eq!(workers(&out), ("3".into(), format!("{flag}/tsmig.yaml:1")));
    // A flag beats them all.
    let out = run_config(&["--conf-dir", flag, "--workers", "7"], Some(&from_env));
    assert_eq!(workers(&out), ("7".into(), "flag --workers".into()));

    // A directory named explicitly must exist and hold tsmig.yaml.
    let missing = cwd.join("no-such-dir");
    let out = run_config(&["--conf-dir", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        error_line(&out),
        format!("error: --conf-dir {}: no such directory", missing.display())
    );
    let out = run_config(&[], Some(&missing));
    assert_eq!(
        error_line(&out),
        format!(
            "error: TSMIG_CONF_DIR {}: no such directory",
            missing.display()
        )
    );
    let empty = scratch(&unique("lookup-empty"));
    let out = run_config(&["--conf-dir", empty.to_str().unwrap()], None);
    assert!(error_line(&out).ends_with("the directory has no tsmig.yaml"));
}

#[test]
fn the_shipped_configuration_is_the_defaults_and_documents_every_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let elsewhere = scratch(&unique("defaults"));
    let defaults = tsmig_in(&elsewhere)
        .env_remove("RUST_LOG")
        .arg("config")
        .output()
        .unwrap();
    let shipped = tsmig_in(root)
        .env_remove("RUST_LOG")
        .arg("config")
        .output()
        .unwrap();
    let (defaults, _) = shown(&defaults);
    let (shipped, header) = shown(&shipped);
    assert!(
        header[0].contains("config/tsmig.yaml (found by ./config)"),
        "{header:?}"
    );
    assert_eq!(
        defaults.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>()
    );
    for (key, (value, _)) in &defaults {
        assert_eq!(&shipped[key].0, value, "config/tsmig.yaml changes {key}");
    }
    // Every key the configuration has is written in the file (commented out where it has
    // no value by default), and in the README's table.
    let file = std::fs::read_to_string(root.join("config/tsmig.yaml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for key in defaults.keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            file.lines().any(|l| l
                .trim_start()
                .trim_start_matches("# ")
                .starts_with(&format!("{leaf}:"))),
            "config/tsmig.yaml does not show `{key}`"
        );
        assert!(
            readme.contains(&format!("| `{key}` |")),
            "README's table lacks `{key}`"
        );
    }
    // And nothing in it is a key the configuration does not have.
    let out = tsmig_in(&elsewhere)
        .args([
            "config",
            "--conf-dir",
            root.join("config").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_ok(&out);
}

#[test]
fn flags_beat_the_job_file_which_beats_the_configuration() {
    let dir = conf_dir(
        "precedence",
        "workers: 2\nstate:\n  dir: /srv/tsmig\nrestart:\n  strategy: fixed\n  initial: 10ms\n  max: 10ms\n  attempts: 2\nflow:\n  epoch: 50ms\nstop_timeout: 2m\n",
    );
    let job = dir.parent().unwrap().join("job.yaml");
    std::fs::write(
        &job,
        "name: prec\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: t\nsink:\n  type: blackhole\nmappings:\n  - table: t\n    timestamp_field: ts\n    fields: [x]\nrestart:\n  attempts: 1\nflow:\n  max_in_flight_rows: 500\n",
    )
    .unwrap();
    let conf = dir.to_str().unwrap();
    let at = |line: usize| format!("{conf}/tsmig.yaml:{line}");
    let out = tsmig_in(&dir)
        .args([
            "config",
            "--conf-dir",
            conf,
            "--config",
            job.to_str().unwrap(),
        ])
        .args(["--stop-timeout", "5s"])
        .output()
        .unwrap();
    let (rows, _) = shown(&out);
    let row = |key: &str| rows[key].clone();
    let job_at = |line: usize| format!("job {}:{line}", job.display());
    assert_eq!(row("workers"), ("2".into(), at(1)));
    assert_eq!(
        row("stop_timeout"),
        ("5s".into(), "flag --stop-timeout".into())
    );
    assert_eq!(row("restart.strategy"), ("fixed".into(), at(5)));
    assert_eq!(row("restart.initial"), ("10ms".into(), at(6)));
    assert_eq!(row("restart.attempts"), ("1".into(), job_at(14)));
    assert_eq!(row("flow.epoch"), ("50ms".into(), at(10)));
    assert_eq!(row("flow.max_in_flight_rows"), ("500".into(), job_at(16)));
    assert_eq!(
        row("checkpoint.store"),
        (
            "file:/srv/tsmig/prec".into(),
            format!("state.dir, {}", at(3))
        )
    );
    assert_eq!(row("restart.reset_after"), ("10m".into(), "default".into()));
    let out = tsmig_in(&dir)
        .args([
            "config",
            "--conf-dir",
            conf,
            "--config",
            job.to_str().unwrap(),
        ])
        .args(["--restart", "none", "--workers", "3"])
        .output()
        .unwrap();
    let (rows, _) = shown(&out);
    assert_eq!(
        rows["restart.strategy"],
        ("none".into(), "flag --restart".into())
    );
    assert_eq!(rows["workers"], ("3".into(), "flag --workers".into()));
}

#[test]
fn a_run_takes_restart_and_state_from_the_configuration_unless_the_job_or_a_flag_says_otherwise() {
    let table = unique("confrun");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let dir = scratch(&unique("confrun"));
    let state = dir.join("state-base");
    let conf = conf_dir(
        "confrun",
        &format!(
            "state:\n  dir: {}\nrestart:\n  strategy: fixed\n  initial: 10ms\n  max: 10ms\n  attempts: 2\n",
            state.display()
        ),
    );
    // restarts=N in the summary: how many times the run restarted before giving up.
    for (extra, flags, restarts) in [
        ("", &[][..], "2"),
        ("restart:\n  attempts: 1\n", &[][..], "1"),
        ("restart:\n  attempts: 1\n", &["--restart", "none"][..], "0"),
    ] {
        let job = job_with_target_down(&dir, &table, "http://127.0.0.1:1", extra);
        let out = tsmig_in(&dir)
            .args(["-c", "backfill", "--progress", "off", "--config"])
            .arg(&job)
            .args(["--conf-dir", conf.to_str().unwrap()])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let summary = summary(&out.stdout);
        assert_eq!(
            summary["restarts"],
            restarts,
            "{extra:?} {flags:?}: {}",
            stderr(&out)
        );
        assert!(error_line(&out).contains("the target is not ready"));
    }
    // The state went to <state.dir>/<job name>: the job file names no store.
    assert!(
        state.join(&table).is_dir(),
        "no state in {}",
        state.display()
    );
}

#[test]
fn json_log_lines_are_json_with_secrets_masked() {
    let table = unique("jsonlog");
    let _cleanup = Cleanup::default().table(&table);
    load_sensor_table(&table, 10);
    let dir = scratch(&unique("jsonlog"));
    let conf = conf_dir(
        "jsonlog",
        &format!(
            "log:\n  format: json\n  level: debug\nstate:\n  dir: {}\nstatus:\n  addr: 127.0.0.1:0\n  token: ${{TSMIG_STATUS_TOKEN}}\n",
            dir.join("state").display()
        ),
    );
    // The whole URL comes from the environment, so it is a secret wherever it shows: in
    // the HTTP client's own debug lines, which tsmig did not write.
    let url = "http://127.0.0.1:1";
    let token = "Status-T0ken-Never-Shown";
    let job = job_with_target_down(&dir, &table, "${TSMIG_TEST_SINK_URL}", "");
    let out = tsmig_in(&dir)
        .env_remove("RUST_LOG")
        .env("TSMIG_TEST_SINK_URL", url)
        .env("TSMIG_STATUS_TOKEN", token)
        .args([
            "-c",
            "backfill",
            "--progress",
            "off",
            "--restart",
            "none",
            "--config",
        ])
        .arg(&job)
        .args(["--conf-dir", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(!text.contains(url) && !text.contains(token), "{text}");
    let mut levels = std::collections::BTreeSet::new();
    let mut masked = 0;
    for line in text.lines().filter(|l| !l.starts_with("error: ")) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["message"].is_string(), "{line}");
        levels.insert(event["level"].as_str().unwrap().to_string());
        if event["message"] == "starting new connection: ***/" {
            masked += 1;
        }
    }
    // debug from the configuration's log.level; the status page at its status.addr.
    assert!(levels.contains("DEBUG"), "{levels:?}\n{text}");
    assert!(text.contains("status page at http://127.0.0.1:"), "{text}");
    assert!(masked > 0, "no masked connection line in\n{text}");
}
