//! Cluster mode (`cluster_redis_url`): many nodes, one hub, through Redis or Valkey. The
//! io_uring workers never talk to Redis; two side threads per node do, and post what they get
//! into the workers' inboxes (`engine::EngineHandle::post`). See docs/cluster.md.
//!
//! ```text
//!  worker ──Job (bounded queue)──▶ command thread ──EVALSHA publish / page──▶ Redis
//!    ▲                                   │
//!    └──── Published / Page ◀────────────┘
//!  worker ──SubCmd (bounded)──▶ pubsub thread ──SUBSCRIBE uc:c:T──▶ Redis
//!    ▲                               │   (one pubsub connection, plus one for reads)
//!    └── Deliver(Arc<Message>) ◀─────┘   encoded once per node, posted to every worker
//! ```
//!
//! Redis keys: `uc:epoch` (the cluster's epoch, created by the first script that finds it
//! missing, from Redis's clock), `uc:seq` (one counter for every topic, so ids are increasing
//! across topics and one `Last-Event-ID` places a multi-topic stream), `uc:s:T` (topic `T`'s
//! history, a Stream whose entry ids are `N-0` for message id `E-N`, with fields `p` (the
//! topic's previous id: a first entry whose `p` is above a client's id proves a trimmed gap),
//! `e` (event name, empty for none) and `d` (data)), and channel `uc:c:T` (live messages).
//!
//! Publish is one Lua script: epoch (created if absent), INCR, XADD with `MAXLEN ~`, PUBLISH.
//! Scripts run atomically and PUBLISH delivers in execution order, so every node's pubsub
//! connection receives each topic's messages in id order. A replay page is one Lua script too
//! (epoch, counter and every topic's XRANGE in one atomic read), so the counter it returns is a
//! watermark: every message up to it is in the page's ranges (or reported trimmed), every later
//! one arrives by pubsub.
//!
//! No gap, no duplicate at the switch to live, on any node: the worker registers the
//! subscription and buffers its live messages (`subscribe::ClusterLocal`); the pubsub thread
//! makes sure the channel is subscribed (confirmed by Redis) before it forwards the page
//! request to the command thread; the page's watermark `W` is read after that, so a message
//! is either in the page (id <= W) or in the buffer, and the buffer's messages <= W are dropped.
//!
//! Never here: sockets of clients, connection state; the hub's `Topics` is not used.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use crate::engine::ConnId;
use crate::hub::{EventId, Message};

/// Jobs waiting for the command thread; one more is refused with 503 (counted).
const JOB_QUEUE: usize = 4096;
/// Subscription requests waiting for the pubsub thread; one more is refused with 503.
const SUB_QUEUE: usize = 4096;
/// Jobs sent to Redis in one pipeline (one round trip).
const BATCH_MAX: usize = 128;
/// How long the pubsub thread waits for a message before it looks at its queue: the latency
/// a first subscription to a topic adds.
const PUBSUB_POLL: Duration = Duration::from_millis(5);
/// Connect and I/O timeouts against Redis: a hung Redis fails jobs after this, never stalls
/// them forever.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Entries read per topic by one replay page (the worker also bounds its bytes).
const PAGE_ENTRIES: usize = 256;

const EPOCH_KEY: &str = "uc:epoch";
const SEQ_KEY: &str = "uc:seq";
const STREAM_PREFIX: &str = "uc:s:";
const CHANNEL_PREFIX: &str = "uc:c:";

/// Shared by both scripts: the epoch, created from Redis's clock (ms) when missing, which is
/// exactly when Redis lost its data (or never had any).
const EPOCH_FN: &str = r#"
local function epoch()
  local e = redis.call('GET', KEYS[1])
  if not e then
    local t = redis.call('TIME')
    e = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
    redis.call('SET', KEYS[1], e)
  end
  return e
end
"#;

/// KEYS: epoch, seq, stream. ARGV: maxlen, channel, event ('' = none), data.
/// Returns {epoch, seq}. The channel payload is `E N L ` followed by the event name and the
/// data back to back (L = the name's length).
const PUBLISH_BODY: &str = r#"
local e = epoch()
local n = redis.call('INCR', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local prev = '0'
if last[1] then prev = string.match(last[1][1], '^(%d+)') end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], n .. '-0', 'p', prev, 'e', ARGV[3], 'd', ARGV[4])
redis.call('PUBLISH', ARGV[2], e .. ' ' .. n .. ' ' .. #ARGV[3] .. ' ' .. ARGV[3] .. ARGV[4])
return {e, n}
"#;

/// KEYS: epoch, seq, stream per topic. ARGV: count, then per topic the XRANGE start (`-`,
/// `(N-0`) or `x` (live only: no range). Returns {epoch, seq, range per topic}, one atomic read.
const PAGE_BODY: &str = r#"
local e = epoch()
local n = redis.call('GET', KEYS[2]) or '0'
local out = {e, n}
for i = 3, #KEYS do
  local start = ARGV[i - 1]
  if start == 'x' then
    out[i] = {}
  else
    out[i] = redis.call('XRANGE', KEYS[i], start, '+', 'COUNT', ARGV[1])
  end
end
return out
"#;

/// Why a cluster operation did not happen; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// What the side threads post to a worker (inside `shared::WorkerMsg::Cluster`).
pub enum ClusterEvent {
    /// A live message for this worker's subscribers of its topic (encoded once per node).
    Deliver(Arc<Message>),
    /// The answer to a publish from connection `conn` (`ws`: a WebSocket publish op).
    Published {
        conn: ConnId,
        ws: bool,
        topic: Arc<str>,
        result: Result<EventId, Unavailable>,
    },
    /// One replay page for connection `conn`.
    Page {
        conn: ConnId,
        result: Result<Page, Unavailable>,
    },
    /// Local subscribers (of `topic`, or all) can no longer be served without loss (the epoch
    /// changed, or the history was trimmed past what this node had seen during a Redis
    /// outage): cut them, they resume from history on reconnect and get what is left.
    Cut { topic: Option<Arc<str>> },
}

/// Where a page request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochCheck {
    /// A fresh subscription: no replay, only the watermark.
    Any,
    /// The client's id was of epoch `E`: replay after it if Redis's epoch is `E`, else reset.
    Resume(u64),
    /// The client's id was a bare number (another lifetime): reset, then everything held.
    Foreign,
    /// A later page: the epoch must still be `E` (else the stream is cut).
    Paging(u64),
}

