//! One level of the timing wheel: 64 slot list heads and an `occupied` bitmap.
//!
//! A `Level` never owns timer nodes. The nodes live in the wheel's per-key array and the slot
//! lists are threaded through them by `u32` key index (see [`Node`]), so this file holds no
//! pointers and no `unsafe`. It also never reads a clock: every time here is a tick number
//! handed in by the wheel.

use super::{BITS_PER_LEVEL, MAX_DELAY_TICKS, NUM_LEVELS, SLOTS_PER_LEVEL};

/// "No key": the end of a slot list, or an empty slot. Keys are slab indices, so `u32::MAX` is
/// never a real key (the wheel rejects it on insert).
pub(super) const NIL: u32 = u32::MAX;

/// Mask selecting a slot index within one level (`SLOTS_PER_LEVEL - 1`, i.e. 0b11_1111).
const SLOT_MASK: u64 = (SLOTS_PER_LEVEL as u64) - 1;

/// Where a node is registered. Levels are `0..NUM_LEVELS`; two extra values mark the
/// pending list (deadline already reached when inserted) and "not armed".
pub(super) const LOC_PENDING: u8 = NUM_LEVELS as u8;
pub(super) const LOC_DISARMED: u8 = NUM_LEVELS as u8 + 1;

/// Bits of a node's word holding its deadline; ticks are clamped below `1 << DEADLINE_BITS`
/// (the parent module's `TICK_LIMIT`), so the rest of the word holds level and slot.
pub(super) const DEADLINE_BITS: u32 = 55;
const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;
/// Level (0..=7: the levels, `LOC_PENDING`, `LOC_DISARMED`) sits above the deadline, the slot
/// (0..64) above that: 55 + 3 + 6 = 64 bits.
const LEVEL_SHIFT: u32 = DEADLINE_BITS;
const SLOT_SHIFT: u32 = DEADLINE_BITS + 3;
const _: () = assert!(LOC_DISARMED < 8 && SLOT_SHIFT + BITS_PER_LEVEL == 64);

/// Per-key timer node: one word packing deadline, level and slot, then the two list links:
/// 16 bytes, so one million connections cost 16 MB of wheel state (checked by a const
/// assertion in the parent module; unpacked, the fields took 24 with padding).
///
/// ```text
///  0                                   8        12       16
///  +-----------+---------+-------------+--------+--------+
///  | deadline  | level   | slot        | prev   | next   |
///  | bits 0-54 | 55-57   | 58-63       |  u32   |  u32   |
///  +-----------+---------+-------------+--------+--------+
/// ```
/// `deadline()` is the TRUE deadline. The registered position is (`level()`, `slot()`), which
/// may fire earlier than the deadline after a lazy move (see the parent module's docs).
#[derive(Clone, Copy, Debug)]
pub(super) struct Node {
    word: u64,
    pub(super) prev: u32,
    pub(super) next: u32,
}

impl Node {
    pub(super) const DISARMED: Node = Node {
        word: (LOC_DISARMED as u64) << LEVEL_SHIFT,
        prev: NIL,
        next: NIL,
    };

    pub(super) fn deadline(&self) -> u64 {
        self.word & DEADLINE_MASK
    }

    pub(super) fn level(&self) -> u8 {
        ((self.word >> LEVEL_SHIFT) & 0b111) as u8
    }

    pub(super) fn slot(&self) -> u8 {
        (self.word >> SLOT_SHIFT) as u8
    }

    pub(super) fn set_deadline(&mut self, deadline: u64) {
        debug_assert!(
            deadline <= DEADLINE_MASK,
            "deadline {deadline} past the tick limit"
        );
        self.word = (self.word & !DEADLINE_MASK) | (deadline & DEADLINE_MASK);
    }

    /// Register the node at (`level`, `slot`), keeping its deadline.
    pub(super) fn set_loc(&mut self, level: u8, slot: u8) {
        debug_assert!(level < 8 && usize::from(slot) < SLOTS_PER_LEVEL);
        self.word = (self.word & DEADLINE_MASK)
            | (u64::from(level) << LEVEL_SHIFT)
            | (u64::from(slot) << SLOT_SHIFT);
    }
}

/// Puts `key` at the front of the list starting at `head`. O(1): order within a slot does not
/// matter, because a slot is always drained as a whole.
pub(super) fn push_front(nodes: &mut [Node], head: &mut u32, key: u32) {
    let old = *head;
    nodes[key as usize].prev = NIL;
    nodes[key as usize].next = old;
    if old != NIL {
        nodes[old as usize].prev = key;
    }
    *head = key;
}

/// Unlinks `key` from the list starting at `head`. O(1) thanks to the `prev` link.
pub(super) fn unlink(nodes: &mut [Node], head: &mut u32, key: u32) {
    let Node { prev, next, .. } = nodes[key as usize];
    if prev == NIL {
        debug_assert_eq!(
            *head, key,
            "unlink: key {key} has no prev but head is {head}"
        );
        *head = next;
    } else {
        nodes[prev as usize].next = next;
    }
    if next != NIL {
        nodes[next as usize].prev = prev;
    }
    nodes[key as usize].prev = NIL;
    nodes[key as usize].next = NIL;
}

