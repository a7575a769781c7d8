//! `uringcast-bench` against the real `uringcast` server, each scenario at small N, its figures
//! checked against known truth: exactly P x T deliveries per subscriber and zero loss; a
//! deliberately skipped sequence number reported as missing once per subscriber; every held
//! connection receiving heartbeats; echoes matching; limits and bad flags refused up front.
//!
//! The harness binary belongs to the `uringcast-bench` workspace member, which this package's
//! tests do not build, so the first test to need it runs `cargo build -p uringcast-bench` (same
//! target directory, same profile) and finds it beside `uringcast`. Every run is bounded by
//! the harness's own `--max-time` and by a watchdog here.

mod common;

use common::bench_bin;

use common::Server;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: i32,
    json: serde_json::Value,
    table: String,
}

/// Run the harness with `--json -` (JSON on stdout, table on stderr); kill it after 90 s.
fn bench(args: &[&str]) -> Run {
    bench_workers(args, 1)
}

fn bench_workers(args: &[&str], workers: usize) -> Run {
    let mut child = Command::new(bench_bin())
        .args(args)
        .args(["--json", "-", "--max-time", "60s", "--workers"])
        .arg(workers.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uringcast-bench");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("uringcast-bench {args:?} ran past 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap();
    let table = t_err.join().unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    Run {
        code: status.code().unwrap_or(-1),
        json,
        table,
    }
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

fn server() -> Server {
    Server::start(&[
        "--workers",
        "1",
        "--heartbeat-interval",
        "200ms",
        "--echo-path",
        "/echo",
        "--ws-publish",
        "true",
    ])
}

#[test]
fn fanout_sse_delivers_exactly_p_times_t_to_every_subscriber() {
    let s = server();
    let (conns, topics, rate, secs) = (20u64, 2u64, 40u64, 1u64);
    let r = bench(&[
        "fanout",
        "--url",
        &s.url("/sse?topic={topic}"),
        "--publish-url",
        &s.url("/publish?topic={topic}"),
        "--conns",
        &conns.to_string(),
        "--topics",
        &topics.to_string(),
        "--msg-rate",
        &rate.to_string(),
        "--duration",
        &format!("{secs}s"),
        "--drain",
        "10s",
    ]);
    assert_eq!(r.code, 0, "{}", r.table);
    let j = &r.json;
    assert_eq!(n(j, "connections_held"), conns);
    assert_eq!(n(j, "published"), rate * secs * topics);
    // Every subscriber gets its topic's P x T messages, none twice, none missing.
    assert_eq!(n(j, "deliveries"), conns * rate * secs, "{}", r.table);
    assert_eq!(n(j, "missing"), 0);
    assert_eq!(n(j, "duplicates"), 0);
    assert_eq!(n(j, "out_of_order"), 0);
    assert_eq!(n(&j["latency_us"], "count"), conns * rate * secs);
    assert!(j["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(j["errors"].as_object().unwrap().is_empty(), "{}", r.table);
}

#[test]
fn fanout_ws_subscribers_with_http_and_ws_publishers() {
    let s = server();
    for publish in [s.url("/publish?topic={topic}"), s.ws_url("/ws")] {
        let r = bench(&[
            "fanout",
            "--url",
            &s.ws_url("/ws?topic={topic}"),
            "--publish-url",
            &publish,
            "--conns",
            "10",
            "--topics",
            "2",
            "--msg-rate",
            "30",
            "--duration",
            "1s",
            "--drain",
            "10s",
        ]);
        assert_eq!(r.code, 0, "publish via {publish}: {}", r.table);
        assert_eq!(n(&r.json, "deliveries"), 10 * 30, "{}", r.table);
        assert_eq!(n(&r.json, "missing"), 0);
    }
}

#[test]
fn fanout_ws_subscribe_by_message_waits_for_the_ack() {
    let s = server();
    let r = bench(&[
        "fanout",
        "--url",
        &s.ws_url("/ws"),
        "--ws-subscribe-msg",
        r#"{"op":"subscribe","topic":"{topic}"}"#,
        "--publish-url",
        &s.url("/publish?topic={topic}"),
        "--conns",
        "10",
        "--topics",
        "1",
        "--msg-rate",
        "50",
        "--duration",
        "1s",
        "--drain",
        "10s",
    ]);
    assert_eq!(r.code, 0, "{}", r.table);
    assert_eq!(n(&r.json, "deliveries"), 10 * 50, "{}", r.table);
    assert_eq!(n(&r.json, "missing"), 0);
}

#[test]
fn a_skipped_message_is_reported_missing_once_per_subscriber() {
    let s = server();
    let r = bench(&[
        "fanout",
        "--url",
        &s.url("/sse?topic={topic}"),
        "--publish-url",
        &s.url("/publish?topic={topic}"),
        "--conns",
        "12",
        "--topics",
        "3",
        "--msg-rate",
        "20",
        "--duration",
        "1s",
        "--skip-seq",
        "5",
        "--drain",
        "10s",
    ]);
    assert_eq!(r.code, 1, "loss must fail the run: {}", r.table);
    let j = &r.json;
    assert_eq!(n(j, "missing"), 12, "{}", r.table);
    assert_eq!(n(j, "deliveries"), 12 * 19);
    assert_eq!(n(j, "duplicates"), 0);
    assert!(r.table.contains("12 missing"), "{}", r.table);
}

#[test]
fn hold_sse_and_ws_every_connection_keeps_hearing_heartbeats() {
    let s = server();
    for url in [s.url("/sse?topic=h"), s.ws_url("/ws?topic=h")] {
        let r = bench(&[
            "hold",
            "--url",
            &url,
            "--conns",
            "40",
            "--rate",
            "400",
            "--duration",
            "2s",
            // Generous: a loaded 2-core CI box can stall a process for hundreds of ms; the
            // bound still catches a connection that hears nothing (see the stale test).
            "--heartbeat-max",
            "1500ms",
        ]);
        assert_eq!(r.code, 0, "{url}: {}", r.table);
        let j = &r.json;
        assert_eq!(n(j, "connections_held"), 40);
        assert_eq!(n(j, "stale"), 0);
        // 200 ms heartbeats over a 2 s hold: 10 each on time, at least 4 even when stalled.
        assert!(n(j, "heartbeats") >= 40 * 4, "{}", r.table);
        assert_eq!(n(&j["connect_latency_us"], "count"), 40);
        assert!(j["connect_rate"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn hold_reports_silent_connections_as_stale() {
    // Heartbeats every 5 s, a 300 ms silence bound: every connection goes stale.
    let s = Server::start(&["--workers", "1", "--heartbeat-interval", "5s"]);
    let r = bench(&[
        "hold",
        "--url",
        &s.url("/sse?topic=q"),
        "--conns",
        "5",
        "--duration",
        "1s",
        "--heartbeat-max",
        "300ms",
    ]);
    assert_eq!(r.code, 1, "{}", r.table);
    assert_eq!(n(&r.json, "stale"), 5);
}

#[test]
fn echo_round_trips_match_what_was_sent() {
    let s = server();
    let r = bench(&[
        "echo",
        "--url",
        &s.ws_url("/echo"),
        "--conns",
        "8",
        "--inflight",
        "4",
        "--size",
        "100",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 0, "{}", r.table);
    let j = &r.json;
    assert_eq!(n(j, "connections_held"), 8);
    assert!(n(j, "echoes") > 100, "{}", r.table);
    assert_eq!(n(&j["latency_us"], "count"), n(j, "echoes"));
    assert!(j["errors"].as_object().unwrap().is_empty(), "{}", r.table);
}

#[test]
fn connect_storm_counts_handshakes_and_refusals() {
    let s = server();
    let r = bench(&["connect", "--url", &s.ws_url("/ws"), "--conns", "300"]);
    assert_eq!(r.code, 0, "{}", r.table);
    assert_eq!(n(&r.json, "connections_opened"), 300);
    assert_eq!(n(&r.json, "connect_failed"), 0);
    assert!(r.json["connect_rate"].as_f64().unwrap() > 0.0);

    drop(s);
    // Nobody listens on a port that is bound but not listening: every connect is refused. The
    // port stays ours for the whole run, so no other test's server can take it meanwhile.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = closed.local_addr().unwrap().as_socket().unwrap();
    let r = bench(&[
        "connect",
        "--url",
        &format!("http://{addr}/sse"),
        "--conns",
        "20",
    ]);
    assert_eq!(r.code, 1, "{}", r.table);
    assert_eq!(n(&r.json, "connect_failed"), 20);
    assert_eq!(r.json["errors"]["connect_refused"], 20, "{}", r.table);
}

#[test]
fn limits_and_bad_flags_stop_before_any_connection() {
    let out = Command::new(bench_bin())
        .args([
            "hold",
            "--url",
            "http://127.0.0.1:9/sse",
            "--conns",
            "100000",
        ])
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--src"), "{err}");
    let out = Command::new(bench_bin())
        .args(["echo", "--url", "http://127.0.0.1:9/echo", "--conns", "1"])
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ws://"));
}

/// `--json PATH` also writes PATH with `.svg`: the timeline plot. Its rate line carries every
/// delivery of the run, and the JSON timeline adds up to the deliveries.
#[test]
fn json_to_a_file_writes_the_timeline_svg_beside_it() {
    let s = server();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("run.json");
    let svg_path = dir.join("run.svg");
    let _ = std::fs::remove_file(&svg_path);
    let out = Command::new(bench_bin())
        .args(["fanout", "--url", &s.url("/sse?topic={topic}")])
        .args(["--publish-url", &s.url("/publish?topic={topic}")])
        .args(["--conns", "10", "--topics", "1", "--msg-rate", "50"])
        .args(["--duration", "2s", "--drain", "10s", "--max-time", "60s"])
        .args(["--workers", "1", "--quiet", "--json"])
        .arg(&json_path)
        .output()
        .expect("run uringcast-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let timeline = j["timeline"].as_array().expect("timeline");
    let total: f64 = timeline
        .iter()
        .map(|p| p["per_s"].as_f64().unwrap() * p["width_s"].as_f64().unwrap())
        .sum();
    assert_eq!(total as u64, n(&j, "deliveries"));
    assert_eq!(n(&j, "deliveries"), 10 * 50 * 2);
    let svg = std::fs::read_to_string(&svg_path).expect("the SVG beside the JSON");
    assert!(svg.starts_with("<svg ") && svg.contains("deliveries / s"));
    assert_eq!(
        svg.matches("<polyline").count(),
        4,
        "p50, p99, max and the rate"
    );
}

/// `calibrate` against its built-in source, SSE and WebSocket: every message counted once, in
/// order, none lost; the ceiling is reported; with 2 workers and 10 connections both workers
/// receive (connections spread over every worker, not only the first).
#[test]
fn calibrate_reports_the_harness_ceiling_with_every_worker_receiving() {
    for proto in ["sse", "ws"] {
        let r = bench_workers(
            &[
                "calibrate",
                "--proto",
                proto,
                "--conns",
                "10",
                "--duration",
                "1s",
                "--batch",
                "4",
            ],
            2,
        );
        assert_eq!(r.code, 0, "{}", r.table);
        let j = &r.json;
        assert_eq!(n(j, "connections_held"), 10);
        assert!(n(j, "deliveries") > 0, "{}", r.table);
        assert_eq!(
            n(j, "missing") + n(j, "duplicates") + n(j, "out_of_order"),
            0
        );
        assert!(j["errors"].as_object().unwrap().is_empty(), "{}", r.table);
        let c = &j["calibration"];
        assert_eq!(c["proto"], proto);
        assert!(c["deliveries_per_harness_cpu_s"].as_f64().unwrap() > 0.0);
        let workers = c["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2, "{c}");
        for w in workers {
            assert!(
                w["messages"].as_u64().unwrap() > 0,
                "a worker received nothing: {c}"
            );
        }
        let in_window: u64 = workers
            .iter()
            .map(|w| w["messages"].as_u64().unwrap())
            .sum();
        assert_eq!(in_window, c["deliveries"].as_u64().unwrap());
        assert!(in_window <= n(j, "deliveries"));
        assert!(r.table.contains("ceiling"), "{}", r.table);
    }
}
