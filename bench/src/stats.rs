//! Measurement: the harness clock, HDR latency histograms, error counters by kind, and the
//! live counters the progress line reads.
//!
//! Each engine worker owns a `Stats` (no sharing on the hot path); they are merged once at the
//! end. The only shared state is `Live`, a handful of relaxed atomics for the progress line.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the harness started, monotonic, comparable across threads. Publisher and
/// subscribers share it, so a payload's send time and its receive time need no clock sync.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Longest latency a histogram records exactly: 10 minutes. Longer values are clamped (and
/// would mean the run is broken anyway).
const LATENCY_NS_MAX: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits (0.1% value precision).
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds are valid"))
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Latency(n={})", self.0.len())
    }
}

impl Latency {
    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, LATENCY_NS_MAX));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles in microseconds, for the report.
    pub fn summary_us(&self) -> Percentiles {
        let h = &self.0;
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean: us(h.mean() as u64),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Latency percentiles in microseconds (0.1 µs resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

macro_rules! error_kinds {
    ($( $variant:ident => $name:literal, )+) => {
        /// Why something failed. One counter each; the report names them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $( $variant, )+ }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$variant, )+ ];
            pub fn name(self) -> &'static str {
                match self { $( ErrorKind::$variant => $name, )+ }
            }
        }
    };
}

error_kinds! {
    ConnectRefused => "connect_refused",
    AddrNotAvailable => "addr_not_available (ephemeral ports exhausted: add --src addresses)",
    FileTableFull => "file_table_full (raise --workers or the engine's files per ring)",
    ConnectError => "connect_error",
    ConnectTimeout => "connect_timeout",
    Reset => "connection_reset",
    PeerClosed => "peer_closed",
    IoError => "io_error",
    HttpStatus => "http_status_not_ok",
    HttpParse => "http_response_invalid",
    WsHandshake => "ws_handshake_rejected",
    WsProtocol => "ws_protocol_error",
    WsClosedByPeer => "ws_close_from_server",
    SseParse => "sse_invalid",
    NoEnvelope => "delivery_without_envelope",
    WrongTopic => "delivery_for_wrong_topic",
    EchoMismatch => "echo_payload_mismatch",
    PublishStatus => "publish_status_not_ok",
    PublishParse => "publish_response_invalid",
    PublishNoKeepAlive => "publish_connection_not_kept_alive",
    Stale => "heartbeat_stale",
    InputTooLarge => "input_over_bound",
    EngineClosed => "closed_by_engine",
    ResumeReset => "resume_reset (event: reset, history did not reach back)",
    Tls => "tls_error (handshake or record)",
}

/// Error counters, indexed by `ErrorKind`.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    counts: [u64; 32],
    /// errno values that map to no named kind (`IoError`), so the report still names them.
    other_errno: BTreeMap<i32, u64>,
}

impl Errors {
    pub fn add(&mut self, kind: ErrorKind) {
        self.counts[kind as usize] += 1;
    }

    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Count an errno: its named kind, and the raw number when it has none.
    pub fn add_errno(&mut self, errno: i32) {
        let kind = errno_kind(errno);
        self.add(kind);
        if kind == ErrorKind::IoError {
            *self.other_errno.entry(errno).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        for (e, n) in &other.other_errno {
            *self.other_errno.entry(*e).or_default() += n;
        }
    }

    /// Non-zero counters by name, for the report.
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = ErrorKind::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| (k.name().to_owned(), self.get(*k)))
            .collect();
        for (e, n) in &self.other_errno {
            let name = std::io::Error::from_raw_os_error(*e).to_string();
            m.insert(format!("io_error errno {e} ({name})"), *n);
        }
        m
    }
}

/// Map a connect/IO errno to a kind, so port and file-table exhaustion are named in the report.
pub fn errno_kind(errno: i32) -> ErrorKind {
    match errno {
        libc::ECONNREFUSED => ErrorKind::ConnectRefused,
        libc::EADDRNOTAVAIL | libc::EADDRINUSE => ErrorKind::AddrNotAvailable,
        libc::EMFILE | libc::ENFILE | libc::ENOSPC => ErrorKind::FileTableFull,
        libc::ETIMEDOUT => ErrorKind::ConnectTimeout,
        libc::ECONNRESET | libc::EPIPE => ErrorKind::Reset,
        _ => ErrorKind::IoError,
    }
}

