//! One worker thread's loop: reap every ring, dispatch each completion by op kind, run the
//! callbacks that became due, fire timers, submit, and wait on the main ring.
//!
//! Loop turn, in this order (the order matters):
//! 1. clock; shutdown bookkeeping;
//! 2. reap up to `REAP_BATCH` CQEs per ring and dispatch them (`on_open`, `on_data`, ...);
//! 3. deliver due closes and self-posted messages (callbacks may queue more; drained fully);
//! 4. fire expired timers (then 3 again);
//! 5. re-deliver leftover of connections whose reading resumed, and due `on_drain`s (then 3;
//!    requests made meanwhile wait for the next turn, and keep the worker from sleeping);
//! 6. end of turn: submit queued sends, publish recycled buffers (growing a starved buffer
//!    ring), re-arm recvs (after the buffers are back, so a re-armed recv does not hit
//!    `-ENOBUFS` again), arm/cancel accepts, the accept stall check once a second;
//! 7. submit secondary rings, then submit + wait on ring 0 with a timeout to the next timer
//!    (at most `STALL_CHECK_MS` for a server).
//!
//! Stale completions (generation mismatch or a freed slot) are counted and ignored.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use io_uring::{cqueue, opcode, types};

use super::config::Layout;
use super::core::{Core, TimerTarget};
use super::ctx::Ctx;
use super::inbox::Shared;
use super::ring::{self, Ring};
use super::slab::{flag, State};
use super::stats::EngineStats;
use super::user_data::{OpKind, UserData};
use super::EngineError;
use super::{CloseReason, Handler, Origin};

/// Most CQEs taken from one ring per turn, so one busy ring cannot starve timers and others.
/// Twice the sends a turn may submit (`SENDS_PER_TURN`, one CQE each): at 512 a fan-out to
/// 100,000 subscribers added 1,024 completions per turn and took 512, so the CQ (4 x SQ =
/// 4,096) filled within a few turns and completions overflowed into the kernel's list for the
/// rest of the fan-out (seen in the ring status lines: `cq=4096 cq_overflow_flag=true`).
const REAP_BATCH: usize = 2 * super::core::SENDS_PER_TURN;
/// A loop turn longer than this is logged (with its phases).
const SLOW_TURN_MS: u128 = 1000;
/// At a forced exit, file tables are unregistered (closing their sockets in this thread) only
/// until this much time has passed; the rest close in the kernel's ring-exit work after exit.
const FORCED_CLOSE_BUDGET_MS: u128 = 500;
/// At a forced exit with more connections left than this, the rings are closed without a
/// synchronous cancel (quadratic in the kernel) and the worker's memory is leaked.
const FORCED_SYNC_CANCEL_MAX: usize = 4096;
/// Period of the per-ring debug status line.
const STATUS_LOG_MS: u64 = 5000;

pub(crate) struct Worker<H: Handler> {
    pub core: Core<H::Msg>,
    pub handler: H,
    /// The handler's per-connection state, indexed like `core.slots`.
    pub conns: Vec<Option<H::Conn>>,
    cqes: Vec<(u64, i32, u32)>,
    msgs: Vec<H::Msg>,
    expired: Vec<u32>,
    drain_deadline_ms: Option<u64>,
    /// Set when ops may still be in flight at exit: the worker's memory is leaked, not freed.
    leak_on_exit: bool,
    /// `force_exit` ran (it already cancelled everything).
    forced_exit: bool,
    last_status_ms: u64,
    /// Completions dispatched, by `OpKind` (for the status line).
    cqes_by_kind: [u64; 16],
}

/// The handler state of `slot`, if it has one (an outbound slot that never opened has none).
/// A free function, not a method, so that it borrows `conns` only and `core` stays free for a
/// `Ctx` beside it.
pub(crate) fn conn_mut<C>(conns: &mut [Option<C>], slot: u32) -> Option<&mut C> {
    conns.get_mut(slot as usize).and_then(Option::as_mut)
}

