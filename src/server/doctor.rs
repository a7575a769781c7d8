//! `uringcast doctor`: how many connections this box can hold right now, what bounds that
//! number, and the fix for each bound.
//!
//! Split in two so the arithmetic is testable without the machine: [`Facts::read`] reads the box
//! (`/proc`, `getrlimit`, capabilities) and, unless told not to, sets up every ring the
//! configuration may open, on every worker at once, with file tables and buffer rings of the
//! configured size (the server opens all but the first only as tables fill, so a box that cannot
//! hold them would otherwise fail under load) to learn that io_uring works and what capacity
//! start-up reports; [`diagnose`] is a pure function from facts and config to a
//! [`Diagnosis`]. The doctor never listens on a port, never changes a limit or a sysctl (that
//! is `tuning/sysctl.sh apply`), and always exits 0 once it has printed (only a bad flag exits
//! 2).
//!
//! Memory figures per connection are the ones measured by the capacity experiment
//! (`tuning/capacity.sh`, see `docs/capacity.md`); re-measure them when the engine changes.

use serde::Serialize;
use std::fmt::Write as _;

use super::config::Config;
use crate::engine::{Engine, EngineConfig};

/// Server userspace bytes per idle held connection (slab slot, timer node, `Conn`, WebSocket
/// session, subscription, and the provided buffers of the rings they fill), measured as the
/// server's RSS slope between 100,000 and 200,000 idle connections, half SSE and half
/// WebSocket, by `tuning/idle_memory.sh` on Linux 6.18: 302 B, of which 63 B are provided
/// buffers (docs/capacity.md "Memory per idle connection"); rounded up.
pub const SERVER_BYTES_PER_CONNECTION: u64 = 320;
/// What TLS adds per idle connection (`tls_cert` set): server RSS per held connection over TLS
/// minus plain, 8.0-8.4 KB at 10,000 held (`bench/tls.sh`, docs/benchmarks.md "TLS");
/// the larger.
pub const TLS_BYTES_PER_CONNECTION: u64 = 8_400;

/// Server bytes per idle connection under `config`.
pub fn server_bytes_per_connection(config: &Config) -> u64 {
    match config.tls_cert {
        Some(_) => SERVER_BYTES_PER_CONNECTION + TLS_BYTES_PER_CONNECTION,
        None => SERVER_BYTES_PER_CONNECTION,
    }
}
/// Kernel bytes per idle TCP socket end with its armed multishot recv (TCP slab,
/// sock_inode_cache, dentry, filp, io_uring request), measured by `tuning/capacity.sh` as
/// `Slab:` growth / TCP sockets growth: 4.4-4.7 KB at 200k-400k connections; rounded up.
pub const KERNEL_BYTES_PER_SOCKET_END: u64 = 4_700;
/// The engine refuses more rings than this per worker.
const RINGS_PER_WORKER_MAX: u64 = crate::engine::RingLayout::RINGS_PER_WORKER_MAX as u64;
/// Bit of CAP_SYS_RESOURCE in `CapEff` (linux/capability.h).
const CAP_SYS_RESOURCE_BIT: u32 = 24;

/// What the doctor reads from the box. Every field is plain data so tests can build one.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub cap_sys_resource: bool,
    /// `fs.nr_open`: the ceiling for RLIMIT_NOFILE.
    pub nr_open: u64,
    /// `fs.file-max` and the files allocated now (first field of `fs.file-nr`).
    pub file_max: u64,
    pub files_allocated: u64,
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: (u64, u64),
    pub somaxconn: u64,
    /// `net.netfilter.nf_conntrack_max` and `nf_conntrack_count`; `None` when conntrack is not
    /// loaded (then it tracks nothing and bounds nothing).
    pub conntrack: Option<(u64, u64)>,
    /// `net.ipv4.tcp_ehash_entries`: buckets of the hash every TCP segment looks its socket up
    /// in (negative in a namespace that shares the initial one's). `None` before Linux 6.1.
    pub ehash_entries: Option<i64>,
    /// `net.ipv4.tcp_mem` in pages: low, pressure, high.
    pub tcp_mem_pages: [u64; 3],
    pub page_bytes: u64,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    /// `kernel.io_uring_disabled`: 0 allowed, 1 restricted to `io_uring_group`, 2 disabled;
    /// `None` when the key does not exist (kernels before 6.6).
    pub io_uring_disabled: Option<u64>,
    pub cpus: u64,
    /// Result of setting up every ring the configuration may open (`probe_rings`):
    /// `Ok(capacity)` or the engine's error message.
    /// `None` when the probe was skipped (`--no-probe`).
    pub probe: Option<Result<u64, String>>,
    /// What a bare `io_uring_setup` (a two-entry ring) answered: `Ok(())` or the errno.
    /// `None` when the probe was skipped (`--no-probe`).
    pub io_uring_setup: Option<Result<(), i32>>,
    /// The process runs under a seccomp filter (`Seccomp: 2` in /proc/self/status).
    pub seccomp_filter: bool,
    /// The container runtime this process seems to run in (`docker`, `podman`, `kubernetes`,
    /// or what the `container` variable says); `None` when there is no sign of one.
    pub container: Option<String>,
}

