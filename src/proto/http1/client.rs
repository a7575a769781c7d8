//! Client role, for the load generator: write a request, decode a response head.
//!
//! Same rules and the same scanner as the server side, read from the other end: the status
//! line replaces the request line, and a response without length runs until close
//! (RFC 9112 §6.3). Never allocates beyond the caller's Vec; the head borrows the input.

use std::mem::MaybeUninit;

use super::fields::{FieldSummary, Headers};
use super::request::{first_line, header_name_error, is_other_http_version};
use super::response::{write_field, Framing};
use super::scan::HeadScanner;
use super::{BodyKind, HttpError, HttpLimits, Version, HEADERS_MAX_CAP};
use crate::proto::Progress;

/// Append `method target HTTP/1.1`, `Host`, the caller's fields, and `Content-Length` per
/// `framing`. The body, if any, is the caller's to append.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    fields: &[(&str, &str)],
    framing: Framing,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_field(out, "Host", host.as_bytes());
    super::response::write_fields(out, fields, framing);
    out.extend_from_slice(b"\r\n");
}

/// Append a bodiless `GET target HTTP/1.1` with `Host` and the caller's fields.
pub fn write_get_request(out: &mut Vec<u8>, target: &str, host: &str, fields: &[(&str, &str)]) {
    write_request(out, "GET", target, host, fields, Framing::Omitted);
}

/// Incremental response-head decoder, same contract as [`super::RequestDecoder`].
#[derive(Debug, Clone, Default)]
pub struct ResponseDecoder {
    scanner: HeadScanner,
}

/// A parsed response head, borrowing the decoder's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    version: Version,
    status: u16,
    reason: &'a str,
    fields: &'a [u8],
    body: BodyKind,
    keep_alive: bool,
}

impl ResponseDecoder {
    pub fn new() -> Self {
        ResponseDecoder::default()
    }

    /// Decode one response head from the front of `input`: `None` with 0 consumed means
    /// "need more"; otherwise `consumed` is the head length and the body follows.
    pub fn decode<'a>(
        &mut self,
        limits: &HttpLimits,
        input: &'a [u8],
    ) -> Result<Progress<ResponseHead<'a>>, HttpError> {
        let scanned = self.scanner.scan(input, limits, HttpError::HeadTooLarge);
        // A failed scan leaves the scanner mid-head; start clean if the decoder is reused.
        let Some(span) = scanned.inspect_err(|_| self.scanner = HeadScanner::default())? else {
            return Ok(Progress {
                consumed: 0,
                event: None,
            });
        };
        let head = &input[..span.len];
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_MAX_CAP];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, head, &mut slots);
        match parsed {
            Ok(httparse::Status::Complete(n)) if n == span.len => {}
            Ok(_) => return Err(HttpError::InvalidStatusLine),
            Err(httparse::Error::Version) => {
                let v = first_line(head).split(|&b| b == b' ').next().unwrap_or(&[]);
                return Err(if is_other_http_version(v) {
                    HttpError::VersionNotSupported
                } else {
                    HttpError::InvalidStatusLine
                });
            }
            Err(httparse::Error::HeaderName) => return Err(header_name_error(head)),
            Err(httparse::Error::HeaderValue) => return Err(HttpError::InvalidHeaderValue),
            Err(_) => return Err(HttpError::InvalidStatusLine),
        }
        let version = match res.version {
            Some(0) => Version::Http10,
            Some(1) => Version::Http11,
            _ => return Err(HttpError::VersionNotSupported),
        };
        let (Some(status), Some(reason)) = (res.code, res.reason) else {
            return Err(HttpError::InvalidStatusLine);
        };
        if status < 100 {
            return Err(HttpError::InvalidStatusLine);
        }
        let s = FieldSummary::collect(res.headers)?;
        let body = response_body_kind(&s, status)?;
        let keep_alive = !s.conn_close
            && (version == Version::Http11 || s.conn_keep_alive)
            && body != BodyKind::UntilClose;
        Ok(Progress {
            consumed: span.len,
            event: Some(ResponseHead {
                version,
                status,
                reason,
                fields: &head[span.fields_start..],
                body,
                keep_alive,
            }),
        })
    }
}

