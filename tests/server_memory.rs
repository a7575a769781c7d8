//! One memory bound per connection, tried as an attacker would: a client that pipelines
//! requests and never reads the answers must not grow the server's memory past the queue bound
//! (the server stops reading it instead), while everyone else is still served.

mod common;

use common::Server;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let (_, _, body) = common::http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn pipelined_requests_never_read_keep_server_memory_under_the_queue_bound() {
    // The default bound.
    let queue_bytes_max: u64 = 4 << 20;
    // One worker with one ring, so the attackers share the warmed-up receive buffers.
    let s = Server::start(&["--workers", "1", "--connections-max", "1000"]);
    // Warm up what any busy server has touched anyway: every provided receive buffer of the
    // ring and the allocator's arenas. A well-behaved client pipelines 2 MB of requests and
    // reads every answer.
    {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        let n = 2_000_000 / req.len();
        let reader = {
            let mut c = c.try_clone().unwrap();
            std::thread::spawn(move || {
                for _ in 0..n {
                    assert_eq!(common::read_response(&mut c).0, 200);
                }
            })
        };
        c.write_all(&req.repeat(n)).unwrap();
        reader.join().unwrap();
    }
    let before = rss_bytes(s.child.id());
    let buffers_before = metric(s.addr, "uringcast_recv_buffers_added_total");
    let paused_before = metric(s.addr, "uringcast_read_paused_total");

    // The attackers: several at once (one is not an attack: the warm-up's own footprint varies
    // by megabytes with scheduling), each with a small receive buffer, writing as fast as the
    // server reads and never reading.
    const ATTACKERS: u64 = 8;
    let start = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let addr = s.addr;
            let done = done.clone();
            std::thread::spawn(move || {
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                sock.set_recv_buffer_size(4096).unwrap();
                sock.connect(&addr.into()).unwrap();
                let mut attacker: TcpStream = sock.into();
                attacker
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let req = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
                let batch: Vec<u8> = req.repeat(1000);
                let mut sent_requests = 0u64;
                // Until 1,000,000 requests are written, the server stops taking them (the
                // write times out: its socket buffers are full), or 20 s pass.
                while sent_requests < 1_000_000 && start.elapsed() < Duration::from_secs(20) {
                    match attacker.write_all(&batch) {
                        Ok(()) => sent_requests += 1000,
                        Err(_) => break,
                    }
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (attacker, sent_requests)
            })
        })
        .collect();
    let mut peak = before;
    while done.load(std::sync::atomic::Ordering::SeqCst) < ATTACKERS as usize {
        peak = peak.max(rss_bytes(s.child.id()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let attackers: Vec<(TcpStream, u64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let sent_requests: u64 = attackers.iter().map(|a| a.1).sum();
    // Let the server do whatever it will with what it read, then measure again.
    std::thread::sleep(Duration::from_millis(500));
    peak = peak.max(rss_bytes(s.child.id()));
    // The ring's provided receive buffers may grow on a busy box (a turn that ends with
    // receives starved doubles them, up to a fixed maximum shared by every connection of the
    // ring): that memory is the ring's, bounded and counted, not this connection's.
    let buffers_added = metric(s.addr, "uringcast_recv_buffers_added_total") - buffers_before;
    let ring_growth = buffers_added * 4096;
    let growth = peak.saturating_sub(before).saturating_sub(ring_growth);
    eprintln!(
        "{ATTACKERS} attackers wrote {sent_requests} requests in {:?}; server RSS {before} -> \
         peak {peak} (+{growth} B besides {ring_growth} B of new ring buffers, {} B each)",
        start.elapsed(),
        growth / ATTACKERS
    );
    // Everyone else is still served.
    let (status, _, body) = common::http(s.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    eprintln!(
        "held while paused: {} B",
        metric(s.addr, "uringcast_read_held_bytes_total")
    );
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let paused: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("uringcast_read_paused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("uringcast_read_paused_total in /metrics");
    assert!(
        paused - paused_before >= ATTACKERS,
        "the attackers' reading was paused"
    );
    assert!(
        growth / ATTACKERS < queue_bytes_max + (1 << 20),
        "RSS grew by {growth} B, more than queue_bytes_max + 1 MiB per attacker"
    );
    drop(attackers);
}
