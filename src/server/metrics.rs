//! Server counters and their Prometheus text rendering (`GET /metrics`).
//!
//! Counters are process-wide relaxed atomics: each is written by the thread that sees the event
//! (a worker; the signal thread for certificate reloads) and read by the metrics route and the
//! `$stats` publisher (`operator`), so no ordering between them is promised or needed.
//! Names follow Prometheus conventions: `uringcast_` prefix, `_total` on counters, units last.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::engine::EngineStats;

/// Why the server ended a connection (the `reason` label of `uringcast_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum CloseKind {
    PeerClosed,
    ProtocolError,
    RequestTimeout,
    PongTimeout,
    IdleTimeout,
    SlowConsumer,
    Shutdown,
    IoError,
    Done,
    /// The engine's hard bound on queued bytes was reached (see `Config::engine_config`).
    QueueOverflow,
    /// The token a stream's subscriptions needed expired (SSE ends, WebSocket 1008).
    TokenExpired,
    /// Cluster mode: the stream could not start because Redis was unavailable.
    ClusterUnavailable,
    /// Cluster mode: cut to resume from history (Redis lost its data, or trimmed what this
    /// node missed during an outage).
    ClusterResync,
}

impl CloseKind {
    pub const ALL: [CloseKind; 13] = [
        CloseKind::PeerClosed,
        CloseKind::ProtocolError,
        CloseKind::RequestTimeout,
        CloseKind::PongTimeout,
        CloseKind::IdleTimeout,
        CloseKind::SlowConsumer,
        CloseKind::Shutdown,
        CloseKind::IoError,
        CloseKind::Done,
        CloseKind::QueueOverflow,
        CloseKind::TokenExpired,
        CloseKind::ClusterUnavailable,
        CloseKind::ClusterResync,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseKind::PeerClosed => "peer_closed",
            CloseKind::ProtocolError => "protocol_error",
            CloseKind::RequestTimeout => "request_timeout",
            CloseKind::PongTimeout => "pong_timeout",
            CloseKind::IdleTimeout => "idle_timeout",
            CloseKind::SlowConsumer => "slow_consumer",
            CloseKind::Shutdown => "shutdown",
            CloseKind::IoError => "io_error",
            CloseKind::Done => "done",
            CloseKind::QueueOverflow => "queue_overflow",
            CloseKind::TokenExpired => "token_expired",
            CloseKind::ClusterUnavailable => "cluster_unavailable",
            CloseKind::ClusterResync => "cluster_resync",
        }
    }
}

/// The kind of a live connection (the `kind` label of `uringcast_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ConnKind {
    Http,
    Sse,
    WebSocket,
    /// A held long poll (a polling connection between polls counts as `Http`).
    Poll,
}

