//! The verify job's diff: source summaries minus target summaries, consolidated with
//! differential dataflow. Equal summaries cancel; what remains is a difference.
//!
//! ```text
//!  source summaries (+1) ──┐
//!                          ├─ concat ─▶ consolidate ─▶ leftovers (+1 source only, -1 target only)
//!  target summaries (-1) ──┘   (negate)
//! ```
//!
//! The summaries are exchanged by key across the workers; worker 0 feeds them in, every
//! worker consolidates its share. No capability is held beyond the inputs, which close
//! once fed, so the dataflow ends by itself.

use super::Cluster;
use crate::verify::{Key, Summary};
use differential_dataflow::input::Input;
use std::sync::{Arc, Mutex};

/// What does not cancel between `source` and `target`: (key, summary, +1 for the
/// source's, -1 for the target's).
pub fn diff(
    source: Vec<(Key, Summary)>,
    target: Vec<(Key, Summary)>,
    workers: usize,
) -> Result<Vec<(Key, Summary, i64)>, String> {
    let inputs = Arc::new(Mutex::new(Some((source, target))));
    let leftovers: Arc<Mutex<Vec<(Key, Summary, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = leftovers.clone();
    super::workers::execute(
        &Cluster::local(workers.max(1)),
        &super::Control::default(),
        move |worker| {
            let sink = sink.clone();
            let (mut from_source, mut from_target) = worker.dataflow::<u64, _, _>(|scope| {
                let (from_source, source) = scope.new_collection::<(Key, Summary), isize>();
                let (from_target, target) = scope.new_collection::<(Key, Summary), isize>();
                source.concat(target.negate()).consolidate().inspect(
                    move |((key, summary), _time, diff)| {
                        sink.lock().unwrap_or_else(|p| p.into_inner()).push((
                            key.clone(),
                            *summary,
                            *diff as i64,
                        ));
                    },
                );
                (from_source, from_target)
            });
            if worker.index() == 0 {
                if let Some((source, target)) =
                    inputs.lock().unwrap_or_else(|p| p.into_inner()).take()
                {
                    for record in source {
                        from_source.insert(record);
                    }
                    for record in target {
                        from_target.insert(record);
                    }
                }
            }
            from_source.close();
            from_target.close();
        },
    )
    .map_err(|f| f.message)?;
    let leftovers = std::mem::take(&mut *leftovers.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(leftovers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_summaries_cancel_and_the_rest_remains_on_its_side() {
        let s = |c| Summary {
            count: c,
            first: 0,
            last: 9,
            checksum: c * 31,
        };
        let key = |n: &str| (n.to_string(), 0i64);
        let source = vec![
            (key("same"), s(1)),
            (key("changed"), s(2)),
            (key("only_source"), s(3)),
        ];
        let target = vec![
            (key("same"), s(1)),
            (key("changed"), s(5)),
            (key("only_target"), s(4)),
        ];
        let mut left = diff(source, target, 2).unwrap();
        left.sort();
        assert_eq!(
            left,
            vec![
                (key("changed"), s(2), 1),
                (key("changed"), s(5), -1),
                (key("only_source"), s(3), 1),
                (key("only_target"), s(4), -1),
            ]
        );
    }
}
