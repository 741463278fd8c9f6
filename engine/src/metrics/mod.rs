//! Per-shard counters and latency histogram. Each shard updates its own, with plain `Cell`s (no
//! atomics: nothing is shared); the control plane collects copies through the mailboxes
//! ([`ShardReport`]) and merges them into the Prometheus text format on scrape
//! ([`exposition`]).
//!
//! Recording a response costs a few additions and one histogram increment, none of which
//! allocates: the histogram's range is fixed when the shard starts, and per-route counters are
//! indexed by an id the route got when its snapshot was built.

pub mod exposition;
pub mod names;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::io::{HandshakeFailure, Handshaken, RingStats, TlsVersion};
use crate::ratelimit::LimiterCounters;
use crate::upstream::load::LoadReport;
use crate::upstream::{PoolStats, Standing};

/// Why the proxy answered a request itself with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Reject {
    /// 400: malformed request.
    BadRequest = 0,
    /// 404: no route.
    NoRoute,
    /// 405: route exists, method not allowed.
    MethodNotAllowed,
    /// 413: body over the limit.
    BodyTooLarge,
    /// 414: request line over the limit.
    UriTooLong,
    /// 431: header section over the limit.
    HeadersTooLarge,
    /// 408: the client was too slow sending its request.
    ClientTimeout,
    /// 502: upstream refused, reset or answered garbage.
    BadGateway,
    /// 503: no buffer or connection capacity left.
    Unavailable,
    /// 504: upstream too slow.
    GatewayTimeout,
    /// 501 / 417 and other refusals.
    NotImplemented,
    /// 401: missing or invalid credentials.
    Unauthorized,
    /// 403: valid credentials, insufficient claims.
    Forbidden,
    /// 429: over the route's rate limit.
    RateLimited,
    /// 503: every endpoint of the upstream is ejected or down (and panic mode is off).
    NoEndpoint,
    /// 503: a circuit breaker of the upstream is open (too many connections, pending or
    /// active requests).
    Overflow,
    /// 308: a plain request to a `redirect_https` route, sent to `https`.
    RedirectHttps,
}

impl Reject {
    pub const COUNT: usize = 17;

    pub const ALL: [Reject; Reject::COUNT] = [
        Reject::BadRequest,
        Reject::NoRoute,
        Reject::MethodNotAllowed,
        Reject::BodyTooLarge,
        Reject::UriTooLong,
        Reject::HeadersTooLarge,
        Reject::ClientTimeout,
        Reject::BadGateway,
        Reject::Unavailable,
        Reject::GatewayTimeout,
        Reject::NotImplemented,
        Reject::Unauthorized,
        Reject::Forbidden,
        Reject::RateLimited,
        Reject::NoEndpoint,
        Reject::Overflow,
        Reject::RedirectHttps,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::BadRequest => "bad_request",
            Reject::NoRoute => "no_route",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::BodyTooLarge => "body_too_large",
            Reject::UriTooLong => "uri_too_long",
            Reject::HeadersTooLarge => "headers_too_large",
            Reject::ClientTimeout => "client_timeout",
            Reject::BadGateway => "bad_gateway",
            Reject::Unavailable => "unavailable",
            Reject::GatewayTimeout => "gateway_timeout",
            Reject::NotImplemented => "not_implemented",
            Reject::Unauthorized => "unauthorized",
            Reject::Forbidden => "forbidden",
            Reject::RateLimited => "rate_limited",
            Reject::NoEndpoint => "no_endpoint",
            Reject::Overflow => "upstream_overflow",
            Reject::RedirectHttps => "redirect_https",
        }
    }
}

/// A plain copy of a shard's counters, for collection and tests.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub requests: u64,
    /// Responses by status class: index 1 = 1xx ... 5 = 5xx.
    pub responses_by_class: [u64; 6],
    pub rejected: [u64; Reject::COUNT],
    pub connections_accepted: u64,
    pub connections_open: u64,
    /// Open connections parked: idle long enough to have given up their task.
    pub connections_parked: u64,
    /// Exchange frames held, in use or kept for reuse.
    pub exchange_frames: u64,
    pub upstream_retries: u64,
    /// Retries by the failure that caused them, indexed like [`RETRY_REASONS`].
    pub retries_by_reason: [u64; RETRY_REASONS.len()],
    pub tls: TlsCounters,
}

