//! The engine: the only module that knows timely dataflow.
//!
//! A backfill is one dataflow per worker, assembled in [`backfill::run`]:
//!
//! ```text
//!  worker 0 only                   every worker
//!  ┌────────┐ splits  ┌──────────────┐ batches ┌──────────┐ batches ┌──────────────┐ points ┌──────────┐ points ┌──────┐
//!  │  plan  │───────▶│ read splits  │───────▶│ exchange │───────▶│ decode + map │──────▶│ exchange │──────▶│ sink │──┐
//!  └────────┘ (split  └──────────────┘ (split  │ (to the  │         └──────────────┘        │ (device) │       └──────┘  │ acks
//!             id → worker)    │        by row's │ worker   │                                 └──────────┘                 │ (frontier
//!                             │        device)  │ named)   │                                                              │  only)
//!                             │                 └──────────┘                                                              │
//!                             │ finished split ids (exchanged to worker 0)                                                │
//!                             ▼                                                                                           │
//!                        ┌──────────┐◀──────────────────────────────────────────────────────────────────────────────────────┘
//!                        │  commit  │  records a split as finished once its epoch is durable
//!                        └──────────┘
//! ```
//!
//! Timestamps are epochs (`u64`): ticks of a clock of `flow.epoch` each. Readers stamp rows
//! with the current epoch, sinks hold a capability for every epoch with writes not yet
//! acknowledged, and so the frontier after the sinks is the oldest epoch not yet durable on
//! every worker of every process. The commit operator on worker 0 records a split finished
//! only when that frontier has passed the epoch in which the split's last row was read —
//! that is the checkpoint barrier, with no barrier messages. The same frontier, probed on
//! each worker, is the readers' backpressure.
//!
//! The other dataflows: [`cdc`] (the binlog followed on worker 0), [`ingest`] (points
//! written to the line-protocol endpoint, each request acknowledged from the same
//! frontier) and [`verify`].

pub mod backfill;
pub mod cdc;
mod changes;
mod commit;
mod follow;
pub mod ingest;
mod map;
mod plan;
mod read;
mod sink;
pub mod verify;
mod workers;

pub use commit::CdcProgress;

use crate::error::Failure;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every operator that does async work shares: the runtime, the dead-letter file,
/// the counters and the stop/failure control.
#[derive(Clone)]
pub struct Services {
    /// The runtime the connectors' async work runs on.
    pub runtime: tokio::runtime::Handle,
    /// Where rejected records go.
    pub dead_letters: crate::dead_letter::DeadLetters,
    /// Running totals.
    pub counters: Arc<crate::metrics::Counters>,
    /// Stop request and failure.
    pub control: Control,
    /// What the status page shows (splits read, checkpoints).
    pub status: crate::status::StatusBoard,
}

/// Where the workers of a job run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads per process.
    pub workers: usize,
    /// This process's index.
    pub process: usize,
    /// `host:port` of every process, in process order; empty for a single process.
    pub hosts: Vec<String>,
}

impl Cluster {
    /// One process with `workers` threads.
    pub fn local(workers: usize) -> Self {
        Self {
            workers,
            process: 0,
            hosts: Vec::new(),
        }
    }

    /// Number of processes.
    pub fn processes(&self) -> usize {
        self.hosts.len().max(1)
    }

    fn timely_config(&self) -> timely::Config {
        let communication = if self.hosts.len() > 1 {
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.hosts.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Thread
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// A job-wide stop request (SIGTERM) and the first failure, shared by every worker and
/// task of a process. Recording a failure stops the job on every worker of every process
/// (see [`workers`]).
#[derive(Clone, Default)]
pub struct Control {
    inner: Arc<ControlState>,
}

#[derive(Default)]
struct ControlState {
    stop: AtomicBool,
    cutover: AtomicBool,
    failed: AtomicBool,
    failure: Mutex<Option<Recorded>>,
    /// The process's worker threads, unparked when the job fails.
    workers: Mutex<Vec<std::thread::Thread>>,
}

/// The job's first failure.
struct Recorded {
    failure: Failure,
    /// Met in this process (announced to the others), not heard from another.
    local: bool,
}

impl Control {
    /// Asks sources to stop reading; what was read is still written and checkpointed.
    pub fn request_stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested (SIGTERM), or the job failed: sources stop reading.
    pub fn stopping(&self) -> bool {
        self.stop_requested() || self.failure().is_some()
    }

    /// Asks a job that follows a source to stop once it has caught up (as
    /// `--until-caught-up`): the cutover.
    pub fn request_cutover(&self) {
        self.inner.cutover.store(true, Ordering::SeqCst);
    }

    /// Whether a cutover was asked for.
    pub fn cutover_requested(&self) -> bool {
        self.inner.cutover.load(Ordering::SeqCst)
    }

    /// Whether a stop was requested (SIGTERM): the job must not restart.
    pub fn stop_requested(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }

    /// Forgets the failure (and the workers it woke) before a restart; a stop requested
    /// stays requested.
    pub fn reset(&self) {
        *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner.failed.store(false, Ordering::SeqCst);
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Records the job's failure (the first one wins) and ends the job on every worker:
    /// the caller just returns; its worker drops the dataflow before its next step.
    pub fn fail(&self, failure: Failure) {
        self.record(failure, true);
    }

    /// Records the job's failure (the first one wins) and asks the sources to stop, but
    /// lets the dataflow drain: what was read before it is still written and checkpointed,
    /// and the job then ends with this failure. For a reader that cannot go on while the
    /// rest of the dataflow can (CDC stopping at a schema change).
    pub fn fail_after_drain(&self, failure: Failure) {
        let mut recorded = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.is_none() {
            *recorded = Some(Recorded {
                failure,
                local: true,
            });
        }
    }

    /// Records a failure another process announced.
    pub(crate) fn fail_remote(&self, process: usize, failure: Failure) {
        let failure = Failure {
            message: format!("process {process} failed: {}", failure.message),
            ..failure
        };
        self.record(failure, false);
    }

    fn record(&self, failure: Failure, local: bool) {
        {
            let mut recorded = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
            if recorded.is_none() {
                *recorded = Some(Recorded { failure, local });
            }
        }
        self.inner.failed.store(true, Ordering::SeqCst);
        for worker in self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            worker.unpark();
        }
    }

    /// Whether the job failed (and its dataflow is being dropped).
    pub fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::SeqCst)
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<Failure> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.failure.clone())
    }

    /// The failure, if this process met it (and must announce it to the others).
    fn local_failure(&self) -> Option<Failure> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|r| r.local)
            .map(|r| r.failure.clone())
    }

    /// A worker thread to wake when the job fails.
    fn register_worker(&self, thread: std::thread::Thread) {
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(thread);
    }
}

/// The epoch clock: epoch `n` is the `n`-th tick of `tick` since the job started.
#[derive(Clone, Copy)]
struct EpochClock {
    start: Instant,
    tick: Duration,
}

impl EpochClock {
    fn now(&self) -> u64 {
        (self.start.elapsed().as_nanos() / self.tick.as_nanos().max(1)) as u64
    }
}
