//! The only place that packs and unpacks an SQE's `user_data`: (op kind, generation, slot).
//!
//! ```text
//!  63      60 59                             32 31                                  0
//! +----------+---------------------------------+-------------------------------------+
//! | kind (4) |        generation (28)          |              slot (32)              |
//! +----------+---------------------------------+-------------------------------------+
//! ```
//! `slot` is a connection's slab index for per-connection kinds, or a ring index for ring-level
//! kinds (`Accept`, `AcceptCancel`, `RingPoll`, `RawClose`), or 0 (`Wake`). The generation is the
//! slot's generation modulo 2^28 when the op was submitted; a completion whose generation differs
//! from the slot's current one is stale (the slot was closed and reused) and is ignored and
//! counted. Never used for anything but completions of this engine's own SQEs.

/// Bits of the generation field.
pub const GEN_BITS: u32 = 28;
/// Generations wrap at this mask (`2^28 - 1`).
pub const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
const KIND_SHIFT: u32 = 60;
const GEN_SHIFT: u32 = 32;

/// What an SQE was for; decides how its completion is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// Multishot accept on a ring's listener (`slot` = ring).
    Accept = 0,
    /// Multishot recv on a connection.
    Recv = 1,
    /// Send of a connection's queue (`Send` for one buffer, else `SendMsg`).
    Send = 2,
    /// Cancel on a connection: of its recv and send by their `user_data`, hard-linked before
    /// its `Close` (a connecting slot's ops by its fixed fd), or of its recv to pause reading
    /// (`flow.rs`).
    Cancel = 3,
    /// Close of a connection's direct descriptor.
    Close = 4,
    /// Socket creation for an outbound connection (result = fixed file index).
    Socket = 5,
    /// Bind of an outbound socket to its source address.
    Bind = 6,
    /// Connect of an outbound socket.
    Connect = 7,
    /// Read of the worker's eventfd (inbox wake).
    Wake = 8,
    /// Multishot poll of a secondary ring's fd from the worker's main ring (`slot` = ring).
    RingPoll = 9,
    /// Cancel of a ring's multishot accept (`slot` = ring).
    AcceptCancel = 10,
    /// Close of a direct descriptor that never got a connection slot (`slot` = ring).
    RawClose = 11,
    /// A no-op used by tests to inject completions.
    Nop = 12,
    /// `IP_BIND_ADDRESS_NO_PORT` on an outbound socket before its `Bind`.
    SockOpt = 13,
    /// `getsockopt(SO_PEERNAME)` of an accepted socket (`peer.rs`).
    PeerName = 14,
}

impl OpKind {
    const ALL: [OpKind; 15] = [
        OpKind::Accept,
        OpKind::Recv,
        OpKind::Send,
        OpKind::Cancel,
        OpKind::Close,
        OpKind::Socket,
        OpKind::Bind,
        OpKind::Connect,
        OpKind::Wake,
        OpKind::RingPoll,
        OpKind::AcceptCancel,
        OpKind::RawClose,
        OpKind::Nop,
        OpKind::SockOpt,
        OpKind::PeerName,
    ];

    fn from_bits(bits: u8) -> Option<OpKind> {
        OpKind::ALL.get(usize::from(bits)).copied()
    }
}

/// A decoded `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserData {
    pub kind: OpKind,
    /// Generation modulo 2^28.
    pub gen: u32,
    pub slot: u32,
}

impl UserData {
    pub fn new(kind: OpKind, gen: u32, slot: u32) -> UserData {
        UserData {
            kind,
            gen: gen & GEN_MASK,
            slot,
        }
    }

    pub fn pack(self) -> u64 {
        (u64::from(self.kind as u8) << KIND_SHIFT)
            | (u64::from(self.gen & GEN_MASK) << GEN_SHIFT)
            | u64::from(self.slot)
    }

    /// `None` for a value this module never packed (an unknown kind).
    pub fn unpack(raw: u64) -> Option<UserData> {
        let kind = OpKind::from_bits((raw >> KIND_SHIFT) as u8)?;
        Some(UserData {
            kind,
            gen: ((raw >> GEN_SHIFT) as u32) & GEN_MASK,
            slot: raw as u32,
        })
    }

    /// Whether this completion belongs to the slot's current generation.
    pub fn is_current(self, slot_gen: u32) -> bool {
        self.gen == slot_gen & GEN_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_kinds_and_edge_values() {
        let gens = [0, 1, 2, GEN_MASK - 1, GEN_MASK, GEN_MASK + 1, u32::MAX];
        let slots = [0, 1, 0xFFFF, 0x1_0000, u32::MAX - 1, u32::MAX];
        for kind in OpKind::ALL {
            for gen in gens {
                for slot in slots {
                    let ud = UserData::new(kind, gen, slot);
                    let back = UserData::unpack(ud.pack()).expect("known kind");
                    assert_eq!(back, ud);
                    assert_eq!(back.gen, gen & GEN_MASK);
                    assert!(back.is_current(gen));
                }
            }
        }
    }

    #[test]
    fn round_trip_walks_every_bit() {
        // Every single bit of gen and slot survives and lands in its own field.
        for bit in 0..GEN_BITS {
            let ud = UserData::new(OpKind::Send, 1 << bit, 0);
            assert_eq!(UserData::unpack(ud.pack()).unwrap(), ud);
            assert_eq!(ud.pack(), (2u64 << 60) | (1u64 << (32 + bit)));
        }
        for bit in 0..32 {
            let ud = UserData::new(OpKind::Recv, 0, 1 << bit);
            assert_eq!(UserData::unpack(ud.pack()).unwrap().slot, 1 << bit);
        }
    }

    #[test]
    fn stale_generation_is_detected_across_wrap() {
        let ud = UserData::new(OpKind::Recv, 7, 3);
        assert!(!ud.is_current(8));
        assert!(ud.is_current(7 + (1 << GEN_BITS)));
        let wrapped = UserData::new(OpKind::Recv, GEN_MASK, 3);
        assert!(!wrapped.is_current(GEN_MASK.wrapping_add(1)));
    }

    #[test]
    fn unknown_kind_is_rejected() {
        for bits in OpKind::ALL.len() as u64..16 {
            assert_eq!(UserData::unpack(bits << 60), None);
        }
    }
}
