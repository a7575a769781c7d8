//! The one report of a run: printed as a human table and written as JSON from the same struct,
//! so the two can never disagree. Also the live progress line (terminal only).
//!
//! Nothing here measures; it only formats what `Stats` and the scenario collected.

use crate::stats::{Live, Percentiles, Stats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The run's parameters (every flag, resolved).
    pub params: serde_json::Value,
    /// argv joined with spaces, shell-quoted where needed.
    pub command_line: String,
    /// Unix time the run started, seconds.
    pub started_unix_s: u64,
    pub elapsed_s: f64,
    pub connections_target: u64,
    pub connections_opened: u64,
    /// Open at the end of the hold/measurement phase.
    pub connections_held: u64,
    pub connect_failed: u64,
    /// Successful handshakes per second over the ramp.
    pub connect_rate: f64,
    /// Connections lost after their handshake, before the scenario ended.
    pub drops: u64,
    /// `fanout --follow`: subscribers that moved to another target after their connection
    /// ended (each move counted, a refused attempt included).
    pub followed: u64,
    pub published: u64,
    pub publish_failed: u64,
    pub deliveries: u64,
    pub deliveries_expected: u64,
    pub deliveries_per_s: f64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Out-of-order arrivals older than the tracker window (classification assumed).
    pub ambiguous: u64,
    pub heartbeats: u64,
    /// Held connections that received nothing for longer than `--heartbeat-max`.
    pub stale: u64,
    pub echoes: u64,
    pub echoes_per_s: f64,
    /// Delivery latency (fanout, from the intended send time) or round trip (echo).
    pub latency_us: Percentiles,
    pub connect_latency_us: Percentiles,
    pub errors: BTreeMap<String, u64>,
    /// Harness CPU time / wall time x 100; 100 = one core busy.
    pub harness_cpu_percent: f64,
    /// CPU seconds of the harness's worker threads (user + system, their rings' completions
    /// included) over the measured phase: echo, publish + drain, or the calibration window.
    /// 0 when the scenario has no such phase.
    pub harness_worker_cpu_s: f64,
    /// Deliveries plus echoes in the measured phase per harness worker CPU-second. Read it
    /// against `calibration.deliveries_per_harness_cpu_s` of a `calibrate` run: near that
    /// ceiling, the harness, not the server, set the pace.
    pub messages_per_harness_cpu_s: f64,
    /// `calibrate`: the harness's own ceiling against the built-in source; `null` otherwise.
    pub calibration: Option<Calibration>,
    pub success: bool,
    /// Success criteria that failed, in words.
    pub failures: Vec<String>,
    /// Limits that may have shaped the run.
    pub warnings: Vec<String>,
    /// Reconnect storm figures (`fanout --storm-at`); `null` otherwise.
    pub storm: Option<crate::storm::StormReport>,
    /// Deliveries (or echoes) per second and their latency percentiles, per interval of the
    /// harness clock (one second, wider for long runs; see `timeline`).
    pub timeline: Vec<crate::timeline::TimelinePoint>,
}

/// What a `calibrate` run measured over its window.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// `sse` or `ws`.
    pub proto: String,
    /// Messages per send of the source.
    pub batch: u32,
    /// Envelope padding (`--size`).
    pub size: usize,
    pub harness_workers: usize,
    pub source_workers: usize,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Deliveries in the window, all harness workers.
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// The ceiling: deliveries per harness worker CPU-second.
    pub deliveries_per_harness_cpu_s: f64,
    /// Each harness worker's share of the window.
    pub workers: Vec<WorkerShare>,
}

/// One harness worker over a measured phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WorkerShare {
    pub cpu_s: f64,
    /// Deliveries plus echoes.
    pub messages: u64,
}

