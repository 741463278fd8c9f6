//! Passive outlier detection: the rules that turn one shard's outcomes with an endpoint into an
//! ejection, and how long an ejection lasts.
//!
//! Owns [`OutlierSettings`] and the per-endpoint counters ([`Passive`]); pure, no clock, no
//! I/O. Each shard counts its own outcomes (nothing is shared between cores); the shard that
//! trips a rule ejects the endpoint at once and reports it, and the control plane decides for
//! every shard (`control::health`): whether the ejection stands (`max_ejection_percent`) and
//! for how long ([`ejection_time`]).
//!
//! What counts:
//! - a *gateway failure*: the connection could not be made (refused, unreachable, timed out),
//!   or a fresh connection was reset or closed before any response byte, or no response head
//!   came in time. A pooled connection the upstream had closed while it idled is not counted:
//!   that is keep-alive's ordinary race, not a sick endpoint.
//! - a *5xx*: the upstream answered with a status of 500 or more.
//! - anything else the upstream answered is a success, and ends both runs.

use std::time::Duration;

/// How one shard judges an endpoint from its own outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Gateway failures in a row that eject; 0 never ejects on them.
    pub consecutive_failures: u32,
    /// 5xx answers in a row that eject; 0 never ejects on them.
    pub consecutive_5xx: u32,
    /// Ejects when the share of successes over a window of requests falls below a floor.
    pub success_rate: Option<SuccessRate>,
    /// The first ejection's length; the n-th in a row lasts n times this.
    pub base_ejection_time: Duration,
    /// No ejection lasts longer.
    pub max_ejection_time: Duration,
    /// At most this share (percent) of an upstream's endpoints are ejected at once (at least
    /// one, unless 0). Endpoints the active check found down do not count.
    pub max_ejection_percent: u8,
}

/// The success-rate rule: over each window of `requests` answers on a shard, at least
/// `min_percent` percent must be successes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessRate {
    pub min_percent: u8,
    pub requests: u32,
}

/// How an exchange with an endpoint went, as outlier detection counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The upstream answered below 500.
    Success,
    /// The upstream answered 500 or above.
    ServerError,
    /// No answer: connect failed, a fresh connection reset or closed, or the answer was late.
    GatewayFailure,
}

/// The rule an outcome tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trip {
    ConsecutiveFailures,
    Consecutive5xx,
    SuccessRate,
}

impl Trip {
    pub fn label(self) -> &'static str {
        match self {
            Trip::ConsecutiveFailures => "consecutive_failures",
            Trip::Consecutive5xx => "consecutive_5xx",
            Trip::SuccessRate => "success_rate",
        }
    }
}

/// One shard's running counts for one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passive {
    pub consecutive_failures: u32,
    pub consecutive_5xx: u32,
    /// Answers and failures in the current success-rate window.
    pub window_requests: u32,
    pub window_failures: u32,
}

impl Passive {
    /// Counts one outcome; returns the rule it trips, if any (the runs start over then).
    pub fn record(&mut self, observed: Observed, settings: &OutlierSettings) -> Option<Trip> {
        match observed {
            Observed::Success => {
                self.consecutive_failures = 0;
                self.consecutive_5xx = 0;
            }
            Observed::ServerError => {
                self.consecutive_failures = 0;
                self.consecutive_5xx += 1;
            }
            Observed::GatewayFailure => {
                self.consecutive_5xx = 0;
                self.consecutive_failures += 1;
            }
        }
        let tripped = if reached(self.consecutive_failures, settings.consecutive_failures) {
            Some(Trip::ConsecutiveFailures)
        } else if reached(self.consecutive_5xx, settings.consecutive_5xx) {
            Some(Trip::Consecutive5xx)
        } else {
            self.window(observed, settings.success_rate)
        };
        if tripped.is_some() {
            *self = Passive::default();
        }
        tripped
    }

    fn window(&mut self, observed: Observed, rule: Option<SuccessRate>) -> Option<Trip> {
        let rule = rule?;
        self.window_requests += 1;
        if observed != Observed::Success {
            self.window_failures += 1;
        }
        if self.window_requests < rule.requests {
            return None;
        }
        let successes = u64::from(self.window_requests - self.window_failures);
        let low = successes * 100 < u64::from(rule.min_percent) * u64::from(self.window_requests);
        self.window_requests = 0;
        self.window_failures = 0;
        low.then_some(Trip::SuccessRate)
    }
}

