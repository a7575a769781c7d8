//! Query strings: `application/x-www-form-urlencoded` pairs with percent-decoding, as the
//! router reads `?topic=a&topic=b&event=x&lastEventId=5`.
//!
//! Borrows when nothing needs decoding, so the common case allocates nothing; a value with
//! `%XX` or `+` is decoded into an owned string. Malformed escapes are kept literally and
//! invalid UTF-8 becomes U+FFFD: a query never fails to parse, the router judges the values.

use std::borrow::Cow;

/// Iterator over `name=value` pairs of a raw query (the part after `?`).
#[derive(Debug, Clone)]
pub struct QueryPairs<'a> {
    rest: &'a str,
}

/// Pairs of `raw` in order, split on `&`; empty pieces are skipped, a piece without `=` has
/// an empty value, and `+` means space (WHATWG URL, application/x-www-form-urlencoded).
pub fn query_pairs(raw: &str) -> QueryPairs<'_> {
    QueryPairs { rest: raw }
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (piece, rest) = self.rest.split_once('&').unwrap_or((self.rest, ""));
            self.rest = rest;
            if piece.is_empty() {
                continue;
            }
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            return Some((percent_decode(name), percent_decode(value)));
        }
    }
}

/// Decode `%XX` escapes and `+` (as space). Borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &str) -> Vec<(String, String)> {
        query_pairs(raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn router_query_rfc3986_3_4() {
        assert_eq!(
            pairs("topic=a&topic=b&event=x&lastEventId=5"),
            [
                ("topic", "a"),
                ("topic", "b"),
                ("event", "x"),
                ("lastEventId", "5")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn decoding_borrows_when_clean() {
        let mut it = query_pairs("a=b");
        let (k, v) = it.next().unwrap();
        assert!(matches!((k, v), (Cow::Borrowed("a"), Cow::Borrowed("b"))));
        assert!(it.next().is_none());
    }

    #[test]
    fn percent_and_plus_rfc3986_2_1() {
        assert_eq!(
            pairs("t=a%2Fb+c&n%C3%A9=%e2%82%ac"),
            [("t", "a/b c"), ("né", "€")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        // Malformed escapes stay literal; invalid UTF-8 becomes U+FFFD.
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("%2B"), "+");
    }

    #[test]
    fn empty_pieces_and_missing_values() {
        assert_eq!(
            pairs("&&flag&k=&=v&"),
            [("flag", ""), ("k", ""), ("", "v")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(pairs("").is_empty());
        // Only the first '=' splits.
        assert_eq!(pairs("a=b=c"), [("a".to_string(), "b=c".to_string())]);
    }
}
