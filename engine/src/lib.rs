//! coregate's engine: a thread-per-core HTTP/1.1 reverse proxy on io_uring.
//!
//! Crate map, one line per module:
//!
//! - [`error`]    one error type: kind, side at fault, retryable
//! - [`auth`]     API keys and JWT bearer tokens: identities, 401 / 403 outcomes, forwarded claims
//! - [`config`]   TOML file -> raw structs -> validated, immutable [`config::Config`]; the plan
//! - [`runtime`]  process shape: binds listeners, starts one pinned glommio executor per core and
//!   the control plane (reload, collection, drain); the only module that spawns threads
//! - [`control`]  per-shard mailboxes, the only path between cores
//! - [`shard`]    everything one core owns: snapshot (routes, upstreams), pools, metrics, scratch
//! - [`listener`] a shard's accept loop: connection cap, back-off on EMFILE
//! - [`io`]       the only module touching sockets: the shard's own io_uring, or glommio's
//!   `TcpStream`; buffers; cross-thread doorbells
//! - [`frame`]    pooled memory for the futures of exchanges in progress
//! - [`http1`]    sans-io HTTP/1.1: request/response heads, framing, chunked, head writing
//! - [`router`]   host -> path -> method lookup and path normalisation, built per snapshot
//! - [`proxy`]    the request pipeline of one client connection, and body relays
//! - [`ratelimit`] per-core token counters: node-wide limits by key, shares rebalanced in the background
//! - [`upstream`] per-shard keep-alive pools per endpoint, endpoint choice
//! - [`metrics`]  per-shard counters and latency histogram, metric names
//! - [`event`]    a shard-local one-shot event (drain started)
//! - [`access_log`] one line per request: per-shard buffers, a writer thread, JSON or combined
//! - [`admin`]    the admin API on the control plane's thread: health, readiness, config, reload, metrics
//!
//! The request flow, with the file of each step:
//!
//! ```text
//! listener::accept_loop          accept on the shard's SO_REUSEPORT socket, spawn a task
//! proxy::serve                   idle wait for the next request (no buffer held)
//!   proxy::Session::read_head    receive into the connection buffer, http1::parse_request
//!   proxy::Session::decide       router::normalize_path, RouteTable::lookup, limits,
//!                                proxy::forward::write_request_head (synchronous)
//!   proxy::Session::forward      upstream::EndpointPool checkout, send head + body at hand,
//!                                proxy::relay the rest of the body
//!   proxy::Session::read_response  http1::parse_response, forward::write_response_head
//!   proxy::relay                 response body by length / chunked / until close
//!   EndpointPool::give_back      after a clean exchange; the client connection loops
//!   proxy::Session::record       metrics and the access-log line, once per exchange
//! proxy::respond                 every early exit (4xx/5xx) in one format
//! ```
//!
//! And the control plane, off the request path:
//!
//! ```text
//! runtime::Server::start         bind, start shards, wait for every shard's first ack
//! control::plane::ControlPlane   reload (validate, bind, Apply to every shard, await acks),
//!                                collect (Collect to every shard, merge), shutdown
//! runtime::bootstrap::run_shard  a shard's mailbox loop: Shard::apply swaps the snapshot
//! admin::serve                   /healthz /readyz /config /reload /metrics
//! access_log::run_writer         appends the shards' line buffers to the file
//! ```

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
pub mod frame;
pub mod http1;
pub mod io;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod random;
pub mod ratelimit;
pub mod request;
pub mod router;
pub mod runtime;
pub mod shard;
pub mod snapshot;
pub mod task;
pub mod upstream;

pub use error::{Error, ErrorKind, Result, Side};
