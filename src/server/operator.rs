//! The operator's view: `GET /topics` and `GET /topics/{name}` (subscribers counted over all
//! workers, what the hub holds), the status page served at `GET /`, and the thread that
//! publishes the server's numbers to the `$stats` system topic once a second while someone
//! watches (`GET /status/events`). Who may ask is decided by the dispatcher (like `/metrics`).
//! Never here: counting (`presence`), history (`hub`).

use super::out::{Out, JSON};
use super::presence::TopicRow;
use super::shared::Shared;
use crate::engine::Handler;
use crate::hub::{self, EventId};
use crate::proto::http1::{self, RequestHead};

/// Rows per `/topics` page when `?limit=` is not given, and the most it may ask for.
pub const TOPICS_PAGE_DEFAULT: usize = 100;
pub const TOPICS_PAGE_MAX: usize = 1000;

/// `GET /topics?limit=N&after=NAME`: topics in name order, after `after`.
pub(super) fn answer_topics<H: Handler>(out: &mut Out<'_, '_, H>, head: &RequestHead, close: bool) {
    let mut limit = TOPICS_PAGE_DEFAULT;
    let mut after: Option<String> = None;
    for (k, v) in http1::query_pairs(head.query().unwrap_or("")) {
        match &*k {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=TOPICS_PAGE_MAX).contains(&n) => limit = n,
                _ => {
                    let text = format!("limit must be a number from 1 to {TOPICS_PAGE_MAX}\n");
                    return out.refuse(400, &text);
                }
            },
            "after" => after = Some(v.into_owned()),
            _ => {}
        }
    }
    let rows = topics_page(out.shared, after.as_deref(), limit);
    // A full page may have a successor; the client asks for it with `after=<next>`.
    let next = match rows.last() {
        Some(last) if rows.len() == limit => serde_json::Value::from(&*last.name),
        _ => serde_json::Value::Null,
    };
    let topics: Vec<serde_json::Value> = rows.iter().map(|r| row_json(out.shared, r)).collect();
    let body = serde_json::json!({ "topics": topics, "next": next });
    out.respond(200, JSON, body.to_string().as_bytes(), close)
}

/// `GET /topics/{name}`: one topic; 404 when it has neither history nor subscribers.
pub(super) fn answer_topic<H: Handler>(out: &mut Out<'_, '_, H>, head: &RequestHead, close: bool) {
    let raw = head
        .path()
        .strip_prefix(super::route::TOPIC_PREFIX)
        .unwrap_or("");
    let name = http1::percent_decode(raw);
    if let Err(e) = hub::validate_any_topic(&name) {
        return out.refuse(400, &format!("{e}\n"));
    }
    let shared = out.shared;
    let info = shared.hub().topic_info(&name);
    let subscribers = shared.presence.subscribers(&name);
    if info.is_none() && subscribers == 0 {
        return out.respond(
            404,
            super::out::TEXT,
            b"no such topic: no history, no subscribers\n",
            close,
        );
    }
    let row = TopicRow {
        name: name.as_ref().into(),
        subscribers,
        info,
    };
    let body = row_json(shared, &row).to_string();
    out.respond(200, JSON, body.as_bytes(), close)
}

/// One page of topics: the hub's and the subscribed ones, merged by name.
pub(super) fn topics_page(shared: &Shared, after: Option<&str>, limit: usize) -> Vec<TopicRow> {
    let hub_page = shared.hub().topics_after(after, limit);
    shared.presence.page(hub_page, after, limit)
}

fn row_json(shared: &Shared, row: &TopicRow) -> serde_json::Value {
    let (messages, bytes, last_id) = match &row.info {
        Some(i) => (
            i.held_messages,
            i.held_bytes,
            serde_json::Value::from(
                EventId {
                    epoch: shared.epoch(),
                    seq: i.last_id,
                }
                .to_string(),
            ),
        ),
        None => (0, 0, serde_json::Value::Null),
    };
    serde_json::json!({
        "name": &*row.name,
        "subscribers": row.subscribers,
        "history_messages": messages,
        "history_bytes": bytes,
        "last_id": last_id,
    })
}

