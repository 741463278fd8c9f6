//! Every default and every bound of the configuration, in one place, each with its reason.
//!
//! Defaults are chosen so that an operator coming from NGINX or Envoy is not surprised: where
//! those two agree we follow them, where they differ we say which one we follow and why.
//! The configuration reference in `README.md` lists the same values for readers of the file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{AccessLogFormat, Balance, CoreSelection};
use crate::upstream::{RetryOn, RetryPolicy};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// profile = "..."

/// Where a profile named without a path (`profile = "edge-16core"`) is looked for after the
/// naming file's own directory: where the Debian package installs `tuning/`.
pub const DEFAULT_PROFILE_DIR: &str = "/usr/share/coregate/tuning";

/// How deep profiles may nest (a profile naming a profile...). Two levels are what the shipped
/// profiles use at most; eight leaves room without letting a mistake loop.
pub const MAX_PROFILE_DEPTH: usize = 8;

// ---------------------------------------------------------------------------------------------
// [runtime]

/// One shard on every CPU this process may run on, like NGINX's `worker_processes auto`. The
/// affinity mask is honoured, so `taskset` and cgroup cpusets narrow it without editing the file.
pub const DEFAULT_CORES: CoreSelection = CoreSelection::All;

/// Submission queue entries of each shard's ring (the completion queue is sized from this and
/// `max_connections`, see `io::completion_entries`). At one receive, one send and the occasional
/// accept per request in flight, 1024 entries let a shard submit a full batch for several hundred
/// busy connections per wake-up.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;
/// Smaller rings end a batch early on every busy wake-up.
pub const MIN_RING_ENTRIES: u32 = 32;
/// The kernel's limit (`IORING_MAX_ENTRIES`). Every power of two up to it starts: the
/// completion queue is kept within the kernel's own limit (see `io::completion_entries`).
pub const MAX_RING_ENTRIES: u32 = 32768;

/// Size of each I/O buffer. A request head must fit in one buffer (see
/// [`DEFAULT_MAX_HEAD_BYTES`]); 16 KiB holds any ordinary head, and is the largest TLS record,
/// so a record never needs two buffers.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * KIB;
/// One page: smaller buffers would not hold a modest request head.
pub const MIN_BUFFER_SIZE: usize = 4 * KIB;
/// Larger buffers only waste memory on small messages; bodies stream through in pieces anyway.
pub const MAX_BUFFER_SIZE: usize = MIB;

/// I/O buffers per shard, shared by all of the shard's connections (a connection holds a buffer
/// only while bytes are in it). The memory is reserved up front but touched lazily, so the
/// default costs address space (64 MiB at 16 KiB) rather than resident memory.
pub const DEFAULT_BUFFERS_PER_SHARD: usize = 4096;
/// Below this a handful of slow clients could hold every buffer.
pub const MIN_BUFFERS_PER_SHARD: usize = 16;
/// The largest io_uring provided-buffer ring (buffer ids are 16 bits; rings are at most 32768).
pub const MAX_BUFFERS_PER_SHARD: usize = 32768;

/// Client connections per shard. At the cap the shard stops accepting until one closes, and the
/// kernel queues the rest in the listen backlog. 16384 is far above what one core serves at
/// once; the cap is there so that a flood of idle connections meets a limit instead of
/// exhausting file descriptors. Size `ulimit -n` for shards x this, plus upstream sockets.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// The usual `fs.nr_open` ceiling on file descriptors per process.
pub const MAX_MAX_CONNECTIONS: usize = 1 << 20;

/// How long an idle shard may sleep in its own ring before looking at its executor's queue.
/// Short enough that timers (timeouts, pool expiry) fire on time to within tens of milliseconds,
/// long enough that an idle shard costs no CPU. `0` never sleeps (busy polling).
pub const DEFAULT_IDLE_WAIT: Duration = ms(50);
/// Longer sleeps would delay timers noticeably.
pub const MAX_IDLE_WAIT: Duration = secs(1);

