//! `LocalIndex`: one worker's map from topic to its local subscribers. No locks, no sharing:
//! each worker owns one and only its own thread touches it.
//!
//! Layout: topic -> `Slab` of `(key, deliver_after_id)`. The connection keeps its slab slots in
//! a [`ConnTopics`] that lives in its own slab slot, so unsubscribing is O(1) however many
//! subscribers a topic has (no scan, no swap that would move another connection's slot), and
//! the connection's topic count is bounded where it is stored.
//!
//! ```text
//! LocalIndex.topics["a"] = Slab [ 0: (conn 7, after 41) | 1: vacant | 2: (conn 9, after 0) ]
//! ConnTopics(conn 7)     = [ ("a", 0), ("b", 3) ]      // topic and its slab slot there
//! ```
//!
//! Per delivered message the cost is one hash lookup plus one comparison per subscriber; the
//! iterator yields keys only, so delivering is cloning `Bytes` handles into send queues.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use super::message::Message;
use super::{validate_any_topic, HubError};

#[derive(Debug, Clone, Copy)]
struct Sub<K> {
    key: K,
    /// Deliver only messages with id > this (the `last_id` of the replay that preceded it).
    after_id: u64,
}

/// One connection's subscriptions; stored with the connection, passed to every index call
/// for it. At most `topics_per_conn_max` entries. Call [`LocalIndex::unsubscribe_all`] before
/// dropping it (on close): the index would otherwise keep delivering to the old key.
///
/// A connection of one topic (most of them) keeps it inline: no allocation, 32 bytes in all,
/// where a `Vec` took 24 inline plus a 32-byte heap block (docs/decisions.md "Idle connection
/// layout").
#[derive(Debug, Default)]
pub struct ConnTopics {
    subs: Subs,
}

/// A topic and the connection's slot in that topic's slab.
type Entry = (Arc<str>, u32);

#[derive(Debug, Default)]
enum Subs {
    #[default]
    None,
    One(Entry),
    /// Two or more; back to `One` when one is left.
    Many(Vec<Entry>),
}

impl Subs {
    fn as_slice(&self) -> &[Entry] {
        match self {
            Subs::None => &[],
            Subs::One(e) => std::slice::from_ref(e),
            Subs::Many(v) => v,
        }
    }

    fn push(&mut self, e: Entry) {
        *self = match std::mem::take(self) {
            Subs::None => Subs::One(e),
            Subs::One(first) => Subs::Many(vec![first, e]),
            Subs::Many(mut v) => {
                v.push(e);
                Subs::Many(v)
            }
        };
    }

    /// Removes entry `at` (< len), moving the last one into its place.
    fn swap_remove(&mut self, at: usize) -> Entry {
        match std::mem::take(self) {
            Subs::None => unreachable!("swap_remove on no subscriptions"),
            Subs::One(e) => e,
            Subs::Many(mut v) => {
                let e = v.swap_remove(at);
                *self = match v.len() {
                    0 => Subs::None,
                    1 => Subs::One(v.pop().expect("one left")),
                    _ => Subs::Many(v),
                };
                e
            }
        }
    }
}

impl ConnTopics {
    pub fn new() -> ConnTopics {
        ConnTopics::default()
    }

    pub fn len(&self) -> usize {
        self.subs.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.subs, Subs::None)
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.subs.as_slice().iter().any(|(t, _)| &**t == topic)
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.subs.as_slice().iter().map(|(t, _)| &**t)
    }
}

/// What [`LocalIndex::subscribe`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Added,
    /// Already subscribed: nothing changed, the first watermark stands (a second one could
    /// only re-deliver or skip messages).
    Already,
}

/// A worker's subscription index. `K` names a connection (a slab index plus generation, say).
#[derive(Debug)]
pub struct LocalIndex<K> {
    topics: HashMap<Arc<str>, Slab<Sub<K>>>,
    topics_per_conn_max: usize,
    subscriptions: usize,
}

