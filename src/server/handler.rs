//! The per-worker protocol handler: what each connection is (an HTTP request in progress, an
//! SSE stream or a WebSocket), and how bytes, timers and published messages move it along.
//!
//! It never touches the ring: it gets bytes from the engine and hands back shared buffers. The
//! HTTP and WebSocket rules live in `proto`, topics and replay in `hub`; this file only routes.
//!
//! Timer use: each connection has one engine timer, and its meaning follows the state:
//! - HTTP: the request deadline (`request_timeout` from the connection's open or the previous
//!   response), so a half-sent head (slowloris) or an idle keep-alive connection is closed.
//! - SSE: the next heartbeat comment (or the end of `sse_stream_lifetime`, if sooner).
//! - WebSocket: the next ping; while a ping is unanswered, the pong deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::config::Config;
use super::metrics::{CloseKind, ConnKind, Metrics};
use super::ws_session::WsConn;
use crate::engine::{CloseReason, ConnId, Ctx, EngineStats, Handler, Origin};
use crate::hub::{self, ConnTopics, HubError, LocalIndex, Message, Replay, Topics};
use crate::proto::http1::{
    self, BodyDecoder, BodyEvent, BodyKind, HttpError, HttpLimits, RequestDecoder, RequestHead,
    Version,
};
use crate::proto::Progress;

/// State shared by all workers. Only `hub` is locked, and only on publish and subscribe.
pub struct Shared {
    pub config: Config,
    pub http_limits: HttpLimits,
    pub hub: Mutex<Topics>,
    pub metrics: Metrics,
    /// Without a `publish_key`, publishing is allowed only from loopback peers. Multishot accept
    /// into a direct descriptor reports no peer address, so "loopback peer" is decided by the
    /// listen address: on a loopback listener every peer is local.
    pub keyless_publish_allowed: bool,
    /// `Access-Control-Allow-Origin` for SSE and publish answers, so browser pages served from
    /// another origin can subscribe.
    pub allow_origin: String,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let http_limits = HttpLimits {
            request_line_bytes_max: config.request_line_bytes_max.0,
            head_bytes_max: config.head_bytes_max.0,
            headers_max: config.headers_max,
            body_bytes_max: config.publish_bytes_max.0 as u64,
            ..HttpLimits::default()
        };
        let hub_limits = hub::HubLimits {
            history_messages: config.history_messages,
            history_bytes: config.history_bytes.0,
            topics_max: config.topics_max,
            data_bytes_max: config.publish_bytes_max.0,
            ..hub::HubLimits::default()
        };
        Shared {
            keyless_publish_allowed: config.listen.ip().is_loopback(),
            allow_origin: "*".to_owned(),
            http_limits,
            hub: Mutex::new(Topics::new(hub_limits)),
            metrics: Metrics::default(),
            config,
        }
    }

    /// The hub lock. A panic while holding it cannot leave `Topics` half-updated in a way that
    /// breaks later calls (publish appends last), so a poisoned lock is still used.
    pub fn hub(&self) -> MutexGuard<'_, Topics> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A message from one worker to another.
pub enum WorkerMsg {
    /// A published message, for this worker's local subscribers of its topic.
    Deliver(Arc<Message>),
}

/// A subscriber in a worker's [`LocalIndex`]: the connection and which wire form it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sub {
    pub id: ConnId,
    pub ws: bool,
}

/// Per-connection state, kept by the engine in its slab.
pub struct Conn {
    pub(super) state: State,
    /// Why the server is closing it, once it decided to; read by `on_close` for metrics.
    pub(super) closing: Option<CloseKind>,
}

pub(super) enum State {
    Http(HttpConn),
    Sse(SseConn),
    Ws(Box<WsConn>),
}

impl State {
    fn kind(&self) -> ConnKind {
        match self {
            State::Http(_) => ConnKind::Http,
            State::Sse(_) => ConnKind::Sse,
            State::Ws(_) => ConnKind::WebSocket,
        }
    }
}

#[derive(Default)]
pub(super) struct HttpConn {
    decoder: RequestDecoder,
    /// A publish whose body is still arriving. Boxed: rare, and it would triple the size of
    /// every idle connection if inline.
    publish: Option<Box<PendingPublish>>,
}

struct PendingPublish {
    body: BodyDecoder,
    data: Vec<u8>,
    topic: String,
    event: Option<String>,
    close: bool,
}

