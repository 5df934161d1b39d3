//! Running `backfill+follow`: a backfill, then polling rounds that copy the points written
//! since, for sources without a change log (TDengine, InfluxDB 1.x) kept live while the
//! target fills.
//!
//! ```text
//!  first run: watermark = now ─► follow.json          (before the backfill plans anything)
//!  backfill (resumable, backfill.json)
//!  loop every follow.interval:
//!    round = [watermark - lateness, now)  ─► plan_window ─► follow-round/backfill.json
//!                                         ─► follow.json (round recorded)
//!    the backfill engine reads the round's splits (checkpointed split by split)
//!    watermark = round end ─► follow.json; the round's store is emptied
//!  until SIGTERM, or with --until-caught-up a round that found nothing newer than the last
//! ```
//!
//! The watermark is a time by this process's clock, compared with the points' own times;
//! every round reads again the `lateness` before it, so a point that reaches the source up
//! to `lateness` after its time is copied, and a restart reads again at most that much
//! beyond what it had not finished. A round is planned as two parts, the re-read
//! `[watermark - lateness, watermark)` and the new `[watermark, now)`, so it knows whether
//! it found anything new. Writes are idempotent per series and time: a point read by two
//! rounds is written once. Points with a time ahead of the clock wait for the round whose
//! end passes them.
//!
//! Crash safety: a round's time range and plan are recorded before any of it is read; a
//! restart finishes that round (only its unfinished splits) before planning the next. A
//! plan recorded without its round (a crash between the two saves) is planned again.

use super::RunOptions;
use super::{
    build_sink, finish_sink, open, prepare_sink, source_error, BackfillPhase, JobRun, RunError,
};
use crate::checkpoint::store::FileStore;
use crate::checkpoint::{BackfillState, FollowState, NextRound, Round};
use crate::connectors::Checked;
use crate::job::Job;
use crate::mapping::Mappings;
use crate::sink::Sink;
use crate::source::{BoundedSource, Split};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One attempt of `backfill+follow`: open the source, build the sink, then the backfill
/// and the rounds from the recorded state.
pub(super) fn run(
    job: &Job,
    checked: &Checked,
    _mode: crate::job::Mode,
    options: &RunOptions,
    job_run: &JobRun,
) -> Result<(), RunError> {
    if options.cluster.processes() > 1 {
        return Err(RunError::Usage(
            "backfill+follow plans its rounds in one process; run it with --workers (several processes are for backfills)".into(),
        ));
    }
    let (source, mappings) = job_run.rt.block_on(open(job, checked))?;
    if !source.follows_by_time() {
        let hint = match checked.source.kind() {
            "mysql" => "a MySQL source has a binlog: follow it with `backfill+cdc`",
            _ => "it needs a source read by time (tdengine, influxdb)",
        };
        return Err(RunError::Usage(format!(
            "{}: key `source.type`: a `{}` source cannot be polled by time; {hint}",
            job.path.display(),
            checked.source.kind()
        )));
    }
    let sink = Arc::new(build_sink(job, checked, &mappings)?);
    FollowPhases {
        job,
        options,
        run: job_run,
        source: Arc::from(source),
        mappings: Arc::new(mappings),
    }
    .run(sink)
}

struct FollowPhases<'a> {
    job: &'a Job,
    options: &'a RunOptions,
    run: &'a JobRun,
    source: Arc<dyn BoundedSource>,
    mappings: Arc<Mappings>,
}

/// Now, in Unix nanoseconds.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

/// A Unix-nanosecond time as RFC 3339, for logs.
fn show(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl FollowPhases<'_> {
    fn run<S: Sink>(self, sink: Arc<S>) -> Result<(), RunError> {
        let FollowPhases {
            job,
            options,
            run,
            source,
            mappings,
        } = self;
        prepare_sink(job, &run.rt, &*sink)?;
        // One process only (checked at start): this is process 0.
        let store = super::state_store(job, options.fresh, run)?;
        let mut state = start_state(job, &store)?;

        BackfillPhase {
            job,
            options,
            run,
            source: source.clone(),
            mappings: mappings.clone(),
            fresh: false,
        }
        .run_with(sink.clone())?;
        if run.control.stopping() {
            return finish_sink(job, &run.rt, &*sink);
        }
        tracing::info!(
            watermark = %show(state.watermark),
            "backfill complete; polling for newer points every {:?}",
            job.file.follow.interval
        );

        run.status.phase(crate::status::Phase::Following);
        let rounds = Rounds {
            job,
            options,
            run,
            source,
            mappings,
            sink: sink.clone(),
            store,
        };
        let result = rounds.follow(&mut state);
        println!(
            "follow: watermark {} ({}) after {} rounds",
            state.watermark,
            show(state.watermark),
            state.rounds
        );
        result?;
        finish_sink(job, &run.rt, &*sink)
    }
}

/// The recorded follow state, or for a new job the watermark recorded now, before the
/// backfill plans: every point before it is the backfill's to copy.
fn start_state(job: &Job, store: &FileStore) -> Result<FollowState, RunError> {
    if let Some(state) = store.load_follow().map_err(RunError::Failed)? {
        if state.job != job.file.name {
            return Err(RunError::Usage(format!(
                "the state in {} belongs to job `{}`, not `{}`; point checkpoint.store elsewhere",
                store.dir().display(),
                state.job,
                job.file.name
            )));
        }
        tracing::info!(watermark = %show(state.watermark), rounds = state.rounds, "resuming follow from the checkpoint in {}", store.dir().display());
        return Ok(state);
    }
    if store.load_backfill().map_err(RunError::Failed)?.is_some() {
        return Err(RunError::Usage(format!(
            "{} holds a backfill without a follow watermark (from a plain backfill?): which points it copied is not known. Start over with --fresh",
            store.dir().display()
        )));
    }
    let state = FollowState::new(&job.file.name, now_ns());
    store.save_follow(&state).map_err(RunError::Failed)?;
    Ok(state)
}

