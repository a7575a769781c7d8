//! `Out`: one connection's way out, during one of its own engine callbacks. Every byte the
//! server queues to a connection there — responses, error replies, SSE events, WebSocket
//! frames, goodbyes — goes through [`Out::send`], and every decision to end it through
//! [`Out::close`], which records why (for `uringcast_closed_total`). Live fan-out and the
//! cuts it makes (slow consumers, cluster resyncs) run in `on_msg` for many connections at
//! once, with no `Out`: `subscribe` queues those bytes through the engine (`Ctx::send`, or
//! `tls::send`) and records the close reason itself (`Subscriptions::take_close_reason`).
//!
//! On a TLS connection `Out` holds its rustls session and every byte is encrypted on the way
//! (`tls::send`); callers never know which kind of connection they write to.
//!
//! Never here: parsing, routing, hub access. `Out` is generic over the engine handler so that
//! the behaviour modules (`sse`, `ws`, `publish`, `subscribe`) never name the dispatcher and so
//! never import back up.

use bytes::Bytes;
use rustls::ServerConnection;

use super::auth::{AuthError, Cors};
use super::body::{BodyReader, Read};
use super::metrics::{CloseKind, Counter};
use super::shared::Shared;
use super::tls;
use crate::engine::{ConnId, Ctx, Handler};
use crate::proto::http1::{self, HttpError, HttpLimits, RequestHead};
use crate::proto::ws::ControlFrame;

pub(super) const TEXT: &[(&str, &str)] = &[("Content-Type", "text/plain; charset=utf-8")];
pub(super) const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

/// A connection's output side for the length of one callback.
pub(super) struct Out<'a, 'c, H: Handler> {
    pub ctx: &'a mut Ctx<'c, H>,
    pub id: ConnId,
    pub shared: &'a Shared,
    /// Why the server is closing this connection, once it decided to; `Some` also tells the
    /// dispatcher to stop reading it.
    pub closing: &'a mut Option<CloseKind>,
    /// The request being answered is HTTP/1.0 with `Connection: keep-alive`.
    pub http10_keep_alive: bool,
    /// The CORS fields every answer to the current request carries (`auth::Cors`).
    pub cors: Cors,
    /// The connection's TLS session, on a TLS listener.
    pub tls: Option<&'a mut ServerConnection>,
    /// Cluster mode: a publish went to Redis and its answer is to come (`Some(close)`: the
    /// request asked to close after it). The dispatcher then reads nothing more until it does.
    pub awaiting_publish: Option<bool>,
}

