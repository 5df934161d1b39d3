//! The CDC dataflow, assembled top to bottom in [`run`].
//!
//! ```text
//!  worker 0                                   every worker
//!  ┌────────┐ row changes ┌──────────────────────────┐ changes ┌──────┐
//!  │ follow │────────────▶│ map, consolidate, decide │───────▶│ sink │──┐ acks
//!  └────────┘             │ (exchange by device)      │        └──────┘  │ (frontier only)
//!      │ positions        └──────────────────────────┘                   │
//!      ▼                                                                  │
//!  ┌──────────────────┐◀──────────────────────────────────────────────────┘
//!  │ commit positions │  records the binlog position once its epoch is durable
//!  └──────────────────┘
//! ```
//!
//! The sink runs in ordered mode: each point's changes reach the target in the order they
//! happened, whatever the batching and the requests in flight.

use super::changes::to_sink_changes;
use super::commit::{commit, CdcProgress, Checkpoint, Positions};
use super::follow::{follow, FollowContext, Reached};
use super::{sink, Cluster, EpochClock, Services};
use crate::checkpoint::store::FileStore;
use crate::checkpoint::CdcState;
use crate::error::Failure;
use crate::mapping::Mappings;
use crate::sink::Sink;
use crate::source::ChangeSource;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

/// Everything a CDC run needs, built by the caller.
pub struct Cdc<S: Sink> {
    /// The change log.
    pub source: Arc<dyn ChangeSource>,
    /// The compiled mappings.
    pub mappings: Arc<Mappings>,
    /// The target.
    pub sink: Arc<S>,
    /// Where to resume (every process needs it; only worker 0 reads).
    pub state: CdcState,
    /// Process 0: where the state is written.
    pub store: Option<FileStore>,
    /// How often durable progress is written.
    pub checkpoint_interval: Duration,
    /// Length of an epoch.
    pub epoch: Duration,
    /// Backpressure bound.
    pub max_in_flight_rows: u64,
    /// Stop at the first heartbeat (the server has nothing newer).
    pub until_caught_up: bool,
    /// Shared with the lag monitor.
    pub progress: Arc<Mutex<CdcProgress>>,
    /// Runtime, dead letters, counters and control.
    pub services: Services,
}

/// Follows the change log until stopped (or caught up), with every change written and its
/// position recorded. `Err` carries the job's failure.
pub fn run<S: Sink>(job: Cdc<S>, cluster: &Cluster) -> Result<(), Failure> {
    let control = job.services.control.clone();
    let clock = EpochClock {
        start: Instant::now(),
        tick: job.epoch,
    };
    let store = Arc::new(Mutex::new(job.store));
    let Cdc {
        source,
        mappings,
        sink,
        state,
        checkpoint_interval,
        max_in_flight_rows,
        until_caught_up,
        progress,
        services,
        ..
    } = job;
    let Services {
        runtime,
        dead_letters,
        counters,
        ..
    } = services.clone();

    let worker_control = control.clone();
    super::workers::execute(cluster, &control, move |worker| {
        let control = worker_control.clone();
        let checkpoint = if worker.index() == 0 {
            store.lock().unwrap_or_else(|p| p.into_inner()).take().map(
                |store| -> Box<dyn Checkpoint<Reached>> {
                    Box::new(Positions {
                        state: state.clone(),
                        store,
                        counters: counters.clone(),
                        progress: progress.clone(),
                        status: services.status.clone(),
                    })
                },
            )
        } else {
            None
        };
        let durable = ProbeHandle::new();

        worker.dataflow::<u64, _, _>(|scope| {
            let (changes, positions) = follow(
                scope,
                FollowContext {
                    source: source.clone(),
                    from: state.position.clone(),
                    runtime: runtime.clone(),
                    dead_letters: dead_letters.clone(),
                    counters: counters.clone(),
                    control: control.clone(),
                    clock,
                    max_in_flight_rows,
                    durable: durable.clone(),
                    until_caught_up,
                },
            );
            let changes = to_sink_changes(
                changes,
                mappings.clone(),
                dead_letters.clone(),
                counters.clone(),
            );
            let acks = sink::write(
                changes,
                sink::Changes,
                sink.clone(),
                &services,
                sink::Order::Changes(checkpoint_interval),
                None,
            )
            .probe_with(&durable);
            commit(
                positions,
                acks,
                checkpoint,
                checkpoint_interval,
                control.clone(),
            );
        });
    })
}
