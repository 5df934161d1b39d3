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
//!
//! CDC (`ordered`): the input is [`Change`]s, writes and deletes, and the same point may
//! change in several epochs. A batch's deletes are sent before its writes, so a batch never
//! holds a point twice: a change to a point already in the open batch closes it first. And
//! a batch waits while an earlier batch with any of its points is still in flight, so the
//! target applies each point's changes in the order they happened, with several requests
//! in flight for different points.

use super::Services;
use crate::model::{Change, IntoChange, Point};
use crate::sinks::util::{deliver, deliver_deletes, Delivery};
use crate::sinks::{Batch, Sink};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

/// A batch, the deletes sent before it, and the epochs of its changes.
struct Pending<B> {
    batch: B,
    deletes: Vec<Point>,
    epochs: Vec<u64>,
    /// Key hashes of its points (ordered mode only).
    keys: Vec<u64>,
}

impl<B: Batch> Pending<B> {
    fn len(&self) -> usize {
        self.batch.len() + self.deletes.len()
    }
}

/// Writes `points` (points or changes) to `sink`; the returned stream's frontier is the
/// oldest epoch not yet durable at this sink. `ordered` keeps each point's changes in order
/// (CDC, ingest); a backfill writes each point once and needs no such care.
pub(super) fn write<'s, S: Sink, D: IntoChange + Clone + 'static>(
    points: Stream<'s, u64, Vec<D>>,
    sink: Arc<S>,
    services: &Services,
    ordered: bool,
) -> Stream<'s, u64, Vec<()>> {
    let Services {
        runtime,
        dead_letters,
        counters,
        control,
    } = services.clone();
    let scope = points.scope();
    points.unary_frontier(Pipeline, "WriteSink", move |_initial, info| {
        let activator = scope.activator_for(info.address.clone());
        let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
        let config = sink.batching().clone();
        type Ack<B> = (Vec<u64>, Vec<u64>, Result<(Delivery, Option<B>), String>);
        let (acks_tx, acks) = mpsc::channel::<Ack<S::Batch>>();
        // Emptied batches back from delivered writes, to be filled again.
        let mut spare: Vec<S::Batch> = Vec::new();
        let mut capability: Option<Capability<u64>> = None;
        let mut open: Option<(Pending<S::Batch>, Instant)> = None;
        let mut queued: VecDeque<Pending<S::Batch>> = VecDeque::new();
        let mut in_flight = 0usize;
        // Epoch → batches (open, queued or in flight) holding points of it.
        let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
        // Ordered mode: keys in the open batch, and keys of batches in flight.
        let mut open_keys: HashSet<u64> = HashSet::new();
        let mut flying_keys: HashMap<u64, u32> = HashMap::new();

        move |(input, frontier), _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
            input.for_each_time(|time, batches| {
                let epoch = *time.time();
                if capability.as_ref().is_none_or(|c| epoch < *c.time()) {
                    capability = Some(time.retain(0));
                }
                for points in batches {
                    for item in points.drain(..) {
                        let change = item.into_change();
                        let key = if ordered { change.point().key_hash() } else { 0 };
                        if ordered && open_keys.contains(&key) {
                            // The point changes again: its earlier change goes first.
                            if let Some((full, _)) = open.take() {
                                queued.push_back(full);
                            }
                            open_keys.clear();
                        }
                        let (current, _) = open.get_or_insert_with(|| {
                            let batch = spare.pop().unwrap_or_else(|| sink.new_batch());
                            (Pending { batch, deletes: Vec::new(), epochs: Vec::new(), keys: Vec::new() }, Instant::now())
                        });
                        if current.epochs.last() != Some(&epoch) && !current.epochs.contains(&epoch) {
                            current.epochs.push(epoch);
                            *pending.entry(epoch).or_default() += 1;
                        }
                        if ordered {
                            open_keys.insert(key);
                            current.keys.push(key);
                        }
                        match change {
                            Change::Write(point) => {
                                if let Err(reason) = current.batch.push(&point) {
                                    dead_letters.record("sink", &reason, point.to_json());
                                }
                            }
                            Change::Delete(point) => current.deletes.push(point),
                        }
                        if current.len() >= config.batch_size || current.batch.bytes() >= config.batch_bytes {
                            let (full, _) = open.take().expect("a batch is open");
                            queued.push_back(full);
                            open_keys.clear();
                        }
                    }
                }
            });

            // Acknowledged writes release their epochs.
            while let Ok((epochs, keys, result)) = acks.try_recv() {
                in_flight -= 1;
                for key in keys {
                    if let Some(n) = flying_keys.get_mut(&key) {
                        *n -= 1;
                        if *n == 0 {
                            flying_keys.remove(&key);
                        }
                    }
                }
                match result {
                    Err(message) => {
                        control.fail(format!("writing to the sink failed: {message}"));
                        return;
                    }
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
                if current.len() == 0 {
                    let (empty, _) = open.take().expect("a batch is open");
                    release(&mut pending, &empty.epochs);
                    open_keys.clear();
                } else if idle || epochs_closed || since.elapsed() >= config.linger {
                    let (due, _) = open.take().expect("a batch is open");
                    queued.push_back(due);
                    open_keys.clear();
                } else {
                    activator.activate_after(config.linger.saturating_sub(since.elapsed()));
                }
            }

            while in_flight < config.in_flight {
                let Some(head) = queued.front() else { break };
                if ordered && head.keys.iter().any(|k| flying_keys.contains_key(k)) {
                    // An earlier change of one of its points is still being written.
                    break;
                }
                let mut next = queued.pop_front().expect("a batch is queued");
                let keys = std::mem::take(&mut next.keys);
                for &key in &keys {
                    *flying_keys.entry(key).or_default() += 1;
                }
                in_flight += 1;
                let sink = sink.clone();
                let acks = acks_tx.clone();
                let wake = sync_activator.clone();
                let dead_letters = dead_letters.clone();
                let counters = counters.clone();
                runtime.spawn(async move {
                    let started = Instant::now();
                    let result = match deliver_deletes(&*sink, &next.deletes, &dead_letters, &counters).await {
                        Ok(()) if next.batch.is_empty() => Ok((Delivery::default(), Some(next.batch))),
                        Ok(()) => deliver(&*sink, next.batch, &dead_letters, &counters).await,
                        Err(e) => Err(e),
                    };
                    counters.write_took(started.elapsed());
                    let _ = acks.send((next.epochs, keys, result));
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
