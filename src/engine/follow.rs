//! The follow operator: the change-log reader of a CDC job, on worker 0.
//!
//! ```text
//!  tokio task: source.follow(from) ──ChangeEvent──▶ [ follow ] ──▶ row changes (current epoch)
//!                                                        │
//!                                                        └──────▶ positions (epoch they close)
//! ```
//!
//! Capabilities: one per output, at the current epoch, on worker 0 only (other workers drop
//! theirs at once). The epoch advances with the clock, but only at a transaction boundary:
//! an epoch holds whole transactions, so consolidating an epoch never sees half of one.
//! (A transaction larger than half the in-flight bound may span epochs; it is then written
//! in parts, and its position is still recorded only after its last part.) Before it
//! advances, the operator emits on the second output the position after the last whole
//! transaction, at the epoch being closed: once that epoch is durable everywhere, a restart
//! may resume from that position. Heartbeats of an idle server advance the position too.
//!
//! Backpressure: as in the backfill reader, rows emitted at epochs the probe after the
//! sinks has not passed are in flight; past the bound the operator stops draining the
//! reader's bounded channel, so the reader (and the server's binlog dump) wait — except
//! inside a transaction, which is read on to its end or to half the bound, so the epoch
//! holding it can close (at most 1.5 × the bound in flight).
//!
//! `until_caught_up`: the first heartbeat (the server has nothing newer) ends the read: the
//! last position is emitted and the capabilities dropped, so the job drains, checkpoints
//! and exits. A reader that fails ends the read the same way, and the job then exits with
//! its error.

use super::read::InFlight;
use super::{Control, EpochClock};
use crate::dead_letter::DeadLetters;
use crate::metrics::Counters;
use crate::source::{ChangeEvent, ChangeSender, ChangeSource, LogPosition, RowChange, SourceError};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};
use tokio::sync::mpsc;

/// Change batches buffered between the reader task and the operator.
const CHANNEL_BATCHES: usize = 16;
/// Messages taken per activation before yielding to other operators.
const MESSAGES_PER_ACTIVATION: usize = 64;

/// A durable-when-its-epoch-is position and the commit time of the transaction before it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(super) struct Reached {
    pub position: LogPosition,
    /// Server time (Unix seconds) of the last transaction before `position`; 0 if unknown.
    pub timestamp: u32,
}

/// What the follow operator needs.
pub(super) struct FollowContext {
    pub source: Arc<dyn ChangeSource>,
    pub from: LogPosition,
    pub runtime: tokio::runtime::Handle,
    pub dead_letters: DeadLetters,
    pub counters: Arc<Counters>,
    pub control: Control,
    pub clock: EpochClock,
    pub max_in_flight_rows: u64,
    pub durable: ProbeHandle<u64>,
    pub until_caught_up: bool,
}

/// The reader task's channel and handle.
type Reader = (
    mpsc::Receiver<ChangeEvent>,
    tokio::task::JoinHandle<Result<(), SourceError>>,
);

type Changes<'s> = Stream<'s, u64, Vec<RowChange>>;
type Positions<'s> = Stream<'s, u64, Vec<Reached>>;

