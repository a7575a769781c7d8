//! The status page (`GET /`) in a real browser: headless Chromium, driven over the DevTools
//! protocol (a WebSocket to the page target), loads the page from the server, which then
//! follows the server's own `$stats` stream over SSE. The test connects SSE and WebSocket
//! clients and publishes; the page's numbers, its topics table and its chart must follow, its
//! "try it" panel must subscribe, publish and show what arrives, and the page must log no
//! console error and throw no exception. A screenshot is decoded and the chart's region
//! checked for the delivery-rate line above the zero line.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); skips on a machine without it unless
//! URINGCAST_REQUIRE_EXTERNAL=1. `URINGCAST_UPDATE_SCREENSHOT=1` also writes the screenshot
//! to docs/status-page.png.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{http, publish, rt, ws_connect, Server, SseClient, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn skip(why: &str) {
    if std::env::var("URINGCAST_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("status page test cannot run: {why}");
    }
    eprintln!("SKIPPED status_page: {why}");
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start Chromium on about:blank with a DevTools port of its choosing; returns the browser
/// and the WebSocket URL of its page target.
fn start_chromium(chromium: &str) -> (KillOnDrop, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("status-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(chromium)
        .args(common::chromium::FLAGS)
        .args([
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let browser = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let browser_url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium printed its DevTools address");
    let port: u16 = browser_url
        .trim_start_matches("ws://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .expect("DevTools port");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The target URLs are built from the Host field: it must name the port.
        let req = format!("GET /json/list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let (status, _, body) = http(addr, req.as_bytes());
        assert_eq!(status, 200);
        let targets: Vec<Value> = serde_json::from_slice(&body).expect("target list");
        if let Some(t) = targets.iter().find(|t| t["type"] == "page") {
            return (
                browser,
                t["webSocketDebuggerUrl"].as_str().unwrap().to_owned(),
            );
        }
        assert!(Instant::now() < deadline, "no page target: {targets:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A DevTools protocol session with one page: commands in order, events kept.
struct Cdp {
    ws: Ws,
    next_id: u64,
    events: Vec<Value>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let cmd = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(cmd.to_string())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"))
                .expect("DevTools connection ended")
                .expect("DevTools connection error");
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Poll `expr` until it is `true`, 30 s at most; `what` names it in the failure.
    async fn wait_for(&mut self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.eval(expr).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let state = self
                    .eval("JSON.stringify(window.statusPage && window.statusPage.last)")
                    .await;
                let text = self.eval("document.body.innerText").await;
                panic!("{what}: not within 30 s\nlast stats: {state}\npage text:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Console errors, uncaught exceptions and error log entries seen so far.
    fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => e["params"]["type"] == "error",
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect()
    }
}

/// Pixels in `rect` (x, y, w, h) of an RGBA or RGB image within a small distance of `rgb`.
fn pixels_near(
    img: &png::OutputInfo,
    data: &[u8],
    rect: (u32, u32, u32, u32),
    rgb: [u8; 3],
) -> usize {
    let channels = match img.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("screenshot color type {other:?}"),
    };
    let (x0, y0, w, h) = rect;
    let mut n = 0;
    for y in y0..(y0 + h).min(img.height) {
        for x in x0..(x0 + w).min(img.width) {
            let at = (y as usize * img.line_size) + x as usize * channels;
            let d: i32 = (0..3)
                .map(|c| (i32::from(data[at + c]) - i32::from(rgb[c])).abs())
                .sum();
            if d < 60 {
                n += 1;
            }
        }
    }
    n
}

const DELIVERY_BLUE: [u8; 3] = [0x1f, 0x6f, 0xd1];
const CONNECTION_GREEN: [u8; 3] = [0x2a, 0x9d, 0x55];

#[test]
fn status_page_follows_the_hub_live() {
    let Some(chromium) = chromium() else {
        return skip("chromium not installed (apt-get install chromium)");
    };
    let s = Server::start(&["--workers", "2"]);
    let addr = s.addr;
    let (_browser, page_ws) = start_chromium(chromium);
    let rt = rt();
    let (png_bytes, chart) = rt.block_on(async {
        let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("DevTools WebSocket");
        let mut cdp = Cdp {
            ws,
            next_id: 0,
            events: Vec::new(),
        };
        cdp.call("Runtime.enable", json!({})).await;
        cdp.call("Log.enable", json!({})).await;
        cdp.call("Page.enable", json!({})).await;
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1400, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        cdp.call("Page.navigate", json!({"url": format!("http://{addr}/")}))
            .await;
        cdp.wait_for(
            "!!(window.statusPage && window.statusPage.events >= 1)",
            "the page receives $stats",
        )
        .await;
        let text = |id: &str| format!("document.getElementById('{id}').textContent");
        // Only the page's own stream is connected so far.
        cdp.wait_for(&format!("{} === '1'", text("conn-sse")), "SSE count 1")
            .await;
        assert_eq!(cdp.eval(&text("conn-ws")).await, "0");
        assert_eq!(cdp.eval(&text("published")).await, "0");

        // Three SSE and two WebSocket subscribers of `load`, and a stream of publishes.
        let sse: Vec<SseClient> = (0..3)
            .map(|_| SseClient::connect(addr, "/sse?topic=load", ""))
            .collect();
        let mut ws_clients = Vec::new();
        for _ in 0..2 {
            ws_clients.push(ws_connect(&format!("ws://{addr}/ws?topic=load")).await);
        }
        let start = Instant::now();
        let mut sent = 0;
        while start.elapsed() < Duration::from_secs(4) {
            publish(addr, "load", &format!("m{sent}"));
            sent += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        cdp.wait_for(&format!("{} === '4'", text("conn-sse")), "SSE count 4")
            .await;
        cdp.wait_for(&format!("{} === '2'", text("conn-ws")), "WebSocket count 2")
            .await;
        cdp.wait_for(
            &format!("{} === '{sent}'", text("published")),
            "published total",
        )
        .await;
        cdp.wait_for(
            &format!("{} === '{}'", text("delivered"), sent * 5),
            "delivered total: every publish to five subscribers",
        )
        .await;
        cdp.wait_for(
            "window.statusPage.samples.some(s => s.delivery_rate > 0)",
            "a non-zero delivery rate",
        )
        .await;
        cdp.wait_for(
            "[...document.querySelectorAll('#topics-table tr')].some(tr => \
             tr.cells[0].textContent === 'load' && tr.cells[1].textContent === '5')",
            "the topics table lists load with 5 subscribers",
        )
        .await;

        // Try it: subscribe from the page, publish from the page and from here.
        cdp.eval(
            "document.getElementById('try-topic').value = 'tryit'; \
             document.getElementById('try-subscribe').click(); true",
        )
        .await;
        cdp.wait_for(
            "document.getElementById('try-state').textContent === 'subscribed to tryit'",
            "the try-it stream opens",
        )
        .await;
        cdp.eval(
            "document.getElementById('try-data').value = 'from-the-page'; \
             document.getElementById('try-publish').click(); true",
        )
        .await;
        let id = publish(addr, "tryit", "from-the-test");
        let log = "document.getElementById('try-log').textContent";
        cdp.wait_for(
            &format!("{log}.includes('from-the-page') && {log}.includes('published ')"),
            "the page's own publish arrives",
        )
        .await;
        cdp.wait_for(
            &format!("{log}.includes('received {id}: from-the-test')"),
            "the test's publish arrives",
        )
        .await;

        // Let the chart draw a few more samples, then take the screenshot.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rect = cdp
            .eval(
                "(() => { const r = document.getElementById('chart').getBoundingClientRect(); \
                 return [r.x, r.y + window.scrollY, r.width, r.height]; })()",
            )
            .await;
        let shot = cdp
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        use base64::Engine as _;
        let png_bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let errors = cdp.errors();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        drop(sse);
        for mut w in ws_clients {
            let _ = w.close(None).await;
        }
        (png_bytes, rect)
    });

    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&out, &png_bytes).unwrap();
    if std::env::var("URINGCAST_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::write(docs, &png_bytes).unwrap();
    }
    let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut data = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut data).unwrap();
    let n = |i: usize| chart[i].as_f64().unwrap() as u32;
    let (x, y, w, h) = (n(0), n(1), n(2), n(3));
    // The plot area's bottom 30 px hold the zero line and the time labels: a delivery line
    // above them is a non-zero rate drawn by the page.
    let above_zero = (x, y, w, h.saturating_sub(30));
    let blue = pixels_near(&info, &data, above_zero, DELIVERY_BLUE);
    let green = pixels_near(&info, &data, (x, y, w, h), CONNECTION_GREEN);
    assert!(
        blue > 30 && green > 30,
        "chart in {:?}: {blue} delivery-line pixels above zero, {green} connection-line \
         pixels (screenshot: {})",
        (x, y, w, h),
        out.display()
    );
}

/// The page and its stream are answered as `/metrics` is; the `$stats` topic is the server's:
/// no client may publish to it or subscribe to it through `/sse`, and nothing is published to
/// it while nobody watches (ids are not consumed).
#[test]
fn status_routes_are_protected_and_stats_are_the_servers() {
    let s = Server::start(&["--metrics-loopback", "false", "--admin-key", "k"]);
    let get = |path: &str, auth: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut c, req.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        line
    };
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _, body) = http(
        s.addr,
        b"POST /publish?topic=%24stats HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let first = publish(s.addr, "a", "x");
    assert!(
        first.ends_with("-1"),
        "nobody watched $stats, so nothing was published to it: {first}"
    );
    let c = SseClient::connect(s.addr, "/sse?topic=%24stats", "");
    assert_eq!(c.status, 400);
    for path in ["/", "/status/events"] {
        assert!(get(path, "").contains(" 403 "), "{path}");
        assert!(
            get(path, "Authorization: Bearer k\r\n").contains(" 200 "),
            "{path}"
        );
    }
}
