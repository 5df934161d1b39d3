//! The map operator: row batches → points by the job's mappings, on the worker that will
//! write them (the read operator addressed each batch to it). An encoded batch is decoded
//! here a row at a time into one buffer this operator keeps, and each row is mapped from
//! it: no decoded row is ever allocated, sent or freed. Rows that cannot become points are
//! dead-lettered here; a batch whose bytes are no rows fails the job. It holds no
//! capability of its own: its output frontier simply follows its input.

use super::Control;
use crate::dead_letter::DeadLetters;
use crate::mapping::{Mappings, Rejected};
use crate::model::{Point, Value};
use crate::source::RowBatch;
use std::sync::Arc;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

/// Maps the rows of `batches` (each with the worker it was addressed to) to points;
/// `pact` brings each batch to that worker.
pub(super) fn batches_to_points<'s, P>(
    batches: Stream<'s, u64, Vec<(u64, RowBatch)>>,
    pact: P,
    mappings: Arc<Mappings>,
    dead_letters: DeadLetters,
    control: Control,
) -> Stream<'s, u64, Vec<Point>>
where
    P: ParallelizationContract<u64, Vec<(u64, RowBatch)>>,
{
    batches.unary(pact, "MapRows", move |_capability, _info| {
        let mut points = Vec::new();
        let mut values: Vec<Option<Value>> = Vec::new();
        move |input, output| {
            input.for_each_time(|time, batches| {
                for batch in batches {
                    for (_, batch) in batch.drain(..) {
                        let mut emit = |p| points.push(p);
                        let mut reject =
                            |r: Rejected| dead_letters.record("mapping", &r.reason, r.row);
                        match batch {
                            RowBatch::Rows(rows) => {
                                for row in rows {
                                    mappings.apply(row, &mut emit, &mut reject);
                                }
                            }
                            RowBatch::Encoded(encoded) => {
                                let decoded = encoded.for_each_row(
                                    &dead_letters,
                                    &mut values,
                                    &mut |table, values| {
                                        mappings.apply_values(table, values, &mut emit, &mut reject)
                                    },
                                );
                                if let Err(e) = decoded {
                                    control.fail(e.into());
                                }
                            }
                        }
                    }
                }
                if !points.is_empty() {
                    output.session(&time).give_container(&mut points);
                }
            });
        }
    })
}
