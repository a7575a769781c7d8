//! `Topics`: the shared part of the hub. Id allocation, per-topic replay history, replay.
//!
//! One instance per server, behind a `Mutex` held by the caller; see the module doc of
//! [`crate::hub`] for the locking contract that makes replay-then-live exact.
//!
//! History invariants, per topic, after every call:
//!
//! ```text
//! history ids strictly increasing          (ids come from one counter under one lock)
//! history.len()   <= history_messages
//! held_bytes      == sum(m.held_bytes() for m in history) <= history_bytes
//! evicted_max     == highest id ever dropped from this topic's history, 0 if none
//! every message of this topic with id > evicted_max is in history
//! ```
//!
//! The last line is what replay relies on: a request "after L" is complete for this topic
//! exactly when `L >= evicted_max`. Never here: sockets, clocks, per-connection state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::id::EventId;
use super::message::Message;
use super::{validate_event, validate_system_topic, validate_topic, HubError, HubLimits};

/// One topic's history.
#[derive(Debug)]
struct Topic {
    /// The same `Arc` as the map key, so each message shares it without a lookup of the key.
    name: Arc<str>,
    history: VecDeque<Arc<Message>>,
    /// Sum of `held_bytes()` over `history`; kept exact, never recomputed.
    held_bytes: usize,
    /// Highest id dropped from `history`; 0 when nothing was (ids start at 1).
    evicted_max: u64,
    /// Id of the topic's latest publish: its key in `Topics::by_last_id`.
    last_id: u64,
}

impl Topic {
    fn new(name: Arc<str>) -> Topic {
        Topic {
            name,
            history: VecDeque::new(),
            held_bytes: 0,
            evicted_max: 0,
            last_id: 0,
        }
    }

    fn info(&self) -> TopicInfo {
        TopicInfo {
            name: Arc::clone(&self.name),
            held_messages: self.history.len(),
            held_bytes: self.held_bytes,
            last_id: self.last_id,
        }
    }

    /// Appends `msg`, then evicts oldest-first until both bounds hold again. A message larger
    /// than `history_bytes` on its own is evicted too: it went out live, but replay cannot
    /// offer it, and `evicted_max` says so.
    fn push(&mut self, msg: Arc<Message>, limits: &HubLimits) -> usize {
        self.held_bytes += msg.held_bytes();
        self.history.push_back(msg);
        let mut freed = 0;
        while self.history.len() > limits.history_messages || self.held_bytes > limits.history_bytes
        {
            let old = self
                .history
                .pop_front()
                .expect("over a bound, so not empty");
            self.held_bytes -= old.held_bytes();
            freed += old.held_bytes();
            self.evicted_max = old.id; // popped in id order, so this only grows
        }
        freed
    }
}

/// What one topic holds (`GET /topics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: Arc<str>,
    /// Messages in its replay history.
    pub held_messages: usize,
    /// Bytes of that history (`Message::held_bytes` summed).
    pub held_bytes: usize,
    /// Sequence number of its latest publish.
    pub last_id: u64,
}

/// What a subscriber resuming after `last_event_id` gets.
#[must_use]
#[derive(Debug, Clone)]
pub enum Replay {
    /// The history reaches back far enough: `events` is everything after the requested id.
    Events {
        /// Held messages on the requested topics with id > requested, in id order.
        events: Vec<Arc<Message>>,
        /// Highest id assigned when replay ran: deliver live messages only with id > this.
        last_id: u64,
    },
    /// Some messages after the requested id are gone. Send the reset notice(s) first
    /// (`message::sse_reset`, or `message::ws_reset` per entry of `gaps`), then `events`.
    Gap {
        /// From this id on, every message on every requested topic is in `events`
        /// (the largest `oldest_held` of `gaps`).
        oldest_held: u64,
        /// The `last_event_id` the subscriber asked for.
        requested: u64,
        /// Each requested topic whose history does not reach back, with its own bound.
        gaps: Vec<TopicGap>,
        events: Vec<Arc<Message>>,
        last_id: u64,
    },
}

impl Replay {
    pub fn events(&self) -> &[Arc<Message>] {
        match self {
            Replay::Events { events, .. } | Replay::Gap { events, .. } => events,
        }
    }

    /// The watermark to register live subscriptions with (`LocalIndex::subscribe`).
    pub fn last_id(&self) -> u64 {
        match self {
            Replay::Events { last_id, .. } | Replay::Gap { last_id, .. } => *last_id,
        }
    }
}

/// A replay in progress for one connection: where each of its topics stands. Created empty,
/// filled with [`ReplayCursor::add`], advanced by [`Topics::replay_page`].
#[derive(Debug, Default, Clone)]
pub struct ReplayCursor {
    topics: Vec<CursorTopic>,
}

