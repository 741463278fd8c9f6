//! The control plane: the running configuration and its generation, what each shard last
//! acknowledged, the listener sockets, and the operations that reach the shards (reload,
//! collection, drain). Shared by the main thread (signals) and the admin thread; never touched
//! by a shard, which only sees its mailbox.
//!
//! A reload, in order:
//! 1. read and validate the file completely ([`Config::load`]); a bad file is refused with every
//!    mistake, and nothing reaches a shard;
//! 2. refuse settings that only a restart can apply (`[runtime]` except `max_connections`,
//!    `admin.bind`), naming them;
//! 3. bind each new or changed listener once per shard (a port in use refuses the reload);
//! 4. send every shard an [`Apply`] with the next generation; each builds its own routes, pools
//!    and limits, swaps at a request boundary and acknowledges;
//! 5. wait for every acknowledgement (up to [`RELOAD_ACK_TIMEOUT`]) and report.
//!
//! The rate-limit exchange runs on a thread of its own ([`ControlPlane::rebalance`], every
//! [`LIMIT_ROUND_INTERVAL`]): two mailbox messages per shard per round, none per request.
//!
//! Reloads are serialised by a lock of their own, held for the whole reload; the state lock is
//! only ever held for a few field reads or writes, so a health check or a scrape never waits
//! for a reload (reading a file, resolving names, waiting for acknowledgements).

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use super::{Ack, Apply, Command, ListenerSocket, Mailbox};
use crate::access_log::LogSink;
use crate::config::defaults::{COLLECT_TIMEOUT, RELOAD_ACK_TIMEOUT};
use crate::config::{Config, ConfigErrors, ListenerConfig, RateLimitConfig, Resolve};
use crate::io::{ListenOptions, socket};
use crate::metrics::ShardReport;
use crate::metrics::exposition::{self, Scrape};
use crate::ratelimit::{DemandReport, SharePlan, ShareUpdate};
use crate::tls::TicketKeys;
use crate::tls::ticket::DEFAULT_TICKET_ROTATION;

/// How often the rate-limit exchange runs: the limiters' own report interval.
pub const LIMIT_ROUND_INTERVAL: Duration =
    Duration::from_nanos(crate::ratelimit::DEFAULT_REBALANCE_INTERVAL_NANOS);

/// How long a round waits for the shards' demand.
const LIMIT_ROUND_TIMEOUT: Duration = Duration::from_millis(50);

/// The control plane's share plan of each limited route, with the limit it was made for and
/// when it last changed.
pub(crate) type SharePlans =
    std::collections::HashMap<Box<str>, (RateLimitConfig, SharePlan, Instant)>;

/// One shard, as the control plane reaches it.
pub(crate) struct ShardLink {
    pub index: usize,
    pub cpu: usize,
    pub mailbox: Arc<Mailbox>,
}

/// A listener as it runs: its configuration and the address its sockets are bound to (the port
/// `:0` resolved to).
#[derive(Clone, Debug)]
pub(crate) struct RunningListener {
    pub config: ListenerConfig,
    pub addr: SocketAddr,
    /// A copy of each of its sockets, in index order, for handing them to a successor process
    /// (`runtime::handover`); let go when the listener closes or the process drains.
    pub handover: Arc<Vec<OwnedFd>>,
}

struct State {
    config: Arc<Config>,
    generation: u64,
    /// The generation each shard last acknowledged (0: none yet).
    acknowledged: Vec<u64>,
    listeners: Vec<RunningListener>,
    loaded_at: SystemTime,
}

/// What shards send back, on channels that live as long as the plane: an answer that comes
/// after its waiter gave up is still counted the next time.
struct Replies {
    acks: Receiver<Ack>,
    reports: Receiver<ShardReport>,
    /// The latest report of each shard: a shard too busy to answer a scrape in time is shown
    /// with its previous figures, so summed counters never go backwards.
    last_reports: Vec<Option<ShardReport>>,
    /// Shards asked for a report that has not come yet: they are not asked again until it
    /// does, so a stalled shard's mailbox does not fill with collections.
    collecting: Vec<bool>,
}