/// Everything one worker measured. Merged across workers at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub connects_started: u64,
    pub connects_ok: u64,
    /// Connections that closed before the scenario ended (any reason).
    pub drops: u64,
    /// `--follow`: reconnects of subscribers to another target after their connection ended.
    pub followed: u64,
    pub connect_latency: Latency,
    /// Record with [`Stats::record_latency`], which also fills `timeline`.
    pub latency: Latency,
    pub timeline: crate::timeline::Timeline,
    pub deliveries: u64,
    pub heartbeats: u64,
    pub published: u64,
    pub publish_failed: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub ambiguous: u64,
    pub stale: u64,
    pub echoes: u64,
    /// Sequence numbers the test hook skipped (never sent).
    pub skipped: u64,
    /// Connections open with their handshake done at `Finish`.
    pub held: u64,
    pub errors: Errors,
    /// Reconnect storm figures (`fanout --storm-at`).
    pub storm: StormStats,
}

impl Stats {
    /// A delivery's or an echo's latency, arrived at `now_ns`.
    pub fn record_latency(&mut self, now_ns: u64, latency_ns: u64) {
        self.latency.record_ns(latency_ns);
        self.timeline.record(now_ns, latency_ns);
    }

    pub fn merge(&mut self, o: &Stats) {
        self.connects_started += o.connects_started;
        self.connects_ok += o.connects_ok;
        self.drops += o.drops;
        self.followed += o.followed;
        self.connect_latency.merge(&o.connect_latency);
        self.latency.merge(&o.latency);
        self.timeline.merge(&o.timeline);
        self.deliveries += o.deliveries;
        self.heartbeats += o.heartbeats;
        self.published += o.published;
        self.publish_failed += o.publish_failed;
        self.missing += o.missing;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.ambiguous += o.ambiguous;
        self.stale += o.stale;
        self.echoes += o.echoes;
        self.skipped += o.skipped;
        self.held += o.held;
        self.errors.merge(&o.errors);
        self.storm.merge(&o.storm);
    }
}

/// Worker slots in `Live`; a worker with a higher index shares slot `index % LIVE_WORKER_SLOTS`
/// (its stores then race with another worker's: the figures only drive the progress line and
/// phase waits, and engines run far fewer workers than this).
const LIVE_WORKER_SLOTS: usize = 64;

/// One worker's totals, alone on its cache line (128 B: adjacent-line prefetch pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerTotals {
    messages: AtomicU64,
    deliveries: AtomicU64,
    errors: AtomicU64,
}

/// Counters shared by all workers while the run goes on: the progress line reads them and the
/// orchestrator waits on them to move between phases (relaxed: each is a monotonic count or a
/// gauge that is re-read, never used to order other memory).
#[derive(Debug)]
pub struct Live {
    /// Connections whose handshake completed and that are still open.
    pub open: AtomicU64,
    /// Handshakes completed, ever.
    pub opened_total: AtomicU64,
    /// Connections that failed before their handshake completed.
    pub failed_total: AtomicU64,
    /// Per-worker running totals of messages (deliveries plus echoes), deliveries and errors:
    /// each worker stores its own on its own cache line (no read-modify-write shared between
    /// workers on the receive path); readers sum them.
    workers: Box<[WorkerTotals]>,
    /// Publisher connections ready to publish.
    pub pub_ready: AtomicU64,
    /// Publisher connections finished with their schedule (or gone).
    pub pub_done: AtomicU64,
    /// Storm: reconnects that completed their handshake / failed; subscribers resumed.
    pub reconnected: AtomicU64,
    pub reconnect_failed: AtomicU64,
    pub resumed: AtomicU64,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            open: AtomicU64::new(0),
            opened_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            workers: (0..LIVE_WORKER_SLOTS)
                .map(|_| WorkerTotals::default())
                .collect(),
            pub_ready: AtomicU64::new(0),
            pub_done: AtomicU64::new(0),
            reconnected: AtomicU64::new(0),
            reconnect_failed: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
        }
    }
}

