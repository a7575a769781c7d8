//! permessage-deflate (RFC 7692, `--ws-deflate`) against the real server, with a raw
//! WebSocket client written here (tokio-tungstenite has no permessage-deflate) and flate2 on the
//! client side: the negotiation, compressed deliveries made once and shared, compressed
//! replay, compressed client messages (fragmented too), and the refusals: a decompression bomb
//! (1009), corrupt data (1007), RSV1 where it may not be (1002).

mod common;

use common::{publish, Server};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A raw client: the upgrade, masked frames out, frames in.
struct Client {
    s: TcpStream,
    /// The `Sec-WebSocket-Extensions` of the 101, if any.
    extensions: Option<String>,
}

/// A frame from the server.
#[derive(Debug)]
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn rsv1(&self) -> bool {
        self.first & 0x40 != 0
    }
    fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
    /// The message text: inflated when RSV1 is set.
    fn text(&self) -> String {
        let bytes = if self.rsv1() {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        };
        String::from_utf8(bytes).unwrap()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text()).unwrap()
    }
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(4096);
    while (z.total_in() as usize) < input.len() || out.len() == out.capacity() {
        out.reserve(out.capacity());
        let at = z.total_in() as usize;
        z.decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
            .unwrap();
    }
    out
}

/// `data` deflated on its own, final `00 00 ff ff` removed (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(z.total_in() as usize, data.len());
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

impl Client {
    fn connect(addr: SocketAddr, path: &str, extensions: Option<&str>) -> Client {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let ext = extensions.map_or(String::new(), |e| {
            format!("Sec-WebSocket-Extensions: {e}\r\n")
        });
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| v.trim().to_owned())
        });
        Client { s, extensions }
    }

    /// Send one masked frame with this first byte.
    fn send_raw(&mut self, first: u8, payload: &[u8]) {
        let key = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    fn send_compressed_text(&mut self, text: &str) {
        self.send_raw(0xc1, &deflate(text.as_bytes()));
    }

    /// The next frame that is not a ping.
    fn next(&mut self) -> Frame {
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).unwrap();
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.s.read_exact(&mut l).unwrap();
                    u16::from_be_bytes(l) as usize
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.s.read_exact(&mut l).unwrap();
                    u64::from_be_bytes(l) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.s.read_exact(&mut payload).unwrap();
            if h[0] & 0x0f != 0x9 {
                return Frame {
                    first: h[0],
                    payload,
                };
            }
        }
    }

    /// The close code of the next frame, which must be a close.
    fn close_code(&mut self) -> u16 {
        let f = self.next();
        assert_eq!(f.opcode(), 0x8, "expected a close, got {f:?}");
        u16::from_be_bytes([f.payload[0], f.payload[1]])
    }
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, _, body) = common::http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn negotiation_follows_the_flag_and_the_offer() {
    let off = Server::start(&[]);
    let c = Client::connect(off.addr, "/ws", Some("permessage-deflate"));
    assert_eq!(c.extensions, None, "off unless --ws-deflate");
    let on = Server::start(&["--ws-deflate", "true"]);
    for (offer, want) in [
        (
            Some("permessage-deflate; client_max_window_bits"),
            Some(AGREED.to_owned()),
        ),
        (
            Some("permessage-deflate; server_max_window_bits=10"),
            Some(format!("{AGREED}; server_max_window_bits=10")),
        ),
        (Some("permessage-deflate; server_max_window_bits=8"), None),
        (Some("x-webkit-deflate-frame"), None),
        (None, None),
    ] {
        let c = Client::connect(on.addr, "/ws", offer);
        assert_eq!(c.extensions, want, "{offer:?}");
    }
}

#[test]
fn a_message_is_compressed_once_and_the_frame_shared_by_every_deflate_subscriber() {
    let s = Server::start(&["--ws-deflate", "true", "--workers", "2"]);
    let mut deflaters: Vec<Client> = (0..4)
        .map(|_| Client::connect(s.addr, "/ws?topic=z", Some("permessage-deflate")))
        .collect();
    let mut small = Client::connect(
        s.addr,
        "/ws?topic=z",
        Some("permessage-deflate; server_max_window_bits=9"),
    );
    let mut plain = Client::connect(s.addr, "/ws?topic=z", None);
    let data = "{\"bid\":101.25,\"ask\":101.5} ".repeat(200);
    let id = publish(s.addr, "z", &data);
    let mut frames = Vec::new();
    for c in &mut deflaters {
        let f = c.next();
        assert!(f.rsv1(), "compressed: {:x}", f.first);
        assert_eq!(f.opcode(), 0x1);
        let v = f.json();
        assert_eq!(
            (v["id"].as_str(), v["data"].as_str()),
            (Some(id.as_str()), Some(data.as_str()))
        );
        assert!(
            f.payload.len() < data.len() / 10,
            "{} bytes",
            f.payload.len()
        );
        frames.push(f.payload);
    }
    assert!(
        frames.windows(2).all(|w| w[0] == w[1]),
        "one encoding for all"
    );
    let f = small.next();
    assert!(f.rsv1());
    assert_eq!(f.json()["data"].as_str(), Some(data.as_str()));
    let f = plain.next();
    assert!(!f.rsv1());
    assert_eq!(f.json()["data"].as_str(), Some(data.as_str()));
    // Two window classes were asked for: two encodings, however many subscribers.
    assert_eq!(metric(s.addr, "uringcast_ws_deflate_encoded_total"), 2);
}

