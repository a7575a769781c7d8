use mimalloc::MiMalloc;

// mimalloc keeps per-thread heaps, which suits one event loop per core, and returns freed
// connection buffers to the OS more eagerly than glibc malloc under churn.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let matches = uringcast::server::cli::command().get_matches();
    match matches.subcommand() {
        Some(("serve", m)) => {
            let config = match uringcast::server::cli::config_from(m, std::env::vars()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("uringcast: {e}");
                    std::process::exit(2);
                }
            };
            eprintln!("uringcast: config ok, server not built yet: {config:?}");
            std::process::exit(2);
        }
        Some(("example-config", _)) => {
            print!("{}", uringcast::server::config::Config::example_toml())
        }
        _ => unreachable!("clap requires a subcommand"),
    }
}
