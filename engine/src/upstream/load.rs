//! What one shard has under way with one upstream, and the limits on it: circuit breaking
//! (Envoy's `circuit_breakers`, per shard) and the retry budget.
//!
//! Owns [`Load`] (requests in flight, requests waiting for a new connection, connections busy
//! or being opened, retries in flight, and what was refused) and the settings that bound it
//! ([`Breakers`], [`RetryBudget`]). Counting is done by RAII guards, so a request abandoned
//! mid-way (its client left) gives its place back. Per shard and per upstream: no core asks
//! another, so each limit holds per shard, and the node-wide figure is the shard count times it.
//!
//! A request over a breaker is answered `503` at once, counted by breaker; a retry over the
//! budget is not made (the failure it would have retried is answered).

use std::cell::Cell;
use std::rc::Rc;

/// Per-shard limits of one upstream; a request over any of them is answered 503 at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breakers {
    /// Connections of this upstream busy with a request or being opened.
    pub max_connections: u32,
    /// Requests waiting for a new connection.
    pub max_pending: u32,
    /// Requests in flight.
    pub max_requests: u32,
    /// Retries in flight (retries of requests that were sent; see [`RetryBudget`]).
    pub max_retries: u32,
}

/// Retries at most `percent` percent of the requests in flight, and at least `min_concurrency`
/// at once (Envoy's `retry_budget`). Retries after a failed connect are not counted: nothing
/// was sent, so they cost no upstream any work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u8,
    pub min_concurrency: u32,
}

/// Which limit refused a request, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Overflow {
    Connections = 0,
    Pending,
    Requests,
    Retries,
    Budget,
}

impl Overflow {
    pub const COUNT: usize = 5;
    pub const ALL: [Overflow; Overflow::COUNT] = [
        Overflow::Connections,
        Overflow::Pending,
        Overflow::Requests,
        Overflow::Retries,
        Overflow::Budget,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Overflow::Connections => "max_connections",
            Overflow::Pending => "max_pending",
            Overflow::Requests => "max_requests",
            Overflow::Retries => "max_retries",
            Overflow::Budget => "retry_budget",
        }
    }
}

/// Counters of one upstream on one shard, kept across reloads.
#[derive(Debug, Default)]
pub struct Load {
    requests: Cell<u32>,
    pending: Cell<u32>,
    connections: Cell<u32>,
    retries: Cell<u32>,
    /// Requests refused (or retries not made), by [`Overflow`].
    overflows: Cell<[u64; Overflow::COUNT]>,
    /// Retries made.
    retried: Cell<u64>,
}

/// A copy of the counters, for collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub requests: u32,
    pub pending: u32,
    pub connections: u32,
    pub retries: u32,
    pub overflows: [u64; Overflow::COUNT],
    pub retried: u64,
}

impl Load {
    pub fn requests(&self) -> u32 {
        self.requests.get()
    }

