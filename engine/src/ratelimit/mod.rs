//! Per-core token counters: node-wide rate limits enforced by every shard on its own, without
//! sharing, locking or cross-core traffic per request.
//!
//! Owns the limit decision for a request (`check(key, now)`), the bounded per-shard key tables,
//! and both ends of the background share exchange that keeps the node-wide rate. It does no I/O
//! and reads no clock (callers pass `now`, nanoseconds on a monotonic clock with the same origin
//! on every shard); it holds no state shared between cores (a [`Limiter`] belongs to one
//! shard; the messages are plain values that `control` carries). It does not write responses:
//! the pipeline turns a [`Decision`] into a 429 with the header values built here.
//!
//! | file | owns |
//! |---|---|
//! | [`rate`] | the `"100/s"` grammar, [`Quota`] (rate + burst) and its integer parameters |
//! | [`gcra`] | the GCRA step on one key's theoretical arrival time |
//! | [`key`] | key kinds (`client_ip`, `header:NAME`, `identity`, `route`) and their keyed hash |
//! | `table` | the fixed-capacity key table: bounded probing, idle reuse, eviction |
//! | [`limiter`] | [`Limiter`]: one route's limit on one shard, its counters and its end of the exchange |
//! | [`header`] | `Retry-After`, `RateLimit-Policy` and `RateLimit` values |
//! | [`exchange`] | [`DemandReport`] and [`ShareUpdate`], the messages between shards and control plane |
//! | [`rebalance`] | [`SharePlan`]: the control plane's pure share computation (water-filling) |
//!
//! # Configuration this serves
//!
//! ```toml
//! [[route]]
//! rate_limit = { rate = "100/s", burst = 50, key = "header:x-api-key" }
//! ```
//!
//! `rate` is [`Rate::parse`], `burst` goes to [`Quota::new`] (omitted: [`default_burst`], the
//! rate's count), `key` is [`KeySpec::parse`] (omitted: `client_ip`, IPv6 by
//! [`DEFAULT_IPV6_PREFIX`] bits). A missing header or identity is the empty value: requests
//! without one share one bucket.
//!
//! # The request path
//!
//! ```text
//! let key = limiter.key_spec().key_for(peer_ip, header_value, identity);
//! match limiter.check(key, now) {
//!     Decision::Allowed { .. } => forward,
//!     limited => 429 with Retry-After: limited.retry_after(),
//!                RateLimit-Policy: limiter.policy_value(), RateLimit: limiter.rate_limit_value(&limited)
//! }
//! ```
//!
//! A check hashes the key (SipHash-1-3, one pass), reads at most one probe window of the table and updates one 32-byte
//! slot; it allocates nothing once the limiter is built (the tests prove it with a counting
//! allocator, the bench too).
//!
//! # Cost
//!
//! `cargo bench -p coregate-bench --bench ratelimit -- --warm-up-time 1 --measurement-time 3`,
//! on a 2-core VM shared with other builds (criterion medians, 2026-12-01; single figures move by
//! up to a fifth with the load, the ratios hold). A 27-byte `x-api-key` value, a table twice
//! the number of keys; the baseline is a `HashMap<String, (f64, Instant)>` token bucket:
//!
//! | check of a known key | 1,000 keys | 100,000 keys |
//! |---|---|---|
//! | `Limiter::check`, the same key again | 25.7 ns | 25.4 ns |
//! | `Limiter::check`, keys in scrambled order | 25.1 ns | 59.7 ns |
//! | naive map, the same key again | 20.7 ns | 20.8 ns |
//! | naive map, keys in scrambled order | 27.4 ns | 77.8 ns |
//!
//! Two thirds of a check is the keyed SipHash of the value, which the naive map pays too. On a
//! key that stays in cache the limiter costs 1.2x the naive map (epochs, share and report
//! bookkeeping); once the keys no longer fit the caches it is faster (0.77x at 100,000 keys:
//! one 32-byte slot per key against a map entry, a `String` and its heap block), and unlike the
//! map it never allocates, never grows and holds the node-wide rate.
//!
//! # Memory
//!
//! A limiter allocates [`memory_cap_bytes`]`(keys)` at construction and never more: 32 bytes per
//! key slot plus 56 KiB for the share table and the report list. The default of
//! [`DEFAULT_KEYS_PER_SHARD`] keys is [`DEFAULT_MEMORY_CAP_BYTES`] = 312 KiB per limiter per
//! shard. A flood of distinct keys reuses idle slots and then evicts the keys closest to idle
//! (counted in [`LimiterCounters::evictions`]); `proof.rs` sends a million distinct keys and
//! checks that nothing was allocated and a refused client stayed refused.
//!
//! # Node-wide limits
//!
//! The configured rate is for the node. Each shard starts with an even share (`rate / shards`,
//! and the same fraction of the burst) per key. Every [`DEFAULT_REBALANCE_INTERVAL_NANOS`]
//! (100 ms) the control plane should, per limiter:
//!
//! 1. ask every shard for [`Limiter::take_report`] (a bounded [`DemandReport`]: keys refused or
//!    busy in the interval, with attempts and admitted counts);
//! 2. compute `plan = plan.next(rate, &reports, elapsed_nanos)` ([`SharePlan::next`], pure,
//!    keeps the plan between rounds) and send shard `i` `plan.updates()[i]`;
//! 3. on each shard, [`Limiter::apply_shares`].
//!
//! Water-filling gives a key whose traffic lands on one shard the whole rate there, an even
//! split to one spread evenly, and to an uneven split what each side needs; shards without
//! demand keep a floor so traffic that moves there is served at once; keys no longer reported
//! decay back to even. `rebalance.rs` states the tolerance; `simulation.rs` proves it with a
//! simulated clock (2 and 4 shards, 10 s, rebalance every 100 ms).
//!
//! A route's limiter is rebuilt with each new config snapshot, which starts every key idle and
//! every share even; the control plane should start a new [`SharePlan`] for it at the same
//! time.

