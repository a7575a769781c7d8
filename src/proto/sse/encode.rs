//! SSE encoder: fields and whole events written into a caller's `Vec<u8>`.
//!
//! Layout of one event as [`encode`] writes it (every line ends in a single LF, which §9.2.5
//! allows; `data` is split at every CR, LF or CRLF in the payload):
//!
//! ```text
//! id: 42\n            optional; `Id::Num` or `Id::Str`
//! event: price\n      optional
//! retry: 3000\n       optional
//! data: line one\n    one `data:` line per payload line, at least one
//! data:\n             an empty line of the payload: no trailing space
//! \n                  blank line: the client dispatches here
//! ```
//!
//! Fields are validated before the first byte is written, so on `Err` the buffer is unchanged.
//! Nothing here allocates except the growth of the caller's `Vec`.

use super::SseError;
use crate::proto::{digits, write_u64};

/// The value of an `id:` field: the hub uses numbers, other callers may use any string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id<'a> {
    Num(u64),
    Str(&'a str),
}

/// One event to encode. `data` always produces at least one `data:` line, even when empty,
/// because §9.2.6 dispatches nothing while the data buffer is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutEvent<'a> {
    pub id: Option<Id<'a>>,
    pub event: Option<&'a str>,
    pub retry_ms: Option<u64>,
    pub data: &'a str,
}

/// CR and LF end a line (§9.2.5); NUL makes a client ignore an `id` (§9.2.6). We refuse all
/// three in ids and event names so what we write is exactly what a client reads back.
fn single_line(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn check(ev: &OutEvent<'_>) -> Result<(), SseError> {
    if let Some(Id::Str(id)) = ev.id {
        if !single_line(id) {
            return Err(SseError::IdInvalid);
        }
    }
    if let Some(name) = ev.event {
        if !single_line(name) {
            return Err(SseError::EventNameInvalid);
        }
    }
    Ok(())
}

/// Splits a payload at CRLF, CR or LF, as a client will (§9.2.5). Always yields at least one
/// line; a trailing break yields a final empty line, so "a\n" is ["a", ""].
fn payload_lines(data: &str) -> impl Iterator<Item = &str> {
    let bytes = data.as_bytes();
    let mut start = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = &bytes[start..];
        match memchr::memchr2(b'\r', b'\n', rest) {
            None => {
                done = true;
                Some(&data[start..])
            }
            Some(i) => {
                let line = &data[start..start + i];
                let brk = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start += i + brk;
                Some(line)
            }
        }
    })
}

