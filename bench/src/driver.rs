//! The transport: uringcast's io_uring engine in the client role, driving the sans-IO client
//! machines of `client`. One `LoadDriver` (the engine `Handler`) per engine worker thread: it
//! drives that thread's share of the connections and load.
//!
//! The orchestrator (`run`) talks to workers only through `Cmd` messages and reads the shared
//! `Live` counters; each worker owns its connections (a slab parallel to the engine's) and its
//! `Stats`, so nothing on the per-connection path is shared. Sockets are direct descriptors in
//! the engine's rings, so a worker holds far more connections than RLIMIT_NOFILE.
//!
//! Per connection: `Cmd::Connect` queues global indexes; at most `connecting_max` handshakes
//! per worker are in flight (a SYN flood would only measure the listen backlog) → `ctx.connect`
//! → `on_open` sends the request and arms the handshake deadline → `on_data` feeds the
//! machine; `ready` records connect latency → scenario behaviour (hold watchdog, echo, close
//! after `connect_hold_ms`, publish pump) → `Cmd::Finish` folds per-connection figures into
//! the worker's `Stats` and sends them back.
//!
//! Reconnect storm (`Cmd::Storm`, see `storm`): every ready subscriber is aborted; its
//! `on_close` queues a reconnect carrying the subscriber's machine (sequence tracker, last
//! event id); `launch` starts queued reconnects before anything else, under the same
//! `connecting_max`.

use crate::client::publish::{build_body, HttpPub, Schedule};
use crate::client::sse::SseSub;
use crate::client::ws::{EchoState, Mode, WsClient};
use crate::client::{Env, Io, Outcome, Subscription};
use crate::plan::Plan;
use crate::stats::{errno_kind, now_ns, ErrorKind, Live, Stats};
use crate::storm::Phase as StormPhase;
use crate::target::{Proto, Target};
use crate::tls::{self, TlsConn};
use bytes::Bytes;
use slab::Slab;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use uringcast::engine::{CloseReason, ConnId, Ctx, Handler, Origin};

/// Which scenario the connections serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hold,
    Fanout,
    Echo,
    Connect,
}

/// Publisher settings (fanout only).
#[derive(Debug, Clone)]
pub struct PublishCfg {
    pub target: Target,
    /// HTTP body or WebSocket message template (`{msg}`, `{topic}`).
    pub body_template: String,
    pub rate_per_topic: f64,
    pub per_topic: u64,
    pub publishers: u32,
    pub size: usize,
    pub skip_seq: Option<u64>,
    /// Source address for publisher connections.
    pub src: Option<std::net::IpAddr>,
}

/// Everything workers share, read-only except the atomics.
#[derive(Debug)]
pub struct RunCfg {
    pub kind: Kind,
    pub env: Env,
    pub targets: Vec<Target>,
    pub plan: Plan,
    pub topics: u32,
    pub handshake_timeout_ms: u64,
    /// Hold: a connection silent this long is stale.
    pub heartbeat_max_ms: Option<u64>,
    /// Connect: keep each connection this long after its handshake.
    pub connect_hold_ms: u64,
    pub connecting_max: u32,
    pub echo_inflight: u32,
    pub publish: Option<PublishCfg>,
    pub live: Arc<Live>,
    /// Highest sequence number handed to the wire per topic (for runs cut short).
    pub last_sent: Vec<AtomicU64>,
    /// The client config for TLS targets (`https://`, `wss://`, `--tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `--tls-server-name`: sent and verified instead of each URL's host.
    pub tls_server_name: Option<String>,
    /// `fanout --follow`: a subscriber whose connection ends resumes on the next target.
    pub follow: bool,
}

/// `--follow`: how many targets in a row a subscriber tries before it gives up (it counts
/// as dropped then, and what it misses as missing).
const FOLLOW_HOPS_MAX: u32 = 8;

/// What the orchestrator tells a worker.
pub enum Cmd {
    /// Open connections with these global indexes (queued; paced by `connecting_max`).
    Connect(Range<u64>),
    /// Open these publisher connections.
    OpenPublishers(Vec<u32>),
    /// Start the publish schedules at `t0_ns` (harness clock).
    StartPublish {
        t0_ns: u64,
    },
    StartEcho,
    StopEcho,
    /// Reconnect storm: drop every ready subscriber now and reconnect it at once, resuming.
    Storm,
    /// Report this worker's thread CPU time and messages so far (the orchestrator marks the
    /// start and end of a measured phase with it).
    Mark(mpsc::Sender<Mark>),
    /// Fold figures (missing against `last_published[topic]`) and send them back.
    Finish {
        last_published: Arc<Vec<u64>>,
        reply: mpsc::Sender<Stats>,
    },
}

