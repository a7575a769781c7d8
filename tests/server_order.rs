//! Delivery order under concurrency: many publisher connections on different workers at once,
//! subscribers on every worker, SSE and WebSocket, single- and multi-topic streams. Every
//! stream must see strictly increasing ids and every message it subscribed to, exactly once.
//!
//! The older ordering test published one message at a time, which cannot catch a worker that
//! delivers its own publishes ahead of another worker's earlier ones.

mod common;

use common::{Server, SseClient};
use futures_util::StreamExt;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMsg;

const PUBLISHERS: usize = 8;
const PER_PUBLISHER: usize = 300;
const SSE_SUBS: usize = 24;
const WS_SUBS: usize = 24;

/// The ordering key of a wire id: ids are compared within one server lifetime, so only the
/// sequence part matters (`E-N` -> N; a plain number is its own sequence).
fn seq(id: &str) -> u64 {
    id.rsplit('-').next().unwrap().parse().expect("numeric id")
}

/// One publisher: a keep-alive connection posting `n` messages alternately to "room" and
/// "side", waiting for each answer (so its own ids increase, as a real client's would).
fn publisher(addr: SocketAddr, p: usize, n: usize) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let topic = if i % 2 == 0 { "room" } else { "side" };
        let data = format!("p{p}-{i}");
        let req = format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let (status, _, body) = common::read_response(&mut s);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        ids.push(match &v["id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    ids
}

/// Checks one stream: strictly increasing, and exactly the expected count.
fn check(name: &str, got: &[u64], expected: usize) {
    for w in got.windows(2) {
        assert!(
            w[0] < w[1],
            "{name}: id {} arrived after {} (disorder or duplicate)",
            w[1],
            w[0]
        );
    }
    assert_eq!(got.len(), expected, "{name}: missing deliveries");
}

#[test]
fn racing_publishers_on_all_workers_keep_every_stream_in_id_order() {
    let s = Server::start(&["--workers", "2", "--queue-bytes-max", "64MiB"]);
    let addr = s.addr;
    let total = PUBLISHERS * PER_PUBLISHER;
    let per_topic = total / 2;

    // SSE: even-numbered streams take both topics (one Last-Event-ID for two topics), odd ones
    // only "room". Each reads on its own thread until it has everything it expects.
    let mut sse_threads = Vec::new();
    for i in 0..SSE_SUBS {
        let both = i % 2 == 0;
        let path = if both {
            "/sse?topic=room&topic=side"
        } else {
            "/sse?topic=room"
        };
        let mut c = SseClient::connect(addr, path, "");
        assert_eq!(c.status, 200);
        let expected = if both { total } else { per_topic };
        sse_threads.push(std::thread::spawn(move || {
            c.set_timeout(Duration::from_secs(20));
            let mut got = Vec::with_capacity(expected);
            while got.len() < expected {
                match c.next_event() {
                    Some(ev) => got.push(seq(ev.id.as_deref().expect("event id"))),
                    None => break,
                }
            }
            (format!("sse#{i} both={both}"), got, expected)
        }));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut ws_tasks = Vec::new();
    for i in 0..WS_SUBS {
        let both = i % 2 == 0;
        let url = if both {
            format!("ws://{addr}/ws?topic=room&topic=side")
        } else {
            format!("ws://{addr}/ws?topic=room")
        };
        let (mut ws, _) = rt
            .block_on(tokio_tungstenite::connect_async(url))
            .expect("ws connect");
        let expected = if both { total } else { per_topic };
        ws_tasks.push(rt.spawn(async move {
            let mut got = Vec::with_capacity(expected);
            while got.len() < expected {
                let next = tokio::time::timeout(Duration::from_secs(20), ws.next()).await;
                let Ok(Some(Ok(m))) = next else { break };
                if let WsMsg::Text(t) = m {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    let id = match &v["id"] {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    got.push(seq(&id));
                }
            }
            (format!("ws#{i} both={both}"), got, expected)
        }));
    }

    // All publishers at once, released together.
    let gate = std::sync::Arc::new(std::sync::Barrier::new(PUBLISHERS));
    let pubs: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait();
                publisher(addr, p, PER_PUBLISHER)
            })
        })
        .collect();
    let mut all_ids = Vec::new();
    for p in pubs {
        all_ids.extend(p.join().unwrap());
    }
    assert_eq!(all_ids.len(), total);

    for t in sse_threads {
        let (name, got, expected) = t.join().unwrap();
        check(&name, &got, expected);
    }
    for t in ws_tasks {
        let (name, got, expected) = rt.block_on(t).unwrap();
        check(&name, &got, expected);
    }
}