impl<K: Copy + Eq> LocalIndex<K> {
    pub fn new(topics_per_conn_max: usize) -> LocalIndex<K> {
        LocalIndex {
            topics: HashMap::new(),
            topics_per_conn_max,
            subscriptions: 0,
        }
    }

    /// Topics with at least one local subscriber.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Subscriptions held, over all topics.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Subscribes connection `key` (whose list is `conn`) to `topic`, delivering only messages
    /// with id > `deliver_after_id`: pass `Replay::last_id()` or `Topics::last_id()`, read
    /// under the same lock hold (see [`crate::hub`]). Fails on a bad name or a full `conn`.
    /// System topics (`$stats`) are accepted: keeping clients off them is the caller's job.
    pub fn subscribe(
        &mut self,
        conn: &mut ConnTopics,
        key: K,
        topic: &str,
        deliver_after_id: u64,
    ) -> Result<Subscribed, HubError> {
        validate_any_topic(topic)?;
        if conn.contains(topic) {
            return Ok(Subscribed::Already);
        }
        if conn.len() >= self.topics_per_conn_max {
            return Err(HubError::TooManyTopics {
                limit: self.topics_per_conn_max,
            });
        }
        let (name, slab) = match self.topics.get_key_value(topic) {
            Some((name, _)) => {
                let name = Arc::clone(name);
                let slab = self.topics.get_mut(topic).expect("just found");
                (name, slab)
            }
            None => {
                let name: Arc<str> = Arc::from(topic);
                let slab = self.topics.entry(Arc::clone(&name)).or_default();
                (name, slab)
            }
        };
        let slot = slab.insert(Sub {
            key,
            after_id: deliver_after_id,
        });
        let slot = u32::try_from(slot).expect("fewer than 2^32 subscribers on one worker");
        conn.subs.push((name, slot));
        self.subscriptions += 1;
        Ok(Subscribed::Added)
    }

    /// Moves the watermark of `key`'s subscription to `topic` (the switch from a paged replay
    /// to live delivery, see `Topics::replay_page`). False if there is no such subscription.
    pub fn set_watermark(&mut self, conn: &ConnTopics, key: K, topic: &str, after_id: u64) -> bool {
        let Some((name, slot)) = conn.subs.as_slice().iter().find(|(t, _)| &**t == topic) else {
            return false;
        };
        let sub = &mut self
            .topics
            .get_mut(&**name)
            .expect("ConnTopics names only indexed topics")[*slot as usize];
        debug_assert!(
            sub.key == key,
            "slot of {name} belongs to another connection"
        );
        sub.after_id = after_id;
        true
    }

    /// Removes `key`'s subscription to `topic`; false if there was none.
    pub fn unsubscribe(&mut self, conn: &mut ConnTopics, key: K, topic: &str) -> bool {
        let Some(at) = conn.subs.as_slice().iter().position(|(t, _)| &**t == topic) else {
            return false;
        };
        let (name, slot) = conn.subs.swap_remove(at);
        self.remove_slot(&name, slot, key);
        true
    }

    /// Removes all of `key`'s subscriptions (on close), leaving `conn` empty.
    pub fn unsubscribe_all(&mut self, conn: &mut ConnTopics, key: K) {
        match std::mem::take(&mut conn.subs) {
            Subs::None => {}
            Subs::One((name, slot)) => self.remove_slot(&name, slot, key),
            Subs::Many(v) => {
                for (name, slot) in v {
                    self.remove_slot(&name, slot, key);
                }
            }
        }
    }

    fn remove_slot(&mut self, name: &str, slot: u32, key: K) {
        let slab = self
            .topics
            .get_mut(name)
            .expect("ConnTopics names only indexed topics");
        let sub = slab.remove(slot as usize);
        debug_assert!(
            sub.key == key,
            "slot of {name} belongs to another connection"
        );
        // Drop empty topics so memory follows live subscriptions, not every topic ever seen.
        if slab.is_empty() {
            self.topics.remove(name);
        }
        self.subscriptions -= 1;
    }

