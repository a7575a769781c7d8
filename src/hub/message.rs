//! A published message, encoded once per wire format at publish time.
//!
//! [`Message`] holds the complete SSE event bytes and the complete WebSocket text frame bytes
//! (header and payload in one buffer). Fan-out clones the `Arc<Message>` or the `Bytes` handle;
//! nothing is re-encoded per subscriber. Each buffer is sized exactly before it is written, so
//! `Bytes::from(Vec)` takes it over without a copy or a second allocation.
//!
//! Byte layouts (`I` = id in its wire form `epoch-seq`, see [`super::id`], `E` = event name,
//! `T` = topic, `D` = data):
//!
//! ```text
//! sse: id: I\n  [event: E\n]  data: D-line\n ...  \n
//! ws:  0x81 | len7 [len16 | len64] | {"topic":"T","id":"I"[,"event":"E"],"data":"D"}
//! ```
//!
//! Also here: the reset notices sent when a replay finds a gap. Never here: sockets, clocks,
//! per-subscriber state.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

use super::id::EventId;
use crate::proto::sse::{self, Id, OutEvent};
use crate::proto::ws::deflate::{RSV1, TAIL, WINDOW_BITS_MAX, WINDOW_BITS_MIN};
use crate::proto::ws::{fmt_head, OpCode, HEAD_BYTES_MAX};

/// One published message, shared by every subscriber and the replay history.
#[derive(Debug)]
pub struct Message {
    /// Sequence number: server-wide, strictly increasing within one epoch. The wire id (SSE
    /// `id:`, WS `"id"`) is [`Message::event_id`].
    pub id: u64,
    pub epoch: u64,
    pub topic: Arc<str>,
    pub event: Option<Box<str>>,
    /// The whole SSE event, blank line included.
    pub sse: Bytes,
    /// The whole WebSocket text frame: unmasked server header plus JSON payload.
    pub ws: Bytes,
    /// The permessage-deflate frame per [`DeflateWindow`], made by the first delivery to a
    /// subscriber that agreed to it ([`Message::ws_deflated`]) and shared by every later one.
    deflated: [OnceLock<Bytes>; 2],
}

/// The compression window of a permessage-deflate frame: what the subscriber's
/// `server_max_window_bits` allows. Two classes, so a message is compressed at most twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflateWindow {
    /// 32 KiB (15 bits): no bound asked, or 15.
    Full,
    /// 512 bytes (9 bits), within any bound from 9 to 14.
    Small,
}

impl DeflateWindow {
    /// The class for an agreed `server_max_window_bits`.
    pub fn for_bits(bits: u8) -> DeflateWindow {
        if bits >= WINDOW_BITS_MAX {
            DeflateWindow::Full
        } else {
            DeflateWindow::Small
        }
    }

    fn bits(self) -> u8 {
        match self {
            DeflateWindow::Full => WINDOW_BITS_MAX,
            DeflateWindow::Small => WINDOW_BITS_MIN,
        }
    }
}

thread_local! {
    /// One raw-deflate compressor per window class and thread, reset for every message
    /// (server_no_context_takeover): a worker's compressors are its whole deflate state for
    /// sending, however many subscribers agreed to compression.
    static COMPRESSORS: RefCell<[Option<Compress>; 2]> = const { RefCell::new([None, None]) };
}

