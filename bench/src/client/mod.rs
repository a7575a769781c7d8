//! Per-connection client state machines, sans-IO, on uringcast's own `proto` codecs in the
//! client role: an SSE subscriber, a WebSocket client (subscriber, echo, publisher) and a
//! keep-alive HTTP publisher.
//!
//! No socket, no clock, no thread: bytes come in through `on_data` with the time (`Io::now_ns`)
//! as an argument, bytes to send are appended to `Io::out`, and measurements go into
//! `Io::stats`. The transport (the engine handler in `driver`) moves the bytes.
//!
//! Call order for one connection:
//! ```text
//!   new(..) -> request(io)            the handshake request goes into io.out
//!   on_data(io, data) -> Outcome*     drop `consumed` bytes; `ready` once the handshake is
//!                                     done; `fatal` = close the connection, counted as that kind
//!   start_echo / publish_* (commands from the scenario)
//!   finish(..)                        fold per-connection trackers into io.stats
//! ```

pub mod publish;
pub mod sse;
pub mod ws;

use crate::envelope::Template;
use crate::seq::SeqTracker;
use crate::stats::{ErrorKind, Stats};
use uringcast::proto::http1::HttpLimits;

/// Read-only run settings every machine of a worker shares.
#[derive(Debug, Clone)]
pub struct Env {
    pub template: Template,
    /// Topic names, indexed by a machine's topic number.
    pub topics: Vec<String>,
    /// Extra request headers (`--header`), already split.
    pub headers: Vec<(String, String)>,
    pub http_limits: HttpLimits,
    /// Largest WebSocket message accepted from a server.
    pub ws_message_bytes_max: u64,
    /// Largest SSE line / event accepted from a server.
    pub sse_event_bytes_max: usize,
    pub echo_size: usize,
    pub echo_binary: bool,
    /// WebSocket subscribe message template (`{topic}`), empty = topic is in the URL.
    pub ws_subscribe_msg: String,
    /// With `ws_subscribe_msg`: a subscriber is ready once a message containing this arrives
    /// (empty = ready at the handshake).
    pub ws_subscribed_marker: String,
}

/// Per-worker mutable scratch the machines write into.
#[derive(Debug, Default)]
pub struct Io {
    /// Harness clock at the time of this call (ns, see `stats::now_ns`).
    pub now_ns: u64,
    /// Bytes to send on the current connection; the transport drains it after each call.
    pub out: Vec<u8>,
    /// Scratch for building payloads before framing.
    pub scratch: Vec<u8>,
    pub stats: Stats,
    /// Echo clients send a new message for each reply only while this is set.
    pub echo_running: bool,
}

/// What one `on_data` call did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Bytes of `data` used; `0 <= consumed <= data.len()`.
    pub consumed: usize,
    /// The handshake completed in this call.
    pub ready: bool,
    /// Close the connection; this is why.
    pub fatal: Option<ErrorKind>,
}

/// The subscriber side shared by SSE and WebSocket: match a delivery's envelope against the
/// subscription and account for it.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    pub topic: u32,
    pub seq: SeqTracker,
    /// Harness time of the last byte received (heartbeat or delivery), ns.
    pub last_rx_ns: u64,
    /// WebSocket: the `id` of the last delivery, sent as `since` when resuming (SSE keeps its
    /// last event id in the parser). Empty before any.
    pub last_id: String,
}

impl Subscription {
    pub fn new(topic: u32) -> Subscription {
        Subscription {
            topic,
            ..Subscription::default()
        }
    }

    /// One delivered message (SSE event data or a WebSocket message). Latency is measured
    /// from the envelope's INTENDED send time, so a publisher that fell behind shows up in it.
    pub fn delivery(&mut self, env: &Env, io: &mut Io, payload: &[u8]) {
        let Some(e) = env.template.decode(payload) else {
            io.stats.errors.add(ErrorKind::NoEnvelope);
            return;
        };
        if !e.topic.is_empty()
            && env
                .topics
                .get(self.topic as usize)
                .is_some_and(|t| t.as_bytes() != e.topic)
        {
            io.stats.errors.add(ErrorKind::WrongTopic);
            return;
        }
        io.stats.deliveries += 1;
        if self.seq.observe(e.seq) != crate::seq::Seen::Duplicate {
            let now = io.now_ns;
            io.stats.record_latency(now, now.saturating_sub(e.ts_ns));
        }
    }

    /// Fold this subscription's sequence figures into `stats`, given the publisher's last
    /// sequence number on the topic.
    pub fn finish(&self, last_published: u64, stats: &mut Stats) {
        stats.missing += self.seq.missing(last_published);
        stats.duplicates += u64::from(self.seq.duplicates);
        stats.out_of_order += u64::from(self.seq.out_of_order);
        stats.ambiguous += u64::from(self.seq.ambiguous);
    }
}

/// A fresh random WebSocket masking key (RFC 6455 §5.3: unpredictable, new for every frame).
pub fn mask_key() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// Header pairs as the proto writers take them.
pub fn header_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// Split `Name: value` flags (validated by the CLI) into pairs.
pub fn split_headers(raw: &[String]) -> Vec<(String, String)> {
    raw.iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn env() -> Env {
        Env {
            template: Template::parse(crate::envelope::DEFAULT_TEMPLATE).unwrap(),
            topics: vec!["t0".into(), "t1".into()],
            headers: Vec::new(),
            http_limits: HttpLimits::default(),
            ws_message_bytes_max: 1 << 20,
            sse_event_bytes_max: 1 << 16,
            echo_size: 40,
            echo_binary: false,
            ws_subscribe_msg: String::new(),
            ws_subscribed_marker: String::new(),
        }
    }

    /// Feed `bytes` to a machine in chunks of `chunk`, the way the engine would: the
    /// unconsumed rest is prepended to the next chunk. Returns (ready seen, first fatal).
    pub fn feed(
        mut step: impl FnMut(&mut Io, &mut [u8]) -> Outcome,
        io: &mut Io,
        bytes: &[u8],
        chunk: usize,
    ) -> (bool, Option<ErrorKind>) {
        let mut leftover: Vec<u8> = Vec::new();
        let mut ready = false;
        for piece in bytes.chunks(chunk.max(1)) {
            leftover.extend_from_slice(piece);
            let o = step(io, &mut leftover);
            assert!(o.consumed <= leftover.len());
            leftover.drain(..o.consumed);
            ready |= o.ready;
            if o.fatal.is_some() {
                return (ready, o.fatal);
            }
        }
        (ready, None)
    }
}