/// The control plane of one coregate process.
pub struct ControlPlane {
    shards: Vec<ShardLink>,
    /// Held for a whole reload, so reloads never overlap; nothing else takes it.
    reloading: Mutex<()>,
    /// Held briefly (never across a file read, a bind or a wait), so health checks and scrapes
    /// do not wait for a reload.
    state: Mutex<State>,
    replies: Mutex<Replies>,
    acks: Sender<Ack>,
    reports: Sender<ShardReport>,
    log_sink: Arc<LogSink>,
    stopping: AtomicBool,
    /// Resolves upstream names, on reloads and for `resolve_every`.
    resolver: Arc<dyn Resolve + Send + Sync>,
    /// Per upstream: address changes and failures of re-resolved names.
    resolutions: Mutex<Vec<(Box<str>, u64, u64)>>,
    /// The TLS session-ticket keys every shard seals and opens with, and when they were made
    /// (see [`ControlPlane::rotate_ticket_keys`]).
    tickets: Mutex<(Arc<TicketKeys>, Instant)>,
}

/// What a successful reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub generation: u64,
    pub shards: usize,
    pub listeners_opened: usize,
    pub listeners_closed: usize,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reloaded: generation {} runs on all {} shard(s)",
            self.generation, self.shards
        )?;
        if self.listeners_opened + self.listeners_closed > 0 {
            write!(
                f,
                "; listeners opened {}, closed {}",
                self.listeners_opened, self.listeners_closed
            )?;
        }
        Ok(())
    }
}

