//! Reconnect storms (`fanout --storm-at D`): at D after publishing started, every subscriber
//! connection is dropped at once and reconnected at once, each SSE subscriber sending
//! `Last-Event-ID` with the raw text of the last `id:` it received (a WebSocket one sends its
//! last delivery's `id` as `{since}` in its subscribe message). Sequence tracking carries over,
//! so a resume that misses a message (or that the server answers with `event: reset` /
//! `{"op":"reset"}`) counts as loss in the run's usual figures.
//!
//! ```text
//!   drop_ns ─┬─ every ready subscriber aborted (engine close of its direct descriptor)
//!            ├─ reconnects start, at most `connecting_max` handshakes in flight per worker
//!            ├─ last reconnect handshake done ......... all_reconnected_s = that - drop
//!            └─ last subscriber sees a seq published
//!               after its drop (> threshold) ......... all_resumed_s = that - drop
//! ```
//!
//! A subscriber's phase only moves forward: `Held → Dropping → Reconnecting → Resuming →
//! Resumed`. A reconnect that fails (refused, timed out, closed before its head) is not
//! retried: it counts in `reconnect_failed`, and its subscription still counts what it missed.
//!
//! This module holds the per-connection phase and the report of the per-worker figures
//! (`stats::StormStats`, kept with the other counters); the
//! transport (`driver`) moves the connections. No socket, no clock, no thread.

use crate::stats::{Percentiles, StormStats};
use serde::Serialize;

/// Where one subscriber is in the storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// The first connection (no storm yet, or not a subscriber).
    #[default]
    Held,
    /// Aborted by the storm; `on_close` queues the reconnect.
    Dropping,
    /// The reconnect is connecting or waiting for its response head.
    Reconnecting,
    /// Reconnected; waiting for a message published after the drop.
    Resuming,
    /// Received a message published after the drop: resumed.
    Resumed,
}

/// The storm part of the report (`storm` in the JSON; absent from runs without `--storm-at`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StormReport {
    /// When the drop happened, seconds after publishing started.
    pub at_s: f64,
    pub dropped: u64,
    pub reconnected: u64,
    /// Reconnects that failed: refused, timed out or closed before their head (see `errors`).
    pub reconnect_failed: u64,
    /// Reconnects completed per second, from the drop to the last one.
    pub reconnect_rate: f64,
    /// Drop → every dropped subscriber reconnected (`null` when some never did).
    pub all_reconnected_s: Option<f64>,
    pub resumed: u64,
    /// Drop → every dropped subscriber received a message published after the drop (`null`
    /// when some never did). Includes up to one publish interval of waiting for that message.
    pub all_resumed_s: Option<f64>,
    /// `event: reset` answers: the history no longer reached back to a Last-Event-ID.
    pub resets: u64,
    /// Drop → the reconnect's response head, per subscriber.
    pub reconnect_latency_us: Percentiles,
}

impl StormReport {
    /// `drop_ns` is the harness clock when the orchestrator ordered the drop, `at_s` the same
    /// moment in seconds after publishing started.
    pub fn new(s: &StormStats, drop_ns: u64, at_s: f64, resets: u64) -> StormReport {
        let since_drop = |ns: u64| ns.saturating_sub(drop_ns) as f64 / 1e9;
        let all = |n: u64| s.dropped > 0 && n == s.dropped;
        let reconnect_s = since_drop(s.last_reconnect_ns);
        StormReport {
            at_s: round3(at_s),
            dropped: s.dropped,
            reconnected: s.reconnected,
            reconnect_failed: s.reconnect_failed,
            reconnect_rate: if reconnect_s > 0.0 {
                (s.reconnected as f64 / reconnect_s).round()
            } else {
                0.0
            },
            all_reconnected_s: all(s.reconnected).then(|| round3(reconnect_s)),
            resumed: s.resumed,
            all_resumed_s: all(s.resumed).then(|| round3(since_drop(s.last_resumed_ns))),
            resets,
            reconnect_latency_us: s.reconnect_latency.summary_us(),
        }
    }

    /// The storm's own success criteria, in words (empty = all met).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dropped == 0 {
            out.push("the storm dropped no connection".to_owned());
        }
        if self.reconnected < self.dropped || self.reconnect_failed > 0 {
            out.push(format!(
                "{} of {} dropped subscribers reconnected ({} reconnects failed)",
                self.reconnected, self.dropped, self.reconnect_failed
            ));
        }
        if self.resumed < self.dropped {
            out.push(format!(
                "{} of {} reconnected subscribers received a message published after the drop",
                self.resumed, self.dropped
            ));
        }
        if self.resets > 0 {
            out.push(format!(
                "{} resumes were answered with `event: reset` (history did not reach back)",
                self.resets
            ));
        }
        out
    }

    /// Rows for the text table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let secs = |v: Option<f64>| v.map_or_else(|| "never".to_owned(), |s| format!("{s:.3} s"));
        vec![
            (
                "storm",
                format!(
                    "{} dropped at {:.3} s, {} reconnected, {} failed, {} resumed, {} resets",
                    self.dropped,
                    self.at_s,
                    self.reconnected,
                    self.reconnect_failed,
                    self.resumed,
                    self.resets
                ),
            ),
            (
                "reconnect rate",
                format!(
                    "{:.0} /s, all reconnected after {}, all resumed after {}",
                    self.reconnect_rate,
                    secs(self.all_reconnected_s),
                    secs(self.all_resumed_s)
                ),
            ),
            ("reconnect latency", pct_line(&self.reconnect_latency_us)),
        ]
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn pct_line(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".to_owned();
    }
    format!(
        "p50 {} p90 {} p99 {} max {} us (n={})",
        p.p50, p.p90, p.p99, p.max, p.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_times_count_from_the_drop_and_need_everyone() {
        let mut a = StormStats {
            dropped: 3,
            reconnects_started: 3,
            reconnected: 3,
            resumed: 3,
            last_reconnect_ns: 1_500_000_000,
            last_resumed_ns: 1_700_000_000,
            ..StormStats::default()
        };
        a.reconnect_latency.record_ns(400_000_000);
        let b = StormStats {
            dropped: 1,
            reconnects_started: 1,
            reconnected: 1,
            resumed: 1,
            last_reconnect_ns: 2_000_000_000,
            last_resumed_ns: 2_250_000_000,
            ..StormStats::default()
        };
        a.merge(&b);
        // Dropped at 1.0 s on the harness clock: 4 reconnects in 1.0 s.
        let r = StormReport::new(&a, 1_000_000_000, 2.0, 0);
        assert_eq!((r.dropped, r.reconnected, r.resumed), (4, 4, 4));
        assert_eq!(r.all_reconnected_s, Some(1.0));
        assert_eq!(r.all_resumed_s, Some(1.25));
        assert_eq!(r.reconnect_rate, 4.0);
        assert!(r.failures().is_empty(), "{:?}", r.failures());

        // One reconnect failed and one subscriber never resumed: no "all" times, two failures.
        a.reconnected = 3;
        a.reconnect_failed = 1;
        a.resumed = 3;
        let r = StormReport::new(&a, 1_000_000_000, 2.0, 2);
        assert_eq!((r.all_reconnected_s, r.all_resumed_s), (None, None));
        let f = r.failures();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].contains("3 of 4") && f[2].contains("reset"), "{f:?}");
        let text: String = r.rows().iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        assert!(text.contains("all resumed after never"), "{text}");
    }
}
