//! One io_uring instance of a worker: its SQ/CQ, its sparse registered file table, its provided
//! buffer ring and (server role) a share of the worker's SO_REUSEPORT listener, with a
//! multishot accept while it is the worker's accepting ring.
//!
//! A worker may drive several rings because a registered file table may not exceed
//! RLIMIT_NOFILE (20,000 here): it starts with one and opens the next only when the open ones'
//! tables are full (`Core::open_ring`). Ring 0 waits, and holds a multishot poll on every
//! other ring's fd, so a completion on any ring wakes the worker. The worker's one listener is
//! shared by its rings; only one ring at a time accepts from it. This module sets rings up and
//! pushes SQEs; it never interprets a completion (the worker does).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, IoUring};

use super::buf_ring::BufRing;
use super::config::Layout;
use super::EngineError;

/// Buffer group id of each ring's provided buffer ring (group ids are per ring).
pub(crate) const BGID: u16 = 0;

/// Accept state of a ring (server role).
#[derive(Debug, Default)]
pub(crate) struct AcceptState {
    /// A multishot accept is in flight (its final CQE has not arrived).
    pub armed: bool,
    /// An `AsyncCancel` of the accept is in flight.
    pub cancelling: bool,
    /// Backing off after an accept error until the ring's timer fires.
    pub backoff: bool,
    pub backoff_ms: u64,
    /// Rate limit for accept error logs.
    pub last_log_ms: u64,
    pub suppressed_logs: u64,
    /// Generation of the current multishot accept (in its `user_data`): a final CQE of an
    /// older one, given up on by the stall check, must not clear `armed` of the new one.
    pub gen: u32,
    /// Accept completions seen (for the stall check).
    pub seen: u64,
    /// `seen` at the previous stall check.
    pub seen_at_check: u64,
    /// Consecutive stall checks that found connections queued on the listener, the accept
    /// armed, and no accept completion since the check before.
    pub stall_strikes: u8,
    /// The cancel in flight was sent by the stall check: -ENOENT means no accept is armed.
    pub stall_cancel: bool,
}

pub(crate) struct Ring {
    // Field order matters: the `IoUring` (and with it the buffer ring registration) must be
    // dropped before `bufs` frees the memory the kernel may still read.
    pub uring: IoUring,
    pub bufs: BufRing,
    /// The worker's listener (server role), shared by all its rings; dropped by every ring
    /// at shutdown, which closes it.
    pub listener: Option<Arc<OwnedFd>>,
    pub accept: AcceptState,
    /// Table slots in use: accepted or created sockets whose `Close` has not completed.
    /// Changed only through `take_file` / `release_file`.
    pub used: u32,
    pub index: u8,
    /// Length of the listener family's sockaddr (16 for IPv4, 28 for IPv6): what
    /// `SO_PEERNAME` of an accepted socket must be asked for (`peer.rs`).
    pub peer_len: u32,
}

