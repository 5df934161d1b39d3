//! `-c verify`: summarise the source as the job would write it and the target as it is,
//! per series and bucket, diff the two (see [`crate::verify`]) and report.

use super::{open, runtime, source_error, RunError, RunOptions};
use crate::dead_letter::DeadLetters;
use crate::job::Job;
use crate::mapping::Mappings;
use crate::sinks::influxdb::InfluxSink;
use crate::sinks::iotdb::IotdbSink;
use crate::sinks::{SinkConfig, Verify};
use crate::sources::{BoundedSource, RowSender};
use crate::verify::{series_key, Report, Summaries};
use std::sync::Arc;

/// The source, its mappings compiled against it.
type Opened = (Box<dyn BoundedSource>, Mappings);

pub(super) fn run(job: &Job, options: &RunOptions) -> Result<(), RunError> {
    if options.cluster.processes() > 1 {
        return Err(RunError::Usage(
            "verify runs in one process; use --workers for parallelism".into(),
        ));
    }
    let rt = runtime()?;
    let opened = rt.block_on(open(job))?;
    match &job.file.sink {
        SinkConfig::Influxdb(c, batching) => {
            let sink =
                InfluxSink::new(c, batching, opened.1.measurements()).map_err(RunError::Usage)?;
            verify_with(job, options, &rt, opened, sink)
        }
        SinkConfig::Iotdb(c, batching) => {
            let sink = IotdbSink::new(c, batching, &opened.1).map_err(RunError::Usage)?;
            verify_with(job, options, &rt, opened, sink)
        }
        SinkConfig::Timestream(..) => Err(RunError::Usage(
            "verify cannot read Timestream back yet (it needs the Timestream Query API)".into(),
        )),
        SinkConfig::Blackhole(_) => Err(RunError::Usage(
            "a blackhole keeps nothing to verify".into(),
        )),
    }
}

/// Summarises the source (as the job would write it) and the target, diffs the two with
/// differential dataflow, and reports.
fn verify_with<S: Verify>(
    job: &Job,
    options: &RunOptions,
    rt: &tokio::runtime::Runtime,
    (source, mappings): Opened,
    sink: S,
) -> Result<(), RunError> {
    let bucket = job.file.verify.bucket.as_nanos().min(i64::MAX as u128) as i64;
    let source: Arc<dyn BoundedSource> = Arc::from(source);
    let mappings = Arc::new(mappings);
    let sink = Arc::new(sink);
    // Rows the source cannot convert are noted apart from the backfill's dead letters, so
    // verifying never adds to them.
    let dead_letters = DeadLetters::new(
        &job.file.name,
        &job.state_dir()
            .map_err(|e| RunError::Usage(e.to_string()))?
            .join("verify-dead-letter.jsonl"),
    );
    let unmapped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let source_summaries = rt.block_on(async {
        let splits = source.plan().await.map_err(|e| source_error(job, e))?;
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(2));
        for split in splits {
            let (source, mappings, sink, dead_letters, unmapped, permits) = (
                source.clone(),
                mappings.clone(),
                sink.clone(),
                dead_letters.clone(),
                unmapped.clone(),
                permits.clone(),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                let (tx, mut rx) = tokio::sync::mpsc::channel(4);
                let sender = RowSender::new(tx, Arc::new(|| {}));
                let reader = {
                    let source = source.clone();
                    let dead_letters = dead_letters.clone();
                    tokio::spawn(async move { source.read(&split, &sender, &dead_letters).await })
                };
                let mut summaries = Summaries::new(bucket);
                while let Some(rows) = rx.recv().await {
                    for row in rows {
                        mappings.apply(
                            row,
                            &mut |p| {
                                let series = series_key(
                                    &p.measurement,
                                    p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                                );
                                let fields = p
                                    .fields
                                    .iter()
                                    .map(|(k, v)| (sink.field_name(k), sink.canonical(k, v)));
                                summaries.add(&series, p.time, fields);
                            },
                            &mut |_| {
                                unmapped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            },
                        );
                    }
                }
                reader
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(summaries)
            });
        }
        let mut all = Summaries::new(bucket);
        while let Some(done) = tasks.join_next().await {
            all.merge(
                done.map_err(|e| RunError::Failed(e.to_string()))?
                    .map_err(RunError::Failed)?,
            );
        }
        Ok::<_, RunError>(all)
    })?;
    let target_summaries = rt
        .block_on(sink.target_summaries(bucket))
        .map_err(|e| RunError::Failed(job.secrets.redact(&e)))?;

    let source_summaries = source_summaries.into_vec();
    let target_summaries = target_summaries.into_vec();
    let mut keys: Vec<crate::verify::Key> = source_summaries
        .iter()
        .chain(&target_summaries)
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys.dedup();
    let leftovers =
        crate::engine::verify::diff(source_summaries, target_summaries, options.cluster.workers)
            .map_err(RunError::Failed)?;
    let report = Report::classify(&keys, leftovers);
    print!("{}", report.render(job.file.verify.examples));
    let unmapped = unmapped.load(std::sync::atomic::Ordering::Relaxed) + dead_letters.count();
    if unmapped > 0 {
        println!(
            "verify: {unmapped} source rows cannot be written at all (see {})",
            dead_letters.path().display()
        );
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(RunError::Failed(format!(
            "the target differs from the source: {} missing, {} extra, {} differing buckets",
            report.missing.len(),
            report.extra.len(),
            report.differing.len()
        )))
    }
}
