//! `-c verify`: summarise the source as the job would write it and the target as it is,
//! per series and bucket, diff the two (see [`crate::verify`]) and report.
//!
//! `-c verify --repair` then re-copies every window the diff found different — one series
//! in one bucket, `[start, start + verify.bucket)` — and verifies again:
//!
//! ```text
//!  verify ──► windows that differ ──► delete each window in the target ──► read the source
//!    (report)   (+ series a delete          (every delete done before        again, keep the
//!                also takes: InfluxDB 2)     any write is sent)               windows' points
//!                                                                                  │
//!  verify again ◄── report ◄── write them as the backfill does (batches, deliver) ◄┘
//!    exit 0 only if clean
//! ```
//!
//! The source is read whole a second time rather than window by window: sources plan by
//! their own dimension (MySQL by id, not by time), so a window has no cheaper read. Memory
//! holds the set of windows, one batch of rows and one request per reading task (two at a
//! time), never the windows' points all at once.

use super::{build_sink, open, runtime, source_error, RunError, RunOptions};
use crate::connectors::Checked;
use crate::dead_letter::DeadLetters;
use crate::job::Job;
use crate::mapping::Mappings;
use crate::metrics::Counters;
use crate::model::{format_time, Point};
use crate::sink::deliver::{delete_windows, deliver};
use crate::sink::{Batch, SeriesWindow, Sink};
use crate::source::{BoundedSource, RowSender, Split};
use crate::verify::{repair_keys, series_key, Key, Report, Series, Summaries};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The source, its mappings compiled against it.
type Opened = (Box<dyn BoundedSource>, Mappings);

/// `-c verify [--repair]` with the job's sink. Targets that cannot be read back (Timestream,
/// a blackhole) are refused before anything is read.
pub(super) fn run(job: &Job, checked: &Checked, options: &RunOptions) -> Result<(), RunError> {
    if options.cluster.processes() > 1 {
        return Err(RunError::Usage(
            "verify runs in one process; use --workers for parallelism".into(),
        ));
    }
    let rt = runtime()?;
    let opened = rt.block_on(open(job, checked))?;
    let sink = build_sink(job, checked, &opened.1)?;
    if let Err(refusal) = sink.read_back() {
        let repair = match options.repair {
            true => ", so it cannot --repair it either",
            false => "",
        };
        return Err(RunError::Usage(format!("{refusal}{repair}")));
    }
    verify_with(job, options, &rt, opened, sink).map_err(|e| match e {
        RunError::Failed(m) => RunError::Failed(job.secrets.redact(&m)),
        other => other,
    })
}

/// Verifies; with `--repair`, re-copies what differs and verifies again.
fn verify_with<S: Sink>(
    job: &Job,
    options: &RunOptions,
    rt: &tokio::runtime::Runtime,
    (source, mappings): Opened,
    sink: S,
) -> Result<(), RunError> {
    let verifier = Verifier {
        job,
        workers: options.cluster.workers,
        rt,
        bucket: job.file.verify.bucket.as_nanos().min(i64::MAX as u128) as i64,
        source: Arc::from(source),
        mappings: Arc::new(mappings),
        sink: Arc::new(sink),
    };
    let first = verifier.compare(options.repair)?;
    first.print(job);
    if !options.repair {
        return first.outcome("");
    }
    let keys = repair_keys(
        &first.report,
        &first.keys,
        verifier.sink.range_deletes_tag_supersets(),
    )
    .map_err(RunError::Failed)?;
    if keys.is_empty() {
        println!("{}", Repaired::default().total());
        return Ok(());
    }
    let repaired = verifier.repair(&keys, &first.target_counts)?;
    print!("{}", repaired.render());
    if repaired.dead_lettered > 0 {
        println!(
            "repair: the target refused {} points, dead-lettered in {}",
            repaired.dead_lettered,
            repaired.dead_letter_path.display()
        );
    }
    let second = verifier.compare(false)?;
    second.print(job);
    second.outcome("after the repair, ")
}

/// What verifying needs, for one comparison or two and a repair in between.
struct Verifier<'a, S> {
    job: &'a Job,
    workers: usize,
    rt: &'a tokio::runtime::Runtime,
    /// `verify.bucket` in ns.
    bucket: i64,
    source: Arc<dyn BoundedSource>,
    mappings: Arc<Mappings>,
    sink: Arc<S>,
}

