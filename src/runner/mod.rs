//! Running a job from the command line: open the source, compile the mappings, build the
//! sink, load or make the plan, run the engine, report. Everything here is plain async
//! setup and reporting; the dataflow itself is in [`crate::engine`].

mod cdc;
mod follow;
#[cfg(feature = "ingest")]
mod ingest;
#[cfg(not(feature = "ingest"))]
mod ingest {
    //! A build without the `ingest` connector: no source arrives as points, and the
    //! `ingest` entry point has nothing to serve.

    use super::{RunError, RunOptions};
    use crate::connectors::Checked;
    use crate::job::Job;

    fn missing() -> RunError {
        RunError::Usage(
            "this build has no `ingest` connector (the Cargo feature `ingest`), which the `ingest` entry point serves".into(),
        )
    }

    pub(super) fn run(_: &Job, _: &Checked, _: &RunOptions) -> Result<(), RunError> {
        Err(missing())
    }

    pub(super) fn plan(_: &Job, _: &Checked) -> Result<String, RunError> {
        Err(missing())
    }
}
mod progress;
mod restart;
mod verify;

use crate::checkpoint::lock::{Holder, StateLock};
use crate::checkpoint::store::FileStore;
use crate::checkpoint::BackfillState;
use crate::connectors::Checked;
use crate::dead_letter::DeadLetters;
use crate::engine::{self, backfill::Backfill, Cluster, Control};
use crate::job::{Attempts, Job, Mode};
use crate::mapping::Mappings;
use crate::metrics::Counters;
use crate::sink::{AnySink, Sink, SinkContext, SinkSpec, WriteError};
use crate::source::BoundedSource;
use crate::status::server::Actions;
use crate::status::{Phase, StatusBoard};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use progress::ProgressMode;

/// How the command line asked the job to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Workers and processes.
    pub cluster: Cluster,
    /// Forget recorded progress and start over.
    pub fresh: bool,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// CDC: stop once the reader has caught up with the server (the cutover step).
    pub until_caught_up: bool,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// verify: re-copy every series × bucket that differs, then verify again.
    pub repair: bool,
    /// How long a stop (SIGTERM) may take to drain before the job stops at once.
    pub stop_timeout: Duration,
    /// Where the status page and API listen, if anywhere.
    pub status_addr: Option<std::net::SocketAddr>,
    /// The bearer token the status API's POSTs need when it listens beyond loopback.
    pub status_token: Option<String>,
}

/// Why a run failed, and which exit code says so.
#[derive(Debug)]
pub enum RunError {
    /// The job file or the command line is wrong (exit 2).
    Usage(String),
    /// The job ran and failed for good (exit 1).
    Failed(String),
    /// The job ran and failed in a way a restart from the checkpoint may get past: the
    /// restart strategy decides (exit 1 if it gives up).
    Transient(String),
}

impl RunError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => 2,
            RunError::Failed(_) | RunError::Transient(_) => 1,
        }
    }
}

impl From<crate::error::Failure> for RunError {
    fn from(f: crate::error::Failure) -> Self {
        match f.class {
            crate::error::Class::Transient => RunError::Transient(f.message),
            _ => RunError::Failed(f.message),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Usage(m) | RunError::Failed(m) | RunError::Transient(m) => f.write_str(m),
        }
    }
}

/// The fewest threads the async runtime gets, however few CPUs there are: one task's long
/// poll (decoding a large answer from a source) must not stall every other client of the
/// process (the sink's acknowledgements, the CDC reader, the signal watcher) on a one-CPU
/// machine.
const MIN_IO_THREADS: usize = 2;

/// Threads of the async runtime, from the CPUs this process may use (`available`:
/// affinity and cgroup quotas counted, as [`std::thread::available_parallelism`] reads
/// them). Every async client of the process runs on them — source reads, the sink's
/// requests, the ingest endpoint's connections — and their own CPU work (decoding rows
/// and answers, TLS, HTTP) grows with the workers a bigger machine runs; a fixed two
/// threads made them the bottleneck there. No more than one per CPU: the timely workers
/// need the CPUs too, and blocking work (gzip, the IoTDB client) runs on the runtime's
/// blocking pool, not on these threads.
fn io_threads(available: Option<std::num::NonZeroUsize>) -> usize {
    available.map_or(MIN_IO_THREADS, |n| n.get().max(MIN_IO_THREADS))
}

fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads(std::thread::available_parallelism().ok()))
        .thread_name("tsmig-io")
        .enable_all()
        .build()
        .map_err(|e| RunError::Failed(format!("cannot start the async runtime: {e}")))
}

fn source_error(job: &Job, e: crate::source::SourceError) -> RunError {
    match e {
        crate::source::SourceError::Config(e) => RunError::Usage(e.to_string()),
        crate::source::SourceError::Server(m) => RunError::Transient(job.secrets.redact(&m)),
        other => RunError::Failed(job.secrets.redact(&other.to_string())),
    }
}

/// The job's source and sink sections, parsed and checked by their connectors.
pub fn connectors(job: &Job) -> Result<Checked, RunError> {
    crate::connectors::check(job).map_err(|e| RunError::Usage(e.to_string()))
}

/// Opens the source and compiles the mappings against its schema.
async fn open(
    job: &Job,
    checked: &Checked,
) -> Result<(Box<dyn BoundedSource>, Mappings), RunError> {
    let mut source = checked
        .source
        .open(job)
        .await
        .map_err(|e| source_error(job, e))?;
    let mut mappings = compile(job, &*source, &*checked.sink)?;
    project(&mut *source, &mut mappings);
    Ok((source, mappings))
}

/// The job's mappings against the source's schema, for the sink.
fn compile<S: BoundedSource + ?Sized>(
    job: &Job,
    source: &S,
    sink: &dyn SinkSpec,
) -> Result<Mappings, RunError> {
    let paths = sink.paths();
    if job.file.mappings.is_empty() {
        // `mappings: auto`: the source's own schema, copied as it is.
        let defaults = source.default_mappings().ok_or_else(|| {
            RunError::Usage(format!(
                "{}: key `mappings`: this source offers no mapping of its own; list the mappings",
                job.path.display()
            ))
        })?;
        Mappings::compile_entries(job, &defaults, source.schema(), paths)
    } else {
        Mappings::compile_for(job, source.schema(), paths)
    }
    .map_err(|e| RunError::Usage(e.to_string()))
}

/// The job's sink, built for its compiled mappings.
fn build_sink(job: &Job, checked: &Checked, mappings: &Mappings) -> Result<AnySink, RunError> {
    checked
        .sink
        .build(&SinkContext { job, mappings })
        .map_err(RunError::Usage)
}

/// Tells the source what rows must carry: the mapped columns, and each row's key (for
/// dead letters).
fn project<S: BoundedSource + ?Sized>(source: &mut S, mappings: &mut Mappings) {
    for table in 0..source.schema().len() {
        let key = source.row_key(table);
        mappings.carry(table, &source.schema()[table], &key);
        source.set_projection(table, mappings.projection(table).to_vec());
    }
}

/// Opens the source for a job that reads it whole (`cdc == false`) or also follows its
/// change log, compiles the mappings and sets the projections.
async fn open_source(
    job: &Job,
    checked: &Checked,
    cdc: bool,
) -> Result<
    (
        Arc<dyn BoundedSource>,
        Option<Arc<dyn crate::source::ChangeSource>>,
        Mappings,
    ),
    RunError,
> {
    if !cdc {
        let (source, mappings) = open(job, checked).await?;
        return Ok((Arc::from(source), None, mappings));
    }
    let mut source = checked
        .source
        .open_changes(job)
        .await
        .map_err(|e| source_error(job, e))?;
    let mut mappings = compile(job, &*source, &*checked.sink)?;
    project(&mut *source, &mut mappings);
    let source: Arc<dyn crate::source::BoundedChangeSource> = Arc::from(source);
    Ok((source.clone(), Some(source), mappings))
}

