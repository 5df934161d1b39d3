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
//!
//! The bookkeeping is [`SinkQueue`], which knows nothing of timely or of the target and is
//! unit-tested on its own; the operator feeds it and spawns the requests it hands out.

use super::Services;
use crate::model::{Change, IntoChange, Point};
use crate::sinks::util::{deliver, deliver_deletes, Delivery};
use crate::sinks::{Batch, Sink};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

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
        let (acks_tx, acks) = mpsc::channel::<Ack<S::Batch>>();
        let batching = sink.batching();
        let mut queue = SinkQueue::new(
            Bounds {
                batch_size: batching.batch_size,
                batch_bytes: batching.batch_bytes,
                linger: batching.linger,
                in_flight: batching.in_flight,
            },
            ordered,
        );
        let mut capability: Option<Capability<u64>> = None;

        move |(input, frontier),
              _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
            input.for_each_time(|time, batches| {
                let epoch = *time.time();
                if capability.as_ref().is_none_or(|c| epoch < *c.time()) {
                    capability = Some(time.retain(0));
                }
                for points in batches {
                    for item in points.drain(..) {
                        if let Err((reason, point)) =
                            queue.push(epoch, item.into_change(), || sink.new_batch())
                        {
                            dead_letters.record("sink", &reason, point.to_json());
                        }
                    }
                }
            });

            // Acknowledged writes release their epochs.
            while let Ok(ack) = acks.try_recv() {
                match ack.result {
                    Err(message) => {
                        control.fail(format!("writing to the sink failed: {message}"));
                        return;
                    }
                    Ok((_, batch)) => queue.acknowledged(&ack.epochs, &ack.keys, batch),
                }
            }

            if let Some(wait) = queue.send_due(|e| !frontier.less_equal(&e), Instant::now()) {
                activator.activate_after(wait);
            }

            while let Some(request) = queue.next_request() {
                let sink = sink.clone();
                let acks = acks_tx.clone();
                let wake = sync_activator.clone();
                let dead_letters = dead_letters.clone();
                let counters = counters.clone();
                runtime.spawn(async move {
                    let started = Instant::now();
                    let Request {
                        batch,
                        deletes,
                        epochs,
                        keys,
                    } = request;
                    let result = match deliver_deletes(&*sink, &deletes, &dead_letters, &counters).await {
                        Ok(()) if batch.is_empty() => Ok((Delivery::default(), Some(batch))),
                        Ok(()) => deliver(&*sink, batch, &dead_letters, &counters).await,
                        Err(e) => Err(e),
                    };
                    counters.write_took(started.elapsed());
                    let _ = acks.send(Ack { epochs, keys, result });
                    let _ = wake.activate();
                });
            }

            // Hold the oldest pending epoch, nothing more.
            match queue.oldest_epoch() {
                None => capability = None,
                Some(oldest) => {
                    if let Some(c) = capability.as_mut() {
                        if *c.time() < oldest {
                            c.downgrade(&oldest);
                        }
                    }
                }
            }
        }
    })
}

/// A request's outcome, back from its task.
struct Ack<B> {
    epochs: Vec<u64>,
    keys: Vec<u64>,
    result: Result<(Delivery, Option<B>), String>,
}

/// The sink's bounds, from the job file's batching keys.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Points (writes and deletes) per request.
    pub batch_size: usize,
    /// Encoded bytes per request.
    pub batch_bytes: usize,
    /// How long a partly filled batch waits for more.
    pub linger: Duration,
    /// Requests in flight.
    pub in_flight: usize,
}

/// One request to send: a batch, the deletes sent before it, the epochs of its changes
/// and (ordered mode) the key hashes of its points.
pub(super) struct Request<B> {
    pub batch: B,
    pub deletes: Vec<Point>,
    pub epochs: Vec<u64>,
    pub keys: Vec<u64>,
}

impl<B: Batch> Request<B> {
    fn len(&self) -> usize {
        self.batch.len() + self.deletes.len()
    }
}

/// What the sink operator keeps between activations: the open batch, the batches queued,
/// the requests in flight, and for each epoch how many of those hold its points.
pub(super) struct SinkQueue<B> {
    bounds: Bounds,
    ordered: bool,
    /// The batch being filled, and when its first change came.
    open: Option<(Request<B>, Instant)>,
    queued: VecDeque<Request<B>>,
    in_flight: usize,
    /// Epoch → batches (open, queued or in flight) holding its changes.
    pending: BTreeMap<u64, usize>,
    /// Ordered mode: keys in the open batch, and keys of the requests in flight.
    open_keys: HashSet<u64>,
    flying_keys: HashMap<u64, u32>,
    /// Emptied batches back from delivered writes, to be filled again.
    spare: Vec<B>,
}

