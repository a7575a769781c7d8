//! Receive path: multishot recv (`RecvMulti`, 6.0) with buffers picked by the kernel from the
//! ring's provided buffer ring, and the leftover contract of `Handler::on_data`.
//!
//! Leftover: when the handler consumes only part of its input, the unconsumed tail (and only
//! that) is copied into the slot's `leftover` Vec, which exists only while non-empty and never
//! exceeds `leftover_bytes_max` (else the connection closes with `LeftoverOverflow`). The next
//! call gets leftover + new bytes. With no leftover the handler reads the provided buffer in
//! place, with no copy. The provided buffer goes back to the kernel right after the call.
//!
//! Completion rules: `-ENOBUFS` (the buffer ring ran dry) ends the multishot and is re-armed
//! after buffers are recycled, at most half a buffer ring's worth per ring per turn (FIFO), so a
//! burst on more sockets than buffers does not spin; any CQE without `IORING_CQE_F_MORE` re-arms;
//! `res == 0` is the peer's FIN; `-ECANCELED` after a close is expected and ignored, and after a
//! read pause (`flow.rs`) leads to a re-arm once reading resumes. While reading is paused, bytes
//! still delivered are held in `leftover`, not passed to the handler.

use io_uring::cqueue;

use super::slab::{flag, State};
use super::stats::EngineStats;
use super::worker::Worker;
use super::{CloseReason, ConnId, Handler};

/// Input held beyond `leftover_bytes_max` while reading is paused, at most: 1 MiB, so that a
/// connection's memory stays within its queue bound plus about a megabyte whatever the ring's
/// buffers have grown to.
const PAUSED_IN_FLIGHT_BYTES_MAX: usize = 1 << 20;

impl<H: Handler> Worker<H> {
    pub fn on_recv_cqe(&mut self, slot: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let s = &mut self.core.slots[slot as usize];
        let ring = usize::from(s.ring);
        if !more {
            s.clear(flag::RECV_ARMED);
        }
        let state = s.state;
        if res > 0 && bid.is_none() {
            // Cannot happen with buffer select; if a kernel ever does it, drop the connection
            // rather than the worker.
            self.core.teardown(slot, CloseReason::Error(libc::EIO));
        } else if let (true, Some(bid)) = (res > 0, bid) {
            EngineStats::add(&self.core.shared.stats.bytes_received_total, res as u64);
            if state == State::Open && s.has(flag::READ_PAUSED) {
                // Arrived before the pause's cancel landed: held for the resume, unseen.
                self.hold(slot, ring, bid, res as usize);
            } else if state == State::Open {
                self.deliver(slot, ring, bid, res as usize);
            }
            // Input after `close` or teardown is discarded.
            self.core.rings[ring].bufs.push(bid);
            if !more && self.core.slots[slot as usize].state == State::Open {
                self.core.mark_rearm(slot);
            }
        } else if res == 0 {
            if let Some(bid) = bid {
                self.core.rings[ring].bufs.push(bid);
            }
            self.core.teardown(slot, CloseReason::PeerClosed);
        } else if res == -libc::ENOBUFS {
            EngineStats::add(&self.core.shared.stats.recv_nobufs_total, 1);
            if !more && matches!(state, State::Open | State::Closing) {
                self.core.mark_starved(slot);
            }
        } else if res == -libc::ECANCELED {
            // Cancelled to pause reading (a close's cancel leaves the slot `Dead`): re-armed once
            // reading resumes and the cancel completed (`arm_recv` checks both).
            if !more && state == State::Open {
                self.core.mark_rearm(slot);
            }
        } else {
            self.core.teardown(slot, CloseReason::Error(-res));
        }
        if !more {
            // The final CQE of this multishot recv: it no longer holds the slot.
            self.core.slots[slot as usize].inflight -= 1;
        }
    }

