//! The orchestrator: starts the engine in the client role, walks a scenario through its phases
//! (ramp → hold / echo / publish → drain → finish), bounds every wait by `--max-time`, collects
//! the workers' figures and judges the scenario's success criteria.
//!
//! It runs on the main thread and never touches a connection: it posts `Cmd`s to workers and
//! polls the shared `Live` counters. Figures come back once, at `Finish`.

use crate::cli::{CalProto, FanoutArgs, Scenario};
use crate::client::{split_headers, Env};
use crate::driver::{Cmd, Kind, LoadDriver, Mark, PublishCfg, RunCfg};
use crate::envelope::{Template, DEFAULT_TEMPLATE};
use crate::plan::{Plan, SysLimits};
use crate::report::{Calibration, Progress, Report, WorkerShare};
use crate::source::{SourceCfg, WINDOW_PER_CONN};
use crate::stats::{cpu_seconds, now_ns, Live, Stats};
use crate::storm::StormReport;
use crate::target::{topic_name, Target};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use uringcast::engine::{Engine, EngineConfig, EngineHandle};
use uringcast::proto::http1::HttpLimits;

/// Handshakes in flight per worker. Enough to keep a server's accept path busy; far below a
/// default listen backlog, so a storm measures the server rather than SYN drops.
const CONNECTING_MAX_PER_WORKER: u32 = 512;
/// How often the orchestrator looks at the counters.
const POLL: Duration = Duration::from_millis(2);
/// Longest wait for workers to hand back their figures.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// A setup problem that stops the run before it starts (exit code 2).
#[derive(Debug)]
pub struct SetupError(pub String);

