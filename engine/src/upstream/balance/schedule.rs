//! A weighted rotation, laid out once: the order in which NGINX's smooth weighted round-robin
//! visits the endpoints, computed when the snapshot is built, so a pick is an index into it.
//!
//! With weights 5, 1, 1 the order is `a a b a c a a`, not `a a a a a b c`: heavy endpoints are
//! spread out, never served in bursts. The same table serves `random` and `least_request`:
//! a uniform index into it is a weight-proportional draw.

use std::cell::Cell;

/// The longest order kept: weights whose sum (after dividing by their greatest common divisor)
/// exceeds it are scaled down to fit, which rounds each share to within 1/65,536.
pub const MAX_ORDER: usize = 1 << 16;

/// The order of a weighted rotation and where this shard is in it.
#[derive(Debug)]
pub struct Schedule {
    order: Box<[u32]>,
    next: Cell<usize>,
}

impl Schedule {
    /// The rotation over endpoints of `weights` (each at least 1), starting at `start` so that
    /// shards do not all begin with the same endpoint.
    pub fn new(weights: &[u32], start: usize) -> Schedule {
        let order = smooth_order(&reduced(weights));
        let len = order.len().max(1);
        Schedule {
            order: order.into_boxed_slice(),
            next: Cell::new(start % len),
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The next endpoint in the rotation that `ok` accepts (at most one full turn).
    #[inline]
    pub fn next(&self, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let len = self.order.len();
        let start = self.next.get();
        for step in 0..len {
            let mut at = start + step;
            if at >= len {
                at -= len;
            }
            let index = self.order[at] as usize;
            if ok(index) {
                self.next.set(if at + 1 == len { 0 } else { at + 1 });
                return Some(index);
            }
        }
        None
    }

    /// The endpoint at a uniformly drawn position: a weight-proportional draw.
    #[inline]
    pub fn draw(&self, random: u64) -> usize {
        // Multiply-shift maps 64 random bits onto the length without a division.
        let at = ((u128::from(random) * self.order.len() as u128) >> 64) as usize;
        self.order[at] as usize
    }

    /// The first endpoint `ok` accepts, walking on from a uniformly drawn position.
    pub fn walk_from(&self, random: u64, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let len = self.order.len();
        let start = ((u128::from(random) * len as u128) >> 64) as usize;
        (0..len)
            .map(|step| self.order[(start + step) % len] as usize)
            .find(|&index| ok(index))
    }
}

/// The weights divided by their greatest common divisor, scaled down when their sum would make
/// the order longer than [`MAX_ORDER`].
fn reduced(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u32> = weights.iter().map(|w| (w / divisor).max(1)).collect();
    let sum: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
    if sum > MAX_ORDER as u64 {
        for w in &mut reduced {
            *w = ((u64::from(*w) * MAX_ORDER as u64 / sum) as u32).max(1);
        }
    }
    reduced
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// NGINX's smooth weighted round-robin, run for one full cycle: each step every endpoint gains
/// its weight, the one with the most credit is chosen and pays the total.
fn smooth_order(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut credit = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            credit[i] += i64::from(w);
            if credit[i] > credit[best] {
                best = i;
            }
        }
        credit[best] -= total;
        order.push(best as u32);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_rotate_in_turn_from_the_start() {
        let schedule = Schedule::new(&[1, 1, 1], 1);
        let picks: Vec<usize> = (0..6).filter_map(|_| schedule.next(|_| true)).collect();
        assert_eq!(picks, vec![1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn heavy_endpoints_are_spread_out_as_nginx_does() {
        let schedule = Schedule::new(&[5, 1, 1], 0);
        let picks: Vec<usize> = (0..7).filter_map(|_| schedule.next(|_| true)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn common_factors_do_not_lengthen_the_order() {
        assert_eq!(Schedule::new(&[20, 10, 10], 0).len(), 4);
    }

    #[test]
    fn refused_endpoints_are_skipped() {
        let schedule = Schedule::new(&[1, 1, 1], 0);
        let picks: Vec<usize> = (0..4).filter_map(|_| schedule.next(|i| i != 1)).collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
        assert_eq!(schedule.next(|_| false), None);
    }

    #[test]
    fn huge_weights_are_scaled_to_fit() {
        let weights = vec![100_000; 3];
        assert_eq!(
            Schedule::new(&weights, 0).len(),
            3,
            "reduced by the divisor"
        );
        let mixed = [65_536, 65_535, 3];
        let schedule = Schedule::new(&mixed, 0);
        assert!(schedule.len() <= MAX_ORDER + 3);
        let mut counts = [0usize; 3];
        for _ in 0..schedule.len() {
            counts[schedule.next(|_| true).unwrap()] += 1;
        }
        assert!(counts[2] >= 1, "every endpoint keeps a place: {counts:?}");
    }

    #[test]
    fn draws_follow_the_weights() {
        let schedule = Schedule::new(&[3, 1], 0);
        let mut counts = [0usize; 2];
        let mut x = 1u64;
        for _ in 0..40_000 {
            x = crate::upstream::hash::mix(x.wrapping_add(1));
            counts[schedule.draw(x)] += 1;
        }
        let share = counts[0] as f64 / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{counts:?}");
    }
}
