//! Every outcome of JWT verification, with tokens signed by the test keys.

use serde_json::{Value, json};

use super::mint::{self, token};
use super::*;
use crate::auth::Realm;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example";

fn settings() -> JwtSettings {
    let mut settings = JwtSettings::new(mint::key_set());
    settings.issuer = Some(ISSUER.to_owned());
    settings.audiences = vec!["api".to_owned(), "admin".to_owned()];
    settings.rules = vec![ClaimRule {
        claim: "scope".to_owned(),
        check: ClaimCheck::Contains("orders:read".to_owned()),
    }];
    settings.forward = vec![
        ForwardClaim {
            claim: "email".to_owned(),
            header: "X-User-Email".to_owned(),
        },
        ForwardClaim {
            claim: "name".to_owned(),
            header: "x-user-name".to_owned(),
        },
        ForwardClaim {
            claim: "tenant".to_owned(),
            header: "x-tenant".to_owned(),
        },
    ];
    settings
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new(settings()).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": "api",
        "exp": NOW + 600,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "scope": "orders:read orders:write",
        "email": "alice@example.com",
        "name": "Alice\r\nX-Admin: yes",
    })
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn check(token: &str) -> Result<VerifiedToken, TokenRejection> {
    verifier().verify(token.as_bytes(), NOW)
}

#[test]
fn every_algorithm_verifies_and_forwards_safe_claims() {
    for algorithm in [Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256] {
        let verified = check(&token(algorithm, &claims())).unwrap();
        assert_eq!(&*verified.identity, "alice", "{algorithm:?}");
        assert_eq!(verified.expires_at, Some(NOW + 600));
        // The email is forwarded; the name carries CRLF and is dropped; no tenant claim.
        assert_eq!(
            verified.headers,
            [("x-user-email".into(), b"alice@example.com"[..].into())]
        );
        assert_eq!(verified.dropped_claims, 1);
    }
}

#[test]
fn times_are_checked_with_leeway() {
    let at = |claims: Value| check(&token(Algorithm::Hs256, &claims));
    assert!(at(with(json!({"exp": NOW - 59}))).is_ok());
    assert_eq!(
        at(with(json!({"exp": NOW - 60}))),
        Err(TokenRejection::Expired)
    );
    assert!(at(with(json!({"nbf": NOW + 60}))).is_ok());
    assert_eq!(
        at(with(json!({"nbf": NOW + 61}))),
        Err(TokenRejection::NotYetValid)
    );
    assert!(at(with(json!({"exp": (NOW + 5) as f64 + 0.5}))).is_ok());
    assert_eq!(at(with(json!({"exp": -5}))), Err(TokenRejection::Expired));
    assert!(matches!(
        at(with(json!({"exp": "tomorrow"}))),
        Err(TokenRejection::Malformed(_))
    ));
    assert_eq!(
        at(with(json!({"exp": null}))),
        Err(TokenRejection::MissingExpiry)
    );
    let mut lenient = settings();
    lenient.require_expiry = false;
    let lenient = JwtVerifier::new(lenient).unwrap();
    let no_exp = token(Algorithm::Hs256, &with(json!({"exp": null})));
    assert!(lenient.verify(no_exp.as_bytes(), NOW).is_ok());
}

#[test]
fn issuer_and_audience_must_match() {
    let at = |claims: Value| check(&token(Algorithm::Es256, &claims));
    assert_eq!(
        at(with(json!({"iss": "https://evil.example"}))),
        Err(TokenRejection::WrongIssuer)
    );
    assert_eq!(
        at(with(json!({"iss": null}))),
        Err(TokenRejection::WrongIssuer)
    );
    assert_eq!(
        at(with(json!({"aud": "other"}))),
        Err(TokenRejection::WrongAudience)
    );
    assert_eq!(
        at(with(json!({"aud": null}))),
        Err(TokenRejection::WrongAudience)
    );
    assert_eq!(
        at(with(json!({"aud": 5}))),
        Err(TokenRejection::WrongAudience)
    );
    assert!(at(with(json!({"aud": ["other", "admin"]}))).is_ok());
    // With no audience configured, a token addressed to one is not for us (RFC 7519 4.1.3).
    let mut open = settings();
    open.audiences.clear();
    let open = JwtVerifier::new(open).unwrap();
    let addressed = token(Algorithm::Es256, &claims());
    assert_eq!(
        open.verify(addressed.as_bytes(), NOW),
        Err(TokenRejection::WrongAudience)
    );
    let unaddressed = token(Algorithm::Es256, &with(json!({"aud": null})));
    assert!(open.verify(unaddressed.as_bytes(), NOW).is_ok());
}

