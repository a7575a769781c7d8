//! `GET /topics` and `GET /topics/{name}` against known subscriber sets: SSE and WebSocket
//! subscribers spread over three workers, some subscribing to several topics, some leaving
//! (closing, or unsubscribing over WebSocket); the counts must match exactly, and the pages
//! must cover every topic once, in name order. Access is decided as for `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{http, publish, rt, ws_connect, ws_next, Server, SseClient};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn get(addr: SocketAddr, path: &str, auth: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
    let (status, _, body) = http(addr, req.as_bytes());
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path, "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Every topic over all pages of `limit`, name -> subscribers; checks name order and `next`.
fn all_counts(addr: SocketAddr, limit: usize) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut last_name = String::new();
    for _ in 0..100 {
        let path = match &after {
            Some(a) => format!("/topics?limit={limit}&after={a}"),
            None => format!("/topics?limit={limit}"),
        };
        let page = json(addr, &path);
        let rows = page["topics"].as_array().unwrap();
        assert!(rows.len() <= limit);
        for row in rows {
            let name = row["name"].as_str().unwrap().to_owned();
            assert!(name > last_name, "name order: {name} after {last_name}");
            last_name.clone_from(&name);
            out.insert(name, row["subscribers"].as_u64().unwrap());
        }
        match page["next"].as_str() {
            Some(n) => {
                assert_eq!(rows.len(), limit, "next only on a full page");
                assert_eq!(n, last_name);
                after = Some(n.to_owned());
            }
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

fn want(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (t.to_string(), *n))
        .collect()
}

/// Poll until the counts are `expected` (closes reach the server's workers asynchronously),
/// then insist on them; 10 s at most.
fn settle(addr: SocketAddr, expected: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Topics with history only (count 0) are not part of `expected`.
        let got: BTreeMap<String, u64> = all_counts(addr, 2)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        if &got == expected || Instant::now() > deadline {
            assert_eq!(&got, expected);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counts_are_exact_across_workers_as_subscribers_come_and_go() {
    let s = Server::start(&["--workers", "3"]);
    let addr = s.addr;
    publish(addr, "history-only", "x");
    publish(addr, "history-only", "y");

    // 12 SSE on alpha, 5 of them on beta too.
    let mut sse: Vec<SseClient> = (0..12)
        .map(|i| {
            let path = if i < 5 {
                "/sse?topic=alpha&topic=beta"
            } else {
                "/sse?topic=alpha"
            };
            let c = SseClient::connect(addr, path, "");
            assert_eq!(c.status, 200);
            c
        })
        .collect();

    let rt = rt();
    // 7 WebSocket sessions on alpha by the upgrade's query, 3 on gamma by a subscribe op.
    let mut ws = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..7 {
            v.push(ws_connect(&format!("ws://{addr}/ws?topic=alpha")).await);
        }
        for _ in 0..3 {
            let mut w = ws_connect(&format!("ws://{addr}/ws")).await;
            let op = r#"{"op":"subscribe","topic":"gamma"}"#;
            w.send(Message::text(op)).await.unwrap();
            assert_eq!(ws_next(&mut w).await["op"], "subscribed");
            v.push(w);
        }
        v
    });

    // A subscription is registered before its stream's head or ack is sent: no waiting.
    let expected = want(&[("alpha", 19), ("beta", 5), ("gamma", 3)]);
    let mut got: BTreeMap<String, u64> = all_counts(addr, 2);
    assert_eq!(got.remove("history-only"), Some(0));
    assert_eq!(got, expected);
    assert_eq!(all_counts(addr, 1000).len(), 4, "one page holds them all");

    let one = json(addr, "/topics/alpha");
    assert_eq!(one["subscribers"], 19);
    assert_eq!(one["history_messages"], 0);
    assert_eq!(one["last_id"], serde_json::Value::Null);
    let hist = json(addr, "/topics/history-only");
    assert_eq!(
        (
            hist["subscribers"].as_u64(),
            hist["history_messages"].as_u64()
        ),
        (Some(0), Some(2))
    );
    assert!(hist["history_bytes"].as_u64().unwrap() > 0);
    let last_id = publish(addr, "history-only", "z");
    assert_eq!(json(addr, "/topics/history-only")["last_id"], last_id);

    // Leaving: 4 SSE (two of them on beta too) and 2 alpha WebSockets close; one gamma
    // session unsubscribes but stays.
    sse.drain(0..2);
    sse.drain(6..8);
    rt.block_on(async {
        for mut w in ws.drain(0..2) {
            w.close(None).await.unwrap();
        }
        let op = r#"{"op":"unsubscribe","topic":"gamma"}"#;
        let w = ws.last_mut().unwrap();
        w.send(Message::text(op)).await.unwrap();
        assert_eq!(ws_next(w).await["op"], "unsubscribed");
    });
    settle(addr, &want(&[("alpha", 13), ("beta", 3), ("gamma", 2)]));

    // Everyone leaves: only the topic with history stays listed, with no subscribers.
    drop(sse);
    rt.block_on(async {
        for mut w in ws.drain(..) {
            w.close(None).await.unwrap();
        }
    });
    settle(addr, &BTreeMap::new());
    let rows = all_counts(addr, 10);
    assert_eq!(rows, BTreeMap::from([("history-only".to_owned(), 0)]));
    assert_eq!(get(addr, "/topics/alpha", "").0, 404);
}

#[test]
fn bad_requests_and_unknown_topics() {
    let s = Server::start(&[]);
    for path in ["/topics?limit=0", "/topics?limit=1001", "/topics?limit=x"] {
        let (status, body) = get(s.addr, path, "");
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("limit must be"), "{body}");
    }
    assert_eq!(get(s.addr, "/topics/nope", "").0, 404);
    assert_eq!(get(s.addr, "/topics/a%20b", "").0, 400);
    assert_eq!(get(s.addr, "/topics/", "").0, 400);
    let empty = json(s.addr, "/topics");
    assert_eq!(empty["topics"], serde_json::json!([]));
    assert_eq!(empty["next"], serde_json::Value::Null);
    // A percent-encoded name is the same topic.
    publish(s.addr, "room:1", "x");
    assert_eq!(json(s.addr, "/topics/room%3A1")["name"], "room:1");
}

