//! Many connections over several rings, and a deliberately tiny file table that must refuse
//! extra connections cleanly (no loss) and take them once slots free.

mod engine_common;

use std::io::Read;
use std::time::Duration;

use engine_common::*;
use uringcast::engine::EngineStats;

#[test]
fn five_thousand_connections_over_two_workers_and_several_rings() {
    let mut cfg = base_config();
    cfg.workers = 2;
    cfg.rings_per_worker = 0; // derived: 5,000 / 2 workers / (1024 - 64 - 16) per ring = 3 rings
    cfg.files_per_ring = 1024;
    cfg.listen_backlog = 64;
    cfg.connections_max = 5_000;
    let Some((engine, _events)) = start(cfg, false) else {
        return;
    };
    assert!(
        engine.connections_capacity() >= 5_000,
        "{}",
        engine.connections_capacity()
    );
    let addr = engine.local_addr().unwrap();
    // Each ring accepts at most 944, so serving all 5,000 proves at least six rings took part
    // (ring 0 plus secondary rings woken through ring 0's poll on their fds).
    let n = 5_000;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = connect(addr);
        write(&mut c, format!("c{i}\n").as_bytes());
        conns.push(c);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let want = format!("c{i}\n");
        assert_eq!(read_n(c, want.len()), want.as_bytes());
    }
    let h = engine.handle();
    assert_eq!(EngineStats::get(&h.stats().connections_open), n as u64);
    assert_eq!(EngineStats::get(&h.stats().accepted_total), n as u64);
    // Each worker started with one ring and opened more as its tables filled: 5,000 over two
    // workers of 944 per ring needs at least three rings per worker somewhere.
    let rings = EngineStats::get(&h.stats().rings_open);
    assert!((5..=6).contains(&rings), "rings open: {rings}");
    drop(conns);
    assert!(wait_until(5_000, || EngineStats::get(
        &h.stats().connections_open
    ) == 0));
    assert_eq!(EngineStats::get(&h.stats().closed_peer_total), n as u64);
    assert_eq!(EngineStats::get(&h.stats().stale_completions_total), 0);
    h.shutdown();
    engine.wait().unwrap();
}

/// A small load stays on one ring per worker, however many rings the capacity target allows:
/// one ring needs less CPU per message than several (docs/benchmarks-peers.md).
#[test]
fn small_load_uses_one_ring_per_worker() {
    let mut cfg = base_config();
    cfg.workers = 2;
    cfg.rings_per_worker = 0; // derived: 100,000 / 2 / 944 = 53 rings at most per worker
    cfg.files_per_ring = 1024;
    cfg.listen_backlog = 64;
    cfg.connections_max = 100_000;
    let Some((engine, _events)) = start(cfg, false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    let mut conns: Vec<_> = (0..200).map(|_| connect(addr)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let want = format!("s{i}\n");
        write(c, want.as_bytes());
        assert_eq!(read_n(c, want.len()), want.as_bytes());
    }
    let h = engine.handle();
    assert_eq!(EngineStats::get(&h.stats().connections_open), 200);
    assert_eq!(EngineStats::get(&h.stats().rings_open), 2);
    drop(conns);
    h.shutdown();
    engine.wait().unwrap();
}

#[test]
fn tiny_table_refuses_cleanly_and_resumes_when_slots_free() {
    let mut cfg = base_config();
    cfg.workers = 1;
    cfg.rings_per_worker = 1;
    cfg.files_per_ring = 16; // backlog 2, accept limit 16 - 2 - 4 = 10
    cfg.listen_backlog = 2;
    let Some((engine, _events)) = start(cfg, false) else {
        return;
    };
    let limit = engine.connections_capacity();
    assert_eq!(limit, 10);
    let addr = engine.local_addr().unwrap();
    let mut held: Vec<_> = (0..limit).map(|_| connect(addr)).collect();
    for (i, c) in held.iter_mut().enumerate() {
        write(c, format!("h{i}\n").as_bytes());
        assert_eq!(
            read_n(c, format!("h{i}\n").len()),
            format!("h{i}\n").as_bytes()
        );
    }
    // Extra connections complete the TCP handshake into the backlog but are not accepted.
    let h = engine.handle();
    assert!(wait_until(1_000, || EngineStats::get(
        &h.stats().accept_paused_total
    ) >= 1));
    let mut extra: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    for (i, c) in extra.iter_mut().enumerate() {
        write(c, format!("x{i}\n").as_bytes());
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 8];
        let r = c.read(&mut b);
        assert!(
            r.is_err(),
            "extra connection {i} was served past the limit: {r:?}"
        );
    }
    // The held ones keep working.
    for c in held.iter_mut().take(3) {
        write(c, b"still\n");
        assert_eq!(read_n(c, 6), b"still\n");
    }
    assert_eq!(EngineStats::get(&h.stats().connections_open), limit as u64);
    // Free two slots: the waiting connections are accepted and answered (their data was kept).
    held.truncate(limit - 2);
    for (i, c) in extra.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let want = format!("x{i}\n");
        assert_eq!(read_n(c, want.len()), want.as_bytes());
    }
    assert_eq!(
        EngineStats::get(&h.stats().accepted_total),
        limit as u64 + 2
    );
    let errs: u64 = uringcast::engine::AcceptErrorKind::ALL
        .iter()
        .map(|&k| h.stats().accept_errors(k))
        .sum();
    assert_eq!(errs, 0, "no connection may be lost to a full table");
    h.shutdown();
    engine.wait().unwrap();
}