#[test]
fn compressed_client_messages_and_replay() {
    let s = Server::start(&["--ws-deflate", "true"]);
    let first = publish(s.addr, "r", "one");
    publish(s.addr, "r", "two");
    let mut c = Client::connect(s.addr, "/ws", Some("permessage-deflate"));
    assert_eq!(c.extensions.as_deref(), Some(AGREED));
    c.send_compressed_text(&format!(
        r#"{{"op":"subscribe","topic":"r","since":"{first}"}}"#
    ));
    let ack = c.next();
    assert!(!ack.rsv1(), "control answers go uncompressed");
    assert_eq!(ack.json()["op"], "subscribed");
    let replayed = c.next();
    assert!(replayed.rsv1(), "replay is compressed too");
    assert_eq!(replayed.json()["data"], "two");
    // A compressed message in three frames: RSV1 on the first only.
    let z = deflate(br#"{"op":"subscribe","topic":"frag"}"#);
    let (a, rest) = z.split_at(z.len() / 3);
    let (b, end) = rest.split_at(rest.len() / 2);
    c.send_raw(0x41, a);
    c.send_raw(0x00, b);
    c.send_raw(0x80, end);
    let ack = c.next();
    assert_eq!(
        (ack.json()["op"].as_str(), ack.json()["topic"].as_str()),
        (Some("subscribed"), Some("frag"))
    );
    // Uncompressed messages still work on a deflate connection.
    c.send_raw(0x81, br#"{"op":"unsubscribe","topic":"frag"}"#);
    assert_eq!(c.next().json()["op"], "unsubscribed");
}

#[test]
fn a_decompression_bomb_is_closed_with_1009() {
    let s = Server::start(&["--ws-deflate", "true", "--ws-message-bytes-max", "64KiB"]);
    let mut c = Client::connect(s.addr, "/ws", Some("permessage-deflate"));
    // 16 MiB of spaces deflate to about 16 KB: within the frame limit, far beyond the
    // message limit once inflated.
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    c.send_raw(0xc1, &bomb);
    assert_eq!(c.close_code(), 1009);
    // The server is fine: others are served.
    let mut other = Client::connect(s.addr, "/ws?topic=b", Some("permessage-deflate"));
    publish(s.addr, "b", "still here");
    assert_eq!(other.next().json()["data"], "still here");
}

#[test]
fn bad_compressed_frames_are_refused() {
    let s = Server::start(&["--ws-deflate", "true"]);
    // Not a deflate stream (reserved block type 3): 1007.
    let mut c = Client::connect(s.addr, "/ws", Some("permessage-deflate"));
    c.send_raw(0xc1, &[0xff, 0xff, 0xff]);
    assert_eq!(c.close_code(), 1007);
    // Inflates to invalid UTF-8 in a text message: 1007.
    let mut c = Client::connect(s.addr, "/ws", Some("permessage-deflate"));
    c.send_raw(0xc1, &deflate(&[0xc3, 0x28]));
    assert_eq!(c.close_code(), 1007);
    // RSV1 on a continuation frame, and on a control frame: 1002.
    let mut c = Client::connect(s.addr, "/ws", Some("permessage-deflate"));
    c.send_raw(0x01, b"{");
    c.send_raw(0xc0, b"}");
    assert_eq!(c.close_code(), 1002);
    let mut c = Client::connect(s.addr, "/ws", Some("permessage-deflate"));
    c.send_raw(0xc9, b"");
    assert_eq!(c.close_code(), 1002);
    // RSV1 without the extension: 1002.
    let mut c = Client::connect(s.addr, "/ws", None);
    c.send_compressed_text(r#"{"op":"subscribe","topic":"x"}"#);
    assert_eq!(c.close_code(), 1002);
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Server RSS growth per connection for `n` WebSocket connections opened with `offer`, each
/// then sending `then` (raw frame bytes after the upgrade; empty for idle).
fn rss_per_ws(n: usize, offer: Option<&str>, then: &[(u8, Vec<u8>)]) -> f64 {
    let s = Server::start(&["--ws-deflate", "true", "--workers", "1"]);
    drop(
        (0..50)
            .map(|_| Client::connect(s.addr, "/ws?topic=m", offer))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_bytes(s.child.id());
    let mut conns: Vec<Client> = (0..n)
        .map(|_| Client::connect(s.addr, "/ws?topic=m", offer))
        .collect();
    for c in &mut conns {
        for (first, payload) in then {
            c.send_raw(*first, payload);
        }
    }
    // The server has read them once a message on this connection is answered after them.
    let last = conns.last_mut().unwrap();
    last.send_raw(0x8a, b"");
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes(s.child.id());
    drop(conns);
    after.saturating_sub(before) as f64 / n as f64
}

/// A measurement, run by hand (numbers in docs/benchmarks.md): `cargo test --release --test
/// server_deflate -- --ignored --nocapture`. What a WebSocket costs the server with and without
/// permessage-deflate, idle and in the middle of a compressed message (its decompressor alive).
#[test]
#[ignore]
fn measure_server_memory_of_deflate_connections() {
    const N: usize = 2_000;
    // The first third of a compressed control message, so the decompressor holds its window.
    let z = deflate(format!(r#"{{"op":"subscribe","topic":"{}"}}"#, "x".repeat(100)).as_bytes());
    let part = vec![(0x41u8, z[..z.len() / 3].to_vec())];
    let runs = 3;
    for (name, offer, then) in [
        ("plain, idle", None, vec![]),
        ("deflate, idle", Some("permessage-deflate"), vec![]),
        ("deflate, mid-message", Some("permessage-deflate"), part),
    ] {
        let mut v: Vec<f64> = (0..runs).map(|_| rss_per_ws(N, offer, &then)).collect();
        v.sort_by(f64::total_cmp);
        println!("{name}: {v:.0?} B/conn, median {:.0}", v[runs / 2]);
    }
}