/// One worker's answer to `Cmd::Mark`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mark {
    pub worker: usize,
    /// CPU seconds this worker's thread has used (user + system, its ring's completions
    /// included).
    pub cpu_s: f64,
    /// Deliveries plus echoes counted so far.
    pub messages: u64,
}

enum Role {
    Sse(SseSub),
    Ws(WsClient),
    PubHttp {
        m: HttpPub,
        sched: Option<Schedule>,
        done: bool,
    },
    PubWs {
        m: WsClient,
        sched: Option<Schedule>,
        done: bool,
    },
}

impl Role {
    /// A subscriber about to reconnect keeps what it received (and resumes from it); a
    /// publisher is unchanged.
    fn resumed(self) -> Role {
        match self {
            Role::Sse(s) => Role::Sse(SseSub::resume(s)),
            Role::Ws(w) => Role::Ws(WsClient::resume(w)),
            other => other,
        }
    }
}

struct Client {
    id: ConnId,
    /// Global index (subscribers) or publisher number.
    index: u64,
    started_ns: u64,
    ready: bool,
    stale: bool,
    /// We closed it on purpose (not a drop), or its failure was already counted.
    settled: bool,
    role: Role,
    /// Where this subscriber is in a reconnect storm.
    storm: StormPhase,
    /// The TLS session, for a TLS target.
    tls: Option<Box<TlsConn>>,
    /// `--follow`: times in a row this subscriber moved to another target (counted afresh
    /// once a handshake there succeeds).
    hops: u32,
}

/// A worker's reconnect-storm state (see `storm`).
#[derive(Default)]
struct StormState {
    /// Subscribers dropped by the storm, waiting for `launch` to reconnect them.
    queue: VecDeque<(u64, Role)>,
    /// Per topic: the highest sequence number handed to the wire when this worker dropped
    /// its subscribers; a higher one received after the reconnect proves the resume.
    threshold: Vec<u64>,
    /// Harness clock when this worker dropped its subscribers.
    drop_ns: u64,
}

/// The engine handler of one engine worker thread: its connections, their client machines
/// and its `Stats`. Not called `Worker`, which names the engine's thread.
pub struct LoadDriver {
    cfg: Arc<RunCfg>,
    io: Io,
    conns: Slab<Client>,
    /// Engine slot → slab key (`u32::MAX` = none), to find a connect that failed before open.
    by_slot: Vec<u32>,
    pending: VecDeque<Range<u64>>,
    connecting: u32,
    /// Subscriptions of connections that closed early, kept for the final sequence figures.
    closed_subs: Vec<Subscription>,
    finished: bool,
    /// This worker's index: its slot in `Live`.
    worker: usize,
    /// (messages, deliveries, errors) last stored in `Live`.
    published: (u64, u64, u64),
    storm: StormState,
    /// `--follow`: subscribers whose connection ended, waiting to resume on the next target
    /// (global index, machine, hops so far).
    follow: VecDeque<(u64, Role, u32)>,
}

impl LoadDriver {
    pub fn new(cfg: Arc<RunCfg>, worker: usize) -> LoadDriver {
        LoadDriver {
            cfg,
            io: Io::default(),
            conns: Slab::new(),
            by_slot: Vec::new(),
            pending: VecDeque::new(),
            connecting: 0,
            closed_subs: Vec::new(),
            finished: false,
            worker,
            published: (0, 0, 0),
            storm: StormState::default(),
            follow: VecDeque::new(),
        }
    }

    fn topic_of(&self, index: u64) -> u32 {
        (index % u64::from(self.cfg.topics.max(1))) as u32
    }

    /// Start queued connects while fewer than `connecting_max` handshakes are in flight.
    fn launch(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.launch_reconnects(ctx);
        while self.connecting < self.cfg.connecting_max && !self.finished {
            let Some(r) = self.pending.front_mut() else {
                return;
            };
            let i = r.start;
            r.start += 1;
            if r.is_empty() {
                self.pending.pop_front();
            }
            let (t, src) = self.cfg.plan.assign(i);
            let target = &self.cfg.targets[t];
            let topic = self.topic_of(i);
            let role = match (self.cfg.kind, target.proto) {
                (Kind::Echo, _) => Role::Ws(WsClient::new(Mode::Echo(EchoState::new(
                    self.cfg.echo_inflight,
                )))),
                (_, Proto::Sse) => Role::Sse(SseSub::new(topic)),
                (_, Proto::Ws) => Role::Ws(WsClient::new(Mode::Sub(Subscription::new(topic)))),
            };
            self.io.stats.connects_started += 1;
            self.start(ctx, t, src, i, role);
        }
    }

