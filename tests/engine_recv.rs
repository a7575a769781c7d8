//! The receive path under buffer pressure: many connections sending at once into a provided
//! buffer ring far smaller than the burst. Every byte must reach the handler (the echo proves
//! it), nobody may be closed, and the ring grows only as far as it is allowed to.

mod engine_common;

use std::net::TcpStream;
use std::time::Duration;

use engine_common::*;
use uringcast::engine::{EngineConfig, EngineStats};

/// `n` connections each send `lines` lines of `line_bytes` at once; all must come back.
fn burst(cfg: EngineConfig, n: usize, lines: usize, line_bytes: usize) -> (u64, u64) {
    let Some((engine, _events)) = start(cfg, false) else {
        return (0, 0);
    };
    let addr = engine.local_addr().unwrap();
    let mut conns: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    // Let every recv get armed, then make them all readable at once.
    std::thread::sleep(Duration::from_millis(100));
    let payload: Vec<u8> = (0..lines)
        .flat_map(|l| {
            let mut line = vec![b'a' + (l % 26) as u8; line_bytes - 1];
            line.push(b'\n');
            line
        })
        .collect();
    for c in &mut conns {
        write(c, &payload);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(read_n(c, payload.len()), payload, "connection {i}");
    }
    let h = engine.handle();
    let s = h.stats();
    assert_eq!(
        EngineStats::get(&s.connections_open),
        n as u64,
        "nobody closed"
    );
    assert_eq!(
        EngineStats::get(&s.bytes_received_total),
        (n * payload.len()) as u64,
        "every byte read exactly once"
    );
    let nobufs = EngineStats::get(&s.recv_nobufs_total);
    let added = EngineStats::get(&s.recv_buffers_added_total);
    println!("recv -ENOBUFS: {nobufs}, buffers added (incl. initial): {added}");
    h.shutdown();
    engine.wait().unwrap();
    (nobufs, added)
}

#[test]
fn tiny_fixed_buffer_ring_loses_nothing() {
    let mut cfg = base_config();
    cfg.workers = 1;
    cfg.buf_ring_entries = 4;
    cfg.buf_ring_entries_max = 4;
    cfg.buf_bytes = 128;
    let (nobufs, added) = burst(cfg, 300, 4, 300);
    if added == 0 {
        return; // skipped
    }
    assert!(nobufs > 0, "the burst did not run the ring dry");
    assert_eq!(added, 4, "a fixed ring must not grow");
}

#[test]
fn buffer_ring_grows_under_a_burst_up_to_its_max() {
    let mut cfg = base_config();
    cfg.workers = 1;
    cfg.buf_ring_entries = 2;
    cfg.buf_ring_entries_max = 0; // derived: 944 connections per ring / 16 -> 64
    cfg.buf_bytes = 128;
    let (nobufs, added) = burst(cfg, 300, 4, 300);
    if added == 0 {
        return;
    }
    assert!(nobufs > 0, "the burst did not run the ring dry");
    assert!(added > 2, "the ring did not grow: {added}");
    assert!(added <= 64, "the ring grew past its max: {added}");
}