/// Why a reload did not (fully) happen.
#[derive(Debug)]
pub enum ReloadError {
    /// The file has mistakes; every shard keeps the running configuration.
    Invalid(ConfigErrors),
    /// The file changes settings only a restart applies; nothing was applied.
    NeedsRestart(Vec<String>),
    /// A new listener could not be bound; nothing was applied.
    Bind(String),
    /// The configuration was sent but these shards did not acknowledge in time, or reported a
    /// problem; the others run it.
    Incomplete {
        generation: u64,
        problems: Vec<String>,
    },
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Invalid(errors) => write!(
                f,
                "reload refused, the running configuration keeps serving:\n{errors}"
            ),
            ReloadError::NeedsRestart(keys) => {
                writeln!(
                    f,
                    "reload refused, the running configuration keeps serving: these settings \
                     take effect only on restart:"
                )?;
                for key in keys {
                    writeln!(f, "{key}")?;
                }
                Ok(())
            }
            ReloadError::Bind(message) => write!(
                f,
                "reload refused, the running configuration keeps serving: {message}"
            ),
            ReloadError::Incomplete {
                generation,
                problems,
            } => {
                writeln!(f, "reload of generation {generation} is incomplete:")?;
                for problem in problems {
                    writeln!(f, "{problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ReloadError {}

/// The generations the shards run, for `/readyz` and `/config`.
#[derive(Clone, Debug)]
pub struct ShardGenerations {
    pub current: u64,
    /// `(shard, cpu, generation acknowledged)`.
    pub shards: Vec<(usize, usize, u64)>,
}

impl ShardGenerations {
    /// Every shard runs the current configuration.
    pub fn all_current(&self) -> bool {
        self.current > 0 && self.shards.iter().all(|&(_, _, g)| g == self.current)
    }
}

impl ControlPlane {
    /// The plane of `shards`, running `config` as generation 1. Returns the acknowledgement
    /// channel the shards' start-up acks go to.
    pub(crate) fn new(
        shards: Vec<ShardLink>,
        config: Arc<Config>,
        listeners: Vec<RunningListener>,
        log_sink: Arc<LogSink>,
        resolver: Arc<dyn Resolve + Send + Sync>,
    ) -> ControlPlane {
        let count = shards.len();
        let (acks, acks_rx) = mpsc::channel();
        let (reports, reports_rx) = mpsc::channel();
        ControlPlane {
            shards,
            reloading: Mutex::new(()),
            state: Mutex::new(State {
                config,
                generation: 1,
                acknowledged: vec![0; count],
                listeners,
                loaded_at: SystemTime::now(),
            }),
            replies: Mutex::new(Replies {
                acks: acks_rx,
                reports: reports_rx,
                last_reports: vec![None; count],
                collecting: vec![false; count],
            }),
            acks,
            reports,
            log_sink,
            stopping: AtomicBool::new(false),
            resolver,
            resolutions: Mutex::new(Vec::new()),
            tickets: Mutex::new((
                Arc::new(
                    TicketKeys::first()
                        .expect("the kernel's random source gives the first TLS ticket key"),
                ),
                Instant::now(),
            )),
        }
    }

    /// The TLS ticket keys in force (a starting shard gets them with its start-up state).
    pub fn ticket_keys(&self) -> Arc<TicketKeys> {
        self.tickets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Makes a new ticket key (the current one stays, to open the tickets it sealed) and sends
    /// the keys to every shard through its mailbox, so a ticket one shard issued resumes on
    /// any shard. Returns the keys' generation; `None` if the random source failed (the old
    /// keys stay).
    pub fn rotate_ticket_keys(&self) -> Option<u64> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let keys = Arc::new(tickets.0.rotated()?);
        *tickets = (keys.clone(), Instant::now());
        for shard in &self.shards {
            shard.mailbox.send(Command::TicketKeys(keys.clone()));
        }
        Some(keys.generation)
    }

    /// Rotates the ticket keys once they are [`DEFAULT_TICKET_ROTATION`] old (called by the
    /// control plane's periodic thread).
    pub(crate) fn rotate_ticket_keys_if_due(&self) {
        let made = self.tickets.lock().unwrap_or_else(|e| e.into_inner()).1;
        if made.elapsed() >= DEFAULT_TICKET_ROTATION && self.rotate_ticket_keys().is_none() {
            eprintln!(
                "coregate: cannot make a new TLS ticket key (random source); keeping the old"
            );
        }
    }

    /// The resolver upstream names go through.
    pub(crate) fn resolver(&self) -> &(dyn Resolve + Send + Sync) {
        &*self.resolver
    }

    /// Where shards acknowledge configurations.
    pub(crate) fn ack_sender(&self) -> Sender<Ack> {
        self.acks.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the state is still
        // consistent field by field, so keep serving rather than poison the whole process.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn replies(&self) -> MutexGuard<'_, Replies> {
        self.replies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.state().config.clone()
    }

    /// The address a listener's sockets are bound to.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.state()
            .listeners
            .iter()
            .find(|listener| &*listener.config.name == name)
            .map(|listener| listener.addr)
    }

    pub fn generations(&self) -> ShardGenerations {
        // Acknowledgements that came after their reload stopped waiting count now. A reload or
        // a collection in progress holds the replies for seconds: then they count on a later
        // call, so that /readyz never waits behind a reload or a scrape.
        let late: Vec<Ack> = match self.replies.try_lock() {
            Ok(replies) => replies.acks.try_iter().collect(),
            Err(TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().acks.try_iter().collect()
            }
            Err(TryLockError::WouldBlock) => Vec::new(),
        };
        let mut state = self.state();
        for ack in late {
            record_ack(&mut state, &ack);
        }
        ShardGenerations {
            current: state.generation,
            shards: self
                .shards
                .iter()
                .zip(&state.acknowledged)
                .map(|(shard, &g)| (shard.index, shard.cpu, g))
                .collect(),
        }
    }

    /// Waits up to `timeout` for every shard to acknowledge `generation`; returns the problems
    /// shards reported and the shards that did not answer.
    pub(crate) fn await_acks(&self, generation: u64, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut answered = vec![false; self.shards.len()];
        let mut problems = Vec::new();
        let replies = self.replies();
        while answered.iter().any(|a| !a) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(ack) = replies.acks.recv_timeout(left) else {
                break;
            };
            record_ack(&mut self.state(), &ack);
            if ack.generation != generation && ack.problem.is_none() {
                continue;
            }
            if let Some(slot) = answered.get_mut(ack.shard) {
                *slot = true;
            }
            if let Some(problem) = ack.problem {
                problems.push(format!("shard {}: {problem}", ack.shard));
            }
        }
        for (shard, answered) in answered.iter().enumerate() {
            if !answered {
                problems.push(format!(
                    "shard {shard}: no acknowledgement within {timeout:?}"
                ));
            }
        }
        problems
    }

    /// Reads the configuration file again and, if it is valid and can be applied live, runs it
    /// on every shard.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (old, running) = {
            let state = self.state();
            (state.config.clone(), state.listeners.clone())
        };
        let new = Config::load_with(&old.origin, &*self.resolver).map_err(ReloadError::Invalid)?;
        let restart = restart_only_changes(&old, &new);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }

        // Listeners: keep the unchanged, bind the new (once per shard, not listening yet: the
        // shards listen once they have their sockets, so nothing queues on a socket a refused
        // reload would close), stop the rest.
        let mut kept = Vec::new();
        let mut opened: Vec<(RunningListener, Vec<ListenerSocket>)> = Vec::new();
        for listener in &new.listeners {
            if let Some(running) = running.iter().find(|running| running.config == *listener) {
                kept.push(running.clone());
                continue;
            }
            let (addr, sockets) =
                bind_per_shard(listener, self.shards.len()).map_err(ReloadError::Bind)?;
            let handover = handover_copies(&sockets).map_err(ReloadError::Bind)?;
            opened.push((
                RunningListener {
                    config: listener.clone(),
                    addr,
                    handover: Arc::new(handover),
                },
                sockets,
            ));
        }
        let closed: Vec<ListenerConfig> = running
            .iter()
            .filter(|running| !new.listeners.contains(&running.config))
            .map(|running| running.config.clone())
            .collect();

        // Hand each shard its own socket of every opened listener.
        let mut per_shard: Vec<Vec<ListenerSocket>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        let mut running_opened = Vec::new();
        for (running, sockets) in opened {
            for (shard_sockets, socket) in per_shard.iter_mut().zip(sockets) {
                shard_sockets.push(socket);
            }
            running_opened.push(running);
        }
        let listeners_opened = running_opened.len();
        let config = Arc::new(new);
        let generation = {
            let mut state = self.state();
            state.generation += 1;
            state.config = config.clone();
            state.loaded_at = SystemTime::now();
            state.listeners = kept.into_iter().chain(running_opened).collect();
            state.generation
        };
        for (shard, open) in self.shards.iter().zip(per_shard) {
            shard.mailbox.send(Command::Apply(Box::new(Apply {
                generation,
                config: config.clone(),
                open,
                close: closed.clone(),
                ack: self.acks.clone(),
            })));
        }
        // The log writer follows the new path (and reopens: log rotation).
        self.log_sink
            .set_path(config.access_log.as_ref().map(|log| log.path.clone()));

