//! Per-core token counters: node-wide rate limits enforced by every shard on its own, without
//! sharing, locking or cross-core traffic per request.
//!
//! Owns the limit decision for a request and its arithmetic. It does no I/O and reads no clock
//! (callers pass `now`, nanoseconds on a monotonic clock with the same origin on every shard);
//! it holds no state shared between cores.
//!
//! | file | owns |
//! |---|---|
//! | [`rate`] | the `"100/s"` grammar, [`Quota`] (rate + burst) and its integer parameters |
//! | [`gcra`] | the GCRA step on one key's theoretical arrival time |

pub mod gcra;
pub mod rate;

pub use rate::{Per, Quota, Rate, default_burst};