pub(super) struct SseConn {
    topics: ConnTopics,
    /// `now_ms` at which the server ends the stream; `u64::MAX` = never.
    end_ms: u64,
}

/// The per-worker handler.
pub struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) index: LocalIndex<Sub>,
    /// Reused buffer for building responses.
    pub(super) out: Vec<u8>,
    /// Close reasons decided outside a connection's own callbacks (slow consumers found while
    /// fanning out), picked up by `on_close`.
    pending_close: HashMap<ConnId, CloseKind>,
}

/// Payload of every SSE heartbeat: a comment line, ignored by clients, that keeps proxies and
/// NATs from timing out an idle stream.
pub(super) static SSE_HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Worker {
        let per_conn = shared.config.topics_per_conn_max;
        Worker {
            shared,
            index: LocalIndex::new(per_conn),
            out: Vec::with_capacity(4096),
            pending_close: HashMap::new(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.shared.config
    }

    /// Send `self.out` as one buffer and clear it.
    pub(super) fn flush_out(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId) {
        if !self.out.is_empty() {
            ctx.send(id, Bytes::copy_from_slice(&self.out));
            self.out.clear();
        }
    }

    /// Decide to close `id` with `why`, after what is queued has been sent.
    pub(super) fn close(ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn, why: CloseKind) {
        conn.closing.get_or_insert(why);
        ctx.close(id);
    }

    fn http_error(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn, e: &HttpError) {
        self.shared
            .metrics
            .http_errors_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        http1::write_error_response(&mut self.out, e);
        self.flush_out(ctx, id);
        if e.closes_connection() {
            let why = match e {
                HttpError::RequestTimeout => CloseKind::RequestTimeout,
                _ => CloseKind::ProtocolError,
            };
            Self::close(ctx, id, conn, why);
        }
    }

    /// A plain response with a small body. `close` ends the connection after it.
    // The arguments are the response's parts; bundling them would only move the list.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        status: u16,
        fields: &[(&str, &str)],
        body: &[u8],
        close: bool,
    ) {
        if status >= 400 {
            self.shared
                .metrics
                .http_errors_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        http1::write_response(&mut self.out, status, fields, body, close);
        self.flush_out(ctx, id);
        if close {
            Self::close(ctx, id, conn, CloseKind::Done);
        } else {
            let deadline = ctx.now_ms() + self.cfg().request_timeout.0;
            ctx.set_timer(id, deadline);
        }
    }

    /// One step of an HTTP connection: a request head, or a piece of a publish body.
    /// Returns the bytes consumed and whether another step may make progress.
    fn http_step(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        input: &[u8],
    ) -> (usize, bool) {
        let State::Http(http) = &mut conn.state else {
            unreachable!("http_step on a non-HTTP connection")
        };
        if let Some(p) = http.publish.as_mut() {
            return match p.body.decode(input) {
                Ok(Progress {
                    consumed,
                    event: Some(BodyEvent::Data(d)),
                }) => {
                    p.data.extend_from_slice(d);
                    // A Content-Length body is complete with its last byte: finish now rather
                    // than wait for an `End` that needs another (possibly never coming) read.
                    let ended = matches!(
                        p.body.decode(&[]),
                        Ok(Progress {
                            event: Some(BodyEvent::End),
                            ..
                        })
                    );
                    if ended {
                        let p = http.publish.take().expect("checked above");
                        self.finish_publish(ctx, id, conn, *p);
                    }
                    (consumed, true)
                }
                Ok(Progress {
                    consumed,
                    event: Some(BodyEvent::End),
                }) => {
                    let p = http.publish.take().expect("checked above");
                    self.finish_publish(ctx, id, conn, *p);
                    (consumed, true)
                }
                Ok(Progress {
                    consumed,
                    event: None,
                }) => (consumed, false),
                Err(e) => {
                    self.http_error(ctx, id, conn, &e);
                    (input.len(), false)
                }
            };
        }
        let shared = Arc::clone(&self.shared);
        match http.decoder.decode(&shared.http_limits, input) {
            Ok(Progress {
                consumed,
                event: None,
            }) => (consumed, false),
            Ok(Progress {
                consumed,
                event: Some(head),
            }) => {
                http.decoder.reset();
                self.route(ctx, id, conn, &head);
                (consumed, true)
            }
            Err(e) => {
                self.http_error(ctx, id, conn, &e);
                (input.len(), false)
            }
        }
    }

    fn route(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn, head: &RequestHead) {
        let method = head.method();
        let path = head.path();
        let is_echo = self.cfg().echo_path.as_deref() == Some(path);
        let allow: &'static str = match path {
            "/sse" | "/ws" | "/healthz" | "/metrics" => "GET",
            "/publish" => "POST",
            _ if is_echo => "GET",
            _ => {
                let close = !head.keep_alive() || head.body() != BodyKind::None;
                return self.respond(ctx, id, conn, 404, TEXT, b"not found\n", close);
            }
        };
        if method != allow {
            return self.http_error(ctx, id, conn, &HttpError::MethodNotAllowed { allow });
        }
        // Only /publish reads a body; any other request that announces one is answered and the
        // connection closed, so the unread body can never be taken for the next request.
        let close = !head.keep_alive() || (allow == "GET" && head.body() != BodyKind::None);
        match path {
            "/healthz" => self.respond(ctx, id, conn, 200, TEXT, b"ok\n", close),
            "/metrics" => {
                let text = self.render_metrics(ctx.stats());
                let fields = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")];
                self.respond(ctx, id, conn, 200, &fields, text.as_bytes(), close)
            }
            "/publish" => self.begin_publish(ctx, id, conn, head),
            "/sse" => self.start_sse(ctx, id, conn, head),
            _ => self.start_ws(ctx, id, conn, head, is_echo),
        }
    }

    fn render_metrics(&self, stats: &EngineStats) -> String {
        let hub = self.shared.hub();
        let (topics, held) = (hub.topic_count() as u64, hub.held_bytes() as u64);
        drop(hub);
        let mut text = self.shared.metrics.render(&[]);
        text.push_str(&super::metrics::render_engine(stats));
        text.push_str(&format!(
            "# HELP uringcast_topics Topics holding history.\n# TYPE uringcast_topics gauge\n\
             uringcast_topics {topics}\n\
             # HELP uringcast_history_bytes Bytes held for replay.\n\
             # TYPE uringcast_history_bytes gauge\nuringcast_history_bytes {held}\n"
        ));
        text
    }

    fn begin_publish(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        head: &RequestHead,
    ) {
        // Authorisation comes first, before a byte of the body is read. A refusal closes the
        // connection because the body is left unread.
        if let Err((status, text)) = self.authorize(head) {
            let fields: &[(&str, &str)] = if status == 401 {
                &[("WWW-Authenticate", "Bearer"), TEXT[0]]
            } else {
                TEXT
            };
            return self.respond(ctx, id, conn, status, fields, text.as_bytes(), true);
        }
        let mut topic = None;
        let mut event = None;
        for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
            match &*k {
                "topic" if topic.is_none() => topic = Some(v.into_owned()),
                "topic" => {
                    let msg = b"publish takes exactly one topic\n";
                    return self.respond(ctx, id, conn, 400, TEXT, msg, true);
                }
                "event" => event = Some(v.into_owned()),
                _ => {}
            }
        }
        let Some(topic) = topic else {
            return self.respond(ctx, id, conn, 400, TEXT, b"missing ?topic=\n", true);
        };
        let body = match BodyDecoder::new(head.body(), &self.shared.http_limits) {
            Ok(b) => b,
            Err(e) => return self.http_error(ctx, id, conn, &e),
        };
        if head.header_has_token("expect", "100-continue") {
            ctx.send(id, Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
        }
        let pending = PendingPublish {
            body,
            data: Vec::new(),
            topic,
            event,
            close: !head.keep_alive(),
        };
        if pending.body.is_done() {
            // No body at all: publish empty data now.
            return self.finish_publish(ctx, id, conn, pending);
        }
        let State::Http(http) = &mut conn.state else {
            unreachable!()
        };
        http.publish = Some(Box::new(pending));
    }

    /// `Ok` if this request may publish; else the status and the reason.
    fn authorize(&self, head: &RequestHead) -> Result<(), (u16, &'static str)> {
        match &self.cfg().publish_key {
            Some(key) => {
                let Some(auth) = head.header("authorization") else {
                    return Err((401, "publishing needs Authorization: Bearer KEY\n"));
                };
                let given = auth.strip_prefix(b"Bearer ").unwrap_or(b"");
                if constant_time_eq(given, key.as_bytes()) {
                    Ok(())
                } else {
                    Err((403, "wrong publish key\n"))
                }
            }
            None if self.shared.keyless_publish_allowed => Ok(()),
            None => Err((
                403,
                "no publish_key is set, so only loopback peers may publish; \
                 this server listens on a non-loopback address: set publish_key\n",
            )),
        }
    }

    fn finish_publish(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        p: PendingPublish,
    ) {
        let Ok(data) = std::str::from_utf8(&p.data) else {
            let msg = b"body must be UTF-8 text (SSE carries only text)\n";
            return self.respond(ctx, id, conn, 400, TEXT, msg, p.close);
        };
        match self.publish(ctx, &p.topic, p.event.as_deref(), data) {
            Ok(msg_id) => {
                let body = format!("{{\"id\":{msg_id}}}");
                self.respond(ctx, id, conn, 200, JSON, body.as_bytes(), p.close)
            }
            Err(e) => {
                let body = format!("{e}\n");
                self.respond(ctx, id, conn, e.status(), TEXT, body.as_bytes(), p.close)
            }
        }
    }

    /// Publish and hand the message to every worker, all under one hold of the hub lock so
    /// that every worker's inbox sees ids in increasing order (see `hub`).
    pub(super) fn publish(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, HubError> {
        let shared = Arc::clone(&self.shared);
        let mut hub = shared.hub();
        let msg = hub.publish(topic, event, data)?;
        for w in 0..ctx.workers() {
            ctx.post(w, WorkerMsg::Deliver(Arc::clone(&msg)));
        }
        drop(hub);
        shared
            .metrics
            .published_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(msg.id)
    }

    /// Subscribe a connection to `topics` and return what it must be sent before live
    /// messages: the replay after `resume_after` (if given). The local subscription is
    /// registered under the hub lock, so nothing published afterwards is missed and nothing
    /// replayed is delivered twice.
    pub(super) fn subscribe(
        &mut self,
        sub: Sub,
        conn_topics: &mut ConnTopics,
        topics: &[&str],
        resume_after: Option<u64>,
    ) -> Result<Option<Replay>, HubError> {
        let shared = Arc::clone(&self.shared);
        let hub = shared.hub();
        let (replay, watermark) = match resume_after {
            Some(after) => {
                let r = hub.replay(topics, after);
                let w = r.last_id();
                (Some(r), w)
            }
            None => (None, hub.last_id()),
        };
        let mut added: Vec<&str> = Vec::with_capacity(topics.len());
        for topic in topics {
            match self.index.subscribe(conn_topics, sub, topic, watermark) {
                Ok(hub::Subscribed::Added) => added.push(topic),
                Ok(hub::Subscribed::Already) => {}
                Err(e) => {
                    // Undo only what this call added; earlier subscriptions stay in force.
                    for topic in added {
                        self.index.unsubscribe(conn_topics, sub, topic);
                    }
                    return Err(e);
                }
            }
        }
        drop(hub);
        Ok(replay)
    }

    fn start_sse(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        head: &RequestHead,
    ) {
        let mut topics: Vec<String> = Vec::new();
        let mut resume = None;
        for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
            match &*k {
                "topic" if !topics.iter().any(|t| *t == v) => topics.push(v.into_owned()),
                "lastEventId" => resume = Some(v.into_owned()),
                _ => {}
            }
        }
        // The header is what a browser sends on reconnect, so it wins over the query value
        // that stays in the original URL.
        if let Some(h) = head.header("last-event-id") {
            resume = Some(String::from_utf8_lossy(h).into_owned());
        }
        if topics.is_empty() {
            return self.respond(ctx, id, conn, 400, TEXT, b"missing ?topic=\n", true);
        }
        if topics.len() > self.cfg().topics_per_conn_max {
            let e = HubError::TooManyTopics {
                limit: self.cfg().topics_per_conn_max,
            };
            let body = format!("{e}\n");
            return self.respond(ctx, id, conn, 400, TEXT, body.as_bytes(), true);
        }
        let resume = match resume.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => match s.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    let msg = b"Last-Event-ID must be a message id (a number)\n";
                    return self.respond(ctx, id, conn, 400, TEXT, msg, true);
                }
            },
        };
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut conn_topics = ConnTopics::new();
        let sub = Sub { id, ws: false };
        let replay = match self.subscribe(sub, &mut conn_topics, &names, resume) {
            Ok(r) => r,
            Err(e) => {
                let body = format!("{e}\n");
                return self.respond(ctx, id, conn, e.status(), TEXT, body.as_bytes(), true);
            }
        };
        let origin = self.shared.allow_origin.clone();
        http1::write_sse_response_head(&mut self.out, &[("Access-Control-Allow-Origin", &origin)]);
        let retry_ms = self.cfg().sse_retry.0;
        crate::proto::sse::write_retry(&mut self.out, retry_ms);
        crate::proto::sse::write_end(&mut self.out);
        self.flush_out(ctx, id);
        if let Some(replay) = replay {
            self.send_sse_replay(ctx, id, &replay);
        }
        let lifetime = self.cfg().sse_stream_lifetime.0;
        let now = ctx.now_ms();
        let end_ms = if lifetime == 0 {
            u64::MAX
        } else {
            now + lifetime
        };
        self.shared
            .metrics
            .conn_changed(ConnKind::Http, ConnKind::Sse);
        conn.state = State::Sse(SseConn {
            topics: conn_topics,
            end_ms,
        });
        let next = (now + self.cfg().heartbeat_interval.0).min(end_ms);
        ctx.set_timer(id, next);
    }

    fn send_sse_replay(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, replay: &Replay) {
        let m = &self.shared.metrics;
        if let Replay::Gap {
            oldest_held,
            requested,
            ..
        } = replay
        {
            ctx.send(id, hub::sse_reset(*oldest_held, *requested));
            m.resets_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for msg in replay.events() {
            ctx.send(id, msg.sse.clone());
        }
        m.replayed_total.fetch_add(
            replay.events().len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn start_ws(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        head: &RequestHead,
        echo: bool,
    ) {
        let minor = match head.version() {
            Version::Http10 => 0,
            Version::Http11 => 1,
        };
        let shared = Arc::clone(&self.shared);
        let protocols: Vec<&str> = shared
            .config
            .ws_protocols
            .iter()
            .map(String::as_str)
            .collect();
        let fields = head.headers().map(|f| (f.name, f.value));
        let accepted =
            match crate::proto::ws::server_handshake(head.method(), minor, fields, &protocols) {
                Ok(a) => a,
                Err(e) => {
                    e.write_response(&mut self.out);
                    self.flush_out(ctx, id);
                    return Self::close(ctx, id, conn, CloseKind::ProtocolError);
                }
            };
        let mut topics: Vec<String> = Vec::new();
        if !echo {
            for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
                if k == "topic" && !topics.iter().any(|t| *t == v) {
                    topics.push(v.into_owned());
                }
            }
        }
        let mut ws = WsConn::new(&self.shared.config, echo, ctx.now_ms());
        if !topics.is_empty() {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let sub = Sub { id, ws: true };
            if let Err(e) = self.subscribe(sub, &mut ws.topics, &names, None) {
                let body = format!("{e}\n");
                return self.respond(ctx, id, conn, e.status(), TEXT, body.as_bytes(), true);
            }
        }
        accepted.write_response(&mut self.out);
        self.flush_out(ctx, id);
        self.shared
            .metrics
            .conn_changed(ConnKind::Http, ConnKind::WebSocket);
        ctx.set_timer(id, ctx.now_ms() + self.cfg().heartbeat_interval.0);
        conn.state = State::Ws(Box::new(ws));
    }

    fn sse_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let State::Sse(sse) = &conn.state else {
            unreachable!()
        };
        let now = ctx.now_ms();
        if now >= sse.end_ms {
            // Ending the stream makes the browser reconnect with Last-Event-ID.
            return Self::close(ctx, id, conn, CloseKind::Done);
        }
        ctx.send(id, SSE_HEARTBEAT.clone());
        self.shared
            .metrics
            .heartbeats_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let next = (now + self.cfg().heartbeat_interval.0).min(sse.end_ms);
        ctx.set_timer(id, next);
    }

    /// A subscriber has more than `queue_bytes_max` queued: close it (see `hub::SlowConsumerPolicy`).
    fn slow_consumer(&mut self, ctx: &mut Ctx<'_, Self>, sub: Sub) {
        self.pending_close.insert(sub.id, CloseKind::SlowConsumer);
        if sub.ws {
            let frame = crate::proto::ws::ControlFrame::close(Some(1013), "slow consumer", None);
            ctx.send(sub.id, Bytes::copy_from_slice(frame.as_bytes()));
            ctx.close(sub.id);
        } else {
            // SSE has no goodbye: end the stream now and free its queue; the client resumes
            // with Last-Event-ID.
            ctx.abort(sub.id);
        }
    }
}