/// How a container user lets io_uring through a seccomp filter: the profile shipped in
/// `deploy/` (Docker's default profile plus the three io_uring calls).
pub const SECCOMP_FIX: &str = "allow io_uring_setup, io_uring_enter and io_uring_register in the \
    filter: docker/podman run --security-opt seccomp=deploy/seccomp-io_uring.json; Kubernetes: \
    securityContext.seccompProfile {type: Localhost, localhostProfile: <that file on the node>}; \
    systemd: SystemCallFilter= must list them";

/// The io_uring row of the report: whether this process may use io_uring at all, and if not,
/// what blocks it and the fix. Pure: decided from the sysctl, the setup probe's errno, the
/// seccomp state and the container signs.
pub fn io_uring_access(facts: &Facts) -> Bound {
    let disabled = facts.io_uring_disabled;
    let sysctl = disabled.map_or("absent".to_owned(), |v| v.to_string());
    let blocked = |value: String, fix: String| Bound {
        name: "io_uring",
        value,
        connections: Some(0),
        status: "limit",
        fix,
    };
    let in_container = facts
        .container
        .as_deref()
        .map_or(String::new(), |c| format!(" (in a {c} container)"));
    match facts.io_uring_setup {
        Some(Err(errno)) if errno == libc::EPERM => match disabled {
            Some(2) => blocked(
                "io_uring_setup: EPERM; kernel.io_uring_disabled = 2: io_uring is off for \
                 every process"
                    .to_owned(),
                "sysctl -w kernel.io_uring_disabled=0 on the host (a security policy: the \
                 administrator's call; a container cannot change it)"
                    .to_owned(),
            ),
            Some(1) => blocked(
                "io_uring_setup: EPERM; kernel.io_uring_disabled = 1: only members of \
                 kernel.io_uring_group and CAP_SYS_ADMIN may use it"
                    .to_owned(),
                "run as a member of the group kernel.io_uring_group names, or sysctl -w \
                 kernel.io_uring_disabled=0 on the host"
                    .to_owned(),
            ),
            _ if facts.seccomp_filter => blocked(
                format!(
                    "io_uring_setup: EPERM under a seccomp filter{in_container}: the filter \
                     blocks io_uring (Docker >= 25 and containerd 2 default profiles do)"
                ),
                SECCOMP_FIX.to_owned(),
            ),
            _ => blocked(
                format!(
                    "io_uring_setup: EPERM with kernel.io_uring_disabled = {sysctl} and no \
                     seccomp filter: a security module denies it"
                ),
                "check the LSM policy (SELinux io_uring class, AppArmor) for this process"
                    .to_owned(),
            ),
        },
        Some(Err(errno)) if errno == libc::ENOSYS => {
            if facts.seccomp_filter {
                blocked(
                    format!(
                        "io_uring_setup: ENOSYS under a seccomp filter{in_container}: the \
                         filter blocks io_uring, or the kernel lacks it"
                    ),
                    format!("{SECCOMP_FIX}; if it persists, the kernel lacks io_uring (see below)"),
                )
            } else {
                blocked(
                    "io_uring_setup: ENOSYS: the kernel has no io_uring (too old, or built \
                     without CONFIG_IO_URING)"
                        .to_owned(),
                    "run on a kernel with io_uring: Linux >= 6.0 (README)".to_owned(),
                )
            }
        }
        Some(Err(errno)) => blocked(
            format!(
                "io_uring_setup failed: {}",
                std::io::Error::from_raw_os_error(errno)
            ),
            if errno == libc::ENOMEM {
                "raise RLIMIT_MEMLOCK (ulimit -l; kernels before 5.12 charge rings to it)"
                    .to_owned()
            } else {
                "see the error; the kernel log may say more".to_owned()
            },
        ),
        // io_uring_setup works (or was not tried): the sysctl and the engine's own start judge.
        setup => match (disabled, &facts.probe) {
            (_, Some(Err(e))) => blocked(format!("rings failed to start: {e}"), e.clone()),
            (Some(2), _) => blocked(
                "kernel.io_uring_disabled = 2 (disabled)".to_owned(),
                "sysctl -w kernel.io_uring_disabled=0 (security policy: the administrator's \
                 call)"
                    .to_owned(),
            ),
            (Some(1), probe) if setup.is_none() && probe.is_none() => blocked(
                "kernel.io_uring_disabled = 1 (only io_uring_group or CAP_SYS_ADMIN), not \
                 probed"
                    .to_owned(),
                "run as a member of kernel.io_uring_group, or sysctl -w \
                 kernel.io_uring_disabled=0"
                    .to_owned(),
            ),
            (_, probe) => Bound {
                name: "io_uring",
                value: format!(
                    "kernel.io_uring_disabled = {sysctl}{}",
                    if probe.is_some() || setup.is_some() {
                        ", rings started"
                    } else {
                        ", not probed"
                    }
                ),
                connections: None,
                status: "ok",
                fix: "none needed".to_owned(),
            },
        },
    }
}