/// A counter family from another layer: (name, help, [(labels, value)]).
pub type Family<'a> = (&'a str, &'a str, &'a [(&'a str, u64)]);

/// Declares [`Counter`] from one table: each counter's variant, Prometheus name and help
/// text (its doc comment) stand together, so the enum, [`Counter::ALL`] and `/metrics`
/// cannot disagree.
macro_rules! counters {
    ($( #[doc = $help:literal] $variant:ident => $name:literal; )+) => {
        /// The server's plain counters. Code counts with [`Metrics::inc`] / [`Metrics::add`],
        /// never by field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter {
            $( #[doc = $help] $variant, )+
        }

        impl Counter {
            pub const ALL: [Counter; [$( Counter::$variant ),+].len()] = [$( Counter::$variant ),+];

            /// (Prometheus name, help text).
            pub fn describe(self) -> (&'static str, &'static str) {
                match self {
                    $( Counter::$variant => ($name, $help.trim_ascii_start()), )+
                }
            }
        }
    };
}

counters! {
    /// Messages published.
    Published => "uringcast_published_total";
    /// Messages queued to subscribers.
    Delivered => "uringcast_delivered_total";
    /// Messages replayed after Last-Event-ID.
    Replayed => "uringcast_replayed_total";
    /// Reset notices sent because history no longer reached back.
    Resets => "uringcast_resets_total";
    /// Deliveries dropped because a slow consumer was closed.
    Dropped => "uringcast_dropped_total";
    /// Requests answered with a 4xx or 5xx status.
    HttpErrors => "uringcast_http_errors_total";
    /// SSE heartbeat comments and WebSocket pings sent.
    Heartbeats => "uringcast_heartbeats_total";
    /// Connections refused (503) because their IP held connections_per_ip_max.
    RefusedPerIpConnections => "uringcast_refused_connections_per_ip_total";
    /// Connections refused (429) because their IP passed handshakes_per_ip_per_sec.
    RefusedPerIpRate => "uringcast_refused_handshakes_per_ip_total";
    /// Requests for /metrics, /topics or the status page refused (403): not loopback, no admin key.
    MetricsForbidden => "uringcast_metrics_forbidden_total";
    /// TLS handshakes completed.
    TlsHandshakes => "uringcast_tls_handshakes_total";
    /// TLS connections closed on a TLS error (bad handshake, bad record, no common ALPN).
    TlsErrors => "uringcast_tls_errors_total";
    /// Certificate reloads on SIGHUP that took effect.
    TlsReloads => "uringcast_tls_reloads_total";
    /// Certificate reloads on SIGHUP that failed (the previous certificate stays).
    TlsReloadErrors => "uringcast_tls_reload_errors_total";
    /// Messages compressed for permessage-deflate subscribers (once per message and window class).
    DeflateEncoded => "uringcast_ws_deflate_encoded_total";
}

#[derive(Default)]
pub struct Metrics {
    connections: [AtomicU64; 4],
    counters: [AtomicU64; Counter::ALL.len()],
    closed_total: [AtomicU64; CloseKind::ALL.len()],
}

impl Metrics {
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    pub fn add(&self, c: Counter, n: u64) {
        if n != 0 {
            self.counters[c as usize].fetch_add(n, Relaxed);
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Relaxed)
    }

    pub fn conn_opened(&self, kind: ConnKind) {
        self.connections[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn conn_changed(&self, from: ConnKind, to: ConnKind) {
        self.connections[from as usize].fetch_sub(1, Relaxed);
        self.connections[to as usize].fetch_add(1, Relaxed);
    }

    pub fn conn_closed(&self, kind: ConnKind, why: CloseKind) {
        self.connections[kind as usize].fetch_sub(1, Relaxed);
        self.closed_total[why as usize].fetch_add(1, Relaxed);
    }

    /// Open connections of `kind`.
    pub fn connections(&self, kind: ConnKind) -> u64 {
        self.connections[kind as usize].load(Relaxed)
    }

    /// Connections closed for `why`, since the start.
    pub fn closed(&self, why: CloseKind) -> u64 {
        self.closed_total[why as usize].load(Relaxed)
    }

    /// Prometheus text exposition format 0.0.4. `extra` appends counter families of another
    /// layer as they are (the engine's own are rendered by [`render_engine`]).
    pub fn render(&self, extra: &[Family<'_>]) -> String {
        let mut out = String::with_capacity(2048);
        family(
            &mut out,
            "uringcast_connections",
            "Open connections by kind.",
            "gauge",
        );
        for (kind, label) in [
            (ConnKind::Http, "http"),
            (ConnKind::Sse, "sse"),
            (ConnKind::WebSocket, "websocket"),
            (ConnKind::Poll, "poll"),
        ] {
            let v = self.connections[kind as usize].load(Relaxed);
            let _ = writeln!(out, "uringcast_connections{{kind=\"{label}\"}} {v}");
        }
        for c in Counter::ALL {
            let (name, help) = c.describe();
            family(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", self.get(c));
        }
        family(
            &mut out,
            "uringcast_closed_total",
            "Connections closed, by reason.",
            "counter",
        );
        for kind in CloseKind::ALL {
            let v = self.closed_total[kind as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "uringcast_closed_total{{reason=\"{}\"}} {v}",
                kind.label()
            );
        }
        for (name, help, series) in extra {
            family(&mut out, name, help, "counter");
            for (labels, v) in *series {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        out
    }
}

/// A family's `# HELP` and `# TYPE` lines; its samples follow.
fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The engine's plain counters, declared like [`Counter`]: a field of [`EngineStats`], its
/// Prometheus name, and its help text as the doc comment.
macro_rules! engine_counters {
    ($( #[doc = $help:literal] $field:ident => $name:literal; )+) => {
        [$( ($name, $help.trim_ascii_start(), |s| &s.$field) ),+]
    };
}

/// (name, help, which counter).
type EngineCounter = (&'static str, &'static str, fn(&EngineStats) -> &AtomicU64);
const ENGINE_COUNTERS: [EngineCounter; 12] = engine_counters! {
    /// Connections accepted.
    accepted_total => "uringcast_accepted_total";
    /// Accepted connections opened without a peer address (lookup failed or unsupported).
    peer_unknown_total => "uringcast_peer_unknown_total";
    /// Completions for reused slots (ignored).
    stale_completions_total => "uringcast_stale_completions_total";
    /// Receives re-armed after the buffer ring ran empty.
    recv_nobufs_total => "uringcast_recv_nobufs_total";
    /// Times reading a connection paused for its queue.
    read_paused_total => "uringcast_read_paused_total";
    /// Bytes received while reading was paused, held.
    read_held_bytes_total => "uringcast_read_held_bytes_total";
    /// Provided receive buffers handed to the kernel.
    recv_buffers_added_total => "uringcast_recv_buffers_added_total";
    /// Stalled accepts found and restarted.
    accept_stalls_total => "uringcast_accept_stalls_total";
    /// Accepts paused for a nearly full file table.
    accept_paused_total => "uringcast_accept_paused_total";
    /// Reaps that found a completion queue overflowed (completions parked in the kernel).
    cq_overflow_total => "uringcast_cq_overflow_total";
    /// Bytes received.
    bytes_received_total => "uringcast_received_bytes_total";
    /// Bytes sent.
    bytes_sent_total => "uringcast_sent_bytes_total";
};

/// The engine's counters in Prometheus text: accepts, accept errors by kind, read pauses,
/// buffers, stale completions, bytes moved.
pub fn render_engine(stats: &EngineStats) -> String {
    use crate::engine::AcceptErrorKind;
    let mut out = String::with_capacity(1024);
    for (name, help, c) in ENGINE_COUNTERS {
        family(&mut out, name, help, "counter");
        let _ = writeln!(out, "{name} {}", EngineStats::get(c(stats)));
    }
    family(
        &mut out,
        "uringcast_accept_errors_total",
        "Accept failures, by kind.",
        "counter",
    );
    for kind in AcceptErrorKind::ALL {
        let v = stats.accept_errors(kind);
        let _ = writeln!(
            out,
            "uringcast_accept_errors_total{{kind=\"{}\"}} {v}",
            kind.label()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_opened_and_closed_connections() {
        let m = Metrics::default();
        m.conn_opened(ConnKind::Http);
        m.conn_opened(ConnKind::Http);
        m.conn_changed(ConnKind::Http, ConnKind::Sse);
        m.conn_closed(ConnKind::Http, CloseKind::RequestTimeout);
        let text = m.render(&[("uringcast_accepted_total", "Accepted.", &[("", 3)])]);
        assert!(
            text.contains("uringcast_connections{kind=\"sse\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("uringcast_connections{kind=\"http\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("uringcast_closed_total{reason=\"request_timeout\"} 1\n"));
        assert!(text.contains("uringcast_accepted_total 3\n"));
        assert!(text.contains(
            "# HELP uringcast_published_total Messages published.\n\
             # TYPE uringcast_published_total counter\n\
             uringcast_published_total 0\n"
        ));
        // Every sample line belongs to a family announced with TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let family = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }

    #[test]
    fn render_engine_announces_each_family() {
        let text = render_engine(&EngineStats::default());
        assert!(text.starts_with(
            "# HELP uringcast_accepted_total Connections accepted.\n\
             # TYPE uringcast_accepted_total counter\n\
             uringcast_accepted_total 0\n"
        ));
        assert!(text.contains("# TYPE uringcast_accept_errors_total counter\n"));
        assert_eq!(text.matches("# HELP ").count(), ENGINE_COUNTERS.len() + 1);
    }
}