pub(super) const TEXT: &[(&str, &str)] = &[("Content-Type", "text/plain; charset=utf-8")];
const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

/// Compare secrets without an early exit, so the time taken does not reveal how many leading
/// bytes of a guessed key were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Handler for Worker {
    type Conn = Conn;
    type Msg = WorkerMsg;

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, _origin: Origin) -> Conn {
        self.shared.metrics.conn_opened(ConnKind::Http);
        ctx.set_timer(id, ctx.now_ms() + self.cfg().request_timeout.0);
        Conn {
            state: State::Http(HttpConn::default()),
            closing: None,
        }
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        data: &mut [u8],
    ) -> usize {
        let mut pos = 0;
        // Steps run until one says it needs more bytes, even on empty input: a decoder may
        // have an outcome pending that needs no new bytes (the WebSocket decoder reports an
        // invalid UTF-8 tail on the call after it delivered the valid prefix). Two steps in a
        // row that consume nothing end the loop, whatever they claim.
        let mut idle_steps = 0;
        while conn.closing.is_none() && idle_steps < 2 {
            let (consumed, more) = match &conn.state {
                State::Http(_) => self.http_step(ctx, id, conn, &data[pos..]),
                // An SSE client has nothing more to say; what it sends is read and dropped so
                // that it cannot fill the leftover buffer.
                State::Sse(_) => (data.len() - pos, false),
                State::Ws(_) => self.ws_step(ctx, id, conn, &mut data[pos..]),
            };
            debug_assert!(consumed <= data.len() - pos);
            pos += consumed;
            idle_steps = if consumed == 0 { idle_steps + 1 } else { 0 };
            if !more {
                break;
            }
        }
        if conn.closing.is_some() {
            // Input after the server decided to close is discarded, never buffered.
            return data.len();
        }
        pos
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        match &conn.state {
            State::Http(_) => self.http_error(ctx, id, conn, &HttpError::RequestTimeout),
            State::Sse(_) => self.sse_timer(ctx, id, conn),
            State::Ws(_) => self.ws_timer(ctx, id, conn),
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, mut conn: Conn, why: CloseReason) {
        let kind = conn.state.kind();
        match &mut conn.state {
            State::Http(_) => {}
            State::Sse(s) => self
                .index
                .unsubscribe_all(&mut s.topics, Sub { id, ws: false }),
            State::Ws(w) => self
                .index
                .unsubscribe_all(&mut w.topics, Sub { id, ws: true }),
        }
        let decided = self.pending_close.remove(&id).or(conn.closing);
        let close_kind = match (decided, why) {
            (Some(k), _) => k,
            (None, CloseReason::PeerClosed) => CloseKind::PeerClosed,
            (None, CloseReason::Shutdown) => CloseKind::Shutdown,
            (None, CloseReason::LeftoverOverflow) => CloseKind::ProtocolError,
            (None, _) => CloseKind::IoError,
        };
        self.shared.metrics.conn_closed(kind, close_kind);
    }

    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, msg: WorkerMsg) {
        let WorkerMsg::Deliver(msg) = msg;
        let max = self.cfg().queue_bytes_max.0;
        let mut delivered = 0u64;
        let mut slow: Vec<Sub> = Vec::new();
        for sub in self.index.deliveries(&msg) {
            let bytes = if sub.ws { &msg.ws } else { &msg.sse };
            match hub::admit(ctx.queued_bytes(sub.id), bytes.len(), max) {
                hub::Admit::Send => delivered += u64::from(ctx.send(sub.id, bytes.clone())),
                _ => slow.push(sub),
            }
        }
        let m = &self.shared.metrics;
        m.delivered_total
            .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
        m.dropped_total
            .fetch_add(slow.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for sub in slow {
            if ctx.is_open(sub.id) {
                self.slow_consumer(ctx, sub);
            }
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        if let State::Ws(_) = conn.state {
            let frame =
                crate::proto::ws::ControlFrame::close(Some(1001), "server shutting down", None);
            ctx.send(id, Bytes::copy_from_slice(frame.as_bytes()));
        }
        Self::close(ctx, id, conn, CloseKind::Shutdown);
    }
}
