//! Server-Sent Events codec: an encoder (server role) and a parser (client role).
//!
//! Wire format: WHATWG HTML, section 9.2 "Server-sent events", subsection "Parsing an event
//! stream" and "Interpreting an event stream" (cited below as "§9.2.6" where step numbers matter).
//!
//! - [`encode`] writes `id:`, `event:`, `data:`, `retry:` and comment lines into a caller's
//!   `Vec<u8>`. It never allocates anything but the growth of that `Vec` (and [`encoded_len`]
//!   lets the caller reserve the exact size first, as the hub does to encode each publish once).
//! - [`Parser`] is the client side used by the load generator and by tests. It is fed byte
//!   slices and returns [`Progress`](crate::proto::Progress): it consumes whole lines only, so a
//!   partial line stays with the caller as leftover, and it returns as soon as an event or a
//!   comment is complete. Everything it holds is bounded by [`ParserLimits`].
//!
//! What this module never does: touch a socket or a clock, retry or reconnect (the parser only
//! reports `retry:` and the last event ID; the caller owns reconnection), or decode anything but
//! UTF-8 (the format has no other encoding).
//!
//! Line breaks: a payload may contain `\n`, `\r\n` or `\r`; all three end a line on the wire, so
//! the encoder splits on each and the parser joins `data` lines with `\n`. A round trip therefore
//! normalises every line break in `data` to `\n` and is otherwise exact.

mod encode;
mod parse;
#[cfg(test)]
mod proptests;

pub use encode::{
    encode, encoded_len, write_comment, write_data, write_end, write_event, write_id, write_id_u64,
    write_retry, Id, OutEvent,
};
pub use parse::{Event, Message, Parser, ParserLimits};

use std::fmt;

/// Everything the SSE codec can refuse.
///
/// Encoder variants mean the caller passed something that cannot be expressed on the wire (the
/// publisher's request gets a 400). Parser variants mean the server sent more than the client
/// agreed to buffer; the only answer is to drop that connection (SSE has no error frame).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// An `id` contained CR, LF or NUL: a line break would end the field early, and §9.2.6 says
    /// a client ignores any `id` containing NUL, so such an id could never be read back.
    IdInvalid,
    /// An event name contained CR, LF or NUL: a line break would end the field early.
    EventNameInvalid,
    /// A comment contained CR or LF, which would turn its tail into a field line.
    CommentInvalid,
    /// The parser saw a line (complete or not) longer than `event_bytes_max`.
    LineTooLong { limit_bytes: usize },
    /// The parser's data and event-type buffers grew past `event_bytes_max` before dispatch.
    EventTooLarge { limit_bytes: usize },
}

impl SseError {
    /// The HTTP status a publisher gets when its input cannot be encoded; `None` for parser
    /// errors, whose only answer is closing the connection.
    pub fn status(self) -> Option<u16> {
        match self {
            SseError::IdInvalid | SseError::EventNameInvalid | SseError::CommentInvalid => {
                Some(400)
            }
            SseError::LineTooLong { .. } | SseError::EventTooLarge { .. } => None,
        }
    }
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::IdInvalid => f.write_str("SSE id must not contain CR, LF or NUL"),
            SseError::EventNameInvalid => {
                f.write_str("SSE event name must not contain CR, LF or NUL")
            }
            SseError::CommentInvalid => f.write_str("SSE comment must not contain CR or LF"),
            SseError::LineTooLong { limit_bytes } => {
                write!(f, "SSE line longer than the {limit_bytes}-byte limit")
            }
            SseError::EventTooLarge { limit_bytes } => {
                write!(f, "SSE event larger than the {limit_bytes}-byte limit")
            }
        }
    }
}

impl std::error::Error for SseError {}
