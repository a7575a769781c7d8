//! The whole publish, over HTTP (`POST /publish`: authorisation, the body by Content-Length or
//! chunked, bounded by `publish_bytes_max`, the UTF-8 check) and over WebSocket (`{"op":
//! "publish"}`, allowed by `ws_publish` and the connection's grant), ending in the one call
//! that publishes: [`publish`]. Who may publish is decided by `auth`; this file asks it.
//!
//! Ordering: [`publish`] assigns the id and posts the message to every worker (this one
//! included) under one hold of the hub lock, so every worker's inbox holds messages in id
//! order, and the engine drains an inbox in push order (see `engine::Ctx::post`).
//!
//! Cluster mode: [`to_cluster`] checks the message and queues it for Redis; the answer comes
//! back later (`cluster::ClusterEvent::Published`) and [`answer`] sends it. Redis assigns the
//! id, and live delivery comes back through the node's pubsub connection like any other
//! node's publish.

use std::sync::Arc;

use super::auth::{Accept, AuthError, Clock, Credential, Grant};
use super::body::BodyReader;
use super::cluster::Unavailable;
use super::metrics::Counter;
use super::out::{Out, JSON, TEXT};
use super::shared::{Shared, WorkerMsg};
use crate::engine::{Ctx, Handler};
use crate::hub::{self, EventId, HubError};
use crate::proto::http1::{self, RequestHead};

/// A publish whose body is still arriving.
pub(super) struct PendingPublish {
    body: BodyReader,
    topic: String,
    event: Option<String>,
    close: bool,
}

/// Publish and hand the message to every worker. Returns the id.
pub(super) fn publish<H: Handler<Msg = WorkerMsg>>(
    shared: &Shared,
    ctx: &mut Ctx<'_, H>,
    topic: &str,
    event: Option<&str>,
    data: &str,
) -> Result<EventId, HubError> {
    let mut hub = shared.hub();
    let msg = hub.publish(topic, event, data)?;
    for w in 0..ctx.workers() {
        ctx.post(w, WorkerMsg::Deliver(Arc::clone(&msg)));
    }
    drop(hub);
    shared.metrics.inc(Counter::Published);
    Ok(msg.event_id())
}

