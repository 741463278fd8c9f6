//! One route's limit on one shard: the call the pipeline makes per request, and the shard's end
//! of the share exchange.
//!
//! Owns the glue: a key's hash ([`super::key`]), its slot (`table.rs`), its share on this
//! shard (the local share table below), the GCRA step ([`super::gcra`]), the interval's demand
//! counts and the list of keys to report, and the counters for metrics. All of it is allocated
//! in [`Limiter::new`]; [`Limiter::check`] allocates nothing, reads no clock (the caller passes
//! `now`) and touches nothing outside this value, which belongs to one shard.
//!
//! # Per check
//!
//! 1. Hash the key (SipHash-1-3 over at most a header value's bytes).
//! 2. Find its slot, or give it one (an idle key's, an empty one, or by eviction).
//! 3. If the slot's counts are from an earlier report interval, zero them; if its share is from
//!    an earlier share update, look it up again (once per key per update).
//! 4. GCRA with the interval of the key's share on this shard.
//! 5. Count the attempt; the first time in an interval the key is refused or has used
//!    [`REPORT_USAGE_PERCENT`] of its local allowance, put it on the report list.
//!
//! # Per rebalance round (background)
//!
//! [`Limiter::take_report`] turns the list into a [`DemandReport`] and starts a new interval;
//! [`Limiter::apply_shares`] installs a [`ShareUpdate`]. Both are lazy towards the key table:
//! they bump an epoch instead of visiting every slot, so a round costs time in the number of
//! listed keys, not the table size.

use super::exchange::{DemandReport, KeyDemand, MAX_SHARED_KEYS, Share, ShareUpdate};
use super::gcra::{self, Verdict};
use super::header::{self, HeaderValue, PolicyName};
use super::key::{HashSeed, KeyHash, KeyHasher, KeySpec, LimitKey};
use super::rate::Quota;
use super::table::{KeyTable, Place, SLOT_BYTES, Slot};

/// How often the control plane is expected to collect reports and send shares, when the
/// configuration does not say. Also the interval the report threshold is measured against.
pub const DEFAULT_REBALANCE_INTERVAL_NANOS: u64 = 100_000_000;

/// A key goes on the report once it has used this percentage of what its local share allows in
/// one rebalance interval (or was refused). Lower reports more keys; higher lets more traffic go
/// unseen on shards with a small share (see the tolerance in `rebalance.rs`).
pub const REPORT_USAGE_PERCENT: u64 = 25;

/// An epoch value never current: slots carrying it are stale whatever the current epoch.
const STALE: u16 = u16::MAX;

/// A slot's share index meaning "the even split".
const EVEN: u16 = 0;

/// Bytes a limiter takes per shard with `keys_per_shard` keys, everything it allocates
/// included: the key table, the share table and the report list. Fixed at construction.
pub const fn memory_cap_bytes(keys_per_shard: usize) -> usize {
    let slots = super::table::slots_for(keys_per_shard);
    slots * SLOT_BYTES
        + SHARE_SLOTS * std::mem::size_of::<(u64, u16)>()
        + MAX_SHARED_KEYS * std::mem::size_of::<u64>()
        + MAX_SHARED_KEYS * std::mem::size_of::<Listed>()
}

/// The memory cap of a limiter with the default key count: 312 KiB per shard.
pub const DEFAULT_MEMORY_CAP_BYTES: usize = memory_cap_bytes(super::DEFAULT_KEYS_PER_SHARD);

/// Everything a shard needs to build a limiter for one route.
#[derive(Clone, Debug)]
pub struct LimiterSettings {
    /// The node-wide rate and burst.
    pub quota: Quota,
    pub key: KeySpec,
    /// Capacity of the key table ([`super::DEFAULT_KEYS_PER_SHARD`]).
    pub keys_per_shard: usize,
    /// Shards enforcing the limit together; each starts with `1 / shards` of the rate.
    pub shards: usize,
    /// [`DEFAULT_REBALANCE_INTERVAL_NANOS`] unless the control plane rebalances at another pace.
    pub rebalance_interval_nanos: u64,
    /// The name in the `RateLimit` fields (the route's name, say).
    pub policy_name: String,
}

