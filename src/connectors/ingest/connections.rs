//! The endpoint's connections: the bound on how many are served at once
//! (`max_connections`), what each is doing, and which to close when a client stalls or
//! room must be made.
//!
//! ```text
//!             accept ─▶ slot free? ─yes─▶ served: Head ─▶ Body ─▶ Answering ─▶ Idle ─┐
//!                          │ no              ▲  headers   body in,    answered    │
//!                          ▼                 │  read      parsing,               │
//!   close a victim: Idle (longest idle), Head │            waiting                 │
//!   (oldest), Body (slowest); the newcomer    └──── first byte of the next request ┘
//!   waits for its slot, accept does not run
//! ```
//!
//! Each connection's [`Connection`] is shared by its task (which enforces the header and
//! idle timeouts: [`Connection::deadline`]), its request handler (which moves it through
//! the phases, counts body bytes and enforces the body timeout) and the registry (which
//! picks eviction victims: [`victim`], pure and unit-tested). A connection in `Answering`
//! has a whole request in; it is never closed to make room.
//!
//! The bound is a semaphore: a connection holds a permit from accept to close. When none
//! is free the accept loop takes one more connection (so room is made only when someone
//! knocks), closes a victim and waits for its permit: at most one connection past the
//! bound is open, and the rest wait in the kernel's listen queue, costing no descriptor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// A connection younger than this (in its phase) is not closed to make room: a real
/// client sends its headers and body in less, a stalled one shows itself by then.
pub(super) const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Waiting for, or reading, a request's headers (or a TLS handshake).
    Head = 0,
    /// Its handler is reading the request's body.
    Body = 1,
    /// The body is in: parsing, queued, waiting for the engine, answering.
    Answering = 2,
    /// Kept alive between requests.
    Idle = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Head,
            1 => Phase::Body,
            2 => Phase::Answering,
            _ => Phase::Idle,
        }
    }
}

/// The endpoint's timeouts (see the config's docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
}

/// One connection's state, shared by its task, its handler and the registry.
pub(super) struct Connection {
    pub remote: SocketAddr,
    id: u64,
    epoch: Instant,
    phase: AtomicU8,
    /// When the phase began, in microseconds since `epoch`.
    since_us: AtomicU64,
    /// Bytes received in this `Head` phase (0: the client has not started a request).
    head_bytes: AtomicU64,
    /// Bytes of the body received in this `Body` phase.
    body_bytes: AtomicU64,
    /// Woken on every phase change: the connection's task recomputes its deadline.
    pub changed: Notify,
    /// Set when the connection is chosen to make room.
    evicted: watch::Sender<bool>,
}

impl Connection {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// How long the connection has been in its phase.
    pub fn in_phase_for(&self) -> Duration {
        let since = self.since_us.load(Ordering::Acquire);
        Duration::from_micros(self.now_us().saturating_sub(since))
    }

    pub fn enter(&self, phase: Phase) {
        self.since_us.store(self.now_us(), Ordering::Release);
        self.head_bytes.store(0, Ordering::Release);
        self.body_bytes.store(0, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_one();
    }

    /// Whether the client has sent anything of the request it is on.
    pub fn has_started_a_request(&self) -> bool {
        self.phase() != Phase::Head || self.head_bytes.load(Ordering::Acquire) > 0
    }

    /// Notes `n` bytes of body received.
    pub fn body_received(&self, n: usize) {
        self.body_bytes.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// Notes `n` bytes read from the client: the first of a new request ends `Idle`.
    fn received(&self, n: usize) {
        match self.phase() {
            Phase::Idle => {
                self.enter(Phase::Head);
                self.head_bytes.store(n as u64, Ordering::Release);
            }
            Phase::Head => {
                self.head_bytes.fetch_add(n as u64, Ordering::AcqRel);
            }
            Phase::Body | Phase::Answering => {}
        }
    }

    /// When the connection's task must act (header or idle timeout), if it must.
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<tokio::time::Instant> {
        let limit = match self.phase() {
            Phase::Head => timeouts.header,
            Phase::Idle => timeouts.idle,
            // The handler times the body; a request whose body is in is not timed here.
            Phase::Body | Phase::Answering => return None,
        };
        let since = Duration::from_micros(self.since_us.load(Ordering::Acquire));
        Some(tokio::time::Instant::from_std(self.epoch + since + limit))
    }

    pub fn evict(&self) {
        self.evicted.send_replace(true);
    }

    pub fn is_evicted(&self) -> bool {
        *self.evicted.borrow()
    }

    /// Completes once the connection is chosen to make room.
    pub fn evicted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut evicted = self.evicted.subscribe();
        async move {
            let _ = evicted.wait_for(|e| *e).await;
        }
    }

    fn seen(&self) -> Seen {
        Seen {
            phase: self.phase(),
            age: self.in_phase_for(),
            body_bytes: self.body_bytes.load(Ordering::Acquire),
            evicted: self.is_evicted(),
        }
    }
}

/// Every open connection, and the bound.
pub(super) struct Connections {
    epoch: Instant,
    max: usize,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
}

/// A connection's place among the open ones: its permit and its entry, given back on drop.
pub(super) struct Registered {
    pub connection: Arc<Connection>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.connections.open).remove(&self.connection.id);
        metrics::gauge!("tsmig_ingest_connections").decrement(1.0);
    }
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            max,
            slots: Arc::new(Semaphore::new(max)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A free slot, if there is one.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits for a free slot.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed")
    }

    /// Waits until every connection is closed.
    pub async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }

    /// Registers a connection that holds `permit`, in `Head`.
    pub fn register(
        self: &Arc<Self>,
        remote: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            remote,
            id,
            epoch: self.epoch,
            phase: AtomicU8::new(Phase::Head as u8),
            since_us: AtomicU64::new(self.epoch.elapsed().as_micros() as u64),
            head_bytes: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            changed: Notify::new(),
            evicted: watch::Sender::new(false),
        });
        lock(&self.open).insert(id, connection.clone());
        metrics::gauge!("tsmig_ingest_connections").increment(1.0);
        Registered {
            connection,
            connections: self.clone(),
            _permit: permit,
        }
    }

    /// Chooses a connection to close to make room (see [`victim`]) and tells it; returns
    /// it, or `None` when no connection may be closed.
    pub fn evict_one(&self) -> Option<Arc<Connection>> {
        let open = lock(&self.open);
        let connections: Vec<&Arc<Connection>> = open.values().collect();
        let seen: Vec<Seen> = connections.iter().map(|c| c.seen()).collect();
        let chosen = connections[victim(&seen, EVICTION_GRACE)?].clone();
        chosen.evict();
        Some(chosen)
    }
}

