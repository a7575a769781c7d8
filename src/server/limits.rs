//! Per-IP admission of new connections: how many connections one source IP may hold
//! (`connections_per_ip_max`, refused with 503) and how many it may open per second
//! (`handshakes_per_ip_per_sec`, refused with 429). A "handshake" is a new TCP connection,
//! counted when the engine opens it; a refused connection is answered at its first request
//! head (before any upgrade) and closed, so it never subscribes or upgrades.
//!
//! Never here: I/O, HTTP, the engine. Time comes in as `now_ms`; the caller keeps the
//! [`IpKey`] of a counted connection and hands it back to [`Limits::release`].
//!
//! Shared by all workers, not per worker: the kernel's SO_REUSEPORT hash spreads one client's
//! connections over every worker's listeners by source port, so a per-worker count would let
//! one IP hold `workers × N` and vary with the hash. The state is split into
//! `SHARDS` mutexes by key, so two workers contend only on the same shard, once per accept and
//! once per close of a counted connection.
//!
//! Bounds (both independent of what clients do):
//! - connection counts: a map entry exists only while its count is above 0, so at most one
//!   per live connection (`connections_max`);
//! - rates: a fixed set-associative table of `RATE_SETS × RATE_WAYS` entries per shard
//!   (16,384 entries, 256 KiB in all), allocated only when the rate limit is on. A new key
//!   replaces the way with the least debt; forgetting an entry whose bucket has refilled loses
//!   nothing, forgetting one in debt lets that IP start over with a full bucket, which only
//!   more distinct IPs than the table holds (all active within one second) can cause.
//!
//! Keys: an IPv4 address counts alone (127.0.0.2 is not 127.0.0.1); an IPv4-mapped IPv6
//! address counts as its IPv4 address; any other IPv6 address counts by its /64 prefix, the
//! smallest block one subscriber is normally given (per address, one host could take 2^64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::Mutex;

/// Mutexes the state is split into (a power of two).
const SHARDS: usize = 64;
/// The key of the IPv6 prefix ::/64 (see [`IpKey`]).
const ZERO_PREFIX: NonZeroU64 = match NonZeroU64::new(0xFF00_0000_0000_0000) {
    Some(k) => k,
    None => unreachable!(),
};
/// Rate table sets per shard and ways per set.
const RATE_SETS: usize = 64;
const RATE_WAYS: usize = 4;

/// A source as the limits count it (see the module doc), in 8 bytes, never 0 (so an
/// `Option<IpKey>` is 8 bytes too):
///
/// ```text
/// IPv4 a.b.c.d            0xFFFF_FFFF_aabb_ccdd   (inside ff00::/8, multicast: never a TCP peer)
/// IPv6 p:q:r:s:...        p:q:r:s as one u64       (the /64 prefix)
/// IPv6 ::/64 (::1, ...)   0xFF00_0000_0000_0000   (also multicast, so it collides with none)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpKey(NonZeroU64);

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        let bits = match ip.to_canonical() {
            IpAddr::V4(v4) => 0xFFFF_FFFF_0000_0000 | u64::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64,
        };
        IpKey(NonZeroU64::new(bits).unwrap_or(ZERO_PREFIX))
    }

    fn bits(self) -> u64 {
        self.0.get()
    }

    /// A well-mixed hash (Fibonacci hashing), so neighbouring addresses land apart.
    fn hash(self) -> u64 {
        self.bits().wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn shard(self) -> usize {
        (self.hash() >> 58) as usize % SHARDS
    }

    fn set(self) -> usize {
        ((self.hash() >> 40) as usize) % RATE_SETS
    }
}

/// What [`Limits::admit`] decided for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; `Some(key)` if it was counted and must be released at close.
    Admitted(Option<IpKey>),
    /// Its IP opened more than `handshakes_per_ip_per_sec` in the last second: 429.
    TooFast,
    /// Its IP holds `connections_per_ip_max` connections already: 503.
    TooMany,
}

/// One rate entry in GCRA form (a token bucket kept as one time): `tat_us` is when the
/// bucket would be full again. A connection at `now` is allowed while
/// `tat_us - now <= burst_us`, and then moves `tat_us` on by one interval.
#[derive(Clone, Copy, Default)]
struct RateEntry {
    key: u64,
    tat_us: u64,
}

