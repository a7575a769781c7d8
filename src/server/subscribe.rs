//! What a subscriber receives: one worker's subscriptions, the replay that precedes live
//! messages, live fan-out, and the slow-consumer cut. SSE and WebSocket differ only in which
//! encoded form of a message they take (`Sub::ws`).
//!
//! Replay streams: a resuming subscription is registered held back (no live message passes
//! it), and the replay is sent a page at a time, the next page when the connection's queue has
//! drained (`on_drain`), so a client that needs 10,000 held messages gets them all under the
//! same queue bound as live delivery, and the hub lock is held for one page at a time. The
//! page that catches up moves the watermark to the last id assigned, under the same lock hold;
//! see the `hub` module doc for why that switch has no gap and no duplicate.

use std::collections::HashMap;
use std::sync::Arc;

use super::metrics::{CloseKind, Counter};
use super::out::Out;
use super::presence::Shard;
use super::shared::{Form, Shared, Sub};
use super::tls::{self, Sessions};
use crate::engine::{ConnId, Ctx, Handler};
use crate::hub::{
    self, ConnTopics, HubError, LocalIndex, Message, ReplayCursor, ReplayPage, Resume, Topics,
};
use crate::proto::ws::{close_code, ControlFrame};

/// The watermark of a subscription whose replay is still streaming: no live message passes
/// it; the replay's last page sets the real one.
const HELD_BACK: u64 = u64::MAX;

/// A replay being streamed to one connection, a page per drain.
pub(super) struct Replaying {
    cursor: ReplayCursor,
    /// The resume point as the client sent it, echoed in reset notices.
    pub requested: Box<str>,
}

/// Where a new poll stands (`Subscriptions::subscribe_poll`).
pub(super) enum PollStart {
    /// Answer now with this page: held messages newer than the resume point, or a gap.
    Answer(ReplayPage),
    /// Nothing to answer yet: subscribed live to messages with a sequence number above
    /// `after`, the newest one when the poll began.
    Wait { after: u64 },
}

/// One worker's subscriptions.
pub(super) struct Subscriptions {
    index: LocalIndex<Sub>,
    /// This worker's subscriber count per topic, summed over workers by `/topics`; changed
    /// with every subscription added to or removed from `index`, never on fan-out.
    counts: Shard,
    /// Close reasons decided outside a connection's own callbacks (slow consumers found while
    /// fanning out), picked up by `take_close_reason` in `on_close`.
    pending_close: HashMap<ConnId, CloseKind>,
    /// Held polls that live messages reached, with those messages, until the connection's
    /// own callback (`on_drain`, asked for at the first message) answers them.
    ready: HashMap<ConnId, Ready>,
}

/// The live messages that reached one held poll before it was answered: consecutive
/// deliveries, at most a replay page of them. Once a message does not fit, none after it is
/// taken (`full`), so the answer never skips one: the client's next poll fetches the rest
/// from the history.
#[derive(Default)]
pub(super) struct Ready {
    pub messages: Vec<Arc<Message>>,
    bytes: usize,
    full: bool,
}

impl Subscriptions {
    pub fn new(topics_per_conn_max: usize, counts: Shard) -> Subscriptions {
        Subscriptions {
            index: LocalIndex::new(topics_per_conn_max),
            counts,
            pending_close: HashMap::new(),
            ready: HashMap::new(),
        }
    }

    /// Subscribe `sub` to `topics`. Without `resume`, the subscriptions are live at once.
    /// With it, they are held back (no live delivery) and join the connection's replay, whose
    /// first page is returned for the caller to send with [`send_page`]; later pages follow
    /// as the connection drains ([`Subscriptions::next_page`]), and the last one switches the
    /// held-back subscriptions to live under the same lock hold, so the switch has no gap and
    /// no duplicate. All or nothing for this call's topics; earlier subscriptions of the
    /// connection stay in force on error. Client topics only: a system topic (`$stats`) is
    /// refused as an invalid name, as it always was.
    pub fn subscribe(
        &mut self,
        shared: &Shared,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume: Option<(Resume, &str)>,
        replaying: &mut Option<Box<Replaying>>,
    ) -> Result<Option<ReplayPage>, HubError> {
        if topics.iter().any(|t| hub::is_system_topic(t)) {
            return Err(HubError::TopicInvalid);
        }
        self.subscribe_any(shared, sub, conn_topics, topics, resume, replaying)
    }

