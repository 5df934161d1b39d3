//! Counters a job keeps while it runs: the progress display reads them, the exit summary
//! prints them. One set per process, shared by its workers and its tokio tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Source reads and queries retried after a transient failure, by every source of this
/// process (one job), opening and planning included: sources keep no handle to the job's
/// [`Counters`], so [`crate::retry::retry`] counts their retries here.
pub static SOURCE_RETRIES: AtomicU64 = AtomicU64::new(0);

/// Source retries so far in this process.
pub fn source_retries() -> u64 {
    SOURCE_RETRIES.load(Ordering::Relaxed)
}

/// When this process started (the first call; `main` makes it early).
pub fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Running totals of one process.
#[derive(Default, Debug)]
pub struct Counters {
    /// Rows read from the source.
    pub rows_read: AtomicU64,
    /// Points acknowledged by the target.
    pub points_written: AtomicU64,
    /// Write requests acknowledged by the target.
    pub requests: AtomicU64,
    /// Write and delete attempts (the sink's) retried after a transient failure; the
    /// source's are [`source_retries`].
    pub retries: AtomicU64,
    /// Splits the planner made (process 0 only).
    pub splits_planned: AtomicU64,
    /// Splits finished and durable (process 0 only).
    pub splits_done: AtomicU64,
    /// Rows the planner expects in the splits still to read (process 0 only), for the ETA.
    pub rows_expected: AtomicU64,
    /// Microseconds from process start to the first acknowledged write (0: none yet).
    pub first_write_us: AtomicU64,
    /// Points the mapping produced (rows out of the map operator).
    pub points_mapped: AtomicU64,
    /// Points deleted in the target (CDC).
    pub points_deleted: AtomicU64,
    /// Points deleted again: the target still held them after a delete (CDC).
    pub points_deleted_again: AtomicU64,
    /// Row changes (insert, update, delete) read from a change log (CDC).
    pub changes_read: AtomicU64,
    /// Transactions read from a change log (CDC).
    pub transactions_read: AtomicU64,
    /// Sum of the time write requests took, retries included, in microseconds.
    pub write_latency_us: AtomicU64,
    /// CDC lag: bytes of change log between the committed position and the server's end.
    pub lag_bytes: AtomicU64,
    /// CDC lag: milliseconds between now and the oldest change not yet durable (0 when
    /// every change read is durable and the reader is at the server's end). For
    /// `backfill+follow`: between now and the watermark.
    pub lag_ms: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Restarts from the checkpoint after a transient failure (the restart strategy).
    pub restarts: AtomicU64,
}

impl Counters {
    /// A fresh set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge-like counter (the plan's size, which a restart loads again).
    pub fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }

    /// Notes an acknowledged write; the first one fixes `first_write_us`.
    pub fn written(&self, points: u64) {
        Self::add(&self.points_written, points);
        Self::add(&self.requests, 1);
        if Self::get(&self.first_write_us) == 0 {
            let us = (process_start().elapsed().as_micros() as u64).max(1);
            let _ =
                self.first_write_us
                    .compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Notes how long one write request (with its retries) took.
    pub fn write_took(&self, took: std::time::Duration) {
        Self::add(&self.write_latency_us, took.as_micros() as u64);
        metrics::histogram!("tsmig_write_request_seconds").record(took.as_secs_f64());
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Serves the job's metrics for Prometheus at `http://<addr>/metrics`, refreshed from the
/// counters every second: rows in and out per operator (read, mapped, written, deleted,
/// dead-lettered), requests, retries, write latency, checkpoints and, for CDC, the lag in
/// bytes and seconds. Call inside the tokio runtime.
pub fn serve(
    addr: std::net::SocketAddr,
    counters: Arc<Counters>,
    dead_letters: crate::dead_letter::DeadLetters,
) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("tsmig_write_request_seconds".into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            publish(&counters, dead_letters.count());
        }
    });
    Ok(())
}

/// Copies the counters into the metrics registry.
fn publish(c: &Counters, dead_lettered: u64) {
    use metrics::{counter, gauge};
    let get = Counters::get;
    counter!("tsmig_source_rows_total").absolute(get(&c.rows_read));
    counter!("tsmig_source_changes_total").absolute(get(&c.changes_read));
    counter!("tsmig_source_transactions_total").absolute(get(&c.transactions_read));
    counter!("tsmig_map_points_total").absolute(get(&c.points_mapped));
    counter!("tsmig_sink_points_written_total").absolute(get(&c.points_written));
    counter!("tsmig_sink_points_deleted_total").absolute(get(&c.points_deleted));
    counter!("tsmig_sink_points_deleted_again_total").absolute(get(&c.points_deleted_again));
    counter!("tsmig_sink_requests_total").absolute(get(&c.requests));
    counter!("tsmig_sink_retries_total").absolute(get(&c.retries));
    counter!("tsmig_source_retries_total").absolute(source_retries());
    counter!("tsmig_dead_letters_total").absolute(dead_lettered);
    counter!("tsmig_checkpoints_total").absolute(get(&c.checkpoints));
    counter!("tsmig_restarts_total").absolute(get(&c.restarts));
    gauge!("tsmig_splits_done").set(get(&c.splits_done) as f64);
    gauge!("tsmig_splits_planned").set(get(&c.splits_planned) as f64);
    gauge!("tsmig_cdc_lag_bytes").set(get(&c.lag_bytes) as f64);
    gauge!("tsmig_cdc_lag_seconds").set(get(&c.lag_ms) as f64 / 1000.0);
}
