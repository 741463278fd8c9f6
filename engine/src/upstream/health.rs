//! A shard's side of upstream health: the records that outlive snapshots, and the messages
//! that carry health between a shard and the control plane.
//!
//! - [`HealthRecords`]: per upstream (by name), the [`EndpointState`] of each endpoint (by
//!   address) and the upstream's [`Load`]. A snapshot's groups share them; a reload keeps the
//!   records of upstreams and endpoints it still names, so ejections and counts survive it.
//! - [`Report`]: a shard to the control plane, when its own outcomes ejected an endpoint.
//! - [`Verdict`]: the control plane to every shard (through the mailboxes): an ejection with its
//!   end, its end, a refusal of a shard's ejection (`max_ejection_percent`), or the active
//!   check's finding. Every shard, the reporting one included, applies the same verdicts, so
//!   all agree within the time a mailbox takes (well under the 100 ms target).
//! - [`HealthCheck`]: what the control plane's active checks ask of each endpoint.
//!
//! Nothing here runs per request; the request path reads [`EndpointState`]s directly.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::endpoint::EndpointState;
use super::load::Load;
use super::outlier::Trip;

/// One upstream's health records on one shard.
#[derive(Debug)]
pub struct UpstreamState {
    /// Bumped by every change of an endpoint's standing.
    epoch: Rc<Cell<u64>>,
    endpoints: RefCell<HashMap<SocketAddr, Rc<EndpointState>>>,
    pub load: Rc<Load>,
}

impl UpstreamState {
    fn new() -> UpstreamState {
        UpstreamState {
            epoch: Rc::new(Cell::new(1)),
            endpoints: RefCell::new(HashMap::new()),
            load: Rc::new(Load::default()),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// The state of `addr`, made when new; a new endpoint of a known upstream starts its slow
    /// start at `added` (the first build of an upstream passes `None`: all start together).
    pub fn endpoint(&self, addr: SocketAddr, added: Option<Instant>) -> Rc<EndpointState> {
        self.endpoints
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| Rc::new(EndpointState::new(addr, self.epoch.clone(), added)))
            .clone()
    }

    fn get(&self, addr: SocketAddr) -> Option<Rc<EndpointState>> {
        self.endpoints.borrow().get(&addr).cloned()
    }

    fn is_empty(&self) -> bool {
        self.endpoints.borrow().is_empty()
    }
}

/// Every upstream's health records on one shard.
#[derive(Debug, Default)]
pub struct HealthRecords {
    upstreams: HashMap<Box<str>, Rc<UpstreamState>>,
}

impl HealthRecords {
    /// The records of upstream `name`, and whether they are new.
    pub fn upstream(&mut self, name: &str) -> (Rc<UpstreamState>, bool) {
        if let Some(state) = self.upstreams.get(name) {
            let fresh = state.is_empty();
            return (state.clone(), fresh);
        }
        let state = Rc::new(UpstreamState::new());
        self.upstreams.insert(name.into(), state.clone());
        (state, true)
    }

    /// Forgets upstreams and endpoints a configuration no longer names.
    pub fn retain(&mut self, keep: impl Fn(&str, &SocketAddr) -> bool) {
        self.upstreams.retain(|name, state| {
            state
                .endpoints
                .borrow_mut()
                .retain(|addr, _| keep(name, addr));
            !state.is_empty()
        });
    }

    /// Applies a verdict of the control plane; false when the shard does not know the endpoint
    /// (a reload removed it since).
    pub fn apply(&self, verdict: &Verdict, now: Instant) -> bool {
        let Some(state) = self
            .upstreams
            .get(&*verdict.upstream)
            .and_then(|upstream| upstream.get(verdict.endpoint))
        else {
            return false;
        };
        match verdict.change {
            Change::Ejected { until, ejections } => state.eject(until, ejections),
            Change::Returned => state.end_ejection(),
            Change::Refused => state.cancel_ejection(now),
            Change::Down => state.set_down(true, now),
            Change::Up => state.set_down(false, now),
        }
        true
    }
}

/// From a shard to the control plane: this shard's outcomes tripped `trip` and it ejected the
/// endpoint.
#[derive(Clone, Debug)]
pub struct Report {
    pub shard: usize,
    pub upstream: Box<str>,
    pub endpoint: SocketAddr,
    pub trip: Trip,
}

/// From the control plane to every shard.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub upstream: Box<str>,
    pub endpoint: SocketAddr,
    pub change: Change,
}

/// What a verdict says of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Out of rotation until `until`; its `ejections`-th ejection in a row.
    Ejected { until: Instant, ejections: u32 },
    /// Its ejection ended: back in rotation (with slow start).
    Returned,
    /// A shard's ejection that would take more than `max_ejection_percent` of the upstream's
    /// endpoints out: undone.
    Refused,
    /// The active check found it down (`fall` failures in a row).
    Down,
    /// The active check found it up again (`rise` successes in a row): back, with slow start.
    Up,
}

/// An upstream's active health check, run by the control plane against every endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path requested (`GET`).
    pub path: Box<str>,
    /// The `Host` sent; the endpoint's address when `None`.
    pub host: Option<Box<str>>,
    /// From the start of one check of an endpoint to the start of the next.
    pub interval: Duration,
    /// A check with no complete response head within this fails.
    pub timeout: Duration,
    /// Successes in a row that bring a down endpoint back.
    pub rise: u32,
    /// Failures in a row that take an endpoint down.
    pub fall: u32,
    /// Statuses that count as a success: inclusive ranges.
    pub statuses: Vec<(u16, u16)>,
}

impl HealthCheck {
    pub fn accepts(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }

    /// The statuses as the file writes them: `["200-399", "404"]`.
    pub fn statuses_text(&self) -> Vec<String> {
        self.statuses
            .iter()
            .map(|&(low, high)| {
                if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_reach_known_endpoints_only() {
        let mut records = HealthRecords::default();
        let (api, fresh) = records.upstream("api");
        assert!(fresh);
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let state = api.endpoint(addr, None);
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        let verdict = |endpoint, change| Verdict {
            upstream: "api".into(),
            endpoint,
            change,
        };
        assert!(records.apply(
            &verdict(
                addr,
                Change::Ejected {
                    until,
                    ejections: 2
                }
            ),
            now
        ));
        assert!(!state.available(now));
        assert_eq!(state.ejections(), 2);
        assert!(!records.apply(&verdict("10.0.0.2:80".parse().unwrap(), Change::Down), now));
        assert!(records.apply(&verdict(addr, Change::Returned), now));
        assert!(state.available(now));
        let (_, fresh) = records.upstream("api");
        assert!(!fresh, "known upstreams are not fresh");
        records.retain(|_, _| false);
        assert!(records.upstream("api").1, "forgotten");
    }

    #[test]
    fn statuses_are_ranges() {
        let check = HealthCheck {
            path: "/healthz".into(),
            host: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            statuses: vec![(200, 399), (418, 418)],
        };
        assert!(check.accepts(204) && check.accepts(418));
        assert!(!check.accepts(404) && !check.accepts(500));
        assert_eq!(check.statuses_text(), vec!["200-399", "418"]);
    }
}