/// `tsmig-job plan`: shows tables, splits, mappings and target; writes nothing.
pub fn plan(job: &Job) -> Result<String, RunError> {
    let checked = connectors(job)?;
    if checked.source.arrives_as_points() {
        return ingest::plan(job, &checked);
    }
    let rt = runtime()?;
    rt.block_on(async {
        let (source, mappings) = open(job, &checked).await?;
        let splits = source.plan().await.map_err(|e| source_error(job, e))?;
        let mut out = format!("job {} (mode {})\n", job.file.name, job.file.mode);
        for (t, schema) in source.schema().iter().enumerate() {
            let in_table: Vec<_> = splits.iter().filter(|s| s.table as usize == t).collect();
            let rows: u64 = in_table.iter().map(|s| s.estimated_rows).sum();
            out.push_str(&format!(
                "source table {}: {} columns, {} splits, ~{} rows\n",
                schema.name,
                schema.columns.len(),
                in_table.len(),
                rows
            ));
            for c in &schema.columns {
                out.push_str(&format!(
                    "  column {} {} ({:?})\n",
                    c.name, c.source_type, c.kind
                ));
            }
            for s in in_table.iter().take(20) {
                out.push_str(&format!(
                    "  split {}: {}..{}{}{} ~{} rows\n",
                    s.id,
                    s.start.map(|v| v.to_string()).unwrap_or_default(),
                    s.end.map(|v| v.to_string()).unwrap_or_default(),
                    if s.nulls { " (NULL keys)" } else { "" },
                    if s.partition.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.partition)
                    },
                    s.estimated_rows
                ));
            }
            if in_table.len() > 20 {
                out.push_str(&format!("  ... {} more splits\n", in_table.len() - 20));
            }
        }
        for m in mappings.describe() {
            out.push_str(&format!("mapping {m}\n"));
        }
        let target = build_sink(job, &checked, &mappings)?.describe();
        out.push_str(&format!("target {target}\n"));
        Ok(out)
    })
}

/// Runs `job` with the entry point `mode`.
pub fn run(job: &Job, mode: Mode, options: &RunOptions) -> Result<(), RunError> {
    if options.repair && mode != Mode::Verify {
        return Err(RunError::Usage(format!(
            "--repair works only with -c verify (it re-copies what verify finds different), not with -c {mode}"
        )));
    }
    // The entry point is the job's mode: the connectors check their sections against what
    // runs (`-c cdc` on a file that says `mode: backfill` needs what CDC needs).
    let with_mode;
    let job = if job.file.mode == mode {
        job
    } else {
        let mut copy = job.clone();
        copy.file.mode = mode;
        with_mode = copy;
        &with_mode
    };
    let checked = connectors(job)?;
    type Attempt = fn(&Job, &Checked, Mode, &RunOptions, &JobRun) -> Result<(), RunError>;
    let (attempt, default_attempts): (Attempt, _) = match mode {
        Mode::Verify => return verify::run(job, &checked, options),
        Mode::Ingest => return ingest::run(job, &checked, options),
        // A backfill gives up after about three minutes of failures; a job that follows
        // a source keeps trying, as a replica does.
        Mode::Backfill => (backfill, Attempts::AtMost(10)),
        Mode::Cdc | Mode::BackfillCdc => (cdc::run, Attempts::Unlimited),
        Mode::BackfillFollow => (follow::run, Attempts::Unlimited),
    };
    // Held until the run has ended, restarts and summary included; taken before anything
    // connects.
    let _lock = lock_state(job, mode, options)?;
    let job_run = JobRun::start(job, mode, options, runtime()?)?;
    let mut first = true;
    let result = restart::run(&job_run, &job.file.restart, default_attempts, || {
        // `--fresh` forgets the recorded progress once, not at every restart.
        let options = RunOptions {
            fresh: options.fresh && std::mem::take(&mut first),
            ..options.clone()
        };
        attempt(job, &checked, mode, &options, &job_run)
    });
    job_run.finish(job, result)
}

