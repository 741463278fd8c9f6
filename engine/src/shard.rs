//! Everything one core owns: its configuration snapshot (route table, upstream groups, limits),
//! its upstream pools, its metrics, its parse scratch and its registry of client connections.
//!
//! A shard never touches another shard's state. Requests read the current [`Snapshot`] once, at
//! their start (an `Rc` clone, not shared across cores), so a new snapshot takes effect at the
//! next request boundary while requests in flight finish on the old one.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::access_log::{LogSink, ShardLog};
use crate::auth::jwt::TokenCache;
use crate::config::{AuthMethod, Config, HeaderEdits, RateLimitConfig, RouteAction};
use crate::event::LocalEvent;
use crate::frame::FramePool;
use crate::http1::{self, Field};
use crate::io::IoShard;
use crate::metrics::{EndpointReport, RouteStatsId, ShardMetrics, ShardReport};
use crate::ratelimit::{DemandReport, HashSeed, Limiter, LimiterSettings, ShareUpdate};
use crate::router::{RouteSpec, RouteTable};
use crate::upstream::{PoolSettings, Pools, UpstreamGroup};

/// A route as one shard uses it: the route's action and edits, copied from the configuration.
pub struct RouteTarget {
    pub name: Box<str>,
    /// Where this route's responses are counted on this shard.
    pub stats: RouteStatsId,
    /// Index into the configuration's `[[auth]]` policies (and [`Snapshot::token_caches`]).
    pub auth: Option<usize>,
    /// The route's rate limit on this shard; kept across reloads that leave it unchanged.
    pub limiter: Option<Rc<RefCell<Limiter>>>,
    pub action: Action,
    pub request_headers: Edits,
    pub response_headers: Edits,
    /// `None`: unlimited.
    pub max_body_bytes: Option<u64>,
}

/// What a matched route does.
pub enum Action {
    Forward {
        /// Index into [`Snapshot::upstreams`].
        upstream: usize,
        rewrite: PathRewrite,
    },
    Respond {
        status: u16,
        body: Box<[u8]>,
        headers: Vec<(Box<[u8]>, Box<[u8]>)>,
    },
}

/// How the forwarded path differs from the routed one.
pub enum PathRewrite {
    None,
    /// Drop the matched prefix (keeping a leading `/`).
    StripPrefix,
    /// Replace the matched prefix.
    ReplacePrefix(Box<[u8]>),
}

/// Header edits as bytes, names lowercase for comparison.
#[derive(Default)]
pub struct Edits {
    /// Names of fields to drop: the removed ones and the ones `add` replaces.
    pub drop: Vec<Box<[u8]>>,
    pub add: Vec<(Box<[u8]>, Box<[u8]>)>,
}

impl Edits {
    fn from_config(edits: &HeaderEdits) -> Edits {
        let mut drop: Vec<Box<[u8]>> = edits
            .remove
            .iter()
            .map(|name| name.to_ascii_lowercase().into_bytes().into())
            .collect();
        drop.extend(
            edits
                .add
                .iter()
                .map(|(name, _)| name.to_ascii_lowercase().into_bytes().into_boxed_slice()),
        );
        let add = edits
            .add
            .iter()
            .map(|(name, value)| (name.as_bytes().into(), value.as_bytes().into()))
            .collect();
        Edits { drop, add }
    }

    /// Whether a field named `name` must not be passed on.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.drop
            .iter()
            .any(|dropped| dropped.eq_ignore_ascii_case(name))
    }
}

/// The timeouts a request runs under.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub body: Duration,
    pub send: Duration,
    pub tunnel_idle: Duration,
}

/// Per-upstream timeouts, beside its group.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub response: Duration,
    pub body: Duration,
}

/// One configuration as one shard runs it.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Verified JWTs this shard remembers, one cache per `[[auth]]` policy (`None` for API-key
    /// policies and caches of size 0).
    pub token_caches: Vec<Option<RefCell<TokenCache>>>,
    pub limits: http1::Limits,
    pub timeouts: Timeouts,
    pub routes: RouteTable<RouteTarget>,
    pub upstreams: Vec<(UpstreamGroup, UpstreamTimeouts)>,
}

/// Buffers reused by every request of the shard (never held across an await).
pub struct Scratch {
    /// Parsed fields of the head being processed.
    pub fields: Vec<Field>,
    /// The normalised request path when it differs from the original.
    pub path: Vec<u8>,
}

