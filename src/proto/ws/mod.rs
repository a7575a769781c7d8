//! RFC 6455 WebSocket for both roles, sans-IO: the opening handshake, a streaming frame decoder,
//! a message assembler, a header-only frame encoder, close codes and incremental UTF-8
//! validation.
//!
//! What it never does: read or write a socket, look at a clock, draw random numbers (the client
//! role's mask keys and handshake nonce come in as arguments), or buffer payload on its own.
//! The decoder hands out slices of the caller's receive buffer, unmasked in place, as they
//! arrive; its own state between calls is a few dozen bytes (see [`Decoder`]), so an idle
//! connection costs almost nothing. The one copy of payload is [`MessageAssembler`]'s, for a
//! message that arrives in more than one piece, when the caller passes the pieces to it. The one extension is permessage-deflate ([`deflate`]: negotiation, and RSV1 on a message's first frame when the decoder is told it was agreed); any other RSV bit is a protocol error.
//!
//! Call order for a connection:
//! 1. Server: [`server_handshake`] on the parsed request, then [`Accepted::write_response`].
//!    Client: [`client_request`], then [`validate_server_response`] on the answer.
//! 2. [`Decoder::decode`] on the receive buffer until it reports `event: None`; drop `consumed`
//!    bytes from the front after every call and keep the rest (at most `14 + 125` bytes: a
//!    partial header or a partial control frame) for the next call. Pass each
//!    [`Event::Data`] to [`MessageAssembler::push`] to get whole messages.
//! 3. Frames out: [`fmt_head`] once per payload (fan-out shares the payload bytes), or
//!    [`encode_frame`] which also masks for the client role.
//! 4. On [`Event::Close`] answer with [`close_reply`]; on a [`WsError`] send
//!    [`WsError::close_frame`] and close the connection.
//!
//! ```
//! use uringcast::proto::ws::{encode_frame, Decoder, Event, OpCode, WsLimits};
//! use uringcast::proto::Role;
//!
//! // A client's masked "Hello", arriving in two reads cut inside the header.
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, true, OpCode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
//! let mut dec = Decoder::new(Role::Server, WsLimits::default());
//! let mut leftover: Vec<u8> = Vec::new();
//! let mut message = Vec::new();
//! for read in [&wire[..3], &wire[3..]] {
//!     leftover.extend_from_slice(read);
//!     loop {
//!         let progress = dec.decode(&mut leftover).expect("valid frames");
//!         let consumed = progress.consumed;
//!         let Some(event) = progress.event else {
//!             leftover.drain(..consumed); // keep only an unfinished header or control frame
//!             break;
//!         };
//!         if let Event::Data { payload, .. } = event {
//!             message.extend_from_slice(payload);
//!         }
//!         leftover.drain(..consumed);
//!     }
//! }
//! assert_eq!(message, b"Hello");
//! ```

mod assemble;
mod close;
mod decode;
pub mod deflate;
mod encode;
mod error;
mod handshake;
mod head;
mod mask;
mod utf8;

#[cfg(test)]
mod proptests;

pub use assemble::{Assembled, MessageAssembler};
pub use close::{close_code, close_payload, close_reply, is_valid_close_code, ControlFrame};
pub use decode::{Decoder, Event};
pub use encode::{encode_frame, fmt_head, HEAD_BYTES_MAX};
pub use error::WsError;
pub use handshake::{
    accept_key, client_key, client_request, server_handshake, validate_server_response, Accepted,
    HandshakeError, WS_VERSION,
};
pub use mask::apply_mask;
pub use utf8::Utf8Stream;

pub use super::{Progress, Role};

/// The largest payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;

/// Frame opcodes defined by RFC 6455 §5.2. Every other value is a protocol error (1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Control opcodes have the high bit of the nibble set (§5.5).
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

impl TryFrom<u8> for OpCode {
    type Error = WsError;

    fn try_from(nibble: u8) -> Result<OpCode, WsError> {
        Ok(match nibble {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return Err(WsError::UnknownOpcode),
        })
    }
}

/// Bounds on what a peer may send. Checked on frame headers, before any payload is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest message (sum of its frames' payload lengths); more is close code 1009.
    pub message_bytes_max: u64,
}

impl Default for WsLimits {
    /// 64 KiB: the hub's control messages are small JSON texts, deliveries go the other way.
    fn default() -> WsLimits {
        WsLimits {
            message_bytes_max: 64 * 1024,
        }
    }
}
