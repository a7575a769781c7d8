//! Echo, leftover, timers, posts and shutdown against the real kernel (loopback, port 0).

mod engine_common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use engine_common::*;
use uringcast::engine::{CloseReason, EngineStats, Origin};

#[test]
fn echo_round_trip_with_split_lines_and_leftover() {
    let Some((engine, events)) = start(base_config(), false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    let mut c = connect(addr);
    // A line split over three writes: the first two calls leave leftover.
    write(&mut c, b"hel");
    std::thread::sleep(Duration::from_millis(30));
    write(&mut c, b"lo\nwor");
    std::thread::sleep(Duration::from_millis(30));
    write(&mut c, b"ld\n");
    assert_eq!(read_n(&mut c, 12), b"hello\nworld\n");
    // A line longer than one provided buffer (4096) arrives in several CQEs.
    let mut long = vec![b'x'; 10_000];
    long.push(b'\n');
    write(&mut c, &long);
    assert_eq!(read_n(&mut c, long.len()), long);
    write(&mut c, b"close\n");
    assert_eq!(read_to_eof(&mut c), b"");
    match events.recv_timeout(Duration::from_secs(2)).unwrap() {
        engine_common::Event::Open(_, _, Origin::Accepted { .. }) => {}
        other => panic!("expected open, got {other:?}"),
    }
    match events.recv_timeout(Duration::from_secs(2)).unwrap() {
        engine_common::Event::Close(_, _, CloseReason::Closed) => {}
        other => panic!("expected close, got {other:?}"),
    }
    let stats = engine.handle();
    assert!(EngineStats::get(&stats.stats().bytes_received_total) >= 10_015);
    engine.handle().shutdown();
    engine.wait().unwrap();
}

#[test]
fn leftover_past_the_bound_closes_the_connection() {
    let mut cfg = base_config();
    cfg.leftover_bytes_max = 8192;
    let Some((engine, events)) = start(cfg, false) else {
        return;
    };
    let mut c = connect(engine.local_addr().unwrap());
    // 64 KiB with no newline: the leftover would exceed 8 KiB.
    let _ = std::io::Write::write_all(&mut c, &vec![b'a'; 64 * 1024]);
    let _ = read_to_eof_or_reset(&mut c);
    let why = loop {
        match events.recv_timeout(Duration::from_secs(2)).unwrap() {
            engine_common::Event::Close(_, _, why) => break why,
            _ => continue,
        }
    };
    assert_eq!(why, CloseReason::LeftoverOverflow);
    engine.handle().shutdown();
    engine.wait().unwrap();
}

fn read_to_eof_or_reset(c: &mut std::net::TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 1024];
    loop {
        match std::io::Read::read(c, &mut buf) {
            Ok(0) => return Ok(0),
            Ok(_) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn timer_fires_and_closes() {
    let Some((engine, _events)) = start(base_config(), false) else {
        return;
    };
    let mut c = connect(engine.local_addr().unwrap());
    let t0 = Instant::now();
    write(&mut c, b"timer 80\n");
    assert_eq!(read_n(&mut c, 5), b"tick\n");
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(80),
        "fired early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1000),
        "fired late: {elapsed:?}"
    );
    assert_eq!(read_to_eof(&mut c), b"");
    engine.handle().shutdown();
    engine.wait().unwrap();
}

#[test]
fn post_round_trips_between_workers() {
    let Some((engine, _events)) = start(base_config(), false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    // Several connections so that both workers (SO_REUSEPORT spreads them) are exercised.
    let mut conns: Vec<_> = (0..8).map(|_| connect(addr)).collect();
    for c in &mut conns {
        write(c, b"post\n");
    }
    let mut seen_workers = std::collections::HashSet::new();
    for c in &mut conns {
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            line.extend(read_n(c, 1));
        }
        let text = String::from_utf8(line).unwrap();
        let parts: Vec<usize> = text
            .trim()
            .split(' ')
            .skip(1)
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 2, "{text}");
        assert_ne!(
            parts[0], parts[1],
            "the message must visit the other worker: {text}"
        );
        seen_workers.insert(parts[0]);
    }
    let h = engine.handle();
    assert!(EngineStats::get(&h.stats().posted_total) >= 16);
    // Also from a foreign thread: the message is delivered (and answered on no connection).
    assert!(EngineStats::get(&h.stats().wakes_total) <= EngineStats::get(&h.stats().posted_total));
    h.shutdown();
    engine.wait().unwrap();
    println!("connections landed on workers {seen_workers:?}");
}

#[test]
fn shutdown_says_goodbye_and_drains() {
    let Some((engine, _events)) = start(base_config(), false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    let mut conns: Vec<_> = (0..20).map(|_| connect(addr)).collect();
    for c in &mut conns {
        write(c, b"hi\n");
        assert_eq!(read_n(c, 3), b"hi\n");
    }
    let h = engine.handle();
    let t0 = Instant::now();
    h.shutdown();
    for c in &mut conns {
        assert_eq!(read_to_eof(c), b"bye\n");
    }
    engine.wait().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "drain took {:?}",
        t0.elapsed()
    );
    assert_eq!(h.stats().connections_open.load(Ordering::Relaxed), 0);
    // After shutdown nobody listens any more.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn shutdown_aborts_what_the_handler_keeps_after_drain_timeout() {
    let mut cfg = base_config();
    cfg.drain_timeout_ms = 300;
    let Some((engine, _events)) = start(cfg, true) else {
        return;
    };
    let mut c = connect(engine.local_addr().unwrap());
    write(&mut c, b"hi\n");
    assert_eq!(read_n(&mut c, 3), b"hi\n");
    let h = engine.handle();
    let t0 = Instant::now();
    h.shutdown();
    assert_eq!(read_to_eof(&mut c), b"");
    engine.wait().unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(EngineStats::get(&h.stats().closed_shutdown_total), 1);
}

#[test]
fn empty_buffer_ring_rearms_instead_of_closing() {
    let mut cfg = base_config();
    cfg.workers = 1;
    cfg.buf_ring_entries = 2; // far fewer buffers than sockets with data
    cfg.buf_ring_entries_max = 2; // and no growth
    cfg.buf_bytes = 64;
    let Some((engine, _events)) = start(cfg, false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    let mut conns: Vec<_> = (0..50).map(|_| connect(addr)).collect();
    // Let every recv get armed, then make them all readable at once.
    std::thread::sleep(Duration::from_millis(100));
    let line = format!("{}\n", "z".repeat(200)); // several 64-byte buffers each
    for c in &mut conns {
        write(c, line.as_bytes());
    }
    for c in &mut conns {
        assert_eq!(read_n(c, line.len()), line.as_bytes());
    }
    let h = engine.handle();
    let nobufs = EngineStats::get(&h.stats().recv_nobufs_total);
    println!("recv -ENOBUFS completions: {nobufs}");
    assert!(nobufs > 0, "the test did not drain the buffer ring");
    assert_eq!(
        EngineStats::get(&h.stats().connections_open),
        50,
        "nobody was closed"
    );
    h.shutdown();
    engine.wait().unwrap();
}

#[test]
fn post_from_a_foreign_thread_reaches_the_worker() {
    let Some((engine, events)) = start(base_config(), false) else {
        return;
    };
    let mut c = connect(engine.local_addr().unwrap());
    let (worker, id) = match events.recv_timeout(Duration::from_secs(2)).unwrap() {
        engine_common::Event::Open(w, id, _) => (w, id),
        other => panic!("expected open, got {other:?}"),
    };
    let h = engine.handle();
    // `via != usize::MAX` makes the handler answer on `id` directly.
    let poster = std::thread::spawn(move || {
        h.post(
            worker,
            Msg::Ping {
                origin: worker,
                id,
                via: 7,
            },
        )
    });
    poster.join().unwrap();
    let want = format!("posted {worker} 7\n");
    assert_eq!(read_n(&mut c, want.len()), want.as_bytes());
    engine.handle().shutdown();
    engine.wait().unwrap();
}

/// `on_open(Accepted { peer })` carries the client's address and port, for clients bound to
/// different loopback sources (the per-IP limits of the server rest on it).
#[test]
fn accepted_connections_carry_the_peer_address() {
    let Some((engine, events)) = start(base_config(), false) else {
        return;
    };
    let addr = engine.local_addr().unwrap();
    for src in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]] {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&std::net::SocketAddr::from((src, 0)).into())
            .unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut c: std::net::TcpStream = sock.into();
        let local = c.local_addr().unwrap();
        write(&mut c, b"hi\n");
        assert_eq!(read_n(&mut c, 3), b"hi\n");
        let peer = loop {
            match events.recv_timeout(Duration::from_secs(2)).unwrap() {
                engine_common::Event::Open(_, _, Origin::Accepted { peer }) => break peer,
                _ => continue,
            }
        };
        let Some(peer) = peer else {
            eprintln!("SKIPPED: no peer address (getsockopt SO_PEERNAME via io_uring needs 6.7)");
            break;
        };
        assert_eq!(peer, local, "the server sees the client's own address");
    }
    engine.handle().shutdown();
    engine.wait().unwrap();
}

