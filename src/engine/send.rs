//! Send path: a per-connection queue of shared `Bytes`, at most one send op in flight per
//! connection: a plain `Send` when one buffer is queued, else a `SendMsg` gathering up to
//! `IOV_MAX_SEND` queued buffers; partial sends resume where they stopped. Never copies a
//! payload. The engine's only bound on queued bytes is `send_queue_bytes_max` (enforced in
//! `Ctx::send`); finer policy is the handler's.
//!
//! Memory the kernel reads during a send: for a `SendMsg`, the iovec array and msghdr (in a
//! pooled, boxed `SendMem` owned by the slot while the op is in flight); for both kinds, the
//! payload bytes (owned by the `Bytes` in the slot's queue, which is not popped before the
//! completion). An emptied queue's buffer goes back to a per-worker pool (`take_sendq`).

use std::collections::VecDeque;

use bytes::Bytes;
use io_uring::{opcode, types};

use super::core::Core;
use super::slab::{flag, OpMem, SendMem, State, IOV_MAX_SEND};
use super::stats::EngineStats;
use super::user_data::OpKind;
use super::CloseReason;

/// Spare `OpMem` blocks kept per worker (the rest are freed).
const SEND_POOL_MAX: usize = 1024;
/// Spare (empty) send queues kept per worker. A queue's buffer is given back when its last
/// byte is sent, so that an idle connection owns no heap; without this pool every delivery to
/// an idle connection allocated and freed one (callgrind: ~10 % of the engine's instructions
/// per SSE delivery in a 1,000-subscriber fan-out).
const SENDQ_POOL_MAX: usize = 4096;

impl<M> Core<M> {
    pub fn recycle_op_mem(&mut self, mem: Box<OpMem>) {
        if self.send_pool.len() < SEND_POOL_MAX {
            self.send_pool.push(mem);
        }
    }

    /// A block of op memory from the pool (any variant; the caller overwrites it) or new.
    pub fn take_op_mem(&mut self) -> Box<OpMem> {
        self.send_pool
            .pop()
            .unwrap_or_else(|| Box::new(OpMem::Send(SendMem::new())))
    }

    /// A queue for a slot's first queued buffer: a spare one from the pool if there is one.
    #[allow(clippy::box_collection)]
    pub fn take_sendq(&mut self) -> Box<VecDeque<Bytes>> {
        self.sendq_pool.pop().unwrap_or_default()
    }

    /// Keep an emptied queue (its box and its buffer) for the next connection that queues
    /// something.
    #[allow(clippy::box_collection)]
    pub fn recycle_sendq(&mut self, mut q: Box<VecDeque<Bytes>>) {
        q.clear();
        if self.sendq_pool.len() < SENDQ_POOL_MAX {
            self.sendq_pool.push(q);
        }
    }

    /// Submit a send of the slot's queue if there is something to send and none in flight:
    /// a plain `Send` for one buffer (the usual fan-out delivery to an idle connection: no
    /// msghdr for the kernel to copy and no iovec to import), else a gathering `SendMsg`.
    pub fn flush_send(&mut self, slot: u32) {
        let ud = self.ud(OpKind::Send, slot);
        let s = &mut self.slots[slot as usize];
        if !matches!(s.state, State::Open | State::Closing) || s.has(flag::SEND_INFLIGHT) {
            return;
        }
        let Some(q) = s.sendq.as_deref().filter(|q| !q.is_empty()) else {
            return;
        };
        if q.len() == 1 {
            let buf = &q[0][s.send_off as usize..];
            let e = opcode::Send::new(types::Fixed(s.file), buf.as_ptr(), buf.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(ud);
            s.set(flag::SEND_INFLIGHT);
            s.inflight += 1;
            let ring = usize::from(s.ring);
            // SAFETY: the payload lives in the `Bytes` at the front of `s.sendq`, which is not
            // popped or dropped until this op's CQE (`on_send_cqe`); `try_free` keeps the slot
            // while `inflight > 0`.
            unsafe { self.rings[ring].push(&e) };
            return;
        }
        let mut mem = self.take_op_mem();
        if !matches!(*mem, OpMem::Send(_)) {
            *mem = OpMem::Send(SendMem::new());
        }
        let OpMem::Send(send) = &mut *mem else {
            unreachable!("set above")
        };
        let s = &mut self.slots[slot as usize];
        let mut n = 0;
        let mut off = s.send_off as usize;
        let q = s.sendq.as_deref().expect("checked above");
        for buf in q.iter().take(IOV_MAX_SEND) {
            send.iov[n] = libc::iovec {
                iov_base: buf[off..].as_ptr() as *mut libc::c_void,
                iov_len: buf.len() - off,
            };
            off = 0;
            n += 1;
        }
        send.msg.msg_iov = send.iov.as_mut_ptr();
        send.msg.msg_iovlen = n as _;
        let e = opcode::SendMsg::new(types::Fixed(s.file), &send.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(ud);
        s.mem = Some(mem);
        s.set(flag::SEND_INFLIGHT);
        s.inflight += 1;
        let ring = usize::from(s.ring);
        // SAFETY: the msghdr and iovecs live in the boxed `SendMem` now owned by `s.mem`, and the
        // payloads in the `Bytes` of `s.sendq`; neither is dropped or popped until this op's
        // CQE (`on_send_cqe`), and `try_free` keeps the slot while `inflight > 0`.
        unsafe { self.rings[ring].push(&e) };
    }

    /// Completion of a send (`Send` or `SendMsg`): advance the queue by `res` bytes, continue
    /// or finish a close.
    pub fn on_send_cqe(&mut self, slot: u32, res: i32) {
        let s = &mut self.slots[slot as usize];
        s.inflight -= 1;
        s.clear(flag::SEND_INFLIGHT);
        let mem = match s.mem.take() {
            Some(mem) if matches!(*mem, OpMem::Send(_)) => Some(mem),
            other => {
                s.mem = other;
                None
            }
        };
        if s.state == State::Dead {
            // Torn down while in flight: the kernel is done with the queue now.
            s.sendq = None;
            s.queued = 0;
        } else if res >= 0 {
            let mut sent = res as usize;
            EngineStats::add(&self.shared.stats.bytes_sent_total, sent as u64);
            s.queued -= sent.min(s.queued);
            let q = s
                .sendq
                .as_deref_mut()
                .expect("a send in flight has a queue");
            while sent > 0 {
                let front_left = q[0].len() - s.send_off as usize;
                if sent >= front_left {
                    sent -= front_left;
                    q.pop_front();
                    s.send_off = 0;
                } else {
                    s.send_off += sent as u32;
                    sent = 0;
                }
            }
            if q.is_empty() {
                // Release the queue: an idle connection owns no heap.
                let q = s.sendq.take().expect("checked above");
                let closing = s.state == State::Closing;
                self.recycle_sendq(q);
                if closing {
                    self.teardown(slot, CloseReason::Closed);
                }
            } else {
                self.mark_dirty(slot);
            }
            self.after_queue_shrank(slot);
        } else if res != -libc::ECANCELED {
            self.teardown(slot, CloseReason::Error(-res));
        }
        if let Some(mem) = mem {
            self.recycle_op_mem(mem);
        }
    }
}
