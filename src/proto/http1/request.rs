//! Server role: [`RequestDecoder`] turns bytes into a [`RequestHead`] that borrows them.
//!
//! The scanner (`scan.rs`) finds the end of the head and enforces the limits as bytes arrive;
//! httparse then validates the grammar of the complete head once, with its field slots on
//! the stack. Framing and connection rules (RFC 9112 §6, §9) are decided here. Never allocates.

use std::mem::MaybeUninit;

use super::fields::{FieldSummary, Headers};
use super::scan::HeadScanner;
use super::{BodyKind, HttpError, HttpLimits, Version, HEADERS_MAX_CAP};
use crate::proto::Progress;

/// Incremental request-head decoder; one per connection while a head is being read.
///
/// Contract: after `Ok(Progress { event: None, .. })`, call again with the same bytes plus
/// whatever arrived (the scanner resumes where it stopped, so a head fed one byte at a time
/// costs O(n), not O(n²)). After a head, drop `consumed` bytes; the body (if any) follows.
#[derive(Debug, Clone, Default)]
pub struct RequestDecoder {
    scanner: HeadScanner,
}

/// A parsed request head, borrowing the decoder's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    method: &'a str,
    target: &'a str,
    version: Version,
    fields: &'a [u8],
    body: BodyKind,
    keep_alive: bool,
}

impl RequestDecoder {
    pub fn new() -> Self {
        RequestDecoder::default()
    }

    /// Forget any partial head (for reusing the decoder on a fresh connection).
    pub fn reset(&mut self) {
        self.scanner = HeadScanner::default();
    }

    /// Whether part of a head has arrived (the caller has passed bytes that did not complete
    /// one). False between requests, which is how a server tells an idle connection from a
    /// slow one.
    pub fn has_partial_head(&self) -> bool {
        !self.scanner.is_fresh()
    }

    /// Decode one request head from the front of `input`.
    ///
    /// `Ok(consumed = 0, None)`: need more bytes. `Ok(consumed = head length, Some(head))`:
    /// `0 < consumed <= input.len()`. `Err(e)`: answer `e.status()`; the connection is unusable.
    pub fn decode<'a>(
        &mut self,
        limits: &HttpLimits,
        input: &'a [u8],
    ) -> Result<Progress<RequestHead<'a>>, HttpError> {
        let scanned = self
            .scanner
            .scan(input, limits, HttpError::RequestLineTooLong);
        // A failed scan leaves the scanner mid-head; start clean if the decoder is reused.
        let Some(span) = scanned.inspect_err(|_| self.reset())? else {
            return Ok(Progress {
                consumed: 0,
                event: None,
            });
        };
        let head = &input[..span.len];
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_MAX_CAP];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(head, &mut slots) {
            Ok(httparse::Status::Complete(n)) if n == span.len => {}
            // The scanner saw a whole head; httparse disagreeing means malformed lines.
            Ok(_) => return Err(HttpError::InvalidRequestLine),
            Err(e) => return Err(map_parse_error(e, head)),
        }
        let version = match req.version {
            Some(0) => Version::Http10,
            Some(1) => Version::Http11,
            _ => return Err(HttpError::VersionNotSupported),
        };
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Err(HttpError::InvalidRequestLine);
        };
        let s = FieldSummary::collect(req.headers)?;
        let body = request_body_kind(&s, version)?;
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1; at most one in HTTP/1.0.
        if s.host_count > 1 {
            return Err(HttpError::DuplicateHost);
        }
        if s.host_count == 0 && version == Version::Http11 {
            return Err(HttpError::MissingHost);
        }
        // RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
        let keep_alive = !s.conn_close && (version == Version::Http11 || s.conn_keep_alive);
        Ok(Progress {
            consumed: span.len,
            event: Some(RequestHead {
                method,
                target,
                version,
                fields: &head[span.fields_start..],
                body,
                keep_alive,
            }),
        })
    }
}