/// What eviction sees of a connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    pub phase: Phase,
    /// How long it has been in its phase.
    pub age: Duration,
    pub body_bytes: u64,
    pub evicted: bool,
}

/// Which connection to close to make room, by index: an idle one (the longest idle), else
/// one still sending its headers (the oldest), else the slowest body upload (bytes per
/// second so far); never one already told, one younger than `grace` in `Head` or `Body`,
/// or one `Answering` (its request is in and will be answered).
pub(super) fn victim(seen: &[Seen], grace: Duration) -> Option<usize> {
    seen.iter()
        .enumerate()
        .filter(|(_, s)| !s.evicted)
        .filter_map(|(i, s)| {
            let age = s.age.as_secs_f64();
            let rank = match s.phase {
                Phase::Idle => (0, -age),
                Phase::Head if s.age >= grace => (1, -age),
                Phase::Body if s.age >= grace => (2, s.body_bytes as f64 / age),
                _ => return None,
            };
            Some((i, rank))
        })
        .min_by(|(_, a), (_, b)| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(i, _)| i)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client stream that tells its [`Connection`] what it reads: the first byte of a new
/// request ends `Idle`, and starts the header timeout.
pub(super) struct Watched<S> {
    stream: S,
    connection: Arc<Connection>,
}

impl<S> Watched<S> {
    pub fn new(stream: S, connection: Arc<Connection>) -> Self {
        Self { stream, connection }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.connection.received(n);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(phase: Phase, age_ms: u64, body_bytes: u64) -> Seen {
        Seen {
            phase,
            age: Duration::from_millis(age_ms),
            body_bytes,
            evicted: false,
        }
    }

    #[test]
    fn idle_then_stalled_headers_then_the_slowest_upload_make_room() {
        let grace = Duration::from_secs(1);
        let mut open = vec![
            seen(Phase::Answering, 60_000, 0),
            seen(Phase::Body, 5_000, 5_000_000), // 1 MB/s
            seen(Phase::Body, 10_000, 100),      // 10 B/s: the slowest
            seen(Phase::Head, 3_000, 0),
            seen(Phase::Head, 8_000, 0), // the oldest header
            seen(Phase::Idle, 1_000, 0),
            seen(Phase::Idle, 20_000, 0), // the longest idle
            seen(Phase::Body, 500, 0),    // too young to judge
            seen(Phase::Head, 200, 0),    // too young to judge
        ];
        let mut order = Vec::new();
        while let Some(i) = victim(&open, grace) {
            order.push(i);
            open[i].evicted = true;
        }
        assert_eq!(order, vec![6, 5, 4, 3, 2, 1], "never 0, 7 or 8");
    }

    #[test]
    fn a_bounded_registry_counts_and_evicts() {
        let connections = Connections::new(2);
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = connections.register(remote, connections.try_slot().unwrap());
        let b = connections.register(remote, connections.try_slot().unwrap());
        assert!(connections.try_slot().is_none(), "full");
        a.connection.enter(Phase::Answering);
        b.connection.enter(Phase::Idle);
        let chosen = connections.evict_one().unwrap();
        assert!(Arc::ptr_eq(&chosen, &b.connection));
        assert!(b.connection.is_evicted());
        assert!(
            connections.evict_one().is_none(),
            "a request being answered is never evicted"
        );
        drop(b);
        assert!(connections.try_slot().is_some());
    }
}