impl LimiterSettings {
    /// Settings with every default.
    pub fn new(quota: Quota, key: KeySpec, shards: usize) -> LimiterSettings {
        LimiterSettings {
            quota,
            key,
            keys_per_shard: super::DEFAULT_KEYS_PER_SHARD,
            shards,
            rebalance_interval_nanos: DEFAULT_REBALANCE_INTERVAL_NANOS,
            policy_name: header::DEFAULT_POLICY_NAME.to_owned(),
        }
    }
}

/// What [`Limiter::check`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request.
    Allowed {
        /// Requests this shard would still admit at once for the key.
        remaining: u32,
        /// Nanoseconds until the key's full burst is back.
        reset_nanos: u64,
    },
    /// Answer 429.
    Limited {
        /// Nanoseconds until one request would be admitted.
        retry_after_nanos: u64,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The `Retry-After` value of a 429, `None` when allowed.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        match *self {
            Decision::Allowed { .. } => None,
            Decision::Limited { retry_after_nanos } => {
                Some(header::retry_after_value(retry_after_nanos))
            }
        }
    }
}

/// Counters for metrics, since the limiter was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterCounters {
    pub allowed: u64,
    pub limited: u64,
    /// Active keys that lost their state to make room (each restarts with a full burst).
    pub evictions: u64,
    /// Hot keys that did not fit a report (they keep the even split).
    pub unreported: u64,
}

/// A key on the report list: where it was and which key it was, in case the slot changed hands.
#[derive(Clone, Copy, Debug)]
struct Listed {
    index: u32,
    hash: u64,
}

/// This shard's shares of keys that do not have the even split, from the last update. Open
/// addressing over twice [`MAX_SHARED_KEYS`] slots, rebuilt by each update.
struct LocalShares {
    /// `(hash, index into intervals + 1)`; hash 0 = empty.
    slots: Box<[(u64, u16)]>,
    /// The emission interval on this shard of each listed key.
    intervals: Vec<u64>,
    epoch: u16,
}

const SHARE_SLOTS: usize = 2 * MAX_SHARED_KEYS;

impl LocalShares {
    fn new() -> LocalShares {
        LocalShares {
            slots: vec![(0, 0); SHARE_SLOTS].into_boxed_slice(),
            intervals: Vec::with_capacity(MAX_SHARED_KEYS),
            epoch: 0,
        }
    }