/// A client connection, as the drain logic sees it.
struct ConnEntry {
    fd: RawFd,
    idle: bool,
}

/// What every shard shares about rate limits, fixed for the process: the key hash seed (so
/// shards hash a key alike and their reports name the same keys) and the clock origin limiters
/// count nanoseconds from.
#[derive(Clone, Copy)]
pub struct LimitClock {
    pub seed: HashSeed,
    pub origin: Instant,
}

impl LimitClock {
    /// A fresh random seed and the clock now.
    pub fn new() -> LimitClock {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&random_seed().to_ne_bytes());
        bytes[8..].copy_from_slice(&random_seed().to_ne_bytes());
        LimitClock {
            seed: HashSeed::from_bytes(bytes),
            origin: Instant::now(),
        }
    }
}

impl Default for LimitClock {
    fn default() -> LimitClock {
        LimitClock::new()
    }
}

/// A shard's limiters by route name, with the settings each was built with.
type Limiters = HashMap<Box<str>, (RateLimitConfig, Rc<RefCell<Limiter>>)>;

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
    pub metrics: ShardMetrics,
    scratch: RefCell<Scratch>,
    frames: Rc<FramePool>,
    connections: RefCell<Slab<ConnEntry>>,
    max_connections: Cell<usize>,
    draining: LocalEvent,
    /// The shard's side of the access log (off unless configured).
    pub log: ShardLog,
    limiters: RefCell<Limiters>,
    /// Shards enforcing each limit together.
    shard_count: usize,
    pub limit_clock: LimitClock,
    /// Seed of the request ids this shard generates (see `proxy::request_id`).
    pub request_id_seed: u64,
    request_counter: Cell<u64>,
}