/// TLS handshakes on a shard's listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Completed handshakes: index 0 full, 1 resumed.
    pub handshakes: [u64; 2],
    /// Failed handshakes by [`HandshakeFailure`] (its index in `HandshakeFailure::ALL`).
    pub failures: [u64; HandshakeFailure::ALL.len()],
    /// Connections by version (0: TLS 1.2, 1: TLS 1.3) and ALPN (0: none, 1: `http/1.1`).
    pub connections: [[u64; 2]; 2],
}

impl TlsCounters {
    pub const KINDS: [&'static str; 2] = ["full", "resumed"];
    pub const VERSIONS: [&'static str; 2] = ["TLSv1.2", "TLSv1.3"];
    pub const ALPN: [&'static str; 2] = ["none", "http/1.1"];
}

/// What a retry was made after, as the metrics label it.
pub const RETRY_REASONS: [&str; 6] = [
    "stale_connection",
    "connect_failure",
    "reset",
    "timeout",
    "status",
    "other",
];

/// Responses of one route, by status class (index 1 = 1xx ... 5 = 5xx).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteCounters {
    pub name: Box<str>,
    pub responses_by_class: [u64; 6],
}

/// Which route's counters a response goes to: the id a route name got on this shard. Ids are
/// kept for the shard's life, so a route keeps its counters across reloads.
pub type RouteStatsId = u32;

/// One shard's metrics.
pub struct ShardMetrics {
    counters: RefCell<Counters>,
    /// Request latency in microseconds, first byte of the head to last byte of the response.
    latency: RefCell<Histogram<u64>>,
    /// Sum of every recorded latency, in microseconds (Prometheus histograms carry a sum).
    latency_sum_us: Cell<u64>,
    open: Cell<u64>,
    routes: RefCell<Vec<RouteCounters>>,
    /// Route name -> its id in `routes`; used only while a snapshot is built.
    route_ids: RefCell<HashMap<Box<str>, RouteStatsId>>,
}

/// A copy of everything one shard measures, sent to the control plane on
/// [`Collect`](crate::control::Command::Collect).
#[derive(Clone, Debug)]
pub struct ShardReport {
    pub shard: usize,
    pub cpu: usize,
    /// The configuration generation the shard runs.
    pub generation: u64,
    pub counters: Counters,
    pub latency: Histogram<u64>,
    pub latency_sum_us: u64,
    pub routes: Vec<RouteCounters>,
    pub endpoints: Vec<EndpointReport>,
    /// The shard's ring.
    pub ring: RingStats,
    /// Ring operations submitted and not yet completed: steady while idle, so a leak of
    /// operations shows as growth.
    pub ring_in_flight: usize,
    pub buffers_total: usize,
    pub buffers_free: usize,
    /// Access-log lines dropped because the writer fell behind or failed.
    pub access_log_dropped: u64,
    /// Each rate-limited route's decisions on this shard.
    pub limiters: Vec<(Box<str>, LimiterCounters)>,
    /// Each upstream's load and its endpoints' health on this shard.
    pub upstreams: Vec<UpstreamReport>,
}

/// One upstream on one shard: what is under way, what was refused, and each endpoint's health.
#[derive(Clone, Debug)]
pub struct UpstreamReport {
    pub upstream: Box<str>,
    pub load: LoadReport,
    pub endpoints: Vec<EndpointHealth>,
}

/// One endpoint of one upstream on one shard.
#[derive(Clone, Debug)]
pub struct EndpointHealth {
    pub endpoint: SocketAddr,
    pub standing: Standing,
    /// The configured weight.
    pub weight: u32,
    /// The share of its weight it takes now (below 100 during slow start).
    pub share_percent: u32,
    /// How much longer it stays ejected.
    pub ejected_for: Option<Duration>,
    /// Ejections in a row (the next one lasts longer).
    pub ejections: u32,
    /// Ejections this shard's outcomes made.
    pub trips: u64,
    pub in_flight: u32,
}

/// One upstream endpoint's pool on one shard.
#[derive(Clone, Debug)]
pub struct EndpointReport {
    /// Every upstream naming this endpoint, comma-separated (pools are per address).
    pub upstream: Box<str>,
    pub endpoint: SocketAddr,
    pub stats: PoolStats,
}

/// The histogram's range: 1 us to 10 minutes at 3 significant digits (about 0.1% error),
/// allocated once so recording never allocates.
const LATENCY_MAX_US: u64 = 600_000_000;

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            counters: RefCell::new(Counters::default()),
            latency: RefCell::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                    .expect("static histogram bounds are valid"),
            ),
            latency_sum_us: Cell::new(0),
            open: Cell::new(0),
            routes: RefCell::new(Vec::new()),
            route_ids: RefCell::new(HashMap::new()),
        }
    }
}

