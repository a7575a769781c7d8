//! Server configuration: one table of keys, read from defaults, then a TOML file, then
//! `URINGCAST_*` environment variables, then command-line flags (each later source overrides the
//! earlier ones).
//!
//! Every key is declared once in the `config_keys!` table below; the table generates the struct,
//! its defaults, the parser for each source, the `--flag` list and the example file, so the four
//! can never disagree. A bad value is an error that names the key and the source it came from;
//! nothing here panics on input.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::EngineConfig;

/// Where a value came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Env,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::File => "config file",
            Source::Env => "environment",
            Source::Flag => "command line",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownKey {
        key: String,
        source: Source,
    },
    BadValue {
        key: &'static str,
        value: String,
        source: Source,
        expected: &'static str,
    },
    Invalid {
        key: &'static str,
        reason: String,
    },
    File {
        path: String,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownKey { key, source } => {
                write!(f, "unknown config key `{key}` in {source}")
            }
            ConfigError::BadValue {
                key,
                value,
                source,
                expected,
            } => write!(
                f,
                "bad value {value:?} for `{key}` (flag --{}) in {source}: expected {expected}",
                key.replace('_', "-")
            ),
            ConfigError::Invalid { key, reason } => {
                write!(
                    f,
                    "invalid `{key}` (flag --{}): {reason}",
                    key.replace('_', "-")
                )
            }
            ConfigError::File { path, reason } => write!(f, "config file {path}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value type a config key can hold: parsed from text (env, flags, TOML strings) and shown back
/// in the same syntax (example file, `--help` defaults).
pub trait ConfigValue: Sized {
    /// What the parser accepts, for error messages.
    const EXPECTED: &'static str;
    fn parse_value(text: &str) -> Option<Self>;
    fn show(&self) -> String;
}

impl ConfigValue for usize {
    const EXPECTED: &'static str = "a non-negative integer";
    fn parse_value(text: &str) -> Option<Self> {
        text.trim().replace('_', "").parse().ok()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse_value(text: &str) -> Option<Self> {
        match text.trim() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for SocketAddr {
    const EXPECTED: &'static str = "an address like 127.0.0.1:8080 or [::1]:8080";
    fn parse_value(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for Option<SocketAddr> {
    const EXPECTED: &'static str = "an address like 127.0.0.1:9090, or empty for none";
    fn parse_value(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Some(None);
        }
        text.parse().ok().map(Some)
    }
    fn show(&self) -> String {
        self.map(|a| a.to_string()).unwrap_or_default()
    }
}

impl ConfigValue for Option<String> {
    const EXPECTED: &'static str = "a string (empty for none)";
    fn parse_value(text: &str) -> Option<Self> {
        Some((!text.is_empty()).then(|| text.to_owned()))
    }
    fn show(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

impl ConfigValue for Vec<String> {
    const EXPECTED: &'static str = "a comma-separated list";
    fn parse_value(text: &str) -> Option<Self> {
        Some(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
    fn show(&self) -> String {
        self.join(",")
    }
}

/// A span of time written with a unit: `250ms`, `1s`, `30s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl Millis {
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl ConfigValue for Millis {
    const EXPECTED: &'static str = "a duration with a unit, like 100ms, 1s, 30s, 5m or 1h";
    fn parse_value(text: &str) -> Option<Self> {
        let text = text.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let number: u64 = number.parse().ok()?;
        let scale = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        number.checked_mul(scale).map(Millis)
    }
    fn show(&self) -> String {
        let ms = self.0;
        if ms != 0 && ms % 3_600_000 == 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms != 0 && ms % 60_000 == 0 {
            format!("{}m", ms / 60_000)
        } else if ms != 0 && ms % 1_000 == 0 {
            format!("{}s", ms / 1_000)
        } else {
            format!("{ms}ms")
        }
    }
}

/// A size in bytes: `512`, `64KiB`, `1MiB`, `16MiB`, `1GiB` (binary units; `KB`/`MB` are taken
/// as the same binary units because that is what every operator means for buffer sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub usize);

impl ConfigValue for ByteSize {
    const EXPECTED: &'static str = "a size like 4096, 64KiB, 1MiB or 1GiB";
    fn parse_value(text: &str) -> Option<Self> {
        let text = text.trim().replace('_', "");
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let number: usize = number.parse().ok()?;
        let scale: usize = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "KB" | "K" | "k" => 1 << 10,
            "MiB" | "MB" | "M" => 1 << 20,
            "GiB" | "GB" | "G" => 1 << 30,
            _ => return None,
        };
        number.checked_mul(scale).map(ByteSize)
    }
    fn show(&self) -> String {
        let b = self.0;
        if b != 0 && b % (1 << 30) == 0 {
            format!("{}GiB", b >> 30)
        } else if b != 0 && b % (1 << 20) == 0 {
            format!("{}MiB", b >> 20)
        } else if b != 0 && b % (1 << 10) == 0 {
            format!("{}KiB", b >> 10)
        } else {
            b.to_string()
        }
    }
}

macro_rules! config_keys {
    ($( $(#[doc = $doc:literal])+ $key:ident : $ty:ty = $default:expr; )+) => {
        /// The validated server configuration. See `uringcast.example.toml` for every key.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $key: $ty, )+
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $key: $default, )+ }
            }
        }

        impl Config {
            /// Every key, in table order: (name, one-line help).
            pub const KEYS: &'static [(&'static str, &'static str)] = &[
                $( (stringify!($key), concat!($($doc),+)), )+
            ];

            /// Set one key from its text form.
            pub fn set(&mut self, key: &str, value: &str, source: Source) -> Result<(), ConfigError> {
                match key {
                    $( stringify!($key) => {
                        self.$key = <$ty as ConfigValue>::parse_value(value).ok_or_else(|| {
                            ConfigError::BadValue {
                                key: stringify!($key),
                                value: value.to_owned(),
                                source,
                                expected: <$ty as ConfigValue>::EXPECTED,
                            }
                        })?;
                        Ok(())
                    } )+
                    _ => Err(ConfigError::UnknownKey { key: key.to_owned(), source }),
                }
            }

            /// The value of one key in its text form (for the example file and `--help`).
            pub fn get(&self, key: &str) -> Option<String> {
                match key {
                    $( stringify!($key) => Some(self.$key.show()), )+
                    _ => None,
                }
            }
        }
    };
}

config_keys! {
    /// Address to listen on.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    /// Worker threads, one io_uring event loop each; 0 = number of CPU cores.
    workers: usize = 0;
    /// Connections the server is sized to hold; sets how many rings each worker may open (it starts with one).
    connections_max: usize = 100_000;
    /// Registered-file-table entries per ring (at most RLIMIT_NOFILE; 0 = derive from it).
    files_per_ring: usize = 0;
    /// A request head must arrive in full within this time (slowloris defence).
    request_timeout: Millis = Millis(10_000);
    /// Interval of SSE heartbeat comments and WebSocket pings.
    heartbeat_interval: Millis = Millis(30_000);
    /// A WebSocket that does not answer a ping within this time is closed.
    pong_timeout: Millis = Millis(10_000);
    /// A WebSocket on /ws that subscribes to nothing is closed after this time.
    idle_timeout: Millis = Millis(300_000);
    /// On SIGTERM/SIGINT, open connections get this long to drain before exit.
    drain_timeout: Millis = Millis(5_000);
    /// Reconnect delay suggested to SSE clients (`retry:` field).
    sse_retry: Millis = Millis(2_000);
    /// End each SSE stream after this long (clients reconnect and resume); 0s = never.
    sse_stream_lifetime: Millis = Millis(0);
    /// A long poll (GET /poll) with nothing to answer is held this long, then answered empty.
    poll_timeout: Millis = Millis(25_000);
    /// Path of the WebSocket echo endpoint (conformance tests, echo benchmark); empty = off.
    echo_path: Option<String> = None;
    /// Offer permessage-deflate (RFC 7692) to WebSocket clients that ask for it.
    ws_deflate: bool = false;
    /// Let WebSocket clients publish with {"op":"publish",...} messages (each still needs publish rights).
    ws_publish: bool = false;
    /// Let anyone who can reach the server publish, with no key or token.
    publish_open: bool = false;
    /// Bearer key that may publish (and subscribe, and get tickets) on every topic; with no key, no JWT key and publish_open false, serve generates one and prints it.
    publish_key: Option<String> = None;
    /// HMAC secret (32+ bytes) of HS256 JWTs; with a JWT key set, subscribing needs a token.
    jwt_hs256_secret: Option<String> = None;
    /// PEM file with the public key of RS256, ES256 or EdDSA JWTs; with a JWT key set, subscribing needs a token.
    jwt_public_key_file: Option<String> = None;
    /// Topic patterns (name, prefix*, *) anyone may subscribe to without a token.
    public_topics: Vec<String> = Vec::new();
    /// Cookie that may carry the JWT for /sse, /ws and /poll; read only when allowed_origins lists origins; empty = none.
    auth_cookie: Option<String> = Some("uringcast_token".to_owned());
    /// Origins (https://host[:port], or null) whose pages may use /sse, /ws, /poll, /publish and /tickets; * = any.
    allowed_origins: Vec<String> = vec!["*".to_owned()];
    /// Lifetime of a ticket from POST /tickets.
    ticket_ttl: Millis = Millis(30_000);
    /// Most tickets issued within one ticket_ttl; POST /tickets answers 503 beyond.
    tickets_max: usize = 10_000;
    /// WebSocket subprotocols the server accepts, in preference order.
    ws_protocols: Vec<String> = Vec::new();
    /// Messages kept per topic for Last-Event-ID replay.
    history_messages: usize = 1_000;
    /// Bytes of message data kept per topic for replay.
    history_bytes: ByteSize = ByteSize(256 << 10);
    /// Topics the server holds at once.
    topics_max: usize = 10_000;
    /// Topics one connection may subscribe to.
    topics_per_conn_max: usize = 64;
    /// Largest published message (HTTP body or WebSocket publish data).
    publish_bytes_max: ByteSize = ByteSize(1 << 20);
    /// A WebSocket message sent in fragments must be complete within this time.
    ws_message_timeout: Millis = Millis(10_000);
    /// Largest WebSocket message a client may send (control messages; echo payloads).
    ws_message_bytes_max: ByteSize = ByteSize(64 << 10);
    /// Bytes queued to one connection before it counts as a slow consumer and is closed.
    queue_bytes_max: ByteSize = ByteSize(4 << 20);
    /// Longest request line (414 beyond).
    request_line_bytes_max: ByteSize = ByteSize(8 << 10);
    /// Largest request head (431 beyond).
    head_bytes_max: ByteSize = ByteSize(16 << 10);
    /// Most header fields in a request (431 beyond).
    headers_max: usize = 64;
    /// Timer wheel tick; timers fire with this granularity.
    tick: Millis = Millis(10);
    /// Connections one source IP (IPv6: one /64) may hold; more are answered 503 and closed; 0 = unlimited.
    connections_per_ip_max: usize = 0;
    /// New connections one source IP (IPv6: one /64) may open per second, in bursts of as many; more are answered 429 and closed; 0 = unlimited.
    handshakes_per_ip_per_sec: usize = 0;
    /// Bearer key that opens /metrics to any peer (`Authorization: Bearer <key>`); empty = none.
    admin_key: Option<String> = None;
    /// Answer /metrics to loopback peers without the admin key (off: only the key opens it).
    metrics_loopback: bool = true;
    /// A second address that serves /metrics, /topics and the status page (to anyone who reaches it) and /healthz only; empty = none.
    admin_listen: Option<SocketAddr> = None;
    /// PEM file with the TLS certificate chain (leaf first); with tls_key, `listen` serves https:// and wss:// only; SIGHUP reloads both files; empty = plain TCP.
    tls_cert: Option<String> = None;
    /// PEM file with the private key of tls_cert (PKCS#8, PKCS#1 or SEC1).
    tls_key: Option<String> = None;
    /// Run as one node of a cluster sharing publishes, ids and history through Redis or Valkey at this URL (`redis://HOST:PORT/DB`, see docs/cluster.md); empty = a single node with no Redis.
    cluster_redis_url: Option<String> = None;
}

impl Config {
    /// Apply a TOML document. Values may be TOML strings, integers or booleans; strings use the
    /// same syntax as flags (`"30s"`, `"1MiB"`), integers are taken as written.
    pub fn apply_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path.to_owned(),
                reason: e.message().to_owned(),
            })?;
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            self.set(&key, &text, Source::File)?;
        }
        Ok(())
    }

    /// Apply `URINGCAST_<KEY>` variables from `vars` (normally `std::env::vars()`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("URINGCAST_") else {
                continue;
            };
            // URINGCAST_LOG and the like belong to other parts; only known keys are config.
            let key = key.to_ascii_lowercase();
            if Self::KEYS.iter().any(|(k, _)| *k == key) {
                self.set(&key, &value, Source::Env)?;
            }
        }
        Ok(())
    }

    /// Check relations between keys once, after all sources are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.connections_max == 0 {
            return invalid("connections_max", "must be at least 1");
        }
        if self.tick.0 == 0 || self.tick.0 > 1_000 {
            return invalid("tick", "must be between 1ms and 1s");
        }
        for (key, value) in [
            ("request_timeout", self.request_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("pong_timeout", self.pong_timeout),
            ("idle_timeout", self.idle_timeout),
            ("ws_message_timeout", self.ws_message_timeout),
            ("poll_timeout", self.poll_timeout),
        ] {
            if value < self.tick {
                return invalid(key, "must be at least one `tick`");
            }
        }
        if let Some(path) = &self.echo_path {
            if !path.starts_with('/') {
                return invalid("echo_path", "must start with '/'");
            }
            if super::route::BUILTIN_PATHS.contains(&path.as_str())
                || path.starts_with(super::route::TOPIC_PREFIX)
            {
                return invalid("echo_path", "collides with a built-in route");
            }
        }
        if matches!(&self.publish_key, Some(k) if k.chars().any(|c| c.is_ascii_whitespace())) {
            return invalid("publish_key", "must not contain whitespace");
        }
        if matches!(self.admin_listen, Some(a) if a == self.listen && a.port() != 0) {
            return invalid("admin_listen", "must differ from listen");
        }
        if matches!(&self.admin_key, Some(k) if k.chars().any(|c| c.is_ascii_whitespace())) {
            return invalid("admin_key", "must not contain whitespace");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return invalid("tls_key", "is needed with tls_cert"),
            (None, Some(_)) => return invalid("tls_cert", "is needed with tls_key"),
            _ => {}
        }
        if self.cluster_redis_url.is_some() && self.tls_cert.is_some() {
            // Cluster replies are queued below the TLS layer today; terminate TLS at the
            // proxy in front of the nodes (docs/cluster.md) until they are not.
            return invalid(
                "tls_cert",
                "is not supported together with cluster_redis_url yet: terminate TLS at a proxy",
            );
        }
        if let Some(url) = &self.cluster_redis_url {
            let ok = url.starts_with("redis://") || url.starts_with("redis+unix://");
            if !ok || redis::Client::open(url.as_str()).is_err() {
                return invalid(
                    "cluster_redis_url",
                    "must be a Redis URL like redis://127.0.0.1:6379/0",
                );
            }
        }
        if self.history_messages == 0 {
            return invalid("history_messages", "must be at least 1");
        }
        // Every topic may fill its history, so this product is the history's worst case; it
        // must fit in memory with room left for the connections themselves.
        let worst = self.history_worst_case_bytes();
        if let Some(total) = mem_total_bytes() {
            if worst > total / 2 {
                return Err(ConfigError::Invalid {
                    key: "history_bytes",
                    reason: format!(
                        "topics_max x history_bytes = {} MiB could exceed half of this machine's \
                         {} MiB of memory; lower history_bytes or topics_max",
                        worst >> 20,
                        total >> 20
                    ),
                });
            }
        }
        if self.topics_per_conn_max == 0 {
            return invalid("topics_per_conn_max", "must be at least 1");
        }
        if self.topics_max == 0 {
            return invalid("topics_max", "must be at least 1");
        }
        if self.head_bytes_max.0 < 256 {
            return invalid("head_bytes_max", "must be at least 256 bytes");
        }
        if self.request_line_bytes_max.0 < 64 {
            return invalid("request_line_bytes_max", "must be at least 64 bytes");
        }
        if self.request_line_bytes_max.0 > self.head_bytes_max.0 {
            return invalid("request_line_bytes_max", "must not exceed head_bytes_max");
        }
        if self.publish_bytes_max.0 == 0 {
            return invalid("publish_bytes_max", "must be at least 1 byte");
        }
        if self.ws_message_bytes_max.0 < 125 {
            return invalid("ws_message_bytes_max", "must be at least 125 bytes");
        }
        if self.queue_bytes_max.0 < 4096 {
            return invalid("queue_bytes_max", "must be at least 4KiB");
        }
        Ok(())
    }

    /// Queued bytes above which the server stops reading a connection (engine
    /// `read_pause_bytes`) and stops taking its pipelined requests or frames; also the level
    /// a streaming replay's queue drains to before its next page. An eighth of
    /// `queue_bytes_max`: a page of the same size then fits under the bound with room to spare,
    /// and what a connection pins while paused (queue plus held input) stays far below it.
    pub fn read_pause_bytes(&self) -> usize {
        self.queue_bytes_max.0 / 8
    }

    /// The engine's share of the config: sizes, timeouts and the listen address.
    pub fn engine_config(&self) -> EngineConfig {
        let mut e = EngineConfig {
            listen: Some(self.listen),
            workers: self.workers,
            connections_max: self.connections_max,
            files_per_ring: self.files_per_ring as u32,
            tick_ms: self.tick.0,
            drain_timeout_ms: self.drain_timeout.0,
            ..EngineConfig::default()
        };
        // Unconsumed input is at most a request head, a WebSocket frame header, or a partial
        // control frame. While reading is paused (the dispatcher also stops taking requests and
        // frames then), the engine holds up to 1 MiB more: what the peer had in flight.
        e.leftover_bytes_max = e.leftover_bytes_max.max(self.head_bytes_max.0 + 1024);
        // One memory bound per connection, whatever is queued (responses, replay pages, live
        // deliveries, pongs, goodbyes):
        // - above an eighth of `queue_bytes_max` the engine stops reading the connection, so a
        //   client that sends requests without reading answers fills its own socket buffers,
        //   not our memory; the same level is where a streaming replay takes its next page;
        // - live fan-out cuts a subscriber whose queue would pass `queue_bytes_max`
        //   (`hub::admit`, which lets one message of any size into an empty queue);
        // - the engine aborts a connection whose queue would pass the hard bound: the queue
        //   bound plus the largest answer a single input can cause: an encoded message (data
        //   may grow 7x as SSE `data:` lines of one byte) or an echoed WebSocket message, plus
        //   room for a goodbye frame.
        e.read_pause_bytes = self.read_pause_bytes();
        let largest = self
            .publish_bytes_max
            .0
            .saturating_mul(7)
            .max(self.ws_message_bytes_max.0 + crate::proto::ws::HEAD_BYTES_MAX);
        e.send_queue_bytes_max = self
            .queue_bytes_max
            .0
            .saturating_add(largest)
            .saturating_add(64 << 10);
        e
    }

    /// Most memory the replay history can take: every topic full.
    pub fn history_worst_case_bytes(&self) -> u64 {
        (self.topics_max as u64).saturating_mul(self.history_bytes.0 as u64)
    }

    /// The example config file: every key, its help text and its default.
    pub fn example_toml() -> String {
        let defaults = Config::default();
        let mut out = String::from(
            "# uringcast configuration: every key with its default.\n\
             # Precedence: defaults < this file (--config) < URINGCAST_<KEY> env < --flags.\n\
             # Durations take a unit (100ms, 30s, 5m); sizes take 4096, 64KiB, 1MiB.\n\n",
        );
        for (key, help) in Self::KEYS {
            let value = defaults.get(key).unwrap_or_default();
            let bare = value.parse::<u64>().is_ok() || value == "true" || value == "false";
            let value = if bare { value } else { format!("{value:?}") };
            out.push_str(&format!("# {}\n{key} = {value}\n\n", help.trim()));
        }
        out
    }
}

