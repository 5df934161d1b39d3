//! The read operator: reads the splits routed to this worker, one at a time, on the tokio
//! runtime, and emits their row batches stamped with the current epoch, each addressed to
//! the worker that will map and write its rows ([`Router`]).
//!
//! ```text
//!  splits ──▶ [ read splits ] ──▶ (worker, row batch)   (at the current epoch)
//!                   │
//!                   └──────────▶ finished splits        (at the epoch of their last row)
//! ```
//!
//! Capabilities: it holds one capability per output at the current epoch and downgrades
//! both as the epoch clock ticks, so epochs close even while a slow split is read; it
//! drops them when no split is left (or a stop was requested). A split id is emitted on the
//! second output only after every row of the split has been emitted, at an epoch no
//! earlier than those rows: once that epoch is durable, so is the whole split.
//!
//! Backpressure: rows emitted at epochs the probe after the sinks has not passed are in
//! flight; past `max_in_flight_rows` the operator stops draining the read task's bounded
//! channel, so the task (and the database cursor) wait too, and starts no further split.
//! A worker's rows in flight stay near the bound: at most what the channel holds past it.
//! It also stops while the worker's sink has a full backlog ([`super::sink::Backlog`]): a
//! slow target then bounds what waits in memory, encoded, rather than the row count.

use super::{Control, EpochClock};
use crate::dead_letter::DeadLetters;
use crate::mapping::Mappings;
use crate::metrics::Counters;
use crate::model::Row;
use crate::source::{BoundedSource, RowBatch, RowSender, SourceError, Split, SplitKey};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use tokio::sync::{mpsc, oneshot};

/// Row batches buffered between a read task and the operator.
const CHANNEL_BATCHES: usize = 4;
/// Row batches emitted per activation before yielding to other operators. Few: the rows
/// emitted stay in memory until the operators after this one run, and a read task refills
/// the channel while the batches taken are decoded.
const BATCHES_PER_ACTIVATION: usize = CHANNEL_BATCHES;

/// What the read operator needs besides its input.
pub(super) struct ReadContext {
    pub source: Arc<dyn BoundedSource>,
    pub runtime: tokio::runtime::Handle,
    pub dead_letters: DeadLetters,
    pub counters: Arc<Counters>,
    pub control: Control,
    pub clock: EpochClock,
    pub max_in_flight_rows: u64,
    /// The frontier after the sinks.
    pub durable: ProbeHandle<u64>,
    /// Which splits are being read, for the status page.
    pub status: crate::status::StatusBoard,
    /// Whether this worker's sink has a full backlog: no further rows are taken while it
    /// has (see [`super::sink::Backlog`]).
    pub backlog: super::sink::Backlog,
    /// Which worker each row goes to.
    pub router: Router,
}

/// Sorts a batch's rows by the worker that will write their points, before they are
/// mapped: a point is then made, written and freed on one core, and an encoded batch's
/// rows are decoded there too (the batch is split still encoded, reading only each row's
/// device column). A part is addressed `Some(worker)` when that worker writes every point
/// of its rows (the sink there maps them as it writes them), `None` when the owner of its
/// rows' points cannot be told before mapping (no device column, several mappings, a NULL
/// or other value): those rows are mapped on this worker and their points routed by the
/// points' own exchange.
pub(super) struct Router {
    /// The job's mappings, which say where a row's device is.
    pub mappings: Arc<Mappings>,
    /// Workers in the job.
    pub peers: usize,
    /// This worker's index.
    pub here: usize,
    /// The workers of this process. A batch for a worker of another process is decoded
    /// here before it is sent: encoded rows do not cross processes.
    pub local: Range<usize>,
}

/// A part of a batch and the worker that writes its rows' points (`None`: not known before
/// mapping; see [`Router`]).
pub(super) type Addressed = (Option<u64>, RowBatch);

