//! coregate's engine: a thread-per-core HTTP/1.1 reverse proxy on io_uring.
//!
//! Crate map, one line per module (lower modules never name higher ones):
//!
//! - [`error`]    one error type: kind, side at fault, retryable
//! - [`random`]   seeds from the kernel's random source
//! - [`host`]     what the machine offers, read from `/sys` and `/proc`: CPUs, SMT siblings, NUMA
//!   nodes, NICs and their interrupts, kernel settings and limits
//! - [`io`]       the only module touching sockets: the shard's own io_uring, buffers, the
//!   connection type every byte passes through (and its TLS record layer), cross-thread doorbells
//! - [`task`]     spawning shard-local tasks (told to the ring driver)
//! - [`event`]    a shard-local one-shot event (drain started)
//! - [`frame`]    pooled memory for the futures of exchanges in progress
//! - [`http1`]    sans-io HTTP/1.1: request/response heads, framing, chunked, head writing
//! - [`tls`]      TLS settings: certificates (PEM, checks), SNI choice, client certificates,
//!   session tickets, upstream TLS; each shard's rustls configs (pure: no I/O)
//! - [`context`]  what a client connection is besides its bytes: its listener, scheme, peer,
//!   and what its TLS handshake established
//! - [`request`]  the protocol-neutral request view route, admit and pick read
//! - [`router`]   host -> path -> method lookup and path normalisation, built per snapshot
//! - [`auth`]     API keys and JWT bearer tokens: identities, 401 / 403 outcomes, forwarded claims
//! - [`ratelimit`] per-core token counters: node-wide limits by key, shares rebalanced in the background
//! - [`upstream`] upstreams as a shard sees them: groups, endpoint health (passive outlier rules,
//!   verdicts applied), balancing policies, per-shard keep-alive pools, breakers and the retry
//!   rule
//! - [`metrics`]  per-shard counters and latency histogram, metric names, exposition
//! - [`access_log`] one line per request: captured fields, per-shard buffers, a writer thread
//! - [`config`]   TOML file -> raw structs -> validated, immutable [`config::Config`]; the plan
//! - [`snapshot`] what a configuration generation compiles into on one shard (read-only)
//! - [`shard`]    what one core mutates: its snapshot cell, pools, limiters, metrics, scratch,
//!   connection registry
//! - [`proxy`]    the request pipeline of one client connection, phase by phase
//! - [`listener`] a shard's accept loop: connection cap, back-off on EMFILE
//! - [`control`]  per-shard mailboxes, the only path between cores, and the control plane:
//!   reloads, collection, and upstream health (verdicts for every shard, active checks)
//! - [`preflight`] a plan held against the host (`coregate check --topology`): warnings, each
//!   saying what to change
//! - [`admin`]    the admin API on the control plane's threads: health, readiness, config, reload, metrics
//! - [`runtime`]  process shape: binds listeners, starts one pinned glommio executor per core and
//!   the control plane's threads; the only module that spawns threads
//!
//! The request flow, with the file of each step (phases are verbs; see [`proxy`]):
//!
//! ```text
//! listener::accept_loop        accept on the shard's SO_REUSEPORT socket, spawn a task with
//!                              the listener's context::ConnContext (a TLS listener's connection
//!                              starts its session with the snapshot's rustls config)
//! proxy::serve                 one task per connection; idle between requests (no buffer held);
//!                              after a second idle it parks (proxy/park.rs: no task, the ring's
//!                              completion revives it in a new one)
//!   handshake    proxy/handshake.rs   TLS listeners: the handshake over the ring (io/tls.rs),
//!                                     its facts into the context
//!   read_head    proxy/read_head.rs   receive into the connection buffer, http1::parse_request
//!   decide       proxy/decide.rs      build request::RequestView from the head, then:
//!     route      proxy/route.rs         router::normalize_path, RouteTable::lookup (400/404/405)
//!     admit      proxy/admit.rs         body size (413), auth (401/403), rate limit (429)
//!     pick       proxy/pick.rs          UpstreamGroup::pick(request) (upstream/mod.rs, balance/):
//!                                       health applied, breakers checked (503 at once)
//!     (head)     proxy/head.rs          write_request_head, synchronously, before any await
//!   forward      proxy/forward.rs     EndpointPool checkout or connect, head + body at hand in one
//!                                     write, the rest of the body, the response head
//!                                     (proxy/response.rs); each attempt's outcome counted for
//!                                     outlier detection; retries by the one rule
//!                                     (upstream/retry.rs), to another endpoint
//!   relay        proxy/relay.rs       response head + body to the client; give the connection back
//!   tunnel       proxy/upgrade.rs     after a 101: the connections joined
//!   respond      proxy/respond.rs     every answer coregate writes, and whether the connection stays
//!   record       proxy/record.rs      metrics and the access-log line, once per exchange
//! ```
//!
//! And the control plane, off the request path:
//!
//! ```text
//! runtime::Server::start          bind, start shards, wait for every shard's first ack
//! control::plane::ControlPlane    reload (validate, bind, Apply to every shard, await acks),
//!                                 collect (Collect to every shard, merge), TLS ticket keys
//!                                 (made, rotated, TicketKeys to every shard), shutdown
//! runtime::bootstrap::run_shard   a shard's mailbox loop: Shard::apply builds a Snapshot, swaps it;
//!                                 Shard::apply_health applies health verdicts
//! control::health::run            upstream health: shards' ejections confirmed or refused,
//!                                 ejections ended, active checks (control/probe.rs); verdicts
//!                                 pushed to every shard's mailbox
//! control::resolve::run           names with resolve_every resolved again; a change runs as
//!                                 the next generation (ControlPlane::amend, a reload's Apply)
//! admin::serve                    /healthz /readyz /config /reload /metrics /upstreams
//! runtime::handover               a successor process takes the listening sockets over
//!                                 (binary upgrade); runtime::notify tells systemd
//! access_log::run_writer          appends the shards' line buffers to the file
//! ```
//!
//! # How to add
//!
//! - **A load-balancing policy**: a file in `upstream/balance/` and a variant of `Policy`
//!   (`balance/mod.rs`): built from the endpoints and their weights when the snapshot is built
//!   (`Policy::build`), and at pick time given the request's key and a predicate saying which
//!   endpoints may take the request (health, retries). Its name in `Balance`, so the file
//!   accepts it; its settings beside `hash_on` in `config/validate/upstream.rs`. Nothing in
//!   `proxy/` changes.
//! - **A listener protocol**: TLS is the worked example. The listener's [`context::Scheme`]
//!   (set in `runtime/bootstrap.rs` from the listener's configuration) and the handshake's
//!   facts in `context.rs` (set by `proxy/handshake.rs`); the record layer (`io/tls.rs`)
//!   behind `io::Conn::recv` and `io::Conn::send` (`io/conn.rs`), the only places a
//!   connection's bytes pass; its settings validated in `config/validate/tls.rs` into
//!   [`tls::ListenerTls`] and compiled per shard into the snapshot (`snapshot.rs`).
//!   `x-forwarded-proto`, the access log and rate-limit keys read the context as they are.
//! - **A phase** (an access rule on a header, say): a function over the
//!   [`request::RequestView`] that returns `Result<_, Refusal>` in a file of its own under
//!   `proxy/`, called from `Session::decide` (`proxy/decide.rs`) in its place in the order;
//!   its settings compiled into the route's target in `snapshot.rs`. The refusal goes through
//!   `respond`, which writes it and decides about the connection.

pub mod access_log;
pub mod admin;
#[cfg(test)]
mod alloc_count;
pub mod auth;
pub mod config;
pub mod context;
pub mod control;
pub mod error;
pub mod event;
pub mod footprint;
pub mod frame;
pub mod host;
pub mod http1;
pub mod io;
pub mod listener;
pub mod metrics;
pub mod preflight;
pub mod proxy;
pub mod random;
pub mod ratelimit;
pub mod request;
pub mod router;
pub mod runtime;
pub mod shard;
pub mod snapshot;
pub mod task;
pub mod tls;
pub mod upstream;

pub use error::{Error, ErrorKind, Result, Side};
