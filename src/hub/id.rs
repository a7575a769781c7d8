//! Message ids on the wire: `E-N`, where `E` is the server lifetime's epoch and `N` the
//! sequence number within it (strictly increasing, from 1).
//!
//! Why an epoch: sequence numbers restart when the process does. Without the epoch, a client
//! holding `500` from the old process that reconnects after the new counter passed 500 would
//! silently skip every new message up to 500. With it, an id from another lifetime is
//! recognised as such and answered with a `reset` notice followed by everything still held.
//! Browsers treat the id as an opaque string and echo it in `Last-Event-ID`, so the format
//! costs them nothing.
//!
//! The server picks `E` as its start time in milliseconds since the Unix epoch: two lifetimes
//! of one server never share it (a restart takes longer than a millisecond). Comparisons of
//! ids only ever happen within one epoch.
//!
//! Never here: clocks (the epoch is given), I/O.

use std::fmt;

/// One message id: `epoch-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    pub epoch: u64,
    pub seq: u64,
}

impl EventId {
    /// Appends the wire form (`E-N`, decimal ASCII) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        crate::proto::write_u64(out, self.epoch);
        out.push(b'-');
        crate::proto::write_u64(out, self.seq);
    }

    /// Length of the wire form in bytes.
    pub fn len(&self) -> usize {
        crate::proto::digits(self.epoch) + 1 + crate::proto::digits(self.seq)
    }

    /// Never true: an id has at least three bytes. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

/// Where a resuming client wants to continue, relative to this server lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// An id of this lifetime: continue after sequence number `N`.
    After(u64),
    /// An id of another lifetime (or of a version before epochs, a bare number): what it
    /// refers to is unknown here, so the client gets a `reset` and everything still held.
    Foreign,
}

/// A `Last-Event-ID` / `since` that is neither empty nor an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEventId;

impl fmt::Display for BadEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message id looks like 1733480000123-42 (epoch-sequence)")
    }
}

/// Reads a client's resume point against `epoch`. `Ok(None)` for an empty value (a fresh
/// subscriber). Accepted: `E-N` with both parts decimal; a bare decimal number (ids before
/// epochs existed) counts as another lifetime.
pub fn parse_resume(text: &str, epoch: u64) -> Result<Option<Resume>, BadEventId> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let decimal = |s: &str| -> Result<u64, BadEventId> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadEventId);
        }
        s.parse().map_err(|_| BadEventId)
    };
    match text.split_once('-') {
        Some((e, n)) => {
            let (e, n) = (decimal(e)?, decimal(n)?);
            Ok(Some(if e == epoch {
                Resume::After(n)
            } else {
                Resume::Foreign
            }))
        }
        None => decimal(text).map(|_| Some(Resume::Foreign)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_round_trips() {
        let id = EventId {
            epoch: 1_733_480_000_123,
            seq: 42,
        };
        let mut out = Vec::new();
        id.write(&mut out);
        assert_eq!(out, b"1733480000123-42");
        assert_eq!(id.len(), out.len());
        assert_eq!(id.to_string(), "1733480000123-42");
        assert_eq!(
            parse_resume("1733480000123-42", id.epoch),
            Ok(Some(Resume::After(42)))
        );
    }

    #[test]
    fn resume_table() {
        let epoch = 77;
        for (text, want) in [
            ("", Ok(None)),
            ("  ", Ok(None)),
            ("77-0", Ok(Some(Resume::After(0)))),
            (" 77-9 ", Ok(Some(Resume::After(9)))),
            ("78-9", Ok(Some(Resume::Foreign))),
            ("500", Ok(Some(Resume::Foreign))),
            ("0", Ok(Some(Resume::Foreign))),
            ("x", Err(BadEventId)),
            ("77-", Err(BadEventId)),
            ("-9", Err(BadEventId)),
            ("77-9-1", Err(BadEventId)),
            ("77--9", Err(BadEventId)),
            ("+77-9", Err(BadEventId)),
            ("77-99999999999999999999", Err(BadEventId)),
            ("1e3", Err(BadEventId)),
        ] {
            assert_eq!(parse_resume(text, epoch), want, "{text:?}");
        }
    }
}
