//! The engine's rules, proven against a model: random tables and random histories of
//! inserts, updates (values, time, device, tag) and deletes in transactions, a snapshot
//! taken somewhere in that history with chunks read at random later positions, a target
//! that answers late, out of order and with transient failures, and crashes at random
//! moments followed by restarts from whatever was checkpointed. After the last run has
//! caught up, the target must equal the mapping of the source's final table: no point
//! missing, none extra, every field exact.
//!
//! Every run goes through the same runner as `tsmig-job -c backfill+cdc` (the in-memory
//! connectors of `tsmig::connectors::memory` stand in for MySQL and the target), on 1, 2
//! and 3 workers. A failing case shrinks to a short history; `PROPTEST_CASES` sets how many
//! cases run (the default is sized for CI).

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tsmig::connectors::memory::{
    self, ChunkReads, Entry, MemoryDatabase, MemoryTable, Points, SinkFaults, SourceFaults, Values,
};
use tsmig::engine::Cluster;
use tsmig::job::{Job, Mode};
use tsmig::model::{Name, Value};
use tsmig::runner::{ProgressMode, RunOptions};
use tsmig::source::{ColumnKind, TableSchema};

/// A row of the model table: `readings(id, device, site, ts, temp, status)`.
#[derive(Clone, PartialEq)]
struct Reading {
    device: u8,
    /// 0: NULL (no tag).
    site: u8,
    ts: u8,
    temp: Option<i8>,
    status: Option<i8>,
}

impl Reading {
    /// What makes a point: (device, site, ts) is unique in the table, as a unique key.
    fn point_key(&self) -> (u8, u8, u8) {
        (self.device, self.site, self.ts)
    }

    fn values(&self, id: i64) -> Values {
        vec![
            Some(Value::Int(id)),
            Some(Value::String(["a", "b", "c"][self.device as usize].into())),
            match self.site {
                0 => None,
                s => Some(Value::String(["", "x", "y"][s as usize].into())),
            },
            Some(Value::Time(i64::from(self.ts) * 1_000_000_000)),
            self.temp.map(|t| Value::Float(f64::from(t) / 2.0)),
            self.status.map(|s| Value::Int(i64::from(s))),
        ]
    }
}

/// `device=a site=x ts=1 temp=0.5 status=NULL`, as a failing case prints it.
impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
        write!(
            f,
            "device={} site={} ts={} temp={} status={}",
            ["a", "b", "c"][self.device as usize],
            opt((self.site > 0).then(|| ["", "x", "y"][self.site as usize].to_string())),
            self.ts,
            opt(self.temp.map(|t| (f64::from(t) / 2.0).to_string())),
            opt(self.status.map(|s| s.to_string())),
        )
    }
}

/// One step of the source's history.
#[derive(Clone)]
enum Op {
    Insert(Reading),
    /// Changes the `pick`-th row (mod the rows there are); `None` keeps a column.
    Update {
        pick: usize,
        device: Option<u8>,
        site: Option<u8>,
        ts: Option<u8>,
        temp: Option<Option<i8>>,
        status: Option<Option<i8>>,
    },
    Delete {
        pick: usize,
    },
    Commit,
    /// `backfill+cdc` takes its snapshot at the first transaction boundary from here (the
    /// first marker counts; none: before the whole log).
    Snapshot,
}

