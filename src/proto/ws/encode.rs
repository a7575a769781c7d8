//! Frame encoding (RFC 6455 §5.2): the header alone, so one payload can be framed once and
//! shared by every subscriber, plus a convenience that appends a whole frame to a `Vec`.
//!
//! Never draws a mask key: the client role passes one in, fresh and random for every frame
//! (§5.3; a predictable key lets a script poison intermediaries' caches). The server role
//! passes `None`.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| len7 (0-125 |  len16 if len7 == 126, or     |
//! |I|S|S|S|  (4)  |A| 126: +2 B,  |  len64 (8 B, top bit 0) if    |
//! |N|V|V|V|       |S| 127: +8 B)  |  len7 == 127                  |
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |  masking key (4 B) if MASK                                    |
//! +---------------------------------------------------------------+
//! ```

use super::mask::apply_mask;
use super::OpCode;

/// The longest frame header: 2 + 8 (64-bit length) + 4 (masking key).
pub const HEAD_BYTES_MAX: usize = 14;

/// Write the header of a frame with `payload_len` payload bytes into `buf`, using the shortest
/// length encoding; returns the header's length (2 to 14). RSV bits are always 0.
/// `payload_len` must be below 2^63 (§5.2); a control frame's at most 125.
pub fn fmt_head(
    buf: &mut [u8; HEAD_BYTES_MAX],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    debug_assert!(payload_len < 1 << 63);
    debug_assert!(!opcode.is_control() || (fin && payload_len <= 125));
    buf[0] = ((fin as u8) << 7) | opcode as u8;
    let mask_bit = (mask.is_some() as u8) << 7;
    let mut len = if payload_len < 126 {
        buf[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= u16::MAX as u64 {
        buf[1] = mask_bit | 126;
        buf[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        buf[1] = mask_bit | 127;
        buf[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(key) = mask {
        buf[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    len
}

/// Append one whole frame to `out`: header, then `payload`, masked with `mask` when given
/// (client role). For fan-out prefer [`fmt_head`] and send the shared payload beside it.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut head = [0u8; HEAD_BYTES_MAX];
    let head_len = fmt_head(&mut head, fin, opcode, payload.len() as u64, mask);
    out.reserve(head_len + payload.len());
    out.extend_from_slice(&head[..head_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §5.7 examples: unmasked and masked "Hello", a 256-byte and a 64 KiB binary.
    #[test]
    fn rfc_examples_5_7() {
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Text, b"Hello", None);
        assert_eq!(out, b"\x81\x05\x48\x65\x6c\x6c\x6f");

        out.clear();
        encode_frame(
            &mut out,
            true,
            OpCode::Text,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(out, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");

        let mut head = [0u8; HEAD_BYTES_MAX];
        let n = fmt_head(&mut head, true, OpCode::Binary, 256, None);
        assert_eq!(&head[..n], b"\x82\x7e\x01\x00");
        let n = fmt_head(&mut head, true, OpCode::Binary, 65536, None);
        assert_eq!(&head[..n], b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00");
    }

    /// RFC 6455 §5.2: the boundaries between the 7-, 16- and 64-bit length forms, and FIN off
    /// for a first fragment (§5.4).
    #[test]
    fn length_forms_5_2() {
        let mut head = [0u8; HEAD_BYTES_MAX];
        for (len, want) in [(0u64, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            assert_eq!(
                fmt_head(&mut head, true, OpCode::Text, len, None),
                want,
                "{len}"
            );
            assert_eq!(
                fmt_head(&mut head, true, OpCode::Text, len, Some([0; 4])),
                want + 4
            );
            assert_eq!(head[1] & 0x80, 0x80);
        }
        fmt_head(&mut head, false, OpCode::Text, 3, None);
        assert_eq!(head[0], 0x01);
        fmt_head(&mut head, true, OpCode::Continuation, 3, None);
        assert_eq!(head[0], 0x80);
    }
}
