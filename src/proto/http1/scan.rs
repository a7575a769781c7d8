//! Incremental head scanner: finds where a head ends and enforces the limits byte by byte, so
//! an oversized or malformed head is rejected as soon as the offending byte arrives, not when
//! (or if) the empty line does.
//!
//! It never allocates and never re-reads a byte: the caller passes the same prefix again with
//! more bytes appended, and scanning resumes at `pos`. Because every check fires at a fixed
//! byte offset, the verdict for a byte stream is the same however it is split into reads.
//!
//! ```text
//!   [CRLF]*  start-line CRLF  ( field-line CRLF )*  CRLF
//!   ^0                   ^fields_start              ^ head_len (returned)
//! ```
//! Line ends are CRLF or a lone LF (RFC 9112 §2.2 lets a recipient accept LF); a CR followed
//! by anything else is a bare CR and rejected. The work per line is constant plus a search for
//! CR/LF eight bytes at a time; the grammar inside lines is left to httparse, which runs once
//! on the complete head.

use super::{HttpError, HttpLimits};

/// Scanner state between calls. Invariant: `line_start <= pos <= input.len()` of the last
/// call, and every byte before `pos` has been checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScanner {
    /// Next byte to examine.
    pos: usize,
    /// Offset of the first byte of the current line.
    line_start: usize,
    /// Offset just after the start line's LF; 0 until the start line is done.
    fields_start: usize,
    /// Field lines seen so far.
    fields: usize,
}

/// A complete head found by [`HeadScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// Bytes in the head, final empty line included: the body starts here.
    pub len: usize,
    /// Offset of the first field line (or of the final empty line when there are none).
    pub fields_start: usize,
}

impl HeadScanner {
    /// No byte of a head has been examined since the last complete head (or ever).
    pub(crate) fn is_fresh(&self) -> bool {
        self.pos == 0
    }

    /// Scan `input` (the same bytes as last time plus possibly more). `Ok(None)` means "need
    /// more bytes"; `Ok(Some(span))` resets the scanner for the next head.
    ///
    /// `line_too_long` is the error for a start line over `request_line_bytes_max` (414 for
    /// requests; the client role passes 431-class `HeadTooLarge`).
    pub(crate) fn scan(
        &mut self,
        input: &[u8],
        limits: &HttpLimits,
        line_too_long: HttpError,
    ) -> Result<Option<HeadSpan>, HttpError> {
        if input.len() < self.pos {
            // The caller broke the "same prefix" contract; start over rather than index past
            // the end. Costs a rescan, never correctness.
            *self = HeadScanner::default();
        }
        let headers_max = limits.headers_max_effective();
        let mut i = self.pos;
        while i < input.len() {
            // Examining byte i means the head is at least i + 1 bytes long.
            if i >= limits.head_bytes_max {
                return Err(HttpError::HeadTooLarge);
            }
            if i == self.line_start && self.fields_start != 0 {
                // First byte of a field line: leading whitespace is folding (RFC 9112 §5.2)
                // or, before the first field, junk after the start line (§2.2).
                if let b' ' | b'\t' = input[i] {
                    return Err(if self.fields == 0 {
                        HttpError::WhitespaceAfterStartLine
                    } else {
                        HttpError::ObsFold
                    });
                }
            }
            // Until CR or LF nothing but lengths can change: jump to the line end (or the
            // head limit) a word at a time, then raise the error a byte-by-byte walk would
            // have raised first. Field grammar inside the line is httparse's job.
            let limit = input.len().min(limits.head_bytes_max);
            let stop = i + find_cr_or_lf(&input[i..limit]).unwrap_or(limit - i);
            if stop > i {
                // Byte index line_start + max is the first one over the line limit.
                if self.fields_start == 0
                    && stop
                        > self
                            .line_start
                            .saturating_add(limits.request_line_bytes_max)
                {
                    return Err(line_too_long);
                }
                i = stop;
                continue;
            }
            if input[i] == b'\r' {
                match input.get(i + 1) {
                    // Decide once the next byte arrives; `pos` stays on the CR.
                    None => break,
                    Some(b'\n') => i += 1,
                    Some(_) => return Err(HttpError::BareCr),
                }
                if i >= limits.head_bytes_max {
                    return Err(HttpError::HeadTooLarge);
                }
            }
            // input[i] is LF, ending the line that began at line_start.
            let mut end = i;
            if end > self.line_start && input[end - 1] == b'\r' {
                end -= 1;
            }
            let empty = end == self.line_start;
            if self.fields_start == 0 {
                // Empty lines before the start line are skipped (RFC 9112 §2.2).
                if !empty {
                    self.fields_start = i + 1;
                }
            } else if empty {
                let span = HeadSpan {
                    len: i + 1,
                    fields_start: self.fields_start,
                };
                *self = HeadScanner::default();
                return Ok(Some(span));
            } else {
                self.fields += 1;
                if self.fields > headers_max {
                    return Err(HttpError::TooManyHeaders);
                }
            }
            i += 1;
            self.line_start = i;
        }
        self.pos = i;
        Ok(None)
    }
}

