//! The calibration source: a trivial push server on the same io_uring engine, in the same
//! process as the harness, so `uringcast-bench calibrate` measures the harness's own receive
//! ceiling rather than a server's.
//!
//! It answers an SSE `GET` with a `200` event stream and a WebSocket upgrade with a `101`
//! (through the same `proto` functions the real server uses), then pushes envelopes in the
//! harness's format down every connection, `batch` messages per send: SSE `id:`/`data:` events
//! or unmasked text frames. Each connection runs through the sequence 1, 2, 3, ... at its own
//! pace (a subscriber's tracker is per connection, so none counts as lost or duplicated); the
//! batches are encoded once per round and shared by all connections, and every message of a
//! batch carries the time the batch was encoded.
//!
//! Pacing is closed-loop on what the harness has read: the source keeps at most `window`
//! messages sent and not yet counted by the harness's workers (`Live::deliveries`, same
//! process), so it pushes exactly as fast as the harness drains and never fills the kernel's
//! socket buffers with seconds of backlog. A connection refills when its send queue empties
//! (`on_drain`); while the window is full it waits in `parked`, woken by a 1 ms timer.

use crate::envelope::Template;
use crate::stats::{now_ns, Live};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uringcast::engine::{CloseReason, ConnId, Ctx, Engine, EngineConfig, Handler, Origin};
use uringcast::proto::http1::{HttpLimits, RequestDecoder, Version};
use uringcast::proto::ws::{encode_frame, server_handshake, OpCode};

/// Messages in flight (sent, not yet counted by the harness) per connection, at most.
pub const WINDOW_PER_CONN: u64 = 32;

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\n\r\n";

/// What every source worker shares.
#[derive(Debug)]
pub struct SourceCfg {
    pub template: Template,
    /// The topic name every envelope carries (the harness checks it).
    pub topic: String,
    /// Messages per send.
    pub batch: u32,
    /// Envelope padded to at least this many bytes.
    pub size: usize,
    /// Most messages sent and not yet counted by the harness, all connections together.
    pub window: u64,
    /// The harness's counters (its deliveries close the loop).
    pub live: Arc<Live>,
    /// Messages sent, all source workers.
    pub sent: AtomicU64,
    /// Pin source worker `w` to `cpus[w % len]` (none: leave it to the scheduler).
    pub cpus: Vec<usize>,
}

impl SourceCfg {
    fn window_open(&self) -> bool {
        let sent = self.sent.load(Ordering::Relaxed);
        sent.saturating_sub(self.live.deliveries()) < self.window
    }
}

/// Where one connection is.
#[derive(Debug)]
enum Stream {
    Free,
    Head(RequestDecoder),
    Push { id: ConnId, ws: bool, seq: u64 },
}

/// The engine handler of one source worker.
pub struct Source {
    cfg: Arc<SourceCfg>,
    limits: HttpLimits,
    /// By engine slot.
    streams: Vec<Stream>,
    /// Connections whose queue drained while the window was full, oldest first.
    parked: VecDeque<ConnId>,
    /// The parked connection whose timer wakes the others.
    waker: Option<ConnId>,
    /// Encoded batches by round, SSE at 0 and WebSocket at 1: connections move through the
    /// same rounds at about the same pace, so each round is encoded once and its bytes shared
    /// (reference-counted) by every connection, and the source costs little per message.
    rounds: [VecDeque<Bytes>; 2],
    /// The round at the front of each cache.
    first_round: [u64; 2],
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

/// Rounds each cache keeps.
const ROUNDS_KEPT: usize = 256;

/// A running source: its engine and the address it listens on.
pub struct Running {
    pub engine: Engine<()>,
    pub addr: SocketAddr,
}

/// Start the source on `127.0.0.1` (a free port) with `workers` threads, room for `conns`.
pub fn start(cfg: Arc<SourceCfg>, workers: usize, conns: usize) -> Result<Running, String> {
    let engine_cfg = EngineConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        workers,
        connections_max: conns + 64,
        listen_backlog: 4096,
        tick_ms: 1,
        drain_timeout_ms: 1_000,
        close_flush_timeout_ms: 1_000,
        // `on_drain` when a connection's queue is empty: one batch queued at a time.
        read_pause_bytes: 0,
        send_queue_bytes_max: 0,
        handle_signals: false,
        ..EngineConfig::default()
    };
    let engine = Engine::start(engine_cfg, move |w| {
        if !cfg.cpus.is_empty() {
            pin_thread(cfg.cpus[w % cfg.cpus.len()]);
        }
        Source {
            cfg: Arc::clone(&cfg),
            limits: HttpLimits::default(),
            streams: Vec::new(),
            parked: VecDeque::new(),
            waker: None,
            rounds: [VecDeque::new(), VecDeque::new()],
            first_round: [0, 0],
            buf: Vec::new(),
            scratch: Vec::new(),
        }
    })
    .map_err(|e| format!("calibration source: {e}"))?;
    let addr = engine
        .local_addr()
        .ok_or("calibration source: no listen address")?;
    Ok(Running { engine, addr })
}

impl Source {
    fn stream(&mut self, id: ConnId) -> &mut Stream {
        let slot = id.slot as usize;
        if self.streams.len() <= slot {
            self.streams.resize_with(slot + 1, || Stream::Free);
        }
        &mut self.streams[slot]
    }

