//! Start-up errors of the engine. Each variant's `Display` is ONE message naming the cause and
//! the fix, so the server can print it and exit. Never raised after start-up: per-connection
//! failures become a [`super::CloseReason`], accept failures a counter and a back-off.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why the engine could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// `io_uring_setup` returned ENOSYS: the kernel has no io_uring (too old, or built without).
    NoIoUring,
    /// `io_uring_setup` returned EPERM: disabled by sysctl or blocked by a seccomp profile.
    IoUringDenied,
    /// The kernel lacks an opcode or feature the engine needs.
    Unsupported {
        feature: &'static str,
        kernel: &'static str,
    },
    /// `files_per_ring` exceeds RLIMIT_NOFILE (the kernel's cap on a registered table).
    FileTable { files_per_ring: u32, nofile: u64 },
    /// Locked memory or kernel memory ran out while setting up rings and buffer rings.
    NoMemory { what: &'static str, err: io::Error },
    /// The listen address could not be bound.
    Bind { addr: SocketAddr, err: io::Error },
    /// An inconsistent configuration value.
    Config(&'static str),
    /// Any other set-up failure, with the step that failed.
    Setup { what: &'static str, err: io::Error },
}

impl EngineError {
    /// Classify an error from `io_uring_setup` (or a register call at start-up).
    pub(crate) fn from_setup(what: &'static str, err: io::Error) -> EngineError {
        match err.raw_os_error() {
            Some(libc::ENOSYS) => EngineError::NoIoUring,
            Some(libc::EPERM) => EngineError::IoUringDenied,
            Some(libc::ENOMEM) => EngineError::NoMemory { what, err },
            _ => EngineError::Setup { what, err },
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::NoIoUring => write!(
                f,
                "io_uring is not available (io_uring_setup: ENOSYS): the kernel is too old or \
                 built without CONFIG_IO_URING; run on Linux >= 6.11"
            ),
            EngineError::IoUringDenied => write!(
                f,
                "io_uring is denied (io_uring_setup: EPERM): it is disabled by the sysctl \
                 kernel.io_uring_disabled or blocked by a seccomp profile (containers); fix with \
                 `sysctl -w kernel.io_uring_disabled=0` or a seccomp profile allowing \
                 io_uring_setup, io_uring_enter and io_uring_register"
            ),
            EngineError::Unsupported { feature, kernel } => write!(
                f,
                "the kernel lacks io_uring {feature} (needs Linux >= {kernel}); upgrade the kernel"
            ),
            EngineError::FileTable {
                files_per_ring,
                nofile,
            } => write!(
                f,
                "files_per_ring {files_per_ring} exceeds RLIMIT_NOFILE {nofile} (the kernel's cap \
                 on a registered file table); lower files_per_ring or raise `ulimit -n`"
            ),
            EngineError::NoMemory { what, err } => write!(
                f,
                "out of memory setting up {what} ({err}); lower sq_entries, buf_ring_entries or \
                 rings_per_worker, raise vm.max_map_count (every ring and buffer ring is a \
                 mapping), or raise `ulimit -l` on kernels before 5.12"
            ),
            EngineError::Bind { addr, err } => write!(
                f,
                "cannot listen on {addr} ({err}); pick a free port or an address of this host"
            ),
            EngineError::Config(what) => write!(f, "invalid engine configuration: {what}"),
            EngineError::Setup { what, err } => {
                write!(
                    f,
                    "io_uring set-up failed at {what} ({err}); check the kernel log"
                )
            }
        }
    }
}

impl std::error::Error for EngineError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_cause_and_fix() {
        let e = EngineError::from_setup("ring", io::Error::from_raw_os_error(libc::EPERM));
        let s = e.to_string();
        assert!(
            s.contains("kernel.io_uring_disabled") && s.contains("seccomp"),
            "{s}"
        );
        let e = EngineError::from_setup("ring", io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(e.to_string().contains("too old"));
        assert!(!e.to_string().contains('\n'));
    }
}
