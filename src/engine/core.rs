//! The engine side of one worker (`Core`): rings, the connection slab and generations, the
//! timer wheel, the clock and the lists of work due after the current handler call.
//!
//! `Core` never calls the handler: whatever needs a callback (a close, a message to self) goes
//! into a list that the worker drains between callbacks, so a `Ctx` (which borrows only `Core`)
//! can close any connection, even the one whose `&mut Conn` the handler holds.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types};
use slab::Slab;

use super::config::Layout;
use super::inbox::Shared;
use super::ring::{Ring, BGID};
use super::slab::{flag, OpMem, Slot, State};
use super::stats::EngineStats;
use super::user_data::{OpKind, UserData};
use super::wheel::Wheel;
use super::{CloseReason, ConnId};

/// Most sends submitted per loop turn (per worker).
pub(crate) const SENDS_PER_TURN: usize = 1024;
/// Most close chains (cancel + close) submitted per loop turn (per worker).
const CLOSES_PER_TURN: usize = 1024;

/// A wheel key is a ring index (accept back-off) below `rings_per_worker` (the most rings a
/// worker may open), else a slot + `rings_per_worker`: fixed, as rings open while timers run.
pub(crate) enum TimerTarget {
    Ring(usize),
    Slot(u32),
}

pub(crate) struct Core<M> {
    // Dropped first: closing the rings ends every op before the slots' op memory is freed.
    pub rings: Vec<Ring>,
    /// The worker's listener (server role), shared with each ring it opens.
    pub listener: Option<Arc<OwnedFd>>,
    /// The ring whose accept is armed (see `choose_accepting_ring`).
    pub accepting: usize,
    /// No ring is opened before this (`now_ms` time) after one failed to open.
    pub open_ring_retry_ms: u64,
    pub slots: Slab<Slot>,
    /// Generation per slab index, bumped each time the index is freed.
    pub gens: Vec<u32>,
    pub wheel: Wheel,
    pub shared: Arc<Shared<M>>,
    pub layout: Arc<Layout>,
    pub worker: usize,
    /// Milliseconds since the engine started, cached once per loop turn.
    pub now_ms: u64,
    /// This worker posted to its own inbox during a callback (drained after it).
    pub own_posted: bool,
    /// Slots whose `on_close` / `on_connect_failed` is due.
    pub closed: Vec<(u32, CloseReason)>,
    /// Slots with queued bytes and no send in flight.
    pub dirty: VecDeque<u32>,
    /// Torn-down slots whose cancel + close chain is not pushed yet (paced).
    pub to_close: VecDeque<u32>,
    /// Slots whose multishot recv ended and must be re-armed (after buffers are recycled).
    pub rearm: Vec<u32>,
    /// Per ring: slots whose recv ended with -ENOBUFS, re-armed at most `starved_rearm_max` per
    /// turn (FIFO). Re-arming them all at once, with fewer free buffers than starved sockets
    /// holding data, makes most fail with -ENOBUFS again at once: measured, 30,000 connections
    /// receiving together over 16 buffers produced ~860,000 useless completions.
    pub starved: Vec<VecDeque<u32>>,
    /// Connections whose `on_drain` is due (`flow.rs`).
    pub drains: Vec<ConnId>,
    /// Connections whose reading resumed with bytes held in `leftover` (`flow.rs`).
    pub resumed: Vec<ConnId>,
    /// Spare op memory (most recently iovec + msghdr blocks), reused to avoid an allocation
    /// per gathered send and per peer lookup. Boxed on purpose: a block's address must not move
    /// while the kernel reads it.
    #[allow(clippy::vec_box)]
    pub send_pool: Vec<Box<OpMem>>,
    /// Spare empty send queues (see `send.rs`), so a delivery to an idle connection does not
    /// allocate its queue.
    #[allow(clippy::vec_box, clippy::box_collection)]
    pub sendq_pool: Vec<Box<VecDeque<bytes::Bytes>>>,
    pub shutting_down: bool,
    /// When the next accept stall check is due (`now_ms` time).
    pub stall_check_due_ms: u64,
    /// Look up each accepted socket's peer address (`peer.rs`); turned off for good by the
    /// first `-EOPNOTSUPP`/`-EINVAL` (a kernel before 6.7).
    pub peer_lookup: bool,
    /// The eventfd read's destination; boxed so the kernel writes to a stable address.
    pub wake_buf: Box<u64>,
}

