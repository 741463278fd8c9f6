//! `ring_hash`: consistent hashing on a ring (Karger et al.; Envoy's `RING_HASH`), with bounded
//! load (Mirrokni et al., "Consistent Hashing with Bounded Loads").
//!
//! Each endpoint owns points on a ring of 64-bit hashes, as many as its share of the weights
//! (points hash the endpoint's address, so they do not depend on its place in the list, and
//! every shard and every restart builds the same ring). A key goes to the owner of the first
//! point at or after its hash. An endpoint that may not take the request (ejected, down, or
//! over its load bound) is skipped by walking on to the next point: that is exactly where its
//! keys would go on a ring without it, so health changes move only the keys of the endpoint
//! that changed, and the ring is never rebuilt for them.

use std::net::SocketAddr;

use crate::upstream::hash::{hash_bytes, mix};

/// Points on the ring per unit of weight (weights divided by their greatest common divisor):
/// enough that each endpoint's share is within about a tenth of its weight. The count does not
/// depend on the other endpoints, so adding or removing one leaves the others' points alone.
pub const POINTS_PER_WEIGHT: u64 = 160;
/// The most points a ring has (1 MiB of ring per upstream per shard); larger weight sums are
/// scaled down to fit.
pub const MAX_POINTS: u64 = 1 << 16;

/// The ring of one upstream.
#[derive(Debug)]
pub struct Ring {
    /// The points, ascending.
    points: Box<[u64]>,
    /// The endpoint owning each point.
    owners: Box<[u32]>,
    /// `buckets[b]`: the first point whose top `bits` bits are `b` or more, so a lookup
    /// searches only the few points of its bucket (about one per bucket), not the whole ring.
    buckets: Box<[u32]>,
    bits: u32,
    /// Bounded load: an endpoint takes a request only while its requests in flight stay within
    /// this percentage of the average (at least 100); `None` turns the bound off.
    balance_factor: Option<u32>,
}

/// The load of the endpoints, for the bound.
pub struct Load<'a> {
    /// Requests in flight per endpoint on this shard.
    pub in_flight: &'a dyn Fn(usize) -> u32,
    /// Requests in flight over the upstream on this shard.
    pub total: u32,
    /// Endpoints that may take requests.
    pub endpoints: u32,
}

impl Ring {
    /// The ring over `endpoints` with their `weights`.
    pub fn new(endpoints: &[SocketAddr], weights: &[u32], balance_factor: Option<u32>) -> Ring {
        let divisor = u64::from(weights.iter().copied().fold(0, gcd).max(1));
        let units: u64 = weights.iter().map(|&w| u64::from(w.max(1)) / divisor).sum();
        let wanted = units.max(1) * POINTS_PER_WEIGHT;
        let mut points = Vec::with_capacity(wanted.min(MAX_POINTS) as usize + endpoints.len());
        for (index, (addr, &weight)) in endpoints.iter().zip(weights).enumerate() {
            let own = (u64::from(weight.max(1)) / divisor).max(1) * POINTS_PER_WEIGHT;
            let share = if wanted > MAX_POINTS {
                (own * MAX_POINTS / wanted).max(1)
            } else {
                own
            };
            let base = hash_bytes(addr.to_string().as_bytes());
            for replica in 0..share {
                points.push((mix(base ^ mix(replica + 1)), index as u32));
            }
        }
        points.sort_unstable();
        let bits = (points.len().max(2).next_power_of_two().trailing_zeros()).min(20);
        let mut buckets = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0usize;
        for bucket in 0..(1u64 << bits) {
            let floor = bucket << (64 - bits);
            while at < points.len() && points[at].0 < floor {
                at += 1;
            }
            buckets.push(at as u32);
        }
        buckets.push(points.len() as u32);
        Ring {
            owners: points.iter().map(|&(_, owner)| owner).collect(),
            points: points.iter().map(|&(point, _)| point).collect(),
            buckets: buckets.into_boxed_slice(),
            bits,
            balance_factor,
        }
    }

