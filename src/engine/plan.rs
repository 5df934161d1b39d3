//! The plan operator: worker 0 emits the splits still to read, each routed to the worker
//! that will read it (split `i` of the plan to worker `i mod peers`), then closes. Every
//! other worker's instance emits nothing and closes at once.

use crate::source::Split;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::Exchange;
use timely::dataflow::{Scope, Stream};

/// The splits to read, each on the worker that owns it.
pub(super) fn splits<'s>(
    scope: Scope<'s, u64>,
    pending: Vec<Split>,
) -> Stream<'s, u64, Vec<Split>> {
    let mut pending = Some(pending);
    let planned: Stream<'s, u64, Vec<Split>> =
        source(scope, "PlanSplits", move |capability, _info| {
            let mut capability = Some(capability);
            move |output| {
                if let Some(cap) = capability.take() {
                    if let Some(mut splits) = pending.take() {
                        output.session(&cap).give_container(&mut splits);
                    }
                }
            }
        });
    planned.exchange(|split: &Split| split.id)
}
