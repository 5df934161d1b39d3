//! The in-memory connector: a database with a change log, and a target, both held in this
//! process. It is what the engine's own tests run against (`type: memory` in a job file,
//! source and sink): a test registers a [`MemoryDatabase`] under a name, runs a real job
//! through the same runner as the binary, and compares the [`MemoryTarget`] with a plain
//! model of the source.
//!
//! What matters of real systems, and how this one has it:
//! - **The source** is a set of tables with an integer key column, and a change log
//!   (inserts, updates and deletes grouped in transactions) from an initial state. A
//!   position is the number of log entries applied. A backfill plans key ranges at the
//!   snapshot position and may read each chunk at a *later* position, as a chunked scan of
//!   a live MySQL table does; CDC follows the log from any position, then reports it is
//!   idle (a heartbeat) and waits for more.
//! - **The target** keeps points per (measurement, tags, time). A write adds or replaces
//!   the fields it carries and keeps the others (InfluxDB and IoTDB alike); a delete
//!   removes the whole point (`deletes: point`, InfluxDB) or only the fields it names
//!   (`deletes: fields`, IoTDB's `deleteData` over measurement paths). Writes are
//!   idempotent per series and time.
//! - **Faults** a test scripts: requests that take a while (so acknowledgements come back in
//!   any order), transient failures before or after a write is applied (a timeout after the
//!   server wrote it), and a crash after a given number of requests: the crashing request
//!   and every one after it is never applied and fails the job, as if the process had been
//!   killed at that moment.

mod config;
mod sink;
mod source;

pub use config::{DeleteMode, MemorySinkConfig, MemorySourceConfig};

/// `type: memory`, both a source and a sink.
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "memory",
    source: Some(|job| {
        let config: MemorySourceConfig = job.file.source.parse(job)?;
        Ok(Box::new(config))
    }),
    sink: Some(|job| {
        let (config, batching) = crate::sink::parse_section::<MemorySinkConfig>(job)?;
        Ok(Box::new(config::MemorySinkSpec { config, batching }))
    }),
};
pub use sink::MemorySink;
pub use source::MemorySource;

use crate::model::{Name, Text, Value};
use crate::source::TableSchema;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A row's values, one per column of its table (not projected).
pub type Values = Vec<Option<Value>>;

/// One table of a memory database.
#[derive(Debug, Clone)]
pub struct MemoryTable {
    /// Its columns.
    pub schema: TableSchema,
    /// The integer key column (the split key): unique, never NULL.
    pub key: usize,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A row changed: INSERT (after only), UPDATE (both), DELETE (before only).
    Change {
        /// Index of the table.
        table: u32,
        /// The row before.
        before: Option<Values>,
        /// The row after.
        after: Option<Values>,
    },
    /// The transaction ends here.
    Commit {
        /// Its commit time, Unix seconds.
        timestamp: u32,
    },
}

/// Where the backfill reads a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkReads {
    /// At the snapshot position (a consistent snapshot).
    AtSnapshot,
    /// At a transaction boundary drawn from `[snapshot, end of log]`, each chunk its own,
    /// as separate connections scanning a live table do.
    Later {
        /// Seed of the draws.
        seed: u64,
    },
    /// At this position (a transaction boundary at or after the snapshot).
    At(u64),
}

/// A database held in memory: tables, an initial state and a change log.
pub struct MemoryDatabase {
    tables: Vec<MemoryTable>,
    initial: Vec<Vec<Values>>,
    log: Mutex<Vec<Entry>>,
    appended: tokio::sync::Notify,
    snapshot_at: AtomicU64,
    chunk_reads: Mutex<(ChunkReads, fastrand::Rng)>,
    faults: Mutex<SourceFaults>,
    /// Rows the backfill has read (sent on to the engine), every split together.
    rows_read: AtomicU64,
    /// Rows per split of the backfill plan.
    pub chunk_rows: usize,
}

/// Scripted faults of a memory database.
#[derive(Debug, Clone, Default)]
pub struct SourceFaults {
    /// Reading this split fails with this message.
    pub fail_split: Option<(u64, String)>,
    /// This split's rows arrive as bytes that are no row: the worker that decodes its
    /// first batch fails with this message (a fatal error, as a malformed MySQL row).
    pub malformed_split: Option<(u64, String)>,
    /// Following the log fails with this message on reaching this position.
    pub fail_log_at: Option<(u64, String)>,
}

