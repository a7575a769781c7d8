//! Sans-IO protocol core: HTTP/1.1 requests, RFC 6455 WebSocket frames and SSE events.
//!
//! Nothing in here touches a socket, a clock or a thread. Decoders are fed `&[u8]` and report
//! how many bytes they consumed; encoders write into a caller's buffer. Time, where a rule needs
//! it, comes in as an argument.
#![forbid(unsafe_code)]

pub mod http1;
pub mod sse;
pub mod ws;

/// What a decoder made of the bytes it was given.
///
/// The caller drops `consumed` bytes from the front of its input (`0 <= consumed <= input.len()`)
/// and calls again. `event: None` means "need more bytes": feed the rest plus whatever arrives.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<E> {
    pub consumed: usize,
    pub event: Option<E>,
}

/// Which end of a connection this codec speaks for. The server role requires masked frames
/// from its peer; the client role masks what it sends and rejects masked frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}
