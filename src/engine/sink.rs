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
//! CDC also re-checks its deletes ([`Order::Changes`]): a target may acknowledge a delete
//! and leave the point (InfluxDB 1.x drops some deletes that race with writes). Once per
//! checkpoint interval, and once more when the input ends, the operator asks the target
//! which of the points it deleted since are still there ([`Sink::surviving`]) and deletes
//! those again, unless a later change of the point was sent since; a point that survives
//! five deletes is dead-lettered. Meanwhile the capability is held at the input frontier
//! (never behind it, so checkpoints are not held back), so the dataflow cannot end before
//! the last check.
//!
//! What comes in is taken apart by a [`Feeder`]: changes as they are ([`Changes`]), or in a
//! backfill row batches that the sink maps itself (`map::MapRows`), each row into one point
//! that is encoded into the open batch at once ([`Fed::Write`], [`SinkQueue::push_write`])
//! and then made again for the next row: a backfill allocates, sends and frees no point.
//!
//! The bookkeeping is [`SinkQueue`] and [`DeleteChecks`], which know nothing of timely or
//! of the target and are unit-tested on their own; the operator feeds them and spawns the
//! requests they hand out.

use super::Services;
use crate::error::Failure;
use crate::model::{Change, IntoChange, Origin, Point};
use crate::sink::deliver::{deliver, deliver_deletes, deliver_traced, Delivery};
use crate::sink::{Batch, Sink};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

/// How the sink treats the changes it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Each point once, in any order (a backfill).
    Any,
    /// Each point's writes in the order given (ingest).
    Ordered,
    /// Writes and deletes in the order given, deletes re-checked this often (CDC).
    Changes(Duration),
}

/// How many points ahead of the one being pushed the sink asks for a point's vectors to be
/// loaded ([`Point::prefetch`]): far enough for the loads to overlap, near enough that
/// they are still in cache when the point's turn comes.
const PREFETCH_AHEAD: usize = 4;

/// Most points asked about in one [`Sink::surviving`] request.
const CHECK_CHUNK: usize = 500;

/// A point the target refused (it is dead-lettered), for the request it came in.
pub(super) type Refusal = (Origin, String);

/// Whether a worker's sink has as many full batches waiting for a request slot as it may
/// have requests in flight. The backfill's read operator on the same worker reads no
/// further while it has: a target slower than the source then holds at most that much
/// encoded and waiting, however many rows `flow.max_in_flight_rows` would let the source
/// read ahead (those rows would only wait, encoded, in memory). A fast target never fills
/// it, and there the bound on rows in flight is what keeps the pipeline full.
#[derive(Clone, Default)]
pub(super) struct Backlog(std::rc::Rc<std::cell::Cell<bool>>);

impl Backlog {
    /// Whether the sink has a full backlog (as of its last activation).
    pub fn full(&self) -> bool {
        self.0.get()
    }
}

