//! The per-worker [`Dispatcher`]: the engine's [`Handler`] for the server. It owns the loop
//! that turns received bytes into steps of a connection's state, the one place that decides
//! whether to read more, and routes each request head once (see `route`). What a step does
//! lives in the state's own module (`publish`, `sse`, `ws`, `subscribe`), which never imports
//! this file.
//!
//! It never touches the ring: bytes come from the engine and leave as shared buffers through
//! `Out`. The HTTP and WebSocket rules live in `proto`, topics and replay in `hub`.
//!
//! Admission: `on_open` asks `limits` about the peer's IP; a refused connection is answered
//! (429/503) at its first request head, before any route or upgrade, and closed. `/metrics` is
//! answered to loopback peers (`metrics_loopback`) and to the admin key, others get 403.
//!
//! Timer use: each connection has one engine timer, and its meaning follows the state:
//! - HTTP: the request deadline (`request_timeout` from the connection's open or the previous
//!   response), so a half-sent head (slowloris: 408) or a silent or idle keep-alive
//!   connection (closed without an answer) ends. Bytes arriving do not move it.
//! - SSE and WebSocket: see `sse` and `ws`.

use std::sync::Arc;

use super::auth::Cors;
use super::cluster::{ClusterEvent, Unavailable};
use super::conn::{Conn, Peer, Refusal, State};
use super::limits::Admission;
use super::metrics::{render_engine, CloseKind, ConnKind, Counter};
use super::out::{Out, TEXT};
use super::route::Route;
use super::shared::{Shared, Sub, WorkerMsg};
use super::subscribe::Subscriptions;
use super::{publish, sse, subscribe, tickets, ws};
use crate::engine::{CloseReason, ConnId, Ctx, EngineStats, Handler, Origin};
use crate::proto::http1::{BodyKind, HttpError, RequestHead, Version};
use crate::proto::Progress;

/// How long a connection refused by the per-IP limits has to send its first request head (to
/// be told why) before it is closed; `request_timeout` if that is shorter.
const REFUSED_REQUEST_TIMEOUT_MS: u64 = 1_000;

/// The server's handler on one worker.
pub struct Dispatcher {
    shared: Arc<Shared>,
    subs: Subscriptions,
    /// This dispatcher serves the `admin_listen` address: `/metrics` (to anyone who reaches
    /// it) and `/healthz` only.
    admin: bool,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>) -> Dispatcher {
        let per_conn = shared.config.topics_per_conn_max;
        Dispatcher {
            shared,
            subs: Subscriptions::new(per_conn),
            admin: false,
        }
    }

    /// The dispatcher of the `admin_listen` engine.
    pub fn admin(shared: Arc<Shared>) -> Dispatcher {
        Dispatcher {
            admin: true,
            ..Dispatcher::new(shared)
        }
    }
}

/// One step of an HTTP connection: a request head, or a piece of a publish or ticket body. Returns the
/// bytes consumed and whether another step may make progress.
fn http_step(
    out: &mut Out<'_, '_, Dispatcher>,
    subs: &mut Subscriptions,
    state: &mut State,
    peer: &Peer,
    admin: bool,
    input: &[u8],
) -> (usize, bool) {
    let State::Http(http) = state else {
        unreachable!("http_step on a non-HTTP connection")
    };
    out.http10_keep_alive = http.http10_keep_alive;
    out.cors = http.cors;
    if let Some(close) = http.awaiting {
        // Cluster mode: nothing more is read until Redis answered the publish.
        let Some(result) = subs.take_answer(out.id) else {
            return (0, false);
        };
        http.awaiting = None;
        publish::answer(out, result, close);
        return (0, true);
    }
    if http.publish.is_some() {
        let step = publish::body_step(out, &mut http.publish, input);
        if let Some(close) = out.awaiting_publish.take() {
            http.awaiting = Some(close);
            return (step.0, false);
        }
        return step;
    }
    if http.ticket.is_some() {
        return tickets::body_step(out, &mut http.ticket, input);
    }
    match http.decoder.decode(&out.shared.http_limits, input) {
        Ok(Progress {
            consumed,
            event: None,
        }) => (consumed, false),
        Ok(Progress {
            consumed,
            event: Some(head),
        }) => {
            http.decoder.reset();
            match peer.refused {
                Some(r) => {
                    // Both refusals pass within a second or so: the bucket refills, or a
                    // connection of the IP closes.
                    let fields = [TEXT[0], ("Retry-After", "1")];
                    out.respond(r.status(), &fields, r.text().as_bytes(), true)
                }
                None if admin => admin_route(out, &head),
                None => route(out, subs, state, peer, &head),
            }
            (consumed, true)
        }
        Err(e) => {
            out.http_error(&e);
            (input.len(), false)
        }
    }
}

