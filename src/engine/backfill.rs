//! The backfill dataflow, assembled top to bottom in [`run`].

use super::commit::{commit, Checkpoint, Splits};
use super::read::{read_splits, ReadContext, Router};
use super::{map, plan, sink, Cluster, EpochClock, Services};
use crate::checkpoint::store::FileStore;
use crate::checkpoint::BackfillState;
use crate::error::Failure;
use crate::mapping::Mappings;
use crate::model::Point;
use crate::sink::Sink;
use crate::source::BoundedSource;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Exchange as _, Probe};

/// Everything a backfill needs, built by the caller.
pub struct Backfill<S: Sink> {
    /// The source, its projections already set.
    pub source: Arc<dyn BoundedSource>,
    /// The compiled mappings.
    pub mappings: Arc<Mappings>,
    /// The target.
    pub sink: Arc<S>,
    /// Process 0: the recorded state (plan and finished splits) and where to write it.
    pub state: Option<(BackfillState, FileStore)>,
    /// How often durable progress is written.
    pub checkpoint_interval: Duration,
    /// Length of an epoch.
    pub epoch: Duration,
    /// Backpressure bound per worker.
    pub max_in_flight_rows: u64,
    /// Runtime, dead letters, counters and control.
    pub services: Services,
}

/// Runs the backfill on this process's workers until every split is read and durable (or
/// a stop was requested and everything read is durable). `Err` carries the job's failure.
pub fn run<S: Sink>(job: Backfill<S>, cluster: &Cluster) -> Result<(), Failure> {
    let control = job.services.control.clone();
    // Worker 0 takes the plan and the state store; other workers get none.
    let state = Arc::new(Mutex::new(job.state));
    let clock = EpochClock {
        start: Instant::now(),
        tick: job.epoch,
    };
    let Backfill {
        source,
        mappings,
        sink,
        checkpoint_interval,
        max_in_flight_rows,
        services,
        ..
    } = job;
    let Services {
        runtime,
        dead_letters,
        counters,
        ..
    } = services.clone();

    // timely numbers workers process by process.
    let local = cluster.process * cluster.workers..(cluster.process + 1) * cluster.workers;
    let worker_control = control.clone();
    super::workers::execute(cluster, &control, move |worker| {
        let control = worker_control.clone();
        let owned = if worker.index() == 0 {
            state.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            None
        };
        let (pending, checkpoint) = match owned {
            Some((state, store)) => {
                let pending = state.pending();
                let checkpoint: Box<dyn Checkpoint<u64>> = Box::new(Splits {
                    state,
                    store,
                    counters: counters.clone(),
                    status: services.status.clone(),
                });
                (pending, Some(checkpoint))
            }
            None => (Vec::new(), None),
        };
        let durable = ProbeHandle::new();

        worker.dataflow::<u64, _, _>(|scope| {
            // The sink tells this worker's reader when as many batches wait as may be in
            // flight: the reader then takes no more rows (`sink::Backlog`).
            let backlog = sink::Backlog::default();
            let splits = plan::splits(scope, pending);
            let (batches, finished) = read_splits(
                splits,
                ReadContext {
                    source: source.clone(),
                    runtime: runtime.clone(),
                    dead_letters: dead_letters.clone(),
                    counters: counters.clone(),
                    control: control.clone(),
                    clock,
                    max_in_flight_rows,
                    durable: durable.clone(),
                    status: services.status.clone(),
                    backlog: backlog.clone(),
                    router: Router {
                        mappings: mappings.clone(),
                        peers: scope.peers(),
                        here: scope.index(),
                        local: local.clone(),
                    },
                },
            );
            // Rows go to the worker that will write their points before they are decoded
            // and mapped (`read::Router`), and its sink maps them as it writes them
            // (`map::MapRows`): a row or point made on one worker and written (then freed)
            // on another costs a cross-thread free of each of its allocations and the cache
            // lines it crossed in, and a point made long before it is encoded is read back
            // from memory. Rows whose owner is not known are mapped here and their points
            // routed.
            let feed = map::batches_to_feed(
                batches,
                mappings.clone(),
                dead_letters.clone(),
                control.clone(),
            )
            .exchange(|f: &map::Feed| f.route());
            let feeder = map::MapRows {
                mappings: mappings.clone(),
                dead_letters: dead_letters.clone(),
                control: control.clone(),
                values: Vec::new(),
                point: Point::default(),
                worker: (scope.index() as u64, scope.peers() as u64),
            };
            let acks = sink::write(
                feed,
                feeder,
                sink.clone(),
                &services,
                sink::Order::Any,
                Some(backlog),
            )
            .probe_with(&durable);
            commit(
                finished,
                acks,
                checkpoint,
                checkpoint_interval,
                control.clone(),
            );
        });
    })
}
