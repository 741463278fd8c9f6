//! `maglev`: Google's Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as Envoy
//! weights it.
//!
//! A table of [`TABLE_SIZE`] (a prime) entries, each naming an endpoint; a key goes to the
//! endpoint at `hash % TABLE_SIZE`, one load and no search. Each endpoint fills the table along
//! its own permutation (an offset and a skip from its address's hash), taking turns in
//! proportion to its weight, so each owns a share of the entries close to its weight, and
//! removing one of N endpoints moves a little more than 1/N of the keys.
//!
//! The table holds only the endpoints that may take requests; it is rebuilt when that set
//! changes, off the request path (when the shard applies a health verdict from the control
//! plane, or builds a snapshot). Until then, a key whose entry names an endpoint that may not
//! take the request is hashed again a few times ([`FALLBACK_PROBES`]), then walks the table.

use std::net::SocketAddr;

use crate::upstream::hash::{hash_bytes, mix};

/// Entries in the table: Envoy's default, a prime, so every skip visits every entry.
pub const TABLE_SIZE: usize = 65_537;

/// Further hashes of a key tried while the table still names an endpoint that left.
pub const FALLBACK_PROBES: u64 = 8;

/// The most endpoints a table can name (entries are 16 bits).
pub const MAX_ENDPOINTS: usize = u16::MAX as usize;

/// One upstream's Maglev table.
#[derive(Debug)]
pub struct Maglev {
    table: Box<[u16]>,
    /// Each endpoint's permutation: `(offset, skip)`.
    permutations: Box<[(u64, u64)]>,
    weights: Box<[u32]>,
}

impl Maglev {
    /// The table over `endpoints` with their `weights`, every endpoint included.
    pub fn new(endpoints: &[SocketAddr], weights: &[u32]) -> Maglev {
        debug_assert!(endpoints.len() <= MAX_ENDPOINTS);
        let permutations = endpoints
            .iter()
            .map(|addr| {
                let h = hash_bytes(addr.to_string().as_bytes());
                let offset = h % TABLE_SIZE as u64;
                let skip = mix(h ^ 0x5bd1_e995) % (TABLE_SIZE as u64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut maglev = Maglev {
            table: vec![0; TABLE_SIZE].into_boxed_slice(),
            permutations,
            weights: weights.iter().map(|&w| w.max(1)).collect(),
        };
        maglev.rebuild(|_| true);
        maglev
    }

    /// Fills the table with the endpoints `include` accepts (all of them when it accepts none).
    pub fn rebuild(&mut self, include: impl Fn(usize) -> bool) {
        let count = self.permutations.len();
        if count == 0 {
            return;
        }
        let mut members: Vec<usize> = (0..count).filter(|&i| include(i)).collect();
        if members.is_empty() {
            members = (0..count).collect();
        }
        let max_weight = members
            .iter()
            .map(|&i| u64::from(self.weights[i]))
            .max()
            .unwrap_or(1);
        const EMPTY: u16 = u16::MAX;
        self.table.fill(EMPTY);
        let mut next = vec![0u64; count];
        let mut credit = vec![0u64; count];
        let mut filled = 0;
        while filled < TABLE_SIZE {
            for &i in &members {
                credit[i] += u64::from(self.weights[i]);
                while credit[i] >= max_weight && filled < TABLE_SIZE {
                    credit[i] -= max_weight;
                    let (offset, skip) = self.permutations[i];
                    loop {
                        let slot = ((offset + next[i] * skip) % TABLE_SIZE as u64) as usize;
                        next[i] += 1;
                        if self.table[slot] == EMPTY {
                            self.table[slot] = i as u16;
                            filled += 1;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The endpoint for `key` that `ok` accepts.
    #[inline]
    pub fn pick(&self, key: u64, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let slot = |h: u64| ((u128::from(h) * TABLE_SIZE as u128) >> 64) as usize;
        let first = self.table[slot(key)] as usize;
        if ok(first) {
            return Some(first);
        }
        for probe in 1..=FALLBACK_PROBES {
            let index = self.table[slot(mix(key ^ probe))] as usize;
            if ok(index) {
                return Some(index);
            }
        }
        let start = slot(key);
        (0..TABLE_SIZE)
            .map(|step| self.table[(start + step) % TABLE_SIZE] as usize)
            .find(|&index| ok(index))
    }

    /// Entries each endpoint owns (for tests and the admin API).
    pub fn shares(&self) -> Vec<usize> {
        let mut shares = vec![0; self.permutations.len()];
        for &entry in self.table.iter() {
            if let Some(share) = shares.get_mut(entry as usize) {
                *share += 1;
            }
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| {
                format!("10.1.{}.{}:80", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    fn owners(maglev: &Maglev, keys: u64) -> Vec<usize> {
        (0..keys)
            .map(|k| maglev.pick(hash_bytes(&k.to_le_bytes()), |_| true).unwrap())
            .collect()
    }

    /// Removing one of N endpoints moves about 1/N of the keys (the paper: a little more).
    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_the_keys() {
        for n in [5, 10, 50] {
            let endpoints = addrs(n);
            let mut maglev = Maglev::new(&endpoints, &vec![1; n]);
            let before = owners(&maglev, 20_000);
            maglev.rebuild(|i| i != n - 1);
            let after = owners(&maglev, 20_000);
            assert!(after.iter().all(|&o| o != n - 1));
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let share = moved as f64 / 20_000.0;
            let ideal = 1.0 / n as f64;
            assert!(
                share > ideal * 0.7 && share < ideal * 2.0,
                "n={n}: moved {share:.4}, ideal {ideal:.4}"
            );
        }
    }

    #[test]
    fn equal_weights_own_equal_shares_and_weights_scale_them() {
        let maglev = Maglev::new(&addrs(3), &[1, 1, 1]);
        for share in maglev.shares() {
            assert!((21_800..=21_900).contains(&share), "{:?}", maglev.shares());
        }
        let weighted = Maglev::new(&addrs(3), &[2, 1, 1]);
        let shares = weighted.shares();
        assert!(shares[0] > 32_000 && shares[0] < 33_600, "{shares:?}");
    }

    #[test]
    fn a_refused_entry_falls_back_to_another_endpoint() {
        let maglev = Maglev::new(&addrs(4), &[1; 4]);
        for k in 0..1_000u64 {
            let key = hash_bytes(&k.to_le_bytes());
            let home = maglev.pick(key, |_| true).unwrap();
            let other = maglev.pick(key, |i| i != home).unwrap();
            assert_ne!(other, home);
        }
        assert_eq!(maglev.pick(1, |_| false), None);
    }
}
