//! Checkpoints: what a job has durably done, and where a restart resumes.
//!
//! The decisions are pure and tested here; the file store ([`store`]) is a thin layer, and
//! [`lock`] makes one run the owner of a state directory.
//!
//! A backfill's progress is its plan (the splits, fixed on the first run so a restart reads
//! the same ones) and the set of finished splits. A split counts as finished only when the
//! epoch in which its last row was read is durable in the target on every worker — the
//! engine learns that from the frontier after the sinks, and feeds it to a [`Ledger`].
//!
//! `backfill+follow` adds a [`FollowState`]: a watermark (a time) and the polling round
//! under way, whose plan and finished splits are kept as a [`BackfillState`] of its own.

pub mod lock;
pub mod store;

use crate::source::{LogPosition, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The recorded state of a backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    /// Format version of this file.
    pub version: u32,
    /// The job's name; a state of another job is refused.
    pub job: String,
    /// Every split of the plan.
    pub plan: Vec<Split>,
    /// Finished split ids, as sorted inclusive ranges (compact however many splits finish).
    pub finished: Vec<(u64, u64)>,
}

impl BackfillState {
    /// The state of a job that has planned and finished nothing.
    pub fn new(job: &str, plan: Vec<Split>) -> Self {
        Self {
            version: 1,
            job: job.to_string(),
            plan,
            finished: Vec::new(),
        }
    }

    /// Whether split `id` is finished.
    pub fn is_finished(&self, id: u64) -> bool {
        self.finished.iter().any(|&(lo, hi)| lo <= id && id <= hi)
    }

    /// The splits still to read, in plan order.
    pub fn pending(&self) -> Vec<Split> {
        self.plan
            .iter()
            .filter(|s| !self.is_finished(s.id))
            .cloned()
            .collect()
    }

    /// Whether every split is finished.
    pub fn is_complete(&self) -> bool {
        self.plan.iter().all(|s| self.is_finished(s.id))
    }

    /// Marks splits finished.
    pub fn finish(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            if !self.is_finished(id) {
                self.finished.push((id, id));
            }
        }
        self.finished.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.finished.len());
        for &(lo, hi) in &self.finished {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.finished = merged;
    }
}

/// The recorded state of a change-log reader (CDC): where a restart resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CdcState {
    /// Format version of this file.
    pub version: u32,
    /// The job's name; a state of another job is refused.
    pub job: String,
    /// The first position not yet durable in the target: a transaction boundary.
    pub position: LogPosition,
    /// The server's commit time (Unix seconds) of the last transaction before `position`,
    /// 0 when none has been applied yet.
    #[serde(default)]
    pub committed_at: u32,
}

impl CdcState {
    /// The state of a reader that starts at `position`.
    pub fn new(job: &str, position: LogPosition) -> Self {
        Self {
            version: 1,
            job: job.to_string(),
            position,
            committed_at: 0,
        }
    }
}

/// The recorded state of `backfill+follow`'s polling rounds (the backfill before them keeps
/// its own [`BackfillState`]).
///
/// Times are Unix nanoseconds by the job's clock, compared with the points' own times: a
/// round reads the points with a time in `[watermark - lateness, now)`, so a point that
/// reaches the source up to `lateness` after its time is still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowState {
    /// Format version of this file.
    pub version: u32,
    /// The job's name; a state of another job is refused.
    pub job: String,
    /// Every point with an earlier time that was in the source when the last finished round
    /// was planned is durable in the target (for a new job: the time the backfill began).
    pub watermark: i64,
    /// The round under way, fixed before it is read so a restart finishes the same one.
    pub round: Option<Round>,
    /// Rounds finished so far.
    #[serde(default)]
    pub rounds: u64,
}

/// One polling round: the points with a time in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// The watermark less the lateness: the re-read part is `[from, watermark)`.
    pub from: i64,
    /// The clock when the round was planned: the new part is `[watermark, to)`.
    pub to: i64,
    /// The planner's count of the points in the new part (0: the round found nothing new).
    pub new_points: u64,
}

impl FollowState {
    /// The state of a job whose backfill starts at `now`: points before it are the
    /// backfill's.
    pub fn new(job: &str, now: i64) -> Self {
        Self {
            version: 1,
            job: job.to_string(),
            watermark: now,
            round: None,
            rounds: 0,
        }
    }

    /// The time range of the next round at `now`: `(from, watermark, to)`, the re-read part
    /// `[from, watermark)` and the new part `[watermark, to)`. A clock that went back reads
    /// only the re-read part.
    pub fn next_range(&self, now: i64, lateness: i64) -> (i64, i64, i64) {
        let from = self.watermark.saturating_sub(lateness.max(0));
        (from, self.watermark, now.max(self.watermark))
    }

    /// What the next round is at `now`, given whether a round plan is recorded: the round
    /// under way when both it and its plan are recorded; its range planned again when only
    /// the round is (a crash between the two saves); otherwise a new range (a plan recorded
    /// without its round was never read, and is replaced).
    pub fn next_round(&self, plan_recorded: bool, now: i64, lateness: i64) -> NextRound {
        match self.round {
            Some(round) if plan_recorded => NextRound::Resume(round),
            Some(round) => NextRound::Plan {
                from: round.from,
                watermark: self.watermark,
                to: round.to,
            },
            None => {
                let (from, watermark, to) = self.next_range(now, lateness);
                NextRound::Plan {
                    from,
                    watermark,
                    to,
                }
            }
        }
    }