/// `INSERT ...`, `UPDATE row 3 SET ts=2`, `DELETE row 1`, `COMMIT`.
impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Insert(r) => write!(f, "INSERT {r:?}"),
            Op::Update {
                pick,
                device,
                site,
                ts,
                temp,
                status,
            } => {
                let mut set = Vec::new();
                let nullable = |v: &Option<i8>, scale: f64| {
                    v.map(|v| (f64::from(v) * scale).to_string())
                        .unwrap_or_else(|| "NULL".into())
                };
                if let Some(d) = device {
                    set.push(format!("device={}", ["a", "b", "c"][*d as usize]));
                }
                if let Some(s) = site {
                    set.push(format!("site={}", ["NULL", "x", "y"][*s as usize]));
                }
                if let Some(t) = ts {
                    set.push(format!("ts={t}"));
                }
                if let Some(t) = temp {
                    set.push(format!("temp={}", nullable(t, 0.5)));
                }
                if let Some(s) = status {
                    set.push(format!("status={}", nullable(s, 1.0)));
                }
                write!(f, "UPDATE row #{pick} (mod rows) SET {}", set.join(" "))
            }
            Op::Delete { pick } => write!(f, "DELETE row #{pick} (mod rows)"),
            Op::Commit => write!(f, "COMMIT"),
            Op::Snapshot => write!(f, "-- the snapshot is taken at the next boundary"),
        }
    }
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        0..3u8,
        0..3u8,
        0..4u8,
        prop::option::weighted(0.8, -4..4i8),
        prop::option::weighted(0.8, 0..3i8),
    )
        .prop_map(|(device, site, ts, temp, status)| Reading {
            device,
            site,
            ts,
            temp,
            status,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let keep = |s: BoxedStrategy<u8>| prop::option::weighted(0.3, s);
    prop_oneof![
        3 => reading().prop_map(Op::Insert),
        4 => (
            any::<usize>(),
            keep((0..3u8).boxed()),
            keep((0..3u8).boxed()),
            keep((0..4u8).boxed()),
            prop::option::weighted(0.6, prop::option::weighted(0.7, -4..4i8)),
            prop::option::weighted(0.4, prop::option::weighted(0.7, 0..3i8)),
        )
            .prop_map(|(pick, device, site, ts, temp, status)| Op::Update {
                pick,
                device,
                site,
                ts,
                temp,
                status,
            }),
        2 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        3 => Just(Op::Commit),
        1 => Just(Op::Snapshot),
    ]
}

/// A whole case: the table before the log, the log's operations, where the snapshot is,
/// how the target misbehaves, and where the job is killed.
#[derive(Clone)]
struct Case {
    initial: Vec<Reading>,
    ops: Vec<Op>,
    /// Chunks read at later positions (else at the snapshot).
    later_reads: bool,
    faults: (u64, u8, u8, u8),
    /// Percent of deletes the target acknowledges and does not do (once per point); only
    /// in cases without a crash: the sink's re-check of its deletes repairs them before a
    /// run ends, but a crash can come between a lost delete and its check.
    lose_deletes: u8,
    /// Each run but the last is killed after this many target requests.
    crashes: Vec<u8>,
}

/// The case as a story: the table, the log, the snapshot, the faults, the kills.
impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "\n  table before the log:")?;
        for r in &self.initial {
            writeln!(f, "    {r:?}")?;
        }
        writeln!(f, "  log (a COMMIT ends the log if it does not):")?;
        for op in &self.ops {
            writeln!(f, "    {op:?}")?;
        }
        let (seed, delay, before, after) = self.faults;
        writeln!(
            f,
            "  chunks read {}",
            if self.later_reads {
                "at later boundaries"
            } else {
                "at the snapshot"
            }
        )?;
        writeln!(
            f,
            "  target: delays up to {}µs, {before}% fail before writing, {after}% after, {}% of deletes lost (seed {seed})",
            u64::from(delay) * 500,
            self.lose_deletes
        )?;
        write!(f, "  killed after target requests: {:?}", self.crashes)
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(reading(), 0..8),
        prop::collection::vec(op(), 0..30),
        any::<bool>(),
        (any::<u64>(), 0..3u8, 0..20u8, 0..20u8),
        prop::option::weighted(0.3, 0..50u8),
        prop::collection::vec(0..30u8, 0..4),
    )
        .prop_map(
            |(initial, ops, later_reads, faults, lose_deletes, crashes)| Case {
                initial,
                ops,
                later_reads,
                faults,
                lose_deletes: lose_deletes.unwrap_or(0),
                crashes,
            },
        )
}

/// The source as the model keeps it: rows by id.
#[derive(Default, Clone)]
struct Table {
    rows: BTreeMap<i64, Reading>,
    next_id: i64,
}

impl Table {
    fn free(&self, r: &Reading, except: Option<i64>) -> bool {
        !self
            .rows
            .iter()
            .any(|(id, other)| Some(*id) != except && other.point_key() == r.point_key())
    }

    /// Applies `op` if the unique key allows it, as MySQL would; the log entries it makes.
    fn apply(&mut self, op: &Op) -> Vec<Entry> {
        let pick = |rows: &BTreeMap<i64, Reading>, pick: usize| {
            (!rows.is_empty()).then(|| *rows.keys().nth(pick % rows.len()).expect("in range"))
        };
        match op {
            Op::Insert(r) => {
                if !self.free(r, None) {
                    return vec![];
                }
                self.next_id += 1;
                self.rows.insert(self.next_id, r.clone());
                vec![Entry::Change {
                    table: 0,
                    before: None,
                    after: Some(r.values(self.next_id)),
                }]
            }
            Op::Update {
                pick: p,
                device,
                site,
                ts,
                temp,
                status,
            } => {
                let Some(id) = pick(&self.rows, *p) else {
                    return vec![];
                };
                let old = self.rows[&id].clone();
                let new = Reading {
                    device: device.unwrap_or(old.device),
                    site: site.unwrap_or(old.site),
                    ts: ts.unwrap_or(old.ts),
                    temp: temp.unwrap_or(old.temp),
                    status: status.unwrap_or(old.status),
                };
                if new == old || !self.free(&new, Some(id)) {
                    // MySQL logs no row for an update that changes nothing.
                    return vec![];
                }
                self.rows.insert(id, new.clone());
                vec![Entry::Change {
                    table: 0,
                    before: Some(old.values(id)),
                    after: Some(new.values(id)),
                }]
            }
            Op::Delete { pick: p } => {
                let Some(id) = pick(&self.rows, *p) else {
                    return vec![];
                };
                let old = self.rows.remove(&id).expect("picked");
                vec![Entry::Change {
                    table: 0,
                    before: Some(old.values(id)),
                    after: None,
                }]
            }
            Op::Commit => vec![Entry::Commit { timestamp: 0 }],
            Op::Snapshot => vec![],
        }
    }