        let problems = self.await_acks(generation, RELOAD_ACK_TIMEOUT);
        if !problems.is_empty() {
            return Err(ReloadError::Incomplete {
                generation,
                problems,
            });
        }
        Ok(Reloaded {
            generation,
            shards: self.shards.len(),
            listeners_opened,
            listeners_closed: closed.len(),
        })
    }

    /// Runs `update(running configuration)` on every shard as the next generation, when it
    /// returns one: a reload's steps 4 and 5, for a configuration the control plane amended
    /// itself (re-resolved endpoints). Listeners are untouched. `None` when nothing changed.
    pub(crate) fn amend(
        &self,
        update: impl FnOnce(&Config) -> Option<Config>,
    ) -> Option<Result<Reloaded, ReloadError>> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let config = Arc::new(update(&self.config())?);
        let generation = {
            let mut state = self.state();
            state.generation += 1;
            state.config = config.clone();
            state.generation
        };
        for shard in &self.shards {
            shard.mailbox.send(Command::Apply(Box::new(Apply {
                generation,
                config: config.clone(),
                open: Vec::new(),
                close: Vec::new(),
                ack: self.acks.clone(),
            })));
        }
        let problems = self.await_acks(generation, RELOAD_ACK_TIMEOUT);
        Some(if problems.is_empty() {
            Ok(Reloaded {
                generation,
                shards: self.shards.len(),
                listeners_opened: 0,
                listeners_closed: 0,
            })
        } else {
            Err(ReloadError::Incomplete {
                generation,
                problems,
            })
        })
    }

    /// Counts what re-resolving `upstream`'s names found.
    pub(crate) fn count_resolution(&self, upstream: &str, changes: u64, failures: u64) {
        let mut counts = self
            .resolutions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match counts.iter_mut().find(|(name, _, _)| &**name == upstream) {
            Some((_, c, f)) => {
                *c += changes;
                *f += failures;
            }
            None => counts.push((upstream.into(), changes, failures)),
        }
    }

    /// Every shard's metrics, gathered through the mailboxes. A shard that does not answer
    /// within [`COLLECT_TIMEOUT`] is shown with its last report; the second value says how many
    /// answered this time.
    pub fn collect(&self) -> (Vec<ShardReport>, usize) {
        let mut replies = self.replies();
        for (shard, collecting) in self.shards.iter().zip(replies.collecting.iter_mut()) {
            if !*collecting {
                shard.mailbox.send(Command::Collect(self.reports.clone()));
                *collecting = true;
            }
        }
        let deadline = Instant::now() + COLLECT_TIMEOUT;
        let mut fresh = 0;
        while replies.collecting.iter().any(|c| *c) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(report) = replies.reports.recv_timeout(left) else {
                break;
            };
            let shard = report.shard;
            if let Some(collecting) = replies.collecting.get_mut(shard) {
                *collecting = false;
                fresh += 1;
            }
            if let Some(slot) = replies.last_reports.get_mut(shard) {
                *slot = Some(report);
            }
        }
        (
            replies.last_reports.iter().flatten().cloned().collect(),
            fresh,
        )
    }

    /// The Prometheus exposition of every shard's metrics.
    pub fn metrics_text(&self) -> String {
        let (reports, fresh) = self.collect();
        let resolutions = self
            .resolutions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        exposition::render(&Scrape {
            reports: &reports,
            shards: self.shards.len(),
            fresh,
            log_lines_lost: self.log_sink.lines_lost(),
            resolutions: &resolutions,
        })
    }

    /// The effective configuration with a header saying which generation each shard runs.
    pub fn config_text(&self) -> String {
        let generations = self.generations();
        let state = self.state();
        let loaded = state
            .loaded_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut text = format!(
            "# coregate effective configuration\n# file: {}\n# generation: {} (loaded at unix \
             time {loaded})\n",
            state.config.origin.display(),
            state.generation,
        );
        for (shard, cpu, generation) in &generations.shards {
            text.push_str(&format!(
                "# shard {shard} (cpu {cpu}): generation {generation}\n"
            ));
        }
        text.push('\n');
        text.push_str(&state.config.render());
        text
    }

    /// One round of the rate-limit exchange: every shard's demand since the last round, the
    /// next share plan of each limited route, and each shard's new shares. A shard that does
    /// not answer within [`LIMIT_ROUND_TIMEOUT`] counts as having seen no demand this round.
    pub(crate) fn rebalance(&self, plans: &mut SharePlans) {
        let config = self.config();
        let limited: Vec<(&str, &RateLimitConfig)> = config
            .routes
            .iter()
            .filter_map(|route| Some((&*route.name, route.rate_limit.as_ref()?)))
            .collect();
        // Plans of routes whose limit went or changed start over.
        plans.retain(|name, (limit, _, _)| {
            limited
                .iter()
                .any(|(route, current)| *route == &**name && *current == limit)
        });
        if limited.is_empty() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let mut asked = 0;
        for shard in &self.shards {
            shard.mailbox.send(Command::TakeDemand(tx.clone()));
            asked += 1;
        }
        drop(tx);
        let deadline = Instant::now() + LIMIT_ROUND_TIMEOUT;
        let mut by_shard: Vec<Vec<(Box<str>, DemandReport)>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for _ in 0..asked {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(demand) => {
                    if let Some(slot) = by_shard.get_mut(demand.shard) {
                        *slot = demand.reports;
                    }
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let mut updates: Vec<Vec<(Box<str>, ShareUpdate)>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (route, limit) in limited {
            let reports: Vec<DemandReport> = by_shard
                .iter_mut()
                .map(|shard| {
                    shard
                        .iter_mut()
                        .find(|(name, _)| &**name == route)
                        .map(|(_, report)| std::mem::take(report))
                        .unwrap_or_default()
                })
                .collect();
            let entry = plans.entry(route.into()).or_insert_with(|| {
                (
                    limit.clone(),
                    SharePlan::new(self.shards.len()),
                    now - LIMIT_ROUND_INTERVAL,
                )
            });
            let elapsed = now.saturating_duration_since(entry.2).as_nanos() as u64;
            entry.1 = entry.1.next(limit.quota.rate(), &reports, elapsed);
            entry.2 = now;
            for (shard, update) in updates.iter_mut().zip(entry.1.updates()) {
                shard.push((route.into(), update));
            }
        }
        for (shard, updates) in self.shards.iter().zip(updates) {
            shard.mailbox.send(Command::ApplyShares(updates));
        }
    }

    /// Sends the same health verdicts to every shard.
    pub(crate) fn broadcast_health(&self, verdicts: Vec<crate::upstream::Verdict>) {
        let verdicts: Arc<[crate::upstream::Verdict]> = verdicts.into();
        for shard in &self.shards {
            shard.mailbox.send(Command::Health(verdicts.clone()));
        }
    }

    /// Every listener's name, address and sockets (copies, in index order), for a successor
    /// process; empty once draining.
    pub(crate) fn handover_sockets(&self) -> Vec<(Box<str>, SocketAddr, Arc<Vec<OwnedFd>>)> {
        self.state()
            .listeners
            .iter()
            .map(|l| (l.config.name.clone(), l.addr, l.handover.clone()))
            .collect()
    }

    /// Asks every shard to drain and exit within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        // The copies kept for a successor go first, so that the sockets close as soon as the
        // shards stop accepting (new clients are refused, not queued until the process ends);
        // a successor that took them over holds its own.
        for listener in &mut self.state().listeners {
            listener.handover = Arc::new(Vec::new());
        }
        self.stopping.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        for shard in &self.shards {
            shard.mailbox.send(Command::Shutdown { deadline });
        }
    }

    /// Whether a shutdown was asked for.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Binds `listener` once per shard with `SO_REUSEPORT`, without listening yet (each shard
/// listens on its own socket when it takes it). The first socket fixes the port (`:0` picks
/// one); the others share it.
pub(crate) fn bind_per_shard(
    listener: &ListenerConfig,
    shards: usize,
) -> Result<(SocketAddr, Vec<ListenerSocket>), String> {
    let options = ListenOptions {
        backlog: listener.backlog,
        defer_accept: listener.defer_accept,
    };
    let mut addr = listener.bind;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let fd = socket::bind_unlistened(addr, options)
            .map_err(|err| format!("listener {:?}: cannot bind {addr}: {err}", listener.name))?;
        addr = socket::local_addr(fd.as_raw_fd())
            .map_err(|err| format!("listener {:?}: {err}", listener.name))?;
        sockets.push(ListenerSocket {
            config: listener.clone(),
            fd,
        });
    }
    Ok((addr, sockets))
}

