//! Process shape: one pinned glommio executor ("shard") per planned core, started and stopped
//! from the main thread, plus the control plane's threads (admin API, access-log writer). The
//! only module that spawns threads.
//!
//! Start-up, in order:
//! 1. bind every listener once per shard with `SO_REUSEPORT` (on the main thread, so a port in
//!    use fails start-up with a clear error, and an ephemeral port `:0` resolves to one port that
//!    every shard then shares), and the admin listener; or, when taking over from a running
//!    process (a binary upgrade, [`handover`]), adopt the sockets it handed over;
//! 2. start the access-log writer and give each shard a mailbox ([`crate::control`]);
//! 3. spawn one `LocalExecutor` per shard, pinned to its core, with the glommio knobs from the
//!    configuration; the shard builds its own routes, pools and buffers ([`crate::shard`]) and
//!    acknowledges generation 1 once it serves;
//! 4. wait for every shard's acknowledgement (a shard that cannot start fails start-up), then
//!    serve the admin API.
//!
//! The control plane's threads: the admin API, the access-log writer, the rate-limit exchange,
//! upstream health (`control::health`: passive ejections decided for every shard, active
//! checks), upstream names resolved again (`control::resolve`) and, when upgrades are on, the
//! handover thread ([`handover`]: a successor process takes the listening sockets over). The
//! main thread waits for signals ([`signals`]) and turns them into control-plane operations
//! ([`crate::control::plane`]): reload, drain, reopen the access log, upgrade; [`notify`] tells
//! systemd about each step.

pub mod bootstrap;
pub mod handover;
pub mod notify;
pub mod signals;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::access_log::{self, LogSink};
use crate::admin;
use crate::config::{Config, Plan, Resolve, SystemResolver};
use crate::control::{ListenerSocket, Mailbox};
use crate::io::IoSettings;
use crate::ratelimit::LimitClock;

pub use crate::control::plane::{ControlPlane, ReloadError, Reloaded, ShardGenerations};

use crate::control::plane::{self, RunningListener, ShardLink, bind_per_shard, handover_copies};
use bootstrap::ShardStart;
use handover::{HandoverEvent, Inherited, Offering};

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
    /// The health thread: passive ejections relayed, active checks, verdicts to every shard.
    health: Option<JoinHandle<()>>,
    /// The thread that resolves upstream names again (`resolve_every`).
    resolve: Option<JoinHandle<()>>,
    log_sink: Arc<LogSink>,
    /// A copy of the admin listener, for handing it to a successor.
    admin_socket: Option<(SocketAddr, Arc<TcpListener>)>,
    /// The unix socket this process offers its listeners on, when it does.
    offering: Option<Offering>,
    /// What start-up took over from the process it replaces, one line each.
    takeover_notes: Vec<String>,
}

impl Server {
    /// Binds the listeners and starts every shard of `plan`; returns once every shard serves.
    /// Upstream names are resolved with the system resolver.
    pub fn start(config: Arc<Config>, plan: &Plan) -> Result<Server, StartError> {
        Server::start_with(config, plan, Arc::new(SystemResolver), Inherited::default())
    }

    /// [`Server::start`], taking over the listening sockets a running coregate handed over
    /// (see [`handover`] for how they are matched to listeners and shards); listeners it did
    /// not hand over are bound afresh. [`Server::takeover_notes`] says what was taken.
    pub fn start_inheriting(
        config: Arc<Config>,
        plan: &Plan,
        inherited: Inherited,
    ) -> Result<Server, StartError> {
        Server::start_with(config, plan, Arc::new(SystemResolver), inherited)
    }

    /// [`Server::start_inheriting`] with a chosen resolver for upstream names (on reloads and
    /// for `resolve_every`).
    pub fn start_with(
        config: Arc<Config>,
        plan: &Plan,
        resolver: Arc<dyn Resolve + Send + Sync>,
        mut inherited: Inherited,
    ) -> Result<Server, StartError> {
        let shard_count = plan.shards.len();
        let mut takeover_notes = Vec::new();
        let (per_shard, listeners) =
            open_listeners(&config, shard_count, &mut inherited, &mut takeover_notes)?;
        let admin_listener = open_admin(&config, &mut inherited, &mut takeover_notes)?;
        let admin_socket = match &admin_listener {
            Some(listener) => Some(admin_copy(listener)?),
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
        let (health_reports, reports) = std::sync::mpsc::channel();
        let mailboxes = (0..shard_count)
            .map(|_| Mailbox::new(health_reports.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| StartError(format!("cannot create a shard mailbox: {err}")))?;
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
            resolver,
        ));
        let mut server = Server {
            plane,
            shard_threads: Vec::with_capacity(shard_count),
            admin: None,
            log_writer: Some(log_writer),
            limits: None,
            health: None,
            resolve: None,
            log_sink,
            admin_socket,
            offering: None,
            takeover_notes,
        };
        server.start_shards(&config, plan, per_shard, mailboxes)?;
        let problems = server.plane.await_acks(1, START_TIMEOUT);
        if !problems.is_empty() {
            // Dropping the server stops the shards that did start.
            return Err(StartError(format!(
                "shards did not start: {}",
                problems.join("; ")
            )));
        }
        server.start_control_threads(reports)?;
        if let Some(listener) = admin_listener {
            server.start_admin(listener)?;
        }
        Ok(server)
    }

