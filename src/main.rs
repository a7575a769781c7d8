use mimalloc::MiMalloc;

// mimalloc keeps per-thread heaps, which suits one event loop per core, and returns freed
// connection buffers to the OS more eagerly than glibc malloc under churn.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let matches = uringcast::server::cli::command().get_matches();
    match matches.subcommand() {
        Some(("serve", m)) => {
            let config = config_or_exit(m);
            init_logging();
            if let Err(e) = uringcast::server::serve::serve(config) {
                eprintln!("uringcast: {e}");
                std::process::exit(1);
            }
        }
        Some(("doctor", m)) => {
            let config = config_or_exit(m);
            let code = uringcast::server::doctor::run(
                &config,
                m.get_flag("json"),
                !m.get_flag("no_probe"),
            );
            std::process::exit(code);
        }
        Some(("example-config", _)) => {
            print!("{}", uringcast::server::config::Config::example_toml())
        }
        _ => unreachable!("clap requires a subcommand"),
    }
}

/// The config from flags, environment and file; a bad one ends the process with status 2 and
/// the error, which names the key and where it came from.
fn config_or_exit(m: &clap::ArgMatches) -> uringcast::server::config::Config {
    uringcast::server::cli::config_from(m, std::env::vars()).unwrap_or_else(|e| {
        eprintln!("uringcast: {e}");
        std::process::exit(2)
    })
}

/// Logs go to stderr; `RUST_LOG` filters them (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