    /// What the target must hold: the mapping of every row.
    fn expected(&self) -> Points {
        let mut points = Points::new();
        for r in self.rows.values() {
            let mut fields = BTreeMap::new();
            if let Some(t) = r.temp {
                fields.insert(Name::from("temp"), Value::Float(f64::from(t) / 2.0));
            }
            if let Some(s) = r.status {
                fields.insert(Name::from("status"), Value::Int(i64::from(s)));
            }
            if fields.is_empty() {
                // Every field NULL: dead-lettered, no point.
                continue;
            }
            let mut tags = vec![(
                Name::from("device"),
                ["a", "b", "c"][r.device as usize].into(),
            )];
            if r.site > 0 {
                tags.push((Name::from("site"), ["", "x", "y"][r.site as usize].into()));
            }
            points.insert(
                (Name::from("m"), tags, i64::from(r.ts) * 1_000_000_000),
                fields,
            );
        }
        points
    }
}

fn schema() -> TableSchema {
    TableSchema::of(
        "readings",
        [
            ("id", ColumnKind::Int),
            ("device", ColumnKind::Text),
            ("site", ColumnKind::Text),
            ("ts", ColumnKind::Time),
            ("temp", ColumnKind::Float),
            ("status", ColumnKind::Int),
        ],
    )
}

/// Builds the case's database; returns it with the model of its final table.
fn database(case: &Case) -> (MemoryDatabase, Table) {
    let mut table = Table::default();
    for r in &case.initial {
        table.apply(&Op::Insert(r.clone()));
    }
    let initial: Vec<Values> = table.rows.iter().map(|(id, r)| r.values(*id)).collect();
    let mut log = Vec::new();
    let mut snapshot_from = None;
    for op in &case.ops {
        if matches!(op, Op::Snapshot) && snapshot_from.is_none() {
            snapshot_from = Some(log.len() as u64);
        }
        log.extend(table.apply(op));
    }
    if !matches!(log.last(), None | Some(Entry::Commit { .. })) {
        log.push(Entry::Commit { timestamp: 0 });
    }
    let db = MemoryDatabase::new(
        vec![MemoryTable {
            schema: schema(),
            key: 0,
        }],
        vec![initial],
    );
    let boundaries: Vec<u64> = std::iter::once(0)
        .chain(
            log.iter()
                .enumerate()
                .filter(|(_, e)| matches!(e, Entry::Commit { .. }))
                .map(|(i, _)| i as u64 + 1),
        )
        .collect();
    let snapshot = match snapshot_from {
        None => 0,
        Some(from) => boundaries.iter().copied().find(|&b| b >= from).unwrap_or(0),
    };
    db.append(log);
    db.set_snapshot_at(snapshot);
    db.set_chunk_reads(if case.later_reads {
        ChunkReads::Later {
            seed: case.faults.0,
        }
    } else {
        ChunkReads::AtSnapshot
    });
    (db, table)
}

/// A memory database and target under a fresh name, a state directory, and the job file
/// that runs `backfill+cdc` from one into the other; all forgotten when dropped.
struct Harness {
    name: String,
    state: std::path::PathBuf,
    db: Arc<MemoryDatabase>,
    target: Arc<memory::MemoryTarget>,
    /// `deletes:` of the memory sink.
    deletes: &'static str,
    /// `flow.epoch`.
    epoch: &'static str,
    /// `checkpoint.interval`.
    checkpoint: &'static str,
    /// The entry point.
    mode: Mode,
    /// More keys of the mapping, e.g. `append_only: true`.
    mapping: &'static str,
    /// The mapping's device and tag keys.
    device: &'static str,
    /// `sink.max_retries`.
    retries: &'static str,
    /// The `restart:` section.
    restart: &'static str,
    /// `flow.max_in_flight_rows`.
    in_flight_rows: u64,
}

