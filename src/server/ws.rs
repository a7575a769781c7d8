//! A WebSocket session: the upgrade (`?topic=` subscriptions at upgrade time), frames in
//! through `proto::ws::Decoder`, control messages (subscribe, unsubscribe, publish), the echo
//! route, pings with a pong deadline, the idle cut and the close handshake.
//!
//! Messages are assembled by `proto::ws::MessageAssembler` only while one is arriving and only
//! up to `ws_message_bytes_max` (the decoder refuses a longer one with 1009 from its frame
//! header, before any payload); an idle WebSocket keeps at most
//! `MessageAssembler::KEEP_BYTES_MAX` (4 KiB) of assembly buffer, and usually none.
//!
//! Authorisation (decided by `auth`): the upgrade request's credential (`?ticket=`, bearer
//! header, `?token=`, cookie) becomes the session's grant; `?topic=` subscriptions are checked
//! before the 101 (a refusal is answered 401/403), `subscribe` and `publish` ops against the
//! grant (a refusal is an `error` message). A session that subscribed to a topic that needed
//! the token is closed with 1008 when the token expires, unless a `refresh` op brought a new
//! one first.
//!
//! Timer: the next ping; while a ping is unanswered, the pong deadline; while a fragmented
//! message is arriving, its deadline (`ws_message_timeout`); once a subscription needed the
//! token, the token's end; whichever is soonest.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use super::auth::{Accept, AuthError, Clock, Credential, Grant};
use super::metrics::{CloseKind, Counter};
use super::out::Out;
use super::publish;
use super::shared::{Form, Sub, WorkerMsg};
use super::subscribe::{send_page, Replaying, Subscriptions};
use crate::engine::Handler;
use crate::hub::{parse_resume, BadEventId, ConnTopics, DeflateWindow};
use crate::proto::http1::{self, RequestHead, Version};
use crate::proto::ws::{
    self, close_code, deflate, ControlFrame, Decoder, Event, MessageAssembler, OpCode, WsLimits,
};
use crate::proto::{Progress, Role};
use flate2::{Decompress, FlushDecompress, Status};

static PING: Bytes = Bytes::from_static(&[0x89, 0x00]);

/// A deadline that is not set: later than any `now_ms`.
const NOT_SET: u64 = u64::MAX;

pub(super) struct WsSession {
    decoder: Decoder,
    /// How deliveries are sent: `Form::Ws`, or `Form::WsDeflate` when permessage-deflate was
    /// agreed. Everything else the server sends (acks, errors, pings, closes) is uncompressed,
    /// which RFC 7692 allows.
    pub form: Form,
    /// A compressed message being inflated; exists only while one arrives (the client was
    /// told `client_no_context_takeover`, so nothing carries over to the next message).
    inflating: Option<Box<Inflating>>,
    pub topics: ConnTopics,
    /// The replay still streaming, if any (see `subscribe`).
    pub replaying: Option<Box<Replaying>>,
    /// Made at the session's first uncompressed data frame and kept (with the spare capacity
    /// the assembler keeps between messages): a subscriber that only answers pings never
    /// sends one, and an inline assembler would cost it 24 bytes more (docs/decisions.md
    /// "Idle connection layout").
    assembler: Option<Box<MessageAssembler>>,
    echo: bool,
    /// When the next ping goes out. Pings go out every `heartbeat_interval` whether or not the
    /// last one was answered, so NATs and proxies see traffic at that rate.
    next_ping_ms: u64,
    /// Set when a ping goes out with none outstanding, cleared by any pong: a peer that stays
    /// silent past it is closed (`pong_timeout` after the first unanswered ping). `NOT_SET`
    /// (`u64::MAX`, never reached) rather than an `Option`, which would take 16 bytes.
    pong_deadline_ms: u64,
    /// Set when a message's first fragment arrives, cleared when its last does: a message
    /// must be complete by then (`ws_message_timeout`), so a client cannot hold a
    /// half-assembled message, and its buffer, forever. `NOT_SET` when none is arriving.
    message_deadline_ms: u64,
    /// Since when the connection has had no subscription (for `idle_timeout`).
    idle_since_ms: u64,
    /// What the session's credential allows (`None`: it presented none). Boxed: 48 bytes
    /// inline, and most sessions of an open deployment have none.
    grant: Option<Box<Grant>>,
    /// When the session is closed for its token: the grant's expiry once a subscription has
    /// needed the grant, else `u64::MAX`.
    token_end_ms: u64,
}