/// A copy of each socket, for [`RunningListener::handover`].
pub(crate) fn handover_copies(sockets: &[ListenerSocket]) -> Result<Vec<OwnedFd>, String> {
    sockets
        .iter()
        .map(|socket| {
            socket
                .fd
                .try_clone()
                .map_err(|err| format!("listener {:?}: {err}", socket.config.name))
        })
        .collect()
}

/// Notes what a shard acknowledged.
fn record_ack(state: &mut State, ack: &Ack) {
    if ack.problem.is_none()
        && let Some(generation) = state.acknowledged.get_mut(ack.shard)
    {
        *generation = (*generation).max(ack.generation);
    }
}

/// The keys whose change a running process cannot apply: its shards, rings and buffers are set
/// up once. `max_connections` is the exception (a shard reads it for every accept).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.runtime, &new.runtime);
    let mut keys = Vec::new();
    let mut differs = |key: &str, changed: bool| {
        if changed {
            keys.push(format!("{}: runtime.{key} changed", new.origin.display()));
        }
    };
    differs("cores", o.cores != n.cores);
    differs("ring_entries", o.ring_entries != n.ring_entries);
    differs("buffer_size", o.buffer_size != n.buffer_size);
    differs(
        "buffers_per_shard",
        o.buffers_per_shard != n.buffers_per_shard,
    );
    differs("idle_wait", o.idle_wait != n.idle_wait);
    differs(
        "glommio.io_memory",
        o.glommio.io_memory != n.glommio.io_memory,
    );
    differs(
        "glommio.ring_depth",
        o.glommio.ring_depth != n.glommio.ring_depth,
    );
    differs(
        "glommio.spin_before_park",
        o.glommio.spin_before_park != n.glommio.spin_before_park,
    );
    differs(
        "glommio.preempt_timer",
        o.glommio.preempt_timer != n.glommio.preempt_timer,
    );
    if old.admin.as_ref().map(|a| a.bind) != new.admin.as_ref().map(|a| a.bind) {
        keys.push(format!(
            "{}: admin.bind changed (or [admin] added or removed)",
            new.origin.display()
        ));
    }
    keys
}
