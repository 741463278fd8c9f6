//! Request routing: host, then method, then path. Built once per config snapshot, read-only on
//! the hot path.
pub mod spec;

pub use spec::{HostPattern, PathPattern};
