//! Long polling, the fallback for networks that break streaming: `GET
//! /poll?topic=t[&topic=u][&since=ID]` answers with the held messages newer than `since`, or,
//! when there are none, holds the request until a message arrives or `poll_timeout` passes.
//! The answer is one JSON object with a `Content-Length`; the connection is kept for the next
//! poll.
//!
//! Same rules as an SSE stream: the same credentials and topic rights (`sse::authorize`), the
//! same resume points (`sse::resume_point`, so an id of another lifetime or beyond the history
//! gets `reset`), pages of at most `read_pause_bytes` like replay. A held poll is a connection
//! in `State::Poll`, subscribed like a stream but sent nothing: the messages that reach it are
//! collected by `subscribe::Subscriptions::deliver` and the answer is written from the
//! connection's own callback (`dispatch`), which returns it to HTTP.
//!
//! Timer: while held, the end of `poll_timeout` (or of the token its topics needed, if
//! sooner); then the empty answer.

use bytes::Bytes;

use super::auth::{Clock, Cors};
use super::metrics::Counter;
use super::out::Out;
use super::shared::{Form, Sub};
use super::sse::{authorize, resume_point};
use super::subscribe::{PollStart, Ready, Subscriptions};
use crate::engine::Handler;
use crate::hub::{self, ConnTopics, EventId, HubError, Message, ReplayPage};
use crate::proto::http1::{self, RequestHead};

/// A held poll.
pub(super) struct PollWait {
    pub topics: ConnTopics,
    /// Every message on the poll's topics up to this sequence number was answered before
    /// or reported lost: the `last_id` of an empty answer.
    after: u64,
    /// Answer with `Connection: close` (the request asked for it).
    pub close: bool,
    http10_keep_alive: bool,
    cors: Cors,
}

const FIELDS: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
];

/// Answer `GET /poll`: refuse it, answer it from the history, or hold it. `Some` when held
/// (the connection becomes `State::Poll`). `close`: the request does not keep the connection.
pub(super) fn start<H: Handler>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    head: &RequestHead,
    close: bool,
) -> Option<PollWait> {
    let shared = out.shared;
    let cfg = &shared.config;
    if shared.cluster.is_some() {
        // Polls read the local history and are not known to the cluster's subscription
        // thread; until they are, a clear refusal beats a poll that never hears anything.
        out.refuse(501, "long polling is not available in cluster mode\n");
        return None;
    }
    let mut topics: Vec<String> = Vec::new();
    let mut since = None;
    for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
        match &*k {
            "topic" if !topics.iter().any(|t| *t == v) => {
                // Checked while reading so that a flood of names is refused at the first one
                // over the limit, not collected.
                if topics.len() == cfg.topics_per_conn_max {
                    let e = HubError::TooManyTopics {
                        limit: cfg.topics_per_conn_max,
                    };
                    out.refuse(400, &format!("{e}\n"));
                    return None;
                }
                topics.push(v.into_owned())
            }
            "since" => since = Some(v.into_owned()),
            _ => {}
        }
    }
    if topics.is_empty() {
        out.refuse(400, "missing ?topic=\n");
        return None;
    }
    for topic in &topics {
        if let Err(e) = hub::validate_topic(topic) {
            out.refuse(e.status(), &format!("{e}\n"));
            return None;
        }
    }
    let (resume, requested) = resume_point(out, since.as_deref(), "since")?;
    let clock = Clock::read(out.now_ms());
    let token_end_ms = match authorize(out, head, &topics, clock) {
        Ok(end) => end,
        Err(e) => {
            out.deny(&e);
            return None;
        }
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let sub = Sub {
        id: out.id,
        form: Form::Poll,
    };
    let mut conn_topics = ConnTopics::new();
    match subs.subscribe_poll(shared, sub, &mut conn_topics, &names, resume) {
        Err(e) => {
            out.refuse(e.status(), &format!("{e}\n"));
            None
        }
        Ok(PollStart::Answer(page)) => {
            answer_page(out, &page, requested, close);
            None
        }
        Ok(PollStart::Wait { after }) => {
            let end = (out.now_ms() + cfg.poll_timeout.0).min(token_end_ms);
            out.set_timer(end);
            Some(PollWait {
                topics: conn_topics,
                after,
                close,
                http10_keep_alive: out.http10_keep_alive,
                cors: out.cors,
            })
        }
    }
}

/// A page from the history: its messages, the reset notice if it found a gap, and the id to
/// poll from next.
fn answer_page<H: Handler>(
    out: &mut Out<'_, '_, H>,
    page: &ReplayPage,
    requested: &str,
    close: bool,
) {
    let reset = (!page.gaps.is_empty()).then(|| {
        out.shared.metrics.inc(Counter::Resets);
        let oldest = page.gaps.iter().map(|g| g.oldest_held).max().unwrap_or(0);
        (oldest, requested)
    });
    // Caught up: every message on the topics up to the newest id was in the page or lost.
    // Otherwise the next poll continues after the page's last message.
    let last = page
        .caught_up
        .or_else(|| page.events.last().map(|m| m.id))
        .unwrap_or(0);
    out.shared
        .metrics
        .add(Counter::Replayed, page.events.len() as u64);
    answer(out, &page.events, reset, last, close);
}

/// Answer the held poll `wait`: with the live messages that reached it, or empty (timeout,
/// token end, shutdown). The caller unsubscribes it and returns the connection to HTTP.
pub(super) fn answer_held<H: Handler>(
    out: &mut Out<'_, '_, H>,
    wait: &PollWait,
    ready: Option<Ready>,
) {
    out.cors = wait.cors;
    out.http10_keep_alive = wait.http10_keep_alive;
    let messages = ready.map(|r| r.messages).unwrap_or_default();
    let last = messages.last().map_or(wait.after, |m| m.id);
    answer(out, &messages, None, last, wait.close);
}

/// `{"messages":[M,...],"last_id":"E-N"[,"reset":{"oldest":"O","requested":"I"}]}`, each `M`
/// the message's shared JSON (`Message::json`), queued without a copy.
fn answer<H: Handler>(
    out: &mut Out<'_, '_, H>,
    messages: &[std::sync::Arc<Message>],
    reset: Option<(u64, &str)>,
    last: u64,
    close: bool,
) {
    static OPEN: Bytes = Bytes::from_static(br#"{"messages":["#);
    static COMMA: Bytes = Bytes::from_static(b",");
    let epoch = out.shared.epoch();
    let id = |seq| EventId { epoch, seq };
    let mut parts = Vec::with_capacity(2 * messages.len() + 2);
    parts.push(OPEN.clone());
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            parts.push(COMMA.clone());
        }
        parts.push(m.json());
    }
    let mut tail = Vec::with_capacity(96);
    tail.extend_from_slice(br#"],"last_id":""#);
    id(last).write(&mut tail);
    tail.push(b'"');
    if let Some((oldest, requested)) = reset {
        tail.extend_from_slice(br#","reset":{"oldest":""#);
        id(oldest).write(&mut tail);
        // `requested` passed `parse_resume`: digits and one '-', nothing to escape.
        debug_assert!(requested.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
        tail.extend_from_slice(br#"","requested":""#);
        tail.extend_from_slice(requested.as_bytes());
        tail.extend_from_slice(br#""}"#);
    }
    tail.push(b'}');
    parts.push(Bytes::from(tail));
    out.respond_parts(200, FIELDS, &parts, close);
}