// [runtime.glommio] — the executor every shard runs on; the defaults are
// glommio's own.

/// Memory glommio reserves per executor for its registered I/O buffers (glommio's default).
pub const DEFAULT_GLOMMIO_IO_MEMORY: usize = 10 * MIB;
/// A floor against unit mistakes (`10` meaning ten bytes).
pub const MIN_GLOMMIO_IO_MEMORY: usize = 64 * KIB;
/// Above this the reservation is almost certainly a unit mistake.
pub const MAX_GLOMMIO_IO_MEMORY: usize = 1024 * MIB;

/// Depth of each of glommio's rings (glommio's default).
pub const DEFAULT_GLOMMIO_RING_DEPTH: u32 = 128;
/// Smallest useful depth; must be a power of two like every io_uring size.
pub const MIN_GLOMMIO_RING_DEPTH: u32 = 8;
/// The kernel's limit (`IORING_MAX_ENTRIES`).
pub const MAX_GLOMMIO_RING_DEPTH: u32 = 32768;

/// How long an idle glommio executor spins before parking. `0` (off, glommio's default) keeps
/// idle cores idle; spinning trades CPU for a few microseconds of wake-up latency.
pub const DEFAULT_GLOMMIO_SPIN_BEFORE_PARK: Duration = Duration::ZERO;
/// Spinning longer than this is better expressed as busy polling.
pub const MAX_GLOMMIO_SPIN_BEFORE_PARK: Duration = secs(1);

/// How long a glommio task queue runs before it must yield (glommio's default).
pub const DEFAULT_GLOMMIO_PREEMPT_TIMER: Duration = ms(100);
/// Zero would preempt constantly.
pub const MIN_GLOMMIO_PREEMPT_TIMER: Duration = ms(1);
/// Longer slices let one queue starve the others.
pub const MAX_GLOMMIO_PREEMPT_TIMER: Duration = secs(10);

// ---------------------------------------------------------------------------------------------
// [limits]

/// Longest request line (method, target, version) before `414 URI Too Long`. NGINX's limit is
/// one `large_client_header_buffers` buffer: 8 KiB.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * KIB;
/// Shorter limits would refuse ordinary API URLs with query strings.
pub const MIN_MAX_REQUEST_LINE: usize = 256;

/// Largest request head (request line and header fields) before `431 Request Header Fields Too
/// Large`. Must fit in one I/O buffer, because the head is parsed in place; NGINX allows 32 KiB
/// in four buffers and Envoy 60 KiB, but heads above 16 KiB are in practice cookie bloat or
/// abuse.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * KIB;
/// Smaller limits would refuse ordinary browser requests.
pub const MIN_MAX_HEAD_BYTES: usize = KIB;

/// Most header fields in a request head before `431`. Envoy's `max_headers_count` default.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The parser's header array is sized from this; beyond it a head is not a real client's.
pub const MAX_MAX_HEADERS: usize = 1024;

/// Largest request body before `413 Content Too Large`. NGINX's `client_max_body_size`
/// defaults to 1 MiB, which API users routinely raise; 10 MiB is a common API-gateway payload
/// cap. `0` means unlimited, as in NGINX. Bodies are streamed, never buffered whole, so this
/// limits abuse, not memory.
pub const DEFAULT_MAX_BODY_BYTES: Option<u64> = Some(10 * MIB as u64);

/// Request bodies with a `Content-Length` up to this size are received whole before the
/// request goes upstream, then sent with its head in one write; larger ones (and chunked ones)
/// are streamed as they arrive. NGINX buffers every body by default
/// (`proxy_request_buffering on`, spilling past 16 KiB to disk); buffering a small body costs
/// no memory beyond the shard's I/O buffers, spares the upstream a slow client's pace, and lets
/// a failed attempt be retried with the whole body at hand. `0` streams every body.
pub const DEFAULT_REQUEST_BUFFERING: u64 = 64 * KIB as u64;

