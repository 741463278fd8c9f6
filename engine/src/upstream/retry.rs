//! The retry rule: after a failed attempt, whether the request is sent again, and where.
//!
//! Owns [`RetryPolicy`] (a route's, or the default), [`Failed`] (how an attempt ended, as the
//! rule sees it) and [`next`], the one decision; pure, so it is tested on its own. The pipeline
//! (`proxy/forward.rs`) classifies each failed attempt, asks [`next`], and for a retry picks
//! another endpoint of the same upstream, within the upstream's retry budget.
//!
//! The rule, in order:
//! 1. A pooled connection the upstream had closed while it idled (no response byte) is replaced
//!    by a fresh one to the *same* endpoint, once, when the request can be sent again: the
//!    endpoint is likely fine, the connection was just stale.
//! 2. A connect that failed (refused, unreachable, timed out) is tried on another endpoint
//!    whatever the method: nothing was sent. This is NGINX's default `proxy_next_upstream
//!    error` for connections.
//! 3. A reset or close before any response byte, a response head that did not come in time, or
//!    a listed `502` / `503` / `504` is tried on another endpoint when the policy lists it and
//!    the request can be sent again: an idempotent method (or the policy allows others) whose
//!    whole body is still at hand.
//! 4. Anything else is answered as it is.
//!
//! Each retry after the first waits a jittered exponential back-off; none goes past the
//! policy's `retries` or its overall deadline.

use std::time::Duration;

/// What a policy retries on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryOn(u8);

impl RetryOn {
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    pub const RESET: RetryOn = RetryOn(1 << 1);
    pub const TIMEOUT: RetryOn = RetryOn(1 << 2);
    pub const STATUS_502: RetryOn = RetryOn(1 << 3);
    pub const STATUS_503: RetryOn = RetryOn(1 << 4);
    pub const STATUS_504: RetryOn = RetryOn(1 << 5);
    pub const NONE: RetryOn = RetryOn(0);

    /// Each condition with the name the file uses.
    pub const NAMES: [(RetryOn, &'static str); 6] = [
        (RetryOn::CONNECT_FAILURE, "connect_failure"),
        (RetryOn::RESET, "reset"),
        (RetryOn::TIMEOUT, "timeout"),
        (RetryOn::STATUS_502, "502"),
        (RetryOn::STATUS_503, "503"),
        (RetryOn::STATUS_504, "504"),
    ];

    pub const fn with(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn parse(name: &str) -> Option<RetryOn> {
        RetryOn::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(on, _)| *on)
    }

    /// The statuses listed, as a condition.
    fn status(status: u16) -> RetryOn {
        match status {
            502 => RetryOn::STATUS_502,
            503 => RetryOn::STATUS_503,
            504 => RetryOn::STATUS_504,
            _ => RetryOn::NONE,
        }
    }

    /// Whether any condition listed can happen after the request was sent (a reset, a
    /// timeout, a status): then the sent bytes are worth keeping for another attempt.
    pub fn after_send(self) -> bool {
        self.0 & !RetryOn::CONNECT_FAILURE.0 != 0
    }

    /// Whether the policy retries an answer with `status`.
    pub fn retries_status(self, status: u16) -> bool {
        self.contains(RetryOn::status(status))
    }

    /// The names of the conditions, for `/config`.
    pub fn names(self) -> Vec<&'static str> {
        RetryOn::NAMES
            .iter()
            .filter(|(on, _)| self.contains(*on))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// A route's retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub on: RetryOn,
    /// Retries at most (attempts are one more); a stale pooled connection's replacement is
    /// not counted.
    pub retries: u32,
    /// Retry methods that are not idempotent too (only what `on` lists after a send).
    pub non_idempotent: bool,
    /// Each attempt's wait for a response head, when shorter than the upstream's
    /// `response_timeout`.
    pub per_try_timeout: Option<Duration>,
    /// From the first attempt: no retry starts after it, and no attempt waits past it.
    pub deadline: Option<Duration>,
    /// The back-off before the second retry; it doubles for each further one, jittered.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// How an attempt ended, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// The connection could not be made: nothing was sent.
    Connect,
    /// A pooled connection turned out closed before any response byte.
    Stale,
    /// A fresh connection was reset or closed before any response byte.
    Reset,
    /// No response head within the response (or per-try) timeout.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
    /// Anything else (an invalid response, the client's side, coregate's own limits).
    Other,
}

impl Failed {
    pub fn label(self) -> &'static str {
        match self {
            Failed::Connect => "connect_failure",
            Failed::Stale => "stale_connection",
            Failed::Reset => "reset",
            Failed::Timeout => "timeout",
            Failed::Status(_) => "status",
            Failed::Other => "other",
        }
    }
}

/// Where the next attempt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A fresh connection to the same endpoint (rule 1).
    SameEndpoint,
    /// Another endpoint (rules 2 and 3).
    OtherEndpoint,
    /// No further attempt.
    Stop,
}

/// What [`next`] knows of the request so far.
#[derive(Clone, Copy, Debug)]
pub struct Attempts {
    /// Retries made so far (rule 1's replacement not counted).
    pub retries: u32,
    /// Rule 1 was used already.
    pub replaced_stale: bool,
    /// The request can be sent again as it was: idempotent (or allowed by the policy), and its
    /// whole body still at hand.
    pub resendable: bool,
    /// The overall deadline passed.
    pub out_of_time: bool,
}

