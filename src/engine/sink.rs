//! The sink operator: batches points and writes them asynchronously, holding each epoch
//! open until every write carrying its points is acknowledged.
//!
//! ```text
//!  points ──▶ [ open batch ] ──full / linger / epoch closed──▶ [ queued ] ──▶ tokio: deliver()
//!                                                                  ▲               │
//!                                                         ack ─────┴───────────────┘
//! ```
//!
//! Capability: one, at the oldest epoch that still has points in the open batch, in a
//! queued batch or in a write not yet acknowledged; none when nothing is pending. Its
//! output carries no data: only this capability, which is what the probe after the sinks
//! (and the commit operator) see. A batch is sent when it is full (rows or bytes), when
//! its oldest point has lingered long enough, as soon as the input has moved past every
//! epoch in it — so an epoch never waits on a batch that nothing will fill — or at once
//! when no request is out at all: batching pays only while the target is busy, and an
//! idle target gets the first rows without delay.

use super::Control;
use crate::dead_letter::DeadLetters;
use crate::metrics::Counters;
use crate::model::Point;
use crate::sinks::util::{deliver, Delivery};
use crate::sinks::{Batch, Sink};
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

/// A batch and the epochs of its points.
struct Pending<B> {
    batch: B,
    epochs: Vec<u64>,
}

/// Writes `points` to `sink`; the returned stream's frontier is the oldest epoch not yet
/// durable at this sink.
pub(super) fn write<'s, S: Sink>(
    points: Stream<'s, u64, Vec<Point>>,
    sink: Arc<S>,
    runtime: tokio::runtime::Handle,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
    control: Control,
) -> Stream<'s, u64, Vec<()>> {
    let scope = points.scope();
    points.unary_frontier(Pipeline, "WriteSink", move |_initial, info| {
        let activator = scope.activator_for(info.address.clone());
        let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
        let config = sink.batching().clone();
        type Ack<B> = (Vec<u64>, Result<(Delivery, Option<B>), String>);
        let (acks_tx, acks) = mpsc::channel::<Ack<S::Batch>>();
        // Emptied batches back from delivered writes, to be filled again.
        let mut spare: Vec<S::Batch> = Vec::new();
        let mut capability: Option<Capability<u64>> = None;
        let mut open: Option<(Pending<S::Batch>, Instant)> = None;
        let mut queued: VecDeque<Pending<S::Batch>> = VecDeque::new();
        let mut in_flight = 0usize;
        // Epoch → batches (open, queued or in flight) holding points of it.
        let mut pending: BTreeMap<u64, usize> = BTreeMap::new();

        move |(input, frontier), _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
            input.for_each_time(|time, batches| {
                let epoch = *time.time();
                if capability.as_ref().is_none_or(|c| epoch < *c.time()) {
                    capability = Some(time.retain(0));
                }
                for points in batches {
                    for point in points.drain(..) {
                        let (current, _) = open.get_or_insert_with(|| {
                            let batch = spare.pop().unwrap_or_else(|| sink.new_batch());
                            (Pending { batch, epochs: Vec::new() }, Instant::now())
                        });
                        if current.epochs.last() != Some(&epoch) && !current.epochs.contains(&epoch) {
                            current.epochs.push(epoch);
                            *pending.entry(epoch).or_default() += 1;
                        }
                        if let Err(reason) = current.batch.push(&point) {
                            dead_letters.record("sink", &reason, point.to_json());
                        }
                        if current.batch.len() >= config.batch_size || current.batch.bytes() >= config.batch_bytes {
                            let (full, _) = open.take().expect("a batch is open");
                            queued.push_back(full);
                        }
                    }
                }
            });

            // Acknowledged writes release their epochs.
            while let Ok((epochs, result)) = acks.try_recv() {
                in_flight -= 1;
                match result {
                    Err(message) => control.fail(format!("writing to the sink failed: {message}")),
                    Ok((_, Some(batch))) if spare.len() < config.in_flight + 1 => spare.push(batch),
                    Ok(_) => {}
                }
                release(&mut pending, &epochs);
            }

            // Send the open batch when it is due.
            if let Some((current, since)) = &open {
                let epochs_closed = current.epochs.iter().all(|e| !frontier.less_equal(e));
                // An idle sink sends at once: batching only pays while a request is out.
                let idle = in_flight == 0 && queued.is_empty();
                if current.batch.is_empty() {
                    let (empty, _) = open.take().expect("a batch is open");
                    release(&mut pending, &empty.epochs);
                } else if idle || epochs_closed || since.elapsed() >= config.linger {
                    let (due, _) = open.take().expect("a batch is open");
                    queued.push_back(due);
                } else {
                    activator.activate_after(config.linger.saturating_sub(since.elapsed()));
                }
            }

            while in_flight < config.in_flight {
                let Some(next) = queued.pop_front() else { break };
                in_flight += 1;
                let sink = sink.clone();
                let acks = acks_tx.clone();
                let wake = sync_activator.clone();
                let dead_letters = dead_letters.clone();
                let counters = counters.clone();
                runtime.spawn(async move {
                    let result = deliver(&*sink, next.batch, &dead_letters, &counters).await;
                    let _ = acks.send((next.epochs, result));
                    let _ = wake.activate();
                });
            }

            // Hold the oldest pending epoch, nothing more.
            match pending.keys().next() {
                None => capability = None,
                Some(oldest) => {
                    if let Some(c) = capability.as_mut() {
                        if c.time() < oldest {
                            c.downgrade(oldest);
                        }
                    }
                }
            }
        }
    })
}

fn release(pending: &mut BTreeMap<u64, usize>, epochs: &[u64]) {
    for e in epochs {
        if let Some(n) = pending.get_mut(e) {
            *n -= 1;
            if *n == 0 {
                pending.remove(e);
            }
        }
    }
}