/// The system topic the server publishes its own numbers to, once a second while someone
/// watches (`GET /status/events`, the status page).
pub const STATS_TOPIC: &str = "$stats";

/// The status page (`GET /`): one self-contained file, no build step, no outside resource.
pub const STATUS_PAGE: &str = include_str!("status.html");

/// Counters read at one instant, for the rates between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub at_ms: u64,
    pub published: u64,
    pub delivered: u64,
}

/// One `$stats` message: the server's numbers now, and the rates since `prev`.
pub fn stats_json(shared: &Shared, now: Sample, prev: Option<Sample>, unix_ms: u64) -> String {
    use super::metrics::{CloseKind, ConnKind, Counter};
    let m = &shared.metrics;
    let rate = |f: fn(&Sample) -> u64| match prev {
        Some(p) if now.at_ms > p.at_ms => {
            let per_ms = f(&now).saturating_sub(f(&p)) as f64 / (now.at_ms - p.at_ms) as f64;
            (per_ms * 1000.0 * 10.0).round() / 10.0
        }
        _ => 0.0,
    };
    let (topics, history_bytes) = {
        let hub = shared.hub();
        (hub.topic_count(), hub.held_bytes())
    };
    let errors = CloseKind::ALL
        .iter()
        .filter(|k| {
            matches!(
                k,
                CloseKind::ProtocolError | CloseKind::IoError | CloseKind::QueueOverflow
            )
        })
        .map(|&k| m.closed(k))
        .sum::<u64>();
    serde_json::json!({
        "t": unix_ms,
        "connections": {
            "http": m.connections(ConnKind::Http),
            "sse": m.connections(ConnKind::Sse),
            "ws": m.connections(ConnKind::WebSocket),
        },
        "topics": topics,
        "history_bytes": history_bytes,
        "published_total": now.published,
        "delivered_total": now.delivered,
        "publish_rate": rate(|s| s.published),
        "delivery_rate": rate(|s| s.delivered),
        "slow_consumers_total": m.closed(CloseKind::SlowConsumer),
        "dropped_total": m.get(Counter::Dropped),
        "http_errors_total": m.get(Counter::HttpErrors),
        "connection_errors_total": errors,
    })
    .to_string()
}

/// The thread that publishes `$stats` once a second while the topic has subscribers, to
/// every engine whose workers may hold them (the main one, and the admin one). Reading the
/// counters costs a few atomic loads; with nobody watching nothing is published, so ids and
/// history are untouched on a server nobody watches.
pub struct StatsPublisher {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl StatsPublisher {
    pub fn start(
        shared: std::sync::Arc<Shared>,
        engines: Vec<crate::engine::EngineHandle<super::shared::WorkerMsg>>,
        every: std::time::Duration,
    ) -> std::io::Result<StatsPublisher> {
        use super::metrics::Counter;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("uringcast-stats".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let mut prev: Option<Sample> = None;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let now = Sample {
                        at_ms: start.elapsed().as_millis() as u64,
                        published: shared.metrics.get(Counter::Published),
                        delivered: shared.metrics.get(Counter::Delivered),
                    };
                    if shared.presence.subscribers(STATS_TOPIC) > 0 {
                        let unix_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        let data = stats_json(&shared, now, prev, unix_ms);
                        publish_stats(&shared, &engines, &data);
                    }
                    prev = Some(now);
                }
            })?;
        Ok(StatsPublisher { stop, thread })
    }

    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Publish `$stats` and post it to every worker of every engine under one hub lock hold, as
/// `publish::publish` does, so each inbox stays in id order.
fn publish_stats(
    shared: &Shared,
    engines: &[crate::engine::EngineHandle<super::shared::WorkerMsg>],
    data: &str,
) {
    let mut hub = shared.hub();
    let Ok(msg) = hub.publish_system(STATS_TOPIC, None, data) else {
        debug_assert!(
            false,
            "$stats is a valid system topic and its data is small"
        );
        return;
    };
    for engine in engines {
        for w in 0..engine.workers() {
            engine.post(
                w,
                super::shared::WorkerMsg::Deliver(std::sync::Arc::clone(&msg)),
            );
        }
    }
}