/// A replay page request from a worker.
pub struct PageReq {
    pub worker: usize,
    pub conn: ConnId,
    /// Each topic with where to start: `Some(N)` after id N (0: from the oldest held), `None`
    /// live only.
    pub topics: Vec<(Arc<str>, Option<u64>)>,
    pub epoch: EpochCheck,
    /// Stop adding events past this many bytes of the subscriber's wire form.
    pub page_bytes: usize,
    pub ws: bool,
}

/// One replay page.
#[derive(Debug)]
pub struct Page {
    pub epoch: u64,
    /// The client's id is of another epoch: send a reset before the events.
    pub foreign: bool,
    /// Topics whose history no longer reaches back to the client's id, with the oldest held.
    pub gaps: Vec<(Arc<str>, u64)>,
    pub events: Vec<Arc<Message>>,
    /// Every message of every topic up to this id was in this page or an earlier one.
    pub through: u64,
    /// `Some(W)`: the replay is complete; live messages above `W` follow.
    pub caught_up: Option<u64>,
}

enum Job {
    Publish {
        worker: usize,
        conn: ConnId,
        ws: bool,
        topic: Arc<str>,
        event: Option<Box<str>>,
        data: Box<str>,
    },
    Page(PageReq),
}

/// What workers ask of the pubsub thread.
pub enum SubCmd {
    /// One more local subscriber for each topic; then (once Redis confirmed every channel of
    /// this and earlier requests) hand `then` to the command thread.
    Want {
        topics: Vec<Arc<str>>,
        then: Option<PageReq>,
    },
    /// One local subscriber fewer for each topic.
    Drop { topics: Vec<Arc<str>> },
}

/// Counters of the cluster side, rendered into `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    pub queue_full: AtomicU64,
    pub reconnects: AtomicU64,
    pub rtt_us_sum: AtomicU64,
    pub rtt_count: AtomicU64,
    pub rtt_us_max: AtomicU64,
    pub pages: AtomicU64,
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub channels: AtomicU64,
    pub jobs_queued: AtomicU64,
    pub subcmds_queued: AtomicU64,
    pub epoch_changes: AtomicU64,
    pub cuts: AtomicU64,
    pub connected: AtomicBool,
}

/// How a side thread reaches the workers: `post(worker, event)`, and how many there are.
pub type Poster = Arc<dyn Fn(usize, ClusterEvent) + Send + Sync>;

/// The node's side of the cluster, shared by all workers.
pub struct Cluster {
    client: redis::Client,
    jobs: SyncSender<Job>,
    jobs_rx: Mutex<Option<Receiver<Job>>>,
    subs: Mutex<VecDeque<SubCmd>>,
    /// The epoch last seen in Redis (0 until Redis was reached).
    epoch: AtomicU64,
    history_messages: usize,
    data_bytes_max: usize,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub stats: ClusterStats,
}

impl Cluster {
    /// Checks the URL; connects nothing (the threads do, with backoff, once started).
    pub fn new(
        url: &str,
        history_messages: usize,
        data_bytes_max: usize,
    ) -> redis::RedisResult<Cluster> {
        let client = redis::Client::open(url)?;
        let (tx, rx) = mpsc::sync_channel(JOB_QUEUE);
        Ok(Cluster {
            client,
            jobs: tx,
            jobs_rx: Mutex::new(Some(rx)),
            subs: Mutex::new(VecDeque::new()),
            epoch: AtomicU64::new(0),
            history_messages,
            data_bytes_max,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            stats: ClusterStats::default(),
        })
    }

    /// The epoch last seen in Redis; 0 before Redis was first reached.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// Start the command and pubsub threads. `workers` is the engine's worker count.
    pub fn start(self: &Arc<Self>, workers: usize, post: Poster) -> std::io::Result<()> {
        let rx = self
            .jobs_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("Cluster::start called once");
        let (c1, p1) = (Arc::clone(self), Arc::clone(&post));
        let cmd = std::thread::Builder::new()
            .name("uringcast-redis-cmd".into())
            .spawn(move || CommandThread::new(c1, p1).run(rx))?;
        let (c2, p2) = (Arc::clone(self), post);
        let sub = std::thread::Builder::new()
            .name("uringcast-redis-sub".into())
            .spawn(move || PubSubThread::new(c2, p2, workers).run())?;
        let mut t = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        t.push(cmd);
        t.push(sub);
        Ok(())
    }

