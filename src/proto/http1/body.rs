//! [`BodyDecoder`]: the message body after a head, as borrowed `Data` slices then `End`.
//!
//! Content-Length bodies are counted down; chunked bodies (RFC 9112 §7.1) run through a byte
//! state machine that never buffers: chunk data is handed out as slices of the input, framing
//! is consumed as it arrives, and extensions and trailers are skipped within bounds. The body
//! limit is checked against each chunk size before its data is read. Never allocates.
//!
//! ```text
//!   chunk   = 1*HEXDIG [ BWS ";" ext... ] CRLF  data CRLF
//!   last    = 1*"0"    [ BWS ";" ext... ] CRLF
//!   trailer = *( field-line CRLF )  CRLF
//! ```

use super::{BodyKind, HttpError, HttpLimits};
use crate::proto::Progress;

/// What the body decoder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEvent<'a> {
    /// Body bytes, a slice of the input (never empty).
    Data(&'a [u8]),
    /// The body is complete; the next request (if any) starts after `consumed`.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Content-Length or chunk data still to come.
    Length {
        remaining: u64,
    },
    /// Reading chunk-size hex digits; `digits` counts them (>= 1 needed).
    Size {
        size: u64,
        digits: u32,
    },
    /// After the size: whitespace or an extension, skipped up to CR.
    Ext {
        size: u64,
    },
    /// Expecting LF ending a chunk-size line.
    SizeLf {
        size: u64,
    },
    /// Inside chunk data.
    ChunkData {
        remaining: u64,
    },
    /// Expecting CR then LF after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line, discarded.
    TrailerLine,
    /// Expecting LF ending a trailer line.
    TrailerLf,
    /// Expecting LF ending the body.
    LastLf,
    /// Read until the peer closes (responses only).
    UntilClose,
    Done,
}

/// Body decoder for one message; create it from the head's [`BodyKind`].
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Chunk sizes accepted so far, for the body limit.
    total_bytes: u64,
    ext_bytes: usize,
    trailer_bytes: usize,
    body_bytes_max: u64,
    chunk_ext_bytes_max: usize,
    trailer_bytes_max: usize,
}

impl BodyDecoder {
    /// A decoder for `kind`. A Content-Length over `limits.body_bytes_max` is refused here,
    /// before a byte of the body is read (413).
    pub fn new(kind: BodyKind, limits: &HttpLimits) -> Result<BodyDecoder, HttpError> {
        let state = match kind {
            BodyKind::None => State::Done,
            BodyKind::ContentLength(n) if n > limits.body_bytes_max => {
                return Err(HttpError::BodyTooLarge)
            }
            BodyKind::ContentLength(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::Size { size: 0, digits: 0 },
            BodyKind::UntilClose => State::UntilClose,
        };
        Ok(BodyDecoder {
            state,
            total_bytes: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            body_bytes_max: limits.body_bytes_max,
            chunk_ext_bytes_max: limits.chunk_ext_bytes_max,
            trailer_bytes_max: limits.trailer_bytes_max,
        })
    }

    /// Whether `End` has been returned (or would be for an empty body).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from the front of `input` (only bytes not yet consumed).
    ///
    /// Returns `Data(slice)` with `consumed` covering framing before it plus the slice, `End`
    /// with `consumed` covering the final framing, or `None` with everything consumed
    /// (`0 <= consumed <= input.len()` always). After `End`, returns `End` with 0 consumed.
    /// `UntilClose` bodies never end here: the caller ends them on EOF.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Progress<BodyEvent<'a>>, HttpError> {
        let mut i = 0;
        loop {
            match self.state {
                State::Done => return Ok(done(i, Some(BodyEvent::End))),
                State::UntilClose => {
                    if i == input.len() {
                        return Ok(done(i, None));
                    }
                    return Ok(done(input.len(), Some(BodyEvent::Data(&input[i..]))));
                }
                State::Length { remaining } | State::ChunkData { remaining } => {
                    if remaining == 0 {
                        self.state = match self.state {
                            State::Length { .. } => State::Done,
                            _ => State::DataCr,
                        };
                        continue;
                    }
                    let avail = input.len() - i;
                    if avail == 0 {
                        return Ok(done(i, None));
                    }
                    let take = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    let left = remaining - take as u64;
                    self.state = match self.state {
                        State::Length { .. } => State::Length { remaining: left },
                        _ => State::ChunkData { remaining: left },
                    };
                    return Ok(done(i + take, Some(BodyEvent::Data(&input[i..i + take]))));
                }
                _ => {}
            }
            // Framing states: one byte at a time.
            let Some(&b) = input.get(i) else {
                return Ok(done(i, None));
            };
            i += 1;
            self.state = match self.state {
                State::Size { size, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if size > u64::MAX >> 4 {
                            return Err(HttpError::ChunkSizeOverflow);
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        State::Size {
                            size: size << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => {
                        self.count_ext()?;
                        State::Ext { size }
                    }
                    b'\r' if digits > 0 => State::SizeLf { size },
                    _ => return Err(HttpError::InvalidChunkSize),
                },
                State::Ext { size } => match b {
                    b'\r' => State::SizeLf { size },
                    // No bare LF or other controls inside a chunk line: such leniency is how
                    // request smuggling between disagreeing parsers starts.
                    b'\n' | 0..=8 | 10..=31 | 127 => return Err(HttpError::InvalidChunkFraming),
                    _ => {
                        self.count_ext()?;
                        State::Ext { size }
                    }
                },
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(HttpError::InvalidChunkFraming);
                    }
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        // The body limit is enforced on the announced size, before any of it
                        // is read (RFC 9110 §15.5.14).
                        self.total_bytes = self
                            .total_bytes
                            .checked_add(size)
                            .filter(|&t| t <= self.body_bytes_max)
                            .ok_or(HttpError::BodyTooLarge)?;
                        State::ChunkData { remaining: size }
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
                State::DataCr | State::DataLf => return Err(HttpError::InvalidChunkFraming),
                State::TrailerStart if b == b'\r' => State::LastLf,
                State::TrailerStart | State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(HttpError::InvalidChunkFraming),
                    _ => {
                        self.trailer_bytes += 1;
                        if self.trailer_bytes > self.trailer_bytes_max {
                            return Err(HttpError::TrailersTooLarge);
                        }
                        State::TrailerLine
                    }
                },
                State::TrailerLf if b == b'\n' => State::TrailerStart,
                State::LastLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(done(i, Some(BodyEvent::End)));
                }
                State::TrailerLf | State::LastLf => return Err(HttpError::InvalidChunkFraming),
                s @ (State::Length { .. }
                | State::ChunkData { .. }
                | State::UntilClose
                | State::Done) => s,
            };
        }
    }

    fn count_ext(&mut self) -> Result<(), HttpError> {
        self.ext_bytes += 1;
        if self.ext_bytes > self.chunk_ext_bytes_max {
            return Err(HttpError::ChunkExtensionTooLong);
        }
        Ok(())
    }
}

