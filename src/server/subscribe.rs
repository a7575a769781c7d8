//! What a subscriber receives: one worker's subscriptions, the replay that precedes live
//! messages, live fan-out, and the slow-consumer cut. SSE, WebSocket (plain or deflated) and
//! held polls differ only in which encoded form of a message they take (`Sub::form`).
//!
//! Replay streams: a resuming subscription is registered held back (no live message passes
//! it), and the replay is sent a page at a time, the next page when the connection's queue has
//! drained (`on_drain`), so a client that needs 10,000 held messages gets them all under the
//! same queue bound as live delivery, and the hub lock is held for one page at a time. The
//! page that catches up moves the watermark to the last id assigned, under the same lock hold;
//! see the `hub` module doc for why that switch has no gap and no duplicate.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::cluster::{resume_point, Cluster, EpochCheck, Page, PageReq, Unavailable};
use super::metrics::{CloseKind, Counter};
use super::out::Out;
use super::presence::Shard;
use super::shared::{Form, Shared, Sub};
use super::tls::{self, Sessions};
use crate::engine::{ConnId, Ctx, Handler};
use crate::hub::{
    self, ConnTopics, EventId, HubError, LocalIndex, Message, ReplayCursor, ReplayPage, Resume,
    Topics,
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
    /// Cluster mode: replays through Redis and publishes waiting for Redis.
    cluster: ClusterLocal,
    /// This worker's index (the side threads post answers to it).
    pub worker: usize,
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

/// One worker's cluster-mode state, keyed by connection.
#[derive(Default)]
struct ClusterLocal {
    replays: HashMap<ConnId, ClusterReplay>,
    /// Answers from Redis to HTTP publishes, waiting for their connection's `on_data`.
    answers: HashMap<ConnId, Result<EventId, Unavailable>>,
    /// Replays that caught up at watermark `W` on these topics: live messages up to `W`
    /// still on their way (posted before the page was read, drained after it) are skipped
    /// here until the connection's next callback moves the index's watermark to `W`
    /// ([`Subscriptions::apply_floor`]).
    floors: HashMap<ConnId, (u64, Vec<Arc<str>>)>,
}

/// A subscription start in cluster mode: pages come from Redis (asked for on drain), and
/// the connection's live messages wait in `buffer` until the last page's watermark says which
/// of them the pages already carried.
struct ClusterReplay {
    form: Form,
    /// The SSE response head, sent with the first page: a client that sees the head is
    /// subscribed in Redis, so it misses nothing published after that.
    head: Option<Bytes>,
    requested: Box<str>,
    cursor: Vec<(Arc<str>, Option<u64>)>,
    check: EpochCheck,
    buffer: Vec<Arc<Message>>,
    buffer_bytes: usize,
    in_flight: bool,
    /// Topics joined the cursor while a page was being read: one more page before going live.
    dirty: bool,
}

impl ClusterReplay {
    /// The request for this replay's next page from Redis.
    fn page_req(&self, worker: usize, conn: ConnId, page_bytes: usize) -> PageReq {
        PageReq {
            worker,
            conn,
            topics: self.cursor.clone(),
            epoch: self.check,
            page_bytes,
            ws: self.form.json(),
        }
    }
}

/// Why a cluster subscription did not start.
pub(super) enum SubscribeError {
    Hub(HubError),
    Unavailable(Unavailable),
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Hub(e) => e.fmt(f),
            SubscribeError::Unavailable(Unavailable(why)) => f.write_str(why),
        }
    }
}

impl SubscribeError {
    pub fn status(&self) -> u16 {
        match self {
            SubscribeError::Hub(e) => e.status(),
            SubscribeError::Unavailable(_) => 503,
        }
    }
}

impl Subscriptions {
    /// Subscribe in either mode: locally ([`Subscriptions::subscribe`], the first replay page
    /// returned) or through the cluster (pages and `head` follow from Redis; `None` here).
    /// System topics (`system`: the server's own routes, which decided who may) are this
    /// node's own and always local ([`Subscriptions::subscribe_any`]).
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe_in_mode(
        &mut self,
        shared: &Shared,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume: Option<(Resume, &str)>,
        replaying: &mut Option<Box<Replaying>>,
        head: Option<Bytes>,
        system: bool,
    ) -> Result<Option<ReplayPage>, SubscribeError> {
        match &shared.cluster {
            _ if system => self
                .subscribe_any(shared, sub, conn_topics, topics, resume, replaying)
                .map_err(SubscribeError::Hub),
            Some(c) => {
                let requested = resume.map(|(_, text)| text);
                self.subscribe_cluster(c, shared, sub, conn_topics, topics, requested, head)
                    .map(|()| None)
            }
            None => self
                .subscribe(shared, sub, conn_topics, topics, resume, replaying)
                .map_err(SubscribeError::Hub),
        }
    }

