//! Flow control against the real kernel (loopback, port 0): the bound on queued output
//! (`send_queue_bytes_max` -> `QueueOverflow`), read pausing past `read_pause_bytes`, and
//! `notify_drain` / `on_drain`.

mod engine_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use engine_common::{base_config, connect, wait_until};
use uringcast::engine::{
    CloseReason, ConnId, Ctx, Engine, EngineConfig, EngineError, EngineStats, Handler, Origin,
};

#[derive(Clone, Copy)]
enum Mode {
    /// Answer each received byte with `reply_bytes`, but only while the queue is at or below
    /// `read_pause_bytes` (what a well-behaved server does); the rest stays unconsumed.
    Reply { reply_bytes: usize },
    /// On any input, queue `count` x `chunk` bytes regardless of the queue.
    Flood { chunk: usize, count: usize },
    /// `big\n`: queue `total` bytes and ask for a drain (twice: one call expected);
    /// `ping\n`: ask for a drain with an empty queue.
    Drain { total: usize },
}

#[derive(Default)]
struct Counters {
    on_data_calls: AtomicU64,
    consumed: AtomicU64,
    queued_bytes_max: AtomicUsize,
    sends_refused: AtomicU64,
    drains: AtomicU64,
    in_callback: AtomicBool,
    reentrant: AtomicU64,
}

struct Flow {
    mode: Mode,
    pause_bytes: usize,
    c: Arc<Counters>,
    closes: mpsc::Sender<CloseReason>,
}

impl Flow {
    fn note_queued(&self, ctx: &Ctx<'_, Self>, id: ConnId) {
        self.c
            .queued_bytes_max
            .fetch_max(ctx.queued_bytes(id), Relaxed);
    }
}

impl Handler for Flow {
    type Conn = ();
    type Msg = ();

    fn on_open(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: Origin) {}

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        _: &mut (),
        data: &mut [u8],
    ) -> usize {
        self.c.in_callback.store(true, Relaxed);
        self.c.on_data_calls.fetch_add(1, Relaxed);
        let consumed = match self.mode {
            Mode::Reply { reply_bytes } => {
                let reply = Bytes::from(vec![b'r'; reply_bytes]);
                let mut n = 0;
                while n < data.len() && ctx.queued_bytes(id) <= self.pause_bytes {
                    if !ctx.send(id, reply.clone()) {
                        self.c.sends_refused.fetch_add(1, Relaxed);
                        break;
                    }
                    self.note_queued(ctx, id);
                    n += 1;
                }
                n
            }
            Mode::Flood { chunk, count } => {
                let buf = Bytes::from(vec![b'f'; chunk]);
                for _ in 0..count {
                    if !ctx.send(id, buf.clone()) {
                        self.c.sends_refused.fetch_add(1, Relaxed);
                        break;
                    }
                    self.note_queued(ctx, id);
                }
                data.len()
            }
            Mode::Drain { total } => {
                let mut n = 0;
                while let Some(nl) = data[n..].iter().position(|&b| b == b'\n') {
                    match &data[n..n + nl] {
                        b"big" => {
                            let chunk = Bytes::from(vec![b'd'; 64 * 1024]);
                            for _ in 0..total / chunk.len() {
                                ctx.send(id, chunk.clone());
                            }
                            ctx.notify_drain(id);
                            ctx.notify_drain(id);
                        }
                        b"ping" => ctx.notify_drain(id),
                        other => panic!("unexpected line {other:?}"),
                    }
                    n += nl + 1;
                }
                n
            }
        };
        self.c.consumed.fetch_add(consumed as u64, Relaxed);
        self.c.in_callback.store(false, Relaxed);
        consumed
    }

    fn on_drain(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut ()) {
        if self.c.in_callback.load(Relaxed) {
            self.c.reentrant.fetch_add(1, Relaxed);
        }
        self.c.drains.fetch_add(1, Relaxed);
    }

    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut ()) {}

    fn on_close(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: (), why: CloseReason) {
        let _ = self.closes.send(why);
    }

    fn on_msg(&mut self, _: &mut Ctx<'_, Self>, _: ()) {}

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut ()) {
        ctx.abort(id);
    }
}

struct Started {
    engine: Engine<()>,
    c: Arc<Counters>,
    closes: mpsc::Receiver<CloseReason>,
}

