//! API keys: a route requires a key from its configured set, and the key names an identity.
//!
//! Owns the key-file format, the stored form of keys and the check of a presented key. Bytes
//! in (the caller reads the key file), identities or typed refusals out; no I/O. A key is never
//! stored, logged, echoed or put in an error as it was given: the set keeps SHA-256 digests
//! only, errors name line numbers and identities, and `Debug` shows counts.
//!
//! # Key file
//!
//! ```text
//! # identity  key
//! alice       6f1c0e2b9d3a4f57a8e1c2b3d4e5f607
//! billing-svc Zk3v9QmT2xW8rY5nB7cL4pH1sD6fG0jA
//! ```
//!
//! One `identity key` pair per line, separated by spaces or tabs; blank lines and lines whose
//! first non-blank character is `#` are ignored; CRLF line ends are accepted. An identity is 1 to
//! 128 of `A-Z a-z 0-9 - . _ ~ @ : + / =` (it is forwarded upstream and keys rate limits, so
//! it must be a safe header value). A key is 16 to 256 visible ASCII characters. One identity
//! may have several keys (rotation); a key may appear once. Every bad line is reported, by
//! number, up to [`MAX_REPORTED_ERRORS`].
//!
//! # Checking a key
//!
//! The presented key is hashed with SHA-256 and its digest looked up among the stored digests
//! (sorted by their first 8 bytes), the final comparison in constant time (`subtle`). What a
//! timing difference could reveal is where the digest of the attacker's own guess falls among
//! the stored digests, which says nothing about any stored key; comparing digests instead of
//! keys also means no comparison ever runs over the secret itself.

use std::collections::{HashMap, HashSet};

use subtle::ConstantTimeEq;

use super::{Challenge, Realm, sha256};

/// The request header a key is read from when the configuration does not say.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// Whether `Authorization: Bearer <key>` is accepted too, when the configuration does not say.
pub const DEFAULT_ACCEPT_BEARER: bool = true;

/// The shortest key accepted: 16 characters of a random alphabet are at least 64 bits even from
/// hexadecimal; shorter keys can be guessed.
pub const MIN_API_KEY_BYTES: usize = 16;

/// The longest key accepted; a longer presented key is refused before hashing.
pub const MAX_API_KEY_BYTES: usize = 256;

/// The longest identity.
pub const MAX_IDENTITY_BYTES: usize = 128;

/// The largest key file read (about 100,000 keys).
pub const MAX_KEY_FILE_BYTES: usize = 16 << 20;

/// Bad lines reported at most per key file.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// One configured key. `Debug` shows the identity, never the key.
#[derive(Clone)]
pub struct ApiKeyEntry {
    identity: Box<str>,
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyEntry")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ApiKeyEntry {
    /// An entry from the configuration's list (`{ identity = "...", key = "..." }`).
    pub fn new(identity: &str, key: &str) -> Result<ApiKeyEntry, &'static str> {
        check_identity(identity.as_bytes())?;
        check_key(key.as_bytes())?;
        Ok(ApiKeyEntry {
            identity: identity.into(),
            digest: sha256(key.as_bytes()),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }
}

fn check_identity(identity: &[u8]) -> Result<(), &'static str> {
    if identity.is_empty() || identity.len() > MAX_IDENTITY_BYTES {
        return Err("an identity has 1 to 128 characters");
    }
    if !identity
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~@:+/=".contains(&b))
    {
        return Err("an identity may only have letters, digits and - . _ ~ @ : + / =");
    }
    Ok(())
}

fn check_key(key: &[u8]) -> Result<(), &'static str> {
    if key.len() < MIN_API_KEY_BYTES {
        return Err("the key is shorter than 16 characters");
    }
    if key.len() > MAX_API_KEY_BYTES {
        return Err("the key is longer than 256 characters");
    }
    if !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err("the key has a character that is not visible ASCII");
    }
    Ok(())
}

/// A bad line of a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFileError {
    /// 1-based.
    pub line: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for KeyFileError {}