/// Index of the first CR or LF in `hay`. Tests eight bytes per step with the classic
/// "has a zero byte" word trick (exact for existence), then pins the byte down in that word.
pub(crate) fn find_cr_or_lf(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI != 0;
    let mut at = 0;
    for chunk in hay.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        if has_zero(w ^ (LO * u64::from(b'\r'))) || has_zero(w ^ (LO * u64::from(b'\n'))) {
            break;
        }
        at += 8;
    }
    hay[at..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|p| p + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(input: &[u8], limits: &HttpLimits) -> Result<Option<HeadSpan>, HttpError> {
        HeadScanner::default().scan(input, limits, HttpError::RequestLineTooLong)
    }

    fn scan_bytewise(input: &[u8], limits: &HttpLimits) -> Result<Option<HeadSpan>, HttpError> {
        let mut s = HeadScanner::default();
        for end in 0..=input.len() {
            if let Some(span) = s.scan(&input[..end], limits, HttpError::RequestLineTooLong)? {
                return Ok(Some(span));
            }
        }
        Ok(None)
    }

    #[test]
    fn finds_end_of_head_crlf_and_lf_rfc9112_2_2() {
        let l = HttpLimits::default();
        let crlf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let span = scan_whole(crlf, &l).unwrap().unwrap();
        assert_eq!(span.len, crlf.len() - 4);
        assert_eq!(span.fields_start, 16);
        assert_eq!(scan_bytewise(crlf, &l), Ok(Some(span)));
        let lf = b"GET / HTTP/1.1\nHost: a\n\nX";
        assert_eq!(scan_whole(lf, &l).unwrap().unwrap().len, lf.len() - 1);
    }

    #[test]
    fn skips_leading_empty_lines_rfc9112_2_2() {
        let l = HttpLimits::default();
        let req = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let span = scan_bytewise(req, &l).unwrap().unwrap();
        assert_eq!(span.len, req.len());
        assert_eq!(span.fields_start, 20);
    }

    #[test]
    fn bare_cr_rejected_rfc9112_2_2() {
        let l = HttpLimits::default();
        assert_eq!(
            scan_whole(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", &l),
            Err(HttpError::BareCr)
        );
        assert_eq!(
            scan_bytewise(b"GET /\r HTTP/1.1\r\n\r\n", &l),
            Err(HttpError::BareCr)
        );
        // A CR at the end of the input is undecided, not an error.
        assert_eq!(scan_whole(b"GET / HTTP/1.1\r", &l), Ok(None));
    }

    #[test]
    fn request_line_limit_fires_early_rfc9112_3() {
        let l = HttpLimits {
            request_line_bytes_max: 10,
            ..HttpLimits::default()
        };
        // Exactly 10 bytes of line, then CRLF: fine.
        assert_eq!(scan_whole(b"GET /12345", &l), Ok(None));
        assert_eq!(scan_whole(b"GET /12345\r\n", &l), Ok(None));
        // The 11th byte without a line end: 414 before any CRLF arrives.
        assert_eq!(
            scan_whole(b"GET /123456", &l),
            Err(HttpError::RequestLineTooLong)
        );
        assert_eq!(
            scan_bytewise(b"GET /123456", &l),
            Err(HttpError::RequestLineTooLong)
        );
    }

    #[test]
    fn head_limit_fires_early_rfc6585_5() {
        let l = HttpLimits {
            head_bytes_max: 32,
            ..HttpLimits::default()
        };
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.resize(32, b'a');
        assert_eq!(scan_whole(&req, &l), Ok(None));
        req.push(b'a');
        assert_eq!(scan_whole(&req, &l), Err(HttpError::HeadTooLarge));
        assert_eq!(scan_bytewise(&req, &l), Err(HttpError::HeadTooLarge));
        // A head of exactly the limit is accepted.
        let exact = b"GET / HTTP/1.1\r\nX: 0123456789\r\n\r\n";
        let l = HttpLimits {
            head_bytes_max: exact.len(),
            ..HttpLimits::default()
        };
        assert!(scan_whole(exact, &l).unwrap().is_some());
    }

    #[test]
    fn header_count_limit_rfc6585_5() {
        let l = HttpLimits {
            headers_max: 2,
            ..HttpLimits::default()
        };
        assert!(scan_whole(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &l)
            .unwrap()
            .is_some());
        // The third field line is rejected when its line ends, before the head does.
        assert_eq!(
            scan_whole(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n", &l),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[test]
    fn obs_fold_and_whitespace_rules_rfc9112_5() {
        let l = HttpLimits::default();
        assert_eq!(
            scan_whole(b"GET / HTTP/1.1\r\nA: 1\r\n  more\r\n\r\n", &l),
            Err(HttpError::ObsFold)
        );
        assert_eq!(
            scan_whole(b"GET / HTTP/1.1\r\n A: 1\r\n\r\n", &l),
            Err(HttpError::WhitespaceAfterStartLine)
        );
        // Whitespace inside a value is fine.
        assert!(scan_whole(b"GET / HTTP/1.1\r\nA: b c\t d\r\n\r\n", &l)
            .unwrap()
            .is_some());
    }

    #[test]
    fn find_cr_or_lf_matches_naive_search() {
        for len in 0..40 {
            for at in 0..=len {
                for byte in [b'\r', b'\n'] {
                    let mut hay = vec![b'a'; len];
                    // Bytes that differ from CR/LF by one bit must not match.
                    hay.iter_mut().enumerate().for_each(|(k, b)| {
                        *b = [b'a', 0x0c, 0x0b, 0x8d, 0x8a, 0x0f][k % 6];
                    });
                    if at < len {
                        hay[at] = byte;
                    }
                    let want = hay.iter().position(|&b| b == b'\r' || b == b'\n');
                    assert_eq!(find_cr_or_lf(&hay), want, "len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn limits_fire_at_the_same_byte_when_skipping_rfc9112_3() {
        // Line limit below head limit: 414 wins; above it: 431 wins; fed whole or bytewise.
        let mut long = b"GET /".to_vec();
        long.resize(100, b'a');
        for (line_max, head_max, want) in [
            (50, 80, HttpError::RequestLineTooLong),
            (80, 50, HttpError::HeadTooLarge),
            (50, 50, HttpError::HeadTooLarge),
        ] {
            let l = HttpLimits {
                request_line_bytes_max: line_max,
                head_bytes_max: head_max,
                ..HttpLimits::default()
            };
            assert_eq!(scan_whole(&long, &l), Err(want));
            assert_eq!(scan_bytewise(&long, &l), Err(want));
        }
        let l = HttpLimits {
            head_bytes_max: 40,
            ..HttpLimits::default()
        };
        let mut value = b"GET / HTTP/1.1\r\nX: ".to_vec();
        value.resize(40, b'v');
        assert_eq!(scan_whole(&value, &l), Ok(None));
        value.push(b'v');
        assert_eq!(scan_whole(&value, &l), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let huge = HttpLimits {
            request_line_bytes_max: usize::MAX,
            head_bytes_max: usize::MAX,
            headers_max: usize::MAX,
            ..HttpLimits::default()
        };
        assert!(scan_bytewise(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", &huge)
            .unwrap()
            .is_some());
        let zero = HttpLimits {
            request_line_bytes_max: 0,
            head_bytes_max: 0,
            headers_max: 0,
            ..HttpLimits::default()
        };
        assert_eq!(scan_whole(b"G", &zero), Err(HttpError::HeadTooLarge));
        assert_eq!(scan_whole(b"", &zero), Ok(None));
    }

    #[test]
    fn resumes_and_tolerates_contract_break() {
        let l = HttpLimits::default();
        let mut s = HeadScanner::default();
        let req = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            s.scan(&req[..10], &l, HttpError::RequestLineTooLong),
            Ok(None)
        );
        // Shorter input than before: the scanner restarts instead of panicking.
        assert_eq!(
            s.scan(&req[..3], &l, HttpError::RequestLineTooLong),
            Ok(None)
        );
        let span = s.scan(req, &l, HttpError::RequestLineTooLong).unwrap();
        assert_eq!(span.map(|s| s.len), Some(req.len()));
    }
}
