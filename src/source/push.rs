//! A source that pushes: requests of points handed to the engine as they arrive (the
//! ingest endpoint), each acknowledged once its points are durable. This is the contract
//! between such a source and the engine's ingest dataflow; `connectors::ingest` has the
//! endpoint that fills the queue.
//!
//! An [`Ingested`] carries one request's points (in the body's order) and, when the client
//! waits for durability, `done`: the engine sends `Ok(refused)` once every point is durable
//! in the sink or refused by it (`refused` holds the target's reason for each refused
//! point), or `Err(reason)` if the job failed; dropping it counts as a failure. The
//! [`IngestQueue`] is shared by every worker of the process and never blocks: a worker
//! registers a waker ([`IngestQueue::on_arrival`]) and takes requests with
//! [`IngestQueue::try_recv`]; the source is finished when the queue is closed and empty
//! ([`IngestQueue::is_finished`]); a failed engine [`IngestQueue::abandon`]s it.

// The pushing side (a queue made, filled, its memory held) is the ingest endpoint's: a build
// without that connector has only the engine's side.
#![cfg_attr(not(feature = "ingest"), allow(dead_code))]

use crate::model::Point;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the engine says about one request's points: `Ok` once each is durable in the
/// target or was refused by it (dead-lettered), with the target's reason for each refused
/// one (none: every point is durable); `Err(reason)` if the job failed.
pub type Ack = Result<Vec<String>, String>;

/// One accepted write request: its valid points, and where to say they are durable.
pub struct Ingested {
    /// The request's valid points, in body order.
    pub points: Vec<Point>,
    /// Send Ok(refusals) once durable in the sink (or refused by it), Err(reason) if the job failed; dropping it
    /// counts as failure. `None` for `ack: async` (the client was answered already).
    pub done: Option<tokio::sync::oneshot::Sender<Ack>>,
}

/// A queued request and, in `async` mode, its hold on the pending-points bound (released
/// when the engine takes the request).
struct Queued {
    ingested: Ingested,
    hold: Option<PendingPoints>,
}

/// The engine's end of the endpoint: shared by every worker of the process (MPMC), never
/// blocking. Cheap to clone.
#[derive(Clone)]
pub struct IngestQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    items: Mutex<VecDeque<Queued>>,
    wakers: Mutex<Vec<Waker>>,
    closed: AtomicBool,
}

/// Called when a request arrives (or the queue closes): activates a worker.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