    fn lookup(&self, hash: KeyHash) -> u16 {
        let mask = SHARE_SLOTS - 1;
        let mut at = hash.get() as usize & mask;
        // At most half full, so an empty slot ends every search.
        loop {
            match self.slots[at] {
                (0, _) => return EVEN,
                (stored, index) if stored == hash.get() => return index,
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn replace(&mut self, update: &ShareUpdate, node_interval: u64) {
        self.slots.fill((0, 0));
        self.intervals.clear();
        let mask = SHARE_SLOTS - 1;
        for entry in update.shares.iter().take(MAX_SHARED_KEYS) {
            let hash = entry.key.get();
            let mut at = hash as usize & mask;
            while self.slots[at].0 != 0 && self.slots[at].0 != hash {
                at = (at + 1) & mask;
            }
            if self.slots[at].0 == hash {
                continue; // the first share given for a key counts
            }
            self.intervals.push(entry.share.interval(node_interval));
            self.slots[at] = (hash, self.intervals.len() as u16);
        }
    }

    #[inline]
    fn interval(&self, index: u16, even: u64) -> u64 {
        match index {
            EVEN => even,
            listed => self.intervals[usize::from(listed) - 1],
        }
    }
}

/// One route's rate limit on one shard.
pub struct Limiter {
    quota: Quota,
    key: KeySpec,
    ipv6_prefix: u8,
    hasher: KeyHasher,
    /// The node-wide emission interval and burst window.
    node_interval: u64,
    window: u64,
    /// The interval of the even split: `node_interval * shards`.
    even_interval: u64,
    /// `REPORT_USAGE_PERCENT * rebalance interval`, compared with `admitted * interval * 100`.
    hot_usage: u128,
    table: KeyTable,
    shares: LocalShares,
    /// The current report interval; slots with another epoch have stale counts.
    epoch: u16,
    listed: Vec<Listed>,
    policy: PolicyName,
    counters: LimiterCounters,
}

impl Limiter {
    /// Allocates everything the limiter will ever use (see [`memory_cap_bytes`]).
    pub fn new(settings: &LimiterSettings, seed: HashSeed) -> Limiter {
        let shards = settings.shards.max(1);
        let node_interval = settings.quota.rate().interval_nanos();
        let ipv6_prefix = match settings.key {
            KeySpec::ClientIp { ipv6_prefix } => ipv6_prefix,
            _ => super::key::DEFAULT_IPV6_PREFIX,
        };
        Limiter {
            quota: settings.quota,
            key: settings.key.clone(),
            ipv6_prefix,
            hasher: KeyHasher::new(seed),
            node_interval,
            window: settings.quota.window_nanos(),
            even_interval: Share::even(shards).interval(node_interval),
            hot_usage: u128::from(REPORT_USAGE_PERCENT)
                * u128::from(settings.rebalance_interval_nanos.max(1)),
            table: KeyTable::with_capacity(settings.keys_per_shard),
            shares: LocalShares::new(),
            epoch: 0,
            listed: Vec::with_capacity(MAX_SHARED_KEYS),
            policy: PolicyName::new(&settings.policy_name),
            counters: LimiterCounters::default(),
        }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// What the pipeline must hand over as the key ([`KeySpec::key_for`] builds it).
    pub fn key_spec(&self) -> &KeySpec {
        &self.key
    }

    /// The hash a key is stored and exchanged as.
    #[inline]
    pub fn hash(&self, key: LimitKey<'_>) -> KeyHash {
        self.hasher.hash(key, self.ipv6_prefix)
    }

    /// Decides one request. `now` is nanoseconds on a monotonic clock whose origin is the same
    /// on every shard. Allocates nothing.
    #[inline]
    pub fn check(&mut self, key: LimitKey<'_>, now: u64) -> Decision {
        let hash = self.hash(key);
        self.check_hash(hash, now)
    }

    /// [`Limiter::check`] for a key hashed already.
    pub fn check_hash(&mut self, hash: KeyHash, now: u64) -> Decision {
        let (index, place) = self.table.locate(hash, now);
        if place != Place::Known {
            if place == Place::Evicted {
                self.counters.evictions += 1;
            }
            *self.table.slot_mut(index) = Slot {
                hash: hash.get(),
                tat: 0,
                attempts: 0,
                admitted: 0,
                epoch: self.epoch,
                share_epoch: self.shares.epoch,
                share: self.shares.lookup(hash),
                listed: false,
            };
        }
        let slot = self.table.slot_mut(index);
        if slot.epoch != self.epoch {
            slot.epoch = self.epoch;
            slot.attempts = 0;
            slot.admitted = 0;
            slot.listed = false;
        }
        if slot.share_epoch != self.shares.epoch {
            slot.share_epoch = self.shares.epoch;
            slot.share = self.shares.lookup(hash);
        }
        let interval = self.shares.interval(slot.share, self.even_interval);
        slot.attempts = slot.attempts.saturating_add(1);
        let decision = match gcra::check(slot.tat, now, interval, self.window) {
            Verdict::Admit {
                tat,
                remaining,
                reset,
            } => {
                slot.tat = tat;
                slot.admitted = slot.admitted.saturating_add(1);
                self.counters.allowed += 1;
                Decision::Allowed {
                    remaining,
                    reset_nanos: reset,
                }
            }
            Verdict::Refuse { retry_after, .. } => {
                self.counters.limited += 1;
                Decision::Limited {
                    retry_after_nanos: retry_after,
                }
            }
        };
        if !slot.listed && is_hot(slot, interval, self.hot_usage) {
            slot.listed = true;
            if self.listed.len() < MAX_SHARED_KEYS {
                self.listed.push(Listed {
                    index: index as u32,
                    hash: hash.get(),
                });
            } else {
                self.counters.unreported += 1;
            }
        }
        decision
    }

    /// The demand since the previous report, and the start of a new report interval. Call it
    /// once per rebalance round, from the shard, in the background.
    pub fn take_report(&mut self) -> DemandReport {
        let mut report = DemandReport {
            keys: Vec::with_capacity(self.listed.len()),
            unlisted: 0,
        };
        self.take_report_into(&mut report);
        report
    }

    /// [`Limiter::take_report`] into a report whose vector is reused.
    pub fn take_report_into(&mut self, report: &mut DemandReport) {
        report.keys.clear();
        report.unlisted = 0;
        for listed in self.listed.drain(..) {
            let slot = self.table.slot_mut(listed.index as usize);
            // The slot may have gone to another key since, or the key listed twice (evicted
            // and back in the same slot): report each key once, with its current counts.
            if slot.hash != listed.hash || slot.epoch != self.epoch || slot.attempts == 0 {
                continue;
            }
            report.keys.push(KeyDemand {
                key: KeyHash::from_u64(slot.hash),
                attempts: slot.attempts,
                admitted: slot.admitted,
            });
            slot.attempts = 0;
            slot.admitted = 0;
        }
        report.unlisted = u32::try_from(self.counters.unreported).unwrap_or(u32::MAX);
        self.counters.unreported = 0;
        self.epoch = next_epoch(self.epoch);
        if self.epoch == 0 {
            // Wrapped: mark every slot stale so no old count looks current.
            for slot in self.table.slots_mut() {
                slot.epoch = STALE;
            }
        }
    }

    /// Installs this shard's shares from the control plane. Keys not in the update get the
    /// even split from now on.
    pub fn apply_shares(&mut self, update: &ShareUpdate) {
        self.shares.replace(update, self.node_interval);
        self.shares.epoch = next_epoch(self.shares.epoch);
        if self.shares.epoch == 0 {
            for slot in self.table.slots_mut() {
                slot.share_epoch = STALE;
            }
        }
    }

    /// The `RateLimit-Policy` value of this limit.
    pub fn policy_value(&self) -> HeaderValue {
        header::policy_value(&self.policy, self.quota)
    }

    /// The `RateLimit` value for a decision of this limiter.
    pub fn rate_limit_value(&self, decision: &Decision) -> HeaderValue {
        match *decision {
            Decision::Allowed {
                remaining,
                reset_nanos,
            } => header::rate_limit_value(&self.policy, remaining, reset_nanos),
            Decision::Limited { retry_after_nanos } => header::rate_limit_value(
                &self.policy,
                0,
                header::retry_after_seconds(retry_after_nanos) * super::rate::NANOS_PER_SECOND,
            ),
        }
    }

    pub fn counters(&self) -> LimiterCounters {
        self.counters
    }

    /// Slots in the key table.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Bytes this limiter allocated; constant for its lifetime.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
            + self.shares.slots.len() * std::mem::size_of::<(u64, u16)>()
            + self.shares.intervals.capacity() * std::mem::size_of::<u64>()
            + self.listed.capacity() * std::mem::size_of::<Listed>()
    }

    /// Keys whose state is not idle at `now`.
    pub fn active_keys(&self, now: u64) -> usize {
        self.table.active(now)
    }

    /// The interval a key has on this shard now (tests and diagnostics).
    pub fn interval_of(&self, key: KeyHash) -> u64 {
        match self.table.find(key) {
            Some(index) if self.table.slot(index).share_epoch == self.shares.epoch => self
                .shares
                .interval(self.table.slot(index).share, self.even_interval),
            _ => self
                .shares
                .interval(self.shares.lookup(key), self.even_interval),
        }
    }

    #[cfg(test)]
    fn set_epochs(&mut self, epoch: u16) {
        self.epoch = epoch;
        self.shares.epoch = epoch;
    }
}

/// Whether a key belongs on the report: refused at least once this interval, or admitted
/// [`REPORT_USAGE_PERCENT`] of what its share allows per rebalance interval.
#[inline]
fn is_hot(slot: &Slot, interval: u64, hot_usage: u128) -> bool {
    slot.attempts > slot.admitted
        || u128::from(slot.admitted) * u128::from(interval) * 100 >= hot_usage
}

const fn next_epoch(epoch: u16) -> u16 {
    let next = epoch.wrapping_add(1);
    if next == STALE { 0 } else { next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::exchange::KeyShare;
    use crate::ratelimit::rate::Rate;

    const SEED: HashSeed = HashSeed::new(11, 22);
    const MS: u64 = 1_000_000;

    fn limiter(rate: &str, burst: u32, shards: usize) -> Limiter {
        let quota = Quota::new(Rate::parse(rate).unwrap(), Some(burst)).unwrap();
        let mut settings =
            LimiterSettings::new(quota, KeySpec::parse("header:x-api-key").unwrap(), shards);
        settings.policy_name = "api".to_owned();
        Limiter::new(&settings, SEED)
    }

    #[test]
    fn a_single_shard_enforces_rate_and_burst() {
        let mut limiter = limiter("100/s", 5, 1);
        let key = LimitKey::Header(b"k1");
        let now = 1_000 * MS;
        let admitted = (0..10)
            .filter(|_| limiter.check(key, now).is_allowed())
            .count();
        assert_eq!(admitted, 5);
        assert!(!limiter.check(key, now + 9 * MS).is_allowed());
        assert!(limiter.check(key, now + 10 * MS).is_allowed());
        // Another key has its own bucket.
        assert!(limiter.check(LimitKey::Header(b"k2"), now).is_allowed());
        assert_eq!(
            limiter.counters(),
            LimiterCounters {
                allowed: 7,
                limited: 6,
                evictions: 0,
                unreported: 0
            }
        );
    }

    #[test]
    fn decisions_become_header_values() {
        let mut limiter = limiter("100/s", 2, 1);
        let key = LimitKey::Header(b"k");
        let first = limiter.check(key, 0);
        assert_eq!(
            first,
            Decision::Allowed {
                remaining: 1,
                reset_nanos: 10 * MS
            }
        );
        assert_eq!(limiter.rate_limit_value(&first), "\"api\";r=1;t=1");
        assert!(first.retry_after().is_none());
        limiter.check(key, 0);
        let refused = limiter.check(key, 0);
        assert_eq!(
            refused,
            Decision::Limited {
                retry_after_nanos: 10 * MS
            }
        );
        assert_eq!(refused.retry_after().unwrap(), "1");
        assert_eq!(limiter.rate_limit_value(&refused), "\"api\";r=0;t=1");
        assert_eq!(limiter.policy_value(), "\"api\";q=100;w=1");
    }

    #[test]
    fn shards_start_from_an_even_split_and_follow_updates() {
        let mut limiter = limiter("100/s", 10, 4);
        let key = limiter.hash(LimitKey::Header(b"k"));
        // A quarter of the rate and of the burst: 10 * 1/4 = 2.5, so 2 at once.
        assert_eq!(limiter.interval_of(key), 40 * MS);
        let at_once = (0..10)
            .filter(|_| limiter.check_hash(key, 0).is_allowed())
            .count();
        assert_eq!(at_once, 2);
        limiter.apply_shares(&ShareUpdate {
            shares: vec![KeyShare {
                key,
                share: Share::ONE,
            }],
        });
        assert_eq!(limiter.interval_of(key), 10 * MS);
        // The whole burst window at the whole rate: the key's TAT (80 ms ahead) leaves 2 more.
        let more = (0..10)
            .filter(|_| limiter.check_hash(key, 0).is_allowed())
            .count();
        assert_eq!(more, 2);
        // An update without the key returns it to the even split.
        limiter.apply_shares(&ShareUpdate::default());
        assert_eq!(limiter.interval_of(key), 40 * MS);
    }

    #[test]
    fn shares_reach_keys_that_arrive_after_the_update() {
        let mut limiter = limiter("100/s", 10, 4);
        let key = limiter.hash(LimitKey::Header(b"late"));
        limiter.apply_shares(&ShareUpdate {
            shares: vec![KeyShare {
                key,
                share: Share::from_ppm(25_000),
            }],
        });
        assert_eq!(limiter.interval_of(key), 400 * MS);
        // A floor share still admits an idle key once.
        assert!(limiter.check_hash(key, 0).is_allowed());
        assert!(!limiter.check_hash(key, 0).is_allowed());
    }

    #[test]
    fn reports_list_refused_and_busy_keys_once() {
        let mut limiter = limiter("100/s", 10, 2);
        let refused = limiter.hash(LimitKey::Header(b"refused"));
        let busy = limiter.hash(LimitKey::Header(b"busy"));
        let quiet = limiter.hash(LimitKey::Header(b"quiet"));
        // The even share is 50/s: 5 per 100 ms; 25% of that is 1.25, so 2 admitted is busy.
        for _ in 0..8 {
            limiter.check_hash(refused, 0);
        }
        limiter.check_hash(busy, 0);
        limiter.check_hash(busy, 30 * MS);
        limiter.check_hash(quiet, 0);
        let report = limiter.take_report();
        let mut keys: Vec<_> = report
            .keys
            .iter()
            .map(|d| (d.key, d.attempts, d.admitted))
            .collect();
        keys.sort();
        let mut expected = vec![(refused, 8, 5), (busy, 2, 2)];
        expected.sort();
        assert_eq!(keys, expected);
        // A new interval starts from zero.
        assert!(limiter.take_report().keys.is_empty());
        limiter.check_hash(quiet, 200 * MS);
        assert!(limiter.take_report().keys.is_empty());
    }

    #[test]
    fn epochs_wrap_without_reviving_old_counts() {
        let mut limiter = limiter("100/s", 10, 2);
        let key = limiter.hash(LimitKey::Header(b"k"));
        limiter.set_epochs(STALE - 1);
        for _ in 0..20 {
            limiter.check_hash(key, 0);
        }
        limiter.apply_shares(&ShareUpdate {
            shares: vec![KeyShare {
                key,
                share: Share::ONE,
            }],
        });
        assert_eq!(limiter.shares.epoch, 0);
        assert_eq!(limiter.interval_of(key), 10 * MS);
        assert_eq!(limiter.take_report().keys.len(), 1);
        assert_eq!(limiter.epoch, 0);
        // The slot's counts from epoch STALE - 1 are not those of epoch 0.
        assert!(limiter.table.slots_mut().iter().all(|s| s.epoch == STALE));
        limiter.check_hash(key, 1_000 * MS);
        let slot = limiter.table.slot(limiter.table.find(key).unwrap());
        assert_eq!((slot.attempts, slot.epoch), (1, 0));
    }

    #[test]
    fn memory_is_fixed_at_construction() {
        let limiter = limiter("100/s", 10, 2);
        assert_eq!(limiter.memory_bytes(), DEFAULT_MEMORY_CAP_BYTES);
        assert_eq!(DEFAULT_MEMORY_CAP_BYTES, 312 * 1024);
    }
}
