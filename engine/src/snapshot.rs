//! What one configuration generation compiles into on one shard: the route table and each
//! route's target, the upstream groups with their timeouts, the authentication policies, the
//! forwarding rules, the head limits, the client timeouts, and each TLS listener's rustls
//! configuration (certificates, this shard's session cache).
//!
//! Built off the request path (at start and on every `Apply`) by [`SnapshotBuilder`], then only
//! read: a request takes the shard's current snapshot once, at its start, and runs on it to its
//! end, while the next request may already run on a newer one. The pipeline reads the snapshot,
//! never the raw [`Config`].
//!
//! Some of what a snapshot holds outlives it, owned by the shard and handed back to each new
//! snapshot: endpoint pools (kept with their idle connections when a reload still names the
//! endpoint), rate limiters (kept when the route's limit is unchanged) and route counters.
//! The token caches are per snapshot: a reload may change the verifier they belong to.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::jwt::TokenCache;
use crate::config::{
    AuthConfig, AuthMethod, Config, Forwarding, HeaderEdits, RateLimitConfig, RouteAction,
    RouteConfig, UpstreamConfig,
};
use crate::http1;
use crate::metrics::{RouteStatsId, ShardMetrics};
use crate::ratelimit::{LimitClock, Limiter, LimiterSettings};
use crate::router::{RouteSpec, RouteTable};
use crate::tls::ShardTls;
use crate::upstream::{
    Endpoint, HealthRecords, PoolSettings, Pools, RetryPolicy, UpstreamGroup, UpstreamTimeouts,
};

/// One configuration as one shard runs it.
pub struct Snapshot {
    pub routes: RouteTable<RouteTarget>,
    /// Indexed by [`Action::Forward::upstream`].
    pub upstreams: Vec<UpstreamGroup>,
    /// Indexed by [`RouteTarget::auth`].
    pub auth: Vec<AuthPolicy>,
    /// Whose fields about a request's origin are believed, and which fields coregate writes.
    pub forwarding: ForwardingRules,
    pub limits: http1::Limits,
    pub timeouts: ClientTimeouts,
    /// Each TLS listener's server configuration, by listener name. A connection takes its
    /// listener's at accept and keeps it to its end, so a reload swaps certificates for new
    /// connections without touching open ones.
    pub tls: Vec<TlsListener>,
}

/// A TLS listener as this shard's generation runs it.
pub struct TlsListener {
    pub name: Box<str>,
    pub config: Arc<rustls::ServerConfig>,
    /// Where a verified client certificate's identity goes upstream (lowercase).
    pub client_cert_header: Option<Box<str>>,
}

impl Snapshot {
    /// The TLS listener `name` (a linear scan: a node has a handful of listeners).
    pub fn tls_listener(&self, name: &str) -> Option<&TlsListener> {
        self.tls.iter().find(|listener| &*listener.name == name)
    }

    /// The server configuration of the TLS listener `name`.
    pub fn tls_config(&self, name: &str) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls_listener(name).map(|listener| &listener.config)
    }
}

/// A route as one shard uses it: the route's action and edits, copied from the configuration.
pub struct RouteTarget {
    pub name: Box<str>,
    /// Where this route's responses are counted on this shard.
    pub stats: RouteStatsId,
    /// Index into [`Snapshot::auth`].
    pub auth: Option<usize>,
    /// The route's rate limit on this shard; kept across reloads that leave it unchanged.
    pub limiter: Option<Rc<RefCell<Limiter>>>,
    pub action: Action,
    pub request_headers: Edits,
    pub response_headers: Edits,
    /// `None`: unlimited.
    pub max_body_bytes: Option<u64>,
    /// `Content-Length` bodies up to this size are received whole before going upstream.
    pub request_buffering: u64,
    /// Which failed attempts are sent again.
    pub retry: RetryPolicy,
    /// `redirect_https`: plain requests are answered `308` to `https` on this port.
    pub redirect_https: Option<u16>,
}

/// What a matched route does.
pub enum Action {
    Forward {
        /// Index into [`Snapshot::upstreams`].
        upstream: usize,
        rewrite: PathRewrite,
    },
    Respond(DirectResponse),
}

/// A response a route answers with itself.
pub struct DirectResponse {
    pub status: u16,
    pub body: Box<[u8]>,
    pub headers: Vec<HeaderLine>,
}

/// A field a configuration writes: name and value, as bytes.
pub type HeaderLine = (Box<[u8]>, Box<[u8]>);

/// How the forwarded path differs from the routed one.
pub enum PathRewrite {
    None,
    /// Drop the matched prefix (keeping a leading `/`).
    StripPrefix,
    /// Replace the matched prefix.
    ReplacePrefix(Box<[u8]>),
}

/// Field names, matched without regard to case. Checked for every field of every request, so
/// a mask of the names' lengths turns most misses into one test.
#[derive(Default)]
pub struct NameSet {
    /// Lowercase.
    names: Vec<Box<[u8]>>,
    /// Bit `n` set: a name of `n` bytes is in the set; bit 63 stands for every longer name.
    lengths: u64,
}