/// Makes this run the one owner of the job's state: process 0 of a run that records
/// progress (backfill, CDC, follow) locks the state directory, or the run is refused
/// (exit 1) naming the run that holds it. Verify and ingest record no progress and take no
/// lock; other processes of a cluster write no state.
fn lock_state(job: &Job, mode: Mode, options: &RunOptions) -> Result<Option<StateLock>, RunError> {
    let records_progress = matches!(
        mode,
        Mode::Backfill | Mode::Cdc | Mode::BackfillCdc | Mode::BackfillFollow
    );
    if !records_progress || options.cluster.process != 0 {
        return Ok(None);
    }
    let dir = job
        .state_dir()
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let lock = StateLock::acquire(
        &dir,
        &Holder::this_process(&job.file.name, &mode.to_string()),
    )
    .map_err(RunError::Failed)?;
    if let Some((_, line)) = lock.taken_over() {
        tracing::warn!("{line}");
    }
    Ok(Some(lock))
}

/// One attempt of a backfill: open the source, build the sink, load or make the plan,
/// read every pending split.
fn backfill(
    job: &Job,
    checked: &Checked,
    _mode: Mode,
    options: &RunOptions,
    job_run: &JobRun,
) -> Result<(), RunError> {
    let (source, mappings) = job_run.rt.block_on(open(job, checked))?;
    tracing::debug!(
        ms = crate::metrics::process_start().elapsed().as_millis() as u64,
        "source open, mappings compiled"
    );
    let sink = Arc::new(build_sink(job, checked, &mappings)?);
    prepare_sink(job, &job_run.rt, &*sink)?;
    BackfillPhase {
        job,
        options,
        run: job_run,
        source: Arc::from(source),
        mappings: Arc::new(mappings),
        fresh: options.fresh,
    }
    .run_with(sink.clone())?;
    finish_sink(job, &job_run.rt, &*sink)
}

/// What every phase of a running job shares: the runtime, counters, stop control, dead
/// letters, progress display and the metrics endpoint.
struct JobRun {
    rt: tokio::runtime::Runtime,
    counters: Arc<Counters>,
    control: Control,
    dead_letters: DeadLetters,
    progress: progress::Progress,
    /// What the status page shows.
    status: StatusBoard,
    started: std::time::Instant,
}

impl JobRun {
    fn start(
        job: &Job,
        mode: Mode,
        options: &RunOptions,
        rt: tokio::runtime::Runtime,
    ) -> Result<Self, RunError> {
        let started = crate::metrics::process_start();
        let control = Control::default();
        let counters = Counters::new();
        let dead_letters =
            DeadLetters::new(&job.file.name, &dead_letter_path(job, &options.cluster)?);
        counters.show_dead_letters(dead_letters.counter());
        // A dead letter that cannot be written ends the job: it is never dropped.
        let failing = control.clone();
        dead_letters.on_failure(move |e| failing.fail(crate::error::Failure::fatal(e)));
        let cluster = &options.cluster;
        let status = StatusBoard::new(
            &job.file.name,
            &mode.to_string(),
            (cluster.process, cluster.processes(), cluster.workers),
            counters.clone(),
            dead_letters.clone(),
        );
        let api_stop = Arc::new(tokio::sync::Notify::new());
        watch_signals(
            &rt,
            &control,
            &status,
            api_stop.clone(),
            options.stop_timeout,
        );
        if let Some(addr) = options.metrics_addr {
            let _guard = rt.enter();
            crate::metrics::serve(addr, counters.registry().clone())
                .map_err(|e| RunError::Usage(format!("--metrics-addr {addr}: {e}")))?;
        }
        if let Some(addr) = options.status_addr {
            let _guard = rt.enter();
            status.sample_every_second(rt.handle());
            let bound = crate::status::server::serve(
                addr,
                status.clone(),
                status_actions(mode, &control, api_stop),
                options.status_token.clone(),
            )
            .map_err(|e| RunError::Usage(format!("--status-addr {addr}: {e}")))?;
            tracing::info!("status page at http://{bound}/");
        }
        let progress = progress::start(options.progress, counters.clone(), dead_letters.clone());
        Ok(Self {
            rt,
            counters,
            control,
            dead_letters,
            progress,
            status,
            started,
        })
    }