    /// Connect to target `t` (`usize::MAX`: the publish target).
    fn start(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        t: usize,
        src: Option<std::net::IpAddr>,
        index: u64,
        role: Role,
    ) -> Option<usize> {
        let is_pub = matches!(role, Role::PubHttp { .. } | Role::PubWs { .. });
        let target = match self.cfg.targets.get(t) {
            Some(target) => target,
            None => &self.cfg.publish.as_ref().expect("a publish target").target,
        };
        let addr = target.addr;
        let session = match (&self.cfg.tls, target.tls) {
            (Some(config), true) => {
                let name = self.cfg.tls_server_name.as_deref().unwrap_or(&target.host);
                // The name was checked at start-up, so this does not fail in practice.
                match tls::server_name(name).and_then(|n| TlsConn::new(Arc::clone(config), n)) {
                    Ok(s) => Some(Box::new(s)),
                    Err(_) => {
                        self.io.stats.errors.add(ErrorKind::Tls);
                        return None;
                    }
                }
            }
            _ => None,
        };
        match ctx.connect(addr, src) {
            Ok(id) => {
                let key = self.conns.insert(Client {
                    id,
                    index,
                    started_ns: now_ns(),
                    ready: false,
                    stale: false,
                    settled: false,
                    role,
                    storm: StormPhase::Held,
                    tls: session,
                    hops: 0,
                });
                let slot = id.slot as usize;
                if self.by_slot.len() <= slot {
                    self.by_slot.resize(slot + 1, u32::MAX);
                }
                self.by_slot[slot] = key as u32;
                self.connecting += 1;
                Some(key)
            }
            Err(e) => {
                match e.raw_os_error() {
                    Some(errno) => self.io.stats.errors.add_errno(errno),
                    None => self.io.stats.errors.add(ErrorKind::ConnectError),
                }
                if is_pub {
                    Live::add(&self.cfg.live.pub_done, 1);
                } else {
                    Live::add(&self.cfg.live.failed_total, 1);
                }
                None
            }
        }
    }

    /// Send what the machine wrote (encrypted on a TLS connection, with any handshake
    /// records due), publish live counters.
    fn flush(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId) {
        let session = self
            .by_slot
            .get(id.slot as usize)
            .and_then(|&k| self.conns.get_mut(k as usize))
            .filter(|c| c.id == id)
            .and_then(|c| c.tls.as_deref_mut());
        if let Some(session) = session {
            let mut wire = Vec::new();
            session.write(&self.io.out, &mut wire);
            self.io.out.clear();
            if !wire.is_empty() {
                ctx.send(id, Bytes::from(wire));
            }
        } else if !self.io.out.is_empty() {
            let out = std::mem::take(&mut self.io.out);
            ctx.send(id, Bytes::from(out));
        }
        self.flush_counters();
    }

