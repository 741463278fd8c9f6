//! Upstreams as one shard sees them: named groups of endpoints with their timeouts and policies,
//! each endpoint with the shard's own keep-alive pool and health, and the choice of endpoint
//! per request.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`UpstreamGroup`]: endpoints, policy, settings; the pick and the health view it reads |
//! | `balance/` | the balancing policies (round-robin, least request, random, ring hash, Maglev) |
//! | `hash.rs` | what hashing policies hash (header, cookie, client address) and the hash |
//! | `endpoint.rs` | one endpoint's pool, weight and [`EndpointState`] (ejection, down, slow start, in flight) |
//! | `outlier.rs` | passive detection: the rules that eject, and for how long |
//! | `health.rs` | the shard's health records, the verdicts and reports, active-check settings |
//! | `load.rs` | requests under way per upstream: circuit breakers and the retry budget |
//! | `retry.rs` | the retry rule |
//! | `pool.rs` | keep-alive connections to one endpoint |
//!
//! Pools and health records outlive configuration snapshots: [`Pools`] keeps one pool per
//! endpoint address (and, for a TLS upstream, per TLS settings: `tls::UpstreamTls::pool_key`) and [`HealthRecords`] one state per upstream and endpoint, and a new
//! snapshot that still names them gets the same ones back (no reconnect storm, no forgotten
//! ejection on reload).
//!
//! A pick applies health at the moment it chooses: endpoints ejected or down are skipped, unless
//! too few are left (below `panic_threshold` percent of the endpoints), when the group spreads
//! over all of them rather than overload the survivors (Envoy's panic mode). With no endpoint
//! left and panic mode off, the pick fails and the request is answered `503` with
//! `Retry-After`.

pub mod balance;
pub mod endpoint;
pub mod hash;
pub mod health;
pub mod load;
pub mod outlier;
pub mod pool;
pub mod retry;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use balance::{Balance, Hashing, Policy, Rng};
pub use endpoint::{Endpoint, EndpointState, InFlight, Standing};
pub use health::{Change, HealthCheck, HealthRecords, Report, UpstreamState, Verdict};
pub use load::{Breakers, Load, Overflow, RetryBudget};
pub use outlier::{Observed, OutlierSettings, Trip};
pub use pool::{Checkout, EndpointPool, PoolSettings, PoolStats, PoolTls};
pub use retry::{RetryOn, RetryPolicy};

use crate::request::RequestView;
use crate::tls::UpstreamTls;

/// How long each step of an exchange with an upstream may take.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTimeouts {
    /// To establish a connection.
    pub connect: Duration,
    /// From the request's last byte to the response head.
    pub response: Duration,
    /// For the next piece of either body to move.
    pub body: Duration,
}

/// An upstream's health and load settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub outlier: OutlierSettings,
    /// Below this percentage of endpoints available, picks spread over all (0: never; then no
    /// endpoint left means `503`).
    pub panic_threshold: u8,
    /// How long a returning (or added) endpoint takes to reach its full share; zero is off.
    pub slow_start: Duration,
    pub breakers: Breakers,
    pub retry_budget: RetryBudget,
}

/// The endpoint chosen for a request, and the request's key (a retry picks again from it).
#[derive(Clone, Copy, Debug)]
pub struct Choice {
    pub index: usize,
    pub key: u64,
}

/// No endpoint may take the request: every one is ejected or down and panic mode is off.
#[derive(Clone, Copy, Debug)]
pub struct Unavailable {
    /// When the first ejection ends, if any will.
    pub until: Option<Instant>,
}

/// Endpoints a request was already sent to (a retry goes elsewhere).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tried {
    indices: [u32; Tried::MAX],
    len: usize,
}

impl Tried {
    /// Endpoints remembered: more than any retry policy makes attempts.
    pub const MAX: usize = 8;

    pub fn add(&mut self, index: usize) {
        if self.len < Tried::MAX {
            self.indices[self.len] = index as u32;
            self.len += 1;
        }
    }

    #[inline]
    pub fn contains(&self, index: usize) -> bool {
        self.indices[..self.len].contains(&(index as u32))
    }
}

/// What the group knows of its endpoints' health, computed again when it may have changed.
#[derive(Clone, Copy, Debug)]
struct View {
    /// The records' epoch this view was computed at.
    epoch: u64,
    /// The view holds until this instant (the first ejection to end).
    until: Option<Instant>,
    available: u32,
    /// Too few available: spread over all.
    panic: bool,
}

