//! Configuration: TOML file -> raw serde structs -> validated, immutable [`Config`].
//!
//! Owns the file format and everything known about it: what each key means, its default and
//! bounds ([`defaults`]), and the mistakes a file can hold ([`ConfigErrors`]). It does no socket
//! or thread work; the only system calls are reading the file (and the profiles it names),
//! resolving upstream host names once, and (in [`plan`]) reading this process's CPU affinity
//! and the CPU topology in `/sys`.
//!
//! | file | responsibility |
//! |---|---|
//! | `file.rs` | raw serde structs: the shape of the file, every value with its span |
//! | `validate.rs` | raw -> [`Config`]: types, bounds, references, cross-field rules; collects every error |
//! | `defaults.rs` | every `DEFAULT_*` value and every bound, each with its reason |
//! | `units.rs` | the duration (`"10s"`) and size (`"16KiB"`) grammars |
//! | `cores.rs` | the grammar of `runtime.cores` and `runtime.exclude` (`"0-3,6"`, `"all,^0-1"`, `"physical"`, `"node1"`) |
//! | `render.rs` | [`Config`] -> TOML with every effective value (the admin API's `/config`) |
//! | `profile.rs` | `profile = "..."`: the files a configuration starts from, merged key by key, each value keeping its file |
//! | `plan.rs` | [`Config`] + this machine's topology -> [`Plan`]: which CPUs get a shard, per-shard budgets |
//! | `error.rs` | [`ConfigError`]: file, line, column, key, message, value found |
//!
//! A loaded `Config` is never modified. The control plane validates a new file completely,
//! then hands shards a snapshot; each component receives only its slice ([`RuntimeConfig`],
//! [`Limits`], [`Timeouts`], one [`ListenerConfig`], [`UpstreamConfig`] or [`RouteConfig`]).
//! Values that depend on another section are resolved here, so no component needs to look
//! elsewhere: an upstream carries its effective timeouts, a route its effective body limit and
//! the index of its upstream.

mod cores;
pub mod defaults;
mod error;
mod file;
pub mod plan;
mod profile;
mod render;
pub mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{ApiKeyAuth, JwtVerifier};
use crate::http1::MethodSet;
use crate::ratelimit::{KeySpec, Quota};
use crate::router::spec::{HostPattern, PathPattern};
use crate::tls::ListenerTls;
use crate::upstream::{Hashing, HealthCheck, RetryPolicy, UpstreamSettings};

pub use crate::upstream::Balance;

pub use cores::{CoreRule, CoreSet, CpuList, MAX_CPU, MAX_NODE};
pub use error::{ConfigError, ConfigErrors, Location, Written};
pub use plan::{Plan, ShardPlan};
pub use validate::{Resolve, SystemResolver};

/// A validated configuration. Built only by [`Config::load`] / [`Config::parse`].
#[derive(Clone, Debug)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// In file order; at least one.
    pub listeners: Vec<ListenerConfig>,
    /// In file order; routes refer to them by index.
    pub upstreams: Vec<UpstreamConfig>,
    /// In file order.
    pub routes: Vec<RouteConfig>,
    /// `[admin]`: the admin listener, when the file has the section.
    pub admin: Option<AdminConfig>,
    /// `[access_log]`: one line per request, when the file has the section.
    pub access_log: Option<AccessLogConfig>,
    /// `[forwarding]`: whose `X-Forwarded-*` fields are believed.
    pub forwarding: Forwarding,
    /// `[[auth]]` policies in file order; routes refer to them by index.
    pub auth: Vec<AuthConfig>,
    /// The file this configuration came from, as the caller named it.
    pub origin: PathBuf,
    /// The profiles it starts from (`profile = "..."`), the one it names first.
    pub profiles: Vec<PathBuf>,
}