pub fn run(scenario: &Scenario, targets: Vec<Target>) -> Result<Report, SetupError> {
    let c = scenario.common();
    let conns = u64::from(c.conns);
    let kind = match scenario {
        Scenario::Hold(_) => Kind::Hold,
        Scenario::Fanout(_) => Kind::Fanout,
        Scenario::Echo(_) => Kind::Echo,
        Scenario::Connect(_) => Kind::Connect,
        // Subscribers as in a fan-out; the built-in source publishes.
        Scenario::Calibrate(_) => Kind::Fanout,
    };
    let topics = match scenario {
        Scenario::Hold(a) => a.topics,
        Scenario::Fanout(a) => a.topics,
        _ => 1,
    };
    if topics > 1 && !targets.iter().all(Target::has_topic_placeholder) {
        return Err(SetupError(format!(
            "--topics {topics} needs `{{topic}}` in every --url, e.g. /sse?topic={{topic}}"
        )));
    }
    let live = Arc::new(Live::default());
    // Calibration: start the trivial source first; its address is the one target.
    let mut source = None;
    let targets = match scenario {
        Scenario::Calibrate(a) => {
            let cfg = Arc::new(SourceCfg {
                template: default_template(),
                topic: topic_name(&c.topic_name, 0),
                batch: a.batch,
                size: a.size,
                window: (conns * WINDOW_PER_CONN).max(4096),
                live: Arc::clone(&live),
                sent: AtomicU64::new(0),
                cpus: a.source_cpu.clone().map(|l| l.0).unwrap_or_default(),
            });
            let s =
                crate::source::start(cfg, a.source_workers, conns as usize).map_err(SetupError)?;
            let url = match a.proto {
                CalProto::Sse => format!("http://{}/sse?topic={{topic}}", s.addr),
                CalProto::Ws => format!("ws://{}/ws?topic={{topic}}", s.addr),
            };
            let t = Target::parse(&url).map_err(|e| SetupError(format!("{url}: {e}")))?;
            source = Some(s);
            vec![t]
        }
        _ => targets,
    };
    let sys = SysLimits::read();
    let plan = Plan::new(targets.len(), c.src.as_ref().map(|s| s.0.as_slice()));
    let publishers = match scenario {
        Scenario::Fanout(a) => a.publishers.min(a.topics),
        _ => 0,
    };
    let findings = plan.check(conns + u64::from(publishers), &sys);
    if let Some(f) = findings.iter().find(|f| f.fatal) {
        return Err(SetupError(f.message.clone()));
    }
    let mut warnings: Vec<String> = findings.into_iter().map(|f| f.message).collect();

    let topic_names: Vec<String> = (0..topics).map(|i| topic_name(&c.topic_name, i)).collect();
    let (template, echo_size, echo_binary, ws_sub, ws_marker) = match scenario {
        Scenario::Fanout(a) => (
            Template::parse(&a.envelope).map_err(|e| SetupError(format!("--envelope: {e}")))?,
            32,
            false,
            a.ws_subscribe_msg.clone(),
            a.ws_subscribed_marker.clone(),
        ),
        Scenario::Echo(a) => (
            default_template(),
            a.size,
            a.binary,
            String::new(),
            String::new(),
        ),
        _ => (default_template(), 32, false, String::new(), String::new()),
    };
    let env = Env {
        template,
        topics: topic_names,
        headers: split_headers(&c.headers),
        http_limits: HttpLimits::default(),
        ws_message_bytes_max: (echo_size as u64).max(1 << 20),
        sse_event_bytes_max: 1 << 20,
        echo_size,
        echo_binary,
        ws_subscribe_msg: ws_sub,
        ws_subscribed_marker: ws_marker,
    };
    let publish = match scenario {
        Scenario::Fanout(a) => {
            let mut target = Target::parse(&a.publish_url)
                .map_err(|e| SetupError(format!("--publish-url: {e}")))?;
            target.tls |= c.tls;
            let body_template = match target.proto {
                crate::target::Proto::Sse => a.publish_body.clone(),
                crate::target::Proto::Ws => a.ws_publish_msg.clone(),
            };
            Some(PublishCfg {
                target,
                body_template,
                rate_per_topic: a.msg_rate,
                per_topic: (a.msg_rate * a.duration.as_secs_f64()).round() as u64,
                publishers,
                size: a.size,
                skip_seq: a.skip_seq,
                src: plan.sources[0],
            })
        }
        _ => None,
    };
    let any_tls = targets.iter().any(|t| t.tls) || publish.as_ref().is_some_and(|p| p.target.tls);
    let tls = match any_tls {
        true => {
            let config = crate::tls::client_config(c.tls_ca.as_deref(), c.tls_insecure)
                .map_err(SetupError)?;
            let names = targets
                .iter()
                .chain(publish.as_ref().map(|p| &p.target))
                .map(|t| c.tls_server_name.as_deref().unwrap_or(&t.host));
            for name in names {
                crate::tls::server_name(name).map_err(SetupError)?;
            }
            Some(config)
        }
        false => None,
    };
    let cfg = Arc::new(RunCfg {
        kind,
        env,
        targets,
        plan,
        topics,
        handshake_timeout_ms: c.connect_timeout.as_millis() as u64,
        heartbeat_max_ms: match scenario {
            Scenario::Hold(a) => Some(a.heartbeat_max.as_millis() as u64),
            _ => None,
        },
        connect_hold_ms: match scenario {
            Scenario::Connect(a) => a.hold.as_millis() as u64,
            _ => 0,
        },
        connecting_max: CONNECTING_MAX_PER_WORKER,
        echo_inflight: match scenario {
            Scenario::Echo(a) => a.inflight,
            _ => 0,
        },
        publish,
        live: Arc::clone(&live),
        last_sent: (0..topics).map(|_| AtomicU64::new(0)).collect(),
        tls,
        tls_server_name: c.tls_server_name.clone(),
        follow: matches!(scenario, Scenario::Fanout(FanoutArgs { follow: true, .. })),
    });

    let storm_factor = match scenario {
        Scenario::Fanout(FanoutArgs {
            storm_at: Some(_), ..
        }) => 2,
        _ => 1,
    };
    let engine_cfg = EngineConfig {
        listen: None,
        workers: c.workers,
        // A storm holds the dropped connections' table slots until their closes complete
        // while the reconnects take new ones: room for both.
        connections_max: (conns + u64::from(publishers)) as usize * storm_factor + 64,
        // 1 ms ticks: publish schedules and deadlines are kept to the millisecond.
        tick_ms: 1,
        connect_timeout_ms: c.connect_timeout.as_millis() as u64,
        drain_timeout_ms: 2_000,
        close_flush_timeout_ms: 2_000,
        leftover_bytes_max: (echo_size + 64).max(64 << 10),
        // Deliveries arrive on many connections at once: give the kernel enough provided
        // buffers that a burst does not run the ring dry (ENOBUFS re-arms are paced). The
        // count follows the buffer size so each ring starts with the same bytes whatever
        // `--recv-buf` says (16 MiB for fan-out and echo, 4 MiB for idle connections).
        buf_ring_entries: buf_ring_entries(
            match kind {
                Kind::Fanout | Kind::Echo => 16 << 20,
                Kind::Hold | Kind::Connect => 4 << 20,
            },
            c.recv_buf,
        ),
        buf_bytes: c.recv_buf,
        handle_signals: false,
        ..EngineConfig::default()
    };
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let _ = now_ns(); // fix the harness clock's origin before any connection exists
    let cfg_w = Arc::clone(&cfg);
    let pin = c.harness_cpu.clone().map(|l| l.0).unwrap_or_default();
    let engine = Engine::start(engine_cfg, move |w| {
        if !pin.is_empty() {
            crate::source::pin_thread(pin[w % pin.len()]);
        }
        LoadDriver::new(Arc::clone(&cfg_w), w)
    })
    .map_err(|e| SetupError(format!("engine: {e}")))?;
    let handle = engine.handle();
    let workers = handle.workers();

    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let deadline = start + scenario.max_time();
    let progress = Progress::start(Arc::clone(&live), conns, c.quiet);
    let mut failures: Vec<String> = Vec::new();
    let past = |t: Instant| Instant::now() >= t;

    // Ramp: post connect batches at `--rate`; workers pace handshakes in flight. Batches go
    // round-robin and are small enough that every worker gets its share of the connections,
    // so each worker's thread reads its part of the deliveries.
    let chunk = connect_chunk(conns, workers);
    let mut posted = 0u64;
    let mut w = 0;
    while posted < conns && !past(deadline) {
        let allowed = if c.rate == 0 {
            conns
        } else {
            let due = (start.elapsed().as_secs_f64() * f64::from(c.rate)) as u64 + 1;
            due.min(conns)
        };
        while posted < allowed {
            let n = (allowed - posted).min(chunk);
            handle.post(w, Cmd::Connect(posted..posted + n));
            posted += n;
            w = (w + 1) % workers;
        }
        std::thread::sleep(POLL);
    }
    while live.resolved() < conns && !past(deadline) {
        if kind == Kind::Connect && Live::get(&live.open) == 0 && live.resolved() >= conns {
            break;
        }
        std::thread::sleep(POLL);
    }
    let ramp_s = start.elapsed().as_secs_f64();
    let opened = Live::get(&live.opened_total);

    // The scenario's body.
    let mut body_s = 0.0;
    let mut last_published = vec![0u64; topics as usize];
    let mut deliveries_expected = 0u64;
    // Storm: (harness clock at the drop, seconds after publishing started).
    let mut storm_drop: Option<(u64, f64)> = None;
    // The measured phase (echo, publish + drain, calibration window): the workers' marks at
    // its start and end, and its wall time.
    let mut phase: Option<(Vec<Mark>, Vec<Mark>, f64)> = None;
    let mut phase_start: Option<(Vec<Mark>, Instant)> = None;
    let mut mark_phase = |end: bool, failures: &mut Vec<String>| match mark(&handle, workers) {
        None => failures.push("a worker did not answer a mark within 5 s".into()),
        Some(m) if !end => phase_start = Some((m, Instant::now())),
        Some(m) => {
            if let Some((m0, t0)) = phase_start.take() {
                phase = Some((m0, m, t0.elapsed().as_secs_f64()));
            }
        }
    };
    match scenario {
        Scenario::Calibrate(a) => {
            mark_phase(false, &mut failures);
            let end = (Instant::now() + a.duration).min(deadline);
            while !past(end) {
                std::thread::sleep(Duration::from_millis(10));
            }
            mark_phase(true, &mut failures);
            body_s = phase.as_ref().map_or(0.0, |p| p.2);
        }
        Scenario::Hold(a) => {
            let end = (Instant::now() + a.duration).min(deadline);
            while !past(end) && Live::get(&live.open) > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            body_s = a.duration.as_secs_f64();
            if a.duration < a.heartbeat_max {
                warnings.push(format!(
                    "--duration {:?} is shorter than --heartbeat-max {:?}: heartbeats were not \
                     verified",
                    a.duration, a.heartbeat_max
                ));
            }
        }
        Scenario::Connect(_) => {
            while Live::get(&live.open) > 0 && !past(deadline) {
                std::thread::sleep(POLL);
            }
        }
        Scenario::Echo(a) => {
            for w in 0..workers {
                handle.post(w, Cmd::StartEcho);
            }
            mark_phase(false, &mut failures);
            let t = Instant::now();
            let end = (t + a.duration).min(deadline);
            while !past(end) {
                std::thread::sleep(Duration::from_millis(10));
            }
            mark_phase(true, &mut failures);
            for w in 0..workers {
                handle.post(w, Cmd::StopEcho);
            }
            body_s = t.elapsed().as_secs_f64();
        }
        Scenario::Fanout(a) => {
            let p = cfg.publish.as_ref().expect("fanout has a publish config");
            let mut per_worker: Vec<Vec<u32>> = vec![Vec::new(); workers];
            for j in 0..publishers {
                per_worker[j as usize % workers].push(j);
            }
            for (w, js) in per_worker.into_iter().enumerate() {
                handle.post(w, Cmd::OpenPublishers(js));
            }
            let pubs = u64::from(publishers);
            let ready_by = (Instant::now() + c.connect_timeout).min(deadline);
            while Live::get(&live.pub_ready) + Live::get(&live.pub_done) < pubs && !past(ready_by) {
                std::thread::sleep(POLL);
            }
            if Live::get(&live.pub_ready) < pubs {
                failures.push(format!(
                    "only {} of {pubs} publisher connections opened",
                    Live::get(&live.pub_ready)
                ));
            }
            // Start a little ahead so every worker has the schedule before message 0 is due.
            let t0 = now_ns() + 20_000_000;
            for w in 0..workers {
                handle.post(w, Cmd::StartPublish { t0_ns: t0 });
            }
            mark_phase(false, &mut failures);
            let t = Instant::now();
            while Live::get(&live.pub_done) < pubs && !past(deadline) {
                if let (Some(at), None) = (a.storm_at, storm_drop) {
                    if t.elapsed() >= at {
                        storm_drop = Some((now_ns(), t.elapsed().as_secs_f64()));
                        for w in 0..workers {
                            handle.post(w, Cmd::Storm);
                        }
                    }
                }
                std::thread::sleep(POLL);
            }
            let subs_per_topic: Vec<u64> = (0..topics)
                .map(|t| (conns + u64::from(topics) - 1 - u64::from(t)) / u64::from(topics))
                .collect();
            let sent_in = |last: u64| last - u64::from(a.skip_seq.is_some_and(|s| s <= last));
            for (t, slot) in last_published.iter_mut().enumerate() {
                *slot = Live::get(&cfg.last_sent[t]);
            }
            deliveries_expected = last_published
                .iter()
                .zip(&subs_per_topic)
                .map(|(&l, &n)| sent_in(l) * n)
                .sum();
            let drain_end = (Instant::now() + a.drain).min(deadline);
            while live.deliveries() < deliveries_expected && !past(drain_end) {
                std::thread::sleep(POLL);
            }
            // Deliveries per second over publish + drain: a server that falls behind spreads
            // the same deliveries over a longer time.
            body_s = t.elapsed().as_secs_f64();
            mark_phase(true, &mut failures);
            if last_published.iter().any(|&l| l < p.per_topic) {
                failures.push(format!(
                    "published {} of {} messages per topic before the run ended",
                    last_published.iter().min().copied().unwrap_or(0),
                    p.per_topic
                ));
            }
        }
    }
    if past(deadline) {
        failures.push(format!(
            "--max-time {:?} reached before the scenario finished",
            scenario.max_time()
        ));
    }

    // Finish: fold figures on every worker and collect them.
    let last_published = Arc::new(last_published);
    let (tx, rx) = mpsc::channel();
    for w in 0..workers {
        handle.post(
            w,
            Cmd::Finish {
                last_published: Arc::clone(&last_published),
                reply: tx.clone(),
            },
        );
    }
    drop(tx);
    let mut stats = Stats::default();
    let finish_by = Instant::now() + FINISH_TIMEOUT;
    for _ in 0..workers {
        let left = finish_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => stats.merge(&s),
            Err(_) => {
                failures.push("a worker did not report its figures within 10 s".into());
                break;
            }
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    drop(progress);
    handle.shutdown();
    // The engine stops within its drain timeout; do not let a stuck one hold the report.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(engine.wait());
    });
    if let Ok(Err(e)) = done_rx.recv_timeout(Duration::from_secs(5)) {
        warnings.push(format!("engine shutdown: {e}"));
    }
    if let Some(src) = source {
        src.engine.handle().shutdown();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(src.engine.wait());
        });
        if let Ok(Err(e)) = done_rx.recv_timeout(Duration::from_secs(5)) {
            warnings.push(format!("calibration source shutdown: {e}"));
        }
    }

    let mut r = Report::new(scenario.name(), params(scenario), &stats);
    r.started_unix_s = started_unix_s;
    r.elapsed_s = elapsed_s;
    r.connections_target = conns;
    r.connections_held = stats.held;
    r.connect_rate = if ramp_s > 0.0 {
        opened as f64 / ramp_s
    } else {
        0.0
    };
    r.deliveries_expected = deliveries_expected;
    if body_s > 0.0 {
        r.deliveries_per_s = stats.deliveries as f64 / body_s;
        r.echoes_per_s = stats.echoes as f64 / body_s;
    }
    if let Some((m0, m1, wall_s)) = &phase {
        let shares: Vec<WorkerShare> = m0
            .iter()
            .zip(m1)
            .map(|(a, b)| WorkerShare {
                cpu_s: (b.cpu_s - a.cpu_s).max(0.0),
                messages: b.messages.saturating_sub(a.messages),
            })
            .collect();
        let cpu: f64 = shares.iter().map(|s| s.cpu_s).sum();
        let msgs: u64 = shares.iter().map(|s| s.messages).sum();
        r.harness_worker_cpu_s = cpu;
        if cpu > 0.0 {
            r.messages_per_harness_cpu_s = msgs as f64 / cpu;
        }
        if let Scenario::Calibrate(a) = scenario {
            if *wall_s > 0.0 {
                r.deliveries_per_s = msgs as f64 / wall_s;
            }
            r.calibration = Some(Calibration {
                proto: format!("{:?}", a.proto).to_lowercase(),
                batch: a.batch,
                size: a.size,
                harness_workers: workers,
                source_workers: a.source_workers,
                window_s: *wall_s,
                deliveries: msgs,
                deliveries_per_s: r.deliveries_per_s,
                deliveries_per_harness_cpu_s: r.messages_per_harness_cpu_s,
                workers: shares,
            });
        }
    }
    r.harness_cpu_percent = if elapsed_s > 0.0 {
        (cpu_s / elapsed_s * 1000.0).round() / 10.0
    } else {
        0.0
    };
    r.warnings = warnings;
    r.failures = failures;
    if let Scenario::Fanout(FanoutArgs {
        storm_at: Some(_), ..
    }) = scenario
    {
        let (drop_ns, at_s) = storm_drop.unwrap_or((u64::MAX, 0.0));
        let resets = stats.errors.get(crate::stats::ErrorKind::ResumeReset);
        let s = StormReport::new(&stats.storm, drop_ns, at_s, resets);
        if storm_drop.is_none() {
            r.fail("the run ended before the storm (--storm-at)".into());
        }
        for f in s.failures() {
            r.fail(f);
        }
        r.storm = Some(s);
    }
    judge(scenario, &mut r, &stats);
    r.finish();
    Ok(r)
}