/// The most I/O buffers a buffered request body may fill: with the head and the buffer the
/// head arrived in, a gathered write (`io::MAX_PARTS`) still has room for a last, partly
/// filled piece. `request_buffering` is at most this many `runtime.buffer_size`s.
pub const MAX_BUFFERED_BODY_BUFFERS: u64 = 4;

// ---------------------------------------------------------------------------------------------
// [timeouts]

/// Total time a client has to send a complete request head: from accept for a connection's
/// first request, from the first byte for later ones (idle time between requests is
/// [`DEFAULT_KEEPALIVE_TIMEOUT`]'s). A total deadline, not a per-read one, is what stops
/// slowloris clients dribbling one byte at a time. HAProxy's recommended `timeout
/// http-request` is 10s; NGINX's `client_header_timeout` is 60s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = secs(10);

/// How long an idle client connection is kept open between requests. NGINX's
/// `keepalive_timeout` is 75s, Envoy's `idle_timeout` 1h; 60s frees idle sockets sooner. A load
/// balancer in front of coregate should use a shorter idle timeout than this, so that it, not
/// coregate, closes idle connections and never sends on one being closed.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = secs(60);

/// Longest wait for the next piece of a request body. NGINX's `client_body_timeout` is 60s
/// between reads; 30s frees stuck uploads sooner.
pub const DEFAULT_BODY_TIMEOUT: Duration = secs(30);

/// Longest wait for a client to accept more response bytes. NGINX's `send_timeout` is 60s
/// between writes; 30s frees connections to vanished clients sooner.
pub const DEFAULT_SEND_TIMEOUT: Duration = secs(30);

/// Longest a protocol-switched connection (a WebSocket, after `101 Switching Protocols`) may go
/// without a byte in either direction. Envoy's stream idle timeout (5m); NGINX applies its 60s
/// `proxy_read_timeout`, which operators routinely raise for WebSockets.
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = secs(5 * 60);

/// How long a draining shard (SIGTERM/SIGINT) lets in-flight requests finish before it exits
/// anyway. Envoy's `--drain-time-s` default is 600s; 30s matches the typical grace period an
/// orchestrator gives before SIGKILL.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = secs(30);

/// Longest wait for an upstream TCP connect. Envoy's `connect_timeout` default (NGINX's 60s
/// keeps clients waiting on a dead backend for a minute).
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = secs(5);

/// Longest wait for an upstream's response head once the request is sent. NGINX's
/// `proxy_read_timeout` (60s).
pub const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT: Duration = secs(60);

/// Longest wait for the next piece of an upstream response body. NGINX's `proxy_read_timeout`
/// applies between reads too (60s).
pub const DEFAULT_UPSTREAM_BODY_TIMEOUT: Duration = secs(60);

/// The longest timeout accepted anywhere: a day is longer than any sane request or idle
/// timeout, so anything above it is a unit mistake (`"10h"` for `"10s"`).
pub const MAX_TIMEOUT: Duration = secs(24 * 60 * 60);

// ---------------------------------------------------------------------------------------------
// [[listener]]

/// Pending connections the kernel queues per listening socket. The kernel caps it at
/// `net.core.somaxconn`, which is 4096 by default since Linux 5.4 (NGINX uses 511, Envoy 1024;
/// a deep queue absorbs accept bursts while a shard is at its connection cap).
pub const DEFAULT_BACKLOG: u32 = 4096;
/// The largest `somaxconn` older kernels accept.
pub const MAX_BACKLOG: u32 = 65535;

/// `TCP_DEFER_ACCEPT`: off, as in NGINX. When on, the kernel wakes the shard only once the
/// client has sent data, which saves a wake-up per connection; a client that connects and sends
/// nothing then stays in the kernel, unseen by the connection cap and the header timeout.
pub const DEFAULT_DEFER_ACCEPT: bool = false;

/// `listener.tls.unknown_name`: a client asking for a name no certificate covers gets the
/// default (first) certificate, as NGINX's default server does; the client then decides
/// whether it trusts it. `"refuse"` ends such handshakes with an alert instead.
pub const DEFAULT_UNKNOWN_NAME: crate::tls::UnknownName = crate::tls::UnknownName::Default;

