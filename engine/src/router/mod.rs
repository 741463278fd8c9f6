//! Request routing: host, then method, then path. Built once per config snapshot, read-only on
//! the hot path.
pub mod normalize;
pub mod spec;

pub use normalize::{NormalizeError, Normalized, normalize_path};
pub use spec::{HostPattern, PathPattern};