    /// [`Subscriptions::subscribe`] that also takes system topics: for the server's own
    /// routes (`/status/events`), which decide who may before calling.
    pub fn subscribe_any(
        &mut self,
        shared: &Shared,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume: Option<(Resume, &str)>,
        replaying: &mut Option<Box<Replaying>>,
    ) -> Result<Option<ReplayPage>, HubError> {
        let hub = shared.hub();
        let watermark = match resume {
            Some(_) => HELD_BACK,
            None => hub.last_id(),
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
        {
            let mut counts = self.counts.lock();
            for topic in &added {
                counts.add(topic);
            }
        }
        let Some((resume, requested)) = resume else {
            return Ok(None);
        };
        let r = replaying.get_or_insert_with(|| {
            Box::new(Replaying {
                cursor: ReplayCursor::default(),
                requested: requested.into(),
            })
        });
        let after = match resume {
            Resume::After(n) => Some(n),
            Resume::Foreign => None,
        };
        for topic in added {
            r.cursor.add(topic, after);
        }
        let page = self.page_locked(&hub, shared, sub, conn_topics, replaying);
        drop(hub);
        Ok(Some(page))
    }

    /// Start a poll for `sub` on `topics` (names already valid), all under one hub lock hold.
    /// With a resume point that held messages (or a gap) lie beyond, it is answered at once
    /// with one page of them and nothing is subscribed. Otherwise its topics are subscribed
    /// live after the newest id, so the first message published after it reaches `deliver`.
    pub fn subscribe_poll(
        &mut self,
        shared: &Shared,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume: Option<Resume>,
    ) -> Result<PollStart, HubError> {
        let hub = shared.hub();
        let after = match resume {
            None => hub.last_id(),
            Some(resume) => {
                let after = match resume {
                    Resume::After(n) => Some(n),
                    Resume::Foreign => None,
                };
                let mut cursor = ReplayCursor::default();
                for topic in topics {
                    cursor.add(topic, after);
                }
                let page_bytes = shared.config.read_pause_bytes();
                let page = hub.replay_page(&mut cursor, page_bytes, true);
                match page.caught_up {
                    Some(last) if page.events.is_empty() && page.gaps.is_empty() => last,
                    _ => return Ok(PollStart::Answer(page)),
                }
            }
        };
        let mut added: Vec<&str> = Vec::with_capacity(topics.len());
        for topic in topics {
            match self.index.subscribe(conn_topics, sub, topic, after) {
                Ok(hub::Subscribed::Added) => added.push(topic),
                Ok(hub::Subscribed::Already) => {}
                Err(e) => {
                    self.index.unsubscribe_all(conn_topics, sub);
                    return Err(e);
                }
            }
        }
        // A held poll is a subscriber like a stream (`/topics` counts it); `unsubscribe_all`
        // takes it out again when the poll is answered or closed.
        let mut counts = self.counts.lock();
        for topic in added {
            counts.add(topic);
        }
        Ok(PollStart::Wait { after })
    }

    /// The next page of the connection's replay (on drain). `None` when it has none.
    pub fn next_page(
        &mut self,
        shared: &Shared,
        sub: Sub,
        conn_topics: &ConnTopics,
        replaying: &mut Option<Box<Replaying>>,
    ) -> Option<ReplayPage> {
        replaying.as_ref()?;
        let hub = shared.hub();
        Some(self.page_locked(&hub, shared, sub, conn_topics, replaying))
    }

    /// One page under the caller's hub lock; on catching up, the held-back subscriptions go
    /// live at the page's watermark and the replay ends.
    fn page_locked(
        &mut self,
        hub: &Topics,
        shared: &Shared,
        sub: Sub,
        conn_topics: &ConnTopics,
        replaying: &mut Option<Box<Replaying>>,
    ) -> ReplayPage {
        let r = replaying.as_mut().expect("a replay in progress");
        // A page is as large as the level the queue drains to before the next one, so the
        // queue stays within twice that (`Config::read_pause_bytes`).
        let page_bytes = shared.config.read_pause_bytes();
        let page = hub.replay_page(&mut r.cursor, page_bytes, sub.form.json());
        if let Some(watermark) = page.caught_up {
            for topic in r.cursor.topics() {
                self.index.set_watermark(conn_topics, sub, topic, watermark);
            }
            *replaying = None;
        }
        page
    }

    /// Unsubscribe `topic`, and stop replaying it if it was.
    pub fn unsubscribe(
        &mut self,
        conn_topics: &mut ConnTopics,
        sub: Sub,
        topic: &str,
        replaying: &mut Option<Box<Replaying>>,
    ) -> bool {
        if let Some(r) = replaying {
            r.cursor.remove(topic);
            if r.cursor.is_empty() {
                *replaying = None;
            }
        }
        let removed = self.index.unsubscribe(conn_topics, sub, topic);
        if removed {
            self.counts.lock().remove(topic);
        }
        removed
    }

    /// On close: drop every subscription of the connection.
    pub fn unsubscribe_all(&mut self, conn_topics: &mut ConnTopics, sub: Sub) {
        if !conn_topics.is_empty() {
            let mut counts = self.counts.lock();
            for topic in conn_topics.topics() {
                counts.remove(topic);
            }
        }
        self.index.unsubscribe_all(conn_topics, sub);
    }

    /// The live messages that reached the held poll `id`, taken for its answer (and forgotten
    /// at its close).
    pub fn take_ready(&mut self, id: ConnId) -> Option<Ready> {
        self.ready.remove(&id)
    }

    /// Whether live messages wait for the held poll `id`.
    pub fn has_ready(&self, id: ConnId) -> bool {
        self.ready.contains_key(&id)
    }

    /// The reason recorded when fan-out cut this connection, if it did.
    pub fn take_close_reason(&mut self, id: ConnId) -> Option<CloseKind> {
        self.pending_close.remove(&id)
    }

    /// Live fan-out of one published message to this worker's subscribers of its topic. A
    /// subscriber whose queue would pass `queue_bytes_max` is cut (see [`hub::admit`]). Plain
    /// connections share the message's one encoded buffer (per form: SSE, WebSocket, or the
    /// deflated frame of a window class); TLS connections (`tls` holds their sessions) each
    /// encrypt it. A held poll is not sent to here: the message joins its `Ready` list and the
    /// poll's own callback writes the answer, since only that callback may change the
    /// connection's state.
    pub fn deliver<H: Handler>(
        &mut self,
        shared: &Shared,
        ctx: &mut Ctx<'_, H>,
        msg: &Arc<Message>,
        mut tls: Option<&mut Sessions>,
    ) {
        let max = shared.config.queue_bytes_max.0;
        let page_bytes = shared.config.read_pause_bytes();
        let mut delivered = 0u64;
        let mut encoded = 0u64;
        let mut slow: Vec<Sub> = Vec::new();
        for sub in self.index.deliveries(msg) {
            let bytes = match sub.form {
                Form::Sse => &msg.sse,
                Form::Ws => &msg.ws,
                Form::WsDeflate(window) => {
                    let (frame, made) = msg.ws_deflated(window);
                    encoded += u64::from(made);
                    frame
                }
                Form::Poll => {
                    let ready = self.ready.entry(sub.id).or_default();
                    if ready.messages.is_empty() {
                        ctx.notify_drain(sub.id);
                    }
                    let size = msg.ws.len();
                    if ready.full || (!ready.messages.is_empty() && ready.bytes + size > page_bytes)
                    {
                        ready.full = true;
                    } else {
                        ready.bytes += size;
                        ready.messages.push(Arc::clone(msg));
                        delivered += 1;
                    }
                    continue;
                }
            };
            match hub::admit(ctx.queued_bytes(sub.id), bytes.len(), max) {
                hub::Admit::Send => {
                    let sent = match tls.as_deref_mut() {
                        None => ctx.send(sub.id, bytes.clone()),
                        Some(sessions) => match sessions.get_mut(sub.id) {
                            Some(s) => tls::send(ctx, sub.id, &mut s.tls, bytes),
                            None => false,
                        },
                    };
                    delivered += u64::from(sent);
                }
                hub::Admit::Disconnect => slow.push(sub),
            }
        }
        // The server's own messages (`$stats` to status pages) are not the traffic those
        // counters describe, and the status page would otherwise watch itself.
        if !hub::is_system_topic(&msg.topic) {
            shared.metrics.add(Counter::Delivered, delivered);
        }
        shared.metrics.add(Counter::DeflateEncoded, encoded);
        shared.metrics.add(Counter::Dropped, slow.len() as u64);
        for sub in slow {
            if ctx.is_open(sub.id) {
                let session = tls.as_deref_mut().and_then(|t| t.get_mut(sub.id));
                self.cut_slow_consumer(ctx, sub, session.map(|s| &mut s.tls));
            }
        }
    }

    /// WebSocket: a 1013 "Try Again Later" close frame after what is queued, then close. SSE
    /// has no goodbye: the stream ends now and its queue is freed; the client resumes with
    /// Last-Event-ID.
    fn cut_slow_consumer<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_, H>,
        sub: Sub,
        session: Option<&mut rustls::ServerConnection>,
    ) {
        self.pending_close.insert(sub.id, CloseKind::SlowConsumer);
        if matches!(sub.form, Form::Ws | Form::WsDeflate(_)) {
            let frame =
                ControlFrame::close(Some(close_code::TRY_AGAIN_LATER), "slow consumer", None);
            match session {
                Some(session) => {
                    tls::send(ctx, sub.id, session, frame.as_bytes());
                    tls::close_notify(ctx, sub.id, session);
                }
                None => {
                    ctx.send(sub.id, bytes::Bytes::copy_from_slice(frame.as_bytes()));
                }
            }
            ctx.close(sub.id);
        } else {
            ctx.abort(sub.id);
        }
    }
}