impl Config {
    /// What `coregate check` says about TLS: a summary line when a listener terminates TLS,
    /// and warnings (certificates expiring within 30 days, route hosts no certificate covers).
    pub fn tls_report(&self) -> (Option<String>, Vec<String>) {
        let listeners: Vec<(&str, &ListenerTls)> = self
            .listeners
            .iter()
            .filter_map(|l| Some((&*l.name, l.tls.as_deref()?)))
            .collect();
        if listeners.is_empty() {
            return (None, Vec::new());
        }
        let summary = format!(
            "tls: {} listener(s); records encrypted in user space (rustls, ring provider, on each \
             shard's io_uring); kTLS is not used",
            listeners.len()
        );
        let mut hosts: Vec<String> = self
            .routes
            .iter()
            .filter(|r| !matches!(r.host, HostPattern::Any))
            .map(|r| r.host.to_string())
            .collect();
        hosts.sort();
        hosts.dedup();
        let warnings = crate::tls::warnings(
            listeners.into_iter(),
            &hosts,
            crate::tls::certificate::unix_now(),
        );
        (Some(summary), warnings)
    }

    /// Reads and validates a configuration file, resolving upstream host names with the
    /// system resolver.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with(path, &SystemResolver)
    }

    /// [`Config::load`] with a chosen resolver for upstream host names.
    pub fn load_with(path: &Path, resolver: &dyn Resolve) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse_with(&text, &origin, resolver),
            Err(err) => Err(ConfigErrors::from_vec(vec![ConfigError {
                origin: origin.into(),
                location: None,
                key: "".into(),
                message: format!("cannot read the file: {err}").into(),
                found: None,
            }])),
        }
    }

    /// Validates configuration text. `origin` names the text in messages (usually the file
    /// name). Upstream host names are resolved with the system resolver.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Config::parse_with(text, origin, &SystemResolver)
    }

    /// [`Config::parse`] with a chosen resolver for upstream host names.
    pub fn parse_with(
        text: &str,
        origin: &str,
        resolver: &dyn Resolve,
    ) -> Result<Config, ConfigErrors> {
        validate::validate(text, origin, resolver)
    }
}

/// `[runtime]`: shards, their rings and their buffers.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Which CPUs get a shard (`runtime.exclude` folded in); resolved against the machine's
    /// topology and the affinity mask by [`Plan`].
    pub cores: CoreSelection,
    /// Where `cores` was written (none when defaulted), so the plan can point at it.
    pub cores_at: Option<Written>,
    /// Where `exclude` was written (none when absent).
    pub exclude_at: Option<Written>,
    /// Submission queue entries of each shard's io_uring; a power of two.
    pub ring_entries: u32,
    /// Bytes per I/O buffer.
    pub buffer_size: usize,
    /// I/O buffers per shard.
    pub buffers_per_shard: usize,
    /// Client connections per shard; accepting pauses at the cap.
    pub max_connections: usize,
    /// How long an idle shard may sleep in its ring before checking its executor.
    pub idle_wait: Duration,
    pub glommio: GlommioConfig,
}

/// `[runtime.glommio]`: the glommio executor's own settings.
#[derive(Clone, Debug)]
pub struct GlommioConfig {
    /// Bytes reserved per executor for registered I/O buffers.
    pub io_memory: usize,
    /// Depth of each glommio ring; a power of two.
    pub ring_depth: u32,
    /// How long an idle executor spins before parking; `None` never spins.
    pub spin_before_park: Option<Duration>,
    /// How long a task queue runs before it must yield.
    pub preempt_timer: Duration,
}

/// Which CPUs get a shard. Printed as `runtime.cores` would write it (`"all,^0-1"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreSelection {
    /// Every CPU this process may run on.
    All,
    /// These CPUs, ascending, no repeats.
    List(Vec<usize>),
    /// Physical cores, NUMA nodes or CPUs taken away: resolved against the topology.
    Rule(CoreRule),
}

