//! The keys a token may be signed with: an HS256 secret, a PEM public key, or a JWKS document.
//!
//! Owns turning configured key material into verification keys, checked once at load (sizes,
//! curves, algorithms), and the choice of which keys a token's header points at. It does no I/O
//! (the caller reads the files and hands over their bytes) and never prints key material: the
//! `Debug` forms show algorithms and key ids only.
//!
//! # JWKS (RFC 7517)
//!
//! `{"keys": [...]}` with, per key, `kty` and the members of its type. Kept: `RSA` (`n`, `e`;
//! 2048 to 8192 bits) as RS256, `EC` with `crv` `P-256` (`x`, `y`) as ES256, `oct` (`k`, at least
//! 32 bytes) as HS256. A key whose `use` is not `sig`, whose `key_ops` lack `verify`, whose `alg`
//! is another algorithm, or whose type or curve is not one of those is skipped and counted, since
//! identity providers publish keys for other purposes in the same document. A kept key whose
//! members are malformed is an error naming its position: the document is broken.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hmac, signature};
use serde::Deserialize;

use super::pem::{self, PublicKeyParts};

/// The shortest HS256 secret accepted: RFC 7518 sec. 3.2 asks for at least the hash size.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Keys tried for a token without `kid`: a bound on the signature checks one token can cost.
pub const MAX_KEYS_TRIED_WITHOUT_KID: usize = 3;

/// RSA modulus sizes accepted, in bytes (ring verifies 2048 to 8192 bits).
const RSA_MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;

/// The signature algorithms coregate verifies. `none` is never among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Hs256,
    Rs256,
    Es256,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// What went wrong with key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    /// The key's position in a JWKS document, when it came from one.
    pub index: Option<usize>,
    pub reason: &'static str,
}

impl KeyError {
    fn new(reason: &'static str) -> KeyError {
        KeyError {
            index: None,
            reason,
        }
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(index) => write!(f, "key {index} of the JWKS document: {}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for KeyError {}

enum Material {
    Hmac(hmac::Key),
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    P256 { point: Vec<u8> },
}

/// One verification key.
pub struct JwtKey {
    kid: Option<Box<str>>,
    algorithm: Algorithm,
    material: Material,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// An HS256 key from a shared secret of at least [`MIN_HMAC_SECRET_BYTES`].
    pub fn hs256(secret: &[u8], kid: Option<&str>) -> Result<JwtKey, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::new(
                "an HS256 secret needs at least 32 bytes (RFC 7518 sec. 3.2)",
            ));
        }
        Ok(JwtKey {
            kid: kid.map(Into::into),
            algorithm: Algorithm::Hs256,
            material: Material::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        })
    }