impl<B: Batch> SinkQueue<B> {
    /// An empty queue.
    pub fn new(bounds: Bounds, ordered: bool) -> Self {
        Self {
            bounds,
            ordered,
            open: None,
            queued: VecDeque::new(),
            in_flight: 0,
            pending: BTreeMap::new(),
            open_keys: HashSet::new(),
            flying_keys: HashMap::new(),
            spare: Vec::new(),
        }
    }

    /// Adds a change of `epoch` to the open batch (opening one with `new_batch` if none is).
    /// `Err` is a point the batch refused for good, with the reason: dead-letter it.
    pub fn push(
        &mut self,
        epoch: u64,
        change: Change,
        new_batch: impl FnOnce() -> B,
    ) -> Result<(), (String, Point)> {
        let key = if self.ordered {
            change.point().key_hash()
        } else {
            0
        };
        if self.ordered && self.open_keys.contains(&key) {
            // The point changes again: its earlier change goes first.
            self.close_open();
        }
        let spare = &mut self.spare;
        let (current, _) = self.open.get_or_insert_with(|| {
            let batch = spare.pop().unwrap_or_else(new_batch);
            (
                Request {
                    batch,
                    deletes: Vec::new(),
                    epochs: Vec::new(),
                    keys: Vec::new(),
                },
                Instant::now(),
            )
        });
        if current.epochs.last() != Some(&epoch) && !current.epochs.contains(&epoch) {
            current.epochs.push(epoch);
            *self.pending.entry(epoch).or_default() += 1;
        }
        if self.ordered {
            self.open_keys.insert(key);
            current.keys.push(key);
        }
        let refused = match change {
            Change::Write(point) => current.batch.push(&point).err().map(|r| (r, point)),
            Change::Delete(point) => {
                current.deletes.push(point);
                None
            }
        };
        if current.len() >= self.bounds.batch_size
            || current.batch.bytes() >= self.bounds.batch_bytes
        {
            self.close_open();
        }
        refused.map_or(Ok(()), Err)
    }

    fn close_open(&mut self) {
        if let Some((full, _)) = self.open.take() {
            self.queued.push_back(full);
        }
        self.open_keys.clear();
    }

    /// Moves the open batch to the queue when it is due: when no request is out (an idle
    /// target gets it at once), when every epoch in it is `closed` (nothing more will come
    /// for them), or when it has lingered long enough. `Some(wait)` when it is not due yet:
    /// look again after `wait`.
    pub fn send_due(&mut self, closed: impl Fn(u64) -> bool, now: Instant) -> Option<Duration> {
        let (current, since) = self.open.as_ref()?;
        if current.len() == 0 {
            let (empty, _) = self.open.take().expect("a batch is open");
            release(&mut self.pending, &empty.epochs);
            self.open_keys.clear();
            return None;
        }
        let idle = self.in_flight == 0 && self.queued.is_empty();
        let lingered = now.saturating_duration_since(*since);
        if idle || current.epochs.iter().all(|e| closed(*e)) || lingered >= self.bounds.linger {
            self.close_open();
            None
        } else {
            Some(self.bounds.linger - lingered)
        }
    }

    /// The next request to send, if one may go now: fewer than `in_flight` are out and
    /// (ordered mode) none of its points is in a request still out.
    pub fn next_request(&mut self) -> Option<Request<B>> {
        if self.in_flight >= self.bounds.in_flight {
            return None;
        }
        let head = self.queued.front()?;
        if self.ordered && head.keys.iter().any(|k| self.flying_keys.contains_key(k)) {
            // An earlier change of one of its points is still being written.
            return None;
        }
        let request = self.queued.pop_front().expect("a batch is queued");
        for &key in &request.keys {
            *self.flying_keys.entry(key).or_default() += 1;
        }
        self.in_flight += 1;
        Some(request)
    }