/// Most connections kept in `reserved_slots`: beyond it the per-slot arrays grow by doubling.
const RESERVED_SLOTS_MAX: usize = 1 << 22;

/// Slots a worker's per-slot arrays (slab, generations, timer nodes, the handler's `conns`)
/// reserve at start: every connection its rings can hold. Mostly address space, a page being
/// touched when a slot on it is first used (start-up RSS still grew by 2 MB at 1,000 and 8 MB
/// at 1,000,000 configured connections, not explained further). Grown by doubling instead,
/// each array left its previous buffer behind as a hole in the allocator's heap and was half
/// empty after a doubling: measured between 100,000 and 200,000 idle connections, the slope
/// was 100-200 bytes per connection above the arrays' entry sizes (docs/capacity.md "Memory
/// per idle connection").
pub(crate) fn reserved_slots(layout: &Layout) -> usize {
    (layout.rings_per_worker * layout.accept_limit as usize).min(RESERVED_SLOTS_MAX)
}

impl<M> Core<M> {
    pub fn new(
        worker: usize,
        rings: Vec<Ring>,
        listener: Option<Arc<OwnedFd>>,
        layout: Arc<Layout>,
        shared: Arc<Shared<M>>,
    ) -> Self {
        let per_worker = reserved_slots(&layout);
        let starved = (0..rings.len()).map(|_| Default::default()).collect();
        let bufs: u64 = rings.iter().map(|r| u64::from(r.bufs.added())).sum();
        EngineStats::add(&shared.stats.recv_buffers_added_total, bufs);
        EngineStats::add(&shared.stats.rings_open, rings.len() as u64);
        Core {
            rings,
            listener,
            accepting: 0,
            open_ring_retry_ms: 0,
            slots: Slab::with_capacity(per_worker),
            gens: Vec::with_capacity(per_worker),
            wheel: Wheel::with_capacity(per_worker + layout.rings_per_worker),
            shared,
            layout,
            worker,
            now_ms: 0,
            own_posted: false,
            closed: Vec::new(),
            dirty: VecDeque::new(),
            to_close: VecDeque::new(),
            rearm: Vec::new(),
            starved,
            drains: Vec::new(),
            resumed: Vec::new(),
            send_pool: Vec::new(),
            sendq_pool: Vec::new(),
            shutting_down: false,
            stall_check_due_ms: 0,
            peer_lookup: true,
            wake_buf: Box::new(0),
        }
    }

    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    pub fn update_clock(&mut self) {
        self.now_ms = self.shared.clock.elapsed().as_millis() as u64;
    }

    // --- time: the one place that converts milliseconds and ticks ---------------------------

    /// The tick at or after `ms` (a timer never fires early).
    pub fn tick_at_or_after(&self, ms: u64) -> u64 {
        ms.div_ceil(self.layout.cfg.tick_ms)
    }

    /// The tick that has fully started by `ms`.
    pub fn tick_reached(&self, ms: u64) -> u64 {
        ms / self.layout.cfg.tick_ms
    }

    pub fn ms_of_tick(&self, tick: u64) -> u64 {
        tick.saturating_mul(self.layout.cfg.tick_ms)
    }

    pub fn slot_key(&self, slot: u32) -> u32 {
        slot + self.layout.rings_per_worker as u32
    }

    pub fn timer_target(&self, key: u32) -> TimerTarget {
        let rings = self.layout.rings_per_worker as u32;
        if key < rings {
            TimerTarget::Ring(key as usize)
        } else {
            TimerTarget::Slot(key - rings)
        }
    }

    pub fn set_slot_timer(&mut self, slot: u32, deadline_ms: u64) {
        let key = self.slot_key(slot);
        let tick = self.tick_at_or_after(deadline_ms);
        self.wheel.insert(key, tick);
    }

    // --- identities -------------------------------------------------------------------------

    pub fn id(&self, slot: u32) -> ConnId {
        ConnId {
            slot,
            gen: self.gens[slot as usize],
        }
    }

