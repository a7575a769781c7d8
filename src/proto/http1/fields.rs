//! Header fields: lookup over a head's raw field block, comma-list tokens, and the framing
//! rules (Content-Length, Transfer-Encoding, Connection, Host) shared by both roles.
//!
//! Never allocates. Lookup re-reads the raw block instead of storing parsed fields, which
//! keeps a parsed head a few words big; heads are small and lookups few.

use super::scan::find_cr_or_lf;
use super::HttpError;

/// One field line: name as sent, value with surrounding whitespace removed (RFC 9112 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// The field lines of a head that httparse has already validated, in order.
///
/// Lines end in CRLF or LF; the block ends at the first empty line (or the end of the slice).
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Headers<'a> {
    pub(crate) fn new(block: &'a [u8]) -> Self {
        Headers { rest: block }
    }

    /// First value of `name` (compared case-insensitively, RFC 9110 §5.1).
    pub fn get(mut self, name: &str) -> Option<&'a [u8]> {
        while let Some((n, v)) = self.next_raw() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                return Some(v);
            }
        }
        None
    }

    /// Whether any `name` line holds `token` as a comma-separated element, case-insensitively
    /// (RFC 9110 §5.6.1), e.g. `Connection: keep-alive, Upgrade` contains `upgrade`.
    pub fn has_token(mut self, name: &str, token: &str) -> bool {
        while let Some((n, v)) = self.next_raw() {
            if n.eq_ignore_ascii_case(name.as_bytes()) && list_contains_token(v, token) {
                return true;
            }
        }
        false
    }

    /// Next (name, value) as bytes; lookups compare these without a UTF-8 check.
    fn next_raw(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            // The head was validated, so the first CR or LF ends the line (CRLF or LF).
            let (line, rest) = match find_cr_or_lf(self.rest) {
                Some(end) => {
                    let skip = if self.rest[end..].starts_with(b"\r\n") {
                        2
                    } else {
                        1
                    };
                    (&self.rest[..end], &self.rest[end + skip..])
                }
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            if line.is_empty() {
                self.rest = &[];
                return None;
            }
            // A line without a colon is not reachable after httparse validation; skip it
            // rather than panic.
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                return Some((&line[..colon], trim_ows(&line[colon + 1..])));
            }
        }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = HeaderField<'a>;

    fn next(&mut self) -> Option<HeaderField<'a>> {
        loop {
            let (name, value) = self.next_raw()?;
            // Names are tokens (ASCII) after validation; skip rather than panic if not.
            if let Ok(name) = std::str::from_utf8(name) {
                return Some(HeaderField { name, value });
            }
        }
    }
}

/// Strip optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Whether the comma-separated list `value` has an element equal to `token`, ignoring ASCII
/// case and surrounding whitespace; empty elements are skipped (RFC 9110 §5.6.1).
pub fn list_contains_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|el| trim_ows(el).eq_ignore_ascii_case(token.as_bytes()))
}

/// What the framing-relevant fields of one head say, gathered in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldSummary {
    pub content_length: Option<u64>,
    /// Any Transfer-Encoding line present.
    pub te_present: bool,
    /// The last coding seen is chunked.
    pub te_chunked_last: bool,
    /// How many times chunked appears.
    pub te_chunked_count: u32,
    /// Some coding other than chunked appears.
    pub te_other: bool,
    pub conn_close: bool,
    pub conn_keep_alive: bool,
    pub host_count: u32,
}

