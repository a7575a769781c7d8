//! Long replays stream under the queue bound: 100 clients resuming at once, each needing
//! 10,000 held messages, with a publisher still publishing, all get every message exactly once
//! and in order, and none is cut as a slow consumer.

mod common;

use common::{publish, seq, Server, SseClient};
use futures_util::{SinkExt, StreamExt};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMsg;

const HELD: usize = 10_000;
const LIVE: usize = 300;
const SSE_CLIENTS: usize = 80;
const WS_CLIENTS: usize = 20;

/// Publishes `n` messages on one keep-alive connection; returns their ids.
fn publish_many(addr: std::net::SocketAddr, topic: &str, n: usize, tag: &str) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (0..n)
        .map(|i| {
            let data = format!("{tag}{i}");
            let req = format!(
                "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{data}",
                data.len()
            );
            s.write_all(req.as_bytes()).unwrap();
            let (status, _, body) = common::read_response(&mut s);
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn ten_thousand_held_messages_to_a_hundred_resuming_clients_while_publishing() {
    // A queue bound far below one client's whole replay (10,000 events are ~0.6 MB of SSE):
    // the replay must be paged, not queued at once.
    let s = Server::start(&[
        "--workers",
        "2",
        "--history-messages",
        "20000",
        "--history-bytes",
        "64MiB",
        "--topics-max",
        "100",
        "--queue-bytes-max",
        "128KiB",
    ]);
    let addr = s.addr;
    let start = publish(addr, "r", "start");
    let held = publish_many(addr, "r", HELD, "h");

    let mut sse = Vec::new();
    for i in 0..SSE_CLIENTS {
        let mut c =
            SseClient::connect(addr, "/sse?topic=r", &format!("Last-Event-ID: {start}\r\n"));
        assert_eq!(c.status, 200);
        sse.push(std::thread::spawn(move || {
            c.set_timeout(Duration::from_secs(30));
            let mut got = Vec::with_capacity(HELD + LIVE);
            while got.len() < HELD + LIVE {
                match c.next_event() {
                    Some(ev) => {
                        assert_ne!(ev.event.as_deref(), Some("reset"), "sse#{i}: no reset");
                        got.push(ev.id.expect("id"));
                    }
                    None => break,
                }
            }
            got
        }));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut ws = Vec::new();
    for i in 0..WS_CLIENTS {
        let url = format!("ws://{addr}/ws");
        let start = start.clone();
        ws.push(rt.spawn(async move {
            let (mut c, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let sub = format!(r#"{{"op":"subscribe","topic":"r","since":"{start}"}}"#);
            c.send(WsMsg::Text(sub)).await.unwrap();
            let mut got = Vec::with_capacity(HELD + LIVE);
            while got.len() < HELD + LIVE {
                let next = tokio::time::timeout(Duration::from_secs(30), c.next()).await;
                let Ok(Some(Ok(m))) = next else { break };
                if let WsMsg::Text(t) = m {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    assert_ne!(v["op"], "reset", "ws#{i}: no reset");
                    if let Some(id) = v["id"].as_str() {
                        got.push(id.to_owned());
                    }
                }
            }
            got
        }));
    }
    // Live publishing while the replays stream.
    let live = publish_many(addr, "r", LIVE, "l");
    let want: Vec<String> = held.into_iter().chain(live).collect();
    for (i, t) in sse.into_iter().enumerate() {
        let got = t.join().unwrap();
        assert!(
            got.windows(2).all(|w| seq(&w[0]) < seq(&w[1])),
            "sse#{i} in order"
        );
        assert_eq!(got.len(), want.len(), "sse#{i}: every message");
        assert_eq!(got, want, "sse#{i}: exactly the published ids");
    }
    for (i, t) in ws.into_iter().enumerate() {
        let got = rt.block_on(t).unwrap();
        assert_eq!(got.len(), want.len(), "ws#{i}: every message");
        assert_eq!(got, want, "ws#{i}: exactly the published ids");
    }
    let (_, _, metrics) = common::http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("uringcast_closed_total{reason=\"slow_consumer\"} 0"),
        "nobody was cut as a slow consumer"
    );
}