impl NameSet {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> NameSet {
        let mut set = NameSet::default();
        for name in names {
            set.insert(name.as_bytes());
        }
        set
    }

    pub fn insert(&mut self, name: &[u8]) {
        self.lengths |= 1 << name.len().min(63);
        self.names
            .push(name.to_ascii_lowercase().into_boxed_slice());
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.lengths & (1 << name.len().min(63)) != 0
            && self
                .names
                .iter()
                .any(|known| known.eq_ignore_ascii_case(name))
    }
}

/// Header edits as bytes.
#[derive(Default)]
pub struct Edits {
    /// Names of fields to drop: the removed ones and the ones `add` replaces.
    pub drop: NameSet,
    pub add: Vec<HeaderLine>,
}

impl Edits {
    fn from_config(edits: &HeaderEdits) -> Edits {
        let removed = edits.remove.iter().map(|name| &**name);
        let replaced = edits.add.iter().map(|(name, _)| &**name);
        let add = edits
            .add
            .iter()
            .map(|(name, value)| (name.as_bytes().into(), value.as_bytes().into()))
            .collect();
        Edits {
            drop: NameSet::new(removed.chain(replaced)),
            add,
        }
    }

    /// Whether a field named `name` must not be passed on.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.drop.contains(name)
    }
}

/// `[forwarding]` as the head writer applies it.
pub struct ForwardingRules {
    settings: Forwarding,
    /// Fields removed from a client that is not a trusted proxy.
    pub untrusted_drop: NameSet,
}

impl ForwardingRules {
    fn new(settings: &Forwarding) -> ForwardingRules {
        ForwardingRules {
            untrusted_drop: NameSet::new(settings.drop_from_untrusted.iter().map(|name| &**name)),
            settings: settings.clone(),
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.settings.trusts(ip)
    }

    /// Whether coregate writes an RFC 7239 `Forwarded` field.
    pub fn forwarded_header(&self) -> bool {
        self.settings.forwarded_header
    }
}

/// One `[[auth]]` policy as a shard runs it.
pub struct AuthPolicy {
    pub method: AuthMethod,
    /// The upstream header that carries the authenticated identity.
    pub identity_header: Option<Box<[u8]>>,
    /// Verified JWTs this shard remembers (`None` for API keys and caches of size 0).
    pub token_cache: Option<RefCell<TokenCache>>,
}

impl AuthPolicy {
    fn new(auth: &AuthConfig) -> AuthPolicy {
        let token_cache = match &auth.method {
            AuthMethod::Jwt {
                verifier,
                cache_entries,
                cache_ttl,
                ..
            } if *cache_entries > 0 => Some(RefCell::new(
                verifier.new_cache(*cache_entries, cache_ttl.as_secs()),
            )),
            _ => None,
        };
        AuthPolicy {
            method: auth.method.clone(),
            identity_header: auth
                .identity_header
                .as_ref()
                .map(|name| name.as_bytes().into()),
            token_cache,
        }
    }
}

/// How long a client connection may take for each step of an exchange.
#[derive(Clone, Copy, Debug)]
pub struct ClientTimeouts {
    /// To receive a whole request head.
    pub header: Duration,
    /// Idle between requests.
    pub keepalive: Duration,
    /// For the next piece of a request body.
    pub body: Duration,
    /// For the client to take more response bytes.
    pub send: Duration,
    /// A tunnel with no traffic either way.
    pub tunnel_idle: Duration,
}

/// A shard's limiters by route name, with the settings each was built with.
pub type Limiters = HashMap<Box<str>, (RateLimitConfig, Rc<RefCell<Limiter>>)>;

/// What building a snapshot draws on: the shard's state that outlives snapshots.
pub struct SnapshotBuilder<'a> {
    /// The shard's index: where its round-robin rotations start.
    pub shard_index: usize,
    /// Reused for endpoints the shard already knows.
    pub pools: &'a mut Pools,
    /// Health records, reused for the upstreams and endpoints the shard already knows.
    pub health: &'a mut HealthRecords,
    /// Route counters, reused for route names the shard already knows.
    pub metrics: &'a ShardMetrics,
    /// Reused for routes whose rate limit did not change; the others are dropped.
    pub limiters: &'a mut Limiters,
    /// Shards enforcing each limit together.
    pub shard_count: usize,
    pub clock: LimitClock,
    /// The shard's TLS resumption state, which each TLS listener's configuration uses.
    pub tls: &'a ShardTls,
}

