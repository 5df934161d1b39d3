//! Running a job's dataflow on every worker, and ending it on every worker when any part
//! of it fails: the one `timely::execute` of the engine.
//!
//! ```text
//!  every worker of every process
//!  ┌──────────────────────────┐
//!  │ the job's dataflow       │  built by the caller; dropped on a failure
//!  └──────────────────────────┘
//!  ┌──────────┐ (process, cause) ┌───────────┐ ┌────────┐
//!  │ announce │───────────────▶│ broadcast │▶│ listen │  the failure watch
//!  └──────────┘                  └───────────┘ └────────┘
//! ```
//!
//! A failure is recorded in the process's [`Control`] by whichever operator or task meets
//! it; the control unparks every worker of the process, and each worker, between two steps,
//! drops the job's dataflow. Nothing unwinds: a worker that panicked would leave the others
//! waiting for it for ever (timely's progress tracking waits for every worker). A panic (a
//! bug) is caught where the worker runs and recorded as the job's failure like any other.
//!
//! Other processes learn of it through the failure watch, a second, tiny dataflow. Its
//! `announce` operator holds one capability per worker for as long as the job's dataflow
//! runs there. A worker whose process failed sends the cause to every worker (broadcast)
//! and drops its capability; a worker whose job finished drops it too. `listen` records a
//! cause from another process as this process's failure (which ends this process's
//! workers in turn). So the watch completes once every worker of every process has either
//! finished or heard of the failure, and a failed worker steps until then — at most
//! [`PEER_WAIT`], should a peer be stuck — so that its announcement leaves before the
//! process does. A peer that vanishes without a word (killed) breaks timely's connections:
//! its receive thread panics, the panic hook notes which process was lost, and the job
//! ends with that as its cause instead of a backtrace.

use super::{Cluster, Control};
use crate::error::Failure;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::scheduling::Activator;
use timely::worker::Worker;

/// How long a failed worker keeps stepping so that other processes hear of the failure.
const PEER_WAIT: Duration = Duration::from_secs(5);
/// How often a failed worker looks at the watch while it waits for its peers.
const FINISHING_PARK: Duration = Duration::from_millis(20);

/// Runs `build`'s dataflow on every worker of `cluster` until it completes everywhere, or
/// until any worker, task or process fails. `Err` is the job's failure: the first cause
/// recorded in `control`, a lost process, or a worker's panic.
pub(crate) fn execute<F>(cluster: &Cluster, control: &Control, build: F) -> Result<(), Failure>
where
    F: Fn(&mut Worker) + Send + Sync + 'static,
{
    install_panic_hook();
    let worker_control = control.clone();
    let process = cluster.process;
    let config = cluster.timely_config();
    // Dropping the guards joins timely's network threads and panics if one of them did (a
    // lost peer): that must end as an error, not as this thread's panic.
    let joined = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let guards = timely::execute(config, move |worker| {
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_worker(worker, &worker_control, process, &build)
            }));
            if let Err(panic) = ran {
                // The job fails with the panic as its cause: the other workers drop the
                // dataflow instead of waiting for this one for ever. A worker that panicked
                // on the queues of a lost peer's connection reports the lost peer.
                let cause = lost_peer()
                    .unwrap_or_else(|| format!("a worker panicked: {}", panic_text(&*panic)));
                worker_control.fail(Failure::fatal(cause));
                drop_dataflows(worker);
            }
        })?;
        Ok::<_, String>(guards.join())
    }));
    if let Some(failure) = control.failure() {
        return Err(failure);
    }
    if let Some(lost) = lost_peer() {
        // The cluster cannot restart without the process it lost.
        let lost = Failure::fatal(lost);
        control.fail(lost.clone());
        return Err(lost);
    }
    let results = match joined {
        Ok(Ok(results)) => results,
        Ok(Err(e)) => return Err(Failure::fatal(format!("cannot start the workers: {e}"))),
        Err(panic) => {
            return Err(Failure::fatal(format!(
                "the engine panicked: {}",
                panic_text(&*panic)
            )))
        }
    };
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(e) => Err(Failure::fatal(format!("a worker panicked: {e}"))),
    }
}

