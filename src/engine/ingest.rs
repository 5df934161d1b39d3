//! The ingest dataflow (`-c ingest`): points written to the line-protocol endpoint, into
//! the sink, each request acknowledged once its points are durable. Assembled in [`run`].
//!
//! ```text
//!  every worker
//!  IngestQueue ─try_recv─▶ ┌───────────────┐ (request no., point) ┌──────────┐     ┌────────────────┐
//!  (shared by the          │ take requests │────────────────────▶│ exchange │────▶│ in queue order │
//!   process's workers)     └───────────────┘  at the current     │ (device) │     └────────────────┘
//!                                  │          epoch              └──────────┘             │ points
//!                                  │ `done` senders, by epoch                             ▼
//!                                  │ (shared on the worker)  ┌─────────────┐  acks   ┌──────┐
//!                                  └───────────────────────▶│ acknowledge │◀────────│ sink │
//!                                                            └─────────────┘         └──────┘
//! ```
//!
//! **Take requests** runs on every worker: the endpoint's queue wakes every worker when a
//! request arrives (each registers its `SyncActivator`), and whichever gets there first
//! takes it. The points were parsed by the server and already carry their `device_hash`;
//! they are emitted at the current epoch and exchanged by it, so one worker owns a device.
//!
//! Order: a later request may rewrite a point, and the target must see the writes in the
//! order the endpoint queued them. Within a worker that is easy, but two workers' points
//! meet at the device's worker in no particular order. So the workers take requests under
//! one lock that numbers them (the queue's order) and never stamps a later request with an
//! earlier epoch than an earlier one; **in queue order** holds each epoch's points until
//! the frontier has passed it (no worker can send more of it) and hands them on sorted by
//! request number (stable: a request's own points keep the body's order). The sink then
//! runs in ordered mode, which keeps each point's writes in that order through batching
//! and concurrent requests. The cost is at most one epoch of latency.
//!
//! Capability: one, at the current epoch of the [`EpochClock`], downgraded as it ticks
//! (the operator wakes once per tick even when idle, so the frontier after the sinks keeps
//! moving and every waiting request is acknowledged within a tick of its last write).
//! While the queue is open the source is unbounded and keeps its capability — a SIGTERM
//! does not drop it: the endpoint first stops accepting connections and finishes the
//! requests in progress, which in `ack: durable` mode need this dataflow to write and
//! acknowledge them. Only when the queue is finished (closed by the drained endpoint, and
//! empty) is the capability dropped, and the job ends once the sinks are idle.
//!
//! **Acknowledge**: for every request it emitted, take requests files the request's
//! `done` under the epoch of its points; acknowledge sees the frontier after the sinks
//! (every worker's, every process's: timely's progress tracking is global) and answers
//! every request of an epoch the frontier has passed — those points are durable in the
//! target. Taking the frontier as an input, rather than polling a probe, gets it
//! scheduled the moment the frontier moves. A point the target refused is dead-lettered,
//! not durable: the sink emits a refusal for it (only for points whose client waits)
//! at an epoch no later than the point's, exchanged to the worker that answers the
//! request, so by the time the frontier passes the request's epoch its refusals are in,
//! and the request is answered with them (400, "partial write", as InfluxDB does).
//!
//! No backpressure here: the endpoint bounds the points accepted and not yet released
//! (`max_pending_points`, 429 past it), so the operator takes whatever is queued.
//!
//! Failure: whichever worker fails records it ([`Control::fail`]) and every worker drops
//! the dataflow (see `workers`), so the job ends on every worker. Requests taken and
//! not yet durable are answered with the failure (500) as their `done` is dropped with the
//! worker's state, and [`run`] abandons the queue so that the requests still in it are
//! answered at once too, instead of waiting out `ack_timeout`.

use super::sink::Refusal;
use super::{sink, Cluster, Control, EpochClock, Services};
use crate::error::Failure;
use crate::model::{Origin, Point};
use crate::sink::Sink;
use crate::source::push::{Ack, IngestQueue, Ingested};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::{Capability, Exchange, Operator};
use timely::dataflow::{Scope, Stream};
use tokio::sync::oneshot;

/// A point, the number of the request it came in (the order requests were taken), and
/// the worker that answers the request if its client waits.
type Numbered = (u64, Option<u32>, Point);

/// The most points an epoch's emptied vector may hold to be kept for the next epoch.
const SPARE_POINTS: usize = 1 << 16;

/// Requests taken per activation before yielding to the other operators.
const REQUESTS_PER_ACTIVATION: usize = 64;

/// Everything an ingest run needs, built by the caller.
pub struct Ingest<S: Sink> {
    /// The endpoint's queue (the server is started by the caller).
    pub queue: IngestQueue,
    /// The target.
    pub sink: Arc<S>,
    /// Length of an epoch.
    pub epoch: Duration,
    /// Runtime, dead letters, counters and control (its failure: a stop request is the
    /// endpoint's to handle, see the module docs).
    pub services: Services,
}

