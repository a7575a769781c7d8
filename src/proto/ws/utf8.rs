//! Incremental UTF-8 validation for text messages that arrive in pieces (RFC 6455 §8.1).
//!
//! A text message may be cut anywhere: between frames, or between two reads of one frame, and so
//! inside a code point. [`Utf8Stream`] keeps the at most 3 bytes of an unfinished code point and
//! reports the first byte after which the message can no longer be valid UTF-8, wherever the cuts
//! fall. Bulk validation is simdutf8's; it never allocates.

/// State between the chunks of one text message: an unfinished code point (0 to 3 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    carry: [u8; 3],
    carry_len: u8,
}

/// Width of the code point a valid lead byte starts; 0 for bytes that cannot start one.
const fn width(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Index of the first byte of `bytes` after which no valid UTF-8 can follow, given the
/// `(valid_up_to, error_len)` of std's error for `bytes`.
fn first_bad(bytes: &[u8], valid_up_to: usize, error_len: usize) -> usize {
    // std reports the invalid sequence starting at valid_up_to: if its lead byte could start a
    // code point, the byte that broke it is the one right after the error_len accepted bytes;
    // if not, the lead byte itself is the bad one.
    if width(bytes[valid_up_to]) >= 2 {
        valid_up_to + error_len
    } else {
        valid_up_to
    }
}

impl Utf8Stream {
    /// A stream at the start of a message.
    pub const fn new() -> Utf8Stream {
        Utf8Stream {
            carry: [0; 3],
            carry_len: 0,
        }
    }

    /// True when no code point is left unfinished: the message may end here.
    pub const fn is_complete(&self) -> bool {
        self.carry_len == 0
    }

    /// Validate the next `chunk` of the message; `last` says the message ends with it.
    ///
    /// `Err(n)`: `chunk[..n]` still continues a valid prefix, `chunk[n]` (or the message end,
    /// when `n == chunk.len()` and `last`) makes the message invalid. The state is then
    /// unspecified; the message is dead.
    pub fn feed(&mut self, chunk: &[u8], last: bool) -> Result<(), usize> {
        let mut start = 0;
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let need = width(self.carry[0]);
            let take = (need - have).min(chunk.len());
            let mut cp = [0u8; 4];
            cp[..have].copy_from_slice(&self.carry[..have]);
            cp[have..have + take].copy_from_slice(&chunk[..take]);
            match std::str::from_utf8(&cp[..have + take]) {
                Ok(_) => self.carry_len = 0,
                Err(e) => match e.error_len() {
                    // carry[0] is a valid lead byte, so the bad byte is the one after the
                    // accepted continuation bytes; it lies in chunk because carry was valid.
                    Some(len) => return Err(len - have),
                    None => {
                        self.carry[have..have + take].copy_from_slice(&chunk[..take]);
                        self.carry_len = (have + take) as u8;
                        return if last { Err(chunk.len()) } else { Ok(()) };
                    }
                },
            }
            start = take;
        }
        let rest = &chunk[start..];
        // The fast validator says only yes or no; ask the precise one only on a no.
        if simdutf8::basic::from_utf8(rest).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(len) => Err(start + first_bad(rest, e.valid_up_to(), len)),
                None => {
                    // An unfinished but so far valid code point ends the chunk (1 to 3 bytes).
                    let tail = &rest[e.valid_up_to()..];
                    self.carry[..tail.len()].copy_from_slice(tail);
                    self.carry_len = tail.len() as u8;
                    if last {
                        Err(chunk.len())
                    } else {
                        Ok(())
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index where a message becomes invalid, by brute force: the shortest prefix that is
    /// not a prefix of valid UTF-8 (or `len` if the whole is an unfinished prefix).
    fn reference(bytes: &[u8]) -> Option<usize> {
        match std::str::from_utf8(bytes) {
            Ok(_) => None,
            Err(e) => Some(match e.error_len() {
                None => bytes.len(),
                Some(len) => first_bad(bytes, e.valid_up_to(), len),
            }),
        }
    }

    fn feed_split(bytes: &[u8], cuts: &[usize]) -> Option<usize> {
        let mut s = Utf8Stream::new();
        let mut from = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(bytes.len());
        for &to in &bounds {
            let last = to == bytes.len();
            if let Err(n) = s.feed(&bytes[from..to], last) {
                return Some(from + n);
            }
            from = to;
        }
        None
    }

    /// RFC 6455 §8.1: the failure position is the same whether the text comes whole, in two
    /// pieces cut anywhere, or byte by byte.
    #[test]
    fn utf8_split_anywhere_8_1() {
        let cases: &[&[u8]] = &[
            "héllo wörld €𝄞".as_bytes(),
            b"ab\xe2\x82",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf0\x90\x41",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"abc\xff",
            b"\xe1\x80\x41xyz",
            b"\xed\x9f\xbf",
            b"\xf0\x9f\x98",
            b"\xf0",
            b"",
            b"plain ascii that is long enough to hit the simd path 0123456789abcdef0123456789",
        ];
        for &bytes in cases {
            let want = reference(bytes);
            assert_eq!(feed_split(bytes, &[]), want, "{bytes:x?}");
            for cut in 0..=bytes.len() {
                assert_eq!(feed_split(bytes, &[cut]), want, "{bytes:x?} cut {cut}");
            }
            let each: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(feed_split(bytes, &each), want, "{bytes:x?} bytewise");
        }
        // Fail fast: the bad byte in "\xe2\x41" is the second, before the message ends.
        let mut s = Utf8Stream::new();
        assert_eq!(s.feed(b"\xe2", false), Ok(()));
        assert!(!s.is_complete());
        assert_eq!(s.feed(b"\x41", false), Err(0));
    }
}