    pub(super) fn request_started(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    pub(super) fn request_ended(&self) {
        self.requests.set(self.requests.get().saturating_sub(1));
    }

    /// Whether one more request may start.
    pub fn admits_request(&self, breakers: &Breakers) -> Result<(), Overflow> {
        self.check(
            self.requests.get() < breakers.max_requests,
            Overflow::Requests,
        )
    }

    /// A place for a request waiting for a new connection, and for that connection; `Err`
    /// when either limit is reached.
    pub fn connecting(self: &Rc<Self>, breakers: &Breakers) -> Result<Connecting, Overflow> {
        self.check(self.pending.get() < breakers.max_pending, Overflow::Pending)?;
        self.check(
            self.connections.get() < breakers.max_connections,
            Overflow::Connections,
        )?;
        self.pending.set(self.pending.get() + 1);
        self.connections.set(self.connections.get() + 1);
        Ok(Connecting {
            load: self.clone(),
            waiting: true,
        })
    }

    /// A busy pooled connection, counted until dropped.
    pub fn busy_connection(self: &Rc<Self>) -> Connecting {
        self.connections.set(self.connections.get() + 1);
        Connecting {
            load: self.clone(),
            waiting: false,
        }
    }

    /// A place for a retry of a request that was sent, within the breaker and the budget.
    pub fn retry(
        self: &Rc<Self>,
        breakers: &Breakers,
        budget: &RetryBudget,
    ) -> Result<Retrying, Overflow> {
        let retries = self.retries.get();
        self.check(retries < breakers.max_retries, Overflow::Retries)?;
        let allowed = (u64::from(self.requests.get()) * u64::from(budget.percent) / 100)
            .max(u64::from(budget.min_concurrency));
        self.check(u64::from(retries) < allowed, Overflow::Budget)?;
        self.retries.set(retries + 1);
        self.counted_retry();
        Ok(Retrying { load: self.clone() })
    }

    /// Counts a retry the budget does not limit (after a failed connect).
    pub fn counted_retry(&self) {
        self.retried.set(self.retried.get() + 1);
    }

    fn check(&self, ok: bool, overflow: Overflow) -> Result<(), Overflow> {
        if ok {
            return Ok(());
        }
        let mut overflows = self.overflows.get();
        overflows[overflow as usize] += 1;
        self.overflows.set(overflows);
        Err(overflow)
    }

    pub fn report(&self) -> LoadReport {
        LoadReport {
            requests: self.requests.get(),
            pending: self.pending.get(),
            connections: self.connections.get(),
            retries: self.retries.get(),
            overflows: self.overflows.get(),
            retried: self.retried.get(),
        }
    }
}

/// A connection being opened (and its request waiting), or a busy one: counted until dropped.
pub struct Connecting {
    load: Rc<Load>,
    waiting: bool,
}

impl Connecting {
    /// The connection is open: the request no longer waits (the connection stays counted).
    pub fn connected(&mut self) {
        if std::mem::replace(&mut self.waiting, false) {
            let pending = &self.load.pending;
            pending.set(pending.get().saturating_sub(1));
        }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.connected();
        let connections = &self.load.connections;
        connections.set(connections.get().saturating_sub(1));
    }
}

/// A retry in flight: counted until dropped.
pub struct Retrying {
    load: Rc<Load>,
}

impl Drop for Retrying {
    fn drop(&mut self) {
        let retries = &self.load.retries;
        retries.set(retries.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BREAKERS: Breakers = Breakers {
        max_connections: 2,
        max_pending: 1,
        max_requests: 10,
        max_retries: 100,
    };

    #[test]
    fn pending_and_connections_are_bounded_and_given_back() {
        let load = Rc::new(Load::default());
        let mut first = load.connecting(&BREAKERS).unwrap();
        assert_eq!(
            load.connecting(&BREAKERS).err(),
            Some(Overflow::Pending),
            "one waits already"
        );
        first.connected();
        let second = load.connecting(&BREAKERS).unwrap();
        drop(second);
        let _busy = load.busy_connection();
        assert_eq!(
            load.connecting(&BREAKERS).err(),
            Some(Overflow::Connections)
        );
        drop(first);
        assert!(load.connecting(&BREAKERS).is_ok());
        let report = load.report();
        assert_eq!(report.overflows[Overflow::Pending as usize], 1);
        assert_eq!(report.overflows[Overflow::Connections as usize], 1);
    }

    #[test]
    fn the_budget_allows_a_share_of_requests_and_a_minimum() {
        let load = Rc::new(Load::default());
        let budget = RetryBudget {
            percent: 20,
            min_concurrency: 3,
        };
        for _ in 0..20 {
            load.request_started();
        }
        // 20% of 20 is 4, above the minimum of 3.
        let held: Vec<Retrying> = (0..4)
            .map(|_| load.retry(&BREAKERS, &budget).unwrap())
            .collect();
        assert_eq!(load.retry(&BREAKERS, &budget).err(), Some(Overflow::Budget));
        drop(held);
        assert!(load.retry(&BREAKERS, &budget).is_ok());
        assert_eq!(load.report().retried, 5);
    }
}