    /// The round is durable: the watermark moves to its end.
    pub fn finish_round(&mut self) {
        if let Some(round) = self.round.take() {
            self.watermark = round.to;
            self.rounds += 1;
        }
    }
}

/// Where the next `backfill+follow` round comes from ([`FollowState::next_round`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRound {
    /// Finish the recorded round: read its plan's unfinished splits.
    Resume(Round),
    /// Plan the re-read part `[from, watermark)` and the new part `[watermark, to)`.
    Plan {
        /// Start of the re-read part.
        from: i64,
        /// End of the re-read part, start of the new one.
        watermark: i64,
        /// End of the new part.
        to: i64,
    },
}

/// What finished per epoch (split ids, or change-log positions), waiting for the epoch to
/// become durable.
#[derive(Debug)]
pub struct Ledger<T = u64> {
    by_epoch: BTreeMap<u64, Vec<T>>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Self {
            by_epoch: BTreeMap::new(),
        }
    }
}

impl<T> Ledger<T> {
    /// `item` (a split id: it read its last row; a position: its transaction ended) in
    /// `epoch`.
    pub fn record(&mut self, epoch: u64, item: T) {
        self.by_epoch.entry(epoch).or_default().push(item);
    }

    /// The oldest item not yet durable, if any.
    pub fn oldest(&self) -> Option<&T> {
        self.by_epoch.values().next().and_then(|v| v.first())
    }

    /// Removes and returns the items whose epochs are durable, in epoch order. `frontier`
    /// is the oldest epoch not yet durable everywhere; `None` means every epoch is durable
    /// (the dataflow has drained).
    pub fn take_durable(&mut self, frontier: Option<u64>) -> Vec<T> {
        let keep = match frontier {
            Some(f) => self.by_epoch.split_off(&f),
            None => BTreeMap::new(),
        };
        let durable = std::mem::replace(&mut self.by_epoch, keep);
        durable.into_values().flatten().collect()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.by_epoch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(id: u64) -> Split {
        Split {
            id,
            table: 0,
            partition: String::new(),
            start: Some(id as i64 * 10),
            end: Some(id as i64 * 10 + 10),
            nulls: false,
            estimated_rows: 10,
        }
    }

    #[test]
    fn finished_ids_stay_compact_ranges() {
        let mut s = BackfillState::new("j", (0..10).map(split).collect());
        s.finish([3, 1, 2, 7]);
        assert_eq!(s.finished, vec![(1, 3), (7, 7)]);
        s.finish([0, 4, 5, 6, 2]);
        assert_eq!(s.finished, vec![(0, 7)]);
        let pending: Vec<u64> = s.pending().iter().map(|s| s.id).collect();
        assert_eq!(pending, vec![8, 9]);
        assert!(!s.is_complete());
        s.finish([9, 8]);
        assert!(s.is_complete());
        assert_eq!(s.finished, vec![(0, 9)]);
    }

    #[test]
    fn follow_rounds_overlap_by_the_lateness_and_advance_when_finished() {
        let mut s = FollowState::new("j", 1_000);
        assert_eq!(s.next_range(1_500, 100), (900, 1_000, 1_500));
        s.round = Some(Round {
            from: 900,
            to: 1_500,
            new_points: 3,
        });
        s.finish_round();
        assert_eq!((s.watermark, s.round, s.rounds), (1_500, None, 1));
        // Finishing twice (a restart after the save) changes nothing.
        s.finish_round();
        assert_eq!((s.watermark, s.rounds), (1_500, 1));
        // The clock went back: only the lateness window is read again.
        assert_eq!(s.next_range(1_200, 100), (1_400, 1_500, 1_500));
        assert_eq!(s.next_range(2_000, 0), (1_500, 1_500, 2_000));
    }

    #[test]
    fn a_restart_resumes_a_recorded_round_or_plans_its_range_again() {
        let mut s = FollowState::new("j", 1_000);
        let plan = |from, watermark, to| NextRound::Plan {
            from,
            watermark,
            to,
        };
        // No round recorded: a new one, a stray plan or not.
        assert_eq!(s.next_round(false, 1_500, 100), plan(900, 1_000, 1_500));
        assert_eq!(s.next_round(true, 1_500, 100), plan(900, 1_000, 1_500));
        let round = Round {
            from: 900,
            to: 1_400,
            new_points: 0,
        };
        s.round = Some(round);
        // Recorded with its plan: finished as it was, whatever the clock says now.
        assert_eq!(s.next_round(true, 9_000, 100), NextRound::Resume(round));
        // Recorded without its plan: the same range again.
        assert_eq!(s.next_round(false, 9_000, 100), plan(900, 1_000, 1_400));
    }

    #[test]
    fn only_epochs_before_the_frontier_are_durable() {
        let mut l = Ledger::default();
        l.record(0, 10);
        l.record(2, 12);
        l.record(3, 13);
        l.record(2, 22);
        assert_eq!(l.take_durable(Some(0)), Vec::<u64>::new());
        assert_eq!(l.take_durable(Some(3)), vec![10, 12, 22]);
        assert!(!l.is_empty());
        assert_eq!(l.take_durable(None), vec![13]);
        assert!(l.is_empty());
    }
}