/// `POST /publish` head: parse the query, authorise, set up the body reader. Returns the
/// pending publish while a body is to come; `None` once answered (refused, or an empty body
/// published at once).
pub(super) fn begin<H: Handler<Msg = WorkerMsg>>(
    out: &mut Out<'_, '_, H>,
    head: &RequestHead,
) -> Option<Box<PendingPublish>> {
    let mut topic = None;
    let mut event = None;
    for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
        match &*k {
            "topic" if topic.is_none() => topic = Some(v.into_owned()),
            "topic" => {
                out.refuse(400, "publish takes exactly one topic\n");
                return None;
            }
            "event" => event = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(topic) = topic else {
        out.refuse(400, "missing ?topic=\n");
        return None;
    };
    // Authorisation comes before a byte of the body is read. A refusal closes the connection
    // because the body is left unread.
    if let Err(e) = authorize_http(out, head, &topic) {
        out.deny(&e);
        return None;
    }
    let body = out.begin_body(head, &out.shared.http_limits)?;
    let close = !head.keep_alive();
    let mut slot = Some(Box::new(PendingPublish {
        body,
        topic,
        event,
        close,
    }));
    // A body that is complete already (none, or empty) is published now.
    body_step(out, &mut slot, &[]);
    slot
}

/// Feed body bytes to the pending publish; publishes when the body is complete
/// (`done`: the dispatcher then drops it).
pub(super) fn body_step<H: Handler<Msg = WorkerMsg>>(
    out: &mut Out<'_, '_, H>,
    slot: &mut Option<Box<PendingPublish>>,
    input: &[u8],
) -> (usize, bool) {
    out.read_body(slot, input, |p| &mut p.body, finish)
}

fn finish<H: Handler<Msg = WorkerMsg>>(out: &mut Out<'_, '_, H>, p: PendingPublish) {
    let data = p.body.into_data();
    let Ok(data) = std::str::from_utf8(&data) else {
        let msg = b"body must be UTF-8 text (SSE carries only text)\n";
        return out.respond(400, TEXT, msg, p.close);
    };
    if out.shared.cluster.is_some() {
        let (id, w) = (out.id, out.ctx.worker_index());
        return match to_cluster(out.shared, w, id, false, &p.topic, p.event.as_deref(), data) {
            Ok(()) => out.awaiting_publish = Some(p.close),
            Err(PublishError::Hub(e)) => {
                let body = format!("{e}\n");
                out.respond(e.status(), TEXT, body.as_bytes(), p.close)
            }
            Err(PublishError::Unavailable(Unavailable(why))) => {
                out.respond(503, TEXT, format!("{why}\n").as_bytes(), p.close)
            }
        };
    }
    match publish(out.shared, out.ctx, &p.topic, p.event.as_deref(), data) {
        Ok(msg_id) => {
            let body = format!("{{\"id\":\"{msg_id}\"}}");
            out.respond(200, JSON, body.as_bytes(), p.close)
        }
        Err(e) => {
            let body = format!("{e}\n");
            out.respond(e.status(), TEXT, body.as_bytes(), p.close)
        }
    }
}

/// Why a cluster publish was not queued.
pub(super) enum PublishError {
    Hub(HubError),
    Unavailable(Unavailable),
}

/// Cluster mode: check the message as the hub would, and queue it for Redis.
pub(super) fn to_cluster(
    shared: &Shared,
    worker: usize,
    conn: crate::engine::ConnId,
    ws: bool,
    topic: &str,
    event: Option<&str>,
    data: &str,
) -> Result<(), PublishError> {
    let cluster = shared.cluster.as_ref().expect("cluster mode");
    hub::validate_topic(topic).map_err(PublishError::Hub)?;
    hub::validate_event(event, &hub::HubLimits::default()).map_err(PublishError::Hub)?;
    let limit_bytes = shared.config.publish_bytes_max.0;
    if data.len() > limit_bytes {
        return Err(PublishError::Hub(HubError::DataTooLarge { limit_bytes }));
    }
    cluster
        .publish(worker, conn, ws, topic, event, data)
        .map_err(PublishError::Unavailable)
}

/// Cluster mode: Redis answered the HTTP publish this connection waits for.
pub(super) fn answer<H: Handler>(
    out: &mut Out<'_, '_, H>,
    result: Result<EventId, Unavailable>,
    close: bool,
) {
    match result {
        Ok(id) => {
            out.shared.metrics.inc(Counter::Published);
            let body = format!("{{\"id\":\"{id}\"}}");
            out.respond(200, JSON, body.as_bytes(), close)
        }
        Err(Unavailable(why)) => out.respond(503, TEXT, format!("{why}\n").as_bytes(), close),
    }
}

/// May this HTTP request publish to `topic`? With `publish_open`, always; otherwise the
/// publish key or a JWT whose `publish` claim covers the topic, from the `Authorization`
/// header or `?token=` (never the cookie: a browser attaches it to cross-site posts).
fn authorize_http<H: Handler>(
    out: &Out<'_, '_, H>,
    head: &RequestHead,
    topic: &str,
) -> Result<(), AuthError> {
    let auth = &out.shared.auth;
    if auth.publish_open() {
        return Ok(());
    }
    let clock = Clock::read(out.now_ms());
    let credential = Credential::of(head, Accept::HeaderOrQuery, None);
    let grant = auth.authenticate(credential, clock)?;
    auth.may_publish(grant.as_ref(), topic, clock.now_ms)
}

/// `{"op":"publish"}` from a WebSocket client: allowed by `ws_publish`, and then only with
/// `publish_open` or a live `grant` (from the upgrade request, or a `refresh`) whose publish
/// scope covers the topic. Returns the id, or the error text for the client's `error` message;
/// in cluster mode `None`: the `published` answer is sent when Redis has the message.
pub(super) fn from_ws<H: Handler<Msg = WorkerMsg>>(
    shared: &Shared,
    ctx: &mut Ctx<'_, H>,
    conn: crate::engine::ConnId,
    grant: Option<&Grant>,
    topic: &str,
    event: Option<&str>,
    data: &str,
) -> Result<Option<EventId>, String> {
    if !shared.config.ws_publish {
        return Err("publishing over WebSocket is off (server flag --ws-publish)".to_owned());
    }
    shared
        .auth
        .may_publish(grant, topic, ctx.now_ms())
        .map_err(|e| format!("publishing refused: {e}"))?;
    if shared.cluster.is_some() {
        return match to_cluster(shared, ctx.worker_index(), conn, true, topic, event, data) {
            Ok(()) => Ok(None),
            Err(PublishError::Hub(e)) => Err(e.to_string()),
            Err(PublishError::Unavailable(Unavailable(why))) => Err(why),
        };
    }
    publish(shared, ctx, topic, event, data)
        .map(Some)
        .map_err(|e| e.to_string())
}