    /// The handshake of `key` completed.
    fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>, key: usize) {
        let now = self.io.now_ns;
        let cfg = Arc::clone(&self.cfg);
        let c = &mut self.conns[key];
        c.ready = true;
        let id = c.id;
        self.connecting = self.connecting.saturating_sub(1);
        ctx.cancel_timer(id);
        match &mut c.role {
            Role::PubHttp { .. } | Role::PubWs { .. } => {
                Live::add(&cfg.live.pub_ready, 1);
                self.pump(ctx, key);
                return;
            }
            Role::Ws(w) if self.io.echo_running => w.start_echo(&cfg.env, &mut self.io),
            _ => {}
        }
        if c.storm == StormPhase::Reconnecting {
            // A storm reconnect: counted apart from the ramp's handshakes.
            c.storm = StormPhase::Resuming;
            let st = &mut self.io.stats.storm;
            st.reconnected += 1;
            st.last_reconnect_ns = st.last_reconnect_ns.max(now);
            st.reconnect_latency
                .record_ns(now.saturating_sub(self.storm.drop_ns));
            Live::add(&cfg.live.open, 1);
            Live::add(&cfg.live.reconnected, 1);
            // The replay may have come with the head, in the same read.
            self.check_resumed(key);
            self.flush(ctx, id);
            self.launch(ctx);
            return;
        }
        self.io.stats.connects_ok += 1;
        self.io
            .stats
            .connect_latency
            .record_ns(now.saturating_sub(c.started_ns));
        Live::add(&cfg.live.open, 1);
        Live::add(&cfg.live.opened_total, 1);
        match cfg.kind {
            Kind::Hold => {
                if let Some(ms) = cfg.heartbeat_max_ms {
                    ctx.set_timer(id, ctx.now_ms() + ms);
                }
            }
            Kind::Connect => {
                if cfg.connect_hold_ms == 0 {
                    self.say_goodbye(ctx, key);
                } else {
                    ctx.set_timer(id, ctx.now_ms() + cfg.connect_hold_ms);
                }
            }
            _ => {}
        }
        self.flush(ctx, id);
        self.launch(ctx);
    }

    /// Close `key` on purpose (a WebSocket gets a close frame first).
    fn say_goodbye(&mut self, ctx: &mut Ctx<'_, Self>, key: usize) {
        let c = &mut self.conns[key];
        c.settled = true;
        let id = c.id;
        if let Role::Ws(w) = &mut c.role {
            w.goodbye(&mut self.io);
        }
        self.flush(ctx, id);
        ctx.close(id);
    }

    /// Publisher: send what is due, then arm the timer for the next message.
    fn pump(&mut self, ctx: &mut Ctx<'_, Self>, key: usize) {
        let cfg = Arc::clone(&self.cfg);
        let Some(p) = &cfg.publish else { return };
        let c = &mut self.conns[key];
        let id = c.id;
        let now = now_ns();
        self.io.now_ns = now;
        let next = match &mut c.role {
            Role::PubHttp { m, sched, done } => {
                let Some(s) = sched else { return };
                while m.idle() {
                    let Some(d) = s.pop_due(now) else { break };
                    cfg.last_sent[d.topic as usize].fetch_max(d.seq, Ordering::Relaxed);
                    if d.skip {
                        self.io.stats.skipped += 1;
                        continue;
                    }
                    {
                        let body = build_body(&cfg.env, &mut self.io, &p.body_template, d, p.size);
                        let topic = &cfg.env.topics[d.topic as usize];
                        let path = p.target.path(topic);
                        m.post(&cfg.env, &mut self.io, &p.target.authority, &path, &body);
                    }
                }
                let finished = s.done() && m.idle();
                if (finished || m.not_kept_alive()) && !*done {
                    *done = true;
                    Live::add(&cfg.live.pub_done, 1);
                    if !finished {
                        // One POST per connection would measure connection set-up, not
                        // publishing; say so and stop rather than stall until --max-time.
                        self.io.stats.errors.add(ErrorKind::PublishNoKeepAlive);
                        ctx.close(id);
                    }
                }
                if m.idle() {
                    s.next_due_ns()
                } else {
                    None
                }
            }
            Role::PubWs { m, sched, done } => {
                let Some(s) = sched else { return };
                // Bound what the engine queues for a server that cannot keep up.
                while ctx.queued_bytes(id) < 4 << 20 && self.io.out.len() < 1 << 20 {
                    let Some(d) = s.pop_due(now) else {
                        break;
                    };
                    cfg.last_sent[d.topic as usize].fetch_max(d.seq, Ordering::Relaxed);
                    if d.skip {
                        self.io.stats.skipped += 1;
                        continue;
                    }
                    let body = build_body(&cfg.env, &mut self.io, &p.body_template, d, p.size);
                    m.publish(&mut self.io, &body);
                    self.io.stats.published += 1;
                }
                if s.done() && !*done {
                    *done = true;
                    Live::add(&cfg.live.pub_done, 1);
                }
                s.next_due_ns()
            }
            _ => None,
        };
        self.flush(ctx, id);
        if let Some(due) = next {
            let wait_ms = due.saturating_sub(now_ns()).div_ceil(1_000_000);
            ctx.set_timer(id, ctx.now_ms() + wait_ms);
        }
    }

    fn finish(&mut self, last_published: &[u64], reply: &mpsc::Sender<Stats>) {
        self.finished = true;
        let mut stats = self.io.stats.clone();
        let last = |t: u32| last_published.get(t as usize).copied().unwrap_or(0);
        for (_, c) in self.conns.iter() {
            let sub = match &c.role {
                Role::Sse(s) => Some(&s.sub),
                Role::Ws(WsClient {
                    mode: Mode::Sub(s), ..
                }) => Some(s),
                _ => None,
            };
            if c.ready && !matches!(c.role, Role::PubHttp { .. } | Role::PubWs { .. }) {
                stats.held += 1;
            }
            if let (Some(s), true) = (sub, c.ready) {
                s.finish(last(s.topic), &mut stats);
            }
        }
        for s in &self.closed_subs {
            s.finish(last(s.topic), &mut stats);
        }
        // Dropped by a storm and never reconnected before the end: what they missed counts.
        for s in self.storm.queue.iter().filter_map(|(_, role)| sub_of(role)) {
            s.finish(last(s.topic), &mut stats);
        }
        let _ = reply.send(stats);
    }
    /// The client machine's share of `on_data`: `data` is plaintext.
    fn on_plain(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        key: usize,
        data: &mut [u8],
    ) -> usize {
        // Field borrows, not an `Arc` clone: a clone per receive is a read-modify-write on a
        // count every worker shares.
        let Some(c) = self.conns.get_mut(key) else {
            return data.len();
        };
        let cfg = &*self.cfg;
        // One clock read per receive completion: every delivery parsed from this buffer arrived
        // at once, so they share the time stamp.
        self.io.now_ns = now_ns();
        let was_ready = c.ready;
        let o: Outcome = match &mut c.role {
            Role::Sse(s) => s.on_data(&cfg.env, &mut self.io, data),
            Role::Ws(w) | Role::PubWs { m: w, .. } => w.on_data(&cfg.env, &mut self.io, data),
            Role::PubHttp { m, .. } => m.on_data(&cfg.env, &mut self.io, data),
        };
        let (scenario, heartbeat_max_ms) = (cfg.kind, cfg.heartbeat_max_ms);
        let is_pub = matches!(c.role, Role::PubHttp { .. } | Role::PubWs { .. });
        if let Some(kind) = o.fatal {
            self.io.stats.errors.add(kind);
            c.settled = true;
            self.flush(ctx, id);
            ctx.close(id);
            return data.len();
        }
        if was_ready && scenario == Kind::Hold {
            if let Some(ms) = heartbeat_max_ms {
                ctx.set_timer(id, ctx.now_ms() + ms);
            }
        }
        let resuming = c.storm == StormPhase::Resuming;
        self.flush(ctx, id);
        if resuming {
            self.check_resumed(key);
        }
        if o.ready && !was_ready {
            self.on_ready(ctx, key);
        } else if o.ready && is_pub {
            // An HTTP answer completed: the next request may go.
            self.pump(ctx, key);
        }
        o.consumed
    }

    /// `on_data` of a TLS connection: decrypt a read's worth at a time, hand the plaintext
    /// to the machine, keep what it does not consume yet.
    fn on_tls_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        key: usize,
        data: &[u8],
    ) -> usize {
        let mut used = 0;
        loop {
            let Some(session) = self.conns.get_mut(key).and_then(|c| c.tls.as_deref_mut()) else {
                return data.len();
            };
            let taken = match session.feed(&data[used..]) {
                Ok(n) => n,
                Err(_) => {
                    self.io.stats.errors.add(ErrorKind::Tls);
                    self.conns[key].settled = true;
                    self.flush_counters();
                    ctx.close(id);
                    return data.len();
                }
            };
            used += taken;
            let mut pending = std::mem::take(&mut session.pending);
            // Handshake records due (and nothing of the machine's yet).
            self.flush(ctx, id);
            if !pending.is_empty() {
                let n = self.on_plain(ctx, id, key, &mut pending).min(pending.len());
                pending.drain(..n);
            }
            if let Some(session) = self.conns.get_mut(key).and_then(|c| c.tls.as_deref_mut()) {
                session.pending = if pending.is_empty() {
                    Vec::new()
                } else {
                    pending
                };
            }
            if used == data.len() || taken == 0 {
                return used;
            }
        }
    }
}

