//! Server glue: the command line, configuration, routes and metrics. Thin by design: routes map
//! a parsed request head to calls into `proto` and `hub`; the engine moves the bytes.

pub mod cli;
pub mod config;
pub mod doctor;
pub mod handler;
pub mod metrics;
mod publish;
pub mod serve;
mod sse_session;
mod ws_session;