impl Router {
    /// The batch's rows, as parts addressed to the workers that write their points.
    pub fn route(
        &self,
        batch: RowBatch,
        dead_letters: &DeadLetters,
    ) -> Result<Vec<Addressed>, SourceError> {
        if self.peers <= 1 {
            return Ok(vec![(Some(self.here as u64), batch)]);
        }
        // The worker timely's exchange sends a point of this device hash to: the hash
        // modulo the workers (a mask where they are a power of two: the same worker); rows
        // whose device hash cannot be told go to the part after the workers'.
        let unknown = self.peers;
        let owner = |hash: Option<u64>| hash.map_or(unknown, |h| (h % self.peers as u64) as usize);
        let address = |part: usize| (part != unknown).then_some(part as u64);
        let mut routed = Vec::with_capacity(self.peers + 1);
        match batch {
            RowBatch::Rows(rows) => {
                let mut parts: Vec<Vec<Row>> = (0..=self.peers).map(|_| Vec::new()).collect();
                for row in rows {
                    parts[owner(self.mappings.device_hash_of(&row))].push(row);
                }
                for (part, rows) in parts.into_iter().enumerate() {
                    if !rows.is_empty() {
                        routed.push((address(part), RowBatch::Rows(rows)));
                    }
                }
            }
            RowBatch::Encoded(encoded) => {
                let Some(column) = self.mappings.device_column(encoded.table()) else {
                    return Ok(vec![(None, RowBatch::Encoded(encoded))]);
                };
                let parts = encoded.split(column, self.peers + 1, &mut |key| {
                    owner(match key {
                        SplitKey::Text(text) => Mappings::device_hash_of_text(text),
                        SplitKey::Value(value) => Mappings::device_hash_of_value(value),
                        SplitKey::None => None,
                    })
                });
                for (part, rows) in parts.into_iter().enumerate() {
                    let Some(rows) = rows else { continue };
                    // Rows mapped here (`None`) stay encoded too.
                    let batch = if part == unknown || self.local.contains(&part) {
                        RowBatch::Encoded(rows)
                    } else {
                        RowBatch::Rows(rows.decode(dead_letters)?)
                    };
                    routed.push((address(part), batch));
                }
            }
        }
        Ok(routed)
    }
}

/// A split being read by a tokio task.
struct Reading {
    split: u64,
    rows: mpsc::Receiver<RowBatch>,
    done: oneshot::Receiver<Result<u64, SourceError>>,
    task: tokio::task::JoinHandle<()>,
}

/// Row batches, each addressed to the worker that writes its points ([`Addressed`]).
pub(super) type Routed<'s> = Stream<'s, u64, Vec<Addressed>>;
type Finished<'s> = Stream<'s, u64, Vec<u64>>;