impl SnapshotBuilder<'_> {
    /// Compiles `config` for this shard. Pools of endpoints `config` no longer names are
    /// closed; limiters of routes it no longer limits (or limits differently) are dropped.
    pub fn build(&mut self, config: &Config) -> Snapshot {
        let upstreams = config
            .upstreams
            .iter()
            .map(|upstream| self.upstream(upstream))
            .collect();
        self.pools.retain_keyed(|addr, tls| {
            config.upstreams.iter().any(|upstream| {
                upstream.endpoints.contains(addr)
                    && upstream.tls.as_ref().map(|t| &*t.pool_key) == tls
            })
        });
        self.health.retain(|name, addr| {
            config
                .upstreams
                .iter()
                .any(|upstream| &*upstream.name == name && upstream.endpoints.contains(addr))
        });
        self.keep_limiters(config);
        let specs = config
            .routes
            .iter()
            .map(|route| RouteSpec {
                host: route.host.clone(),
                methods: route.methods,
                path: route.path.clone(),
                target: self.target(config, route),
            })
            .collect();
        // The configuration was validated with the same table builder, so this cannot fail; an
        // empty table (answering 404) is the safe fallback if it ever did.
        let routes = RouteTable::build(specs)
            .unwrap_or_else(|_| RouteTable::build(Vec::new()).expect("an empty table builds"));
        Snapshot {
            routes,
            upstreams,
            auth: config.auth.iter().map(AuthPolicy::new).collect(),
            forwarding: ForwardingRules::new(&config.forwarding),
            limits: http1::Limits {
                max_request_line: config.limits.max_request_line,
                max_head_bytes: config.limits.max_head_bytes,
                max_headers: config.limits.max_headers,
            },
            timeouts: ClientTimeouts {
                header: config.timeouts.header,
                keepalive: config.timeouts.keepalive,
                body: config.timeouts.body,
                send: config.timeouts.send,
                tunnel_idle: config.timeouts.tunnel_idle,
            },
            tls: config
                .listeners
                .iter()
                .filter_map(|l| {
                    let tls = l.tls.as_ref()?;
                    Some(TlsListener {
                        name: l.name.clone(),
                        config: tls.server_config_for(&l.name, self.tls),
                        client_cert_header: tls.client.as_ref().and_then(|c| c.header.clone()),
                    })
                })
                .collect(),
        }
    }

    fn upstream(&mut self, upstream: &UpstreamConfig) -> UpstreamGroup {
        let settings = PoolSettings {
            max_idle: upstream.max_idle_per_endpoint,
            idle_timeout: upstream.idle_timeout,
            max_requests: upstream.max_requests_per_connection.unwrap_or(0),
        };
        // An endpoint a reload adds to a running upstream starts its slow start now; the
        // endpoints of a new upstream all start together, at full share.
        let (state, fresh) = self.health.upstream(&upstream.name);
        let added = (!fresh).then(std::time::Instant::now);
        let endpoints = upstream
            .endpoints
            .iter()
            .zip(&upstream.weights)
            .map(|(addr, &weight)| {
                Endpoint::new(
                    self.pools
                        .get_or_create_tls(*addr, settings, upstream.tls.as_deref()),
                    state.endpoint(*addr, added),
                    weight,
                )
            })
            .collect();
        let timeouts = UpstreamTimeouts {
            connect: upstream.connect_timeout,
            response: upstream.response_timeout,
            body: upstream.body_timeout,
        };
        UpstreamGroup::new(
            upstream.name.clone(),
            endpoints,
            timeouts,
            upstream.balance,
            upstream.hashing.as_ref(),
            upstream.settings,
            state,
            self.shard_index,
        )
    }

    /// Keeps the limiters of routes whose limit did not change, builds the others.
    fn keep_limiters(&mut self, config: &Config) {
        let mut kept = Limiters::new();
        for route in &config.routes {
            let Some(limit) = &route.rate_limit else {
                continue;
            };
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
        *self.limiters = kept;
    }

    fn target(&self, config: &Config, route: &RouteConfig) -> RouteTarget {
        let mut request_headers = Edits::from_config(&route.request_headers);
        // A client's own copies of the headers authentication writes are removed, so a client
        // cannot pose as an identity or claim.
        if let Some(auth) = route.auth.and_then(|i| config.auth.get(i)) {
            for name in auth.written_headers() {
                request_headers.drop.insert(name.as_bytes());
            }
        }
        RouteTarget {
            name: route.name.clone(),
            stats: self.metrics.route_stats_id(&route.name),
            auth: route.auth,
            limiter: self
                .limiters
                .get(&route.name)
                .map(|(_, limiter)| limiter.clone()),
            action: action(&route.action),
            request_headers,
            response_headers: Edits::from_config(&route.response_headers),
            max_body_bytes: route.max_body_bytes,
            request_buffering: route.request_buffering,
            retry: route.retry,
            redirect_https: route.redirect_https,
        }
    }
}

fn action(action: &RouteAction) -> Action {
    match action {
        RouteAction::Upstream {
            upstream,
            strip_prefix,
            prefix_rewrite,
        } => Action::Forward {
            upstream: *upstream,
            rewrite: match (strip_prefix, prefix_rewrite) {
                (_, Some(replacement)) => PathRewrite::ReplacePrefix(replacement.as_bytes().into()),
                (true, None) => PathRewrite::StripPrefix,
                (false, None) => PathRewrite::None,
            },
        },
        RouteAction::Respond {
            status,
            body,
            headers,
        } => Action::Respond(DirectResponse {
            status: *status,
            body: body.clone(),
            headers: headers
                .iter()
                .map(|(name, value)| (name.as_bytes().into(), value.as_bytes().into()))
                .collect(),
        }),
    }
}
