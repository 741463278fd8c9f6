//! JWT (RFC 7519) bearer tokens, verified at the edge with keys from the configuration.
//!
//! Owns the verification of one compact JWS token (RFC 7515) and its claims: algorithm and key
//! choice, signature, `exp` / `nbf` with leeway, `iss`, `aud`, required claims, and the claims
//! forwarded upstream. Bytes and the caller's wall-clock time in, a [`VerifiedToken`] or a
//! [`TokenRejection`] out. No I/O (key files and JWKS documents arrive as bytes), no clock reads,
//! no network: keys named by the token itself (`jku`, `x5u`, `jwk` headers) are never fetched or
//! trusted.
//!
//! | file | owns |
//! |---|---|
//! | [`keys`] | HS256 secrets, PEM public keys, JWKS documents; key choice by `kid` |
//! | `pem` | PEM and the DER structures of RSA and P-256 public keys |
//! | [`claims`] | claim rules and forwarded claims, value sanitising |
//! | [`cache`] | the per-shard cache of verified tokens |
//!
//! # Verification, in order
//!
//! 1. At most [`MAX_TOKEN_BYTES`], three base64url parts (no padding, canonical trailing bits).
//! 2. Header: a JSON object whose `alg` is HS256, RS256 or ES256 and one of the configured keys'
//!    algorithms (`none` and everything else: 401). A `crit` header is refused (RFC 7515 sec.
//!    4.1.11: no extension is understood here).
//! 3. Key: the one whose `kid` the header names (same algorithm), or without `kid` up to three
//!    keys of the algorithm. An HS256 secret only verifies HS256 and a public key only its own
//!    algorithm, so an RSA public key can never be used as an HMAC secret.
//! 4. Signature over `header.payload`, before the payload is read.
//! 5. Payload: a JSON object. `exp` (required unless configured otherwise) must be after
//!    `now - leeway`; `nbf`, if present, at or before `now + leeway`.
//! 6. `iss` equal to the configured issuer, if one is configured. `aud`: when audiences are
//!    configured, the token's `aud` (string or array) must hold one of them; when none are and
//!    the token has an `aud`, it is refused, as RFC 7519 sec. 4.1.3 asks of a recipient that
//!    does not identify itself with the audience.
//! 7. Identity claim (`sub` by default) and the configured rules: failing them is 403.
//! 8. Forwarded claims, sanitised ([`claims`]); a claim that is unsafe or absent is not sent.
//!
//! Outcomes: 401 with `WWW-Authenticate: Bearer realm="...", error="invalid_token",
//! error_description="..."` for a missing (no `error`), malformed, badly signed, expired, not yet
//! valid or wrongly addressed token; 403 with `error="insufficient_scope"` for missing claims. The
//! descriptions are fixed sentences: nothing of the token is echoed.

pub mod cache;
pub mod claims;
pub mod keys;
mod pem;

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use cache::{
    CacheCounters, DEFAULT_TOKEN_CACHE_ENTRIES, DEFAULT_TOKEN_CACHE_TTL_SECONDS, TokenCache,
};
pub use claims::{ClaimCheck, ClaimRule, ForwardClaim, MAX_FORWARDED_VALUE_BYTES};
pub use keys::{Algorithm, JwksSummary, JwtKey, KeyError, KeySet};
pub use pem::MAX_PEM_BYTES;

use super::{Challenge, Realm};

/// Clock skew tolerated on `exp` and `nbf` when the configuration does not say.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;

/// The claim that names the authenticated identity when the configuration does not say.
pub const DEFAULT_IDENTITY_CLAIM: &str = "sub";

