//! `uringcast-bench`: load generator for SSE and WebSocket servers (see bench/README.md).
//!
//! Built on uringcast's own `proto` (client role) and io_uring `engine`, so one process holds
//! 100k+ connections. Scenarios: `hold`, `fanout`, `echo`, `connect`, and `calibrate` (the
//! harness's own ceiling against a built-in trivial server). Every run is bounded in
//! time, prints one report (text, and JSON with `--json`), and exits non-zero when the
//! scenario's success criteria fail: 0 = success, 1 = criteria failed, 2 = could not run.

mod cli;
mod client;
mod driver;
mod echo;
mod envelope;
mod plan;
mod plot;
mod report;
mod run;
mod seq;
mod source;
mod stats;
mod storm;
mod target;
mod timeline;
mod tls;

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
    let report = match run::run(&cli.scenario, targets) {
        Ok(r) => r,
        Err(run::SetupError(e)) => {
            eprintln!("uringcast-bench: {e}");
            std::process::exit(2);
        }
    };
    let json_to_stdout = cli.scenario.common().json.as_deref() == Some("-");
    // The table goes to stdout unless stdout carries the JSON.
    if json_to_stdout {
        eprint!("{}", report.to_text());
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
        if let Some(path) = &cli.scenario.common().json {
            if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
                eprintln!("uringcast-bench: writing {path}: {e}");
                std::process::exit(2);
            }
            // The plot goes next to the JSON: out.json -> out.svg.
            let svg_path = std::path::Path::new(path).with_extension("svg");
            if let Err(e) = std::fs::write(&svg_path, plot::svg(&report)) {
                eprintln!("uringcast-bench: writing {}: {e}", svg_path.display());
                std::process::exit(2);
            }
        }
    }
    std::process::exit(if report.success { 0 } else { 1 });
}
