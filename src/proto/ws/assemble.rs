//! Message assembly (RFC 6455 §5.4): turns the decoder's [`Event::Data`] pieces into whole
//! messages, for either role.
//!
//! The decoder hands out a frame's payload in pieces as it arrives, and a message may span
//! several frames. Most messages are one frame whose payload sits whole in one receive buffer:
//! those come back as a slice of that buffer, uncopied ([`Assembled::Frame`]). Anything else
//! is copied into a buffer that exists only while a message is arriving; after the caller has
//! handled the message it hands the buffer back ([`MessageAssembler::recycle`]), which keeps
//! it only while its capacity is at most [`MessageAssembler::KEEP_BYTES_MAX`] (4 KiB), so an
//! idle connection holds at most that much and usually nothing.
//!
//! Never here: size limits (the decoder refuses a message over `WsLimits::message_bytes_max`
//! from its frame headers, before its payload is delivered, so the buffer never grows past
//! it), UTF-8 checks (also the decoder's) and control frames (they are never part of a
//! message and the caller answers them directly).
//!
//! Call order: for every `Event::Data { text, payload, fin }` call [`MessageAssembler::push`];
//! when it returns a message, handle it, then pass it to [`MessageAssembler::recycle`].
//!
//! [`Event::Data`]: super::Event::Data

/// Gathers one message at a time from its frames' payload pieces. Holds no buffer until a
/// message arrives in more than one piece.
#[derive(Debug, Default)]
pub struct MessageAssembler {
    /// The pieces of the message being assembled, or empty with spare capacity kept from an
    /// earlier message (`capacity <= Self::KEEP_BYTES_MAX`).
    buf: Vec<u8>,
    /// Whether the message being assembled is text; meaningful only while `assembling`.
    text: bool,
    /// A message's first piece has been pushed and its last (`fin`) not yet. Separate from
    /// `!buf.is_empty()` because a message may start with empty pieces.
    assembling: bool,
}

/// A whole message, as returned by [`MessageAssembler::push`].
#[must_use = "handle the message, then give it back with `MessageAssembler::recycle`"]
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// The message was one piece: its payload where the decoder left it, not copied.
    Frame { text: bool, payload: &'a [u8] },
    /// The message came in several pieces, copied into the assembler's buffer, which the
    /// caller now owns until it passes this to [`MessageAssembler::recycle`].
    Joined { text: bool, payload: Vec<u8> },
}

impl Assembled<'_> {
    /// Text (opcode 0x1) or binary (0x2), from the message's first frame.
    pub fn is_text(&self) -> bool {
        match self {
            Assembled::Frame { text, .. } | Assembled::Joined { text, .. } => *text,
        }
    }

    /// The whole message payload, unmasked (and valid UTF-8 when text: the decoder checks).
    pub fn payload(&self) -> &[u8] {
        match self {
            Assembled::Frame { payload, .. } => payload,
            Assembled::Joined { payload, .. } => payload,
        }
    }
}

impl MessageAssembler {
    /// The largest buffer [`recycle`](Self::recycle) keeps for the next message. Larger ones
    /// are freed: a rare large message should not pin its size on an idle connection.
    pub const KEEP_BYTES_MAX: usize = 4096;

    pub const fn new() -> MessageAssembler {
        MessageAssembler {
            buf: Vec::new(),
            text: false,
            assembling: false,
        }
    }

    /// Whether a message has started and not yet ended (a non-final piece was pushed).
    pub fn is_assembling(&self) -> bool {
        self.assembling
    }

