//! Sources: where rows come from.
//!
//! A bounded source divides its input into [`Split`]s and streams the rows of one split at
//! a time into a [`RowSender`]. It never sees the dataflow: the engine decides which
//! worker reads which split, stamps rows with epochs and records finished splits once they
//! are durable in the target. Each connector lives in its own folder, split the same way:
//! `config.rs` (the job-file section), `client.rs` (talking to the server), `encoding.rs`
//! (server values → [`Value`](crate::model::Value)).

pub mod push;

use crate::dead_letter::DeadLetters;
use crate::job::{Job, JobError};
use crate::model::{Row, Value};
use crate::retry::RetryPolicy;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Parses `job.file.source` as a connector's own keys `T` beside the retry keys
/// ([`RetryPolicy::KEYS`]), which every source that talks to a server shares, each with
/// located errors.
pub fn parse_section<T: serde::de::DeserializeOwned>(
    job: &Job,
) -> Result<(T, RetryPolicy), JobError> {
    let (own, retry) = job.file.source.split(RetryPolicy::KEYS);
    let own = own.parse(job)?;
    Ok((own, retry.parse(job)?))
}

/// A source's section of the job file, parsed and checked by its connector: what the
/// runner knows of a source before connecting to it, and how it connects.
#[async_trait::async_trait]
pub trait SourceSpec: Send + Sync + 'static {
    /// The connector's `type:`.
    fn kind(&self) -> &'static str;
    /// Checks that need no server (the section's own rules).
    fn check(&self, job: &Job) -> Result<(), JobError>;
    /// The source tables the job file names, in its order (a row's `table` indexes the
    /// source's schema, which follows this list). Empty where the source discovers them
    /// on the server (InfluxDB without `measurements:`).
    fn table_names(&self) -> Vec<String>;
    /// Whether the source offers its own schema as the mapping (`mappings: auto`), through
    /// [`BoundedSource::default_mappings`].
    fn offers_mappings(&self) -> bool {
        false
    }
    /// Whether its rows arrive as whole points and take no mappings (the ingest endpoint).
    fn arrives_as_points(&self) -> bool {
        false
    }
    /// Connects and reads the tables' schemas: the source a backfill reads.
    async fn open(&self, job: &Job) -> Result<Box<dyn BoundedSource>, SourceError>;
    /// Connects for CDC: the bounded side (schema, snapshot reads) and the change log,
    /// sharing their connections. The default: this source has no change log.
    async fn open_changes(&self, job: &Job) -> Result<Box<dyn BoundedChangeSource>, SourceError> {
        Err(job
            .error_at(
                "source.type",
                format!(
                    "a `{}` source has no change log to follow: CDC needs `type: mysql`",
                    self.kind()
                ),
            )
            .into())
    }
    /// The section itself, for the runner of a source unlike the others (the ingest
    /// endpoint's own settings).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What kind of values a column holds, as far as mapping is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnKind {
    /// Signed integers.
    Int,
    /// Unsigned integers.
    UInt,
    /// Floating point and decimal numbers.
    Float,
    /// Booleans.
    Bool,
    /// Text.
    Text,
    /// Instants (DATETIME, TIMESTAMP, DATE).
    Time,
    /// A type tsmig cannot map; the text is the server's type name.
    Unsupported(String),
}

/// A source column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
    /// The server's own type, e.g. `decimal(8,2)`; shown by `plan`.
    pub source_type: String,
}

/// The columns of one source table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Table name as the job file names it.
    pub name: String,
    /// Every column of the table, in the table's order.
    pub columns: Vec<Column>,
}