/// One row of the report: a limit, its value, how many connections it allows, and the fix.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Bound {
    /// Short name (`file table`, `memory`, `fs.file-max`, ...).
    pub name: &'static str,
    /// The value as read, in words.
    pub value: String,
    /// Connections this limit allows the server; `None` when it does not cap a count (a rate,
    /// a limit of the clients' side, or a ceiling on another limit).
    pub connections: Option<u64>,
    /// `ok`, `warn` (fine for holding, not for a storm or a co-located client), or `limit`
    /// (this row is the bottleneck).
    pub status: &'static str,
    /// What to do to move it.
    pub fix: String,
}

/// The engine's ring layout for a config, as the report prints it: the engine's own answer
/// ([`EngineConfig::ring_layout`]), checked against a real start by `tests/doctor.rs`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct RingLayout {
    pub workers: u64,
    pub rings_per_worker: u64,
    pub files_per_ring: u64,
    /// Connections one ring accepts (its table minus the spare slots for one accept backlog).
    pub accept_limit: u64,
}

impl RingLayout {
    pub fn capacity(&self) -> u64 {
        self.workers * self.rings_per_worker * self.accept_limit
    }
}

impl From<crate::engine::RingLayout> for RingLayout {
    fn from(l: crate::engine::RingLayout) -> RingLayout {
        RingLayout {
            workers: l.workers as u64,
            rings_per_worker: l.rings_per_worker as u64,
            files_per_ring: u64::from(l.files_per_ring),
            accept_limit: u64::from(l.accept_limit),
        }
    }
}

/// The whole answer, printed as a table or as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    /// Connections the server could hold now: the smallest counting bound.
    pub capacity: u64,
    /// Name of the bound that sets `capacity`.
    pub bottleneck: &'static str,
    pub connections_max: u64,
    pub layout: RingLayout,
    pub server_bytes_per_connection: u64,
    pub kernel_bytes_per_connection: u64,
    /// Ephemeral ports per (client source address, server address) pair.
    pub ports_per_source_address: u64,
    /// Source addresses a load generator on this box needs to open `connections_max`.
    pub load_generator_sources_needed: u64,
    pub bounds: Vec<Bound>,
    pub facts: Facts,
}

/// The ring layout the engine derives from `cfg` when RLIMIT_NOFILE is `nofile_soft` and the
/// box has `cpus` cores.
pub fn ring_layout(cfg: &EngineConfig, nofile_soft: u64, cpus: u64) -> RingLayout {
    let cpus = usize::try_from(cpus).unwrap_or(usize::MAX);
    cfg.ring_layout(nofile_soft, cpus).into()
}

/// Server-side kernel memory of one held connection: its socket end and its armed recv.
pub fn kernel_bytes_per_connection() -> u64 {
    KERNEL_BYTES_PER_SOCKET_END
}

