//! Cluster mode: several real `uringcast` processes sharing one real `redis-server` (started
//! here on a free loopback port in a temp dir), real SSE and WebSocket clients. Covers publish
//! on one node and delivery on another, resume on any node (paged, multi-topic), trimmed
//! history, and the three faults: a node killed mid-stream, Redis restarted (with its data),
//! Redis restarted empty (new epoch); behind nginx, SSE clients and a headless Chromium page
//! whose node is killed.
//!
//! Needs Debian's `redis-server` (`.ci/run` installs it), and for two tests `nginx` and
//! `chromium`; each skips without what it needs unless URINGCAST_REQUIRE_EXTERNAL=1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{publish, seq, try_publish, Redis, Server, SseClient, SseEvent};

fn node(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--cluster-redis-url", url.as_str(), "--workers", "2"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn epoch(id: &str) -> &str {
    id.split_once('-').expect("E-N").0
}

fn sse(addr: SocketAddr, topics: &str, last: Option<&str>) -> SseClient {
    let header = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    let c = SseClient::connect(addr, &format!("/sse?{topics}"), &header);
    assert_eq!(c.status, 200);
    c
}

#[test]
fn publish_on_one_node_reaches_subscribers_on_every_node() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    // The head of an SSE stream comes once Redis confirmed the subscription: everything
    // published after it arrives.
    let mut on_a = sse(a.addr, "topic=news", None);
    let mut on_b = sse(b.addr, "topic=news", None);
    let mut ids = Vec::new();
    for i in 0..20 {
        let at = if i % 2 == 0 { a.addr } else { b.addr };
        ids.push(publish(at, "news", &format!("m{i}")));
    }
    assert!(ids.iter().all(|id| epoch(id) == epoch(&ids[0])), "{ids:?}");
    assert!(
        ids.windows(2).all(|w| seq(&w[0]) < seq(&w[1])),
        "ids increase across nodes: {ids:?}"
    );
    for c in [&mut on_a, &mut on_b] {
        for (i, id) in ids.iter().enumerate() {
            let ev = c.next_event().expect("event");
            assert_eq!(ev.id.as_deref(), Some(id.as_str()));
            assert_eq!(ev.data, format!("m{i}"));
        }
    }
    // What Redis holds: the topic's stream and the epoch.
    assert_eq!(redis.cli(&["XLEN", "uc:s:news"]), "20");
    assert_eq!(redis.cli(&["GET", "uc:epoch"]), epoch(&ids[0]));
    let metrics = common::http(a.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").2;
    let metrics = String::from_utf8_lossy(&metrics);
    for name in [
        "uringcast_cluster_connected 1",
        "uringcast_cluster_published_total 10",
        "uringcast_cluster_subscribed_topics 1",
        "uringcast_cluster_redis_roundtrips_total",
        "uringcast_cluster_reconnects_total 0",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
}

#[test]
fn websocket_publish_and_subscribe_with_since_across_nodes() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &["--ws-publish", "true"]);
    let b = node(&redis, &[]);
    let first = publish(b.addr, "chat", "before");
    common::rt().block_on(async {
        let mut publisher = common::ws_connect(&a.ws_url("/ws")).await;
        for i in 0..5 {
            let op = serde_json::json!({"op": "publish", "topic": "chat", "data": format!("w{i}")});
            publisher.send(Message::text(op.to_string())).await.unwrap();
        }
        let mut published = Vec::new();
        for _ in 0..5 {
            let ack = common::ws_next(&mut publisher).await;
            assert_eq!(ack["op"], "published", "{ack}");
            published.push(ack["id"].as_str().unwrap().to_owned());
        }
        assert!(published.windows(2).all(|w| seq(&w[0]) < seq(&w[1])));
        // On the other node, from `since` = the first message: the five, in order.
        let mut sub = common::ws_connect(&b.ws_url("/ws")).await;
        let op = serde_json::json!({"op": "subscribe", "topic": "chat", "since": first});
        sub.send(Message::text(op.to_string())).await.unwrap();
        assert_eq!(common::ws_next(&mut sub).await["op"], "subscribed");
        for (i, id) in published.iter().enumerate() {
            let m = common::ws_next(&mut sub).await;
            assert_eq!(m["id"].as_str(), Some(id.as_str()), "{m}");
            assert_eq!(m["data"], format!("w{i}"));
        }
        // Then live.
        let live = publish(a.addr, "chat", "live");
        let m = common::ws_next(&mut sub).await;
        assert_eq!(m["id"].as_str(), Some(live.as_str()));
    });
}