    /// The slot of `id` if `id` is current (not stale) and its connection not yet torn down.
    pub fn slot_of(&self, id: ConnId) -> Option<&Slot> {
        let s = self.slots.get(id.slot as usize)?;
        (self.gens[id.slot as usize] == id.gen && s.state != State::Dead).then_some(s)
    }

    pub fn slot_of_mut(&mut self, id: ConnId) -> Option<&mut Slot> {
        let gen = *self.gens.get(id.slot as usize)?;
        let s = self.slots.get_mut(id.slot as usize)?;
        (gen == id.gen && s.state != State::Dead).then_some(s)
    }

    pub fn ud(&self, kind: OpKind, slot: u32) -> u64 {
        UserData::new(kind, self.gens[slot as usize], slot).pack()
    }

    /// Take a slab slot for a new connection on `ring`.
    pub fn insert_slot(&mut self, ring: u8, state: State) -> u32 {
        let slot = self.slots.insert(Slot::new(ring, state)) as u32;
        if self.gens.len() <= slot as usize {
            self.gens.resize(slot as usize + 1, 0);
        }
        slot
    }

    // --- ops ----------------------------------------------------------------------------------

    /// Arm the multishot recv (`RecvMulti`, 6.0) of an open slot.
    pub fn arm_recv(&mut self, slot: u32) {
        let ud = self.ud(OpKind::Recv, slot);
        let s = &mut self.slots[slot as usize];
        if s.has(flag::RECV_ARMED | flag::READ_PAUSED | flag::RECV_CANCELLING)
            || s.state == State::Dead
        {
            return;
        }
        let e = opcode::RecvMulti::new(types::Fixed(s.file), BGID)
            .build()
            .user_data(ud);
        s.set(flag::RECV_ARMED);
        s.inflight += 1;
        let ring = usize::from(s.ring);
        // SAFETY: a multishot recv with buffer select reads into the provided buffer ring,
        // which lives as long as the ring; no other user memory is referenced.
        unsafe { self.rings[ring].push(&e) };
    }

    /// End a connection: queue the cancel of its ops and the close of its direct descriptor,
    /// and queue its `on_close`. Idempotent. The slot is freed later by `try_free`.
    ///
    /// The kernel work is paced (`CLOSES_PER_TURN`, see `push_close_chain`): a shutdown or a
    /// mass timeout may end 500,000 connections in one turn, and pushing all their chains at
    /// once kept a worker inside one turn for over a minute, deaf to its drain deadline.
    pub fn teardown(&mut self, slot: u32, why: CloseReason) {
        if !self.mark_dead(slot, why) {
            return;
        }
        let s = &mut self.slots[slot as usize];
        s.leftover = Default::default();
        if !s.has(flag::SEND_INFLIGHT) {
            // Nothing in the kernel reads the queue: release the buffers now.
            s.sendq = None;
            s.queued = 0;
            s.send_off = 0;
        }
        if s.has(flag::HAS_FILE) {
            s.set(flag::CLOSE_QUEUED);
            self.to_close.push_back(slot);
        }
    }

