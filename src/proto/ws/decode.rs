//! The streaming frame decoder (RFC 6455 §5) for both roles.
//!
//! It never buffers and never allocates: data frame payload is unmasked in place in the
//! caller's buffer and handed out in whatever pieces are available, so a 1 MiB message needs no
//! 1 MiB buffer anywhere. Control frames (at most 125 bytes) are reported whole, so the caller
//! keeps at most `14 + 125` unconsumed bytes between calls. Header bytes are consumed only once
//! the whole header is present. Limits and every rule are checked on the header, before any
//! payload of that frame is delivered.
//!
//! Invariants after every call: `0 <= consumed <= input.len()`; `frame_left > 0` only between
//! a consumed header and the end of its payload; `message != None` only inside a message.

use super::close::is_valid_close_code;
use super::head::{parse_head, Rules};
use super::mask::apply_mask;
use super::utf8::Utf8Stream;
use super::{OpCode, Progress, Role, WsError, WsLimits};

/// Payload is unmasked and UTF-8 checked in blocks of this size (fits L1/L2 comfortably).
const BLOCK_BYTES: usize = 16 * 1024;

/// What the decoder found. Slices borrow the caller's buffer (already unmasked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A piece of a text or binary message: the piece of one frame's payload that was available.
    /// `fin` is true on the message's last piece (possibly empty: an empty message, or a message
    /// ending with an empty frame). Text pieces are valid UTF-8 as a sequence, but one piece may
    /// end or start inside a code point.
    Data {
        text: bool,
        payload: &'a [u8],
        fin: bool,
    },
    /// A whole ping (answer with a pong carrying the same bytes, §5.5.2).
    Ping(&'a [u8]),
    /// A whole pong.
    Pong(&'a [u8]),
    /// A whole, valid close frame (§5.5.1). Answer with [`super::close_reply`]. Everything after
    /// it on this connection is discarded.
    Close { code: Option<u16>, reason: &'a str },
}

/// Kind of the message in progress, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    None,
    Text,
    Binary,
}

/// Where the connection's incoming stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Open,
    /// A close frame arrived; later bytes are dropped.
    Closed,
    /// The peer broke a rule; every later call repeats the error.
    Failed(WsError),
}

/// RFC 6455 frame decoder for one connection; about 48 bytes of state.
///
/// Feed it the receive buffer, drop `consumed` bytes, keep the rest, and call again with the rest
/// plus new bytes; `event: None` means it needs more bytes. A frame may be split anywhere, and
/// the events do not depend on where (apart from how data payload is cut into pieces).
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: WsLimits,
    /// Payload bytes of the current data frame not yet delivered.
    frame_left: u64,
    /// Sum of the declared lengths of the current message's frames so far.
    message_bytes: u64,
    mask: [u8; 4],
    utf8: Utf8Stream,
    role: Role,
    masked: bool,
    /// Offset of the next payload byte into the mask (frame position mod 4).
    mask_offset: u8,
    frame_fin: bool,
    message: Message,
    stream: Stream,
    /// permessage-deflate was agreed (`allow_compression`).
    compression: bool,
    /// The current (or last) message's first frame had RSV1: its payload is compressed.
    compressed: bool,
}

impl Decoder {
    /// A decoder for the peer of `role`: `Role::Server` decodes what a client sends.
    pub fn new(role: Role, limits: WsLimits) -> Decoder {
        Decoder {
            limits,
            frame_left: 0,
            message_bytes: 0,
            mask: [0; 4],
            utf8: Utf8Stream::new(),
            role,
            masked: false,
            mask_offset: 0,
            frame_fin: false,
            message: Message::None,
            stream: Stream::Open,
            compression: false,
            compressed: false,
        }
    }

    /// permessage-deflate was agreed (RFC 7692): accept RSV1 on a message's first frame. The
    /// payload of such a message is handed out as it came (compressed) and not UTF-8 checked:
    /// the caller inflates it (appending [`super::deflate::TAIL`]) and checks the result.
    pub fn allow_compression(&mut self) {
        self.compression = true;
    }

