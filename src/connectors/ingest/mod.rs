//! The ingest source: an HTTP endpoint that speaks InfluxDB's write API.
//!
//! Telegraf, InfluxDB client libraries and anything else that writes line protocol to
//! InfluxDB can write to tsmig instead (`source: {type: ingest}`, run with `-c ingest`);
//! the job maps the points to its sink (Timestream, IoTDB, InfluxDB).
//!
//! ```text
//!  clients ──HTTP──▶ IngestServer ──Ingested──▶ IngestQueue ──try_recv──▶ engine (every worker)
//!    ▲                (auth, limits, parse,        (MPMC, wakes           stamps an epoch, sends
//!    │                 dead letters, 429)          the workers)           `done` once durable
//!    └──── 204 / 400 partial write / 429 / 5xx ◀── waits for `done` ◀──────────────┘
//! ```
//!
//! - [`server`] serves `POST /api/v2/write`, `POST /write`, `GET /ping` and `GET /health`
//!   (HTTP/1.1, optional TLS), checks authentication, names and limits, parses the body
//!   with [`parse::parse_body`] and hands each request's valid points to the engine as one
//!   [`Ingested`].
//! - `connections` bounds and watches the connections (`max_connections`; the header,
//!   body and idle timeouts; which to close to make room), `budget` the request bodies
//!   and points in memory (`max_body_bytes_in_flight`), and [`explain`] says why a bad
//!   line is bad in terms a writer can act on.
//! - [`IngestQueue`] is the engine's end: shared by every worker of the process, never
//!   blocking. A worker registers a waker ([`IngestQueue::on_arrival`]) and is activated
//!   when a request arrives; it takes requests with [`IngestQueue::try_recv`].
//!
//! ## The contract with the engine
//!
//! An [`Ingested`] carries one request's valid points (their order is the body's) and, in
//! the default `ack: durable` mode, `done`: the engine sends `Ok(())` once every point is
//! durable in the sink (the epoch the points were stamped with has passed the probe after
//! the sinks) or `Err(reason)` if the job failed. Only then does the client get its answer
//! (204, or 400 listing the rejected lines, or 500 with the reason). Dropping `done` counts
//! as a failure (503: the client retries; writes are idempotent per series and time). With
//! `ack: async`, `done` is `None` and the client was answered when the points were queued.
//!
//! Backpressure: the server counts the points accepted and not yet released, and answers
//! 429 with `Retry-After` while the count would pass `max_pending_points`. In `durable`
//! mode points are released when `done` fires or is dropped; in `async` mode when the
//! engine takes them from the queue (the engine's own bound on epochs in flight holds them
//! from there).
//!
//! Shutdown ([`server::IngestServer::shutdown`], or the `stop` future given to
//! [`server::IngestServer::start`], e.g. SIGTERM): the server stops accepting connections,
//! finishes the requests in progress — which in `durable` mode means the engine must keep
//! taking requests and acknowledging them until then — and then closes the queue. The
//! engine's source is finished when [`IngestQueue::is_finished`]: closed and empty. An
//! engine that fails calls [`IngestQueue::abandon`]: the requests it never took are
//! answered with the reason at once instead of waiting out `ack_timeout`.
//!
//! Counting: the server adds every accepted point to `rows_read`, and every rejected line
//! to the dead letters (which count themselves); the engine counts nothing more for them.

mod budget;
pub mod config;
mod connections;
pub mod explain;
pub mod parse;
mod plain;
pub mod server;

pub use config::IngestSourceConfig;

/// `type: ingest`, a source: an endpoint that runs until stopped (`-c ingest`).
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "ingest",
    source: Some(|job| {
        let config: IngestSourceConfig = job.file.source.parse(job)?;
        Ok(Box::new(config))
    }),
    sink: None,
};
pub use server::IngestServer;

pub use crate::source::push::{Ack, IngestQueue, Ingested, Waker};