    /// Bytes of buffer held now (assembling, or kept for reuse); for memory accounting.
    pub fn buffer_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Add one `Event::Data { text, payload, fin }`. Returns the message once `fin` ends it,
    /// `None` while more pieces are due. `text` counts only on a message's first piece (a
    /// continuation frame's is meaningless), as the decoder reports it.
    pub fn push<'a>(&mut self, text: bool, payload: &'a [u8], fin: bool) -> Option<Assembled<'a>> {
        if !self.assembling {
            if fin {
                return Some(Assembled::Frame { text, payload });
            }
            self.assembling = true;
            self.text = text;
        }
        self.buf.extend_from_slice(payload);
        if !fin {
            return None;
        }
        self.assembling = false;
        Some(Assembled::Joined {
            text: self.text,
            payload: std::mem::take(&mut self.buf),
        })
    }

    /// Give back a message from [`push`](Self::push) once handled: a joined message's buffer
    /// is kept for the next one if its capacity is at most [`Self::KEEP_BYTES_MAX`] and no
    /// other message has started since, otherwise freed.
    pub fn recycle(&mut self, message: Assembled<'_>) {
        if let Assembled::Joined { mut payload, .. } = message {
            if payload.capacity() <= Self::KEEP_BYTES_MAX && !self.assembling && self.buf.is_empty()
            {
                payload.clear();
                self.buf = payload;
            }
        }
    }

    /// Drop any buffer now, kept or half-assembled (e.g. when the connection goes idle).
    pub fn release(&mut self) {
        *self = MessageAssembler::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §5.4: an unfragmented message is one frame with FIN set; it comes back as the
    /// caller's own slice, and the assembler allocates nothing.
    #[test]
    fn single_frame_is_not_copied() {
        let mut a = MessageAssembler::new();
        let input = b"hello".to_vec();
        let m = a.push(true, &input, true).unwrap();
        assert!(matches!(m, Assembled::Frame { text: true, .. }));
        assert!(std::ptr::eq(m.payload().as_ptr(), input.as_ptr()));
        a.recycle(m);
        assert!(!a.is_assembling());
        assert_eq!(a.buffer_bytes(), 0);
    }

    /// RFC 6455 §5.4: a fragmented message is its frames' payloads in order; its type is the
    /// first frame's, and a payload may also arrive in several pieces within one frame.
    #[test]
    fn pieces_join_in_order_with_the_first_frames_type() {
        let mut a = MessageAssembler::new();
        assert_eq!(a.push(false, b"ab", false), None);
        assert!(a.is_assembling());
        assert_eq!(a.push(true, b"", false), None);
        assert_eq!(a.push(true, b"cd", false), None);
        let m = a.push(true, b"e", true).unwrap();
        assert!(!a.is_assembling());
        assert!(!m.is_text());
        assert_eq!(m.payload(), b"abcde");
        assert!(matches!(m, Assembled::Joined { .. }));
    }

    /// A message whose first piece is empty is still in progress: the next final piece ends
    /// it as a joined message, not a new single-frame one.
    #[test]
    fn empty_first_piece_starts_a_message() {
        let mut a = MessageAssembler::new();
        assert_eq!(a.push(true, b"", false), None);
        assert!(a.is_assembling());
        let m = a.push(false, b"x", true).unwrap();
        assert!(m.is_text());
        assert_eq!(m.payload(), b"x");
        // An empty single-frame message is fine too.
        assert_eq!(
            a.push(false, b"", true),
            Some(Assembled::Frame {
                text: false,
                payload: b""
            })
        );
    }

    /// The buffer is reused up to `KEEP_BYTES_MAX` and freed above it.
    #[test]
    fn recycle_keeps_only_small_buffers() {
        let mut a = MessageAssembler::new();
        let _ = a.push(true, &[b'a'; 100], false);
        let m = a.push(true, b"b", true).unwrap();
        let ptr = m.payload().as_ptr();
        a.recycle(m);
        let kept = a.buffer_bytes();
        assert!(
            (101..=MessageAssembler::KEEP_BYTES_MAX).contains(&kept),
            "{kept}"
        );
        let _ = a.push(true, b"c", false);
        let m = a.push(true, b"d", true).unwrap();
        assert_eq!(m.payload(), b"cd");
        assert!(std::ptr::eq(m.payload().as_ptr(), ptr), "buffer reused");
        a.recycle(m);

        let big = vec![b'z'; MessageAssembler::KEEP_BYTES_MAX + 1];
        let _ = a.push(false, &big, false);
        let m = a.push(false, b"", true).unwrap();
        assert_eq!(m.payload().len(), MessageAssembler::KEEP_BYTES_MAX + 1);
        a.recycle(m);
        assert_eq!(a.buffer_bytes(), 0, "a large buffer is freed");
    }

    /// A message handed back after the next one started does not replace that one's buffer.
    #[test]
    fn recycle_after_next_message_started_drops_the_old_buffer() {
        let mut a = MessageAssembler::new();
        let _ = a.push(true, b"a", false);
        let first = a.push(true, b"b", true).unwrap();
        let _ = a.push(true, b"next", false);
        a.recycle(first);
        let m = a.push(true, b"!", true).unwrap();
        assert_eq!(m.payload(), b"next!");
        a.release();
        assert_eq!(a.buffer_bytes(), 0);
        assert!(!a.is_assembling());
    }

    /// A message borrows the input, never the assembler, so a caller can hand its whole
    /// connection state (which owns the assembler) to the message handler, then recycle.
    #[test]
    fn message_outlives_the_borrow_of_the_assembler() {
        struct Conn {
            assembler: MessageAssembler,
            handled: Vec<Vec<u8>>,
        }
        fn handle(conn: &mut Conn, payload: &[u8]) {
            conn.handled.push(payload.to_vec());
        }
        let mut conn = Conn {
            assembler: MessageAssembler::new(),
            handled: Vec::new(),
        };
        let input = [b"ab".as_slice(), b"c", b"one"];
        for (piece, fin) in input.iter().zip([false, true, true]) {
            if let Some(m) = conn.assembler.push(true, piece, fin) {
                handle(&mut conn, m.payload());
                conn.assembler.recycle(m);
            }
        }
        assert_eq!(conn.handled, [b"abc".to_vec(), b"one".to_vec()]);
    }

    /// Every cut of one message into pieces gives back the same bytes.
    #[test]
    fn every_split_gives_the_same_message() {
        let msg: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let mut a = MessageAssembler::new();
        for cut in 0..=msg.len() {
            let first = a.push(false, &msg[..cut], cut == msg.len());
            let m = match first {
                Some(m) => m,
                None => a.push(false, &msg[cut..], true).unwrap(),
            };
            assert_eq!(m.payload(), &msg[..], "cut at {cut}");
            a.recycle(m);
        }
    }
}
