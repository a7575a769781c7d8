//! io_uring engine: worker threads, rings, direct descriptors, connection slab, timer wheel.
//!
//! The engine moves bytes and timer ticks between the kernel and a [`Handler`]; it never parses
//! a protocol, never decides a slow-consumer policy and never copies an outgoing buffer (sends
//! are shared [`bytes::Bytes`] handles). Each worker thread owns its rings, its slab and its
//! wheel; nothing on the per-connection path takes a lock.
//!
//! Kernel features used (minimum version beside each): multishot accept into a sparse registered
//! file table (`AcceptMulti` + `IORING_FILE_INDEX_ALLOC`, 5.19), the accepted socket's peer
//! address by `getsockopt(SO_PEERNAME)` through `IORING_OP_URING_CMD` (6.7), multishot receive with a provided
//! buffer ring (`RecvMulti` 6.0, `register_buf_ring` 5.19), cancel by fixed fd (`AsyncCancel2`,
//! 5.19), `Socket` with a direct descriptor (5.19), `Bind` (6.11) for the client role,
//! `IORING_ENTER_EXT_ARG` wait timeouts (5.11), and `IORING_SETUP_DEFER_TASKRUN` (6.1; without
//! it ring 0 falls back to `COOP_TASKRUN` like the others).
//!
//! # Call order seen by a handler
//! For one connection: `on_open` (exactly once) → any number of `on_data` / `on_timer` /
//! `on_drain` / `on_shutdown` → `on_close` (exactly once, gets the `Conn` back). For an outbound connection
//! that never connects: `on_connect_failed` only. `on_msg` is per worker, not per connection.
//! All callbacks of one worker run on that worker's thread, one at a time.
#![deny(clippy::undocumented_unsafe_blocks)]

mod accept;
mod buf_ring;
mod config;
mod connect;
mod core;
mod ctx;
mod error;
mod flow;
mod inbox;
mod peer;
mod recv;
mod ring;
mod run;
mod send;
mod signal;
mod slab;
mod stats;
pub mod user_data;
pub mod wheel;
mod worker;

use std::net::SocketAddr;

pub use config::{EngineConfig, HangupHook, RingLayout};
pub use ctx::Ctx;
pub use error::EngineError;
pub use inbox::EngineHandle;
pub use run::Engine;
pub use stats::{AcceptErrorKind, EngineStats};

/// A connection within one worker. `gen` makes an id of a closed-and-reused slot detectable:
/// every `Ctx` call with a stale id is a no-op (returns `false` / 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub gen: u32,
}

/// How a connection came to be. Given to [`Handler::on_open`] only: the engine keeps no
/// address per connection, so a handler that needs the peer later keeps what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Accepted on this worker's listener. `peer` is the client's address, looked up with
    /// `getsockopt(SO_PEERNAME)` through io_uring (Linux 6.7; `peer.rs`); `None` if the lookup
    /// failed or the kernel lacks it. On an IPv6 listener an IPv4 client appears as an
    /// IPv4-mapped address (`::ffff:a.b.c.d`).
    Accepted { peer: Option<SocketAddr> },
    /// Outbound, from [`Ctx::connect`] (client role).
    Connected,
}

/// Why a connection ended, passed to [`Handler::on_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (recv returned 0).
    PeerClosed,
    /// A socket error (positive errno, e.g. `libc::ECONNRESET`).
    Error(i32),
    /// The handler called [`Ctx::close`] (queue flushed) or [`Ctx::abort`].
    Closed,
    /// [`Ctx::close`] could not flush within `close_flush_timeout_ms`.
    FlushTimeout,
    /// Unconsumed input grew past `leftover_bytes_max`.
    LeftoverOverflow,
    /// Graceful shutdown aborted it after `drain_timeout_ms`.
    Shutdown,
    /// A [`Ctx::send`] would have queued more than `send_queue_bytes_max`; the connection was
    /// aborted (queue dropped).
    QueueOverflow,
}

/// The protocol side of the engine. One instance per worker (built by `make_handler(worker)`).
pub trait Handler: Sized + 'static {
    /// Per-connection protocol state, kept in a slab parallel to the engine's.
    type Conn;
    /// Cross-worker message (e.g. `Arc<hub::Message>`).
    type Msg: Send + 'static;

    /// A connection opened. The returned state is handed back in every later callback.
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, origin: Origin) -> Self::Conn;

    /// Bytes arrived. `data` = leftover (unconsumed from the last call) + new bytes, mutable so
    /// decoders can unmask in place. Return how many bytes were consumed (`<= data.len()`); the
    /// engine keeps the rest (bounded by `leftover_bytes_max`, else the connection is closed with
    /// [`CloseReason::LeftoverOverflow`]) and passes them again, followed by new bytes, on the next
    /// call. An idle connection holds no buffer. When reading resumes after a pause
    /// (`read_pause_bytes`), the bytes held meanwhile come in one call with no new bytes.
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Self::Conn,
        data: &mut [u8],
    ) -> usize;

    /// The connection's single timer (set via [`Ctx::set_timer`]) fired. Not called once the
    /// connection is closing.
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Self::Conn);

    /// The connection is gone (peer closed, error, or `ctx.close` finished). Release
    /// subscriptions. `id` is stale from now on.
    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: Self::Conn, why: CloseReason);

    /// A message posted to this worker (`ctx.post` / [`EngineHandle::post`] from any thread).
    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, msg: Self::Msg);

    /// Graceful shutdown began (SIGTERM/SIGINT or [`EngineHandle::shutdown`]): called once per
    /// live connection so the handler can queue a goodbye and `ctx.close(id)`. The engine exits
    /// when all are closed or `drain_timeout_ms` passes (then the rest are aborted).
    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Self::Conn);

    /// Asked for by [`Ctx::notify_drain`]: the connection's queued bytes fell to the drain
    /// threshold (`read_pause_bytes`, else half of `send_queue_bytes_max`, else 0). Once per
    /// request, after the callback that asked (never inside it), and never for a connection
    /// that is closing or closed.
    fn on_drain(&mut self, _ctx: &mut Ctx<'_, Self>, _id: ConnId, _conn: &mut Self::Conn) {}

    /// An outbound connection from [`Ctx::connect`] failed before opening (`errno` positive,
    /// `libc::ETIMEDOUT` after `connect_timeout_ms`). No `Conn` existed; `id` is stale now.
    fn on_connect_failed(&mut self, _ctx: &mut Ctx<'_, Self>, _id: ConnId, _errno: i32) {}
}

/// A handler that serves nothing: it drops whatever arrives and aborts its connections on
/// shutdown. For starting rings without serving (`uringcast doctor` probes that rings of a
/// given size register) and for the engine's own tests.
pub struct Idle;

impl Handler for Idle {
    type Conn = ();
    type Msg = ();
    fn on_open(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: Origin) {}
    fn on_data(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut (), data: &mut [u8]) -> usize {
        data.len()
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut ()) {}
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: (), _: CloseReason) {}
    fn on_msg(&mut self, _: &mut Ctx<'_, Self>, _: ()) {}
    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut ()) {
        ctx.abort(id);
    }
}