impl<H: Handler> Worker<H> {
    /// Set up this worker's first ring (the others open on demand), sharing `listener`.
    pub fn new(
        index: usize,
        layout: Arc<Layout>,
        shared: Arc<Shared<H::Msg>>,
        listener: Option<std::os::fd::OwnedFd>,
        handler: H,
    ) -> Result<Worker<H>, EngineError> {
        // One ring to start with; `Core::open_ring` adds more as their tables fill.
        let listener = listener.map(Arc::new);
        let rings = vec![Ring::new(&layout, 0, listener.clone())?];
        let reserved = super::core::reserved_slots(&layout);
        let mut core = Core::new(index, rings, listener, layout, shared);
        core.update_clock();
        let mut w = Worker {
            core,
            handler,
            conns: Vec::with_capacity(reserved),
            cqes: Vec::with_capacity(REAP_BATCH),
            msgs: Vec::new(),
            expired: Vec::new(),
            drain_deadline_ms: None,
            leak_on_exit: false,
            forced_exit: false,
            last_status_ms: 0,
            cqes_by_kind: [0; 16],
        };
        w.arm_wake();
        Ok(w)
    }

    fn arm_wake(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.core.shared.inboxes[self.core.worker]
            .eventfd
            .as_raw_fd();
        let buf: *mut u64 = &mut *self.core.wake_buf;
        let e = opcode::Read::new(types::Fd(fd), buf.cast(), 8)
            .build()
            .user_data(UserData::new(OpKind::Wake, 0, 0).pack());
        // SAFETY: the kernel writes 8 bytes into `wake_buf`, a Box owned by `Core` that lives
        // (at a fixed address) until the worker ends, after its rings are dropped.
        unsafe { self.core.rings[0].push(&e) };
    }