fn start(cfg: EngineConfig, mode: Mode) -> Option<Started> {
    let c = Arc::new(Counters::default());
    let (tx, closes) = mpsc::channel();
    let pause_bytes = cfg.read_pause_bytes;
    let cw = Arc::clone(&c);
    let started = Engine::start(cfg, move |_| Flow {
        mode,
        pause_bytes,
        c: Arc::clone(&cw),
        closes: tx.clone(),
    });
    match started {
        Ok(engine) => Some(Started { engine, c, closes }),
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

fn one_worker() -> EngineConfig {
    let mut cfg = base_config();
    cfg.workers = 1;
    cfg
}

/// Wait until `v()` stops changing for `quiet_ms` (bounded by 10 s); returns the value.
fn settle(quiet_ms: u64, v: impl Fn() -> u64) -> u64 {
    let mut last = v();
    let mut still = 0;
    for _ in 0..(10_000 / 10) {
        std::thread::sleep(Duration::from_millis(10));
        let now = v();
        if now == last {
            still += 10;
            if still >= quiet_ms {
                return now;
            }
        } else {
            still = 0;
            last = now;
        }
    }
    panic!("never settled (last {last})");
}

#[test]
fn reading_pauses_while_the_peer_does_not_read_and_resumes_when_it_does() {
    let mut cfg = one_worker();
    cfg.read_pause_bytes = 64 * 1024;
    cfg.send_queue_bytes_max = 1024 * 1024;
    pause_and_resume(cfg);
}

/// With 64-byte provided buffers, one write of requests arrives as many recv completions in
/// one batch: those after the pausing `on_data` must be held (not handled, not lost).
#[test]
fn bytes_received_after_a_pause_are_held_and_handed_over_on_resume() {
    let mut cfg = one_worker();
    cfg.read_pause_bytes = 64 * 1024;
    cfg.send_queue_bytes_max = 1024 * 1024;
    cfg.buf_bytes = 64;
    cfg.buf_ring_entries = 256;
    let held = pause_and_resume(cfg);
    println!("bytes held while paused: {held}");
    assert!(
        held > 0,
        "nothing arrived after a pause: the hold path was not exercised"
    );
}

/// Returns `read_held_bytes_total`.
fn pause_and_resume(cfg: EngineConfig) -> u64 {
    let reply_bytes = 4096;
    let Some(s) = start(cfg, Mode::Reply { reply_bytes }) else {
        return 1;
    };
    let mut client = connect(s.engine.local_addr().unwrap());
    let c = &s.c;
    // Pipelined one-byte requests, never read: the replies fill the kernel's socket buffers,
    // then the engine's queue, then reading pauses.
    let first = 4000;
    client.write_all(&vec![b'q'; first]).unwrap();
    let calls = settle(300, || c.on_data_calls.load(Relaxed));
    let consumed = c.consumed.load(Relaxed);
    let h = s.engine.handle();
    let paused = EngineStats::get(&h.stats().read_paused_total);
    println!(
        "client not reading: on_data calls {calls}, requests consumed {consumed} of {first}, \
         read pauses {paused}, queued max {} B",
        c.queued_bytes_max.load(Relaxed)
    );
    assert!(paused >= 1, "reading never paused");
    assert!(
        consumed < first as u64,
        "everything was answered: no backpressure"
    );
    // More requests while paused: they stay in the kernel's socket buffer, no on_data.
    let second = 1000;
    client.write_all(&vec![b'q'; second]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.on_data_calls.load(Relaxed),
        calls,
        "on_data ran while reading was paused"
    );
    // Read every reply: reading resumes as the queue drains, until all requests are answered.
    let total = (first + second) * reply_bytes;
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < total {
        let n = client.read(&mut buf).expect("read replies");
        assert!(n > 0, "EOF after {got} of {total} bytes");
        got += n;
    }
    assert_eq!(got, total);
    assert_eq!(c.consumed.load(Relaxed), (first + second) as u64);
    let queued_max = c.queued_bytes_max.load(Relaxed);
    println!(
        "after reading {got} B: on_data calls {}, read pauses {}, queued max {queued_max} B",
        c.on_data_calls.load(Relaxed),
        EngineStats::get(&h.stats().read_paused_total)
    );
    assert!(queued_max <= 1024 * 1024, "queued {queued_max} B");
    assert_eq!(c.sends_refused.load(Relaxed), 0);
    assert_eq!(EngineStats::get(&h.stats().closed_queue_overflow_total), 0);
    assert_eq!(EngineStats::get(&h.stats().connections_open), 1);
    let held = EngineStats::get(&h.stats().read_held_bytes_total);
    h.shutdown();
    s.engine.wait().unwrap();
    held
}

#[test]
fn a_send_past_the_bound_aborts_with_queue_overflow() {
    let mut cfg = one_worker();
    cfg.send_queue_bytes_max = 1024 * 1024;
    let mode = Mode::Flood {
        chunk: 64 * 1024,
        count: 64,
    };
    let Some(s) = start(cfg, mode) else {
        return;
    };
    let mut client = connect(s.engine.local_addr().unwrap());
    client.write_all(b"x").unwrap();
    let why = s.closes.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(why, CloseReason::QueueOverflow);
    let c = &s.c;
    assert_eq!(c.sends_refused.load(Relaxed), 1, "the 17th send is refused");
    assert_eq!(c.queued_bytes_max.load(Relaxed), 1024 * 1024);
    let h = s.engine.handle();
    assert_eq!(EngineStats::get(&h.stats().closed_queue_overflow_total), 1);
    // Aborted: the queue was dropped, the peer sees the end.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.len() <= 1024 * 1024, "{} B arrived", rest.len());
    h.shutdown();
    s.engine.wait().unwrap();
}

#[test]
fn notify_drain_fires_once_after_the_peer_reads() {
    let mut cfg = one_worker();
    cfg.read_pause_bytes = 64 * 1024;
    // Far more than loopback socket buffers absorb (about 4 MB here), so the queue stays up
    // until the client reads.
    let total = 32 * 1024 * 1024;
    let Some(s) = start(cfg, Mode::Drain { total }) else {
        return;
    };
    let mut client: TcpStream = connect(s.engine.local_addr().unwrap());
    let c = &s.c;
    client.write_all(b"big\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.drains.load(Relaxed), 0, "on_drain before the peer read");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < total {
        let n = client.read(&mut buf).expect("read");
        assert!(n > 0, "EOF");
        got += n;
    }
    assert!(wait_until(2_000, || c.drains.load(Relaxed) >= 1));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.drains.load(Relaxed), 1, "two requests, one call");
    // Already drained when asked: the call comes after the callback, not inside it.
    client.write_all(b"ping\n").unwrap();
    assert!(wait_until(2_000, || c.drains.load(Relaxed) >= 2));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.drains.load(Relaxed), 2);
    assert_eq!(c.reentrant.load(Relaxed), 0, "on_drain ran inside on_data");
    let h = s.engine.handle();
    h.shutdown();
    s.engine.wait().unwrap();
}