/// `[limits]`: the sizes a client request may have. Exceeding one is answered with the status
/// named on each field, through the one early-exit path.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line in bytes (`414`).
    pub max_request_line: usize,
    /// Largest request head in bytes (`431`); at most `runtime.buffer_size`.
    pub max_head_bytes: usize,
    /// Most header fields (`431`).
    pub max_headers: usize,
    /// Largest request body in bytes (`413`); `None` is unlimited (written `0`). Routes may
    /// override it; see [`RouteConfig::max_body_bytes`].
    pub max_body_bytes: Option<u64>,
    /// Largest `Content-Length` body received whole before the request goes upstream; `0`
    /// streams every body. Routes may override it; see [`RouteConfig::request_buffering`].
    pub request_buffering: u64,
}

/// `[timeouts]`: how long coregate waits for each side. Upstream values here are the defaults
/// for every upstream; the effective ones are on each [`UpstreamConfig`].
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// Total time to receive a request head: from accept for a connection's first request, from
    /// the first byte for later ones.
    pub header: Duration,
    /// Idle time allowed between requests on a client connection, until the next first byte.
    pub keepalive: Duration,
    /// Longest wait for the next piece of a request body.
    pub body: Duration,
    /// Longest wait for a client to accept more response bytes.
    pub send: Duration,
    /// Default upstream connect timeout.
    pub upstream_connect: Duration,
    /// Default wait for an upstream response head.
    pub upstream_response: Duration,
    /// Longest wait for the next piece of an upstream response body.
    pub upstream_body: Duration,
    /// Longest a switched-protocol tunnel (WebSocket) may stay silent in both directions.
    pub tunnel_idle: Duration,
    /// How long a draining process lets in-flight requests finish before exiting.
    pub drain: Duration,
}

/// `[admin]`: the admin listener (health, readiness, configuration, reload, metrics). Runs on
/// the control plane's own thread, never on a shard, and never on a data listener's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// When set, every endpoint but `/healthz` and `/readyz` wants
    /// `Authorization: Bearer <token>`. Required when `bind` is not a loopback address.
    pub token: Option<Box<str>>,
}

/// `[forwarding]`: which fields about a request's origin coregate believes, and which it
/// writes.
///
/// A client whose address is in `trusted_proxies` is another proxy (a load balancer, a TLS
/// terminator): its `X-Forwarded-For` chain is kept and the client's address appended, its
/// `X-Forwarded-Proto` / `-Host` are passed on, and so are the fields of
/// `drop_from_untrusted`. Any other client's `X-Forwarded-*` fields are replaced and its fields
/// of `drop_from_untrusted` removed, so a client cannot make an upstream believe it comes from
/// elsewhere, or asked for another path than the one routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarding {
    pub trusted_proxies: Vec<IpPrefix>,
    /// Lowercase names of the fields only a trusted proxy may send.
    pub drop_from_untrusted: Vec<Box<str>>,
    /// Also write an RFC 7239 `Forwarded` field.
    pub forwarded_header: bool,
}

impl Default for Forwarding {
    fn default() -> Forwarding {
        Forwarding {
            trusted_proxies: Vec::new(),
            drop_from_untrusted: defaults::DEFAULT_DROP_FROM_UNTRUSTED
                .iter()
                .map(|&name| name.into())
                .collect(),
            forwarded_header: defaults::DEFAULT_FORWARDED_HEADER,
        }
    }
}

impl Forwarding {
    /// Whether `ip` is a trusted proxy. IPv4 clients of a dual-stack listener arrive as
    /// IPv4-mapped IPv6 addresses and match IPv4 prefixes.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies
            .iter()
            .any(|prefix| prefix.contains(ip))
    }
}

/// An address prefix: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPrefix {
    /// The address with the bits past `len` cleared.
    pub addr: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    /// Parses `ADDR` or `ADDR/LEN`; an address with bits set past the length is refused, as it
    /// is usually a typo (`10.0.0.1/8`).
    pub fn parse(text: &str) -> Result<IpPrefix, String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            "expected an IP address or prefix, like \"10.0.0.0/8\" or \"192.0.2.7\"".to_owned()
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(len) => match len.parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => return Err(format!("the prefix length must be from 0 to {max}")),
            },
        };
        let prefix = IpPrefix {
            addr: mask(addr, len),
            len,
        };
        if prefix.addr != addr {
            return Err(format!(
                "bits are set past the prefix length; did you mean \"{}/{len}\"?",
                prefix.addr
            ));
        }
        Ok(prefix)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `ip` with every bit past the first `len` cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if len == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(len.min(32))))
            };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if len == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(len.min(128))))
            };
            IpAddr::V6(kept.into())
        }
    }
}

