//! Connection planning: which (target, source address) each connection uses, and whether the
//! machine's limits (ephemeral ports, file tables, memory) allow the run at all.
//!
//! A TCP connection is identified by (source address, source port, target address, target
//! port), so each (source address, target) pair can hold at most one ephemeral port range of
//! connections, about 28k with Linux's default 32768-60999. Connections are spread round-robin
//! over targets first and source addresses second, so every pair gets an equal share.
//!
//! This module reads `/proc` and `getrlimit` once, before the run; it never opens a socket.

use std::net::IpAddr;

/// What the machine allows, read once at start-up (or made up by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysLimits {
    /// `net.ipv4.ip_local_port_range`, inclusive.
    pub port_range: (u16, u16),
    /// RLIMIT_NOFILE soft limit: bounds each ring's registered file table.
    pub nofile: u64,
    /// `MemAvailable` from /proc/meminfo, bytes.
    pub mem_available_bytes: u64,
}

impl SysLimits {
    pub fn read() -> SysLimits {
        let port_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|v| v.parse::<u16>());
                Some((it.next()?.ok()?, it.next()?.ok()?))
            })
            .unwrap_or((32768, 60999));
        let nofile = {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct we own.
            if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
                r.rlim_cur
            } else {
                1024
            }
        };
        let mem_available_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(u64::MAX);
        SysLimits {
            port_range,
            nofile,
            mem_available_bytes,
        }
    }

    /// Ephemeral ports per (source address, target) pair.
    pub fn ports_per_pair(&self) -> u64 {
        let (lo, hi) = self.port_range;
        u64::from(hi.saturating_sub(lo)) + 1
    }
}

/// Kernel memory per client TCP socket on loopback (socket, file, dentry, minimal buffers);
/// a conservative figure measured on Linux 6.x. The server side of a local run costs as much
/// again, in the server's process.
pub const KERNEL_BYTES_PER_SOCKET: u64 = 4 << 10;
/// Harness memory per connection (state-machine slot, sequence tracker, engine slab entry).
pub const HARNESS_BYTES_PER_CONN: u64 = 512;

/// The spread of connections over targets and source addresses.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: usize,
    /// `None` = let the kernel pick (one implicit source address).
    pub sources: Vec<Option<IpAddr>>,
}

/// A limit that stops (fatal) or may hurt (warning) the planned run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub fatal: bool,
    pub message: String,
}

impl Plan {
    pub fn new(targets: usize, src: Option<&[IpAddr]>) -> Plan {
        let sources = match src {
            Some(s) if !s.is_empty() => s.iter().copied().map(Some).collect(),
            _ => vec![None],
        };
        Plan {
            targets: targets.max(1),
            sources,
        }
    }

    /// (target index, source address) for connection `i`.
    pub fn assign(&self, i: u64) -> (usize, Option<IpAddr>) {
        let t = (i % self.targets as u64) as usize;
        let s = ((i / self.targets as u64) % self.sources.len() as u64) as usize;
        (t, self.sources[s])
    }

    /// Most connections the port space allows.
    pub fn port_capacity(&self, sys: &SysLimits) -> u64 {
        sys.ports_per_pair() * self.targets as u64 * self.sources.len() as u64
    }

