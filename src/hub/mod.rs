//! Hub: topics, encode-once fan-out, replay history and the slow-consumer policy.
//!
//! Sans-IO like `proto`: no ring, no sockets, no clock, no threads and no locks of its own.
//! Ids, and the lock around [`Topics`], come from the caller.
//!
//! # Parts
//! - [`Topics`] (one per server, behind a `Mutex` the server owns): assigns ids, encodes each
//!   publish once into a [`Message`] (SSE event bytes and WebSocket frame bytes), keeps a
//!   bounded per-topic history, and answers replays a page at a time
//!   ([`Topics::replay_page`]).
//! - [`LocalIndex`] (one per worker, unshared): topic -> local subscribers, each with a
//!   watermark id; [`ConnTopics`] is the per-connection half, stored with the connection.
//! - [`admit`]: whether a message may join a send queue, or the slow consumer is closed.
//! - [`sse_reset`] and [`ws_reset`]: the notices sent when a replay finds a gap.
//!
//! # Replay-then-live contract (no gap, no duplicate)
//!
//! Publish, on any worker:
//! 1. lock `Topics`; 2. `publish` (assigns id N); 3. push the `Arc<Message>` into every
//!    worker's inbox; 4. unlock. Because 2 and 3 happen under one lock hold, every inbox
//!    receives messages in id order, and a message is in the history (or recorded as evicted)
//!    no later than it is in any inbox.
//!
//! Every worker drains its inbox in push order (the engine's `Ctx::post` puts a worker's posts
//! to itself into the same FIFO), so every worker delivers in id order.
//!
//! Subscribe with resume from `L` (SSE `Last-Event-ID` or `lastEventId`, or the WebSocket
//! subscribe message's `since`), on the worker that owns the connection, in pages:
//! 1. lock `Topics`; 2. `LocalIndex::subscribe(.., u64::MAX)` for each topic: held back, no
//!    live message passes; 3. add the topics to a [`ReplayCursor`] after `L`; 4. take a page
//!    with [`Topics::replay_page`]; 5. if the page caught up (`caught_up = Some(W)`, `W` the
//!    highest id assigned so far), `LocalIndex::set_watermark(.., W)` for each cursor topic and
//!    drop the cursor; 6. unlock; 7. queue the page's reset notice(s) and events. While the
//!    cursor lives, each time the connection's queue drains: 1, 4, 5, 6, 7 again.
//!    A live-only subscriber subscribes with `Topics::last_id()` as its watermark instead.
//!
//! Why it is exact: while held back, nothing live is queued to the subscriber. Each page
//! continues where the last stopped, in id order, and reports as a gap whatever was evicted in
//! between, so the pages carry every message up to `W` once. Every message with id > `W` is
//! published after step 6 releases the lock, so it reaches this worker's inbox after the
//! watermark is `W`; messages with id <= `W` still in the inbox (pushed before, not yet
//! drained) are skipped by [`LocalIndex::deliveries`]. Step 7 happens in the same callback as
//! step 5, before the worker next drains its inbox, so the last page precedes the first live
//! message in the connection's queue and ids strictly increase. Each lock hold covers one
//! page: a long replay never stalls publishers for more than a page.
//!
//! # Bounds
//! Topic names: 1..=128 bytes of `[A-Za-z0-9_.:-]`. Event names: 1..=`event_bytes_max`, no
//! CR, LF or NUL, not `reset` (reserved for the gap notice). Data: `data_bytes_max`. History per
//! topic: `history_messages` and `history_bytes`. Topics with state: `topics_max`. Topics per
//! connection: `topics_per_conn_max` (enforced by `LocalIndex::subscribe`). Queue bytes per
//! connection: `queue_bytes_max` (via [`admit`]).

mod counts;
pub mod id;
mod local;
mod message;
mod policy;
mod topics;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod topics_tests;

pub use counts::SubscriberCounts;
pub use id::{parse_resume, BadEventId, EventId, Resume};
pub use local::{ConnTopics, LocalIndex, Subscribed};
pub use message::{sse_reset, ws_reset, DeflateWindow, Message};
pub use policy::{admit, Admit};
pub use topics::{Replay, ReplayCursor, ReplayPage, TopicGap, TopicInfo, Topics};

use std::fmt;

/// Longest topic name, in bytes.
pub const TOPIC_BYTES_MAX: usize = 128;

/// Event name reserved for the gap notice ([`sse_reset`]).
pub const RESET_EVENT: &str = "reset";

/// The hub's bounds; validated by the server's config layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubLimits {
    /// Messages kept per topic for replay.
    pub history_messages: usize,
    /// Bytes kept per topic for replay, counted as `Message::held_bytes` (SSE plus WS bytes).
    pub history_bytes: usize,
    /// Topics that may hold state (history or an eviction record) at once.
    pub topics_max: usize,
    /// Largest publish body, in bytes.
    pub data_bytes_max: usize,
    /// Longest event name, in bytes.
    pub event_bytes_max: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            history_messages: 1024,
            history_bytes: 256 << 10,
            topics_max: 10_000,
            data_bytes_max: 64 << 10,
            event_bytes_max: 64,
        }
    }
}

