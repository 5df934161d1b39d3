//! The process-wide bound on request bodies in memory (`max_body_bytes_in_flight`).
//!
//! Every write request holds a [`BodyBytes`] from the moment its body is admitted until its
//! points are queued for the engine. A body is admitted with room for what it becomes:
//! its text (as received, or as gzip inflates it) and [`POINTS_PER_TEXT_BYTE`] times as
//! much for the points parsed from it. The hold grows as the body arrives (or at once by
//! its `Content-Length`), and when gzip tells its size; a request that cannot grow it is
//! answered 429 and drops everything, so nothing of it was accepted and a retry
//! duplicates nothing. Parsing is never refused: the points are counted as they are made,
//! past the room made for them if need be (so later requests wait), and once parsed the
//! hold is exactly their size until they are queued. After the queue, the points are
//! bounded by `max_pending_points`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Room made, when a body is admitted, for the points parsed from it, per byte of its text.
/// Points take about 3.5 to 6 times the line protocol they come from (a field is a name and
/// a 32-byte value; a tag a name and a string; a point 88 bytes before its vectors), less
/// for long string values.
pub(super) const POINTS_PER_TEXT_BYTE: u64 = 4;

/// What a body of `text` bytes is admitted with: itself, and room for its points.
pub(super) fn admitted(text: u64) -> u64 {
    text.saturating_mul(1 + POINTS_PER_TEXT_BYTE)
}

/// The bytes held by every request of the process, and the bound.
pub(super) struct Budget {
    held: AtomicU64,
    max: u64,
}

/// One request's share of the [`Budget`], released on drop.
pub(super) struct BodyBytes {
    budget: Arc<Budget>,
    n: u64,
}

impl Budget {
    pub(super) fn new(max: u64) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicU64::new(0),
            max,
        })
    }

    /// An empty hold for one request.
    pub(super) fn hold(self: &Arc<Self>) -> BodyBytes {
        BodyBytes {
            budget: self.clone(),
            n: 0,
        }
    }

    /// Bytes held by every request now.
    pub(super) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    pub(super) fn max(&self) -> u64 {
        self.max
    }
}

impl BodyBytes {
    /// Holds `n` more bytes, or returns false when that would pass the bound. A request
    /// that holds everything held (it is alone) may pass it: otherwise a body larger than
    /// the bound could never be taken.
    pub(super) fn try_grow(&mut self, n: u64) -> bool {
        let held = &self.budget.held;
        let mut current = held.load(Ordering::Acquire);
        loop {
            let alone = current == self.n;
            if !alone && current.saturating_add(n) > self.budget.max {
                return false;
            }
            match held.compare_exchange_weak(
                current,
                current.saturating_add(n),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.n += n;
                    return true;
                }
                Err(now) => current = now,
            }
        }
    }

    /// Holds `n` more bytes whatever the bound: memory already taken, to be counted.
    pub(super) fn force_grow(&mut self, n: u64) {
        self.budget.held.fetch_add(n, Ordering::AcqRel);
        self.n += n;
    }

    /// Bytes this request holds.
    pub(super) fn held(&self) -> u64 {
        self.n
    }

    /// Holds exactly `n` bytes, growing past the bound if need be.
    pub(super) fn set(&mut self, n: u64) {
        if n > self.n {
            self.force_grow(n - self.n);
        } else {
            self.shrink(self.n - n);
        }
    }

    /// Gives back `n` bytes (a buffer dropped).
    pub(super) fn shrink(&mut self, n: u64) {
        let n = n.min(self.n);
        self.budget.held.fetch_sub(n, Ordering::AcqRel);
        self.n -= n;
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_grow_within_the_bound_and_are_released_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.hold();
        let mut b = budget.hold();
        assert!(a.try_grow(60));
        assert!(!b.try_grow(50), "60 + 50 > 100");
        assert!(b.try_grow(40));
        assert_eq!(budget.held(), 100);
        a.shrink(30);
        assert!(b.try_grow(30));
        drop(a);
        assert_eq!(budget.held(), 70);

        // Alone, a request may pass the bound; then nobody else gets in until it is done.
        assert!(b.try_grow(500));
        assert_eq!(budget.held(), 570);
        let mut c = budget.hold();
        assert!(!c.try_grow(1));
        drop(b);
        assert!(c.try_grow(100));
        c.force_grow(1000);
        assert_eq!(budget.held(), 1100, "forced past the bound");
        c.set(10);
        assert_eq!((c.held(), budget.held()), (10, 10));
        drop(c);
        assert_eq!(budget.held(), 0);
    }
}
