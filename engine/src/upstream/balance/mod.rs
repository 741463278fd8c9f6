//! Choosing an endpoint of an upstream for each request, per shard: each shard decides alone
//! from its own state (its rotation, its random numbers, its own requests in flight), so
//! nothing is shared between cores. A policy gets the request, so one that hashes can read a
//! header, a cookie or the client's address.
//!
//! | policy | file | a pick |
//! |---|---|---|
//! | `round_robin` | `schedule.rs` | the next endpoint of NGINX's smooth weighted rotation, laid out once |
//! | `least_request` | `schedule.rs` | two weighted draws, the one with fewer requests in flight on this shard (power of two choices, Envoy's `choice_count = 2`) |
//! | `random` | `schedule.rs` | one weighted draw |
//! | `ring_hash` | `ring.rs` | the owner of the key's point on a ring, with an optional load bound |
//! | `maglev` | `maglev.rs` | the entry of a 65,537-entry table, rebuilt off the request path |
//!
//! Every policy is built when the snapshot is built, from the configured weights, and takes a
//! predicate at pick time saying which endpoints may take this request (health, endpoints a
//! retry already tried, slow start): health is applied when choosing, not by rebuilding, except
//! for Maglev, whose table is rebuilt when the set of healthy endpoints changes. A pick
//! allocates nothing.

pub mod maglev;
pub mod ring;
pub mod schedule;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;

pub use maglev::Maglev;
pub use ring::Ring;
pub use schedule::Schedule;

use super::hash::{HashOn, mix};
use crate::request::RequestView;

/// The policies a configuration names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

impl Balance {
    pub const ALL: [Balance; 5] = [
        Balance::RoundRobin,
        Balance::LeastRequest,
        Balance::Random,
        Balance::RingHash,
        Balance::Maglev,
    ];

    /// The name the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequest => "least_request",
            Balance::Random => "random",
            Balance::RingHash => "ring_hash",
            Balance::Maglev => "maglev",
        }
    }

    /// Whether the policy hashes a key of the request (and so wants `hash_on`).
    pub fn hashes(self) -> bool {
        matches!(self, Balance::RingHash | Balance::Maglev)
    }
}

/// A policy as one shard runs it for one upstream.
pub enum Policy {
    RoundRobin(Schedule),
    LeastRequest(Schedule),
    Random(Schedule),
    RingHash {
        ring: Ring,
        on: HashOn,
    },
    Maglev {
        table: RefCell<Maglev>,
        on: HashOn,
        /// The health epoch the table was built for (see `UpstreamGroup::refresh`).
        built_for: Cell<u64>,
    },
}

/// What a hashing policy is built with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashing {
    pub on: HashOn,
    /// `ring_hash`'s load bound, a percentage of the average load (at least 100).
    pub balance_factor: Option<u32>,
}

impl Policy {
    /// Builds `balance` over `endpoints` with their `weights`; a rotation starts at `start`.
    pub fn build(
        balance: Balance,
        hashing: Option<&Hashing>,
        endpoints: &[SocketAddr],
        weights: &[u32],
        start: usize,
    ) -> Policy {
        let on = hashing.map_or(HashOn::ClientIp, |h| h.on.clone());
        match balance {
            Balance::RoundRobin => Policy::RoundRobin(Schedule::new(weights, start)),
            Balance::LeastRequest => Policy::LeastRequest(Schedule::new(weights, start)),
            Balance::Random => Policy::Random(Schedule::new(weights, start)),
            Balance::RingHash => Policy::RingHash {
                ring: Ring::new(endpoints, weights, hashing.and_then(|h| h.balance_factor)),
                on,
            },
            Balance::Maglev => Policy::Maglev {
                table: RefCell::new(Maglev::new(endpoints, weights)),
                on,
                built_for: Cell::new(0),
            },
        }
    }

    /// The key of `request`: its hash for hashing policies (a random number when it lacks the
    /// header or cookie), a random number for `random` and `least_request`, nothing for the
    /// rotation.
    #[inline]
    pub fn key(&self, request: &RequestView<'_>, rng: &Rng) -> u64 {
        match self {
            Policy::RingHash { on, .. } | Policy::Maglev { on, .. } => {
                on.key(request).unwrap_or_else(|| rng.next())
            }
            Policy::RoundRobin(_) => 0,
            Policy::Random(_) | Policy::LeastRequest(_) => rng.next(),
        }
    }

