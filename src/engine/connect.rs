//! Client role (the load generator): an outbound TCP connection held as a direct descriptor.
//!
//! Chain, one op after the other (each needs the previous result): `Socket` into the ring's
//! table with `IORING_FILE_INDEX_ALLOC` (5.19) → if a source address was asked for,
//! `SetSockOpt(IP_BIND_ADDRESS_NO_PORT)` (6.7; on failure we go on) then `Bind` (6.11) →
//! `Connect` on the fixed file. Without `IP_BIND_ADDRESS_NO_PORT`, `bind(ip, 0)` searches the
//! ephemeral range for a port free on *every* destination, linearly: measured here, the client
//! worker spent seconds of system time per 512 binds once ~6,000 sockets shared a source
//! address. With it, the port is picked at connect time by the 4-tuple hash. The addresses live in a boxed `ConnectMem` owned by
//! the slot until the connect completes. No process fd is ever used, so one process can hold far
//! more than RLIMIT_NOFILE outbound connections. Bounded by `connect_timeout_ms`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use io_uring::{opcode, types};
use socket2::SockAddr;

use super::core::Core;
use super::slab::{flag, ConnectMem, OpMem, State};
use super::stats::EngineStats;
use super::user_data::OpKind;
use super::worker::Worker;
use super::{CloseReason, ConnId, Handler, Origin};

fn storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let sa = SockAddr::from(addr);
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = sa.len() as usize;
    // SAFETY: `sa` holds `len <= size_of::<sockaddr_storage>()` initialised bytes and `st` is a
    // distinct, large enough local.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (&mut st as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        )
    };
    (st, sa.len())
}

/// The next op of an outbound connection's chain.
#[derive(Clone, Copy)]
enum Step {
    SockOpt,
    Bind,
    Connect,
}