    /// Stop the threads (at shutdown) and wait for them.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        // Wakes the command thread if it waits for a job.
        let _ = self.jobs.try_send(Job::Page(PageReq {
            worker: usize::MAX,
            conn: ConnId { slot: 0, gen: 0 },
            topics: Vec::new(),
            epoch: EpochCheck::Any,
            page_bytes: 0,
            ws: false,
        }));
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Queue a publish; the answer comes back as `ClusterEvent::Published`. Refused when the
    /// queue to Redis is full.
    pub fn publish(
        &self,
        worker: usize,
        conn: ConnId,
        ws: bool,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<(), Unavailable> {
        let job = Job::Publish {
            worker,
            conn,
            ws,
            topic: Arc::from(topic),
            event: event.map(Box::from),
            data: Box::from(data),
        };
        self.send_job(job)
    }

    /// Queue a later replay page (its topics are subscribed already).
    pub fn next_page(&self, req: PageReq) -> Result<(), Unavailable> {
        self.send_job(Job::Page(req))
    }

    fn send_job(&self, job: Job) -> Result<(), Unavailable> {
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.stats.jobs_queued.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full.fetch_add(1, Relaxed);
                Err(Unavailable(format!(
                    "cluster: {JOB_QUEUE} requests already wait for Redis; try again"
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(Unavailable("cluster: the Redis thread has stopped".into()))
            }
        }
    }

    /// One more local subscriber per topic, then the page request (see [`SubCmd::Want`]).
    pub fn want(&self, topics: Vec<Arc<str>>, then: Option<PageReq>) -> Result<(), Unavailable> {
        let mut q = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= SUB_QUEUE {
            self.stats.queue_full.fetch_add(1, Relaxed);
            return Err(Unavailable(format!(
                "cluster: {SUB_QUEUE} subscriptions already wait for Redis; try again"
            )));
        }
        q.push_back(SubCmd::Want { topics, then });
        self.stats.subcmds_queued.fetch_add(1, Relaxed);
        Ok(())
    }

    /// One local subscriber fewer per topic. Never refused: a drop frees what a `want` took,
    /// so the queue holds at most as many drops as there are subscriptions.
    pub fn drop_topics(&self, topics: Vec<Arc<str>>) {
        if topics.is_empty() {
            return;
        }
        let mut q = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(SubCmd::Drop { topics });
        self.stats.subcmds_queued.fetch_add(1, Relaxed);
    }

    /// Prometheus text of the cluster counters.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let l = |a: &AtomicU64| a.load(Relaxed);
        let rows: [(&str, &str, &str, u64); 16] = [
            ("uringcast_cluster_connected", "gauge", "1 while the command connection to Redis is up.", u64::from(s.connected.load(Relaxed))),
            ("uringcast_cluster_epoch", "gauge", "The cluster epoch last read from Redis (0: not reached yet).", self.epoch()),
            ("uringcast_cluster_published_total", "counter", "Publishes stored by Redis for this node.", l(&s.published)),
            ("uringcast_cluster_publish_errors_total", "counter", "Publishes answered 503 (Redis unreachable, failed or its queue full).", l(&s.publish_errors)),
            ("uringcast_cluster_queue_full_total", "counter", "Requests refused because a queue to a Redis thread was full.", l(&s.queue_full)),
            ("uringcast_cluster_reconnects_total", "counter", "Connections to Redis made after the first (both threads).", l(&s.reconnects)),
            ("uringcast_cluster_redis_roundtrip_seconds_sum", "counter", "Time spent in Redis round trips of the command thread.", 0),
            ("uringcast_cluster_redis_roundtrips_total", "counter", "Redis round trips of the command thread (one pipeline each).", l(&s.rtt_count)),
            ("uringcast_cluster_replay_pages_total", "counter", "Replay pages read from Redis.", l(&s.pages)),
            ("uringcast_cluster_received_total", "counter", "Live messages received from Redis pubsub.", l(&s.received)),
            ("uringcast_cluster_duplicates_total", "counter", "Pubsub messages dropped as already delivered (after a resync).", l(&s.duplicates)),
            ("uringcast_cluster_subscribed_topics", "gauge", "Topics this node subscribes to in Redis (those with local subscribers).", l(&s.channels)),
            ("uringcast_cluster_epoch_changes_total", "counter", "Times Redis was found with another epoch (it lost its data).", l(&s.epoch_changes)),
            ("uringcast_cluster_cuts_total", "counter", "Times local subscribers were cut to resume from history (epoch change, trimmed during an outage).", l(&s.cuts)),
            ("uringcast_cluster_command_queue", "gauge", "Publishes and replay pages waiting for the command thread (bounded, see queue_full).", l(&s.jobs_queued)),
            ("uringcast_cluster_subscription_queue", "gauge", "Subscription changes waiting for the pubsub thread.", l(&s.subcmds_queued)),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in rows {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            if name.ends_with("_seconds_sum") {
                let secs = l(&s.rtt_us_sum) as f64 / 1e6;
                out.push_str(&format!("{name} {secs}\n"));
            } else {
                out.push_str(&format!("{name} {v}\n"));
            }
        }
        let max = l(&s.rtt_us_max) as f64 / 1e6;
        out.push_str(&format!(
            "# HELP uringcast_cluster_redis_roundtrip_max_seconds Longest Redis round trip so far.\n\
             # TYPE uringcast_cluster_redis_roundtrip_max_seconds gauge\n\
             uringcast_cluster_redis_roundtrip_max_seconds {max}\n"
        ));
        out
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let con = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// The epoch Redis has now.
    fn note_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Relaxed);
    }
}

/// Where a client's resume point (checked by `hub::parse_resume` already) places a replay:
/// `E-N` is after N in epoch E; a bare number is of another lifetime (reset, then all held).
pub fn resume_point(text: &str) -> (EpochCheck, Option<u64>) {
    let parsed = text
        .trim()
        .split_once('-')
        .and_then(|(e, n)| Some((e.parse().ok()?, n.parse().ok()?)));
    match parsed {
        Some((e, n)) => (EpochCheck::Resume(e), Some(n)),
        None => (EpochCheck::Foreign, Some(0)),
    }
}

fn stream_key(topic: &str) -> String {
    format!("{STREAM_PREFIX}{topic}")
}

fn channel(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

/// Both scripts, loaded on every (re)connect: a restarted Redis has lost them.
struct Scripts {
    publish: String,
    page: String,
}

impl Scripts {
    fn load(con: &mut Connection) -> redis::RedisResult<Scripts> {
        let load = |con: &mut Connection, body: &str| -> redis::RedisResult<String> {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(format!("{EPOCH_FN}{body}"))
                .query(con)
        };
        Ok(Scripts {
            publish: load(con, PUBLISH_BODY)?,
            page: load(con, PAGE_BODY)?,
        })
    }

    fn page_cmd(&self, topics: &[(Arc<str>, Option<u64>)], count: usize) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(&self.page)
            .arg(2 + topics.len())
            .arg(EPOCH_KEY)
            .arg(SEQ_KEY);
        for (t, _) in topics {
            c.arg(stream_key(t));
        }
        c.arg(count);
        for (_, after) in topics {
            match after {
                None => c.arg("x"),
                Some(0) => c.arg("-"),
                Some(n) => c.arg(format!("({n}-0")),
            };
        }
        c
    }
}

/// Run a SUBSCRIBE or UNSUBSCRIBE, whose confirmation may take longer than the short read
/// timeout the pubsub connection polls with.
fn with_timeout(
    ps: &mut redis::PubSub<'_>,
    subscribe: bool,
    chans: &[String],
) -> redis::RedisResult<()> {
    ps.set_read_timeout(Some(IO_TIMEOUT))?;
    let r = if subscribe {
        ps.subscribe(chans)
    } else {
        ps.unsubscribe(chans)
    };
    ps.set_read_timeout(Some(PUBSUB_POLL))?;
    r
}

fn backoff_next(d: Duration) -> Duration {
    (d * 2).min(BACKOFF_MAX)
}

/// The command thread: publishes and replay pages, pipelined in batches, one connection.
struct CommandThread {
    cluster: Arc<Cluster>,
    post: Poster,
    con: Option<(Connection, Scripts)>,
    backoff: Duration,
    next_try: Instant,
    ever_connected: bool,
}

impl CommandThread {
    fn new(cluster: Arc<Cluster>, post: Poster) -> CommandThread {
        CommandThread {
            cluster,
            post,
            con: None,
            backoff: BACKOFF_MIN,
            next_try: Instant::now(),
            ever_connected: false,
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX);
        loop {
            if self.cluster.stop.load(Relaxed) {
                return;
            }
            // Connect eagerly (so the epoch is known early) and retry with backoff while idle.
            if self.con.is_none() && Instant::now() >= self.next_try {
                self.try_connect();
            }
            match rx.recv_timeout(BACKOFF_MIN) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            self.cluster
                .stats
                .jobs_queued
                .fetch_sub(n.min(self.cluster.stats.jobs_queued.load(Relaxed)), Relaxed);
            batch.retain(|j| !matches!(j, Job::Page(p) if p.worker == usize::MAX));
            if batch.is_empty() {
                continue;
            }
            if self.con.is_none() && Instant::now() >= self.next_try {
                self.try_connect();
            }
            match self.con.is_some() {
                true => self.run_batch(&mut batch),
                false => {
                    let why = "cluster: Redis is unreachable; nothing was stored, try again";
                    for job in batch.drain(..) {
                        self.finish(job, Err(why));
                    }
                }
            }
        }
    }