impl Ring {
    /// Set up ring `index`: the ring, a sparse table of `files_per_ring`, the buffer ring.
    pub fn new(
        layout: &Layout,
        index: u8,
        listener: Option<Arc<OwnedFd>>,
    ) -> Result<Ring, EngineError> {
        let cfg = &layout.cfg;
        let build = |defer: bool| {
            let mut builder = IoUring::builder();
            builder
                .setup_cqsize(cfg.sq_entries * 4)
                .setup_submit_all()
                // Completions' task work runs at our next io_uring_enter instead of
                // interrupting the thread (TWA_SIGNAL + IPI per wake-up); TASKRUN_FLAG tells us
                // when an enter is needed (`submit_pending` checks it). Each ring is created and
                // driven by one thread only. See docs/decisions.md "Ring flags".
                .setup_taskrun_flag()
                .setup_single_issuer();
            if defer {
                builder.setup_defer_taskrun();
            } else {
                builder.setup_coop_taskrun();
            }
            builder.build(cfg.sq_entries)
        };
        // Ring 0 is the one the worker waits on, so its task work may wait for our GETEVENTS
        // enters (DEFER_TASKRUN, 6.1; 6.0 refuses it with EINVAL and gets COOP_TASKRUN); the
        // others are watched through a poll of their fd, which deferred work does not make
        // readable.
        let uring = match build(index == 0) {
            Err(e) if index == 0 && e.raw_os_error() == Some(libc::EINVAL) => build(false),
            other => other,
        }
        .map_err(|e| EngineError::from_setup("io_uring_setup", e))?;
        uring
            .submitter()
            .register_files_sparse(layout.files_per_ring)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => EngineError::Unsupported {
                    feature: "sparse registered file tables",
                    kernel: "5.19",
                },
                Some(libc::EMFILE) => EngineError::FileTable {
                    files_per_ring: layout.files_per_ring,
                    nofile: 0,
                },
                _ => EngineError::from_setup("register_files_sparse", e),
            })?;
        let bufs = BufRing::new(
            layout.buf_ring_entries_max,
            cfg.buf_ring_entries,
            cfg.buf_bytes,
        )
        .map_err(|e| EngineError::from_setup("provided buffer ring", e))?;
        bufs.register(&uring.submitter(), BGID)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => EngineError::Unsupported {
                    feature: "provided buffer rings",
                    kernel: "5.19",
                },
                _ => EngineError::from_setup("register_buf_ring", e),
            })?;
        let peer_len = match listener.as_deref().map(socket2::SockRef::from) {
            Some(l) if l.local_addr().is_ok_and(|a| a.is_ipv6()) => {
                std::mem::size_of::<libc::sockaddr_in6>() as u32
            }
            _ => std::mem::size_of::<libc::sockaddr_in>() as u32,
        };
        Ok(Ring {
            uring,
            bufs,
            listener,
            peer_len,
            accept: AcceptState::default(),
            used: 0,
            index,
        })
    }

    /// Close the ring's fd (the kernel's exit work cancels every op and closes the table's
    /// sockets, asynchronously) and leak the provided buffers, which that work may still write.
    pub fn close_leaking_buffers(self) {
        let Ring { uring, bufs, .. } = self;
        drop(uring);
        std::mem::forget(bufs);
    }

    /// Push one SQE, submitting to make room when the SQ is full.
    ///
    /// # Safety
    /// Every pointer in `entry` (buffers, iovecs, msghdr, sockaddr) must stay valid until the
    /// op's final CQE arrives.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) {
        self.reserve(1);
        // SAFETY: the caller keeps the op's memory valid until its CQE; `reserve` made room.
        let pushed = unsafe { self.uring.submission().push(entry) };
        debug_assert!(pushed.is_ok(), "SQ full after reserve");
    }

    /// Push SQEs that must reach the kernel in the same submission (a linked chain).
    ///
    /// # Safety
    /// As [`Ring::push`], for every entry.
    pub unsafe fn push_chain<'e>(
        &mut self,
        n: usize,
        entries: impl Iterator<Item = &'e squeue::Entry>,
    ) {
        self.reserve(n);
        let mut sq = self.uring.submission();
        for e in entries.take(n) {
            // SAFETY: forwarded from the caller; `reserve` made room for all of them, so a
            // link is never split across two submissions.
            let pushed = unsafe { sq.push(e) };
            debug_assert!(pushed.is_ok(), "SQ full after reserve");
        }
    }

    /// Make room for `n` SQEs by submitting what is queued.
    fn reserve(&mut self, n: usize) {
        loop {
            let sq = self.uring.submission();
            if sq.capacity() - sq.len() >= n {
                return;
            }
            drop(sq);
            match self.uring.submit() {
                Ok(_) => {}
                // EBUSY/EAGAIN: the kernel holds overflowed completions or lacks memory; the
                // entries stay queued and the next loop turn reaps and retries. Yield briefly
                // rather than spin.
                Err(e) => {
                    tracing::warn!(ring = self.index, error = %e, "submit failed while SQ full");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }

    /// Submit queued SQEs without waiting. Also enters when completions overflowed the CQ:
    /// with IORING_FEAT_NODROP the kernel parks them in a list that only an `io_uring_enter`
    /// with GETEVENTS (which `submit` adds when IORING_SQ_CQ_OVERFLOW is set) moves back into
    /// the CQ. Missing this left a secondary ring's cancels and closes parked for good (a
    /// 60,000-connection drain stalled). No syscall when there is nothing to do.
    pub fn submit_pending(&mut self) {
        let sq = self.uring.submission();
        if sq.is_empty() && !sq.cq_overflow() && !sq.taskrun() {
            return;
        }
        drop(sq);
        if let Err(e) = self.uring.submit() {
            if !matches!(
                e.raw_os_error(),
                Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
            ) {
                tracing::warn!(ring = self.index, error = %e, "submit failed");
            }
        }
    }

    /// A table slot was taken (accepted or created socket).
    pub fn take_file(&mut self) {
        self.used += 1;
    }

    /// A table slot was freed (its `Close` completed). An underflow would wrap `used` to ~2^32,
    /// which keeps the accept cancelled for good with no error counted; so it saturates, and
    /// debug builds stop on it.
    pub fn release_file(&mut self) {
        debug_assert!(self.used > 0, "ring {}: used underflow", self.index);
        if self.used == 0 {
            tracing::error!(
                ring = self.index,
                "table slot released twice (used already 0)"
            );
        }
        self.used = self.used.saturating_sub(1);
    }

    /// Connections waiting in the listener's accept queue (`tcpi_unacked` of a listening
    /// socket is its accept backlog), or 0 when unknown.
    pub fn listener_queue_len(&self) -> u32 {
        let Some(fd) = self.listener.as_ref().map(|l| l.as_raw_fd()) else {
            return 0;
        };
        // SAFETY: tcp_info is a plain C struct; all-zero is valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` is a writable tcp_info of `len` bytes, alive for the call; `fd` is our
        // listener, open while `self.listener` holds it.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return 0;
        }
        info.tcpi_unacked
    }

    /// Whether completions are waiting in the CQ.
    pub fn has_cqes(&mut self) -> bool {
        !self.uring.completion().is_empty()
    }

    /// Arm the multishot accept (`AcceptMulti`, 5.19) into the sparse table.
    pub fn arm_accept(&mut self, user_data: u64) {
        self.accept.stall_strikes = 0;
        let Some(fd) = self.listener.as_ref().map(|l| l.as_raw_fd()) else {
            return;
        };
        let e = opcode::AcceptMulti::new(io_uring::types::Fd(fd))
            .allocate_file_index(true)
            .build()
            .user_data(user_data);
        // SAFETY: multishot accept into a direct descriptor passes no user memory.
        unsafe { self.push(&e) };
        self.accept.armed = true;
    }
}

/// Which opcodes this kernel supports, probed once at start-up.
pub(crate) struct Features {
    pub bind: bool,
}

/// Check that io_uring works and has what the engine needs; the error names cause and fix.
pub(crate) fn probe() -> Result<Features, EngineError> {
    let ring = IoUring::new(4).map_err(|e| EngineError::from_setup("io_uring_setup", e))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| EngineError::from_setup("register_probe", e))?;
    let need: [(u8, &'static str, &'static str); 8] = [
        (opcode::AcceptMulti::CODE, "accept", "5.19"),
        (opcode::RecvMulti::CODE, "recv", "6.0"),
        (opcode::SendMsg::CODE, "sendmsg", "5.3"),
        (opcode::AsyncCancel2::CODE, "async cancel", "5.19"),
        (opcode::Close::CODE, "close", "5.19"),
        (
            opcode::Socket::CODE,
            "socket with direct descriptors",
            "5.19",
        ),
        (opcode::Connect::CODE, "connect", "5.5"),
        // The opcode table does not say whether multishot recv exists; SEND_ZC arrived in the
        // same release (6.0), so its presence stands in for RecvMulti.
        (opcode::SendZc::CODE, "multishot recv", "6.0"),
    ];
    for (code, feature, kernel) in need {
        if !probe.is_supported(code) {
            return Err(EngineError::Unsupported { feature, kernel });
        }
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(EngineError::Unsupported {
            feature: "IORING_FEAT_EXT_ARG wait timeouts",
            kernel: "5.11",
        });
    }
    Ok(Features {
        bind: probe.is_supported(opcode::Bind::CODE),
    })
}