/// Everything the hub refuses. [`HubError::status`] is the one place mapping each to its
/// HTTP answer; WebSocket control replies reuse the same text.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubError {
    /// Empty, longer than 128 bytes, or a byte outside `[A-Za-z0-9_.:-]`.
    TopicInvalid,
    /// Empty, too long, containing CR/LF/NUL, or the reserved name `reset`.
    EventInvalid,
    DataTooLarge {
        limit_bytes: usize,
    },
    /// The connection already has `topics_per_conn_max` subscriptions.
    TooManyTopics {
        limit: usize,
    },
}

impl HubError {
    /// 400 for bad names and too many topics, 413 for oversize data.
    pub fn status(self) -> u16 {
        match self {
            HubError::TopicInvalid | HubError::EventInvalid | HubError::TooManyTopics { .. } => 400,
            HubError::DataTooLarge { .. } => 413,
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::TopicInvalid => write!(
                f,
                "topic must be 1 to {TOPIC_BYTES_MAX} bytes of A-Z a-z 0-9 _ . : -"
            ),
            HubError::EventInvalid => f.write_str(
                "event name must be non-empty, short, without CR/LF/NUL, and not \"reset\"",
            ),
            HubError::DataTooLarge { limit_bytes } => {
                write!(f, "data larger than the {limit_bytes}-byte limit")
            }
            HubError::TooManyTopics { limit } => {
                write!(f, "a connection may subscribe to at most {limit} topics")
            }
        }
    }
}

impl std::error::Error for HubError {}

/// Topic names are restricted so they are safe unescaped in URLs, metrics labels and logs.
pub fn validate_topic(topic: &str) -> Result<(), HubError> {
    let ok = !topic.is_empty()
        && topic.len() <= TOPIC_BYTES_MAX
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(HubError::TopicInvalid)
    }
}

/// The first byte of a system topic's name: topics the server itself publishes (`$stats`).
/// No client name can start with it ([`validate_topic`] refuses `$`), so no client can
/// publish to a system topic or subscribe to one through `/sse` or `/ws`.
pub const SYSTEM_PREFIX: char = '$';

/// A system topic: `$` and then a valid client name.
pub fn validate_system_topic(topic: &str) -> Result<(), HubError> {
    match topic.strip_prefix(SYSTEM_PREFIX) {
        Some(rest) => validate_topic(rest),
        None => Err(HubError::TopicInvalid),
    }
}

pub fn is_system_topic(topic: &str) -> bool {
    topic.starts_with(SYSTEM_PREFIX)
}

/// A client topic or a system topic: what may stand in the hub's tables.
pub fn validate_any_topic(topic: &str) -> Result<(), HubError> {
    validate_topic(topic).or_else(|_| validate_system_topic(topic))
}

/// Event names go into an SSE `event:` line and a JSON string: no line breaks, no NUL.
pub fn validate_event(event: Option<&str>, limits: &HubLimits) -> Result<(), HubError> {
    let Some(e) = event else { return Ok(()) };
    let ok = !e.is_empty()
        && e.len() <= limits.event_bytes_max
        && e != RESET_EVENT
        && !e.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if ok {
        Ok(())
    } else {
        Err(HubError::EventInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "room.1", "user:42", "A-Z_0.9", &"x".repeat(128)] {
            assert_eq!(validate_topic(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a\n", &"x".repeat(129)] {
            assert_eq!(validate_topic(bad), Err(HubError::TopicInvalid), "{bad:?}");
        }
    }

    #[test]
    fn system_topic_names() {
        assert_eq!(validate_topic("$stats"), Err(HubError::TopicInvalid));
        assert_eq!(validate_system_topic("$stats"), Ok(()));
        assert_eq!(validate_any_topic("$stats"), Ok(()));
        assert_eq!(validate_any_topic("stats"), Ok(()));
        for bad in [
            "$",
            "$$x",
            "stats",
            "$a b",
            &format!("${}", "x".repeat(129)),
        ] {
            assert_eq!(
                validate_system_topic(bad),
                Err(HubError::TopicInvalid),
                "{bad}"
            );
        }
        assert!(is_system_topic("$stats") && !is_system_topic("stats"));
    }

    #[test]
    fn event_names() {
        let l = HubLimits::default();
        assert_eq!(validate_event(None, &l), Ok(()));
        assert_eq!(validate_event(Some("price update"), &l), Ok(()));
        assert_eq!(validate_event(Some(&"e".repeat(64)), &l), Ok(()));
        for bad in ["", "reset", "a\rb", "a\nb", "a\0b", &"e".repeat(65)] {
            assert_eq!(
                validate_event(Some(bad), &l),
                Err(HubError::EventInvalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn each_error_has_one_status_and_readable_text() {
        let cases = [
            (HubError::TopicInvalid, 400),
            (HubError::EventInvalid, 400),
            (HubError::TooManyTopics { limit: 8 }, 400),
            (HubError::DataTooLarge { limit_bytes: 9 }, 413),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e}");
            assert!(!e.to_string().is_empty());
        }
        assert!(HubError::DataTooLarge { limit_bytes: 9 }
            .to_string()
            .contains("9-byte"));
    }
}
