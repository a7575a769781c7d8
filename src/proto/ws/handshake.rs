//! The opening handshake (RFC 6455 §4) for both roles, over already-parsed HTTP parts.
//!
//! It takes the request's method, minor version and headers as plain values (any iterator of
//! `(name, value)` pairs, e.g. mapped from `httparse::Header`), so it does not depend on how the
//! HTTP layer stores them, and it writes responses and requests into a caller's `Vec`. It never
//! draws the client's nonce itself: the caller passes 16 fresh random bytes to [`client_key`].
//! [`HandshakeError::status`] is the one place that picks the HTTP answer to a bad upgrade.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The only protocol version this crate speaks (`Sec-WebSocket-Version`, §4.1).
pub const WS_VERSION: &str = "13";

/// Appended to the client's key before hashing (§1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade was refused (server role) or a server's answer was rejected (client role).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Method is not GET (§4.1 item 2).
    MethodNotGet,
    /// HTTP/1.0: the handshake needs HTTP/1.1 or later (§4.1 item 2).
    HttpVersion,
    /// No `Host` header, or more than one (§4.1 item 4).
    BadHost,
    /// No `Upgrade` header with the `websocket` token (§4.2.1 item 3).
    NotUpgrade,
    /// `Connection` header without the `upgrade` token (§4.2.1 item 4).
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes (§4.2.1 item 5).
    BadKey,
    /// `Sec-WebSocket-Version` missing or not 13; answered with 426 and the version we
    /// speak (§4.2.2, §4.4).
    UnsupportedVersion,
    /// Client role: the server answered with this status instead of 101 (§4.1).
    NotSwitching(u16),
    /// Client role: `Sec-WebSocket-Accept` missing or not the hash of our key (§4.1).
    BadAccept,
    /// Client role: the server chose a subprotocol we did not offer (§4.1).
    UnexpectedProtocol,
    /// Client role: the server chose an extension; we offer none (§4.1).
    UnexpectedExtension,
}

impl HandshakeError {
    /// The HTTP status the server answers with. Client-role variants are never sent; they map
    /// to 400 only so every variant has an answer.
    pub const fn status(self) -> u16 {
        match self {
            HandshakeError::MethodNotGet => 405,
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HttpVersion
            | HandshakeError::BadHost
            | HandshakeError::ConnectionNotUpgrade
            | HandshakeError::BadKey
            | HandshakeError::NotSwitching(_)
            | HandshakeError::BadAccept
            | HandshakeError::UnexpectedProtocol
            | HandshakeError::UnexpectedExtension => 400,
        }
    }

    /// Headers the answer must carry besides the status line (each ending in CRLF).
    pub const fn response_headers(self) -> &'static str {
        match self.status() {
            405 => "Allow: GET\r\n",
            // 426 must name the protocol to upgrade to; §4.4 asks for the version we speak.
            426 => "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
            _ => "",
        }
    }

    /// Append the whole refusal (status line, headers, empty body, `Connection: close` unless
    /// 426 says `Upgrade`) to `out`.
    pub fn write_response(self, out: &mut Vec<u8>) {
        let reason = match self.status() {
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            _ => "Bad Request",
        };
        let close = if self.status() == 426 {
            ""
        } else {
            "Connection: close\r\n"
        };
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {reason}\r\n{}{close}Content-Length: 0\r\n\r\n",
                self.status(),
                self.response_headers()
            )
            .as_bytes(),
        );
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket handshake: {self:?} ({})", self.status())
    }
}

impl std::error::Error for HandshakeError {}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)) (§1.3).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 base64 characters, so this cannot fail.
    let written = STANDARD.encode_slice(digest, &mut out).unwrap_or(0);
    debug_assert_eq!(written, 28);
    out
}

/// The client's `Sec-WebSocket-Key`: base64 of 16 random bytes the caller drew (§4.1 item 7).
pub fn client_key(nonce: [u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    let written = STANDARD.encode_slice(nonce, &mut out).unwrap_or(0);
    debug_assert_eq!(written, 24);
    out
}

/// A valid upgrade request, ready to be answered with [`Accepted::write_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'h, 's> {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: [u8; 28],
    /// The subprotocol chosen from the server's list, if the client offered one of them.
    pub protocol: Option<&'s str>,
    /// The `Origin` header, for the caller's policy (§4.2.2 item 4; §10.2).
    pub origin: Option<&'h [u8]>,
}