    /// The position of the first point at or after `key` (the ring's length past the last).
    #[inline]
    fn position(&self, key: u64) -> usize {
        let bucket = (key >> (64 - self.bits)) as usize;
        let low = self.buckets[bucket] as usize;
        let high = self.buckets[bucket + 1] as usize;
        low + self.points[low..high].partition_point(|&point| point < key)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The endpoint for `key`: the owner of the first point at or after it that `ok` accepts
    /// and whose load is within the bound; if the bound refuses every one, the first that `ok`
    /// accepts.
    #[inline]
    pub fn pick(
        &self,
        key: u64,
        mut ok: impl FnMut(usize) -> bool,
        load: Option<&Load<'_>>,
    ) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let start = self.position(key);
        let capacity = match (self.balance_factor, load) {
            (Some(factor), Some(load)) => Some(capacity(factor, load)),
            _ => None,
        };
        let mut first_ok = None;
        for step in 0..len {
            let mut at = start + step;
            if at >= len {
                at -= len;
            }
            let index = self.owners[at] as usize;
            if !ok(index) {
                continue;
            }
            match (capacity, load) {
                (Some(capacity), Some(load)) if (load.in_flight)(index) >= capacity => {
                    first_ok.get_or_insert(index);
                }
                _ => return Some(index),
            }
        }
        first_ok
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The bound: `ceil(factor% x (requests in flight + this one) / endpoints)`.
fn capacity(factor: u32, load: &Load<'_>) -> u32 {
    let demand = u64::from(load.total + 1) * u64::from(factor);
    let per = u64::from(load.endpoints.max(1)) * 100;
    demand.div_ceil(per).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| {
                format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    fn owners(ring: &Ring, keys: usize, ok: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..keys as u64)
            .map(|k| ring.pick(hash_bytes(&k.to_le_bytes()), &ok, None).unwrap())
            .collect()
    }

    /// Removing one of N endpoints moves the keys it owned, about 1/N of them, and no other.
    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_the_keys() {
        for n in [5, 10, 50] {
            let endpoints = addrs(n);
            let full = Ring::new(&endpoints, &vec![1; n], None);
            let before = owners(&full, 20_000, |_| true);
            // Rebuilt without the last endpoint (the same addresses keep their points).
            let fewer = Ring::new(&endpoints[..n - 1], &vec![1; n - 1], None);
            let after = owners(&fewer, 20_000, |_| true);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let owned_by_removed = before.iter().filter(|&&o| o == n - 1).count();
            assert_eq!(moved, owned_by_removed, "n={n}: only its keys move");
            let share = moved as f64 / 20_000.0;
            let ideal = 1.0 / n as f64;
            assert!(
                share > ideal * 0.6 && share < ideal * 1.5,
                "n={n}: moved {share:.4}, ideal {ideal:.4}"
            );
            // Skipping it by health gives the same owners as the ring without it.
            let skipped = owners(&full, 20_000, |i| i != n - 1);
            assert_eq!(skipped, after, "n={n}: ejection is removal");
        }
    }

    #[test]
    fn the_bucket_index_finds_what_a_search_of_the_whole_ring_finds() {
        let ring = Ring::new(&addrs(37), &[1; 37], None);
        for k in 0..50_000u64 {
            let key = mix(k);
            let whole = ring.points.partition_point(|&point| point < key);
            assert_eq!(ring.position(key), whole);
        }
        assert_eq!(ring.position(u64::MAX), ring.points.len());
        assert_eq!(ring.position(0), 0);
    }

    #[test]
    fn shares_follow_weights() {
        let endpoints = addrs(3);
        let ring = Ring::new(&endpoints, &[2, 1, 1], None);
        let mut counts = [0usize; 3];
        for owner in owners(&ring, 40_000, |_| true) {
            counts[owner] += 1;
        }
        let share = counts[0] as f64 / 40_000.0;
        assert!((0.42..0.58).contains(&share), "{counts:?}");
    }

    #[test]
    fn the_load_bound_sends_a_hot_key_on_to_the_next_endpoint() {
        let endpoints = addrs(4);
        let ring = Ring::new(&endpoints, &[1; 4], Some(125));
        let key = hash_bytes(b"hot");
        let home = ring.pick(key, |_| true, None).unwrap();
        // Its home has 10 requests in flight, the others none: the bound is ceil(1.25*11/4) = 4.
        let in_flight = move |i: usize| if i == home { 10 } else { 0 };
        let load = Load {
            in_flight: &in_flight,
            total: 10,
            endpoints: 4,
        };
        let picked = ring.pick(key, |_| true, Some(&load)).unwrap();
        assert_ne!(picked, home);
        // Every endpoint over the bound: the home endpoint all the same.
        let full = |_: usize| 100;
        let load = Load {
            in_flight: &full,
            total: 10,
            endpoints: 4,
        };
        assert_eq!(ring.pick(key, |_| true, Some(&load)), Some(home));
    }
}