impl TableSchema {
    /// A table of these named columns, without the server's own type names (an in-memory
    /// table, a test's).
    pub fn of(name: &str, columns: impl IntoIterator<Item = (&'static str, ColumnKind)>) -> Self {
        Self {
            name: name.into(),
            columns: columns
                .into_iter()
                .map(|(name, kind)| Column {
                    name: name.into(),
                    kind,
                    source_type: String::new(),
                })
                .collect(),
        }
    }
}

/// A bounded piece of a source's input, read by one worker.
///
/// `start..end` is half-open over the source's split dimension (the split key for MySQL);
/// `None` is unbounded on that side. `partition` names a sub-division where the source has
/// one (a TDengine sub-table; unused by MySQL). `id` is unique within the job's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Unique within the plan; the checkpoint records finished ids.
    pub id: u64,
    /// Index of the table in the job file's order.
    pub table: u32,
    /// A sub-division of the table, if the source has one.
    // No `skip_serializing_if` here or below: splits cross processes in bincode, which
    // is not self-describing and cannot skip a field.
    #[serde(default)]
    pub partition: String,
    /// Inclusive lower bound; `None` for none.
    pub start: Option<i64>,
    /// Exclusive upper bound; `None` for none.
    pub end: Option<i64>,
    /// Read only the rows whose split key is NULL (they fall in no range).
    #[serde(default)]
    pub nulls: bool,
    /// The planner's estimate of the rows in the split (for progress and ETA).
    pub estimated_rows: u64,
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The job file asks for something the source cannot do (unknown table, bad split key).
    #[error("{0}")]
    Config(#[from] JobError),
    /// The server failed or could not be reached, after the source's own retries: a
    /// transient failure (the job may restart from its checkpoint).
    #[error("{0}")]
    Server(String),
    /// The source cannot go on, whatever is tried again: a purged position, a schema change,
    /// a refused login, an event it cannot read. A fatal failure.
    #[error("{0}")]
    Fatal(String),
    /// The engine stopped taking rows (shutdown).
    #[error("the job is stopping")]
    Stopped,
}

impl From<SourceError> for crate::error::Failure {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Server(message) => crate::error::Failure::transient(message),
            other => crate::error::Failure::fatal(other.to_string()),
        }
    }
}

/// Where a read task sends its batches (rows of a split, or change events). Bounded:
/// `send` waits while the engine is behind, so a fast server cannot fill memory.
pub struct BatchSender<T> {
    tx: tokio::sync::mpsc::Sender<T>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl<T> Clone for BatchSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl<T> BatchSender<T> {
    /// A sender into `tx` that calls `wake` after each batch so the reading operator runs.
    pub fn new(tx: tokio::sync::mpsc::Sender<T>, wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self { tx, wake }
    }

    /// Sends one batch.
    pub async fn send_batch(&self, batch: T) -> Result<(), SourceError> {
        self.tx
            .send(batch)
            .await
            .map_err(|_| SourceError::Stopped)?;
        (self.wake)();
        Ok(())
    }
}

/// Where a split's rows go.
pub type RowSender = BatchSender<RowBatch>;

impl RowSender {
    /// Sends one batch of rows (nothing for an empty one).
    pub async fn send(&self, rows: Vec<Row>) -> Result<(), SourceError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.send_batch(RowBatch::Rows(rows)).await
    }

    /// Sends one batch of rows still in the source's own encoding.
    pub async fn send_encoded(&self, rows: Box<dyn EncodedRows>) -> Result<(), SourceError> {
        self.send_batch(RowBatch::Encoded(rows)).await
    }
}

/// One batch of a split's rows, as its read task hands it to the engine.
pub enum RowBatch {
    /// Rows already decoded.
    Rows(Vec<Row>),
    /// Rows still as the server sent them, decoded by the worker that maps them: the
    /// engine sorts a batch's rows by the worker that owns their device
    /// ([`EncodedRows::split`]), and that worker decodes each row into a buffer it reuses
    /// and maps it there ([`EncodedRows::for_each_row`]). Only the rows' packed bytes cross
    /// from the I/O thread to the workers; no decoded row is made on one core and read,
    /// then freed, on another.
    Encoded(Box<dyn EncodedRows>),
}

impl RowBatch {
    /// The batch's rows, decoded if they are not yet; a row holding a value that cannot be
    /// converted is dead-lettered (and left out), as a source that decodes does.
    pub fn into_rows(self, dead_letters: &DeadLetters) -> Result<Vec<Row>, SourceError> {
        match self {
            RowBatch::Rows(rows) => Ok(rows),
            RowBatch::Encoded(encoded) => encoded.decode(dead_letters),
        }
    }

    /// How many rows the batch holds (rows that will turn out not to convert included).
    pub fn len(&self) -> usize {
        match self {
            RowBatch::Rows(rows) => rows.len(),
            RowBatch::Encoded(encoded) => encoded.len(),
        }
    }

    /// Whether the batch holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clone for RowBatch {
    fn clone(&self) -> Self {
        match self {
            RowBatch::Rows(rows) => RowBatch::Rows(rows.clone()),
            RowBatch::Encoded(encoded) => RowBatch::Encoded(encoded.clone_box()),
        }
    }
}

