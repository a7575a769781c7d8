//! HTTP behaviour of the real server over loopback: routes, limits and their status codes,
//! publish authorisation, and the request deadline (slowloris).

mod common;

use common::{header, http, read_response, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn healthz_metrics_404_405() {
    let s = Server::start(&[]);
    let (status, _, body) = http(s.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));

    let (status, headers, body) = http(s.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    for family in [
        "uringcast_connections",
        "uringcast_published_total",
        "uringcast_accepted_total",
        "uringcast_closed_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }

    let (status, _, _) = http(s.addr, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 404);
    let (status, headers, _) = http(
        s.addr,
        b"DELETE /publish?topic=a HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("POST, OPTIONS"));
}

#[test]
fn limits_answer_414_431_413_400_505() {
    let s = Server::start(&[
        "--request-line-bytes-max",
        "1KiB",
        "--head-bytes-max",
        "4KiB",
        "--publish-bytes-max",
        "1KiB",
    ]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    assert_eq!(http(s.addr, long_target.as_bytes()).0, 414);

    let big_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    assert_eq!(http(s.addr, big_head.as_bytes()).0, 431);

    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: 1\r\n".repeat(200)
    );
    assert_eq!(http(s.addr, many.as_bytes()).0, 431);

    let big_body = format!(
        "POST /publish?topic=a HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n{}",
        "x".repeat(5000)
    );
    assert_eq!(http(s.addr, big_body.as_bytes()).0, 413);

    // Request smuggling defences (RFC 9112 §6.3): CL with TE, conflicting CLs.
    let cl_te = b"POST /publish?topic=a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(http(s.addr, cl_te).0, 400);
    let dup_cl = b"POST /publish?topic=a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    assert_eq!(http(s.addr, dup_cl).0, 400);
    let te_gzip = b"POST /publish?topic=a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(http(s.addr, te_gzip).0, 400);
    assert_eq!(
        http(s.addr, b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n").0,
        505
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&[]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nPOST /publish?topic=p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhiGET /nope HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert!(String::from_utf8(body).unwrap().contains("\"id\":"));
    assert_eq!(read_response(&mut c).0, 404);
}

#[test]
fn publish_chunked_and_non_utf8() {
    let s = Server::start(&[]);
    let chunked = b"POST /publish?topic=c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
    let (status, _, body) = http(s.addr, chunked);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let bad = b"POST /publish?topic=c HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\xff\xfe";
    let (status, _, body) = http(s.addr, bad);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("UTF-8"));
    let (status, _, _) = http(s.addr, b"POST /publish?topic=bad%20name HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
    assert_eq!(status, 400);
}

#[test]
fn publish_key_gives_401() {
    let s = Server::start_strict(&["--publish-key", "s3cret"]);
    let req = |auth: &str| {
        format!("POST /publish?topic=k HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 1\r\nConnection: close\r\n\r\nx")
    };
    let (status, headers, _) = http(s.addr, req("").as_bytes());
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    // A wrong key is a worthless credential: 401 too (RFC 6750 invalid_token).
    let (status, headers, _) = http(s.addr, req("Authorization: Bearer wrong\r\n").as_bytes());
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(
        http(s.addr, req("Authorization: Bearer s3cret\r\n").as_bytes()).0,
        200
    );
}

#[test]
fn half_sent_head_is_closed_at_the_request_timeout() {
    let s = Server::start(&["--request-timeout", "300ms", "--tick", "10ms"]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    // The server answers 408 and closes; read to EOF.
    let _ = c.read_to_end(&mut buf);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "not closed at the deadline: {waited:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// A connection that sent nothing, and a keep-alive connection idle after its answer, are
/// closed at `request_timeout` without a 408: EventSource treats any non-200 answer as fatal
/// and would stop reconnecting for good.
#[test]
fn silent_and_idle_keep_alive_connections_close_without_a_408() {
    let s = Server::start(&["--request-timeout", "300ms", "--tick", "10ms"]);
    let mut silent = TcpStream::connect(s.addr).unwrap();
    let mut idle = TcpStream::connect(s.addr).unwrap();
    for c in [&mut silent, &mut idle] {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).0, 200);
    for (name, c) in [("silent", &mut silent), ("idle keep-alive", &mut idle)] {
        let start = Instant::now();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{name}: not closed at the deadline"
        );
        assert!(
            buf.is_empty(),
            "{name}: closed quietly, got {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let s = Server::start(&[]);
    let (status, headers, _) = http(s.addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), Some("close"));
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let (status, headers, _) = read_response(&mut c);
    assert_eq!(
        (status, header(&headers, "connection")),
        (200, Some("keep-alive"))
    );
    c.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).0, 200, "the connection was kept");
}

/// The topic table never fills for good: with room for 3 topics, publishing to 50 different
/// topics always succeeds (the least recently published topic makes room), and a client
/// resuming on an evicted topic is told `reset`.
#[test]
fn topic_table_never_fills_for_good() {
    let s = Server::start(&["--topics-max", "3"]);
    let first = common::publish(s.addr, "t0", "x");
    for i in 1..50 {
        let body =
            format!("POST /publish?topic=t{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
        let (status, _, text) = http(s.addr, body.as_bytes());
        assert_eq!(
            status,
            200,
            "topic t{i}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let mut c = common::SseClient::connect(
        s.addr,
        "/sse?topic=t0",
        &format!("Last-Event-ID: {first}\r\n"),
    );
    assert_eq!(c.next_event().unwrap().event.as_deref(), Some("reset"));
}
