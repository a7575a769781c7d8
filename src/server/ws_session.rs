//! A WebSocket connection after the handshake: frames in (through `proto::ws::Decoder`),
//! control messages (subscribe, unsubscribe, publish), the echo route, pings and the close
//! handshake.
//!
//! Messages are assembled only while one is arriving and only up to `ws_message_bytes_max`
//! (the decoder refuses a longer one with 1009 from its frame header, before any payload), and
//! the buffer is given back once the message is handled, so an idle WebSocket holds none.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use serde::Deserialize;

use super::config::Config;
use super::handler::{Conn, State, Sub, Worker};
use super::metrics::CloseKind;
use crate::engine::{ConnId, Ctx};
use crate::hub::{self, ConnTopics, Replay};
use crate::proto::ws::{self, ControlFrame, Decoder, Event, OpCode, WsLimits};
use crate::proto::{Progress, Role};

/// A buffer that large is dropped after use rather than kept for the next message.
const MSG_BUF_KEEP_BYTES: usize = 4096;

pub(super) struct WsConn {
    decoder: Decoder,
    pub(super) topics: ConnTopics,
    /// The message being assembled (text or binary per `msg_text`).
    msg: Vec<u8>,
    msg_text: bool,
    echo: bool,
    /// When the next ping goes out. Pings go out every `heartbeat_interval` whether or not the
    /// last one was answered, so NATs and proxies see traffic at that rate.
    next_ping_ms: u64,
    /// Set when a ping goes out with none outstanding, cleared by any pong: a peer that stays
    /// silent past it is closed (`pong_timeout` after the first unanswered ping).
    pong_deadline_ms: Option<u64>,
    /// Since when the connection has had no subscription (for `idle_timeout`).
    idle_since_ms: u64,
}

impl WsConn {
    pub(super) fn new(config: &Config, echo: bool, now_ms: u64) -> WsConn {
        let limits = WsLimits {
            message_bytes_max: config.ws_message_bytes_max.0 as u64,
        };
        WsConn {
            decoder: Decoder::new(Role::Server, limits),
            topics: ConnTopics::new(),
            msg: Vec::new(),
            msg_text: false,
            echo,
            next_ping_ms: now_ms + config.heartbeat_interval.0,
            pong_deadline_ms: None,
            idle_since_ms: now_ms,
        }
    }
}

/// A control message from a client. Unknown fields are ignored so clients may add their own.
#[derive(Deserialize)]
struct Control<'a> {
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    data: Option<serde_json::Value>,
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

/// Frame a server text message (unmasked) from its JSON payload.
fn text_frame(payload: &[u8]) -> Bytes {
    server_frame(OpCode::Text, payload)
}

fn json_frame(value: &serde_json::Value) -> Bytes {
    text_frame(value.to_string().as_bytes())
}

static PING: Bytes = Bytes::from_static(&[0x89, 0x00]);

impl Worker {
    fn ws_of(conn: &mut Conn) -> &mut WsConn {
        match &mut conn.state {
            State::Ws(w) => w,
            _ => unreachable!("WebSocket step on a non-WebSocket connection"),
        }
    }

    /// One decoder step. Returns the bytes consumed and whether another step may progress.
    pub(super) fn ws_step(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        input: &mut [u8],
    ) -> (usize, bool) {
        let len = input.len();
        let ws = Self::ws_of(conn);
        let (consumed, event) = match ws.decoder.decode(input) {
            Ok(Progress { consumed, event }) => (consumed, event),
            Err(e) => {
                ctx.send(id, Bytes::copy_from_slice(e.close_frame(None).as_bytes()));
                Self::close(ctx, id, conn, CloseKind::ProtocolError);
                return (len, false);
            }
        };
        let Some(event) = event else {
            return (consumed, false);
        };
        match event {
            Event::Data { text, payload, fin } => {
                if fin && ws.msg.is_empty() {
                    // The whole message is this one frame's payload, in the input: handle it
                    // where it lies instead of copying it into `msg` first.
                    self.ws_message(ctx, id, conn, text, payload);
                    return (consumed, true);
                }
                if ws.msg.is_empty() {
                    ws.msg_text = text;
                }
                ws.msg.extend_from_slice(payload);
                if fin {
                    let msg = std::mem::take(&mut ws.msg);
                    let text = ws.msg_text;
                    self.ws_message(ctx, id, conn, text, &msg);
                    let ws = Self::ws_of(conn);
                    if msg.capacity() <= MSG_BUF_KEEP_BYTES && ws.msg.is_empty() {
                        let mut msg = msg;
                        msg.clear();
                        ws.msg = msg;
                    }
                }
            }
            Event::Ping(payload) => {
                let pong = ControlFrame::new(OpCode::Pong, payload, None);
                ctx.send(id, Bytes::copy_from_slice(pong.as_bytes()));
            }
            Event::Pong(_) => {
                if ws.pong_deadline_ms.take().is_some() {
                    ctx.set_timer(id, ws.next_ping_ms);
                }
            }
            Event::Close { code, .. } => {
                let reply = ws::close_reply(code, None);
                ctx.send(id, Bytes::copy_from_slice(reply.as_bytes()));
                Self::close(ctx, id, conn, CloseKind::PeerClosed);
                return (len, false);
            }
        }
        (consumed, true)
    }