/// A batch crosses to another process only decoded: the engine decodes a batch bound for
/// a worker of another process before it sends it (`engine::read`), so an encoded one
/// reaching the serializer is a bug in the engine, refused rather than sent half-made.
impl Serialize for RowBatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RowBatch::Rows(rows) => rows.serialize(serializer),
            RowBatch::Encoded(_) => Err(serde::ser::Error::custom(
                "an encoded row batch cannot cross to another process; decode it first",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for RowBatch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Row>::deserialize(deserializer).map(RowBatch::Rows)
    }
}

/// A row's column as [`EncodedRows::split`] reads it to sort the row.
#[derive(Debug, Clone, Copy)]
pub enum SplitKey<'a> {
    /// Text, as its bytes: the value the row will have once decoded, unread (bytes that
    /// are not UTF-8 are refused where the row is decoded).
    Text(&'a [u8]),
    /// Any other value, converted.
    Value(&'a Value),
    /// NULL, or a value that cannot be read or converted (the part that decodes the row
    /// then refuses it as [`EncodedRows::for_each_row`] says).
    None,
}

/// Rows in a source's wire encoding, with what decoding them needs (see [`RowBatch`]).
pub trait EncodedRows: Send {
    /// Decodes the rows one at a time into `values` (cleared first, its capacity reused)
    /// and hands each to `each` with its table's index, in order. `each` may take values
    /// out of the vector. A row with a value that cannot be converted is dead-lettered
    /// (naming the column) and left out; bytes that are no row at all fail the batch
    /// (a fatal error: reading them again would not help), after the rows before them
    /// were handed over.
    fn for_each_row(
        self: Box<Self>,
        dead_letters: &DeadLetters,
        values: &mut Vec<Option<Value>>,
        each: &mut dyn FnMut(u32, &mut Vec<Option<Value>>),
    ) -> Result<(), SourceError>;

    /// The rows, decoded, as [`EncodedRows::for_each_row`] hands them over.
    fn decode(self: Box<Self>, dead_letters: &DeadLetters) -> Result<Vec<Row>, SourceError> {
        let mut rows = Vec::with_capacity(self.len());
        let mut values = Vec::new();
        self.for_each_row(dead_letters, &mut values, &mut |table, values| {
            rows.push(Row {
                table,
                values: std::mem::take(values),
            })
        })?;
        Ok(rows)
    }

    /// How many rows the batch holds.
    fn len(&self) -> usize;

    /// Whether the batch holds no row.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index (in the job file) of the table the rows come from.
    fn table(&self) -> u32;

    /// Sorts the rows into `parts` batches, in order: a row goes to the part `part`
    /// returns for its column `column` (in the source's projection order), read as a
    /// [`SplitKey`]. Parts that get no row are `None`.
    fn split(
        self: Box<Self>,
        column: usize,
        parts: usize,
        part: &mut dyn FnMut(SplitKey<'_>) -> usize,
    ) -> Vec<Option<Box<dyn EncodedRows>>>;

    /// A copy of the batch.
    fn clone_box(&self) -> Box<dyn EncodedRows>;
}

/// Dead-letters a source row holding a value that could not be converted: the row as
/// column → value (null where the value is NULL or was refused), and `reason`, which
/// names the column and the value.
pub fn dead_letter_row(
    dead_letters: &DeadLetters,
    schema: &TableSchema,
    projection: &[usize],
    values: &[Option<Value>],
    reason: &str,
) {
    let row: serde_json::Map<String, serde_json::Value> = projection
        .iter()
        .zip(values)
        .map(|(&c, v)| {
            (
                schema.columns[c].name.clone(),
                v.as_ref().map(|v| v.to_json()).unwrap_or_default(),
            )
        })
        .collect();
    dead_letters.record(
        "source",
        &format!("table {}: {reason}", schema.name),
        row.into(),
    );
}

/// A position in a change log (MySQL's binlog): where a restart resumes. Always a
/// transaction boundary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogPosition {
    /// Binlog file name, e.g. `mariadb-bin.000003`.
    pub file: String,
    /// Byte offset in that file of the first event not yet applied.
    pub offset: u64,
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}

/// One row change: before and after images, in the projection of the row's table.
/// INSERT has only `after`, DELETE only `before`, UPDATE both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// The row before the change.
    pub before: Option<Row>,
    /// The row after the change.
    pub after: Option<Row>,
}

/// What a change-log reader sends the engine, in log order.
#[derive(Debug)]
pub enum ChangeEvent {
    /// Row changes of the transaction under way.
    Rows(Vec<RowChange>),
    /// A transaction ended: every change before `position` has been sent. `timestamp` is
    /// the commit's time on the server (Unix seconds).
    Commit {
        /// Where the next transaction starts.
        position: LogPosition,
        /// When the transaction was written, by the server's clock.
        timestamp: u32,
    },
    /// The server has nothing more right now (a heartbeat): `position` is its end and
    /// everything before it has been sent.
    Idle {
        /// The server's end of log.
        position: LogPosition,
    },
}

