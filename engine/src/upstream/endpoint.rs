//! One endpoint of an upstream as one shard sees it: its keep-alive pool, its configured weight,
//! and its health ([`EndpointState`]): the shard's own outcome counts, the control plane's
//! verdicts (ejected until when, down by the active check), slow start after it returns, and
//! the shard's requests in flight to it.
//!
//! The state outlives snapshots (the shard's [`super::health::HealthRecords`] keeps it per
//! upstream and address), so a reload forgets no ejection. Everything is a `Cell`: one core
//! reads and writes it, between awaits, and nothing here allocates.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::load::Load;
use super::outlier::{Observed, OutlierSettings, Passive, Trip};
use super::pool::EndpointPool;

/// The lightest share an endpoint in slow start gets, in percent of its weight (Envoy's
/// `min_weight_percent`).
pub const SLOW_START_MIN_PERCENT: u32 = 10;

/// Where an endpoint stands, as the admin API and the metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Takes its full share.
    Serving,
    /// Back in rotation and ramping up its share.
    SlowStart,
    /// Out of rotation after passive detection, until its ejection ends.
    Ejected,
    /// Out of rotation: the active health check finds it down.
    Down,
}

impl Standing {
    pub fn label(self) -> &'static str {
        match self {
            Standing::Serving => "serving",
            Standing::SlowStart => "slow_start",
            Standing::Ejected => "ejected",
            Standing::Down => "down",
        }
    }
}

/// The health of one endpoint of one upstream on one shard.
#[derive(Debug)]
pub struct EndpointState {
    addr: SocketAddr,
    ejected_until: Cell<Option<Instant>>,
    /// Ejections in a row, as the control plane counts them (the next one lasts longer).
    ejections: Cell<u32>,
    /// The active health check finds it down.
    down: Cell<bool>,
    /// When it last came back (or was added on a reload): slow start runs from here. May lie
    /// in the future: the end of the ejection in progress.
    returned_at: Cell<Option<Instant>>,
    passive: Cell<Passive>,
    in_flight: Cell<u32>,
    /// Ejections this shard made itself (outcomes that tripped a rule).
    trips: Cell<u64>,
    /// Shared by every endpoint of the upstream, bumped by every change of standing, so the
    /// upstream's groups know to look again (see `UpstreamGroup::refresh`).
    epoch: Rc<Cell<u64>>,
}