/// The longest token read; longer ones are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Verifier ids, so a cache can tell which verifier filled it. Taken once per verifier, at
/// configuration load, never per request.
static NEXT_VERIFIER_ID: AtomicU64 = AtomicU64::new(1);

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRejection {
    /// 401: no bearer token.
    Missing,
    /// 401: not a well-formed token; the sentence says which part.
    Malformed(&'static str),
    /// 401: `alg` is not one the configured keys use.
    UnsupportedAlgorithm,
    /// 401: no configured key has the token's `kid`.
    UnknownKey,
    /// 401: the signature does not verify.
    BadSignature,
    /// 401: no `exp`, and one is required.
    MissingExpiry,
    /// 401: `exp` has passed (beyond the leeway).
    Expired,
    /// 401: `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// 401: `iss` is not the configured issuer.
    WrongIssuer,
    /// 401: `aud` does not name a configured audience.
    WrongAudience,
    /// 403: the identity claim is absent, not a string, or not a safe header value.
    MissingIdentity,
    /// 403: the configured rule at this position does not hold.
    InsufficientClaims { rule: usize },
}

impl TokenRejection {
    pub fn status(self) -> u16 {
        match self {
            TokenRejection::MissingIdentity | TokenRejection::InsufficientClaims { .. } => 403,
            _ => 401,
        }
    }

    /// The `error_description`: a fixed sentence without quotes or backslashes.
    pub fn description(self) -> &'static str {
        match self {
            TokenRejection::Missing => "a bearer token is required",
            TokenRejection::Malformed(detail) => detail,
            TokenRejection::UnsupportedAlgorithm => {
                "the token's signature algorithm is not accepted"
            }
            TokenRejection::UnknownKey => "the token names a key that is not configured",
            TokenRejection::BadSignature => "the token's signature is not valid",
            TokenRejection::MissingExpiry => "the token has no expiry",
            TokenRejection::Expired => "the token has expired",
            TokenRejection::NotYetValid => "the token is not valid yet",
            TokenRejection::WrongIssuer => "the token is from another issuer",
            TokenRejection::WrongAudience => "the token is for another audience",
            TokenRejection::MissingIdentity => "the token does not name an identity",
            TokenRejection::InsufficientClaims { .. } => {
                "the token lacks a claim this resource requires"
            }
        }
    }

    /// The `WWW-Authenticate` value for this refusal.
    pub fn challenge(self, realm: &Realm) -> Challenge<'_> {
        let error = match self.status() {
            403 => Some("insufficient_scope"),
            _ if self == TokenRejection::Missing => None,
            _ => Some("invalid_token"),
        };
        Challenge {
            scheme: "Bearer",
            realm,
            header: None,
            error: error.map(|error| (error, self.description())),
        }
    }
}

/// A token that passed every check: who it names and what to forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The identity claim's value, safe as a header value.
    pub identity: Box<str>,
    /// `(lowercase header name, value)` of each forwarded claim present and safe.
    pub headers: Vec<(Box<str>, Box<[u8]>)>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Forwarded claims left out because their value was unsafe.
    pub dropped_claims: u16,
}

/// Everything a JWT verifier is configured with.
#[derive(Debug)]
pub struct JwtSettings {
    pub keys: KeySet,
    /// `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// `aud` must hold one of these, when any are set.
    pub audiences: Vec<String>,
    pub leeway_seconds: u64,
    /// Refuse tokens without `exp` (the default: a token without one never expires).
    pub require_expiry: bool,
    pub identity_claim: String,
    pub rules: Vec<ClaimRule>,
    pub forward: Vec<ForwardClaim>,
    pub realm: Realm,
}

impl JwtSettings {
    /// Settings with every default: [`DEFAULT_LEEWAY_SECONDS`], expiry required,
    /// [`DEFAULT_IDENTITY_CLAIM`], no issuer or audience, no rules, nothing forwarded.
    pub fn new(keys: KeySet) -> JwtSettings {
        JwtSettings {
            keys,
            issuer: None,
            audiences: Vec::new(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            require_expiry: true,
            identity_claim: DEFAULT_IDENTITY_CLAIM.to_owned(),
            rules: Vec::new(),
            forward: Vec::new(),
            realm: Realm::default(),
        }
    }
}

/// A configuration problem of a JWT verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfigError {
    /// Which setting: `identity_claim`, `require[2]`, `forward[0]`, ...
    pub setting: String,
    pub reason: &'static str,
}