impl Message {
    /// Encodes both wire forms. Inputs are validated by `Topics::publish` (event name without
    /// CR/LF/NUL), which is why the SSE encoder cannot fail here.
    pub(crate) fn encode(id: EventId, topic: Arc<str>, event: Option<&str>, data: &str) -> Message {
        let mut id_text = Vec::with_capacity(id.len());
        id.write(&mut id_text);
        let id_text = std::str::from_utf8(&id_text).expect("ASCII digits and '-'");
        let ev = OutEvent {
            id: Some(Id::Str(id_text)),
            event,
            retry_ms: None,
            data,
        };
        let sse_len = sse::encoded_len(&ev).expect("event name validated by publish");
        let mut sse_buf = Vec::with_capacity(sse_len);
        sse::encode(&mut sse_buf, &ev).expect("event name validated by publish");

        let payload_len = ws_payload_len(&topic, id, event, data);
        let mut head = [0u8; HEAD_BYTES_MAX];
        let head_len = fmt_head(&mut head, true, OpCode::Text, payload_len as u64, None);
        let mut ws_buf = Vec::with_capacity(head_len + payload_len);
        ws_buf.extend_from_slice(&head[..head_len]);
        push_ws_payload(&mut ws_buf, &topic, id, event, data);
        debug_assert_eq!(
            ws_buf.len(),
            head_len + payload_len,
            "ws_payload_len is wrong"
        );

        Message {
            id: id.seq,
            epoch: id.epoch,
            topic,
            event: event.map(Box::from),
            sse: Bytes::from(sse_buf),
            ws: Bytes::from(ws_buf),
            deflated: Default::default(),
        }
    }

    /// The WebSocket frame compressed with permessage-deflate (RFC 7692: RSV1, the JSON
    /// deflated on its own, the final `00 00 ff ff` left out), for subscribers that agreed to
    /// `window`. Made once per message and window, by whichever thread asks first; `true` with
    /// it when this call made it.
    pub fn ws_deflated(&self, window: DeflateWindow) -> (&Bytes, bool) {
        let mut made = false;
        let frame = self.deflated[window as usize].get_or_init(|| {
            made = true;
            COMPRESSORS.with(|c| {
                let mut c = c.borrow_mut();
                let z = c[window as usize].get_or_insert_with(|| {
                    Compress::new_with_window_bits(Compression::default(), false, window.bits())
                });
                deflate_frame(z, &self.json())
            })
        });
        (frame, made)
    }

    pub fn event_id(&self) -> EventId {
        EventId {
            epoch: self.epoch,
            seq: self.id,
        }
    }

