//! What all workers share: the validated config, the security policy (with the ticket table
//! behind its own lock), the hub behind its one lock, the counters, and the message one
//! worker posts to another. Never here: connection state, I/O.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::auth::Auth;
use super::cluster::{Cluster, ClusterEvent};
use super::config::Config;
use super::limits::Limits;
use super::metrics::Metrics;
use super::presence::Presence;
use super::tls::TlsFiles;
use crate::engine::{ConnId, EngineHandle};
use crate::hub::{self, DeflateWindow, Message, Topics};
use crate::proto::http1::HttpLimits;

/// State shared by all workers. Locked: `hub` (on publish, subscribe and replay pages), the
/// ticket table (on issuing or using a ticket), the per-IP limits' shards (on the open and
/// close of a counted connection), each worker's presence shard (on subscribe and
/// unsubscribe) and the TLS config (read at each TLS open, written on SIGHUP).
pub struct Shared {
    pub config: Config,
    pub http_limits: HttpLimits,
    hub: Mutex<Topics>,
    pub metrics: Metrics,
    /// This lifetime's epoch, the first half of every wire id (the hub's, copied so that
    /// formatting an id needs no lock). In cluster mode ids carry the cluster's epoch instead:
    /// see [`Shared::epoch`].
    epoch: u64,
    /// Cluster mode (`cluster_redis_url`): publishes, ids and history go through Redis.
    pub cluster: Option<Arc<Cluster>>,
    /// The listen address is loopback: every peer is local. Stands in for a peer address the
    /// engine could not look up (`Origin::Accepted { peer: None }`).
    pub listen_is_loopback: bool,
    /// The main engine, once started: `/metrics` on the `admin_listen` address reports its
    /// counters, not those of the small engine that serves that address.
    pub main_engine: OnceLock<EngineHandle<WorkerMsg>>,
    /// Per-IP connection count and handshake rate (`connections_per_ip_max`,
    /// `handshakes_per_ip_per_sec`).
    pub limits: Limits,
    /// Who may do what: tokens, tickets, public topics, origins (see `auth`).
    pub auth: Auth,
    /// Subscribers per topic, one shard per worker (`/topics`).
    pub presence: Presence,
    /// The certificate and key, when `listen` speaks TLS (`tls_cert`, `tls_key`).
    pub tls: Option<TlsFiles>,
}

impl Shared {
    pub fn new(config: Config, auth: Auth, tls: Option<TlsFiles>) -> Shared {
        let http_limits = HttpLimits {
            request_line_bytes_max: config.request_line_bytes_max.0,
            head_bytes_max: config.head_bytes_max.0,
            headers_max: config.headers_max,
            body_bytes_max: config.publish_bytes_max.0 as u64,
            ..HttpLimits::default()
        };
        let hub_limits = hub::HubLimits {
            history_messages: config.history_messages,
            history_bytes: config.history_bytes.0,
            topics_max: config.topics_max,
            data_bytes_max: config.publish_bytes_max.0,
            ..hub::HubLimits::default()
        };
        let epoch = epoch_now();
        let cluster = config.cluster_redis_url.as_deref().map(|url| {
            let c = Cluster::new(url, config.history_messages, config.publish_bytes_max.0);
            Arc::new(c.expect("cluster_redis_url is checked by Config::validate"))
        });
        Shared {
            cluster,
            auth,
            tls,
            listen_is_loopback: config.listen.ip().is_loopback(),
            main_engine: OnceLock::new(),
            limits: Limits::new(
                config.connections_per_ip_max,
                config.handshakes_per_ip_per_sec,
            ),
            http_limits,
            hub: Mutex::new(Topics::with_epoch(hub_limits, epoch)),
            epoch,
            metrics: Metrics::default(),
            presence: Presence::default(),
            config,
        }
    }

    /// The epoch of the ids this node hands out: its own start time, or in cluster mode the
    /// cluster's epoch as last read from Redis (0 before Redis was reached).
    pub fn epoch(&self) -> u64 {
        match &self.cluster {
            Some(c) => c.epoch(),
            None => self.epoch,
        }
    }

    /// The hub lock. A panic while holding it cannot leave `Topics` half-updated in a way that
    /// breaks later calls (publish appends last), so a poisoned lock is still used.
    pub fn hub(&self) -> MutexGuard<'_, Topics> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// This lifetime's epoch: the start time in milliseconds since the Unix epoch (see
/// `hub::id`). A clock before 1970 would give 0, still a valid epoch.
fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A message from one worker to another (or to itself).
pub enum WorkerMsg {
    /// A published message, for this worker's local subscribers of its topic.
    Deliver(Arc<Message>),
    /// From the cluster's Redis threads (cluster mode only).
    Cluster(ClusterEvent),
}

/// A subscriber in a worker's [`hub::LocalIndex`]: the connection and which wire form it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sub {
    pub id: ConnId,
    pub form: Form,
}

/// How a subscriber takes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The SSE event bytes.
    Sse,
    /// The WebSocket text frame.
    Ws,
    /// The WebSocket text frame compressed with permessage-deflate in this window class
    /// (`Message::ws_deflated`), one per message and class, shared like the others.
    WsDeflate(DeflateWindow),
    /// A held long poll: the message's JSON (the WebSocket frame's payload) goes into the
    /// poll's answer, which the connection's own callback writes (`subscribe::Ready`).
    Poll,
}

impl Form {
    /// Whether the form is sized by the WebSocket encoding (its JSON), for replay pages.
    pub fn json(self) -> bool {
        self != Form::Sse
    }
}