    /// Run until shutdown completes.
    pub fn run(mut self) {
        loop {
            self.core.update_clock();
            if !self.core.shutting_down && self.core.shared.shutdown.load(Ordering::SeqCst) {
                let t = std::time::Instant::now();
                self.begin_shutdown();
                tracing::info!(
                    worker = self.core.worker,
                    took_ms = t.elapsed().as_millis() as u64,
                    "on_shutdown delivered"
                );
            }
            if self.core.shutting_down && self.shutdown_progress() {
                break;
            }
            self.log_status();
            let t0 = std::time::Instant::now();
            let mut reaped = 0;
            for r in 0..self.core.rings.len() {
                reaped += self.reap(r);
            }
            let t_reap = t0.elapsed();
            self.deliver_due();
            self.fire_timers();
            self.deliver_due();
            if self.deliver_flow() {
                self.deliver_due();
            }
            let t_callbacks = t0.elapsed();
            self.core.end_of_turn();
            let t_end = t0.elapsed();
            let mut pending = false;
            for r in 1..self.core.rings.len() {
                let ring = &mut self.core.rings[r];
                ring.submit_pending();
                // The submit may have flushed overflowed completions into this CQ.
                pending |= ring.has_cqes();
            }
            // Completions reaped this turn do not make the worker busy: the wait below
            // submits ring 0's SQEs and returns at once if completions are already there, so a
            // turn costs one `io_uring_enter`, not a submit plus a wait. Only work that no
            // completion will announce (paced queues, a secondary CQ filled by its submit)
            // keeps the loop from waiting.
            let busy = pending || self.core.has_paced_work();
            if busy {
                self.core.rings[0].submit_pending();
            }
            let t_total = t0.elapsed();
            if t_total.as_millis() >= SLOW_TURN_MS {
                // Wall time, so a starved CPU shows up here too.
                tracing::warn!(
                    worker = self.core.worker,
                    total_ms = t_total.as_millis() as u64,
                    reap_ms = t_reap.as_millis() as u64,
                    callbacks_ms = (t_callbacks - t_reap).as_millis() as u64,
                    end_of_turn_ms = (t_end - t_callbacks).as_millis() as u64,
                    submit_ms = (t_total - t_end).as_millis() as u64,
                    reaped,
                    "slow loop turn"
                );
            }
            if busy {
                continue;
            }
            let timeout = self.wait_timeout_ms();
            let t_wait = std::time::Instant::now();
            if let Err(e) = ring::wait(&self.core.rings[0].uring, timeout) {
                tracing::error!(worker = self.core.worker, error = %e, "io_uring wait failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let waited = t_wait.elapsed();
            let asked = timeout.map_or(u128::MAX, u128::from);
            if waited.as_millis() >= asked.saturating_add(SLOW_TURN_MS) {
                // The kernel ran this thread's pending task work (completions) inside the wait.
                tracing::warn!(
                    worker = self.core.worker,
                    waited_ms = waited.as_millis() as u64,
                    timeout_ms = ?timeout,
                    "slow io_uring wait"
                );
            }
        }
        if !self.forced_exit {
            self.cancel_everything();
        }
        tracing::debug!(worker = self.core.worker, "worker stopped");
        if self.leak_on_exit {
            std::mem::forget(self);
        }
    }

    /// Every `STATUS_LOG_MS`, a debug line per ring (queues, overflow, table use, accept state).
    fn log_status(&mut self) {
        if self.core.now_ms < self.last_status_ms + STATUS_LOG_MS {
            return;
        }
        self.last_status_ms = self.core.now_ms;
        for ring in &mut self.core.rings {
            let overflow = ring.uring.completion().overflow();
            let cq = ring.uring.completion().len();
            let sqq = ring.uring.submission();
            let (sq, cq_overflow_flag, taskrun) = (sqq.len(), sqq.cq_overflow(), sqq.taskrun());
            drop(sqq);
            tracing::debug!(
                worker = self.core.worker,
                ring = ring.index,
                sq,
                cq,
                overflow,
                cq_overflow_flag,
                taskrun,
                used = ring.used,
                accept_armed = ring.accept.armed,
                accept_backoff = ring.accept.backoff,
                slots = self.core.slots.len(),
                cqes_by_kind = ?self.cqes_by_kind,
                "ring status"
            );
        }
    }

    fn wait_timeout_ms(&self) -> Option<u64> {
        let now = self.core.now_ms;
        let mut t = self
            .core
            .wheel
            .next_deadline()
            .map(|tick| self.core.ms_of_tick(tick).saturating_sub(now));
        if self.core.rings.iter().any(|r| r.listener.is_some()) {
            // The accept stall check must run while idle too (a stuck accept produces nothing
            // that would wake the worker).
            let due = self.core.stall_check_due_ms.saturating_sub(now);
            t = Some(t.map_or(due, |t| t.min(due)));
        }
        if self.core.shutting_down {
            // Re-check drain progress at least every tick.
            t = Some(t.map_or(self.core.layout.cfg.tick_ms, |t| {
                t.min(self.core.layout.cfg.tick_ms)
            }));
        }
        t
    }

    fn reap(&mut self, r: usize) -> usize {
        self.cqes.clear();
        let ring = &mut self.core.rings[r];
        for cqe in ring.uring.completion().take(REAP_BATCH) {
            self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        if ring.uring.submission().cq_overflow() {
            EngineStats::add(&self.core.shared.stats.cq_overflow_total, 1);
        }
        let n = self.cqes.len();
        for i in 0..n {
            let (ud, res, flags) = self.cqes[i];
            self.dispatch(r, ud, res, flags);
        }
        n
    }

    fn dispatch(&mut self, r: usize, raw: u64, res: i32, flags: u32) {
        let Some(ud) = UserData::unpack(raw) else {
            EngineStats::add(&self.core.shared.stats.stale_completions_total, 1);
            return;
        };
        let more = cqueue::more(flags);
        self.cqes_by_kind[ud.kind as usize] += 1;
        match ud.kind {
            OpKind::Accept => self.on_accept_cqe(ud.slot as usize, ud.gen, res, more),
            OpKind::AcceptCancel => self.core.on_accept_cancel_cqe(ud.slot as usize, res),
            OpKind::RawClose => self.core.rings[ud.slot as usize].release_file(),
            OpKind::RingPoll => {
                // Only a wake-up: every ring is reaped every turn anyway.
                if !more {
                    self.core.arm_ring_poll(ud.slot as usize);
                }
            }
            OpKind::Wake => self.on_wake(),
            OpKind::Nop => {}
            OpKind::Recv
            | OpKind::Send
            | OpKind::Cancel
            | OpKind::Close
            | OpKind::Socket
            | OpKind::Bind
            | OpKind::SockOpt
            | OpKind::PeerName
            | OpKind::Connect => {
                let slot = ud.slot;
                let current = self.core.slots.get(slot as usize).is_some()
                    && ud.is_current(self.core.gens[slot as usize]);
                if !current {
                    EngineStats::add(&self.core.shared.stats.stale_completions_total, 1);
                    // A stale recv still hands us a buffer: give it back.
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        self.core.rings[r].bufs.push(bid);
                    }
                    return;
                }
                match ud.kind {
                    OpKind::Recv => self.on_recv_cqe(slot, res, flags),
                    OpKind::Send => self.core.on_send_cqe(slot, res),
                    OpKind::Cancel => self.core.on_cancel_cqe(slot),
                    OpKind::Close => {
                        let s = &mut self.core.slots[slot as usize];
                        s.inflight -= 1;
                        s.clear(flag::HAS_FILE);
                        let ring = usize::from(s.ring);
                        self.core.rings[ring].release_file();
                    }
                    OpKind::Socket => self.on_socket_cqe(slot, res),
                    OpKind::SockOpt => self.on_sockopt_cqe(slot, res),
                    OpKind::Bind => self.on_bind_cqe(slot, res),
                    OpKind::Connect => self.on_connect_cqe(slot, res),
                    OpKind::PeerName => self.on_peer_cqe(slot, res),
                    _ => unreachable!(),
                }
                self.core.try_free(slot);
            }
        }
    }

    fn on_wake(&mut self) {
        let mut msgs = std::mem::take(&mut self.msgs);
        self.core.shared.inboxes[self.core.worker].drain(&mut msgs);
        self.arm_wake();
        for msg in msgs.drain(..) {
            let mut ctx = Ctx::new(&mut self.core);
            self.handler.on_msg(&mut ctx, msg);
        }
        self.msgs = msgs;
    }

    /// Call `on_open` for a slot that just became open and store the handler's state.
    pub fn open(&mut self, slot: u32, origin: Origin) {
        let id = self.core.id(slot);
        let mut ctx = Ctx::new(&mut self.core);
        let conn = self.handler.on_open(&mut ctx, id, origin);
        if self.conns.len() <= slot as usize {
            self.conns.resize_with(slot as usize + 1, || None);
        }
        self.conns[slot as usize] = Some(conn);
    }

    /// Deliver due `on_close`s and self-posted messages until none are left. Self-posted
    /// messages are taken from the inbox together with whatever other workers queued before
    /// them, in queue order (see `Ctx::post`).
    fn deliver_due(&mut self) {
        loop {
            if let Some((slot, why)) = self.core.closed.pop() {
                self.deliver_close(slot, why);
                continue;
            }
            if !self.core.own_posted {
                break;
            }
            self.core.own_posted = false;
            let mut msgs = std::mem::take(&mut self.msgs);
            self.core.shared.inboxes[self.core.worker].take(&mut msgs);
            for msg in msgs.drain(..) {
                let mut ctx = Ctx::new(&mut self.core);
                self.handler.on_msg(&mut ctx, msg);
            }
            self.msgs = msgs;
        }
    }

    fn deliver_close(&mut self, slot: u32, why: CloseReason) {
        let id = self.core.id(slot);
        let conn = self.conns.get_mut(slot as usize).and_then(Option::take);
        let s = &mut self.core.slots[slot as usize];
        s.set(flag::DELIVERED);
        let never_opened = s.has(flag::NEVER_OPENED);
        let shared = Arc::clone(&self.core.shared);
        let stats = &shared.stats;
        let mut ctx = Ctx::new(&mut self.core);
        match conn {
            Some(conn) => {
                stats.count_close(why);
                stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                self.handler.on_close(&mut ctx, id, conn, why);
            }
            // Accepted, torn down before its peer lookup finished (shutdown): the handler never
            // heard of it.
            None if never_opened => {}
            None => {
                EngineStats::add(&stats.connect_failed_total, 1);
                let errno = match why {
                    CloseReason::Error(e) => e,
                    _ => libc::ECANCELED,
                };
                self.handler.on_connect_failed(&mut ctx, id, errno);
            }
        }
        self.core.try_free(slot);
    }

    fn fire_timers(&mut self) {
        let now_tick = self.core.tick_reached(self.core.now_ms);
        self.expired.clear();
        self.core.wheel.advance(now_tick, &mut self.expired);
        let expired = std::mem::take(&mut self.expired);
        for &key in &expired {
            match self.core.timer_target(key) {
                TimerTarget::Ring(r) => self.core.on_accept_backoff_timer(r),
                TimerTarget::Slot(slot) => self.on_slot_timer(slot),
            }
        }
        self.expired = expired;
    }

    fn on_slot_timer(&mut self, slot: u32) {
        let Some(s) = self.core.slots.get(slot as usize) else {
            return;
        };
        match s.state {
            State::Open => {
                let id = self.core.id(slot);
                let Some(conn) = conn_mut(&mut self.conns, slot) else {
                    return;
                };
                let mut ctx = Ctx::new(&mut self.core);
                self.handler.on_timer(&mut ctx, id, conn);
            }
            State::Closing => self.core.teardown(slot, CloseReason::FlushTimeout),
            State::Connecting => self
                .core
                .teardown(slot, CloseReason::Error(libc::ETIMEDOUT)),
            State::Accepting | State::Dead => {}
        }
    }

    fn begin_shutdown(&mut self) {
        self.core.shutting_down = true;
        self.drain_deadline_ms = Some(self.core.now_ms + self.core.layout.cfg.drain_timeout_ms);
        for r in 0..self.core.rings.len() {
            self.core.maintain_accept(r);
            // Close the listener now (the cancelled accept holds its own reference until its
            // final completion), so new clients are refused instead of waiting in a backlog
            // nobody will accept from.
            self.core.rings[r].listener = None;
        }
        self.core.listener = None;
        let live: Vec<u32> = self
            .core
            .slots
            .iter()
            .filter(|(_, s)| s.state == State::Open)
            .map(|(k, _)| k as u32)
            .collect();
        tracing::info!(
            worker = self.core.worker,
            connections = live.len(),
            "draining"
        );
        for slot in live {
            if self.core.slots[slot as usize].state != State::Open {
                continue;
            }
            let id = self.core.id(slot);
            let Some(conn) = conn_mut(&mut self.conns, slot) else {
                continue;
            };
            let mut ctx = Ctx::new(&mut self.core);
            self.handler.on_shutdown(&mut ctx, id, conn);
            self.deliver_due();
        }
    }

    /// Returns true when the worker may exit.
    fn shutdown_progress(&mut self) -> bool {
        let accepts_done = self.core.rings.iter().all(|r| !r.accept.armed);
        if self.core.slots.is_empty() && accepts_done {
            return true;
        }
        let deadline = self.drain_deadline_ms.unwrap_or(0);
        if self.core.now_ms >= deadline {
            self.force_exit();
            return true;
        }
        false
    }

    /// Synchronously cancel every op still in flight on every ring (`IORING_REGISTER_SYNC_CANCEL`
    /// any, 6.0): the eventfd read, the ring polls, and whatever a forced exit left. Closing a
    /// ring only starts the kernel's asynchronous exit work, during which an op could still
    /// write into memory this worker is about to free (the eventfd read into `wake_buf`, a recv
    /// into a provided buffer). If a cancel fails, the worker's memory is leaked, not freed.
    fn cancel_everything(&mut self) {
        let timeout = types::Timespec::new().sec(1);
        for ring in &self.core.rings {
            let res = ring
                .uring
                .submitter()
                .register_sync_cancel(Some(timeout), types::CancelBuilder::any());
            match res {
                // ENOENT: nothing was in flight.
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    tracing::warn!(ring = ring.index, error = %e, "sync cancel failed; leaking");
                    self.leak_on_exit = true;
                }
            }
        }
    }

    /// The drain deadline passed: end every remaining connection now, without one close per
    /// socket (500,000 cancel+close chains one at a time took over a minute on the test box,
    /// far past the deadline). Each gets `on_close(Shutdown)`. Up to `FORCED_SYNC_CANCEL_MAX`
    /// connections: one synchronous cancel-any per ring (`cancel_everything`) stops every op
    /// still in flight, then unregistering file tables closes the sockets, in this thread, for
    /// `FORCED_CLOSE_BUDGET_MS`. More: the rings are closed and the worker's memory leaked.
    fn force_exit(&mut self) {
        let live: Vec<u32> = self
            .core
            .slots
            .iter()
            .filter(|(_, s)| s.state != State::Dead)
            .map(|(k, _)| k as u32)
            .collect();
        let abandoned = live.len();
        self.forced_exit = true;
        for slot in live {
            self.core.abandon(slot, CloseReason::Shutdown);
        }
        self.deliver_due();
        if abandoned > FORCED_SYNC_CANCEL_MAX {
            // A cancel-any walks the ring's poll table from its start for every op it cancels,
            // so it is quadratic: 6.4-6.8 s for ~75,000 connections per worker, all of it past
            // the deadline. Closing a ring's fd instead cancels everything in one pass, in the
            // kernel's asynchronous exit work, which then closes the sockets. As that work may
            // still write into provided buffers, `wake_buf` or send memory for a while, none of
            // it is freed: the worker's memory is leaked (the process is exiting).
            self.leak_on_exit = true;
            let t = std::time::Instant::now();
            for ring in std::mem::take(&mut self.core.rings) {
                ring.close_leaking_buffers();
            }
            tracing::warn!(
                worker = self.core.worker,
                abandoned,
                close_ms = t.elapsed().as_millis() as u64,
                now_ms = self.core.now_ms,
                deadline_ms = ?self.drain_deadline_ms,
                "drain deadline passed: rings closed, the kernel closes the remaining sockets"
            );
            return;
        }
        let t_cancel = std::time::Instant::now();
        self.cancel_everything();
        let cancel_ms = t_cancel.elapsed().as_millis() as u64;
        // Close the sockets of as many tables as fit in `FORCED_CLOSE_BUDGET_MS`, in this
        // thread, so peers see the close by the time the process exits (left to the kernel's
        // asynchronous ring-exit work, a test client sometimes waited > 5 s for its EOF). Past
        // the budget the rest is left to that exit work: one `tcp_close` per socket took
        // ~20 s for 400,000 sockets on the test box, which kept the process alive far past
        // its drain deadline, and the kernel closes them after exit all the same.
        let t = std::time::Instant::now();
        let mut left_to_kernel = 0;
        for ring in &self.core.rings {
            if t.elapsed().as_millis() >= FORCED_CLOSE_BUDGET_MS {
                left_to_kernel += ring.used;
                continue;
            }
            if let Err(e) = ring.uring.submitter().unregister_files() {
                tracing::warn!(ring = ring.index, error = %e, "unregister_files failed");
            }
        }
        tracing::warn!(
            worker = self.core.worker,
            abandoned,
            left_to_kernel,
            cancel_ms,
            close_ms = t.elapsed().as_millis() as u64,
            now_ms = self.core.now_ms,
            deadline_ms = ?self.drain_deadline_ms,
            "drain deadline passed: remaining connections closed by ring teardown"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::layout;
    use crate::engine::inbox::Inbox;
    use crate::engine::{EngineConfig, Idle};

    fn worker() -> Option<Worker<Idle>> {
        worker_on(None)
    }

    /// One worker with one small ring: the engine every test here runs.
    fn small() -> EngineConfig {
        EngineConfig {
            workers: 1,
            rings_per_worker: 1,
            files_per_ring: 64,
            sq_entries: 16,
            buf_ring_entries: 4,
            ..EngineConfig::default()
        }
    }

    fn worker_on(listener: Option<std::os::fd::OwnedFd>) -> Option<Worker<Idle>> {
        let layout = Arc::new(layout(&small()).unwrap());
        let shared = Arc::new(Shared {
            inboxes: vec![Inbox::new().unwrap()],
            stats: EngineStats::default(),
            shutdown: std::sync::atomic::AtomicBool::new(false),
            clock: std::time::Instant::now(),
            has_bind: false,
        });
        match Worker::new(0, layout, shared, listener, Idle) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                None
            }
        }
    }

    /// Push a no-op whose completion carries `ud`, submit, and reap it through `dispatch`.
    fn inject(w: &mut Worker<Idle>, ud: UserData) {
        let e = opcode::Nop::new().build().user_data(ud.pack());
        // SAFETY: a no-op references no memory.
        unsafe { w.core.rings[0].push(&e) };
        w.core.rings[0].uring.submit_and_wait(1).unwrap();
        assert!(w.reap(0) >= 1);
    }

    #[test]
    fn stale_generation_completion_is_ignored_and_counted() {
        let Some(mut w) = worker() else { return };
        let slot = w.core.insert_slot(0, State::Open);
        let gen = w.core.gens[slot as usize];
        let stale = UserData::new(OpKind::Send, gen.wrapping_add(1), slot);
        inject(&mut w, stale);
        let stats = &w.core.shared.stats;
        assert_eq!(EngineStats::get(&stats.stale_completions_total), 1);
        // The slot was not touched: still open, nothing in flight, nothing closed.
        let s = &w.core.slots[slot as usize];
        assert_eq!((s.state, s.inflight), (State::Open, 0));
        assert!(w.core.closed.is_empty());
        // A completion for a slot that was freed is stale too.
        let freed = UserData::new(OpKind::Recv, 0, 12345);
        inject(&mut w, freed);
        assert_eq!(
            EngineStats::get(&w.core.shared.stats.stale_completions_total),
            2
        );
    }

    #[test]
    fn freed_slot_gets_a_new_generation() {
        let Some(mut w) = worker() else { return };
        let slot = w.core.insert_slot(0, State::Open);
        let old = w.core.id(slot);
        w.core.teardown(slot, CloseReason::Closed);
        w.deliver_due();
        assert!(
            w.core.slots.get(slot as usize).is_none(),
            "no op in flight: freed at once"
        );
        let again = w.core.insert_slot(0, State::Open);
        assert_eq!(again, slot, "slab reuses the index");
        assert_ne!(w.core.id(again), old);
        assert!(w.core.slot_of(old).is_none(), "the old id is stale");
    }

    /// One loop turn without the wait: reap, end of turn, submit.
    fn turn(w: &mut Worker<Idle>) {
        w.core.update_clock();
        w.reap(0);
        w.deliver_due();
        w.core.end_of_turn();
        w.core.rings[0].submit_pending();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    #[test]
    fn stalled_accept_is_detected_and_restarted() {
        let l = layout(&small()).unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let (fds, bound) = crate::engine::accept::bind_listeners(addr, 1, &l).unwrap();
        let Some(mut w) = worker_on(fds.into_iter().next()) else {
            return;
        };
        // The state the capacity run ended in: the engine believes an accept is armed, the
        // kernel has none (here: never armed), and clients queue on the listener.
        w.core.rings[0].accept.armed = true;
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(bound).unwrap())
            .collect();
        turn(&mut w);
        assert_eq!(w.core.rings[0].listener_queue_len(), 3);
        for _ in 0..3 {
            w.core.check_accept_stalls();
            turn(&mut w);
        }
        let shared = Arc::clone(&w.core.shared);
        assert_eq!(EngineStats::get(&shared.stats.accept_stalls_total), 1);
        for _ in 0..10 {
            if EngineStats::get(&shared.stats.accepted_total) == 3 {
                break;
            }
            turn(&mut w);
        }
        assert_eq!(EngineStats::get(&w.core.shared.stats.accepted_total), 3);
        assert_eq!(w.core.rings[0].listener_queue_len(), 0);
        assert!(w.core.rings[0].accept.armed);
        drop(clients);
    }
}
