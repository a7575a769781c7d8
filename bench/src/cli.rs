//! The command line: `uringcast-bench {hold,fanout,echo,connect} ...`.
//!
//! This module only turns arguments into validated values (durations, address ranges, URLs,
//! templates); it never opens a socket. Every run has a hard upper bound (`--max-time`, derived
//! from the other flags when not given) so the harness always stops by itself.

use crate::target::{Proto, Target, TargetError};
use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "uringcast-bench",
    version,
    about = "Load generator for SSE and WebSocket servers: 100k+ connections from one process",
    long_about = "Load generator for SSE and WebSocket servers, built on uringcast's own protocol \
        codecs (client role) and io_uring engine. The URL picks the protocol: http:// is SSE, \
        ws:// is WebSocket, https:// and wss:// the same over TLS (with --tls-ca or \
        --tls-insecure). `{topic}` in a URL is replaced by the topic name."
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Open N connections, hold them for D, check each keeps receiving heartbeats.
    Hold(HoldArgs),
    /// N subscribers over K topics; a publisher posts P messages/s per topic; latency and loss.
    Fanout(FanoutArgs),
    /// N WebSocket connections, M messages in flight each, payload S bytes; round-trip latency.
    Echo(EchoArgs),
    /// Connection storm: open N connections as fast as allowed, count handshakes/s and failures.
    Connect(ConnectArgs),
    /// The harness's own ceiling: N subscribers against a trivial built-in push server (same
    /// process, same engine) that sends as fast as the harness reads; deliveries per harness
    /// CPU-second. No --url.
    Calibrate(CalibrateArgs),
}