    /// A request holding `epochs` and `keys` is acknowledged; `batch` is its emptied batch,
    /// to fill again.
    pub fn acknowledged(&mut self, epochs: &[u64], keys: &[u64], batch: Option<B>) {
        self.in_flight -= 1;
        for key in keys {
            if let Some(n) = self.flying_keys.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.flying_keys.remove(key);
                }
            }
        }
        if let Some(batch) = batch {
            if self.spare.len() <= self.bounds.in_flight {
                self.spare.push(batch);
            }
        }
        release(&mut self.pending, epochs);
    }

    /// The oldest epoch with changes not yet acknowledged: what the operator's capability
    /// must hold.
    pub fn oldest_epoch(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    /// A batch of points, remembered by time.
    #[derive(Default)]
    struct Times(Vec<i64>);

    impl Batch for Times {
        fn push(&mut self, point: &Point) -> Result<(), String> {
            if point.time < 0 {
                return Err("before 1970".into());
            }
            self.0.push(point.time);
            Ok(())
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn bytes(&self) -> usize {
            self.0.len() * 10
        }
        fn split(self) -> Option<(Self, Self)> {
            None
        }
        fn records(&self) -> Vec<serde_json::Value> {
            Vec::new()
        }
        fn clear(&mut self) {
            self.0.clear();
        }
    }

    fn point(time: i64) -> Point {
        Point {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![("v".into(), Value::Int(time))],
            time,
            device_hash: 0,
        }
    }

    fn queue(batch_size: usize, in_flight: usize, ordered: bool) -> SinkQueue<Times> {
        SinkQueue::new(
            Bounds {
                batch_size,
                batch_bytes: 1 << 20,
                linger: Duration::from_millis(100),
                in_flight,
            },
            ordered,
        )
    }

    fn write(q: &mut SinkQueue<Times>, epoch: u64, time: i64) {
        q.push(epoch, Change::Write(point(time)), Times::default)
            .unwrap();
    }

    #[test]
    fn an_epoch_is_held_until_every_request_with_its_points_is_acknowledged() {
        let mut q = queue(2, 2, false);
        write(&mut q, 1, 10);
        write(&mut q, 1, 11); // full: queued
        write(&mut q, 2, 12);
        assert_eq!(q.oldest_epoch(), Some(1));
        let first = q.next_request().expect("the full batch");
        assert_eq!(
            (first.batch.0.clone(), first.epochs.clone()),
            (vec![10, 11], vec![1])
        );
        // Epoch 2 is still open upstream and a request is out: the open batch lingers.
        let now = Instant::now();
        assert!(q.send_due(|e| e < 2, now).is_some());
        // Once epoch 2 is closed upstream, it goes.
        assert_eq!(q.send_due(|e| e < 3, now), None);
        let second = q.next_request().expect("epoch 2's batch");
        q.acknowledged(&second.epochs, &second.keys, Some(second.batch));
        assert_eq!(q.oldest_epoch(), Some(1), "epoch 1 is still in flight");
        q.acknowledged(&first.epochs, &first.keys, None);
        assert_eq!(q.oldest_epoch(), None);
    }

    #[test]
    fn an_idle_target_gets_the_first_points_at_once_and_a_busy_one_after_the_linger() {
        let mut q = queue(100, 1, false);
        write(&mut q, 1, 10);
        assert_eq!(q.send_due(|_| false, Instant::now()), None);
        let out = q.next_request().expect("sent at once");
        write(&mut q, 1, 11);
        let start = Instant::now();
        assert!(
            q.send_due(|_| false, start).is_some(),
            "a request is out: wait"
        );
        assert_eq!(
            q.send_due(|_| false, start + Duration::from_millis(150)),
            None
        );
        assert!(q.next_request().is_none(), "only one request in flight");
        q.acknowledged(&out.epochs, &out.keys, None);
        assert_eq!(q.next_request().expect("now").batch.0, vec![11]);
    }

    #[test]
    fn ordered_changes_of_one_point_never_fly_together_and_keep_their_order() {
        let mut q = queue(100, 4, true);
        write(&mut q, 1, 10);
        q.push(1, Change::Delete(point(10)), Times::default)
            .unwrap();
        write(&mut q, 1, 11);
        assert_eq!(q.send_due(|_| true, Instant::now()), None);
        let first = q.next_request().expect("the write of 10");
        assert_eq!(first.batch.0, vec![10]);
        // The delete of 10 waits for the write of 10, though requests are free.
        assert!(q.next_request().is_none());
        q.acknowledged(&first.epochs, &first.keys, None);
        let second = q.next_request().expect("then the delete");
        assert_eq!(
            (second.deletes.len(), second.batch.0.clone()),
            (1, vec![11])
        );
    }

    #[test]
    fn a_refused_point_comes_back_and_holds_nothing() {
        let mut q = queue(10, 1, false);
        let refused = q.push(3, Change::Write(point(-1)), Times::default);
        assert_eq!(refused.unwrap_err().0, "before 1970");
        // The empty batch is dropped and its epoch released.
        assert_eq!(q.send_due(|_| false, Instant::now()), None);
        assert!(q.next_request().is_none());
        assert_eq!(q.oldest_epoch(), None);
    }
}