/// Where a server's change log stands, by the server's own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStatus {
    /// The end of the log.
    pub end: LogPosition,
    /// Bytes of log from the position asked about to the end (across files).
    pub bytes_behind: u64,
    /// The server's clock, Unix milliseconds.
    pub server_time_ms: u64,
}

/// Where a change-log reader sends its events.
pub type ChangeSender = BatchSender<ChangeEvent>;

/// A source that follows a change log: CDC.
#[async_trait::async_trait]
pub trait ChangeSource: Send + Sync + 'static {
    /// Checks the server can give what CDC needs (log format, privileges) and says what is
    /// missing and how to set it.
    async fn check_change_log(&self) -> Result<(), SourceError>;
    /// The server's current end of log: where a `cdc` job with no recorded position starts.
    async fn log_end(&self) -> Result<LogPosition, SourceError>;
    /// Starts a consistent snapshot and returns the log position it corresponds to: a
    /// backfill started after this call sees every change before it.
    async fn snapshot_position(&self) -> Result<LogPosition, SourceError>;
    /// Where the server's log stands against `from`, for the lag metrics.
    async fn status(&self, from: &LogPosition) -> Result<LogStatus, SourceError>;
    /// Reads the log from `from` and sends every change of the job's tables, in order, with
    /// transaction boundaries and heartbeats, until `out` closes or the log cannot be read.
    /// Rows that cannot be converted go to `dead_letters`.
    async fn follow(
        &self,
        from: LogPosition,
        out: &ChangeSender,
        dead_letters: &DeadLetters,
    ) -> Result<(), SourceError>;
}

/// A source that reads a fixed input in splits: the backfill.
#[async_trait::async_trait]
pub trait BoundedSource: Send + Sync + 'static {
    /// Every column of each source table, in the job file's table order.
    fn schema(&self) -> &[TableSchema];

    /// Restricts what rows of `table` carry to `columns` (indices into its schema), in
    /// that order. Called once, before planning and reading.
    fn set_projection(&mut self, table: usize, columns: Vec<usize>);

    /// The columns that identify a row of `table` (indices into its schema; MySQL: the
    /// split key, else the primary key). The projection always carries them, mapped or
    /// not, so a dead letter names the row it was. Empty where points carry their own
    /// identity (a series and a time).
    fn row_key(&self, table: usize) -> Vec<usize> {
        let _ = table;
        Vec::new()
    }

    /// The mappings that copy the source as it is, for a job without `mappings:` (or
    /// `mappings: auto`); `None` where the source has no such obvious mapping (SQL tables).
    fn default_mappings(&self) -> Option<Vec<crate::job::MappingConfig>> {
        None
    }

    /// Divides the input into splits. Called once per job; the plan is stored with the
    /// checkpoint so a restart reads the same splits.
    async fn plan(&self) -> Result<Vec<Split>, SourceError>;

    /// Whether the source can be polled by time ([`plan_window`](Self::plan_window)), as
    /// `backfill+follow` does: its rows carry a time they can be selected by, and it has no
    /// change log to follow instead.
    fn follows_by_time(&self) -> bool {
        false
    }

    /// `backfill+follow`: splits reading every row of every table whose time is in
    /// `[from_ns, to_ns)` (Unix nanoseconds), each bounded on both sides, ids from 0. Called
    /// once per polling round; the round's plan is stored like a backfill's. Only called
    /// where [`follows_by_time`](Self::follows_by_time) is true.
    async fn plan_window(&self, from_ns: i64, to_ns: i64) -> Result<Vec<Split>, SourceError> {
        let _ = (from_ns, to_ns);
        Err(SourceError::Server(
            "this source cannot be polled by time".into(),
        ))
    }

    /// Streams every row of `split` into `out`. Rows that cannot be converted go to
    /// `dead_letters`. Returns the number of rows sent.
    async fn read(
        &self,
        split: &Split,
        out: &RowSender,
        dead_letters: &DeadLetters,
    ) -> Result<u64, SourceError>;
}

/// A source with both a backfill and a change log (MySQL). An `Arc` of one upcasts to
/// either side.
pub trait BoundedChangeSource: BoundedSource + ChangeSource {}

impl<T: BoundedSource + ChangeSource> BoundedChangeSource for T {}
