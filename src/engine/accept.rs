//! Accept path: one SO_REUSEPORT listener per worker and a multishot accept (`AcceptMulti`,
//! 5.19) straight into a ring's sparse table (`IORING_FILE_INDEX_ALLOC`), so a socket never
//! takes a process fd. One ring of the worker accepts at a time (`Core::accepting`): the lowest
//! one with room once the current one is full, opening a new ring when none has room, so a
//! small load stays on one ring. An accepted socket waits in `State::Accepting` for its peer
//! address lookup (`peer.rs`) before the handler hears of it.
//!
//! Table discipline (accepting into a full table loses the connection): the accept is cancelled
//! when `used` reaches `accept_limit`, which leaves `backlog + 16` slots spare (fewer in a
//! table under 64 entries: `RingLayout::accept_limit`) for what one multishot run can still
//! accept before the cancel lands. The accept then moves to the lowest ring with room, or a new
//! one; a full ring that is still the accepting one (no other ring can be opened) re-arms at
//! the end of the loop turn in which a close brought `used` back under the limit. Accept
//! errors (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...) are counted, logged at most once a second per
//! ring, and back off 10 ms doubling to 1 s via the ring's wheel timer; never a busy loop,
//! never a crash.
//!
//! Stall check (every `STALL_CHECK_MS`, also while idle): a ring whose accept we believe armed,
//! whose listener has connections queued and which saw no accept completion for two checks in a
//! row is stuck (the capacity run saw 41 of 54 listeners so, with no error and no pause
//! counted). It is logged with its state, counted in `accept_stalls_total`, and its accept is
//! cancelled; a cancel that finds nothing (-ENOENT) means no accept was armed at all, so the
//! ring re-arms a fresh one under a new accept generation (a late final completion of the old
//! one then cannot clear the new one's `armed`). A ring paused at its table limit with clients
//! queued is audited instead: if its slots hold far fewer sockets than `used` says, a warning
//! names both numbers (a leaked `used` would look exactly like a full table).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use io_uring::opcode;
use socket2::{Domain, Protocol, Socket, Type};

use super::config::Layout;
use super::core::Core;
use super::slab::{flag, State};
use super::stats::{AcceptErrorKind, EngineStats};
use super::user_data::{OpKind, UserData};
use super::worker::Worker;
use super::{EngineError, Handler};

const BACKOFF_MS_MIN: u64 = 10;
const BACKOFF_MS_MAX: u64 = 1000;
const LOG_INTERVAL_MS: u64 = 1000;
/// Period of the accept stall check (and the longest a server worker sleeps).
const STALL_CHECK_MS: u64 = 1000;
/// Checks in a row that must see a stall before the accept is restarted.
const STALL_STRIKES: u8 = 2;

/// Bind `count` SO_REUSEPORT listeners on `addr` (one per worker; the first resolves port 0
/// for the others).
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    layout: &Layout,
) -> Result<(Vec<OwnedFd>, SocketAddr), EngineError> {
    let mut out = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let sock =
            listener(bound, layout.backlog).map_err(|err| EngineError::Bind { addr, err })?;
        if bound.port() == 0 {
            bound =
                sock.local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .ok_or(EngineError::Bind {
                        addr,
                        err: std::io::Error::other("listener has no local address"),
                    })?;
        }
        out.push(OwnedFd::from(sock));
    }
    Ok((out, bound))
}

fn listener(addr: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog as i32)?;
    Ok(sock)
}

impl<M> Core<M> {
    /// Move the accept to another ring once the accepting one is full: the lowest-index ring
    /// with room, else a newly opened one. Not before: switching back as soon as a full ring
    /// frees a slot would cancel and re-arm accepts at every close near the limit.
    pub fn choose_accepting_ring(&mut self) {
        let limit = self.layout.accept_limit;
        if self.shutting_down || self.rings[self.accepting].used < limit {
            return;
        }
        if self.rings[self.accepting].listener.is_none() {
            return;
        }
        if let Some(r) = (0..self.rings.len()).find(|&r| self.rings[r].used < limit) {
            self.accepting = r;
        } else if let Some(r) = self.open_ring() {
            self.accepting = r;
        }
    }

