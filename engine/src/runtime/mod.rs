//! Process shape: one pinned glommio executor ("shard") per planned core, started and stopped
//! from the main thread, plus the control plane's threads (admin API, access-log writer). The
//! only module that spawns threads.
//!
//! Start-up, in order:
//! 1. bind every listener once per shard with `SO_REUSEPORT` (on the main thread, so a port in
//!    use fails start-up with a clear error, and an ephemeral port `:0` resolves to one port that
//!    every shard then shares), and the admin listener;
//! 2. start the access-log writer and give each shard a mailbox ([`crate::control`]);
//! 3. spawn one `LocalExecutor` per shard, pinned to its core, with the glommio knobs from the
//!    configuration; the shard builds its own routes, pools and buffers ([`crate::shard`]) and
//!    acknowledges generation 1 once it serves;
//! 4. wait for every shard's acknowledgement (a shard that cannot start fails start-up), then
//!    serve the admin API.
//!
//! The control plane's threads: the admin API, the access-log writer and the rate-limit
//! exchange. The main thread waits for signals ([`signals`]) and turns them into control-plane
//! operations ([`crate::control::plane`]): reload, drain.

pub mod bootstrap;
pub mod signals;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::access_log::{self, LogSink};
use crate::admin;
use crate::config::{Config, Plan};
use crate::control::{ListenerSocket, Mailbox};
use crate::io::IoSettings;
use crate::ratelimit::LimitClock;

pub use crate::control::plane::{ControlPlane, ReloadError, Reloaded, ShardGenerations};

use crate::control::plane::{self, RunningListener, ShardLink, bind_per_shard};
use bootstrap::ShardStart;

/// Why coregate could not start: a sentence naming what failed (the listener and address, the
/// shard and its CPU) and the operating system's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// How long start-up waits for every shard to serve its first configuration.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running coregate: its shards, its control plane and the control plane's threads.
pub struct Server {
    plane: Arc<ControlPlane>,
    shard_threads: Vec<glommio::ExecutorJoinHandle<()>>,
    admin: Option<(SocketAddr, Vec<JoinHandle<()>>)>,
    log_writer: Option<JoinHandle<()>>,
    limits: Option<JoinHandle<()>>,
    log_sink: Arc<LogSink>,
}

impl Server {
    /// Binds the listeners and starts every shard of `plan`; returns once every shard serves.
    pub fn start(config: Arc<Config>, plan: &Plan) -> Result<Server, StartError> {
        let shard_count = plan.shards.len();
        let mut per_shard: Vec<Vec<ListenerSocket>> =
            (0..shard_count).map(|_| Vec::new()).collect();
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let (addr, sockets) = bind_per_shard(listener, shard_count).map_err(StartError)?;
            for (shard_sockets, socket) in per_shard.iter_mut().zip(sockets) {
                shard_sockets.push(socket);
            }
            listeners.push(RunningListener {
                config: listener.clone(),
                addr,
            });
        }
        let admin_listener = match &config.admin {
            Some(admin) => Some(TcpListener::bind(admin.bind).map_err(|err| {
                StartError(format!("admin listener: cannot bind {}: {err}", admin.bind))
            })?),
            None => None,
        };

        let log_sink = LogSink::new();
        log_sink.set_path(config.access_log.as_ref().map(|log| log.path.clone()));
        let log_writer = std::thread::Builder::new()
            .name("coregate-log".into())
            .spawn({
                let sink = log_sink.clone();
                move || access_log::run_writer(sink)
            })
            .map_err(|err| StartError(format!("cannot start the access-log writer: {err}")))?;

