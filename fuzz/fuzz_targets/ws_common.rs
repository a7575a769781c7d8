//! Shared body of the `ws_server` and `ws_client` targets: the WebSocket decoder over arbitrary
//! peer bytes, read in pieces whose sizes come from the first input byte, keeping leftover the
//! way the engine does. Checks: no panic, `consumed <= len`, leftover bounded by a header plus a
//! control frame, and the outcome is the same as decoding the whole input in one read.

use uringcast::proto::ws::{
    Decoder, Event, WsError, WsLimits, CONTROL_PAYLOAD_BYTES_MAX, HEAD_BYTES_MAX,
};
use uringcast::proto::Role;

/// Decode `stream` in reads of `read` bytes (0: all at once); a digest of every event.
fn drive(
    role: Role,
    stream: &[u8],
    read: usize,
    limit: u64,
) -> (Vec<(u8, Vec<u8>)>, Option<WsError>) {
    let mut dec = Decoder::new(
        role,
        WsLimits {
            message_bytes_max: limit,
        },
    );
    let mut left = Vec::new();
    let (mut seen, mut partial) = (Vec::new(), Vec::new());
    let read = if read == 0 { stream.len().max(1) } else { read };
    for piece in stream.chunks(read) {
        left.extend_from_slice(piece);
        loop {
            let len = left.len();
            let p = match dec.decode(&mut left) {
                Ok(p) => p,
                Err(e) => {
                    assert_eq!(dec.decode(&mut []), Err(e), "errors are sticky");
                    seen.push((0, partial));
                    return (seen, Some(e));
                }
            };
            assert!(p.consumed <= len);
            let consumed = p.consumed;
            let Some(event) = p.event else {
                left.drain(..consumed);
                assert!(dec.is_closed() || left.len() < HEAD_BYTES_MAX + CONTROL_PAYLOAD_BYTES_MAX);
                break;
            };
            match event {
                Event::Data { text, payload, fin } => {
                    partial.extend_from_slice(payload);
                    if fin {
                        if text {
                            assert!(std::str::from_utf8(&partial).is_ok());
                        }
                        seen.push((1 + text as u8, std::mem::take(&mut partial)));
                    }
                }
                Event::Ping(p) => seen.push((3, p.to_vec())),
                Event::Pong(p) => seen.push((4, p.to_vec())),
                Event::Close { code, reason } => {
                    let mut v = code.unwrap_or(0).to_be_bytes().to_vec();
                    v.extend_from_slice(reason.as_bytes());
                    seen.push((5, v));
                }
            }
            left.drain(..consumed);
        }
    }
    seen.push((0, partial));
    (seen, None)
}

/// One fuzz input for a decoder in `role`.
pub fn run(role: Role, data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let read = (first & 0x3f) as usize + 1;
    let limit = if first & 0x40 != 0 { 100 } else { 1 << 20 };
    assert_eq!(
        drive(role, stream, read, limit),
        drive(role, stream, 0, limit)
    );
}