impl<'a, 'c, H: Handler> Out<'a, 'c, H> {
    pub fn new(
        ctx: &'a mut Ctx<'c, H>,
        id: ConnId,
        shared: &'a Shared,
        closing: &'a mut Option<CloseKind>,
        tls: Option<&'a mut ServerConnection>,
    ) -> Self {
        Out {
            ctx,
            id,
            shared,
            closing,
            http10_keep_alive: false,
            cors: Cors::Off,
            tls,
            awaiting_publish: None,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.ctx.now_ms()
    }

    pub fn set_timer(&mut self, deadline_ms: u64) {
        self.ctx.set_timer(self.id, deadline_ms);
    }

    /// Queue `buf` (a shared handle, not copied; on TLS, encrypted into a buffer of its own).
    /// False if the connection is gone or closing.
    pub fn send(&mut self, buf: Bytes) -> bool {
        match self.tls.as_deref_mut() {
            Some(session) => tls::send(self.ctx, self.id, session, &buf),
            None => self.ctx.send(self.id, buf),
        }
    }

    /// Close after what is queued has been sent (on TLS, with a close_notify last).
    pub fn close(&mut self, why: CloseKind) {
        if self.closing.is_none() {
            if let Some(session) = self.tls.as_deref_mut() {
                tls::close_notify(self.ctx, self.id, session);
            }
        }
        self.closing.get_or_insert(why);
        self.ctx.close(self.id);
    }

    /// Queue a WebSocket close frame, then close.
    pub fn ws_close(&mut self, code: u16, reason: &str, why: CloseKind) {
        let frame = ControlFrame::close(Some(code), reason, None);
        self.send(Bytes::copy_from_slice(frame.as_bytes()));
        self.close(why);
    }

    /// Answer with the status and text that `e` maps to; close if the error says so.
    pub fn http_error(&mut self, e: &HttpError) {
        self.shared.metrics.inc(Counter::HttpErrors);
        let mut buf = Vec::with_capacity(256);
        http1::write_error_response(&mut buf, e);
        self.send(Bytes::from(buf));
        if e.closes_connection() {
            let why = match e {
                HttpError::RequestTimeout => CloseKind::RequestTimeout,
                _ => CloseKind::ProtocolError,
            };
            self.close(why);
        }
    }

    /// A plain response with a small body. `close` ends the connection after it; otherwise
    /// the next request must arrive within `request_timeout`.
    pub fn respond(&mut self, status: u16, fields: &[(&str, &str)], body: &[u8], close: bool) {
        let mut buf = Vec::with_capacity(192 + body.len());
        let framing = if status == 204 {
            // No body and no length field (RFC 9110 §8.6).
            debug_assert!(body.is_empty(), "204 with a body");
            http1::Framing::Omitted
        } else {
            http1::Framing::ContentLength(body.len() as u64)
        };
        self.write_head(&mut buf, status, fields, framing, close);
        buf.extend_from_slice(body);
        self.send(Bytes::from(buf));
        self.after_response(close);
    }

    /// A response whose body is `parts` in order, each a shared handle queued as it is (no
    /// copy): a poll answer made of messages' encoded forms. Same rules as [`Out::respond`].
    pub fn respond_parts(
        &mut self,
        status: u16,
        fields: &[(&str, &str)],
        parts: &[Bytes],
        close: bool,
    ) {
        let len: usize = parts.iter().map(Bytes::len).sum();
        let mut head = Vec::with_capacity(256);
        self.write_head(
            &mut head,
            status,
            fields,
            http1::Framing::ContentLength(len as u64),
            close,
        );
        self.send(Bytes::from(head));
        for part in parts {
            self.send(part.clone());
        }
        self.after_response(close);
    }

    /// The head of every plain answer: `fields`, the CORS fields of the request and the
    /// connection's keep-alive state.
    fn write_head(
        &mut self,
        buf: &mut Vec<u8>,
        status: u16,
        fields: &[(&str, &str)],
        framing: http1::Framing,
        close: bool,
    ) {
        if status >= 400 {
            self.shared.metrics.inc(Counter::HttpErrors);
        }
        let mut with = fields.to_vec();
        self.shared.auth.cors_fields(self.cors, &mut with);
        // HTTP/1.0 closes by default; a 1.0 client that asked to keep the connection is told
        // it was kept (RFC 9112 §9.3).
        if self.http10_keep_alive && !close {
            with.push(("Connection", "keep-alive"));
        }
        http1::write_response_head(buf, status, &with, framing, close);
    }

    fn after_response(&mut self, close: bool) {
        if close {
            self.close(CloseKind::Done);
        } else {
            let deadline = self.now_ms() + self.shared.config.request_timeout.0;
            self.set_timer(deadline);
        }
    }

    /// A plain-text error answer that ends the connection.
    pub fn refuse(&mut self, status: u16, text: &str) {
        self.respond(status, TEXT, text.as_bytes(), true);
    }

    /// The answer to a refused credential, topic or origin: its status and text, with
    /// `WWW-Authenticate` on a 401 (RFC 6750 §3), and the connection closed.
    pub fn deny(&mut self, e: &AuthError) {
        let status = e.status();
        let text = format!("{e}\n");
        // No credential: just the scheme; a worthless one: `invalid_token` (RFC 6750 §3.1).
        let fields: &[(&str, &str)] = match e {
            AuthError::Missing => &[("WWW-Authenticate", "Bearer"), TEXT[0]],
            _ if status == 401 => &[
                ("WWW-Authenticate", "Bearer error=\"invalid_token\""),
                TEXT[0],
            ],
            _ => TEXT,
        };
        self.respond(status, fields, text.as_bytes(), true);
    }

    /// Begin reading the body `head` announces: a declared length over `limits` is refused
    /// (413) before any of it is read, and `Expect: 100-continue` is answered. `None` once
    /// refused (the answer is queued and the connection is closing).
    pub fn begin_body(&mut self, head: &RequestHead, limits: &HttpLimits) -> Option<BodyReader> {
        match BodyReader::new(head.body(), limits) {
            Ok(body) => {
                if head.expects_continue() {
                    self.send(Bytes::from_static(http1::CONTINUE_RESPONSE));
                }
                Some(body)
            }
            Err(e) => {
                self.http_error(&e);
                None
            }
        }
    }

    /// One step of the body of the request pending in `slot` (whose reader `body` picks):
    /// when the body is complete, the request leaves `slot` for `finish`. Returns the bytes
    /// consumed and whether another step may make progress.
    pub fn read_body<P>(
        &mut self,
        slot: &mut Option<Box<P>>,
        input: &[u8],
        body: impl FnOnce(&mut P) -> &mut BodyReader,
        finish: impl FnOnce(&mut Self, P),
    ) -> (usize, bool) {
        let pending = slot.as_mut().expect("read_body without a pending request");
        match body(pending).read(input) {
            Read::Partial { consumed, more } => (consumed, more),
            Read::Complete { consumed } => {
                finish(self, *slot.take().expect("checked above"));
                (consumed, true)
            }
            Read::Failed(e) => {
                self.http_error(&e);
                (input.len(), false)
            }
        }
    }
}