/// `[access_log]`: where and how request lines are written. Lines are gathered per shard and
/// written by a thread of their own, so a slow or full disk never holds up a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The file lines are appended to; opened again on every reload (log rotation).
    pub path: PathBuf,
    pub format: AccessLogFormat,
    /// Bytes a shard gathers before handing them to the writer.
    pub buffer_size: usize,
    /// Longest a line waits in a shard when traffic is light.
    pub flush_interval: Duration,
}

/// The shape of an access-log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// NGINX's `combined` format, with coregate's fields appended.
    Combined,
}

impl AccessLogFormat {
    /// The name the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Combined => "combined",
        }
    }
}

/// One `[[listener]]`: every shard opens its own `SO_REUSEPORT` socket on `bind`.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub name: Box<str>,
    pub bind: SocketAddr,
    /// `listen(2)` backlog of each shard's socket.
    pub backlog: u32,
    /// Whether to set `TCP_DEFER_ACCEPT`.
    pub defer_accept: bool,
    /// `tls = { ... }`: the listener terminates TLS with these certificates.
    pub tls: Option<Arc<ListenerTls>>,
}

/// Two listeners are the same *socket* when name, address, backlog, accept option and scheme
/// agree: a reload that changes only certificates (or other TLS settings) keeps the socket
/// open, and the new certificates reach new connections through each shard's snapshot.
impl PartialEq for ListenerConfig {
    fn eq(&self, other: &ListenerConfig) -> bool {
        self.name == other.name
            && self.bind == other.bind
            && self.backlog == other.backlog
            && self.defer_accept == other.defer_accept
            && self.tls.is_some() == other.tls.is_some()
    }
}

impl Eq for ListenerConfig {}

/// One `[[upstream]]`, with its effective timeouts and its health, load and balancing
/// settings.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub name: Box<str>,
    /// Addresses, in file order; host names were resolved when the file was loaded.
    pub endpoints: Vec<SocketAddr>,
    /// Each endpoint's weight, in the order of `endpoints` (every address a name resolves to
    /// has the name's weight).
    pub weights: Vec<u32>,
    /// Endpoints written as host names, re-resolved every `resolve_every` when set.
    pub names: Vec<NamedEndpoint>,
    /// How often the control plane resolves `names` again; `None` resolves only on load.
    pub resolve_every: Option<Duration>,
    pub balance: Balance,
    /// What `ring_hash` and `maglev` hash (and `ring_hash`'s load bound); `None` for the other
    /// policies.
    pub hashing: Option<Hashing>,
    /// Outlier detection, panic threshold, slow start, circuit breakers, retry budget.
    pub settings: UpstreamSettings,
    /// The active health check, run by the control plane; `None`: passive detection only.
    pub health_check: Option<HealthCheck>,
    /// Idle pooled connections each shard keeps per endpoint; `0` disables pooling.
    pub max_idle_per_endpoint: usize,
    /// How long a pooled connection may stay idle.
    pub idle_timeout: Duration,
    /// Requests per upstream connection before it is replaced; `None` is unlimited.
    pub max_requests_per_connection: Option<u32>,
    /// This upstream's `connect_timeout`, else `timeouts.upstream_connect`.
    pub connect_timeout: Duration,
    /// This upstream's `response_timeout`, else `timeouts.upstream_response`.
    pub response_timeout: Duration,
    /// `timeouts.upstream_body`.
    pub body_timeout: Duration,
    /// `tls = { ... }`: connections to the endpoints speak TLS.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

