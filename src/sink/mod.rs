//! Sinks: where points go.
//!
//! A sink is two halves. Its [`Batch`] turns points into one request body on the worker
//! thread (encode once, straight into the buffer that will be sent). Its [`Sink::write`]
//! sends one batch on the tokio runtime and classifies what happened as a [`WriteError`].
//! Everything else — batch sizes and linger, requests in flight, retry with backoff and
//! jitter, splitting a batch that is too large, finding the lines a target rejects and
//! dead-lettering exactly those — is shared, in [`deliver`], so every sink behaves alike.
//! A connector implements [`Sink`] with its own batch type; [`AnySink`] erases that type
//! once, so the runner and the engine drive every sink alike (one indirect call per point
//! pushed, measured in BENCHMARKS.md). Each connector has its own folder under
//! `src/connectors/`; a wire format that several sinks write is shared here too
//! ([`line_protocol`]), so no connector needs another's feature for it.

pub mod deliver;
pub mod line_protocol;

mod erased;

use crate::job::{Job, JobError};
use crate::mapping::Mappings;
use crate::model::Point;
use std::time::Duration;

pub use deliver::BatchConfig;
pub use erased::{AnySink, ErasedBatch};

/// A sink's section of the job file, parsed and checked by its connector: what the runner
/// knows of a target before connecting to it, and how it builds the sink.
pub trait SinkSpec: Send + Sync + 'static {
    /// The connector's `type:`.
    fn kind(&self) -> &'static str;
    /// Checks that need no server (the section's own rules, and the mapping keys this
    /// target reads: IoTDB's `path` and `types`; a target that reads none refuses them).
    fn check(&self, job: &Job) -> Result<(), JobError>;
    /// How this target names the levels of a mapping's `path:` template, if it reads them
    /// (IoTDB); the mappings are compiled with it.
    fn paths(&self) -> Option<std::sync::Arc<dyn crate::mapping::PathNames>> {
        None
    }
    /// The sink, for the job's compiled mappings. `Err` is a usage error (exit 2).
    fn build(&self, context: &SinkContext<'_>) -> Result<AnySink, String>;
}

/// What a sink is built from: the job, and its mappings compiled against the source (the
/// measurements, tag keys and field types it will be given).
pub struct SinkContext<'a> {
    /// The job.
    pub job: &'a Job,
    /// The compiled mappings.
    pub mappings: &'a Mappings,
}

/// Parses `job.file.sink` as a connector's own keys `T` beside the batching and retry keys
/// every sink shares ([`BatchConfig::KEYS`], [`RetryPolicy::KEYS`]), each with located
/// errors.
///
/// [`RetryPolicy::KEYS`]: crate::retry::RetryPolicy::KEYS
pub fn parse_section<T: serde::de::DeserializeOwned>(
    job: &Job,
) -> Result<(T, BatchConfig), JobError> {
    let mut shared_keys = BatchConfig::KEYS.to_vec();
    shared_keys.extend(crate::retry::RetryPolicy::KEYS);
    let (own, shared) = job.file.sink.split(&shared_keys);
    let batching = BatchConfig::parse(&shared, job)?;
    Ok((own.parse(job)?, batching))
}

/// Refuses the IoTDB-only mapping keys for a target that reads neither.
pub fn refuse_path_keys(job: &Job, kind: &str) -> Result<(), JobError> {
    for (i, m) in job.file.mappings.iter().enumerate() {
        if m.path.is_some() {
            return Err(job.error_at(
                &format!("mappings[{i}].path"),
                format!("a `{kind}` sink takes no `path:` (an IoTDB device path); name a `measurement:`"),
            ));
        }
        if !m.types.is_empty() {
            return Err(job.error_at(
                &format!("mappings[{i}].types"),
                format!("a `{kind}` sink takes no `types:` (IoTDB data types)"),
            ));
        }
    }
    Ok(())
}

/// How one write attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// Worth retrying: network errors, timeouts, 429, 5xx. `retry_after` is the server's
    /// wish, if it said one.
    Transient {
        /// What happened.
        message: String,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The request was too large (413): the batch is split and both halves sent.
    TooLarge {
        /// What the server said.
        message: String,
    },
    /// The target refused the data for good (400 and the like). Some lines of the batch
    /// are bad; which ones is found by splitting the batch, and those are dead-lettered.
    Rejected {
        /// What the server said.
        message: String,
    },
    /// The target wrote the batch except the points it named (Timestream's
    /// RejectedRecords): exactly those are dead-lettered with their reasons, and the rest
    /// count as written.
    Partial {
        /// Index of each refused point in the batch (as [`Batch::records`] lists them) and
        /// the target's reason.
        rejected: Vec<(usize, String)>,
    },
    /// Nothing can be written (authentication, missing database): the job fails.
    Fatal {
        /// What the server said.
        message: String,
    },
}