#[derive(Debug, Clone)]
struct CursorTopic {
    topic: Arc<str>,
    /// Every message of the topic with id <= this was sent or reported lost; `None` = the
    /// client's id is of another lifetime (reset, then everything held).
    after: Option<u64>,
}

impl ReplayCursor {
    /// Replay `topic` after sequence number `after` (`None`: an id of another lifetime). A
    /// topic already in the cursor keeps its place.
    pub fn add(&mut self, topic: &str, after: Option<u64>) {
        if !self.topics.iter().any(|t| &*t.topic == topic) {
            self.topics.push(CursorTopic {
                topic: Arc::from(topic),
                after,
            });
        }
    }

    /// Stop replaying `topic` (an unsubscribe during the replay).
    pub fn remove(&mut self, topic: &str) {
        self.topics.retain(|t| &*t.topic != topic);
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| &*t.topic)
    }
}

/// One page of a replay (see [`Topics::replay_page`]).
#[must_use]
#[derive(Debug)]
pub struct ReplayPage {
    /// Topics whose history no longer reaches back to the cursor: send the reset notice(s)
    /// before `events`.
    pub gaps: Vec<TopicGap>,
    /// Held messages in id order.
    pub events: Vec<Arc<Message>>,
    /// `Some(last_id)` when the replay is complete: the watermark for live delivery.
    pub caught_up: Option<u64>,
}

/// One topic of a [`Replay::Gap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicGap {
    pub topic: Arc<str>,
    /// Every message of this topic with id >= this is held (ids below may be lost).
    pub oldest_held: u64,
}

/// Server-wide topics and history. See the module doc for invariants.
#[derive(Debug)]
pub struct Topics {
    limits: HubLimits,
    /// This server lifetime's epoch, the first half of every wire id (see [`super::id`]).
    epoch: u64,
    /// The id the next publish gets; ids start at 1 so that 0 means "nothing seen yet".
    next_id: u64,
    topics: HashMap<Arc<str>, Topic>,
    /// Every topic by the id of its latest publish: the first entry is the least recently
    /// published topic, the one evicted when the map is full and no topic is empty.
    by_last_id: BTreeMap<u64, Arc<str>>,
    /// Topics whose history is empty (all evicted); the first to go when the map is full.
    empty_topics: usize,
    /// Highest id any topic whose state was dropped to make room may have held. A topic we
    /// have no state for may be one of them, so replay on it must report a gap before this id.
    forgotten_max: u64,
    /// Sum of all topics' `held_bytes`, for metrics.
    held_bytes_total: usize,
}

impl Topics {
    /// Topics of epoch 0 (tests); a server uses [`Topics::with_epoch`].
    pub fn new(limits: HubLimits) -> Topics {
        Topics::with_epoch(limits, 0)
    }

