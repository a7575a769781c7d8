//! Accept after a mass close: a server that held and lost many connections at once must accept
//! (and serve) the next wave completely. The capacity run saw a server that had dropped 400k
//! connections accept only 2,496 new ones in 5 minutes (docs/capacity.md, "Limits hit" 2).

mod engine_common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use engine_common::*;
use uringcast::engine::{AcceptErrorKind, EngineStats};

fn connect_slow(addr: SocketAddr) -> TcpStream {
    // A full accept queue drops SYNs; the client retries after 1 s, 3 s, ...
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(15)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// `rounds` times: open `n` connections (each answered once), then drop them all at once and
/// immediately open the next wave. Every connection of every wave must be served.
fn waves(cfg: uringcast::engine::EngineConfig, n: usize, rounds: usize, bound: Duration) {
    let Some((engine, _events)) = start(cfg, false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    let h = engine.handle();
    let mut prev: Vec<TcpStream> = Vec::new();
    for round in 0..rounds {
        let t0 = Instant::now();
        // Mass close from the client side, then at once the next wave.
        drop(std::mem::take(&mut prev));
        let mut conns: Vec<TcpStream> = (0..n).map(|_| connect_slow(addr)).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            write(c, format!("r{round}c{i}\n").as_bytes());
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let want = format!("r{round}c{i}\n");
            assert_eq!(
                read_n(c, want.len()),
                want.as_bytes(),
                "round {round} connection {i}"
            );
        }
        let took = t0.elapsed();
        println!(
            "round {round}: {n} served in {took:?} (accepted_total {}, paused {}, stalls {})",
            EngineStats::get(&h.stats().accepted_total),
            EngineStats::get(&h.stats().accept_paused_total),
            EngineStats::get(&h.stats().accept_stalls_total)
        );
        assert!(took < bound, "round {round} took {took:?}");
        prev = conns;
    }
    drop(prev);
    assert!(wait_until(5_000, || EngineStats::get(
        &h.stats().connections_open
    ) == 0));
    let errs: u64 = AcceptErrorKind::ALL
        .iter()
        .map(|&k| h.stats().accept_errors(k))
        .sum();
    assert_eq!(errs, 0, "no accept error expected");
    assert_eq!(
        EngineStats::get(&h.stats().accept_stalls_total),
        0,
        "a working accept was taken for a stalled one"
    );
    assert_eq!(
        EngineStats::get(&h.stats().accepted_total),
        (n * rounds) as u64
    );
    h.shutdown();
    engine.wait().unwrap();
}

#[test]
fn full_table_closed_at_once_accepts_the_next_wave() {
    let mut cfg = base_config();
    cfg.workers = 1;
    cfg.rings_per_worker = 1;
    cfg.files_per_ring = 64; // backlog 8, accept limit 64 - 8 - 16 = 40
    cfg.listen_backlog = 8;
    // Exactly the limit: the table fills, the accept is paused, then every slot frees at once.
    waves(cfg, 40, 8, Duration::from_secs(20));
}

/// `ACCEPT_WAVE_CONNS=15000` runs bigger waves (client sockets are process fds: keep it under
/// RLIMIT_NOFILE).
#[test]
fn thousands_closed_at_once_over_several_rings_accepts_the_next_wave() {
    let n: usize = std::env::var("ACCEPT_WAVE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let mut cfg = base_config();
    cfg.workers = 2;
    cfg.rings_per_worker = 3;
    // 3,000: accept limit 944 per ring, 5,664 in all; bigger waves get bigger tables.
    cfg.files_per_ring = if n <= 4_000 { 1024 } else { 4096 };
    cfg.listen_backlog = 64;
    cfg.sq_entries = 64; // small CQs (256): a mass close overflows them
    waves(cfg, n, 4, Duration::from_secs(30));
}
