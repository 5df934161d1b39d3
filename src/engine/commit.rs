//! The commit operator: the checkpoint barrier. It lives on every worker but only worker 0
//! receives anything (finished split ids are exchanged to it) and owns the state store.
//!
//! ```text
//!  finished split ids (exchanged to worker 0) ──▶ ┌────────┐
//!  sink acknowledgements (frontier only)     ──▶ │ commit │ ──▶ state store
//!                                                 └────────┘
//! ```
//!
//! It holds no capability. Both inputs' frontiers tell it which epochs are durable
//! everywhere; the [`Ledger`] turns that into finished splits, and the state is written at
//! most once per `checkpoint.interval`, and once more when the dataflow has drained.

use super::follow::Reached;
use super::Control;
use crate::checkpoint::store::FileStore;
use crate::checkpoint::{BackfillState, CdcState, Ledger};
use crate::metrics::Counters;
use crate::sources::LogPosition;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

/// The state worker 0 keeps and writes.
pub(super) struct Committer {
    pub state: BackfillState,
    pub store: FileStore,
    pub interval: Duration,
    pub counters: Arc<Counters>,
    pub control: Control,
}

/// Records finished splits once durable; `committer` is `Some` on worker 0 only.
pub(super) fn commit<'s>(
    finished: Stream<'s, u64, Vec<u64>>,
    acks: Stream<'s, u64, Vec<()>>,
    committer: Option<Committer>,
) {
    let scope = finished.scope();
    let _: Stream<'s, u64, Vec<()>> = finished.binary_frontier(
        acks,
        Exchange::new(|_: &u64| 0),
        Pipeline,
        "Commit",
        move |_capability, info| {
            let activator = scope.activator_for(info.address.clone());
            let mut committer = committer;
            let mut ledger = Ledger::default();
            let mut dirty = false;
            let mut last_save = Instant::now();
            move |(finished, finished_frontier),
                      (acks, acks_frontier),
                      _output: &mut OutputBuilderSession<
                    '_,
                    u64,
                    CapacityContainerBuilder<Vec<()>>,
                >| {
                    finished.for_each(|time, ids| {
                        for id in ids.drain(..) {
                            ledger.record(*time.time(), id);
                        }
                    });
                    acks.for_each(|_, _| {});
                    let Some(c) = committer.as_mut() else { return };

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
                        Counters::add(&c.counters.splits_done, durable.len() as u64);
                        c.state.finish(durable);
                        dirty = true;
                    }
                    let drained = oldest_open.is_none();
                    if dirty && (drained || last_save.elapsed() >= c.interval) {
                        if let Err(e) = c.store.save_backfill(&c.state) {
                            c.control.fail(e);
                            return;
                        }
                        dirty = false;
                        last_save = Instant::now();
                    } else if dirty {
                        activator.activate_after(c.interval.saturating_sub(last_save.elapsed()));
                    }
                }
        },
    );
}

/// What worker 0 of a CDC job keeps and writes.
pub(super) struct PositionCommitter {
    pub state: CdcState,
    pub store: FileStore,
    pub interval: Duration,
    pub counters: Arc<Counters>,
    pub control: Control,
    /// Shared with the lag monitor: the committed position and the oldest pending commit.
    pub progress: Arc<Mutex<CdcProgress>>,
}

/// Where a CDC job stands, for the lag metrics.
#[derive(Debug, Clone, Default)]
pub struct CdcProgress {
    /// The last durable position.
    pub committed: Option<LogPosition>,
    /// Server time (Unix seconds) of the oldest transaction read and not yet durable.
    pub oldest_pending: Option<u32>,
}

/// Records change-log positions once their epochs are durable; `committer` is `Some` on
/// worker 0 only. Like [`commit`], it holds no capability and writes at most once per
/// interval, and once more when the dataflow has drained.
pub(super) fn commit_positions<'s>(
    positions: Stream<'s, u64, Vec<Reached>>,
    acks: Stream<'s, u64, Vec<()>>,
    committer: Option<PositionCommitter>,
) {
    let scope = positions.scope();
    let _: Stream<'s, u64, Vec<()>> = positions.binary_frontier(
        acks,
        Exchange::new(|_: &Reached| 0),
        Pipeline,
        "CommitPositions",
        move |_capability, info| {
            let activator = scope.activator_for(info.address.clone());
            let mut committer = committer;
            let mut ledger: Ledger<Reached> = Ledger::default();
            let mut dirty = false;
            let mut last_save = Instant::now();
            move |(positions, positions_frontier),
                  (acks, acks_frontier),
                  _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
                positions.for_each(|time, reached| {
                    for r in reached.drain(..) {
                        ledger.record(*time.time(), r);
                    }
                });
                acks.for_each(|_, _| {});
                let Some(c) = committer.as_mut() else { return };
                let oldest_open = [
                    positions_frontier.frontier().first(),
                    acks_frontier.frontier().first(),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied();
                if let Some(last) = ledger.take_durable(oldest_open).into_iter().last() {
                    if last.position != c.state.position {
                        c.state.position = last.position;
                        c.state.committed_at = last.timestamp;
                        dirty = true;
                    }
                }
                {
                    let mut progress = c.progress.lock().unwrap_or_else(|p| p.into_inner());
                    progress.committed = Some(c.state.position.clone());
                    progress.oldest_pending = ledger.oldest().map(|r| r.timestamp);
                }
                let drained = oldest_open.is_none();
                if dirty && (drained || last_save.elapsed() >= c.interval) {
                    if let Err(e) = c.store.save_cdc(&c.state) {
                        c.control.fail(e);
                        return;
                    }
                    Counters::add(&c.counters.checkpoints, 1);
                    tracing::debug!(position = %c.state.position, "checkpoint");
                    dirty = false;
                    last_save = Instant::now();
                } else if dirty {
                    activator.activate_after(c.interval.saturating_sub(last_save.elapsed()));
                }
            }
        },
    );
}