/// One configured upstream, as built for one snapshot on one shard.
pub struct UpstreamGroup {
    pub name: Box<str>,
    endpoints: Vec<Endpoint>,
    pub timeouts: UpstreamTimeouts,
    pub settings: UpstreamSettings,
    policy: Policy,
    state: Rc<UpstreamState>,
    view: Cell<Option<View>>,
    rng: Rng,
}

impl UpstreamGroup {
    /// The group of `endpoints`, balanced by `balance` (a rotation starts at `shard_index`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Box<str>,
        endpoints: Vec<Endpoint>,
        timeouts: UpstreamTimeouts,
        balance: Balance,
        hashing: Option<&Hashing>,
        settings: UpstreamSettings,
        state: Rc<UpstreamState>,
        shard_index: usize,
    ) -> UpstreamGroup {
        debug_assert!(!endpoints.is_empty(), "validated configs have endpoints");
        let addrs: Vec<SocketAddr> = endpoints.iter().map(Endpoint::addr).collect();
        let weights: Vec<u32> = endpoints.iter().map(Endpoint::weight).collect();
        let policy = Policy::build(balance, hashing, &addrs, &weights, shard_index);
        let seed = crate::random::seed() ^ shard_index as u64;
        let group = UpstreamGroup {
            name,
            endpoints,
            timeouts,
            settings,
            policy,
            state,
            view: Cell::new(None),
            rng: Rng::new(seed),
        };
        group.refresh(Instant::now());
        group
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoint(&self, index: usize) -> &Endpoint {
        &self.endpoints[index]
    }

    pub fn load(&self) -> &Rc<Load> {
        &self.state.load
    }

    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    /// The endpoint for `request`. Policies that hash (a header, a cookie, the client's
    /// address) read the request; the others do not.
    #[inline]
    pub fn pick(&self, request: &RequestView<'_>, now: Instant) -> Result<Choice, Unavailable> {
        let view = self.view(now);
        if view.available == 0 && !view.panic {
            return Err(Unavailable { until: view.until });
        }
        let key = self.policy.key(request, &self.rng);
        match self.choose(key, &Tried::default(), view, now) {
            Some(index) => Ok(Choice { index, key }),
            None => Err(Unavailable { until: view.until }),
        }
    }

    /// Another endpoint for a retry: not one in `tried` (hashing policies walk on from the
    /// request's key, so a retried key still lands consistently).
    pub fn pick_again(&self, choice: &Choice, tried: &Tried, now: Instant) -> Option<usize> {
        let view = self.view(now);
        let key = match self.policy {
            Policy::RingHash { .. } | Policy::Maglev { .. } => choice.key,
            _ => self.rng.next(),
        };
        self.choose(key, tried, view, now)
    }

    /// The policy's choice among endpoints that may take the request; slow start thins an
    /// endpoint's share by skipping it at random (not for hashing policies, whose keys must
    /// stay put), and should that leave nothing, any endpoint that may take it.
    fn choose(&self, key: u64, tried: &Tried, view: View, now: Instant) -> Option<usize> {
        let endpoints = &self.endpoints;
        let may_take =
            |i: usize| !tried.contains(i) && (view.panic || endpoints[i].state().available(now));
        let slow_start = self.settings.slow_start;
        let thinned = !slow_start.is_zero()
            && !matches!(self.policy, Policy::RingHash { .. } | Policy::Maglev { .. });
        let in_flight = |i: usize| endpoints[i].state().in_flight();
        let weight = |i: usize| endpoints[i].weight();
        let weigh = balance::Weigh {
            in_flight: &in_flight,
            weight: &weight,
            total_in_flight: self.state.load.requests(),
            eligible: if view.panic {
                endpoints.len() as u32
            } else {
                view.available
            },
        };
        if thinned {
            let ramped = |i: usize| {
                may_take(i)
                    && self
                        .rng
                        .chance(endpoints[i].state().slow_start_percent(now, slow_start))
            };
            if let Some(index) = self.policy.pick(key, &self.rng, ramped, &weigh) {
                return Some(index);
            }
        }
        self.policy.pick(key, &self.rng, may_take, &weigh)
    }

    /// The health view at `now`, computed again when an endpoint's standing changed or an
    /// ejection ended since.
    #[inline]
    fn view(&self, now: Instant) -> View {
        match self.view.get() {
            Some(view)
                if view.epoch == self.state.epoch() && view.until.is_none_or(|t| now < t) =>
            {
                view
            }
            _ => {
                let view = self.compute_view(now);
                self.view.set(Some(view));
                view
            }
        }
    }

    fn compute_view(&self, now: Instant) -> View {
        let mut available = 0u32;
        let mut until: Option<Instant> = None;
        for endpoint in &self.endpoints {
            let state = endpoint.state();
            if state.available(now) {
                available += 1;
            } else if let Some(end) = state.ejected_until(now) {
                until = Some(until.map_or(end, |t| t.min(end)));
            }
        }
        let total = self.endpoints.len() as u64;
        let threshold = u64::from(self.settings.panic_threshold);
        View {
            epoch: self.state.epoch(),
            until,
            available,
            panic: threshold > 0 && u64::from(available) * 100 < threshold * total,
        }
    }

    /// Brings what the policy built up to date with the endpoints' health: Maglev's table is
    /// rebuilt over the endpoints that may take requests. Off the request path (when the shard
    /// applies a verdict or builds a snapshot); a table left stale meanwhile still answers,
    /// falling back past endpoints that left.
    pub fn refresh(&self, now: Instant) {
        let view = self.view(now);
        if let Policy::Maglev {
            table, built_for, ..
        } = &self.policy
            && built_for.get() != view.epoch
        {
            let endpoints = &self.endpoints;
            table
                .borrow_mut()
                .rebuild(|i| view.panic || endpoints[i].state().available(now));
            built_for.set(view.epoch);
        }
    }

    /// Counts an exchange's outcome with endpoint `index`. When it trips an outlier rule and
    /// the shard's view allows one more ejection (`max_ejection_percent`), the endpoint is
    /// ejected on this shard at once; the rule is returned for the shard to report to the
    /// control plane, which decides for every shard.
    pub fn observe(&self, index: usize, observed: Observed, now: Instant) -> Option<Trip> {
        let outlier = &self.settings.outlier;
        let state = self.endpoints.get(index)?.state();
        let trip = state.record(observed, outlier, now)?;
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.state().ejected_until(now).is_some())
            .count();
        if ejected >= outlier::max_ejected(outlier, self.endpoints.len()) {
            return None;
        }
        let length = outlier::ejection_time(outlier, state.ejections().saturating_add(1));
        state.trip(now + length);
        Some(trip)
    }
}