/// Connections per `Cmd::Connect` batch: at most 256 (a worker starts handshaking while the
/// ramp goes on), and at most an even share per worker, so a run of fewer than
/// 256 x workers connections still spreads over every worker.
fn connect_chunk(conns: u64, workers: usize) -> u64 {
    conns.div_ceil(workers.max(1) as u64).clamp(1, 256)
}

/// Provided buffers per ring so that they hold about `bytes`: a power of two in [64, 4096].
fn buf_ring_entries(bytes: u32, buf_bytes: u32) -> u16 {
    (bytes / buf_bytes.max(1))
        .next_power_of_two()
        .clamp(64, 4096) as u16
}

/// Ask every worker for its `Mark`; `None` when one does not answer within 5 s.
fn mark(handle: &EngineHandle<Cmd>, workers: usize) -> Option<Vec<Mark>> {
    let (tx, rx) = mpsc::channel();
    for w in 0..workers {
        handle.post(w, Cmd::Mark(tx.clone()));
    }
    drop(tx);
    let by = Instant::now() + Duration::from_secs(5);
    let mut marks = vec![Mark::default(); workers];
    for _ in 0..workers {
        let m = rx
            .recv_timeout(by.saturating_duration_since(Instant::now()))
            .ok()?;
        marks[m.worker % workers] = m;
    }
    Some(marks)
}

