//! Engine configuration: every size and limit the engine uses, validated once at start-up.
//!
//! Never reads flags or files itself (the server layer does); it only checks consistency and
//! derives the ring layout (`rings_per_worker`, `accept_limit`) in one place:
//! [`EngineConfig::ring_layout`], which start-up and `uringcast doctor` both call.

use std::net::SocketAddr;

use super::EngineError;

/// Sizes, limits and timeouts of the engine. `Default` gives a server on no listener; set
/// `listen`. Zero in `workers`, `rings_per_worker` or `files_per_ring` means "derive it".
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Listen address (one SO_REUSEPORT listener per worker). `None`: client role only.
    pub listen: Option<SocketAddr>,
    /// Worker threads; 0 = number of online CPUs.
    pub workers: usize,
    /// Most rings per worker; 0 = derived from `connections_max`, `workers` and
    /// `files_per_ring`. A worker starts with one and opens the next when the open ones'
    /// tables are full.
    pub rings_per_worker: usize,
    /// Target connection capacity of the process (used only when `rings_per_worker` is 0).
    pub connections_max: usize,
    /// Registered file table size per ring; 0 = RLIMIT_NOFILE (the kernel's cap for a table).
    pub files_per_ring: u32,
    /// Listen backlog per listener. The table keeps `backlog + 16` slots spare (fewer in a table
    /// under 64 entries, see `RingLayout::accept_limit`), because one multishot accept run may
    /// drain the whole backlog before the engine can cancel it.
    pub listen_backlog: u32,
    /// Timer tick in milliseconds (timers fire up to one tick late, never early).
    pub tick_ms: u64,
    /// Longest graceful shutdown before live connections are aborted.
    pub drain_timeout_ms: u64,
    /// Longest `Ctx::close` waits for queued sends before aborting.
    pub close_flush_timeout_ms: u64,
    /// Longest an outbound connect may take.
    pub connect_timeout_ms: u64,
    /// Most unconsumed input kept per connection between `on_data` calls.
    pub leftover_bytes_max: usize,
    /// Most bytes queued for sending on one connection; 0 = unbounded. A `Ctx::send` that
    /// would go past it queues nothing, returns `false` and aborts the connection with
    /// `CloseReason::QueueOverflow`.
    pub send_queue_bytes_max: usize,
    /// Stop reading a connection while its queued bytes are above this (0 = never): no
    /// `on_data`, no recv armed, so the kernel's socket buffer (not ours) holds what the peer
    /// sends. Reading resumes once the queue is at or below it again. Also the `on_drain`
    /// threshold (see `Ctx::notify_drain`).
    pub read_pause_bytes: usize,
    /// Provided buffers each ring starts with (power of two, <= 32768). A loop turn that ends
    /// with receives starved by an empty buffer ring (-ENOBUFS) doubles the ring's buffers, up
    /// to `buf_ring_entries_max`; they are never taken back.
    pub buf_ring_entries: u16,
    /// Most provided buffers per ring (power of two, <= 32768); 0 = derived: one per
    /// `CONNS_PER_BUF_MAX` connections the ring can hold (its accept limit), rounded up to a
    /// power of two, at least `buf_ring_entries`. Address space for all of them is reserved at
    /// start; memory is touched only for buffers actually handed to the kernel.
    pub buf_ring_entries_max: u16,
    /// Size of each provided buffer.
    pub buf_bytes: u32,
    /// Submission queue entries per ring (the completion queue gets 4x).
    pub sq_entries: u32,
    /// Block SIGTERM/SIGINT in all threads and turn them into a graceful shutdown. Tests that run
    /// several engines in one process turn this off and call `EngineHandle::shutdown`.
    pub handle_signals: bool,
    /// With `handle_signals`: also block SIGHUP in all threads and call this, on the signal
    /// thread, each time one arrives (the server reloads its TLS certificate). `None` leaves
    /// SIGHUP alone.
    pub on_hangup: Option<HangupHook>,
}

/// What to run on SIGHUP (see [`EngineConfig::on_hangup`]). Runs on the engine's signal
/// thread, never in signal context and never on a worker.
#[derive(Clone)]
pub struct HangupHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for HangupHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HangupHook")
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: None,
            workers: 0,
            rings_per_worker: 0,
            connections_max: 100_000,
            files_per_ring: 0,
            listen_backlog: 1024,
            tick_ms: 20,
            drain_timeout_ms: 5_000,
            close_flush_timeout_ms: 5_000,
            connect_timeout_ms: 10_000,
            leftover_bytes_max: 64 * 1024,
            send_queue_bytes_max: 0,
            read_pause_bytes: 0,
            buf_ring_entries: 256,
            buf_ring_entries_max: 0,
            buf_bytes: 4096,
            sq_entries: 1024,
            handle_signals: true,
            on_hangup: None,
        }
    }
}

/// Connections per provided buffer at the most (see `EngineConfig::buf_ring_entries_max`).
pub const CONNS_PER_BUF_MAX: u32 = 16;

