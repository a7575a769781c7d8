//! `Ctx`: what a handler may ask of the engine during a callback. Borrows only the engine side
//! of the worker (`Core`), never the handler's connection states, so it can act on any
//! connection, including the one whose `&mut Conn` the handler holds.
//!
//! Every method taking a `ConnId` is a no-op (or returns `false`/0) for a stale or closed id.
//! Effects that need a callback (`on_close` after `abort`, `on_msg` for a post to self) run after
//! the current callback returns; sends are submitted at the end of the loop turn, so several
//! `send` calls in one turn go out in one sendmsg.

use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::core::Core;
use super::slab::{flag, State};
use super::stats::EngineStats;
use super::{CloseReason, ConnId, EngineStats as Stats, Handler};

/// The engine, as seen from inside a handler callback.
pub struct Ctx<'a, H: Handler> {
    core: &'a mut Core<H::Msg>,
    _handler: PhantomData<fn(H)>,
}

impl<'a, H: Handler> Ctx<'a, H> {
    pub(crate) fn new(core: &'a mut Core<H::Msg>) -> Self {
        Ctx {
            core,
            _handler: PhantomData,
        }
    }

    /// Milliseconds since the engine started (monotonic, same origin on all workers), cached
    /// once per loop turn.
    pub fn now_ms(&self) -> u64 {
        self.core.now_ms
    }

    /// Queue `buf` (shared, not copied). Returns `false` if `id` is stale or closing. A send
    /// queued while an outbound connection is still connecting goes out once it opens.
    ///
    /// With `send_queue_bytes_max` set, a send that would take the queue past it queues nothing,
    /// returns `false` and aborts the connection (`on_close(QueueOverflow)` follows after this
    /// callback; for an outbound connection still connecting, `on_connect_failed(ECANCELED)`).
    /// Past `read_pause_bytes`, reading pauses until the queue drains to it.
    pub fn send(&mut self, id: ConnId, buf: Bytes) -> bool {
        let max = self.core.layout.cfg.send_queue_bytes_max;
        let Some(s) = self.core.slot_of_mut(id) else {
            return false;
        };
        if !s.is_live() {
            return false;
        }
        if buf.is_empty() {
            return true;
        }
        if max != 0 && s.queued + buf.len() > max {
            self.core.teardown(id.slot, CloseReason::QueueOverflow);
            return false;
        }
        s.queued += buf.len();
        if s.sendq.is_none() {
            let q = self.core.take_sendq();
            self.core.slots[id.slot as usize].sendq = Some(q);
        }
        let s = &mut self.core.slots[id.slot as usize];
        s.sendq.as_mut().expect("set above").push_back(buf);
        if s.state == State::Open {
            self.core.mark_dirty(id.slot);
        }
        self.core.after_queue_grew(id.slot);
        true
    }

    /// Ask for one [`Handler::on_drain`] once `id`'s queued bytes are at or below the drain
    /// threshold: `read_pause_bytes`, else half of `send_queue_bytes_max`, else 0 (queue empty).
    /// If they already are, the call comes after the current callback (this loop turn or the
    /// next), never from inside this call. Several requests before the call make one call. No
    /// call for a connection that is closing or closed (`on_close` comes instead).
    pub fn notify_drain(&mut self, id: ConnId) {
        self.core.notify_drain(id);
    }

    /// Call `on_data` for `id` once more after the current callback, with the input it left
    /// unconsumed (possibly none), unless reading is paused (the resume re-delivers it then).
    /// For a handler that stopped taking input while waiting for something outside the
    /// connection (an answer from another thread), and now can go on: no new bytes may come,
    /// because the peer waits for that answer.
    pub fn redeliver(&mut self, id: ConnId) {
        if self
            .core
            .slot_of(id)
            .is_some_and(|s| s.state == State::Open && !s.has(flag::READ_PAUSED))
        {
            self.core.resumed.push(id);
        }
    }

