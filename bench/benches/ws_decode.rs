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

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode");
    for len in SIZES {
        let frame = masked_frame(len);
        group.throughput(Throughput::Bytes(len as u64));

        group.bench_with_input(BenchmarkId::new("uringcast", len), &frame, |b, frame| {
            let limits = WsLimits {
                message_bytes_max: 2 << 20,
            };
            let mut dec = Decoder::new(Role::Server, limits);
            let mut recv = vec![0u8; frame.len()];
            b.iter(|| {
                recv.copy_from_slice(frame);
                let p = dec.decode(&mut recv).expect("valid frame");
                match p.event {
                    Some(Event::Data {
                        text: true,
                        payload,
                        fin: true,
                    }) => black_box(payload.len()),
                    other => panic!("unexpected {other:?}"),
                }
            });
        });

        group.bench_with_input(BenchmarkId::new("tungstenite", len), &frame, |b, frame| {
            let replay = Replay {
                frame: frame.clone(),
                at: 0,
            };
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                replay,
                tungstenite::protocol::Role::Server,
                None,
            );
            b.iter(|| match ws.read().expect("valid frame") {
                tungstenite::Message::Text(s) => black_box(s.len()),
                other => panic!("unexpected {other:?}"),
            });
        });

        group.bench_with_input(
            BenchmarkId::new("fastwebsockets", len),
            &frame,
            |b, frame| {
                let replay = Replay {
                    frame: frame.clone(),
                    at: 0,
                };
                let mut ws = fastwebsockets::WebSocket::after_handshake(
                    replay,
                    fastwebsockets::Role::Server,
                );
                ws.set_max_message_size(4 << 20);
                b.iter(|| {
                    let f = ready(ws.read_frame()).expect("valid frame");
                    assert!(f.opcode == fastwebsockets::OpCode::Text && f.fin);
                    black_box(f.payload.len())
                });
            },
        );
    }
    group.finish();
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
criterion_main!(benches);
