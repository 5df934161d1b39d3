//! The sink against a mock Timestream client (aws-smithy-mocks): the paths moto's server
//! never takes — RejectedRecords, throttling, a concurrent CreateTable — and the exact
//! requests sent (grouping, CommonAttributes, versions).

use super::*;
use crate::dead_letter::DeadLetters;
use crate::metrics::Counters;
use crate::model::{Name, Value};
use crate::sink::deliver::{deliver, Delivery};
use aws_sdk_timestreamwrite::operation::create_table::{CreateTableError, CreateTableOutput};
use aws_sdk_timestreamwrite::operation::describe_database::DescribeDatabaseOutput;
use aws_sdk_timestreamwrite::operation::describe_table::DescribeTableError;
use aws_sdk_timestreamwrite::operation::write_records::{
    WriteRecordsError, WriteRecordsInput, WriteRecordsOutput,
};
use aws_sdk_timestreamwrite::types::error::{
    AccessDeniedException, ConflictException, RejectedRecordsException, ResourceNotFoundException,
    ThrottlingException,
};
use aws_sdk_timestreamwrite::types::RejectedRecord;
use aws_sdk_timestreamwrite::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use std::time::Duration;

fn config(extra: &str) -> TimestreamSinkConfig {
    serde_yaml::from_str(&format!(
        "database: factory\nmeasure_name: metrics\nregion: us-east-1\n{extra}"
    ))
    .unwrap()
}

fn batching() -> BatchConfig {
    BatchConfig {
        retry: crate::retry::RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_retries: 3,
        },
        ..BatchConfig::default()
    }
}

fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_timestreamwrite, RuleMode::Sequential, rules, |c| c
        .retry_config(
            aws_sdk_timestreamwrite::config::retry::RetryConfig::disabled()
        ))
}

/// Point `i` of device `d{i % 2}` in `measurement`, one second apart.
fn point(measurement: &str, i: i64) -> Point {
    Point {
        measurement: Name::from(measurement),
        tags: vec![
            (Name::from("device"), format!("d{}", i % 2).into()),
            (Name::from("site"), "north".into()),
        ],
        fields: vec![
            (Name::from("temperature"), Value::Float(20.0 + i as f64)),
            (Name::from("status"), Value::Int(i)),
        ],
        time: (base_seconds() - 60 + i) * 1_000_000_000,
        device_hash: 0,
    }
}

/// The clock's second when the tests first asked: every point of a test is built from it,
/// so a test that builds a point twice gets the same time (a second may pass between).
fn base_seconds() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| super::super::encoding::now_ns() / 1_000_000_000)
}

fn batch_of(sink: &TimestreamSink, measurement: &str, n: i64) -> RecordBatch {
    let mut b = sink.new_batch();
    for i in 0..n {
        b.push(&point(measurement, i)).unwrap();
    }
    b
}

fn dead_letters(name: &str) -> (DeadLetters, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "tsmig-timestream-{name}-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    (DeadLetters::new("t", &path), path)
}

/// The dead letters written to `path`, whose file is then removed.
fn dead_lettered(path: &std::path::Path) -> Vec<serde_json::Value> {
    let letters = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let _ = std::fs::remove_file(path);
    letters
}

/// Delivers `n` points of `sensors` through `sink`, dead letters to a file of `name`.
async fn deliver_points(
    sink: &TimestreamSink,
    n: i64,
    name: &str,
) -> (
    Result<(Delivery, Option<RecordBatch>), String>,
    Counters,
    std::path::PathBuf,
) {
    let (dl, path) = dead_letters(name);
    let counters = Counters::default();
    let result = deliver(sink, batch_of(sink, "sensors", n), &dl, &counters)
        .await
        .map_err(|f| f.message);
    (result, counters, path)
}

type Seen = Arc<Mutex<Vec<WriteRecordsInput>>>;

