//! Counters a job keeps while it runs: the progress display reads them, the exit summary
//! prints them. One set per process, shared by its workers and its tokio tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Running totals of one process.
#[derive(Default, Debug)]
pub struct Counters {
    /// Rows read from the source.
    pub rows_read: AtomicU64,
    /// Points acknowledged by the target.
    pub points_written: AtomicU64,
    /// Write requests acknowledged by the target.
    pub requests: AtomicU64,
    /// Write attempts retried after a transient failure.
    pub retries: AtomicU64,
    /// Splits the planner made (process 0 only).
    pub splits_planned: AtomicU64,
    /// Splits finished and durable (process 0 only).
    pub splits_done: AtomicU64,
    /// Rows the planner expects in the splits still to read (process 0 only), for the ETA.
    pub rows_expected: AtomicU64,
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

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