/// Queue one replay page: the reset notice(s) for its gaps, then its events, in the
/// subscriber's wire form, and ask for `on_drain` if more pages are to come. `requested` is
/// the resume point as the client sent it, echoed in the notice.
pub(super) fn send_page<H: Handler>(
    out: &mut Out<'_, '_, H>,
    form: Form,
    page: &ReplayPage,
    requested: &str,
) {
    let ws = form != Form::Sse;
    if !page.gaps.is_empty() {
        let epoch = out.shared.epoch;
        let id = |seq| hub::EventId { epoch, seq };
        if ws {
            for gap in &page.gaps {
                out.send(hub::ws_reset(&gap.topic, id(gap.oldest_held), requested));
            }
        } else {
            let oldest = page.gaps.iter().map(|g| g.oldest_held).max().unwrap_or(0);
            out.send(hub::sse_reset(id(oldest), requested));
        }
        out.shared.metrics.inc(Counter::Resets);
    }
    for msg in &page.events {
        let frame = match form {
            Form::Sse => msg.sse.clone(),
            Form::WsDeflate(window) => {
                let (frame, made) = msg.ws_deflated(window);
                if made {
                    out.shared.metrics.inc(Counter::DeflateEncoded);
                }
                frame.clone()
            }
            Form::Ws | Form::Poll => msg.ws.clone(),
        };
        out.send(frame);
    }
    out.shared
        .metrics
        .add(Counter::Replayed, page.events.len() as u64);
    if page.caught_up.is_none() {
        out.ctx.notify_drain(out.id);
    }
}

/// The connection drained: queue the next page of its replay, if one is streaming.
pub(super) fn on_drain<H: Handler>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    form: Form,
    conn_topics: &ConnTopics,
    replaying: &mut Option<Box<Replaying>>,
) {
    let sub = Sub { id: out.id, form };
    let requested = replaying.as_ref().map(|r| r.requested.clone());
    if let Some(page) = subs.next_page(out.shared, sub, conn_topics, replaying) {
        send_page(out, form, &page, requested.as_deref().unwrap_or(""));
    }
}