impl Harness {
    fn new(db: MemoryDatabase) -> Self {
        static CASES: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "model-{}-{}",
            std::process::id(),
            CASES.fetch_add(1, Ordering::Relaxed)
        );
        let state = std::env::temp_dir().join(format!("tsmig-{name}"));
        let _ = std::fs::remove_dir_all(&state);
        let db = Arc::new(db);
        memory::register_database(&name, db.clone());
        Harness {
            target: memory::target(&name),
            name,
            state,
            db,
            deletes: "point",
            epoch: "1ms",
            checkpoint: "1ms",
            mode: Mode::BackfillCdc,
            mapping: "",
            device: "device_field: device\n    tags: [site]",
            retries: "1000000",
            // The model's runs end by a crash or by catching up: no restarts of their own.
            restart: "{strategy: none}",
            in_flight_rows: 6,
        }
    }

    fn job(&self) -> Job {
        let text = format!(
            "name: model
mode: backfill+cdc
source:
  type: memory
  database: {name}
sink:
  type: memory
  target: {name}
  deletes: {deletes}
  batch_size: 3
  linger: 1ms
  in_flight: 3
  max_retries: {retries}
  initial_backoff: 1ms
  max_backoff: 1ms
mappings:
  - table: readings
    measurement: m
    {device}
    timestamp_field: ts
    fields: [temp, status]
    {mapping}
checkpoint:
  interval: {checkpoint}
  store: file:{state}
restart: {restart}
flow:
  epoch: {epoch}
  max_in_flight_rows: {in_flight_rows}
",
            name = self.name,
            deletes = self.deletes,
            checkpoint = self.checkpoint,
            epoch = self.epoch,
            mapping = self.mapping,
            device = self.device,
            retries = self.retries,
            restart = self.restart,
            in_flight_rows = self.in_flight_rows,
            state = self.state.display(),
        );
        Job::parse(Path::new("model.yaml"), &text, |_| None).expect("the model's job file")
    }

    /// One run of the job (`--until-caught-up`) against a target with `faults`:
    /// `Ok(true)` when the scripted crash ended it, `Ok(false)` when it caught up.
    fn run(&self, workers: usize, faults: SinkFaults) -> Result<bool, String> {
        self.target.set_faults(faults);
        let options = run_options(workers);
        match tsmig::runner::run(&self.job(), self.mode, &options) {
            Ok(()) => Ok(false),
            Err(_) if self.target.crashed() => Ok(true),
            Err(e) => Err(format!("a run failed without a crash: {e}")),
        }
    }

    /// `Err` says how the target differs from `want`.
    fn compare(&self, want: &Points) -> Result<(), String> {
        let got = self.target.points();
        if got == *want {
            return Ok(());
        }
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(*v))
            .collect();
        Err(format!(
            "the target differs from the source:\n  expected but not there (or other values): {missing:?}\n  there but not expected (or other values): {extra:?}"
        ))
    }
}