fn done(consumed: usize, event: Option<BodyEvent<'_>>) -> Progress<BodyEvent<'_>> {
    Progress { consumed, event }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes like an engine would (keeping leftovers);
    /// return the body and the bytes after it.
    fn run(
        kind: BodyKind,
        limits: &HttpLimits,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = BodyDecoder::new(kind, limits)?;
        let mut body = Vec::new();
        let mut pos = 0; // consumed so far
        let mut avail = 0; // bytes delivered so far
        loop {
            avail = (avail + step).min(input.len());
            loop {
                let p = d.decode(&input[pos..avail])?;
                assert!(p.consumed <= avail - pos);
                pos += p.consumed;
                match p.event {
                    Some(BodyEvent::Data(s)) => {
                        assert!(!s.is_empty());
                        body.extend_from_slice(s);
                    }
                    Some(BodyEvent::End) => return Ok((body, pos)),
                    None => break,
                }
            }
            if avail == input.len() {
                return Err(HttpError::InvalidChunkFraming); // truncated: stand-in for "EOF"
            }
        }
    }

    fn chunked(input: &[u8]) -> Result<(Vec<u8>, usize), HttpError> {
        let l = HttpLimits::default();
        let whole = run(BodyKind::Chunked, &l, input, input.len().max(1));
        let bytewise = run(BodyKind::Chunked, &l, input, 1);
        assert_eq!(whole, bytewise);
        whole
    }

    #[test]
    fn content_length_body_rfc9112_6_2() {
        let l = HttpLimits::default();
        let input = b"hello worldNEXT";
        for step in [1, 3, input.len()] {
            let (body, used) = run(BodyKind::ContentLength(11), &l, input, step).unwrap();
            assert_eq!((&body[..], used), (&b"hello world"[..], 11));
        }
        let mut d = BodyDecoder::new(BodyKind::ContentLength(0), &l).unwrap();
        assert_eq!(d.decode(b"x").unwrap(), done(0, Some(BodyEvent::End)));
        let mut d = BodyDecoder::new(BodyKind::None, &l).unwrap();
        assert_eq!(d.decode(b"").unwrap(), done(0, Some(BodyEvent::End)));
        assert!(d.is_done());
    }

    #[test]
    fn content_length_over_limit_is_413_up_front_rfc9110_15_5_14() {
        let l = HttpLimits {
            body_bytes_max: 10,
            ..HttpLimits::default()
        };
        assert!(BodyDecoder::new(BodyKind::ContentLength(10), &l).is_ok());
        let e = BodyDecoder::new(BodyKind::ContentLength(11), &l).unwrap_err();
        assert_eq!((e, e.status()), (HttpError::BodyTooLarge, 413));
    }

    #[test]
    fn chunked_body_rfc9112_7_1() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET";
        let (body, used) = chunked(input).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(used, input.len() - 3);
        // Upper-case hex and leading zeros.
        let (body, _) = chunked(b"0A\r\n0123456789\r\n000\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn chunk_extensions_ignored_and_bounded_rfc9112_7_1_1() {
        let (body, _) =
            chunked(b"3;name=\"va;l\"\r\nabc\r\n2 ; x\r\nde\r\n0;last\r\n\r\n").unwrap();
        assert_eq!(body, b"abcde");
        let l = HttpLimits {
            chunk_ext_bytes_max: 9,
            ..HttpLimits::default()
        };
        // ";abcd" + ";efg" is 9 extension bytes and passes; a 10th fails, summed over chunks.
        assert!(run(BodyKind::Chunked, &l, b"1;abcd\r\nx\r\n0;efg\r\n\r\n", 1).is_ok());
        assert_eq!(
            run(BodyKind::Chunked, &l, b"1;abcd\r\nx\r\n0;efgh\r\n\r\n", 1),
            Err(HttpError::ChunkExtensionTooLong)
        );
        assert_eq!(chunked(b"1;a\nb\r\n"), Err(HttpError::InvalidChunkFraming));
    }

    #[test]
    fn trailers_discarded_and_bounded_rfc9112_7_1_2() {
        let input = b"2\r\nok\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\nZ";
        let (body, used) = chunked(input).unwrap();
        assert_eq!((&body[..], used), (&b"ok"[..], input.len() - 1));
        let l = HttpLimits {
            trailer_bytes_max: 4,
            ..HttpLimits::default()
        };
        assert!(run(BodyKind::Chunked, &l, b"0\r\nA: 1\r\n\r\n", 1).is_ok());
        assert_eq!(
            run(BodyKind::Chunked, &l, b"0\r\nA: 12\r\n\r\n", 1),
            Err(HttpError::TrailersTooLarge)
        );
    }

    #[test]
    fn chunk_size_errors_rfc9112_7_1() {
        assert_eq!(chunked(b"\r\n"), Err(HttpError::InvalidChunkSize));
        assert_eq!(chunked(b"g\r\n"), Err(HttpError::InvalidChunkSize));
        assert_eq!(chunked(b"-1\r\n"), Err(HttpError::InvalidChunkSize));
        assert_eq!(chunked(b";x\r\n"), Err(HttpError::InvalidChunkSize));
        assert_eq!(chunked(b"1\n"), Err(HttpError::InvalidChunkSize));
        // 16 hex digits fit u64; a 17th significant one overflows.
        assert_eq!(
            chunked(b"ffffffffffffffff\r\n"),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            chunked(b"10000000000000000\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        // Leading zeros do not overflow.
        assert_eq!(
            chunked(b"00000000000000000001\r\nx\r\n0\r\n\r\n")
                .unwrap()
                .0,
            b"x"
        );
        assert_eq!(chunked(b"1\r\nxy\r\n"), Err(HttpError::InvalidChunkFraming));
        assert_eq!(
            chunked(b"1\r\nx\n0\r\n\r\n"),
            Err(HttpError::InvalidChunkFraming)
        );
        assert_eq!(chunked(b"1\r\x00"), Err(HttpError::InvalidChunkFraming));
        assert_eq!(chunked(b"0\r\n\rX"), Err(HttpError::InvalidChunkFraming));
    }

    #[test]
    fn chunked_body_limit_before_buffering_rfc9110_15_5_14() {
        let l = HttpLimits {
            body_bytes_max: 5,
            ..HttpLimits::default()
        };
        assert!(run(
            BodyKind::Chunked,
            &l,
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            1
        )
        .is_ok());
        // The second size line already pushes the total over: rejected before its data.
        let mut d = BodyDecoder::new(BodyKind::Chunked, &l).unwrap();
        let p = d.decode(b"3\r\nabc").unwrap();
        assert_eq!(p, done(6, Some(BodyEvent::Data(b"abc"))));
        assert_eq!(d.decode(b"\r\n3\r\n"), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn until_close_yields_everything() {
        let l = HttpLimits::default();
        let mut d = BodyDecoder::new(BodyKind::UntilClose, &l).unwrap();
        assert_eq!(
            d.decode(b"data: x\n\n").unwrap(),
            done(9, Some(BodyEvent::Data(b"data: x\n\n")))
        );
        assert_eq!(d.decode(b"").unwrap(), done(0, None));
        assert!(!d.is_done());
    }
}