    /// Whether the engine has stopped reading `id` because its queue is above
    /// `read_pause_bytes` (see `flow.rs`). A handler looping over input already received
    /// should stop taking more requests then: each may queue another answer.
    pub fn read_paused(&self, id: ConnId) -> bool {
        self.core
            .slot_of(id)
            .is_some_and(|s| s.has(flag::READ_PAUSED))
    }

    /// Bytes queued on `id` and not yet acknowledged as sent by the kernel (0 if stale).
    pub fn queued_bytes(&self, id: ConnId) -> usize {
        self.core.slot_of(id).map_or(0, |s| s.queued)
    }

    /// Flush queued sends, then close (bounded by `close_flush_timeout_ms`, then aborted with
    /// `FlushTimeout`). Input arriving meanwhile is discarded; the handler's timer is replaced.
    pub fn close(&mut self, id: ConnId) {
        let Some(s) = self.core.slot_of(id) else {
            return;
        };
        match s.state {
            State::Open if s.has_queued() => {
                self.core.slots[id.slot as usize].state = State::Closing;
                let deadline = self.core.now_ms + self.core.layout.cfg.close_flush_timeout_ms;
                self.core.set_slot_timer(id.slot, deadline);
            }
            State::Closing => {}
            _ => self.core.teardown(id.slot, CloseReason::Closed),
        }
    }

    /// Close now, dropping whatever is queued. `on_close(Closed)` follows after this callback.
    pub fn abort(&mut self, id: ConnId) {
        if self.core.slot_of(id).is_some() {
            self.core.teardown(id.slot, CloseReason::Closed);
        }
    }

    /// Arm (or move) the connection's single timer to fire `on_timer` at or after
    /// `deadline_ms` (in `now_ms` time, up to one tick late).
    pub fn set_timer(&mut self, id: ConnId, deadline_ms: u64) {
        if self
            .core
            .slot_of(id)
            .is_some_and(|s| s.state == State::Open)
        {
            self.core.set_slot_timer(id.slot, deadline_ms);
        }
    }

    pub fn cancel_timer(&mut self, id: ConnId) {
        if self
            .core
            .slot_of(id)
            .is_some_and(|s| s.state == State::Open)
        {
            let key = self.core.slot_key(id.slot);
            self.core.wheel.remove(key);
        }
    }

    pub fn worker_index(&self) -> usize {
        self.core.worker
    }

    pub fn workers(&self) -> usize {
        self.core.shared.inboxes.len()
    }

    /// Deliver `msg` to `on_msg` of worker `worker` (this one included; then after the current
    /// callback, with no syscall). Wakes of another worker are batched.
    ///
    /// Order: every worker's inbox is one FIFO, and a post to this worker goes into the same
    /// FIFO as posts from other workers. So messages posted to every worker under one lock
    /// hold each (as the hub's publish does) reach each worker in one and the same order.
    pub fn post(&mut self, worker: usize, msg: H::Msg) {
        let shared = &self.core.shared;
        EngineStats::add(&shared.stats.posted_total, 1);
        if worker == self.core.worker {
            shared.inboxes[worker].post_own(msg);
            self.core.own_posted = true;
        } else if shared.inboxes[worker].post(msg) {
            EngineStats::add(&shared.stats.wakes_total, 1);
        }
    }

    /// Open an outbound TCP connection to `addr`, from source address `src` if given (port
    /// chosen by the kernel). `on_open(Connected)` follows on success, `on_connect_failed` on
    /// failure. Errors now only when no table slot is free (ENFILE), during shutdown, or when
    /// `src` needs IORING_OP_BIND and the kernel lacks it.
    pub fn connect(&mut self, addr: SocketAddr, src: Option<IpAddr>) -> io::Result<ConnId> {
        self.core.connect(addr, src)
    }

    pub fn stats(&self) -> &Stats {
        self.core.stats()
    }

    /// Whether `id` is current and not closing.
    pub fn is_open(&self, id: ConnId) -> bool {
        self.core
            .slot_of(id)
            .is_some_and(|s| s.state == State::Open && !s.has(flag::DELIVERED))
    }
}