/// `listener.tls.min_version`: TLS 1.2 and 1.3 are offered (1.0 and 1.1 never are); "1.3"
/// drops 1.2 for listeners whose clients are all current.
pub const DEFAULT_MIN_TLS_VERSION: crate::tls::MinVersion = crate::tls::MinVersion::Tls12;

/// `listener.tls.client_auth`: with a `client_ca`, a client without a certificate is refused
/// (`"required"`): asking for certificates is usually meant to admit only their holders.
/// `"optional"` serves such clients without an identity.
pub const DEFAULT_CLIENT_AUTH_REQUIRED: bool = true;

/// `upstream.tls.verify`: an upstream's certificate must chain to the configured `ca`; turning
/// it off (trusting any certificate) is for test rigs.
pub const DEFAULT_UPSTREAM_TLS_VERIFY: bool = true;

/// Certificates one TLS listener may list.
pub const MAX_CERTIFICATES: usize = 256;

/// A TLS listener's records carry up to 16 KiB of plaintext, and a record is handed to the
/// parser whole: `runtime.buffer_size` must hold one.
pub const MIN_TLS_BUFFER_SIZE: usize = 16 * KIB;

/// `route.https_port`: the port a `redirect_https` route sends clients to; 443 is left out of
/// the `Location`.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// `route.redirect_https`: off; plain requests are served like TLS ones.
pub const DEFAULT_REDIRECT_HTTPS: bool = false;

// ---------------------------------------------------------------------------------------------
// [[upstream]]

/// Smooth weighted round-robin, NGINX's default: each shard walks the endpoints in turn, in
/// proportion to their weights, heavy ones spread out rather than served in bursts.
pub const DEFAULT_BALANCE: Balance = Balance::RoundRobin;

/// An endpoint's weight when the file gives none (NGINX's and Envoy's 1).
pub const DEFAULT_WEIGHT: u32 = 1;
/// Envoy's ceiling: a weight above 128 is almost always a share better written as a ratio of
/// smaller numbers.
pub const MAX_WEIGHT: u32 = 128;

/// Endpoints (addresses, after names resolve) in one upstream. A Maglev table names at most
/// 65,535, and a pick is cheap at any count; this bound keeps per-shard tables small.
pub const MAX_ENDPOINTS_PER_UPSTREAM: usize = 4096;

/// `ring_hash` and `maglev` hash the client's address unless told otherwise: every request of a
/// client lands on the same endpoint with nothing to configure.
pub const DEFAULT_HASH_ON: &str = "client_ip";

/// The smallest `hash_balance_factor` (percent of the average load): below 100 no endpoint could
/// ever take its share. The bound is off unless written (Envoy's default).
pub const MIN_HASH_BALANCE_FACTOR: u32 = 100;
/// Above this the bound never binds.
pub const MAX_HASH_BALANCE_FACTOR: u32 = 10_000;

/// How often names among the endpoints are resolved again: off (`None`), as NGINX resolves
/// `server` names only when the configuration loads. `resolve_every` turns it on.
pub const DEFAULT_RESOLVE_EVERY: Option<Duration> = None;
/// Resolving more often than this only loads the resolver.
pub const MIN_RESOLVE_EVERY: Duration = secs(1);

/// Below this share of available endpoints (percent), picks spread over every endpoint rather
/// than overload the few left (Envoy's `healthy_panic_threshold`, 50%). With three endpoints,
/// one out leaves 67%: the other two take its share; two out (33%) is panic. `0` turns panic
/// mode off: with every endpoint out, requests get `503` with `Retry-After`.
pub const DEFAULT_PANIC_THRESHOLD: u8 = 50;

