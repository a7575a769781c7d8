//! Hierarchical hashed timing wheel (Varghese & Lauck, "Hashed and Hierarchical Timing Wheels",
//! SOSP 1987, scheme 7), one per worker, keyed by connection slab index.
//!
//! It drives every per-connection deadline: handshake and request timeouts (slowloris), SSE
//! heartbeat comments, WebSocket ping and pong deadlines, idle timeouts. Each key holds at most
//! one timer. The shape follows tokio's wheel (`Wheel` plus `Level`, a 64-bit `occupied` bitmap
//! per level), but the slot lists are intrusive doubly linked lists of `u32` key indices in one
//! per-key array, so there are no pointers, no `unsafe` and no allocation per timer.
//!
//! This module is sans-IO: it never reads a clock, never sleeps and never spawns. Time is a
//! tick count handed in by the caller. The engine's tick is `EngineConfig::tick_ms`: 20 ms by
//! default; the server sets it from its `tick` key (10 ms by default, which halves every time
//! below).
//!
//! # Levels
//! Six levels of 64 slots; level `n` slots are `64^n` ticks wide. At 20 ms per tick:
//!
//! | level | slot width (ticks) | slot width | level range (ticks) | level range |
//! |-------|--------------------|------------|---------------------|-------------|
//! | 0     | 1                  | 20 ms      | 64                  | 1.28 s      |
//! | 1     | 64                 | 1.28 s     | 4 096               | 81.92 s     |
//! | 2     | 4 096              | 81.92 s    | 262 144             | 87.4 min    |
//! | 3     | 262 144            | 87.4 min   | 16 777 216          | 93.2 h      |
//! | 4     | 16 777 216         | 93.2 h     | 2^30                | 248.6 days  |
//! | 5     | 2^30               | 248.6 days | 2^36                | 43.6 years  |
//!
//! A timer sits at the level of the highest 6-bit digit in which its deadline differs from the
//! current tick. When a level-n slot starts, its timers are re-inserted from that tick, which
//! lands each of them at a lower level (a "cascade"), until level 0 fires them on their tick.
//!
//! # Deadlines beyond the range
//! A deadline more than [`MAX_DELAY_TICKS`] (2^36 - 1, 43.6 years of 20 ms ticks) after `now()`
//! is clamped to `now() + MAX_DELAY_TICKS`; [`Wheel::deadline`] then reports the clamped value.
//! All ticks (deadlines and `now_tick`) are also clamped to `TICK_LIMIT` (2^54, about 11
//! million years of 20 ms ticks) so that slot arithmetic can never overflow and a deadline
//! fits the 55 bits a node keeps for it.
//!
//! # Registered vs true deadline
//! Each node keeps its TRUE deadline plus the slot where it is REGISTERED. Moving a timer later
//! (an idle timeout pushed back on every read, a heartbeat re-armed on every send) only writes
//! the true deadline: O(1), no unlink, no relink. When the registered slot starts, the wheel sees
//! that the true deadline has not been reached and re-inserts the node there, once, however
//! many times it was pushed back in between. Moving a timer earlier than the tick at which its
//! registered slot starts unlinks and re-links it, because waiting for the old slot would be late.
//!
//! # Call order
//! `with_capacity` once at worker start; then, in any order, `insert`/`remove`/`deadline` from
//! connection handlers, and once per loop wake-up `advance(now_tick, &mut expired)` followed by
//! arming the ring timeout for `next_deadline()`. Keys returned by `advance` are already removed.

mod level;
#[cfg(test)]
mod model_tests;

use level::{Expiration, Level, Node, LOC_DISARMED, LOC_PENDING, NIL};

/// Bits of the deadline consumed by one level: 64 slots.
const BITS_PER_LEVEL: u32 = 6;
/// Slots per level: `2^BITS_PER_LEVEL` = 64, so a level's occupancy fits one `u64`.
const SLOTS_PER_LEVEL: usize = 1 << BITS_PER_LEVEL;
/// Levels: 6 levels of 6 bits cover 2^36 ticks (43.6 years of 20 ms ticks).
const NUM_LEVELS: usize = 6;
/// Longest delay the wheel represents: `64^6 - 1` ticks. Later deadlines are clamped to this.
pub const MAX_DELAY_TICKS: u64 = (1 << (BITS_PER_LEVEL as usize * NUM_LEVELS)) - 1;
/// Ceiling for every tick value, far below `u64::MAX`, so that `now + 2 * 2^36` cannot
/// overflow, and below `2^DEADLINE_BITS` with room for `MAX_DELAY_TICKS`, so every deadline
/// fits a node's word.
const TICK_LIMIT: u64 = 1 << 54;
const _: () = assert!(TICK_LIMIT + MAX_DELAY_TICKS < 1 << level::DEADLINE_BITS);

