//! A real browser: headless Chromium runs a page that uses `EventSource` and `WebSocket`
//! against the server. The server ends each SSE stream after a short lifetime, so the
//! browser's own EventSource reconnects with `Last-Event-ID` while messages keep coming; the
//! page must still see every message exactly once, in order. The page reports back by
//! publishing its findings to a topic the test subscribes to.
//!
//! A second page trades a JWT for single-use tickets (`POST /tickets` over `fetch`, so CORS
//! preflights too) and subscribes over WebSocket and EventSource with them.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); skips on a machine without it unless
//! URINGCAST_REQUIRE_EXTERNAL=1.

mod common;

use common::{chromium, publish, publish_as, Server, SseClient};
use std::time::{Duration, Instant};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>uringcast browser test</title>
<script>
const port = new URLSearchParams(location.search).get('port');
const base = 'http://127.0.0.1:' + port;
const got = { sse: [], ids: [], ws: [], opens: 0, errors: 0 };
let ready = { sse: false, ws: false }, reported = false;
function report(topic, body) {
  fetch(base + '/publish?topic=' + topic, { method: 'POST', body: body, mode: 'no-cors' });
}
function maybeReady() {
  if (ready.sse && ready.ws && !ready.sent) { ready.sent = true; report('control', 'ready'); }
}
const es = new EventSource(base + '/sse?topic=news');
es.onopen = () => { got.opens++; ready.sse = true; maybeReady(); };
es.onerror = () => { got.errors++; };
es.onmessage = (e) => {
  got.sse.push(e.data); got.ids.push(e.lastEventId);
  if (e.data === 'END') { check(); }
};
const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws?topic=news');
ws.onopen = () => { ready.ws = true; maybeReady(); };
ws.onmessage = (m) => { const v = JSON.parse(m.data); if (v.data !== undefined) { got.ws.push(v.data); if (v.data === 'END') check(); } };
function check() {
  if (reported) return;
  if (got.sse.includes('END') && got.ws.includes('END')) { reported = true; report('control', JSON.stringify(got)); }
}
</script>
"#;

/// What the test publishes to its own control stream to learn an event id.
const PRIME: &str = "prime";

struct Control {
    client: SseClient,
    last_id: Option<String>,
    addr: std::net::SocketAddr,
}

impl Control {
    /// Subscribe to `control` and hold an event id before the page starts. The server ends
    /// this stream every `sse-stream-lifetime` too, and a reconnect without `Last-Event-ID`
    /// misses whatever was published while it was away: the page's one "ready" could fall in
    /// that gap and the test would wait for nothing. With an id, every reconnect resumes.
    fn open(addr: std::net::SocketAddr, key: Option<&str>) -> Control {
        let mut c = Control {
            client: SseClient::connect(addr, "/sse?topic=control", ""),
            last_id: None,
            addr,
        };
        for _ in 0..30 {
            publish_as(addr, key, "control", PRIME);
            c.client.set_timeout(Duration::from_secs(1));
            match c.client.next_event() {
                Some(ev) if ev.id.is_some() => {
                    c.last_id = ev.id;
                    c.client.set_timeout(Duration::from_secs(10));
                    return c;
                }
                _ => c.reconnect(),
            }
        }
        panic!("the control stream never received an event");
    }

    fn reconnect(&mut self) {
        let resume = self
            .last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        self.client = SseClient::connect(self.addr, "/sse?topic=control", &resume);
    }

    /// The next event the page sent (a late duplicate of the priming message is skipped).
    fn next_event(&mut self) -> Option<common::SseEvent> {
        loop {
            let ev = self.next_any()?;
            if ev.data != PRIME {
                return Some(ev);
            }
        }
    }

    fn next_any(&mut self) -> Option<common::SseEvent> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(ev) = self.client.next_event() {
                self.last_id = ev.id.clone().or(self.last_id.take());
                return Some(ev);
            }
            self.reconnect();
        }
        None
    }
}