/// Reads `splits`; returns the rows and the ids of finished splits.
pub(super) fn read_splits<'s>(
    splits: Stream<'s, u64, Vec<Split>>,
    ctx: ReadContext,
) -> (Routed<'s>, Finished<'s>) {
    let scope = splits.scope();
    let mut builder = OperatorBuilder::new("ReadSplits".to_owned(), scope);
    let info = builder.operator_info();
    let mut input = builder.new_input(splits, Pipeline);
    let (rows_output, rows) = builder.new_output::<Vec<Addressed>>();
    let (finished_output, finished) = builder.new_output::<Vec<u64>>();
    let mut rows_output =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<Addressed>>>::from(rows_output);
    let mut finished_output =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<u64>>>::from(finished_output);
    let activator = scope.activator_for(info.address.clone());
    let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = sync_activator.activate();
    });

    builder.build(move |mut capabilities| {
        let mut finished_cap: Option<Capability<u64>> = capabilities.pop();
        let mut rows_cap: Option<Capability<u64>> = capabilities.pop();
        let mut queue: VecDeque<Split> = VecDeque::new();
        let mut reading: Option<Reading> = None;
        let mut in_flight = InFlight::default();
        let ctx = ctx;

        move |frontiers| {
            input.for_each(|_time, splits| queue.extend(splits.drain(..)));
            let (Some(rows_cap_ref), Some(finished_cap_ref)) =
                (rows_cap.as_mut(), finished_cap.as_mut())
            else {
                return;
            };

            let epoch = ctx.clock.now().max(*rows_cap_ref.time());
            rows_cap_ref.downgrade(&epoch);
            finished_cap_ref.downgrade(&epoch);

            if ctx.control.stopping() {
                // Stop reading: the split under way is not finished and will be read again.
                if let Some(r) = reading.take() {
                    r.task.abort();
                    ctx.status.read(r.split);
                }
                queue.clear();
            }

            in_flight.forget_durable(ctx.durable.with_frontier(|f| f.first().copied()));

            let mut more_ready = false;
            if let Some(r) = reading.as_mut() {
                // A batch still encoded is decoded by the worker that maps its rows.
                let mut emit = |batch: RowBatch, in_flight: &mut InFlight| {
                    let n = batch.len() as u64;
                    if n == 0 {
                        return Ok(());
                    }
                    let mut routed = ctx.router.route(batch, &ctx.dead_letters)?;
                    ctx.counters.rows_read.add(n);
                    in_flight.add(epoch, n);
                    rows_output
                        .activate()
                        .session(&*rows_cap_ref)
                        .give_container(&mut routed);
                    Ok::<_, SourceError>(())
                };
                let mut budget = BATCHES_PER_ACTIVATION;
                let mut emitted = Ok(());
                while emitted.is_ok()
                    && in_flight.rows < ctx.max_in_flight_rows
                    && !ctx.backlog.full()
                    && budget > 0
                {
                    match r.rows.try_recv() {
                        Ok(batch) => emitted = emit(batch, &mut in_flight),
                        Err(_) => break,
                    }
                    budget -= 1;
                }
                more_ready = budget == 0;
                let done = match emitted {
                    Ok(()) => r.done.try_recv(),
                    Err(e) => Ok(Err(e)),
                };
                match done {
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Ok(Ok(_rows)) => {
                        // The task sent its last rows before it finished: take them all now,
                        // so the split is marked finished no earlier than its last row.
                        while let Ok(batch) = r.rows.try_recv() {
                            if let Err(e) = emit(batch, &mut in_flight) {
                                r.task.abort();
                                ctx.control.fail(e.into());
                                return;
                            }
                        }
                        finished_output
                            .activate()
                            .session(&*finished_cap_ref)
                            .give(r.split);
                        reading = None;
                    }
                    Ok(Err(SourceError::Stopped)) => {
                        ctx.status.read(r.split);
                        reading = None;
                    }
                    Ok(Err(e)) => {
                        r.task.abort();
                        ctx.control.fail(e.into());
                        return;
                    }
                    Err(oneshot::error::TryRecvError::Closed) => {
                        ctx.control.fail(crate::error::Failure::fatal(format!(
                            "the task reading split {} ended without a result",
                            r.split
                        )));
                        return;
                    }
                }
            }

            // The next split starts only below the bound (and with room at the sink): a
            // split whose rows all fit in the task's channel finishes at once, and would
            // otherwise be followed by the next one whatever is in flight.
            if reading.is_none()
                && !ctx.control.stopping()
                && in_flight.rows < ctx.max_in_flight_rows
                && !ctx.backlog.full()
            {
                if let Some(split) = queue.pop_front() {
                    reading = Some(start(&ctx, split, wake.clone()));
                }
            }

            if reading.is_none()
                && queue.is_empty()
                && (frontiers[0].is_empty() || ctx.control.stopping())
            {
                // Nothing left to read: release the epochs so the job can drain.
                rows_cap = None;
                finished_cap = None;
            } else if more_ready {
                activator.activate();
            } else {
                // Tick the epoch clock and look at the frontier again.
                activator.activate_after(ctx.clock.tick);
            }
        }
    });
    (rows, finished)
}

/// Rows emitted per epoch and not yet known durable, oldest first.
#[derive(Default)]
pub(super) struct InFlight {
    epochs: VecDeque<(u64, u64)>,
    /// Rows in flight.
    pub rows: u64,
}

impl InFlight {
    /// `rows` more were emitted at `epoch`.
    pub fn add(&mut self, epoch: u64, rows: u64) {
        self.rows += rows;
        match self.epochs.back_mut() {
            Some((e, n)) if *e == epoch => *n += rows,
            _ => self.epochs.push_back((epoch, rows)),
        }
    }

    /// Drops the epochs before `frontier` (all of them when it is `None`).
    pub fn forget_durable(&mut self, frontier: Option<u64>) {
        while let Some(&(e, n)) = self.epochs.front() {
            if frontier.is_some_and(|f| e >= f) {
                break;
            }
            self.rows -= n;
            self.epochs.pop_front();
        }
    }
}