/// A compressed message from the client, inflated piece by piece as its frames arrive.
struct Inflating {
    z: Decompress,
    /// The inflated bytes so far, at most `ws_message_bytes_max`.
    out: Vec<u8>,
}

/// Why inflating a client's message failed.
enum InflateError {
    /// Inflated, it is larger than `ws_message_bytes_max` (a decompression bomb, say): 1009.
    TooBig,
    /// Not a valid deflate stream: 1007.
    Corrupt,
}

impl Inflating {
    fn new() -> Box<Inflating> {
        // The largest window reads whatever window the client compressed with.
        Box::new(Inflating {
            z: Decompress::new_with_window_bits(false, deflate::WINDOW_BITS_MAX),
            out: Vec::new(),
        })
    }

    /// Inflate `input`, growing `out` in steps and never past `max + 1` bytes, so a bomb
    /// costs at most `max` bytes of memory before it is refused.
    fn push(&mut self, mut input: &[u8], max: usize) -> Result<(), InflateError> {
        loop {
            if self.out.len() == self.out.capacity() {
                if self.out.len() > max {
                    return Err(InflateError::TooBig);
                }
                let step = self.out.len().clamp(4096, 256 << 10);
                self.out.reserve_exact(step.min(max + 1 - self.out.len()));
            }
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            input = &input[(self.z.total_in() - in_before) as usize..];
            if self.out.len() > max {
                return Err(InflateError::TooBig);
            }
            let room_left = self.out.len() < self.out.capacity();
            if status == Status::StreamEnd {
                // The client ended the stream with a final block (RFC 7692 §7.2.3.3 allows it):
                // what follows, the appended tail at least, carries nothing.
                return Ok(());
            }
            if input.is_empty() && room_left {
                return Ok(());
            }
            if room_left && self.z.total_out() == out_before && self.z.total_in() == in_before {
                return Err(InflateError::Corrupt);
            }
        }
    }
}

/// A control message from a client. Unknown fields are ignored so clients may add their own.
#[derive(Deserialize)]
struct Control<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    /// A message id (`"E-N"`); a number is an id from before epochs (another lifetime).
    #[serde(default)]
    since: Option<serde_json::Value>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    /// A new token (`refresh`).
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

/// One whole unmasked server frame in an allocation of exactly its size: `Bytes::from` a Vec
/// whose length equals its capacity takes the buffer over, while a Vec with spare capacity
/// costs a second allocation (the shared header), i.e. one more malloc/free per echoed message.
fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut head = [0u8; ws::HEAD_BYTES_MAX];
    let head_len = ws::fmt_head(&mut head, true, opcode, payload.len() as u64, None);
    let mut out = Vec::with_capacity(head_len + payload.len());
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn json_frame(value: &serde_json::Value) -> Bytes {
    server_frame(OpCode::Text, value.to_string().as_bytes())
}

/// Cluster mode: Redis answered a publish op of this session: `published` with the id, or an
/// `error` (the message may be retried). Answers come in the order the ops were sent.
pub(super) fn published_answer(topic: &str, result: Result<crate::hub::EventId, String>) -> Bytes {
    match result {
        Ok(id) => json_frame(
            &serde_json::json!({"op": "published", "topic": topic, "id": id.to_string()}),
        ),
        Err(e) => json_frame(&serde_json::json!({"op": "error", "error": e, "topic": topic})),
    }
}

