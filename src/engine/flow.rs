//! Flow control of one connection: the bound on queued output, pausing reads while the output
//! queue is long, and `on_drain` notifications.
//!
//! ```text
//!  queued bytes:  0 ........ drain_bytes ....... read_pause_bytes ....... send_queue_bytes_max
//!                 |  on_drain due (<=)  |                          |
//!                 |  reading (<=)                                  | paused (>)  | abort (>)
//! ```
//! (`drain_bytes` is `read_pause_bytes`, else `send_queue_bytes_max / 2`, else 0; see
//! `Layout::drain_bytes`.)
//!
//! Pause: the `Ctx::send` that takes `queued` above `read_pause_bytes` sets `READ_PAUSED` and
//! cancels the multishot recv (by its `user_data`); no recv is armed while `READ_PAUSED` or
//! `RECV_CANCELLING` is set, so the peer's bytes wait in the kernel's socket buffer. Bytes the
//! recv delivered before the cancel landed are appended to `leftover` without an `on_data`
//! (bounded by `leftover_bytes_max`, else `LeftoverOverflow`). Resume: the send completion that
//! brings `queued` to `<= read_pause_bytes` clears `READ_PAUSED`, queues a recv re-arm and, if
//! `leftover` holds bytes, one `on_data` with them.
//!
//! Never calls the handler from `Core`: due drains and leftover re-deliveries are lists that
//! the worker drains after the turn's other callbacks (`Worker::deliver_flow`); a request made
//! during that pass is served in the next turn.

use io_uring::opcode;

use super::core::Core;
use super::ctx::Ctx;
use super::slab::{flag, State};
use super::stats::EngineStats;
use super::user_data::OpKind;
use super::worker::{conn_mut, Worker};
use super::{ConnId, Handler};

impl<M> Core<M> {
    /// `queued` of `slot` grew (a send was queued): pause reading past `read_pause_bytes`.
    pub fn after_queue_grew(&mut self, slot: u32) {
        let pause_bytes = self.layout.cfg.read_pause_bytes;
        let s = &mut self.slots[slot as usize];
        if pause_bytes == 0 || s.queued <= pause_bytes || s.has(flag::READ_PAUSED) {
            return;
        }
        s.set(flag::READ_PAUSED);
        EngineStats::add(&self.shared.stats.read_paused_total, 1);
        if s.has(flag::RECV_ARMED) && !s.has(flag::RECV_CANCELLING) {
            self.cancel_recv(slot);
        }
    }

    /// Cancel the armed multishot recv of an open slot (its final CQE clears `RECV_ARMED`).
    fn cancel_recv(&mut self, slot: u32) {
        let target = self.ud(OpKind::Recv, slot);
        let ud = self.ud(OpKind::Cancel, slot);
        let s = &mut self.slots[slot as usize];
        s.set(flag::RECV_CANCELLING);
        s.inflight += 1;
        let ring = usize::from(s.ring);
        let e = opcode::AsyncCancel::new(target).build().user_data(ud);
        // SAFETY: a cancel by user_data references no user memory.
        unsafe { self.rings[ring].push(&e) };
    }

    /// A `Cancel` completion: the close chain's, or the one `cancel_recv` sent to pause.
    pub fn on_cancel_cqe(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.inflight -= 1;
        if s.has(flag::RECV_CANCELLING) {
            s.clear(flag::RECV_CANCELLING);
            if s.state == State::Open {
                // Resumed while the cancel was in flight: the recv is re-armed now (or, if its
                // final CQE is still to come, when it comes).
                self.mark_rearm(slot);
            }
        }
    }

    /// `queued` of an open `slot` shrank (a send completed): resume reading, make a drain due.
    pub fn after_queue_shrank(&mut self, slot: u32) {
        let pause_bytes = self.layout.cfg.read_pause_bytes;
        let drain_bytes = self.layout.drain_bytes();
        let id = self.id(slot);
        let s = &mut self.slots[slot as usize];
        if s.state != State::Open {
            return;
        }
        if s.has(flag::READ_PAUSED) && s.queued <= pause_bytes {
            s.clear(flag::READ_PAUSED);
            if !s.leftover.is_empty() {
                self.resumed.push(id);
            }
            self.mark_rearm(slot);
        }
        let s = &mut self.slots[slot as usize];
        if s.has(flag::DRAIN_WANTED) && s.queued <= drain_bytes {
            s.clear(flag::DRAIN_WANTED);
            s.set(flag::DRAIN_DUE);
            self.drains.push(id);
        }
    }

    /// See `Ctx::notify_drain`.
    pub fn notify_drain(&mut self, id: ConnId) {
        let drain_bytes = self.layout.drain_bytes();
        let Some(s) = self.slot_of_mut(id) else {
            return;
        };
        if s.state != State::Open
            || s.has(flag::DELIVERED)
            || s.has(flag::DRAIN_WANTED)
            || s.has(flag::DRAIN_DUE)
        {
            return;
        }
        if s.queued <= drain_bytes {
            s.set(flag::DRAIN_DUE);
            self.drains.push(id);
        } else {
            s.set(flag::DRAIN_WANTED);
        }
    }

    /// Whether `deliver_flow` has callbacks to make.
    pub fn has_flow_work(&self) -> bool {
        !self.drains.is_empty() || !self.resumed.is_empty()
    }
}

impl<H: Handler> Worker<H> {
    /// Re-deliver leftover of resumed connections, then call due `on_drain`s. Returns whether a
    /// callback may have run (then due closes and messages need delivering).
    pub fn deliver_flow(&mut self) -> bool {
        if !self.core.has_flow_work() {
            return false;
        }
        let mut resumed = std::mem::take(&mut self.core.resumed);
        for &id in &resumed {
            self.redeliver_leftover(id);
        }
        resumed.clear();
        if self.core.resumed.is_empty() {
            self.core.resumed = resumed;
        }
        let mut drains = std::mem::take(&mut self.core.drains);
        for &id in &drains {
            let Some(s) = self.core.slot_of_mut(id) else {
                continue;
            };
            if !s.has(flag::DRAIN_DUE) {
                continue;
            }
            s.clear(flag::DRAIN_DUE);
            if s.state != State::Open || s.has(flag::DELIVERED) {
                continue;
            }
            let Some(conn) = conn_mut(&mut self.conns, id.slot) else {
                continue;
            };
            let mut ctx = Ctx::new(&mut self.core);
            self.handler.on_drain(&mut ctx, id, conn);
        }
        drains.clear();
        if self.core.drains.is_empty() {
            self.core.drains = drains;
        }
        true
    }

    /// Hand the bytes held while reading was paused (plus any unconsumed tail) to `on_data`;
    /// also `Ctx::redeliver`'s call, whose leftover may be empty.
    fn redeliver_leftover(&mut self, id: ConnId) {
        let Some(s) = self.core.slot_of(id) else {
            return;
        };
        // Empty leftover only comes from `Ctx::redeliver` (a resume pushes only non-empty).
        if s.state != State::Open || s.has(flag::READ_PAUSED) {
            return;
        }
        let Some(conn) = conn_mut(&mut self.conns, id.slot) else {
            return;
        };
        let mut leftover = self.core.slots[id.slot as usize].leftover.take();
        let mut ctx = Ctx::new(&mut self.core);
        let n = self
            .handler
            .on_data(&mut ctx, id, conn, &mut leftover)
            .min(leftover.len());
        leftover.drain(..n);
        let s = &mut self.core.slots[id.slot as usize];
        // Nothing is appended to `leftover` during a callback, so it did not grow.
        if s.state == State::Open {
            s.leftover.put(leftover);
        }
    }
}
