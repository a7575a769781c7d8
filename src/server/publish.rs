//! `POST /publish`: authorisation, the body (Content-Length or chunked, bounded by
//! `publish_bytes_max`), UTF-8 check, and the publish itself (see `Worker::publish`).

use super::handler::{Conn, State, Worker, JSON, TEXT};
use crate::engine::{ConnId, Ctx};
use crate::proto::http1::{self, BodyDecoder, RequestHead};
use bytes::Bytes;

pub(super) struct PendingPublish {
    pub(super) body: BodyDecoder,
    pub(super) data: Vec<u8>,
    pub(super) topic: String,
    pub(super) event: Option<String>,
    pub(super) close: bool,
}

impl Worker {
    pub(super) fn begin_publish(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        head: &RequestHead,
    ) {
        // Authorisation comes first, before a byte of the body is read. A refusal closes the
        // connection because the body is left unread.
        if let Err((status, text)) = self.authorize(head) {
            let fields: &[(&str, &str)] = if status == 401 {
                &[("WWW-Authenticate", "Bearer"), TEXT[0]]
            } else {
                TEXT
            };
            return self.respond(ctx, id, conn, status, fields, text.as_bytes(), true);
        }
        let mut topic = None;
        let mut event = None;
        for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
            match &*k {
                "topic" if topic.is_none() => topic = Some(v.into_owned()),
                "topic" => {
                    let msg = b"publish takes exactly one topic\n";
                    return self.respond(ctx, id, conn, 400, TEXT, msg, true);
                }
                "event" => event = Some(v.into_owned()),
                _ => {}
            }
        }
        let Some(topic) = topic else {
            return self.respond(ctx, id, conn, 400, TEXT, b"missing ?topic=\n", true);
        };
        let body = match BodyDecoder::new(head.body(), &self.shared.http_limits) {
            Ok(b) => b,
            Err(e) => return self.http_error(ctx, id, conn, &e),
        };
        if head.expects_continue() {
            ctx.send(id, Bytes::from_static(http1::CONTINUE_RESPONSE));
        }
        let pending = PendingPublish {
            body,
            data: Vec::new(),
            topic,
            event,
            close: !head.keep_alive(),
        };
        if pending.body.is_done() {
            // No body at all: publish empty data now.
            return self.finish_publish(ctx, id, conn, pending);
        }
        let State::Http(http) = &mut conn.state else {
            unreachable!()
        };
        http.publish = Some(Box::new(pending));
    }

    /// `Ok` if this request may publish; else the status and the reason.
    fn authorize(&self, head: &RequestHead) -> Result<(), (u16, &'static str)> {
        match &self.cfg().publish_key {
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
            None if self.shared.keyless_publish_allowed => Ok(()),
            None => Err((
                403,
                "no publish_key is set, so only loopback peers may publish; \
                 this server listens on a non-loopback address: set publish_key\n",
            )),
        }
    }

    pub(super) fn finish_publish(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        p: PendingPublish,
    ) {
        let Ok(data) = std::str::from_utf8(&p.data) else {
            let msg = b"body must be UTF-8 text (SSE carries only text)\n";
            return self.respond(ctx, id, conn, 400, TEXT, msg, p.close);
        };
        match self.publish(ctx, &p.topic, p.event.as_deref(), data) {
            Ok(msg_id) => {
                let body = format!("{{\"id\":{msg_id}}}");
                self.respond(ctx, id, conn, 200, JSON, body.as_bytes(), p.close)
            }
            Err(e) => {
                let body = format!("{e}\n");
                self.respond(ctx, id, conn, e.status(), TEXT, body.as_bytes(), p.close)
            }
        }
    }
}

/// Compare secrets without an early exit, so the time taken does not reveal how many leading
/// bytes of a guessed key were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
