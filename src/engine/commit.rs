//! The commit operator: the checkpoint barrier. It lives on every worker but only worker 0
//! receives anything (what finished is exchanged to it) and owns the state store.
//!
//! ```text
//!  what finished, at its epoch (exchanged to worker 0) ──▶ ┌────────┐
//!  sink acknowledgements (frontier only)                ──▶ │ commit │ ──▶ state store
//!                                                           └────────┘
//! ```
//!
//! What finished is a backfill's split ids (a split read its last row in that epoch) or a
//! change log's positions (the transactions before it were read in that epoch). It holds
//! no capability. Both inputs' frontiers tell it which epochs are durable everywhere; the
//! [`Ledger`] turns that into finished items, a [`Checkpoint`] records them in its state,
//! and the state is written at most once per `checkpoint.interval`, and once more when the
//! dataflow has drained.

use super::follow::Reached;
use super::Control;
use crate::checkpoint::store::FileStore;
use crate::checkpoint::{BackfillState, CdcState, Ledger};
use crate::metrics::Counters;
use crate::source::LogPosition;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;
use timely::ExchangeData;

/// What worker 0 keeps and writes: the state that durable items advance.
pub(super) trait Checkpoint<T>: 'static {
    /// Records items whose epochs are durable everywhere, in epoch order; true when the
    /// state changed and must be written.
    fn durable(&mut self, items: Vec<T>) -> bool;
    /// The oldest item read and not yet durable, if any (for lag metrics).
    fn waiting(&mut self, oldest: Option<&T>) {
        let _ = oldest;
    }
    /// Writes the state.
    fn save(&mut self) -> Result<(), String>;
}

/// Records what `finished` carries once its epoch is durable; `checkpoint` is `Some` on
/// worker 0 only. A state that cannot be written fails the job.
pub(super) fn commit<'s, T: ExchangeData>(
    finished: Stream<'s, u64, Vec<T>>,
    acks: Stream<'s, u64, Vec<super::sink::Refusal>>,
    checkpoint: Option<Box<dyn Checkpoint<T>>>,
    interval: Duration,
    control: Control,
) {
    let scope = finished.scope();
    let _: Stream<'s, u64, Vec<()>> = finished.binary_frontier(
        acks,
        Exchange::new(|_: &T| 0),
        Pipeline,
        "Commit",
        move |_capability, info| {
            let activator = scope.activator_for(info.address.clone());
            let mut checkpoint = checkpoint;
            let mut ledger: Ledger<T> = Ledger::default();
            let mut dirty = false;
            let mut last_save = Instant::now();
            move |(finished, finished_frontier),
                  (acks, acks_frontier),
                  _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
                finished.for_each(|time, items| {
                    for item in items.drain(..) {
                        ledger.record(*time.time(), item);
                    }
                });
                acks.for_each(|_, _| {});
                let Some(c) = checkpoint.as_mut() else { return };

                let oldest_open = [
                    finished_frontier.frontier().first(),
                    acks_frontier.frontier().first(),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied();
                let durable = ledger.take_durable(oldest_open);
                if !durable.is_empty() {
                    dirty |= c.durable(durable);
                }
                c.waiting(ledger.oldest());
                let drained = oldest_open.is_none();
                // While a stop drains, every durable step is recorded: a second signal may
                // end the job at any moment.
                if dirty && (drained || control.stopping() || last_save.elapsed() >= interval) {
                    if let Err(e) = c.save() {
                        control.fail(crate::error::Failure::fatal(e));
                        return;
                    }
                    dirty = false;
                    last_save = Instant::now();
                } else if dirty {
                    activator.activate_after(interval.saturating_sub(last_save.elapsed()));
                }
            }
        },
    );
}

/// A backfill's checkpoint: its plan and finished splits.
pub(super) struct Splits {
    pub state: BackfillState,
    pub store: FileStore,
    pub counters: Arc<Counters>,
    /// Shows finished splits and checkpoints.
    pub status: crate::status::StatusBoard,
}

impl Checkpoint<u64> for Splits {
    fn durable(&mut self, ids: Vec<u64>) -> bool {
        self.counters.splits_done.add(ids.len() as u64);
        self.status.finished(&ids);
        self.state.finish(ids);
        true
    }

    fn save(&mut self) -> Result<(), String> {
        self.store.save_backfill(&self.state)?;
        let total = self.state.plan.len();
        let done: u64 = self.state.finished.iter().map(|(lo, hi)| hi - lo + 1).sum();
        self.status
            .checkpointed(format!("{done} of {total} splits finished"));
        Ok(())
    }
}

/// Where a CDC job stands, for the lag metrics.
#[derive(Debug, Clone, Default)]
pub struct CdcProgress {
    /// The last durable position.
    pub committed: Option<LogPosition>,
    /// Server time (Unix seconds) of the last transaction before it; 0 if unknown.
    pub committed_at: u32,
    /// Server time (Unix seconds) of the oldest transaction read and not yet durable.
    pub oldest_pending: Option<u32>,
}

/// A CDC job's checkpoint: the change-log position to resume from.
pub(super) struct Positions {
    pub state: CdcState,
    pub store: FileStore,
    pub counters: Arc<Counters>,
    /// Shared with the lag monitor: the committed position and the oldest pending commit.
    pub progress: Arc<Mutex<CdcProgress>>,
    /// Shows checkpoints.
    pub status: crate::status::StatusBoard,
}

impl Checkpoint<Reached> for Positions {
    fn durable(&mut self, reached: Vec<Reached>) -> bool {
        match reached.into_iter().last() {
            Some(last) if last.position != self.state.position => {
                self.state.position = last.position;
                self.state.committed_at = last.timestamp;
                true
            }
            _ => false,
        }
    }

    fn waiting(&mut self, oldest: Option<&Reached>) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        progress.committed = Some(self.state.position.clone());
        progress.committed_at = self.state.committed_at;
        progress.oldest_pending = oldest.map(|r| r.timestamp);
    }

    fn save(&mut self) -> Result<(), String> {
        self.store.save_cdc(&self.state)?;
        self.counters.checkpoints.add(1);
        self.status.checkpointed(self.state.position.to_string());
        tracing::debug!(position = %self.state.position, "checkpoint");
        Ok(())
    }
}
