//! The map operator: rows → points by the job's mappings, on the worker that read them.
//! Rows that cannot become points are dead-lettered here. It holds no capability of its
//! own: its output frontier simply follows its input.

use crate::dead_letter::DeadLetters;
use crate::mapping::Mappings;
use crate::model::{Point, Row};
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

/// Maps `rows` to points.
pub(super) fn rows_to_points<'s>(
    rows: Stream<'s, u64, Vec<Row>>,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
) -> Stream<'s, u64, Vec<Point>> {
    rows.unary(Pipeline, "MapRows", move |_capability, _info| {
        let mut points = Vec::new();
        move |input, output| {
            input.for_each_time(|time, batches| {
                for batch in batches {
                    for row in batch.drain(..) {
                        mappings.apply(row, &mut |p| points.push(p), &mut |r| {
                            dead_letters.record("mapping", &r.reason, r.row)
                        });
                    }
                }
                if !points.is_empty() {
                    output.session(&time).give_container(&mut points);
                }
            });
        }
    })
}