/// `--workers N --until-caught-up`, no display.
fn run_options(workers: usize) -> RunOptions {
    RunOptions {
        cluster: Cluster::local(workers),
        fresh: false,
        progress: ProgressMode::Off,
        until_caught_up: true,
        metrics_addr: None,
        repair: false,
        stop_timeout: Duration::from_secs(60),
        status_addr: None,
        status_token: None,
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        memory::forget(&self.name);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Runs `case` to the end with `workers` workers; `Err` says how the target differs.
fn check(case: &Case, workers: usize, deletes: &'static str) -> Result<(), String> {
    let (db, table) = database(case);
    let mut harness = Harness::new(db);
    harness.deletes = deletes;
    run_case(&harness, case, workers)?;
    harness.compare(&table.expected())
}

/// Runs `harness`'s job once per crash of `case` (each killed after that many target
/// requests), then once more to the end.
fn run_case(harness: &Harness, case: &Case, workers: usize) -> Result<(), String> {
    let (seed, delay, before, after) = case.faults;
    for run in 0..=case.crashes.len() {
        harness.run(
            workers,
            SinkFaults {
                seed: seed.wrapping_add(run as u64),
                max_delay: Duration::from_micros(u64::from(delay) * 500),
                fail_before: f64::from(before) / 100.0,
                fail_after: f64::from(after) / 100.0,
                crash_after: case.crashes.get(run).map(|&c| u64::from(c)),
                crash_applies: seed.wrapping_add(run as u64) % 2 == 0,
                // Re-checking deletes repairs lost ones in a run that ends; across a crash
                // it may not (verify --repair does).
                lose_deletes: match case.crashes.is_empty() {
                    true => f64::from(case.lose_deletes) / 100.0,
                    false => 0.0,
                },
                ..SinkFaults::default()
            },
        )?;
    }
    Ok(())
}

/// A plain backfill of the table as it is at the end of the case's log.
fn check_backfill(case: &Case, workers: usize) -> Result<(), String> {
    backfill_with_mapping(case, workers, None)
}

/// A plain backfill as [`check_backfill`], of a mapping without a device column: the
/// device tag is a plain tag and each series is its own device, so no row's owner can be
/// told before it is mapped (each is mapped where it was read and its point routed).
fn check_backfill_by_series(case: &Case, workers: usize) -> Result<(), String> {
    backfill_with_mapping(case, workers, Some("tags: [device, site]"))
}

/// A plain backfill, with the mapping's device and tag keys `device` where given.
fn backfill_with_mapping(
    case: &Case,
    workers: usize,
    device: Option<&'static str>,
) -> Result<(), String> {
    let (db, table) = database(case);
    db.set_snapshot_at(db.end());
    db.set_chunk_reads(ChunkReads::AtSnapshot);
    let mut harness = Harness::new(db);
    harness.mode = Mode::Backfill;
    if let Some(device) = device {
        harness.device = device;
    }
    run_case(&harness, case, workers)?;
    harness.compare(&table.expected())
}

/// `backfill+cdc` of an append-only mapping: no grouping, every change in log order.
fn check_append_only(case: &Case, workers: usize) -> Result<(), String> {
    let (db, table) = database(case);
    let mut harness = Harness::new(db);
    harness.mapping = "append_only: true";
    run_case(&harness, case, workers)?;
    harness.compare(&table.expected())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(200),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn backfill_then_cdc_with_crashes_ends_with_the_source_on_1_worker(case in case()) {
        check(&case, 1, "point").map_err(TestCaseError::fail)?;
    }

    #[test]
    fn backfill_then_cdc_with_crashes_ends_with_the_source_on_2_workers(case in case()) {
        check(&case, 2, "point").map_err(TestCaseError::fail)?;
    }

    #[test]
    fn deletes_that_name_fields_end_with_the_source_too(case in case()) {
        check(&case, 2, "fields").map_err(TestCaseError::fail)?;
    }

    #[test]
    fn a_backfill_with_crashes_copies_every_row_once(case in case()) {
        check_backfill(&case, 2).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn a_backfill_of_rows_mapped_where_they_are_read_copies_every_row_once(case in case()) {
        check_backfill_by_series(&case, 3).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn append_only_changes_in_log_order_end_with_the_source(case in case()) {
        check_append_only(&case, 2).map_err(TestCaseError::fail)?;
    }
}

/// The table `readings` with no row, its log holding `ops`.
fn empty_table_with_log(ops: &[Op]) -> (MemoryDatabase, Table) {
    database(&Case {
        initial: vec![],
        ops: ops.to_vec(),
        later_reads: false,
        faults: (0, 0, 0, 0),
        lose_deletes: 0,
        crashes: vec![],
    })
}

fn insert(device: u8, ts: u8, temp: i8) -> Op {
    Op::Insert(Reading {
        device,
        site: 1,
        ts,
        temp: Some(temp),
        status: None,
    })
}

/// Found by the model on the first day: `backfill+cdc`, insert a row, its point reaches the
/// target, the job is killed before its position is checkpointed, the row is deleted, the
/// job restarts. The replay holds the insert and the delete in one epoch; they cancel,
/// nothing was sent, and the point stayed in the target for ever.
#[test]
fn a_row_deleted_after_a_kill_is_deleted_in_the_target() {
    let (db, _) = empty_table_with_log(&[insert(0, 1, 3), Op::Commit]);
    let mut harness = Harness::new(db);
    harness.checkpoint = "30s";
    // A second is longer than the whole replay: insert and delete land in one epoch.
    harness.epoch = "1s";
    let killed = harness
        .run(
            1,
            SinkFaults {
                crash_after: Some(0),
                crash_applies: true,
                ..SinkFaults::default()
            },
        )
        .unwrap();
    assert!(
        killed,
        "the first run is killed right after its first write"
    );
    assert_eq!(
        harness.target.points().len(),
        1,
        "the point reached the target"
    );

    let mut model = Table::default();
    model.apply(&insert(0, 1, 3));
    let delete = Op::Delete { pick: 0 };
    harness.db.append(model.apply(&delete));
    harness.db.append(model.apply(&Op::Commit));
    assert!(!harness.run(1, SinkFaults::default()).unwrap());
    harness.compare(&model.expected()).unwrap();
    assert!(harness.target.points().is_empty());
}

/// A chunk of `backfill+cdc` read after the snapshot position holds a row inserted after
/// it; the row is deleted moments later. CDC replays both from the snapshot position.
#[test]
fn a_row_inserted_and_deleted_while_the_snapshot_is_read_is_not_in_the_target() {
    let ops = [
        insert(1, 2, -1),
        Op::Commit,
        Op::Delete { pick: 0 },
        Op::Commit,
    ];
    let (db, table) = empty_table_with_log(&ops);
    // The chunk is read after the insert's commit (position 2), before the delete's.
    db.set_chunk_reads(ChunkReads::At(2));
    let mut harness = Harness::new(db);
    harness.epoch = "1s";
    for workers in [1, 2] {
        std::fs::remove_dir_all(&harness.state).ok();
        assert!(!harness.run(workers, SinkFaults::default()).unwrap());
        harness.compare(&table.expected()).unwrap();
        assert!(harness.target.points().is_empty());
    }
}

/// Every kind of change at once, on 4 workers: inserts, value updates, a field set to NULL,
/// a time, a device and a tag moved, a delete, and a row updated twice in one transaction.
#[test]
fn every_kind_of_change_on_4_workers() {
    let update = |pick, f: fn(&mut Op)| {
        let mut op = Op::Update {
            pick,
            device: None,
            site: None,
            ts: None,
            temp: None,
            status: None,
        };
        f(&mut op);
        op
    };
    let ops = vec![
        insert(0, 0, 1),
        insert(1, 0, 2),
        insert(2, 0, 3),
        insert(0, 1, 4),
        Op::Commit,
        update(0, |op| {
            if let Op::Update { temp, .. } = op {
                *temp = Some(Some(-3))
            }
        }),
        update(1, |op| {
            if let Op::Update { status, .. } = op {
                *status = Some(Some(2))
            }
        }),
        Op::Commit,
        update(1, |op| {
            if let Op::Update { temp, .. } = op {
                *temp = Some(None)
            }
        }),
        update(2, |op| {
            if let Op::Update { ts, .. } = op {
                *ts = Some(3)
            }
        }),
        update(3, |op| {
            if let Op::Update { device, .. } = op {
                *device = Some(2)
            }
        }),
        update(0, |op| {
            if let Op::Update { site, .. } = op {
                *site = Some(2)
            }
        }),
        update(0, |op| {
            if let Op::Update { site, .. } = op {
                *site = Some(0)
            }
        }),
        Op::Commit,
        Op::Delete { pick: 2 },
        Op::Commit,
    ];
    let (db, table) = empty_table_with_log(&ops);
    let harness = Harness::new(db);
    assert!(!harness.run(4, SinkFaults::default()).unwrap());
    harness.compare(&table.expected()).unwrap();
    assert_eq!(harness.target.points().len(), 3);
}

/// InfluxDB 1.x acknowledges some deletes it does not do; the sink asks the target about
/// the points it deleted and deletes those still there again — here every point's first
/// delete is lost, among them the delete before a write (a field set to NULL).
#[test]
fn deletes_the_target_acknowledged_and_did_not_do_are_done_again() {
    let nulled = Op::Update {
        pick: 1,
        device: None,
        site: None,
        ts: None,
        temp: None,
        status: Some(None),
    };
    let ops = [
        insert(0, 1, 3),
        Op::Insert(Reading {
            device: 1,
            site: 0,
            ts: 2,
            temp: Some(1),
            status: Some(2),
        }),
        Op::Commit,
        Op::Delete { pick: 0 },
        nulled,
        Op::Commit,
    ];
    let (_, table) = empty_table_with_log(&ops);
    for deletes in ["point", "fields"] {
        let mut harness = Harness::new(empty_table_with_log(&ops).0);
        harness.deletes = deletes;
        let lose_all = SinkFaults {
            lose_deletes: 1.0,
            ..SinkFaults::default()
        };
        assert!(!harness.run(2, lose_all).unwrap());
        harness.compare(&table.expected()).unwrap();
    }
}

/// Runs `f` on a thread of its own; `None` if it has not returned within `within` (a hang).
fn within<T: Send + 'static>(
    within: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within).ok()
}

/// A table of `rows` rows (two splits of four, more), every row a point.
fn table_of(rows: u8) -> (MemoryDatabase, Table) {
    table_with_log(rows, &[])
}

/// A table of `rows` rows, every row a point, its log holding `ops`.
fn table_with_log(rows: u8, ops: &[Op]) -> (MemoryDatabase, Table) {
    database(&Case {
        initial: (0..rows)
            .map(|i| Reading {
                device: i % 3,
                site: 1,
                ts: i,
                temp: Some(i as i8),
                status: None,
            })
            .collect(),
        ops: ops.to_vec(),
        later_reads: false,
        faults: (0, 0, 0, 0),
        lose_deletes: 0,
        crashes: vec![],
    })
}

/// `flow.max_in_flight_rows` holds the reader back while the sinks have not made its rows
/// durable, whatever the size of a split. Splits of four rows fit in the read task's
/// channel, so each one finished at once, and the next one was started whatever was in
/// flight: with the target down, every row of the table was read into memory.
#[test]
fn a_target_that_is_down_holds_the_backfill_at_max_in_flight_rows() {
    let (db, table) = table_of(200);
    db.set_snapshot_at(db.end());
    let mut harness = Harness::new(db);
    harness.mode = Mode::Backfill;
    // `max_in_flight_rows: 6` in the job; splits of `chunk_rows` (4).
    let bound = 6 + harness.db.chunk_rows as u64;
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            harness.run(
                1,
                SinkFaults {
                    down_for: u64::MAX,
                    ..SinkFaults::default()
                },
            )
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while harness.target.requests() < 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "the job never wrote to the target"
            );
            std::thread::yield_now();
        }
        // While the target refuses (50 requests and then 500 ms of retries), the rows read
        // stay within the bound.
        let watched = std::time::Instant::now() + Duration::from_millis(500);
        let mut most = 0;
        while std::time::Instant::now() < watched && most <= bound {
            most = most.max(harness.db.rows_read());
            std::thread::sleep(Duration::from_millis(5));
        }
        let written = harness.target.points().len();
        // The target comes back (also before a failed assertion: the run would retry for
        // ever): the backfill goes on to the end.
        harness.target.set_faults(SinkFaults::default());
        let ended = run.join().unwrap();
        assert!(
            most <= bound,
            "{most} rows were read with nothing durable (max_in_flight_rows 6, splits of 4)"
        );
        assert_eq!(written, 0, "the target was down");
        assert_eq!(ended, Ok(false));
    });
    harness.compare(&table.expected()).unwrap();
    assert_eq!(harness.db.rows_read(), 200);
}

