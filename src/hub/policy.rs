//! Slow-consumer policy: what happens to a connection whose send queue outgrows its budget.
//!
//! A subscriber that reads slower than messages arrive would otherwise make the server hold an
//! unbounded queue of `Bytes` handles for it (each handle keeps a whole message alive). The
//! server asks [`admit`] before queueing each message; the answer is a value, and the server
//! acts on it and counts it. Never here: queues, sockets, clocks.

/// The decision for one message.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Queue it.
    Send,
    /// Do not queue it; close the connection and count it
    /// (`uringcast_closed_total{reason="slow_consumer"}`).
    /// WebSocket: a close frame with 1013 ([`close_code::TRY_AGAIN_LATER`]) is queued after
    /// what is already queued, then the connection closes once that is flushed. SSE: the
    /// connection is closed at once and its queue dropped; the response has no length, so
    /// closing is what ends it, and the browser reconnects after `retry:` with its
    /// `Last-Event-ID`, so replay fills in what it missed or reports a gap.
    ///
    /// [`close_code::TRY_AGAIN_LATER`]: crate::proto::ws::close_code::TRY_AGAIN_LATER
    Disconnect,
}

/// `Send` while the queue stays within `queue_bytes_max` with this message added. An empty queue
/// always takes one message, so a single message larger than the budget still reaches a
/// consumer that keeps up. Hence the bound: `queued_bytes <= max(queue_bytes_max, largest
/// message)`.
pub fn admit(queued_bytes: usize, msg_bytes: usize, queue_bytes_max: usize) -> Admit {
    if queued_bytes == 0 || queued_bytes.saturating_add(msg_bytes) <= queue_bytes_max {
        Admit::Send
    } else {
        Admit::Disconnect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_table() {
        // (queued, msg, max) -> decision
        let table = [
            ((0, 10, 100), Admit::Send),
            ((90, 10, 100), Admit::Send),       // exactly at the budget
            ((91, 10, 100), Admit::Disconnect), // one byte over
            ((0, 500, 100), Admit::Send),       // empty queue takes one oversize message
            ((1, 500, 100), Admit::Disconnect), // but not behind anything
            ((usize::MAX, 1, 100), Admit::Disconnect), // no overflow
            ((5, 0, 5), Admit::Send),
        ];
        for ((queued, msg, max), want) in table {
            assert_eq!(
                admit(queued, msg, max),
                want,
                "admit({queued}, {msg}, {max})"
            );
        }
    }

    #[test]
    fn queue_never_exceeds_the_documented_bound() {
        // Feed messages of varying size with no draining: the queue stops growing at the bound.
        let max = 1000;
        let mut queued = 0;
        for i in 0..500 {
            let msg = (i * 37) % 300 + 1;
            match admit(queued, msg, max) {
                Admit::Send => queued += msg,
                Admit::Disconnect => break,
            }
            assert!(queued <= max.max(300));
        }
        assert!(queued > 0);
    }
}