    /// Arm or cancel ring `r`'s accept to match its table occupancy and whether it is the
    /// accepting ring; called every loop turn.
    pub fn maintain_accept(&mut self, r: usize) {
        let limit = self.layout.accept_limit;
        let shutting_down = self.shutting_down;
        let accepting = self.accepting == r;
        let ring = &mut self.rings[r];
        if ring.listener.is_none() {
            return;
        }
        let a = &ring.accept;
        let want = !shutting_down && !a.backoff && accepting && ring.used < limit;
        if want && !a.armed && !a.cancelling {
            let ud = UserData::new(OpKind::Accept, a.gen, r as u32).pack();
            ring.arm_accept(ud);
        } else if !want && a.armed && !a.cancelling {
            // Counted like the pause in `on_accept_cqe`: a pause that no counter shows made the
            // capacity run's stall unreadable.
            EngineStats::add(&self.shared.stats.accept_paused_total, 1);
            self.cancel_accept(r);
        }
    }

    /// Run the stall check if it is due (`stall_check_due_ms`); called every loop turn.
    pub fn maybe_check_accept_stalls(&mut self) {
        if self.now_ms >= self.stall_check_due_ms {
            self.stall_check_due_ms = self.now_ms + STALL_CHECK_MS;
            self.check_accept_stalls();
        }
    }

    /// The stall check of every ring (see the module doc).
    pub fn check_accept_stalls(&mut self) {
        for r in 0..self.rings.len() {
            let shutting_down = self.shutting_down;
            let ring = &mut self.rings[r];
            let a = &ring.accept;
            if ring.listener.is_none() || shutting_down || a.backoff || a.cancelling {
                ring.accept.stall_strikes = 0;
                continue;
            }
            let queued = ring.listener_queue_len();
            let a = &mut ring.accept;
            let progressed = a.seen != a.seen_at_check;
            a.seen_at_check = a.seen;
            if queued > 0 && !a.armed && ring.used >= self.layout.accept_limit {
                self.audit_full_table(r, queued);
                continue;
            }
            if queued == 0 || progressed || !a.armed {
                a.stall_strikes = 0;
                continue;
            }
            a.stall_strikes += 1;
            if a.stall_strikes < STALL_STRIKES {
                continue;
            }
            a.stall_strikes = 0;
            tracing::warn!(
                worker = self.worker,
                ring = r,
                queued,
                used = ring.used,
                accept_limit = self.layout.accept_limit,
                accept_gen = a.gen,
                accepts_seen = a.seen,
                "accept armed but not accepting a queued listener; restarting it"
            );
            EngineStats::add(&self.shared.stats.accept_stalls_total, 1);
            ring.accept.stall_cancel = true;
            self.cancel_accept(r);
        }
    }

    /// Ring `r` is paused at its limit with clients waiting: check that `used` matches the
    /// sockets its slots hold. A `used` that leaked (a `Close` completion lost or taken as
    /// stale) keeps the accept paused for good and looks like a full table; this says so.
    /// Logs only: correcting `used` from a count that might miss an op in flight could make
    /// the accept install into a full table, which loses connections.
    fn audit_full_table(&mut self, r: usize, queued: u32) {
        let a = &mut self.rings[r].accept;
        a.stall_strikes += 1;
        if a.stall_strikes < STALL_STRIKES {
            return;
        }
        a.stall_strikes = 0;
        // O(slots), at most every other check, and only in this state.
        let held = self
            .slots
            .iter()
            .filter(|(_, s)| {
                usize::from(s.ring) == r && (s.has(flag::HAS_FILE) || s.state == State::Connecting)
            })
            .count();
        let used = self.rings[r].used as usize;
        // Closes in flight are still counted in `used`; more than a turn's worth of them is not
        // explained by timing.
        if used > held + self.layout.backlog as usize + 16 {
            tracing::warn!(
                worker = self.worker,
                ring = r,
                queued,
                used,
                held,
                "accept paused at the table limit, but the ring's slots hold far fewer sockets"
            );
        }
    }