/// RFC 9112 §6.3 for responses (to GET; the client never sends HEAD).
fn response_body_kind(s: &FieldSummary, status: u16) -> Result<BodyKind, HttpError> {
    // Item 1: 1xx, 204 and 304 have no body whatever the fields say.
    if status < 200 || status == 204 || status == 304 {
        return Ok(BodyKind::None);
    }
    if s.te_present {
        if s.content_length.is_some() {
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        if s.te_chunked_last && s.te_chunked_count > 1 {
            return Err(HttpError::ChunkedTwice);
        }
        if s.te_chunked_last && s.te_other {
            return Err(HttpError::UnsupportedTransferCoding);
        }
        // Item 4: chunked last is chunked; any other final coding reads until close.
        return Ok(if s.te_chunked_last {
            BodyKind::Chunked
        } else {
            BodyKind::UntilClose
        });
    }
    Ok(match s.content_length {
        Some(n) => BodyKind::ContentLength(n),
        None => BodyKind::UntilClose,
    })
}

impl<'a> ResponseHead<'a> {
    pub fn version(&self) -> Version {
        self.version
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn reason(&self) -> &'a str {
        self.reason
    }

    /// The header fields, in order (look one up with `Headers::get` / `Headers::has_token`).
    pub fn headers(&self) -> Headers<'a> {
        Headers::new(self.fields)
    }

    /// How the body is framed; SSE streams are [`BodyKind::UntilClose`].
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// `Some(n)` for a Content-Length body.
    pub fn content_length(&self) -> Option<u64> {
        match self.body {
            BodyKind::ContentLength(n) => Some(n),
            _ => None,
        }
    }

    pub fn is_chunked(&self) -> bool {
        self.body == BodyKind::Chunked
    }

    /// Whether another request may follow on this connection (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Progress<ResponseHead<'_>>, HttpError> {
        ResponseDecoder::new().decode(&HttpLimits::default(), input)
    }

    #[test]
    fn writes_get_request_rfc9112_3() {
        let mut out = Vec::new();
        write_get_request(
            &mut out,
            "/sse?topic=a",
            "127.0.0.1:8080",
            &[("Accept", "text/event-stream")],
        );
        assert_eq!(
            out,
            b"GET /sse?topic=a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: text/event-stream\r\n\r\n"
        );
        // What the client writes, the server reads back.
        let h = super::super::RequestDecoder::new()
            .decode(&HttpLimits::default(), &out)
            .unwrap()
            .event
            .unwrap();
        assert_eq!((h.path(), h.query()), ("/sse", Some("topic=a")));
        assert_eq!(h.header("accept"), Some(&b"text/event-stream"[..]));
        out.clear();
        write_request(
            &mut out,
            "POST",
            "/publish?topic=a",
            "h",
            &[],
            Framing::ContentLength(3),
        );
        assert_eq!(
            out,
            b"POST /publish?topic=a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn sse_response_head_runs_until_close_rfc9112_6_3() {
        let mut out = Vec::new();
        super::super::write_sse_response_head(&mut out, &[]);
        out.extend_from_slice(b"retry: 1000\n\n");
        let p = parse(&out).unwrap();
        let h = p.event.unwrap();
        assert_eq!(&out[p.consumed..], b"retry: 1000\n\n");
        assert_eq!(
            (h.version(), h.status(), h.reason()),
            (Version::Http11, 200, "OK")
        );
        assert_eq!(
            h.headers().get("content-type"),
            Some(&b"text/event-stream"[..])
        );
        assert_eq!(h.body(), BodyKind::UntilClose);
        assert!(!h.keep_alive());
    }

    #[test]
    fn response_framing_rfc9112_6_3() {
        let h = |r: &'static [u8]| parse(r).unwrap().event.unwrap();
        let r = h(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((r.content_length(), r.keep_alive()), (Some(5), true));
        let r = h(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.is_chunked());
        let r = h(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(r.body(), BodyKind::UntilClose);
        let r = h(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert_eq!((r.status(), r.body()), (101, BodyKind::None));
        assert!(r.headers().has_token("connection", "upgrade"));
        let r = h(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(r.body(), BodyKind::None);
        let r = h(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!r.keep_alive());
        let r = h(b"HTTP/1.1 200\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!((r.reason(), r.keep_alive()), ("", false));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err(),
            HttpError::ContentLengthWithTransferEncoding
        );
    }

    #[test]
    fn bad_status_lines_rfc9112_4() {
        for (line, want) in [
            ("HTTP/1.1 2x0 OK", HttpError::InvalidStatusLine),
            ("HTTP/1.1 099 X", HttpError::InvalidStatusLine),
            ("HTTP/2.0 200 OK", HttpError::VersionNotSupported),
            ("ICY 200 OK", HttpError::InvalidStatusLine),
        ] {
            let head = format!("{line}\r\n\r\n");
            assert_eq!(parse(head.as_bytes()).unwrap_err(), want, "{line}");
        }
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n").unwrap_err(),
            HttpError::WhitespaceBeforeColon
        );
    }

    #[test]
    fn incremental_response_head_bytewise() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let l = HttpLimits::default();
        let mut d = ResponseDecoder::new();
        for end in 0..resp.len() - 2 {
            let p = d.decode(&l, &resp[..end]).unwrap();
            assert_eq!((p.consumed, p.event.is_none()), (0, true), "at {end}");
        }
        let p = d.decode(&l, resp).unwrap();
        assert_eq!(p.consumed, resp.len() - 2);
        assert_eq!(p.event.unwrap().content_length(), Some(2));
    }
}