fn start(ctx: &ReadContext, split: Split, wake: Arc<dyn Fn() + Send + Sync>) -> Reading {
    let (tx, rows) = mpsc::channel(CHANNEL_BATCHES);
    let (done_tx, done) = oneshot::channel();
    let sender = RowSender::new(tx, wake.clone());
    let source = ctx.source.clone();
    let dead_letters = ctx.dead_letters.clone();
    let id = split.id;
    ctx.status.reading(id);
    let task = ctx.runtime.spawn(async move {
        let result = source.read(&split, &sender, &dead_letters).await;
        drop(sender);
        let _ = done_tx.send(result);
        wake();
    });
    Reading {
        split: id,
        rows,
        done,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::Router;
    use crate::connectors::memory::MemorySource;
    use crate::dead_letter::DeadLetters;
    use crate::job::Job;
    use crate::mapping::Mappings;
    use crate::model::{Row, Value};
    use crate::source::{ColumnKind, RowBatch, TableSchema};
    use std::path::Path;
    use std::sync::Arc;

    /// Sensor rows of devices d0..d23 (projection: device, ts, temp), three whose device is
    /// an integer, and one whose device is NULL.
    fn rows() -> Vec<Row> {
        let row = |device: Option<Value>, t: i64| Row {
            table: 0,
            values: vec![device, Some(Value::Time(t)), Some(Value::Float(1.5))],
        };
        let mut rows: Vec<Row> = (0..24)
            .map(|i| row(Some(Value::String(format!("d{i}").into())), i))
            .collect();
        rows.insert(7, row(None, 99));
        rows.push(row(Some(Value::Int(-7)), 100));
        rows.push(row(Some(Value::Int(42)), 101));
        rows.push(row(Some(Value::UInt(u64::MAX)), 102));
        rows
    }

    /// Every row reaches the worker that writes its point: the one the points' exchange
    /// sends the point to (its device hash modulo the workers), whether the batch is
    /// decoded or encoded; a row without a device is addressed to no worker (it is mapped
    /// where it was read); rows keep their order; and a part for a worker of another
    /// process leaves decoded.
    #[test]
    fn a_batch_is_split_to_the_workers_that_write_its_points() {
        let text = "name: t\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: r\nsink:\n  type: blackhole\nmappings:\n  - table: r\n    measurement: m\n    device_field: device\n    timestamp_field: ts\n    fields: [temp]\n";
        let job = Job::parse(Path::new("job.yaml"), text, |_| None).unwrap();
        let schema = TableSchema::of(
            "r",
            [
                ("device", ColumnKind::Text),
                ("ts", ColumnKind::Time),
                ("temp", ColumnKind::Float),
            ],
        );
        let mappings = Arc::new(Mappings::compile(&job, &[schema]).unwrap());
        let dir = std::env::temp_dir().join(format!("tsmig-router-{}", std::process::id()));
        let dead_letters = DeadLetters::new("t", &dir.join("dl.jsonl"));
        let owner_of = |row: &Row| {
            let mut points = Vec::new();
            mappings.apply(row.clone(), &mut |p| points.push(p), &mut |_| {});
            points.first().map(|p| p.device_hash % 3)
        };
        for (local, encoded) in [(0..3, false), (0..3, true), (0..2, true)] {
            let router = Router {
                mappings: mappings.clone(),
                peers: 3,
                here: 1,
                local: local.clone(),
            };
            let batch = match encoded {
                true => RowBatch::Encoded(MemorySource::encoded(0, rows())),
                false => RowBatch::Rows(rows()),
            };
            let routed = router.route(batch, &dead_letters).unwrap();
            let time = |r: &Row| match r.values[1] {
                Some(Value::Time(t)) => t,
                _ => unreachable!(),
            };
            // Where each row stood in the batch (times are distinct).
            let at: Vec<i64> = rows().iter().map(time).collect();
            let position = |r: &Row| at.iter().position(|&t| t == time(r)).unwrap();
            let mut seen = Vec::new();
            for (to, batch) in routed {
                let remote = to.is_some_and(|to| !local.contains(&(to as usize)));
                let is_encoded = matches!(batch, RowBatch::Encoded(_));
                assert_eq!(
                    is_encoded,
                    encoded && !remote,
                    "worker {to:?}, local {local:?}"
                );
                let part = batch.into_rows(&dead_letters).unwrap();
                for row in &part {
                    assert_eq!(owner_of(row), to, "row {row:?}");
                }
                // In the batch's order.
                let positions: Vec<usize> = part.iter().map(position).collect();
                assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
                seen.extend(positions);
            }
            // Every row once.
            seen.sort_unstable();
            assert_eq!(seen, (0..at.len()).collect::<Vec<_>>());
        }
        // One worker: the batch as it is.
        let alone = Router {
            mappings,
            peers: 1,
            here: 0,
            local: 0..1,
        };
        let routed = alone.route(RowBatch::Rows(rows()), &dead_letters).unwrap();
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].0, Some(0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
