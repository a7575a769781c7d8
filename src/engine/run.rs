//! `Engine`: start-up (probe, listeners, worker threads, signal thread), the capacity report,
//! and waiting for the end. Set-up errors surface here, synchronously, as one `EngineError`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use super::config::{layout, Layout};
use super::inbox::{EngineHandle, Inbox, Shared};
use super::stats::EngineStats;
use super::worker::Worker;
use super::{accept, ring, signal, EngineConfig, EngineError, Handler};

/// A running engine. Dropping it does not stop it; call `handle().shutdown()` then `wait()`.
pub struct Engine<M: Send + 'static> {
    handle: EngineHandle<M>,
    local_addr: Option<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    signal_stop: Arc<AtomicBool>,
    signal_thread: Option<JoinHandle<()>>,
    layout: Layout,
}

impl<M: Send + 'static> Engine<M> {
    /// Start and block until shutdown (SIGTERM/SIGINT or `EngineHandle::shutdown`) completes.
    pub fn run<H, F>(cfg: EngineConfig, make_handler: F) -> Result<(), EngineError>
    where
        H: Handler<Msg = M>,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        Engine::start(cfg, make_handler)?.wait()
    }

    /// Start the workers and return once each worker's first ring is set up (or the first
    /// set-up error); a worker opens further rings as their file tables fill.
    /// `make_handler(worker)` runs on each worker's thread.
    pub fn start<H, F>(cfg: EngineConfig, make_handler: F) -> Result<Engine<M>, EngineError>
    where
        H: Handler<Msg = M>,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let layout = layout(&cfg)?;
        let features = ring::probe()?;
        let (mut listeners, local_addr) = match cfg.listen {
            Some(addr) => {
                let (fds, bound) = accept::bind_listeners(addr, layout.workers, &layout)?;
                (fds, Some(bound))
            }
            None => (Vec::new(), None),
        };
        let mut inboxes = Vec::with_capacity(layout.workers);
        for _ in 0..layout.workers {
            inboxes.push(Inbox::new().map_err(|err| EngineError::Setup {
                what: "eventfd",
                err,
            })?);
        }
        let shared = Arc::new(Shared {
            inboxes,
            stats: EngineStats::default(),
            shutdown: AtomicBool::new(false),
            clock: std::time::Instant::now(),
            has_bind: features.bind,
        });
        if cfg.handle_signals {
            signal::block_signals(cfg.on_hangup.is_some());
        }
        let layout_arc = Arc::new(layout.clone());
        let make_handler = Arc::new(make_handler);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), EngineError>>();
        let mut workers = Vec::with_capacity(layout.workers);
        for w in 0..layout.workers {
            let mine = if listeners.is_empty() {
                None
            } else {
                Some(listeners.remove(0))
            };
            let (layout, shared_w, make, ready) = (
                Arc::clone(&layout_arc),
                Arc::clone(&shared),
                Arc::clone(&make_handler),
                ready_tx.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("uringcast-w{w}"))
                .spawn(move || {
                    let handler = make(w);
                    match Worker::new(w, layout, shared_w, mine, handler) {
                        Ok(worker) => {
                            let _ = ready.send(Ok(()));
                            worker.run();
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                });
            match spawned {
                Ok(h) => workers.push(h),
                Err(err) => {
                    shared.begin_shutdown();
                    return Err(EngineError::Setup {
                        what: "spawn worker",
                        err,
                    });
                }
            }
        }
        drop(ready_tx);
        let mut first_err = None;
        for _ in 0..layout.workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(EngineError::Config("a worker died during set-up"));
                }
            }
        }
        let signal_stop = Arc::new(AtomicBool::new(false));
        let mut engine = Engine {
            handle: EngineHandle { shared },
            local_addr,
            workers,
            signal_stop,
            signal_thread: None,
            layout,
        };
        if let Some(e) = first_err {
            engine.handle.shutdown();
            let _ = engine.wait();
            return Err(e);
        }
        if cfg.handle_signals {
            let h = engine.handle.clone();
            let hangup = cfg.on_hangup.clone();
            let stop = Arc::clone(&engine.signal_stop);
            let t = signal::spawn_waiter(move || h.shutdown(), hangup, stop).map_err(|err| {
                EngineError::Setup {
                    what: "spawn signal thread",
                    err,
                }
            })?;
            engine.signal_thread = Some(t);
        }
        let l = &engine.layout;
        tracing::info!(
            workers = l.workers,
            rings_per_worker_max = l.rings_per_worker,
            files_per_ring = l.files_per_ring,
            accept_limit_per_ring = l.accept_limit,
            connections_capacity = l.connections_capacity(),
            listen = ?engine.local_addr,
            "io_uring engine started"
        );
        Ok(engine)
    }

    /// The bound listen address (resolves port 0), if listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn handle(&self) -> EngineHandle<M> {
        self.handle.clone()
    }

    /// Connections the configuration can hold: workers x most rings per worker x per-ring
    /// accept limit.
    pub fn connections_capacity(&self) -> usize {
        self.layout.connections_capacity()
    }

    /// Set up every ring `cfg` may ever open, on every worker, all at once (no threads, no
    /// listener, nothing armed), then drop them: `start` sets up only each worker's first ring
    /// and opens the others as file tables fill, so a box that cannot hold them all (locked
    /// memory, `vm.max_map_count`, kernel memory) would fail only under load. For `uringcast
    /// doctor`. Returns the connections capacity.
    pub fn probe_all_rings(cfg: &EngineConfig) -> Result<usize, EngineError> {
        let layout = layout(cfg)?;
        ring::probe()?;
        let mut rings = Vec::with_capacity(layout.workers * layout.rings_per_worker);
        for _ in 0..layout.workers {
            for r in 0..layout.rings_per_worker {
                rings.push(ring::Ring::new(&layout, r as u8, None)?);
            }
        }
        Ok(layout.connections_capacity())
    }

    /// Block until every worker has finished its shutdown.
    pub fn wait(mut self) -> Result<(), EngineError> {
        let mut panicked = false;
        for w in self.workers.drain(..) {
            panicked |= w.join().is_err();
        }
        self.signal_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.signal_thread.take() {
            let _ = t.join();
        }
        if panicked {
            return Err(EngineError::Config(
                "a worker thread panicked (see its message above)",
            ));
        }
        Ok(())
    }
}