/// Slow start is off (NGINX's `slow_start` default, and Envoy's): a returning endpoint takes its
/// full share at once. Set it for upstreams that need to warm caches or JIT.
pub const DEFAULT_SLOW_START: Duration = Duration::ZERO;
/// A longer ramp keeps a healthy endpoint under-used for too long.
pub const MAX_SLOW_START: Duration = secs(60 * 60);

// [upstream.outlier] — passive detection, on each shard from its own outcomes.

/// Gateway failures in a row (connect refused or timed out, a fresh connection reset before
/// any response byte, no response head in time) that eject an endpoint: 1, NGINX's
/// `max_fails=1`. One refused connect says the endpoint is gone; waiting for more costs a
/// failed request each (Envoy's 5 counts them among its `consecutive_5xx`). `0` never ejects
/// on them.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 1;

/// 5xx answers in a row that eject: Envoy's `consecutive_5xx`, 5. NGINX does not count answers
/// at all by default; an endpoint answering nothing but 5xx is as good as gone. `0` never
/// ejects on them.
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;

/// The first ejection's length: 10 s, NGINX's `fail_timeout`. The n-th ejection in a row lasts
/// n times this (Envoy's `base_ejection_time` grows the same way); every base ejection time
/// spent back in rotation forgives one.
pub const DEFAULT_BASE_EJECTION_TIME: Duration = secs(10);

/// No ejection lasts longer than Envoy's `max_ejection_time`, 300 s.
pub const DEFAULT_MAX_EJECTION_TIME: Duration = secs(300);

/// At most half of an upstream's endpoints ejected at once (at least one). Envoy's 10% would
/// never eject one endpoint of three; NGINX has no cap (and then tries every endpoint). Half
/// ejects a failed endpoint of two or three, while a network blip that fails every endpoint at
/// once cannot empty the upstream.
pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 50;

/// Requests in a success-rate window, when `min_success_rate` is set: enough for the rate to
/// mean something (Envoy's `success_rate_request_volume`, 100).
pub const DEFAULT_SUCCESS_RATE_REQUESTS: u32 = 100;

// [upstream.health_check] — active checks, from the control plane, when the table is written.