/// The entries of a key file, or every bad line (up to [`MAX_REPORTED_ERRORS`]).
pub fn parse_key_file(bytes: &[u8]) -> Result<Vec<ApiKeyEntry>, Vec<KeyFileError>> {
    if bytes.len() > MAX_KEY_FILE_BYTES {
        return Err(vec![KeyFileError {
            line: 0,
            reason: "the key file is larger than 16 MiB",
        }]);
    }
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    // Digests seen so far, to report a duplicate without naming the key.
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut fields = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|field| !field.is_empty());
        let Some(identity) = fields.next() else {
            continue;
        };
        if identity.starts_with(b"#") {
            continue;
        }
        let outcome = match (fields.next(), fields.next()) {
            (None, _) => Err("expected an identity and a key, found one field"),
            (Some(_), Some(_)) => Err("expected an identity and a key, found more fields"),
            (Some(key), None) => check_identity(identity)
                .and_then(|()| check_key(key))
                .map(|()| (identity, sha256(key))),
        };
        match outcome {
            Ok((identity, digest)) => {
                if seen.insert(digest) {
                    entries.push(ApiKeyEntry {
                        identity: String::from_utf8_lossy(identity).into(),
                        digest,
                    });
                } else {
                    errors.push(KeyFileError {
                        line: number,
                        reason: "the same key as an earlier line",
                    });
                }
            }
            Err(reason) => errors.push(KeyFileError {
                line: number,
                reason,
            }),
        }
        if errors.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// A configuration problem of an API key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeyError {
    /// No key at all: the route would refuse everyone.
    Empty,
    /// The same key for two entries; the identities are named, the key is not.
    DuplicateKey { first: Box<str>, second: Box<str> },
    /// The header to read keys from is not a field name.
    BadHeader,
}

impl std::fmt::Display for ApiKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiKeyError::Empty => {
                f.write_str("no API key configured; the route would refuse every request")
            }
            ApiKeyError::DuplicateKey { first, second } => {
                write!(f, "the same key is configured for {first:?} and {second:?}")
            }
            ApiKeyError::BadHeader => f.write_str("the API key header is not a valid field name"),
        }
    }
}

impl std::error::Error for ApiKeyError {}

struct Stored {
    /// The digest's first 8 bytes, the sort key.
    prefix: u64,
    digest: [u8; 32],
    identity: u32,
}