/// Writes what the endpoint queues until the queue is finished (the endpoint stopped and
/// drained), acknowledging each request once durable. `Err` carries the job's failure;
/// the queue is then abandoned, so every request still waiting is answered with it.
pub fn run<S: Sink>(job: Ingest<S>, cluster: &Cluster) -> Result<(), Failure> {
    let Ingest {
        queue,
        sink,
        epoch,
        services,
    } = job;
    let control = services.control.clone();
    let clock = EpochClock {
        start: Instant::now(),
        tick: epoch,
    };
    let worker_queue = queue.clone();
    let worker_control = control.clone();
    let order = Arc::new(Mutex::new(TakeOrder::default()));
    super::workers::execute(cluster, &control, move |worker| {
        let control = worker_control.clone();
        let waiting = Rc::new(RefCell::new(Waiting::new(control.clone())));
        worker.dataflow::<u64, _, _>(|scope| {
            let points = take_requests(
                scope,
                Taking {
                    queue: worker_queue.clone(),
                    order: order.clone(),
                    clock,
                    waiting: waiting.clone(),
                },
            );
            let routed = points.exchange(|(_, _, p): &Numbered| p.device_hash);
            let refusals = sink::write(
                in_queue_order(routed),
                sink::Changes,
                sink.clone(),
                &services,
                sink::Order::Ordered,
                None,
            );
            // Each refusal goes back to the worker that answers its request.
            acknowledge(
                refusals.exchange(|(origin, _): &Refusal| u64::from(origin.worker)),
                waiting,
            );
        });
    })
    .inspect_err(|failure| queue.abandon(&failure.message))
}

/// What the take-requests operator of a worker needs.
struct Taking {
    queue: IngestQueue,
    /// Shared by the process's workers.
    order: Arc<Mutex<TakeOrder>>,
    clock: EpochClock,
    waiting: Rc<RefCell<Waiting>>,
}

/// The order in which the process's workers took requests from the queue: the queue's own
/// order, since a request is taken and numbered under this lock.
#[derive(Default)]
struct TakeOrder {
    /// The number of the last request taken.
    seq: u64,
    /// The epoch of the last request taken: a later request never gets an earlier one.
    epoch: u64,
}

impl TakeOrder {
    /// Takes the oldest request, numbering it and stamping it no earlier than `epoch` or
    /// any request taken before it.
    fn take<T>(&mut self, next: impl FnOnce() -> Option<T>, epoch: u64) -> Option<(T, u64, u64)> {
        let request = next()?;
        self.seq += 1;
        self.epoch = self.epoch.max(epoch);
        Some((request, self.seq, self.epoch))
    }
}

/// Takes requests from the queue and emits their points, numbered by request, at the
/// current epoch; files each request's `done` in `waiting` under that epoch.
fn take_requests<'s>(scope: Scope<'s, u64>, taking: Taking) -> Stream<'s, u64, Vec<Numbered>> {
    let Taking {
        queue,
        order,
        clock,
        waiting,
    } = taking;
    let worker = scope.index() as u32;
    source::<_, CapacityContainerBuilder<Vec<Numbered>>, _, _>(
        scope,
        "TakeRequests",
        move |capability, info| {
            let activator = scope.activator_for(info.address.clone());
            let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
            queue.on_arrival(Arc::new(move || {
                // Fails only once the worker is gone, when there is nothing to wake.
                let _ = sync_activator.activate();
            }));
            let mut capability = Some(capability);
            move |output| {
                let Some(cap) = capability.as_mut() else {
                    return;
                };
                let tick = clock.now();
                if tick > *cap.time() {
                    cap.downgrade(&tick);
                }
                let mut budget = REQUESTS_PER_ACTIVATION;
                while budget > 0 {
                    let taken = order
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take(|| queue.try_recv(), *cap.time());
                    let Some((Ingested { points, done }, seq, epoch)) = taken else {
                        break;
                    };
                    budget -= 1;
                    // Another worker took an earlier request at a later epoch already.
                    if epoch > *cap.time() {
                        cap.downgrade(&epoch);
                    }
                    let answerer = done.as_ref().map(|_| worker);
                    output
                        .session(&*cap)
                        .give_iterator(points.into_iter().map(|p| (seq, answerer, p)));
                    if let Some(done) = done {
                        waiting.borrow_mut().add(epoch, seq, done);
                    }
                }
                if budget == 0 {
                    // More may be queued: come back after the others had their turn.
                    activator.activate();
                } else if queue.is_finished() {
                    // The endpoint stopped and everything it took is emitted.
                    capability = None;
                } else {
                    activator.activate_after(clock.tick);
                }
            }
        },
    )
}

