//! `admit`: whether the matched route takes this request, cheapest check first: the declared
//! body size (413), who the client is when the route wants to know (an API key or a JWT: 401
//! or 403 with a challenge), then the route's rate limit for the client's key (429 with
//! `Retry-After` and the `RateLimit` fields).
//!
//! What admission establishes (the identity, a verified token's forwarded claims) goes on to
//! the forwarded head.

use std::cell::RefMut;

use crate::auth::VerifiedToken;
use crate::auth::jwt::TokenCache;
use crate::config::AuthMethod;
use crate::metrics::Reject;
use crate::request::{Body, RequestView};
use crate::shard::Shard;
use crate::snapshot::{AuthPolicy, RouteTarget, Snapshot};

use super::respond::{Detail, Refusal};

/// What admission established about the client.
#[derive(Default)]
pub struct Admitted<'a> {
    /// The authenticated identity (API key owner or the token's identity claim).
    pub identity: Option<&'a [u8]>,
    /// The header the identity goes upstream in.
    pub identity_header: Option<&'a [u8]>,
    /// The verified token, whose claims go upstream.
    pub token: Option<&'a VerifiedToken>,
}

/// Where a verified token lives while the request is admitted and its head written: in the
/// shard's token cache (borrowed), or here when the policy keeps no cache.
#[derive(Default)]
pub struct Credentials<'s> {
    cache: Option<RefMut<'s, TokenCache>>,
    owned: Option<VerifiedToken>,
}

const UNAUTHORIZED_KEY: Refusal<'static> =
    Refusal::of_policy(401, "missing or invalid API key", Reject::Unauthorized);
const RATE_LIMITED: Refusal<'static> =
    Refusal::of_policy(429, "rate limit exceeded, retry later", Reject::RateLimited);

/// Admits `request` to `target`, or says why not. `client_cert` is the identity of the
/// client's verified TLS certificate, for a rate limit keyed by it.
pub fn admit<'a, 's: 'a>(
    shard: &Shard,
    snapshot: &'s Snapshot,
    target: &'s RouteTarget,
    request: &RequestView<'a>,
    credentials: &'a mut Credentials<'s>,
    client_cert: Option<&[u8]>,
) -> Result<Admitted<'a>, Refusal<'s>> {
    if let (Body::Length(length), Some(max)) = (request.body, target.max_body_bytes)
        && length > max
    {
        return Err(Refusal::BODY_TOO_LARGE);
    }
    let admitted = match target.auth.and_then(|index| snapshot.auth.get(index)) {
        Some(policy) => authenticate(policy, request, credentials)?,
        None => Admitted::default(),
    };
    limit(shard, target, request, admitted.identity, client_cert)?;
    Ok(admitted)
}

/// Who the client is, by the route's policy.
fn authenticate<'a, 's: 'a>(
    policy: &'s AuthPolicy,
    request: &RequestView<'a>,
    credentials: &'a mut Credentials<'s>,
) -> Result<Admitted<'a>, Refusal<'s>> {
    let authorization = request.fields.get(b"authorization");
    let identity_header = policy.identity_header.as_deref();
    match &policy.method {
        AuthMethod::ApiKey(keys) => {
            let name = keys.header_name().as_bytes();
            // Two keys: which one the upstream reads is anyone's guess.
            if request.fields.all(name).nth(1).is_some() {
                return Err(Refusal::bad_request("repeated API key field"));
            }
            let presented = request.fields.get(name);
            match keys.authenticate(presented, authorization) {
                Ok(who) => Ok(Admitted {
                    identity: Some(who.as_bytes()),
                    identity_header,
                    token: None,
                }),
                Err(_) => Err(UNAUTHORIZED_KEY.with_detail(Detail::Challenge(keys.challenge()))),
            }
        }
        AuthMethod::Jwt { verifier, .. } => {
            let now = unix_seconds();
            let verified = match &policy.token_cache {
                Some(cache) => verifier.authenticate_cached(
                    credentials.cache.insert(cache.borrow_mut()),
                    authorization,
                    now,
                ),
                // Without a cache, each request verifies its token.
                None => verifier
                    .authenticate(authorization, now)
                    .map(|token| &*credentials.owned.insert(token)),
            };
            match verified {
                Ok(token) => Ok(Admitted {
                    identity: Some(token.identity.as_bytes()),
                    identity_header,
                    token: Some(token),
                }),
                Err(rejection) => {
                    let reason = if rejection.status() == 403 {
                        Reject::Forbidden
                    } else {
                        Reject::Unauthorized
                    };
                    let refusal =
                        Refusal::of_policy(rejection.status(), rejection.description(), reason);
                    let challenge = rejection.challenge(verifier.realm());
                    Err(refusal.with_detail(Detail::Challenge(challenge)))
                }
            }
        }
    }
}

/// The route's rate limit, for the key this request counts against.
fn limit<'s>(
    shard: &Shard,
    target: &'s RouteTarget,
    request: &RequestView<'_>,
    identity: Option<&[u8]>,
    client_cert: Option<&[u8]>,
) -> Result<(), Refusal<'s>> {
    let Some(limiter) = &target.limiter else {
        return Ok(());
    };
    let decision = {
        let mut limiter = limiter.borrow_mut();
        let spec = limiter.key_spec();
        let header = spec
            .header_name()
            .and_then(|name| request.fields.get(name.as_bytes()));
        let key = spec.key_for(request.client.to_canonical(), header, identity, client_cert);
        limiter.check(key, shard.limit_clock.nanos(shard.io.now()))
    };
    if decision.is_allowed() {
        return Ok(());
    }
    Err(RATE_LIMITED.with_detail(Detail::RateLimited { limiter, decision }))
}

/// Wall-clock seconds since the Unix epoch, for token expiry.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