/// `name: value\n`, or `name:\n` for an empty value (no trailing space to strip).
fn field_len(name: &str, value_len: usize) -> usize {
    name.len() + 1 + if value_len == 0 { 0 } else { 1 + value_len } + 1
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    if !value.is_empty() {
        // One space is optional on the wire and removed by the client (§9.2.6), so a value
        // that itself starts with a space survives: "data:  x" reads back as " x".
        out.push(b' ');
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

/// Exact number of bytes [`encode`] will write for `ev`, after validating it.
pub fn encoded_len(ev: &OutEvent<'_>) -> Result<usize, SseError> {
    check(ev)?;
    let mut n = 1; // the blank line that dispatches
    match ev.id {
        Some(Id::Num(v)) => n += field_len("id", digits(v)),
        Some(Id::Str(s)) => n += field_len("id", s.len()),
        None => {}
    }
    if let Some(name) = ev.event {
        n += field_len("event", name.len());
    }
    if let Some(ms) = ev.retry_ms {
        n += field_len("retry", digits(ms));
    }
    n += payload_lines(ev.data)
        .map(|l| field_len("data", l.len()))
        .sum::<usize>();
    Ok(n)
}

/// Appends one whole event (fields, then the blank line) to `out`; returns the bytes written.
/// On `Err`, `out` is unchanged.
pub fn encode(out: &mut Vec<u8>, ev: &OutEvent<'_>) -> Result<usize, SseError> {
    let len = encoded_len(ev)?;
    out.reserve(len);
    let start = out.len();
    match ev.id {
        Some(Id::Num(v)) => write_id_u64(out, v),
        Some(Id::Str(s)) => write_id(out, s)?,
        None => {}
    }
    if let Some(name) = ev.event {
        write_event(out, name)?;
    }
    if let Some(ms) = ev.retry_ms {
        write_retry(out, ms);
    }
    write_data(out, ev.data);
    write_end(out);
    debug_assert_eq!(out.len() - start, len, "encoded_len disagrees with encode");
    Ok(len)
}

/// `id: <s>\n`. An empty `s` is allowed: it resets the client's last event ID (§9.2.6).
pub fn write_id(out: &mut Vec<u8>, id: &str) -> Result<(), SseError> {
    if !single_line(id) {
        return Err(SseError::IdInvalid);
    }
    push_field(out, "id", id.as_bytes());
    Ok(())
}

/// `id: <decimal>\n`.
pub fn write_id_u64(out: &mut Vec<u8>, id: u64) {
    out.extend_from_slice(b"id: ");
    write_u64(out, id);
    out.push(b'\n');
}

/// `event: <name>\n`.
pub fn write_event(out: &mut Vec<u8>, name: &str) -> Result<(), SseError> {
    if !single_line(name) {
        return Err(SseError::EventNameInvalid);
    }
    push_field(out, "event", name.as_bytes());
    Ok(())
}

/// One `data:` line per line of `data` (split at CRLF, CR, LF); at least one line.
pub fn write_data(out: &mut Vec<u8>, data: &str) {
    for line in payload_lines(data) {
        push_field(out, "data", line.as_bytes());
    }
}

/// `retry: <ms>\n`: the client's reconnection delay in milliseconds.
pub fn write_retry(out: &mut Vec<u8>, ms: u64) {
    out.extend_from_slice(b"retry: ");
    write_u64(out, ms);
    out.push(b'\n');
}

/// `: <text>\n`, a comment line, which clients ignore (§9.2.6): used as a heartbeat that keeps
/// proxies from closing an idle stream. It does not end an event.
pub fn write_comment(out: &mut Vec<u8>, text: &str) -> Result<(), SseError> {
    if text.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(SseError::CommentInvalid);
    }
    push_field(out, "", text.as_bytes());
    Ok(())
}

/// The blank line that makes the client dispatch the event built so far.
pub fn write_end(out: &mut Vec<u8>) {
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ev: OutEvent<'_>) -> String {
        let mut out = Vec::new();
        let n = encode(&mut out, &ev).unwrap();
        assert_eq!(n, out.len());
        String::from_utf8(out).unwrap()
    }

    fn data(d: &str) -> OutEvent<'_> {
        OutEvent {
            id: None,
            event: None,
            retry_ms: None,
            data: d,
        }
    }

    #[test]
    fn full_event_field_order_and_layout() {
        let ev = OutEvent {
            id: Some(Id::Num(42)),
            event: Some("price"),
            retry_ms: Some(3000),
            data: "up",
        };
        assert_eq!(enc(ev), "id: 42\nevent: price\nretry: 3000\ndata: up\n\n");
    }

    #[test]
    fn data_splits_at_lf_crlf_and_cr_9_2_5() {
        assert_eq!(enc(data("a\nb")), "data: a\ndata: b\n\n");
        assert_eq!(enc(data("a\r\nb")), "data: a\ndata: b\n\n");
        assert_eq!(enc(data("a\rb")), "data: a\ndata: b\n\n");
        // CR then LF is one break; LF then CR is two.
        assert_eq!(enc(data("a\n\rb")), "data: a\ndata:\ndata: b\n\n");
        assert_eq!(enc(data("a\n")), "data: a\ndata:\n\n");
        assert_eq!(enc(data("\r")), "data:\ndata:\n\n");
    }

    #[test]
    fn empty_data_still_writes_a_data_line_9_2_6_dispatch() {
        assert_eq!(enc(data("")), "data:\n\n");
    }

    #[test]
    fn leading_space_in_value_is_kept_by_the_extra_space() {
        assert_eq!(enc(data(" x")), "data:  x\n\n");
    }

    #[test]
    fn u64_ids_and_retry_render_in_decimal() {
        let mut out = Vec::new();
        write_id_u64(&mut out, 0);
        write_id_u64(&mut out, u64::MAX);
        write_retry(&mut out, 7);
        assert_eq!(out, b"id: 0\nid: 18446744073709551615\nretry: 7\n");
    }

    #[test]
    fn ids_and_names_with_cr_lf_nul_are_refused_and_buffer_untouched() {
        for bad in ["a\nb", "a\rb", "a\0b", "\n"] {
            let mut out = b"keep".to_vec();
            let ev = OutEvent {
                id: Some(Id::Str(bad)),
                ..data("x")
            };
            assert_eq!(encode(&mut out, &ev), Err(SseError::IdInvalid));
            let ev = OutEvent {
                event: Some(bad),
                ..data("x")
            };
            assert_eq!(encode(&mut out, &ev), Err(SseError::EventNameInvalid));
            assert_eq!(write_id(&mut out, bad), Err(SseError::IdInvalid));
            assert_eq!(write_event(&mut out, bad), Err(SseError::EventNameInvalid));
            assert_eq!(out, b"keep");
        }
        // NUL is fine in a comment and in data; line breaks are not in a comment.
        let mut out = Vec::new();
        assert_eq!(
            write_comment(&mut out, "a\rb"),
            Err(SseError::CommentInvalid)
        );
        write_comment(&mut out, "ping").unwrap();
        write_comment(&mut out, "").unwrap();
        assert_eq!(out, b": ping\n:\n");
        assert!(SseError::IdInvalid.to_string().contains("CR, LF or NUL"));
    }

    #[test]
    fn empty_string_id_resets_and_is_allowed() {
        let ev = OutEvent {
            id: Some(Id::Str("")),
            ..data("x")
        };
        assert_eq!(enc(ev), "id:\ndata: x\n\n");
    }

    #[test]
    fn encode_with_exact_reserve_does_not_regrow() {
        let ev = OutEvent {
            id: Some(Id::Num(1234567)),
            event: Some("e"),
            retry_ms: None,
            data: "line\r\nline\rline\n",
        };
        let len = encoded_len(&ev).unwrap();
        let mut out = Vec::with_capacity(len);
        let ptr = out.as_ptr();
        encode(&mut out, &ev).unwrap();
        assert_eq!(out.len(), len);
        assert_eq!(
            out.as_ptr(),
            ptr,
            "encode reallocated a buffer sized by encoded_len"
        );
    }
}