/// Hands each epoch's points to the sink once no earlier point can still arrive (the
/// frontier has passed the epoch), in the order their requests were taken, each with the
/// origin of a request that waits for it.
fn in_queue_order(
    points: Stream<'_, u64, Vec<Numbered>>,
) -> Stream<'_, u64, Vec<(Option<Origin>, Point)>> {
    points.unary_frontier(Pipeline, "InQueueOrder", |_capability, _info| {
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Numbered>)> = BTreeMap::new();
        // An epoch's emptied vector, kept for the next epoch (unless it grew huge): a new
        // one each epoch, grown by doubling, cost more in fresh pages than the sorting.
        let mut spare: Option<Vec<Numbered>> = None;
        move |(input, frontier), output| {
            input.for_each_time(|time, batches| {
                let (_, stashed) = stash
                    .entry(*time.time())
                    .or_insert_with(|| (time.retain(0), spare.take().unwrap_or_default()));
                for batch in batches {
                    stashed.append(batch);
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (capability, mut points) = entry.remove();
                // Stable: a request's points keep their body order.
                if !points.is_sorted_by_key(|(seq, _, _)| *seq) {
                    points.sort_by_key(|(seq, _, _)| *seq);
                }
                output
                    .session(&capability)
                    .give_iterator(points.drain(..).map(|(request, worker, p)| {
                        (worker.map(|worker| Origin { worker, request }), p)
                    }));
                if points.capacity() <= SPARE_POINTS {
                    spare = Some(points);
                }
            }
        }
    })
}

/// Sends `done` for every epoch the frontier after the sinks has passed, with the
/// target's reasons for the request's points it refused.
fn acknowledge(refusals: Stream<'_, u64, Vec<Refusal>>, waiting: Rc<RefCell<Waiting>>) {
    refusals.sink(Pipeline, "AcknowledgeRequests", move |(input, frontier)| {
        let mut waiting = waiting.borrow_mut();
        input.for_each_time(|_, batches| {
            for (origin, reason) in batches.flat_map(|b| b.drain(..)) {
                waiting.refused(origin.request, reason);
            }
        });
        waiting.release(frontier.frontier().first().copied());
    });
}

/// The `done` senders of the requests emitted on this worker, by epoch, and the target's
/// refusals of their points.
struct Waiting {
    by_epoch: BTreeMap<u64, Vec<(u64, oneshot::Sender<Ack>)>>,
    /// Per request (by number), the reasons the target gave for points it refused.
    refusals: HashMap<u64, Vec<String>>,
    control: Control,
}

impl Waiting {
    fn new(control: Control) -> Self {
        Self {
            by_epoch: BTreeMap::new(),
            refusals: HashMap::new(),
            control,
        }
    }

    /// Request number `request`, whose points were emitted at `epoch`.
    fn add(&mut self, epoch: u64, request: u64, done: oneshot::Sender<Ack>) {
        self.by_epoch
            .entry(epoch)
            .or_default()
            .push((request, done));
    }

    /// The target refused a point of request `request` (it was dead-lettered).
    fn refused(&mut self, request: u64, reason: String) {
        self.refusals.entry(request).or_default().push(reason);
    }

    /// Answers every request of an epoch before `frontier` (all when `None`: nothing is
    /// pending anywhere): its points are durable, or were refused for the reasons given;
    /// returns how many.
    fn release(&mut self, frontier: Option<u64>) -> usize {
        let durable = match frontier {
            Some(f) => {
                let later = self.by_epoch.split_off(&f);
                std::mem::replace(&mut self.by_epoch, later)
            }
            None => std::mem::take(&mut self.by_epoch),
        };
        let mut n = 0;
        for (request, done) in durable.into_values().flatten() {
            let refused = self.refusals.remove(&request).unwrap_or_default();
            // A client that hung up no longer listens; its points are written all the same.
            let _ = done.send(Ok(refused));
            n += 1;
        }
        n
    }
}

