//! WebSocket client (RFC 6455, client role) on `proto::ws`: opening handshake with a random
//! nonce, server answer validated per §4.1, frames decoded by the shared `Decoder`, every
//! frame we send masked with a fresh random key (§5.3), pings answered with pongs (§5.5.2),
//! a server close answered (§5.5.1).
//!
//! Three modes: a subscriber (deliveries carry the envelope), an echo client (M messages in
//! flight, each checked byte for byte when it returns), and a publisher. Messages are put
//! together by the same `MessageAssembler` the server uses: a message in one frame is read
//! where it lies, one split across frames or reads is copied into a small reused buffer.
//! No socket, no clock.
//!
//! A subscriber remembers the `"id":"..."` of its last delivery; a reconnect (`resume`) sends
//! it as `{since}` in the subscribe message, and a `{"op":"reset",...}` answer counts as loss.

use super::{header_refs, mask_key, Env, Io, Outcome, Subscription};
use crate::echo;
use crate::stats::ErrorKind;
use uringcast::proto::http1::ResponseDecoder;
use uringcast::proto::ws::{
    client_key, client_request, close_code, close_reply, encode_frame, validate_server_response,
    ControlFrame, Decoder, Event, MessageAssembler, OpCode, WsLimits,
};
use uringcast::proto::Role;

#[derive(Debug)]
enum Phase {
    Handshake {
        dec: ResponseDecoder,
        key: [u8; 24],
    },
    Open(Decoder),
    /// A close frame was exchanged; later bytes are ignored.
    Closed,
}

/// Echo bookkeeping: replies must come back in the order sent.
#[derive(Debug, Clone, Default)]
pub struct EchoState {
    pub inflight_max: u32,
    pub inflight: u32,
    next_seq: u64,
    expect_seq: u64,
}

#[derive(Debug)]
pub enum Mode {
    Sub(Subscription),
    Echo(EchoState),
    Pub,
}

#[derive(Debug)]
pub struct WsClient {
    phase: Phase,
    pub mode: Mode,
    /// Gathers messages that arrive in more than one piece.
    assembler: MessageAssembler,
    /// Subscribed by message: ready only once a message containing the ack marker arrives.
    awaiting_ack: bool,
}

impl EchoState {
    pub fn new(inflight_max: u32) -> EchoState {
        EchoState {
            inflight_max,
            ..EchoState::default()
        }
    }
}

impl WsClient {
    pub fn new(mode: Mode) -> WsClient {
        WsClient {
            phase: Phase::Handshake {
                dec: ResponseDecoder::new(),
                key: [0; 24],
            },
            mode,
            assembler: MessageAssembler::new(),
            awaiting_ack: false,
        }
    }