/// Answer the upgrade of `GET /ws` (or the echo path): handshake, `?topic=` subscriptions,
/// the 101, the first ping timer. `None` when refused (the answer is queued, closing).
pub(super) fn upgrade<H: Handler>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    head: &RequestHead,
    echo: bool,
) -> Option<Box<WsSession>> {
    let shared = out.shared;
    let cfg = &shared.config;
    let minor = match head.version() {
        Version::Http10 => 0,
        Version::Http11 => 1,
    };
    let protocols: Vec<&str> = cfg.ws_protocols.iter().map(String::as_str).collect();
    let fields = head.headers().map(|f| (f.name, f.value));
    let accepted = match ws::server_handshake(head.method(), minor, fields, &protocols) {
        Ok(a) => a,
        Err(e) => {
            let mut buf = Vec::with_capacity(256);
            e.write_response(&mut buf);
            out.send(Bytes::from(buf));
            out.close(CloseKind::ProtocolError);
            return None;
        }
    };
    let mut topics: Vec<String> = Vec::new();
    if !echo {
        for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
            if k == "topic" && !topics.iter().any(|t| *t == v) {
                topics.push(v.into_owned());
            }
        }
    }
    let now = out.now_ms();
    // The echo route is for conformance tests and the echo benchmark: it subscribes and
    // publishes nothing, so it asks for no credential.
    let (grant, token_end_ms) = if echo {
        (None, u64::MAX)
    } else {
        match authorize_upgrade(out, head, &topics) {
            Ok(g) => g,
            Err(e) => {
                out.deny(&e);
                return None;
            }
        }
    };
    let agreed = if cfg.ws_deflate {
        let offers = head
            .headers()
            .filter(|f| f.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|f| f.value);
        deflate::negotiate(offers)
    } else {
        None
    };
    let mut decoder = Decoder::new(
        Role::Server,
        WsLimits {
            message_bytes_max: cfg.ws_message_bytes_max.0 as u64,
        },
    );
    let form = match agreed {
        Some(a) => {
            decoder.allow_compression();
            Form::WsDeflate(DeflateWindow::for_bits(a.server_window_bits))
        }
        None => Form::Ws,
    };
    let mut session = Box::new(WsSession {
        decoder,
        form,
        inflating: None,
        topics: ConnTopics::new(),
        replaying: None,
        assembler: None,
        echo,
        next_ping_ms: now + cfg.heartbeat_interval.0,
        pong_deadline_ms: NOT_SET,
        message_deadline_ms: NOT_SET,
        idle_since_ms: now,
        grant: grant.map(Box::new),
        token_end_ms,
    });
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let sub = Sub {
            id: out.id,
            form: session.form,
        };
        let topics = &mut session.topics;
        let replaying = &mut session.replaying;
        if let Err(e) =
            subs.subscribe_in_mode(shared, sub, topics, &names, None, replaying, None, false)
        {
            out.refuse(e.status(), &format!("{e}\n"));
            return None;
        }
    }
    let mut buf = Vec::with_capacity(256);
    let extensions = agreed.map(|a| a.response());
    accepted.write_response_with_extensions(&mut buf, extensions.as_deref());
    out.send(Bytes::from(buf));
    out.set_timer(next_deadline(&session));
    Some(session)
}

/// The upgrade's grant, and when the session must end for it: the query's topics are checked
/// here. A ticket is used up here.
fn authorize_upgrade<H: Handler>(
    out: &Out<'_, '_, H>,
    head: &RequestHead,
    topics: &[String],
) -> Result<(Option<Grant>, u64), AuthError> {
    let auth = &out.shared.auth;
    let clock = Clock::read(out.now_ms());
    let grant = auth.authenticate(Credential::of(head, Accept::Any, auth.cookie()), clock)?;
    let mut needed = false;
    for topic in topics {
        needed |= auth.may_subscribe(grant.as_ref(), topic, clock.now_ms)?;
    }
    let end = match &grant {
        Some(g) if needed => g.expires_ms,
        _ => u64::MAX,
    };
    Ok((grant, end))
}

