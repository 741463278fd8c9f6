//! `pick`: the upstream a route forwards to, and the endpoint of it this request goes to,
//! chosen by the upstream's balancing policy with the request in hand (`upstream::balance`),
//! among the endpoints its health allows.
//!
//! Two refusals start here, both `503` at once, before anything is sent: the upstream's
//! `max_requests` breaker is open (counted as `upstream_overflow`), or no endpoint may take the
//! request (every one ejected or down, panic mode off; counted as `no_endpoint`, with
//! `Retry-After` saying when the first ejection ends).

use std::time::Instant;

use crate::metrics::Reject;
use crate::request::RequestView;
use crate::snapshot::Snapshot;
use crate::upstream::{Choice, UpstreamGroup};

use super::respond::{Detail, Refusal};

/// `Retry-After` when no ejection will end by itself (the active check has every endpoint
/// down): a second, so clients come back soon after a check brings one up.
const RETRY_AFTER_UNKNOWN_SECS: u64 = 1;

/// Where a request goes.
pub struct Picked<'s> {
    pub upstream: &'s UpstreamGroup,
    pub choice: Choice,
}

/// Chooses the endpoint of `snapshot.upstreams[upstream]` for `request`.
pub fn pick<'s>(
    snapshot: &'s Snapshot,
    upstream: usize,
    request: &RequestView<'_>,
    now: Instant,
) -> Result<Picked<'s>, Refusal<'static>> {
    // Validation ties every route to an upstream of the same configuration; should a snapshot
    // ever disagree, the request is refused, not the shard brought down.
    let upstream = snapshot.upstreams.get(upstream).ok_or(NO_UPSTREAM)?;
    if upstream
        .load()
        .admits_request(&upstream.settings.breakers)
        .is_err()
    {
        return Err(OVERFLOW);
    }
    match upstream.pick(request, now) {
        Ok(choice) => Ok(Picked { upstream, choice }),
        Err(unavailable) => {
            let seconds = unavailable.until.map_or(RETRY_AFTER_UNKNOWN_SECS, |until| {
                let wait = until.saturating_duration_since(now);
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            });
            Err(NO_ENDPOINT.with_detail(Detail::RetryAfter(seconds.max(1))))
        }
    }
}

const NO_UPSTREAM: Refusal<'static> =
    Refusal::closing(503, "no upstream for this route", Reject::Unavailable);

const NO_ENDPOINT: Refusal<'static> = Refusal::of_policy(
    503,
    "no upstream endpoint is available, try again later",
    Reject::NoEndpoint,
);

/// A circuit breaker of the upstream is open.
pub const OVERFLOW: Refusal<'static> =
    Refusal::of_policy(503, "upstream at its limit, try again", Reject::Overflow);
