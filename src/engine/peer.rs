//! The peer address of an accepted socket, without a process fd: one
//! `getsockopt(SOL_SOCKET, SO_PEERNAME)` on the direct descriptor through
//! `IORING_OP_URING_CMD` + `SOCKET_URING_OP_GETSOCKOPT` (`opcode::GetSockOpt`, 6.7).
//!
//! Why this op (docs/decisions.md "Peer address: SO_PEERNAME through io_uring"): multishot
//! accept has one address buffer for many completions, so it reports none;
//! `SOCKET_URING_OP_GETSOCKNAME` (the peer form of it) is newer than the kernels we run on;
//! `IORING_OP_FIXED_FD_INSTALL` + `getpeername` + `close` costs two syscalls and a transient
//! process fd. `SO_PEERNAME` is `getpeername` spelled as a socket option, and the socket
//! getsockopt command accepts `SOL_SOCKET` options, so one SQE, batched with the turn's other
//! SQEs and completed inline at submit, does the job.
//!
//! Order for an accepted socket: accept CQE → slot `Accepting` (no recv armed, the handler
//! knows nothing) → this op's CQE → slot `Open`, recv armed, `on_open(Accepted { peer })`. The
//! address lives in a boxed `PeerMem` owned by the slot only while the op is in flight; the
//! engine keeps no address per connection.
//!
//! The kernel fills exactly the length asked for and refuses (`-EINVAL`) a length above the
//! family's sockaddr, so the length is the listener's family size (`Ring::peer_len`): an
//! IPv6 listener's sockets answer a `sockaddr_in6` even for IPv4-mapped peers.
//!
//! A failed lookup opens the connection with `peer: None`. `-EOPNOTSUPP`/`-EINVAL` (a kernel
//! before 6.7) turn the lookup off for the worker, logged once; later accepts open at once.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use io_uring::{opcode, types};

use super::core::Core;
use super::slab::{flag, OpMem, PeerMem, State, PEER_BYTES_MAX};
use super::stats::EngineStats;
use super::user_data::OpKind;
use super::worker::Worker;
use super::{Handler, Origin};

impl<M> Core<M> {
    /// Push the `SO_PEERNAME` lookup of the `Accepting` slot `slot`.
    pub fn push_peer_lookup(&mut self, slot: u32) {
        let ud = self.ud(OpKind::PeerName, slot);
        let mut mem = self.take_op_mem();
        *mem = OpMem::Peer(PeerMem {
            buf: [0; PEER_BYTES_MAX],
        });
        let OpMem::Peer(peer) = &mut *mem else {
            unreachable!("set above")
        };
        let s = &mut self.slots[slot as usize];
        let ring = usize::from(s.ring);
        let len = self.rings[ring].peer_len;
        debug_assert!(len as usize <= PEER_BYTES_MAX);
        let e = opcode::GetSockOpt::new(
            types::Fixed(s.file),
            libc::SOL_SOCKET as u32,
            libc::SO_PEERNAME as u32,
            peer.buf.as_mut_ptr().cast(),
            len,
        )
        .build()
        .user_data(ud);
        s.mem = Some(mem);
        s.inflight += 1;
        // SAFETY: the kernel writes at most `len <= PEER_BYTES_MAX` bytes into the `PeerMem`'s
        // `buf`, in a boxed block (its address does not move with the slab) owned by the slot's
        // `mem`, which is taken only at this op's completion or recycled when the slot is freed
        // (`inflight == 0`) or leaked with the worker at a forced exit.
        unsafe { self.rings[ring].push(&e) };
    }
}

impl<H: Handler> Worker<H> {
    /// An accepted socket is ready for the handler: `Open`, recv armed, `on_open`.
    pub fn open_accepted(&mut self, slot: u32, peer: Option<SocketAddr>) {
        let core = &mut self.core;
        let s = &mut core.slots[slot as usize];
        s.state = State::Open;
        s.clear(flag::NEVER_OPENED);
        core.arm_recv(slot);
        EngineStats::add(&core.shared.stats.connections_open, 1);
        self.open(slot, Origin::Accepted { peer });
    }

