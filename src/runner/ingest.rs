//! Running an ingest job (`-c ingest`): the line-protocol endpoint in front of the ingest
//! dataflow, until SIGTERM.
//!
//! Order of events: the sink is prepared (databases created), the endpoint starts
//! listening, the dataflow runs. On SIGTERM (or Ctrl-C) the endpoint stops accepting
//! connections and finishes the requests in progress while the dataflow keeps writing and
//! acknowledging them; then it closes its queue, the dataflow drains and ends, and the job
//! exits 0 with its summary. If the job fails, every request still waiting is answered with
//! the failure, the endpoint stops, and the job exits 1.

use super::{build_sink, finish_sink, prepare_sink, JobRun, RunError, RunOptions};
use crate::connectors::ingest::config::{AckMode, Api};
use crate::connectors::ingest::server::PointCheck;
use crate::connectors::ingest::{IngestServer, IngestSourceConfig};
use crate::connectors::Checked;
use crate::engine::{self, ingest::Ingest, Control};
use crate::job::Job;
use crate::mapping::Mappings;
use crate::sink::Sink;
use std::sync::Arc;

/// Runs `job` as `ingest`.
pub(super) fn run(job: &Job, checked: &Checked, options: &RunOptions) -> Result<(), RunError> {
    let config = ingest_config(checked)?;
    if options.cluster.processes() > 1 {
        return Err(RunError::Usage(
            "ingest runs in one process (its endpoint listens there); use --workers for parallelism, and several jobs behind a load balancer for more".into(),
        ));
    }
    let rt = super::runtime()?;
    let job_run = JobRun::start(job, crate::job::Mode::Ingest, options, rt)?;
    let result = build_sink(job, checked, &no_mappings(job)?).and_then(|sink| {
        IngestPhase {
            job,
            options,
            config,
            run: &job_run,
        }
        .run(Arc::new(sink))
    });
    job_run.finish(job, result)
}

/// The `source:` section of an ingest job, or a usage error naming the source it has.
fn ingest_config(checked: &Checked) -> Result<&IngestSourceConfig, RunError> {
    checked
        .source
        .as_any()
        .downcast_ref::<IngestSourceConfig>()
        .ok_or_else(|| {
            RunError::Usage(format!(
                "the `ingest` entry point serves `source: {{type: ingest}}`; this job's source is `{}`",
                checked.source.kind()
            ))
        })
}

/// Ingest jobs map nothing: points arrive whole. The sinks take the (empty) mappings.
fn no_mappings(job: &Job) -> Result<Mappings, RunError> {
    Mappings::compile(job, &[]).map_err(|e| RunError::Usage(e.to_string()))
}

/// `tsmig-job plan` for an ingest job: the endpoint and the target; connects nowhere.
pub(super) fn plan(job: &Job, checked: &Checked) -> Result<String, RunError> {
    let config = ingest_config(checked)?;
    let apis: Vec<&str> = config
        .api
        .iter()
        .map(|a| match a {
            Api::V1 => "v1 POST /write",
            Api::V2 => "v2 POST /api/v2/write",
        })
        .collect();
    let mut out = format!("job {} (mode {})\n", job.file.name, job.file.mode);
    out.push_str(&format!(
        "source ingest: listening on {}{} ({}), ack {}, at most {} points pending\n",
        config.listen,
        if config.tls.is_some() {
            " with TLS"
        } else {
            ""
        },
        apis.join(", "),
        match config.ack {
            AckMode::Durable => "durable",
            AckMode::Async => "async",
        },
        config.max_pending_points,
    ));
    out.push_str("mapping: none; each line-protocol point is written as it is (measurement, tags, fields, time)\n");
    out.push_str(&format!(
        "target {}\n",
        build_sink(job, checked, &no_mappings(job)?)?.describe()
    ));
    Ok(out)
}

struct IngestPhase<'a> {
    job: &'a Job,
    options: &'a RunOptions,
    config: &'a IngestSourceConfig,
    run: &'a JobRun,
}

impl IngestPhase<'_> {
    fn run<S: Sink>(self, sink: Arc<S>) -> Result<(), RunError> {
        let IngestPhase {
            job,
            options,
            config,
            run,
        } = self;
        prepare_sink(job, &run.rt, &*sink)?;
        // A point the sink would refuse is refused to its client, as a bad line.
        let checker = sink.clone();
        let check: PointCheck = Arc::new(move |point| checker.check(point));
        let (server, queue) = run
            .rt
            .block_on(async {
                IngestServer::start_checked(
                    config,
                    check,
                    run.dead_letters.clone(),
                    run.counters.clone(),
                    stop_signal(run.control.clone())?,
                )
                .await
                .map_err(|e| e.to_string())
            })
            .map_err(|e| RunError::Failed(job.secrets.redact(&e)))?;
        tracing::info!(address = %server.local_addr(), "ingest: writing what the endpoint takes until SIGTERM");
        run.status.phase(crate::status::Phase::Ingesting);
        let result = engine::ingest::run(
            Ingest {
                queue,
                sink: sink.clone(),
                epoch: job.file.flow.epoch,
                services: run.services(),
            },
            &options.cluster,
        );
        // After a clean end the endpoint has stopped already (its queue finished); after a
        // failure the queue is abandoned and the requests in progress end at once.
        run.rt.block_on(server.shutdown());
        result.map_err(RunError::from)?;
        finish_sink(job, &run.rt, &*sink)
    }
}

/// Completes on SIGTERM, SIGINT or a stop asked for otherwise (the status API's): the
/// endpoint's cue to stop accepting and drain. It
/// marks the run as stopped itself (the job's own signal watcher does too, but may run
/// after a quick drain has ended the job).
fn stop_signal(
    control: Control,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch for SIGINT: {e}"))?;
    Ok(async move {
        if control.stopping() {
            // Signalled before the endpoint started (while the target was prepared).
            return;
        }
        let asked = control.clone();
        let requested = async move {
            while !asked.stop_requested() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = requested => {}
        }
        control.request_stop();
    })
}