    pub fn new(topics_per_conn_max: usize, counts: Shard) -> Subscriptions {
        Subscriptions {
            index: LocalIndex::new(topics_per_conn_max),
            counts,
            pending_close: HashMap::new(),
            ready: HashMap::new(),
            cluster: ClusterLocal::default(),
            worker: 0,
        }
    }

    /// Cluster mode: subscribe `sub` to `topics` and ask Redis for the first page (the
    /// replay after `resume`, or just the watermark for a fresh subscription). `head` (SSE)
    /// is sent with that page. Live messages are buffered until the replay caught up.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe_cluster(
        &mut self,
        cluster: &Cluster,
        shared: &Shared,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume: Option<&str>,
        head: Option<Bytes>,
    ) -> Result<(), SubscribeError> {
        let mut added: Vec<Arc<str>> = Vec::with_capacity(topics.len());
        for topic in topics {
            match self.index.subscribe(conn_topics, sub, topic, 0) {
                Ok(hub::Subscribed::Added) => added.push(Arc::from(*topic)),
                Ok(hub::Subscribed::Already) => {}
                Err(e) => {
                    for topic in added {
                        self.index.unsubscribe(conn_topics, sub, &topic);
                    }
                    return Err(SubscribeError::Hub(e));
                }
            }
        }
        {
            let mut counts = self.counts.lock();
            for topic in &added {
                counts.add(topic);
            }
        }
        if added.is_empty() && head.is_none() {
            return Ok(());
        }
        let (check, after) = match resume {
            None => (EpochCheck::Any, None),
            Some(text) => resume_point(text),
        };
        let page_bytes = shared.config.read_pause_bytes();
        let created = !self.cluster.replays.contains_key(&sub.id);
        let r = self
            .cluster
            .replays
            .entry(sub.id)
            .or_insert_with(|| ClusterReplay {
                form: sub.form,
                head,
                requested: resume.unwrap_or("").into(),
                cursor: Vec::new(),
                check,
                buffer: Vec::new(),
                buffer_bytes: 0,
                in_flight: false,
                dirty: false,
            });
        for t in &added {
            r.cursor.push((Arc::clone(t), after));
        }
        let then = if r.in_flight {
            r.dirty = true;
            None
        } else {
            r.in_flight = true;
            Some(r.page_req(self.worker, sub.id, page_bytes))
        };
        if let Err(e) = cluster.want(added.clone(), then) {
            let mut counts = self.counts.lock();
            for topic in &added {
                self.index.unsubscribe(conn_topics, sub, topic);
                counts.remove(topic);
            }
            drop(counts);
            if created {
                self.cluster.replays.remove(&sub.id);
            } else if let Some(r) = self.cluster.replays.get_mut(&sub.id) {
                r.cursor.retain(|(t, _)| !added.contains(t));
            }
            return Err(SubscribeError::Unavailable(e));
        }
        Ok(())
    }

    /// Cluster mode: a replay of `sub` caught up; from now on the index itself skips what the
    /// replay carried (as in single-node mode), so the per-message check can go.
    pub fn apply_floor(&mut self, sub: Sub, conn_topics: &ConnTopics) {
        if self.cluster.floors.is_empty() {
            return;
        }
        if let Some((w, topics)) = self.cluster.floors.remove(&sub.id) {
            for t in &topics {
                self.index.set_watermark(conn_topics, sub, t, w);
            }
        }
    }

    /// Cluster mode: whether `id`'s SSE head still waits for its first page (no heartbeat
    /// may go out before it).
    pub fn head_pending(&self, id: ConnId) -> bool {
        self.cluster
            .replays
            .get(&id)
            .is_some_and(|r| r.head.is_some())
    }

    /// Cluster mode: Redis answered the HTTP publish of `id`; its `on_data` takes it.
    pub fn set_answer(&mut self, id: ConnId, result: Result<EventId, Unavailable>) {
        self.cluster.answers.insert(id, result);
    }

    pub fn take_answer(&mut self, id: ConnId) -> Option<Result<EventId, Unavailable>> {
        self.cluster.answers.remove(&id)
    }

    /// Cluster mode: a page from Redis for `id`. Sends the head (first page), the reset
    /// notices, the events; then asks for the next page on drain, or, on the last page,
    /// sends the buffered live messages above its watermark and lets live ones through.
    pub fn cluster_page<H: Handler>(
        &mut self,
        shared: &Shared,
        cluster: &Cluster,
        ctx: &mut Ctx<'_, H>,
        id: ConnId,
        result: Result<Page, Unavailable>,
    ) {
        let Some(r) = self.cluster.replays.get_mut(&id) else {
            return; // closed meanwhile
        };
        r.in_flight = false;
        let page = match result {
            Ok(p) => p,
            Err(Unavailable(why)) => {
                let r = self.cluster.replays.remove(&id).expect("found above");
                tracing::debug!("cluster: replay for a subscriber failed: {why}");
                // The client comes back (EventSource after `retry`, a WebSocket client on
                // 1013) and resumes where it was; an SSE head goes out first so that a
                // browser retries rather than gives up on an error status.
                self.pending_close.insert(id, CloseKind::ClusterUnavailable);
                if r.form.json() {
                    let frame = crate::proto::ws::ControlFrame::close(
                        Some(crate::proto::ws::close_code::TRY_AGAIN_LATER),
                        "cluster: Redis unavailable",
                        None,
                    );
                    ctx.send(id, Bytes::copy_from_slice(frame.as_bytes()));
                } else if let Some(head) = r.head {
                    ctx.send(id, head);
                }
                ctx.close(id);
                return;
            }
        };
        if let Some(head) = r.head.take() {
            ctx.send(id, head);
        }
        if page.foreign && r.cursor.iter().any(|(_, a)| matches!(a, Some(n) if *n > 0)) {
            // The client's id is of another epoch, so the page read after a number that means
            // nothing now: read again from the oldest held, with the reset (as for a bare id).
            for (_, after) in &mut r.cursor {
                if let Some(a) = after {
                    *a = 0;
                }
            }
            r.check = EpochCheck::Foreign;
            ctx.notify_drain(id);
            return;
        }
        let oldest = |p: &Page| {
            p.events.first().map_or(
                EventId {
                    epoch: p.epoch,
                    seq: p.through + 1,
                },
                |m| m.event_id(),
            )
        };
        if page.foreign || !page.gaps.is_empty() {
            let requested = r.requested.clone();
            if r.form.json() {
                if page.foreign {
                    for (t, _) in &r.cursor {
                        ctx.send(id, hub::ws_reset(t, oldest(&page), &requested));
                    }
                } else {
                    for (t, seq) in &page.gaps {
                        let at = EventId {
                            epoch: page.epoch,
                            seq: *seq,
                        };
                        ctx.send(id, hub::ws_reset(t, at, &requested));
                    }
                }
            } else {
                let at = match page.gaps.iter().map(|g| g.1).max() {
                    Some(seq) if !page.foreign => EventId {
                        epoch: page.epoch,
                        seq,
                    },
                    _ => oldest(&page),
                };
                ctx.send(id, hub::sse_reset(at, &requested));
            }
            shared.metrics.inc(Counter::Resets);
        }
        for m in &page.events {
            ctx.send(id, wire(r.form, m));
        }
        shared
            .metrics
            .add(Counter::Replayed, page.events.len() as u64);
        r.check = EpochCheck::Paging(page.epoch);
        match page.caught_up {
            Some(w) if !r.dirty => {
                let r = self.cluster.replays.remove(&id).expect("found above");
                let topics = r.cursor.iter().map(|(t, _)| Arc::clone(t)).collect();
                self.cluster.floors.insert(id, (w, topics));
                ctx.redeliver(id);
                let mut sent = 0u64;
                for m in r.buffer {
                    if m.id > w {
                        sent += u64::from(ctx.send(id, wire(r.form, &m)));
                    }
                }
                shared.metrics.add(Counter::Delivered, sent);
            }
            _ => {
                for (_, after) in &mut r.cursor {
                    if let Some(a) = after {
                        *a = (*a).max(page.through);
                    }
                }
                if r.dirty {
                    // New topics joined: their page must come after their SUBSCRIBE.
                    r.dirty = false;
                    r.in_flight = true;
                    let req = r.page_req(self.worker, id, shared.config.read_pause_bytes());
                    if let Err(e) = cluster.want(Vec::new(), Some(req)) {
                        self.cluster_page(shared, cluster, ctx, id, Err(e));
                    }
                } else {
                    ctx.notify_drain(id);
                }
            }
        }
    }

    /// Cluster mode: `id` drained; ask Redis for its next page, if a replay waits for one.
    pub fn cluster_next<H: Handler>(
        &mut self,
        shared: &Shared,
        cluster: &Cluster,
        ctx: &mut Ctx<'_, H>,
        id: ConnId,
    ) {
        let Some(r) = self.cluster.replays.get_mut(&id) else {
            return;
        };
        if r.in_flight || r.head.is_some() {
            return;
        }
        r.in_flight = true;
        let req = r.page_req(self.worker, id, shared.config.read_pause_bytes());
        if let Err(e) = cluster.next_page(req) {
            self.cluster_page(shared, cluster, ctx, id, Err(e));
        }
    }

    /// Cluster mode: cut the local subscribers of `topic` (all, for `None`); they resume from
    /// the history on reconnect.
    pub fn cluster_cut<H: Handler>(&mut self, ctx: &mut Ctx<'_, H>, topic: Option<&str>) {
        let mut subs: Vec<Sub> = match topic {
            Some(t) => self.index.subscribers(t, u64::MAX).collect(),
            None => self.index.all_keys().collect(),
        };
        subs.sort_unstable_by_key(|s| (s.id.slot, s.id.gen));
        subs.dedup();
        for sub in subs {
            if !ctx.is_open(sub.id) {
                continue;
            }
            self.pending_close.insert(sub.id, CloseKind::ClusterResync);
            if sub.form.json() {
                let frame = crate::proto::ws::ControlFrame::close(
                    Some(close_code::SERVICE_RESTART),
                    "cluster resync: resume with since",
                    None,
                );
                ctx.send(sub.id, Bytes::copy_from_slice(frame.as_bytes()));
                ctx.close(sub.id);
            } else {
                ctx.abort(sub.id);
            }
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
        cluster: Option<&Cluster>,
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
        if let Some(r) = self.cluster.replays.get_mut(&sub.id) {
            r.cursor.retain(|(t, _)| &**t != topic);
        }
        let removed = self.index.unsubscribe(conn_topics, sub, topic);
        if removed {
            self.counts.lock().remove(topic);
        }
        if let (true, Some(cluster)) = (removed, cluster) {
            cluster.drop_topics(vec![Arc::from(topic)]);
        }
        removed
    }

    /// On close: drop every subscription of the connection.
    pub fn unsubscribe_all(
        &mut self,
        cluster: Option<&Cluster>,
        conn_topics: &mut ConnTopics,
        sub: Sub,
    ) {
        if !conn_topics.is_empty() {
            let mut counts = self.counts.lock();
            for topic in conn_topics.topics() {
                counts.remove(topic);
            }
        }
        if let Some(cluster) = cluster {
            self.cluster.replays.remove(&sub.id);
            self.cluster.floors.remove(&sub.id);
            self.cluster.answers.remove(&sub.id);
            cluster.drop_topics(conn_topics.topics().map(Arc::from).collect());
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

    /// On close of a connection that subscribed nothing: forget its cluster answer, if any.
    pub fn forget(&mut self, id: ConnId) {
        self.cluster.answers.remove(&id);
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
        let buffering = !self.cluster.replays.is_empty();
        let floors = !self.cluster.floors.is_empty();
        for sub in self.index.deliveries(msg) {
            if floors {
                if let Some((w, topics)) = self.cluster.floors.get(&sub.id) {
                    if msg.id <= *w && topics.contains(&msg.topic) {
                        continue; // the replay carried it
                    }
                }
            }
            if buffering {
                let replaying = self.cluster.replays.get_mut(&sub.id);
                if let Some(r) = replaying.filter(|r| r.cursor.iter().any(|(t, _)| *t == msg.topic))
                {
                    // Held until the replay's last page; bounded like a send queue.
                    r.buffer_bytes += msg.sse.len().max(msg.ws.len());
                    r.buffer.push(Arc::clone(msg));
                    if r.buffer_bytes > max {
                        slow.push(sub);
                    }
                    continue;
                }
            }
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

/// The bytes of `m` that a subscriber of `form` takes (cluster replay pages and the live
/// messages buffered behind them; `Poll` does not occur in cluster mode).
fn wire(form: Form, m: &Message) -> Bytes {
    match form {
        Form::Sse => m.sse.clone(),
        Form::Ws | Form::Poll => m.ws.clone(),
        Form::WsDeflate(window) => m.ws_deflated(window).0.clone(),
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
        let epoch = out.shared.epoch();
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
    if let (None, Some(cluster)) = (replaying.as_ref(), &out.shared.cluster) {
        // A cluster replay's pages come from Redis; a local one (system topics) from here.
        return subs.cluster_next(out.shared, cluster, out.ctx, out.id);
    }
    let sub = Sub { id: out.id, form };
    let requested = replaying.as_ref().map(|r| r.requested.clone());
    if let Some(page) = subs.next_page(out.shared, sub, conn_topics, replaying) {
        send_page(out, form, &page, requested.as_deref().unwrap_or(""));
    }
}
