//! What a running job is doing, as its status API and page show it (`status.addr`).
//!
//! ```text
//!  runner (phase, plan, restarts) ──┐
//!  engine (splits read, checkpoints)├──▶ StatusBoard ──snapshot──▶ GET /api/job, the page
//!  counters, dead letters ──────────┘         ▲
//!                            POST /api/job/stop, /cutover ──▶ the job's Control
//! ```
//!
//! The board keeps what the counters do not: the phase and since when, the plan per table
//! (splits and their estimated rows, which are being read, which are done), the last
//! checkpoint, the restarts with their causes, and a sample of the counters each second
//! for the last ten minutes (rows/s, lag). A snapshot joins it with the live counters.
//! Writers take a short lock per event (a split started or finished, a checkpoint), never
//! per row.

pub mod server;

use crate::dead_letter::{DeadLetters, Latest};
use crate::metrics::Counters;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How much history the board keeps, at one sample a second.
const HISTORY: usize = 600;

/// What the job is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Connecting, checking, loading its state.
    Starting,
    /// Copying what the source holds.
    Backfill,
    /// Following a change log.
    Cdc,
    /// Polling a source without a change log.
    Following,
    /// Serving the ingest endpoint.
    Ingesting,
    /// Stopping: writing what it read, then a final checkpoint.
    Draining,
    /// Waiting to restart after a transient failure.
    Restarting,
    /// Finished.
    Done,
    /// Failed.
    Failed,
}

/// One split of the plan, as the board knows it.
#[derive(Debug, Clone, Serialize)]
pub struct SplitState {
    /// Its id in the plan.
    pub id: u64,
    /// The planner's row estimate.
    pub estimated_rows: u64,
    /// `pending`, `reading` or `done`.
    pub state: &'static str,
}

/// The shared board (cheap to clone).
#[derive(Clone)]
pub struct StatusBoard {
    inner: Arc<Mutex<Board>>,
    counters: Arc<Counters>,
    dead_letters: DeadLetters,
}

struct Board {
    job: String,
    mode: String,
    process: usize,
    processes: usize,
    workers: usize,
    started: SystemTime,
    phase: Phase,
    phase_since: SystemTime,
    /// Table names, by table index.
    tables: Vec<String>,
    /// Split id → (table, estimated rows).
    plan: BTreeMap<u64, (u32, u64)>,
    reading: BTreeSet<u64>,
    done: BTreeSet<u64>,
    checkpoint: Option<(SystemTime, String)>,
    restarts: VecDeque<(SystemTime, String)>,
    restart_count: u64,
    failure: Option<String>,
    history: VecDeque<Sample>,
    last_sample: Option<(Instant, Totals)>,
}

/// The counters a sample keeps.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    rows: u64,
    points: u64,
    changes: u64,
}

/// The job over one second.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When (Unix ms).
    pub at: u64,
    /// Rows read per second.
    pub rows_per_second: f64,
    /// Points written per second.
    pub points_per_second: f64,
    /// Changes read per second (CDC).
    pub changes_per_second: f64,
    /// CDC lag, seconds.
    pub lag_seconds: f64,
}

/// Everything the API answers about the job.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The job's name.
    pub name: String,
    /// Its entry point (`backfill`, `backfill+cdc`, ...).
    pub mode: String,
    /// What it is doing.
    pub phase: Phase,
    /// Since when (RFC 3339).
    pub phase_since: String,
    /// When the process started (RFC 3339).
    pub started: String,
    /// This process and its cluster.
    pub process: ProcessInfo,
    /// Rows and points so far, rates and the ETA.
    pub progress: Progress,
    /// Per source table: splits and rows.
    pub tables: Vec<TableProgress>,
    /// Change-log lag (CDC, follow).
    pub lag: Lag,
    /// The last checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// Retries of requests, and restarts of the job.
    pub retries: Retries,
    /// Dead letters.
    pub dead_letters: DeadLetterInfo,
    /// Why the job failed, if it did.
    pub failure: Option<String>,
    /// The last ten minutes, one sample a second, oldest first.
    pub history: Vec<Sample>,
}