    fn try_connect(&mut self) {
        let result = self
            .cluster
            .connect()
            .and_then(|mut con| Scripts::load(&mut con).map(|s| (con, s)));
        match result {
            Ok(c) => {
                if self.ever_connected {
                    self.cluster.stats.reconnects.fetch_add(1, Relaxed);
                }
                tracing::info!("cluster: command connection to Redis up");
                self.ever_connected = true;
                self.con = Some(c);
                self.backoff = BACKOFF_MIN;
                self.cluster.stats.connected.store(true, Relaxed);
            }
            Err(e) => {
                tracing::warn!(
                    "cluster: cannot reach Redis: {e}; retry in {:?}",
                    self.backoff
                );
                self.next_try = Instant::now() + self.backoff;
                self.backoff = backoff_next(self.backoff);
            }
        }
    }

    fn lost(&mut self, e: &redis::RedisError) {
        tracing::warn!("cluster: Redis command connection lost: {e}");
        self.con = None;
        self.cluster.stats.connected.store(false, Relaxed);
        self.next_try = Instant::now();
    }

    fn run_batch(&mut self, batch: &mut Vec<Job>) {
        let (con, scripts) = self.con.as_mut().expect("connected");
        let mut pipe = redis::pipe();
        for job in batch.iter() {
            match job {
                Job::Publish {
                    topic, event, data, ..
                } => {
                    pipe.cmd("EVALSHA")
                        .arg(&scripts.publish)
                        .arg(3)
                        .arg(EPOCH_KEY)
                        .arg(SEQ_KEY)
                        .arg(stream_key(topic))
                        .arg(self.cluster.history_messages)
                        .arg(channel(topic))
                        .arg(event.as_deref().unwrap_or(""))
                        .arg(&**data);
                }
                Job::Page(req) => {
                    pipe.add_command(scripts.page_cmd(&req.topics, PAGE_ENTRIES));
                }
            }
        }
        let start = Instant::now();
        let result: redis::RedisResult<Vec<Value>> = pipe.query(con);
        let us = start.elapsed().as_micros() as u64;
        let stats = &self.cluster.stats;
        stats.rtt_us_sum.fetch_add(us, Relaxed);
        stats.rtt_count.fetch_add(1, Relaxed);
        stats.rtt_us_max.fetch_max(us, Relaxed);
        match result {
            Ok(values) if values.len() == batch.len() => {
                for (job, value) in batch.drain(..).zip(values) {
                    self.finish(job, Ok(value));
                }
            }
            Ok(_) => {
                for job in batch.drain(..) {
                    self.finish(job, Err("cluster: Redis answered a batch short"));
                }
            }
            Err(e) => {
                // The connection broke, or a script is missing (Redis restarted between two
                // batches): whether any of the batch was stored is unknown, so the publisher
                // is told so and may retry (a retry may store the message twice).
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                    tracing::warn!("cluster: Redis lost the scripts (restarted?); reloading");
                } else {
                    self.lost(&e);
                }
                self.con = None;
                self.cluster.stats.connected.store(false, Relaxed);
                let why = format!(
                    "cluster: Redis failed during the request ({e}); it may or may not be stored"
                );
                for job in batch.drain(..) {
                    self.finish(job, Err(&why));
                }
            }
        }
    }