// One timer node per connection; keep it at 16 bytes (1M connections = 16 MB).
const _: () = assert!(std::mem::size_of::<Node>() <= 16);

/// Hierarchical hashed timing wheel holding at most one timer per `u32` key.
pub struct Wheel {
    /// Tick up to which the wheel has been advanced.
    elapsed: u64,
    levels: [Level; NUM_LEVELS],
    /// Timers inserted with a deadline at or before `elapsed`: they fire at the next `advance`.
    pending: u32,
    /// Indexed by key. Grown on demand; never shrinks (keys are slab indices and get reused).
    nodes: Vec<Node>,
    /// Armed timers.
    len: usize,
    /// Nodes visited by `advance` (fired or re-inserted), for the cost tests.
    #[cfg(test)]
    visited: u64,
}

impl Wheel {
    /// A wheel at tick 0 with node storage reserved for keys `0..keys` (address space: a
    /// node is written, and its page touched, when a key at or past it first arrives), grown
    /// if a bigger key arrives.
    pub fn with_capacity(keys: usize) -> Wheel {
        Wheel {
            elapsed: 0,
            levels: std::array::from_fn(Level::new),
            pending: NIL,
            nodes: Vec::with_capacity(keys),
            len: 0,
            #[cfg(test)]
            visited: 0,
        }
    }

    /// Insert, or move, the single timer of `key` (a slab index) to fire at `deadline_tick`.
    ///
    /// A deadline at or before `now()` fires at the next `advance`. Moving a timer later than
    /// its registered slot's start is O(1) and lazy (see "Registered vs true deadline").
    /// `key` must not be `u32::MAX` (reserved as the list terminator); it panics if it is,
    /// since that would be an engine bug, not client input.
    pub fn insert(&mut self, key: u32, deadline_tick: u64) {
        assert!(key != NIL, "wheel key u32::MAX is reserved");
        let deadline = deadline_tick
            .min(TICK_LIMIT)
            .min(self.elapsed.saturating_add(MAX_DELAY_TICKS));
        let index = key as usize;
        if index >= self.nodes.len() {
            // Only up to the key: the nodes past it stay untouched reserve. `Vec` doubles its
            // capacity when the reserve runs out, which keeps growth amortised O(1).
            self.nodes.resize(index + 1, Node::DISARMED);
        }
        let node = self.nodes[index];
        match node.level() {
            LOC_DISARMED => self.len += 1,
            // The pending list fires at the next advance whatever the deadline: never late.
            LOC_PENDING => {
                self.nodes[index].set_deadline(deadline);
                return;
            }
            level => {
                let level = level as usize;
                let slot = node.slot() as usize;
                if deadline >= self.levels[level].slot_start(slot, self.elapsed) {
                    // Lazy: the registered slot starts no later than the new deadline and will
                    // re-insert the node then.
                    self.nodes[index].set_deadline(deadline);
                    return;
                }
                self.levels[level].unlink(&mut self.nodes, key, slot);
            }
        }
        self.nodes[index].set_deadline(deadline);
        self.link(key);
    }

    /// Disarms the timer of `key`. Returns true if a timer was armed.
    pub fn remove(&mut self, key: u32) -> bool {
        let Some(node) = self.nodes.get(key as usize).copied() else {
            return false;
        };
        match node.level() {
            LOC_DISARMED => return false,
            LOC_PENDING => level::unlink(&mut self.nodes, &mut self.pending, key),
            level => self.levels[level as usize].unlink(&mut self.nodes, key, node.slot() as usize),
        }
        self.nodes[key as usize] = Node::DISARMED;
        self.len -= 1;
        true
    }

    /// The true deadline of `key`'s timer (after clamping), if armed.
    pub fn deadline(&self, key: u32) -> Option<u64> {
        let node = self.nodes.get(key as usize)?;
        (node.level() != LOC_DISARMED).then_some(node.deadline())
    }