/// NGINX Plus's `health_check interval` (5 s): a dead endpoint the passive rules have not seen
/// is found within `fall` intervals.
pub const DEFAULT_HEALTH_INTERVAL: Duration = secs(5);
/// Checking more often than this only loads the upstream.
pub const MIN_HEALTH_INTERVAL: Duration = ms(100);
/// A check's whole exchange must end within this (HAProxy's `timeout check` default is the
/// interval; one second is ample on a LAN and frees the prober sooner).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = secs(1);
/// Successes in a row that bring a down endpoint back (HAProxy's `rise`).
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Failures in a row that take an endpoint down (HAProxy's `fall`): one lost check is not a
/// dead endpoint.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// More than this many in a row is better written as a longer interval.
pub const MAX_HEALTH_RISE_FALL: u32 = 100;
/// The path checked.
pub const DEFAULT_HEALTH_PATH: &str = "/";
/// Statuses that pass: 2xx and 3xx, as NGINX Plus judges a check.
pub const DEFAULT_HEALTH_STATUSES: (u16, u16) = (200, 399);

// [upstream.limits] — circuit breaking, per upstream per shard.

/// Connections of one upstream busy or being opened, per shard. Far above what a shard serves
/// at once in normal operation (Envoy's 1024 per cluster trips under ordinary load at gateway
/// scale); what it bounds is the pile-up behind an upstream that stopped answering.
pub const DEFAULT_MAX_UPSTREAM_CONNECTIONS: u32 = 8192;
/// Requests waiting for a new connection, per shard.
pub const DEFAULT_MAX_PENDING: u32 = 8192;
/// Requests in flight to one upstream, per shard.
pub const DEFAULT_MAX_REQUESTS: u32 = 8192;
/// Retries in flight, per shard: a hard cap; the retry budget binds long before it.
pub const DEFAULT_MAX_RETRIES: u32 = 1024;
/// Retries at most 20% of the requests in flight (Envoy's `retry_budget.budget_percent`), so
/// one endpoint failing every request raises the upstream's attempts by at most a fifth.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u8 = 20;
/// ... and 3 at once in any case (Envoy's `min_retry_concurrency`), so light traffic retries.
pub const DEFAULT_RETRY_MIN_CONCURRENCY: u32 = 3;
/// The largest per-shard limit accepted.
pub const MAX_BREAKER_LIMIT: u32 = 1 << 24;

/// Idle keep-alive connections each shard keeps per endpoint. A pool smaller than the requests a
/// shard has in flight to an endpoint closes the excess after each request, and every request
/// beyond it pays a new connection: measured here, 64 per shard at 256 clients tripled coregate's
/// CPU per request (NGINX, whose `keepalive 64` is the same cache, did the same; HAProxy pools
/// without a cap). 1024 covers the concurrency of a busy shard; idle ones still go after
/// `idle_timeout`. `0` turns pooling off (one connection per request).
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 1024;
/// More idle connections per endpoint per shard than this only burdens the upstream.
pub const MAX_MAX_IDLE_PER_ENDPOINT: usize = 4096;

/// How long a pooled upstream connection may stay idle. NGINX's upstream `keepalive_timeout`.
/// Keep it below the upstream server's own idle timeout, or pooled connections are closed
/// under us and requests must be retried.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = secs(60);

/// Requests sent on one upstream connection before it is closed and replaced, to spread load
/// after upstream scaling and bound per-connection state. NGINX's `keepalive_requests` is 1000;
/// a proxy pooling per shard reuses connections harder, so 10000. `0` means unlimited.
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: Option<u32> = Some(10_000);

// ---------------------------------------------------------------------------------------------
// [[route]] retry

/// What a route retries unless told otherwise: a connect that failed (nothing was sent; any
/// method) and a reset or close before any response byte (idempotent requests only). That is
/// NGINX's `proxy_next_upstream error`. NGINX's default also names `timeout`; coregate does
/// not retry a response timeout by default, because a slow upstream asked twice is a slower
/// one (an outage amplified): add `"timeout"` to `retry.on` for NGINX's behaviour. `502`,
/// `503` and `504` from an upstream are passed on, as NGINX does by default.
pub const DEFAULT_RETRY_ON: RetryOn = RetryOn::CONNECT_FAILURE.with(RetryOn::RESET);
/// Retries per request: two, so a request survives two failed endpoints (NGINX tries every
/// endpoint; Envoy retries once when a policy is set).
pub const DEFAULT_RETRIES: u32 = 2;
/// The most retries a route may ask for (remembered endpoints, see `upstream::Tried`).
pub const MAX_RETRIES: u32 = 7;
/// Envoy's retry back-off base: 25 ms, doubled per retry, jittered.
pub const DEFAULT_RETRY_BACKOFF: Duration = ms(25);
/// Envoy's default ceiling, ten times the base.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = ms(250);

/// The retry policy of a route that writes none.
pub const DEFAULT_RETRY_POLICY: RetryPolicy = RetryPolicy {
    on: DEFAULT_RETRY_ON,
    retries: DEFAULT_RETRIES,
    non_idempotent: false,
    per_try_timeout: None,
    deadline: None,
    backoff: DEFAULT_RETRY_BACKOFF,
    max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
};

// ---------------------------------------------------------------------------------------------
// [[auth]]

/// Clock skew tolerated on a token's `exp` and `nbf`: a minute, as most JWT libraries allow.
pub const DEFAULT_JWT_LEEWAY: Duration = secs(crate::auth::jwt::DEFAULT_LEEWAY_SECONDS);
/// More leeway than this keeps expired tokens working for too long.
pub const MAX_JWT_LEEWAY: Duration = secs(60 * 60);

/// Verified tokens each shard remembers per policy, so a client reusing its token pays for the
/// signature check once (an RS256 check is about 20 µs, a cache hit 0.5 µs).
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = crate::auth::jwt::DEFAULT_TOKEN_CACHE_ENTRIES;
/// A bound on per-shard memory.
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 1 << 20;
/// Longest a verified token is answered from the cache (never past its `exp`): five minutes,
/// so a key removed from a JWKS file stops working soon after the reload that removes it.
pub const DEFAULT_TOKEN_CACHE_TTL: Duration =
    secs(crate::auth::jwt::DEFAULT_TOKEN_CACHE_TTL_SECONDS);
/// A day: a longer cache would outlive any key rotation.
pub const MAX_TOKEN_CACHE_TTL: Duration = secs(24 * 60 * 60);

// ---------------------------------------------------------------------------------------------
// [admin]

/// Where the admin listener binds when `[admin]` is written without `bind`: loopback only, on
/// Envoy's customary admin port. The admin API can reload the configuration and reveals it, so
/// it is never reachable from elsewhere unless the operator says so (with a token).
pub const DEFAULT_ADMIN_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);