fn default_template() -> Template {
    Template::parse(DEFAULT_TEMPLATE).expect("the default template parses")
}

/// Each scenario's own success criteria.
fn judge(scenario: &Scenario, r: &mut Report, s: &Stats) {
    let conns = r.connections_target;
    let opened = s.connects_ok;
    match scenario {
        Scenario::Connect(_) => {
            if opened < conns {
                r.fail(format!(
                    "{opened} of {conns} connections completed their handshake"
                ));
            }
        }
        _ => {
            if s.held < conns {
                r.fail(format!("{} of {conns} connections held to the end", s.held));
            }
        }
    }
    match scenario {
        Scenario::Hold(_) if s.stale > 0 => r.fail(format!(
            "{} connections went silent (no heartbeat)",
            s.stale
        )),
        Scenario::Fanout(_) => {
            if s.missing > 0 || s.duplicates > 0 || s.out_of_order > 0 {
                r.fail(format!(
                    "loss: {} missing, {} duplicate, {} out of order",
                    s.missing, s.duplicates, s.out_of_order
                ));
            }
            if s.publish_failed > 0 {
                r.fail(format!("{} publishes were refused", s.publish_failed));
            }
            if r.deliveries < r.deliveries_expected {
                r.fail(format!(
                    "{} of {} expected deliveries arrived",
                    r.deliveries, r.deliveries_expected
                ));
            }
        }
        Scenario::Calibrate(_) => {
            if s.deliveries == 0 {
                r.fail("no delivery arrived from the calibration source".into());
            }
            if s.errors.total() > 0 || s.missing + s.duplicates + s.out_of_order > 0 {
                r.fail("the harness miscounted the calibration source's stream".into());
            }
        }
        Scenario::Echo(_) => {
            if s.echoes == 0 {
                r.fail("no echo came back".into());
            }
            let bad = s.errors.get(crate::stats::ErrorKind::EchoMismatch);
            if bad > 0 {
                r.fail(format!("{bad} echoes did not match what was sent"));
            }
        }
        _ => {}
    }
}

