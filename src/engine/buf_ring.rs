//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19): up to `entries` buffers of
//! `buf_bytes` each, from which the kernel picks one only when bytes arrive, so an idle
//! connection pins no read buffer.
//!
//! Growth: room for `entries` buffers is allocated (zeroed, so untouched pages stay virtual) but
//! only `added` of them, bids `0..added`, were ever handed to the kernel; `grow` hands over more.
//! Resident memory is therefore `added x buf_bytes`, the most a burst has needed, not `entries x
//! buf_bytes`. `0 < added <= entries`; every bid below `added` is either in the ring or held by
//! the worker (exactly once), so the ring of `entries` slots never overflows.
//!
//! Ownership of buffer `bid`: the kernel's from `push(bid)` + `publish()` until a CQE names it
//! (`IORING_CQE_F_BUFFER`), then the worker's until it pushes it back. The worker hands a buffer
//! to exactly one `on_data` call and pushes it back right after. Never freed while registered:
//! `Ring` declares its `IoUring` before its `BufRing`, so the ring (and registration) goes first.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Page alignment the kernel requires for the ring of entries.
const PAGE_BYTES: usize = 4096;

pub(crate) struct BufRing {
    /// `entries` x 16-byte `io_uring_buf`, page aligned; entry 0's `resv` field is the tail.
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    /// `entries x buf_bytes`, an anonymous private mapping of its own, so pages of buffers never
    /// handed to the kernel are never touched (an allocator could zero recycled memory by hand).
    bufs: NonNull<u8>,
    bufs_len: usize,
    entries: u16,
    buf_bytes: u32,
    /// Buffers ever handed to the kernel (bids `0..added`).
    added: u16,
    /// Our tail (entries pushed so far, wrapping); the kernel sees it after `publish`.
    tail: u16,
    published: u16,
}

impl BufRing {
    /// Room for `entries` buffers, of which the first `initial` are handed to the kernel.
    pub fn new(entries: u16, initial: u16, buf_bytes: u32) -> io::Result<BufRing> {
        assert!(
            entries.is_power_of_two(),
            "buf ring entries must be a power of two"
        );
        assert!(
            (1..=entries).contains(&initial),
            "initial {initial} not in 1..={entries}"
        );
        let nomem = || io::Error::from_raw_os_error(libc::ENOMEM);
        let ring_layout = Layout::from_size_align(
            usize::from(entries) * std::mem::size_of::<BufRingEntry>(),
            PAGE_BYTES,
        )
        .map_err(|_| nomem())?;
        let bufs_len = usize::from(entries) * buf_bytes as usize;
        // SAFETY: the ring layout has non-zero size (entries >= 1) and a power-of-two alignment.
        let ring = unsafe { alloc_zeroed(ring_layout) };
        let ring = NonNull::new(ring.cast::<BufRingEntry>()).ok_or_else(nomem)?;
        // SAFETY: a fresh anonymous mapping (no address hint, no fd); `bufs_len > 0`
        // (buf_bytes >= 64, checked by config). The kernel zero-fills pages on first touch.
        let bufs = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bufs_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        let bufs = (bufs != libc::MAP_FAILED)
            .then(|| NonNull::new(bufs.cast::<u8>()))
            .flatten();
        let Some(bufs) = bufs else {
            let err = io::Error::last_os_error();
            // SAFETY: `ring` was allocated just above with `ring_layout` and is not used again.
            unsafe { dealloc(ring.as_ptr().cast(), ring_layout) };
            return Err(err);
        };
        let mut br = BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_len,
            entries,
            buf_bytes,
            added: initial,
            tail: 0,
            published: 0,
        };
        for bid in 0..initial {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Buffers handed to the kernel so far (in the ring or held by the worker).
    pub fn added(&self) -> u16 {
        self.added
    }

    /// Double the buffers in use (up to `entries`); returns how many were added. Visible to
    /// the kernel after `publish`.
    pub fn grow(&mut self) -> u16 {
        let more = self.added.min(self.entries - self.added);
        for bid in self.added..self.added + more {
            self.push(bid);
        }
        self.added += more;
        more
    }

    /// Register the ring as buffer group `bgid` of `submitter`'s ring.
    pub fn register(&self, submitter: &io_uring::Submitter<'_>, bgid: u16) -> io::Result<()> {
        // SAFETY: the entry array stays allocated and at this address until `self` is dropped,
        // and `Ring` drops its `IoUring` (which drops the registration) before its `BufRing`.
        unsafe {
            submitter.register_buf_ring_with_flags(self.ring.as_ptr() as u64, self.entries, bgid, 0)
        }
    }

    pub fn buf_bytes(&self) -> u32 {
        self.buf_bytes
    }

    /// Give buffer `bid` back to the kernel (visible after `publish`).
    pub fn push(&mut self, bid: u16) {
        debug_assert!(bid < self.entries, "bid {bid} >= entries {}", self.entries);
        let mask = self.entries - 1;
        let idx = usize::from(self.tail & mask);
        // SAFETY: `idx < entries`, so the entry is inside the allocation; the kernel only reads
        // entries between its head and the published tail, and this one is past the published
        // tail (we never push more buffers than exist, so we never overwrite an unread entry).
        let entry = unsafe { &mut *self.ring.as_ptr().add(idx) };
        // SAFETY: `bid < entries`, so the buffer lies inside `bufs`.
        let addr = unsafe {
            self.bufs
                .as_ptr()
                .add(usize::from(bid) * self.buf_bytes as usize)
        };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_bytes);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make pushed buffers visible to the kernel (one release store of the tail).
    pub fn publish(&mut self) {
        if self.tail == self.published {
            return;
        }
        // SAFETY: the ring is allocated and page aligned; `BufRingEntry::tail` returns the
        // address of entry 0's `resv` field, which the kernel reads as the ring tail.
        let tail = unsafe { BufRingEntry::tail(self.ring.as_ptr()) } as *mut u16;
        // SAFETY: `tail` is a valid, 2-byte aligned u16 shared with the kernel, which only reads
        // it; all writes go through atomics (this one), as liburing's io_uring_buf_ring_advance.
        let tail = unsafe { AtomicU16::from_ptr(tail) };
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
    }

    /// Address of buffer `bid` (`buf_bytes` long). Reading or writing it is the caller's
    /// business: only between the CQE that hands `bid` over and the `push(bid)` that returns it.
    pub fn buf_ptr(&self, bid: u16) -> *mut u8 {
        assert!(bid < self.entries, "bid {bid} >= entries {}", self.entries);
        // SAFETY: `bid < entries`, so the offset stays inside the `bufs` allocation.
        unsafe {
            self.bufs
                .as_ptr()
                .add(usize::from(bid) * self.buf_bytes as usize)
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: `ring` came from `alloc_zeroed` with `ring_layout` and `bufs` from `mmap` of
        // `bufs_len` bytes; the owning `Ring` dropped its `IoUring` first, so the kernel no
        // longer references either.
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            libc::munmap(self.bufs.as_ptr().cast(), self.bufs_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_doubling_up_to_entries() {
        let mut br = BufRing::new(16, 2, 64).unwrap();
        let mut seen = vec![br.added()];
        while br.grow() > 0 {
            seen.push(br.added());
        }
        assert_eq!(seen, [2, 4, 8, 16]);
        // Every bid below `added` went into the ring exactly once: the tail counts them.
        assert_eq!(br.tail, 16);
        br.publish();
        assert_eq!(br.published, 16);
    }
}