/// A WriteRecords rule that records each request it answers.
fn write_rule(
    seen: &Seen,
) -> aws_smithy_mocks::RuleBuilder<WriteRecordsInput, WriteRecordsOutput, WriteRecordsError> {
    let seen = seen.clone();
    mock!(Client::write_records).match_requests(move |req| {
        seen.lock().unwrap().push(req.clone());
        true
    })
}

#[tokio::test]
async fn rejected_records_1_and_3_of_4_are_dead_lettered_with_their_reasons_the_rest_written() {
    let seen = Seen::default();
    let rejected = write_rule(&seen).then_error(|| {
        WriteRecordsError::RejectedRecordsException(
            RejectedRecordsException::builder()
                .message("One or more records have been rejected.")
                .rejected_records(
                    RejectedRecord::builder()
                        .record_index(1)
                        .reason("The record timestamp is outside the time range of the data ingestion window.")
                        .build(),
                )
                .rejected_records(
                    RejectedRecord::builder()
                        .record_index(3)
                        .reason("A record with the same dimensions, time and measure name exists with a higher version.")
                        .existing_version(99)
                        .build(),
                )
                .build(),
        )
    });
    let sink = TimestreamSink::with_client(&config(""), &batching(), client(&[&rejected]));
    let (result, counters, path) = deliver_points(&sink, 4, "rejected").await;
    let (delivery, _) = result.unwrap();
    assert_eq!(
        delivery,
        Delivery {
            written: 2,
            dead_lettered: 2,
            refused: vec![]
        }
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "one request, no retry");
    let letters = dead_lettered(&path);
    assert_eq!(letters.len(), 2);
    assert_eq!(
        letters[0]["reason"],
        "Timestream rejected record 1 of the request: The record timestamp is outside the time range of the data ingestion window."
    );
    assert_eq!(
        letters[1]["reason"],
        "Timestream rejected record 3 of the request: A record with the same dimensions, time and measure name exists with a higher version. (existing version 99)"
    );
    // Exactly records 1 and 3: status is the point's index.
    assert_eq!(letters[0]["record"]["measures"]["status"]["value"], "1");
    assert_eq!(letters[1]["record"]["measures"]["status"]["value"], "3");
    assert_eq!(letters[0]["record"]["table"], "sensors");
    assert_eq!(letters[1]["record"]["dimensions"]["device"], "d1");
    assert_eq!(counters.points_written.get(), 2);
}

#[tokio::test]
async fn throttling_is_retried_and_the_same_records_written() {
    let seen = Seen::default();
    let throttled = write_rule(&seen).then_error(|| {
        WriteRecordsError::ThrottlingException(
            ThrottlingException::builder()
                .message("Rate exceeded")
                .build()
                .unwrap(),
        )
    });
    let ok = write_rule(&seen).then_output(|| WriteRecordsOutput::builder().build());
    let sink = TimestreamSink::with_client(&config(""), &batching(), client(&[&throttled, &ok]));
    let (result, counters, path) = deliver_points(&sink, 3, "throttled").await;
    let (delivery, reusable) = result.unwrap();
    assert_eq!(
        delivery,
        Delivery {
            written: 3,
            dead_lettered: 0,
            refused: vec![]
        }
    );
    assert!(reusable.is_some());
    assert_eq!(counters.retries.get(), 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0], seen[1],
        "the retry resends the same records and versions"
    );
    assert!(dead_lettered(&path).is_empty());
}