/// A target slower than the source holds the backfill at what its requests in flight and
/// as many full batches waiting carry, however far `flow.max_in_flight_rows` lets the reader
/// run ahead: rows read beyond that would only wait in memory, encoded. Without the sink's
/// backlog holding the reader back, the whole table was read while the first few requests
/// were out.
#[test]
fn a_slow_target_holds_the_backfill_at_its_backlog() {
    let (db, table) = table_of(250);
    db.set_snapshot_at(db.end());
    let mut harness = Harness::new(db);
    harness.mode = Mode::Backfill;
    harness.in_flight_rows = 100_000;
    // The job's sink: batches of 3 points, 3 requests in flight. Ahead of what the target
    // holds: 3 requests out, 3 full batches waiting, the open one; the read task's channel
    // (4 batches of the memory source's 3 rows) and the emitted batches the operators after
    // the reader have not yet taken (4 more); the split being read (`chunk_rows`).
    let bound = (3 + 3 + 1) * 3 + 2 * 4 * 3 + harness.db.chunk_rows;
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            harness.run(
                1,
                SinkFaults {
                    seed: 7,
                    max_delay: Duration::from_millis(20),
                    ..SinkFaults::default()
                },
            )
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut most = 0;
        while !run.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the backfill never ended"
            );
            let written = harness.target.points().len();
            let read = harness.db.rows_read() as usize;
            most = most.max(read.saturating_sub(written));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(run.join().unwrap(), Ok(false));
        assert!(
            most <= bound,
            "{most} rows were read ahead of the target (at most {bound} may be)"
        );
    });
    harness.compare(&table.expected()).unwrap();
    assert_eq!(harness.db.rows_read(), 250);
}

