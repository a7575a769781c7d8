//! Frame header parsing and the rules that need only the header (RFC 6455 §5.2, §5.4, §5.5).
//!
//! Pure function of the bytes and a few facts from the decoder's state; it never looks at
//! payload and never consumes anything: the decoder consumes a header only once this returns it
//! whole. Layout (see `encode.rs` for the picture): 2 bytes, then 0/2/8 length bytes, then the
//! 4-byte key if MASK, so a header is 2 to 14 bytes.

use super::{OpCode, Role, WsError};

/// A complete, rule-checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub fin: bool,
    pub opcode: OpCode,
    /// Payload bytes, below 2^63; at most 125 for control frames.
    pub len: u64,
    pub mask: Option<[u8; 4]>,
    /// Header length in bytes, 2 to 14.
    pub head_bytes: usize,
    /// RSV1: a compressed message's first frame (only when `Rules::compression` allows it).
    pub rsv1: bool,
}

/// What the decoder's state says about the next header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    pub role: Role,
    /// A fragmented data message is open (its final frame has not been seen).
    pub in_message: bool,
    /// Declared payload bytes of the open message so far.
    pub message_bytes: u64,
    pub message_bytes_max: u64,
    /// permessage-deflate was agreed: RSV1 may be set on a message's first frame (RFC 7692 §6),
    /// never on a continuation or control frame.
    pub compression: bool,
}

/// Check a frame header in `buf`; `Ok(None)` when it is not complete yet. Rules that need
/// only the first two bytes are checked as soon as they are there, always in this order, so
/// the error does not depend on how the bytes were cut.
pub(super) fn parse_head(buf: &[u8], rules: Rules) -> Result<Option<Head>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 {
        return Err(WsError::ReservedBits);
    }
    let opcode = OpCode::try_from(b0 & 0x0f)?;
    let rsv1 = b0 & 0x40 != 0;
    if rsv1 && !(rules.compression && matches!(opcode, OpCode::Text | OpCode::Binary)) {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    match (rules.role, masked) {
        (Role::Server, false) => return Err(WsError::UnmaskedFrame),
        (Role::Client, true) => return Err(WsError::MaskedFrame),
        _ => {}
    }
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(WsError::ControlFragmented);
        }
        if len7 > 125 {
            return Err(WsError::ControlTooLong);
        }
    } else {
        match (opcode, rules.in_message) {
            (OpCode::Continuation, false) => return Err(WsError::ContinuationWithoutStart),
            (OpCode::Text | OpCode::Binary, true) => return Err(WsError::MessageInterleaved),
            _ => {}
        }
    }
    let len_bytes = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let head_bytes = 2 + len_bytes + if masked { 4 } else { 0 };
    if buf.len() < head_bytes {
        return Ok(None);
    }
    let len = match len7 {
        126 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(WsError::LengthOverflow);
            }
            len
        }
        n => n as u64,
    };
    if !opcode.is_control() {
        let so_far = if opcode == OpCode::Continuation {
            rules.message_bytes
        } else {
            0
        };
        if len > rules.message_bytes_max.saturating_sub(so_far) {
            return Err(WsError::MessageTooBig);
        }
    }
    let mask = masked.then(|| {
        let at = 2 + len_bytes;
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    });
    Ok(Some(Head {
        fin,
        opcode,
        len,
        mask,
        head_bytes,
        rsv1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Rules = Rules {
        role: Role::Server,
        in_message: false,
        message_bytes: 0,
        message_bytes_max: 1 << 20,
        compression: false,
    };

    /// RFC 6455 §5.2: every proper prefix of a header is "need more", the whole is parsed with
    /// its length form, key and size, whatever payload follows.
    #[test]
    fn header_prefixes_5_2() {
        let cases: [(&[u8], u64, usize); 3] = [
            (&[0x81, 0x85, 1, 2, 3, 4], 5, 6),
            (&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4], 256, 8),
            (&[0x02, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4], 65536, 14),
        ];
        for (bytes, len, head_bytes) in cases {
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse_head(&bytes[..cut], SERVER),
                    Ok(None),
                    "{bytes:x?} {cut}"
                );
            }
            let mut more = bytes.to_vec();
            more.extend_from_slice(b"payload");
            let head = parse_head(&more, SERVER).unwrap().unwrap();
            assert_eq!(
                (head.len, head.head_bytes, head.mask),
                (len, head_bytes, Some([1, 2, 3, 4]))
            );
            assert_eq!(head.fin, bytes[0] & 0x80 != 0);
        }
    }

    /// RFC 6455 §5.4: a continuation is legal only inside a message, text/binary only outside;
    /// the size limit counts the open message's bytes (1009).
    #[test]
    fn message_state_rules_5_4() {
        let inside = Rules {
            in_message: true,
            message_bytes: 1000,
            message_bytes_max: 1010,
            ..SERVER
        };
        let cont = [0x80, 0x8a, 0, 0, 0, 0];
        assert_eq!(
            parse_head(&cont, SERVER),
            Err(WsError::ContinuationWithoutStart)
        );
        assert_eq!(parse_head(&cont, inside).unwrap().unwrap().len, 10);
        let cont11 = [0x80, 0x8b, 0, 0, 0, 0];
        assert_eq!(parse_head(&cont11, inside), Err(WsError::MessageTooBig));
        let text = [0x81, 0x80, 0, 0, 0, 0];
        assert_eq!(parse_head(&text, inside), Err(WsError::MessageInterleaved));
        // Control frames are allowed inside a message and do not count toward its size.
        let ping = [0x89, 0xfd, 0, 0, 0, 0];
        assert_eq!(parse_head(&ping, inside).unwrap().unwrap().len, 125);
    }

    /// RFC 7692 §6: with permessage-deflate agreed, RSV1 marks a message's first frame; it is
    /// an error on a continuation or control frame, and RSV2/RSV3 stay errors.
    #[test]
    fn rsv1_only_on_a_compressed_message_start_rfc7692_6() {
        let deflate = Rules {
            compression: true,
            ..SERVER
        };
        for first in [0xc1, 0xc2, 0x41] {
            let head = parse_head(&[first, 0x80, 0, 0, 0, 0], deflate)
                .unwrap()
                .unwrap();
            assert!(head.rsv1, "{first:x}");
            assert_eq!(
                parse_head(&[first, 0x80, 0, 0, 0, 0], SERVER),
                Err(WsError::ReservedBits),
                "without the extension"
            );
        }
        let inside = Rules {
            in_message: true,
            ..deflate
        };
        for bad in [0xc0, 0xc9, 0xca, 0xc8] {
            let rules = if bad == 0xc0 { inside } else { deflate };
            assert_eq!(
                parse_head(&[bad, 0x80, 0, 0, 0, 0], rules),
                Err(WsError::ReservedBits),
                "{bad:x}"
            );
        }
        for rsv in [0xa1, 0x91, 0xe1] {
            assert_eq!(
                parse_head(&[rsv, 0x80, 0, 0, 0, 0], deflate),
                Err(WsError::ReservedBits),
                "{rsv:x}"
            );
        }
        assert!(
            !parse_head(&[0x81, 0x80, 0, 0, 0, 0], deflate)
                .unwrap()
                .unwrap()
                .rsv1
        );
    }
}