/// Slot width of `level` in ticks: `64^level`.
pub(super) const fn slot_range(level: usize) -> u64 {
    1 << (BITS_PER_LEVEL as usize * level)
}

/// Ticks covered by all 64 slots of `level`: `64^(level + 1)`.
pub(super) const fn level_range(level: usize) -> u64 {
    slot_range(level + 1)
}

/// Level at which a timer due at `when` is registered, seen from `elapsed`.
///
/// The level is the 6-bit group holding the highest bit in which `elapsed` and `when` differ:
/// if they agree on every bit above the lowest 6, the timer is less than one level-0 rotation
/// away and goes to level 0, and so on. Differences beyond the top level (possible only when
/// `when` crosses a 2^36 boundary) are folded into the top level, whose slots then act as a
/// ring. Callers keep `when - elapsed <= MAX_DELAY_TICKS`, which makes the fold safe.
pub(super) fn level_for(elapsed: u64, when: u64) -> usize {
    // OR-ing SLOT_MASK makes `masked` non-zero, so `leading_zeros` is at most 58.
    let mut masked = (elapsed ^ when) | SLOT_MASK;
    if masked >= MAX_DELAY_TICKS {
        masked = MAX_DELAY_TICKS - 1;
    }
    let significant = 63 - masked.leading_zeros() as usize;
    significant / BITS_PER_LEVEL as usize
}

/// Slot of `when` at `level`: bits `6*level .. 6*level+6` of the deadline. Independent of the
/// current time, which is why a node only needs (level, slot) to be found again.
pub(super) fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level * BITS_PER_LEVEL as usize)) & SLOT_MASK) as usize
}

/// The next slot of some level that must be processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Expiration {
    pub(super) level: usize,
    pub(super) slot: usize,
    /// Tick at which the slot starts; every node in it has a true deadline at or after this.
    pub(super) deadline: u64,
}

pub(super) struct Level {
    level: usize,
    /// Bit `s` is set iff `heads[s] != NIL`.
    occupied: u64,
    heads: [u32; SLOTS_PER_LEVEL],
}

impl Level {
    pub(super) fn new(level: usize) -> Level {
        Level {
            level,
            occupied: 0,
            heads: [NIL; SLOTS_PER_LEVEL],
        }
    }

    pub(super) fn push(&mut self, nodes: &mut [Node], key: u32, slot: usize) {
        push_front(nodes, &mut self.heads[slot], key);
        self.occupied |= 1 << slot;
    }

    pub(super) fn unlink(&mut self, nodes: &mut [Node], key: u32, slot: usize) {
        debug_assert!(
            self.occupied & (1 << slot) != 0,
            "unlink key {key} from empty slot {slot} of level {}: occupied={:#066b}",
            self.level,
            self.occupied
        );
        unlink(nodes, &mut self.heads[slot], key);
        if self.heads[slot] == NIL {
            self.occupied &= !(1 << slot);
        }
    }

    /// Detaches the whole list of `slot` and returns its head. The caller walks it with `next`
    /// links it reads before relinking each node.
    pub(super) fn take_slot(&mut self, slot: usize) -> u32 {
        self.occupied &= !(1 << slot);
        std::mem::replace(&mut self.heads[slot], NIL)
    }

    /// Tick at which `slot` of this level next starts, strictly after `now`.
    ///
    /// An occupied slot below the top level always lies ahead of `now` within the current
    /// level range (a slot is processed when time reaches its start, and a level range cannot
    /// be left before all its slots started). Only the top level wraps: a slot "behind" `now`
    /// there holds timers of the next 2^36-tick rotation, so one `level_range` is added.
    pub(super) fn slot_start(&self, slot: usize, now: u64) -> u64 {
        let level_start = now & !(level_range(self.level) - 1);
        let mut start = level_start + slot as u64 * slot_range(self.level);
        if start <= now {
            debug_assert_eq!(
                self.level,
                NUM_LEVELS - 1,
                "slot {slot} of level {} starts at {start}, not after now={now}; occupied={:#066b}",
                self.level,
                self.occupied
            );
            start += level_range(self.level);
        }
        start
    }

    /// The occupied slot that starts soonest after `now`, if any: rotate the bitmap so the
    /// slot AFTER the one of `now` is bit 0, then `trailing_zeros` is the distance to the next
    /// busy slot.
    ///
    /// The search starts one past `now`'s slot because that slot comes LAST: below the top
    /// level it is never occupied (its timers were cascaded when it started), and at the top
    /// level it can only hold timers of the next rotation, due after every other slot.
    pub(super) fn next_expiration(&self, now: u64) -> Option<Expiration> {
        if self.occupied == 0 {
            return None;
        }
        let now_slot = slot_for(now, self.level);
        debug_assert!(
            self.level == NUM_LEVELS - 1 || self.occupied & (1 << now_slot) == 0,
            "level {} has the slot {now_slot} of now={now} occupied: {:#066b}",
            self.level,
            self.occupied
        );
        let first = (now_slot + 1) % SLOTS_PER_LEVEL;
        let distance = self.occupied.rotate_right(first as u32).trailing_zeros() as usize;
        let slot = (first + distance) % SLOTS_PER_LEVEL;
        Some(Expiration {
            level: self.level,
            slot,
            deadline: self.slot_start(slot, now),
        })
    }
}

