//! Choosing an endpoint of an upstream group for each request. Round-robin for now, per shard:
//! each shard rotates on its own, so no counter is shared between cores.

use std::cell::Cell;

/// Per-shard round-robin position over `len` endpoints.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Cell<usize>,
}

impl RoundRobin {
    /// Starts at `offset` so shards do not all begin with the first endpoint.
    pub fn starting_at(offset: usize) -> RoundRobin {
        RoundRobin {
            next: Cell::new(offset),
        }
    }

    /// The index to use now, among `len` endpoints (`len` > 0).
    pub fn pick(&self, len: usize) -> usize {
        debug_assert!(len > 0);
        let index = self.next.get() % len;
        self.next.set(index + 1);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_over_all_endpoints() {
        let rr = RoundRobin::starting_at(1);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(3)).collect();
        assert_eq!(picks, vec![1, 2, 0, 1, 2, 0]);
    }
}
