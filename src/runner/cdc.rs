//! Running a CDC job (`-c cdc`, `-c backfill+cdc`): where to start in the binlog, the
//! backfill phase of `backfill+cdc`, then following the binlog, with the lag monitor.
//!
//! Start positions, on process 0 (other processes only run workers):
//! - `cdc`: the recorded position (`cdc.json` in the state directory), or the server's
//!   current end of binlog on the first run.
//! - `backfill+cdc`, first run: a consistent snapshot's binlog position is recorded
//!   *before* the first chunk is read; the chunked backfill then runs (resumable like any
//!   backfill), and CDC follows from the recorded position. Chunks read after the snapshot
//!   may already hold later changes; CDC replays them, and since a write of the same point
//!   is idempotent the end state is exact.

use super::{
    build_sink, finish_sink, open_source, prepare_sink, source_error, BackfillPhase, JobRun,
    RunError, RunOptions,
};
use crate::checkpoint::store::FileStore;
use crate::checkpoint::CdcState;
use crate::connectors::Checked;
use crate::engine::{self, cdc::Cdc, CdcProgress};
use crate::job::{Job, Mode};
use crate::metrics::Counters;
use crate::source::{ChangeSource, LogPosition, LogStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One attempt of `cdc` or `backfill+cdc`: open the source, check its change log, build
/// the sink, then the phases from the recorded state.
pub(super) fn run(
    job: &Job,
    checked: &Checked,
    mode: Mode,
    options: &RunOptions,
    run: &JobRun,
) -> Result<(), RunError> {
    let rt = &run.rt;
    let (source, changes, mappings) = rt.block_on(open_source(job, checked, true))?;
    let changes = changes.ok_or_else(|| {
        RunError::Usage(format!(
            "source type `{}` has no change log to follow; `{mode}` needs MySQL or MariaDB",
            checked.source.kind()
        ))
    })?;
    rt.block_on(changes.check_change_log())
        .map_err(|e| source_error(job, e))?;
    let mappings = Arc::new(mappings);
    {
        let sink = Arc::new(build_sink(job, checked, &mappings)?);
        prepare_sink(job, &run.rt, &*sink)?;
        let store = super::state_store(job, options.fresh && options.cluster.process == 0, run)?;
        let state = start_position(job, mode, options, run, &store, &*changes)?;
        tracing::info!(position = %state.position, "CDC starts at this binlog position");

        if mode == Mode::BackfillCdc {
            BackfillPhase {
                job,
                options,
                run,
                source,
                mappings: mappings.clone(),
                fresh: false,
            }
            .run_with(sink.clone())?;
            if run.control.stopping() {
                return finish_sink(job, rt, &*sink);
            }
            tracing::info!("backfill complete; following the binlog");
        }

        run.status.phase(crate::status::Phase::Cdc);
        let progress = Arc::new(Mutex::new(CdcProgress::default()));
        let monitor = run.rt.spawn(monitor_lag(
            changes.clone(),
            progress.clone(),
            run.counters.clone(),
        ));
        let result = engine::cdc::run(
            Cdc {
                source: changes,
                mappings,
                sink: sink.clone(),
                state,
                store: (options.cluster.process == 0).then_some(store),
                checkpoint_interval: job.file.checkpoint.interval,
                epoch: job.file.flow.epoch,
                max_in_flight_rows: job.file.flow.max_in_flight_rows,
                until_caught_up: options.until_caught_up,
                progress: progress.clone(),

                services: run.services(),
            },
            &options.cluster,
        );
        monitor.abort();
        if let Some(position) = progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .committed
            .clone()
        {
            println!("cdc: committed position {position}");
        }
        result.map_err(RunError::from)?;
        finish_sink(job, rt, &*sink)
    }
}

/// Where this run starts reading the binlog (and, on a first `backfill+cdc`, the snapshot
/// position recorded before the backfill reads anything).
fn start_position(
    job: &Job,
    mode: Mode,
    options: &RunOptions,
    run: &JobRun,
    store: &FileStore,
    changes: &dyn ChangeSource,
) -> Result<CdcState, RunError> {
    if options.cluster.processes() > 1 {
        return Err(RunError::Usage(
            "CDC runs its binlog reader in one process; run it with --workers (several processes are for backfills)".into(),
        ));
    }
    if let Some(state) = store.load_cdc().map_err(RunError::Failed)? {
        if state.job != job.file.name {
            return Err(RunError::Usage(format!(
                "the state in {} belongs to job `{}`, not `{}`; point checkpoint.store elsewhere",
                store.dir().display(),
                state.job,
                job.file.name
            )));
        }
        tracing::info!(position = %state.position, "resuming CDC from the checkpoint in {}", store.dir().display());
        return Ok(state);
    }
    let position: LogPosition = match mode {
        Mode::BackfillCdc => {
            if store.load_backfill().map_err(RunError::Failed)?.is_some() {
                return Err(RunError::Usage(format!(
                    "{} holds a backfill without a binlog position (from a plain backfill?): its rows may predate any position CDC could start from. Start over with --fresh",
                    store.dir().display()
                )));
            }
            run.rt
                .block_on(changes.snapshot_position())
                .map_err(|e| source_error(job, e))?
        }
        _ => run
            .rt
            .block_on(changes.log_end())
            .map_err(|e| source_error(job, e))?,
    };
    let state = CdcState::new(&job.file.name, position);
    // Recorded before anything is read: a crash during the backfill resumes CDC here.
    store.save_cdc(&state).map_err(RunError::Failed)?;
    Ok(state)
}

/// Every second: the lag in bytes (committed position to the server's end of binlog) and
/// in time ([`LagClock`]); a log line every ten seconds.
async fn monitor_lag(
    changes: Arc<dyn ChangeSource>,
    progress: Arc<Mutex<CdcProgress>>,
    counters: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut clock = LagClock::default();
    let mut n = 0u64;
    loop {
        tick.tick().await;
        let (committed, committed_at) = {
            let p = progress.lock().unwrap_or_else(|p| p.into_inner());
            (p.committed.clone(), p.committed_at)
        };
        let Some(committed) = committed else { continue };
        let (bytes, lag_ms) = match changes.status(&committed).await {
            Ok(status) => (
                status.bytes_behind,
                clock.lag_ms(&committed, u64::from(committed_at) * 1000, &status),
            ),
            // The server cannot be asked: the lag grows as the clock does.
            Err(_) => (counters.lag_bytes.get(), clock.unreachable_lag_ms()),
        };
        counters.lag_bytes.set(bytes);
        counters.lag_seconds.set(lag_ms as f64 / 1000.0);
        n += 1;
        if n % 10 == 0 {
            tracing::info!(
                position = %committed,
                lag_bytes = bytes,
                lag_seconds = lag_ms as f64 / 1000.0,
                changes = counters.changes_read.get(),
                written = counters.points_written.get(),
                deleted = counters.points_deleted.get(),
                "cdc"
            );
        }
    }
}

/// How far CDC is behind its server, by the server's own clock: the time since the server's
/// log last ended where the durable position is now. Fed once a second with the server's
/// end and clock, it keeps an hour of those samples; so the lag grows while the reader
/// stalls (the server moves on, the position does not), is the pipeline's delay while it
/// keeps up, and 0 once the position is the server's end.
#[derive(Debug, Default)]
struct LagClock {
    /// (the end of the server's log, the server's time then, ms), oldest first.
    samples: std::collections::VecDeque<(LogPosition, u64)>,
    /// The last lag computed, and when.
    last: Option<(std::time::Instant, u64)>,
}

/// Samples kept: an hour's, at one a second.
const LAG_SAMPLES: usize = 3600;

impl LagClock {
    /// The lag with `committed` durable (its last transaction committed at
    /// `committed_at_ms`, 0 if unknown) and the server at `status`.
    fn lag_ms(&mut self, committed: &LogPosition, committed_at_ms: u64, status: &LogStatus) -> u64 {
        let now = status.server_time_ms;
        self.samples.push_back((status.end.clone(), now));
        if self.samples.len() > LAG_SAMPLES {
            self.samples.pop_front();
        }
        let lag = if *committed >= status.end {
            0
        } else {
            // The latest moment the server was no further than the durable position.
            let reached = self
                .samples
                .iter()
                .rev()
                .find(|(end, _)| end <= committed)
                .map(|(_, at)| *at)
                .unwrap_or(0)
                .max(committed_at_ms);
            let since = match reached {
                0 => self.samples.front().map(|(_, at)| *at).unwrap_or(now),
                at => at,
            };
            now.saturating_sub(since)
        };
        self.last = Some((std::time::Instant::now(), lag));
        lag
    }

    /// The lag while the server cannot be asked: the last one, grown by the time since.
    fn unreachable_lag_ms(&self) -> u64 {
        self.last
            .map(|(at, lag)| lag + at.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: u32, offset: u64) -> LogPosition {
        LogPosition {
            file: format!("bin.{file:06}"),
            offset,
        }
    }

    fn status(end: LogPosition, server_time_ms: u64) -> LogStatus {
        LogStatus {
            end,
            bytes_behind: 0,
            server_time_ms,
        }
    }

    #[test]
    fn the_lag_is_zero_at_the_end_and_grows_while_the_reader_stalls() {
        let mut c = LagClock::default();
        assert_eq!(c.lag_ms(&at(1, 100), 0, &status(at(1, 100), 10_000)), 0);
        // The server moves on, the position does not: the lag is the time since the server
        // was where the position is.
        assert_eq!(c.lag_ms(&at(1, 100), 0, &status(at(1, 500), 11_000)), 1_000);
        assert_eq!(c.lag_ms(&at(1, 100), 0, &status(at(2, 50), 15_000)), 5_000);
        // The reader catches up to where the server was at 11 s.
        assert_eq!(c.lag_ms(&at(1, 500), 0, &status(at(2, 80), 16_000)), 5_000);
        assert_eq!(c.lag_ms(&at(2, 50), 0, &status(at(2, 90), 17_000)), 2_000);
        assert_eq!(c.lag_ms(&at(2, 90), 0, &status(at(2, 90), 18_000)), 0);
    }

    #[test]
    fn a_job_starting_far_behind_counts_from_its_last_applied_commit() {
        let mut c = LagClock::default();
        let day_ms = 86_400_000;
        let lag = c.lag_ms(&at(1, 100), 1_000, &status(at(9, 0), 1_000 + day_ms));
        assert_eq!(lag, day_ms);
        // Nothing known at all: from the first look at the server.
        let mut fresh = LagClock::default();
        assert_eq!(fresh.lag_ms(&at(1, 0), 0, &status(at(9, 0), 5_000)), 0);
        assert_eq!(fresh.lag_ms(&at(1, 0), 0, &status(at(9, 9), 8_000)), 3_000);
    }
}
