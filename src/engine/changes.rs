//! From row changes to sink changes: map, group each epoch's updates per point, decide.
//!
//! ```text
//!  row changes ─▶ [ map ] ─▶ (point, ±1) ─┬─ per point ─▶ exchange by device ─▶ [ decide per point ] ─┐
//!                (worker 0)               │                                   (at epoch end)        ├─▶ changes
//!                                         └─ append-only ─▶ exchange by device ─▶ [ in order ] ──────┘   (Write/Delete)
//! ```
//!
//! An UPDATE is the old point with -1 and the new with +1, an INSERT +1, a DELETE -1. The
//! deciding operator gathers an epoch's updates per point of the target (series and time)
//! and decides, at the epoch's end, by one rule (`decide_epoch`):
//!
//! - a point whose final state is *absent* is deleted — also when its updates cancel out
//!   (an insert and a delete in one epoch): delivery is at-least-once, so after a replay,
//!   or when a backfill chunk was read after the snapshot position, the target may hold
//!   the point already. Deletes are idempotent.
//! - a point whose final state is *present* is written with its last values; first deleted
//!   when any version of it in the epoch had a field the final one lacks (a field set to
//!   NULL, say): a write only adds fields, and the target may hold any of those versions.
//!
//! A delete names every field any version had, so a target that deletes by field (IoTDB)
//! removes them all. A moved key (another device, tag or time) is two points: the old one
//! ends absent, the new one present. That is also why this is not differential's
//! `consolidate()`: it cancels +1 against -1 and so forgets that the point was touched.
//! Why this rule ends with target = source however often an epoch is replayed is argued,
//! and checked with random histories, crashes and restarts, in `tests/model.rs`.
//!
//! Append-only mappings skip the grouping: their updates reach the sink in log order (a
//! -1 as a delete, a +1 as a write), which is exact however often it is replayed, since an
//! update is a delete followed by a write.
//!
//! Capabilities: the deciding operator keeps one per epoch it holds updates of, until the
//! input frontier passes that epoch; the others hold none.

use crate::dead_letter::DeadLetters;
use crate::mapping::{Mappings, PointUpdate};
use crate::metrics::Counters;
use crate::model::{Change, Point};
use crate::model::{Name, Value};
use crate::source::RowChange;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::{Capability, Concat, Operator};
use timely::dataflow::Stream;

/// Turns the reader's row changes into the changes sinks apply.
pub(super) fn to_sink_changes<'s>(
    changes: Stream<'s, u64, Vec<RowChange>>,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
) -> Stream<'s, u64, Vec<Change>> {
    let (per_point, direct) = map_changes(changes, mappings, dead_letters, counters);
    let decided = decide(per_point);

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

/// Point updates, each with its +1 or -1.
type Updates<'s> = Stream<'s, u64, Vec<(Point, i8)>>;

/// Maps row changes to point updates: those of per-point mappings on the first stream,
/// those of append-only mappings on the second. Each output's batch is sized for the
/// changes mapped at once (a vector grown a push at a time was copied at each doubling);
/// the operator holds no capability of its own.
fn map_changes<'s>(
    changes: Stream<'s, u64, Vec<RowChange>>,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
    counters: Arc<Counters>,
) -> (Updates<'s>, Updates<'s>) {
    let mut builder = OperatorBuilder::new("MapChanges".to_owned(), changes.scope());
    let mut input = builder.new_input(changes, Pipeline);
    let (grouped_output, grouped_stream) = builder.new_output::<Vec<(Point, i8)>>();
    let (direct_output, direct_stream) = builder.new_output::<Vec<(Point, i8)>>();
    let mut grouped_output =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<(Point, i8)>>>::from(grouped_output);
    let mut direct_output =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<(Point, i8)>>>::from(direct_output);
    builder.build(move |_capabilities| {
        let mut grouped = Vec::new();
        let mut direct = Vec::new();
        move |_frontiers| {
            input.for_each_time(|time, batches| {
                for batch in batches {
                    grouped.reserve(batch.len());
                    for change in batch.drain(..) {
                        let mut emit = |u: PointUpdate| match u.direct {
                            false => grouped.push((u.point, u.diff)),
                            true => direct.push((u.point, u.diff)),
                        };
                        mappings.apply_change(change, &mut emit, &mut |r| {
                            dead_letters.record("mapping", &r.reason, r.row)
                        });
                    }
                }
                counters
                    .points_mapped
                    .add((grouped.len() + direct.len()) as u64);
                if !grouped.is_empty() {
                    grouped_output
                        .activate()
                        .session(&time)
                        .give_container(&mut grouped);
                }
                if !direct.is_empty() {
                    direct_output
                        .activate()
                        .session(&time)
                        .give_container(&mut direct);
                }
            });
        }
    });
    (grouped_stream, direct_stream)
}