/// Judge `facts` for the server `config` would start. Pure: no I/O.
pub fn diagnose(config: &Config, facts: &Facts) -> Diagnosis {
    let ecfg = config.engine_config();
    let layout = ring_layout(&ecfg, facts.nofile_soft, facts.cpus);
    let server_per_conn = server_bytes_per_connection(config);
    let per_conn = server_per_conn + kernel_bytes_per_connection();
    let mut bounds = Vec::new();

    // io_uring: without it nothing is held at all.
    bounds.push(io_uring_access(facts));

    // The configured rings: the engine's own capacity.
    let ring_capacity = match facts.probe {
        Some(Ok(c)) => c,
        _ => layout.capacity(),
    };
    bounds.push(Bound {
        name: "file tables",
        value: format!(
            "{} workers x up to {} rings (opened as tables fill) x {} connections per ring \
             ({}-entry table)",
            layout.workers, layout.rings_per_worker, layout.accept_limit, layout.files_per_ring
        ),
        connections: Some(ring_capacity),
        status: "ok",
        fix: format!(
            "raise --connections-max (adds rings; up to {} per worker = {} connections), or \
             raise RLIMIT_NOFILE for bigger tables",
            RINGS_PER_WORKER_MAX,
            layout.workers * RINGS_PER_WORKER_MAX * layout.accept_limit
        ),
    });

    // RLIMIT_NOFILE sizes each table; it does not count direct descriptors.
    let can_raise = if facts.nofile_soft < facts.nofile_hard {
        format!(
            "soft can rise to {} (`ulimit -n {}`)",
            facts.nofile_hard, facts.nofile_hard
        )
    } else if facts.cap_sys_resource {
        format!(
            "CAP_SYS_RESOURCE held: hard can rise to fs.nr_open {}",
            facts.nr_open
        )
    } else {
        "cannot be raised here (no CAP_SYS_RESOURCE)".to_owned()
    };
    bounds.push(Bound {
        name: "RLIMIT_NOFILE",
        value: format!(
            "soft {} / hard {}; {can_raise}",
            facts.nofile_soft, facts.nofile_hard
        ),
        connections: None,
        status: "ok",
        fix: "sizes each ring's table only (sockets never enter the fd table); more rings work \
              as well: tuning/ulimit.sh apply, LimitNOFILE= in the unit"
            .to_owned(),
    });

    let files_free = facts.file_max.saturating_sub(facts.files_allocated);
    bounds.push(Bound {
        name: "fs.file-max",
        value: format!(
            "{} ({} allocated, {} free)",
            facts.file_max, facts.files_allocated, files_free
        ),
        connections: Some(files_free),
        status: "ok",
        fix: "every socket is a struct file, direct descriptors included (x2 with a co-located \
              load generator): tuning/sysctl.sh apply --connections N"
            .to_owned(),
    });
    bounds.push(Bound {
        name: "fs.nr_open",
        value: facts.nr_open.to_string(),
        connections: None,
        status: if facts.nr_open < facts.nofile_hard {
            "warn"
        } else {
            "ok"
        },
        fix: "ceiling for RLIMIT_NOFILE (LimitNOFILE=1048576 needs >= 1048576): \
              tuning/sysctl.sh apply"
            .to_owned(),
    });

    if let Some((max, count)) = facts.conntrack {
        // A full table drops new SYNs: every tracked connection needs an entry. A loaded module
        // with no rule using it in this namespace tracks nothing (count 0) and bounds nothing.
        let tracking = count > 0;
        bounds.push(Bound {
            name: "nf_conntrack_max",
            value: if tracking {
                format!("{max} ({count} tracked now)")
            } else {
                format!("{max} (nothing tracked now: no conntrack rule in this namespace?)")
            },
            connections: tracking.then(|| max.saturating_sub(count)),
            status: "ok",
            fix: "conntrack is loaded and tracks every connection: sysctl -w \
                  net.netfilter.nf_conntrack_max=N (tuning/sysctl.sh apply), or exempt the port \
                  with a raw-table NOTRACK rule"
                .to_owned(),
        });
    }

    let memory_conns = facts.mem_available_bytes / per_conn;
    bounds.push(Bound {
        name: "memory",
        value: format!(
            "MemAvailable {} MiB / ({} B server + {} B kernel per connection)",
            facts.mem_available_bytes >> 20,
            server_per_conn,
            kernel_bytes_per_connection()
        ),
        connections: Some(memory_conns),
        status: "ok",
        fix: "add RAM or stop other processes; a load generator on the same box needs about \
              as much again"
            .to_owned(),
    });

    let tcp_high_bytes = facts.tcp_mem_pages[2] * facts.page_bytes;
    let target = config.connections_max as u64;
    bounds.push(Bound {
        name: "net.ipv4.tcp_mem",
        value: format!(
            "{} {} {} pages (max {} MiB of TCP buffers)",
            facts.tcp_mem_pages[0],
            facts.tcp_mem_pages[1],
            facts.tcp_mem_pages[2],
            tcp_high_bytes >> 20
        ),
        connections: None,
        // An idle socket holds no buffer page; a fan-out that leaves one unsent page in every
        // socket at once needs one page per connection.
        status: if facts.tcp_mem_pages[2] < target {
            "warn"
        } else {
            "ok"
        },
        fix: format!(
            "idle sockets hold no buffers; for all {target} connections to have a page queued \
             at once, tcp_mem max must be >= {target} pages: tuning/sysctl.sh apply \
             --connections {target}"
        ),
    });

    if let Some(ehash) = facts.ehash_entries {
        // Not a limit on the count held but on its cost: every segment, loopback included,
        // looks its socket up in this hash, and past one socket per bucket the chains grow. At
        // 1M held (2M co-located socket ends) 262,144 buckets put a quarter of the server's
        // fan-out CPU in `__inet_lookup_established` (docs/capacity.md).
        let buckets = ehash.unsigned_abs();
        bounds.push(Bound {
            name: "net.ipv4.tcp_ehash_entries",
            value: format!(
                "{buckets} buckets{}",
                if ehash < 0 { " (shared with the host's namespace)" } else { "" }
            ),
            connections: None,
            status: if buckets < target { "warn" } else { "ok" },
            fix: format!(
                "fixed at boot: fewer buckets than sockets lengthens every socket lookup; boot with \
                 thash_entries={} or run uringcast in a network namespace (container) created \
                 after sysctl -w net.ipv4.tcp_child_ehash_entries={}",
                target.next_power_of_two(),
                target.next_power_of_two()
            ),
        });
    }

    bounds.push(Bound {
        name: "net.core.somaxconn",
        value: format!(
            "{} (listen backlog used: {})",
            facts.somaxconn,
            facts.somaxconn.min(u64::from(ecfg.listen_backlog))
        ),
        connections: None,
        status: if facts.somaxconn < 4096 { "warn" } else { "ok" },
        fix: "bounds a connect storm, not the count held: sysctl -w net.core.somaxconn=65535"
            .to_owned(),
    });

    let ports = (facts.port_range.1 + 1).saturating_sub(facts.port_range.0);
    let sources_needed = target.div_ceil(ports.max(1));
    bounds.push(Bound {
        name: "ephemeral ports",
        value: format!(
            "{}-{}: {ports} per (client address, server address)",
            facts.port_range.0, facts.port_range.1
        ),
        connections: None,
        status: if sources_needed > 1 { "warn" } else { "ok" },
        fix: format!(
            "limits the clients, not the server: a load generator here needs {sources_needed} \
             source addresses for {target} (uringcast-bench --src 127.0.0.2-127.0.0.{}); \
             widen with sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"",
            1 + sources_needed.clamp(1, 254)
        ),
    });

    let (capacity, bottleneck) = bounds
        .iter()
        .filter_map(|b| b.connections.map(|c| (c, b.name)))
        .min_by_key(|(c, _)| *c)
        .unwrap_or((0, "none"));
    for b in &mut bounds {
        if b.name == bottleneck {
            b.status = "limit";
        }
    }
    Diagnosis {
        capacity,
        bottleneck,
        connections_max: target,
        layout,
        server_bytes_per_connection: server_per_conn,
        kernel_bytes_per_connection: kernel_bytes_per_connection(),
        ports_per_source_address: ports,
        load_generator_sources_needed: sources_needed,
        bounds,
        facts: facts.clone(),
    }
}