fn reached(count: u32, threshold: u32) -> bool {
    threshold > 0 && count >= threshold
}

/// How long the `ejections`-th ejection in a row lasts: `base x ejections`, at most `max`.
pub fn ejection_time(settings: &OutlierSettings, ejections: u32) -> Duration {
    settings
        .base_ejection_time
        .saturating_mul(ejections.max(1))
        .min(settings.max_ejection_time)
}

/// How many of `endpoints` may be ejected at once.
pub fn max_ejected(settings: &OutlierSettings, endpoints: usize) -> usize {
    if settings.max_ejection_percent == 0 {
        return 0;
    }
    (endpoints * usize::from(settings.max_ejection_percent) / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 1,
            consecutive_5xx: 3,
            success_rate: None,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn one_gateway_failure_trips_by_default_as_nginx_max_fails_1() {
        let mut passive = Passive::default();
        assert_eq!(
            passive.record(Observed::GatewayFailure, &settings()),
            Some(Trip::ConsecutiveFailures)
        );
        assert_eq!(passive, Passive::default(), "the run starts over");
    }

    #[test]
    fn a_success_ends_a_run_of_5xx() {
        let s = settings();
        let mut passive = Passive::default();
        assert_eq!(passive.record(Observed::ServerError, &s), None);
        assert_eq!(passive.record(Observed::ServerError, &s), None);
        assert_eq!(passive.record(Observed::Success, &s), None);
        assert_eq!(passive.record(Observed::ServerError, &s), None);
        assert_eq!(passive.record(Observed::ServerError, &s), None);
        assert_eq!(
            passive.record(Observed::ServerError, &s),
            Some(Trip::Consecutive5xx)
        );
    }

    #[test]
    fn zero_turns_a_rule_off() {
        let s = OutlierSettings {
            consecutive_failures: 0,
            consecutive_5xx: 0,
            ..settings()
        };
        let mut passive = Passive::default();
        for _ in 0..100 {
            assert_eq!(passive.record(Observed::GatewayFailure, &s), None);
            assert_eq!(passive.record(Observed::ServerError, &s), None);
        }
    }

    #[test]
    fn the_success_rate_is_judged_per_window() {
        let s = OutlierSettings {
            consecutive_failures: 0,
            consecutive_5xx: 0,
            success_rate: Some(SuccessRate {
                min_percent: 80,
                requests: 10,
            }),
            ..settings()
        };
        let mut passive = Passive::default();
        // 8 of 10 succeed: exactly the floor, not below it.
        for i in 0..10 {
            let observed = if i < 2 {
                Observed::ServerError
            } else {
                Observed::Success
            };
            assert_eq!(passive.record(observed, &s), None);
        }
        // 7 of 10: below.
        let mut tripped = None;
        for i in 0..10 {
            let observed = if i < 3 {
                Observed::GatewayFailure
            } else {
                Observed::Success
            };
            tripped = passive.record(observed, &s);
        }
        assert_eq!(tripped, Some(Trip::SuccessRate));
    }

    #[test]
    fn ejections_grow_up_to_the_maximum() {
        let s = settings();
        assert_eq!(ejection_time(&s, 1), Duration::from_secs(10));
        assert_eq!(ejection_time(&s, 2), Duration::from_secs(20));
        assert_eq!(ejection_time(&s, 3), Duration::from_secs(25));
        assert_eq!(ejection_time(&s, 0), Duration::from_secs(10));
    }

    #[test]
    fn at_least_one_endpoint_may_be_ejected_unless_zero() {
        let s = settings();
        assert_eq!(max_ejected(&s, 1), 1);
        assert_eq!(max_ejected(&s, 3), 1);
        assert_eq!(max_ejected(&s, 10), 5);
        let off = OutlierSettings {
            max_ejection_percent: 0,
            ..s
        };
        assert_eq!(max_ejected(&off, 10), 0);
    }
}