/// How the engine lays out its rings and tables for one config on one machine; see
/// [`EngineConfig::ring_layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    pub workers: usize,
    pub rings_per_worker: usize,
    /// Entries in each ring's registered file table.
    pub files_per_ring: u32,
    /// Accepted + connecting sockets a ring may hold before its accept is cancelled: the table
    /// minus `backlog + min(16, table / 4)` spare slots (at least one slot stays usable).
    pub accept_limit: u32,
    /// The listen backlog actually used: `listen_backlog` clamped to `1..=max(1, table / 8)`.
    pub backlog: u32,
    /// Memory of one ring's provided buffers: `buf_ring_entries * buf_bytes`.
    pub buf_ring_bytes: usize,
}

impl RingLayout {
    /// Start-up refuses more rings per worker than this (a ring's index is a `u8`).
    pub const RINGS_PER_WORKER_MAX: usize = 255;

    /// Connections the process can hold: every ring full.
    pub fn capacity(&self) -> usize {
        self.workers * self.rings_per_worker * self.accept_limit as usize
    }
}

impl EngineConfig {
    /// The layout start-up derives from this config on a machine whose RLIMIT_NOFILE soft
    /// limit is `nofile_soft` and which has `cpus` online CPUs. Pure arithmetic, so the doctor
    /// can ask about any machine; it does not check the config, start-up does that and refuses
    /// what this would compute for a bad one (a table over the limit or under 4 entries, more
    /// than 256 workers or 255 rings per worker).
    pub fn ring_layout(&self, nofile_soft: u64, cpus: usize) -> RingLayout {
        let workers = if self.workers == 0 {
            cpus.max(1)
        } else {
            self.workers
        };
        let files_per_ring = if self.files_per_ring == 0 {
            file_table_cap(nofile_soft)
        } else {
            self.files_per_ring
        };
        // Keep the backlog well under the table so that a full backlog drained in one multishot
        // run still fits in the spare slots (accepting into a full table loses the connection).
        let backlog = self.listen_backlog.clamp(1, (files_per_ring / 8).max(1));
        let reserve = backlog + 16.min(files_per_ring / 4);
        let accept_limit = files_per_ring - reserve.min(files_per_ring.saturating_sub(1));
        let rings_per_worker = if self.rings_per_worker == 0 {
            let per_worker = self.connections_max.div_ceil(workers).max(1);
            per_worker.div_ceil(accept_limit.max(1) as usize)
        } else {
            self.rings_per_worker
        };
        RingLayout {
            workers,
            rings_per_worker,
            files_per_ring,
            accept_limit,
            backlog,
            buf_ring_bytes: usize::from(self.buf_ring_entries) * self.buf_bytes as usize,
        }
    }
}

/// The largest registered file table the kernel accepts: not over RLIMIT_NOFILE (else EMFILE)
/// nor over 1 << 20 (IORING_MAX_FIXED_FILES).
fn file_table_cap(nofile_soft: u64) -> u32 {
    nofile_soft.min(1 << 20) as u32
}

/// The config with every derived value filled in; what workers actually use.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub cfg: EngineConfig,
    pub workers: usize,
    pub rings_per_worker: usize,
    pub files_per_ring: u32,
    /// Accepted + connecting sockets a ring may hold before its accept is cancelled.
    pub accept_limit: u32,
    pub backlog: u32,
    /// Most provided buffers per ring (`buf_ring_entries_max`, derived if 0).
    pub buf_ring_entries_max: u16,
}

impl Layout {
    pub fn connections_capacity(&self) -> usize {
        self.workers * self.rings_per_worker * self.accept_limit as usize
    }

    /// Queued bytes at or below which a requested `on_drain` is due: `read_pause_bytes`, else
    /// half of `send_queue_bytes_max`, else 0 (an empty queue).
    pub fn drain_bytes(&self) -> usize {
        match (self.cfg.read_pause_bytes, self.cfg.send_queue_bytes_max) {
            (0, max) => max / 2,
            (pause, _) => pause,
        }
    }
}

fn nofile_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc != 0 {
        return 1024;
    }
    rl.rlim_cur
}

