//! Topics, fan-out, ordering, replay and reset, over real SSE and WebSocket clients.

mod common;

use common::{publish, rt, ws_connect, ws_next, Server, SseClient};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use uringcast::proto::ws::close_code;

#[test]
fn sse_and_ws_subscribers_on_all_workers_get_every_message_in_order() {
    let s = Server::start(&["--workers", "2"]);
    rt().block_on(async {
        // Several connections of each kind so that both workers hold subscribers.
        let mut sses: Vec<SseClient> = (0..6)
            .map(|_| SseClient::connect(s.addr, "/sse?topic=room", ""))
            .collect();
        let mut wss = Vec::new();
        for _ in 0..6 {
            wss.push(ws_connect(&s.ws_url("/ws?topic=room")).await);
        }
        for c in &sses {
            assert_eq!(c.status, 200);
            assert_eq!(
                common::header(&c.headers, "content-type"),
                Some("text/event-stream")
            );
        }
        let n = 50;
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(publish(s.addr, "room", &format!("line {i}\nsecond")));
        }
        assert!(
            ids.windows(2)
                .all(|w| common::seq(&w[0]) < common::seq(&w[1])),
            "ids increase: {ids:?}"
        );
        for c in &mut sses {
            for (i, id) in ids.iter().enumerate() {
                let ev = c.next_event().expect("event");
                assert_eq!(ev.id.as_deref(), Some(id.as_str()));
                assert_eq!(ev.data, format!("line {i}\nsecond"));
            }
        }
        for ws in &mut wss {
            for (i, id) in ids.iter().enumerate() {
                let v = ws_next(ws).await;
                assert_eq!(v["topic"], "room");
                assert_eq!(v["id"].as_str(), Some(id.as_str()));
                assert_eq!(v["data"], format!("line {i}\nsecond"));
            }
        }
    });
}