impl Diagnosis {
    /// The human table: one row per bound, then the verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let w_name = self.bounds.iter().map(|b| b.name.len()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:w_name$}  {:6}  {:>12}  value / fix",
            "limit", "status", "connections"
        );
        for b in &self.bounds {
            let conns = b.connections.map_or("-".to_owned(), |c| c.to_string());
            let _ = writeln!(
                out,
                "{:w_name$}  {:6}  {:>12}  {}",
                b.name, b.status, conns, b.value
            );
            let _ = writeln!(out, "{:w_name$}  {:6}  {:>12}  fix: {}", "", "", "", b.fix);
        }
        let _ = writeln!(
            out,
            "\ncapacity now: {} connections (bottleneck: {}; configured --connections-max {})",
            self.capacity, self.bottleneck, self.connections_max
        );
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the diagnosis serializes")
    }
}

impl Facts {
    /// Read the box. With `probe`, start the engine once (no listener) for `config`.
    pub fn read(config: &Config, probe: bool) -> Facts {
        let (nofile_soft, nofile_hard) = nofile();
        let tcp_mem: Vec<u64> = numbers(&proc("/proc/sys/net/ipv4/tcp_mem"));
        let range: Vec<u64> = numbers(&proc("/proc/sys/net/ipv4/ip_local_port_range"));
        let meminfo = proc("/proc/meminfo");
        let mem = |key: &str| {
            meminfo
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| numbers(l).first().copied())
                .map_or(0, |kb| kb * 1024)
        };
        let cap_eff = proc("/proc/self/status")
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or(0);
        // SAFETY: sysconf has no memory arguments.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Facts {
            nofile_soft,
            nofile_hard,
            cap_sys_resource: cap_eff & (1 << CAP_SYS_RESOURCE_BIT) != 0,
            nr_open: first(&proc("/proc/sys/fs/nr_open")),
            file_max: first(&proc("/proc/sys/fs/file-max")),
            files_allocated: first(&proc("/proc/sys/fs/file-nr")),
            port_range: (
                range.first().copied().unwrap_or(32768),
                range.get(1).copied().unwrap_or(60999),
            ),
            somaxconn: first(&proc("/proc/sys/net/core/somaxconn")),
            conntrack: std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
                .ok()
                .map(|max| {
                    (
                        first(&max),
                        first(&proc("/proc/sys/net/netfilter/nf_conntrack_count")),
                    )
                }),
            ehash_entries: std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ehash_entries")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            tcp_mem_pages: [0, 1, 2].map(|i| tcp_mem.get(i).copied().unwrap_or(0)),
            page_bytes: if page > 0 { page as u64 } else { 4096 },
            mem_total_bytes: mem("MemTotal:"),
            mem_available_bytes: mem("MemAvailable:"),
            io_uring_disabled: std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            probe: probe.then(|| probe_rings(config)),
            io_uring_setup: probe.then(|| {
                io_uring::IoUring::new(2)
                    .map(drop)
                    .map_err(|e| e.raw_os_error().unwrap_or(0))
            }),
            seccomp_filter: proc("/proc/self/status")
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .is_some_and(|v| v.trim() == "2"),
            container: container(),
        }
    }
}