/// On an IPv6 listener the lookup asks for a `sockaddr_in6` (28 bytes): an IPv6 client and an
/// IPv4 client (dual stack, seen as `::ffff:127.0.0.1`) both come with their address.
#[test]
fn ipv6_listener_reports_ipv6_and_mapped_peers() {
    let mut cfg = base_config();
    cfg.listen = Some("[::]:0".parse().unwrap());
    let Some((engine, events)) = start(cfg, false) else {
        return;
    };
    let port = engine.local_addr().unwrap().port();
    for target in ["[::1]", "127.0.0.1"] {
        let addr: std::net::SocketAddr = format!("{target}:{port}").parse().unwrap();
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            eprintln!("SKIPPED {target}: no route on this box");
            continue;
        };
        let local = c.local_addr().unwrap();
        write(&mut c, b"hi\n");
        assert_eq!(read_n(&mut c, 3), b"hi\n");
        let peer = loop {
            match events.recv_timeout(Duration::from_secs(2)).unwrap() {
                engine_common::Event::Open(_, _, Origin::Accepted { peer }) => break peer,
                _ => continue,
            }
        };
        let Some(peer) = peer else {
            eprintln!("SKIPPED: no peer address (getsockopt SO_PEERNAME via io_uring needs 6.7)");
            break;
        };
        assert_eq!(peer.ip().to_canonical(), local.ip(), "{target}");
        assert_eq!(peer.port(), local.port(), "{target}");
        assert!(
            peer.is_ipv6(),
            "an IPv6 listener's sockets report sockaddr_in6"
        );
    }
    engine.handle().shutdown();
    engine.wait().unwrap();
}