/// Answer one request head: the route decides, the state's module acts, and the connection
/// changes state on an SSE or WebSocket start.
fn route(
    out: &mut Out<'_, '_, Dispatcher>,
    subs: &mut Subscriptions,
    state: &mut State,
    peer: &Peer,
    head: &RequestHead,
) {
    let State::Http(http) = state else {
        unreachable!("route on a non-HTTP connection")
    };
    http.http10_keep_alive = head.version() == Version::Http10 && head.keep_alive();
    out.http10_keep_alive = http.http10_keep_alive;
    let shared = out.shared;
    let route = Route::of(
        head.method(),
        head.path(),
        shared.config.echo_path.as_deref(),
    );
    let close = !head.keep_alive() || (!route.reads_body() && head.body() != BodyKind::None);
    // Routes a browser page may call: a page from an origin outside `allowed_origins` is
    // refused before anything else, and the answers carry the CORS fields of the policy.
    http.cors = Cors::Off;
    let for_browsers = matches!(
        route,
        Route::Sse | Route::Ws | Route::Publish | Route::Tickets | Route::Preflight { .. }
    );
    if for_browsers {
        match shared.auth.cors_for(head.header("origin")) {
            Ok(cors) => http.cors = cors,
            Err(e) => {
                out.cors = Cors::Off;
                return out.deny(&e);
            }
        }
    }
    out.cors = http.cors;
    match route {
        Route::NotFound => out.respond(404, TEXT, b"not found\n", close),
        Route::MethodNotAllowed { allow } => out.http_error(&HttpError::MethodNotAllowed { allow }),
        Route::Healthz => out.respond(200, TEXT, b"ok\n", close),
        Route::Metrics if !metrics_allowed(shared, peer, head) => {
            shared.metrics.inc(Counter::MetricsForbidden);
            let text = b"/metrics is answered to loopback peers and to Authorization: Bearer <admin_key>\n";
            out.respond(403, TEXT, text, close)
        }
        Route::Metrics => answer_metrics(out, close),
        Route::Publish => {
            http.publish = publish::begin(out, head);
            if let Some(close) = out.awaiting_publish.take() {
                http.awaiting = Some(close); // an empty body, queued at once
            }
        }
        Route::Tickets => http.ticket = tickets::begin(out, head),
        Route::Preflight { methods } => {
            let fields = [
                ("Access-Control-Allow-Methods", methods),
                (
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, Last-Event-ID",
                ),
                ("Access-Control-Max-Age", "600"),
            ];
            out.respond(204, &fields, b"", close)
        }
        Route::Sse => {
            if let Some(stream) = sse::start(out, subs, head) {
                shared.metrics.conn_changed(ConnKind::Http, ConnKind::Sse);
                *state = State::Sse(stream);
            }
        }
        Route::Ws | Route::Echo => {
            if let Some(session) = ws::upgrade(out, subs, head, route == Route::Echo) {
                shared
                    .metrics
                    .conn_changed(ConnKind::Http, ConnKind::WebSocket);
                *state = State::Ws(session);
            }
        }
    }
}

/// A request on the `admin_listen` address: `/metrics` to anyone who reaches it (the operator
/// chose who can), `/healthz`, and nothing else.
fn admin_route(out: &mut Out<'_, '_, Dispatcher>, head: &RequestHead) {
    let close = !head.keep_alive() || head.body() != BodyKind::None;
    match Route::of(head.method(), head.path(), None) {
        Route::Metrics => answer_metrics(out, close),
        Route::Healthz => out.respond(200, TEXT, b"ok\n", close),
        _ => out.respond(
            404,
            TEXT,
            b"the admin address serves /metrics and /healthz\n",
            close,
        ),
    }
}

/// The metrics of the server: the main engine's counters, wherever the request came in.
fn answer_metrics(out: &mut Out<'_, '_, Dispatcher>, close: bool) {
    let shared = out.shared;
    let stats = shared
        .main_engine
        .get()
        .map_or_else(|| out.ctx.stats(), |engine| engine.stats());
    let text = render_metrics(shared, stats);
    let fields = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")];
    out.respond(200, &fields, text.as_bytes(), close)
}

/// `/metrics` for this peer: a loopback peer while `metrics_loopback` is on, or any peer
/// with `Authorization: Bearer <admin_key>`.
fn metrics_allowed(shared: &Shared, peer: &Peer, head: &RequestHead) -> bool {
    if shared.config.metrics_loopback && peer.loopback {
        return true;
    }
    let (Some(key), Some(auth)) = (&shared.config.admin_key, head.header("authorization")) else {
        return false;
    };
    let given = auth.strip_prefix(b"Bearer ").unwrap_or(b"");
    super::grant::constant_time_eq(given, key.as_bytes())
}