#[test]
fn protected_like_metrics() {
    let s = Server::start(&["--metrics-loopback", "false", "--admin-key", "s3cret"]);
    publish(s.addr, "a", "x");
    for path in ["/topics", "/topics/a"] {
        let (status, body) = get(s.addr, path, "");
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(get(s.addr, path, "Authorization: Bearer nope\r\n").0, 403);
        let (status, body) = get(s.addr, path, "Authorization: Bearer s3cret\r\n");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("\"name\":\"a\""), "{body}");
    }
}

/// A held long poll is a subscriber like a stream: counted while held, on every worker, and
/// no longer once answered (by a message) or closed by its client. The server keeps serving
/// throughout (a worker that lost count would stop).
#[test]
fn held_polls_count_as_subscribers_until_answered_or_closed() {
    use std::io::Write;
    let s = Server::start(&["--workers", "2", "--poll-timeout", "20s"]);
    let start_poll = |topic: &str| {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!("GET /poll?topic={topic} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        c
    };
    let mut answered: Vec<_> = (0..4).map(|_| start_poll("held-a")).collect();
    let closed: Vec<_> = (0..3).map(|_| start_poll("held-b")).collect();
    settle(s.addr, &want(&[("held-a", 4), ("held-b", 3)]));
    drop(closed);
    settle(s.addr, &want(&[("held-a", 4)]));
    publish(s.addr, "held-a", "wake");
    for c in &mut answered {
        assert_eq!(common::read_response(c).0, 200);
    }
    settle(s.addr, &want(&[]));
    // Both workers still answer.
    for _ in 0..4 {
        assert_eq!(get(s.addr, "/healthz", "").0, 200);
    }
}
