//! Sans-IO HTTP/1.1 (RFC 9112 message syntax, RFC 9110 semantics): request heads, bodies,
//! responses, and the small client-role parts the load generator needs.
//!
//! This module never touches a socket, a clock or a thread, and the hot path never allocates:
//! decoders borrow their events from the caller's input and encoders append to the caller's
//! `Vec<u8>`. Every client-controlled length is bounded by [`HttpLimits`], and every rejection is
//! an [`HttpError`] that knows its status code and whether the connection must close.
//!
//! # Call order (server role)
//! ```text
//!   loop {
//!     RequestDecoder::decode(limits, buf)  -> None: read more, call again with the same
//!                                             prefix plus the new bytes
//!                                          -> Some(head): drop `consumed` bytes (the head)
//!     BodyDecoder::new(head.body(), limits)   (413 here when Content-Length is too big)
//!     BodyDecoder::decode(buf)              -> Data(slice)* then End; drop `consumed` each time
//!     write_response_* / write_error_response into the connection's send buffer
//!     if !head.keep_alive() or the error closes_connection(): close after sending
//!   }
//! ```
//! Pipelined requests are just the loop above run over the bytes left after each body.
//!
//! # Files
//! - `scan.rs`: finds the end of a head byte by byte and enforces limits early (414/431/400).
//! - `request.rs`: [`RequestDecoder`], [`RequestHead`]; `fields.rs`: header lookup and the
//!   framing rules (Content-Length, Transfer-Encoding, Connection, Host).
//! - `body.rs`: [`BodyDecoder`] (Content-Length, chunked, until-close).
//! - `response.rs`: response writer, error responses, number formatting.
//! - `client.rs`: request writer and [`ResponseDecoder`] for the client role.
//! - `query.rs`: [`query_pairs`] with percent-decoding.

mod body;
mod client;
mod error;
mod fields;
mod query;
mod request;
mod response;
mod scan;

#[cfg(test)]
mod proptests;

pub use body::{BodyDecoder, BodyEvent};
pub use client::{write_get_request, write_request, ResponseDecoder, ResponseHead};
pub use error::HttpError;
pub use fields::{list_contains_token, HeaderField, Headers};
pub use query::{percent_decode, query_pairs, QueryPairs};
pub use request::{RequestDecoder, RequestHead, CONTINUE_RESPONSE};
pub use response::{
    reason_phrase, write_error_response, write_response, write_response_head,
    write_sse_response_head, Framing,
};

/// Hard ceiling for [`HttpLimits::headers_max`]: the head parser keeps one stack slot per
/// header field (32 bytes each, 8 KiB in all), so a larger configured value is clamped to this.
pub const HEADERS_MAX_CAP: usize = 256;

/// Bounds on everything a peer controls in an HTTP/1.1 message. All configurable; the
/// defaults suit a push hub whose only request bodies are small publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request line (method SP target SP version, CRLF excluded) before 414.
    pub request_line_bytes_max: usize,
    /// Largest head (start line, fields, final empty line) before 431.
    pub head_bytes_max: usize,
    /// Most header field lines before 431. Clamped to [`HEADERS_MAX_CAP`].
    pub headers_max: usize,
    /// Largest body (Content-Length, or the sum of chunk sizes) before 413.
    pub body_bytes_max: u64,
    /// Sum of chunk-extension bytes allowed in one chunked body before 400; extensions are
    /// ignored, but a peer could otherwise send endless ones with empty chunks.
    pub chunk_ext_bytes_max: usize,
    /// Sum of trailer-section bytes allowed in one chunked body before 431; trailers are read
    /// and discarded.
    pub trailer_bytes_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_line_bytes_max: 8 * 1024,
            head_bytes_max: 16 * 1024,
            headers_max: 64,
            body_bytes_max: 1024 * 1024,
            chunk_ext_bytes_max: 4 * 1024,
            trailer_bytes_max: 8 * 1024,
        }
    }
}

impl HttpLimits {
    /// `headers_max` as the parser applies it.
    pub fn headers_max_effective(&self) -> usize {
        self.headers_max.min(HEADERS_MAX_CAP)
    }
}

/// HTTP versions this server speaks (RFC 9112 §2.3); anything else is 505.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: a request without Content-Length or Transfer-Encoding, or a 1xx/204/304
    /// response.
    None,
    /// Exactly this many bytes follow.
    ContentLength(u64),
    /// Chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Responses only: the body runs until the server closes (an SSE stream, say).
    UntilClose,
}