impl Shard {
    /// Builds the shard's state from a validated configuration (generation `generation`).
    pub fn new(
        index: usize,
        cpu: usize,
        io: Rc<IoShard>,
        config: Arc<Config>,
        generation: u64,
        log_sink: Arc<LogSink>,
        shard_count: usize,
        limit_clock: LimitClock,
    ) -> Shard {
        let mut pools = Pools::default();
        let metrics = ShardMetrics::default();
        let mut limiters = Limiters::new();
        let mut builder = SnapshotBuilder {
            index,
            pools: &mut pools,
            metrics: &metrics,
            limiters: &mut limiters,
            shard_count,
            clock: limit_clock,
        };
        let snapshot = builder.build(&config);
        let scratch = Scratch::for_config(&config);
        Shard {
            index,
            cpu,
            io,
            generation: Cell::new(generation),
            max_connections: Cell::new(config.runtime.max_connections),
            snapshot: RefCell::new(Rc::new(snapshot)),
            pools: RefCell::new(pools),
            metrics,
            scratch: RefCell::new(scratch),
            frames: Rc::new(FramePool::new()),
            connections: RefCell::new(Slab::with_capacity(1024)),
            draining: LocalEvent::default(),
            log: ShardLog::new(log_sink, config.access_log.as_ref()),
            limiters: RefCell::new(limiters),
            shard_count,
            limit_clock,
            request_id_seed: random_seed() ^ (index as u64).rotate_left(56),
            request_counter: Cell::new(0),
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
        let snapshot = {
            let mut pools = self.pools.borrow_mut();
            let mut limiters = self.limiters.borrow_mut();
            let snapshot = SnapshotBuilder {
                index: self.index,
                pools: &mut pools,
                metrics: &self.metrics,
                limiters: &mut limiters,
                shard_count: self.shard_count,
                clock: self.limit_clock,
            }
            .build(&config);
            pools.retain(|addr| {
                config
                    .upstreams
                    .iter()
                    .any(|upstream| upstream.endpoints.contains(addr))
            });
            snapshot
        };
        self.snapshot.replace(Rc::new(snapshot));
        // Only ever grown: a request still reading its head under the old snapshot's limits
        // parses into the same scratch.
        self.scratch.borrow_mut().grow_for(&config);
        self.log.configure(config.access_log.as_ref());
        self.max_connections.set(config.runtime.max_connections);
        self.generation.set(generation);
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
        let snapshot = self.snapshot();
        let pools = self.pools.borrow();
        let endpoints = pools
            .iter()
            .map(|pool| {
                let names: Vec<&str> = snapshot
                    .upstreams
                    .iter()
                    .filter(|(group, _)| group.endpoints().iter().any(|e| e.addr() == pool.addr()))
                    .map(|(group, _)| &*group.name)
                    .collect();
                EndpointReport {
                    upstream: names.join(",").into(),
                    endpoint: pool.addr(),
                    stats: pool.stats(),
                }
            })
            .collect();
        let buffers = self.io.pool();
        ShardReport {
            shard: self.index,
            cpu: self.cpu,
            generation: self.generation(),
            counters: self.metrics.counters(),
            latency: self.metrics.latency(),
            latency_sum_us: self.metrics.latency_sum_us(),
            routes: self.metrics.routes(),
            endpoints,
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

    pub fn max_connections(&self) -> usize {
        self.max_connections.get()
    }

    pub fn open_connections(&self) -> usize {
        self.connections.borrow().len()
    }

    /// Records a new client connection; returns its registry key.
    pub fn register(&self, fd: RawFd) -> usize {
        self.metrics.connection_opened();
        self.connections
            .borrow_mut()
            .insert(ConnEntry { fd, idle: true })
    }

    pub fn unregister(&self, key: usize) {
        self.metrics.connection_closed();
        self.connections.borrow_mut().try_remove(key);
    }

    /// Marks a connection as waiting for its next request (`true`) or busy with one (`false`).
    pub fn set_idle(&self, key: usize, idle: bool) {
        if let Some(entry) = self.connections.borrow_mut().get_mut(key) {
            entry.idle = idle;
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.has_fired()
    }

    /// Resolves when draining starts.
    pub fn drain_started(&self) -> crate::event::Wait<'_> {
        self.draining.wait()
    }

    /// Starts draining: accept loops stop, busy connections close after their current response
    /// and idle ones are shut down now (their pending receive then ends).
    pub fn start_drain(&self) {
        self.draining.fire();
        for (_, entry) in self.connections.borrow().iter() {
            if entry.idle {
                crate::io::socket::shutdown(entry.fd);
            }
        }
        self.pools.borrow().clear_idle();
    }
}

impl Scratch {
    fn for_config(config: &Config) -> Scratch {
        Scratch {
            fields: vec![Field::EMPTY; config.limits.max_headers.min(http1::MAX_FIELDS)],
            path: Vec::with_capacity(config.limits.max_request_line),
        }
    }

    /// Makes room for `config`'s limits, keeping any larger room the scratch already has.
    fn grow_for(&mut self, config: &Config) {
        let fields = config.limits.max_headers.min(http1::MAX_FIELDS);
        if self.fields.len() < fields {
            self.fields.resize(fields, Field::EMPTY);
        }
        let path = config.limits.max_request_line;
        if self.path.capacity() < path {
            self.path.reserve(path - self.path.len());
        }
    }
}

/// What building a snapshot draws on: the shard's state that outlives snapshots.
struct SnapshotBuilder<'a> {
    index: usize,
    /// Reused for endpoints the shard already knows.
    pools: &'a mut Pools,
    /// Route counters, reused for route names the shard already knows.
    metrics: &'a ShardMetrics,
    /// Reused for routes whose rate limit did not change; the others are dropped.
    limiters: &'a mut Limiters,
    shard_count: usize,
    clock: LimitClock,
}

impl SnapshotBuilder<'_> {
    fn build(&mut self, config: &Arc<Config>) -> Snapshot {
        let index = self.index;
        let pools = &mut *self.pools;
        let metrics = self.metrics;
        let upstreams = config
            .upstreams
            .iter()
            .map(|upstream| {
                let settings = PoolSettings {
                    max_idle: upstream.max_idle_per_endpoint,
                    idle_timeout: upstream.idle_timeout,
                    max_requests: upstream.max_requests_per_connection.unwrap_or(0),
                };
                let endpoints = upstream
                    .endpoints
                    .iter()
                    .map(|addr| pools.get_or_create(*addr, settings))
                    .collect();
                let timeouts = UpstreamTimeouts {
                    connect: upstream.connect_timeout,
                    response: upstream.response_timeout,
                    body: upstream.body_timeout,
                };
                (
                    UpstreamGroup::new(upstream.name.clone(), endpoints, index),
                    timeouts,
                )
            })
            .collect();
        let mut kept = Limiters::new();
        for route in &config.routes {
            if let Some(limit) = &route.rate_limit {
                let limiter = match self.limiters.remove(&route.name) {
                    Some((settings, limiter)) if settings == *limit => limiter,
                    _ => {
                        let mut settings =
                            LimiterSettings::new(limit.quota, limit.key.clone(), self.shard_count);
                        settings.keys_per_shard = limit.keys_per_shard;
                        settings.policy_name = route.name.to_string();
                        Rc::new(RefCell::new(Limiter::new(&settings, self.clock.seed)))
                    }
                };
                kept.insert(route.name.clone(), (limit.clone(), limiter));
            }
        }
        *self.limiters = kept;
        let limiters = &*self.limiters;
        let token_caches = config
            .auth
            .iter()
            .map(|auth| match &auth.method {
                AuthMethod::Jwt {
                    verifier,
                    cache_entries,
                    cache_ttl,
                    ..
                } if *cache_entries > 0 => Some(RefCell::new(
                    verifier.new_cache(*cache_entries, cache_ttl.as_secs()),
                )),
                _ => None,
            })
            .collect();
        let specs = config
            .routes
            .iter()
            .map(|route| RouteSpec {
                host: route.host.clone(),
                methods: route.methods,
                path: route.path.clone(),
                target: RouteTarget {
                    name: route.name.clone(),
                    stats: metrics.route_stats_id(&route.name),
                    action: match &route.action {
                        RouteAction::Upstream {
                            upstream,
                            strip_prefix,
                            prefix_rewrite,
                        } => Action::Forward {
                            upstream: *upstream,
                            rewrite: match (strip_prefix, prefix_rewrite) {
                                (_, Some(replacement)) => {
                                    PathRewrite::ReplacePrefix(replacement.as_bytes().into())
                                }
                                (true, None) => PathRewrite::StripPrefix,
                                (false, None) => PathRewrite::None,
                            },
                        },
                        RouteAction::Respond {
                            status,
                            body,
                            headers,
                        } => Action::Respond {
                            status: *status,
                            body: body.clone(),
                            headers: headers
                                .iter()
                                .map(|(name, value)| {
                                    (name.as_bytes().into(), value.as_bytes().into())
                                })
                                .collect(),
                        },
                    },
                    request_headers: {
                        let mut edits = Edits::from_config(&route.request_headers);
                        // A client's own copies of the headers authentication writes are removed,
                        // so a client cannot pose as an identity or claim.
                        if let Some(auth) = route.auth.and_then(|i| config.auth.get(i)) {
                            edits
                                .drop
                                .extend(auth.written_headers().map(|name| name.as_bytes().into()));
                        }
                        edits
                    },
                    response_headers: Edits::from_config(&route.response_headers),
                    max_body_bytes: route.max_body_bytes,
                    auth: route.auth,
                    limiter: limiters
                        .get(&route.name)
                        .map(|(_, limiter)| limiter.clone()),
                },
            })
            .collect();
        // The configuration was validated with the same table builder, so this cannot fail; an
        // empty table (answering 404) is the safe fallback if it ever did.
        let routes = RouteTable::build(specs)
            .unwrap_or_else(|_| RouteTable::build(Vec::new()).expect("an empty table builds"));
        Snapshot {
            config: config.clone(),
            limits: http1::Limits {
                max_request_line: config.limits.max_request_line,
                max_head_bytes: config.limits.max_head_bytes,
                max_headers: config.limits.max_headers,
            },
            timeouts: Timeouts {
                header: config.timeouts.header,
                keepalive: config.timeouts.keepalive,
                body: config.timeouts.body,
                send: config.timeouts.send,
                tunnel_idle: config.timeouts.tunnel_idle,
            },
            routes,
            upstreams,
            token_caches,
        }
    }
}

/// 64 bits from the kernel's random source, for request-id seeds.
fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the array.
    let got = unsafe { libc::getrandom(seed.as_mut_ptr() as *mut libc::c_void, 8, 0) };
    if got != 8 {
        // Unreachable on Linux >= 3.17; fall back to the clock, uniqueness per shard still holds.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.as_nanos() as u64;
    }
    u64::from_ne_bytes(seed)
}