    /// Advance to `now_tick`, appending each key whose true deadline `<= now_tick` to `expired`
    /// exactly once (it is removed from the wheel). A `now_tick` below `now()` is treated as
    /// `now()` (time never runs backwards here). Cost is proportional to the timers that expire
    /// plus those that cascade or were lazily moved later, plus at most one bitmap probe per
    /// level per slot processed: never to the number of armed timers.
    pub fn advance(&mut self, now_tick: u64, expired: &mut Vec<u32>) {
        let now = now_tick.min(TICK_LIMIT).max(self.elapsed);
        let head = std::mem::replace(&mut self.pending, NIL);
        self.drain(head, now, expired);
        while let Some(exp) = self.next_expiration() {
            if exp.deadline > now {
                break;
            }
            // Re-insert relative to the slot's start, as if time had stopped there: nodes whose
            // true deadline is still ahead then land at a strictly lower level (or, if moved
            // later lazily, wherever their new deadline belongs).
            self.elapsed = exp.deadline;
            // The slot is detached in full BEFORE any node is re-inserted. Re-inserting rewrites
            // a node's links; a node landing back in the slot being walked would be visited
            // again and again. In tokio's wheel that happens for deadlines beyond the range,
            // which fold into the top level's ring of slots; here the MAX_DELAY_TICKS clamp
            // should prevent it, but termination must not rest on that argument alone.
            let head = self.levels[exp.level].take_slot(exp.slot);
            self.drain(head, now, expired);
        }
        self.elapsed = now;
    }

    /// Earliest tick at which `advance` might yield something: may be early (a slot start, a
    /// lazily moved timer), never late. `Some(now())` when timers are already due.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.pending != NIL {
            return Some(self.elapsed);
        }
        self.next_expiration().map(|exp| exp.deadline)
    }

    /// Tick up to which the wheel has been advanced (0 after `with_capacity`).
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// Armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Soonest slot over all levels. Any occupied slot at level n starts before every occupied
    /// slot at level n+1 (level n only holds timers within the current level-(n+1) slot), so the
    /// first non-empty level, lowest first, holds the answer: at most 6 bitmap probes.
    fn next_expiration(&self) -> Option<Expiration> {
        self.levels
            .iter()
            .find_map(|level| level.next_expiration(self.elapsed))
    }

    /// Fires or re-inserts every node of a detached list.
    fn drain(&mut self, mut key: u32, now: u64, expired: &mut Vec<u32>) {
        while key != NIL {
            #[cfg(test)]
            {
                self.visited += 1;
            }
            let node = self.nodes[key as usize];
            if node.deadline() <= now {
                expired.push(key);
                self.nodes[key as usize] = Node::DISARMED;
                self.len -= 1;
            } else {
                self.link(key);
            }
            key = node.next;
        }
    }

    /// Registers a detached node according to its true deadline, seen from `elapsed`.
    fn link(&mut self, key: u32) {
        let deadline = self.nodes[key as usize].deadline();
        if deadline <= self.elapsed {
            self.nodes[key as usize].set_loc(LOC_PENDING, 0);
            level::push_front(&mut self.nodes, &mut self.pending, key);
            return;
        }
        debug_assert!(
            deadline - self.elapsed <= MAX_DELAY_TICKS,
            "key {key}: deadline={deadline} beyond range of elapsed={}",
            self.elapsed
        );
        let level = level::level_for(self.elapsed, deadline);
        let slot = level::slot_for(deadline, level);
        self.nodes[key as usize].set_loc(level as u8, slot as u8);
        self.levels[level].push(&mut self.nodes, key, slot);
    }
}

