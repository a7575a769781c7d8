//! Per-connection state, kept by the engine beside its slab (one per connection, handed to
//! every callback): what the connection is now (an HTTP request in progress, an SSE stream, a
//! WebSocket session or a held long poll) and why the server is closing it, once it decided
//! to. Never here: behaviour; each state's module owns that.

use super::auth::Cors;
use super::limits::IpKey;
use super::metrics::{CloseKind, ConnKind};
use super::poll::PollWait;
use super::publish::PendingPublish;
use super::sse::SseStream;
use super::tickets::PendingTicket;
use super::ws::WsSession;
use crate::proto::http1::RequestDecoder;

pub struct Conn {
    pub(super) state: State,
    /// Why the server is closing it, once it decided to; read by `on_close` for metrics.
    pub(super) closing: Option<CloseKind>,
    /// What the server keeps of the peer address the engine gave `on_open` (it keeps none).
    pub(super) peer: Peer,
}

impl Conn {
    pub(super) fn new(peer: Peer) -> Conn {
        Conn {
            state: State::Http(Box::default()),
            closing: None,
            peer,
        }
    }
}

/// The peer, as far as the server needs it after `on_open`: 16 bytes, not a `SocketAddr`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Peer {
    /// Counted in the per-IP connection limit; released at close.
    pub counted: Option<IpKey>,
    /// A loopback peer (or, with no peer address, a loopback listener): may read `/metrics`
    /// when `metrics_loopback` is on.
    pub loopback: bool,
    /// Refused at open: the first request is answered with this and the connection closed.
    pub refused: Option<Refusal>,
}

/// Why a connection was refused at open (`limits::Admission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 429: the IP opens connections faster than `handshakes_per_ip_per_sec`.
    TooFast,
    /// 503: the IP holds `connections_per_ip_max` connections.
    TooMany,
}

impl Refusal {
    pub(super) fn status(self) -> u16 {
        match self {
            Refusal::TooFast => 429,
            Refusal::TooMany => 503,
        }
    }

    pub(super) fn text(self) -> &'static str {
        match self {
            Refusal::TooFast => {
                "too many new connections from your address (handshakes_per_ip_per_sec)\n"
            }
            Refusal::TooMany => "too many connections from your address (connections_per_ip_max)\n",
        }
    }
}

pub(super) enum State {
    /// Boxed: 64 bytes, the largest state, and held only until the first request's answer
    /// (or between the requests of a keep-alive connection); inline it would size every
    /// connection, idle streams too (docs/decisions.md "Idle connection layout").
    Http(Box<HttpConn>),
    Sse(SseStream),
    /// Boxed: a session is several times the size of the other states, and most connections
    /// of a big SSE deployment never hold one.
    Ws(Box<WsSession>),
    /// A long poll held until a message arrives or it times out; then HTTP again. Boxed for
    /// the same reason as `Http`: `SseStream` is then the one inline state, and its niche
    /// holds the tag, so the state is 56 bytes, not 64.
    Poll(Box<PollWait>),
}

impl State {
    pub(super) fn kind(&self) -> ConnKind {
        match self {
            State::Http(_) => ConnKind::Http,
            State::Sse(_) => ConnKind::Sse,
            State::Ws(_) => ConnKind::WebSocket,
            State::Poll(_) => ConnKind::Poll,
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
    /// Cluster mode: a publish waits for Redis (`Some(close)`); no further request is read
    /// until it is answered, so answers keep the order of requests.
    pub awaiting: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_stays_small() {
        let (conn, peer) = (std::mem::size_of::<Conn>(), std::mem::size_of::<Peer>());
        let state = std::mem::size_of::<State>();
        println!("size_of::<Conn>() = {conn}, of which Peer = {peer}, State = {state}");
        assert!(peer <= 16, "Peer grew to {peer} bytes");
    }

    /// The per-connection parts docs/capacity.md "Memory per idle connection" adds up; a
    /// field that grows one of them fails here (budgets: that table's "after" column).
    #[test]
    fn idle_connection_parts_stay_small() {
        use std::mem::size_of;
        let parts = [
            ("Option<Conn>", size_of::<Option<Conn>>(), 80),
            ("State", size_of::<State>(), 56),
            ("HttpConn (boxed)", size_of::<HttpConn>(), 64),
            ("SseStream", size_of::<SseStream>(), 56),
            ("PollWait (boxed)", size_of::<PollWait>(), 56),
            ("WsSession (boxed)", size_of::<WsSession>(), 152),
            ("hub::ConnTopics", size_of::<crate::hub::ConnTopics>(), 32),
            (
                "hub index entry",
                crate::hub::LocalIndex::<super::super::shared::Sub>::entry_bytes(),
                24,
            ),
        ];
        for (name, size, budget) in parts {
            println!("size_of::<{name}>() = {size} (budget {budget})");
        }
        for (name, size, budget) in parts {
            assert!(
                size <= budget,
                "{name} grew to {size} bytes (budget {budget})"
            );
        }
    }

    #[test]
    fn a_held_poll_is_no_larger_than_an_sse_stream() {
        // Both hold the same index entries (one per topic); this is the rest of their cost.
        let poll = std::mem::size_of::<PollWait>();
        let sse = std::mem::size_of::<SseStream>();
        println!("size_of::<PollWait>() = {poll}, size_of::<SseStream>() = {sse}");
        assert!(poll <= sse, "PollWait is {poll} bytes, SseStream {sse}");
    }
}