    /// The endpoint for `key` among those `ok` accepts; `in_flight` gives this shard's
    /// requests in flight per endpoint (least_request, and ring_hash's bound with `load`).
    #[inline]
    pub fn pick(
        &self,
        key: u64,
        rng: &Rng,
        mut ok: impl FnMut(usize) -> bool,
        weigh: &Weigh<'_>,
    ) -> Option<usize> {
        match self {
            Policy::RoundRobin(schedule) => schedule.next(ok),
            Policy::Random(schedule) => draw(schedule, key, rng, &mut ok),
            Policy::LeastRequest(schedule) => {
                let first = draw(schedule, key, rng, &mut ok)?;
                let second = draw(schedule, rng.next(), rng, |i| i != first && ok(i));
                Some(match second {
                    Some(second) if weigh.lighter(second, first) => second,
                    _ => first,
                })
            }
            Policy::RingHash { ring, .. } => {
                let load = ring::Load {
                    in_flight: weigh.in_flight,
                    total: weigh.total_in_flight,
                    endpoints: weigh.eligible,
                };
                ring.pick(key, ok, Some(&load))
            }
            Policy::Maglev { table, .. } => table.borrow().pick(key, ok),
        }
    }
}

/// A uniformly drawn (weight-proportional) endpoint `ok` accepts: up to four draws, then a walk
/// from a random place, so a pick stays cheap while most endpoints are fine and still finds the
/// last one standing.
#[inline]
fn draw(
    schedule: &Schedule,
    first: u64,
    rng: &Rng,
    mut ok: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let mut random = first;
    for _ in 0..DRAWS {
        let index = schedule.draw(random);
        if ok(index) {
            return Some(index);
        }
        random = rng.next();
    }
    schedule.walk_from(random, ok)
}

/// Draws tried before walking.
const DRAWS: usize = 4;

/// What `least_request` and a bounded ring compare: requests in flight on this shard.
pub struct Weigh<'a> {
    pub in_flight: &'a dyn Fn(usize) -> u32,
    pub weight: &'a dyn Fn(usize) -> u32,
    /// Requests in flight over the upstream on this shard.
    pub total_in_flight: u32,
    /// Endpoints that may take requests.
    pub eligible: u32,
}

impl Weigh<'_> {
    /// Whether `a` is less loaded than `b`, relative to their weights:
    /// `(in_flight(a) + 1) / weight(a) < (in_flight(b) + 1) / weight(b)`.
    #[inline]
    fn lighter(&self, a: usize, b: usize) -> bool {
        let load = |i: usize| u64::from((self.in_flight)(i)) + 1;
        let weight = |i: usize| u64::from((self.weight)(i).max(1));
        load(a) * weight(b) < load(b) * weight(a)
    }
}

/// A shard's random numbers for balancing (xorshift64*): fast, never shared, not secret.
#[derive(Debug)]
pub struct Rng {
    state: Cell<u64>,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: Cell::new(mix(seed) | 1),
        }
    }

    #[inline]
    pub fn next(&self) -> u64 {
        let mut x = self.state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `percent` / 100.
    #[inline]
    pub fn chance(&self, percent: u32) -> bool {
        percent >= 100 || (self.next() % 100) < u64::from(percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| format!("10.2.0.{}:80", i + 1).parse().unwrap())
            .collect()
    }

    #[test]
    fn least_request_prefers_the_endpoint_with_fewer_in_flight() {
        let policy = Policy::build(Balance::LeastRequest, None, &addrs(2), &[1, 1], 0);
        let rng = Rng::new(7);
        let in_flight = |i: usize| if i == 0 { 10 } else { 0 };
        let weight = |_: usize| 1;
        let weigh = Weigh {
            in_flight: &in_flight,
            weight: &weight,
            total_in_flight: 10,
            eligible: 2,
        };
        let picks: Vec<usize> = (0..100)
            .map(|_| policy.pick(rng.next(), &rng, |_| true, &weigh).unwrap())
            .collect();
        // The second draw excludes the first, so with two endpoints both are always compared.
        assert!(picks.iter().all(|&i| i == 1), "{picks:?}");
    }

    #[test]
    fn random_spreads_by_weight_and_skips_refused_endpoints() {
        let policy = Policy::build(Balance::Random, None, &addrs(3), &[1, 1, 2], 0);
        let rng = Rng::new(1);
        let none = |_: usize| 0;
        let one = |_: usize| 1;
        let weigh = Weigh {
            in_flight: &none,
            weight: &one,
            total_in_flight: 0,
            eligible: 3,
        };
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[policy.pick(rng.next(), &rng, |_| true, &weigh).unwrap()] += 1;
        }
        assert!((19_000..21_000).contains(&counts[2]), "{counts:?}");
        for _ in 0..1_000 {
            assert_eq!(policy.pick(rng.next(), &rng, |i| i == 1, &weigh), Some(1));
        }
        assert_eq!(policy.pick(rng.next(), &rng, |_| false, &weigh), None);
    }

    #[test]
    fn chance_is_about_right() {
        let rng = Rng::new(3);
        let hits = (0..10_000).filter(|_| rng.chance(30)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert!((0..100).all(|_| rng.chance(100)));
    }
}
