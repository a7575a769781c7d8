//! Server glue: the command line, configuration, routes and metrics, and the per-worker
//! dispatcher that maps a parsed request to calls into `proto` and `hub`; the engine moves the
//! bytes.
//!
//! Files, each one concern, each row importing only rows below it (docs/architecture.md has
//! the same table):
//! ```text
//! doctor, cli                 entry points (doctor asks the config for its engine config)
//! serve                       starts the engine with a Dispatcher per worker, $stats, cluster
//! dispatch                    engine Handler: the read loop, routing, state changes
//! conn                        per-connection state (Http | Sse | Ws | Poll) and close reason
//! poll                        a long poll: an SSE request's rules, a JSON answer
//! sse, ws                     one behaviour each: an SSE stream, a WebSocket session
//! publish                     the whole publish (HTTP and WebSocket), asking auth who may
//! tickets                     POST /tickets: a token traded for a single-use ticket
//! operator                    the operator's view: /topics, the status page, $stats
//! subscribe                   subscriptions, replay, live fan-out, slow-consumer cut
//! out                         a connection's way out during its own callbacks
//! body                        a request body being read (publish, tickets)
//! shared                      what all workers share: config, auth, the hub lock, counters
//! auth                        who may do what: tokens, tickets, public topics, origins
//! jwt, ticket_table           auth's parts: token checks, the shared ticket table
//! grant                       patterns, scopes, grants, AuthError, constant-time compare
//! config                      the config key table (reads route's built-in paths)
//! route, metrics              leaves: route table, counters
//! limits                      per-IP admission (connection count, handshake rate)
//! presence                    subscribers per topic over all workers (`/topics`)
//! tls                         certificate files and reload, per-worker rustls sessions
//! cluster                     cluster mode: the Redis side threads (docs/cluster.md)
//! ```

mod auth;
mod body;
pub mod cli;
mod cluster;
pub mod config;
mod conn;
mod dispatch;
pub mod doctor;
mod grant;
mod jwt;
pub mod limits;
pub mod metrics;
mod operator;
mod out;
mod poll;
mod presence;
mod publish;
pub mod route;
pub mod serve;
mod shared;
mod sse;
mod subscribe;
mod ticket_table;
mod tickets;
pub mod tls;
mod ws;

pub use dispatch::Dispatcher;
pub use shared::{Shared, WorkerMsg};
