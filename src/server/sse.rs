//! An SSE stream: the request (`?topic=` list, `Last-Event-ID` header or `lastEventId` query),
//! the subscription with its replay, the response head and `retry:` hint, heartbeat comments,
//! and the optional stream lifetime. SSE responses are close-delimited: the stream ends when
//! the server closes the connection.
//!
//! Who may subscribe is decided by `auth` before anything is subscribed: a refused stream is
//! answered 401/403 and never starts. A stream whose topics needed its token ends when the
//! token expires (the client comes back with a new one).
//!
//! Timer: the next heartbeat comment, or the end of `sse_stream_lifetime` or of the token, if
//! sooner.

use bytes::Bytes;

use super::auth::{Accept, AuthError, Clock, Credential};
use super::metrics::{CloseKind, Counter};
use super::out::Out;
use super::shared::{Form, Sub};
use super::subscribe::{send_page, Replaying, Subscriptions};
use crate::engine::Handler;
use crate::hub::{parse_resume, ConnTopics, HubError, Resume};
use crate::proto::http1::{self, RequestHead};

/// Payload of every SSE heartbeat: a comment line, ignored by clients, that keeps proxies and
/// NATs from timing out an idle stream.
static HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

pub(super) struct SseStream {
    pub topics: ConnTopics,
    /// The replay still streaming, if any (see `subscribe`).
    pub replaying: Option<Box<Replaying>>,
    /// `now_ms` at which the server ends the stream (lifetime or token); `u64::MAX` = never.
    end_ms: u64,
    /// `now_ms` at which the token the stream's topics needed expires; `u64::MAX` = never.
    token_end_ms: u64,
}

/// The resume point a client sent (`Last-Event-ID` for a stream, `since` for a poll), read
/// against this run's epoch, with the trimmed text for a reset notice. A malformed one is
/// answered 400 naming `field`: `None` then.
pub(super) fn resume_point<'t, H: Handler>(
    out: &mut Out<'_, '_, H>,
    text: Option<&'t str>,
    field: &str,
) -> Option<(Option<Resume>, &'t str)> {
    let requested = text.map_or("", str::trim);
    match parse_resume(requested, out.shared.epoch()) {
        Ok(resume) => Some((resume, requested)),
        Err(e) => {
            out.refuse(400, &format!("bad {field}: {e}\n"));
            None
        }
    }
}

/// Answer `GET /sse`: subscribe, queue the head, the replay, and arm the heartbeat. `None`
/// when the request was refused (the answer is queued and the connection is closing).
///
/// With `system`, the stream is of that system topic alone (`GET /status/events`), whatever
/// `?topic=` says; the caller has decided who may, so no credential is asked for.
pub(super) fn start<H: Handler>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    head: &RequestHead,
    system: Option<&str>,
) -> Option<SseStream> {
    let shared = out.shared;
    let cfg = &shared.config;
    let mut topics: Vec<String> = Vec::new();
    let mut resume = None;
    for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
        match &*k {
            "topic" if !topics.iter().any(|t| *t == v) => topics.push(v.into_owned()),
            "lastEventId" => resume = Some(v.into_owned()),
            _ => {}
        }
    }
    // The header is what a browser sends on reconnect, so it wins over the query value that
    // stays in the original URL.
    if let Some(h) = head.header("last-event-id") {
        resume = Some(String::from_utf8_lossy(h).into_owned());
    }
    if let Some(topic) = system {
        topics = vec![topic.to_owned()];
    }
    if topics.is_empty() {
        out.refuse(400, "missing ?topic=\n");
        return None;
    }
    if topics.len() > cfg.topics_per_conn_max {
        let e = HubError::TooManyTopics {
            limit: cfg.topics_per_conn_max,
        };
        out.refuse(400, &format!("{e}\n"));
        return None;
    }
    let clock = Clock::read(out.now_ms());
    let token_end_ms = match system {
        Some(_) => u64::MAX,
        None => match authorize(out, head, &topics, clock) {
            Ok(end) => end,
            Err(e) => {
                out.deny(&e);
                return None;
            }
        },
    };
    let (resume, requested) = resume_point(out, resume.as_deref(), "Last-Event-ID")?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut conn_topics = ConnTopics::new();
    let sub = Sub {
        id: out.id,
        form: Form::Sse,
    };
    let mut replaying = None;
    let resume = resume.map(|r| (r, requested));
    let mut buf = Vec::with_capacity(192);
    let mut fields = Vec::with_capacity(3);
    shared.auth.cors_fields(out.cors, &mut fields);
    http1::write_sse_response_head(&mut buf, &fields);
    crate::proto::sse::write_retry(&mut buf, cfg.sse_retry.0);
    crate::proto::sse::write_end(&mut buf);
    let head = Bytes::from(buf);
    // In cluster mode the head goes out with the first page from Redis (see `subscribe`);
    // a system topic is this node's own, subscribed locally.
    let local = system.is_some() || shared.cluster.is_none();
    let cluster_head = (!local).then(|| head.clone());
    let first_page = match subs.subscribe_in_mode(
        shared,
        sub,
        &mut conn_topics,
        &names,
        resume,
        &mut replaying,
        cluster_head,
        system.is_some(),
    ) {
        Ok(r) => r,
        Err(e) => {
            out.refuse(e.status(), &format!("{e}\n"));
            return None;
        }
    };
    if local {
        out.send(head);
    }
    if let Some(page) = first_page {
        send_page(out, Form::Sse, &page, requested);
    }
    let lifetime = cfg.sse_stream_lifetime.0;
    let now = out.now_ms();
    let end_ms = if lifetime == 0 {
        u64::MAX
    } else {
        now + lifetime
    }
    .min(token_end_ms);
    let next = (now + cfg.heartbeat_interval.0).min(end_ms);
    out.set_timer(next);
    Some(SseStream {
        topics: conn_topics,
        replaying,
        end_ms,
        token_end_ms,
    })
}

/// May this request subscribe to `topics`? Returns when the stream must end for its token
/// (`u64::MAX` when no topic needed one). A ticket is used up here.
pub(super) fn authorize<H: Handler>(
    out: &Out<'_, '_, H>,
    head: &RequestHead,
    topics: &[String],
    clock: Clock,
) -> Result<u64, AuthError> {
    let auth = &out.shared.auth;
    let grant = auth.authenticate(Credential::of(head, Accept::Any, auth.cookie()), clock)?;
    let mut needed = false;
    for topic in topics {
        needed |= auth.may_subscribe(grant.as_ref(), topic, clock.now_ms)?;
    }
    Ok(match grant {
        Some(g) if needed => g.expires_ms,
        _ => u64::MAX,
    })
}

/// The stream's timer: end it (the browser reconnects with Last-Event-ID) or send a heartbeat.
pub(super) fn on_timer<H: Handler>(out: &mut Out<'_, '_, H>, sse: &SseStream) {
    let now = out.now_ms();
    if now >= sse.token_end_ms {
        return out.close(CloseKind::TokenExpired);
    }
    if now >= sse.end_ms {
        return out.close(CloseKind::Done);
    }
    out.send(HEARTBEAT.clone());
    out.shared.metrics.inc(Counter::Heartbeats);
    let next = (now + out.shared.config.heartbeat_interval.0).min(sse.end_ms);
    out.set_timer(next);
}
