//! Client role: `Ctx::connect` from an engine with no listener (the load generator's shape) to
//! an echo engine, with and without a source address; a refused connect reports its errno.

mod engine_common;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use engine_common::*;
use uringcast::engine::{CloseReason, ConnId, Ctx, Engine, EngineConfig, Handler, Origin};

/// Connects `count` times to `target` on start (via a message), sends `ping\n` on open, and
/// reports each echo, close and failure.
struct Client {
    report: mpsc::Sender<String>,
}

enum Cmd {
    Connect {
        target: SocketAddr,
        src: Option<IpAddr>,
        count: usize,
    },
}

impl Handler for Client {
    type Conn = Vec<u8>;
    type Msg = Cmd;

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, origin: Origin) -> Vec<u8> {
        assert_eq!(origin, Origin::Connected);
        assert!(ctx.send(id, Bytes::from_static(b"ping\n")));
        Vec::new()
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        got: &mut Vec<u8>,
        data: &mut [u8],
    ) -> usize {
        got.extend_from_slice(data);
        if got.ends_with(b"\n") {
            let _ = self
                .report
                .send(format!("echo {}", String::from_utf8_lossy(got).trim()));
            ctx.close(id);
        }
        data.len()
    }

    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut Vec<u8>) {}

    fn on_close(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: Vec<u8>, why: CloseReason) {
        let _ = self.report.send(format!("close {why:?}"));
    }

    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, msg: Cmd) {
        let Cmd::Connect { target, src, count } = msg;
        for _ in 0..count {
            if let Err(e) = ctx.connect(target, src) {
                let _ = self.report.send(format!("error {e}"));
            }
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _: &mut Vec<u8>) {
        ctx.close(id);
    }

    fn on_connect_failed(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, errno: i32) {
        let _ = self.report.send(format!("failed {errno}"));
    }
}

fn client_engine() -> Option<(Engine<Cmd>, mpsc::Receiver<String>)> {
    let (tx, rx) = mpsc::channel();
    let cfg = EngineConfig {
        listen: None,
        workers: 1,
        rings_per_worker: 2,
        files_per_ring: 256,
        handle_signals: false,
        sq_entries: 256,
        buf_ring_entries: 16,
        ..EngineConfig::default()
    };
    match Engine::start(cfg, move |_| Client { report: tx.clone() }) {
        Ok(e) => Some((e, rx)),
        Err(e) => {
            eprintln!("SKIPPED: client engine did not start: {e}");
            None
        }
    }
}

fn collect(rx: &mpsc::Receiver<String>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("client report")
        })
        .collect()
}

#[test]
fn connect_round_trips_through_an_echo_engine() {
    let Some((server, _events)) = start(base_config(), false) else {
        return;
    };
    let Some((client, rx)) = client_engine() else {
        return;
    };
    let target = server.local_addr().unwrap();
    let count = 300; // more than one client ring's accept limit (256 - 32 - 16 = 208)
    client.handle().post(
        0,
        Cmd::Connect {
            target,
            src: None,
            count,
        },
    );
    let got = collect(&rx, 2 * count);
    assert_eq!(
        got.iter().filter(|l| *l == "echo ping").count(),
        count,
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|l| *l == "close Closed").count(), count);
    // With a source address (IORING_OP_BIND).
    let src: IpAddr = "127.0.0.2".parse().unwrap();
    client.handle().post(
        0,
        Cmd::Connect {
            target,
            src: Some(src),
            count: 3,
        },
    );
    let got = collect(&rx, 6);
    assert_eq!(
        got.iter().filter(|l| *l == "echo ping").count(),
        3,
        "{got:?}"
    );
    client.handle().shutdown();
    client.wait().unwrap();
    server.handle().shutdown();
    server.wait().unwrap();
}

#[test]
fn refused_connect_reports_econnrefused() {
    let Some((client, rx)) = client_engine() else {
        return;
    };
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    client.handle().post(
        0,
        Cmd::Connect {
            target,
            src: None,
            count: 2,
        },
    );
    let got = collect(&rx, 2);
    assert_eq!(got, vec![format!("failed {}", libc::ECONNREFUSED); 2]);
    let h = client.handle();
    assert_eq!(
        uringcast::engine::EngineStats::get(&h.stats().connect_failed_total),
        2
    );
    h.shutdown();
    client.wait().unwrap();
}
