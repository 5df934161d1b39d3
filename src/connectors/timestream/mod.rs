//! The Amazon Timestream sink: points become multi-measure records, written with
//! `WriteRecords` in requests of at most 100 records of one table.
//!
//! ```text
//!  push(point) ── encode + check limits ──► group of its table (≤ 100 records) ─┐
//!        │ refused: dead letter with the reason                               │
//!        ▼                                                                    ▼
//!  RecordBatch = [group(table A), group(table B), group(table A), ...]   write(): one
//!                                                                      WriteRecords per group
//! ```
//!
//! A batch may hold several tables: it keeps one group per table and request, and
//! [`Sink::write`] sends them one after the other. Each group remembers whether it was
//! written and which of its records Timestream rejected, so a retry after a transient
//! failure (throttling, 5xx) sends only the groups not yet written, and the rejections of a
//! group already written are still reported. `RejectedRecords` becomes
//! [`WriteError::Partial`]: exactly those records are dead-lettered, with their index and
//! Timestream's reason, and the rest count as written. A ValidationException (the request
//! as a whole) bisects the batch by [`Batch::split`] until the bad record stands alone.
//! Concurrency comes from the engine: `in_flight` batches per worker are written at once,
//! so `batch_size: 100` with a higher `in_flight` gives that many requests in flight.
//!
//! Every record carries a version (see [`encoding::next_version`]) so a rewrite of the same
//! point is an upsert. The database is created before the first write and each table on
//! its first write (`create: true`).

pub mod client;
pub mod config;
pub mod encoding;
pub mod sink;

pub use sink::TimestreamSink;

/// `type: timestream`, a sink only.
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "timestream",
    source: None,
    sink: Some(|job| {
        let (config, batching) = crate::sink::parse_section::<config::TimestreamSinkConfig>(job)?;
        Ok(Box::new(config::TimestreamSinkSpec { config, batching }))
    }),
};
