//! Per-IP limits and `/metrics` access against the real server over loopback. Clients bind
//! their sockets to different 127.0.0.x sources, which the server counts as different IPs.
//!
//! What loopback cannot show: a non-loopback peer. The refusal of `/metrics` is shown with
//! `--metrics-loopback false`, which makes loopback peers need the admin key as any other
//! peer would.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{read_response, Server};

/// A TCP connection to `addr` from source address `src` (port chosen by the kernel).
fn connect_from(src: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((IpAddr::from(src), 0)).into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Status of the response head to `request`, sent on `s`; the head is read, nothing more.
fn status_of(s: &mut TcpStream, request: &str) -> u16 {
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "no response head ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Whether the server learns peer addresses (getsockopt SO_PEERNAME through io_uring, Linux
/// 6.7); without them no per-IP limit applies, and the limit tests skip.
fn peer_addresses_known(s: &Server) -> bool {
    let (status, _, body) = common::http(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    let unknown = text
        .lines()
        .find_map(|l| l.strip_prefix("uringcast_peer_unknown_total "))
        .expect("uringcast_peer_unknown_total in /metrics");
    if unknown != "0" {
        eprintln!("SKIPPED: the server gets no peer addresses (needs Linux 6.7)");
    }
    unknown == "0"
}

const SSE: &str = "GET /sse?topic=t HTTP/1.1\r\nHost: t\r\n\r\n";
const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Whether the server closed `s` (EOF or reset) within a few seconds.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

#[test]
fn connections_beyond_the_per_ip_limit_get_503_while_other_ips_connect() {
    let s = Server::start(&["--workers", "2", "--connections-per-ip-max", "3"]);
    if !peer_addresses_known(&s) {
        return;
    }
    // Three streams from 127.0.0.2 are held open.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = connect_from([127, 0, 0, 2], s.addr);
            assert_eq!(status_of(&mut c, SSE), 200);
            c
        })
        .collect();
    // The fourth from the same IP is refused before any upgrade, then closed.
    let mut fourth = connect_from([127, 0, 0, 2], s.addr);
    fourth.write_all(SSE.as_bytes()).unwrap();
    let (status, headers, body) = read_response(&mut fourth);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(common::header(&headers, "retry-after"), Some("1"));
    assert_eq!(common::header(&headers, "connection"), Some("close"));
    assert!(closed_by_server(&mut fourth));
    // Any request counts, not only streams.
    let mut plain = connect_from([127, 0, 0, 2], s.addr);
    assert_eq!(status_of(&mut plain, HEALTHZ), 503);
    // Another source IP is not affected.
    let mut other = connect_from([127, 0, 0, 3], s.addr);
    assert_eq!(status_of(&mut other, SSE), 200);
    // Closing one held stream frees a place for 127.0.0.2 (once the server saw the close).
    // A refused client that never sends a request is not kept for `request_timeout` (10 s).
    let mut silent = connect_from([127, 0, 0, 2], s.addr);
    let t = Instant::now();
    assert!(closed_by_server(&mut silent));
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "refused and silent: closed after {waited:?}"
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from([127, 0, 0, 2], s.addr);
        match status_of(&mut again, SSE) {
            200 => break,
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            status => panic!("after a close, expected 200, got {status}"),
        }
    }
    drop(held);
}

#[test]
fn handshakes_beyond_the_per_ip_rate_get_429() {
    let s = Server::start(&["--handshakes-per-ip-per-sec", "2"]);
    if !peer_addresses_known(&s) {
        return;
    }
    let start = Instant::now();
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            let mut c = connect_from([127, 0, 0, 4], s.addr);
            status_of(&mut c, HEALTHZ)
        })
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|&&st| st == 200).count();
    let limited = statuses.iter().filter(|&&st| st == 429).count();
    assert_eq!(ok + limited, 10, "{statuses:?}");
    // A burst of 2, then 2 per second: never more than that in the time the loop took.
    let allowed = 2 + (elapsed * 2.0).ceil() as usize;
    assert!(
        (1..=allowed).contains(&ok) && limited >= 1,
        "{statuses:?} in {elapsed:.2}s"
    );
    assert_eq!(statuses[0], 200);
    // Another source IP still gets in at once.
    let mut other = connect_from([127, 0, 0, 5], s.addr);
    assert_eq!(status_of(&mut other, HEALTHZ), 200);
}

#[test]
fn metrics_answers_loopback_peers_and_the_admin_key() {
    // Defaults: a loopback peer may scrape.
    let s = Server::start(&[]);
    let (status, _, body) = common::http(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("uringcast_accepted_total"));
    drop(s);

    // Loopback not trusted: only the key opens it, for any peer.
    let s = Server::start(&["--metrics-loopback", "false", "--admin-key", "s3cret"]);
    let get = |auth: &str| {
        let req = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
        let mut c = connect_from([127, 0, 0, 6], s.addr);
        c.write_all(req.as_bytes()).unwrap();
        let (status, _, body) = read_response(&mut c);
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, body) = get("");
    assert_eq!(status, 403, "{body}");
    assert_eq!(get("Authorization: Bearer wrong\r\n").0, 403);
    assert_eq!(get("Authorization: Basic s3cret\r\n").0, 403);
    let (status, body) = get("Authorization: Bearer s3cret\r\n");
    assert_eq!(status, 200);
    assert!(body.contains("uringcast_accepted_total"));
    // Other routes are not affected.
    let mut c = connect_from([127, 0, 0, 6], s.addr);
    assert_eq!(status_of(&mut c, HEALTHZ), 200);
}

/// `--admin-listen`: a second address that serves `/metrics` (whatever `metrics_loopback` and
/// the key say, since the operator chose who can reach it) and `/healthz`, and nothing else;
/// its `/metrics` reports the main listener's traffic.
#[test]
fn admin_listen_serves_metrics_and_nothing_else() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_uringcast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-loopback",
            "false",
            "--publish-open",
            "true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr_of = |prefix: &str| -> SocketAddr {
        loop {
            let line = lines.next().expect("server output").unwrap();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
    };
    let main = addr_of("uringcast: listening on ");
    let admin = addr_of("uringcast: admin listening on ");
    let get = |addr: SocketAddr, path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        common::http(addr, req.as_bytes())
    };
    assert_eq!(
        get(main, "/metrics").0,
        403,
        "main listener: loopback is not enough"
    );
    common::publish(main, "a", "x");
    let (status, _, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("uringcast_published_total 1"),
        "the admin address reports the server's counters: {text}"
    );
    assert!(
        !text.contains("uringcast_accepted_total 0\n"),
        "the main engine's accepts"
    );
    assert_eq!(get(admin, "/healthz").0, 200);
    let (status, _, body) = get(admin, "/topics/a");
    assert_eq!(status, 200, "the admin address answers /topics too");
    assert!(String::from_utf8_lossy(&body).contains("\"name\":\"a\""));
    let (status, _, body) = get(admin, "/");
    assert_eq!(status, 200, "and the status page");
    assert!(String::from_utf8_lossy(&body).contains("status/events"));
    assert_eq!(get(admin, "/sse?topic=a").0, 404);
    assert_eq!(get(admin, "/publish?topic=a").0, 404);
    let _ = child.kill();
    let _ = child.wait();
}