    /// Starts one pinned executor per shard of `plan`, each with its sockets and mailbox.
    fn start_shards(
        &mut self,
        config: &Arc<Config>,
        plan: &Plan,
        per_shard: Vec<Vec<ListenerSocket>>,
        mailboxes: Vec<Arc<Mailbox>>,
    ) -> Result<(), StartError> {
        let shard_count = plan.shards.len();
        let io = io_settings(config);
        // One seed and one clock origin for every shard's limiters (see `LimitClock`).
        let limit_clock = LimitClock::new();
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
                ack: self.plane.ack_sender(),
                log_sink: self.log_sink.clone(),
                shard_count,
                limit_clock,
                ticket_keys: self.plane.ticket_keys(),
            };
            match builder.spawn(move || bootstrap::run_shard(start)) {
                Ok(thread) => self.shard_threads.push(thread),
                // Dropping the server stops the shards already started.
                Err(err) => {
                    return Err(StartError(format!(
                        "cannot start shard {} on CPU {}: {err}",
                        shard_plan.index, shard_plan.cpu
                    )));
                }
            }
        }
        Ok(())
    }

    /// The control plane's threads: the rate-limit exchange (which also rotates the TLS ticket
    /// keys), upstream health, and names resolved again.
    fn start_control_threads(
        &mut self,
        reports: std::sync::mpsc::Receiver<crate::upstream::Report>,
    ) -> Result<(), StartError> {
        let plane = self.plane.clone();
        self.limits = Some(
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
        let plane = self.plane.clone();
        self.health = Some(
            std::thread::Builder::new()
                .name("coregate-health".into())
                .spawn(move || crate::control::health::run(&plane, reports))
                .map_err(|err| StartError(format!("cannot start the health thread: {err}")))?,
        );
        let plane = self.plane.clone();
        self.resolve = Some(
            std::thread::Builder::new()
                .name("coregate-resolve".into())
                .spawn(move || crate::control::resolve::run(&plane, plane.resolver()))
                .map_err(|err| StartError(format!("cannot start the resolve thread: {err}")))?,
        );
        Ok(())
    }

    /// The admin API's worker threads, on `listener`.
    fn start_admin(&mut self, listener: TcpListener) -> Result<(), StartError> {
        let addr = listener
            .local_addr()
            .map_err(|err| StartError(format!("admin listener: {err}")))?;
        let mut workers = Vec::with_capacity(admin::ADMIN_WORKERS);
        for n in 0..admin::ADMIN_WORKERS {
            let listener = listener
                .try_clone()
                .map_err(|err| StartError(format!("admin listener: {err}")))?;
            let plane = self.plane.clone();
            let worker = std::thread::Builder::new()
                .name(format!("coregate-admin-{n}"))
                .spawn(move || admin::serve(listener, plane))
                .map_err(|err| StartError(format!("cannot start an admin thread: {err}")))?;
            workers.push(worker);
        }
        self.admin = Some((addr, workers));
        Ok(())
    }

    /// What start-up took over from the process this one replaces (empty for a fresh start).
    pub fn takeover_notes(&self) -> &[String] {
        &self.takeover_notes
    }

    /// Offers this process's listening sockets to a successor on the unix socket at `path`
    /// (see [`handover`]), from a thread of its own; what happens there arrives on the
    /// returned channel. `replacing` says this process took over from the one that offered at
    /// `path` before, so the socket file there is replaced; otherwise a live process there
    /// is an error (two coregates would share the ports).
    pub fn offer_listeners(
        &mut self,
        path: &std::path::Path,
        replacing: bool,
    ) -> Result<std::sync::mpsc::Receiver<HandoverEvent>, StartError> {
        let (events, receiver) = std::sync::mpsc::channel();
        let offering = Offering::start(
            path,
            self.plane.clone(),
            self.admin_socket.clone(),
            events,
            replacing,
        )
        .map_err(StartError)?;
        self.offering = Some(offering);
        Ok(receiver)
    }

    /// Where this process offers its listeners, when it does.
    pub fn upgrade_socket(&self) -> Option<&std::path::Path> {
        self.offering.as_ref().map(Offering::path)
    }

    /// Has the access-log writer open its file again (after logrotate moved it away).
    pub fn reopen_logs(&self) {
        self.log_sink.reopen();
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
        // No more takeovers once the shards are gone.
        self.offering = None;
        self.admin_socket = None;
        for thread in self.shard_threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(limits) = self.limits.take() {
            let _ = limits.join();
        }
        if let Some(health) = self.health.take() {
            let _ = health.join();
        }
        if let Some(resolve) = self.resolve.take() {
            let _ = resolve.join();
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
            || self.offering.is_some()
            || self.admin.is_some()
            || self.log_writer.is_some()
            || self.limits.is_some()
            || self.health.is_some()
            || self.resolve.is_some()
        {
            self.plane.shutdown(Duration::ZERO);
            self.join_all();
        }
    }
}

/// Each listener's sockets, one per shard (taken over from a process this one replaces, or
/// bound afresh), and the listeners as the control plane keeps them. Notes what was taken over
/// and what of the old process's was left.
fn open_listeners(
    config: &Config,
    shard_count: usize,
    inherited: &mut Inherited,
    notes: &mut Vec<String>,
) -> Result<(Vec<Vec<ListenerSocket>>, Vec<RunningListener>), StartError> {
    let mut per_shard: Vec<Vec<ListenerSocket>> = (0..shard_count).map(|_| Vec::new()).collect();
    let mut listeners = Vec::new();
    for listener in &config.listeners {
        let (addr, sockets_per_shard, handover) = match inherited
            .take_listener(&listener.name, listener.bind)
        {
            Some(old) => {
                notes.push(takeover_note(
                    listener,
                    old.addr,
                    old.sockets.len(),
                    shard_count,
                ));
                let addr = old.addr;
                let (sockets, copies) =
                    handover::adopt(listener, old, shard_count).map_err(StartError)?;
                (addr, sockets, copies)
            }
            None => {
                let (addr, sockets) = bind_per_shard(listener, shard_count).map_err(StartError)?;
                let copies = handover_copies(&sockets).map_err(StartError)?;
                let per_shard = sockets.into_iter().map(|socket| vec![socket]).collect();
                (addr, per_shard, copies)
            }
        };
        for (shard_sockets, sockets) in per_shard.iter_mut().zip(sockets_per_shard) {
            shard_sockets.extend(sockets);
        }
        listeners.push(RunningListener {
            config: listener.clone(),
            addr,
            handover: Arc::new(handover),
        });
    }
    for old in &inherited.listeners {
        notes.push(format!(
            "listener {:?} on {}: not in this configuration (or moved); its {} socket{} \
             close once the old process has drained",
            old.name,
            old.addr,
            old.sockets.len(),
            if old.sockets.len() == 1 { "" } else { "s" }
        ));
    }
    // Dropped here: they close once the old process has drained too.
    inherited.listeners.clear();
    Ok((per_shard, listeners))
}

/// What taking a listener's `count` sockets over for `shard_count` shards did.
fn takeover_note(
    listener: &crate::config::ListenerConfig,
    addr: SocketAddr,
    count: usize,
    shard_count: usize,
) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let difference = match count.cmp(&shard_count) {
        std::cmp::Ordering::Less => format!(
            " ({} new socket{} for the added shards)",
            shard_count - count,
            plural(shard_count - count)
        ),
        std::cmp::Ordering::Greater => {
            " (the extra sockets shared out among the shards)".to_owned()
        }
        std::cmp::Ordering::Equal => String::new(),
    };
    format!(
        "listener {:?} on {addr}: {count} socket{} for {shard_count} shard{}{difference}",
        listener.name,
        plural(count),
        plural(shard_count),
    )
}

/// The admin listener: taken over, or bound.
fn open_admin(
    config: &Config,
    inherited: &mut Inherited,
    notes: &mut Vec<String>,
) -> Result<Option<TcpListener>, StartError> {
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    match inherited.take_admin(admin.bind) {
        Some(listener) => {
            let addr = listener
                .local_addr()
                .map_or_else(|_| admin.bind.to_string(), |addr| addr.to_string());
            notes.push(format!("the admin listener on {addr}"));
            Ok(Some(listener))
        }
        None => TcpListener::bind(admin.bind).map(Some).map_err(|err| {
            StartError(format!("admin listener: cannot bind {}: {err}", admin.bind))
        }),
    }
}

/// A copy of the admin listener, for handing it to a successor.
fn admin_copy(listener: &TcpListener) -> Result<(SocketAddr, Arc<TcpListener>), StartError> {
    let addr = listener
        .local_addr()
        .map_err(|err| StartError(format!("admin listener: {err}")))?;
    let copy = listener
        .try_clone()
        .map_err(|err| StartError(format!("admin listener: {err}")))?;
    Ok((addr, Arc::new(copy)))
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