/// `IoUring::submit_with_args` wait that treats a timeout or a signal as a normal wake-up.
pub(crate) fn wait(ring: &IoUring, timeout_ms: Option<u64>) -> io::Result<()> {
    let res = match timeout_ms {
        Some(ms) => {
            let ts = io_uring::types::Timespec::new()
                .sec(ms / 1000)
                .nsec(((ms % 1000) * 1_000_000) as u32);
            let args = io_uring::types::SubmitArgs::new().timespec(&ts);
            ring.submitter().submit_with_args(1, &args)
        }
        None => ring.submit_and_wait(1),
    };
    match res {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use io_uring::{opcode, IoUring};

    /// Kernel behaviour the loop depends on: with the CQ full, completions overflow into the
    /// kernel's list (IORING_FEAT_NODROP), IORING_SQ_CQ_OVERFLOW is raised, and `submit` still
    /// consumes SQEs (`reserve` relies on that to make room).
    #[test]
    fn submit_consumes_sqes_while_the_cq_overflows() {
        let Ok(mut ring) = IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder()
            .setup_cqsize(16)
            .build(8)
        else {
            eprintln!("SKIPPED: io_uring unavailable");
            return;
        };
        let mut submitted = 0;
        for round in 0..8 {
            for _ in 0..8 {
                let e = opcode::Nop::new().build().user_data(round);
                // SAFETY: a no-op references no memory.
                unsafe { ring.submission().push(&e).unwrap() };
            }
            let n = ring.submit().unwrap();
            println!(
                "round {round}: submitted {n}, overflow flag {}",
                ring.submission().cq_overflow()
            );
            submitted += n;
        }
        assert_eq!(submitted, 64);
        assert!(ring.submission().cq_overflow());
        let mut reaped = 0;
        for _ in 0..10 {
            reaped += ring.completion().count();
            ring.submit().unwrap(); // flushes the overflow list into the CQ
        }
        assert_eq!(reaped, 64, "every overflowed completion comes back");
    }
}
