//! SSE parser, client role: bytes in, [`Event`]s out, following §9.2.6 "Interpreting an event
//! stream" step by step.
//!
//! Calling contract (the same as every decoder in `proto`):
//!
//! ```text
//! input:    | whole lines ............................ | partial line |
//!           |<------------- consumed ----------------->|<- leftover ->|
//! ```
//!
//! `feed` consumes whole lines only and returns at the first dispatched event or comment, so
//! `0 <= consumed <= input.len()`. The caller drops `consumed` bytes and calls again with the
//! leftover plus new bytes, unchanged (the parser resumes its line-end search after the part
//! of the leftover it already searched); `event: None` means "need more bytes". A line end split across calls
//! (CR at the end of one chunk, LF at the start of the next) is handled by remembering the CR.
//!
//! Bounds: a line, complete or still partial, longer than `event_bytes_max` is an error, and so
//! are data plus event-type buffers over `event_bytes_max`. So the caller's leftover and this
//! parser's buffers each stay under `event_bytes_max` (plus U+FFFD expansion of invalid UTF-8,
//! at most 3x, checked after decoding). After an error the parser refuses all input until
//! [`Parser::reconnect`]: the stream is in an unknown state and must be dropped.

use super::SseError;
use crate::proto::Progress;

/// What the parser hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A dispatched event (§9.2.6 "dispatch the event").
    Message(Message),
    /// A comment line (`:` first), which the spec says to ignore; surfaced because the load
    /// generator counts heartbeats. Text after the colon, one leading space removed.
    Comment(String),
}

/// The fields of a dispatched `MessageEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `event:` value, or "message" when none was given or it was empty (step 6).
    pub event_type: String,
    /// `data:` lines joined with LF, the final LF removed (step 3).
    pub data: String,
    /// The last event ID string at dispatch; persists across events until an `id:` changes it.
    pub last_event_id: String,
}

/// Bounds on what one server may make this parser hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest line, and largest data + event-type buffer of one event, in bytes.
    pub event_bytes_max: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            event_bytes_max: 1 << 20,
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Largest buffer [`Parser::recycle`] keeps for reuse.
const SPARE_BYTES_MAX: usize = 4096;

/// An SSE stream parser for one connection. See the module doc for the calling contract.
#[derive(Debug, Clone)]
pub struct Parser {
    limits: ParserLimits,
    /// Whether the first bytes of the stream were checked for a BOM (§9.2.5: one leading BOM
    /// is ignored).
    started: bool,
    /// The last consumed line ended in CR, so an LF first in the next input ends no new line.
    after_cr: bool,
    /// Length of the partial line left to the caller last time, already searched for a line
    /// end. The contract has the caller feed those bytes again unchanged at the front, so the
    /// search resumes after them: a long line arriving in small reads costs O(n), not O(n^2).
    scanned: usize,
    data: String,
    event_type: String,
    /// The "last event ID buffer", set by `id:` fields before dispatch.
    id_buffer: String,
    /// The "last event ID string", copied from the buffer at dispatch (step 1). This, not the
    /// buffer, is what a reconnect sends as `Last-Event-ID`.
    last_event_id: String,
    retry_ms: Option<u64>,
    failed: Option<SseError>,
    /// Buffers of events handed back with [`Parser::recycle`], reused by the next dispatch so
    /// a caller that recycles every event allocates nothing per event once they have grown.
    spare_data: String,
    spare_type: String,
    spare_id: String,
}

impl Parser {
    pub fn new(limits: ParserLimits) -> Parser {
        Parser {
            limits,
            started: false,
            after_cr: false,
            scanned: 0,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            failed: None,
            spare_data: String::new(),
            spare_type: String::new(),
            spare_id: String::new(),
        }
    }

    /// Hand a finished event back: its buffers are kept (one of each) for the next events,
    /// like `ws::MessageAssembler::recycle`. Optional; without it each event owns new buffers.
    pub fn recycle(&mut self, event: Event) {
        // A burst's large buffer is not kept: an idle stream holds small spares at most.
        let keep = |s: &String| s.capacity() <= SPARE_BYTES_MAX;
        match event {
            Event::Message(m) => {
                for (spare, s) in [
                    (&mut self.spare_data, m.data),
                    (&mut self.spare_type, m.event_type),
                    (&mut self.spare_id, m.last_event_id),
                ] {
                    if keep(&s) {
                        *spare = s;
                    }
                }
            }
            Event::Comment(c) => {
                if keep(&c) && self.spare_data.capacity() < c.capacity() {
                    self.spare_data = c;
                }
            }
        }
    }

