//! Choosing an endpoint of an upstream group for each request, per shard: each shard decides
//! alone from its own state, so nothing is shared between cores. A policy gets the request, so
//! one that hashes can read a header, a cookie or the client's address.
//!
//! Round-robin is the one policy so far.

use std::cell::Cell;

use crate::request::RequestView;

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

    /// The index to use now, among `len` endpoints (`len` > 0); the request does not matter.
    pub fn pick(&self, len: usize, _request: &RequestView<'_>) -> usize {
        debug_assert!(len > 0);
        let index = self.next.get() % len;
        self.next.set(index + 1);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::context::Scheme;
    use crate::http1::Method;
    use crate::request::{Body, Fields};

    #[test]
    fn rotates_over_all_endpoints() {
        let request = RequestView {
            method: Method::Get,
            scheme: Scheme::Http,
            authority: b"example.com",
            path: b"/",
            query: None,
            fields: Fields::new(b"", &[]),
            body: Body::None,
            client: "192.0.2.1".parse().unwrap(),
        };
        let rr = RoundRobin::starting_at(1);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(3, &request)).collect();
        assert_eq!(picks, vec![1, 2, 0, 1, 2, 0]);
    }
}