impl<M> Core<M> {
    /// Start an outbound connection; see `Ctx::connect`.
    pub fn connect(&mut self, addr: SocketAddr, src: Option<IpAddr>) -> io::Result<ConnId> {
        if self.shutting_down {
            return Err(io::Error::from_raw_os_error(libc::ESHUTDOWN));
        }
        if src.is_some() && !self.shared.has_bind {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "binding a source address needs IORING_OP_BIND (Linux 6.11)",
            ));
        }
        let limit = self.layout.accept_limit;
        // The first ring with a free table slot, else a new ring: a small load stays on one
        // ring (see `Core::open_ring`).
        let Some(r) = (0..self.rings.len())
            .find(|&r| self.rings[r].used < limit)
            .or_else(|| self.open_ring())
        else {
            return Err(io::Error::from_raw_os_error(libc::ENFILE));
        };
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let (dst, dst_len) = storage(addr);
        let src = src.map(|ip| storage(SocketAddr::new(ip, 0)));
        let slot = self.insert_slot(r as u8, State::Connecting);
        let ud = self.ud(OpKind::Socket, slot);
        let s = &mut self.slots[slot as usize];
        s.mem = Some(Box::new(OpMem::Connect(ConnectMem {
            dst,
            dst_len,
            src,
            one: 1,
        })));
        s.inflight += 1;
        // The table slot is taken now, so the accept limit also counts connects in progress.
        self.rings[r].take_file();
        let e = opcode::Socket::new(domain, libc::SOCK_STREAM, 0)
            .file_index(Some(types::DestinationSlot::auto_target()))
            .build()
            .user_data(ud);
        // (No SOCK_CLOEXEC: the kernel rejects it with a direct descriptor, EINVAL; a direct
        // descriptor is never inherited anyway.)
        // SAFETY: socket references no user memory.
        unsafe { self.rings[r].push(&e) };
        let deadline = self.now_ms + self.layout.cfg.connect_timeout_ms;
        self.set_slot_timer(slot, deadline);
        Ok(self.id(slot))
    }

    fn connect_mem(&self, slot: u32) -> &ConnectMem {
        match self.slots[slot as usize].mem.as_deref() {
            Some(OpMem::Connect(mem)) => mem,
            _ => unreachable!("connecting slot without ConnectMem"),
        }
    }

    fn push_step(&mut self, slot: u32, step: Step) {
        let mem = self.connect_mem(slot);
        let s = &self.slots[slot as usize];
        let fd = types::Fixed(s.file);
        let e = match (step, &mem.src) {
            (Step::SockOpt, Some(_)) => opcode::SetSockOpt::new(
                fd,
                libc::IPPROTO_IP as u32,
                libc::IP_BIND_ADDRESS_NO_PORT as u32,
                (&mem.one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .user_data(self.ud(OpKind::SockOpt, slot)),
            (Step::Bind, Some((src, len))) => {
                opcode::Bind::new(fd, (src as *const libc::sockaddr_storage).cast(), *len)
                    .build()
                    .user_data(self.ud(OpKind::Bind, slot))
            }
            _ => opcode::Connect::new(
                fd,
                (&mem.dst as *const libc::sockaddr_storage).cast(),
                mem.dst_len,
            )
            .build()
            .user_data(self.ud(OpKind::Connect, slot)),
        };
        let ring = usize::from(s.ring);
        self.slots[slot as usize].inflight += 1;
        // SAFETY: the sockaddrs and the option value live in the boxed `ConnectMem` owned by the
        // slot's `mem`, which is dropped only when the connect completes or the slot is freed
        // (`inflight == 0`).
        unsafe { self.rings[ring].push(&e) };
    }
}

impl<H: Handler> Worker<H> {
    pub fn on_socket_cqe(&mut self, slot: u32, res: i32) {
        let core = &mut self.core;
        let s = &mut core.slots[slot as usize];
        s.inflight -= 1;
        let ring = usize::from(s.ring);
        if res < 0 {
            core.rings[ring].release_file();
            core.teardown(slot, CloseReason::Error(-res));
            return;
        }
        s.file = res as u32;
        s.set(flag::HAS_FILE);
        if s.state == State::Dead {
            // Timed out or closed while the socket was being made: close the descriptor.
            let ud = core.ud(OpKind::Close, slot);
            let e = opcode::Close::new(types::Fixed(res as u32))
                .build()
                .user_data(ud);
            core.slots[slot as usize].inflight += 1;
            // SAFETY: close references no user memory.
            unsafe { core.rings[ring].push(&e) };
            return;
        }
        let step = if core.connect_mem(slot).src.is_some() {
            Step::SockOpt
        } else {
            Step::Connect
        };
        core.push_step(slot, step);
    }

    /// `IP_BIND_ADDRESS_NO_PORT` done. A failure (kernel before 6.7: -EOPNOTSUPP/-EINVAL) only
    /// costs the slow port search, so the bind goes ahead either way.
    pub fn on_sockopt_cqe(&mut self, slot: u32, _res: i32) {
        let s = &mut self.core.slots[slot as usize];
        s.inflight -= 1;
        if s.state != State::Dead {
            self.core.push_step(slot, Step::Bind);
        }
    }

    /// A connect step's completion: the op no longer holds the slot; `true` if the next step
    /// may follow (the slot was not torn down meanwhile and the step succeeded, else torn down).
    fn step_succeeded(&mut self, slot: u32, res: i32) -> bool {
        let s = &mut self.core.slots[slot as usize];
        s.inflight -= 1;
        if s.state == State::Dead {
            return false;
        }
        if res < 0 {
            self.core.teardown(slot, CloseReason::Error(-res));
            return false;
        }
        true
    }

    pub fn on_bind_cqe(&mut self, slot: u32, res: i32) {
        if self.step_succeeded(slot, res) {
            self.core.push_step(slot, Step::Connect);
        }
    }

    pub fn on_connect_cqe(&mut self, slot: u32, res: i32) {
        if !self.step_succeeded(slot, res) {
            return;
        }
        let key = self.core.slot_key(slot);
        let core = &mut self.core;
        let s = &mut core.slots[slot as usize];
        s.state = State::Open;
        if let Some(mem) = s.mem.take() {
            core.recycle_op_mem(mem);
        }
        core.wheel.remove(key);
        core.arm_recv(slot);
        if core.slots[slot as usize].has_queued() {
            core.mark_dirty(slot);
        }
        EngineStats::add(&core.shared.stats.connected_total, 1);
        EngineStats::add(&core.shared.stats.connections_open, 1);
        self.open(slot, Origin::Connected);
    }
}