#[tokio::test]
async fn a_concurrent_create_table_conflict_is_fine() {
    let describe_db =
        mock!(Client::describe_database).then_output(|| DescribeDatabaseOutput::builder().build());
    let describe_table = mock!(Client::describe_table).then_error(|| {
        DescribeTableError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("The table all_points does not exist.")
                .build(),
        )
    });
    let create = mock!(Client::create_table)
        .match_requests(|req| {
            let r = req.retention_properties().unwrap();
            req.table_name() == Some("all_points")
                && r.memory_store_retention_period_in_hours() == 24
                && r.magnetic_store_retention_period_in_days() == 30
        })
        .then_error(|| {
            CreateTableError::ConflictException(
                ConflictException::builder()
                    .message("Table all_points already exists.")
                    .build()
                    .unwrap(),
            )
        });
    let sink = TimestreamSink::with_client(
        &config("table: all_points\nmemory_retention: 24h\nmagnetic_retention: 30d"),
        &batching(),
        client(&[&describe_db, &describe_table, &create]),
    );
    sink.prepare().await.unwrap();
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_missing_table_is_created_on_write_and_the_write_tried_again() {
    let seen = Seen::default();
    let missing = write_rule(&seen).then_error(|| {
        WriteRecordsError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("The table sensors does not exist.")
                .build(),
        )
    });
    let describe_table = mock!(Client::describe_table).then_error(|| {
        DescribeTableError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("no table")
                .build(),
        )
    });
    let create = mock!(Client::create_table)
        .match_requests(|req| req.table_name() == Some("sensors"))
        .then_output(|| CreateTableOutput::builder().build());
    let ok = write_rule(&seen).then_output(|| WriteRecordsOutput::builder().build());
    let sink = TimestreamSink::with_client(
        &config(""),
        &batching(),
        client(&[&missing, &describe_table, &create, &ok]),
    );
    let (delivery, _) = deliver_points(&sink, 2, "missing").await.0.unwrap();
    assert_eq!(delivery.written, 2);
    assert_eq!(create.num_calls(), 1);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn access_denied_fails_the_job() {
    let denied = mock!(Client::write_records).then_error(|| {
        WriteRecordsError::AccessDeniedException(
            AccessDeniedException::builder()
                .message("User is not authorized to perform: timestream:WriteRecords")
                .build()
                .unwrap(),
        )
    });
    let sink = TimestreamSink::with_client(&config(""), &batching(), client(&[&denied]));
    let (result, _, path) = deliver_points(&sink, 2, "denied").await;
    let Err(err) = result else {
        panic!("access denied must fail the job")
    };
    assert!(err.contains("not authorized"), "{err}");
    assert!(dead_lettered(&path).is_empty());
}