struct Shard {
    conns: HashMap<IpKey, u32>,
    /// `RATE_SETS × RATE_WAYS` entries, or empty when the rate limit is off.
    rates: Vec<RateEntry>,
}

/// The per-IP limits of one server (all workers).
pub struct Limits {
    conns_max: u32,
    /// Microseconds per handshake at the allowed rate; 0 = no rate limit.
    interval_us: u64,
    /// How far `tat_us` may run ahead of now: a burst of `rate` handshakes at once.
    burst_us: u64,
    shards: Box<[Mutex<Shard>]>,
}

impl Limits {
    /// `connections_per_ip_max` and `handshakes_per_ip_per_sec`, 0 = unlimited.
    pub fn new(connections_per_ip_max: usize, handshakes_per_ip_per_sec: usize) -> Limits {
        let rate = handshakes_per_ip_per_sec as u64;
        // 0 = off; at least 1 µs, so a rate above 10^6/s is still a limit.
        let interval_us = 1_000_000u64.checked_div(rate).map_or(0, |us| us.max(1));
        let entries = if rate == 0 { 0 } else { RATE_SETS * RATE_WAYS };
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    conns: HashMap::new(),
                    rates: vec![RateEntry::default(); entries],
                })
            })
            .collect();
        Limits {
            conns_max: u32::try_from(connections_per_ip_max).unwrap_or(u32::MAX),
            interval_us,
            burst_us: interval_us * rate.saturating_sub(1),
            shards,
        }
    }

    /// Whether any limit is on (if not, `admit` always admits and counts nothing).
    pub fn enabled(&self) -> bool {
        self.conns_max != 0 || self.interval_us != 0
    }

    /// Decide on a new connection from `ip` at `now_ms` (engine time). The rate is checked
    /// first: a connection refused for its rate does not use up a handshake, one refused for
    /// the connection count does (it was a handshake all the same).
    pub fn admit(&self, ip: IpAddr, now_ms: u64) -> Admission {
        if !self.enabled() {
            return Admission::Admitted(None);
        }
        let key = IpKey::of(ip);
        let mut shard = self.lock(key);
        if self.interval_us != 0 && !self.take_handshake(&mut shard, key, now_ms * 1000) {
            return Admission::TooFast;
        }
        if self.conns_max == 0 {
            return Admission::Admitted(None);
        }
        let count = shard.conns.entry(key).or_insert(0);
        if *count >= self.conns_max {
            if *count == 0 {
                shard.conns.remove(&key);
            }
            return Admission::TooMany;
        }
        *count += 1;
        Admission::Admitted(Some(key))
    }

    /// A counted connection closed.
    pub fn release(&self, key: IpKey) {
        let mut shard = self.lock(key);
        match shard.conns.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                shard.conns.remove(&key);
            }
            None => debug_assert!(false, "release of {key:?}, which holds no connection"),
        }
    }

    /// Connections counted for `ip` now (tests, metrics).
    pub fn connections_of(&self, ip: IpAddr) -> u32 {
        let key = IpKey::of(ip);
        self.lock(key).conns.get(&key).copied().unwrap_or(0)
    }

    /// Source keys holding at least one counted connection (the map's size).
    pub fn tracked_ips(&self) -> usize {
        self.shards.iter().map(|s| lock(s).conns.len()).sum()
    }

    fn lock(&self, key: IpKey) -> std::sync::MutexGuard<'_, Shard> {
        lock(&self.shards[key.shard()])
    }

    /// GCRA step for `key` at `now_us`; false if over the rate (nothing changes then).
    fn take_handshake(&self, shard: &mut Shard, key: IpKey, now_us: u64) -> bool {
        let set = key.set() * RATE_WAYS;
        let ways = &mut shard.rates[set..set + RATE_WAYS];
        let i = match ways
            .iter()
            .position(|e| e.key == key.bits() && e.tat_us != 0)
        {
            Some(i) => i,
            None => {
                // The way with the least debt (an entry at or before `now` owes nothing).
                let (i, _) = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.tat_us)
                    .expect("RATE_WAYS > 0");
                ways[i] = RateEntry {
                    key: key.bits(),
                    tat_us: 0,
                };
                i
            }
        };
        let e = &mut ways[i];
        let tat = e.tat_us.max(now_us);
        if tat - now_us > self.burst_us {
            return false;
        }
        e.tat_us = tat + self.interval_us;
        true
    }
}