    /// The last event ID string: send it as `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the server asked for with `retry:`, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Prepares for a new response on a reconnect: pending fields are dropped (end of stream
    /// discards an undispatched event, §9.2.6), a new BOM may lead, errors are cleared; the
    /// last event ID and the retry time are kept, as the spec keeps them on the EventSource.
    pub fn reconnect(&mut self) {
        self.started = false;
        self.after_cr = false;
        self.scanned = 0;
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.failed = None;
    }

    /// Consumes whole lines from `input` until an event or comment is complete or the input
    /// holds no further line end. See the module doc for the contract.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress<Event>, SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let result = self.feed_inner(input);
        if let Err(err) = result {
            self.failed = Some(err);
        }
        result
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<Progress<Event>, SseError> {
        let mut pos = 0usize;
        if !self.started {
            // Wait until we can tell a BOM from a line that merely starts like one.
            if input.len() < BOM.len() && BOM.starts_with(input) {
                return Ok(Progress {
                    consumed: 0,
                    event: None,
                });
            }
            if input.starts_with(BOM) {
                pos = BOM.len();
            }
            self.started = true;
        }
        let limit = self.limits.event_bytes_max;
        loop {
            if self.after_cr {
                let Some(&next) = input.get(pos) else { break };
                if next == b'\n' {
                    pos += 1; // the LF of a CRLF pair split across two lines of our loop
                }
                self.after_cr = false;
            }
            let rest = &input[pos..];
            // Nonzero only on the first pass, where the leftover line starts at `pos == 0`.
            let skip = std::mem::take(&mut self.scanned).min(rest.len());
            let Some(end) = memchr::memchr2(b'\r', b'\n', &rest[skip..]).map(|i| i + skip) else {
                if rest.len() > limit {
                    return Err(SseError::LineTooLong { limit_bytes: limit });
                }
                self.scanned = rest.len();
                break;
            };
            let line = &rest[..end];
            if line.len() > limit {
                return Err(SseError::LineTooLong { limit_bytes: limit });
            }
            self.after_cr = rest[end] == b'\r';
            pos += end + 1;
            if let Some(event) = self.line(line)? {
                return Ok(Progress {
                    consumed: pos,
                    event: Some(event),
                });
            }
        }
        Ok(Progress {
            consumed: pos,
            event: None,
        })
    }