/// Flags every scenario shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Target URL (repeat to spread connections over several targets). http:// = SSE,
    /// ws:// = WebSocket; `{topic}` is replaced by the topic name. Required, except by
    /// `calibrate`, which runs its own server.
    #[arg(long, value_name = "URL")]
    pub url: Vec<String>,
    /// Connections to open.
    #[arg(long, value_name = "N")]
    pub conns: u32,
    /// New connections per second (ramp); 0 = as fast as the engine allows.
    #[arg(long, value_name = "R", default_value_t = 0)]
    pub rate: u32,
    /// Source addresses to spread connections over, e.g. `127.0.0.2-127.0.0.40` or a comma list.
    /// Each (source, target) pair holds about one ephemeral port range of connections (~28k).
    #[arg(long, value_name = "RANGE", value_parser = parse_src)]
    pub src: Option<SrcList>,
    /// Target addresses to spread connections over, replacing each URL's host address (port,
    /// path and Host header stay): e.g. `127.0.0.1-127.0.0.4` against a server listening on
    /// 0.0.0.0. Needs no source binding, so it scales better than --src on loopback.
    #[arg(long, value_name = "RANGE", value_parser = parse_src)]
    pub dst: Option<SrcList>,
    /// Write the JSON report to FILE (`-` = stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Hard upper bound on the whole run (default: ramp + duration + 30s).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub max_time: Option<Duration>,
    /// A connection must finish its handshake within this time.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Engine worker threads (one io_uring event loop each); 0 = number of CPU cores.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
    /// Pin harness worker w to the w-th of these CPUs (round-robin), e.g. `1` or `0,1`.
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub harness_cpu: Option<CpuList>,
    /// Size of each provided receive buffer: the most one receive completion hands the
    /// harness (more messages parsed per completion when the harness falls behind).
    #[arg(long, value_name = "BYTES", default_value_t = 16384)]
    pub recv_buf: u32,
    /// Extra request header sent on every handshake (`Name: value`; repeatable).
    #[arg(long = "header", value_name = "H")]
    pub headers: Vec<String>,
    /// Topic name template; `{i}` is the topic index (0..K).
    #[arg(long, value_name = "T", default_value = "t{i}")]
    pub topic_name: String,
    /// No live progress line even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    /// Speak TLS to every target (and the publish URL), as if each said https:// or wss://.
    #[arg(long)]
    pub tls: bool,
    /// TLS: accept any server certificate (handshake signatures are still checked).
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// TLS: trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<String>,
    /// TLS: the server name to send and verify (default: each URL's host).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long to hold all connections once the ramp is done.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Duration,
    /// A connection that receives nothing (no heartbeat, no event, no ping) for this long
    /// counts as stale. Set it above the server's heartbeat interval.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "65s")]
    pub heartbeat_max: Duration,
    /// Topics the held connections spread over (for `{topic}` in the URL).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub topics: u32,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Where to publish: http://... (POST, keep-alive) or ws://... (publish messages).
    #[arg(long, value_name = "URL")]
    pub publish_url: String,
    /// Topics the subscribers spread over (subscriber i gets topic i mod K).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub topics: u32,
    /// Messages per second PER TOPIC, so each subscriber should see exactly P x duration.
    #[arg(long, value_name = "P")]
    pub msg_rate: f64,
    /// How long to publish once all subscribers are connected.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Duration,
    /// After the last publish, wait at most this long for deliveries to arrive.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "3s")]
    pub drain: Duration,
    /// Publisher connections (messages are spread round-robin over them).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub publishers: u32,
    /// Message envelope; `{seq}`, `{ts}` (intended send time, ns), `{topic}` and `{pad}` are
    /// substituted. The subscriber finds it anywhere in a delivery, so keep it free of
    /// characters servers escape (quotes, backslashes).
    #[arg(long, value_name = "T", default_value = crate::envelope::DEFAULT_TEMPLATE)]
    pub envelope: String,
    /// Pad each envelope with `{pad}` to at least this many bytes.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub size: usize,
    /// HTTP publish body template (`{msg}` = the envelope, `{topic}` = topic name).
    #[arg(long, value_name = "T", default_value = "{msg}")]
    pub publish_body: String,
    /// WebSocket publish message template (for ws:// publish URLs).
    #[arg(
        long,
        value_name = "T",
        default_value = r#"{"op":"publish","topic":"{topic}","data":"{msg}"}"#
    )]
    pub ws_publish_msg: String,
    /// Message a WebSocket subscriber sends after its handshake (empty = none; `{topic}`;
    /// `{since}` = the id of its last delivery, empty before any: for --storm-at resumes).
    #[arg(long, value_name = "T", default_value = "")]
    pub ws_subscribe_msg: String,
    /// With --ws-subscribe-msg: a subscriber counts as connected (and publishing waits for it)
    /// once a server message containing this text arrives; empty = at the handshake.
    #[arg(long, value_name = "TEXT", default_value = "subscribed")]
    pub ws_subscribed_marker: String,
    /// Test hook: never send this sequence number (each topic), to prove loss is detected.
    #[arg(long, value_name = "SEQ", hide = true)]
    pub skip_seq: Option<u64>,
    /// Reconnect storm: this long after publishing starts, drop every subscriber at once and
    /// reconnect them all at once, resuming: SSE with `Last-Event-ID`, WebSocket with `{since}`
    /// in --ws-subscribe-msg (must be < --duration).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub storm_at: Option<Duration>,
    /// A subscriber whose connection ends during the run (a killed server node) reconnects
    /// at once to the next --url target, resuming (SSE `Last-Event-ID`, WebSocket `{since}`
    /// in --ws-subscribe-msg), as EventSource does; counted in `followed`. Without it such a
    /// subscriber stays gone and what it misses counts as missing.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages in flight per connection.
    #[arg(long, value_name = "M", default_value_t = 1)]
    pub inflight: u32,
    /// Payload bytes per message (at least 16: send time and sequence number).
    #[arg(long, value_name = "S", default_value_t = 32)]
    pub size: usize,
    /// How long to echo once all connections are open.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Duration,
    /// Send binary frames instead of text.
    #[arg(long)]
    pub binary: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Keep each connection open this long after its handshake before closing it.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s")]
    pub hold: Duration,
}

/// What the calibration source speaks.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalProto {
    Sse,
    Ws,
}

#[derive(Args, Debug, Clone)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub common: Common,
    /// sse: `text/event-stream` events; ws: WebSocket text frames.
    #[arg(long, value_enum, default_value = "sse")]
    pub proto: CalProto,
    /// How long to measure once all connections are open.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Messages per send of the source: 1 = every message its own send (a server that does
    /// not coalesce), more = the harness reads that many per segment at least.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub batch: u32,
    /// Pad each envelope to at least this many bytes.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub size: usize,
    /// Source worker threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub source_workers: usize,
    /// Pin source worker w to the w-th of these CPUs (round-robin).
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub source_cpu: Option<CpuList>,
}