impl ShardMetrics {
    pub fn request(&self) {
        self.counters.borrow_mut().requests += 1;
    }

    /// Records a response: its status class, overall and for its route (when it matched one),
    /// and its latency.
    pub fn response(&self, route: Option<RouteStatsId>, status: u16, elapsed: Duration) {
        let class = (status / 100).min(5) as usize;
        self.counters.borrow_mut().responses_by_class[class] += 1;
        if let Some(id) = route
            && let Some(counters) = self.routes.borrow_mut().get_mut(id as usize)
        {
            counters.responses_by_class[class] += 1;
        }
        let micros = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        // Within bounds by the clamp, so this cannot fail or allocate.
        let _ = self.latency.borrow_mut().record(micros);
        self.latency_sum_us
            .set(self.latency_sum_us.get().saturating_add(micros));
    }

    /// The counters id of the route called `name`, made when the name is new to this shard.
    /// Called while a snapshot is built, never per request.
    pub fn route_stats_id(&self, name: &str) -> RouteStatsId {
        let mut ids = self.route_ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return *id;
        }
        let mut routes = self.routes.borrow_mut();
        let id = routes.len() as RouteStatsId;
        routes.push(RouteCounters {
            name: name.into(),
            responses_by_class: [0; 6],
        });
        ids.insert(name.into(), id);
        id
    }

    /// Calls `f` with the name of the route `id` counts for ("" for none), without copying it.
    pub fn with_route_name<R>(&self, id: Option<RouteStatsId>, f: impl FnOnce(&str) -> R) -> R {
        let routes = self.routes.borrow();
        let name = id
            .and_then(|id| routes.get(id as usize))
            .map_or("", |route| &route.name);
        f(name)
    }

    /// A copy of every route's counters (allocates; collection only).
    pub fn routes(&self) -> Vec<RouteCounters> {
        self.routes.borrow().clone()
    }

    pub fn latency_sum_us(&self) -> u64 {
        self.latency_sum_us.get()
    }

    pub fn reject(&self, reason: Reject) {
        self.counters.borrow_mut().rejected[reason as usize] += 1;
    }

    /// Counts a retry made after a failure labelled `reason` (one of [`RETRY_REASONS`]).
    pub fn upstream_retry(&self, reason: &str) {
        let mut counters = self.counters.borrow_mut();
        counters.upstream_retries += 1;
        if let Some(at) = RETRY_REASONS.iter().position(|r| *r == reason) {
            counters.retries_by_reason[at] += 1;
        }
    }

    /// A finished TLS handshake: its kind, version and application protocol.
    pub fn tls_handshake(&self, facts: &Handshaken) {
        let mut counters = self.counters.borrow_mut();
        counters.tls.handshakes[usize::from(facts.resumed)] += 1;
        let version = usize::from(facts.version == TlsVersion::Tls13);
        let alpn = usize::from(facts.alpn.is_some());
        counters.tls.connections[version][alpn] += 1;
    }

    pub fn tls_failure(&self, failure: HandshakeFailure) {
        if let Some(index) = HandshakeFailure::ALL.iter().position(|f| *f == failure) {
            self.counters.borrow_mut().tls.failures[index] += 1;
        }
    }

    pub fn connection_opened(&self) {
        self.counters.borrow_mut().connections_accepted += 1;
        self.open.set(self.open.get() + 1);
    }

    pub fn connection_closed(&self) {
        self.open.set(self.open.get().saturating_sub(1));
    }

    pub fn open_connections(&self) -> u64 {
        self.open.get()
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters.borrow().clone();
        counters.connections_open = self.open.get();
        counters
    }

    /// A copy of the latency histogram (allocates; collection only).
    pub fn latency(&self) -> Histogram<u64> {
        self.latency.borrow().clone()
    }
}
