//! Close frames (RFC 6455 §5.5.1, §7.4): which codes may travel on the wire, how to build a
//! close payload, and what to answer to a close the peer sent.
//!
//! Everything here is fixed-size: a control frame is at most 2 + 4 + 125 bytes, so it is built
//! on the stack ([`ControlFrame`]) and never allocates.

use super::encode::fmt_head;
use super::mask::apply_mask;
use super::{OpCode, CONTROL_PAYLOAD_BYTES_MAX};

/// Close codes by name, as `u16` because that is how every close API here takes and reports
/// them (`close_payload`, `ControlFrame::close`, `Event::Close`, `WsError::close_code`). The
/// meanings are RFC 6455 §7.4.1's; 1012-1014 come from the IANA registry it set up (§11.7).
/// 1004 is reserved, and 1005, 1006 and 1015 only report a missing code, an abnormal closure
/// and a TLS failure to an API: they never travel on the wire, so they have no constant here.
pub mod close_code {
    /// 1000: the purpose for which the connection was established has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away, such as a server going down or a browser leaving
    /// the page.
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the endpoint is terminating the connection due to a protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: the endpoint received a type of data it cannot accept (e.g. binary data from an
    /// endpoint that only understands text).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1007: the endpoint received data within a message that was not consistent with the
    /// type of the message (e.g. non-UTF-8 data within a text message).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: the endpoint received a message that violates its policy; a generic code when no
    /// more suitable one (1003, 1009) applies.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: the endpoint received a message too big for it to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1010: the client expected the server to negotiate one or more extensions that it did
    /// not return in the handshake.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// 1011: the server encountered an unexpected condition that prevented it from fulfilling
    /// the request.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// 1012 (IANA): the service is restarting.
    pub const SERVICE_RESTART: u16 = 1012;
    /// 1013 (IANA): try again later; the server is overloaded or, here, the client reads
    /// slower than messages arrive.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// 1014 (IANA): a gateway or proxy received an invalid response from the upstream server.
    pub const BAD_GATEWAY: u16 = 1014;
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4.1, §7.4.2):
/// 1000-1003 and 1007-1011 are defined, 1012-1014 are registered with IANA since (service
/// restart, try again later, bad gateway: browsers send and accept them, and the server uses
/// 1013 for slow consumers), 3000-4999 are for libraries and applications. 1004 is reserved,
/// 1005, 1006 and 1015 are for reporting only and never sent.
pub const fn is_valid_close_code(code: u16) -> bool {
    use close_code::{BAD_GATEWAY, INVALID_PAYLOAD, NORMAL, UNSUPPORTED_DATA};
    matches!(code, NORMAL..=UNSUPPORTED_DATA | INVALID_PAYLOAD..=BAD_GATEWAY | 3000..=4999)
}

/// Build a close payload: `code` big-endian, then `reason` cut at a char boundary to fit 123
/// bytes. Returns the buffer and the number of bytes used.
pub fn close_payload(code: u16, reason: &str) -> ([u8; CONTROL_PAYLOAD_BYTES_MAX], usize) {
    let mut buf = [0u8; CONTROL_PAYLOAD_BYTES_MAX];
    buf[..2].copy_from_slice(&code.to_be_bytes());
    let mut cut = reason.len().min(CONTROL_PAYLOAD_BYTES_MAX - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    buf[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    (buf, 2 + cut)
}

/// The close frame to send back after receiving `Event::Close { code, .. }` (RFC 6455 §5.5.1):
/// echo the peer's code, or an empty close for an empty close. `mask` in the client role.
pub fn close_reply(received: Option<u16>, mask: Option<[u8; 4]>) -> ControlFrame {
    ControlFrame::close(received, "", mask)
}

/// A whole control frame built on the stack: header (2, or 6 when masked) plus up to 125 bytes.
#[derive(Clone, Copy)]
pub struct ControlFrame {
    buf: [u8; 6 + CONTROL_PAYLOAD_BYTES_MAX],
    len: u8,
}

impl ControlFrame {
    /// A close frame with `code` (none: empty payload, and `reason` is ignored) and `reason`
    /// (cut to fit), masked with `mask` when given.
    pub fn close(code: Option<u16>, reason: &str, mask: Option<[u8; 4]>) -> ControlFrame {
        match code {
            Some(code) => {
                let (payload, len) = close_payload(code, reason);
                ControlFrame::new(OpCode::Close, &payload[..len], mask)
            }
            None => ControlFrame::new(OpCode::Close, &[], mask),
        }
    }

    /// A ping, pong or close frame; `payload` beyond 125 bytes is cut off (§5.5 forbids more).
    pub fn new(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> ControlFrame {
        debug_assert!(opcode.is_control());
        let payload = &payload[..payload.len().min(CONTROL_PAYLOAD_BYTES_MAX)];
        let mut head = [0u8; 14];
        let head_len = fmt_head(&mut head, true, opcode, payload.len() as u64, mask);
        let mut buf = [0u8; 6 + CONTROL_PAYLOAD_BYTES_MAX];
        buf[..head_len].copy_from_slice(&head[..head_len]);
        let end = head_len + payload.len();
        buf[head_len..end].copy_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut buf[head_len..end], key, 0);
        }
        ControlFrame {
            buf,
            len: end as u8,
        }
    }

    /// The frame's bytes, ready to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for ControlFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ControlFrame")
            .field(&self.as_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §7.4.1/§7.4.2: the defined codes, the reserved ones and the ranges.
    #[test]
    fn close_code_ranges_7_4() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }

    /// The names stand for the numbers of RFC 6455 §7.4.1 and the IANA registry, and every
    /// named code may be sent.
    #[test]
    fn named_codes_7_4_1() {
        use close_code::*;
        let table = [
            (NORMAL, 1000),
            (GOING_AWAY, 1001),
            (PROTOCOL_ERROR, 1002),
            (UNSUPPORTED_DATA, 1003),
            (INVALID_PAYLOAD, 1007),
            (POLICY_VIOLATION, 1008),
            (MESSAGE_TOO_BIG, 1009),
            (MANDATORY_EXTENSION, 1010),
            (INTERNAL_ERROR, 1011),
            (SERVICE_RESTART, 1012),
            (TRY_AGAIN_LATER, 1013),
            (BAD_GATEWAY, 1014),
        ];
        for (named, number) in table {
            assert_eq!(named, number);
            assert!(is_valid_close_code(named), "{named}");
        }
    }

    /// RFC 6455 §5.5.1: the payload is the code big-endian then the reason; the reason is cut
    /// at a char boundary so the payload stays within 125 bytes and stays UTF-8.
    #[test]
    fn close_payload_5_5_1() {
        let (buf, len) = close_payload(close_code::GOING_AWAY, "bye");
        assert_eq!(&buf[..len], b"\x03\xe9bye");
        let long = "é".repeat(100); // 200 bytes
        let (buf, len) = close_payload(close_code::NORMAL, &long);
        assert_eq!(len, 2 + 122); // 123 would split an "é"
        assert!(std::str::from_utf8(&buf[2..len]).is_ok());
    }

    /// RFC 6455 §5.5.1: echo the received code; an empty close gets an empty close; the client
    /// role masks the reply.
    #[test]
    fn close_reply_5_5_1() {
        assert_eq!(
            close_reply(Some(close_code::GOING_AWAY), None).as_bytes(),
            b"\x88\x02\x03\xe9"
        );
        assert_eq!(close_reply(None, None).as_bytes(), b"\x88\x00");
        let masked = close_reply(Some(close_code::NORMAL), Some([1, 2, 3, 4]));
        assert_eq!(
            masked.as_bytes(),
            &[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]
        );
    }
}