#[cfg(test)]
mod tests {
    //! Table tests for the pure slot arithmetic (Varghese & Lauck 1987, scheme 7: hierarchical
    //! wheels, one 6-bit digit of the deadline per level).
    use super::*;

    #[test]
    fn level_for_table() {
        // (elapsed, when, expected level)
        let cases: &[(u64, u64, usize)] = &[
            (0, 0, 0),
            (0, 1, 0),
            (0, 63, 0),
            (0, 64, 1),
            (63, 64, 1), // one tick away, but crosses a level-0 rotation
            (64, 127, 0),
            (0, 4095, 1),
            (0, 4096, 2),
            (0, (1 << 18) - 1, 2),
            (0, 1 << 18, 3),
            (0, 1 << 24, 4),
            (0, 1 << 30, 5),
            (0, (1 << 36) - 1, 5),
            (0, 1 << 36, 5),             // beyond range: folded into the top level
            (0, u64::MAX >> 1, 5),       // far beyond range: still the top level
            ((1 << 36) - 1, 1 << 36, 5), // crosses the top rotation one tick ahead
            (1 << 40, (1 << 40) + 70, 1),
        ];
        for &(elapsed, when, level) in cases {
            assert_eq!(
                level_for(elapsed, when),
                level,
                "elapsed={elapsed} when={when}"
            );
        }
    }

    #[test]
    fn slot_for_table() {
        // (when, level, expected slot)
        let cases: &[(u64, usize, usize)] = &[
            (0, 0, 0),
            (5, 0, 5),
            (63, 0, 63),
            (64, 0, 0),
            (64, 1, 1),
            (4095, 1, 63),
            (4096, 1, 0),
            (4096, 2, 1),
            (3 << 30, 5, 3),
            ((1 << 36) + (7 << 30), 5, 7), // top level wraps every 2^36 ticks
            (0b101_000001_000010_000011_000100_000101, 0, 5),
            (0b101_000001_000010_000011_000100_000101, 3, 2),
        ];
        for &(when, level, slot) in cases {
            assert_eq!(slot_for(when, level), slot, "when={when:#b} level={level}");
        }
    }

    #[test]
    fn ranges_are_powers_of_64() {
        assert_eq!(slot_range(0), 1);
        assert_eq!(slot_range(1), 64);
        assert_eq!(level_range(0), 64);
        assert_eq!(level_range(NUM_LEVELS - 1), MAX_DELAY_TICKS + 1);
    }

    #[test]
    fn next_expiration_rotates_past_now() {
        let mut nodes = vec![Node::DISARMED; 4];
        let mut level = Level::new(1);
        level.push(&mut nodes, 0, 3);
        level.push(&mut nodes, 1, 10);
        // now = tick 5 * 64 + 7: slot 3 is behind, slot 10 ahead.
        let now = 5 * 64 + 7;
        let exp = level.next_expiration(now).expect("occupied");
        assert_eq!((exp.slot, exp.deadline), (10, 10 * 64));
        // Top level: a slot behind `now` belongs to the next rotation.
        let mut top = Level::new(NUM_LEVELS - 1);
        top.push(&mut nodes, 2, 3);
        let now = 5 << 30;
        let exp = top.next_expiration(now).expect("occupied");
        assert_eq!((exp.slot, exp.deadline), (3, (1 << 36) + (3 << 30)));
        // The top slot of `now` itself holds the next rotation: any later slot comes first.
        top.push(&mut nodes, 3, 5);
        top.push(&mut nodes, 1, 6);
        let exp = top.next_expiration(now + 1).expect("occupied");
        assert_eq!((exp.slot, exp.deadline), (6, 6 << 30));
        top.unlink(&mut nodes, 1, 6);
        top.unlink(&mut nodes, 2, 3);
        let exp = top.next_expiration(now + 1).expect("occupied");
        assert_eq!((exp.slot, exp.deadline), (5, (1 << 36) + (5 << 30)));
    }

    #[test]
    fn unlink_middle_head_and_tail_keeps_bitmap() {
        let mut nodes = vec![Node::DISARMED; 3];
        let mut level = Level::new(0);
        for key in 0..3 {
            level.push(&mut nodes, key, 9);
        }
        level.unlink(&mut nodes, 1, 9); // middle
        level.unlink(&mut nodes, 2, 9); // head
        assert_eq!(level.occupied, 1 << 9);
        level.unlink(&mut nodes, 0, 9); // last
        assert_eq!(level.occupied, 0);
        assert_eq!(level.take_slot(9), NIL);
    }
}