    /// Check `conns` against the machine. Fatal findings stop the run before it starts.
    pub fn check(&self, conns: u64, sys: &SysLimits) -> Vec<Finding> {
        let mut out = Vec::new();
        let cap = self.port_capacity(sys);
        if conns > cap {
            let pairs_needed = conns.div_ceil(sys.ports_per_pair());
            let src_needed = pairs_needed.div_ceil(self.targets as u64);
            out.push(Finding {
                fatal: true,
                message: format!(
                    "ports: {conns} connections need {pairs_needed} (source address, target) \
                     pairs of {} ephemeral ports ({}-{}), but there are {} targets x {} source \
                     addresses = {cap} ports. Use --src with at least {src_needed} addresses \
                     (e.g. --src 127.0.0.2-127.0.0.{}), or more targets (--dst against a \
                     server listening on 0.0.0.0, or more --url).",
                    sys.ports_per_pair(),
                    sys.port_range.0,
                    sys.port_range.1,
                    self.targets,
                    self.sources.len(),
                    1 + src_needed.min(253),
                ),
            });
        } else if conns * 10 > cap * 9 {
            out.push(Finding {
                fatal: false,
                message: format!(
                    "ports: {conns} connections use over 90% of {cap} ephemeral ports; \
                     TIME_WAIT from earlier runs may make connects fail (EADDRNOTAVAIL)"
                ),
            });
        }
        let rings = conns.div_ceil(sys.nofile.max(1));
        if rings > 1 {
            out.push(Finding {
                fatal: false,
                message: format!(
                    "file table: RLIMIT_NOFILE is {}, so {conns} direct descriptors need at \
                     least {rings} rings (the engine sizes them from connections_max)",
                    sys.nofile
                ),
            });
        }
        let need = conns * (KERNEL_BYTES_PER_SOCKET + HARNESS_BYTES_PER_CONN);
        if need > sys.mem_available_bytes {
            out.push(Finding {
                fatal: true,
                message: format!(
                    "memory: {conns} connections need about {} MiB (kernel sockets + harness), \
                     but only {} MiB are available",
                    need >> 20,
                    sys.mem_available_bytes >> 20
                ),
            });
        } else if need * 2 > sys.mem_available_bytes {
            out.push(Finding {
                fatal: false,
                message: format!(
                    "memory: {conns} connections need about {} MiB here and as much again in a \
                     local server; {} MiB are available",
                    need >> 20,
                    sys.mem_available_bytes >> 20
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys() -> SysLimits {
        SysLimits {
            port_range: (32768, 60999),
            nofile: 20_000,
            mem_available_bytes: 24 << 30,
        }
    }

    fn ips(n: u8) -> Vec<IpAddr> {
        (0..n).map(|i| IpAddr::from([127, 0, 0, 2 + i])).collect()
    }

    #[test]
    fn spread_is_even_over_pairs() {
        let src = ips(3);
        let p = Plan::new(2, Some(&src));
        let mut counts = std::collections::HashMap::new();
        for i in 0..600 {
            *counts.entry(p.assign(i)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 6);
        assert!(counts.values().all(|&c| c == 100));
        assert_eq!(Plan::new(1, None).assign(7), (0, None));
    }

    #[test]
    fn port_limit_is_fatal_and_names_the_fix() {
        let s = sys();
        assert_eq!(s.ports_per_pair(), 28_232);
        let f = Plan::new(1, None).check(100_000, &s);
        let fatal: Vec<_> = f.iter().filter(|f| f.fatal).collect();
        assert_eq!(fatal.len(), 1);
        assert!(fatal[0].message.contains("--src"), "{}", fatal[0].message);
        assert!(fatal[0].message.contains("at least 4 addresses"));
        let src = ips(4);
        let f = Plan::new(1, Some(&src)).check(100_000, &s);
        assert!(f.iter().all(|f| !f.fatal), "{f:?}");
        // The file-table note: 100k over RLIMIT_NOFILE=20000 needs 5 rings.
        assert!(f.iter().any(|f| f.message.contains("5 rings")));
    }

    #[test]
    fn memory_limit() {
        let mut s = sys();
        s.mem_available_bytes = 100 << 20;
        let src = ips(39);
        let f = Plan::new(1, Some(&src)).check(100_000, &s);
        assert!(f.iter().any(|f| f.fatal && f.message.starts_with("memory")));
        assert!(Plan::new(1, None).check(10, &sys()).is_empty());
    }

    #[test]
    fn reads_this_machine() {
        let s = SysLimits::read();
        assert!(s.ports_per_pair() > 0);
        assert!(s.nofile > 0);
    }
}