    /// Tell the worker that asked how its job ended: `Ok` with Redis's answer to it, or
    /// `Err` with why there is none.
    fn finish(&self, job: Job, reply: Result<Value, &str>) {
        match job {
            Job::Publish {
                worker,
                conn,
                ws,
                topic,
                ..
            } => {
                let result = match reply {
                    Ok(value) => parse_publish_reply(&value).ok_or_else(|| {
                        Unavailable(format!("cluster: unexpected answer from Redis: {value:?}"))
                    }),
                    Err(why) => Err(Unavailable(why.to_owned())),
                };
                match &result {
                    Ok(id) => {
                        self.cluster.stats.published.fetch_add(1, Relaxed);
                        self.cluster.note_epoch(id.epoch);
                    }
                    Err(_) => {
                        self.cluster.stats.publish_errors.fetch_add(1, Relaxed);
                    }
                }
                (self.post)(
                    worker,
                    ClusterEvent::Published {
                        conn,
                        ws,
                        topic,
                        result,
                    },
                );
            }
            Job::Page(req) => {
                let result = match reply {
                    Ok(value) => {
                        self.cluster.stats.pages.fetch_add(1, Relaxed);
                        build_page(&req, &value, self.cluster.data_bytes_max)
                            .map_err(|e| Unavailable(format!("cluster: {e}")))
                    }
                    Err(why) => Err(Unavailable(why.to_owned())),
                };
                if let Ok(p) = &result {
                    self.cluster.note_epoch(p.epoch);
                }
                (self.post)(
                    req.worker,
                    ClusterEvent::Page {
                        conn: req.conn,
                        result,
                    },
                );
            }
        }
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn value_str(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn parse_publish_reply(v: &Value) -> Option<EventId> {
    let Value::Array(items) = v else { return None };
    Some(EventId {
        epoch: value_u64(items.first()?)?,
        seq: value_u64(items.get(1)?)?,
    })
}

/// One stream entry: (id, prev, event, data).
fn parse_entry(v: &Value) -> Option<(u64, u64, Option<&str>, &str)> {
    let Value::Array(pair) = v else { return None };
    let id = value_str(pair.first()?)?;
    let seq: u64 = id.strip_suffix("-0")?.parse().ok()?;
    let Value::Array(fields) = pair.get(1)? else {
        return None;
    };
    let (mut prev, mut event, mut data) = (0, None, "");
    for kv in fields.chunks(2) {
        let [k, v] = kv else { return None };
        match value_str(k)? {
            "p" => prev = value_u64(v)?,
            "e" => event = Some(value_str(v)?).filter(|e| !e.is_empty()),
            "d" => data = value_str(v)?,
            _ => {}
        }
    }
    Some((seq, prev, event, data))
}

/// Turns the page script's answer into a page: merges the topics' ranges by id, cuts the
/// page where a topic's range was full (beyond that point it may hold more, not read yet) or
/// where the byte budget ends, and finds the gaps.
fn build_page(req: &PageReq, v: &Value, data_bytes_max: usize) -> Result<Page, &'static str> {
    const BAD: &str = "unexpected answer from Redis to a replay page";
    let Value::Array(items) = v else {
        return Err(BAD);
    };
    let epoch = items.first().and_then(value_u64).ok_or(BAD)?;
    let seq = items.get(1).and_then(value_u64).ok_or(BAD)?;
    let foreign = match req.epoch {
        EpochCheck::Any => false,
        EpochCheck::Resume(e) => e != epoch,
        EpochCheck::Foreign => true,
        EpochCheck::Paging(e) if e != epoch => {
            return Err("the cluster epoch changed during a replay (Redis lost its data)")
        }
        EpochCheck::Paging(_) => false,
    };
    let mut gaps = Vec::new();
    let mut all: Vec<(u64, usize, Option<&str>, &str)> = Vec::new();
    // The page may only reach as far as every full range reached.
    let mut limit = u64::MAX;
    for (k, (topic, after)) in req.topics.iter().enumerate() {
        let Value::Array(range) = items.get(2 + k).ok_or(BAD)? else {
            return Err(BAD);
        };
        let mut first = true;
        for e in range {
            let (id, prev, event, data) = parse_entry(e).ok_or(BAD)?;
            if data.len() > data_bytes_max {
                return Err(BAD);
            }
            if first {
                first = false;
                // A first entry whose predecessor is above the client's id: that one, at least,
                // was trimmed.
                if let Some(a) = *after {
                    if !foreign && a > 0 && prev > a {
                        gaps.push((Arc::clone(topic), id));
                    }
                }
            }
            all.push((id, k, event, data));
        }
        if range.len() >= PAGE_ENTRIES {
            let last = all.last().map_or(0, |e| e.0);
            limit = limit.min(last);
        }
    }
    all.sort_unstable_by_key(|e| e.0);
    let mut events = Vec::new();
    let mut bytes = 0usize;
    let mut through = None;
    for (id, k, event, data) in all {
        if id > limit {
            through = Some(limit);
            break;
        }
        let msg = Message::encode(
            EventId { epoch, seq: id },
            Arc::clone(&req.topics[k].0),
            event,
            data,
        );
        let size = if req.ws { msg.ws.len() } else { msg.sse.len() };
        if !events.is_empty() && bytes.saturating_add(size) > req.page_bytes {
            through = Some(id - 1);
            break;
        }
        bytes += size;
        events.push(Arc::new(msg));
    }
    if through.is_none() && limit != u64::MAX {
        through = Some(limit);
    }
    Ok(match through {
        Some(t) => Page {
            epoch,
            foreign,
            gaps,
            events,
            through: t,
            caught_up: None,
        },
        None => Page {
            epoch,
            foreign,
            gaps,
            events,
            through: seq,
            caught_up: Some(seq),
        },
    })
}

/// A live message from a channel payload (see `PUBLISH_BODY`).
fn parse_payload(topic: &str, payload: &[u8]) -> Option<(EventId, Option<String>, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, ' ');
    let epoch = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let elen: usize = parts.next()?.parse().ok()?;
    let rest = parts.next().unwrap_or("");
    let event = rest.get(..elen)?;
    let data = rest.get(elen..)?;
    let _ = topic;
    Some((
        EventId { epoch, seq },
        Some(event.to_owned()).filter(|e| !e.is_empty()),
        data.to_owned(),
    ))
}

/// One topic the node subscribes to.
struct Subscribed {
    name: Arc<str>,
    /// Local subscribers (over all workers).
    count: usize,
    /// Highest id posted to the workers; lower or equal ids from pubsub are duplicates.
    last: u64,
}

/// The pubsub thread: one SUBSCRIBE connection, plus one plain connection for the counter
/// and catch-up reads.
struct PubSubThread {
    cluster: Arc<Cluster>,
    post: Poster,
    workers: usize,
    topics: HashMap<Arc<str>, Subscribed>,
    ever_connected: bool,
    backoff: Duration,
    /// The epoch of what this thread posted to the workers (0: none yet). Kept apart from
    /// `Cluster::epoch`, which the command thread also moves: a change must be seen here.
    known: u64,
}

enum Exit {
    Stop,
    Lost(redis::RedisError),
}

impl From<redis::RedisError> for Exit {
    fn from(e: redis::RedisError) -> Exit {
        Exit::Lost(e)
    }
}

impl PubSubThread {
    fn new(cluster: Arc<Cluster>, post: Poster, workers: usize) -> PubSubThread {
        PubSubThread {
            cluster,
            post,
            workers,
            topics: HashMap::new(),
            ever_connected: false,
            backoff: BACKOFF_MIN,
            known: 0,
        }
    }