pub(crate) fn layout(cfg: &EngineConfig) -> Result<Layout, EngineError> {
    let bad = |what: &'static str| Err(EngineError::Config(what));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let nofile = nofile_limit();
    let ring = cfg.ring_layout(nofile, cpus);
    if ring.workers > 256 {
        return bad("workers must be <= 256");
    }
    if ring.files_per_ring > file_table_cap(nofile) {
        return Err(EngineError::FileTable {
            files_per_ring: ring.files_per_ring,
            nofile,
        });
    }
    if ring.files_per_ring < 4 {
        return bad("files_per_ring must be >= 4");
    }
    if ring.rings_per_worker > RingLayout::RINGS_PER_WORKER_MAX {
        return bad("rings_per_worker must be <= 255");
    }
    if !cfg.buf_ring_entries.is_power_of_two() || cfg.buf_ring_entries > 32768 {
        return bad("buf_ring_entries must be a power of two <= 32768");
    }
    let buf_ring_entries_max = if cfg.buf_ring_entries_max == 0 {
        let per_conns = (ring.accept_limit / CONNS_PER_BUF_MAX).next_power_of_two();
        per_conns.clamp(u32::from(cfg.buf_ring_entries), 32768) as u16
    } else {
        cfg.buf_ring_entries_max
    };
    if !buf_ring_entries_max.is_power_of_two()
        || buf_ring_entries_max > 32768
        || buf_ring_entries_max < cfg.buf_ring_entries
    {
        return bad("buf_ring_entries_max must be a power of two in buf_ring_entries..=32768");
    }
    if cfg.send_queue_bytes_max != 0 && cfg.read_pause_bytes >= cfg.send_queue_bytes_max {
        // Reading would never pause before the bound aborts the connection.
        return bad("read_pause_bytes must be below send_queue_bytes_max");
    }
    if cfg.buf_bytes < 64 {
        return bad("buf_bytes must be >= 64");
    }
    if cfg.tick_ms == 0 || cfg.tick_ms > 1000 {
        return bad("tick_ms must be in 1..=1000");
    }
    if cfg.sq_entries < 8 || cfg.sq_entries > 32768 {
        return bad("sq_entries must be in 8..=32768");
    }
    Ok(Layout {
        cfg: cfg.clone(),
        workers: ring.workers,
        rings_per_worker: ring.rings_per_worker,
        files_per_ring: ring.files_per_ring,
        accept_limit: ring.accept_limit,
        backlog: ring.backlog,
        buf_ring_entries_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_derived_from_connections_max() {
        let cfg = EngineConfig {
            workers: 2,
            files_per_ring: 20_000,
            connections_max: 1_000_000,
            ..EngineConfig::default()
        };
        let l = layout(&cfg).unwrap();
        assert_eq!(l.backlog, 1024);
        assert_eq!(l.accept_limit, 20_000 - 1024 - 16);
        // 18,960 / 16 = 1,185 -> 2,048 buffers at most (8 MiB of 4 KiB buffers per ring).
        assert_eq!(l.buf_ring_entries_max, 2048);
        assert!(l.connections_capacity() >= 1_000_000);
        // The fewest rings that reach the target: one ring fewer would not.
        let per_worker = 500_000;
        assert!((l.rings_per_worker - 1) * (l.accept_limit as usize) < per_worker);
        println!(
            "1M connections on 2 workers: {} rings per worker",
            l.rings_per_worker
        );
    }

    #[test]
    fn tiny_table_keeps_room_for_one_backlog() {
        let cfg = EngineConfig {
            workers: 1,
            rings_per_worker: 1,
            files_per_ring: 16,
            ..EngineConfig::default()
        };
        let l = layout(&cfg).unwrap();
        assert_eq!(l.backlog, 2);
        assert_eq!(l.accept_limit, 16 - 2 - 4);
        // Never below the starting count.
        assert_eq!(l.buf_ring_entries_max, 256);
    }

    /// The pure rule gives what start-up uses, and survives a machine that reports no files.
    #[test]
    fn ring_layout_is_what_start_up_uses() {
        let cfg = EngineConfig {
            workers: 3,
            files_per_ring: 64,
            connections_max: 1_000,
            ..EngineConfig::default()
        };
        let l = layout(&cfg).unwrap();
        let r = cfg.ring_layout(nofile_limit(), 7);
        assert_eq!(
            (l.workers, l.rings_per_worker, l.files_per_ring),
            (r.workers, r.rings_per_worker, r.files_per_ring)
        );
        assert_eq!((l.accept_limit, l.backlog), (r.accept_limit, r.backlog));
        assert_eq!(l.connections_capacity(), r.capacity());
        assert_eq!(r.buf_ring_bytes, 256 * 4096);
        let derived = EngineConfig::default().ring_layout(0, 0);
        assert_eq!((derived.workers, derived.files_per_ring), (1, 0));
        assert_eq!(derived.capacity(), 0);
    }

    #[test]
    fn drain_threshold_follows_pause_then_half_the_bound() {
        // (read_pause_bytes, send_queue_bytes_max) -> drain_bytes
        let table = [
            ((0, 0), Some(0)),
            ((64, 0), Some(64)),
            ((0, 1000), Some(500)),
            ((100, 1000), Some(100)),
            ((1000, 1000), None), // never pauses before the abort: refused
        ];
        for ((pause, max), want) in table {
            let cfg = EngineConfig {
                workers: 1,
                rings_per_worker: 1,
                files_per_ring: 64,
                read_pause_bytes: pause,
                send_queue_bytes_max: max,
                ..EngineConfig::default()
            };
            let got = layout(&cfg).ok().map(|l| l.drain_bytes());
            assert_eq!(got, want, "pause {pause} max {max}");
        }
    }

    #[test]
    fn oversized_table_names_the_limit() {
        let cfg = EngineConfig {
            files_per_ring: u32::MAX,
            ..EngineConfig::default()
        };
        assert!(matches!(layout(&cfg), Err(EngineError::FileTable { .. })));
    }
}
