//! Target URLs: `http://HOST:PORT/PATH?QUERY` (SSE, or HTTP POST for a publisher) and
//! `ws://HOST:PORT/PATH?QUERY` (WebSocket), with an optional `{topic}` placeholder; `https://`
//! and `wss://` are the same over TLS (see `tls`).
//!
//! Parsing resolves the host once, up front; nothing here opens a socket.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// Which wire protocol a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// `http://`: Server-Sent Events for subscribers, keep-alive POST for publishers.
    Sse,
    /// `ws://`: RFC 6455 WebSocket.
    Ws,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Sse => "sse",
            Proto::Ws => "ws",
        })
    }
}

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub proto: Proto,
    /// `HOST[:PORT]` as written, for the `Host` header.
    pub authority: String,
    pub addr: SocketAddr,
    /// Path and query, possibly containing `{topic}`.
    pub path_template: String,
    /// `https://` or `wss://` (or `--tls`): the connection speaks TLS.
    pub tls: bool,
    /// The host as written (no port, no brackets): the TLS server name unless
    /// `--tls-server-name` says otherwise.
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    Scheme,
    Host,
    Port,
    Resolve(String),
    Path,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Scheme => {
                f.write_str("expected http:// or https:// (SSE), ws:// or wss:// (WebSocket)")
            }
            TargetError::Host => f.write_str("missing host"),
            TargetError::Port => f.write_str("bad port"),
            TargetError::Resolve(h) => write!(f, "cannot resolve host {h:?}"),
            TargetError::Path => {
                f.write_str("path must not contain spaces or control characters (send it escaped)")
            }
        }
    }
}

impl std::error::Error for TargetError {}

/// Longest path template accepted; request lines beyond this are rejected by most servers.
const PATH_BYTES_MAX: usize = 4096;

impl Target {
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let (proto, tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (Proto::Sse, false, r)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (Proto::Ws, false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Proto::Sse, true, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (Proto::Ws, true, r)
        } else {
            return Err(TargetError::Scheme);
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            return Err(TargetError::Host);
        }
        if path.len() > PATH_BYTES_MAX || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(TargetError::Path);
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|_| TargetError::Resolve(host.to_owned()))?
            // Prefer IPv4: loopback benchmarks bind 127.x source addresses.
            .min_by_key(|a| a.is_ipv6())
            .ok_or_else(|| TargetError::Resolve(host.to_owned()))?;
        Ok(Target {
            proto,
            authority: authority.to_owned(),
            addr,
            path_template: path,
            tls,
            host: host.to_owned(),
        })
    }

    /// The request target for `topic` (`{topic}` replaced).
    pub fn path(&self, topic: &str) -> String {
        self.path_template.replace("{topic}", topic)
    }

    pub fn has_topic_placeholder(&self) -> bool {
        self.path_template.contains("{topic}")
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(&str, u16), TargetError> {
    // `[::1]:8080` or `[::1]`
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(TargetError::Host)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| TargetError::Port)?,
            None if after.is_empty() => default_port,
            None => return Err(TargetError::Port),
        };
        return Ok((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h, p.parse().map_err(|_| TargetError::Port)?)),
        None => Ok((authority, default_port)),
    }
}

/// Topic `i` of `k` from the `--topic-name` template (`{i}` = index).
pub fn topic_name(template: &str, i: u32) -> String {
    template.replace("{i}", &i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_protocol() {
        let t = Target::parse("http://127.0.0.1:8080/sse?topic={topic}").unwrap();
        assert_eq!(t.proto, Proto::Sse);
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path("t3"), "/sse?topic=t3");
        assert!(t.has_topic_placeholder());

        let t = Target::parse("ws://[::1]:9/ws").unwrap();
        assert_eq!(t.proto, Proto::Ws);
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert!(!t.has_topic_placeholder());

        let t = Target::parse("ws://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path("x"), "/");
        let t = Target::parse("http://127.0.0.1:1?topic=a").unwrap();
        assert_eq!(t.path_template, "/?topic=a");
        assert!(!t.tls);

        let t = Target::parse("wss://localhost/ws").unwrap();
        assert_eq!((t.proto, t.tls, t.addr.port()), (Proto::Ws, true, 443));
        assert_eq!(t.host, "localhost");
        let t = Target::parse("https://[::1]:8443/sse").unwrap();
        assert_eq!((t.proto, t.tls, t.host.as_str()), (Proto::Sse, true, "::1"));
    }

    #[test]
    fn bad_urls_say_why() {
        assert_eq!(Target::parse("ftp://x"), Err(TargetError::Scheme));
        assert_eq!(Target::parse("http:///x"), Err(TargetError::Host));
        assert_eq!(
            Target::parse("http://1.2.3.4:99999/"),
            Err(TargetError::Port)
        );
        assert_eq!(
            Target::parse("http://1.2.3.4:1/a b"),
            Err(TargetError::Path)
        );
    }

    #[test]
    fn topic_names() {
        assert_eq!(topic_name("t{i}", 7), "t7");
        assert_eq!(topic_name("fixed", 7), "fixed");
    }
}
