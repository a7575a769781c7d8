//! Property tests for the frame codec: encode then decode gives back the messages, in both
//! roles, with random masks, fragmentation and interleaved control frames; and the outcome
//! (messages, error, bytes delivered before it) does not depend on how the stream is cut.

use proptest::prelude::*;

use super::*;

/// A control frame sent on its own or between two fragments of a message.
#[derive(Debug, Clone, PartialEq)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// One thing the peer sends: a whole control frame, or a message cut into fragments with
/// optional control frames after some of them.
#[derive(Debug, Clone)]
enum Item {
    Control(Control),
    Message {
        text: bool,
        bytes: Vec<u8>,
        cuts: Vec<prop::sample::Index>,
        between: Vec<Option<Control>>,
    },
}

/// What the application sees: whole messages and control frames, in order.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Message(bool, Vec<u8>),
    Control(Control),
    Close(Option<u16>, String),
}

/// Everything observable from decoding a stream: what was reassembled, the error, and the
/// bytes of the unfinished message delivered before it.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<Out>,
    error: Option<WsError>,
    partial: Vec<u8>,
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Control::Ping),
        prop::collection::vec(any::<u8>(), 0..=20).prop_map(Control::Pong),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    let text = ".{0,24}".prop_map(|s: String| (true, s.into_bytes()));
    let binary = prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b));
    prop_oneof![
        1 => control().prop_map(Item::Control),
        4 => (
            prop_oneof![text, binary],
            prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            prop::collection::vec(prop::option::weighted(0.3, control()), 4),
        )
            .prop_map(|((text, bytes), cuts, between)| Item::Message { text, bytes, cuts, between }),
    ]
}

/// Fragment boundaries of `len` bytes (sorted, deduplicated; empty fragments allowed at the
/// ends).
fn bounds(len: usize, cuts: &[prop::sample::Index]) -> Vec<(usize, usize)> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for to in at.into_iter().chain([len]) {
        if to > from || out.is_empty() {
            out.push((from, to));
        }
        from = to;
    }
    if from < len {
        out.push((from, len));
    }
    out
}

/// Encode `items` as the peer of `role` would send them (a client masks with fresh keys), and
/// return the stream plus the outcome a correct decoder must report.
fn encode(role: Role, items: &[Item], close: Option<u16>, seed: u64) -> (Vec<u8>, Vec<Out>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut key = || (role == Role::Server).then(|| rng.u32(..).to_ne_bytes());
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let send_control = |stream: &mut Vec<u8>, want: &mut Vec<Out>, c: &Control, key| {
        let (op, p) = match c {
            Control::Ping(p) => (OpCode::Ping, p),
            Control::Pong(p) => (OpCode::Pong, p),
        };
        encode_frame(stream, true, op, p, key);
        want.push(Out::Control(c.clone()));
    };
    for item in items {
        match item {
            Item::Control(c) => send_control(&mut stream, &mut want, c, key()),
            Item::Message {
                text,
                bytes,
                cuts,
                between,
            } => {
                let parts = bounds(bytes.len(), cuts);
                for (i, &(from, to)) in parts.iter().enumerate() {
                    let op = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    let fin = i + 1 == parts.len();
                    encode_frame(&mut stream, fin, op, &bytes[from..to], key());
                    if !fin {
                        if let Some(Some(c)) = between.get(i) {
                            send_control(&mut stream, &mut want, c, key());
                        }
                    }
                }
                want.push(Out::Message(*text, bytes.clone()));
            }
        }
    }
    if let Some(code) = close {
        let frame = ControlFrame::close(Some(code), "done", key());
        stream.extend_from_slice(frame.as_bytes());
        want.push(Out::Close(Some(code), "done".into()));
    }
    (stream, want)
}

/// Decode `stream` delivered in pieces ending at `ends` (then the rest), keeping leftover the
/// way the engine does.
fn drive(role: Role, max: u64, stream: &[u8], ends: &[usize]) -> Outcome {
    let mut dec = Decoder::new(
        role,
        WsLimits {
            message_bytes_max: max,
        },
    );
    let mut left: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut partial = Vec::new();
    let mut from = 0;
    for to in ends
        .iter()
        .copied()
        .filter(|&e| e <= stream.len())
        .chain([stream.len()])
    {
        if to < from {
            continue;
        }
        left.extend_from_slice(&stream[from..to]);
        from = to;
        loop {
            let len = left.len();
            let p = match dec.decode(&mut left) {
                Ok(p) => p,
                Err(error) => {
                    return Outcome {
                        out,
                        error: Some(error),
                        partial,
                    }
                }
            };
            assert!(p.consumed <= len);
            let consumed = p.consumed;
            let Some(event) = p.event else {
                left.drain(..consumed);
                // Only a partial header or a partial control frame is ever left over.
                assert!(left.len() < HEAD_BYTES_MAX + CONTROL_PAYLOAD_BYTES_MAX || dec.is_closed());
                break;
            };
            match event {
                Event::Data { text, payload, fin } => {
                    partial.extend_from_slice(payload);
                    if fin {
                        out.push(Out::Message(text, std::mem::take(&mut partial)));
                    }
                }
                Event::Ping(p) => out.push(Out::Control(Control::Ping(p.to_vec()))),
                Event::Pong(p) => out.push(Out::Control(Control::Pong(p.to_vec()))),
                Event::Close { code, reason } => out.push(Out::Close(code, reason.into())),
            }
            left.drain(..consumed);
        }
    }
    Outcome {
        out,
        error: None,
        partial,
    }
}

