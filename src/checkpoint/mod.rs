//! Checkpoints: what a job has durably done, and where a restart resumes.
//!
//! The decisions are pure and tested here; the file store ([`store`]) is a thin layer.
//!
//! A backfill's progress is its plan (the splits, fixed on the first run so a restart reads
//! the same ones) and the set of finished splits. A split counts as finished only when the
//! epoch in which its last row was read is durable in the target on every worker — the
//! engine learns that from the frontier after the sinks, and feeds it to a [`Ledger`].

pub mod store;

use crate::sources::{LogPosition, Split};
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