impl Handler for LoadDriver {
    type Conn = u32;
    type Msg = Cmd;

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _origin: Origin) -> u32 {
        let key = self
            .by_slot
            .get(id.slot as usize)
            .copied()
            .unwrap_or(u32::MAX);
        let Some(c) = self.conns.get_mut(key as usize) else {
            // Not ours (cannot happen in the client role); close it.
            ctx.abort(id);
            return u32::MAX;
        };
        c.id = id;
        self.io.now_ns = now_ns();
        let cfg = &self.cfg;
        let (target, path) = match &c.role {
            Role::PubHttp { .. } | Role::PubWs { .. } => {
                let p = cfg
                    .publish
                    .as_ref()
                    .expect("publisher without publish config");
                let topic = &cfg.env.topics[c.index as usize % cfg.env.topics.len()];
                (&p.target, p.target.path(topic))
            }
            _ => {
                let (t, _) = cfg.plan.assign(c.index);
                let topic = &cfg.env.topics[self_topic(cfg, c.index) as usize];
                (&cfg.targets[t], cfg.targets[t].path(topic))
            }
        };
        match &mut c.role {
            Role::Sse(s) => s.request(&cfg.env, &mut self.io, &target.authority, &path),
            Role::Ws(w) | Role::PubWs { m: w, .. } => {
                w.request(&cfg.env, &mut self.io, &target.authority, &path)
            }
            Role::PubHttp { .. } => {}
        }
        let is_http_pub = matches!(c.role, Role::PubHttp { .. });
        ctx.set_timer(id, ctx.now_ms() + cfg.handshake_timeout_ms);
        self.flush(ctx, id);
        if is_http_pub {
            // Plain HTTP needs no handshake: ready as soon as TCP is.
            self.on_ready(ctx, key as usize);
        }
        key
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        key: &mut u32,
        data: &mut [u8],
    ) -> usize {
        let key = *key as usize;
        if self.conns.get(key).is_some_and(|c| c.tls.is_some()) {
            return self.on_tls_data(ctx, id, key, data);
        }
        self.on_plain(ctx, id, key, data)
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, key: &mut u32) {
        let key = *key as usize;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !c.ready {
            self.io.stats.errors.add(ErrorKind::ConnectTimeout);
            c.settled = true;
            ctx.abort(id);
            return;
        }
        match (&c.role, self.cfg.kind) {
            (Role::PubHttp { .. } | Role::PubWs { .. }, _) => self.pump(ctx, key),
            (_, Kind::Hold) => {
                if !c.stale {
                    c.stale = true;
                    self.io.stats.stale += 1;
                    self.io.stats.errors.add(ErrorKind::Stale);
                }
                if let Some(ms) = self.cfg.heartbeat_max_ms {
                    ctx.set_timer(id, ctx.now_ms() + ms);
                }
            }
            (_, Kind::Connect) => self.say_goodbye(ctx, key),
            _ => {}
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, key: u32, why: CloseReason) {
        if let Some(k) = self.by_slot.get_mut(id.slot as usize) {
            *k = u32::MAX;
        }
        if !self.conns.contains(key as usize) {
            return;
        }
        let c = self.conns.remove(key as usize);
        let kind = match why {
            CloseReason::PeerClosed => Some(ErrorKind::PeerClosed),
            CloseReason::Error(errno) => Some(errno_kind(errno)),
            CloseReason::LeftoverOverflow => Some(ErrorKind::InputTooLarge),
            CloseReason::FlushTimeout | CloseReason::QueueOverflow => Some(ErrorKind::EngineClosed),
            CloseReason::Closed | CloseReason::Shutdown => None,
        };
        let is_pub = matches!(c.role, Role::PubHttp { .. } | Role::PubWs { .. });
        if !c.ready {
            self.connecting = self.connecting.saturating_sub(1);
            if !c.settled {
                self.io
                    .stats
                    .errors
                    .add(kind.unwrap_or(ErrorKind::EngineClosed));
            }
            if !is_pub && c.storm == StormPhase::Held {
                Live::add(&self.cfg.live.failed_total, 1);
            }
        } else if !is_pub {
            Live::sub(&self.cfg.live.open, 1);
            // In the connect scenario and in a storm the harness closes connections itself.
            let on_purpose =
                c.settled && (self.cfg.kind == Kind::Connect || c.storm == StormPhase::Dropping);
            if !self.finished && !on_purpose {
                self.io.stats.drops += 1;
                if let (Some(k), false) = (kind, c.settled) {
                    self.io.stats.errors.add(k);
                }
            }
        }
        if c.storm == StormPhase::Dropping {
            // Reconnect it, same machine, as soon as `launch` allows.
            self.storm.queue.push_back((c.index, c.role));
            self.flush_counters();
            self.launch(ctx);
            return;
        }
        let is_sub = matches!(
            c.role,
            Role::Sse(_)
                | Role::Ws(WsClient {
                    mode: Mode::Sub(_),
                    ..
                })
        );
        let hops = if c.ready { 0 } else { c.hops };
        if self.cfg.follow
            && is_sub
            && !self.finished
            && (c.ready || c.hops > 0)
            && hops < FOLLOW_HOPS_MAX
        {
            self.io.stats.followed += 1;
            self.follow.push_back((c.index, c.role, hops + 1));
            self.flush_counters();
            self.launch(ctx);
            return;
        }
        let failed_reconnect = c.storm == StormPhase::Reconnecting && !c.ready;
        if failed_reconnect {
            self.storm_reconnect_failed();
        }
        // Only fan-out needs a closed subscriber's sequence figures (bounded by --conns there).
        let keep = self.cfg.kind == Kind::Fanout && (c.ready || failed_reconnect);
        match c.role {
            Role::Sse(s) if keep => self.closed_subs.push(s.sub),
            Role::Ws(WsClient {
                mode: Mode::Sub(s), ..
            }) if keep => self.closed_subs.push(s),
            Role::PubHttp { done: false, .. } | Role::PubWs { done: false, .. } => {
                if !self.finished {
                    if let Some(k) = kind {
                        self.io.stats.errors.add(k);
                    }
                }
                // A publisher that is gone will publish nothing more; let the run move on.
                Live::add(&self.cfg.live.pub_done, 1);
            }
            _ => {}
        }
        self.flush_counters();
        self.launch(ctx);
    }

    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, msg: Cmd) {
        match msg {
            Cmd::Connect(r) => {
                self.pending.push_back(r);
                self.launch(ctx);
            }
            Cmd::OpenPublishers(js) => {
                let Some(p) = self.cfg.publish.clone() else {
                    return;
                };
                for j in js {
                    let role = match p.target.proto {
                        Proto::Sse => Role::PubHttp {
                            m: HttpPub::new(),
                            sched: None,
                            done: false,
                        },
                        Proto::Ws => Role::PubWs {
                            m: WsClient::new(Mode::Pub),
                            sched: None,
                            done: false,
                        },
                    };
                    self.start(ctx, usize::MAX, p.src, u64::from(j), role);
                }
            }
            Cmd::StartPublish { t0_ns } => {
                let Some(p) = self.cfg.publish.clone() else {
                    return;
                };
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    let c = &mut self.conns[key];
                    let j = c.index as u32;
                    let new = || {
                        Some(Schedule::new(
                            t0_ns,
                            p.rate_per_topic,
                            self.cfg.topics,
                            p.per_topic,
                            j,
                            p.publishers,
                            p.skip_seq,
                        ))
                    };
                    match &mut c.role {
                        Role::PubHttp { sched, .. } | Role::PubWs { sched, .. } => *sched = new(),
                        _ => continue,
                    }
                    if c.ready {
                        self.pump(ctx, key);
                    }
                }
            }
            Cmd::StartEcho => {
                self.io.echo_running = true;
                self.io.now_ns = now_ns();
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    let c = &mut self.conns[key];
                    let id = c.id;
                    if let (Role::Ws(w), true) = (&mut c.role, c.ready) {
                        w.start_echo(&self.cfg.env, &mut self.io);
                        self.flush(ctx, id);
                    }
                }
            }
            Cmd::StopEcho => self.io.echo_running = false,
            Cmd::Storm => self.storm_drop(ctx),
            Cmd::Mark(reply) => {
                let _ = reply.send(Mark {
                    worker: self.worker,
                    cpu_s: crate::stats::thread_cpu_seconds(),
                    messages: self.io.stats.deliveries + self.io.stats.echoes,
                });
            }
            Cmd::Finish {
                last_published,
                reply,
            } => self.finish(&last_published, &reply),
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _key: &mut u32) {
        ctx.abort(id);
    }

    fn on_connect_failed(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, errno: i32) {
        let key = self
            .by_slot
            .get_mut(id.slot as usize)
            .map(|k| std::mem::replace(k, u32::MAX))
            .unwrap_or(u32::MAX);
        let mut is_pub = false;
        let mut failed_reconnect = false;
        if self.conns.contains(key as usize) {
            let c = self.conns.remove(key as usize);
            is_pub = matches!(c.role, Role::PubHttp { .. } | Role::PubWs { .. });
            if c.hops > 0 && c.hops < FOLLOW_HOPS_MAX && !self.finished {
                // `--follow` reached a dead target too: on to the next one.
                self.connecting = self.connecting.saturating_sub(1);
                self.io.stats.errors.add_errno(errno);
                self.io.stats.followed += 1;
                self.follow.push_back((c.index, c.role, c.hops + 1));
                self.flush_counters();
                self.launch(ctx);
                return;
            }
            if c.storm == StormPhase::Reconnecting {
                failed_reconnect = true;
                self.keep_sub(c.role);
            }
        }
        self.connecting = self.connecting.saturating_sub(1);
        self.io.stats.errors.add_errno(errno);
        if is_pub {
            Live::add(&self.cfg.live.pub_done, 1);
        } else if failed_reconnect {
            self.storm_reconnect_failed();
        } else {
            Live::add(&self.cfg.live.failed_total, 1);
        }
        self.flush_counters();
        self.launch(ctx);
    }
}