/// This process and its cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// This process's index.
    pub index: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// Worker threads in this process.
    pub workers: usize,
    /// Each process's state as this one knows it: `running`, `failed` or `done`.
    pub states: Vec<String>,
}

/// Rows and points.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Rows read.
    pub rows_read: u64,
    /// Rows the plan expects (estimates; 0 when unknown).
    pub rows_expected: u64,
    /// Points written.
    pub points_written: u64,
    /// Points deleted (CDC).
    pub points_deleted: u64,
    /// Changes read (CDC).
    pub changes_read: u64,
    /// Splits finished and durable.
    pub splits_done: u64,
    /// Splits planned.
    pub splits_total: u64,
    /// Rows read per second, over the last ten seconds.
    pub rows_per_second: f64,
    /// Seconds until the plan's rows are read at that rate, when known.
    pub eta_seconds: Option<f64>,
}

/// One source table.
#[derive(Debug, Clone, Serialize)]
pub struct TableProgress {
    /// Its name.
    pub name: String,
    /// Splits planned.
    pub splits_total: usize,
    /// Splits durable.
    pub splits_done: usize,
    /// Splits being read.
    pub splits_reading: usize,
    /// Rows the plan estimates.
    pub rows_estimated: u64,
    /// Of those, the estimates of the splits done.
    pub rows_done: u64,
    /// Every split of the table.
    pub splits: Vec<SplitState>,
}

/// How far behind the source the job is.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// Bytes of change log not yet durable.
    pub bytes: u64,
    /// Seconds, by the server's clock.
    pub seconds: f64,
}

/// The last checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// When (RFC 3339).
    pub at: String,
    /// What it records: finished splits, or a change-log position.
    pub position: String,
}

/// Retries and restarts.
#[derive(Debug, Clone, Serialize)]
pub struct Retries {
    /// Requests to the target retried.
    pub sink: u64,
    /// Requests to the source retried.
    pub source: u64,
    /// Restarts of the job from its checkpoint.
    pub restarts: u64,
    /// The latest restarts: when and why.
    pub latest_restarts: Vec<(String, String)>,
}