impl MemoryDatabase {
    /// A database of `tables` holding `initial` rows (per table) and an empty log.
    pub fn new(tables: Vec<MemoryTable>, initial: Vec<Vec<Values>>) -> Self {
        assert_eq!(tables.len(), initial.len(), "initial rows per table");
        Self {
            tables,
            initial,
            log: Mutex::new(Vec::new()),
            appended: tokio::sync::Notify::new(),
            snapshot_at: AtomicU64::new(0),
            chunk_reads: Mutex::new((ChunkReads::AtSnapshot, fastrand::Rng::with_seed(0))),
            faults: Mutex::default(),
            rows_read: AtomicU64::new(0),
            chunk_rows: 4,
        }
    }

    /// The tables.
    pub fn tables(&self) -> &[MemoryTable] {
        &self.tables
    }

    /// Appends entries to the log (a writer at work); a follower waiting at the end sees them.
    pub fn append(&self, entries: impl IntoIterator<Item = Entry>) {
        self.lock_log().extend(entries);
        self.appended.notify_waiters();
    }

    /// Rows the backfill has read so far (a row read twice counts twice).
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::SeqCst)
    }

    /// The end of the log: the number of entries.
    pub fn end(&self) -> u64 {
        self.lock_log().len() as u64
    }

    /// Where `snapshot_position` puts the snapshot (default 0: before the whole log).
    pub fn set_snapshot_at(&self, position: u64) {
        self.snapshot_at.store(position, Ordering::SeqCst);
    }

    /// Where the backfill reads its chunks.
    pub fn set_chunk_reads(&self, reads: ChunkReads) {
        let seed = match reads {
            ChunkReads::Later { seed } => seed,
            _ => 0,
        };
        *self.chunk_reads.lock().unwrap_or_else(|p| p.into_inner()) =
            (reads, fastrand::Rng::with_seed(seed));
    }

    /// Sets the faults of the reads to come.
    pub fn set_faults(&self, faults: SourceFaults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn faults(&self) -> SourceFaults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every table's rows at log position `position`, by key.
    pub fn state_at(&self, position: u64) -> Vec<BTreeMap<i64, Values>> {
        let mut tables: Vec<BTreeMap<i64, Values>> = self
            .initial
            .iter()
            .enumerate()
            .map(|(t, rows)| {
                rows.iter()
                    .map(|r| (self.key_of(t, r), r.clone()))
                    .collect()
            })
            .collect();
        let log = self.lock_log();
        for entry in log.iter().take(position as usize) {
            if let Entry::Change {
                table,
                before,
                after,
            } = entry
            {
                let t = *table as usize;
                if let Some(b) = before {
                    tables[t].remove(&self.key_of(t, b));
                }
                if let Some(a) = after {
                    tables[t].insert(self.key_of(t, a), a.clone());
                }
            }
        }
        tables
    }

    /// The key of a row of table `t`.
    pub fn key_of(&self, t: usize, row: &Values) -> i64 {
        match row.get(self.tables[t].key) {
            Some(Some(Value::Int(k))) => *k,
            other => panic!("the key column of a memory table holds {other:?}, not an integer"),
        }
    }

    /// The position a chunk is read at: a transaction boundary (a read sees committed
    /// transactions only).
    fn chunk_position(&self) -> u64 {
        let snapshot = self.snapshot_at.load(Ordering::SeqCst);
        let mut reads = self.chunk_reads.lock().unwrap_or_else(|p| p.into_inner());
        match reads.0 {
            ChunkReads::AtSnapshot => return snapshot,
            ChunkReads::At(position) => return position,
            ChunkReads::Later { .. } => {}
        }
        let boundaries: Vec<u64> = std::iter::once(snapshot)
            .chain(
                self.lock_log()
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| matches!(e, Entry::Commit { .. }))
                    .map(|(i, _)| i as u64 + 1)
                    .filter(|&p| p > snapshot),
            )
            .collect();
        boundaries[reads.1.usize(..boundaries.len())]
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Scripted faults of a memory target.
#[derive(Debug, Clone, Default)]
pub struct SinkFaults {
    /// Seed of every random choice below.
    pub seed: u64,
    /// Longest a request takes (uniformly drawn, so answers come back in any order).
    pub max_delay: Duration,
    /// Chance that a request fails (transiently) before it is applied.
    pub fail_before: f64,
    /// Chance that a request is applied and then fails (transiently), as a timeout after
    /// the server wrote it.
    pub fail_after: f64,
    /// Crash after this many requests: the next one is applied or not (`crash_applies`),
    /// then fails the job, and no later one is applied.
    pub crash_after: Option<u64>,
    /// Whether the request the crash interrupts was applied first (the server wrote it, the
    /// process died before it learnt so).
    pub crash_applies: bool,
    /// Chance that a delete of a point is acknowledged and not done, as InfluxDB 1.x does to
    /// some deletes racing writes (at most once per point).
    pub lose_deletes: f64,
    /// The first this many requests fail transiently (a target that is down, then back).
    pub down_for: u64,
    /// The worker that hands the sink its point after this many panics, as a bug in an
    /// operator would: for tests that a panic ends the job rather than hanging it.
    pub panic_after_points: Option<u64>,
}

/// What becomes of one request.
struct Fate {
    delay: Duration,
    fail_before: bool,
    fail_after: bool,
    crash: Crash,
}

/// Whether a request meets the scripted crash.
#[derive(PartialEq)]
enum Crash {
    No,
    /// The crash comes first: the request is never applied.
    Before,
    /// The request is applied, then the crash comes.
    AfterApplying,
}

/// A point of a memory target: (measurement, tags, time).
pub type PointKey = (Name, Vec<(Name, Text)>, i64);

/// What a memory target holds: fields per point.
pub type Points = BTreeMap<PointKey, BTreeMap<Name, Value>>;

/// A target held in memory (see the module docs).
pub struct MemoryTarget {
    points: Mutex<Points>,
    faults: Mutex<(SinkFaults, fastrand::Rng)>,
    requests: AtomicU64,
    /// Points handed to the sink's batches since the faults were set.
    pushed: AtomicU64,
    crashed: std::sync::atomic::AtomicBool,
    /// Points whose delete was lost once (`lose_deletes`).
    lost: Mutex<std::collections::HashSet<PointKey>>,
}

impl Default for MemoryTarget {
    fn default() -> Self {
        Self {
            points: Mutex::new(Points::new()),
            faults: Mutex::new((SinkFaults::default(), fastrand::Rng::with_seed(0))),
            requests: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            crashed: Default::default(),
            lost: Default::default(),
        }
    }
}

impl MemoryTarget {
    /// What the target holds now.
    pub fn points(&self) -> Points {
        self.points
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the faults of the requests to come (and forgets an earlier crash: the restarted
    /// job talks to a target that never went away).
    pub fn set_faults(&self, faults: SinkFaults) {
        let rng = fastrand::Rng::with_seed(faults.seed);
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = (faults, rng);
        self.requests.store(0, Ordering::SeqCst);
        self.pushed.store(0, Ordering::SeqCst);
        self.crashed.store(false, Ordering::SeqCst);
    }

    /// A point is handed to a batch (on a worker): the scripted panic, if it is due.
    fn pushed(&self) {
        let n = self.pushed.fetch_add(1, Ordering::SeqCst);
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if faults.0.panic_after_points == Some(n) {
            drop(faults);
            panic!("the memory target's scripted panic");
        }
    }

    fn crash(&self) {
        // Under the points' lock: a request applying right now finishes first.
        let _points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        self.crashed.store(true, Ordering::SeqCst);
    }

    /// Whether the scripted crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Requests served since the faults were set.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Draws this request's fate.
    fn fate(&self) -> Fate {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let (f, rng) = &mut *faults;
        let crash = match f.crash_after {
            Some(c) if n == c && f.crash_applies => Crash::AfterApplying,
            Some(c) if n >= c => Crash::Before,
            _ => Crash::No,
        };
        Fate {
            delay: f.max_delay.mul_f64(rng.f64()),
            fail_before: n < f.down_for || rng.f64() < f.fail_before,
            fail_after: rng.f64() < f.fail_after,
            crash,
        }
    }

    /// Whether to lose this delete of the point at `key` (see `lose_deletes`).
    fn loses_delete(&self, key: &PointKey) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let (f, rng) = &mut *faults;
        if f.lose_deletes <= 0.0 || rng.f64() >= f.lose_deletes {
            return false;
        }
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
    }

    /// Applies `change` to the stored points unless the target crashed; under one lock, so
    /// a crash is a clean cut between applied and not.
    fn apply(&self, change: impl FnOnce(&mut Points)) -> bool {
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        if self.crashed() {
            return false;
        }
        change(&mut points);
        true
    }
}

/// The named databases and targets of this process.
#[derive(Default)]
struct Registry {
    databases: HashMap<String, Arc<MemoryDatabase>>,
    targets: HashMap<String, Arc<MemoryTarget>>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Registers `database` under `name` for `source: {type: memory, database: NAME}`.
pub fn register_database(name: &str, database: Arc<MemoryDatabase>) {
    registry().databases.insert(name.to_string(), database);
}

/// The database registered under `name`.
pub fn database(name: &str) -> Option<Arc<MemoryDatabase>> {
    registry().databases.get(name).cloned()
}

/// The target named `name`, created empty on first use.
pub fn target(name: &str) -> Arc<MemoryTarget> {
    registry()
        .targets
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Forgets the database and target named `name` (a test's cleanup).
pub fn forget(name: &str) {
    let mut r = registry();
    r.databases.remove(name);
    r.targets.remove(name);
}