/// An endpoint the file names by host, with what its addresses inherit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedEndpoint {
    pub host: Box<str>,
    pub port: u16,
    pub weight: u32,
    /// What the name last resolved to (each is also in `UpstreamConfig::endpoints`).
    pub addrs: Vec<SocketAddr>,
}

/// One `[[route]]`: what it matches and what it does.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// `name`, or `route-<n>` for the n-th route (from 1).
    pub name: Box<str>,
    pub host: HostPattern,
    pub methods: MethodSet,
    /// From `path` (exact or template) or `path_prefix`.
    pub path: PathPattern,
    pub action: RouteAction,
    /// Applied to the request before it is forwarded.
    pub request_headers: HeaderEdits,
    /// Applied to every response of this route, upstream or canned.
    pub response_headers: HeaderEdits,
    /// The effective body limit: the route's own `max_body_bytes`, else
    /// `limits.max_body_bytes`. `None` is unlimited.
    pub max_body_bytes: Option<u64>,
    /// The effective buffering bound: the route's own `request_buffering`, else
    /// `limits.request_buffering`. `0` streams every body.
    pub request_buffering: u64,
    /// Index into [`Config::auth`]: requests must authenticate this way.
    pub auth: Option<usize>,
    /// The route's node-wide rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// Which failed attempts are sent again, and how (the default policy when not written).
    pub retry: RetryPolicy,
    /// `redirect_https = true`: requests on a plain listener are answered `308` to the same
    /// URL on `https` at this port (`https_port`), others served as configured.
    pub redirect_https: Option<u16>,
}

/// A route's `rate_limit`: a node-wide rate and burst per key, enforced by every shard on its
/// share (see [`crate::ratelimit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub quota: Quota,
    pub key: KeySpec,
    /// Keys each shard tracks at most (the memory cap).
    pub keys_per_shard: usize,
}

/// One `[[auth]]`: how a route's requests prove who they are.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub name: Box<str>,
    pub method: AuthMethod,
    /// The upstream header that carries the authenticated identity (lowercase); a client's own
    /// copy is removed first, so it cannot pose as someone else.
    pub identity_header: Option<Box<str>>,
}

/// The credential an `[[auth]]` checks. The verifiers are immutable and shared by every shard
/// (read, never cloned, per request); each shard keeps its own token cache.
#[derive(Clone, Debug)]
pub enum AuthMethod {
    ApiKey(Arc<ApiKeyAuth>),
    Jwt {
        verifier: Arc<JwtVerifier>,
        /// Lowercase names of the headers claims are forwarded in (removed from the client's
        /// request first).
        claim_headers: Vec<Box<str>>,
        /// Verified tokens each shard remembers; 0 verifies every request.
        cache_entries: usize,
        cache_ttl: Duration,
    },
}

impl AuthConfig {
    /// Every header name this policy writes upstream (lowercase).
    pub fn written_headers(&self) -> impl Iterator<Item = &str> {
        let claims: &[Box<str>] = match &self.method {
            AuthMethod::Jwt { claim_headers, .. } => claim_headers,
            AuthMethod::ApiKey(_) => &[],
        };
        self.identity_header
            .iter()
            .chain(claims)
            .map(|name| &**name)
    }
}

/// What a matched route does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to an upstream.
    Upstream {
        /// Index into [`Config::upstreams`].
        upstream: usize,
        /// Remove the matched prefix from the forwarded path, keeping a leading `/`.
        strip_prefix: bool,
        /// Replace the matched prefix with this.
        prefix_rewrite: Option<Box<str>>,
    },
    /// Answer directly.
    Respond {
        status: u16,
        body: Box<[u8]>,
        /// Sent as written; `Content-Length` is added by coregate.
        headers: Vec<(Box<str>, Box<str>)>,
    },
}

/// Header changes made on one side of a route. Removals apply first, then additions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Names to remove, lowercase.
    pub remove: Vec<Box<str>>,
    /// Headers to set, name as written: any header of the same name (case-insensitive) is
    /// replaced, so a client cannot supply its own copy of a header the route sets.
    pub add: Vec<(Box<str>, Box<str>)>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}
