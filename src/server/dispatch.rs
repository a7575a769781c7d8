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
//! (429/503) at its first request head, before any route or upgrade, and closed. `/metrics`,
//! `/topics` and the status page are answered to loopback peers (`metrics_loopback`) and to
//! the admin key, others get 403; on the `admin_listen` address, to anyone.
//!
//! TLS (`tls_cert`): the engine's bytes are ciphertext. `tls_input` feeds them to the
//! connection's rustls session a read at a time and runs the same steps on the plaintext,
//! which waits in the session's `pending` buffer while the server cannot take it (reading
//! paused: `on_drain` resumes it). Every `Out` of a TLS connection carries its session, so
//! everything queued is encrypted. The handshake runs under the HTTP request deadline: a
//! handshake that never completes is closed when `request_timeout` passes.
//!
//! Timer use: each connection has one engine timer, and its meaning follows the state:
//! - HTTP: the request deadline (`request_timeout` from the connection's open or the previous
//!   response), so a half-sent head (slowloris: 408) or a silent or idle keep-alive
//!   connection (closed without an answer) ends. Bytes arriving do not move it. In cluster
//!   mode a publish still waiting for Redis at that deadline is answered 503.
//! - SSE, WebSocket and a held long poll: see `sse`, `ws` and `poll`.

use std::sync::Arc;

