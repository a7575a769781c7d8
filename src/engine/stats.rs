//! Process-wide engine counters (atomics, relaxed): read by `/metrics`, written by workers.
//!
//! Never used for control flow; a counter may lag a little behind the state it counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Accept failure classes, each with its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptErrorKind {
    /// EMFILE: process fd limit (should not happen with direct descriptors).
    ProcessFds,
    /// ENFILE: system file limit, or the ring's registered table was full.
    TableFull,
    /// ENOBUFS / ENOMEM: kernel memory.
    Memory,
    /// Anything else (ECONNABORTED, EPERM from a firewall, ...).
    Other,
}

impl AcceptErrorKind {
    pub(crate) fn from_errno(errno: i32) -> AcceptErrorKind {
        match errno {
            libc::EMFILE => AcceptErrorKind::ProcessFds,
            libc::ENFILE => AcceptErrorKind::TableFull,
            libc::ENOBUFS | libc::ENOMEM => AcceptErrorKind::Memory,
            _ => AcceptErrorKind::Other,
        }
    }

    pub const ALL: [AcceptErrorKind; 4] = [
        AcceptErrorKind::ProcessFds,
        AcceptErrorKind::TableFull,
        AcceptErrorKind::Memory,
        AcceptErrorKind::Other,
    ];

    /// Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            AcceptErrorKind::ProcessFds => "emfile",
            AcceptErrorKind::TableFull => "enfile",
            AcceptErrorKind::Memory => "nomem",
            AcceptErrorKind::Other => "other",
        }
    }
}

/// Counters of one engine (all workers). Cheap to read at any time.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub connections_open: AtomicU64,
    pub accepted_total: AtomicU64,
    pub connected_total: AtomicU64,
    pub connect_failed_total: AtomicU64,
    accept_errors: [AtomicU64; 4],
    pub closed_peer_total: AtomicU64,
    pub closed_error_total: AtomicU64,
    pub closed_local_total: AtomicU64,
    pub closed_timeout_total: AtomicU64,
    pub closed_overflow_total: AtomicU64,
    pub closed_shutdown_total: AtomicU64,
    /// Aborted by a send past `send_queue_bytes_max` (`CloseReason::QueueOverflow`).
    pub closed_queue_overflow_total: AtomicU64,
    /// Times a connection's reading was paused (queued bytes above `read_pause_bytes`).
    pub read_paused_total: AtomicU64,
    /// Bytes a recv delivered after reading paused (before its cancel landed), held in
    /// `leftover` for the resume.
    pub read_held_bytes_total: AtomicU64,
    /// Completions whose generation no longer matched their slot (ignored).
    pub stale_completions_total: AtomicU64,
    /// Multishot recv ended by an empty buffer ring (re-armed, not an error).
    pub recv_nobufs_total: AtomicU64,
    /// Provided buffers handed to the kernel, all rings, start-up and growth included (times
    /// `buf_bytes`: the read buffer memory in use).
    pub recv_buffers_added_total: AtomicU64,
    /// Accepted connections opened with no peer address (the `SO_PEERNAME` lookup failed or
    /// is unsupported).
    pub peer_unknown_total: AtomicU64,
    /// Accept cancelled because a ring's table reached its accept limit.
    pub accept_paused_total: AtomicU64,
    /// Accepts found armed but not accepting a queued listener, and restarted.
    pub accept_stalls_total: AtomicU64,
    pub bytes_received_total: AtomicU64,
    pub bytes_sent_total: AtomicU64,
    /// Messages posted between workers (or from other threads).
    pub posted_total: AtomicU64,
    /// Eventfd writes made to wake a worker (<= posted_total: wakes are batched).
    pub wakes_total: AtomicU64,
    /// io_uring instances open, all workers (each worker starts with one and opens another
    /// only when its open rings' file tables are full; see `Core::open_ring`).
    pub rings_open: AtomicU64,
    /// Reaps that found a ring's completion queue overflowed: completions parked in the
    /// kernel's overflow list (a kernel allocation each) until an enter flushes them.
    pub cq_overflow_total: AtomicU64,
}

impl EngineStats {
    pub fn accept_errors(&self, kind: AcceptErrorKind) -> u64 {
        self.accept_errors[kind as usize].load(Relaxed)
    }

    pub(crate) fn count_accept_error(&self, kind: AcceptErrorKind) {
        self.accept_errors[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_close(&self, why: super::CloseReason) {
        use super::CloseReason::*;
        let c = match why {
            PeerClosed => &self.closed_peer_total,
            Error(_) => &self.closed_error_total,
            Closed => &self.closed_local_total,
            FlushTimeout => &self.closed_timeout_total,
            LeftoverOverflow => &self.closed_overflow_total,
            Shutdown => &self.closed_shutdown_total,
            QueueOverflow => &self.closed_queue_overflow_total,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}