impl std::fmt::Display for JwtConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for JwtConfigError {}

/// Verifies tokens for one route (or group of routes sharing the settings).
#[derive(Debug)]
pub struct JwtVerifier {
    settings: JwtSettings,
    id: u64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

impl JwtVerifier {
    pub fn new(mut settings: JwtSettings) -> Result<JwtVerifier, JwtConfigError> {
        let fail = |setting: String, reason| JwtConfigError { setting, reason };
        claims::validate_claim_name(&settings.identity_claim)
            .map_err(|reason| fail("identity_claim".to_owned(), reason))?;
        for (at, rule) in settings.rules.iter().enumerate() {
            claims::validate_claim_name(&rule.claim)
                .map_err(|reason| fail(format!("require[{at}]"), reason))?;
        }
        for (at, forward) in settings.forward.iter_mut().enumerate() {
            claims::validate_claim_name(&forward.claim)
                .map_err(|reason| fail(format!("forward[{at}]"), reason))?;
            forward.header = claims::validate_header_name(&forward.header)
                .map_err(|reason| fail(format!("forward[{at}]"), reason))?;
        }
        if settings.audiences.iter().any(String::is_empty) {
            return Err(fail("audience".to_owned(), "an audience cannot be empty"));
        }
        Ok(JwtVerifier {
            settings,
            id: NEXT_VERIFIER_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn realm(&self) -> &Realm {
        &self.settings.realm
    }

    /// A token cache for this verifier on one shard.
    pub fn new_cache(&self, entries: usize, ttl_seconds: u64) -> TokenCache {
        let mut cache = TokenCache::new(entries, ttl_seconds);
        cache.owner = self.id;
        cache
    }

    /// Verifies the bearer token of an `Authorization` value (`None`: no such header).
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenRejection> {
        let token = authorization
            .and_then(super::bearer_token)
            .ok_or(TokenRejection::Missing)?;
        self.verify(token, now_unix)
    }

    /// [`JwtVerifier::authenticate`] through a cache of verified tokens.
    pub fn authenticate_cached<'c>(
        &self,
        cache: &'c mut TokenCache,
        authorization: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<&'c VerifiedToken, TokenRejection> {
        let token = authorization
            .and_then(super::bearer_token)
            .ok_or(TokenRejection::Missing)?;
        self.verify_cached(cache, token, now_unix)
    }

    /// Verifies one token. `now_unix` is wall-clock seconds since the Unix epoch.
    pub fn verify(&self, token: &[u8], now_unix: u64) -> Result<VerifiedToken, TokenRejection> {
        self.verify_token(token, now_unix)
    }

    /// [`JwtVerifier::verify`], answering from `cache` when the same token was verified before
    /// and is still valid.
    pub fn verify_cached<'c>(
        &self,
        cache: &'c mut TokenCache,
        token: &[u8],
        now_unix: u64,
    ) -> Result<&'c VerifiedToken, TokenRejection> {
        if cache.owner != self.id {
            cache.clear();
            cache.owner = self.id;
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::Malformed("the token is too long"));
        }
        let digest = super::sha256(token);
        if let Some(index) = cache.get(&digest, now_unix) {
            return Ok(cache.token(index));
        }
        let verified = self.verify_token(token, now_unix)?;
        let expires = verified
            .expires_at
            .map(|exp| exp.saturating_add(self.settings.leeway_seconds));
        let index = cache.insert(digest, verified, now_unix, expires);
        Ok(cache.token(index))
    }

