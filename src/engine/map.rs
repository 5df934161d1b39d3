//! Mapping rows to points in the backfill, on the worker that writes them.
//!
//! ```text
//!  (worker, row batch) ──▶ [ MapHere ] ──▶ Feed::Rows (rows of known owner, as read)
//!  (None,   row batch) ──▶ [ MapHere ] ──▶ Feed::Point (each point of rows mapped here)
//!                                            │ exchange: to the worker that writes it
//!                                            ▼
//!                          [ sink: MapRows ] maps each row into one point it keeps,
//!                                            encodes it, makes the next one there
//! ```
//!
//! The read operator addressed each batch to the worker that writes its rows' points where
//! it could tell ([`super::read::Router`]). Such a batch crosses to that worker as it was
//! read, and its sink maps it there ([`MapRows`]): each row is decoded into one buffer and
//! mapped into one point that the sink encodes at once, so no decoded row or point is
//! allocated, sent or freed. Rows whose owner could not be told are mapped where they were
//! read ([`batches_to_feed`]) and their points routed by device hash, as every point of
//! a CDC or ingest job is. Rows that cannot become points are dead-lettered; a batch
//! whose bytes are no rows fails the job. `MapHere` holds no capability of its own: its
//! output frontier simply follows its input.

use super::read::Addressed;
use super::sink::{Fed, Feeder};
use super::Control;
use crate::dead_letter::DeadLetters;
use crate::mapping::{Mappings, Rejected};
use crate::model::{Change, Point, Value};
use crate::source::RowBatch;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

/// What the backfill's sink takes: rows it maps itself, or points mapped elsewhere.
#[derive(Clone, Serialize, Deserialize)]
pub(super) enum Feed {
    /// Rows whose every point the worker of this index writes.
    Rows(u64, RowBatch),
    /// A point of a row mapped on the worker that read it.
    Point(Point),
}

impl Feed {
    /// What the exchange before the sink routes by: the worker for rows (an index, which
    /// is its own remainder), the device hash for a point (as every point is routed).
    pub fn route(&self) -> u64 {
        match self {
            Feed::Rows(to, _) => *to,
            Feed::Point(point) => point.device_hash,
        }
    }
}

/// Passes on the batches of `batches` addressed to a worker, and maps here the rows of
/// those that are not (see the module's documentation).
pub(super) fn batches_to_feed<'s>(
    batches: Stream<'s, u64, Vec<Addressed>>,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
    control: Control,
) -> Stream<'s, u64, Vec<Feed>> {
    batches.unary(Pipeline, "MapHere", move |_capability, _info| {
        let mut feed = Vec::new();
        let mut values: Vec<Option<Value>> = Vec::new();
        move |input, output| {
            input.for_each_time(|time, batches| {
                for batch in batches {
                    for (to, batch) in batch.drain(..) {
                        match to {
                            Some(to) => feed.push(Feed::Rows(to, batch)),
                            None => map_rows(
                                batch,
                                &mappings,
                                &dead_letters,
                                &control,
                                &mut values,
                                &mut Point::default(),
                                &mut |p| feed.push(Feed::Point(std::mem::take(p))),
                            ),
                        }
                    }
                }
                if !feed.is_empty() {
                    output.session(&time).give_container(&mut feed);
                }
            });
        }
    })
}

/// The backfill sink's [`Feeder`]: maps the rows it is given into one point it keeps, lent
/// to the sink to encode ([`Fed::Write`]); points mapped elsewhere pass as they are.
pub(super) struct MapRows {
    /// The job's mappings.
    pub mappings: Arc<Mappings>,
    /// Where rows that cannot become points go.
    pub dead_letters: DeadLetters,
    /// Fails the job on a batch whose bytes are no rows.
    pub control: Control,
    /// One row's values, decoded.
    pub values: Vec<Option<Value>>,
    /// The point each row is mapped into.
    pub point: Point,
    /// This worker's index and the workers in the job: every point of the rows addressed
    /// here is owned here (checked in debug builds).
    pub worker: (u64, u64),
}

impl Feeder<Feed> for MapRows {
    fn feed(&mut self, items: &mut Vec<Feed>, push: &mut dyn FnMut(Fed<'_>)) {
        for item in items.drain(..) {
            match item {
                Feed::Point(point) => push(Fed::Change(None, Change::Write(point))),
                Feed::Rows(_, batch) => {
                    let (here, peers) = self.worker;
                    map_rows(
                        batch,
                        &self.mappings,
                        &self.dead_letters,
                        &self.control,
                        &mut self.values,
                        &mut self.point,
                        &mut |p| {
                            // What the points' exchange would have routed it by.
                            debug_assert_eq!(p.device_hash % peers, here, "{p:?}");
                            push(Fed::Write(p))
                        },
                    )
                }
            }
        }
    }
}

/// Maps every row of `batch` into `point`, lending it to `emit` after each; decodes an
/// encoded batch a row at a time into `values`.
fn map_rows(
    batch: RowBatch,
    mappings: &Mappings,
    dead_letters: &DeadLetters,
    control: &Control,
    values: &mut Vec<Option<Value>>,
    point: &mut Point,
    mut emit: &mut dyn FnMut(&mut Point),
) {
    let mut reject = |r: Rejected| dead_letters.record("mapping", &r.reason, r.row);
    match batch {
        RowBatch::Rows(rows) => {
            for mut row in rows {
                mappings.apply_values_into(
                    row.table,
                    &mut row.values,
                    point,
                    &mut emit,
                    &mut reject,
                );
            }
        }
        RowBatch::Encoded(encoded) => {
            let decoded = encoded.for_each_row(dead_letters, values, &mut |table, values| {
                mappings.apply_values_into(table, values, point, &mut emit, &mut reject)
            });
            if let Err(e) = decoded {
                control.fail(e.into());
            }
        }
    }
}