/// RFC 9112 §6.1 and §6.3 for requests, strictest reading: anything that could let two
/// parties disagree on where the body ends is rejected and closes the connection.
fn request_body_kind(s: &FieldSummary, version: Version) -> Result<BodyKind, HttpError> {
    if !s.te_present {
        return Ok(match s.content_length {
            Some(n) => BodyKind::ContentLength(n),
            None => BodyKind::None,
        });
    }
    if version == Version::Http10 {
        return Err(HttpError::TransferEncodingInHttp10);
    }
    if s.content_length.is_some() {
        return Err(HttpError::ContentLengthWithTransferEncoding);
    }
    if !s.te_chunked_last {
        return Err(HttpError::ChunkedNotFinal);
    }
    if s.te_chunked_count > 1 {
        return Err(HttpError::ChunkedTwice);
    }
    if s.te_other {
        // We implement no compression codings (gzip, deflate, ...), only chunked.
        return Err(HttpError::UnsupportedTransferCoding);
    }
    Ok(BodyKind::Chunked)
}

/// Turn an httparse verdict into our cause. A version error is 505 only when the line really
/// carries a well-formed `HTTP/x.y` (RFC 9110 §15.6.6); otherwise the line is just malformed.
pub(crate) fn map_parse_error(e: httparse::Error, head: &[u8]) -> HttpError {
    match e {
        httparse::Error::HeaderName => header_name_error(head),
        httparse::Error::HeaderValue => HttpError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Status => HttpError::InvalidStatusLine,
        httparse::Error::Version => {
            let line = first_line(head);
            let version = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
            if is_other_http_version(version) {
                HttpError::VersionNotSupported
            } else {
                HttpError::InvalidRequestLine
            }
        }
        _ => HttpError::InvalidRequestLine,
    }
}

/// Name why httparse refused a field name: whitespace before the colon (RFC 9112 §5.1) gets
/// its own cause, anything else is an invalid name. Cold path: runs only on rejected heads.
pub(crate) fn header_name_error(head: &[u8]) -> HttpError {
    let ws_before_colon = head
        .split(|&b| b == b'\n')
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|c| &line[..c]))
        .any(|name| matches!(name.last(), Some(b' ' | b'\t')));
    if ws_before_colon {
        HttpError::WhitespaceBeforeColon
    } else {
        HttpError::InvalidHeaderName
    }
}

/// The first non-empty line of a head, CR/LF stripped.
pub(crate) fn first_line(head: &[u8]) -> &[u8] {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| !l.is_empty())
        .unwrap_or(&[])
}

/// `HTTP/` DIGIT `.` DIGIT (or `HTTP/` DIGIT, as HTTP/2 and HTTP/3 are written) that is not
/// 1.0 or 1.1. Case-sensitive: `http/1.1` is a malformed line (RFC 9112 §2.3).
pub(crate) fn is_other_http_version(v: &[u8]) -> bool {
    let Some(rest) = v.strip_prefix(b"HTTP/") else {
        return false;
    };
    let well_formed = match rest {
        [a] => a.is_ascii_digit(),
        [a, b'.', b] => a.is_ascii_digit() && b.is_ascii_digit(),
        _ => false,
    };
    well_formed && rest != b"1.0" && rest != b"1.1"
}

impl<'a> RequestHead<'a> {
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target as sent (origin-form `/p?q`, absolute-form, or `*`).
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path of the target without the query; absolute-form (RFC 9112 §3.2.2) is reduced
    /// to its path (`http://h/p?q` gives `/p`, `http://h` gives `/`).
    pub fn path(&self) -> &'a str {
        let t = self.target;
        let t = strip_scheme_authority(t).unwrap_or(t);
        match t.find('?') {
            Some(q) => &t[..q],
            None => t,
        }
    }

    /// The raw query after `?`, undecoded; see [`super::query_pairs`].
    pub fn query(&self) -> Option<&'a str> {
        self.target.find('?').map(|q| &self.target[q + 1..])
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields, in order.
    pub fn headers(&self) -> Headers<'a> {
        Headers::new(self.fields)
    }

    /// First value of the field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().get(name)
    }

    /// Whether the comma-list field `name` contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers().has_token(name, token)
    }

    /// How the body that follows the head is framed.
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the client waits for [`CONTINUE_RESPONSE`] before sending its body
    /// (`Expect: 100-continue`, RFC 9110 §10.1.1). Send it only if the body is wanted; a
    /// final status instead (413, say) tells the client not to send it.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }
}