#[test]
fn resume_on_another_node_pages_through_history_then_goes_live() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &[]);
    let b = node(&redis, &["--queue-bytes-max", "64KiB"]);
    // 700 messages over two topics: several pages of the 256-entry read and of the byte
    // budget, merged by id.
    let mut ids = Vec::new();
    for i in 0..700 {
        let topic = if i % 3 == 0 { "x" } else { "y" };
        ids.push((
            publish(a.addr, topic, &format!("{topic}{i}")),
            format!("{topic}{i}"),
        ));
    }
    let from = 9;
    let mut c = sse(b.addr, "topic=x&topic=y", Some(&ids[from].0));
    // A publish racing the replay: arrives once, after the replay.
    let racing = publish(a.addr, "y", "racing");
    for (id, data) in &ids[from + 1..] {
        let ev = c.next_event().expect("replayed event");
        assert_eq!(ev.event, None, "no reset expected: {ev:?}");
        assert_eq!(
            (ev.id.as_deref(), ev.data.as_str()),
            (Some(id.as_str()), data.as_str())
        );
    }
    let ev = c.next_event().expect("live event");
    assert_eq!(ev.id.as_deref(), Some(racing.as_str()));
    let live = publish(a.addr, "x", "after");
    let ev = c.next_event().expect("live event");
    assert_eq!(ev.id.as_deref(), Some(live.as_str()));
}

#[test]
fn trimmed_history_and_foreign_ids_get_a_reset() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &["--history-messages", "10"]);
    let first = publish(a.addr, "t", "0");
    for i in 1..400 {
        publish(a.addr, "t", &i.to_string());
    }
    let held: usize = redis.cli(&["XLEN", "uc:s:t"]).parse().unwrap();
    assert!(held < 400, "MAXLEN ~ trimmed the stream: {held}");
    let mut c = sse(a.addr, "topic=t", Some(&first));
    let ev = c.next_event().unwrap();
    assert_eq!(ev.event.as_deref(), Some("reset"), "{ev:?}");
    let ev = c.next_event().unwrap();
    assert_eq!(ev.data, (400 - held).to_string(), "then the oldest held");
    // An id of another epoch: reset, then everything held.
    let mut c = sse(a.addr, "topic=t", Some("12345-3"));
    assert_eq!(c.next_event().unwrap().event.as_deref(), Some("reset"));
    assert_eq!(c.next_event().unwrap().data, (400 - held).to_string());
}

#[test]
fn no_redis_means_503_never_a_silent_drop() {
    let port = common::free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let a = Server::start(&["--cluster-redis-url", &url]);
    let (status, body) = try_publish(a.addr, "t", "x");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Redis"), "{body}");
    // A subscriber is not left hanging: the stream opens and ends, so EventSource retries.
    let mut c = SseClient::connect(a.addr, "/sse?topic=t", "");
    c.set_timeout(Duration::from_secs(10));
    let start = Instant::now();
    while c.next().is_some() {}
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "stream did not end"
    );
}

/// An SSE client that follows a stream across nodes: at the end of a stream (a killed node,
/// a cut) it reconnects to the next node with `Last-Event-ID`, as EventSource would.
struct Follower {
    nodes: Vec<SocketAddr>,
    at: usize,
    path: String,
    client: Option<SseClient>,
    last: Option<String>,
    resets: usize,
    reconnects: usize,
}

impl Follower {
    fn new(nodes: Vec<SocketAddr>, path: &str) -> Follower {
        let mut f = Follower {
            nodes,
            at: 0,
            path: path.to_owned(),
            client: None,
            last: None,
            resets: 0,
            reconnects: 0,
        };
        assert!(f.connect(), "first connect");
        f
    }

    fn connect(&mut self) -> bool {
        let header = self
            .last
            .as_ref()
            .map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
        for _ in 0..self.nodes.len() {
            let addr = self.nodes[self.at];
            // A dead node refuses (or dies while answering): try the next one.
            let path = self.path.clone();
            let h = header.clone();
            let c = std::panic::catch_unwind(move || SseClient::connect(addr, &path, &h));
            if let Ok(c) = c {
                if c.status == 200 {
                    self.client = Some(c);
                    return true;
                }
            }
            self.at = (self.at + 1) % self.nodes.len();
        }
        false
    }