impl Accepted<'_, '_> {
    /// Append the `101 Switching Protocols` answer (§4.2.2 item 5) to `out`.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        self.write_response_with_extensions(out, None)
    }

    /// The same, with a `Sec-WebSocket-Extensions` field naming the agreed extensions (§9.1).
    pub fn write_response_with_extensions(&self, out: &mut Vec<u8>, extensions: Option<&str>) {
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        out.extend_from_slice(&self.accept);
        out.extend_from_slice(b"\r\n");
        if let Some(p) = self.protocol {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(e) = extensions {
            out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Trim optional whitespace (SP, HTAB) around a header value or list element.
fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &v[start..=end]
}

/// Elements of a comma-separated header list, trimmed, empty ones skipped.
fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

fn has_token(v: &[u8], token: &str) -> bool {
    list(v).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Check an upgrade request (RFC 6455 §4.2.1) and choose a subprotocol: the first of the
/// client's offers (in its order) that `supported` contains.
///
/// `http_minor` is the `x` of `HTTP/1.x`; `headers` yields each header line as
/// `(name, value)`, names in any case. Repeated `Sec-WebSocket-Protocol` lines are one list.
pub fn server_handshake<'h, 's, I>(
    method: &str,
    http_minor: u8,
    headers: I,
    supported: &[&'s str],
) -> Result<Accepted<'h, 's>, HandshakeError>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])>,
{
    if method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if http_minor < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let mut hosts = 0u32;
    let mut upgrade = false;
    let mut connection = false;
    let mut key: Option<&[u8]> = None;
    let mut keys = 0u32;
    let mut version = false;
    let mut protocol = None;
    let mut origin = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys += 1;
            key = Some(trim(value));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = trim(value) == WS_VERSION.as_bytes();
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if protocol.is_none() {
                protocol = list(value)
                    .find_map(|offer| supported.iter().copied().find(|s| s.as_bytes() == offer));
            }
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(trim(value));
        }
    }
    if hosts != 1 {
        return Err(HandshakeError::BadHost);
    }
    if !upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    if !connection {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    let key = match key {
        Some(k) if keys == 1 && k.len() == 24 => k,
        _ => return Err(HandshakeError::BadKey),
    };
    let mut nonce = [0u8; 18];
    if STANDARD.decode_slice(key, &mut nonce) != Ok(16) {
        return Err(HandshakeError::BadKey);
    }
    if !version {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(Accepted {
        accept: accept_key(key),
        protocol,
        origin,
    })
}

/// Append a client's upgrade request (§4.1) to `out`. `key_b64` comes from [`client_key`] with
/// a fresh random nonce; `protocols` are offered in order of preference; `extra_headers`
/// (e.g. `Origin`, `Authorization`) are written as given. No argument may contain CR or LF.
pub fn client_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key_b64: &str,
    protocols: &[&str],
    extra_headers: &[(&str, &str)],
) {
    debug_assert!(
        [host, path, key_b64]
            .iter()
            .chain(protocols)
            .chain(extra_headers.iter().flat_map(|(n, v)| [n, v]))
            .all(|s| !s.contains(['\r', '\n'])),
        "header injection"
    );
    let mut push = |parts: &[&str]| {
        parts
            .iter()
            .for_each(|p| out.extend_from_slice(p.as_bytes()))
    };
    push(&["GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\n"]);
    push(&["Upgrade: websocket\r\nConnection: Upgrade\r\n"]);
    push(&[
        "Sec-WebSocket-Key: ",
        key_b64,
        "\r\nSec-WebSocket-Version: 13\r\n",
    ]);
    if let Some((first, rest)) = protocols.split_first() {
        push(&["Sec-WebSocket-Protocol: ", first]);
        for p in rest {
            push(&[", ", p]);
        }
        push(&["\r\n"]);
    }
    for (name, value) in extra_headers {
        push(&[name, ": ", value, "\r\n"]);
    }
    push(&["\r\n"]);
}

/// Check the server's answer to [`client_request`] (§4.1, the client's checks): status 101,
/// `Upgrade: websocket`, `Connection: upgrade`, the right `Sec-WebSocket-Accept` for `key_b64`,
/// no extension, and a subprotocol (returned) only if it is one of `offered`.
pub fn validate_server_response<'h, 's, I>(
    status: u16,
    headers: I,
    key_b64: &[u8],
    offered: &[&'s str],
) -> Result<Option<&'s str>, HandshakeError>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])>,
{
    if status != 101 {
        return Err(HandshakeError::NotSwitching(status));
    }
    let want = accept_key(key_b64);
    let (mut upgrade, mut connection, mut accepted) = (false, false, false);
    let mut protocol = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = trim(value) == want;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            if list(value).next().is_some() {
                return Err(HandshakeError::UnexpectedExtension);
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            let chosen = trim(value);
            match offered.iter().copied().find(|p| p.as_bytes() == chosen) {
                Some(p) if protocol.is_none() => protocol = Some(p),
                _ => return Err(HandshakeError::UnexpectedProtocol),
            }
        }
    }
    if !upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    if !connection {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    if !accepted {
        return Err(HandshakeError::BadAccept);
    }
    Ok(protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request<'a>() -> Vec<(&'a str, &'a [u8])> {
        vec![
            ("Host", b"server.example.com"),
            ("Upgrade", b"websocket"),
            ("Connection", b"Upgrade"),
            ("Sec-WebSocket-Key", KEY.as_bytes()),
            ("Origin", b"http://example.com"),
            ("Sec-WebSocket-Protocol", b"chat, superchat"),
            ("Sec-WebSocket-Version", b"13"),
        ]
    }

    fn with<'a>(name: &str, value: Option<&'a [u8]>) -> Vec<(&'a str, &'a [u8])> {
        let mut h: Vec<_> = request()
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .collect();
        if let Some(v) = value {
            // Names are case-insensitive: use an odd spelling.
            let odd: &'static str = match name {
                "Upgrade" => "UPGRADE",
                "Connection" => "connection",
                "Sec-WebSocket-Key" => "sec-websocket-KEY",
                "Sec-WebSocket-Version" => "Sec-Websocket-Version",
                "Sec-WebSocket-Protocol" => "sec-websocket-protocol",
                _ => "host",
            };
            h.push((odd, v));
        }
        h
    }

    /// RFC 6455 §1.3: the worked example of the accept hash.
    #[test]
    fn accept_key_example_1_3() {
        assert_eq!(&accept_key(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(&client_key(*b"the sample nonce"), KEY.as_bytes());
    }

    /// RFC 6455 §4.2.1/§4.2.2: the §1.3 request is accepted, the first supported offer is
    /// chosen, Origin is exposed, and the 101 answer carries the accept value and protocol.
    #[test]
    fn accepts_valid_request_4_2_1() {
        let ok = server_handshake("GET", 1, request(), &["superchat", "chat"]).unwrap();
        assert_eq!(ok.protocol, Some("chat")); // the client's order wins
        assert_eq!(ok.origin, Some(&b"http://example.com"[..]));
        let mut out = Vec::new();
        ok.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Protocol: chat\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let none = server_handshake("GET", 1, request(), &["mqtt"]).unwrap();
        assert_eq!(none.protocol, None);
        let mut out = Vec::new();
        none.write_response(&mut out);
        assert!(!String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Protocol"));
        // Token lists and case: "keep-alive, Upgrade" and "WebSocket" are fine.
        let mut h = with("Connection", Some(b"keep-alive, Upgrade"));
        h.push(("Upgrade", b"h2c, WebSocket"));
        assert!(server_handshake("GET", 1, h, &[]).is_ok());
    }

    /// RFC 6455 §4.2.1: each requirement, and the status its absence gets.
    #[test]
    fn rejects_bad_requests_4_2_1() {
        let check = |h: Vec<(&str, &[u8])>, want: HandshakeError, status: u16| {
            let got = server_handshake("GET", 1, h, &[]).unwrap_err();
            assert_eq!(got, want);
            assert_eq!(got.status(), status);
        };
        assert_eq!(
            server_handshake("POST", 1, request(), &[]),
            Err(HandshakeError::MethodNotGet)
        );
        assert_eq!(
            server_handshake("GET", 0, request(), &[]),
            Err(HandshakeError::HttpVersion)
        );
        check(with("Host", None), HandshakeError::BadHost, 400);
        for upgrade in [None, Some(&b"h2c"[..])] {
            check(with("Upgrade", upgrade), HandshakeError::NotUpgrade, 426);
        }
        check(
            with("Connection", Some(b"keep-alive")),
            HandshakeError::ConnectionNotUpgrade,
            400,
        );
        for key in [
            None,
            Some(&b"dGhlIHNhbXBsZSBub25jZQ"[..]),
            // 24 characters of base64, but 17 bytes would be needed / 15 decoded: not 16.
            Some(b"dGhlIHNhbXBsZSBub25j===="),
            Some(b"!!!!!!!!!!!!!!!!!!!!!!=="),
        ] {
            check(with("Sec-WebSocket-Key", key), HandshakeError::BadKey, 400);
        }
        let mut twice = request();
        twice.push(("Sec-WebSocket-Key", KEY.as_bytes()));
        check(twice, HandshakeError::BadKey, 400);
        for version in [None, Some(&b"8"[..])] {
            let h = with("Sec-WebSocket-Version", version);
            check(h, HandshakeError::UnsupportedVersion, 426);
        }
    }

    /// RFC 6455 §4.4: a version mismatch is answered 426 with the version we speak.
    #[test]
    fn refusal_responses_4_4() {
        let mut out = Vec::new();
        HandshakeError::UnsupportedVersion.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let mut out = Vec::new();
        HandshakeError::BadKey.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert_eq!(
            HandshakeError::MethodNotGet.response_headers(),
            "Allow: GET\r\n"
        );
    }

    /// Parse our own request/response text back into (name, value) pairs.
    fn header_pairs(text: &str) -> Vec<(&str, &[u8])> {
        text.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n, v.as_bytes()))
            .collect()
    }

    /// RFC 6455 §4.1: our client request passes our server's checks, and the server's answer
    /// passes the client's checks; a wrong accept, status, protocol or extension fails.
    #[test]
    fn client_round_trip_4_1() {
        let key = client_key([7; 16]);
        let key = std::str::from_utf8(&key).unwrap();
        let mut req = Vec::new();
        client_request(
            &mut req,
            "h:1",
            "/ws?topic=a",
            key,
            &["v2", "v1"],
            &[("Origin", "x")],
        );
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /ws?topic=a HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.ends_with("Origin: x\r\n\r\n"));
        let ok = server_handshake("GET", 1, header_pairs(&req), &["v1"]).unwrap();
        assert_eq!(ok.protocol, Some("v1"));
        let mut resp = Vec::new();
        ok.write_response(&mut resp);
        let resp = String::from_utf8(resp).unwrap();
        let offered = ["v2", "v1"];
        let pairs = header_pairs(&resp);
        assert_eq!(
            validate_server_response(101, pairs.clone(), key.as_bytes(), &offered),
            Ok(Some("v1"))
        );
        assert_eq!(
            validate_server_response(200, pairs.clone(), key.as_bytes(), &offered),
            Err(HandshakeError::NotSwitching(200))
        );
        assert_eq!(
            validate_server_response(101, pairs.clone(), KEY.as_bytes(), &offered),
            Err(HandshakeError::BadAccept)
        );
        assert_eq!(
            validate_server_response(101, pairs.clone(), key.as_bytes(), &["v2"]),
            Err(HandshakeError::UnexpectedProtocol)
        );
        let mut ext = pairs.clone();
        ext.push(("Sec-WebSocket-Extensions", b"permessage-deflate"));
        assert_eq!(
            validate_server_response(101, ext, key.as_bytes(), &offered),
            Err(HandshakeError::UnexpectedExtension)
        );
        let no_upgrade: Vec<_> = pairs
            .iter()
            .copied()
            .filter(|(n, _)| *n != "Upgrade")
            .collect();
        assert_eq!(
            validate_server_response(101, no_upgrade, key.as_bytes(), &offered),
            Err(HandshakeError::NotUpgrade)
        );
    }
}