impl IngestQueue {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(QueueInner {
                items: Mutex::new(VecDeque::new()),
                wakers: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Takes the oldest request, if any.
    pub fn try_recv(&self) -> Option<Ingested> {
        let queued = lock(&self.inner.items).pop_front()?;
        drop(queued.hold);
        Some(queued.ingested)
    }

    /// Registers `wake`, called whenever a request arrives and when the queue closes.
    /// Every registered waker is called (any worker may take the request).
    pub fn on_arrival(&self, wake: Waker) {
        lock(&self.inner.wakers).push(wake);
    }

    /// Refuses further requests (they get 503). Requests already queued stay to be taken.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Closes the queue and answers every request still in it with `Err(reason)` (500 to
    /// its client): for an engine that fails before taking them.
    pub fn abandon(&self, reason: &str) {
        self.close();
        let left: Vec<Queued> = lock(&self.inner.items).drain(..).collect();
        for queued in left {
            if let Some(done) = queued.ingested.done {
                let _ = done.send(Err(reason.to_string()));
            }
        }
    }

    /// Whether the queue refuses further requests.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Closed and empty: nothing more will come.
    pub fn is_finished(&self) -> bool {
        // Empty checked under the lock, closed after it: `push` checks closed under it.
        let items = lock(&self.inner.items);
        items.is_empty() && self.is_closed()
    }

    /// Requests waiting to be taken.
    pub fn len(&self) -> usize {
        lock(&self.inner.items).len()
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a request; gives it back if the queue is closed.
    pub(crate) fn push(
        &self,
        ingested: Ingested,
        hold: Option<PendingPoints>,
    ) -> Result<(), Ingested> {
        {
            let mut items = lock(&self.inner.items);
            if self.is_closed() {
                return Err(ingested);
            }
            items.push_back(Queued { ingested, hold });
        }
        self.wake_all();
        Ok(())
    }

    fn wake_all(&self) {
        // Cloned out so a waker may touch the queue without deadlocking.
        let wakers: Vec<Waker> = lock(&self.inner.wakers).clone();
        for wake in wakers {
            wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bound on points accepted and not yet released (`max_pending_points`).
pub(crate) struct Pending {
    count: AtomicU64,
    max: u64,
}

/// A hold on `n` pending points, released on drop.
pub(crate) struct PendingPoints {
    pending: Arc<Pending>,
    n: u64,
}

impl Pending {
    pub(crate) fn new(max: u64) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            max,
        })
    }

    /// Holds `n` more points, or `None` while that would pass the bound. A request larger
    /// than the bound is still taken when nothing else is pending, or it could never be.
    pub(crate) fn try_hold(self: &Arc<Self>, n: u64) -> Option<PendingPoints> {
        let mut current = self.count.load(Ordering::Acquire);
        loop {
            if current > 0 && current.saturating_add(n) > self.max {
                return None;
            }
            match self.count.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(PendingPoints {
                        pending: self.clone(),
                        n,
                    })
                }
                Err(now) => current = now,
            }
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for PendingPoints {
    fn drop(&mut self) {
        self.pending.count.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn request(n: usize) -> Ingested {
        Ingested {
            points: (0..n)
                .map(|i| Point {
                    measurement: "m".into(),
                    tags: vec![],
                    fields: vec![("f".into(), crate::model::Value::Int(i as i64))],
                    time: i as i64,
                    device_hash: 0,
                })
                .collect(),
            done: None,
        }
    }

    #[test]
    fn queue_wakes_every_worker_and_hands_each_request_out_once() {
        let queue = IngestQueue::new();
        let woken = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let woken = woken.clone();
            queue.on_arrival(Arc::new(move || {
                woken.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let other = queue.clone();
        queue.push(request(1), None).ok().unwrap();
        queue.push(request(2), None).ok().unwrap();
        assert_eq!(woken.load(Ordering::SeqCst), 4);
        assert_eq!(other.try_recv().unwrap().points.len(), 1);
        assert_eq!(queue.try_recv().unwrap().points.len(), 2);
        assert!(queue.try_recv().is_none());

        queue.push(request(3), None).ok().unwrap();
        queue.close();
        assert_eq!(woken.load(Ordering::SeqCst), 8, "closing wakes too");
        assert!(queue.push(request(4), None).is_err(), "closed: refused");
        assert!(!queue.is_finished(), "one request still to take");
        assert_eq!(queue.try_recv().unwrap().points.len(), 3);
        assert!(queue.is_finished());
    }

    #[test]
    fn pending_bound_holds_until_released() {
        let pending = Pending::new(5);
        let a = pending.try_hold(3).unwrap();
        assert!(pending.try_hold(3).is_none(), "3 + 3 > 5");
        let b = pending.try_hold(2).unwrap();
        assert_eq!(pending.get(), 5);
        drop(a);
        assert_eq!(pending.get(), 2);
        drop(b);
        let big = pending
            .try_hold(50)
            .expect("alone, a big request still passes");
        assert!(pending.try_hold(1).is_none());
        drop(big);
        assert_eq!(pending.get(), 0);

        // In async mode the hold rides in the queue and is released when taken.
        let queue = IngestQueue::new();
        queue
            .push(request(4), Some(pending.try_hold(4).unwrap()))
            .ok()
            .unwrap();
        assert_eq!(pending.get(), 4);
        queue.try_recv().unwrap();
        assert_eq!(pending.get(), 0);
    }

    #[test]
    fn abandoning_answers_what_is_still_queued() {
        let queue = IngestQueue::new();
        let (done, mut answer) = tokio::sync::oneshot::channel();
        let mut waiting = request(1);
        waiting.done = Some(done);
        queue.push(waiting, None).ok().unwrap();
        queue.abandon("the sink refused the job's credentials");
        assert_eq!(
            answer.try_recv().unwrap(),
            Err("the sink refused the job's credentials".to_string())
        );
        assert!(queue.is_finished());
    }
}
