//! uringcast: a push hub for Server-Sent Events and WebSocket on io_uring.
//!
//! Layers, from the wire up (see `docs/decisions.md` and the design notes):
//! - [`proto`]: sans-IO HTTP/1.1, RFC 6455 and SSE state machines over byte slices.
//! - [`engine`]: io_uring worker loop, direct descriptors, connection slab, timer wheel.
//! - [`hub`]: topics, encode-once fan-out, replay history, slow-consumer policy (no ring access).
//! - [`server`]: routes, config, metrics and the `serve` command; thin glue over the others.

pub mod engine;
pub mod hub;
pub mod proto;
pub mod server;