    /// One line of §9.2.6, without its terminator.
    fn line(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        // "If the line is empty (a blank line): Dispatch the event."
        if line.is_empty() {
            return Ok(self.dispatch().map(Event::Message));
        }
        // "If the line starts with a U+003A COLON character (:): Ignore the line." (surfaced)
        if line[0] == b':' {
            let text = strip_one_space(&line[1..]);
            return Ok(Some(Event::Comment(
                String::from_utf8_lossy(text).into_owned(),
            )));
        }
        // "If the line contains a colon: field = before the first colon, value = after it,
        // minus one leading space. Otherwise field = the whole line, value = empty."
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => (&line[..c], strip_one_space(&line[c + 1..])),
            None => (line, &line[..0]),
        };
        self.field(field, value)?;
        Ok(None)
    }

    /// "Process the field" (§9.2.6): four names mean something, the rest are ignored.
    fn field(&mut self, field: &[u8], value: &[u8]) -> Result<(), SseError> {
        let limit = self.limits.event_bytes_max;
        match field {
            b"event" => {
                let v = String::from_utf8_lossy(value);
                if self.data.len() + v.len() > limit {
                    return Err(SseError::EventTooLarge { limit_bytes: limit });
                }
                self.event_type.clear();
                self.event_type.push_str(&v);
            }
            b"data" => {
                let v = String::from_utf8_lossy(value);
                if self.data.len() + v.len() + 1 + self.event_type.len() > limit {
                    return Err(SseError::EventTooLarge { limit_bytes: limit });
                }
                self.data.push_str(&v);
                self.data.push('\n');
            }
            // "If the field value does not contain U+0000 NULL, set the last event ID buffer."
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.push_str(&String::from_utf8_lossy(value));
            }
            // "If the field value consists of only ASCII digits, interpret it as base ten and
            // set the reconnection time." Empty and u64-overflowing values are ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Some(ms) = parse_u64(value) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// §9.2.6 "dispatch the event", steps 1 to 7.
    fn dispatch(&mut self) -> Option<Message> {
        // Step 1: the ID string follows the buffer even when nothing is dispatched.
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        // Step 2: an empty data buffer dispatches nothing and clears the event type.
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        // Step 3: drop the final LF that every data line appended.
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        // Steps 5-7: type defaults to "message"; both buffers are emptied. The emptied buffers
        // are the recycled ones, when the caller hands events back.
        let mut event_type = std::mem::take(&mut self.spare_type);
        event_type.clear();
        if self.event_type.is_empty() {
            event_type.push_str("message");
        } else {
            std::mem::swap(&mut event_type, &mut self.event_type);
        }
        let mut last_event_id = std::mem::take(&mut self.spare_id);
        last_event_id.clear();
        last_event_id.push_str(&self.last_event_id);
        let mut data = std::mem::take(&mut self.spare_data);
        data.clear();
        std::mem::swap(&mut data, &mut self.data);
        Some(Message {
            event_type,
            data,
            last_event_id,
        })
    }
}