    /// Keys of the local subscribers that must receive `msg`, honouring each watermark. The
    /// iterator borrows the index: collect connections to drop (slow consumers) and
    /// unsubscribe them after the loop.
    pub fn deliveries<'a>(&'a self, msg: &Message) -> impl Iterator<Item = K> + 'a {
        self.subscribers(&msg.topic, msg.id)
    }

    /// Every subscription's key, once per subscription (a key subscribed to several topics
    /// comes several times).
    pub fn all_keys(&self) -> impl Iterator<Item = K> + '_ {
        self.topics
            .values()
            .flat_map(|slab| slab.iter().map(|(_, s)| s.key))
    }

    /// Keys subscribed to `topic` whose watermark is below `msg_id`.
    pub fn subscribers<'a>(&'a self, topic: &str, msg_id: u64) -> impl Iterator<Item = K> + 'a {
        self.topics
            .get(topic)
            .into_iter()
            .flat_map(|slab| slab.iter())
            .filter(move |(_, s)| s.after_id < msg_id)
            .map(|(_, s)| s.key)
    }
}

#[cfg(test)]
impl<K> LocalIndex<K> {
    /// Bytes one subscription takes in its topic's slab, the slab's tag included (a stand-in
    /// of `slab::Entry`, which is private).
    pub(crate) fn entry_bytes() -> usize {
        #[allow(dead_code)]
        enum SlabEntry<T> {
            Vacant(usize),
            Occupied(T),
        }
        std::mem::size_of::<SlabEntry<Sub<K>>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ix: &LocalIndex<u32>, topic: &str, id: u64) -> Vec<u32> {
        let mut k: Vec<u32> = ix.subscribers(topic, id).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn subscribe_deliver_unsubscribe() {
        let mut ix = LocalIndex::new(4);
        let mut c1 = ConnTopics::new();
        let mut c2 = ConnTopics::new();
        assert_eq!(ix.subscribe(&mut c1, 1, "a", 0), Ok(Subscribed::Added));
        assert_eq!(ix.subscribe(&mut c2, 2, "a", 0), Ok(Subscribed::Added));
        assert_eq!(ix.subscribe(&mut c2, 2, "b", 0), Ok(Subscribed::Added));
        assert_eq!(ix.subscribe(&mut c2, 2, "b", 9), Ok(Subscribed::Already));
        assert_eq!(keys(&ix, "a", 1), vec![1, 2]);
        assert_eq!(keys(&ix, "b", 1), vec![2]);
        assert_eq!(keys(&ix, "zz", 1), Vec::<u32>::new());
        assert!(ix.unsubscribe(&mut c1, 1, "a"));
        assert!(
            !ix.unsubscribe(&mut c1, 1, "a"),
            "second unsubscribe is a no-op"
        );
        assert_eq!(keys(&ix, "a", 1), vec![2]);
        assert_eq!(ix.subscription_count(), 2);
        ix.unsubscribe_all(&mut c2, 2);
        assert!(c2.is_empty());
        assert_eq!(
            (ix.topic_count(), ix.subscription_count()),
            (0, 0),
            "empty topics dropped"
        );
    }

    #[test]
    fn watermark_filters_ids_at_or_below_it() {
        let mut ix = LocalIndex::new(4);
        let (mut c1, mut c2) = (ConnTopics::new(), ConnTopics::new());
        let _ = ix.subscribe(&mut c1, 1, "a", 10).unwrap();
        let _ = ix.subscribe(&mut c2, 2, "a", 12).unwrap();
        assert_eq!(keys(&ix, "a", 10), Vec::<u32>::new());
        assert_eq!(keys(&ix, "a", 11), vec![1]);
        assert_eq!(keys(&ix, "a", 12), vec![1]);
        assert_eq!(keys(&ix, "a", 13), vec![1, 2]);
    }

    #[test]
    fn held_back_subscription_goes_live_at_its_new_watermark() {
        let mut ix = LocalIndex::new(4);
        let mut c = ConnTopics::new();
        let _ = ix.subscribe(&mut c, 1, "a", u64::MAX).unwrap();
        assert_eq!(keys(&ix, "a", 1_000), Vec::<u32>::new(), "held back");
        assert!(ix.set_watermark(&c, 1, "a", 20));
        assert_eq!(keys(&ix, "a", 20), Vec::<u32>::new());
        assert_eq!(keys(&ix, "a", 21), vec![1]);
        assert!(!ix.set_watermark(&c, 1, "b", 20));
    }

    #[test]
    fn topics_per_connection_bounded_and_names_validated() {
        let mut ix = LocalIndex::new(2);
        let mut c = ConnTopics::new();
        let _ = ix.subscribe(&mut c, 1, "a", 0).unwrap();
        let _ = ix.subscribe(&mut c, 1, "b", 0).unwrap();
        assert_eq!(
            ix.subscribe(&mut c, 1, "c", 0),
            Err(HubError::TooManyTopics { limit: 2 })
        );
        assert_eq!(ix.subscribe(&mut c, 1, "a", 0), Ok(Subscribed::Already));
        assert_eq!(
            ix.subscribe(&mut ConnTopics::new(), 2, "a b", 0),
            Err(HubError::TopicInvalid)
        );
        assert!(ix.unsubscribe(&mut c, 1, "a"));
        assert_eq!(ix.subscribe(&mut c, 1, "c", 0), Ok(Subscribed::Added));
        assert_eq!(c.topics().collect::<Vec<_>>(), vec!["b", "c"]);
    }

    #[test]
    fn one_topic_is_inline_and_many_go_back_to_one() {
        let size = std::mem::size_of::<ConnTopics>();
        println!("size_of::<ConnTopics>() = {size}");
        assert!(size <= 32, "ConnTopics grew to {size} bytes");
        let mut ix = LocalIndex::new(3);
        let mut c = ConnTopics::new();
        let _ = ix.subscribe(&mut c, 1, "a", 0).unwrap();
        assert!(
            matches!(c.subs, Subs::One(_)),
            "one topic allocates nothing"
        );
        let _ = ix.subscribe(&mut c, 1, "b", 0).unwrap();
        let _ = ix.subscribe(&mut c, 1, "c", 0).unwrap();
        assert_eq!(c.topics().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        assert!(ix.unsubscribe(&mut c, 1, "a"));
        assert_eq!(c.topics().collect::<Vec<_>>(), vec!["c", "b"]);
        assert!(ix.unsubscribe(&mut c, 1, "b"));
        assert!(matches!(c.subs, Subs::One(_)), "back inline");
        assert_eq!((c.len(), keys(&ix, "c", 1)), (1, vec![1]));
        assert!(ix.unsubscribe(&mut c, 1, "c"));
        assert!(c.is_empty() && !c.contains("c"));
        assert_eq!(ix.subscription_count(), 0);
    }

    #[test]
    fn churn_keeps_other_subscribers_and_reuses_slots() {
        // Slots are stable: removing one connection never moves another's slot.
        let mut ix = LocalIndex::new(1);
        let mut conns: Vec<ConnTopics> = (0..100).map(|_| ConnTopics::new()).collect();
        for (k, c) in conns.iter_mut().enumerate() {
            let _ = ix.subscribe(c, k as u32, "hot", 0).unwrap();
        }
        for k in (0..100).step_by(3) {
            ix.unsubscribe_all(&mut conns[k], k as u32);
        }
        let want: Vec<u32> = (0..100).filter(|k| k % 3 != 0).collect();
        assert_eq!(keys(&ix, "hot", 1), want);
        for k in (0..100).step_by(3) {
            let _ = ix.subscribe(&mut conns[k], k as u32, "hot", 0).unwrap();
        }
        assert_eq!(keys(&ix, "hot", 1), (0..100).collect::<Vec<u32>>());
        assert_eq!(ix.subscription_count(), 100);
    }
}
