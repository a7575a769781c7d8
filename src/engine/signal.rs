//! SIGTERM/SIGINT → graceful shutdown. The signals are blocked in the thread that starts the
//! engine before any worker is spawned (workers inherit the mask), and one thread takes them
//! with `sigtimedwait`, flips the shutdown flag and wakes every worker. Never installs a signal
//! handler, so no code runs in signal context.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn term_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Block SIGTERM and SIGINT in the calling thread (and so in threads it spawns later).
pub(crate) fn block_term_signals() {
    let set = term_set();
    // SAFETY: `set` is a valid sigset; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Spawn the thread that waits for SIGTERM/SIGINT until `stop` is set.
pub(crate) fn spawn_waiter(
    on_signal: impl Fn() + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("uringcast-signals".into())
        .spawn(move || {
            let set = term_set();
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            while !stop.load(Ordering::SeqCst) {
                // SAFETY: valid sigset and timespec; a null siginfo pointer is allowed.
                let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
                if sig == libc::SIGTERM || sig == libc::SIGINT {
                    tracing::info!(signal = sig, "shutdown signal received");
                    on_signal();
                }
            }
        })
}