/// What `on_open` learns of the peer: whether it is loopback, and its admission under the
/// per-IP limits. A peer the engine could not name is taken as loopback on a loopback
/// listener (every peer is local there) and is not limited (it has no IP to count).
fn admit(shared: &Shared, origin: Origin, now_ms: u64) -> Peer {
    let addr = match origin {
        Origin::Accepted { peer } => peer,
        Origin::Connected => None,
    };
    let loopback = addr.map_or(shared.listen_is_loopback, |a| {
        a.ip().to_canonical().is_loopback()
    });
    let mut peer = Peer {
        loopback,
        ..Peer::default()
    };
    let Some(addr) = addr else {
        return peer;
    };
    match shared.limits.admit(addr.ip(), now_ms) {
        Admission::Admitted(key) => peer.counted = key,
        Admission::TooFast => {
            shared.metrics.inc(Counter::RefusedPerIpRate);
            peer.refused = Some(Refusal::TooFast);
        }
        Admission::TooMany => {
            shared.metrics.inc(Counter::RefusedPerIpConnections);
            peer.refused = Some(Refusal::TooMany);
        }
    }
    peer
}

fn render_metrics(shared: &Shared, stats: &EngineStats) -> String {
    let hub = shared.hub();
    let (topics, held) = (hub.topic_count() as u64, hub.held_bytes() as u64);
    drop(hub);
    let tracked = shared.limits.tracked_ips();
    let mut text = shared.metrics.render(&[]);
    text.push_str(&render_engine(stats));
    if let Some(cluster) = &shared.cluster {
        text.push_str(&cluster.render());
    }
    text.push_str(&format!(
        "# HELP uringcast_topics Topics holding history.\n# TYPE uringcast_topics gauge\n\
         uringcast_topics {topics}\n\
         # HELP uringcast_history_bytes Bytes held for replay.\n\
         # TYPE uringcast_history_bytes gauge\nuringcast_history_bytes {held}\n\
         # HELP uringcast_limits_tracked_ips Source IPs holding connections counted by connections_per_ip_max.\n\
         # TYPE uringcast_limits_tracked_ips gauge\nuringcast_limits_tracked_ips {tracked}\n"
    ));
    text
}

