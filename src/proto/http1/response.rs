//! Response writer: status line, fields and framing appended to a caller's `Vec<u8>`.
//!
//! Never allocates beyond growing that Vec: numbers are formatted on the stack
//! ([`write_u64`]), and reason phrases and error texts are `&'static str`.
//!
//! ```text
//!   HTTP/1.1 SP 3DIGIT SP reason CRLF
//!   ( name ": " value CRLF )*          caller's fields, then Content-Length / Connection
//!   CRLF
//! ```

use super::HttpError;
use crate::proto::write_u64;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Write `Content-Length: n`; exactly n body bytes follow.
    ContentLength(u64),
    /// No length field: 101 upgrades, 204/304, and streams (SSE) that end when the
    /// connection does (RFC 9112 §6.3 item 8).
    Omitted,
}

/// The reason phrase for `status`, or "" for codes we do not name (the phrase is optional,
/// RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Append `name: value\r\n`. CR and LF in a value would let it forge fields (response
/// splitting), so they are written as spaces; names are the caller's constants.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    debug_assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
        "field name {name:?} is not a token"
    );
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a response head: status line, `fields`, then `Content-Length` per `framing` and
/// `Connection: close` when `close`. A status outside 100..=999 is written as 500.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(&str, &str)],
    framing: Framing,
    close: bool,
) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(out, fields, framing);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a complete response with a fixed body (`Content-Length` = `body.len()`).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    write_response_head(
        out,
        status,
        fields,
        Framing::ContentLength(body.len() as u64),
        close,
    );
    out.extend_from_slice(body);
}

/// Append the head of an SSE stream: 200, `text/event-stream`, no caching, no proxy
/// buffering, no length (events follow until either side closes), connection kept.
pub fn write_sse_response_head(out: &mut Vec<u8>, extra_fields: &[(&str, &str)]) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: text/event-stream\r\n\
          Cache-Control: no-cache\r\n\
          X-Accel-Buffering: no\r\n",
    );
    for (name, value) in extra_fields {
        write_field(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Append the answer to `err`: its status, a short text body, `Allow` for 405, and
/// `Connection: close` when the error closes the connection.
pub fn write_error_response(out: &mut Vec<u8>, err: &HttpError) {
    let (status, close, text) = err.info();
    let allow;
    let fields: &[(&str, &str)] = match err {
        HttpError::MethodNotAllowed { allow: a } => {
            allow = [("Content-Type", "text/plain; charset=utf-8"), ("Allow", *a)];
            &allow
        }
        _ => &[("Content-Type", "text/plain; charset=utf-8")],
    };
    write_response_head(
        out,
        status,
        fields,
        Framing::ContentLength(text.len() as u64 + 1),
        close,
    );
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// The caller's fields, then `Content-Length` for a length-framed body: the part of a head
/// that requests and responses share.
pub(crate) fn write_fields(out: &mut Vec<u8>, fields: &[(&str, &str)], framing: Framing) {
    for (name, value) in fields {
        write_field(out, name, value.as_bytes());
    }
    if let Framing::ContentLength(n) = framing {
        out.extend_from_slice(b"Content-Length: ");
        write_u64(out, n);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn fixed_response_rfc9112_4_and_6_2() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            201,
            &[("Content-Type", "application/json")],
            b"{\"id\":7}",
            false,
        );
        assert_eq!(
            s(&out),
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"id\":7}"
        );
        out.clear();
        write_response(&mut out, 200, &[], b"", true);
        assert_eq!(
            s(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn unknown_and_invalid_status_rfc9112_4() {
        let mut out = Vec::new();
        write_response_head(&mut out, 299, &[], Framing::Omitted, false);
        assert_eq!(s(&out), "HTTP/1.1 299 \r\n\r\n");
        out.clear();
        write_response_head(&mut out, 42, &[], Framing::Omitted, false);
        assert!(s(&out).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    }

    #[test]
    fn sse_head_has_no_length_and_keeps_connection() {
        let mut out = Vec::new();
        write_sse_response_head(&mut out, &[("Access-Control-Allow-Origin", "*")]);
        let text = s(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nContent-Type: text/event-stream\r\n"));
        assert!(text.contains("\r\nCache-Control: no-cache\r\n"));
        assert!(text.contains("\r\nX-Accel-Buffering: no\r\n"));
        assert!(text.ends_with("\r\nAccess-Control-Allow-Origin: *\r\n\r\n"));
        assert!(!text.to_ascii_lowercase().contains("content-length"));
        assert!(!text.to_ascii_lowercase().contains("connection"));
    }

    #[test]
    fn field_values_cannot_split_the_response_rfc9110_5_5() {
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            200,
            &[("X-Echo", "a\r\nSet-Cookie: x")],
            Framing::Omitted,
            false,
        );
        assert_eq!(
            s(&out),
            "HTTP/1.1 200 OK\r\nX-Echo: a  Set-Cookie: x\r\n\r\n"
        );
    }

    #[test]
    fn error_responses_rfc9110_15_5() {
        let mut out = Vec::new();
        write_error_response(&mut out, &HttpError::HeadTooLarge);
        assert_eq!(
            s(&out),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n\
             Connection: close\r\n\r\nrequest head too large\n"
        );
        // RFC 9110 §15.5.6: 405 carries Allow; the connection stays usable.
        out.clear();
        write_error_response(
            &mut out,
            &HttpError::MethodNotAllowed { allow: "GET, HEAD" },
        );
        let text = s(&out);
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(!text.contains("Connection: close"));
        // Every error's body length matches its Content-Length.
        for e in [
            HttpError::BareCr,
            HttpError::RequestLineTooLong,
            HttpError::BodyTooLarge,
            HttpError::UnsupportedTransferCoding,
            HttpError::VersionNotSupported,
            HttpError::NotFound,
        ] {
            out.clear();
            write_error_response(&mut out, &e);
            let text = s(&out);
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {} ", e.status())));
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            assert_eq!(head.contains("Connection: close"), e.closes_connection());
        }
    }
}