/// The keys of a route: digests and the identities they name.
pub struct ApiKeys {
    /// Sorted by prefix.
    stored: Vec<Stored>,
    identities: Vec<Box<str>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.stored.len())
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl ApiKeys {
    /// A key set from entries of the configuration's list and key files together.
    pub fn new(entries: Vec<ApiKeyEntry>) -> Result<ApiKeys, ApiKeyError> {
        if entries.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        let mut identities: Vec<Box<str>> = Vec::new();
        let mut index_of: HashMap<Box<str>, u32> = HashMap::new();
        let mut owner: HashMap<[u8; 32], u32> = HashMap::new();
        let mut stored = Vec::with_capacity(entries.len());
        for entry in entries {
            let identity = *index_of.entry(entry.identity.clone()).or_insert_with(|| {
                identities.push(entry.identity.clone());
                (identities.len() - 1) as u32
            });
            if let Some(&first) = owner.get(&entry.digest) {
                return Err(ApiKeyError::DuplicateKey {
                    first: identities[first as usize].clone(),
                    second: entry.identity,
                });
            }
            owner.insert(entry.digest, identity);
            stored.push(Stored {
                prefix: prefix(&entry.digest),
                digest: entry.digest,
                identity,
            });
        }
        stored.sort_unstable_by_key(|s| s.prefix);
        Ok(ApiKeys { stored, identities })
    }

    pub fn len(&self) -> usize {
        self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    /// The identity a presented key names, if it is one of the set. Allocates nothing.
    pub fn identify(&self, presented: &[u8]) -> Option<&str> {
        if !(MIN_API_KEY_BYTES..=MAX_API_KEY_BYTES).contains(&presented.len()) {
            return None;
        }
        let digest = sha256(presented);
        let prefix = prefix(&digest);
        let start = self.stored.partition_point(|s| s.prefix < prefix);
        self.stored[start..]
            .iter()
            .take_while(|s| s.prefix == prefix)
            .find(|s| bool::from(s.digest.ct_eq(&digest)))
            .map(|s| &*self.identities[s.identity as usize])
    }
}

fn prefix(digest: &[u8; 32]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Why a request was refused (both 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyRejection {
    /// No key in the configured header (nor a bearer token, when accepted).
    Missing,
    /// A key that is not in the set.
    Wrong,
}

impl ApiKeyRejection {
    pub fn status(self) -> u16 {
        401
    }
}

/// Where a route reads keys from, and how it answers without one.
#[derive(Clone, Debug)]
pub struct ApiKeySettings {
    /// [`DEFAULT_API_KEY_HEADER`] unless configured.
    pub header: String,
    /// [`DEFAULT_ACCEPT_BEARER`] unless configured.
    pub accept_bearer: bool,
    pub realm: Realm,
}

impl Default for ApiKeySettings {
    fn default() -> ApiKeySettings {
        ApiKeySettings {
            header: DEFAULT_API_KEY_HEADER.to_owned(),
            accept_bearer: DEFAULT_ACCEPT_BEARER,
            realm: Realm::default(),
        }
    }
}

/// A route's API key requirement.
#[derive(Debug)]
pub struct ApiKeyAuth {
    keys: ApiKeys,
    /// Lowercase.
    header: Box<str>,
    accept_bearer: bool,
    realm: Realm,
}

impl ApiKeyAuth {
    pub fn new(keys: ApiKeys, settings: ApiKeySettings) -> Result<ApiKeyAuth, ApiKeyError> {
        let header = settings.header;
        if header.is_empty() || !header.bytes().all(crate::http1::is_tchar) {
            return Err(ApiKeyError::BadHeader);
        }
        Ok(ApiKeyAuth {
            keys,
            header: header.to_ascii_lowercase().into(),
            accept_bearer: settings.accept_bearer,
            realm: settings.realm,
        })
    }

    /// The header the pipeline should look up (lowercase).
    pub fn header_name(&self) -> &str {
        &self.header
    }

    pub fn realm(&self) -> &Realm {
        &self.realm
    }

    /// The identity of a request, from the value of the key header and of `Authorization`
    /// (`None` when absent). The key header wins when both are present. Allocates nothing.
    pub fn authenticate(
        &self,
        key_header: Option<&[u8]>,
        authorization: Option<&[u8]>,
    ) -> Result<&str, ApiKeyRejection> {
        let presented = match key_header {
            Some(value) => Some(value.trim_ascii()),
            None if self.accept_bearer => authorization.and_then(super::bearer_token),
            None => None,
        };
        match presented {
            None | Some(b"") => Err(ApiKeyRejection::Missing),
            Some(key) => self.keys.identify(key).ok_or(ApiKeyRejection::Wrong),
        }
    }

    /// The `WWW-Authenticate` value of a refusal: the same for a missing and a wrong key, so
    /// the answer does not help guessing.
    pub fn challenge(&self) -> Challenge<'_> {
        Challenge {
            scheme: "ApiKey",
            realm: &self.realm,
            header: Some(&self.header),
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::allocations_during;

    const FILE: &str = "# identity  key\r\n\
        alice\t6f1c0e2b9d3a4f57a8e1c2b3d4e5f607\r\n\
        \n\
           # an indented comment\n\
        billing-svc   Zk3v9QmT2xW8rY5nB7cL4pH1sD6fG0jA  \n\
        alice 0000111122223333aaaabbbbccccdddd\n";

    fn auth() -> ApiKeyAuth {
        let keys = ApiKeys::new(parse_key_file(FILE.as_bytes()).unwrap()).unwrap();
        ApiKeyAuth::new(keys, ApiKeySettings::default()).unwrap()
    }

    #[test]
    fn key_files_parse_with_comments_and_rotation() {
        let entries = parse_key_file(FILE.as_bytes()).unwrap();
        let identities: Vec<_> = entries.iter().map(ApiKeyEntry::identity).collect();
        assert_eq!(identities, ["alice", "billing-svc", "alice"]);
        let keys = ApiKeys::new(entries).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys.identify(b"6f1c0e2b9d3a4f57a8e1c2b3d4e5f607"),
            Some("alice")
        );
        assert_eq!(
            keys.identify(b"0000111122223333aaaabbbbccccdddd"),
            Some("alice")
        );
        assert_eq!(
            keys.identify(b"Zk3v9QmT2xW8rY5nB7cL4pH1sD6fG0jA"),
            Some("billing-svc")
        );
        assert_eq!(keys.identify(b"Zk3v9QmT2xW8rY5nB7cL4pH1sD6fG0jB"), None);
        assert_eq!(keys.identify(b"short"), None);
    }

    #[test]
    fn bad_lines_are_reported_by_number_without_the_key() {
        let secret = "s3cr3t-s3cr3t-s3cr3t";
        let file = format!(
            "alice {secret}\nbob\nbad/ident!ty {secret}x\ncarol short\ndave {secret} extra\nerin {secret}\nfrank caf\u{e9}-caf\u{e9}-caf\u{e9}-caf\u{e9}\n"
        );
        let errors = parse_key_file(file.as_bytes()).unwrap_err();
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7]);
        assert!(errors[0].reason.contains("one field"));
        assert!(errors[1].reason.contains("identity may only"));
        assert!(errors[2].reason.contains("shorter than 16"));
        assert!(errors[3].reason.contains("more fields"));
        assert!(errors[4].reason.contains("same key as an earlier line"));
        assert!(errors[5].reason.contains("visible ASCII"));
        for error in &errors {
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
        assert_eq!(
            errors[0].to_string(),
            "line 2: expected an identity and a key, found one field"
        );
    }

    #[test]
    fn many_bad_lines_are_cut_short() {
        let file = "x\n".repeat(1_000);
        assert_eq!(
            parse_key_file(file.as_bytes()).unwrap_err().len(),
            MAX_REPORTED_ERRORS
        );
    }

    #[test]
    fn sets_refuse_emptiness_and_shared_keys() {
        assert_eq!(ApiKeys::new(vec![]).unwrap_err(), ApiKeyError::Empty);
        let a = ApiKeyEntry::new("a", "0123456789abcdef").unwrap();
        let b = ApiKeyEntry::new("b", "0123456789abcdef").unwrap();
        let err = ApiKeys::new(vec![a, b]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the same key is configured for \"a\" and \"b\""
        );
        assert!(ApiKeyEntry::new("a", "0123").is_err());
        assert!(ApiKeyEntry::new("", "0123456789abcdef").is_err());
        let entry = ApiKeyEntry::new("svc", "0123456789abcdef").unwrap();
        assert!(!format!("{entry:?}").contains("0123"));
        let keys = ApiKeys::new(vec![entry]).unwrap();
        assert_eq!(format!("{keys:?}"), "ApiKeys { keys: 1, identities: 1 }");
    }

    #[test]
    fn keys_come_from_the_header_or_a_bearer_token() {
        let auth = auth();
        let key = b"6f1c0e2b9d3a4f57a8e1c2b3d4e5f607";
        assert_eq!(auth.header_name(), "x-api-key");
        assert_eq!(auth.authenticate(Some(key), None), Ok("alice"));
        assert_eq!(
            auth.authenticate(Some(b" 6f1c0e2b9d3a4f57a8e1c2b3d4e5f607 "), None),
            Ok("alice")
        );
        let bearer = b"Bearer Zk3v9QmT2xW8rY5nB7cL4pH1sD6fG0jA";
        assert_eq!(auth.authenticate(None, Some(bearer)), Ok("billing-svc"));
        // The key header wins over Authorization.
        assert_eq!(
            auth.authenticate(Some(b"wrong-wrong-wrong-wrong"), Some(bearer)),
            Err(ApiKeyRejection::Wrong)
        );
        assert_eq!(auth.authenticate(None, None), Err(ApiKeyRejection::Missing));
        assert_eq!(
            auth.authenticate(Some(b"  "), None),
            Err(ApiKeyRejection::Missing)
        );
        assert_eq!(
            auth.authenticate(None, Some(b"Basic YWxpY2U6cHc=")),
            Err(ApiKeyRejection::Missing)
        );
        let strict = ApiKeyAuth::new(
            ApiKeys::new(parse_key_file(FILE.as_bytes()).unwrap()).unwrap(),
            ApiKeySettings {
                header: "X-Key".to_owned(),
                accept_bearer: false,
                realm: Realm::default(),
            },
        )
        .unwrap();
        assert_eq!(strict.header_name(), "x-key");
        assert_eq!(
            strict.authenticate(None, Some(bearer)),
            Err(ApiKeyRejection::Missing)
        );
        assert_eq!(ApiKeyRejection::Wrong.status(), 401);
        assert_eq!(
            auth.challenge().to_string(),
            "ApiKey realm=\"coregate\", header=\"x-api-key\""
        );
        assert!(
            ApiKeyAuth::new(
                ApiKeys::new(parse_key_file(FILE.as_bytes()).unwrap()).unwrap(),
                ApiKeySettings {
                    header: "bad header".to_owned(),
                    ..ApiKeySettings::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn checking_a_key_allocates_nothing() {
        let auth = auth();
        let ((), allocations) = allocations_during(|| {
            for _ in 0..100 {
                assert!(
                    auth.authenticate(Some(b"6f1c0e2b9d3a4f57a8e1c2b3d4e5f607"), None)
                        .is_ok()
                );
                assert!(
                    auth.authenticate(Some(b"nope-nope-nope-nope"), None)
                        .is_err()
                );
                assert!(
                    auth.authenticate(None, Some(b"Bearer Zk3v9QmT2xW8rY5nB7cL4pH1sD6fG0jA"))
                        .is_ok()
                );
            }
        });
        assert_eq!(allocations, 0);
    }
}