impl Drop for Waiting {
    /// A worker that unwinds because the job failed answers its waiting requests with the
    /// failure (500); otherwise dropping `done` answers 503 (retry).
    fn drop(&mut self) {
        let Some(reason) = self.control.failure() else {
            return;
        };
        for (_, done) in std::mem::take(&mut self.by_epoch).into_values().flatten() {
            let _ = done.send(Err(reason.message.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(waiting: &mut Waiting, epoch: u64) -> oneshot::Receiver<Ack> {
        waiter_of(
            waiting,
            epoch,
            epoch * 100 + waiting.by_epoch.len() as u64 * 10 + 1,
        )
    }

    fn waiter_of(waiting: &mut Waiting, epoch: u64, request: u64) -> oneshot::Receiver<Ack> {
        let (done, answer) = oneshot::channel();
        waiting.add(epoch, request, done);
        answer
    }

    #[test]
    fn requests_are_acknowledged_once_the_frontier_passes_their_epoch() {
        let mut waiting = Waiting::new(Control::default());
        let mut at3 = waiter(&mut waiting, 3);
        let mut at5a = waiter(&mut waiting, 5);
        let mut at5b = waiter(&mut waiting, 5);
        let mut at9 = waiter(&mut waiting, 9);

        assert_eq!(waiting.release(Some(3)), 0, "epoch 3 itself is not durable");
        assert!(at3.try_recv().is_err());
        assert_eq!(waiting.release(Some(4)), 1);
        assert_eq!(at3.try_recv().unwrap(), Ok(vec![]));
        assert!(at5a.try_recv().is_err());
        assert_eq!(waiting.release(Some(9)), 2);
        assert_eq!(at5a.try_recv().unwrap(), Ok(vec![]));
        assert_eq!(at5b.try_recv().unwrap(), Ok(vec![]));
        assert!(at9.try_recv().is_err());
        assert_eq!(waiting.release(None), 1, "an empty frontier: all durable");
        assert_eq!(at9.try_recv().unwrap(), Ok(vec![]));
        assert_eq!(waiting.release(None), 0);
    }

    #[test]
    fn a_request_with_points_the_target_refused_is_answered_with_the_reasons() {
        let mut waiting = Waiting::new(Control::default());
        let mut first = waiter_of(&mut waiting, 3, 1);
        let mut second = waiter_of(&mut waiting, 3, 2);
        waiting.refused(2, "field type conflict".into());
        waiting.refused(2, "field type conflict".into());
        assert_eq!(waiting.release(Some(4)), 2);
        assert_eq!(first.try_recv().unwrap(), Ok(vec![]));
        assert_eq!(
            second.try_recv().unwrap(),
            Ok(vec!["field type conflict".to_string(); 2])
        );
        assert!(waiting.refusals.is_empty(), "nothing kept once answered");
    }

    #[test]
    fn requests_are_numbered_in_queue_order_and_their_epochs_never_go_back() {
        let mut order = TakeOrder::default();
        let mut queue = vec!["c", "b", "a"];
        // Worker 0 at epoch 5, then worker 1 still at epoch 4, then worker 0 at epoch 6.
        assert_eq!(order.take(|| queue.pop(), 5), Some(("a", 1, 5)));
        assert_eq!(order.take(|| queue.pop(), 4), Some(("b", 2, 5)));
        assert_eq!(order.take(|| queue.pop(), 6), Some(("c", 3, 6)));
        assert_eq!(order.take(|| queue.pop(), 7), None);
        assert_eq!(
            (order.seq, order.epoch),
            (3, 6),
            "nothing taken, nothing counted"
        );
    }

    #[test]
    fn points_leave_in_queue_order_whichever_worker_sent_them_first() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        let point = |seq: u64| Point {
            measurement: "m".into(),
            tags: vec![("device".into(), "d".into())],
            fields: vec![("v".into(), crate::model::Value::Int(seq as i64))],
            time: seq as i64,
            device_hash: 0,
        };
        timely::execute(timely::Config::process(2), move |worker| {
            let out = out.clone();
            let mut input = timely::dataflow::InputHandleVec::<u64, Numbered>::new();
            worker.dataflow::<u64, _, _>(|scope| {
                let routed = input
                    .to_stream(scope)
                    .exchange(|(_, _, p): &Numbered| p.device_hash);
                in_queue_order(routed).sink(Pipeline, "Seen", move |(input, _)| {
                    input.for_each_time(|_, batches| {
                        for batch in batches {
                            out.lock()
                                .unwrap()
                                .extend(batch.drain(..).map(|(_, p)| p.time));
                        }
                    });
                });
            });
            if worker.index() == 1 {
                // Worker 1 took request 2 and sends it at once.
                input.send((2, None, point(2)));
            } else {
                // Worker 0 took request 1 just before, but sends it after request 2 has
                // reached the device's worker (worker 0).
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(300) {
                    worker.step();
                }
                input.send((1, None, point(1)));
            }
            drop(input);
        })
        .unwrap()
        .join();
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_failed_job_answers_waiting_requests_with_its_failure() {
        let control = Control::default();
        let mut waiting = Waiting::new(control.clone());
        let mut answer = waiter(&mut waiting, 7);
        control.fail(crate::error::Failure::fatal("access denied"));
        drop(waiting);
        assert_eq!(answer.try_recv().unwrap(), Err("access denied".to_string()));
    }

    #[test]
    fn a_stopped_job_drops_waiting_requests_without_an_answer() {
        let mut waiting = Waiting::new(Control::default());
        let mut answer = waiter(&mut waiting, 7);
        drop(waiting);
        assert!(matches!(
            answer.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