        // Every mailbox before any shard, so a failure here leaves no shard running.
        let mailboxes = (0..shard_count)
            .map(|_| Mailbox::new())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| StartError(format!("cannot create a shard mailbox: {err}")))?;
        let io = io_settings(&config);
        // One seed and one clock origin for every shard's limiters (see `LimitClock`).
        let limit_clock = LimitClock::new();
        let links = plan
            .shards
            .iter()
            .zip(&mailboxes)
            .map(|(shard_plan, mailbox)| ShardLink {
                index: shard_plan.index,
                cpu: shard_plan.cpu,
                mailbox: mailbox.clone(),
            })
            .collect();
        let plane = Arc::new(ControlPlane::new(
            links,
            config.clone(),
            listeners,
            log_sink.clone(),
        ));
        let mut server = Server {
            plane,
            shard_threads: Vec::with_capacity(shard_count),
            admin: None,
            log_writer: Some(log_writer),
            limits: None,
            log_sink,
        };
        for ((shard_plan, sockets), mailbox) in plan.shards.iter().zip(per_shard).zip(mailboxes) {
            let glommio = &config.runtime.glommio;
            let mut builder = LocalExecutorBuilder::new(Placement::Fixed(shard_plan.cpu))
                .name(&format!("coregate-{}", shard_plan.index))
                .io_memory(glommio.io_memory)
                .ring_depth(glommio.ring_depth as usize)
                .preempt_timer(glommio.preempt_timer);
            if let Some(spin) = glommio.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            let start = ShardStart {
                index: shard_plan.index,
                cpu: shard_plan.cpu,
                config: config.clone(),
                generation: 1,
                io,
                listeners: sockets,
                mailbox,
                ack: server.plane.ack_sender(),
                log_sink: server.log_sink.clone(),
                shard_count,
                limit_clock,
                ticket_keys: server.plane.ticket_keys(),
            };
            match builder.spawn(move || bootstrap::run_shard(start)) {
                Ok(thread) => server.shard_threads.push(thread),
                // Dropping the server stops the shards already started.
                Err(err) => {
                    return Err(StartError(format!(
                        "cannot start shard {} on CPU {}: {err}",
                        shard_plan.index, shard_plan.cpu
                    )));
                }
            }
        }
        let problems = server.plane.await_acks(1, START_TIMEOUT);
        if !problems.is_empty() {
            // Dropping the server stops the shards that did start.
            return Err(StartError(format!(
                "shards did not start: {}",
                problems.join("; ")
            )));
        }
        let plane = server.plane.clone();
        server.limits = Some(
            std::thread::Builder::new()
                .name("coregate-limits".into())
                .spawn(move || {
                    let mut plans = plane::SharePlans::new();
                    while !plane.stopping() {
                        std::thread::sleep(plane::LIMIT_ROUND_INTERVAL);
                        plane.rebalance(&mut plans);
                        plane.rotate_ticket_keys_if_due();
                    }
                })
                .map_err(|err| StartError(format!("cannot start the rate-limit thread: {err}")))?,
        );
        if let Some(listener) = admin_listener {
            let addr = listener
                .local_addr()
                .map_err(|err| StartError(format!("admin listener: {err}")))?;
            let mut workers = Vec::with_capacity(admin::ADMIN_WORKERS);
            for n in 0..admin::ADMIN_WORKERS {
                let listener = listener
                    .try_clone()
                    .map_err(|err| StartError(format!("admin listener: {err}")))?;
                let plane = server.plane.clone();
                let worker = std::thread::Builder::new()
                    .name(format!("coregate-admin-{n}"))
                    .spawn(move || admin::serve(listener, plane))
                    .map_err(|err| StartError(format!("cannot start an admin thread: {err}")))?;
                workers.push(worker);
            }
            server.admin = Some((addr, workers));
        }
        Ok(server)
    }

    /// The control plane, for reloads and metrics.
    pub fn plane(&self) -> &Arc<ControlPlane> {
        &self.plane
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.plane.listener_addr(name)
    }

    /// The admin listener's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    pub fn shard_count(&self) -> usize {
        self.plane.shard_count()
    }

    /// Re-reads the configuration file and runs it (see [`ControlPlane::reload`]).
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.plane.reload()
    }

    /// Asks every shard to drain: stop accepting, finish in-flight requests, close idle
    /// connections, and exit within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.plane.shutdown(grace);
    }

    /// Waits for every shard to exit, then stops the control plane's threads (the access log
    /// writes what the shards handed it last).
    pub fn wait(mut self) {
        self.join_all();
    }

    fn join_all(&mut self) {
        for thread in self.shard_threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(limits) = self.limits.take() {
            let _ = limits.join();
        }
        if let Some((_, workers)) = self.admin.take() {
            // The admin loops see the stop flag within one poll interval.
            for worker in workers {
                let _ = worker.join();
            }
        }
        self.log_sink.stop();
        if let Some(writer) = self.log_writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.shard_threads.is_empty()
            || self.admin.is_some()
            || self.log_writer.is_some()
            || self.limits.is_some()
        {
            self.plane.shutdown(Duration::ZERO);
            self.join_all();
        }
    }
}

/// The shard I/O settings a configuration asks for.
pub(crate) fn io_settings(config: &Config) -> IoSettings {
    let runtime = &config.runtime;
    IoSettings {
        ring_entries: runtime.ring_entries,
        buffer_size: runtime.buffer_size,
        buffers: runtime.buffers_per_shard,
        idle_wait: runtime.idle_wait,
    }
}
