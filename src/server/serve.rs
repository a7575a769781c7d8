//! `uringcast serve`: start the engine's workers with a validated [`Config`]'s engine share
//! ([`Config::engine_config`]), say where it listens and what it can hold, and wait for shutdown.

use std::sync::Arc;

use super::auth::{self, Auth};
use super::config::Config;
use super::dispatch::Dispatcher;
use super::metrics::Counter;
use super::operator::StatsPublisher;
use super::shared::{Shared, WorkerMsg};
use super::tls::TlsFiles;
use crate::engine::{Engine, EngineConfig, HangupHook};

/// How often `$stats` is published while the status page (or anyone) watches it.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Run the server until SIGTERM/SIGINT. Prints `uringcast: listening on ADDR` on stdout once
/// every worker's first ring is ready (tests and scripts wait for that line; further rings
/// open as the file tables fill).
///
/// Without a publish key, a JWT key or `publish_open`, nobody could publish; so a random
/// publish key is made for this run, and a curl command that uses it is printed on stderr.
pub fn serve(mut config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let generated_key = config.publish_key.is_none()
        && config.jwt_hs256_secret.is_none()
        && config.jwt_public_key_file.is_none()
        && !config.publish_open;
    if generated_key {
        config.publish_key = Some(auth::random_key());
    }
    let auth = Auth::from_config(&config)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles::load(cert, key)?),
        _ => None,
    };
    let shared = Arc::new(Shared::new(config, auth, tls));
    let cfg = &shared.config;
    if shared.auth.subscriptions_need_token() && shared.auth.cookie().is_none() {
        if let Some(name) = &cfg.auth_cookie {
            eprintln!(
                "uringcast: the {name} cookie is not read while allowed_origins is *: any web \
                 page could make a browser send it; list your origins to use it"
            );
        }
    }
    eprintln!(
        "uringcast: replay history holds up to {} messages / {} KiB per topic, {} topics: \
         at most {} MiB in all",
        cfg.history_messages,
        cfg.history_bytes.0 >> 10,
        cfg.topics_max,
        cfg.history_worst_case_bytes() >> 20
    );
    let mut engine_cfg = cfg.engine_config();
    if shared.tls.is_some() {
        let for_reload = Arc::clone(&shared);
        engine_cfg.on_hangup = Some(HangupHook(Arc::new(move || reload_tls(&for_reload))));
    }
    let for_workers = Arc::clone(&shared);
    let engine: Engine<WorkerMsg> = Engine::start(engine_cfg, move |_worker| {
        Dispatcher::new(Arc::clone(&for_workers))
    })?;
    let local = engine.local_addr();
    let addr = local.map_or_else(|| "?".to_owned(), |a| a.to_string());
    let scheme = if shared.tls.is_some() {
        ", TLS: https:// and wss://"
    } else {
        ""
    };
    println!(
        "uringcast: listening on {addr} (capacity {} connections{scheme})",
        engine.connections_capacity()
    );
    let _ = shared.main_engine.set(engine.handle());
    if let Some(cluster) = &shared.cluster {
        let handle = engine.handle();
        let workers = handle.workers();
        let post: super::cluster::Poster =
            Arc::new(move |w, event| handle.post(w, WorkerMsg::Cluster(event)));
        cluster.start(workers, post)?;
        eprintln!("uringcast: cluster mode: publishes, ids and history through Redis");
    }
    // The admin address gets an engine of its own, one worker and one small ring: the
    // operator's routes need no more, and none of it competes with the main workers.
    let admin = match cfg.admin_listen {
        Some(listen) => {
            let admin_cfg = EngineConfig {
                listen: Some(listen),
                workers: 1,
                rings_per_worker: 1,
                connections_max: 64,
                files_per_ring: 256,
                listen_backlog: 16,
                tick_ms: cfg.tick.0,
                drain_timeout_ms: cfg.drain_timeout.0,
                // The main engine turns SIGTERM/SIGINT into a shutdown; this one follows it.
                handle_signals: false,
                ..EngineConfig::default()
            };
            let for_admin = Arc::clone(&shared);
            let admin: Engine<WorkerMsg> = Engine::start(admin_cfg, move |_worker| {
                Dispatcher::admin(Arc::clone(&for_admin))
            })?;
            let admin_addr = admin
                .local_addr()
                .map_or_else(|| "?".to_owned(), |a| a.to_string());
            println!("uringcast: admin listening on {admin_addr} (/metrics, /topics, /healthz)");
            Some(admin)
        }
        None => None,
    };
    if cfg.publish_open {
        eprintln!("uringcast: publish_open is set: anyone who can reach {addr} may publish");
    }
    if generated_key {
        // An unspecified listen address (0.0.0.0, ::) is reached locally through loopback.
        let reach = local.map_or(cfg.listen, |mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            a
        });
        let key = cfg.publish_key.as_deref().unwrap_or_default();
        let scheme = if shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        eprintln!(
            "uringcast: no publish_key, JWT key or publish_open set: this run's publish key is \
             {key}\nuringcast: publish with: curl -H 'Authorization: Bearer {key}' \
             --data-binary hello '{scheme}://{reach}/publish?topic=news'"
        );
    }
    let mut watched = vec![engine.handle()];
    watched.extend(admin.as_ref().map(Engine::handle));
    let stats = StatsPublisher::start(Arc::clone(&shared), watched, STATS_EVERY)?;
    let result = engine.wait();
    stats.stop();
    if let Some(cluster) = &shared.cluster {
        cluster.stop();
    }
    if let Some(admin) = admin {
        admin.handle().shutdown();
        admin.wait()?;
    }
    Ok(result?)
}

/// SIGHUP: read the certificate and key again. New connections get the new pair; open ones
/// keep theirs. A pair that fails to load leaves the old one in force.
fn reload_tls(shared: &Shared) {
    let Some(tls) = &shared.tls else {
        return;
    };
    match tls.reload() {
        Ok(()) => {
            shared.metrics.inc(Counter::TlsReloads);
            eprintln!(
                "uringcast: TLS certificate reloaded from {}",
                tls.cert_path()
            );
        }
        Err(e) => {
            shared.metrics.inc(Counter::TlsReloadErrors);
            tracing::error!(error = %e, "TLS reload failed; the previous certificate stays");
            eprintln!("uringcast: TLS reload failed, the previous certificate stays: {e}");
        }
    }
}