#[test]
fn signatures_must_verify_under_the_named_key() {
    let good = token(Algorithm::Rs256, &claims());
    // A changed payload under the old signature.
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD.encode(with(json!({"sub": "mallory"})).to_string());
    let forged = format!("{head}.{other_payload}.{signature}");
    assert_eq!(check(&forged), Err(TokenRejection::BadSignature));
    // A signature of the right size from another key.
    let header = json!({"alg": "HS256", "kid": "hs"});
    let mut wrong_key = mint::signed(Algorithm::Hs256, &header, b"{}");
    wrong_key.replace_range(wrong_key.len() - 4.., "AAAA");
    assert_eq!(check(&wrong_key), Err(TokenRejection::BadSignature));
    // Algorithm confusion: HS256 with the RSA key's id is refused, whatever the signature.
    let confused = json!({"alg": "HS256", "kid": "rsa"});
    let token = mint::signed(Algorithm::Hs256, &confused, claims().to_string().as_bytes());
    assert_eq!(check(&token), Err(TokenRejection::UnknownKey));
    let unknown = json!({"alg": "ES256", "kid": "retired"});
    let token = mint::signed(Algorithm::Es256, &unknown, claims().to_string().as_bytes());
    assert_eq!(check(&token), Err(TokenRejection::UnknownKey));
    // Without kid, the key of the algorithm is tried.
    let anonymous = json!({"alg": "ES256"});
    let token = mint::signed(
        Algorithm::Es256,
        &anonymous,
        claims().to_string().as_bytes(),
    );
    assert!(check(&token).is_ok());
}

#[test]
fn only_configured_algorithms_are_accepted() {
    let payload = claims().to_string();
    for alg in ["none", "RS512", "PS256", "HS384", "EdDSA", ""] {
        let header = json!({"alg": alg, "kid": "hs"});
        let token = mint::signed(Algorithm::Hs256, &header, payload.as_bytes());
        assert_eq!(
            check(&token),
            Err(TokenRejection::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    // `none` with an empty signature is not even a token.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(&payload)
    );
    assert!(matches!(
        check(&unsigned),
        Err(TokenRejection::Malformed(_))
    ));
    // ES256 against a verifier that only has an HS256 secret.
    let mut settings =
        JwtSettings::new(KeySet::new(vec![JwtKey::hs256(mint::HS_SECRET, None).unwrap()]).unwrap());
    settings.audiences = vec!["api".to_owned()];
    let hs_only = JwtVerifier::new(settings).unwrap();
    let es = token(Algorithm::Es256, &claims());
    assert_eq!(
        hs_only.verify(es.as_bytes(), NOW),
        Err(TokenRejection::UnsupportedAlgorithm)
    );
}

#[test]
fn malformed_tokens_say_which_part() {
    let good = token(Algorithm::Hs256, &claims());
    let cases: Vec<(String, &str)> = vec![
        ("abc".into(), "three"),
        ("a.b".into(), "three"),
        (format!("{good}.x"), "three"),
        ("..".into(), "three"),
        (format!("!{good}"), "header is not base64url"),
        (
            format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode("not json")),
            "header is not a JSON",
        ),
        (
            format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)),
            "header is not a JSON",
        ),
        (format!("{good}=="), "signature is not base64url"),
        ("x".repeat(MAX_TOKEN_BYTES + 1), "too long"),
    ];
    for (token, expected) in cases {
        match check(&token) {
            Err(TokenRejection::Malformed(detail)) => {
                assert!(detail.contains(expected), "{token:.40}: {detail}")
            }
            other => panic!("{token:.40}: {other:?}"),
        }
    }
    let crit = json!({"alg": "HS256", "kid": "hs", "crit": ["exp"]});
    let token = mint::signed(Algorithm::Hs256, &crit, claims().to_string().as_bytes());
    assert_eq!(
        check(&token),
        Err(TokenRejection::Malformed(
            "the token header has critical extensions"
        ))
    );
    let header = json!({"alg": "HS256", "kid": "hs"});
    let array = mint::signed(Algorithm::Hs256, &header, b"[1, 2]");
    assert_eq!(
        check(&array),
        Err(TokenRejection::Malformed(
            "the token payload is not a JSON object"
        ))
    );
}

#[test]
fn missing_claims_are_forbidden_not_unauthorized() {
    let at = |claims: Value| check(&token(Algorithm::Hs256, &claims));
    assert_eq!(
        at(with(json!({"sub": null}))),
        Err(TokenRejection::MissingIdentity)
    );
    assert_eq!(
        at(with(json!({"sub": 42}))),
        Err(TokenRejection::MissingIdentity)
    );
    assert_eq!(
        at(with(json!({"sub": "alice\nbob"}))),
        Err(TokenRejection::MissingIdentity)
    );
    let refused = at(with(json!({"scope": "orders:write"})));
    assert_eq!(refused, Err(TokenRejection::InsufficientClaims { rule: 0 }));
    assert_eq!(refused.unwrap_err().status(), 403);
    assert_eq!(TokenRejection::Expired.status(), 401);
}

#[test]
fn challenges_are_ready_to_write() {
    let realm = Realm::default();
    assert_eq!(
        TokenRejection::Missing.challenge(&realm).to_string(),
        "Bearer realm=\"coregate\""
    );
    assert_eq!(
        TokenRejection::Expired.challenge(&realm).to_string(),
        "Bearer realm=\"coregate\", error=\"invalid_token\", error_description=\"the token has expired\""
    );
    assert_eq!(
        TokenRejection::InsufficientClaims { rule: 0 }
            .challenge(&realm)
            .to_string(),
        "Bearer realm=\"coregate\", error=\"insufficient_scope\", error_description=\"the token lacks a claim this resource requires\""
    );
}