/// One decoder step. Returns the bytes consumed and whether another step may progress.
pub(super) fn step<H: Handler<Msg = WorkerMsg>>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    ws: &mut WsSession,
    input: &mut [u8],
) -> (usize, bool) {
    let len = input.len();
    let (consumed, event) = match ws.decoder.decode(input) {
        Ok(Progress { consumed, event }) => (consumed, event),
        Err(e) => {
            out.send(Bytes::copy_from_slice(e.close_frame(None).as_bytes()));
            out.close(CloseKind::ProtocolError);
            return (len, false);
        }
    };
    let Some(event) = event else {
        return (consumed, false);
    };
    match event {
        Event::Data { text, payload, fin } if ws.decoder.message_compressed() => {
            let max = out.shared.config.ws_message_bytes_max.0;
            let inflating = ws.inflating.get_or_insert_with(Inflating::new);
            let mut result = inflating.push(payload, max);
            if fin && result.is_ok() {
                result = inflating.push(&deflate::TAIL, max);
            }
            let (code, reason) = match result {
                Err(InflateError::TooBig) => (close_code::MESSAGE_TOO_BIG, "message too big"),
                Err(InflateError::Corrupt) => {
                    (close_code::INVALID_PAYLOAD, "invalid compressed data")
                }
                Ok(()) if !fin => {
                    if ws.message_deadline_ms == NOT_SET {
                        let timeout = out.shared.config.ws_message_timeout.0;
                        ws.message_deadline_ms = out.now_ms() + timeout;
                        out.set_timer(next_deadline(ws));
                    }
                    return (consumed, true);
                }
                Ok(()) => {
                    let done = ws.inflating.take().expect("inflating above");
                    ws.message_deadline_ms = NOT_SET;
                    if text && simdutf8::basic::from_utf8(&done.out).is_err() {
                        (close_code::INVALID_PAYLOAD, "invalid UTF-8")
                    } else {
                        on_message(out, subs, ws, text, &done.out);
                        return (consumed, true);
                    }
                }
            };
            out.ws_close(code, reason, CloseKind::ProtocolError);
            return (len, false);
        }
        Event::Data { text, payload, fin } => {
            let assembler = ws.assembler.get_or_insert_with(Box::default);
            if let Some(m) = assembler.push(text, payload, fin) {
                ws.message_deadline_ms = NOT_SET;
                on_message(out, subs, ws, m.is_text(), m.payload());
                if let Some(a) = ws.assembler.as_mut() {
                    a.recycle(m);
                }
            } else if ws.message_deadline_ms == NOT_SET {
                let timeout = out.shared.config.ws_message_timeout.0;
                ws.message_deadline_ms = out.now_ms() + timeout;
                out.set_timer(next_deadline(ws));
            }
        }
        Event::Ping(payload) => {
            let pong = ControlFrame::new(OpCode::Pong, payload, None);
            out.send(Bytes::copy_from_slice(pong.as_bytes()));
        }
        Event::Pong(_) => {
            if std::mem::replace(&mut ws.pong_deadline_ms, NOT_SET) != NOT_SET {
                out.set_timer(next_deadline(ws));
            }
        }
        Event::Close { code, .. } => {
            let reply = ws::close_reply(code, None);
            out.send(Bytes::copy_from_slice(reply.as_bytes()));
            out.close(CloseKind::PeerClosed);
            return (len, false);
        }
    }
    (consumed, true)
}