    /// What the engine's operators share.
    fn services(&self) -> engine::Services {
        engine::Services {
            runtime: self.rt.handle().clone(),
            dead_letters: self.dead_letters.clone(),
            counters: self.counters.clone(),
            control: self.control.clone(),
            status: self.status.clone(),
        }
    }

    /// Stops the display and the runtime, prints the summary, returns the job's result.
    fn finish(self, job: &Job, result: Result<(), RunError>) -> Result<(), RunError> {
        self.status
            .ended(result.as_ref().err().map(|e| e.to_string()));
        self.progress.finish();
        self.rt.shutdown_timeout(Duration::from_secs(1));
        // Every dead letter is in the file, or the job failed.
        let letters = self.dead_letters.sync();
        let result = match (result, &letters) {
            (Ok(()), Err(e)) => Err(RunError::Failed(e.clone())),
            (result, _) => result,
        };
        let summary = Summary::read(
            &self.counters,
            self.dead_letters.count(),
            self.started.elapsed(),
            self.control.stop_requested(),
        );
        println!("{summary}");
        match (self.dead_letters.count(), letters) {
            (0, _) => {}
            (n, Ok(())) => eprintln!(
                "tsmig: {n} records were dead-lettered: see {}",
                self.dead_letters.path().display()
            ),
            (n, Err(_)) => eprintln!(
                "tsmig: {n} records were dead-lettered, but {} could not hold them all",
                self.dead_letters.path().display()
            ),
        }
        result.map_err(|e| match e {
            RunError::Failed(m) | RunError::Transient(m) => {
                RunError::Failed(job.secrets.redact(&m))
            }
            other => other,
        })
    }
}

/// The backfill phase of a job: load or make the plan, read every pending split, write it.
struct BackfillPhase<'a> {
    job: &'a Job,
    options: &'a RunOptions,
    run: &'a JobRun,
    source: Arc<dyn BoundedSource>,
    mappings: Arc<Mappings>,
    /// Forget recorded progress first.
    fresh: bool,
}

/// The job's state store, which makes the run's dead letters durable before each save;
/// with `fresh`, emptied first (only process 0 may: the others share it).
fn state_store(job: &Job, fresh: bool, run: &JobRun) -> Result<FileStore, RunError> {
    let store = FileStore::new(
        &job.state_dir()
            .map_err(|e| RunError::Usage(e.to_string()))?,
    )
    .with_dead_letters(run.dead_letters.clone());
    if fresh {
        store.clear_backfill().map_err(RunError::Failed)?;
    }
    Ok(store)
}

/// Prepares the target (creates databases) before the first write.
fn prepare_sink<S: Sink>(
    job: &Job,
    rt: &tokio::runtime::Runtime,
    sink: &S,
) -> Result<(), RunError> {
    rt.block_on(sink.prepare()).map_err(|e| {
        let message = job.secrets.redact(&format!("the target is not ready: {e}"));
        match e {
            // Down or overloaded: the restart strategy waits for it.
            WriteError::Transient { .. } => RunError::Transient(message),
            _ => RunError::Failed(message),
        }
    })
}

/// Tells the target the run is over, every write acknowledged, so that it makes final
/// what it staged (the file sink renames its open file). Only after a run that ended well:
/// a failed run leaves the sink to its own recovery.
fn finish_sink<S: Sink>(job: &Job, rt: &tokio::runtime::Runtime, sink: &S) -> Result<(), RunError> {
    rt.block_on(sink.finish()).map_err(|e| {
        let message = job
            .secrets
            .redact(&format!("the target could not finish what it wrote: {e}"));
        match e {
            WriteError::Transient { .. } => RunError::Transient(message),
            _ => RunError::Failed(message),
        }
    })
}

