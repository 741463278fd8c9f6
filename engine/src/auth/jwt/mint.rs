//! Test-only: signs tokens with the test keys in `auth/testdata`, as an issuer would.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hmac, rand, signature};
use serde_json::{Value, json};

use super::keys::{Algorithm, JwtKey, KeySet};
use super::pem;

pub(crate) const RSA_PRIVATE: &str = include_str!("../testdata/rs256-private.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("../testdata/rs256-public.pem");
pub(crate) const EC_PRIVATE: &str = include_str!("../testdata/es256-private.pem");
pub(crate) const EC_PUBLIC: &str = include_str!("../testdata/es256-public.pem");
pub(crate) const HS_SECRET: &[u8] = b"a test secret that is long enough for HS256";

/// The three test keys, with kids `hs`, `rsa` and `ec`.
pub(crate) fn key_set() -> KeySet {
    KeySet::new(vec![
        JwtKey::hs256(HS_SECRET, Some("hs")).unwrap(),
        JwtKey::from_pem(RSA_PUBLIC.as_bytes(), Some("rsa")).unwrap(),
        JwtKey::from_pem(EC_PUBLIC.as_bytes(), Some("ec")).unwrap(),
    ])
    .unwrap()
}

fn kid_of(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Hs256 => "hs",
        Algorithm::Rs256 => "rsa",
        Algorithm::Es256 => "ec",
    }
}

/// A token for `claims` signed with the test key of `algorithm`, naming it by kid.
pub(crate) fn token(algorithm: Algorithm, claims: &Value) -> String {
    let header = json!({"alg": algorithm.name(), "typ": "JWT", "kid": kid_of(algorithm)});
    signed(algorithm, &header, claims.to_string().as_bytes())
}

/// A token with any header and payload bytes, signed with the test key of `algorithm`.
pub(crate) fn signed(algorithm: Algorithm, header: &Value, payload: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = sign(algorithm, message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

pub(crate) fn sign(algorithm: Algorithm, message: &[u8]) -> Vec<u8> {
    let rng = rand::SystemRandom::new();
    match algorithm {
        Algorithm::Hs256 => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, HS_SECRET);
            hmac::sign(&key, message).as_ref().to_vec()
        }
        Algorithm::Rs256 => {
            let (_, der) = pem::decode_pem(RSA_PRIVATE.as_bytes()).unwrap();
            let pair = signature::RsaKeyPair::from_pkcs8(&der).unwrap();
            let mut out = vec![0; pair.public().modulus_len()];
            pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                .unwrap();
            out
        }
        Algorithm::Es256 => {
            let (_, der) = pem::decode_pem(EC_PRIVATE.as_bytes()).unwrap();
            let pair = signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
                &rng,
            )
            .unwrap();
            pair.sign(&rng, message).unwrap().as_ref().to_vec()
        }
    }
}
