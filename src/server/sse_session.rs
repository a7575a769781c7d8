//! An SSE stream: subscription with optional `Last-Event-ID` replay, the response head and
//! `retry:` hint, heartbeat comments, and the optional stream lifetime.

use super::handler::{Conn, State, Sub, Worker, SSE_HEARTBEAT, TEXT};
use super::metrics::{CloseKind, ConnKind};
use crate::engine::{ConnId, Ctx};
use crate::hub::{self, ConnTopics, HubError, Replay};
use crate::proto::http1::{self, RequestHead};

pub(super) struct SseConn {
    pub(super) topics: ConnTopics,
    /// `now_ms` at which the server ends the stream; `u64::MAX` = never.
    end_ms: u64,
}

impl Worker {
    pub(super) fn start_sse(
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

    pub(super) fn sse_timer(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, conn: &mut Conn) {
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
}
