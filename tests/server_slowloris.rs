//! Slowloris: 10,000 connections that trickle one header byte a second are all closed at
//! `request_timeout` (bytes arriving do not move the deadline), while 1,000 subscribers keep
//! receiving every message.

mod common;

use common::{publish, Server};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const SLOW: usize = 10_000;
const SUBS: usize = 1_000;
const MESSAGES: usize = 20;

#[test]
fn ten_thousand_slowloris_connections_are_cut_while_subscribers_keep_receiving() {
    let s = Server::start(&[
        "--workers",
        "2",
        "--request-timeout",
        "3s",
        "--tick",
        "10ms",
    ]);
    let addr = s.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let subs_ready = Arc::new(AtomicUsize::new(0));
    let mut sub_tasks = Vec::new();
    for _ in 0..SUBS {
        let received = received.clone();
        let ready = subs_ready.clone();
        sub_tasks.push(rt.spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /sse?topic=live HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut r = BufReader::new(c);
            let mut line = String::new();
            // Head, then the retry block.
            loop {
                line.clear();
                r.read_line(&mut line).await.unwrap();
                if line == "\r\n" {
                    break;
                }
            }
            ready.fetch_add(1, Ordering::Relaxed);
            let mut got = 0;
            while got < MESSAGES {
                line.clear();
                let n = tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line))
                    .await
                    .expect("subscriber starved")
                    .unwrap();
                assert!(n > 0, "subscriber's stream ended");
                if line.starts_with("data: ") {
                    got += 1;
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    while subs_ready.load(Ordering::Relaxed) < SUBS {
        std::thread::sleep(Duration::from_millis(20));
    }

    // The attackers: connect (500 at a time), then one byte of a header a second.
    let sem = Arc::new(tokio::sync::Semaphore::new(500));
    let mut slow_tasks = Vec::new();
    for _ in 0..SLOW {
        let sem = sem.clone();
        slow_tasks.push(rt.spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            drop(permit);
            let opened = Instant::now();
            let trickle = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa";
            let mut buf = [0u8; 256];
            for &byte in trickle.iter().cycle() {
                if c.write_all(&[byte]).await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(1), c.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => {} // the 408, then EOF
                    Err(_) => {}    // a second passed: next byte
                }
                assert!(opened.elapsed() < Duration::from_secs(20), "never cut");
            }
            opened.elapsed()
        }));
    }
    // Publish while the attack is on.
    for i in 0..MESSAGES {
        publish(addr, "live", &format!("m{i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut longest = Duration::ZERO;
    for t in slow_tasks {
        longest = longest.max(rt.block_on(t).unwrap());
    }
    for t in sub_tasks {
        rt.block_on(t).unwrap();
    }
    assert_eq!(received.load(Ordering::Relaxed), SUBS * MESSAGES);
    // request_timeout 3 s, a tick of slack and a second of trickle granularity.
    assert!(
        longest < Duration::from_secs(6),
        "a slowloris connection lived {longest:?}"
    );
}
