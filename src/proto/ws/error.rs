//! Everything a peer can do wrong on a WebSocket connection, each with its close code.
//!
//! `close_code()` is the one place that maps an error to its wire answer (RFC 6455 §7.4.1);
//! nothing else in the crate picks 1002, 1007 or 1009.

use std::fmt;

use super::close::{close_code, ControlFrame};

/// A protocol violation by the peer. After one, the decoder refuses further input; the caller
/// sends [`WsError::close_frame`] and closes the connection.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// RSV1, RSV2 or RSV3 set, but no extension was negotiated (§5.2).
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF (§5.2).
    UnknownOpcode,
    /// Server role: a client frame without the MASK bit (§5.1, §5.3).
    UnmaskedFrame,
    /// Client role: a server frame with the MASK bit (§5.1).
    MaskedFrame,
    /// 64-bit payload length with the most significant bit set (§5.2).
    LengthOverflow,
    /// Close, ping or pong with more than 125 payload bytes (§5.5).
    ControlTooLong,
    /// Close, ping or pong without FIN (§5.5).
    ControlFragmented,
    /// Continuation frame with no fragmented message in progress (§5.4).
    ContinuationWithoutStart,
    /// Text or binary frame while a fragmented message is still open (§5.4).
    MessageInterleaved,
    /// Close frame with a one-byte payload (§5.5.1).
    CloseTooShort,
    /// Close code that may not appear on the wire (§7.4).
    InvalidCloseCode,
    /// Text message or close reason that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// Message longer than `WsLimits::message_bytes_max`.
    MessageTooBig,
}

impl WsError {
    /// The close code to send for this error (RFC 6455 §7.4.1): 1002 protocol error,
    /// 1007 invalid payload data, 1009 message too big.
    pub const fn close_code(self) -> u16 {
        match self {
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            WsError::MessageTooBig => close_code::MESSAGE_TOO_BIG,
            WsError::ReservedBits
            | WsError::UnknownOpcode
            | WsError::UnmaskedFrame
            | WsError::MaskedFrame
            | WsError::LengthOverflow
            | WsError::ControlTooLong
            | WsError::ControlFragmented
            | WsError::ContinuationWithoutStart
            | WsError::MessageInterleaved
            | WsError::CloseTooShort
            | WsError::InvalidCloseCode => close_code::PROTOCOL_ERROR,
        }
    }

    /// Short reason text sent in the close frame; ASCII, well under 123 bytes.
    pub const fn reason(self) -> &'static str {
        match self {
            WsError::ReservedBits => "reserved bits set",
            WsError::UnknownOpcode => "unknown opcode",
            WsError::UnmaskedFrame => "client frame not masked",
            WsError::MaskedFrame => "server frame masked",
            WsError::LengthOverflow => "payload length overflow",
            WsError::ControlTooLong => "control frame too long",
            WsError::ControlFragmented => "control frame fragmented",
            WsError::ContinuationWithoutStart => "continuation without message",
            WsError::MessageInterleaved => "new message inside fragmented message",
            WsError::CloseTooShort => "close payload of one byte",
            WsError::InvalidCloseCode => "invalid close code",
            WsError::InvalidUtf8 => "invalid utf-8",
            WsError::MessageTooBig => "message too big",
        }
    }

    /// The whole close frame answering this error: `close_code()` plus `reason()`, masked with
    /// `mask` in the client role (the key must be fresh and random).
    pub fn close_frame(self, mask: Option<[u8; 4]>) -> ControlFrame {
        ControlFrame::close(Some(self.close_code()), self.reason(), mask)
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket {} ({})", self.reason(), self.close_code())
    }
}

impl std::error::Error for WsError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §7.4.1: every variant maps to one of the three codes we send, and the frame
    /// built from it carries that code big-endian.
    #[test]
    fn close_codes_7_4_1() {
        let all = [
            WsError::ReservedBits,
            WsError::UnknownOpcode,
            WsError::UnmaskedFrame,
            WsError::MaskedFrame,
            WsError::LengthOverflow,
            WsError::ControlTooLong,
            WsError::ControlFragmented,
            WsError::ContinuationWithoutStart,
            WsError::MessageInterleaved,
            WsError::CloseTooShort,
            WsError::InvalidCloseCode,
            WsError::InvalidUtf8,
            WsError::MessageTooBig,
        ];
        for e in all {
            let code = e.close_code();
            assert!(
                matches!(
                    code,
                    close_code::PROTOCOL_ERROR
                        | close_code::INVALID_PAYLOAD
                        | close_code::MESSAGE_TOO_BIG
                ),
                "{e:?}"
            );
            let frame = e.close_frame(None);
            let bytes = frame.as_bytes();
            assert_eq!(bytes[0], 0x88);
            assert_eq!(bytes[1] as usize, 2 + e.reason().len());
            assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), code);
            assert_eq!(&bytes[4..], e.reason().as_bytes());
        }
        assert_eq!(
            WsError::InvalidUtf8.close_code(),
            close_code::INVALID_PAYLOAD
        );
        assert_eq!(
            WsError::MessageTooBig.close_code(),
            close_code::MESSAGE_TOO_BIG
        );
        assert_eq!(
            WsError::UnmaskedFrame.close_code(),
            close_code::PROTOCOL_ERROR
        );
    }
}