/// Every endpoint pool of one shard, by address and TLS settings (`None`: plain).
#[derive(Default)]
pub struct Pools {
    by_addr: HashMap<(SocketAddr, Option<Arc<str>>), Rc<EndpointPool>>,
}

impl Pools {
    /// The pool for `addr`, created if new, with `settings` applied either way.
    pub fn get_or_create(&mut self, addr: SocketAddr, settings: PoolSettings) -> Rc<EndpointPool> {
        self.get_or_create_tls(addr, settings, None)
    }

    /// The pool for `addr` with these TLS settings (connections made with other settings are
    /// never lent to it), created if new with the shard's own client configuration.
    pub fn get_or_create_tls(
        &mut self,
        addr: SocketAddr,
        settings: PoolSettings,
        tls: Option<&UpstreamTls>,
    ) -> Rc<EndpointPool> {
        let key = (addr, tls.map(|tls| tls.pool_key.clone()));
        let pool = self.by_addr.entry(key).or_insert_with(|| {
            let tls = tls.map(|tls| PoolTls {
                config: tls.client_config(),
                name: tls.server_name(addr),
            });
            EndpointPool::with_tls(addr, settings, tls)
        });
        if pool.settings() != settings {
            pool.set_settings(settings);
        }
        pool.clone()
    }

    /// Closes and forgets pools whose endpoint is not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&SocketAddr) -> bool) {
        self.retain_keyed(|addr, _| keep(addr));
    }

    /// Closes and forgets pools whose endpoint and TLS settings (`UpstreamTls::pool_key`) are
    /// not in `keep`.
    pub fn retain_keyed(&mut self, keep: impl Fn(&SocketAddr, Option<&str>) -> bool) {
        self.by_addr.retain(|(addr, tls), pool| {
            let kept = keep(addr, tls.as_deref());
            if !kept {
                pool.clear();
            }
            kept
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rc<EndpointPool>> {
        self.by_addr.values()
    }

    /// Closes every idle connection.
    pub fn clear_idle(&self) {
        for pool in self.by_addr.values() {
            pool.clear();
        }
    }
}

#[cfg(test)]
mod tests;
