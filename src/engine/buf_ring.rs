//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19): `entries` buffers of `buf_bytes`
//! each, from which the kernel picks one only when bytes arrive, so an idle connection pins no
//! read buffer.
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
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    entries: u16,
    buf_bytes: u32,
    /// Our tail (entries pushed so far, wrapping); the kernel sees it after `publish`.
    tail: u16,
    published: u16,
}

impl BufRing {
    pub fn new(entries: u16, buf_bytes: u32) -> io::Result<BufRing> {
        assert!(
            entries.is_power_of_two(),
            "buf ring entries must be a power of two"
        );
        let nomem = || io::Error::from_raw_os_error(libc::ENOMEM);
        let ring_layout = Layout::from_size_align(
            usize::from(entries) * std::mem::size_of::<BufRingEntry>(),
            PAGE_BYTES,
        )
        .map_err(|_| nomem())?;
        let bufs_layout =
            Layout::from_size_align(usize::from(entries) * buf_bytes as usize, PAGE_BYTES)
                .map_err(|_| nomem())?;
        // SAFETY: both layouts have non-zero size (entries >= 1, buf_bytes >= 64, checked by
        // config) and a valid power-of-two alignment.
        let ring = unsafe { alloc_zeroed(ring_layout) };
        let ring = NonNull::new(ring.cast::<BufRingEntry>()).ok_or_else(nomem)?;
        // SAFETY: as above.
        let bufs = unsafe { alloc_zeroed(bufs_layout) };
        let Some(bufs) = NonNull::new(bufs) else {
            // SAFETY: `ring` was allocated just above with `ring_layout` and is not used again.
            unsafe { dealloc(ring.as_ptr().cast(), ring_layout) };
            return Err(nomem());
        };
        let mut br = BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            entries,
            buf_bytes,
            tail: 0,
            published: 0,
        };
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        Ok(br)
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
        // SAFETY: both pointers came from `alloc_zeroed` with these layouts; the owning `Ring`
        // dropped its `IoUring` first, so the kernel no longer references them.
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
