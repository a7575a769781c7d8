//! TLS in process: the real server with `--tls-cert/--tls-key` (certificates from a throwaway
//! CA made by rcgen), real rustls clients: SSE over https, WebSocket over wss, resume with
//! Last-Event-ID, a client that speaks plain HTTP to the TLS port, a handshake that never
//! completes, a certificate reload on SIGHUP, and bad certificate files at start-up.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, SseEvent};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A throwaway CA.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `localhost` signed by this CA: (cert PEM, key PEM).
    fn issue(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A temp directory holding `cert.pem` and `key.pem`, removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!(
            "uringcast-tls-{}-{name}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn write(&self, (cert, key): &(String, String)) {
        std::fs::write(self.cert(), cert).unwrap();
        std::fs::write(self.key(), key).unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            path(&self.cert()),
            "--tls-key".into(),
            path(&self.key()),
        ]
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// Start the server over TLS with `files` and `extra` flags.
fn start(files: &Files, extra: &[&str]) -> Server {
    let mut args = files.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&refs)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A blocking TLS connection to `addr` as `localhost`, handshake done.
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// One request over a fresh TLS connection (`Connection: close`): (status, body).
fn https(addr: SocketAddr, config: Arc<ClientConfig>, request: &str) -> (u16, String) {
    let mut s = tls_connect(addr, config).expect("TLS connect");
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    // The server ends with close_notify; an unexpected EOF would be an error here.
    s.read_to_end(&mut all).expect("read to close_notify");
    let text = String::from_utf8(all).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Publish over https; returns the id.
fn publish(addr: SocketAddr, config: &Arc<ClientConfig>, topic: &str, data: &str) -> String {
    let req = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{data}",
        data.len()
    );
    let (status, body) = https(addr, Arc::clone(config), &req);
    assert_eq!(status, 200, "publish: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// An SSE subscriber over https.
struct Sse {
    reader: BufReader<Tls>,
}

impl Sse {
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>, path: &str, extra: &str) -> Sse {
        let mut s = tls_connect(addr, config).expect("TLS connect");
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Sse { reader }
    }

    /// Next event with data or id; None at end or timeout.
    fn next_event(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent::default();
        let mut data: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if ev.id.is_some() || !data.is_empty() {
                    ev.data = data.join("\n");
                    return Some(ev);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => ev.id = Some(value.to_owned()),
                "event" => ev.event = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
    }
}

#[test]
fn sse_over_https_receives_publishes_and_resumes() {
    let ca = Ca::new("sse CA");
    let files = Files::new("sse");
    files.write(&ca.issue());
    let s = start(&files, &[]);
    let cfg = ca.client_config(&[b"http/1.1"]);

    let mut sub = Sse::connect(s.addr, Arc::clone(&cfg), "/sse?topic=news", "");
    // Larger than one TLS record, so the encryption splits it.
    let big = "x".repeat(40_000);
    let mut ids = Vec::new();
    for data in ["one", "two", big.as_str()] {
        ids.push(publish(s.addr, &cfg, "news", data));
    }
    for (i, want) in ["one", "two", big.as_str()].iter().enumerate() {
        let ev = sub.next_event().expect("event over https");
        assert_eq!(ev.id.as_deref(), Some(ids[i].as_str()));
        assert_eq!(ev.data, *want);
    }

    // Resume after the first: the two later ones come back, in order.
    let header = format!("Last-Event-ID: {}\r\n", ids[0]);
    let mut again = Sse::connect(s.addr, Arc::clone(&cfg), "/sse?topic=news", &header);
    for id in &ids[1..] {
        let ev = again.next_event().expect("replayed event");
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
    let id = publish(s.addr, &cfg, "news", "live");
    assert_eq!(again.next_event().unwrap().id.as_deref(), Some(id.as_str()));
    assert_eq!(sub.next_event().unwrap().data, "live");
}

#[test]
fn websocket_over_wss_subscribes_and_publishes() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let ca = Ca::new("ws CA");
    let files = Files::new("ws");
    files.write(&ca.issue());
    let s = start(&files, &["--ws-publish", "true"]);
    let cfg = ca.client_config(&[b"http/1.1"]);
    let addr = s.addr;
    common::rt().block_on(async move {
        let wss = |path: &'static str| {
            let cfg = Arc::clone(&cfg);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake");
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
                let url = format!("wss://localhost{path}");
                let (ws, resp) = tokio_tungstenite::client_async(url, tls)
                    .await
                    .expect("WebSocket over TLS");
                assert_eq!(resp.status(), 101);
                ws
            }
        };
        let mut a = wss("/ws?topic=room").await;
        let mut b = wss("/ws").await;
        let publish = r#"{"op":"publish","topic":"room","data":"over wss"}"#;
        b.send(Message::text(publish)).await.unwrap();
        let got = ws_json(&mut a).await;
        assert_eq!(got["data"], "over wss");
        // A large message: many records, reassembled by the client.
        let big = "y".repeat(50_000);
        let publish = serde_json::json!({"op":"publish","topic":"room","data":big}).to_string();
        b.send(Message::text(publish)).await.unwrap();
        loop {
            let got = ws_json(&mut a).await;
            if got["data"] == big.as_str() {
                break;
            }
        }
        a.close(None).await.unwrap();
    });
}

async fn ws_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a WebSocket message")
            .expect("stream ended")
            .expect("ws error");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

#[test]
fn plain_http_to_the_tls_port_is_closed_and_harms_no_one() {
    let ca = Ca::new("garbage CA");
    let files = Files::new("garbage");
    files.write(&ca.issue());
    let s = start(&files, &[]);
    let cfg = ca.client_config(&[b"http/1.1"]);
    let mut sub = Sse::connect(s.addr, Arc::clone(&cfg), "/sse?topic=g", "");

    for garbage in [
        &b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..],
        &[0u8; 64][..],
    ] {
        let mut raw = TcpStream::connect(s.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(garbage).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "not closed after {garbage:?}"
        );
        // Nothing but (at most) a TLS alert record: never an HTTP answer in the clear.
        assert!(!got.starts_with(b"HTTP"), "{got:?}");
        if !got.is_empty() {
            assert_eq!(got[0], 0x15, "expected an alert record, got {got:?}");
        }
    }
    let id = publish(s.addr, &cfg, "g", "still here");
    assert_eq!(sub.next_event().unwrap().id.as_deref(), Some(id.as_str()));
    let (status, metrics) = https(
        s.addr,
        cfg,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let errors = metric(&metrics, "uringcast_tls_errors_total");
    assert!(errors >= 3, "tls errors counted: {errors}");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn a_handshake_that_never_completes_is_timed_out() {
    let ca = Ca::new("slow CA");
    let files = Files::new("slow");
    files.write(&ca.issue());
    let s = start(&files, &["--request-timeout", "1s"]);
    // Silent, and half a ClientHello record header.
    for first in [&b""[..], &[0x16, 0x03, 0x01][..]] {
        let mut raw = TcpStream::connect(s.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        raw.write_all(first).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let r = raw.read_to_end(&mut got);
        let waited = started.elapsed();
        assert!(r.is_ok(), "not closed: {r:?}");
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    }
}

#[test]
fn alpn_other_than_http11_is_refused() {
    let ca = Ca::new("alpn CA");
    let files = Files::new("alpn");
    files.write(&ca.issue());
    let s = start(&files, &[]);
    let Err(err) = tls_connect(s.addr, ca.client_config(&[b"h2"])) else {
        panic!("handshake with only h2 must fail")
    };
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("noapplicationprotocol")
            || err.to_string().contains("no_application_protocol")
            || err.to_string().contains("NoApplicationProtocol"),
        "{err}"
    );
    // No ALPN at all is fine (curl without --http1.1 offers h2 and http/1.1; old clients none).
    tls_connect(s.addr, ca.client_config(&[])).expect("no ALPN");
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_only() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let files = Files::new("reload");
    files.write(&old_ca.issue());
    let s = start(&files, &[]);
    let old_cfg = old_ca.client_config(&[b"http/1.1"]);
    let new_cfg = new_ca.client_config(&[b"http/1.1"]);
    let mut old_sub = Sse::connect(s.addr, Arc::clone(&old_cfg), "/sse?topic=r", "");
    assert!(tls_connect(s.addr, Arc::clone(&new_cfg)).is_err());

    files.write(&new_ca.issue());
    hangup(&s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls_connect(s.addr, Arc::clone(&new_cfg)).is_err() {
        assert!(Instant::now() < deadline, "new certificate not served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tls_connect(s.addr, Arc::clone(&old_cfg)).is_err(),
        "old certificate still served to new connections"
    );
    // The connection made under the old certificate keeps working.
    let id = publish(s.addr, &new_cfg, "r", "after reload");
    assert_eq!(
        old_sub.next_event().unwrap().id.as_deref(),
        Some(id.as_str())
    );

    // A broken pair on reload: logged, counted, and the current one stays.
    std::fs::write(files.cert(), "not a certificate").unwrap();
    hangup(&s);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = https(
            s.addr,
            Arc::clone(&new_cfg),
            "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        if metric(&m, "uringcast_tls_reload_errors_total") == 1 {
            assert_eq!(metric(&m, "uringcast_tls_reloads_total"), 1);
            break;
        }
        assert!(Instant::now() < deadline, "failed reload not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    tls_connect(s.addr, Arc::clone(&new_cfg)).expect("the previous certificate stays");
    let id = publish(s.addr, &new_cfg, "r", "after bad reload");
    assert_eq!(
        old_sub.next_event().unwrap().id.as_deref(),
        Some(id.as_str())
    );
}

fn hangup(s: &Server) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let r = unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    assert_eq!(r, 0);
}

/// `uringcast serve` with `args`: it must exit non-zero at start-up, and its stderr must
/// contain every one of `want`.
fn refused_at_startup(args: &[String], want: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--publish-open", "true"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server with {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{args:?} started");
    assert!(
        !err.contains("panicked"),
        "{args:?}: a panic, not an error: {err}"
    );
    for w in want {
        assert!(err.contains(w), "{args:?}: stderr lacks {w:?}: {err}");
    }
}

#[test]
fn bad_certificate_files_stop_the_server_with_a_clear_error() {
    let ca = Ca::new("bad CA");
    let files = Files::new("bad");
    files.write(&ca.issue());
    let cert = path(&files.cert());
    let key = path(&files.key());
    let missing = path(&files.dir.join("missing.pem"));
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    refused_at_startup(&s(&["--tls-cert", &cert]), &["tls_key", "tls_cert"]);
    refused_at_startup(&s(&["--tls-key", &key]), &["tls_cert"]);
    refused_at_startup(
        &s(&["--tls-cert", &missing, "--tls-key", &key]),
        &["tls_cert", "missing.pem", "cannot read"],
    );
    refused_at_startup(
        &s(&["--tls-cert", &cert, "--tls-key", &missing]),
        &["tls_key", "missing.pem", "cannot read"],
    );
    // The key where the certificate should be, and the other way round.
    refused_at_startup(
        &s(&["--tls-cert", &key, "--tls-key", &key]),
        &["tls_cert", "no CERTIFICATE"],
    );
    refused_at_startup(
        &s(&["--tls-cert", &cert, "--tls-key", &cert]),
        &["tls_key", "no usable private key"],
    );
    // A key of another certificate.
    let other = Files::new("bad-other");
    other.write(&ca.issue());
    refused_at_startup(
        &s(&["--tls-cert", &cert, "--tls-key", &path(&other.key())]),
        &["do not make a usable pair"],
    );
}

/// Backpressure over TLS: a client that sends a burst of echo messages faster than it reads
/// makes the server pause reading with decrypted input still waiting; every echo must still
/// come back, in order, once the client reads (the waiting plaintext resumes on drain, not
/// only when more ciphertext arrives).
#[test]
fn echo_burst_over_tls_survives_read_pauses() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ca = Ca::new("burst CA");
    let files = Files::new("burst");
    files.write(&ca.issue());
    // Pause reading above 512 bytes queued: a few echoes; one TLS record holds dozens.
    let s = start(
        &files,
        &["--echo-path", "/echo", "--queue-bytes-max", "4KiB"],
    );
    let cfg = ca.client_config(&[b"http/1.1"]);
    let addr = s.addr;
    common::rt().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async("wss://localhost/echo", tls)
            .await
            .unwrap();
        let (mut tx, mut rx) = ws.split();
        const N: usize = 2_000;
        // All sent before any is read: one feed, one flush.
        for i in 0..N {
            let msg = format!("{i:05}{}", "z".repeat(60));
            tx.feed(Message::text(msg)).await.unwrap();
        }
        let send = tokio::spawn(async move {
            tx.flush().await.unwrap();
            tx
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..N {
            let m = tokio::time::timeout(Duration::from_secs(10), rx.next())
                .await
                .unwrap_or_else(|_| panic!("echo {i} of {N} never came"))
                .unwrap()
                .unwrap();
            let Message::Text(t) = m else {
                panic!("unexpected {m:?}")
            };
            assert_eq!(&t.as_str()[..5], format!("{i:05}"));
        }
        let _ = send.await;
    });
}

/// `uringcast-bench ARGS --json - --max-time 60s --workers 1`: (exit code, JSON, table).
fn bench(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(common::bench_bin())
        .args(args)
        .args(["--json", "-", "--max-time", "60s", "--workers", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run uringcast-bench");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let table = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), json, table)
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// The bench's TLS client role: fan-out over https and wss (publishers over TLS too) with
/// exact delivery counts, hold with heartbeats, a connect storm; a wrong CA fails every
/// handshake, and a TLS URL without a trust choice is refused up front.
#[test]
fn bench_scenarios_run_over_tls() {
    let ca = Ca::new("bench CA");
    let files = Files::new("bench");
    files.write(&ca.issue());
    let ca_file = files.dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let ca_file = path(&ca_file);
    let s = start(
        &files,
        &[
            "--workers",
            "1",
            "--heartbeat-interval",
            "200ms",
            "--ws-publish",
            "true",
        ],
    );
    let https = |p: &str| format!("https://{}{p}", s.addr);
    let wss = |p: &str| format!("wss://{}{p}", s.addr);
    let trust = [
        "--tls-ca",
        ca_file.as_str(),
        "--tls-server-name",
        "localhost",
    ];

    for (sub, publish) in [
        (https("/sse?topic={topic}"), https("/publish?topic={topic}")),
        (wss("/ws?topic={topic}"), wss("/ws")),
    ] {
        let mut args = vec![
            "fanout",
            "--url",
            &sub,
            "--publish-url",
            &publish,
            "--conns",
            "20",
            "--topics",
            "2",
            "--msg-rate",
            "40",
            "--duration",
            "1s",
            "--drain",
            "10s",
        ];
        args.extend(trust);
        let (code, j, table) = bench(&args);
        assert_eq!(code, 0, "{sub}: {table}");
        assert_eq!(num(&j, "connections_held"), 20, "{table}");
        assert_eq!(num(&j, "deliveries"), 20 * 40, "{table}");
        assert_eq!(num(&j, "missing"), 0, "{table}");
        assert!(j["errors"].as_object().unwrap().is_empty(), "{table}");
    }

    let url = wss("/ws?topic=h");
    let mut args = vec![
        "hold",
        "--url",
        &url,
        "--conns",
        "30",
        "--duration",
        "1s",
        "--heartbeat-max",
        "2s",
    ];
    args.extend(trust);
    let (code, j, table) = bench(&args);
    assert_eq!(code, 0, "{table}");
    assert_eq!(num(&j, "connections_held"), 30, "{table}");

    // `--tls` makes an http:// URL speak TLS.
    let url = s.url("/sse?topic=c");
    let mut args = vec!["connect", "--url", &url, "--conns", "50", "--tls"];
    args.extend(trust);
    let (code, _, table) = bench(&args);
    assert_eq!(code, 0, "{table}");

    // Another CA: no handshake completes, and the report names TLS.
    let other = Ca::new("other CA");
    let other_file = files.dir.join("other.pem");
    std::fs::write(&other_file, other.cert.pem()).unwrap();
    let url = https("/sse?topic=c");
    let (code, _, table) = bench(&[
        "connect",
        "--url",
        &url,
        "--conns",
        "5",
        "--connect-timeout",
        "2s",
        "--tls-ca",
        &path(&other_file),
        "--tls-server-name",
        "localhost",
    ]);
    assert_eq!(code, 1, "{table}");
    assert!(table.contains("tls_error"), "{table}");

    let (code, _, table) = bench(&["connect", "--url", &url, "--conns", "1"]);
    assert_eq!(code, 2, "{table}");
    assert!(table.contains("--tls-ca"), "{table}");
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Read one response (head, then a Content-Length body) from a TLS stream: (status, body).
fn read_response(s: &mut Tls) -> (u16, Vec<u8>) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response head");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (status, body)
}

/// Subscribers over TLS that stop reading while a publisher floods: encrypted output is
/// per connection (no shared buffer), and it counts against `queue_bytes_max` like plain
/// output, so each is cut off at its bound and the server's memory stays bounded.
#[test]
fn slow_tls_consumers_are_cut_at_the_queue_bound() {
    let ca = Ca::new("slow consumer CA");
    let files = Files::new("slowcons");
    files.write(&ca.issue());
    let s = start(
        &files,
        &["--queue-bytes-max", "64KiB", "--history-bytes", "256KiB"],
    );
    let cfg = ca.client_config(&[b"http/1.1"]);
    const SUBS: usize = 200;
    let subs: Vec<Tls> = (0..SUBS)
        .map(|_| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            // A small receive window so the kernel absorbs little and the server's queue fills.
            sock.set_recv_buffer_size(4096).unwrap();
            sock.connect(&s.addr.into()).unwrap();
            let tcp: TcpStream = sock.into();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(Arc::clone(&cfg), name).unwrap();
            let mut t = StreamOwned::new(conn, tcp);
            t.write_all(b"GET /sse?topic=flood HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            // The head, read to the blank line: subscribed.
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                t.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            t
        })
        .collect();
    let payload = "x".repeat(16 * 1024);
    let mut p = tls_connect(s.addr, Arc::clone(&cfg)).unwrap();
    let mut peak = 0;
    for i in 0..300 {
        let req = format!(
            "POST /publish?topic=flood HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        p.write_all(req.as_bytes()).unwrap();
        assert_eq!(read_response(&mut p).0, 200);
        if i % 50 == 0 {
            peak = peak.max(rss_bytes(s.child.id()));
        }
    }
    peak = peak.max(rss_bytes(s.child.id()));
    p.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, metrics) = read_response(&mut p);
    let metrics = String::from_utf8(metrics).unwrap();
    let closed = metric(&metrics, "uringcast_closed_total{reason=\"slow_consumer\"}");
    assert_eq!(
        closed, SUBS as u64,
        "every stalled TLS subscriber is cut off"
    );
    // Unbounded per-connection ciphertext would be 200 x 300 x 16 KiB = 960 MB.
    assert!(peak < 200 << 20, "server RSS peaked at {} MiB", peak >> 20);
    drop(subs);
}