    /// Push the hard-linked chain `AsyncCancel(recv)` [+ `AsyncCancel(send)`] -> `Close` of a
    /// torn-down slot, built from what is in flight now.
    ///
    /// Cancels target each op by its exact `user_data` (a hash lookup in the kernel), not by
    /// fd: a cancel by fd scans every armed poll of the ring, which made a drain of 120,000
    /// connections take tens of seconds (measured with `benches/engine_hold.rs`). Only a
    /// connecting slot, whose current op is one of several, is cancelled by fd. The hard link
    /// keeps the `Close` after the cancels even when one finds nothing (-ENOENT); closing first
    /// would leave a multishot recv holding the socket open.
    fn push_close_chain(&mut self, slot: u32) {
        let uds = [
            self.ud(OpKind::Recv, slot),
            self.ud(OpKind::Send, slot),
            self.ud(OpKind::Cancel, slot),
            self.ud(OpKind::Close, slot),
        ];
        let [recv_ud, send_ud, cancel_ud, close_ud] = uds;
        let s = &mut self.slots[slot as usize];
        if !s.has(flag::CLOSE_QUEUED) {
            return;
        }
        s.clear(flag::CLOSE_QUEUED);
        let mut chain: [Option<squeue::Entry>; 3] = [None, None, None];
        let mut n = 0;
        let fd = types::Fixed(s.file);
        let link = squeue::Flags::IO_HARDLINK;
        let cancel_ud_of = |target: u64| {
            opcode::AsyncCancel::new(target)
                .build()
                .flags(link)
                .user_data(cancel_ud)
        };
        if matches!(s.mem.as_deref(), Some(OpMem::Connect(_))) {
            let by_fd = opcode::AsyncCancel2::new(types::CancelBuilder::fd(fd).all());
            chain[n] = Some(by_fd.build().flags(link).user_data(cancel_ud));
            n += 1;
        } else {
            if s.has(flag::RECV_ARMED) {
                chain[n] = Some(cancel_ud_of(recv_ud));
                n += 1;
            }
            if s.has(flag::SEND_INFLIGHT) {
                chain[n] = Some(cancel_ud_of(send_ud));
                n += 1;
            }
        }
        chain[n] = Some(opcode::Close::new(fd).build().user_data(close_ud));
        n += 1;
        s.inflight += n as u8;
        let ring = usize::from(s.ring);
        // SAFETY: cancels and close reference no user memory.
        unsafe { self.rings[ring].push_chain(n, chain.iter().flatten()) };
    }

    /// Mark a connection dead with no SQE (forced exit: the ring teardown closes it).
    pub fn abandon(&mut self, slot: u32, why: CloseReason) {
        self.mark_dead(slot, why);
    }

    /// What every end of a connection does: mark it dead, drop its timer, queue its
    /// `on_close`. False if it was dead already.
    fn mark_dead(&mut self, slot: u32, why: CloseReason) -> bool {
        let key = self.slot_key(slot);
        let s = &mut self.slots[slot as usize];
        if s.state == State::Dead {
            return false;
        }
        s.state = State::Dead;
        self.wheel.remove(key);
        self.closed.push((slot, why));
        true
    }

    /// Free a dead slot once the kernel is done with it and the handler was told.
    pub fn try_free(&mut self, slot: u32) {
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        if s.state != State::Dead
            || s.inflight != 0
            || !s.has(flag::DELIVERED)
            || s.has(flag::CLOSE_QUEUED)
        {
            return;
        }
        let s = self.slots.remove(slot as usize);
        if let Some(mem) = s.mem {
            self.recycle_op_mem(mem);
        }
        let g = &mut self.gens[slot as usize];
        *g = g.wrapping_add(1);
    }

    /// Close a direct descriptor that has no live connection (accepted during shutdown or
    /// with no room). Its table slot is counted free at the `RawClose` completion.
    pub fn raw_close(&mut self, ring: usize, file: u32) {
        let ud = UserData::new(OpKind::RawClose, 0, ring as u32).pack();
        let e = opcode::Close::new(types::Fixed(file)).build().user_data(ud);
        // SAFETY: close references no user memory.
        unsafe { self.rings[ring].push(&e) };
    }

    /// Whether paced work is left over for the next turn (then the worker must not sleep).
    pub fn has_paced_work(&self) -> bool {
        !self.dirty.is_empty()
            || !self.to_close.is_empty()
            || self.has_flow_work()
            || self.starved.iter().any(|q| !q.is_empty())
    }

