//! Counters a job keeps while it runs: the progress display reads them, the exit summary
//! prints them. One set per process, shared by its workers and its tokio tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    /// Write attempts retried after a transient failure.
    pub retries: AtomicU64,
    /// Splits the planner made (process 0 only).
    pub splits_planned: AtomicU64,
    /// Splits finished and durable (process 0 only).
    pub splits_done: AtomicU64,
    /// Rows the planner expects in the splits still to read (process 0 only), for the ETA.
    pub rows_expected: AtomicU64,
    /// Microseconds from process start to the first acknowledged write (0: none yet).
    pub first_write_us: AtomicU64,
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

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
