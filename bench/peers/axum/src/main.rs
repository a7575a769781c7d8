//! axum 0.8 peer for uringcast-bench: `/echo` WebSocket echo, `/ws?topic=T` WebSocket subscriber,
//! `/sse?topic=T` SSE subscriber, `POST /publish?topic=T` broadcasts the body as it is.
//! One tokio broadcast channel per topic; one thread (the server is pinned to one core).
//! It never buffers past the channel's capacity: a lagging subscriber skips messages (the
//! harness reports them missing), which is what a broadcast channel does.
use axum::{
    body::Bytes,
    extract::{
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
        Query, State,
    },
    response::{
        sse::{Event, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    serve::ListenerExt,
    Router,
};
use futures_util::{stream, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// Deliveries kept per topic for the slowest subscriber before it starts skipping.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Clone, Default)]
struct Topics(Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>);

impl Topics {
    fn sender(&self, topic: &str) -> broadcast::Sender<Utf8Bytes> {
        let mut map = self.0.lock().unwrap();
        map.entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .clone()
    }
}

#[derive(Deserialize)]
struct TopicQuery {
    #[serde(default)]
    topic: String,
}

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            // tungstenite answers pings by itself; text and binary go back as they came.
            let close = matches!(msg, Message::Close(_));
            let data = matches!(msg, Message::Text(_) | Message::Binary(_));
            if close || (data && socket.send(msg).await.is_err()) {
                break;
            }
        }
    })
}

async fn ws_subscribe(
    ws: WebSocketUpgrade,
    State(topics): State<Topics>,
    Query(q): Query<TopicQuery>,
) -> Response {
    // Subscribe before the 101 goes out, so a publish made after the client saw the handshake
    // is delivered (on_upgrade's callback runs only after the response is written).
    let rx = topics.sender(&q.topic).subscribe();
    ws.on_upgrade(move |socket| async move {
        let (mut tx, mut rd) = socket.split();
        let mut deliveries = BroadcastStream::new(rx);
        loop {
            tokio::select! {
                m = deliveries.next() => match m {
                    Some(Ok(text)) => {
                        if tx.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(_lagged)) => {}
                    None => break,
                },
                // Subscribers send nothing but control frames; stop when they go away.
                r = rd.next() => match r {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    })
}

async fn sse(
    State(topics): State<Topics>,
    Query(q): Query<TopicQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = topics.sender(&q.topic).subscribe();
    // A first comment makes hyper flush the response head at once.
    let hello = stream::once(async { Ok(Event::default().comment("ok")) });
    let live = BroadcastStream::new(rx)
        .filter_map(|m| async move { m.ok().map(|text| Ok(Event::default().data(text.as_str()))) });
    Sse::new(hello.chain(live))
}

async fn publish(
    State(topics): State<Topics>,
    Query(q): Query<TopicQuery>,
    body: Bytes,
) -> impl IntoResponse {
    let Ok(text) = Utf8Bytes::try_from(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "body must be UTF-8");
    };
    // No subscriber yet is not an error for a publisher.
    let _ = topics.sender(&q.topic).send(text);
    (axum::http::StatusCode::OK, "{\"ok\":true}")
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9001);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = Router::new()
            .route("/echo", get(echo))
            .route("/ws", get(ws_subscribe))
            .route("/sse", get(sse))
            .route("/publish", post(publish))
            .with_state(Topics::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        println!("axum listening on {port}");
        // Small writes (echo replies, deliveries) must not wait for Nagle.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.unwrap();
    });
}
