//! What one core mutates: its I/O, its current [`Snapshot`] and the state snapshots draw on
//! (upstream pools, rate limiters, route counters), its metrics, the parse scratch, the frames
//! of exchanges in progress, its client connections ([`registry`], and the parked ones of
//! [`crate::proxy`]) and its access-log buffer.
//!
//! A shard never touches another shard's state. Requests read the current snapshot once, at
//! their start (an `Rc` clone, not shared across cores), so a new snapshot takes effect at the
//! next request boundary while requests in flight finish on the old one.

pub mod registry;

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::access_log::{LogSink, ShardLog};
use crate::config::Config;
use crate::frame::FramePool;
use crate::http1::{self, Field};
use crate::io::IoShard;
use crate::metrics::{
    Counters, EndpointHealth, EndpointReport, ShardMetrics, ShardReport, UpstreamReport,
};
use crate::proxy::ParkedTable;
use crate::ratelimit::{DemandReport, LimitClock, ShareUpdate};
use crate::snapshot::{Limiters, Snapshot, SnapshotBuilder};
use crate::tls::ShardTls;
use crate::upstream::{HealthRecords, Pools, Report, Trip, UpstreamGroup, Verdict};

pub use registry::Registry;

/// Buffers reused by every request of the shard (never held across an await).
pub struct Scratch {
    /// Parsed fields of the head being processed.
    pub fields: Vec<Field>,
    /// The normalised request path when it differs from the original.
    pub path: Vec<u8>,
    /// The path forwarded by a route that strips or replaces its prefix.
    pub forwarded: Vec<u8>,
}

/// One shard's state.
pub struct Shard {
    pub index: usize,
    /// The CPU the shard is pinned to.
    pub cpu: usize,
    pub io: Rc<IoShard>,
    /// The configuration generation the shard runs (see `control::Apply`).
    generation: Cell<u64>,
    snapshot: RefCell<Rc<Snapshot>>,
    pools: RefCell<Pools>,
    /// Each upstream's endpoint health and load, kept across snapshots.
    health: RefCell<HealthRecords>,
    /// Where ejections this shard makes are reported (the control plane's health thread).
    health_reports: RefCell<Option<Sender<Report>>>,
    pub metrics: ShardMetrics,
    scratch: RefCell<Scratch>,
    frames: Rc<FramePool>,
    pub connections: Registry,
    /// Keep-alive connections idle long enough to have given up their task.
    pub parked: ParkedTable,
    /// The shard's side of the access log (off unless configured).
    pub log: ShardLog,
    limiters: RefCell<Limiters>,
    /// Shards enforcing each limit together.
    shard_count: usize,
    pub limit_clock: LimitClock,
    /// Seed of the request ids this shard generates (see `proxy::head::request_id`).
    pub request_id_seed: u64,
    request_counter: Cell<u64>,
    /// TLS resumption state kept across generations: the ticket sealer (keys from the control
    /// plane) and the session-id caches of the TLS listeners.
    pub tls: ShardTls,
}

/// Where a shard sits among the process's shards.
#[derive(Clone, Copy, Debug)]
pub struct ShardSeat {
    pub index: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Shards in the process (enforcing each rate limit together).
    pub count: usize,
}

impl Shard {
    /// Builds the shard's state from a validated configuration (generation `generation`).
    pub fn new(
        seat: ShardSeat,
        io: Rc<IoShard>,
        config: Arc<Config>,
        generation: u64,
        log_sink: Arc<LogSink>,
        limit_clock: LimitClock,
    ) -> Shard {
        let ShardSeat {
            index,
            cpu,
            count: shard_count,
        } = seat;
        let mut pools = Pools::default();
        let mut health = HealthRecords::default();
        let metrics = ShardMetrics::default();
        let mut limiters = Limiters::new();
        let tls = ShardTls::default();
        let snapshot = SnapshotBuilder {
            shard_index: index,
            pools: &mut pools,
            health: &mut health,
            metrics: &metrics,
            limiters: &mut limiters,
            shard_count,
            clock: limit_clock,
            tls: &tls,
        }
        .build(&config);
        Shard {
            index,
            cpu,
            io,
            generation: Cell::new(generation),
            snapshot: RefCell::new(Rc::new(snapshot)),
            pools: RefCell::new(pools),
            health: RefCell::new(health),
            health_reports: RefCell::new(None),
            metrics,
            scratch: RefCell::new(Scratch::for_config(&config)),
            frames: Rc::new(FramePool::new()),
            connections: Registry::new(config.runtime.max_connections),
            parked: ParkedTable::default(),
            log: ShardLog::new(log_sink, config.access_log.as_ref()),
            limiters: RefCell::new(limiters),
            shard_count,
            limit_clock,
            request_id_seed: crate::random::seed() ^ (index as u64).rotate_left(56),
            request_counter: Cell::new(0),
            tls,
        }
    }