impl FieldSummary {
    pub(crate) fn collect(headers: &[httparse::Header<'_>]) -> Result<Self, HttpError> {
        let mut s = FieldSummary::default();
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                for el in h.value.split(|&b| b == b',') {
                    let n = parse_decimal(trim_ows(el))?;
                    match s.content_length {
                        Some(prev) if prev != n => return Err(HttpError::ConflictingContentLength),
                        _ => s.content_length = Some(n),
                    }
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                s.te_present = true;
                for el in h.value.split(|&b| b == b',') {
                    let coding = trim_ows(el);
                    if coding.is_empty() {
                        continue;
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        s.te_chunked_count += 1;
                        s.te_chunked_last = true;
                    } else {
                        s.te_other = true;
                        s.te_chunked_last = false;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                s.conn_close |= list_contains_token(h.value, "close");
                s.conn_keep_alive |= list_contains_token(h.value, "keep-alive");
            } else if name.eq_ignore_ascii_case(b"host") {
                s.host_count += 1;
            }
        }
        Ok(s)
    }
}

/// `1*DIGIT` into u64 (RFC 9110 §8.6); signs, spaces, empties and overflow are invalid.
pub(crate) fn parse_decimal(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(HttpError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::InvalidContentLength)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn iterates_and_looks_up_case_insensitively_rfc9110_5_1() {
        let block = b"Host: example\r\nX-A:  1 \r\nx-a: 2\nEmpty:\r\n\r\nNot: seen\r\n";
        let hs = Headers::new(block);
        let all: Vec<_> = hs.map(|f| (f.name, f.value)).collect();
        assert_eq!(
            all,
            vec![
                ("Host", &b"example"[..]),
                ("X-A", b"1"),
                ("x-a", b"2"),
                ("Empty", b""),
            ]
        );
        assert_eq!(hs.get("HOST"), Some(&b"example"[..]));
        assert_eq!(hs.get("x-A"), Some(&b"1"[..]));
        assert_eq!(hs.get("not"), None);
    }

    #[test]
    fn list_tokens_rfc9110_5_6_1() {
        assert!(list_contains_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(list_contains_token(b" , CLOSE ,", "close"));
        assert!(!list_contains_token(b"closed", "close"));
        assert!(!list_contains_token(b"", "close"));
        let hs = Headers::new(b"Connection: foo\r\nConnection: bar, Upgrade\r\n");
        assert!(hs.has_token("connection", "upgrade"));
        assert!(!hs.has_token("upgrade", "upgrade"));
    }

    #[test]
    fn content_length_rules_rfc9110_8_6_and_rfc9112_6_3() {
        assert_eq!(parse_decimal(b"0"), Ok(0));
        assert_eq!(parse_decimal(b"007"), Ok(7));
        assert_eq!(parse_decimal(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5 ",
            b"0x10",
            b"18446744073709551616",
            b"1e3",
        ] {
            assert_eq!(
                parse_decimal(bad),
                Err(HttpError::InvalidContentLength),
                "{bad:?}"
            );
        }
        // Identical duplicates and identical list members are one length.
        let s = FieldSummary::collect(&[h("Content-Length", "5"), h("content-length", "5, 5")]);
        assert_eq!(s.unwrap().content_length, Some(5));
        let s = FieldSummary::collect(&[h("Content-Length", "5"), h("Content-Length", "6")]);
        assert_eq!(s, Err(HttpError::ConflictingContentLength));
        let s = FieldSummary::collect(&[h("Content-Length", "5, 6")]);
        assert_eq!(s, Err(HttpError::ConflictingContentLength));
        let s = FieldSummary::collect(&[h("Content-Length", "5,")]);
        assert_eq!(s, Err(HttpError::InvalidContentLength));
    }

    #[test]
    fn transfer_coding_list_rfc9112_6_1() {
        let s = FieldSummary::collect(&[h("Transfer-Encoding", "gzip"), h("TE", "x")]).unwrap();
        assert!(s.te_present && !s.te_chunked_last && s.te_other);
        let s = FieldSummary::collect(&[h("Transfer-Encoding", "gzip, CHUNKED")]).unwrap();
        assert!(s.te_chunked_last && s.te_other && s.te_chunked_count == 1);
        let s = FieldSummary::collect(&[
            h("Transfer-Encoding", "chunked"),
            h("Transfer-Encoding", "chunked"),
        ])
        .unwrap();
        assert_eq!(s.te_chunked_count, 2);
        let s = FieldSummary::collect(&[h("Transfer-Encoding", "chunked, identity")]).unwrap();
        assert!(!s.te_chunked_last);
    }

    #[test]
    fn connection_and_host_rfc9112_9_3_and_3_2() {
        let s = FieldSummary::collect(&[
            h("Connection", "Keep-Alive"),
            h("connection", "upgrade, Close"),
            h("Host", "a"),
            h("HOST", "b"),
        ])
        .unwrap();
        assert!(s.conn_close && s.conn_keep_alive);
        assert_eq!(s.host_count, 2);
    }
}