    pub fn with_epoch(limits: HubLimits, epoch: u64) -> Topics {
        Topics {
            limits,
            epoch,
            next_id: 1,
            topics: HashMap::new(),
            by_last_id: BTreeMap::new(),
            empty_topics: 0,
            forgotten_max: 0,
            held_bytes_total: 0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The wire id of sequence number `seq` in this epoch.
    pub fn event_id(&self, seq: u64) -> EventId {
        EventId {
            epoch: self.epoch,
            seq,
        }
    }

    pub fn limits(&self) -> &HubLimits {
        &self.limits
    }

    /// Highest id assigned so far (0 before the first publish). A live-only subscriber (no
    /// `Last-Event-ID`) reads this under the lock and subscribes with it as the watermark.
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Topics with state (history or eviction record).
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Bytes held by all histories (`Message::held_bytes` summed).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes_total
    }

    /// Validates, assigns the next id, encodes both wire forms once, and appends to the
    /// topic's history (evicting oldest-first). A failed publish consumes no id.
    ///
    /// The caller must push the returned `Arc` to every worker's inbox before releasing the
    /// lock it holds around this call, so that inbox order is id order.
    pub fn publish(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<Arc<Message>, HubError> {
        validate_topic(topic)?;
        self.publish_named(topic, event, data)
    }

    /// [`Topics::publish`] to a system topic (`$stats`): the server's own messages. Same rules
    /// otherwise; the caller pushes the message to the workers the same way.
    pub fn publish_system(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<Arc<Message>, HubError> {
        validate_system_topic(topic)?;
        self.publish_named(topic, event, data)
    }

    /// What a topic holds: `None` for a topic with no state here (never published, or
    /// forgotten to make room).
    pub fn topic_info(&self, topic: &str) -> Option<TopicInfo> {
        self.topics.get(topic).map(Topic::info)
    }

    /// Up to `limit` topics with state whose names come after `after` (all when `None`), in
    /// name order. A walk over every topic (at most `topics_max`), keeping the `limit`
    /// smallest names.
    pub fn topics_after(&self, after: Option<&str>, limit: usize) -> Vec<TopicInfo> {
        let mut best: std::collections::BinaryHeap<&str> = std::collections::BinaryHeap::new();
        for name in self.topics.keys() {
            let name: &str = name;
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            if best.len() < limit {
                best.push(name);
            } else if best.peek().is_some_and(|&max| name < max) {
                best.pop();
                best.push(name);
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|name| self.topics[name].info())
            .collect()
    }

    fn publish_named(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<Arc<Message>, HubError> {
        validate_event(event, &self.limits)?;
        if data.len() > self.limits.data_bytes_max {
            return Err(HubError::DataTooLarge {
                limit_bytes: self.limits.data_bytes_max,
            });
        }
        if !self.topics.contains_key(topic) {
            self.make_room();
            let name: Arc<str> = Arc::from(topic);
            self.topics.insert(Arc::clone(&name), Topic::new(name));
            self.empty_topics += 1;
        }
        let state = self
            .topics
            .get_mut(topic)
            .expect("present or just inserted");
        let id = self.next_id;
        self.next_id += 1;
        if state.last_id != 0 {
            self.by_last_id.remove(&state.last_id);
        }
        state.last_id = id;
        self.by_last_id.insert(id, Arc::clone(&state.name));
        let msg = Arc::new(Message::encode(
            EventId {
                epoch: self.epoch,
                seq: id,
            },
            Arc::clone(&state.name),
            event,
            data,
        ));
        let was_empty = state.history.is_empty();
        let freed = state.push(Arc::clone(&msg), &self.limits);
        let is_empty = state.history.is_empty();
        self.held_bytes_total = self.held_bytes_total + msg.held_bytes() - freed;
        match (was_empty, is_empty) {
            (true, false) => self.empty_topics -= 1,
            (false, true) => self.empty_topics += 1,
            _ => {}
        }
        Ok(msg)
    }

    /// Frees a slot for a new topic: drops every empty topic's state at once, or, when no
    /// topic is empty, the least recently published topic with its history. What a dropped
    /// topic held is folded into `forgotten_max`, so a later replay on it reports the gap.
    /// Never fails: the topic table fills, but never for good.
    fn make_room(&mut self) {
        if self.topics.len() < self.limits.topics_max {
            return;
        }
        if self.empty_topics == 0 {
            let (_, name) = self
                .by_last_id
                .pop_first()
                .expect("the map is full, so not empty");
            let t = self.topics.remove(&name).expect("indexed topics exist");
            self.held_bytes_total -= t.held_bytes;
            self.forgotten_max = self.forgotten_max.max(t.last_id);
            return;
        }
        let mut forgotten_max = self.forgotten_max;
        let by_last_id = &mut self.by_last_id;
        self.topics.retain(|_, t| {
            if t.history.is_empty() {
                forgotten_max = forgotten_max.max(t.evicted_max);
                by_last_id.remove(&t.last_id);
                false
            } else {
                true
            }
        });
        self.forgotten_max = forgotten_max;
        self.empty_topics = 0;
    }

    /// Everything held after `last_event_id` on `topics`, merged in id order, plus the
    /// watermark for live delivery; a [`Replay::Gap`] when a topic's history does not reach
    /// back. Duplicate names count once. Unknown topics create no state. This is one
    /// unbounded [`Topics::replay_page`]; servers page instead.
    ///
    /// Edge cases, fixed here so every caller agrees:
    /// - `last_event_id == 0` means "from the start": a gap only if something was evicted.
    /// - `last_event_id == evicted_max` of a topic is no gap: the client has that message.
    /// - `last_event_id > last_id()` cannot have come from this server instance (a forged
    ///   header): every requested topic is reported as a gap and all held messages are
    ///   replayed, each gap's `oldest_held` being the topic's oldest held id.
    pub fn replay(&self, topics: &[&str], last_event_id: u64) -> Replay {
        let mut cursor = ReplayCursor::default();
        for topic in topics {
            cursor.add(topic, Some(last_event_id));
        }
        let page = self.replay_page(&mut cursor, usize::MAX, false);
        let last_id = page.caught_up.expect("an unbounded page catches up");
        let ReplayPage { gaps, events, .. } = page;
        if gaps.is_empty() {
            return Replay::Events { events, last_id };
        }
        Replay::Gap {
            oldest_held: gaps.iter().map(|g| g.oldest_held).max().unwrap_or(0),
            requested: last_event_id,
            gaps,
            events,
            last_id,
        }
    }

    /// The next page of `cursor`'s replay: first the gaps found where the cursor stands (a
    /// topic whose history was trimmed past it, or every topic when the cursor's id cannot be
    /// of this lifetime), then held messages of its topics in id order until `bytes_max` (of
    /// the SSE or WebSocket form, per `ws`) would be passed; at least one message per page.
    ///
    /// When the page reaches the newest message, `caught_up` is the highest id assigned so
    /// far: under this same lock hold, register live delivery with it as the watermark, and
    /// drop the cursor. Each call holds the caller's lock for one page only, so a long replay
    /// never stalls publishers for longer than a page.
    pub fn replay_page(&self, cursor: &mut ReplayCursor, bytes_max: usize, ws: bool) -> ReplayPage {
        let last_id = self.last_id();
        let mut gaps = Vec::new();
        // (history, next index) per cursor topic, in cursor order.
        let mut heads: Vec<(Option<&VecDeque<Arc<Message>>>, usize)> =
            Vec::with_capacity(cursor.topics.len());
        for pos in &mut cursor.topics {
            let foreign = pos.after.is_none_or(|a| a > last_id);
            let after = pos.after.unwrap_or(0).min(last_id);
            let (complete_from, oldest, history) = match self.topics.get(&*pos.topic) {
                Some(t) => (
                    t.evicted_max + 1,
                    t.history.front().map_or(last_id + 1, |m| m.id),
                    Some(&t.history),
                ),
                None => (self.forgotten_max + 1, last_id + 1, None),
            };
            let after = if foreign {
                gaps.push(TopicGap {
                    topic: Arc::clone(&pos.topic),
                    oldest_held: oldest,
                });
                0
            } else if complete_from > after + 1 {
                gaps.push(TopicGap {
                    topic: Arc::clone(&pos.topic),
                    oldest_held: complete_from,
                });
                after
            } else {
                after
            };
            pos.after = Some(after);
            let start = history.map_or(0, |h| h.partition_point(|m| m.id <= after));
            heads.push((history, start));
        }
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let caught_up = loop {
            // Smallest next id over the topics: a k-way merge, k <= topics_per_conn_max.
            let mut best: Option<(usize, u64)> = None;
            for (k, (history, next)) in heads.iter().enumerate() {
                if let Some(m) = history.and_then(|h| h.get(*next)) {
                    if best.is_none_or(|(_, id)| m.id < id) {
                        best = Some((k, m.id));
                    }
                }
            }
            let Some((k, _)) = best else {
                break Some(last_id);
            };
            let (history, next) = &mut heads[k];
            let m = &history.expect("chosen above")[*next];
            let size = if ws { m.ws.len() } else { m.sse.len() };
            if !events.is_empty() && bytes.saturating_add(size) > bytes_max {
                break None;
            }
            bytes += size;
            events.push(Arc::clone(m));
            *next += 1;
        };
        // Every message of every cursor topic up to `through` is now sent or reported lost.
        let through = match caught_up {
            Some(last) => last,
            None => events.last().map_or(0, |m| m.id),
        };
        for pos in &mut cursor.topics {
            pos.after = Some(pos.after.unwrap_or(0).max(through));
        }
        ReplayPage {
            gaps,
            events,
            caught_up,
        }
    }

    /// SSE bytes of one message "x" on topic "a" in these tests' epoch: a page budget unit.
    #[cfg(test)]
    pub(crate) fn history_bytes_of_one_for_tests(&self) -> usize {
        self.topics
            .values()
            .find_map(|t| t.history.front())
            .map_or(16, |m| m.sse.len())
    }

    /// Checks the invariants in the module doc; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut total = 0;
        let mut empty = 0;
        for (name, t) in &self.topics {
            let sum: usize = t.history.iter().map(|m| m.held_bytes()).sum();
            assert_eq!(t.held_bytes, sum, "held_bytes drifted on {name}");
            assert!(t.held_bytes <= self.limits.history_bytes);
            assert!(t.history.len() <= self.limits.history_messages);
            assert!(t
                .history
                .iter()
                .zip(t.history.iter().skip(1))
                .all(|(a, b)| a.id < b.id));
            assert!(t.history.front().is_none_or(|m| m.id > t.evicted_max));
            assert!(t.history.iter().all(|m| *m.topic == **name));
            total += sum;
            empty += usize::from(t.history.is_empty());
        }
        assert_eq!(self.held_bytes_total, total);
        assert_eq!(self.by_last_id.len(), self.topics.len());
        for (id, name) in &self.by_last_id {
            assert_eq!(self.topics[name].last_id, *id, "by_last_id of {name}");
        }
        assert_eq!(self.empty_topics, empty);
        assert!(self.topics.len() <= self.limits.topics_max);
    }
}
