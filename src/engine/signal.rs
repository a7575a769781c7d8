//! SIGTERM/SIGINT → graceful shutdown, and SIGHUP → a hook (when one is given). The signals
//! are blocked in the thread that starts the engine before any worker is spawned (workers
//! inherit the mask), and one thread takes them with `sigtimedwait`, then flips the shutdown
//! flag and wakes every worker, or runs the hangup hook. Never installs a signal handler, so no
//! code runs in signal context.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::config::HangupHook;

fn signal_set(hangup: bool) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if hangup {
            libc::sigaddset(&mut set, libc::SIGHUP);
        }
        set
    }
}

/// Block SIGTERM and SIGINT (and SIGHUP if `hangup`) in the calling thread (and so in threads
/// it spawns later).
pub(crate) fn block_signals(hangup: bool) {
    let set = signal_set(hangup);
    // SAFETY: `set` is a valid sigset; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Spawn the thread that waits for SIGTERM/SIGINT (and SIGHUP with a hook) until `stop` is set.
pub(crate) fn spawn_waiter(
    on_signal: impl Fn() + Send + 'static,
    on_hangup: Option<HangupHook>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("uringcast-signals".into())
        .spawn(move || {
            let set = signal_set(on_hangup.is_some());
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
                } else if sig == libc::SIGHUP {
                    if let Some(hook) = &on_hangup {
                        tracing::info!("SIGHUP received");
                        (hook.0)();
                    }
                }
            }
        })
}
