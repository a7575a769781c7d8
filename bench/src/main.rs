//! `uringcast-bench`: load generator for SSE and WebSocket servers (see the load-generator issue).
//! Built on uringcast's own `proto` (client role) and `engine`.

fn main() {
    eprintln!("uringcast-bench: not built yet");
    std::process::exit(2);
}