/// Follows the change log on worker 0 of process 0; returns the row changes and the
/// positions reached.
pub(super) fn follow<'s>(
    scope: Scope<'s, u64>,
    ctx: FollowContext,
) -> (Changes<'s>, Positions<'s>) {
    let reader = scope.index() == 0;
    let mut builder = OperatorBuilder::new("FollowLog".to_owned(), scope);
    let info = builder.operator_info();
    let (changes_output, changes) = builder.new_output::<Vec<RowChange>>();
    let (positions_output, positions) = builder.new_output::<Vec<Reached>>();
    let mut changes_output =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<RowChange>>>::from(changes_output);
    let mut positions_output =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<Reached>>>::from(positions_output);
    let activator = scope.activator_for(info.address.clone());
    let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());

    builder.build(move |mut capabilities| {
        let mut positions_cap: Option<Capability<u64>> = capabilities.pop();
        let mut changes_cap: Option<Capability<u64>> = capabilities.pop();
        let mut task: Option<Reader> = None;
        if reader {
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let _ = sync_activator.activate();
            });
            let sender = ChangeSender::new(tx, wake.clone());
            let source = ctx.source.clone();
            let from = ctx.from.clone();
            let dead_letters = ctx.dead_letters.clone();
            let handle = ctx.runtime.spawn(async move {
                let result = source.follow(from, &sender, &dead_letters).await;
                drop(sender);
                wake();
                result
            });
            task = Some((rx, handle));
        } else {
            positions_cap = None;
            changes_cap = None;
        }
        let mut in_flight = InFlight::default();
        let mut closer = EpochCloser::new(ctx.max_in_flight_rows);
        let ctx = ctx;

        move |_frontiers| {
            let (Some(changes_cap_ref), Some(positions_cap_ref)) =
                (changes_cap.as_mut(), positions_cap.as_mut())
            else {
                return;
            };
            let Some((rx, handle)) = task.as_mut() else {
                return;
            };
            let epoch = *changes_cap_ref.time();
            in_flight.forget_durable(ctx.durable.with_frontier(|f| f.first().copied()));

            let mut budget = MESSAGES_PER_ACTIVATION;
            let mut ended = false;
            while closer.may_read(in_flight.rows) && budget > 0 {
                budget -= 1;
                match rx.try_recv() {
                    Ok(ChangeEvent::Rows(mut rows)) => {
                        let n = rows.len() as u64;
                        ctx.counters.changes_read.add(n);
                        in_flight.add(epoch, n);
                        closer.rows(n);
                        changes_output
                            .activate()
                            .session(&*changes_cap_ref)
                            .give_container(&mut rows);
                    }
                    Ok(ChangeEvent::Commit {
                        position,
                        timestamp,
                    }) => {
                        ctx.counters.transactions_read.add(1);
                        closer.commit(position, timestamp);
                    }
                    Ok(ChangeEvent::Idle { position }) => {
                        let cutover = ctx.until_caught_up || ctx.control.cutover_requested();
                        if closer.idle(position, cutover) {
                            tracing::info!(
                                "caught up with the server's binlog: stopping (--until-caught-up)"
                            );
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                // The reader stopped: a failure (the job fails) or a requested stop. Its
                // result follows the channel's close at once.
                let result = ctx.runtime.block_on(&mut *handle).unwrap_or_else(|e| {
                    Err(SourceError::Fatal(format!(
                        "the binlog reader panicked: {e}"
                    )))
                });
                if let Err(message) = result {
                    if !ctx.control.stopping() {
                        // What was read before the failure is still written and its
                        // position recorded: a reader stopped by a schema change leaves
                        // the checkpoint right before it.
                        ctx.control.fail_after_drain(message.into());
                    }
                }
            }
            let stop = ended || closer.caught_up() || ctx.control.stopping();
            let tick = ctx.clock.now();
            if stop || (tick > epoch && closer.may_close()) {
                if let Some(reached) = closer.take_position() {
                    positions_output
                        .activate()
                        .session(&*positions_cap_ref)
                        .give(reached);
                }
                if stop {
                    if let Some((_, handle)) = task.take() {
                        handle.abort();
                    }
                    changes_cap = None;
                    positions_cap = None;
                    return;
                }
                let next = tick.max(epoch + 1);
                changes_cap_ref.downgrade(&next);
                positions_cap_ref.downgrade(&next);
            }
            if budget == 0 {
                activator.activate();
            } else {
                activator.activate_after(ctx.clock.tick);
            }
        }
    });
    (changes, positions)
}

/// When the follow operator may read on and close an epoch, and which position a closed
/// epoch makes durable: the transaction boundaries it has seen, and the rows since the
/// last one.
#[derive(Debug)]
struct EpochCloser {
    max_in_flight_rows: u64,
    /// The last boundary seen, and whether it was emitted already.
    latest: Option<Reached>,
    emitted: bool,
    /// Rows read since the last boundary (of the transaction under way).
    open_rows: u64,
    /// Commit time of the last transaction read.
    last_timestamp: u32,
    caught_up: bool,
}

impl EpochCloser {
    fn new(max_in_flight_rows: u64) -> Self {
        Self {
            max_in_flight_rows,
            latest: None,
            emitted: true,
            open_rows: 0,
            last_timestamp: 0,
            caught_up: false,
        }
    }