    /// The next message (resets counted and skipped), following the stream across nodes.
    fn next(&mut self) -> Option<SseEvent> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ev = self.client.as_mut().and_then(SseClient::next_event);
            match ev {
                Some(ev) if ev.event.as_deref() == Some("reset") => self.resets += 1,
                Some(ev) => {
                    self.last.clone_from(&ev.id);
                    return Some(ev);
                }
                None => {
                    self.reconnects += 1;
                    self.at = (self.at + 1) % self.nodes.len();
                    std::thread::sleep(Duration::from_millis(50));
                    self.connect();
                }
            }
        }
        None
    }
}

/// POST /publish that reports failure instead of panicking: `Ok(id)` on 200.
fn publish_once(addr: SocketAddr, topic: &str, data: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{data}",
        data.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(text.into_owned());
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(v["id"].as_str().unwrap_or("").to_owned())
}

#[test]
fn node_killed_mid_stream_its_clients_resume_elsewhere_exactly_once() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let mut nodes: Vec<Server> = (0..3).map(|_| node(&redis, &[])).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    const PER_PUBLISHER: usize = 150;
    // Two subscribers per node, each following the stream to the next node when its own dies.
    let mut subscribers = Vec::new();
    for k in 0..6 {
        let mut order = addrs.clone();
        order.rotate_left(k % 3);
        let f = Follower::new(order, "/sse?topic=k");
        subscribers.push(std::thread::spawn(move || {
            let mut f = f;
            let mut got: Vec<(String, String)> = Vec::new();
            while let Some(ev) = f.next() {
                if ev.data == "end" {
                    break;
                }
                got.push((ev.id.unwrap_or_default(), ev.data));
            }
            (got, f.reconnects, f.resets)
        }));
    }
    // Three publishers, one per node; one whose node died goes on through the next node.
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let unsure = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut publishers = Vec::new();
    for p in 0..3 {
        let (acked, unsure, addrs) = (Arc::clone(&acked), Arc::clone(&unsure), addrs.clone());
        publishers.push(std::thread::spawn(move || {
            let mut at = p;
            for i in 0..PER_PUBLISHER {
                let data = format!("p{p}-{i}");
                loop {
                    match publish_once(addrs[at], "k", &data) {
                        Ok(id) => {
                            acked.lock().unwrap().push((id, data.clone()));
                            break;
                        }
                        Err(_) => {
                            // Maybe stored, maybe not: a retry may store it twice.
                            unsure.lock().unwrap().push(data.clone());
                            at = (at + 1) % addrs.len();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // Kill node 0 while the publishers run.
    let start = Instant::now();
    while acked.lock().unwrap().len() < PER_PUBLISHER * 3 / 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "publishing stalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nodes[0].child.kill();
    let _ = nodes[0].child.wait();
    for p in publishers {
        p.join().unwrap();
    }
    publish(addrs[1], "k", "end");
    let acked = acked.lock().unwrap().clone();
    let unsure = unsure.lock().unwrap().clone();
    let mut killed_clients_moved = 0;
    for s in subscribers {
        let (got, reconnects, resets) = s.join().unwrap();
        killed_clients_moved += usize::from(reconnects > 0);
        assert_eq!(resets, 0, "history covers the whole run");
        let ids: Vec<u64> = got.iter().map(|(id, _)| seq(id)).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing, so no duplicate"
        );
        for (id, data) in &acked {
            assert!(
                got.iter().any(|(i, d)| i == id && d == data),
                "acknowledged {id} {data} lost (got {} messages)",
                got.len()
            );
        }
        for (_, data) in &got {
            assert!(
                acked.iter().any(|(_, d)| d == data) || unsure.contains(data),
                "{data} was never published"
            );
        }
    }
    assert!(killed_clients_moved >= 2, "the killed node's clients moved");
}

#[test]
fn redis_restart_publishes_get_503_subscribers_stay_and_miss_nothing() {
    let Some(mut redis) = Redis::start(true) else {
        return;
    };
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut sub = sse(b.addr, "topic=r", None);
    let mut want: Vec<String> = (0..5)
        .map(|i| publish(a.addr, "r", &format!("before{i}")))
        .collect();
    redis.kill();
    let (status, body) = try_publish(a.addr, "r", "during");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Redis"), "{body}");
    let (status, _) = try_publish(b.addr, "r", "during");
    assert_eq!(status, 503);
    redis.restart();
    // Nodes reconnect by themselves (backoff at most 2 s).
    let start = Instant::now();
    loop {
        match publish_once(a.addr, "r", "back") {
            Ok(id) => {
                want.push(id);
                break;
            }
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no reconnect: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for i in 0..5 {
        want.push(publish(a.addr, "r", &format!("after{i}")));
    }
    // The same stream, never reopened: everything acknowledged, once, in order.
    sub.set_timeout(Duration::from_secs(20));
    for id in &want {
        let ev = sub.next_event().expect("the stream stayed open");
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
    assert!(
        epoch(&want[0]) == epoch(want.last().unwrap()),
        "same epoch: data kept"
    );
    let m = common::http(b.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").2;
    let m = String::from_utf8_lossy(&m);
    assert!(!m.contains("uringcast_cluster_reconnects_total 0"), "{m}");
}

#[test]
fn redis_restarted_empty_changes_the_epoch_and_clients_get_reset() {
    let Some(mut redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &[]);
    let mut f = Follower::new(vec![a.addr], "/sse?topic=e");
    let old: Vec<String> = (0..3)
        .map(|i| publish(a.addr, "e", &format!("old{i}")))
        .collect();
    for id in &old {
        assert_eq!(f.next().unwrap().id.as_deref(), Some(id.as_str()));
    }
    redis.restart(); // no persistence: empty
    let start = Instant::now();
    let new = loop {
        match publish_once(a.addr, "e", "new") {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no reconnect: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_ne!(epoch(&new), epoch(&old[0]), "a new epoch");
    // The node cut the stream; the client came back with an id of the old epoch and was told.
    let ev = f.next().expect("the new message");
    assert_eq!(ev.id.as_deref(), Some(new.as_str()));
    assert!(f.resets >= 1, "reset notice");
    assert!(f.reconnects >= 1);
}

#[test]
fn resumes_racing_live_publishes_switch_without_gap_or_duplicate() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &["--history-messages", "100000"]);
    let b = node(&redis, &["--history-messages", "100000"]);
    let first = publish(a.addr, "z", "start");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Publishers keep the topic busy, so messages land between a replay's last read and the
    // moment the node switches the client to live: the buffer must hold them.
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let (stop, addr) = (Arc::clone(&stop), if p == 0 { a.addr } else { b.addr });
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    publish(addr, "z", &format!("{p}-{n}"));
                    n += 1;
                }
            })
        })
        .collect();
    let e = epoch(&first).to_owned();
    let mut from = seq(&first);
    for round in 0..40 {
        // One topic, one counter: its ids are consecutive, so a gap or a duplicate shows.
        let at = if round % 2 == 0 { b.addr } else { a.addr };
        let mut c = sse(at, "topic=z", Some(&format!("{e}-{from}")));
        for k in 1..=20 {
            let ev = c.next_event().expect("event");
            assert_eq!(
                ev.id,
                Some(format!("{e}-{}", from + k)),
                "round {round} k {k}: {ev:?}"
            );
        }
        // Next time, from just behind the newest: a short replay that races live messages.
        from += 17;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in publishers {
        p.join().unwrap();
    }
}

/// The `server` lines of docs/cluster.md's upstream: round-robin, no stickiness.
fn nginx_servers(nodes: &[SocketAddr]) -> String {
    nodes
        .iter()
        .map(|a| format!("        server {a} max_fails=1 fail_timeout=2s;\n"))
        .collect()
}

/// The nginx configuration of docs/cluster.md with the given `server` lines.
fn nginx_conf(dir: &std::path::Path, port: u16, servers: &str) -> String {
    let d = dir.display();
    // Test-only lines: the run's own paths, and (as root) workers that may write them.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
         {}\n    server {{\n        listen 127.0.0.1:{port};\n{}    }}\n}}\n",
        include_str!("../docs/cluster-nginx-upstream.conf").replace("{servers}", servers),
        include_str!("../docs/cluster-nginx-locations.conf"),
    )
}

/// nginx in front of the nodes, started in `dir` on a free loopback port; stopped on drop.
struct Nginx {
    child: std::process::Child,
    front: SocketAddr,
}

impl Nginx {
    /// `None` (after printing why) when nginx is not installed, unless
    /// URINGCAST_REQUIRE_EXTERNAL=1, when that is a failure.
    fn start(dir: &std::path::Path, servers: &str) -> Option<Nginx> {
        if std::process::Command::new("nginx")
            .arg("-v")
            .output()
            .is_err()
        {
            if std::env::var("URINGCAST_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!(
                    "nginx not installed (Debian package nginx), and URINGCAST_REQUIRE_EXTERNAL=1"
                );
            }
            eprintln!("SKIP: nginx not installed (Debian package nginx)");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let port = common::free_port();
        std::fs::write(dir.join("nginx.conf"), nginx_conf(dir, port, servers)).unwrap();
        let nginx = Nginx {
            child: std::process::Command::new("nginx")
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn nginx"),
            front: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        let start = Instant::now();
        while TcpStream::connect(nginx.front).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker first (SIGKILL would orphan it).
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn behind_nginx_without_sticky_sessions_a_killed_node_loses_nothing() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let mut nodes: Vec<Server> = (0..3).map(|_| node(&redis, &[])).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let Some(nginx) = Nginx::start(&redis.dir.join("nginx"), &nginx_servers(&addrs)) else {
        return;
    };
    let front = nginx.front;
    // Six subscribers through the one front address: round-robin puts them on every node.
    let followers: Vec<_> = (0..6)
        .map(|_| {
            let f = Follower::new(vec![front], "/sse?topic=n");
            std::thread::spawn(move || {
                let mut f = f;
                let mut got = Vec::new();
                while let Some(ev) = f.next() {
                    if ev.data == "end" {
                        break;
                    }
                    got.push(ev.id.unwrap_or_default());
                }
                (got, f.reconnects)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for i in 0..200 {
        if i == 100 {
            let _ = nodes[0].child.kill();
            let _ = nodes[0].child.wait();
        }
        // Through nginx too: a publish that met the dying node is retried (and may then be
        // stored twice; only acknowledged ids are checked).
        let mut tries = 0;
        loop {
            match publish_once(front, "n", &format!("m{i}")) {
                Ok(id) => break acked.push(id),
                Err(e) => {
                    tries += 1;
                    assert!(tries < 20, "publish through nginx keeps failing: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    publish_once(front, "n", "end").unwrap();
    let mut moved = 0;
    for f in followers {
        let (got, reconnects) = f.join().unwrap();
        moved += usize::from(reconnects > 0);
        let seqs: Vec<u64> = got.iter().map(|id| seq(id)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, once each");
        for id in &acked {
            assert!(got.contains(id), "{id} lost");
        }
    }
    assert!(
        moved >= 1,
        "the killed node's subscribers moved through nginx"
    );
}

#[test]
fn pipelined_publishes_are_answered_in_order_after_redis() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &[]);
    let mut s = TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Three requests in one write: the connection waits for Redis after each publish, then
    // takes the next request from what it had already received.
    let one = |d: &str| {
        format!(
            "POST /publish?topic=p HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{d}",
            d.len()
        )
    };
    let all = format!(
        "{}{}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        one("a"),
        one("bb")
    );
    s.write_all(all.as_bytes()).unwrap();
    let (st1, _, b1) = common::read_response(&mut s);
    let (st2, _, b2) = common::read_response(&mut s);
    let (st3, _, b3) = common::read_response(&mut s);
    assert_eq!((st1, st2, st3), (200, 200, 200));
    let id = |b: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        v["id"].as_str().unwrap().to_owned()
    };
    assert!(seq(&id(&b1)) < seq(&id(&b2)));
    assert_eq!(b3, b"ok\n");
    assert_eq!(redis.cli(&["XLEN", "uc:s:p"]), "2");
}

/// What cluster mode cannot do yet is refused in so many words, never half-done: a long poll
/// (the cluster's subscription thread would never hear of it) answers 501, and TLS in process
/// with a Redis URL is a config error at start-up.
#[test]
fn cluster_mode_refuses_long_polls_and_in_process_tls_clearly() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let n = node(&redis, &[]);
    let (status, _, body) = common::http(
        n.addr,
        b"GET /poll?topic=a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 501, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("cluster mode"));
    let url = redis.url();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_uringcast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cluster-redis-url",
            &url,
        ])
        .args([
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tls_cert") && err.contains("cluster_redis_url"),
        "{err}"
    );
}

/// The browser's page: one `EventSource` through nginx; it reports `ready` on its first open
/// and, once it has seen `END`, everything it received (data, ids, opens), by publishing to
/// `control` through nginx.
const BROWSER_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>uringcast cluster browser test</title>
<script>
const base = 'http://127.0.0.1:' + new URLSearchParams(location.search).get('port');
const got = { data: [], ids: [], opens: 0, errors: 0 };
let ready = false, reported = false;
function report(body) {
  fetch(base + '/publish?topic=control', { method: 'POST', body: body, mode: 'no-cors' });
}
const es = new EventSource(base + '/sse?topic=news');
es.onopen = () => { got.opens++; if (!ready) { ready = true; report('ready'); } };
es.onerror = () => { got.errors++; };
es.onmessage = (e) => {
  got.data.push(e.data); got.ids.push(e.lastEventId);
  if (e.data === 'END' && !reported) { reported = true; report(JSON.stringify(got)); }
};
</script>
"#;

#[test]
fn a_browser_behind_nginx_resumes_on_another_node_when_its_node_is_killed() {
    let Some(exe) = common::chromium::find() else {
        return;
    };
    let Some(redis) = Redis::start(false) else {
        return;
    };
    // A retry long enough that the messages published right after the kill are all in
    // Redis before the browser reconnects: they can only reach it through the resume.
    let opts = ["--sse-retry", "1s"];
    let mut a = node(&redis, &opts);
    let b = node(&redis, &opts);
    // The documented locations, with B as a backup: the page lands on A while A lives
    // (round-robin would make the first node a coin toss), and on B once A is down.
    let servers = format!(
        "        server {} max_fails=1 fail_timeout=10s;\n        server {} backup;\n",
        a.addr, b.addr
    );
    let Some(nginx) = Nginx::start(&redis.dir.join("nginx-browser"), &servers) else {
        return;
    };
    // The test reads the page's reports on B, the node that survives.
    let mut control = sse(b.addr, "topic=control", None);
    control.set_timeout(Duration::from_secs(60));
    let _browser = common::chromium::open_page(
        exe,
        "cluster",
        BROWSER_PAGE,
        &format!("port={}", nginx.front.port()),
    );
    let ready = control.next_event().expect("the page reports ready");
    assert_eq!(ready.data, "ready");
    let on_a = common::http(a.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").2;
    assert!(
        String::from_utf8_lossy(&on_a).contains("uringcast_cluster_subscribed_topics 1"),
        "the page's EventSource is on node A"
    );

    let mut sent: Vec<(String, String)> = Vec::new();
    let mut send = |at: SocketAddr, data: String| sent.push((publish(at, "news", &data), data));
    // Live on A.
    for i in 0..30 {
        send(a.addr, format!("a{i}"));
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = a.child.kill();
    let _ = a.child.wait();
    // On B while A is dead and the browser is between connections.
    for i in 0..30 {
        send(b.addr, format!("b{i}"));
    }
    // Live on B once the browser is back (after its 1 s retry), then the end marker.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..30 {
        send(b.addr, format!("c{i}"));
        std::thread::sleep(Duration::from_millis(10));
    }
    send(b.addr, "END".to_owned());

    let report = control.next_event().expect("the page reports what it saw");
    let v: serde_json::Value = serde_json::from_str(&report.data).expect("report JSON");
    let data: Vec<String> = serde_json::from_value(v["data"].clone()).unwrap();
    let ids: Vec<String> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert!(
        v["opens"].as_u64().unwrap() >= 2,
        "the EventSource reconnected: {v}"
    );
    let want: Vec<&String> = sent.iter().map(|(_, d)| d).collect();
    let want_ids: Vec<&String> = sent.iter().map(|(id, _)| id).collect();
    assert_eq!(
        data.iter().collect::<Vec<_>>(),
        want,
        "every acknowledged message once, in order, across the node's death"
    );
    assert_eq!(ids.iter().collect::<Vec<_>>(), want_ids);
}