#[test]
fn eventsource_resumes_with_last_event_id_and_websocket_receives() {
    let Some(exe) = chromium::find() else {
        return;
    };
    let s = Server::start(&[
        "--sse-stream-lifetime",
        "700ms",
        "--sse-retry",
        "100ms",
        "--tick",
        "10ms",
    ]);
    // The test's own stream is ended by the same lifetime, so it resumes as a browser would.
    let mut control = Control::open(s.addr, None);

    let _browser =
        chromium::open_page(exe, "eventsource", PAGE, &format!("port={}", s.addr.port()));
    let ready = control.next_event().expect("the page reports ready");
    assert_eq!(ready.data, "ready");

    // Publish for about 3 s, across several forced stream ends (every 700 ms).
    let start = Instant::now();
    let mut sent = Vec::new();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let data = format!("msg-{i}");
        sent.push((publish(s.addr, "news", &data), data));
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let end_id = publish(s.addr, "news", "END");
    sent.push((end_id, "END".to_owned()));

    let report = control.next_event().expect("the page reports its findings");
    let v: serde_json::Value = serde_json::from_str(&report.data).expect("report JSON");
    let sse: Vec<String> = serde_json::from_value(v["sse"].clone()).unwrap();
    let ids: Vec<String> = serde_json::from_value(v["ids"].clone()).unwrap();
    let ws: Vec<String> = serde_json::from_value(v["ws"].clone()).unwrap();
    let expected: Vec<String> = sent.iter().map(|(_, d)| d.clone()).collect();
    let expected_ids: Vec<String> = sent.iter().map(|(id, _)| id.to_string()).collect();
    assert!(
        v["opens"].as_u64().unwrap() >= 3,
        "EventSource reconnected: {}",
        v["opens"]
    );
    assert_eq!(
        sse, expected,
        "EventSource saw every message once, in order, across reconnects"
    );
    assert_eq!(ids, expected_ids);
    assert_eq!(ws, expected, "WebSocket saw every message");
}

/// A page that holds a JWT gets two tickets over `fetch` (an `Authorization` header, so a CORS
/// preflight first), opens a WebSocket with one and an EventSource with the other, and reports
/// what each received by publishing with its token (another preflighted request).
const TICKET_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>uringcast ticket test</title>
<script>
const q = new URLSearchParams(location.search);
const port = q.get('port'), token = q.get('token');
const base = 'http://127.0.0.1:' + port;
const got = { ws: [], sse: [] };
let opened = 0, reported = false;
function report(body) {
  fetch(base + '/publish?topic=control', {
    method: 'POST', headers: { 'Authorization': 'Bearer ' + token }, body: body });
}
async function ticket() {
  const r = await fetch(base + '/tickets', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: JSON.stringify({ topics: ['news'] }) });
  if (r.status !== 200) throw new Error('POST /tickets answered ' + r.status);
  return (await r.json()).ticket;
}
function check() {
  if (!reported && got.ws.length && got.sse.length) { reported = true; report(JSON.stringify(got)); }
}
function onOpen() { if (++opened === 2) report('ready'); }
(async () => {
  try {
    const forWs = await ticket(), forSse = await ticket();
    const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws?topic=news&ticket=' + forWs);
    ws.onopen = onOpen;
    ws.onmessage = (m) => { const v = JSON.parse(m.data); if (v.data !== undefined) { got.ws.push(v.data); check(); } };
    const es = new EventSource(base + '/sse?topic=news&ticket=' + forSse);
    es.onopen = onOpen;
    es.onmessage = (e) => { got.sse.push(e.data); check(); };
  } catch (e) { report('error: ' + e); }
})();
</script>
"#;

#[test]
fn a_page_trades_its_token_for_tickets_and_subscribes_with_them() {
    let Some(exe) = chromium::find() else {
        return;
    };
    const SECRET: &str = "browser-test-secret-of-32-bytes-or-more";
    let s = Server::start_strict(&[
        "--jwt-hs256-secret",
        SECRET,
        "--publish-key",
        "browser-test-key",
        "--public-topics",
        "control",
    ]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let claims = serde_json::json!({"exp": exp, "subscribe": ["news"], "publish": ["control"]});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    // Without a ticket or token, the page's subscriptions would be refused.
    assert_eq!(
        SseClient::connect(s.addr, "/sse?topic=news", "").status,
        401
    );
    let mut control = Control::open(s.addr, Some("browser-test-key"));
    let query = format!("port={}&token={token}", s.addr.port());
    let _browser = chromium::open_page(exe, "tickets", TICKET_PAGE, &query);
    let ready = control.next_event().expect("the page reports");
    assert_eq!(ready.data, "ready", "the page opened both with its tickets");
    let id = publish_as(s.addr, Some("browser-test-key"), "news", "hello");
    let report = control
        .next_event()
        .expect("the page reports what it received");
    let v: serde_json::Value = serde_json::from_str(&report.data).expect("report JSON");
    assert_eq!(
        v,
        serde_json::json!({"ws": ["hello"], "sse": ["hello"]}),
        "message {id}"
    );
}