impl Live {
    /// Worker `worker`'s totals so far (each only ever grows).
    pub fn store_worker(&self, worker: usize, messages: u64, deliveries: u64, errors: u64) {
        let w = &self.workers[worker % LIVE_WORKER_SLOTS];
        w.messages.store(messages, Ordering::Relaxed);
        w.deliveries.store(deliveries, Ordering::Relaxed);
        w.errors.store(errors, Ordering::Relaxed);
    }

    /// Deliveries plus echoes, all workers.
    pub fn messages(&self) -> u64 {
        self.workers.iter().map(|w| Live::get(&w.messages)).sum()
    }

    pub fn deliveries(&self) -> u64 {
        self.workers.iter().map(|w| Live::get(&w.deliveries)).sum()
    }

    pub fn errors(&self) -> u64 {
        self.workers.iter().map(|w| Live::get(&w.errors)).sum()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Connections that reached an end state: open (at some point) or failed.
    pub fn resolved(&self) -> u64 {
        Live::get(&self.opened_total) + Live::get(&self.failed_total)
    }
}

/// CPU seconds (user + system) this process has used so far, from getrusage(2).
pub fn cpu_seconds() -> f64 {
    rusage_cpu_seconds(libc::RUSAGE_SELF)
}

/// CPU seconds (user + system) the calling thread has used so far, from getrusage(2)
/// (RUSAGE_THREAD). io_uring completions of the thread's ring run as task work in the thread,
/// so a worker's receive path is counted here, kernel side included.
pub fn thread_cpu_seconds() -> f64 {
    rusage_cpu_seconds(libc::RUSAGE_THREAD)
}

fn rusage_cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; no other memory is touched.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut u) != 0 {
            return 0.0;
        }
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One worker's storm figures, merged across workers at the end.
#[derive(Debug, Clone, Default)]
pub struct StormStats {
    /// Subscriber connections the storm aborted.
    pub dropped: u64,
    /// Reconnects started (connect submitted or attempted).
    pub reconnects_started: u64,
    /// Reconnects whose response head (SSE 200 / WebSocket 101) was validated.
    pub reconnected: u64,
    /// Reconnects that never completed their handshake (refused, timed out, closed, ...).
    pub reconnect_failed: u64,
    /// Reconnected subscribers that then received a message published after their drop.
    pub resumed: u64,
    /// Harness clock (ns) of the last reconnect handshake and of the last resume; 0 = none.
    pub last_reconnect_ns: u64,
    pub last_resumed_ns: u64,
    /// Drop → reconnect's response head, per subscriber.
    pub reconnect_latency: Latency,
}

impl StormStats {
    pub fn merge(&mut self, o: &StormStats) {
        self.dropped += o.dropped;
        self.reconnects_started += o.reconnects_started;
        self.reconnected += o.reconnected;
        self.reconnect_failed += o.reconnect_failed;
        self.resumed += o.resumed;
        self.last_reconnect_ns = self.last_reconnect_ns.max(o.last_reconnect_ns);
        self.last_resumed_ns = self.last_resumed_ns.max(o.last_resumed_ns);
        self.reconnect_latency.merge(&o.reconnect_latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_known_values() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.record_ns(us * 1000);
        }
        let s = l.summary_us();
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1% of the exact rank value.
        assert!((s.p50 - 500.0).abs() <= 0.6, "{s:?}");
        assert!((s.p99 - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() <= 1.0, "{s:?}");
        let mut m = Latency::default();
        m.record_ns(5_000_000);
        m.merge(&l);
        assert_eq!(m.count(), 1001);
        assert!((m.summary_us().max - 5000.0).abs() <= 5.0);
        assert_eq!(Latency::default().summary_us(), Percentiles::default());
    }

    #[test]
    fn errors_count_by_name_and_merge() {
        let mut e = Errors::default();
        e.add(ErrorKind::Reset);
        e.add(errno_kind(libc::EADDRNOTAVAIL));
        let mut f = Errors::default();
        f.add(ErrorKind::Reset);
        e.merge(&f);
        let m = e.by_name();
        assert_eq!(m.len(), 2);
        assert_eq!(m["connection_reset"], 2);
        assert_eq!(e.total(), 3);
        assert!(ErrorKind::ALL.len() <= 32);
    }

    #[test]
    fn clock_and_cpu_move_forward() {
        let a = now_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(now_ns() > a);
        assert!(cpu_seconds() > 0.0);
    }
}