    /// Whether to take another message from the reader, with `in_flight` rows not yet
    /// durable. Past the bound, a transaction already begun is still read until its
    /// boundary (or half the bound, where an epoch may close mid-transaction): stopping
    /// inside it would leave an epoch that can never close, and nothing would become
    /// durable again. (At most 1.5 × the bound is then in flight.)
    fn may_read(&self, in_flight: u64) -> bool {
        let max = self.max_in_flight_rows;
        !self.caught_up && (in_flight < max || (self.open_rows > 0 && self.open_rows < max / 2))
    }

    /// `n` rows of the transaction under way were read.
    fn rows(&mut self, n: u64) {
        self.open_rows += n;
    }

    /// A transaction ended; the next one starts at `position`.
    fn commit(&mut self, position: LogPosition, timestamp: u32) {
        self.open_rows = 0;
        self.last_timestamp = timestamp;
        self.latest = Some(Reached {
            position,
            timestamp,
        });
        self.emitted = false;
    }

    /// The server has nothing newer than `position`. Returns true when that ends the read
    /// (`until_caught_up`: the job stops once caught up, and no transaction is under way).
    fn idle(&mut self, position: LogPosition, until_caught_up: bool) -> bool {
        if self.open_rows > 0 {
            return false;
        }
        if self.latest.as_ref().is_none_or(|l| l.position != position) {
            self.latest = Some(Reached {
                position,
                timestamp: self.last_timestamp,
            });
            self.emitted = false;
        }
        self.caught_up = until_caught_up;
        self.caught_up
    }

    fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether the epoch may close: at a transaction boundary, or mid-transaction once the
    /// open transaction is half the in-flight bound (`may_read` reads that far past the
    /// bound, so an epoch can always close and its rows become durable).
    fn may_close(&self) -> bool {
        self.open_rows == 0 || self.open_rows >= self.max_in_flight_rows / 2
    }

    /// The position the closing epoch makes durable, once: the last boundary, before which
    /// every row has been emitted.
    fn take_position(&mut self) -> Option<Reached> {
        if self.emitted {
            return None;
        }
        self.emitted = true;
        self.latest.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> LogPosition {
        LogPosition {
            file: "bin.1".into(),
            offset,
        }
    }

    #[test]
    fn an_epoch_closes_at_transaction_boundaries_with_the_last_one_as_its_position() {
        let mut c = EpochCloser::new(100);
        assert!(c.may_close());
        assert_eq!(c.take_position(), None, "nothing read yet");
        c.rows(3);
        assert!(!c.may_close(), "inside a transaction");
        c.commit(at(10), 7);
        c.rows(2);
        c.commit(at(20), 8);
        assert!(c.may_close());
        let reached = c.take_position().unwrap();
        assert_eq!((reached.position, reached.timestamp), (at(20), 8));
        assert_eq!(c.take_position(), None, "emitted once");
    }

    #[test]
    fn past_the_bound_a_begun_transaction_is_read_to_half_the_bound_and_then_may_close() {
        let mut c = EpochCloser::new(100);
        assert!(c.may_read(99));
        assert!(!c.may_read(100), "at the bound, between transactions: wait");
        c.rows(10);
        assert!(c.may_read(150), "inside a transaction: read on");
        assert!(!c.may_close());
        c.rows(40);
        assert!(!c.may_read(150), "half the bound: stop reading");
        assert!(c.may_close(), "and let the epoch close mid-transaction");
        assert_eq!(c.take_position(), None, "no boundary to record yet");
    }

    #[test]
    fn a_heartbeat_moves_the_position_and_ends_the_read_when_caught_up_is_asked() {
        let mut c = EpochCloser::new(100);
        c.rows(1);
        assert!(!c.idle(at(5), true), "never inside a transaction");
        c.commit(at(5), 1);
        assert!(c.idle(at(9), true));
        assert!(c.caught_up() && !c.may_read(0));
        assert_eq!(c.take_position().unwrap().position, at(9));
        let mut following = EpochCloser::new(100);
        assert!(
            !following.idle(at(9), false),
            "no --until-caught-up: keep following"
        );
        assert_eq!(following.take_position().unwrap().position, at(9));
    }
}