/// Signs of a container runtime: the files Docker and Podman leave at the root, the
/// `container` variable (systemd's convention, set by Podman and LXC), the Kubernetes service
/// variables, and the cgroup path.
fn container() -> Option<String> {
    let exists = |p: &str| std::path::Path::new(p).exists();
    if exists("/run/.containerenv") {
        return Some("podman".to_owned());
    }
    if exists("/.dockerenv") {
        return Some("docker".to_owned());
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("kubernetes".to_owned());
    }
    if let Ok(c) = std::env::var("container") {
        if !c.is_empty() {
            return Some(c);
        }
    }
    let cgroup = proc("/proc/self/cgroup");
    ["docker", "kubepods", "containerd", "libpod"]
        .into_iter()
        .find(|k| cgroup.contains(k))
        .map(|k| match k {
            "kubepods" => "kubernetes".to_owned(),
            "libpod" => "podman".to_owned(),
            other => other.to_owned(),
        })
}

/// Set up every ring the engine `config` asks for may open, on every worker at once, read its
/// capacity, tear them down: proves io_uring works and that all of the file tables and buffer
/// rings fit on this box (locked memory, mappings), not only the first ring the server starts
/// with.
pub fn probe_rings(config: &Config) -> Result<u64, String> {
    Engine::<()>::probe_all_rings(&config.engine_config())
        .map(|capacity| capacity as u64)
        .map_err(|e| e.to_string())
}

fn nofile() -> (u64, u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return (0, 0);
    }
    (rl.rlim_cur, rl.rlim_max)
}

