//! Connection lifecycle on the real server: heartbeats at scale, pong deadline, slow
//! consumers with bounded memory, graceful shutdown.

mod common;

use common::{http, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uringcast::proto::ws::close_code;

const WS_UPGRADE: &str =
    "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Read until the end of the response head; returns the head and any bytes after it.
async fn read_head(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.expect("read head");
        assert!(n > 0, "closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// 10,000 concurrent connections, half SSE and half WebSocket, all receive heartbeats.
#[test]
fn ten_thousand_connections_all_get_heartbeats() {
    let s = Server::start(&[
        "--heartbeat-interval",
        "100ms",
        "--pong-timeout",
        "30s",
        "--workers",
        "2",
    ]);
    let addr = s.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = 10_000usize;
    let ok = rt.block_on(async move {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(500));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let permit_sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = {
                    let _p = permit_sem.acquire().await.unwrap();
                    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let req = if i % 2 == 0 {
                        "GET /sse?topic=hb HTTP/1.1\r\nHost: t\r\n\r\n".to_owned()
                    } else {
                        WS_UPGRADE.to_owned()
                    };
                    s.write_all(req.as_bytes()).await.unwrap();
                    s
                };
                let (head, mut rest) = read_head(&mut s).await;
                let (want_status, beat): (&str, &[u8]) = if i % 2 == 0 {
                    ("HTTP/1.1 200", b":\n\n")
                } else {
                    ("HTTP/1.1 101", &[0x89, 0x00])
                };
                assert!(head.starts_with(want_status), "{head}");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                let mut chunk = [0u8; 256];
                while count(&rest, beat) < 2 {
                    let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
                        .await
                        .expect("heartbeats in time")
                        .unwrap();
                    assert!(n > 0, "connection {i} closed");
                    rest.extend_from_slice(&chunk[..n]);
                }
                s // keep it open until every connection has its heartbeats
            }));
        }
        let mut held = Vec::with_capacity(n);
        for t in tasks {
            held.push(t.await.expect("connection task"));
        }
        held.len()
    });
    assert_eq!(ok, n);
}

#[test]
fn websocket_that_never_answers_pings_is_closed_at_the_pong_deadline() {
    let s = Server::start(&[
        "--heartbeat-interval",
        "200ms",
        "--pong-timeout",
        "300ms",
        "--tick",
        "10ms",
    ]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(WS_UPGRADE.as_bytes()).unwrap();
    let start = Instant::now();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all); // until the server drops us
    let took = start.elapsed();
    assert!(count(&all, &[0x89, 0x00]) >= 1, "a ping was sent");
    // docs/protocol.md: the server says why with a 1008 close frame before it closes.
    let close_1008 = [0x88, 2 + b"pong timeout".len() as u8, 0x03, 0xF0];
    assert!(
        count(&all, &close_1008) == 1 && all.ends_with(b"pong timeout"),
        "a 1008 \"pong timeout\" close frame ends the stream: {:x?}",
        &all[all.len().saturating_sub(20)..]
    );
    assert!(
        took >= Duration::from_millis(450),
        "closed before ping + pong timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "not closed at the pong deadline: {took:?}"
    );
    let (_, _, metrics) = http(s.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(String::from_utf8_lossy(&metrics)
        .contains("uringcast_closed_total{reason=\"pong_timeout\"} 1"));
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn metric(addr: SocketAddr, sample: &str) -> u64 {
    let (_, _, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{sample} not in metrics"))
}

/// 1,000 subscribers stop reading while a publisher floods: each is cut off at its queue cap,
/// and the server's memory stays bounded.
#[test]
fn slow_consumers_are_disconnected_and_memory_stays_bounded() {
    let s = Server::start(&["--queue-bytes-max", "64KiB", "--history-bytes", "256KiB"]);
    let subs: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            // A small receive window so the kernel absorbs little and the server's queue fills.
            sock.set_recv_buffer_size(4096).unwrap();
            sock.connect(&s.addr.into()).unwrap();
            let mut c: TcpStream = sock.into();
            c.write_all(b"GET /sse?topic=flood HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    // Wait until all are subscribed (response heads sent) by reading each head.
    for c in &subs {
        let mut c = c;
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
    }
    let payload = "x".repeat(16 * 1024);
    let mut peak = 0;
    let mut p = TcpStream::connect(s.addr).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..1500 {
        let req = format!(
            "POST /publish?topic=flood HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        p.write_all(req.as_bytes()).unwrap();
        assert_eq!(common::read_response(&mut p).0, 200);
        if i % 100 == 0 {
            peak = peak.max(rss_bytes(s.child.id()));
        }
    }
    peak = peak.max(rss_bytes(s.child.id()));
    let closed = metric(s.addr, "uringcast_closed_total{reason=\"slow_consumer\"}");
    assert_eq!(closed, 1000, "every stalled subscriber is cut off");
    // Unbounded queues would hold 1,000 x 1,500 x 16 KiB = 24 GB of handles' worth of data.
    // Bounded: shared messages in history plus at most 64 KiB of handles per subscriber.
    assert!(peak < 400 << 20, "server RSS peaked at {} MiB", peak >> 20);
    drop(subs);
}

#[test]
fn sigterm_sends_close_1001_and_exits_zero() {
    use futures_util::StreamExt;
    let mut s = Server::start(&["--drain-timeout", "3s"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut ws, mut sse) = rt.block_on(async {
        let (ws, _) = tokio_tungstenite::connect_async(s.ws_url("/ws?topic=x"))
            .await
            .unwrap();
        let mut sse = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        sse.write_all(b"GET /sse?topic=x HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let _ = read_head(&mut sse).await;
        (ws, sse)
    });
    let status = s
        .terminate(Duration::from_secs(8))
        .expect("exited within the drain timeout");
    assert!(status.success(), "exit status {status:?}");
    rt.block_on(async {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap();
        match msg {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), close_code::GOING_AWAY)
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
        // The SSE stream ends: EOF after whatever was sent.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), sse.read_to_end(&mut rest))
            .await
            .expect("SSE stream ended")
            .expect("clean EOF");
    });
}

/// A client that starts a fragmented message and never finishes it is closed with 1008 at
/// `ws_message_timeout`, not held (with its half-assembled message) until some other timer.
#[test]
fn unfinished_fragmented_message_is_closed_at_its_deadline() {
    let s = Server::start(&[
        "--ws-message-timeout",
        "300ms",
        "--heartbeat-interval",
        "60s",
        "--tick",
        "10ms",
    ]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(WS_UPGRADE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    // A masked text frame without FIN ("{"), then silence.
    let mask = [1u8, 2, 3, 4];
    let frame = [
        0x01,
        0x80 | 1,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        b'{' ^ mask[0],
    ];
    c.write_all(&frame).unwrap();
    let start = Instant::now();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "not closed at the deadline: {took:?}"
    );
    assert!(
        all.starts_with(&[0x88]) && all[4..].starts_with(b"message not completed"),
        "a 1008 close frame: {all:x?}"
    );
    assert_eq!(&all[2..4], &[0x03, 0xF0], "code 1008");
}
