//! `uringcast-bench`: load generator for SSE and WebSocket servers (see docs/bench.md).
//!
//! Built on uringcast's own `proto` (client role) and io_uring `engine`, so one process holds
//! 100k+ connections. Scenarios: `hold`, `fanout`, `echo`, `connect`. Every run is bounded in
//! time, prints one report (text, and JSON with `--json`), and exits non-zero when the
//! scenario's success criteria fail.

// Until the transport lands, parts are only reached from tests.
#![allow(dead_code)]

mod cli;
mod client;
mod echo;
mod envelope;
mod plan;
mod report;
mod seq;
mod stats;
mod target;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let targets = match cli.scenario.validate() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("uringcast-bench: {e}");
            std::process::exit(2);
        }
    };
    let _ = targets;
    eprintln!("uringcast-bench: transport not built yet");
    std::process::exit(2);
}
