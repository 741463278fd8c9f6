//! `route`: the path routes match (normalised: dot segments resolved, unreserved bytes
//! decoded; see `router::normalize`), then host -> method -> path in the snapshot's table.
//! Refuses with 400 a path that cannot be normalised, 404 when no route matches, 405 when the
//! path's routes do not take the method.

use crate::http1::TargetForm;
use crate::metrics::Reject;
use crate::request::RequestView;
use crate::router::{
    Lookup, Normalized, Params, PrefixRewrite, RewriteError, normalize_path, rewrite_path,
};
use crate::snapshot::{PathRewrite, RouteTarget, Snapshot};

use super::respond::Refusal;

/// The route a request matched.
pub struct Routed<'s> {
    pub target: &'s RouteTarget,
    /// Bytes of the path the matching prefix covered (what a prefix rewrite replaces).
    pub matched_prefix_len: usize,
}

/// The path routes match: `*` for an asterisk-form target, else the normalised path (written
/// into `scratch` only when it differs from the raw one).
pub fn routing_path<'a>(
    form: TargetForm,
    raw: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], Refusal<'static>> {
    if form == TargetForm::Asterisk {
        return Ok(b"*");
    }
    match normalize_path(raw, scratch) {
        Ok(Normalized::Unchanged) => Ok(raw),
        Ok(Normalized::Rewritten) => Ok(scratch.as_slice()),
        Err(err) => Err(Refusal::bad_request(err.as_str())),
    }
}

/// Finds the route for `request`.
pub fn route<'s>(
    snapshot: &'s Snapshot,
    request: &RequestView<'_>,
) -> Result<Routed<'s>, Refusal<'static>> {
    let mut params = Params::new();
    match snapshot
        .routes
        .lookup(request.authority, request.method, request.path, &mut params)
    {
        Lookup::Matched {
            target,
            matched_prefix_len,
        } => Ok(Routed {
            target,
            matched_prefix_len,
        }),
        Lookup::NotFound => Err(Refusal::NOT_FOUND),
        Lookup::MethodNotAllowed { allow } => Err(Refusal::method_not_allowed(allow)),
    }
}

/// The path the upstream gets: the routed path, or for a route that strips or replaces its
/// prefix, the rest normalised again under the replacement (written into `scratch`), so a
/// forwarded path never escapes the prefix it was routed under (see `router::rewrite`).
pub fn forwarded_path<'a>(
    routed: &'a Routed<'_>,
    path: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], Refusal<'static>> {
    let rewrite = match &routed.target.action {
        crate::snapshot::Action::Forward { rewrite, .. } => rewrite,
        crate::snapshot::Action::Respond(_) => return Ok(path),
    };
    let rewrite = match rewrite {
        PathRewrite::None => return Ok(path),
        PathRewrite::StripPrefix => PrefixRewrite::Strip,
        PathRewrite::ReplacePrefix(replacement) => PrefixRewrite::Replace(replacement),
    };
    match rewrite_path(path, routed.matched_prefix_len, rewrite, scratch) {
        Ok(()) => Ok(scratch.as_slice()),
        Err(RewriteError::Path(err)) => Err(Refusal::bad_request(err.as_str())),
        // The table reports prefixes at segment ends and validation checks replacements:
        // a broken invariant is coregate's fault, not the client's.
        Err(err) => Err(Refusal::closing(500, err.as_str(), Reject::Unavailable)),
    }
}