    fn verify_token(&self, token: &[u8], now_unix: u64) -> Result<VerifiedToken, TokenRejection> {
        use TokenRejection::*;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed("the token is too long"));
        }
        // 1. Three parts.
        let mut parts = token.splitn(3, |&b| b == b'.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed("the token is not three base64url parts"));
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(Malformed("the token is not three base64url parts"));
        }
        if signature_b64.contains(&b'.') {
            return Err(Malformed("the token is not three base64url parts"));
        }
        // 2. Header.
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| Malformed("the token header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|_| Malformed("the token header is not a JSON object with alg"))?;
        if header.crit.is_some() {
            return Err(Malformed("the token header has critical extensions"));
        }
        let algorithm = Algorithm::from_name(&header.alg).ok_or(UnsupportedAlgorithm)?;
        if !self.settings.keys.algorithms().any(|a| a == algorithm) {
            return Err(UnsupportedAlgorithm);
        }
        // 3 and 4. Key and signature, before anything of the payload is read.
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Malformed("the token signature is not base64url"))?;
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        let mut candidates = self
            .settings
            .keys
            .candidates(algorithm, header.kid.as_deref())
            .peekable();
        if candidates.peek().is_none() {
            return Err(UnknownKey);
        }
        if !candidates.any(|key| key.verify(signed, &signature)) {
            return Err(BadSignature);
        }
        // 5. Payload and times.
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| Malformed("the token payload is not base64url"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| Malformed("the token payload is not a JSON object"))?;
        let leeway = self.settings.leeway_seconds;
        let expires_at = numeric_date(&claims, "exp")?;
        match expires_at {
            None if self.settings.require_expiry => return Err(MissingExpiry),
            Some(exp) if now_unix >= exp.saturating_add(leeway) => return Err(Expired),
            _ => {}
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")? {
            if now_unix.saturating_add(leeway) < nbf {
                return Err(NotYetValid);
            }
        }
        // 6. Issuer and audience.
        if let Some(issuer) = &self.settings.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(WrongIssuer);
            }
        }
        match (claims.get("aud"), self.settings.audiences.is_empty()) {
            (None, true) => {}
            (None, false) => return Err(WrongAudience),
            (Some(aud), _) => {
                let accepted = |name: &str| self.settings.audiences.iter().any(|a| a == name);
                let ok = match aud {
                    Value::String(name) => accepted(name),
                    Value::Array(names) => names.iter().filter_map(Value::as_str).any(accepted),
                    _ => false,
                };
                if !ok {
                    return Err(WrongAudience);
                }
            }
        }
        // 7. Identity and rules.
        let identity = claims
            .get(&self.settings.identity_claim)
            .and_then(Value::as_str)
            .filter(|id| id.len() <= claims::MAX_IDENTITY_BYTES)
            .filter(|id| claims::safe_field_value(id.as_bytes()))
            .ok_or(MissingIdentity)?;
        if let Some(rule) = self.settings.rules.iter().position(|r| !r.holds(&claims)) {
            return Err(InsufficientClaims { rule });
        }
        // 8. Forwarded claims.
        let mut headers = Vec::with_capacity(self.settings.forward.len());
        let mut dropped_claims = 0u16;
        for forward in &self.settings.forward {
            let Some(value) = claims.get(&forward.claim) else {
                continue;
            };
            match claims::header_value(value) {
                Some(bytes) => headers.push((forward.header.as_str().into(), bytes.into())),
                None => dropped_claims = dropped_claims.saturating_add(1),
            }
        }
        Ok(VerifiedToken {
            identity: identity.into(),
            headers,
            expires_at,
            dropped_claims,
        })
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional) as whole seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenRejection> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(TokenRejection::Malformed(
            "a time claim of the token is not a number",
        ));
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        // Before the epoch: long past.
        Some(seconds) if seconds < 0.0 => Ok(Some(0)),
        Some(seconds) if seconds.is_finite() => Ok(Some(seconds.min(u64::MAX as f64) as u64)),
        _ => Err(TokenRejection::Malformed(
            "a time claim of the token is not a number",
        )),
    }
}

#[cfg(test)]
pub(crate) mod mint;
#[cfg(test)]
mod tests;
