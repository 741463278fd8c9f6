//! Property tests: the byte-facing parsers of this module never panic, whatever they are given,
//! and their answers stay within their contracts (line numbers within the file, refusals for
//! tokens nobody signed).

use proptest::prelude::*;
use serde_json::json;

use super::jwt::mint;
use super::jwt::{Algorithm, JwtKey, JwtSettings, JwtVerifier, KeySet};
use super::{apikey, bearer_token};

const NOW: u64 = 1_800_000_000;

fn verifier() -> JwtVerifier {
    JwtVerifier::new(JwtSettings::new(mint::key_set())).expect("test settings")
}

/// Bytes that look like a token: base64url characters and dots, sometimes anything.
fn token_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[A-Za-z0-9_=.-]{0,300}".prop_map(String::into_bytes),
        (any::<Vec<u8>>(), any::<Vec<u8>>(), any::<Vec<u8>>()).prop_map(|(h, p, s)| {
            use base64::Engine;
            let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.{}", e.encode(h), e.encode(p), e.encode(s)).into_bytes()
        }),
    ]
}

/// JSON-ish text built from JWKS vocabulary.
fn jwks_like() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        Just("\"kty\": \"RSA\"".to_owned()),
        Just("\"kty\": \"EC\"".to_owned()),
        Just("\"kty\": \"oct\"".to_owned()),
        Just("\"crv\": \"P-256\"".to_owned()),
        Just("\"use\": \"sig\"".to_owned()),
        Just("\"alg\": \"RS256\"".to_owned()),
        "[A-Za-z0-9_-]{0,60}".prop_map(|v| format!("\"n\": \"{v}\"")),
        "[A-Za-z0-9_-]{0,8}".prop_map(|v| format!("\"e\": \"{v}\"")),
        "[A-Za-z0-9_-]{0,50}".prop_map(|v| format!("\"x\": \"{v}\"")),
        "[A-Za-z0-9_-]{0,50}".prop_map(|v| format!("\"y\": \"{v}\"")),
        "[A-Za-z0-9_-]{0,60}".prop_map(|v| format!("\"k\": \"{v}\"")),
        Just("\"key_ops\": [\"verify\"]".to_owned()),
        Just("\"kid\": 7".to_owned()),
    ];
    let key = proptest::collection::vec(member, 0..8).prop_map(|m| format!("{{{}}}", m.join(",")));
    prop_oneof![
        proptest::collection::vec(key, 0..4)
            .prop_map(|k| format!("{{\"keys\": [{}]}}", k.join(","))),
        ".{0,200}",
    ]
}

proptest! {
    #[test]
    fn key_files_never_panic_and_name_real_lines(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let lines = bytes.split(|&b| b == b'\n').count();
        match apikey::parse_key_file(&bytes) {
            Ok(entries) => prop_assert!(entries.len() <= lines),
            Err(errors) => {
                prop_assert!(!errors.is_empty() && errors.len() <= apikey::MAX_REPORTED_ERRORS);
                for error in errors {
                    prop_assert!(error.line >= 1 && error.line <= lines);
                }
            }
        }
    }

    #[test]
    fn key_files_of_valid_lines_parse(pairs in proptest::collection::vec(("[a-z]{1,12}", "[!-~]{16,40}"), 1..20)) {
        let mut file = String::new();
        let mut keys = std::collections::HashSet::new();
        for (identity, key) in &pairs {
            if keys.insert(key.clone()) {
                file.push_str(&format!("{identity} {key}\n"));
            }
        }
        let entries = apikey::parse_key_file(file.as_bytes()).expect("valid lines");
        prop_assert_eq!(entries.len(), keys.len());
        let set = apikey::ApiKeys::new(entries).expect("distinct keys");
        for (identity, key) in &pairs {
            // Keys listed twice belong to their first identity.
            let found = set.identify(key.as_bytes());
            prop_assert!(found.is_some());
            if pairs.iter().filter(|(_, k)| k == key).count() == 1 {
                prop_assert_eq!(found, Some(identity.as_str()));
            }
        }
    }

    #[test]
    fn authorization_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Some(token) = bearer_token(&value) {
            prop_assert!(!token.is_empty());
        }
    }

    #[test]
    fn jwks_documents_never_panic(document in jwks_like()) {
        let _ = KeySet::from_jwks(document.as_bytes());
    }

    #[test]
    fn pem_input_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), label in "(PUBLIC KEY|RSA PUBLIC KEY|X)") {
        use base64::Engine;
        let pem = format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(&body)
        );
        let _ = JwtKey::from_pem(pem.as_bytes(), None);
        let _ = JwtKey::from_pem(&body, None);
    }

    #[test]
    fn unsigned_token_bytes_are_always_refused(token in token_like()) {
        let verifier = verifier();
        prop_assert!(verifier.verify(&token, NOW).is_err());
        let mut cache = verifier.new_cache(8, 60);
        prop_assert!(verifier.verify_cached(&mut cache, &token, NOW).is_err());
        let _ = bearer_token(&token);
    }

    /// Whatever claims an issuer signs, verification answers without panicking, and whatever it
    /// forwards is a safe field value.
    #[test]
    fn signed_claims_of_any_shape_are_handled(
        sub in prop_oneof![Just(json!("alice")), Just(json!(null)), Just(json!(["x"])), ".{0,20}".prop_map(|s| json!(s))],
        exp in prop_oneof![Just(json!(NOW + 60)), Just(json!("soon")), Just(json!(-1.5)), Just(json!(1e300)), any::<i64>().prop_map(|n| json!(n))],
        forwarded in ".{0,40}",
    ) {
        let mut settings = JwtSettings::new(mint::key_set());
        settings.forward = vec![super::jwt::ForwardClaim { claim: "f".to_owned(), header: "x-f".to_owned() }];
        let verifier = JwtVerifier::new(settings).expect("test settings");
        let token = mint::token(Algorithm::Hs256, &json!({"sub": sub, "exp": exp, "f": forwarded}));
        if let Ok(verified) = verifier.verify(token.as_bytes(), NOW) {
            for (_, value) in &verified.headers {
                prop_assert!(value.iter().all(|&b| b >= 0x20 && b != 0x7f));
            }
            prop_assert!(verified.identity.bytes().all(|b| b >= 0x20 && b != 0x7f));
        }
    }
}