/// One comparison of source and target.
struct Comparison {
    report: Report,
    /// Every (series, bucket) either side has.
    keys: Vec<Key>,
    /// Points of the target per key, when asked for (a repair reports what it removed).
    target_counts: HashMap<Key, u64>,
    /// Source rows that cannot become points at all.
    unmapped: u64,
    dead_letters: DeadLetters,
}

impl Comparison {
    /// Prints the report (and the rows that cannot be written).
    fn print(&self, job: &Job) {
        print!("{}", self.report.render(job.file.verify.examples));
        if self.unmapped > 0 {
            println!(
                "verify: {} source rows cannot be written at all (see {})",
                self.unmapped,
                self.dead_letters.path().display()
            );
        }
    }

    /// The exit: clean, or an error counting each kind of difference.
    fn outcome(&self, when: &str) -> Result<(), RunError> {
        let report = &self.report;
        if report.is_clean() {
            return Ok(());
        }
        Err(RunError::Failed(format!(
            "{when}the target differs from the source: {} missing, {} extra, {} differing buckets",
            report.missing.len(),
            report.extra.len(),
            report.differing.len()
        )))
    }
}

impl<S: Sink> Verifier<'_, S> {
    /// Rows the source cannot convert are noted apart from the backfill's dead letters, so
    /// verifying never adds to them.
    fn source_dead_letters(&self) -> Result<DeadLetters, RunError> {
        Ok(DeadLetters::new(
            &self.job.file.name,
            &self
                .job
                .state_dir()
                .map_err(|e| RunError::Usage(e.to_string()))?
                .join("verify-dead-letter.jsonl"),
        ))
    }

    /// Summarises the source (as the job would write it) and the target, and diffs the two
    /// with differential dataflow. With `count_target`, keeps the target's point count per
    /// key.
    fn compare(&self, count_target: bool) -> Result<Comparison, RunError> {
        let bucket = self.bucket;
        let dead_letters = self.source_dead_letters()?;
        let unmapped = Arc::new(AtomicU64::new(0));
        let source_summaries = self.rt.block_on(self.each_split(
            &dead_letters,
            &unmapped,
            move |mut split, mappings, sink, unmapped| async move {
                let mut summaries = Summaries::new(bucket);
                while let Some(rows) = split.next().await {
                    for row in rows {
                        mappings.apply(
                            row,
                            &mut |p| {
                                let target = sink.read_back().expect("checked before");
                                let fields = p
                                    .fields
                                    .iter()
                                    .map(|(k, v)| (target.field_name(k), target.canonical(k, v)));
                                summaries.add(&point_series(&p), p.time, fields);
                            },
                            &mut |_| {
                                unmapped.fetch_add(1, Ordering::Relaxed);
                            },
                        );
                    }
                }
                split.finish().await?;
                Ok(summaries)
            },
        ))?;
        let mut source_summaries = source_summaries.into_iter();
        let mut all = source_summaries
            .next()
            .unwrap_or_else(|| Summaries::new(bucket));
        for more in source_summaries {
            all.merge(more);
        }
        let target_summaries = self
            .rt
            .block_on(async {
                match self.sink.read_back() {
                    Ok(target) => target.target_summaries(bucket).await,
                    Err(refusal) => Err(refusal),
                }
            })
            .map_err(RunError::Failed)?;

        // Every row noted as unconvertible is in its file, or verify fails.
        dead_letters.sync().map_err(RunError::Failed)?;
        let source_summaries = all.into_vec();
        let target_summaries = target_summaries.into_vec();
        let target_counts = match count_target {
            true => target_summaries
                .iter()
                .map(|(k, s)| (k.clone(), s.count))
                .collect(),
            false => HashMap::new(),
        };
        let mut keys: Vec<Key> = source_summaries
            .iter()
            .chain(&target_summaries)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys.dedup();
        let leftovers =
            crate::engine::verify::diff(source_summaries, target_summaries, self.workers)
                .map_err(RunError::Failed)?;
        let report = Report::classify(&keys, leftovers);
        Ok(Comparison {
            report,
            keys,
            target_counts,
            unmapped: unmapped.load(Ordering::Relaxed) + dead_letters.count(),
            dead_letters,
        })
    }

    /// Reads every split of the source, two at a time, each with `read` (given the split's
    /// rows, the mappings, the sink and the count of rows that map to no point); returns
    /// what each read returned.
    async fn each_split<T, F, Fut>(
        &self,
        dead_letters: &DeadLetters,
        unmapped: &Arc<AtomicU64>,
        read: F,
    ) -> Result<Vec<T>, RunError>
    where
        T: Send + 'static,
        F: Fn(SplitRows, Arc<Mappings>, Arc<S>, Arc<AtomicU64>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    {
        let splits = self
            .source
            .plan()
            .await
            .map_err(|e| source_error(self.job, e))?;
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(2));
        for split in splits {
            let (source, mappings, sink, dead_letters, unmapped, permits, read) = (
                self.source.clone(),
                self.mappings.clone(),
                self.sink.clone(),
                dead_letters.clone(),
                unmapped.clone(),
                permits.clone(),
                read.clone(),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                let rows = SplitRows::start(source, split, dead_letters);
                read(rows, mappings, sink, unmapped).await
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            out.push(
                done.map_err(|e| RunError::Failed(e.to_string()))?
                    .map_err(RunError::Failed)?,
            );
        }
        Ok(out)
    }

    /// Re-copies the windows of `keys`: deletes each in the target, then writes the
    /// source's points of them through the sink, as the backfill does. `target_counts`
    /// (the target's points per key, from the verify before) says what each delete removed.
    fn repair(
        &self,
        keys: &HashSet<Key>,
        target_counts: &HashMap<Key, u64>,
    ) -> Result<Repaired, RunError> {
        let bucket = self.bucket;
        let mut windows: Vec<(Key, SeriesWindow)> = keys
            .iter()
            .map(|key| {
                let series = Series::parse(&key.0).map_err(RunError::Failed)?;
                Ok((
                    key.clone(),
                    SeriesWindow {
                        measurement: series.measurement,
                        tags: series.tags,
                        start: key.1,
                        end: key.1.saturating_add(bucket),
                    },
                ))
            })
            .collect::<Result<_, RunError>>()?;
        windows.sort();
        let counters = Counters::new();
        // Every delete is done before the source is read again, so no window's write can
        // be overtaken by its delete.
        let all: Vec<SeriesWindow> = windows.iter().map(|(_, w)| w.clone()).collect();
        self.rt
            .block_on(delete_windows(&*self.sink, &all, &counters))
            .map_err(|e| RunError::Failed(format!("deleting the windows to repair: {e}")))?;

        // Points the target refuses now go where the backfill's go.
        let sink_dead_letters = DeadLetters::new(
            &self.job.file.name,
            &self
                .job
                .dead_letter_path()
                .map_err(|e| RunError::Usage(e.to_string()))?,
        );
        let source_dead_letters = self.source_dead_letters()?;
        let written_letters = [sink_dead_letters.clone(), source_dead_letters.clone()];
        let keys = Arc::new(keys.clone());
        let batching = self.sink.batching().clone();
        let per_split = self.rt.block_on(self.each_split(
            &source_dead_letters,
            &Arc::new(AtomicU64::new(0)),
            move |mut split, mappings, sink, _unmapped| {
                let (keys, counters, dead_letters, batching) = (
                    keys.clone(),
                    counters.clone(),
                    sink_dead_letters.clone(),
                    batching.clone(),
                );
                async move {
                    let mut sent: HashMap<Key, u64> = HashMap::new();
                    let mut written = 0u64;
                    let mut refused = 0u64;
                    let mut batch = sink.new_batch();
                    let mut points: Vec<Point> = Vec::new();
                    while let Some(rows) = split.next().await {
                        for row in rows {
                            // Rows that map to no point were reported by the verify before.
                            mappings.apply(row, &mut |p| points.push(p), &mut |_| {});
                        }
                        for p in points.drain(..) {
                            let key = (point_series(&p), p.time.div_euclid(bucket) * bucket);
                            if !keys.contains(&key) {
                                continue;
                            }
                            if let Err(reason) = batch.push(&p) {
                                dead_letters.record("sink", &reason, p.to_json());
                                refused += 1;
                                continue;
                            }
                            *sent.entry(key).or_default() += 1;
                            if batch.len() >= batching.batch_size
                                || batch.bytes() >= batching.batch_bytes
                            {
                                let full = std::mem::replace(&mut batch, sink.new_batch());
                                let (delivery, _) = deliver(&*sink, full, &dead_letters, &counters)
                                    .await
                                    .map_err(|f| f.message)?;
                                written += delivery.written;
                                refused += delivery.dead_lettered;
                            }
                        }
                    }
                    split.finish().await?;
                    if !batch.is_empty() {
                        let (delivery, _) = deliver(&*sink, batch, &dead_letters, &counters)
                            .await
                            .map_err(|f| f.message)?;
                        written += delivery.written;
                        refused += delivery.dead_lettered;
                    }
                    Ok((sent, written, refused))
                }
            },
        ))?;

        for letters in &written_letters {
            letters.sync().map_err(RunError::Failed)?;
        }
        let mut repaired = Repaired {
            dead_letter_path: self
                .job
                .dead_letter_path()
                .map_err(|e| RunError::Usage(e.to_string()))?,
            ..Repaired::default()
        };
        let mut sent: HashMap<Key, u64> = HashMap::new();
        for (split_sent, written, refused) in per_split {
            for (key, n) in split_sent {
                *sent.entry(key).or_default() += n;
            }
            repaired.written += written;
            repaired.dead_lettered += refused;
        }
        for (key, _) in windows {
            let removed = target_counts.get(&key).copied().unwrap_or(0);
            let written = sent.get(&key).copied().unwrap_or(0);
            repaired.removed += removed;
            repaired.windows.insert(key, (removed, written));
        }
        Ok(repaired)
    }
}