    /// The JSON object of the WebSocket frame (`{"topic":...}`), without the frame header: a
    /// shared slice of `ws`, not a copy. Long-poll answers are made of these.
    pub fn json(&self) -> Bytes {
        // A server frame is unmasked: the header is 2 bytes, plus 2 or 8 for a length over 125.
        let head = match self.ws[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        self.ws.slice(head..)
    }

    /// What this message costs the history budget: both encoded buffers, in bytes.
    pub fn held_bytes(&self) -> usize {
        self.sse.len() + self.ws.len()
    }
}

/// `payload` deflated on its own into a whole server text frame with RSV1.
fn deflate_frame(z: &mut Compress, payload: &[u8]) -> Bytes {
    z.reset();
    let mut body = Vec::with_capacity(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        let before = z.total_in();
        z.compress_vec(input, &mut body, FlushCompress::Sync)
            .expect("raw deflate of a complete buffer cannot fail");
        input = &input[(z.total_in() - before) as usize..];
        // Done when the input is used up and the flush had room to finish.
        if input.is_empty() && body.len() < body.capacity() {
            break;
        }
        body.reserve(body.capacity().max(64));
    }
    if body.ends_with(&TAIL) {
        body.truncate(body.len() - TAIL.len());
    }
    let mut head = [0u8; HEAD_BYTES_MAX];
    let head_len = fmt_head(&mut head, true, OpCode::Text, body.len() as u64, None);
    head[0] |= RSV1;
    let mut frame = Vec::with_capacity(head_len + body.len());
    frame.extend_from_slice(&head[..head_len]);
    frame.extend_from_slice(&body);
    Bytes::from(frame)
}

/// SSE notice sent before replayed events when the history no longer reaches back:
/// `event: reset\ndata: {"oldest":"I","requested":"R"}\n\n`, `R` being what the client sent.
/// It has no `id:`, so the client's last event ID stays where the replayed events put it.
pub fn sse_reset(oldest: EventId, requested: &str) -> Bytes {
    let mut json = Vec::with_capacity(64);
    push_reset_json(&mut json, None, oldest, requested);
    let json = std::str::from_utf8(&json).expect("JSON built from ASCII");
    let mut out = Vec::with_capacity(json.len() + 32);
    sse::write_event(&mut out, "reset").expect("constant name");
    sse::write_data(&mut out, json);
    sse::write_end(&mut out);
    Bytes::from(out)
}

/// WebSocket text frame `{"op":"reset","topic":"T","oldest":"I","requested":"R"}`, one per
/// topic whose history no longer reaches back.
pub fn ws_reset(topic: &str, oldest: EventId, requested: &str) -> Bytes {
    let mut json = Vec::with_capacity(64 + topic.len());
    push_reset_json(&mut json, Some(topic), oldest, requested);
    let mut head = [0u8; HEAD_BYTES_MAX];
    let head_len = fmt_head(&mut head, true, OpCode::Text, json.len() as u64, None);
    let mut out = Vec::with_capacity(head_len + json.len());
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(&json);
    Bytes::from(out)
}

fn push_reset_json(out: &mut Vec<u8>, topic: Option<&str>, oldest: EventId, requested: &str) {
    if let Some(topic) = topic {
        out.extend_from_slice(br#"{"op":"reset","topic":"#);
        push_json_str(out, topic);
        out.extend_from_slice(br#","oldest":"#);
    } else {
        out.extend_from_slice(br#"{"oldest":"#);
    }
    out.push(b'"');
    oldest.write(out);
    out.push(b'"');
    out.extend_from_slice(br#","requested":"#);
    push_json_str(out, requested);
    out.push(b'}');
}

fn ws_payload_len(topic: &str, id: EventId, event: Option<&str>, data: &str) -> usize {
    let mut n = r#"{"topic":,"id":"","data":}"#.len() + json_str_len(topic) + id.len();
    n += json_str_len(data);
    if let Some(e) = event {
        n += r#","event":"#.len() + json_str_len(e);
    }
    n
}

fn push_ws_payload(out: &mut Vec<u8>, topic: &str, id: EventId, event: Option<&str>, data: &str) {
    out.extend_from_slice(br#"{"topic":"#);
    push_json_str(out, topic);
    out.extend_from_slice(br#","id":""#);
    id.write(out);
    out.push(b'"');
    if let Some(e) = event {
        out.extend_from_slice(br#","event":"#);
        push_json_str(out, e);
    }
    out.extend_from_slice(br#","data":"#);
    push_json_str(out, data);
    out.push(b'}');
}

/// JSON escape for one byte (RFC 8259 §7): quote, backslash and controls below 0x20 must be
/// escaped. Everything else, UTF-8 included, passes through.
fn json_escape(b: u8) -> Option<&'static [u8]> {
    let esc: &'static [u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        0..=0x1f => UNICODE_ESCAPE, // followed by two hex digits
        _ => return None,
    };
    Some(esc)
}

/// Prefix of the six-byte `\u00XX` form for the other control bytes.
const UNICODE_ESCAPE: &[u8] = b"\\u00";

/// How many bytes of `s` need an escape. A branch-free count rather than a search, so the
/// compiler vectorises it: most payloads have none and take the copy-only path below.
fn escapes(s: &[u8]) -> usize {
    s.iter()
        .map(|&b| usize::from(b < 0x20 || b == b'"' || b == b'\\'))
        .sum()
}

fn json_str_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if escapes(bytes) == 0 {
        return 2 + bytes.len();
    }
    2 + bytes
        .iter()
        .map(|&b| match json_escape(b) {
            None => 1,
            Some(UNICODE_ESCAPE) => 6,
            Some(e) => e.len(),
        })
        .sum::<usize>()
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    if escapes(bytes) == 0 {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain = 0; // start of the run of bytes that need no escape
    for (i, &b) in bytes.iter().enumerate() {
        let Some(esc) = json_escape(b) else { continue };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(esc);
        if esc == UNICODE_ESCAPE {
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Epoch 9 keeps the expected bytes short.
    fn id(seq: u64) -> EventId {
        EventId { epoch: 9, seq }
    }

    /// Splits a server frame into (opcode byte, payload) per RFC 6455 §5.2, checking the length.
    fn unframe(frame: &[u8]) -> (u8, &[u8]) {
        assert_eq!(frame[1] & 0x80, 0, "server frames are not masked (§5.1)");
        let (len, at) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert_eq!(
            frame.len(),
            at + len,
            "frame length field matches the payload"
        );
        (frame[0], &frame[at..])
    }

    #[test]
    fn deflated_frames_inflate_to_the_json_and_are_made_once_rfc7692_7_2() {
        use flate2::{Decompress, FlushDecompress};
        let data = "{\"price\": 42} ".repeat(300);
        let m = Message::encode(id(5), "t".into(), None, &data);
        for window in [DeflateWindow::Full, DeflateWindow::Small] {
            let (frame, made) = m.ws_deflated(window);
            assert!(made);
            assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
            let (_, payload) = unframe(&frame[..]);
            assert!(
                payload.len() < m.json().len() / 4,
                "compressed: {}",
                payload.len()
            );
            let mut z = Decompress::new_with_window_bits(false, window.bits());
            let mut input = payload.to_vec();
            input.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(m.json().len() + 16);
            z.decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, &m.json()[..]);
            let (again, made) = m.ws_deflated(window);
            assert!(!made, "made once");
            assert_eq!(again.as_ptr(), frame.as_ptr(), "shared, not copied");
        }
    }

    /// A measurement, run by hand (docs/benchmarks.md): `cargo test --release --lib
    /// deflate_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn deflate_cost_per_message() {
        let data: String = (0..24)
            .map(|i| {
                format!(
                    "{{\"sym\":\"S{i}\",\"bid\":{}.25,\"ask\":{}.5}},",
                    100 + i,
                    100 + i
                )
            })
            .collect();
        let n = 20_000;
        for window in [DeflateWindow::Full, DeflateWindow::Small] {
            let msgs: Vec<Message> = (0..n)
                .map(|i| Message::encode(id(i), "prices".into(), None, &data))
                .collect();
            let t = std::time::Instant::now();
            let bytes: usize = msgs.iter().map(|m| m.ws_deflated(window).0.len()).sum();
            let per = t.elapsed() / n as u32;
            println!(
                "{window:?}: {per:?} per message, {} B frame -> {} B compressed",
                msgs[0].ws.len(),
                bytes / n as usize
            );
        }
    }

    #[test]
    fn json_is_the_frame_payload_at_every_length_form() {
        for len in [0, 100, 125, 200, 70_000] {
            let data = "x".repeat(len);
            let m = Message::encode(id(3), "t".into(), None, &data);
            let (_, payload) = unframe(&m.ws);
            assert_eq!(&m.json()[..], payload, "data of {len} bytes");
            let v: Value = serde_json::from_slice(&m.json()).unwrap();
            assert_eq!(v["data"], data.as_str());
        }
    }

    #[test]
    fn sse_bytes_are_one_whole_event() {
        let m = Message::encode(id(7), "t".into(), Some("price"), "a\nb");
        assert_eq!(&m.sse[..], b"id: 9-7\nevent: price\ndata: a\ndata: b\n\n");
        let m = Message::encode(id(8), "t".into(), None, "");
        assert_eq!(&m.sse[..], b"id: 9-8\ndata:\n\n");
        assert_eq!(m.held_bytes(), m.sse.len() + m.ws.len());
    }

    #[test]
    fn ws_frame_is_fin_text_with_json_payload_rfc6455_5_2() {
        let m = Message::encode(id(42), "room.1".into(), Some("msg"), "hi \"x\"\n\u{1}é");
        let (op, payload) = unframe(&m.ws);
        assert_eq!(op, 0x81);
        let v: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(v["topic"], "room.1");
        assert_eq!(v["id"], "9-42", "id is a JSON string in wire form");
        assert_eq!(v["event"], "msg");
        assert_eq!(v["data"], "hi \"x\"\n\u{1}é");
        let m = Message::encode(id(1), "t".into(), None, "d");
        let v: Value = serde_json::from_slice(unframe(&m.ws).1).unwrap();
        assert!(v.get("event").is_none(), "absent event is omitted");
    }

    #[test]
    fn ws_length_forms_at_each_boundary_rfc6455_5_2() {
        // Payload overhead for topic "t", id 9-1, no event: {"topic":"t","id":"9-1","data":""}.
        let overhead = Message::encode(id(1), "t".into(), None, "").ws.len() - 2;
        for (payload_len, head_len) in [(125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)] {
            let data = "x".repeat(payload_len - overhead);
            let m = Message::encode(id(1), "t".into(), None, &data);
            assert_eq!(m.ws.len(), head_len + payload_len, "payload {payload_len}");
            let (_, payload) = unframe(&m.ws);
            assert_eq!(payload.len(), payload_len);
        }
    }

    /// The header bytes themselves at each length form: FIN + text, no mask, shortest length
    /// encoding (RFC 6455 §5.2).
    #[test]
    fn ws_header_bytes_rfc6455_5_2() {
        let overhead = Message::encode(id(1), "t".into(), None, "").ws.len() - 2;
        let table: [(usize, &[u8]); 5] = [
            (40, &[0x81, 40]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (65535, &[0x81, 126, 0xff, 0xff]),
            (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (payload_len, head) in table {
            let data = "x".repeat(payload_len - overhead);
            let m = Message::encode(id(1), "t".into(), None, &data);
            assert_eq!(&m.ws[..head.len()], head, "payload {payload_len}");
            assert_eq!(&m.ws[head.len()..head.len() + 9], br#"{"topic":"#);
        }
        let f = ws_reset("a", id(1), "9-0");
        assert_eq!(&f[..2], &[0x81, (f.len() - 2) as u8]);
    }

    #[test]
    fn json_escaping_matches_serde_for_every_control_and_special() {
        let mut s = String::new();
        for c in 0u8..0x80 {
            s.push(char::from(c));
        }
        s.push_str("é€😀\u{2028}");
        let mut out = Vec::new();
        push_json_str(&mut out, &s);
        assert_eq!(out.len(), json_str_len(&s));
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn reset_notices_wire_form() {
        assert_eq!(
            &sse_reset(id(5), "8-2")[..],
            b"event: reset\ndata: {\"oldest\":\"9-5\",\"requested\":\"8-2\"}\n\n"
        );
        let f = ws_reset("a.b", id(5), "9-2");
        let (op, payload) = unframe(&f);
        assert_eq!(op, 0x81);
        let v: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op":"reset","topic":"a.b","oldest":"9-5","requested":"9-2"})
        );
    }

    #[test]
    fn buffers_are_exactly_sized_so_bytes_takes_them_without_copy() {
        let m = Message::encode(id(123456), "t".into(), Some("e"), "x\r\ny");
        let mut out = Vec::new();
        let ev = OutEvent {
            id: Some(Id::Str("9-123456")),
            event: Some("e"),
            retry_ms: None,
            data: "x\r\ny",
        };
        sse::encode(&mut out, &ev).unwrap();
        assert_eq!(&m.sse[..], &out[..]);
        assert_eq!(
            m.ws.len(),
            2 + ws_payload_len("t", id(123456), Some("e"), "x\r\ny")
        );
    }
}