/// An epoch's updates, in arrival order, held until the epoch is complete, with its
/// capability.
type Stashed = (Capability<u64>, Vec<(Point, i8)>);

/// Decides, per point of the target and epoch, what the epoch's updates mean. Updates of one
/// point come from the one reader through one exchange channel, so they arrive in log order.
fn decide<'s>(updates: Stream<'s, u64, Vec<(Point, i8)>>) -> Stream<'s, u64, Vec<Change>> {
    updates.unary_frontier(
        Exchange::new(|(p, _): &(Point, i8)| p.device_hash),
        "DecidePerPoint",
        |_, _| {
            let mut stash: BTreeMap<u64, Stashed> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each_time(|time, batches| {
                    let epoch = *time.time();
                    let (_, updates) = stash
                        .entry(epoch)
                        .or_insert_with(|| (time.retain(0), Vec::new()));
                    for batch in batches {
                        // The first batch of an epoch becomes its list (no copy).
                        if updates.is_empty() {
                            std::mem::swap(updates, batch);
                        } else {
                            updates.append(batch);
                        }
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

/// One epoch's updates, in log order → changes, by the rule in the module docs.
pub(super) fn decide_epoch(updates: Vec<(Point, i8)>) -> Vec<Change> {
    // Every update of one point has the same time and device hash (the hash the exchange
    // brought them here by). Updates with the same pair are chained in log order: `next[i]`
    // is the one after update `i`, found through the last one seen per pair. One hash
    // lookup an update, where sorting the epoch cost a comparison per level of the sort.
    let n = updates.len();
    let mut next = vec![NONE; n];
    let mut last: HashMap<(i64, u64), usize, BuildHasherDefault<PairHasher>> =
        HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default());
    let mut chained = false;
    for (i, (p, _)) in updates.iter().enumerate() {
        if let Some(before) = last.insert((p.time, p.device_hash), i) {
            next[before] = i;
            chained = true;
        }
    }
    drop(last);
    if !chained {
        // Every point updated once: each is written if +1, else deleted (the rule below
        // with one update), and moves to the sink without a copy.
        return updates.into_iter().map(single).collect();
    }
    let mut slots: Vec<Option<(Point, i8)>> = updates.into_iter().map(Some).collect();
    let mut changes = Vec::with_capacity(n);
    let mut chain = Vec::new();
    for head in 0..n {
        // Taken with the head of its chain, which comes first in the log.
        if slots[head].is_none() {
            continue;
        }
        if next[head] == NONE {
            changes.push(single(slots[head].take().expect("not yet decided")));
            continue;
        }
        chain.clear();
        let mut at = head;
        while at != NONE {
            chain.push(at);
            at = next[at];
        }
        // A chain is one point's updates, unless points of other series share the time and
        // device hash (several mappings of one table, tags besides the device, or a
        // collision): sorted by series, log order kept within one (a stable sort, in
        // O(n log n) however many series), and each series' run decided on its own.
        let held_slots = &slots;
        chain.sort_by(|&a, &b| {
            let (a, b) = (&held(held_slots, a).0, &held(held_slots, b).0);
            (&a.measurement, &a.tags).cmp(&(&b.measurement, &b.tags))
        });
        let mut rest = chain.as_slice();
        while let Some(&first) = rest.first() {
            let key = &held(&slots, first).0;
            let same = rest
                .iter()
                .position(|&i| !held(&slots, i).0.same_key(key))
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(same);
            if let [only] = group {
                changes.push(single(slots[*only].take().expect("not yet decided")));
            } else {
                let updates: Vec<&(Point, i8)> = group.iter().map(|&i| held(&slots, i)).collect();
                decide_point(&updates, &mut changes);
                for &i in group {
                    slots[i] = None;
                }
            }
            rest = tail;
        }
    }
    changes
}

/// No next update in a chain.
const NONE: usize = usize::MAX;

/// An update not yet decided.
fn held(slots: &[Option<(Point, i8)>], i: usize) -> &(Point, i8) {
    slots[i].as_ref().expect("each update is decided once")
}

/// A point's only update in an epoch: written if +1, else deleted.
fn single((point, diff): (Point, i8)) -> Change {
    match diff > 0 {
        true => Change::Write(point),
        false => Change::Delete(point),
    }
}

/// Hashes a (time, device hash) pair: the device hash is xxh3's already; the time is
/// mixed in by a multiplication (a splitmix64 step), as cheap as the pair is.
#[derive(Default)]
struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only the pair's two integers are hashed; anything else is folded in all the same.
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    fn write_i64(&mut self, x: i64) {
        self.write_u64(x as u64);
    }
    fn finish(&self) -> u64 {
        let x = self.0;
        (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9)
    }
}

/// Versions of a point looked for one by one before an index is built: a point's updates
/// in one epoch are few (an UPDATE is two), and comparing a few points costs less than
/// hashing them.
const SCAN_VERSIONS: usize = 8;

/// The changes for one point, given its updates in log order.
fn decide_point(group: &[&(Point, i8)], changes: &mut Vec<Change>) {
    // The final state. Each version's count starts at what the epoch's log implies it was
    // before (a version first removed was there), plus its updates; of the versions still
    // there at the end, the one written last. (With a consistent log and a unique key that
    // is simply the last update, if it is a +1.)
    let last = final_state(group, SCAN_VERSIONS);
    // Every field any version had: the target may hold any of them at this point now.
    let mut fields: Vec<(Name, Value)> = Vec::new();
    for (p, _) in group {
        for (k, v) in &p.fields {
            if !fields.iter().any(|(f, _)| f == k) {
                fields.push((k.clone(), v.clone()));
            }
        }
    }
    let (template, _) = group[0];
    let delete = |fields: Vec<(Name, Value)>| {
        Change::Delete(Point {
            measurement: template.measurement.clone(),
            tags: template.tags.clone(),
            fields,
            time: template.time,
            device_hash: template.device_hash,
        })
    };
    match last {
        Some(written) => {
            let has = |k: &Name| written.fields.iter().any(|(f, _)| f == k);
            if !fields.iter().all(|(k, _)| has(k)) {
                changes.push(delete(fields));
            }
            changes.push(Change::Write(written.clone()));
        }
        None => changes.push(delete(fields)),
    }
}

/// The final state of a point given its updates in log order, by the rule in
/// [`decide_point`]; versions are found by comparison among the first `scan`, then
/// through an index.
fn final_state<'a>(group: &[&'a (Point, i8)], scan: usize) -> Option<&'a Point> {
    if let [(p, d)] = group {
        return (*d > 0).then_some(p);
    }
    // Per version: the point, its running sum, lowest running sum and the position of its
    // last +1.
    let mut versions: Vec<(&Point, i64, i64, usize)> = Vec::new();
    let mut index: HashMap<&Point, usize> = HashMap::new();
    for (at, (p, d)) in group.iter().enumerate() {
        let found = match versions.len() < scan {
            true => versions.iter().position(|v| v.0 == p),
            false => {
                // The versions are distinct: those not indexed yet are the last ones.
                let indexed = index.len();
                index.extend(
                    versions[indexed..]
                        .iter()
                        .zip(indexed..)
                        .map(|(v, i)| (v.0, i)),
                );
                index.get(p).copied()
            }
        };
        let i = found.unwrap_or_else(|| {
            versions.push((p, 0, 0, 0));
            versions.len() - 1
        });
        let (_, sum, low, written) = &mut versions[i];
        *sum += i64::from(*d);
        *low = (*low).min(*sum);
        if *d > 0 {
            *written = at;
        }
    }
    versions
        .into_iter()
        .filter(|(_, sum, low, _)| sum - low > 0)
        .max_by_key(|(_, _, _, written)| *written)
        .map(|(p, ..)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(device: &str, time: i64, fields: &[(&str, f64)]) -> Point {
        Point {
            measurement: "m".into(),
            tags: vec![("device".into(), device.to_string().into())],
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).into(), Value::Float(*v)))
                .collect(),
            time,
            device_hash: 0,
        }
    }

    /// A change as `write a@1 t,h` / `delete a@1 t,h`: the point and the fields it names.
    fn show(changes: Vec<Change>) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let (what, p) = match c {
                    Change::Write(p) => ("write", p),
                    Change::Delete(p) => ("delete", p),
                };
                let fields: Vec<&str> = p.fields.iter().map(|(k, _)| k.as_str()).collect();
                format!("{what} {}@{} {}", p.tags[0].1, p.time, fields.join(","))
            })
            .collect()
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
            show(decide_epoch(vec![(old.clone(), -1), (nulled.clone(), 1)])),
            ["delete a@1 t,h", "write a@1 t"]
        );
    }

    #[test]
    fn updates_of_points_interleaved_in_the_log_are_grouped_per_point() {
        // Points of several devices at one time, their updates interleaved, two of them
        // (b and c) with one device hash: each decided on its own updates in log order.
        let at = |device: &str, hash: u64, t: f64| Point {
            device_hash: hash,
            ..point(device, 1, &[("t", t)])
        };
        let mut changes = show(decide_epoch(vec![
            (at("b", 9, 1.0), 1),
            (at("a", 3, 1.0), 1),
            (at("c", 9, 1.0), 1),
            (at("b", 9, 1.0), -1),
            (at("a", 3, 1.0), -1),
            (at("b", 9, 2.0), 1),
            (at("a", 3, 2.0), 1),
            (at("c", 9, 1.0), -1),
        ]));
        changes.sort();
        assert_eq!(changes, ["delete c@1 t", "write a@1 t", "write b@1 t"]);
        let values: Vec<Value> = decide_epoch(vec![(at("a", 3, 1.0), 1), (at("a", 3, 2.0), 1)])
            .iter()
            .map(|c| c.point().fields[0].1.clone())
            .collect();
        assert_eq!(values, [Value::Float(2.0)], "the later version is written");
    }

    #[test]
    fn deletes_and_moved_keys() {
        let a = point("a", 1, &[("t", 1.0)]);
        let b = point("b", 1, &[("t", 1.0)]);
        let later = point("a", 2, &[("t", 1.0)]);
        assert_eq!(show(decide_epoch(vec![(a.clone(), -1)])), ["delete a@1 t"]);
        let mut moved = show(decide_epoch(vec![(a.clone(), -1), (b, 1), (later, 1)]));
        moved.sort();
        assert_eq!(moved, ["delete a@1 t", "write a@2 t", "write b@1 t"]);
    }

    #[test]
    fn a_point_touched_in_an_epoch_and_absent_at_its_end_is_deleted() {
        // Inserted and deleted in one epoch: after a replay the target may hold it.
        let a = point("a", 1, &[("t", 1.0)]);
        assert_eq!(
            show(decide_epoch(vec![(a.clone(), 1), (a.clone(), -1)])),
            ["delete a@1 t"]
        );
        // Inserted, then moved away: the old place is deleted.
        let moved = point("a", 2, &[("t", 1.0)]);
        assert_eq!(
            show(decide_epoch(vec![(a.clone(), 1), (a, -1), (moved, 1)])),
            ["delete a@1 t", "write a@2 t"]
        );
    }

    #[test]
    fn every_field_any_version_had_is_deleted_before_the_last_version_is_written() {
        // A field set and cleared again within the epoch: the target may hold it.
        let v1 = point("a", 1, &[("t", 1.0)]);
        let v2 = point("a", 1, &[("t", 2.0), ("h", 5.0)]);
        let v3 = point("a", 1, &[("t", 3.0)]);
        let changes = decide_epoch(vec![
            (v1.clone(), -1),
            (v2.clone(), 1),
            (v2, -1),
            (v3.clone(), 1),
        ]);
        assert_eq!(show(changes.clone()), ["delete a@1 t,h", "write a@1 t"]);
        assert_eq!(changes[1], Change::Write(v3));
        // Back to an earlier version: that version is the final state.
        let back = decide_epoch(vec![(v1.clone(), 1), (v1.clone(), -1), (v1.clone(), 1)]);
        assert_eq!(back, vec![Change::Write(v1.clone())]);
    }

    /// Random epochs: points of four devices (a and b share a device hash, as c and d do)
    /// at three times, a field of few values and one sometimes missing, each +1 or -1.
    fn epochs() -> impl Strategy<Value = Vec<(Point, i8)>> {
        let update = (0..4usize, 0..3i64, 0..4u8, any::<bool>(), any::<bool>());
        prop::collection::vec(update, 0..40).prop_map(|updates| {
            updates
                .into_iter()
                .map(|(d, time, v, h, plus)| {
                    let mut p = point(["a", "b", "c", "d"][d], time, &[("t", f64::from(v))]);
                    if h {
                        p.fields.push(("h".into(), Value::Float(1.0)));
                    }
                    p.device_hash = (d / 2) as u64;
                    (p, if plus { 1 } else { -1 })
                })
                .collect()
        })
    }

    /// A point's identity, for grouping changes in the tests.
    fn key(p: &Point) -> String {
        format!("{}@{}", p.tags[0].1, p.time)
    }

    proptest! {
        /// Whatever the grouping finds, each point's changes are what its own updates, in
        /// log order, decide: against a plain ordered map of the updates per point.
        #[test]
        fn each_point_is_decided_on_its_own_updates_in_log_order(updates in epochs()) {
            let mut groups: BTreeMap<String, Vec<&(Point, i8)>> = BTreeMap::new();
            for u in &updates {
                groups.entry(key(&u.0)).or_default().push(u);
            }
            let mut expected: BTreeMap<String, Vec<Change>> = BTreeMap::new();
            for (k, group) in groups {
                decide_point(&group, expected.entry(k).or_default());
            }
            let mut got: BTreeMap<String, Vec<Change>> = BTreeMap::new();
            for change in decide_epoch(updates.clone()) {
                got.entry(key(change.point())).or_default().push(change);
            }
            prop_assert_eq!(got, expected);
        }

        /// One point's versions (up to twelve, more than are compared one by one) are found
        /// alike by comparison and through the index.
        #[test]
        fn versions_are_found_alike_by_comparison_and_by_index(
            updates in prop::collection::vec((0..12u8, any::<bool>()), 1..40),
        ) {
            let updates: Vec<(Point, i8)> = updates
                .into_iter()
                .map(|(v, plus)| (point("a", 1, &[("t", f64::from(v))]), if plus { 1 } else { -1 }))
                .collect();
            let group: Vec<&(Point, i8)> = updates.iter().collect();
            let compared = final_state(&group, usize::MAX);
            prop_assert_eq!(final_state(&group, 0), compared);
            prop_assert_eq!(final_state(&group, SCAN_VERSIONS), compared);
        }
    }

    #[test]
    fn a_point_removed_and_written_again_the_same_is_present() {
        // Moved away and another row moved in with the same values: it was there before
        // the epoch and is there after.
        assert_eq!(
            decide_epoch(vec![(v(), -1), (v(), 1)]),
            vec![Change::Write(v())]
        );
        fn v() -> Point {
            point("a", 1, &[("t", 1.0)])
        }
    }
}