use super::auth::Cors;
use super::cluster::{ClusterEvent, Unavailable};
use super::conn::{Conn, Peer, Refusal, State};
use super::limits::Admission;
use super::metrics::{render_engine, CloseKind, ConnKind, Counter};
use super::out::{Out, TEXT};
use super::route::Route;
use super::shared::{Form, Shared, Sub, WorkerMsg};
use super::subscribe::Subscriptions;
use super::tls::{self, Fed, Session, Sessions};
use super::{operator, poll, publish, sse, subscribe, tickets, ws};
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
    /// This dispatcher serves the `admin_listen` address: `/metrics`, `/topics`, the status
    /// page and its stream (to anyone who reaches it) and `/healthz` only.
    admin: bool,
    /// The TLS sessions of this worker's connections, when `listen` speaks TLS.
    tls: Option<Sessions>,
    /// Most decrypted input a TLS connection may hold unconsumed: the engine's
    /// `leftover_bytes_max`, the same bound as a plain connection's unconsumed input.
    tls_pending_max: usize,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>) -> Dispatcher {
        let subs = Subscriptions::new(shared.config.topics_per_conn_max, shared.presence.shard());
        let tls = shared.tls.as_ref().map(|_| Sessions::default());
        let tls_pending_max = shared.config.engine_config().leftover_bytes_max;
        Dispatcher {
            shared,
            subs,
            admin: false,
            tls,
            tls_pending_max,
        }
    }

    /// The dispatcher of the `admin_listen` engine: plain TCP whatever `listen` speaks.
    pub fn admin(shared: Arc<Shared>) -> Dispatcher {
        Dispatcher {
            admin: true,
            tls: None,
            ..Dispatcher::new(shared)
        }
    }

    /// The steps of one connection over `data` (plaintext). Returns the bytes consumed; all of
    /// them once the server decided to close.
    fn serve_input(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        tls: Option<&mut rustls::ServerConnection>,
        data: &mut [u8],
    ) -> usize {
        let Conn {
            state,
            closing,
            peer,
        } = conn;
        let mut out = Out::new(ctx, id, &self.shared, closing, tls);
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
                // A request pipelined behind a held poll waits, unread, for its answer.
                State::Poll(_) => (0, false),
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

    /// `on_data` of a TLS connection: `data` is ciphertext. Returns the ciphertext consumed;
    /// what is left (reading paused with plaintext still waiting) comes back with the next
    /// `on_data`.
    fn tls_input(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        data: &[u8],
    ) -> usize {
        // Taken out for the call so that the steps may borrow the dispatcher; put back below.
        let Some(mut sessions) = self.tls.take() else {
            return data.len();
        };
        let used = match sessions.get_mut(id) {
            Some(session) => self.tls_steps(ctx, id, conn, session, data),
            None => {
                ctx.abort(id);
                data.len()
            }
        };
        self.tls = Some(sessions);
        used
    }

    fn tls_steps(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        s: &mut Session,
        data: &[u8],
    ) -> usize {
        let mut used = 0;
        loop {
            if !s.pending.is_empty() {
                if !self.serve_pending(ctx, id, conn, s) {
                    return data.len();
                }
                if !s.pending.is_empty() && ctx.read_paused(id) {
                    // The rest of the plaintext waits for the queue to drain (`on_drain`),
                    // the rest of the ciphertext in the engine's leftover.
                    ctx.notify_drain(id);
                    return used;
                }
            }
            if used == data.len() {
                return used;
            }
            match tls::feed(ctx, id, s, &data[used..]) {
                Fed::Failed(e) => {
                    self.shared.metrics.inc(Counter::TlsErrors);
                    tracing::debug!(error = %e, "TLS error; closing");
                    conn.closing.get_or_insert(CloseKind::ProtocolError);
                    ctx.close(id);
                    return data.len();
                }
                Fed::Ok {
                    consumed,
                    peer_closed,
                } => {
                    used += consumed;
                    if !s.established && !s.tls.is_handshaking() {
                        s.established = true;
                        self.shared.metrics.inc(Counter::TlsHandshakes);
                    }
                    if peer_closed {
                        // close_notify: serve what came before it, then answer it and close.
                        if !s.pending.is_empty() && !self.serve_pending(ctx, id, conn, s) {
                            return data.len();
                        }
                        let mut out =
                            Out::new(ctx, id, &self.shared, &mut conn.closing, Some(&mut s.tls));
                        out.close(CloseKind::PeerClosed);
                        return data.len();
                    }
                    if consumed == 0 && s.pending.is_empty() {
                        return used;
                    }
                }
            }
        }
    }

    /// Run the steps over the session's decrypted input. False once the connection is closing
    /// (its input is dropped).
    fn serve_pending(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        s: &mut Session,
    ) -> bool {
        let mut pending = std::mem::take(&mut s.pending);
        let n = self.serve_input(ctx, id, conn, Some(&mut s.tls), &mut pending);
        if conn.closing.is_some() {
            return false;
        }
        pending.drain(..n);
        if pending.len() > self.tls_pending_max {
            // The plain equivalent is the engine's `LeftoverOverflow`.
            conn.closing.get_or_insert(CloseKind::ProtocolError);
            ctx.abort(id);
            return false;
        }
        // An idle connection keeps no buffer.
        s.pending = if pending.is_empty() {
            Vec::new()
        } else {
            pending
        };
        true
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
                None if admin => admin_route(out, subs, state, &head),
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
        Route::Sse
            | Route::Ws
            | Route::Poll
            | Route::Publish
            | Route::Tickets
            | Route::Preflight { .. }
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
        r if r.is_admin() && !metrics_allowed(shared, peer, head) => {
            shared.metrics.inc(Counter::MetricsForbidden);
            let text = b"/metrics, /topics and the status page are answered to loopback peers, \
                         to Authorization: Bearer <admin_key>, and on admin_listen\n";
            out.respond(403, TEXT, text, close)
        }
        Route::Metrics => answer_metrics(out, close),
        Route::Topics => operator::answer_topics(out, head, close),
        Route::Topic => operator::answer_topic(out, head, close),
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
        Route::Status => answer_status_page(out, close),
        Route::Sse | Route::StatusEvents => {
            let system = (route == Route::StatusEvents).then_some(operator::STATS_TOPIC);
            if let Some(stream) = sse::start(out, subs, head, system) {
                shared.metrics.conn_changed(ConnKind::Http, ConnKind::Sse);
                *state = State::Sse(stream);
            }
        }
        Route::Poll => {
            if let Some(wait) = poll::start(out, subs, head, close) {
                shared.metrics.conn_changed(ConnKind::Http, ConnKind::Poll);
                *state = State::Poll(Box::new(wait));
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

/// Answer the held poll in `state` with the messages that reached it (none: a timeout) and
/// return the connection to HTTP. A request the client pipelined behind the poll, left unread
/// while it was held, is read now.
fn answer_poll(out: &mut Out<'_, '_, Dispatcher>, subs: &mut Subscriptions, state: &mut State) {
    let State::Poll(wait) = state else {
        return;
    };
    let ready = subs.take_ready(out.id);
    let sub = Sub {
        id: out.id,
        form: Form::Poll,
    };
    subs.unsubscribe_all(out.shared.cluster.as_deref(), &mut wait.topics, sub);
    poll::answer_held(out, wait, ready);
    out.shared
        .metrics
        .conn_changed(ConnKind::Poll, ConnKind::Http);
    *state = State::Http(Box::default());
    out.ctx.redeliver(out.id);
}

/// A request on the `admin_listen` address: the admin routes (`/metrics`, `/topics`, the
/// status page and its stream) to anyone who reaches it (the operator chose who can),
/// `/healthz`, and nothing else.
fn admin_route(
    out: &mut Out<'_, '_, Dispatcher>,
    subs: &mut Subscriptions,
    state: &mut State,
    head: &RequestHead,
) {
    let close = !head.keep_alive() || head.body() != BodyKind::None;
    match Route::of(head.method(), head.path(), None) {
        Route::Metrics => answer_metrics(out, close),
        Route::Topics => operator::answer_topics(out, head, close),
        Route::Topic => operator::answer_topic(out, head, close),
        Route::Status => answer_status_page(out, close),
        Route::StatusEvents => {
            if let Some(stream) = sse::start(out, subs, head, Some(operator::STATS_TOPIC)) {
                let metrics = &out.shared.metrics;
                metrics.conn_changed(ConnKind::Http, ConnKind::Sse);
                *state = State::Sse(stream);
            }
        }
        Route::Healthz => out.respond(200, TEXT, b"ok\n", close),
        _ => out.respond(
            404,
            TEXT,
            b"the admin address serves /, /status/events, /metrics, /topics and /healthz\n",
            close,
        ),
    }
}

/// The status page: static, self-contained; its numbers come over `/status/events`. The
/// policy forbids every outside resource and framing by other sites.
fn answer_status_page(out: &mut Out<'_, '_, Dispatcher>, close: bool) {
    let fields = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        (
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; frame-ancestors 'none'",
        ),
    ];
    out.respond(200, &fields, operator::STATUS_PAGE.as_bytes(), close)
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
        if let (Some(sessions), Some(files)) = (&mut self.tls, &self.shared.tls) {
            if let Err(e) = sessions.open(id, files.current()) {
                tracing::error!(error = %e, "cannot start a TLS session");
                ctx.abort(id);
            }
        }
        Conn::new(peer)
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        conn: &mut Conn,
        data: &mut [u8],
    ) -> usize {
        match &conn.state {
            State::Sse(s) => self.subs.apply_floor(
                Sub {
                    id,
                    form: Form::Sse,
                },
                &s.topics,
            ),
            State::Ws(w) => self.subs.apply_floor(Sub { id, form: w.form }, &w.topics),
            State::Http(_) | State::Poll(_) => {}
        }
        if self.tls.is_some() {
            return self.tls_input(ctx, id, conn, data);
        }
        self.serve_input(ctx, id, conn, None, data)
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let Conn { state, closing, .. } = conn;
        let tls = session_of(&mut self.tls, id);
        let mut out = Out::new(ctx, id, &self.shared, closing, tls);
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
            State::Poll(_) => answer_poll(&mut out, &mut self.subs, state),
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_, Self>, id: ConnId, mut conn: Conn, why: CloseReason) {
        if let Some(sessions) = &mut self.tls {
            sessions.remove(id);
        }
        if let Some(key) = conn.peer.counted {
            self.shared.limits.release(key);
        }
        let kind = conn.state.kind();
        let cluster = self.shared.cluster.as_deref();
        match &mut conn.state {
            State::Http(_) => self.subs.forget(id),
            State::Sse(s) => self.subs.unsubscribe_all(
                cluster,
                &mut s.topics,
                Sub {
                    id,
                    form: Form::Sse,
                },
            ),
            State::Ws(w) => {
                self.subs
                    .unsubscribe_all(cluster, &mut w.topics, Sub { id, form: w.form })
            }
            State::Poll(p) => {
                self.subs.take_ready(id);
                let sub = Sub {
                    id,
                    form: Form::Poll,
                };
                self.subs.unsubscribe_all(cluster, &mut p.topics, sub)
            }
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
            WorkerMsg::Deliver(msg) => {
                return self
                    .subs
                    .deliver(&self.shared, ctx, &msg, self.tls.as_mut())
            }
            WorkerMsg::Cluster(event) => event,
        };
        let Some(cluster) = self.shared.cluster.as_deref() else {
            return;
        };
        match event {
            ClusterEvent::Deliver(msg) => {
                self.subs
                    .deliver(&self.shared, ctx, &msg, self.tls.as_mut())
            }
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
        // A TLS connection may hold decrypted input that waited for this drain. The queue may
        // have grown past the pause level again since the drain was due (a request made while
        // one was due makes no second call); `tls_input` then asks for another drain.
        if conn.closing.is_none() && self.tls.is_some() {
            self.tls_input(ctx, id, conn, &[]);
        }
        let Conn { state, closing, .. } = conn;
        let tls = session_of(&mut self.tls, id);
        let mut out = Out::new(ctx, id, &self.shared, closing, tls);
        match state {
            State::Http(_) => {}
            State::Sse(s) => subscribe::on_drain(
                &mut out,
                &mut self.subs,
                Form::Sse,
                &s.topics,
                &mut s.replaying,
            ),
            State::Ws(w) => subscribe::on_drain(
                &mut out,
                &mut self.subs,
                w.form,
                &w.topics,
                &mut w.replaying,
            ),
            // Asked for by `Subscriptions::deliver` when the first message reached the poll. A
            // drain asked for by an earlier poll on this connection, answered by its timer
            // since, finds nothing ready and leaves this one held.
            State::Poll(_) if self.subs.has_ready(id) => {
                answer_poll(&mut out, &mut self.subs, state)
            }
            State::Poll(_) => {}
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
        let Conn { state, closing, .. } = conn;
        let tls = session_of(&mut self.tls, id);
        let mut out = Out::new(ctx, id, &self.shared, closing, tls);
        match state {
            State::Ws(_) => ws::on_shutdown(&mut out),
            State::Poll(wait) => {
                wait.close = true;
                answer_poll(&mut out, &mut self.subs, state)
            }
            _ => out.close(CloseKind::Shutdown),
        }
    }
}

/// The rustls session of `id`, on a TLS listener.
fn session_of(tls: &mut Option<Sessions>, id: ConnId) -> Option<&mut rustls::ServerConnection> {
    tls.as_mut()?.get_mut(id).map(|s| &mut s.tls)
}