fn strip_one_space(v: &[u8]) -> &[u8] {
    v.strip_prefix(b" ").unwrap_or(v)
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Reads every event `input` holds as one complete buffer; for tests.
#[cfg(test)]
pub(crate) fn parse_all(parser: &mut Parser, mut input: &[u8]) -> Result<Vec<Event>, SseError> {
    let mut out = Vec::new();
    loop {
        let p = parser.feed(input)?;
        input = &input[p.consumed..];
        match p.event {
            Some(ev) => out.push(ev),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Vec<Event> {
        parse_all(&mut Parser::new(ParserLimits::default()), input.as_bytes()).unwrap()
    }

    fn msg(event_type: &str, data: &str, id: &str) -> Event {
        Event::Message(Message {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: id.into(),
        })
    }

    /// Recycling changes no event, and a stream of events then runs on two data buffers that
    /// trade places (no allocation per event).
    #[test]
    fn recycled_events_reuse_their_buffers() {
        let mut input = String::from("retry: 5\n\n: hb\n\n");
        for i in 0..50 {
            input.push_str(&format!("id: E-{i}\ndata: payload number {i}\n\n"));
        }
        input.push_str("event: named\ndata: x\n\n");
        let plain = parse(&input);
        let mut p = Parser::new(ParserLimits::default());
        let mut rest = input.as_bytes();
        let (mut got, mut ptrs) = (Vec::new(), std::collections::HashSet::new());
        loop {
            let step = p.feed(rest).unwrap();
            rest = &rest[step.consumed..];
            let Some(ev) = step.event else { break };
            if let Event::Message(m) = &ev {
                ptrs.insert(m.data.as_ptr());
            }
            got.push(ev.clone());
            p.recycle(ev);
        }
        assert_eq!(got, plain);
        assert_eq!(got.len(), 52);
        assert!(
            ptrs.len() <= 3,
            "{} data buffers for 51 messages",
            ptrs.len()
        );
    }

    #[test]
    fn spec_example_stock_ticker_9_2_6() {
        // The spec's example: three data lines, then an event with one line, then an empty
        // data line that still dispatches "" ... and a final block with no blank line.
        let evs = parse("data: YHOO\ndata: +2\ndata: 10\n\ndata\n\ndata:\n\ndata: x");
        assert_eq!(
            evs,
            vec![
                msg("message", "YHOO\n+2\n10", ""),
                msg("message", "", ""),
                msg("message", "", ""),
            ]
        );
    }

    #[test]
    fn one_leading_space_removed_only_9_2_6_field() {
        let evs = parse("data:test\n\ndata: test\n\ndata:  test\n\n");
        assert_eq!(
            evs,
            vec![
                msg("message", "test", ""),
                msg("message", "test", ""),
                msg("message", " test", ""),
            ]
        );
    }

    #[test]
    fn cr_lf_and_crlf_all_end_lines_9_2_5() {
        let expected = vec![msg("message", "a\nb", "")];
        assert_eq!(parse("data: a\rdata: b\r\r"), expected);
        assert_eq!(parse("data: a\r\ndata: b\r\n\r\n"), expected);
        assert_eq!(parse("data: a\ndata: b\n\n"), expected);
        // LF CR is two line ends: the second is a blank line that dispatches.
        assert_eq!(parse("data: a\n\r"), vec![msg("message", "a", "")]);
    }

    #[test]
    fn crlf_split_across_feeds_is_one_line_end() {
        let mut p = Parser::new(ParserLimits::default());
        let a = p.feed(b"data: a\r").unwrap();
        assert_eq!((a.consumed, a.event), (8, None));
        // The LF completes the CRLF pair; it must not count as a blank line.
        let b = p.feed(b"\ndata: b\r").unwrap();
        assert_eq!((b.consumed, b.event), (9, None));
        // LF ends the CRLF, CR is the blank line: dispatch returns before the last LF ...
        let c = p.feed(b"\n\r\n").unwrap();
        assert_eq!(c.consumed, 2);
        assert_eq!(c.event, Some(msg("message", "a\nb", "")));
        // ... which then completes that CR's CRLF pair and is no second blank line.
        let d = p.feed(b"\ndata: c\n\n").unwrap();
        assert_eq!(d.consumed, 10);
        assert_eq!(d.event, Some(msg("message", "c", "")));
    }

    #[test]
    fn leading_bom_ignored_once_even_split_9_2_5() {
        let mut p = Parser::new(ParserLimits::default());
        assert_eq!(
            p.feed(b"\xEF\xBB").unwrap().consumed,
            0,
            "a partial BOM waits"
        );
        let evs = parse_all(&mut p, b"\xEF\xBB\xBFdata: x\n\n").unwrap();
        assert_eq!(evs, vec![msg("message", "x", "")]);
        // A second BOM is part of the first line's field name, so that line is ignored.
        let evs = parse("\u{FEFF}\u{FEFF}data: x\n\ndata: y\n\n");
        assert_eq!(evs, vec![msg("message", "y", "")]);
    }

    #[test]
    fn event_type_and_default_message_9_2_6_steps_5_6() {
        let evs = parse("event: add\ndata: 1\n\nevent:\ndata: 2\n\ndata: 3\n\n");
        assert_eq!(
            evs,
            vec![
                msg("add", "1", ""),
                msg("message", "2", ""),
                msg("message", "3", "")
            ]
        );
    }

    #[test]
    fn empty_data_buffer_not_dispatched_and_type_cleared_step_2() {
        let evs = parse("event: a\n\ndata: x\n\n");
        assert_eq!(evs, vec![msg("message", "x", "")]);
    }

    #[test]
    fn id_persists_resets_and_ignores_nul_9_2_6_id() {
        let evs = parse("id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n");
        assert_eq!(
            evs,
            vec![
                msg("message", "a", "1"),
                msg("message", "b", "1"),
                msg("message", "c", "1"),
                msg("message", "d", ""),
            ]
        );
    }

    #[test]
    fn last_event_id_commits_at_dispatch_even_without_data_step_1() {
        let mut p = Parser::new(ParserLimits::default());
        assert!(parse_all(&mut p, b"id: 7\n\n").unwrap().is_empty());
        assert_eq!(p.last_event_id(), "7");
        // An id with no blank line after it is not committed; reconnect keeps the old one.
        assert!(parse_all(&mut p, b"id: 8\ndata: x\n").unwrap().is_empty());
        assert_eq!(p.last_event_id(), "7");
        p.reconnect();
        let evs = parse_all(&mut p, b"data: y\n\n").unwrap();
        assert_eq!(evs, vec![msg("message", "y", "7")]);
    }

    #[test]
    fn retry_only_all_ascii_digits_9_2_6_retry() {
        let mut p = Parser::new(ParserLimits::default());
        parse_all(&mut p, b"retry: 1500\n").unwrap();
        assert_eq!(p.retry_ms(), Some(1500));
        for bad in [
            "retry: 15s\n",
            "retry: -1\n",
            "retry:\n",
            "retry: 1 \n",
            "retry\n",
        ] {
            parse_all(&mut p, bad.as_bytes()).unwrap();
            assert_eq!(p.retry_ms(), Some(1500), "{bad:?} must be ignored");
        }
        parse_all(&mut p, b"retry: 99999999999999999999999\n").unwrap();
        assert_eq!(p.retry_ms(), Some(1500), "overflow ignored");
        parse_all(&mut p, b"retry:0\n").unwrap();
        assert_eq!(p.retry_ms(), Some(0));
    }

    #[test]
    fn comments_surface_and_do_not_disturb_the_event() {
        let evs = parse(": hb\ndata: a\n:\ndata: b\n\n");
        assert_eq!(
            evs,
            vec![
                Event::Comment("hb".into()),
                Event::Comment(String::new()),
                msg("message", "a\nb", "")
            ]
        );
    }

    #[test]
    fn field_without_colon_and_unknown_fields_9_2_6() {
        // "data" alone appends an empty line; unknown names and case variants are ignored.
        let evs = parse("data\ndata\nDATA: no\nfoo: bar\n\n");
        assert_eq!(evs, vec![msg("message", "\n", "")]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        let evs = parse_all(
            &mut Parser::new(ParserLimits::default()),
            b"data: a\xFFb\n\n",
        )
        .unwrap();
        assert_eq!(evs, vec![msg("message", "a\u{FFFD}b", "")]);
    }

    #[test]
    fn partial_line_is_left_to_the_caller() {
        let mut p = Parser::new(ParserLimits::default());
        let r = p.feed(b"data: a\ndata: b").unwrap();
        assert_eq!((r.consumed, r.event), (8, None));
        let r = p.feed(b"data: b\n\n").unwrap();
        assert_eq!(r.consumed, 9);
        assert_eq!(r.event, Some(msg("message", "a\nb", "")));
    }

    #[test]
    fn long_line_one_byte_at_a_time_resumes_its_search() {
        let line = format!("data: {}\r\n\r\n", "y".repeat(5000));
        let mut p = Parser::new(ParserLimits::default());
        let mut leftover = Vec::new();
        let mut got = Vec::new();
        for &b in line.as_bytes() {
            leftover.push(b);
            let r = p.feed(&leftover).unwrap();
            leftover.drain(..r.consumed);
            got.extend(r.event);
        }
        assert_eq!(p.feed(&leftover).unwrap().consumed, leftover.len());
        assert_eq!(got, vec![msg("message", &"y".repeat(5000), "")]);
    }

    #[test]
    fn line_and_event_limits_error_and_stick() {
        let limits = ParserLimits {
            event_bytes_max: 10,
        };
        let mut p = Parser::new(limits);
        // A partial line over the limit fails before its end arrives: no unbounded leftover.
        let err = p.feed(b"data: 1234567").unwrap_err();
        assert_eq!(err, SseError::LineTooLong { limit_bytes: 10 });
        assert_eq!(p.feed(b"\n\n"), Err(err), "a failed parser stays failed");
        p.reconnect();
        let evs = parse_all(&mut p, b"data:12\ndata:3\n\n").unwrap();
        assert_eq!(evs, vec![msg("message", "12\n3", "")]);
        // Two lines each under the limit, together over it: data "12345\n" + "6789\n" = 11.
        let err = parse_all(&mut p, b"data:12345\ndata:6789\n").unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit_bytes: 10 });
        assert!(err.to_string().contains("10-byte"));
        // A line of exactly the limit is fine; one byte more is not.
        let evs = parse_all(&mut Parser::new(limits), b"data:12345\n\n").unwrap();
        assert_eq!(evs, vec![msg("message", "12345", "")]);
        let err = parse_all(&mut Parser::new(limits), b"data:123456\n\n").unwrap_err();
        assert_eq!(err, SseError::LineTooLong { limit_bytes: 10 });
    }
}