/// A point's series key, as verify names it.
fn point_series(p: &Point) -> String {
    series_key(
        &p.measurement,
        p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// One split being read: its rows arrive through [`SplitRows::next`]; [`SplitRows::finish`]
/// says whether the read ended well.
struct SplitRows {
    rows: tokio::sync::mpsc::Receiver<crate::source::RowBatch>,
    reader: tokio::task::JoinHandle<Result<u64, crate::source::SourceError>>,
    dead_letters: DeadLetters,
    /// Why a batch could not be decoded, if one could not.
    failed: Option<crate::source::SourceError>,
}

impl SplitRows {
    /// Starts reading `split`, a few batches of rows ahead at most.
    fn start(source: Arc<dyn BoundedSource>, split: Split, dead_letters: DeadLetters) -> Self {
        let (tx, rows) = tokio::sync::mpsc::channel(4);
        let sender = RowSender::new(tx, Arc::new(|| {}));
        let reader = {
            let dead_letters = dead_letters.clone();
            tokio::spawn(async move { source.read(&split, &sender, &dead_letters).await })
        };
        Self {
            rows,
            reader,
            dead_letters,
            failed: None,
        }
    }

    /// The next batch of rows, decoded; `None` at the end (or where a batch could not be
    /// decoded: [`SplitRows::finish`] then says why).
    async fn next(&mut self) -> Option<Vec<crate::model::Row>> {
        if self.failed.is_some() {
            return None;
        }
        match self.rows.recv().await?.into_rows(&self.dead_letters) {
            Ok(rows) => Some(rows),
            Err(e) => {
                self.failed = Some(e);
                None
            }
        }
    }

    /// Waits for the read to end (every row taken).
    async fn finish(self) -> Result<(), String> {
        drop(self.rows);
        if let Some(e) = self.failed {
            self.reader.abort();
            return Err(e.to_string());
        }
        self.reader
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// What a repair did.
#[derive(Debug, Default)]
struct Repaired {
    /// Per window: points the target had (the verify before counted them), points sent.
    windows: BTreeMap<Key, (u64, u64)>,
    /// Points removed, in all.
    removed: u64,
    /// Points the target acknowledged, in all.
    written: u64,
    /// Points the target refused for good (dead-lettered).
    dead_lettered: u64,
    dead_letter_path: std::path::PathBuf,
}

impl Repaired {
    /// The total line.
    fn total(&self) -> String {
        format!(
            "repair: {} series × buckets repaired: {} points removed, {} written",
            self.windows.len(),
            self.removed,
            self.written
        )
    }

    /// The total line, then one line per window.
    fn render(&self) -> String {
        let mut out = self.total();
        out.push('\n');
        for ((series, start), (removed, written)) in &self.windows {
            out.push_str(&format!(
                "  repaired: {series} from {}: {removed} points removed, {written} written\n",
                format_time(*start)
            ));
        }
        out
    }
}
