//! `SubscriberCounts`: how many subscribers each topic has, in name order. One per worker in
//! the server (each behind a lock only that worker and the `/topics` reader take); the
//! server sums them, so a count is exact across workers. Sans-IO: no lock of its own.
//!
//! Name order makes paging cheap: a page after name `n` is a range walk, not a scan.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct SubscriberCounts {
    by_topic: BTreeMap<Arc<str>, u32>,
}

impl SubscriberCounts {
    /// One more subscriber of `topic`.
    pub fn add(&mut self, topic: &str) {
        match self.by_topic.get_mut(topic) {
            Some(n) => *n += 1,
            None => {
                self.by_topic.insert(Arc::from(topic), 1);
            }
        }
    }

    /// One subscriber of `topic` fewer; a topic at zero is dropped, so memory follows live
    /// subscriptions. Removing what was never added is a caller's bug: ignored in release.
    pub fn remove(&mut self, topic: &str) {
        let Some(n) = self.by_topic.get_mut(topic) else {
            debug_assert!(false, "remove of {topic} without add");
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.by_topic.remove(topic);
        }
    }

    pub fn get(&self, topic: &str) -> u32 {
        self.by_topic.get(topic).copied().unwrap_or(0)
    }

    /// Topics with subscribers.
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Up to `limit` topic names after `after` (all names when `None`), in name order.
    pub fn names_after(&self, after: Option<&str>, limit: usize) -> Vec<Arc<str>> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_topic
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(name, _)| Arc::clone(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_pages() {
        let mut c = SubscriberCounts::default();
        for t in ["b", "a", "c", "b", "d"] {
            c.add(t);
        }
        assert_eq!((c.get("a"), c.get("b"), c.get("zz")), (1, 2, 0));
        let names = |v: Vec<Arc<str>>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(c.names_after(None, 2)), ["a", "b"]);
        assert_eq!(names(c.names_after(Some("b"), 10)), ["c", "d"]);
        assert_eq!(names(c.names_after(Some("bb"), 1)), ["c"]);
        c.remove("b");
        assert_eq!(c.get("b"), 1);
        c.remove("b");
        assert_eq!(c.get("b"), 0);
        assert_eq!(c.len(), 3, "a topic at zero is dropped");
        for t in ["a", "c", "d"] {
            c.remove(t);
        }
        assert!(c.is_empty());
    }
}