/// One worker: build, then step until the job's dataflow and the failure watch are done.
fn run_worker(
    worker: &mut Worker,
    control: &Control,
    process: usize,
    build: &impl Fn(&mut Worker),
) {
    control.register_worker(std::thread::current());
    let first = worker.next_dataflow_index();
    build(worker);
    let job_dataflows: Vec<usize> = (first..worker.next_dataflow_index()).collect();
    let watch = watch_failures(worker, control.clone(), process);

    let mut job_running = true;
    let mut failed_at: Option<Instant> = None;
    loop {
        if job_running {
            if control.failed() {
                for &id in &job_dataflows {
                    worker.drop_dataflow(id);
                }
                job_running = false;
                failed_at = Some(Instant::now());
                watch.release();
            } else {
                let installed = worker.installed_dataflows();
                if !job_dataflows.iter().any(|id| installed.contains(id)) {
                    job_running = false;
                    watch.release();
                }
            }
        } else if failed_at.is_none() && control.failed() {
            // Finished here, then a peer failed: nothing to drop, but stop waiting soon.
            failed_at = Some(Instant::now());
        }
        let park = failed_at.map(|_| FINISHING_PARK);
        if !worker.step_or_park(park) {
            break;
        }
        if failed_at.is_some_and(|t| t.elapsed() >= PEER_WAIT) {
            break;
        }
    }
    // A peer that never answered leaves the watch unfinished: timely would step it for
    // ever after this returns.
    drop_dataflows(worker);
}

/// Drops every dataflow still installed on `worker`.
fn drop_dataflows(worker: &mut Worker) {
    for id in worker.installed_dataflows() {
        worker.drop_dataflow(id);
    }
}

/// A failure announced to every worker: the process that met it, whether it is transient
/// (every process then restarts together), and its message.
type Announced = (usize, bool, String);

/// This worker's side of the failure watch.
struct Watch {
    released: Rc<Cell<bool>>,
    announce: Activator,
}

impl Watch {
    /// The job's dataflow is done on this worker (finished or dropped): `announce` may
    /// send a local failure and drop its capability.
    fn release(&self) {
        self.released.set(true);
        self.announce.activate();
    }
}

/// Builds the failure watch (see the module docs) on this worker.
fn watch_failures(worker: &mut Worker, control: Control, process: usize) -> Watch {
    let released = Rc::new(Cell::new(false));
    let announced = released.clone();
    let listen_control = control.clone();
    let announce = worker.dataflow::<u64, _, _>(move |scope| {
        let mut activator = None;
        let causes = source::<_, timely::container::CapacityContainerBuilder<Vec<Announced>>, _, _>(
            scope,
            "AnnounceFailure",
            |capability, info| {
                activator = Some(scope.activator_for(info.address.clone()));
                let mut capability = Some(capability);
                move |output| {
                    if !announced.get() {
                        return;
                    }
                    if let Some(cap) = capability.take() {
                        if let Some(cause) = control.local_failure() {
                            let transient = cause.is_transient();
                            output
                                .session(&cap)
                                .give((process, transient, cause.message));
                        }
                    }
                }
            },
        );
        causes
            .broadcast()
            .sink(Pipeline, "ListenFailures", move |(input, _frontier)| {
                input.for_each(|_time, causes| {
                    for (from, transient, message) in causes.drain(..) {
                        if from != process {
                            let failure = match transient {
                                true => Failure::transient(message),
                                false => Failure::fatal(message),
                            };
                            listen_control.fail_remote(from, failure);
                        }
                    }
                });
            });
        activator.expect("the source was built")
    });
    Watch { released, announce }
}

/// Set by the panic hook when one of timely's network threads fails: the peer it talked to
/// is gone.
static LOST_PEER: Mutex<Option<String>> = Mutex::new(None);

fn lost_peer() -> Option<String> {
    LOST_PEER.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Installs (once per process) a panic hook that turns the panics of a lost cluster peer
/// into a recorded cause, quietly: timely's network thread for process N panics when the
/// connection breaks, the workers then panic on the poisoned queues it leaves, and joining
/// the network threads panics once more. Every other panic is printed as usual.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            let text = panic_text(info.payload());
            let peer = name
                .strip_prefix("timely:recv-")
                .or_else(|| name.strip_prefix("timely:send-"));
            if let Some(peer) = peer {
                let mut lost = LOST_PEER.lock().unwrap_or_else(|p| p.into_inner());
                if lost.is_none() {
                    *lost = Some(format!(
                        "lost the connection to process {peer} of the cluster ({text}): it stopped or was killed; restart every process to resume from the checkpoint"
                    ));
                }
                return;
            }
            // Then the workers panic on the poisoned queues the network thread leaves, and
            // joining that thread panics on the main thread (timely's `CommsGuard`); both
            // are caught and reported as the lost peer.
            let aftermath = ["MergeQueue poisoned", "Send thread panic", "Recv thread panic"];
            if lost_peer().is_some() && aftermath.iter().any(|a| text.contains(a)) {
                return;
            }
            previous(info);
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".into()
    }
}
