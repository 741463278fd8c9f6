//! Authentication at the edge: API keys and JWT bearer tokens, checked before a request is
//! forwarded.
//!
//! Owns the credential checks and their outcomes: which identity a request carries, or why it
//! is refused (401 with a `WWW-Authenticate` value ready to write, or 403), and which verified
//! claims travel upstream. It does no I/O (key files, PEM files and JWKS documents arrive as
//! bytes the caller read; the caller passes the time), holds no state shared between cores (a
//! [`jwt::TokenCache`] belongs to one shard) and never logs, stores or echoes a secret: API keys
//! are kept as SHA-256 digests, secrets print as `..`, and refusals carry fixed sentences.
//!
//! | file | owns |
//! |---|---|
//! | [`apikey`] | key files, the key set, `x-api-key` / `Authorization: Bearer` keys |
//! | [`jwt`] | JWT verification, keys (secret, PEM, JWKS), claim rules, forwarded claims, cache |
//!
//! # The request path
//!
//! ```text
//! api key:  auth.authenticate(header(auth.header_name()), header("authorization"))
//!             Ok(identity) -> forward (identity can key a rate limit, go upstream in a header)
//!             Err(refusal) -> 401, WWW-Authenticate: auth.challenge()
//! jwt:      verifier.authenticate_cached(&mut shard_cache, header("authorization"), unix_now)
//!             Ok(token)    -> forward with token.headers (after removing the client's own
//!                             headers of those names), token.identity
//!             Err(refusal) -> refusal.status(), WWW-Authenticate: refusal.challenge(realm)
//! ```
//!
//! # Cost
//!
//! `cargo bench -p coregate-bench --bench ratelimit -- --warm-up-time 1 --measurement-time 3`,
//! on a 2-core VM shared with other builds (criterion medians, 2026-12-01). Tokens are about 400
//! bytes of claims as an identity provider issues them, checked for issuer, audience, one
//! `scope` rule and one forwarded claim:
//!
//! | check | time |
//! |---|---|
//! | API key among 1,000 (SHA-256, lookup, constant-time compare) | 135 ns |
//! | JWT HS256, verified | 1.84 us |
//! | JWT RS256 (2048-bit), verified | 20.3 us |
//! | JWT ES256, verified | 52.3 us |
//! | JWT HS256 / RS256 / ES256, from the shard's cache | 344 / 461 / 330 ns |
//!
//! The cache is worth having for every algorithm: a hit costs one SHA-256 of the token (the RS256
//! token is longest) and a probe, 5x less than an HS256 verification (which also parses the
//! header and claims) and 44x and 158x less than RS256 and ES256. A client reusing a token pays
//! a signature check once per cache lifetime instead of on every request.
//!
//! # Crates, and why
//!
//! - `ring` for every primitive: SHA-256 (API key digests, cache keys), HMAC-SHA256 with
//!   constant-time verification, RSA PKCS #1 v1.5 (2048 to 8192 bits) and ECDSA P-256
//!   verification. One audited, assembly-optimised library whose API has no way to pick a weak
//!   parameter, and no C toolchain beyond `cc`. `jsonwebtoken` wraps the same `ring` calls but
//!   decodes claims into its own types and maps every failure to its own error kinds; verifying
//!   here keeps each outcome distinct (which becomes `error_description`) and the claim rules in
//!   one place.
//! - `serde_json` for headers, claims and JWKS documents (depth-limited, so hostile nesting
//!   cannot overflow the stack), `base64` for base64url without padding (rejecting
//!   non-canonical trailing bits, so one signature has one encoding), `subtle` for the
//!   constant-time digest comparison.
//! - The PEM and DER reading of public keys is a hundred lines of our own (`jwt/pem.rs`): ring
//!   takes raw key parts, and the structures needed are two.

pub mod apikey;
pub mod jwt;

#[cfg(test)]
mod proptests;

use std::fmt;

pub use apikey::{
    ApiKeyAuth, ApiKeyEntry, ApiKeyError, ApiKeyRejection, ApiKeySettings, ApiKeys,
    DEFAULT_API_KEY_HEADER, KeyFileError, parse_key_file,
};
pub use jwt::{JwtSettings, JwtVerifier, TokenRejection, VerifiedToken};

/// SHA-256 of `bytes`: what API keys are compared by, and what the token cache is keyed by.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The realm of challenges when the configuration does not say.
pub const DEFAULT_REALM: &str = "coregate";

/// The longest realm.
pub const MAX_REALM_BYTES: usize = 64;

/// The `realm` of a route's challenges: printable ASCII without `"` or `\`, so it is written
/// inside a quoted string as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Realm(Box<str>);

impl Realm {
    pub fn new(realm: &str) -> Result<Realm, &'static str> {
        if realm.is_empty() || realm.len() > MAX_REALM_BYTES {
            return Err("a realm has 1 to 64 characters");
        }
        if !realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err("a realm may only have printable ASCII other than \" and \\");
        }
        Ok(Realm(realm.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Realm {
    fn default() -> Realm {
        Realm(DEFAULT_REALM.into())
    }
}

/// A `WWW-Authenticate` value, written with `Display` (into the response head's buffer, say)
/// without allocating: `Bearer realm="coregate", error="invalid_token",
/// error_description="the token has expired"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub scheme: &'static str,
    pub realm: &'a Realm,
    /// For the API key scheme: the header the key goes in.
    pub header: Option<&'a str>,
    /// `(error, error_description)`, RFC 6750 sec. 3.
    pub error: Option<(&'static str, &'static str)>,
}

impl fmt::Display for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} realm=\"{}\"", self.scheme, self.realm.as_str())?;
        if let Some(header) = self.header {
            write!(f, ", header=\"{header}\"")?;
        }
        if let Some((error, description)) = self.error {
            write!(
                f,
                ", error=\"{error}\", error_description=\"{description}\""
            )?;
        }
        Ok(())
    }
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 sec. 2.1): the scheme
/// matched without regard to case, one or more spaces, then a `b64token` (letters, digits,
/// `-._~+/`, trailing `=`), surrounding whitespace ignored. `None` for any other value.
pub fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    let value = authorization.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii_start();
    let body = token.iter().take_while(|&&b| b != b'=').count();
    let valid = body > 0
        && token[..body]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        && token[body..].iter().all(|&b| b == b'=');
    valid.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_follow_rfc_6750() {
        assert_eq!(
            bearer_token(b"Bearer abc.def-ghi_~+/=="),
            Some(&b"abc.def-ghi_~+/=="[..])
        );
        assert_eq!(bearer_token(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearerabc",
            b"Basic abc",
            b"Bearer a b",
            b"Bearer a=b",
            b"Bearer ===",
            b"Bearer a\0b",
            b"",
        ] {
            assert_eq!(
                bearer_token(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn realms_are_quotable() {
        assert_eq!(Realm::new("api gateway").unwrap().as_str(), "api gateway");
        assert!(Realm::new("").is_err());
        assert!(Realm::new("a\"b").is_err());
        assert!(Realm::new("a\\b").is_err());
        assert!(Realm::new("a\nb").is_err());
        assert!(Realm::new(&"r".repeat(65)).is_err());
    }
}