    /// Append the upgrade request for `path` to `io.out` (draws the nonce).
    pub fn request(&mut self, env: &Env, io: &mut Io, authority: &str, path: &str) {
        let nonce: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        let key = client_key(nonce);
        if let Phase::Handshake { key: k, .. } = &mut self.phase {
            *k = key;
        }
        let key_str = std::str::from_utf8(&key).unwrap_or_default();
        client_request(
            &mut io.out,
            authority,
            path,
            key_str,
            &[],
            &header_refs(&env.headers),
        );
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    pub fn on_data(&mut self, env: &Env, io: &mut Io, data: &mut [u8]) -> Outcome {
        let mut o = Outcome::default();
        if let (Mode::Sub(s), false) = (&mut self.mode, data.is_empty()) {
            s.last_rx_ns = io.now_ns;
        }
        loop {
            match &mut self.phase {
                Phase::Handshake { dec, key } => {
                    let head = match dec.decode(&env.http_limits, &data[o.consumed..]) {
                        Err(_) => return fatal(o, ErrorKind::HttpParse),
                        Ok(p) => match p.event {
                            None => return o,
                            Some(h) => {
                                o.consumed += p.consumed;
                                h
                            }
                        },
                    };
                    let fields = head.headers().map(|f| (f.name, f.value));
                    if validate_server_response(head.status(), fields, key, &[]).is_err() {
                        return fatal(o, ErrorKind::WsHandshake);
                    }
                    self.phase = Phase::Open(Decoder::new(
                        Role::Client,
                        WsLimits {
                            message_bytes_max: env.ws_message_bytes_max,
                        },
                    ));
                    o.ready = true;
                    if let Mode::Sub(s) = &self.mode {
                        if !env.ws_subscribe_msg.is_empty() {
                            let topic = env.topics.get(s.topic as usize).map_or("", |t| t);
                            let msg = env
                                .ws_subscribe_msg
                                .replace("{topic}", topic)
                                .replace("{since}", &s.last_id);
                            send_text(io, msg.as_bytes(), false);
                            // Publishing must not start before the subscription is in force.
                            self.awaiting_ack = !env.ws_subscribed_marker.is_empty();
                            o.ready = !self.awaiting_ack;
                        }
                    }
                }
                Phase::Open(dec) => {
                    while o.consumed < data.len() {
                        let step = match dec.decode(&mut data[o.consumed..]) {
                            Ok(s) => s,
                            Err(e) => {
                                io.out
                                    .extend_from_slice(e.close_frame(Some(mask_key())).as_bytes());
                                return fatal(o, ErrorKind::WsProtocol);
                            }
                        };
                        let consumed = step.consumed;
                        match step.event {
                            None => {
                                o.consumed += consumed;
                                return o;
                            }
                            Some(Event::Data { text, payload, fin }) => {
                                if let Some(m) = self.assembler.push(text, payload, fin) {
                                    if self.awaiting_ack {
                                        let marker = env.ws_subscribed_marker.as_bytes();
                                        if find(m.payload(), marker) {
                                            self.awaiting_ack = false;
                                            o.ready = true;
                                        }
                                    } else {
                                        message(&mut self.mode, env, io, m.payload());
                                    }
                                    self.assembler.recycle(m);
                                }
                            }
                            Some(Event::Ping(p)) => {
                                io.stats.heartbeats += 1;
                                let pong = ControlFrame::new(OpCode::Pong, p, Some(mask_key()));
                                io.out.extend_from_slice(pong.as_bytes());
                            }
                            Some(Event::Pong(_)) => {}
                            Some(Event::Close { code, .. }) => {
                                let reply = close_reply(code, Some(mask_key()));
                                io.out.extend_from_slice(reply.as_bytes());
                                self.phase = Phase::Closed;
                                o.consumed = data.len();
                                return fatal(o, ErrorKind::WsClosedByPeer);
                            }
                        }
                        o.consumed += consumed;
                    }
                    return o;
                }
                Phase::Closed => {
                    o.consumed = data.len();
                    return o;
                }
            }
        }
    }

    /// The machine for a reconnect of `old`: same mode (a subscriber keeps its sequence
    /// figures and last id, which the subscribe message sends as `{since}`).
    pub fn resume(old: WsClient) -> WsClient {
        WsClient::new(old.mode)
    }

    /// Echo mode: put `inflight_max` messages in flight.
    pub fn start_echo(&mut self, env: &Env, io: &mut Io) {
        let open = self.is_open();
        if let (Mode::Echo(st), true) = (&mut self.mode, open) {
            while st.inflight < st.inflight_max {
                send_echo(st, env, io);
            }
        }
    }

    /// Publisher mode: one text message.
    pub fn publish(&mut self, io: &mut Io, body: &[u8]) {
        send_text(io, body, false);
    }

    /// Append a normal close to `io.out`.
    pub fn goodbye(&mut self, io: &mut Io) {
        if self.is_open() {
            let f = ControlFrame::close(Some(close_code::NORMAL), "", Some(mask_key()));
            io.out.extend_from_slice(f.as_bytes());
            self.phase = Phase::Closed;
        }
    }
}

fn send_text(io: &mut Io, payload: &[u8], binary: bool) {
    let op = if binary { OpCode::Binary } else { OpCode::Text };
    encode_frame(&mut io.out, true, op, payload, Some(mask_key()));
}

fn send_echo(st: &mut EchoState, env: &Env, io: &mut Io) {
    io.scratch.clear();
    echo::encode(io.now_ns, st.next_seq, env.echo_size, &mut io.scratch);
    let op = if env.echo_binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    encode_frame(&mut io.out, true, op, &io.scratch, Some(mask_key()));
    st.next_seq += 1;
    st.inflight += 1;
}

/// One whole message from the server.
fn message(mode: &mut Mode, env: &Env, io: &mut Io, payload: &[u8]) {
    match mode {
        Mode::Sub(sub) => {
            // The hub's own control answers (`{"op":"subscribed",...}`) are not deliveries.
            if payload.starts_with(br#"{"op":"#) {
                if payload.starts_with(br#"{"op":"error""#) {
                    io.stats.errors.add(ErrorKind::WsProtocol);
                } else if payload.starts_with(br#"{"op":"reset""#) {
                    io.stats.errors.add(ErrorKind::ResumeReset);
                }
                return;
            }
            if let Some(id) = id_field(payload) {
                sub.last_id.clear();
                sub.last_id.push_str(id);
            }
            sub.delivery(env, io, payload);
        }
        Mode::Echo(st) => {
            match echo::decode(payload, env.echo_size) {
                Some((ts, seq)) if seq == st.expect_seq => {
                    io.stats.echoes += 1;
                    let now = io.now_ns;
                    io.stats.record_latency(now, now.saturating_sub(ts));
                }
                _ => io.stats.errors.add(ErrorKind::EchoMismatch),
            }
            st.expect_seq += 1;
            st.inflight = st.inflight.saturating_sub(1);
            if io.echo_running {
                send_echo(st, env, io);
            }
        }
        Mode::Pub => {}
    }
}

/// The hub's delivery id: the text of the first `"id":"..."` (ids are `E-N`, never escaped).
fn id_field(payload: &[u8]) -> Option<&str> {
    const KEY: &[u8] = br#""id":""#;
    let start = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = payload[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&payload[start..start + len]).ok()
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn fatal(mut o: Outcome, kind: ErrorKind) -> Outcome {
    o.fatal = Some(kind);
    o
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{env, feed};
    use super::*;
    use uringcast::proto::ws::accept_key;

    /// The server side of a handshake for the key in `req`, plus `frames` (unmasked, as a
    /// server sends them, RFC 6455 §5.1).
    fn answer(req: &[u8], frames: &[(OpCode, &[u8])]) -> Vec<u8> {
        let req = std::str::from_utf8(req).unwrap();
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = accept_key(key.trim().as_bytes());
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&accept).unwrap()
        )
        .into_bytes();
        for (op, p) in frames {
            encode_frame(&mut out, true, *op, p, None);
        }
        out
    }

