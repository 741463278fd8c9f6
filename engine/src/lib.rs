//! coregate's engine: a thread-per-core HTTP/1.1 reverse proxy on io_uring.
//!
//! Crate map, one line per module:
//!
//! - [`error`]  one error type: kind, side at fault, retryable
//! - [`config`] TOML file -> raw structs -> validated, immutable [`config::Config`]
//! - [`http1`]  sans-io HTTP/1.1: request/response head parsing, framing, chunked, head encoding
//! - [`router`] host -> method -> path lookup, built per snapshot

pub mod config;
pub mod control;
pub mod error;
pub mod event;
pub mod frame;
pub mod http1;
pub mod io;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod shard;
pub mod upstream;

pub use error::{Error, ErrorKind, Result, Side};
