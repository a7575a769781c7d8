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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::id::EventId;
use super::message::Message;
use super::{validate_event, validate_topic, HubError, HubLimits};

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
}

impl Topic {
    fn new(name: Arc<str>) -> Topic {
        Topic {
            name,
            history: VecDeque::new(),
            held_bytes: 0,
            evicted_max: 0,
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
    /// Topics whose history is empty (all evicted); the first to go when the map is full.
    empty_topics: usize,
    /// Highest `evicted_max` over topics whose state was dropped to make room. A topic we have
    /// no state for may be one of them, so replay on it must report a gap before this id.
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
        validate_event(event, &self.limits)?;
        if data.len() > self.limits.data_bytes_max {
            return Err(HubError::DataTooLarge {
                limit_bytes: self.limits.data_bytes_max,
            });
        }
        if !self.topics.contains_key(topic) {
            self.make_room()?;
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

    /// Frees a slot for a new topic: drops every empty topic's state at once (folding their
    /// eviction records into `forgotten_max`), or fails when none is empty.
    fn make_room(&mut self) -> Result<(), HubError> {
        if self.topics.len() < self.limits.topics_max {
            return Ok(());
        }
        if self.empty_topics == 0 {
            return Err(HubError::TopicsFull {
                limit: self.limits.topics_max,
            });
        }
        let mut forgotten_max = self.forgotten_max;
        self.topics.retain(|_, t| {
            if t.history.is_empty() {
                forgotten_max = forgotten_max.max(t.evicted_max);
                false
            } else {
                true
            }
        });
        self.forgotten_max = forgotten_max;
        self.empty_topics = 0;
        Ok(())
    }

    /// Everything held after `last_event_id` on `topics`, merged in id order, plus the
    /// watermark for live delivery; a [`Replay::Gap`] when a topic's history does not reach
    /// back. Duplicate names count once. Unknown topics create no state.
    ///
    /// Edge cases, fixed here so every caller agrees:
    /// - `last_event_id == 0` means "from the start": a gap only if something was evicted.
    /// - `last_event_id == evicted_max` of a topic is no gap: the client has that message.
    /// - `last_event_id > last_id()` cannot have come from this server instance (a restart,
    ///   or a forged header): every requested topic is reported as a gap and all held
    ///   messages are replayed, each gap's `oldest_held` being the topic's oldest held id.
    pub fn replay(&self, topics: &[&str], last_event_id: u64) -> Replay {
        let last_id = self.last_id();
        let future = last_event_id > last_id;
        let after = if future { 0 } else { last_event_id };
        let mut events = Vec::new();
        let mut gaps = Vec::new();
        for (i, &name) in topics.iter().enumerate() {
            if topics[..i].contains(&name) {
                continue;
            }
            let (key, complete_from, oldest) = match self.topics.get(name) {
                Some(t) => {
                    let start = t.history.partition_point(|m| m.id <= after);
                    events.extend(t.history.range(start..).cloned());
                    let oldest = t.history.front().map_or(last_id + 1, |m| m.id);
                    (Some(&t.name), t.evicted_max + 1, oldest)
                }
                None => (None, self.forgotten_max + 1, last_id + 1),
            };
            let oldest_held = if future {
                oldest
            } else if complete_from > last_event_id + 1 {
                complete_from
            } else {
                continue;
            };
            let topic = key.map_or_else(|| Arc::from(name), Arc::clone);
            gaps.push(TopicGap { topic, oldest_held });
        }
        // Each topic's slice is already sorted; the stable sort merges those runs cheaply.
        events.sort_by_key(|m| m.id);
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
        assert_eq!(self.empty_topics, empty);
        assert!(self.topics.len() <= self.limits.topics_max);
    }
}