    /// Most input a slot may hold unconsumed: `leftover_bytes_max`, and while reading is
    /// paused also what the peer had in flight when the pause began, up to
    /// `PAUSED_IN_FLIGHT_BYTES_MAX`. In flight is at most what the ring's provided buffers can
    /// carry before the cancel lands; a client that pipelined more than that ahead of reading
    /// its answers is closed (`LeftoverOverflow`) rather than held.
    fn held_bytes_max(&self, slot: u32, ring: usize) -> usize {
        let max = self.core.layout.cfg.leftover_bytes_max;
        if self.core.slots[slot as usize].has(flag::READ_PAUSED) {
            let bufs = &self.core.rings[ring].bufs;
            let in_flight = usize::from(bufs.added()) * bufs.buf_bytes() as usize;
            max + in_flight.min(PAUSED_IN_FLIGHT_BYTES_MAX)
        } else {
            max
        }
    }

    /// Append `len` bytes of provided buffer `bid` to the slot's leftover without calling the
    /// handler (reading is paused); past `held_bytes_max` the connection is closed.
    fn hold(&mut self, slot: u32, ring: usize, bid: u16, len: usize) {
        let max = self.held_bytes_max(slot, ring);
        let bufs = &self.core.rings[ring].bufs;
        assert!(len <= bufs.buf_bytes() as usize);
        // SAFETY: `ptr..ptr+len` lies in buffer `bid` (len <= buf_bytes, asserted), which the
        // CQE just handed to us; the caller pushes it back only after this returns, so the
        // kernel does not write it meanwhile. Read only, and copied before anything else runs.
        let input: &[u8] = unsafe { std::slice::from_raw_parts(bufs.buf_ptr(bid), len) };
        let s = &mut self.core.slots[slot as usize];
        if s.leftover.len() + len > max {
            self.core.teardown(slot, CloseReason::LeftoverOverflow);
            return;
        }
        s.leftover.extend_from_slice(input);
        EngineStats::add(&self.core.shared.stats.read_held_bytes_total, len as u64);
    }

    /// Hand `len` bytes of provided buffer `bid` (plus any leftover) to the handler.
    fn deliver(&mut self, slot: u32, ring: usize, bid: u16, len: usize) {
        let id = ConnId {
            slot,
            gen: self.core.gens[slot as usize],
        };
        let max = self.core.layout.cfg.leftover_bytes_max;
        let Some(conn) = super::worker::conn_mut(&mut self.conns, slot) else {
            return;
        };
        let bufs = &self.core.rings[ring].bufs;
        assert!(len <= bufs.buf_bytes() as usize);
        let ptr = bufs.buf_ptr(bid);
        // SAFETY: `ptr..ptr+len` lies in buffer `bid` (len <= buf_bytes, asserted). The CQE just
        // handed `bid` to us and the caller pushes it back only after this function returns, so
        // the kernel does not write it meanwhile and no other slice of it exists. It points into
        // the `BufRing` heap allocation, which `Ctx` cannot reach (no buffer-ring access), so the
        // `&mut self.core` inside the `Ctx` below does not alias it; the ring outlives the call.
        let input: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let mut leftover = self.core.slots[slot as usize].leftover.take();
        let mut ctx = super::Ctx::new(&mut self.core);
        let rest: &[u8] = if leftover.is_empty() {
            let n = self.handler.on_data(&mut ctx, id, conn, input).min(len);
            &input[n..]
        } else {
            leftover.extend_from_slice(input);
            let n = self
                .handler
                .on_data(&mut ctx, id, conn, &mut leftover)
                .min(leftover.len());
            leftover.drain(..n);
            &[]
        };
        let s = &mut self.core.slots[slot as usize];
        if s.state != State::Open {
            // The handler closed it during the call; the input no longer matters.
            return;
        }
        if !rest.is_empty() {
            leftover.extend_from_slice(rest);
        }
        // The handler may have stopped taking input because its answers filled the queue
        // (reading is now paused): then the paused bound applies.
        let max = max.max(self.held_bytes_max(slot, ring));
        let s = &mut self.core.slots[slot as usize];
        if leftover.len() > max {
            self.core.teardown(slot, CloseReason::LeftoverOverflow);
        } else {
            s.leftover.put(leftover);
        }
        // An empty `leftover` is dropped here, freeing its allocation: idle means no buffer.
    }
}
