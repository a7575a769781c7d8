//! Shared helpers for integration tests: start the real `uringcast` binary on a free loopback
//! port and talk to it with real clients (a line-reading SSE client over TCP, tokio-tungstenite).
#![allow(dead_code)]

pub mod chromium;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process; killed on drop so a failing test never leaks it.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Start `uringcast serve --listen 127.0.0.1:0 --publish-open true ARGS...` and wait for
    /// its "listening on" line: anyone may publish, so tests publish with [`publish`]. Tests
    /// of the security rules use [`Server::start_strict`].
    pub fn start(args: &[&str]) -> Server {
        let mut all = vec!["--publish-open", "true"];
        all.extend_from_slice(args);
        Server::start_strict(&all)
    }

    /// Start `uringcast serve --listen 127.0.0.1:0 ARGS...` with nothing else: without a
    /// publish key, JWT key or `--publish-open true` in ARGS, the server makes its own key.
    pub fn start_strict(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_uringcast"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn uringcast");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("uringcast did not report its listen address within 20 s");
            }
        };
        Server { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Send SIGTERM and wait for the exit status, at most `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One blocking HTTP/1.1 exchange on a fresh connection: returns (status, headers, body).
pub fn http(addr: SocketAddr, raw_request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw_request).unwrap();
    read_response(&mut s)
}

/// Read one response with a Content-Length body (or until EOF without one).
pub fn read_response(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => panic!(
                "connection ended inside a response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head = String::from_utf8(buf).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header colon");
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = vec![0u8; len.unwrap_or(0)];
    match len {
        Some(_) => s.read_exact(&mut body).expect("body"),
        None => {
            let _ = s.read_to_end(&mut body);
        }
    }
    (status, headers, body)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Publish `data` to `topic` without a credential (a server with `--publish-open true`);
/// returns the assigned id (`E-N`).
pub fn publish(addr: SocketAddr, topic: &str, data: &str) -> String {
    publish_as(addr, None, topic, data)
}

/// Publish `data` to `topic` with `Authorization: Bearer TOKEN` when `token` is given;
/// returns the assigned id (`E-N`), panics unless the answer is 200.
pub fn publish_as(addr: SocketAddr, token: Option<&str>, topic: &str, data: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{data}",
        data.len()
    );
    let (status, _, body) = http(addr, req.as_bytes());
    assert_eq!(
        status,
        200,
        "publish failed: {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("publish answer is JSON");
    v["id"].as_str().expect("id is a string").to_owned()
}

/// The sequence part of a wire id `E-N`, for order checks within one server lifetime.
pub fn seq(id: &str) -> u64 {
    let (_, n) = id.split_once('-').expect("id is epoch-sequence");
    n.parse().expect("numeric sequence")
}

/// A parsed SSE event as a test client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: bool,
}

/// A minimal blocking SSE client, written independently of the server's codec so that the two
/// check each other.
pub struct SseClient {
    pub reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl SseClient {
    pub fn connect(addr: SocketAddr, path: &str, extra_headers: &str) -> SseClient {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra_headers}\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut status = 0;
        let mut headers = Vec::new();
        let mut first = true;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("response head");
            let line = line.trim_end();
            if first {
                status = line.split(' ').nth(1).expect("status").parse().unwrap();
                first = false;
            } else if line.is_empty() {
                break;
            } else {
                let (n, v) = line.split_once(':').unwrap();
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        SseClient {
            reader,
            status,
            headers,
        }
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.reader.get_ref().set_read_timeout(Some(t)).unwrap();
    }

    /// Next event or comment block; None at end of stream or timeout.
    pub fn next(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent::default();
        let mut any = false;
        let mut data_lines: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.strip_suffix('\n').unwrap_or(&line);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                if any {
                    ev.data = data_lines.join("\n");
                    return Some(ev);
                }
                continue;
            }
            any = true;
            if line.starts_with(':') {
                ev.comment = true;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => ev.id = Some(value.to_owned()),
                "event" => ev.event = Some(value.to_owned()),
                "data" => data_lines.push(value.to_owned()),
                _ => {}
            }
        }
    }

    /// Next event that is not a comment or the initial retry-only block.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let ev = self.next()?;
            if ev.id.is_some() || ev.event.is_some() || !ev.data.is_empty() {
                return Some(ev);
            }
        }
    }
}

/// A tokio-tungstenite client connection, as the WebSocket tests use it.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A single-threaded runtime for one test's async clients.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Open a WebSocket; panics unless the server answers 101.
pub async fn ws_connect(url: &str) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    assert_eq!(resp.status(), 101);
    ws
}

/// Next JSON text message, skipping pings and pongs; panics after 10 s or on anything else.
pub async fn ws_next(ws: &mut Ws) -> serde_json::Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a WebSocket message")
            .expect("stream ended")
            .expect("ws error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The `uringcast-bench` binary, built once per test process (it belongs to another package,
/// so Cargo does not build it for this crate's tests by itself).
pub fn bench_bin() -> &'static std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "uringcast-bench"])
            .status()
            .expect("run cargo build -p uringcast-bench");
        assert!(status.success(), "building uringcast-bench failed");
        let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_uringcast"))
            .with_file_name("uringcast-bench");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// A `redis-server` started by a test on a free loopback port in its own temp dir, with no
/// snapshots (unless `persist`: append-only file, fsync always, so a restart keeps every
/// stored message). Killed and its dir removed on drop.
pub struct Redis {
    pub port: u16,
    pub dir: std::path::PathBuf,
    persist: bool,
    child: Option<Child>,
}

impl Redis {
    /// `None` (after printing why) when `redis-server` is not installed, unless
    /// `URINGCAST_REQUIRE_EXTERNAL=1`, when that is a failure.
    pub fn start(persist: bool) -> Option<Redis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            let why = "redis-server not installed (Debian package redis-server)";
            if std::env::var("URINGCAST_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!("{why}, and URINGCAST_REQUIRE_EXTERNAL=1");
            }
            eprintln!("SKIP: {why}");
            return None;
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("uringcast-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        let port = free_port();
        let mut r = Redis {
            port,
            dir,
            persist,
            child: None,
        };
        r.launch();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let aof = if self.persist { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                aof,
            ])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and dir (with `persist`, with the same data).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// One command through `redis-cli`, for assertions on what Redis holds.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port()
}

/// POST /publish once; returns (status, body) whatever the status.
pub fn try_publish(addr: SocketAddr, topic: &str, data: &str) -> (u16, String) {
    let req = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{data}",
        data.len()
    );
    let (status, _, body) = http(addr, req.as_bytes());
    (status, String::from_utf8_lossy(&body).into_owned())
}