    /// RFC 6455 §4.1 handshake, §5.5.2 ping→pong, §5.3 masked client frames.
    #[test]
    fn subscriber_handshake_deliveries_and_pings_at_every_split() {
        let e = env();
        let mut msgs = Vec::new();
        for s in [1u64, 2, 3] {
            let mut m = br#"{"topic":"t0","id":9,"data":""#.to_vec();
            e.template.encode(s, 500, "t0", 0, &mut m);
            m.extend_from_slice(br#""}"#);
            msgs.push(m);
        }
        for chunk in [1, 3, 17, 4096] {
            let mut c = WsClient::new(Mode::Sub(Subscription::new(0)));
            let mut io = Io {
                now_ns: 10_500,
                ..Io::default()
            };
            c.request(&e, &mut io, "h:1", "/ws?topic=t0");
            let req = std::mem::take(&mut io.out);
            assert!(req.starts_with(b"GET /ws?topic=t0 HTTP/1.1\r\n"));
            let bytes = answer(
                &req,
                &[
                    (OpCode::Text, br#"{"op":"subscribed","topic":"t0"}"#),
                    (OpCode::Text, &msgs[0]),
                    (OpCode::Ping, b"hb"),
                    (OpCode::Text, &msgs[2]),
                    (OpCode::Text, &msgs[1]),
                ],
            );
            let (ready, fatal) = feed(|io, d| c.on_data(&e, io, d), &mut io, &bytes, chunk);
            assert!(ready && fatal.is_none(), "chunk {chunk}: {fatal:?}");
            assert_eq!(io.stats.deliveries, 3);
            assert_eq!(io.stats.heartbeats, 1);
            assert!(io.stats.errors.total() == 0, "{:?}", io.stats.errors);
            // The pong: FIN+pong, MASK bit set, 2-byte payload, 4-byte key.
            assert_eq!(&io.out[..2], &[0x8A, 0x82]);
            assert_eq!(io.out.len(), 2 + 4 + 2);
            let mut s = crate::stats::Stats::default();
            if let Mode::Sub(sub) = &c.mode {
                sub.finish(3, &mut s);
            }
            assert_eq!((s.missing, s.out_of_order), (0, 1));
            assert!((io.stats.latency.summary_us().max - 10.0).abs() < 0.1);
        }
    }

    /// RFC 6455 §5.4: a delivery split over a text frame and a continuation, with a ping
    /// between them (§5.5), counts once, whole, at every read size.
    #[test]
    fn fragmented_delivery_is_assembled() {
        let e = env();
        let mut m = br#"{"topic":"t0","id":1,"data":""#.to_vec();
        e.template.encode(1, 0, "t0", 0, &mut m);
        m.extend_from_slice(br#""}"#);
        let (first, second) = m.split_at(m.len() / 2);
        for chunk in [1, 5, 4096] {
            let mut c = WsClient::new(Mode::Sub(Subscription::new(0)));
            let mut io = Io::default();
            c.request(&e, &mut io, "h:1", "/ws?topic=t0");
            let req = std::mem::take(&mut io.out);
            let mut bytes = answer(&req, &[]);
            encode_frame(&mut bytes, false, OpCode::Text, first, None);
            encode_frame(&mut bytes, true, OpCode::Ping, b"", None);
            encode_frame(&mut bytes, true, OpCode::Continuation, second, None);
            let (ready, fatal) = feed(|io, d| c.on_data(&e, io, d), &mut io, &bytes, chunk);
            assert!(ready && fatal.is_none(), "chunk {chunk}: {fatal:?}");
            assert_eq!(io.stats.deliveries, 1, "chunk {chunk}");
            assert_eq!(io.stats.errors.total(), 0, "{:?}", io.stats.errors);
            assert!(!c.assembler.is_assembling());
        }
    }

    /// Subscribe by message: ready only once the server's ack arrives, so publishing cannot
    /// start before the subscription is in force.
    #[test]
    fn subscribe_by_message_waits_for_the_ack() {
        let mut e = env();
        e.ws_subscribe_msg = r#"{"op":"subscribe","topic":"{topic}"}"#.into();
        e.ws_subscribed_marker = "subscribed".into();
        let mut c = WsClient::new(Mode::Sub(Subscription::new(1)));
        let mut io = Io::default();
        c.request(&e, &mut io, "h", "/ws");
        let req = std::mem::take(&mut io.out);
        let mut msg = Vec::new();
        e.template.encode(1, 0, "t1", 0, &mut msg);
        let hs = answer(&req, &[]);
        let acked = answer(
            &req,
            &[(OpCode::Text, br#"{"op":"subscribed","topic":"t1"}"#)],
        );
        let mut after = Vec::new();
        encode_frame(&mut after, true, OpCode::Text, &msg, None);
        // Handshake alone: not ready, and the subscribe message went out, masked, naming t1.
        let mut h = hs.clone();
        let o = c.on_data(&e, &mut io, &mut h);
        assert!(!o.ready && o.fatal.is_none());
        assert_eq!(io.out[0], 0x81);
        let key = [io.out[2], io.out[3], io.out[4], io.out[5]];
        let sent: Vec<u8> = io.out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(sent, br#"{"op":"subscribe","topic":"t1"}"#);
        // The ack makes it ready; the delivery after it counts.
        let mut ack = acked[hs.len()..].to_vec();
        assert!(c.on_data(&e, &mut io, &mut ack).ready);
        let _ = c.on_data(&e, &mut io, &mut after);
        assert_eq!(io.stats.deliveries, 1);
    }

    /// A resume sends the last delivery's id as `since`; a reset notice counts as loss.
    #[test]
    fn resume_subscribes_since_the_last_id() {
        let mut e = env();
        e.ws_subscribe_msg = r#"{"op":"subscribe","topic":"{topic}","since":"{since}"}"#.into();
        e.ws_subscribed_marker = "subscribed".into();
        let mut c = WsClient::new(Mode::Sub(Subscription::new(0)));
        let mut io = Io::default();
        c.request(&e, &mut io, "h", "/ws");
        let req = std::mem::take(&mut io.out);
        let mut m = br#"{"topic":"t0","id":"1765015200123-7","data":""#.to_vec();
        e.template.encode(1, 0, "t0", 0, &mut m);
        m.extend_from_slice(br#""}"#);
        let bytes = answer(
            &req,
            &[
                (OpCode::Text, br#"{"op":"subscribed"}"#),
                (OpCode::Text, &m),
            ],
        );
        let (ready, fatal) = feed(|io, d| c.on_data(&e, io, d), &mut io, &bytes, 11);
        assert!(ready && fatal.is_none());
        assert_eq!(io.stats.deliveries, 1);
        let unmask = |f: &[u8]| -> Vec<u8> {
            let key = [f[2], f[3], f[4], f[5]];
            f[6..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect()
        };
        assert_eq!(
            unmask(&io.out),
            br#"{"op":"subscribe","topic":"t0","since":""}"#
        );

        let mut again = WsClient::resume(c);
        io.out.clear();
        again.request(&e, &mut io, "h", "/ws");
        let req = std::mem::take(&mut io.out);
        let reset = br#"{"op":"reset","topic":"t0","oldest":"1765015200123-9","requested":"x"}"#;
        let bytes = answer(
            &req,
            &[
                (OpCode::Text, br#"{"op":"subscribed"}"#),
                (OpCode::Text, reset),
            ],
        );
        let (ready, _) = feed(|io, d| again.on_data(&e, io, d), &mut io, &bytes, 4096);
        assert!(ready);
        let sent = unmask(&io.out);
        assert_eq!(
            sent,
            br#"{"op":"subscribe","topic":"t0","since":"1765015200123-7"}"#,
            "{}",
            String::from_utf8_lossy(&sent)
        );
        assert_eq!(io.stats.errors.get(ErrorKind::ResumeReset), 1);
        assert_eq!(io.stats.deliveries, 1, "control answers are not deliveries");
        assert_eq!(id_field(br#"{"id":"a-1","x":"y"}"#), Some("a-1"));
        assert_eq!(id_field(br#"{"id":3}"#), None);
    }

    #[test]
    fn echo_round_trips_and_mismatches() {
        let mut e = env();
        e.echo_size = 40;
        let mut c = WsClient::new(Mode::Echo(EchoState {
            inflight_max: 2,
            ..EchoState::default()
        }));
        let mut io = Io {
            now_ns: 1_000,
            echo_running: true,
            ..Io::default()
        };
        c.request(&e, &mut io, "h:1", "/echo");
        let req = std::mem::take(&mut io.out);
        let hs = answer(&req, &[]);
        let (ready, _) = feed(|io, d| c.on_data(&e, io, d), &mut io, &hs, 4096);
        assert!(ready);
        c.start_echo(&e, &mut io);
        // Two masked 40-byte text frames: 2 + 4 + 40 each.
        assert_eq!(io.out.len(), 2 * 46);
        assert_eq!(io.out[1], 0x80 | 40);
        // Unmask what we sent and echo it back from the "server".
        let mut back = Vec::new();
        for f in io.out.chunks(46) {
            let key = [f[2], f[3], f[4], f[5]];
            let payload: Vec<u8> = f[6..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert!(echo::decode(&payload, 40).unwrap().1 < 2);
            encode_frame(&mut back, true, OpCode::Text, &payload, None);
        }
        io.out.clear();
        io.now_ns = 3_000;
        let (_, fatal) = feed(|io, d| c.on_data(&e, io, d), &mut io, &back, 5);
        assert_eq!(fatal, None);
        assert_eq!(io.stats.echoes, 2);
        assert_eq!(io.out.len(), 2 * 46, "each reply sends the next message");
        // A reply that is not what was sent counts as a mismatch.
        let mut bad = Vec::new();
        encode_frame(&mut bad, true, OpCode::Text, &[b'0'; 40], None);
        let _ = c.on_data(&e, &mut io, &mut bad);
        assert_eq!(io.stats.errors.get(ErrorKind::EchoMismatch), 1);
    }

    #[test]
    fn bad_handshakes_and_server_close() {
        let e = env();
        let mut io = Io::default();
        let mut c = WsClient::new(Mode::Pub);
        c.request(&e, &mut io, "h", "/ws");
        let mut wrong = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            .to_vec();
        assert_eq!(
            c.on_data(&e, &mut io, &mut wrong).fatal,
            Some(ErrorKind::WsHandshake)
        );
        let mut c = WsClient::new(Mode::Pub);
        io.out.clear();
        c.request(&e, &mut io, "h", "/ws");
        let req = std::mem::take(&mut io.out);
        let going_away = close_code::GOING_AWAY.to_be_bytes();
        let mut bytes = answer(&req, &[(OpCode::Close, &going_away)]);
        let r = c.on_data(&e, &mut io, &mut bytes);
        assert_eq!(r.fatal, Some(ErrorKind::WsClosedByPeer));
        assert_eq!(r.consumed, bytes.len());
        // The reply echoes 1001, masked: 0x88, 0x82, key, 2 bytes.
        assert_eq!(&io.out[..2], &[0x88, 0x82]);
    }
}