#[tokio::test]
async fn requests_hold_100_records_of_one_table_and_hoist_what_they_share() {
    let seen = Seen::default();
    let ok = write_rule(&seen)
        .sequence()
        .output(|| WriteRecordsOutput::builder().build())
        .times(4)
        .build();
    let sink = TimestreamSink::with_client(&config(""), &batching(), client(&[&ok]));
    let mut batch = sink.new_batch();
    for i in 0..150 {
        batch.push(&point("sensors", i)).unwrap();
        if i < 60 {
            batch.push(&point("machines", i)).unwrap();
        }
    }
    assert_eq!(
        batch.requests(),
        vec![("sensors", 100), ("machines", 60), ("sensors", 50)]
    );
    let (dl, _path) = dead_letters("grouping");
    let (delivery, _) = deliver(&sink, batch, &dl, &Counters::default())
        .await
        .unwrap();
    assert_eq!(delivery.written, 210);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let first = &seen[0];
    assert_eq!(first.table_name(), Some("sensors"));
    assert_eq!(first.database_name(), Some("factory"));
    assert_eq!(first.records().len(), 100);
    let common = first.common_attributes().unwrap();
    assert_eq!(common.measure_name(), Some("metrics"));
    assert_eq!(
        common.measure_value_type().map(|t| t.as_str()),
        Some("MULTI")
    );
    assert_eq!(common.time_unit().map(|t| t.as_str()), Some("MILLISECONDS"));
    // `site` is the same everywhere, `device` is not.
    let shared: Vec<(&str, &str)> = common
        .dimensions()
        .iter()
        .map(|d| (d.name(), d.value()))
        .collect();
    assert_eq!(shared, vec![("site", "north")]);
    let r7 = &first.records()[7];
    let dims: Vec<(&str, &str)> = r7
        .dimensions()
        .iter()
        .map(|d| (d.name(), d.value()))
        .collect();
    assert_eq!(dims, vec![("device", "d1")]);
    let measures: Vec<(&str, &str, &str)> = r7
        .measure_values()
        .iter()
        .map(|m| (m.name(), m.value(), m.r#type().as_str()))
        .collect();
    assert_eq!(
        measures,
        vec![("temperature", "27.0", "DOUBLE"), ("status", "7", "BIGINT")]
    );
    assert_eq!(
        r7.time(),
        Some(
            ((point("sensors", 7).time) / 1_000_000)
                .to_string()
                .as_str()
        )
    );
    assert!(r7.measure_name().is_none(), "hoisted into CommonAttributes");
    // Every record has a version, growing in the order the points came.
    let versions: Vec<i64> = seen
        .iter()
        .flat_map(|r| r.records().iter().map(|r| r.version().unwrap()))
        .collect();
    assert!(versions.iter().all(|v| *v > 0));
    assert!(first
        .records()
        .windows(2)
        .all(|w| w[0].version() < w[1].version()));
    assert_eq!(seen[1].table_name(), Some("machines"));
    assert_eq!(seen[1].records().len(), 60);
    assert_eq!(seen[2].records().len(), 50);
}

#[tokio::test]
async fn without_hoisting_every_record_carries_everything() {
    let seen = Seen::default();
    let ok = write_rule(&seen).then_output(|| WriteRecordsOutput::builder().build());
    let sink = TimestreamSink::with_client(
        &config("common_attributes: false"),
        &batching(),
        client(&[&ok]),
    );
    deliver_points(&sink, 2, "flat").await.0.unwrap();
    let seen = seen.lock().unwrap();
    let common = seen[0].common_attributes().unwrap();
    assert!(common.dimensions().is_empty() && common.measure_name().is_none());
    let r = &seen[0].records()[1];
    let dims: Vec<(&str, &str)> = r
        .dimensions()
        .iter()
        .map(|d| (d.name(), d.value()))
        .collect();
    assert_eq!(dims, vec![("device", "d1"), ("site", "north")]);
    assert_eq!(r.measure_name(), Some("metrics"));
    assert_eq!(r.time_unit().map(|t| t.as_str()), Some("MILLISECONDS"));
}

#[test]
fn a_split_keeps_what_each_group_learnt() {
    let sink = TimestreamSink::new(&config(""), &batching());
    let mut batch = batch_of(&sink, "sensors", 5);
    {
        let mut o = batch.groups[0].outcome();
        o.written = true;
        o.rejected = vec![(1, "bad one".into()), (4, "bad four".into())];
    }
    batch.push(&point("machines", 9)).unwrap();
    let (left, right) = batch.split().unwrap();
    assert_eq!(left.requests(), vec![("sensors", 3)]);
    assert_eq!(right.requests(), vec![("sensors", 2), ("machines", 1)]);
    assert_eq!(
        left.groups[0].outcome().rejected,
        vec![(1, "bad one".to_string())]
    );
    assert_eq!(
        right.groups[0].outcome().rejected,
        vec![(1, "bad four".to_string())]
    );
    assert!(right.groups[0].outcome().written && !right.groups[1].outcome().written);
    assert_eq!(right.records()[2]["table"], "machines");
}

/// Records are grouped per table; each still says which push added it, halves included.
#[test]
fn records_grouped_per_table_keep_their_push_order() {
    let sink = TimestreamSink::with_client(&config(""), &batching(), client(&[]));
    let mut b = sink.new_batch();
    for (i, m) in ["aaa", "bbb", "aaa", "bbb", "aaa"].iter().enumerate() {
        b.push(&point(m, i as i64)).unwrap();
    }
    assert_eq!(b.pushed_order(), vec![0, 2, 4, 1, 3]);
    let (left, right) = b.split().unwrap();
    let mut halves = left.pushed_order();
    halves.extend(right.pushed_order());
    assert_eq!(halves, vec![0, 2, 4, 1, 3]);
}