/// A poisoned shard is still consistent (every update is one assignment), so it is used.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_count_ipv4_alone_mapped_as_ipv4_and_ipv6_by_prefix() {
        assert_ne!(IpKey::of(ip("127.0.0.1")), IpKey::of(ip("127.0.0.2")));
        assert_eq!(IpKey::of(ip("::ffff:10.0.0.1")), IpKey::of(ip("10.0.0.1")));
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:3::1"))
        );
        assert_ne!(IpKey::of(ip("::1")), IpKey::of(ip("0.0.0.1")));
        assert_eq!(IpKey::of(ip("::1")).bits(), ZERO_PREFIX.get());
        assert_eq!(std::mem::size_of::<Option<IpKey>>(), 8);
    }

    #[test]
    fn connection_count_is_per_ip_and_entries_go_at_zero() {
        let l = Limits::new(2, 0);
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        let k1 = match l.admit(a, 0) {
            Admission::Admitted(Some(k)) => k,
            other => panic!("{other:?}"),
        };
        assert!(matches!(l.admit(a, 0), Admission::Admitted(Some(_))));
        assert_eq!(l.admit(a, 0), Admission::TooMany);
        assert!(
            matches!(l.admit(b, 0), Admission::Admitted(Some(_))),
            "another IP"
        );
        assert_eq!(l.connections_of(a), 2);
        l.release(k1);
        assert!(matches!(l.admit(a, 0), Admission::Admitted(Some(_))));
        for _ in 0..2 {
            l.release(IpKey::of(a));
        }
        l.release(IpKey::of(b));
        assert_eq!(
            l.tracked_ips(),
            0,
            "no entry is left for IPs holding nothing"
        );
    }

    #[test]
    fn rate_allows_a_burst_of_n_then_n_per_second() {
        let l = Limits::new(0, 5);
        let a = ip("127.0.0.1");
        let admitted = |t| {
            (0..10)
                .filter(|_| l.admit(a, t) != Admission::TooFast)
                .count()
        };
        assert_eq!(admitted(1_000), 5, "burst of 5");
        assert_eq!(
            admitted(1_100),
            0,
            "100 ms later: the fifth of a second not yet over"
        );
        assert_eq!(admitted(1_200), 1, "one interval (200 ms) refilled one");
        assert_eq!(
            admitted(3_000),
            5,
            "after a full second idle: a whole burst again"
        );
        assert_eq!(l.admit(ip("127.0.0.2"), 3_000), Admission::Admitted(None));
        assert_eq!(l.tracked_ips(), 0, "rate alone counts no connections");
    }

    #[test]
    fn rate_table_stays_bounded_under_many_ips() {
        let l = Limits::new(0, 1);
        // Far more distinct IPs than the table holds, all within one millisecond: each is
        // admitted once (a forgotten entry starts over), and memory does not grow.
        for i in 0..100_000u32 {
            assert_eq!(
                l.admit(IpAddr::from(i.to_be_bytes()), 7),
                Admission::Admitted(None)
            );
        }
        let entries: usize = l.shards.iter().map(|s| lock(s).rates.len()).sum();
        assert_eq!(entries, SHARDS * RATE_SETS * RATE_WAYS);
        // A recent IP is still remembered if its set was not overrun since.
        let last = IpAddr::from(99_999u32.to_be_bytes());
        assert_eq!(l.admit(last, 7), Admission::TooFast);
    }

    #[test]
    fn both_limits_rate_first() {
        let l = Limits::new(1, 2);
        let a = ip("10.1.1.1");
        assert!(matches!(l.admit(a, 0), Admission::Admitted(Some(_))));
        assert_eq!(
            l.admit(a, 0),
            Admission::TooMany,
            "second handshake, count full"
        );
        assert_eq!(l.admit(a, 0), Admission::TooFast, "third within the second");
        assert_eq!(l.connections_of(a), 1);
    }

    #[test]
    fn disabled_limits_admit_without_counting() {
        let l = Limits::new(0, 0);
        assert!(!l.enabled());
        for _ in 0..1000 {
            assert_eq!(l.admit(ip("127.0.0.1"), 0), Admission::Admitted(None));
        }
        assert_eq!(l.tracked_ips(), 0);
    }
}