#[test]
fn authorization_values_carry_the_token() {
    let verifier = verifier();
    let token = token(Algorithm::Es256, &claims());
    for value in [format!("Bearer {token}"), format!("bearer  {token} ")] {
        assert!(
            verifier.authenticate(Some(value.as_bytes()), NOW).is_ok(),
            "{value:.20}"
        );
    }
    assert_eq!(
        verifier.authenticate(None, NOW),
        Err(TokenRejection::Missing)
    );
    assert_eq!(
        verifier.authenticate(Some(b"Basic YWxpY2U6c2VjcmV0"), NOW),
        Err(TokenRejection::Missing)
    );
}

#[test]
fn the_cache_answers_repeats_and_respects_expiry() {
    let verifier = verifier();
    let mut cache =
        verifier.new_cache(DEFAULT_TOKEN_CACHE_ENTRIES, DEFAULT_TOKEN_CACHE_TTL_SECONDS);
    let token = token(Algorithm::Rs256, &with(json!({"exp": NOW + 100})));
    let first = verifier
        .verify_cached(&mut cache, token.as_bytes(), NOW)
        .unwrap()
        .clone();
    let again = verifier
        .verify_cached(&mut cache, token.as_bytes(), NOW + 1)
        .unwrap();
    assert_eq!(*again, first);
    assert_eq!(cache.counters().hits, 1);
    // Valid until exp + leeway, then verified again (and refused).
    assert!(
        verifier
            .verify_cached(&mut cache, token.as_bytes(), NOW + 159)
            .is_ok()
    );
    assert_eq!(
        verifier.verify_cached(&mut cache, token.as_bytes(), NOW + 160),
        Err(TokenRejection::Expired)
    );
    // Refusals are not cached: a forged token is checked every time.
    let forged = format!("{}x", &token[..token.len() - 1]);
    for _ in 0..2 {
        assert!(
            verifier
                .verify_cached(&mut cache, forged.as_bytes(), NOW)
                .is_err()
        );
    }
    assert_eq!(cache.counters().hits, 2);
}

#[test]
fn a_cache_never_outlives_its_verifier() {
    let old = verifier();
    let mut cache = old.new_cache(16, 300);
    let token = token(Algorithm::Hs256, &claims());
    assert!(old.verify_cached(&mut cache, token.as_bytes(), NOW).is_ok());
    // A new snapshot drops the HS256 key: the cached verification must not carry over.
    let mut settings = settings();
    settings.keys = KeySet::new(vec![
        JwtKey::from_pem(mint::EC_PUBLIC.as_bytes(), Some("ec")).unwrap(),
    ])
    .unwrap();
    let new = JwtVerifier::new(settings).unwrap();
    assert_eq!(
        new.verify_cached(&mut cache, token.as_bytes(), NOW),
        Err(TokenRejection::UnsupportedAlgorithm)
    );
}

#[test]
fn jwks_keys_verify_by_kid() {
    let (keys, _) = KeySet::from_jwks(keys::tests::test_jwks().as_bytes()).unwrap();
    let mut settings = JwtSettings::new(keys);
    settings.audiences = vec!["api".to_owned()];
    let verifier = JwtVerifier::new(settings).unwrap();
    let payload = claims().to_string();
    for (algorithm, kid) in [(Algorithm::Rs256, "rsa-1"), (Algorithm::Es256, "ec-1")] {
        let header = json!({"alg": algorithm.name(), "kid": kid});
        let token = mint::signed(algorithm, &header, payload.as_bytes());
        assert!(verifier.verify(token.as_bytes(), NOW).is_ok(), "{kid}");
        let swapped =
            json!({"alg": algorithm.name(), "kid": if kid == "ec-1" { "rsa-1" } else { "ec-1" }});
        let token = mint::signed(algorithm, &swapped, payload.as_bytes());
        assert_eq!(
            verifier.verify(token.as_bytes(), NOW),
            Err(TokenRejection::UnknownKey)
        );
    }
}

#[test]
fn settings_are_validated() {
    let mut bad = settings();
    bad.forward[0].header = "Content-Length".to_owned();
    let err = JwtVerifier::new(bad).unwrap_err();
    assert_eq!(err.setting, "forward[0]");
    let mut bad = settings();
    bad.identity_claim = String::new();
    assert_eq!(JwtVerifier::new(bad).unwrap_err().setting, "identity_claim");
    let mut bad = settings();
    bad.audiences.push(String::new());
    assert!(JwtVerifier::new(bad).is_err());
    // Forwarded header names are stored lowercase.
    let verified = check(&token(Algorithm::Hs256, &claims())).unwrap();
    assert_eq!(&*verified.headers[0].0, "x-user-email");
}
