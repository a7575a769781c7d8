//! Per-subscriber sequence tracking: missing, duplicate and out-of-order deliveries in O(1)
//! memory (40 bytes) per subscriber and topic.
//!
//! Sequence numbers per topic start at 1 and the publisher sends them in increasing order.
//! The tracker keeps the highest number seen (`hi`) and a 64-bit window of which of
//! `hi-63 ..= hi` arrived:
//!
//! ```text
//!   window bit:   63 ............ 2   1   0
//!   sequence:   hi-63 ......... hi-2 hi-1 hi
//! ```
//!
//! A jump above `hi` counts the skipped numbers as missing (tentatively); one of them arriving
//! later, inside the window, is out of order and no longer missing; a number whose bit is
//! already set is a duplicate. A number older than the window cannot be classified exactly
//! with O(1) memory: it is counted as out of order (assumed a first arrival) and also in
//! `ambiguous`, so a report shows how often the assumption was needed (zero on a sane server).
//!
//! No clock, no allocation.

/// Width of the exact-classification window, in sequence numbers.
pub const WINDOW: u64 = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// Highest sequence number seen; 0 = none yet.
    hi: u64,
    /// Bit i set = `hi - i` arrived.
    window: u64,
    pub received: u32,
    missing: u32,
    pub duplicates: u32,
    pub out_of_order: u32,
    pub ambiguous: u32,
    /// Sequence number 0 or otherwise impossible values.
    pub invalid: u32,
}

/// What one observation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    /// Arrived after a higher number (fills a gap).
    OutOfOrder,
    Duplicate,
    Invalid,
}

impl SeqTracker {
    #[cfg(test)]
    pub fn new() -> SeqTracker {
        SeqTracker::default()
    }

    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq == 0 {
            self.invalid = self.invalid.saturating_add(1);
            return Seen::Invalid;
        }
        if seq > self.hi {
            let step = seq - self.hi;
            let gap = step - 1;
            self.missing = self
                .missing
                .saturating_add(gap.min(u64::from(u32::MAX)) as u32);
            self.window = if step >= WINDOW {
                0
            } else {
                self.window << step
            } | 1;
            self.hi = seq;
            self.received = self.received.saturating_add(1);
            return Seen::InOrder;
        }
        let back = self.hi - seq;
        if back < WINDOW {
            let bit = 1u64 << back;
            if self.window & bit != 0 {
                self.duplicates = self.duplicates.saturating_add(1);
                return Seen::Duplicate;
            }
            self.window |= bit;
        } else {
            self.ambiguous = self.ambiguous.saturating_add(1);
        }
        self.missing = self.missing.saturating_sub(1);
        self.out_of_order = self.out_of_order.saturating_add(1);
        self.received = self.received.saturating_add(1);
        Seen::OutOfOrder
    }

    /// The highest sequence number seen (0 = none yet).
    pub fn highest(&self) -> u64 {
        self.hi
    }

    /// Missing numbers given that the publisher's last sequence number on this topic was
    /// `last_published` (numbers above `hi` that never arrived are missing too).
    pub fn missing(&self, last_published: u64) -> u64 {
        u64::from(self.missing) + last_published.saturating_sub(self.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::new();
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    #[test]
    fn in_order_stream_is_clean() {
        let t = run(&(1..=1000).collect::<Vec<_>>());
        assert_eq!(t.missing(1000), 0);
        assert_eq!((t.duplicates, t.out_of_order, t.received), (0, 0, 1000));
        // Three more published but never delivered.
        assert_eq!(t.missing(1003), 3);
    }

    #[test]
    fn gap_then_fill_is_out_of_order_not_missing() {
        let t = run(&[1, 2, 4, 5, 3, 6]);
        assert_eq!(t.missing(6), 0);
        assert_eq!((t.out_of_order, t.duplicates), (1, 0));
        let t = run(&[1, 2, 4, 5, 6]);
        assert_eq!(t.missing(6), 1);
        assert_eq!(t.out_of_order, 0);
    }

    #[test]
    fn duplicates_inside_the_window() {
        let t = run(&[1, 2, 3, 3, 2, 1]);
        assert_eq!((t.duplicates, t.missing(3), t.received), (3, 0, 3));
        // Bit 63 is the oldest remembered number.
        let mut seqs: Vec<u64> = (1..=64).collect();
        seqs.push(1);
        let t = run(&seqs);
        assert_eq!((t.duplicates, t.ambiguous), (1, 0));
        seqs.push(65);
        seqs.push(1);
        let t = run(&seqs);
        assert_eq!((t.duplicates, t.ambiguous), (1, 1));
    }

    #[test]
    fn huge_jumps_clear_the_window() {
        let t = run(&[1, 1000, 2]);
        assert_eq!(t.missing(1000), 997);
        assert_eq!((t.out_of_order, t.ambiguous), (1, 1));
        let t = run(&[5, 0]);
        assert_eq!((t.invalid, t.missing(5)), (1, 4));
    }

    #[test]
    fn model_check_against_a_set() {
        // Random permutations with drops and repeats, checked against exact bookkeeping
        // whenever every displacement stays inside the window.
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..500 {
            let n = rng.u64(1..300);
            let mut seqs: Vec<u64> = (1..=n).filter(|_| rng.u8(..10) != 0).collect();
            for i in 0..seqs.len() {
                if rng.u8(..8) == 0 {
                    let j = (i + rng.usize(0..8)).min(seqs.len() - 1);
                    seqs.swap(i, j);
                }
            }
            let dup_count = rng.usize(0..4);
            for _ in 0..dup_count {
                if !seqs.is_empty() {
                    let i = rng.usize(..seqs.len());
                    seqs.insert((i + 1).min(seqs.len()), seqs[i]);
                }
            }
            let t = run(&seqs);
            let mut seen = std::collections::HashSet::new();
            let dups = seqs.iter().filter(|s| !seen.insert(**s)).count() as u32;
            let distinct = seen.len() as u64;
            assert_eq!(t.ambiguous, 0, "{seqs:?}");
            assert_eq!(t.duplicates, dups, "{seqs:?}");
            assert_eq!(t.missing(n), n - distinct, "{seqs:?}");
            assert_eq!(u64::from(t.received), distinct);
        }
    }
}