    fn cancel_accept(&mut self, r: usize) {
        let gen = self.rings[r].accept.gen;
        let target = UserData::new(OpKind::Accept, gen, r as u32).pack();
        let ud = UserData::new(OpKind::AcceptCancel, 0, r as u32).pack();
        let e = opcode::AsyncCancel::new(target).build().user_data(ud);
        let ring = &mut self.rings[r];
        ring.accept.cancelling = true;
        // SAFETY: a cancel by user_data references no user memory.
        unsafe { ring.push(&e) };
    }

    pub fn on_accept_cancel_cqe(&mut self, r: usize, res: i32) {
        // -ENOENT (already finished) and -EALREADY (finishing) are fine: the accept's own final
        // CQE clears `armed`. Except after a stall: then -ENOENT says the accept we believed
        // armed does not exist, and no final CQE will come.
        let a = &mut self.rings[r].accept;
        a.cancelling = false;
        if std::mem::take(&mut a.stall_cancel) && res == -libc::ENOENT && a.armed {
            a.armed = false;
            a.gen = (a.gen + 1) & super::user_data::GEN_MASK;
        }
    }

    /// The ring's back-off timer fired: allow re-arming.
    pub fn on_accept_backoff_timer(&mut self, r: usize) {
        self.rings[r].accept.backoff = false;
    }

    fn accept_failed(&mut self, r: usize, errno: i32, more: bool) {
        let kind = AcceptErrorKind::from_errno(errno);
        self.shared.stats.count_accept_error(kind);
        let now = self.now_ms;
        let ring = &mut self.rings[r];
        let a = &mut ring.accept;
        a.backoff_ms = (a.backoff_ms * 2).clamp(BACKOFF_MS_MIN, BACKOFF_MS_MAX);
        a.backoff = true;
        if now >= a.last_log_ms + LOG_INTERVAL_MS || a.last_log_ms == 0 {
            tracing::warn!(
                worker = self.worker,
                ring = r,
                errno,
                kind = kind.label(),
                suppressed = a.suppressed_logs,
                backoff_ms = a.backoff_ms,
                "accept failed; backing off"
            );
            a.last_log_ms = now.max(1);
            a.suppressed_logs = 0;
        } else {
            a.suppressed_logs += 1;
        }
        let deadline = now + a.backoff_ms;
        if more && !a.cancelling {
            self.cancel_accept(r);
        }
        let tick = self.tick_at_or_after(deadline);
        self.wheel.insert(r as u32, tick);
    }
}

impl<H: Handler> Worker<H> {
    /// A multishot accept completion on ring `r`: `res` is the new fixed file index or -errno.
    /// `gen` is the accept generation it was armed with; a socket from an older accept is
    /// served all the same, but only the current accept's final CQE clears `armed`.
    pub fn on_accept_cqe(&mut self, r: usize, gen: u32, res: i32, more: bool) {
        let core = &mut self.core;
        let a = &mut core.rings[r].accept;
        a.seen += 1;
        let current = gen == a.gen;
        if !more && current {
            a.armed = false;
        }
        if !current && res < 0 {
            return;
        }
        if res < 0 {
            if res != -libc::ECANCELED {
                core.accept_failed(r, -res, more);
            }
            return;
        }
        let file = res as u32;
        let ring = &mut core.rings[r];
        ring.take_file();
        ring.accept.backoff_ms = 0;
        if ring.used >= core.layout.accept_limit && ring.accept.armed && !ring.accept.cancelling {
            EngineStats::add(&core.shared.stats.accept_paused_total, 1);
            core.cancel_accept(r);
        }
        if core.shutting_down {
            core.raw_close(r, file);
            return;
        }
        let slot = core.insert_slot(r as u8, State::Accepting);
        let s = &mut core.slots[slot as usize];
        s.file = file;
        s.set(flag::HAS_FILE | flag::NEVER_OPENED);
        EngineStats::add(&core.shared.stats.accepted_total, 1);
        if core.peer_lookup {
            // `on_open` follows the lookup's completion (`peer.rs`).
            core.push_peer_lookup(slot);
        } else {
            self.open_accepted(slot, None);
        }
    }
}