impl Scenario {
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Hold(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Echo(a) => &a.common,
            Scenario::Connect(a) => &a.common,
            Scenario::Calibrate(a) => &a.common,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Hold(_) => "hold",
            Scenario::Fanout(_) => "fanout",
            Scenario::Echo(_) => "echo",
            Scenario::Connect(_) => "connect",
            Scenario::Calibrate(_) => "calibrate",
        }
    }

    /// Seconds the ramp takes at `--rate` (0 when unlimited).
    pub fn ramp(&self) -> Duration {
        let c = self.common();
        if c.rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(f64::from(c.conns) / f64::from(c.rate))
        }
    }

    /// The hard bound on the run: `--max-time`, or ramp + scenario time + 30 s of slack.
    pub fn max_time(&self) -> Duration {
        if let Some(t) = self.common().max_time {
            return t;
        }
        let body = match self {
            Scenario::Hold(a) => a.duration,
            Scenario::Fanout(a) => a.duration + a.drain,
            Scenario::Echo(a) => a.duration,
            Scenario::Connect(a) => a.hold,
            Scenario::Calibrate(a) => a.duration,
        };
        self.ramp() + body + Duration::from_secs(30)
    }

    /// Parse the target URLs and check flags against each other. Errors name the flag.
    pub fn validate(&self) -> Result<Vec<Target>, String> {
        let c = self.common();
        if c.recv_buf < 1024 || c.recv_buf > 1 << 20 {
            return Err("--recv-buf must be in [1024, 1048576] bytes".into());
        }
        if let Scenario::Calibrate(a) = self {
            if !c.url.is_empty() || c.dst.is_some() || c.src.is_some() || c.tls {
                return Err(
                    "calibrate runs its own server on 127.0.0.1: no --url, --src, \
                    --dst or --tls"
                        .into(),
                );
            }
            if c.conns == 0 {
                return Err("--conns must be at least 1".into());
            }
            if a.batch == 0 || a.batch > 4096 {
                return Err("--batch must be in [1, 4096]".into());
            }
            if a.source_workers == 0 || a.source_workers > 64 {
                return Err("--source-workers must be in [1, 64]".into());
            }
            if a.size > 64 << 10 {
                return Err("--size must be at most 64 KiB".into());
            }
            return Ok(Vec::new());
        }
        if c.url.is_empty() {
            return Err("--url is required".into());
        }
        let mut targets = c
            .url
            .iter()
            .map(|u| Target::parse(u).map_err(|e| format!("--url {u}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if c.tls {
            for t in &mut targets {
                t.tls = true;
            }
        }
        if let Some(dst) = &c.dst {
            targets = targets
                .iter()
                .flat_map(|t| {
                    dst.0.iter().map(move |ip| {
                        let mut t = t.clone();
                        t.addr.set_ip(*ip);
                        t
                    })
                })
                .collect();
        }
        if c.conns == 0 {
            return Err("--conns must be at least 1".into());
        }
        for h in &c.headers {
            if !h.contains(':') || h.contains('\r') || h.contains('\n') {
                return Err(format!(
                    "--header {h:?}: expected `Name: value` on one line"
                ));
            }
        }
        match self {
            Scenario::Hold(a) if a.topics == 0 => return Err("--topics must be at least 1".into()),
            Scenario::Fanout(a) => {
                if a.topics == 0 {
                    return Err("--topics must be at least 1".into());
                }
                if !(a.msg_rate > 0.0 && a.msg_rate <= 1_000_000.0) {
                    return Err("--msg-rate must be in (0, 1000000] messages/s per topic".into());
                }
                if a.publishers == 0 {
                    return Err("--publishers must be at least 1".into());
                }
                Target::parse(&a.publish_url)
                    .map_err(|e: TargetError| format!("--publish-url {}: {e}", a.publish_url))?;
                crate::envelope::Template::parse(&a.envelope)
                    .map_err(|e| format!("--envelope: {e}"))?;
                if let Some(at) = a.storm_at {
                    if at >= a.duration {
                        return Err("--storm-at must be shorter than --duration: the resume is \
                            proven by messages published after the drop"
                            .into());
                    }
                    let ws = targets.iter().any(|t| t.proto == Proto::Ws);
                    if ws && !a.ws_subscribe_msg.contains("{since}") {
                        return Err("--storm-at with ws:// subscribers needs a \
                            --ws-subscribe-msg with {since} (and a --url without the topic), e.g. \
                            '{\"op\":\"subscribe\",\"topic\":\"{topic}\",\"since\":\"{since}\"}'"
                            .into());
                    }
                }
            }
            Scenario::Echo(a) => {
                if targets.iter().any(|t| t.proto != Proto::Ws) {
                    return Err("echo needs a ws:// --url".into());
                }
                if a.size < crate::echo::HEADER_BYTES || a.size > 16 << 20 {
                    return Err(format!(
                        "--size must be in [{}, 16MiB] bytes",
                        crate::echo::HEADER_BYTES
                    ));
                }
                if a.inflight == 0 || a.inflight > 4096 {
                    return Err("--inflight must be in [1, 4096]".into());
                }
            }
            _ => {}
        }
        Ok(targets)
    }
}

/// A list of source addresses from `--src`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrcList(pub Vec<IpAddr>);

/// Bound on `--src` expansion: 65,536 addresses hold far more than one process can.
const SRC_ADDRS_MAX: usize = 1 << 16;

/// `127.0.0.2-127.0.0.40`, `127.0.0.2,127.0.0.3`, `::1`, or a mix separated by commas.
pub fn parse_src(text: &str) -> Result<SrcList, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // An IPv6 address contains no '-', so a '-' always separates a range's ends.
        if let Some((a, b)) = part.split_once('-') {
            let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad_src(part))?;
            let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad_src(part))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a {
                return Err(format!("{part}: range end is below its start"));
            }
            if (b - a) as usize >= SRC_ADDRS_MAX - out.len() {
                return Err(format!("{part}: more than {SRC_ADDRS_MAX} addresses"));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(v.into())));
        } else {
            out.push(part.parse().map_err(|_| bad_src(part))?);
            if out.len() > SRC_ADDRS_MAX {
                return Err(format!("more than {SRC_ADDRS_MAX} addresses"));
            }
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(SrcList(out))
}