impl LoadDriver {
    /// `Cmd::Storm`: abort every ready subscriber; `on_close` queues its reconnect.
    fn storm_drop(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.storm.drop_ns = now_ns();
        self.storm.threshold = self
            .cfg
            .last_sent
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        for (_, c) in self.conns.iter_mut() {
            if sub_of(&c.role).is_some() && c.ready && c.storm == StormPhase::Held {
                c.storm = StormPhase::Dropping;
                c.settled = true;
                self.io.stats.storm.dropped += 1;
                ctx.abort(c.id);
            }
        }
    }

    /// Start queued storm reconnects while fewer than `connecting_max` handshakes are in flight.
    fn launch_reconnects(&mut self, ctx: &mut Ctx<'_, Self>) {
        while self.connecting < self.cfg.connecting_max && !self.finished {
            let Some((i, role, hops)) = self.follow.pop_front() else {
                break;
            };
            let role = role.resumed();
            // The next target after the one this subscriber was assigned, one more per hop.
            let (t, src) = self.cfg.plan.assign(i);
            let t = (t + hops as usize) % self.cfg.targets.len();
            if let Some(key) = self.start(ctx, t, src, i, role) {
                self.conns[key].hops = hops;
            }
        }
        while self.connecting < self.cfg.connecting_max && !self.finished {
            let Some((i, role)) = self.storm.queue.pop_front() else {
                return;
            };
            let role = role.resumed();
            let (t, src) = self.cfg.plan.assign(i);
            self.io.stats.storm.reconnects_started += 1;
            match self.start(ctx, t, src, i, role) {
                Some(key) => self.conns[key].storm = StormPhase::Reconnecting,
                None => {
                    // `start` counted the error and a ramp failure; make it a reconnect one.
                    Live::sub(&self.cfg.live.failed_total, 1);
                    self.storm_reconnect_failed();
                }
            }
        }
    }

