//! [`HttpError`]: every reason this layer (or the router above it) rejects a message, each with
//! its status code, its connection fate and its text in ONE table ([`HttpError::info`]).
//!
//! Never allocates: the text is `&'static str`, and the only data a variant carries is the
//! `Allow` value a router hands to 405.

use std::fmt;

/// A rejected HTTP/1.1 message. Match on the cause; ask [`HttpError::status`] for the answer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Method, target or request-line syntax is malformed (RFC 9112 §3).
    InvalidRequestLine,
    /// Client role: the status line is malformed (RFC 9112 §4).
    InvalidStatusLine,
    /// A field name is not a token (RFC 9110 §5.1).
    InvalidHeaderName,
    /// A field value holds a forbidden byte (RFC 9110 §5.5).
    InvalidHeaderValue,
    /// CR not followed by LF (RFC 9112 §2.2).
    BareCr,
    /// A field line starts with whitespace: obsolete line folding (RFC 9112 §5.2).
    ObsFold,
    /// Whitespace between the start line and the first field (RFC 9112 §2.2).
    WhitespaceAfterStartLine,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1).
    WhitespaceBeforeColon,
    /// HTTP/1.1 request without Host (RFC 9112 §3.2).
    MissingHost,
    /// More than one Host field line (RFC 9112 §3.2).
    DuplicateHost,
    /// Content-Length is not a list of identical decimal numbers fitting u64 (RFC 9110 §8.6).
    InvalidContentLength,
    /// Content-Length values disagree (RFC 9112 §6.3 item 5).
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding: a smuggling attempt (RFC 9112 §6.3 item 3).
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message: framing is faulty (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// The final transfer coding is not chunked (RFC 9112 §6.3 item 4).
    ChunkedNotFinal,
    /// chunked applied more than once (RFC 9112 §6.1).
    ChunkedTwice,
    /// A transfer coding before chunked that we do not implement (RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// A chunk-size line is not hex digits (RFC 9112 §7.1).
    InvalidChunkSize,
    /// A chunk size does not fit in 64 bits (RFC 9112 §7.1).
    ChunkSizeOverflow,
    /// Chunk extensions exceed `chunk_ext_bytes_max` (RFC 9112 §7.1.1).
    ChunkExtensionTooLong,
    /// Missing CRLF after chunk data or a chunk line (RFC 9112 §7.1).
    InvalidChunkFraming,
    /// The trailer section exceeds `trailer_bytes_max` (RFC 9112 §7.1.2).
    TrailersTooLarge,
    /// The request line exceeds `request_line_bytes_max` (RFC 9112 §3, RFC 9110 §15.5.15).
    RequestLineTooLong,
    /// The head exceeds `head_bytes_max` (RFC 6585 §5).
    HeadTooLarge,
    /// More than `headers_max` field lines (RFC 6585 §5).
    TooManyHeaders,
    /// The body exceeds `body_bytes_max` (RFC 9110 §15.5.14).
    BodyTooLarge,
    /// An HTTP version other than 1.0 or 1.1 (RFC 9110 §15.6.6).
    VersionNotSupported,
    /// Router: no such resource (RFC 9110 §15.5.5).
    NotFound,
    /// Router: the method is not allowed here; `allow` is the Allow value (RFC 9110 §15.5.6).
    MethodNotAllowed { allow: &'static str },
    /// Engine: the head or body did not arrive in time (RFC 9110 §15.5.9).
    RequestTimeout,
}

impl HttpError {
    /// The one table: (status, connection must close, text for logs and the response body).
    ///
    /// Everything detected while parsing closes the connection: after a framing error we can
    /// no longer tell where the next request starts (RFC 9112 §6.3, §9.6). Router answers
    /// (404, 405) keep it open; the caller must still consume the request body first.
    pub fn info(&self) -> (u16, bool, &'static str) {
        use HttpError::*;
        match self {
            InvalidRequestLine => (400, true, "invalid request line"),
            InvalidStatusLine => (400, true, "invalid status line"),
            InvalidHeaderName => (400, true, "invalid header field name"),
            InvalidHeaderValue => (400, true, "invalid header field value"),
            BareCr => (400, true, "bare CR"),
            ObsFold => (400, true, "obsolete line folding"),
            WhitespaceAfterStartLine => (400, true, "whitespace after start line"),
            WhitespaceBeforeColon => (400, true, "whitespace between field name and colon"),
            MissingHost => (400, true, "missing Host"),
            DuplicateHost => (400, true, "more than one Host"),
            InvalidContentLength => (400, true, "invalid Content-Length"),
            ConflictingContentLength => (400, true, "conflicting Content-Length"),
            ContentLengthWithTransferEncoding => {
                (400, true, "Content-Length with Transfer-Encoding")
            }
            TransferEncodingInHttp10 => (400, true, "Transfer-Encoding in HTTP/1.0"),
            ChunkedNotFinal => (400, true, "final transfer coding is not chunked"),
            ChunkedTwice => (400, true, "chunked applied more than once"),
            UnsupportedTransferCoding => (501, true, "unsupported transfer coding"),
            InvalidChunkSize => (400, true, "invalid chunk size"),
            ChunkSizeOverflow => (400, true, "chunk size overflows"),
            ChunkExtensionTooLong => (400, true, "chunk extensions too long"),
            InvalidChunkFraming => (400, true, "invalid chunk framing"),
            TrailersTooLarge => (431, true, "trailer section too large"),
            RequestLineTooLong => (414, true, "request line too long"),
            HeadTooLarge => (431, true, "request head too large"),
            TooManyHeaders => (431, true, "too many header fields"),
            BodyTooLarge => (413, true, "body too large"),
            VersionNotSupported => (505, true, "HTTP version not supported"),
            NotFound => (404, false, "not found"),
            MethodNotAllowed { .. } => (405, false, "method not allowed"),
            RequestTimeout => (408, true, "request timeout"),
        }
    }

    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        self.info().0
    }

    /// Whether the connection must be closed after the error response is sent.
    pub fn closes_connection(&self) -> bool {
        self.info().1
    }

    /// Short lowercase description; also the error response body.
    pub fn as_str(&self) -> &'static str {
        self.info().2
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.status())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_rfc_classes() {
        // RFC 9112 §6.3: a non-chunked final coding is 400 and closes.
        assert_eq!(HttpError::ChunkedNotFinal.status(), 400);
        assert!(HttpError::ChunkedNotFinal.closes_connection());
        // RFC 9112 §6.1: unknown coding is 501.
        assert_eq!(HttpError::UnsupportedTransferCoding.status(), 501);
        // RFC 9110 §15.5.15 / RFC 6585 §5.
        assert_eq!(HttpError::RequestLineTooLong.status(), 414);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        assert_eq!(HttpError::VersionNotSupported.status(), 505);
        let e = HttpError::MethodNotAllowed { allow: "GET" };
        assert_eq!(e.status(), 405);
        assert!(!e.closes_connection());
        assert_eq!(e.to_string(), "method not allowed (405)");
    }
}
