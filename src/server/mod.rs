//! Server glue: the command line, configuration, routes and metrics, and the per-worker
//! dispatcher that maps a parsed request to calls into `proto` and `hub`; the engine moves the
//! bytes.
//!
//! Files, each one concern, lower ones never importing higher ones:
//! ```text
//! cli, serve, doctor          entry points (serve starts the engine with a Dispatcher)
//! dispatch                    engine Handler: the read loop, routing, state changes
//! conn                        per-connection state (Http | Sse | Ws) and close reason
//! sse, ws                     one behaviour each: an SSE stream, a WebSocket session
//! publish                     the whole publish (HTTP and WebSocket), auth included
//! subscribe                   subscriptions, replay, live fan-out, slow-consumer cut
//! out                         a connection's way out: every queued byte, every close
//! route, shared, metrics, config,  leaves: route table, shared state, counters, config,
//! limits                           per-IP admission
//! ```

pub mod cli;
pub mod config;
mod conn;
mod dispatch;
pub mod doctor;
pub mod limits;
pub mod metrics;
mod out;
mod publish;
pub mod route;
pub mod serve;
mod shared;
mod sse;
mod subscribe;
mod ws;

pub use dispatch::Dispatcher;
pub use shared::{Shared, WorkerMsg};
