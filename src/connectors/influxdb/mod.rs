//! The InfluxDB 1.x source: every point of some measurements, read in queries that are
//! each bounded, so an old server that falls over on large answers never sees one.
//!
//! InfluxDB 1.x (1.4 at least) dies on queries answering more than ~100k rows, and under
//! concurrent load; LIMIT/OFFSET paging does not help, since a raw query opens a cursor
//! for every series whatever its LIMIT. So every query here is bounded by construction:
//!
//! ```text
//!  SHOW MEASUREMENTS / FIELD KEYS / TAG KEYS ─► schema: time, tags (text), fields (typed)
//!  first/last time (ORDER BY time LIMIT 1) ─► buckets of `bucket` (1h), epoch-aligned
//!  COUNT(*) GROUP BY time(bucket) ─► points per bucket (the sum of the fields' counts: an
//!                                    upper bound of the rows a read returns)
//!  bucket > max_points_per_query? ─► halve in time (down to 1s), then divide by series
//!                                    (COUNT(*) GROUP BY *, paged with SLIMIT) into groups
//!                                    of whole series, a too-big series halved in time again
//!  one split = measurement × [start, end) × series predicate, read with chunked=true
//! ```
//!
//! A split is read as one `SELECT <fields> ... GROUP BY *` with `chunked=true` and
//! `epoch=ns`; each chunk becomes rows sent on at once, so memory holds a chunk at most.
//! Every query — planning and reading — passes one semaphore of `concurrency` permits
//! shared by the process's workers, and rows pass one rate limiter. A query that fails
//! transiently (network, 5xx, a stalled answer) is retried with backoff and the split is
//! re-read from its start: rows sent twice are harmless, since writes are idempotent per
//! series and time.
//!
//! `backfill+follow` plans its polling rounds the same way, over the round's time range
//! (`plan_window`): the bucket counts of `[from, to)`, the first and last bucket cut to it.
//! Only buckets with points when planned become splits; a point written later into an
//! empty bucket of the range is read by the next round (it re-reads the lateness window).
//!
//! `source_config.rs` is the source's job-file section, `source.rs` plans and reads,
//! `decode.rs` turns JSON values into typed values by the field's declared type. The sink
//! side (1.x and 2.x): `sink_config.rs`, `sink.rs`, `encoding.rs` (line protocol),
//! `client.rs` (writes, deletes, queries), `read.rs` (verify's read-back).

pub mod client;
pub mod decode;
pub mod encoding;
pub mod read;
pub mod sink;
pub mod sink_config;
pub mod source;
pub mod source_config;

pub use sink::InfluxSink;
pub use source::InfluxSource;

/// `type: influxdb`: a source (1.x) and a sink (1.x and 2.x).
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "influxdb",
    source: Some(|job| {
        let (mut config, retry) =
            crate::source::parse_section::<source_config::InfluxSourceConfig>(job)?;
        config.retry = retry;
        Ok(Box::new(config))
    }),
    sink: Some(|job| {
        let (config, batching) = crate::sink::parse_section::<sink_config::InfluxSinkConfig>(job)?;
        Ok(Box::new(sink_config::InfluxSinkSpec { config, batching }))
    }),
};