impl BackfillPhase<'_> {
    fn run_with<S: Sink>(self, sink: Arc<S>) -> Result<(), RunError> {
        let BackfillPhase {
            job,
            options,
            run,
            source,
            mappings,
            fresh,
        } = self;
        let counters = &run.counters;
        let cluster = &options.cluster;
        let state = if cluster.process == 0 {
            let store = state_store(job, fresh, run)?;
            let state = match store.load_backfill().map_err(RunError::Failed)? {
                Some(state) if state.job != job.file.name => {
                    return Err(RunError::Usage(format!(
                    "the state in {} belongs to job `{}`, not `{}`; point checkpoint.store elsewhere",
                    store.dir().display(),
                    state.job,
                    job.file.name
                )))
                }
                Some(state) => {
                    let pending = state.pending();
                    tracing::info!(
                        splits = state.plan.len(),
                        pending = pending.len(),
                        "resuming from checkpoint in {}",
                        store.dir().display()
                    );
                    state
                }
                None => {
                    let plan = run
                        .rt
                        .block_on(source.plan())
                        .map_err(|e| source_error(job, e))?;
                    let state = BackfillState::new(&job.file.name, plan);
                    // Recorded before the first row is read, so a restart reads the same splits.
                    store.save_backfill(&state).map_err(RunError::Failed)?;
                    state
                }
            };
            let pending = state.pending();
            // Set, not added: a restart loads the same plan again (backfill+follow's rounds
            // add theirs after this).
            counters.splits_planned.set(state.plan.len() as u64);
            counters
                .splits_done
                .set((state.plan.len() - pending.len()) as u64);
            counters.rows_expected.set(
                counters.rows_read.get() + pending.iter().map(|s| s.estimated_rows).sum::<u64>(),
            );
            if pending.is_empty() {
                tracing::info!("every split is already finished; run with --fresh to copy again");
            }
            run.status.plan(
                source.schema().iter().map(|t| t.name.clone()).collect(),
                state.plan.iter().map(|s| (s.id, s.table, s.estimated_rows)),
                state
                    .plan
                    .iter()
                    .filter(|s| state.is_finished(s.id))
                    .map(|s| s.id),
            );
            Some((state, store))
        } else {
            None
        };

        tracing::debug!(
            ms = run.started.elapsed().as_millis() as u64,
            "target ready, plan loaded"
        );
        if run.status.current_phase() == Phase::Starting {
            run.status.phase(Phase::Backfill);
        }
        run.backfill_engine(job, cluster, source, mappings, sink, state)
    }
}

impl JobRun {
    /// Runs the backfill engine on the pending splits of `state` (process 0's plan and
    /// store) until they are durable or a stop is requested.
    fn backfill_engine<S: Sink>(
        &self,
        job: &Job,
        cluster: &Cluster,
        source: Arc<dyn BoundedSource>,
        mappings: Arc<Mappings>,
        sink: Arc<S>,
        state: Option<(BackfillState, FileStore)>,
    ) -> Result<(), RunError> {
        engine::backfill::run(
            Backfill {
                source,
                mappings,
                sink,
                state,
                checkpoint_interval: job.file.checkpoint.interval,
                epoch: job.file.flow.epoch,
                max_in_flight_rows: job.file.flow.max_in_flight_rows,
                services: self.services(),
            },
            cluster,
        )
        .map_err(RunError::from)
    }
}

fn dead_letter_path(job: &Job, cluster: &Cluster) -> Result<PathBuf, RunError> {
    let path = job
        .dead_letter_path()
        .map_err(|e| RunError::Usage(e.to_string()))?;
    if cluster.processes() == 1 {
        return Ok(path);
    }
    // One file per process: processes may share a directory but never a file.
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    Ok(path.with_file_name(format!("{stem}.process-{}{ext}", cluster.process)))
}

