//! Per-connection state, kept by the engine in its slab: what the connection is now (an HTTP
//! request in progress, an SSE stream or a WebSocket session) and why the server is closing
//! it, once it decided to. Never here: behaviour; each state's module owns that.

use super::auth::Cors;
use super::metrics::{CloseKind, ConnKind};
use super::publish::PendingPublish;
use super::sse::SseStream;
use super::tickets::PendingTicket;
use super::ws::WsSession;
use crate::proto::http1::RequestDecoder;

pub struct Conn {
    pub(super) state: State,
    /// Why the server is closing it, once it decided to; read by `on_close` for metrics.
    pub(super) closing: Option<CloseKind>,
}

impl Conn {
    pub(super) fn new() -> Conn {
        Conn {
            state: State::Http(HttpConn::default()),
            closing: None,
        }
    }
}

pub(super) enum State {
    Http(HttpConn),
    Sse(SseStream),
    /// Boxed: a session is several times the size of the other states, and most connections
    /// of a big SSE deployment never hold one.
    Ws(Box<WsSession>),
}

impl State {
    pub(super) fn kind(&self) -> ConnKind {
        match self {
            State::Http(_) => ConnKind::Http,
            State::Sse(_) => ConnKind::Sse,
            State::Ws(_) => ConnKind::WebSocket,
        }
    }
}

/// A connection between requests or inside one.
#[derive(Default)]
pub(super) struct HttpConn {
    pub decoder: RequestDecoder,
    /// The request being answered is HTTP/1.0 with `Connection: keep-alive`.
    pub http10_keep_alive: bool,
    /// A publish whose body is still arriving. Boxed: rare, and it would triple the size of
    /// every idle connection if inline.
    pub publish: Option<Box<PendingPublish>>,
    /// A `POST /tickets` whose body is still arriving. Boxed for the same reason.
    pub ticket: Option<Box<PendingTicket>>,
    /// The CORS fields of the request being answered, kept while its body arrives.
    pub cors: Cors,
}