/// The retry rule (see the module documentation).
pub fn next(policy: &RetryPolicy, failed: Failed, attempts: &Attempts) -> Next {
    if attempts.out_of_time {
        return Next::Stop;
    }
    if failed == Failed::Stale {
        return if attempts.resendable && !attempts.replaced_stale {
            Next::SameEndpoint
        } else {
            Next::Stop
        };
    }
    if attempts.retries >= policy.retries {
        return Next::Stop;
    }
    let listed = match failed {
        Failed::Connect => {
            return Next::OtherEndpoint.only_if(policy.on.contains(RetryOn::CONNECT_FAILURE));
        }
        Failed::Reset => policy.on.contains(RetryOn::RESET),
        Failed::Timeout => policy.on.contains(RetryOn::TIMEOUT),
        Failed::Status(status) => policy.on.retries_status(status),
        Failed::Stale | Failed::Other => false,
    };
    Next::OtherEndpoint.only_if(listed && attempts.resendable)
}

impl Next {
    fn only_if(self, condition: bool) -> Next {
        if condition { self } else { Next::Stop }
    }
}

/// The wait before retry number `retry` (from 1): none before the first, which goes to another
/// endpoint at once; then a uniformly jittered exponential back-off (Envoy's): up to `backoff`,
/// `2 x backoff`, ... at most `max_backoff`. `random` is a fresh random number.
pub fn backoff(policy: &RetryPolicy, retry: u32, random: u64) -> Duration {
    if retry <= 1 || policy.backoff.is_zero() {
        return Duration::ZERO;
    }
    let doublings = (retry - 2).min(20);
    let ceiling = policy
        .backoff
        .saturating_mul(1 << doublings)
        .min(policy.max_backoff);
    let micros = ceiling.as_micros() as u64;
    Duration::from_micros(if micros == 0 {
        0
    } else {
        random % (micros + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        on: RetryOn::CONNECT_FAILURE.with(RetryOn::RESET),
        retries: 2,
        non_idempotent: false,
        per_try_timeout: None,
        deadline: None,
        backoff: Duration::from_millis(25),
        max_backoff: Duration::from_millis(250),
    };

    fn attempts(retries: u32, resendable: bool) -> Attempts {
        Attempts {
            retries,
            replaced_stale: false,
            resendable,
            out_of_time: false,
        }
    }

    #[test]
    fn a_failed_connect_goes_to_another_endpoint_whatever_the_request() {
        assert_eq!(
            next(&POLICY, Failed::Connect, &attempts(0, false)),
            Next::OtherEndpoint
        );
        assert_eq!(
            next(&POLICY, Failed::Connect, &attempts(2, false)),
            Next::Stop,
            "within the retries"
        );
    }

    #[test]
    fn a_reset_is_retried_only_when_the_request_can_be_sent_again() {
        assert_eq!(
            next(&POLICY, Failed::Reset, &attempts(0, true)),
            Next::OtherEndpoint
        );
        assert_eq!(
            next(&POLICY, Failed::Reset, &attempts(0, false)),
            Next::Stop
        );
    }

    #[test]
    fn a_stale_pooled_connection_is_replaced_once_on_the_same_endpoint() {
        let mut a = attempts(5, true);
        assert_eq!(next(&POLICY, Failed::Stale, &a), Next::SameEndpoint);
        a.replaced_stale = true;
        assert_eq!(next(&POLICY, Failed::Stale, &a), Next::Stop);
        assert_eq!(
            next(&POLICY, Failed::Stale, &attempts(0, false)),
            Next::Stop
        );
    }

    #[test]
    fn timeouts_and_statuses_only_when_listed() {
        let a = attempts(0, true);
        assert_eq!(next(&POLICY, Failed::Timeout, &a), Next::Stop);
        assert_eq!(next(&POLICY, Failed::Status(503), &a), Next::Stop);
        let wide = RetryPolicy {
            on: POLICY.on.with(RetryOn::TIMEOUT).with(RetryOn::STATUS_503),
            ..POLICY
        };
        assert_eq!(next(&wide, Failed::Timeout, &a), Next::OtherEndpoint);
        assert_eq!(next(&wide, Failed::Status(503), &a), Next::OtherEndpoint);
        assert_eq!(next(&wide, Failed::Status(502), &a), Next::Stop);
        assert_eq!(next(&wide, Failed::Other, &a), Next::Stop);
    }

    #[test]
    fn nothing_is_retried_past_the_deadline() {
        let a = Attempts {
            out_of_time: true,
            ..attempts(0, true)
        };
        assert_eq!(next(&POLICY, Failed::Connect, &a), Next::Stop);
        assert_eq!(next(&POLICY, Failed::Stale, &a), Next::Stop);
    }

    #[test]
    fn the_back_off_grows_jittered_up_to_its_ceiling() {
        assert_eq!(backoff(&POLICY, 1, u64::MAX), Duration::ZERO);
        assert!(backoff(&POLICY, 2, u64::MAX) <= Duration::from_millis(25));
        assert!(backoff(&POLICY, 3, u64::MAX) <= Duration::from_millis(50));
        assert!(backoff(&POLICY, 30, u64::MAX) <= Duration::from_millis(250));
        assert_eq!(backoff(&POLICY, 3, 0), Duration::ZERO);
    }

    #[test]
    fn only_conditions_after_a_send_keep_the_sent_bytes() {
        assert!(!RetryOn::CONNECT_FAILURE.after_send());
        assert!(!RetryOn::NONE.after_send());
        assert!(
            RetryOn::CONNECT_FAILURE
                .with(RetryOn::STATUS_504)
                .after_send()
        );
    }

    #[test]
    fn conditions_parse_and_print() {
        let on = RetryOn::parse("503")
            .unwrap()
            .with(RetryOn::parse("reset").unwrap());
        assert_eq!(on.names(), vec!["reset", "503"]);
        assert!(RetryOn::parse("500").is_none());
    }
}
