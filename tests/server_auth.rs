//! The security perimeter, tried as an attacker would, against a real server with real clients
//! (tokio-tungstenite, the SSE client in `common`, raw HTTP): publish keys over HTTP and
//! WebSocket, JWT subscribe/publish claims, public topics, tickets, origins and CORS, and
//! tokens that expire while a stream is open.

mod common;

use common::{header, http, publish_as, rt, ws_next, Server, SseClient, Ws};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use uringcast::proto::ws::close_code;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes";

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token signed with `secret`, expiring `exp_in_s` seconds from now.
fn token_with(secret: &str, exp_in_s: i64, subscribe: &[&str], publish: &[&str]) -> String {
    let claims = serde_json::json!({
        "sub": "tester",
        "exp": (unix_s() as i64 + exp_in_s) as u64,
        "subscribe": subscribe,
        "publish": publish,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(exp_in_s: i64, subscribe: &[&str], publish: &[&str]) -> String {
    token_with(SECRET, exp_in_s, subscribe, publish)
}

/// A server whose subscriptions need HS256 tokens, plus `args`.
fn jwt_server(args: &[&str]) -> Server {
    let mut all = vec!["--jwt-hs256-secret", SECRET];
    all.extend_from_slice(args);
    Server::start_strict(&all)
}

/// The status of `GET path` as an SSE request with `extra` header lines.
fn sse_status(s: &Server, path: &str, extra: &str) -> u16 {
    SseClient::connect(s.addr, path, extra).status
}

/// Open a WebSocket with extra header fields; `Err(status)` when the upgrade is refused.
async fn ws_open(url: &str, fields: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in fields {
        req.headers_mut().insert(
            http_name(k),
            tokio_tungstenite::tungstenite::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("ws connect: {e}"),
    }
}

fn http_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap()
}

async fn ws_connect(url: &str) -> Ws {
    ws_open(url, &[]).await.expect("upgrade accepted")
}

async fn ws_send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(WsMsg::Text(v.to_string())).await.unwrap();
}

/// Wait for the server's close frame; returns its code.
async fn ws_close_code(ws: &mut Ws, within: Duration) -> u16 {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Err(_) => panic!("no close within {within:?}"),
            Ok(Some(Ok(WsMsg::Close(Some(f))))) => return u16::from(f.code),
            Ok(Some(Ok(WsMsg::Ping(_) | WsMsg::Pong(_)))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// `POST /tickets` with `auth` and `body`: (status, answer as JSON or null).
fn ticket_request(s: &Server, auth: &str, body: &str) -> (u16, serde_json::Value) {
    let req = format!(
        "POST /tickets HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = http(s.addr, req.as_bytes());
    let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, v)
}

fn ticket(s: &Server, auth: &str, body: &str) -> String {
    let (status, v) = ticket_request(s, auth, body);
    assert_eq!(status, 200, "{v}");
    v["ticket"].as_str().expect("ticket").to_owned()
}

/// A raw publish: the status only.
fn publish_status(s: &Server, extra: &str, topic: &str) -> u16 {
    let req = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: 1\r\nConnection: close\r\n\r\nx"
    );
    http(s.addr, req.as_bytes()).0
}

#[test]
fn ws_publish_without_the_publish_key_is_refused() {
    let s = Server::start_strict(&["--publish-key", "k3y", "--ws-publish", "true"]);
    rt().block_on(async {
        let mut sub = ws_connect(&s.ws_url("/ws?topic=chat")).await;
        let mut attacker = ws_connect(&s.ws_url("/ws")).await;
        let op = serde_json::json!({"op":"publish","topic":"chat","data":"pwned"});
        ws_send(&mut attacker, op.clone()).await;
        let answer = ws_next(&mut attacker).await;
        assert_eq!(answer["op"], "error", "keyless WebSocket publish: {answer}");
        // A wrong key at the upgrade is refused outright.
        let bad = ws_open(&s.ws_url("/ws?token=nope"), &[]).await.err();
        assert_eq!(bad, Some(401));
        // Nothing reached the subscriber.
        let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(got.is_err(), "subscriber received {got:?}");
        // The key holder may.
        let mut owner = ws_open(&s.ws_url("/ws"), &[("Authorization", "Bearer k3y")])
            .await
            .unwrap();
        ws_send(&mut owner, op).await;
        assert_eq!(ws_next(&mut owner).await["op"], "published");
        assert_eq!(ws_next(&mut sub).await["data"], "pwned");
    });
}

#[test]
fn forged_expired_and_missing_tokens_get_401() {
    let s = jwt_server(&[]);
    let forged = token_with("another-secret-that-is-32-bytes-long", 60, &["*"], &["*"]);
    let expired = token(-5, &["*"], &["*"]);
    for t in [forged.as_str(), expired.as_str(), "garbage"] {
        let bearer = format!("Authorization: Bearer {t}\r\n");
        assert_eq!(sse_status(&s, "/sse?topic=a", &bearer), 401, "{t}");
        assert_eq!(sse_status(&s, &format!("/sse?topic=a&token={t}"), ""), 401);
        assert_eq!(publish_status(&s, &bearer, "a"), 401);
    }
    let c = SseClient::connect(s.addr, "/sse?topic=a", "");
    assert_eq!(c.status, 401, "no token");
    assert_eq!(header(&c.headers, "www-authenticate"), Some("Bearer"));
    rt().block_on(async {
        for t in [forged.as_str(), expired.as_str()] {
            let url = s.ws_url(&format!("/ws?topic=a&token={t}"));
            assert_eq!(ws_open(&url, &[]).await.err(), Some(401));
        }
        assert_eq!(
            ws_open(&s.ws_url("/ws?topic=a"), &[]).await.err(),
            Some(401)
        );
    });
}

#[test]
fn subscribe_claim_patterns_decide_each_topic() {
    let s = jwt_server(&["--public-topics", "lobby,open.*"]);
    let t = token(60, &["news*", "user:42"], &[]);
    let bearer = format!("Authorization: Bearer {t}\r\n");
    for (path, want) in [
        ("/sse?topic=news", 200),
        ("/sse?topic=news.eu&topic=user:42", 200),
        ("/sse?topic=sports", 403),
        ("/sse?topic=user:4", 403),
        ("/sse?topic=news.eu&topic=sports", 403),
        ("/sse?topic=lobby&topic=news.us", 200),
    ] {
        assert_eq!(sse_status(&s, path, &bearer), want, "{path}");
    }
    // Public topics need no token; the rest still do.
    assert_eq!(sse_status(&s, "/sse?topic=lobby&topic=open.x", ""), 200);
    assert_eq!(sse_status(&s, "/sse?topic=lobby&topic=news", ""), 401);
    rt().block_on(async {
        assert_eq!(
            ws_open(
                &s.ws_url("/ws?topic=sports"),
                &[("Authorization", &format!("Bearer {t}"))]
            )
            .await
            .err(),
            Some(403)
        );
        let mut ws = ws_open(&s.ws_url(&format!("/ws?topic=news&token={t}")), &[])
            .await
            .unwrap();
        for (topic, op) in [
            ("news.eu", "subscribed"),
            ("sports", "error"),
            ("lobby", "subscribed"),
        ] {
            ws_send(&mut ws, serde_json::json!({"op":"subscribe","topic":topic})).await;
            let v = ws_next(&mut ws).await;
            assert_eq!(v["op"], op, "{topic}: {v}");
        }
        // Without a token, a WebSocket may hold public topics only.
        let mut anon = ws_connect(&s.ws_url("/ws?topic=lobby")).await;
        ws_send(
            &mut anon,
            serde_json::json!({"op":"subscribe","topic":"news"}),
        )
        .await;
        let v = ws_next(&mut anon).await;
        assert_eq!(v["op"], "error");
        assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
    });
}

#[test]
fn publish_needs_the_key_or_a_publish_claim() {
    let s = jwt_server(&["--publish-key", "k3y", "--ws-publish", "true"]);
    let writer = token(60, &["news*"], &["news.eu"]);
    let reader = token(60, &["news*"], &[]);
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(publish_status(&s, &bearer(&writer), "news.eu"), 200);
    assert_eq!(publish_status(&s, &bearer(&writer), "news.us"), 403);
    assert_eq!(publish_status(&s, &bearer(&reader), "news.eu"), 403);
    assert_eq!(publish_status(&s, &bearer("k3y"), "anything"), 200);
    assert_eq!(publish_status(&s, "", "news.eu"), 401);
    // ?token= works for publishing; the cookie never does (a cross-site form would carry it).
    let q = format!("news.eu&token={writer}");
    assert_eq!(publish_status(&s, "", &q), 200);
    let cookie = format!("Cookie: uringcast_token={writer}\r\n");
    assert_eq!(publish_status(&s, &cookie, "news.eu"), 401);

    rt().block_on(async {
        let mut sub = ws_open(&s.ws_url(&format!("/ws?topic=news.eu&token={reader}")), &[])
            .await
            .unwrap();
        // A reader's WebSocket may not publish.
        ws_send(
            &mut sub,
            serde_json::json!({"op":"publish","topic":"news.eu","data":"x"}),
        )
        .await;
        let v = ws_next(&mut sub).await;
        assert_eq!(v["op"], "error", "{v}");
        // A writer's may, on its topics only.
        let auth = format!("Bearer {writer}");
        let mut w = ws_open(&s.ws_url("/ws"), &[("Authorization", &auth)])
            .await
            .unwrap();
        ws_send(
            &mut w,
            serde_json::json!({"op":"publish","topic":"news.us","data":"no"}),
        )
        .await;
        assert_eq!(ws_next(&mut w).await["op"], "error");
        ws_send(
            &mut w,
            serde_json::json!({"op":"publish","topic":"news.eu","data":"yes"}),
        )
        .await;
        let ack = ws_next(&mut w).await;
        assert_eq!(ack["op"], "published", "{ack}");
        let got = ws_next(&mut sub).await;
        assert_eq!(
            (got["data"].as_str(), got["id"].as_str()),
            (Some("yes"), ack["id"].as_str())
        );
    });
}

#[test]
fn tickets_are_single_use_expire_and_narrow() {
    let s = jwt_server(&["--publish-key", "k3y", "--ticket-ttl", "1s"]);
    let t = token(60, &["news*"], &["news.eu"]);

    // Single use: the second use is 401, on either route.
    let one = ticket(&s, &t, "");
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=news&ticket={one}"), ""),
        200
    );
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=news&ticket={one}"), ""),
        401
    );
    let two = ticket(&s, &t, "{}");
    rt().block_on(async {
        let url = s.ws_url(&format!("/ws?topic=news&ticket={two}"));
        assert!(ws_open(&url, &[]).await.is_ok());
        assert_eq!(ws_open(&url, &[]).await.err(), Some(401), "second use");
    });
    // A guessed or altered ticket is 401, and does not spend the real one.
    let three = ticket(&s, &t, "");
    let mut altered = three.clone();
    let last = if three.ends_with('0') { "1" } else { "0" };
    altered.replace_range(three.len() - 1.., last);
    for bad in [altered.as_str(), "00", &"f".repeat(48)] {
        assert_eq!(
            sse_status(&s, &format!("/sse?topic=news&ticket={bad}"), ""),
            401
        );
    }
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=news&ticket={three}"), ""),
        200
    );

    // Scope: the token's own, narrowed by the request.
    let (status, v) = ticket_request(&s, &t, r#"{"topics":["news.eu"]}"#);
    assert_eq!((status, v["expires_in"].as_u64()), (200, Some(1)));
    let narrow = v["ticket"].as_str().unwrap();
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=news.us&ticket={narrow}"), ""),
        403
    );
    let narrow = ticket(&s, &t, r#"{"topics":["news.eu"]}"#);
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=news.eu&ticket={narrow}"), ""),
        200
    );
    assert_eq!(ticket_request(&s, &t, r#"{"topics":["sports"]}"#).0, 403);
    assert_eq!(
        ticket_request(&s, &t, r#"{"topics":["*"]}"#).0,
        403,
        "wider than the token"
    );
    assert_eq!(ticket_request(&s, &t, "not json").0, 400);
    // The publish key's tickets carry every scope.
    let all = ticket(&s, "k3y", "");
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=sports&ticket={all}"), ""),
        200
    );
    // Asking needs a valid token in the header.
    assert_eq!(ticket_request(&s, "garbage", "").0, 401);
    let forged = token_with("another-secret-that-is-32-bytes-long", 60, &["*"], &["*"]);
    assert_eq!(ticket_request(&s, &forged, "").0, 401);

    // Expiry on time: 1 s.
    let late = ticket(&s, &t, "");
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=news&ticket={late}"), ""),
        401,
        "expired"
    );
}

#[test]
fn the_ticket_table_is_bounded() {
    let s = Server::start_strict(&[
        "--publish-key",
        "k3y",
        "--tickets-max",
        "2",
        "--ticket-ttl",
        "1s",
    ]);
    ticket(&s, "k3y", "");
    ticket(&s, "k3y", "");
    assert_eq!(ticket_request(&s, "k3y", "").0, 503);
    std::thread::sleep(Duration::from_millis(1_100));
    ticket(&s, "k3y", "");
}

#[test]
fn foreign_origins_are_refused_and_allowed_ones_get_cors() {
    let s = jwt_server(&[
        "--allowed-origins",
        "https://app.example,http://localhost:3000",
        "--public-topics",
        "lobby",
        "--publish-key",
        "k3y",
    ]);
    let evil = "Origin: https://evil.example\r\n";
    assert_eq!(sse_status(&s, "/sse?topic=lobby", evil), 403);
    assert_eq!(
        publish_status(&s, &format!("{evil}Authorization: Bearer k3y\r\n"), "lobby"),
        403
    );
    rt().block_on(async {
        let r = ws_open(
            &s.ws_url("/ws?topic=lobby"),
            &[("Origin", "https://evil.example")],
        )
        .await;
        assert_eq!(r.err(), Some(403));
        let r = ws_open(
            &s.ws_url("/ws?topic=lobby"),
            &[("Origin", "https://app.example")],
        )
        .await;
        assert!(r.is_ok());
        // A client that sends no Origin is not a browser page: allowed.
        assert!(ws_open(&s.ws_url("/ws?topic=lobby"), &[]).await.is_ok());
    });

    let c = SseClient::connect(
        s.addr,
        "/sse?topic=lobby",
        "Origin: https://app.example\r\n",
    );
    assert_eq!(c.status, 200);
    assert_eq!(
        header(&c.headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(header(&c.headers, "vary"), Some("Origin"));
    assert_eq!(
        header(&c.headers, "access-control-allow-credentials"),
        Some("true")
    );

    // Preflight for /publish, /tickets and /sse.
    for (path, methods) in [
        ("/publish", "POST, OPTIONS"),
        ("/tickets", "POST, OPTIONS"),
        ("/sse", "GET, OPTIONS"),
    ] {
        let req = format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: http://localhost:3000\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        );
        let (status, h, body) = http(s.addr, req.as_bytes());
        assert_eq!(status, 204, "{path}");
        assert!(body.is_empty());
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("http://localhost:3000")
        );
        assert_eq!(header(&h, "access-control-allow-methods"), Some(methods));
        let allowed = header(&h, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for need in ["authorization", "last-event-id", "content-type"] {
            assert!(allowed.contains(need), "{path}: {allowed}");
        }
        let req = format!("OPTIONS {path} HTTP/1.1\r\nHost: t\r\n{evil}Connection: close\r\n\r\n");
        assert_eq!(
            http(s.addr, req.as_bytes()).0,
            403,
            "{path} preflight from evil"
        );
    }
    // Answers to an allowed page's publish carry the echo too, refusals included.
    let req = "POST /publish?topic=lobby HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    let (status, h, _) = http(s.addr, req.as_bytes());
    assert_eq!(status, 401);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn the_cookie_is_read_only_under_an_origin_list() {
    let t = token(60, &["news"], &[]);
    let cookie = format!("Cookie: theme=dark; uringcast_token={t}\r\n");
    let listed = jwt_server(&["--allowed-origins", "https://app.example"]);
    assert_eq!(sse_status(&listed, "/sse?topic=news", &cookie), 200);
    // Under `*`, any page could make the browser send it: not read.
    let any = jwt_server(&[]);
    assert_eq!(sse_status(&any, "/sse?topic=news", &cookie), 401);
    let c = SseClient::connect(
        any.addr,
        "/sse?topic=news",
        &format!("Authorization: Bearer {t}\r\n"),
    );
    assert_eq!(
        (c.status, header(&c.headers, "access-control-allow-origin")),
        (200, Some("*"))
    );
}

#[test]
fn a_token_expiring_mid_stream_ends_sse_and_closes_ws_1008_unless_refreshed() {
    let s = jwt_server(&["--tick", "10ms", "--publish-key", "k3y"]);
    // exp is in whole seconds: this token ends 1 to 2 s from now.
    let short = token(2, &["news"], &[]);
    let start = Instant::now();
    let mut c = SseClient::connect(
        s.addr,
        "/sse?topic=news",
        &format!("Authorization: Bearer {short}\r\n"),
    );
    assert_eq!(c.status, 200);
    c.set_timeout(Duration::from_secs(6));
    while c.next().is_some() {}
    let ended = start.elapsed();
    assert!(
        ended >= Duration::from_millis(900) && ended < Duration::from_secs(4),
        "SSE ended after {ended:?}"
    );

    rt().block_on(async {
        let start = Instant::now();
        let url = s.ws_url(&format!(
            "/ws?topic=news&token={}",
            token(2, &["news"], &[])
        ));
        let mut expiring = ws_open(&url, &[]).await.unwrap();
        let mut refreshed = ws_open(&url, &[]).await.unwrap();
        ws_send(
            &mut refreshed,
            serde_json::json!({"op":"refresh","token": token(60, &["news"], &[])}),
        )
        .await;
        let v = ws_next(&mut refreshed).await;
        assert_eq!(v["op"], "refreshed", "{v}");
        assert!(v["expires_in"].as_u64().unwrap() >= 58, "{v}");
        // A refresh that would drop a held topic, or a bad token, is refused.
        ws_send(
            &mut refreshed,
            serde_json::json!({"op":"refresh","token": token(60, &["other"], &[])}),
        )
        .await;
        assert_eq!(ws_next(&mut refreshed).await["op"], "error");
        ws_send(
            &mut refreshed,
            serde_json::json!({"op":"refresh","token": "forged"}),
        )
        .await;
        assert_eq!(ws_next(&mut refreshed).await["op"], "error");

        let code = ws_close_code(&mut expiring, Duration::from_secs(5)).await;
        assert_eq!(code, close_code::POLICY_VIOLATION);
        let closed = start.elapsed();
        assert!(
            closed >= Duration::from_millis(900),
            "closed after {closed:?}"
        );
        // The refreshed one outlives the first token and still gets messages.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let id = publish_as(s.addr, Some("k3y"), "news", "still here");
        let got = ws_next(&mut refreshed).await;
        assert_eq!(
            (got["data"].as_str(), got["id"].as_str()),
            (Some("still here"), Some(id.as_str()))
        );
    });
}

#[test]
fn without_any_key_serve_makes_one_and_prints_a_working_curl_command() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringcast"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let curl = loop {
        let line = lines.next().expect("stderr line").unwrap();
        if let Some(cmd) = line.strip_prefix("uringcast: publish with: ") {
            break cmd.to_owned();
        }
    };
    let _kill = KillOnDrop(child);
    // curl -H 'Authorization: Bearer KEY' --data-binary hello 'http://ADDR/publish?topic=news'
    let parts: Vec<&str> = curl.split('\'').collect();
    let key = parts[1].strip_prefix("Authorization: Bearer ").unwrap();
    let url = parts[3].strip_prefix("http://").unwrap();
    let (addr, path) = url.split_once('/').unwrap();
    assert_eq!(path, "publish?topic=news");
    assert_eq!(key.len(), 32, "128 bits in hex: {key}");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let req = |auth: &str| {
        format!("POST /{path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    };
    assert_eq!(
        http(addr, req("").as_bytes()).0,
        401,
        "keyless publish on loopback"
    );
    let with_key = req(&format!("Authorization: Bearer {key}\r\n"));
    assert_eq!(http(addr, with_key.as_bytes()).0, 200);
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bad_jwt_key_file_stops_the_start_naming_the_key() {
    for (file, says) in [
        ("/nonexistent/uringcast.pem", "cannot read"),
        (concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"), "PEM"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_uringcast"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--jwt-public-key-file",
                file,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("jwt_public_key_file") && err.contains(says),
            "{err}"
        );
    }
}

#[test]
fn eddsa_tokens_from_a_public_key_file() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let public = format!("{dir}/tests/keys/ed25519-public.pem");
    let s = Server::start_strict(&["--jwt-public-key-file", &public]);
    let private = std::fs::read(format!("{dir}/tests/keys/ed25519-private.pem")).unwrap();
    let claims = serde_json::json!({"exp": unix_s() + 60, "subscribe": ["x"]});
    let t = encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(sse_status(&s, &format!("/sse?topic=x&token={t}"), ""), 200);
    assert_eq!(sse_status(&s, &format!("/sse?topic=y&token={t}"), ""), 403);
    // An HS256 token signed with the public key's text is not accepted (algorithm confusion).
    let pem = std::fs::read(&public).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&pem),
    )
    .unwrap();
    assert_eq!(
        sse_status(&s, &format!("/sse?topic=x&token={confused}"), ""),
        401
    );
}