impl Report {
    /// A report with every figure taken from `stats`; the scenario fills in the rest.
    pub fn new(scenario: &str, params: serde_json::Value, stats: &Stats) -> Report {
        Report {
            scenario: scenario.to_owned(),
            params,
            command_line: command_line(std::env::args()),
            started_unix_s: 0,
            elapsed_s: 0.0,
            connections_target: 0,
            connections_opened: stats.connects_ok,
            connections_held: 0,
            connect_failed: stats.connects_started.saturating_sub(stats.connects_ok),
            connect_rate: 0.0,
            drops: stats.drops,
            followed: stats.followed,
            published: stats.published,
            publish_failed: stats.publish_failed,
            deliveries: stats.deliveries,
            deliveries_expected: 0,
            deliveries_per_s: 0.0,
            missing: stats.missing,
            duplicates: stats.duplicates,
            out_of_order: stats.out_of_order,
            ambiguous: stats.ambiguous,
            heartbeats: stats.heartbeats,
            stale: stats.stale,
            echoes: stats.echoes,
            echoes_per_s: 0.0,
            latency_us: stats.latency.summary_us(),
            connect_latency_us: stats.connect_latency.summary_us(),
            errors: stats.errors.by_name(),
            harness_cpu_percent: 0.0,
            harness_worker_cpu_s: 0.0,
            messages_per_harness_cpu_s: 0.0,
            calibration: None,
            success: false,
            failures: Vec::new(),
            warnings: Vec::new(),
            storm: None,
            timeline: stats.timeline.points(),
        }
    }

    /// Record a failed success criterion.
    pub fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// Set `success` from the failures collected.
    pub fn finish(&mut self) {
        self.success = self.failures.is_empty();
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        row("scenario", self.scenario.clone());
        row("command", self.command_line.clone());
        row("elapsed", format!("{:.1} s", self.elapsed_s));
        row(
            "connections",
            format!(
                "{} held / {} opened / {} target, {} failed, {} dropped",
                self.connections_held,
                self.connections_opened,
                self.connections_target,
                self.connect_failed,
                self.drops
            ),
        );
        row("connect rate", format!("{:.0} /s", self.connect_rate));
        row("connect latency", pct(&self.connect_latency_us));
        if self.published > 0
            || self.deliveries > 0
            || matches!(self.scenario.as_str(), "fanout" | "calibrate")
        {
            row(
                "published",
                format!("{} ({} failed)", self.published, self.publish_failed),
            );
            let deliveries = if self.scenario == "calibrate" {
                format!(
                    "{}, {:.0} /s in the measured window",
                    self.deliveries, self.deliveries_per_s
                )
            } else {
                format!(
                    "{} of {} expected, {:.0} /s",
                    self.deliveries, self.deliveries_expected, self.deliveries_per_s
                )
            };
            row("deliveries", deliveries);
            row(
                "loss",
                format!(
                    "{} missing, {} duplicate, {} out of order ({} ambiguous)",
                    self.missing, self.duplicates, self.out_of_order, self.ambiguous
                ),
            );
        }
        if let Some(s) = &self.storm {
            for (k, v) in s.rows() {
                row(k, v);
            }
        }
        if self.echoes > 0 || self.scenario == "echo" {
            row(
                "echoes",
                format!("{} ({:.0} /s)", self.echoes, self.echoes_per_s),
            );
        }
        if self.latency_us.count > 0 {
            row("latency", pct(&self.latency_us));
        }
        if self.scenario == "hold" {
            row(
                "heartbeats",
                format!(
                    "{} received, {} stale connections",
                    self.heartbeats, self.stale
                ),
            );
        }
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row("errors", errors);
        row("harness cpu", format!("{:.0} %", self.harness_cpu_percent));
        if self.harness_worker_cpu_s > 0.0 {
            row(
                "harness workers",
                format!(
                    "{:.2} CPU-s in the measured phase, {:.0} messages per harness CPU-s",
                    self.harness_worker_cpu_s, self.messages_per_harness_cpu_s
                ),
            );
        }
        if let Some(c) = &self.calibration {
            let shares: Vec<String> = c
                .workers
                .iter()
                .map(|w| {
                    // Near 100 % busy, the harness set the pace; well below, the source did.
                    let busy = if c.window_s > 0.0 {
                        w.cpu_s / c.window_s * 100.0
                    } else {
                        0.0
                    };
                    format!("{} in {:.2} CPU-s, {busy:.0} % busy", w.messages, w.cpu_s)
                })
                .collect();
            row(
                "calibration",
                format!(
                    "{} source ({} worker(s), {} message(s) per send): {:.0} deliveries/s, \
                     ceiling {:.0} deliveries per harness CPU-s ({} harness worker(s): {})",
                    c.proto,
                    c.source_workers,
                    c.batch,
                    c.deliveries_per_s,
                    c.deliveries_per_harness_cpu_s,
                    c.harness_workers,
                    shares.join(", ")
                ),
            );
        }
        for w in &self.warnings {
            row("warning", w.clone());
        }
        for f in &self.failures {
            row("FAILED", f.clone());
        }
        row(
            "result",
            if self.success { "ok" } else { "FAILED" }.to_owned(),
        );
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:>width$}  {v}\n"))
            .collect()
    }
}