/// The run's parameters for the JSON report (durations in seconds).
fn params(scenario: &Scenario) -> serde_json::Value {
    let c = scenario.common();
    let mut p = serde_json::json!({
        "url": c.url,
        "conns": c.conns,
        "rate": c.rate,
        "src": c.src.as_ref().map(|s| s.0.len()),
        "workers": c.workers,
        "harness_cpu": c.harness_cpu,
        "recv_buf": c.recv_buf,
        "connect_timeout_s": c.connect_timeout.as_secs_f64(),
        "max_time_s": scenario.max_time().as_secs_f64(),
        "topic_name": c.topic_name,
    });
    let extra = match scenario {
        Scenario::Hold(a) => serde_json::json!({
            "duration_s": a.duration.as_secs_f64(),
            "heartbeat_max_s": a.heartbeat_max.as_secs_f64(),
            "topics": a.topics,
        }),
        Scenario::Fanout(a) => serde_json::json!({
            "publish_url": a.publish_url,
            "topics": a.topics,
            "msg_rate_per_topic": a.msg_rate,
            "duration_s": a.duration.as_secs_f64(),
            "drain_s": a.drain.as_secs_f64(),
            "publishers": a.publishers,
            "envelope": a.envelope,
            "size": a.size,
            "skip_seq": a.skip_seq,
            "storm_at_s": a.storm_at.map(|d| d.as_secs_f64()),
        }),
        Scenario::Echo(a) => serde_json::json!({
            "inflight": a.inflight,
            "size": a.size,
            "duration_s": a.duration.as_secs_f64(),
            "binary": a.binary,
        }),
        Scenario::Connect(a) => serde_json::json!({ "hold_s": a.hold.as_secs_f64() }),
        Scenario::Calibrate(a) => serde_json::json!({
            "proto": format!("{:?}", a.proto).to_lowercase(),
            "duration_s": a.duration.as_secs_f64(),
            "batch": a.batch,
            "size": a.size,
            "source_workers": a.source_workers,
            "source_cpu": a.source_cpu,
        }),
    };
    if let (Some(p), serde_json::Value::Object(e)) = (p.as_object_mut(), extra) {
        p.extend(e);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::connect_chunk;

    /// Round-robin batches of `connect_chunk` give every worker its share (within a batch).
    #[test]
    fn connections_spread_over_every_worker() {
        for (conns, workers) in [
            (100u64, 2usize),
            (1000, 2),
            (1000, 4),
            (7, 3),
            (1, 8),
            (10_000, 2),
        ] {
            let chunk = connect_chunk(conns, workers);
            let mut per = vec![0u64; workers];
            let (mut posted, mut w) = (0, 0);
            while posted < conns {
                let n = (conns - posted).min(chunk);
                per[w] += n;
                posted += n;
                w = (w + 1) % workers;
            }
            let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
            assert!(hi - lo <= chunk, "{conns} over {workers}: {per:?}");
            if conns >= workers as u64 {
                assert!(
                    *lo > 0,
                    "{conns} over {workers}: a worker got none: {per:?}"
                );
            }
        }
        assert_eq!(connect_chunk(1_000_000, 2), 256);
        assert_eq!(connect_chunk(0, 0), 1);
    }

    /// The defaults before `--recv-buf` existed (4 KiB buffers) keep their counts.
    #[test]
    fn buffer_counts_follow_the_buffer_size() {
        use super::buf_ring_entries;
        assert_eq!(buf_ring_entries(16 << 20, 4096), 4096);
        assert_eq!(buf_ring_entries(4 << 20, 4096), 1024);
        assert_eq!(buf_ring_entries(16 << 20, 16384), 1024);
        assert_eq!(buf_ring_entries(4 << 20, 16384), 256);
        assert_eq!(buf_ring_entries(4 << 20, 1 << 20), 64);
        assert_eq!(buf_ring_entries(16 << 20, 10_000), 2048);
    }
}
