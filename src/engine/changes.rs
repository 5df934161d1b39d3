//! From row changes to sink changes: map, consolidate per epoch, decide per point.
//!
//! ```text
//!  row changes ─▶ [ map ] ─▶ (point, ±1) ─┬─ consolidated ─▶ differential consolidate
//!                (worker 0)               │                    (exchange by hash of the point)
//!                                         │                           │
//!                                         │                exchange by device
//!                                         │                           ▼
//!                                         │                 [ decide per point ] ─┐
//!                                         │                   (at epoch end)      ├─▶ changes
//!                                         └─ append-only ─▶ exchange by device ──┘   (Write/Delete)
//!                                                           [ in order ]
//! ```
//!
//! An UPDATE is the old point with -1 and the new with +1, an INSERT +1, a DELETE -1. The
//! epoch's updates form a differential collection; consolidating it cancels an insert and
//! a delete of the same point and collapses a chain of updates into the first old point
//! (-1) and the last new one (+1). What remains is decided per point of the target (series
//! and time): a +1 is a write (after a delete of the old point when one of its fields is
//! gone from the new one, since a write only adds fields); only -1s are a delete. A moved
//! key (another device or time) is a delete of the old point and a write of the new one.
//!
//! Capabilities: the deciding operator keeps one per epoch it holds updates of, until the
//! input frontier passes that epoch; the others hold none.

use crate::dead_letter::DeadLetters;
use crate::mapping::{Mappings, PointUpdate};
use crate::metrics::Counters;
use crate::model::{Change, Point};
use crate::sources::RowChange;
use differential_dataflow::AsCollection;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::{Capability, Concat, Operator};
use timely::dataflow::Stream;

/// Turns the reader's row changes into the changes sinks apply.
pub(super) fn to_sink_changes<'s>(
    changes: Stream<'s, u64, Vec<RowChange>>,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
) -> Stream<'s, u64, Vec<Change>> {
    let updates = map_changes(changes, mappings, dead_letters, counters);
    let mut parts = updates.partition(2, |u: PointUpdate| (u64::from(u.direct), (u.point, u.diff)));
    let direct = parts.pop().expect("two parts");
    let consolidated = parts.pop().expect("two parts");

    let consolidated = consolidated
        .map(|(point, diff)| (point, 0u64, diff as isize))
        .as_collection()
        .consolidate()
        .inner
        .map(|(point, _, diff)| (point, diff));
    let decided = decide(consolidated);

    let in_order = direct.unary(
        Exchange::new(|(p, _): &(Point, i8)| p.device_hash),
        "InOrder",
        |_, _| {
            let mut out = Vec::new();
            move |input, output| {
                input.for_each_time(|time, batches| {
                    for batch in batches {
                        out.extend(batch.drain(..).map(|(p, diff)| {
                            if diff > 0 {
                                Change::Write(p)
                            } else {
                                Change::Delete(p)
                            }
                        }));
                    }
                    output.session(&time).give_container(&mut out);
                });
            }
        },
    );
    decided.concat(in_order)
}

fn map_changes<'s>(
    changes: Stream<'s, u64, Vec<RowChange>>,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
) -> Stream<'s, u64, Vec<PointUpdate>> {
    changes.unary(Pipeline, "MapChanges", move |_, _| {
        let mut out = Vec::new();
        move |input, output| {
            input.for_each_time(|time, batches| {
                for batch in batches {
                    for change in batch.drain(..) {
                        mappings.apply_change(change, &mut |u| out.push(u), &mut |r| {
                            dead_letters.record("mapping", &r.reason, r.row)
                        });
                    }
                }
                Counters::add(&counters.points_mapped, out.len() as u64);
                output.session(&time).give_container(&mut out);
            });
        }
    })
}

/// An epoch's updates held until the epoch is complete, with its capability.
type Stashed = (Capability<u64>, Vec<(Point, isize)>);

/// Decides, per point of the target and epoch, what the consolidated updates mean.
fn decide<'s>(updates: Stream<'s, u64, Vec<(Point, isize)>>) -> Stream<'s, u64, Vec<Change>> {
    updates.unary_frontier(
        Exchange::new(|(p, _): &(Point, isize)| p.device_hash),
        "DecidePerPoint",
        |_, _| {
            let mut stash: BTreeMap<u64, Stashed> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each_time(|time, batches| {
                    let entry = stash
                        .entry(*time.time())
                        .or_insert_with(|| (time.retain(0), Vec::new()));
                    for batch in batches {
                        entry.1.append(batch);
                    }
                });
                while let Some(entry) = stash.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (capability, updates) = entry.remove();
                    let mut changes = decide_epoch(updates);
                    if !changes.is_empty() {
                        output.session(&capability).give_container(&mut changes);
                    }
                }
            }
        },
    )
}

/// One epoch's consolidated updates → changes, grouped by point (series and time).
pub(super) fn decide_epoch(mut updates: Vec<(Point, isize)>) -> Vec<Change> {
    updates.sort_by(|(a, _), (b, _)| {
        (a.time, &a.measurement, &a.tags).cmp(&(b.time, &b.measurement, &b.tags))
    });
    let mut changes = Vec::new();
    let mut rest = updates.as_mut_slice();
    while !rest.is_empty() {
        let n = rest
            .iter()
            .position(|(p, _)| !p.same_key(&rest[0].0))
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at_mut(n);
        rest = tail;
        let new = group.iter().rposition(|(_, d)| *d > 0);
        match new {
            Some(i) => {
                let written = &group[i].0;
                // A write adds fields; one the old point had and the new one lacks must go.
                let old = group.iter().find(|(p, d)| {
                    *d < 0
                        && p.fields
                            .iter()
                            .any(|(k, _)| !written.fields.iter().any(|(w, _)| w == k))
                });
                if let Some((old, _)) = old {
                    changes.push(Change::Delete(old.clone()));
                }
                changes.push(Change::Write(group[i].0.clone()));
            }
            None => {
                if let Some((old, _)) = group.first() {
                    changes.push(Change::Delete(old.clone()));
                }
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn point(device: &str, time: i64, fields: &[(&str, f64)]) -> Point {
        Point {
            measurement: "m".into(),
            tags: vec![("device".into(), device.to_string())],
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).into(), Value::Float(*v)))
                .collect(),
            time,
            device_hash: 0,
        }
    }

    #[test]
    fn an_update_is_one_write_and_a_lost_field_deletes_first() {
        let old = point("a", 1, &[("t", 1.0), ("h", 2.0)]);
        let new = point("a", 1, &[("t", 3.0), ("h", 2.0)]);
        assert_eq!(
            decide_epoch(vec![(old.clone(), -1), (new.clone(), 1)]),
            vec![Change::Write(new)]
        );
        let nulled = point("a", 1, &[("t", 3.0)]);
        assert_eq!(
            decide_epoch(vec![(nulled.clone(), 1), (old.clone(), -1)]),
            vec![Change::Delete(old), Change::Write(nulled)]
        );
    }

    #[test]
    fn deletes_and_moved_keys() {
        let a = point("a", 1, &[("t", 1.0)]);
        let b = point("b", 1, &[("t", 1.0)]);
        let later = point("a", 2, &[("t", 1.0)]);
        assert_eq!(
            decide_epoch(vec![(a.clone(), -1)]),
            vec![Change::Delete(a.clone())]
        );
        let mut moved = decide_epoch(vec![(a.clone(), -1), (b.clone(), 1), (later.clone(), 1)]);
        moved.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            moved,
            vec![Change::Delete(a), Change::Write(b), Change::Write(later)]
        );
    }
}