fn pct(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".to_owned();
    }
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} us (n={})",
        p.p50, p.p90, p.p99, p.p999, p.max, p.count
    )
}

/// argv as one line a shell would accept again.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The live progress line: `open/target, msgs/s, errors`, rewritten in place on stderr once a
/// second, only when stderr is a terminal. Stops when the returned guard is dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(live: Arc<Live>, target: u64, quiet: bool) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut last_msgs = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Wake often so the end of the run is not held up by a second-long sleep.
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let msgs = live.messages();
                    let line = format!(
                        "\r[{:>5.0}s] open {}/{}  msgs {}/s  errors {}   ",
                        start.elapsed().as_secs_f64(),
                        Live::get(&live.open),
                        target,
                        msgs - last_msgs,
                        live.errors()
                    );
                    last_msgs = msgs;
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
                let _ = std::io::stderr().write_all(b"\n");
            })
        });
        Progress { stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorKind;

    #[test]
    fn json_has_every_field_the_issue_names() {
        let mut stats = Stats::default();
        stats.record_latency(1_500_000_000, 120_000);
        stats.errors.add(ErrorKind::Reset);
        stats.deliveries = 7;
        let mut r = Report::new("fanout", serde_json::json!({"conns": 3}), &stats);
        r.fail("2 missing".into());
        r.finish();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "scenario",
            "params",
            "command_line",
            "connections_held",
            "connect_rate",
            "published",
            "deliveries",
            "missing",
            "duplicates",
            "out_of_order",
            "latency_us",
            "connect_latency_us",
            "errors",
            "harness_cpu_percent",
            "harness_worker_cpu_s",
            "messages_per_harness_cpu_s",
            "calibration",
            "timeline",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                v["latency_us"].get(key).is_some(),
                "missing latency_us.{key}"
            );
        }
        assert_eq!(v["deliveries"], 7);
        assert_eq!(v["timeline"][1]["per_s"], 1.0, "the sample of second 1");
        assert_eq!(v["errors"]["connection_reset"], 1);
        assert_eq!(v["success"], false);
        let text = r.to_text();
        assert!(text.contains("FAILED  2 missing"), "{text}");
        assert!(text.contains("connection_reset=1"));
    }

    #[test]
    fn command_lines_quote_what_needs_it() {
        let argv = [
            "bench",
            "--envelope",
            "a b",
            "--url",
            "http://h:1/x?t={topic}",
        ];
        let line = command_line(argv.iter().map(|s| s.to_string()));
        assert_eq!(
            line,
            "bench --envelope 'a b' --url 'http://h:1/x?t={topic}'"
        );
    }
}