/// The hang: a failure on one worker of a multi-worker job used to leave the others
/// waiting for it for ever. Now the job ends on every worker with the cause, promptly.
#[test]
fn a_failure_on_one_worker_ends_the_job_on_every_worker_with_its_cause() {
    for workers in [2, 4] {
        // The target fails for good at its third request, whichever worker sends it.
        let (db, _) = table_of(24);
        let mut harness = Harness::new(db);
        harness.mode = Mode::Backfill;
        let outcome = within(Duration::from_secs(20), move || {
            let result = harness.run(
                workers,
                SinkFaults {
                    crash_after: Some(2),
                    ..SinkFaults::default()
                },
            );
            (result, harness)
        });
        let (result, _harness) = outcome.expect("the job must end, not hang");
        assert_eq!(result, Ok(true), "ended by the target's failure");

        // A backfill of `db` with its source faults: how the job ended (it must end).
        let run_with = |db: MemoryDatabase, faults: SourceFaults| {
            db.set_faults(faults);
            let mut harness = Harness::new(db);
            harness.mode = Mode::Backfill;
            let (job, options) = (harness.job(), run_options(workers));
            let result = within(Duration::from_secs(20), move || {
                tsmig::runner::run(&job, Mode::Backfill, &options).map_err(|e| e.to_string())
            })
            .expect("the job must end, not hang");
            (result, harness)
        };

        // A split that cannot be read, on whichever worker reads it.
        for split in [0, 1, 3] {
            let (db, _) = table_of(24);
            let faults = SourceFaults {
                fail_split: Some((split, format!("cannot read split {split}"))),
                ..SourceFaults::default()
            };
            let (result, _) = run_with(db, faults);
            assert_eq!(result, Err(format!("cannot read split {split}")));
        }

        // A split whose rows the worker taking them cannot decode (a malformed row): the
        // job ends with the cause, and a run after it, without the fault, copies the table
        // whole — what the failed run wrote or left out is neither lost nor wrong.
        for split in [0, 3] {
            let (db, table) = table_of(24);
            let faults = SourceFaults {
                malformed_split: Some((split, format!("split {split}: a malformed row"))),
                ..SourceFaults::default()
            };
            let (result, harness) = run_with(db, faults);
            assert_eq!(result, Err(format!("split {split}: a malformed row")));
            harness.db.set_faults(SourceFaults::default());
            assert_eq!(harness.run(workers, SinkFaults::default()), Ok(false));
            harness.compare(&table.expected()).unwrap();
        }
    }
}