fn on_message<H: Handler<Msg = WorkerMsg>>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    ws: &mut WsSession,
    text: bool,
    msg: &[u8],
) {
    if ws.echo {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        out.send(server_frame(opcode, msg));
        return;
    }
    if !text {
        let reason = "binary messages are not supported";
        return out.ws_close(
            close_code::UNSUPPORTED_DATA,
            reason,
            CloseKind::ProtocolError,
        );
    }
    let control: Control = match serde_json::from_slice(msg) {
        Ok(c) => c,
        Err(e) => return send_error(out, None, &format!("bad control message: {e}")),
    };
    let topic = control.topic.as_deref();
    match (&*control.op, topic) {
        ("subscribe", Some(topic)) => {
            let since = match &control.since {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => {
                    return send_error(out, Some(topic), &format!("bad since: {BadEventId}"))
                }
            };
            subscribe(out, subs, ws, topic, &since)
        }
        ("unsubscribe", Some(topic)) => {
            let sub = Sub {
                id: out.id,
                form: ws.form,
            };
            let cluster = out.shared.cluster.as_deref();
            let removed = subs.unsubscribe(cluster, &mut ws.topics, sub, topic, &mut ws.replaying);
            if ws.topics.is_empty() && removed {
                ws.idle_since_ms = out.now_ms();
            }
            let ack = serde_json::json!({"op": "unsubscribed", "topic": topic});
            out.send(json_frame(&ack));
        }
        ("publish", Some(topic)) => {
            let data = match &control.data {
                Some(serde_json::Value::String(s)) => Cow::Borrowed(s.as_str()),
                Some(other) => Cow::Owned(other.to_string()),
                None => Cow::Borrowed(""),
            };
            let event = control.event.as_deref();
            let grant = ws.grant.as_deref();
            match publish::from_ws(out.shared, out.ctx, out.id, grant, topic, event, &data) {
                Ok(Some(msg_id)) => {
                    let id = msg_id.to_string();
                    let ack = serde_json::json!({"op": "published", "topic": topic, "id": id});
                    out.send(json_frame(&ack));
                }
                Ok(None) => {} // cluster mode: `published_answer` follows
                Err(e) => send_error(out, Some(topic), &e),
            }
        }
        ("refresh", _) => refresh(out, ws, control.token.as_deref().unwrap_or("")),
        ("subscribe" | "unsubscribe" | "publish", None) => {
            send_error(out, None, "this op needs a \"topic\"")
        }
        (op, _) => {
            let e = format!("unknown op {op:?} (subscribe, unsubscribe, publish, refresh)");
            send_error(out, topic, &e)
        }
    }
}

fn send_error<H: Handler>(out: &mut Out<'_, '_, H>, topic: Option<&str>, error: &str) {
    let msg = match topic {
        Some(t) => serde_json::json!({"op": "error", "error": error, "topic": t}),
        None => serde_json::json!({"op": "error", "error": error}),
    };
    out.send(json_frame(&msg));
}

fn subscribe<H: Handler>(
    out: &mut Out<'_, '_, H>,
    subs: &mut Subscriptions,
    ws: &mut WsSession,
    topic: &str,
    since: &str,
) {
    let resume = match parse_resume(since, out.shared.epoch()) {
        Ok(r) => r,
        Err(e) => return send_error(out, Some(topic), &format!("bad since: {e}")),
    };
    let now = out.now_ms();
    let needed = match out
        .shared
        .auth
        .may_subscribe(ws.grant.as_deref(), topic, now)
    {
        Ok(needed) => needed,
        Err(e) => return send_error(out, Some(topic), &format!("subscription refused: {e}")),
    };
    if needed && ws.token_end_ms == u64::MAX {
        // From now on the session lives only as long as its token (or a refreshed one).
        ws.token_end_ms = ws.grant.as_ref().map_or(now, |g| g.expires_ms);
        out.set_timer(next_deadline(ws));
    }
    let ack = serde_json::json!({"op": "subscribed", "topic": topic});
    if ws.topics.contains(topic) {
        // Already in force: a second replay would deliver messages twice.
        out.send(json_frame(&ack));
        return;
    }
    let sub = Sub {
        id: out.id,
        form: ws.form,
    };
    let resume = resume.map(|r| (r, since.trim()));
    let replaying = &mut ws.replaying;
    match subs.subscribe_in_mode(
        out.shared,
        sub,
        &mut ws.topics,
        &[topic],
        resume,
        replaying,
        None,
        false,
    ) {
        Ok(page) => {
            out.send(json_frame(&ack));
            if let Some(page) = page {
                send_page(out, ws.form, &page, since.trim());
            }
        }
        Err(e) => send_error(out, Some(topic), &e.to_string()),
    }
}