    /// Work due at the end of a loop turn: sends, recv re-arms, buffer publication, accepts.
    pub fn end_of_turn(&mut self) {
        // At most `SENDS_PER_TURN` new sends per turn; the rest wait for the next turn (the
        // worker does not sleep while `dirty` is non-empty). A broadcast or a shutdown makes
        // every connection dirty at once; submitting 100,000 sends in one turn overflows every
        // CQ and keeps the worker away from its completions and deadlines for seconds.
        for _ in 0..CLOSES_PER_TURN {
            let Some(slot) = self.to_close.pop_front() else {
                break;
            };
            if self.slots.get(slot as usize).is_some() {
                self.push_close_chain(slot);
            }
        }
        for _ in 0..SENDS_PER_TURN {
            let Some(slot) = self.dirty.pop_front() else {
                break;
            };
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.clear(flag::DIRTY);
                self.flush_send(slot);
            }
        }
        for (ring, starved) in self.rings.iter_mut().zip(&self.starved) {
            if !starved.is_empty() {
                // Receives are waiting for buffers after this turn's were all recycled: the
                // ring is too small for this load. Doubling once per turn reaches the maximum
                // in a few turns of a burst and never takes memory back (see buf_ring.rs).
                let added = ring.bufs.grow();
                EngineStats::add(
                    &self.shared.stats.recv_buffers_added_total,
                    u64::from(added),
                );
            }
            ring.bufs.publish();
        }
        let rearm = std::mem::take(&mut self.rearm);
        for &slot in &rearm {
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.clear(flag::REARM);
                if matches!(s.state, State::Open | State::Closing) {
                    self.arm_recv(slot);
                }
            }
        }
        self.rearm = rearm;
        self.rearm.clear();
        // All buffers are back in the rings at this point (every turn recycles what it took),
        // so half a ring's worth of starved recvs can be re-armed without starving again.
        for r in 0..self.rings.len() {
            let budget = (usize::from(self.rings[r].bufs.added()) / 2).max(1);
            for _ in 0..budget {
                let Some(slot) = self.starved[r].pop_front() else {
                    break;
                };
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.clear(flag::REARM);
                    if matches!(s.state, State::Open | State::Closing) {
                        self.arm_recv(slot);
                    }
                }
            }
        }
        self.choose_accepting_ring();
        for r in 0..self.rings.len() {
            self.maintain_accept(r);
        }
        self.maybe_check_accept_stalls();
    }

    /// Open the worker's next ring (up to `rings_per_worker`), when the open ones' file
    /// tables are full: one ring costs 15-18 % less CPU per message than six (every turn reaps
    /// and submits each ring, and ring 0 is woken through its poll of the others), so a small
    /// load stays on one. Returns its index, or `None` at the maximum, during shutdown, or
    /// when opening failed (retried a second later; meanwhile new connections wait).
    pub fn open_ring(&mut self) -> Option<usize> {
        let r = self.rings.len();
        if r >= self.layout.rings_per_worker
            || self.shutting_down
            || self.now_ms < self.open_ring_retry_ms
        {
            return None;
        }
        match Ring::new(&self.layout, r as u8, self.listener.clone()) {
            Ok(ring) => {
                EngineStats::add(
                    &self.shared.stats.recv_buffers_added_total,
                    u64::from(ring.bufs.added()),
                );
                EngineStats::add(&self.shared.stats.rings_open, 1);
                self.rings.push(ring);
                self.starved.push(VecDeque::new());
                self.arm_ring_poll(r);
                tracing::info!(
                    worker = self.worker,
                    ring = r,
                    "file tables full: ring opened"
                );
                Some(r)
            }
            Err(e) => {
                self.open_ring_retry_ms = self.now_ms + 1000;
                tracing::warn!(worker = self.worker, ring = r, error = %e, "could not open a ring");
                None
            }
        }
    }

    /// Ring 0 polls ring `r`'s fd (readable when its CQ has entries), so one wait covers all.
    pub fn arm_ring_poll(&mut self, r: usize) {
        use std::os::fd::AsRawFd;
        let fd = self.rings[r].uring.as_raw_fd();
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UserData::new(OpKind::RingPoll, 0, r as u32).pack());
        // SAFETY: poll references no user memory.
        unsafe { self.rings[0].push(&e) };
    }

    pub fn mark_dirty(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.has(flag::DIRTY) && !s.has(flag::SEND_INFLIGHT) {
            s.set(flag::DIRTY);
            self.dirty.push_back(slot);
        }
    }

    /// Queue a recv that ended with -ENOBUFS for a paced re-arm (see `starved`).
    pub fn mark_starved(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.has(flag::REARM) {
            s.set(flag::REARM);
            let ring = usize::from(s.ring);
            self.starved[ring].push_back(slot);
        }
    }

    pub fn mark_rearm(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.has(flag::REARM) {
            s.set(flag::REARM);
            self.rearm.push(slot);
        }
    }
}
