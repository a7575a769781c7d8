//! The whole publish, over HTTP (`POST /publish`: authorisation, the body by Content-Length or
//! chunked, bounded by `publish_bytes_max`, the UTF-8 check) and over WebSocket (`{"op":
//! "publish"}`, allowed by `ws_publish`), ending in the one call that publishes: [`publish`].
//!
//! Ordering: [`publish`] assigns the id and posts the message to every worker (this one
//! included) under one hold of the hub lock, so every worker's inbox holds messages in id
//! order, and the engine drains an inbox in push order (see `engine::Ctx::post`).

use std::sync::Arc;

use bytes::Bytes;

use super::metrics::Counter;
use super::out::{Out, JSON, TEXT};
use super::shared::{Shared, WorkerMsg};
use crate::engine::{Ctx, Handler};
use crate::hub::{EventId, HubError};
use crate::proto::http1::{self, BodyDecoder, BodyEvent, RequestHead};
use crate::proto::Progress;

/// A publish whose body is still arriving.
pub(super) struct PendingPublish {
    body: BodyDecoder,
    data: Vec<u8>,
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

/// `POST /publish` head: authorise, parse the query, set up the body decoder. Returns the
/// pending publish while a body is to come; `None` once answered (refused, or an empty body
/// published at once).
pub(super) fn begin<H: Handler<Msg = WorkerMsg>>(
    out: &mut Out<'_, '_, H>,
    head: &RequestHead,
) -> Option<Box<PendingPublish>> {
    // Authorisation comes first, before a byte of the body is read. A refusal closes the
    // connection because the body is left unread.
    if let Err((status, text)) = authorize_http(out.shared, head) {
        let fields: &[(&str, &str)] = if status == 401 {
            &[("WWW-Authenticate", "Bearer"), TEXT[0]]
        } else {
            TEXT
        };
        out.respond(status, fields, text.as_bytes(), true);
        return None;
    }
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
    let body = match BodyDecoder::new(head.body(), &out.shared.http_limits) {
        Ok(b) => b,
        Err(e) => {
            out.http_error(&e);
            return None;
        }
    };
    if head.expects_continue() {
        out.send(Bytes::from_static(http1::CONTINUE_RESPONSE));
    }
    let pending = PendingPublish {
        body,
        data: Vec::new(),
        topic,
        event,
        close: !head.keep_alive(),
    };
    if pending.body.is_done() {
        finish(out, pending);
        return None;
    }
    Some(Box::new(pending))
}

/// Feed body bytes to the pending publish in `slot`; publishes and empties `slot` when the
/// body is complete. Returns the bytes consumed and whether another step may make progress.
pub(super) fn body_step<H: Handler<Msg = WorkerMsg>>(
    out: &mut Out<'_, '_, H>,
    slot: &mut Option<Box<PendingPublish>>,
    input: &[u8],
) -> (usize, bool) {
    let p = slot.as_mut().expect("body_step without a pending publish");
    match p.body.decode(input) {
        Ok(Progress {
            consumed,
            event: Some(BodyEvent::Data(d)),
        }) => {
            p.data.extend_from_slice(d);
            // A Content-Length body is complete with its last byte: finish now rather than
            // wait for an `End` that needs another (possibly never coming) read.
            let ended = matches!(
                p.body.decode(&[]),
                Ok(Progress {
                    event: Some(BodyEvent::End),
                    ..
                })
            );
            if ended {
                finish(out, *slot.take().expect("checked above"));
            }
            (consumed, true)
        }
        Ok(Progress {
            consumed,
            event: Some(BodyEvent::End),
        }) => {
            finish(out, *slot.take().expect("checked above"));
            (consumed, true)
        }
        Ok(Progress {
            consumed,
            event: None,
        }) => (consumed, false),
        Err(e) => {
            out.http_error(&e);
            (input.len(), false)
        }
    }
}

fn finish<H: Handler<Msg = WorkerMsg>>(out: &mut Out<'_, '_, H>, p: PendingPublish) {
    let Ok(data) = std::str::from_utf8(&p.data) else {
        let msg = b"body must be UTF-8 text (SSE carries only text)\n";
        return out.respond(400, TEXT, msg, p.close);
    };
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

/// `Ok` if this HTTP request may publish; else the status and the reason.
fn authorize_http(shared: &Shared, head: &RequestHead) -> Result<(), (u16, &'static str)> {
    match &shared.config.publish_key {
        Some(key) => {
            let Some(auth) = head.header("authorization") else {
                return Err((401, "publishing needs Authorization: Bearer KEY\n"));
            };
            let given = auth.strip_prefix(b"Bearer ").unwrap_or(b"");
            if constant_time_eq(given, key.as_bytes()) {
                Ok(())
            } else {
                Err((403, "wrong publish key\n"))
            }
        }
        None if shared.keyless_publish_allowed => Ok(()),
        None => Err((
            403,
            "no publish_key is set and this server listens on a non-loopback address, \
             so publishing is refused: set publish_key\n",
        )),
    }
}

/// `{"op":"publish"}` from a WebSocket client: allowed by `ws_publish`. Returns the id, or the
/// error text for the client's `error` message.
pub(super) fn from_ws<H: Handler<Msg = WorkerMsg>>(
    shared: &Shared,
    ctx: &mut Ctx<'_, H>,
    topic: &str,
    event: Option<&str>,
    data: &str,
) -> Result<EventId, String> {
    if !shared.config.ws_publish {
        return Err("publishing over WebSocket is off (server flag --ws-publish)".to_owned());
    }
    publish(shared, ctx, topic, event, data).map_err(|e| e.to_string())
}

/// Compare secrets without an early exit, so the time taken does not reveal how many leading
/// bytes of a guessed key were right.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