impl std::fmt::Debug for Wheel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wheel")
            .field("elapsed", &self.elapsed)
            .field("len", &self.len)
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(wheel: &mut Wheel, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.advance(now, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn fires_in_deadline_order_one_tick_at_a_time() {
        let mut wheel = Wheel::with_capacity(8);
        let deadlines = [5u64, 1, 64, 63, 4096, 70, 3, 100_000];
        for (key, &d) in deadlines.iter().enumerate() {
            wheel.insert(key as u32, d);
        }
        assert_eq!(wheel.len(), 8);
        let mut fired = Vec::new();
        for tick in 1..=100_000 {
            for key in advance(&mut wheel, tick) {
                assert_eq!(deadlines[key as usize], tick, "key {key} fired at {tick}");
                fired.push(key);
            }
        }
        assert_eq!(fired, vec![1, 6, 0, 3, 2, 5, 4, 7]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn cancel_prevents_firing_and_reports_armed() {
        let mut wheel = Wheel::with_capacity(4);
        wheel.insert(0, 10);
        wheel.insert(1, 10);
        wheel.insert(2, 5000);
        assert!(wheel.remove(1));
        assert!(!wheel.remove(1), "second remove finds nothing");
        assert!(!wheel.remove(3), "never armed");
        assert!(!wheel.remove(999), "beyond capacity");
        assert!(wheel.remove(2));
        assert_eq!(advance(&mut wheel, 10_000), vec![0]);
        assert_eq!(wheel.deadline(0), None);
    }

    #[test]
    fn rearm_after_fire_and_reuse_of_key() {
        let mut wheel = Wheel::with_capacity(1);
        wheel.insert(0, 3);
        assert_eq!(advance(&mut wheel, 3), vec![0]);
        wheel.insert(0, 7);
        assert_eq!(wheel.deadline(0), Some(7));
        assert_eq!(advance(&mut wheel, 6), Vec::<u32>::new());
        assert_eq!(advance(&mut wheel, 7), vec![0]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn reschedule_later_is_lazy_and_fires_at_true_deadline() {
        let mut wheel = Wheel::with_capacity(1);
        wheel.insert(0, 3000); // level 1, slot starts at 2944
        let registered = wheel.nodes[0];
        for reset in 1..=50u64 {
            wheel.insert(0, 3000 + reset * 10);
        }
        let node = wheel.nodes[0];
        assert_eq!(
            (node.level(), node.slot()),
            (registered.level(), registered.slot())
        );
        assert_eq!(wheel.deadline(0), Some(3500));
        assert_eq!(
            wheel.next_deadline(),
            Some(2944),
            "early is allowed, late is not"
        );
        assert_eq!(advance(&mut wheel, 3499), Vec::<u32>::new());
        assert_eq!(
            wheel.len(),
            1,
            "re-inserted when its registered slot started"
        );
        assert_eq!(advance(&mut wheel, 3500), vec![0]);
    }

    #[test]
    fn reschedule_earlier_relinks() {
        let mut wheel = Wheel::with_capacity(1);
        wheel.insert(0, 100_000);
        wheel.insert(0, 20);
        assert_eq!(wheel.next_deadline(), Some(20));
        assert_eq!(advance(&mut wheel, 19), Vec::<u32>::new());
        assert_eq!(advance(&mut wheel, 20), vec![0]);
        assert_eq!(
            advance(&mut wheel, 200_000),
            Vec::<u32>::new(),
            "old slot is empty"
        );
    }

    #[test]
    fn timers_cross_levels_down_to_their_tick() {
        let mut wheel = Wheel::with_capacity(6);
        // One timer per level, each at a tick that is not a slot boundary.
        let deadlines: Vec<u64> = (0..6).map(|l| (1u64 << (6 * l)) * 5 + 3).collect();
        for (key, &d) in deadlines.iter().enumerate() {
            wheel.insert(key as u32, d);
            assert_eq!(wheel.nodes[key].level() as usize, level::level_for(0, d));
        }
        for (key, &d) in deadlines.iter().enumerate() {
            assert_eq!(advance(&mut wheel, d - 1), Vec::<u32>::new(), "d={d}");
            assert_eq!(advance(&mut wheel, d), vec![key as u32], "d={d}");
        }
    }

    #[test]
    fn deadline_in_the_past_fires_at_next_advance() {
        let mut wheel = Wheel::with_capacity(2);
        wheel.advance(1000, &mut Vec::new());
        wheel.insert(0, 10);
        wheel.insert(1, 1000);
        assert_eq!(wheel.next_deadline(), Some(1000));
        assert_eq!(advance(&mut wheel, 1000), vec![0, 1]);
        // Moving a pending timer into the future keeps it pending but re-inserts it.
        wheel.insert(0, 0);
        wheel.insert(0, 1010);
        assert_eq!(advance(&mut wheel, 1001), Vec::<u32>::new());
        assert_eq!(advance(&mut wheel, 1010), vec![0]);
    }

    #[test]
    fn far_future_deadline_is_clamped_to_max_delay() {
        let mut wheel = Wheel::with_capacity(2);
        wheel.advance(12_345, &mut Vec::new());
        wheel.insert(0, u64::MAX);
        wheel.insert(1, 12_345 + MAX_DELAY_TICKS);
        let clamped = 12_345 + MAX_DELAY_TICKS;
        assert_eq!(wheel.deadline(0), Some(clamped));
        assert_eq!(wheel.deadline(1), Some(clamped));
        assert_eq!(advance(&mut wheel, clamped - 1), Vec::<u32>::new());
        assert_eq!(advance(&mut wheel, clamped), vec![0, 1]);
    }

    #[test]
    fn top_level_slot_of_now_holds_the_next_rotation() {
        // Found by the model test: a timer one full top rotation ahead shares the top slot of
        // `now` and must not hide a nearer timer in a later top slot.
        let mut wheel = Wheel::with_capacity(2);
        wheel.insert(0, 1 << 30);
        wheel.advance(1, &mut Vec::new());
        wheel.insert(1, 1 + MAX_DELAY_TICKS);
        assert_eq!(wheel.next_deadline(), Some(1 << 30));
        assert_eq!(advance(&mut wheel, 1 << 30), vec![0]);
        assert_eq!(advance(&mut wheel, MAX_DELAY_TICKS), Vec::<u32>::new());
        assert_eq!(advance(&mut wheel, 1 + MAX_DELAY_TICKS), vec![1]);
    }

    #[test]
    fn grows_for_keys_beyond_capacity() {
        let mut wheel = Wheel::with_capacity(0);
        wheel.insert(1_000, 5);
        wheel.insert(3, 5);
        assert_eq!(wheel.len(), 2);
        assert_eq!(advance(&mut wheel, 5), vec![3, 1_000]);
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut wheel = Wheel::with_capacity(1);
        wheel.advance(50, &mut Vec::new());
        wheel.insert(0, 60);
        assert_eq!(advance(&mut wheel, 10), Vec::<u32>::new());
        assert_eq!(wheel.now(), 50);
        assert_eq!(advance(&mut wheel, 60), vec![0]);
    }

    #[test]
    fn advance_visits_each_timer_at_most_once_per_level() {
        let mut wheel = Wheel::with_capacity(100_000);
        let mut rng = fastrand::Rng::with_seed(7);
        for key in 0..100_000 {
            wheel.insert(key, rng.u64(1..=100_000)); // levels 0, 1 and 2
        }
        let mut expired = Vec::new();
        for tick in 1..=100_000 {
            wheel.advance(tick, &mut expired);
        }
        assert_eq!(expired.len(), 100_000);
        // A timer starts at level <= 2 and drops at least one level per visit: <= 3 visits.
        assert!(wheel.visited <= 300_000, "visited {}", wheel.visited);
        assert!(wheel.visited >= 100_000, "visited {}", wheel.visited);
    }

    #[test]
    fn lazy_resets_cost_nothing_in_advance() {
        // Idle timeouts reset on every read: 1000 timers, 100 resets each, each reset later.
        let mut wheel = Wheel::with_capacity(1_000);
        let mut expired = Vec::new();
        for key in 0..1_000 {
            wheel.insert(key, 3_000);
        }
        for tick in 1..=100u64 {
            for key in 0..1_000 {
                wheel.insert(key, 3_000 + tick);
            }
            wheel.advance(tick, &mut expired);
        }
        for tick in 101..=3_100 {
            wheel.advance(tick, &mut expired);
        }
        assert_eq!(expired.len(), 1_000);
        // Registered at level 1, re-inserted once or twice on the way down, then fired:
        // independent of the 100 resets (100k would mean one visit per reset).
        assert!(wheel.visited <= 3_000, "visited {}", wheel.visited);
    }

    #[test]
    fn advance_cost_follows_expiring_timers_not_armed_ones() {
        // 10k timers an hour away, 3 due now: one advance touches only the due slot's nodes.
        let mut wheel = Wheel::with_capacity(10_003);
        for key in 0..10_000 {
            wheel.insert(key, 360_000 + u64::from(key));
        }
        for key in 10_000..10_003 {
            wheel.insert(key, 2);
        }
        let far = wheel.nodes[0];
        assert_eq!(advance(&mut wheel, 2), vec![10_000, 10_001, 10_002]);
        assert_eq!(wheel.visited, 3);
        for tick in 3..1_000 {
            assert_eq!(advance(&mut wheel, tick), Vec::<u32>::new());
        }
        assert_eq!(wheel.visited, 3, "idle ticks visit nothing");
        let still = wheel.nodes[0];
        assert_eq!(
            (far.level(), far.slot()),
            (still.level(), still.slot()),
            "far timers untouched"
        );
        assert_eq!(wheel.len(), 10_000);
    }
}
