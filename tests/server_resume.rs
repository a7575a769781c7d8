//! Resume across server lifetimes: ids carry the lifetime's epoch, so an id from a previous
//! process is never mistaken for one of this process, even after the new counter passed it.

mod common;

use common::{publish, rt, ws_next, Server, SseClient};
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMsg;

/// The issue's measurement: 500 read from the old process, restart, one message on the topic,
/// 600 on another, one more on the topic, resume with the old id: a reset, then both.
#[test]
fn an_id_from_the_previous_lifetime_gets_reset_then_everything_held() {
    let mut old = Server::start(&["--workers", "2"]);
    let mut c = SseClient::connect(old.addr, "/sse?topic=t", "");
    let mut last = String::new();
    for i in 0..500 {
        let id = publish(old.addr, "t", &format!("old {i}"));
        let ev = c.next_event().expect("live event");
        assert_eq!(ev.id.as_ref(), Some(&id));
        last = id;
    }
    drop(c);
    assert!(old.terminate(Duration::from_secs(10)).is_some());

    let new = Server::start(&["--workers", "2"]);
    let first = publish(new.addr, "t", "new 1");
    for i in 0..600 {
        publish(new.addr, "other", &format!("o{i}"));
    }
    let second = publish(new.addr, "t", "new 2");
    assert!(
        common::seq(&second) > common::seq(&last),
        "the new counter passed the old id"
    );

    let mut c = SseClient::connect(
        new.addr,
        "/sse?topic=t",
        &format!("Last-Event-ID: {last}\r\n"),
    );
    assert_eq!(c.status, 200);
    let reset = c.next_event().expect("reset notice");
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    let v: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(v["requested"].as_str(), Some(last.as_str()));
    assert_eq!(v["oldest"].as_str(), Some(first.as_str()));
    for (id, data) in [(&first, "new 1"), (&second, "new 2")] {
        let ev = c.next_event().expect("replayed event");
        assert_eq!((ev.id.as_ref(), ev.data.as_str()), (Some(id), data));
    }
    // Live continues after the replay.
    let third = publish(new.addr, "t", "new 3");
    assert_eq!(c.next_event().unwrap().id, Some(third.clone()));

    // A bare number (an id from before epochs) is another lifetime too.
    let mut legacy = SseClient::connect(new.addr, "/sse?topic=t", "Last-Event-ID: 500\r\n");
    assert_eq!(legacy.next_event().unwrap().event.as_deref(), Some("reset"));
    assert_eq!(legacy.next_event().unwrap().id, Some(first.clone()));

    // WebSocket `since` follows the same rule.
    rt().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(new.ws_url("/ws"))
            .await
            .unwrap();
        let sub = format!(r#"{{"op":"subscribe","topic":"t","since":"{last}"}}"#);
        ws.send(WsMsg::Text(sub)).await.unwrap();
        assert_eq!(ws_next(&mut ws).await["op"], "subscribed");
        let reset = ws_next(&mut ws).await;
        assert_eq!(reset["op"], "reset");
        assert_eq!(reset["oldest"].as_str(), Some(first.as_str()));
        for id in [&first, &second, &third] {
            assert_eq!(ws_next(&mut ws).await["id"].as_str(), Some(id.as_str()));
        }
        // A malformed `since` is an error message, not a subscription.
        ws.send(WsMsg::Text(
            r#"{"op":"subscribe","topic":"u","since":"yesterday"}"#.into(),
        ))
        .await
        .unwrap();
        let e = ws_next(&mut ws).await;
        assert_eq!(e["op"], "error", "{e}");
    });

    // A malformed Last-Event-ID is a 400.
    let (status, _, body) = common::http(
        new.addr,
        b"GET /sse?topic=t HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 12-x\r\n\r\n",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}
