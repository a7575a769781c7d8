//! fastwebsockets 0.10 peer for uringcast-bench: `/echo` WebSocket echo, `/ws?topic=T`
//! WebSocket subscriber, `/sse?topic=T` SSE subscriber (hyper streaming body),
//! `POST /publish?topic=T` broadcasts the body as it is. One tokio broadcast channel per topic;
//! one thread (the server is pinned to one core).
//! It never buffers past the channel's capacity: a lagging subscriber skips messages (the
//! harness reports them missing). Topic names are taken from the query as they are (no
//! percent-decoding): the harness's names are plain.
use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, Frame, OpCode, Payload, WebSocketError};
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[derive(Clone)]
struct Msg {
    ws: Bytes,
    sse: Bytes,
}

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<Msg>>>>;
type Body = BoxBody<Bytes, Infallible>;

fn topic_of(req: &Request<Incoming>) -> String {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("topic="))
        .unwrap_or("")
        .to_string()
}

fn sender(topics: &Topics, t: &str) -> broadcast::Sender<Msg> {
    let mut m = topics.lock().unwrap();
    m.entry(t.to_string())
        .or_insert_with(|| broadcast::channel(1024).0)
        .clone()
}

fn full(s: &'static str, status: u16) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(s.as_bytes())).boxed())
        .unwrap()
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn subscriber(
    fut: upgrade::UpgradeFut,
    mut rx: broadcast::Receiver<Msg>,
) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (mut rd, mut wr) = ws.split(tokio::io::split);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    // Reader: only watches for close/error (subscribers send nothing else; the obligated
    // answers, pong and close, are dropped because the writer half belongs to the loop below).
    tokio::spawn(async move {
        let mut sink = |_f: Frame<'_>| async { Ok::<_, WebSocketError>(()) };
        loop {
            match rd.read_frame(&mut sink).await {
                Ok(f) if f.opcode == OpCode::Close => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = done_tx.send(());
    });
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(m) => wr.write_frame(Frame::text(Payload::Borrowed(&m.ws))).await?,
                // Skipped deliveries show up as missing in the harness's report.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            _ = &mut done_rx => break,
        }
    }
    Ok(())
}

async fn handle(topics: Topics, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/echo" | "/ws" => {
            let Ok((resp, fut)) = upgrade::upgrade(&mut req) else {
                return Ok(full("upgrade required", 426));
            };
            if path == "/echo" {
                tokio::spawn(async move {
                    let _ = echo(fut).await;
                });
            } else {
                let rx = sender(&topics, &topic_of(&req)).subscribe();
                tokio::spawn(async move {
                    let _ = subscriber(fut, rx).await;
                });
            }
            Ok(resp.map(|b| b.map_err(|e| match e {}).boxed()))
        }
        "/sse" => {
            let rx = sender(&topics, &topic_of(&req)).subscribe();
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(BodyFrame::data(Bytes::from_static(b": ok\n\n")))
            });
            let rest = BroadcastStream::new(rx)
                .filter_map(|m| async move { m.ok().map(|m| Ok(BodyFrame::data(m.sse))) });
            let body = StreamBody::new(first.chain(rest));
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(BodyExt::boxed(body))
                .unwrap())
        }
        "/publish" => {
            let t = topic_of(&req);
            let Ok(body) = req.into_body().collect().await else {
                return Ok(full("bad body", 400));
            };
            let ws = body.to_bytes();
            let mut sse = Vec::with_capacity(ws.len() + 8);
            sse.extend_from_slice(b"data: ");
            sse.extend_from_slice(&ws);
            sse.extend_from_slice(b"\n\n");
            let _ = sender(&topics, &t).send(Msg {
                ws,
                sse: sse.into(),
            });
            Ok(full("{\"ok\":true}", 200))
        }
        _ => Ok(full("not found", 404)),
    }
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9002);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async move {
        let topics: Topics = Arc::default();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        println!("fastws listening on {port}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let topics = topics.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = service_fn(move |req| handle(topics.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(io, svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}