fn random_ends(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ends = Vec::new();
    let mut at = 0;
    while at < len {
        at += rng.usize(1..=len.min(40));
        ends.push(at);
    }
    ends
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

proptest! {
    /// RFC 6455 §5.3, §5.4, §5.5: decode(encode(x)) == x for fragmented messages with
    /// interleaved control frames, in both roles, with random masks and random read sizes.
    #[test]
    fn round_trip(
        role in role(),
        items in prop::collection::vec(item(), 0..6),
        close in prop::option::of(prop_oneof![Just(close_code::NORMAL), Just(close_code::GOING_AWAY), 3000..5000u16]),
        seed in any::<u64>(),
    ) {
        let (stream, want) = encode(role, &items, close, seed);
        let whole = drive(role, 1 << 20, &stream, &[]);
        prop_assert_eq!(&whole, &Outcome { out: want, error: None, partial: vec![] });
        let pieces = drive(role, 1 << 20, &stream, &random_ends(stream.len(), seed));
        prop_assert_eq!(&pieces, &whole);
    }

    /// Cutting a valid stream at every single point gives the same outcome as feeding it whole.
    #[test]
    fn every_split_point(
        role in role(),
        items in prop::collection::vec(item(), 0..3),
        seed in any::<u64>(),
    ) {
        let (stream, _) = encode(role, &items, None, seed);
        let whole = drive(role, 1 << 20, &stream, &[]);
        for cut in 0..=stream.len() {
            prop_assert_eq!(&drive(role, 1 << 20, &stream, &[cut]), &whole, "cut {}", cut);
        }
    }

    /// Damaged streams: whatever the flipped bytes cause (any error, or none), the outcome is
    /// the same for every cut and for random reads, and a small message limit (1009) too.
    #[test]
    fn corrupt_stream_split_invariant(
        role in role(),
        items in prop::collection::vec(item(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        max in prop_oneof![Just(1u64 << 20), 0..64u64],
        seed in any::<u64>(),
    ) {
        let (mut stream, _) = encode(role, &items, None, seed);
        if !stream.is_empty() {
            for (at, byte) in &flips {
                let i = at.index(stream.len());
                stream[i] ^= byte;
            }
        }
        let whole = drive(role, max, &stream, &[]);
        for cut in 0..=stream.len().min(200) {
            prop_assert_eq!(&drive(role, max, &stream, &[cut]), &whole, "cut {}", cut);
        }
        prop_assert_eq!(&drive(role, max, &stream, &random_ends(stream.len(), seed)), &whole);
    }

    /// RFC 6455 §8.1: invalid UTF-8 is reported as 1007 after exactly the valid prefix, the
    /// same wherever frames and reads cut the text.
    #[test]
    fn invalid_utf8_same_position(
        role in role(),
        prefix in ".{0,12}",
        bad in prop_oneof![
            Just(&b"\xff"[..]), Just(&b"\xc0\xaf"[..]), Just(&b"\xe2\x82"[..]),
            Just(&b"\xed\xa0\x80"[..]), Just(&b"\xf4\x90\x80\x80"[..]), Just(&b"\xf0\x9f\x98"[..]),
            Just(&b"\xe1\x41"[..]),
        ],
        suffix in ".{0,12}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        seed in any::<u64>(),
    ) {
        let mut bytes = prefix.into_bytes();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(suffix.as_bytes());
        let at = match std::str::from_utf8(&bytes) {
            Ok(_) => unreachable!("bad sequences are invalid"),
            Err(e) => match e.error_len() {
                None => bytes.len(),
                Some(n) if bytes[e.valid_up_to()] >= 0xc2 && bytes[e.valid_up_to()] <= 0xf4 => {
                    e.valid_up_to() + n
                }
                Some(_) => e.valid_up_to(),
            },
        };
        let item = Item::Message { text: true, bytes: bytes.clone(), cuts, between: vec![] };
        let (stream, _) = encode(role, &[item], None, seed);
        let whole = drive(role, 1 << 20, &stream, &[]);
        prop_assert_eq!(whole.error, Some(WsError::InvalidUtf8));
        prop_assert_eq!(&whole.partial[..], &bytes[..at]);
        prop_assert_eq!(&drive(role, 1 << 20, &stream, &random_ends(stream.len(), seed)), &whole);
        for cut in 0..=stream.len() {
            prop_assert_eq!(&drive(role, 1 << 20, &stream, &[cut]), &whole);
        }
    }
}