/// `{"op":"refresh","token":"..."}`: a new token replaces the session's grant, provided it
/// still allows every topic the session holds (otherwise the old grant stays, with its end).
fn refresh<H: Handler>(out: &mut Out<'_, '_, H>, ws: &mut WsSession, token: &str) {
    let auth = &out.shared.auth;
    let clock = Clock::read(out.now_ms());
    let grant = match auth.authenticate_token(token, clock) {
        Ok(g) => g,
        Err(e) => return send_error(out, None, &format!("refresh refused: {e}")),
    };
    for topic in ws.topics.topics() {
        if let Err(e) = auth.may_subscribe(Some(&grant), topic, clock.now_ms) {
            return send_error(out, Some(topic), &format!("refresh refused: {e}"));
        }
    }
    if ws.token_end_ms != u64::MAX {
        ws.token_end_ms = grant.expires_ms;
    }
    let expires_in = match grant.expires_ms {
        u64::MAX => serde_json::Value::Null,
        end => (end.saturating_sub(clock.now_ms) / 1000).into(),
    };
    ws.grant = Some(Box::new(grant));
    out.set_timer(next_deadline(ws));
    out.send(json_frame(
        &serde_json::json!({"op": "refreshed", "expires_in": expires_in}),
    ));
}

/// The session's timer: the token's end, the pong deadline, the idle cut, or the next ping.
pub(super) fn on_timer<H: Handler>(out: &mut Out<'_, '_, H>, ws: &mut WsSession) {
    let cfg = &out.shared.config;
    let (interval, pong_timeout, idle_timeout) = (
        cfg.heartbeat_interval.0,
        cfg.pong_timeout.0,
        cfg.idle_timeout.0,
    );
    let now = out.now_ms();
    if now >= ws.token_end_ms {
        return out.ws_close(
            close_code::POLICY_VIOLATION,
            "token expired",
            CloseKind::TokenExpired,
        );
    }
    if now >= ws.pong_deadline_ms {
        // The peer is gone or stuck: say why (1008), and the close is bounded by the engine's
        // close-flush timeout rather than waiting for the peer's reply.
        return out.ws_close(
            close_code::POLICY_VIOLATION,
            "pong timeout",
            CloseKind::PongTimeout,
        );
    }
    if now >= ws.message_deadline_ms {
        let reason = "message not completed in time";
        return out.ws_close(
            close_code::POLICY_VIOLATION,
            reason,
            CloseKind::ProtocolError,
        );
    }
    if !ws.echo && ws.topics.is_empty() && now.saturating_sub(ws.idle_since_ms) >= idle_timeout {
        return out.ws_close(
            close_code::NORMAL,
            "idle: no subscription",
            CloseKind::IdleTimeout,
        );
    }
    if now >= ws.next_ping_ms {
        out.send(PING.clone());
        out.shared.metrics.inc(Counter::Heartbeats);
        ws.next_ping_ms = now + interval;
        if ws.pong_deadline_ms == NOT_SET {
            ws.pong_deadline_ms = now + pong_timeout;
        }
    }
    out.set_timer(next_deadline(ws));
}

/// The session's one timer: the soonest of the next ping, the pong deadline, the message
/// deadline and the token's end.
fn next_deadline(ws: &WsSession) -> u64 {
    ws.next_ping_ms
        .min(ws.token_end_ms)
        .min(ws.pong_deadline_ms)
        .min(ws.message_deadline_ms)
}

/// Graceful shutdown: 1001 "Going Away", then close.
pub(super) fn on_shutdown<H: Handler>(out: &mut Out<'_, '_, H>) {
    out.ws_close(
        close_code::GOING_AWAY,
        "server shutting down",
        CloseKind::Shutdown,
    );
}