pub mod exchange;
pub mod gcra;
pub mod header;
pub mod key;
pub mod limiter;
pub mod rate;
pub mod rebalance;
mod table;

#[cfg(test)]
mod proof;
#[cfg(test)]
mod simulation;

pub use exchange::{DemandReport, KeyDemand, KeyShare, MAX_SHARED_KEYS, Share, ShareUpdate};
pub use header::{DEFAULT_POLICY_NAME, HeaderValue};
pub use key::{DEFAULT_IPV6_PREFIX, HashSeed, KeyHash, KeyHasher, KeySpec, LimitKey};
pub use limiter::{
    DEFAULT_MEMORY_CAP_BYTES, DEFAULT_REBALANCE_INTERVAL_NANOS, Decision, Limiter, LimiterCounters,
    LimiterSettings, REPORT_USAGE_PERCENT, memory_cap_bytes,
};
pub use rate::{Per, Quota, Rate, default_burst};
pub use rebalance::{FLOOR_PERCENT_OF_EVEN, SharePlan, water_fill};
pub use table::{DEFAULT_KEYS_PER_SHARD, MAX_KEYS_PER_SHARD, PROBE_WINDOW, SLOT_BYTES};

/// What every shard shares about rate limits, fixed for the process: the key hash seed (so
/// shards hash a key alike and their reports name the same keys) and the clock origin limiters
/// count nanoseconds from.
#[derive(Clone, Copy)]
pub struct LimitClock {
    pub seed: HashSeed,
    pub origin: std::time::Instant,
}

impl LimitClock {
    /// A fresh random seed and the clock now.
    pub fn new() -> LimitClock {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&crate::random::seed().to_ne_bytes());
        bytes[8..].copy_from_slice(&crate::random::seed().to_ne_bytes());
        LimitClock {
            seed: HashSeed::from_bytes(bytes),
            origin: std::time::Instant::now(),
        }
    }

    /// Nanoseconds from the origin to `now`: the time limiters count in.
    pub fn nanos(&self, now: std::time::Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos() as u64
    }
}

impl Default for LimitClock {
    fn default() -> LimitClock {
        LimitClock::new()
    }
}
