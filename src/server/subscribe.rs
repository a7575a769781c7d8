//! What a subscriber receives: one worker's subscriptions, the replay that precedes live
//! messages, live fan-out, and the slow-consumer cut. SSE and WebSocket differ only in which
//! encoded form of a message they take (`Sub::ws`).
//!
//! The replay-then-live contract (no gap, no duplicate) is in the `hub` module doc; this file
//! keeps its two rules: the local subscription is registered under the same hub lock hold that
//! reads the replay, and the replay is queued before this worker next drains its inbox.

use std::collections::HashMap;

use super::metrics::{CloseKind, Counter};
use super::out::Out;
use super::shared::{Shared, Sub};
use crate::engine::{ConnId, Ctx, Handler};
use crate::hub::{self, ConnTopics, HubError, LocalIndex, Message, Replay, Resume};
use crate::proto::ws::ControlFrame;

/// One worker's subscriptions.
pub(super) struct Subscriptions {
    index: LocalIndex<Sub>,
    /// Close reasons decided outside a connection's own callbacks (slow consumers found while
    /// fanning out), picked up by `take_close_reason` in `on_close`.
    pending_close: HashMap<ConnId, CloseKind>,
}

impl Subscriptions {
    pub fn new(topics_per_conn_max: usize) -> Subscriptions {
        Subscriptions {
            index: LocalIndex::new(topics_per_conn_max),
            pending_close: HashMap::new(),
        }
    }

    /// Subscribe `sub` to `topics` and return what it must be sent before live messages: the
    /// replay after `resume` (if given). An id of another lifetime replays everything held,
    /// behind a reset notice (`Topics::replay` treats an id past `last_id` that way). All or
    /// nothing for this call's topics; earlier subscriptions of the connection stay in force
    /// on error.
    pub fn subscribe(
        &mut self,
        shared: &Shared,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume: Option<Resume>,
    ) -> Result<Option<Replay>, HubError> {
        let hub = shared.hub();
        let (replay, watermark) = match resume {
            Some(resume) => {
                let after = match resume {
                    Resume::After(n) => n,
                    Resume::Foreign => u64::MAX,
                };
                let r = hub.replay(topics, after);
                let w = r.last_id();
                (Some(r), w)
            }
            None => (None, hub.last_id()),
        };
        let mut added: Vec<&str> = Vec::with_capacity(topics.len());
        for topic in topics {
            match self.index.subscribe(conn_topics, sub, topic, watermark) {
                Ok(hub::Subscribed::Added) => added.push(topic),
                Ok(hub::Subscribed::Already) => {}
                Err(e) => {
                    for topic in added {
                        self.index.unsubscribe(conn_topics, sub, topic);
                    }
                    return Err(e);
                }
            }
        }
        drop(hub);
        Ok(replay)
    }

    pub fn unsubscribe(&mut self, conn_topics: &mut ConnTopics, sub: Sub, topic: &str) -> bool {
        self.index.unsubscribe(conn_topics, sub, topic)
    }

    /// On close: drop every subscription of the connection.
    pub fn unsubscribe_all(&mut self, conn_topics: &mut ConnTopics, sub: Sub) {
        self.index.unsubscribe_all(conn_topics, sub);
    }

    /// The reason recorded when fan-out cut this connection, if it did.
    pub fn take_close_reason(&mut self, id: ConnId) -> Option<CloseKind> {
        self.pending_close.remove(&id)
    }

    /// Live fan-out of one published message to this worker's subscribers of its topic. A
    /// subscriber whose queue would pass `queue_bytes_max` is cut (see [`hub::admit`]).
    pub fn deliver<H: Handler>(&mut self, shared: &Shared, ctx: &mut Ctx<'_, H>, msg: &Message) {
        let max = shared.config.queue_bytes_max.0;
        let mut delivered = 0u64;
        let mut slow: Vec<Sub> = Vec::new();
        for sub in self.index.deliveries(msg) {
            let bytes = if sub.ws { &msg.ws } else { &msg.sse };
            match hub::admit(ctx.queued_bytes(sub.id), bytes.len(), max) {
                hub::Admit::Send => delivered += u64::from(ctx.send(sub.id, bytes.clone())),
                hub::Admit::Disconnect => slow.push(sub),
            }
        }
        shared.metrics.add(Counter::Delivered, delivered);
        shared.metrics.add(Counter::Dropped, slow.len() as u64);
        for sub in slow {
            if ctx.is_open(sub.id) {
                self.cut_slow_consumer(ctx, sub);
            }
        }
    }

    /// WebSocket: a 1013 "Try Again Later" close frame after what is queued, then close. SSE
    /// has no goodbye: the stream ends now and its queue is freed; the client resumes with
    /// Last-Event-ID.
    fn cut_slow_consumer<H: Handler>(&mut self, ctx: &mut Ctx<'_, H>, sub: Sub) {
        self.pending_close.insert(sub.id, CloseKind::SlowConsumer);
        if sub.ws {
            let frame = ControlFrame::close(Some(SLOW_CONSUMER_CLOSE_CODE), "slow consumer", None);
            ctx.send(sub.id, bytes::Bytes::copy_from_slice(frame.as_bytes()));
            ctx.close(sub.id);
        } else {
            ctx.abort(sub.id);
        }
    }
}

/// RFC 6455 §7.4.1: 1013 "Try Again Later".
const SLOW_CONSUMER_CLOSE_CODE: u16 = 1013;

/// Queue a replay: the reset notice(s) on a gap, then the held events, in the subscriber's wire
/// form. `requested` is the resume point as the client sent it, echoed in the notice.
pub(super) fn send_replay<H: Handler>(
    out: &mut Out<'_, '_, H>,
    ws: bool,
    replay: &Replay,
    requested: &str,
) {
    if let Replay::Gap {
        gaps, oldest_held, ..
    } = replay
    {
        let epoch = out.shared.epoch;
        let id = |seq| hub::EventId { epoch, seq };
        if ws {
            for gap in gaps {
                out.send(hub::ws_reset(&gap.topic, id(gap.oldest_held), requested));
            }
        } else {
            out.send(hub::sse_reset(id(*oldest_held), requested));
        }
        out.shared.metrics.inc(Counter::Resets);
    }
    for msg in replay.events() {
        out.send(if ws { msg.ws.clone() } else { msg.sse.clone() });
    }
    out.shared
        .metrics
        .add(Counter::Replayed, replay.events().len() as u64);
}