/// Dead letters.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterInfo {
    /// How many.
    pub count: u64,
    /// Where they are.
    pub file: String,
    /// The latest, newest last.
    pub latest: Vec<Latest>,
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl StatusBoard {
    /// A board for `job` run as `mode` on this process.
    pub fn new(
        job: &str,
        mode: &str,
        cluster: (usize, usize, usize),
        counters: Arc<Counters>,
        dead_letters: DeadLetters,
    ) -> Self {
        let now = SystemTime::now();
        let (process, processes, workers) = cluster;
        Self {
            inner: Arc::new(Mutex::new(Board {
                job: job.to_string(),
                mode: mode.to_string(),
                process,
                processes,
                workers,
                started: now,
                phase: Phase::Starting,
                phase_since: now,
                tables: Vec::new(),
                plan: BTreeMap::new(),
                reading: BTreeSet::new(),
                done: BTreeSet::new(),
                checkpoint: None,
                restarts: VecDeque::new(),
                restart_count: 0,
                failure: None,
                history: VecDeque::new(),
                last_sample: None,
            })),
            counters,
            dead_letters,
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job is now doing `phase`.
    pub fn phase(&self, phase: Phase) {
        let mut b = self.board();
        if b.phase != phase {
            b.phase = phase;
            b.phase_since = SystemTime::now();
        }
    }

    /// What the job is doing now.
    pub fn current_phase(&self) -> Phase {
        self.board().phase
    }

    /// The plan to read: table names and (split id, table, estimated rows); `done` the
    /// splits finished already (a resumed run). Replaces an earlier plan (a new round).
    pub fn plan(
        &self,
        tables: Vec<String>,
        splits: impl IntoIterator<Item = (u64, u32, u64)>,
        done: impl IntoIterator<Item = u64>,
    ) {
        let mut b = self.board();
        b.tables = tables;
        b.plan = splits.into_iter().map(|(id, t, n)| (id, (t, n))).collect();
        b.reading.clear();
        b.done = done.into_iter().collect();
    }

    /// A worker started reading split `id`.
    pub fn reading(&self, id: u64) {
        self.board().reading.insert(id);
    }

    /// Split `id` was read (not yet durable), or its read stopped.
    pub fn read(&self, id: u64) {
        self.board().reading.remove(&id);
    }

    /// Splits durable in the target.
    pub fn finished(&self, ids: &[u64]) {
        let mut b = self.board();
        for id in ids {
            b.reading.remove(id);
            b.done.insert(*id);
        }
    }

    /// A checkpoint was written, recording `position`.
    pub fn checkpointed(&self, position: String) {
        self.board().checkpoint = Some((SystemTime::now(), position));
    }

    /// The job restarts after `cause`.
    pub fn restarting(&self, cause: &str) {
        let mut b = self.board();
        b.restart_count += 1;
        if b.restarts.len() == 5 {
            b.restarts.pop_front();
        }
        b.restarts.push_back((SystemTime::now(), cause.to_string()));
        b.phase = Phase::Restarting;
        b.phase_since = SystemTime::now();
    }

    /// The job ended: done, or failed with `failure`.
    pub fn ended(&self, failure: Option<String>) {
        let mut b = self.board();
        b.phase = match failure {
            None => Phase::Done,
            Some(_) => Phase::Failed,
        };
        b.phase_since = SystemTime::now();
        b.failure = failure;
    }

    /// Takes one second's sample of the counters (call once a second).
    pub fn sample(&self) {
        let c = &self.counters;
        let now = Totals {
            rows: c.rows_read.get(),
            points: c.points_written.get(),
            changes: c.changes_read.get(),
        };
        let lag = c.lag_seconds.get();
        let mut b = self.board();
        if let Some((at, before)) = b.last_sample {
            let secs = at.elapsed().as_secs_f64().max(1e-3);
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            if b.history.len() == HISTORY {
                b.history.pop_front();
            }
            b.history.push_back(Sample {
                at: unix_ms(SystemTime::now()),
                rows_per_second: rate(now.rows, before.rows),
                points_per_second: rate(now.points, before.points),
                changes_per_second: rate(now.changes, before.changes),
                lag_seconds: lag,
            });
        }
        b.last_sample = Some((Instant::now(), now));
    }

    /// Keeps sampling once a second while the runtime runs.
    pub fn sample_every_second(&self, runtime: &tokio::runtime::Handle) {
        let board = self.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // A busy runtime delays a tick; it never makes up for it with a burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                board.sample();
            }
        });
    }

    /// Everything the API answers, now.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let b = self.board();
        let recent: Vec<&Sample> = b.history.iter().rev().take(10).collect();
        let rows_per_second = match recent.len() {
            0 => 0.0,
            n => recent.iter().map(|s| s.rows_per_second).sum::<f64>() / n as f64,
        };
        let rows_read = c.rows_read.get();
        let rows_expected = b.plan.values().map(|(_, n)| *n).sum::<u64>();
        let rows_left = b
            .plan
            .iter()
            .filter(|(id, _)| !b.done.contains(id))
            .map(|(_, (_, n))| *n)
            .sum::<u64>();
        let eta_seconds = (rows_per_second > 0.0 && !b.plan.is_empty())
            .then(|| rows_left as f64 / rows_per_second);
        let mut tables: Vec<TableProgress> = b
            .tables
            .iter()
            .map(|name| TableProgress {
                name: name.clone(),
                splits_total: 0,
                splits_done: 0,
                splits_reading: 0,
                rows_estimated: 0,
                rows_done: 0,
                splits: Vec::new(),
            })
            .collect();
        for (id, (table, estimate)) in &b.plan {
            let Some(t) = tables.get_mut(*table as usize) else {
                continue;
            };
            let state = if b.done.contains(id) {
                "done"
            } else if b.reading.contains(id) {
                "reading"
            } else {
                "pending"
            };
            t.splits_total += 1;
            t.rows_estimated += estimate;
            match state {
                "done" => {
                    t.splits_done += 1;
                    t.rows_done += estimate;
                }
                "reading" => t.splits_reading += 1,
                _ => {}
            }
            t.splits.push(SplitState {
                id: *id,
                estimated_rows: *estimate,
                state,
            });
        }
        let state = match b.phase {
            Phase::Failed => "failed",
            Phase::Done => "done",
            _ => "running",
        };
        Snapshot {
            name: b.job.clone(),
            mode: b.mode.clone(),
            phase: b.phase,
            phase_since: rfc3339(b.phase_since),
            started: rfc3339(b.started),
            process: ProcessInfo {
                index: b.process,
                processes: b.processes,
                workers: b.workers,
                // A process that fails ends the cluster's run; while this one runs, so do
                // the others.
                states: vec![state.to_string(); b.processes.max(1)],
            },
            progress: Progress {
                rows_read,
                rows_expected: rows_expected.max(c.rows_expected.get()),
                points_written: c.points_written.get(),
                points_deleted: c.points_deleted.get(),
                changes_read: c.changes_read.get(),
                splits_done: b.done.len() as u64,
                splits_total: b.plan.len() as u64,
                rows_per_second,
                eta_seconds,
            },
            tables,
            lag: Lag {
                bytes: c.lag_bytes.get(),
                seconds: c.lag_seconds.get(),
            },
            checkpoint: b.checkpoint.as_ref().map(|(at, position)| Checkpoint {
                at: rfc3339(*at),
                position: position.clone(),
            }),
            retries: Retries {
                sink: c.retries.get(),
                source: c.source_retries.get(),
                restarts: b.restart_count,
                latest_restarts: b
                    .restarts
                    .iter()
                    .map(|(at, cause)| (rfc3339(*at), cause.clone()))
                    .collect(),
            },
            dead_letters: DeadLetterInfo {
                count: self.dead_letters.count(),
                file: self.dead_letters.path().display().to_string(),
                latest: self.dead_letters.latest(),
            },
            failure: b.failure.clone(),
            history: b.history.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A board for job `j` (backfill, process 0 of 1, 2 workers), its counters and dead
    /// letters (a file in a scratch directory, written only if a test records one).
    fn board(name: &str) -> (StatusBoard, Arc<Counters>, DeadLetters) {
        let dir = std::env::temp_dir().join(format!("tsmig-status-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let counters = Counters::new();
        let letters = DeadLetters::new("j", &dir.join("dead-letter.jsonl"));
        let board = StatusBoard::new(
            "j",
            "backfill",
            (0, 1, 2),
            counters.clone(),
            letters.clone(),
        );
        (board, counters, letters)
    }

    /// Two tables: `a` with splits 0, 1, 2 (100 rows each), `b` with split 3 (1,000 rows).
    fn two_tables(board: &StatusBoard, done: &[u64]) {
        board.plan(
            vec!["a".into(), "b".into()],
            [(0, 0, 100), (1, 0, 100), (2, 0, 100), (3, 1, 1000)],
            done.iter().copied(),
        );
    }

    fn states(table: &TableProgress) -> Vec<(u64, &'static str)> {
        table.splits.iter().map(|s| (s.id, s.state)).collect()
    }

    #[test]
    fn splits_read_and_finished_show_per_table_with_the_estimates_done() {
        let (board, _, _) = board("tables");
        two_tables(&board, &[]);
        board.reading(0);
        board.reading(3);
        board.reading(1);
        board.read(1); // its read stopped: pending again until it is read anew
        board.finished(&[0]);
        let s = board.snapshot();
        assert_eq!(s.tables.len(), 2);
        let (a, b) = (&s.tables[0], &s.tables[1]);
        assert_eq!(a.name, "a");
        assert_eq!((a.splits_total, a.splits_done, a.splits_reading), (3, 1, 0));
        assert_eq!((a.rows_estimated, a.rows_done), (300, 100));
        assert_eq!(states(a), [(0, "done"), (1, "pending"), (2, "pending")]);
        assert_eq!(b.name, "b");
        assert_eq!((b.splits_total, b.splits_done, b.splits_reading), (1, 0, 1));
        assert_eq!((b.rows_estimated, b.rows_done), (1000, 0));
        assert_eq!(states(b), [(3, "reading")]);
        assert_eq!((s.progress.splits_done, s.progress.splits_total), (1, 4));
        assert_eq!(s.progress.rows_expected, 1300);
    }

    #[test]
    fn a_resumed_plan_counts_the_splits_finished_before_and_a_new_plan_replaces_it() {
        let (board, _, _) = board("resumed");
        two_tables(&board, &[1, 2]);
        board.reading(0);
        let s = board.snapshot();
        assert_eq!(s.tables[0].splits_done, 2);
        assert_eq!(s.tables[0].rows_done, 200);
        assert_eq!(s.progress.splits_done, 2);

        // A new round (follow): the old splits, reads and finished ones are gone.
        board.plan(vec!["c".into()], [(10, 0, 5)], []);
        let s = board.snapshot();
        assert_eq!(s.tables.len(), 1);
        assert_eq!(s.tables[0].name, "c");
        assert_eq!(states(&s.tables[0]), [(10, "pending")]);
        assert_eq!((s.progress.splits_done, s.progress.splits_total), (0, 1));
    }

    #[test]
    fn the_eta_is_the_rows_left_at_the_last_ten_seconds_rate() {
        let (board, counters, _) = board("eta");
        two_tables(&board, &[]);
        assert_eq!(board.snapshot().progress.eta_seconds, None, "no rate yet");
        board.finished(&[0, 1]);
        {
            let mut b = board.board();
            // An old burst outside the last ten samples must not count.
            for rate in [
                1e6, 1e6, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 30.0, 30.0,
            ] {
                b.history.push_back(Sample {
                    at: 0,
                    rows_per_second: rate,
                    points_per_second: rate,
                    changes_per_second: 0.0,
                    lag_seconds: 0.0,
                });
            }
        }
        counters.rows_read.add(250);
        let s = board.snapshot();
        assert_eq!(s.progress.rows_per_second, 14.0); // (8 × 10 + 2 × 30) / 10
                                                      // Rows left: split 2 (100) and split 3 (1,000), whatever was read of them.
        assert_eq!(s.progress.eta_seconds, Some(1100.0 / 14.0));
        assert_eq!(s.progress.rows_read, 250);
    }

    #[test]
    fn samples_turn_the_counters_into_rates_and_keep_ten_minutes() {
        let (board, counters, _) = board("samples");
        board.sample();
        assert!(
            board.snapshot().history.is_empty(),
            "the first sample is the baseline"
        );
        counters.rows_read.add(500);
        counters.points_written.add(400);
        counters.lag_seconds.set(2.5);
        board.sample();
        let h = board.snapshot().history;
        assert_eq!(h.len(), 1);
        assert!(h[0].rows_per_second > 0.0);
        assert!(h[0].points_per_second > 0.0 && h[0].points_per_second < h[0].rows_per_second);
        assert_eq!(h[0].changes_per_second, 0.0);
        assert_eq!(h[0].lag_seconds, 2.5);
        for _ in 0..HISTORY + 50 {
            board.sample();
        }
        let h = board.snapshot().history;
        assert_eq!(h.len(), HISTORY, "the history is bounded");
        assert!(h.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    }

    /// Polls (with a deadline) until the clock, as a snapshot renders it, reads other than
    /// `shown`: a phase changed after this has a `since` of its own.
    fn until_the_clock_shows_other_than(shown: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while rfc3339(SystemTime::now()) == shown {
            assert!(
                std::time::Instant::now() < deadline,
                "the clock stood still"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn phases_record_since_when_and_the_end_says_done_or_failed() {
        let (board, _, _) = board("phases");
        let s = board.snapshot();
        assert_eq!(s.phase, Phase::Starting);
        assert_eq!(s.process.states, ["running"]);
        let starting_since = s.phase_since;

        until_the_clock_shows_other_than(&starting_since);
        board.phase(Phase::Backfill);
        let s = board.snapshot();
        assert_eq!(board.current_phase(), Phase::Backfill);
        assert_ne!(s.phase_since, starting_since);
        let backfill_since = s.phase_since;
        until_the_clock_shows_other_than(&backfill_since);
        board.phase(Phase::Backfill);
        assert_eq!(
            board.snapshot().phase_since,
            backfill_since,
            "the same phase again is no change"
        );

        board.ended(None);
        let s = board.snapshot();
        assert_eq!((s.phase, s.failure.clone()), (Phase::Done, None));
        assert_eq!(s.process.states, ["done"]);

        board.ended(Some("the target refused the writes".into()));
        let s = board.snapshot();
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.failure.as_deref(), Some("the target refused the writes"));
        assert_eq!(s.process.states, ["failed"]);
        // The JSON names phases as the page shows them.
        assert_eq!(serde_json::to_value(&s).unwrap()["phase"], "failed");
    }

    #[test]
    fn restarts_count_all_and_keep_the_latest_five_causes() {
        let (board, _, _) = board("restarts");
        board.phase(Phase::Backfill);
        for i in 1..=7 {
            board.restarting(&format!("cause {i}"));
        }
        let s = board.snapshot();
        assert_eq!(s.phase, Phase::Restarting);
        assert_eq!(s.retries.restarts, 7);
        let causes: Vec<&str> = s
            .retries
            .latest_restarts
            .iter()
            .map(|(_, c)| c.as_str())
            .collect();
        assert_eq!(
            causes,
            ["cause 3", "cause 4", "cause 5", "cause 6", "cause 7"]
        );
    }

    #[test]
    fn the_snapshot_joins_checkpoints_counters_and_dead_letters() {
        let (board, counters, letters) = board("joined");
        assert!(board.snapshot().checkpoint.is_none());
        board.checkpointed("3 of 4 splits finished".into());
        counters.points_written.add(7);
        counters.points_deleted.add(2);
        counters.changes_read.add(9);
        counters.retries.add(3);
        counters.lag_bytes.add(4096);
        letters.record("mapping", "device_id is NULL", serde_json::json!({"id": 1}));
        let s = board.snapshot();
        assert_eq!(s.name, "j");
        assert_eq!(s.mode, "backfill");
        assert_eq!(
            (s.process.index, s.process.processes, s.process.workers),
            (0, 1, 2)
        );
        assert_eq!(s.checkpoint.unwrap().position, "3 of 4 splits finished");
        assert_eq!(
            (s.progress.points_written, s.progress.points_deleted),
            (7, 2)
        );
        assert_eq!(s.progress.changes_read, 9);
        assert_eq!(s.retries.sink, 3);
        assert_eq!(s.lag.bytes, 4096);
        assert_eq!(s.dead_letters.count, 1);
        assert_eq!(s.dead_letters.latest[0].reason, "device_id is NULL");
        assert!(s.dead_letters.file.ends_with("dead-letter.jsonl"));
        letters.sync().unwrap();
    }
}