/// The interim response that lets an `Expect: 100-continue` client send its body.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// `http://authority/rest` to `/rest` (or `/` when there is no path).
fn strip_scheme_authority(t: &str) -> Option<&str> {
    let scheme_end = t.find("://")?;
    if !t[..scheme_end].eq_ignore_ascii_case("http")
        && !t[..scheme_end].eq_ignore_ascii_case("https")
    {
        return None;
    }
    let after = &t[scheme_end + 3..];
    Some(match after.find(['/', '?']) {
        Some(i) if after.as_bytes()[i] == b'/' => &after[i..],
        // `http://h?q`: the path is empty, which means "/"; keep the query out of it.
        _ => "/",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Progress<RequestHead<'_>>, HttpError> {
        RequestDecoder::new().decode(&HttpLimits::default(), input)
    }

    fn head(input: &[u8]) -> RequestHead<'_> {
        parse(input).unwrap().event.unwrap()
    }

    fn err(input: &[u8]) -> HttpError {
        parse(input).unwrap_err()
    }

    #[test]
    fn parses_request_line_and_target_rfc9112_3() {
        let req = b"GET /sse?topic=a&topic=b HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let p = parse(req).unwrap();
        assert_eq!(p.consumed, req.len() - 4);
        let h = p.event.unwrap();
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/sse?topic=a&topic=b");
        assert_eq!(h.path(), "/sse");
        assert_eq!(h.query(), Some("topic=a&topic=b"));
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.body(), BodyKind::None);
        assert!(h.keep_alive());
        assert_eq!(h.header("host"), Some(&b"x"[..]));
    }

    #[test]
    fn absolute_form_and_asterisk_rfc9112_3_2() {
        let h = head(b"GET http://Example.com/p/q?x=1 HTTP/1.1\r\nHost: e\r\n\r\n");
        assert_eq!((h.path(), h.query()), ("/p/q", Some("x=1")));
        let h = head(b"GET HTTP://e?x HTTP/1.1\r\nHost: e\r\n\r\n");
        assert_eq!((h.path(), h.query()), ("/", Some("x")));
        let h = head(b"OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n");
        assert_eq!((h.path(), h.query()), ("*", None));
    }

    #[test]
    fn needs_more_until_empty_line() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().event, None);
        assert_eq!(parse(b"").unwrap().consumed, 0);
    }

    #[test]
    fn versions_rfc9112_2_3_and_rfc9110_15_6_6() {
        assert_eq!(
            err(b"GET / HTTP/2.0\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        assert_eq!(
            err(b"GET / HTTP/1.2\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        assert_eq!(err(b"GET / HTTP/3\r\n\r\n"), HttpError::VersionNotSupported);
        assert_eq!(
            err(b"GET / http/1.1\r\n\r\n"),
            HttpError::InvalidRequestLine
        );
        assert_eq!(
            err(b"GET / HTTP/1.10\r\n\r\n"),
            HttpError::InvalidRequestLine
        );
        assert_eq!(err(b"GET / FOO\r\n\r\n"), HttpError::InvalidRequestLine);
        assert_eq!(err(b"GET /\r\n\r\n"), HttpError::InvalidRequestLine);
        assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").version(), Version::Http10);
    }

    #[test]
    fn malformed_lines_are_400_rfc9112_3_and_5() {
        assert_eq!(
            err(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n"),
            HttpError::InvalidRequestLine
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHo(st: x\r\n\r\n"),
            HttpError::InvalidHeaderName
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
            HttpError::InvalidHeaderName
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n"),
            HttpError::InvalidHeaderValue
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
            HttpError::WhitespaceBeforeColon
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"),
            HttpError::WhitespaceBeforeColon
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n"),
            HttpError::InvalidHeaderName
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nA: 1\r\n 2\r\n\r\n"),
            HttpError::ObsFold
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: 1\r2\r\n\r\n"), HttpError::BareCr);
    }

    #[test]
    fn host_rules_rfc9112_3_2() {
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            HttpError::DuplicateHost
        );
        // HTTP/1.0 may omit Host.
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn body_framing_rfc9112_6_3() {
        let h = head(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.body(), BodyKind::ContentLength(12));
        let h = head(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(h.body(), BodyKind::ContentLength(3));
        let h = head(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.body(), BodyKind::Chunked);
        let cases: &[(&[u8], HttpError)] = &[
            (
                b"Content-Length: 1\r\nContent-Length: 2",
                HttpError::ConflictingContentLength,
            ),
            (b"Content-Length: abc", HttpError::InvalidContentLength),
            (
                b"Content-Length: 99999999999999999999",
                HttpError::InvalidContentLength,
            ),
            (b"Content-Length: -1", HttpError::InvalidContentLength),
            (
                b"Content-Length: 5\r\nTransfer-Encoding: chunked",
                HttpError::ContentLengthWithTransferEncoding,
            ),
            (b"Transfer-Encoding: gzip", HttpError::ChunkedNotFinal),
            (
                b"Transfer-Encoding: chunked, gzip",
                HttpError::ChunkedNotFinal,
            ),
            (b"Transfer-Encoding: ,", HttpError::ChunkedNotFinal),
            (
                b"Transfer-Encoding: chunked, chunked",
                HttpError::ChunkedTwice,
            ),
            (
                b"Transfer-Encoding: gzip, chunked",
                HttpError::UnsupportedTransferCoding,
            ),
            (
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                HttpError::UnsupportedTransferCoding,
            ),
        ];
        for (fields, want) in cases {
            let mut req = b"POST /p HTTP/1.1\r\nHost: x\r\n".to_vec();
            req.extend_from_slice(fields);
            req.extend_from_slice(b"\r\n\r\n");
            assert_eq!(err(&req), *want, "{}", String::from_utf8_lossy(fields));
            assert!(want.closes_connection());
        }
        assert_eq!(HttpError::ChunkedNotFinal.status(), 400);
        assert_eq!(HttpError::UnsupportedTransferCoding.status(), 501);
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::TransferEncodingInHttp10
        );
    }

    #[test]
    fn keep_alive_rules_rfc9112_9_3() {
        let ka = |req: &[u8]| head(req).keep_alive();
        assert!(ka(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n"
        ));
        assert!(ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        let h = head(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n");
        assert!(h.header_has_token("Connection", "upgrade"));
    }

    #[test]
    fn expect_continue_rfc9110_10_1_1() {
        let h = head(
            b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n",
        );
        assert!(h.expects_continue());
        assert!(!head(b"POST /p HTTP/1.1\r\nHost: x\r\n\r\n").expects_continue());
        // HTTP/1.0 clients cannot understand 1xx (RFC 9110 §10.1.1).
        assert!(!head(b"POST /p HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
    }

    #[test]
    fn decoder_resets_after_error() {
        let l = HttpLimits::default();
        let mut d = RequestDecoder::new();
        // Advance the scanner 25 bytes into a start line, then fail: a reused decoder must
        // start clean rather than resume at byte 25 of the next input.
        let partial = b"GET /aaaaaaaaaaaaaaaaaaaa";
        assert_eq!(d.decode(&l, partial).unwrap().event, None);
        let bad = b"GET /aaaaaaaaaaaaaaaaaaaa\rX";
        assert_eq!(d.decode(&l, bad), Err(HttpError::BareCr));
        let ok = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long-Header: 1\r\n\r\n";
        let h = d.decode(&l, ok).unwrap().event.unwrap();
        assert_eq!(h.header("host"), Some(&b"x"[..]));
        assert_eq!(h.headers().count(), 2);
    }

    #[test]
    fn pipelined_heads_decode_in_order_rfc9112_9_3_2() {
        let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut d = RequestDecoder::new();
        let l = HttpLimits::default();
        let p = d.decode(&l, two).unwrap();
        assert_eq!(p.event.unwrap().path(), "/a");
        let rest = &two[p.consumed..];
        let p = d.decode(&l, rest).unwrap();
        assert_eq!(p.event.unwrap().path(), "/b");
        assert_eq!(p.consumed, rest.len());
    }

    #[test]
    fn header_count_cap_applies_to_configured_max() {
        let l = HttpLimits {
            headers_max: 10_000,
            ..HttpLimits::default()
        };
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..HEADERS_MAX_CAP {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let l = HttpLimits {
            head_bytes_max: 1 << 20,
            ..l
        };
        assert_eq!(
            RequestDecoder::new().decode(&l, &req).unwrap_err(),
            HttpError::TooManyHeaders
        );
    }
}