#[test]
fn ws_control_messages_subscribe_publish_and_errors() {
    let s = Server::start(&["--ws-publish", "true"]);
    rt().block_on(async {
        let mut a = ws_connect(&s.ws_url("/ws")).await;
        a.send(WsMsg::Text(r#"{"op":"subscribe","topic":"chat"}"#.into()))
            .await
            .unwrap();
        let ack = ws_next(&mut a).await;
        assert_eq!(ack, serde_json::json!({"op":"subscribed","topic":"chat"}));

        let mut b = ws_connect(&s.ws_url("/ws")).await;
        b.send(WsMsg::Text(
            r#"{"op":"publish","topic":"chat","data":"hi","event":"say"}"#.into(),
        ))
        .await
        .unwrap();
        let published = ws_next(&mut b).await;
        assert_eq!(published["op"], "published");
        let got = ws_next(&mut a).await;
        assert_eq!(got["data"], "hi");
        assert_eq!(got["event"], "say");
        assert_eq!(got["id"], published["id"]);

        b.send(WsMsg::Text(r#"{"op":"dance"}"#.into()))
            .await
            .unwrap();
        assert_eq!(ws_next(&mut b).await["op"], "error");
        b.send(WsMsg::Text("not json".into())).await.unwrap();
        assert_eq!(ws_next(&mut b).await["op"], "error");
        b.send(WsMsg::Text(
            r#"{"op":"subscribe","topic":"bad topic!"}"#.into(),
        ))
        .await
        .unwrap();
        assert_eq!(ws_next(&mut b).await["op"], "error");

        a.send(WsMsg::Text(r#"{"op":"unsubscribe","topic":"chat"}"#.into()))
            .await
            .unwrap();
        assert_eq!(ws_next(&mut a).await["op"], "unsubscribed");

        // Binary messages are refused with close 1003 (unsupported data).
        b.send(WsMsg::Binary(vec![1, 2, 3])).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), b.next())
                .await
                .unwrap()
            {
                Some(Ok(WsMsg::Close(Some(f)))) => {
                    assert_eq!(u16::from(f.code), close_code::UNSUPPORTED_DATA);
                    break;
                }
                Some(Ok(WsMsg::Ping(_))) => continue,
                other => panic!("expected close 1003, got {other:?}"),
            }
        }
    });
}

#[test]
fn ws_publish_is_refused_unless_enabled() {
    let s = Server::start(&[]);
    rt().block_on(async {
        let mut a = ws_connect(&s.ws_url("/ws")).await;
        a.send(WsMsg::Text(
            r#"{"op":"publish","topic":"chat","data":"hi"}"#.into(),
        ))
        .await
        .unwrap();
        let e = ws_next(&mut a).await;
        assert_eq!(e["op"], "error");
        assert!(e["error"].as_str().unwrap().contains("ws-publish"));
    });
}

#[test]
fn sse_resume_replays_exactly_what_was_missed_while_publishing_continues() {
    let s = Server::start(&["--workers", "2"]);
    let mut c = SseClient::connect(s.addr, "/sse?topic=r", "");
    let first = publish(s.addr, "r", "m0");
    assert_eq!(c.next_event().unwrap().id, Some(first.clone()));
    drop(c);
    // Publish while disconnected, and keep publishing from another thread during the resume.
    let missed: Vec<String> = (1..20)
        .map(|i| publish(s.addr, "r", &format!("m{i}")))
        .collect();
    let addr = s.addr;
    let racer = std::thread::spawn(move || {
        (20..60)
            .map(|i| publish(addr, "r", &format!("m{i}")))
            .collect::<Vec<String>>()
    });
    let mut c = SseClient::connect(
        s.addr,
        "/sse?topic=r",
        &format!("Last-Event-ID: {first}\r\n"),
    );
    let raced = racer.join().unwrap();
    let expected: Vec<String> = missed.into_iter().chain(raced).collect();
    for (i, id) in expected.iter().enumerate() {
        let ev = c.next_event().expect("event");
        assert_eq!(ev.event, None, "no reset expected");
        assert_eq!(ev.id.as_ref(), Some(id), "position {i}");
        assert_eq!(ev.data, format!("m{}", i + 1));
    }
    // Nothing more: no duplicates after the switch from replay to live.
    c.set_timeout(Duration::from_millis(300));
    assert!(c.next_event().is_none());
}

#[test]
fn resume_beyond_history_gets_reset_then_what_is_held() {
    let s = Server::start(&["--history-messages", "5"]);
    let ids: Vec<String> = (0..12)
        .map(|i| publish(s.addr, "h", &format!("v{i}")))
        .collect();
    let mut c = SseClient::connect(
        s.addr,
        "/sse?topic=h",
        &format!("Last-Event-ID: {}\r\n", ids[1]),
    );
    let reset = c.next_event().unwrap();
    assert_eq!(reset.event.as_deref(), Some("reset"));
    let v: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(v["oldest"].as_str(), Some(ids[7].as_str()));
    assert_eq!(v["requested"].as_str(), Some(ids[1].as_str()));
    for id in &ids[7..] {
        assert_eq!(c.next_event().unwrap().id.as_ref(), Some(id));
    }
    // The query form works as well (polyfills), and a current id gets no reset.
    let mut q = SseClient::connect(s.addr, &format!("/sse?topic=h&lastEventId={}", ids[9]), "");
    assert_eq!(q.next_event().unwrap().id.as_ref(), Some(&ids[10]));

    // WebSocket subscribe with "since" has the same semantics.
    rt().block_on(async {
        let mut ws = ws_connect(&s.ws_url("/ws")).await;
        let sub = format!(r#"{{"op":"subscribe","topic":"h","since":"{}"}}"#, ids[1]);
        ws.send(WsMsg::Text(sub)).await.unwrap();
        assert_eq!(ws_next(&mut ws).await["op"], "subscribed");
        let reset = ws_next(&mut ws).await;
        assert_eq!(reset["op"], "reset");
        assert_eq!(reset["oldest"].as_str(), Some(ids[7].as_str()));
        for id in &ids[7..] {
            assert_eq!(ws_next(&mut ws).await["id"].as_str(), Some(id.as_str()));
        }
    });
}

#[test]
fn sse_requests_are_validated() {
    let s = Server::start(&["--topics-per-conn-max", "2"]);
    assert_eq!(
        common::http(s.addr, b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n").0,
        400
    );
    assert_eq!(
        common::http(
            s.addr,
            b"GET /sse?topic=a&topic=b&topic=c HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .0,
        400
    );
    assert_eq!(
        common::http(s.addr, b"GET /sse?topic=%00 HTTP/1.1\r\nHost: t\r\n\r\n").0,
        400
    );
    assert_eq!(
        common::http(
            s.addr,
            b"GET /sse?topic=a HTTP/1.1\r\nHost: t\r\nLast-Event-ID: x\r\n\r\n"
        )
        .0,
        400
    );
}