/// SIGTERM and SIGINT stop reading; what was read is written and checkpointed. A second
/// signal, or a drain longer than `stop_timeout`, stops the job at once: the commit operator
/// records every durable step while a stop drains, so the checkpoint holds what was durable.
fn watch_signals(
    rt: &tokio::runtime::Runtime,
    control: &Control,
    status: &StatusBoard,
    api_stop: Arc<tokio::sync::Notify>,
    stop_timeout: Duration,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let control = control.clone();
    let status = status.clone();
    rt.spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        let mut next = async || {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        };
        // The status API's stop counts as the first signal.
        let first = tokio::select! {
            signal = next() => signal,
            _ = api_stop.notified() => "POST /api/job/stop",
        };
        tracing::warn!(
            "stop requested ({first}): no new reads; writing what was read, then a final checkpoint (a second signal, or {} s more, stops at once)",
            stop_timeout.as_secs()
        );
        control.request_stop();
        status.phase(Phase::Draining);
        let cause = tokio::select! {
            second = next() => format!("stopped at once by a second {second}"),
            _ = tokio::time::sleep(stop_timeout) => format!(
                "stopped: the job did not finish writing what it read within {} s of {first} (--stop-timeout)",
                stop_timeout.as_secs()
            ),
        };
        control.fail(crate::error::Failure::fatal(format!(
            "{cause}; what was durable is checkpointed and the next run resumes there"
        )));
    });
}

/// What the status API's POSTs do: a stop is the first SIGTERM; a cutover is
/// `--until-caught-up` asked for while the job runs, for the jobs that follow a source.
fn status_actions(mode: Mode, control: &Control, api_stop: Arc<tokio::sync::Notify>) -> Actions {
    let cutover = control.clone();
    Actions {
        stop: Arc::new(move || api_stop.notify_one()),
        cutover: Arc::new(move || {
            match mode {
            Mode::Cdc | Mode::BackfillCdc | Mode::BackfillFollow => {
                tracing::info!("cutover requested: stopping once caught up with the source");
                cutover.request_cutover();
                Ok(())
            }
            other => Err(format!(
                "a `{other}` job does not follow its source: it ends by itself (a cutover is for cdc, backfill+cdc and backfill+follow)"
            )),
        }
        }),
    }
}

/// The totals printed when a job ends.
#[derive(Debug)]
pub struct Summary {
    rows_read: u64,
    points_written: u64,
    dead_lettered: u64,
    splits_done: u64,
    splits_total: u64,
    /// The sink's retried writes and deletes.
    retries: u64,
    /// The source's retried reads and queries.
    source_retries: u64,
    restarts: u64,
    first_write_ms: f64,
    changes_read: u64,
    points_deleted: u64,
    elapsed: Duration,
    stopped: bool,
}

impl Summary {
    fn read(c: &Counters, dead_lettered: u64, elapsed: Duration, stopped: bool) -> Self {
        Self {
            rows_read: c.rows_read.get(),
            points_written: c.points_written.get(),
            dead_lettered,
            splits_done: c.splits_done.get(),
            splits_total: c.splits_planned.get(),
            retries: c.retries.get(),
            source_retries: c.source_retries.get(),
            restarts: c.restarts.get(),
            first_write_ms: c.first_write_seconds.get() * 1000.0,
            changes_read: c.changes_read.get(),
            points_deleted: c.points_deleted.get(),
            elapsed,
            stopped,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "summary: rows_read={} points_written={} dead_lettered={} splits_done={} splits_total={} retries={} source_retries={} first_write_ms={:.1} seconds={:.3} rows_per_second={:.0}{}",
            self.rows_read,
            self.points_written,
            self.dead_lettered,
            self.splits_done,
            self.splits_total,
            self.retries,
            self.source_retries,
            self.first_write_ms,
            secs,
            self.rows_read as f64 / secs.max(1e-9),
            if self.stopped { " stopped=true" } else { "" }
        )?;
        write!(
            f,
            " changes_read={} points_deleted={} restarts={}",
            self.changes_read, self.points_deleted, self.restarts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    #[test]
    fn the_runtime_has_a_thread_per_cpu_and_never_fewer_than_two() {
        let cpus = |n| NonZeroUsize::new(n);
        assert_eq!(io_threads(cpus(16)), 16);
        assert_eq!(io_threads(cpus(3)), 3);
        assert_eq!(io_threads(cpus(1)), MIN_IO_THREADS);
        // Unknown (no /proc, an odd platform): the floor.
        assert_eq!(io_threads(None), MIN_IO_THREADS);
    }
}