    /// An RS256 or ES256 key from a PEM public key (SPKI or PKCS #1); the algorithm follows
    /// from the key type.
    pub fn from_pem(pem_bytes: &[u8], kid: Option<&str>) -> Result<JwtKey, KeyError> {
        let (label, der) = pem::decode_pem(pem_bytes).map_err(KeyError::new)?;
        let parts = pem::public_key_parts(&label, &der).map_err(KeyError::new)?;
        let (algorithm, material) = match parts {
            PublicKeyParts::Rsa { modulus, exponent } => {
                (Algorithm::Rs256, rsa_material(modulus, exponent)?)
            }
            PublicKeyParts::P256 { point } => (
                Algorithm::Es256,
                Material::P256 {
                    point: point.to_vec(),
                },
            ),
        };
        Ok(JwtKey {
            kid: kid.map(Into::into),
            algorithm,
            material,
        })
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether `signature` signs `message` under this key. HMAC is compared in constant time.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Material::Rsa { modulus, exponent } => signature::RsaPublicKeyComponents {
                n: modulus,
                e: exponent,
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
            .is_ok(),
            Material::P256 { point } => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

fn rsa_material(modulus: &[u8], exponent: &[u8]) -> Result<Material, KeyError> {
    let modulus = strip_zeros(modulus);
    let exponent = strip_zeros(exponent);
    if !RSA_MODULUS_BYTES.contains(&modulus.len()) {
        return Err(KeyError::new("RSA keys need 2048 to 8192 bits"));
    }
    if exponent.is_empty() || exponent.len() > 4 || exponent.last().is_some_and(|b| b & 1 == 0) {
        return Err(KeyError::new(
            "the RSA public exponent is not a small odd number",
        ));
    }
    Ok(Material::Rsa {
        modulus: modulus.to_vec(),
        exponent: exponent.to_vec(),
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    &bytes[zeros..]
}

/// The keys of one verifier.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<JwtKey>,
}

/// What reading a JWKS document kept and skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwksSummary {
    pub kept: usize,
    pub skipped: usize,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

impl KeySet {
    /// A set of keys; key ids must be unique.
    pub fn new(keys: Vec<JwtKey>) -> Result<KeySet, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::new("no verification key configured"));
        }
        for (at, key) in keys.iter().enumerate() {
            if key.kid.is_some() && keys[..at].iter().any(|other| other.kid == key.kid) {
                return Err(KeyError {
                    index: Some(at),
                    reason: "two keys have the same kid",
                });
            }
        }
        Ok(KeySet { keys })
    }

    /// The keys of a JWKS document.
    pub fn from_jwks(document: &[u8]) -> Result<(KeySet, JwksSummary), KeyError> {
        let entries = parse_jwks(document)?;
        let total = entries.len();
        let keys: Vec<JwtKey> = entries.into_iter().flatten().collect();
        let summary = JwksSummary {
            kept: keys.len(),
            skipped: total - keys.len(),
        };
        if keys.is_empty() {
            return Err(KeyError::new(
                "the JWKS document has no RS256, ES256 or HS256 signing key",
            ));
        }
        Ok((KeySet::new(keys)?, summary))
    }

    /// Adds the keys of another set (a PEM key beside a JWKS, say).
    pub fn merge(self, other: KeySet) -> Result<KeySet, KeyError> {
        let mut keys = self.keys;
        keys.extend(other.keys);
        KeySet::new(keys)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.keys.iter().map(|key| key.algorithm)
    }

    /// The keys a token with this header may be signed with: the one its `kid` names, or
    /// without `kid` up to [`MAX_KEYS_TRIED_WITHOUT_KID`] keys of its algorithm. Empty when a
    /// named key does not exist or has another algorithm.
    pub(super) fn candidates<'a>(
        &'a self,
        algorithm: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a JwtKey> + 'a {
        self.keys
            .iter()
            .filter(move |key| key.algorithm == algorithm)
            .filter(move |key| kid.is_none() || key.kid.as_deref() == kid)
            .take(if kid.is_some() {
                1
            } else {
                MAX_KEYS_TRIED_WITHOUT_KID
            })
    }
}

/// Each entry of a JWKS: `Some(key)` kept, `None` skipped.
fn parse_jwks(document: &[u8]) -> Result<Vec<Option<JwtKey>>, KeyError> {
    if document.len() > MAX_JWKS_BYTES {
        return Err(KeyError::new("the JWKS document is larger than 256 KiB"));
    }
    let document: JwksDocument = serde_json::from_slice(document)
        .map_err(|_| KeyError::new("not a JWKS document: expected {\"keys\": [...]}"))?;
    document
        .keys
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            jwk_key(value).map_err(|reason| KeyError {
                index: Some(index),
                reason,
            })
        })
        .collect()
}