    /// The snapshot new requests use.
    pub fn snapshot(&self) -> Rc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Runs a new configuration from the next request on: builds its snapshot (route table,
    /// upstream groups, limits) and swaps it in. Requests in flight keep the snapshot they
    /// started with. Pools of endpoints the new configuration still names are kept, with their
    /// idle connections; the others are closed.
    ///
    /// Called from the shard's control task, between two requests' polls, never during one.
    pub fn apply(&self, config: Arc<Config>, generation: u64) {
        let snapshot = SnapshotBuilder {
            shard_index: self.index,
            pools: &mut self.pools.borrow_mut(),
            health: &mut self.health.borrow_mut(),
            metrics: &self.metrics,
            limiters: &mut self.limiters.borrow_mut(),
            shard_count: self.shard_count,
            clock: self.limit_clock,
            tls: &self.tls,
        }
        .build(&config);
        self.snapshot.replace(Rc::new(snapshot));
        // Only ever grown: a request still reading its head under the old snapshot's limits
        // parses into the same scratch.
        self.scratch.borrow_mut().grow_for(&config);
        self.log.configure(config.access_log.as_ref());
        self.connections
            .set_max_connections(config.runtime.max_connections);
        self.generation.set(generation);
    }

    /// Sends the ejections this shard makes to `reports` (the control plane's health thread),
    /// which decides for every shard.
    pub fn report_health_to(&self, reports: Sender<Report>) {
        self.health_reports.replace(Some(reports));
    }

    /// Tells the control plane that this shard's outcomes ejected an endpoint (rare: never
    /// in steady state). Without a control plane (tests), the ejection stays this shard's.
    pub fn report_ejection(&self, group: &UpstreamGroup, index: usize, trip: Trip) {
        if let Some(reports) = &*self.health_reports.borrow() {
            // The health thread is gone only while the process stops.
            let _ = reports.send(Report {
                shard: self.index,
                upstream: group.name.clone(),
                endpoint: group.endpoint(index).addr(),
                trip,
            });
        }
    }

    /// Applies the control plane's health verdicts, then brings the current snapshot's
    /// groups up to date (Maglev tables are rebuilt here, off the request path).
    pub fn apply_health(&self, verdicts: &[Verdict]) {
        let now = self.io.now().max(std::time::Instant::now());
        let health = self.health.borrow();
        for verdict in verdicts {
            health.apply(verdict, now);
        }
        drop(health);
        for group in &self.snapshot().upstreams {
            group.refresh(now);
        }
    }

    /// Every limiter's demand since the last call, per route (the rate-limit exchange).
    pub fn take_demand(&self) -> Vec<(Box<str>, DemandReport)> {
        self.limiters
            .borrow()
            .iter()
            .map(|(name, (_, limiter))| (name.clone(), limiter.borrow_mut().take_report()))
            .collect()
    }

    /// Installs the control plane's shares, per route (unknown routes are skipped: a reload
    /// removed them since the round began).
    pub fn apply_shares(&self, updates: &[(Box<str>, ShareUpdate)]) {
        let limiters = self.limiters.borrow();
        for (name, update) in updates {
            if let Some((_, limiter)) = limiters.get(name) {
                limiter.borrow_mut().apply_shares(update);
            }
        }
    }

    /// A copy of everything the shard measures, for the control plane (allocates: collection
    /// runs a few times a minute, never per request).
    pub fn report(&self) -> ShardReport {
        let buffers = self.io.pool();
        ShardReport {
            shard: self.index,
            cpu: self.cpu,
            generation: self.generation(),
            counters: Counters {
                connections_parked: self.parked.len() as u64,
                exchange_frames: self.frames.allocated() as u64,
                ..self.metrics.counters()
            },
            latency: self.metrics.latency(),
            latency_sum_us: self.metrics.latency_sum_us(),
            routes: self.metrics.routes(),
            endpoints: self.endpoint_reports(),
            upstreams: self.upstream_reports(),
            ring: self.io.ring_stats(),
            ring_in_flight: self.io.ring_in_flight(),
            buffers_total: buffers.count(),
            buffers_free: buffers.free_count(),
            access_log_dropped: self.log.dropped(),
            limiters: self
                .limiters
                .borrow()
                .iter()
                .map(|(name, (_, limiter))| (name.clone(), limiter.borrow().counters()))
                .collect(),
        }
    }

    /// Each endpoint pool's counters, named by the upstreams that list the endpoint.
    fn endpoint_reports(&self) -> Vec<EndpointReport> {
        let snapshot = self.snapshot();
        self.pools
            .borrow()
            .iter()
            .map(|pool| {
                let names: Vec<&str> = snapshot
                    .upstreams
                    .iter()
                    .filter(|group| group.endpoints().iter().any(|e| e.addr() == pool.addr()))
                    .map(|group| &*group.name)
                    .collect();
                EndpointReport {
                    upstream: names.join(",").into(),
                    endpoint: pool.addr(),
                    stats: pool.stats(),
                }
            })
            .collect()
    }

    /// Each upstream's load and each endpoint's health as this shard sees them.
    fn upstream_reports(&self) -> Vec<UpstreamReport> {
        let now = std::time::Instant::now();
        self.snapshot()
            .upstreams
            .iter()
            .map(|group| UpstreamReport {
                upstream: group.name.clone(),
                load: group.load().report(),
                endpoints: group
                    .endpoints()
                    .iter()
                    .map(|endpoint| {
                        let state = endpoint.state();
                        let slow_start = group.settings.slow_start;
                        EndpointHealth {
                            endpoint: endpoint.addr(),
                            standing: state.standing(now, slow_start),
                            weight: endpoint.weight(),
                            share_percent: state.slow_start_percent(now, slow_start),
                            ejected_for: state
                                .ejected_until(now)
                                .map(|until| until.saturating_duration_since(now)),
                            ejections: state.ejections(),
                            trips: state.trips(),
                            in_flight: state.in_flight(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn scratch(&self) -> RefMut<'_, Scratch> {
        self.scratch.borrow_mut()
    }

    /// Memory for the futures of exchanges in progress (see [`crate::frame`]).
    pub fn frames(&self) -> &Rc<FramePool> {
        &self.frames
    }

    pub fn pools(&self) -> Ref<'_, Pools> {
        self.pools.borrow()
    }

    /// A number unique on this shard, for request ids.
    pub fn next_request_number(&self) -> u64 {
        let n = self.request_counter.get().wrapping_add(1);
        self.request_counter.set(n);
        n
    }

    /// Records a new client connection; returns its registry key.
    pub fn register(&self, fd: std::os::fd::RawFd) -> usize {
        self.metrics.connection_opened();
        self.connections.register(fd)
    }

    pub fn unregister(&self, key: usize) {
        self.metrics.connection_closed();
        self.connections.unregister(key);
    }

    pub fn draining(&self) -> bool {
        self.connections.draining()
    }

    /// Resolves when draining starts.
    pub fn drain_started(&self) -> crate::event::Wait<'_> {
        self.connections.drain_started()
    }

    pub fn open_connections(&self) -> usize {
        self.connections.open_connections()
    }

    pub fn max_connections(&self) -> usize {
        self.connections.max_connections()
    }

    /// Says what a connection is doing now (see [`registry::Waiting`]).
    pub fn set_waiting(&self, key: usize, waiting: registry::Waiting) {
        self.connections.set_waiting(key, waiting);
    }

    /// Starts draining: accept loops stop, busy connections close after their current response,
    /// idle ones and idle upstream connections are closed now.
    pub fn start_drain(&self) {
        self.connections.start_drain();
        self.pools.borrow().clear_idle();
    }
}

impl Scratch {
    fn for_config(config: &Config) -> Scratch {
        Scratch {
            fields: vec![Field::EMPTY; config.limits.max_headers.min(http1::MAX_FIELDS)],
            path: Vec::with_capacity(config.limits.max_request_line),
            forwarded: Vec::with_capacity(config.limits.max_request_line),
        }
    }

    /// Makes room for `config`'s limits, keeping any larger room the scratch already has.
    fn grow_for(&mut self, config: &Config) {
        let fields = config.limits.max_headers.min(http1::MAX_FIELDS);
        if self.fields.len() < fields {
            self.fields.resize(fields, Field::EMPTY);
        }
        let path = config.limits.max_request_line;
        for scratch in [&mut self.path, &mut self.forwarded] {
            if scratch.capacity() < path {
                scratch.reserve(path - scratch.len());
            }
        }
    }
}