    /// Note the epoch Redis has now; a change cuts every local subscriber.
    fn check_epoch(&mut self, epoch: u64) {
        self.cluster.note_epoch(epoch);
        if self.known != 0 && self.known != epoch {
            self.epoch_changed(epoch);
        }
        self.known = epoch;
    }

    fn run(mut self) {
        loop {
            if self.cluster.stop.load(Relaxed) {
                return;
            }
            let cons = self
                .cluster
                .connect()
                .and_then(|a| Ok((a, self.cluster.connect()?)));
            match cons {
                Ok((mut ps, mut plain)) => {
                    self.backoff = BACKOFF_MIN;
                    match self.connected(&mut ps, &mut plain) {
                        Exit::Stop => return,
                        Exit::Lost(e) => {
                            tracing::warn!("cluster: Redis pubsub connection lost: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("cluster: pubsub cannot reach Redis: {e}");
                    // Subscriptions asked for meanwhile fail at once rather than wait.
                    self.refuse_waiting("cluster: Redis is unreachable; try again");
                    std::thread::sleep(self.backoff);
                    self.backoff = backoff_next(self.backoff);
                }
            }
        }
    }

    fn refuse_waiting(&mut self, why: &str) {
        let cmds: Vec<SubCmd> = self.take_cmds();
        for cmd in cmds {
            match cmd {
                SubCmd::Want { topics, then } => {
                    // Counted anyway: the worker's drop on close will take it back.
                    for t in topics {
                        self.topics
                            .entry(Arc::clone(&t))
                            .or_insert_with(|| Subscribed {
                                name: t,
                                count: 0,
                                last: 0,
                            })
                            .count += 1;
                    }
                    if let Some(req) = then {
                        (self.post)(
                            req.worker,
                            ClusterEvent::Page {
                                conn: req.conn,
                                result: Err(Unavailable(why.to_owned())),
                            },
                        );
                    }
                }
                SubCmd::Drop { topics } => {
                    self.dropped(topics);
                }
            }
        }
    }

    fn take_cmds(&self) -> Vec<SubCmd> {
        let mut q = self.cluster.subs.lock().unwrap_or_else(|p| p.into_inner());
        let v: Vec<SubCmd> = q.drain(..).collect();
        self.cluster.stats.subcmds_queued.store(0, Relaxed);
        v
    }

    fn next_cmd(&self) -> Option<SubCmd> {
        let mut q = self.cluster.subs.lock().unwrap_or_else(|p| p.into_inner());
        let cmd = q.pop_front();
        self.cluster
            .stats
            .subcmds_queued
            .store(q.len() as u64, Relaxed);
        cmd
    }

    fn requeue(&self, cmd: SubCmd) {
        let mut q = self.cluster.subs.lock().unwrap_or_else(|p| p.into_inner());
        q.push_front(cmd);
    }

    /// One request from a worker. Redis is asked before anything is counted, so a request
    /// that fails can be served again whole.
    fn serve(
        &mut self,
        cmd: SubCmd,
        ps: &mut redis::PubSub<'_>,
        plain: &mut Connection,
    ) -> Result<(), Box<(redis::RedisError, SubCmd)>> {
        let SubCmd::Want { topics, then } = cmd else {
            let SubCmd::Drop { topics } = cmd else {
                unreachable!()
            };
            let gone = self.dropped(topics);
            if !gone.is_empty() {
                let r = with_timeout(ps, false, &gone);
                if let Err(e) = r {
                    // Counted down already; the reconnect subscribes only what is counted.
                    return Err(Box::new((e, SubCmd::Drop { topics: Vec::new() })));
                }
            }
            return Ok(());
        };
        let mut new: Vec<Arc<str>> = Vec::new();
        for t in &topics {
            if !self.topics.contains_key(t) && !new.contains(t) {
                new.push(Arc::clone(t));
            }
        }
        if !new.is_empty() {
            // Ids up to the counter read before SUBSCRIBE were published before this node
            // listened: none of them is a live delivery (a replay carries them).
            let subscribed = self.current_epoch_and_seq(plain).and_then(|(e, n)| {
                let chans: Vec<String> = new.iter().map(|t| channel(t)).collect();
                with_timeout(ps, true, &chans)?;
                Ok((e, n))
            });
            let (e, n) = match subscribed {
                Ok(x) => x,
                Err(err) => return Err(Box::new((err, SubCmd::Want { topics, then }))),
            };
            self.check_epoch(e);
            for t in new {
                self.topics.insert(
                    Arc::clone(&t),
                    Subscribed {
                        name: t,
                        count: 0,
                        last: n,
                    },
                );
            }
            self.cluster
                .stats
                .channels
                .store(self.topics.len() as u64, Relaxed);
        }
        for t in &topics {
            if let Some(s) = self.topics.get_mut(t) {
                s.count += 1;
            }
        }
        if let Some(req) = then {
            let (w, conn) = (req.worker, req.conn);
            if let Err(e) = self.cluster.next_page(req) {
                (self.post)(
                    w,
                    ClusterEvent::Page {
                        conn,
                        result: Err(e),
                    },
                );
            }
        }
        Ok(())
    }

    /// Count one subscriber fewer per topic; returns the channels nobody here needs now.
    fn dropped(&mut self, topics: Vec<Arc<str>>) -> Vec<String> {
        let mut gone = Vec::new();
        for t in topics {
            if let Some(s) = self.topics.get_mut(&t) {
                s.count = s.count.saturating_sub(1);
                if s.count == 0 {
                    self.topics.remove(&t);
                    gone.push(channel(&t));
                }
            }
        }
        self.cluster
            .stats
            .channels
            .store(self.topics.len() as u64, Relaxed);
        gone
    }

    fn post_all(&self, event: impl Fn() -> ClusterEvent) {
        for w in 0..self.workers {
            (self.post)(w, event());
        }
    }

    fn current_epoch_and_seq(&self, plain: &mut Connection) -> redis::RedisResult<(u64, u64)> {
        let script = format!("{EPOCH_FN}return {{epoch(), redis.call('GET', KEYS[2]) or '0'}}");
        let v: Value = redis::cmd("EVAL")
            .arg(script)
            .arg(2)
            .arg(EPOCH_KEY)
            .arg(SEQ_KEY)
            .query(plain)?;
        let bad = || redis::RedisError::from((redis::ErrorKind::Parse, "epoch/seq reply"));
        let Value::Array(items) = v else {
            return Err(bad());
        };
        let e = items.first().and_then(value_u64).ok_or_else(bad)?;
        let n = items.get(1).and_then(value_u64).ok_or_else(bad)?;
        Ok((e, n))
    }

    /// The epoch in Redis is not the one we knew: everything local is cut.
    fn epoch_changed(&mut self, epoch: u64) {
        tracing::warn!("cluster: Redis has a new epoch {epoch} (it lost its data); local subscribers resume from the new history");
        self.cluster.stats.epoch_changes.fetch_add(1, Relaxed);
        self.cluster.stats.cuts.fetch_add(1, Relaxed);
        for s in self.topics.values_mut() {
            s.last = 0;
        }
        self.post_all(|| ClusterEvent::Cut { topic: None });
    }

    fn connected(&mut self, ps_con: &mut Connection, plain: &mut Connection) -> Exit {
        if self.ever_connected {
            self.cluster.stats.reconnects.fetch_add(1, Relaxed);
        }
        self.ever_connected = true;
        let (epoch, seq) = match self.current_epoch_and_seq(plain) {
            Ok(x) => x,
            Err(e) => return Exit::Lost(e),
        };
        let changed = self.known != 0 && self.known != epoch;
        self.check_epoch(epoch);
        if changed {
            // Every local subscriber was cut: nothing to catch up on, and the new epoch's
            // ids up to `seq` reach new subscribers through their replay.
            for s in self.topics.values_mut() {
                s.last = seq;
            }
        }
        let mut ps = ps_con.as_pubsub();
        if let Err(e) = ps.set_read_timeout(Some(PUBSUB_POLL)) {
            return Exit::Lost(e);
        }
        // Resubscribe, then catch up on what the outage hid: every topic from the last id
        // posted, read after the channel is subscribed again, duplicates dropped by `last`.
        let names: Vec<Arc<str>> = self.topics.keys().cloned().collect();
        if !names.is_empty() {
            let chans: Vec<String> = names.iter().map(|t| channel(t)).collect();
            for chunk in chans.chunks(512) {
                if let Err(e) = with_timeout(&mut ps, true, chunk) {
                    return Exit::Lost(e);
                }
            }
            for t in names.iter().filter(|_| !changed) {
                if let Err(e) = self.catch_up(plain, t, epoch) {
                    return Exit::Lost(e);
                }
            }
        }
        loop {
            if self.cluster.stop.load(Relaxed) {
                return Exit::Stop;
            }
            // One request at a time: one that meets a broken connection goes back to the
            // front of the queue, to be served after the reconnect.
            while let Some(cmd) = self.next_cmd() {
                if let Err(failed) = self.serve(cmd, &mut ps, plain) {
                    let (e, cmd) = *failed;
                    self.requeue(cmd);
                    return Exit::Lost(e);
                }
            }
            // Read what arrived, until the poll interval passes with nothing.
            for _ in 0..1024 {
                match ps.get_message() {
                    Ok(msg) => self.on_message(msg.get_channel_name(), msg.get_payload_bytes()),
                    Err(e) if e.is_timeout() => break,
                    Err(e) => return Exit::Lost(e),
                }
            }
        }
    }

    fn on_message(&mut self, chan: &str, payload: &[u8]) {
        let Some(topic) = chan.strip_prefix(CHANNEL_PREFIX) else {
            return;
        };
        let Some((id, event, data)) = parse_payload(topic, payload) else {
            tracing::warn!("cluster: malformed message on {chan}");
            return;
        };
        self.cluster.stats.received.fetch_add(1, Relaxed);
        self.check_epoch(id.epoch);
        self.deliver(topic, id, event.as_deref(), &data);
    }

    fn deliver(&mut self, topic: &str, id: EventId, event: Option<&str>, data: &str) {
        let Some(s) = self.topics.get_mut(topic) else {
            return; // unsubscribed meanwhile
        };
        if id.seq <= s.last {
            self.cluster.stats.duplicates.fetch_add(1, Relaxed);
            return;
        }
        s.last = id.seq;
        let msg = Arc::new(Message::encode(id, Arc::clone(&s.name), event, data));
        self.post_all(|| ClusterEvent::Deliver(Arc::clone(&msg)));
    }

    /// After a reconnect: post what `topic` got while this node was not listening, from the
    /// history. If the history no longer reaches back, its local subscribers are cut.
    fn catch_up(
        &mut self,
        plain: &mut Connection,
        topic: &Arc<str>,
        epoch: u64,
    ) -> redis::RedisResult<()> {
        loop {
            let Some(s) = self.topics.get(topic) else {
                return Ok(());
            };
            let after = s.last;
            let start = if after == 0 {
                "-".to_owned()
            } else {
                format!("({after}-0")
            };
            let v: Value = redis::cmd("XRANGE")
                .arg(stream_key(topic))
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE_ENTRIES)
                .query(plain)?;
            let Value::Array(range) = v else {
                return Ok(());
            };
            let n = range.len();
            for (i, e) in range.iter().enumerate() {
                let Some((seq, prev, event, data)) = parse_entry(e) else {
                    continue;
                };
                if i == 0 && after > 0 && prev > after {
                    self.cluster.stats.cuts.fetch_add(1, Relaxed);
                    let t = Arc::clone(topic);
                    self.post_all(|| ClusterEvent::Cut {
                        topic: Some(Arc::clone(&t)),
                    });
                }
                self.deliver(topic, EventId { epoch, seq }, event, data);
            }
            if n < PAGE_ENTRIES {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let (id, ev, data) = parse_payload("t", b"17 5 4 ticka b c").unwrap();
        assert_eq!(id, EventId { epoch: 17, seq: 5 });
        assert_eq!(ev.as_deref(), Some("tick"));
        assert_eq!(data, "a b c");
        let (_, ev, data) = parse_payload("t", b"17 6 0 ").unwrap();
        assert_eq!((ev, data.as_str()), (None, ""));
        assert!(parse_payload("t", b"17 6 9 short").is_none());
        assert!(parse_payload("t", b"x 6 0 ").is_none());
    }

    fn entry(id: u64, prev: u64, data: &str) -> Value {
        let b = |s: String| Value::BulkString(s.into_bytes());
        Value::Array(vec![
            b(format!("{id}-0")),
            Value::Array(vec![
                b("p".into()),
                b(prev.to_string()),
                b("e".into()),
                b(String::new()),
                b("d".into()),
                b(data.into()),
            ]),
        ])
    }

    fn req(topics: &[(&str, Option<u64>)], epoch: EpochCheck) -> PageReq {
        PageReq {
            worker: 0,
            conn: ConnId { slot: 0, gen: 0 },
            topics: topics.iter().map(|(t, a)| (Arc::from(*t), *a)).collect(),
            epoch,
            page_bytes: 1 << 20,
            ws: false,
        }
    }

    #[test]
    fn page_merges_topics_in_id_order_and_finds_gaps() {
        let v = Value::Array(vec![
            Value::Int(7),
            Value::Int(9),
            Value::Array(vec![entry(4, 3, "a4"), entry(8, 4, "a8")]),
            Value::Array(vec![entry(5, 1, "b5")]),
        ]);
        let p = build_page(
            &req(&[("a", Some(2)), ("b", Some(2))], EpochCheck::Resume(7)),
            &v,
            100,
        )
        .unwrap();
        let ids: Vec<u64> = p.events.iter().map(|m| m.id).collect();
        assert_eq!(ids, [4, 5, 8]);
        assert_eq!(p.caught_up, Some(9));
        assert_eq!(p.gaps.len(), 1, "a's first entry follows 3 > 2: trimmed");
        assert_eq!(&*p.gaps[0].0, "a");
        assert!(!p.foreign);
        let p = build_page(
            &req(&[("a", Some(2)), ("b", Some(2))], EpochCheck::Resume(6)),
            &v,
            100,
        )
        .unwrap();
        assert!(p.foreign && p.gaps.is_empty());
        assert!(build_page(
            &req(&[("a", Some(2)), ("b", Some(2))], EpochCheck::Paging(6)),
            &v,
            100
        )
        .is_err());
    }

    #[test]
    fn page_stops_at_a_full_range_and_at_the_byte_budget() {
        let full: Vec<Value> = (1..=PAGE_ENTRIES as u64)
            .map(|i| entry(i * 2, 0, "x"))
            .collect();
        let v = Value::Array(vec![
            Value::Int(1),
            Value::Int(10_000),
            Value::Array(full),
            Value::Array(vec![entry(3, 0, "y"), entry(9_999, 3, "z")]),
        ]);
        let p = build_page(
            &req(&[("a", Some(0)), ("b", Some(0))], EpochCheck::Any),
            &v,
            100,
        )
        .unwrap();
        assert_eq!(p.caught_up, None);
        assert_eq!(p.through, PAGE_ENTRIES as u64 * 2);
        assert!(p.events.iter().all(|m| m.id <= p.through));
        assert_eq!(p.events.len(), PAGE_ENTRIES + 1);
        let mut r = req(&[("a", Some(0)), ("b", Some(0))], EpochCheck::Any);
        r.page_bytes = 1;
        let p = build_page(&r, &v, 100).unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.through, 2);
    }
}
