//! Decode + unmask + UTF-8 validation of one masked client text frame, uringcast's sans-IO
//! decoder against tungstenite and fastwebsockets, on identical bytes.
//!
//! Every contestant starts from the same place: the frame's bytes arriving from "the socket".
//! For uringcast that is one copy into the receive buffer (what recv does) and then `decode`;
//! tungstenite (`WebSocket::read`) and fastwebsockets (`WebSocket::read_frame`, polled once with
//! a no-op waker) read the same bytes from an in-memory stream that replays the frame forever,
//! which copies them into their own buffers. Each returns a validated, unmasked text payload.
//! `ws_unmask` isolates the masking loop (ours vs `fastwebsockets::unmask`; tungstenite's is
//! not public).
//!
//! Run: `cargo bench -p uringcast-bench --bench ws_decode -- --warm-up-time 1 --measurement-time 2`
//!
//! On a loaded machine criterion's runs (one contestant after another) drift apart by 2x. With
//! `WS_DECODE_INTERLEAVED=1` the bench instead rotates the three contestants in short timed
//! batches, so they share the same load, and prints the fastest and median batch of each:
//! `WS_DECODE_INTERLEAVED=1 cargo bench -p uringcast-bench --bench ws_decode`

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use uringcast::proto::ws::{apply_mask, encode_frame, Decoder, Event, OpCode, WsLimits};
use uringcast::proto::Role;

const SIZES: [usize; 4] = [16, 1024, 64 * 1024, 1024 * 1024];
const KEY: [u8; 4] = [0x1a, 0x2b, 0x3c, 0x4d];

/// Mostly ASCII with a two-byte character every 64 bytes, exactly `len` bytes, valid UTF-8.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if out.len() % 64 == 62 && len - out.len() >= 2 {
            out.extend_from_slice("é".as_bytes());
        } else {
            out.push(b'a' + (out.len() % 26) as u8);
        }
    }
    assert!(std::str::from_utf8(&out).is_ok());
    out
}

fn masked_frame(len: usize) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame(&mut frame, true, OpCode::Text, &text(len), Some(KEY));
    frame
}

/// An in-memory socket that replays one frame forever and swallows writes. Each read stops at
/// the frame's end, as one recv per frame would.
struct Replay {
    frame: Vec<u8>,
    at: usize,
}

impl Replay {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.frame.len() - self.at);
        buf[..n].copy_from_slice(&self.frame[self.at..self.at + n]);
        self.at = (self.at + n) % self.frame.len();
        n
    }
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Poll a future that never waits (its stream is always ready) to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("in-memory stream never blocks"),
    }
}

/// One contestant: decode the next copy of the frame, return the text payload's length.
type Contestant = Box<dyn FnMut() -> usize>;

fn uringcast(frame: &[u8]) -> Contestant {
    let limits = WsLimits {
        message_bytes_max: 2 << 20,
    };
    let mut dec = Decoder::new(Role::Server, limits);
    let frame = frame.to_vec();
    let mut recv = vec![0u8; frame.len()];
    Box::new(move || {
        // What recv does: the bytes land in the receive buffer.
        recv.copy_from_slice(&frame);
        let p = dec.decode(&mut recv).expect("valid frame");
        match p.event {
            Some(Event::Data {
                text: true,
                payload,
                fin: true,
            }) => payload.len(),
            other => panic!("unexpected {other:?}"),
        }
    })
}

fn tungstenite(frame: &[u8]) -> Contestant {
    let replay = Replay {
        frame: frame.to_vec(),
        at: 0,
    };
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(replay, tungstenite::protocol::Role::Server, None);
    Box::new(move || match ws.read().expect("valid frame") {
        tungstenite::Message::Text(s) => s.len(),
        other => panic!("unexpected {other:?}"),
    })
}

fn fastwebsockets(frame: &[u8]) -> Contestant {
    let replay = Replay {
        frame: frame.to_vec(),
        at: 0,
    };
    let mut ws = fastwebsockets::WebSocket::after_handshake(replay, fastwebsockets::Role::Server);
    ws.set_max_message_size(4 << 20);
    Box::new(move || {
        let f = ready(ws.read_frame()).expect("valid frame");
        assert!(f.opcode == fastwebsockets::OpCode::Text && f.fin);
        f.payload.len()
    })
}

/// Builds a contestant for one frame.
type Make = fn(&[u8]) -> Contestant;

const CONTESTANTS: [(&str, Make); 3] = [
    ("uringcast", uringcast),
    ("tungstenite", tungstenite),
    ("fastwebsockets", fastwebsockets),
];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode");
    for len in SIZES {
        let frame = masked_frame(len);
        group.throughput(Throughput::Bytes(len as u64));
        for (name, make) in CONTESTANTS {
            let mut run = make(&frame);
            assert_eq!(run(), len);
            group.bench_function(BenchmarkId::new(name, len), |b| b.iter(|| black_box(run())));
        }
    }
    group.finish();
}

/// Nanoseconds as a short human string.
fn show(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Rotate the contestants in batches of about 100 µs each for `rounds` rounds; print each one's
/// fastest and median batch, per frame, and the fastest batch's ratio to ours.
fn interleaved() {
    let rounds = 400;
    println!("| payload | contestant | min per frame | median per frame | min vs uringcast |");
    println!("|---|---|---|---|---|");
    for len in SIZES {
        let frame = masked_frame(len);
        let mut runs: Vec<Contestant> = CONTESTANTS.iter().map(|(_, make)| make(&frame)).collect();
        // Batch size from one warm-up pass of ours, so every contestant's batch is the same
        // number of frames.
        let t = Instant::now();
        for _ in 0..100 {
            black_box(runs[0]());
        }
        let per = t.elapsed() / 100;
        let batch = (Duration::from_micros(100).as_nanos() / per.as_nanos().max(1)).max(1) as u32;
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); runs.len()];
        for _ in 0..rounds {
            for (run, times) in runs.iter_mut().zip(&mut times) {
                let t = Instant::now();
                for _ in 0..batch {
                    black_box(run());
                }
                times.push(t.elapsed().as_nanos() as f64 / f64::from(batch));
            }
        }
        for times in &mut times {
            times.sort_unstable_by(f64::total_cmp);
        }
        let ours = times[0][0];
        for ((name, _), times) in CONTESTANTS.iter().zip(&times) {
            let (min, median) = (times[0], times[times.len() / 2]);
            let ratio = min / ours;
            println!(
                "| {len} B | {name} | {} | {} | {ratio:.2}x |",
                show(min),
                show(median)
            );
        }
    }
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_unmask");
    for len in SIZES {
        let mut buf = text(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("uringcast", len), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 0))
        });
        group.bench_function(BenchmarkId::new("fastwebsockets", len), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), KEY))
        });
    }
    group.finish();
}

criterion_group!(benches, decode, unmask);
fn main() {
    if std::env::var_os("WS_DECODE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