/// MemTotal from /proc/meminfo, if readable.
fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(Millis::parse_value("100ms"), Some(Millis(100)));
        assert_eq!(Millis::parse_value("30s"), Some(Millis(30_000)));
        assert_eq!(Millis::parse_value("2m"), Some(Millis(120_000)));
        assert_eq!(
            Millis::parse_value("30"),
            None,
            "a bare number is ambiguous"
        );
        assert_eq!(Millis::parse_value("1x"), None);
        assert_eq!(Millis::parse_value("99999999999999999999s"), None);
        assert_eq!(ByteSize::parse_value("16MiB"), Some(ByteSize(16 << 20)));
        assert_eq!(ByteSize::parse_value("4096"), Some(ByteSize(4096)));
        assert_eq!(ByteSize::parse_value("1TiB"), None);
        for ms in [1, 999, 1000, 60_000, 3_600_000, 90_000] {
            assert_eq!(Millis::parse_value(&Millis(ms).show()), Some(Millis(ms)));
        }
    }

    #[test]
    fn sources_apply_in_order_and_errors_name_the_key() {
        let mut c = Config::default();
        c.apply_toml("heartbeat_interval = \"5s\"\nworkers = 3\n", "t.toml")
            .unwrap();
        assert_eq!(c.heartbeat_interval, Millis(5_000));
        assert_eq!(c.workers, 3);
        c.apply_env([("URINGCAST_WORKERS".to_owned(), "1".to_owned())])
            .unwrap();
        assert_eq!(c.workers, 1);
        c.set("workers", "2", Source::Flag).unwrap();
        assert_eq!(c.workers, 2);

        let err = c
            .set("heartbeat_interval", "soon", Source::Flag)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("heartbeat_interval") && text.contains("--heartbeat-interval"));
        let err = c.apply_toml("no_such_key = 1", "t.toml").unwrap_err();
        assert!(err.to_string().contains("no_such_key"));
        let err = c.apply_toml("workers = [", "t.toml").unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }));
    }

    #[test]
    fn example_file_round_trips_to_defaults() {
        let mut c = Config {
            workers: 7,
            ..Config::default()
        };
        c.apply_toml(&Config::example_toml(), "example").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn validate_rejects_inconsistent_values() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.echo_path = Some("echo".into());
        assert!(c.validate().unwrap_err().to_string().contains("echo_path"));
        c.echo_path = Some("/echo".into());
        c.tick = Millis(0);
        assert!(c.validate().unwrap_err().to_string().contains("tick"));
        c.tick = Millis(10);
        // Each refusal names the key that is wrong, not a neighbour.
        for (key, value) in [
            ("topics_max", "0"),
            ("topics_per_conn_max", "0"),
            ("publish_bytes_max", "0"),
            ("ws_message_bytes_max", "100"),
            ("head_bytes_max", "100"),
            ("request_line_bytes_max", "10"),
        ] {
            let mut bad = c.clone();
            bad.set(key, value, Source::Flag).unwrap();
            let err = bad.validate().unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key),
                "{key}={value}: {err}"
            );
        }
        // TLS takes both files or neither; the error names the missing one.
        for (given, missing) in [("tls_cert", "tls_key"), ("tls_key", "tls_cert")] {
            let mut bad = c.clone();
            bad.set(given, "x.pem", Source::Flag).unwrap();
            let err = bad.validate().unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if *k == missing),
                "{given} alone: {err}"
            );
        }
        c.topics_max = 1 << 40;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("history_bytes") && err.contains("topics_max"),
            "{err}"
        );
    }

    #[test]
    fn shipped_example_file_is_current() {
        let shipped = include_str!("../../uringcast.example.toml");
        assert_eq!(
            shipped,
            Config::example_toml(),
            "regenerate with `cargo run -- example-config > uringcast.example.toml`"
        );
    }
}
