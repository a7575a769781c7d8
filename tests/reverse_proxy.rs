//! `deploy/nginx.conf` and `deploy/Caddyfile`, tested: the real Debian nginx and Caddy run
//! those files (addresses, certificate and log directory replaced) in front of the real server,
//! on loopback, and real clients go through them over TLS: curl over HTTP/2 (many SSE streams
//! on one connection, resume with Last-Event-ID, heartbeats as they are sent, a long poll) and
//! tokio-tungstenite over rustls (WebSocket, which browsers open over HTTP/1.1 here).
//!
//! Needs Debian's `nginx` (or `nginx-light`), `caddy` and a curl with HTTP/2 (`.ci/run`
//! installs them); skips on a machine without them unless URINGCAST_REQUIRE_EXTERNAL=1.

mod common;

use common::{publish, Server};
use futures_util::StreamExt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn skip(why: &str) {
    if std::env::var("URINGCAST_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("reverse proxy test cannot run: {why}");
    }
    eprintln!("SKIPPED reverse_proxy: {why}");
}

fn find_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Which proxy, with its shipped configuration.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Caddy,
}

fn curl_has_http2() -> bool {
    Command::new("curl")
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"))
}

/// The proxy process. Stopped with SIGTERM (nginx: fast shutdown, the master stops its workers
/// and waits for them; Caddy: graceful exit), SIGKILL only if that takes over 5 s: an nginx
/// master killed outright leaves its workers running.
struct StopOnDrop(Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test CA and a server certificate it signed, for `localhost` and 127.0.0.1.
struct Certs {
    ca_der: Vec<u8>,
    chain_pem: String,
    key_pem: String,
}

fn make_certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Certs {
        ca_der: ca.der().to_vec(),
        chain_pem: cert.pem() + &ca.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A proxy running its file from deploy/ in front of `upstream`, in its own temporary
/// directory.
struct Proxy {
    _child: StopOnDrop,
    port: u16,
    dir: PathBuf,
    ca_der: Vec<u8>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replace `from` by `to` in the template; the test fails if the template lost `from`.
fn set(conf: &mut String, from: &str, to: &str) {
    assert!(
        conf.contains(from),
        "the file in deploy/ no longer contains {from:?}"
    );
    *conf = conf.replace(from, to);
}

impl Proxy {
    fn start(kind: Kind, upstream: std::net::SocketAddr) -> Option<Proxy> {
        let name = match kind {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        };
        let Some(bin) = find_bin(name) else {
            skip(&format!(
                "{name} not found (apt-get install nginx-light caddy)"
            ));
            return None;
        };
        if !curl_has_http2() {
            skip("curl without HTTP/2");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("uringcast-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = make_certs();
        std::fs::write(dir.join("fullchain.pem"), &certs.chain_pem).unwrap();
        std::fs::write(dir.join("privkey.pem"), &certs.key_pem).unwrap();
        let port = free_port();
        let d = format!("{}/", dir.display());
        let file = match kind {
            Kind::Nginx => "deploy/nginx.conf",
            Kind::Caddy => "deploy/Caddyfile",
        };
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let mut conf = std::fs::read_to_string(template).unwrap();
        set(&mut conf, "/etc/ssl/uringcast/", &d);
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cmd;
        match kind {
            Kind::Nginx => {
                set(
                    &mut conf,
                    "server 127.0.0.1:8080;",
                    &format!("server {upstream};"),
                );
                set(
                    &mut conf,
                    "listen 443 ssl http2;",
                    &format!("listen 127.0.0.1:{port} ssl http2;"),
                );
                set(&mut conf, "/var/log/nginx/", &d);
                let conf_path = dir.join("nginx.conf");
                std::fs::write(&conf_path, conf).unwrap();
                cmd = Command::new(bin);
                cmd.arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(&conf_path)
                    .arg("-g")
                    .arg(format!("daemon off; pid {d}nginx.pid;"));
            }
            Kind::Caddy => {
                set(
                    &mut conf,
                    "reverse_proxy 127.0.0.1:8080 {",
                    &format!("reverse_proxy {upstream} {{"),
                );
                set(
                    &mut conf,
                    "push.example.com {",
                    &format!("https://localhost:{port} {{\n\tbind 127.0.0.1"),
                );
                let conf_path = dir.join("Caddyfile");
                std::fs::write(&conf_path, conf).unwrap();
                cmd = Command::new(bin);
                cmd.arg("run")
                    .arg("--config")
                    .arg(&conf_path)
                    .arg("--adapter")
                    .arg("caddyfile")
                    // Caddy keeps its state (certificates, locks) under these.
                    .env("HOME", &dir)
                    .env("XDG_DATA_HOME", &dir)
                    .env("XDG_CONFIG_HOME", &dir);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the proxy");
        let mut child = StopOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || {
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                    + &std::fs::read_to_string(dir.join("uringcast.error.log")).unwrap_or_default()
            };
            // A failed start takes its temporary directory along, its logs in the message.
            if let Ok(Some(status)) = child.0.try_wait() {
                let log = log();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("{name} exited ({status}): {log}");
            }
            if Instant::now() >= deadline {
                let log = log();
                drop(child);
                let _ = std::fs::remove_dir_all(&dir);
                panic!("{name} did not listen: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Proxy {
            _child: child,
            port,
            dir,
            ca_der: certs.ca_der,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// curl over HTTP/2 (TLS, the test CA trusted) with `args`, resolving `localhost` to
    /// loopback; stdout piped.
    fn curl(&self, args: &[&str]) -> Command {
        let mut c = Command::new("curl");
        c.args(["--http2", "-s", "-N", "--cacert"])
            .arg(self.dir.join("fullchain.pem"))
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", self.port)])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
}

fn many_sse_streams_share_one_http2_connection_and_each_gets_its_topic(kind: Kind) {
    let s = Server::start(&["--heartbeat-interval", "300ms"]);
    let Some(proxy) = Proxy::start(kind, s.addr) else {
        return;
    };
    const STREAMS: usize = 8;
    let mut args: Vec<String> = vec![
        "--parallel".into(),
        "--parallel-max".into(),
        "100".into(),
        "--max-time".into(),
        "4".into(),
        "-w".into(),
        "%{http_version} %{num_connects}\n".into(),
    ];
    for i in 0..STREAMS {
        args.push(proxy.url(&format!("/sse?topic=h2.{i}")));
        args.push("-o".into());
        args.push(
            proxy
                .dir
                .join(format!("stream{i}.txt"))
                .display()
                .to_string(),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let curl = proxy.curl(&args).spawn().expect("run curl");
    // Publish once every stream is subscribed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sse_streams(s.addr) < STREAMS {
        assert!(Instant::now() < deadline, "the streams did not all open");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ids: Vec<String> = (0..STREAMS)
        .map(|i| publish(s.addr, &format!("h2.{i}"), &format!("to stream {i}")))
        .collect();
    let out = curl.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), STREAMS, "one -w line per stream: {report}");
    let mut connects = 0;
    for line in &lines {
        let (version, n) = line.split_once(' ').unwrap();
        assert_eq!(version, "2", "stream over HTTP/{version}");
        connects += n.parse::<u32>().unwrap();
    }
    assert_eq!(
        connects, 1,
        "all {STREAMS} streams over one connection: {report}"
    );
    for (i, id) in ids.iter().enumerate() {
        let text = std::fs::read_to_string(proxy.dir.join(format!("stream{i}.txt"))).unwrap();
        assert!(
            text.contains(&format!("id: {id}\ndata: to stream {i}\n")),
            "stream {i}: {text:?}"
        );
        assert_eq!(
            text.matches("data: ").count(),
            1,
            "stream {i}: only its topic"
        );
    }
}

fn sse_streams(addr: std::net::SocketAddr) -> usize {
    let (_, _, body) = common::http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("uringcast_connections{kind=\"sse\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn heartbeats_pass_the_proxy_as_they_are_sent(kind: Kind) {
    let s = Server::start(&["--heartbeat-interval", "250ms"]);
    let Some(proxy) = Proxy::start(kind, s.addr) else {
        return;
    };
    let mut curl = proxy
        .curl(&["--max-time", "4", &proxy.url("/sse?topic=hb")])
        .spawn()
        .expect("run curl");
    let start = Instant::now();
    let mut lines = BufReader::new(curl.stdout.take().unwrap()).lines();
    // When each heartbeat comment arrived, from the stream's start.
    let mut arrivals = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with(':') {
            arrivals.push(start.elapsed());
            if arrivals.len() == 6 {
                break;
            }
        }
    }
    let _ = curl.kill();
    let _ = curl.wait();
    // A buffering proxy holds 3-byte comments until its buffer (4 KiB or more) fills or the
    // stream ends: none would arrive in 4 s. Unbuffered, one arrives every 250 ms; the bound
    // below is loose so a busy machine does not fail it.
    assert_eq!(arrivals.len(), 6, "heartbeats seen: {arrivals:?}");
    assert!(
        arrivals[5] < Duration::from_millis(3_500),
        "six 250 ms heartbeats took {:?}: buffered? {arrivals:?}",
        arrivals[5]
    );
    assert!(
        arrivals[0] < Duration::from_millis(1_500),
        "the first heartbeat came after {:?}",
        arrivals[0]
    );
}

fn last_event_id_resumes_through_the_proxy(kind: Kind) {
    let s = Server::start(&[]);
    let Some(proxy) = Proxy::start(kind, s.addr) else {
        return;
    };
    let ids: Vec<String> = (0..3)
        .map(|i| publish(s.addr, "resume", &format!("m{i}")))
        .collect();
    let header = format!("Last-Event-ID: {}", ids[0]);
    let out = proxy
        .curl(&[
            "--max-time",
            "2",
            "-H",
            &header,
            &proxy.url("/sse?topic=resume"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(&format!("id: {}\n", ids[0])), "{text}");
    let at1 = text.find(&format!("id: {}\ndata: m1\n", ids[1]));
    let at2 = text.find(&format!("id: {}\ndata: m2\n", ids[2]));
    assert!(
        matches!((at1, at2), (Some(a), Some(b)) if a < b),
        "replay after the Last-Event-ID, in order: {text:?}"
    );
}

fn a_long_poll_is_answered_through_the_proxy(kind: Kind) {
    let s = Server::start(&["--poll-timeout", "10s"]);
    let Some(proxy) = Proxy::start(kind, s.addr) else {
        return;
    };
    let curl = proxy
        .curl(&["--max-time", "8", &proxy.url("/poll?topic=lp")])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while poll_held(s.addr) == 0 {
        assert!(Instant::now() < deadline, "the poll was not held");
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = publish(s.addr, "lp", "polled");
    let out = curl.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{:?}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["messages"][0]["data"], "polled");
    assert_eq!(v["last_id"].as_str(), Some(id.as_str()));
}

fn poll_held(addr: std::net::SocketAddr) -> usize {
    let (_, _, body) = common::http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("uringcast_connections{kind=\"poll\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn websocket_passes_the_proxy(kind: Kind) {
    let s = Server::start(&["--heartbeat-interval", "300ms"]);
    let Some(proxy) = Proxy::start(kind, s.addr) else {
        return;
    };
    common::rt().block_on(async {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(proxy.ca_der.clone().into()).unwrap();
        let mut tls = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // WebSocket over HTTP/1.1, as browsers open it when the proxy offers no WebSocket
        // over HTTP/2 (nginx 1.22 has none).
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .expect("TLS to the proxy");
        let url = format!("wss://localhost:{}/ws?topic=wsp", proxy.port);
        let (mut ws, resp) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("WebSocket handshake through the proxy");
        assert_eq!(resp.status(), 101);
        // The subscription is in force once the 101 is out; publish, then read past pings.
        let addr = s.addr;
        let id = tokio::task::spawn_blocking(move || publish(addr, "wsp", "through the proxy"))
            .await
            .unwrap();
        let mut pings = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let delivery = loop {
            let m = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("no delivery within 10 s")
                .expect("stream ended")
                .expect("ws error");
            match m {
                Message::Text(t) => break serde_json::from_str::<serde_json::Value>(&t).unwrap(),
                Message::Ping(_) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(delivery["topic"], "wsp");
        assert_eq!(delivery["id"].as_str(), Some(id.as_str()));
        assert_eq!(delivery["data"], "through the proxy");
        // Pings (every 300 ms) pass too, and the answers go back: the session stays open.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pings < 3 {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                other => panic!("waiting for pings: {other:?}"),
            }
        }
    });
}

#[test]
fn nginx_many_sse_streams_share_one_http2_connection_and_each_gets_its_topic() {
    many_sse_streams_share_one_http2_connection_and_each_gets_its_topic(Kind::Nginx);
}

#[test]
fn caddy_many_sse_streams_share_one_http2_connection_and_each_gets_its_topic() {
    many_sse_streams_share_one_http2_connection_and_each_gets_its_topic(Kind::Caddy);
}

#[test]
fn nginx_heartbeats_pass_the_proxy_as_they_are_sent() {
    heartbeats_pass_the_proxy_as_they_are_sent(Kind::Nginx);
}

#[test]
fn caddy_heartbeats_pass_the_proxy_as_they_are_sent() {
    heartbeats_pass_the_proxy_as_they_are_sent(Kind::Caddy);
}

#[test]
fn nginx_last_event_id_resumes_through_the_proxy() {
    last_event_id_resumes_through_the_proxy(Kind::Nginx);
}

#[test]
fn caddy_last_event_id_resumes_through_the_proxy() {
    last_event_id_resumes_through_the_proxy(Kind::Caddy);
}

#[test]
fn nginx_a_long_poll_is_answered_through_the_proxy() {
    a_long_poll_is_answered_through_the_proxy(Kind::Nginx);
}

#[test]
fn caddy_a_long_poll_is_answered_through_the_proxy() {
    a_long_poll_is_answered_through_the_proxy(Kind::Caddy);
}

#[test]
fn nginx_websocket_passes_the_proxy() {
    websocket_passes_the_proxy(Kind::Nginx);
}

#[test]
fn caddy_websocket_passes_the_proxy() {
    websocket_passes_the_proxy(Kind::Caddy);
}