/// Shortest bearer token accepted for the admin API: 16 characters make guessing hopeless
/// (a token is compared in constant time, so nothing leaks how much of a guess was right).
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// How long a reload waits for every shard to acknowledge the new configuration before it
/// reports the shards that did not. A shard builds its route table between two requests, which
/// takes milliseconds even for 10,000 routes.
pub const RELOAD_ACK_TIMEOUT: Duration = secs(5);

/// How long a metrics scrape waits for the shards' counters. A shard answers between two
/// scheduling passes, within a millisecond unless it is overloaded.
pub const COLLECT_TIMEOUT: Duration = secs(1);

// ---------------------------------------------------------------------------------------------
// [access_log]

/// JSON lines: one object per request, which log shippers parse without a pattern.
pub const DEFAULT_ACCESS_LOG_FORMAT: AccessLogFormat = AccessLogFormat::Json;

/// Bytes of log lines a shard gathers before handing them to the writer, as NGINX's
/// `access_log ... buffer=64k`. A handoff costs one queue push, so it happens a few times a
/// second under load rather than per request.
pub const DEFAULT_ACCESS_LOG_BUFFER: usize = 64 * KIB;
/// Smaller buffers mean a handoff every few requests.
pub const MIN_ACCESS_LOG_BUFFER: usize = 4 * KIB;
/// Larger buffers only delay lines and cost memory per shard.
pub const MAX_ACCESS_LOG_BUFFER: usize = 16 * MIB;

/// Longest a line waits in a shard's buffer when traffic is light, as NGINX's `flush=`.
pub const DEFAULT_ACCESS_LOG_FLUSH: Duration = secs(1);
/// Flushing more often than this is a handoff per request again.
pub const MIN_ACCESS_LOG_FLUSH: Duration = ms(10);
/// Lines older than a minute are no longer an access log one can follow.
pub const MAX_ACCESS_LOG_FLUSH: Duration = secs(60);

// ---------------------------------------------------------------------------------------------
// names

/// Longest listener, upstream or route name. Names appear in logs and metric labels.
pub const MAX_NAME_LEN: usize = 64;

/// Unnamed routes are called `route-1`, `route-2`, ... in file order.
pub const DEFAULT_ROUTE_NAME_PREFIX: &str = "route-";

/// `respond` without `body` answers with an empty body.
pub const DEFAULT_RESPOND_BODY: &str = "";

// [forwarding]

/// Fields that claim where a request came from or which path it asked for, beyond the
/// `X-Forwarded-*` trio coregate always replaces. Applications and frameworks believe them:
/// `X-Original-URL` and `X-Rewrite-URL` make IIS- and Symfony-style applications serve another
/// path than the one routed, the others name a client address or scheme. From a client that
/// is not a trusted proxy they are removed.
pub const DEFAULT_DROP_FROM_UNTRUSTED: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-original-url",
    "x-rewrite-url",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
];

/// `X-Forwarded-*` is what most upstreams read; `Forwarded` (RFC 7239) is written on request.
pub const DEFAULT_FORWARDED_HEADER: bool = false;