    fn ws_message(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        text: bool,
        msg: &[u8],
    ) {
        let ws = Self::ws_of(conn);
        if ws.echo {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            ctx.send(id, server_frame(opcode, msg));
            return;
        }
        if !text {
            let frame = ControlFrame::close(Some(1003), "binary messages are not supported", None);
            ctx.send(id, Bytes::copy_from_slice(frame.as_bytes()));
            return Self::close(ctx, id, conn, CloseKind::ProtocolError);
        }
        let control: Control = match serde_json::from_slice(msg) {
            Ok(c) => c,
            Err(e) => return self.ws_error(ctx, id, None, &format!("bad control message: {e}")),
        };
        let topic = control.topic.as_deref();
        match (&*control.op, topic) {
            ("subscribe", Some(topic)) => self.ws_subscribe(ctx, id, conn, topic, control.since),
            ("unsubscribe", Some(topic)) => {
                let ws = Self::ws_of(conn);
                let removed = self
                    .index
                    .unsubscribe(&mut ws.topics, Sub { id, ws: true }, topic);
                if ws.topics.is_empty() && removed {
                    ws.idle_since_ms = ctx.now_ms();
                }
                let ack = serde_json::json!({"op": "unsubscribed", "topic": topic});
                ctx.send(id, json_frame(&ack));
            }
            ("publish", Some(topic)) => {
                if !self.shared.config.ws_publish {
                    let e = "publishing over WebSocket is off (server flag --ws-publish)";
                    return self.ws_error(ctx, id, Some(topic), e);
                }
                let data = match &control.data {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                match self.publish(ctx, topic, control.event.as_deref(), &data) {
                    Ok(msg_id) => {
                        let ack =
                            serde_json::json!({"op": "published", "topic": topic, "id": msg_id});
                        ctx.send(id, json_frame(&ack));
                    }
                    Err(e) => self.ws_error(ctx, id, Some(topic), &e.to_string()),
                }
            }
            ("subscribe" | "unsubscribe" | "publish", None) => {
                self.ws_error(ctx, id, None, "this op needs a \"topic\"")
            }
            (op, _) => {
                let e = format!("unknown op {op:?} (subscribe, unsubscribe, publish)");
                self.ws_error(ctx, id, topic, &e)
            }
        }
    }

    fn ws_error(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, topic: Option<&str>, error: &str) {
        let msg = match topic {
            Some(t) => serde_json::json!({"op": "error", "error": error, "topic": t}),
            None => serde_json::json!({"op": "error", "error": error}),
        };
        ctx.send(id, json_frame(&msg));
    }

    fn ws_subscribe(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        topic: &str,
        since: Option<u64>,
    ) {
        let ws = Self::ws_of(conn);
        if ws.topics.contains(topic) {
            // Already in force: a second replay would deliver messages twice.
            let ack = serde_json::json!({"op": "subscribed", "topic": topic});
            ctx.send(id, json_frame(&ack));
            return;
        }
        let mut topics = std::mem::take(&mut ws.topics);
        let result = self.subscribe(Sub { id, ws: true }, &mut topics, &[topic], since);
        Self::ws_of(conn).topics = topics;
        match result {
            Ok(replay) => {
                let ack = serde_json::json!({"op": "subscribed", "topic": topic});
                ctx.send(id, json_frame(&ack));
                if let Some(replay) = replay {
                    self.send_ws_replay(ctx, id, &replay);
                }
            }
            Err(e) => self.ws_error(ctx, id, Some(topic), &e.to_string()),
        }
    }

    fn send_ws_replay(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, replay: &Replay) {
        let m = &self.shared.metrics;
        if let Replay::Gap {
            gaps, requested, ..
        } = replay
        {
            for gap in gaps {
                ctx.send(id, hub::ws_reset(&gap.topic, gap.oldest_held, *requested));
            }
            m.resets_total.fetch_add(1, Relaxed);
        }
        for msg in replay.events() {
            ctx.send(id, msg.ws.clone());
        }
        m.replayed_total
            .fetch_add(replay.events().len() as u64, Relaxed);
    }

    pub(super) fn ws_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let cfg = &self.shared.config;
        let (interval, pong_timeout, idle_timeout) = (
            cfg.heartbeat_interval.0,
            cfg.pong_timeout.0,
            cfg.idle_timeout.0,
        );
        let now = ctx.now_ms();
        let ws = Self::ws_of(conn);
        if ws.pong_deadline_ms.is_some_and(|d| now >= d) {
            // The peer is gone or stuck: no close handshake, it would wait for the same peer.
            conn.closing = Some(CloseKind::PongTimeout);
            return ctx.abort(id);
        }
        if !ws.echo && ws.topics.is_empty() && now.saturating_sub(ws.idle_since_ms) >= idle_timeout
        {
            let frame = ControlFrame::close(Some(1000), "idle: no subscription", None);
            ctx.send(id, Bytes::copy_from_slice(frame.as_bytes()));
            return Self::close(ctx, id, conn, CloseKind::IdleTimeout);
        }
        if now >= ws.next_ping_ms {
            ctx.send(id, PING.clone());
            self.shared.metrics.heartbeats_total.fetch_add(1, Relaxed);
            ws.next_ping_ms = now + interval;
            ws.pong_deadline_ms.get_or_insert(now + pong_timeout);
        }
        let next = ws
            .pong_deadline_ms
            .map_or(ws.next_ping_ms, |d| d.min(ws.next_ping_ms));
        ctx.set_timer(id, next);
    }
}
