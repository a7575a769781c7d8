use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    eprintln!("uringcast: not built yet");
    std::process::exit(2);
}
