//! The operator's view: `GET /topics` and `GET /topics/{name}` (subscribers counted over all
//! workers, what the hub holds). Who may ask is decided by the dispatcher (like `/metrics`).
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
                    epoch: shared.epoch,
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