    /// Send the next batch on `id` if the window allows, else park it.
    fn refill(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId) {
        if !self.cfg.window_open() {
            self.park(ctx, id);
            return;
        }
        let cfg = Arc::clone(&self.cfg);
        let Stream::Push { id: sid, ws, seq } = self.stream(id) else {
            return;
        };
        if *sid != id {
            return;
        }
        let ws = *ws;
        let round = *seq / u64::from(cfg.batch);
        *seq += u64::from(cfg.batch);
        let bytes = self.round(ws, round);
        cfg.sent.fetch_add(u64::from(cfg.batch), Ordering::Relaxed);
        if ctx.send(id, bytes) {
            ctx.notify_drain(id);
        }
    }

    /// The bytes of `round` (sequence numbers `round x K + 1 ..= round x K + K`) in one
    /// framing: from the cache when recent, else encoded now (and cached if it is the next).
    fn round(&mut self, ws: bool, round: u64) -> Bytes {
        let k = usize::from(ws);
        let first = self.first_round[k];
        let cached = self.rounds[k].len() as u64;
        if round >= first && round < first + cached {
            return self.rounds[k][(round - first) as usize].clone();
        }
        let cfg = Arc::clone(&self.cfg);
        let ts = now_ns();
        self.buf.clear();
        for s in round * u64::from(cfg.batch) + 1..=(round + 1) * u64::from(cfg.batch) {
            self.scratch.clear();
            cfg.template
                .encode(s, ts, &cfg.topic, cfg.size, &mut self.scratch);
            if ws {
                encode_frame(&mut self.buf, true, OpCode::Text, &self.scratch, None);
            } else {
                self.buf.extend_from_slice(b"id: ");
                self.buf.extend_from_slice(s.to_string().as_bytes());
                self.buf.extend_from_slice(b"\ndata: ");
                self.buf.extend_from_slice(&self.scratch);
                self.buf.extend_from_slice(b"\n\n");
            }
        }
        let bytes = Bytes::copy_from_slice(&self.buf);
        if round == first + cached {
            self.rounds[k].push_back(bytes.clone());
            if self.rounds[k].len() > ROUNDS_KEPT {
                self.rounds[k].pop_front();
                self.first_round[k] += 1;
            }
        }
        bytes
    }

    fn park(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId) {
        self.parked.push_back(id);
        if self.waker.is_none() {
            self.waker = Some(id);
            ctx.set_timer(id, ctx.now_ms() + 1);
        }
    }

    /// The waker's timer: refill parked connections while the window allows.
    fn wake(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.waker = None;
        while self.cfg.window_open() {
            let Some(id) = self.parked.pop_front() else {
                break;
            };
            if ctx.is_open(id) {
                self.refill(ctx, id);
            }
        }
        self.rearm(ctx);
    }

    /// Put the wake-up timer on the first parked connection still open.
    fn rearm(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.waker.is_some() {
            return;
        }
        while let Some(&id) = self.parked.front() {
            if ctx.is_open(id) {
                self.waker = Some(id);
                ctx.set_timer(id, ctx.now_ms() + 1);
                return;
            }
            self.parked.pop_front();
        }
    }

    /// A whole request head: answer it and start pushing, or close.
    fn answer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, data: &[u8]) -> usize {
        let limits = self.limits.clone();
        let Stream::Head(dec) = self.stream(id) else {
            return data.len();
        };
        let head = match dec.decode(&limits, data) {
            Ok(p) => match p.event {
                None => return 0,
                Some(h) => h,
            },
            Err(_) => {
                ctx.close(id);
                return data.len();
            }
        };
        self.buf.clear();
        let ws = head.header_has_token("upgrade", "websocket");
        if ws {
            let minor = match head.version() {
                Version::Http10 => 0,
                Version::Http11 => 1,
            };
            let fields = head.headers().map(|f| (f.name, f.value));
            match server_handshake(head.method(), minor, fields, &[]) {
                Ok(a) => a.write_response(&mut self.buf),
                Err(e) => {
                    e.write_response(&mut self.buf);
                    ctx.send(id, Bytes::copy_from_slice(&self.buf));
                    ctx.close(id);
                    return data.len();
                }
            }
        } else {
            self.buf.extend_from_slice(SSE_HEAD);
        }
        ctx.send(id, Bytes::copy_from_slice(&self.buf));
        *self.stream(id) = Stream::Push { id, ws, seq: 0 };
        self.refill(ctx, id);
        data.len()
    }
}

impl Handler for Source {
    type Conn = ();
    type Msg = ();

    fn on_open(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, _origin: Origin) {
        *self.stream(id) = Stream::Head(RequestDecoder::new());
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        _: &mut (),
        data: &mut [u8],
    ) -> usize {
        match self.stream(id) {
            Stream::Head(_) => self.answer(ctx, id, data),
            // Subscribers send nothing the source needs (a WebSocket close at the end).
            _ => data.len(),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut ()) {
        if self.waker == Some(id) {
            self.wake(ctx);
        }
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut ()) {
        self.refill(ctx, id);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: (), _why: CloseReason) {
        *self.stream(id) = Stream::Free;
        if self.waker == Some(id) {
            self.waker = None;
            self.rearm(ctx);
        }
    }

    fn on_msg(&mut self, _ctx: &mut Ctx<'_, Self>, _msg: ()) {}

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut ()) {
        ctx.abort(id);
    }
}

/// Pin the calling thread to `cpu` (best effort: an error leaves it where the scheduler puts
/// it, and the run says so by its figures, not by failing).
pub fn pin_thread(cpu: usize) {
    // SAFETY: CPU_ZERO/CPU_SET write into the zeroed set we own; sched_setaffinity(0, ...)
    // reads it for the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