/// Only [`WriteError::Transient`] is tried again; the others are definite outcomes that
/// [`deliver`] handles (a batch split, points dead-lettered) or fatal.
impl crate::retry::Retryable for WriteError {
    fn is_transient(&self) -> bool {
        matches!(self, WriteError::Transient { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            WriteError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Transient { message, .. }
            | WriteError::TooLarge { message }
            | WriteError::Rejected { message }
            | WriteError::Fatal { message } => f.write_str(message),
            WriteError::Partial { rejected } => {
                write!(f, "{} points refused", rejected.len())?;
                if let Some((_, reason)) = rejected.first() {
                    write!(f, ", e.g. {reason}")?;
                }
                Ok(())
            }
        }
    }
}

/// Points encoded into one request body.
pub trait Batch: Send + Sync + Sized + 'static {
    /// Adds a point. `Err` is a definite rejection of this point alone (the target could
    /// never accept it); the point is dead-lettered with that reason.
    fn push(&mut self, point: &Point) -> Result<(), String>;
    /// Points in the batch.
    fn len(&self) -> usize;
    /// Whether the batch holds no point.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Size of the encoded body.
    fn bytes(&self) -> usize;
    /// Divides the batch into two non-empty halves; `None` for a single point. The left
    /// half's records come first: `left.records()` then `right.records()` are `records()`.
    fn split(self) -> Option<(Self, Self)>;
    /// The batch's points as readable records, for the dead-letter file.
    fn records(&self) -> Vec<serde_json::Value>;
    /// For each of [`records`](Batch::records), in that order, which push added it (0 for
    /// the first point pushed): how a point the target refused is traced back to the
    /// request it came in. The default is for a batch that keeps its points in push
    /// order; a batch that groups them (per device, per table) says where each went.
    fn pushed_order(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }
    /// Empties the batch so it can be filled again, keeping its buffers: a sink that
    /// recycles its batches allocates (and the kernel zeroes) no fresh memory per request.
    fn clear(&mut self);
}

/// One series' points in `[start, end)` (ns): a window `verify --repair` re-copies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesWindow {
    /// InfluxDB measurement; IoTDB device path.
    pub measurement: String,
    /// The series' tags, sorted by key, none empty.
    pub tags: Vec<(String, String)>,
    /// First time in the window, ns.
    pub start: i64,
    /// Just past the last time in the window, ns.
    pub end: i64,
}

/// A target that can be read back for the verify job.
#[async_trait::async_trait]
pub trait ReadBack: Send + Sync {
    /// A source value as this target stores it.
    fn canonical(&self, field: &str, value: &crate::model::Value) -> crate::verify::Canonical;
    /// A field's name as this target shows it.
    fn field_name<'a>(&self, field: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(field)
    }
    /// The target's points of the job's series, summarised per series and bucket.
    async fn target_summaries(&self, bucket_ns: i64) -> Result<crate::verify::Summaries, String>;
}

/// A target that takes batches of points.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    /// What one request carries.
    type Batch: Batch;
    /// An empty batch.
    fn new_batch(&self) -> Self::Batch;
    /// Sizes, linger, concurrency and retry policy.
    fn batching(&self) -> &BatchConfig;
    /// Sends one batch; called on the tokio runtime, possibly several times at once. CPU
    /// work of more than microseconds (compressing the body) and blocking calls go to
    /// `tokio::task::spawn_blocking`, never inline: they would hold up the runtime's other
    /// tasks.
    async fn write(&self, batch: &Self::Batch) -> Result<(), WriteError>;
    /// Deletes each of `points` from the target: the point at its series and time, every
    /// field it has (CDC deletes and moved keys). Called on the tokio runtime.
    async fn delete(&self, points: &[Point]) -> Result<(), WriteError> {
        let _ = points;
        Err(WriteError::Fatal {
            message: format!("{} cannot delete points; a CDC job with deletes needs a target that can (on_delete: ignore skips them)", self.describe()),
        })
    }
    /// Of `points` the sink deleted, those the target still holds: a point of the same
    /// series (measurement and tags) at the same time, with any of its fields. For
    /// checking deletes a target may leave undone (InfluxDB 1.x drops some that race with
    /// writes, see BENCHMARKS.md). The default finds none: a target that cannot be read
    /// back cannot be checked. Called on the tokio runtime.
    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError> {
        let _ = points;
        Ok(Vec::new())
    }
    /// Deletes every point of each window's series with a time in `[start, end)`, whatever
    /// its fields: what `verify --repair` does to a window before it writes the source's
    /// points of it again. A window of a series the target does not have deletes nothing.
    /// Called on the tokio runtime.
    async fn delete_range(&self, windows: &[SeriesWindow]) -> Result<(), WriteError> {
        let _ = windows;
        Err(WriteError::Fatal {
            message: format!(
                "{} cannot delete a time range of a series, which verify --repair needs",
                self.describe()
            ),
        })
    }
    /// Whether [`Sink::delete_range`] of a series also deletes, in the same range, the
    /// series of its measurement that have every tag of it and more. InfluxDB 2's delete
    /// predicates cannot say that a tag is absent; verify --repair then re-copies those
    /// series' windows too.
    fn range_deletes_tag_supersets(&self) -> bool {
        false
    }
    /// Prepares the target before the first write (e.g. creates the database).
    async fn prepare(&self) -> Result<(), WriteError> {
        Ok(())
    }
    /// The run is over: every write was acknowledged and none follows (the input ended,
    /// or a stop drained it). A sink that stages what it wrote makes it final here (the
    /// file sink closes and renames its open file); an error fails the run. Not called
    /// when the run fails: what such a sink acknowledged must stay recoverable by the next
    /// run without it. Called on the tokio runtime.
    async fn finish(&self) -> Result<(), WriteError> {
        Ok(())
    }
    /// What `plan` shows about the target.
    fn describe(&self) -> String;
    /// Whether the target can take `point` at all (its limits), for sources that can still
    /// tell their client (the ingest endpoint refuses such a point as a bad line). A batch
    /// checks again when the point is pushed; this default takes every point.
    fn check(&self, point: &Point) -> Result<(), String> {
        let _ = point;
        Ok(())
    }
    /// The target read back for verify, or why it cannot be.
    fn read_back(&self) -> Result<&dyn ReadBack, String> {
        Err(format!("verify cannot read {} back", self.describe()))
    }
}