    /// Whether the message of the last [`Event::Data`] is compressed (its first frame had RSV1).
    pub fn message_compressed(&self) -> bool {
        self.compressed
    }

    /// True once a close frame was decoded.
    pub fn is_closed(&self) -> bool {
        self.stream == Stream::Closed
    }

    /// True while a data message is incomplete (some of its pieces delivered, `fin` not yet).
    pub fn in_message(&self) -> bool {
        self.message != Message::None
    }

    /// Decode the next event from `input`, unmasking payload in place.
    ///
    /// On `Ok`, drop `consumed` bytes from the front of `input` before the next call. Bytes of
    /// `input` past `consumed` may already be unmasked only when an error follows, so the
    /// leftover is always the peer's original bytes on the happy path. After an `Err`, every
    /// call returns the same error: send [`WsError::close_frame`] and close.
    pub fn decode<'a>(&mut self, input: &'a mut [u8]) -> Result<Progress<Event<'a>>, WsError> {
        match self.stream {
            Stream::Failed(e) => return Err(e),
            Stream::Closed => {
                return Ok(Progress {
                    consumed: input.len(),
                    event: None,
                })
            }
            Stream::Open => {}
        }
        let result = self.step(input);
        if let Err(e) = result {
            self.stream = Stream::Failed(e);
        }
        result
    }

    fn step<'a>(&mut self, input: &'a mut [u8]) -> Result<Progress<Event<'a>>, WsError> {
        let mut pos = 0;
        // Headers of empty non-final fragments are consumed in this loop, so the call returns
        // either an event or "need more" with nothing decodable left in `input`.
        while self.frame_left == 0 {
            let rules = Rules {
                role: self.role,
                in_message: self.message != Message::None,
                message_bytes: self.message_bytes,
                message_bytes_max: self.limits.message_bytes_max,
                compression: self.compression,
            };
            let Some(head) = parse_head(&input[pos..], rules)? else {
                return Ok(Progress {
                    consumed: pos,
                    event: None,
                });
            };
            let payload_at = pos + head.head_bytes;
            if head.opcode.is_control() {
                // len <= 125 was checked in parse_head.
                let end = payload_at + head.len as usize;
                if input.len() < end {
                    return Ok(Progress {
                        consumed: pos,
                        event: None,
                    });
                }
                let payload = &mut input[payload_at..end];
                if let Some(key) = head.mask {
                    apply_mask(payload, key, 0);
                }
                let event = self.control(head.opcode, payload)?;
                return Ok(Progress {
                    consumed: end,
                    event: Some(event),
                });
            }
            pos = payload_at;
            match head.opcode {
                OpCode::Text | OpCode::Binary => {
                    self.message = if head.opcode == OpCode::Text {
                        Message::Text
                    } else {
                        Message::Binary
                    };
                    self.message_bytes = 0;
                    self.utf8 = Utf8Stream::new();
                    self.compressed = head.rsv1;
                }
                _ => {}
            }
            // Cannot overflow: parse_head checked message_bytes + len <= message_bytes_max.
            self.message_bytes += head.len;
            self.frame_left = head.len;
            self.frame_fin = head.fin;
            self.masked = head.mask.is_some();
            self.mask = head.mask.unwrap_or([0; 4]);
            self.mask_offset = 0;
            if head.len == 0 && head.fin {
                // The message ends with an empty frame: report its end, even for "".
                let text = self.message == Message::Text;
                self.message = Message::None;
                if text && !self.compressed && !self.utf8.is_complete() {
                    return Err(WsError::InvalidUtf8);
                }
                return Ok(Progress {
                    consumed: pos,
                    event: Some(Event::Data {
                        text,
                        payload: &[],
                        fin: true,
                    }),
                });
            }
        }
        self.payload(input, pos)
    }

    /// Deliver the available part of the current data frame's payload, starting at `pos`.
    fn payload<'a>(
        &mut self,
        input: &'a mut [u8],
        pos: usize,
    ) -> Result<Progress<Event<'a>>, WsError> {
        let available = input.len() - pos;
        if available == 0 {
            return Ok(Progress {
                consumed: pos,
                event: None,
            });
        }
        let n = self.frame_left.min(available as u64) as usize;
        let chunk = &mut input[pos..pos + n];
        self.frame_left -= n as u64;
        let fin = self.frame_fin && self.frame_left == 0;
        let text = self.message == Message::Text;
        // A compressed text is checked once inflated, by the caller.
        let validate = text && !self.compressed;
        // Unmask and validate block by block, so a big chunk is read from memory once and
        // validated while it is still in L1/L2, instead of two full passes.
        let mut done = 0;
        let mut invalid_at = None;
        for block in chunk.chunks_mut(BLOCK_BYTES) {
            if self.masked {
                apply_mask(block, self.mask, self.mask_offset as usize + done);
            }
            let len = block.len();
            if validate {
                if let Err(valid) = self.utf8.feed(block, fin && done + len == n) {
                    invalid_at = Some(done + valid);
                    break;
                }
            }
            done += len;
        }
        self.mask_offset = ((self.mask_offset as usize + n) % 4) as u8;
        if let Some(valid) = invalid_at {
            if valid == 0 {
                return Err(WsError::InvalidUtf8);
            }
            // Deliver the still-valid prefix first, so the bytes handed out before the error
            // are the same wherever the message was cut; the next call fails.
            self.stream = Stream::Failed(WsError::InvalidUtf8);
            return Ok(Progress {
                consumed: pos + valid,
                event: Some(Event::Data {
                    text,
                    payload: &chunk[..valid],
                    fin: false,
                }),
            });
        }
        if fin {
            self.message = Message::None;
        }
        Ok(Progress {
            consumed: pos + n,
            event: Some(Event::Data {
                text,
                payload: chunk,
                fin,
            }),
        })
    }

    /// Turn a whole, unmasked control frame payload into its event.
    fn control<'a>(&mut self, opcode: OpCode, payload: &'a [u8]) -> Result<Event<'a>, WsError> {
        match opcode {
            OpCode::Ping => Ok(Event::Ping(payload)),
            OpCode::Pong => Ok(Event::Pong(payload)),
            _ => {
                let (code, reason) = match payload {
                    [] => (None, ""),
                    [_] => return Err(WsError::CloseTooShort),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !is_valid_close_code(code) {
                            return Err(WsError::InvalidCloseCode);
                        }
                        let reason =
                            simdutf8::basic::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
                        (Some(code), reason)
                    }
                };
                self.stream = Stream::Closed;
                Ok(Event::Close { code, reason })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::close_code;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A raw frame with any first byte (FIN, RSV, opcode), masked with KEY when `masked`.
    fn raw(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![b0];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let start = out.len() + if masked { 4 } else { 0 };
        if masked {
            out.extend_from_slice(&KEY);
        }
        out.extend_from_slice(payload);
        if masked {
            apply_mask(&mut out[start..], KEY, 0);
        }
        out
    }

    #[derive(Debug, PartialEq)]
    enum Ev {
        Data(bool, Vec<u8>, bool),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    /// Feed `bytes` in one piece the way the engine does, collecting events up to the first
    /// error.
    fn run(role: Role, max: u64, bytes: &[u8]) -> (Vec<Ev>, Option<WsError>) {
        let mut dec = Decoder::new(
            role,
            WsLimits {
                message_bytes_max: max,
            },
        );
        let mut buf = bytes.to_vec();
        let mut events = Vec::new();
        loop {
            let len = buf.len();
            match dec.decode(&mut buf) {
                Err(e) => return (events, Some(e)),
                Ok(p) => {
                    assert!(p.consumed <= len);
                    let (consumed, done) = (p.consumed, p.event.is_none());
                    if let Some(ev) = p.event {
                        events.push(match ev {
                            Event::Data { text, payload, fin } => {
                                Ev::Data(text, payload.to_vec(), fin)
                            }
                            Event::Ping(p) => Ev::Ping(p.to_vec()),
                            Event::Pong(p) => Ev::Pong(p.to_vec()),
                            Event::Close { code, reason } => Ev::Close(code, reason.to_string()),
                        });
                    }
                    buf.drain(..consumed);
                    if done {
                        return (events, None);
                    }
                }
            }
        }
    }

    fn server(bytes: &[u8]) -> (Vec<Ev>, Option<WsError>) {
        run(Role::Server, 1 << 20, bytes)
    }

    fn err(bytes: &[u8]) -> Option<WsError> {
        server(bytes).1
    }

    /// RFC 6455 §5.2/§5.3: a masked text frame from a client, the §5.7 example.
    #[test]
    fn single_frame_5_7() {
        let (ev, e) = server(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
        assert_eq!(e, None);
        assert_eq!(ev, vec![Ev::Data(true, b"Hello".to_vec(), true)]);
        // Client role: unmasked server frames.
        let (ev, e) = run(Role::Client, 100, b"\x81\x05Hello\x82\x00");
        assert_eq!(e, None);
        assert_eq!(
            ev,
            vec![
                Ev::Data(true, b"Hello".to_vec(), true),
                Ev::Data(false, vec![], true)
            ]
        );
    }

    /// RFC 6455 §5.1/§5.3: the server rejects unmasked frames, the client rejects masked ones.
    #[test]
    fn mask_bit_by_role_5_1() {
        assert_eq!(err(&raw(0x81, b"hi", false)), Some(WsError::UnmaskedFrame));
        assert_eq!(
            run(Role::Client, 100, &raw(0x81, b"hi", true)).1,
            Some(WsError::MaskedFrame)
        );
        assert_eq!(
            WsError::UnmaskedFrame.close_code(),
            close_code::PROTOCOL_ERROR
        );
    }

    /// RFC 6455 §5.2: 16- and 64-bit lengths (non-minimal accepted), 64-bit top bit rejected.
    #[test]
    fn lengths_5_2() {
        let big = vec![b'a'; 70_000];
        let (ev, e) = server(&raw(0x82, &big, true));
        assert_eq!(e, None);
        assert_eq!(ev, vec![Ev::Data(false, big.clone(), true)]);
        let mid = vec![b'b'; 300];
        assert_eq!(
            server(&raw(0x81, &mid, true)).0,
            vec![Ev::Data(true, mid, true)]
        );
        // Non-minimal: 3 bytes with a 64-bit length.
        let mut f = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 3];
        f.extend_from_slice(&KEY);
        f.extend_from_slice(&[1 ^ KEY[0], 2 ^ KEY[1], 3 ^ KEY[2]]);
        assert_eq!(server(&f).0, vec![Ev::Data(false, vec![1, 2, 3], true)]);
        let mut top = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        top.extend_from_slice(&KEY);
        assert_eq!(err(&top), Some(WsError::LengthOverflow));
    }

    /// RFC 6455 §5.2: RSV bits without an extension and unknown opcodes are 1002.
    #[test]
    fn rsv_and_opcodes_5_2() {
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(
                err(&raw(0x81 | rsv, b"x", true)),
                Some(WsError::ReservedBits)
            );
        }
        for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                err(&raw(0x80 | op, b"", true)),
                Some(WsError::UnknownOpcode),
                "{op}"
            );
        }
        assert_eq!(
            WsError::ReservedBits.close_code(),
            close_code::PROTOCOL_ERROR
        );
    }

    /// RFC 6455 §5.4: fragments reassemble, control frames may be interleaved, continuation
    /// needs a started message, a new message may not start inside one.
    #[test]
    fn fragmentation_5_4() {
        let mut s = raw(0x01, b"Hel", true);
        s.extend(raw(0x89, b"p", true)); // ping in the middle
        s.extend(raw(0x00, b"", true)); // empty middle fragment: no event
        s.extend(raw(0x80, b"lo", true));
        let (ev, e) = server(&s);
        assert_eq!(e, None);
        assert_eq!(
            ev,
            vec![
                Ev::Data(true, b"Hel".to_vec(), false),
                Ev::Ping(b"p".to_vec()),
                Ev::Data(true, b"lo".to_vec(), true),
            ]
        );
        assert_eq!(
            err(&raw(0x80, b"x", true)),
            Some(WsError::ContinuationWithoutStart)
        );
        let mut s = raw(0x01, b"a", true);
        s.extend(raw(0x82, b"b", true));
        assert_eq!(err(&s), Some(WsError::MessageInterleaved));
        // An empty message, and a message whose last fragment is empty, report fin.
        let mut s = raw(0x81, b"", true);
        s.extend(raw(0x02, b"ab", true));
        s.extend(raw(0x80, b"", true));
        assert_eq!(
            server(&s).0,
            vec![
                Ev::Data(true, vec![], true),
                Ev::Data(false, b"ab".to_vec(), false),
                Ev::Data(false, vec![], true),
            ]
        );
    }

    /// RFC 6455 §5.5: control frames are at most 125 bytes and never fragmented.
    #[test]
    fn control_frames_5_5() {
        let ok = vec![7u8; 125];
        assert_eq!(server(&raw(0x8a, &ok, true)).0, vec![Ev::Pong(ok)]);
        assert_eq!(
            err(&raw(0x89, &[0u8; 126], true)),
            Some(WsError::ControlTooLong)
        );
        assert_eq!(err(&raw(0x09, b"", true)), Some(WsError::ControlFragmented));
        // A control frame is reported only whole: one byte short means need-more, nothing used.
        let f = raw(0x89, b"abc", true);
        let mut dec = Decoder::new(Role::Server, WsLimits::default());
        let mut part = f[..f.len() - 1].to_vec();
        assert_eq!(
            dec.decode(&mut part),
            Ok(Progress {
                consumed: 0,
                event: None
            })
        );
        let mut whole = f.clone();
        let p = dec.decode(&mut whole).unwrap();
        assert_eq!((p.consumed, p.event), (f.len(), Some(Event::Ping(b"abc"))));
    }

    /// RFC 6455 §5.5.1/§7.4: close payload forms, codes, and the UTF-8 reason.
    #[test]
    fn close_frames_5_5_1() {
        assert_eq!(
            server(&raw(0x88, b"", true)).0,
            vec![Ev::Close(None, String::new())]
        );
        assert_eq!(
            server(&raw(0x88, b"\x03\xe8bye", true)).0,
            vec![Ev::Close(Some(close_code::NORMAL), "bye".into())]
        );
        assert_eq!(err(&raw(0x88, b"\x03", true)), Some(WsError::CloseTooShort));
        for bad in [999u16, 1004, 1005, 1006, 1015, 2000, 5000] {
            let p = bad.to_be_bytes();
            assert_eq!(
                err(&raw(0x88, &p, true)),
                Some(WsError::InvalidCloseCode),
                "{bad}"
            );
        }
        assert_eq!(
            err(&raw(0x88, b"\x03\xe8\xff", true)),
            Some(WsError::InvalidUtf8)
        );
        // After a close, the rest is discarded.
        let mut s = raw(0x88, b"\x0f\xa0", true);
        s.extend(raw(0x81, b"late", true));
        assert_eq!(
            server(&s),
            (vec![Ev::Close(Some(4000), String::new())], None)
        );
    }

    /// RFC 6455 §8.1: invalid UTF-8 fails at the first bad byte, before the message ends, with
    /// the valid prefix delivered first; a message ending inside a code point fails too.
    #[test]
    fn text_utf8_8_1() {
        let mut s = raw(0x01, b"ok\xe2\x82", true);
        s.extend(raw(0x00, b"\xac!", true)); // "€" split across fragments
        s.extend(raw(0x80, b"", true));
        let (ev, e) = server(&s);
        assert_eq!(e, None);
        let all: Vec<u8> = ev
            .iter()
            .flat_map(|e| match e {
                Ev::Data(_, p, _) => p.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(all, "ok€!".as_bytes());
        // The bad byte is at index 3; a later FIN is never waited for.
        let (ev, e) = server(&raw(0x01, b"abc\xffdef", true));
        assert_eq!(ev, vec![Ev::Data(true, b"abc".to_vec(), false)]);
        assert_eq!(e, Some(WsError::InvalidUtf8));
        let (_, e) = server(&raw(0x81, b"ab\xe2\x82", true));
        assert_eq!(e, Some(WsError::InvalidUtf8));
        // Binary messages are not checked.
        assert_eq!(server(&raw(0x82, b"\xff", true)).1, None);
        assert_eq!(
            WsError::InvalidUtf8.close_code(),
            close_code::INVALID_PAYLOAD
        );
    }

    /// Message size limit: checked on the header, before any payload, across fragments.
    #[test]
    fn message_limit_1009() {
        let (ev, e) = run(Role::Server, 10, &raw(0x82, &[0; 11], true));
        assert_eq!((ev, e), (vec![], Some(WsError::MessageTooBig)));
        let mut s = raw(0x02, &[0; 6], true);
        s.extend(raw(0x80, &[0; 4], true));
        assert_eq!(run(Role::Server, 10, &s).1, None);
        let mut s = raw(0x02, &[0; 6], true);
        s.extend(raw(0x80, &[0; 5], true));
        let (ev, e) = run(Role::Server, 10, &s);
        assert_eq!(ev.len(), 1);
        assert_eq!(e, Some(WsError::MessageTooBig));
        // The header alone is enough to refuse: no payload bytes need to have arrived.
        let mut head = vec![0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0];
        head.extend_from_slice(&KEY);
        assert_eq!(
            run(Role::Server, 1 << 20, &head).1,
            Some(WsError::MessageTooBig)
        );
        assert_eq!(
            WsError::MessageTooBig.close_code(),
            close_code::MESSAGE_TOO_BIG
        );
    }

    /// Streaming: a frame's payload arrives in pieces, each unmasked at its offset; header bytes
    /// are consumed only when complete; the error state is sticky.
    #[test]
    fn streaming_pieces_5_3() {
        let payload: Vec<u8> = (0..200u8).collect();
        let f = raw(0x82, &payload, true);
        let mut dec = Decoder::new(Role::Server, WsLimits::default());
        let mut got = Vec::new();
        let mut left: Vec<u8> = Vec::new();
        for piece in f.chunks(7) {
            left.extend_from_slice(piece);
            let p = dec.decode(&mut left).unwrap();
            let consumed = p.consumed;
            if let Some(Event::Data { payload, .. }) = p.event {
                got.extend_from_slice(payload);
            }
            left.drain(..consumed);
            assert!(left.len() < 14, "payload is never held back");
        }
        assert_eq!(got, payload);
        assert!(!dec.in_message());
        let mut bad = raw(0x81, b"x", false);
        assert!(dec.decode(&mut bad).is_err());
        assert_eq!(dec.decode(&mut []), Err(WsError::UnmaskedFrame));
    }

    /// RFC 6455 §5.3/§8.1 on big chunks, which are unmasked and validated in blocks: a code
    /// point straddling a block edge is fine, and a bad byte far in is found at its index.
    #[test]
    fn big_chunks_in_blocks_8_1() {
        let mut text = vec![b'a'; 40_000];
        let edge = BLOCK_BYTES - 1;
        text[edge..edge + 3].copy_from_slice("€".as_bytes());
        let (ev, e) = server(&raw(0x81, &text, true));
        assert_eq!((ev, e), (vec![Ev::Data(true, text.clone(), true)], None));
        text[2 * BLOCK_BYTES + 5] = 0xff;
        let (ev, e) = server(&raw(0x81, &text, true));
        assert_eq!(
            ev,
            vec![Ev::Data(true, text[..2 * BLOCK_BYTES + 5].to_vec(), false)]
        );
        assert_eq!(e, Some(WsError::InvalidUtf8));
        // A 4-byte code point cut by the block edge, then the message ends inside one.
        let mut text = vec![b'b'; BLOCK_BYTES + 10];
        text[edge - 1..edge + 3].copy_from_slice("𝄞".as_bytes());
        text.extend_from_slice(b"\xf0\x9f");
        let (ev, e) = server(&raw(0x81, &text, true));
        assert_eq!(ev, vec![Ev::Data(true, text.clone(), false)]);
        assert_eq!(e, Some(WsError::InvalidUtf8));
    }

    /// An idle connection's decoder state stays small (DESIGN: idle connections cost little).
    #[test]
    fn decoder_is_small() {
        assert!(
            std::mem::size_of::<Decoder>() <= 48,
            "{}",
            std::mem::size_of::<Decoder>()
        );
    }
}