impl Handler for Dispatcher {
    type Conn = Conn;
    type Msg = WorkerMsg;

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, origin: Origin) -> Conn {
        self.subs.worker = ctx.worker_index();
        self.shared.metrics.conn_opened(ConnKind::Http);
        let peer = admit(&self.shared, origin, ctx.now_ms());
        let mut timeout_ms = self.shared.config.request_timeout.0;
        if peer.refused.is_some() {
            // A refused connection is not counted against its IP; keeping it short keeps the
            // refused ones from piling up while their client stays silent.
            timeout_ms = timeout_ms.min(REFUSED_REQUEST_TIMEOUT_MS);
        }
        ctx.set_timer(id, ctx.now_ms() + timeout_ms);
        Conn::new(peer)
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        data: &mut [u8],
    ) -> usize {
        let Conn {
            state,
            closing,
            peer,
        } = conn;
        match state {
            State::Sse(s) => self.subs.apply_floor(Sub { id, ws: false }, &s.topics),
            State::Ws(w) => self.subs.apply_floor(Sub { id, ws: true }, &w.topics),
            State::Http(_) => {}
        }
        let mut out = Out::new(ctx, id, &self.shared, closing);
        let mut pos = 0;
        // Steps run until one says it needs more bytes, even on empty input: a decoder may
        // have an outcome pending that needs no new bytes (the WebSocket decoder reports an
        // invalid UTF-8 tail on the call after it delivered the valid prefix). Two steps in a
        // row that consume nothing end the loop, whatever they claim.
        let mut idle_steps = 0;
        while out.closing.is_none() && idle_steps < 2 {
            // Backpressure: above the pause level no further request or frame is taken (each
            // may queue an answer); the rest waits as leftover until the queue has drained and
            // the engine resumes reading. An SSE stream's input is dropped whatever the queue.
            if !matches!(state, State::Sse(_)) && out.ctx.read_paused(id) {
                break;
            }
            let (consumed, more) = match state {
                State::Http(_) => {
                    let admin = self.admin;
                    http_step(&mut out, &mut self.subs, state, peer, admin, &data[pos..])
                }
                // An SSE client has nothing more to say; what it sends is read and dropped so
                // that it cannot fill the leftover buffer.
                State::Sse(_) => (data.len() - pos, false),
                State::Ws(session) => ws::step(&mut out, &mut self.subs, session, &mut data[pos..]),
            };
            debug_assert!(consumed <= data.len() - pos);
            pos += consumed;
            idle_steps = if consumed == 0 { idle_steps + 1 } else { 0 };
            if !more {
                break;
            }
        }
        if out.closing.is_some() {
            // Input after the server decided to close is discarded, never buffered.
            return data.len();
        }
        pos
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let Conn { state, closing, .. } = conn;
        let mut out = Out::new(ctx, id, &self.shared, closing);
        match state {
            // A client in the middle of a request is told 408. One that sent nothing, or is
            // idle between requests, is closed quietly: EventSource treats any non-200 answer
            // as fatal and would never reconnect.
            State::Http(h)
                if h.decoder.has_partial_head() || h.publish.is_some() || h.ticket.is_some() =>
            {
                out.http_error(&HttpError::RequestTimeout)
            }
            State::Http(h) if h.awaiting.is_some() => {
                h.awaiting = None;
                let text = b"cluster: no answer from Redis in time; the message may or may not be stored\n";
                out.respond(503, TEXT, text, true)
            }
            State::Http(_) => out.close(CloseKind::RequestTimeout),
            // Cluster mode: the head waits for Redis's first page, a heartbeat interval at
            // most; then the stream opens and ends, and the client retries.
            State::Sse(_) if self.subs.head_pending(id) => {
                let cluster = self.shared.cluster.as_deref().expect("cluster mode");
                let why = Unavailable("cluster: no answer from Redis in time".into());
                self.subs
                    .cluster_page(&self.shared, cluster, out.ctx, id, Err(why))
            }
            State::Sse(stream) => sse::on_timer(&mut out, stream),
            State::Ws(session) => ws::on_timer(&mut out, session),
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, mut conn: Conn, why: CloseReason) {
        if let Some(key) = conn.peer.counted {
            self.shared.limits.release(key);
        }
        let kind = conn.state.kind();
        let cluster = self.shared.cluster.as_deref();
        match &mut conn.state {
            State::Http(_) => self.subs.forget(id),
            State::Sse(s) => {
                self.subs
                    .unsubscribe_all(cluster, &mut s.topics, Sub { id, ws: false })
            }
            State::Ws(w) => self
                .subs
                .unsubscribe_all(cluster, &mut w.topics, Sub { id, ws: true }),
        }
        let decided = self.subs.take_close_reason(id).or(conn.closing);
        let close_kind = match (decided, why) {
            (Some(k), _) => k,
            (None, CloseReason::PeerClosed) => CloseKind::PeerClosed,
            (None, CloseReason::Shutdown) => CloseKind::Shutdown,
            (None, CloseReason::LeftoverOverflow) => CloseKind::ProtocolError,
            (None, CloseReason::QueueOverflow) => CloseKind::QueueOverflow,
            (None, _) => CloseKind::IoError,
        };
        self.shared.metrics.conn_closed(kind, close_kind);
    }

    fn on_msg(&mut self, ctx: &mut Ctx<'_, Self>, msg: WorkerMsg) {
        let event = match msg {
            WorkerMsg::Deliver(msg) => return self.subs.deliver(&self.shared, ctx, &msg),
            WorkerMsg::Cluster(event) => event,
        };
        let Some(cluster) = self.shared.cluster.as_deref() else {
            return;
        };
        match event {
            ClusterEvent::Deliver(msg) => self.subs.deliver(&self.shared, ctx, &msg),
            ClusterEvent::Published {
                conn,
                ws: true,
                topic,
                result,
            } => {
                if result.is_ok() {
                    self.shared.metrics.inc(Counter::Published);
                }
                let result = result.map_err(|e| e.0);
                ctx.send(conn, ws::published_answer(&topic, result));
            }
            ClusterEvent::Published { conn, result, .. } => {
                self.subs.set_answer(conn, result);
                ctx.redeliver(conn);
            }
            ClusterEvent::Page { conn, result } => {
                self.subs
                    .cluster_page(&self.shared, cluster, ctx, conn, result)
            }
            ClusterEvent::Cut { topic } => self.subs.cluster_cut(ctx, topic.as_deref()),
        }
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let Conn { state, closing, .. } = conn;
        let mut out = Out::new(ctx, id, &self.shared, closing);
        match state {
            State::Http(_) => {}
            State::Sse(s) => {
                subscribe::on_drain(&mut out, &mut self.subs, false, &s.topics, &mut s.replaying)
            }
            State::Ws(w) => {
                subscribe::on_drain(&mut out, &mut self.subs, true, &w.topics, &mut w.replaying)
            }
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let Conn { state, closing, .. } = conn;
        let mut out = Out::new(ctx, id, &self.shared, closing);
        match state {
            State::Ws(_) => ws::on_shutdown(&mut out),
            _ => out.close(CloseKind::Shutdown),
        }
    }
}
