//! The generic cell rate algorithm (GCRA) on one key's state, in integer nanoseconds.
//!
//! Owns the arithmetic only: one `u64` of state per key (its *theoretical arrival time*, TAT),
//! the caller's `now`, and the two parameters (emission interval, burst window). It reads no
//! clock, allocates nothing and keeps no table; [`super::limiter`] decides which interval a key
//! gets and where its TAT lives.
//!
//! # Why GCRA
//!
//! A token bucket needs two numbers per key (tokens, last refill) and a division to refill; GCRA
//! is the same limiter expressed as one timestamp. A key whose TAT is at or before `now` is
//! exactly as a key never seen, which is what lets the key table drop idle keys losing nothing.
//!
//! # The rule
//!
//! With interval `T` (nanoseconds per request at the allowed rate) and burst window `W` (how far
//! ahead of `now` the TAT may run; `W = burst * T` for the node-wide rate):
//!
//! 1. `start = max(tat, now)`: an idle key starts from now, not from its old TAT.
//! 2. `next = start + T`: the TAT after admitting this request.
//! 3. If `next - now <= W` the request is admitted and `tat = next`; otherwise it is refused and
//!    the TAT is unchanged (a refused request costs the client nothing).
//!
//! From an idle key, `burst` requests are admitted at once (`k * T <= burst * T` for
//! `k <= burst`), then one per `T`. Each shard calls this with its own interval (its share of the
//! node's rate), so the same window holds fewer requests on a shard with a small share; the window
//! is widened to one interval when it is shorter, so an idle key is always admitted once.

/// What one check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit {
        /// The key's TAT after this request.
        tat: u64,
        /// Requests that could still be admitted right now.
        remaining: u32,
        /// Nanoseconds until the key is idle again (its full burst available).
        reset: u64,
    },
    Refuse {
        /// Nanoseconds until one request would be admitted.
        retry_after: u64,
        /// Nanoseconds until the key is idle again.
        reset: u64,
    },
}

/// Checks one request against a key's TAT. `interval` must be non-zero.
#[inline]
pub fn check(tat: u64, now: u64, interval: u64, window: u64) -> Verdict {
    debug_assert!(interval > 0, "a zero interval would admit everything");
    let window = window.max(interval);
    let start = tat.max(now);
    let next = start.saturating_add(interval);
    let ahead = next - now;
    if ahead <= window {
        let remaining = (window - ahead) / interval;
        Verdict::Admit {
            tat: next,
            remaining: remaining.min(u64::from(u32::MAX)) as u32,
            reset: ahead,
        }
    } else {
        Verdict::Refuse {
            retry_after: ahead - window,
            reset: start - now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: u64 = 10_000_000; // 100/s

    fn admit(tat: &mut u64, now: u64, window: u64) -> Option<u32> {
        match check(*tat, now, T, window) {
            Verdict::Admit {
                tat: next,
                remaining,
                ..
            } => {
                *tat = next;
                Some(remaining)
            }
            Verdict::Refuse { .. } => None,
        }
    }

    #[test]
    fn an_idle_key_gets_its_burst_then_the_rate() {
        let mut tat = 0;
        let now = 5 * T;
        let remaining: Vec<_> = (0..6).map(|_| admit(&mut tat, now, 5 * T)).collect();
        assert_eq!(
            remaining,
            [Some(4), Some(3), Some(2), Some(1), Some(0), None]
        );
        // One interval later exactly one more fits.
        assert_eq!(admit(&mut tat, now + T, 5 * T), Some(0));
        assert_eq!(admit(&mut tat, now + T, 5 * T), None);
    }

    #[test]
    fn a_refusal_says_when_to_come_back_and_costs_nothing() {
        let now = 1_000 * T;
        let tat = now + 5 * T; // burst of 5 used up
        let Verdict::Refuse { retry_after, reset } = check(tat, now, T, 5 * T) else {
            panic!("the sixth request must be refused");
        };
        assert_eq!(retry_after, T);
        assert_eq!(reset, 5 * T);
        // Retrying exactly then is admitted.
        assert!(matches!(
            check(tat, now + retry_after, T, 5 * T),
            Verdict::Admit { remaining: 0, .. }
        ));
    }

    #[test]
    fn a_window_shorter_than_the_interval_still_admits_one() {
        // A shard with a tiny share: interval 100 T, window 5 T.
        let now = 1_000 * T;
        let Verdict::Admit { tat, remaining, .. } = check(0, now, 100 * T, 5 * T) else {
            panic!("an idle key is admitted once");
        };
        assert_eq!(remaining, 0);
        assert!(matches!(
            check(tat, now, 100 * T, 5 * T),
            Verdict::Refuse {
                retry_after,
                ..
            } if retry_after == 100 * T
        ));
    }

    proptest! {
        /// Over any span, a key is admitted at most `burst + span / T` times, whatever the
        /// arrival pattern: the limit is never loose.
        #[test]
        fn never_more_than_burst_plus_rate(gaps in proptest::collection::vec(0..3 * T, 1..400),
                                           burst in 1u64..20) {
            let mut tat = 0;
            let mut now = 0;
            let mut admitted = 0u64;
            for gap in gaps {
                now += gap;
                if admit(&mut tat, now, burst * T).is_some() {
                    admitted += 1;
                }
            }
            prop_assert!(admitted <= burst + now / T);
        }

        /// Requests arriving exactly at the rate are all admitted, with any burst.
        #[test]
        fn traffic_at_the_rate_is_never_refused(n in 1usize..500, burst in 1u64..20, start in 0..1_000 * T) {
            let mut tat = 0;
            for i in 0..n as u64 {
                prop_assert!(admit(&mut tat, start + i * T, burst * T).is_some());
            }
        }
    }
}