    fn storm_reconnect_failed(&mut self) {
        self.io.stats.storm.reconnect_failed += 1;
        Live::add(&self.cfg.live.reconnect_failed, 1);
    }

    /// A reconnected subscriber that has now received a message published after its drop.
    fn check_resumed(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let Some(s) = sub_of(&c.role) else { return };
        let after = self.storm.threshold.get(s.topic as usize).copied();
        if s.seq.highest() > after.unwrap_or(0) {
            c.storm = StormPhase::Resumed;
            let st = &mut self.io.stats.storm;
            st.resumed += 1;
            st.last_resumed_ns = st.last_resumed_ns.max(self.io.now_ns);
            Live::add(&self.cfg.live.resumed, 1);
        }
    }

    /// Keep the sequence figures of a subscriber whose connection is gone.
    fn keep_sub(&mut self, role: Role) {
        match role {
            Role::Sse(s) => self.closed_subs.push(s.sub),
            Role::Ws(WsClient {
                mode: Mode::Sub(s), ..
            }) => self.closed_subs.push(s),
            _ => {}
        }
    }

    /// Store this worker's totals in its `Live` slot when they moved: plain stores to a line
    /// no other worker writes, once per receive completion, not per delivery.
    fn flush_counters(&mut self) {
        let s = &self.io.stats;
        let now = (s.deliveries + s.echoes, s.deliveries, s.errors.total());
        if now != self.published {
            self.published = now;
            self.cfg.live.store_worker(self.worker, now.0, now.1, now.2);
        }
    }
}

/// The subscription of a subscriber's role (SSE or WebSocket), `None` for other roles.
fn sub_of(role: &Role) -> Option<&Subscription> {
    match role {
        Role::Sse(s) => Some(&s.sub),
        Role::Ws(WsClient {
            mode: Mode::Sub(s), ..
        }) => Some(s),
        _ => None,
    }
}

fn self_topic(cfg: &RunCfg, index: u64) -> u32 {
    (index % u64::from(cfg.topics.max(1))) as u32
}