impl EndpointState {
    pub fn new(addr: SocketAddr, epoch: Rc<Cell<u64>>, returned_at: Option<Instant>) -> Self {
        EndpointState {
            addr,
            ejected_until: Cell::new(None),
            ejections: Cell::new(0),
            down: Cell::new(false),
            returned_at: Cell::new(returned_at),
            passive: Cell::new(Passive::default()),
            in_flight: Cell::new(0),
            trips: Cell::new(0),
            epoch,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it may take requests at `now`: not ejected, not down.
    #[inline]
    pub fn available(&self, now: Instant) -> bool {
        !self.down.get() && self.ejected_until.get().is_none_or(|until| now >= until)
    }

    /// When its ejection ends, if it is ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.get().filter(|&until| now < until)
    }

    pub fn is_down(&self) -> bool {
        self.down.get()
    }

    pub fn ejections(&self) -> u32 {
        self.ejections.get()
    }

    pub fn trips(&self) -> u64 {
        self.trips.get()
    }

    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// Its share in percent of its weight at `now`: ramping from [`SLOW_START_MIN_PERCENT`]
    /// to 100 over `window` after it returned.
    #[inline]
    pub fn slow_start_percent(&self, now: Instant, window: Duration) -> u32 {
        let Some(since) = self.returned_at.get() else {
            return 100;
        };
        if window.is_zero() || now < since {
            return 100;
        }
        let elapsed = now - since;
        if elapsed >= window {
            return 100;
        }
        let percent = (elapsed.as_micros() * 100 / window.as_micros().max(1)) as u32;
        percent.max(SLOW_START_MIN_PERCENT)
    }

    pub fn standing(&self, now: Instant, slow_start: Duration) -> Standing {
        if self.down.get() {
            Standing::Down
        } else if self.ejected_until(now).is_some() {
            Standing::Ejected
        } else if self.slow_start_percent(now, slow_start) < 100 {
            Standing::SlowStart
        } else {
            Standing::Serving
        }
    }

    /// Counts one outcome; returns the rule it tripped. An endpoint already out of rotation
    /// counts nothing (requests that were under way when it left).
    pub fn record(
        &self,
        observed: Observed,
        settings: &OutlierSettings,
        now: Instant,
    ) -> Option<Trip> {
        if !self.available(now) {
            return None;
        }
        let mut passive = self.passive.get();
        let tripped = passive.record(observed, settings);
        self.passive.set(passive);
        tripped
    }

    /// Out of rotation until `until`; slow start runs from then.
    pub fn eject(&self, until: Instant, ejections: u32) {
        self.ejected_until.set(Some(until));
        self.ejections.set(ejections);
        self.returned_at.set(Some(until));
        self.changed();
    }

    /// Ejected by this shard's own outcomes, until the control plane's verdict.
    pub fn trip(&self, until: Instant) {
        self.trips.set(self.trips.get() + 1);
        let ejections = self.ejections.get();
        self.eject(until, ejections.saturating_add(1));
    }

    /// Back in rotation: its ejection ended.
    pub fn end_ejection(&self) {
        self.ejected_until.set(None);
        self.changed();
    }

    /// An ejection this shard made that the control plane did not confirm: back at once, with
    /// no slow start.
    pub fn cancel_ejection(&self, now: Instant) {
        self.ejected_until.set(None);
        if self.returned_at.get().is_some_and(|at| at > now) {
            self.returned_at.set(None);
        }
        self.changed();
    }

    /// The active health check's verdict; coming back up starts slow start at `now`.
    pub fn set_down(&self, down: bool, now: Instant) {
        if self.down.replace(down) != down {
            if !down {
                self.returned_at.set(Some(now));
            }
            self.changed();
        }
    }

    fn changed(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
    }
}

/// One endpoint of a group: its pool, health and weight.
#[derive(Clone)]
pub struct Endpoint {
    pool: Rc<EndpointPool>,
    state: Rc<EndpointState>,
    weight: u32,
}

impl Endpoint {
    pub fn new(pool: Rc<EndpointPool>, state: Rc<EndpointState>, weight: u32) -> Endpoint {
        Endpoint {
            pool,
            state,
            weight: weight.max(1),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.pool.addr()
    }

    pub fn pool(&self) -> &Rc<EndpointPool> {
        &self.pool
    }

    pub fn state(&self) -> &Rc<EndpointState> {
        &self.state
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Counts a request in flight to this endpoint (and its upstream) until dropped.
    pub fn start(&self, load: &Rc<Load>) -> InFlight {
        self.state.in_flight.set(self.state.in_flight.get() + 1);
        load.request_started();
        InFlight {
            state: self.state.clone(),
            load: load.clone(),
        }
    }
}

/// A request in flight to an endpoint: counted while it lives (least_request reads the count).
pub struct InFlight {
    state: Rc<EndpointState>,
    load: Rc<Load>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.state;
        state.in_flight.set(state.in_flight.get().saturating_sub(1));
        self.load.request_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> EndpointState {
        EndpointState::new("10.0.0.1:80".parse().unwrap(), Rc::new(Cell::new(0)), None)
    }

    #[test]
    fn an_ejection_ends_by_itself_and_slow_start_follows() {
        let state = state();
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        state.eject(until, 1);
        assert!(!state.available(now));
        assert!(state.available(until));
        let window = Duration::from_secs(20);
        assert_eq!(state.standing(now, window), Standing::Ejected);
        assert_eq!(
            state.slow_start_percent(until, window),
            SLOW_START_MIN_PERCENT
        );
        assert_eq!(
            state.slow_start_percent(until + Duration::from_secs(10), window),
            50
        );
        assert_eq!(
            state.standing(until + Duration::from_secs(10), window),
            Standing::SlowStart
        );
        assert_eq!(
            state.standing(until + Duration::from_secs(20), window),
            Standing::Serving
        );
    }

    #[test]
    fn a_cancelled_ejection_returns_at_full_weight() {
        let state = state();
        let now = Instant::now();
        state.trip(now + Duration::from_secs(10));
        assert_eq!(state.ejections(), 1);
        state.cancel_ejection(now);
        assert!(state.available(now));
        assert_eq!(state.slow_start_percent(now, Duration::from_secs(30)), 100);
    }

    #[test]
    fn every_change_bumps_the_epoch() {
        let epoch = Rc::new(Cell::new(0));
        let state = EndpointState::new("10.0.0.1:80".parse().unwrap(), epoch.clone(), None);
        let now = Instant::now();
        state.set_down(true, now);
        state.set_down(true, now);
        assert_eq!(epoch.get(), 1, "no change, no bump");
        state.set_down(false, now);
        state.eject(now, 1);
        state.end_ejection();
        assert_eq!(epoch.get(), 4);
    }
}