/// Writes `points` (points or changes) to `sink`; the returned stream's frontier is the
/// oldest epoch not yet durable at this sink. `order` says whether each point's changes
/// must keep their order (CDC, ingest); a backfill writes each point once and needs no
/// such care. The stream carries a [`Refusal`] for every point with an
/// [`origin`](IntoChange::origin) that was dead-lettered instead of written, at an epoch
/// no later than the point's: once the frontier has passed a point's epoch, its refusal
/// (if any) has been seen.
pub(super) fn write<'s, S: Sink, D: Clone + 'static>(
    points: Stream<'s, u64, Vec<D>>,
    mut feeder: impl Feeder<D>,
    sink: Arc<S>,
    services: &Services,
    order: Order,
    backlog: Option<Backlog>,
) -> Stream<'s, u64, Vec<Refusal>> {
    let ordered = order != Order::Any;
    let Services {
        runtime,
        dead_letters,
        counters,
        control,
        ..
    } = services.clone();
    let scope = points.scope();
    points.unary_frontier(Pipeline, "WriteSink", move |_initial, info| {
        let activator = scope.activator_for(info.address.clone());
        let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
        let (acks_tx, acks) = mpsc::channel::<Ack<S::Batch>>();
        let (checked_tx, checked) = mpsc::channel::<Vec<Point>>();
        let mut checks = match order {
            Order::Changes(every) => Some(DeleteChecks::new(every)),
            _ => None,
        };
        let batching = sink.batching();
        // The backlog is full with as many batches waiting as may be in flight.
        let full_backlog = batching.in_flight.max(1);
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
              output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<Refusal>>>| {
            input.for_each_time(|time, batches| {
                let epoch = *time.time();
                if capability.as_ref().is_none_or(|c| epoch < *c.time()) {
                    capability = Some(time.retain(0));
                }
                for items in batches {
                    feeder.feed(items, &mut |fed| match fed {
                        Fed::Change(origin, change) => {
                            // Ordered: the point's key, hashed once for the checks and the queue.
                            let key = if ordered { change.point().key_hash() } else { 0 };
                            if let Some(checks) = checks.as_mut() {
                                checks.pushed(&change, key);
                            }
                            if let Err((reason, point)) = queue.push(epoch, change, key, origin, || sink.new_batch()) {
                                dead_letters.record("sink", &reason, point.to_json());
                                if let Some(origin) = origin {
                                    output.session(&time).give((origin, reason));
                                }
                            }
                        }
                        Fed::Write(point) => {
                            if let Err(reason) = queue.push_write(epoch, point, || sink.new_batch()) {
                                dead_letters.record("sink", &reason, point.to_json());
                            }
                        }
                    });
                }
            });

            // Acknowledged writes release their epochs.
            while let Ok(ack) = acks.try_recv() {
                match ack.result {
                    Err(message) => {
                        control.fail(Failure {
                            message: format!("writing to the sink failed: {}", message.message),
                            ..message
                        });
                        return;
                    }
                    Ok((delivery, batch)) => {
                        if let Some(checks) = checks.as_mut() {
                            checks.acknowledged(&ack.deletes);
                        }
                        // The request's epochs are still held: the capability is at or
                        // before each of them.
                        if let Some(cap) = capability.as_ref() {
                            let mut session = output.session(cap);
                            for (push, reason) in delivery.refused {
                                if let Ok(i) = ack.origins.binary_search_by_key(&push, |(p, _)| *p) {
                                    session.give((ack.origins[i].1, reason));
                                }
                            }
                        }
                        queue.acknowledged(&ack.epochs, &ack.keys, batch)
                    }
                }
            }

            // Deletes the target left undone are deleted again, at the epoch held.
            if let Some(checks) = checks.as_mut() {
                while let Ok(survivors) = checked.try_recv() {
                    let (again, kept) = checks.answered(survivors);
                    for point in kept {
                        let mut record = point.to_json();
                        record["operation"] = "delete".into();
                        dead_letters.record(
                            "sink",
                            &format!("the target still holds this point after {MAX_DELETES} deletes"),
                            record,
                        );
                    }
                    let at = capability.as_ref().map(|c| *c.time());
                    for change in again {
                        let Some(at) = at else { break };
                        if matches!(change, Change::Delete(_)) {
                            counters.points_deleted_again.add(1);
                        }
                        let key = change.point().key_hash();
                        checks.pushed(&change, key);
                        let _ = queue.push(at, change, key, None, || sink.new_batch());
                    }
                }
                let input_done = frontier.is_empty() && queue.oldest_epoch().is_none();
                if let Some(points) = checks.due(Instant::now(), input_done) {
                    let sink = sink.clone();
                    let answer = checked_tx.clone();
                    let wake = sync_activator.clone();
                    runtime.spawn(async move {
                        let mut survivors = Vec::new();
                        for chunk in points.chunks(CHECK_CHUNK) {
                            match sink.surviving(chunk).await {
                                Ok(found) => survivors.extend(found),
                                Err(e) => tracing::warn!("cannot check whether deleted points are gone: {e:?}"),
                            }
                        }
                        let _ = answer.send(survivors);
                        let _ = wake.activate();
                    });
                } else if checks.waiting() {
                    activator.activate_after(checks.next_in(Instant::now()));
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
                        origins,
                    } = request;
                    let result = match deliver_deletes(&*sink, &deletes, &dead_letters, &counters).await {
                        Ok(()) if batch.is_empty() => Ok((Delivery::default(), Some(batch))),
                        Ok(()) if origins.is_empty() => deliver(&*sink, batch, &dead_letters, &counters).await,
                        Ok(()) => deliver_traced(&*sink, batch, &dead_letters, &counters).await,
                        Err(e) => Err(e),
                    };
                    counters.write_took(started.elapsed());
                    let _ = acks.send(Ack { epochs, keys, deletes, origins, result });
                    let _ = wake.activate();
                });
            }
            if let Some(backlog) = &backlog {
                backlog.0.set(queue.waiting() >= full_backlog);
            }

            // Hold the oldest pending epoch, nothing more; while deletes wait for their
            // check, the input frontier (which holds nothing back that the input does not).
            let hold = queue.oldest_epoch().or_else(|| {
                checks.as_ref().filter(|c| c.busy()).and_then(|_| {
                    frontier
                        .frontier()
                        .first()
                        .copied()
                        .or(capability.as_ref().map(|c| *c.time()))
                })
            });
            match hold {
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

/// How the sink operator takes its input apart into what it writes: most inputs are
/// changes already ([`Changes`]); a backfill's are mostly row batches, which its sink maps
/// as it writes them (`map::MapRows`).
pub(super) trait Feeder<D>: 'static {
    /// Hands everything `items` holds to `push`, in order, leaving `items` empty.
    fn feed(&mut self, items: &mut Vec<D>, push: &mut dyn FnMut(Fed<'_>));
}

/// One thing for the sink to write.
pub(super) enum Fed<'a> {
    /// A change the sink keeps until it is written, with the request that waits for it.
    Change(Option<Origin>, Change),
    /// A point to write that the sink encodes at once and keeps nothing of (the caller
    /// makes its next point in the same place): a backfill's, with no order to keep and no
    /// request waiting. Only for a sink in [`Order::Any`].
    Write(&'a Point),
}

/// The feeder of inputs that are changes: points, CDC's changes, a request's points.
pub(super) struct Changes;

impl<D: IntoChange + 'static> Feeder<D> for Changes {
    fn feed(&mut self, items: &mut Vec<D>, push: &mut dyn FnMut(Fed<'_>)) {
        let mut items = items.drain(..);
        while let Some(item) = items.next() {
            if let Some(ahead) = items.as_slice().get(PREFETCH_AHEAD) {
                ahead.point().prefetch();
            }
            push(Fed::Change(item.origin(), item.into_change()));
        }
    }
}

/// A request's outcome, back from its task.
struct Ack<B> {
    epochs: Vec<u64>,
    keys: Vec<u64>,
    deletes: Vec<Point>,
    origins: Vec<(usize, Origin)>,
    result: Result<(Delivery, Option<B>), Failure>,
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

/// One request to send: a batch, the deletes sent before it, the epochs of its changes,
/// (ordered mode) the key hashes of its points, and the origins of the points whose
/// client waits for them, by push index in the batch.
pub(super) struct Request<B> {
    pub batch: B,
    pub deletes: Vec<Point>,
    pub epochs: Vec<u64>,
    pub keys: Vec<u64>,
    pub origins: Vec<(usize, Origin)>,
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
    open_keys: HashSet<u64, KeyHashes>,
    flying_keys: HashMap<u64, u32, KeyHashes>,
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
            open_keys: HashSet::default(),
            flying_keys: HashMap::default(),
            spare: Vec::new(),
        }
    }

    /// Adds a change of `epoch` to the open batch (opening one with `new_batch` if none is),
    /// noting the `origin` of a write whose client waits for it. `key` is the point's
    /// [`Point::key_hash`] in ordered mode (unused otherwise). `Err` is a point the batch
    /// refused for good, with the reason: dead-letter it.
    pub fn push(
        &mut self,
        epoch: u64,
        change: Change,
        key: u64,
        origin: Option<Origin>,
        new_batch: impl FnOnce() -> B,
    ) -> Result<(), (String, Point)> {
        debug_assert!(!self.ordered || key == change.point().key_hash());
        let current = self.open_for(epoch, key, new_batch);
        let refused = match change {
            Change::Write(point) => match current.batch.push(&point) {
                Ok(()) => {
                    if let Some(origin) = origin {
                        current.origins.push((current.batch.len() - 1, origin));
                    }
                    None
                }
                Err(reason) => Some((reason, point)),
            },
            Change::Delete(point) => {
                current.deletes.push(point);
                None
            }
        };
        self.close_if_full();
        refused.map_or(Ok(()), Err)
    }

    /// Adds a write of `point` at `epoch` to the open batch, which encodes it at once and
    /// keeps nothing of it: the caller may make its next point in the same place. Unordered
    /// mode only (a backfill's rows, mapped by the sink). `Err` is the reason the batch
    /// refused the point for good: dead-letter it.
    pub fn push_write(
        &mut self,
        epoch: u64,
        point: &Point,
        new_batch: impl FnOnce() -> B,
    ) -> Result<(), String> {
        debug_assert!(!self.ordered, "an ordered sink keeps each point's key");
        let refused = self.open_for(epoch, 0, new_batch).batch.push(point);
        self.close_if_full();
        refused
    }

    /// The open batch, ready for a change of `epoch` to point `key` (ordered mode): opened
    /// with `new_batch` if none is, closed first if it holds that point already.
    fn open_for(&mut self, epoch: u64, key: u64, new_batch: impl FnOnce() -> B) -> &mut Request<B> {
        if self.ordered && self.open_keys.contains(&key) {
            // The point changes again: its earlier change goes first.
            self.close_open();
        }
        let spare = &mut self.spare;
        // Ordered: room for a batch's keys at once (grown by doubling, they cost fresh pages).
        let keys = if self.ordered {
            self.bounds.batch_size.min(8192)
        } else {
            0
        };
        let (current, _) = self.open.get_or_insert_with(|| {
            let batch = spare.pop().unwrap_or_else(new_batch);
            (
                Request {
                    batch,
                    deletes: Vec::new(),
                    epochs: Vec::new(),
                    keys: Vec::with_capacity(keys),
                    origins: Vec::new(),
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
        current
    }

    /// Queues the open batch if it is full (changes or bytes).
    fn close_if_full(&mut self) {
        if let Some((current, _)) = &self.open {
            if current.len() >= self.bounds.batch_size
                || current.batch.bytes() >= self.bounds.batch_bytes
            {
                self.close_open();
            }
        }
    }

    /// Full batches waiting for a request slot.
    pub fn waiting(&self) -> usize {
        self.queued.len()
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

/// Sets and maps keyed by [`Point::key_hash`]: the key is an xxh3 hash already, so it is
/// its own hash (SipHash over it cost more than the rest of the bookkeeping per point).
type KeyHashes = std::hash::BuildHasherDefault<KeyHash>;

#[derive(Default)]
struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; anything else is folded in all the same.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Deletes of one point before it is dead-lettered as undeletable.
const MAX_DELETES: u8 = 5;

/// Which deleted points to ask the target about, and which to delete again.
///
/// A point is tracked from its delete on: what must be gone (the fields the delete names)
/// and, once a later write of the point is sent (a delete before a write: a field became
/// NULL), that write, which narrows what must be gone to the fields it does not bring
/// back. A delete the target left undone is repaired by the same delete and, if there was
/// one, the write after it again: with a target that deletes whole points (InfluxDB) the
/// write brings back what the delete takes.
pub(super) struct DeleteChecks {
    every: Duration,
    last: Instant,
    /// Deletes sent, not yet acknowledged (the last of each point).
    sent: HashMap<u64, Tracked, KeyHashes>,
    /// Per point, deletes sent and not yet acknowledged: the last one's tracking waits for
    /// every one of them (an earlier delete's answer says nothing of a later one).
    unanswered: HashMap<u64, u32, KeyHashes>,
    /// Deletes acknowledged since the last check.
    done: HashMap<u64, Tracked, KeyHashes>,
    /// Asked about; `None` when no check is out.
    asking: Option<HashMap<u64, Tracked, KeyHashes>>,
    /// Deletes sent per point that the target did not take.
    attempts: HashMap<u64, u8, KeyHashes>,
}

/// A deleted point: what must be gone, and the write sent after the delete, if any.
#[derive(Debug, Clone, PartialEq)]
struct Tracked {
    gone: Point,
    written: Option<Point>,
}

impl DeleteChecks {
    /// Checks at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Instant::now(),
            sent: HashMap::default(),
            unanswered: HashMap::default(),
            done: HashMap::default(),
            asking: None,
            attempts: HashMap::default(),
        }
    }

    /// A change is on its way to the target; `key` is its point's [`Point::key_hash`].
    pub fn pushed(&mut self, change: &Change, key: u64) {
        debug_assert_eq!(key, change.point().key_hash());
        match change {
            Change::Delete(p) => {
                // This delete supersedes what an earlier one of the point left to check.
                self.done.remove(&key);
                if let Some(asking) = self.asking.as_mut() {
                    asking.remove(&key);
                }
                *self.unanswered.entry(key).or_default() += 1;
                self.sent.insert(
                    key,
                    Tracked {
                        gone: p.clone(),
                        written: None,
                    },
                );
            }
            Change::Write(w) => {
                let maps = [&mut self.sent, &mut self.done]
                    .into_iter()
                    .chain(self.asking.as_mut());
                for map in maps {
                    let Some(t) = map.get_mut(&key) else { continue };
                    t.gone
                        .fields
                        .retain(|(f, _)| !w.fields.iter().any(|(k, _)| k == f));
                    t.written = Some(w.clone());
                    if t.gone.fields.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        }
    }

    /// The target acknowledged these deletes.
    pub fn acknowledged(&mut self, deletes: &[Point]) {
        for p in deletes {
            let key = p.key_hash();
            let Some(n) = self.unanswered.get_mut(&key) else {
                continue;
            };
            *n -= 1;
            if *n > 0 {
                continue;
            }
            self.unanswered.remove(&key);
            if let Some(t) = self.sent.remove(&key) {
                self.done.insert(key, t);
            }
        }
    }

    /// The points to ask about now (each naming the fields that must be gone), if a check
    /// is due: once per `every`, or at once when the input has ended (the last check
    /// before the job ends).
    pub fn due(&mut self, now: Instant, input_done: bool) -> Option<Vec<Point>> {
        let due = input_done || now.saturating_duration_since(self.last) >= self.every;
        if self.asking.is_some() || self.done.is_empty() || !due {
            return None;
        }
        self.last = now;
        let asking = std::mem::take(&mut self.done);
        let points = asking.values().map(|t| t.gone.clone()).collect();
        self.asking = Some(asking);
        Some(points)
    }

    /// The target still holds (some of the fields of) `survivors`. Returns the changes that
    /// repair them — the delete again, and the write after it if there was one — and the
    /// points that outlived [`MAX_DELETES`] deletes, given up on.
    pub fn answered(&mut self, survivors: Vec<Point>) -> (Vec<Change>, Vec<Point>) {
        let asked = self.asking.take().unwrap_or_default();
        for key in asked.keys() {
            if !survivors.iter().any(|s| s.key_hash() == *key) {
                self.attempts.remove(key);
            }
        }
        let (mut again, mut kept) = (Vec::new(), Vec::new());
        for survivor in survivors {
            let key = survivor.key_hash();
            // Not asked about, or changed since it was.
            let Some(t) = asked.get(&key) else { continue };
            let n = self.attempts.entry(key).or_insert(1);
            *n += 1;
            if *n > MAX_DELETES {
                self.attempts.remove(&key);
                kept.push(t.gone.clone());
            } else {
                again.push(Change::Delete(t.gone.clone()));
                again.extend(t.written.clone().map(Change::Write));
            }
        }
        (again, kept)
    }

    /// Whether deletes wait for a check (or a check is out).
    pub fn busy(&self) -> bool {
        !self.done.is_empty() || self.asking.is_some()
    }

    /// Whether acknowledged deletes wait for the next check.
    pub fn waiting(&self) -> bool {
        !self.done.is_empty() && self.asking.is_none()
    }

    /// How long until the next check is due.
    pub fn next_in(&self, now: Instant) -> Duration {
        self.every
            .saturating_sub(now.saturating_duration_since(self.last))
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

    /// `q.push` of a change with its key, as the operator does.
    fn push(q: &mut SinkQueue<Times>, epoch: u64, change: Change) -> Result<(), (String, Point)> {
        let key = change.point().key_hash();
        q.push(epoch, change, key, None, Times::default)
    }

    /// `c.pushed` of a change with its key, as the operator does.
    fn pushed(c: &mut DeleteChecks, change: &Change) {
        c.pushed(change, change.point().key_hash());
    }
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
        push(q, epoch, Change::Write(point(time))).unwrap();
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
        push(&mut q, 1, Change::Delete(point(10))).unwrap();
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
    fn a_delete_the_target_left_undone_is_sent_again_unless_the_point_was_written_since() {
        let mut c = DeleteChecks::new(Duration::from_secs(1));
        let start = Instant::now();
        let (a, b) = (point(1), point(2));
        for p in [&a, &b] {
            pushed(&mut c, &Change::Delete(p.clone()));
        }
        assert_eq!(c.due(start, true), None, "nothing acknowledged yet");
        c.acknowledged(&[a.clone(), b.clone()]);
        assert_eq!(c.due(start, false), None, "not due before the interval");
        let mut asked = c.due(start + Duration::from_secs(1), false).unwrap();
        asked.sort();
        assert_eq!(asked, vec![a.clone(), b.clone()]);
        assert_eq!(
            c.due(start + Duration::from_secs(9), true),
            None,
            "one check at a time"
        );
        // While the check is out, b is written again: its survival is the write's.
        pushed(&mut c, &Change::Write(b.clone()));
        let (again, kept) = c.answered(vec![a.clone(), b]);
        assert_eq!((again, kept), (vec![Change::Delete(a.clone())], vec![]));
        assert!(!c.busy());
    }

    #[test]
    fn a_delete_before_a_write_is_checked_for_the_fields_the_write_did_not_bring_back() {
        let mut c = DeleteChecks::new(Duration::ZERO);
        let mut old = point(1);
        old.fields.push(("h".into(), Value::Int(7)));
        let new = point(1);
        pushed(&mut c, &Change::Delete(old.clone()));
        pushed(&mut c, &Change::Write(new.clone()));
        c.acknowledged(std::slice::from_ref(&old));
        let asked = c.due(Instant::now(), false).unwrap();
        let fields: Vec<&str> = asked[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            fields,
            ["h"],
            "only the field the write left out must be gone"
        );
        // It survived: delete it again and write the new version again after.
        let (again, _) = c.answered(asked.clone());
        assert_eq!(
            again,
            vec![Change::Delete(asked[0].clone()), Change::Write(new)]
        );
        // A write bringing every field back needs no check at all.
        let mut d = DeleteChecks::new(Duration::ZERO);
        pushed(&mut d, &Change::Delete(point(2)));
        pushed(&mut d, &Change::Write(point(2)));
        d.acknowledged(&[point(2)]);
        assert_eq!(d.due(Instant::now(), true), None);
    }

    #[test]
    fn a_delete_is_checked_only_once_every_delete_of_its_point_is_answered() {
        // Delete, write, delete again: the first delete's answer must not start the check
        // of the second, which may not even be sent yet.
        let mut c = DeleteChecks::new(Duration::ZERO);
        let (v1, v2) = (
            point(1),
            Point {
                fields: vec![("v".into(), Value::Int(9))],
                ..point(1)
            },
        );
        pushed(&mut c, &Change::Delete(v1.clone()));
        pushed(&mut c, &Change::Write(v2.clone()));
        pushed(&mut c, &Change::Delete(v2.clone()));
        c.acknowledged(std::slice::from_ref(&v1));
        assert_eq!(c.due(Instant::now(), true), None);
        c.acknowledged(std::slice::from_ref(&v2));
        assert_eq!(c.due(Instant::now(), true), Some(vec![v2]));
    }

    #[test]
    fn a_point_that_survives_every_delete_is_given_up_on() {
        let mut c = DeleteChecks::new(Duration::ZERO);
        let a = point(1);
        let mut sent = 1;
        loop {
            pushed(&mut c, &Change::Delete(a.clone()));
            c.acknowledged(std::slice::from_ref(&a));
            assert!(c.due(Instant::now(), false).is_some());
            let (again, kept) = c.answered(vec![a.clone()]);
            if !kept.is_empty() {
                assert_eq!(kept, vec![a.clone()]);
                break;
            }
            assert_eq!(again, vec![Change::Delete(a.clone())]);
            sent += 1;
        }
        assert_eq!(sent, MAX_DELETES);
    }

    #[test]
    fn a_refused_point_comes_back_and_holds_nothing() {
        let mut q = queue(10, 1, false);
        let refused = push(&mut q, 3, Change::Write(point(-1)));
        assert_eq!(refused.unwrap_err().0, "before 1970");
        // The empty batch is dropped and its epoch released.
        assert_eq!(q.send_due(|_| false, Instant::now()), None);
        assert!(q.next_request().is_none());
        assert_eq!(q.oldest_epoch(), None);
    }
}