/// CPU numbers for thread pinning (`--harness-cpu`, `--source-cpu`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CpuList(pub Vec<usize>);

/// `1`, `0,1`: CPU numbers for thread pinning.
pub fn parse_cpus(text: &str) -> Result<CpuList, String> {
    let cpus = text
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("{text:?}: expected CPU numbers like 1 or 0,1"))?;
    // cpu_set_t holds 1024 CPUs.
    if cpus.is_empty() || cpus.iter().any(|&c| c >= 1024) {
        return Err(format!("{text:?}: CPU numbers must be below 1024"));
    }
    Ok(CpuList(cpus))
}

fn bad_src(part: &str) -> String {
    format!("{part}: expected an IP address or an IPv4 range like 127.0.0.2-127.0.0.40")
}

/// `500ms`, `10s`, `2m`, `1h`; a bare number is seconds. Fractions allowed (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like 500ms, 10s, 2m, 1h"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    let secs = n * scale;
    // A week bounds every run this tool makes; larger values are typos.
    if !secs.is_finite() || !(0.0..=604_800.0).contains(&secs) {
        return Err(format!("{text:?}: must be between 0 and 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("9999999h").is_err());
    }

    #[test]
    fn src_ranges() {
        let l = parse_src("127.0.0.2-127.0.0.40").unwrap();
        assert_eq!(l.0.len(), 39);
        assert_eq!(l.0[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(l.0[38], "127.0.0.40".parse::<IpAddr>().unwrap());
        let l = parse_src("127.0.0.9, ::1,127.0.1.255-127.0.2.0").unwrap();
        assert_eq!(l.0.len(), 4);
        assert!(parse_src("127.0.0.5-127.0.0.4").is_err());
        assert!(parse_src("127.0.0.1-::1").is_err());
        assert!(parse_src("0.0.0.0-255.255.255.255").is_err());
        assert!(parse_src("").is_err());
    }

    #[test]
    fn issue_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "uringcast-bench",
            "hold",
            "--url",
            "http://127.0.0.1:8080/sse?topic=a",
            "--conns",
            "100000",
            "--duration",
            "60s",
            "--rate",
            "10000",
            "--src",
            "127.0.0.2-127.0.0.40",
            "--json",
            "out.json",
        ])
        .unwrap();
        assert_eq!(cli.scenario.name(), "hold");
        let spread = Cli::try_parse_from([
            "uringcast-bench",
            "hold",
            "--url",
            "http://127.0.0.1:8080/sse?topic=a",
            "--dst",
            "127.0.0.1-127.0.0.4",
            "--conns",
            "100000",
            "--duration",
            "1s",
        ])
        .unwrap();
        let t = spread.scenario.validate().unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[3].addr, "127.0.0.4:8080".parse().unwrap());
        assert_eq!(t[3].authority, "127.0.0.1:8080");
        assert_eq!(cli.scenario.ramp(), Duration::from_secs(10));
        assert_eq!(cli.scenario.max_time(), Duration::from_secs(100));
        assert_eq!(cli.scenario.validate().unwrap().len(), 1);

        let cli = Cli::try_parse_from([
            "uringcast-bench",
            "fanout",
            "--url",
            "ws://127.0.0.1:8080/ws?topic={topic}",
            "--publish-url",
            "http://127.0.0.1:8080/publish?topic={topic}",
            "--conns",
            "1000",
            "--topics",
            "10",
            "--msg-rate",
            "100",
            "--duration",
            "10s",
        ])
        .unwrap();
        assert!(cli.scenario.validate().is_ok());

        // A storm must fall inside the publishing time; WebSocket resumes need `{since}`.
        let storm = |at: &str, url: &str, sub: &str| {
            Cli::try_parse_from([
                "uringcast-bench",
                "fanout",
                "--url",
                url,
                "--ws-subscribe-msg",
                sub,
                "--publish-url",
                "http://127.0.0.1:8080/publish?topic={topic}",
                "--conns",
                "10",
                "--msg-rate",
                "5",
                "--duration",
                "10s",
                "--storm-at",
                at,
            ])
            .unwrap()
            .scenario
            .validate()
        };
        let sse = "http://127.0.0.1:8080/sse?topic={topic}";
        assert!(storm("4s", sse, "").is_ok());
        assert!(storm("10s", sse, "").unwrap_err().contains("--storm-at"));
        let since = r#"{"op":"subscribe","topic":"{topic}","since":"{since}"}"#;
        assert!(storm("4s", "ws://127.0.0.1:8080/ws", since).is_ok());
        let plain = r#"{"op":"subscribe","topic":"{topic}"}"#;
        let err = storm("4s", "ws://127.0.0.1:8080/ws", plain).unwrap_err();
        assert!(err.contains("{since}"), "{err}");

        let cli = Cli::try_parse_from([
            "uringcast-bench",
            "echo",
            "--url",
            "http://127.0.0.1:8080/echo",
            "--conns",
            "10",
            "--inflight",
            "4",
            "--size",
            "64",
            "--duration",
            "5s",
        ])
        .unwrap();
        assert!(cli.scenario.validate().unwrap_err().contains("ws://"));

        let cli = Cli::try_parse_from([
            "uringcast-bench",
            "connect",
            "--url",
            "ws://127.0.0.1:8080/ws?topic=a",
            "--conns",
            "0",
        ])
        .unwrap();
        assert!(cli.scenario.validate().unwrap_err().contains("--conns"));
    }

    #[test]
    fn calibrate_runs_its_own_server_and_others_need_a_url() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["uringcast-bench", "calibrate", "--conns", "100"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).unwrap().scenario
        };
        let ok = parse(&["--proto", "ws", "--batch", "8", "--harness-cpu", "0,1"]);
        assert_eq!(ok.validate().unwrap().len(), 0);
        assert_eq!(ok.common().harness_cpu, Some(CpuList(vec![0, 1])));
        assert_eq!(ok.max_time(), Duration::from_secs(35));
        let err = parse(&["--url", "http://127.0.0.1:1/sse"]).validate();
        assert!(err.unwrap_err().contains("no --url"));
        assert!(parse(&["--batch", "0"])
            .validate()
            .unwrap_err()
            .contains("--batch"));
        assert!(parse(&["--recv-buf", "10"])
            .validate()
            .unwrap_err()
            .contains("--recv-buf"));
        assert!(
            Cli::try_parse_from(["b", "calibrate", "--conns", "1", "--source-cpu", "x"]).is_err()
        );
        let hold = Cli::try_parse_from(["b", "hold", "--conns", "1", "--duration", "1s"]).unwrap();
        assert!(hold.scenario.validate().unwrap_err().contains("--url"));
    }
}