fn jwk_key(value: serde_json::Value) -> Result<Option<JwtKey>, &'static str> {
    let jwk: Jwk = serde_json::from_value(value)
        .map_err(|_| "a key is not an object of string members with \"kty\"")?;
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Ok(None);
    }
    let wanted = match jwk.kty.as_str() {
        "RSA" => Algorithm::Rs256,
        "EC" if jwk.crv.as_deref() == Some("P-256") => Algorithm::Es256,
        "oct" => Algorithm::Hs256,
        _ => return Ok(None),
    };
    if jwk
        .alg
        .as_deref()
        .is_some_and(|alg| Algorithm::from_name(alg) != Some(wanted))
    {
        return Ok(None);
    }
    let member = |value: &Option<String>, missing: &'static str| {
        let text = value.as_deref().ok_or(missing)?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "a key member is not base64url without padding")
    };
    let material = match wanted {
        Algorithm::Rs256 => {
            let modulus = member(&jwk.n, "an RSA key needs \"n\"")?;
            let exponent = member(&jwk.e, "an RSA key needs \"e\"")?;
            rsa_material(&modulus, &exponent).map_err(|err| err.reason)?
        }
        Algorithm::Es256 => {
            let x = member(&jwk.x, "an EC key needs \"x\"")?;
            let y = member(&jwk.y, "an EC key needs \"y\"")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("a P-256 key's \"x\" and \"y\" are 32 bytes each");
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::P256 { point }
        }
        Algorithm::Hs256 => {
            let secret = member(&jwk.k, "an oct key needs \"k\"")?;
            if secret.len() < MIN_HMAC_SECRET_BYTES {
                return Err("an HS256 secret needs at least 32 bytes (RFC 7518 sec. 3.2)");
            }
            Material::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &secret))
        }
    };
    Ok(Some(JwtKey {
        kid: jwk.kid.map(Into::into),
        algorithm: wanted,
        material,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const RSA_PUBLIC: &str = include_str!("../testdata/rs256-public.pem");
    pub(crate) const EC_PUBLIC: &str = include_str!("../testdata/es256-public.pem");

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The JWKS form of the test keys, built from their PEM parts.
    pub(crate) fn test_jwks() -> String {
        let (_, rsa_der) = pem::decode_pem(RSA_PUBLIC.as_bytes()).unwrap();
        let Ok(PublicKeyParts::Rsa { modulus, exponent }) =
            pem::public_key_parts("PUBLIC KEY", &rsa_der)
        else {
            panic!("RSA test key");
        };
        let (_, ec_der) = pem::decode_pem(EC_PUBLIC.as_bytes()).unwrap();
        let Ok(PublicKeyParts::P256 { point }) = pem::public_key_parts("PUBLIC KEY", &ec_der)
        else {
            panic!("EC test key");
        };
        format!(
            r#"{{"keys": [
                {{"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": "{}", "e": "{}"}},
                {{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "{}", "y": "{}"}},
                {{"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"}},
                {{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "AAAA"}},
                {{"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AAAA", "y": "AAAA"}},
                {{"kty": "RSA", "kid": "ps-1", "alg": "PS256", "n": "AQAB", "e": "AQAB"}},
                {{"kty": "oct", "kid": "hs-1", "k": "{}"}}
            ]}}"#,
            b64(modulus),
            b64(exponent),
            b64(&point[1..33]),
            b64(&point[33..]),
            b64(&[7; 32]),
        )
    }

    #[test]
    fn jwks_keeps_signing_keys_and_skips_the_rest() {
        let (set, summary) = KeySet::from_jwks(test_jwks().as_bytes()).unwrap();
        assert_eq!(
            summary,
            JwksSummary {
                kept: 3,
                skipped: 4
            }
        );
        let algorithms: Vec<_> = set.algorithms().collect();
        assert_eq!(
            algorithms,
            [Algorithm::Rs256, Algorithm::Es256, Algorithm::Hs256]
        );
        assert_eq!(set.candidates(Algorithm::Es256, Some("ec-1")).count(), 1);
        assert_eq!(set.candidates(Algorithm::Rs256, Some("ec-1")).count(), 0);
        assert_eq!(set.candidates(Algorithm::Rs256, None).count(), 1);
        assert_eq!(set.candidates(Algorithm::Rs256, Some("nope")).count(), 0);
    }

    #[test]
    fn broken_jwks_entries_are_errors_with_their_position() {
        let err = |doc: &str| KeySet::from_jwks(doc.as_bytes()).unwrap_err();
        assert!(err("[]").reason.contains("not a JWKS"));
        assert!(err(r#"{"keys": []}"#).reason.contains("no RS256"));
        let short = r#"{"keys": [{"kty": "oct", "k": "AAAA"}]}"#;
        assert_eq!(err(short).index, Some(0));
        assert!(err(short).reason.contains("32 bytes"));
        let small_rsa = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#;
        assert_eq!(err(small_rsa).index, Some(0));
        let no_n = r#"{"keys": [{"kty": "RSA", "e": "AQAB"}]}"#;
        assert!(err(no_n).reason.contains("needs \"n\""));
        let padded = r#"{"keys": [{"kty": "oct", "k": "AAAA=="}]}"#;
        assert!(err(padded).reason.contains("base64url"));
        let not_object = r#"{"keys": [7]}"#;
        assert!(err(not_object).reason.contains("not an object"));
        let dup = format!(
            r#"{{"keys": [{{"kty": "oct", "kid": "a", "k": "{0}"}}, {{"kty": "oct", "kid": "a", "k": "{0}"}}]}}"#,
            b64(&[1; 32])
        );
        assert!(err(&dup).reason.contains("same kid"));
    }

    #[test]
    fn pem_keys_take_their_algorithm_from_the_key() {
        let rsa = JwtKey::from_pem(RSA_PUBLIC.as_bytes(), Some("r")).unwrap();
        assert_eq!((rsa.algorithm(), rsa.kid()), (Algorithm::Rs256, Some("r")));
        let ec = JwtKey::from_pem(EC_PUBLIC.as_bytes(), None).unwrap();
        assert_eq!(ec.algorithm(), Algorithm::Es256);
        assert!(
            JwtKey::hs256(&[1; 31], None)
                .unwrap_err()
                .reason
                .contains("32 bytes")
        );
        let secret = JwtKey::hs256(b"0123456789abcdef0123456789abcdef", Some("s")).unwrap();
        let debug = format!("{secret:?}");
        assert!(!debug.contains("0123"), "{debug}");
        assert!(KeySet::new(vec![]).is_err());
    }
}
