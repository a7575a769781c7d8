//! Who is subscribed where, counted exactly across workers, and the `/topics` answers.
//!
//! Each worker keeps its own [`SubscriberCounts`] (a [`Shard`]), changed only when one of its
//! connections subscribes or unsubscribes, under a lock that only that worker and a
//! `/topics` reader ever take: fan-out never touches it, and workers never wait for each
//! other. A reader sums the shards. Each shard's count is exact when read; the sum is exact
//! for any instant at which no subscription changes between the reads of two shards (there
//! is no single instant across threads to be more exact about).
//!
//! Lock order: the hub lock, then a shard (a subscribe holds both); a reader never holds
//! both, so the order cannot invert.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hub::{SubscriberCounts, TopicInfo};

/// One worker's counts.
#[derive(Clone, Default)]
pub struct Shard(Arc<Mutex<SubscriberCounts>>);

impl Shard {
    /// A panic under this lock leaves the counts as they were before or after one change:
    /// still used.
    pub fn lock(&self) -> MutexGuard<'_, SubscriberCounts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every worker's shard.
#[derive(Default)]
pub struct Presence {
    shards: Mutex<Vec<Shard>>,
}

/// One row of `/topics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRow {
    pub name: Arc<str>,
    pub subscribers: u64,
    /// What the hub holds for it; `None` for a topic with subscribers and no history.
    pub info: Option<TopicInfo>,
}

impl Presence {
    /// A new shard for a worker, counted from now on.
    pub fn shard(&self) -> Shard {
        let shard = Shard::default();
        self.shards().push(shard.clone());
        shard
    }

    fn shards(&self) -> MutexGuard<'_, Vec<Shard>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribers of `topic` over all workers.
    pub fn subscribers(&self, topic: &str) -> u64 {
        self.shards()
            .iter()
            .map(|s| u64::from(s.lock().get(topic)))
            .sum()
    }

    /// Up to `limit` rows after `after` in name order: topics with history (`hub_page`, the
    /// hub's [`crate::hub::Topics::topics_after`] with the same bounds) or with subscribers.
    ///
    /// Why the page is complete: a name among the first `limit` of the union is among the
    /// first `limit` of every source that holds it, so taking `limit` names from each source
    /// and the first `limit` of their union finds them all; counts are then read per name.
    pub fn page(
        &self,
        hub_page: Vec<TopicInfo>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<TopicRow> {
        let shards = self.shards().clone();
        let mut rows: BTreeMap<Arc<str>, TopicRow> = BTreeMap::new();
        for info in hub_page {
            let name = Arc::clone(&info.name);
            rows.insert(
                Arc::clone(&name),
                TopicRow {
                    name,
                    subscribers: 0,
                    info: Some(info),
                },
            );
        }
        for shard in &shards {
            for name in shard.lock().names_after(after, limit) {
                rows.entry(Arc::clone(&name)).or_insert(TopicRow {
                    name,
                    subscribers: 0,
                    info: None,
                });
            }
        }
        let mut rows: Vec<TopicRow> = rows.into_values().take(limit).collect();
        for shard in &shards {
            let counts = shard.lock();
            for row in &mut rows {
                row.subscribers += u64::from(counts.get(&row.name));
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{HubLimits, Topics};

    #[test]
    fn page_merges_history_and_subscribers_over_shards() {
        let p = Presence::default();
        let (w0, w1) = (p.shard(), p.shard());
        for t in ["b", "d", "e"] {
            w0.lock().add(t);
        }
        for t in ["b", "b", "f"] {
            w1.lock().add(t);
        }
        let mut hub = Topics::new(HubLimits::default());
        for t in ["a", "b", "c"] {
            hub.publish(t, None, "x").unwrap();
        }
        let page = |after: Option<&str>, limit| {
            let rows = p.page(hub.topics_after(after, limit), after, limit);
            rows.iter()
                .map(|r| (r.name.to_string(), r.subscribers, r.info.is_some()))
                .collect::<Vec<_>>()
        };
        let s = |n: &str, c, h| (n.to_owned(), c, h);
        assert_eq!(
            page(None, 3),
            [s("a", 0, true), s("b", 3, true), s("c", 0, true)]
        );
        assert_eq!(
            page(Some("c"), 3),
            [s("d", 1, false), s("e", 1, false), s("f", 1, false)]
        );
        assert_eq!(page(Some("f"), 3), []);
        assert_eq!(p.subscribers("b"), 3);
        w1.lock().remove("b");
        assert_eq!(p.subscribers("b"), 2);
    }
}
