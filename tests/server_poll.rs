//! Long polling (`GET /poll`) against the real server: a poll loop of many clients, with
//! publishers on other connections and workers, receives every message once, in order, with
//! no gap across re-polls; a held poll times out with an empty answer; the same credentials
//! and origins as SSE; bad input is a clear 400; a pipelined request waits behind a held poll.

mod common;

use common::{header, http, publish, read_response, seq, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One keep-alive connection that polls.
struct Poller {
    conn: TcpStream,
}

impl Poller {
    fn new(addr: SocketAddr) -> Poller {
        let conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Poller { conn }
    }

    /// `GET /poll?QUERY` on this connection: (status, headers, body as JSON or text).
    fn poll(&mut self, query: &str, extra: &str) -> (u16, Vec<(String, String)>, Value) {
        let req = format!("GET /poll?{query} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        self.conn.write_all(req.as_bytes()).unwrap();
        let (status, headers, body) = read_response(&mut self.conn);
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, headers, value)
    }
}

fn ids(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_poll_loop_gets_every_message_once_in_order_with_many_pollers_and_publishers() {
    // Two workers: pollers and publishers land on both, so messages reach pollers through
    // the other worker's inbox as well as the own one.
    let s = Server::start(&["--workers", "2", "--poll-timeout", "5s"]);
    const POLLERS: usize = 24;
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 60;
    let total = PUBLISHERS * PER_PUBLISHER;
    // Every poller starts after a message on an unrelated topic: all that follow are its.
    let start_id = publish(s.addr, "p.other", "x");
    let pollers: Vec<_> = (0..POLLERS)
        .map(|i| {
            let addr = s.addr;
            let since = start_id.clone();
            std::thread::spawn(move || {
                let mut p = Poller::new(addr);
                // A third poll both topics, the others one each.
                let topics = match i % 3 {
                    0 => "topic=p.a&topic=p.b",
                    1 => "topic=p.a",
                    _ => "topic=p.b",
                };
                let mut since = since;
                let mut got: Vec<(String, String)> = Vec::new();
                let want = if i % 3 == 0 { total } else { total / 2 };
                let deadline = Instant::now() + Duration::from_secs(60);
                while got.len() < want && Instant::now() < deadline {
                    let (status, _, answer) = p.poll(&format!("{topics}&since={since}"), "");
                    assert_eq!(status, 200, "poller {i}: {answer}");
                    assert!(answer.get("reset").is_none(), "poller {i}: {answer}");
                    for m in answer["messages"].as_array().unwrap() {
                        got.push((
                            m["id"].as_str().unwrap().to_owned(),
                            m["topic"].as_str().unwrap().to_owned(),
                        ));
                    }
                    since = answer["last_id"].as_str().unwrap().to_owned();
                }
                (i, got)
            })
        })
        .collect();
    // Let the pollers hold their first polls, so most messages are answered live.
    std::thread::sleep(Duration::from_millis(300));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|k| {
            let addr = s.addr;
            std::thread::spawn(move || {
                (0..PER_PUBLISHER)
                    .map(|n| {
                        let topic = if n % 2 == 0 { "p.a" } else { "p.b" };
                        let id = publish(addr, topic, &format!("{k}-{n}"));
                        (id, topic.to_owned())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut published: Vec<(String, String)> = publishers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    published.sort_by_key(|(id, _)| seq(id));
    assert_eq!(published.len(), total);
    for h in pollers {
        let (i, got) = h.join().unwrap();
        let want: Vec<&(String, String)> = published
            .iter()
            .filter(|(_, t)| i % 3 == 0 || (i % 3 == 1) == (t == "p.a"))
            .collect();
        let got_refs: Vec<&(String, String)> = got.iter().collect();
        assert_eq!(
            got_refs, want,
            "poller {i} must get every message of its topics once, in id order"
        );
    }
}

#[test]
fn a_held_poll_times_out_empty_and_the_connection_serves_the_next_poll() {
    let s = Server::start(&["--poll-timeout", "300ms"]);
    let id = publish(s.addr, "t.timeout", "before");
    let mut p = Poller::new(s.addr);
    let t = Instant::now();
    let (status, headers, answer) = p.poll(&format!("topic=t.timeout&since={id}"), "");
    assert_eq!(status, 200, "{answer}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "answered after {:?}, before the timeout",
        t.elapsed()
    );
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(ids(&answer), Vec::<String>::new());
    assert_eq!(answer["last_id"].as_str(), Some(id.as_str()));
    // Without `since`: held, then empty, with the newest id to continue from.
    let (status, _, answer) = p.poll("topic=t.timeout", "");
    assert_eq!(status, 200);
    assert_eq!(answer["last_id"].as_str(), Some(id.as_str()), "{answer}");
    // The same connection goes on: the held messages come at once.
    let (status, _, answer) = p.poll("topic=t.timeout&since=", "");
    assert_eq!((status, ids(&answer).len()), (200, 0), "{answer}");
}

#[test]
fn held_messages_come_at_once_in_pages_and_a_foreign_id_gets_reset() {
    // A small queue bound makes pages small: 64 KiB / 8 = 8 KiB per page.
    let s = Server::start(&["--queue-bytes-max", "64KiB"]);
    let data = "d".repeat(1000);
    let published: Vec<String> = (0..40).map(|_| publish(s.addr, "t.page", &data)).collect();
    let mut p = Poller::new(s.addr);
    let (epoch, _) = published[0].split_once('-').unwrap();
    let mut since = format!("{epoch}-0");
    let mut got = Vec::new();
    let mut polls = 0;
    while got.len() < published.len() {
        let (status, _, answer) = p.poll(&format!("topic=t.page&since={since}"), "");
        assert_eq!(status, 200);
        let page = ids(&answer);
        assert!(!page.is_empty(), "held messages are answered at once");
        assert!(
            page.len() < 20,
            "a page is bounded: {} messages",
            page.len()
        );
        got.extend(page);
        since = answer["last_id"].as_str().unwrap().to_owned();
        polls += 1;
    }
    assert_eq!(got, published);
    assert!(
        polls >= 3,
        "40 KB in 8 KiB pages takes several polls, took {polls}"
    );
    // An id of another server run: reset first, then everything held.
    let (status, _, answer) = p.poll("topic=t.page&since=1-5", "");
    assert_eq!(status, 200);
    assert_eq!(answer["reset"]["requested"].as_str(), Some("1-5"));
    assert_eq!(
        answer["reset"]["oldest"].as_str(),
        Some(published[0].as_str())
    );
    assert_eq!(ids(&answer)[0], published[0]);
}

#[test]
fn a_request_pipelined_behind_a_held_poll_is_answered_after_it() {
    let s = Server::start(&["--poll-timeout", "300ms"]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"GET /poll?topic=t.pipe HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, ids(&answer).len()), (200, 0), "{answer}");
    let (status, _, body) = read_response(&mut c);
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
}

#[test]
fn a_live_message_answers_a_held_poll() {
    let s = Server::start(&["--poll-timeout", "20s", "--workers", "2"]);
    let addr = s.addr;
    let poll = std::thread::spawn(move || {
        let mut p = Poller::new(addr);
        let t = Instant::now();
        let answer = p.poll("topic=t.live&topic=t.other", "").2;
        (answer, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let id = publish(s.addr, "t.live", "hello \"poll\"\n");
    let (answer, took) = poll.join().unwrap();
    assert!(took < Duration::from_secs(15), "held until the timeout");
    assert_eq!(ids(&answer), vec![id.clone()]);
    let m = &answer["messages"][0];
    assert_eq!(m["topic"], "t.live");
    assert_eq!(m["data"], "hello \"poll\"\n");
    assert_eq!(answer["last_id"].as_str(), Some(id.as_str()));
}

#[test]
fn bad_input_is_a_clear_400() {
    let s = Server::start(&["--topics-per-conn-max", "2"]);
    for (query, says) in [
        ("topic=a&since=x", "bad since"),
        ("topic=a&since=12-", "bad since"),
        ("since=1-2", "missing ?topic="),
        ("", "missing ?topic="),
        ("topic=a&topic=b&topic=c", "topics"),
        ("topic=a%20b", "topic must be"),
        (&format!("topic={}", "x".repeat(129)), "topic must be"),
    ] {
        let req = format!("GET /poll?{query} HTTP/1.1\r\nHost: t\r\n\r\n");
        let (status, _, body) = http(s.addr, req.as_bytes());
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(says), "{query}: {text:?} should say {says:?}");
    }
    let (status, headers, _) = http(s.addr, b"POST /poll?topic=a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, OPTIONS"));
    let (status, headers, _) = http(s.addr, b"OPTIONS /poll HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "access-control-allow-methods"),
        Some("GET, OPTIONS")
    );
}

const SECRET: &str = "a-test-secret-of-at-least-32-bytes";

fn token(subscribe: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"exp": exp, "subscribe": subscribe});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn polls_need_the_same_credentials_and_origins_as_sse() {
    let s = Server::start_strict(&[
        "--jwt-hs256-secret",
        SECRET,
        "--publish-open",
        "true",
        "--public-topics",
        "pub.*",
        "--allowed-origins",
        "https://app.example",
        "--poll-timeout",
        "200ms",
    ]);
    let status = |query: &str, extra: &str| {
        let req = format!("GET /poll?{query} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        http(s.addr, req.as_bytes())
    };
    let (st, headers, _) = status("topic=private", "");
    assert_eq!(st, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    assert_eq!(status("topic=private&token=garbage", "").0, 401);
    let news = token(&["news.*"]);
    assert_eq!(status(&format!("topic=private&token={news}"), "").0, 403);
    assert_eq!(
        status(&format!("topic=news.eu&topic=private&token={news}"), "").0,
        403
    );
    let auth = format!("Authorization: Bearer {news}\r\n");
    assert_eq!(status("topic=news.eu", &auth).0, 200);
    assert_eq!(
        status("topic=pub.x", "").0,
        200,
        "public topics need nothing"
    );
    let (st, headers, _) = status("topic=pub.x", "Origin: https://evil.example\r\n");
    assert_eq!(st, 403, "an origin outside allowed_origins");
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    let (st, headers, _) = status("topic=pub.x", "Origin: https://app.example\r\n");
    assert_eq!(st, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Server memory (RSS) per connection with `n` connections that each sent `request`, whatever
/// the answer: the growth from a server that has served a few such connections to one that
/// holds `n` of them (slabs, index, per-connection state, queued bytes).
fn rss_per_conn(args: &[&str], request: &str, n: usize) -> f64 {
    let s = Server::start(args);
    let open = |n: usize| -> Vec<TcpStream> {
        let conns: Vec<TcpStream> = (0..n)
            .map(|_| {
                let mut c = TcpStream::connect(s.addr).unwrap();
                c.write_all(request.as_bytes()).unwrap();
                c
            })
            .collect();
        // The server has taken every request once /metrics counts them all as its kind.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, _, body) = http(s.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
            let text = String::from_utf8_lossy(&body).into_owned();
            let held: usize = text
                .lines()
                .filter(|l| {
                    l.starts_with("uringcast_connections{kind=\"sse\"}")
                        || l.starts_with("uringcast_connections{kind=\"poll\"}")
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
                .sum();
            if held >= n {
                break;
            }
            assert!(Instant::now() < deadline, "only {held} of {n} held");
            std::thread::sleep(Duration::from_millis(50));
        }
        conns
    };
    drop(open(50));
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_bytes(s.child.id());
    let conns = open(n);
    let after = rss_bytes(s.child.id());
    drop(conns);
    (after.saturating_sub(before)) as f64 / n as f64
}

/// A measurement, run by hand (numbers in docs/benchmarks.md): `cargo test --release --test
/// server_poll -- --ignored --nocapture`. Not a CI gate: one run's RSS growth varies by up to
/// ~1 KB per connection (allocator arenas, slab and ring buffer growth steps), more than the
/// difference it looks for.
#[test]
#[ignore]
fn measure_server_memory_of_held_polls_and_idle_sse_streams() {
    const N: usize = 12_000;
    const RUNS: usize = 5;
    // Default poll_timeout and heartbeat_interval: both timers sit in the same wheel level.
    let args = ["--workers", "1"];
    let sse_req = "GET /sse?topic=m.a HTTP/1.1\r\nHost: t\r\n\r\n";
    let poll_req = "GET /poll?topic=m.a HTTP/1.1\r\nHost: t\r\n\r\n";
    let (mut sse, mut poll) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        sse.push(rss_per_conn(&args, sse_req, N));
        poll.push(rss_per_conn(&args, poll_req, N));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("idle SSE stream, B/conn: {sse:.0?}");
    println!("held poll,       B/conn: {poll:.0?}");
    let (sse, poll) = (median(&mut sse), median(&mut poll));
    println!("median of {RUNS} runs of {N} connections: idle SSE stream {sse:.0} B, held poll {poll:.0} B");
    assert!(poll <= sse * 1.1 + 128.0);
}

#[test]
fn shutdown_answers_a_held_poll_and_closes() {
    let mut s = Server::start(&["--poll-timeout", "60s"]);
    let addr = s.addr;
    let poll = std::thread::spawn(move || {
        let mut p = Poller::new(addr);
        p.poll("topic=t.bye", "")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http(s.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        if String::from_utf8_lossy(&body).contains("uringcast_connections{kind=\"poll\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the poll was not held");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.terminate(Duration::from_secs(10)).is_some(),
        "server exited"
    );
    let (status, headers, answer) = poll.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(ids(&answer).len(), 0);
}