    /// The `SO_PEERNAME` lookup of slot `slot` completed: `res` is the address length or
    /// -errno.
    pub fn on_peer_cqe(&mut self, slot: u32, res: i32) {
        let core = &mut self.core;
        let s = &mut core.slots[slot as usize];
        s.inflight -= 1;
        let mem = s.mem.take();
        let accepting = s.state == State::Accepting;
        let peer = match (mem.as_deref(), res) {
            (Some(OpMem::Peer(mem)), len) if len >= 0 && accepting => {
                parse_sockaddr(&mem.buf, len as usize)
            }
            _ => None,
        };
        if let Some(mem) = mem {
            core.recycle_op_mem(mem);
        }
        if !accepting {
            // Torn down meanwhile (forced exit): nothing is owed to the handler.
            return;
        }
        if peer.is_none() {
            EngineStats::add(&core.shared.stats.peer_unknown_total, 1);
        }
        if res == -libc::EOPNOTSUPP || res == -libc::EINVAL {
            core.peer_lookup = false;
            tracing::warn!(
                worker = core.worker,
                errno = -res,
                "getsockopt(SO_PEERNAME) through io_uring unsupported (needs Linux 6.7); \
                 accepted connections get no peer address"
            );
        }
        if core.shutting_down {
            core.teardown(slot, super::CloseReason::Shutdown);
            return;
        }
        self.open_accepted(slot, peer);
    }
}

/// A `sockaddr_in` / `sockaddr_in6` of `len` bytes as the kernel lays it out (family in host
/// order, port and address in network order); `None` for anything else.
///
/// ```text
/// sockaddr_in:  | family 2 | port 2 | addr 4 | zero 8 |                          16 bytes
/// sockaddr_in6: | family 2 | port 2 | flowinfo 4 | addr 16 | scope_id 4 |       28 bytes
/// ```
pub(crate) fn parse_sockaddr(buf: &[u8], len: usize) -> Option<SocketAddr> {
    let b = buf.get(..len)?;
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET if len >= 8 => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if len >= PEER_BYTES_MAX => {
            let flowinfo = u32::from_be_bytes(b[4..8].try_into().ok()?);
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            let scope_id = u32::from_ne_bytes(b[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser against the C layout the kernel writes (built with libc's structs).
    #[test]
    fn parses_both_families_and_rejects_short_or_unknown() {
        let v4 = SocketAddr::from(([127, 0, 0, 2], 40_001));
        let v6: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
        for addr in [v4, v6] {
            let sa = socket2::SockAddr::from(addr);
            let len = sa.len() as usize;
            // SAFETY: `sa` holds `len` initialised bytes behind `as_ptr`, alive for the borrow.
            let bytes = unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), len) };
            let mut buf = [0u8; PEER_BYTES_MAX];
            buf[..len].copy_from_slice(bytes);
            assert_eq!(parse_sockaddr(&buf, len), Some(addr));
            assert_eq!(parse_sockaddr(&buf, 3), None, "short");
        }
        assert_eq!(
            parse_sockaddr(&[0u8; PEER_BYTES_MAX], 16),
            None,
            "AF_UNSPEC"
        );
        assert_eq!(parse_sockaddr(&[0u8; 4], 16), None, "len past the buffer");
    }

    /// The kernel cost of one lookup: `SO_PEERNAME` on a registered accepted socket, 64 per
    /// submit (as a busy accept turn batches them). Run with
    /// `cargo test --release --lib peer_lookup_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn peer_lookup_cost() {
        use std::os::fd::AsRawFd;
        let Ok(mut ring) = io_uring::IoUring::new(128) else {
            eprintln!("SKIPPED: io_uring unavailable");
            return;
        };
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        ring.submitter().register_files(&[s.as_raw_fd()]).unwrap();
        let mut buf = [0u8; PEER_BYTES_MAX];
        let (batches, batch) = (20_000u32, 64u32);
        let t = std::time::Instant::now();
        for _ in 0..batches {
            for _ in 0..batch {
                let e = opcode::GetSockOpt::new(
                    types::Fixed(0),
                    libc::SOL_SOCKET as u32,
                    libc::SO_PEERNAME as u32,
                    buf.as_mut_ptr().cast(),
                    16,
                )
                .build();
                // SAFETY: `buf` outlives the op: every op completes before the next batch.
                unsafe { ring.submission().push(&e).unwrap() };
            }
            ring.submit_and_wait(batch as usize).unwrap();
            for cqe in ring.completion() {
                if cqe.result() == -libc::EOPNOTSUPP {
                    eprintln!("SKIPPED: SO_PEERNAME through io_uring needs Linux 6.7");
                    return;
                }
                assert_eq!(cqe.result(), 16);
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(batches * batch);
        println!("SO_PEERNAME via io_uring: {ns:.0} ns per lookup (batches of {batch})");
        assert_eq!(parse_sockaddr(&buf, 16), Some(_c.local_addr().unwrap()));
    }
}
