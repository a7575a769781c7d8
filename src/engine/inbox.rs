//! Cross-thread messages to a worker: a per-worker inbox (`Mutex<Vec>` swapped out whole) plus
//! an eventfd whose read is armed in the worker's main ring.
//!
//! Wake batching: `armed == true` means "an eventfd write is outstanding whose completion the
//! worker has not handled yet". A poster writes the eventfd only when it flips `armed` from
//! false to true, so a burst of posts to a busy worker costs one syscall. The worker, on the
//! eventfd completion, stores `armed = false` *before* swapping the queue out, so a message
//! pushed after the swap is always followed by a fresh write. Never blocks on the worker.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::stats::EngineStats;

pub(crate) struct Inbox<M> {
    queue: Mutex<Vec<M>>,
    armed: AtomicBool,
    pub eventfd: OwnedFd,
}

impl<M> Inbox<M> {
    pub fn new() -> std::io::Result<Inbox<M>> {
        // SAFETY: plain syscall; the returned fd is checked and then owned by `OwnedFd`.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            armed: AtomicBool::new(false),
            // SAFETY: `fd` is a fresh descriptor owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Queue `msg`; returns whether this call woke the worker (wrote the eventfd).
    pub fn post(&self, msg: M) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
        if self.armed.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.kick();
        true
    }

    /// Queue `msg` from the worker's own thread: no wake, the worker drains its inbox after
    /// the current callback (see `Worker::deliver_due`). Going through the same queue as
    /// other workers' posts is what keeps one order: messages pushed under a common lock
    /// (the hub's) are drained in the order they were pushed, whoever pushed them.
    pub fn post_own(&self, msg: M) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
    }

    /// Write the eventfd unconditionally (shutdown uses this).
    pub fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A failure (EAGAIN: the
        // counter is saturated) means a wake is pending anyway.
        let _ = unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Worker side, on the eventfd completion: re-enable wakes, then take everything queued.
    pub fn drain(&self, into: &mut Vec<M>) {
        self.armed.store(false, Ordering::SeqCst);
        self.take(into);
    }

    /// Worker side, after its own `post_own`: take everything queued, wakes untouched (an
    /// outstanding eventfd write then finds an empty or shorter queue, which is harmless).
    pub fn take(&self, into: &mut Vec<M>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if into.is_empty() {
            std::mem::swap(&mut *q, into);
        } else {
            into.append(&mut q);
        }
    }
}

/// State shared by all workers and handles of one engine.
pub(crate) struct Shared<M> {
    pub inboxes: Vec<Inbox<M>>,
    pub stats: EngineStats,
    pub shutdown: AtomicBool,
    /// Origin of every worker's `now_ms`, so deadlines compare across workers.
    pub clock: Instant,
    pub has_bind: bool,
}

impl<M> Shared<M> {
    pub fn begin_shutdown(&self) {
        if !self.shutdown.swap(true, Ordering::SeqCst) {
            for inbox in &self.inboxes {
                inbox.kick();
            }
        }
    }
}

/// A clonable, `Send` handle to a running engine, usable from any thread.
pub struct EngineHandle<M> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M> Clone for EngineHandle<M> {
    fn clone(&self) -> Self {
        EngineHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Send + 'static> EngineHandle<M> {
    /// Deliver `msg` to `Handler::on_msg` on worker `worker`. Batched: a busy worker is woken
    /// once per burst, not once per message. A message posted after the engine stopped is
    /// dropped.
    ///
    /// # Panics
    /// If `worker >= workers()`.
    pub fn post(&self, worker: usize, msg: M) {
        let shared = &self.shared;
        EngineStats::add(&shared.stats.posted_total, 1);
        if shared.inboxes[worker].post(msg) {
            EngineStats::add(&shared.stats.wakes_total, 1);
        }
    }

    /// Begin a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    pub fn workers(&self) -> usize {
        self.shared.inboxes.len()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_are_batched_until_drained() {
        let inbox = Inbox::new().unwrap();
        assert!(inbox.post(1));
        assert!(!inbox.post(2));
        assert!(!inbox.post(3));
        let mut got = Vec::new();
        inbox.drain(&mut got);
        assert_eq!(got, [1, 2, 3]);
        assert!(inbox.post(4), "a post after the drain must wake again");
    }
}
