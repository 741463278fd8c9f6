//! `pick`: the upstream a route forwards to, and the endpoint of it this request goes to,
//! chosen by the upstream's balancing policy with the request in hand (`upstream::balance`).

use std::rc::Rc;

use crate::metrics::Reject;
use crate::request::RequestView;
use crate::snapshot::Snapshot;
use crate::upstream::{EndpointPool, UpstreamGroup};

use super::respond::Refusal;

/// Where a request goes.
pub struct Picked<'s> {
    pub upstream: &'s UpstreamGroup,
    pub endpoint: Rc<EndpointPool>,
}

/// Chooses the endpoint of `snapshot.upstreams[upstream]` for `request`.
pub fn pick<'s>(
    snapshot: &'s Snapshot,
    upstream: usize,
    request: &RequestView<'_>,
) -> Result<Picked<'s>, Refusal<'static>> {
    // Validation ties every route to an upstream of the same configuration; should a snapshot
    // ever disagree, the request is refused, not the shard brought down.
    let upstream = snapshot.upstreams.get(upstream).ok_or(NO_UPSTREAM)?;
    let endpoint = upstream.pick(request).clone();
    Ok(Picked { upstream, endpoint })
}

const NO_UPSTREAM: Refusal<'static> =
    Refusal::closing(503, "no upstream for this route", Reject::Unavailable);