/// A panic on one worker (a bug in an operator) ends the job with the panic as its cause,
/// on every worker: the others used to wait for the panicked one for ever.
#[test]
fn a_panic_on_one_worker_ends_the_job_with_it_instead_of_hanging() {
    for workers in [1, 2, 3] {
        let (db, _) = table_of(24);
        let mut harness = Harness::new(db);
        harness.mode = Mode::Backfill;
        harness.target.set_faults(SinkFaults {
            panic_after_points: Some(5),
            ..SinkFaults::default()
        });
        let (job, options) = (harness.job(), run_options(workers));
        let result = within(Duration::from_secs(30), move || {
            tsmig::runner::run(&job, Mode::Backfill, &options).map_err(|e| e.to_string())
        })
        .expect("the job must end, not hang");
        let message = result.expect_err("the panic fails the job");
        assert!(
            message.contains("a worker panicked: the memory target's scripted panic"),
            "{workers} workers: {message}"
        );
    }
}

/// A change log that cannot be read further ends a CDC job with that cause, after what was
/// read before it is written and its position recorded.
#[test]
fn a_failing_change_log_ends_the_job_after_writing_what_was_read() {
    let ops = [insert(0, 1, 3), Op::Commit, insert(1, 1, 4), Op::Commit];
    let (db, _) = empty_table_with_log(&ops);
    // Entries 0-1 are the first transaction; the reader fails on reaching entry 2.
    db.set_faults(SourceFaults {
        fail_log_at: Some((2, "the server ended the stream".into())),
        ..SourceFaults::default()
    });
    let harness = Harness::new(db);
    let (job, options) = (harness.job(), run_options(2));
    let result = within(Duration::from_secs(20), move || {
        tsmig::runner::run(&job, Mode::BackfillCdc, &options).map_err(|e| e.to_string())
    })
    .expect("the job must end, not hang");
    assert_eq!(result, Err("the server ended the stream".to_string()));
    assert_eq!(
        harness.target.points().len(),
        1,
        "the first transaction is written"
    );
    let cdc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(harness.state.join("cdc.json")).unwrap())
            .unwrap();
    assert_eq!(cdc["position"]["offset"], 2, "and its position recorded");
}

/// A target that is down longer than a request's retries: the job restarts from its last
/// checkpoint (the restart strategy) until the target is back, and ends exact.
#[test]
fn a_target_down_longer_than_the_retries_is_ridden_out_by_restarts() {
    let ops = [
        insert(0, 1, 3),
        Op::Commit,
        Op::Delete { pick: 0 },
        insert(2, 3, 1),
        Op::Commit,
    ];
    for mode in [Mode::Backfill, Mode::BackfillCdc] {
        let (db, table) = match mode {
            Mode::Backfill => table_of(24),
            _ => table_with_log(24, &ops),
        };
        let mut harness = Harness::new(db);
        harness.mode = mode;
        harness.retries = "1";
        harness.restart = "{strategy: fixed, initial: 10ms, attempts: 20}";
        let faults = SinkFaults {
            down_for: 6,
            ..SinkFaults::default()
        };
        let (caught_up, harness) = within(Duration::from_secs(20), move || {
            let result = harness.run(2, faults);
            (result, harness)
        })
        .expect("the job must end, not hang");
        assert_eq!(caught_up, Ok(false), "{mode:?}");
        harness.compare(&table.expected()).unwrap();
        // And a target that never comes back: the strategy gives up, naming the cause.
        let (db, _) = table_of(24);
        let mut down = Harness::new(db);
        down.mode = mode;
        down.retries = "1";
        down.restart = "{strategy: fixed, initial: 10ms, attempts: 3}";
        let faults = SinkFaults {
            down_for: u64::MAX,
            ..SinkFaults::default()
        };
        let result = within(Duration::from_secs(20), move || down.run(1, faults))
            .expect("the job must end, not hang");
        let error = result.unwrap_err();
        assert!(
            error.contains("failed before writing")
                && error.ends_with("(gave up after 3 restarts; see `restart:`)"),
            "{error}"
        );
    }
}
