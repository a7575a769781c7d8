//! The security perimeter, tried as an attacker would, against a real server: publish keys
//! over HTTP and WebSocket.

mod common;

use common::Server;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMsg;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn ws_connect(url: &str) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    assert_eq!(resp.status(), 101);
    ws
}

/// Next JSON text message, skipping pings; panics after 10 s.
async fn ws_next(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a WebSocket message")
            .expect("stream ended")
            .expect("ws error");
        match m {
            WsMsg::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            WsMsg::Ping(_) | WsMsg::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn ws_send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(WsMsg::Text(v.to_string())).await.unwrap();
}

#[test]
fn ws_publish_without_the_publish_key_is_refused() {
    let s = Server::start_strict(&["--publish-key", "k3y", "--ws-publish", "true"]);
    rt().block_on(async {
        let mut sub = ws_connect(&s.ws_url("/ws?topic=chat")).await;
        let mut attacker = ws_connect(&s.ws_url("/ws")).await;
        let op = serde_json::json!({"op":"publish","topic":"chat","data":"pwned"});
        ws_send(&mut attacker, op).await;
        let answer = ws_next(&mut attacker).await;
        assert_eq!(answer["op"], "error", "keyless WebSocket publish: {answer}");
        // Nothing reached the subscriber.
        let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(got.is_err(), "subscriber received {got:?}");
    });
}
