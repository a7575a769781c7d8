//! Shared by the engine integration tests: a tiny line-echo handler over raw bytes, and helpers
//! that start an engine on 127.0.0.1 port 0 (or skip with a message when io_uring is missing).
//!
//! Line protocol (one command per `\n`-terminated line; partial lines stay as leftover):
//! - `close`       → flush and close
//! - `timer <ms>`  → set the connection timer; on fire send `tick\n` and close
//! - `post`        → round trip through the next worker, then send `posted <w1> <w2>\n`
//! - `abort`       → abort (queued bytes dropped)
//! - anything else → echoed back with its `\n`
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uringcast::engine::{
    CloseReason, ConnId, Ctx, Engine, EngineConfig, EngineError, Handler, Origin,
};

#[derive(Debug)]
pub enum Event {
    Open(usize, ConnId, Origin),
    Close(usize, ConnId, CloseReason),
    ConnectFailed(usize, ConnId, i32),
}

pub enum Msg {
    /// Hop 0 goes to another worker, hop 1 comes back to `origin`.
    Ping {
        origin: usize,
        id: ConnId,
        via: usize,
    },
}

pub struct Echo {
    pub worker: usize,
    pub events: mpsc::Sender<Event>,
    /// Ignore `on_shutdown` (to test the drain timeout).
    pub ignore_shutdown: bool,
}

pub struct Conn {
    pub lines: u64,
}

impl Handler for Echo {
    type Conn = Conn;
    type Msg = Msg;

    fn on_open(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, origin: Origin) -> Conn {
        let _ = self.events.send(Event::Open(self.worker, id, origin));
        Conn { lines: 0 }
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        data: &mut [u8],
    ) -> usize {
        let mut consumed = 0;
        while let Some(nl) = data[consumed..].iter().position(|&b| b == b'\n') {
            let line = &data[consumed..consumed + nl];
            conn.lines += 1;
            match line {
                b"close" => ctx.close(id),
                b"abort" => ctx.abort(id),
                b"post" => {
                    let to = (ctx.worker_index() + 1) % ctx.workers();
                    ctx.post(
                        to,
                        Msg::Ping {
                            origin: ctx.worker_index(),
                            id,
                            via: usize::MAX,
                        },
                    );
                }
                l if l.starts_with(b"timer ") => {
                    let ms: u64 = std::str::from_utf8(&l[6..]).unwrap().parse().unwrap();
                    ctx.set_timer(id, ctx.now_ms() + ms);
                }
                _ => {
                    ctx.send(
                        id,
                        Bytes::copy_from_slice(&data[consumed..consumed + nl + 1]),
                    );
                }
            }
            consumed += nl + 1;
        }
        consumed
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _conn: &mut Conn) {
        ctx.send(id, Bytes::from_static(b"tick\n"));
        ctx.close(id);
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, _conn: Conn, why: CloseReason) {
        let _ = self.events.send(Event::Close(self.worker, id, why));
    }

    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, msg: Msg) {
        let Msg::Ping { origin, id, via } = msg;
        if via == usize::MAX {
            ctx.post(
                origin,
                Msg::Ping {
                    origin,
                    id,
                    via: ctx.worker_index(),
                },
            );
        } else {
            let line = format!("posted {origin} {via}\n");
            ctx.send(id, Bytes::from(line));
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _conn: &mut Conn) {
        if !self.ignore_shutdown {
            ctx.send(id, Bytes::from_static(b"bye\n"));
            ctx.close(id);
        }
    }

    fn on_connect_failed(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, errno: i32) {
        let _ = self
            .events
            .send(Event::ConnectFailed(self.worker, id, errno));
    }
}

pub fn base_config() -> EngineConfig {
    EngineConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        workers: 2,
        rings_per_worker: 1,
        files_per_ring: 1024,
        listen_backlog: 64,
        tick_ms: 10,
        drain_timeout_ms: 2_000,
        buf_ring_entries: 64,
        buf_bytes: 4096,
        sq_entries: 256,
        handle_signals: false,
        ..EngineConfig::default()
    }
}

/// Start an echo engine, or `None` (test skipped, with a message) without io_uring.
pub fn start(
    cfg: EngineConfig,
    ignore_shutdown: bool,
) -> Option<(Engine<Msg>, mpsc::Receiver<Event>)> {
    let (tx, rx) = mpsc::channel();
    let started = Engine::start(cfg, move |worker| Echo {
        worker,
        events: tx.clone(),
        ignore_shutdown,
    });
    match started {
        Ok(e) => Some((e, rx)),
        Err(
            e @ (EngineError::NoIoUring
            | EngineError::IoUringDenied
            | EngineError::Unsupported { .. }),
        ) => {
            eprintln!("SKIPPED: io_uring unavailable: {e}");
            None
        }
        Err(e) => panic!("engine failed to start: {e}"),
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read exactly `n` bytes (panics on timeout or EOF).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read");
    buf
}

pub fn write(s: &mut TcpStream, b: &[u8]) {
    s.write_all(b).expect("write");
}

/// Read until EOF (bounded by the read timeout); returns what came before it.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Wait until `f` holds, polling every 5 ms, for at most `ms`.
pub fn wait_until(ms: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}