fn proc(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn numbers(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn first(text: &str) -> u64 {
    numbers(text).first().copied().unwrap_or(0)
}

/// `uringcast doctor [--json] [--no-probe] [serve flags]`: print and return the exit code.
pub fn run(config: &Config, json: bool, probe: bool) -> i32 {
    let facts = Facts::read(config, probe);
    let d = diagnose(config, &facts);
    let text = if json {
        d.to_json() + "\n"
    } else {
        d.to_text()
    };
    // A closed pipe (`doctor | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dev VM as measured on 2026-11-28: 2 cores, 24 GiB, RLIMIT_NOFILE 20000 fixed.
    fn vm() -> Facts {
        Facts {
            nofile_soft: 20_000,
            nofile_hard: 20_000,
            cap_sys_resource: false,
            nr_open: 1 << 20,
            file_max: 2_466_170,
            files_allocated: 1_227,
            port_range: (32_768, 60_999),
            somaxconn: 4_096,
            conntrack: None,
            ehash_entries: Some(262_144),
            tcp_mem_pages: [287_898, 383_867, 575_796],
            page_bytes: 4_096,
            mem_total_bytes: 24 << 30,
            mem_available_bytes: 21 << 30,
            io_uring_disabled: Some(0),
            io_uring_setup: None,
            seccomp_filter: false,
            container: None,
            cpus: 2,
            probe: None,
        }
    }

    fn config(connections_max: usize) -> Config {
        Config {
            connections_max,
            ..Config::default()
        }
    }

    #[test]
    fn layout_follows_the_engine_rule_for_a_million() {
        let l = ring_layout(&config(1_000_000).engine_config(), 20_000, 2);
        assert_eq!(l.workers, 2);
        assert_eq!(l.files_per_ring, 20_000);
        assert_eq!(l.accept_limit, 20_000 - 1_024 - 16);
        // The fewest rings reaching 500k per worker.
        assert!(l.capacity() >= 1_000_000);
        assert!((l.rings_per_worker - 1) * l.accept_limit < 500_000);
    }

    #[test]
    fn ring_capacity_is_the_bottleneck_when_memory_is_plenty() {
        let d = diagnose(&config(100_000), &vm());
        assert_eq!(d.bottleneck, "file tables");
        assert_eq!(d.capacity, d.layout.capacity());
        assert!(d.capacity >= 100_000);
        let limits: Vec<_> = d.bounds.iter().filter(|b| b.status == "limit").collect();
        assert_eq!(limits.len(), 1, "exactly one bottleneck row");
    }

    #[test]
    fn memory_names_itself_when_short() {
        let mut f = vm();
        f.mem_available_bytes = 1 << 30;
        let d = diagnose(&config(1_000_000), &f);
        assert_eq!(d.bottleneck, "memory");
        let per = SERVER_BYTES_PER_CONNECTION + kernel_bytes_per_connection();
        assert_eq!(d.capacity, (1u64 << 30) / per);
        // Over TLS each connection holds rustls's state too: fewer fit.
        let mut tls = config(1_000_000);
        tls.tls_cert = Some("cert.pem".into());
        tls.tls_key = Some("key.pem".into());
        let d = diagnose(&tls, &f);
        let per = per + TLS_BYTES_PER_CONNECTION;
        assert_eq!(d.capacity, (1u64 << 30) / per);
        assert_eq!(
            d.server_bytes_per_connection,
            SERVER_BYTES_PER_CONNECTION + TLS_BYTES_PER_CONNECTION
        );
    }

    #[test]
    fn file_max_counts_free_files() {
        let mut f = vm();
        f.file_max = 60_000;
        f.files_allocated = 10_000;
        let d = diagnose(&config(1_000_000), &f);
        assert_eq!((d.bottleneck, d.capacity), ("fs.file-max", 50_000));
    }

    #[test]
    fn conntrack_table_bounds_when_loaded() {
        let mut f = vm();
        f.conntrack = Some((262_144, 44));
        let d = diagnose(&config(1_000_000), &f);
        assert_eq!((d.bottleneck, d.capacity), ("nf_conntrack_max", 262_100));
        f.conntrack = None;
        assert_ne!(
            diagnose(&config(1_000_000), &f).bottleneck,
            "nf_conntrack_max"
        );
    }

    /// `tuning/sysctl.sh` sizes memory without the binary, so it keeps its own copy of the
    /// per-connection figures; they must be the doctor's.
    #[test]
    fn sysctl_script_uses_the_doctors_memory_figures() {
        let script = include_str!("../../tuning/sysctl.sh");
        let value = |name: &str| -> u64 {
            script
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name}= not in tuning/sysctl.sh"))
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(
            value("APP_BYTES_PER_CONNECTION"),
            SERVER_BYTES_PER_CONNECTION
        );
        assert_eq!(value("SOCKET_END_BYTES"), KERNEL_BYTES_PER_SOCKET_END);
    }

    #[test]
    fn a_socket_hash_smaller_than_the_target_warns_with_both_fixes() {
        let row = |f: &Facts, n: usize| {
            diagnose(&config(n), f)
                .bounds
                .into_iter()
                .find(|b| b.name == "net.ipv4.tcp_ehash_entries")
        };
        let mut f = vm();
        let small = row(&f, 1_000_000).expect("a row when the key exists");
        assert_eq!(small.status, "warn");
        assert!(small.fix.contains("thash_entries=1048576"), "{}", small.fix);
        assert!(small.fix.contains("tcp_child_ehash_entries=1048576"));
        assert_eq!(row(&f, 100_000).unwrap().status, "ok");
        // A namespace sharing the host's hash reports it negated; the size is what counts.
        f.ehash_entries = Some(-2_097_152);
        let shared = row(&f, 1_000_000).unwrap();
        assert_eq!(shared.status, "ok");
        assert!(shared.value.contains("shared"));
        f.ehash_entries = None;
        assert!(
            row(&f, 1_000_000).is_none(),
            "no row on kernels without the key"
        );
        // A cost, never the bottleneck.
        assert_ne!(
            diagnose(&config(1_000_000), &vm()).bottleneck,
            "net.ipv4.tcp_ehash_entries"
        );
    }

    #[test]
    fn disabled_io_uring_means_zero_with_the_sysctl_fix() {
        let mut f = vm();
        f.io_uring_disabled = Some(2);
        let d = diagnose(&config(100_000), &f);
        assert_eq!((d.bottleneck, d.capacity), ("io_uring", 0));
        assert!(d.bounds[0].fix.contains("kernel.io_uring_disabled=0"));
        f.io_uring_disabled = Some(0);
        f.probe = Some(Err("io_uring is denied (EPERM)".into()));
        assert_eq!(diagnose(&config(100_000), &f).capacity, 0);
    }

    /// Every way io_uring can be refused gets its own cause and fix; a working setup is ok.
    #[test]
    fn io_uring_access_names_the_block_and_its_fix() {
        let verdict = |disabled: Option<u64>, setup: Option<Result<(), i32>>, seccomp: bool| {
            let mut f = vm();
            f.io_uring_disabled = disabled;
            f.io_uring_setup = setup;
            f.seccomp_filter = seccomp;
            f.container = seccomp.then(|| "docker".to_owned());
            let b = io_uring_access(&f);
            assert_eq!(
                b.connections.is_some(),
                b.status == "limit",
                "a blocked row caps the count at 0: {b:?}"
            );
            (b.status, b.value, b.fix)
        };
        let eperm = Some(Err(libc::EPERM));
        let enosys = Some(Err(libc::ENOSYS));
        // (sysctl, setup result, seccomp filter) -> (status, a word of the value, of the fix)
        let cases = [
            (
                Some(0),
                Some(Ok(())),
                false,
                "ok",
                "rings started",
                "none needed",
            ),
            (None, Some(Ok(())), true, "ok", "absent", "none needed"),
            (Some(0), None, false, "ok", "not probed", "none needed"),
            (
                Some(2),
                eperm,
                true,
                "limit",
                "off for every process",
                "io_uring_disabled=0",
            ),
            (Some(2), None, false, "limit", "= 2", "io_uring_disabled=0"),
            (
                Some(1),
                eperm,
                false,
                "limit",
                "io_uring_group",
                "io_uring_group",
            ),
            (
                Some(1),
                None,
                false,
                "limit",
                "not probed",
                "io_uring_group",
            ),
            (
                Some(1),
                Some(Ok(())),
                false,
                "ok",
                "rings started",
                "none needed",
            ),
            (
                Some(0),
                eperm,
                true,
                "limit",
                "in a docker container",
                "seccomp-io_uring.json",
            ),
            (
                None,
                eperm,
                true,
                "limit",
                "seccomp filter",
                "SystemCallFilter",
            ),
            (Some(0), eperm, false, "limit", "security module", "LSM"),
            (
                Some(0),
                enosys,
                true,
                "limit",
                "ENOSYS under a seccomp filter",
                "seccomp-io_uring.json",
            ),
            (None, enosys, false, "limit", "no io_uring", "Linux >= 6.0"),
            (
                Some(0),
                Some(Err(libc::ENOMEM)),
                false,
                "limit",
                "failed",
                "RLIMIT_MEMLOCK",
            ),
        ];
        for (disabled, setup, seccomp, status, value, fix) in cases {
            let (s, v, f) = verdict(disabled, setup, seccomp);
            let case = format!("{disabled:?} {setup:?} seccomp={seccomp}: {s} / {v} / {f}");
            assert_eq!(s, status, "{case}");
            assert!(v.contains(value), "value lacks {value:?}: {case}");
            assert!(f.contains(fix), "fix lacks {fix:?}: {case}");
        }
        // The engine failing after a working setup is reported with the engine's words.
        let mut f = vm();
        f.io_uring_setup = Some(Ok(()));
        f.probe = Some(Err("files_per_ring 9 exceeds RLIMIT_NOFILE".into()));
        let b = io_uring_access(&f);
        assert_eq!(b.status, "limit");
        assert!(b.value.contains("files_per_ring"), "{b:?}");
    }

    #[test]
    fn probe_result_overrides_the_arithmetic() {
        let mut f = vm();
        f.probe = Some(Ok(12_345));
        let d = diagnose(&config(100_000), &f);
        assert_eq!((d.bottleneck, d.capacity), ("file tables", 12_345));
    }

    #[test]
    fn ports_tell_the_load_generator_how_many_sources() {
        let d = diagnose(&config(1_000_000), &vm());
        assert_eq!(d.ports_per_source_address, 60_999 - 32_768 + 1);
        assert_eq!(d.load_generator_sources_needed, 36);
        let row = d
            .bounds
            .iter()
            .find(|b| b.name == "ephemeral ports")
            .unwrap();
        assert!(row.fix.contains("127.0.0.37"), "{}", row.fix);
    }

    #[test]
    fn rlimit_row_says_whether_it_can_rise() {
        let mut f = vm();
        let row = |f: &Facts| {
            diagnose(&config(1_000), f)
                .bounds
                .into_iter()
                .find(|b| b.name == "RLIMIT_NOFILE")
                .unwrap()
                .value
        };
        assert!(row(&f).contains("cannot be raised"));
        f.cap_sys_resource = true;
        assert!(row(&f).contains("CAP_SYS_RESOURCE held"));
        f.nofile_soft = 1_024;
        assert!(row(&f).contains("ulimit -n 20000"));
    }

    #[test]
    fn text_and_json_carry_the_verdict() {
        let d = diagnose(&config(100_000), &vm());
        let text = d.to_text();
        assert!(text.contains(&format!("capacity now: {} connections", d.capacity)));
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(v["capacity"].as_u64(), Some(d.capacity));
        assert_eq!(v["bottleneck"], "file tables");
    }
}
