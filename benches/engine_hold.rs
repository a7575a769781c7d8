//! Capacity experiment (not a test): one server process with the echo handler holds as many
//! idle connections as a client engine in this process can open, then reports the server's
//! RSS per connection and how long a SIGTERM drain takes.
//!
//! Run (bounded: `HOLD_CONNS` connections, `HOLD_SECS` to open them):
//!   HOLD_CONNS=200000 cargo bench --bench engine_hold
//!   (add `--profile dev` for a quick build; memory per connection does not depend on it)
//!
//! The client side uses the engine's own client role (`Ctx::connect`, direct descriptors, no
//! process fd), spreading connections over source addresses 127.0.0.2.. (10,000 each, well under
//! the 28,232 ephemeral ports per address), at most `WINDOW` connects in flight per worker.

#[path = "../tests/engine_common/mod.rs"]
mod engine_common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uringcast::engine::{
    CloseReason, ConnId, Ctx, Engine, EngineConfig, EngineStats, Handler, Origin,
};

const PER_SRC_IP: usize = 10_000;
const WINDOW: usize = 2_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not start a 100,000-connection experiment.
    let asked = std::env::args().any(|a| a == "--bench")
        || std::env::var_os("HOLD_CONNS").is_some()
        || std::env::var_os("HOLD_SERVER").is_some();
    if !asked {
        println!(
            "engine_hold: skipped (run with `cargo bench --bench engine_hold` or HOLD_CONNS=n)"
        );
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::var("HOLD_SERVER").is_ok() {
        server();
    } else {
        client();
    }
}

fn server() {
    let n = env_usize("HOLD_CONNS", 100_000);
    let cfg = EngineConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        workers: 2,
        connections_max: n + n / 10 + 1000,
        drain_timeout_ms: env_usize("HOLD_DRAIN_MS", 10_000) as u64,
        handle_signals: true,
        ..EngineConfig::default()
    };
    let (tx, _rx) = std::sync::mpsc::channel();
    let engine = Engine::start(cfg, move |worker| engine_common::Echo {
        worker,
        events: tx.clone(),
        ignore_shutdown: false,
    })
    .unwrap_or_else(|e| {
        eprintln!("server: {e}");
        std::process::exit(1)
    });
    println!(
        "PORT {} CAPACITY {}",
        engine.local_addr().unwrap().port(),
        engine.connections_capacity()
    );
    let h = engine.handle();
    let hs = h.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(5));
        let s = hs.stats();
        let errs: Vec<u64> = uringcast::engine::AcceptErrorKind::ALL
            .iter()
            .map(|&k| s.accept_errors(k))
            .collect();
        eprintln!(
            "server: open {} accepted {} paused {} accept_errors {errs:?} stale {}",
            EngineStats::get(&s.connections_open),
            EngineStats::get(&s.accepted_total),
            EngineStats::get(&s.accept_paused_total),
            EngineStats::get(&s.stale_completions_total),
        );
    });
    engine.wait().unwrap();
    let s = h.stats();
    println!(
        "server: exit after drain; accepted {} closed_local {} closed_peer {} closed_shutdown {} closed_flush_timeout {} closed_error {}",
        EngineStats::get(&s.accepted_total),
        EngineStats::get(&s.closed_local_total),
        EngineStats::get(&s.closed_peer_total),
        EngineStats::get(&s.closed_shutdown_total),
        EngineStats::get(&s.closed_timeout_total),
        EngineStats::get(&s.closed_error_total),
    );
}

/// Opens `target` connections from its worker, keeping `WINDOW` connects in flight.
struct Opener {
    server: SocketAddr,
    first: usize,
    left: usize,
    inflight: usize,
    next: usize,
    opened: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Opener {
    fn pump(&mut self, ctx: &mut Ctx<'_, Self>) {
        while self.left > 0 && self.inflight < WINDOW {
            let i = self.first + self.next;
            let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SRC_IP) as u8));
            self.next += 1;
            self.left -= 1;
            match ctx.connect(self.server, Some(src)) {
                Ok(_) => self.inflight += 1,
                Err(_) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Handler for Opener {
    type Conn = ();
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>, _: ConnId, _: Origin) {
        self.inflight -= 1;
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.pump(ctx);
    }
    fn on_data(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut (), d: &mut [u8]) -> usize {
        d.len()
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut ()) {}
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: (), _: CloseReason) {}
    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, _: ()) {
        self.pump(ctx);
    }
    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut ()) {
        ctx.abort(id);
    }
    fn on_connect_failed(&mut self, ctx: &mut Ctx<'_, Self>, _: ConnId, errno: i32) {
        self.inflight -= 1;
        if self.failed.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("client: connect failed: errno {errno}");
        }
        self.pump(ctx);
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn client() {
    let n = env_usize("HOLD_CONNS", 100_000);
    let secs = env_usize("HOLD_SECS", 120) as u64;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("HOLD_SERVER", "1")
        .env("HOLD_CONNS", n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .split_whitespace()
        .nth(1)
        .expect("PORT line")
        .parse()
        .unwrap();
    println!("server pid {pid}: {}", line.trim());
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = rss_kib(pid);

    let workers = 2;
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let cfg = EngineConfig {
        listen: None,
        workers,
        connections_max: n + 1000,
        handle_signals: false,
        buf_ring_entries: 16,
        ..EngineConfig::default()
    };
    let (o, f) = (Arc::clone(&opened), Arc::clone(&failed));
    let per_worker = n.div_ceil(workers);
    let client = Engine::start(cfg, move |w| Opener {
        server,
        first: w * per_worker,
        left: per_worker.min(n.saturating_sub(w * per_worker)),
        inflight: 0,
        next: 0,
        opened: Arc::clone(&o),
        failed: Arc::clone(&f),
    })
    .expect("client engine");
    let h = client.handle();
    let t0 = Instant::now();
    for w in 0..workers {
        h.post(w, ());
    }
    let deadline = t0 + Duration::from_secs(secs);
    let mut last_print = Instant::now();
    loop {
        let (ok, bad) = (
            opened.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        if ok + bad >= n as u64 || Instant::now() >= deadline {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            println!(
                "  {:>6.1}s opened {ok} failed {bad} server RSS {} MiB",
                t0.elapsed().as_secs_f64(),
                rss_kib(pid) / 1024
            );
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2)); // let the server settle
    let (ok, bad) = (
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    let rss1 = rss_kib(pid);
    println!(
        "opened {ok} (failed {bad}) in {open_secs:.1}s = {:.0} conn/s",
        ok as f64 / open_secs
    );
    println!(
        "server RSS: {} KiB idle, {} KiB holding {ok} => {:.0} bytes per connection",
        rss0,
        rss1,
        (rss1.saturating_sub(rss0) * 1024) as f64 / ok.max(1) as f64
    );
    let t1 = Instant::now();
    // SAFETY: sends SIGTERM to the child we spawned (its pid is still ours: not yet reaped).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    while out.read_line(&mut rest).unwrap_or(0) > 0 {}
    print!("{rest}");
    println!(
        "server SIGTERM -> exit {status} in {:.2}s",
        t1.elapsed().as_secs_f64()
    );
    h.shutdown();
    client.wait().unwrap();
}
