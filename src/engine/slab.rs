//! The engine's half of a connection: one small `Slot` per connection in a `slab::Slab`, plus a
//! generation per slab index that survives the slot's reuse.
//!
//! A slot holds no buffer while its connection is idle: the send queue and the leftover are
//! `None` (no heap), and op memory (`OpMem`) exists only while a gathering send (`SendMsg`), a
//! connect or a peer address lookup is in flight. Each of the three is one pointer wide in the
//! slot, so an idle slot is 48 bytes (docs/decisions.md "Idle connection layout"). The
//! handler's `Conn` lives in a parallel `Vec<Option<H::Conn>>` owned by the worker, so a `Ctx`
//! can borrow this side while the handler holds `&mut Conn`.
//!
//! Life of a slot: `Connecting` (client role) or `Accepting` (server role) → `Open` → optionally `Closing` (flushing the
//! queue) → `Dead` (cancel + close submitted, `on_close` due) → freed once `inflight == 0` and
//! `on_close` was delivered. Never freed earlier: the kernel may still read the send queue's
//! buffers or the op memory of an op in flight.

use std::collections::VecDeque;

use bytes::Bytes;

/// Where a connection is in its life (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    /// Accepted; the peer address lookup (`peer.rs`) is in flight, the handler knows nothing
    /// yet and no recv is armed.
    Accepting,
    Open,
    Closing,
    Dead,
}

/// Flags in `Slot::flags`.
pub(crate) mod flag {
    /// A multishot recv is armed (its final CQE has not arrived).
    pub const RECV_ARMED: u16 = 1;
    /// A send (`Send` or `SendMsg`) is in flight.
    pub const SEND_INFLIGHT: u16 = 2;
    /// `file` is a live direct descriptor of this slot's ring.
    pub const HAS_FILE: u16 = 4;
    /// The slot is in the worker's dirty list (queued bytes, no send in flight).
    pub const DIRTY: u16 = 8;
    /// `on_close` / `on_connect_failed` was delivered; the handler holds nothing.
    pub const DELIVERED: u16 = 16;
    /// The slot is in the worker's re-arm list.
    pub const REARM: u16 = 32;
    /// Torn down; its cancel + close chain waits in the worker's close queue (not yet pushed).
    pub const CLOSE_QUEUED: u16 = 64;
    /// Reading is paused: queued bytes went above `read_pause_bytes` (see `flow.rs`).
    pub const READ_PAUSED: u16 = 128;
    /// A cancel of the recv, sent to pause reading, has not completed; no recv may be armed
    /// meanwhile (it would carry the same `user_data` and could be the one cancelled).
    pub const RECV_CANCELLING: u16 = 256;
    /// The handler asked for `on_drain` (`Ctx::notify_drain`) and it is not due yet.
    pub const DRAIN_WANTED: u16 = 512;
    /// `on_drain` is due: the slot's id is in the worker's drain list.
    pub const DRAIN_DUE: u16 = 1024;
    /// Accepted and never opened (`State::Accepting`, or torn down from it): no handler call
    /// is owed for it, not even `on_connect_failed`.
    pub const NEVER_OPENED: u16 = 2048;
}

/// Most queued buffers gathered into one `SendMsg` (the size of a `SendMem`'s iovec array).
pub(crate) const IOV_MAX_SEND: usize = 16;

/// The iovec array and msghdr of one sendmsg in flight. Lives here, beside the other op memory,
/// rather than in `send.rs`, so that the slab depends on nothing else in the engine.
pub(crate) struct SendMem {
    pub iov: [libc::iovec; IOV_MAX_SEND],
    pub msg: libc::msghdr,
}

impl SendMem {
    pub fn new() -> SendMem {
        SendMem {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; IOV_MAX_SEND],
            // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
            msg: unsafe { std::mem::zeroed() },
        }
    }
}

/// Memory an op in flight points at. A slot holds it as `Option<Box<OpMem>>`: boxed so its
/// address is stable while the slab grows, and one pointer wide in the slot (a box per
/// variant made the field 16 bytes). Spare boxes of any variant are pooled (`send.rs`).
pub(crate) enum OpMem {
    Send(SendMem),
    Connect(ConnectMem),
    /// The peer address being written by the `SO_PEERNAME` lookup of an accepted socket.
    Peer(PeerMem),
}

/// Where the kernel writes an accepted socket's peer address (`peer.rs`): the bytes of a
/// `sockaddr_in` (16) or `sockaddr_in6` (28), parsed as bytes so no cast is needed.
pub(crate) struct PeerMem {
    pub buf: [u8; PEER_BYTES_MAX],
}

/// Size of a `sockaddr_in6`, the larger of the two families.
pub(crate) const PEER_BYTES_MAX: usize = 28;

