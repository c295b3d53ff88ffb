//! The latency tracker: status times of recent messages, so a receipt arriving later is
//! measured against the one before it.

use std::collections::VecDeque;

use nohash_hasher::IntMap;

/// Status times of recent messages, so a receipt arriving later can be measured against the
/// one before it. Bounded: the oldest message is forgotten first.
///
/// Messages are known by a 64-bit hash of their id rather than the id (a wamid is ~60 bytes,
/// and was held twice): a collision could only pair two messages' times in a histogram.
pub(super) struct LatencyTracker {
    cap: usize,
    order: VecDeque<u64>,
    times: IntMap<u64, Times>,
}

/// No time known yet.
const UNKNOWN: i64 = i64::MIN;
/// Already measured against its successor: `sent` once delivery latency is taken, `read` once
/// read latency is, so a repeated receipt is not measured twice.
const MEASURED: i64 = i64::MIN + 1;

/// A message's status times in microseconds, or [`UNKNOWN`] / [`MEASURED`]: 24 bytes instead
/// of 56 with `Option`s and flags (heaptrack: the tracker's table was the ingest path's
/// largest allocation, 36 MB).
struct Times {
    sent: i64,
    delivered: i64,
    read: i64,
}

impl Default for Times {
    fn default() -> Self {
        Times { sent: UNKNOWN, delivered: UNKNOWN, read: UNKNOWN }
    }
}

fn known(t: i64) -> bool {
    t != UNKNOWN && t != MEASURED
}

#[derive(Default, Debug, PartialEq)]
pub(super) struct Observed {
    pub(super) delivery: Option<f64>,
    pub(super) read: Option<f64>,
    pub(super) unmatched: bool,
}

impl LatencyTracker {
    /// Sized for twice `cap` up front: every eviction leaves a tombstone, and a full table
    /// holding more than half its capacity grows where one holding less cleans its tombstones
    /// in place (sized for `cap`, it grew to 524,288 buckets of 64-byte entries: 36 MB at the
    /// peak; now it stays at that bucket count with 32-byte entries).
    pub(super) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        LatencyTracker {
            cap,
            order: VecDeque::with_capacity(cap),
            times: IntMap::with_capacity_and_hasher(cap.saturating_mul(2), Default::default()),
        }
    }

    pub(super) fn observe(&mut self, id: &str, status: &str, at: i64) -> Observed {
        let id = crate::ids::hash64(id);
        // One lookup for the id, then the eviction of the oldest if the id was new: the table
        // is sized for twice `cap`, so holding one more for a moment never grows it. (A lookup
        // before inserting, as before, was a third cache miss per status.)
        let before = self.times.len();
        let t = self.times.entry(id).or_default();
        let mut out = Observed::default();
        match status {
            "sent" if t.sent != MEASURED => t.sent = at,
            "delivered" => {
                out.unmatched = t.sent == UNKNOWN;
                t.delivered = at;
            }
            "read" => {
                out.unmatched = t.delivered == UNKNOWN;
                if t.read != MEASURED {
                    t.read = at;
                }
            }
            _ => {}
        }
        // Either order of arrival is measured once both ends are known.
        if known(t.sent) && known(t.delivered) {
            out.delivery = Some(((t.delivered - t.sent).max(0)) as f64 / 1e6);
            t.sent = MEASURED;
        }
        if known(t.delivered) && known(t.read) {
            out.read = Some(((t.read - t.delivered).max(0)) as f64 / 1e6);
            t.read = MEASURED;
        }
        if self.times.len() > before {
            self.order.push_back(id);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.times.remove(&old);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_in_any_order_and_bounded() {
        let mut t = LatencyTracker::new(2);
        assert_eq!(t.observe("m1", "sent", 0), Observed::default());
        assert_eq!(t.observe("m1", "delivered", 3_000_000).delivery, Some(3.0));
        assert_eq!(t.observe("m1", "read", 63_000_000).read, Some(60.0));
        // Delivered before sent: measured when sent arrives, flagged unmatched meanwhile.
        let o = t.observe("m2", "delivered", 5_000_000);
        assert!(o.unmatched);
        assert_eq!(t.observe("m2", "sent", 1_000_000).delivery, Some(4.0));
        // m1 is evicted by m3; its late read is unmatched rather than guessed.
        t.observe("m3", "sent", 0);
        assert!(t.observe("m1", "delivered", 9).unmatched);
        assert!(t.times.len() <= 2);
    }

    #[test]
    fn repeated_receipts_are_measured_once() {
        let mut t = LatencyTracker::new(10);
        t.observe("m", "sent", 0);
        assert_eq!(t.observe("m", "delivered", 2_000_000).delivery, Some(2.0));
        // A retried webhook repeats a receipt: no second sample, and not unmatched.
        assert_eq!(t.observe("m", "sent", 1_000_000), Observed::default());
        assert_eq!(t.observe("m", "delivered", 2_000_000), Observed::default());
        // Read is still measured from the delivered time held.
        assert_eq!(t.observe("m", "read", 5_000_000).read, Some(3.0));
        assert_eq!(t.observe("m", "read", 9_000_000), Observed::default());
        // Read first, then delivered: measured once delivered arrives (which is unmatched: no
        // sent was seen for it).
        assert!(t.observe("n", "read", 7_000_000).unmatched);
        let o = t.observe("n", "delivered", 4_000_000);
        assert_eq!((o.read, o.unmatched), (Some(3.0), true));
    }

    #[test]
    fn churn_does_not_grow_the_table() {
        let mut t = LatencyTracker::new(1000);
        let capacity = t.times.capacity();
        for i in 0..50_000 {
            t.observe(&format!("m{i}"), "sent", i);
        }
        assert_eq!(t.times.len(), 1000);
        // Tombstones take a little of the room; the table itself was never reallocated.
        assert!(t.times.capacity() <= capacity, "grew from {capacity} to {}", t.times.capacity());
    }
}