/// The polling rounds after the backfill.
struct Rounds<'a, S: Sink> {
    job: &'a Job,
    options: &'a RunOptions,
    run: &'a JobRun,
    source: Arc<dyn BoundedSource>,
    mappings: Arc<Mappings>,
    sink: Arc<S>,
    store: FileStore,
}

impl<S: Sink> Rounds<'_, S> {
    /// Runs rounds until a stop is requested or, with `--until-caught-up`, a round finds
    /// nothing new.
    fn follow(&self, state: &mut FollowState) -> Result<(), RunError> {
        let interval = self.job.file.follow.interval;
        let round_store = self.store.follow_round();
        loop {
            let started = Instant::now();
            let (round, plan, resumed) = self.next_round(state, &round_store)?;
            tracing::info!(
                from = %show(round.from),
                watermark = %show(state.watermark),
                to = %show(round.to),
                splits = plan.pending().len(),
                new_points = round.new_points,
                "follow round"
            );
            self.read(plan, &round_store)?;
            let finished = round_store
                .load_backfill()
                .map_err(RunError::Failed)?
                .is_some_and(|s| s.is_complete());
            if !finished {
                // Stopped mid-round: its finished splits are recorded; a restart reads the rest.
                return Ok(());
            }
            state.finish_round();
            self.store.save_follow(state).map_err(RunError::Failed)?;
            round_store.clear_backfill().map_err(RunError::Failed)?;
            self.show_lag(state);
            if self.run.control.stopping() {
                return Ok(());
            }
            // A round resumed from before a restart counted its new points back then; only
            // one planned now says the source has nothing newer.
            let until_caught_up =
                self.options.until_caught_up || self.run.control.cutover_requested();
            if until_caught_up && !resumed && round.new_points == 0 {
                tracing::info!("caught up: the round found no newer points");
                return Ok(());
            }
            // Sleep out the interval, waking for a stop request.
            while started.elapsed() < interval {
                if self.run.control.stopping() {
                    return Ok(());
                }
                self.show_lag(state);
                std::thread::sleep((interval - started.elapsed()).min(Duration::from_millis(50)));
            }
        }
    }

    /// The lag metric (`tsmig_cdc_lag_seconds`): how far the watermark is behind now.
    fn show_lag(&self, state: &FollowState) {
        let lag_ms = now_ns().saturating_sub(state.watermark).max(0) / 1_000_000;
        self.run.counters.lag_seconds.set(lag_ms as f64 / 1000.0);
    }

    /// The round under way (recorded, with its plan; `true`), or a new one planned and
    /// recorded.
    fn next_round(
        &self,
        state: &mut FollowState,
        round_store: &FileStore,
    ) -> Result<(Round, BackfillState, bool), RunError> {
        let recorded = round_store.load_backfill().map_err(RunError::Failed)?;
        let lateness = nanos(self.job.file.follow.lateness);
        let next = state.next_round(recorded.is_some(), now_ns(), lateness);
        let (from, watermark, to) = match (next, recorded) {
            (NextRound::Resume(round), Some(plan)) => {
                tracing::info!("resuming the round under way");
                return Ok((round, plan, true));
            }
            (
                NextRound::Plan {
                    from,
                    watermark,
                    to,
                },
                _,
            ) => (from, watermark, to),
            // Not given: `next_round` resumes only a round whose plan is recorded.
            (NextRound::Resume(round), None) => (round.from, state.watermark, round.to),
        };
        let (old, new) = self
            .run
            .rt
            .block_on(async {
                let old = self.source.plan_window(from, watermark).await?;
                let new = self.source.plan_window(watermark, to).await?;
                Ok((old, new))
            })
            .map_err(|e| source_error(self.job, e))?;
        let round = Round {
            from,
            to,
            new_points: new.iter().map(|s| s.estimated_rows).sum(),
        };
        let plan = BackfillState::new(&self.job.file.name, renumber(old, new));
        // The plan first, then the round naming it: a plan without its round is planned again.
        round_store.save_backfill(&plan).map_err(RunError::Failed)?;
        state.round = Some(round);
        self.store.save_follow(state).map_err(RunError::Failed)?;
        Ok((round, plan, false))
    }

    /// Reads the round's pending splits with the backfill engine, which records each
    /// finished split in the round's store.
    fn read(&self, plan: BackfillState, round_store: &FileStore) -> Result<(), RunError> {
        let pending = plan.pending();
        if pending.is_empty() {
            return Ok(());
        }
        self.run.status.plan(
            self.source
                .schema()
                .iter()
                .map(|t| t.name.clone())
                .collect(),
            plan.plan.iter().map(|s| (s.id, s.table, s.estimated_rows)),
            plan.plan
                .iter()
                .filter(|s| plan.is_finished(s.id))
                .map(|s| s.id),
        );
        let counters = &self.run.counters;
        counters.splits_planned.add(pending.len() as u64);
        counters
            .rows_expected
            .add(pending.iter().map(|s| s.estimated_rows).sum());
        self.run.backfill_engine(
            self.job,
            &self.options.cluster,
            self.source.clone(),
            self.mappings.clone(),
            self.sink.clone(),
            Some((plan, round_store.clone())),
        )
    }
}

/// The round's two plans as one, ids from 0.
fn renumber(old: Vec<Split>, new: Vec<Split>) -> Vec<Split> {
    old.into_iter()
        .chain(new)
        .enumerate()
        .map(|(id, split)| Split {
            id: id as u64,
            ..split
        })
        .collect()
}
