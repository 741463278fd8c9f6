//! HTTP/1.x as bytes in, offsets out: no I/O, no allocation.
pub mod method;

pub use method::{Method, MethodSet};
