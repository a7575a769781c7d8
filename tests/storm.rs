//! Reconnect storms against the real `uringcast` server: `uringcast-bench fanout --storm-at`
//! holds SSE subscribers, drops them all at once while publishing goes on, and reconnects them
//! all at once with `Last-Event-ID` (WebSocket: `since` in the subscribe message). With the
//! default history every subscriber is accepted,
//! resumes and misses nothing; with a one-message history and a fast publisher the resume
//! cannot reach back, and the report must count the loss (so the first test can fail).
//!
//! The harness binary is built on first use with `cargo build -p uringcast-bench` (same target
//! directory and profile), as in `bench_scenarios.rs`. Each run is bounded by the harness's
//! `--max-time` and by a watchdog here.

mod common;

use common::bench_bin;

use common::Server;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// WebSocket subscribers subscribe by message, so a resume can carry `since`.
const WS_SUBSCRIBE: &str = r#"{"op":"subscribe","topic":"{topic}","since":"{since}"}"#;

/// A storm run: `--json -` (JSON on stdout, table on stderr), killed after 120 s. `subscribers`
/// are the flags naming the subscriber URL (and for WebSocket the subscribe message).
fn storm(
    s: &Server,
    subscribers: &[&str],
    conns: u32,
    msg_rate: u32,
    secs: u32,
    at: &str,
) -> (i32, serde_json::Value) {
    let mut child = Command::new(bench_bin())
        .arg("fanout")
        .args(subscribers)
        .args(["--publish-url", &s.url("/publish?topic={topic}")])
        .args([
            "--conns",
            &conns.to_string(),
            "--msg-rate",
            &msg_rate.to_string(),
        ])
        .args(["--duration", &format!("{secs}s"), "--storm-at", at])
        // A drain shorter than the server's 10 s request timeout, which would close the idle
        // publisher connection with a 408 the publisher counts as an invalid answer.
        .args([
            "--drain",
            "5s",
            "--connect-timeout",
            "30s",
            "--workers",
            "1",
        ])
        .args(["--max-time", "90s", "--json", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uringcast-bench");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("uringcast-bench storm ran past 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let table = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {table}"));
    (out.status.code().unwrap_or(-1), json)
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

#[test]
fn storm_of_2000_every_subscriber_resumes_with_nothing_missed() {
    let s = Server::start(&["--workers", "1", "--connections-max", "10000"]);
    let sse = ["--url".to_owned(), s.url("/sse?topic={topic}")];
    let sse: Vec<&str> = sse.iter().map(String::as_str).collect();
    resumes_with_nothing_missed(&s, &sse, 2000);
}

#[test]
fn storm_of_websocket_subscribers_resumes_with_since() {
    let s = Server::start(&["--workers", "1"]);
    let url = s.ws_url("/ws");
    resumes_with_nothing_missed(
        &s,
        &["--url", &url, "--ws-subscribe-msg", WS_SUBSCRIBE],
        500,
    );
}

fn resumes_with_nothing_missed(s: &Server, subscribers: &[&str], conns: u64) {
    let (rate, secs) = (20u64, 4u64);
    let (code, j) = storm(
        s,
        subscribers,
        conns as u32,
        rate as u32,
        secs as u32,
        "1500ms",
    );
    let st = &j["storm"];
    let why = format!("{st}\nfailures: {}", j["failures"]);
    assert_eq!(code, 0, "{why}");
    assert_eq!(n(st, "dropped"), conns, "{why}");
    assert_eq!(n(st, "reconnected"), conns, "{why}");
    assert_eq!(n(st, "reconnect_failed"), 0, "{why}");
    assert_eq!(n(st, "resumed"), conns, "{why}");
    assert_eq!(n(st, "resets"), 0, "{why}");
    assert!(st["all_resumed_s"].as_f64().unwrap() > 0.0, "{why}");
    assert!(st["reconnect_rate"].as_f64().unwrap() > 0.0, "{why}");
    // Resumed streams filled the gap exactly: every message, once, in order.
    assert_eq!(n(&j, "connections_held"), conns);
    assert_eq!(n(&j, "drops"), 0);
    assert_eq!(n(&j, "deliveries"), conns * rate * secs, "{why}");
    assert_eq!(n(&j, "missing"), 0);
    assert_eq!(n(&j, "duplicates"), 0);
    assert_eq!(n(&j, "out_of_order"), 0);
    assert!(
        j["errors"].as_object().unwrap().is_empty(),
        "{}",
        j["errors"]
    );
}

#[test]
fn storm_against_a_one_message_history_reports_the_loss() {
    // 200 messages/s and a history of one: a subscriber that is back after two or more newer
    // messages finds the one after its Last-Event-ID gone, so the server answers `event: reset`
    // and the gap stays. How many are that late depends on scheduling (publisher and
    // subscribers share the harness), so each attempt checks the report against the server's
    // own count, and some attempt must have lost something.
    for attempt in 1..=3 {
        let s = Server::start(&["--workers", "1", "--history-messages", "1"]);
        let sse = s.url("/sse?topic={topic}");
        let (code, j) = storm(&s, &["--url", &sse], 500, 200, 3, "1s");
        let st = &j["storm"];
        let why = format!("attempt {attempt}: {st}\nfailures: {}", j["failures"]);
        let server_resets = metric(&s, "uringcast_resets_total");
        assert_eq!(n(st, "dropped"), 500, "{why}");
        assert_eq!(n(st, "reconnected"), 500, "{why}");
        assert_eq!(
            n(st, "resets"),
            server_resets,
            "every reset the server sent: {why}"
        );
        if server_resets == 0 {
            assert_eq!(code, 0, "{why}");
            continue;
        }
        assert_eq!(code, 1, "loss must fail the run: {why}");
        assert!(n(&j, "missing") > 0, "{why}");
        assert_eq!(
            j["errors"]["resume_reset (event: reset, history did not reach back)"],
            st["resets"]
        );
        let failures = j["failures"].to_string();
        assert!(
            failures.contains("reset") && failures.contains("missing"),
            "{failures}"
        );
        return;
    }
    panic!("3 storms against a one-message history at 200 messages/s lost nothing");
}

/// One unlabelled counter from the server's `/metrics`.
fn metric(s: &Server, name: &str) -> u64 {
    let (status, _, body) = common::http(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}