/// Socket addresses of an outbound connection, read by the kernel during `Bind` and `Connect`.
pub(crate) struct ConnectMem {
    pub dst: libc::sockaddr_storage,
    pub dst_len: libc::socklen_t,
    pub src: Option<(libc::sockaddr_storage, libc::socklen_t)>,
    /// Option value for `IP_BIND_ADDRESS_NO_PORT` (1), read by the kernel during `SetSockOpt`.
    pub one: libc::c_int,
}

/// The engine side of one connection.
pub(crate) struct Slot {
    /// Fixed file index in `ring`'s table (valid with `HAS_FILE`).
    pub file: u32,
    /// Bytes of `sendq[0]` already sent (a partial send resumes there).
    pub send_off: u32,
    /// Bytes queued and not yet sent (sum of `sendq` minus `send_off`).
    pub queued: usize,
    /// Ring index within the worker.
    pub ring: u8,
    pub state: State,
    /// SQEs submitted for this slot whose final CQE has not arrived (recv counts once).
    pub inflight: u8,
    pub flags: u16,
    /// `None` while nothing is queued; a queue from the worker's pool (`send.rs`) while
    /// something is. Boxed so an idle slot pays one pointer for it, not a `VecDeque`'s 32 bytes.
    #[allow(clippy::box_collection)]
    pub sendq: Option<Box<VecDeque<Bytes>>>,
    /// Unconsumed input; `Some` only between two `on_data` calls that split a message.
    pub leftover: Leftover,
    pub mem: Option<Box<OpMem>>,
}

/// Input a slot holds unconsumed: rare (a message split across reads), so one pointer in the
/// slot and a boxed `Vec` only while there is some.
#[derive(Default)]
#[allow(clippy::box_collection)]
pub(crate) struct Leftover(Option<Box<Vec<u8>>>);

impl Leftover {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend_from_slice(&mut self, input: &[u8]) {
        self.0
            .get_or_insert_with(Box::default)
            .extend_from_slice(input);
    }

    /// The bytes held, leaving none.
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map_or_else(Vec::new, |v| *v)
    }

    /// Hold `v` (nothing, and no allocation, when it is empty).
    pub fn put(&mut self, v: Vec<u8>) {
        self.0 = (!v.is_empty()).then(|| Box::new(v));
    }
}

impl Slot {
    pub fn new(ring: u8, state: State) -> Slot {
        Slot {
            file: 0,
            send_off: 0,
            queued: 0,
            ring,
            state,
            inflight: 0,
            flags: 0,
            sendq: None,
            leftover: Leftover::default(),
            mem: None,
        }
    }

    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    pub fn set(&mut self, f: u16) {
        self.flags |= f;
    }

    pub fn clear(&mut self, f: u16) {
        self.flags &= !f;
    }

    /// Whether any byte is queued and not yet sent.
    pub fn has_queued(&self) -> bool {
        self.sendq.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// Whether the handler may still use the connection (send, timers).
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Open | State::Connecting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same shape as `slab::Entry` (private), to see what the slab's tag costs.
    #[allow(dead_code)]
    enum SlabEntry<T> {
        Vacant(usize),
        Occupied(T),
    }

    #[test]
    fn slot_stays_small() {
        let slot = std::mem::size_of::<Slot>();
        let entry = std::mem::size_of::<SlabEntry<Slot>>();
        let gen = std::mem::size_of::<u32>();
        println!("size_of::<Slot>() = {slot} bytes, slab entry {entry} (+ {gen} bytes generation)");
        // Budget (docs/capacity.md "Memory per idle connection"): 48 bytes, the state's niche
        // holding the slab's tag.
        assert!(slot <= 48, "Slot grew to {slot} bytes");
        assert_eq!(entry, slot, "the slab's tag no longer fits a niche of Slot");
    }

    #[test]
    fn idle_slot_owns_no_heap() {
        let s = Slot::new(0, State::Open);
        assert!(s.sendq.is_none());
        assert!(s.leftover.0.is_none());
        assert!(s.mem.is_none());
    }

    #[test]
    fn leftover_allocates_only_while_holding_bytes() {
        let mut l = Leftover::default();
        l.put(Vec::with_capacity(64));
        assert!(l.0.is_none(), "an empty Vec is not kept");
        l.extend_from_slice(b"abc");
        l.extend_from_slice(b"de");
        assert_eq!((l.len(), l.is_empty()), (5, false));
        let v = l.take();
        assert_eq!((v.as_slice(), l.len()), (&b"abcde"[..], 0));
        assert!(l.0.is_none());
        l.put(v);
        assert_eq!(l.len(), 5);
    }
}
